"""Official .npz checkpoints: logits against the NumPy reference, fine-tuning options, bad files."""

import os
import re
import zipfile

import numpy as np
import pytest

from keras_mixer import VARIANTS, load_official_checkpoint
from keras_mixer.official_layout import CheckpointError, keras_to_official, official_to_keras
from reference import mixer_forward, random_official_params

from helpers import TINY, assert_close_to_reference, random_images, write_checkpoint


def assert_matches_reference(model, params, images):
    assert_close_to_reference(model(images), mixer_forward(params, (images - 127.5) / 127.5))


@pytest.fixture
def tiny_checkpoint(tmp_path):
    params = random_official_params(np.random.default_rng(0), **TINY, num_patches=16, num_classes=7)
    return write_checkpoint(tmp_path, params), params


def test_tiny_checkpoint_logits_match_reference(tiny_checkpoint):
    path, params = tiny_checkpoint
    model = load_official_checkpoint(path, variant=TINY)
    assert model.image_size == (16, 16) and model.num_classes == 7
    assert_matches_reference(model, params, random_images(3, 16))


def test_paper_variant_is_inferred_from_the_file(tmp_path):
    # S/32 at 64x64 (4 patches): a real variant's shapes, small enough for CI.
    params = random_official_params(np.random.default_rng(1), **VARIANTS["S/32"], num_patches=4, num_classes=10)
    path = write_checkpoint(tmp_path, params)
    model = load_official_checkpoint(path)
    assert (model.hidden_dim, model.num_blocks, model.image_size) == (512, 8, (64, 64))
    assert_matches_reference(model, params, random_images(2, 64))
    named = load_official_checkpoint(path, variant="S/32")
    np.testing.assert_array_equal(named(random_images(1, 64)), model(random_images(1, 64)))


def test_headless_checkpoint_needs_num_classes(tmp_path):
    params = random_official_params(np.random.default_rng(2), **TINY, num_patches=16, num_classes=0)
    path = write_checkpoint(tmp_path, params)
    with pytest.raises(CheckpointError, match="has no head: pass num_classes"):
        load_official_checkpoint(path, variant=TINY)
    model = load_official_checkpoint(path, variant=TINY, num_classes=4)
    assert model.output_shape == (None, 4) and not model.get_layer("head").get_weights()[0].any()


def test_name_mapping_covers_every_key_both_ways(tiny_checkpoint):
    _, params = tiny_checkpoint
    model = load_official_checkpoint(tiny_checkpoint[0], variant=TINY)
    keras_keys = {
        keras_to_official(layer.name, i) for layer in model.layers for i in range(len(layer.weights))
    }
    assert keras_keys == set(params)
    for key in params:
        layer_name, position = official_to_keras(key)
        assert "/" not in layer_name and keras_to_official(layer_name, position) == key
    with pytest.raises(CheckpointError, match="not a parameter path"):
        official_to_keras("MixerBlock_0/LayerNorm_0/kernel")


def test_new_head_when_num_classes_differs(tiny_checkpoint):
    path, params = tiny_checkpoint
    model = load_official_checkpoint(path, variant=TINY, num_classes=3)
    kernel, bias = model.get_layer("head").get_weights()
    assert kernel.shape == (16, 3) and not kernel.any() and not bias.any()
    features = load_official_checkpoint(path, variant=TINY, include_top=False)
    headless = {k: v for k, v in params.items() if not k.startswith("head/")}
    assert_matches_reference(features, headless, random_images(2, 16))


def test_higher_resolution_keeps_logits_of_patch_replicated_image(tiny_checkpoint):
    """Paper, Appendix C: block-diagonal token mixing. An image whose patches are each repeated
    (2 x 3) times has, chunk by chunk, the checkpoint's patch sequence, so the logits must equal
    those of the original image at the checkpoint's resolution."""
    path, params = tiny_checkpoint
    model = load_official_checkpoint(path, variant=TINY, image_size=(32, 48))
    assert model.tokens_mlp_dim == TINY["tokens_mlp_dim"] * 6 and model.num_patches == 96
    images = random_images(2, 16)
    patches = images.reshape(2, 4, 4, 4, 4, 3)
    replicated = np.repeat(np.repeat(patches, 2, axis=1), 3, axis=3).reshape(2, 32, 48, 3)
    assert_close_to_reference(model(replicated), mixer_forward(params, (images - 127.5) / 127.5))


def test_resolution_that_is_not_a_multiple_is_a_clear_error(tiny_checkpoint):
    with pytest.raises(CheckpointError, match=r"trained at \(16, 16\) to image_size \(24, 24\)"):
        load_official_checkpoint(tiny_checkpoint[0], variant=TINY, image_size=24)


def test_missing_file(tmp_path):
    with pytest.raises(CheckpointError, match="does not exist"):
        load_official_checkpoint(os.fspath(tmp_path / "nope.npz"))


def test_not_an_npz(tmp_path):
    path = tmp_path / "model.h5"
    path.write_bytes(b"\x89HDF\r\n\x1a\n" + b"0" * 100)
    with pytest.raises(CheckpointError, match="is not an .npz archive"):
        load_official_checkpoint(os.fspath(path))


def test_pickle_inside_is_refused(tmp_path, tiny_checkpoint):
    _, params = tiny_checkpoint
    params = dict(params, **{"stem/bias": np.array([{"evil": 1}], dtype=object)})
    with pytest.raises(CheckpointError, match=r"'stem/bias' holds pickled Python objects"):
        load_official_checkpoint(write_checkpoint(tmp_path, params, "pickled.npz"))


