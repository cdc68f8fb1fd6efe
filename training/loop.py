"""One training run: `run(config, run_dir)` checks everything, then one `model.fit`, then the results.

Preemption: the data position is the optimizer's step counter. Epoch `e` reads a stream
that is a pure function of `(seed, e)` (training/data.py); a restarted run loads `backup/`
(training/checkpointing.py) and starts the stream at its step, so it redoes at most
`checkpoint_every_steps` steps and, with the same seed, ends with the same weights as an
uninterrupted run; on SIGTERM it saves at the next step boundary and redoes none
(training/preemption.py). The run directory's files are listed in training/run_dir.py;
where the replicas live, under TensorFlow or JAX, is training/placement.py.
"""

import logging
import math
import os

import keras
import tensorflow as tf

from keras_mixer import MlpMixer, load_official_checkpoint, storage
from keras_mixer.mlp_mixer import patch_grid
from training import config as config_lib
from training import data as data_lib
from training import results, workarounds
from training import run_dir as run_dir_lib
from training.checkpointing import CHECKPOINT, StepBackup
from training.config import uses_dense_labels
from training.errors import ConfigError
from training.lease import RunLease
from training.optimization import make_loss_and_metrics, make_optimizer
from training.placement import get_placement, resolve_backend
from training.preemption import StopOnPreemption
from training.steps import EpochSteps

log = logging.getLogger("training")


class NonFiniteLossError(FloatingPointError):
    """The training loss became NaN or infinite."""


def run(config, run_dir=None, *, strategy=None, verbose="auto", callbacks=()):
    """Trains as `config` says and returns the run directory (training/run_dir.py), or None
    on the workers of a cluster that are not its chief (they write nothing).

    Args:
        config: dict. A run config, e.g. `training.recipes.get_recipe("digits", epochs=5)`;
            checked (training/config.py) before anything is written.
        run_dir: str. Where to write, local or remote (gs://); defaults to `runs/<recipe>`.
            A directory holding a checkpoint of the same run resumes from it; one that
            another live run holds is refused (RunDirInUseError, training/lease.py).
        strategy: where the replicas live (training/placement.py): a tf.distribute.Strategy
            under TensorFlow, a keras.distribution.Distribution under JAX. Defaults to what
            training/strategy.py or training/distribution.py picks for the machine.
        verbose: Keras fit verbosity ("auto": progress bar).
        callbacks: extra Keras callbacks for `fit`.

    Raises:
        training.preemption.Preempted: SIGTERM during training, after the step checkpoint
            (training/preemption.py); the same call resumes the run.

    Example:
    >>> run_dir = training.loop.run(training.recipes.get_recipe("digits"), "runs/digits")
    """
    config = config_lib.check(config)
    config = {**config, "backend": resolve_backend(config["backend"])}
    run_dir = os.fspath(run_dir or os.path.join("runs", config.get("recipe") or "run"))
    if storage.exists(run_dir) and not storage.isdir(run_dir):
        raise ConfigError(f"--run-dir {run_dir!r} is a file: choose a folder for the run.")
    placement = get_placement(config, strategy)
    if not placement.chief:  # the chief alone writes the directory, and holds its lease
        return _run(config, run_dir, placement, verbose, callbacks)
    # A second run on the directory stops at the lease. A full disk is one line naming the
    # file, also for the files Keras writes (TensorBoard events, history.csv).
    with RunLease(run_dir) as lease, storage.writing(run_dir, space_only=True):
        return _run(config, run_dir, placement, verbose, [*callbacks, lease])


def _run(config, run_dir, placement, verbose, callbacks):
    chief = placement.chief
    resuming = storage.exists(storage.join(run_dir, run_dir_lib.BACKUP, CHECKPOINT))
    previous = run_dir_lib.read_info(run_dir) if resuming else None
    # A resumed run keeps the class index it recorded (a class folder added since is an error).
    source = data_lib.open_source(config, class_names=previous and previous["class_names"])
    info = describe(config, source, placement)
    if chief and resuming:
        check_same_run(run_dir, config, info)

    keras.utils.set_random_seed(config["seed"])
    previous_policy = keras.config.dtype_policy()
    keras.config.set_dtype_policy(config["dtype_policy"])
    try:
        with placement.scope():  # the model and its optimizer live there
            model = compiled_model(config, info, placement)  # an --init checkpoint is checked
        if chief:
            storage.write_json(run_dir_lib.path(run_dir, run_dir_lib.CONFIG), config)
            storage.write_json(run_dir_lib.path(run_dir, run_dir_lib.INFO), info)
        with placement.fit_scope():
            history = fit(model, placement, config, info, source, run_dir, verbose, callbacks)
    finally:
        keras.config.set_dtype_policy(previous_policy)
    if not chief:
        return None
    results.finish(model, config, info, source, run_dir, history)
    return run_dir


