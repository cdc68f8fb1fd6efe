"""Presets: the official table, fetched once (offline: from a mirror), labels, preset folders.

Nothing here downloads: every test runs with Keras's cache in tmp_path, the mirror variable
on a local folder of random official-layout files, and the official URL on a closed
loopback port, so a test that reached for the network would fail instead.
"""

import importlib.util
import json
import os
import pathlib
import re

import keras
import numpy as np
import pytest
import tensorflow as tf
from helpers import IN_PROCESS, TINY, program, run_bounded
from reference import mixer_forward, random_official_params

from keras_mixer import MlpMixer, PresetError, load_official_checkpoint, presets
from keras_mixer.checkpoint import CheckpointError

MiB = 1 << 20
# `gsutil ls -lh gs://mixer_models/*` as google-research/vision_transformer's vit_jax.ipynb
# prints it (commit c6de1e5): every released Mixer file, with its size in MiB.
BUCKET_LISTING = {
    "gsam/Mixer-B_16.npz": 228.47, "gsam/Mixer-B_32.npz": 230.04, "gsam/Mixer-S_16.npz": 70.71,
    "gsam/Mixer-S_32.npz": 72.91, "gsam/Mixer-S_8.npz": 78.79,
    "imagenet1k/Mixer-B_16.npz": 228.47, "imagenet1k/Mixer-L_16.npz": 794.29,
    "imagenet21k/Mixer-B_16.npz": 289.61, "imagenet21k/Mixer-L_16.npz": 875.78,
    "sam/Mixer-B_16.npz": 228.47, "sam/Mixer-B_32.npz": 230.04,
}
# Tiny stand-ins for real rows, at 8x8 (2x2 patches of 4): same label sets, tiny files.
TINY_ROWS = {
    "tiny_imagenet1k": presets.Preset(
        "imagenet1k/Mixer-T_4.npz", "T/4", 8, 1000, presets.IMAGENET_1K, "test"),
    "tiny_imagenet21k": presets.Preset(
        "imagenet21k/Mixer-T_4.npz", "T/4", 8, 21843, presets.IMAGENET_21K, "test"),
}
TOLERANCE = 1e-5  # float32 Keras against the float64 reference, relative to the logit scale


@pytest.fixture(autouse=True)
def offline(tmp_path, monkeypatch):
    """Keras's cache and the mirror in tmp_path, the official URL on a closed port, and the
    tiny rows in the table: `(cache root, mirror)`."""
    home, mirror = tmp_path / "keras_home", tmp_path / "mirror"
    mirror.mkdir()
    monkeypatch.setenv("KERAS_HOME", str(home))
    monkeypatch.setenv(presets.MIRROR_VARIABLE, str(mirror))
    monkeypatch.setattr(presets, "OFFICIAL_URL", "http://127.0.0.1:9/mixer_models")
    monkeypatch.setitem(presets.PRESET_VARIANTS, "T/4", dict(TINY))
    for name, row in TINY_ROWS.items():
        monkeypatch.setitem(presets.PRESETS, name, row)
    return home / "models" / "mixer_models", mirror


