"""tensorflow-model-optimization on the Mixer: quantization-aware training, pruning, clustering.

tfmot works on tf_keras models only (it refuses Keras 3 models; `cluster_weights` even
returns None on one), so each step runs on the tf_keras twin that `export.graph.rebuild`
builds from the one Mixer definition, after checking that the twin gives the Keras model's
logits. Importing tfmot sets TF_USE_LEGACY_KERAS=1, which changes what `tf.keras` means;
this project never writes `tf.keras` and imports `keras` and `tf_keras` by name.

- `quantization_aware_training` returns the fine-tuned tf_keras QAT model (fake-quant
  ranges learnt), which `export.pipeline` converts to full int8.
- `prune` and `cluster` fine-tune the twin and return its stripped weights, which copy back
  into the Keras model by position; export then quantizes them like any model.
"""

import numpy as np
import tensorflow_model_optimization as tfmot
import tf_keras

from export import graph
from keras_mixer.mlp_mixer import gelu_tanh

quantize = tfmot.quantization.keras

# The twin and the Keras model compute the same float32 function with the same weights;
# they differ by kernel round-off only (measured ~6e-6 on the tiny digits Mixer).
TWIN_TOLERANCE = 1e-4


class OutputQuantizeConfig(quantize.QuantizeConfig):
    """Quantizes a layer's output to 8 bits and leaves its weights to the converter.

    tfmot's default registry has no entry for LayerNormalization (nor for Rescaling or an
    Activation with a function it does not know, such as the Mixer's tanh GELU). These
    layers hold no kernel worth fake-quantizing (LayerNorm's gamma and beta fold into the
    int8 MUL/ADD the converter emits), but their outputs feed int8 ops, so QAT must learn
    their output ranges: one asymmetric per-tensor moving-average quantizer, as tfmot's
    own default for activations.
    """

    def get_weights_and_quantizers(self, layer):
        return []

    def get_activations_and_quantizers(self, layer):
        return []

    def set_quantize_weights(self, layer, quantize_weights):
        pass

    def set_quantize_activations(self, layer, quantize_activations):
        pass

    def get_output_quantizers(self, layer):
        return [quantize.quantizers.MovingAverageQuantizer(
            num_bits=8, per_axis=False, symmetric=False, narrow_range=False)]

    def get_config(self):
        return {}


# Layers of the Mixer that tfmot's registry does not cover; Dense, Conv2D, Reshape,
# Permute, Add and GlobalAveragePooling1D use tfmot's own configs.
OUTPUT_QUANTIZED_LAYERS = (
    tf_keras.layers.LayerNormalization, tf_keras.layers.Rescaling, tf_keras.layers.Activation,
)
# Layers whose kernels pruning and clustering act on (the stem and every MLP and the head).
WEIGHT_LAYERS = (tf_keras.layers.Dense, tf_keras.layers.Conv2D)


def twin(model, images, *, integer_friendly=False):
    """The tf_keras twin of `model`, checked to give the same logits on `images`.

    Args:
        model: keras_mixer.MlpMixer.
        images: float32 (N, H, W, C). A few real inputs for the check.
        integer_friendly: bool. Build the twin with export.graph.integer_friendly layers.

    Example:
    >>> tf_keras_model = twin(model, images[:32])
    """
    # The GELU as an Activation layer either way: tfmot clones layers through their configs,
    # and tf_keras cannot deserialize a Dense whose activation is a Keras 3 function.
    layers = (
        graph.integer_friendly(tf_keras.layers)
        if integer_friendly
        else graph.activations_as_layers(tf_keras.layers)
    )
    tf_keras_model = graph.rebuild(model, layers)
    images = np.asarray(images, np.float32)
    difference = float(np.max(np.abs(
        tf_keras_model(images, training=False).numpy() - np.asarray(model(images, training=False))
    )))
    if not difference <= TWIN_TOLERANCE:
        raise RuntimeError(
            f"The tf_keras twin's logits differ from the Keras model's by {difference:.3g} "
            f"(> {TWIN_TOLERANCE}); weights copied by position no longer line up with "
            "keras_mixer.build_mixer. Fix the builder before quantizing."
        )
    return tf_keras_model


