"""Export formats as data: one row per `.tflite` file, applied by `export.pipeline.convert`.

Each row says how the model is prepared for the converter (`prepare`, a function below),
whether that preparation fine-tunes it (`fine_tunes`: it then needs the training split and
tensorflow-model-optimization), how the converter quantizes (`quantize`), which LiteRT
Quantizer recipe then quantizes the converter's float32 `.tflite` (`recipe`), and the bounds
the LiteRT model is held to against the model it was converted from on the evaluation
split (`max_logit_diff`, as a fraction of that model's largest logit magnitude, and
`min_agreement`, top-1 agreement). tests/test_export.py checks the bounds on a tiny digits
Mixer; every report shows them.

- prepare(model, data, settings) -> Prepared: the graph the converter sees. Float formats
  convert the model with its stem as one matrix product over the patches, which XNNPACK
  runs faster than the convolution (export/graph.py); the integer formats convert that
  function with LayerNorm and GELU also spelled in ops XNNPACK runs in int8 (export/graph.py;
  docs/benchmarks.md has the partition counts and latency against the Keras graph); the
  fine-tuned formats run a tfmot step first (export/optimize.py), QAT's on the stem as a
  convolution, which tfmot's Conv2D quantization handles.
- quantize: None (float32), "float16" (float16 weights, float32 compute), "dynamic_range"
  (int8 weights, activations quantized on the fly; the converter leaves weight tensors of
  fewer than 1024 values in float, so a tiny Mixer stays as large as fp32), "full_integer"
  (int8 weights and activations, calibrated on the representative dataset; integer input
  and output).
- recipe: None, or a LiteRT Quantizer recipe (`litert-quantizer`; the name of a function of
  `litert_quantizer.recipe`) that export/quantizer.py applies to the float32 `.tflite` the
  converter made of the prepared graph (`quantize` None), once that file has passed fp32's
  checks (builtin ops only; fp32's logit bound on the first evaluation images).
  "weight_only_wi8_afp32": int8 weights dequantized for float compute; unlike the
  converter's dynamic range it quantizes small kernels too. "dynamic_wi4b32_afp32": int4
  weights with a scale per block of 32 values, activations quantized to int8 on the fly
  by the kernel; a Dense whose input does not split into blocks (token mixing over 196
  patches for S/16, over 4 in the tests) takes int4 with a scale per output channel, as
  does the stem's matrix product where its patches do not split into blocks (S/16's 768
  values do). "static_wi8_ai16": int8 weights, int16 activations calibrated on the
  representative images, from the integer-friendly graph: the recipe has no int16 NEG or
  SQUARED_DIFFERENCE, so the Keras graph would keep one float island of each per
  LayerNorm, with a QUANTIZE and DEQUANTIZE around it.

Measured on the tiny digits Mixer with ai-edge-litert 2.3 (tests/test_export.py; docs/export.md
has the numbers): all three use builtin ops only and run in the interpreter, so none was left
out. XNNPACK runs weight_only_int8 and dynamic_int4_blockwise whole (one partition; its int4
blockwise kernels included) but has no int16 kernels: int16x8 runs on the interpreter's
own kernels alone (no partition), far slower than int8 (docs/benchmarks.md, the LiteRT
table); it is meant for NPUs and DSPs with 16x8 kernels.

TensorFlow, Keras and tfmot are imported inside the functions: the command line reads this
table before it sets up logging, which must happen before TensorFlow loads.
"""

import dataclasses
import logging

# The SavedModel is written too (formats=["saved_model", ...]); it is not a `.tflite` row.
SAVED_MODEL = "saved_model"

log = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class Prepared:
    """What a row's `prepare` hands the converter.

    model: the Keras 3 or tf_keras model to convert.
    reference_logits: the float logits on the evaluation images that the `.tflite` must
        reproduce; None means the Keras model's own.
    details: what the preparation reached (e.g. sparsity), copied into the report.
    """

    model: object
    reference_logits: object = None
    details: dict = dataclasses.field(default_factory=dict)


def keras_graph(model, data=None, settings=None):
    """The model as Keras lowers it."""
    return Prepared(model)


def float_graph(model, data=None, settings=None):
    """The same function with the stem as one matrix product (export.graph.patches_as_matmul)."""
    import keras

    from export import graph

    return Prepared(graph.rebuild(model, graph.patches_as_matmul(keras.layers)))


