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
import json
import logging
import os
import re
import signal
import socket
import threading
import time

import tensorflow as tf
from tensorflow.compiler.xla.tsl.protobuf import coordination_config_pb2
from tensorflow.python.distribute import multi_worker_util
from tensorflow.python.eager import context

from training.config import DEFAULTS, STRATEGY_KINDS
from training.placement import Placement

log = logging.getLogger(__name__)

# TPUClusterResolver blocks forever on an unreachable gRPC address or a metadata server
# that never answers: every TPU call below runs under this bound.
TPU_CONNECT_TIMEOUT_S = 60.0
# Long enough for a scheduler to start every task of a cluster, short enough that a task
# whose peer never comes up says so instead of holding its machine (training/config.py).
CLUSTER_CONNECT_SETTING = "cluster_connect_timeout_s"
CLUSTER_CONNECT_TIMEOUT_S = DEFAULTS[CLUSTER_CONNECT_SETTING]
# Tasks that take part in MultiWorkerMirroredStrategy's collectives (an evaluator does not).
CLUSTER_JOBS = ("chief", "worker")
# A peer that is up answers a TCP connect on its own network within milliseconds.
_PROBE_TIMEOUT_S = 1.0
_PROBE_INTERVAL_S = 0.5
# Once every peer answers, TF's registration needs a few seconds (a peer that answered may
# still be setting up its devices); it never gets less than this, even near the timeout.
_REGISTER_MIN_S = 30.0


class StrategyError(RuntimeError):
    """The requested accelerator or cluster cannot be used; the message says what to do."""


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


def _split_address(address):
    """("host", port) of a TF_CONFIG "host:port" (IPv6 hosts in brackets)."""
    host, _, port = address.rpartition(":")
    if not host or not port.isdigit():
        raise StrategyError(f"TF_CONFIG address {address!r} is not host:port.")
    return host.strip("[]"), int(port)


def _accepts_connection(address, timeout_s=_PROBE_TIMEOUT_S):
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


def _cluster_tasks(cluster):
    """(this task's (job, index), {(job, index): address} of the cluster's chief/worker tasks)."""
    task = json.loads(os.environ["TF_CONFIG"]).get("task", {})
    tasks = {
        (job, index): address
        for job, addresses in cluster.items() if job in CLUSTER_JOBS
        for index, address in enumerate(addresses)
    }
    return (task.get("type"), int(task.get("index", 0))), tasks


def _label(tasks, keys):
    return ", ".join(f"{tasks[key]} ({key[0]} {key[1]})" for key in sorted(keys))


def _timeout_error(tasks, keys, own, timeout_s, joined=False):
    """The one-line StrategyError for tasks `keys` that were not there within `timeout_s`."""
    what = "accepted a connection but did not join" if joined else "did not accept a connection"
    return StrategyError(
        f"TF_CONFIG cluster: {_label(tasks, keys)} {what} within {timeout_s:.0f} s, so "
        f"{_label(tasks, [own])} cannot start. Start every task TF_CONFIG names (each waits "
        "for all the others), check the addresses and that this machine can reach them, or "
        f"wait longer with --set {CLUSTER_CONNECT_SETTING}={max(600, 2 * timeout_s):.0f}."
    )


def _wait_for_peers(own, tasks, deadline):
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
                if not _accepts_connection(tasks[key], min(_PROBE_TIMEOUT_S, max(remaining, 0.1)))
            }
            if not waiting or time.monotonic() >= deadline:
                return waiting
            if not announced:
                log.warning(
                    "waiting up to %.0f s (%s) for %s to accept a connection",
                    remaining, CLUSTER_CONNECT_SETTING, _label(tasks, waiting),
                )
                announced = True
            time.sleep(_PROBE_INTERVAL_S)
    finally:
        if listener is not None:
            listener.close()


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


def _configure_coordination(cluster, register_s):
    """TF's own coordination-service setup for MultiWorkerMirroredStrategy, plus a deadline.

    The same settings tf.distribute's CollectiveAllReduceExtended makes (it keeps a
    configuration that is already there), plus the registration barrier: without it TF's
    register timeout does not cover the wait for the other tasks.
    """
    ctx = context.context()
    if ctx.coordination_service is None:
        cluster_spec = tf.train.ClusterSpec(cluster)
        ctx.configure_coordination_service(
            service_type="standalone",
            service_leader=multi_worker_util.coordination_leader(cluster_spec),
            coordinated_jobs=[
                coordination_config_pb2.CoordinatedJob(
                    name=job, num_tasks=cluster_spec.num_tasks(job)
                )
                for job in CLUSTER_JOBS if job in cluster_spec.jobs
            ],
        )
    ctx.coordination_service.cluster_register_timeout_in_ms = int(register_s * 1000)
    ctx.coordination_service.cluster_register_with_barrier = True


def multi_worker_strategy(timeout_s=CLUSTER_CONNECT_TIMEOUT_S):
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
    cluster = tf_config_cluster()
    if cluster is None:  # this task alone: nobody to wait for
        return tf.distribute.MultiWorkerMirroredStrategy()
    own, tasks = _cluster_tasks(cluster)
    if own not in tasks:  # an evaluator takes no part in the collectives
        return tf.distribute.MultiWorkerMirroredStrategy()
    missing = _wait_for_peers(own, tasks, deadline)
    if missing:
        raise _timeout_error(tasks, missing, own, timeout_s)
    register_s = max(deadline - time.monotonic(), min(_REGISTER_MIN_S, timeout_s))
    _configure_coordination(cluster, register_s)
    try:
        with _killable_in_tf():
            return tf.distribute.MultiWorkerMirroredStrategy()
    except tf.errors.DeadlineExceededError as error:
        # TF names the tasks that did not register as /job:worker/replica:0/task:1.
        named = {(job, int(index)) for job, index in re.findall(
            r"/job:(\w+)/replica:\d+/task:(\d+)", str(error))} & (set(tasks) - {own})
        late = named or set(tasks) - {own}
        unreachable = {key for key in late if not _accepts_connection(tasks[key])}
        raise _timeout_error(
            tasks, unreachable or late, own, timeout_s, joined=not unreachable
        ) from None
    except tf.errors.OpError as error:
        first_line = str(error).strip().splitlines()[0] if str(error).strip() else ""
        raise StrategyError(
            f"TF_CONFIG cluster: connecting {_label(tasks, [own])} failed: "
            f"{type(error).__name__}: {first_line}"
        ) from None


def get_strategy(kind="auto", tpu=None, connect_timeout_s=CLUSTER_CONNECT_TIMEOUT_S):
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
    if kind == "tpu" or tpu or (kind == "auto" and on_cloud_tpu_vm()):
        return tpu_strategy(tpu or os.environ.get("TPU_NAME") or "local")
    if kind == "multi_worker" or (kind == "auto" and tf_config_cluster()):
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