def describe(config, source, placement):
    """What the data and the machine decide (run_info.json), after checking that they fit the
    config: label range, image size vs patch size, batch split, batch vs examples."""
    class_names = list(source.class_names)
    num_classes = data_lib.num_classes(config, source)
    if len(class_names) > num_classes:
        raise ConfigError(
            f"dataset {config['dataset']!r} has labels 0..{len(class_names) - 1} but the model "
            f"has num_classes={num_classes}: labels would be out of range. Set "
            f"num_classes >= {len(class_names)} (or leave it unset to take the dataset's)."
        )
    try:
        patch_grid(config["image_size"], config_lib.architecture_of(config)["patch_size"])
    except ValueError as error:
        raise ConfigError(str(error)) from None
    replicas, batch_size = placement.num_replicas, config["batch_size"]
    if batch_size % replicas:
        raise ConfigError(
            f"batch_size={batch_size} does not split evenly across {replicas} replicas. Use a "
            f"multiple of {replicas}, e.g. {max(1, round(batch_size / replicas)) * replicas}."
        )
    train_examples = source.num_examples(config["train_split"])
    steps_per_epoch = train_examples // batch_size
    if steps_per_epoch < 1:
        raise ConfigError(
            f"batch_size={batch_size} is larger than the {train_examples} training examples of "
            f"{config['dataset']!r}: lower batch_size."
        )
    test_examples = source.num_examples(config["test_split"])
    if config["validate_every_epoch"] and placement.whole_batches:
        if test_examples < batch_size:
            raise ConfigError(
                f"the {test_examples} examples of test_split {config['test_split']!r} are fewer "
                f"than one batch of {batch_size}, and {placement.name} "
                "validates whole batches only: lower batch_size, or set validate_every_epoch "
                "to false (metrics.json still covers the whole test split)."
            )
    return {
        "class_names": class_names,
        "num_classes": num_classes,
        "train_examples": train_examples,
        "test_examples": test_examples,
        "skipped_files": list(source.skipped_files),
        "steps_per_epoch": steps_per_epoch,
        "total_steps": steps_per_epoch * config["epochs"],
        "num_replicas": replicas,
        "strategy": placement.name,
        "device_mesh": placement.device_mesh,
    }


def check_same_run(run_dir, config, info):
    """A run directory with a checkpoint resumes only the run that made it, on the same data."""
    previous = run_dir_lib.read_config(run_dir) or {}
    changed = sorted(key for key in config if previous.get(key) != config[key])
    previous_info = run_dir_lib.read_info(run_dir) or {}
    changed += sorted(
        key for key in ("class_names", "train_examples") if previous_info.get(key) != info[key]
    )
    if changed:
        raise ConfigError(
            f"{run_dir} holds a checkpoint of a different run (changed: {changed}). Resume with "
            "the same settings and data, or use a new --run-dir."
        )


def compiled_model(config, info, placement):
    """The run's model, compiled (in `placement.scope()`)."""
    model = build_model(config, info["num_classes"])
    loss, metrics = make_loss_and_metrics(config)
    model.compile(
        optimizer=make_optimizer(config, info["total_steps"]),
        loss=loss,
        metrics=metrics,
        jit_compile=placement.jit_compile(config["jit_compile"]),
        steps_per_execution=config["steps_per_execution"],
    )
    workarounds.fix_multi_worker_fit(model, placement.strategy, config, info["num_classes"])
    return model


def build_model(config, num_classes):
    """The Mixer of `config`: from the official checkpoint `init` (new head), or initialised."""
    architecture = config_lib.architecture_of(config)
    if config["init"]:
        return load_official_checkpoint(
            config["init"],
            variant=architecture,
            num_classes=num_classes,
            image_size=config["image_size"],
        )
    return MlpMixer(
        **architecture,
        num_classes=num_classes,
        image_size=config["image_size"],
        num_channels=config["num_channels"],
        dropout_rate=config["dropout_rate"],
        stochastic_depth_rate=config["stochastic_depth_rate"],
    )


