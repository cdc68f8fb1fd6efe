"""MLP-Mixer (Tolstikhin et al., 2021, "MLP-Mixer: An all-MLP Architecture for Vision").

Read top to bottom as the paper's Section 2:

    stem:            x = Conv(patch, stride=patch)(image)      -> (num_patches, hidden_dim)
    token mixing:    U = X + W2 gelu(W1 LayerNorm(X)^T)^T      (one MLP shared by all channels)
    channel mixing:  Y = U + W4 gelu(W3 LayerNorm(U))          (one MLP shared by all patches)
    head:            logits = Dense(mean_patches(LayerNorm(Y)))

The graph is built from Keras's own layers by `build_mixer`, which is given the layers
namespace: `keras_mixer.layers.KERAS_LAYERS` (Keras's layers, three of them spelled for
TensorFlow's CPU) builds the Keras 3 model users work with, `tf_keras.layers`
builds its twin for tensorflow-model-optimization (which accepts tf_keras models only).
Both have the same weighted layers in the same order, so weights copy across by position,
and the graph lowers to TFLite builtin ops only.

Numerical choices follow the official implementation
(google-research/vision_transformer, `vit_jax/models_mixer.py`), so that its released
checkpoints give the same logits here:
- LayerNorm epsilon 1e-6: Flax's `nn.LayerNorm` default (Keras's default is 1e-3).
- GELU, tanh approximation: Flax's `nn.gelu` defaults to `approximate=True`
  (Keras's "gelu" is the exact erf form; the two differ by up to ~1e-3 per activation).
- The head kernel and bias are initialised to zeros (`kernel_init=zeros` in the official head).
- Pixels are scaled to [-1, 1], as the official input pipeline does ((x - 127.5) / 127.5).
Other Dense and Conv kernels use Keras's Glorot-uniform default, as big_vision's Mixer
(`xavier_uniform`) does for training from scratch.
"""

import inspect

import keras

from keras_mixer import preset_folder
from keras_mixer import presets as presets_lib
from keras_mixer.layers import KERAS_LAYERS, compiled_inference
from keras_mixer.variants import get_variant

LAYER_NORM_EPSILON = 1e-6


@keras.saving.register_keras_serializable(package="keras_mixer")
def gelu_tanh(x):
    """GELU in the tanh approximation, as Flax's `nn.gelu` (the official Mixer's choice).

    A named, registered function rather than a lambda, so that `.keras` files load it.

    Example:
    >>> keras.layers.Activation(gelu_tanh)
    """
    return keras.activations.gelu(x, approximate=True)


def image_size_2d(image_size):
    """Returns `image_size` as a (height, width) pair of ints.

    Example:
    >>> image_size_2d(224)
    (224, 224)
    """
    if isinstance(image_size, int):
        return (image_size, image_size)
    height, width = image_size
    return (int(height), int(width))


def patch_grid(image_size, patch_size):
    """Returns the (rows, columns) grid of patches, or a clear error if the image does not tile.

    Example:
    >>> patch_grid((224, 160), 16)
    (14, 10)
    """
    height, width = image_size_2d(image_size)
    if height % patch_size or width % patch_size or height < patch_size or width < patch_size:
        raise ValueError(
            f"image_size {(height, width)} is not a whole number of {patch_size}x{patch_size} "
            f"patches. Use a height and width that are multiples of patch_size={patch_size}, "
            f"e.g. {(max(1, round(height / patch_size)) * patch_size, max(1, round(width / patch_size)) * patch_size)}."
        )
    return height // patch_size, width // patch_size


def mlp_block(layers, x, mlp_dim, dropout_rate, name):
    """Dense-GELU-Dense on the last axis (the official `MlpBlock`).

    Dropout after the GELU and after the output Dense, where the official ViT's MlpBlock
    puts it; the official Mixer trains without dropout (rate 0).

    The GELU is the first Dense's activation, so that the Keras model's Dense can hand
    matmul, bias and GELU to oneDNN as one fused kernel (`keras_mixer.layers.Dense`).
    """
    output_dim = x.shape[-1]
    x = layers.Dense(mlp_dim, activation=gelu_tanh, name=f"{name}_dense_0")(x)
    if dropout_rate:
        x = layers.Dropout(dropout_rate, name=f"{name}_dropout_0")(x)
    x = layers.Dense(output_dim, name=f"{name}_dense_1")(x)
    if dropout_rate:
        x = layers.Dropout(dropout_rate, name=f"{name}_dropout_1")(x)
    return x


def residual(layers, x, branch, drop_path_rate, name):
    """x + branch, where stochastic depth drops the whole branch per sample.

    Stochastic depth is Keras's Dropout with noise_shape (batch, 1, 1): one keep/drop
    decision per example, scaled by 1/(1 - rate) in training, identity at inference.
    """
    if drop_path_rate:
        branch = layers.Dropout(drop_path_rate, noise_shape=(None, 1, 1), name=f"{name}_drop_path")(branch)
    return layers.Add(name=f"{name}_add")([x, branch])


