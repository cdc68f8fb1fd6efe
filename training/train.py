"""Train a Mixer with Keras `fit` under tf.distribute: `python -m training.train` or `run(config)`.

    python -m training.train                               # digits, a few minutes on 2 CPU cores
    python -m training.train --recipe i1k --variant B/16 --data-dir gs://B/tfds --tpu local
    python -m training.train --recipe finetune --init Mixer-B_16.npz --dataset cifar10

A run directory holds everything the run makes, and is what `export/` takes:

    config.json       the resolved config: `run(json.load(open("config.json")))` repeats the run
    backup/           the checkpoint a restarted run resumes from (weights, optimizer, step)
    logs/             TensorBoard events (logs/train, logs/validation) and history.csv
    model.keras       the trained model (float32 policy), `keras.models.load_model` loads it
    metrics.json      test_accuracy, test_loss (the whole test split), epochs, steps, ...
    training_curves.png

Preemption: the data position is the optimizer's step counter. Epoch `e` reads a stream
that is a pure function of `(seed, e)` (training/data.py); a restarted run loads
`backup/` and skips the steps already taken, so it redoes at most `checkpoint_every_steps`
steps and, with the same seed, ends with the same weights as an uninterrupted run.
"""

import argparse
import json
import logging
import math
import os
import sys
import tempfile

import keras
import numpy as np
import tensorflow as tf

from keras_mixer import MlpMixer, get_variant
from keras_mixer.mlp_mixer import patch_grid
from training import data as data_lib
from training import strategy as strategy_lib
from training.recipes import BASE, get_recipe

log = logging.getLogger("training")


class ConfigError(ValueError):
    """A run config that cannot train; raised before any training step."""


class NonFiniteLossError(FloatingPointError):
    """The training loss became NaN or infinite."""


# ---------------------------------------------------------------------------------------------
# Config -> checked config.


def resolve_config(config, strategy):
    """Fills in what the data decides (num_classes, example counts) and checks everything
    that would otherwise fail mid-run: label range, image size vs patch size, batch split."""
    config = {**BASE, **config}
    train_info = data_lib.dataset_info(config, config["train_split"])
    test_info = data_lib.dataset_info(config, config["test_split"])
    dataset_classes = train_info["num_classes"]
    if config["num_classes"] is None:
        config["num_classes"] = dataset_classes
    elif dataset_classes > config["num_classes"]:
        raise ConfigError(
            f"dataset {config['dataset']!r} has labels 0..{dataset_classes - 1} but the model has "
            f"num_classes={config['num_classes']}: labels would be out of range. Set "
            f"num_classes >= {dataset_classes} (or leave it unset to take the dataset's)."
        )
    architecture = model_architecture(config)
    patch_grid(config["image_size"], architecture["patch_size"])  # raises a clear ValueError
    replicas = strategy.num_replicas_in_sync
    if config["batch_size"] % replicas:
        raise ConfigError(
            f"batch_size={config['batch_size']} does not split evenly across {replicas} replicas. "
            f"Use a multiple of {replicas}, "
            f"e.g. {max(1, round(config['batch_size'] / replicas)) * replicas}."
        )
    steps_per_epoch = train_info["num_examples"] // config["batch_size"]
    if steps_per_epoch < 1:
        raise ConfigError(
            f"batch_size={config['batch_size']} is larger than the {train_info['num_examples']} "
            f"training examples of {config['dataset']!r}: lower batch_size."
        )
    config["train_examples"] = train_info["num_examples"]
    config["test_examples"] = test_info["num_examples"]
    config["steps_per_epoch"] = steps_per_epoch
    config["total_steps"] = steps_per_epoch * config["epochs"]
    return config


def model_architecture(config):
    architecture = get_variant(config["variant"]) if config["variant"] else {}
    architecture.update(config["model"])
    missing = {
        "patch_size",
        "hidden_dim",
        "num_blocks",
        "tokens_mlp_dim",
        "channels_mlp_dim",
    } - set(architecture)
    if missing:
        raise ConfigError(
            f"model is missing {sorted(missing)}: set variant (e.g. 'S/16') or model={{...}}."
        )
    return architecture


# ---------------------------------------------------------------------------------------------
# Model, optimizer, loss.


