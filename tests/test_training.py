"""training/: the data pipeline, strategy selection, distribution, resume after SIGKILL, bad input.

Distribution is checked against the default strategy (same global batch, same weights
within a stated tolerance), resume against an uninterrupted run. Every subprocess is
bounded by a timeout that ends in SIGKILL: a TF worker whose peer never starts waits
forever and ignores SIGTERM.
"""

import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
import types

import numpy as np
import pytest
import tensorflow as tf

from training import data, recipes, train
from training import strategy as strategy_lib
from training.digits import digits_split

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TINY = dict(patch_size=4, hidden_dim=16, num_blocks=2, tokens_mlp_dim=8, channels_mlp_dim=32)
# float32 sums over 2 replicas vs 1 differ in rounding only; 5 AdamW steps measured 7e-8.
MIRRORED_ATOL = 1e-6
# The rounding grows with the steps: 10 steps measured 8e-7 with Keras's one step per call and
# 1.4e-6 with UnrolledSteps (4 per call). One AdamW step more or less moves weights by ~1e-3.
MIRRORED_10_STEPS_ATOL = 5e-6
SUBPROCESS_TIMEOUT_S = 300


@pytest.fixture(scope="session")
def data_dir(tmp_path_factory):
    path = str(tmp_path_factory.mktemp("tfds"))
    data.dataset_info({"dataset": "sklearn_digits", "data_dir": path}, "train")  # prepares it once
    return path


def tiny_config(data_dir, **overrides):
    """The digits recipe with the tiny model on the 8x8 images, integer labels, no shifts."""
    return recipes.get_recipe(
        "digits",
        **{
            "data_dir": data_dir,
            "model": dict(TINY),
            "jit_compile": False,
            "image_size": 8,
            "label_smoothing": 0.0,
            "random_shift": 0,
            **overrides,
        },
    )


def run_bounded(args, timeout=SUBPROCESS_TIMEOUT_S, env=None, **kwargs):
    """subprocess.run with a timeout that ends in SIGKILL (TF ignores SIGTERM when stuck)."""
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "PYTHONPATH": REPO, **(env or {})}
    process = subprocess.Popen(
        args,
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        **kwargs,
    )
    try:
        output, _ = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        output, _ = process.communicate()
        pytest.fail(f"{args} did not finish within {timeout} s:\n{output[-3000:]}")
    return process.returncode, output


def max_abs_difference(weights_a, weights_b):
    assert len(weights_a) == len(weights_b)
    return max(
        float(np.max(np.abs(np.asarray(a) - np.asarray(b)))) for a, b in zip(weights_a, weights_b)
    )


# ---------------------------------------------------------------------------------------------
# Data.


def test_digits_split_is_deterministic_stratified_and_disjoint():
    from sklearn.datasets import load_digits

    train_images, train_labels = digits_split("train")
    test_images, test_labels = digits_split("test")
    assert len(train_labels) + len(test_labels) == 1797
    # Every class is about 20% test.
    counts = np.bincount(test_labels) / (np.bincount(test_labels) + np.bincount(train_labels))
    assert np.all(np.abs(counts - 0.2) < 0.01)
    # Together the splits are scikit-learn's images, exactly, scaled to 0..255.
    expected = np.round(load_digits().images * 255 / 16).astype(np.uint8)
    got = np.concatenate([train_images, test_images])[..., 0]
    assert sorted(map(bytes, got)) == sorted(map(bytes, expected))
    np.testing.assert_array_equal(digits_split("test")[0], test_images)


def test_make_dataset_gives_static_float_pixels_and_the_split(data_dir):
    config = tiny_config(data_dir)
    test = data.make_dataset(config, "test", training=False, batch_size=100)
    images, labels = zip(*[(x.numpy(), y.numpy()) for x, y in test])
    images, labels = np.concatenate(images), np.concatenate(labels)
    # Evaluation keeps every example; the pixels are the builder's, as float32 in [0, 255].
    expected_images, expected_labels = digits_split("test")
    assert images.dtype == np.float32 and labels.dtype == np.int32
    assert images.shape == (364, 8, 8, 1)
    assert sorted(zip(map(bytes, images.astype(np.uint8)), labels)) == sorted(
        zip(map(bytes, expected_images), expected_labels)
    )

    train_ds = data.make_dataset(config, "train", training=True)
    spec_images, spec_labels = train_ds.element_spec
    assert spec_images.shape == (64, 8, 8, 1) and spec_labels.shape == (64,)  # fully static
    assert len(list(train_ds)) == 1433 // 64  # drop_remainder