def mixer_block(layers, x, tokens_mlp_dim, channels_mlp_dim, dropout_rate, drop_path_rate, name):
    """One Mixer layer: token mixing then channel mixing, each pre-norm with a skip."""
    # Token mixing: the MLP acts on each channel's column of patches, so transpose
    # (num_patches, hidden_dim) -> (hidden_dim, num_patches), mix, transpose back.
    y = layers.LayerNormalization(epsilon=LAYER_NORM_EPSILON, name=f"{name}_layer_norm_0")(x)
    y = layers.Permute((2, 1), name=f"{name}_token_mixing_transpose_in")(y)
    y = mlp_block(layers, y, tokens_mlp_dim, dropout_rate, name=f"{name}_token_mixing")
    y = layers.Permute((2, 1), name=f"{name}_token_mixing_transpose_out")(y)
    x = residual(layers, x, y, drop_path_rate, name=f"{name}_token_mixing")
    # Channel mixing: the MLP acts on each patch's hidden_dim features.
    y = layers.LayerNormalization(epsilon=LAYER_NORM_EPSILON, name=f"{name}_layer_norm_1")(x)
    y = mlp_block(layers, y, channels_mlp_dim, dropout_rate, name=f"{name}_channel_mixing")
    return residual(layers, x, y, drop_path_rate, name=f"{name}_channel_mixing")


def build_mixer(
    layers,
    *,
    patch_size,
    hidden_dim,
    num_blocks,
    tokens_mlp_dim,
    channels_mlp_dim,
    num_classes=1000,
    image_size=224,
    include_top=True,
    include_rescaling=True,
    num_channels=3,
    dropout_rate=0.0,
    stochastic_depth_rate=0.0,
):
    """Builds the Mixer graph from a layers namespace and returns `(inputs, outputs)`.

    The one definition of the architecture: `MlpMixer` calls it with `keras.layers`,
    the export pipeline with `tf_keras.layers` to get a twin that tfmot can quantize.

    Example:
    >>> import tf_keras
    >>> inputs, outputs = build_mixer(tf_keras.layers, **get_variant("S/32"), num_classes=10)
    >>> twin = tf_keras.Model(inputs, outputs)
    """
    rows, columns = patch_grid(image_size, patch_size)
    height, width = image_size_2d(image_size)
    num_patches = rows * columns

    inputs = layers.Input(shape=(height, width, num_channels), name="images")
    x = inputs
    if include_rescaling:
        # Raw [0, 255] pixels -> [-1, 1], the official input scaling, so that a deployed
        # model takes camera pixels as they are.
        x = layers.Rescaling(scale=1.0 / 127.5, offset=-1.0, name="rescaling")(x)
    # Per-patch linear embedding: a convolution whose kernel and stride are the patch.
    x = layers.Conv2D(hidden_dim, patch_size, strides=patch_size, name="stem")(x)
    x = layers.Reshape((num_patches, hidden_dim), name="patches_to_tokens")(x)
    for index in range(num_blocks):
        # Stochastic depth grows linearly with depth (Huang et al., 2016; timm's rule).
        drop_path_rate = stochastic_depth_rate * index / max(num_blocks - 1, 1)
        x = mixer_block(
            layers, x, tokens_mlp_dim, channels_mlp_dim, dropout_rate, drop_path_rate,
            name=f"mixer_block_{index}",
        )
    x = layers.LayerNormalization(epsilon=LAYER_NORM_EPSILON, name="pre_head_layer_norm")(x)
    x = layers.GlobalAveragePooling1D(name="global_average_pooling")(x)
    if include_top:
        x = layers.Dense(num_classes, kernel_initializer="zeros", bias_initializer="zeros", name="head")(x)
    return inputs, x


_BUILD_MIXER_SIGNATURE = inspect.signature(build_mixer)
# The architecture's arguments, in build_mixer's order: MlpMixer's constructor and get_config.
MIXER_ARGUMENTS = tuple(_BUILD_MIXER_SIGNATURE.parameters)[1:]


