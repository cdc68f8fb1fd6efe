"""Loads the officially released MLP-Mixer checkpoints (.npz) into `MlpMixer`.

The official files (google-research/vision_transformer, e.g. `imagenet21k/Mixer-B_16.npz`)
are flat `.npz` archives whose keys are Flax parameter paths:

    stem/kernel (p, p, 3, C)                stem/bias (C,)
    MixerBlock_{i}/LayerNorm_{0,1}/{scale,bias}
    MixerBlock_{i}/token_mixing/Dense_{0,1}/{kernel,bias}
    MixerBlock_{i}/channel_mixing/Dense_{0,1}/{kernel,bias}
    pre_head_layer_norm/{scale,bias}        head/{kernel,bias} (C, num_classes)

Flax and Keras lay out Conv and Dense kernels the same way (HWIO, (in, out)), so loading
is renaming: Keras 3 forbids "/" in layer names, and `official_to_keras` /
`keras_to_official` are the one mapping between the two naming schemes.

Presets (keras_mixer/presets.py) name the released files and fetch them; `load_preset`
(`MlpMixer.from_preset`) builds a model from a preset's name, or from a preset folder, whose
weights go through the same construction (`official_params`, then `mixer_from_params`).
"""

import os
import re
import zipfile
import zlib

import numpy as np

from keras_mixer import presets
from keras_mixer.mlp_mixer import MlpMixer, image_size_2d, patch_grid
from keras_mixer.variants import ARCHITECTURE_KEYS, VARIANTS, get_variant


class CheckpointError(ValueError):
    """A checkpoint that cannot be loaded as asked; the message says why and what to do.

    `problem` is the why alone, for a caller that knows a better fix than `fix`: a preset
    knows where its official file lies.
    """

    def __init__(self, problem, fix=None):
        super().__init__(problem if fix is None else f"{problem} {fix}")
        self.problem = problem


_OFFICIAL_KEY = re.compile(
    r"^(?:(stem|head)/(kernel|bias)"
    r"|(pre_head_layer_norm)/(scale|bias)"
    r"|MixerBlock_(\d+)/(?:LayerNorm_([01])/(scale|bias)|(token_mixing|channel_mixing)/Dense_([01])/(kernel|bias)))$"
)
_KERAS_LAYER = re.compile(
    r"^(?:(stem|head|pre_head_layer_norm)"
    r"|mixer_block_(\d+)_(layer_norm_[01]|token_mixing_dense_[01]|channel_mixing_dense_[01]))$"
)
# Keras keeps [kernel, bias] and [gamma, beta]; Flax names them kernel/bias and scale/bias.
_WEIGHT_POSITION = {"kernel": 0, "scale": 0, "bias": 1}
_FLAX_MODULE = {"layer_norm_0": "LayerNorm_0", "layer_norm_1": "LayerNorm_1"}


def official_to_keras(key):
    """Maps an official parameter path to `(keras_layer_name, weight_position)`.

    Example:
    >>> official_to_keras("MixerBlock_3/token_mixing/Dense_0/kernel")
    ('mixer_block_3_token_mixing_dense_0', 0)
    """
    match = _OFFICIAL_KEY.match(key)
    if not match:
        raise CheckpointError(f"{key!r} is not a parameter path of the official MLP-Mixer.")
    top, top_param, norm, norm_param, block, norm_index, norm_block_param, mixing, dense_index, dense_param = (
        match.groups()
    )
    if top:
        return top, _WEIGHT_POSITION[top_param]
    if norm:
        return norm, _WEIGHT_POSITION[norm_param]
    if norm_index is not None:
        return f"mixer_block_{block}_layer_norm_{norm_index}", _WEIGHT_POSITION[norm_block_param]
    return f"mixer_block_{block}_{mixing}_dense_{dense_index}", _WEIGHT_POSITION[dense_param]


def keras_to_official(layer_name, weight_position):
    """Maps a Keras layer name and weight position to the official parameter path.

    Example:
    >>> keras_to_official("mixer_block_0_layer_norm_1", 0)
    'MixerBlock_0/LayerNorm_1/scale'
    """
    match = _KERAS_LAYER.match(layer_name)
    if not match or weight_position not in (0, 1):
        raise CheckpointError(f"Layer {layer_name!r} weight {weight_position} has no official counterpart.")
    top, block, module = match.groups()
    is_norm = (top or module).startswith(("layer_norm", "pre_head_layer_norm"))
    param = "bias" if weight_position == 1 else ("scale" if is_norm else "kernel")
    if top:
        return f"{top}/{param}"
    if module in _FLAX_MODULE:
        path = _FLAX_MODULE[module]
    else:
        mixing, dense_index = module.rsplit("_dense_", 1)
        path = f"{mixing}/Dense_{dense_index}"
    return f"MixerBlock_{block}/{path}/{param}"


