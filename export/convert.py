"""Trained Mixer -> SavedModel and one verified `.tflite` per format, with a report.

    python -m export.convert runs/digits --out exports/digits
    python -m export.convert model.keras --config config.json --out exports/m \\
        --formats fp32 int8 qat_int8 --io-dtype uint8 --max-accuracy-drop 0.5

SOURCE is a training run directory (`model.keras` + `config.json`) or a `.keras` file (with
`--config`, or a `config.json` beside it). The run config names the dataset: the
representative (calibration) images come from its training split and the evaluation images
from its test split, both through `training.data.make_dataset`, the pipeline the model was
trained on. DIR receives `saved_model/`, `<format>.tflite` for each format (names in
`export/modes.py`), `labels.txt`, `report.json`, `report.md` and `report.png`.

Every `.tflite` is checked before it is written: builtin ops only (no Flex), finite outputs,
then measured in the LiteRT interpreter against the Keras model (`export/evaluate.py`).
Files are written to a temporary name and renamed, so a failed export leaves no
half-written model behind.
"""

import argparse
import json
import logging
import os
import shutil
import sys
import tempfile

import keras
import numpy as np
import tensorflow as tf

from export import evaluate, graph
from export.modes import DEFAULT_FORMATS, MODES, get_mode
from keras_mixer.mlp_mixer import MlpMixer

log = logging.getLogger(__name__)

SAVED_MODEL = "saved_model"
# Fewer calibration images than this give int8 ranges we would not ship (the TFLite guide
# suggests ~100-500); the check can be lowered for experiments with `min_calibration_samples`.
MIN_CALIBRATION_SAMPLES = 100
FINE_TUNE_BATCH_SIZE = 64


class AccuracyBudgetError(RuntimeError):
    """A quantized model lost more top-1 accuracy than `max_accuracy_drop` allows."""


# ----------------------------------------------------------------------------- inputs


def load_source(source, config=None):
    """Loads a keras_mixer model and its run config from a run directory or a `.keras` file.

    Args:
        source: str or path (a run directory, local or gs://, or a `.keras` file), or a
            keras_mixer.MlpMixer already in memory.
        config: dict, path or None. The run config; defaults to `config.json` beside the model.

    Returns `(model, config)`; `config` is None when there is none (then the data must be
    passed to `convert` directly).

    Example:
    >>> model, config = load_source("runs/digits")
    """
    config_path = None
    if isinstance(source, keras.Model):
        model, model_path = source, f"model {source.name!r}"
    else:
        # tf.io.gfile reads local paths and gs:// alike (TPU runs keep their run directory there).
        source = os.fspath(source)
        model_path = os.path.join(source, "model.keras") if tf.io.gfile.isdir(source) else source
        config_path = os.path.join(os.path.dirname(model_path) or ".", "config.json")
        if not tf.io.gfile.exists(model_path) or tf.io.gfile.isdir(model_path):
            raise FileNotFoundError(
                f"No model at {model_path!r}. SOURCE must be a training run directory holding "
                "model.keras (and config.json), or a .keras file saved from a keras_mixer.MlpMixer."
            )
        try:
            model = keras.saving.load_model(model_path, compile=False)
        except Exception as error:
            raise ValueError(
                f"Could not load {model_path!r} as a Keras model ({type(error).__name__}: "
                f"{str(error)[:300]}). Expected a .keras file saved from a keras_mixer.MlpMixer "
                "(model.save('model.keras'))."
            ) from None
    if not isinstance(model, MlpMixer):
        raise TypeError(
            f"{model_path} holds a {type(model).__name__} ({model.name!r}), not a "
            "keras_mixer.MlpMixer. Export verifies the Mixer's graph op by op and quantizes it "
            "with its own LayerNorm config; save the model as keras_mixer.MlpMixer."
        )
    if isinstance(config, (str, os.PathLike)):
        config_path, config = os.fspath(config), None
        if not tf.io.gfile.exists(config_path):
            raise FileNotFoundError(f"No run config at {config_path!r} (--config).")
    if config is None and config_path and tf.io.gfile.exists(config_path):
        with tf.io.gfile.GFile(config_path) as file:
            config = json.load(file)
    return model, config


