"""The paper's MLP-Mixer variants as plain data (Tolstikhin et al., 2021, Table 1).

A variant is a row of hyperparameters, named as in the official JAX code
(google-research/vision_transformer, `vit_jax/configs/models.py`). Build one with
`keras_mixer.MlpMixer.from_variant("B/16", num_classes=1000)`.

`PAPER_PARAMS_M` is the paper's "Parameters (M)" column. The paper counts the
model without its classification head: only the headless counts round to all
seven values (with a 1,000-class head S/16 would be 19 M and H/14 432 M).
"""

# The MlpMixer arguments a variant sets; the others (head, resolution, ...) are the task's.
ARCHITECTURE_KEYS = ("patch_size", "hidden_dim", "num_blocks", "tokens_mlp_dim", "channels_mlp_dim")

VARIANTS = {
    "S/32": dict(patch_size=32, hidden_dim=512, num_blocks=8, tokens_mlp_dim=256, channels_mlp_dim=2048),
    "S/16": dict(patch_size=16, hidden_dim=512, num_blocks=8, tokens_mlp_dim=256, channels_mlp_dim=2048),
    "B/32": dict(patch_size=32, hidden_dim=768, num_blocks=12, tokens_mlp_dim=384, channels_mlp_dim=3072),
    "B/16": dict(patch_size=16, hidden_dim=768, num_blocks=12, tokens_mlp_dim=384, channels_mlp_dim=3072),
    "L/32": dict(patch_size=32, hidden_dim=1024, num_blocks=24, tokens_mlp_dim=512, channels_mlp_dim=4096),
    "L/16": dict(patch_size=16, hidden_dim=1024, num_blocks=24, tokens_mlp_dim=512, channels_mlp_dim=4096),
    "H/14": dict(patch_size=14, hidden_dim=1280, num_blocks=32, tokens_mlp_dim=640, channels_mlp_dim=5120),
}

PAPER_PARAMS_M = {"S/32": 19, "S/16": 18, "B/32": 60, "B/16": 59, "L/32": 206, "L/16": 207, "H/14": 431}


def get_variant(name):
    """Returns a copy of the hyperparameters of a paper variant.

    Example:
    >>> get_variant("S/16")["hidden_dim"]
    512
    """
    if name not in VARIANTS:
        raise ValueError(
            f"Unknown Mixer variant {name!r}. Known variants: {', '.join(VARIANTS)} "
            "(the paper's notation: size/patch)."
        )
    return dict(VARIANTS[name])
