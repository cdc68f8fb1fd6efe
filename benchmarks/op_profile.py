"""Where the time goes: TensorFlow op types' share of a forward pass or a training step.

    python -m benchmarks.op_profile --variant S/16 --precision mixed_bfloat16 --step train
    python -m benchmarks.op_profile --variant S/16 --precision mixed_bfloat16 --step train \\
        --gelu-dtype compute                    # before the slow-path fix
    python -m benchmarks.op_profile --quick

The model's forward function, spelled as Keras's predict loop traces it, is frozen (weights as
constants) and run in a TF1 Session with `RunOptions.FULL_TRACE`, which records every executed
kernel after Grappler and oneDNN rewrites (so `_MklMatMul` is a oneDNN matmul). For
`--step train` the function frozen is the cross-entropy loss's gradients with respect to the
weights: the forward and backward work of `fit`, without the optimizer update. A function XLA
compiled (`keras_mixer.layers.xla_fused`) counts as one op, "XLA <its Python name>". Op time is
summed per op type over `repeats` traced runs; with two cores the sum can exceed the wall time.
"""

import collections
import time

from benchmarks import common


def traced_graph(model, batch_size, image_size, step):
    """A tf.Graph computing the forward pass (or loss and weight gradients) of `model`.

    The gradients are taken inside the traced function, before freezing, so that the
    layers' own gradients (`keras_mixer.layers.xla_fused`'s) are what runs, as in `fit`.
    """
    import tensorflow as tf
    from training.tensorflow_internals import freeze

    images_spec = tf.TensorSpec((batch_size, image_size, image_size, 3), tf.float32)
    if step == "train":

        def gradients(images, labels):
            with tf.GradientTape() as tape:
                logits = model(images, training=True)
                loss = tf.reduce_mean(
                    tf.nn.sparse_softmax_cross_entropy_with_logits(
                        labels=labels, logits=tf.cast(logits, tf.float32)
                    )
                )
            return tape.gradient(loss, model.trainable_variables)

        concrete = tf.function(gradients).get_concrete_function(
            images_spec, tf.TensorSpec((batch_size,), tf.int32, name="labels")
        )
    else:
        # The forward pass as Keras's predict loop spells it (MlpMixer.predict_step).
        from keras_mixer.layers import compiled_inference

        with compiled_inference():
            forward = tf.function(lambda images: model(images, training=False))
            concrete = forward.get_concrete_function(images_spec)
    frozen = freeze(concrete)
    graph = tf.Graph()
    with graph.as_default():
        tf.import_graph_def(frozen.graph.as_graph_def(), name="")
        inputs = [graph.get_tensor_by_name(tensor.name) for tensor in frozen.inputs]
        fetch = [graph.get_tensor_by_name(tensor.name) for tensor in frozen.outputs]
    return graph, inputs, fetch


def profile(graph, feeds, fetch, repeats, warmup):
    """Per-op-type total microseconds per run, and the wall time per run."""
    import tensorflow as tf

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
                    totals[_kind(graph, node)] += node.op_end_rel_micros
    return {kind: micros / repeats for kind, micros in totals.items()}, common.summarize(walls)


def _kind(graph, node):
    """The op type of a traced kernel; for a function call, "XLA " and the function's name."""
    label = node.timeline_label
    kind = label.split("=", 1)[1].split("(")[0].strip() if "=" in label else node.node_name
    if kind in ("PartitionedCall", "StatefulPartitionedCall"):
        function = graph.get_operation_by_name(node.node_name).get_attr("f").name
        # TensorFlow names a traced function __inference_<python name>_<number>.
        kind = "XLA " + function.removeprefix("__inference_").rsplit("_", 1)[0]
    return kind


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
    graph, inputs, fetch = traced_graph(model, args.batch_size, image_size, args.step)
    values = [common.random_images(args.batch_size, image_size)]
    if args.step == "train":
        labels = np.random.default_rng(0).integers(0, num_classes, args.batch_size)
        values.append(labels.astype("int32"))
    micros, wall = profile(graph, dict(zip(inputs, values)), fetch, args.repeats, args.warmup)
    total = sum(micros.values())
    top = sorted(micros.items(), key=lambda item: -item[1])[: args.top]
    common.emit(
        "op_profile",
        {
            "variant": variant,
            "precision": args.precision,
            "gelu_dtype": args.gelu_dtype,
            "step": args.step,
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
