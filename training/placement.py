"""Where a run's replicas live: one description the training loop reads, whichever backend.

    KERAS_BACKEND=tensorflow  a tf.distribute strategy (training/strategy.py picks it):
                              TPUStrategy, MultiWorkerMirrored, Mirrored or the default
    KERAS_BACKEND=jax         Keras's own distribution API, keras.distribution.DataParallel
                              over every device of every host (training/distribution.py)

The loop (training/loop.py) sees only a `Placement`, so the run directory, the data
stream and the step checkpoints are the same under both. Keras reads KERAS_BACKEND once,
when it is first imported: `python -m training.train --backend jax` sets it before that.
"""

import contextlib
import dataclasses
from collections.abc import Callable

import keras

from training.config import TRAINING_BACKENDS
from training.errors import ConfigError


@dataclasses.dataclass(frozen=True)
class Placement:
    """What the loop needs to know about the machine.

    name: what run_info.json records as "strategy" ("DataParallel", "TPUStrategy", ...).
    num_replicas: model replicas in sync; the global batch is split evenly among them.
    chief: whether this process writes the run directory (one process of a cluster does).
    whole_batches: whether validation drops its last, partial batch (several replicas need
        equal shares; TPUs and XLA under JAX need static shapes).
    jit_compile: `jit_compile(requested)` -> what Keras is given for the config's value.
    scope: a context manager under which the model is built and compiled and its
        checkpoint restored.
    fit_scope: the context manager `fit` runs under. TensorFlow's strategy needs none (the
        compiled model keeps it) and must not have one: in its scope, a variable made by the
        chief alone (save_weights makes one, training/workarounds.py) waits for the other
        workers' collective forever. Keras's JAX trainer reads the distribution during fit.
    distribute: `distribute(dataset_fn)` -> what `fit` reads, where `dataset_fn(context)`
        builds one input pipeline's dataset for a tf.distribute.InputContext.
    device_mesh: the devices as run_info.json records them.
    strategy: the tf.distribute strategy (for training/workarounds.py), None under JAX.
    stop_together: `stop_together(call, signalled)` -> whether every process of the run
        stops training after this call of the train function (training/preemption.py).
        `call` counts the calls of this `fit`, the same on every process; `signalled` says
        whether this process got SIGTERM. One process: `signalled` itself.
    catches_sigterm: whether the runtime catches SIGTERM itself (JAX's preemption sync
        manager, on several hosts), so that no Python handler may replace its own.
    """

    name: str
    num_replicas: int
    chief: bool
    whole_batches: bool
    jit_compile: Callable
    scope: Callable = contextlib.nullcontext
    fit_scope: Callable = contextlib.nullcontext
    distribute: Callable = None
    device_mesh: dict = dataclasses.field(default_factory=dict)
    strategy: object | None = None
    stop_together: Callable = lambda call, signalled: signalled
    catches_sigterm: bool = False


def resolve_backend(requested):
    """The backend Keras runs on, checked against the config's `backend` ("auto": any)."""
    running = keras.backend.backend()
    if running not in TRAINING_BACKENDS:
        raise ConfigError(
            f"training runs under KERAS_BACKEND={' or '.join(TRAINING_BACKENDS)}, not "
            f"{running}: start it with --backend jax or --backend tensorflow."
        )
    if requested not in ("auto", running):
        raise ConfigError(
            f"config backend={requested!r} but Keras runs on {running!r}: Keras reads "
            f"KERAS_BACKEND once, on import; start with `python -m training.train --backend "
            f"{requested}` (or KERAS_BACKEND={requested} in the environment)."
        )
    return running


def get_placement(config, strategy=None):
    """The Placement of a checked config on this machine.

    Args:
        config: a checked run config (its backend resolved).
        strategy: under TensorFlow a tf.distribute.Strategy, under JAX a
            keras.distribution.Distribution; None picks one for the machine.
    """
    if config["backend"] == "jax":
        from training import distribution

        return distribution.placement(strategy or distribution.get_distribution(config))
    from training import strategy as strategy_lib

    return strategy_lib.placement(
        strategy
        or strategy_lib.get_strategy(
            config["strategy"], config["tpu"], connect_timeout_s=config["cluster_connect_timeout_s"]
        )
    )
