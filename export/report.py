"""The export report rendered for people: a Markdown table and a chart of accuracy against
size and latency. `export.convert` writes them beside `report.json`, which has every number.
"""

import io

from export.formats import SAVED_MODEL


def markdown_report(report):
    """The report as Markdown: one row per format, then each model's op list."""
    evaluation = report["evaluation"]
    lines = [
        f"# Export report: {report['source']}",
        "",
        f"Keras model top-1: {100 * evaluation['keras_top1']:.2f}% on {evaluation['num_examples']} "
        f"evaluation images; {evaluation['calibration_examples']} calibration images. Accuracy "
        "and latency measured in the LiteRT interpreter (ai-edge-litert, XNNPACK, batch 1, "
        "median). Agreement and logit differences are against the model each file was "
        "converted from: the Keras model, or for qat/pruned/clustered the fine-tuned model "
        "(QAT with its fake quantization); agreement with the original Keras model follows.",
        "",
        "| format | size (KB) | gzip (KB) | top-1 (%) | agreement (%) ref / Keras "
        "| max / mean logit diff "
        "| latency 1 / 2 threads (ms) | XNNPACK partitions | float ops | within bounds |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---|---|",
    ]
    lines += [_row(name, result) for name, result in report["formats"].items()]
    if "qat_vs_ptq" in report:
        comparison = report["qat_vs_ptq"]
        lines += ["", f"QAT top-1 {100 * comparison['qat_top1']:.2f}% vs int8 PTQ "
                      f"{100 * comparison['ptq_top1']:.2f}%."]
    if report["accuracy_budget_failures"]:
        lines += ["", "**Outside the accuracy budget:** "
                  + "; ".join(report["accuracy_budget_failures"])]
    lines += ["", "## Ops per model", ""]
    for name, result in report["formats"].items():
        if "op_counts" in result:
            ops = ", ".join(f"{op} x{count}" for op, count in sorted(result["op_counts"].items()))
            io_ = result["io"]["input"]
            lines.append(f"- **{name}** (input {io_['dtype']} {io_['shape']}, scale "
                         f"{io_['scale']:g}, zero point {io_['zero_point']}): {ops}")
    return "\n".join(lines) + "\n"


def _row(name, result):
    if name == SAVED_MODEL:
        return (f"| saved_model | {result['size_bytes'] / 1024:.1f} | | | "
                f"{100 * result['agreement']:.2f} | {result['max_logit_diff']:.2g} | | | | |")
    latency = result["latency_ms"]
    # Float ops matter only where an integer graph was promised.
    float_ops = (", ".join(sorted(set(result["float_ops"]))) or "none"
                 if result["io"]["input"]["dtype"] in ("int8", "uint8", "int16")
                 else "(float model)")
    return (
        f"| {name} | {result['size_bytes'] / 1024:.1f} "
        f"| {result['gzip_size_bytes'] / 1024:.1f} "
        f"| {100 * result['top1']:.2f} | {100 * result['agreement']:.2f} / "
        f"{100 * result['agreement_with_keras']:.2f} "
        f"| {result['max_logit_diff']:.3g} / {result['mean_logit_diff']:.3g} "
        f"| {latency.get('1', float('nan')):.3f} / {latency.get('2', float('nan')):.3f} "
        f"| {result['delegated_partitions']} | {float_ops} "
        f"| {'yes' if result['within_bounds'] else 'NO'} |")


def chart_png(report):
    """PNG bytes of top-1 accuracy against file size and against 1-thread latency.

    Rendered into memory, so that the caller writes it like any other file of the export
    (atomically, local or remote).
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    results = {name: r for name, r in report["formats"].items() if "latency_ms" in r}
    figure, (by_size, by_latency) = plt.subplots(1, 2, figsize=(12, 4.2))
    try:
        for name, result in results.items():
            top1 = 100 * result["top1"]
            by_size.scatter(result["size_bytes"] / 1024, top1, label=name)
            by_latency.scatter(result["latency_ms"]["1"], top1, label=name)
        keras_top1 = 100 * report["evaluation"]["keras_top1"]
        axes = ((by_size, "file size (KB)"), (by_latency, "latency, batch 1, 1 thread (ms)"))
        for axis, label in axes:
            axis.axhline(keras_top1, color="gray", linestyle="--", linewidth=1,
                         label="Keras model")
            axis.set_xlabel(label)
            axis.set_ylabel("top-1 accuracy in LiteRT (%)")
            axis.grid(alpha=0.3)
        by_latency.legend(loc="center left", bbox_to_anchor=(1.02, 0.5), fontsize=8)
        figure.suptitle(f"keras-mixer export: {report['source']}")
        figure.tight_layout()
        png = io.BytesIO()
        figure.savefig(png, format="png", dpi=120)
        return png.getvalue()
    finally:
        plt.close(figure)
