"""Step checkpoints: what a run killed at any moment resumes from, with at most N steps redone.

Keras 3's BackupAndRestore restores only the epoch number, so a preempted run redoes the
whole epoch (an hour on ImageNet/TPU), and it has no multi-worker handling (workers sharing
its directory fail with FileExistsError). Here the optimizer's step counter is the data
position (training/data.py), only the chief writes, and every write is atomic
(keras_mixer.storage), so a SIGKILL mid-save leaves the previous checkpoint.

`backup/checkpoint.weights.h5` holds, in one file so that they can never disagree: the
weights and the optimizer state (step counter included), the states of the SeedGenerators
that dropout and stochastic depth draw from (save_weights leaves them out; without them a
resumed run would draw other masks), and the per-epoch history so far. `backup/step.json`
says where the run stands, for people and tests.
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


def _seed_states(model):
    return [v for v in model.non_trainable_variables if v.path.endswith("seed_generator_state")]


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

    def restore(self, model):
        """Loads the checkpoint into `model` (compiled); returns its step, 0 without one."""
        if not storage.exists(self.path):
            return 0
        model.optimizer.build(model.trainable_variables)
        with storage.local_copy(self.path) as local:
            model.load_weights(local)
            with h5py.File(local, "r") as h5:
                states = [np.asarray(state) for _, state in sorted(h5.get(_SEED_STATES, {}).items())]
                self.history = json.loads(h5[_HISTORY][()]) if _HISTORY in h5 else []
        for variable, state in zip(_seed_states(model), states):
            variable.assign(state)
        self.saved_step = int(model.optimizer.iterations.numpy())
        return self.saved_step

    def save(self):
        step = int(self.model.optimizer.iterations.numpy())
        if step == self.saved_step or not self.chief:  # only the chief writes
            self.saved_step = step
            return
        self.saved_step = step
        with workarounds.saving_on_one_host():
            checkpoint = keras_internals.weights_h5(self.model)  # in memory: h5py/h5py#914
        with h5py.File(checkpoint, "a") as h5:
            group = h5.create_group(_SEED_STATES)
            for index, variable in enumerate(_seed_states(self.model)):
                group.create_dataset(f"{index:04d}", data=np.asarray(variable.numpy()))
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
        step = int(self.model.optimizer.iterations.numpy())
        if step - self.saved_step >= self.every_steps:
            self.save()

    def on_epoch_end(self, epoch, logs=None):
        metrics = {key: float(value) for key, value in (logs or {}).items()}
        self.history = [row for row in self.history if row["epoch"] != epoch + 1]
        self.history.append({"epoch": epoch + 1, **metrics})
        self.saved_step = None  # the history changed: save even when the step did not
        self.save()
