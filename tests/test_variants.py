"""Every paper variant's parameter count: closed form == built model == pinned == paper."""

import keras
import pytest

from keras_mixer import PAPER_PARAMS_M, VARIANTS, MlpMixer

# Pinned counts at 224x224. Headless counts are what the paper's Table 1 reports (they round to
# 19/18/60/59/206/207/431 M); with a 1,000-class head B/16 is 59,880,472, as the official
# vision_transformer models_test.py pins it.
PINNED_HEADLESS = {
    "S/32": 18_591_624,
    "S/16": 18_015_264,
    "B/32": 59_524_428,
    "B/16": 59_111_472,
    "L/32": 205_914_264,
    "L/16": 207_171_168,
    "H/14": 431_069_952,
}
PINNED_1000_CLASSES = {
    "S/32": 19_104_624,
    "S/16": 18_528_264,
    "B/32": 60_293_428,
    "B/16": 59_880_472,
    "L/32": 206_939_264,
    "L/16": 208_196_168,
    "H/14": 432_350_952,
}


def closed_form_params(patch_size, hidden_dim, num_blocks, tokens_mlp_dim, channels_mlp_dim, image_size, num_classes):
    """Parameters counted from the paper's description, layer by layer."""
    num_patches = (image_size // patch_size) ** 2
    stem = patch_size * patch_size * 3 * hidden_dim + hidden_dim
    token_mlp = num_patches * tokens_mlp_dim + tokens_mlp_dim + tokens_mlp_dim * num_patches + num_patches
    channel_mlp = hidden_dim * channels_mlp_dim + channels_mlp_dim + channels_mlp_dim * hidden_dim + hidden_dim
    block = 2 * (2 * hidden_dim) + token_mlp + channel_mlp
    head = hidden_dim * num_classes + num_classes if num_classes else 0
    return stem + num_blocks * block + 2 * hidden_dim + head


def test_every_variant_is_pinned():
    assert set(VARIANTS) == set(PINNED_HEADLESS) == set(PINNED_1000_CLASSES) == set(PAPER_PARAMS_M)


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_param_count_matches_paper(variant):
    features = MlpMixer.from_variant(variant, include_top=False)
    headless = features.count_params()
    del features
    keras.backend.clear_session()
    assert headless == closed_form_params(**VARIANTS[variant], image_size=224, num_classes=0)
    assert headless == PINNED_HEADLESS[variant]
    assert round(headless / 1e6) == PAPER_PARAMS_M[variant]
    with_head = closed_form_params(**VARIANTS[variant], image_size=224, num_classes=1000)
    assert with_head == PINNED_1000_CLASSES[variant]
    # The 1000-class head adds hidden_dim * 1000 + 1000 on top of the features.
    assert with_head - headless == VARIANTS[variant]["hidden_dim"] * 1000 + 1000


def test_built_model_with_head_matches_pin():
    model = MlpMixer.from_variant("B/16", num_classes=1000)
    assert model.count_params() == PINNED_1000_CLASSES["B/16"] == 59_880_472
