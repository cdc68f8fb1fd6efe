"""The export report: the dict `export.pipeline.convert` fills in as it writes each format
(`report.json`, every number), the files written beside the models, and the report rendered
for people, a Markdown table and a chart of accuracy against size and latency.
"""

import contextlib
import dataclasses
import io
import json
import logging

import numpy as np

from export.classify import PREPROCESSING_FILE
from export.formats import SAVED_MODEL
from keras_mixer import storage

log = logging.getLogger(__name__)
REPORT_FILES = ("report.json", "report.md", "report.png")


def new_report(source_name, model, data, keras_logits, settings):
    """The report before any format is written: the source, the model, the Keras model's top-1
    on the evaluation images and the settings; `formats` fills in as each is written."""
    keras_top1 = float(np.mean(keras_logits.argmax(-1) == data.eval_labels))
    calibration = 0 if data.representative is None else len(data.representative)
    return {
        "source": source_name,
        "model": model.mixer_config(),
        "evaluation": {"num_examples": int(len(data.eval_labels)), "keras_top1": keras_top1,
                       "calibration_examples": int(calibration)},
        "settings": dataclasses.asdict(settings),
        # What the fine-tuned formats ran: the steps settings.fine_tuning chose from the data.
        **({} if data.fine_tuning is None else {"fine_tuning": {
            **dataclasses.asdict(data.fine_tuning), "epochs": data.fine_tuning.epochs}}),
        "formats": {},
    }


def compare_qat_with_ptq(report):
    """Records whether QAT reached int8 PTQ's top-1 where both were exported; warns if not."""
    results = report["formats"]
    if "int8" not in results or "qat_int8" not in results:
        return
    ptq, qat = results["int8"]["top1"], results["qat_int8"]["top1"]
    report["qat_vs_ptq"] = {"ptq_top1": ptq, "qat_top1": qat, "qat_at_least_ptq": qat >= ptq}
    if qat < ptq:
        log.warning("QAT ended below int8 PTQ (%.2f%% < %.2f%%): try more --fine-tune-steps "
                    "or a smaller learning rate.", 100 * qat, 100 * ptq)


def accuracy_budget_failures(report, specs, max_accuracy_drop):
    """Records each quantized format's top-1 drop; returns those beyond the budget."""
    if max_accuracy_drop is None:
        return []
    keras_top1, failures = report["evaluation"]["keras_top1"], []
    for name, result in report["formats"].items():
        if name in specs and (specs[name]["quantize"] or specs[name]["recipe"]):
            drop = 100.0 * (keras_top1 - result["top1"])
            result["accuracy_drop_points"] = drop
            if drop > max_accuracy_drop:
                failures.append(f"{name}: top-1 {100 * result['top1']:.2f}% is {drop:.2f} points "
                                f"below the Keras model's {100 * keras_top1:.2f}%")
    return failures


def write_report(out_dir, report, class_names, preprocessing):
    """Writes labels.txt, the preprocessing file export.classify reads, and the report as
    JSON, Markdown and a chart, each atomically."""
    files = {
        "labels.txt": "\n".join(class_names) + "\n",
        PREPROCESSING_FILE: json.dumps(preprocessing, indent=2) + "\n",
        "report.json": json.dumps(report, indent=2) + "\n",
        "report.md": markdown_report(report),
        "report.png": chart_png(report),
    }
    for name, content in files.items():
        storage.write_atomically(storage.join(out_dir, name), content)


def _remove_report(out_dir):
    for name in REPORT_FILES:
        if storage.exists(storage.join(out_dir, name)):
            storage.remove(storage.join(out_dir, name))


@contextlib.contextmanager
def naming_what_was_written(out_dir, report):
    """Makes an export that cannot finish (a full disk) say which formats it wrote, and leave
    no report that claims more. Once it has written a format, the report in `out_dir` (an
    earlier export's, which describes a file this one replaced, or the part of its own it
    could write) goes; before that, the earlier export is intact, its report with it."""
    try:
        with storage.writing(out_dir, space_only=True):
            yield
    except storage.StorageError as error:
        if report["formats"]:
            _remove_report(out_dir)
        written = ", ".join(result["file"] for result in report["formats"].values())
        raise storage.StorageError(
            f"{error} This export wrote {written} to {out_dir}, and no report." if written
            else f"{error} This export wrote nothing to {out_dir}: what was there is as it was."
        ) from None


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
