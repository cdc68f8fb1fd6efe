"""Upstream private API stays behind its fences, and a fence names the versions it was checked on."""

import importlib.metadata
import logging

import pytest

from keras_mixer import upstream


@pytest.fixture
def litert_version(monkeypatch):
    real = importlib.metadata.version

    def version(distribution):
        return "9.9.0" if distribution == "ai-edge-litert" else real(distribution)

    monkeypatch.setattr(importlib.metadata, "version", version)


def test_checked_version_is_silent(caplog):
    installed = importlib.metadata.version("ai-edge-litert")
    with caplog.at_level(logging.WARNING):
        upstream.check_version("ai-edge-litert", (".".join(installed.split(".")[:2]),), "a fence")
    assert not caplog.records


def test_unchecked_version_warns_naming_the_fence_and_both_versions(litert_version, caplog):
    with caplog.at_level(logging.WARNING):
        upstream.check_version("ai-edge-litert", ("2.3",), "export/litert_internals.py")
    (record,) = caplog.records
    assert "export/litert_internals.py" in record.getMessage()
    assert "2.3" in record.getMessage() and "9.9.0" in record.getMessage()


def test_unchecked_version_is_refused_where_a_wrong_result_is_possible(litert_version):
    with pytest.raises(upstream.UpstreamVersionError, match="9.9.0"):
        upstream.check_version("ai-edge-litert", ("2.3",), "a fence", wrong_result_possible=True)
