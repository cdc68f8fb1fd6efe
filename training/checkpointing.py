"""Step checkpoints: what a run killed at any moment resumes from, with at most N steps redone.

Keras 3's BackupAndRestore restores only the epoch number, so a preempted run redoes the
whole epoch (an hour on ImageNet/TPU), and it has no multi-worker handling (workers sharing
its directory fail with FileExistsError). Here the optimizer's step counter is the data
position (training/data.py), only the chief writes, and every write is atomic
(keras_mixer.storage), so a SIGKILL mid-save leaves the previous checkpoint.

`backup/checkpoint.weights.h5` holds, in one file so that they can never disagree: the
weights and the optimizer state (step counter included), the states of the SeedGenerators
that dropout and stochastic depth draw from (save_weights leaves them out; without them a
resumed run would draw other masks), the per-epoch history so far, and the running sums and
counts of the epoch's metrics (`model.metrics_variables`: the loss tracker's and the compiled
metrics'), which a run resumed mid-epoch adds back at its first step: its epoch's loss and
accuracy (history.csv, metrics.json, the curves) are then the mean over all the epoch's steps,
as in an uninterrupted run, not over the steps after the resume. `backup/step.json` says
where the run stands, for people and tests.
"""

import json

import h5py
import keras
import numpy as np

from keras_mixer import storage
from training import keras_internals, workarounds

CHECKPOINT = "checkpoint.weights.h5"
STEP = "step.json"
_SEED_STATES = "keras_mixer_seed_generator_states"
_HISTORY = "keras_mixer_history"
_METRIC_STATES = "keras_mixer_metric_states"


def _seed_states(model):
    return [v for v in model.non_trainable_variables if v.path.endswith("seed_generator_state")]


def _write_states(h5, name, states):
    group = h5.create_group(name)
    for index, state in enumerate(states):
        group.create_dataset(f"{index:04d}", data=np.asarray(state))


def _read_states(h5, name):
    return [np.asarray(state) for _, state in sorted(h5.get(name, {}).items())]


class StepBackup(keras.callbacks.Callback):
    """Saves the run's state every `every_steps` steps and at each epoch's end (the chief).

    `history` is the list of finished epochs' metrics (restored with the weights).
    """

    def __init__(self, backup_dir, every_steps, steps_per_epoch, chief):
        super().__init__()
        self.backup_dir, self.every_steps = backup_dir, every_steps
        self.steps_per_epoch, self.chief = steps_per_epoch, chief
        self.path = storage.join(backup_dir, CHECKPOINT)
        self.history = []
        self.saved_step = 0
        self._metric_states = None  # for the first epoch of a run resumed mid-epoch

    def restore(self, model):
        """Loads the checkpoint into `model` (compiled, its optimizer built); returns its
        step, 0 without one."""
        if not storage.exists(self.path):
            return 0
        with storage.local_copy(self.path) as local:
            model.load_weights(local)
            with h5py.File(local, "r") as h5:
                states = _read_states(h5, _SEED_STATES)
                metric_states = _read_states(h5, _METRIC_STATES)
                self.history = json.loads(h5[_HISTORY][()]) if _HISTORY in h5 else []
        for variable, state in zip(_seed_states(model), states):
            variable.assign(state)
        self.saved_step = int(model.optimizer.iterations.numpy())
        # At an epoch's end the metrics hold the finished epoch's (and validation's) sums.
        if self.saved_step % self.steps_per_epoch:
            self._metric_states = metric_states
        return self.saved_step

    def save(self):
        step = int(self.model.optimizer.iterations.numpy())
        if step == self.saved_step:
            return
        # Read on every worker: under several workers a metric's value is an all-reduce.
        metric_states = [np.asarray(v.numpy()) for v in self.model.metrics_variables]
        self.saved_step = step
        if not self.chief:  # only the chief writes
            return
        with workarounds.saving_on_one_host():
            checkpoint = keras_internals.weights_h5(self.model)  # in memory: h5py/h5py#914
        with h5py.File(checkpoint, "a") as h5:
            _write_states(h5, _SEED_STATES, [v.numpy() for v in _seed_states(self.model)])
            _write_states(h5, _METRIC_STATES, metric_states)
            # A dataset, not an attribute: attributes stop at 64 KB (a long run's history).
            h5.create_dataset(_HISTORY, data=json.dumps(self.history))
        storage.write_atomically(self.path, checkpoint.getvalue())
        position = {
            "step": step,
            "epoch": step // self.steps_per_epoch,
            "step_in_epoch": step % self.steps_per_epoch,
        }
        storage.write_json(storage.join(self.backup_dir, STEP), position)

    def on_train_batch_end(self, batch, logs=None):
        if self._metric_states is not None:
            self._add_metric_states()
        step = int(self.model.optimizer.iterations.numpy())
        if step - self.saved_step >= self.every_steps:
            self.save()

    def _add_metric_states(self):
        """Adds the checkpoint's metric states to those of the first steps after the resume.

        Keras resets the metrics as each epoch begins and builds the compiled metrics at the
        first step, so they are restored after it: every state of Keras's mean metrics (the
        loss tracker's and accuracy's total and count) is a sum over the epoch's steps.
        """
        variables = self.model.metrics_variables
        if len(variables) == len(self._metric_states):  # else a checkpoint made before them
            for variable, state in zip(variables, self._metric_states):
                variable.assign(np.asarray(variable.numpy()) + state)
        self._metric_states = None

    def on_epoch_end(self, epoch, logs=None):
        metrics = {key: float(value) for key, value in (logs or {}).items()}
        self.history = [row for row in self.history if row["epoch"] != epoch + 1]
        self.history.append({"epoch": epoch + 1, **metrics})
        self.saved_step = None  # the history changed: save even when the step did not
        self.save()
