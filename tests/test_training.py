"""training/: the run, its directory, distribution, resume in one process, remote storage, the CLI.

Distribution is checked against the default strategy (same global batch, same weights
within a stated tolerance), resume against an uninterrupted run. Every subprocess is
bounded by a timeout that ends in SIGKILL (tests/helpers.py).
"""

import dataclasses
import functools
import json
import os
import signal
import sys
import tempfile
from pathlib import Path

import keras
import numpy as np
import pytest
import tensorflow as tf
from helpers import (
    DIGITS_STEPS_PER_EPOCH,
    IN_PROCESS,
    TINY,
    assert_same_history,
    digits_config,
    max_abs_difference,
    program,
    run_bounded,
    tf_cluster,
    train_on_one_and_two_replicas,
    train_on_two_processes,
    weights_of,
)

from keras_mixer import storage
from training import data, loop, optimization, strategy, train
from training.errors import ConfigError

# float32 sums over 2 replicas vs 1 differ in rounding only; 5 AdamW steps measured 7e-8.
MIRRORED_ATOL = 1e-6
# The rounding grows with the steps: 10 steps measured 8e-7 with Keras's one step per call and
# 1.4e-6 with 4 steps per call. One AdamW step more or less moves weights by ~1e-3.
MIRRORED_10_STEPS_ATOL = 5e-6
NATIVE_LOG_LINE = r"^[IWE]\d{4} \d+:\d+:[\d.]+\s+\d+ \S+:\d+\]"


def test_warmup_linear_decay_schedule():
    schedule = optimization.WarmupLinearDecay(peak=1.0, warmup_steps=10, total_steps=110)
    values = [float(schedule(step)) for step in (0, 5, 10, 60, 110, 200)]
    np.testing.assert_allclose(values, [0.0, 0.5, 1.0, 0.5, 0.0, 0.0], atol=1e-7)
    assert type(schedule).from_config(schedule.get_config()).get_config() == schedule.get_config()


@pytest.mark.parametrize("warmup_steps", [0, 10])
def test_warmup_cosine_decay_schedule(warmup_steps):
    schedule = optimization.WarmupCosineDecay(peak=2.0, warmup_steps=warmup_steps, total_steps=110)
    steps = np.arange(0, 130)
    decayed = 1 + np.cos(np.pi * np.clip(steps - warmup_steps, 0, 110 - warmup_steps)
                         / (110 - warmup_steps))
    expected = np.where(steps < warmup_steps, 2.0 * steps / max(warmup_steps, 1), decayed)
    values = [float(schedule(step)) for step in steps]
    np.testing.assert_allclose(values, expected, rtol=0, atol=1e-6)
    assert type(schedule).from_config(schedule.get_config()).get_config() == schedule.get_config()


def test_what_the_data_decides_is_checked_before_training(data_dir):
    source = data.open_source(digits_config(data_dir))
    default = strategy.placement(tf.distribute.get_strategy())
    with pytest.raises(ConfigError, match="num_classes >= 10"):
        loop.describe(digits_config(data_dir, num_classes=5), source, default)
    with pytest.raises(ConfigError, match="multiples of patch_size=4"):
        loop.describe(digits_config(data_dir, image_size=10), source, default)
    two_replicas = dataclasses.replace(default, num_replicas=2)
    with pytest.raises(ConfigError, match="does not split evenly across 2 replicas"):
        loop.describe(digits_config(data_dir, batch_size=63), source, two_replicas)
    with pytest.raises(ConfigError, match="larger than the 1433 training examples"):
        loop.describe(digits_config(data_dir, batch_size=4096), source, default)
    info = loop.describe(digits_config(data_dir, epochs=3), source, default)
    assert info["steps_per_epoch"] == DIGITS_STEPS_PER_EPOCH
    assert info["total_steps"] == 3 * DIGITS_STEPS_PER_EPOCH
    assert info["class_names"] == [str(d) for d in range(10)] and info["test_examples"] == 364


@pytest.mark.slow
def test_non_finite_loss_stops_and_names_the_step(data_dir, tmp_path):
    config = digits_config(
        data_dir, epochs=1, learning_rate=1e30, clip_global_norm=0.0, warmup_steps=0,
        validate_every_epoch=False,
    )
    with pytest.raises(loop.NonFiniteLossError, match=r"at step \d+") as error:
        loop.run(config, str(tmp_path), verbose=0)
    assert "backup" not in str(error.value)  # no checkpoint was written before it: none named


