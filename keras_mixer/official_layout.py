"""The official MLP-Mixer checkpoint layout, and the one mapping between its names and Keras's.

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
"""

import re

import numpy as np


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


def official_params(model):
    """A Keras MlpMixer's weights as official-layout arrays (the inverse of loading)."""
    return {
        keras_to_official(layer.name, position): np.asarray(weight)
        for layer in model.layers
        for position, weight in enumerate(layer.get_weights())
    }
