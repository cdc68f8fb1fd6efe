"""`convert`: a trained Mixer -> SavedModel and one verified `.tflite` per format, with a report.

SOURCE is a training run directory or a `.keras` file (export/inputs.py); DIR (local or
remote, e.g. `gs://`) receives `saved_model/`, `<format>.tflite` for each format (rows of
export/formats.py), `labels.txt`, `preprocessing.json` and the report (export/report.py).
`python -m export.convert SOURCE --out DIR` is its command line (export/convert.py).

Every `.tflite` is checked before it is written: builtin ops only (no Flex), finite outputs,
then measured in the LiteRT interpreter against the Keras model (export/evaluate.py). Every
file is written through keras_mixer.storage (a partial name, then a rename), so a failed or
killed export leaves no half-written file, and the rerun clears what a killed one left. An
export that cannot finish (a full disk) says in one line which formats it wrote, and leaves
no report that claims more (an earlier export's report goes once this one replaced a file).
Each format's time is logged at INFO once it is written; a fine-tuned format first logs how
long it fine-tunes, then shows Keras's progress bar (the command lines show them: a large
variant takes minutes per format). Each phase of each format is logged at DEBUG as it begins
(`--verbose` shows them; benchmarks/export_memory.py splits the peak memory by these lines).
"""

import dataclasses
import gc
import logging
import os
import time

import keras
import numpy as np
import tensorflow as tf

from export import evaluate, inputs, quantizer
from export import report as report_lib
from export.formats import SAVED_MODEL, get_format, resolve_formats
from export.settings import ExportSettings
from keras_mixer import storage
from training import config as config_lib

log = logging.getLogger(__name__)


class AccuracyBudgetError(RuntimeError):
    """A quantized model lost more top-1 accuracy than `max_accuracy_drop` allows; `report`
    is the report, written all the same."""

    def __init__(self, message, report):
        super().__init__(message)
        self.report = report


# ----------------------------------------------------------------------------- conversion


def _save_serving(model, directory, batch_size):
    shape = (batch_size, *model.input_shape[1:])
    if isinstance(model, keras.Model):
        model.export(directory, format="tf_saved_model", verbose=False,
                     input_signature=[keras.InputSpec(shape=shape, dtype="float32")])
    else:  # tf_keras (a tfmot model)
        serve = tf.function(lambda images: model(images, training=False))
        signature = serve.get_concrete_function(tf.TensorSpec(shape, tf.float32, name="images"))
        tf.saved_model.save(model, directory, signatures={"serving_default": signature})


def to_saved_model(model, directory, *, batch_size=None):
    """Writes `model` (Keras 3 or tf_keras) as a SavedModel with a `serving_default` signature.

    Args:
        model: keras.Model or tf_keras.Model taking images (N, H, W, C).
        directory: str, local or remote. Replaced whole once the SavedModel is complete.
        batch_size: int or None. None serves any batch.
    """
    with storage.staged_dir(directory, entry_file="saved_model.pb") as local:
        _save_serving(model, local, batch_size)
    return directory


def to_tflite(model, export_format, representative_images=None, *, io_dtype="int8"):
    """Converts a Keras 3 or tf_keras model to TFLite bytes with the settings of `export_format`.

    Args:
        model: keras.Model or tf_keras.Model. The graph to convert (a row's `prepare` output).
        export_format: str or dict. A key or row of export.formats.FORMATS (its `quantize`
            is used).
        representative_images: float32 (N, H, W, C). Calibration images (full integer only).
        io_dtype: "int8" or "uint8". Input and output type of full-integer models; with
            "uint8" a camera frame goes in as raw pixels (scale 1, zero point 0 when the
            calibration images span 0..255).

    Example:
    >>> tflite_bytes = to_tflite(model, "fp16")
    """
    with storage.scratch_dir() as scratch:
        return saved_model_to_tflite(_save_batch1(model, scratch), export_format,
                                     representative_images, io_dtype=io_dtype)


def _save_batch1(model, scratch):
    # A fixed batch of 1 gives a graph without SHAPE/PACK/GATHER bookkeeping.
    directory = os.path.join(scratch, "batch1")
    _save_serving(model, directory, batch_size=1)
    return directory


