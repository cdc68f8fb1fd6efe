"""One worker of a two-process MultiWorkerMirroredStrategy run (TF_CONFIG set by the test).

    python tests/programs/worker.py DATA_DIR RUN_DIR WEIGHTS.npz

steps_per_execution=2 over 5 steps per epoch. Saves this worker's final weights.
"""

import sys

import numpy as np
from helpers import digits_config

from training import loop

data_dir, run_dir, weights_path = sys.argv[1:4]
fit = loop.fit


def fit_and_save(model, *args, **kwargs):
    history = fit(model, *args, **kwargs)
    np.savez(weights_path, *[np.asarray(w) for w in model.get_weights()])
    return history


loop.fit = fit_and_save
config = digits_config(
    data_dir, epochs=1, batch_size=256, warmup_steps=2, dropout_rate=0.0, steps_per_execution=2
)
# None on the worker that is not the chief: it writes nothing, and the CLI exports there only.
print("run:", loop.run(config, run_dir, verbose=2))
