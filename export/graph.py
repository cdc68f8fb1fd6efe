"""The graph the TFLite converter sees: the one Mixer definition, rebuilt in a layers namespace.

`rebuild(model, layers)` calls `keras_mixer.build_mixer` with another layers namespace and
copies the weights across by position, so there is never a second hand-written Mixer:

- `rebuild(model, activations_as_layers(tf_keras.layers))` is the tf_keras twin that
  tensorflow-model-optimization accepts (it refuses Keras 3 models), the GELU a layer of its
  own, as tfmot can clone it (export.optimize.twin).
- `rebuild(model, integer_friendly(keras.layers))` computes the same function with LayerNorm
  and GELU spelled in ops that XNNPACK runs in int8, so that a full-integer model stays in
  few delegated partitions (docs/benchmarks.md measures both graphs).

Why the integer-friendly spelling (measured with ai-edge-litert 2.3 on x86, tiny Mixer):
- Keras's LayerNorm lowers to MEAN, NEG, SQUARED_DIFFERENCE, RSQRT, MUL, ADD; in full int8 the
  NEG stays float (DEQUANTIZE/NEG/QUANTIZE) and XNNPACK delegates none of NEG,
  SQUARED_DIFFERENCE or RSQRT. Written as MEAN, SUB, MUL, MEAN, ADD, RSQRT, MUL, ADD, only the
  per-token RSQRT (one int8 op per LayerNorm, on a (tokens, 1) tensor) leaves the delegate;
  XNNPACK has no int8 RSQRT, SQRT or DIV, so no exact spelling avoids it.
- The builtin GELU has no int8 XNNPACK kernel. The tanh form used by the Mixer is exactly
  x * sigmoid(2 z) with z = sqrt(2/pi) (x + 0.044715 x^3), since 0.5 (1 + tanh z) = sigmoid(2 z);
  MUL, ADD and LOGISTIC all run in int8 in XNNPACK.
Both spellings give the Keras model's float logits to float32 round-off (tested).

The graphs export converts (all but QAT's) also have the stem as one matrix product over the
patches (`patches_as_matmul`): the converter keeps a Conv2D as CONV_2D, which XNNPACK runs as
an indirect GEMM, several times slower in int8 than the same multiply-adds as a GEMM
(docs/benchmarks.md, "LiteRT, operator by operator"). The patches are cut with 4-D reshapes
and one transpose, so the graph stays within the 4-D tensors LiteRT's GPU delegate takes.
"""

import math

import keras
import tensorflow as tf

from keras_mixer.layers import with_layers
from keras_mixer.mlp_mixer import build_mixer, gelu_tanh

# 2 sqrt(2/pi) and 2 sqrt(2/pi) * 0.044715: the tanh-GELU's argument, doubled for the sigmoid.
GELU_SIGMOID_LINEAR = 2.0 * math.sqrt(2.0 / math.pi)
GELU_SIGMOID_CUBIC = GELU_SIGMOID_LINEAR * 0.044715


def gelu_sigmoid(x):
    """The tanh-approximated GELU written as x * sigmoid(x (a + b x^2)), the same function.

    Example:
    >>> gelu_sigmoid(tf.constant([1.0]))  # == keras_mixer.gelu_tanh(1.0) == 0.8412
    """
    return x * tf.sigmoid(x * (GELU_SIGMOID_LINEAR + GELU_SIGMOID_CUBIC * (x * x)))


def activations_as_layers(layers, *, substitutes=None):
    """`layers` in which `Dense(units, activation=f)` is a Dense, then an Activation layer.

    The MLP's GELU as a layer of its own, named `<dense name>_activation`, as export's graphs
    need it: tfmot clones layers through their configs (tf_keras cannot deserialize a Dense
    whose activation is a Keras 3 function), and its QAT learns an Activation layer's output
    range. `substitutes` maps an activation function to the one to build instead. Weights and
    their order are unchanged: an Activation holds none.

    Example:
    >>> twin = rebuild(model, activations_as_layers(tf_keras.layers))
    """
    substitutes = substitutes or {}

    def dense(units, *, activation=None, name=None, **kwargs):
        layer = layers.Dense(units, name=name, **kwargs)
        if activation is None:
            return layer
        after = layers.Activation(substitutes.get(activation, activation), name=f"{name}_activation")
        return lambda x: after(layer(x))

    return with_layers(layers, Dense=dense)


