"""Recipes: pattern language, the four model-card recipes, unknown names."""

from __future__ import annotations

import pytest

from evalsuite.kernels import recipes
from evalsuite.kernels.recipes import Recipe, pattern_matches

L = "backbone.layers.{}.mixer."


@pytest.mark.parametrize(
    "pattern, name, hit",
    [
        ("backbone.layers.*.mixer.in_proj", "backbone.layers.3.mixer.in_proj", True),
        ("backbone.layers.*.mixer.in_proj", "model.backbone.layers.3.mixer.in_proj", True),
        ("backbone.layers.*.mixer.in_proj", "backbone.layers.3.mixer.in_proj2", False),
        ("backbone.layers.*.mixer.in_proj", "xbackbone.layers.3.mixer.in_proj", False),
        ("backbone.layers.*.mixer.in_proj", "backbone.layers.3.4.mixer.in_proj", False),
        ("backbone.layers.*.mixer.**", "backbone.layers.0.mixer.experts.7.up_proj", True),
        ("backbone.layers.*.mixer.**", "vision.blocks.0.fc1", False),
        ("lm_head", "model.lm_head", True),
        ("lm_head", "mylm_head", False),
        ("a.**.b", "a.b", True),
        ("a.**.b", "a.x.y.b", True),
        ("**.b", "q.b", True),
    ],
)
def test_pattern_language(pattern, name, hit):
    assert pattern_matches(pattern, name) is hit


NAMES = {
    "mamba_in": L.format(0) + "in_proj",
    "mamba_out": L.format(0) + "out_proj",
    "q": L.format(1) + "q_proj",
    "k": L.format(1) + "k_proj",
    "v": L.format(1) + "v_proj",
    "o": L.format(1) + "o_proj",
    "expert_up": L.format(2) + "experts.3.up_proj",
    "expert_down": L.format(2) + "experts.3.down_proj",
    "shared_up": L.format(2) + "shared_experts.up_proj",
    "shared_down": L.format(2) + "shared_experts.down_proj",
    "router": L.format(2) + "gate",
    "mlp_up": L.format(3) + "up_proj",
    "mlp_down": L.format(3) + "down_proj",
    "lm_head": "lm_head",
    "vision": "vision.blocks.0.mlp.fc1",
    "audio": "audio.encoder.layers.0.ff.linear1",
    "projector": "mm_projector.0",
}

EXPECTED = {
    "bf16": {k: "bf16" for k in NAMES},
    "fp8": {
        **{k: "fp8" for k in NAMES},
        "router": "bf16", "lm_head": "bf16", "vision": "bf16", "audio": "bf16", "projector": "bf16",
    },
    "fp4": {
        **{k: "bf16" for k in NAMES},
        "expert_up": "nvfp4", "expert_down": "nvfp4",
        "mamba_in": "fp8", "mamba_out": "fp8", "shared_up": "fp8", "shared_down": "fp8", "o": "fp8",
    },
    "fp4-all": {
        **{k: "nvfp4" for k in NAMES},
        "router": "bf16", "lm_head": "bf16", "vision": "bf16", "audio": "bf16", "projector": "bf16",
    },
}  # fmt: skip


@pytest.mark.parametrize("recipe_name", sorted(EXPECTED))
@pytest.mark.parametrize("prefix", ["", "model."])
def test_model_card_recipes(recipe_name, prefix):
    r = recipes.get(recipe_name)
    got = {k: r.format_for(prefix + name) for k, name in NAMES.items()}
    assert got == EXPECTED[recipe_name]


def test_kv_cache_flag_is_recipe_data():
    assert recipes.get("fp8").kv_cache_dtype == "fp8"
    assert {recipes.get(n).kv_cache_dtype for n in ("bf16", "fp4", "fp4-all")} == {"bf16"}
    assert recipes.get("fp8").to_dict()["kv_cache_dtype"] == "fp8"


def test_unknown_name_is_one_line_with_suggestion():
    with pytest.raises(KeyError) as info:
        recipes.get("fp4_all")
    msg = str(info.value)
    assert "\n" not in msg
    assert "unknown precision recipe 'fp4_all'; did you mean 'fp4-all'" in msg
    assert recipes.names() == ["bf16", "fp4", "fp4-all", "fp8"]


def test_custom_recipe_is_validated_and_passes_through_get():
    r = Recipe("mine", "experts only", rules=(("backbone.layers.*.mixer.experts.**", "fp8-channel"),))
    assert recipes.get(r) is r
    assert r.format_for(NAMES["expert_up"]) == "fp8-channel" and r.format_for(NAMES["q"]) == "bf16"
    with pytest.raises(ValueError, match="format 'int4' .* is not one of"):
        Recipe("bad", "", rules=(("x", "int4"),))
    with pytest.raises(ValueError, match="kv_cache_dtype must be one of"):
        Recipe("bad", "", kv_cache_dtype="int8")
    with pytest.raises(ValueError, match="expected a dotted module name"):
        Recipe("bad", "", rules=(("a..b", "fp8"),)).format_for("a.b")


def test_a_pattern_of_only_double_stars_says_what_is_missing():
    with pytest.raises(ValueError, match=r"^recipe pattern '\*\*': expected a dotted module name with at least one "
                                         r"component other than '\*\*'"):
        Recipe("bad", "", rules=(("**", "fp8"),)).format_for("a.b")
