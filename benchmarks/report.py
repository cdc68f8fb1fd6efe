"""Tables (Markdown) and plots (PNG) from the results the benchmarks appended.

    python -m benchmarks.report                      # prints the tables, writes docs/*.png
    python -m benchmarks.report --write docs/benchmarks.md   # and fills the doc's tables
    python -m benchmarks.report --results-dir DIR --docs-dir DIR --quick

With --write, each table replaces the text between `<!-- begin NAME -->` and
`<!-- end NAME -->` in the given Markdown file (NAME: flops, train, inference, backends, tflite,
scaling, op_profile, input_pipeline, peer); the prose around them is left alone.

For each measurement key (variant, mode, precision, ...) the latest line wins, so a rerun
replaces a number rather than adding a row. Quick (smoke) lines are ignored unless --quick.
"""

import argparse
import json
import os

from benchmarks import common, flops

DOCS_DIR = os.path.join(os.path.dirname(common.RESULTS_DIR), "..", "docs")

KEYS = {
    "flops": ("variant", "image_size"),
    "train_throughput": ("variant", "precision", "mode", "gelu_dtype", "batch_size", "image_size"),
    "inference_throughput": (
        "variant",
        "framework",
        "precision",
        "mode",
        "gelu_dtype",
        "batch_size",
        "image_size",
    ),
    "tflite_latency": ("variant", "format", "threads", "image_size"),
    "patch_scaling": ("variant", "precision", "image_size", "batch_size"),
    "patch_scaling_fit": ("variant", "precision", "batch_size"),
    "op_profile": ("variant", "precision", "gelu_dtype", "step", "batch_size", "image_size"),
    "backends": (
        "variant", "backend", "what", "mode", "precision", "batch_size", "image_size", "round"
    ),
    "backends_matmul": ("backend", "dtype", "round"),
    "input_pipeline": (
        "pipeline", "measure", "variant", "precision", "mode", "batch_size", "image_size"
    ),
    "peer_timm": ("variant", "what", "precision", "batch_size", "threads", "image_size", "round"),
}


def load(results_dir, table, quick=False, by_round=False):
    """The latest record per key of `results_dir/<table>.jsonl`, in first-seen order.

    `by_round`: the round (`--round`) is part of the key, so each round of an alternated run
    keeps its own line (the peer table pairs ours and timm's by round).
    """
    path = os.path.join(results_dir, f"{table}.jsonl")
    keys = KEYS[table] + (("round",) if by_round and "round" not in KEYS[table] else ())
    latest = {}
    if not os.path.exists(path):
        return []
    with open(path) as lines:
        for line in lines:
            record = json.loads(line)
            if record.get("quick", False) != quick:
                continue
            latest[tuple(str(record.get(key)) for key in keys)] = record
    return list(latest.values())


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


# The side-by-side with timm: for each of timm's figures (what, precision, batch size), our
# table and which of its records compete; ours is the best of them (the highest median images/s),
# measured in the same round as timm's. Throughput: our compiled modes as shipped (graph and
# XLA, the fused Dense-GELU; float32 against timm's float32, mixed_bfloat16 against its bfloat16
# autocast). Batch 1: the LiteRT .tflite file on as many XNNPACK threads as timm's torch threads
# (fp32 against timm's float32, the better of dynamic_int8 and int8 against its dynamic int8).
COMPILED = ("graph", "xla")
PEER_ROWS = [
    (("training", "float32", 32), "train_throughput",
     {"precision": ("float32",), "mode": COMPILED, "gelu_dtype": ("fused",)}),
    (("training", "autocast_bfloat16", 32), "train_throughput",
     {"precision": ("mixed_bfloat16",), "mode": COMPILED, "gelu_dtype": ("fused",)}),
    (("inference", "float32", 32), "inference_throughput",
     {"framework": ("keras",), "precision": ("float32",), "mode": COMPILED,
      "gelu_dtype": ("fused",)}),
    (("inference", "autocast_bfloat16", 32), "inference_throughput",
     {"framework": ("keras",), "precision": ("mixed_bfloat16",), "mode": COMPILED,
      "gelu_dtype": ("fused",)}),
    (("inference", "float32", 1), "tflite_latency", {"format": ("fp32",)}),
    (("inference", "dynamic_int8", 1), "tflite_latency", {"format": ("dynamic_int8", "int8")}),
]
# What a record of ours shares with timm's to be set against it, besides variant, size and round.
SAME_AS_TIMM = {
    "train_throughput": ("batch_size",),
    "inference_throughput": ("batch_size",),
    "tflite_latency": ("threads",),
}