def build_model(config):
    """The Mixer of `config`: from the official checkpoint `init` (new head), or initialised."""
    if config["init"]:
        from keras_mixer import load_official_checkpoint

        return load_official_checkpoint(
            config["init"],
            variant=model_architecture(config),
            num_classes=config["num_classes"],
            image_size=config["image_size"],
        )
    return MlpMixer(
        **model_architecture(config),
        num_classes=config["num_classes"],
        image_size=config["image_size"],
        num_channels=config["num_channels"],
        dropout_rate=config["dropout_rate"],
        stochastic_depth_rate=config["stochastic_depth_rate"],
    )


@keras.saving.register_keras_serializable(package="keras_mixer")
class WarmupLinearDecay(keras.optimizers.schedules.LearningRateSchedule):
    """Linear warmup from 0 to `peak`, then linear decay to 0 at `total_steps` (the paper's).

    Keras has warmup only in CosineDecay; PolynomialDecay(power=1) decays but cannot warm up.
    """

    def __init__(self, peak, warmup_steps, total_steps):
        self.peak, self.warmup_steps, self.total_steps = peak, warmup_steps, total_steps

    def __call__(self, step):
        step = keras.ops.cast(step, "float32")
        warmup = step / max(self.warmup_steps, 1)
        decay = (self.total_steps - step) / max(self.total_steps - self.warmup_steps, 1)
        return self.peak * keras.ops.clip(keras.ops.minimum(warmup, decay), 0.0, 1.0)

    def get_config(self):
        return {
            "peak": self.peak,
            "warmup_steps": self.warmup_steps,
            "total_steps": self.total_steps,
        }


def make_optimizer(config):
    total, warmup, peak = config["total_steps"], config["warmup_steps"], config["learning_rate"]
    if config["decay"] == "cosine":
        schedule = keras.optimizers.schedules.CosineDecay(
            0.0 if warmup else peak,
            decay_steps=max(total - warmup, 1),
            warmup_target=peak if warmup else None,
            warmup_steps=warmup,
        )
    elif config["decay"] == "linear":
        schedule = WarmupLinearDecay(peak, warmup, total)
    else:
        raise ConfigError(f"decay={config['decay']!r}: expected 'linear' or 'cosine'.")
    clip = config["clip_global_norm"] or None
    if config["optimizer"] == "adam":
        # Decoupled weight decay (AdamW), as optax's adamw in the official code.
        cls = keras.optimizers.AdamW if config["weight_decay"] else keras.optimizers.Adam
        extra = {"weight_decay": config["weight_decay"]} if config["weight_decay"] else {}
        return cls(
            schedule,
            beta_1=config["beta_1"],
            beta_2=config["beta_2"],
            global_clipnorm=clip,
            **extra,
        )
    if config["optimizer"] == "sgd":
        return keras.optimizers.SGD(
            schedule,
            momentum=config["momentum"],
            global_clipnorm=clip,
            weight_decay=config["weight_decay"] or None,
        )
    raise ConfigError(f"optimizer={config['optimizer']!r}: expected 'adam' or 'sgd'.")


def uses_dense_labels(config):
    return bool(config["mixup_alpha"] or config["label_smoothing"])


def make_loss_and_metrics(config):
    # The loss is computed in float32 also under mixed_bfloat16 (Keras losses default to float32).
    if uses_dense_labels(config):
        loss = keras.losses.CategoricalCrossentropy(
            from_logits=True, label_smoothing=config["label_smoothing"]
        )
        return loss, [keras.metrics.CategoricalAccuracy(name="accuracy")]
    return keras.losses.SparseCategoricalCrossentropy(from_logits=True), [
        keras.metrics.SparseCategoricalAccuracy(name="accuracy")
    ]


def resolve_jit_compile(config, strategy):
    on_gpu = bool(tf.config.list_logical_devices("GPU"))
    if strategy.num_replicas_in_sync > 1 and not on_gpu and not _on_tpu(strategy):
        # "Collectives are not yet implemented for CPU devices when compiling with XLA"
        # (TF 2.21): several CPU replicas all-reduce outside XLA.
        if config["jit_compile"] is True:
            log.warning(
                "jit_compile=True is not supported for %d CPU replicas; using False.",
                strategy.num_replicas_in_sync,
            )
        return False
    if config["jit_compile"] != "auto":
        return bool(config["jit_compile"])
    return _on_tpu(strategy) or on_gpu