def distributed_dataset(placement, config, source, split, one_hot=False, **kwargs):
    def dataset_fn(context):
        ds = data_lib.make_dataset(config, split, source=source, input_context=context, **kwargs)
        if one_hot:  # evaluation labels in the form the training loss takes (mixup, smoothing)
            num_classes = data_lib.num_classes(config, source)
            ds = ds.map(lambda images, labels: (images, tf.one_hot(labels, num_classes)))
        return ds

    return placement.distribute(dataset_fn)


def fit(model, placement, config, info, source, run_dir, verbose, extra_callbacks):
    """The one `model.fit` of the run, from wherever the checkpoint left it; the history."""
    steps_per_epoch, epochs = info["steps_per_epoch"], config["epochs"]
    backup_dir = storage.join(run_dir, run_dir_lib.BACKUP)
    chief = placement.chief
    backup = StepBackup(backup_dir, config["checkpoint_every_steps"], steps_per_epoch, chief)
    with placement.scope():  # the optimizer's variables are made here, as replicas need them
        # Before fit, not in the train function's first trace, where Keras on TensorFlow builds
        # it otherwise (a model made outside a tf.distribute scope): a tf.function whose first
        # trace creates variables is traced a second time, and the step is traced twice.
        model.optimizer.build(model.trainable_variables)
        step = backup.restore(model)
    first_epoch, start = divmod(step, steps_per_epoch)
    if step >= info["total_steps"]:
        return backup.history  # a finished run: its results are written again, the same
    if step:
        log.warning(
            "Resuming %s from step %d (epoch %d, step %d of %d).",
            run_dir, step, first_epoch + 1, start, steps_per_epoch,
        )
    preemption = StopOnPreemption(backup, placement)  # SIGTERM: training/preemption.py
    callbacks = [
        EpochSteps(steps_per_epoch, steps_per_epoch - start),
        StopOnNonFiniteLoss(backup),
        backup,
        *extra_callbacks,
    ]
    if chief:
        logs_dir = storage.join(run_dir, run_dir_lib.LOGS)
        storage.makedirs(logs_dir)
        callbacks += [
            keras.callbacks.TensorBoard(logs_dir, write_graph=False),
            workarounds.CSVLogger(storage.join(logs_dir, "history.csv"), append=True),
        ]
    callbacks.append(preemption)  # last: an epoch it ends is in every log first
    validation = None
    if config["validate_every_epoch"]:
        # The final metrics.json covers the whole test split, whatever validation drops.
        validation = distributed_dataset(
            placement, config, source, config["test_split"], training=False,
            drop_remainder=placement.whole_batches,
            one_hot=uses_dense_labels(config),
        )
        workarounds.fix_mirrored_evaluation_steps(
            model, placement.strategy, info["test_examples"] // config["batch_size"]
        )
    train = distributed_dataset(
        placement, config, source, config["train_split"], training=True,
        epoch=first_epoch, start_step=start, epochs=epochs,
    )
    with preemption.listening():
        model.fit(
            train,
            epochs=epochs,
            initial_epoch=first_epoch,
            steps_per_epoch=steps_per_epoch,
            validation_data=validation,
            callbacks=callbacks,
            verbose=verbose if chief else 0,
            shuffle=False,  # the stream is shuffled by (seed, epoch) in training/data.py
        )
    return backup.history


class StopOnNonFiniteLoss(keras.callbacks.Callback):
    """Raises NonFiniteLossError naming the step. Keras's TerminateOnNaN stops quietly and
    reports the batch of the epoch, not the step of the run."""

    def __init__(self, backup):
        super().__init__()
        self.backup = backup

    def on_train_batch_end(self, batch, logs=None):
        loss = (logs or {}).get("loss")
        if loss is None or math.isfinite(float(loss)):
            return
        step = int(self.model.optimizer.iterations.numpy())
        saved = (
            f" The last checkpoint before it is in {self.backup.path} (step "
            f"{self.backup.saved_step})."
            if storage.exists(self.backup.path)
            else ""
        )
        raise NonFiniteLossError(
            f"training loss became {float(loss)} at step {step} (batch {batch} of its epoch). "
            "Lower learning_rate, raise warmup_steps or keep clip_global_norm, and check the "
            "data and any --init checkpoint for bad values; then train again in a new "
            f"--run-dir.{saved}"
        )