def _custom_objects(tf_keras_model):
    objects = {"OutputQuantizeConfig": OutputQuantizeConfig, "gelu_tanh": gelu_tanh,
               "gelu_sigmoid": graph.gelu_sigmoid}
    for layer in tf_keras_model.layers:
        objects[type(layer).__name__] = type(layer)
    return objects


def _fit(tf_keras_model, train_data, steps, learning_rate, callbacks=()):
    if steps <= 0:
        return
    tf_keras_model.compile(
        optimizer=tf_keras.optimizers.Adam(learning_rate),
        loss=tf_keras.losses.SparseCategoricalCrossentropy(from_logits=True),
    )
    # verbose=1: Keras's progress bar (steps, ETA, loss); a large variant fine-tunes for
    # minutes, which without it look like a hang.
    tf_keras_model.fit(train_data.repeat(), steps_per_epoch=steps, epochs=1, verbose=1,
                       callbacks=list(callbacks))


# tfmot's activation quantizers start at [-6, 6] and follow the batch ranges with an EMA of
# decay 0.999: after a few hundred fine-tuning steps the ranges are still mostly [-6, 6].
MOVING_AVERAGE_RANGES = ("output_min", "output_max", "post_activation_min", "post_activation_max")
EMA_DECAY = 0.999


def calibrate_ranges(qat_model, images, rounds=2):
    """Starts every moving-average range of a tfmot QAT model at the range seen on `images`.

    One training-mode pass moves each range variable by (1 - decay) towards the batch's
    range, so the batch range is `old + (new - old) / (1 - decay)`; assigning it starts
    QAT from the ranges post-training quantization would calibrate, instead of [-6, 6].
    A second round sees the upstream outputs fake-quantized with calibrated ranges.
    """
    variables = [variable for variable in qat_model.non_trainable_variables
                 if variable.name.split("/")[-1].split(":")[0] in MOVING_AVERAGE_RANGES]
    for _ in range(rounds):
        before = [variable.numpy() for variable in variables]
        qat_model(np.asarray(images, np.float32), training=True)
        for variable, old in zip(variables, before):
            variable.assign(old + (variable.numpy() - old) / (1.0 - EMA_DECAY))
    return len(variables)


def quantization_aware_training(model, train_data, *, steps, learning_rate=3e-5,
                                integer_friendly=True, calibration_images=None):
    """Fine-tunes `model` with fake quantization (tfmot QAT) and returns the tf_keras QAT model.

    Args:
        model: keras_mixer.MlpMixer, trained.
        train_data: tf.data.Dataset of (float images, int labels) batches.
        steps: int. Fine-tuning steps.
        learning_rate: float. Adam learning rate; small, the model is already trained and
            QAT starts from calibrated ranges (on the digits, 3e-5 for 300 steps matched PTQ's
            accuracy with the closest logits; 1e-4 moved top-1 by +-1 image).
        integer_friendly: bool. Fine-tune the graph the int8 export converts (export/graph.py).
        calibration_images: float32 (N, H, W, C) or None. Images that set the initial
            quantization ranges (`calibrate_ranges`); defaults to the first training batch.

    Example:
    >>> qat_model = quantization_aware_training(model, train_batches, steps=200)
    """
    images, _ = next(iter(train_data))
    tf_keras_model = twin(model, images, integer_friendly=integer_friendly)

    def annotate(layer):
        if isinstance(layer, tf_keras.layers.InputLayer):
            return layer
        if isinstance(layer, OUTPUT_QUANTIZED_LAYERS):
            return quantize.quantize_annotate_layer(layer, OutputQuantizeConfig())
        return quantize.quantize_annotate_layer(layer)

    with quantize.quantize_scope(_custom_objects(tf_keras_model)):
        annotated = tf_keras.models.clone_model(tf_keras_model, clone_function=annotate)
        qat_model = quantize.quantize_apply(annotated)
    calibrate_ranges(qat_model, images if calibration_images is None else calibration_images)
    _fit(qat_model, train_data, steps, learning_rate)
    return qat_model


