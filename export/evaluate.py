"""Runs a `.tflite` model in the LiteRT interpreter and measures it against its Keras model.

Everything here goes through `ai_edge_litert` (the runtime apps ship), never TensorFlow:
outputs, top-1 accuracy and agreement, logit differences, batch-1 latency, the op list,
the float ops left in an integer model, and how many partitions XNNPACK makes of it.
"""

import gzip
import os
import time

import numpy as np
from ai_edge_litert import schema_py_generated as schema
from ai_edge_litert.interpreter import Interpreter, OpResolverType

from export.litert_internals import ops_details

BUILTIN_OPS = frozenset(
    name for name, value in vars(schema.BuiltinOperator).items() if isinstance(value, int)
)
# The node XNNPACK puts in place of each run of ops it takes over.
DELEGATE_OP = "DELEGATE"


class OpsError(ValueError):
    """An exported model needs ops the LiteRT interpreter does not have built in."""


def interpreter(model, *, num_threads=1, delegate=True):
    """A LiteRT interpreter for `model` (bytes or a path), with XNNPACK unless `delegate=False`."""
    kwargs = {"model_content": model} if isinstance(model, bytes) else {"model_path": str(model)}
    resolver = OpResolverType.AUTO if delegate else OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES
    return Interpreter(**kwargs, num_threads=num_threads, experimental_op_resolver_type=resolver)


def op_names(model):
    """The model's ops in graph order, as the interpreter sees them (before delegation)."""
    return [op["op_name"] for op in ops_details(interpreter(model, delegate=False))]


def check_builtin_ops(model, name="model"):
    """Raises OpsError unless every op of `model` is a TFLite builtin (no Flex, no custom op).

    Example:
    >>> check_builtin_ops(open("int8.tflite", "rb").read())
    """
    foreign = sorted({op for op in op_names(model) if op not in BUILTIN_OPS})
    if foreign:
        raise OpsError(
            f"{name} uses ops that are not TFLite builtins: {', '.join(foreign)}. Apps would need "
            "the Flex (SELECT_TF_OPS) runtime, which keras-mixer does not ship. The Mixer lowers "
            "to builtins only; a layer outside keras_mixer.build_mixer, or a converter setting "
            "that allows SELECT_TF_OPS, brought these in."
        )


def float_ops(model):
    """Ops inside the graph that compute in float: `[(index, op name), ...]`.

    An op counts when any of its tensors is float, except a QUANTIZE that reads the model's
    input and a DEQUANTIZE that writes its output (the two ends of an integer graph).
    Empty for an integer model end to end.
    """
    runner = interpreter(model, delegate=False)
    dtypes = {tensor["index"]: tensor["dtype"] for tensor in runner.get_tensor_details()}
    inputs = {detail["index"] for detail in runner.get_input_details()}
    outputs = {detail["index"] for detail in runner.get_output_details()}
    found = []
    for op in ops_details(runner):
        tensors = [index for index in list(op["inputs"]) + list(op["outputs"]) if index >= 0]
        if not any(np.issubdtype(dtypes[index], np.floating) for index in tensors):
            continue
        if op["op_name"] == "QUANTIZE" and set(op["inputs"]) <= inputs:
            continue
        if op["op_name"] == "DEQUANTIZE" and set(op["outputs"]) <= outputs:
            continue
        found.append((op["index"], op["op_name"]))
    return found


def delegated_partitions(model, num_threads=1):
    """How many partitions XNNPACK (LiteRT's default CPU delegate) makes of `model`.

    One means the delegate runs the whole graph; each op it cannot take splits the graph,
    and the interpreter's own kernels run the pieces between partitions.
    """
    runner = interpreter(model, num_threads=num_threads)
    runner.allocate_tensors()
    return sum(op["op_name"] == DELEGATE_OP for op in ops_details(runner))


def io_details(model):
    """Input and output tensor layout as an app must feed and read it."""
    runner = interpreter(model, delegate=False)

    def describe(detail):
        scale, zero_point = detail["quantization"]
        return {
            "name": detail["name"], "shape": [int(d) for d in detail["shape"]],
            "dtype": np.dtype(detail["dtype"]).name, "scale": float(scale),
            "zero_point": int(zero_point),
        }

    return {"input": describe(runner.get_input_details()[0]),
            "output": describe(runner.get_output_details()[0])}


def quantize_input(images, detail):
    """Float pixels -> the input tensor's dtype, with its scale and zero point if it has them."""
    dtype = np.dtype(detail["dtype"])
    if not np.issubdtype(dtype, np.integer):
        return images.astype(dtype)
    scale, zero_point = detail["quantization"]
    info = np.iinfo(dtype)
    return np.clip(np.round(images / scale + zero_point), info.min, info.max).astype(dtype)


