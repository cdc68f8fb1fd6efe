"""Picks the tf.distribute strategy for this machine: one function, `get_strategy`.

    TPU named (--tpu NAME|grpc://ADDR|local) or found on a Cloud TPU VM -> TPUStrategy
    TF_CONFIG describes a cluster of several tasks  -> MultiWorkerMirroredStrategy
    several GPUs                                                          -> MirroredStrategy
    otherwise                                                             -> the default strategy

Keras `fit` then splits each global batch across the replicas (see training/data.py).
"""

import json
import logging
import os
import threading

import tensorflow as tf

log = logging.getLogger(__name__)

# TPUClusterResolver blocks forever on an unreachable gRPC address or a metadata server
# that never answers: every TPU call below runs under this bound.
TPU_CONNECT_TIMEOUT_S = 60.0
STRATEGY_KINDS = ("auto", "tpu", "multi_worker", "mirrored", "default")


class StrategyError(RuntimeError):
    """The requested accelerator or cluster cannot be used; the message says what to do."""


def _cluster_spec():
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


def _bounded(function, timeout_s, what):
    """Runs `function()` in a daemon thread; raises StrategyError when it takes over `timeout_s`."""
    result = {}

    def target():
        try:
            result["value"] = function()
        except Exception as error:  # reported to the caller below
            result["error"] = error

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    thread.join(timeout_s)
    if thread.is_alive():
        raise StrategyError(
            f"{what} did not answer within {timeout_s:.0f} s. Check the TPU name or address "
            "(`gcloud compute tpus tpu-vm list`), that this VM can reach it, and that no other "
            "process holds the TPU; on a TPU VM pass --tpu local."
        )
    if "error" in result:
        raise StrategyError(
            f"{what} failed: {type(result['error']).__name__}: {result['error']}"
        ) from result["error"]
    return result["value"]


def tpu_strategy(tpu, timeout_s=TPU_CONNECT_TIMEOUT_S):
    """Connects to a TPU (name, grpc:// address or "local"); a TPUStrategy within `timeout_s`."""

    def connect():
        resolver = tf.distribute.cluster_resolver.TPUClusterResolver(tpu=tpu)
        if tpu not in ("local",):
            tf.config.experimental_connect_to_cluster(resolver)
        tf.tpu.experimental.initialize_tpu_system(resolver)
        return tf.distribute.TPUStrategy(resolver)

    return _bounded(connect, timeout_s, f"TPU {tpu!r}")


def get_strategy(kind="auto", tpu=None, connect_timeout_s=None):
    """Returns the tf.distribute strategy to train under (see the module docstring for the order).

    Args:
        kind: str. "auto" (default) decides as the module docstring says; "tpu",
            "multi_worker", "mirrored" or "default" force one.
        tpu: str or None. TPU name, `grpc://host:port`, or "local" (a Cloud TPU VM's own
            chips). Naming one means TPUStrategy; unreachable -> StrategyError within
            TPU_CONNECT_TIMEOUT_S seconds.

    Example:
    >>> strategy = training.strategy.get_strategy()
    >>> strategy.num_replicas_in_sync
    1
    """
    if kind not in STRATEGY_KINDS:
        raise StrategyError(f"strategy {kind!r} is not one of {STRATEGY_KINDS}.")
    if kind == "tpu" or tpu or (kind == "auto" and on_cloud_tpu_vm()):
        return tpu_strategy(tpu or os.environ.get("TPU_NAME") or "local")
    if kind == "multi_worker" or (kind == "auto" and _cluster_spec()):
        return tf.distribute.MultiWorkerMirroredStrategy()
    if kind == "mirrored":
        return tf.distribute.MirroredStrategy()
    if kind == "auto" and len(tf.config.list_logical_devices("GPU")) > 1:
        return tf.distribute.MirroredStrategy()
    return tf.distribute.get_strategy()


def strategy_name(strategy):
    """The public name ("MultiWorkerMirroredStrategy", not CollectiveAllReduceStrategy)."""
    for cls, name in (
        (tf.distribute.TPUStrategy, "TPUStrategy"),
        (tf.distribute.MultiWorkerMirroredStrategy, "MultiWorkerMirroredStrategy"),
        (tf.distribute.MirroredStrategy, "MirroredStrategy"),
    ):
        if isinstance(strategy, cls):
            return name
    return "default"


def is_chief(strategy):
    """True on the one task that writes the run directory (always, off multi-worker)."""
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is None or not isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy):
        return True
    task_type, task_id = resolver.task_type, resolver.task_id
    return task_type in (None, "chief") or (
        task_type == "worker" and task_id == 0 and "chief" not in resolver.cluster_spec().as_dict()
    )
