"""Smoke tests: every benchmark's --quick mode runs and prints measurements that add up.

Speed is never asserted here (a shared 2-core machine's timings are noise): the numbers are checked for shape and internal
consistency, and the FLOP counts against a closed form written out independently below.
"""

import json
import os
import subprocess
import sys

import keras
import numpy as np
import pytest
from helpers import ENV, program, run_bounded

from benchmarks import (
    backends,
    common,
    export_memory,
    first_step,
    flops,
    inference_throughput,
    input_pipeline,
    op_profile,
    patch_scaling,
    peers,
    plots,
    report,
    tables,
    tflite_latency,
    tflite_op_profile,
    train_throughput,
)

TINY_IMAGE = common.TINY_IMAGE_SIZE


@pytest.fixture(autouse=True)
def float32_afterwards():
    """The scripts set Keras's global dtype policy; never let one leak into other tests."""
    yield
    common.set_precision("float32")


def run(module, capsys, results_dir, *extra):
    """Runs `module.main(["--quick", ...])` and returns its JSON lines as dicts."""
    module.main(["--quick", "--results-dir", str(results_dir), *extra])
    lines = [line for line in capsys.readouterr().out.splitlines() if line.startswith("{")]
    assert lines, f"{module.__name__} printed no JSON line"
    return [json.loads(line) for line in lines]


