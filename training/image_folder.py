"""A local image folder ROOT/<split>/<class name>/<image file>: each split's files and labels.

    folder = ImageFolder("flowers", train_split="train")
    train = folder.split("train")  # SplitFiles(paths, labels), labels index folder.class_names
    test = folder.split("test")

Decisions:
- Indexed once per run. `split(name)` lists and checks a split on its first call and caches
  the result; the caller keeps the `ImageFolder`, so no epoch, evaluation or class-name lookup
  lists the folder or opens a file again.
- One class list for every split: the training split's class folders, sorted, or the list a
  finished run recorded (`class_names=`). A class index is then the same in every split: a test
  split may lack a class (its other images keep their training index) but may not bring a
  class of its own, nor a training class spelt in another case (two classes to a
  case-sensitive file system, one to a person).
- Every image is decoded once, at index time, with the decoder training uses
  (`training.images.decode`, the one decoder of every path). Only that decoder can say a
  file will decode mid-epoch: PIL's `Image.verify()` passes a JPEG cut in half that
  TensorFlow then rejects (`jpeg::Uncompress failed`), ending the run. Files it
  rejects are skipped before training and reported once (one warning per split, and
  `skipped_files`). The decode runs in parallel through tf.data; it costs one decode per
  image at the start of each run (process), which is cheap for small files and the price of
  never dying mid-epoch for large photos (docs/benchmarks.md, "Image folders: time to the
  first step", has the measured cost; an ImageNet-size folder on a 2-core machine takes
  minutes).
- Which files are a class's images (any depth, the extensions TensorFlow decodes, never a
  hidden entry, symbolic links followed) is training/folder_walk.py's to say.
- Nothing is left out without a word: other files (notes.txt, .tif, .heic), files beside the
  class folders and broken symbolic links are counted per split in one warning with examples
  (and listed in `left_out_files`); only hidden entries (names starting with ".":
  .ipynb_checkpoints/, .DS_Store, macOS's ._x.jpg) are never classes or images, silently.
- Symbolic links are followed, but a file is one example of one class in one split: two
  paths to one file (by real path; a linked class folder, train/d -> train/b, or a test
  folder linking to training images) are a DataError naming both.
"""

import collections
import dataclasses
import logging
import os

import numpy as np
import tensorflow as tf

from training import folder_walk, images
from training.errors import DataError
from training.images import IMAGE_EXTENSIONS

log = logging.getLogger(__name__)

# How many class names an error message lists before it says how many there are in all.
LISTED_CLASSES = 10
# How many left-out files a warning names as examples (their count is always given).
LISTED_EXAMPLES = 5
# The index checks that a file decodes; how its channels then convert cannot fail.
CHECKED_CHANNELS = 3


def is_image_folder(dataset):
    """Whether a run config's `dataset` names an existing local folder (else a tfds name)."""
    return os.path.isdir(str(dataset))


# eq=False: the generated __eq__ and __hash__ would compare a NumPy array as a truth value.
@dataclasses.dataclass(frozen=True, eq=False)
class SplitFiles:
    """The readable images of one split, in sorted (class folder, path) order.

    `paths`: tuple of str. `labels`: read-only int32 array, each an index into the folder's
    `class_names`.
    """

    paths: tuple
    labels: np.ndarray