@pytest.mark.slow
def test_one_fit_per_run_counts_the_epochs_of_the_run(data_dir, tmp_path, capsys):
    class CountFits(keras.callbacks.Callback):
        fits = 0

        def on_train_begin(self, logs=None):
            CountFits.fits += 1

    config = digits_config(data_dir, epochs=3, batch_size=256, validate_every_epoch=False)
    loop.run(config, str(tmp_path), verbose=2, callbacks=[CountFits()])
    output = capsys.readouterr().out
    assert CountFits.fits == 1
    assert [line for line in output.splitlines() if line.startswith("Epoch ")] == [
        "Epoch 1/3", "Epoch 2/3", "Epoch 3/3",
    ]
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert metrics["steps"] == 3 * (1433 // 256) and [r["epoch"] for r in metrics["history"]] == [
        1, 2, 3,
    ]


# Two epochs of 5 steps, validated, a checkpoint every step.
RESUMED = dict(epochs=2, batch_size=256, checkpoint_every_steps=1)


@pytest.fixture(scope="module")
def uninterrupted(data_dir, tmp_path_factory):
    """The run of RESUMED without interruption: what every resumed run must end as."""
    keras.utils.set_random_seed(0)
    return Path(loop.run(digits_config(data_dir, **RESUMED),
                         str(tmp_path_factory.mktemp("uninterrupted")), verbose=0))


class OnStep(keras.callbacks.Callback):
    """Calls `action(step)` after each call of the train function, with the step reached."""

    def __init__(self, action):
        super().__init__()
        self.action = action

    def on_train_batch_end(self, batch, logs=None):
        self.action(int(self.model.optimizer.iterations.numpy()))


def test_history_survives_a_resume_and_a_rerun_of_a_finished_run(data_dir, tmp_path, uninterrupted):
    def interrupt(step):
        if step == 1433 // 256 + 2:
            raise KeyboardInterrupt

    config = digits_config(data_dir, **RESUMED)
    with pytest.raises(KeyboardInterrupt):
        loop.run(config, str(tmp_path), verbose=0, callbacks=[OnStep(interrupt)])
    for _ in range(2):  # the resume, then a rerun of the finished run
        loop.run(config, str(tmp_path), verbose=0)
        history = json.loads((tmp_path / "metrics.json").read_text())["history"]
        assert [row["epoch"] for row in history] == [1, 2]
        assert all(np.isfinite(row["val_loss"]) for row in history)
    # Epoch 2's loss and accuracy are the means over all its steps, 2 before the resume and
    # 3 after, as in the run that went through (not over the 3 after the resume).
    assert_same_history(tmp_path, uninterrupted)


@pytest.mark.parametrize("stop_at, where", [
    (7, "(epoch 2, step 2 of 5)"),
    (5, "(the end of epoch 1)"),  # after validation and the epoch's row in every log
])
@pytest.mark.slow
def test_sigterm_saves_at_the_next_step_says_so_and_the_rerun_redoes_none(
    data_dir, tmp_path, monkeypatch, capsys, uninterrupted, stop_at, where
):
    arguments = ["--run-dir", str(tmp_path), "--data-dir", data_dir, "--no-export",
                 "--epochs", "2", "--batch-size", "256", "--set", "model=" + json.dumps(TINY),
                 "--set", "image_size=8", "--set", "jit_compile=false",
                 "--set", "label_smoothing=0.0", "--set", "random_shift=0",
                 "--set", "checkpoint_every_steps=100", *IN_PROCESS]

    def not_caught(signum, frame):  # SIGTERM's own action would end pytest itself
        raise AssertionError("SIGTERM reached the process's handler, not training's")

    # The signal comes in the callbacks after step `stop_at`, before training's own (the
    # last): that is the next step boundary.
    sigterm = OnStep(lambda step: step == stop_at and os.kill(os.getpid(), signal.SIGTERM))
    monkeypatch.setattr(loop, "run", functools.partial(loop.run, verbose=0, callbacks=[sigterm]))
    previous = signal.signal(signal.SIGTERM, not_caught)
    try:
        assert train.main(arguments) == 143
        assert signal.getsignal(signal.SIGTERM) is not_caught  # training's handler is fit's only
    finally:
        signal.signal(signal.SIGTERM, previous)
    error = capsys.readouterr().err
    assert error.count("\n") == 1, error
    assert error.startswith(f"preempted: SIGTERM on this process: stopped at step {stop_at} {where}")
    assert json.loads((tmp_path / "backup" / "step.json").read_text())["step"] == stop_at

    steps = []
    monkeypatch.setattr(loop, "run", functools.partial(
        loop.run, verbose=0, callbacks=[OnStep(steps.append)]))
    assert train.main(arguments) == 0
    assert steps == list(range(stop_at + 1, 11))  # the rerun went on from there, to step 10
    assert max_abs_difference(weights_of(tmp_path), weights_of(uninterrupted)) <= 1e-6
    assert_same_history(tmp_path, uninterrupted)


