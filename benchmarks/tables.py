"""The Markdown tables of docs/benchmarks.md: one builder per results table, records in,
text out, and the row order and cells (median and spread) they share.

The peer table, which pairs our records with timm's first, is benchmarks.peers'.
"""

from benchmarks import common, flops


def spread(summary, scale=1.0, digits=1):
    """'median (min-max)' of a {median, min, max} dict."""
    median, low, high = (f"{summary[key] * scale:.{digits}f}" for key in ("median", "min", "max"))
    return f"{median} ({low}–{high})"


def markdown(header, rows):
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return "\n".join(lines)


def flops_table(records):
    return markdown(
        [
            "variant",
            "patches",
            "forward GFLOPs/image",
            "GMACs",
            "training GFLOPs/image",
            "Keras layer count agrees",
            "parameters",
        ],
        [
            [
                r["variant"],
                r["num_patches"],
                f"{r['forward'] / 1e9:.2f}",
                f"{r['forward_gmacs']:.2f}",
                f"{r['train_step'] / 1e9:.2f}",
                {True: "yes", False: "NO"}.get(r.get("layer_count_agrees"), "–"),
                f"{r['parameters']:,}" if r.get("parameters") else "–",
            ]
            for r in records
        ],
    )


def variant_label(record):
    """The variant, with the framework when it is not Keras 3 (the tf_keras peer)."""
    framework = record.get("framework", "keras")
    return record["variant"] + ("" if framework == "keras" else f" ({framework})")


def variant_order(variant):
    """A variant's place in the paper's order (unknown names last)."""
    variants = ["tiny", "S/32", "S/16", "B/32", "B/16", "L/32", "L/16", "H/14"]
    return variants.index(variant) if variant in variants else len(variants)


def throughput_order(record):
    """Rows by variant (paper order), framework, precision, mode, GELU (befores first), batch."""
    return (
        variant_order(record["variant"]),
        record.get("framework", "keras") != "keras",
        record["precision"] != "float32",
        ["eager", "graph", "xla"].index(record["mode"]),
        common.GELU_DTYPES[::-1].index(record["gelu_dtype"]),  # the befores first
        record["batch_size"],
    )


def percent_of_peak(record):
    """Achieved GFLOP/s as a share of the peak of the record's own CPU (flops.peak), which
    the line's `fraction_of_peak` predates for lines taken before PEAKS had a row per CPU."""
    limit = flops.peak(record["precision"], record["machine"])
    return f"{100 * record['achieved_gflops'] * 1e9 / limit[1]:.1f}%" if limit else "–"


def throughput_table(records, what):
    rows = []
    for r in records:
        rows.append(
            [
                variant_label(r),
                r["precision"],
                r["mode"],
                r["gelu_dtype"],
                r["batch_size"],
                spread(r["images_per_s"], digits=2),
                f"{r['achieved_gflops']:.0f}",
                percent_of_peak(r),
                f"{r['machine']['load_average_1min']:.1f}",
            ]
        )
    return markdown(
        [
            "variant",
            "precision",
            "mode",
            "GELU dtype",
            "batch",
            f"{what} images/s median (min–max)",
            "GFLOP/s",
            "% of peak",
            "load avg",
        ],
        rows,
    )


def tflite_table(records):
    by_format = {}
    for r in records:
        by_format.setdefault((r["variant"], r["format"]), {})[r["threads"]] = r
    rows = []
    for (variant, name), threads in by_format.items():
        first = next(iter(threads.values()))
        cells = [
            variant,
            name,
            f"{first['size_bytes'] / 1e6:.1f}",
            f"{first['gzip_size_bytes'] / 1e6:.1f}",
            first["delegated_partitions"],
            first["float_ops"],
        ]
        for count in (1, 2):
            cells.append(
                spread(threads[count]["latency_ms"], digits=1) if count in threads else "–"
            )
        cells.append(f"{threads[min(threads)]['achieved_gflops']:.0f}")
        cells.append(f"{first['convert_s']:.0f}")
        rows.append(cells)
    return markdown(
        [
            "variant",
            "format",
            "MB",
            "gzip MB",
            "XNNPACK partitions",
            "float ops",
            "1 thread ms median (min–max)",
            "2 threads ms",
            "GFLOP/s (1 thread)",
            "convert s",
        ],
        rows,
    )


