"""What happens to each training image and batch: decode, crops, shifts, flips, RandAugment, mixup.

Every random choice per image is drawn from the example's stateless seed (training/data.py),
except inside Keras's RandAugment op sub-layers and MixUp, which draw from their own
stateful generators.
"""

import tensorflow as tf

from training import images, keras_internals
from training.config import RANDAUGMENT_MAX_MAGNITUDE, uses_dense_labels

# ImageNet-style evaluation: resize so the crop is 87.5% of the shorter side (224 / 256).
CENTER_CROP_FRACTION = 0.875


def image_size(config):
    size = config["image_size"]
    return (size, size) if isinstance(size, int) else tuple(size)


def _inception_crop(image, seed):
    """Random crop of 5-100% of the area, aspect 3/4..4/3 (the paper's "inception crop")."""
    begin, size, _ = tf.image.stateless_sample_distorted_bounding_box(
        tf.shape(image),
        bounding_boxes=tf.zeros([1, 0, 4]),
        seed=seed,
        area_range=(0.05, 1.0),
        aspect_ratio_range=(3 / 4, 4 / 3),
        min_object_covered=0,
        use_image_if_no_bounding_boxes=True,
    )
    return tf.slice(image, begin, size)


def _center_crop(image, height, width):
    shape = tf.cast(tf.shape(image)[:2], tf.float32)
    scale = tf.reduce_max(tf.constant([height, width], tf.float32) / (shape * CENTER_CROP_FRACTION))
    resized = tf.cast(tf.round(shape * scale), tf.int32)
    image = tf.image.resize(image, resized, antialias=True)
    return tf.image.resize_with_crop_or_pad(image, height, width)


def preprocess(image, seed, config, training, randaugment=None):
    """An image (encoded bytes, or pixels) as training (`training=True`) or evaluation feeds it."""
    height, width = image_size(config)
    if not training:
        return evaluation_image(image, (height, width), config["num_channels"], config["eval_crop"])
    image = _pixels(image, config["num_channels"])
    if config["train_crop"] == "inception_crop":
        image = _inception_crop(image, seed)
    image = tf.image.resize(image, (height, width), antialias=True)
    shift = config["random_shift"]
    if shift:
        # Translate by up to `shift` pixels (zero padding, then a seeded crop).
        padded = tf.pad(image, [[shift, shift], [shift, shift], [0, 0]])
        image = tf.image.stateless_random_crop(padded, tf.shape(image), seed=seed + 2)
    if config["random_flip"]:
        image = tf.image.stateless_random_flip_left_right(image, seed=seed + 1)
    image.set_shape([height, width, config["num_channels"]])
    if randaugment is not None:
        image = randaugment(image, seed)
    return tf.clip_by_value(image, 0.0, 255.0)


def evaluation_image(image, size, num_channels, crop="resize"):
    """An image as evaluation, export's calibration and `export.classify` feed it to the model.

    Returns float32 (height, width, num_channels) in [0, 255].

    Args:
        image: scalar tf.string (a file's bytes, decoded by `training.images.decode`) or pixels.
        size: (height, width).
        num_channels: int. 1 or 3.
        crop: "resize" (the whole image, antialiased) or "center_crop" (the run config's
            `eval_crop`).
    """
    image = _pixels(image, num_channels)
    if crop == "center_crop":
        image = _center_crop(image, *size)
    else:
        image = tf.image.resize(image, size, antialias=True)
    image.set_shape([*size, num_channels])
    return tf.clip_by_value(image, 0.0, 255.0)


def _pixels(image, num_channels):
    if image.dtype == tf.string:
        return images.decode(image, num_channels)
    return tf.cast(image, tf.float32)


def randaugment_factor(magnitude):
    """Keras RandAugment's `factor` (strength in [0, 1]) for a RandAugment magnitude in 0..30.

    Keras's single `factor` scales every op's own full range (rotation by up to factor x 360
    degrees, translation by up to factor x the image side), so no value reproduces the
    per-op ranges of the official TF/big_vision RandAugment; the linear map puts the paper's
    magnitude 15 at 0.5, Keras's default strength.

    Example:
    >>> randaugment_factor(15)
    0.5
    """
    if not 0 <= magnitude <= RANDAUGMENT_MAX_MAGNITUDE:
        raise ValueError(
            f"randaugment magnitude={magnitude!r} is outside 0..{RANDAUGMENT_MAX_MAGNITUDE} "
            "(RandAugment's scale; the paper uses 15). Fix `randaugment` in the recipe or "
            "--set randaugment='{\"num_ops\": 2, \"magnitude\": 15}'."
        )
    return magnitude / RANDAUGMENT_MAX_MAGNITUDE


def randaugment_layer(settings, seed=0):
    """Keras's RandAugment for a recipe's `randaugment` entry ({"num_ops", "magnitude"}).

    Example:
    >>> layer = randaugment_layer({"num_ops": 2, "magnitude": 15})
    """
    import keras

    return keras.layers.RandAugment(
        value_range=(0, 255),
        num_ops=settings["num_ops"],
        factor=randaugment_factor(settings["magnitude"]),
        seed=seed,
        # Pixels stay float32 under a mixed policy: bfloat16 cannot hold them exactly.
        dtype="float32",
    )


def randaugment_per_image(config):
    """RandAugment as `(image, seed) -> image` with Keras's own ops, or None when not configured.

    Keras's `RandAugment` layer computes all eleven of its ops on the whole batch and keeps
    the chosen one, for each of `num_ops`: 22 full-batch transforms to apply 2, which starves
    the training step on CPU (docs/benchmarks.md, input pipeline). Here `tf.switch_case` runs
    only the chosen op of the same Keras layer, per image; the ops are drawn per image (seeded
    by the example's seed), as in the RandAugment paper, where Keras draws one set per batch.
    """
    settings = config["randaugment"]
    if not settings:
        return None
    layer = randaugment_layer(settings, seed=config["seed"])
    ops = keras_internals.randaugment_ops(layer)

    def augment(image, seed):
        choices = tf.random.stateless_uniform(
            (layer.num_ops,), seed=seed + 3, maxval=len(ops), dtype=tf.int32
        )
        for index in range(layer.num_ops):
            image = tf.switch_case(
                choices[index],
                [lambda op=op, x=image: tf.ensure_shape(op(x, training=True), x.shape) for op in ops],
            )
        return image

    return augment


def augment_batches(ds, config, num_classes):
    """mixup and label smoothing with Keras's own layer (training only)."""
    import keras

    if uses_dense_labels(config):
        ds = ds.map(lambda images, labels: (images, tf.one_hot(labels, num_classes)))
    if config["mixup_alpha"]:
        mix_up = keras.layers.MixUp(alpha=config["mixup_alpha"], seed=config["seed"], dtype="float32")

        def mix(images, labels):
            mixed = mix_up({"images": images, "labels": labels}, training=True)
            return mixed["images"], mixed["labels"]

        ds = ds.map(mix, num_parallel_calls=tf.data.AUTOTUNE)
    return ds