def integer_friendly_graph(model, data=None, settings=None):
    """The same function with LayerNorm and GELU in ops XNNPACK runs in int8, and the stem as
    one matrix product."""
    import keras

    from export import graph

    layers = graph.patches_as_matmul(graph.integer_friendly(keras.layers))
    return Prepared(graph.rebuild(model, layers))


def _logits(model, images):
    return model.predict(images, batch_size=256, verbose=0)


def quantization_aware(model, data, settings):
    """tfmot QAT of the integer-friendly graph; the `.tflite` is held to the QAT model
    itself, fake quantization included."""
    from export import optimize

    qat_model = optimize.quantization_aware_training(
        model, data.train, **data.fine_tuning.arguments(), integer_friendly=True,
        calibration_images=data.representative)
    return Prepared(qat_model, _logits(qat_model, data.eval_images))


def _fine_tuned(model, data, **details):
    # Pruning and clustering change only the weights' values: the tuned Keras model is the
    # reference, and its integer-friendly graph is what is converted.
    return Prepared(integer_friendly_graph(model).model, _logits(model, data.eval_images), details)


def pruned(model, data, settings):
    """Magnitude pruning to `settings.target_sparsity` while fine-tuning."""
    from export import optimize

    weights, reached = optimize.prune(
        model, data.train, **data.fine_tuning.arguments(),
        target_sparsity=settings.target_sparsity)
    return _fine_tuned(optimize.with_weights(model, weights), data, sparsity=reached)


def clustered(model, data, settings):
    """Weight clustering to `settings.number_of_clusters` values per kernel."""
    from export import optimize

    weights, unique = optimize.cluster(
        model, data.train, **data.fine_tuning.arguments(),
        number_of_clusters=settings.number_of_clusters)
    return _fine_tuned(optimize.with_weights(model, weights), data,
                       max_unique_weights_per_kernel=unique)


FORMATS = {
    "fp32": dict(
        description="float32 weights and activations",
        prepare=float_graph, fine_tunes=False, quantize=None, recipe=None,
        max_logit_diff=1e-4, min_agreement=1.0,
    ),
    "fp16": dict(
        description="float16 weights, float32 compute (half the size of fp32)",
        prepare=float_graph, fine_tunes=False, quantize="float16", recipe=None,
        max_logit_diff=1e-2, min_agreement=0.99,
    ),
    "dynamic_int8": dict(
        description="int8 weights, float activations quantized on the fly",
        prepare=float_graph, fine_tunes=False, quantize="dynamic_range", recipe=None,
        max_logit_diff=0.1, min_agreement=0.97,
    ),
    "int8": dict(
        description="full-integer int8 post-training quantization (integer-friendly graph)",
        prepare=integer_friendly_graph, fine_tunes=False, quantize="full_integer", recipe=None,
        max_logit_diff=0.35, min_agreement=0.95,
    ),
    # LiteRT Quantizer recipes on the float32 `.tflite` (export/quantizer.py).
    "weight_only_int8": dict(
        description="int8 weights, float32 compute (LiteRT Quantizer weight_only_wi8_afp32)",
        prepare=float_graph, fine_tunes=False, quantize=None, recipe="weight_only_wi8_afp32",
        max_logit_diff=0.05, min_agreement=0.99,
    ),
    "dynamic_int4_blockwise": dict(
        description="int4 weights in blocks of 32, activations quantized to int8 on the fly "
                    "(LiteRT Quantizer dynamic_wi4b32_afp32)",
        prepare=float_graph, fine_tunes=False, quantize=None, recipe="dynamic_wi4b32_afp32",
        max_logit_diff=0.6, min_agreement=0.95,
    ),
    "int16x8": dict(
        description="int16 activations, int8 weights, calibrated (LiteRT Quantizer "
                    "static_wi8_ai16, integer-friendly graph)",
        prepare=integer_friendly_graph, fine_tunes=False, quantize=None,
        recipe="static_wi8_ai16",
        max_logit_diff=0.2, min_agreement=0.98,
    ),
    # The fine-tuned formats are held to the fine-tuned model they were converted from:
    # fine-tuning moves the function on purpose. Their accuracy against the original is
    # held by QAT >= PTQ and the max_accuracy_drop budget.
    "qat_int8": dict(
        description="quantization-aware training (tfmot), then full-integer int8",
        prepare=quantization_aware, fine_tunes=True, quantize="full_integer", recipe=None,
        max_logit_diff=0.35, min_agreement=0.95,
    ),
    "pruned_int8": dict(
        description="magnitude pruning (tfmot) to the target sparsity, then full-integer int8",
        prepare=pruned, fine_tunes=True, quantize="full_integer", recipe=None,
        max_logit_diff=0.35, min_agreement=0.95,
    ),
    "clustered_int8": dict(
        description="weight clustering (tfmot), then full-integer int8",
        prepare=clustered, fine_tunes=True, quantize="full_integer", recipe=None,
        max_logit_diff=0.35, min_agreement=0.95,
    ),
}