@pytest.mark.slow
def test_steps_per_execution_that_does_not_divide_the_epoch_keeps_its_steps(data_dir, tmp_path):
    # 5 steps per epoch, 2 per call: Keras's own loop would run 6 per epoch on one stream.
    common = dict(epochs=2, batch_size=256, validate_every_epoch=False, dropout_rate=0.0)
    one = loop.run(digits_config(data_dir, **common), str(tmp_path / "one"), verbose=0)
    two = loop.run(
        digits_config(data_dir, steps_per_execution=2, **common), str(tmp_path / "two"), verbose=0
    )
    assert json.loads((tmp_path / "two" / "metrics.json").read_text())["steps"] == 10
    assert max_abs_difference(weights_of(one), weights_of(two)) <= 1e-6


@pytest.mark.slow
def test_mixed_bfloat16_with_xla_trains_and_saves_a_float32_model(data_dir, tmp_path):
    config = digits_config(
        data_dir, epochs=1, batch_size=128, dtype_policy="mixed_bfloat16", jit_compile=True,
        validate_every_epoch=False, dropout_rate=0.0,
    )
    run_dir = loop.run(config, str(tmp_path), verbose=0)
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert np.isfinite(metrics["test_loss"]) and metrics["steps"] == 1433 // 128
    assert keras.config.dtype_policy().name == "float32"  # the global policy is restored
    model = keras.models.load_model(f"{run_dir}/model.keras")
    assert {layer.dtype_policy.name for layer in model.layers} == {"float32"}


@pytest.mark.slow
def test_init_fine_tunes_an_official_checkpoint_at_a_higher_resolution(data_dir, tmp_path):
    from reference import random_official_params

    # A tiny official-layout checkpoint at 8x8 (2x2 patches of 4) with a 7-class head.
    params = random_official_params(np.random.default_rng(0), **TINY, num_patches=4, num_classes=7)
    path = str(tmp_path / "official.npz")
    np.savez(path, **params)
    config = digits_config(
        data_dir, init=path, num_channels=3, image_size=16, epochs=1, batch_size=256,
        validate_every_epoch=False, dropout_rate=0.0, learning_rate=1e-4,
    )
    run_dir = loop.run(config, str(tmp_path / "run"), verbose=0)
    model = keras.models.load_model(os.path.join(run_dir, "model.keras"))
    assert model.num_classes == 10 and tuple(model.image_size) == (16, 16)
    # The body starts from the checkpoint (5 small steps away), not from a fresh initialisation.
    stem = model.get_layer("stem").get_weights()[0]
    assert np.abs(stem - params["stem/kernel"]).max() < 0.01 < np.abs(params["stem/kernel"]).max()


@pytest.mark.slow
def test_remote_run_directory_gets_every_file_and_nothing_lands_locally(
    data_dir, tmp_path, monkeypatch
):
    # TensorFlow's in-memory filesystem stands in for gs://: it exists in this process only.
    work, temp = tmp_path / "cwd", tmp_path / "tmp"
    work.mkdir(), temp.mkdir()
    monkeypatch.chdir(work)
    monkeypatch.setattr(tempfile, "tempdir", str(temp))
    run_dir = "ram://runs/remote"
    config = digits_config(data_dir, epochs=2, batch_size=256, checkpoint_every_steps=2)
    assert loop.run(config, run_dir, verbose=0) == run_dir
    for name in ("config.json", "run_info.json", "model.keras", "metrics.json",
                 "training_curves.png", "backup/checkpoint.weights.h5", "backup/step.json",
                 "logs/history.csv"):
        assert tf.io.gfile.exists(f"{run_dir}/{name}"), name
    assert tf.io.gfile.listdir(f"{run_dir}/logs/train")  # TensorBoard events
    assert not [n for n in tf.io.gfile.listdir(run_dir) if ".partial-" in n]
    assert keras.models.load_model(f"{run_dir}/model.keras").num_classes == 10
    # AutoGraph writes the Python source of each function it converts to the temp folder (and
    # removes it at exit); which it converts first depends on what this process ran before.
    ours = [path for path in temp.iterdir() if not path.name.startswith("__autograph_generated")]
    assert list(work.iterdir()) == [] and ours == []
    # The same command resumes from there: a finished run is written again, unchanged.
    loop.run(config, run_dir, verbose=0)
    assert len(storage.read_json(f"{run_dir}/metrics.json")["history"]) == 2


