"""Preset folders: a Mixer saved to share (`model.save_to_preset(DIR)`), and read back.

A preset folder (`model.save_to_preset(DIR)`, local or remote) holds two files:
`model.keras` (config and weights) and `metadata.json` (class names, Keras version,
parameter count). keras-hub's preset folders split the model into `config.json` and
`model.weights.h5` because they hold several objects (backbone, task, preprocessor) over
one weights file, and keep `metadata.json` beside them; we keep its `metadata.json` and
store our one model as Keras's own single file, which a training run directory already
holds (its `config.json` is the run config), so every run directory is a preset folder.

Reading a folder is where a user's own file meets Keras's loader, so a model file Keras
cannot load is diagnosed here (`why_unloadable`, which export uses for any `.keras` it is
given): one line that says what the file is (legacy HDF5, a damaged zip, code, another
model) and how to write it again. The built-in presets are keras_mixer/presets.py.
"""

import io
import os
import zipfile

import keras

from keras_mixer import storage
from keras_mixer.presets import PRESETS, PresetError

MODEL_FILE = "model.keras"
METADATA_FILE = "metadata.json"
EXPECTED_MODEL_FILE = (f"the {MODEL_FILE} of a keras_mixer.MlpMixer, as model.save_to_preset(DIR) "
                       "writes it; write the preset again")
# The first bytes of every HDF5 file, such as Keras's legacy `.h5` models.
HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"


def save_to_preset(model, preset_dir, class_names=None):
    """Writes `model.keras` and `metadata.json` into `preset_dir` (local or remote).

    `class_names` (one per output of the head) defaults to the model's own, which
    `MlpMixer.from_preset` sets. `metadata.json` is written first and `model.keras`, the file
    a reader opens first, last; each is written atomically.
    """
    names = model.class_names if class_names is None else class_names
    if names is not None:
        names = [str(name) for name in names]
        if not model.include_top or len(names) != model.num_classes:
            outputs = f"{model.num_classes} classes" if model.include_top else "no head"
            raise ValueError(
                f"{len(names)} class names for a model with {outputs}: pass one name per output "
                "of the head (class_names=None for none)."
            )
    storage.write_json(
        storage.join(preset_dir, METADATA_FILE),
        {
            "class_names": names,
            "keras_version": keras.__version__,
            "parameter_count": model.count_params(),
        },
    )
    with storage.staged_file(storage.join(preset_dir, MODEL_FILE)) as local:
        model.save(local)
    return os.fspath(preset_dir)


def read_class_names(preset_dir):
    """The class names in a preset folder's metadata.json, or None (none recorded, no file)."""
    path = storage.join(preset_dir, METADATA_FILE)
    return storage.read_json(path).get("class_names") if storage.exists(path) else None


def read_preset_folder(preset_dir):
    """`(model, metadata)` of a folder written by `save_to_preset`, or PresetError naming
    the file that is missing or unreadable."""
    preset_dir = os.fspath(preset_dir)
    if not storage.isdir(preset_dir):
        raise PresetError(
            f"{preset_dir!r} is neither a preset name nor a preset folder. Known presets: "
            f"{', '.join(PRESETS)}; a preset folder is what model.save_to_preset(DIR) writes."
        )
    for name, what in ((MODEL_FILE, "config and weights"), (METADATA_FILE, "class names")):
        if not storage.exists(storage.join(preset_dir, name)):
            raise PresetError(
                f"Preset folder {preset_dir!r} has no {name} (its {what}): a preset folder holds "
                f"{MODEL_FILE} and {METADATA_FILE}; write it again with model.save_to_preset(DIR)."
            )
    metadata_file = storage.join(preset_dir, METADATA_FILE)
    try:
        metadata = storage.read_json(metadata_file)
    except ValueError as error:
        raise PresetError(
            f"{metadata_file!r} is not JSON ({error}): write the preset again."
        ) from None
    model_file = storage.join(preset_dir, MODEL_FILE)
    try:
        with storage.local_copy(model_file) as local:
            model = keras.saving.load_model(local, compile=False)
    except Exception as error:  # Keras raises ValueError, TypeError, OSError, zip errors
        raise PresetError(why_unloadable(model_file, error, EXPECTED_MODEL_FILE)) from None
    return model, metadata


def why_unloadable(path, error, expected):
    """One line on why Keras could not load the `.keras` file at `path` (`error`, raised by
    `keras.saving.load_model`) and what to do; `expected` says what the file should be and
    how it is written again.

    Keras's own message is quoted in whole sentences only. A file of the legacy HDF5 format,
    which Keras 3 reads only as `keras.saving.load_model(..., custom_objects=...)`, is named
    as such with the way to save it as a `.keras`.
    """
    content = storage.read_bytes(path)  # only once Keras has failed: the file is suspect
    if content.startswith(HDF5_SIGNATURE):
        return (
            f"{path!r} is a legacy HDF5 Keras file (.h5), which is not supported: save the model "
            "as a .keras file, model.save('model.keras'); this one becomes one with "
            f"keras.saving.load_model({path!r}, custom_objects="
            "{'MlpMixer': keras_mixer.MlpMixer}).save('model.keras')."
        )
    damage = _zip_damage(content)
    if damage:
        return (
            f"{path!r} is corrupt ({damage}, {len(content)} bytes): a .keras file is a zip "
            f"archive, and this one is truncated or was never one. Expected {expected}."
        )
    message = " ".join(str(error).split())
    if "safe_mode" in message:  # Keras refuses code (a Lambda's) unless safe_mode=False
        return (
            f"{path!r} holds Python code, which Keras's safe mode does not load as it could run "
            f"anything (Keras: {_sentences(message, 0)}); an MlpMixer holds none, so this is "
            f"not a Mixer's file. Expected {expected}."
        )
    if "Could not locate class" in message:
        return (
            f"Keras could not locate the model class in {path!r} ({_sentences(message, 160)}). "
            "Run `import keras_mixer` before keras.models.load_model, so that Keras knows "
            "MlpMixer; if it still fails, the file was saved by another version of "
            "keras_mixer or holds another model."
        )
    return (
        f"Could not load {path!r} as a Keras model ({type(error).__name__}: "
        f"{_sentences(message, 300)}). Expected {expected}."
    )


def _sentences(message, limit):
    """The whole sentences of `message` that fit in `limit` characters (at least one)."""
    sentences = message.split(". ")
    kept = sentences[0]
    for sentence in sentences[1:]:
        if len(kept) + 2 + len(sentence) > limit:
            return kept if kept.endswith(".") else kept + "."
        kept = f"{kept}. {sentence}"
    return kept


def _zip_damage(content):
    """What is wrong with `content` as a zip archive, or None when it reads as one."""
    try:
        with zipfile.ZipFile(io.BytesIO(content)) as archive:
            bad_member = archive.testzip()
    except (zipfile.BadZipFile, EOFError):
        return "not a zip archive"
    return None if bad_member is None else f"{bad_member} fails its checksum"
