"""export/: every format of a Mixer trained here on the digits, run in LiteRT, held to Keras.

One tiny Mixer (tests/helpers.py TINY, 8x8 digits, patch 4) is trained once per module
through training.data.make_dataset and exported once to every default format; the tests
read that report and the files. Bounds are export/formats.py's, stated there per format;
accuracy is on the digits test split (364 images, so 1 point is ~3.6 images). The 'before'
of the integer-friendly graph is the benchmark's row (benchmarks/tflite_latency.py).
"""

import json
import logging
import os
import re
import signal
import sys
import zipfile

import keras
import numpy as np
import pytest
import tensorflow as tf
from helpers import IN_PROCESS, TINY, litert_logits, program, run_bounded

import keras_mixer
from export import convert as convert_command
from export import evaluate, graph, inputs, pipeline
from export import formats as export_formats
from export import predict as predict_command
from export.pipeline import AccuracyBudgetError, convert, to_tflite
from export.settings import ExportSettings
from keras_mixer import MlpMixer, file_system, gelu_tanh, storage

RECIPE_FORMATS = ["weight_only_int8", "dynamic_int4_blockwise", "int16x8"]
FORMATS = ["saved_model", "fp32", "fp16", "dynamic_int8", "int8", "qat_int8", *RECIPE_FORMATS]
TFLITE_FORMATS = FORMATS[1:]
NUM_LAYER_NORMS = 2 * TINY["num_blocks"] + 1
BASELINE = "int8_keras_graph"
# absl's native log prefix (I0000 00:00:...), as training/console.py drops it.
NATIVE_LOG_LINE = re.compile(r"^[IWE]\d{4} ", re.MULTILINE)
XNNPACK_LINE = "INFO: Created TensorFlow Lite XNNPACK delegate"


