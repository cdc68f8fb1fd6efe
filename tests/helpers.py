"""What several test modules share: the tiny Mixer and its reference check, official-layout
checkpoints, image folders, bounded subprocesses."""

import json
import math
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

# The tiny Mixer (not a paper variant: 4x4 patches, 2 blocks) that the benchmarks' --quick
# runs build too: one definition.
from benchmarks.common import TINY  # noqa: F401 (re-exported to the test modules)
# A Keras Mixer's weights under the official checkpoint keys, for tests/reference.py.
from keras_mixer.official_layout import official_params  # noqa: F401

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PROGRAMS = os.path.join(REPO, "tests", "programs")
# Float32 Keras against the float64 reference (tests/reference.py): measured ~2e-7 on the tiny
# model and ~3e-6 on S/32 (logits of magnitude ~2), so 1e-5 relative to the logit scale is
# float32 round-off level.
TOLERANCE = 1e-5
SUBPROCESS_TIMEOUT_S = 300
# The digits recipe's training split and batch size (training/recipes.py).
DIGITS_STEPS_PER_EPOCH = 1433 // 64
# A command line's `main(argv)` called in the test process keeps TensorFlow's logs: the quiet
# console rewires file descriptor 2, which pytest owns here. test_export.py's
# test_command_lines_are_quiet_unless_verbose runs the commands quiet, in their own process.
IN_PROCESS = ["--verbose"]
# What a test subprocess sees: the repository and tests/ (for helpers) importable, TF quiet.
ENV = {
    "TF_CPP_MIN_LOG_LEVEL": "2",
    "PYTHONPATH": os.pathsep.join([REPO, os.path.join(REPO, "tests")]),
}


def start(args, env=None, **kwargs):
    """subprocess.Popen from the repository root with ENV; stdout and stderr together."""
    return subprocess.Popen(
        args, cwd=REPO, env={**os.environ, **ENV, **(env or {})}, stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT, text=True, **kwargs,
    )


def run_bounded(args, timeout=SUBPROCESS_TIMEOUT_S, env=None, **kwargs):
    """subprocess.run from the repository root with a timeout that ends in SIGKILL.

    A test must end even when the code under test hangs.
    """
    return finish(start(args, env, **kwargs), timeout)


def finish(process, timeout=SUBPROCESS_TIMEOUT_S):
    """Waits for a `start`ed process as run_bounded does: (returncode, output)."""
    try:
        output, _ = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        output, _ = process.communicate()
        pytest.fail(f"{process.args} did not finish within {timeout} s:\n{output[-3000:]}")
    return process.returncode, output


def program(name, *args):
    """The command line of the test program tests/programs/NAME.py."""
    return [sys.executable, os.path.join(PROGRAMS, f"{name}.py"), *map(str, args)]


def train_on_one_and_two_replicas(data_dir, out_dir, env=None):
    """Runs tests/programs/two_replicas.py under `env`; returns its output and the final
    weights of the one-replica and the two-replica run."""
    code, output = run_bounded(program("two_replicas", data_dir, out_dir), env=env)
    assert code == 0, output[-3000:]
    one, two = (np.load(os.path.join(out_dir, f"{name}.npz")) for name in ("one", "two"))
    one, two = ([npz[key] for key in npz.files] for npz in (one, two))
    # The steps did change the weights (the test could fail).
    assert max(float(np.max(np.abs(w))) for w in one[-2:]) > 1e-3
    return output, one, two


def max_abs_difference(weights_a, weights_b):
    assert len(weights_a) == len(weights_b)
    return max(
        float(np.max(np.abs(np.asarray(a) - np.asarray(b)))) for a, b in zip(weights_a, weights_b)
    )


def random_images(batch, height, width=None, seed=0):
    """Raw pixels: float32 in [0, 255], NHWC with 3 channels."""
    return np.random.default_rng(seed).uniform(0, 255, (batch, height, width or height, 3)).astype("float32")


def randomize(model, seed=1):
    """Gives every weight (including the zero-initialised head) random values."""
    rng = np.random.default_rng(seed)
    model.set_weights([rng.normal(0, 0.3, w.shape).astype("float32") for w in model.get_weights()])
    return model


