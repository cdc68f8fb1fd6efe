"""What several test modules share: the tiny Mixer, image folders, bounded subprocesses."""

import os
import subprocess
import sys

import numpy as np
import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PROGRAMS = os.path.join(REPO, "tests", "programs")
# A tiny Mixer (not a paper variant): 4x4 patches, 2 blocks.
TINY = dict(patch_size=4, hidden_dim=16, num_blocks=2, tokens_mlp_dim=8, channels_mlp_dim=32)
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