class ImageFolder:
    """The index of the image folder `root`, whose classes are those of `train_split`.

    Args:
        root: str. The folder holding ROOT/<split>/<class name>/<image file>.
        train_split: str. The split whose class folders are the classes (e.g. "train").
        class_names: list of str, or None. The class list of a finished run (its run
            directory's); the training split may then hold no class folder outside it.
            None: the training split's class folders, sorted (listed now, one directory).

    Raises DataError, with what to change, for anything that would otherwise fail or mislabel
    during training; `split` raises it for the split it indexes.
    """

    def __init__(self, root, train_split, class_names=None):
        self.root = str(root)
        self.train_split = train_split
        if class_names is None:
            class_names = self._class_folders(train_split)
        self.class_names = list(class_names)
        self._class_index = {name: index for index, name in enumerate(self.class_names)}
        self.skipped_files = []
        self.left_out_files = []
        self._splits = {}
        self._real_paths = {}  # real path -> path, of every split indexed so far

    def split(self, name):
        """The `SplitFiles` of split `name`: indexed and decoded on the first call, then cached."""
        if name not in self._splits:
            self._splits[name] = self._index(name)
        return self._splits[name]

    def _index(self, split):
        split_dir = os.path.join(self.root, split)
        folders = self._class_folders(split)
        self._check_classes(split, folders)
        _, loose, broken = folder_walk.entries(split_dir)
        left_out = [(os.path.join(split_dir, name), "outside a class folder") for name in loose]
        left_out += [(os.path.join(split_dir, name), "broken link") for name in broken]
        paths, labels = [], []
        for folder in folders:
            class_dir = os.path.join(split_dir, folder)
            found, others = folder_walk.class_files(class_dir)
            left_out += others
            if not found:
                raise DataError(
                    f"{class_dir} holds no image file at any depth ({', '.join(IMAGE_EXTENSIONS)};"
                    " names starting with '.' are hidden): add its images or remove the folder."
                )
            paths += found
            labels += [self._class_index[folder]] * len(found)
        self._check_one_path_per_file(paths)
        self._report_left_out(split_dir, left_out)
        bad = _undecodable(paths)
        if len(bad):
            skipped = [f"{paths[i]} ({_decode_error(paths[i])})" for i in bad]
            log.warning(
                "Skipping %d image file(s) of %s that TensorFlow cannot read or decode:\n  %s",
                len(skipped),
                split_dir,
                "\n  ".join(skipped),
            )
            self.skipped_files += skipped
            if len(bad) == len(paths):
                raise DataError(
                    f"{split_dir} has no readable image: TensorFlow cannot decode any of its "
                    f"{len(paths)} image files (e.g. {skipped[0]})."
                )
        keep = np.ones(len(paths), bool)
        keep[bad] = False
        labels = np.asarray(labels, np.int32)[keep]
        labels.flags.writeable = False
        return SplitFiles(paths=tuple(p for p, kept in zip(paths, keep) if kept), labels=labels)

    def _class_folders(self, split):
        """The sorted, visible class folders of `split`; a DataError when there are none."""
        split_dir = os.path.join(self.root, split)
        if not os.path.isdir(split_dir):
            present = os.listdir(self.root) if os.path.isdir(self.root) else []
            found = sorted(name for name in present if not folder_walk.hidden(name))
            raise DataError(
                f"image folder {self.root!r} has no {split!r} split: expected "
                f"{split_dir}/<class>/<image>. Found: {found}."
            )
        folders, _, _ = folder_walk.entries(split_dir)
        if not folders:
            raise DataError(
                f"{split_dir} has no class folders: expected {split_dir}/<class>/<image>."
            )
        return folders

    def _check_one_path_per_file(self, paths):
        """No file reached by two paths, in this split or one indexed before (by real path)."""
        real_paths = {}
        twice = []
        for path in paths:
            real = os.path.realpath(path)
            first = self._real_paths.get(real) or real_paths.setdefault(real, path)
            if first != path:
                twice.append((path, first, real))
        if twice:
            path, first, real = twice[0]
            link = folder_walk.link_in(path, self.root) or folder_walk.link_in(first, self.root)
            through = f"; the symbolic link {link} leads to it a second time" if link else ""
            raise DataError(
                f"{path} and {first} are one file, {real}{through} ({len(twice)} file(s) reached "
                "twice): a file is one example of one class in one split. Remove the link, or "
                "copy the files that belong to both."
            )
        self._real_paths.update(real_paths)

    def _report_left_out(self, split_dir, left_out):
        """One warning: how many files of the split training does not read, of which kinds."""
        if not left_out:
            return
        kinds = collections.Counter(reason for _, reason in left_out)
        log.warning(
            "Left out %d file(s) of %s that are not images training reads (%s, at any depth "
            "of a class folder): %s. E.g.:\n  %s",
            len(left_out),
            split_dir,
            ", ".join(IMAGE_EXTENSIONS),
            ", ".join(f"{count} {kind}" for kind, count in kinds.most_common()),
            "\n  ".join(path for path, _ in left_out[:LISTED_EXAMPLES]),
        )
        self.left_out_files += [f"{path} ({reason})" for path, reason in left_out]

    def _check_classes(self, split, folders):
        """Every class folder of `split` must be one of `class_names`, spelt the same."""
        by_case = {name.casefold(): name for name in self.class_names}
        train_dir = os.path.join(self.root, self.train_split)
        classes = _listing(self.class_names)
        for folder in folders:
            if folder in self._class_index:
                continue
            path = os.path.join(self.root, split, folder)
            twin = by_case.get(folder.casefold())
            if twin is not None:
                raise DataError(
                    f"{path} differs only in case from the training class "
                    f"{os.path.join(train_dir, twin)}: class names are case-sensitive, so "
                    "they would be two classes. Rename one folder to match the other."
                )
            if split == self.train_split:
                raise DataError(
                    f"{path} is not one of the run's classes ({classes}): the folder has "
                    "changed since the run recorded them. Use the folder the run was trained on, "
                    "or train a new run."
                )
            raise DataError(
                f"{path} has no counterpart in {train_dir} (classes: {classes}): its images "
                "would get a label the model does not have. Rename it to its training class, "
                "or move it out of the folder."
            )


def _listing(names):
    shown = ", ".join(names[:LISTED_CLASSES])
    return shown if len(names) <= LISTED_CLASSES else f"{shown}, ... ({len(names)} in all)"


def _undecodable(paths):
    """The indices of `paths` that TensorFlow cannot read and decode, in increasing order."""

    def decode(index, path):
        image = images.decode(tf.io.read_file(path), CHECKED_CHANNELS)
        # The shape keeps the decode in the graph: tf.data prunes an op whose result is unused.
        return index, tf.shape(image)

    decoded = np.zeros(len(paths), bool)
    survivors = (
        tf.data.Dataset.from_tensor_slices((np.arange(len(paths)), list(paths)))
        # Any order will do: survivors are marked by index, so let tf.data decode out of order.
        .map(decode, num_parallel_calls=tf.data.AUTOTUNE, deterministic=False)
        .ignore_errors()
        .map(lambda index, shape: index)
        .batch(4096)
    )
    for indices in survivors.as_numpy_iterator():
        decoded[indices] = True
    return np.flatnonzero(~decoded)


def _decode_error(path):
    """TensorFlow's own words for why `path` does not decode (the tf.data pass drops them)."""
    try:
        images.decode(tf.io.read_file(path), CHECKED_CHANNELS)
    except tf.errors.OpError as error:
        return images.decode_error(error)
    return "it decoded on a second try: the file changed while the folder was indexed"
