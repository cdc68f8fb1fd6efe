"""The command lines `python -m export.convert` and `python -m export.predict`: thin layers
over `export.convert.convert` and `export.predict.predict`.

Each sets up the console (training.console) before TensorFlow or LiteRT is imported, so that
their native log lines are dropped unless `--verbose`; this module therefore imports them
inside the functions. A mistake of the user's (a missing or corrupt file, a bad setting, a
dataset that is not there) is one line, `error: ...`, and exit code 2; a quantized model
outside `--max-accuracy-drop` prints the report and exits 1.
"""

import argparse
import ctypes
import os
import sys

from export.formats import DEFAULT_FORMATS, FORMATS, SAVED_MODEL
from export.settings import (
    FINE_TUNE_EPOCHS, MAX_FINE_TUNE_STEPS, MIN_FINE_TUNE_STEPS, ExportSettings)
from training import console

# What a user can fix: missing, corrupt or unwritable paths (OSError, keras_mixer's
# StorageError), bad settings, configs and data (ValueError), a missing package (ImportError),
# a model that is not a Mixer (TypeError).
USER_ERRORS = (OSError, ImportError, TypeError, ValueError)
DEFAULTS = ExportSettings()
# glibc's mallopt parameter M_MMAP_THRESHOLD (malloc.h), and the size from which buffers are
# mapped on their own (glibc's own initial threshold; it then rises with each freed buffer).
M_MMAP_THRESHOLD = -3
MMAP_THRESHOLD_BYTES = 128 * 1024


def _error(error):
    print(f"error: {' '.join(str(error).split())}", file=sys.stderr)
    return 2


def return_freed_memory():
    """Makes the memory an export frees go back to the system, before TensorFlow loads.

    Every format's converter restores the SavedModel's variables and writes several copies
    of the flatbuffer, then frees them; kept by the allocators, those buffers add up to
    about a third of an export's peak (docs/benchmarks.md, "Export at scale"). Two
    allocators keep them: TensorFlow's oneDNN CPU allocator pools large buffers and never
    returns them (`TF_ONEDNN_USE_SYSTEM_ALLOCATOR` hands them to malloc; oneDNN kernels stay
    on), and glibc raises its mmap threshold to each freed buffer's size, so later buffers
    land in a heap that it seldom returns (a fixed threshold maps each on its own). Read
    when TensorFlow loads, so it must run before; a no-op where there is no glibc.
    """
    os.environ.setdefault("TF_ONEDNN_USE_SYSTEM_ALLOCATOR", "1")
    try:
        ctypes.CDLL(None).mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES)
    except (OSError, AttributeError):  # not glibc (macOS, Windows): its allocator decides
        pass


def _verbose(parser):
    parser.add_argument("--verbose", action="store_true",
                        help="keep TensorFlow's and LiteRT's native log lines")


def convert_parser():
    parser = argparse.ArgumentParser(
        prog="python -m export.convert",
        description="Trained Mixer -> SavedModel and one verified .tflite per format, with a "
                    "report.")
    parser.add_argument("source", help="training run directory or .keras file (local or gs://)")
    parser.add_argument("--out", required=True, help="output directory (local or gs://)")
    parser.add_argument("--formats", nargs="+", default=None,
                        help=f"any of: {SAVED_MODEL} {' '.join(FORMATS)} "
                             f"(default: {SAVED_MODEL} {' '.join(DEFAULT_FORMATS)})")
    parser.add_argument("--config", help="run config.json, when SOURCE has none beside it")
    parser.add_argument("--io-dtype", choices=("int8", "uint8"), default=DEFAULTS.io_dtype,
                        help="input/output type of full-integer models (uint8: raw camera pixels)")
    parser.add_argument("--max-accuracy-drop", type=float, default=DEFAULTS.max_accuracy_drop,
                        help="fail when a quantized model's top-1 drops more than this many points")
    parser.add_argument("--calibration-samples", type=int, default=DEFAULTS.calibration_samples)
    parser.add_argument("--eval-samples", type=int, default=DEFAULTS.eval_samples,
                        help="0: the whole test split")
    parser.add_argument("--fine-tune-steps", type=int, default=DEFAULTS.fine_tune_steps,
                        help="steps of QAT, pruning and clustering fine-tuning (default: "
                             f"{FINE_TUNE_EPOCHS} epochs of the training split, "
                             f"{MIN_FINE_TUNE_STEPS} to {MAX_FINE_TUNE_STEPS} steps)")
    parser.add_argument("--fine-tune-learning-rate", type=float, default=None,
                        help="Adam learning rate of that fine-tuning (default: QAT 3e-5, "
                             "pruning and clustering 1e-3)")
    parser.add_argument("--target-sparsity", type=float, default=DEFAULTS.target_sparsity)
    parser.add_argument("--clusters", type=int, default=DEFAULTS.number_of_clusters,
                        help="weight clusters per kernel")
    _verbose(parser)
    return parser


def convert_main(argv=None):
    """`python -m export.convert SOURCE --out DIR ...`; returns the exit code."""
    args = convert_parser().parse_args(argv)
    console.configure(args.verbose, progress=["export"])
    return_freed_memory()
    from export import convert
    from export.report import markdown_report

    formats = [name for value in args.formats or () for name in value.split(",") if name] or None
    try:
        settings = ExportSettings(
            io_dtype=args.io_dtype, max_accuracy_drop=args.max_accuracy_drop,
            calibration_samples=args.calibration_samples, eval_samples=args.eval_samples or None,
            fine_tune_steps=args.fine_tune_steps,
            fine_tune_learning_rate=args.fine_tune_learning_rate,
            target_sparsity=args.target_sparsity, number_of_clusters=args.clusters)
        report = convert.convert(args.source, args.out, formats, config=args.config,
                                 settings=settings)
    except convert.AccuracyBudgetError as error:
        print(markdown_report(error.report))
        print(f"FAILED: {error}", file=sys.stderr)
        return 1
    except USER_ERRORS as error:
        return _error(error)
    print(markdown_report(report))
    print(f"Wrote {', '.join(r['file'] for r in report['formats'].values())}, labels.txt, "
          f"report.json, report.md, report.png to {args.out}")
    return 0


def predict_parser():
    parser = argparse.ArgumentParser(
        prog="python -m export.predict",
        description="Classifies image files with an exported .tflite model, as an app does.")
    parser.add_argument("model", help=".tflite file (labels.txt beside it names the classes)")
    parser.add_argument("images", nargs="+", help="image files")
    parser.add_argument("--labels", help="labels file (default: labels.txt beside the model)")
    parser.add_argument("--top", type=int, default=5)
    _verbose(parser)
    return parser


def predict_main(argv=None):
    """`python -m export.predict MODEL IMAGE ...`; returns the exit code."""
    args = predict_parser().parse_args(argv)
    console.configure(args.verbose)
    from export import predict

    try:
        results = predict.predict(args.model, args.images, labels=args.labels, top=args.top)
    except USER_ERRORS as error:
        return _error(error)
    for path, classes in zip(args.images, results):
        print(f"{path}: " + ", ".join(f"{name} {probability:.3f}" for name, probability in classes))
    return 0
