"""What several test modules share: the tiny Mixer and its reference check, official-layout
checkpoints, image folders, bounded subprocesses."""

import os
import subprocess
import sys

import numpy as np
import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PROGRAMS = os.path.join(REPO, "tests", "programs")
# A tiny Mixer (not a paper variant): 4x4 patches, 2 blocks.
TINY = dict(patch_size=4, hidden_dim=16, num_blocks=2, tokens_mlp_dim=8, channels_mlp_dim=32)
# Float32 Keras against the float64 reference (tests/reference.py): measured ~2e-7 on the tiny
# model and ~3e-6 on S/32 (logits of magnitude ~2), so 1e-5 relative to the logit scale is
# float32 round-off level.
TOLERANCE = 1e-5
SUBPROCESS_TIMEOUT_S = 300
# What a test subprocess sees: the repository and tests/ (for helpers) importable, TF quiet.
ENV = {
    "TF_CPP_MIN_LOG_LEVEL": "2",
    "PYTHONPATH": os.pathsep.join([REPO, os.path.join(REPO, "tests")]),
}


def start(args, env=None, **kwargs):
    """subprocess.Popen from the repository root with ENV; stdout and stderr together."""
    return subprocess.Popen(
        args, cwd=REPO, env={**os.environ, **ENV, **(env or {})}, stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT, text=True, **kwargs,
    )


def run_bounded(args, timeout=SUBPROCESS_TIMEOUT_S, env=None, **kwargs):
    """subprocess.run from the repository root with a timeout that ends in SIGKILL.

    A test must end even when the code under test hangs.
    """
    process = start(args, env, **kwargs)
    try:
        output, _ = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        output, _ = process.communicate()
        pytest.fail(f"{args} did not finish within {timeout} s:\n{output[-3000:]}")
    return process.returncode, output


def program(name, *args):
    """The command line of the test program tests/programs/NAME.py."""
    return [sys.executable, os.path.join(PROGRAMS, f"{name}.py"), *map(str, args)]


def max_abs_difference(weights_a, weights_b):
    assert len(weights_a) == len(weights_b)
    return max(
        float(np.max(np.abs(np.asarray(a) - np.asarray(b)))) for a, b in zip(weights_a, weights_b)
    )


def random_images(batch, height, width=None, seed=0):
    """Raw pixels: float32 in [0, 255], NHWC with 3 channels."""
    return np.random.default_rng(seed).uniform(0, 255, (batch, height, width or height, 3)).astype("float32")


def randomize(model, seed=1):
    """Gives every weight (including the zero-initialised head) random values."""
    rng = np.random.default_rng(seed)
    model.set_weights([rng.normal(0, 0.3, w.shape).astype("float32") for w in model.get_weights()])
    return model


def official_params(model):
    """A Keras Mixer's weights under the official checkpoint keys, for tests/reference.py."""
    from keras_mixer.checkpoint import keras_to_official

    return {
        keras_to_official(layer.name, i): np.asarray(w)
        for layer in model.layers
        for i, w in enumerate(layer.get_weights())
    }


def write_checkpoint(directory, params, name="ckpt.npz"):
    """Writes `params` (official keys) as an .npz, the official checkpoints' format."""
    path = os.path.join(directory, name)
    np.savez(path, **params)
    return path


def assert_close_to_reference(logits, expected):
    """Float32 logits within TOLERANCE of the float64 reference, relative to the logit scale."""
    bound = TOLERANCE * max(1.0, float(np.abs(expected).max()))
    difference = float(np.abs(np.asarray(logits) - expected).max())
    assert difference <= bound, f"max logit difference {difference:.2e} exceeds {bound:.2e}"
    return difference


def write_image_folder(root, layout, size=(8, 8), seed=0, extension="png"):
    """Writes ROOT/<split>/<class>/<i>.<ext> with `layout = {split: {class: count}}`.

    Each image is filled with one gray level that encodes its class index in sorted order
    of all classes named in `layout`, so a test can read the true class off the pixels.
    Returns {split: [(path, class name), ...]}.
    """
    from PIL import Image

    classes = sorted({name for split in layout.values() for name in split})
    rng = np.random.default_rng(seed)
    written = {}
    for split, counts in layout.items():
        for class_name, count in counts.items():
            directory = os.path.join(root, split, class_name)
            os.makedirs(directory, exist_ok=True)
            for index in range(count):
                level = 20 * classes.index(class_name) + int(rng.integers(0, 3))
                pixels = np.full((*size, 3), level, np.uint8)
                path = os.path.join(directory, f"{index}.{extension}")
                Image.fromarray(pixels).save(path)
                written.setdefault(split, []).append((path, class_name))
    return written


def digits_config(data_dir, **overrides):
    """The digits recipe with the tiny model on the 8x8 images, integer labels, no shifts."""
    from training import recipes

    settings = dict(
        data_dir=data_dir, model=dict(TINY), jit_compile=False, image_size=8,
        label_smoothing=0.0, random_shift=0,
    )
    return recipes.get_recipe("digits", **{**settings, **overrides})