def _split(run_dir, split):
    """`(images, labels)` of one split of the run's data, through training's pipeline."""
    from training import data
    from training import run_dir as run_dir_lib

    dataset = data.make_dataset(run_dir_lib.read_config(run_dir), split, training=False,
                                batch_size=256)
    images, labels = zip(*((x.numpy(), y.numpy()) for x, y in dataset))
    return np.concatenate(images), np.concatenate(labels)


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory, data_dir):
    """A training run directory (model.keras + config.json) of a tiny Mixer on the digits."""
    directory = tmp_path_factory.mktemp("run")
    config = dict(dataset="sklearn_digits", data_dir=data_dir, image_size=8, num_channels=1,
                  num_classes=10, batch_size=64, seed=0, train_split="train", test_split="test")
    (directory / "config.json").write_text(json.dumps(config))
    images, labels = _split(directory, "train")
    keras.utils.set_random_seed(0)
    model = MlpMixer(**TINY, num_classes=10, image_size=8, num_channels=1)
    model.compile(keras.optimizers.Adam(3e-3),
                  keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    model.fit(images, labels, epochs=30, batch_size=64, verbose=0)
    model.save(directory / "model.keras")
    return directory


@pytest.fixture(scope="module")
def exported(run_dir, tmp_path_factory):
    """`(out_dir, report)` of one export of `run_dir` to every default format and the
    LiteRT Quantizer recipe formats."""
    out_dir = tmp_path_factory.mktemp("export")
    keras.utils.set_random_seed(0)
    report = convert(str(run_dir), str(out_dir), FORMATS, fine_tune_steps=300, latency_runs=20)
    return out_dir, report


@pytest.fixture(scope="module")
def digits_test(run_dir):
    return _split(run_dir, "test")


@pytest.fixture(scope="module")
def baseline(run_dir, digits_test):
    """`(tflite bytes, measurements)` of the benchmark's int8 of the graph as Keras lowers it,
    calibrated and measured as the export's int8 is."""
    from benchmarks import tflite_latency

    model = inputs.load_model(str(run_dir))
    calibration = _split(run_dir, "train")[0][:300]
    tflite = tflite_latency.convert_baseline(model, BASELINE, calibration)
    images, labels = digits_test
    measured = evaluate.evaluate_tflite(tflite, images, labels, model.predict(images, verbose=0),
                                        latency_runs=2)
    return tflite, measured


def test_every_format_is_written_with_report_and_labels(exported):
    out_dir, report = exported
    for name in TFLITE_FORMATS:
        assert (out_dir / f"{name}.tflite").stat().st_size > 0
    assert (out_dir / "saved_model" / "saved_model.pb").is_file()
    assert json.loads((out_dir / "report.json").read_text())["formats"].keys() == set(FORMATS)
    markdown = (out_dir / "report.md").read_text()
    assert all(f"| {name} |" in markdown for name in FORMATS)
    assert (out_dir / "report.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert (out_dir / "labels.txt").read_text().split() == [str(d) for d in range(10)]
    assert json.loads((out_dir / "preprocessing.json").read_text()) == {"crop": "resize"}
    assert not [p for p in os.listdir(out_dir) if p.startswith(".")]  # no temporary leftovers
    for name in TFLITE_FORMATS:
        result = report["formats"][name]
        assert set(result["latency_ms"]) == {"1", "2"}  # reported, never asserted
        assert result["num_examples"] == 364


@pytest.fixture(scope="module")
def keras_test_logits(run_dir, digits_test):
    return np.asarray(inputs.load_model(str(run_dir)).predict(digits_test[0], verbose=0), np.float64)


@pytest.mark.parametrize("name", TFLITE_FORMATS)
def test_litert_model_is_held_to_its_bounds_against_keras(exported, digits_test, keras_test_logits,
                                                          name):
    # Logits computed here, from the file and LiteRT (helpers.litert_logits), not by export.
    out_dir, report = exported
    logits = litert_logits(out_dir / f"{name}.tflite", digits_test[0])
    agreement = np.mean(logits.argmax(-1) == keras_test_logits.argmax(-1))
    result = report["formats"][name]
    assert result["within_bounds"]
    assert result["top1"] == pytest.approx(np.mean(logits.argmax(-1) == digits_test[1]), abs=0.01)
    if result["reference"] != "Keras model":  # fine-tuned first: held to Keras by agreement
        assert agreement >= 0.95
        assert result["agreement_with_keras"] == pytest.approx(agreement, abs=0.01)
        return
    relative = np.abs(logits - keras_test_logits).max() / np.abs(keras_test_logits).max()
    assert relative <= export_formats.FORMATS[name]["max_logit_diff"], (name, relative)
    assert agreement >= export_formats.FORMATS[name]["min_agreement"], (name, agreement)
    assert result["relative_max_logit_diff"] == pytest.approx(relative, rel=0.05, abs=1e-6)


def test_benchmark_baseline_is_held_to_int8_bounds_with_builtin_ops(baseline):
    from benchmarks.tflite_latency import BASELINES

    tflite, result = baseline
    assert result["relative_max_logit_diff"] <= BASELINES[BASELINE]["max_logit_diff"], result
    assert result["agreement"] >= BASELINES[BASELINE]["min_agreement"], result
    ops = evaluate.op_names(tflite)
    assert set(ops) <= evaluate.BUILTIN_OPS
    assert result["op_counts"] == {op: ops.count(op) for op in set(ops)}


def test_float_formats_match_keras_closely(exported):
    formats = exported[1]["formats"]
    assert formats["fp32"]["max_logit_diff"] < 1e-4
    assert formats["fp32"]["agreement"] == 1.0
    assert formats["fp16"]["max_logit_diff"] < 0.1
    assert formats["saved_model"]["max_logit_diff"] < 1e-5
    assert formats["saved_model"]["agreement"] == 1.0


@pytest.mark.parametrize("name", ["int8", "qat_int8", "int16x8"])
def test_integer_models_within_one_point_of_float(exported, name):
    report = exported[1]
    assert report["evaluation"]["keras_top1"] > 0.9  # the model learnt the digits
    assert report["formats"][name]["top1"] >= report["evaluation"]["keras_top1"] - 0.01


def test_qat_at_least_as_accurate_as_ptq(exported):
    qat = exported[1]["formats"]["qat_int8"]
    # Held to the QAT model it came from (bounds test above), and still agreeing with Keras.
    assert qat["reference"] == "fine-tuned model"
    assert qat["agreement_with_keras"] >= 0.95
    comparison = exported[1]["qat_vs_ptq"]
    assert comparison["qat_top1"] >= comparison["ptq_top1"]
    assert comparison["qat_at_least_ptq"]


def test_every_model_uses_builtin_ops_only(exported):
    out_dir, report = exported
    for name in TFLITE_FORMATS:
        ops = evaluate.op_names((out_dir / f"{name}.tflite").read_bytes())
        assert set(ops) <= evaluate.BUILTIN_OPS, name
        assert report["formats"][name]["op_counts"] == {op: ops.count(op) for op in set(ops)}


def test_integer_models_are_integer_end_to_end(exported):
    formats = exported[1]["formats"]
    for name in ["int8", "qat_int8"]:
        assert formats[name]["float_ops"] == [], name
        assert formats[name]["io"]["input"]["dtype"] == "int8"
        assert formats[name]["io"]["output"]["dtype"] == "int8"
        # QAT's graph keeps the stem as a CONV_2D (export.formats).
        assert set(formats[name]["op_counts"]) == {
            "ADD", "FULLY_CONNECTED", "LOGISTIC", "MEAN", "MUL", "RESHAPE", "RSQRT", "SUB",
            "TRANSPOSE", *(["CONV_2D"] if name == "qat_int8" else [])}


def _weight_types(tflite):
    """`{tensor name: (type name, blockwise?)}` of the integer weights, read off the flatbuffer."""
    from ai_edge_litert import schema_py_generated as schema

    type_names = {value: name for name, value in vars(schema.TensorType).items()
                  if isinstance(value, int)}
    graph_ = schema.Model.GetRootAs(tflite).Subgraphs(0)
    found = {}
    for tensor in map(graph_.Tensors, range(graph_.TensorsLength())):
        if type_names[tensor.Type()] in ("INT8", "INT4") and tensor.Buffer() > 0:
            quantization = tensor.Quantization()
            found[tensor.Name().decode()] = (type_names[tensor.Type()], quantization.DetailsType()
                                             == schema.QuantizationDetails.BlockwiseQuantization)
    return found


def test_recipe_formats_quantize_the_float32_graph(exported):
    out_dir, report = exported
    formats = report["formats"]
    fp32_ops = formats["fp32"]["op_counts"]
    # Dense kernels (token and channel mixing, two per block, and the head) and the stem's.
    num_kernels = 4 * TINY["num_blocks"] + 2
    weight_only = formats["weight_only_int8"]
    assert weight_only["op_counts"] == {**fp32_ops, "DEQUANTIZE": num_kernels}
    types = _weight_types((out_dir / "weight_only_int8.tflite").read_bytes())
    assert sorted(types.values()) == [("INT8", False)] * num_kernels
    # int4 in blocks of 32 where a matrix product's input splits into them (only the channel
    # MLP's second Dense, channels_mlp_dim=32), one scale per output elsewhere: the stem's
    # patches of 4 x 4 x 1 pixels too.
    assert formats["dynamic_int4_blockwise"]["op_counts"] == fp32_ops
    types = _weight_types((out_dir / "dynamic_int4_blockwise.tflite").read_bytes())
    num_patches = (8 // TINY["patch_size"]) ** 2
    matmul_inputs = [TINY["patch_size"] ** 2] + [
        num_patches, TINY["tokens_mlp_dim"], TINY["hidden_dim"], TINY["channels_mlp_dim"]
    ] * TINY["num_blocks"] + [TINY["hidden_dim"]]
    assert sorted(types.values()) == sorted(("INT4", size % 32 == 0) for size in matmul_inputs)
    for name in ("weight_only_int8", "dynamic_int4_blockwise"):
        assert formats[name]["delegated_partitions"] == 1, name
        assert formats[name]["size_bytes"] < formats["fp32"]["size_bytes"], name


def test_int16x8_is_integer_end_to_end_outside_xnnpack(exported):
    formats = exported[1]["formats"]
    int16x8 = formats["int16x8"]
    assert int16x8["float_ops"] == []
    assert int16x8["io"]["input"]["dtype"] == int16x8["io"]["output"]["dtype"] == "int16"
    assert int16x8["op_counts"] == formats["int8"]["op_counts"]  # the integer-friendly graph
    assert int16x8["delegated_partitions"] == 0  # XNNPACK has no int16 kernels
    # What the 16-bit activations are for, with int8's weights and calibration images.
    assert int16x8["mean_logit_diff"] < formats["int8"]["mean_logit_diff"]


def test_calibration_images_are_drawn_for_static_activations_only():
    calibrated = {name for name, spec in export_formats.FORMATS.items()
                  if export_formats.calibrates(spec)}
    assert calibrated == {"int8", "qat_int8", "pruned_int8", "clustered_int8", "int16x8"}


def test_static_recipe_without_calibration_images_is_a_clear_error(exported):
    from export import quantizer

    fp32 = (exported[0] / "fp32.tflite").read_bytes()
    with pytest.raises(ValueError, match="static_wi8_ai16 quantizes activations statically"):
        quantizer.quantize(fp32, "static_wi8_ai16", None)


# The calibrating interpreter keeps every tensor on purpose (export.quantizer.quantize).
@pytest.mark.filterwarnings("ignore:.*experimental_preserve_all_tensors")
def test_recipe_calibration_takes_each_tensor_over_every_image(exported, digits_test):
    # The converter's rule, min and max over all images (export.quantizer._calibrate), read
    # on the input tensor against NumPy: a moving average of the images' ranges would pull
    # in the one image that reaches further than the rest.
    from export import quantizer

    fp32 = (exported[0] / "fp32.tflite").read_bytes()
    images = digits_test[0][:20].copy()
    images[7] = images[7] * 3.0 + 1.0
    recipe = quantizer.fit_blocks(quantizer.get_recipe("static_wi8_ai16"), fp32)
    ranges = quantizer._calibrate(recipe, fp32, images)
    found = ranges[evaluate.interpreter(fp32).get_input_details()[0]["name"]]
    assert (float(np.min(found["min"])), float(np.max(found["max"]))) == (
        float(images.min()), float(images.max()))


def test_recipe_refuses_a_float32_source_that_is_not_the_keras_model(
        exported, run_dir, digits_test, tmp_path, monkeypatch):
    int8 = (exported[0] / "int8.tflite").read_bytes()
    monkeypatch.setattr(pipeline, "saved_model_to_tflite", lambda *args, **kwargs: int8)
    with pytest.raises(RuntimeError, match="float32 .tflite that weight_only_int8 quantizes"):
        convert(str(run_dir), str(tmp_path), ["weight_only_int8"],
                eval_data=(digits_test[0][:40], digits_test[1][:40]))
    assert not list(tmp_path.glob("*.tflite"))


def test_keras_graph_keeps_a_float_neg_per_layer_norm(baseline):
    # The benchmark's before: the graph as Keras lowers it, in full int8.
    assert baseline[1]["float_ops"] == ["DEQUANTIZE", "NEG", "QUANTIZE"] * NUM_LAYER_NORMS


def test_integer_friendly_graph_cuts_xnnpack_partitions(exported, baseline):
    formats = exported[1]["formats"]
    assert formats["fp32"]["delegated_partitions"] == 1
    # Only int8 RSQRT (one per LayerNorm) stays outside XNNPACK: LayerNorms + 1 partitions.
    assert formats["int8"]["delegated_partitions"] == NUM_LAYER_NORMS + 1
    before, after = baseline[1], formats["int8"]
    assert before["delegated_partitions"] > after["delegated_partitions"]


def test_integer_friendly_graph_computes_the_same_function(run_dir, digits_test):
    model = inputs.load_model(str(run_dir))
    images = digits_test[0][:128]
    rebuilt = graph.rebuild(model, graph.integer_friendly(keras.layers))
    np.testing.assert_allclose(rebuilt.predict(images, verbose=0), model.predict(images, verbose=0),
                               atol=1e-5)
    x = tf.linspace(-8.0, 8.0, 1001)
    np.testing.assert_allclose(graph.gelu_sigmoid(x).numpy(), gelu_tanh(x).numpy(), atol=1e-6)


def test_stem_as_one_matrix_product_is_the_convolution():
    # A stem over a grid of 2 x 3 patches of 3 channels, against the patches cut in NumPy.
    keras.utils.set_random_seed(3)
    model = MlpMixer(**TINY, num_classes=5, image_size=(8, 12), num_channels=3)
    images = np.random.default_rng(3).uniform(-1, 1, (4, 8, 12, 3)).astype("float32")
    rebuilt = graph.rebuild(model, graph.patches_as_matmul(keras.layers))
    stem = keras.Model(rebuilt.inputs, rebuilt.get_layer("stem").output)
    kernel, bias = model.get_layer("stem").get_weights()
    pixels = keras.Model(model.inputs, model.get_layer("stem").input).predict(images, verbose=0)
    size = TINY["patch_size"]
    patches = pixels.reshape(4, 2, size, 3, size, 3).transpose(0, 1, 3, 2, 4, 5)
    expected = patches.reshape(4, 2, 3, -1) @ kernel.reshape(-1, kernel.shape[-1]) + bias
    np.testing.assert_allclose(stem.predict(images, verbose=0), expected, atol=1e-5)
    np.testing.assert_allclose(rebuilt.predict(images, verbose=0), model.predict(images, verbose=0),
                               atol=1e-5)


def test_every_tflite_but_qat_has_the_stem_as_a_matrix_product(exported):
    # The stem, four Dense layers per block and the head: FULLY_CONNECTED each. QAT's graph,
    # fine-tuned by tfmot's Conv2D quantization, keeps the stem as a CONV_2D.
    matmuls = 2 + 4 * TINY["num_blocks"]
    for name in TFLITE_FORMATS:
        counts = exported[1]["formats"][name]["op_counts"]
        expected = ({"CONV_2D": 1, "FULLY_CONNECTED": matmuls - 1} if name == "qat_int8"
                    else {"CONV_2D": 0, "FULLY_CONNECTED": matmuls})
        assert {op: counts.get(op, 0) for op in expected} == expected, name


def test_tf_keras_twin_equals_keras_model(run_dir, digits_test):
    import tf_keras

    from export import optimize

    model = inputs.load_model(str(run_dir))
    images = digits_test[0][:128]
    for integer_friendly in (False, True):
        twin = optimize.twin(model, images, integer_friendly=integer_friendly)
        assert isinstance(twin, tf_keras.Model)
        np.testing.assert_allclose(twin(images).numpy(), model.predict(images, verbose=0),
                                   atol=1e-5)


def test_qat_starts_from_calibrated_ranges(run_dir, digits_test):
    from export import optimize

    model = inputs.load_model(str(run_dir))
    images = digits_test[0][:256]
    dataset = tf.data.Dataset.from_tensor_slices(digits_test).batch(64)
    qat_model = optimize.quantization_aware_training(model, dataset, steps=0,
                                                     calibration_images=images)
    # tfmot would start at [-6, 6]; the first LayerNorm's range is its output's on the images.
    layer_norm = model.get_layer("mixer_block_0_layer_norm_0")
    outputs = keras.Model(model.input, layer_norm.output)(images).numpy()
    wrapper = qat_model.get_layer("quant_mixer_block_0_layer_norm_0")
    ranges = {v.name.split("/")[-1].split(":")[0]: v.numpy() for v in wrapper.weights}
    np.testing.assert_allclose([ranges["output_min"], ranges["output_max"]],
                               [min(outputs.min(), 0), max(outputs.max(), 0)], rtol=0.05)


def test_twin_that_drifts_from_the_model_is_refused(run_dir, digits_test, monkeypatch):
    from export import optimize

    model = inputs.load_model(str(run_dir))
    rebuild = graph.rebuild

    def drifted(source, layers):
        twin = rebuild(source, layers)
        twin.set_weights([w * 1.1 for w in twin.get_weights()])
        return twin

    monkeypatch.setattr(graph, "rebuild", drifted)
    with pytest.raises(RuntimeError, match="twin's logits differ"):
        optimize.twin(model, digits_test[0][:32])


def test_uint8_io_takes_raw_camera_pixels(run_dir, digits_test):
    model = inputs.load_model(str(run_dir))
    images, labels = digits_test
    tflite = to_tflite(graph.rebuild(model, graph.integer_friendly(keras.layers)), "int8", images,
                       io_dtype="uint8")
    io = evaluate.io_details(tflite)
    layout = (io["input"]["dtype"], io["input"]["scale"], io["input"]["zero_point"])
    assert layout == ("uint8", 1.0, 0)
    assert io["output"]["dtype"] == "uint8"
    assert evaluate.float_ops(tflite) == []
    logits = evaluate.predict_logits(tflite, images)
    assert np.mean(logits.argmax(-1) == labels) >= np.mean(
        model.predict(images, verbose=0).argmax(-1) == labels) - 0.01


def _png(path, image):
    from PIL import Image

    Image.fromarray(image[..., 0].astype(np.uint8), mode="L").save(path)
    return str(path)


def test_predict_reads_images_and_labels_file(exported, digits_test, tmp_path, capsys):
    from export import classify

    out_dir, _ = exported
    images, labels = digits_test
    paths = [_png(tmp_path / f"digit_{index}.png", images[index]) for index in range(20)]
    for name in ["fp32", "int8"]:
        results = classify.predict(str(out_dir / f"{name}.tflite"), paths, top=3)
        assert all(len(top) == 3 and top[0][1] >= top[1][1] for top in results)
        predicted = [top[0][0] for top in results]
        assert np.mean([p == str(label) for p, label in zip(predicted, labels[:20])]) >= 0.9
    code = predict_command.main([str(out_dir / "int8.tflite"), paths[0], "--top", "1", *IN_PROCESS])
    assert code == 0
    assert capsys.readouterr().out.startswith(f"{paths[0]}: {labels[0]} ")


def test_labels_come_from_the_run_class_list(run_dir, digits_test, tmp_path):
    from export import classify

    run = tmp_path / "run"
    run.mkdir()
    for name in ("model.keras", "config.json"):
        (run / name).write_bytes((run_dir / name).read_bytes())
    names = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]
    (run / "run_info.json").write_text(json.dumps({"class_names": names}))
    convert(str(run), str(tmp_path / "out"), ["fp32"], eval_samples=50, latency_runs=2)
    assert (tmp_path / "out" / "labels.txt").read_text().split() == names
    image = digits_test[0][:1]
    [[(top, _)]] = classify.predict(str(tmp_path / "out" / "fp32.tflite"),
                                   [_png(tmp_path / "digit.png", image[0])], top=1)
    model = inputs.load_model(str(run_dir))
    assert top == names[int(model.predict(image, verbose=0).argmax())]
    (run / "run_info.json").write_text(json.dumps({"class_names": names[:9]}))
    with pytest.raises(ValueError, match="names 9 classes .* has 10 outputs"):
        convert(str(run), str(tmp_path / "out9"), ["fp32"], eval_samples=50)


# Every kind of file Pillow and TensorFlow both read, as (file name, writer, what it holds):
# its pixels as NumPy computes them from the values written (training/images.py's convention:
# stored pixels, alpha dropped, 16-bit v as v * 255 / 65535), and whether the file is gray.
# Lossless except the JPEGs: uniform 8x8 blocks, quality 100, decoded within 2 levels.
HEIGHT, WIDTH = 8, 16
EXIF_ROTATE_90 = 6  # EXIF Orientation "rotate 90 clockwise to view"


def _write_every_kind(folder):
    from PIL import Image

    rng = np.random.default_rng(0)
    shape = (HEIGHT, WIDTH)
    values = rng.integers(0, 256, (*shape, 4), np.uint8)
    sixteen = rng.integers(0, 65536, (*shape, 3), np.uint16)
    bits = rng.integers(0, 2, shape).astype(bool)
    palette = rng.integers(0, 256, (4, 3), np.uint8)
    paletted = Image.fromarray(rng.integers(0, 4, shape, np.uint8), "P")
    paletted.putpalette(palette.reshape(-1).tolist())
    blocks = np.repeat(np.array([[40, 210]], np.uint8), 8, axis=1).repeat(HEIGHT, axis=0)

    def exif_rotated(path):
        exif = Image.Exif()
        exif[0x0112] = EXIF_ROTATE_90
        Image.fromarray(blocks).convert("RGB").save(path, quality=100, exif=exif)
        with Image.open(path) as image:  # the tag a viewer turns the photo upright by
            assert image.getexif()[0x0112] == EXIF_ROTATE_90

    rgb = values[..., :3]
    kinds = [  # (file, a Pillow image or a writer, its pixels, gray)
        ("1.png", Image.fromarray(bits), 255.0 * bits, True),
        ("L.png", Image.fromarray(values[..., 0]), values[..., 0], True),
        ("LA.png", Image.fromarray(values[..., :2], "LA"), values[..., 0], True),
        ("P.png", paletted, palette[np.asarray(paletted)], False),
        ("P.gif", paletted, palette[np.asarray(paletted)], False),
        ("P.bmp", paletted, palette[np.asarray(paletted)], False),
        ("L.bmp", Image.fromarray(values[..., 0]), values[..., 0], True),
        ("RGB.png", Image.fromarray(rgb), rgb, False),
        ("RGB.webp", Image.fromarray(rgb), rgb, False),
        ("RGB.bmp", Image.fromarray(rgb), rgb, False),
        ("RGBA.png", Image.fromarray(values, "RGBA"), rgb, False),
        ("CMYK.jpg", Image.new("CMYK", shape[::-1], (30, 200, 90, 0)),
         np.full((*shape, 3), [225, 55, 165]), False),
        ("I16.png", Image.fromarray(sixteen[..., 0]), sixteen[..., 0] / 65535 * 255, True),
        ("RGB16.png", lambda path: tf.io.write_file(path, tf.io.encode_png(sixteen)),
         sixteen / 65535 * 255, False),
        ("exif.jpg", exif_rotated, blocks, True),
    ]
    expected = {}
    for name, image, pixels, gray in kinds:
        class_dir = folder / name.replace(".", "_")
        class_dir.mkdir(parents=True)
        path = str(class_dir / name)
        if callable(image):
            image(path)
        else:  # each format takes its own option and ignores the other
            image.save(path, quality=100, lossless=True)
        pixels = np.asarray(pixels, np.float64)
        expected[path] = (pixels[..., None] if gray else pixels), name
    return expected


@pytest.mark.parametrize("num_channels", [1, 3])
def test_predict_reads_every_kind_of_image_file_as_training_does(tmp_path, num_channels):
    # Before: predict decoded with Pillow, training with TensorFlow: a 16-bit gray PNG reached
    # the model as pure white (255) in predict and as its high byte in training.
    from export import classify
    from training import data, recipes

    expected = _write_every_kind(tmp_path / "train")
    config = recipes.get_recipe("digits", dataset=str(tmp_path), image_size=[HEIGHT, WIDTH],
                                num_channels=num_channels)
    source = data.open_source(config)
    paths = source.folder.split("train").paths
    assert sorted(paths) == sorted(expected) and source.skipped_files == []
    pipeline = data.make_dataset(config, "train", training=False, source=source, batch_size=1)
    for path, (pixels, _) in zip(paths, pipeline):
        want, name = expected[path]
        if want.shape[-1] != num_channels:  # NumPy's own gray <-> RGB, ITU-R 601 weights
            want = (np.repeat(want, 3, -1) if num_channels == 3
                    else want @ np.array([[0.2989], [0.5870], [0.1140]]))
        atol = 2.0 if name.endswith(".jpg") else 1e-3
        np.testing.assert_array_equal(
            classify.load_image(path, HEIGHT, WIDTH, num_channels), pixels[0], err_msg=name)
        np.testing.assert_allclose(pixels[0], want, atol=atol, err_msg=name)


def test_predict_crops_as_the_run_evaluated(tmp_path):
    # A run evaluated on centre crops: predict reads the crop from preprocessing.json beside
    # the model, as export.convert writes it, and feeds the pixels the test split was fed.
    from PIL import Image

    from export import classify
    from training import data, recipes

    photo = tmp_path / "photos" / "test" / "a" / "wide.png"
    photo.parent.mkdir(parents=True)
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (12, 30, 3), np.uint8)).save(photo)
    config = recipes.get_recipe("digits", dataset=str(tmp_path / "photos"), train_split="test",
                                image_size=[HEIGHT, WIDTH], num_channels=3, eval_crop="center_crop")
    (pixels, _), = data.make_dataset(config, "test", training=False, batch_size=1)
    model_dir = tmp_path / "export"
    model_dir.mkdir()
    (model_dir / classify.PREPROCESSING_FILE).write_text(json.dumps({"crop": "center_crop"}))
    crop = classify.load_crop(model_dir / "fp32.tflite")
    fed = classify.load_image(str(photo), HEIGHT, WIDTH, 3, crop)
    np.testing.assert_array_equal(fed, pixels[0])
    whole = classify.load_image(str(photo), HEIGHT, WIDTH, 3)
    assert np.abs(whole - pixels[0]).max() > 10  # the crop matters for this image


