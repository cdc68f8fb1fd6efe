"""A preset folder written and read back on the local disk under the JAX backend, with every
import of TensorFlow failing: keras_mixer depends on keras and numpy, not on TensorFlow.

    python tests/programs/preset_without_tensorflow.py FOLDER
"""

import os
import sys

sys.modules["tensorflow"] = None  # `import tensorflow` now raises ModuleNotFoundError
os.environ["KERAS_BACKEND"] = "jax"

import numpy as np  # noqa: E402
from helpers import TINY  # noqa: E402

import keras_mixer  # noqa: E402

model = keras_mixer.MlpMixer(**TINY, num_classes=3, image_size=8)
model.save_to_preset(sys.argv[1], class_names=["a", "b", "c"])
loaded = keras_mixer.MlpMixer.from_preset(sys.argv[1])
assert loaded.class_names == ["a", "b", "c"]
for saved, read in zip(model.get_weights(), loaded.get_weights()):
    np.testing.assert_array_equal(saved, read)
print("preset written and read without TensorFlow")
