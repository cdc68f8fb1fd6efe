"""The layers the Mixer is built from: Keras's own, three of them spelled for TensorFlow's CPU.

`KERAS_LAYERS` is the layers namespace `MlpMixer` hands `build_mixer`: `keras.layers` with
this module's `Dense`, `Conv2D` and `LayerNormalization` in place of Keras's. Export and the
benchmarks pass other namespaces (tf_keras's layers, the integer-friendly graph) to the same
builder, made with `with_layers`.

On TensorFlow's CPU build a matmul runs on oneDNN's matrix-unit kernels (AMX, or AVX-512
bfloat16 brgemm) when TensorFlow hands oneDNN a plain MatMul: the MatMul + BiasAdd + GELU
that grappler fuses into one oneDNN inner product runs on oneDNN's generic gemm when the
weights are variables. And TensorFlow runs the elementwise work around the matmuls (bias,
GELU, LayerNorm, and their gradients) as one kernel per op, unvectorized in bfloat16. So
these layers call MatMul alone and put the rest in XLA-compiled functions, one forward and
one backward per layer kind and shape (`xla_fused`): no generic gemm left in a bfloat16
training step or predict (docs/benchmarks.md, "oneDNN kernels", has the kernels and the
times; tests/test_mlp_mixer.py checks the ops, and the gradients against Keras's own
layers). Training steps and Keras's predict and evaluate loops take that spelling; any
other inference graph keeps TensorFlow's own ops, so that what users trace, export and
convert needs no XLA (`compiled_inference`, `weights_as_constants`). Other backends keep
Keras's own calls: XLA fuses these itself.

Each class is named as Keras's, because a `.keras` file stores weights under the
snake-cased class name (`layers/dense_3/vars`): files written with Keras's layers load into
these, and theirs into Keras's.
"""

import contextlib
import contextvars
import functools
import types

import keras

# How an inference call (not `training`) spells the layers, chosen while a graph is traced:
# - "portable": TensorFlow's own ops, as Keras's layers; the default, so that a graph a user
#   traces, `model.export`s or converts to TFLite holds no XLA-compiled function. TF 2.21's
#   TFLite converter converts two calls of one compiled function given different constant
#   arguments as if both had one call's constants (two Dense in a row gave logits off by
#   1.36), and a compiled function needs XLA wherever the graph is served.
# - "compiled": the compiled bias, activation and LayerNorm of a training step; Keras's
#   predict and evaluate loops (`MlpMixer.predict_step`, `test_step`) trace under it.
# - "frozen": a graph whose weights will be frozen into constants (`weights_as_constants`).
_PORTABLE, _COMPILED, _FROZEN = "portable", "compiled", "frozen"
_INFERENCE = contextvars.ContextVar("inference", default=_PORTABLE)


@contextlib.contextmanager
def _inference(spelling):
    token = _INFERENCE.set(spelling)
    try:
        yield
    finally:
        _INFERENCE.reset(token)


def compiled_inference():
    """Traces inference calls as training's: a plain MatMul, then compiled elementwise kernels.

    The faster spelling for a graph that reads variables and runs where it was traced, as
    Keras's predict loop does (`MlpMixer.predict_step` traces under it): oneDNN runs the
    MatMul on its matrix-unit kernels, and the bias, GELU and LayerNorm run as one XLA
    kernel each. Such a graph is not one to export or convert (see `_INFERENCE`).

    Example:
    >>> with compiled_inference():
    ...     logits = tf.function(model)(images)
    """
    return _inference(_COMPILED)


def weights_as_constants():
    """Traces inference calls for a graph whose weights will be frozen into constants.

    For constant weights oneDNN prepares the blocked layout of its matrix-unit inner product
    once and runs the bias and GELU as its post-ops, which is faster than a MatMul and a
    compiled bias and GELU (docs/benchmarks.md, "CPU serving"); grappler fuses them when
    MatMul, BiasAdd and the GELU follow each other on a 2-D tensor. With variables the same
    spelling runs on the generic gemm, so only a graph that will be frozen takes it; its
    LayerNorms run compiled.

    Example:
    >>> with weights_as_constants():
    ...     concrete = tf.function(model).get_concrete_function(spec)  # then freeze it
    """
    return _inference(_FROZEN)


