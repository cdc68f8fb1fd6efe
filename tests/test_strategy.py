"""training/strategy.py: which strategy, and how a TPU that is not there fails."""

import json

import pytest
import tensorflow as tf

from tests.helpers import program, run_bounded
from training import strategy as strategy_lib


def test_get_strategy_defaults_and_single_task_cluster(monkeypatch):
    monkeypatch.delenv("TF_CONFIG", raising=False)
    monkeypatch.delenv("TPU_NAME", raising=False)
    assert strategy_lib.get_strategy() is tf.distribute.get_strategy()
    monkeypatch.setenv(
        "TF_CONFIG",
        json.dumps(
            {"cluster": {"worker": ["127.0.0.1:1"]}, "task": {"type": "worker", "index": 0}}
        ),
    )
    assert strategy_lib.get_strategy() is tf.distribute.get_strategy()
    monkeypatch.setenv("TF_CONFIG", "{not json")
    with pytest.raises(strategy_lib.StrategyError, match="TF_CONFIG is not valid JSON"):
        strategy_lib.get_strategy()


def test_unreachable_tpu_is_a_clear_error_within_seconds():
    _, output = run_bounded(program("tpu_unreachable"), timeout=120)
    line = [line for line in output.splitlines() if line.startswith(("StrategyError", "no error"))]
    assert line and line[0].startswith("StrategyError"), output[-3000:]
    assert int(line[0].split()[1]) <= 15 and "127.0.0.1:9" in line[0]
