"""The layers the Mixer is built from: Keras's own, with one spelled for TensorFlow's kernels.

`KERAS_LAYERS` is the layers namespace `MlpMixer` hands `build_mixer`: `keras.layers` with
this module's `Dense` in place of Keras's. Export and the benchmarks pass other namespaces
(tf_keras's layers, the integer-friendly graph) to the same builder, made with `with_layers`.
"""

import types

import keras


@keras.saving.register_keras_serializable(package="keras_mixer")
class Dense(keras.layers.Dense):
    """Keras's Dense, spelled on TensorFlow so that oneDNN runs matmul, bias and GELU as one kernel.

    Keras 3.15's Dense lowers a (batch, tokens, channels) input on TensorFlow as Reshape,
    MatMul, Reshape, then an AddV2 for the bias and the activation's own elementwise ops on
    the 3-D result. TensorFlow's grappler remapper fuses MatMul + BiasAdd + the tanh GELU into
    one oneDNN matmul (`_MklNativeFusedMatMul`, the GELU a post-op computed in float32
    registers, also for bfloat16), but only when the three follow each other on a 2-D tensor
    and the bias is a BiasAdd. So on TensorFlow this Dense flattens the tokens into rows and
    calls MatMul, BiasAdd and the activation there: the same function, about ten fewer
    kernels on each MLP's widest tensor, and no casts around a float32 GELU (before and after
    in docs/benchmarks.md, "Slow paths"; tests/test_mlp_mixer.py checks the fused kernels).

    Other backends keep Keras's own call (XLA fuses these itself), as do quantized and LoRA
    layers. It is named `Dense` because a `.keras` file stores weights under the snake-cased
    class name (`layers/dense_3/vars`): files written with Keras's Dense load into it, and
    its files into Keras's Dense.

    Example:
    >>> Dense(2048, activation=keras_mixer.gelu_tanh, name="channel_mixing_dense_0")
    """

    def call(self, inputs, training=None):
        leading = tuple(inputs.shape[1:-1])
        if (
            keras.backend.backend() != "tensorflow"
            or self.quantization_mode is not None
            or self.lora_enabled
            or not self.use_bias
            or None in leading
        ):
            return super().call(inputs, training=training)
        import tensorflow as tf

        rows = tf.reshape(inputs, (-1, inputs.shape[-1]))
        kernel = keras.ops.cast(self.kernel, self.compute_dtype)
        bias = keras.ops.cast(self.bias, self.compute_dtype)
        outputs = tf.nn.bias_add(tf.matmul(rows, kernel), bias)
        if self.activation is not None:
            outputs = self.activation(outputs)
        return tf.reshape(outputs, (-1, *leading, self.units))


def with_layers(layers, **replacements):
    """`layers` (a layers module or namespace) with some of its names replaced.

    How one builder spells the same Mixer several ways: `build_mixer(with_layers(...))`.

    Example:
    >>> plain = with_layers(KERAS_LAYERS, Dense=keras.layers.Dense)
    """
    namespace = {name: getattr(layers, name) for name in dir(layers) if not name.startswith("_")}
    namespace.update(replacements)
    return types.SimpleNamespace(**namespace)


# The namespace `MlpMixer` builds from: Keras's layers, with the Mixer's fused Dense.
KERAS_LAYERS = with_layers(keras.layers, Dense=Dense)