@keras.saving.register_keras_serializable(package="keras_mixer")
class Dense(keras.layers.Dense):
    """Keras's Dense; on TensorFlow, a MatMul on rows, then its bias and activation compiled.

    Keras 3.15's Dense lowers a (batch, tokens, channels) input on TensorFlow as Reshape,
    MatMul, Reshape, then the bias and the activation's own elementwise ops on the 3-D
    result. This one flattens the tokens into rows for one 2-D MatMul, which oneDNN runs on
    its matrix-unit kernels, and adds the bias and applies the activation in float32 in one
    compiled function (for bfloat16 too, as the GELU's post-op computed it before), whose
    gradient is one compiled function too: in training and under `compiled_inference`.
    Another inference call adds the bias and applies the activation with TensorFlow's own
    ops, which grappler fuses with the MatMul. Quantized and LoRA layers take Keras's own call.

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
        if training or _INFERENCE.get() == _COMPILED:
            outputs = _matmul_bias_and_activation(self, rows, kernel, training)
        else:
            bias = keras.ops.cast(self.bias, self.compute_dtype)
            outputs = self.activation(tf.nn.bias_add(tf.matmul(rows, kernel), bias))
        return tf.reshape(outputs, (-1, *leading, self.units))


@keras.saving.register_keras_serializable(package="keras_mixer")
class Conv2D(keras.layers.Conv2D):
    """Keras's Conv2D; training on TensorFlow, a patch-sized stride runs as a per-patch Dense.

    With kernel size equal to stride and no padding, the convolution is the paper's
    "per-patch fully-connected layer": the same numbers as a matmul of the image cut into
    patches by a reshape and a transpose. TensorFlow 2.21 runs the convolution's kernel
    gradient as a slow oneDNN convolution (`_MklNativeConv2DBackpropFilterWithBias`, about a
    twentieth of a bfloat16 training step of S/16), the matmul's as oneDNN's matrix-unit
    kernels. Only training takes the matmul: forward, oneDNN's (and XNNPACK's) convolution is
    fast, and inference graphs, the TFLite files among them, keep it. The kernel keeps
    Keras's shape. Any other convolution takes Keras's own call.
    """

    def call(self, inputs, training=None):
        patch = tuple(self.kernel_size)
        if (
            not training
            or keras.backend.backend() != "tensorflow"
            or tuple(self.strides) != patch
            or self.padding != "valid"
            or tuple(self.dilation_rate) != (1, 1)
            or self.groups != 1
            or self.data_format != "channels_last"
            or not self.use_bias
            or None in inputs.shape[1:]
        ):
            return super().call(inputs)
        import tensorflow as tf

        _, height, width, channels = inputs.shape
        rows, columns = height // patch[0], width // patch[1]
        if (height, width) != (rows * patch[0], columns * patch[1]):
            # "valid" drops the pixels past the last whole patch.
            inputs = inputs[:, : rows * patch[0], : columns * patch[1]]
        patches = tf.reshape(inputs, (-1, rows, patch[0], columns, patch[1], channels))
        patches = tf.reshape(
            tf.transpose(patches, (0, 1, 3, 2, 4, 5)), (-1, patch[0] * patch[1] * channels)
        )
        kernel = tf.reshape(keras.ops.cast(self.kernel, self.compute_dtype), (-1, self.filters))
        outputs = _matmul_bias_and_activation(self, patches, kernel, training)
        return tf.reshape(outputs, (-1, rows, columns, self.filters))


@keras.saving.register_keras_serializable(package="keras_mixer")
class LayerNormalization(keras.layers.LayerNormalization):
    """Keras's LayerNormalization; on TensorFlow, forward and gradient one XLA kernel each.

    TensorFlow 2.21 runs Keras's LayerNormalization as about a dozen elementwise and
    reduction kernels each way, in float32 with casts around them under `mixed_bfloat16`,
    and no grappler rewrite fuses them. Over the last axis, with a scale and an offset (the
    Mixer's), this layer runs Keras's own `ops.layer_normalization` as one compiled function
    and its gradient, in closed form, as another (`xla_fused`), in training and under
    `compiled_inference` or `weights_as_constants`; any other call takes Keras's.
    """

    def call(self, inputs, training=None):
        if (
            keras.backend.backend() != "tensorflow"
            or not (self.center and self.scale)
            or self.rms_scaling
            or not _last_axis_only(self.axis, len(inputs.shape))
            or (not training and _INFERENCE.get() == _PORTABLE)
        ):
            return super().call(inputs)
        return xla_fused(*_layer_normalization(self.epsilon))(
            inputs, self.gamma.value, self.beta.value, training=training
        )


def _matmul_bias_and_activation(layer, rows, kernel, training):
    """`rows @ kernel` as oneDNN's plain MatMul, then `layer`'s bias and activation compiled."""
    import tensorflow as tf

    return xla_fused(_bias_and_activation(layer.activation))(
        tf.matmul(rows, kernel), layer.bias.value, training=training
    )


def _last_axis_only(axis, rank):
    axes = [axis] if isinstance(axis, int) else list(axis)
    return [a % rank for a in axes] == [rank - 1]


@functools.cache
def xla_fused(function, gradient=None):
    """`function` of tensors as an op whose forward and gradient run as one XLA kernel each.

    `gradient(upstream, *inputs)` returns the inputs' gradients; by default it recomputes
    `function`'s forward inside its own kernel rather than keeping the intermediates, as
    elementwise work is cheap to redo and costly to store. Each is a
    `tf.function(jit_compile=True)`, compiled once per shape and dtype, inside a graph that
    is otherwise not compiled, so the matmuls around it stay oneDNN's. The gradient is given
    explicitly because TensorFlow's gradient of a compiled function is not one kernel. One
    op per `function` and `gradient`, shared by every layer that calls it: a model compiles
    one kernel per layer kind and shape, not one per layer.
    """
    import tensorflow as tf

    if gradient is None:

        def gradient(upstream, *inputs):
            with tf.GradientTape() as tape:
                tape.watch(inputs)
                outputs = function(*inputs)
            return tape.gradient(outputs, inputs, output_gradients=upstream)

    forward = tf.function(function, jit_compile=True, autograph=False)
    backward = tf.function(gradient, jit_compile=True, autograph=False)

    @tf.custom_gradient
    def differentiable(*inputs):
        return forward(*inputs), lambda upstream: backward(upstream, *inputs)

    def fused(*inputs, training=None):
        # Only a training call records the custom gradient: a graph holding one cannot be
        # saved once frozen (its gradient refers to the graph it was traced in), and
        # inference graphs are what export and serving freeze. Another call's gradient is
        # TensorFlow's own, through the compiled forward: right, and slower.
        return differentiable(*inputs) if training else forward(*inputs)

    return fused


@functools.cache
def _bias_and_activation(activation):
    def bias_and_activation(outputs, bias):
        z = keras.ops.cast(outputs, "float32") + keras.ops.cast(bias, "float32")
        return keras.ops.cast(activation(z), outputs.dtype)

    return bias_and_activation


@functools.cache
def _layer_normalization(epsilon):
    import tensorflow as tf

    def layer_normalization(inputs, gamma, beta):
        outputs = keras.ops.layer_normalization(inputs, gamma, beta, -1, epsilon)
        return keras.ops.cast(outputs, inputs.dtype)

    def gradient(upstream, inputs, gamma, beta):
        # The closed form: about half the time of `xla_fused`'s default, the autodiff of
        # the recomputed forward, on S/16's LayerNorm (bfloat16, 2 cores, 7 ms against 13).
        x = tf.cast(inputs, tf.float32)
        dy = tf.cast(upstream, tf.float32)
        mean, variance = tf.nn.moments(x, axes=[-1], keepdims=True)
        inverse = tf.math.rsqrt(variance + epsilon)
        normalized = (x - mean) * inverse
        dnormalized = dy * tf.cast(gamma, tf.float32)
        dx = inverse * (
            dnormalized
            - tf.reduce_mean(dnormalized, -1, keepdims=True)
            - normalized * tf.reduce_mean(dnormalized * normalized, -1, keepdims=True)
        )

        def sum_over_rows(tensor):
            return tf.reduce_sum(tf.reshape(tensor, (-1, tensor.shape[-1])), 0)

        return (
            tf.cast(dx, inputs.dtype),
            tf.cast(sum_over_rows(dy * normalized), gamma.dtype),
            tf.cast(sum_over_rows(dy), beta.dtype),
        )

    return layer_normalization, gradient


def with_layers(layers, **replacements):
    """`layers` (a layers module or namespace) with some of its names replaced.

    How one builder spells the same Mixer several ways: `build_mixer(with_layers(...))`.

    Example:
    >>> plain = with_layers(KERAS_LAYERS, Dense=keras.layers.Dense)
    """
    namespace = {name: getattr(layers, name) for name in dir(layers) if not name.startswith("_")}
    namespace.update(replacements)
    return types.SimpleNamespace(**namespace)


# The namespace `MlpMixer` builds from: Keras's layers, with this module's three in place.
KERAS_LAYERS = with_layers(
    keras.layers, Conv2D=Conv2D, Dense=Dense, LayerNormalization=LayerNormalization
)