def images_per_s(record):
    """A record's {median, min, max} images/s; LiteRT's lines give batch-1 milliseconds."""
    if "images_per_s" in record:
        return record["images_per_s"]
    latency = record["latency_ms"]
    return {"median": 1e3 / latency["median"], "min": 1e3 / latency["max"],
            "max": 1e3 / latency["min"]}


def our_configuration(record):
    """What of ours a peer row sets against timm: a .tflite file, or a mode and precision."""
    if "format" in record:
        return f"{record['format']}.tflite"
    return f"{record['mode']} {record['precision']}"


def same_round(peer, record, table):
    """Whether our `record` of `table` is measured as timm's `peer` is: same variant, size,
    round and what SAME_AS_TIMM names."""
    same = ("variant", "image_size", "round", *SAME_AS_TIMM[table])
    return all(record.get(key) == peer[key] for key in same)


def our_best(peer, table, wanted, ours):
    """Our fastest record of `table` set against timm's record `peer`, or None."""
    candidates = [
        r for r in ours[table]
        if same_round(peer, r, table)
        and all(r.get(key) in values for key, values in wanted.items())
    ]
    return max(candidates, key=lambda r: images_per_s(r)["median"], default=None)


def peer_rows(peers, ours):
    """keras-mixer's best beside timm's for each of timm's figures (PEER_ROWS), paired by round
    (only lines of an alternated run, with `--round`; a figure with nothing of ours in its round
    has no row), in the table's order.

    `peers`: the peer_timm records; `ours`: {table: records, by round} of our three tables.
    Each row: `key` (variant, what, precision, batch, threads, image size), `pairs` (timm's
    line and ours, one pair per round) and `timm`, `ours`: the best of the rounds on each side.
    """
    rows = {}
    for peer in peers:
        figure = (peer["what"], peer["precision"], peer["batch_size"])
        spec = next((row for row in PEER_ROWS if row[0] == figure), None)
        if spec is None or peer.get("round") is None:
            continue
        mine = our_best(peer, spec[1], spec[2], ours)
        if mine is not None:
            key = (peer["variant"], *figure, peer["threads"], peer["image_size"])
            rows.setdefault(key, []).append((peer, mine))
    figures = [row[0] for row in PEER_ROWS]

    def order(key):
        return variant_order(key[0]), figures.index(key[1:4]), key[4]

    def fastest(records):
        return max(records, key=lambda r: images_per_s(r)["median"])

    return [
        {"key": key, "pairs": rows[key], "timm": fastest(peer for peer, _ in rows[key]),
         "ours": fastest(mine for _, mine in rows[key])}
        for key in sorted(rows, key=order)
    ]


def ratio(row):
    """Ours / timm's median images/s of a peer row: best round against best round."""
    return images_per_s(row["ours"])["median"] / images_per_s(row["timm"])["median"]


def ratios_per_round(row):
    return [
        images_per_s(mine)["median"] / images_per_s(peer)["median"]
        for peer, mine in sorted(row["pairs"], key=lambda pair: pair[0]["round"])
    ]