def test_missing_and_unexpected_keys_are_named(tmp_path, tiny_checkpoint):
    _, params = tiny_checkpoint
    broken = {k: v for k, v in params.items() if k != "MixerBlock_1/LayerNorm_1/scale"}
    broken["MixerBlock_1/extra/kernel"] = np.zeros(3, "float32")
    with pytest.raises(CheckpointError) as error:
        load_official_checkpoint(write_checkpoint(tmp_path, broken, "broken.npz"), variant=TINY)
    assert "missing keys ['MixerBlock_1/LayerNorm_1/scale']" in str(error.value)
    assert "unexpected keys ['MixerBlock_1/extra/kernel']" in str(error.value)


def test_wrong_shape_is_named_with_expected_and_found(tmp_path, tiny_checkpoint):
    _, params = tiny_checkpoint
    params = dict(params, **{"MixerBlock_1/channel_mixing/Dense_1/bias": np.zeros(15, "float32")})
    with pytest.raises(CheckpointError, match=re.escape("'MixerBlock_1/channel_mixing/Dense_1/bias' has shape (15,), expected (16,)")):
        load_official_checkpoint(write_checkpoint(tmp_path, params, "shape.npz"), variant=TINY)


def test_shape_that_fits_no_variant(tiny_checkpoint):
    with pytest.raises(CheckpointError, match=r"fits no Mixer variant.*hidden_dim': 16"):
        load_official_checkpoint(tiny_checkpoint[0])


def test_named_variant_that_does_not_match(tiny_checkpoint):
    with pytest.raises(CheckpointError, match="does not hold variant 'B/16': patch_size expected 16, found 4"):
        load_official_checkpoint(tiny_checkpoint[0], variant="B/16")


def test_not_a_mixer_checkpoint(tmp_path):
    path = write_checkpoint(tmp_path, {"conv1/kernel": np.zeros((3, 3, 3, 8), "float32")}, "resnet.npz")
    with pytest.raises(CheckpointError, match="has no 'stem/kernel'"):
        load_official_checkpoint(path)


def test_directory_is_named_as_a_directory(tmp_path):
    with pytest.raises(CheckpointError, match="is a directory, not an .npz file"):
        load_official_checkpoint(os.fspath(tmp_path))


@pytest.mark.parametrize("value", [np.nan, np.inf])
def test_non_finite_values_are_counted_and_named(tmp_path, tiny_checkpoint, value):
    _, params = tiny_checkpoint
    scale = params["MixerBlock_1/LayerNorm_0/scale"].copy()
    scale[[2, 5]] = value
    path = write_checkpoint(tmp_path, {**params, "MixerBlock_1/LayerNorm_0/scale": scale}, "nan.npz")
    message = r"'MixerBlock_1/LayerNorm_0/scale' has 2 non-finite values .* damaged.*Download it again"
    with pytest.raises(CheckpointError, match=message):
        load_official_checkpoint(path, variant=TINY)


@pytest.mark.parametrize(
    "array",
    [np.arange(16), np.ones(16, bool), np.array(["x"] * 16), np.array([b"x"] * 16)],
    ids=lambda array: str(array.dtype),
)
def test_non_float_array_is_named_with_its_dtype(tmp_path, tiny_checkpoint, array):
    _, params = tiny_checkpoint
    path = write_checkpoint(tmp_path, {**params, "stem/bias": array}, "dtype.npz")
    message = re.escape(f"'stem/bias' has dtype {array.dtype}, not floating point")
    with pytest.raises(CheckpointError, match=message):
        load_official_checkpoint(path, variant=TINY)


@pytest.mark.parametrize("damage", ["flipped byte", "flipped dtype", "truncated"])
def test_corrupt_archive_says_download_again(tmp_path, damage):
    # A 1000-class head is a member larger than zipfile's 4 KiB read-ahead, so its CRC is
    # checked only once it is read to its end.
    rng = np.random.default_rng(0)
    params = random_official_params(rng, **TINY, num_patches=16, num_classes=1000)
    path = write_checkpoint(tmp_path, params)
    data = bytearray(open(path, "rb").read())
    # np.savez stores members uncompressed: the array bytes and .npy headers are in the file.
    if damage == "flipped byte":
        data[data.find(params["head/kernel"].tobytes()) + 100] ^= 0xFF
    elif damage == "flipped dtype":  # '<f4' becomes '<i4': corruption, not a wrong dtype
        header = data.find(b"'descr': '<f4'", data.find(b"head/kernel.npy"))
        data[header + len(b"'descr': '<")] = ord("i")
    else:
        del data[len(data) // 2 :]
    open(path, "wb").write(data)
    if damage != "truncated":
        with zipfile.ZipFile(path) as archive:
            assert archive.testzip() is not None  # a member fails its CRC
    with pytest.raises(CheckpointError, match="is corrupt.*Download it again"):
        load_official_checkpoint(path, variant=TINY)


def test_other_zip_is_not_an_npz(tmp_path):
    path = os.fspath(tmp_path / "model.keras")  # .keras files are zips too
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("config.json", "{}")
    with pytest.raises(CheckpointError, match="holds 'config.json', which is not a .npy array"):
        load_official_checkpoint(path)


@pytest.mark.parametrize("num_classes", [0, -1, 2.0, True])
def test_num_classes_must_be_a_positive_int_before_reading(tmp_path, num_classes):
    # The file does not exist: the argument is checked before anything is read.
    message = re.escape(f"num_classes must be a positive int or None; got {num_classes!r}")
    with pytest.raises(CheckpointError, match=message):
        load_official_checkpoint(os.fspath(tmp_path / "nope.npz"), num_classes=num_classes)
