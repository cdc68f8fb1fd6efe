"""Where the time goes: TensorFlow op types' share of a forward pass or a training step.

    python -m benchmarks.op_profile --variant S/16 --precision mixed_bfloat16 --step train
    python -m benchmarks.op_profile --variant S/16 --precision mixed_bfloat16 --step train \\
        --gelu-dtype compute                    # before the slow-path fix
    python -m benchmarks.op_profile --quick

The model's forward function is frozen (weights as constants) and run in a TF1 Session
with `RunOptions.FULL_TRACE`, which records every executed kernel after Grappler and
oneDNN rewrites (so `_MklMatMul` is a oneDNN matmul). For `--step train` the graph adds
the cross-entropy loss and `tf.gradients` with respect to the weight constants: the
forward and backward work of `fit`, without the optimizer update. Op time is summed per op
type over `repeats` traced runs; with two cores the sum can exceed the wall time.
"""

import collections
import time

from benchmarks import common


def traced_graph(model, batch_size, image_size, step, num_classes):
    """A tf.Graph computing the forward pass (or loss and weight gradients) of `model`."""
    import tensorflow as tf
    from training.tensorflow_internals import freeze

    forward = tf.function(lambda images: model(images, training=False))
    concrete = forward.get_concrete_function(
        tf.TensorSpec((batch_size, image_size, image_size, 3), tf.float32)
    )
    frozen = freeze(concrete)
    graph = tf.Graph()
    with graph.as_default():
        tf.import_graph_def(frozen.graph.as_graph_def(), name="")
        images = graph.get_tensor_by_name(frozen.inputs[0].name)
        logits = graph.get_tensor_by_name(frozen.outputs[0].name)
        fetch = logits
        if step == "train":
            labels = tf.compat.v1.placeholder(tf.int32, (batch_size,), name="labels")
            loss = tf.reduce_mean(
                tf.nn.sparse_softmax_cross_entropy_with_logits(
                    labels=labels, logits=tf.cast(logits, tf.float32)
                )
            )
            weights = [
                op.outputs[0]
                for op in graph.get_operations()
                if op.type == "Const"
                and op.outputs[0].dtype == tf.float32
                and op.outputs[0].shape.rank
                and op.outputs[0].shape.num_elements() >= num_classes
                and op.outputs[0].shape.rank <= 4
                and "shape" not in op.name.lower()
            ]
            # Fetch the gradients themselves: Grappler prunes work reachable only through
            # control dependencies (a tf.group), which would leave nothing to trace.
            fetch = [g for g in tf.gradients(loss, weights) if g is not None]
    return graph, images, fetch, step


def profile(graph, images_tensor, fetch, images, labels, repeats, warmup):
    """Per-op-type total microseconds per run, and the wall time per run."""
    import tensorflow as tf

    feeds = {images_tensor: images}
    if labels is not None:
        feeds[graph.get_tensor_by_name("labels:0")] = labels
    totals, walls = collections.Counter(), []
    with tf.compat.v1.Session(graph=graph) as session:
        for _ in range(warmup):
            session.run(fetch, feeds)
        for _ in range(repeats):
            metadata = tf.compat.v1.RunMetadata()
            start = time.perf_counter()
            session.run(
                fetch,
                feeds,
                options=tf.compat.v1.RunOptions(trace_level=tf.compat.v1.RunOptions.FULL_TRACE),
                run_metadata=metadata,
            )
            walls.append(time.perf_counter() - start)
            for device in metadata.step_stats.dev_stats:
                for node in device.node_stats:
                    label = node.timeline_label
                    kind = (
                        label.split("=", 1)[1].split("(")[0].strip()
                        if "=" in label
                        else node.node_name
                    )
                    totals[kind] += node.op_end_rel_micros
    return {kind: micros / repeats for kind, micros in totals.items()}, common.summarize(walls)


def main(argv=None):
    arguments = common.parser(__doc__.splitlines()[0])
    arguments.add_argument("--variant", default="S/16")
    arguments.add_argument(
        "--precision", choices=common.PRECISIONS, default="mixed_bfloat16"
    )
    arguments.add_argument("--gelu-dtype", choices=common.GELU_DTYPES, default="fused")
    arguments.add_argument("--step", choices=["forward", "train"], default="train")
    arguments.add_argument("--batch-size", type=int, default=8)
    arguments.add_argument("--image-size", type=int, default=224)
    arguments.add_argument("--top", type=int, default=12)
    args = arguments.parse_args(argv)
    import numpy as np

    variant, image_size, num_classes = args.variant, args.image_size, 1000
    if args.quick:
        variant, image_size, num_classes = "tiny", common.TINY_IMAGE_SIZE, common.TINY_NUM_CLASSES
        args.repeats, args.warmup = 1, 1
    common.set_precision(args.precision)
    model, _ = common.build_model(
        variant, image_size=image_size, num_classes=num_classes, gelu_dtype=args.gelu_dtype
    )
    common.randomize_identities(model)  # frozen as constants: zeros would fold away
    graph, images_tensor, fetch, step = traced_graph(
        model, args.batch_size, image_size, args.step, num_classes
    )
    images = common.random_images(args.batch_size, image_size)
    labels = (
        np.random.default_rng(0).integers(0, num_classes, args.batch_size).astype("int32")
        if step == "train"
        else None
    )
    micros, wall = profile(graph, images_tensor, fetch, images, labels, args.repeats, args.warmup)
    total = sum(micros.values())
    top = sorted(micros.items(), key=lambda item: -item[1])[: args.top]
    common.emit(
        "op_profile",
        {
            "variant": variant,
            "precision": args.precision,
            "gelu_dtype": args.gelu_dtype,
            "step": step,
            "batch_size": args.batch_size,
            "image_size": image_size,
            "wall": wall,
            "op_ms_total": total / 1e3,
            "ops": [{"op": kind, "ms": value / 1e3, "share": value / total} for kind, value in top],
        },
        args,
    )
    common.set_precision("float32")


if __name__ == "__main__":
    main()