def as_arrays(data, limit=None):
    """`(images, labels or None)` as NumPy arrays from an array, a pair, or a tf.data.Dataset."""
    if isinstance(data, tf.data.Dataset):
        images, labels, count = [], [], 0
        for element in data:
            batch = element[0] if isinstance(element, (tuple, list)) else element
            images.append(np.asarray(batch))
            if isinstance(element, (tuple, list)):
                labels.append(np.asarray(element[1]))
            count += len(images[-1])
            if limit and count >= limit:
                break
        if not images:
            return np.zeros((0,), np.float32), None
        images = np.concatenate(images)[:limit]
        labels = np.concatenate(labels)[:limit] if labels else None
        return images.astype(np.float32), labels
    if isinstance(data, (tuple, list)) and len(data) == 2:
        images, labels = as_arrays(data[0], limit)[0], np.asarray(data[1])[:limit]
        return images, labels
    return np.asarray(data, np.float32)[:limit], None


def check_images(images, model, what):
    """Raises a clear ValueError unless `images` is a non-empty (N, H, W, C) stack for `model`."""
    expected = tuple(model.input_shape[1:])
    if images.ndim != 4 or images.shape[0] == 0 or tuple(images.shape[1:]) != expected:
        found = "nothing (empty)" if images.size == 0 else f"shape {images.shape}"
        raise ValueError(
            f"The {what} must be float images of shape (N, {', '.join(map(str, expected))}) with "
            f"N >= 1, pixels in [0, 255] as the model takes them; got {found}. Draw it from the "
            "run's pipeline: training.data.make_dataset(config, split, training=False)."
        )


def tfmot_available():
    """Whether tensorflow-model-optimization and tf_keras import (not on the TPU stack)."""
    try:
        import tensorflow_model_optimization  # noqa: F401
        import tf_keras  # noqa: F401
    except ImportError:
        return False
    return True


def _check_config(config, source):
    if config is None:
        raise ValueError(
            f"No run config for {source!r}, so no data to calibrate and evaluate on. Pass a "
            "training run directory, a config.json beside the .keras file or --config, or in "
            "Python pass representative_data= and eval_data= to export.convert.convert."
        )


def _run_data(config, split, *, training, batch_size):
    from training import data as training_data  # export depends on training for data only

    if training:
        # Fine-tuning for quantization, pruning or clustering: the training stream with
        # integer labels (no mixup, no label smoothing) and without heavy augmentation.
        config = {**config, "randaugment": None, "mixup_alpha": 0.0, "label_smoothing": 0.0}
    return training_data.make_dataset(config, split, training=training, batch_size=batch_size)


def _class_names(config, num_classes):
    if config is not None:
        from training import data as training_data

        return [str(name) for name in training_data.class_names(config)]
    return [str(index) for index in range(num_classes)]


# ----------------------------------------------------------------------------- outputs


def check_writable(out_dir):
    """Creates `out_dir` if needed and proves a file can be written there, or says why not."""
    try:
        os.makedirs(out_dir, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=out_dir, prefix=".write-test-"):
            pass
    except OSError as error:
        raise PermissionError(
            f"Cannot write the export to {out_dir!r} ({error.strerror or error}). Choose an "
            "output directory you can write to (--out DIR)."
        ) from None


def write_atomically(path, content):
    """Writes bytes or text to `path` through a temporary file in the same directory."""
    mode = "wb" if isinstance(content, bytes) else "w"
    directory = os.path.dirname(os.path.abspath(path))
    handle, temporary = tempfile.mkstemp(dir=directory, prefix=f".{os.path.basename(path)}.")
    try:
        with os.fdopen(handle, mode) as file:
            file.write(content)
        os.chmod(temporary, 0o644)  # mkstemp creates 0600; exports are meant to be shared
        os.replace(temporary, path)
    except BaseException:
        if os.path.exists(temporary):
            os.remove(temporary)
        raise


# ----------------------------------------------------------------------------- conversion


