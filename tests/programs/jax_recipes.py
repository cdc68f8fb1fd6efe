"""Trains the recipes of training/recipes.py other than digits (tests/test_jax.py trains that
one through the command line) for one epoch under KERAS_BACKEND=jax, each on the digits with
the tiny Mixer: their own optimizer, schedule, augmentation (inception
crops, flips, RandAugment, mixup), regularisation and precision (mixed_bfloat16,
steps_per_execution), only the data, the model and the sizes scaled down.

    python tests/programs/jax_recipes.py DATA_DIR OUT_DIR

Prints "RECIPE steps=N test_accuracy=A policy=P" per recipe.
"""

import sys

from helpers import TINY

from keras_mixer import storage
from training import recipes, train

data_dir, out_dir = sys.argv[1:3]
for name in [name for name in recipes.RECIPES if name != "digits"]:
    config = recipes.get_recipe(
        name, dataset="sklearn_digits", data_dir=data_dir, test_split="test", num_channels=1,
        variant=None, model=TINY, image_size=16, batch_size=64, epochs=1, warmup_steps=2,
        steps_per_execution=min(recipes.RECIPES[name].get("steps_per_execution", 1), 8),
    )
    run_dir = train.run(config, f"{out_dir}/{name}", verbose=0)
    metrics = storage.read_json(f"{run_dir}/metrics.json")
    print(f"{name} steps={metrics['steps']} test_accuracy={metrics['test_accuracy']:.3f} "
          f"policy={config['dtype_policy']}", flush=True)