def write_checkpoint(directory, params, name="ckpt.npz"):
    """Writes `params` (official keys) as an .npz, the official checkpoints' format."""
    path = os.path.join(directory, name)
    np.savez(path, **params)
    return path


def assert_close_to_reference(logits, expected):
    """Float32 logits within TOLERANCE of the float64 reference, relative to the logit scale."""
    bound = TOLERANCE * max(1.0, float(np.abs(expected).max()))
    difference = float(np.abs(np.asarray(logits) - expected).max())
    assert difference <= bound, f"max logit difference {difference:.2e} exceeds {bound:.2e}"
    return difference


def write_image_folder(root, layout, size=(8, 8), seed=0, extension="png"):
    """Writes ROOT/<split>/<class>/<i>.<ext> with `layout = {split: {class: count}}`.

    Each image is filled with one gray level that encodes its class index in sorted order
    of all classes named in `layout`, so a test can read the true class off the pixels.
    Returns {split: [(path, class name), ...]}.
    """
    from PIL import Image

    classes = sorted({name for split in layout.values() for name in split})
    rng = np.random.default_rng(seed)
    written = {}
    for split, counts in layout.items():
        for class_name, count in counts.items():
            directory = os.path.join(root, split, class_name)
            os.makedirs(directory, exist_ok=True)
            for index in range(count):
                level = 20 * classes.index(class_name) + int(rng.integers(0, 3))
                pixels = np.full((*size, 3), level, np.uint8)
                path = os.path.join(directory, f"{index}.{extension}")
                Image.fromarray(pixels).save(path)
                written.setdefault(split, []).append((path, class_name))
    return written


def digits_config(data_dir, **overrides):
    """The digits recipe with the tiny model on the 8x8 images, integer labels, no shifts."""
    from training import recipes

    settings = dict(
        data_dir=data_dir, model=dict(TINY), jit_compile=False, image_size=8,
        label_smoothing=0.0, random_shift=0,
    )
    return recipes.get_recipe("digits", **{**settings, **overrides})


def weights_of(run_dir):
    import keras

    return keras.models.load_model(os.path.join(run_dir, "model.keras")).get_weights()


def history_of(run_dir):
    """metrics.json's history and history.csv's rows, each as {key: [value per epoch]}."""
    import csv

    history = json.loads((run_dir / "metrics.json").read_text())["history"]
    with open(run_dir / "logs" / "history.csv") as file:
        rows = list(csv.DictReader(file))
    # Keras's CSVLogger writes "NA" in the val_ columns of an unvalidated run.
    return [{key: [np.nan if row[key] == "NA" else float(row[key]) for row in table]
             for key in table[0]} for table in (history, rows)]


def assert_same_history(run_dir, expected_dir, atol=1e-6):
    """The per-epoch history of `run_dir` (metrics.json and history.csv) is `expected_dir`'s."""
    for got, expected in zip(history_of(run_dir), history_of(expected_dir), strict=True):
        assert got.keys() == expected.keys()
        for key in expected:
            np.testing.assert_allclose(got[key], expected[key], rtol=0, atol=atol, err_msg=key)


