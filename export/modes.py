"""Export formats as data: one row per `.tflite` file, applied by `export.convert.to_tflite`.

Each row says how the model is prepared (`optimize`), which graph the converter sees
(`graph`), how the converter quantizes (`quantize`), and the bounds the LiteRT model is held
to against the model it was converted from on the evaluation split (`max_logit_diff`, as a
fraction of that model's largest logit magnitude, and `min_agreement`, top-1 agreement).
The bounds are checked in tests/test_export.py on a tiny digits Mixer; every report shows them.

- optimize: None, or a tfmot step on the tf_keras twin before conversion:
  "qat" (quantization-aware fine-tuning), "prune" (magnitude pruning to a target sparsity),
  "cluster" (weight clustering). See export/optimize.py.
- graph: "keras" converts the model as Keras lowers it; "integer_friendly" converts the
  same function with LayerNorm and GELU spelled in ops XNNPACK runs in int8 (export/graph.py,
  issue 4b). Float formats keep the Keras graph: XNNPACK runs it in one partition already.
- quantize: None (float32), "float16" (float16 weights, float32 compute), "dynamic_range"
  (int8 weights, activations quantized on the fly; the converter leaves weight tensors of
  fewer than 1024 values in float, so a tiny Mixer stays as large as fp32), "full_integer"
  (int8 weights and activations, calibrated on the representative dataset; integer input
  and output).
"""

MODES = {
    "fp32": dict(
        description="float32 weights and activations",
        optimize=None, graph="keras", quantize=None,
        max_logit_diff=1e-4, min_agreement=1.0,
    ),
    "fp16": dict(
        description="float16 weights, float32 compute (half the size of fp32)",
        optimize=None, graph="keras", quantize="float16",
        max_logit_diff=1e-2, min_agreement=0.99,
    ),
    "dynamic_int8": dict(
        description="int8 weights, float activations quantized on the fly",
        optimize=None, graph="keras", quantize="dynamic_range",
        max_logit_diff=0.1, min_agreement=0.97,
    ),
    "int8": dict(
        description="full-integer int8 post-training quantization (integer-friendly graph)",
        optimize=None, graph="integer_friendly", quantize="full_integer",
        max_logit_diff=0.35, min_agreement=0.95,
    ),
    "int8_keras_graph": dict(
        description="full-integer int8 of the graph as Keras lowers it (the 4b baseline)",
        optimize=None, graph="keras", quantize="full_integer",
        max_logit_diff=0.35, min_agreement=0.95,
    ),
    # The fine-tuned formats are held to the fine-tuned model they were converted from (for
    # QAT, the tfmot model with its fake quantization): fine-tuning moves the function on
    # purpose (a 3-epoch digits run went from 89% to 92% top-1 in QAT). Their accuracy
    # against the original is held by QAT >= PTQ and the --max-accuracy-drop budget.
    "qat_int8": dict(
        description="quantization-aware training (tfmot), then full-integer int8",
        optimize="qat", graph="integer_friendly", quantize="full_integer",
        max_logit_diff=0.35, min_agreement=0.95,
    ),
    "pruned_int8": dict(
        description="magnitude pruning (tfmot) to the target sparsity, then full-integer int8",
        optimize="prune", graph="integer_friendly", quantize="full_integer",
        max_logit_diff=0.35, min_agreement=0.95,
    ),
    "clustered_int8": dict(
        description="weight clustering (tfmot), then full-integer int8",
        optimize="cluster", graph="integer_friendly", quantize="full_integer",
        max_logit_diff=0.35, min_agreement=0.95,
    ),
}

# What `python -m export.convert` writes without --formats.
DEFAULT_FORMATS = ("fp32", "fp16", "dynamic_int8", "int8", "qat_int8")


def get_mode(name):
    """Returns the MODES row `name`, or a clear error listing the formats there are.

    Example:
    >>> get_mode("int8")["quantize"]
    'full_integer'
    """
    if name not in MODES:
        raise ValueError(f"Unknown export format {name!r}. Choose from: {', '.join(MODES)}.")
    return MODES[name]
