"""JAX's placement: Keras's own distribution API, data parallel over every device of every host.

    one host (a TPU VM, a GPU box, a laptop)   DataParallel over its devices
    several hosts (a TPU pod slice; or KERAS_DISTRIBUTION_JOB_ADDRESSES, _NUM_PROCESSES and
    _PROCESS_ID on a cluster of GPU hosts)     keras.distribution.initialize() first, then
                                               DataParallel over all hosts' devices

Every host runs the same command. Each host reads only its own shard of the input: the
examples `process_index`, `process_index + process_count`, ... of the run's seeded order, in
per-host batches of `batch_size / process_count` (training/data.py builds it from an
InputContext, as for a tf.distribute worker), and Keras's JAX trainer assembles the hosts'
batches into the global one. Keras's own sharding (`auto_shard_dataset`) is off: it would
read the whole dataset on every host and drop what is not its own.

XLA is how JAX runs: a config's jit_compile=false is ignored with a warning (Keras would run
every op eagerly, orders of magnitude slower). Settings of TensorFlow's tf.distribute (a
strategy, a TPU node, TF_CONFIG) are refused with a one-line error before anything starts.
"""

import logging
import os

import keras

from training.errors import ConfigError
from training.placement import Placement
from training.cluster import on_cloud_tpu_vm, tf_config_cluster

log = logging.getLogger(__name__)

# What keras.distribution.initialize() reads when it is not on a Cloud TPU.
CLUSTER_VARIABLES = (
    "KERAS_DISTRIBUTION_JOB_ADDRESSES",
    "KERAS_DISTRIBUTION_NUM_PROCESSES",
    "KERAS_DISTRIBUTION_PROCESS_ID",
)
_JAX_HOSTS = (
    "under JAX every device of every host is used through keras.distribution.DataParallel "
    "(on a TPU pod slice, run the same command on every host)"
)


def _refuse_tensorflow_only(config):
    if config["strategy"] != "auto":
        raise ConfigError(
            f"config strategy={config['strategy']!r} is TensorFlow's tf.distribute; {_JAX_HOSTS}: "
            "leave strategy at auto, or train with --backend tensorflow."
        )
    if config["tpu"]:
        raise ConfigError(
            f"config tpu={config['tpu']!r} names a TPU node for TensorFlow's TPUStrategy; JAX "
            "uses the TPU VM's own chips: run on the TPU VM without --tpu, or train with "
            "--backend tensorflow."
        )
    if tf_config_cluster():
        raise ConfigError(
            f"TF_CONFIG describes a tf.distribute cluster, which JAX does not read; {_JAX_HOSTS}, "
            f"and hosts off a TPU join through {', '.join(CLUSTER_VARIABLES)}: unset TF_CONFIG."
        )


def _several_hosts():
    return on_cloud_tpu_vm() or any(os.environ.get(name) for name in CLUSTER_VARIABLES)


def get_distribution(config):
    """keras.distribution.DataParallel over every device of every host (after joining them)."""
    _refuse_tensorflow_only(config)
    import jax

    if _several_hosts() and not jax.distributed.is_initialized():
        # On a Cloud TPU VM, JAX finds the slice's hosts itself (one host: one process).
        keras.distribution.initialize()
    return keras.distribution.DataParallel(devices=jax.devices(), auto_shard_dataset=False)


def _jit_compile(requested):
    if requested is False:
        log.warning("jit_compile=false is ignored under JAX: XLA is how JAX runs a step.")
    return True


def _host_input_context():
    """This host's input pipeline: its share of every global batch."""
    import jax
    import tensorflow as tf

    return tf.distribute.InputContext(
        num_input_pipelines=jax.process_count(),
        input_pipeline_id=jax.process_index(),
        num_replicas_in_sync=jax.process_count(),  # the per-"replica" batch is the host's
    )


def _reached_preemption_sync_point(call, signalled):
    """`stop_together` on several hosts: JAX's own preemption sync manager.

    jax.distributed.initialize starts it; it catches SIGTERM in the runtime (which is why no
    Python handler may replace its own), tells the other hosts through the coordination
    service, and names the next call all hosts have yet to reach: there every host stops.
    """
    from jax.experimental import multihost_utils

    return multihost_utils.reached_preemption_sync_point(call)


def placement(distribution):
    """The loop's view of a keras.distribution.DataParallel (training/placement.py)."""
    import jax

    mesh = distribution.device_mesh
    several_hosts = {
        "stop_together": _reached_preemption_sync_point, "catches_sigterm": True,
    } if jax.process_count() > 1 else {}
    return Placement(
        name=type(distribution).__name__,
        num_replicas=int(mesh.devices.size),
        chief=jax.process_index() == 0,
        whole_batches=True,  # static shapes: XLA compiles one step for one batch shape
        jit_compile=_jit_compile,
        scope=distribution.scope,
        fit_scope=distribution.scope,
        distribute=lambda dataset_fn: dataset_fn(_host_input_context()),
        device_mesh={
            "shape": list(mesh.shape),
            "axis_names": list(mesh.axis_names),
            "devices": [str(device) for device in mesh.devices.flatten()],
            "processes": jax.process_count(),
        },
        **several_hosts,
    )
