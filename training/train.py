"""`python -m training.train`: trains a Mixer with Keras `fit`, on TensorFlow or JAX; the command
line over `training.loop.run` (the Python API).

    python -m training.train                               # digits, a few minutes on 2 CPU cores
    python -m training.train --backend jax --recipe i1k --variant B/16 --data-dir gs://B/tfds
    python -m training.train --recipe i1k --variant B/16 --data-dir gs://B/tfds --tpu local
    python -m training.train --recipe finetune --init mixer_b16_imagenet21k --dataset cifar10

The command trains, then hands the run directory to export's own command,
`python -m export.convert RUN --out RUN/export`, as a user would: training never imports
export (export depends on training, for the data). `--no-export` stops after training. Bad input is one line on stderr and exit code 2, before anything is written.
SIGTERM (preemption) saves a step checkpoint, prints one line and exits with 143
(training/preemption.py); Ctrl-C exits with 130.
"""

import argparse
import importlib
import importlib.util
import json
import os
import subprocess
import sys

from training import console, onednn

# The Keras backends this command can select, and the install each one needs.
BACKEND_PACKAGES = {"tensorflow": "tensorflow", "jax": "jax"}


def select_backend(argv):
    """Sets KERAS_BACKEND from `--backend NAME` (Keras reads it once, on import) and checks
    that the backend is installed; returns an error line, or None."""
    for index, arg in enumerate(argv):
        name = arg.partition("=")[2] if arg.startswith("--backend=") else None
        if arg == "--backend" and index + 1 < len(argv):
            name = argv[index + 1]
        if name in BACKEND_PACKAGES:
            os.environ["KERAS_BACKEND"] = name
    backend = os.environ.get("KERAS_BACKEND", "tensorflow")
    package = BACKEND_PACKAGES.get(backend)
    if package is None:
        return None  # Keras's own message (or ours, in training/placement.py) names it
    try:
        importlib.import_module(package)
    except ImportError as error:
        return (
            f"KERAS_BACKEND={backend} but {package} does not import ({error}): install it "
            "(pip install -r requirements.txt; on a Cloud TPU VM -r requirements-tpu-jax.txt)."
        )
    return None


# Flags that set the config key of the same name (dashes for underscores).
CONFIG_FLAGS = (
    "dataset", "data_dir", "variant", "init", "image_size", "batch_size", "epochs",
    "learning_rate", "seed", "strategy", "tpu", "dtype_policy", "backend",
)


def parse_args(argv=None):
    from training.config import DTYPE_POLICIES, SETTINGS, STRATEGY_KINDS, TRAINING_BACKENDS

    settings = "\n".join(
        f"  {key} = {json.dumps(setting.default)}" + (f"  ({setting.help})" if setting.help else "")
        for key, setting in SETTINGS.items()
    )
    parser = argparse.ArgumentParser(
        prog="python -m training.train",
        description=__doc__.split("\n\n")[0],
        epilog=f"config keys for --set (training/config.py), with their defaults:\n{settings}",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--recipe", default="digits", help="named config in training/recipes.py (default: digits)"
    )
    parser.add_argument(
        "--run-dir",
        help="output directory, local or gs://; rerun the same command to resume "
        "(default: runs/<recipe>)",
    )
    parser.add_argument(
        "--dataset",
        help="tfds name (cifar10, imagenet2012, ...) or a folder ROOT/<split>/<class>/<image>",
    )
    parser.add_argument("--data-dir", help="tfds data_dir, local or gs://")
    parser.add_argument("--variant", help="paper variant, e.g. S/16, B/16")
    parser.add_argument("--init", help="preset name (e.g. mixer_b16_imagenet21k) or official .npz "
                                       "to fine-tune from (new head)")
    parser.add_argument("--image-size", type=int)
    parser.add_argument("--batch-size", type=int, help="global batch size")
    parser.add_argument("--epochs", type=int)
    parser.add_argument("--learning-rate", type=float)
    parser.add_argument("--seed", type=int)
    parser.add_argument(
        "--backend",
        choices=TRAINING_BACKENDS,
        help="the Keras backend to train on (sets KERAS_BACKEND; default: KERAS_BACKEND's)",
    )
    parser.add_argument(
        "--strategy", choices=STRATEGY_KINDS, help="TensorFlow's tf.distribute strategy"
    )
    parser.add_argument("--tpu", help="TPU name, grpc://host:port, or 'local' on a Cloud TPU VM")
    parser.add_argument("--dtype-policy", choices=DTYPE_POLICIES)
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override any config key (training/config.py); VALUE is JSON where it parses as "
        "JSON (e.g. --set model='{\"hidden_dim\": 128}'), else text",
    )
    parser.add_argument("--no-export", action="store_true", help="stop after training")
    console.add_verbose_flag(parser)
    return parser.parse_args(argv)