def write_official(root, name, seed=0, num_classes=None):
    """A random official-layout .npz for preset `name` under `root` (its official layout)."""
    row = presets.PRESETS[name]
    params = random_official_params(
        np.random.default_rng(seed), **TINY, num_patches=(row.image_size // 4) ** 2,
        num_classes=row.num_classes if num_classes is None else num_classes,
    )
    path = os.path.join(root, *row.file.split("/"))
    os.makedirs(os.path.dirname(path), exist_ok=True)
    np.savez(path, **params)
    return path, params


def raw_images(batch, size=8, seed=1):
    return np.random.default_rng(seed).uniform(0, 255, (batch, size, size, 3)).astype("float32")


def assert_matches_reference(model, params, images):
    expected = mixer_forward(params, (images - 127.5) / 127.5)
    assert np.abs(np.asarray(model(images)) - expected).max() <= TOLERANCE * max(1, np.abs(expected).max())


def official_parameter_count(patch_size, hidden_dim, num_blocks, tokens_mlp_dim, channels_mlp_dim,
                             num_patches, num_classes):
    """Parameters of a Mixer from the paper's shapes (stem, blocks, norm, head), in arithmetic."""
    token_mixing = 2 * num_patches * tokens_mlp_dim + tokens_mlp_dim + num_patches
    channel_mixing = 2 * hidden_dim * channels_mlp_dim + channels_mlp_dim + hidden_dim
    block = 4 * hidden_dim + token_mixing + channel_mixing
    stem = patch_size * patch_size * 3 * hidden_dim + hidden_dim
    return stem + num_blocks * block + 2 * hidden_dim + hidden_dim * num_classes + num_classes


# ---------------------------------------------------------------------------------------------
# The table against the official bucket.


def test_every_released_file_is_one_preset_whose_row_matches_its_size():
    official = {name: row for name, row in presets.PRESETS.items() if name not in TINY_ROWS}
    assert sorted(row.file for row in official.values()) == sorted(BUCKET_LISTING)
    assert MlpMixer.presets is presets.PRESETS
    for name, row in official.items():
        # The file name spells the variant: Mixer-B_16.npz holds B/16.
        assert row.file.split("/")[1] == f"Mixer-{row.variant.replace('/', '_')}.npz", name
        assert row.num_classes == {presets.IMAGENET_1K: 1000, presets.IMAGENET_21K: 21843}[row.label_set]
        # float32 values plus the .npy headers (well under 0.1 MiB) make the listed size.
        architecture = presets.architecture(row)
        count = official_parameter_count(
            **architecture, num_patches=(row.image_size // architecture["patch_size"]) ** 2,
            num_classes=row.num_classes,
        )
        assert 0 <= BUCKET_LISTING[row.file] - 4 * count / MiB < 0.1, name


def test_imagenet_1k_names_ship_in_tfds_order():
    package = pathlib.Path(importlib.util.find_spec("keras_mixer").submodule_search_locations[0])
    lines = (package / "imagenet2012_labels.txt").read_text().splitlines()
    ids, names = zip(*(line.split("\t") for line in lines))
    assert len(names) == 1000
    assert (names[0], names[1], names[999]) == ("tench", "goldfish", "toilet_tissue")
    # The class order of tfds imagenet2012, read from tensorflow-datasets' own package.
    tfds = pathlib.Path(importlib.util.find_spec("tensorflow_datasets").submodule_search_locations[0])
    assert list(ids) == (tfds / "datasets" / "imagenet2012" / "labels.txt").read_text().split()
    assert presets.class_names(presets.PRESETS["mixer_b16_imagenet1k"]) == list(names)
    assert presets.class_names(presets.PRESETS["mixer_b16_imagenet21k"]) is None


# ---------------------------------------------------------------------------------------------
# Built-in presets, fetched once.


def test_from_preset_equals_the_checkpoint_and_the_reference(offline):
    cache, mirror = offline
    mirror_file, params = write_official(mirror, "tiny_imagenet1k")
    model = MlpMixer.from_preset("tiny_imagenet1k")
    images = raw_images(3)
    np.testing.assert_array_equal(model(images), load_official_checkpoint("tiny_imagenet1k")(images))
    assert_matches_reference(model, params, images)
    assert model.class_names[:2] == ["tench", "goldfish"] and len(model.class_names) == 1000
    cached = cache / "imagenet1k" / "Mixer-T_4.npz"
    assert cached.read_bytes() == pathlib.Path(mirror_file).read_bytes()
    os.remove(mirror_file)  # fetched once: the cache serves it from now on
    np.testing.assert_array_equal(MlpMixer.from_preset("tiny_imagenet1k")(images), model(images))


def test_new_head_resolution_and_features(offline):
    _, params = write_official(offline[1], "tiny_imagenet1k")
    model = MlpMixer.from_preset("tiny_imagenet1k", num_classes=3, image_size=16)
    kernel, bias = model.get_layer("head").get_weights()
    assert model.output_shape == (None, 3) and not kernel.any() and not bias.any()
    assert model.class_names is None and model.num_patches == 16
    features = MlpMixer.from_preset("tiny_imagenet1k", include_top=False)
    assert features.class_names is None
    headless = {k: v for k, v in params.items() if not k.startswith("head/")}
    assert_matches_reference(features, headless, raw_images(2))


def test_imagenet_21k_preset_names_no_classes(offline):
    write_official(offline[1], "tiny_imagenet21k")
    model = MlpMixer.from_preset("tiny_imagenet21k")
    assert model.num_classes == 21843 and model.class_names is None


def test_a_remote_mirror_works_as_a_folder_does(offline, monkeypatch):
    # TensorFlow's in-memory filesystem stands in for gs:// (one process only).
    local, params = write_official(offline[1], "tiny_imagenet1k")
    tf.io.gfile.makedirs("ram://mirror/imagenet1k")
    tf.io.gfile.copy(local, "ram://mirror/imagenet1k/Mixer-T_4.npz", overwrite=True)
    os.remove(local)
    monkeypatch.setenv(presets.MIRROR_VARIABLE, "ram://mirror")
    assert_matches_reference(MlpMixer.from_preset("tiny_imagenet1k"), params, raw_images(2))


@pytest.mark.parametrize("load", [MlpMixer.from_preset, load_official_checkpoint])
def test_unknown_name_lists_the_known_presets(load):
    with pytest.raises(PresetError, match="Unknown preset 'mixer_b16'. Known presets: ") as error:
        load("mixer_b16")
    assert all(name in str(error.value) for name in presets.PRESETS)


# ---------------------------------------------------------------------------------------------
# Offline, air-gapped, and bad files: one line that names the thing and the fix.


def test_no_network_names_the_url_and_where_to_put_the_file(offline, monkeypatch):
    cache, _ = offline
    monkeypatch.delenv(presets.MIRROR_VARIABLE)
    with pytest.raises(PresetError) as error:
        MlpMixer.from_preset("mixer_b16_imagenet21k")
    message = str(error.value)
    assert "\n" not in message
    assert "http://127.0.0.1:9/mixer_models/imagenet21k/Mixer-B_16.npz" in message
    assert f"by hand: {cache / 'imagenet21k' / 'Mixer-B_16.npz'}" in message
    assert presets.MIRROR_VARIABLE in message
    assert [files for _, _, files in os.walk(cache)] == [[], []]  # no file, no partial


def test_a_download_that_breaks_off_never_lands_in_the_cache(offline, monkeypatch):
    cache, _ = offline
    monkeypatch.delenv(presets.MIRROR_VARIABLE)

    def broken_get_file(fname, origin, cache_dir, cache_subdir):
        with open(os.path.join(cache_dir, cache_subdir, fname), "wb") as file:
            file.write(b"PK\x03\x04 the first bytes")
        # get_file's own kind of error for a broken download
        raise Exception(f"URL fetch failure on {origin}: None -- connection reset")  # noqa: TRY002

    monkeypatch.setattr(keras.utils, "get_file", broken_get_file)
    with pytest.raises(PresetError, match="connection reset"):
        MlpMixer.from_preset("tiny_imagenet1k")
    assert [files for _, _, files in os.walk(cache)] == [[], []]


def test_mirror_without_the_file_names_both_paths(offline):
    _, mirror = offline
    expected = f"{os.path.join(mirror, 'imagenet1k', 'Mixer-L_16.npz')!r} does not exist"
    with pytest.raises(PresetError, match="copy gs://mixer_models/imagenet1k/Mixer-L_16.npz there") as error:
        MlpMixer.from_preset("mixer_l16_imagenet1k")
    assert expected in str(error.value)


def test_a_mirror_entry_that_cannot_be_copied_is_named(offline):
    cache, mirror = offline
    (mirror / "imagenet1k" / "Mixer-T_4.npz").mkdir(parents=True)  # a folder, not the file
    with pytest.raises(PresetError, match="cannot copy .*Mixer-T_4.npz' into the cache"):
        MlpMixer.from_preset("tiny_imagenet1k")
    assert [files for _, _, files in os.walk(cache)] == [[], []]


def damage_file(path, damage):
    """Spoils the official-layout file at `path` as `damage` says: "truncated" (its second
    half lost), "garbage" (not an archive at all) or "another head" (7 classes, the row's
    shapes otherwise)."""
    if damage == "another head":
        np.savez(path, **random_official_params(
            np.random.default_rng(2), **TINY, num_patches=4, num_classes=7))
    elif damage == "truncated":
        with open(path, "r+b") as file:
            file.truncate(os.path.getsize(path) // 2)
    else:
        pathlib.Path(path).write_bytes(b"<html>Sign in to continue</html>")


# What the message says of each damage, after the file's name.
DAMAGE = {"truncated": "is corrupt", "garbage": r"is not an \.npz archive",
          "another head": "is not preset 'tiny_imagenet1k': its shapes give .* and 7 classes"}


@pytest.mark.parametrize("damage", ["truncated", "another head"])
def test_a_bad_cached_file_is_deleted_and_fetched_again(offline, damage):
    cache, mirror = offline
    mirror_file, params = write_official(mirror, "tiny_imagenet1k")
    cached, _ = write_official(cache, "tiny_imagenet1k")
    damage_file(cached, damage)
    with pytest.raises(CheckpointError) as error:
        MlpMixer.from_preset("tiny_imagenet1k")
    assert re.match(re.escape(f"Preset 'tiny_imagenet1k': {cached!r} ") + DAMAGE[damage],
                    str(error.value))
    assert str(error.value).endswith(
        "It was deleted from the cache: load the preset again to fetch it again from "
        f"{mirror_file}.")
    assert not os.path.exists(cached)
    assert_matches_reference(MlpMixer.from_preset("tiny_imagenet1k"), params, raw_images(2))


@pytest.mark.parametrize("damage", ["truncated", "garbage", "another head"])
def test_a_bad_file_in_the_mirror_is_named_with_the_official_file_to_put_there(offline, damage):
    # Loading again copies the mirror's file again: the message names that file, not its
    # deleted copy in the cache, and the official file that replaces it.
    cache, mirror = offline
    mirror_file, _ = write_official(mirror, "tiny_imagenet1k")
    damage_file(mirror_file, damage)
    for _ in range(2):
        with pytest.raises(CheckpointError) as error:
            MlpMixer.from_preset("tiny_imagenet1k")
        message = str(error.value)
        assert re.match(re.escape(f"Preset 'tiny_imagenet1k': {mirror_file!r} ") + DAMAGE[damage],
                        message)
        assert message.endswith(
            f"Replace that file in {presets.MIRROR_VARIABLE} with a copy of the official "
            "gs://mixer_models/imagenet1k/Mixer-T_4.npz "
            "(http://127.0.0.1:9/mixer_models/imagenet1k/Mixer-T_4.npz), then load the preset "
            "again (its copy in the cache was deleted).")
        assert "\n" not in message and "Mixer-B_16" not in message and str(cache) not in message
        assert [files for _, _, files in os.walk(cache)] == [[], []]
    _, params = write_official(mirror, "tiny_imagenet1k")  # what the message says to do
    assert_matches_reference(MlpMixer.from_preset("tiny_imagenet1k"), params, raw_images(2))


def test_a_bad_download_is_deleted_with_the_official_file_named(offline, monkeypatch):
    cache, _ = offline
    monkeypatch.delenv(presets.MIRROR_VARIABLE)

    def captive_portal(fname, origin, cache_dir, cache_subdir):  # a page instead of the file
        pathlib.Path(cache_dir, cache_subdir, fname).write_bytes(b"<html>Sign in</html>")

    monkeypatch.setattr(keras.utils, "get_file", captive_portal)
    url = "http://127.0.0.1:9/mixer_models/imagenet1k/Mixer-T_4.npz"
    with pytest.raises(CheckpointError) as error:
        MlpMixer.from_preset("tiny_imagenet1k")
    assert str(error.value) == (
        f"Preset 'tiny_imagenet1k': {url!r} is not an .npz archive (a zip of .npy arrays). The "
        "download was deleted from the cache: load the preset again to download it again, or "
        f"put a copy of gs://mixer_models/imagenet1k/Mixer-T_4.npz ({url}) by hand at "
        f"{cache / 'imagenet1k' / 'Mixer-T_4.npz'}.")
    assert [files for _, _, files in os.walk(cache)] == [[], []]


# ---------------------------------------------------------------------------------------------
# Preset folders: fine-tuned models travel as presets.


def test_preset_folder_round_trip_on_a_remote_filesystem(offline):
    write_official(offline[1], "tiny_imagenet1k")
    model = MlpMixer.from_preset("tiny_imagenet1k")
    folder = "ram://shared/tiny_presets/imagenet"
    model.save_to_preset(folder)
    assert sorted(tf.io.gfile.listdir(folder)) == ["metadata.json", "model.keras"]
    metadata = json.loads(tf.io.gfile.GFile(f"{folder}/metadata.json").read())
    assert metadata["class_names"][:2] == ["tench", "goldfish"]
    assert metadata["parameter_count"] == model.count_params()
    back = MlpMixer.from_preset(folder)
    images = raw_images(2)
    np.testing.assert_array_equal(back(images), model(images))
    assert back.class_names == model.class_names
    # Another resolution: the same adaptation as the official file's.
    np.testing.assert_allclose(
        MlpMixer.from_preset(folder, image_size=16)(raw_images(2, 16)),
        load_official_checkpoint("tiny_imagenet1k", image_size=16)(raw_images(2, 16)), atol=1e-6,
    )
    new_head = MlpMixer.from_preset(folder, num_classes=4)
    assert new_head.output_shape == (None, 4) and new_head.class_names is None
    assert not new_head.get_layer("head").get_weights()[0].any()


def test_preset_folder_of_a_non_square_model_takes_a_new_head(tmp_path):
    model = MlpMixer(**TINY, num_classes=3, image_size=(8, 12), num_channels=1)
    model.save_to_preset(tmp_path, class_names=["a", "b", "c"])
    features = MlpMixer(**{**model.mixer_config(), "include_top": False})
    features.set_weights(model.get_weights()[:-2])
    new_head = MlpMixer.from_preset(tmp_path, num_classes=5)
    assert new_head.image_size == (8, 12) and new_head.num_channels == 1
    assert new_head.output_shape == (None, 5) and new_head.class_names is None
    images = np.random.default_rng(0).uniform(0, 255, (2, 8, 12, 1)).astype("float32")
    no_head = MlpMixer.from_preset(tmp_path, include_top=False)
    np.testing.assert_allclose(no_head(images), features(images), atol=1e-6)


@pytest.mark.parametrize("missing", ["model.keras", "metadata.json"])
def test_preset_folder_without_a_file_names_it(tmp_path, missing):
    folder = tmp_path / "preset"
    MlpMixer(**TINY, num_classes=3, image_size=8).save_to_preset(folder, class_names=["a", "b", "c"])
    (folder / missing).unlink()
    with pytest.raises(PresetError, match=f"has no {missing} .*save_to_preset"):
        MlpMixer.from_preset(folder)


def test_preset_folder_of_another_model_says_what_it_holds(tmp_path):
    keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)]).save(tmp_path / "model.keras")
    (tmp_path / "metadata.json").write_text('{"class_names": null}')
    with pytest.raises(PresetError, match="holds a Sequential, not a keras_mixer.MlpMixer"):
        MlpMixer.from_preset(tmp_path)


