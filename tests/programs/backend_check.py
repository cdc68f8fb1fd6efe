"""One Keras backend's part of tests/test_backends.py; the backend is KERAS_BACKEND's.

    KERAS_BACKEND=jax python tests/programs/backend_check.py WORKDIR SEED BACKEND...

WORKDIR holds the test's inputs: images.npz and checkpoint.npz (random weights, official
layout). The program writes WORKDIR/<backend>/:
    backend.txt              the backend Keras runs under
    logits.npy, params.npz   a tiny Mixer with random weights (SEED), and those weights under
                             the official keys for the NumPy reference
    checkpoint_logits.npy    checkpoint.npz through load_official_checkpoint
    model.keras              the tiny Mixer, saved
then waits until every BACKEND has saved its model.keras (one process per backend, not one per
backend and phase: starting TensorFlow or PyTorch costs more than all the rest), loads each and
writes loaded_from_<saver>.npy. It stops waiting when the test creates WORKDIR/abort (a backend
failed). The test holds every logit file to tests/reference.py; nothing here judges the numbers.
"""

import os
import sys
import time

import keras
import numpy as np
from helpers import TINY, official_params, randomize

import keras_mixer

workdir, seed, *backends = sys.argv[1:]
backend = os.environ["KERAS_BACKEND"]
out = os.path.join(workdir, backend)
images = np.load(os.path.join(workdir, "images.npz"))
os.makedirs(out, exist_ok=True)
with open(os.path.join(out, "backend.txt"), "w") as file:
    file.write(keras.backend.backend())

# Non-square, with dropout and drop-path layers (identity at inference), so that the saved file
# carries every layer type the Mixer can have.
model = keras_mixer.MlpMixer(**TINY, num_classes=5, image_size=(16, 12), dropout_rate=0.1, stochastic_depth_rate=0.1)
randomize(model, seed=int(seed))
np.save(os.path.join(out, "logits.npy"), model.predict(images["model"], verbose=0))
np.savez(os.path.join(out, "params.npz"), **official_params(model))
model.save(os.path.join(out, "model.keras"))
open(os.path.join(out, "saved"), "w").close()  # after model.keras is whole
checkpoint = keras_mixer.load_official_checkpoint(os.path.join(workdir, "checkpoint.npz"), variant=TINY)
np.save(os.path.join(out, "checkpoint_logits.npy"), checkpoint.predict(images["checkpoint"], verbose=0))

while not all(os.path.exists(os.path.join(workdir, saver, "saved")) for saver in backends):
    if os.path.exists(os.path.join(workdir, "abort")):
        sys.exit("stopped waiting for the other backends' .keras files: one of them failed")
    time.sleep(0.05)
for saver in backends:
    path = os.path.join(workdir, saver, "model.keras")
    model = keras.models.load_model(path)
    if not isinstance(model, keras_mixer.MlpMixer):
        sys.exit(f"{path} loaded as {type(model).__name__}, not keras_mixer.MlpMixer")
    np.save(os.path.join(out, f"loaded_from_{saver}.npy"), model.predict(images["model"], verbose=0))
