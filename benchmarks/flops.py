"""FLOPs per image of a Mixer, counted two ways, and the CPU's peak (PEAKS).

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

# Nominal peak ops per cycle per core (a multiply-add is 2 ops), one row per CPU kind and one
# entry per execution unit: {unit: (arithmetic, ops per cycle per core)}. The clock is the one
# /proc/cpuinfo reports (the nominal 2.6 GHz under KVM on both machines here; turbo is not
# visible inside the VM, and wide vector code may run below nominal), so every "peak" and
# "limit" is at nominal clock, and a single thread on turbo can beat it.
PEAKS = {
    # Intel Xeon with AVX-512 and AMX (Sapphire Rapids class): 2 x 512-bit FMA ports; AMX-BF16
    # 1024 and AMX-INT8 2048 are Intel's figures; VNNI: 2 ports x 16 lanes x 4 multiply-adds.
    "sapphire_rapids": {
        "AVX-512 FMA": ("float32", 64),
        "AMX-BF16": ("bfloat16", 1024),
        "AVX-512 VNNI": ("int8", 256),
        "AMX-INT8": ("int8", 2048),
    },
    # AMD Zen 4 (EPYC Genoa): AVX-512 issued on two 256-bit pipes, so float32 is 2 x 8 lanes
    # x 2; VDPBF16PS does 2 bfloat16 multiply-adds per 32-bit lane, VPDPBUSD 4 int8 ones.
    "zen4": {
        "AVX-512 FMA": ("float32", 32),
        "AVX512-BF16": ("bfloat16", 64),
        "AVX-512 VNNI": ("int8", 128),
    },
}
# What a record's precision, or a LiteRT format, multiplies in. XNNPACK computes fp16 and
# weight-only int8 files in float32; int4 blockwise weights meet the dynamically quantized
# int8 activations in int8 dot products. Absent (int16x8: the interpreter's reference kernels,
# no SIMD): no limit is claimed.
ARITHMETIC = {
    "float32": "float32",
    "fp32": "float32",
    "fp16": "float32",
    "weight_only_int8": "float32",
    "mixed_bfloat16": "bfloat16",
    "autocast_bfloat16": "bfloat16",
    **dict.fromkeys(
        ["dynamic_int8", "int8", "qat_int8", "pruned_int8", "clustered_int8",
         "int8_keras_graph", "dynamic_int4_blockwise"],
        "int8",
    ),
}


def cpu_kind(machine):
    """The PEAKS row for a record's `machine` (common.machine()), or None if it has none."""
    if machine.get("amx_bf16"):
        return "sapphire_rapids"
    # AVX-512 on an AMD CPU is Zen 4 (family 25) or Zen 5 (26, full 512-bit pipes: a row of
    # its own); lines written before the family was recorded all come from Zen 4.
    if machine.get("cpu", "").startswith("AMD") and machine.get("avx512f"):
        return "zen4" if machine.get("cpu_family") in (None, 25) else None
    return None


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


def peak(precision, machine=None, cores=None):
    """`(unit, ops per second)`: the fastest PEAKS unit for what `precision` (a precision or a
    LiteRT format) multiplies in, on `cores` cores (default all) of `machine` (default this
    one) at its reported clock; None where PEAKS has no row or the arithmetic no unit."""
    machine = machine or common.machine()
    units = PEAKS.get(cpu_kind(machine), {})
    arithmetic = ARITHMETIC.get(precision)
    rates = [(ops, unit) for unit, (kind, ops) in units.items() if kind == arithmetic]
    if not rates:
        return None
    ops, unit = max(rates)
    return unit, (cores or machine["cores"]) * (machine["mhz"] or 2600.0) * 1e6 * ops


def utilization(flops_per_second, precision):
    """`achieved_gflops` and `fraction_of_peak` (of `peak(precision)`; None without a peak)
    for a JSON line."""
    limit = peak(precision)
    return {
        "achieved_gflops": flops_per_second / 1e9,
        "fraction_of_peak": flops_per_second / limit[1] if limit else None,
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
    for precision in ("float32", "mixed_bfloat16", "int8"):
        limit = peak(precision, info)
        if limit:
            common.emit(
                "peak",
                {
                    "precision": precision,
                    "cpu_kind": cpu_kind(info),
                    "unit": limit[0],
                    "cores": info["cores"],
                    "mhz": info["mhz"],
                    "peak_gflops": limit[1] / 1e9,
                },
                args,
            )

if __name__ == "__main__":
    main()
