"""The one place the project reaches past TensorFlow's public API.

Each use names its reason; `CHECKED` lists the TensorFlow versions they were checked on
(requirements.txt's 2.21 and the Cloud TPU pin's 2.20; their tests run in CI on both).
Another version is refused where a silent change could alter results (the shuffle order of
every epoch, so a resumed run's data), and a warning elsewhere.
"""

import tensorflow as tf

from keras_mixer.upstream import check_version

CHECKED = ("2.20", "2.21")

check_version("tensorflow", tf.__version__, CHECKED, "training/tensorflow_internals.py",
              wrong_result_possible=True)


def shuffle(ds, buffer_size, seed, seed2):
    """`ds.shuffle(buffer_size, seed)` for a `seed` that is a tensor (an epoch's, in flat_map).

    TF 2.21's `Dataset.shuffle` fails on a tensor seed when the global seed is 0
    (`random_seed.get_seed` compares `(global, op) == (0, 0)`, a Python bool of a tensor),
    and `keras.utils.set_random_seed(0)` is the default run's; TF's own shuffle op,
    `tf.raw_ops.ShuffleDataset`, takes both seeds directly. `seed2` must be a nonzero
    constant: (0, 0) would mean "random".
    """
    structure = tf.nest.flatten(ds.element_spec)
    variant = tf.raw_ops.ShuffleDataset(
        input_dataset=tf.data.experimental.to_variant(ds),
        buffer_size=tf.cast(buffer_size, tf.int64),
        seed=tf.cast(seed, tf.int64),
        seed2=tf.constant(seed2, tf.int64),
        reshuffle_each_iteration=False,
        output_types=[spec.dtype for spec in structure],
        output_shapes=[spec.shape for spec in structure],
    )
    return tf.data.experimental.from_variant(variant, ds.element_spec)


def freeze(concrete_function):
    """`concrete_function` with its variables as constants, as a CPU serving graph has them.

    TensorFlow 2 has no public call for this (`tf.compat.v1.graph_util` freezes TF1 graphs
    only); `convert_variables_to_constants_v2` is what its own SavedModel tools use.
    """
    from tensorflow.python.framework.convert_to_constants import (
        convert_variables_to_constants_v2,
    )

    return convert_variables_to_constants_v2(concrete_function)


def onednn_enabled():
    """Whether this TensorFlow runs oneDNN's kernels (`_MklMatMul`, ...) on this CPU.

    TensorFlow's x86 build turns them on by default only on a CPU with AVX-512 VNNI or
    bfloat16, AVX-VNNI or AMX (an AVX2-only CPU, e.g. AMD Zen 3, runs Eigen's), and
    `TF_ENABLE_ONEDNN_OPTS` overrides the default; no public call says which it chose.
    """
    from tensorflow.python.util import _pywrap_util_port

    return _pywrap_util_port.IsMklEnabled()


def configure_coordination(cluster, jobs, register_s):
    """TF's own coordination-service setup for MultiWorkerMirroredStrategy, plus a deadline.

    The same settings tf.distribute's CollectiveAllReduceExtended makes (it keeps a
    configuration that is already there), plus the registration barrier: without it TF's
    register timeout does not cover the wait for the other tasks. TensorFlow exposes neither
    the coordination service's settings nor its leader's name publicly.
    """
    from tensorflow.compiler.xla.tsl.protobuf import coordination_config_pb2
    from tensorflow.python.distribute import multi_worker_util
    from tensorflow.python.eager import context

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
                for job in jobs if job in cluster_spec.jobs
            ],
        )
    ctx.coordination_service.cluster_register_timeout_in_ms = int(register_s * 1000)
    ctx.coordination_service.cluster_register_with_barrier = True
