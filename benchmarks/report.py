"""Tables (Markdown) and plots (PNG) from the results the benchmarks appended.

    python -m benchmarks.report                      # prints the tables, writes docs/*.png
    python -m benchmarks.report --write docs/benchmarks.md   # and fills the doc's tables
    python -m benchmarks.report --results-dir DIR --docs-dir DIR --quick

With --write, each table replaces the text between `<!-- begin NAME -->` and
`<!-- end NAME -->` in the given Markdown file (NAME: flops, train, inference, backends, tflite,
scaling, op_profile, input_pipeline); the prose around them is left alone.

For each measurement key (variant, mode, precision, ...) the latest line wins, so a rerun
replaces a number rather than adding a row. Quick (smoke) lines are ignored unless --quick.
"""

import argparse
import json
import os

from benchmarks import common

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
}


def load(results_dir, table, quick=False):
    """The latest record per key of `results_dir/<table>.jsonl`, in first-seen order."""
    path = os.path.join(results_dir, f"{table}.jsonl")
    latest = {}
    if not os.path.exists(path):
        return []
    with open(path) as lines:
        for line in lines:
            record = json.loads(line)
            if record.get("quick", False) != quick:
                continue
            latest[tuple(str(record.get(key)) for key in KEYS[table])] = record
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


def throughput_order(record):
    """Rows by variant (paper order), framework, precision, mode, GELU (before first), batch."""
    variants = ["tiny", "S/32", "S/16", "B/32", "B/16", "L/32", "L/16", "H/14"]
    return (
        variants.index(record["variant"]) if record["variant"] in variants else len(variants),
        record.get("framework", "keras") != "keras",
        record["precision"] != "float32",
        ["eager", "graph", "xla"].index(record["mode"]),
        record["gelu_dtype"] != "compute",
        record["batch_size"],
    )


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
                f"{100 * r['fraction_of_peak']:.1f}%",
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


def plot_throughput(records, path, title):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels = [
        f"{variant_label(r)}\n{r['precision'].replace('mixed_', '')}\n{r['mode']}"
        + ("\nGELU bf16\n(before fix)" if r["gelu_dtype"] == "compute" else "")
        for r in records
    ]
    medians = [r["images_per_s"]["median"] for r in records]
    errors = [
        [m - r["images_per_s"]["min"] for m, r in zip(medians, records)],
        [r["images_per_s"]["max"] - m for m, r in zip(medians, records)],
    ]
    figure, axes = plt.subplots(figsize=(max(6, 0.55 * len(records)), 4))
    axes.bar(range(len(records)), medians, yerr=errors, capsize=2, color="tab:blue")
    axes.set_xticks(range(len(records)), labels, fontsize=6)
    axes.set_ylabel("images/s (median, min–max)")
    axes.set_title(title)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


def plot_tflite(records, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(7, 4.5))
    markers = {1: "o", 2: "s"}
    for r in records:
        axes.scatter(
            r["size_bytes"] / 1e6,
            r["latency_ms"]["median"],
            marker=markers.get(r["threads"], "x"),
            color="tab:blue" if r["variant"].startswith("S") else "tab:orange",
        )
        if r["threads"] == 1:
            axes.annotate(
                f"{r['variant']} {r['format']}",
                (r["size_bytes"] / 1e6, r["latency_ms"]["median"]),
                fontsize=6,
                xytext=(3, 3),
                textcoords="offset points",
            )
    axes.set_xscale("log")
    axes.set_yscale("log")
    axes.set_xlabel("file size (MB)")
    axes.set_ylabel("batch-1 latency (ms, median)")
    axes.set_title("LiteRT latency against size (o: 1 thread, s: 2 threads)")
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


def plot_scaling(records, fits, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

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
        plot_tflite(tables["tflite_latency"], os.path.join(args.docs_dir, "benchmarks_tflite.png"))
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
    print("\n\n".join(f"### {name}\n\n{body}" for name, body in sections.items()))
    if args.write:
        write_sections(args.write, sections)


if __name__ == "__main__":
    main()
