"""What every benchmark shares: the command line, timing, the machine, JSON lines, the tiny config.

A measurement is the median of `repeats` timed runs after `warmup` untimed ones, reported
with the min and max, and printed as one JSON line that is also appended to
`RESULTS_DIR/<table>.jsonl` (gitignored; docs/benchmarks.md carries the published tables).

Nothing here imports TensorFlow or Keras at module level: the timm peer (benchmarks/peer_timm.py)
runs in an environment without them and shares the parser, timing and records.
"""

import argparse
import datetime
import json
import os
import platform
import statistics
import subprocess
import time

from training.onednn import prefer_onednn

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
prefer_onednn()  # the benchmarks measure the kernels the commands run

RESULTS_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results")

# The --quick config: not a paper variant, small enough that every script runs in seconds.
TINY = dict(patch_size=4, hidden_dim=16, num_blocks=2, tokens_mlp_dim=8, channels_mlp_dim=32)
TINY_IMAGE_SIZE = 16
TINY_NUM_CLASSES = 10

PRECISIONS = ("float32", "mixed_bfloat16")
# How a build spells the MLP's Dense-GELU, the same function each way (docs/benchmarks.md,
# "Slow paths"): "fused" is keras_mixer as it ships, its Dense handing matmul, bias and GELU
# to oneDNN as one kernel; "float32" is before that fix (Keras's Dense, then the GELU as a
# float32 Activation layer); "compute" is before the first fix (the GELU in the policy's
# compute dtype).
GELU_DTYPES = ("fused", "float32", "compute")


def parser(description):
    """An ArgumentParser with the options every benchmark takes."""
    arguments = argparse.ArgumentParser(description=description)
    arguments.add_argument(
        "--quick",
        action="store_true",
        help="tiny config, one repeat: a smoke test, not a measurement",
    )
    arguments.add_argument("--repeats", type=int, default=3, help="timed runs (median, min, max)")
    arguments.add_argument(
        "--warmup", type=int, default=1, help="untimed runs first (tracing, compiling)"
    )
    arguments.add_argument(
        "--results-dir", default=RESULTS_DIR, help="where <table>.jsonl is appended"
    )
    arguments.add_argument(
        "--round",
        type=int,
        help="the round of an alternated run (benchmarks/full_run.sh), recorded in each line",
    )
    return arguments


def add_model_variations(arguments):
    """The --precisions and --gelu-dtypes options of the throughput benchmarks.

    Example:
    >>> add_model_variations(parser("Training throughput"))
    """
    arguments.add_argument("--precisions", nargs="+", choices=PRECISIONS, default=list(PRECISIONS))
    arguments.add_argument(
        "--gelu-dtypes",
        nargs="+",
        choices=GELU_DTYPES,
        default=["fused"],
        help="'fused': as shipped; 'float32', 'compute': as before each slow-path fix",
    )


def sizes(args):
    """`(variants, image_size, num_classes)` to measure; `--quick` means the tiny config, one repeat.

    Example:
    >>> variants, image_size, num_classes = sizes(args)
    """
    if args.quick:
        args.repeats, args.warmup = 1, 1
        return ["tiny"], TINY_IMAGE_SIZE, TINY_NUM_CLASSES
    return args.variants, args.image_size, 1000


def summarize(seconds):
    """Median, min and max of a list of durations in seconds."""
    return {
        "median_s": statistics.median(seconds),
        "min_s": min(seconds),
        "max_s": max(seconds),
        "repeats": len(seconds),
    }


def measure(run, *, repeats, warmup):
    """Times `run()`: `warmup` untimed calls, then the summary of `repeats` timed ones.

    `run` must finish its work before it returns (e.g. convert outputs to NumPy).

    Example:
    >>> measure(lambda: model.predict_on_batch(images), repeats=3, warmup=1)["median_s"]
    """
    for _ in range(warmup):
        run()
    seconds = []
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        seconds.append(time.perf_counter() - start)
    return summarize(seconds)


def rate(count, summary):
    """Items per second from a time summary: the median time gives the median rate, the
    slowest run the minimum rate and the fastest run the maximum."""
    return {
        "median": count / summary["median_s"],
        "min": count / summary["max_s"],
        "max": count / summary["min_s"],
    }


def machine(software=None):
    """The machine a number was measured on, how busy it was at that moment, and the versions
    of what measured it: `software()` (default `keras_versions`; the peer passes its own)."""
    model_name, family, mhz, flags = "unknown", None, None, set()
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            for line in cpuinfo:
                key, _, value = line.partition(":")
                key, value = key.strip(), value.strip()
                if key == "model name":
                    model_name = value
                elif key == "cpu family" and family is None:
                    family = int(value)
                elif key == "cpu MHz" and mhz is None:
                    mhz = float(value)
                elif key == "flags" and not flags:
                    flags = set(value.split())
    except OSError:
        pass
    return {
        "cpu": model_name,
        "cpu_family": family,  # Zen 4 from Zen 5 (benchmarks.flops.cpu_kind)
        "cores": os.cpu_count(),
        "mhz": mhz,
        "amx_bf16": "amx_bf16" in flags,
        "avx512_bf16": "avx512_bf16" in flags,
        "avx512f": "avx512f" in flags,
        "load_average_1min": os.getloadavg()[0],
        "other_pytest_processes": _count_processes("pytest"),
        "python": platform.python_version(),
        **(software or keras_versions)(),
    }


