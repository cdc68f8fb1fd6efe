"""The Keras model: shapes, options, serialisation, SavedModel, training, the tf_keras twin."""

import collections
import os

import keras
import numpy as np
import pytest
import tensorflow as tf
import tf_keras
from tensorflow.core.protobuf import saved_model_pb2

from keras_mixer import MlpMixer, build_mixer, gelu_tanh
from keras_mixer.layers import compiled_inference
from reference import mixer_forward

from helpers import official_params, random_images, randomize


def test_output_shapes_and_num_patches(tiny_config):
    model = MlpMixer(**tiny_config, num_classes=7, image_size=(16, 24))
    assert model.num_patches == (16 // 4) * (24 // 4)
    assert model(random_images(2, 16, 24)).shape == (2, 7)
    features = MlpMixer(**tiny_config, image_size=16, include_top=False)
    assert features(random_images(3, 16)).shape == (3, tiny_config["hidden_dim"])


@pytest.mark.parametrize("run", ["call", "predict_on_batch"])
def test_logits_match_numpy_reference(tiny_config, run):
    # A call runs TensorFlow's own ops; Keras's predict loop, the compiled elementwise
    # functions (keras_mixer.layers.compiled_inference), each shared by the layers of a kind.
    model = randomize(MlpMixer(**tiny_config, num_classes=5, image_size=(16, 12)))
    images = random_images(2, 16, 12)
    expected = mixer_forward(official_params(model), images / 127.5 - 1.0)
    logits = model(images) if run == "call" else model.predict_on_batch(images)
    np.testing.assert_allclose(logits, expected, atol=1e-4, rtol=1e-4)


def test_head_is_zero_initialised(tiny_config):
    model = MlpMixer(**tiny_config, num_classes=5, image_size=16)
    kernel, bias = model.get_layer("head").get_weights()
    assert not kernel.any() and not bias.any()
    np.testing.assert_array_equal(model(random_images(2, 16)), 0.0)


def test_gelu_is_the_tanh_approximation():
    x = np.linspace(-6, 6, 101).astype("float32")
    closed_form = 0.5 * x * (1 + np.tanh(np.sqrt(2 / np.pi) * (x + 0.044715 * x**3)))
    np.testing.assert_allclose(gelu_tanh(x), closed_form, atol=1e-6)
    assert np.abs(np.asarray(keras.activations.gelu(x)) - closed_form).max() > 1e-4  # exact form differs


def test_layer_norm_epsilon_is_flax_default(tiny_config):
    model = MlpMixer(**tiny_config, image_size=16)
    norms = [layer for layer in model.layers if isinstance(layer, keras.layers.LayerNormalization)]
    assert len(norms) == 2 * tiny_config["num_blocks"] + 1
    assert all(layer.epsilon == 1e-6 for layer in norms)


def test_rescaling_option_takes_raw_pixels(tiny_config):
    raw = randomize(MlpMixer(**tiny_config, num_classes=3, image_size=16))
    scaled = MlpMixer(**tiny_config, num_classes=3, image_size=16, include_rescaling=False)
    scaled.set_weights(raw.get_weights())
    images = random_images(2, 16)
    np.testing.assert_allclose(raw(images), scaled(images / 127.5 - 1.0), atol=1e-5)


def test_token_mixing_is_shared_across_channels(tiny_config):
    """Permuting the channels of the token-mixing input permutes its output the same way."""
    model = randomize(MlpMixer(**tiny_config, image_size=16))
    layers = ["mixer_block_0_token_mixing_transpose_in", "mixer_block_0_token_mixing_transpose_out"]
    sub = keras.Model(model.get_layer(layers[0]).input, model.get_layer(layers[1]).output)
    tokens = np.random.default_rng(0).normal(size=(2, 16, tiny_config["hidden_dim"])).astype("float32")
    permutation = np.random.default_rng(1).permutation(tiny_config["hidden_dim"])
    np.testing.assert_allclose(sub(tokens[..., permutation]), np.asarray(sub(tokens))[..., permutation], atol=1e-5)


def test_image_size_not_divisible_by_patch_is_a_clear_error(tiny_config):
    with pytest.raises(ValueError, match=r"image_size \(18, 16\).*patch_size=4"):
        MlpMixer(**tiny_config, image_size=(18, 16))


def test_unknown_variant_is_a_clear_error():
    with pytest.raises(ValueError, match="Known variants: S/32"):
        MlpMixer.from_variant("M/16")


def test_from_variant_applies_overrides():
    model = MlpMixer.from_variant("S/32", num_classes=10, image_size=(64, 96), include_top=False)
    assert (model.hidden_dim, model.num_blocks, model.num_patches) == (512, 8, 6)
    assert model.output_shape == (None, 512)


def test_get_config_round_trip(tiny_config):
    model = MlpMixer(**tiny_config, num_classes=4, image_size=(16, 8), dropout_rate=0.1, stochastic_depth_rate=0.2)
    config = model.get_config()
    assert {k: v for k, v in config.items() if k not in ("name", "trainable")} == {
        **tiny_config, "num_classes": 4, "image_size": [16, 8], "include_top": True, "include_rescaling": True,
        "num_channels": 3, "dropout_rate": 0.1, "stochastic_depth_rate": 0.2,
    }
    clone = MlpMixer.from_config(config)
    assert clone.get_config() == config


def test_keras_file_round_trip_gives_identical_outputs(tiny_config, tmp_path):
    model = randomize(MlpMixer(**tiny_config, num_classes=3, image_size=16, stochastic_depth_rate=0.1))
    path = os.fspath(tmp_path / "m.keras")
    model.save(path)
    loaded = keras.models.load_model(path)
    assert isinstance(loaded, MlpMixer)
    images = random_images(2, 16)
    np.testing.assert_array_equal(model.predict(images, verbose=0), loaded.predict(images, verbose=0))


def test_saved_model_export_serves(tiny_config, tmp_path):
    model = randomize(MlpMixer(**tiny_config, num_classes=3, image_size=16))
    model.export(os.fspath(tmp_path / "saved"), verbose=False)
    served = tf.saved_model.load(os.fspath(tmp_path / "saved"))
    images = random_images(2, 16)
    np.testing.assert_allclose(served.serve(tf.constant(images)), model(images), atol=1e-5)


def test_stochastic_depth_is_per_sample_in_training_and_identity_at_inference(tiny_config):
    config = dict(tiny_config, num_blocks=2, num_classes=3, image_size=16)
    dropped = randomize(MlpMixer(**config, stochastic_depth_rate=0.5))
    plain = MlpMixer(**config)
    plain.set_weights(dropped.get_weights())
    images = random_images(64, 16)
    np.testing.assert_allclose(dropped(images, training=False), plain(images), atol=1e-6)
    names = [layer.name for layer in dropped.layers]
    assert "mixer_block_0_token_mixing_drop_path" not in names  # linear rule: the first block gets rate 0
    last = dropped.get_layer("mixer_block_1_channel_mixing_drop_path")
    assert last.rate == 0.5
    branch = np.ones((64, 16, 8), "float32")
    out = np.asarray(last(branch, training=True))
    per_sample = out.reshape(64, -1)
    assert np.all((per_sample == 0).all(axis=1) | (per_sample == 2.0).all(axis=1))  # whole sample kept or dropped
    assert 10 < (per_sample[:, 0] == 0).sum() < 54


@pytest.mark.slow
def test_fit_with_xla_reduces_loss(tiny_config):
    images = random_images(64, 16)
    labels = (images.mean(axis=(1, 2, 3)) > 127.5).astype("int32")
    model = MlpMixer(**tiny_config, num_classes=2, image_size=16)
    model.compile(
        optimizer=keras.optimizers.Adam(1e-2),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        jit_compile=True,
    )
    history = model.fit(images, labels, batch_size=16, epochs=5, verbose=0, shuffle=False)
    assert history.history["loss"][-1] < history.history["loss"][0] < np.log(2) + 1e-3


def test_mixed_bfloat16_policy(tiny_config):
    keras.mixed_precision.set_global_policy("mixed_bfloat16")
    try:
        model = randomize(MlpMixer(**tiny_config, num_classes=3, image_size=16))
        assert model.get_layer("stem").compute_dtype == "bfloat16"
        assert model.get_layer("stem").kernel.dtype == "float32"
        assert model.get_layer("mixer_block_0_channel_mixing_dense_0").compute_dtype == "bfloat16"
        images = random_images(2, 16)
        logits = np.asarray(model.predict(images, verbose=0), np.float32)
        # bfloat16 keeps 8 bits of mantissa: the float32 NumPy logits to a few percent.
        expected = mixer_forward(official_params(model), images / 127.5 - 1.0)
        np.testing.assert_allclose(logits, expected, atol=0.05 * np.abs(expected).max())
    finally:
        keras.mixed_precision.set_global_policy("float32")


def executed_ops(model, images):
    """(op type, node name) of every kernel TensorFlow runs for `model` on `images`, after
    grappler and oneDNN's remapper: what a graph-mode `predict` executes."""
    from training.tensorflow_internals import freeze

    forward = tf.function(lambda x: model(x, training=False))
    frozen = freeze(
        forward.get_concrete_function(tf.TensorSpec(images.shape, tf.float32))
    )
    graph = tf.Graph()
    with graph.as_default():
        tf.import_graph_def(frozen.graph.as_graph_def(), name="")
        metadata = tf.compat.v1.RunMetadata()
        with tf.compat.v1.Session(graph=graph) as session:
            session.run(
                frozen.outputs[0].name,
                {frozen.inputs[0].name: images},
                options=tf.compat.v1.RunOptions(output_partition_graphs=True),
                run_metadata=metadata,
            )
    return [
        (node.op, node.name) for partition in metadata.partition_graphs for node in partition.node
    ]


@pytest.mark.parametrize("precision", ["float32", "mixed_bfloat16"])
def test_every_dense_is_a_plain_matmul_and_the_elementwise_work_is_compiled(
    tiny_config, precision
):
    # keras_mixer.layers (docs/benchmarks.md, "oneDNN kernels"): in Keras's predict loop
    # each Dense is a MatMul, which oneDNN runs on its matrix-unit kernels (`_MklMatMul`;
    # TensorFlow's own `MatMul` where oneDNN is off), never the fused inner product it runs
    # on its generic gemm when the weights are variables; each Dense's bias and GELU and each
    # LayerNorm run inside one compiled function call, and none of their ops on its own.
    keras.mixed_precision.set_global_policy(precision)
    try:
        model = randomize(MlpMixer(**tiny_config, num_classes=3, image_size=16))
        with compiled_inference():
            ops = executed_ops(model, random_images(2, 16))
    finally:
        keras.mixed_precision.set_global_policy("float32")
    blocks = tiny_config["num_blocks"]
    dense_layers = 2 * 2 * blocks + 1  # two MLPs of two Dense per block, and the head
    layer_norms = 2 * blocks + 1
    # The patch stem keeps Keras's convolution at inference: its bias is a BiasAdd of its
    # own where oneDNN is off and the convolution is bfloat16 (TensorFlow's Eigen kernels
    # fuse a bias into a float32 convolution only).
    kinds = collections.Counter(op for op, name in ops if "/stem" not in name)
    assert kinds["_MklMatMul"] + kinds["MatMul"] == dense_layers
    assert not [kind for kind in kinds if "FusedMatMul" in kind]
    calls = kinds["PartitionedCall"] + kinds["StatefulPartitionedCall"]
    assert calls == dense_layers + layer_norms
    elementwise = ("BiasAdd", "Tanh", "Square", "Pow", "SquaredDifference", "Rsqrt")
    assert not [kind for kind in kinds if kind in elementwise]


def compiled_functions(graph_def):
    """The names of `graph_def`'s library functions that XLA must compile."""
    return {
        function.signature.name
        for function in graph_def.library.function
        if function.attr["_XlaMustCompile"].b
    }


def test_only_keras_loops_and_training_trace_compiled_functions(tiny_config, tmp_path):
    # A graph a user traces or exports must convert to TFLite and run without XLA: TF
    # 2.21's converter gives two calls of one compiled function the constants of one of
    # them (keras_mixer.layers._INFERENCE). Keras's predict step and training take the
    # compiled functions, one per layer kind and shape, not one per layer.
    model = randomize(MlpMixer(**tiny_config, num_classes=3, image_size=16))
    spec = tf.TensorSpec((2, 16, 16, 3), tf.float32)

    def traced(function):
        return tf.function(function).get_concrete_function(spec).graph.as_graph_def()

    assert not compiled_functions(traced(model))
    model.export(os.fspath(tmp_path / "exported"), verbose=False)
    pb = (tmp_path / "exported" / "saved_model.pb").read_bytes()
    saved = saved_model_pb2.SavedModel.FromString(pb)
    assert saved.meta_graphs[0].graph_def.library.function
    assert not compiled_functions(saved.meta_graphs[0].graph_def)
    kinds = {
        (type(layer).__name__, getattr(layer, "activation", None), tuple(layer.input.shape[1:]))
        for layer in model.layers
        if isinstance(layer, (keras.layers.Dense, keras.layers.LayerNormalization))
    }
    # Fewer kinds than Dense and LayerNorm layers, so one function per layer would fail below.
    assert len(kinds) < len([layer for layer in model.layers if layer.weights]) - 1
    assert len(compiled_functions(traced(model.predict_step))) == len(kinds)

    def training_step(images):
        with tf.GradientTape() as tape:
            loss = tf.reduce_sum(model(images, training=True))
        return tape.gradient(loss, model.trainable_weights)

    # A forward and a gradient of each; the patch stem, a matmul in training, shares the
    # channel MLP's last Dense's (both give (patches, hidden_dim) rows, no activation).
    assert len(compiled_functions(traced(training_step))) == 2 * len(kinds)


@pytest.mark.parametrize("precision", ["float32", "mixed_bfloat16"])
def test_training_gradients_match_keras_own_layers(tiny_config, precision):
    # keras_mixer.layers gives Dense, LayerNorm and the patch stem gradients of their own
    # (keras_mixer.layers.xla_fused); Keras's layers, differentiated by TensorFlow, are the
    # independent reference, with the same weights.
    keras.mixed_precision.set_global_policy(precision)
    try:
        model = randomize(MlpMixer(**tiny_config, num_classes=5, image_size=16))
        inputs, outputs = build_mixer(keras.layers, **model.mixer_config())
        plain = keras.Model(inputs, outputs)
        plain.set_weights(model.get_weights())
        images = tf.constant(random_images(4, 16))
        labels = tf.constant([0, 1, 2, 3])

        def gradients(network):
            with tf.GradientTape() as tape:
                tape.watch(images)
                logits = tf.cast(network(images, training=True), tf.float32)
                loss = tf.reduce_mean(
                    tf.nn.sparse_softmax_cross_entropy_with_logits(labels, logits)
                )
            weights = [weight.value for weight in network.trainable_weights]
            return [logits, *tape.gradient(loss, [images, *weights])]

        ours, reference = tf.function(gradients)(model), tf.function(gradients)(plain)
    finally:
        keras.mixed_precision.set_global_policy("float32")
    # float32 round-off; bfloat16's 8 bits, the two graphs rounding at different places.
    # Each weight's gradient is held to the largest one's scale: some are near zero.
    tolerance = 1e-5 if precision == "float32" else 0.05
    ours, reference = ([np.asarray(t, np.float32) for t in ts] for ts in (ours, reference))
    assert len(ours) == len(reference) == 2 + len(model.trainable_weights)
    weight_scale = max(np.abs(gradient).max() for gradient in reference[2:])
    for index, (mine, theirs) in enumerate(zip(ours, reference)):
        scale = np.abs(theirs).max() if index < 2 else weight_scale
        assert np.abs(mine - theirs).max() <= tolerance * scale, index


def test_tf_keras_twin_has_same_weights_and_outputs(tiny_config):
    model = randomize(MlpMixer(**tiny_config, num_classes=5, image_size=16, stochastic_depth_rate=0.1))
    inputs, outputs = build_mixer(tf_keras.layers, **model.mixer_config())
    twin = tf_keras.Model(inputs, outputs)
    assert [w.shape for w in twin.get_weights()] == [w.shape for w in model.get_weights()]
    twin.set_weights(model.get_weights())
    images = random_images(4, 16)
    np.testing.assert_allclose(twin(images, training=False), model(images), atol=1e-5)
