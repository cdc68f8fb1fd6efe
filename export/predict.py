"""Classifies image files with an exported `.tflite` model, doing exactly what an app must do.

    python -m export.predict exports/digits/int8.tflite digit.png [more.png ...] [--top 3]

The app-side steps, in order (the README shows them in Kotlin and Swift):
1. Decode the image, convert it to the model's channels (grayscale or RGB).
2. Resize to the input tensor's height and width (bilinear, antialiased, as training's
   evaluation pipeline does).
3. Feed raw pixels 0..255, NHWC, batch 1: as float32 for float models; for integer models
   quantized with the input tensor's scale and zero point, q = round(pixel / scale) + zero_point
   (uint8 input calibrated on 0..255 images has scale 1, zero point 0: the pixels themselves).
   The model rescales pixels to [-1, 1] itself.
4. Read the output logits (dequantize: (q - zero_point) * scale) and take the softmax.
5. Name the classes with `labels.txt`, shipped next to the model (one name per line, in
   class-index order).
"""

import sys

if __name__ == "__main__":  # python -m export.predict: export/cli.py
    from export import cli

    sys.exit(cli.predict_main())

import os

import numpy as np

from export import evaluate

EXPECTED_MODEL = "a .tflite file written by export.convert (e.g. exports/digits/int8.tflite)"


def load_labels(model_path, labels=None):
    """The class names from `labels` or from `labels.txt` beside the model, or None."""
    path = labels or os.path.join(os.path.dirname(os.path.abspath(model_path)), "labels.txt")
    if not os.path.isfile(path):
        return None
    with open(path) as file:
        return [line.rstrip("\n") for line in file if line.strip()]


def load_image(path, height, width, channels):
    """An image file as float32 pixels (height, width, channels) in [0, 255]."""
    from PIL import Image

    if not os.path.isfile(path):
        raise FileNotFoundError(f"No image at {path!r}.")
    with Image.open(path) as image:
        image = image.convert("L" if channels == 1 else "RGB")
        image = image.resize((width, height), Image.BILINEAR)
        pixels = np.asarray(image, np.float32)
    return pixels.reshape(height, width, channels)


def predict(model_path, image_paths, *, labels=None, top=5):
    """Top classes for each image: `[[(class name, probability), ...], ...]`.

    Args:
        model_path: str. A `.tflite` file written by export.convert.
        image_paths: list of str. Image files (any format Pillow reads).
        labels: str or None. A labels file; defaults to `labels.txt` beside the model.
        top: int. How many classes to return per image.

    Example:
    >>> predict("exports/digits/int8.tflite", ["seven.png"], top=1)
    [[('7', 0.98)]]
    """
    if not os.path.isfile(model_path):
        raise FileNotFoundError(f"No model at {model_path!r}: expected {EXPECTED_MODEL}.")
    runner = evaluate.interpreter(model_path)
    _, height, width, channels = runner.get_input_details()[0]["shape"]
    names = load_labels(model_path, labels)
    images = np.stack([load_image(path, height, width, channels) for path in image_paths])
    logits = evaluate.predict_logits(model_path, images)
    logits = logits - logits.max(-1, keepdims=True)
    probabilities = np.exp(logits) / np.exp(logits).sum(-1, keepdims=True)
    results = []
    for row in probabilities:
        best = np.argsort(-row)[:top]
        results.append([(names[i] if names and i < len(names) else str(i), float(row[i]))
                        for i in best])
    return results