def integer_friendly(layers):
    """Returns `layers` with LayerNormalization and the GELU in int8-delegable ops.

    The replacements subclass the namespace's own layers, so they hold the same weights in
    the same order (gamma, beta) and take the same constructor arguments. The GELU is an
    Activation layer of its own (`activations_as_layers`): tfmot's QAT learns its output
    range (export.optimize.OutputQuantizeConfig).

    Example:
    >>> export_model = rebuild(model, integer_friendly(keras.layers))
    """

    class IntegerFriendlyLayerNormalization(layers.LayerNormalization):
        # Centre once and square with MUL (no NEG, no SQUARED_DIFFERENCE); normalise over
        # the last axis, the only LayerNorm axis the Mixer uses.
        def call(self, inputs):
            mean = tf.reduce_mean(inputs, axis=-1, keepdims=True)
            centred = inputs - mean
            variance = tf.reduce_mean(centred * centred, axis=-1, keepdims=True)
            normalised = centred * tf.math.rsqrt(variance + self.epsilon)
            return normalised * self.gamma + self.beta

    return with_layers(
        activations_as_layers(layers, substitutes={gelu_tanh: gelu_sigmoid}),
        LayerNormalization=IntegerFriendlyLayerNormalization,
    )


def patches_as_matmul(layers):
    """Returns `layers` whose Conv2D, the Mixer's stem (kernel = stride, "valid" padding,
    channels last), cuts the image into patches and multiplies them by the kernel as one
    matrix: the same weights in the same order, the same output.

    The converter folds the Rescaling before a CONV_2D into its weights, but before a matrix
    product it keeps a MUL and an ADD, whose offset LiteRT's int16 ADD cannot take (int16x8:
    "input1_shift <= 0 was not true"). So the stem folds it itself: this namespace's Rescaling
    passes the pixels on and hands its scale and offset to the stem built after it.

    Example:
    >>> float_model = rebuild(model, patches_as_matmul(keras.layers))
    """
    affine = {}  # the Rescaling's scale and offset, read by the stem after it

    class RescalingIntoStem(layers.Rescaling):
        def call(self, inputs):
            affine.update(scale=self.scale, offset=self.offset)
            return tf.cast(inputs, self.compute_dtype)

    class PatchesMatmulConv2D(layers.Conv2D):
        def call(self, inputs):
            size = self.kernel_size[0]
            height, width, channels = inputs.shape[1:]
            rows, columns = height // size, width // size  # the image tiles (patch_grid)
            # (batch * rows, patch row, columns, patch row's pixels) -> patch rows inside.
            x = tf.reshape(inputs, (-1, size, columns, size * channels))
            x = tf.transpose(x, (0, 2, 1, 3))
            # Each patch flattened as (row, column, channel): the kernel's own order.
            x = tf.reshape(x, (-1, rows, columns, size * size * channels))
            kernel = tf.reshape(self.kernel, (size * size * channels, self.filters))
            bias = self.bias
            if affine:  # (s x + o) W + b = x (s W) + (o 1'W + b)
                bias = bias + affine["offset"] * tf.reduce_sum(kernel, axis=0)
                kernel = kernel * affine["scale"]
            return tf.matmul(x, kernel) + bias

    return with_layers(layers, Conv2D=PatchesMatmulConv2D, Rescaling=RescalingIntoStem)


def mixer_config(model):
    """The `build_mixer` arguments of a keras_mixer model, or a clear error for another model."""
    if not hasattr(model, "mixer_config"):
        raise TypeError(
            f"Expected a keras_mixer.MlpMixer, got {type(model).__name__} "
            f"({getattr(model, 'name', '?')!r}). Export works on models built by keras_mixer "
            "(MlpMixer, or a training run directory whose model.keras holds one)."
        )
    return model.mixer_config()


def rebuild(model, layers):
    """Builds `model`'s architecture from `layers` and copies its weights by position.

    Args:
        model: keras_mixer.MlpMixer. The source of truth.
        layers: a layers namespace: `keras.layers`, `tf_keras.layers`, or
            `integer_friendly(...)` of either.

    Returns a `keras.Model`, or a `tf_keras.Model` when `layers` is tf_keras's.

    Example:
    >>> twin = rebuild(model, activations_as_layers(tf_keras.layers))  # what tfmot needs
    """
    config = mixer_config(model)
    config["dropout_rate"] = config["stochastic_depth_rate"] = 0.0  # inference graph
    inputs, outputs = build_mixer(layers, **config)
    if type(inputs).__module__.startswith("tf_keras"):
        import tf_keras

        twin = tf_keras.Model(inputs, outputs, name=f"{model.name}_twin")
    else:
        twin = keras.Model(inputs, outputs, name=f"{model.name}_twin")
    weights = model.get_weights()
    if len(weights) != len(twin.weights):
        raise ValueError(
            f"The rebuilt Mixer has {len(twin.weights)} weights, the model {len(weights)}: "
            "build_mixer and the saved model disagree on the architecture."
        )
    twin.set_weights(weights)
    return twin
