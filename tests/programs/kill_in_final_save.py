"""A digits run killed (SIGKILL) at the worst moment of its final save.

    python tests/programs/kill_in_final_save.py DATA_DIR RUN_DIR [FILE]

FILE (default model.keras): the process kills itself when the complete new file sits
under its partial name, just before the rename that would put it in place. Without FILE
argument "none", it runs to the end.
"""

import os
import signal
import sys

import tensorflow as tf

from helpers import TINY
from training import recipes, train

data_dir, run_dir = sys.argv[1:3]
target = sys.argv[3] if len(sys.argv) > 3 else "model.keras"
rename = tf.io.gfile.rename


def rename_or_die(source, destination, overwrite=False):
    if os.path.basename(destination) == target:
        os.kill(os.getpid(), signal.SIGKILL)
    return rename(source, destination, overwrite=overwrite)


tf.io.gfile.rename = rename_or_die
config = recipes.get_recipe(
    "digits", data_dir=data_dir, model=TINY, epochs=1, jit_compile=False, image_size=8,
    validate_every_epoch=False,
)
train.run(config, run_dir, verbose=0)