def test_preset_folder_holding_code_is_refused_in_one_whole_message(tmp_path):
    inputs = keras.Input((2,))
    keras.Model(inputs, keras.layers.Lambda(lambda x: 2 * x)(inputs)).save(tmp_path / "model.keras")
    (tmp_path / "metadata.json").write_text('{"class_names": null}')
    with pytest.raises(ValueError) as refusal:  # Keras's safe mode, which from_preset keeps
        keras.saving.load_model(tmp_path / "model.keras")
    keras_first_sentence = " ".join(str(refusal.value).split()).split(". ")[0] + "."
    with pytest.raises(PresetError) as error:
        MlpMixer.from_preset(tmp_path)
    assert str(error.value) == (
        f"{str(tmp_path / 'model.keras')!r} holds Python code, which Keras's safe mode does not "
        f"load as it could run anything (Keras: {keras_first_sentence}); an MlpMixer holds none, "
        "so this is not a Mixer's file. Expected the model.keras of a keras_mixer.MlpMixer, as "
        "model.save_to_preset(DIR) writes it; write the preset again.")
    assert "`Lambda` layer" in keras_first_sentence


def test_class_names_must_name_every_output(tmp_path):
    with pytest.raises(ValueError, match="2 class names for a model with 3 classes"):
        MlpMixer(**TINY, num_classes=3, image_size=8).save_to_preset(tmp_path, ["a", "b"])


