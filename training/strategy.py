"""TensorFlow's placement: picks the tf.distribute strategy for this machine (`get_strategy`)
and describes it for the loop (`placement`; JAX's is training/distribution.py).

    TPU named (--tpu NAME|grpc://ADDR|local) or found on a Cloud TPU VM -> TPUStrategy
    TF_CONFIG describes a cluster of several tasks  -> MultiWorkerMirroredStrategy
    several GPUs                                                          -> MirroredStrategy
    otherwise                                                             -> the default strategy

Keras `fit` then splits each global batch across the replicas (see training/data.py).

A cluster task waits at most `connect_timeout_s` (run config `cluster_connect_timeout_s`) for
the other tasks, and stays killable by SIGTERM and Ctrl-C while it waits: see
`multi_worker_strategy` for why that needs more than a thread with a timeout.
"""

import contextlib
import logging
import os
import re
import signal
import threading
import time

import tensorflow as tf

from training import cluster, tensorflow_internals
from training.config import STRATEGY_KINDS
from training.errors import StrategyError
from training.placement import Placement

log = logging.getLogger(__name__)

# TPUClusterResolver blocks forever on an unreachable gRPC address or a metadata server
# that never answers: every TPU call below runs under this bound.
TPU_CONNECT_TIMEOUT_S = 60.0
# Once every peer answers, TF's registration needs a few seconds (a peer that answered may
# still be setting up its devices); it never gets less than this, even near the timeout.
_REGISTER_MIN_S = 30.0


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


@contextlib.contextmanager
def _killable_in_tf():
    """Ctrl-C kills the process inside the TF call; SIGTERM's handling is restored after it.

    TF holds the GIL while it connects, so Python's SIGINT handler would only run once TF
    returns; the default action ends the process at once. TF replaces SIGTERM's handler
    with its preemption notifier, which only logs: training would ignore SIGTERM.
    """
    if threading.current_thread() is not threading.main_thread():
        yield  # signal handlers can only be set from the main thread
        return
    saved = {number: signal.getsignal(number) for number in (signal.SIGINT, signal.SIGTERM)}
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    try:
        yield
    finally:
        for number, handler in saved.items():
            # None: a handler not set from Python, which cannot be put back; use the default.
            signal.signal(number, signal.SIG_DFL if handler is None else handler)


def multi_worker_strategy(timeout_s=cluster.CLUSTER_CONNECT_TIMEOUT_S):
    """MultiWorkerMirroredStrategy for TF_CONFIG's cluster; StrategyError after `timeout_s`.

    TF waits for every task inside one C++ call (TFE_EnableCollectiveOps) that holds the
    GIL and has no deadline, and it installs a SIGTERM handler that only logs. While TF
    waits, no Python runs in any thread: neither a signal handler nor a thread with a
    timeout (as for TPUs) could end it. So this task first waits in Python until every
    other chief/worker task accepts a TCP connection, holding its own port open meanwhile
    so that the others' waits end too. Only then does TF connect, under its registration
    barrier with what is left of `timeout_s` (at least _REGISTER_MIN_S): a task that
    answered and then never joined is a StrategyError too, though SIGTERM is not seen
    during that last wait.
    """
    deadline = time.monotonic() + timeout_s
    tf_cluster = cluster.tf_config_cluster()
    if tf_cluster is None:  # this task alone: nobody to wait for
        return tf.distribute.MultiWorkerMirroredStrategy()
    own, tasks = cluster.cluster_tasks(tf_cluster)
    if own not in tasks:  # an evaluator takes no part in the collectives
        return tf.distribute.MultiWorkerMirroredStrategy()
    missing = cluster.wait_for_peers(own, tasks, deadline)
    if missing:
        raise cluster.timeout_error(tasks, missing, own, timeout_s)
    register_s = max(deadline - time.monotonic(), min(_REGISTER_MIN_S, timeout_s))
    tensorflow_internals.configure_coordination(tf_cluster, cluster.CLUSTER_JOBS, register_s)
    try:
        with _killable_in_tf():
            return tf.distribute.MultiWorkerMirroredStrategy()
    except tf.errors.DeadlineExceededError as error:
        # TF names the tasks that did not register as /job:worker/replica:0/task:1.
        named = {(job, int(index)) for job, index in re.findall(
            r"/job:(\w+)/replica:\d+/task:(\d+)", str(error))} & (set(tasks) - {own})
        late = named or set(tasks) - {own}
        unreachable = {key for key in late if not cluster.accepts_connection(tasks[key])}
        raise cluster.timeout_error(
            tasks, unreachable or late, own, timeout_s, joined=not unreachable
        ) from None
    except tf.errors.OpError as error:
        first_line = str(error).strip().splitlines()[0] if str(error).strip() else ""
        raise StrategyError(
            f"TF_CONFIG cluster: connecting {cluster.label(tasks, [own])} failed: "
            f"{type(error).__name__}: {first_line}"
        ) from None


