"""The PNG figures of docs/benchmarks.md (matplotlib on Agg): throughput bars, LiteRT batch-1
latency beside timm's, the timm panels and the patch-scaling fit, each bar with the hardware
limit of its record's CPU (flops.peak) marked over it.
"""

from benchmarks import flops
from benchmarks.peers import (
    PEER_ROWS,
    images_per_s,
    our_configuration,
    peer_rows,
    ratio,
    ratios_per_round,
    same_round,
)
from benchmarks.tables import variant_label, variant_order


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
