"""`python -m export.convert`: a trained Mixer -> SavedModel and one verified `.tflite` per
format, with a report; the command line over `export.pipeline.convert`.

    python -m export.convert runs/digits --out exports/digits
    python -m export.convert model.keras --config config.json --out exports/m \\
        --formats fp32 int8 qat_int8 --io-dtype uint8 --max-accuracy-drop 0.5

A mistake of the user's (a missing or corrupt file, a bad setting, a dataset that is not
there) is one line, `error: ...`, and exit code 2; a quantized model outside
`--max-accuracy-drop` prints the report and exits 1.
"""

import argparse
import ctypes
import os
import sys

from training import console, onednn

# glibc's mallopt parameter M_MMAP_THRESHOLD (malloc.h), and the size from which buffers are
# mapped on their own (glibc's own initial threshold; it then rises with each freed buffer).
M_MMAP_THRESHOLD = -3
MMAP_THRESHOLD_BYTES = 128 * 1024


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


def parser():
    # export.formats and export.settings are plain data: they load no TensorFlow.
    from export.formats import DEFAULT_FORMATS, FORMATS, SAVED_MODEL
    from export.settings import (
        FINE_TUNE_EPOCHS,
        MAX_FINE_TUNE_STEPS,
        MIN_FINE_TUNE_STEPS,
        ExportSettings,
    )

    defaults = ExportSettings()
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
    parser.add_argument("--io-dtype", choices=("int8", "uint8"), default=defaults.io_dtype,
                        help="input/output type of full-integer models (uint8: raw camera pixels)")
    parser.add_argument("--max-accuracy-drop", type=float, default=defaults.max_accuracy_drop,
                        help="fail when a quantized model's top-1 drops more than this many points")
    parser.add_argument("--calibration-samples", type=int, default=defaults.calibration_samples)
    parser.add_argument("--eval-samples", type=int, default=defaults.eval_samples,
                        help="0: the whole test split")
    parser.add_argument("--fine-tune-steps", type=int, default=defaults.fine_tune_steps,
                        help="steps of QAT, pruning and clustering fine-tuning (default: "
                             f"{FINE_TUNE_EPOCHS} epochs of the training split, "
                             f"{MIN_FINE_TUNE_STEPS} to {MAX_FINE_TUNE_STEPS} steps)")
    parser.add_argument("--fine-tune-learning-rate", type=float, default=None,
                        help="Adam learning rate of that fine-tuning (default: QAT 3e-5, "
                             "pruning and clustering 1e-3)")
    parser.add_argument("--target-sparsity", type=float, default=defaults.target_sparsity)
    parser.add_argument("--clusters", type=int, default=defaults.number_of_clusters,
                        help="weight clusters per kernel")
    console.add_verbose_flag(parser)
    return parser


def main(argv=None):
    """`python -m export.convert SOURCE --out DIR ...`; returns the exit code."""
    args = parser().parse_args(argv)
    console.configure(args.verbose, progress=["export"])
    return_freed_memory()
    onednn.prefer_onednn()
    # Imported once the console filters stderr and the allocators and kernels are chosen:
    # TensorFlow logs from C++ as it loads, and reads those settings then.
    from export import pipeline
    from export.report import markdown_report
    from export.settings import ExportSettings

    formats = [name for value in args.formats or () for name in value.split(",") if name] or None
    try:
        settings = ExportSettings(
            io_dtype=args.io_dtype, max_accuracy_drop=args.max_accuracy_drop,
            calibration_samples=args.calibration_samples, eval_samples=args.eval_samples or None,
            fine_tune_steps=args.fine_tune_steps,
            fine_tune_learning_rate=args.fine_tune_learning_rate,
            target_sparsity=args.target_sparsity, number_of_clusters=args.clusters)
        report = pipeline.convert(args.source, args.out, formats, config=args.config,
                                  settings=settings)
    except pipeline.AccuracyBudgetError as error:
        print(markdown_report(error.report))
        print(f"FAILED: {error}", file=sys.stderr)
        return 1
    except console.USER_ERRORS as error:
        return console.user_error(error)
    print(markdown_report(report))
    print(f"Wrote {', '.join(r['file'] for r in report['formats'].values())}, labels.txt, "
          f"report.json, report.md, report.png to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
