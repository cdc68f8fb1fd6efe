"""What a finished run leaves: model.keras and metadata.json (a preset folder), metrics.json on
the whole test split, the curves."""

import io

import keras
import numpy as np

from keras_mixer import MlpMixer, storage
from training import data as data_lib
from training import run_dir as run_dir_lib


def float32_copy(model):
    """The trained model rebuilt under the float32 policy (same weights): what export takes."""
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy("float32")
    try:
        copy = MlpMixer(**model.mixer_config())
        copy.set_weights([np.asarray(w) for w in model.get_weights()])
    finally:
        keras.config.set_dtype_policy(previous)
    return copy


def finish(model, config, info, source, run_dir, history):
    """Writes model.keras and metadata.json, metrics.json (from the saved file, every test
    example) and the training curves; returns the metrics."""
    # model.keras and metadata.json: the run directory is a preset folder (MlpMixer.from_preset).
    names = info["class_names"] if len(info["class_names"]) == info["num_classes"] else None
    float32_copy(model).save_to_preset(run_dir, class_names=names)
    model_path = run_dir_lib.path(run_dir, run_dir_lib.MODEL)
    # Evaluate the saved file itself, outside any strategy, on every test example.
    saved = keras.models.load_model(model_path)
    saved.compile(
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=[keras.metrics.SparseCategoricalAccuracy(name="accuracy")],
    )
    test = data_lib.make_dataset(
        config, config["test_split"], training=False, batch_size=256, source=source
    )
    test_loss, test_accuracy = saved.evaluate(test, verbose=0)
    metrics = {
        "test_accuracy": float(test_accuracy),
        "test_loss": float(test_loss),
        "test_examples": info["test_examples"],
        "epochs": config["epochs"],
        "steps": int(model.optimizer.iterations.numpy()),
        "history": history,
    }
    storage.write_json(run_dir_lib.path(run_dir, run_dir_lib.METRICS), metrics)
    plot_curves(history, run_dir_lib.path(run_dir, run_dir_lib.CURVES))
    print(
        f"test_accuracy={test_accuracy:.4f} test_loss={test_loss:.4f} "
        f"steps={metrics['steps']} -> {run_dir}",
        flush=True,
    )
    return metrics


def plot_curves(history, png_path):
    """Loss and accuracy per epoch, train and (where validated) test, as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    epochs = [row["epoch"] for row in history]
    figure, axes = plt.subplots(1, 2, figsize=(10, 4))
    for axis, name in zip(axes, ("loss", "accuracy")):
        for key, label in ((name, "train"), (f"val_{name}", "test")):
            if epochs and all(key in row for row in history):
                axis.plot(epochs, [row[key] for row in history], label=label)
        axis.set_xlabel("epoch")
        axis.set_title(name)
        if axis.get_legend_handles_labels()[0]:
            axis.legend()
    figure.tight_layout()
    png = io.BytesIO()
    try:
        figure.savefig(png, format="png", dpi=100)
    finally:
        plt.close(figure)
    storage.write_atomically(png_path, png.getvalue())
