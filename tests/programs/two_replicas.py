"""Trains the tiny digits run on one replica and on two CPU replicas, under KERAS_BACKEND.

    python tests/programs/two_replicas.py DATA_DIR OUT_DIR

TensorFlow: the default strategy against MirroredStrategy over 2 logical CPUs. JAX:
keras.distribution.DataParallel over one CPU device against both (the test sets
XLA_FLAGS=--xla_force_host_platform_device_count=2). No dropout: its masks depend on how
the batch is split across replicas. steps_per_execution=4 with 5 steps per epoch: each call
runs 4 steps, the last of an epoch the 1 left (training/steps.py); 2 epochs, each validated.
Each run is then run again, which restores its checkpoint in the placement's scope.
Writes OUT_DIR/one.npz and OUT_DIR/two.npz with the final weights and prints, per run,
"NAME REPLICAS STEPS STRATEGY".
"""

import sys

import keras

if keras.backend.backend() == "jax":
    import jax

    devices = jax.devices()
    assert len(devices) == 2, f"set XLA_FLAGS=--xla_force_host_platform_device_count=2: {devices}"
    placements = {
        "one": keras.distribution.DataParallel(devices=devices[:1], auto_shard_dataset=False),
        "two": keras.distribution.DataParallel(devices=devices, auto_shard_dataset=False),
    }
else:
    import tensorflow as tf

    # Logical devices must be set before TensorFlow initialises.
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
    placements = {
        "one": tf.distribute.get_strategy(),
        "two": tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"]),
    }

import numpy as np  # noqa: E402
from helpers import digits_config  # noqa: E402

from keras_mixer import storage  # noqa: E402
from training import loop  # noqa: E402

data_dir, out_dir = sys.argv[1:3]
config = digits_config(
    data_dir, epochs=2, batch_size=256, validate_every_epoch=True, warmup_steps=2,
    dropout_rate=0.0, steps_per_execution=4,
)
for name, placement in placements.items():
    run_dir = loop.run(config, f"{out_dir}/{name}", strategy=placement, verbose=0)
    # The same command again resumes the finished run: its checkpoint restores in the scope.
    loop.run(config, run_dir, strategy=placement, verbose=0)
    weights = keras.models.load_model(f"{run_dir}/model.keras").get_weights()
    np.savez(f"{out_dir}/{name}.npz", *weights)
    info, metrics = (storage.read_json(f"{run_dir}/{n}.json") for n in ("run_info", "metrics"))
    print(name, info["num_replicas"], metrics["steps"], info["strategy"])
