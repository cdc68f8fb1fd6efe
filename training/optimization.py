"""Optimizer, learning-rate schedule, loss and metrics of a run, from its checked config."""

import math

import keras

from training.config import uses_dense_labels


@keras.saving.register_keras_serializable(package="keras_mixer")
class WarmupLinearDecay(keras.optimizers.schedules.LearningRateSchedule):
    """Linear warmup from 0 to `peak`, then linear decay to 0 at `total_steps` (the paper's).

    Keras has warmup only in CosineDecay; PolynomialDecay(power=1) decays but cannot warm up.
    """

    def __init__(self, peak, warmup_steps, total_steps):
        self.peak, self.warmup_steps, self.total_steps = peak, warmup_steps, total_steps

    def __call__(self, step):
        step = keras.ops.cast(step, "float32")
        warmup = step / max(self.warmup_steps, 1)
        decay = (self.total_steps - step) / max(self.total_steps - self.warmup_steps, 1)
        return self.peak * keras.ops.clip(keras.ops.minimum(warmup, decay), 0.0, 1.0)

    def get_config(self):
        return {
            "peak": self.peak,
            "warmup_steps": self.warmup_steps,
            "total_steps": self.total_steps,
        }


@keras.saving.register_keras_serializable(package="keras_mixer")
class WarmupCosineDecay(WarmupLinearDecay):
    """Linear warmup from 0 to `peak`, then cosine decay to 0 at `total_steps`: the values of
    keras.optimizers.schedules.CosineDecay(0.0, total_steps - warmup_steps, warmup_target=peak,
    warmup_steps=warmup_steps), op for op.

    Not CosineDecay itself: with a warmup it is a tf.cond, and Keras's TensorFlow optimizer asks
    for the learning rate once per variable in its weight decay (keras 3.15), so an AdamW train
    step's trace built a cond, two branch graphs traced in Python, per variable and replica.
    Here both branches are a few scalar ops, computed side by side.
    """

    def __call__(self, step):
        step = keras.ops.cast(step, "float32")
        decay_steps = max(self.total_steps - self.warmup_steps, 1)
        elapsed = keras.ops.minimum(keras.ops.maximum(step - self.warmup_steps, 0.0), decay_steps)
        decayed = self.peak * (0.5 * (1.0 + keras.ops.cos(math.pi * (elapsed / decay_steps))))
        if not self.warmup_steps:
            return decayed
        return keras.ops.where(step < self.warmup_steps, self.peak * (step / self.warmup_steps),
                               decayed)


def make_optimizer(config, total_steps):
    """The optimizer and learning-rate schedule of a checked config (training/config.py)."""
    total, warmup, peak = total_steps, config["warmup_steps"], config["learning_rate"]
    decay = WarmupCosineDecay if config["decay"] == "cosine" else WarmupLinearDecay
    schedule = decay(peak, warmup, total)
    clip = config["clip_global_norm"] or None
    if config["optimizer"] == "adam":
        # Decoupled weight decay (AdamW), as optax's adamw in the official code.
        cls = keras.optimizers.AdamW if config["weight_decay"] else keras.optimizers.Adam
        extra = {"weight_decay": config["weight_decay"]} if config["weight_decay"] else {}
        return cls(
            schedule,
            beta_1=config["beta_1"],
            beta_2=config["beta_2"],
            global_clipnorm=clip,
            **extra,
        )
    return keras.optimizers.SGD(
        schedule,
        momentum=config["momentum"],
        global_clipnorm=clip,
        weight_decay=config["weight_decay"] or None,
    )


def make_loss_and_metrics(config):
    # The loss is computed in float32 also under mixed_bfloat16 (Keras losses default to float32).
    if uses_dense_labels(config):
        loss = keras.losses.CategoricalCrossentropy(
            from_logits=True, label_smoothing=config["label_smoothing"]
        )
        return loss, [keras.metrics.CategoricalAccuracy(name="accuracy")]
    return keras.losses.SparseCategoricalCrossentropy(from_logits=True), [
        keras.metrics.SparseCategoricalAccuracy(name="accuracy")
    ]