def to_saved_model(model, directory, *, batch_size=None):
    """Writes `model` (Keras 3 or tf_keras) as a SavedModel with a `serving_default` signature.

    Args:
        model: keras.Model or tf_keras.Model taking images (N, H, W, C).
        directory: str. Written through a temporary directory, then renamed.
        batch_size: int or None. 1 gives the TFLite converter its cleanest graph; None
            serves any batch.
    """
    shape = (batch_size, *model.input_shape[1:])
    parent = os.path.dirname(os.path.abspath(directory))
    temporary = tempfile.mkdtemp(dir=parent, prefix=f".{os.path.basename(directory)}.")
    try:
        if isinstance(model, keras.Model):
            model.export(temporary, format="tf_saved_model", verbose=False,
                         input_signature=[keras.InputSpec(shape=shape, dtype="float32")])
        else:  # tf_keras (a tfmot model)
            serve = tf.function(lambda images: model(images, training=False))
            signature = serve.get_concrete_function(tf.TensorSpec(shape, tf.float32, name="images"))
            tf.saved_model.save(model, temporary, signatures={"serving_default": signature})
        os.chmod(temporary, 0o755)  # mkdtemp creates 0700
        if os.path.exists(directory):
            shutil.rmtree(directory)
        os.replace(temporary, directory)
    finally:
        shutil.rmtree(temporary, ignore_errors=True)
    return directory


def to_tflite(model, mode, representative_images=None, *, io_dtype="int8"):
    """Converts a Keras 3 or tf_keras model to TFLite bytes with the settings of `mode`.

    Args:
        model: keras.Model or tf_keras.Model. The graph to convert (see export/graph.py).
        mode: str or dict. A key or row of export.modes.MODES.
        representative_images: float32 (N, H, W, C). Calibration images (full integer only).
        io_dtype: "int8" or "uint8". Input and output type of full-integer models; with
            "uint8" a camera frame goes in as raw pixels (scale 1, zero point 0 when the
            calibration images span 0..255).

    Example:
    >>> tflite_bytes = to_tflite(model, "fp16")
    """
    mode = get_mode(mode) if isinstance(mode, str) else mode
    with tempfile.TemporaryDirectory(prefix="keras-mixer-export-") as directory:
        # A fixed batch of 1 gives a graph without SHAPE/PACK/GATHER bookkeeping.
        to_saved_model(model, os.path.join(directory, "batch1"), batch_size=1)
        converter = tf.lite.TFLiteConverter.from_saved_model(os.path.join(directory, "batch1"))
        # Builtins only, never SELECT_TF_OPS (which keras's own litert export switches on).
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
        quantize = mode["quantize"]
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


def _export_model(model, mode, data, settings, details):
    """The model the converter sees for `mode`: the Keras model, its integer-friendly
    rebuild, or a tfmot-optimized version of either (recording what tfmot did in `details`).

    Returns `(export_model, reference_logits)`: for a fine-tuned format the reference is the
    fine-tuned model's own float logits on the evaluation images (QAT: with fake
    quantization), which the `.tflite` must reproduce; None means the Keras model's."""
    if mode["optimize"]:
        from export import optimize  # tfmot (and tf_keras): imported only when a format needs it

    friendly = mode["graph"] == "integer_friendly"
    layers = graph.integer_friendly(keras.layers) if friendly else keras.layers
    # Each tfmot step has its own default learning rate (export/optimize.py) unless one is given.
    learning_rate = settings["fine_tune_learning_rate"]
    fit = {"steps": settings["fine_tune_steps"],
           **({} if learning_rate is None else {"learning_rate": learning_rate})}
    if mode["optimize"] == "qat":
        qat_model = optimize.quantization_aware_training(
            model, data["train"], **fit, integer_friendly=friendly,
            calibration_images=data.get("representative"))
        return qat_model, qat_model.predict(data["eval_images"], batch_size=256, verbose=0)
    if mode["optimize"] == "prune":
        weights, reached = optimize.prune(
            model, data["train"], **fit, target_sparsity=settings["target_sparsity"])
        details["sparsity"] = reached
        model = optimize.with_weights(model, weights)
    if mode["optimize"] == "cluster":
        weights, unique = optimize.cluster(
            model, data["train"], **fit, number_of_clusters=settings["number_of_clusters"])
        details["max_unique_weights_per_kernel"] = unique
        model = optimize.with_weights(model, weights)
    reference = None
    if mode["optimize"] in ("prune", "cluster"):
        reference = model.predict(data["eval_images"], batch_size=256, verbose=0)
    return (model if layers is keras.layers else graph.rebuild(model, layers)), reference


