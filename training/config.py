"""The run config: every key's default, type and range in one table, checked before anything runs.

A run config is a flat dict of the keys of `SETTINGS` (recipes in training/recipes.py list
only what they change). `check(config)` returns it complete and checked, or raises
`ConfigError` naming the key, the value and what it must be; the CLI prints that one line.
What the data decides (class names, example counts, steps per epoch) is not config: it
is measured at the start of a run and written apart, to `run_info.json` (training/run_dir.py),
so a config says only what the user chose and two runs are the same run when their configs
are equal.
"""

import dataclasses
import json
import math
import numbers

from keras_mixer import presets
from keras_mixer.variants import ARCHITECTURE_KEYS, VARIANTS
from training.errors import ConfigError

STRATEGY_KINDS = ("auto", "tpu", "multi_worker", "mirrored", "default")
# The Keras backends a run trains under (training/placement.py); "auto": KERAS_BACKEND's.
BACKENDS = ("auto", "tensorflow", "jax")
TRAINING_BACKENDS = tuple(name for name in BACKENDS if name != "auto")
DTYPE_POLICIES = ("float32", "mixed_bfloat16", "mixed_float16")
# RandAugment's magnitude scale: 0..30 (Cubuk et al., 2020; the paper's 15 is mid-scale).
RANDAUGMENT_MAX_MAGNITUDE = 30


@dataclasses.dataclass(frozen=True)
class Setting:
    """One config key: its default, and `accepts(value)` -> None or what the value must be."""

    default: object
    accepts: object
    help: str = ""


def integer(minimum=None, maximum=None, optional=False):
    def accepts(value):
        if value is None and optional:
            return None
        in_range = (minimum is None or value >= minimum) if _is_int(value) else False
        in_range = in_range and (maximum is None or value <= maximum)
        if not in_range:
            bounds = _bounds(minimum, maximum)
            return f"an integer{bounds}" + (" or null" if optional else "")
        return None

    return accepts


def number(minimum=None, maximum=None, below=None):
    def accepts(value):
        ok = isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(value)
        ok = ok and (minimum is None or value >= minimum) and (maximum is None or value <= maximum)
        ok = ok and (below is None or value < below)
        if not ok:
            bounds = _bounds(minimum, maximum) + (f" and < {below}" if below is not None else "")
            return f"a finite number{bounds}"
        return None

    return accepts


def one_of(*choices):
    def accepts(value):
        return None if value in choices else "one of " + ", ".join(map(repr, choices))

    return accepts


def text(optional=False):
    def accepts(value):
        if isinstance(value, str) and value or (optional and value is None):
            return None
        return "a non-empty string" + (" or null" if optional else "")

    return accepts


def boolean(value):
    return None if isinstance(value, bool) else "true or false"


def image_size(value):
    if _is_int(value) and value >= 1:
        return None
    if isinstance(value, (list, tuple)) and len(value) == 2 and all(
        _is_int(v) and v >= 1 for v in value
    ):
        return None
    return "a positive integer or [height, width]"


def variant(value):
    if value is None or value in VARIANTS:
        return None
    return f"null or a paper variant ({', '.join(VARIANTS)})"


def architecture(value):
    if not isinstance(value, dict):
        return "a JSON object of MlpMixer arguments, e.g. {\"hidden_dim\": 128}"
    unknown = sorted(set(value) - set(ARCHITECTURE_KEYS))
    if unknown:
        return f"an object with keys among {', '.join(ARCHITECTURE_KEYS)} (unknown: {unknown})"
    bad = sorted(k for k, v in value.items() if not (_is_int(v) and v >= 1))
    return f"an object of positive integers ({bad} are not)" if bad else None


def randaugment(value):
    if value is None:
        return None
    if (
        isinstance(value, dict)
        and set(value) == {"num_ops", "magnitude"}
        and _is_int(value["num_ops"])
        and value["num_ops"] >= 1
        and isinstance(value["magnitude"], numbers.Real)
        and 0 <= value["magnitude"] <= RANDAUGMENT_MAX_MAGNITUDE
    ):
        return None
    return (
        f'null or {{"num_ops": >= 1, "magnitude": 0..{RANDAUGMENT_MAX_MAGNITUDE}}} '
        "(RandAugment's scale; the paper uses 15)"
    )


def jit_compile(value):
    return None if isinstance(value, bool) or value == "auto" else 'true, false or "auto"'


def _is_int(value):
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _bounds(minimum, maximum):
    if minimum is not None and maximum is not None:
        return f" in {minimum}..{maximum}"
    if minimum is not None:
        return f" >= {minimum}"
    return f" <= {maximum}" if maximum is not None else ""


