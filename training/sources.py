"""Where a run's examples come from: a prepared tfds dataset or an image folder, opened once.

A source is what `open_source(config)` returns: `.class_names` (the class index),
`.num_examples(split)`, `.skipped_files`, `.examples(split, mixed=...)` (a dataset of
`(key, label)`, in a fixed order) and `.read(key)` (the encoded image of a key), so that the
pipeline (training/data.py) shuffles small keys and reads images after the shuffle.

- a tfds name (`"sklearn_digits"`, `"cifar10"`, `"imagenet2012"`), read from `data_dir`
  (local or `gs://`). Only `sklearn_digits` is prepared on the fly (it ships with
  scikit-learn); any other dataset must be prepared beforehand (`tfds build NAME`).
  We never download inside training: offline, `tfds.load` retries for minutes.
- a local folder `ROOT/<split>/<class name>/<image file>` (training/image_folder.py):
  indexed once, every file decoded once, undecodable files skipped and listed; one class
  list, the training split's, for every split.
"""

import tensorflow as tf

from training import image_folder
from training.errors import DataError


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
