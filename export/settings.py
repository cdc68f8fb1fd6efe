"""What an export is asked for besides its formats: one dataclass, the one place for defaults.

The command line's flags take their defaults from here, and this module imports nothing
heavy, so that `python -m export.convert` can set up its logging before TensorFlow loads.
"""

import dataclasses

# Fewer calibration images than this give int8 ranges we would not ship (the TFLite guide
# suggests ~100-500); experiments can lower it with `min_calibration_samples`.
MIN_CALIBRATION_SAMPLES = 100


@dataclasses.dataclass(frozen=True)
class ExportSettings:
    """How `export.convert.convert` quantizes, fine-tunes and measures; checked on creation.

    Args:
        io_dtype: "int8" or "uint8". Input and output type of the full-integer formats; with
            "uint8" a camera frame goes in as raw pixels.
        max_accuracy_drop: float or None. Largest allowed top-1 drop, in percentage points,
            of any quantized format against the Keras model; beyond it the report is still
            written and `AccuracyBudgetError` is raised.
        calibration_samples: int. Representative images used (the first ones).
        min_calibration_samples: int. Fewer representative images than this is an error.
        eval_samples: int or None. Evaluation images used (None: the whole split).
        fine_tune_steps: int. Steps of QAT, pruning and clustering fine-tuning.
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
    fine_tune_steps: int = 300
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
            ("fine_tune_steps", _at_least(self.fine_tune_steps, 0), "an integer >= 0"),
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

    def fine_tuning(self):
        """The keyword arguments of export/optimize.py's fine-tuning steps."""
        rate = self.fine_tune_learning_rate
        return {"steps": self.fine_tune_steps, **({} if rate is None else {"learning_rate": rate})}


def _at_least(value, minimum):
    return isinstance(value, int) and not isinstance(value, bool) and value >= minimum