@pytest.mark.slow
def test_kill_during_the_final_save_leaves_no_partial_model(data_dir, tmp_path):
    run_dir = tmp_path / "run"
    code, output = run_bounded(program("kill_in_final_save", data_dir, run_dir))
    assert code == -signal.SIGKILL, output[-3000:]
    # The new model.keras was complete under its partial name; the kill came before the rename.
    assert not (run_dir / "model.keras").exists() and not (run_dir / "metrics.json").exists()
    assert [p.name for p in run_dir.glob(".partial-*.model.keras")]
    code, output = run_bounded(program("kill_in_final_save", data_dir, run_dir, "none"))
    assert code == 0, output[-3000:]
    assert keras.models.load_model(run_dir / "model.keras").num_classes == 10
    assert not list(run_dir.glob(".partial-*"))  # the rerun removed what the kill left


# ---------------------------------------------------------------------------------------------
# Distribution: same weights as the default strategy.


@pytest.mark.slow
def test_mirrored_over_two_cpus_matches_default_strategy(data_dir, tmp_path):
    output, one, two = train_on_one_and_two_replicas(data_dir, tmp_path)
    assert "one 1 10 default" in output and "two 2 10 MirroredStrategy" in output
    assert max_abs_difference(one, two) <= MIRRORED_10_STEPS_ATOL


@pytest.mark.slow
def test_multi_worker_two_processes_agree_and_only_chief_writes(data_dir, tmp_path):
    worker0 = train_on_two_processes(data_dir, tmp_path, tf_cluster())
    chief = tmp_path / "run0"
    info = json.loads((chief / "run_info.json").read_text())
    assert info["num_replicas"] == 2 and info["strategy"] == "MultiWorkerMirroredStrategy"
    # Two workers with half batches each follow the same path as one process with the global batch.
    single = loop.run(
        digits_config(data_dir, epochs=1, batch_size=256, warmup_steps=2, dropout_rate=0.0),
        str(tmp_path / "single"),
        verbose=0,
    )
    assert max_abs_difference(worker0, weights_of(single)) <= MIRRORED_ATOL


# ---------------------------------------------------------------------------------------------
# The command line.


@pytest.mark.slow
def test_default_cli_trains_digits_to_97_percent_quietly(data_dir, tmp_path):
    import re

    run_dir = tmp_path / "digits"
    command = [sys.executable, "-m", "training.train", "--run-dir", run_dir, "--data-dir",
               data_dir, "--no-export"]
    code, output = run_bounded(list(map(str, command)), timeout=600)
    assert code == 0, output[-3000:]
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["test_accuracy"] >= 0.97, metrics
    info = json.loads((run_dir / "run_info.json").read_text())
    assert metrics["steps"] == info["total_steps"] == metrics["epochs"] * DIGITS_STEPS_PER_EPOCH
    assert (run_dir / "training_curves.png").stat().st_size > 0
    assert any((run_dir / "logs" / "train").iterdir())  # TensorBoard events
    # Quiet: the progress bar and the result, none of TensorFlow's C++ log lines.
    assert "Epoch 50/50" in output and "test_accuracy=" in output
    assert not re.search(NATIVE_LOG_LINE, output, re.MULTILINE), output[:3000]
    # config.json repeats the run: same data settings, and the saved model takes its images.
    config = json.loads((run_dir / "config.json").read_text())
    model = keras.models.load_model(run_dir / "model.keras")
    test = data.make_dataset(config, config["test_split"], training=False, batch_size=512)
    images, labels = next(iter(test))
    accuracy = float(np.mean(np.argmax(model.predict(images, verbose=0), -1) == labels.numpy()))
    assert abs(accuracy - metrics["test_accuracy"]) < 1e-6


