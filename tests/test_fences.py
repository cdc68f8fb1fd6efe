"""Upstream private API stays behind its fences, and a fence names the versions it was checked on."""

import logging
import pathlib
import sys

import pytest
from helpers import run_bounded

from keras_mixer import upstream

REPO_PATH = pathlib.Path(__file__).resolve().parent.parent


def test_checked_version_is_silent(caplog):
    with caplog.at_level(logging.WARNING):
        upstream.check_version("ai-edge-litert", "2.3.0", ("2.3",), "a fence")
    assert not caplog.records


def test_unchecked_version_warns_naming_the_fence_and_both_versions(caplog):
    with caplog.at_level(logging.WARNING):
        upstream.check_version("ai-edge-litert", "9.9.0", ("2.3",), "export/litert_internals.py")
    (record,) = caplog.records
    assert "export/litert_internals.py" in record.getMessage()
    assert "2.3" in record.getMessage() and "9.9.0" in record.getMessage()


def test_unchecked_version_is_refused_where_a_wrong_result_is_possible():
    with pytest.raises(upstream.UpstreamVersionError, match="9.9.0"):
        upstream.check_version("keras", "9.9.0", ("3.15",), "a fence", wrong_result_possible=True)


# Spellings of upstream private API; each may appear only in its package's fence.
PRIVATE = {
    "tensorflow.python": "training/tensorflow_internals.py",
    "tensorflow.compiler": "training/tensorflow_internals.py",
    "raw_ops": "training/tensorflow_internals.py",
    "keras.src": "training/keras_internals.py",
    "_AUGMENT_LAYERS": "training/keras_internals.py",
    "_get_ops_details": "export/litert_internals.py",
}


def test_private_api_is_used_only_inside_its_fence():
    outside = []
    for folder in ("keras_mixer", "training", "export", "benchmarks", "tests"):
        for path in sorted((REPO_PATH / folder).rglob("*.py")):
            relative = path.relative_to(REPO_PATH).as_posix()
            if relative == "tests/test_fences.py":
                continue
            for number, line in enumerate(path.read_text().splitlines(), 1):
                outside += [f"{relative}:{number}: {spelling} (fence: {fence})"
                            for spelling, fence in PRIVATE.items()
                            if spelling in line and relative != fence]
    assert not outside, "\n".join(outside)


@pytest.mark.slow
def test_a_jax_run_imports_no_tensorflow_strategy_code():
    # TF_CONFIG and Cloud TPU detection live in training/cluster.py, pure Python, so JAX's
    # placement reads them without training/strategy.py and its TensorFlow internals.
    code = ("import sys, training.train, training.loop, training.distribution; "
            "print('training.strategy' in sys.modules)")
    status, output = run_bounded([sys.executable, "-c", code], env={"KERAS_BACKEND": "jax"})
    assert status == 0 and output.strip().splitlines()[-1] == "False", output[-2000:]