# ---------------------------------------------------------------------------------------------
# Callbacks: preemption-safe checkpoints and a loud stop on a non-finite loss.


SEED_STATES = "keras_mixer_seed_generator_states"


def _seed_states(model):
    return [v for v in model.non_trainable_variables if v.path.endswith("seed_generator_state")]


class StepBackup(keras.callbacks.Callback):
    """Saves weights and optimizer state (step counter included) every `every_steps` steps.

    Keras 3's BackupAndRestore restores only the epoch number, so a preempted run redoes
    the whole epoch (an hour on ImageNet/TPU), and it has no multi-worker handling (workers
    sharing its directory fail with FileExistsError). Here the optimizer's step counter is
    the data position (training/data.py), only the chief writes, and a write is atomic
    (temporary file, then rename), so a SIGKILL mid-save leaves the previous checkpoint.
    """

    def __init__(self, backup_dir, every_steps, steps_per_epoch, write):
        super().__init__()
        self.backup_dir, self.every_steps, self.steps_per_epoch, self.write = (
            backup_dir,
            every_steps,
            steps_per_epoch,
            write,
        )
        self.path = os.path.join(backup_dir, "checkpoint.weights.h5")
        self._last_saved = None

    def restore(self, model):
        """Loads the checkpoint into `model` (compiled); returns its step, 0 without one."""
        if not tf.io.gfile.exists(self.path):
            return 0
        import h5py

        model.optimizer.build(model.trainable_variables)
        with tempfile.TemporaryDirectory() as local_dir:  # h5py reads local files only (gs://)
            local = os.path.join(local_dir, "checkpoint.weights.h5")
            tf.io.gfile.copy(self.path, local)
            model.load_weights(local)
            with h5py.File(local, "r") as h5:
                states = [np.asarray(state) for _, state in sorted(h5.get(SEED_STATES, {}).items())]
        for variable, state in zip(_seed_states(model), states):
            variable.assign(state)
        self._last_saved = int(model.optimizer.iterations.numpy())
        return self._last_saved

    def save(self):
        step = int(self.model.optimizer.iterations.numpy())
        if step == self._last_saved:
            return
        self._last_saved = step
        if not self.write:
            return
        import h5py

        tf.io.gfile.makedirs(self.backup_dir)
        temporary = os.path.join(self.backup_dir, "checkpoint.tmp.weights.h5")
        with tempfile.TemporaryDirectory() as local_dir:
            local = os.path.join(local_dir, "checkpoint.weights.h5")
            self.model.save_weights(local)
            # Dropout and stochastic depth draw from SeedGenerator states that save_weights
            # leaves out; without them a resumed run would draw other masks.
            with h5py.File(local, "a") as h5:
                group = h5.create_group(SEED_STATES)
                for index, variable in enumerate(_seed_states(self.model)):
                    group.create_dataset(f"{index:04d}", data=np.asarray(variable.numpy()))
            tf.io.gfile.copy(local, temporary, overwrite=True)
        tf.io.gfile.rename(temporary, self.path, overwrite=True)
        step_json = os.path.join(self.backup_dir, "step.json")
        with tf.io.gfile.GFile(step_json + ".tmp", "w") as f:
            position = {
                "step": step,
                "epoch": step // self.steps_per_epoch,
                "step_in_epoch": step % self.steps_per_epoch,
            }
            json.dump(position, f)
        tf.io.gfile.rename(step_json + ".tmp", step_json, overwrite=True)

    def on_train_batch_end(self, batch, logs=None):
        step = int(self.model.optimizer.iterations.numpy())
        if step - (self._last_saved or 0) >= self.every_steps:
            self.save()

    def on_epoch_end(self, epoch, logs=None):
        self.save()


class StopOnNonFiniteLoss(keras.callbacks.Callback):
    """Raises NonFiniteLossError naming the step. Keras's TerminateOnNaN stops quietly and
    reports the batch of the epoch, not the step of the run."""

    def on_train_batch_end(self, batch, logs=None):
        loss = (logs or {}).get("loss")
        if loss is not None and not math.isfinite(float(loss)):
            step = int(self.model.optimizer.iterations.numpy())
            raise NonFiniteLossError(
                f"training loss became {float(loss)} at step {step} "
                f"(epoch {self.params.get('epochs')}"
                f", batch {batch}). Lower the learning rate, raise warmup_steps, keep "
                "clip_global_norm, or check the data for corrupt values. The last good "
                "checkpoint is in backup/."
            )


