"""Input pipelines: any tensorflow-datasets dataset or a local image folder -> static-shape tf.data.

One function, `make_dataset`, serves training, evaluation and the exporter's calibration
data, so every consumer sees images exactly as the model was trained on them:
float32 pixels in [0, 255] shaped (height, width, channels) (the model rescales them
itself), int32 labels.

Sources (the `dataset` entry of a run config):
- a tfds name (`"sklearn_digits"`, `"cifar10"`, `"imagenet2012"`), read from `data_dir`
  (local or `gs://`). Only `sklearn_digits` is prepared on the fly (it ships with
  scikit-learn); any other dataset must be prepared beforehand (`tfds build NAME`).
  We never download inside training: offline, `tfds.load` retries for minutes.
- a local folder `ROOT` laid out as `ROOT/<split>/<class name>/<image file>` (the layout
  of tfds's `ImageFolder`); class ids follow the sorted class names. Files that cannot be
  read as images are skipped and reported by path (a warning with the count and the
  paths) before training starts, so one bad file does not kill a week-long run.

Determinism (what makes a resumed run equal an uninterrupted one): the training stream
of epoch `e` is a pure function of `(seed, e)`: shuffles and per-example random crops
and flips are seeded from it (stateless ops), and `start_step` skips the examples the
run has already consumed. Keras's RandAugment and MixUp layers draw from their own
stateful generators, so with them a resumed run is statistically, not bitwise, equal.
"""

import logging
import os

import numpy as np
import tensorflow as tf

log = logging.getLogger(__name__)

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif")
# ImageNet-style evaluation: resize so the crop is 87.5% of the shorter side (224 / 256).
CENTER_CROP_FRACTION = 0.875


class DataError(ValueError):
    """A dataset that cannot be read as configured; the message says how to fix it."""


def is_image_folder(dataset):
    return os.path.isdir(str(dataset))


def _tfds():
    import tensorflow_datasets as tfds

    import training.digits  # noqa: F401  (registers "sklearn_digits" with tfds)

    return tfds


def _tfds_builder(config):
    """The prepared tfds builder of `config["dataset"]`, or a DataError saying how to prepare it."""
    tfds = _tfds()
    name, data_dir = config["dataset"], config.get("data_dir")
    try:
        builder = tfds.builder(name, data_dir=data_dir)
    except Exception as error:  # tfds raises DatasetNotFoundError and friends
        raise DataError(
            f"dataset {name!r} is neither a tensorflow-datasets name nor an existing folder "
            f"({type(error).__name__}: {error}). Use a name from `tfds.list_builders()` "
            "(e.g. cifar10, imagenet2012) or a folder laid out as ROOT/<split>/<class>/<image>."
        ) from None
    if not builder.is_prepared():
        if name == "sklearn_digits":
            builder.download_and_prepare()  # built from scikit-learn's copy: no network
        else:
            where = data_dir or "~/tensorflow_datasets"
            raise DataError(
                f"tfds dataset {name!r} is not prepared in {where}. Prepare it once, with network "
                f"access (`tfds build {name} --data_dir {where}`; imagenet2012 needs the archives "
                "in the manual_dir first, see its tfds catalog page), then pass the same "
                "--data-dir. Training never downloads: offline, tfds retries for minutes."
            )
    return builder


