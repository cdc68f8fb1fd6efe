"""An independent NumPy MLP-Mixer, written from the paper's equations and the official
parameter layout, in float64. It shares no code with keras_mixer: tests hold the Keras
model to it.

    X  = patches(image) @ W_stem + b_stem                           (S x C)
    U  = X + (W2 gelu(W1 LN(X)^T + b1) + b2)^T      token mixing, on columns
    Y  = U + W4 gelu(W3 LN(U) + b3) + b4             channel mixing, on rows
    out = mean_S(LN(Y)) @ W_head + b_head
"""

import numpy as np


def gelu_tanh(x):
    return 0.5 * x * (1.0 + np.tanh(np.sqrt(2.0 / np.pi) * (x + 0.044715 * x**3)))


def layer_norm(x, scale, bias, epsilon=1e-6):
    mean = x.mean(axis=-1, keepdims=True)
    variance = ((x - mean) ** 2).mean(axis=-1, keepdims=True)
    return (x - mean) / np.sqrt(variance + epsilon) * scale + bias


def mlp(x, params, prefix):
    hidden = gelu_tanh(x @ params[f"{prefix}/Dense_0/kernel"] + params[f"{prefix}/Dense_0/bias"])
    return hidden @ params[f"{prefix}/Dense_1/kernel"] + params[f"{prefix}/Dense_1/bias"]


def patchify(images, patch_size):
    """(B, H, W, 3) -> (B, S, p*p*3), patches in row-major order, each flattened (row, col, channel)."""
    batch, height, width, channels = images.shape
    rows, columns = height // patch_size, width // patch_size
    x = images.reshape(batch, rows, patch_size, columns, patch_size, channels)
    x = x.transpose(0, 1, 3, 2, 4, 5)
    return x.reshape(batch, rows * columns, patch_size * patch_size * channels)


def mixer_forward(params, images):
    """Logits (or features, without a head) for images already scaled to [-1, 1]."""
    params = {k: np.asarray(v, np.float64) for k, v in params.items()}
    images = np.asarray(images, np.float64)
    stem = params["stem/kernel"]
    patch_size, hidden_dim = stem.shape[0], stem.shape[3]
    x = patchify(images, patch_size) @ stem.reshape(-1, hidden_dim) + params["stem/bias"]
    block = 0
    while f"MixerBlock_{block}/LayerNorm_0/scale" in params:
        p = f"MixerBlock_{block}"
        y = layer_norm(x, params[f"{p}/LayerNorm_0/scale"], params[f"{p}/LayerNorm_0/bias"])
        x = x + mlp(y.transpose(0, 2, 1), params, f"{p}/token_mixing").transpose(0, 2, 1)
        y = layer_norm(x, params[f"{p}/LayerNorm_1/scale"], params[f"{p}/LayerNorm_1/bias"])
        x = x + mlp(y, params, f"{p}/channel_mixing")
        block += 1
    x = layer_norm(x, params["pre_head_layer_norm/scale"], params["pre_head_layer_norm/bias"]).mean(axis=1)
    if "head/kernel" in params:
        x = x @ params["head/kernel"] + params["head/bias"]
    return x


def random_official_params(
    rng, patch_size, hidden_dim, num_blocks, tokens_mlp_dim, channels_mlp_dim, num_patches, num_classes
):
    """Random float32 parameters in the official checkpoint layout (keys and shapes)."""

    def dense(fan_in, fan_out):
        return rng.normal(0, fan_in**-0.5, (fan_in, fan_out)), rng.normal(0, 0.1, (fan_out,))

    params = {}
    params["stem/kernel"] = rng.normal(0, (patch_size * patch_size * 3) ** -0.5, (patch_size, patch_size, 3, hidden_dim))
    params["stem/bias"] = rng.normal(0, 0.1, (hidden_dim,))
    for block in range(num_blocks):
        p = f"MixerBlock_{block}"
        for norm in ("LayerNorm_0", "LayerNorm_1"):
            params[f"{p}/{norm}/scale"] = 1 + rng.normal(0, 0.1, (hidden_dim,))
            params[f"{p}/{norm}/bias"] = rng.normal(0, 0.1, (hidden_dim,))
        for name, width, mlp_dim in (
            ("token_mixing", num_patches, tokens_mlp_dim),
            ("channel_mixing", hidden_dim, channels_mlp_dim),
        ):
            params[f"{p}/{name}/Dense_0/kernel"], params[f"{p}/{name}/Dense_0/bias"] = dense(width, mlp_dim)
            params[f"{p}/{name}/Dense_1/kernel"], params[f"{p}/{name}/Dense_1/bias"] = dense(mlp_dim, width)
    params["pre_head_layer_norm/scale"] = 1 + rng.normal(0, 0.1, (hidden_dim,))
    params["pre_head_layer_norm/bias"] = rng.normal(0, 0.1, (hidden_dim,))
    if num_classes:
        params["head/kernel"], params["head/bias"] = dense(hidden_dim, num_classes)
    return {k: v.astype(np.float32) for k, v in params.items()}