def _verify_saved_model(directory, images, keras_logits):
    serving = tf.saved_model.load(directory).signatures["serving_default"]
    logits = []
    for start in range(0, len(images), 256):
        outputs = serving(tf.constant(images[start:start + 256]))
        logits.append(next(iter(outputs.values())).numpy())
    logits = np.concatenate(logits)
    size = sum(os.path.getsize(os.path.join(root, name))
               for root, _, names in os.walk(directory) for name in names)
    return {"size_bytes": size, "max_logit_diff": float(np.abs(logits - keras_logits).max()),
            "agreement": float(np.mean(logits.argmax(-1) == keras_logits.argmax(-1)))}


def convert(
    source,
    out_dir,
    formats=None,
    *,
    config=None,
    representative_data=None,
    eval_data=None,
    train_data=None,
    io_dtype="int8",
    max_accuracy_drop=None,
    calibration_samples=300,
    min_calibration_samples=MIN_CALIBRATION_SAMPLES,
    eval_samples=2000,
    fine_tune_steps=300,
    fine_tune_learning_rate=None,
    target_sparsity=0.5,
    number_of_clusters=16,
    latency_runs=50,
):
    """Exports a trained Mixer to each format, verifies every file in LiteRT, writes the report.

    Args:
        source: str, path, or keras_mixer.MlpMixer. A training run directory, a `.keras` file,
            or a model in memory.
        out_dir: str. Output directory (created).
        formats: list of str. Keys of export.modes.MODES, plus "saved_model". Defaults to
            `("saved_model",) + DEFAULT_FORMATS`.
        config: dict or path. The run config when SOURCE has none beside it.
        representative_data: images (N, H, W, C), `(images, labels)` or a tf.data.Dataset.
            Defaults to the run's training split through `training.data.make_dataset`.
        eval_data: `(images, labels)` or a tf.data.Dataset of them. Defaults to the run's
            test split.
        train_data: tf.data.Dataset of (images, int labels) batches for QAT, pruning and
            clustering. Defaults to the run's training stream, batch 64.
        io_dtype: "int8" or "uint8". Input/output type of full-integer formats.
        max_accuracy_drop: float or None. Largest allowed top-1 drop, in percentage points,
            of any quantized format against the Keras model; beyond it the report is still
            written and AccuracyBudgetError is raised.
        calibration_samples: int. Representative images used (the first ones).
        min_calibration_samples: int. Fewer representative images than this is an error.
        eval_samples: int or None. Evaluation images used (None: the whole split).
        fine_tune_steps: int. Steps of QAT, pruning and clustering fine-tuning.
        fine_tune_learning_rate: float or None. Their Adam learning rate; None: each step's
            default (QAT 3e-5, pruning and clustering 1e-3; see export/optimize.py).
        target_sparsity: float. Pruning target (fraction of zero weights).
        number_of_clusters: int. Weight clusters per kernel.
        latency_runs: int. Timed batch-1 runs per thread count.

    Returns the report dict (also written as DIR/report.json).

    Example:
    >>> report = export.convert.convert("runs/digits", "exports/digits", ["fp32", "int8"])
    >>> report["formats"]["int8"]["top1"]
    """
    requested = formats
    formats = list(formats or (SAVED_MODEL, *DEFAULT_FORMATS))
    for name in formats:
        if name != SAVED_MODEL:
            get_mode(name)
    needs_tfmot = [name for name in formats if name != SAVED_MODEL and get_mode(name)["optimize"]]
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
    model, config = load_source(source, config)
    check_writable(out_dir)
    modes = {name: get_mode(name) for name in formats if name != SAVED_MODEL}
    data = {}

    # Evaluation split, and the Keras model's logits on it: what every format is held to.
    if eval_data is None:
        _check_config(config, source)
        eval_data = _run_data(config, config.get("test_split", "test"), training=False,
                              batch_size=256)
    data["eval_images"], data["eval_labels"] = as_arrays(eval_data, eval_samples)
    check_images(data["eval_images"], model, "evaluation data")
    if data["eval_labels"] is None:
        raise ValueError("eval_data needs labels: pass (images, labels) or a dataset of both.")
    data["eval_labels"] = np.asarray(data["eval_labels"]).reshape(-1)
    keras_logits = model.predict(data["eval_images"], batch_size=256, verbose=0)

    # Calibration images for the full-integer formats.
    if any(mode["quantize"] == "full_integer" for mode in modes.values()):
        if representative_data is None:
            _check_config(config, source)
            representative_data = _run_data(
                config, config.get("train_split", "train"), training=False,
                batch_size=min(calibration_samples, 256))
        images, _ = as_arrays(representative_data, calibration_samples)
        check_images(images, model, "representative dataset")
        if len(images) < min_calibration_samples:
            raise ValueError(
                f"The representative dataset has {len(images)} images; full-integer "
                f"quantization needs at least {min_calibration_samples} to calibrate ranges "
                "we would ship. Give more images from the training split (calibration_samples)."
            )
        data["representative"] = images
    if any(mode["optimize"] for mode in modes.values()):
        if train_data is None:
            _check_config(config, source)
            train_data = _run_data(config, config.get("train_split", "train"), training=True,
                                   batch_size=FINE_TUNE_BATCH_SIZE)
        data["train"] = train_data

    settings = dict(fine_tune_steps=fine_tune_steps,
                    fine_tune_learning_rate=fine_tune_learning_rate,
                    target_sparsity=target_sparsity, number_of_clusters=number_of_clusters)
    keras_top1 = float(np.mean(keras_logits.argmax(-1) == data["eval_labels"]))
    report = {
        "source": source if isinstance(source, str) else getattr(source, "name", str(source)),
        "model": model.mixer_config(),
        "evaluation": {"num_examples": int(len(data["eval_labels"])), "keras_top1": keras_top1,
                       "calibration_examples": int(len(data.get("representative", [])))},
        "settings": {**settings, "io_dtype": io_dtype, "max_accuracy_drop": max_accuracy_drop},
        "formats": {},
    }
    for name in formats:
        if name == SAVED_MODEL:
            directory = to_saved_model(model, os.path.join(out_dir, SAVED_MODEL))
            report["formats"][name] = {"file": SAVED_MODEL, **_verify_saved_model(
                directory, data["eval_images"], keras_logits)}
            continue
        mode = modes[name]
        details = {}
        export_model, reference = _export_model(model, mode, data, settings, details)
        tflite = to_tflite(export_model, mode, data.get("representative"), io_dtype=io_dtype)
        evaluate.check_builtin_ops(tflite, name=f"{name}.tflite")
        measured = evaluate.evaluate_tflite(
            tflite, data["eval_images"], data["eval_labels"],
            keras_logits if reference is None else reference,
            keras_logits=keras_logits, latency_runs=latency_runs)
        measured["reference"] = "Keras model" if reference is None else "fine-tuned model"
        if not np.isfinite(measured["max_logit_diff"]):
            raise RuntimeError(
                f"{name}.tflite gives non-finite logits in LiteRT: the converter lost the "
                "weights or a range. Nothing was written for it."
            )
        write_atomically(os.path.join(out_dir, f"{name}.tflite"), tflite)
        measured["within_bounds"] = bool(
            measured["relative_max_logit_diff"] <= mode["max_logit_diff"]
            and measured["agreement"] >= mode["min_agreement"])
        report["formats"][name] = {
            "file": f"{name}.tflite", "description": mode["description"],
            "bounds": {"max_logit_diff": mode["max_logit_diff"],
                       "min_agreement": mode["min_agreement"]},
            **details, **measured,
        }

    results = report["formats"]
    if "int8" in results and "qat_int8" in results:
        ptq, qat = results["int8"]["top1"], results["qat_int8"]["top1"]
        report["qat_vs_ptq"] = {"ptq_top1": ptq, "qat_top1": qat, "qat_at_least_ptq": qat >= ptq}
        if qat < ptq:
            log.warning("QAT ended below int8 PTQ (%.2f%% < %.2f%%): try more --fine-tune-steps "
                        "or a smaller learning rate.", 100 * qat, 100 * ptq)
    failures = []
    if max_accuracy_drop is not None:
        for name, result in results.items():
            if name in modes and modes[name]["quantize"] is not None:
                drop = 100.0 * (keras_top1 - result["top1"])
                result["accuracy_drop_points"] = drop
                if drop > max_accuracy_drop:
                    failures.append(
                        f"{name}: top-1 {100 * result['top1']:.2f}% is {drop:.2f} points "
                        f"below the Keras model's {100 * keras_top1:.2f}%")
    report["accuracy_budget_failures"] = failures

    write_atomically(os.path.join(out_dir, "labels.txt"),
                     "\n".join(_class_names(config, model.num_classes)) + "\n")
    write_atomically(os.path.join(out_dir, "report.json"), json.dumps(report, indent=2) + "\n")
    write_atomically(os.path.join(out_dir, "report.md"), markdown_report(report))
    chart(report, os.path.join(out_dir, "report.png"))
    if failures:
        raise AccuracyBudgetError(
            f"Quantized models outside the accuracy budget of {max_accuracy_drop} points: "
            + "; ".join(failures) + f". The report is in {out_dir}. Try qat_int8, more "
            "calibration images, or a larger budget."
        )
    return report


