"""Peak memory and wall time of `export.convert` per variant: can this machine export it?

    python -m benchmarks.export_memory                      # S/16 and B/16 at 224
    python -m benchmarks.export_memory --variants B/32 --formats fp32 int8
    python -m benchmarks.export_memory --quick

Each variant is exported by `export.convert.convert` (the pipeline users run: SavedModel,
TFLite converter, LiteRT verification of every file) in a fresh spawned child process, so
that nothing this process imported or allocated counts. The model is
`tflite_latency.random_mixer` (random head, biases and LayerNorm, so that it converts to the
graph a trained model does), calibrated on `--calibration-images` random pixels and verified
on the first `--eval-images` of them, with one latency run per thread count (latency is
tflite_latency's measure, not this one's).

Memory is the child's peak resident set: the kernel's own high-water mark (VmHWM in
/proc/self/status), exact, not sampled. It is split by phase: export.convert logs a DEBUG
line as each phase of each format begins ("int8: converting", "int8: verifying in LiteRT",
...); at each line the child reads VmHWM, gives it to the phase that just ended, and resets
it (`5` into /proc/self/clear_refs, Linux), so each phase has its own peak and the export's
peak is the largest of them. `before_export_gib` is the resident set once TensorFlow, Keras,
the model and the images are in memory; bytes per parameter are given for the peak and for
the peak above that start (the part that grows with the variant).
"""

import logging
import multiprocessing
import os
import re
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
    """Peak resident memory and time per phase, the phases being export.convert's DEBUG lines.

    Example:
    >>> phases = PhasePeaks("start")
    >>> logging.getLogger("export.convert").addHandler(phases)
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


def export_in_child(connection, variant, formats, image_size, num_classes, calibration_images,
                    eval_images):
    """Runs in the spawned child: exports a random `variant`, sends back what it measured."""
    from export import cli

    cli.return_freed_memory()  # as `python -m export.convert` does, before TensorFlow loads
    import numpy as np

    from benchmarks.tflite_latency import random_mixer
    from export import convert
    from export.settings import MIN_CALIBRATION_SAMPLES

    model = random_mixer(variant, image_size, num_classes)
    images = common.random_images(calibration_images, image_size, seed=1)
    labels = np.random.default_rng(1).integers(0, num_classes, len(images)).astype("int32")
    before = _status_bytes("VmRSS")
    logger = logging.getLogger("export.convert")
    phases = PhasePeaks("loading the model")
    logger.addHandler(phases)
    logger.setLevel(logging.DEBUG)
    start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="export_memory-") as out_dir:
        convert.convert(
            model, out_dir, formats, representative_data=images,
            eval_data=(images[:eval_images], labels[:eval_images]),
            calibration_samples=len(images),
            min_calibration_samples=min(len(images), MIN_CALIBRATION_SAMPLES),
            eval_samples=eval_images, latency_runs=1)
        wall = time.perf_counter() - start
        phases.next("done")
        sizes = {name: os.path.getsize(os.path.join(out_dir, f"{name}.tflite"))
                 for name in formats}
    connection.send({"parameters": model.count_params(), "before_export_bytes": before,
                     "wall_s": wall, "phases": phases.phases, "tflite_bytes": sizes})


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
    args = arguments.parse_args(argv)

    variants, image_size, num_classes = common.sizes(args)
    if args.quick:
        args.calibration_images, args.eval_images = 4, 2
    for variant in variants:
        load_before = os.getloadavg()[0]
        result = measure_export(
            variant, args.formats, image_size=image_size, num_classes=num_classes,
            calibration_images=args.calibration_images, eval_images=args.eval_images)
        peak = max(phase["peak_gib"] for phase in result["phases"]) * GIB
        before = result["before_export_bytes"]
        common.emit("export_memory", {
            "variant": variant, "formats": args.formats, "image_size": image_size,
            "calibration_images": args.calibration_images, "eval_images": args.eval_images,
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