def _folder_index(root, split):
    """Sorted (paths, labels, class_names) under ROOT/split, skipping unreadable images."""
    from PIL import Image

    split_dir = os.path.join(root, split)
    if not os.path.isdir(split_dir):
        raise DataError(
            f"image folder {root!r} has no {split!r} split: expected {split_dir}/<class>/<image>. "
            f"Found: {sorted(os.listdir(root))}."
        )
    class_names = sorted(
        d for d in os.listdir(split_dir) if os.path.isdir(os.path.join(split_dir, d))
    )
    if not class_names:
        raise DataError(f"{split_dir} has no class folders: expected {split_dir}/<class>/<image>.")
    paths, labels, bad = [], [], []
    for label, class_name in enumerate(class_names):
        class_dir = os.path.join(split_dir, class_name)
        for file_name in sorted(os.listdir(class_dir)):
            path = os.path.join(class_dir, file_name)
            if not file_name.lower().endswith(IMAGE_EXTENSIONS):
                continue
            try:
                with Image.open(path) as image:
                    image.verify()
            except Exception as error:
                bad.append(f"{path} ({type(error).__name__})")
                continue
            paths.append(path)
            labels.append(label)
    if bad:
        log.warning(
            "Skipping %d unreadable image(s) in %s:\n  %s", len(bad), split_dir, "\n  ".join(bad)
        )
    if not paths:
        raise DataError(f"{split_dir} has no readable images ({', '.join(IMAGE_EXTENSIONS)}).")
    return paths, labels, class_names, bad


def dataset_info(config, split):
    """Returns `{"num_examples", "num_classes", "class_names"}` of one split of the configured data.

    Example:
    >>> dataset_info({"dataset": "sklearn_digits"}, "test")["num_examples"]
    364
    """
    dataset = config["dataset"]
    if is_image_folder(dataset):
        paths, _, class_names, bad = _folder_index(dataset, split)
        return {
            "num_examples": len(paths),
            "num_classes": len(class_names),
            "class_names": class_names,
            "skipped_files": bad,
        }
    builder = _tfds_builder(config)
    if split not in builder.info.splits:
        raise DataError(
            f"tfds dataset {dataset!r} has no split {split!r}; "
            f"it has {sorted(builder.info.splits)}. "
            "Set train_split / test_split (e.g. --set test_split=validation for imagenet2012)."
        )
    label = builder.info.features[builder.info.supervised_keys[1]]
    names = list(label.names)
    return {
        "num_examples": builder.info.splits[split].num_examples,
        "num_classes": label.num_classes,
        "class_names": names,
        "skipped_files": [],
    }


def class_names(config):
    """Returns the class names of the configured dataset, in label order (for labels.txt).

    Example:
    >>> class_names({"dataset": "sklearn_digits"})
    ['0', '1', '2', '3', '4', '5', '6', '7', '8', '9']
    """
    return dataset_info(config, config.get("train_split", "train"))["class_names"]


def _source(config, split, seed):
    """Encoded examples `(image bytes, label)`, in a seeded order when `seed` is set."""
    dataset = config["dataset"]
    if is_image_folder(dataset):
        paths, labels, _, _ = _folder_index(dataset, split)
        ds = tf.data.Dataset.from_tensor_slices((paths, np.asarray(labels, np.int32)))
        if seed is not None:
            ds = ds.shuffle(len(paths), seed=seed, reshuffle_each_iteration=False)
        return ds.map(lambda path, label: (tf.io.read_file(path), label))
    tfds = _tfds()
    builder = _tfds_builder(config)
    image_key, label_key = builder.info.supervised_keys
    read_config = tfds.ReadConfig(
        shuffle_seed=seed,
        interleave_cycle_length=1 if seed is None else 16,
        # The one order every worker shares; we shard by element below, so tfds must not
        # shard files (it fails when a split has fewer files than workers).
        input_context=None,
    )
    ds = builder.as_dataset(
        split=split,
        shuffle_files=seed is not None,
        read_config=read_config,
        # Keep images encoded until after the shuffle: the buffer holds bytes, not pixels.
        decoders={image_key: tfds.decode.SkipDecoding()},
    )
    ds = ds.map(lambda example: (example[image_key], tf.cast(example[label_key], tf.int32)))
    if seed is not None:
        buffer = min(config.get("shuffle_buffer", 10_000), builder.info.splits[split].num_examples)
        ds = ds.shuffle(buffer, seed=seed, reshuffle_each_iteration=False)
    return ds