def _parse_value(key, text):
    from training.errors import ConfigError

    try:
        return json.loads(text)
    except json.JSONDecodeError as error:
        if text.lstrip()[:1] in ("{", "[", '"'):
            raise ConfigError(
                f"--set {key}={text!r} is not valid JSON ({error}). Quote the whole value "
                "for the shell, e.g. --set model='{\"hidden_dim\": 128}'."
            ) from None
        return text  # a plain word: a dataset name, a path


def config_from_args(args):
    """The checked run config the flags and `--set` ask for (ConfigError on bad input)."""
    from training.errors import ConfigError
    from training.recipes import get_recipe

    overrides = {
        key: getattr(args, key) for key in CONFIG_FLAGS if getattr(args, key) is not None
    }
    for item in args.set:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"--set {item!r}: expected KEY=VALUE, e.g. --set epochs=5")
        overrides[key.strip()] = _parse_value(key.strip(), value)
    if args.init and "num_channels" not in overrides:
        overrides["num_channels"] = 3  # official checkpoints take RGB; gray images are tiled
    return get_recipe(args.recipe, **overrides)


def export_run(run_dir, verbose=False):
    """Runs export's command on the run directory; returns its exit code (0 when skipped)."""
    missing = [name for name in ("export", "ai_edge_litert") if not importlib.util.find_spec(name)]
    if missing:
        print(
            f"Export skipped: {', '.join(missing)} is not installed here (the TPU stack has no "
            f"LiteRT). Convert later with `python -m export.convert {run_dir}`.",
            flush=True,
        )
        return 0
    from keras_mixer import storage

    command = [sys.executable, "-m", "export.convert", run_dir, "--out",
               storage.join(run_dir, "export")] + (["--verbose"] if verbose else [])
    # The checkout this package is in, for a run started from another directory.
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    path = os.pathsep.join(filter(None, [root, os.environ.get("PYTHONPATH")]))
    # Export runs on TensorFlow, which the LiteRT converter needs, whatever trained the run.
    env = {**os.environ, "PYTHONPATH": path, "KERAS_BACKEND": "tensorflow"}
    return subprocess.call(command, env=env)


def main(argv=None):
    """`python -m training.train [--recipe NAME] [--FLAG VALUE ...]`; returns the exit code."""
    argv = sys.argv[1:] if argv is None else argv
    console.configure(verbose="--verbose" in argv)
    onednn.prefer_onednn()  # before select_backend, which imports TensorFlow
    backend_error = select_backend(argv)
    if backend_error:
        return console.user_error(backend_error)
    # Imported once the console filters stderr and KERAS_BACKEND is set: TensorFlow logs from
    # C++ as it loads, and Keras reads KERAS_BACKEND once, as it loads.
    from keras_mixer.checkpoint import CheckpointError
    from keras_mixer.presets import PresetError
    from keras_mixer.storage import StorageError
    from training import loop, preemption
    from training.errors import ConfigError, DataError, RunDirInUseError, StrategyError

    args = parse_args(argv)
    try:
        run_dir = loop.run(config_from_args(args), args.run_dir)
    except (
        ConfigError, DataError, StrategyError, CheckpointError, PresetError, StorageError,
        loop.NonFiniteLossError, RunDirInUseError,
    ) as error:
        return console.user_error(error)
    except KeyboardInterrupt:
        print("interrupted: rerun the same command to resume.", file=sys.stderr, flush=True)
        return 130
    except preemption.Preempted as preempted:
        print(f"preempted: {preempted}", file=sys.stderr, flush=True)
        return preemption.EXIT_CODE
    if args.no_export or run_dir is None:  # None: a cluster worker that is not the chief
        return 0
    return export_run(run_dir, verbose=args.verbose)


if __name__ == "__main__":
    sys.exit(main())
