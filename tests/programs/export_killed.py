"""`python -m export.convert ARGS...` that SIGKILLs itself in the middle, at POINT:

    python tests/programs/export_killed.py POINT SOURCE --out DIR --formats fp32 fp16 ...

- converter: at the second TFLite conversion, while its scratch SavedModel is on disk;
- rename: when the second `.tflite` is complete under its partial name, before the rename.
"""

import os
import signal
import sys

import tensorflow as tf

from export import convert
from keras_mixer import file_system

point, arguments = sys.argv[1], sys.argv[2:]
calls = []


def killed_on_second_call(function, applies=lambda *args: True):
    def wrapper(*args, **kwargs):
        if applies(*args):
            calls.append(args)
            if len(calls) == 2:
                os.kill(os.getpid(), signal.SIGKILL)
        return function(*args, **kwargs)

    return wrapper


if point == "converter":
    tf.lite.TFLiteConverter.from_saved_model = staticmethod(
        killed_on_second_call(tf.lite.TFLiteConverter.from_saved_model))
elif point == "rename":
    file_system._LocalFiles.rename = staticmethod(killed_on_second_call(
        file_system._LocalFiles.rename,
        lambda source, *rest: os.path.basename(source).startswith(".partial-")
        and source.endswith(".tflite")))
else:
    sys.exit(f"unknown POINT {point!r}: converter or rename")
sys.exit(convert.main(arguments))