def read_npz(path, name=None):
    """Reads an .npz checkpoint into a dict of float arrays, refusing anything that is not one.

    Every array is checked here, before any weight is assigned: it must be a floating-point
    .npy array (never a pickle, which could run code) whose values are all finite, and
    every zip member must pass its CRC check. A damaged download is reported as damaged,
    with the advice to download it again, rather than loading NaNs or leaking zipfile's
    errors. Messages call the file `name` (default: `path`), e.g. the file `path` is a copy of.

    Example:
    >>> params = read_npz("imagenet21k_Mixer-B_16.npz")
    >>> params["stem/kernel"].shape
    (16, 16, 3, 768)
    """
    path = os.fspath(path)
    name = path if name is None else name
    if os.path.isdir(path):
        raise CheckpointError(
            f"{path!r} is a directory, not an .npz file. Pass the path of the checkpoint file "
            "itself (e.g. .../imagenet21k/Mixer-B_16.npz)."
        )
    if not os.path.isfile(path):
        raise CheckpointError(
            f"Checkpoint file {path!r} does not exist. Download an official MLP-Mixer .npz "
            "(e.g. gs://mixer_models/imagenet21k/Mixer-B_16.npz) and pass its local path."
        )
    if not zipfile.is_zipfile(path):
        with open(path, "rb") as file:
            starts_like_zip = file.read(4) == b"PK\x03\x04"
        if starts_like_zip:  # a zip whose directory, at the end of the file, is missing
            raise CheckpointError(
                f"{name!r} is corrupt: it starts like an .npz archive but its end is missing, "
                "so the download is incomplete or damaged.", _DOWNLOAD_AGAIN
            )
        raise CheckpointError(
            f"{name!r} is not an .npz archive (a zip of .npy arrays).",
            "Pass an official MLP-Mixer .npz checkpoint, not a .keras, .h5, .msgpack or TF "
            "checkpoint file.",
        )
    params = {}
    try:
        with zipfile.ZipFile(path) as archive:
            for member in archive.infolist():
                key = member.filename.removesuffix(".npy")
                params[key] = _read_array(archive, member, key, name)
    except (zipfile.BadZipFile, zlib.error, EOFError) as error:
        raise CheckpointError(
            f"{name!r} is corrupt ({_one_line(error)}): the download is damaged or incomplete.",
            _DOWNLOAD_AGAIN,
        ) from error
    return params


_DOWNLOAD_AGAIN = "Download it again (e.g. from gs://mixer_models/imagenet21k/Mixer-B_16.npz)."


def _one_line(error):
    """An exception as one line of text, for quoting inside a one-line message."""
    return " ".join(str(error).split()) or type(error).__name__


def _read_array(archive, member, key, name):
    """One member of an .npz: a finite float array, or a CheckpointError saying why not.

    The .npy header is read first, so a pickle is never run and a non-float array is
    refused without reading its data. zipfile checks a member's CRC only once the member
    is read to its end, so every member is read to its end before any other verdict: a
    flipped byte is reported as corruption, not as the dtype, shape or header it garbled.
    """
    with archive.open(member) as stream:
        dtype = _npy_dtype(stream)
        array = malformed = None
        if dtype is not None and np.issubdtype(dtype, np.floating):
            stream.seek(0)
            try:
                array = np.lib.format.read_array(stream, allow_pickle=False)
            except ValueError as error:
                malformed = error
        while stream.read(1 << 20):  # raises BadZipFile if the CRC fails
            pass
    if dtype is None:
        raise CheckpointError(
            f"{name!r} holds {member.filename!r}, which is not a .npy array: it is not an .npz "
            "checkpoint.",
            "Pass an official MLP-Mixer .npz checkpoint, not a .keras or other zip.",
        )
    if dtype.hasobject:
        raise CheckpointError(
            f"{name!r}: array {key!r} holds pickled Python objects, which are not loaded "
            "(allow_pickle=False, since unpickling can run arbitrary code).",
            "Official checkpoints hold plain float arrays; re-save it with numeric arrays only.",
        )
    if not np.issubdtype(dtype, np.floating):
        raise CheckpointError(
            f"{name!r}: array {key!r} has dtype {dtype}, not floating point.",
            "Official checkpoints hold float32 arrays; re-save it with float weights only.",
        )
    if malformed is not None:  # its CRC held: the file was written damaged
        raise CheckpointError(
            f"{name!r} is corrupt: array {key!r} cannot be read ({_one_line(malformed)}).",
            _DOWNLOAD_AGAIN,
        ) from malformed
    non_finite = array.size - np.count_nonzero(np.isfinite(array))
    if non_finite:
        raise CheckpointError(
            f"{name!r}: array {key!r} has {non_finite} non-finite values (NaN or inf) of "
            f"{array.size}: the file is damaged, as official checkpoints hold finite weights.",
            _DOWNLOAD_AGAIN,
        )
    return array