# ---------------------------------------------------------------------------------------------
# The run.


def distributed_dataset(strategy, config, split, one_hot=False, **kwargs):
    # The function form shards per input pipeline (worker) and batches per replica.
    def dataset_fn(context):
        ds = data_lib.make_dataset(config, split, input_context=context, **kwargs)
        if one_hot:  # evaluation labels in the form the training loss takes (mixup, smoothing)
            ds = ds.map(lambda images, labels: (images, tf.one_hot(labels, config["num_classes"])))
        return ds

    return strategy.distribute_datasets_from_function(dataset_fn)


def run(config, run_dir=None, *, strategy=None, export=False, verbose="auto", callbacks=()):
    """Trains as `config` says and returns the run directory (see the module docstring).

    Args:
        config: dict. A run config, e.g. `training.recipes.get_recipe("digits", epochs=5)`.
        run_dir: str. Where to write; defaults to `config["run_dir"]`, then `runs/<recipe>`.
            A directory holding a checkpoint of the same config resumes from it.
        strategy: tf.distribute.Strategy. Defaults to
            `get_strategy(config["strategy"], config["tpu"])`.
        export: bool. Convert the trained model with the export pipeline (export/) at the end.
        verbose: Keras fit verbosity ("auto": progress bar).
        callbacks: extra Keras callbacks for `fit`.

    Example:
    >>> run_dir = training.train.run(training.recipes.get_recipe("digits"), "runs/digits")
    >>> keras.models.load_model(f"{run_dir}/model.keras")
    """
    run_dir = run_dir or config.get("run_dir") or os.path.join("runs", config.get("recipe", "run"))
    strategy = strategy or strategy_lib.get_strategy(
        config.get("strategy", "auto"), config.get("tpu")
    )
    chief = strategy_lib.is_chief(strategy)
    config = resolve_config(config, strategy)
    config["run_dir"] = run_dir
    config["num_replicas"] = strategy.num_replicas_in_sync
    config["strategy_used"] = strategy_lib.strategy_name(strategy)
    if chief:
        tf.io.gfile.makedirs(run_dir)
        _check_same_run(run_dir, config)
        _write_json(os.path.join(run_dir, "config.json"), config)

    keras.utils.set_random_seed(config["seed"])
    previous_policy = keras.config.dtype_policy()
    keras.config.set_dtype_policy(config["dtype_policy"])
    try:
        with strategy.scope():
            model = build_model(config)
            loss, metrics = make_loss_and_metrics(config)
            model.compile(
                optimizer=make_optimizer(config),
                loss=loss,
                metrics=metrics,
                jit_compile=resolve_jit_compile(config, strategy),
                steps_per_execution=config["steps_per_execution"],
            )
        _fix_multi_worker_fit(model, strategy, config)
        _fix_mirrored_steps_per_execution(model, strategy, config)
        history = _fit(model, strategy, config, run_dir, chief, verbose, list(callbacks))
    finally:
        keras.config.set_dtype_policy(previous_policy)

    if chief:
        _finish(model, config, run_dir, history)
    if export and chief:
        export_run(run_dir)
    return run_dir


