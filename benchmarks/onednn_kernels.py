"""Which oneDNN kernel runs each primitive of a train step, a predict and a frozen serve.

    python -m benchmarks.onednn_kernels --variant S/16 --precision mixed_bfloat16
    python -m benchmarks.onednn_kernels --quick

With ONEDNN_VERBOSE=1, oneDNN prints a line for every primitive it executes, naming its
implementation: `brg_matmul:avx10_1_512_amx` and `brgemm:avx512_core_amx` are the matrix
units' kernels (`avx512_core_bf16` on a CPU without AMX), `x64:gemm:jit` the generic one.
oneDNN reads the variable once, when TensorFlow loads, so each step runs in a child process
(`--child`) that prints a marker before its measured calls, and whether TensorFlow runs
oneDNN's kernels; the parent sums the `exec` lines after it per (primitive, implementation,
propagation kind): calls and oneDNN's own milliseconds, per call. The model is `MlpMixer` as
users build it, compiled with Adam and cross-entropy in graph mode (XLA's own dot does not go
through these primitives); `serve` is the same model through
export.serving.cpu_serving_function, its weights as graph constants (its biases and LayerNorms
randomized first, as trained ones are: zeros would fold away).
`generic` counts the calls of matmuls and inner products on the generic kernel in
bfloat16: the check of docs/benchmarks.md, "oneDNN kernels". `onednn` says whether
TensorFlow runs oneDNN's kernels on this CPU at all: its x86 build does not by default on a
CPU without AVX-512 VNNI or bfloat16, AVX-VNNI or AMX, and the benchmarks turn them on as
the commands do (training/onednn.py); there the histogram holds only `gemm_api` lines, the
GEMMs TensorFlow hands oneDNN.
"""

import argparse
import collections
import os
import subprocess
import sys

from benchmarks import common

STEPS = ("train", "predict", "serve")
MARKER = "keras-mixer-measured-calls"
ONEDNN = "onednn"  # after MARKER where TensorFlow runs oneDNN's kernels, else "eigen"
# A matmul that oneDNN runs off the matrix units: its generic gemm kernel.
GENERIC = "gemm:jit"
MATMUL_PRIMITIVES = ("matmul", "inner_product", "gemm_api")


def child(args):
    """Runs `args.child` (a step of STEPS) under ONEDNN_VERBOSE, MARKER before measured calls."""
    import keras
    import numpy as np

    from training.tensorflow_internals import onednn_enabled

    variant, image_size, num_classes = _size(args)
    common.set_precision(args.precision)
    model, _ = common.build_model(variant, image_size=image_size, num_classes=num_classes)
    common.randomize_identities(model)
    model.compile(
        optimizer=keras.optimizers.Adam(1e-4),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        jit_compile=False,
    )
    images = common.random_images(args.batch_size, image_size)
    labels = np.random.default_rng(0).integers(0, num_classes, args.batch_size)
    if args.child == "serve":
        from export.serving import cpu_serving_function

        serve = cpu_serving_function(model, args.batch_size)
    call = {
        "train": lambda: model.train_on_batch(images, labels),
        "predict": lambda: np.asarray(model.predict_on_batch(images)),
        "serve": lambda: np.asarray(serve(images)),
    }[args.child]
    for _ in range(args.warmup):
        call()
    print(MARKER, ONEDNN if onednn_enabled() else "eigen", flush=True)
    for _ in range(args.repeats):
        call()
    sys.stdout.flush()


def _size(args):
    if args.quick:
        return "tiny", common.TINY_IMAGE_SIZE, common.TINY_NUM_CLASSES
    return args.variant, args.image_size, 1000


def histogram(stdout, calls):
    """`[{primitive, implementation, propagation, calls, ms}]` per call, from oneDNN's exec lines
    after MARKER, the slowest first."""
    _, _, measured = stdout.partition(MARKER)
    counts, millis = collections.Counter(), collections.Counter()
    for line in measured.splitlines():
        fields = line.split(",")
        if not line.startswith("onednn_verbose") or len(fields) < 9 or fields[3] != "exec":
            continue
        key = (fields[5], fields[6] or "(none)", fields[7])
        counts[key] += 1
        millis[key] += float(fields[-1])
    rows = [
        {"primitive": primitive, "implementation": implementation, "propagation": propagation,
         "calls": counts[key] / calls, "ms": millis[key] / calls}
        for key in counts
        for primitive, implementation, propagation in [key]
    ]
    return sorted(rows, key=lambda row: -row["ms"])


def generic_matmul_calls(rows):
    """Calls per step of matmuls and inner products on oneDNN's generic gemm kernel."""
    return sum(row["calls"] for row in rows
               if row["primitive"] in MATMUL_PRIMITIVES and GENERIC in row["implementation"])


def main(argv=None):
    arguments = common.parser(__doc__.splitlines()[0])
    arguments.add_argument("--variant", default="S/16")
    arguments.add_argument("--precision", choices=common.PRECISIONS, default="mixed_bfloat16")
    arguments.add_argument("--steps", nargs="+", choices=STEPS, default=list(STEPS))
    arguments.add_argument("--batch-size", type=int, default=8)
    arguments.add_argument("--image-size", type=int, default=224)
    arguments.add_argument("--child", choices=STEPS, help=argparse.SUPPRESS)
    args = arguments.parse_args(argv)
    if args.quick:
        args.repeats, args.warmup = 1, 1
    if args.child:
        return child(args)
    variant, image_size, _ = _size(args)
    for step in args.steps:
        command = [sys.executable, "-m", "benchmarks.onednn_kernels", "--child", step,
                   "--variant", args.variant, "--precision", args.precision,
                   "--batch-size", str(args.batch_size), "--image-size", str(args.image_size),
                   "--repeats", str(args.repeats), "--warmup", str(args.warmup)]
        if args.quick:
            command.append("--quick")
        finished = subprocess.run(
            command, env={**os.environ, "ONEDNN_VERBOSE": "1"}, capture_output=True, text=True,
            check=False,
        )
        if finished.returncode:
            raise SystemExit(f"the {step} child failed:\n{finished.stderr[-2000:]}")
        rows = histogram(finished.stdout, args.repeats)
        common.emit(
            "onednn_kernels",
            {
                "variant": variant,
                "precision": args.precision,
                "step": step,
                "batch_size": args.batch_size,
                "image_size": image_size,
                "onednn": f"{MARKER} {ONEDNN}" in finished.stdout,
                "generic_matmul_calls": generic_matmul_calls(rows),
                "kernels": rows,
            },
            args,
        )


if __name__ == "__main__":
    main()