def _npy_dtype(stream):
    """The dtype in a .npy header, or None where the stream does not hold a valid one."""
    try:
        version = np.lib.format.read_magic(stream)
        # Format 3.0 differs from 2.0 only in its utf-8 encoding, which matters only for the
        # field names of structured dtypes: read as 2.0, a float header reads the same and a
        # structured one still shows a non-float dtype.
        if version == (1, 0):
            return np.lib.format.read_array_header_1_0(stream)[2]
        return np.lib.format.read_array_header_2_0(stream)[2]
    except (ValueError, TypeError):  # a wrong magic string or a malformed header
        return None


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


def _checkpoint_grid(num_patches, patch_size, path):
    side = int(round(num_patches ** 0.5))
    if side * side != num_patches:
        raise CheckpointError(
            f"{path!r} was trained on {num_patches} patches, which is not a square grid; pass "
            "the image_size (height, width) it was trained at."
        )
    return side, side


def _resolution_factors(checkpoint_grid, target_grid, patch_size):
    factors = tuple(t // c for t, c in zip(target_grid, checkpoint_grid))
    if any(t % c for t, c in zip(target_grid, checkpoint_grid)):
        checkpoint_size = tuple(g * patch_size for g in checkpoint_grid)
        raise CheckpointError(
            f"Cannot adapt a checkpoint trained at {checkpoint_size} to image_size "
            f"{tuple(g * patch_size for g in target_grid)}: the token-mixing MLP is adapted by "
            "the paper's block-diagonal construction, which needs each side to be a whole "
            f"multiple of {checkpoint_size} (e.g. {tuple(2 * s for s in checkpoint_size)})."
        )
    return factors


def expand_token_mixing(kernel_0, bias_0, kernel_1, bias_1, checkpoint_grid, factors):
    """Adapts token-mixing weights to a K-times finer patch grid (paper, Appendix C).

    At a higher resolution the sequence has K^2 S patches instead of S. As in the paper,
    the token-mixing MLP becomes block-diagonal: the patches are split into K^2 chunks of
    S patches, and each chunk goes through a copy of the pre-trained MLP. We choose the
    chunks as strided patch grids (chunk (a, b) holds patches (K i + a, K j + b)), so
    every chunk covers the whole image on the checkpoint's grid; an image whose patches
    are each repeated K x K times then gives exactly the checkpoint's logits. The block
    structure is folded into two plain Dense kernels, so the result is an ordinary Mixer
    with `tokens_mlp_dim` multiplied by K^2.

    Returns the four adapted arrays.
    """
    rows0, columns0 = checkpoint_grid
    row_factor, column_factor = factors
    rows, columns = rows0 * row_factor, columns0 * column_factor
    tokens_mlp_dim = kernel_0.shape[1]
    num_chunks = row_factor * column_factor
    row, column = np.meshgrid(np.arange(rows), np.arange(columns), indexing="ij")
    chunk = ((row % row_factor) * column_factor + column % column_factor).reshape(-1)
    local = ((row // row_factor) * columns0 + column // column_factor).reshape(-1)
    new_kernel_0 = np.zeros((rows * columns, num_chunks * tokens_mlp_dim), kernel_0.dtype)
    new_kernel_1 = np.zeros((num_chunks * tokens_mlp_dim, rows * columns), kernel_1.dtype)
    for token in range(rows * columns):
        hidden = slice(chunk[token] * tokens_mlp_dim, (chunk[token] + 1) * tokens_mlp_dim)
        new_kernel_0[token, hidden] = kernel_0[local[token]]
        new_kernel_1[hidden, token] = kernel_1[:, local[token]]
    return new_kernel_0, np.tile(bias_0, num_chunks), new_kernel_1, bias_1[local]


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
        checkpoint_grid = _checkpoint_grid(num_patches, patch_size, path)
    else:
        checkpoint_grid = patch_grid(trained_image_size, patch_size)
    if image_size is None:
        image_size = tuple(g * patch_size for g in checkpoint_grid)
    factors = _resolution_factors(checkpoint_grid, patch_grid(image_size, patch_size), patch_size)

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
            k0, b0, k1, b1 = expand_token_mixing(*new_weights[name], *new_weights[second], checkpoint_grid, factors)
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
    saved, metadata = presets.read_preset_folder(preset_dir)
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


def official_params(model):
    """A Keras MlpMixer's weights as official-layout arrays (the inverse of loading)."""
    return {
        keras_to_official(layer.name, position): np.asarray(weight)
        for layer in model.layers
        for position, weight in enumerate(layer.get_weights())
    }