# ----------------------------------------------------------------------------- report


def markdown_report(report):
    """The report as Markdown: one row per format, then each model's op list."""
    evaluation = report["evaluation"]
    lines = [
        f"# Export report: {report['source']}",
        "",
        f"Keras model top-1: {100 * evaluation['keras_top1']:.2f}% on {evaluation['num_examples']} "
        f"evaluation images; {evaluation['calibration_examples']} calibration images. Accuracy "
        "and latency measured in the LiteRT interpreter (ai-edge-litert, XNNPACK, batch 1, "
        "median). Agreement and logit differences are against the model each file was "
        "converted from: the Keras model, or for qat/pruned/clustered the fine-tuned model "
        "(QAT with its fake quantization); agreement with the original Keras model follows.",
        "",
        "| format | size (KB) | gzip (KB) | top-1 (%) | agreement (%) ref / Keras "
        "| max / mean logit diff "
        "| latency 1 / 2 threads (ms) | XNNPACK partitions | float ops | within bounds |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---|---|",
    ]
    for name, result in report["formats"].items():
        if name == SAVED_MODEL:
            lines.append(
                f"| saved_model | {result['size_bytes'] / 1024:.1f} | | | "
                f"{100 * result['agreement']:.2f} | {result['max_logit_diff']:.2g} | | | | |")
            continue
        latency = result["latency_ms"]
        # Float ops matter only where an integer graph was promised.
        float_ops = (", ".join(sorted(set(result["float_ops"]))) or "none"
                     if result["io"]["input"]["dtype"] in ("int8", "uint8") else "(float model)")
        lines.append(
            f"| {name} | {result['size_bytes'] / 1024:.1f} "
            f"| {result['gzip_size_bytes'] / 1024:.1f} "
            f"| {100 * result['top1']:.2f} | {100 * result['agreement']:.2f} / "
            f"{100 * result['agreement_with_keras']:.2f} "
            f"| {result['max_logit_diff']:.3g} / {result['mean_logit_diff']:.3g} "
            f"| {latency.get('1', float('nan')):.3f} / {latency.get('2', float('nan')):.3f} "
            f"| {result['delegated_partitions']} | {float_ops} "
            f"| {'yes' if result['within_bounds'] else 'NO'} |")
    if "qat_vs_ptq" in report:
        comparison = report["qat_vs_ptq"]
        lines += ["", f"QAT top-1 {100 * comparison['qat_top1']:.2f}% vs int8 PTQ "
                      f"{100 * comparison['ptq_top1']:.2f}%."]
    if report["accuracy_budget_failures"]:
        lines += ["", "**Outside the accuracy budget:** "
                  + "; ".join(report["accuracy_budget_failures"])]
    lines += ["", "## Ops per model", ""]
    for name, result in report["formats"].items():
        if "op_counts" in result:
            ops = ", ".join(f"{op} x{count}" for op, count in sorted(result["op_counts"].items()))
            io = result["io"]["input"]
            lines.append(f"- **{name}** (input {io['dtype']} {io['shape']}, scale {io['scale']:g}, "
                         f"zero point {io['zero_point']}): {ops}")
    return "\n".join(lines) + "\n"


