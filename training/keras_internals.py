"""The one place training reaches past Keras's public API.

Each use names its reason; `CHECKED` lists the Keras versions they were checked on
(requirements.txt's pin). Another version is refused: both uses shape what a training step
computes (its logged metrics, the RandAugment ops it draws from), so a silent change could
alter results. training/workarounds.py patches Keras bugs through the public API.
"""

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
