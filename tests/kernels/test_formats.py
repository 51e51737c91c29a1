"""The format table: one row per weight format, read by recipes, the swap, packed checkpoints and
the model card — so a format added to the table is usable everywhere without touching them."""

from __future__ import annotations

from functools import partial

import pytest
import torch
from torch import nn

from evalsuite import kernels
from evalsuite.kernels import checkpoint, formats, recipes
from evalsuite.kernels.qlinear import FP8Linear
from evalsuite.model.card import format_bytes


def test_table_lists_the_formats_and_which_are_quantized() -> None:
    assert formats.names() == ("bf16", "fp8", "fp8-channel", "nvfp4")
    assert formats.quantized_names() == ("fp8", "fp8-channel", "nvfp4")
    assert [c.__name__ for c in formats.quantized_modules()] == ["FP8Linear", "NVFP4Linear"]
    with pytest.raises(ValueError, match="unknown weight format 'int3'; expected one of bf16, fp8"):
        formats.get("int3")


@pytest.mark.parametrize("name", ["fp8", "fp8-channel", "nvfp4"])
def test_module_built_from_the_table_stores_the_bytes_the_table_charges(name: str) -> None:
    torch.manual_seed(0)
    linear = nn.Linear(64, 24, bias=False)
    spec = formats.get(name)
    module = spec.from_linear(linear)
    assert module.fmt == name
    assert module.nbytes == spec.weight_bytes(24, 64)
    empty = spec.linear(64, 24, bias=False)
    assert type(empty) is type(module) and empty.fmt == name
    err = (module.dequantized_weight() - linear.weight).abs().max() / linear.weight.abs().max()
    assert err < (0.17 if name == "nvfp4" else 0.04)  # half the top step: 1/6 of E2M1 max, 16/448 of E4M3 max


def test_bits_per_weight_and_block() -> None:
    assert formats.get("bf16").bits_per_weight(4096, 4096) == 16
    assert formats.get("nvfp4").bits_per_weight(4096, 4096) == pytest.approx(4.5, abs=1e-5)
    assert formats.get("nvfp4").cannot_hold(40) == "in_features 40 is not a multiple of 16"
    assert formats.get("fp8").cannot_hold(40) == ""


@pytest.fixture
def fp8_row_format():
    """A format registered only through the table (FP8 per channel under a new name)."""
    spec = formats.WeightFormat(
        "fp8-row", "test format: FP8 with one scale per row",
        quantize=partial(kernels.fp8.quantize, granularity="channel"), dequantize=kernels.fp8.dequantize,
        weight_bytes=lambda rows, cols: rows * cols + 4 * rows,
        linear=partial(_RowFP8, granularity="channel"), from_linear=lambda lin: _RowFP8.from_linear(lin, "channel"),
    )
    formats.register(spec)
    try:
        yield spec
    finally:
        formats.FORMATS._items.pop("fp8-row")


class _RowFP8(FP8Linear):
    fmt = "fp8-row"  # type: ignore[assignment]


def test_a_format_added_to_the_table_works_in_recipes_swap_checkpoint_and_card(fp8_row_format, tmp_path) -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(32, 16), nn.ReLU(), nn.Linear(16, 8))
    x = torch.randn(3, 32)
    recipe = recipes.Recipe("row", "test", rules=(("0", "fp8-row"),))
    assert kernels.plan(model, recipe) == {"0": "fp8-row", "2": "bf16"}
    kernels.quantize_model(model, recipe)
    assert isinstance(model[0], _RowFP8)
    assert kernels.report(model).formats() == {"0": "fp8-row", "2": "fp32"}
    y = model(x)
    path = checkpoint.save_packed(model, tmp_path / "m.safetensors")
    fresh = checkpoint.load_packed(nn.Sequential(nn.Linear(32, 16), nn.ReLU(), nn.Linear(16, 8)), path, strict=True)
    assert isinstance(fresh[0], _RowFP8)
    torch.testing.assert_close(fresh(x), y, rtol=0, atol=0)
    assert format_bytes("fp8-row", torch.empty(16, 32, device="meta")) == 16 * 32 + 64