SETTINGS = {
    # Data (training/data.py).
    "dataset": Setting("sklearn_digits", text(), "tfds name, or a folder ROOT/<split>/<class>/<image>"),
    "data_dir": Setting(None, text(optional=True), "tfds data_dir (local or gs://)"),
    "train_split": Setting("train", text()),
    "test_split": Setting("test", text()),
    "image_size": Setting(224, image_size, "int or [height, width]"),
    "num_channels": Setting(3, one_of(1, 3)),
    "num_classes": Setting(None, integer(1, optional=True), "null: the dataset's number of classes"),
    "shuffle_buffer": Setting(10_000, integer(1)),
    "train_crop": Setting("resize", one_of("resize", "inception_crop")),
    "eval_crop": Setting("resize", one_of("resize", "center_crop")),
    "random_shift": Setting(0, integer(0), "translate training images by up to this many pixels"),
    "random_flip": Setting(False, boolean),
    "randaugment": Setting(None, randaugment, 'null or {"num_ops": 2, "magnitude": 15}'),
    "mixup_alpha": Setting(0.0, number(0)),
    "label_smoothing": Setting(0.0, number(0, below=1)),
    # Model (keras_mixer): a paper variant, with any architecture argument overridden by `model`.
    "variant": Setting("S/16", variant),
    "model": Setting({}, architecture),
    "dropout_rate": Setting(0.0, number(0, below=1)),
    "stochastic_depth_rate": Setting(0.0, number(0, below=1)),
    "init": Setting(
        None, text(optional=True),
        "preset name (keras_mixer.PRESETS) or official .npz to fine-tune from (a new head)",
    ),
    # Optimisation.
    "batch_size": Setting(4096, integer(1), "global: split across replicas"),
    "epochs": Setting(300, integer(1)),
    "optimizer": Setting("adam", one_of("adam", "sgd"), "adam is AdamW when weight_decay > 0"),
    "learning_rate": Setting(1e-3, number(0)),
    "beta_1": Setting(0.9, number(0, below=1)),
    "beta_2": Setting(0.999, number(0, below=1)),
    "momentum": Setting(0.9, number(0, below=1)),
    "weight_decay": Setting(0.0, number(0)),
    "warmup_steps": Setting(0, integer(0)),
    "decay": Setting("linear", one_of("linear", "cosine"), "to 0 at the last step"),
    "clip_global_norm": Setting(1.0, number(0), "0: no clipping"),
    # Numerics and placement.
    "backend": Setting(
        "auto", one_of(*BACKENDS), "the Keras backend; config.json records the one that ran"
    ),
    "dtype_policy": Setting("float32", one_of(*DTYPE_POLICIES)),
    "jit_compile": Setting(
        "auto", jit_compile, '"auto": XLA on TPU and GPU only (always under JAX)'
    ),
    "steps_per_execution": Setting(1, integer(1)),
    "strategy": Setting(
        "auto", one_of(*STRATEGY_KINDS), "TensorFlow's tf.distribute: training/strategy.py"
    ),
    "tpu": Setting(None, text(optional=True), "TPU name, grpc://host:port or 'local'"),
    "cluster_connect_timeout_s": Setting(
        300.0, number(1), "how long cluster tasks wait for each other"
    ),
    # Bookkeeping.
    "seed": Setting(0, integer(0)),
    "checkpoint_every_steps": Setting(100, integer(1), "a preempted run redoes at most this many"),
    "validate_every_epoch": Setting(True, boolean),
}

DEFAULTS = {key: setting.default for key, setting in SETTINGS.items()}


def check(config):
    """Returns `config` completed with the defaults and checked key by key.

    Raises ConfigError naming the first unknown key or the first value of the wrong type or
    range, with what it must be.

    Example:
    >>> check({"epochs": 0})
    ConfigError: config epochs=0 must be an integer >= 1 (e.g. --set epochs=300).
    """
    if not isinstance(config, dict):
        raise ConfigError(f"a run config is a JSON object of settings, not {type(config).__name__}.")
    unknown = sorted(set(config) - set(SETTINGS) - {"recipe"})
    if unknown:
        raise ConfigError(
            f"unknown config key(s) {unknown}. Known keys: {', '.join(sorted(SETTINGS))}."
        )
    try:  # a JSON copy: what config.json will hold, tuples as lists, so runs compare equal
        complete = json.loads(json.dumps({**DEFAULTS, **config}))
    except (TypeError, ValueError) as error:
        raise ConfigError(f"a run config holds JSON values only ({error}).") from None
    for key, setting in SETTINGS.items():
        expected = setting.accepts(complete[key])
        if expected:
            raise ConfigError(
                f"config {key}={json.dumps(complete[key])} must be {expected} "
                f"(e.g. --set {key}={json.dumps(setting.default)})."
            )
    if complete["init"] and complete["num_channels"] != 3:
        raise ConfigError(
            f"config init={json.dumps(complete['init'])} is an official checkpoint, which takes "
            f"RGB images, but num_channels={complete['num_channels']}: set --set num_channels=3 "
            "(gray images are tiled to RGB)."
        )
    if not complete["variant"]:
        missing = [key for key in ARCHITECTURE_KEYS if key not in complete["model"]]
        if missing:
            raise ConfigError(
                f"config model is missing {missing}: set variant (e.g. --variant S/16) or all of "
                f"{', '.join(ARCHITECTURE_KEYS)} in --set model='{{...}}'."
            )
    preset = presets.PRESETS.get(complete["init"])
    if preset is not None and architecture_of(complete) != presets.architecture(preset):
        # The preset's weights fix the architecture: say which flags give it.
        wanted = presets.architecture(preset)
        fix = (f"--variant {preset.variant}" if preset.variant in VARIANTS
               else f"--set variant=null --set model='{json.dumps(wanted)}'")
        raise ConfigError(
            f"config init={json.dumps(complete['init'])} is a Mixer-{preset.variant} preset "
            f"({wanted}), but the config's model is {architecture_of(complete)}: set {fix}."
        )
    return complete


def uses_dense_labels(config):
    """Whether training labels are one-hot floats (mixup, label smoothing), not class ids."""
    return bool(config["mixup_alpha"] or config["label_smoothing"])


def architecture_of(config):
    """The five MlpMixer architecture arguments: the variant's, overridden by `model`."""
    arguments = dict(VARIANTS[config["variant"]]) if config["variant"] else {}
    arguments.update(config["model"])
    return arguments
