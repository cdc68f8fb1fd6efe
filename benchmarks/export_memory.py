"""Peak memory and wall time of `export.pipeline.convert` per variant: can this machine export it?

    python -m benchmarks.export_memory                      # S/16 and B/16 at 224
    python -m benchmarks.export_memory --variants B/32 --formats fp32 int8
    python -m benchmarks.export_memory --quick
    python -m benchmarks.export_memory --variants S/16 --formats qat_int8 --fine-tune-batch 16

Each variant is exported by `export.pipeline.convert` (the pipeline users run: SavedModel,
TFLite converter, LiteRT verification of every file) in a fresh spawned child process, so
that nothing this process imported or allocated counts. The model is
`tflite_latency.random_mixer` (random head, biases and LayerNorm, so that it converts to the
graph a trained model does), calibrated on `--calibration-images` random pixels and verified
on the first `--eval-images` of them, with one latency run per thread count (latency is
tflite_latency's measure, not this one's).

Memory is the child's peak resident set: the kernel's own high-water mark (VmHWM in
/proc/self/status), exact, not sampled. It is split by phase: export.pipeline logs a DEBUG
line as each phase of each format begins ("int8: converting", "int8: verifying in LiteRT",
...); at each line the child reads VmHWM, gives it to the phase that just ended, and resets
it (`5` into /proc/self/clear_refs, Linux), so each phase has its own peak and the export's
peak is the largest of them. `before_export_gib` is the resident set once TensorFlow, Keras,
the model and the images are in memory; bytes per parameter are given for the peak and for
the peak above that start (the part that grows with the variant).

A fine-tuned format (qat_int8, pruned_int8, clustered_int8) fine-tunes on the random images
and labels for `--fine-tune-steps` steps of batch `--fine-tune-batch`: its peak is in its
"preparing the graph" phase, and `fine_tune_step_s` is the median time of a step after the
first (which traces the graph), timed by a Keras callback that this benchmark adds to
export/optimize.py's `_fit`.
"""

import logging
import multiprocessing
import os
import re
import statistics
import tempfile
import time

from benchmarks import common

DEFAULT_FORMATS = ["fp32", "dynamic_int8", "int8"]
GIB = 2**30


def _status_bytes(field):
    """A `kB` field of /proc/self/status (VmRSS, VmHWM) in bytes."""
    with open("/proc/self/status") as status:
        return 1024 * int(re.search(rf"^{field}:\s+(\d+) kB", status.read(), re.MULTILINE).group(1))


def _reset_peak():
    # Writing 5 to clear_refs resets VmHWM to the current resident set (Linux >= 4.0).
    with open("/proc/self/clear_refs", "w") as clear_refs:
        clear_refs.write("5")


class PhasePeaks(logging.Handler):
    """Peak resident memory and time per phase, the phases being export.pipeline's DEBUG lines.

    Example:
    >>> phases = PhasePeaks("start")
    >>> logging.getLogger("export.pipeline").addHandler(phases)
    """

    def __init__(self, first_phase):
        super().__init__(logging.DEBUG)
        self.phases, self.phase, self.start = [], first_phase, time.perf_counter()
        _reset_peak()

    def emit(self, record):
        if record.levelno == logging.DEBUG:  # the phase lines; INFO is progress and times
            self.next(record.getMessage())

    def next(self, phase):
        """Closes the current phase (its peak and duration) and starts `phase`."""
        now = time.perf_counter()
        self.phases.append({"phase": self.phase, "peak_gib": _status_bytes("VmHWM") / GIB,
                            "seconds": now - self.start})
        _reset_peak()
        self.phase, self.start = phase, now


