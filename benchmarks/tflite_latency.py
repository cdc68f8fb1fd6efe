"""TFLite (LiteRT interpreter) batch-1 latency of every export format, at 1 and 2 threads.

    python -m benchmarks.tflite_latency                       # S/16 and B/16 at 224
    python -m benchmarks.tflite_latency --variants S/16 --convert-only   # convert, time later
    python -m benchmarks.tflite_latency --quick

Conversion is export's own: `export.pipeline.convert` (the pipeline users run, with its
builtin-ops check and LiteRT verification) writes `<cache>/<variant>/<format>/<format>.tflite`
and `report.json`, from a randomly initialised `MlpMixer` whose head, biases and LayerNorm
scales and offsets are random too (`random_mixer`), calibrated on random pixels and
QAT-fine-tuned for a few steps on random labels; the LiteRT Quantizer formats
(`weight_only_int8`, `dynamic_int4_blockwise`, `int16x8`) quantize export's float32 `.tflite`
with their recipes, int16x8 calibrated on the same random pixels. Latency depends on the
weights only through what the converter can fold: with Keras's initial LayerNorm scale 1 and
offset 0 it drops those ops, which a trained model keeps; accuracy is export's report.
Files already in the cache are reused (conversion of B/16 in every format takes minutes).

The 'before' rows (`BASELINES`, e.g. `int8_keras_graph`) are this benchmark's, not export's
formats: they are converted with export's public `to_tflite` and measured with its
`evaluate_tflite`, into the same cache layout.

Latency: `export.evaluate.interpreter` (XNNPACK, as apps ship it) with `num_threads` 1 and
2, input set through `export.evaluate.quantize_input`; `warmup` untimed `invoke()`s, then
the median, min and max of `repeats` timed ones. The file size, and from export's report
the gzip size, the number of XNNPACK partitions and the float ops left in integer models,
come with each line.
"""

import json
import os
import time

from benchmarks import common
from benchmarks.flops import mixer_flops, peak
from export.formats import FORMATS, keras_graph

# The 'before' of export's integer-friendly int8 graph, a row like export's own: full-integer
# int8 of the graph as Keras lowers it, held to int8's bounds. Keras's LayerNorm keeps a
# float NEG there, and XNNPACK, with no int8 kernel for NEG, SQUARED_DIFFERENCE or GELU,
# splits the graph around each LayerNorm.
BASELINES = {
    "int8_keras_graph": {
        **FORMATS["int8"],
        "description": "full-integer int8 of the graph as Keras lowers it (the before)",
        "prepare": keras_graph,
    },
}
DEFAULT_FORMATS = [
    "fp32", "fp16", "dynamic_int8", "weight_only_int8", "dynamic_int4_blockwise", "int8",
    "int8_keras_graph", "int16x8", "qat_int8",
]


def random_mixer(variant, image_size, num_classes, seed=0):
    """A keras_mixer.MlpMixer with the graph a trained one converts to: Keras's random init
    for kernels, and random (not constant) head, biases, LayerNorm scales and offsets.

    The converter folds a fresh model's identities away (`common.randomize_identities`), so
    it would give a smaller TFLite graph than any trained model (and a zero head a
    degenerate int8 output range).
    """
    import keras

    from keras_mixer import MlpMixer

    keras.utils.set_random_seed(seed)
    config = dict(common.TINY) if variant == "tiny" else None
    model = (
        MlpMixer(**config, num_classes=num_classes, image_size=image_size)
        if config
        else MlpMixer.from_variant(variant, num_classes=num_classes, image_size=image_size)
    )
    return common.randomize_identities(model, seed)


def convert_baseline(model, name, representative_images):
    """TFLite bytes of `model` in the baseline format `name` (a row of BASELINES), through
    export's converter and its builtin-ops check."""
    from export import evaluate
    from export.pipeline import to_tflite

    row = BASELINES[name]
    tflite = to_tflite(row["prepare"](model).model, row, representative_images)
    evaluate.check_builtin_ops(tflite, name=f"{name}.tflite")
    return tflite


def _convert(model, name, directory, images, labels, fine_tune_steps):
    """Writes `directory/<name>.tflite` and a `report.json` in export's layout."""
    import tensorflow as tf

    from export import evaluate, pipeline

    if name not in BASELINES:
        train = tf.data.Dataset.from_tensor_slices((images, labels)).batch(2).repeat()
        pipeline.convert(
            model,
            directory,
            [name],
            representative_data=images,
            eval_data=(images[:2], labels[:2]),
            train_data=train,
            fine_tune_steps=fine_tune_steps,
            calibration_samples=len(images),
            min_calibration_samples=1,
            eval_samples=2,
            latency_runs=1,
        )
        return
    tflite = convert_baseline(model, name, images)
    measured = evaluate.evaluate_tflite(
        tflite, images[:2], labels[:2], model.predict(images[:2], verbose=0), latency_runs=1
    )
    os.makedirs(directory, exist_ok=True)
    with open(os.path.join(directory, f"{name}.tflite"), "wb") as file:
        file.write(tflite)
    with open(os.path.join(directory, "report.json"), "w") as file:
        json.dump({"formats": {name: measured}}, file)