def saved_model_to_tflite(directory, export_format, representative_images=None, *,
                          io_dtype="int8"):
    """Converts a local SavedModel (batch 1, `serving_default`) to TFLite bytes; the arguments
    after it are `to_tflite`'s.

    Converting from the SavedModel lets the caller release the Keras model it came from
    before the converter, the largest user of memory in an export, runs.
    """
    spec = get_format(export_format) if isinstance(export_format, str) else export_format
    converter = tf.lite.TFLiteConverter.from_saved_model(directory)
    # Builtins only, never SELECT_TF_OPS (which keras's own litert export switches on).
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
    quantize = spec["quantize"]
    if quantize is not None:
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
    if quantize == "float16":
        converter.target_spec.supported_types = [tf.float16]
    if quantize == "full_integer":
        if representative_images is None or len(representative_images) == 0:
            raise ValueError("Full-integer quantization needs representative images; got none.")
        images = np.asarray(representative_images, np.float32)
        converter.representative_dataset = lambda: ([image[None]] for image in images)
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        if io_dtype not in ("int8", "uint8"):
            raise ValueError(f"io_dtype must be 'int8' or 'uint8', got {io_dtype!r}.")
        converter.inference_input_type = converter.inference_output_type = tf.as_dtype(io_dtype)
    try:
        return converter.convert()
    except Exception as error:
        if "ops_select" not in str(error) and "not supported" not in str(error):
            raise
        raise evaluate.OpsError(
            f"The TFLite converter could not express the model with builtin ops "
            f"({type(error).__name__}: {str(error)[:600]}). keras-mixer exports builtins "
            "only (no SELECT_TF_OPS/Flex); build the model with keras_mixer.build_mixer."
        ) from None
    finally:
        # from_saved_model restores the SavedModel's variables (a copy of every weight) and
        # the converter keeps them; that object graph has reference cycles, so only the
        # collector frees it. Collected here, the next format does not convert beside it.
        del converter
        gc.collect()


def _verify_saved_model(directory, images, keras_logits):
    serving = tf.saved_model.load(directory).signatures["serving_default"]
    logits = np.concatenate([
        next(iter(serving(tf.constant(images[start:start + 256])).values())).numpy()
        for start in range(0, len(images), 256)])
    size = sum(tf.io.gfile.stat(storage.join(root, name)).length
               for root, _, names in tf.io.gfile.walk(directory) for name in names)
    return {"file": SAVED_MODEL, "size_bytes": size,
            "max_logit_diff": float(np.abs(logits - keras_logits).max()),
            "agreement": float(np.mean(logits.argmax(-1) == keras_logits.argmax(-1)))}


# The float32 `.tflite` a recipe quantizes is held to fp32's bound on this many evaluation
# images: enough to catch a wrong graph, without a second full LiteRT pass per recipe format.
FLOAT_SOURCE_CHECK_IMAGES = 32


def _check_float_source(tflite, name, images, reference_logits):
    """Raises unless the float32 `.tflite` a recipe quantizes passes fp32's checks."""
    evaluate.check_builtin_ops(tflite, name=f"the float32 source of {name}.tflite")
    count = FLOAT_SOURCE_CHECK_IMAGES
    difference = evaluate.relative_max_logit_diff(
        evaluate.predict_logits(tflite, images[:count]), reference_logits[:count])
    bound = get_format("fp32")["max_logit_diff"]
    if not difference <= bound:
        raise RuntimeError(
            f"The float32 .tflite that {name} quantizes differs from the Keras model by "
            f"{difference:.3g} of its largest logit (fp32's bound is {bound}): the converter "
            "changed the function. Nothing was written for it."
        )


def _export_format(name, spec, model, data, keras_logits, settings, out_dir):
    """Prepares, converts (and quantizes with a recipe), checks and measures one `.tflite`,
    then writes it."""
    log.debug("%s: preparing the graph", name)
    if spec["fine_tunes"]:
        log.info("%s: fine-tuning for %s", name, data.fine_tuning)
    prepared = spec["prepare"](model, data, settings)
    reference = keras_logits if prepared.reference_logits is None else prepared.reference_logits
    fine_tuned, details = prepared.reference_logits is not None, prepared.details
    with storage.scratch_dir() as scratch:
        log.debug("%s: writing the batch-1 SavedModel", name)
        directory = _save_batch1(prepared.model, scratch)
        # The converter reads the SavedModel alone. A prepared graph other than `model` (the
        # integer-friendly twin, a fine-tuned model) is a second copy of every weight: freed
        # (its layers hold reference cycles) before the converter runs.
        del prepared
        gc.collect()
        log.debug("%s: converting", name)
        tflite = saved_model_to_tflite(directory, spec, data.representative,
                                       io_dtype=settings.io_dtype)
    if spec["recipe"] is not None:
        _check_float_source(tflite, name, data.eval_images, reference)
        log.debug("%s: quantizing with %s", name, spec["recipe"])
        tflite = quantizer.quantize(tflite, spec["recipe"], data.representative)
    evaluate.check_builtin_ops(tflite, name=f"{name}.tflite")
    log.debug("%s: verifying in LiteRT", name)
    measured = evaluate.evaluate_tflite(
        tflite, data.eval_images, data.eval_labels, reference,
        keras_logits=keras_logits, latency_runs=settings.latency_runs)
    if not np.isfinite(measured["max_logit_diff"]):
        raise RuntimeError(
            f"{name}.tflite gives non-finite logits in LiteRT: the converter lost the "
            "weights or a range. Nothing was written for it."
        )
    storage.write_atomically(storage.join(out_dir, f"{name}.tflite"), tflite)
    bounds = {key: spec[key] for key in ("max_logit_diff", "min_agreement")}
    return {
        "file": f"{name}.tflite", "description": spec["description"], "bounds": bounds,
        **details, **measured,
        "reference": "fine-tuned model" if fine_tuned else "Keras model",
        "within_bounds": bool(measured["relative_max_logit_diff"] <= bounds["max_logit_diff"]
                              and measured["agreement"] >= bounds["min_agreement"]),
    }


