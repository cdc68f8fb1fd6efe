"""FLOPs per image of a Mixer, counted two ways, and this CPU's peak.

    python -m benchmarks.flops                 # every paper variant at 224
    python -m benchmarks.flops --quick         # the tiny config

Counting rule: 2 FLOPs per multiply-add, matrix products only (the patch-embedding
convolution, the four Dense layers of every block and the head). Biases, LayerNorm, GELU,
the residual adds, the transposes and the pooling are left out: they are O(activations), not
O(activations x width), and together stay near 1% of the total (`elementwise_estimate`
gives a generous count of them). With S patches, C = hidden_dim, D_S = tokens_mlp_dim,
D_C = channels_mlp_dim, P = patch_size, L = num_blocks, K = num_classes:

    stem            2 S (P^2 3) C
    token mixing    2 x 2 C S D_S    per block (C columns of length S -> D_S -> S)
    channel mixing  2 x 2 S C D_C    per block (S rows of length C -> D_C -> C)
    head            2 C K

Every term is linear in S (D_S does not depend on S), the paper's claim (Section 2).
A training step costs 3x the forward matmuls (forward, gradient of the inputs, gradient of
the weights) less the input gradient of the stem, which nothing needs.

Cross-check: `layer_flops` walks the built Keras model instead and reads every Conv2D and
Dense kernel and input shape; the two counts must agree exactly. For B/16 both give
12.60 G multiply-adds, the 12.6 GMACs of timm's model card (mixer_b16_224).
"""

from benchmarks import common

# Per-core peak FLOPs per cycle on this CPU (Intel Xeon with AVX-512 and AMX, a Sapphire
# Rapids-class core): float32, two 512-bit FMA ports x 16 lanes x 2 FLOPs; bfloat16 on AMX,
# 1024 FLOPs per cycle (Intel's figure for AMX-BF16, 16x the AVX-512 float32 rate). The clock
# is the one /proc/cpuinfo reports (the nominal 2.6 GHz under KVM; turbo unknown, and AVX-512/
# AMX may run below nominal), so "fraction of peak" is against nominal-clock peak.
PEAK_FLOPS_PER_CYCLE = {"float32": 64, "mixed_bfloat16": 1024}
# int8 ops per cycle per core: AVX-512 VNNI (2 ports x 16 lanes x 4 MACs x 2) and AMX-INT8
# (Intel's 2048). XNNPACK's dynamic-range int8 S/16 reaches the VNNI figure at nominal clock
# on one thread, so it uses AMX or runs above 2.6 GHz; the LiteRT table is read against both.
PEAK_OPS_PER_CYCLE_INT8 = {"avx512_vnni": 256, "amx_int8": 2048}


def num_patches(image_size, patch_size):
    return (image_size // patch_size) ** 2


def mixer_flops(
    *,
    patch_size,
    hidden_dim,
    num_blocks,
    tokens_mlp_dim,
    channels_mlp_dim,
    image_size,
    num_classes,
    num_channels=3,
    include_top=True,
):
    """Forward FLOPs per image from the architecture (the closed form above), by part.

    Example:
    >>> mixer_flops(**get_variant("B/16"), image_size=224, num_classes=1000)["forward"]
    25203535872
    """
    tokens, channels = num_patches(image_size, patch_size), hidden_dim
    parts = {
        "stem": 2 * tokens * patch_size * patch_size * num_channels * channels,
        "token_mixing": num_blocks * 2 * 2 * channels * tokens * tokens_mlp_dim,
        "channel_mixing": num_blocks * 2 * 2 * tokens * channels * channels_mlp_dim,
        "head": 2 * channels * num_classes if include_top else 0,
    }
    forward = sum(parts.values())
    # LayerNorm (~8/element), GELU (~10/element), residual adds, biases, pooling: generous.
    elementwise = num_blocks * (
        2 * 8 * tokens * channels
        + 10 * channels * tokens_mlp_dim
        + 10 * tokens * channels_mlp_dim
        + 2 * tokens * channels
        + 2 * channels * tokens_mlp_dim
        + 2 * tokens * channels_mlp_dim
        + channels * tokens
        + tokens * channels
    )
    return {
        **parts,
        "forward": forward,
        "train_step": 3 * forward - parts["stem"],
        "num_patches": tokens,
        "elementwise_estimate": elementwise,
    }


def layer_flops(model):
    """Forward matmul FLOPs per image read off a built Keras model's Conv2D and Dense layers."""
    import math

    total = 0
    for layer in model.layers:
        kind = type(layer).__name__
        if kind == "Conv2D":
            _, height, width, _ = layer.output.shape
            total += 2 * height * width * math.prod(layer.kernel.shape)
        elif kind == "Dense":
            rows = math.prod(layer.input.shape[1:-1])  # every position the Dense is applied to
            total += 2 * rows * math.prod(layer.kernel.shape)
    return total


def peak_flops(precision, cores=None, mhz=None):
    """Nominal peak FLOP/s of this machine for `precision` (see PEAK_FLOPS_PER_CYCLE)."""
    info = common.machine()
    cores = cores or info["cores"]
    mhz = mhz or info["mhz"] or 2600.0
    return cores * mhz * 1e6 * PEAK_FLOPS_PER_CYCLE[precision]


def utilization(flops_per_second, precision):
    """`achieved_gflops` and `fraction_of_peak` (of `peak_flops(precision)`) for a JSON line."""
    return {
        "achieved_gflops": flops_per_second / 1e9,
        "fraction_of_peak": flops_per_second / peak_flops(precision),
    }


def main(argv=None):
    arguments = common.parser(__doc__.splitlines()[0])
    arguments.add_argument(
        "--variants", nargs="+", default=["S/32", "S/16", "B/32", "B/16", "L/32", "L/16", "H/14"]
    )
    arguments.add_argument("--image-size", type=int, default=224)
    arguments.add_argument("--num-classes", type=int, default=1000)
    arguments.add_argument(
        "--cross-check",
        nargs="*",
        default=["S/32", "S/16", "B/16"],
        help="variants whose Keras model is built to count its layers too",
    )
    args = arguments.parse_args(argv)
    from keras_mixer import get_variant

    if args.quick:
        variants, image_size, num_classes = (
            ["tiny"],
            common.TINY_IMAGE_SIZE,
            common.TINY_NUM_CLASSES,
        )
        cross_check = {"tiny"}
    else:
        variants, image_size, num_classes = args.variants, args.image_size, args.num_classes
        cross_check = set(args.cross_check)
    info = common.machine()
    for variant in variants:
        config = dict(common.TINY) if variant == "tiny" else get_variant(variant)
        flops = mixer_flops(**config, image_size=image_size, num_classes=num_classes)
        record = {
            "variant": variant,
            "image_size": image_size,
            "num_classes": num_classes,
            "config": config,
            **flops,
            "forward_gmacs": flops["forward"] / 2e9,
        }
        if variant in cross_check:
            common.set_precision("float32")
            model, _ = common.build_model(variant, image_size=image_size, num_classes=num_classes)
            record["layer_count_forward"] = layer_flops(model)
            record["layer_count_agrees"] = record["layer_count_forward"] == flops["forward"]
            record["parameters"] = model.count_params()
        common.emit("flops", record, args)
    for precision in PEAK_FLOPS_PER_CYCLE:
        common.emit(
            "peak",
            {
                "precision": precision,
                "flops_per_cycle_per_core": PEAK_FLOPS_PER_CYCLE[precision],
                "cores": info["cores"],
                "mhz": info["mhz"],
                "peak_gflops": peak_flops(precision) / 1e9,
            },
            args,
        )


if __name__ == "__main__":
    main()
