"""What happens to each training image and batch: decode, crops, shifts, flips, RandAugment, mixup.

Every random choice per image is drawn from the example's stateless seed (training/data.py),
except inside Keras's RandAugment op sub-layers and MixUp, which draw from their own
stateful generators.
"""

import tensorflow as tf

from training.config import RANDAUGMENT_MAX_MAGNITUDE, uses_dense_labels

# ImageNet-style evaluation: resize so the crop is 87.5% of the shorter side (224 / 256).
CENTER_CROP_FRACTION = 0.875


def image_size(config):
    size = config["image_size"]
    return (size, size) if isinstance(size, int) else tuple(size)


def _decode(encoded, num_channels):
    """Any image file as `num_channels` channels: gray (1), gray with alpha (2), RGB (3) or
    RGBA (4) in; alpha dropped, gray tiled to RGB or RGB reduced to gray as the model needs."""
    image = tf.io.decode_image(encoded, channels=0, expand_animations=False)
    is_gray = tf.shape(image)[-1] <= 2
    if num_channels == 1:
        image = tf.cond(
            is_gray, lambda: image[..., :1], lambda: tf.image.rgb_to_grayscale(image[..., :3])
        )
    else:
        image = tf.cond(
            is_gray, lambda: tf.image.grayscale_to_rgb(image[..., :1]), lambda: image[..., :3]
        )
    image.set_shape([None, None, num_channels])
    return image


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
    height, width = image_size(config)
    image = _decode(image, config["num_channels"]) if image.dtype == tf.string else image
    image = tf.cast(image, tf.float32)
    if training and config["train_crop"] == "inception_crop":
        image = _inception_crop(image, seed)
    if not training and config["eval_crop"] == "center_crop":
        image = _center_crop(image, height, width)
    else:
        image = tf.image.resize(image, (height, width), antialias=True)
    shift = config["random_shift"] if training else 0
    if shift:
        # Translate by up to `shift` pixels (zero padding, then a seeded crop).
        padded = tf.pad(image, [[shift, shift], [shift, shift], [0, 0]])
        image = tf.image.stateless_random_crop(padded, tf.shape(image), seed=seed + 2)
    if training and config["random_flip"]:
        image = tf.image.stateless_random_flip_left_right(image, seed=seed + 1)
    image.set_shape([height, width, config["num_channels"]])
    if randaugment is not None:
        image = randaugment(image, seed)
    return tf.clip_by_value(image, 0.0, 255.0)


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
    # The layer's op sub-layers, in its own order (a private name: keras pinned in requirements).
    ops = [getattr(layer, name) for name in layer._AUGMENT_LAYERS]

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
