"""Patches for Keras bugs that training hits, each on one model or callback only.

Each names its bug. They were written for the Keras versions training/keras_internals.py
checks (`CHECKED`), which refuses any other at import: a Keras upgrade is reviewed there and
here together. The tests that exercise the patches (tests/test_training.py: the
multi-worker, mirrored and ram:// runs) fail if one is no longer right. Delete a patch
once its bug is fixed in the pinned Keras.
"""

import contextlib

import keras
import tensorflow as tf

from training.augment import image_size
from training.config import uses_dense_labels
from training.steps import StepsPerExecution

def fix_multi_worker_fit(model, strategy, config, num_classes):
    """Makes Keras 3 `fit` work under MultiWorkerMirroredStrategy (keras-team/keras#20585).

    As shipped (Keras 3.15), `fit` (1) builds the loss, metrics and optimizer symbolically
    from a batch it first reduces across workers, which fails on the PerReplica batch, and
    (2) reduces the scalar logs with `strategy.reduce("MEAN", v, axis=0)`, which fails on
    scalars. We (1) build them ourselves from the per-replica batch shape and skip Keras's
    build, and (2) return each scalar log as shape [1], so that the MEAN along axis 0 is
    the mean over all replicas, as intended.
    """
    if not isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy):
        return
    for name in ("train_step", "test_step"):
        step = getattr(model, name)
        setattr(
            model,
            name,
            lambda data, step=step: keras.tree.map_structure(
                lambda value: tf.reshape(value, [1]) if value.shape.rank == 0 else value, step(data)
            ),
        )
    per_replica = config["batch_size"] // strategy.num_replicas_in_sync
    height, width = image_size(config)
    images = keras.KerasTensor((per_replica, height, width, config["num_channels"]), "float32")
    if uses_dense_labels(config):
        labels = keras.KerasTensor((per_replica, num_classes), "float32")
    else:
        labels = keras.KerasTensor((per_replica,), "int32")
    with strategy.scope():
        model._symbolic_build(data_batch=(images, labels))
    model._maybe_symbolic_build = lambda iterator=None, data_batch=None: None


def fix_mirrored_evaluation_steps(model, strategy, validation_steps):
    """Evaluation with `steps_per_execution` > 1 under (MultiWorker)MirroredStrategy.

    Keras 3.15 runs several steps per call in a `tf.while_loop` with a `tf.cond` around
    `strategy.run`, which fails under these strategies ("You must feed a value for
    placeholder tensor", keras-team/keras#19246). Training already runs its steps unrolled
    (training/steps.py); evaluation gets the same, with a budget of `validation_steps`
    (several replicas drop remainders, so a pass has exactly that many batches).
    """
    mirrored = (tf.distribute.MirroredStrategy, tf.distribute.MultiWorkerMirroredStrategy)
    if model.steps_per_execution == 1 or not isinstance(strategy, mirrored):
        return
    model.test_function = StepsPerExecution(model, model.test_step, validation_steps)


class CSVLogger(keras.callbacks.CSVLogger):
    """keras.callbacks.CSVLogger that also ends on a remote path (gs://, ram://).

    Keras 3.15 opens a remote file through `tf.io.gfile.GFile`, which has no `closed`
    attribute, and `on_train_end` asks `self.csv_file.closed`: training on a remote run
    directory dies at its very end with AttributeError. No Keras issue for it was found
    in the tracker (searched 2026-12); it reproduces with
    `keras.callbacks.CSVLogger("ram://x.csv")` in any `fit`.
    """

    def on_train_begin(self, logs=None):
        self.csv_file = None  # a GFile has no `closed`; ours is closed in on_train_end
        super().on_train_begin(logs)

    def on_train_end(self, logs=None):
        if self.csv_file is not None:
            self.csv_file.close()
            self.csv_file = None
        self.writer = None


@contextlib.contextmanager
def saving_on_one_host():
    """Lets the chief alone save weights in a multi-host JAX run.

    Keras 3.15's `save_weights` builds a throwaway Optimizer (saving_lib's
    `get_attr_skipset`), and inside a keras.distribution scope its step variable is placed
    on every host's devices by `jax.device_put`, which first checks across hosts that the
    value is the same (multihost_utils.assert_equal): a collective the other hosts never
    join, so the chief waits forever at its first checkpoint. Outside the distribution the
    throwaway variable stays on the chief's own device; the model's own variables are
    only read. Reproduces with two processes joined by keras.distribution.initialize() and
    `model.save_weights` on process 0 alone (tests/test_jax.py, the two-host run).
    """
    distribution = keras.distribution.distribution()
    if distribution is None:
        yield
        return
    keras.distribution.set_distribution(None)
    try:
        yield
    finally:
        keras.distribution.set_distribution(distribution)
