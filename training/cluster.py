"""A TF_CONFIG cluster before TensorFlow joins it: what the environment describes, and the
wait, in Python, until every other task answers.

Pure Python (no TensorFlow): JAX's placement (training/distribution.py) reads the same
environment, and training/strategy.py waits here before TensorFlow connects, for the reason
`strategy.multi_worker_strategy` gives.
"""

import json
import logging
import os
import socket
import time

from training.config import DEFAULTS
from training.errors import StrategyError

log = logging.getLogger(__name__)

# Long enough for a scheduler to start every task of a cluster, short enough that a task
# whose peer never comes up says so instead of holding its machine (training/config.py).
CLUSTER_CONNECT_SETTING = "cluster_connect_timeout_s"
CLUSTER_CONNECT_TIMEOUT_S = DEFAULTS[CLUSTER_CONNECT_SETTING]
# Tasks that take part in MultiWorkerMirroredStrategy's collectives (an evaluator does not).
CLUSTER_JOBS = ("chief", "worker")
# A peer that is up answers a TCP connect on its own network within milliseconds.
_PROBE_TIMEOUT_S = 1.0
_PROBE_INTERVAL_S = 0.5


def tf_config_cluster():
    """The cluster TF_CONFIG describes, or None when it describes no cluster of several tasks."""
    tf_config = os.environ.get("TF_CONFIG")
    if not tf_config:
        return None
    try:
        cluster = json.loads(tf_config).get("cluster", {})
    except json.JSONDecodeError as error:
        raise StrategyError(f"TF_CONFIG is not valid JSON ({error}): {tf_config[:200]!r}") from None
    num_tasks = sum(len(tasks) for tasks in cluster.values())
    return cluster if num_tasks > 1 else None


def on_cloud_tpu_vm():
    """True on a Cloud TPU VM (TPU chips appear as /dev/accel*), without any network call."""
    if os.environ.get("TPU_NAME"):
        return True
    return os.path.isdir("/dev") and any(name.startswith("accel") for name in os.listdir("/dev"))


def _split_address(address):
    """("host", port) of a TF_CONFIG "host:port" (IPv6 hosts in brackets)."""
    host, _, port = address.rpartition(":")
    if not host or not port.isdigit():
        raise StrategyError(f"TF_CONFIG address {address!r} is not host:port.")
    return host.strip("[]"), int(port)


def accepts_connection(address, timeout_s=_PROBE_TIMEOUT_S):
    """True when something listens at `address` (a name that does not resolve yet: False)."""
    try:
        with socket.create_connection(_split_address(address), timeout=timeout_s):
            return True
    except OSError:
        return False


def _hold_port(address):
    """A listening socket on this task's own port, or None where the port cannot be bound.

    Every task waits for all the others before TF opens its port, so each holds its own
    port open meanwhile; otherwise two tasks would wait for each other forever.
    """
    port = _split_address(address)[1]
    # Dual-stack first, as TF's server listens; IPv4 where the kernel has no IPv6.
    families = ([socket.AF_INET6] if socket.has_dualstack_ipv6() else []) + [socket.AF_INET]
    for family in families:
        try:
            listener = socket.create_server(
                ("", port), family=family, dualstack_ipv6=family == socket.AF_INET6
            )
        except OSError as error:
            failure = error
            continue
        listener.setblocking(False)
        return listener
    log.warning("cannot hold %s open while waiting for the cluster: %s", address, failure)
    return None


def _close_accepted(listener):
    """Accepts and closes the peers' probes, so the backlog never fills."""
    while listener is not None:
        try:
            connection, _ = listener.accept()
        except OSError:  # BlockingIOError: none pending
            return
        connection.close()


def cluster_tasks(cluster):
    """(this task's (job, index), {(job, index): address} of the cluster's chief/worker tasks)."""
    task = json.loads(os.environ["TF_CONFIG"]).get("task", {})
    addresses_by_task = {
        (job, index): address
        for job, addresses in cluster.items() if job in CLUSTER_JOBS
        for index, address in enumerate(addresses)
    }
    return (task.get("type"), int(task.get("index", 0))), addresses_by_task


def label(tasks, keys):
    return ", ".join(f"{tasks[key]} ({key[0]} {key[1]})" for key in sorted(keys))


def timeout_error(tasks, keys, own, timeout_s, joined=False):
    """The one-line StrategyError for tasks `keys` that were not there within `timeout_s`."""
    what = "accepted a connection but did not join" if joined else "did not accept a connection"
    return StrategyError(
        f"TF_CONFIG cluster: {label(tasks, keys)} {what} within {timeout_s:.0f} s, so "
        f"{label(tasks, [own])} cannot start. Start every task TF_CONFIG names (each waits "
        "for all the others), check the addresses and that this machine can reach them, or "
        f"wait longer with --set {CLUSTER_CONNECT_SETTING}={max(600, 2 * timeout_s):.0f}."
    )


def wait_for_peers(own, tasks, deadline):
    """Probes the other tasks until all accept a connection; returns those that never did.

    Runs in Python, sleeping between probes, so SIGTERM and Ctrl-C end the wait.
    """
    waiting = set(tasks) - {own}
    listener = _hold_port(tasks[own])
    announced = False
    try:
        while True:
            _close_accepted(listener)
            remaining = deadline - time.monotonic()
            waiting = {
                key for key in waiting
                if not accepts_connection(tasks[key], min(_PROBE_TIMEOUT_S, max(remaining, 0.1)))
            }
            if not waiting or time.monotonic() >= deadline:
                return waiting
            if not announced:
                log.warning(
                    "waiting up to %.0f s (%s) for %s to accept a connection",
                    remaining, CLUSTER_CONNECT_SETTING, label(tasks, waiting),
                )
                announced = True
            time.sleep(_PROBE_INTERVAL_S)
    finally:
        if listener is not None:
            listener.close()
