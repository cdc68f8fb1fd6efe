"""What an export reads: the model, its run config and class names, and the images it uses.

SOURCE is a training run directory (training/run_dir.py: `model.keras`, `config.json`,
`run_info.json`), a preset folder (`MlpMixer.save_to_preset`: `model.keras`,
`metadata.json`), a `.keras` file (its run config is the `config.json` beside it, or one
given), or a keras_mixer.MlpMixer in memory; paths may be local or remote (`gs://`,
`ram://`). The run config names the dataset: calibration images come from its training
split and evaluation images from its test split, both through `training.data`, the
pipeline the model was trained on, with the run's class list (`run_info.json`) fixing the
class index of every split and of `labels.txt`.
"""

import dataclasses
import os

import keras
import numpy as np
import tensorflow as tf

from export.formats import calibrates
from export.settings import FineTuning, fine_tune_batch_size
from keras_mixer import preset_folder, storage
from keras_mixer.mlp_mixer import MlpMixer
from training import config as config_lib
from training import run_dir

EXPECTED_MODEL = ("a .keras file saved from a keras_mixer.MlpMixer (model.save('model.keras')), "
                  "or a training run directory holding one as model.keras")
REWRITE_MODEL = f"{EXPECTED_MODEL}; save the model again or rerun the training that wrote it"


@dataclasses.dataclass(frozen=True)
class Run:
    """A model to export and what its run recorded: config (None without one) and class names
    (None when the run recorded none)."""

    model: MlpMixer
    config: dict | None
    class_names: list | None


def model_path(source):
    """The `.keras` file of a run directory, or `source` itself."""
    source = os.fspath(source)
    return storage.join(source, run_dir.MODEL) if storage.isdir(source) else source


def load_model(source):
    """The keras_mixer.MlpMixer of a run directory or `.keras` file, or `source` if in memory.

    Raises FileNotFoundError (no model there), ValueError (a file Keras cannot load: corrupt,
    a legacy .h5, holding code, or of a class Keras cannot locate) or TypeError (a model that
    is not an MlpMixer), each naming the path and what was expected.

    Example:
    >>> model = load_model("runs/digits")
    """
    if isinstance(source, keras.Model):
        model, where = source, f"model {source.name!r}"
    else:
        where = model_path(source)
        if not storage.exists(where) or storage.isdir(where):
            raise FileNotFoundError(f"No model at {where!r}. SOURCE must be {EXPECTED_MODEL}.")
        try:
            model = keras.saving.load_model(where, compile=False)
        except Exception as error:
            raise ValueError(preset_folder.why_unloadable(where, error, REWRITE_MODEL)) from None
    if not isinstance(model, MlpMixer):
        raise TypeError(
            f"{where} holds a {type(model).__name__} ({model.name!r}), not a "
            "keras_mixer.MlpMixer. Export verifies the Mixer's graph op by op and quantizes it "
            "with its own LayerNorm config; save the model as keras_mixer.MlpMixer."
        )
    return model


def load_run(source, config=None):
    """The model of `source` with its run config (completed with training's defaults) and the
    run's class names.

    Args:
        source: a run directory, a `.keras` file (local or remote), or an MlpMixer.
        config: dict, path or None. The run config; defaults to `config.json` beside the model.

    Example:
    >>> run = load_run("runs/digits")
    >>> run.config["dataset"], run.class_names
    """
    model = load_model(source)
    directory = None if isinstance(source, keras.Model) else storage.dirname(model_path(source))
    if isinstance(config, (str, os.PathLike)):
        config = _read_config(os.fspath(config))
    if config is not None:
        config = config_lib.check(config)
    elif directory is not None:
        config = run_dir.read_config(directory)
    if directory is None:
        class_names = model.class_names  # a model from MlpMixer.from_preset knows them
    else:  # a run's class list, else a preset folder's (metadata.json)
        class_names = run_dir.read_class_names(directory) or preset_folder.read_class_names(directory)
    return Run(model, config, class_names)


def _read_config(path):
    if not storage.exists(path):
        raise FileNotFoundError(f"No run config at {path!r} (--config).")
    try:
        return storage.read_json(path)
    except ValueError as error:
        raise ValueError(f"{path!r} is not a run config.json ({error}).") from None


def open_run_data(config, class_names=None):
    """The run's data, opened once per export: `(class names, source)`.

    `class_names` (the run's) fixes the class index of every split; without it the data
    source's own order is used. `source` is training's (training/sources.py), for
    `training.data.make_dataset(config, split, source=source, ...)` and its
    `num_examples(split)`.
    """
    from training import data  # the pipeline the model was trained on

    source = data.open_source(config, class_names=class_names)
    names = class_names or source.class_names
    return [str(name) for name in names], source