def test_export_names_the_outputs_of_a_model_from_a_1k_preset(offline, tmp_path):
    from export import classify
    from export.pipeline import convert

    write_official(offline[1], "tiny_imagenet1k")
    folder = tmp_path / "preset"
    model = MlpMixer.from_preset("tiny_imagenet1k")
    model.save_to_preset(folder)
    images = raw_images(8)
    out = tmp_path / "export"
    convert(str(folder), str(out), ["fp32"], eval_data=(images, np.zeros(8, int)), latency_runs=1)
    assert (out / "labels.txt").read_text().splitlines() == model.class_names
    png = tmp_path / "image.png"
    keras.utils.save_img(png, images[0])
    top = classify.predict(str(out / "fp32.tflite"), [str(png)], top=1)[0][0]
    assert top[0] == model.class_names[int(np.argmax(model(images[:1])))]


# ---------------------------------------------------------------------------------------------
# Training: --init NAME, and the run directory is a preset folder.


def test_config_init_names_the_variant_its_preset_needs():
    from training import config as config_lib
    from training.errors import ConfigError

    with pytest.raises(ConfigError, match="is a Mixer-B/16 preset .* set --variant B/16"):
        config_lib.check({"init": "mixer_b16_imagenet21k"})
    with pytest.raises(ConfigError, match="set --set variant=null --set model='.*\"patch_size\": 8"):
        config_lib.check({"init": "mixer_s8_gsam_imagenet1k"})
    assert config_lib.check({"init": "mixer_b16_imagenet21k", "variant": "B/16"})["init"]