def peer_table(peers, ours):
    """The peer rows (`peer_rows`) as a Markdown table; the window's time, CPU and load below."""
    rows, lines = peer_rows(peers, ours), []
    for row in rows:
        loads = [r["machine"]["load_average_1min"] for pair in row["pairs"] for r in pair]
        variant, what, precision, batch, threads, _ = row["key"]
        mine_best = row["ours"]
        lines.append([
            variant, what, batch, threads,
            our_configuration(mine_best),
            spread(images_per_s(mine_best), digits=2),
            precision,
            spread(images_per_s(row["timm"]), digits=2),
            f"**{ratio(row):.2f}x**",
            ", ".join(f"{value:.2f}" for value in ratios_per_round(row)),
            f"{min(loads):.1f}–{max(loads):.1f}",
        ])
    table = markdown(
        ["variant", "what", "batch", "timm threads", "keras-mixer's best",
         "keras-mixer images/s median (min–max)", "timm (eager PyTorch)",
         "timm images/s median (min–max)", "ours / timm", "ours / timm per round", "load avg"],
        lines,
    )
    used = [r for row in rows for pair in row["pairs"] for r in pair]
    return table + "\n\n" + peer_window(used)


def peer_window(records):
    """One sentence: when, on which CPU and clock, and how loaded, the paired lines were taken."""
    if not records:
        return "No round of an alternated run has both sides yet (benchmarks/full_run.sh)."
    times = sorted(r["time_utc"] for r in records)
    cpus = sorted({
        f"{r['machine']['cpu']} ({r['machine']['cores']} cores, "
        + (f"{r['machine']['mhz']:.0f} MHz" if r["machine"].get("mhz") else "clock unknown")
        + " in /proc/cpuinfo)"
        for r in records
    })
    loads = [r["machine"]["load_average_1min"] for r in records]
    rounds = sorted({r["round"] for r in records})
    versions = sorted({
        f"torch {r['machine']['torch']}, timm {r['machine']['timm']}"
        for r in records if "timm" in r["machine"]
    })
    return (
        f"Window: {times[0]} to {times[-1]} (round{'s' if len(rounds) > 1 else ''} "
        f"{', '.join(map(str, rounds))}), on "
        f"{' and '.join(cpus)}; 1-minute load average {min(loads):.1f}–{max(loads):.1f}; "
        f"at most {max(r['machine']['other_pytest_processes'] for r in records)} pytest "
        f"processes; {'; '.join(versions)}."
    )


def write_sections(path, sections):
    """Replaces `<!-- begin NAME -->...<!-- end NAME -->` in the file at `path` for each section."""
    import re

    with open(path) as file:
        text = file.read()
    for name, body in sections.items():
        pattern = re.compile(rf"(<!-- begin {name} -->\n).*?(<!-- end {name} -->)", re.DOTALL)
        text = pattern.sub(
            lambda match, body=body: match.group(1) + body + "\n" + match.group(2), text
        )
    with open(path, "w") as file:
        file.write(text)


