"""Time to the first step: how long `training.loop.run` spends on an image folder before it trains.

    python -m benchmarks.first_step                  # 20,000 32x32 JPEGs (18,000 + 2,000)
    python -m benchmarks.first_step --width 500 --height 375 --train-images 1800 \\
        --test-images 200                            # photo-size JPEGs: what indexing costs
    python -m benchmarks.first_step --quick
    # The code before training.image_folder: this script run against a checkout of dff2be2
    # (benchmarks/full_run.sh has the exact commands).
    git worktree add --detach /tmp/before/code dff2be2 && cp benchmarks/first_step.py /tmp/before/
    PYTHONPATH=/tmp/before/code python /tmp/before/first_step.py --results-dir benchmarks/results

Data: an image folder ROOT/{train,test}/<class>/<n>.jpg, 10 classes, written once under the
results folder (or taken from --folder) with the input-pipeline benchmark's seeded photo-like
JPEGs (benchmarks/input_pipeline.py). Small images by default, as the question is how often
the folder is listed and opened before training; at photo size (--width 500 --height 375) the
numbers say what decoding every file once at index time costs.

Two measurements, each the median, min and max of `repeats` runs after `warmup` untimed ones
(the files are in the page cache: they were just written or read):
- "index": the folder's indexing alone, as run() does it: with
  `training.image_folder.ImageFolder` (both splits, once) where that module exists, else with
  the old `training.data._folder_index` called as the code before it did (train, test, then
  train again for the training pipeline).
- "first_step": seconds from calling `training.loop.run(config, run_dir, verbose=0)` to the
  end of the first training step (a callback reads the clock once the first step's loss is a
  number, then stops the run), with a fresh run directory each time: the digits recipe on
  the folder at 16x16 with the tiny Mixer, batch 64, one epoch, no XLA, no validation.
  Everything but the one step is start-up; which indexing run() does is the training code's
  business, and the record's commit says which code that was.
"""

import os
import shutil
import tempfile
import time

from benchmarks import common

class _FirstStepDone(Exception):
    """Ends `run` once the first step has been timed (stop_training would go on to evaluate)."""


def jpeg_folder(root, *, num_classes, train_images, test_images, width, height):
    """Writes (once) ROOT/{train,test}/<class>/<n>.jpg: the input-pipeline benchmark's JPEGs.

    Example:
    >>> root = jpeg_folder("/tmp/jpegs", num_classes=10, train_images=180, test_images=20,
    ...                    width=32, height=32)
    """
    from benchmarks.input_pipeline import image_folder

    if os.path.isdir(root):
        return root
    partial = root + ".partial"
    shutil.rmtree(partial, ignore_errors=True)
    for seed, (split, count) in enumerate((("train", train_images), ("test", test_images))):
        # image_folder writes a train split only: write each split as one, then rename it.
        written = image_folder(
            os.path.join(partial, f"{split}.written"),
            num_classes=num_classes,
            images_per_class=count // num_classes,
            width=width,
            height=height,
            seed=seed,
        )
        os.replace(os.path.join(written, "train"), os.path.join(partial, split))
        os.rmdir(written)
    os.replace(partial, root)
    return root


def first_step_seconds(root):
    """Seconds from calling `training.loop.run` on `root` to the end of its first step."""
    import keras

    from training.loop import run
    from training.recipes import get_recipe

    class FirstStep(keras.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            float(logs["loss"])  # the step has run once its loss is a number
            self.end = time.perf_counter()
            raise _FirstStepDone

    config = get_recipe(
        "digits",
        dataset=root,
        image_size=16,
        num_channels=3,
        batch_size=64,
        epochs=1,
        jit_compile=False,
        validate_every_epoch=False,
        model=dict(common.TINY),
    )
    keras.backend.clear_session()
    timer = FirstStep()
    with tempfile.TemporaryDirectory() as run_dir:
        start = time.perf_counter()
        try:
            run(config, run_dir, verbose=0, callbacks=[timer])
        except _FirstStepDone:
            return timer.end - start
    raise RuntimeError("training.loop.run returned without running a training step")


def indexer():
    """`(name, index(root))`: the folder indexing of the code on the path, as run() calls it."""
    try:
        from training.image_folder import ImageFolder
    except ImportError:
        from training.data import _folder_index

        def index(root):
            for split in ("train", "test", "train"):
                _folder_index(root, split)

        return "_folder_index x3 (train, test, train)", index

    def index(root):
        folder = ImageFolder(root, "train")
        folder.split("train")
        folder.split("test")

    return "ImageFolder (train, test once)", index


def main(argv=None):
    arguments = common.parser(__doc__.splitlines()[0])
    arguments.add_argument("--folder", help="the image folder to use (written there if missing)")
    arguments.add_argument("--train-images", type=int, default=18_000)
    arguments.add_argument("--test-images", type=int, default=2_000)
    arguments.add_argument("--num-classes", type=int, default=10)
    arguments.add_argument("--width", type=int, default=32, help="JPEG width in pixels")
    arguments.add_argument("--height", type=int, default=32, help="JPEG height in pixels")
    args = arguments.parse_args(argv)
    if args.quick:
        args.train_images, args.test_images, args.repeats, args.warmup = 180, 20, 1, 0
    counts = f"{args.num_classes}x{args.train_images}+{args.test_images}"
    default = os.path.join(args.results_dir, f"first_step_{args.width}x{args.height}_{counts}")
    root = jpeg_folder(
        args.folder or default,
        num_classes=args.num_classes,
        train_images=args.train_images,
        test_images=args.test_images,
        width=args.width,
        height=args.height,
    )
    record = {
        "folder": root,
        "images": sum(len(files) for _, _, files in os.walk(root)),
        "source_image": [args.width, args.height],
    }
    indexer_name, index = indexer()
    seconds = common.measure(lambda: index(root), repeats=args.repeats, warmup=args.warmup)
    common.emit(
        "first_step",
        {"measure": "index", "indexer": indexer_name, **record, "seconds": seconds},
        args,
    )
    runs = [first_step_seconds(root) for _ in range(args.warmup + args.repeats)]
    seconds = common.summarize(runs[args.warmup :])
    common.emit("first_step", {"measure": "first_step", **record, "seconds": seconds}, args)


if __name__ == "__main__":
    main()
