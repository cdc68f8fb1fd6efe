"""Trains the recipes of training/recipes.py other than digits (tests/test_jax.py trains that
one through the command line) for one epoch under KERAS_BACKEND=jax, each on the digits with
the tiny Mixer: their own optimizer, schedule, augmentation (inception
crops, flips, RandAugment, mixup), regularisation and precision (mixed_bfloat16,
steps_per_execution), only the data, the model and the sizes scaled down.

    python tests/programs/jax_recipes.py DATA_DIR OUT_DIR

The last recipe's run directory is remote: TensorFlow's in-memory `ram://` file system, which
stands in for gs:// in one process, through keras_mixer/storage.py as on TensorFlow.
Prints "RECIPE steps=N test_accuracy=A policy=P" per recipe, then "ram:// FILE" for each file
of the remote run.
"""

import sys

import tensorflow as tf
from helpers import TINY

from keras_mixer import storage
from training import loop, recipes

data_dir, out_dir = sys.argv[1:3]
names = [name for name in recipes.RECIPES if name != "digits"]
for name in names:
    config = recipes.get_recipe(
        name, dataset="sklearn_digits", data_dir=data_dir, test_split="test", num_channels=1,
        variant=None, model=TINY, image_size=16, batch_size=64, epochs=1, warmup_steps=2,
        steps_per_execution=min(recipes.RECIPES[name].get("steps_per_execution", 1), 8),
    )
    run_dir = f"ram://runs/{name}" if name == names[-1] else f"{out_dir}/{name}"
    run_dir = loop.run(config, run_dir, verbose=0)
    metrics = storage.read_json(f"{run_dir}/metrics.json")
    print(f"{name} steps={metrics['steps']} test_accuracy={metrics['test_accuracy']:.3f} "
          f"policy={config['dtype_policy']}", flush=True)
for directory, _, files in tf.io.gfile.walk(f"ram://runs/{names[-1]}"):
    for file in files:
        print("ram://", storage.join(directory, file)[len(f"ram://runs/{names[-1]}/"):])
