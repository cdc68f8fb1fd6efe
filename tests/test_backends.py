"""keras_mixer under every Keras 3 backend in requirements.txt: TensorFlow, JAX and PyTorch.

A backend is chosen once per process (KERAS_BACKEND), so each runs tests/programs/backend_check.py
in its own subprocess, all at once: each checks a tiny Mixer and an official-layout checkpoint and
saves a `.keras`, then loads every backend's file. The tests hold the logits they wrote to the
NumPy reference (tests/reference.py).
"""

import concurrent.futures
import os

import numpy as np
import pytest
from reference import mixer_forward, random_official_params

from helpers import TINY, assert_close_to_reference, program, random_images, run_bounded, write_checkpoint

BACKENDS = ("tensorflow", "jax", "torch")


def run_every_backend(workdir):
    """Runs backend_check under every backend at once; fails with the output of any that failed.

    A backend that fails creates WORKDIR/abort, so that the others stop waiting for its file.
    """

    def run(seed, backend):  # each backend's model has its own weights
        code, output = run_bounded(program("backend_check", workdir, seed, *BACKENDS), env={"KERAS_BACKEND": backend})
        if code:
            (workdir / "abort").touch()
        return code, output

    with concurrent.futures.ThreadPoolExecutor(len(BACKENDS)) as pool:
        results = list(pool.map(run, range(len(BACKENDS)), BACKENDS))
    failed = [f"{backend} ({code}):\n{output[-3000:]}" for backend, (code, output) in zip(BACKENDS, results) if code]
    assert not failed, "backend_check failed under " + "\n".join(failed)


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    directory = tmp_path_factory.mktemp("backends")
    np.savez(directory / "images.npz", model=random_images(2, 16, 12), checkpoint=random_images(3, 16, seed=1))
    params = random_official_params(np.random.default_rng(0), **TINY, num_patches=16, num_classes=7)
    write_checkpoint(directory, params, "checkpoint.npz")
    run_every_backend(directory)
    return directory


def read(workdir, backend, name):
    path = os.path.join(workdir, backend, name)
    return dict(np.load(path)) if name.endswith(".npz") else np.load(path)


def reference_logits(workdir, backend):
    """The reference's logits for the model saved under `backend`, from its weights."""
    images = np.load(workdir / "images.npz")["model"]
    return mixer_forward(read(workdir, backend, "params.npz"), images / 127.5 - 1.0)


@pytest.mark.parametrize("backend", BACKENDS)
def test_keras_runs_under_the_backend_it_is_given(workdir, backend):
    assert open(workdir / backend / "backend.txt").read() == backend


@pytest.mark.parametrize("backend", BACKENDS)
def test_logits_match_numpy_reference(workdir, backend):
    assert_close_to_reference(read(workdir, backend, "logits.npy"), reference_logits(workdir, backend))


@pytest.mark.parametrize("backend", BACKENDS)
def test_official_checkpoint_logits_match_reference(workdir, backend):
    params = dict(np.load(workdir / "checkpoint.npz"))
    images = np.load(workdir / "images.npz")["checkpoint"]
    expected = mixer_forward(params, images / 127.5 - 1.0)
    assert_close_to_reference(read(workdir, backend, "checkpoint_logits.npy"), expected)


@pytest.mark.parametrize("loader", BACKENDS)
@pytest.mark.parametrize("saver", BACKENDS)
def test_keras_file_saved_under_one_backend_loads_under_another(workdir, saver, loader):
    loaded = read(workdir, loader, f"loaded_from_{saver}.npy")
    assert_close_to_reference(loaded, reference_logits(workdir, saver))