def tiny_forward_flops(
    image_size, patch=4, hidden=16, blocks=2, tokens_mlp=8, channels_mlp=32, classes=10
):
    """The tiny Mixer's matmul FLOPs, multiply-add by multiply-add, for one image."""
    patches = (image_size // patch) ** 2
    macs = patches * (patch * patch * 3) * hidden  # stem: one (P*P*3 -> C) product per patch
    for _ in range(blocks):
        macs += hidden * (patches * tokens_mlp + tokens_mlp * patches)  # token MLP per channel
        macs += patches * (hidden * channels_mlp + channels_mlp * hidden)  # channel MLP per patch
    macs += hidden * classes  # head on the pooled features
    return 2 * macs


def check_summary(summary, repeats=1):
    assert summary["min_s"] <= summary["median_s"] <= summary["max_s"]
    assert summary["repeats"] == repeats


def check_rate(rate):
    assert 0 < rate["min"] <= rate["median"] <= rate["max"]


def test_flops_quick_matches_closed_form(capsys, tmp_path):
    records = run(flops, capsys, tmp_path)
    count = next(r for r in records if r["table"] == "flops")
    forward = tiny_forward_flops(TINY_IMAGE)
    stem = 2 * (TINY_IMAGE // 4) ** 2 * 4 * 4 * 3 * 16
    assert count["forward"] == forward == 106_816
    assert count["layer_count_forward"] == forward and count["layer_count_agrees"]
    assert count["train_step"] == 3 * forward - stem
    peaks = {r["precision"]: r for r in records if r["table"] == "peak"}
    # This CPU's bfloat16 and int8 units against its float32 FMA (the vendors' per-cycle
    # figures, docs/benchmarks.md); a CPU without a row in flops.PEAKS claims no peak.
    ratios = {"sapphire_rapids": (16, 32), "zen4": (2, 4), None: None}[flops.cpu_kind(
        common.machine(software=dict))]
    if ratios:
        float32 = peaks["float32"]["peak_gflops"]
        assert (peaks["mixed_bfloat16"]["peak_gflops"], peaks["int8"]["peak_gflops"]) == (
            pytest.approx(ratios[0] * float32), pytest.approx(ratios[1] * float32))
    else:
        assert not peaks
    assert os.path.exists(tmp_path / "flops.jsonl")


SAPPHIRE_RAPIDS = {"cpu": "Intel(R) Xeon(R) Processor", "cores": 2, "mhz": 2600.0,
                   "amx_bf16": True, "avx512f": True}
ZEN4 = {"cpu": "AMD EPYC", "cpu_family": 25, "cores": 2, "mhz": 2600.0, "amx_bf16": False,
        "avx512f": True}


def test_peak_is_the_records_cpus():
    # docs/benchmarks.md, "Peak assumption": 333 GFLOP/s float32 and 5.3 TFLOP/s AMX-BF16 on
    # 2 Sapphire Rapids cores at 2.6 GHz; AMX-INT8 is Intel's 2048 ops per cycle.
    assert flops.peak("float32", SAPPHIRE_RAPIDS) == ("AVX-512 FMA", pytest.approx(332.8e9))
    assert flops.peak("mixed_bfloat16", SAPPHIRE_RAPIDS)[1] == pytest.approx(5324.8e9)
    assert flops.peak("int8", SAPPHIRE_RAPIDS, cores=1) == ("AMX-INT8", 2.6e9 * 2048)
    # Zen 4, one core: two 256-bit pipes, each 8 float32 FMAs or 32 int8 multiply-adds a cycle.
    assert flops.peak("fp32", ZEN4, cores=1) == ("AVX-512 FMA", 2.6e9 * 2 * 8 * 2)
    assert flops.peak("dynamic_int8", ZEN4, cores=1) == ("AVX-512 VNNI", 2.6e9 * 2 * 32 * 2)
    # No row, no limit: Zen 5 (family 26), an unknown CPU; int16x8 runs reference kernels.
    assert flops.peak("float32", {**ZEN4, "cpu_family": 26}) is None
    assert flops.peak("float32", {**ZEN4, "cpu": "Test CPU"}) is None
    assert flops.peak("int16x8", ZEN4) is None
    # S/16's 3.78 G multiply-adds on one Zen 4 core's VNNI: a 22.7 ms floor at batch 1.
    litert = {"format": "int8", "forward_flops_per_image": 7_553_916_928, "machine": ZEN4}
    unit, rate = plots.limit_images_per_s(litert, cores=1)
    assert (unit, round(1e3 / rate, 1)) == ("AVX-512 VNNI", 22.7)


def test_b16_flops_match_timm_gmacs():
    from keras_mixer import get_variant

    # timm's model card for mixer_b16_224: 12.6 GMACs; the paper's B/16 at 224 has 196 patches.
    count = flops.mixer_flops(**get_variant("B/16"), image_size=224, num_classes=1000)
    assert count["num_patches"] == 196
    assert round(count["forward"] / 2e9, 1) == 12.6


@pytest.mark.slow
def test_train_throughput_quick(capsys, tmp_path):
    records = run(
        train_throughput,
        capsys,
        tmp_path,
        "--modes",
        "eager",
        "xla",
        "--precisions",
        "mixed_bfloat16",
        "--gelu-dtypes",
        "compute",
        "--batch-size",
        "4",
    )
    assert [(r["mode"], r["precision"], r["gelu_dtype"]) for r in records] == [
        ("eager", "mixed_bfloat16", "compute"),
        ("xla", "mixed_bfloat16", "compute"),
    ]
    forward = tiny_forward_flops(TINY_IMAGE)
    for record in records:
        check_summary(record["step"])
        check_rate(record["images_per_s"])
        assert record["images_per_s"]["median"] == pytest.approx(4 / record["step"]["median_s"])
        assert record["train_flops_per_image"] == 3 * forward - 2 * 16 * 48 * 16
        assert record["machine"]["cores"] >= 1 and record["quick"] is True
    assert keras.mixed_precision.global_policy().name == "float32"  # the script restores it


def test_inference_throughput_quick(capsys, tmp_path):
    records = run(
        inference_throughput,
        capsys,
        tmp_path,
        "--modes",
        "graph",
        "frozen",
        "--precisions",
        "float32",
        "--batch-sizes",
        "1",
        "4",
        "--frameworks",
        "keras",
        "tf_keras",
    )
    assert [(r["framework"], r["mode"], r["batch_size"]) for r in records] == [
        (framework, mode, batch_size)
        for framework in ("keras", "tf_keras")
        for mode in ("graph", "frozen")
        for batch_size in (1, 4)
    ]
    for record in records:
        check_summary(record["batch"])
        check_rate(record["images_per_s"])
        assert record["latency_ms"] == pytest.approx(1e3 * record["batch"]["median_s"])
        assert record["forward_flops_per_image"] == tiny_forward_flops(TINY_IMAGE)


def test_patch_scaling_quick_is_linear_in_flops(capsys, tmp_path):
    records = run(patch_scaling, capsys, tmp_path)
    rows = [r for r in records if r["table"] == "patch_scaling"]
    assert [r["num_patches"] for r in rows] == [(r["image_size"] // 4) ** 2 for r in rows]
    for row in rows:
        assert row["forward_flops_per_image"] == tiny_forward_flops(row["image_size"])
    # Everything but the head (2 C K) is proportional to the number of patches (paper, Section 2).
    per_patch = {(r["forward_flops_per_image"] - 2 * 16 * 10) / r["num_patches"] for r in rows}
    assert len(per_patch) == 1
    fit = next(r for r in records if r["table"] == "patch_scaling_fit")
    assert fit["num_patches"] == [r["num_patches"] for r in rows]
    assert 0.95 < fit["flops_exponent"] <= 1.0
    assert np.isfinite(fit["time_exponent_all"])


@pytest.mark.slow
def test_tflite_latency_quick(capsys, tmp_path):
    # int16x8 stands for the LiteRT Quantizer rows (the one that also calibrates).
    formats = ["fp32", "int8", "int8_keras_graph", "int16x8"]
    records = run(tflite_latency, capsys, tmp_path, "--formats", *formats, "--threads", "1", "2")
    assert {(r["format"], r["threads"]) for r in records} == {
        (name, threads) for name in formats for threads in (1, 2)
    }
    for record in records:
        path = tmp_path / "tflite_quick" / "tiny" / record["format"] / f"{record['format']}.tflite"
        assert record["size_bytes"] == os.path.getsize(path)
        assert (
            record["latency_ms"]["min"]
            <= record["latency_ms"]["median"]
            <= record["latency_ms"]["max"]
        )
        if record["format"] == "int16x8":  # XNNPACK has no int16 kernels
            assert record["delegated_partitions"] == 0
        else:
            assert record["delegated_partitions"] >= 1
    by_format = {r["format"]: r for r in records}
    for name in ("int8", "int16x8"):
        assert by_format[name]["float_ops"] == 0, name  # integer end to end (export's contract)
    assert by_format["fp32"]["float_ops"] == by_format["fp32"]["num_ops"]
    # The benchmark's before: the graph as Keras lowers it keeps float ops and more partitions.
    before = by_format["int8_keras_graph"]
    assert before["float_ops"] > 0
    assert before["delegated_partitions"] > by_format["int8"]["delegated_partitions"]


@pytest.mark.slow
def test_tflite_op_profile_quick_times_every_matrix_product(capsys, tmp_path):
    records = run(tflite_op_profile, capsys, tmp_path, "--formats", "fp32", "int8",
                  "--threads", "1")
    assert sorted(r["format"] for r in records) == ["fp32", "int8"]
    blocks = common.TINY["num_blocks"]
    for record in records:
        rows = record["operators"]
        matmuls = [row for row in rows if tflite_op_profile.is_matmul(row["name"])]
        # The stem, four Dense layers per block and the head: one matrix product each per run.
        assert sum(row["calls_per_run"] for row in matmuls) == 2 + 4 * blocks
        parts = record["parts"]
        assert 2 * sum(parts[part]["multiply_adds"] for part in (
            "stem", "token_mixing", "channel_mixing", "head")) == tiny_forward_flops(TINY_IMAGE)
        assert record["operators_ms"] == pytest.approx(sum(row["ms"] for row in rows))
        # The tiny model's operators can all round down to 0 us (LiteRT's whole microseconds).
        assert record["operators_ms"] == 0 or sum(r["share"] for r in rows) == pytest.approx(1)
        assert record["wall_ms"]["min"] <= record["wall_ms"]["median"] <= record["wall_ms"]["max"]
    # Any file, by path: the same operators, without the Mixer's parts.
    path = tmp_path / "tflite_quick" / "tiny" / "int8" / "int8.tflite"
    (by_path,) = run(tflite_op_profile, capsys, tmp_path, "--files", str(path), "--threads", "1")
    assert (by_path["file"], by_path["format"], by_path["parts"]) == (str(path), "int8", None)
    int8 = next(r for r in records if r["format"] == "int8")
    assert sorted((r["name"], r["calls_per_run"]) for r in by_path["operators"]) == sorted(
        (r["name"], r["calls_per_run"]) for r in int8["operators"])
    # export's int8 leaves each LayerNorm's RSQRT (two per block and the last) to the
    # interpreter (export/graph.py): the profile names it as TFLite does, not delegated.
    rsqrt = [row for row in int8["operators"] if row["name"] == "RSQRT"]
    assert [(row["delegated"], row["calls_per_run"]) for row in rsqrt] == [(False, 2 * blocks + 1)]


@pytest.mark.slow
def test_export_memory_quick_splits_the_peak_by_export_phase(capsys, tmp_path):
    (record,) = run(export_memory, capsys, tmp_path, "--formats", "fp32", "int8")
    phases = [phase["phase"] for phase in record["phases"]]
    # Every phase export.pipeline logs, in order, each format's from preparing to verifying.
    for name in ("fp32", "int8"):
        steps = [f"{name}: {step}" for step in
                 ("preparing the graph", "writing the batch-1 SavedModel", "converting",
                  "verifying in LiteRT")]
        assert [phase for phase in phases if phase.startswith(f"{name}:")] == steps
    assert phases[-1] == "writing the report"
    peaks = [phase["peak_gib"] for phase in record["phases"]]
    assert record["peak_gib"] == max(peaks) and record["peak_phase"] in phases
    # Converting allocates beyond the resident set the export started from.
    assert record["peak_gib"] > record["before_export_gib"] > 0
    assert record["bytes_per_parameter"] == pytest.approx(
        record["peak_gib"] * 2**30 / record["parameters"])
    assert record["parameters"] == tiny_parameters(TINY_IMAGE) and record["wall_s"] > 0
    assert set(record["tflite_bytes"]) == {"fp32", "int8"}


@pytest.mark.slow
def test_export_memory_quick_times_the_fine_tuning_steps(capsys, tmp_path):
    (record,) = run(export_memory, capsys, tmp_path, "--formats", "qat_int8")
    assert (record["fine_tune_steps"], record["fine_tune_batch"]) == (3, 2)
    assert record["fine_tune_step_s"] > 0
    # The fine-tuning is in its format's first phase; the progress lines split no phase.
    phases = [phase["phase"] for phase in record["phases"] if phase["phase"].startswith("qat")]
    assert phases == [f"qat_int8: {step}" for step in (
        "preparing the graph", "writing the batch-1 SavedModel", "converting",
        "verifying in LiteRT")]


def test_op_profile_quick_traces_the_training_step(capsys, tmp_path):
    (record,) = run(op_profile, capsys, tmp_path, "--precision", "float32", "--step", "train")
    kinds = {op["op"] for op in record["ops"]}
    # The backward pass ran (the layers' compiled gradients), not only the forward pass.
    assert {"XLA gradient", "XLA layer_normalization", "XLA bias_and_activation"} <= kinds, kinds
    assert sum(op["share"] for op in record["ops"]) <= 1.0 + 1e-9
    check_summary(record["wall"])


@pytest.mark.slow
def test_input_pipeline_quick_feeds_fit_from_the_training_pipelines(capsys, tmp_path):
    records = run(input_pipeline, capsys, tmp_path)
    assert [(r["pipeline"], r["measure"]) for r in records] == [
        ("eval", "pipeline"),
        ("pretrain", "pipeline"),
        ("pretrain", "fit"),
        ("i1k", "pipeline"),
        ("i1k", "fit"),
        ("i1k_batch_randaugment", "pipeline"),
        ("i1k_batch_randaugment", "fit"),
    ]
    images = list((tmp_path / "input_images_64x48_2x8" / "train").glob("*/*.jpg"))
    assert len(images) == 16
    for record in records:
        if record["measure"] == "pipeline":
            check_summary(record["chunk"])
            check_rate(record["images_per_s"])
            assert record["images_per_s"]["median"] == pytest.approx(
                4 * 2 / record["chunk"]["median_s"]
            )
        else:
            check_summary(record["pipeline_step"], repeats=2)
            assert record["fed_fraction"] == pytest.approx(
                record["pipeline_images_per_s"] / record["in_memory_images_per_s"]
            )
    assert keras.mixed_precision.global_policy().name == "float32"


def test_mlp_spellings_before_the_fixes_are_the_same_function():
    common.set_precision("float32")
    shipped, _ = common.build_model("tiny", image_size=TINY_IMAGE, num_classes=10)
    assert type(shipped).__name__ == "MlpMixer"
    images = common.random_images(2, TINY_IMAGE)
    for before in ("float32", "compute"):
        model, _ = common.build_model(
            "tiny", image_size=TINY_IMAGE, num_classes=10, gelu_dtype=before
        )
        model.set_weights(shipped.get_weights())
        np.testing.assert_allclose(
            model.predict(images, verbose=0), shipped.predict(images, verbose=0), atol=1e-6
        )
    common.set_precision("mixed_bfloat16")
    try:
        for before, dtype in (("float32", "float32"), ("compute", "bfloat16")):
            model, _ = common.build_model(
                "tiny", image_size=TINY_IMAGE, num_classes=10, gelu_dtype=before
            )
            gelus = [layer for layer in model.layers if type(layer).__name__ == "Activation"]
            assert len(gelus) == 2 * common.TINY["num_blocks"]
            assert all(layer.compute_dtype == dtype for layer in gelus)
    finally:
        common.set_precision("float32")


@pytest.mark.slow
def test_report_renders_tables_and_small_pngs(capsys, tmp_path):
    results = tmp_path / "results"
    run(flops, capsys, results)
    run(inference_throughput, capsys, results, "--modes", "graph", "--precisions", "float32")
    run(patch_scaling, capsys, results)
    page = tmp_path / "page.md"
    page.write_text(
        "intro\n<!-- begin flops -->\nold\n<!-- end flops -->\nprose\n"
        "<!-- begin scaling -->\n<!-- end scaling -->\n"
    )
    for _ in range(2):  # rewriting is idempotent
        report.main(
            [
                "--quick",
                "--results-dir",
                str(results),
                "--docs-dir",
                str(tmp_path / "docs"),
                "--write",
                str(page),
            ]
        )
    text = capsys.readouterr().out
    assert "### flops" in text and "### inference" in text and "Fitted exponent" in text
    written = page.read_text()
    assert written.startswith("intro\n<!-- begin flops -->\n| variant |") and "old" not in written
    assert (
        written.count("<!-- end flops -->") == 1
        and "prose" in written
        and "Fitted exponent" in written
    )
    for name in ("benchmarks_inference.png", "benchmarks_patch_scaling.png"):
        assert 0 < os.path.getsize(tmp_path / "docs" / name) < 200_000


@pytest.mark.slow
def test_first_step_quick_times_run_to_its_first_step(capsys, tmp_path):
    records = run(first_step, capsys, tmp_path)
    assert [r["measure"] for r in records] == ["index", "first_step"]
    for record in records:
        check_summary(record["seconds"])
        assert record["seconds"]["min_s"] > 0 and record["images"] == 200
    assert len(list((tmp_path / "first_step_32x32_10x180+20").glob("*/*/*.jpg"))) == 200


@pytest.mark.slow
def test_backends_alternate_tensorflow_and_jax_in_their_compiled_modes(capfd, tmp_path):
    backends.main(["--quick", "--results-dir", str(tmp_path), "--precisions", "float32"])
    lines = [line for line in capfd.readouterr().out.splitlines() if line.startswith("{")]
    records = [json.loads(line) for line in lines]
    products = [r for r in records if r["table"] == "backends_matmul"]
    records = [r for r in records if r["table"] == "backends"]
    assert [(r["backend"], r["dtype"]) for r in products] == [
        (backend, dtype) for backend in backends.BACKENDS for dtype in ("float32", "bfloat16")
    ]
    rows, inner, columns = backends.QUICK_MATMUL_SHAPE
    for product in products:
        flop = 2 * rows * inner * columns
        assert product["gflops"] == pytest.approx(flop / product["step"]["median_s"] / 1e9)
    assert tables.backends_matmul_table(products).count("\n") == 3
    measured = [(r["backend"], r["mode"], r["precision"], r["what"]) for r in records]
    expected = [
        (backend, mode, precision, what)
        for backend, modes in backends.BACKEND_MODES.items()
        for precision in ("float32",)
        for mode in modes
        for what in ("training", "inference")
    ]
    assert measured == expected
    for record in records:
        check_summary(record["step"])
        assert record["machine"]["backend"] == record["backend"]
        per_image = tiny_forward_flops(TINY_IMAGE)
        if record["what"] == "inference":
            rate = record["batch_size"] / record["step"]["median_s"]
            assert record["gflops"] == pytest.approx(rate * per_image / 1e9)
    table = tables.backends_table(records)
    assert "| tiny | inference | float32 | 32 |" in table and table.count("x |") == 2


def tiny_parameters(image_size, patch=4, hidden=16, blocks=2, tokens_mlp=8, channels_mlp=32,
                    classes=10):
    """The tiny Mixer's parameter count, layer by layer (weights and biases, LayerNorm scale
    and offset)."""
    patches = (image_size // patch) ** 2
    count = patch * patch * 3 * hidden + hidden  # stem
    for _ in range(blocks):
        count += 2 * hidden  # LayerNorm before token mixing
        count += patches * tokens_mlp + tokens_mlp + tokens_mlp * patches + patches
        count += 2 * hidden  # LayerNorm before channel mixing
        count += hidden * channels_mlp + channels_mlp + channels_mlp * hidden + hidden
    return count + 2 * hidden + hidden * classes + classes  # final LayerNorm, head


def peer_env():
    """What the peer's subprocess sees: the repository and tests/ first, then the caller's
    PYTHONPATH (where a stub torchvision is, benchmarks/peer_env.sh)."""
    return {"PYTHONPATH": os.pathsep.join([ENV["PYTHONPATH"], os.environ.get("PYTHONPATH", "")])}


def test_peer_imports_without_tensorflow():
    # The peer's environment has no TensorFlow or Keras: the script and common must not need them.
    code, output = run_bounded(program("peer_alone"), timeout=60)
    assert code == 0, output[-3000:]
    record = json.loads(output.strip().splitlines()[-1])
    assert record["cores"] >= 1 and "tensorflow" not in record and "keras" not in record


def test_peer_timm_quick_measures_timms_mixer_as_ours_are(tmp_path):
    # Runs where timm imports (its own venv: benchmarks/peer_env.sh; the main environment has
    # PyTorch but not timm, so there this skips). Probed in a subprocess, as the peer runs: timm
    # stays out of this TensorFlow process, and a CUDA-built torchvision fails with a
    # RuntimeError that an import check here would not catch.
    probe = subprocess.run(
        [sys.executable, "-c", "import timm"], env={**os.environ, **peer_env()},
        capture_output=True, text=True, timeout=120, check=False,
    )
    if probe.returncode:
        pytest.skip(f"timm does not import: {(probe.stderr.strip().splitlines() or ['?'])[-1]}")
    code, output = run_bounded(
        program("peer_alone", "--quick", "--results-dir", tmp_path, "--round", 1),
        env=peer_env(),
    )
    assert code == 0, output[-3000:]
    records = [json.loads(line) for line in output.splitlines() if line.startswith("{")]
    assert [(r["what"], r["precision"], r["batch_size"], r["threads"]) for r in records] == [
        ("training", "float32", 32, 2),
        ("training", "autocast_bfloat16", 32, 2),
        ("inference", "float32", 32, 2),
        ("inference", "autocast_bfloat16", 32, 2),
        ("inference", "float32", 1, 1),
        ("inference", "float32", 1, 2),
        ("inference", "dynamic_int8", 1, 1),
        ("inference", "dynamic_int8", 1, 2),
    ]
    for record in records:
        summary = record["step" if record["what"] == "training" else "batch"]
        check_summary(summary)
        check_rate(record["images_per_s"])
        assert record["images_per_s"]["median"] == pytest.approx(
            record["batch_size"] / summary["median_s"]
        )
        # timm's Mixer built from the tiny config is the tiny Mixer, parameter for parameter.
        assert record["parameters"] == tiny_parameters(TINY_IMAGE) == 3818
        assert record["round"] == 1 and record["quick"] is True
        assert {"torch", "timm", "torchvision"} <= set(record["machine"])
        assert "tensorflow" not in record["machine"]
    with open(tmp_path / "peer_timm.jsonl") as lines:
        assert len(lines.readlines()) == len(records)


def peer_line(round_index, load, images_per_s=None, **fields):
    """A synthetic JSON line: `fields`, a round, a machine, and images/s as a median with a
    +-10% spread when given."""
    record = {**fields, "round": round_index, "image_size": 224, "variant": "S/16",
              "time_utc": f"2026-12-01T13:0{round_index}:00+00:00",
              "machine": {"cpu": "Test CPU", "cores": 2, "mhz": 2600.0,
                          "load_average_1min": load, "other_pytest_processes": 0}}
    if images_per_s is not None:
        record["images_per_s"] = {
            "median": images_per_s, "min": 0.9 * images_per_s, "max": 1.1 * images_per_s,
        }
    return record


def table_row(table, start):
    (line,) = [line for line in table.splitlines() if line.startswith(start)]
    return [cell.strip() for cell in line.strip("|").split("|")]


def test_report_peer_table_sets_our_best_beside_timm_round_by_round(tmp_path):
    timm_versions = {"torch": "2.13.0+cpu", "timm": "1.0.31"}
    timm_lines = [
        peer_line(1, 1.0, 5.0, what="training", precision="float32", batch_size=32, threads=2),
        peer_line(2, 1.2, 4.0, what="training", precision="float32", batch_size=32, threads=2),
        peer_line(1, 1.1, 50.0, what="inference", precision="dynamic_int8", batch_size=1,
                  threads=1),
        # Not from an alternated run (no round): no row.
        peer_line(None, 0.5, 1.0, what="inference", precision="float32", batch_size=32,
                  threads=2),
    ]
    for peer in timm_lines:
        peer["machine"].update(timm_versions)
    train = {"precision": "float32", "gelu_dtype": "fused", "batch_size": 32}
    trains = [
        peer_line(1, 1.3, 8.0, mode="graph", **train),
        peer_line(1, 1.4, 10.0, mode="xla", **train),
        peer_line(2, 1.5, 9.0, mode="graph", **train),
        peer_line(2, 1.6, 6.0, mode="xla", **train),
        # None of these compete: eager, the MLP before its fixes, another batch, no round.
        peer_line(1, 0.1, 100.0, mode="eager", **train),
        peer_line(1, 0.1, 50.0, mode="xla", **{**train, "gelu_dtype": "compute"}),
        peer_line(1, 0.1, 60.0, mode="xla", **{**train, "gelu_dtype": "float32"}),
        peer_line(1, 0.1, 200.0, mode="xla", **{**train, "batch_size": 8}),
        peer_line(None, 0.1, 300.0, mode="xla", **train),
    ]
    results = tmp_path / "results"
    results.mkdir()
    with open(results / "train_throughput.jsonl", "w") as lines:
        lines.writelines(json.dumps(record) + "\n" for record in trains)
    # by_round keeps each round's line of a key; without it the latest line of a key wins.
    by_round = report.load(results, "train_throughput", by_round=True)
    latest = report.load(results, "train_throughput")
    assert len(by_round) == len(trains) and len(latest) == 6
    assert [r["images_per_s"]["median"] for r in latest if r["mode"] == "graph"] == [9.0]

    def litert(format_name, threads, latency_ms):
        return peer_line(1, 1.7, format=format_name, threads=threads,
                         latency_ms={"median": latency_ms, "min": 0.9 * latency_ms,
                                     "max": 1.1 * latency_ms})

    tflites = [
        litert("dynamic_int8", 1, 10.0),
        litert("int8", 1, 8.0),
        litert("fp16", 1, 2.0),  # not an int8 format
        litert("int8", 2, 4.0),  # timm's figure is on 1 thread
    ]
    ours = {"train_throughput": by_round, "inference_throughput": [], "tflite_latency": tflites}
    table = peers.peer_table(timm_lines, ours)

    training = table_row(table, "| S/16 | training | 32 | 2 |")
    assert training[4:6] == ["xla float32", "10.00 (9.00–11.00)"]
    assert training[6:8] == ["float32", "5.00 (4.50–5.50)"]
    assert training[8:10] == [f"**{10.0 / 5.0:.2f}x**", f"{10.0 / 5.0:.2f}, {9.0 / 4.0:.2f}"]
    # The load of the lines paired: timm's (1.0, 1.2) and our best of each round (1.4, 1.5).
    assert training[10] == "1.0–1.5"
    latency = table_row(table, "| S/16 | inference | 1 | 1 |")
    # int8 at 8 ms (125 images/s) beats dynamic_int8 at 10 ms; timm: 50 images/s.
    assert latency[4:6] == ["int8.tflite", f"{1e3 / 8:.2f} ({1e3 / 8.8:.2f}–{1e3 / 7.2:.2f})"]
    assert latency[8] == f"**{1e3 / 8 / 50:.2f}x**"
    assert len([line for line in table.splitlines() if line.startswith("| S/16")]) == 2
    assert "13:01:00" in table and "13:02:00" in table and "Test CPU (2 cores, 2600 MHz" in table
    assert "torch 2.13.0+cpu, timm 1.0.31" in table
    # The plots draw the same rows: timm's dynamic int8 beside our dynamic_int8 of its round,
    # our formats float first.
    groups = plots.tflite_groups(tflites, timm_lines)
    assert [(label, who, sorted(bars)) for label, who, _, bars in groups] == [
        ("fp16", "keras-mixer", [1]), ("dynamic_int8", "keras-mixer", [1]),
        ("timm\ndynamic_int8", "timm", [1]), ("int8", "keras-mixer", [1, 2]),
    ]
    plots.plot_peer(timm_lines, ours, tmp_path / "peer.png")
    plots.plot_tflite(tflites, timm_lines, tmp_path / "tflite.png")
    for name in ("peer.png", "tflite.png"):
        assert 0 < os.path.getsize(tmp_path / name) < 300_000


def test_peer_table_counts_the_frozen_serving_function_as_ours_for_inference():
    timm = peer_line(1, 1.0, 20.0, what="inference", precision="autocast_bfloat16",
                     batch_size=32, threads=2)
    timm["machine"].update({"torch": "2.13.0+cpu", "timm": "1.0.31"})
    inference = {"framework": "keras", "precision": "mixed_bfloat16", "gelu_dtype": "fused",
                 "batch_size": 32}
    ours = {"train_throughput": [], "tflite_latency": [], "inference_throughput": [
        peer_line(1, 1.3, 15.0, mode="graph", **inference),
        peer_line(1, 1.3, 25.0, mode="frozen", **inference),
        # float32 is set against timm's float32, not its bfloat16 autocast.
        peer_line(1, 1.3, 90.0, mode="frozen", **{**inference, "precision": "float32"}),
    ]}
    row = table_row(peers.peer_table([timm], ours), "| S/16 | inference | 32 | 2 |")
    assert row[4:6] == ["frozen mixed_bfloat16", "25.00 (22.50–27.50)"]
    assert row[8] == f"**{25.0 / 20.0:.2f}x**"


def test_onednn_histogram_counts_the_exec_lines_after_the_marker():
    from benchmarks import onednn_kernels

    line = "onednn_verbose,v1,primitive,exec,cpu,{},{},{},src:bf16 wei:bf16,,,mb8ic512oc2048,{}"
    stdout = "\n".join([
        line.format("inner_product", "x64:gemm:jit", "forward_training", 9.0),  # warm-up call
        onednn_kernels.MARKER,
        line.format("inner_product", "x64:gemm:jit", "forward_training", 2.0),
        line.format("matmul", "brg_matmul:avx10_1_512_amx", "undef", 1.0),
        "onednn_verbose,v1,primitive,create:cache_miss,cpu,matmul,brg_matmul:avx10_1_512_amx,undef,,,,,0.5",
        line.format("inner_product", "x64:gemm:jit", "forward_training", 4.0),
        line.format("matmul", "brg_matmul:avx10_1_512_amx", "undef", 3.0),
    ])
    rows = onednn_kernels.histogram(stdout, calls=2)
    assert rows == [
        {"primitive": "inner_product", "implementation": "x64:gemm:jit",
         "propagation": "forward_training", "calls": 1.0, "ms": 3.0},
        {"primitive": "matmul", "implementation": "brg_matmul:avx10_1_512_amx",
         "propagation": "undef", "calls": 1.0, "ms": 2.0},
    ]
    assert onednn_kernels.generic_matmul_calls(rows) == 1.0


@pytest.mark.slow
def test_onednn_kernels_quick_sees_every_dense_matmul(capsys, tmp_path):
    from benchmarks import onednn_kernels

    from training.tensorflow_internals import onednn_enabled

    records = {record["step"]: record for record in run(onednn_kernels, capsys, tmp_path)}
    assert set(records) == {"train", "predict", "serve"}
    assert {record["onednn"] for record in records.values()} == {onednn_enabled()}
    if not onednn_enabled():  # not x86, or TF_ENABLE_ONEDNN_OPTS=0 (training/onednn.py)
        pytest.skip("TensorFlow runs no oneDNN kernel on this CPU")
    dense_layers = 2 * 2 * common.TINY["num_blocks"] + 1  # two MLPs of two Dense per block, head
    matmuls = {
        step: sum(row["calls"] for row in record["kernels"]
                  if row["primitive"] in onednn_kernels.MATMUL_PRIMITIVES)
        for step, record in records.items()
    }
    # A training step multiplies by each kernel forward, then for the input's and the
    # kernel's gradients, and the stem by its kernel and for the kernel's gradient (the
    # images need none); the frozen serving graph keeps every Dense a oneDNN matmul.
    stem = {"predict": 0, "serve": 0, "train": 2}
    if not any(row["primitive"] in ("matmul", "inner_product")
               for record in records.values() for row in record["kernels"]):
        # Where TensorFlow hands oneDNN only GEMMs (`gemm_api`: an AVX2-only CPU, oneDNN on
        # by training/onednn.py), its convolution is GEMMs too: the stem's forward is one,
        # and its kernel's gradient two (an AMD Zen 3: 128x48 by 48x16, twice 24x128 by 128x16).
        stem = {"predict": 1, "serve": 1, "train": 3}
    assert matmuls == {step: (3 if step == "train" else 1) * dense_layers + stem[step]
                       for step in stem}
    # Issue 19's rule, on a CPU with bfloat16 matrix kernels (brgemm): in bfloat16 no matmul
    # of a train step, a predict or a serve runs on oneDNN's generic gemm.
    machine = records["train"]["machine"]
    if machine["amx_bf16"] or machine["avx512_bf16"]:
        assert {step: record["generic_matmul_calls"] for step, record in records.items()} == {
            "train": 0, "predict": 0, "serve": 0}
