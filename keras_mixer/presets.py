"""Presets: the officially released MLP-Mixer checkpoints by name, fetched once into a cache.

A built-in preset is a row of `PRESETS`: where its official `.npz` lies under
`gs://mixer_models/`, the architecture, resolution and head it holds, the label set its
head was trained on, and where the row came from. `keras_mixer.MlpMixer.from_preset(NAME)`
(or `load_official_checkpoint(NAME)`) fetches the file once into Keras's cache
(`$KERAS_HOME/models/mixer_models/...`, by default `~/.keras/...`), checks it against its
row, and builds the model.

Where the files come from:
- by default over https (storage.googleapis.com serves the public bucket), through
  `keras.utils.get_file`;
- with `KERAS_MIXER_PRESET_MIRROR` set, from that folder or bucket instead (any path
  `tf.io.gfile` opens: a local or shared folder, `gs://...`), which keeps the official
  relative layout (`$KERAS_MIXER_PRESET_MIRROR/imagenet21k/Mixer-B_16.npz`): the way for
  clusters without internet.
A fetch writes a hidden partial file that is renamed into the cache only once complete
(keras_mixer/storage.py), so a killed or failed download never lands in the cache. A file
that fails its check is deleted from the cache, and the error names where it came from: a
mirror's file is copied again as it is, so the error says to replace it with the official one.

A preset folder (a fine-tuned model to share, read by the same `from_preset`) is
keras_mixer/preset_folder.py.
"""

import dataclasses
import importlib.resources
import os

import keras

from keras_mixer import storage
from keras_mixer.variants import VARIANTS

OFFICIAL_BUCKET = "gs://mixer_models"
OFFICIAL_URL = "https://storage.googleapis.com/mixer_models"  # the same bucket, public over https
MIRROR_VARIABLE = "KERAS_MIXER_PRESET_MIRROR"


class PresetError(ValueError):
    """A preset that cannot be found, fetched or read; the message names it and the fix."""


# Mixer-S/8 is not in the Mixer paper's Table 1; GSAM (Zhuang et al., 2022, Table 1) trains
# the S width at patch 8. Its official file (78.79 MiB) holds 20,646,504 float32 values: S/16's
# widths with 8x8 patches, 784 tokens at 224 and a 1000-class head.
PRESET_VARIANTS = {**VARIANTS, "S/8": dict(VARIANTS["S/16"], patch_size=8)}

# The label sets of the official heads: ImageNet-1k (ILSVRC 2012), 1,000 classes in
# tensorflow-datasets' imagenet2012 order, the order the official models were trained in;
# ImageNet-21k (fall 2011 release), 21,843 WordNet synsets, whose list is not included
# (neither tensorflow-datasets nor Keras ships it), so those outputs are named by index.
IMAGENET_1K = "imagenet2012"
IMAGENET_21K = "imagenet21k"
# One "synset_id<TAB>name" line per class, in class-index order. The ids and their order are
# tensorflow-datasets 4.9.10's `datasets/imagenet2012/labels.txt` (the classes of tfds
# imagenet2012, which the official models were trained on); the names are those keras-hub
# 0.32.0 pairs with the same ids (`keras_hub/src/utils/imagenet/imagenet_utils.py`), which
# are Keras's `imagenet_class_index.json` names. Both are public data, Apache-2.0 packages.
LABELS_FILE = "imagenet2012_labels.txt"


@dataclasses.dataclass(frozen=True)
class Preset:
    """One officially released checkpoint: `file` is its path under gs://mixer_models/."""

    file: str
    variant: str
    image_size: int
    num_classes: int
    label_set: str
    source: str


# Paths and sizes: google-research/vision_transformer, `vit_jax.ipynb` at commit c6de1e5 (the
# output of `gsutil ls -lh gs://mixer_models/*`); what each file holds: its README.md, section
# "Available Mixer models" (at 0dfc05e), quoted in each row's `source`. Resolution and classes
# are those the file sizes give to the float32 parameter counts (e.g. imagenet21k B/16, 289.61
# MiB = 75,908,739 values: B/16 at 224 with a 21,843-class head; tests/test_presets.py checks
# every row), and every load checks them against the file's shapes. No official checksums are
# published.
_PRETRAINED = "README: Mixer-B/16 and Mixer-L/16 pre-trained on ImageNet and ImageNet-21k"
_SAM = "README, update 2021-07-02: trained with SAM on ImageNet (.../sam)"
_GSAM = "README, update 2022-06-09: trained from scratch with GSAM on ImageNet (.../gsam)"
PRESETS = {
    "mixer_b16_imagenet21k": Preset("imagenet21k/Mixer-B_16.npz", "B/16", 224, 21843, IMAGENET_21K, _PRETRAINED),
    "mixer_l16_imagenet21k": Preset("imagenet21k/Mixer-L_16.npz", "L/16", 224, 21843, IMAGENET_21K, _PRETRAINED),
    "mixer_b16_imagenet1k": Preset("imagenet1k/Mixer-B_16.npz", "B/16", 224, 1000, IMAGENET_1K, _PRETRAINED),
    "mixer_l16_imagenet1k": Preset("imagenet1k/Mixer-L_16.npz", "L/16", 224, 1000, IMAGENET_1K, _PRETRAINED),
    "mixer_b16_sam_imagenet1k": Preset("sam/Mixer-B_16.npz", "B/16", 224, 1000, IMAGENET_1K, _SAM),
    "mixer_b32_sam_imagenet1k": Preset("sam/Mixer-B_32.npz", "B/32", 224, 1000, IMAGENET_1K, _SAM),
    "mixer_s8_gsam_imagenet1k": Preset("gsam/Mixer-S_8.npz", "S/8", 224, 1000, IMAGENET_1K, _GSAM),
    "mixer_s16_gsam_imagenet1k": Preset("gsam/Mixer-S_16.npz", "S/16", 224, 1000, IMAGENET_1K, _GSAM),
    "mixer_s32_gsam_imagenet1k": Preset("gsam/Mixer-S_32.npz", "S/32", 224, 1000, IMAGENET_1K, _GSAM),
    "mixer_b16_gsam_imagenet1k": Preset("gsam/Mixer-B_16.npz", "B/16", 224, 1000, IMAGENET_1K, _GSAM),
    "mixer_b32_gsam_imagenet1k": Preset("gsam/Mixer-B_32.npz", "B/32", 224, 1000, IMAGENET_1K, _GSAM),
}


