"""Input pipelines: any tensorflow-datasets dataset or a local image folder -> static-shape tf.data.

One function, `make_dataset`, serves training, evaluation and the exporter's calibration
data, so every consumer sees images exactly as the model was trained on them:
float32 pixels in [0, 255] shaped (height, width, channels) (the model rescales them
itself), int32 labels.

Sources (the `dataset` entry of a run config), opened once per run by `open_source`:
- a tfds name (`"sklearn_digits"`, `"cifar10"`, `"imagenet2012"`), read from `data_dir`
  (local or `gs://`). Only `sklearn_digits` is prepared on the fly (it ships with
  scikit-learn); any other dataset must be prepared beforehand (`tfds build NAME`).
  We never download inside training: offline, `tfds.load` retries for minutes.
- a local folder `ROOT/<split>/<class name>/<image file>` (training/image_folder.py):
  indexed once, every file decoded once, undecodable files skipped and listed; one class
  list, the training split's, for every split.

Determinism (what makes a resumed run equal an uninterrupted one): the training stream
of epoch `e` is a pure function of `(seed, e)`: the epoch's order is a seeded shuffle of the
split (tfds files are read in their fixed order, so the shuffle is tfds's buffer-sized one),
and each example's crops and flips are drawn from a stateless seed fixed by `(seed, e, its
position in that order)` before sharding and skipping. `start_step` skips the examples a
resumed run has already consumed. The stream of a whole run (`epochs`) is one dataset, the
epochs one after the other, so one `fit` reads it. Keras's RandAugment op sub-layers and
MixUp draw from their own stateful generators, so with them a resumed run is statistically,
not bitwise, equal.
"""

import tensorflow as tf

from training import image_folder
from training.errors import DataError

# ImageNet-style evaluation: resize so the crop is 87.5% of the shorter side (224 / 256).
CENTER_CROP_FRACTION = 0.875
# How each epoch's per-example seeds are spaced: seed * EPOCH_SEED_STRIDE + epoch.
EPOCH_SEED_STRIDE = 100_003


def _tfds():
    import tensorflow_datasets as tfds

    import training.digits  # noqa: F401  (registers "sklearn_digits" with tfds)

    return tfds


def _tfds_builder(config):
    """The prepared tfds builder of `config["dataset"]`, or a DataError saying how to prepare it."""
    tfds = _tfds()
    name, data_dir = config["dataset"], config["data_dir"]
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


class TfdsSource:
    """A prepared tfds dataset: examples are `(encoded image, label)`, read in file order."""

    skipped_files = ()

    def __init__(self, config):
        self.builder = _tfds_builder(config)
        self.name = config["dataset"]
        self.image_key, self.label_key = self.builder.info.supervised_keys
        self.class_names = list(self.builder.info.features[self.label_key].names)
        self.shuffle_buffer = config["shuffle_buffer"]

    def num_examples(self, split):
        splits = self.builder.info.splits
        if split not in splits:
            raise DataError(
                f"tfds dataset {self.name!r} has no split {split!r}; it has {sorted(splits)}. "
                "Set train_split / test_split (e.g. --set test_split=validation for imagenet2012)."
            )
        return splits[split].num_examples

    def examples(self, split, *, mixed):
        self.num_examples(split)
        tfds = _tfds()
        read_config = tfds.ReadConfig(
            # Several files read at once mix neighbouring records (training); the order is
            # still fixed. We shard by element later, so tfds must not shard files (it fails
            # when a split has fewer files than workers).
            interleave_cycle_length=16 if mixed else 1,
            input_context=None,
        )
        ds = self.builder.as_dataset(
            split=split,
            shuffle_files=False,
            read_config=read_config,
            # Keep images encoded until after the shuffle: the buffer holds bytes, not pixels.
            decoders={self.image_key: tfds.decode.SkipDecoding()},
        )
        key, label = self.image_key, self.label_key
        return ds.map(lambda example: (example[key], tf.cast(example[label], tf.int32)))

    def buffer_size(self, split):
        return min(self.shuffle_buffer, self.num_examples(split))

    @staticmethod
    def read(encoded):
        return encoded


