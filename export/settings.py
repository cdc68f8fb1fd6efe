"""What an export is asked for besides its formats: one dataclass, the one place for defaults.

The command line's flags take their defaults from here, and this module imports nothing
heavy, so that `python -m export.convert` can set up its logging before TensorFlow loads.
"""

import dataclasses

# Fewer calibration images than this give int8 ranges we would not ship (the TFLite guide
# suggests ~100-500); experiments can lower it with `min_calibration_samples`.
MIN_CALIBRATION_SAMPLES = 100

# QAT, pruning and clustering fine-tune for FINE_TUNE_EPOCHS passes over the training split
# (a fine-tune of a trained model: its ranges and rounding, not a second training), at
# least MIN_FINE_TUNE_STEPS (a split of a few batches would otherwise get a step or two, and
# pruning's ramp over half the steps one jump) and at most MAX_FINE_TUNE_STEPS (what every
# export fine-tuned for before the length followed the data: a large split is not read
# whole; the time this takes per variant is in docs/benchmarks.md, "Fine-tuning at scale").
FINE_TUNE_EPOCHS = 2
MIN_FINE_TUNE_STEPS = 10
MAX_FINE_TUNE_STEPS = 300
# Their batch holds at most FINE_TUNE_PATCHES_PER_BATCH patches (images times the model's
# patches per image) and MAX_FINE_TUNE_BATCH_SIZE images: the activations QAT keeps for the
# backward pass, most of its memory, grow with batch x patches (batch 64 of S/16 at 224 took
# 11.7 GB). 16 x 196: S/16 and B/16 at 224 fine-tune in batches of 16, S/32 and B/32 (49
# patches) of 64, H/14 (256) of 12 (docs/benchmarks.md, "Fine-tuning at scale").
FINE_TUNE_PATCHES_PER_BATCH = 16 * 196
MAX_FINE_TUNE_BATCH_SIZE = 64


@dataclasses.dataclass(frozen=True)
class ExportSettings:
    """How `export.pipeline.convert` quantizes, fine-tunes and measures; checked on creation.

    Args:
        io_dtype: "int8" or "uint8". Input and output type of the full-integer formats; with
            "uint8" a camera frame goes in as raw pixels.
        max_accuracy_drop: float or None. Largest allowed top-1 drop, in percentage points,
            of any quantized format against the Keras model; beyond it the report is still
            written and `AccuracyBudgetError` is raised.
        calibration_samples: int. Representative images used (the first ones).
        min_calibration_samples: int. Fewer representative images than this is an error.
        eval_samples: int or None. Evaluation images used (None: the whole split).
        fine_tune_steps: int or None. Steps of QAT, pruning and clustering fine-tuning;
            None: from the training split (`fine_tuning`).
        fine_tune_learning_rate: float or None. Their Adam learning rate; None: each step's
            own default (export/optimize.py).
        target_sparsity: float. Pruning target, the fraction of zero weights.
        number_of_clusters: int. Weight clusters per kernel.
        latency_runs: int. Timed batch-1 runs per thread count.

    Example:
    >>> settings = ExportSettings(io_dtype="uint8", max_accuracy_drop=0.5)
    >>> convert("runs/digits", "exports/digits", ["int8"], settings=settings)
    """

    io_dtype: str = "int8"
    max_accuracy_drop: float | None = None
    calibration_samples: int = 300
    min_calibration_samples: int = MIN_CALIBRATION_SAMPLES
    eval_samples: int | None = 2000
    fine_tune_steps: int | None = None
    fine_tune_learning_rate: float | None = None
    target_sparsity: float = 0.5
    number_of_clusters: int = 16
    latency_runs: int = 50

    def __post_init__(self):
        checks = [
            ("io_dtype", self.io_dtype in ("int8", "uint8"), "'int8' or 'uint8'"),
            ("max_accuracy_drop", self.max_accuracy_drop is None
             or isinstance(self.max_accuracy_drop, (int, float)), "a number of points or None"),
            ("calibration_samples", _at_least(self.calibration_samples, 1), "an integer >= 1"),
            ("min_calibration_samples", _at_least(self.min_calibration_samples, 0),
             "an integer >= 0"),
            ("eval_samples", self.eval_samples is None or _at_least(self.eval_samples, 1),
             "an integer >= 1, or None for the whole split"),
            ("fine_tune_steps", self.fine_tune_steps is None
             or _at_least(self.fine_tune_steps, 0), "an integer >= 0, or None (from the data)"),
            ("fine_tune_learning_rate", self.fine_tune_learning_rate is None
             or (isinstance(self.fine_tune_learning_rate, (int, float))
                 and self.fine_tune_learning_rate > 0), "a number > 0, or None"),
            ("target_sparsity", isinstance(self.target_sparsity, (int, float))
             and 0 <= self.target_sparsity < 1, "a fraction in [0, 1)"),
            ("number_of_clusters", _at_least(self.number_of_clusters, 2), "an integer >= 2"),
            ("latency_runs", _at_least(self.latency_runs, 1), "an integer >= 1"),
        ]
        for name, ok, expected in checks:
            if not ok:
                value = getattr(self, name)
                raise ValueError(f"export setting {name}={value!r} must be {expected}.")

    def fine_tuning(self, batches_per_epoch, batch_size):
        """How long QAT, pruning and clustering fine-tune on a training split of
        `batches_per_epoch` batches of `batch_size` (None: unknown, e.g. a repeated dataset):
        `fine_tune_steps` when set, else FINE_TUNE_EPOCHS epochs within
        [MIN_FINE_TUNE_STEPS, MAX_FINE_TUNE_STEPS] (MAX when the split's length is unknown).

        Example:
        >>> ExportSettings().fine_tuning(batches_per_epoch=22, batch_size=64).steps
        44
        """
        steps = self.fine_tune_steps
        if steps is None and batches_per_epoch is None:
            steps = MAX_FINE_TUNE_STEPS
        elif steps is None:
            steps = min(MAX_FINE_TUNE_STEPS,
                        max(MIN_FINE_TUNE_STEPS, FINE_TUNE_EPOCHS * batches_per_epoch))
        return FineTuning(steps, batch_size, batches_per_epoch, self.fine_tune_learning_rate,
                          chosen=self.fine_tune_steps is None)