@pytest.mark.slow
def test_cli_bad_input_is_one_line_without_a_traceback(data_dir, tmp_path):
    code, output = run_bounded(
        [sys.executable, "-m", "training.train", "--run-dir", str(tmp_path / "run"),
         "--data-dir", data_dir, "--no-export", "--set", "num_classes=5"],
        timeout=120,
    )
    assert code == 2 and "error: dataset 'sklearn_digits' has labels 0..9" in output
    assert "Traceback" not in output and not (tmp_path / "run").exists()


@pytest.mark.parametrize(
    "arguments, message",
    [
        (["--set", "epochs=abc"], 'config epochs="abc" must be an integer >= 1'),
        (["--set", 'model={"hidden_dim": 16'], "--set model='{\"hidden_dim\": 16' is not valid JSON"),
        (["--batch-size", "0"], "config batch_size=0 must be an integer >= 1"),
        (["--batch-size", "-8"], "config batch_size=-8 must be an integer >= 1"),
        (["--epochs", "0"], "config epochs=0 must be an integer >= 1"),
        (["--set", "epoch=3"], "unknown config key(s) ['epoch']"),
        (["--set", "seed"], "expected KEY=VALUE"),
        (["--recipe", "imagenet"], "unknown recipe 'imagenet'"),
        (["--init", "/nonexistent/Mixer-B_16.npz"], "'/nonexistent/Mixer-B_16.npz' does not exist"),
        (["--set", "init=/x/Mixer-B_16.npz"], "takes RGB images, but num_channels=1"),
    ],
)
def test_cli_refuses_bad_values_before_writing_anything(
    data_dir, tmp_path, capsys, arguments, message
):
    run_dir = tmp_path / "run"
    code = train.main(["--run-dir", str(run_dir), "--data-dir", data_dir, "--no-export", *arguments,
                       *IN_PROCESS])
    error = capsys.readouterr().err
    assert code == 2 and message in error and error.count("\n") == 1, error
    assert not run_dir.exists()


def test_cli_refuses_a_run_dir_that_is_a_file_or_cannot_be_written(data_dir, tmp_path, capsys):
    a_file = tmp_path / "file"
    a_file.write_text("")
    arguments = ["--data-dir", data_dir, "--no-export", "--epochs", "1",
                 "--set", "model=" + json.dumps(TINY), *IN_PROCESS]
    assert train.main(["--run-dir", str(a_file), *arguments]) == 2
    assert f"--run-dir '{a_file}' is a file" in capsys.readouterr().err
    # Permissions do not stop root (CI runs as root): nobody can make a folder inside a file.
    assert train.main(["--run-dir", str(a_file / "run"), *arguments]) == 2
    assert f"cannot write to '{a_file / 'run'}'" in capsys.readouterr().err


@pytest.mark.parametrize("litert_installed", [True, False])
@pytest.mark.slow
def test_cli_ends_by_running_the_export_command_on_the_run(
    data_dir, tmp_path, monkeypatch, capsys, litert_installed
):
    calls = []
    monkeypatch.setattr(train.subprocess, "call", lambda command, env: calls.append(command) or 7)
    find_spec = train.importlib.util.find_spec
    monkeypatch.setattr(  # the TPU stack has no LiteRT: the export is skipped, not failed
        train.importlib.util, "find_spec",
        lambda name: find_spec("json") if litert_installed else None,
    )
    code = train.main(
        ["--run-dir", str(tmp_path), "--data-dir", data_dir, "--epochs", "1",
         "--set", f"model={json.dumps(TINY)}", "--set", "jit_compile=false",
         "--set", "validate_every_epoch=false", *IN_PROCESS]
    )
    if litert_installed:  # export's command on the run, and its exit code
        assert code == 7 and calls == [[sys.executable, "-m", "export.convert", str(tmp_path),
                                        "--out", os.path.join(str(tmp_path), "export"),
                                        *IN_PROCESS]]
    else:
        assert code == 0 and calls == [] and "Export skipped" in capsys.readouterr().out
    config = json.loads((tmp_path / "config.json").read_text())
    assert config["model"] == TINY and config["epochs"] == 1 and config["data_dir"] == data_dir