def dequantize_output(values, detail):
    """The output tensor -> float logits."""
    if not np.issubdtype(np.dtype(detail["dtype"]), np.integer):
        return values.astype(np.float32)
    scale, zero_point = detail["quantization"]
    return (values.astype(np.float32) - zero_point) * scale


def predict_logits(model, images, *, num_threads=1):
    """Float logits of `model` for float images `(N, H, W, C)`, one image at a time (batch 1)."""
    runner = interpreter(model, num_threads=num_threads)
    runner.allocate_tensors()
    input_detail, output_detail = runner.get_input_details()[0], runner.get_output_details()[0]
    logits = []
    for image in np.asarray(images, np.float32):
        runner.set_tensor(input_detail["index"], quantize_input(image[None], input_detail))
        runner.invoke()
        output = runner.get_tensor(output_detail["index"])
        logits.append(dequantize_output(output, output_detail)[0])
    return np.stack(logits)


def relative_max_logit_diff(logits, reference_logits):
    """The largest absolute logit difference as a fraction of the reference's largest logit."""
    reference_logits = np.asarray(reference_logits, np.float32)
    return float(np.abs(logits - reference_logits).max()
                 / max(np.abs(reference_logits).max(), 1e-12))


def latency_ms(model, image, *, num_threads, runs=50, warmup=5):
    """Median wall time of one batch-1 `invoke()` in milliseconds, with XNNPACK."""
    runner = interpreter(model, num_threads=num_threads)
    runner.allocate_tensors()
    input_detail = runner.get_input_details()[0]
    batch = quantize_input(np.asarray(image, np.float32)[None], input_detail)
    runner.set_tensor(input_detail["index"], batch)
    for _ in range(warmup):
        runner.invoke()
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        runner.invoke()
        times.append(time.perf_counter() - start)
    return float(np.median(times) * 1e3)


def evaluate_tflite(model, images, labels, reference_logits, *, keras_logits=None, threads=(1, 2),
                    latency_runs=50):
    """Measures one exported model against the model it was converted from.

    Args:
        model: bytes or path of the `.tflite` file.
        images: float32 (N, H, W, C), pixels as the Keras model takes them.
        labels: int (N,). True classes.
        reference_logits: float32 (N, num_classes). Logits of the model converted (the Keras
            model, or its fine-tuned version for QAT, pruning, clustering) on `images`.
        keras_logits: float32 (N, num_classes) or None. The original Keras model's logits,
            when the reference is a fine-tuned model: adds `agreement_with_keras`.
        threads: ints. Interpreter thread counts to time.
        latency_runs: int. Timed invocations per thread count (the median is reported).

    Returns a dict: size and gzip size in bytes, top-1 accuracy (and the reference's), top-1
    agreement with the reference, max and mean absolute logit difference (and the max relative
    to the reference's largest logit),
    latency per thread count, op counts, float ops, delegated partitions, input/output layout.

    Example:
    >>> evaluate_tflite(open("int8.tflite", "rb").read(), images, labels, model.predict(images))
    """
    model = model if isinstance(model, bytes) else open(model, "rb").read()
    logits = predict_logits(model, images, num_threads=os.cpu_count())
    reference_logits = np.asarray(reference_logits, np.float32)
    labels = np.asarray(labels)
    difference = np.abs(logits - reference_logits)
    ops = op_names(model)
    counts = {}
    for op in ops:
        counts[op] = counts.get(op, 0) + 1
    extra = {}
    if keras_logits is not None:
        extra["agreement_with_keras"] = float(
            np.mean(logits.argmax(-1) == np.asarray(keras_logits).argmax(-1)))
    return {
        "size_bytes": len(model),
        "gzip_size_bytes": len(gzip.compress(model, compresslevel=9)),
        "top1": float(np.mean(logits.argmax(-1) == labels)),
        "reference_top1": float(np.mean(reference_logits.argmax(-1) == labels)),
        "agreement": float(np.mean(logits.argmax(-1) == reference_logits.argmax(-1))),
        **extra,
        "max_logit_diff": float(difference.max()),
        "mean_logit_diff": float(difference.mean()),
        "relative_max_logit_diff": relative_max_logit_diff(logits, reference_logits),
        "latency_ms": {str(n): latency_ms(model, images[0], num_threads=n, runs=latency_runs)
                       for n in threads},
        "delegated_partitions": delegated_partitions(model),
        "op_counts": counts,
        "float_ops": [name for _, name in float_ops(model)],
        "io": io_details(model),
        "num_examples": int(len(labels)),
    }