def fine_tune_batch_size(num_patches, num_examples):
    """The fine-tuning batch of a model with `num_patches` patches per image on a split of
    `num_examples` images (FINE_TUNE_PATCHES_PER_BATCH)."""
    batch = min(MAX_FINE_TUNE_BATCH_SIZE, FINE_TUNE_PATCHES_PER_BATCH // num_patches)
    return max(1, min(batch, num_examples))


@dataclasses.dataclass(frozen=True)
class FineTuning:
    """The fine-tuning of QAT, pruning and clustering: `steps` of `batch_size` images (None:
    the given dataset's) over a split of `batches_per_epoch` batches (None: unknown);
    `chosen`: the steps follow the data (no `fine_tune_steps` given)."""

    steps: int
    batch_size: int | None
    batches_per_epoch: int | None
    learning_rate: float | None = None
    chosen: bool = True

    @property
    def epochs(self):
        """Passes over the training split, or None when its length is unknown."""
        return None if not self.batches_per_epoch else self.steps / self.batches_per_epoch

    def arguments(self):
        """The keyword arguments of export/optimize.py's fine-tuning steps."""
        rate = self.learning_rate
        return {"steps": self.steps, **({} if rate is None else {"learning_rate": rate})}

    def __str__(self):
        batch = "the given batches" if self.batch_size is None else f"batch {self.batch_size}"
        length = ("the training split's length is unknown" if self.epochs is None else
                  f"{self.epochs:.3g} epochs of the training split's "
                  f"{self.batches_per_epoch} batches")
        if not self.chosen:
            return f"{self.steps} steps of {batch} (--fine-tune-steps): {length}"
        rule = (f"at most {MAX_FINE_TUNE_STEPS} steps" if self.epochs is None else
                f"{FINE_TUNE_EPOCHS} epochs within {MIN_FINE_TUNE_STEPS}-{MAX_FINE_TUNE_STEPS} "
                "steps")
        return (f"{self.steps} steps of {batch}: {length} (chosen: {rule}; "
                "--fine-tune-steps N to set)")


def _at_least(value, minimum):
    return isinstance(value, int) and not isinstance(value, bool) and value >= minimum