@pytest.mark.parametrize("content", ['{"crop": "centre"}', '{"crop": ', '["center_crop"]'])
def test_a_damaged_preprocessing_file_is_named_not_guessed(tmp_path, content):
    # An unknown crop, a cut-off file, JSON of another shape: predict must not fall back to a
    # resize the model was never evaluated with.
    from export import classify

    (tmp_path / classify.PREPROCESSING_FILE).write_text(content)
    with pytest.raises(ValueError, match="preprocessing.json.*'resize', 'center_crop'"):
        classify.load_crop(tmp_path / "fp32.tflite")


@pytest.mark.slow
def test_cli_writes_the_export(run_dir, tmp_path, capsys):
    out_dir = tmp_path / "cli"
    code = convert_command.main([str(run_dir), "--out", str(out_dir), "--formats", "fp32",
                             "--eval-samples", "50", *IN_PROCESS])
    assert code == 0
    assert (out_dir / "fp32.tflite").is_file() and (out_dir / "report.json").is_file()
    output = capsys.readouterr().out
    assert "| fp32 |" in output and "Wrote fp32.tflite, labels.txt" in output
    assert convert_command.main([str(tmp_path / "missing"), "--out", str(out_dir), *IN_PROCESS]) == 2
    assert "No model at" in capsys.readouterr().err
    budget = ["--formats", "dynamic_int8", "--eval-samples", "50", "--max-accuracy-drop", "-1"]
    assert convert_command.main([str(run_dir), "--out", str(tmp_path / "budget"), *budget,
                             *IN_PROCESS]) == 1
    captured = capsys.readouterr()
    assert "FAILED: Quantized models outside the accuracy budget" in captured.err
    assert "| dynamic_int8 |" in captured.out  # the report, printed all the same


