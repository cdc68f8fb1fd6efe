"""What the command lines print: Keras's progress bar, our notices and errors, not TF's C++ logs.

The one home of what `python -m training.train`, `python -m export.convert` and
`python -m export.predict` share: the quiet console, logging, `--verbose`, and a user's mistake
as one line, `error: ...`, with exit code 2. Standard library only, so that a command module
imports it before TensorFlow (keras_mixer would not do: its package imports Keras, and Keras
reads KERAS_BACKEND as it loads).

TensorFlow, XLA and the TFLite converter log from C++ straight to the process's stderr
(`I0000 ... port.cc:153] oneDNN custom operations are on`, `flatbuffer_export.cc`,
`Reading SavedModel`, `INFO: Created TensorFlow Lite XNNPACK delegate`): a digits run
printed about 200 such lines. `TF_CPP_MIN_LOG_LEVEL` silences only some of them (those
absl writes before it is initialised ignore it), so `quiet()` also filters the stderr file
descriptor itself: lines in absl's native format, and the converter's `INFO:` lines, are
dropped; everything else (Python warnings, tracebacks, Keras, our messages) passes through
unchanged. It must run before TensorFlow is imported; `--verbose` skips it.
"""

import atexit
import logging
import os
import re
import sys
import threading

# What a user can fix: missing, corrupt or unwritable paths (OSError, keras_mixer's
# StorageError), bad settings, configs and data (ValueError), a missing package (ImportError),
# a model that is not a Mixer (TypeError).
USER_ERRORS = (OSError, ImportError, TypeError, ValueError)

# absl's native prefix: severity and date, time, thread, file:line] ("I0000 00:00:1796.5 42 a.cc:1] ")
_NATIVE_LOG = re.compile(rb"^[IWE]\d{4} \d+:\d+:[\d.]+\s+\d+ [\w./-]+:\d+\] ")
_NOISE = (
    b"WARNING: All log messages before absl::InitializeLog() is called are written to STDERR",
    b"INFO: Created TensorFlow Lite XNNPACK delegate",
    b"fully_quantize: ",  # the TFLite calibrator's settings, once per full-integer model
    b"To enable the following instructions:",
)
_filter = {}


def _is_noise(line):
    return bool(_NATIVE_LOG.match(line)) or line.startswith(_NOISE)


def quiet():
    """Drops TensorFlow's native log lines from this process's stderr (idempotent)."""
    if _filter:
        return
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    sys.stderr.flush()
    original = os.dup(2)
    read_end, write_end = os.pipe()
    os.dup2(write_end, 2)
    os.close(write_end)

    def pump():
        with os.fdopen(read_end, "rb") as source:
            for line in source:
                if not _is_noise(line):
                    os.write(original, line)

    thread = threading.Thread(target=pump, name="stderr-filter", daemon=True)
    thread.start()
    _filter.update(original=original, thread=thread)
    atexit.register(flush)


def flush():
    """Ends the filter and lets every line it holds reach the terminal (at exit, or before
    `os._exit`)."""
    if not _filter:
        return
    sys.stderr.flush()
    os.dup2(_filter["original"], 2)  # closes the pipe's last write end: the pump drains and ends
    _filter["thread"].join(timeout=5)
    _filter.clear()


class _NoticeFormatter(logging.Formatter):
    """Progress lines (INFO and below) as they are; warnings and errors with level and logger."""

    def format(self, record):
        return record.getMessage() if record.levelno <= logging.INFO else super().format(record)


def configure(verbose=False, progress=()):
    """The command lines' logging: our notices at WARNING, TF's native logs off unless verbose.

    The loggers named in `progress` (e.g. "export") also show their INFO lines, the progress
    of long work, and with `verbose` their DEBUG lines.
    """
    if not verbose:
        quiet()
    handler = logging.StreamHandler()
    handler.setFormatter(_NoticeFormatter("%(levelname)s %(name)s: %(message)s"))
    logging.basicConfig(level=logging.WARNING, handlers=[handler])
    for name in progress:
        logging.getLogger(name).setLevel(logging.DEBUG if verbose else logging.INFO)


def add_verbose_flag(parser):
    """Every command line's `--verbose`: keep the native log lines `quiet()` drops."""
    parser.add_argument("--verbose", action="store_true",
                        help="keep TensorFlow's, XLA's and LiteRT's native log lines")


def user_error(error):
    """Prints a user's mistake as one line, `error: ...`; returns the exit code, 2."""
    print(f"error: {' '.join(str(error).split())}", file=sys.stderr, flush=True)
    return 2
