"""How inference cost grows with the number of patches, at a fixed patch size.

    python -m benchmarks.patch_scaling                     # S/16 at 64..384 px, float32 graph
    python -m benchmarks.patch_scaling --quick

The paper (Section 2) says Mixer's cost is linear in the number of patches S, because the
token-mixing width D_S does not depend on S. Here the same variant is built at each image
size (S = (size / patch)^2) and timed with `benchmarks.inference_throughput`'s
`predict_on_batch` loop; a least-squares line through log(time per image) against log(S)
gives the exponent (1 = linear, 2 = quadratic like self-attention), fitted on all sizes and
on the sizes with at least 64 patches (the small ones are dominated by fixed per-call costs).
"""

from benchmarks import common
from benchmarks.flops import mixer_flops
from benchmarks.inference_throughput import inference_seconds


def fitted_exponent(num_patches, values):
    """Slope of log(values) against log(num_patches), by least squares."""
    import numpy as np

    slope, _ = np.polyfit(np.log(num_patches), np.log(values), 1)
    return float(slope)


def main(argv=None):
    arguments = common.parser(__doc__.splitlines()[0])
    arguments.add_argument("--variant", default="S/16")
    arguments.add_argument(
        "--image-sizes", nargs="+", type=int, default=[64, 96, 128, 160, 192, 224, 256, 320, 384]
    )
    arguments.add_argument("--batch-size", type=int, default=8)
    arguments.add_argument("--precision", choices=common.PRECISIONS, default="float32")
    arguments.add_argument("--min-patches-for-fit", type=int, default=64)
    args = arguments.parse_args(argv)

    variant, sizes, num_classes = args.variant, args.image_sizes, 1000
    if args.quick:
        variant, sizes, num_classes = "tiny", [8, 16, 32], common.TINY_NUM_CLASSES
        args.repeats, args.warmup, args.min_patches_for_fit = 1, 1, 1
    rows = []
    for image_size in sizes:
        common.set_precision(args.precision)
        model, config = common.build_model(variant, image_size=image_size, num_classes=num_classes)
        images = common.random_images(args.batch_size, image_size)
        seconds = inference_seconds(
            model, images, mode="graph", repeats=args.repeats, warmup=args.warmup
        )
        flops = mixer_flops(**config, image_size=image_size, num_classes=num_classes)
        per_image = {
            key: value / args.batch_size for key, value in seconds.items() if key.endswith("_s")
        }
        rows.append((flops["num_patches"], per_image["median_s"], flops["forward"]))
        common.emit(
            "patch_scaling",
            {
                "variant": variant,
                "precision": args.precision,
                "batch_size": args.batch_size,
                "image_size": image_size,
                "patch_size": config["patch_size"],
                "num_patches": flops["num_patches"],
                "seconds_per_image": per_image,
                "forward_flops_per_image": flops["forward"],
                "achieved_gflops": flops["forward"] / per_image["median_s"] / 1e9,
            },
            args,
        )
    fit = [row for row in rows if row[0] >= args.min_patches_for_fit]
    common.emit(
        "patch_scaling_fit",
        {
            "variant": variant,
            "precision": args.precision,
            "batch_size": args.batch_size,
            "image_sizes": sizes,
            "num_patches": [row[0] for row in rows],
            "time_exponent_all": fitted_exponent([r[0] for r in rows], [r[1] for r in rows]),
            "time_exponent_fit_range": fitted_exponent([r[0] for r in fit], [r[1] for r in fit])
            if len(fit) > 1
            else None,
            "min_patches_for_fit": args.min_patches_for_fit,
            "flops_exponent": fitted_exponent([r[0] for r in rows], [r[2] for r in rows]),
        },
        args,
    )
    common.set_precision("float32")


if __name__ == "__main__":
    main()
