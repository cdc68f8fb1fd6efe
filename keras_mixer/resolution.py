"""Fine-tuning at a higher resolution than the checkpoint's (the paper's Appendix C).

`expand_token_mixing` adapts the token-mixing MLPs to a finer patch grid; the two helpers
read the grids off a checkpoint and check that the new one is a whole multiple of it.
"""

import numpy as np

from keras_mixer.official_layout import CheckpointError


def checkpoint_grid(num_patches, patch_size, path):
    side = int(round(num_patches ** 0.5))
    if side * side != num_patches:
        raise CheckpointError(
            f"{path!r} was trained on {num_patches} patches, which is not a square grid; pass "
            "the image_size (height, width) it was trained at."
        )
    return side, side


def resolution_factors(checkpoint_grid, target_grid, patch_size):
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


