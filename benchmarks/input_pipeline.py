"""Input pipeline throughput: does `training.data.make_dataset` keep `model.fit` fed?

    python -m benchmarks.input_pipeline                 # eval, pretrain, i1k pipelines; S/32 fit
    python -m benchmarks.input_pipeline --quick

Data: an ImageNet-like image folder (ROOT/train/<class>/<image>.jpg, 500x375 JPEGs at
quality 90, a typical ImageNet size and encoding), written once under the results folder
from seeded smooth random images with noise (JPEG decoding cost depends on size and entropy,
not on what the picture shows). The pipelines are the ones training runs, built from the
recipes in training/recipes.py:
- "eval": decode, center crop, resize (the validation pipeline);
- "pretrain": decode, inception crop, resize, flip (the paper's pre-training);
- "i1k": "pretrain" plus RandAugment (2 ops, magnitude 15, Keras's ops applied per image)
  and Keras's MixUp (0.5);
- "i1k_batch_randaugment": "i1k" as it was before the slow-path fix, with Keras's
  `RandAugment` layer mapped over each batch (it computes all eleven ops per op slot; here
  it runs after mixup rather than before, which costs the same).

Two measurements per training pipeline:
- "pipeline": images/s that the pipeline delivers alone, pulling batches after a warm-up
  chunk (median, min and max over `repeats` chunks of `--batches` batches);
- "fit": `model.fit` images/s of `--variant` fed by the pipeline, against the same compiled
  model fed one batch held in memory (benchmarks/train_throughput.py's setting), `--fit-steps`
  steps each. The two share the machine's cores, as they do in a real run, so the ratio is
  what the pipeline costs the training step here.
"""

import os

from benchmarks import common
from benchmarks.train_throughput import compile_for_benchmark, fit_step_times

PIPELINES = ("eval", "pretrain", "i1k", "i1k_batch_randaugment")
# A typical ImageNet image: 500x375 is its most common size.
IMAGE_WIDTH, IMAGE_HEIGHT = 500, 375


