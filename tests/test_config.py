"""training/config.py and recipes.py: one table of defaults, types and ranges; the paper's recipes."""

import pytest

from training import config as config_lib
from training import recipes
from training.errors import ConfigError


def test_every_default_passes_its_own_check_and_every_recipe_is_complete():
    assert config_lib.check({}) == config_lib.DEFAULTS
    for name in recipes.RECIPES:
        assert set(recipes.get_recipe(name)) == set(config_lib.SETTINGS) | {"recipe"}


@pytest.mark.parametrize(
    "key, value, expected",
    [
        ("epochs", "abc", 'epochs="abc" must be an integer >= 1'),
        ("epochs", 0, "epochs=0 must be an integer >= 1"),
        ("epochs", 2.5, "epochs=2.5 must be an integer >= 1"),
        ("epochs", True, "epochs=true must be an integer >= 1"),
        ("batch_size", -1, "batch_size=-1 must be an integer >= 1"),
        ("learning_rate", -0.1, "learning_rate=-0.1 must be a finite number >= 0"),
        ("weight_decay", float("inf"), "weight_decay=Infinity must be a finite number >= 0"),
        ("label_smoothing", 1.0, "label_smoothing=1.0 must be a finite number >= 0 and < 1"),
        ("num_classes", 0, "num_classes=0 must be an integer >= 1 or null"),
        ("image_size", [16], "image_size=[16] must be a positive integer or [height, width]"),
        ("num_channels", 2, "num_channels=2 must be one of 1, 3"),
        ("decay", "step", "decay=\"step\" must be one of 'linear', 'cosine'"),
        ("jit_compile", "yes", 'jit_compile="yes" must be true, false or "auto"'),
        ("variant", "S/8", 'variant="S/8" must be null or a paper variant'),
        ("model", {"hidden": 3}, "unknown: ['hidden']"),
        ("model", {"hidden_dim": 0}, "an object of positive integers (['hidden_dim'] are not)"),
        ("randaugment", {"num_ops": 2, "magnitude": 31}, "magnitude\": 0..30"),
        ("random_flip", "no", 'random_flip="no" must be true or false'),
        ("cluster_connect_timeout_s", 0, "cluster_connect_timeout_s=0 must be a finite number >= 1"),
    ],
)
def test_a_bad_value_names_the_key_the_value_and_what_it_must_be(key, value, expected):
    with pytest.raises(ConfigError, match="^config ") as error:
        config_lib.check({key: value})
    assert expected in str(error.value) and "--set " in str(error.value)


def test_init_needs_rgb_and_tuples_compare_equal_to_their_json():
    with pytest.raises(ConfigError, match="takes RGB images, but num_channels=1"):
        config_lib.check({"init": "Mixer-B_16.npz", "num_channels": 1})
    # A tuple from Python and the list config.json gives back are the same run.
    assert config_lib.check({"image_size": (16, 16)}) == config_lib.check({"image_size": [16, 16]})
    with pytest.raises(ConfigError, match="JSON values only"):
        config_lib.check({"dataset": object()})


def test_unknown_keys_and_missing_architecture_are_named():
    with pytest.raises(ConfigError, match=r"unknown config key\(s\) \['epoch'\]"):
        config_lib.check({"epoch": 3})
    with pytest.raises(ConfigError, match=r"model is missing \['num_blocks'"):
        config_lib.check({"variant": None, "model": {"patch_size": 4, "hidden_dim": 8}})
    with pytest.raises(ConfigError, match="not list"):
        config_lib.check([])


def test_recipes_follow_the_paper():
    pretrain = recipes.get_recipe("pretrain")
    # Paper, Appendix B: Adam (0.9, 0.999), linear warmup 10k then linear decay, clip at 1.
    assert (pretrain["optimizer"], pretrain["beta_1"], pretrain["beta_2"]) == ("adam", 0.9, 0.999)
    assert (pretrain["warmup_steps"], pretrain["decay"], pretrain["clip_global_norm"]) == (
        10_000, "linear", 1.0,
    )
    finetune = recipes.get_recipe("finetune")
    assert (finetune["optimizer"], finetune["momentum"], finetune["decay"]) == ("sgd", 0.9, "cosine")
    i1k = recipes.get_recipe("i1k")
    assert i1k["randaugment"] == {"num_ops": 2, "magnitude": 15} and i1k["mixup_alpha"] == 0.5
    # A named variant replaces the recipe's architecture instead of being overridden by it.
    digits_s32 = recipes.get_recipe("digits", variant="S/32")
    assert config_lib.architecture_of(digits_s32)["hidden_dim"] == 512
    with pytest.raises(ConfigError, match="unknown config key"):
        recipes.get_recipe("digits", epoch=3)
    with pytest.raises(ConfigError, match="Known recipes"):
        recipes.get_recipe("imagenet")
