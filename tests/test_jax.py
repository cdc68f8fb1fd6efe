"""Training under Keras 3 on JAX (training/distribution.py): the same run, resume and export.

Every JAX run is a subprocess with KERAS_BACKEND=jax (this process runs TensorFlow's Keras),
on this machine's CPU; several devices are the CPU split by
XLA_FLAGS=--xla_force_host_platform_device_count=2, and several hosts are two processes
joined through keras.distribution.initialize() on localhost, as on a TPU pod slice.
The bounds are measured, and say why they are what they are.
"""

import json
import os
import sys

import keras
import numpy as np
import pytest
from helpers import (
    DIGITS_STEPS_PER_EPOCH,
    IN_PROCESS,
    TINY,
    jax_hosts,
    max_abs_difference,
    program,
    run_bounded,
    train_on_one_and_two_replicas,
    train_on_two_processes,
)

from keras_mixer import MlpMixer
from training import data

JAX = {"KERAS_BACKEND": "jax"}
TWO_DEVICES = {**JAX, "XLA_FLAGS": "--xla_force_host_platform_device_count=2"}
# DataParallel over 2 CPU devices vs 1, 10 AdamW steps from the same weights: the gradient
# of the global batch is summed in another order (two halves, then an all-reduce), so the
# weights differ by rounding only; measured 1.2e-6. One AdamW step moves weights by ~1e-3.
DATA_PARALLEL_10_STEPS_ATOL = 5e-6
# Two hosts vs one, 5 steps: the same rounding as two devices in one process; measured 2.6e-7.
TWO_HOSTS_ATOL = 1e-6
# JAX vs TensorFlow from the same weights on the same batches, 8 AdamW steps at the digits
# recipe's learning rate (5e-3, no warmup). Each backend lowers the same ops to other kernels
# (XLA's fused CPU loops under JAX, TensorFlow's oneDNN kernels without XLA, its CPU default),
# so gradients differ by float32 rounding, and Adam's normalised update lr * m / (sqrt(v) + eps)
# turns a rounding difference in a near-zero gradient into a difference of up to lr in that
# weight. Measured: losses within 4.8e-7; weights within 7.7e-6 after one step, growing about
# linearly to 4.3e-5 after 8, while the 8 steps move the weights by 3.8e-2.
BACKENDS_LOSS_ATOL = 1e-5
BACKENDS_WEIGHTS_ATOL = 1e-4


def jax_config_args(data_dir, run_dir, *extra):
    return ["--backend", "jax", "--run-dir", str(run_dir), "--data-dir", data_dir,
            "--no-export", "--set", f"model={json.dumps(TINY)}", "--set", "image_size=8",
            *extra]


@pytest.fixture(scope="module")
def jax_run(data_dir, tmp_path_factory):
    """The digits recipe trained by the command line under JAX on 2 devices, 2 epochs."""
    run_dir = tmp_path_factory.mktemp("jax") / "run"
    code, output = run_bounded(
        [sys.executable, "-m", "training.train", *jax_config_args(data_dir, run_dir),
         "--epochs", "2", "--set", "steps_per_execution=3"],
        env=TWO_DEVICES,
    )
    assert code == 0, output[-3000:]
    return run_dir


def test_cli_trains_under_jax_with_the_run_directory_contract(jax_run):
    run_dir = jax_run
    config = json.loads((run_dir / "config.json").read_text())
    info = json.loads((run_dir / "run_info.json").read_text())
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert config["backend"] == "jax" and info["strategy"] == "DataParallel"
    assert info["num_replicas"] == 2 and info["device_mesh"]["shape"] == [2]
    assert info["device_mesh"]["axis_names"] == ["batch"] and info["device_mesh"]["processes"] == 1
    assert metrics["steps"] == 2 * info["steps_per_epoch"]
    assert [row["epoch"] for row in metrics["history"]] == [1, 2]
    # The JAX run's model.keras, evaluated here by TensorFlow's Keras, gives its accuracy.
    model = keras.models.load_model(run_dir / "model.keras")
    images, labels = zip(*data.make_dataset(config, "test", training=False).as_numpy_iterator())
    predicted = np.argmax(model.predict(np.concatenate(images), verbose=0), axis=-1)
    accuracy = float(np.mean(predicted == np.concatenate(labels)))
    assert abs(accuracy - metrics["test_accuracy"]) < 1e-6 and accuracy > 0.3