def test_settings_are_one_dataclass_checked_before_anything_is_written(run_dir, tmp_path):
    with pytest.raises(ValueError, match="io_dtype='int16' must be 'int8' or 'uint8'"):
        convert(str(run_dir), str(tmp_path), ["int8"], io_dtype="int16")
    with pytest.raises(ValueError, match="target_sparsity=1.5 must be a fraction in"):
        ExportSettings(target_sparsity=1.5)
    assert not list(tmp_path.iterdir())
    report = convert(str(run_dir), str(tmp_path), ["fp32"],
                     settings=ExportSettings(eval_samples=30, latency_runs=5), latency_runs=2)
    assert report["settings"]["eval_samples"] == 30 and report["settings"]["latency_runs"] == 2
    assert report["evaluation"]["num_examples"] == 30


def test_accuracy_budget_fails_loudly_after_writing_the_report(run_dir, tmp_path):
    with pytest.raises(AccuracyBudgetError, match="dynamic_int8: top-1"):
        convert(str(run_dir), str(tmp_path), ["dynamic_int8"], max_accuracy_drop=-1.0,
                eval_samples=50, latency_runs=2)
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["accuracy_budget_failures"]


def test_remote_source_and_output_go_through_storage(run_dir, tmp_path, monkeypatch):
    # ram://, TensorFlow's in-memory filesystem, stands in for gs:// (in this process only).
    monkeypatch.chdir(tmp_path)
    source, out = "ram://runs/digits", "ram://exports/x"
    tf.io.gfile.makedirs(source)
    for name in ("model.keras", "config.json"):
        tf.io.gfile.copy(str(run_dir / name), f"{source}/{name}", overwrite=True)
    report = convert(source, out, ["saved_model", "fp32"], eval_samples=50, latency_runs=2)
    assert sorted(name.rstrip("/") for name in tf.io.gfile.listdir(out)) == [
        "fp32.tflite", "labels.txt", "preprocessing.json", "report.json", "report.md", "report.png",
        "saved_model"]
    assert storage.exists(f"{out}/saved_model/saved_model.pb")
    assert report["formats"]["saved_model"]["agreement"] == 1.0
    assert storage.read_json(f"{out}/report.json")["formats"].keys() == {"saved_model", "fp32"}
    assert storage.read_bytes(f"{out}/report.png")[:8] == b"\x89PNG\r\n\x1a\n"
    assert storage.read_text(f"{out}/labels.txt").split() == [str(d) for d in range(10)]
    evaluate.check_builtin_ops(storage.read_bytes(f"{out}/fp32.tflite"))
    assert list(tmp_path.iterdir()) == []  # nothing was written under the working directory