def chart(report, path):
    """Writes a PNG of top-1 accuracy against file size and against 1-thread latency."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    results = {name: r for name, r in report["formats"].items() if "latency_ms" in r}
    figure, (by_size, by_latency) = plt.subplots(1, 2, figsize=(12, 4.2))
    for name, result in results.items():
        top1 = 100 * result["top1"]
        by_size.scatter(result["size_bytes"] / 1024, top1, label=name)
        by_latency.scatter(result["latency_ms"]["1"], top1, label=name)
    keras_top1 = 100 * report["evaluation"]["keras_top1"]
    axes = ((by_size, "file size (KB)"), (by_latency, "latency, batch 1, 1 thread (ms)"))
    for axis, label in axes:
        axis.axhline(keras_top1, color="gray", linestyle="--", linewidth=1, label="Keras model")
        axis.set_xlabel(label)
        axis.set_ylabel("top-1 accuracy in LiteRT (%)")
        axis.grid(alpha=0.3)
    by_latency.legend(loc="center left", bbox_to_anchor=(1.02, 0.5), fontsize=8)
    figure.suptitle(f"keras-mixer export: {report['source']}")
    figure.tight_layout()
    directory = os.path.dirname(os.path.abspath(path))
    handle, temporary = tempfile.mkstemp(dir=directory, prefix=".report.", suffix=".png")
    os.close(handle)
    try:
        figure.savefig(temporary, dpi=120)
        os.chmod(temporary, 0o644)
        os.replace(temporary, path)
    finally:
        plt.close(figure)
        if os.path.exists(temporary):
            os.remove(temporary)


# ----------------------------------------------------------------------------- CLI


def main(argv=None):
    parser = argparse.ArgumentParser(
        prog="python -m export.convert", description=__doc__.split("\n\n")[0])
    parser.add_argument("source", help="training run directory or .keras file")
    parser.add_argument("--out", required=True, help="output directory")
    parser.add_argument("--formats", nargs="+", default=None,
                        help=f"any of: {SAVED_MODEL} {' '.join(MODES)} "
                             f"(default: {SAVED_MODEL} {' '.join(DEFAULT_FORMATS)})")
    parser.add_argument("--config", help="run config.json, when SOURCE has none beside it")
    parser.add_argument("--io-dtype", choices=("int8", "uint8"), default="int8",
                        help="input/output type of full-integer models (uint8: raw camera pixels)")
    parser.add_argument("--max-accuracy-drop", type=float, default=None,
                        help="fail when a quantized model's top-1 drops more than this many points")
    parser.add_argument("--calibration-samples", type=int, default=300)
    parser.add_argument("--eval-samples", type=int, default=2000, help="0: the whole test split")
    parser.add_argument("--fine-tune-steps", type=int, default=300,
                        help="steps of QAT, pruning and clustering fine-tuning")
    parser.add_argument("--fine-tune-learning-rate", type=float, default=None,
                        help="Adam learning rate of that fine-tuning (default: QAT 3e-5, "
                             "pruning and clustering 1e-3)")
    parser.add_argument("--target-sparsity", type=float, default=0.5)
    parser.add_argument("--clusters", type=int, default=16)
    args = parser.parse_args(argv)
    formats = [name for value in args.formats or () for name in value.split(",") if name] or None
    try:
        report = convert(
            args.source, args.out, formats, config=args.config, io_dtype=args.io_dtype,
            max_accuracy_drop=args.max_accuracy_drop,
            calibration_samples=args.calibration_samples, eval_samples=args.eval_samples or None,
            fine_tune_steps=args.fine_tune_steps,
            fine_tune_learning_rate=args.fine_tune_learning_rate,
            target_sparsity=args.target_sparsity,
            number_of_clusters=args.clusters,
        )
    except AccuracyBudgetError as error:
        print(open(os.path.join(args.out, "report.md")).read())
        print(f"FAILED: {error}", file=sys.stderr)
        return 1
    except (FileNotFoundError, ImportError, PermissionError, TypeError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(markdown_report(report))
    print(f"Wrote {', '.join(r['file'] for r in report['formats'].values())}, labels.txt, "
          f"report.json, report.md, report.png to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