@pytest.mark.slow
def test_a_jax_run_exports_on_tensorflow_with_every_check(jax_run):
    pytest.importorskip("ai_edge_litert")  # the Cloud TPU stack exports elsewhere
    run_dir = jax_run
    code, output = run_bounded(
        [sys.executable, "-m", "export.convert", str(run_dir), "--out", str(run_dir / "export"),
         "--formats", "fp32", "int8"],
        env={"KERAS_BACKEND": "tensorflow"},
    )
    assert code == 0, output[-3000:]
    report = json.loads((run_dir / "export" / "report.json").read_text())
    assert set(report["formats"]) == {"fp32", "int8"}
    assert all(result["within_bounds"] for result in report["formats"].values())


@pytest.mark.slow
def test_every_other_recipe_trains_under_jax(data_dir, tmp_path):
    # Digits: the command-line test above. Two devices: bf16 steps under DataParallel.
    code, output = run_bounded(program("jax_recipes", data_dir, tmp_path), env=TWO_DEVICES)
    assert code == 0, output[-3000:]
    lines = {line.split()[0]: line for line in output.splitlines() if " steps=" in line}
    for name in ("pretrain", "i1k", "finetune"):
        assert lines[name].endswith("policy=mixed_bfloat16"), output[-3000:]
        assert f" steps={DIGITS_STEPS_PER_EPOCH} " in lines[name]
    for name in ("pretrain", "i1k"):
        info = json.loads((tmp_path / name / "run_info.json").read_text())
        assert info["strategy"] == "DataParallel" and info["num_replicas"] == 2
    # The last one trained into ram://: every file there, through the storage layer.
    remote = {line.split(" ", 1)[1] for line in output.splitlines() if line.startswith("ram:// ")}
    for name in ("config.json", "run_info.json", "model.keras", "metrics.json",
                 "backup/checkpoint.weights.h5", "backup/step.json", "logs/history.csv"):
        assert name in remote, sorted(remote)
    assert not any(".partial-" in name for name in remote)
    assert not (tmp_path / "finetune").exists()


@pytest.mark.slow
def test_data_parallel_over_two_devices_matches_one_device(data_dir, tmp_path):
    output, one, two = train_on_one_and_two_replicas(data_dir, tmp_path, env=TWO_DEVICES)
    assert "one 1 10 DataParallel" in output and "two 2 10 DataParallel" in output
    assert max_abs_difference(one, two) <= DATA_PARALLEL_10_STEPS_ATOL


@pytest.mark.slow
def test_two_hosts_read_their_own_shards_and_match_one_host(data_dir, tmp_path):
    host0 = train_on_two_processes(data_dir, tmp_path, jax_hosts())
    info = json.loads((tmp_path / "run0" / "run_info.json").read_text())
    assert info["num_replicas"] == 2 and info["device_mesh"]["processes"] == 2
    # Each host read half of every global batch: together, the one-host run's batches.
    code, output = run_bounded(
        program("worker", data_dir, tmp_path / "single", tmp_path / "single.npz"), env=JAX
    )
    assert code == 0, output[-3000:]
    single = np.load(tmp_path / "single.npz")
    assert max_abs_difference(host0, [single[key] for key in single.files]) <= TWO_HOSTS_ATOL


@pytest.mark.slow
def test_jax_and_tensorflow_track_each_other_from_the_same_weights(tmp_path):
    keras.utils.set_random_seed(1)
    model = MlpMixer(**TINY, num_classes=10, image_size=8, num_channels=1)
    rng = np.random.default_rng(0)
    weights = [w + rng.normal(0, 0.05, w.shape).astype("float32") for w in model.get_weights()]
    steps, batch = 8, 64
    np.savez(
        tmp_path / "in.npz",
        weights=np.array(weights, dtype=object),
        images=rng.uniform(0, 255, (steps, batch, 8, 8, 1)).astype("float32"),
        labels=rng.integers(0, 10, (steps, batch)).astype("int32"),
    )
    results = {}
    for backend in ("tensorflow", "jax"):
        out = tmp_path / f"{backend}.npz"
        code, output = run_bounded(
            program("backend_steps", tmp_path / "in.npz", out), env={"KERAS_BACKEND": backend}
        )
        assert code == 0 and f"backend {backend}" in output, output[-3000:]
        results[backend] = np.load(out)
    tf_run, jax_run = results["tensorflow"], results["jax"]
    np.testing.assert_allclose(jax_run["losses"], tf_run["losses"], atol=BACKENDS_LOSS_ATOL)
    assert np.max(np.abs(jax_run["weights"] - tf_run["weights"])) <= BACKENDS_WEIGHTS_ATOL
    initial = np.concatenate([np.ravel(w) for w in weights])
    assert np.max(np.abs(tf_run["weights"][-1] - initial)) > 100 * BACKENDS_WEIGHTS_ATOL


