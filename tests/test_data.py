"""training/data.py: the one input pipeline, its determinism, sharding, and the sources."""

import time

import numpy as np
import pytest
import tensorflow as tf
from helpers import digits_config, write_image_folder

from training import augment, data, recipes
from training import config as config_lib
from training.digits import digits_split
from training.errors import DataError


def labels_of(config, **kwargs):
    dataset = data.make_dataset(config, "train", training=True, **kwargs)
    return np.concatenate([y.numpy() for _, y in dataset])


def test_digits_split_is_deterministic_stratified_and_disjoint():
    from sklearn.datasets import load_digits

    train_images, train_labels = digits_split("train")
    test_images, test_labels = digits_split("test")
    assert len(train_labels) + len(test_labels) == 1797
    # Every class is about 20% test.
    counts = np.bincount(test_labels) / (np.bincount(test_labels) + np.bincount(train_labels))
    assert np.all(np.abs(counts - 0.2) < 0.01)
    # Together the splits are scikit-learn's images, exactly, scaled to 0..255.
    expected = np.round(load_digits().images * 255 / 16).astype(np.uint8)
    got = np.concatenate([train_images, test_images])[..., 0]
    assert sorted(map(bytes, got)) == sorted(map(bytes, expected))
    np.testing.assert_array_equal(digits_split("test")[0], test_images)


def test_make_dataset_gives_static_float_pixels_and_the_split(data_dir):
    config = digits_config(data_dir)
    test = data.make_dataset(config, "test", training=False, batch_size=100)
    images, labels = zip(*[(x.numpy(), y.numpy()) for x, y in test])
    images, labels = np.concatenate(images), np.concatenate(labels)
    # Evaluation keeps every example; the pixels are the builder's, as float32 in [0, 255].
    expected_images, expected_labels = digits_split("test")
    assert images.dtype == np.float32 and labels.dtype == np.int32
    assert images.shape == (364, 8, 8, 1)
    assert sorted(zip(map(bytes, images.astype(np.uint8)), labels)) == sorted(
        zip(map(bytes, expected_images), expected_labels)
    )
    train_ds = data.make_dataset(config, "train", training=True)
    spec_images, spec_labels = train_ds.element_spec
    assert spec_images.shape == (64, 8, 8, 1) and spec_labels.shape == (64,)  # fully static
    assert len(list(train_ds)) == 1433 // 64  # whole batches only


def test_training_stream_is_a_function_of_seed_epoch_and_step(data_dir):
    config = digits_config(data_dir)
    epoch0 = labels_of(config, epoch=0)
    np.testing.assert_array_equal(epoch0, labels_of(config, epoch=0))
    assert not np.array_equal(epoch0, labels_of(config, epoch=1))
    np.testing.assert_array_equal(labels_of(config, epoch=0, start_step=5), epoch0[5 * 64 :])
    # Each epoch is a shuffle of the whole split (its whole batches).
    assert len(set(np.bincount(epoch0))) > 1 and len(epoch0) == 22 * 64
    assert not np.array_equal(epoch0, labels_of(digits_config(data_dir, seed=1), epoch=0))


def test_the_stream_of_a_run_is_its_epochs_one_after_the_other(data_dir):
    config = digits_config(data_dir, random_shift=1)
    whole = list(data.make_dataset(config, "train", training=True, epoch=1, start_step=3, epochs=4))
    parts = [
        batch
        for epoch, start in ((1, 3), (2, 0), (3, 0))
        for batch in data.make_dataset(
            config, "train", training=True, epoch=epoch, start_step=start
        )
    ]
    assert len(whole) == len(parts) == 3 * 22 - 3
    for (images, labels), (part_images, part_labels) in zip(whole, parts):
        np.testing.assert_array_equal(labels, part_labels)
        np.testing.assert_array_equal(images, part_images)  # the same shifts, too


