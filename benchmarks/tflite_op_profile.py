"""Where a LiteRT file's batch-1 time goes, operator by operator, from LiteRT's own profiler.

    python -m benchmarks.tflite_op_profile --variants S/16 --formats fp32 dynamic_int8 int8
    python -m benchmarks.tflite_op_profile --files exports/digits/int8.tflite  # any file
    python -m benchmarks.tflite_op_profile --quick

The files are tflite_latency's: its cache, filled by export's pipeline where a file is
missing (`--cache-dir` as there). Each is run at batch 1 on XNNPACK, on each `--threads`,
under LiteRT's profiler (benchmarks/litert_profiler.py), which has XNNPACK time each of its
operators. One JSON line per file and thread count holds:
- every operator name (XNNPACK's, which names the arithmetic: `QD8, F32, QC8W` is int8
  activations and weights into float32, `QS8` int8 throughout), its calls and milliseconds
  per run, and its share of the operators' sum;
- the matrix products by the part of the Mixer they compute (stem, token mixing, channel
  mixing, head): their time, multiply-adds (benchmarks/flops.py's closed form) and rate, and
  the rate as a fraction of the CPU's peak for the format's arithmetic where PEAKS has a row.
  XNNPACK runs the operators in graph order, so the n-th matrix product of a run is the
  model's n-th: the stem, then four per block, then the head;
- the wall time of as many runs with the profiler stopped, which the operators' sum should
  approach (the profiler rounds each operator down to a whole microsecond).
`--files` profiles any `.tflite` with static input shapes (an export's, batch 1) the same way,
without the parts, which need to know the Mixer.
"""

import collections
import os

from benchmarks import common, litert_profiler, tflite_latency
from benchmarks.flops import mixer_flops, peak

# Operators that are matrix products: XNNPACK's names, then the TFLite ops XNNPACK left.
MATMUL_PREFIXES = (
    "Fully Connected", "Convolution", "Batch Matrix Multiply",
    "FULLY_CONNECTED", "CONV_2D", "BATCH_MATMUL",
)


def is_matmul(name):
    return name.startswith(MATMUL_PREFIXES)


def runs_of(events, runs):
    """The profiled events split into `runs` runs of equal length, in order."""
    if len(events) % runs:
        raise RuntimeError(f"{len(events)} operator events do not split into {runs} runs")
    per_run = len(events) // runs
    return [events[start:start + per_run] for start in range(0, len(events), per_run)]


def operators(events, runs):
    """Per operator name: calls and milliseconds per run and share of the sum, slowest first."""
    totals = collections.defaultdict(lambda: [0, 0])
    for event in events:
        total = totals[event["name"], event["delegated"]]
        total[0] += 1
        total[1] += event["us"]
    summed = sum(us for _, us in totals.values()) or 1
    rows = [
        {"name": name, "delegated": delegated, "calls_per_run": calls / runs,
         "ms": us / runs / 1e3, "share": us / summed}
        for (name, delegated), (calls, us) in totals.items()
    ]
    return sorted(rows, key=lambda row: -row["ms"])


def mixer_parts(events, runs, config, *, image_size, num_classes, precision, threads):
    """The matrix products' milliseconds per run, multiply-adds and rate by Mixer part; None
    where a run's matrix products are not the stem, four per block and the head."""
    per_run = [[event for event in run if is_matmul(event["name"])]
               for run in runs_of(events, runs)]
    blocks = config["num_blocks"]
    if {len(run) for run in per_run} != {2 + 4 * blocks}:
        return None
    # Each matmul's position in a run -> its part: 0 the stem, then token, token, channel,
    # channel per block, the last the head.
    part_of = ["stem", *(["token_mixing"] * 2 + ["channel_mixing"] * 2) * blocks, "head"]
    us = collections.Counter()
    for run in per_run:
        for part, event in zip(part_of, run):
            us[part] += event["us"]
    flops = mixer_flops(**config, image_size=image_size, num_classes=num_classes)
    limit = peak(precision, cores=threads)
    parts = {}
    for part in ("stem", "token_mixing", "channel_mixing", "head"):
        seconds = us[part] / runs / 1e6
        rate = flops[part] / seconds if seconds else None  # FLOPs (2 per multiply-add) per s
        parts[part] = {
            "ms": seconds * 1e3,
            "multiply_adds": flops[part] // 2,
            "g_multiply_adds_per_s": rate / 2e9 if rate else None,
            "fraction_of_peak": rate / limit[1] if rate and limit else None,
        }
    return {"peak_unit": limit[0] if limit else None, **parts}