def _fit(model, strategy, config, run_dir, chief, verbose, extra_callbacks):
    steps_per_epoch, epochs = config["steps_per_epoch"], config["epochs"]
    backup = StepBackup(
        os.path.join(run_dir, "backup"), config["checkpoint_every_steps"], steps_per_epoch, chief
    )
    step = backup.restore(model)
    if step:
        log.warning(
            "Resuming %s from step %d (epoch %d, step %d of %d).",
            run_dir,
            step,
            step // steps_per_epoch,
            step % steps_per_epoch,
            steps_per_epoch,
        )
    logs_dir = os.path.join(run_dir, "logs")
    callbacks = [StopOnNonFiniteLoss(), backup, *extra_callbacks]
    if chief:
        tf.io.gfile.makedirs(logs_dir)
        callbacks += [
            keras.callbacks.TensorBoard(logs_dir, write_graph=False),
            keras.callbacks.CSVLogger(os.path.join(logs_dir, "history.csv"), append=True),
        ]
    validation = None
    if config["validate_every_epoch"]:
        eval_batch = config["batch_size"]
        # Several replicas need equal per-replica batches: evaluation drops the remainder
        # here; the final metrics.json covers the whole test split.
        validation = distributed_dataset(
            strategy,
            config,
            config["test_split"],
            training=False,
            batch_size=eval_batch,
            drop_remainder=strategy.num_replicas_in_sync > 1 or _on_tpu(strategy),
            one_hot=uses_dense_labels(config),
        )
    history = []
    # One `fit` per epoch: each epoch reads its own seeded stream, and the first, resumed,
    # epoch runs only the steps that are left (Keras cannot start `fit` mid-epoch).
    for epoch in range(step // steps_per_epoch, epochs):
        start = step - epoch * steps_per_epoch if epoch == step // steps_per_epoch else 0
        train = distributed_dataset(
            strategy, config, config["train_split"], training=True, epoch=epoch, start_step=start
        )
        if isinstance(model.train_function, UnrolledSteps):
            model.train_function.steps_left = steps_per_epoch - start
        result = model.fit(
            train,
            epochs=epoch + 1,
            initial_epoch=epoch,
            steps_per_epoch=steps_per_epoch - start,
            validation_data=validation,
            callbacks=callbacks,
            verbose=verbose if chief else 0,
            shuffle=False,  # the stream is shuffled by (seed, epoch) in training/data.py
        )
        history.append({"epoch": epoch + 1, **{k: float(v[-1]) for k, v in result.history.items()}})
        step = (epoch + 1) * steps_per_epoch
    return history


def _on_tpu(strategy):
    return isinstance(strategy, tf.distribute.TPUStrategy)


def _fix_multi_worker_fit(model, strategy, config):
    """Makes Keras 3 `fit` work under MultiWorkerMirroredStrategy (keras-team/keras#20585).

    As shipped (Keras 3.15), `fit` (1) builds the loss, metrics and optimizer symbolically
    from a batch it first reduces across workers, which fails on the PerReplica batch, and
    (2) reduces the scalar logs with `strategy.reduce("MEAN", v, axis=0)`, which fails on
    scalars. We (1) build them ourselves from the per-replica batch shape and skip Keras's
    build, and (2) return each scalar log as shape [1], so that the MEAN along axis 0 is
    the mean over all replicas, as intended. Both are patches of this model instance only.
    """
    if not isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy):
        return
    for name in ("train_step", "test_step"):
        step = getattr(model, name)
        setattr(
            model,
            name,
            lambda data, step=step: keras.tree.map_structure(
                lambda value: tf.reshape(value, [1]) if value.shape.rank == 0 else value, step(data)
            ),
        )
    per_replica = config["batch_size"] // strategy.num_replicas_in_sync
    height, width = data_lib._image_size(config)
    images = keras.KerasTensor((per_replica, height, width, config["num_channels"]), "float32")
    if uses_dense_labels(config):
        labels = keras.KerasTensor((per_replica, config["num_classes"]), "float32")
    else:
        labels = keras.KerasTensor((per_replica,), "int32")
    with strategy.scope():
        model._symbolic_build(data_batch=(images, labels))
    model._maybe_symbolic_build = lambda iterator=None, data_batch=None: None


class UnrolledSteps:
    """Runs `steps_per_execution` steps per call, unrolled in one tf.function.

    Keras 3.15 runs several steps per call in a `tf.while_loop` with a `tf.cond` around
    `strategy.run`, which fails under (MultiWorker)MirroredStrategy ("You must feed a value
    for placeholder tensor", keras-team/keras#19246). The same steps unrolled in Python
    inside one tf.function work, and keep what steps_per_execution is for: one dispatch
    (and one round of callbacks) per N steps. `steps_left` is the budget of the current
    pass: the last call of an epoch runs only the steps that are left, and the call after
    the last step of a validation pass ends it (StopIteration) and rearms the budget.
    """

    def __init__(self, model, step_function, steps_per_pass):
        # Keras's own reduction of per-replica logs (private, but it is what `fit` uses).
        from keras.src.backend.tensorflow.trainer import reduce_per_replica

        strategy = model.distribute_strategy
        self.model, self.steps_per_pass, self.steps_left = model, steps_per_pass, steps_per_pass

        def run_steps(iterator, num_steps):
            for _ in range(num_steps):
                outputs = strategy.run(step_function, args=(next(iterator),))
            return reduce_per_replica(outputs, strategy, reduction="auto")

        # One trace per number of steps: steps_per_execution, and the remainder of a pass.
        self.functions = {}
        self.make_function = lambda: tf.function(run_steps, reduce_retracing=True)

    def __call__(self, iterator):
        if self.steps_left == 0:
            self.steps_left = self.steps_per_pass
            raise StopIteration
        num_steps = min(self.model.steps_per_execution, self.steps_left)
        self.steps_left -= num_steps
        if num_steps not in self.functions:
            self.functions[num_steps] = self.make_function()
        return self.functions[num_steps](iterator, num_steps)