def convert_formats(
    variant, formats, *, image_size, num_classes, cache_dir, calibration_images, fine_tune_steps
):
    """Converts the missing formats into the cache; returns {format: conversion record}."""
    import numpy as np

    model, records = None, {}
    for name in formats:
        directory = os.path.join(cache_dir, variant.replace("/", "_"), name)
        record_path = os.path.join(directory, "conversion.json")
        if not os.path.exists(os.path.join(directory, f"{name}.tflite")):
            if model is None:
                model = random_mixer(variant, image_size, num_classes)
            images = common.random_images(calibration_images, image_size, seed=1)
            labels = np.random.default_rng(1).integers(0, num_classes, calibration_images)
            start = time.perf_counter()
            _convert(model, name, directory, images, labels.astype("int32"), fine_tune_steps)
            seconds = time.perf_counter() - start
            with open(record_path, "w") as file:
                json.dump(
                    {
                        "convert_s": seconds,
                        "load_average_1min": os.getloadavg()[0],
                        "calibration_images": calibration_images,
                        "fine_tune_steps": fine_tune_steps,
                    },
                    file,
                )
        with open(record_path) as file:
            records[name] = {"directory": directory, **json.load(file)}
    return records


def latency_seconds(path, image, *, num_threads, repeats, warmup):
    """Time summary of one batch-1 `invoke()` of the `.tflite` at `path` with XNNPACK."""
    from export import evaluate

    runner = evaluate.interpreter(path, num_threads=num_threads)
    runner.allocate_tensors()
    detail = runner.get_input_details()[0]
    runner.set_tensor(detail["index"], evaluate.quantize_input(image[None], detail))
    return common.measure(runner.invoke, repeats=repeats, warmup=warmup)


def main(argv=None):
    arguments = common.parser(__doc__.splitlines()[0])
    arguments.add_argument("--variants", nargs="+", default=["S/16", "B/16"])
    arguments.add_argument("--formats", nargs="+", default=DEFAULT_FORMATS)
    arguments.add_argument("--threads", nargs="+", type=int, default=[1, 2])
    arguments.add_argument("--image-size", type=int, default=224)
    arguments.add_argument("--cache-dir", default=os.path.join(common.RESULTS_DIR, "tflite"))
    arguments.add_argument("--calibration-images", type=int, default=16)
    arguments.add_argument("--fine-tune-steps", type=int, default=2, help="QAT steps (batch 2)")
    arguments.add_argument(
        "--convert-only", action="store_true", help="fill the cache, time nothing"
    )
    arguments.set_defaults(repeats=10, warmup=2)
    args = arguments.parse_args(argv)

    variants, image_size, num_classes = common.sizes(args)
    if args.quick:
        args.calibration_images, args.fine_tune_steps = 4, 1
        args.cache_dir = os.path.join(args.results_dir, "tflite_quick")
    for variant in variants:
        records = convert_formats(
            variant,
            args.formats,
            image_size=image_size,
            num_classes=num_classes,
            cache_dir=args.cache_dir,
            calibration_images=args.calibration_images,
            fine_tune_steps=args.fine_tune_steps,
        )
        if args.convert_only:
            continue
        config = dict(common.TINY) if variant == "tiny" else None
        if config is None:
            from keras_mixer import get_variant

            config = get_variant(variant)
        forward = mixer_flops(**config, image_size=image_size, num_classes=num_classes)["forward"]
        image = common.random_images(1, image_size, seed=2)[0]
        for name, conversion in records.items():
            path = os.path.join(conversion["directory"], f"{name}.tflite")
            # Size, partitions and op lists as export measured them when it wrote the file.
            with open(os.path.join(conversion["directory"], "report.json")) as file:
                exported = json.load(file)["formats"][name]
            for threads in args.threads:
                float32 = peak("float32", cores=threads)
                seconds = latency_seconds(
                    path, image, num_threads=threads, repeats=args.repeats, warmup=args.warmup
                )
                common.emit(
                    "tflite_latency",
                    {
                        "variant": variant,
                        "format": name,
                        "threads": threads,
                        "image_size": image_size,
                        "latency_ms": {
                            key[:-2]: 1e3 * value
                            for key, value in seconds.items()
                            if key.endswith("_s")
                        },
                        "repeats": seconds["repeats"],
                        "size_bytes": os.path.getsize(path),
                        "gzip_size_bytes": exported["gzip_size_bytes"],
                        "delegated_partitions": exported["delegated_partitions"],
                        "num_ops": sum(exported["op_counts"].values()),
                        "float_ops": len(exported["float_ops"]),
                        "forward_flops_per_image": forward,
                        "achieved_gflops": forward / seconds["median_s"] / 1e9,
                        "fraction_of_float32_peak": forward / seconds["median_s"] / float32[1]
                        if float32
                        else None,
                        "convert_s": conversion["convert_s"],
                        "convert_load_average_1min": conversion["load_average_1min"],
                    },
                    args,
                )


if __name__ == "__main__":
    main()
