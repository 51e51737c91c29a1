"""NVFP4 codec: bit-exact against an independent transcription of the published definition."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from evalsuite.kernels import nvfp4
from evalsuite.kernels.constants import E2M1_VALUES, E4M3_MAX

E4M3 = torch.float8_e4m3fn


# ---- oracle: NVIDIA ModelOpt's NVFP4QTensor algorithm, transcribed independently --------------
def _modelopt_cast_fp4(w: torch.Tensor) -> torch.Tensor:
    """searchsorted against the midpoints, +1 where the value sits exactly on an odd midpoint."""
    bounds = torch.tensor([0.25, 0.75, 1.25, 1.75, 2.5, 3.5, 5.0])
    sign = (w < 0).to(torch.uint8)
    a = w.abs()
    order = torch.searchsorted(bounds, a.contiguous()).to(torch.uint8)
    on_odd = (a.unsqueeze(-1) == bounds[[1, 3, 5]]).any(-1).to(torch.uint8)
    return (sign << 3) + order + on_odd


def _modelopt_quantize(x: torch.Tensor, gs: torch.Tensor | None = None):
    if gs is None:
        gs = x.abs().amax().float() / (6.0 * 448.0)
    bamax = x.reshape(*x.shape[:-1], -1, 16).abs().amax(-1).float()
    s = bamax / (6.0 * gs)
    s[s == 0] = 1.0
    s8 = s.to(E4M3)
    y = (x.reshape(*x.shape[:-1], -1, 16) / (s8.float() * gs).unsqueeze(-1)).reshape(x.shape)
    q = _modelopt_cast_fp4(y)
    packed = (q[..., 1::2] << 4) | q[..., 0::2]
    return packed, s8, gs


def _nearest_even_e2m1(v: float) -> int:
    """Brute force: nearest E2M1 magnitude code, ties to the code with an even mantissa bit."""
    grid = E2M1_VALUES[:8]
    a = min(abs(v), 6.0)
    best = min(range(8), key=lambda c: (abs(grid[c] - a), c & 1))
    return best | (8 if v < 0 else 0)


# ---- codes --------------------------------------------------------------------------------------
def test_all_16_codes_decode_to_the_table():
    codes = torch.arange(16, dtype=torch.uint8)
    values = nvfp4.decode_e2m1(codes)
    expected = torch.tensor([0, 0.5, 1, 1.5, 2, 3, 4, 6, -0.0, -0.5, -1, -1.5, -2, -3, -4, -6])
    assert torch.equal(values, expected)
    assert torch.equal(torch.signbit(values[8:]), torch.ones(8, dtype=torch.bool))  # sign in bit 3


def test_all_16_codes_encode_back_to_themselves():
    values = nvfp4.decode_e2m1(torch.arange(16, dtype=torch.uint8))
    codes = nvfp4.encode_e2m1(values)
    # -0.0 is not < 0, so it encodes as +0 (code 0), as in the published definition
    assert codes.tolist() == [0, 1, 2, 3, 4, 5, 6, 7, 0, 9, 10, 11, 12, 13, 14, 15]


@pytest.mark.parametrize(
    "tie, code", [(0.25, 0), (0.75, 2), (1.25, 2), (1.75, 4), (2.5, 4), (3.5, 6), (5.0, 6)]
)
def test_ties_round_to_even_mantissa(tie, code):
    y = torch.tensor([tie, -tie])
    assert nvfp4.encode_e2m1(y).tolist() == [code, code | 8]
    # one ulp either side of the midpoint goes to the nearer neighbour
    below = torch.nextafter(torch.tensor(tie), torch.tensor(0.0))
    above = torch.nextafter(torch.tensor(tie), torch.tensor(10.0))
    lower = max(c for c in range(8) if E2M1_VALUES[c] < tie)
    assert nvfp4.encode_e2m1(below).item() == lower
    assert nvfp4.encode_e2m1(above).item() == lower + 1


def test_encode_matches_brute_force_on_a_dense_grid():
    y = torch.linspace(-8, 8, 4097)
    expected = torch.tensor([_nearest_even_e2m1(v) for v in y.tolist()], dtype=torch.uint8)
    got = nvfp4.encode_e2m1(y)
    assert torch.equal(got, expected), (y[got != expected], got[got != expected])


def test_past_range_saturates_to_six():
    y = torch.tensor([6.0, 6.5, 1e30, -7.0, -1e30])
    assert nvfp4.encode_e2m1(y).tolist() == [7, 7, 7, 15, 15]


def test_pack_puts_first_value_in_low_nibble():
    packed = nvfp4.pack_fp4(torch.tensor([[0x1, 0xF, 0x7, 0x8]], dtype=torch.uint8))
    assert packed.tolist() == [[0xF1, 0x87]]
    assert nvfp4.unpack_fp4(packed).tolist() == [[0x1, 0xF, 0x7, 0x8]]


@given(st.lists(st.integers(0, 15), min_size=2, max_size=64).filter(lambda c: len(c) % 2 == 0))
@settings(max_examples=50, deadline=None)
def test_pack_unpack_is_invertible(codes):
    c = torch.tensor(codes, dtype=torch.uint8)
    assert torch.equal(nvfp4.unpack_fp4(nvfp4.pack_fp4(c)), c)
    b = torch.tensor(codes[: len(codes) // 2], dtype=torch.uint8) * 17  # arbitrary bytes
    assert torch.equal(nvfp4.pack_fp4(nvfp4.unpack_fp4(b)), b)


# ---- quantize / dequantize ----------------------------------------------------------------------
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_bit_exact_with_published_definition(dtype, seed):
    g = torch.Generator().manual_seed(seed)
    x = (torch.randn(8, 64, generator=g) * torch.logspace(-3, 2, 64)).to(dtype)  # wide dynamic range
    q = nvfp4.quantize(x)
    ref_q, ref_s, ref_gs = _modelopt_quantize(x)
    assert torch.equal(q.global_scale, ref_gs)
    assert torch.equal(q.block_scales.view(torch.uint8), ref_s.view(torch.uint8))
    assert torch.equal(q.qdata, ref_q)


def test_bit_exact_with_a_given_global_scale_and_3d_input():
    g = torch.Generator().manual_seed(3)
    x = torch.randn(2, 3, 32, generator=g)
    gs = torch.tensor(0.0007)
    q = nvfp4.quantize(x, gs)
    ref_q, ref_s, _ = _modelopt_quantize(x, gs)
    assert q.qdata.shape == (2, 3, 16) and q.block_scales.shape == (2, 3, 2)
    assert torch.equal(q.qdata, ref_q)
    assert torch.equal(q.block_scales.view(torch.uint8), ref_s.view(torch.uint8))
    assert q.global_scale.item() == pytest.approx(0.0007)


def _tie_probe(shape: tuple[int, int], a: float) -> torch.Tensor:
    """Uniform in [-a, a), first row starting ``0, 6a, -0.25a``: amax is 6a, so -0.25a sits on a tie."""
    g = torch.Generator().manual_seed(0)
    x = (torch.rand(shape, generator=g) * 2 - 1) * a
    x[0, :3] = torch.tensor([0.0, 6 * a, -0.25 * a])
    return x


@pytest.mark.parametrize("shape", [(1, 16), (3, 64), (128, 256), (7, 4096)])
@pytest.mark.parametrize(
    "a, tie_code",
    [
        (1e-3, 9),  # x / (bs * gs) = -0.25000003: just past the tie, -0.5
        (5e-4, 9),
        (2e-3, 9),
        (3e-3, 8),  # exactly -0.25 after division: ties to even, -0
        (1e-5, 8),
    ],
)
def test_ties_at_small_amplitudes_follow_modelopt_division_order(shape, a, tie_code):
    x = _tie_probe(shape, a)
    q = nvfp4.quantize(x)
    assert q.block_scales.float()[0, 0].item() == E4M3_MAX
    assert nvfp4.unpack_fp4(q.qdata)[0, 2].item() == tie_code
    ref_q, ref_s, ref_gs = _modelopt_quantize(x)
    assert torch.equal(q.global_scale, ref_gs)
    assert torch.equal(q.block_scales.view(torch.uint8), ref_s.view(torch.uint8))
    assert torch.equal(q.qdata, ref_q)


def test_reciprocal_order_would_land_on_the_other_side_of_the_tie():
    """The tie case above separates the two fp32 orders, so the test fails if the order changes."""
    x = _tie_probe((1, 16), 1e-3)
    q = nvfp4.quantize(x)
    bs, gs = q.block_scales.float()[0, 0], q.global_scale
    divided = x[0, 2] / (bs * gs)
    multiplied = x[0, 2] * ((1.0 / gs) / bs)  # torchao 0.18's order
    print(f"divided {divided.item()!r}  multiplied {multiplied.item()!r}")
    assert multiplied.item() == -0.25 and divided.item() < -0.25
    assert nvfp4.encode_e2m1(multiplied.reshape(1)).item() == 8
    assert nvfp4.encode_e2m1(divided.reshape(1)).item() == 9


def test_global_scale_is_amax_over_2688_and_largest_block_gets_448():
    x = torch.zeros(1, 32)
    x[0, 3] = -5.376  # amax
    x[0, 20] = 1.0
    q = nvfp4.quantize(x)
    assert q.global_scale.item() == pytest.approx(5.376 / 2688)
    assert q.block_scales.float().tolist()[0][0] == E4M3_MAX
    d = nvfp4.dequantize(*q)
    assert d[0, 3].item() == pytest.approx(-5.376, rel=1e-6)


def test_zeros_round_trip_exactly():
    x = torch.zeros(2, 32)
    q = nvfp4.quantize(x)
    assert q.global_scale.item() == 1.0  # departure: published code divides by zero here
    assert torch.equal(q.qdata, torch.zeros(2, 16, dtype=torch.uint8))
    assert q.block_scales.float().eq(1.0).all()  # zero blocks get scale 1 (ModelOpt rule)
    assert torch.equal(nvfp4.dequantize(*q), x)


def test_zero_block_inside_nonzero_tensor():
    x = torch.zeros(1, 32)
    x[0, 16:] = torch.linspace(-3, 3, 16)
    q = nvfp4.quantize(x)
    assert q.block_scales.float()[0, 0].item() == 1.0
    assert torch.equal(nvfp4.dequantize(*q)[0, :16], torch.zeros(16))


def test_subnormal_block_scales_are_kept():
    x = torch.zeros(1, 48)
    x[0, 0] = 2688.0  # global scale 1.0, block scale 448
    x[0, 16] = 6 * 2.0**-8  # s = 2^-8: E4M3 subnormal (smallest normal is 2^-6)
    x[0, 32] = 6 * 3 * 2.0**-9  # s = 3 * 2^-9: subnormal with mantissa 3
    q = nvfp4.quantize(x)
    assert q.global_scale.item() == 1.0
    assert q.block_scales.float()[0].tolist() == [448.0, 2.0**-8, 3 * 2.0**-9]
    assert q.block_scales.view(torch.uint8)[0].tolist() == [0x7E, 0x02, 0x03]
    d = nvfp4.dequantize(*q)
    assert d[0, 16].item() == x[0, 16].item() and d[0, 32].item() == x[0, 32].item()


def test_block_scale_underflowing_to_zero_gives_zero_codes():
    x = torch.zeros(1, 32)
    x[0, 0] = 2688.0
    x[0, 16] = 1e-4  # s = 1.7e-5, below half the smallest E4M3 subnormal (2^-10)
    q = nvfp4.quantize(x)
    assert q.block_scales.float()[0, 1].item() == 0.0
    assert torch.equal(nvfp4.unpack_fp4(q.qdata)[0, 16:], torch.zeros(16, dtype=torch.uint8))
    assert torch.equal(nvfp4.dequantize(*q)[0, 16:], torch.zeros(16))


def test_values_past_the_given_global_scale_saturate():
    x = torch.tensor([[100.0, -100.0] + [0.5] * 14])
    q = nvfp4.quantize(x, global_scale=0.01)  # s would be 1666 > 448: clamped
    assert q.block_scales.float()[0, 0].item() == 448.0
    d = nvfp4.dequantize(*q)
    assert d[0, :2].tolist() == pytest.approx([6 * 448 * 0.01, -6 * 448 * 0.01])
    assert nvfp4.unpack_fp4(q.qdata)[0, :2].tolist() == [7, 15]


def test_dequantize_returns_requested_dtype_and_shape():
    x = torch.randn(3, 5, 16, dtype=torch.bfloat16)
    q = nvfp4.quantize(x)
    d = nvfp4.dequantize(q.qdata, q.block_scales, q.global_scale, torch.bfloat16)
    assert d.dtype == torch.bfloat16 and d.shape == x.shape


def test_known_values_round_trip_exactly():
    # every code times a representable scale is exactly representable in fp32
    vals = torch.tensor(E2M1_VALUES, dtype=torch.float32)
    x = torch.cat([vals, vals * 0.25]).reshape(2, 16) * 6 / 6  # block amax 6 and 1.5
    q = nvfp4.quantize(x, global_scale=1.0)
    assert torch.equal(nvfp4.dequantize(*q), x)


@given(
    st.integers(1, 4),
    st.integers(1, 4),
    st.floats(1e-3, 1e3),
    st.integers(0, 2**31 - 1),
)
@settings(max_examples=40, deadline=None)
def test_round_trip_error_is_bounded_per_block(rows, nblocks, scale, seed):
    """|x - deq| <= half an E2M1 step at the block scale: 1 * s_eff at the top (4..6), plus E4M3 error."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(rows, nblocks * 16, generator=g) * scale
    q = nvfp4.quantize(x)
    d = nvfp4.dequantize(*q)
    s_eff = (q.block_scales.float() * q.global_scale).repeat_interleave(16, dim=-1)
    bamax = x.abs().reshape(rows, nblocks, 16).amax(-1).repeat_interleave(16, dim=-1)
    # E2M1 spacing is at most 2 (between 4 and 6) -> error <= 1 * s_eff; the block max may also be
    # clipped when the E4M3 scale rounded down (by at most 1/16 relative, E4M3 has 3 mantissa bits)
    bound = torch.maximum(s_eff, bamax / 16) * (1 + 1e-6)
    assert ((x - d).abs() <= bound).all()
    # and the relative error of the whole tensor is what 4-bit floats give (SQNR well above 10 dB)
    sqnr = 10 * torch.log10(x.pow(2).sum() / (x - d).pow(2).sum().clamp_min(1e-30))
    assert sqnr > 12