def get_strategy(kind="auto", tpu=None, connect_timeout_s=cluster.CLUSTER_CONNECT_TIMEOUT_S):
    """Returns the tf.distribute strategy to train under (see the module docstring for the order).

    Args:
        kind: str. "auto" (default) decides as the module docstring says; "tpu",
            "multi_worker", "mirrored" or "default" force one.
        tpu: str or None. TPU name, `grpc://host:port`, or "local" (a Cloud TPU VM's own
            chips). Naming one means TPUStrategy; unreachable -> StrategyError within
            TPU_CONNECT_TIMEOUT_S seconds.
        connect_timeout_s: float. How long a task of a TF_CONFIG cluster waits for the
            others (run config `cluster_connect_timeout_s`); then StrategyError naming the
            addresses that did not answer. See `multi_worker_strategy`.

    Example:
    >>> strategy = training.strategy.get_strategy()
    >>> strategy.num_replicas_in_sync
    1
    """
    if kind not in STRATEGY_KINDS:
        raise StrategyError(f"strategy {kind!r} is not one of {STRATEGY_KINDS}.")
    if kind == "tpu" or tpu or (kind == "auto" and cluster.on_cloud_tpu_vm()):
        return tpu_strategy(tpu or os.environ.get("TPU_NAME") or "local")
    if kind == "multi_worker" or (kind == "auto" and cluster.tf_config_cluster()):
        return multi_worker_strategy(connect_timeout_s)
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


def _on_tpu(strategy):
    return isinstance(strategy, tf.distribute.TPUStrategy)


def _whole_batches(strategy):
    """Replicas need equal per-replica batches (and the mirrored evaluation budget counts whole
    batches, training/workarounds.py): validation then drops the last, partial batch."""
    mirrored = (tf.distribute.MirroredStrategy, tf.distribute.MultiWorkerMirroredStrategy)
    return strategy.num_replicas_in_sync > 1 or _on_tpu(strategy) or isinstance(strategy, mirrored)


def _jit_compile(strategy):
    def resolve(requested):
        on_gpu, on_tpu = bool(tf.config.list_logical_devices("GPU")), _on_tpu(strategy)
        if strategy.num_replicas_in_sync > 1 and not on_gpu and not on_tpu:
            # "Collectives are not yet implemented for CPU devices when compiling with XLA"
            # (TF 2.21): several CPU replicas all-reduce outside XLA.
            if requested is True:
                log.warning(
                    "jit_compile=True is not supported for %d CPU replicas; using False.",
                    strategy.num_replicas_in_sync,
                )
            return False
        if requested != "auto":
            return requested
        return on_tpu or on_gpu

    return resolve


def _devices(strategy):
    try:
        return list(strategy.extended.worker_devices)
    except RuntimeError:  # the default strategy: TF's first GPU, else the CPU
        return [(tf.config.list_logical_devices("GPU") or tf.config.list_logical_devices())[0].name]


def _several_workers(strategy):
    resolver = getattr(strategy, "cluster_resolver", None)
    return (
        isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy)
        and resolver is not None
        and bool(resolver.cluster_spec().jobs)
    )


def _any_worker_signalled(strategy):
    """`stop_together` for a cluster: the workers' SIGTERM flags summed by one all-reduce.

    Every worker calls it after the same train-function call, so all see the same sum and
    stop after the same step. The cost is one scalar all-reduce per call (per
    `steps_per_execution` steps), beside the step's own all-reduce of every gradient.
    """

    def replica_sum(flag):
        # tf.identity puts the flag on the replica's device, where the all-reduce starts.
        return tf.distribute.get_replica_context().all_reduce("SUM", tf.identity(flag))

    @tf.function
    def signalled_anywhere(flag):
        total = strategy.run(replica_sum, args=(flag,))
        return strategy.experimental_local_results(total)[0] > 0

    return lambda call, signalled: bool(signalled_anywhere(tf.constant(float(signalled))))


def placement(strategy):
    """The loop's view of a tf.distribute strategy (training/placement.py)."""
    extra = {"stop_together": _any_worker_signalled(strategy)} if _several_workers(strategy) else {}
    return Placement(
        name=strategy_name(strategy),
        num_replicas=strategy.num_replicas_in_sync,
        chief=is_chief(strategy),
        whole_batches=_whole_batches(strategy),
        jit_compile=_jit_compile(strategy),
        scope=strategy.scope,
        # The function form shards per input pipeline (worker) and batches per replica.
        distribute=strategy.distribute_datasets_from_function,
        device_mesh={"devices": _devices(strategy)},
        strategy=strategy,
        **extra,
    )
