"""scikit-learn's handwritten digits as a tensorflow-datasets builder: the default dataset.

1,797 real 8x8 grayscale scans of handwritten digits (UCI "Optical Recognition of
Handwritten Digits"), 10 classes, shipped inside scikit-learn, so preparing it needs no
network. Exposing it as a tfds builder means the default run goes through the very same
`tfds` pipeline (`training.data.make_dataset`) as cifar10 or imagenet2012.

The split is deterministic and stratified: for each class, every fifth image (in
scikit-learn's order) goes to `test`, the rest to `train` -> 1,433 train / 364 test.
Pixels are scikit-learn's 0..16 intensities scaled to uint8 0..255 (`round(x * 255 / 16)`),
so the images look like any other tfds image dataset to the pipeline and to the model.

Example:
>>> import training.digits  # registers the builder under its name, "sklearn_digits"
>>> import tensorflow_datasets as tfds
>>> train = tfds.load("sklearn_digits", split="train", as_supervised=True)
"""

import numpy as np
import tensorflow_datasets as tfds

NAME = "sklearn_digits"
# Every TEST_EVERY-th image of each class is a test image.
TEST_EVERY = 5


def digits_split(split):
    """Returns `(images uint8 (N, 8, 8, 1), labels int64 (N,))` of the "train" or "test" split."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    images = np.round(digits.images * (255.0 / 16.0)).astype(np.uint8)[..., None]
    labels = digits.target.astype(np.int64)
    is_test = np.zeros(len(labels), dtype=bool)
    for label in np.unique(labels):
        (indices,) = np.nonzero(labels == label)
        is_test[indices[::TEST_EVERY]] = True
    keep = is_test if split == "test" else ~is_test
    return images[keep], labels[keep]


class SklearnDigits(tfds.core.GeneratorBasedBuilder):
    """scikit-learn's 8x8 handwritten digits (no download; deterministic stratified split)."""

    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {"1.0.0": "Every 5th image of each class is test (1,433 train / 364 test)."}

    def _info(self):
        return self.dataset_info_from_configs(
            description=__doc__,
            features=tfds.features.FeaturesDict(
                {
                    "image": tfds.features.Image(shape=(8, 8, 1)),
                    "label": tfds.features.ClassLabel(names=[str(d) for d in range(10)]),
                }
            ),
            supervised_keys=("image", "label"),
            homepage=(
                "https://scikit-learn.org/stable/modules/generated/"
                "sklearn.datasets.load_digits.html"
            ),
            citation=(
                "Alpaydin, E. and Kaynak, C. (1998). "
                "Optical Recognition of Handwritten Digits. UCI."
            ),
        )

    def _split_generators(self, dl_manager):
        del dl_manager  # The data ships with scikit-learn: nothing to download.
        return {"train": self._generate_examples("train"), "test": self._generate_examples("test")}

    def _generate_examples(self, split):
        images, labels = digits_split(split)
        for index, (image, label) in enumerate(zip(images, labels)):
            yield index, {"image": image, "label": int(label)}
