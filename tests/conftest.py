"""Shared fixtures: the tiny Mixer config (tests/helpers.py) and quiet, seeded TensorFlow."""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

from helpers import TINY  # noqa: E402


@pytest.fixture
def tiny_config():
    return dict(TINY)


@pytest.fixture(autouse=True)
def seeded():
    keras.utils.set_random_seed(0)
    np.random.seed(0)
    yield
