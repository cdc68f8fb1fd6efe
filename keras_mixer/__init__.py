"""keras-mixer: MLP-Mixer for Keras 3, with the paper's variants and official checkpoints."""

from keras_mixer.checkpoint import load_official_checkpoint
from keras_mixer.mlp_mixer import MlpMixer, build_mixer, gelu_tanh
from keras_mixer.presets import PRESETS, PresetError
from keras_mixer.variants import PAPER_PARAMS_M, VARIANTS, get_variant

__all__ = [
    "MlpMixer",
    "PAPER_PARAMS_M",
    "PRESETS",
    "PresetError",
    "VARIANTS",
    "build_mixer",
    "gelu_tanh",
    "get_variant",
    "load_official_checkpoint",
]
