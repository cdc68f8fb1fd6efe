"""Trains the tiny digits Mixer step by step from given weights on given batches, under
KERAS_BACKEND, through the run's own placement, optimizer and loss (training/loop.py).

    python tests/programs/backend_steps.py IN.npz OUT.npz

IN.npz: `weights` (an object array of the initial weights), `images` (steps, batch, 8, 8, 1)
and `labels` (steps, batch). OUT.npz: `losses` (steps,) and `weights` after every step.
"""

import sys

import numpy as np
from helpers import digits_config

from training import loop
from training.placement import get_placement, resolve_backend

in_path, out_path = sys.argv[1:3]
given = np.load(in_path, allow_pickle=True)
images, labels = given["images"], given["labels"]
config = digits_config(None, dropout_rate=0.0, warmup_steps=0, jit_compile="auto")
config = {**config, "backend": resolve_backend("auto")}
placement = get_placement(config)
info = {"num_classes": 10, "total_steps": 100}
with placement.scope():
    model = loop.compiled_model(config, info, placement)
    model.set_weights(list(given["weights"]))
    losses, weights = [], []
    for step_images, step_labels in zip(images, labels):
        losses.append(float(model.train_on_batch(step_images, step_labels)[0]))
        weights.append(np.concatenate([np.ravel(w) for w in model.get_weights()]))
np.savez(out_path, losses=np.array(losses), weights=np.array(weights))
print("backend", config["backend"], "jit_compile", model.jit_compile, "steps", len(losses))
