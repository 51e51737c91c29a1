"""quantize_model on a toy NemotronH-named model: which modules change, outputs, report, errors."""

from __future__ import annotations

import pytest
import torch
from kernels_toy_model import Router, Wrapped, build, inputs
from torch import nn

from evalsuite import kernels
from evalsuite.kernels.qlinear import FP8Linear, NVFP4Linear

@pytest.fixture(autouse=True)
def _no_grad():
    with torch.no_grad():
        yield


KIND = {nn.Linear: "bf16", FP8Linear: "fp8", NVFP4Linear: "nvfp4"}


def _kinds(model: nn.Module) -> dict[str, str]:
    return {n: KIND[type(m)] for n, m in model.named_modules() if type(m) in KIND}


def test_fp8_swaps_every_lm_linear_but_router_head_and_encoders():
    model = kernels.quantize_model(build(), "fp8")
    kinds = _kinds(model)
    assert kinds["lm_head"] == "bf16" and kinds["mm_projector"] == "bf16"
    assert kinds["vision.0"] == "bf16" and kinds["vision.2"] == "bf16"
    lm = {n: k for n, k in kinds.items() if n.startswith("backbone.")}
    assert len(lm) == 2 + 4 + 2 * 4 + 2 + 2 and set(lm.values()) == {"fp8"}
    assert isinstance(model.backbone.layers[2].mixer.gate, Router)
    assert model.quant_recipe.kv_cache_dtype == "fp8"


def test_fp4_recipe_places_each_format():
    model = kernels.quantize_model(build(), "fp4")
    kinds = _kinds(model)
    L = "backbone.layers."
    assert kinds[L + "2.mixer.experts.0.up_proj"] == "nvfp4"
    assert kinds[L + "2.mixer.experts.3.down_proj"] == "nvfp4"
    for name in ("0.mixer.in_proj", "0.mixer.out_proj", "1.mixer.o_proj",
                 "2.mixer.shared_experts.up_proj", "2.mixer.shared_experts.down_proj"):  # fmt: skip
        assert kinds[L + name] == "fp8", name
    for name in ("1.mixer.q_proj", "1.mixer.k_proj", "1.mixer.v_proj", "3.mixer.up_proj", "3.mixer.down_proj"):
        assert kinds[L + name] == "bf16", name
    assert model.quant_recipe.kv_cache_dtype == "bf16"


def test_bf16_changes_nothing():
    ref = build()
    model = kernels.quantize_model(build(), "bf16")
    assert set(_kinds(model).values()) == {"bf16"}
    toks, img = inputs()
    assert torch.equal(model(toks, img), ref(toks, img))


def test_wrapped_model_is_matched_on_suffix():
    plain = _kinds(kernels.quantize_model(build(), "fp4"))
    wrapped = _kinds(kernels.quantize_model(Wrapped(build()), "fp4"))
    assert wrapped == {"model." + n: k for n, k in plain.items()}


@pytest.mark.parametrize("recipe, max_rel", [("fp8", 0.08), ("fp4", 0.2), ("fp4-all", 0.3)])
def test_quantized_model_output_is_close_to_bf16(recipe, max_rel):
    toks, img = inputs()
    ref = build()(toks, img).float()
    out = kernels.quantize_model(build(), recipe)(toks, img).float()
    rel = float((out - ref).norm() / ref.norm())
    print(f"{recipe}: relative logits error {rel:.4f}")
    assert 0 < rel < max_rel


def test_quantized_model_equals_model_with_dequantized_weights_for_nvfp4():
    """W4A16 is exact weight substitution: swapping back dequantized weights gives the same logits."""
    toks, img = inputs()
    q = kernels.quantize_model(build(dtype=torch.float32), "fp4-all")
    deq = build(dtype=torch.float32)
    for name, m in q.named_modules():
        if isinstance(m, NVFP4Linear):
            deq.get_submodule(name).weight.data = m.dequantized_weight()
    torch.testing.assert_close(q(toks, img.float()), deq(toks, img.float()), rtol=1e-5, atol=1e-5)


