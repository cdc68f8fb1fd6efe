"""A digits run killed (SIGKILL) at the worst moment of its final save.

    python tests/programs/kill_in_final_save.py DATA_DIR RUN_DIR [FILE]

FILE (default model.keras): the process kills itself when the complete new file sits
under its partial name, just before the rename that would put it in place. With FILE
"none" nothing matches, and the run goes to its end.
"""

import os
import signal
import sys

from helpers import digits_config

from keras_mixer import file_system
from training import loop

data_dir, run_dir = sys.argv[1:3]
target = sys.argv[3] if len(sys.argv) > 3 else "model.keras"
rename = file_system._LocalFiles.rename


def rename_or_die(source, destination, overwrite=False):
    if os.path.basename(destination) == target:
        os.kill(os.getpid(), signal.SIGKILL)
    return rename(source, destination, overwrite=overwrite)


file_system._LocalFiles.rename = staticmethod(rename_or_die)
loop.run(digits_config(data_dir, epochs=1, validate_every_epoch=False), run_dir, verbose=0)
