"""Inference throughput (images/s) of the Keras model at batch 1 and 32.

    python -m benchmarks.inference_throughput                 # S/32 S/16 B/16 at 224
    python -m benchmarks.inference_throughput --quick

`model.predict_on_batch` on an in-memory batch after `compile(jit_compile=...)`: the
path a serving loop takes, without `predict()`'s per-call tf.data setup. Modes "graph"
(tf.function, Keras's CPU default), "xla" (`jit_compile=True`) and "frozen" (the same
forward pass with its weights as graph constants, export.serving.cpu_serving_function, for
CPU serving; not in the default modes); precisions float32 and mixed_bfloat16 (bfloat16
matmuls on AMX). Biases and LayerNorms are randomized, as trained ones are: a frozen graph
folds away zeros (common.randomize_identities).
"""

from benchmarks import common
from benchmarks.flops import mixer_flops, utilization

MODES = ("graph", "xla", "frozen")


def inference_seconds(model, images, *, mode, repeats, warmup):
    """Time summary of `model.predict_on_batch(images)`, or of the frozen function's call."""
    if mode == "frozen":
        from export.serving import cpu_serving_function

        serve = cpu_serving_function(model, len(images))
        return common.measure(lambda: serve(images).numpy(), repeats=repeats, warmup=warmup)
    model.compile(jit_compile=mode == "xla")
    return common.measure(lambda: model.predict_on_batch(images), repeats=repeats, warmup=warmup)


def main(argv=None):
    arguments = common.parser(__doc__.splitlines()[0])
    arguments.add_argument("--variants", nargs="+", default=["S/32", "S/16", "B/16"])
    arguments.add_argument("--batch-sizes", nargs="+", type=int, default=[1, 32])
    arguments.add_argument("--modes", nargs="+", choices=MODES, default=["graph", "xla"])
    common.add_model_variations(arguments)
    arguments.add_argument(
        "--frameworks",
        nargs="+",
        choices=["keras", "tf_keras"],
        default=["keras"],
        help="tf_keras: the same graph from Keras 2 layers (a peer on the same runtime)",
    )
    arguments.add_argument("--image-size", type=int, default=224)
    args = arguments.parse_args(argv)
    import itertools

    variants, image_size, num_classes = common.sizes(args)
    models = itertools.product(variants, args.frameworks, args.precisions, args.gelu_dtypes)
    for variant, framework, precision, gelu_dtype in models:
        common.set_precision(precision)
        model, config = common.build_model(
            variant,
            image_size=image_size,
            num_classes=num_classes,
            gelu_dtype=gelu_dtype,
            framework=framework,
        )
        common.randomize_identities(model)
        flops = mixer_flops(**config, image_size=image_size, num_classes=num_classes)
        for mode, batch_size in itertools.product(args.modes, args.batch_sizes):
            images = common.random_images(batch_size, image_size)
            seconds = inference_seconds(
                model, images, mode=mode, repeats=args.repeats, warmup=args.warmup
            )
            common.emit(
                "inference_throughput",
                {
                    "variant": variant,
                    "framework": framework,
                    "mode": mode,
                    "precision": precision,
                    "gelu_dtype": gelu_dtype,
                    "batch_size": batch_size,
                    "image_size": image_size,
                    "batch": seconds,
                    "images_per_s": common.rate(batch_size, seconds),
                    "latency_ms": 1e3 * seconds["median_s"],
                    "forward_flops_per_image": flops["forward"],
                    **utilization(batch_size * flops["forward"] / seconds["median_s"], precision),
                },
                args,
            )
    common.set_precision("float32")


if __name__ == "__main__":
    main()