def test_input_pipelines_split_the_global_batch_without_overlap(data_dir):
    config = digits_config(data_dir)
    order = labels_of(config)
    shards = []
    for pipeline_id in range(2):
        context = tf.distribute.InputContext(
            num_input_pipelines=2, input_pipeline_id=pipeline_id, num_replicas_in_sync=2
        )
        ds = data.make_dataset(config, "train", training=True, input_context=context)
        assert ds.element_spec[0].shape[0] == 32  # per-replica batch
        shards.append(np.concatenate([y.numpy() for _, y in ds]))
    # The two pipelines read the same seeded order and take alternate examples.
    np.testing.assert_array_equal(shards[0][: len(order) // 2], order[0::2][: len(shards[0])])
    np.testing.assert_array_equal(shards[1], order[1::2][: len(shards[1])])


def test_class_names(data_dir):
    config = config_lib.check({"dataset": "sklearn_digits", "data_dir": data_dir})
    assert data.open_source(config).class_names == [str(d) for d in range(10)]


def test_unprepared_tfds_dataset_fails_fast_with_how_to(tmp_path):
    start = time.monotonic()
    with pytest.raises(DataError, match="tfds build cifar10"):
        data.open_source(config_lib.check({"dataset": "cifar10", "data_dir": str(tmp_path)}))
    assert time.monotonic() - start < 30
    with pytest.raises(DataError, match="neither a tensorflow-datasets name nor an existing folder"):
        data.open_source(config_lib.check({"dataset": "no_such_dataset_xyz"}))
    source = data.open_source(config_lib.check({"dataset": "sklearn_digits"}))
    with pytest.raises(DataError, match="has no split 'validation'"):
        source.num_examples("validation")


def test_image_folder_feeds_the_pipeline_with_the_training_class_index(tmp_path):
    # The test split lacks "b": its "c" images keep index 2 (a shifted index would read 1).
    write_image_folder(tmp_path, {"train": {"a": 4, "b": 4, "c": 4}, "test": {"a": 3, "c": 3}})
    config = recipes.get_recipe("digits", dataset=str(tmp_path), image_size=8, num_channels=3)
    source = data.open_source(config)
    assert source.class_names == ["a", "b", "c"]
    images, labels = next(iter(data.make_dataset(config, "test", training=False, source=source)))
    levels = images.numpy()[:, 0, 0, 0]
    np.testing.assert_array_equal(labels.numpy(), np.round(levels / 20).astype(int))
    assert sorted(labels.numpy().tolist()) == [0, 0, 0, 2, 2, 2]
    # RGB images feed a 1-channel model as gray.
    gray = {**config, "num_channels": 1}
    assert data.make_dataset(gray, "test", training=False).element_spec[0].shape[-1] == 1


@pytest.mark.slow
def test_paper_recipes_build_their_augmented_pipelines(tmp_path):
    from PIL import Image

    rng = np.random.default_rng(0)
    for label in range(2):
        class_dir = tmp_path / "train" / f"class_{label}"
        class_dir.mkdir(parents=True)
        for index in range(8):
            pixels = rng.integers(0, 256, (30, 40, 3), dtype=np.uint8)
            Image.fromarray(pixels).save(class_dir / f"{index}.jpg")

    def first_batch(recipe, **overrides):
        config = recipes.get_recipe(
            recipe, dataset=str(tmp_path), image_size=16, batch_size=4, **overrides
        )
        return next(iter(data.make_dataset(config, "train", training=True)))

    plain_images, plain_labels = first_batch("pretrain")
    # RandAugment alone: same examples in the same order (the labels), other pixels.
    augmented, same_labels = first_batch("pretrain", randaugment={"num_ops": 2, "magnitude": 15})
    np.testing.assert_array_equal(same_labels, plain_labels)
    assert not np.allclose(augmented, plain_images) and augmented.dtype == tf.float32
    images, labels = first_batch("i1k")  # + RandAugment 2/15 and mixup 0.5
    assert images.shape == plain_images.shape == (4, 16, 16, 3)
    assert np.all((images.numpy() >= 0) & (images.numpy() <= 255))
    # Same seed, same crops and order: what differs is RandAugment's and mixup's doing.
    assert not np.allclose(images, plain_images)
    # mixup: soft labels, each a mix of at most two one-hot rows.
    assert labels.shape == (4, 2) and plain_labels.shape == (4,)
    np.testing.assert_allclose(labels.numpy().sum(axis=1), 1.0, atol=1e-6)
    assert np.all(labels.numpy() >= 0)
    images, labels = first_batch("finetune")  # inception crop and flips, integer labels
    assert images.shape == (4, 16, 16, 3) and labels.dtype == tf.int32
    assert augment.randaugment_factor(15) == 0.5  # the paper's magnitude: mid-scale
    with pytest.raises(ValueError, match="randaugment magnitude=31 is outside 0..30"):
        augment.randaugment_factor(31)


@pytest.mark.parametrize("mode", ["L", "LA", "RGB", "RGBA"])
@pytest.mark.parametrize("num_channels", [1, 3])
def test_every_png_mode_feeds_the_model_its_channels(tmp_path, mode, num_channels):
    from PIL import Image

    for split in ("train", "test"):
        (tmp_path / split / "a").mkdir(parents=True)
        Image.new(mode, (8, 8), color=(90,) * len(mode)).save(tmp_path / split / "a" / "0.png")
    config = recipes.get_recipe(
        "digits", dataset=str(tmp_path), image_size=8, num_channels=num_channels, batch_size=1,
        random_shift=0,
    )
    for training in (True, False):
        images, _ = next(iter(data.make_dataset(config, "train", training=training)))
        assert images.shape == (1, 8, 8, num_channels)
        np.testing.assert_allclose(images.numpy(), 90, atol=1)  # gray 90 stays 90, alpha dropped
