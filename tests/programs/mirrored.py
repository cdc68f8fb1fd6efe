"""Trains the tiny digits run under the default strategy and MirroredStrategy over 2 CPUs.

    python tests/programs/mirrored.py DATA_DIR OUT_DIR

No dropout: its masks depend on how the batch is split across replicas.
steps_per_execution=4 with 5 steps per epoch: each call runs 4 steps, the last of an epoch
the 1 left (training/steps.py); 2 epochs, each validated, run the validation budget twice.
Each run is then run again, which restores its checkpoint under the same strategy.
Writes OUT_DIR/<strategy>.npz with the final weights.
"""

import sys

import tensorflow as tf

# Logical devices must be set before TensorFlow initialises.
cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)

import keras  # noqa: E402
import numpy as np  # noqa: E402
from helpers import digits_config  # noqa: E402

from keras_mixer import storage  # noqa: E402
from training import train  # noqa: E402

data_dir, out_dir = sys.argv[1:3]
config = digits_config(
    data_dir, epochs=2, batch_size=256, validate_every_epoch=True, warmup_steps=2,
    dropout_rate=0.0, steps_per_execution=4,
)
strategies = {
    "default": tf.distribute.get_strategy(),
    "mirrored": tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"]),
}
for name, strategy in strategies.items():
    run_dir = train.run(config, f"{out_dir}/{name}", strategy=strategy, verbose=0)
    # The same command again resumes the finished run: its checkpoint restores in the scope.
    train.run(config, run_dir, strategy=strategy, verbose=0)
    weights = keras.models.load_model(f"{run_dir}/model.keras").get_weights()
    np.savez(f"{out_dir}/{name}.npz", *weights)
    info, metrics = (storage.read_json(f"{run_dir}/{n}.json") for n in ("run_info", "metrics"))
    print(name, info["num_replicas"], metrics["steps"])
