"""LiteRT Quantizer recipes applied to a float32 `.tflite`: the export/formats.py rows with a
`recipe`.

The LiteRT Quantizer (`litert-quantizer`, formerly ai-edge-quantizer) quantizes a converted
`.tflite` flatbuffer, not the TensorFlow graph: conversion and quantization are two steps. A
recipe is data, a list of `{regex, operation, algorithm_key, op_config}` entries matched
against each op's output tensor names, the last matching entry winning. A row names one of
the package's own recipes (a function of `litert_quantizer.recipe`), and `quantize` applies it:

- Blockwise recipes (`..._b32_...`: one scale per 32 weights of a FULLY_CONNECTED row) fail on
  a row whose length is not a multiple of the block, and every Mixer has one: the token-mixing
  MLP's input is the number of patches (196 for S/16 at 224, 16 for the digits recipe, 4 for
  the tests' 8x8 digits). `fit_blocks` gives those layers the same bits channelwise (one scale
  per output), so that a recipe applies to any Mixer.
- Recipes that quantize activations statically (`static_*`) are calibrated on the
  representative images the converter's int8 uses (export/inputs.py), to each tensor's min
  and max over all of them, as the converter's int8 is (`_calibrate`).

The package is imported inside the functions: the command line reads export/formats.py, which
names these recipes, before it sets up logging.
"""

import contextlib
import io
import os
import re
import warnings

import numpy as np

from export import evaluate
from export.litert_internals import ops_details

FULLY_CONNECTED = "FULLY_CONNECTED"


def get_recipe(name):
    """The LiteRT Quantizer recipe `name` (a function of `litert_quantizer.recipe`) as data.

    Example:
    >>> get_recipe("weight_only_wi8_afp32")[0]["op_config"]["compute_precision"]
    'FLOAT'
    """
    from litert_quantizer import recipe

    return getattr(recipe, name)()


def calibrates(name):
    """Whether recipe `name` quantizes activations statically, so needs representative images
    (the rule of the quantizer's own `need_calibration`, which needs the model to ask)."""
    return any("activation_tensor_config" in entry["op_config"] for entry in get_recipe(name))


def _fully_connected_rows(float_tflite):
    """`[(scope, row length)]` of every FULLY_CONNECTED op; the scope is the quantizer's name
    for an op (its output tensor names, each followed by ';')."""
    runner = evaluate.interpreter(float_tflite, delegate=False)
    tensors = {tensor["index"]: tensor for tensor in runner.get_tensor_details()}
    return [("".join(f"{tensors[index]['name']};" for index in op["outputs"]),
             int(tensors[op["inputs"][1]]["shape"][1]))
            for op in ops_details(runner) if op["op_name"] == FULLY_CONNECTED]


def fit_blocks(recipe, float_tflite):
    """`recipe`, plus for each blockwise entry the same bits channelwise on the FULLY_CONNECTED
    ops of `float_tflite` whose weight rows do not split into its blocks.

    Example:
    >>> recipe = fit_blocks(get_recipe("dynamic_wi4b32_afp32"), open("fp32.tflite", "rb").read())
    """
    from litert_quantizer.recipe import QuantGranularity

    rows = _fully_connected_rows(float_tflite)
    fitted = list(recipe)
    for entry in recipe:
        weights = entry["op_config"].get("weight_tensor_config")
        granularity = QuantGranularity(weights["granularity"]).value if weights else ""
        if not granularity.startswith("BLOCKWISE_") or entry["operation"] not in ("*",
                                                                                FULLY_CONNECTED):
            continue
        block = int(granularity.removeprefix("BLOCKWISE_"))
        misfits = [scope for scope, length in rows
                   if length % block and re.search(entry["regex"], scope)]
        if misfits:
            channelwise = {**weights, "granularity": QuantGranularity.CHANNELWISE}
            op_config = {**entry["op_config"], "weight_tensor_config": channelwise}
            fitted.append({**entry, "regex": f"^(?:{'|'.join(map(re.escape, misfits))})$",
                           "operation": FULLY_CONNECTED, "op_config": op_config})
    return fitted


def _calibration_inputs(float_tflite, images):
    """The quantizer's calibration input: `{signature: [{input name: batch of one}, ...]}`."""
    (signature, names), = evaluate.interpreter(float_tflite).get_signature_list().items()
    (name,) = names["inputs"]
    return {signature: [{name: image[None]} for image in np.asarray(images, np.float32)]}


def _widest(found, new):
    """The union of two ranges: the rule of the converter's int8 calibration."""
    return {"min": np.minimum(found["min"], new["min"]),
            "max": np.maximum(found["max"], new["max"])}


def _calibrate(recipe, float_tflite, images):
    """Each tensor's min and max over all `images`, the rule of the converter's int8.

    The Quantizer's own `calibrate` keeps a moving average of the images' ranges (smoothing
    0.95), so every image beyond the typical range is clipped, which costs int16x8 agreement
    with Keras (docs/benchmarks.md, "int16x8's calibration rule"), and it takes no other rule.
    Its Calibrator, which it builds for each call, takes the rule (`qsv_update_func`): one
    pass over the images with `_widest` reads the model once, where calibrating each image
    alone read it once per image.
    """
    from litert_quantizer import calibrator, recipe_manager

    manager = recipe_manager.RecipeManager()
    manager.load_quantization_recipe(recipe)
    calibration = calibrator.Calibrator(float_tflite, num_threads=os.cpu_count(),
                                        qsv_update_func=_widest)
    calibration.calibrate(_calibration_inputs(float_tflite, images), manager)
    return calibration.get_model_qsvs()


def quantize(float_tflite, recipe_name, representative_images=None):
    """The `.tflite` bytes of `float_tflite` quantized by the LiteRT Quantizer recipe `recipe_name`.

    Args:
        float_tflite: bytes. A float32 `.tflite` with one signature (export's converter output).
        recipe_name: str. A function of `litert_quantizer.recipe`, e.g. "static_wi8_ai16".
        representative_images: float32 (N, H, W, C). Calibration images, for recipes that
            quantize activations statically.

    Example:
    >>> int16x8 = quantize(fp32_tflite, "static_wi8_ai16", calibration_images)
    """
    from litert_quantizer.quantizer import Quantizer

    recipe = fit_blocks(get_recipe(recipe_name), float_tflite)
    quantizer = Quantizer(float_tflite, recipe)
    calibration = None
    # The quantizer draws progress bars (tqdm) on stderr and warns that its calibrating
    # interpreter keeps every tensor, which it does on purpose; an export prints nothing of
    # its own (its command line prints the report).
    with contextlib.redirect_stderr(io.StringIO()), warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*experimental_preserve_all_tensors")
        if quantizer.need_calibration:
            if representative_images is None or len(representative_images) == 0:
                raise ValueError(f"The LiteRT Quantizer recipe {recipe_name} quantizes activations "
                                 "statically and needs representative images; got none.")
            calibration = _calibrate(recipe, float_tflite, representative_images)
        result = quantizer.quantize(calibration, enable_progress_report=False)
    return bytes(result.quantized_model)