def input_arrays(path):
    """The file's input: one random image of its input's size, as export's evaluation feeds it."""
    import numpy as np

    from export import evaluate

    detail = evaluate.interpreter(path).get_input_details()[0]
    # common.random_images' pixels, in the file's own input shape (its channels included).
    image = np.random.default_rng(2).uniform(0, 255, detail["shape"]).astype("float32")
    return [evaluate.quantize_input(image, detail)]


def emit_profiles(path, name, args, **mixer):
    """Profiles the file at `path` on each of `args.threads` and emits a line each; `mixer`
    (`variant`, `config`, `image_size`, `num_classes`) names the Mixer it holds, for the
    matrix products by part, or is empty for any other file."""
    inputs = input_arrays(path)
    for threads in args.threads:
        events, wall = litert_profiler.profile(
            path, inputs, threads=threads, runs=args.repeats, warmup=args.warmup)
        rows = operators(events, args.repeats)
        parts = None
        if mixer:
            parts = mixer_parts(events, args.repeats, mixer["config"],
                                image_size=mixer["image_size"],
                                num_classes=mixer["num_classes"], precision=name,
                                threads=threads)
        common.emit(
            "tflite_op_profile",
            {
                "variant": mixer.get("variant"),
                "file": None if mixer else os.path.abspath(path),
                "format": name,
                "threads": threads,
                "image_size": mixer.get("image_size"),
                "runs": args.repeats,
                "operators_ms": sum(row["ms"] for row in rows),
                "wall_ms": {key[:-2]: 1e3 * value for key, value in wall.items()
                            if key.endswith("_s")},
                "matmul_share": sum(row["share"] for row in rows if is_matmul(row["name"])),
                "parts": parts,
                "operators": rows,
            },
            args,
        )


def main(argv=None):
    arguments = common.parser(__doc__.splitlines()[0])
    arguments.add_argument("--variants", nargs="+", default=["S/16"])
    arguments.add_argument("--formats", nargs="+", default=["fp32", "dynamic_int8", "int8"])
    arguments.add_argument("--threads", nargs="+", type=int, default=[1, 2])
    arguments.add_argument("--image-size", type=int, default=224)
    arguments.add_argument("--cache-dir", default=os.path.join(common.RESULTS_DIR, "tflite"))
    arguments.add_argument("--files", nargs="+",
                           help="profile these .tflite files (e.g. an export's) instead")
    arguments.set_defaults(repeats=20, warmup=3)
    args = arguments.parse_args(argv)

    if args.files:
        missing = [path for path in args.files if not os.path.isfile(path)]
        if missing:
            arguments.error(f"--files: no such file: {', '.join(missing)}")
        for path in args.files:
            emit_profiles(path, os.path.splitext(os.path.basename(path))[0], args)
        return
    variants, image_size, num_classes = common.sizes(args)
    calibration_images, fine_tune_steps = 16, 2  # tflite_latency's defaults
    if args.quick:
        calibration_images, fine_tune_steps = 4, 1
        args.cache_dir = os.path.join(args.results_dir, "tflite_quick")
    for variant in variants:
        records = tflite_latency.convert_formats(
            variant, args.formats, image_size=image_size, num_classes=num_classes,
            cache_dir=args.cache_dir, calibration_images=calibration_images,
            fine_tune_steps=fine_tune_steps,
        )
        if variant == "tiny":
            config = dict(common.TINY)
        else:
            from keras_mixer import get_variant

            config = get_variant(variant)
        for name, conversion in records.items():
            emit_profiles(os.path.join(conversion["directory"], f"{name}.tflite"), name, args,
                          variant=variant, config=config, image_size=image_size,
                          num_classes=num_classes)


if __name__ == "__main__":
    main()