def _fix_mirrored_steps_per_execution(model, strategy, config):
    """Installs `UnrolledSteps` as the train and test functions where Keras 3.15 fails."""
    mirrored = (tf.distribute.MirroredStrategy, tf.distribute.MultiWorkerMirroredStrategy)
    if config["steps_per_execution"] == 1 or not isinstance(strategy, mirrored):
        return
    # Several replicas drop remainders, so a pass has exactly these many batches.
    model.train_function = UnrolledSteps(model, model.train_step, config["steps_per_epoch"])
    model.test_function = UnrolledSteps(
        model, model.test_step, config["test_examples"] // config["batch_size"]
    )


def _check_same_run(run_dir, config):
    """A run directory with a checkpoint resumes only the run that made it."""
    path = os.path.join(run_dir, "config.json")
    if not tf.io.gfile.exists(
        os.path.join(run_dir, "backup", "checkpoint.weights.h5")
    ) or not tf.io.gfile.exists(path):
        return
    with tf.io.gfile.GFile(path) as f:
        previous = json.load(f)
    ignore = {"run_dir", "strategy_used", "num_replicas", "strategy", "tpu"}
    changed = sorted(k for k in config if k not in ignore and previous.get(k) != config[k])
    if changed:
        raise ConfigError(
            f"{run_dir} holds a checkpoint of a different run (changed: {changed}). "
            "Resume with the "
            "same settings, or use a new --run-dir."
        )


def _write_json(path, value):
    with tf.io.gfile.GFile(path, "w") as f:
        json.dump(value, f, indent=2, sort_keys=True, default=str)
        f.write("\n")


def float32_copy(model):
    """The trained model rebuilt under the float32 policy (same weights): what export takes."""
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy("float32")
    try:
        copy = MlpMixer(**model.mixer_config())
        copy.set_weights([np.asarray(w) for w in model.get_weights()])
    finally:
        keras.config.set_dtype_policy(previous)
    return copy


def _finish(model, config, run_dir, history):
    """Writes model.keras, metrics.json (on the whole test split) and the training curves."""
    final = float32_copy(model)
    model_path = os.path.join(run_dir, "model.keras")
    final.save(model_path)
    # Evaluate the saved file itself, outside any strategy, on every test example.
    saved = keras.models.load_model(model_path)
    saved.compile(
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=[keras.metrics.SparseCategoricalAccuracy(name="accuracy")],
    )
    test = data_lib.make_dataset(config, config["test_split"], training=False, batch_size=256)
    test_loss, test_accuracy = saved.evaluate(test, verbose=0)
    metrics = {
        "test_accuracy": float(test_accuracy),
        "test_loss": float(test_loss),
        "test_examples": config["test_examples"],
        "epochs": config["epochs"],
        "steps": int(model.optimizer.iterations.numpy()),
        "history": history,
    }
    _write_json(os.path.join(run_dir, "metrics.json"), metrics)
    plot_curves(
        os.path.join(run_dir, "logs", "history.csv"), os.path.join(run_dir, "training_curves.png")
    )
    print(
        f"test_accuracy={test_accuracy:.4f} test_loss={test_loss:.4f} "
        f"steps={metrics['steps']} -> {run_dir}",
        flush=True,
    )
    return metrics


