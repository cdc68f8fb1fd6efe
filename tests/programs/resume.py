"""A slow digits run for the SIGKILL test: records the step reached after every step.

    python tests/programs/resume.py DATA_DIR RUN_DIR PROGRESS_FILE DELAY_S STEPS_PER_EXECUTION

Dropout, shifts and label smoothing stay on (the digits recipe's): resume must restore them.
"""

import os
import sys
import time

import keras

from helpers import TINY
from training import recipes, train

data_dir, run_dir, progress, delay, steps_per_execution = sys.argv[1:6]


class Slow(keras.callbacks.Callback):
    def on_train_batch_end(self, batch, logs=None):
        with open(progress + ".tmp", "w") as file:  # atomic: the test may SIGKILL us any time
            file.write(str(int(self.model.optimizer.iterations.numpy())))
        os.replace(progress + ".tmp", progress)
        time.sleep(float(delay))


config = recipes.get_recipe(
    "digits", data_dir=data_dir, model=TINY, epochs=3, jit_compile=False,
    checkpoint_every_steps=4, validate_every_epoch=False,
    steps_per_execution=int(steps_per_execution),
)
train.run(config, run_dir, verbose=0, callbacks=[Slow()])
