"""Input pipelines: any tensorflow-datasets dataset or a local image folder -> static-shape tf.data.

One function, `make_dataset`, serves training, evaluation and the exporter's calibration
data, so every consumer sees images exactly as the model was trained on them:
float32 pixels in [0, 255] shaped (height, width, channels) (the model rescales them
itself), int32 labels.

The `dataset` entry of a run config is a tfds name or an image folder (training/sources.py,
opened once per run by `open_source`); what happens to each image is training/augment.py,
and how its file becomes pixels is training/images.py (`export.classify` reads files through
`augment.evaluation_image` too, so an app's input is what evaluation saw).

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

from training import augment, sources, tensorflow_internals

# The sources are part of the data contract: `data.open_source(config).class_names`.
from training.sources import open_source  # noqa: F401

# How each epoch's per-example seeds are spaced: seed * EPOCH_SEED_STRIDE + epoch.
EPOCH_SEED_STRIDE = 100_003


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
    source = source or sources.open_source(config)
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
        randaugment = augment.randaugment_per_image(config)
        ds = ds.map(
            lambda example, seed: (
                augment.preprocess(source.read(example[0]), seed, config, True, randaugment),
                example[1],
            ),
            num_parallel_calls=tf.data.AUTOTUNE,
        )
    else:
        ds = ds.map(
            lambda image, label: (augment.preprocess(source.read(image), None, config, False), label),
            num_parallel_calls=tf.data.AUTOTUNE,
        )
    ds = ds.batch(replica_batch, drop_remainder=training or bool(drop_remainder))
    if training:
        ds = augment.augment_batches(ds, config, num_classes(config, source))
    return ds.prefetch(tf.data.AUTOTUNE)


def num_classes(config, source):
    """The model's number of classes: the config's, or the dataset's when it sets none."""
    return config["num_classes"] or len(source.class_names)


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
        ds = tensorflow_internals.shuffle(examples, buffer, epoch_seed, EPOCH_SEED_STRIDE)
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
