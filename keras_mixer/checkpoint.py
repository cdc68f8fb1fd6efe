"""Loads the officially released MLP-Mixer checkpoints (.npz) into `MlpMixer`.

The arrays are read by `keras_mixer.npz`, named by `keras_mixer.official_layout` and adapted
to another resolution by `keras_mixer.resolution`; here the architecture is read off their
shapes, checked against the variant asked for, and the model built.

Presets (keras_mixer/presets.py) name the released files and fetch them; `load_preset`
(`MlpMixer.from_preset`) builds a model from a preset's name, or from a preset folder
(keras_mixer/preset_folder.py), whose weights go through the same construction
(`official_params`, then `mixer_from_params`).
"""

import os
import re

import numpy as np

from keras_mixer import preset_folder, presets
from keras_mixer.mlp_mixer import MlpMixer, image_size_2d, patch_grid
from keras_mixer.npz import read_npz
from keras_mixer.official_layout import CheckpointError, keras_to_official, official_params
from keras_mixer.resolution import checkpoint_grid, expand_token_mixing, resolution_factors
from keras_mixer.variants import ARCHITECTURE_KEYS, VARIANTS, get_variant


def _required(params, key, path):
    if key not in params:
        raise CheckpointError(
            f"{path!r} has no {key!r}: it is not an official MLP-Mixer checkpoint "
            f"(found keys such as {sorted(params)[:5]})."
        )
    return params[key]


def infer_architecture(params, path="checkpoint"):
    """Reads the Mixer hyperparameters and checkpoint resolution off the array shapes.

    Returns `(hyperparameters, num_patches, num_classes)`; `num_classes` is None for a
    checkpoint without a head.

    Example:
    >>> hparams, num_patches, num_classes = infer_architecture(read_npz("Mixer-B_16.npz"))
    >>> hparams["hidden_dim"], num_patches, num_classes
    (768, 196, 21843)
    """
    stem = _required(params, "stem/kernel", path)
    token_dense = _required(params, "MixerBlock_0/token_mixing/Dense_0/kernel", path)
    channel_dense = _required(params, "MixerBlock_0/channel_mixing/Dense_0/kernel", path)
    blocks = {int(m.group(1)) for key in params if (m := re.match(r"MixerBlock_(\d+)/", key))}
    if stem.ndim != 4 or token_dense.ndim != 2 or channel_dense.ndim != 2:
        raise CheckpointError(
            f"{path!r}: 'stem/kernel' must be 4-D (p, p, 3, C) and the Dense kernels 2-D; found "
            f"{stem.shape}, {token_dense.shape}, {channel_dense.shape}."
        )
    hyperparameters = dict(
        patch_size=int(stem.shape[0]),
        hidden_dim=int(stem.shape[3]),
        num_blocks=max(blocks) + 1,
        tokens_mlp_dim=int(token_dense.shape[1]),
        channels_mlp_dim=int(channel_dense.shape[1]),
    )
    head = params.get("head/kernel")
    num_classes = int(head.shape[1]) if head is not None and head.ndim == 2 else None
    return hyperparameters, int(token_dense.shape[0]), num_classes


def _match_variant(hyperparameters, path):
    for name, row in VARIANTS.items():
        if row == hyperparameters:
            return name
    raise CheckpointError(
        f"{path!r} fits no Mixer variant: its shapes give {hyperparameters}, which is none of "
        f"{', '.join(VARIANTS)}. If it is a custom Mixer, pass those hyperparameters as "
        "variant=dict(...)."
    )


def load_official_checkpoint(path, variant=None, num_classes=None, image_size=None, include_top=True):
    """Builds an `MlpMixer` holding the weights of an official MLP-Mixer `.npz` checkpoint.

    Args:
        path: str. The `.npz` file (e.g. `Mixer-B_16.npz` from gs://mixer_models/), or the
            name of a built-in preset (`keras_mixer.PRESETS`, e.g. "mixer_b16_imagenet21k"),
            whose official file is fetched once into Keras's cache (keras_mixer/presets.py).
        variant: None, a name ("B/16") or a dict of hyperparameters. None reads the
            architecture off the file, which must then be one of `VARIANTS` (or, for a
            preset, its row's).
        num_classes: int >= 1 or None. None keeps the checkpoint's head. Any other size
            gets a fresh zero-initialised head (the official fine-tuning recipe). It is
            checked before the file is read, even with include_top=False.
        image_size: int, (height, width) or None. None uses the checkpoint's resolution.
            A whole multiple of it adapts the token-mixing MLPs (`expand_token_mixing`).
        include_top: bool. False returns the pooled features without a head.

    Returns:
        An `MlpMixer` that takes raw [0, 255] pixels (`include_rescaling=True`).

    Example:
    >>> model = keras_mixer.load_official_checkpoint("Mixer-B_16.npz", num_classes=10)
    >>> model = keras_mixer.load_official_checkpoint("mixer_b16_imagenet21k", image_size=448)
    """
    num_classes = _checked_num_classes(num_classes)
    path = os.fspath(path)
    preset = presets.find_preset(path)
    if preset is None:
        params = read_npz(path)
    else:
        params, path = _read_preset_checkpoint(path, preset)
        variant = presets.architecture(preset) if variant is None else variant
    return mixer_from_params(params, path, variant, num_classes, image_size, include_top)


