"""Shared fixtures: a tiny Mixer config (not a paper variant) and quiet, seeded TensorFlow."""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

TINY = dict(patch_size=4, hidden_dim=16, num_blocks=2, tokens_mlp_dim=8, channels_mlp_dim=32)


@pytest.fixture
def tiny_config():
    return dict(TINY)


@pytest.fixture(autouse=True)
def seeded():
    keras.utils.set_random_seed(0)
    np.random.seed(0)
    yield
