"""Training throughput (images/s) of `model.fit` steps: variants x execution mode x precision.

    python -m benchmarks.train_throughput                                  # S/32 S/16 B/16 at 224
    python -m benchmarks.train_throughput --variants S/16 --modes graph \\
        --precisions mixed_bfloat16 --gelu-dtypes compute float32 fused     # the slow-path fixes
    python -m benchmarks.train_throughput --quick

Modes: "eager" (`run_eagerly=True`), "graph" (`tf.function`, Keras's default on a CPU:
`jit_compile="auto"` means no XLA without an accelerator) and "xla" (`jit_compile=True`).
Each configuration runs `fit` for `warmup + repeats` steps on one synthetic batch held in
memory (the input pipeline is benchmarks/input_pipeline.py's); a callback stamps the end of every step,
the first `warmup` steps (tracing, compiling) are dropped, and the rest give the median,
min and max step time. Adam, sparse categorical cross-entropy, 1000 classes.
"""

import time

from benchmarks import common
from benchmarks.flops import mixer_flops, utilization

MODES = {
    "eager": dict(run_eagerly=True, jit_compile=False),
    "graph": dict(run_eagerly=False, jit_compile=False),
    "xla": dict(run_eagerly=False, jit_compile=True),
}


def compile_for_benchmark(model, *, mode, one_hot=False):
    """Adam and cross-entropy (one-hot labels: mixup, label smoothing), in execution `mode`."""
    import keras

    loss = keras.losses.CategoricalCrossentropy if one_hot else keras.losses.SparseCategoricalCrossentropy
    model.compile(optimizer=keras.optimizers.Adam(1e-4), loss=loss(from_logits=True), **MODES[mode])


def fit_step_times(model, dataset, *, steps):
    """Seconds of each of `steps` consecutive `fit` steps of a compiled model on `dataset`.

    A second call reuses the compiled step (same shapes): no tracing in its first step.
    """
    import keras

    class StepClock(keras.callbacks.Callback):
        def on_train_begin(self, logs=None):
            self.stamps = [time.perf_counter()]

        def on_train_batch_end(self, batch, logs=None):
            self.stamps.append(time.perf_counter())

    clock = StepClock()
    model.fit(dataset, steps_per_epoch=steps, epochs=1, verbose=0, callbacks=[clock])
    return [end - start for start, end in zip(clock.stamps, clock.stamps[1:])]


def main(argv=None):
    arguments = common.parser(__doc__.splitlines()[0])
    arguments.add_argument("--variants", nargs="+", default=["S/32", "S/16", "B/16"])
    arguments.add_argument("--modes", nargs="+", choices=list(MODES), default=list(MODES))
    common.add_model_variations(arguments)
    arguments.add_argument("--batch-size", type=int, default=8)
    arguments.add_argument("--image-size", type=int, default=224)
    args = arguments.parse_args(argv)
    import itertools

    import numpy as np
    import tensorflow as tf

    variants, image_size, num_classes = common.sizes(args)
    images = common.random_images(args.batch_size, image_size)
    labels = np.random.default_rng(0).integers(0, num_classes, args.batch_size).astype("int32")
    batch = tf.data.Dataset.from_tensors((images, labels)).repeat()
    runs = itertools.product(variants, args.precisions, args.gelu_dtypes, args.modes)
    for variant, precision, gelu_dtype, mode in runs:
        common.set_precision(precision)
        model, config = common.build_model(
            variant,
            image_size=image_size,
            num_classes=num_classes,
            gelu_dtype=gelu_dtype,
        )
        compile_for_benchmark(model, mode=mode)
        seconds = fit_step_times(model, batch, steps=args.warmup + args.repeats)
        step = common.summarize(seconds[args.warmup :])
        flops = mixer_flops(**config, image_size=image_size, num_classes=num_classes)
        common.emit(
            "train_throughput",
            {
                "variant": variant,
                "mode": mode,
                "precision": precision,
                "gelu_dtype": gelu_dtype,
                "batch_size": args.batch_size,
                "image_size": image_size,
                "step": step,
                "images_per_s": common.rate(args.batch_size, step),
                "first_steps_s": seconds[: args.warmup],
                "train_flops_per_image": flops["train_step"],
                **utilization(
                    args.batch_size * flops["train_step"] / step["median_s"], precision
                ),
            },
            args,
        )
    common.set_precision("float32")


if __name__ == "__main__":
    main()