def image_folder(root, *, num_classes, images_per_class, width, height, seed=0):
    """Writes (once) an image folder ROOT/train/<class>/<n>.jpg of seeded synthetic JPEGs.

    Example:
    >>> root = image_folder("/tmp/images", num_classes=10, images_per_class=40, width=500, height=375)
    """
    import numpy as np
    from PIL import Image

    if os.path.isdir(os.path.join(root, "train")):
        return root
    rng = np.random.default_rng(seed)
    partial = root + ".partial"
    for label in range(num_classes):
        class_dir = os.path.join(partial, "train", f"class_{label:03d}")
        os.makedirs(class_dir, exist_ok=True)
        for index in range(images_per_class):
            # Smooth shapes (a coarse random field scaled up) plus pixel noise: JPEG files of
            # roughly the size photos have, rather than the tiny files of flat colour.
            coarse = rng.uniform(0, 255, (height // 25 + 1, width // 25 + 1, 3)).astype("uint8")
            smooth = np.asarray(Image.fromarray(coarse).resize((width, height), Image.BICUBIC))
            noisy = smooth.astype("float32") + rng.normal(0, 12, smooth.shape)
            pixels = np.clip(noisy, 0, 255).astype("uint8")
            Image.fromarray(pixels).save(os.path.join(class_dir, f"{index:04d}.jpg"), quality=90)
    os.replace(partial, root)
    return root


def pipeline_config(name, root, *, image_size, batch_size):
    """The run config whose `make_dataset` is pipeline `name` over the folder at `root`."""
    from training.recipes import get_recipe

    recipe = {"eval": "pretrain", "i1k_batch_randaugment": "i1k"}.get(name, name)
    return get_recipe(
        recipe, dataset=root, image_size=image_size, batch_size=batch_size, shuffle_buffer=1024
    )


def make_pipeline(name, root, *, image_size, batch_size):
    """The endless stream of (images, labels) batches of pipeline `name`."""
    import tensorflow as tf

    from training.augment import randaugment_layer
    from training.data import make_dataset

    config = pipeline_config(name, root, image_size=image_size, batch_size=batch_size)
    training = name != "eval"
    batch_randaugment = config["randaugment"] if name == "i1k_batch_randaugment" else None
    if batch_randaugment:
        config["randaugment"] = None
    # eval keeps every example by default; a benchmark wants full, static batches.
    dataset = make_dataset(config, "train", training=training, drop_remainder=True)
    if batch_randaugment:
        layer = randaugment_layer(batch_randaugment)
        dataset = dataset.map(
            lambda images, labels: (layer(images, training=True), labels),
            num_parallel_calls=tf.data.AUTOTUNE,
        )
    return dataset.repeat()


def mean_rate(batch_size, seconds):
    """Images/s over a window of steps: total images over total time (what an epoch sees)."""
    return batch_size * len(seconds) / sum(seconds)


def main(argv=None):
    arguments = common.parser(__doc__.splitlines()[0])
    arguments.add_argument("--pipelines", nargs="+", choices=PIPELINES, default=list(PIPELINES))
    arguments.add_argument("--variant", default="S/32", help="the model `fit` feeds (fastest: S/32)")
    arguments.add_argument("--precision", choices=common.PRECISIONS, default="float32")
    arguments.add_argument("--mode", choices=["graph", "xla"], default="graph")
    arguments.add_argument("--batch-size", type=int, default=32, help="pipeline-alone batch")
    arguments.add_argument("--batches", type=int, default=8, help="batches per timed chunk")
    arguments.add_argument("--fit-batch-size", type=int, default=8)
    arguments.add_argument("--fit-steps", type=int, default=30)
    arguments.add_argument("--image-size", type=int, default=224)
    arguments.add_argument("--num-classes", type=int, default=10)
    arguments.add_argument("--images-per-class", type=int, default=40)
    args = arguments.parse_args(argv)
    import tensorflow as tf

    args.variants = [args.variant]
    (variant,), image_size, _ = common.sizes(args)
    width, height = IMAGE_WIDTH, IMAGE_HEIGHT
    if args.quick:
        width, height = 64, 48
        args.num_classes, args.images_per_class = 2, 8
        args.batch_size, args.batches, args.fit_batch_size, args.fit_steps = 4, 2, 4, 2
    root = image_folder(
        os.path.join(
            args.results_dir,
            f"input_images_{width}x{height}_{args.num_classes}x{args.images_per_class}",
        ),
        num_classes=args.num_classes,
        images_per_class=args.images_per_class,
        width=width,
        height=height,
    )
    common_record = {"image_size": image_size, "source_image": [width, height]}
    for name in args.pipelines:
        stream = iter(make_pipeline(name, root, image_size=image_size, batch_size=args.batch_size))
        chunk = common.measure(
            lambda: [next(stream) for _ in range(args.batches)],
            repeats=args.repeats,
            warmup=args.warmup,
        )
        common.emit(
            "input_pipeline",
            {
                "pipeline": name,
                "measure": "pipeline",
                "batch_size": args.batch_size,
                **common_record,
                "chunk": chunk,
                "images_per_s": common.rate(args.batch_size * args.batches, chunk),
            },
            args,
        )
        if name == "eval":
            continue  # fit is fed by the training pipelines
        common.set_precision(args.precision)
        pipeline = make_pipeline(name, root, image_size=image_size, batch_size=args.fit_batch_size)
        first_images, first_labels = next(iter(pipeline))
        model, _ = common.build_model(variant, image_size=image_size, num_classes=args.num_classes)
        # mixup makes one-hot labels (batch, classes); otherwise they are class ids (batch,).
        compile_for_benchmark(model, mode=args.mode, one_hot=first_labels.shape.rank == 2)

        in_memory = tf.data.Dataset.from_tensors((first_images, first_labels)).repeat()
        # Warm-up (tracing) happens on the in-memory batch; both then run the compiled step, and
        # the first step of each run (starting the iterator) is dropped.
        memory_seconds = fit_step_times(model, in_memory, steps=args.warmup + args.fit_steps)
        pipeline_seconds = fit_step_times(model, pipeline, steps=1 + args.fit_steps)
        memory_rate = mean_rate(args.fit_batch_size, memory_seconds[args.warmup :])
        pipeline_rate = mean_rate(args.fit_batch_size, pipeline_seconds[1:])
        common.emit(
            "input_pipeline",
            {
                "pipeline": name,
                "measure": "fit",
                "variant": variant,
                "precision": args.precision,
                "mode": args.mode,
                "batch_size": args.fit_batch_size,
                **common_record,
                "steps": args.fit_steps,
                "in_memory_step": common.summarize(memory_seconds[args.warmup :]),
                "pipeline_step": common.summarize(pipeline_seconds[1:]),
                "in_memory_images_per_s": memory_rate,
                "pipeline_images_per_s": pipeline_rate,
                "fed_fraction": pipeline_rate / memory_rate,
            },
            args,
        )
        common.set_precision("float32")


if __name__ == "__main__":
    main()