def _wrap_weight_layers(tf_keras_model, wrap):
    # Wrapping the twin's own layer objects keeps their trained weights (tfmot's pattern).
    def clone(layer):
        return wrap(layer) if isinstance(layer, WEIGHT_LAYERS) else layer

    with tf_keras.utils.custom_object_scope(_custom_objects(tf_keras_model)):
        return tf_keras.models.clone_model(tf_keras_model, clone_function=clone)


def sparsity(weights_by_layer):
    """Fraction of exact zeros over the kernels of the Dense and Conv2D layers."""
    zeros = sum(int(np.sum(kernel == 0)) for kernel in weights_by_layer)
    total = sum(kernel.size for kernel in weights_by_layer)
    return zeros / max(total, 1)


def _kernels(tf_keras_model):
    return [layer.kernel.numpy() for layer in tf_keras_model.layers
            if isinstance(layer, WEIGHT_LAYERS)]


def prune(model, train_data, *, steps, target_sparsity=0.5, learning_rate=1e-3):
    """Magnitude-prunes the stem, MLP and head kernels to `target_sparsity` while fine-tuning.

    Sparsity ramps up (polynomial schedule) over the first half of the steps and holds for the
    second half. The mask is updated every few steps: tfmot's default frequency of 100 steps
    can leave a short fine-tune at 0% sparsity without a word, so the reached sparsity is
    measured and returned.

    Returns `(weights, reached_sparsity)`: the stripped weights, in `model.get_weights()` order.

    Example:
    >>> weights, reached = prune(model, train_batches, steps=200, target_sparsity=0.5)
    """
    images, _ = next(iter(train_data))
    tf_keras_model = twin(model, images)
    frequency = max(1, steps // 20)
    end_step = max(frequency, (steps // 2) // frequency * frequency)
    schedule = tfmot.sparsity.keras.PolynomialDecay(
        initial_sparsity=0.0, final_sparsity=target_sparsity, begin_step=0, end_step=end_step,
        frequency=frequency,
    )
    pruned = _wrap_weight_layers(
        tf_keras_model,
        lambda layer: tfmot.sparsity.keras.prune_low_magnitude(layer, pruning_schedule=schedule),
    )
    _fit(pruned, train_data, steps, learning_rate, [tfmot.sparsity.keras.UpdatePruningStep()])
    stripped = tfmot.sparsity.keras.strip_pruning(pruned)
    reached = sparsity(_kernels(stripped))
    if reached < target_sparsity - 0.05:
        raise RuntimeError(
            f"Pruning reached {reached:.1%} sparsity, expected {target_sparsity:.0%}: the pruning "
            f"schedule never fired (steps={steps}). Use more fine-tuning steps."
        )
    return stripped.get_weights(), reached


def cluster(model, train_data, *, steps, number_of_clusters=16, learning_rate=1e-3):
    """Clusters every stem, MLP and head kernel to `number_of_clusters` shared values.

    Returns `(weights, max_unique_values)`: the stripped weights, in `model.get_weights()`
    order, and the largest number of distinct values left in one kernel.

    Example:
    >>> weights, unique = cluster(model, train_batches, steps=200, number_of_clusters=16)
    """
    images, _ = next(iter(train_data))
    tf_keras_model = twin(model, images)
    centroids = tfmot.clustering.keras.CentroidInitialization.KMEANS_PLUS_PLUS
    clustered = _wrap_weight_layers(
        tf_keras_model,
        lambda layer: tfmot.clustering.keras.cluster_weights(
            layer, number_of_clusters=number_of_clusters, cluster_centroids_init=centroids),
    )
    _fit(clustered, train_data, steps, learning_rate)
    stripped = tfmot.clustering.keras.strip_clustering(clustered)
    unique = max(len(np.unique(kernel)) for kernel in _kernels(stripped))
    return stripped.get_weights(), unique


def with_weights(model, weights):
    """A copy of the keras_mixer model `model` holding `weights` (e.g. pruned or clustered)."""
    copy = type(model).from_config(model.get_config())
    copy.set_weights(weights)
    return copy