def pyplot():
    """matplotlib's pyplot on the Agg backend: the report runs without a display."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def limit_images_per_s(record, precision=None, cores=None):
    """`(unit, images/s)` at the hardware peak for one of our records: the peak (flops.peak)
    of its CPU at its clock for `precision` (default the record's precision or LiteRT format)
    on `cores` (default all), over its FLOPs per image (a training step's when it has them);
    None where flops.PEAKS claims no limit."""
    limit = flops.peak(precision or record.get("precision") or record["format"],
                       record["machine"], cores)
    if limit is None:
        return None
    per_image = record.get("train_flops_per_image", record.get("forward_flops_per_image"))
    return limit[0], limit[1] / per_image


def limit_label(limits, records):
    """The legend entry of the limit marks: which unit bounds which arithmetic, at what clock."""
    arithmetic = {unit: kind for row in flops.PEAKS.values() for unit, (kind, _) in row.items()}
    order = list(dict.fromkeys(flops.ARITHMETIC.values()))
    units = sorted({unit for unit, _ in filter(None, limits)},
                   key=lambda unit: (order.index(arithmetic[unit]), unit))
    clocks = sorted({(r["machine"].get("mhz") or 2600.0) / 1e3 for r in records})
    return (f"hardware limit at {' and '.join(f'{clock:.2f}' for clock in clocks)} GHz nominal ("
            + ", ".join(f"{arithmetic[unit]}: {unit}" for unit in units) + ")")


def draw_limits(axes, xs, width, values, label, cap=None):
    """A black mark over each bar at its limit (None: no mark); a limit above `cap` is marked
    at `cap` with its value, so one far-off limit does not flatten the bars."""
    marks = [(x, value) for x, value in zip(xs, values) if value is not None]
    if not marks:
        return
    heights = [min(value, cap) if cap else value for _, value in marks]
    axes.hlines(heights, [x - width / 2 for x, _ in marks], [x + width / 2 for x, _ in marks],
                colors="black", linewidth=2, label=label)
    for (x, value), height in zip(marks, heights):
        if height < value:
            axes.annotate(f"↑ {value:.0f}", (x, height), ha="center", va="bottom", fontsize=7,
                          xytext=(0, 2), textcoords="offset points")


def window(records):
    """'CPU (N cores), day first–last time UTC' of the records a plot draws, for its title."""
    machines = sorted({f"{r['machine']['cpu']} ({r['machine']['cores']} cores)" for r in records})
    times = sorted(r["time_utc"] for r in records)
    days, clocks = sorted({t[:10] for t in times}), sorted({times[0][11:16], times[-1][11:16]})
    return f"{' and '.join(machines)}, {', '.join(days)} {'–'.join(clocks)} UTC"


PRECISION_COLORS = {"float32": "tab:blue", "mixed_bfloat16": "tab:green"}


def plot_throughput(records, path, title):
    """One bar per record (median, min–max), its value written in it, and the images/s its
    precision's peak allows (the limit of the line's CPU) marked over it."""
    plt = pyplot()
    labels = [
        f"{variant_label(r)}\n{r['precision'].replace('mixed_', '')}\n{r['mode']}\n"
        f"batch {r['batch_size']}"
        # "Slow paths" 1 and 4 in docs/benchmarks.md: the MLP as it was before each fix.
        + {"compute": "\nbefore\nfix 1", "float32": "\nbefore\nfix 4"}.get(r["gelu_dtype"], "")
        for r in records
    ]
    medians = [r["images_per_s"]["median"] for r in records]
    errors = [
        [m - r["images_per_s"]["min"] for m, r in zip(medians, records)],
        [r["images_per_s"]["max"] - m for m, r in zip(medians, records)],
    ]
    limits = [limit_images_per_s(r) for r in records]
    figure, axes = plt.subplots(figsize=(max(6.5, 0.75 * len(records)), 4.8))
    xs = range(len(records))
    bars = axes.bar(xs, medians, yerr=errors, capsize=3, width=0.7,
                    color=[PRECISION_COLORS.get(r["precision"], "tab:gray") for r in records])
    axes.bar_label(bars, [f"{m:.1f}" for m in medians], label_type="center", color="white",
                   fontsize=8, fontweight="bold")
    cap = 3 * max(r["images_per_s"]["max"] for r in records)
    if any(limits):
        draw_limits(axes, xs, 0.8, [limit and limit[1] for limit in limits],
                    limit_label(limits, records), cap)
        axes.legend(fontsize=8, loc="upper left")
        axes.set_ylim(0, 1.2 * axes.get_ylim()[1])  # room for the legend
    axes.set_xticks(xs, labels, fontsize=8)
    axes.set_ylabel("images/s (median, min–max)")
    axes.set_title(f"{title}\n{window(records)}", fontsize=10)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


def latency_ms(record):
    """A record's batch-1 {median, min, max} milliseconds (timm's lines give images/s)."""
    if isinstance(record.get("latency_ms"), dict):
        return record["latency_ms"]
    rate = images_per_s(record)
    return {"median": 1e3 / rate["median"], "min": 1e3 / rate["max"], "max": 1e3 / rate["min"]}


# The LiteRT plot's x axis: formats grouped by what they multiply in (flops.ARITHMETIC).
ARITHMETIC_BLOCKS = {"float32": "float32 arithmetic", "int8": "int8 arithmetic",
                     None: "no limit claimed\n(reference kernels)"}
# Beside which of our formats timm's batch-1 figure is drawn: the first of those its peer row
# sets against it (PEER_ROWS): timm's float32 beside fp32, its dynamic int8 beside dynamic_int8.
TIMM_BESIDE = {
    wanted["format"][0]: figure[1] for figure, table, wanted in PEER_ROWS
    if table == "tflite_latency"
}
TFLITE_COLORS = {("keras-mixer", 1): "tab:blue", ("keras-mixer", 2): "lightsteelblue",
                 ("timm", 1): "tab:orange", ("timm", 2): "navajowhite"}


def tflite_groups(records, peers):
    """The x groups of one variant's LiteRT panel, `(label, who, arithmetic, {threads:
    (record drawn, our record for its limit, precision)})`: our formats by arithmetic, each
    timm figure after the format it is set against, from the same round as our line there
    (none where our line has no round)."""
    formats = {}
    for r in records:
        formats.setdefault(r["format"], {})[r["threads"]] = r
    blocks = list(ARITHMETIC_BLOCKS)
    groups = []
    for name in sorted(formats, key=lambda name: blocks.index(flops.ARITHMETIC.get(name))):
        arithmetic = flops.ARITHMETIC.get(name)
        groups.append((name, "keras-mixer", arithmetic,
                       {threads: (r, r, name) for threads, r in formats[name].items()}))
        precision = TIMM_BESIDE.get(name)
        timm = {
            threads: (peer, mine, precision)
            for threads, mine in formats[name].items()
            for peer in peers
            if (peer["what"], peer["precision"], peer["batch_size"]) == ("inference", precision, 1)
            and peer.get("round") is not None and same_round(peer, mine, "tflite_latency")
        }
        if timm:
            groups.append((f"timm\n{precision}", "timm", arithmetic, timm))
    return groups


def threads_label(who, threads):
    return f"{who}, {threads} thread{'s' if threads > 1 else ''}"


def draw_latency_bar(axes, x, width, record, who, threads, floor):
    """One latency bar (median, min–max), its floor (None: none) marked over it, and its value
    written above both."""
    latency = latency_ms(record)
    axes.bar(x, latency["median"], width, color=TFLITE_COLORS[who, threads], edgecolor="black",
             linewidth=0.5, label=threads_label(who, threads))
    axes.errorbar(x, latency["median"], [[latency["median"] - latency["min"]],
                  [latency["max"] - latency["median"]]], color="black", linewidth=0.8)
    draw_limits(axes, [x], width, [floor], "limit")
    median = latency["median"]
    axes.annotate(f"{median:.0f}" if median >= 100 else f"{median:.1f}",
                  (x, max(latency["max"], floor or 0)), ha="center", va="bottom", fontsize=7,
                  xytext=(0, 2), textcoords="offset points")


def plot_tflite(records, peers, path):
    """One panel per variant: batch-1 latency per LiteRT format on 1 and 2 XNNPACK threads
    (the latest line of each), its value above each bar, timm's batch-1 figures beside the
    formats they are set against, and each bar's floor (the hardware limit of its arithmetic
    on its threads) marked over it."""
    plt = pyplot()
    variants = sorted({r["variant"] for r in records}, key=variant_order)
    figure, panels = plt.subplots(len(variants), 1, figsize=(11, 3.6 * len(variants) + 0.8),
                                  squeeze=False, layout="constrained")
    width, drawn, limits, legend = 0.4, [], [], {}
    for axes, variant in zip(panels[:, 0], variants):
        groups = tflite_groups([r for r in records if r["variant"] == variant], peers)
        for index, (_, who, _, bars) in enumerate(groups):
            for threads, (record, mine, precision) in sorted(bars.items()):
                limit = limit_images_per_s(mine, precision, threads)
                draw_latency_bar(axes, index + (threads - 1.5) * width, width, record, who,
                                 threads, limit and 1e3 / limit[1])
                drawn.append(record)
                limits.append(limit)
        for handle, label in zip(*axes.get_legend_handles_labels()):
            legend.setdefault(label, handle)
        # A block per arithmetic, named at its top: the marks in it are that unit's limit.
        for arithmetic, name in ARITHMETIC_BLOCKS.items():
            indices = [i for i, group in enumerate(groups) if group[2] == arithmetic]
            if indices and indices[-1] < len(groups) - 1:
                axes.axvline(indices[-1] + 0.5, color="gray", linewidth=0.5)
            if indices:
                axes.text((indices[0] + indices[-1]) / 2, 0.96, name, ha="center", va="top",
                          fontsize=8, color="dimgray", transform=axes.get_xaxis_transform())
        axes.set_yscale("log")
        axes.yaxis.set_major_formatter("{x:g}")
        axes.yaxis.set_minor_formatter("")
        axes.set_ylim(top=axes.get_ylim()[1] * 3)  # room for the block names
        axes.set_xlim(-0.6, len(groups) - 0.4)
        axes.set_xticks(range(len(groups)), [label for label, _, _, _ in groups], fontsize=8)
        axes.set_ylabel("ms per image (median, min–max)", fontsize=9)
        axes.set_title(f"{variant}: LiteRT batch-1 latency, lower is better", fontsize=10)
    order = [threads_label(who, threads) for who, threads in TFLITE_COLORS] + ["limit"]
    legend = {label: legend[label] for label in order if label in legend}
    if "limit" in legend:
        legend[limit_label(limits, records)] = legend.pop("limit")
    figure.legend(list(legend.values()), list(legend), fontsize=8, ncol=3,
                  loc="outside upper center", title_fontsize=9,
                  title=f"{window(drawn)}; the latest line per format and threads, timm's "
                  "from the same round")
    figure.savefig(path, dpi=110)
    plt.close(figure)


def plot_peer(peers, ours, path):
    """One panel per row of the peer table (`peer_rows`): keras-mixer's best and timm's best
    (images/s, median and min–max), their ratio, and the images/s the hardware allows for
    timm's arithmetic on its threads (dashed)."""
    rows = peer_rows(peers, ours)
    if not rows:
        return
    plt = pyplot()
    columns = min(4, len(rows))
    lines = -(-len(rows) // columns)
    figure, panels = plt.subplots(lines, columns, squeeze=False,
                                  figsize=(max(7, 3.2 * columns), 3.6 * lines + 0.5))
    for axes, row in zip(panels.flat, rows):
        variant, what, precision, batch, threads, _ = row["key"]
        rates = [images_per_s(row["ours"]), images_per_s(row["timm"])]
        bars = axes.bar([0, 1], [r["median"] for r in rates], 0.6,
                        yerr=[[r["median"] - r["min"] for r in rates],
                              [r["max"] - r["median"] for r in rates]],
                        capsize=3, color=["tab:blue", "tab:orange"])
        axes.bar_label(bars, [f"{r['median']:.1f}" for r in rates], label_type="center",
                       color="white", fontsize=9, fontweight="bold")
        top = max(r["max"] for r in rates)
        limit = limit_images_per_s(row["ours"], precision, threads)
        if limit:
            shown = min(limit[1], 3 * top)  # its value is in the title when off the chart
            axes.axhline(shown, color="black", linestyle="--", linewidth=1.2)
            top = max(top, shown)
        axes.set_ylim(0, 1.15 * top)
        axes.set_xticks([0, 1], [f"keras-mixer\n{our_configuration(row['ours'])}",
                                 f"timm\n{precision}"], fontsize=8)
        rounds = ", ".join(f"{value:.2f}" for value in ratios_per_round(row))
        axes.set_title(
            f"{threads_label(f'{variant} {what}, batch {batch}', threads)}\n"
            f"ours / timm {ratio(row):.2f}x (rounds {rounds})\n"
            + (f"limit {limit[1]:.1f} images/s ({limit[0]})" if limit else "no limit claimed"),
            fontsize=8.5,
        )
    for axes in panels[:, 0]:
        axes.set_ylabel("images/s (median, min–max)", fontsize=8)
    for axes in panels.flat[len(rows):]:
        axes.set_visible(False)
    used = [r for row in rows for pair in row["pairs"] for r in pair]
    figure.suptitle("keras-mixer beside timm (eager PyTorch), the best round of each side\n"
                    f"{window(used)}; dashed: the hardware limit at nominal clock", fontsize=9)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


def plot_scaling(records, fits, path):
    import numpy as np

    plt = pyplot()
    patches = np.array([r["num_patches"] for r in records], float)
    times = np.array([1e3 * r["seconds_per_image"]["median_s"] for r in records])
    figure, axes = plt.subplots(figsize=(6, 4))
    axes.loglog(patches, times, "o-", label="measured (median)")
    if fits and records:
        fit = fits[-1]
        keep = patches >= fit["min_patches_for_fit"]
        slope, intercept = np.polyfit(np.log(patches[keep]), np.log(times[keep]), 1)
        axes.loglog(patches, np.exp(intercept) * patches**slope, "--", label=f"fit: S^{slope:.2f}")
        anchor = times[keep][-1] / patches[keep][-1]
        axes.loglog(patches, anchor * patches, ":", label="linear (S^1)")
    axes.set_xlabel("number of patches S")
    axes.set_ylabel("ms per image")
    axes.set_title(f"{records[0]['variant'] if records else ''} inference time against patches")
    axes.legend()
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


def main(argv=None):
    arguments = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    arguments.add_argument("--results-dir", default=common.RESULTS_DIR)
    arguments.add_argument("--docs-dir", default=os.path.normpath(DOCS_DIR))
    arguments.add_argument("--quick", action="store_true", help="report the --quick lines")
    arguments.add_argument("--write", help="Markdown file whose marked tables are replaced")
    args = arguments.parse_args(argv)
    os.makedirs(args.docs_dir, exist_ok=True)
    tables = {table: load(args.results_dir, table, args.quick) for table in KEYS}
    sections = {}
    if tables["flops"]:
        sections["flops"] = flops_table(tables["flops"])
    throughputs = (
        ("train_throughput", "train", "training", "model.fit throughput (224x224)"),
        ("inference_throughput", "inference", "inference", "predict_on_batch throughput (224x224)"),
    )
    for table, section, what, title in throughputs:
        records = sorted(tables[table], key=throughput_order)
        if records:
            sections[section] = throughput_table(records, what)
            plot_throughput(records, os.path.join(args.docs_dir, f"benchmarks_{what}.png"), title)
    if tables["tflite_latency"]:
        sections["tflite"] = tflite_table(tables["tflite_latency"])
        plot_tflite(tables["tflite_latency"], tables["peer_timm"],
                    os.path.join(args.docs_dir, "benchmarks_tflite.png"))
    if tables["patch_scaling"]:
        sections["scaling"] = scaling_table(tables["patch_scaling"], tables["patch_scaling_fit"])
        plot_scaling(
            tables["patch_scaling"],
            tables["patch_scaling_fit"],
            os.path.join(args.docs_dir, "benchmarks_patch_scaling.png"),
        )
    if tables["op_profile"]:
        sections["op_profile"] = op_profile_table(tables["op_profile"])
    if tables["backends"]:
        sections["backends"] = backends_table(tables["backends"])
    if tables["backends_matmul"]:
        sections["backends_matmul"] = backends_matmul_table(tables["backends_matmul"])
    if tables["input_pipeline"]:
        sections["input_pipeline"] = input_pipeline_table(tables["input_pipeline"])
    if tables["peer_timm"]:
        ours = {
            table: load(args.results_dir, table, args.quick, by_round=True)
            for table in SAME_AS_TIMM
        }
        sections["peer"] = peer_table(tables["peer_timm"], ours)
        plot_peer(tables["peer_timm"], ours, os.path.join(args.docs_dir, "benchmarks_peer.png"))
    print("\n\n".join(f"### {name}\n\n{body}" for name, body in sections.items()))
    if args.write:
        write_sections(args.write, sections)


if __name__ == "__main__":
    main()
