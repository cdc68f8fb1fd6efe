"""`python -m export.predict`: classifies image files with an exported `.tflite` model, as an
app does; the command line over `export.classify.predict`.

    python -m export.predict exports/digits/int8.tflite digit.png [more.png ...] [--top 3]

A missing or wrong file is one line, `error: ...`, and exit code 2.
"""

import argparse
import sys

from training import console, onednn


def parser():
    parser = argparse.ArgumentParser(
        prog="python -m export.predict",
        description="Classifies image files with an exported .tflite model, as an app does.")
    parser.add_argument("model", help=".tflite file (labels.txt beside it names the classes)")
    parser.add_argument("images", nargs="+", help="image files")
    parser.add_argument("--labels", help="labels file (default: labels.txt beside the model)")
    parser.add_argument("--top", type=int, default=5)
    console.add_verbose_flag(parser)
    return parser


def main(argv=None):
    """`python -m export.predict MODEL IMAGE ...`; returns the exit code."""
    args = parser().parse_args(argv)
    console.configure(args.verbose)
    onednn.prefer_onednn()
    # Imported once the console filters stderr and the kernels are chosen: TensorFlow and
    # LiteRT log from C++ as they load, and TensorFlow reads the kernels' setting then.
    from export import classify

    try:
        results = classify.predict(args.model, args.images, labels=args.labels, top=args.top)
    except console.USER_ERRORS as error:
        return console.user_error(error)
    for path, classes in zip(args.images, results):
        print(f"{path}: " + ", ".join(f"{name} {probability:.3f}" for name, probability in classes))
    return 0


if __name__ == "__main__":
    sys.exit(main())