class FolderSource:
    """An image folder (training/image_folder.py): examples are `(path, label)`, read lazily."""

    def __init__(self, config, class_names=None):
        self.folder = image_folder.ImageFolder(
            config["dataset"], config["train_split"], class_names=class_names
        )
        self.class_names = self.folder.class_names

    @property
    def skipped_files(self):
        return self.folder.skipped_files

    def num_examples(self, split):
        return len(self.folder.split(split).paths)

    def examples(self, split, *, mixed):
        files = self.folder.split(split)
        return tf.data.Dataset.from_tensor_slices((list(files.paths), files.labels))

    def buffer_size(self, split):
        return self.num_examples(split)  # paths are small: a full shuffle

    @staticmethod
    def read(path):
        return tf.io.read_file(path)


def open_source(config, class_names=None):
    """The dataset of a (checked) run config, opened once: `.class_names`, `.num_examples(split)`,
    `.skipped_files`. `class_names` (a finished run's list) fixes the class index of a folder.

    Example:
    >>> open_source(training.config.check({"dataset": "sklearn_digits"})).class_names[:3]
    ['0', '1', '2']
    """
    if image_folder.is_image_folder(config["dataset"]):
        return FolderSource(config, class_names)
    return TfdsSource(config)


def class_names(config):
    """The class names of the configured dataset, in label order (what labels.txt lists).

    Example:
    >>> class_names(training.config.check({"dataset": "sklearn_digits"}))
    ['0', '1', '2', '3', '4', '5', '6', '7', '8', '9']
    """
    return open_source(config).class_names


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


def image_size(config):
    size = config["image_size"]
    return (size, size) if isinstance(size, int) else tuple(size)


def make_dataset(
    config,
    split,
    *,
    training,
    source=None,
    batch_size=None,
    input_context=None,
    epoch=0,
    start_step=0,
    epochs=None,
    drop_remainder=None,
):
    """The one input pipeline: images as the model takes them, batched with static shapes.

    Returns a tf.data.Dataset of `(images, labels)`: images float32 in [0, 255], shape
    (batch, height, width, num_channels); labels int32 (batch,) -- or float32 one-hot
    (batch, num_classes) when training with mixup or label smoothing.

    Args:
        config: dict. A checked run config (`DIR/config.json`, `training.config.check`, or
            `training.recipes.get_recipe(...)`).
        split: str. A split name ("train", "test", "validation", "train[:90%]" for tfds).
        training: bool. True: the training stream (shuffled and augmented as a function of
            `(seed, epoch)`, whole batches only). False: the split in file order, as it is.
        source: what `open_source(config)` returns; opened here when not given. A run opens
            it once and passes it to every call.
        batch_size: int. Global batch size. Defaults to `config["batch_size"]`.
        input_context: tf.distribute.InputContext or None. When given (from
            `strategy.distribute_datasets_from_function`), this pipeline keeps every
            `num_input_pipelines`-th example and batches the per-replica batch size.
        epoch: int. The first epoch of the training stream.
        start_step: int. Skip the first `start_step` global steps of that epoch (resuming).
        epochs: int or None. The training stream runs through epochs `epoch..epochs-1`, one
            after the other; None: `epoch` alone.
        drop_remainder: bool. Evaluation only: drop the last, partial batch (several
            replicas and TPUs need equal batches). Defaults to False: every example counts.

    Example:
    >>> config = training.run_dir.read_config("runs/digits")
    >>> calibration = make_dataset(config, "train", training=False, batch_size=1).take(100)
    """
    source = source or open_source(config)
    batch_size = batch_size or config["batch_size"]
    num_pipelines, pipeline_id, replica_batch = 1, 0, batch_size
    if input_context is not None:
        num_pipelines, pipeline_id = (
            input_context.num_input_pipelines,
            input_context.input_pipeline_id,
        )
        replica_batch = input_context.get_per_replica_batch_size(batch_size)
    if training:
        ds = _training_examples(
            source, config, split, batch_size, num_pipelines, pipeline_id,
            epoch, start_step, epoch + 1 if epochs is None else epochs,
        )
    else:
        ds = source.examples(split, mixed=False)
        if num_pipelines > 1:
            ds = ds.shard(num_pipelines, pipeline_id)
    options = tf.data.Options()
    # We shard by hand (or not at all): tell tf.distribute not to re-shard. With no
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
            lambda example, seed: (
                _preprocess(source.read(example[0]), seed, config, True, randaugment),
                example[1],
            ),
            num_parallel_calls=tf.data.AUTOTUNE,
        )
    else:
        ds = ds.map(
            lambda image, label: (_preprocess(source.read(image), None, config, False), label),
            num_parallel_calls=tf.data.AUTOTUNE,
        )
    ds = ds.batch(replica_batch, drop_remainder=training or bool(drop_remainder))
    if training:
        ds = _augment_batches(ds, config, len(source.class_names))
    return ds.prefetch(tf.data.AUTOTUNE)