def interrupt_mid_epoch_and_resume(data_dir, tmp_path, steps_per_execution, how, cluster=None,
                                   notice_s=0.0):
    """Interrupts tests/programs/resume.py mid-epoch with the signal `how`, reruns it, and
    checks it against an uninterrupted run: the same weights and per-epoch history.

    SIGKILL comes a few steps after a checkpoint: the rerun redoes at most
    `checkpoint_every_steps` steps. SIGTERM comes at any step: the run saves at the next
    step boundary once it has noticed the signal (within `notice_s`), says so in one line and
    exits with 143, and the rerun redoes no step. `cluster()` returns one environment per
    process of a run (the last one is signalled), fresh for each run; by default a run is one
    process with KERAS_BACKEND's default.
    """
    epochs, every, steps = 3, 4, DIGITS_STEPS_PER_EPOCH
    cluster = cluster or (lambda: [None])
    # The interrupted run's calls are slow enough that a late notice spans only a few of them.
    call_delay = max(0.15, notice_s / 2)
    started = []

    def start_run(name, delay):
        run_dir = tmp_path / name
        processes = [
            start(program("resume", data_dir, run_dir, tmp_path / f"{name}-{index}.progress",
                          delay, steps_per_execution), env)
            for index, env in enumerate(cluster())
        ]
        started.extend(processes)
        return run_dir, processes

    try:
        # The uninterrupted run trains meanwhile: the interrupted one mostly sleeps.
        expected_dir, uninterrupted = start_run("uninterrupted", 0.0)
        run_dir, processes = start_run("interrupted", call_delay)
        reached, noticed = _signal_mid_epoch(processes, tmp_path, steps_per_execution, how,
                                             notice_s, call_delay)
        results = [finish(process) for process in processes]
        saved = json.loads((run_dir / "backup" / "step.json").read_text())
        assert not (run_dir / "model.keras").exists()
        if how == signal.SIGTERM:
            for code, output in results:  # every process stops at one step, and says so once
                lines = [line for line in output.splitlines() if line.startswith("preempted: ")]
                assert code == 143 and len(lines) == 1, output[-3000:]
                assert f"stopped at step {saved['step']} " in lines[0], output[-3000:]
                assert "Traceback" not in output, output[-3000:]
            # Every step done when the signal came is in the checkpoint, and at most the call
            # under way once it was noticed ran on (or the next one, where the processes agree
            # one call later).
            assert reached <= saved["step"] <= noticed + 2 * steps_per_execution, (reached, noticed)
        else:
            assert reached - saved["step"] <= every + steps_per_execution
        assert 0 < saved["step_in_epoch"]

        run_dir, processes = start_run("interrupted", 0.0)
        for process in processes:
            code, output = finish(process)
            assert code == 0, output[-3000:]
            assert f"from step {saved['step']} " in output  # the rerun's resume notice
        for process in uninterrupted:
            code, output = finish(process)
            assert code == 0, output[-3000:]
    finally:
        for process in started:
            process.kill()  # a no-op once it has ended; else it must not outlive a failure
            process.communicate()

    resumed = json.loads((run_dir / "metrics.json").read_text())
    assert resumed["steps"] == steps * epochs and resumed["epochs"] == epochs
    assert [row["epoch"] for row in resumed["history"]] == [1, 2, 3]
    assert max_abs_difference(weights_of(run_dir), weights_of(expected_dir)) <= 1e-6
    # The epoch resumed mid-way is the mean over all its steps, as in the uninterrupted run.
    assert_same_history(run_dir, expected_dir)


def _signal_mid_epoch(processes, tmp_path, steps_per_execution, how, notice_s, call_delay):
    """Sends `how` to the last of `processes` in the middle of the second epoch (SIGKILL: a
    few steps after a mid-epoch checkpoint); returns the step it had reached, and the step it
    had reached once the run had had `notice_s` (and half a second's slack) to notice it."""
    steps = DIGITS_STEPS_PER_EPOCH
    wait_s = notice_s + 0.5 if notice_s else 0.0  # the time given to notice, with its slack
    # SIGTERM leaves room in the epoch for the calls run before it is noticed, and two more.
    late_calls = math.ceil(wait_s / call_delay)
    last = 2 * steps - (late_calls + 2) * steps_per_execution
    progress = tmp_path / f"interrupted-{len(processes) - 1}.progress"
    step_file = tmp_path / "interrupted" / "backup" / "step.json"
    deadline = time.monotonic() + SUBPROCESS_TIMEOUT_S
    while time.monotonic() < deadline:
        reached = int(progress.read_text() or 0) if progress.exists() else 0
        if how == signal.SIGTERM:
            ready = steps < reached < last
        else:
            saved = json.loads(step_file.read_text()) if step_file.exists() else {}
            mid_epoch = saved.get("epoch") == 1 and 0 < saved["step_in_epoch"]
            ready = mid_epoch and reached > saved["step"]
        if ready:
            os.kill(processes[-1].pid, how)
            reached = int(progress.read_text())
            if not wait_s:
                return reached, reached
            time.sleep(wait_s)
            return reached, int(progress.read_text())
        for process in processes:
            if process.poll() is not None:
                pytest.fail(f"the run ended before the signal:\n{finish(process)[1][-3000:]}")
        time.sleep(0.02)
    pytest.fail("the run did not reach the middle of its second epoch in time")