def _checked_num_classes(num_classes):
    if num_classes is None:
        return None
    # bool is an int subclass, but True is a mistake, not a one-class head.
    is_int = isinstance(num_classes, (int, np.integer)) and not isinstance(num_classes, bool)
    if not is_int or num_classes < 1:
        raise CheckpointError(
            f"num_classes must be a positive int or None; got {num_classes!r}. None keeps the "
            "checkpoint's head, an int gives a new head of that size, and include_top=False "
            "gives the pooled features without a head."
        )
    return int(num_classes)


def _read_preset_checkpoint(name, preset):
    """`(params, path)` of a preset's cached official file, checked against its row.

    No official checksums are published, so the check is the file's own (every zip member's
    CRC, finite floats: `read_npz`) and its shapes against the row's architecture, resolution
    and classes. A cached file that fails is deleted, so the next call fetches it again; the
    message names the file it was fetched from (a mirror's file is what the user must fix).
    """
    path, fetched_from = presets.checkpoint_file(name)
    shown = fetched_from or path
    try:
        params = read_npz(path, shown)
        hyperparameters, num_patches, num_classes = infer_architecture(params, shown)
        expected = presets.architecture(preset)
        expected_patches = (preset.image_size // expected["patch_size"]) ** 2
        found = (hyperparameters, num_patches, num_classes)
        if found != (expected, expected_patches, preset.num_classes):
            raise CheckpointError(
                f"{shown!r} is not preset {name!r}: its shapes give {hyperparameters} with "
                f"{num_patches} patches and {num_classes} classes, the preset is {preset.variant} "
                f"at {preset.image_size} ({expected_patches} patches), {preset.num_classes} classes."
            )
    except CheckpointError as error:
        os.remove(path)
        raise CheckpointError(
            f"Preset {name!r}: {error.problem}", presets.replace_advice(name, fetched_from)
        ) from None
    return params, path


def mixer_from_params(
    params, path, variant=None, num_classes=None, image_size=None, include_top=True,
    trained_image_size=None, **model_arguments,
):
    """Builds an `MlpMixer` from official-layout arrays (see `load_official_checkpoint`).

    `path` names the arrays' origin in messages; `trained_image_size` is the resolution the
    arrays were trained at (None: the square one their token count gives, as for the official
    files); `model_arguments` are further MlpMixer arguments (`include_rescaling`,
    `num_channels`, `dropout_rate`, ...).
    """
    hyperparameters, num_patches, checkpoint_classes = infer_architecture(params, path)
    if variant is None:
        _match_variant(hyperparameters, path)
    else:
        expected = get_variant(variant) if isinstance(variant, str) else dict(variant)
        mismatched = {k: (v, hyperparameters.get(k)) for k, v in expected.items() if hyperparameters.get(k) != v}
        if mismatched:
            raise CheckpointError(
                f"{path!r} does not hold variant {variant!r}: "
                + "; ".join(f"{k} expected {e}, found {f}" for k, (e, f) in mismatched.items())
                + ". Pass variant=None to read the architecture off the file."
            )
        hyperparameters = expected
    patch_size = hyperparameters["patch_size"]
    if trained_image_size is None:
        trained_grid = checkpoint_grid(num_patches, patch_size, path)
    else:
        trained_grid = patch_grid(trained_image_size, patch_size)
    if image_size is None:
        image_size = tuple(g * patch_size for g in trained_grid)
    factors = resolution_factors(trained_grid, patch_grid(image_size, patch_size), patch_size)

    if include_top and num_classes is None:
        if checkpoint_classes is None:
            raise CheckpointError(f"{path!r} has no head: pass num_classes for a new one, or include_top=False.")
        num_classes = checkpoint_classes
    load_head = include_top and num_classes == checkpoint_classes
    model = MlpMixer(
        **{**hyperparameters, "tokens_mlp_dim": hyperparameters["tokens_mlp_dim"] * factors[0] * factors[1]},
        **({"num_classes": num_classes} if include_top else {}),
        image_size=image_size_2d(image_size),
        include_top=include_top,
        **model_arguments,
    )

    # Every key and shape is checked before any weight is assigned: nothing is half-loaded.
    head_keys = {"head/kernel", "head/bias"}
    expected_shapes = {
        key: shape
        for key, shape in _checkpoint_shapes(model, num_patches, hyperparameters["tokens_mlp_dim"]).items()
        if load_head or key not in head_keys
    }
    missing = sorted(set(expected_shapes) - set(params))
    unexpected = sorted(set(params) - set(expected_shapes) - head_keys)
    if missing or unexpected:
        raise CheckpointError(
            f"{path!r} does not match a {hyperparameters} Mixer: "
            f"missing keys {missing or 'none'}; unexpected keys {unexpected or 'none'}."
        )
    for key, shape in expected_shapes.items():
        if tuple(params[key].shape) != shape:
            raise CheckpointError(
                f"{path!r}: {key!r} has shape {tuple(params[key].shape)}, expected {shape} for a "
                f"{hyperparameters} Mixer with {num_patches} patches."
            )

    new_weights = {
        layer.name: [params[keras_to_official(layer.name, i)] for i in range(len(layer.weights))]
        for layer in model.layers
        if layer.weights and (load_head or layer.name != "head")
    }
    if factors != (1, 1):
        for name in [name for name in new_weights if name.endswith("token_mixing_dense_0")]:
            second = name[: -len("0")] + "1"
            k0, b0, k1, b1 = expand_token_mixing(*new_weights[name], *new_weights[second], trained_grid, factors)
            new_weights[name], new_weights[second] = [k0, b0], [k1, b1]
    for name, weights in new_weights.items():
        model.get_layer(name).set_weights([np.asarray(w, dtype="float32") for w in weights])
    return model


def _checkpoint_shapes(model, num_patches, tokens_mlp_dim):
    """Official key -> the shape it has in the checkpoint, read off the model's weights.

    Token-mixing weights are given at the checkpoint's resolution, before any adaptation.
    """
    checkpoint_token_mixing = {
        "Dense_0/kernel": (num_patches, tokens_mlp_dim),
        "Dense_0/bias": (tokens_mlp_dim,),
        "Dense_1/kernel": (tokens_mlp_dim, num_patches),
        "Dense_1/bias": (num_patches,),
    }
    shapes = {}
    for layer in model.layers:
        for position, weight in enumerate(layer.weights):
            key = keras_to_official(layer.name, position)
            suffix = key.split("token_mixing/", 1)[-1]
            shapes[key] = checkpoint_token_mixing[suffix] if "token_mixing/" in key else tuple(weight.shape)
    return shapes


def load_preset(preset, num_classes=None, image_size=None, include_top=True):
    """`MlpMixer.from_preset`: a built-in preset's name, or a folder written by `save_to_preset`.

    The model's `class_names` are the preset's when its head is kept (None for a new head,
    no head, or a preset without names). A folder's model comes back as saved; asked for
    another head or resolution, its weights go through the same construction as an official
    checkpoint's (a new zero head, the paper's token-mixing adaptation).
    """
    num_classes = _checked_num_classes(num_classes)
    row = presets.find_preset(preset)
    if row is not None:
        model = load_official_checkpoint(
            preset, num_classes=num_classes, image_size=image_size, include_top=include_top
        )
        names = presets.class_names(row)
    else:
        model, names = _load_preset_folder(os.fspath(preset), num_classes, image_size, include_top)
    # The loaders keep the preset's head exactly when its size is asked for (or none is).
    head_kept = include_top and names is not None and len(names) == model.num_classes
    model.class_names = list(names) if head_kept else None
    return model


def _load_preset_folder(preset_dir, num_classes, image_size, include_top):
    saved, metadata = preset_folder.read_preset_folder(preset_dir)
    if not isinstance(saved, MlpMixer):
        raise presets.PresetError(
            f"{preset_dir!r} holds a {type(saved).__name__}, not a keras_mixer.MlpMixer: a "
            "preset folder is what MlpMixer.save_to_preset(DIR) writes."
        )
    names = metadata.get("class_names")
    unchanged = include_top == saved.include_top and (
        image_size is None or image_size_2d(image_size) == saved.image_size
    )
    if unchanged and num_classes in (None, saved.num_classes):
        return saved, names
    config = saved.mixer_config()
    architecture = {key: config.pop(key) for key in ARCHITECTURE_KEYS}
    for key in ("num_classes", "image_size", "include_top"):
        config.pop(key)
    model = mixer_from_params(
        official_params(saved), preset_dir, architecture, num_classes, image_size, include_top,
        trained_image_size=saved.image_size, **config,
    )
    return model, names