# ----------------------------------------------------------------------------- kills, logs


@pytest.fixture(scope="module")
def killed_then_rerun(run_dir, tmp_path_factory):
    """An export SIGKILLed mid-conversion, another mid-write, then the same command rerun:
    `(out, temp folder, what each kill left, the rerun's exit code and output)`."""
    root = tmp_path_factory.mktemp("killed")
    out, temp = root / "out", root / "tmp"
    temp.mkdir()
    arguments = [str(run_dir), "--out", str(out), "--formats", "fp32", "fp16",
                 "--eval-samples", "50"]
    # TMPDIR: the scratch folders land where the test sees them. TF_CPP_MIN_LOG_LEVEL=0:
    # only the console's filter stands between TensorFlow's native logs and the output.
    env = {"TMPDIR": str(temp), "TF_CPP_MIN_LOG_LEVEL": "0"}
    left = {}
    for point in ("converter", "rename"):
        code, output = run_bounded(program("export_killed", point, *arguments), env=env)
        assert code == -signal.SIGKILL, output
        left[point] = {"out": sorted(os.listdir(out)), "temp": sorted(os.listdir(temp))}
    code, output = run_bounded([sys.executable, "-m", "export.convert", *arguments], env=env)
    return out, temp, left, code, output


def test_killed_export_leaves_nothing_behind_once_rerun(killed_then_rerun):
    out, temp, left, code, output = killed_then_rerun
    # What the kills left: a scratch SavedModel folder, a complete .tflite under its partial name.
    assert [name for name in left["converter"]["temp"]
            if name.startswith(storage.SCRATCH_PREFIX)], left
    assert [name for name in left["rename"]["out"]
            if name.startswith(".partial-") and name.endswith(".fp16.tflite")]
    assert code == 0, output
    assert not [name for name in os.listdir(out) if ".partial-" in name]
    assert not [name for name in os.listdir(temp) if name.startswith(storage.SCRATCH_PREFIX)]
    assert {"fp32.tflite", "fp16.tflite", "labels.txt", "report.json"} <= set(os.listdir(out))


