"""Training recipes as data: one named dict per experiment, selected with `--recipe NAME`.

A recipe lists what it changes from the defaults of training/config.py:
`training.loop.run(get_recipe("digits", epochs=5))`. The CLI applies its flags and
`--set key=value` on top, and the checked config is written to `RUN_DIR/config.json`, which is
all it takes to repeat the run.

Recipes (command, expected result, cost):

- "digits" (the default): a small Mixer (16 tokens of 4x4 patches, hidden 64, 4 blocks, 0.2 M
  parameters) on scikit-learn's handwritten digits, AdamW with warmup and cosine decay.
      python -m training.train
  Test accuracy (364 images): 97.8% with the default seed 0, 97.5% and 97.3% with seeds 1
  and 2 (measured with the input stream of training/data.py); minutes of training on 2 CPU
  cores, then the export.

- "pretrain": the paper's pre-training (Section 3, Appendix B): Adam (beta1 0.9, beta2 0.999),
  linear warmup of 10k steps then linear decay, weight decay 0.1, gradient clipping at
  global norm 1, batch 4096, 224x224, inception crop and flips.
      python -m training.train --recipe pretrain --variant B/16 --dataset imagenet2012 \\
          --data-dir gs://BUCKET/tfds --tpu local
  A TPU v3-32 class machine and days; on ImageNet-21k the paper's upstream setting.

- "i1k": ImageNet-1k from scratch, the pre-training recipe plus the paper's regularisation
  (Appendix B, Mixer-B/16 on ImageNet-1k): RandAugment (2 layers, magnitude 15), mixup 0.5,
  stochastic depth 0.1, dropout 0, 300 epochs. The paper reports 76.4% top-1 for B/16.
      python -m training.train --recipe i1k --variant B/16 --data-dir gs://BUCKET/tfds --tpu local

- "finetune": the paper's fine-tuning (Appendix C): SGD with momentum 0.9, cosine decay
  after a short warmup, global-norm clipping at 1, no weight decay, batch 512, a new head,
  optionally at a higher resolution (the checkpoint loader adapts token mixing).
      python -m training.train --recipe finetune --init mixer_b16_imagenet21k --dataset cifar10 \\
          --set image_size=224
  Hours on one GPU for cifar10; minutes for the digits with `--dataset sklearn_digits`.

Numerics chosen from the measurements in docs/benchmarks.md (a 2-core CPU with AMX, TF 2.21):
`mixed_bfloat16` trains Mixer-S/16 faster than float32 in graph mode; XLA pays on the tiny
digits model but little on S/16 and not for bfloat16 B/16. Hence the digits recipe trains in
float32 with XLA, the ImageNet-size recipes in mixed_bfloat16 with `jit_compile="auto"`
(XLA on TPU and GPU, where it pays, not on CPU).
"""

import copy

from training import config as config_lib
from training.errors import ConfigError

# The paper's pre-training (Section 3, Appendix B); also the base of the i1k recipe.
PRETRAIN = dict(
    dataset="imagenet2012",
    test_split="validation",
    variant="B/16",
    train_crop="inception_crop",
    eval_crop="center_crop",
    random_flip=True,
    batch_size=4096,
    epochs=300,
    learning_rate=1e-3,
    weight_decay=0.1,
    warmup_steps=10_000,
    decay="linear",
    dtype_policy="mixed_bfloat16",
    steps_per_execution=32,
    checkpoint_every_steps=1000,
)

RECIPES = {
    "digits": dict(
        dataset="sklearn_digits",
        # The 8x8 scans upsampled to 16x16 and cut into 4x4 patches: 16 tokens, each with
        # 16 smoothly interpolated pixels, which generalises better than 2x2 patches of 8x8;
        # shifts of one (upsampled) pixel, label smoothing, dropout and weight decay keep
        # the 1,433 training images from being memorised.
        image_size=16,
        num_channels=1,
        variant=None,
        model=dict(
            patch_size=4, hidden_dim=64, num_blocks=4, tokens_mlp_dim=64, channels_mlp_dim=128
        ),
        random_shift=1,
        label_smoothing=0.1,
        dropout_rate=0.1,
        batch_size=64,
        epochs=50,
        learning_rate=5e-3,
        weight_decay=0.05,
        warmup_steps=100,
        decay="cosine",
        jit_compile=True,
        checkpoint_every_steps=50,
    ),
    "pretrain": PRETRAIN,
    # The pre-training recipe plus the paper's ImageNet-1k-from-scratch regularisation.
    "i1k": dict(
        PRETRAIN,
        randaugment=dict(num_ops=2, magnitude=15),
        mixup_alpha=0.5,
        stochastic_depth_rate=0.1,
        dropout_rate=0.0,
    ),
    "finetune": dict(
        dataset="cifar10",
        variant="B/16",
        image_size=224,
        train_crop="inception_crop",
        random_flip=True,
        batch_size=512,
        epochs=10,
        optimizer="sgd",
        learning_rate=0.01,
        momentum=0.9,
        weight_decay=0.0,
        warmup_steps=500,
        decay="cosine",
        dtype_policy="mixed_bfloat16",
        checkpoint_every_steps=500,
    ),
}


def get_recipe(name="digits", **overrides):
    """Returns the full, checked run config of recipe `name`, with `overrides` applied.

    Every key not in the recipe has its default from training/config.py; an unknown key or
    a bad value raises ConfigError naming it.

    Example:
    >>> config = training.recipes.get_recipe("digits", epochs=5, seed=1)
    >>> config["model"]["patch_size"]
    4
    """
    if name not in RECIPES:
        raise ConfigError(
            f"unknown recipe {name!r}. Known recipes: {', '.join(RECIPES)} (training/recipes.py)."
        )
    recipe = copy.deepcopy(RECIPES[name])
    if overrides.get("variant") and "model" not in overrides:
        recipe["model"] = {}  # a named variant replaces the recipe's own architecture
    return config_lib.check({**recipe, **copy.deepcopy(overrides), "recipe": name})