def run_datasets(run, source_name):
    """`(class names, dataset, num_examples)`: `dataset(split_key, *, training, batch_size,
    epochs=None)` is the run's `config[split_key]` split (the training stream of `epochs`
    epochs when training) and `num_examples(split_key)` its number of images (None names
    when there is no run config; then both say what to pass instead)."""
    if run.config is None:
        def dataset(split_key, **kwargs):
            raise ValueError(
                f"No run config for {source_name!r}, so no data to calibrate and evaluate on. "
                "Pass a training run directory, a config.json beside the .keras file or "
                "--config, or in Python pass representative_data= and eval_data= to "
                "export.pipeline.convert."
            )

        return None, dataset, dataset
    from training import data  # the pipeline the model was trained on

    names, source = open_run_data(run.config, run.class_names)

    def dataset(split_key, *, training, batch_size, epochs=None):
        config = run.config
        if training:
            # Fine-tuning for quantization, pruning or clustering: the training stream with
            # integer labels (no mixup, no label smoothing) and without heavy augmentation.
            config = {**config, "randaugment": None, "mixup_alpha": 0.0, "label_smoothing": 0.0}
        return data.make_dataset(config, config[split_key], training=training, source=source,
                                 batch_size=batch_size, epochs=epochs)

    def num_examples(split_key):
        return source.num_examples(run.config[split_key])

    return names, dataset, num_examples


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
        return as_arrays(data[0], limit)[0], np.asarray(data[1])[:limit]
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


@dataclasses.dataclass(frozen=True)
class ExportData:
    """The images an export is measured on (`eval_*`), calibrated on (`representative`, for
    calibrated formats) and fine-tuned on (`train`, a dataset, for fine-tuned formats, for
    as long as `fine_tuning` says)."""

    eval_images: np.ndarray
    eval_labels: np.ndarray
    representative: np.ndarray | None = None
    train: object = None
    fine_tuning: FineTuning | None = None


def collect_data(model, specs, settings, dataset, num_examples, *, representative_data=None,
                 eval_data=None, train_data=None):
    """The ExportData the rows `specs` need: what is given, else drawn with `dataset` (and
    `num_examples`, run_datasets's)."""
    if eval_data is None:
        eval_data = dataset("test_split", training=False, batch_size=256)
    eval_images, eval_labels = as_arrays(eval_data, settings.eval_samples)
    check_images(eval_images, model, "evaluation data")
    if eval_labels is None:
        raise ValueError("eval_data needs labels: pass (images, labels) or a dataset of both.")
    representative = None
    if any(calibrates(spec) for spec in specs.values()):
        if representative_data is None:
            representative_data = dataset("train_split", training=False,
                                          batch_size=min(settings.calibration_samples, 256))
        representative, _ = as_arrays(representative_data, settings.calibration_samples)
        check_images(representative, model, "representative dataset")
        if len(representative) < settings.min_calibration_samples:
            raise ValueError(
                f"The representative dataset has {len(representative)} images; calibrated "
                f"quantization (int8, int16x8) needs at least {settings.min_calibration_samples} "
                "to calibrate ranges we would ship. Give more images from the training split "
                "(calibration_samples)."
            )
    fine_tuning = None
    if any(spec["fine_tunes"] for spec in specs.values()):
        train_data, fine_tuning = _fine_tuning_data(model, settings, dataset, num_examples,
                                                    train_data)
    return ExportData(eval_images, np.asarray(eval_labels).reshape(-1), representative,
                      train_data, fine_tuning)


def _fine_tuning_data(model, settings, dataset, num_examples, train_data):
    """`(training batches, export.settings.FineTuning)`: the given batches (as long as their
    length says, when known), else the run's training stream for the fine-tuning's epochs."""
    if train_data is not None:
        batches = int(train_data.cardinality())  # < 0: infinite or unknown
        return train_data, settings.fine_tuning(batches if batches > 0 else None, None)
    examples = num_examples("train_split")
    batch_size = fine_tune_batch_size(model.num_patches, examples)
    fine_tuning = settings.fine_tuning(examples // batch_size, batch_size)
    # Each epoch in its own shuffled order (the training stream's); optimize repeats the
    # stream when --fine-tune-steps asks for more than whole epochs give.
    epochs = max(1, -(-fine_tuning.steps // max(1, fine_tuning.batches_per_epoch)))
    return dataset("train_split", training=True, batch_size=batch_size,
                   epochs=epochs), fine_tuning