def _training_examples(
    source, config, split, batch_size, num_pipelines, pipeline_id, first_epoch, start_step, epochs
):
    """`((example, label), seed)` of epochs first_epoch..epochs-1 for one input pipeline.

    Each epoch contributes exactly its whole global batches, so batching the stream never
    mixes two epochs in a batch, and `steps_per_epoch` batches are one epoch.
    """
    examples = source.examples(split, mixed=True)
    buffer = source.buffer_size(split)
    steps_per_epoch = source.num_examples(split) // batch_size
    pipeline_batch = batch_size // num_pipelines

    def epoch_examples(epoch):
        # The data position of a resumed run is just (epoch, step), which the checkpoint records.
        epoch_seed = config["seed"] * EPOCH_SEED_STRIDE + epoch
        ds = _shuffle(examples, buffer, epoch_seed)
        # One stateless seed per example, fixed by (seed, epoch, position in the epoch's
        # order) before sharding and skipping: the same example gets the same crop and
        # shift whatever the number of workers, and after a resume.
        ds = ds.enumerate().map(lambda index, example: (example, tf.stack([epoch_seed, index])))
        if num_pipelines > 1:
            # Every worker reads the same seeded order and keeps its own slice of examples.
            ds = ds.shard(num_pipelines, pipeline_id)
        ds = ds.take(steps_per_epoch * pipeline_batch)
        skipped = tf.where(epoch == first_epoch, tf.cast(start_step * pipeline_batch, tf.int64), 0)
        return ds.skip(skipped)

    return tf.data.Dataset.range(first_epoch, epochs).flat_map(epoch_examples)


def _shuffle(ds, buffer_size, seed):
    """`ds.shuffle(buffer_size, seed)` for a seed that is a tensor (the epoch's, in flat_map).

    TF 2.21's `Dataset.shuffle` fails on a tensor seed when the global seed is 0
    (`random_seed.get_seed` compares `(global, op) == (0, 0)`, a Python bool of a tensor),
    and `keras.utils.set_random_seed(0)` is the default run's; TF's own shuffle op takes
    both seeds directly. The second seed is a nonzero constant: (0, 0) would mean "random".
    """
    structure = tf.nest.flatten(ds.element_spec)
    variant = tf.raw_ops.ShuffleDataset(
        input_dataset=tf.data.experimental.to_variant(ds),
        buffer_size=tf.cast(buffer_size, tf.int64),
        seed=tf.cast(seed, tf.int64),
        seed2=tf.constant(EPOCH_SEED_STRIDE, tf.int64),
        reshuffle_each_iteration=False,
        output_types=[spec.dtype for spec in structure],
        output_shapes=[spec.shape for spec in structure],
    )
    return tf.data.experimental.from_variant(variant, ds.element_spec)


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


def _augment_batches(ds, config, num_classes):
    """mixup and label smoothing with Keras's own layer (training only)."""
    import keras

    if config["mixup_alpha"] or config["label_smoothing"]:
        num_classes = config["num_classes"] or num_classes
        ds = ds.map(lambda images, labels: (images, tf.one_hot(labels, num_classes)))
    if config["mixup_alpha"]:
        mix_up = keras.layers.MixUp(alpha=config["mixup_alpha"], seed=config["seed"], dtype="float32")

        def mix(images, labels):
            mixed = mix_up({"images": images, "labels": labels}, training=True)
            return mixed["images"], mixed["labels"]

        ds = ds.map(mix, num_parallel_calls=tf.data.AUTOTUNE)
    return ds
