"""Training and inference throughput under Keras's TensorFlow and JAX backends, alternated.

    python -m benchmarks.backends                         # S/16 at 224, batch 32, two rounds
    python -m benchmarks.backends --variants S/16 B/16 --rounds 2
    python -m benchmarks.backends --quick

Keras reads KERAS_BACKEND once per process, so each (round, backend) is a subprocess of
this script (`--backend NAME`), the backends alternating within every round so that both
see the same machine. Each measures `model.fit` steps (benchmarks/train_throughput.py's
clock: Adam, one synthetic in-memory batch, warm-up steps dropped) and `predict_on_batch`
(benchmarks/inference_throughput.py's), in float32 and mixed_bfloat16, in each backend's
compiled mode: TensorFlow's graph (its CPU default) and XLA, JAX's jit (XLA; JAX has no
other compiled mode). One JSON line per figure, table "backends", with the round. Table
"backends_matmul": one matmul of S/16's channel MLP at batch 32, (32 x 196, 512) x (512,
2048), compiled each backend's way, in float32 and bfloat16: what each backend's CPU kernels
reach on the product that dominates the model.
"""

import os
import subprocess
import sys

from benchmarks import common
from benchmarks.flops import mixer_flops
from benchmarks.inference_throughput import inference_seconds
from benchmarks.train_throughput import compile_for_benchmark, fit_step_times

BACKENDS = ("tensorflow", "jax")
# The compiled modes of benchmarks/train_throughput.py that each backend has.
BACKEND_MODES = {"tensorflow": ("graph", "xla"), "jax": ("xla",)}


MATMUL_SHAPE = (32 * 196, 512, 2048)  # (rows, inner, columns)
QUICK_MATMUL_SHAPE = (64, 32, 64)


def matmul_seconds(dtype, shape, *, repeats, warmup):
    """Time summary of one (rows, inner) x (inner, columns) product in `dtype`, jitted under
    JAX, in a tf.function under TensorFlow (its CPU default: oneDNN, no XLA)."""
    import keras
    import numpy as np

    rows, inner, columns = shape
    rng = np.random.default_rng(0)
    a = keras.ops.convert_to_tensor(rng.random((rows, inner)), dtype)
    b = keras.ops.convert_to_tensor(rng.random((inner, columns)), dtype)
    if keras.backend.backend() == "jax":
        import jax

        product = jax.jit(lambda a, b: a @ b)
        return common.measure(lambda: product(a, b).block_until_ready(), repeats=repeats, warmup=warmup)
    import tensorflow as tf

    product = tf.function(tf.matmul)
    return common.measure(lambda: product(a, b).numpy(), repeats=repeats, warmup=warmup)


def measure_backend(args):
    """This process's figures, under the backend Keras was imported with."""
    import keras
    import numpy as np
    import tensorflow as tf

    backend = keras.backend.backend()
    variants, image_size, num_classes = common.sizes(args)  # --quick: one repeat
    shape = QUICK_MATMUL_SHAPE if args.quick else MATMUL_SHAPE
    rows, inner, columns = shape
    for dtype in ("float32", "bfloat16"):
        summary = matmul_seconds(dtype, shape, repeats=10 * args.repeats, warmup=args.warmup)
        common.emit(
            "backends_matmul",
            {"backend": backend, "dtype": dtype, "shape": list(shape), "round": args.round,
             "step": summary, "gflops": 2 * rows * inner * columns / summary["median_s"] / 1e9},
            args,
        )
    images = common.random_images(args.batch_size, image_size)
    labels = np.random.default_rng(0).integers(0, num_classes, args.batch_size).astype("int32")
    batch = tf.data.Dataset.from_tensors((images, labels)).repeat()
    for variant in variants:
        for precision in args.precisions:
            for mode in BACKEND_MODES[backend]:
                common.set_precision(precision)
                model, config = common.build_model(
                    variant, image_size=image_size, num_classes=num_classes
                )
                flops = mixer_flops(**config, image_size=image_size, num_classes=num_classes)
                compile_for_benchmark(model, mode=mode)
                seconds = fit_step_times(model, batch, steps=args.warmup + args.repeats)
                train_step = common.summarize(seconds[args.warmup :])
                inference = inference_seconds(
                    model, images, mode=mode, repeats=args.repeats,
                    warmup=args.warmup,
                )
                for what, summary, step_flops in (
                    ("training", train_step, flops["train_step"]),
                    ("inference", inference, flops["forward"]),
                ):
                    common.emit(
                        "backends",
                        {
                            "variant": variant,
                            "backend": backend,
                            "what": what,
                            "mode": mode,
                            "precision": precision,
                            "batch_size": args.batch_size,
                            "image_size": image_size,
                            "step": summary,
                            "images_per_s": common.rate(args.batch_size, summary),
                            "gflops": args.batch_size * step_flops / summary["median_s"] / 1e9,
                        },
                        args,
                    )
    common.set_precision("float32")


def main(argv=None):
    arguments = common.parser(__doc__.splitlines()[0])
    arguments.add_argument("--variants", nargs="+", default=["S/16"])
    arguments.add_argument(
        "--precisions", nargs="+", choices=common.PRECISIONS, default=list(common.PRECISIONS)
    )
    arguments.add_argument("--batch-size", type=int, default=32)
    arguments.add_argument("--image-size", type=int, default=224)
    arguments.add_argument("--rounds", type=int, default=2)
    arguments.add_argument("--backend", choices=BACKENDS, help="(internal) measure this one")
    args, passed = arguments.parse_args(argv), list(argv if argv is not None else sys.argv[1:])
    if args.backend:
        return measure_backend(args)
    for round_index in range(1, (1 if args.quick else args.rounds) + 1):
        for backend in BACKENDS:
            command = [sys.executable, "-m", "benchmarks.backends", *passed,
                       "--backend", backend, "--round", str(round_index)]
            subprocess.run(command, check=True, env={**os.environ, "KERAS_BACKEND": backend})
    return None


if __name__ == "__main__":
    main()
