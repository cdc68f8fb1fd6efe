"""Tables (Markdown) and plots (PNG) from the results the benchmarks appended.

    python -m benchmarks.report                      # prints the tables, writes docs/*.png
    python -m benchmarks.report --write docs/benchmarks.md   # and fills the doc's tables
    python -m benchmarks.report --results-dir DIR --docs-dir DIR --quick

With --write, each table replaces the text between `<!-- begin NAME -->` and
`<!-- end NAME -->` in the given Markdown file (NAME: flops, train, inference, backends, tflite,
scaling, op_profile, input_pipeline, peer); the prose around them is left alone.

For each measurement key (variant, mode, precision, ...) the latest line wins, so a rerun
replaces a number rather than adding a row. Quick (smoke) lines are ignored unless --quick.

This module is the command: it loads the lines and rewrites the doc's sections; the tables
are built by benchmarks.tables (and benchmarks.peers, which pairs ours with timm's), the
figures by benchmarks.plots.
"""

import argparse
import json
import os

from benchmarks import common
from benchmarks.peers import SAME_AS_TIMM, peer_table
from benchmarks.plots import plot_peer, plot_scaling, plot_throughput, plot_tflite
from benchmarks.tables import (
    backends_matmul_table,
    backends_table,
    flops_table,
    input_pipeline_table,
    op_profile_table,
    scaling_table,
    throughput_order,
    throughput_table,
    tflite_table,
)

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
