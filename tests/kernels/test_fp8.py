"""FP8 E4M3 codec: scales, saturation, round trip, NaN/inf, stochastic rounding."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from evalsuite.kernels import fp8

E4M3 = torch.float8_e4m3fn


def _all_finite_e4m3() -> torch.Tensor:
    v = torch.arange(256, dtype=torch.int32).to(torch.uint8).view(E4M3).float()
    return v[torch.isfinite(v)]


@pytest.mark.parametrize(
    "granularity, shape, scale_shape",
    [("tensor", (4, 32), ()), ("channel", (4, 32), (4, 1)), ("token", (2, 3, 32), (2, 3, 1))],
)
def test_scales_are_amax_over_448(granularity, shape, scale_shape):
    x = torch.randn(*shape)
    q = fp8.quantize(x, granularity)
    assert q.qdata.dtype == E4M3 and q.qdata.shape == x.shape
    assert q.scales.dtype == torch.float32 and tuple(q.scales.shape) == scale_shape
    amax = x.abs().amax() if granularity == "tensor" else x.abs().amax(-1, keepdim=True)
    assert torch.equal(q.scales, amax / 448)
    # the largest value of each group maps to exactly ±448
    assert q.qdata.float().abs().amax().item() == 448.0


def test_representable_values_round_trip_exactly():
    v = _all_finite_e4m3()
    x = torch.cat([v, torch.tensor([448.0])])  # amax 448 -> scale 1
    q = fp8.quantize(x)
    assert q.scales.item() == 1.0
    assert torch.equal(fp8.dequantize(*q), x)


def test_ties_round_to_even():
    # between 1.0 (0x38, even) and 1.125 (0x39, odd) the tie 1.0625 goes down; 1.1875 goes up to 1.25
    x = torch.tensor([448.0, 1.0625, 1.1875, -1.0625])
    q = fp8.quantize(x)
    assert fp8.dequantize(*q).tolist() == [448.0, 1.0, 1.25, -1.0]


def test_per_channel_rows_are_independent():
    x = torch.tensor([[1.0, -2.0, 0.5, 0.0], [1000.0, 1.0, -3.0, 2.0]])
    q = fp8.quantize(x, "channel")
    assert q.scales.flatten().tolist() == pytest.approx([2 / 448, 1000 / 448])
    d = fp8.dequantize(*q)
    assert torch.equal(d[0], x[0])  # small row keeps full precision despite the big one


def test_zeros_round_trip_and_scale_is_finite():
    x = torch.zeros(3, 16)
    for g in fp8.GRANULARITIES:
        q = fp8.quantize(x, g)
        assert torch.isfinite(q.scales).all() and (q.scales > 0).all()
        assert torch.equal(fp8.dequantize(*q), x)


def test_values_past_given_scale_saturate_to_448():
    x = torch.tensor([1e6, -1e6, 1.0])
    q = fp8.quantize(x, scales=torch.tensor(1.0))
    assert q.qdata.float().tolist() == [448.0, -448.0, 1.0]


def test_nan_and_inf_poison_only_their_group():
    x = torch.randn(3, 16)
    x[0, 2] = float("nan")
    x[1, 7] = float("inf")
    d = fp8.dequantize(*fp8.quantize(x, "token"))
    assert torch.isnan(d[0]).all() and torch.isnan(d[1]).all()
    assert torch.isfinite(d[2]).all()
    assert (d[2] - x[2]).abs().max() <= x[2].abs().max() / 16


def test_dequantize_dtype_and_bad_inputs():
    q = fp8.quantize(torch.randn(2, 16, dtype=torch.bfloat16), "token")
    assert fp8.dequantize(*q, dtype=torch.bfloat16).dtype == torch.bfloat16
    with pytest.raises(ValueError, match="granularity must be one of"):
        fp8.quantize(torch.randn(2, 2), "block")
    with pytest.raises(TypeError, match="expected a float32/bfloat16/float16 tensor, got torch.int32"):
        fp8.quantize(torch.ones(2, dtype=torch.int32))
    with pytest.raises(TypeError, match="expected qdata of dtype float8_e4m3fn"):
        fp8.dequantize(torch.ones(2), torch.tensor(1.0))


@given(st.integers(1, 5), st.integers(1, 40), st.floats(1e-4, 1e4), st.integers(0, 2**31 - 1))
@settings(max_examples=40, deadline=None)
def test_round_trip_relative_error_bound(rows, cols, scale, seed):
    """E4M3 has 3 mantissa bits: normal values round with relative error <= 2^-4; subnormals with
    absolute error <= half the subnormal step (2^-10 of the scale)."""
    x = torch.randn(rows, cols, generator=torch.Generator().manual_seed(seed)) * scale
    q = fp8.quantize(x, "token")
    d = fp8.dequantize(*q)
    bound = torch.maximum(x.abs() * 2.0**-4, q.scales * 2.0**-10) * (1 + 1e-6)
    assert ((x - d).abs() <= bound).all()


def test_stochastic_rounding_is_unbiased_and_lands_on_neighbours():
    g = torch.Generator().manual_seed(0)
    x = torch.rand(64, generator=g) * 2 - 1
    x[0] = 1.0
    draws = 4000
    xs = x.expand(draws, 64).contiguous()
    scales = torch.tensor(1 / 448)  # amax 1 -> 448
    q = fp8.quantize(xs, scales=scales, rounding="stochastic", generator=g)
    d = fp8.dequantize(*q)
    rne = fp8.dequantize(*fp8.quantize(x, scales=scales))
    # each draw is one of the two E4M3 neighbours: within one step (2^-3 relative) of x
    assert ((d - x).abs() <= x.abs() * 2.0**-3 + 2.0**-9 / 448 + 1e-9).all()
    mean = d.mean(0)
    rel_err = ((mean - x).abs() / x.abs().clamp_min(1e-3)).max()
    assert rel_err < 0.02  # per-draw std <= 1/16 relative -> mean of 4000 within ~0.001
    assert (mean - x).abs().mean() < 0.25 * (rne - x).abs().mean()
    assert torch.equal(q.qdata[:, 0].float(), torch.full((draws,), 448.0))  # exact values stay exact
