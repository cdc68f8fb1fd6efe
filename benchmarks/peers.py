"""keras-mixer beside timm: which of our records is set against each of timm's figures
(PEER_ROWS), paired round by round of an alternated run (benchmarks/full_run.sh), and the peer
table with the window its lines were taken in.
"""

from benchmarks.tables import markdown, spread, variant_order

# The side-by-side with timm: for each of timm's figures (what, precision, batch size), our
# table and which of its records compete; ours is the best of them (the highest median images/s),
# measured in the same round as timm's. Throughput: our compiled modes as shipped (graph and
# XLA, the fused Dense-GELU; float32 against timm's float32, mixed_bfloat16 against its bfloat16
# autocast), and for inference also the frozen CPU serving function (export/serving.py).
# Batch 1: the LiteRT .tflite file on as many XNNPACK threads as timm's torch threads (fp32
# against timm's float32, the better of dynamic_int8 and int8 against its dynamic int8).
COMPILED = ("graph", "xla")
SERVING = (*COMPILED, "frozen")
PEER_ROWS = [
    (("training", "float32", 32), "train_throughput",
     {"precision": ("float32",), "mode": COMPILED, "gelu_dtype": ("fused",)}),
    (("training", "autocast_bfloat16", 32), "train_throughput",
     {"precision": ("mixed_bfloat16",), "mode": COMPILED, "gelu_dtype": ("fused",)}),
    (("inference", "float32", 32), "inference_throughput",
     {"framework": ("keras",), "precision": ("float32",), "mode": SERVING,
      "gelu_dtype": ("fused",)}),
    (("inference", "autocast_bfloat16", 32), "inference_throughput",
     {"framework": ("keras",), "precision": ("mixed_bfloat16",), "mode": SERVING,
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