def test_command_lines_are_quiet_unless_verbose(killed_then_rerun, digits_test, tmp_path):
    out, _, _, _, output = killed_then_rerun
    assert "| fp16 |" in output and "Wrote fp32.tflite, fp16.tflite, labels.txt" in output
    assert not NATIVE_LOG_LINE.search(output) and XNNPACK_LINE not in output, output
    image = _png(tmp_path / "digit.png", digits_test[0][0])
    command = [sys.executable, "-m", "export.predict", str(out / "fp32.tflite"), image]
    code, quiet = run_bounded(command, env={"TF_CPP_MIN_LOG_LEVEL": "0"})
    assert code == 0 and f"{image}: " in quiet, quiet
    assert not NATIVE_LOG_LINE.search(quiet) and XNNPACK_LINE not in quiet, quiet
    code, verbose = run_bounded([*command, "--verbose"], env={"TF_CPP_MIN_LOG_LEVEL": "0"})
    assert code == 0 and XNNPACK_LINE in verbose, verbose  # what the quiet run dropped


def test_command_line_shows_each_format_with_its_time(killed_then_rerun):
    output = killed_then_rerun[4]
    for name in ("fp32", "fp16"):
        lines = re.findall(rf"^{name}: written in \d+\.\d s$", output, re.MULTILINE)
        assert len(lines) == 1, output


def test_command_line_modules_load_once_and_nothing_heavy_before_main():
    # The console must be set up before TensorFlow loads, so the command modules and the
    # parsers import nothing heavy; `python -m` runs a command module as __main__, and nothing
    # imports it again under its own name.
    program = (
        "import runpy, sys\n"
        "for name in ('export.convert', 'export.predict'):\n"
        "    sys.argv = [name, '--help']\n"
        "    try:\n"
        "        runpy.run_module(name, run_name='__main__', alter_sys=True)\n"
        "    except SystemExit:\n"
        "        pass\n"
        "import training.train\n"
        "print(sorted({'tensorflow', 'keras', 'ai_edge_litert', 'export.convert', "
        "'export.predict'} & set(sys.modules)))\n")
    code, output = run_bounded([sys.executable, "-c", program], timeout=60)
    assert code == 0 and output.strip().splitlines()[-1] == "[]", output


# ----------------------------------------------------------------------------- long work


@pytest.mark.slow
def test_fine_tuning_shows_its_length_progress_bar_and_time(run_dir, tmp_path, capsys, caplog):
    caplog.set_level(logging.INFO, logger="export")
    report = convert(str(run_dir), str(tmp_path), ["qat_int8"], eval_samples=50, latency_runs=2)
    # Two epochs of the 1,433 training digits in whole batches of 64 (tiny: 4 patches each).
    batches = len(_split(run_dir, "train")[1]) // 64
    steps = min(300, max(10, 2 * batches))
    assert (report["fine_tuning"]["steps"], report["fine_tuning"]["batch_size"]) == (steps, 64)
    assert report["fine_tuning"]["epochs"] == pytest.approx(steps / batches)
    assert f"{steps}/{steps} [==============================]" in capsys.readouterr().out
    lines = [record.getMessage() for record in caplog.records
             if record.levelno == logging.INFO and record.name.startswith("export")]
    assert lines[0].startswith(
        f"qat_int8: fine-tuning for {steps} steps of batch 64: {steps / batches:.3g} epochs ")
    assert re.fullmatch(r"qat_int8: written in \d+\.\d s", lines[1]), lines