def test_report_lists_formats_and_bytes():
    model = kernels.quantize_model(build(), "fp4")
    rep = kernels.report(model)
    fm = rep.formats()
    assert fm["backbone.layers.2.mixer.experts.1.up_proj"] == "nvfp4"
    assert fm["lm_head"] == "bf16" and "backbone.layers.2.mixer.gate" not in fm
    row = next(r for r in rep.layers if r.name == "backbone.layers.2.mixer.experts.1.up_proj")
    assert (row.out_features, row.in_features) == (32, 32)
    assert row.bytes == 32 * 32 // 2 + 32 * 32 // 16 + 4
    assert row.bits_per_weight == pytest.approx(4.5 + 32 / 1024)
    fp8_row = next(r for r in rep.layers if r.name == "backbone.layers.0.mixer.in_proj")
    assert fp8_row.bytes == 64 * 32 + 4
    by = rep.by_format()
    assert by["nvfp4"]["layers"] == 8 and by["fp8"]["layers"] == 5
    head = next(r for r in rep.layers if r.name == "lm_head")
    assert head.bytes == 48 * 32 * 2 and head.bits_per_weight == 16  # bf16, no bias
    assert rep.total_bytes < kernels.report(build()).total_bytes
    table = rep.table()
    assert "backbone.layers.2.mixer.experts.1.up_proj" in table and "total nvfp4" in table


def test_plan_changes_nothing_and_agrees_with_the_swap():
    model = build()
    planned = kernels.plan(model, "fp4-all")
    assert set(_kinds(model).values()) == {"bf16"}
    swapped = _kinds(kernels.quantize_model(model, "fp4-all"))
    assert {n: swapped[n] for n in planned} == planned


def test_meta_model_can_be_planned_and_sized():
    with torch.device("meta"):
        model = build()
    kernels.quantize_model(model, "fp4-all")
    rep = kernels.report(model)
    assert rep.by_format()["nvfp4"]["layers"] == 18
    assert rep.formats()["lm_head"] == "bf16"


def test_unquantizable_layer_is_a_clear_error_or_skipped():
    model = build()
    model.backbone.layers[3].mixer.down_proj = nn.Linear(20, 32, bias=False).to(torch.bfloat16)
    with pytest.raises(ValueError, match="cannot make backbone.layers.3.mixer.down_proj nvfp4: in_features 20"):
        kernels.quantize_model(model, "fp4-all")
    # refused as a whole: no layer was swapped before the one that cannot be (was left half quantized)
    assert not any(isinstance(m, (NVFP4Linear, FP8Linear)) for m in model.modules())
    assert getattr(model, "quant_recipe", None) is None
    kernels.quantize_model(model, "fp4-all", strict=False)
    assert type(model.backbone.layers[3].mixer.down_proj) is nn.Linear
    assert type(model.backbone.layers[3].mixer.up_proj) is NVFP4Linear


def test_nan_weight_is_refused_with_module_name():
    model = build()
    with torch.no_grad():
        model.backbone.layers[1].mixer.o_proj.weight[0, 0] = float("nan")
    with pytest.raises(ValueError, match="backbone.layers.1.mixer.o_proj fp8: weight has 1 NaN/inf"):
        kernels.quantize_model(model, "fp8")


def test_a_quantized_model_is_not_relabeled_by_another_recipe():
    model = kernels.quantize_model(build(), "fp8")
    with pytest.raises(ValueError, match=r"^quantize_model\('fp4-all'\): cannot make backbone.layers.0.mixer.in_proj "
                                         r"nvfp4: it is already fp8; quantize the unquantized model$"):
        kernels.quantize_model(model, "fp4-all")
    assert model.quant_recipe.name == "fp8"  # the recipe its layers follow, and its fp8 KV cache
    with pytest.raises(ValueError, match="cannot make backbone.layers.0.mixer.in_proj bf16: it is already fp8"):
        kernels.quantize_model(model, "bf16")
    assert kernels.quantize_model(model, "fp8").quant_recipe.name == "fp8"  # the same recipe again: nothing to do
    kernels.quantize_model(model, "fp4-all", strict=False)  # the quantized layers stay as they are
    assert set(_kinds(model).values()) == {"fp8", "bf16"}


def test_unknown_recipe_name():
    with pytest.raises(KeyError, match="did you mean 'fp8'"):
        kernels.quantize_model(build(), "fp88")
