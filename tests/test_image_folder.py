"""training.image_folder: one class list for every split, hidden entries ignored, every image
decodable by TensorFlow, the folder indexed once.

Labels are checked against the class each image's pixels encode (tests/helpers.py), never
against the index itself. Each test names what `training.data._folder_index` (the code before
this module) got wrong.
"""

import logging
import os
import shutil

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from tests.helpers import write_image_folder
from training.errors import DataError
from training.image_folder import ImageFolder


def pixel_classes(paths):
    """The class index each image's gray level encodes (20 levels per class; JPEG may shift 1)."""
    return [round(np.asarray(Image.open(path))[0, 0, 0] / 20) for path in paths]


def check_labels(split):
    assert isinstance(split.paths, tuple) and split.labels.dtype == np.int32
    assert split.labels.tolist() == pixel_classes(split.paths)


def cut(path, keep):
    with open(path, "rb") as file:
        data = file.read()
    with open(path, "wb") as file:
        file.write(data[: keep(len(data))])


def write_half_jpeg(path):
    """A 32x32 noise JPEG cut in half: past its header, so PIL's verify() passes it."""
    pixels = np.random.default_rng(0).integers(0, 256, (32, 32, 3), np.uint8)
    Image.fromarray(pixels).save(path, quality=90)
    cut(path, lambda size: size // 2)
    with Image.open(path) as image:
        image.verify()


def test_a_test_split_without_a_class_keeps_the_training_labels(tmp_path):
    # Before: each split took its own sorted classes, so test/c got label 1 (b's).
    write_image_folder(tmp_path, {"train": {"a": 2, "b": 2, "c": 2}, "test": {"a": 2, "c": 2}})
    folder = ImageFolder(tmp_path, "train")
    assert folder.class_names == ["a", "b", "c"]
    check_labels(folder.split("train"))
    check_labels(folder.split("test"))
    assert sorted(set(folder.split("test").labels)) == [0, 2]


@pytest.mark.parametrize(
    "test_class, message, training_folder",
    [("dog", "has no counterpart in", "train"), ("Cat", "differs only in case from", "train/cat")],
)
def test_a_test_class_the_training_split_lacks_is_an_error_naming_both(
    tmp_path, test_class, message, training_folder
):
    # Before: test/dog (or test/Cat) silently became a class of the test split, with an index
    # that means another class (or none) to the model.
    write_image_folder(tmp_path, {"train": {"cat": 2}, "test": {test_class: 2}})
    folder = ImageFolder(tmp_path, "train")
    with pytest.raises(DataError, match=message) as error:
        folder.split("test")
    assert os.path.join(tmp_path, "test", test_class) in str(error.value)
    assert os.path.join(tmp_path, training_folder) in str(error.value)


def test_given_class_names_reject_a_training_class_the_run_did_not_have(tmp_path):
    # Before: the class list always came from listing the folder, so a class folder added
    # after the run shifted every later class's label against the run's labels.txt.
    write_image_folder(tmp_path, {"train": {"a": 1, "b": 1, "c": 1}})
    folder = ImageFolder(tmp_path, "train", class_names=["a", "c"])
    with pytest.raises(DataError, match="not one of the run's classes") as error:
        folder.split("train")
    assert os.path.join(tmp_path, "train", "b") in str(error.value)


def test_hidden_entries_are_neither_classes_nor_images(tmp_path):
    # Before: .ipynb_checkpoints/ became class 0 (shifting a and b to 1 and 2), and macOS's
    # ._0.png was reported as an unreadable image.
    write_image_folder(tmp_path, {"train": {"a": 2, "b": 2}})
    checkpoints = tmp_path / "train" / ".ipynb_checkpoints"
    checkpoints.mkdir()
    shutil.copy(tmp_path / "train" / "a" / "0.png", checkpoints / "0.png")
    (tmp_path / "train" / "a" / ".DS_Store").write_bytes(b"\0\0\0\1Bud1")
    (tmp_path / "train" / "a" / "._0.png").write_bytes(b"\0\5\26\7 AppleDouble")
    (tmp_path / "train" / "a" / "notes.txt").write_text("not an image, ignored")
    folder = ImageFolder(tmp_path, "train")
    split = folder.split("train")
    assert folder.class_names == ["a", "b"]
    assert len(split.paths) == 4 and folder.skipped_files == []
    check_labels(split)


def test_an_empty_class_folder_is_an_error_naming_it(tmp_path):
    # Before: train/c with nothing but a .DS_Store became a class without images (and a
    # num_classes one too large).
    write_image_folder(tmp_path, {"train": {"a": 1, "b": 1}})
    (tmp_path / "train" / "c").mkdir()
    (tmp_path / "train" / "c" / ".DS_Store").write_bytes(b"\0")
    with pytest.raises(DataError, match="holds no image file") as error:
        ImageFolder(tmp_path, "train").split("train")
    assert os.path.join(tmp_path, "train", "c") in str(error.value)


def test_a_missing_split_names_the_expected_path_and_what_is_there(tmp_path):
    # Before: "Found:" listed .DS_Store beside the folders, and the error was training.data's
    # own DataError class, not training.errors'.
    write_image_folder(tmp_path, {"train": {"a": 1}, "valid": {"a": 1}})
    (tmp_path / ".DS_Store").write_bytes(b"\0")
    with pytest.raises(DataError) as error:
        ImageFolder(tmp_path, "train").split("test")
    assert f"{os.path.join(tmp_path, 'test')}/<class>/<image>" in str(error.value)
    assert "Found: ['train', 'valid']." in str(error.value)


def test_images_tensorflow_cannot_decode_are_skipped_once_before_training(tmp_path, caplog):
    # Before: PIL's verify() passed the JPEG cut in half, so training died mid-epoch in
    # TensorFlow's decoder ("jpeg::Uncompress failed"); the other files were reported twice.
    layout = {"train": {"a": 3, "b": 3}}
    write_image_folder(tmp_path, layout, extension="jpg")
    write_image_folder(tmp_path, layout, extension="png")
    half_jpeg, short_png = tmp_path / "train" / "a" / "half.jpg", tmp_path / "train" / "b" / "0.png"
    text = tmp_path / "train" / "b" / "text.jpg"
    write_half_jpeg(half_jpeg)
    cut(short_png, lambda size: size - 20)
    text.write_text("not an image")
    bad = {str(half_jpeg), str(short_png), str(text)}
    folder = ImageFolder(tmp_path, "train")
    with caplog.at_level(logging.WARNING, logger="training.image_folder"):
        split = folder.split("train")
        folder.split("train")
    assert sorted(entry.split(" (")[0] for entry in folder.skipped_files) == sorted(bad)
    assert len(split.paths) == 14 - 3 and not bad & set(split.paths)
    check_labels(split)
    (warning,) = [record for record in caplog.records if record.name == "training.image_folder"]
    assert all(warning.getMessage().count(path) == 1 for path in bad)
    # What survives decodes in the pipeline's own decoder, to the end.
    decoded = tf.data.Dataset.from_tensor_slices(list(split.paths)).map(
        lambda path: tf.io.decode_image(tf.io.read_file(path), expand_animations=False)
    )
    assert sum(1 for _ in decoded) == len(split.paths)


def test_a_split_without_a_decodable_image_is_an_error(tmp_path):
    # Before: the only test image, a JPEG cut in half, passed verify(): evaluation failed
    # after training instead of before it.
    write_image_folder(tmp_path, {"train": {"a": 1}})
    os.makedirs(tmp_path / "test" / "a")
    write_half_jpeg(tmp_path / "test" / "a" / "0.jpg")
    with pytest.raises(DataError, match="no readable image") as error:
        ImageFolder(tmp_path, "train").split("test")
    assert os.path.join(tmp_path, "test") in str(error.value)


def test_the_folder_is_indexed_once(tmp_path):
    # Before: every dataset_info, class_names and make_dataset call listed the folder and
    # opened every file again (three times before the first training step).
    write_image_folder(tmp_path, {"train": {"a": 2, "b": 2}})
    folder = ImageFolder(tmp_path, "train")
    split = folder.split("train")
    shutil.rmtree(tmp_path / "train")
    assert folder.split("train") is split and folder.class_names == ["a", "b"]


def test_images_at_any_depth_and_webp_are_read_and_the_rest_reported(tmp_path, caplog):
    # Before: train/a/2024/x.png and every .webp were ignored silently, and so were files
    # beside the class folders, other files and broken links.
    write_image_folder(tmp_path, {"train": {"a": 1, "b": 1}})
    nested = tmp_path / "train" / "a" / "2024" / "summer"
    nested.mkdir(parents=True)
    shutil.copy(tmp_path / "train" / "a" / "0.png", nested / "x.png")
    Image.open(tmp_path / "train" / "b" / "0.png").save(tmp_path / "train" / "b" / "y.WEBP",
                                                       lossless=True)
    left_out = {
        tmp_path / "train" / "a" / "2024" / "notes.txt": ".txt file",
        tmp_path / "train" / "b" / "scan.tif": ".tif file",
        tmp_path / "train" / "README": "outside a class folder",
        tmp_path / "train" / "a" / "LICENSE": "file without extension",
        tmp_path / "train" / "b" / "gone.jpg": "broken link",
    }
    for path in list(left_out)[:-1]:
        path.write_text("not read")
    os.symlink("deleted.jpg", tmp_path / "train" / "b" / "gone.jpg")
    folder = ImageFolder(tmp_path, "train")
    with caplog.at_level(logging.WARNING, logger="training.image_folder"):
        split = folder.split("train")
    assert set(split.paths) == {
        str(tmp_path / "train" / name) for name in ("a/0.png", "a/2024/summer/x.png",
                                                    "b/0.png", "b/y.WEBP")}
    check_labels(split)
    assert sorted(folder.left_out_files) == sorted(
        f"{path} ({why})" for path, why in left_out.items())
    (warning,) = [record.getMessage() for record in caplog.records
                  if record.name == "training.image_folder"]
    assert warning.startswith(f"Left out 5 file(s) of {tmp_path / 'train'} ")
    assert all(str(path) in warning for path in left_out)


def test_a_linked_class_folder_is_an_error_naming_both_paths(tmp_path):
    # Before: train/d -> b became a fourth class, b's images counted twice under two labels.
    write_image_folder(tmp_path, {"train": {"a": 2, "b": 2, "c": 2}})
    os.symlink("b", tmp_path / "train" / "d")
    with pytest.raises(DataError, match="are one file") as error:
        ImageFolder(tmp_path, "train").split("train")
    message = str(error.value)
    assert str(tmp_path / "train" / "d" / "0.png") in message
    assert str(tmp_path / "train" / "b" / "0.png") in message
    assert f"the symbolic link {tmp_path / 'train' / 'd'} " in message and "\n" not in message


def test_a_test_folder_linking_to_training_images_is_an_error(tmp_path):
    # Before: test/a -> ../train/a scored the model on the images it was trained on.
    write_image_folder(tmp_path, {"train": {"a": 2, "b": 2}, "test": {"b": 1}})
    os.symlink(os.path.join("..", "train", "a"), tmp_path / "test" / "a")
    folder = ImageFolder(tmp_path, "train")
    folder.split("train")
    with pytest.raises(DataError, match="are one file") as error:
        folder.split("test")
    assert str(tmp_path / "test" / "a" / "0.png") in str(error.value)
    assert str(tmp_path / "train" / "a" / "0.png") in str(error.value)
    # A link to images kept elsewhere is fine: one path to each file.
    other = tmp_path / "elsewhere"
    write_image_folder(other, {"photos": {"a": 2}})
    os.remove(tmp_path / "test" / "a")
    os.symlink(other / "photos" / "a", tmp_path / "test" / "a")
    folder = ImageFolder(tmp_path, "train")
    folder.split("train")
    check_labels(folder.split("test"))


@pytest.mark.parametrize("link, target", [
    ("train/e", "e"),  # a link to itself, beside the class folders
    ("train/a/loop.jpg", "loop.jpg"),  # ... among the images
    ("train/a/sub/up", ".."),  # a link to a folder above it
])
def test_a_symlink_loop_is_a_one_line_data_error(tmp_path, link, target):
    # Before: an OSError traceback (Too many levels of symbolic links) for train/e -> e; a
    # file linking to itself or a folder linking upwards was skipped silently.
    write_image_folder(tmp_path, {"train": {"a": 2, "b": 2}})
    (tmp_path / link).parent.mkdir(parents=True, exist_ok=True)
    os.symlink(target, tmp_path / link)
    with pytest.raises(DataError, match="is a symbolic link loop") as error:
        ImageFolder(tmp_path, "train").split("train")
    assert str(tmp_path / link) in str(error.value) and "\n" not in str(error.value)