def keras_versions():
    """TensorFlow's and Keras's versions, Keras's backend and JAX's version under it."""
    import keras
    import tensorflow as tf

    return {"tensorflow": tf.__version__, "keras": keras.__version__, **backend_versions()}


def backend_versions():
    """Keras's backend, and JAX's version under it (TensorFlow's is always recorded)."""
    import keras

    backend = keras.backend.backend()
    if backend != "jax":
        return {"backend": backend}
    import jax

    return {"backend": backend, "jax": jax.__version__}


def _count_processes(word):
    """How many running processes mention `word` in their command line (besides ourselves)."""
    count = 0
    for pid in filter(str.isdigit, os.listdir("/proc")):
        if int(pid) == os.getpid():
            continue
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as cmdline:
                if word.encode() in cmdline.read():
                    count += 1
        except OSError:
            continue
    return count


def git_commit():
    try:
        return subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            cwd=os.path.dirname(RESULTS_DIR),
            timeout=10,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None


def emit(table, record, args, software=None):
    """Prints `record` as one JSON line and appends it to `<results_dir>/<table>.jsonl`.

    The line also gets the round (`--round`, when given), whether it is a --quick line, the
    time, the commit and `machine(software)`.
    """
    record = {
        "table": table,
        **record,
        **({"round": args.round} if getattr(args, "round", None) is not None else {}),
        "quick": bool(args.quick),
        "time_utc": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "commit": git_commit(),
        "machine": machine(software),
    }
    line = json.dumps(record, sort_keys=False)
    print(line, flush=True)
    os.makedirs(args.results_dir, exist_ok=True)
    with open(os.path.join(args.results_dir, f"{table}.jsonl"), "a") as results:
        results.write(line + "\n")
    return record


def mixer_layers(module, gelu_dtype):
    """The layers namespace a benchmark build of `gelu_dtype` (GELU_DTYPES) passes build_mixer,
    for every build but Keras's "fused" one, which is `MlpMixer` itself (`build_model`).

    tf_keras has no fused Dense: its "fused" build is the tf_keras twin as export builds it
    (the GELU inside tf_keras's Dense, in the policy's dtype).

    Example:
    >>> inputs, outputs = build_mixer(mixer_layers(keras, "float32"), **get_variant("S/16"))
    """
    import functools

    from export import graph
    from keras_mixer.layers import with_layers

    layers = module.layers
    if gelu_dtype == "fused":
        return layers
    if gelu_dtype == "float32":
        # The Mixer's only Activation layers are the GELUs that activations_as_layers adds.
        layers = with_layers(layers, Activation=functools.partial(layers.Activation, dtype="float32"))
    return graph.activations_as_layers(layers)


def set_precision(precision):
    """Sets the global dtype policy ("float32" or "mixed_bfloat16") of Keras 3 and tf_keras."""
    import keras
    import tf_keras

    keras.backend.clear_session()
    keras.mixed_precision.set_global_policy(precision)
    tf_keras.backend.clear_session()
    tf_keras.mixed_precision.set_global_policy(precision)


def build_model(variant, *, image_size, num_classes=1000, gelu_dtype="fused", framework="keras"):
    """A Mixer for benchmarking: a paper variant name, or "tiny" (the --quick config).

    `gelu_dtype="fused"` is keras_mixer's `MlpMixer` as users get it; "float32" and "compute"
    build the same function as before each slow-path fix (`mixer_layers`).
    `framework="tf_keras"` builds the same graph from tf_keras (Keras 2) layers, the twin
    export hands to tfmot: a peer implementation on the same runtime. Weights are random: speed does not depend on them.
    """
    import keras
    import tf_keras

    from keras_mixer import MlpMixer, build_mixer, get_variant

    config = dict(TINY) if variant == "tiny" else get_variant(variant)
    module = {"keras": keras, "tf_keras": tf_keras}[framework]
    if framework == "keras" and gelu_dtype == "fused":
        model = MlpMixer(**config, num_classes=num_classes, image_size=image_size)
        return model, config
    layers = mixer_layers(module, gelu_dtype)
    inputs, outputs = build_mixer(layers, **config, num_classes=num_classes, image_size=image_size)
    return module.Model(inputs, outputs, name=f"mixer_{variant.replace('/', '_')}"), config


def randomize_identities(model, seed=0):
    """`model` with random head, biases and LayerNorm scales and offsets, as a trained one has.

    Keras initialises LayerNorm to scale 1 and offset 0, and biases and the Mixer's head to 0.
    A graph with such weights as constants (a frozen graph, a TFLite file) folds them away,
    and with them the kernels a trained model runs (a BiasAdd, a fused GELU), so the
    benchmarks that freeze or convert a model randomize them first.
    """
    import numpy as np

    rng = np.random.default_rng(seed)
    for weight in model.weights:
        # A tf_keras variable's name is its path, plus ":0".
        path = getattr(weight, "path", weight.name.removesuffix(":0"))
        name = path.split("/")[-1]
        if name in ("gamma", "beta", "bias") or path.startswith("head/"):
            center = 1.0 if name == "gamma" else 0.0
            spread = 0.02 if path.startswith("head/") else 0.1
            weight.assign(rng.normal(center, spread, weight.shape).astype("float32"))
    return model


def random_images(count, image_size, seed=0):
    """Float32 pixels in [0, 255], the model's input, shape (count, size, size, 3)."""
    import numpy as np

    return (
        np.random.default_rng(seed)
        .uniform(0, 255, (count, image_size, image_size, 3))
        .astype("float32")
    )