def test_train_command_says_in_one_line_that_a_preset_is_unknown(data_dir, tmp_path, capsys):
    from training import train

    run_dir = tmp_path / "run"
    argv = ["--init", "mixer_b16", "--data-dir", data_dir, "--run-dir", str(run_dir), "--no-export",
            *IN_PROCESS]
    assert train.main(argv) == 2
    error = capsys.readouterr().err
    assert error.startswith("error: Unknown preset 'mixer_b16'. Known presets: mixer_b16_imagenet21k")
    assert error.count("\n") == 1 and not run_dir.exists()


@pytest.mark.slow
def test_training_from_a_preset_writes_a_preset_folder(offline, data_dir, tmp_path):
    from helpers import digits_config

    from training import loop
    from training import run_dir as run_dir_lib

    _, params = write_official(offline[1], "tiny_imagenet1k")
    config = digits_config(
        data_dir, init="tiny_imagenet1k", num_channels=3, image_size=16, epochs=1,
        batch_size=256, validate_every_epoch=False, learning_rate=1e-4,
    )
    run_dir = loop.run(config, str(tmp_path / "run"), verbose=0)
    model = MlpMixer.from_preset(run_dir)
    assert model.class_names == run_dir_lib.read_class_names(run_dir)
    assert model.num_classes == 10 and model.image_size == (16, 16)
    stem = model.get_layer("stem").get_weights()[0]  # a few small steps from the preset's
    assert np.abs(stem - params["stem/kernel"]).max() < 0.01 < np.abs(params["stem/kernel"]).max()
    saved = keras.models.load_model(os.path.join(run_dir, "model.keras"))
    np.testing.assert_array_equal(model(raw_images(2, 16)), saved(raw_images(2, 16)))


@pytest.mark.slow
def test_a_local_preset_folder_needs_no_tensorflow(tmp_path):
    # Local paths go through Python's own file functions; only remote ones need tf.io.gfile.
    code, output = run_bounded(program("preset_without_tensorflow", tmp_path / "preset"))
    assert code == 0, output[-2000:]
    assert "preset written and read without TensorFlow" in output