def find_preset(name_or_path):
    """The row of a built-in preset name, or None for a path (a file or a folder).

    A string that names no preset and looks like no path (no separator, no `.npz`, nothing
    there) is taken for a mistyped name: PresetError lists the known ones.

    Example:
    >>> find_preset("mixer_b16_imagenet21k").file
    'imagenet21k/Mixer-B_16.npz'
    """
    name = os.fspath(name_or_path)
    if name in PRESETS:
        return PRESETS[name]
    looks_like_a_path = "/" in name or os.sep in name or name.endswith(".npz")
    if not looks_like_a_path and not os.path.exists(name):
        raise PresetError(
            f"Unknown preset {name!r}. Known presets: {', '.join(PRESETS)}; or pass the path "
            "of an official .npz or of a folder written by model.save_to_preset(DIR)."
        )
    return None


def architecture(preset):
    """The five MlpMixer architecture arguments of a preset row."""
    return dict(PRESET_VARIANTS[preset.variant])


def class_names(preset):
    """The names of a preset's outputs in class-index order, or None where not included."""
    if preset.label_set != IMAGENET_1K:
        return None
    text = importlib.resources.files("keras_mixer").joinpath(LABELS_FILE).read_text()
    return [line.split("\t")[1] for line in text.splitlines()]


def cache_path(preset):
    """Where a preset's file lies in Keras's cache (the default cache_dir of get_file)."""
    root = os.path.expanduser(os.environ.get("KERAS_HOME") or os.path.join("~", ".keras"))
    return os.path.join(root, "models", "mixer_models", *preset.file.split("/"))


def origin(preset):
    """Where a preset's file is fetched from: its path in the mirror when
    KERAS_MIXER_PRESET_MIRROR is set, else its official URL."""
    mirror = os.environ.get(MIRROR_VARIABLE)
    if mirror:
        return storage.join(mirror, *preset.file.split("/"))
    return f"{OFFICIAL_URL}/{preset.file}"


def checkpoint_file(name):
    """`(path, fetched_from)`: the local path of the official `.npz` of preset `name`,
    fetched into the cache once, and where this call fetched it from (`origin`), or None
    when the cache held it already.

    Raises PresetError, in one line, naming the location it could not read and where the
    file can be put by hand.
    """
    preset = PRESETS[name]
    target = cache_path(preset)
    if os.path.isfile(target):
        return target, None
    mirror = os.environ.get(MIRROR_VARIABLE)
    official = f"{OFFICIAL_BUCKET}/{preset.file}"
    source = origin(preset)
    if mirror:
        if not storage.exists(source):
            raise PresetError(
                f"Preset {name!r}: {source!r} does not exist. {MIRROR_VARIABLE}={mirror!r} must "
                f"hold the official layout: copy {official} there, or unset {MIRROR_VARIABLE} to "
                f"download {OFFICIAL_URL}/{preset.file}."
            )
        try:
            storage.copy_file(source, target)
        except Exception as error:  # tf.errors.* from the mirror's file system
            raise PresetError(
                f"Preset {name!r}: cannot copy {source!r} into the cache "
                f"({' '.join(str(error).split())[:200]}): check {MIRROR_VARIABLE}={mirror!r}."
            ) from None
        return target, source
    try:
        with storage.staged_file(target) as partial:
            keras.utils.get_file(
                os.path.basename(partial), source, cache_dir=os.path.dirname(partial),
                cache_subdir="",
            )
    except Exception as error:  # get_file raises a bare Exception from urllib's URLError
        reason = " ".join(str(getattr(error.__context__, "reason", None) or error).split())[:200]
        raise PresetError(
            f"Cannot download preset {name!r} from {source} ({reason}). Offline, put the file "
            f"there by hand: {target} (a copy of {official}), or set {MIRROR_VARIABLE} to a "
            "folder or bucket holding gs://mixer_models' layout."
        ) from None
    return target, source


def replace_advice(name, fetched_from):
    """What to do about preset `name`'s file, fetched from `fetched_from` (checkpoint_file's;
    None: found in the cache), once its check has failed and its cached copy is deleted.

    A mirror's file is copied again as it is on the next load, so it must be replaced; a
    download or a file found in the cache may just have been damaged on the way.
    """
    preset = PRESETS[name]
    url = f"{OFFICIAL_URL}/{preset.file}"
    official = f"{OFFICIAL_BUCKET}/{preset.file} ({url})"
    if fetched_from is None:
        return (
            f"It was deleted from the cache: load the preset again to fetch it again from "
            f"{origin(preset)}."
        )
    if fetched_from == url:
        return (
            f"The download was deleted from the cache: load the preset again to download it "
            f"again, or put a copy of {official} by hand at {cache_path(preset)}."
        )
    return (
        f"Replace that file in {MIRROR_VARIABLE} with a copy of the official {official}, then "
        "load the preset again (its copy in the cache was deleted)."
    )
