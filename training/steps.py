"""How one `model.fit` over the whole run's stream keeps Keras's epochs equal to the data's.

The training stream of a run is one dataset, its epochs one after the other
(training/data.py), and one `fit(steps_per_epoch=steps_per_epoch, epochs=epochs)` reads
it: the progress bar says `Epoch 3/50`, the iterator and callbacks are built once. Two
things would make Keras's epoch drift from the data's, and `EpochSteps` handles both:

- a run resumed mid-epoch has only the steps that are left in its first epoch: Keras
  cannot start `fit` mid-epoch, so that epoch is ended after them (`stop_training`, taken
  back at the epoch's end);
- with `steps_per_execution` N > 1, Keras's own multi-step function runs N steps per call
  until its data runs out, so on a continuous stream the last call of an epoch would run
  into the next one whenever N does not divide the steps per epoch. Here each call runs
  N steps in one tf.function, and the last call of an epoch only the steps left
  (`StepsPerExecution`). Under JAX, Keras's multi-step function is a Python loop over the
  jitted step that stops when its iterator runs out: it is given an iterator of only the
  steps left (`JaxStepsPerExecution`).
"""

import itertools

import keras
import tensorflow as tf

from training import keras_internals


class StepsPerExecution:
    """Runs `steps_per_execution` steps per call in one tf.function, and never
    more than `steps_left`: the budget of the current pass.

    A call when the budget is spent ends the pass (StopIteration) and rearms it with
    `steps_per_pass`, which is how Keras ends an evaluation pass. The per-step function is
    XLA-compiled when `jit_compile`; the loop around it is not (XLA cannot compile the
    input iterator), which is how Keras splits its own train function.
    """

    def __init__(self, model, step_function, steps_per_pass, jit_compile=False):
        strategy = model.distribute_strategy
        self.model, self.steps_per_pass, self.steps_left = model, steps_per_pass, steps_per_pass

        def one_step(data):
            return strategy.run(step_function, args=(data,))

        if jit_compile:
            one_step = tf.function(one_step, jit_compile=True, reduce_retracing=True)

        def run_steps(iterator, num_steps):
            # A loop in the graph (autograph makes `tf.range` a while loop), not one unrolled
            # in Python: the step is traced twice (the first step gives the loop its outputs'
            # structure) whatever `num_steps` is, where an unrolled loop traced it once per step
            # and once more per remainder, and tracing dominated a short run.
            outputs = one_step(next(iterator))
            for _ in tf.range(num_steps - 1):
                outputs = one_step(next(iterator))
            return keras_internals.reduce_per_replica(outputs, strategy)

        # One trace for every number of steps: steps_per_execution and a pass's remainder.
        self.function = tf.function(run_steps)

    def __call__(self, iterator):
        if self.steps_left == 0:
            self.steps_left = self.steps_per_pass
            raise StopIteration
        num_steps = min(self.model.steps_per_execution, self.steps_left)
        self.steps_left -= num_steps
        return self.function(iterator, tf.constant(num_steps))


class JaxStepsPerExecution:
    """Keras's JAX train function, given at most `steps_left` batches per call (see above)."""

    def __init__(self, model, steps_per_pass):
        self.model, self.function = model, model.train_function
        self.steps_per_pass = self.steps_left = steps_per_pass

    def __call__(self, state, iterator):
        num_steps = min(self.model.steps_per_execution, self.steps_left)
        self.steps_left -= num_steps
        return self.function(state, itertools.islice(iterator, num_steps))


def bounded_steps_per_execution(model, steps_per_pass):
    """The backend's train function that never runs past `steps_left` steps."""
    if keras.backend.backend() == "jax":
        return JaxStepsPerExecution(model, steps_per_pass)
    return StepsPerExecution(
        model, model.train_step, steps_per_pass, jit_compile=bool(model.jit_compile)
    )


class EpochSteps(keras.callbacks.Callback):
    """Ends each Keras epoch after exactly its steps: `first_epoch_steps` for the first
    (fewer in a resumed run), `steps_per_epoch` for the others.

    It must be the first callback, so that a `stop_training` that others set in the same
    epoch's `on_epoch_end` is theirs to keep.
    """

    def __init__(self, steps_per_epoch, first_epoch_steps):
        super().__init__()
        self.steps_per_epoch, self.steps_left = steps_per_epoch, first_epoch_steps
        self._ended_early = False

    def on_train_begin(self, logs=None):
        if self.model.steps_per_execution > 1:
            self.model.train_function = bounded_steps_per_execution(
                self.model, self.steps_per_epoch
            )

    def on_epoch_begin(self, epoch, logs=None):
        if isinstance(self.model.train_function, (StepsPerExecution, JaxStepsPerExecution)):
            self.model.train_function.steps_left = self.steps_left

    def on_train_batch_end(self, batch, logs=None):
        self.steps_left -= min(self.model.steps_per_execution, self.steps_left)
        if self.steps_left == 0 and batch + 1 < self.steps_per_epoch:
            self.model.stop_training = self._ended_early = True

    def on_epoch_end(self, epoch, logs=None):
        self.steps_left = self.steps_per_epoch
        if self._ended_early:
            self.model.stop_training = self._ended_early = False
