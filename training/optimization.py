"""Optimizer, learning-rate schedule, loss and metrics of a run, from its checked config."""

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


def make_optimizer(config, total_steps):
    """The optimizer and learning-rate schedule of a checked config (training/config.py)."""
    total, warmup, peak = total_steps, config["warmup_steps"], config["learning_rate"]
    if config["decay"] == "cosine":
        schedule = keras.optimizers.schedules.CosineDecay(
            0.0 if warmup else peak,
            decay_steps=max(total - warmup, 1),
            warmup_target=peak if warmup else None,
            warmup_steps=warmup,
        )
    else:
        schedule = WarmupLinearDecay(peak, warmup, total)
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
