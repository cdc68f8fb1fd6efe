"""training/strategy.py: which strategy, and how a TPU or cluster that is not there fails.

A task whose cluster never forms must end with a StrategyError within its timeout and stay
killable while it waits; each such task runs as a subprocess bounded by SIGKILL.
"""

import json
import os
import signal
import socket
import subprocess
import threading
import time

import pytest
import tensorflow as tf

from tests.helpers import REPO, program, run_bounded
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


@pytest.mark.slow
def test_unreachable_tpu_is_a_clear_error_within_seconds():
    _, output = run_bounded(program("tpu_unreachable"), timeout=120)
    line = [line for line in output.splitlines() if line.startswith(("StrategyError", "no error"))]
    assert line and line[0].startswith("StrategyError"), output[-3000:]
    assert int(line[0].split()[1]) <= 15 and "127.0.0.1:9" in line[0]


def worker0_of_two(peer_address):
    """TF_CONFIG of worker 0 (the leader) of two workers, worker 1 at `peer_address`."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        own = f"127.0.0.1:{sock.getsockname()[1]}"
    cluster = {"worker": [own, peer_address]}
    return json.dumps({"cluster": cluster, "task": {"type": "worker", "index": 0}})


@pytest.mark.parametrize("peer_listens", [False, True], ids=["nothing_listens", "never_joins"])
@pytest.mark.slow
def test_missing_cluster_task_is_a_clear_error_within_the_timeout(peer_listens):
    # A bound socket keeps worker 1's port from anyone else; listening or not is the case.
    with socket.socket() as peer:
        peer.bind(("127.0.0.1", 0))
        if peer_listens:
            peer.listen()
        address = f"127.0.0.1:{peer.getsockname()[1]}"
        code, output = run_bounded(
            program("cluster_task", 10), timeout=120, env={"TF_CONFIG": worker0_of_two(address)}
        )
    line = [line for line in output.splitlines() if line.startswith(("StrategyError", "replicas"))]
    assert line and line[0].startswith("StrategyError"), output[-3000:]
    assert int(line[0].split()[1]) <= 10 + 30, line[0]
    assert f"{address} (worker 1)" in line[0] and "cluster_connect_timeout_s" in line[0]
    assert ("did not join" in line[0]) == peer_listens, line[0]
    assert code == 2, output[-3000:]  # the process could exit after the error


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
@pytest.mark.slow
def test_a_signal_ends_a_task_waiting_for_its_cluster(signum):
    with socket.socket() as peer:
        peer.bind(("127.0.0.1", 0))  # nothing listens at worker 1
        env = {
            **os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "PYTHONPATH": REPO,
            "TF_CONFIG": worker0_of_two(f"127.0.0.1:{peer.getsockname()[1]}"),
        }
        process = subprocess.Popen(
            program("cluster_task", 600), cwd=REPO, env=env, text=True,
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
            # A shell may start this test with SIGINT ignored, which the child would inherit.
            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
        )
        killer = threading.Timer(150, process.kill)  # bounds the test whatever the task does
        killer.start()
        lines, waiting = [], threading.Event()

        def read():
            for text in process.stdout:
                lines.append(text)
                if "waiting up to" in text:
                    waiting.set()

        reader = threading.Thread(target=read, daemon=True)
        reader.start()
        try:
            waiting.wait(60)
            process.send_signal(signum)
            sent = time.monotonic()
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                pytest.fail(f"{signum.name} did not end the task:\n{''.join(lines)[-3000:]}")
            assert time.monotonic() - sent <= 5 and process.returncode == -signum, lines[-20:]
            assert waiting.is_set(), lines[-20:]  # it was ended while waiting, not before
        finally:
            killer.cancel()
            process.kill()
            process.wait()
            reader.join(5)
