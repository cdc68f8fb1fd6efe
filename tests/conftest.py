"""Shared fixtures: the tiny Mixer config (tests/helpers.py), the digits, seeded TensorFlow."""

import atexit
import os
import shutil
import tempfile

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
# JAX's persistent compilation cache, one for the session, shared by its JAX processes (the
# controller sets it; pytest-xdist's workers and every test program inherit it): a run, its
# rerun and the hosts of one run compile the same steps, and XLA compilation was about a third
# of a JAX test program's time. A hit is the same executable: entries are keyed by the
# program, the compile options and the versions.
if "JAX_COMPILATION_CACHE_DIR" not in os.environ:
    os.environ["JAX_COMPILATION_CACHE_DIR"] = tempfile.mkdtemp(prefix="keras-mixer-jax-cache-")
    os.environ["JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS"] = "0"  # the tiny model's steps too
    atexit.register(shutil.rmtree, os.environ["JAX_COMPILATION_CACHE_DIR"], True)

from training.onednn import prefer_onednn  # noqa: E402

prefer_onednn()  # this process and the test programs run TensorFlow's kernels as the commands do

import keras  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

from helpers import TINY  # noqa: E402


# Module fixtures that train or export for real: every test that uses one is slow, so the
# inner loop's subset (-m "not slow", README) leaves it out; CI runs every test all the same.
SLOW_FIXTURES = {"exported", "baseline", "killed_then_rerun", "jax_run", "uninterrupted"}


# The fixtures built once per module (scope="module"). The README runs pytest-xdist with
# --dist loadgroup: the users of each form one group, which one worker runs, so that each is
# built once; every other test is scheduled on its own, so that the two workers end together
# (a file each, the longest files came last and one worker waited minutes for the other).
MODULE_FIXTURES = {
    "run_dir", "exported", "digits_test", "baseline", "keras_test_logits", "killed_then_rerun",
    "jax_run", "uninterrupted", "workdir",
}


@pytest.hookimpl(tryfirst=True)  # before pytest-xdist's, which reads the groups
def pytest_collection_modifyitems(items):
    for item in items:
        fixtures = set(getattr(item, "fixturenames", ()))
        if SLOW_FIXTURES & fixtures:
            item.add_marker(pytest.mark.slow)
        if MODULE_FIXTURES & fixtures:
            item.add_marker(pytest.mark.xdist_group(item.module.__name__))


@pytest.fixture
def tiny_config():
    return dict(TINY)


@pytest.fixture(scope="session")
def data_dir(tmp_path_factory):
    """A tfds data_dir with the digits prepared once (from scikit-learn's copy: no network)."""
    from training import config, data

    path = str(tmp_path_factory.mktemp("tfds"))
    data.open_source(config.check({"dataset": "sklearn_digits", "data_dir": path}))
    return path


@pytest.fixture(autouse=True)
def seeded():
    keras.utils.set_random_seed(0)
    np.random.seed(0)
    yield