@pytest.mark.slow
def test_bad_input_under_jax_is_one_line_before_training(data_dir, tmp_path):
    run_dir = tmp_path / "run"
    args = jax_config_args(data_dir, run_dir)
    tf_config = json.dumps({"cluster": {"worker": ["127.0.0.1:1", "127.0.0.1:2"]},
                            "task": {"type": "worker", "index": 0}})
    cases = [
        ({"argv": [*args, "--strategy", "mirrored"]}, "config strategy='mirrored' is TensorFlow's"),
        ({"argv": [*args, "--tpu", "my-tpu"]}, "config tpu='my-tpu' names a TPU node"),
        ({"argv": args, "env": {"TF_CONFIG": tf_config}}, "TF_CONFIG describes a tf.distribute"),
        ({"argv": [*args, "--batch-size", "63"]}, "does not split evenly across 2 replicas"),
    ]
    (tmp_path / "cases.json").write_text(json.dumps([case for case, _ in cases]))
    code, output = run_bounded(program("jax_cli", tmp_path / "cases.json"), env=TWO_DEVICES)
    assert code == 0, output[-3000:]
    results = [json.loads(line) for line in output.splitlines() if line.startswith('{"code"')]
    assert len(results) == len(cases), output[-3000:]
    for result, (_, message) in zip(results, cases):
        assert result["code"] == 2 and message in result["stderr"], result
        assert result["stderr"].count("\n") == 1, result
    assert not run_dir.exists()


def test_jax_backend_without_jax_installed_is_one_line(tmp_path):
    # jax hidden: `import jax` raises ImportError, as where it is not installed.
    hide_jax = (
        "import runpy, sys; sys.modules['jax'] = None; "
        "sys.argv = ['train', '--backend', 'jax', '--run-dir', sys.argv[1]]; "
        "runpy.run_module('training.train', run_name='__main__')"
    )
    code, output = run_bounded([sys.executable, "-c", hide_jax, str(tmp_path / "run")], timeout=120)
    assert code == 2 and output.count("\n") == 1, output
    assert output.startswith("error: KERAS_BACKEND=jax but jax does not import") and "pip install" in output
    assert not (tmp_path / "run").exists()


def test_a_backend_other_than_the_running_one_is_refused(data_dir, tmp_path, capsys):
    from training import train

    code = train.main(["--run-dir", str(tmp_path / "run"), "--data-dir", data_dir, "--no-export",
                       "--set", "backend=jax", *IN_PROCESS])
    error = capsys.readouterr().err
    assert code == 2 and "config backend='jax' but Keras runs on 'tensorflow'" in error, error
    assert "--backend jax" in error and not (tmp_path / "run").exists()
    assert os.environ.get("KERAS_BACKEND", "tensorflow") == "tensorflow"


def pins(path):
    """{package: version} of a requirements file's `==` pins, extras dropped."""
    with open(path) as lines:
        pairs = (line.split("#")[0].strip().split("==") for line in lines)
        return {name.split("[")[0]: version for name, *rest in pairs if rest for version in rest}


def test_the_cloud_tpu_jax_stack_pins_the_versions_this_suite_tests():
    # .ci/run tests requirements-tpu-jax.txt's own environment with a few of this file's
    # tests only: the rest of its code is tested here, on the same versions.
    from helpers import REPO

    tpu, main = (pins(os.path.join(REPO, name))
                 for name in ("requirements-tpu-jax.txt", "requirements.txt"))
    tpu["tensorflow"] = tpu.pop("tensorflow-cpu")  # the same TensorFlow, without its GPU part
    assert {"jax", "keras", "tensorflow", "tensorflow-datasets"} <= tpu.keys()
    assert {name: main.get(name) for name in tpu} == tpu