def test_training_stream_is_a_function_of_seed_epoch_and_step(data_dir):
    config = tiny_config(data_dir)

    def labels(**kwargs):
        return np.concatenate(
            [y.numpy() for _, y in data.make_dataset(config, "train", training=True, **kwargs)]
        )

    epoch0 = labels(epoch=0)
    np.testing.assert_array_equal(epoch0, labels(epoch=0))
    assert not np.array_equal(epoch0, labels(epoch=1))
    np.testing.assert_array_equal(labels(epoch=0, start_step=5), epoch0[5 * 64 :])


def test_input_pipelines_split_the_global_batch_without_overlap(data_dir):
    config = tiny_config(data_dir)
    whole = [y.numpy() for _, y in data.make_dataset(config, "train", training=True)]
    shards = []
    for pipeline_id in range(2):
        context = tf.distribute.InputContext(
            num_input_pipelines=2, input_pipeline_id=pipeline_id, num_replicas_in_sync=2
        )
        ds = data.make_dataset(config, "train", training=True, input_context=context)
        assert ds.element_spec[0].shape[0] == 32  # per-replica batch
        shards.append(np.concatenate([y.numpy() for _, y in ds]))
    # The two pipelines read the same seeded order and take alternate examples.
    order = np.concatenate(whole)
    np.testing.assert_array_equal(shards[0][: len(order) // 2], order[0::2][: len(shards[0])])
    np.testing.assert_array_equal(shards[1], order[1::2][: len(shards[1])])


def test_class_names(data_dir):
    assert data.class_names({"dataset": "sklearn_digits", "data_dir": data_dir}) == [
        str(d) for d in range(10)
    ]


def test_unprepared_tfds_dataset_fails_fast_with_how_to(tmp_path):
    start = time.monotonic()
    with pytest.raises(data.DataError, match="tfds build cifar10"):
        data.dataset_info({"dataset": "cifar10", "data_dir": str(tmp_path)}, "train")
    assert time.monotonic() - start < 30
    with pytest.raises(
        data.DataError, match="neither a tensorflow-datasets name nor an existing folder"
    ):
        data.dataset_info({"dataset": "no_such_dataset_xyz", "data_dir": str(tmp_path)}, "train")


def test_image_folder_reads_classes_and_reports_corrupt_files(tmp_path, caplog):
    from PIL import Image

    images, labels = digits_split("test")
    for split in ("train", "test"):
        for index in range(30):
            class_dir = tmp_path / split / f"class_{labels[index]}"
            class_dir.mkdir(parents=True, exist_ok=True)
            Image.fromarray(images[index][..., 0]).save(class_dir / f"{index}.png")
    corrupt = tmp_path / "train" / f"class_{labels[0]}" / "corrupt.png"
    corrupt.write_bytes(b"not a png")
    config = tiny_config(None, dataset=str(tmp_path), batch_size=8)
    with caplog.at_level("WARNING"):
        info = data.dataset_info(config, "train")
    assert info["num_examples"] == 30 and info["skipped_files"] == [
        f"{corrupt} (UnidentifiedImageError)"
    ]
    assert str(corrupt) in caplog.text
    test = data.make_dataset(config, "test", training=False)
    got = np.concatenate([x.numpy() for x, _ in test])
    assert got.shape == (30, 8, 8, 1)
    assert sorted(map(bytes, got.astype(np.uint8))) == sorted(map(bytes, images[:30]))
    # Gray images feed a 3-channel model as RGB.
    rgb = data.make_dataset({**config, "num_channels": 3}, "test", training=False)
    assert rgb.element_spec[0].shape[-1] == 3


def test_paper_recipes_build_their_augmented_pipelines(tmp_path):
    from PIL import Image

    rng = np.random.default_rng(0)
    for label in range(2):
        class_dir = tmp_path / "train" / f"class_{label}"
        class_dir.mkdir(parents=True)
        for index in range(8):
            pixels = rng.integers(0, 256, (30, 40, 3), dtype=np.uint8)
            Image.fromarray(pixels).save(class_dir / f"{index}.jpg")

    def first_batch(recipe, **overrides):
        config = recipes.get_recipe(
            recipe, dataset=str(tmp_path), image_size=16, batch_size=4, **overrides
        )
        return next(iter(data.make_dataset(config, "train", training=True)))

    plain_images, plain_labels = first_batch("pretrain")
    # RandAugment alone: same examples in the same order (the labels), other pixels.
    augmented, same_labels = first_batch("pretrain", randaugment={"num_ops": 2, "magnitude": 15})
    np.testing.assert_array_equal(same_labels, plain_labels)
    assert not np.allclose(augmented, plain_images) and augmented.dtype == tf.float32
    images, labels = first_batch("i1k")  # + RandAugment 2/15 and mixup 0.5
    assert images.shape == plain_images.shape == (4, 16, 16, 3)
    assert np.all((images.numpy() >= 0) & (images.numpy() <= 255))
    # Same seed, same crops and order: what differs is RandAugment's and mixup's doing.
    assert not np.allclose(images, plain_images)
    # mixup: soft labels, each a mix of at most two one-hot rows.
    assert labels.shape == (4, 2) and plain_labels.shape == (4,)
    np.testing.assert_allclose(labels.numpy().sum(axis=1), 1.0, atol=1e-6)
    assert np.all(labels.numpy() >= 0)
    first_batch("finetune")
    assert data.randaugment_factor(15) == 0.5  # the paper's magnitude: mid-scale
    with pytest.raises(ValueError, match="randaugment magnitude=31 is outside 0..30"):
        data.randaugment_factor(31)


# ---------------------------------------------------------------------------------------------
# Recipes, schedule, errors before training.


def test_recipes_are_complete_and_follow_the_paper():
    for name in recipes.RECIPES:
        assert set(recipes.get_recipe(name)) == set(recipes.BASE) | {"recipe"}
    pretrain = recipes.get_recipe("pretrain")
    # Paper, Appendix B: Adam (0.9, 0.999), linear warmup 10k then linear decay, clip at 1.
    assert (pretrain["optimizer"], pretrain["beta_1"], pretrain["beta_2"]) == ("adam", 0.9, 0.999)
    assert (pretrain["warmup_steps"], pretrain["decay"], pretrain["clip_global_norm"]) == (
        10_000,
        "linear",
        1.0,
    )
    finetune = recipes.get_recipe("finetune")
    assert (finetune["optimizer"], finetune["momentum"], finetune["decay"]) == (
        "sgd",
        0.9,
        "cosine",
    )
    i1k = recipes.get_recipe("i1k")
    assert i1k["randaugment"] == {"num_ops": 2, "magnitude": 15} and i1k["mixup_alpha"] == 0.5
    # A named variant replaces the recipe's architecture instead of being overridden by it.
    assert train.model_architecture(recipes.get_recipe("digits", variant="S/32"))["hidden_dim"] == 512
    with pytest.raises(ValueError, match="Unknown config key"):
        recipes.get_recipe("digits", epoch=3)
    with pytest.raises(ValueError, match="Known recipes"):
        recipes.get_recipe("imagenet")


def test_warmup_linear_decay_schedule():
    schedule = train.WarmupLinearDecay(peak=1.0, warmup_steps=10, total_steps=110)
    values = [float(schedule(step)) for step in (0, 5, 10, 60, 110, 200)]
    np.testing.assert_allclose(values, [0.0, 0.5, 1.0, 0.5, 0.0, 0.0], atol=1e-7)
    assert type(schedule).from_config(schedule.get_config()).get_config() == schedule.get_config()


def test_bad_config_fails_before_training(data_dir):
    default = tf.distribute.get_strategy()
    with pytest.raises(train.ConfigError, match="num_classes >= 10"):
        train.resolve_config(tiny_config(data_dir, num_classes=5), default)
    with pytest.raises(ValueError, match="multiples of patch_size=4"):
        train.resolve_config(tiny_config(data_dir, image_size=10), default)
    two_replicas = types.SimpleNamespace(num_replicas_in_sync=2)
    with pytest.raises(train.ConfigError, match="does not split evenly across 2 replicas"):
        train.resolve_config(tiny_config(data_dir, batch_size=63), two_replicas)
    with pytest.raises(train.ConfigError, match="larger than the 1433 training examples"):
        train.resolve_config(tiny_config(data_dir, batch_size=4096), default)


def test_non_finite_loss_stops_and_names_the_step(data_dir, tmp_path):
    config = tiny_config(
        data_dir,
        epochs=1,
        learning_rate=1e30,
        clip_global_norm=0.0,
        warmup_steps=0,
        validate_every_epoch=False,
    )
    with pytest.raises(train.NonFiniteLossError, match=r"at step \d+"):
        train.run(config, str(tmp_path), verbose=0)


def test_mixed_bfloat16_with_xla_trains_and_saves_a_float32_model(data_dir, tmp_path):
    import keras

    config = tiny_config(
        data_dir,
        epochs=1,
        batch_size=128,
        dtype_policy="mixed_bfloat16",
        jit_compile=True,
        validate_every_epoch=False,
        dropout_rate=0.0,
    )
    run_dir = train.run(config, str(tmp_path), verbose=0)
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert np.isfinite(metrics["test_loss"]) and metrics["steps"] == 1433 // 128
    assert keras.config.dtype_policy().name == "float32"  # the global policy is restored
    model = keras.models.load_model(f"{run_dir}/model.keras")
    assert {layer.dtype_policy.name for layer in model.layers} == {"float32"}


def test_init_fine_tunes_an_official_checkpoint_at_a_higher_resolution(data_dir, tmp_path):
    import keras
    from reference import random_official_params

    # A tiny official-layout checkpoint at 8x8 (2x2 patches of 4) with a 7-class head.
    params = random_official_params(np.random.default_rng(0), **TINY, num_patches=4, num_classes=7)
    path = str(tmp_path / "official.npz")
    np.savez(path, **params)
    config = tiny_config(
        data_dir,
        init=path,
        num_channels=3,
        image_size=16,
        epochs=1,
        batch_size=256,
        validate_every_epoch=False,
        dropout_rate=0.0,
        learning_rate=1e-4,
    )
    run_dir = train.run(config, str(tmp_path / "run"), verbose=0)
    model = keras.models.load_model(f"{run_dir}/model.keras")
    assert model.num_classes == 10 and tuple(model.image_size) == (
        16,
        16,
    )  # new head, new resolution
    # The body starts from the checkpoint (5 small steps away), not from a fresh initialisation.
    stem = model.get_layer("stem").get_weights()[0]
    assert np.abs(stem - params["stem/kernel"]).max() < 0.01 < np.abs(params["stem/kernel"]).max()


# ---------------------------------------------------------------------------------------------
# Strategy selection.


def test_get_strategy_defaults_and_single_task_cluster(monkeypatch):
    monkeypatch.delenv("TF_CONFIG", raising=False)
    monkeypatch.delenv("TPU_NAME", raising=False)
    assert strategy_lib.get_strategy() is tf.distribute.get_strategy()
    monkeypatch.setenv(
        "TF_CONFIG",
        json.dumps(
            {"cluster": {"worker": ["127.0.0.1:1"]}, "task": {"type": "worker", "index": 0}}
        ),
    )
    assert strategy_lib.get_strategy() is tf.distribute.get_strategy()
    monkeypatch.setenv("TF_CONFIG", "{not json")
    with pytest.raises(strategy_lib.StrategyError, match="TF_CONFIG is not valid JSON"):
        strategy_lib.get_strategy()


def test_unreachable_tpu_is_a_clear_error_within_seconds():
    code = textwrap.dedent("""
        import time
        from training import strategy
        start = time.monotonic()
        try:
            strategy.tpu_strategy("grpc://127.0.0.1:9", timeout_s=10)
        except strategy.StrategyError as error:
            print("StrategyError", round(time.monotonic() - start), error)
        else:
            print("no error")
    """)
    _, output = run_bounded([sys.executable, "-c", code], timeout=120)
    line = [line for line in output.splitlines() if line.startswith(("StrategyError", "no error"))]
    assert line and line[0].startswith("StrategyError"), output[-3000:]
    assert int(line[0].split()[1]) <= 15 and "127.0.0.1:9" in line[0]


# ---------------------------------------------------------------------------------------------
# Distribution: same weights as the default strategy.

MIRRORED_SCRIPT = """
import json, sys
import tensorflow as tf
cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
import keras, numpy as np
from training import recipes, train
# No dropout: its masks depend on how the batch is split across replicas. steps_per_execution=4
# with 5 steps per epoch: Keras's own loop under the default strategy, train.UnrolledSteps under
# Mirrored (keras#19246), whose last call of each epoch runs the 1 step left; 2 epochs, each
# validated, also run the validation pass's budget twice.
config = recipes.get_recipe("digits", data_dir=sys.argv[1], model=json.loads(sys.argv[3]), epochs=2,
                            batch_size=256, jit_compile=False, validate_every_epoch=True,
                            warmup_steps=2, dropout_rate=0.0, steps_per_execution=4, image_size=8,
                            label_smoothing=0.0,
                            random_shift=0)
strategies = {"default": tf.distribute.get_strategy(),
              "mirrored": tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])}
for name, strategy in strategies.items():
    run_dir = train.run(config, f"{sys.argv[2]}/{name}", strategy=strategy, verbose=0)
    weights = keras.models.load_model(f"{run_dir}/model.keras").get_weights()
    np.savez(f"{sys.argv[2]}/{name}.npz", *weights)
    print(name, json.load(open(f"{run_dir}/config.json"))["num_replicas"],
          json.load(open(f"{run_dir}/metrics.json"))["steps"])
"""


def test_mirrored_over_two_cpus_matches_default_strategy(data_dir, tmp_path):
    # Logical devices must be set before TF initialises: a fresh process.
    code, output = run_bounded(
        [sys.executable, "-c", MIRRORED_SCRIPT, data_dir, str(tmp_path), json.dumps(TINY)]
    )
    assert code == 0, output[-3000:]
    assert "default 1 10" in output and "mirrored 2 10" in output
    default, mirrored = (np.load(tmp_path / f"{name}.npz") for name in ("default", "mirrored"))
    default = [default[k] for k in default.files]
    mirrored = [mirrored[k] for k in mirrored.files]
    assert max_abs_difference(default, mirrored) <= MIRRORED_10_STEPS_ATOL
    # The steps did change the weights (the test could fail).
    assert max(float(np.max(np.abs(w))) for w in default[-2:]) > 1e-3


WORKER_SCRIPT = """
import json, sys
import numpy as np
from training import recipes, train
capture = train._fit
def fit_and_save(model, *args, **kwargs):
    history = capture(model, *args, **kwargs)
    np.savez(sys.argv[3], *[np.asarray(w) for w in model.get_weights()])
    return history
train._fit = fit_and_save
# steps_per_execution=2 over 5 steps: UnrolledSteps under MultiWorkerMirrored (keras#19246).
config = recipes.get_recipe("digits", data_dir=sys.argv[1], model=json.loads(sys.argv[4]), epochs=1,
                            batch_size=256, jit_compile=False, warmup_steps=2, dropout_rate=0.0,
                            image_size=8, label_smoothing=0.0, random_shift=0, steps_per_execution=2)
train.run(config, sys.argv[2], verbose=2)
"""


def free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.mark.slow
def test_multi_worker_two_processes_agree_and_only_chief_writes(data_dir, tmp_path):
    cluster = {"worker": [f"127.0.0.1:{free_port()}", f"127.0.0.1:{free_port()}"]}
    processes = []
    for index in range(2):
        tf_config = json.dumps({"cluster": cluster, "task": {"type": "worker", "index": index}})
        env = {
            **os.environ,
            "TF_CONFIG": tf_config,
            "TF_CPP_MIN_LOG_LEVEL": "2",
            "PYTHONPATH": REPO,
        }
        processes.append(
            subprocess.Popen(
                [
                    sys.executable,
                    "-c",
                    WORKER_SCRIPT,
                    data_dir,
                    str(tmp_path / f"run{index}"),
                    str(tmp_path / f"worker{index}.npz"),
                    json.dumps(TINY),
                ],
                cwd=REPO,
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
            )
        )
    deadline = time.monotonic() + SUBPROCESS_TIMEOUT_S
    outputs = []
    for process in processes:
        try:
            outputs.append(process.communicate(timeout=max(1, deadline - time.monotonic()))[0])
        except subprocess.TimeoutExpired:
            for other in processes:
                other.kill()
            pytest.fail("multi-worker training did not finish in time (workers killed)")
    for process, output in zip(processes, outputs):
        assert process.returncode == 0, output[-3000:]
    worker0, worker1 = (np.load(tmp_path / f"worker{i}.npz") for i in range(2))
    worker0 = [worker0[k] for k in worker0.files]
    worker1 = [worker1[k] for k in worker1.files]
    assert max_abs_difference(worker0, worker1) == 0.0
    # The chief (worker 0) wrote the run directory; worker 1 wrote nothing.
    chief = tmp_path / "run0"
    for name in ("model.keras", "metrics.json", "config.json", "backup/checkpoint.weights.h5"):
        assert (chief / name).exists(), name
    assert not (tmp_path / "run1").exists() or not any((tmp_path / "run1").rglob("*.*"))
    config = json.loads((chief / "config.json").read_text())
    assert config["num_replicas"] == 2 and config["strategy_used"] == "MultiWorkerMirroredStrategy"
    # Two workers with half batches each follow the same path as one process with the global batch.
    single = train.run(
        tiny_config(data_dir, epochs=1, batch_size=256, warmup_steps=2, dropout_rate=0.0),
        str(tmp_path / "single"),
        verbose=0,
    )
    import keras

    expected = keras.models.load_model(f"{single}/model.keras").get_weights()
    assert max_abs_difference(worker0, expected) <= MIRRORED_ATOL


# ---------------------------------------------------------------------------------------------
# Preemption: SIGKILL mid-epoch, restart with the same command.

RESUME_SCRIPT = """
import json, os, sys, time
import keras
from training import recipes, train

class Slow(keras.callbacks.Callback):
    # Slows steps down so that the test can kill the run mid-epoch; records the step reached.
    def on_train_batch_end(self, batch, logs=None):
        with open(sys.argv[3] + ".tmp", "w") as f:  # atomic: the test may SIGKILL us any time
            f.write(str(int(self.model.optimizer.iterations.numpy())))
        os.replace(sys.argv[3] + ".tmp", sys.argv[3])
        time.sleep(float(sys.argv[4]))

config = recipes.get_recipe("digits", data_dir=sys.argv[1], model=json.loads(sys.argv[5]), epochs=3,
                            jit_compile=False, checkpoint_every_steps=4, validate_every_epoch=False)
train.run(config, sys.argv[2], verbose=0, callbacks=[Slow()])
"""


@pytest.mark.slow
def test_sigkill_mid_epoch_resumes_to_the_same_weights(data_dir, tmp_path):
    import keras

    steps_per_epoch, epochs, every = 1433 // 64, 3, 4

    def command(run_dir, delay):
        return [
            sys.executable,
            "-c",
            RESUME_SCRIPT,
            data_dir,
            str(run_dir),
            str(tmp_path / "progress"),
            str(delay),
            json.dumps(TINY),
        ]

    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "PYTHONPATH": REPO}
    run_dir = tmp_path / "preempted"
    process = subprocess.Popen(
        command(run_dir, 0.15),
        cwd=REPO,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    step_file = run_dir / "backup" / "step.json"
    deadline = time.monotonic() + SUBPROCESS_TIMEOUT_S
    try:
        # Kill in the middle of the second epoch, right after a checkpoint plus a few steps.
        while time.monotonic() < deadline:
            if step_file.exists():
                saved = json.loads(step_file.read_text())
                if (
                    saved["epoch"] == 1
                    and 0 < saved["step_in_epoch"]
                    and (tmp_path / "progress").exists()
                ):
                    reached = int((tmp_path / "progress").read_text() or 0)
                    if reached >= saved["step"] + 2:
                        break
            assert process.poll() is None, "the run ended before it could be killed"
            time.sleep(0.02)
        else:
            pytest.fail("no mid-epoch checkpoint appeared in time")
        os.kill(process.pid, signal.SIGKILL)
    finally:
        process.kill()
        process.wait()
    killed_at = int((tmp_path / "progress").read_text())
    saved = json.loads(step_file.read_text())
    assert not (run_dir / "model.keras").exists()
    assert 0 < saved["step_in_epoch"] and killed_at - saved["step"] <= every

    code, output = run_bounded(command(run_dir, 0.0))
    assert code == 0, output[-3000:]
    code, output = run_bounded(command(tmp_path / "uninterrupted", 0.0))
    assert code == 0, output[-3000:]

    resumed = json.loads((run_dir / "metrics.json").read_text())
    assert resumed["steps"] == steps_per_epoch * epochs and resumed["epochs"] == epochs
    weights = keras.models.load_model(run_dir / "model.keras").get_weights()
    expected = keras.models.load_model(tmp_path / "uninterrupted" / "model.keras").get_weights()
    assert max_abs_difference(weights, expected) <= 1e-6


# ---------------------------------------------------------------------------------------------
# The command line and the run directory contract.


@pytest.mark.slow
def test_default_cli_trains_digits_to_97_percent_and_writes_the_run_directory(data_dir, tmp_path):
    import keras

    run_dir = tmp_path / "digits"
    code, output = run_bounded(
        [
            sys.executable,
            "-m",
            "training.train",
            "--run-dir",
            str(run_dir),
            "--data-dir",
            data_dir,
            "--no-export",
        ],
        timeout=600,
    )
    assert code == 0, output[-3000:]
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["test_accuracy"] >= 0.97, metrics
    config = json.loads((run_dir / "config.json").read_text())
    assert (
        metrics["steps"]
        == config["steps_per_epoch"] * config["epochs"]
        == metrics["epochs"] * (1433 // 64)
    )
    assert (run_dir / "training_curves.png").stat().st_size > 0
    assert any((run_dir / "logs" / "train").iterdir())  # TensorBoard events
    # config.json repeats the run: same data settings, and the saved model takes its images.
    model = keras.models.load_model(run_dir / "model.keras")
    test = data.make_dataset(config, config["test_split"], training=False, batch_size=512)
    images, labels = next(iter(test))
    accuracy = float(np.mean(np.argmax(model.predict(images, verbose=0), -1) == labels.numpy()))
    assert abs(accuracy - metrics["test_accuracy"]) < 1e-6


def test_cli_reports_bad_input_without_a_traceback(data_dir, tmp_path):
    code, output = run_bounded(
        [
            sys.executable,
            "-m",
            "training.train",
            "--run-dir",
            str(tmp_path),
            "--data-dir",
            data_dir,
            "--no-export",
            "--set",
            "num_classes=5",
        ],
        timeout=120,
    )
    assert code == 2 and "error: dataset 'sklearn_digits' has labels 0..9" in output
    assert "Traceback" not in output


def test_cli_ends_by_exporting_the_run(data_dir, tmp_path, monkeypatch, capsys):
    # A stand-in for export.convert: the real one needs ai-edge-litert, absent from the TPU stack.
    calls = []
    fake = types.ModuleType("export.convert")
    fake.convert = lambda source, out_dir, **kwargs: (
        calls.append((source, out_dir)) or {"formats": "ok"}
    )
    fake.markdown_report = lambda report: f"| report of {report['formats']} |"
    monkeypatch.setitem(sys.modules, "export", types.ModuleType("export"))
    monkeypatch.setitem(sys.modules, "export.convert", fake)
    code = train.main(
        [
            "--run-dir",
            str(tmp_path),
            "--data-dir",
            data_dir,
            "--epochs",
            "1",
            "--set",
            f"model={json.dumps(TINY)}",
            "--set",
            "jit_compile=false",
            "--set",
            "validate_every_epoch=false",
        ]
    )
    assert code == 0
    assert calls == [(str(tmp_path), os.path.join(str(tmp_path), "export"))]
    assert "| report of ok |" in capsys.readouterr().out
    config = json.loads((tmp_path / "config.json").read_text())
    assert config["model"] == TINY and config["epochs"] == 1 and config["data_dir"] == data_dir