# What `python -m export.convert` writes without --formats.
DEFAULT_FORMATS = ("fp32", "fp16", "dynamic_int8", "int8", "qat_int8")
# Default formats that a model of more parameters than this leaves out, saying so (asked for
# by name, they run): QAT keeps every activation of its batch and about 8 copies of the
# weights; B/16 (60 M parameters) peaks at 8.5 GiB, and L/32 and L/16 (207 M, 208 M) would
# need 23-27 GiB, more than a 24 GiB machine has free (docs/benchmarks.md, "Fine-tuning at
# scale").
DEFAULT_MAX_PARAMETERS = {"qat_int8": 100_000_000}


def get_format(name):
    """Returns the FORMATS row `name`, or a clear error listing the formats there are.

    Example:
    >>> get_format("int8")["quantize"]
    'full_integer'
    """
    if name not in FORMATS:
        raise ValueError(
            f"Unknown export format {name!r}. Choose from: {SAVED_MODEL}, {', '.join(FORMATS)}.")
    return FORMATS[name]


def calibrates(spec):
    """Whether the row `spec` needs representative images: the converter's full-integer
    quantization, or a recipe that quantizes activations statically."""
    if spec["recipe"] is not None:
        from export import quantizer

        return quantizer.calibrates(spec["recipe"])
    return spec["quantize"] == "full_integer"


def tfmot_available():
    """Whether tensorflow-model-optimization and tf_keras import (not on the TPU stack)."""
    try:
        import tensorflow_model_optimization  # noqa: F401
        import tf_keras  # noqa: F401
    except ImportError:
        return False
    return True


def resolve_formats(formats, parameters=0):
    """`(format names, {name: FORMATS row})` for a model of `parameters` parameters; without
    tfmot, the fine-tuned formats are an error when asked for by name and left out with a
    warning from the defaults, as are the defaults above their DEFAULT_MAX_PARAMETERS."""
    requested = formats
    formats = list(formats or (SAVED_MODEL, *DEFAULT_FORMATS))
    if not requested:
        too_large = [name for name in formats
                     if parameters > DEFAULT_MAX_PARAMETERS.get(name, float("inf"))]
        for name in too_large:
            log.warning(
                "%s left out of the default formats: the model has %s parameters, more than "
                "its bound of %s (its fine-tuning would need about all of a 24 GiB machine's "
                "memory; docs/benchmarks.md). Ask for it by name (--formats) to export it.",
                name, f"{parameters:,}", f"{DEFAULT_MAX_PARAMETERS[name]:,}")
        formats = [name for name in formats if name not in too_large]
    specs = {name: get_format(name) for name in formats if name != SAVED_MODEL}
    needs_tfmot = [name for name, spec in specs.items() if spec["fine_tunes"]]
    if needs_tfmot and not tfmot_available():
        if requested:
            raise ImportError(
                f"{', '.join(needs_tfmot)} need tensorflow-model-optimization and tf-keras "
                "(requirements.txt), which this Python lacks (the TPU stack has no tf-keras). "
                "Export on a CPU/GPU machine with requirements.txt, or leave these formats out."
            )
        log.warning("Skipping %s: tensorflow-model-optimization/tf-keras are not installed.",
                    ", ".join(needs_tfmot))
        formats = [name for name in formats if name not in needs_tfmot]
        specs = {name: spec for name, spec in specs.items() if name not in needs_tfmot}
    return formats, specs
