"""The run directory: what a training run writes, and how export and predict read it back.

    config.json          the run config as the user chose it (training/config.py): the same
                         config run again in the same directory resumes the run
    run_info.json        what the data and the machine decided: class_names (the class index
                         of every split, of labels.txt and of predict), example counts,
                         steps_per_epoch, total_steps, skipped files, strategy and replicas
    model.keras          the trained model (float32); `import keras_mixer` before
                         `keras.models.load_model` so that Keras knows its classes
    metadata.json        the class names (when they name every output), Keras version,
                         parameter count: with model.keras, a preset folder that
                         `keras_mixer.MlpMixer.from_preset(RUN)` loads
    metrics.json         test_accuracy, test_loss (whole test split), steps, per-epoch history
    backup/              the checkpoint a restarted run resumes from
    logs/                TensorBoard events and history.csv
    training_curves.png  loss and accuracy per epoch
    lease.json           while a run runs: which run holds the directory (training/lease.py)

The directory may be local or remote (`gs://`): every file goes through keras_mixer.storage,
and each is written atomically.
"""

from keras_mixer import preset_folder, storage

CONFIG = "config.json"
INFO = "run_info.json"
MODEL = preset_folder.MODEL_FILE
METRICS = "metrics.json"
BACKUP = "backup"
LOGS = "logs"
CURVES = "training_curves.png"
LEASE = "lease.json"


def path(run_dir, name):
    return storage.join(run_dir, name)


def read_config(run_dir):
    """The run's config.json completed with today's defaults, or None when there is none."""
    from training import config as config_lib

    file = path(run_dir, CONFIG)
    return config_lib.check(storage.read_json(file)) if storage.exists(file) else None


def read_info(run_dir):
    """The run's run_info.json as a dict, or None when there is none."""
    file = path(run_dir, INFO)
    return storage.read_json(file) if storage.exists(file) else None


def read_class_names(run_dir):
    """The class names of the run, in class-index order, or None when it recorded none."""
    info = read_info(run_dir)
    return None if info is None else list(info["class_names"])