# ----------------------------------------------------------------------------- orchestration


def convert(source, out_dir, formats=None, *, config=None, representative_data=None,
            eval_data=None, train_data=None, settings=None, **setting_overrides):
    """Exports a trained Mixer to each format, verifies every file in LiteRT, writes the report.

    Args:
        source: str, path, or keras_mixer.MlpMixer. A training run directory, a `.keras` file
            (local or remote), or a model in memory.
        out_dir: str. Output directory, local or remote (created).
        formats: list of str. Keys of export.formats.FORMATS, plus "saved_model". Defaults to
            `("saved_model",) + DEFAULT_FORMATS`.
        config: dict or path. The run config when SOURCE has none beside it.
        representative_data: images (N, H, W, C), `(images, labels)` or a tf.data.Dataset.
            Defaults to the run's training split through `training.data`.
        eval_data: `(images, labels)` or a tf.data.Dataset of them. Defaults to the run's
            test split.
        train_data: tf.data.Dataset of (images, int labels) batches for QAT, pruning and
            clustering, for as many steps as its length gives (ExportSettings.fine_tuning).
            Defaults to the run's training stream in batches by the model's patches
            (export/settings.py).
        settings: ExportSettings or None (the defaults).
        **setting_overrides: ExportSettings fields, replacing those of `settings`
            (e.g. `io_dtype="uint8"`, `max_accuracy_drop=0.5`).

    Returns the report dict (also written as DIR/report.json). Raises AccuracyBudgetError,
    after writing everything, when a quantized format is outside `max_accuracy_drop`.

    Example:
    >>> report = export.pipeline.convert("runs/digits", "exports/digits", ["fp32", "int8"])
    >>> report["formats"]["int8"]["top1"]
    """
    settings = dataclasses.replace(settings or ExportSettings(), **setting_overrides)
    run = inputs.load_run(source, config)
    formats, specs = resolve_formats(formats, run.model.count_params())
    storage.check_writable(out_dir, what="the export (--out)")
    source_name = run.model.name if isinstance(source, keras.Model) else os.fspath(source)
    data_names, dataset, num_examples = inputs.run_datasets(run, source_name)
    class_names = _class_names(run, data_names)
    log.debug("reading the evaluation and calibration images")
    data = inputs.collect_data(run.model, specs, settings, dataset, num_examples,
                               representative_data=representative_data, eval_data=eval_data,
                               train_data=train_data)
    # The Keras model's logits on the evaluation images: what every format is held to.
    log.debug("Keras logits on %d evaluation images", len(data.eval_images))
    keras_logits = run.model.predict(data.eval_images, batch_size=256, verbose=0)
    report = report_lib.new_report(source_name, run.model, data, keras_logits, settings)
    with report_lib.naming_what_was_written(out_dir, report):
        for name in formats:
            start = time.perf_counter()
            if name == SAVED_MODEL:
                log.debug("%s: writing and verifying", name)
                directory = to_saved_model(run.model, storage.join(out_dir, SAVED_MODEL))
                result = _verify_saved_model(directory, data.eval_images, keras_logits)
            else:
                result = _export_format(name, specs[name], run.model, data, keras_logits,
                                        settings, out_dir)
            report["formats"][name] = result
            log.info("%s: written in %.1f s", name, time.perf_counter() - start)
        report_lib.compare_qat_with_ptq(report)
        failures = report_lib.accuracy_budget_failures(report, specs, settings.max_accuracy_drop)
        report["accuracy_budget_failures"] = failures
        log.debug("writing the report")
        report_lib.write_report(out_dir, report, class_names, _preprocessing(run))
    if failures:
        raise AccuracyBudgetError(
            f"Quantized models outside the accuracy budget of {settings.max_accuracy_drop} "
            f"points: {'; '.join(failures)}. The report is in {out_dir}. Try qat_int8, more "
            "calibration images, or a larger budget.", report)
    return report


def _class_names(run, data_names):
    """The names of the model's outputs, for labels.txt: the run's class list, else the data
    source's, else the class indices."""
    names = data_names or run.class_names or [str(i) for i in range(run.model.num_classes)]
    if len(names) != run.model.num_classes:
        raise ValueError(
            f"The run names {len(names)} classes ({', '.join(names[:5])}, ...) but the model "
            f"has {run.model.num_classes} outputs, so labels.txt would misname them. Export "
            "the model with the run directory (and config) that trained it."
        )
    return names


def _preprocessing(run):
    """How an app turns an image file into the model's input, beyond what the .tflite says (its
    input size and type): the run's evaluation crop (`export.classify.PREPROCESSING_FILE`)."""
    config = run.config or {}
    return {"crop": config.get("eval_crop", config_lib.DEFAULTS["eval_crop"])}
