"""The one place training reaches past Keras's public API.

Each use names its reason; `CHECKED` lists the Keras versions they were checked on
(requirements.txt's pin). Another version is refused: both uses shape what a training step
computes (its logged metrics, the RandAugment ops it draws from), so a silent change could
alter results. training/workarounds.py's patches of Keras bugs were written for the same
versions: review both when adding one to `CHECKED`.
"""

import io

import keras

from keras_mixer.upstream import check_version

CHECKED = ("3.15",)

check_version("keras", keras.version(), CHECKED, "training/keras_internals.py",
              wrong_result_possible=True)


def reduce_per_replica(outputs, strategy):
    """Keras's own reduction of per-replica step outputs on TensorFlow, as `fit` does it.

    Private (`keras.src.backend.tensorflow.trainer`), but a replaced train function must
    reduce its logs exactly as Keras's does for `fit`'s callbacks and history to match.
    """
    from keras.src.backend.tensorflow.trainer import reduce_per_replica as keras_reduce

    return keras_reduce(outputs, strategy, reduction="auto")


def randaugment_ops(layer):
    """A `keras.layers.RandAugment` layer's op sub-layers, in its own order.

    Private (`_AUGMENT_LAYERS`): the layer has no public list of the ops it draws from, and
    training/augment.py runs one of them per image instead of all of them per batch.
    """
    return [getattr(layer, name) for name in layer._AUGMENT_LAYERS]


def weights_h5(model):
    """`model.save_weights(...)`'s `.weights.h5` as an in-memory file (io.BytesIO).

    HDF5 cannot close a file after a write to it failed (a full disk): h5py prints "Can't
    decrement id ref count" for each open object, and HDF5's exit handler then crashes the
    process with SIGSEGV (h5py/h5py#914, #2160; seen with h5py 3.14, HDF5 1.14.6). Built in
    memory, the checkpoint meets the disk as plain bytes through keras_mixer.storage, where a
    failed write is an ordinary error. Keras 3.15's `save_weights` takes paths only, so this
    runs what it runs (saving_lib.save_weights_only) on the BytesIO its H5IOStore accepts.
    """
    from keras.src.saving import saving_lib

    buffer = io.BytesIO()
    store = saving_lib.H5IOStore(buffer, mode="w")
    saving_lib._save_state(
        model, weights_store=store, assets_store=None, inner_path="", visited_saveables=set()
    )
    store.close()
    return buffer