def scaling_table(records, fits):
    rows = [
        [
            r["image_size"],
            r["num_patches"],
            spread({k[:-2]: v for k, v in r["seconds_per_image"].items()}, 1e3, 1),
            f"{r['forward_flops_per_image'] / 1e9:.2f}",
            f"{r['achieved_gflops']:.0f}",
        ]
        for r in records
    ]
    text = markdown(
        ["image size", "patches S", "ms per image median (min–max)", "GFLOPs/image", "GFLOP/s"],
        rows,
    )
    for fit in fits:
        text += (
            f"\n\nFitted exponent of time per image against S "
            f"({fit['variant']}, {fit['precision']}): "
            f"**{fit['time_exponent_fit_range']:.2f}** on S >= {fit['min_patches_for_fit']} "
            f"({fit['time_exponent_all']:.2f} on all sizes); FLOPs: {fit['flops_exponent']:.3f}."
        )
    return text


def op_profile_table(records, top=6):
    rows = []
    for r in records:
        ops = ", ".join(f"{op['op']} {100 * op['share']:.0f}%" for op in r["ops"][:top])
        rows.append(
            [
                r["variant"],
                r["precision"],
                r["gelu_dtype"],
                r["step"],
                r["batch_size"],
                f"{1e3 * r['wall']['median_s']:.0f}",
                f"{r['op_ms_total']:.0f}",
                ops,
                f"{r['machine']['load_average_1min']:.1f}",
            ]
        )
    return markdown(
        [
            "variant",
            "precision",
            "GELU dtype",
            "step",
            "batch",
            "wall ms",
            "sum of op ms",
            "largest op types (share of op time)",
            "load avg",
        ],
        rows,
    )


def input_pipeline_table(records):
    """One row per pipeline: its speed alone, and `fit` fed by it against fed from memory."""
    rows = []
    alone = [r for r in records if r["measure"] == "pipeline"]
    for r in alone:
        fit = [f for f in records if f["measure"] == "fit" and f["pipeline"] == r["pipeline"]]
        fit = fit[-1] if fit else None
        rows.append(
            [
                r["pipeline"],
                f"{r['batch_size']}",
                spread(r["images_per_s"], digits=0),
                f"{fit['variant']} {fit['precision']} {fit['mode']}, batch {fit['batch_size']}"
                if fit
                else "–",
                f"{fit['in_memory_images_per_s']:.1f}" if fit else "–",
                f"{fit['pipeline_images_per_s']:.1f}" if fit else "–",
                f"{100 * fit['fed_fraction']:.0f}%" if fit else "–",
                f"{r['machine']['load_average_1min']:.1f}",
            ]
        )
    return markdown(
        [
            "pipeline",
            "batch",
            "pipeline alone, images/s median (min–max)",
            "fit",
            "fit fed from memory, images/s",
            "fit fed by the pipeline, images/s",
            "pipeline-fed / memory-fed",
            "load avg",
        ],
        rows,
    )


def backends_table(records):
    """TensorFlow's and JAX's images/s side by side (best of the rounds), and JAX / TensorFlow's
    best compiled mode; the rounds' load averages."""
    best, loads = {}, {}
    for r in records:
        row = (r["variant"], r["what"], r["precision"], r["batch_size"])
        column = f"{r['backend']} {r['mode']}"
        rate = r["images_per_s"]["median"]
        best[row, column] = max(best.get((row, column), 0.0), rate)
        loads.setdefault(row, []).append(r["machine"]["load_average_1min"])
    columns = ["tensorflow graph", "tensorflow xla", "jax xla"]
    rows = []
    for row in sorted(dict.fromkeys(row for row, _ in best)):
        rates = [best.get((row, column)) for column in columns]
        tensorflow = max(rate for rate in rates[:2] if rate)
        rows.append(
            [*map(str, row), *(f"{rate:.2f}" if rate else "" for rate in rates),
             f"{rates[2] / tensorflow:.2f}x" if rates[2] else "",
             f"{min(loads[row]):.1f}–{max(loads[row]):.1f}"]
        )
    return markdown(
        ["variant", "what", "precision", "batch", *(f"{c} images/s" for c in columns),
         "JAX / TensorFlow's best", "load avg"],
        rows,
    )


def backends_matmul_table(records):
    """GFLOP/s of the one matmul per backend and dtype: best of the rounds."""
    best = {}
    for r in records:
        best[r["backend"], r["dtype"]] = max(best.get((r["backend"], r["dtype"]), 0.0), r["gflops"])
    backends = sorted({backend for backend, _ in best}, reverse=True)  # tensorflow, jax
    return markdown(
        ["backend", "float32 GFLOP/s", "bfloat16 GFLOP/s"],
        [[b, *(f"{best.get((b, d), 0):.0f}" for d in ("float32", "bfloat16"))] for b in backends],
    )
