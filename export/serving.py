"""`cpu_serving_function`: a Mixer's forward pass for serving on a CPU, weights as constants.

With the weights as constants of the graph, TensorFlow's oneDNN build prepares each Dense's
weights once in the blocked layout of its matrix-unit inner product (AMX, or AVX-512
bfloat16 brgemm) and computes the bias and GELU inside that kernel
(`keras_mixer.layers.weights_as_constants` spells the Dense for it). `predict_on_batch` reads
variables: a plain matmul on the matrix units, then the bias and GELU in a second, compiled
kernel, slower in bfloat16; a loaded SavedModel, TensorFlow's own ops on variables, runs
the fused kernel on oneDNN's generic gemm (docs/benchmarks.md, "CPU serving", has
the kernels and the times; benchmarks/inference_throughput.py `--modes graph frozen`
measures them side by side). The function takes float32 pixels in [0, 255] and returns the
logits, as the model does; the policy the model was built under (mixed_bfloat16 or float32)
is kept. It is TensorFlow's: a model built under another Keras backend is served from its
SavedModel (`python -m export.convert ... --formats saved_model`).
"""

import math
import os

import keras
import tensorflow as tf

from keras_mixer.layers import weights_as_constants
from training.tensorflow_internals import freeze

# Graph constants are serialized in one GraphDef, which protobuf caps at 2 GiB.
MAX_CONSTANT_BYTES = 2**31


def cpu_serving_function(model, batch_size=None):
    """A frozen `tf.function`: `serve(images)` -> logits, the weights as graph constants.

    Args:
        model: a `keras.Model` built under the TensorFlow backend (e.g. `keras_mixer.MlpMixer`
            or `keras.saving.load_model("model.keras")`), or the path of a SavedModel that
            export wrote (`exports/NAME/saved_model`, local or remote).
        batch_size: int or None. None serves any batch size; a fixed one lets grappler
            specialize the graph.
    Returns:
        A `tf.types.experimental.ConcreteFunction` taking one float32 tensor of the model's
        input shape (batch, height, width, channels) and returning the float32 logits,
        shape (batch, classes).
    Raises:
        ValueError: the model is not a TensorFlow one, or its weights exceed what one graph
            can hold as constants (2 GiB: H/14 in float32); serve those with the SavedModel.
    """
    if isinstance(model, (str, os.PathLike)):
        forward, image_shape = _saved_model_forward(os.fspath(model))
    else:
        forward, image_shape = _keras_forward(model)
    spec = tf.TensorSpec((batch_size, *image_shape), tf.float32, name="images")
    frozen = freeze(tf.function(forward).get_concrete_function(spec))
    # A frozen function returns a list of its outputs: serve the one tensor, as the model does.
    return tf.function(lambda images: frozen(images)[0]).get_concrete_function(spec)


def _keras_forward(model):
    if keras.backend.backend() != "tensorflow":
        raise ValueError(
            f"cpu_serving_function needs a TensorFlow model, and Keras runs on "
            f"{keras.backend.backend()}: export a SavedModel (python -m export.convert SOURCE "
            f"--out DIR --formats saved_model) and pass DIR/saved_model")
    _check_size(sum(math.prod(weight.shape) * tf.as_dtype(weight.dtype).size
                    for weight in model.weights), model.name)

    def forward(images):
        with weights_as_constants():
            return tf.cast(model(images, training=False), tf.float32)

    return forward, tuple(model.input_shape[1:])


def _saved_model_forward(directory):
    loaded = tf.saved_model.load(directory)
    serving = loaded.signatures["serving_default"]
    _check_size(sum(variable.shape.num_elements() * variable.dtype.size
                    for variable in serving.variables), directory)
    (name, spec), = serving.structured_input_signature[1].items()

    def forward(images):
        outputs = serving(**{name: images})
        return next(iter(outputs.values()))

    # A signature holds its variables weakly: `loaded` must live until the forward is traced.
    forward.saved_model = loaded
    return forward, tuple(spec.shape[1:])


def _check_size(nbytes, what):
    if nbytes >= MAX_CONSTANT_BYTES:
        raise ValueError(
            f"{what} has {nbytes / 2**30:.1f} GiB of weights, more than one TensorFlow graph "
            f"holds as constants (2 GiB): serve it with its SavedModel or predict_on_batch")