def free_port():
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def tf_cluster(tasks=2):
    """One environment per task of a TF_CONFIG cluster of `tasks` workers on localhost."""
    workers = [f"127.0.0.1:{free_port()}" for _ in range(tasks)]
    return [
        {"TF_CONFIG": json.dumps(
            {"cluster": {"worker": workers}, "task": {"type": "worker", "index": index}})}
        for index in range(tasks)
    ]


def jax_hosts(hosts=2):
    """One environment per process of `hosts` JAX processes joined on localhost."""
    address = f"127.0.0.1:{free_port()}"
    return [
        {"KERAS_BACKEND": "jax", "KERAS_DISTRIBUTION_JOB_ADDRESSES": address,
         "KERAS_DISTRIBUTION_NUM_PROCESSES": str(hosts), "KERAS_DISTRIBUTION_PROCESS_ID": str(index)}
        for index in range(hosts)
    ]


def train_on_two_processes(data_dir, tmp_path, envs):
    """Runs tests/programs/worker.py as two processes at once, process i under `envs[i]`,
    each with its own run directory tmp_path/run<i>; checks that both end, that only process
    0 (the chief) wrote a run directory and that both hold the same final weights; returns
    process 0's weights."""
    processes = []
    for index, env in enumerate(envs):
        command = program("worker", data_dir, tmp_path / f"run{index}", tmp_path / f"w{index}.npz")
        processes.append(start(command, env=env))
    deadline = time.monotonic() + SUBPROCESS_TIMEOUT_S
    outputs = []
    for process in processes:
        try:
            outputs.append(process.communicate(timeout=max(1, deadline - time.monotonic()))[0])
        except subprocess.TimeoutExpired:
            for other in processes:
                other.kill()
            pytest.fail("two-process training did not finish in time (processes killed)")
    for index, (process, output) in enumerate(zip(processes, outputs)):
        assert process.returncode == 0, f"process {index}:\n{output[-3000:]}"
    assert "run: None" in outputs[1] and f"run: {tmp_path / 'run0'}" in outputs[0]
    first, second = (np.load(tmp_path / f"w{i}.npz") for i in range(2))
    first, second = ([npz[key] for key in npz.files] for npz in (first, second))
    assert max_abs_difference(first, second) == 0.0
    chief = tmp_path / "run0"
    for name in ("model.keras", "metrics.json", "config.json", "backup/checkpoint.weights.h5"):
        assert (chief / name).exists(), name
    assert not (tmp_path / "run1").exists() or not any((tmp_path / "run1").rglob("*.*"))
    return first


def litert_logits(path, images):
    """Float logits of a `.tflite` file on float pixels, one image at a time, written here from
    LiteRT's own interpreter and the TFLite quantization rule (real = scale * (q - zero_point)),
    apart from export/evaluate.py, so that a test can hold export's figures to it."""
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_path=str(path))
    interpreter.allocate_tensors()
    (source,), (sink,) = interpreter.get_input_details(), interpreter.get_output_details()
    logits = []
    for image in np.asarray(images, np.float32):
        scale, zero_point = source["quantization"]
        if np.issubdtype(source["dtype"], np.integer):
            limits = np.iinfo(source["dtype"])
            image = np.clip(np.round(image / scale + zero_point), limits.min, limits.max)
        interpreter.set_tensor(source["index"], image[None].astype(source["dtype"]))
        interpreter.invoke()
        output = interpreter.get_tensor(sink["index"])[0].astype(np.float64)
        scale, zero_point = sink["quantization"]
        logits.append(scale * (output - zero_point) if scale else output)
    return np.stack(logits)
