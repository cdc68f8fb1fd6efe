"""`predict`: classifies image files with an exported `.tflite` model, doing exactly what an
app must do. `python -m export.predict MODEL IMAGE ...` is its command line (export/predict.py).

The app-side steps, in order (docs/export.md shows them in Kotlin and Swift):
1. Decode the image as training did (training/images.py: stored pixels, EXIF orientation not
   applied, alpha dropped, 16-bit values scaled to 0..255), in the model's channels (gray or RGB).
2. Resize to the input tensor's height and width (bilinear, antialiased, as training's
   evaluation pipeline does), or first crop the centre to that aspect ratio where
   `preprocessing.json` beside the model says `"crop": "center_crop"` (the run's `eval_crop`).
3. Feed raw pixels 0..255, NHWC, batch 1: as float32 for float models; for integer models
   quantized with the input tensor's scale and zero point, q = round(pixel / scale) + zero_point
   (uint8 input calibrated on 0..255 images has scale 1, zero point 0: the pixels themselves).
   The model rescales pixels to [-1, 1] itself.
4. Read the output logits (dequantize: (q - zero_point) * scale) and take the softmax.
5. Name the classes with `labels.txt`, shipped next to the model (one name per line, in
   class-index order: the training run's class list).

A file that is not an image, an empty or truncated `.tflite`, or a `.keras` or `.h5` given
in its place is a ValueError naming the path and what was expected.
"""

import json
import os

import numpy as np
import tensorflow as tf

from export import evaluate
from training import augment, images
from training import config as config_lib

EXPECTED_MODEL = "a .tflite file written by export.convert (e.g. exports/digits/int8.tflite)"
CONVERT = "python -m export.convert SOURCE --out DIR"
# Keras models given in a .tflite's place, by their first bytes (keras_mixer.presets'
# HDF5_SIGNATURE, not imported: that loads Keras, and predict runs on LiteRT alone, as an app).
KERAS_FILES = {
    b"PK\x03\x04": (
        f"a zip archive (a Keras .keras model?), not a .tflite: convert it first ({CONVERT})"
    ),
    b"\x89HDF\r\n\x1a\n": (
        "an HDF5 file (a legacy Keras .h5 model?), not a .tflite: save the model as a .keras "
        f"(model.save('model.keras')) and convert that ({CONVERT})"
    ),
}


# Written beside the model by export.pipeline.convert (export/report.py): the run's evaluation
# crop. Exports without one resize the whole image, as every run did before the setting existed.
PREPROCESSING_FILE = "preprocessing.json"


def load_crop(model_path):
    """The evaluation crop the model was trained with: "resize" or "center_crop"."""
    path = os.path.join(os.path.dirname(os.path.abspath(model_path)), PREPROCESSING_FILE)
    if not os.path.isfile(path):
        return "resize"
    with open(path) as file:
        text = file.read()
    try:
        crop = json.loads(text).get("crop", "resize")
    except (ValueError, AttributeError):  # not JSON, or JSON that is not an object
        crop = None
    # Checked as the run's config checks `eval_crop`: an unknown crop must not fall back to a
    # resize the model was never evaluated with.
    problem = config_lib.SETTINGS["eval_crop"].accepts(crop)
    if problem:
        raise ValueError(
            f"{path} is not an export's preprocessing file: expected a JSON object whose "
            f"\"crop\" is {problem}. Rewrite it, or export the run again.")
    return crop


def load_labels(model_path, labels=None):
    """The class names from `labels` or from `labels.txt` beside the model, or None."""
    path = labels or os.path.join(os.path.dirname(os.path.abspath(model_path)), "labels.txt")
    if not os.path.isfile(path):
        return None
    with open(path) as file:
        return [line.rstrip("\n") for line in file if line.strip()]


def load_image(path, height, width, channels, crop="resize"):
    """An image file as float32 pixels (height, width, channels) in [0, 255], exactly as the
    training run's evaluation read it (`training.augment.evaluation_image` with the run's
    `crop`; training.images states how each kind of file is read)."""
    if not os.path.isfile(path):
        raise FileNotFoundError(f"No image at {path!r}.")
    try:
        pixels = augment.evaluation_image(tf.io.read_file(path), (height, width), channels, crop)
    except tf.errors.InvalidArgumentError as error:  # not an image, truncated, another format
        raise ValueError(
            f"{path!r} is not an image TensorFlow can decode ({images.decode_error(error)}): "
            "expected a "
            f"{', '.join(images.IMAGE_EXTENSIONS)} file."
        ) from None
    return pixels.numpy()


def load_model(path):
    """The bytes of the `.tflite` file at `path`, checked to load in the LiteRT interpreter.

    Raises FileNotFoundError, or ValueError saying what the file is instead (empty, a Keras
    `.keras` or `.h5` model, not a TFLite flatbuffer).
    """
    if not os.path.isfile(path):
        raise FileNotFoundError(f"No model at {path!r}: expected {EXPECTED_MODEL}.")
    with open(path, "rb") as file:
        model = file.read()
    if not model:
        raise ValueError(f"{path!r} is empty (0 bytes): expected {EXPECTED_MODEL}.")
    for magic, what in KERAS_FILES.items():
        if model.startswith(magic):
            raise ValueError(f"{path!r} is {what}; expected {EXPECTED_MODEL}.")
    try:
        evaluate.interpreter(model, delegate=False)
    except ValueError as error:
        raise ValueError(
            f"{path!r} is not a LiteRT model ({' '.join(str(error).split())}; {len(model)} "
            f"bytes, truncated or another kind of file): expected {EXPECTED_MODEL}."
        ) from None
    return model


def predict(model_path, image_paths, *, labels=None, top=5):
    """Top classes for each image: `[[(class name, probability), ...], ...]`.

    Args:
        model_path: str. A `.tflite` file written by export.pipeline.convert.
        image_paths: list of str. Image files (`training.images.IMAGE_EXTENSIONS`).
        labels: str or None. A labels file; defaults to `labels.txt` beside the model.
        top: int. How many classes to return per image.

    Example:
    >>> predict("exports/digits/int8.tflite", ["seven.png"], top=1)
    [[('7', 0.98)]]
    """
    model = load_model(model_path)
    runner = evaluate.interpreter(model, delegate=False)
    _, height, width, channels = runner.get_input_details()[0]["shape"]
    names = load_labels(model_path, labels)
    crop = load_crop(model_path)
    images = np.stack([load_image(path, height, width, channels, crop) for path in image_paths])
    logits = evaluate.predict_logits(model, images)
    logits = logits - logits.max(-1, keepdims=True)
    probabilities = np.exp(logits) / np.exp(logits).sum(-1, keepdims=True)
    results = []
    for row in probabilities:
        best = np.argsort(-row)[:top]
        results.append([(names[i] if names and i < len(names) else str(i), float(row[i]))
                        for i in best])
    return results
