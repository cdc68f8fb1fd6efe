"""Preemption: SIGTERM ends training at the next step boundary, with a step checkpoint.

A Cloud VM about to be preempted, Kubernetes evicting a pod and Slurm cancelling or
preempting a job all send SIGTERM, then SIGKILL after a grace period (about 30 s on Compute
Engine; `terminationGracePeriodSeconds`, Slurm's `KillWait`). While `fit` runs, SIGTERM only
sets a flag; after the next call of the train function (every `steps_per_execution` steps,
where Keras calls `on_train_batch_end`; after an epoch's last step, once the epoch has ended,
its validation and history row included) the run saves its step checkpoint
(training/checkpointing.py) and raises `Preempted`. The command prints one line and exits
with EXIT_CODE; the same command resumes from that step, redoing none. Outside `fit`
(start-up, the final save) SIGTERM keeps its default action: there is no step to lose
(except on several JAX hosts, whose runtime catches SIGTERM from the moment they join).

Every process of a run stops after the same call, or the chief would save a step the others
never reach and they would wait in the next all-reduce forever. How they agree is the
placement's `stop_together` (training/placement.py): one process reads its own flag; a
TF_CONFIG cluster sums the workers' flags with one all-reduce per call
(training/strategy.py); several JAX hosts ask JAX's preemption sync manager, which catches
SIGTERM itself and looks for it once a second, so they may run on for a second's calls
(training/distribution.py).

Not tf.distribute's PreemptionCheckpointHandler: it saves a tf.train.Checkpoint (the run's
checkpoint is Keras's own, the same under JAX), wraps a custom loop's step function rather
than `fit`, and declines CPU and TPU VMs on GCP ("does not support usage with TPU or CPU
device on GCP", TF 2.21). Not keras.callbacks.BackupAndRestore: Keras 3's has no preemption
hook (the `save_before_preemption` its docstring mentions is Keras 2's) and it restores the
epoch only.
"""

import contextlib
import signal
import threading

import keras

# 128 + SIGTERM: what a shell, Kubernetes and Slurm report for a process SIGTERM ended, so a
# scheduler that retries preempted jobs treats the saved run as it treats any preempted one;
# it is also the exit status tf.distribute's PreemptionCheckpointHandler uses on GCP after
# its preemption checkpoint. Not EX_TEMPFAIL (75): no cluster scheduler reads it as "retry".
EXIT_CODE = 128 + signal.SIGTERM


class Preempted(Exception):
    """SIGTERM stopped training after a step checkpoint; the message says which step."""


class StopOnPreemption(keras.callbacks.Callback):
    """Saves the step checkpoint and raises Preempted after the call of the train function
    at which the run's processes agree to stop (at an epoch's last step, once the epoch has
    ended); `listening()` is where SIGTERM is caught. It must be the last callback.
    """

    def __init__(self, backup, placement):
        super().__init__()
        self.backup, self.placement = backup, placement
        self.signalled = self.stopping = False
        self.calls = 0

    @contextlib.contextmanager
    def listening(self):
        """SIGTERM sets the flag inside this context (signal handlers live in the main thread)."""
        main_thread = threading.current_thread() is threading.main_thread()
        if self.placement.catches_sigterm or not main_thread:
            yield
            return
        previous = signal.signal(signal.SIGTERM, self._on_sigterm)
        try:
            yield
        finally:
            # None: a handler not set from Python, which cannot be put back; use the default.
            signal.signal(signal.SIGTERM, signal.SIG_DFL if previous is None else previous)

    def _on_sigterm(self, signum, frame):
        self.signalled = True

    def on_train_batch_end(self, batch, logs=None):
        self.calls += 1
        if self.stopping or not self.placement.stop_together(self.calls, self.signalled):
            return
        self.stopping = True
        # After an epoch's last step the epoch ends first (its validation, its history row in
        # the checkpoint and history.csv): a checkpoint at its end without the row would lose it.
        if int(self.model.optimizer.iterations.numpy()) % self.backup.steps_per_epoch:
            self._stop()

    def on_epoch_end(self, epoch, logs=None):
        if self.stopping:  # the last callback: every other one has ended the epoch
            self._stop()

    def _stop(self):
        self.backup.save()
        step, steps_per_epoch = self.backup.saved_step, self.backup.steps_per_epoch
        epoch, step_in_epoch = divmod(step, steps_per_epoch)
        where = f"(epoch {epoch + 1}, step {step_in_epoch} of {steps_per_epoch})"
        if not step_in_epoch:
            where = f"(the end of epoch {epoch})"
        signalled = "this process" if self.signalled else "another process of the run"
        raise Preempted(
            f"SIGTERM on {signalled}: stopped at step {step} {where}, its checkpoint in "
            f"{self.backup.path}; rerun the same command to resume."
        )
