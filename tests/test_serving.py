"""CPU serving (export/serving.py): the frozen forward pass computes the model's logits."""

import keras
import numpy as np
import pytest
import tensorflow as tf
from helpers import assert_close_to_reference, official_params, random_images, randomize
from reference import mixer_forward

from export import serving
from export.pipeline import to_saved_model
from keras_mixer import MlpMixer

# Ops that read or write a variable: a graph holding its weights as constants has none.
VARIABLE_OPS = {"VarHandleOp", "ReadVariableOp", "ResourceGather", "VariableV2",
                "AssignVariableOp"}


def ops_of(function):
    """Every op type of `function`'s graph and of the functions it calls."""
    graph = function.graph.as_graph_def()
    return ({node.op for node in graph.node}
            | {node.op for library in graph.library.function for node in library.node_def})


@pytest.mark.parametrize("batch_size", [None, 3])
def test_frozen_serving_computes_the_numpy_logits_from_constants(tiny_config, batch_size):
    model = randomize(MlpMixer(**tiny_config, num_classes=5, image_size=16))
    images = random_images(3, 16)
    serve = serving.cpu_serving_function(model, batch_size)
    assert not ops_of(serve) & VARIABLE_OPS
    assert {"MatMul", "Const"} <= ops_of(serve)
    logits = serve(tf.constant(images))
    assert logits.dtype == tf.float32
    assert_close_to_reference(logits, mixer_forward(official_params(model), images / 127.5 - 1.0))


def test_frozen_serving_keeps_the_bfloat16_policy(tiny_config):
    keras.mixed_precision.set_global_policy("mixed_bfloat16")
    try:
        model = randomize(MlpMixer(**tiny_config, num_classes=3, image_size=16))
        serve = serving.cpu_serving_function(model)
    finally:
        keras.mixed_precision.set_global_policy("float32")
    images = random_images(2, 16)
    logits = serve(tf.constant(images)).numpy()
    expected = mixer_forward(official_params(model), images / 127.5 - 1.0)
    # bfloat16 keeps 8 bits of mantissa: the float32 NumPy logits to a few percent, and not
    # to float32's precision (the policy is not lost on freezing).
    error = np.abs(logits - expected).max()
    assert 1e-5 * np.abs(expected).max() < error < 0.05 * np.abs(expected).max()


def test_frozen_serving_of_an_exported_saved_model(tiny_config, tmp_path):
    model = randomize(MlpMixer(**tiny_config, num_classes=4, image_size=16))
    expected_params = official_params(model)
    to_saved_model(model, str(tmp_path / "saved_model"))
    serve = serving.cpu_serving_function(str(tmp_path / "saved_model"), batch_size=2)
    assert not ops_of(serve) & VARIABLE_OPS
    images = random_images(2, 16)
    assert_close_to_reference(serve(tf.constant(images)),
                              mixer_forward(expected_params, images / 127.5 - 1.0))


def test_the_frozen_function_saves_as_a_saved_model_of_constants(tiny_config, tmp_path):
    # What a TensorFlow Serving user deploys (docs/export.md): the weights in the graph.
    model = randomize(MlpMixer(**tiny_config, num_classes=4, image_size=16))
    tf.saved_model.save(tf.Module(), str(tmp_path / "frozen"),
                        signatures=serving.cpu_serving_function(model))
    signature = tf.saved_model.load(str(tmp_path / "frozen")).signatures["serving_default"]
    assert not ops_of(signature) & VARIABLE_OPS
    images = random_images(2, 16)
    (logits,) = signature(images=tf.constant(images)).values()
    assert_close_to_reference(logits, mixer_forward(official_params(model), images / 127.5 - 1.0))


def test_weights_over_what_a_graph_holds_are_refused_in_one_line(tiny_config, monkeypatch):
    model = MlpMixer(**tiny_config, num_classes=4, image_size=16)
    monkeypatch.setattr(serving, "MAX_CONSTANT_BYTES", 1000)
    with pytest.raises(ValueError, match=r"more than one TensorFlow graph holds as constants"):
        serving.cpu_serving_function(model)