def plot_curves(history_csv, png_path):
    """Loss and accuracy per epoch from the CSVLogger file (the last row of an epoch wins)."""
    import csv

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if not tf.io.gfile.exists(history_csv):
        return
    with tf.io.gfile.GFile(history_csv) as f:
        rows = {int(row["epoch"]): row for row in csv.DictReader(f)}
    epochs = sorted(rows)
    figure, axes = plt.subplots(1, 2, figsize=(10, 4))
    for axis, name in zip(axes, ("loss", "accuracy")):
        for key, label in ((name, "train"), (f"val_{name}", "test")):
            values = [
                float(rows[e][key]) for e in epochs if rows[e].get(key) not in (None, "", "NA")
            ]
            if len(values) == len(epochs):
                axis.plot([e + 1 for e in epochs], values, label=label)
        axis.set_xlabel("epoch")
        axis.set_title(name)
        axis.legend()
    figure.tight_layout()
    with tf.io.gfile.GFile(png_path, "wb") as f:
        figure.savefig(f, format="png", dpi=100)
    plt.close(figure)


def export_run(run_dir):
    """Hands the run directory to the export pipeline and prints its report."""
    try:
        from export.convert import convert, markdown_report
    except ImportError as error:
        print(
            f"Export skipped: the export pipeline is not importable ({error}). Convert later with "
            f"`python -m export.convert {run_dir}`.",
            flush=True,
        )
        return None
    report = convert(run_dir, os.path.join(run_dir, "export"))
    # The Markdown table, not the whole JSON: report.json beside it has every number.
    print(markdown_report(report), flush=True)
    return report


# ---------------------------------------------------------------------------------------------
# Command line: a thin layer over `run`.


def _parse_value(text):
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        prog="python -m training.train",
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--recipe", default="digits", help="named config in training/recipes.py (default: digits)"
    )
    parser.add_argument(
        "--run-dir",
        help="output directory; rerun the same command to resume (default: runs/<recipe>)",
    )
    parser.add_argument(
        "--dataset",
        help="tfds name (cifar10, imagenet2012, ...) or a folder ROOT/<split>/<class>/<image>",
    )
    parser.add_argument("--data-dir", help="tfds data_dir, local or gs://")
    parser.add_argument("--variant", help="paper variant, e.g. S/16, B/16")
    parser.add_argument("--init", help="official .npz checkpoint to fine-tune from (new head)")
    parser.add_argument("--image-size", type=int)
    parser.add_argument("--batch-size", type=int, help="global batch size")
    parser.add_argument("--epochs", type=int)
    parser.add_argument("--learning-rate", type=float)
    parser.add_argument("--seed", type=int)
    parser.add_argument("--strategy", choices=strategy_lib.STRATEGY_KINDS)
    parser.add_argument("--tpu", help="TPU name, grpc://host:port, or 'local' on a Cloud TPU VM")
    parser.add_argument("--dtype-policy", choices=("float32", "mixed_bfloat16", "mixed_float16"))
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override any config key; VALUE is JSON (e.g. --set model='{\"hidden_dim\": 128}')",
    )
    parser.add_argument(
        "--no-export", action="store_true", help="skip the TFLite export at the end"
    )
    return parser.parse_args(argv)


def config_from_args(args):
    overrides = {}
    for key in (
        "dataset",
        "data_dir",
        "variant",
        "init",
        "image_size",
        "batch_size",
        "epochs",
        "learning_rate",
        "seed",
        "strategy",
        "tpu",
        "dtype_policy",
    ):
        value = getattr(args, key)
        if value is not None:
            overrides[key] = value
    for item in args.set:
        key, sep, value = item.partition("=")
        if not sep:
            raise SystemExit(f"--set {item!r}: expected KEY=VALUE, e.g. --set epochs=5")
        overrides[key.strip()] = _parse_value(value)
    if args.init and "num_channels" not in overrides:
        overrides["num_channels"] = 3  # official checkpoints take RGB; gray images are tiled
    config = get_recipe(args.recipe, **overrides)
    if args.run_dir:
        config["run_dir"] = args.run_dir
    return config


def main(argv=None):
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    args = parse_args(argv)
    try:
        config = config_from_args(args)
        run(config, export=not args.no_export)
    except (
        ConfigError,
        data_lib.DataError,
        strategy_lib.StrategyError,
        NonFiniteLossError,
        ValueError,
    ) as error:
        print(f"error: {error}", file=sys.stderr, flush=True)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