@keras.saving.register_keras_serializable(package="keras_mixer")
class MlpMixer(keras.Model):
    """MLP-Mixer image classifier (or feature extractor with `include_top=False`).

    Keyword arguments (`build_mixer`'s, with its defaults; the rest go to `keras.Model`):
        patch_size: int. Side of the square patches; the stem's kernel and stride.
        hidden_dim: int. Channels per patch (C in the paper).
        num_blocks: int. Number of Mixer layers.
        tokens_mlp_dim: int. Hidden width of the token-mixing MLP (D_S).
        channels_mlp_dim: int. Hidden width of the channel-mixing MLP (D_C).
        num_classes: int. Size of the head. Defaults to 1000.
        image_size: int or (height, width). Must be a multiple of `patch_size`. Defaults to 224.
        include_top: bool. With False the model returns the pooled `hidden_dim` features.
        include_rescaling: bool. With True (default) the model takes raw pixels in [0, 255]
            and scales them to [-1, 1] itself; with False it expects [-1, 1] inputs.
        num_channels: int. Input channels. Defaults to 3.
        dropout_rate: float. Dropout inside every MLP. Defaults to 0.
        stochastic_depth_rate: float. Drop-path rate of the last block; earlier blocks
            get linearly smaller rates. Defaults to 0.

    Example:
    >>> model = keras_mixer.MlpMixer.from_variant("S/16", num_classes=10, image_size=64)
    >>> model(np.zeros((1, 64, 64, 3))).shape
    (1, 10)

    Reference: Tolstikhin et al., 2021, https://arxiv.org/abs/2105.01601
    """

    # The built-in presets, name -> row (keras_mixer/presets.py); `from_preset` takes any name.
    presets = presets_lib.PRESETS

    def __init__(self, **kwargs):
        # build_mixer's signature is the one list of the architecture's arguments and their
        # defaults; the rest of kwargs (name, trainable, ...) is keras.Model's.
        architecture = {name: kwargs.pop(name) for name in MIXER_ARGUMENTS if name in kwargs}
        bound = _BUILD_MIXER_SIGNATURE.bind(KERAS_LAYERS, **architecture)
        bound.apply_defaults()
        config = {name: bound.arguments[name] for name in MIXER_ARGUMENTS}
        config["image_size"] = image_size_2d(config["image_size"])
        inputs, outputs = build_mixer(KERAS_LAYERS, **config)
        super().__init__(inputs=inputs, outputs=outputs, **kwargs)
        # One attribute per constructor argument (keras-hub style); mixer_config() reads them back.
        for name, value in config.items():
            setattr(self, name, value)
        # The names of the head's outputs, when known: from_preset sets them, save_to_preset
        # writes them. Not an architecture argument, so not in get_config.
        self.class_names = None

    # Keras's predict and evaluate loops trace these into graphs that run where they were
    # traced and are never exported: the layers' compiled spelling is the faster there
    # (keras_mixer/layers.py). Under another backend the layers ignore it.
    def predict_step(self, *args, **kwargs):
        with compiled_inference():
            return super().predict_step(*args, **kwargs)

    def test_step(self, *args, **kwargs):
        with compiled_inference():
            return super().test_step(*args, **kwargs)

    @property
    def num_patches(self):
        rows, columns = patch_grid(self.image_size, self.patch_size)
        return rows * columns

    def mixer_config(self):
        """The constructor arguments that define the architecture (no Keras name/trainable)."""
        config = {name: getattr(self, name) for name in MIXER_ARGUMENTS}
        config["image_size"] = list(config["image_size"])  # JSON-friendly
        return config

    def get_config(self):
        return {"name": self.name, "trainable": self.trainable, **self.mixer_config()}

    @classmethod
    def from_config(cls, config):
        return cls(**config)

    @classmethod
    def from_variant(cls, variant, **overrides):
        """Builds a paper variant, e.g. `MlpMixer.from_variant("B/16", num_classes=1000)`.

        Any constructor argument can be overridden (`image_size`, `include_top`, ...).

        Example:
        >>> model = MlpMixer.from_variant("S/32", num_classes=10, image_size=(64, 96))
        """
        return cls(**{**get_variant(variant), **overrides})

    @classmethod
    def from_preset(cls, preset, num_classes=None, image_size=None, include_top=True):
        """Builds a Mixer from a built-in preset's name or from a preset folder.

        Args:
            preset: str. A name of `MlpMixer.presets` (an official checkpoint, fetched once
                into Keras's cache; `KERAS_MIXER_PRESET_MIRROR` names a folder or bucket to
                fetch from instead), or a folder written by `save_to_preset` (local, gs://).
            num_classes: int or None. None keeps the preset's head; another size gets a new
                zero-initialised head.
            image_size: int, (height, width) or None. A whole multiple of the preset's
                resolution adapts token mixing (paper, Appendix C).
            include_top: bool. False returns the pooled features without a head.

        The model's `class_names` are the preset's when its head is kept (ImageNet-1k
        presets: the 1,000 names; ImageNet-21k presets: None, their list is not included).

        Example:
        >>> model = MlpMixer.from_preset("mixer_b16_imagenet1k")
        >>> model.class_names[:2]
        ['tench', 'goldfish']
        >>> model = MlpMixer.from_preset("mixer_b16_imagenet21k", num_classes=10, image_size=448)
        """
        from keras_mixer import checkpoint  # it builds MlpMixer, so it imports this module

        return checkpoint.load_preset(preset, num_classes, image_size, include_top)

    def save_to_preset(self, preset_dir, class_names=None):
        """Writes the model as a preset folder (`model.keras`, `metadata.json`), local or gs://.

        `class_names` (one per output) default to the model's own `class_names`.
        `MlpMixer.from_preset(preset_dir)` gives the model back with them.

        Example:
        >>> model.save_to_preset("presets/flowers", class_names=["daisy", "rose", "tulip"])
        """
        return preset_folder.save_to_preset(self, preset_dir, class_names)
