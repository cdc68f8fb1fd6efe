"""Trains the tiny digits run under the default strategy and MirroredStrategy over 2 CPUs.

    python tests/programs/mirrored.py DATA_DIR OUT_DIR

No dropout: its masks depend on how the batch is split across replicas.
steps_per_execution=4 with 5 steps per epoch: each call runs 4 steps, the last of an epoch
the 1 left (training/steps.py); 2 epochs, each validated, run the validation budget twice.
Writes OUT_DIR/<strategy>.npz with the final weights.
"""

import json
import sys

import tensorflow as tf

# Logical devices must be set before TensorFlow initialises.
cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)

import keras  # noqa: E402
import numpy as np  # noqa: E402

from helpers import TINY  # noqa: E402
from training import recipes, train  # noqa: E402

data_dir, out_dir = sys.argv[1:3]
config = recipes.get_recipe(
    "digits", data_dir=data_dir, model=TINY, epochs=2, batch_size=256, jit_compile=False,
    validate_every_epoch=True, warmup_steps=2, dropout_rate=0.0, steps_per_execution=4,
    image_size=8, label_smoothing=0.0, random_shift=0,
)
strategies = {
    "default": tf.distribute.get_strategy(),
    "mirrored": tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"]),
}
for name, strategy in strategies.items():
    run_dir = train.run(config, f"{out_dir}/{name}", strategy=strategy, verbose=0)
    weights = keras.models.load_model(f"{run_dir}/model.keras").get_weights()
    np.savez(f"{out_dir}/{name}.npz", *weights)
    info = json.load(open(f"{run_dir}/run_info.json"))
    print(name, info["num_replicas"], json.load(open(f"{run_dir}/metrics.json"))["steps"])