@pytest.mark.parametrize("batches_per_epoch, given_steps", [
    (3, None), (22, None), (149, None), (2000, None), (None, None), (2000, 7), (3, 0)])
def test_fine_tuning_steps_follow_the_split_within_floor_and_cap(batches_per_epoch, given_steps):
    fine_tuning = ExportSettings(fine_tune_steps=given_steps).fine_tuning(batches_per_epoch, 16)
    # Two epochs within 10..300 steps, 300 when the split's length is unknown; a given count wins.
    expected = (given_steps if given_steps is not None else 300 if batches_per_epoch is None
                else sorted([10, 2 * batches_per_epoch, 300])[1])
    assert fine_tuning.steps == expected
    assert fine_tuning.arguments() == {"steps": expected}
    assert (f"{expected} steps of batch 16" in str(fine_tuning)
            and ("--fine-tune-steps" in str(fine_tuning)))


@pytest.mark.parametrize("variant, image_size, examples", [
    ("S/16", 224, 10_000), ("B/16", 224, 120), ("S/32", 224, 10_000), ("H/14", 224, 10_000),
    ("S/16", 224, 5)])
def test_fine_tuning_batch_holds_the_patches_per_batch(variant, image_size, examples):
    from export.settings import fine_tune_batch_size
    from keras_mixer import get_variant

    patches = (image_size // get_variant(variant)["patch_size"]) ** 2
    # 16 images of 196 patches (S/16 at 224) per batch, at most 64 images and the split's size.
    expected = min(64, 16 * 196 // patches, examples)
    assert fine_tune_batch_size(patches, examples) == expected


def test_qat_leaves_the_defaults_above_the_size_bound_saying_so(run_dir, tmp_path, monkeypatch,
                                                                 caplog):
    parameters = inputs.load_model(str(run_dir)).count_params()
    monkeypatch.setattr(export_formats, "DEFAULT_MAX_PARAMETERS", {"qat_int8": parameters - 1})
    monkeypatch.setattr(export_formats, "DEFAULT_FORMATS", ("fp32", "qat_int8"))
    report = convert(str(run_dir), str(tmp_path), eval_samples=50, latency_runs=2)
    assert set(report["formats"]) == {"saved_model", "fp32"}
    [notice] = [record.getMessage() for record in caplog.records
                if record.levelno == logging.WARNING and "qat_int8" in record.getMessage()]
    assert notice.startswith(f"qat_int8 left out of the default formats: the model has "
                             f"{parameters:,} parameters, more than its bound of "
                             f"{parameters - 1:,}") and "\n" not in notice
    # At the bound it stays, and asked for by name it runs whatever the size.
    assert "qat_int8" in export_formats.resolve_formats(None, parameters - 1)[0]
    assert "qat_int8" in export_formats.resolve_formats(["qat_int8"], parameters)[0]


# ----------------------------------------------------------------------------- faults


def test_missing_model_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="No model at .*run directory"):
        convert(str(tmp_path / "nothing_here"), str(tmp_path / "out"))


def test_not_a_mixer_is_a_clear_error(tmp_path):
    other = keras.Sequential(
        [keras.Input((8, 8, 1)), keras.layers.Flatten(), keras.layers.Dense(10)])
    other.save(tmp_path / "other.keras")
    with pytest.raises(TypeError, match="not a keras_mixer.MlpMixer"):
        convert(str(tmp_path / "other.keras"), str(tmp_path / "out"))
    with pytest.raises(TypeError, match="not a keras_mixer.MlpMixer"):
        convert(other, str(tmp_path / "out"))


def test_corrupt_keras_file_is_reported_as_corrupt(run_dir, tmp_path, capsys):
    saved = (run_dir / "model.keras").read_bytes()
    files = {"broken.keras": b"not a zip file", "truncated.keras": saved[:len(saved) // 2],
             "empty.keras": b""}
    for name, content in files.items():
        (tmp_path / name).write_bytes(content)
        with pytest.raises(ValueError, match=rf"{name}' is corrupt \(not a zip archive"):
            convert(str(tmp_path / name), str(tmp_path / "out"))
    code = convert_command.main([str(tmp_path / "broken.keras"), "--out", str(tmp_path / "out"),
                             *IN_PROCESS])
    assert code == 2
    error = capsys.readouterr().err
    assert error.startswith(f"error: '{tmp_path / 'broken.keras'}' is corrupt")
    assert error.count("\n") == 1 and "Traceback" not in error


def _with_model_class(source, target, class_name):
    """A copy of the `.keras` file `source` whose model class is recorded as `class_name`."""
    with zipfile.ZipFile(source) as archive, zipfile.ZipFile(target, "w") as copy:
        for item in archive.infolist():
            content = archive.read(item.filename)
            if item.filename == "config.json":
                config = json.loads(content)
                config.update(class_name=class_name, registered_name=f"keras_mixer>{class_name}")
                content = json.dumps(config)
            copy.writestr(item, content)


def test_unknown_model_class_says_to_import_keras_mixer(run_dir, tmp_path):
    _with_model_class(run_dir / "model.keras", tmp_path / "renamed.keras", "MlpMixerRenamed")
    with pytest.raises(ValueError, match="could not locate the model class in .*renamed.keras"
                                         ".*MlpMixerRenamed.*`import keras_mixer` before "
                                         "keras.models.load_model"):
        inputs.load_model(str(tmp_path / "renamed.keras"))


def test_legacy_h5_model_is_named_with_the_way_to_a_keras_file(tmp_path, capsys, monkeypatch):
    model = MlpMixer(**TINY, num_classes=3, image_size=8, num_channels=1)
    h5 = tmp_path / "model.h5"
    model.save(h5)  # Keras 3 still writes the legacy format, with a warning
    code = convert_command.main([str(h5), "--out", str(tmp_path / "out"), *IN_PROCESS])
    error = capsys.readouterr().err
    assert code == 2 and error.count("\n") == 1, error
    assert error.startswith(f"error: '{h5}' is a legacy HDF5 Keras file (.h5), which is not "
                            "supported: save the model as a .keras file, "
                            "model.save('model.keras');")
    assert not (tmp_path / "out").exists()
    # The one-liner the message gives for this file makes a .keras that export takes.
    monkeypatch.chdir(tmp_path)
    eval(re.search(r"keras\.saving\.load_model\(.*\)\.save\('model\.keras'\)", error)[0],
         {"keras": keras, "keras_mixer": keras_mixer})
    images = np.random.default_rng(0).uniform(0, 255, (2, 8, 8, 1)).astype("float32")
    np.testing.assert_array_equal(inputs.load_model(str(tmp_path / "model.keras"))(images),
                                  model(images))
    # predict, given the .h5 in a .tflite's place, says the same.
    assert predict_command.main([str(h5), str(tmp_path / "any.png"), *IN_PROCESS]) == 2
    error = capsys.readouterr().err
    assert error.startswith(f"error: '{h5}' is an HDF5 file (a legacy Keras .h5 model?), not a "
                            ".tflite: save the model as a .keras (model.save('model.keras')) and "
                            "convert that (python -m export.convert"), error


def test_predict_says_in_one_line_what_is_wrong(exported, run_dir, digits_test, tmp_path,
                                                capsys):
    model = exported[0] / "fp32.tflite"
    image = _png(tmp_path / "digit.png", digits_test[0][0])
    (tmp_path / "notes.png").write_text("not an image")
    (tmp_path / "empty.tflite").write_bytes(b"")
    (tmp_path / "truncated.tflite").write_bytes(model.read_bytes()[:model.stat().st_size // 2])
    cases = [
        (model, tmp_path / "notes.png", "notes.png", "is not an image TensorFlow can decode"),
        (tmp_path / "empty.tflite", image, "empty.tflite", r"is empty \(0 bytes\): expected a "),
        (tmp_path / "truncated.tflite", image, "truncated.tflite",
         r"is not a LiteRT model .*truncated.*: expected a \.tflite file"),
        (run_dir / "model.keras", image, "model.keras", r"is a zip archive \(a Keras \.keras"),
    ]
    for model_path, image_path, named, message in cases:
        assert predict_command.main([str(model_path), str(image_path), *IN_PROCESS]) == 2
        error = capsys.readouterr().err
        assert error.startswith("error: ") and error.count("\n") == 1, error
        assert named in error and re.search(message, error), error


@pytest.mark.parametrize("images, message", [
    (np.zeros((0, 8, 8, 1), np.float32), "empty"),
    (np.zeros((200, 16, 16, 1), np.float32), r"shape \(N, 8, 8, 1\).*got shape \(200, 16, 16, 1\)"),
    (np.zeros((10, 8, 8, 1), np.float32), "has 10 images.*at least 100"),
])
def test_bad_representative_data_is_a_clear_error(run_dir, digits_test, tmp_path, images, message):
    with pytest.raises(ValueError, match=message):
        convert(str(run_dir), str(tmp_path), ["int8"], representative_data=images,
                eval_data=(digits_test[0][:20], digits_test[1][:20]))
    assert not list(tmp_path.glob("*.tflite"))


def test_fine_tuned_formats_without_tfmot_are_a_clear_error(run_dir, tmp_path, monkeypatch):
    monkeypatch.setattr(export_formats, "tfmot_available", lambda: False)
    with pytest.raises(ImportError, match="qat_int8 need tensorflow-model-optimization"):
        convert(str(run_dir), str(tmp_path), ["fp32", "qat_int8"])
    assert not list(tmp_path.iterdir())


def test_unwritable_output_is_a_clear_error(run_dir, tmp_path):
    (tmp_path / "a_file").write_text("")
    with pytest.raises(storage.StorageError,
                       match="cannot write to .*a_file/out.*: choose a folder you can write to"):
        convert(str(run_dir), str(tmp_path / "a_file" / "out"), ["fp32"])


def test_flex_ops_are_refused_and_nothing_is_written(run_dir, digits_test, tmp_path, monkeypatch):
    serve = tf.function(lambda x: tf.strings.to_number(tf.strings.as_string(x)))
    converter = tf.lite.TFLiteConverter.from_concrete_functions(
        [serve.get_concrete_function(tf.TensorSpec((1, 8, 8, 1), tf.float32))])
    converter.target_spec.supported_ops = [
        tf.lite.OpsSet.TFLITE_BUILTINS, tf.lite.OpsSet.SELECT_TF_OPS]
    flex = converter.convert()
    with pytest.raises(evaluate.OpsError, match="not TFLite builtins: FlexAsString"):
        evaluate.check_builtin_ops(flex)
    monkeypatch.setattr(pipeline, "saved_model_to_tflite", lambda *args, **kwargs: flex)
    with pytest.raises(evaluate.OpsError):
        convert(str(run_dir), str(tmp_path), ["fp32"],
                eval_data=(digits_test[0][:20], digits_test[1][:20]))
    assert not list(tmp_path.glob("*.tflite")) and not list(tmp_path.glob(".*"))


def test_failed_write_leaves_no_partial_file(run_dir, digits_test, tmp_path, monkeypatch):
    def disk_full(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(file_system._LocalFiles, "rename", staticmethod(disk_full))
    with pytest.raises(OSError, match="disk full"):
        convert(str(run_dir), str(tmp_path), ["fp32"],
                eval_data=(digits_test[0][:20], digits_test[1][:20]))
    assert list(tmp_path.iterdir()) == []


# ----------------------------------------------------------------------------- compression


@pytest.mark.slow
def test_pruning_and_clustering_then_int8(run_dir, exported, tmp_path):
    keras.utils.set_random_seed(0)
    report = convert(str(run_dir), str(tmp_path), ["pruned_int8", "clustered_int8"],
                     fine_tune_steps=300, target_sparsity=0.5,
                     number_of_clusters=16, latency_runs=5)
    pruned, clustered = report["formats"]["pruned_int8"], report["formats"]["clustered_int8"]
    assert pruned["sparsity"] >= 0.45
    assert clustered["max_unique_weights_per_kernel"] <= 16
    int8 = exported[1]["formats"]["int8"]
    for result in (pruned, clustered):
        assert result["float_ops"] == []
        assert result["top1"] >= report["evaluation"]["keras_top1"] - 0.05
        assert result["within_bounds"], result
    # Zeros and shared values compress: the point of both for size-bound apps.
    assert pruned["gzip_size_bytes"] < int8["gzip_size_bytes"]
    assert clustered["gzip_size_bytes"] < int8["gzip_size_bytes"]