def _decode(encoded, num_channels):
    image = tf.io.decode_image(encoded, channels=0, expand_animations=False)
    channels = tf.shape(image)[-1]
    if num_channels == 1:
        image = tf.cond(
            channels == 1, lambda: image, lambda: tf.image.rgb_to_grayscale(image[..., :3])
        )
    else:
        image = tf.cond(
            channels == 1, lambda: tf.image.grayscale_to_rgb(image), lambda: image[..., :3]
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


def _preprocess(image, seed, config, training, randaugment=None):
    height, width = _image_size(config)
    image = _decode(image, config.get("num_channels", 3)) if image.dtype == tf.string else image
    image = tf.cast(image, tf.float32)
    if training and config.get("train_crop", "resize") == "inception_crop":
        image = _inception_crop(image, seed)
    if not training and config.get("eval_crop", "resize") == "center_crop":
        image = _center_crop(image, height, width)
    else:
        image = tf.image.resize(image, (height, width), antialias=True)
    shift = config.get("random_shift", 0) if training else 0
    if shift:
        # Translate by up to `shift` pixels (zero padding, then a seeded crop).
        padded = tf.pad(image, [[shift, shift], [shift, shift], [0, 0]])
        image = tf.image.stateless_random_crop(padded, tf.shape(image), seed=seed + 2)
    if training and config.get("random_flip", False):
        image = tf.image.stateless_random_flip_left_right(image, seed=seed + 1)
    image.set_shape([height, width, config.get("num_channels", 3)])
    if randaugment is not None:
        image = randaugment(image, seed)
    return tf.clip_by_value(image, 0.0, 255.0)


def _image_size(config):
    size = config["image_size"]
    return (size, size) if isinstance(size, int) else tuple(size)


def make_dataset(
    config,
    split,
    *,
    training,
    batch_size=None,
    input_context=None,
    epoch=0,
    start_step=0,
    drop_remainder=None,
):
    """The one input pipeline: images as the model takes them, batched with static shapes.

    `make_dataset(config, split, *, training, batch_size=None, input_context=None, epoch=0,
    start_step=0, drop_remainder=None) -> tf.data.Dataset` of `(images, labels)`:
    images float32 in [0, 255], shape (batch, height, width, num_channels); labels int32
    (batch,) -- or float32 one-hot (batch, num_classes) when training with mixup or label
    smoothing.

    Args:
        config: dict. A run config (`DIR/config.json`, or `training.recipes.get_recipe(...)`);
            reads dataset, data_dir, image_size, num_channels, num_classes, batch_size, seed,
            shuffle_buffer, train_crop, eval_crop, random_shift, random_flip, randaugment,
            mixup_alpha,
            label_smoothing.
        split: str. A split name ("train", "test", "validation", "train[:90%]" for tfds).
        training: bool. True: one epoch of the training stream (shuffled and augmented as a
            function of `(seed, epoch)`). False: the split in file order, no augmentation.
        batch_size: int. Global batch size. Defaults to `config["batch_size"]`.
        input_context: tf.distribute.InputContext or None. When given (from
            `strategy.distribute_datasets_from_function`), this pipeline keeps every
            `num_input_pipelines`-th example and batches the per-replica batch size.
        epoch: int. Which epoch's order and augmentations to produce (training only).
        start_step: int. Skip the examples of the first `start_step` global steps of the
            epoch (resuming mid-epoch).
        drop_remainder: bool. Defaults to `training`. Static shapes, as TPUs and
            multi-replica Keras need, come with `True`; evaluation keeps every example.

    Example:
    >>> config = json.load(open("runs/digits/config.json"))
    >>> calibration = make_dataset(config, "train", training=False, batch_size=1).take(100)
    """
    batch_size = batch_size or config["batch_size"]
    drop_remainder = training if drop_remainder is None else drop_remainder
    num_pipelines, pipeline_id = 1, 0
    per_pipeline_batch = per_replica_batch = batch_size
    if input_context is not None:
        num_pipelines, pipeline_id = (
            input_context.num_input_pipelines,
            input_context.input_pipeline_id,
        )
        per_replica_batch = input_context.get_per_replica_batch_size(batch_size)
        per_pipeline_batch = batch_size // num_pipelines

    seed = None
    if training:
        # Seed the epoch's order from (seed, epoch): the data position of a resumed run is
        # then just (epoch, step), which the checkpoint records.
        seed = int(config.get("seed", 0)) * 100_003 + int(epoch)
    ds = _source(config, split, seed)
    if training:
        # One stateless seed per example, fixed by (seed, epoch, position in the epoch's order)
        # before sharding and skipping: the same example gets the same crop and shift whatever
        # the number of workers, and after a resume.
        seeds = tf.data.Dataset.random(seed=seed).batch(2, drop_remainder=True)
        ds = tf.data.Dataset.zip((ds, seeds))
    if num_pipelines > 1:
        # Every worker reads the same seeded order and keeps its own slice of examples.
        ds = ds.shard(num_pipelines, pipeline_id)
    if start_step:
        ds = ds.skip(start_step * per_pipeline_batch)
    options = tf.data.Options()
    # We shard by hand above (or not at all): tell tf.distribute not to re-shard. With no
    # input_context (`strategy.experimental_distribute_dataset`), shard by element (DATA):
    # FILE sharding fails when a split has fewer files than workers.
    options.experimental_distribute.auto_shard_policy = (
        tf.data.experimental.AutoShardPolicy.OFF
        if input_context is not None
        else tf.data.experimental.AutoShardPolicy.DATA
    )
    options.deterministic = True
    ds = ds.with_options(options)

    if training:
        randaugment = _randaugment_per_image(config)
        ds = ds.map(
            lambda example, s: (
                _preprocess(example[0], s, config, True, randaugment),
                example[1],
            ),
            num_parallel_calls=tf.data.AUTOTUNE,
        )
    else:
        ds = ds.map(
            lambda image, label: (_preprocess(image, None, config, False), label),
            num_parallel_calls=tf.data.AUTOTUNE,
        )
    ds = ds.batch(per_replica_batch, drop_remainder=drop_remainder)
    if training:
        ds = _augment_batches(ds, config)
    return ds.prefetch(tf.data.AUTOTUNE)


# RandAugment's magnitude scale: integers 0..30 (Cubuk et al., 2020; the paper's 15 is mid-scale).
RANDAUGMENT_MAX_MAGNITUDE = 30


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


def _randaugment_per_image(config):
    """RandAugment as `(image, seed) -> image` with Keras's own ops, or None when not configured.

    Keras's `RandAugment` layer computes all eleven of its ops on the whole batch and keeps
    the chosen one, for each of `num_ops`: 22 full-batch transforms to apply 2. Measured at
    224x224 on 2 cores that caps the i1k pipeline at ~55 images/s, below what Mixer-S/32
    trains at (benchmarks/input_pipeline.py). Here `tf.switch_case` runs only the chosen op
    of the same Keras layer, per image, ~12x faster; the ops are drawn per image (seeded by
    the example's seed), as in the RandAugment paper, where Keras draws one set per batch.
    """
    settings = config.get("randaugment")
    if not settings:
        return None
    layer = randaugment_layer(settings, seed=config.get("seed", 0))
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


def _augment_batches(ds, config):
    """mixup and label smoothing with Keras's own layer (training only)."""
    import keras

    mixup_alpha = config.get("mixup_alpha", 0.0)
    if mixup_alpha or config.get("label_smoothing", 0.0):
        num_classes = (
            config.get("num_classes")
            or dataset_info(config, config.get("train_split", "train"))["num_classes"]
        )
        ds = ds.map(lambda images, labels: (images, tf.one_hot(labels, num_classes)))
    if mixup_alpha:
        mix_up = keras.layers.MixUp(alpha=mixup_alpha, seed=config.get("seed", 0), dtype="float32")

        def mix(images, labels):
            mixed = mix_up({"images": images, "labels": labels}, training=True)
            return mixed["images"], mixed["labels"]

        ds = ds.map(mix, num_parallel_calls=tf.data.AUTOTUNE)
    return ds
