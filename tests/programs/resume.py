"""A slow digits run through the command line, for the SIGKILL and SIGTERM tests: records the
step reached after every call of the train function.

    python tests/programs/resume.py DATA_DIR RUN_DIR PROGRESS_FILE DELAY_S STEPS_PER_EXECUTION

Dropout, shifts and label smoothing stay on (the digits recipe's): resume must restore them.
Exits with the command's exit code (training/train.py `main`).
"""

import functools
import json
import os
import sys
import time

import keras
from helpers import TINY

from training import loop, train

data_dir, run_dir, progress, delay, steps_per_execution = sys.argv[1:6]


class Slow(keras.callbacks.Callback):
    def on_train_batch_end(self, batch, logs=None):
        with open(progress + ".tmp", "w") as file:  # atomic: the test may SIGKILL us any time
            file.write(str(int(self.model.optimizer.iterations.numpy())))
        os.replace(progress + ".tmp", progress)
        time.sleep(float(delay))


loop.run = functools.partial(loop.run, verbose=0, callbacks=[Slow()])
sys.exit(train.main([
    "--recipe", "digits", "--data-dir", data_dir, "--run-dir", run_dir, "--epochs", "3",
    "--no-export", "--set", f"model={json.dumps(TINY)}", "--set", "jit_compile=false",
    "--set", "checkpoint_every_steps=4", "--set", "validate_every_epoch=false",
    "--set", f"steps_per_execution={steps_per_execution}",
]))