# ---- bad input ----------------------------------------------------------------------------------
def test_k_not_multiple_of_16_is_a_clear_error():
    with pytest.raises(ValueError, match="multiple of 16.*got shape \\(4, 30\\)"):
        nvfp4.quantize(torch.randn(4, 30))


def test_nan_and_inf_are_refused():
    for bad in (float("nan"), float("inf"), -float("inf")):
        x = torch.randn(2, 16)
        x[1, 5] = bad
        with pytest.raises(ValueError, match="1 NaN/inf values"):
            nvfp4.quantize(x)


def test_bad_global_scale_and_dtypes_are_clear_errors():
    with pytest.raises(ValueError, match="global_scale must be one finite positive"):
        nvfp4.quantize(torch.randn(1, 16), global_scale=0.0)
    with pytest.raises(TypeError, match="expected a float32/bfloat16/float16 tensor, got torch.int64"):
        nvfp4.quantize(torch.ones(1, 16, dtype=torch.long))
    q = nvfp4.quantize(torch.randn(2, 32))
    with pytest.raises(ValueError, match="needs block_scales of shape \\(2, 2\\)"):
        nvfp4.dequantize(q.qdata, q.block_scales[:, :1], q.global_scale)


# ---- stochastic rounding ------------------------------------------------------------------------
def test_stochastic_rounding_is_unbiased():
    g = torch.Generator().manual_seed(0)
    x = torch.rand(1, 64, generator=g) * 12 - 6  # in (-6, 6)
    x[0, ::16] = 6.0  # block amax 6 with global scale 1: block scale exactly 1, nothing clips
    draws = 2000
    xs = x.expand(draws, 64).contiguous()
    q = nvfp4.quantize(xs, global_scale=1.0, rounding="stochastic", generator=g)
    d = nvfp4.dequantize(*q)
    assert q.block_scales.float().eq(1.0).all()
    # every draw is one of the two neighbours
    rne = nvfp4.dequantize(*nvfp4.quantize(x, global_scale=1.0))
    assert ((d - x).abs() <= 2.0).all()
    mean = d.mean(0)
    # E2M1 spacing <= 2: per-draw std <= 1, so the mean of 2000 draws has std <= 0.023
    assert (mean - x[0]).abs().max() < 0.1
    # ... while round-to-nearest is biased on these inputs by far more, on average
    assert (mean - x[0]).abs().mean() < 0.25 * (rne[0] - x[0]).abs().mean()