def _timed_fine_tuning(step_ends):
    """Makes export/optimize.py's fine-tuning append the end time of every step to `step_ends`."""
    import tf_keras

    from export import optimize

    class StepEnds(tf_keras.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            step_ends.append(time.perf_counter())

    fit = optimize._fit
    optimize._fit = lambda *args, callbacks=(): fit(*args, callbacks=[*callbacks, StepEnds()])


def export_in_child(connection, variant, formats, image_size, num_classes, calibration_images,
                    eval_images, fine_tune_steps, fine_tune_batch):
    """Runs in the spawned child: exports a random `variant`, sends back what it measured."""
    from export.convert import return_freed_memory

    return_freed_memory()  # as `python -m export.convert` does, before TensorFlow loads
    import numpy as np
    import tensorflow as tf

    from benchmarks.tflite_latency import random_mixer
    from export import pipeline
    from export.formats import get_format
    from export.settings import MIN_CALIBRATION_SAMPLES

    model = random_mixer(variant, image_size, num_classes)
    images = common.random_images(calibration_images, image_size, seed=1)
    labels = np.random.default_rng(1).integers(0, num_classes, len(images)).astype("int32")
    step_ends, train = [], None
    if any(get_format(name)["fine_tunes"] for name in formats):
        _timed_fine_tuning(step_ends)
        train = tf.data.Dataset.from_tensor_slices((images, labels)).batch(
            fine_tune_batch, drop_remainder=True)
    before = _status_bytes("VmRSS")
    logger = logging.getLogger("export.pipeline")
    phases = PhasePeaks("loading the model")
    logger.addHandler(phases)
    logger.setLevel(logging.DEBUG)
    start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="export_memory-") as out_dir:
        pipeline.convert(
            model, out_dir, formats, representative_data=images,
            eval_data=(images[:eval_images], labels[:eval_images]), train_data=train,
            fine_tune_steps=fine_tune_steps, calibration_samples=len(images),
            min_calibration_samples=min(len(images), MIN_CALIBRATION_SAMPLES),
            eval_samples=eval_images, latency_runs=1)
        wall = time.perf_counter() - start
        phases.next("done")
        sizes = {name: os.path.getsize(os.path.join(out_dir, f"{name}.tflite"))
                 for name in formats}
    steps = np.diff(step_ends)  # after the first step, which traces the graph
    connection.send({"parameters": model.count_params(), "before_export_bytes": before,
                     "wall_s": wall, "phases": phases.phases, "tflite_bytes": sizes,
                     "fine_tune_step_s": statistics.median(steps) if len(steps) else None})


def measure_export(variant, formats, **sizes):
    """Exports `variant` to `formats` in a spawned child; returns what the child measured.

    Raises RuntimeError with the child's exit code when it dies (e.g. killed for memory).
    """
    context = multiprocessing.get_context("spawn")
    receiver, sender = context.Pipe(duplex=False)
    child = context.Process(target=export_in_child, args=(sender, variant, formats),
                            kwargs=sizes)
    child.start()
    sender.close()  # the child holds the only write end: a dead child ends recv()
    try:
        result = receiver.recv()
    except EOFError:
        result = None
    child.join()
    if result is None or child.exitcode:
        raise RuntimeError(
            f"The export of {variant} to {', '.join(formats)} died with exit code "
            f"{child.exitcode} (-9: killed, likely for memory); see its output above.")
    return result


def main(argv=None):
    arguments = common.parser(__doc__.splitlines()[0])
    arguments.add_argument("--variants", nargs="+", default=["S/16", "B/16"])
    arguments.add_argument("--formats", nargs="+", default=DEFAULT_FORMATS)
    arguments.add_argument("--image-size", type=int, default=224)
    arguments.add_argument("--calibration-images", type=int, default=128)
    arguments.add_argument("--eval-images", type=int, default=32)
    arguments.add_argument("--fine-tune-steps", type=int, default=10,
                           help="steps of the fine-tuned formats (qat_int8, ...)")
    arguments.add_argument("--fine-tune-batch", type=int, default=16)
    args = arguments.parse_args(argv)

    variants, image_size, num_classes = common.sizes(args)
    if args.quick:
        args.calibration_images, args.eval_images = 4, 2
        args.fine_tune_batch, args.fine_tune_steps = 2, 3
    for variant in variants:
        load_before = os.getloadavg()[0]
        result = measure_export(
            variant, args.formats, image_size=image_size, num_classes=num_classes,
            calibration_images=args.calibration_images, eval_images=args.eval_images,
            fine_tune_steps=args.fine_tune_steps, fine_tune_batch=args.fine_tune_batch)
        peak = max(phase["peak_gib"] for phase in result["phases"]) * GIB
        before = result["before_export_bytes"]
        common.emit("export_memory", {
            "variant": variant, "formats": args.formats, "image_size": image_size,
            "calibration_images": args.calibration_images, "eval_images": args.eval_images,
            **({"fine_tune_steps": args.fine_tune_steps, "fine_tune_batch": args.fine_tune_batch,
                "fine_tune_step_s": result["fine_tune_step_s"]}
               if result["fine_tune_step_s"] is not None else {}),
            "parameters": result["parameters"],
            "peak_gib": peak / GIB, "before_export_gib": before / GIB,
            "bytes_per_parameter": peak / result["parameters"],
            "bytes_per_parameter_above_start": (peak - before) / result["parameters"],
            "peak_phase": max(result["phases"], key=lambda phase: phase["peak_gib"])["phase"],
            "wall_s": result["wall_s"], "load_average_1min_before": load_before,
            "tflite_bytes": result["tflite_bytes"], "phases": result["phases"],
        }, args)


if __name__ == "__main__":
    main()
