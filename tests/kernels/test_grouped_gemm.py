"""Grouped NVFP4 / FP8 GEMM over expert-sorted rows (Triton interpreter on CPU, compiled on CUDA) against
its reference, which is each expert's segment through its format's own reference matmul."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from evalsuite.kernels import fp8, nvfp4
from evalsuite.kernels.triton import HAS_TRITON, TRITON_MISSING_REASON
from evalsuite.kernels.triton.fp8_gemv import fp8_gemv_ref
from evalsuite.kernels.triton.grouped_gemm import (AUTOTUNE_CONFIGS, ONE_ROW_CONFIGS, grouped_gemm, grouped_gemm_ref,
                                                   tile_table, worst_case_tiles)
from evalsuite.kernels.triton.nvfp4_gemm import nvfp4_gemm_ref

if HAS_TRITON:
    import triton.language as tl

    from evalsuite.kernels.triton.grouped_gemm import tile_of

pytestmark = pytest.mark.skipif(not HAS_TRITON, reason=TRITON_MISSING_REASON or "triton missing")
CUDA = torch.cuda.is_available()


def _offsets(counts: list[int], device: str = "cpu") -> torch.Tensor:
    return F.pad(torch.tensor(counts, device=device).cumsum(0), (1, 0))  # [E+1]


def _nvfp4_stack(e: int, n: int, k: int, seed: int, device: str = "cpu"):
    g = torch.Generator().manual_seed(seed)
    # experts of different magnitudes (different global scales), wide range within each (subnormal block scales)
    ws = [torch.randn(n, k, generator=g) * torch.logspace(-2, 1, k) * 2.0**i for i in range(e)]
    qs = [nvfp4.quantize(w) for w in ws]
    stack = (torch.stack([q.qdata for q in qs]), torch.stack([q.block_scales for q in qs]),
             torch.stack([q.global_scale for q in qs]))  # fmt: skip
    return tuple(t.to(device) for t in stack), qs


def _fp8_stack(e: int, n: int, k: int, seed: int, granularity: str, device: str = "cpu"):
    g = torch.Generator().manual_seed(seed)
    qs = [fp8.quantize(torch.randn(n, k, generator=g) * 2.0**i, granularity) for i in range(e)]  # type: ignore[arg-type]
    scales = torch.stack([q.scales.reshape(-1).expand(n) for q in qs])  # [E, N]
    return (torch.stack([q.qdata for q in qs]).to(device), scales.to(device)), qs


def test_tile_table_maps_each_tile_to_its_expert_and_first_row():
    offsets = _offsets([5, 0, 1, 16, 0])  # tiles of 4 rows: expert 0 two, expert 2 one, expert 3 four
    expert, first = tile_table(offsets, n_rows=22, block_m=4)
    assert expert.shape[0] == worst_case_tiles(22, 5, 4) == 6 + 5
    assert expert.tolist() == [0, 0, 2, 3, 3, 3, 3, -1, -1, -1, -1]
    assert first.tolist() == [0, 4, 5, 6, 10, 14, 18, 0, 0, 0, 0]
    assert worst_case_tiles(3, 128, 16) == 1 + 3  # at most one tile per row, not one per expert
    assert worst_case_tiles(3, 128, 1) == 3  # one-row tiles are never partial


def _write_tiles(off_ptr, e_ptr, first_ptr, E, E_PAD: tl.constexpr, BLOCK_M: tl.constexpr):
    t = tl.program_id(0)
    e, first = tile_of(off_ptr, t, E, E_PAD, BLOCK_M)
    tl.store(e_ptr + t, e)
    tl.store(first_ptr + t, first)


@pytest.mark.parametrize("counts, block_m", [
    ([5, 0, 1, 16, 0], 4), ([3, 0, 1, 0, 2], 1), ([0, 0, 7, 0], 16), ([1] * 20, 16), ([0] * 19 + [40], 16), ([33, 0, 0, 64, 2], 64),
])  # fmt: skip
def test_the_kernels_tile_map_equals_tile_table(counts, block_m):
    """`tile_of` (each program finds its expert and first row from the offsets) against `tile_table`,
    its PyTorch reference, over the whole worst-case grid: empty experts, more experts than E_PAD's
    floor of 16, every row in the last expert."""
    from evalsuite.kernels.triton import build_kernel

    offsets = _offsets(counts)
    rows, n_experts = sum(counts), len(counts)
    expert, first = tile_table(offsets, rows, block_m)
    got_e = torch.full_like(expert, 99)
    got_first = torch.full_like(first, 99)
    e_pad = max(16, 1 << (n_experts - 1).bit_length())
    build_kernel(_write_tiles, "interpret")[(expert.shape[0],)](offsets, got_e, got_first, n_experts, E_PAD=e_pad,
                                                                BLOCK_M=block_m)  # fmt: skip
    assert got_e.tolist() == expert.tolist()
    real = expert >= 0
    assert got_first[real].tolist() == first[real].tolist()


@pytest.mark.parametrize("counts", [[3, 0, 20, 1], [0, 0, 7, 0], [17, 16, 1, 33]])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("with_bias", [False, True])
@pytest.mark.parametrize("cvt", [True, False], ids=["e4m3-convert", "bit-arithmetic"])
def test_nvfp4_grouped_matches_reference_and_per_expert_gemm(counts, dtype, with_bias, cvt, monkeypatch):
    from evalsuite.kernels.triton import grouped_gemm as mod

    monkeypatch.setattr(mod, "e4m3_convert", lambda device: cvt)  # both E4M3 decodes (kernels.triton.decode)
    e, n, k = len(counts), 40, 96  # N not a multiple of the tile, K not a multiple of the K step
    (qdata, scales, gs), qs = _nvfp4_stack(e, n, k, seed=sum(counts))
    g = torch.Generator().manual_seed(1)
    x = torch.randn(sum(counts), k, generator=g).to(dtype)
    bias = torch.randn(e, n, generator=g).to(dtype) if with_bias else None
    offsets = _offsets(counts)
    fast = grouped_gemm(x, offsets, qdata, scales, gs, bias, block_m=16, block_n=32, block_k=64)
    ref = grouped_gemm_ref(x, offsets, qdata, scales, gs, bias)
    print("max |fast - ref| =", (fast.float() - ref.float()).abs().max().item())
    assert fast.dtype == dtype and fast.shape == (sum(counts), n) and ref.abs().max() > 1
    tol = 1e-5 if dtype == torch.float32 else 2.0**-7  # fp32: summation order; bf16: one output rounding
    torch.testing.assert_close(fast.float(), ref.float(), rtol=tol, atol=tol * ref.abs().max().item())
    # the reference is the single-expert reference, segment by segment
    lo = 0
    for i, c in enumerate(counts):
        one = nvfp4_gemm_ref(x[lo:lo + c], *qs[i], None if bias is None else bias[i])
        assert torch.equal(ref[lo:lo + c], one)
        lo += c


@pytest.mark.parametrize("granularity", ["tensor", "channel"])
@pytest.mark.parametrize("w8a8", [False, True])
@pytest.mark.parametrize("cvt", [True, False], ids=["e4m3-convert", "bit-arithmetic"])
def test_fp8_grouped_matches_reference(granularity, w8a8, cvt, monkeypatch):
    from evalsuite.kernels.triton import grouped_gemm as mod

    monkeypatch.setattr(mod, "e4m3_convert", lambda device: cvt)
    counts = [4, 0, 9, 2, 0]
    e, n, k = len(counts), 24, 80
    (qdata, scales), qs = _fp8_stack(e, n, k, seed=7, granularity=granularity)
    g = torch.Generator().manual_seed(2)
    x = torch.randn(sum(counts), k, generator=g)
    bias = torch.randn(e, n, generator=g)
    offsets = _offsets(counts)
    x_scale = None
    if w8a8:  # the activation codes' values with one scale per row, as the grouped FP8 layer passes them
        xq, x_scale = fp8.quantize(x, "token")
        x = xq.float()
    fast = grouped_gemm(x, offsets, qdata, scales, None, bias, x_scale, block_m=16, block_n=16, block_k=32)
    ref = grouped_gemm_ref(x, offsets, qdata, scales, None, bias, x_scale)
    print("max |fast - ref| =", (fast - ref).abs().max().item())
    torch.testing.assert_close(fast, ref, rtol=1e-5, atol=1e-4)
    lo = 0
    for i, c in enumerate(counts):  # weight-only: each segment is fp8_gemv_ref against its expert
        xs = x[lo:lo + c] if x_scale is None else x[lo:lo + c] * x_scale[lo:lo + c]
        torch.testing.assert_close(ref[lo:lo + c], fp8_gemv_ref(xs, qs[i].qdata, qs[i].scales, bias[i]))
        lo += c


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_fp8_grouped_picks_w8a16_or_w8a8_per_expert(dtype):
    """With ``x_w8a16``, an expert of at most ``w8a16_max_rows`` rows is weight-only on the unquantized
    rows, the others W8A8 on the codes: each segment equals that expert's own `FP8Linear` rule."""
    counts = [20, 0, 3, 16, 17, 1]  # 16 rows: W8A16 (at the bound), 17 and 20: W8A8
    e, n, k = len(counts), 24, 64
    (qdata, scales), qs = _fp8_stack(e, n, k, seed=11, granularity="channel")
    g = torch.Generator().manual_seed(4)
    x = torch.randn(sum(counts), k, generator=g).to(dtype)
    bias = torch.randn(e, n, generator=g)
    xq, x_scale = fp8.quantize(x.float(), "token")
    codes = xq.to(dtype)
    offsets = _offsets(counts)
    fast = grouped_gemm(codes, offsets, qdata, scales, None, bias, x_scale, x_w8a16=x, w8a16_max_rows=16,
                        block_m=16, block_n=16, block_k=32)
    ref = grouped_gemm_ref(codes, offsets, qdata, scales, None, bias, x_scale, x_w8a16=x, w8a16_max_rows=16)
    assert fast.dtype == dtype and ref.abs().max() > 1
    tol = 1e-5 if dtype == torch.float32 else 2.0**-7
    torch.testing.assert_close(fast.float(), ref.float(), rtol=tol, atol=tol * ref.abs().max().item())
    lo = 0
    for i, c in enumerate(counts):
        seg = x[lo:lo + c].float() if c <= 16 else codes[lo:lo + c].float() * x_scale[lo:lo + c]
        one = fp8_gemv_ref(seg, qs[i].qdata, qs[i].scales, bias[i]).to(dtype)
        assert torch.equal(ref[lo:lo + c], one), i
        lo += c
    # the two forms differ (the codes round the activations), so the choice is visible per expert
    w8a8 = grouped_gemm_ref(codes, offsets, qdata, scales, None, bias, x_scale)
    w8a16 = grouped_gemm_ref(x, offsets, qdata, scales, None, bias)
    for i, c in enumerate(counts):
        lo = sum(counts[:i])
        if c:
            assert torch.equal(ref[lo:lo + c], (w8a16 if c <= 16 else w8a8)[lo:lo + c])
            assert not torch.equal(ref[lo:lo + c], (w8a8 if c <= 16 else w8a16)[lo:lo + c])


@pytest.mark.parametrize("counts", [[1, 0, 1, 1, 0, 1], [2, 0, 1, 0, 0, 3], [0, 0, 0, 0, 0, 4]])
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
@pytest.mark.parametrize("with_bias", [False, True])
@pytest.mark.parametrize("cvt", [True, False], ids=["e4m3-convert", "bit-arithmetic"])
def test_nvfp4_one_row_tiles_match_the_reference_and_the_16_row_tiles(counts, dtype, with_bias, cvt, monkeypatch):
    """One-row tiles (``block_m=1``: a program per row, fp16 products on the CUDA cores, as the
    one-row GEMV): single rows, an expert with several rows (one tile each), empty experts, and K
    not a multiple of the K step; within one output rounding of the reference and of 16-row tiles."""
    from evalsuite.kernels.triton import grouped_gemm as mod

    monkeypatch.setattr(mod, "e4m3_convert", lambda device: cvt)
    e, n, k = len(counts), 40, 96
    (qdata, scales, gs), _ = _nvfp4_stack(e, n, k, seed=sum(counts) + 7)
    g = torch.Generator().manual_seed(2)
    x = torch.randn(sum(counts), k, generator=g).to(dtype)
    bias = torch.randn(e, n, generator=g).to(dtype) if with_bias else None
    offsets = _offsets(counts)
    one = grouped_gemm(x, offsets, qdata, scales, gs, bias, block_m=1, block_n=16, block_k=64).float()
    tiled = grouped_gemm(x, offsets, qdata, scales, gs, bias, block_m=16, block_n=32, block_k=64).float()
    ref = grouped_gemm_ref(x, offsets, qdata, scales, gs, bias).float()
    ulp = (2.0**-8 if dtype == torch.bfloat16 else 2.0**-11) * ref.abs().max().item()
    assert (one - ref).abs().max().item() <= 2 * ulp and (one - tiled).abs().max().item() <= 2 * ulp


def test_one_row_tiles_are_the_default_at_a_row_per_expert_and_refused_where_they_do_not_apply():
    counts, n, k = [1, 0, 2, 1], 24, 64
    (qdata, scales, gs), _ = _nvfp4_stack(len(counts), n, k, seed=6)
    x = torch.randn(sum(counts), k, generator=torch.Generator().manual_seed(5)).to(torch.bfloat16)
    offsets = _offsets(counts)
    default = grouped_gemm(x, offsets, qdata, scales, gs, block_n=32, block_k=64)
    assert torch.equal(default, grouped_gemm(x, offsets, qdata, scales, gs, block_m=1, block_n=32, block_k=64))
    with pytest.raises(ValueError, match="one-row tiles .* got nvfp4 and torch.float32"):
        grouped_gemm(x.float(), offsets, qdata, scales, gs, block_m=1)
    (q8, s8), _ = _fp8_stack(len(counts), n, k, seed=3, granularity="channel")
    with pytest.raises(ValueError, match="one-row tiles .* got fp8 and torch.bfloat16"):
        grouped_gemm(x, offsets, q8, s8, None, block_m=1)


@pytest.mark.parametrize("device", ["cpu", pytest.param("cuda", marks=[
    pytest.mark.gpu, pytest.mark.skipif(not CUDA, reason="needs a CUDA GPU")])])  # fmt: skip
@pytest.mark.parametrize("magnitude", [1e-20, 1e-4, 1e20])
def test_one_row_tiles_hold_at_every_activation_magnitude(magnitude, device):
    """The one-row tiles' fp16 products scale each block of sixteen activations by its own power of
    two (`decode.x_f16_pairs`), as the one-row GEMV: tiny and huge activations as accurate as unit ones."""
    counts, n, k = [1, 0, 2, 1], 24, 64
    (qdata, scales, gs), _ = _nvfp4_stack(len(counts), n, k, seed=6)
    x = (torch.randn(sum(counts), k, generator=torch.Generator().manual_seed(5)) * magnitude).to(torch.bfloat16)
    offsets = _offsets(counts)
    fast = grouped_gemm(x.to(device), offsets.to(device), *(t.to(device) for t in (qdata, scales, gs)), block_m=1,
                        block_n=16, block_k=64).float().cpu()  # fmt: skip
    ref = grouped_gemm_ref(x, offsets, qdata, scales, gs).float()
    assert (fast - ref).abs().max().item() <= 2 * 2.0**-8 * ref.abs().max().item()


@pytest.mark.parametrize("block_k", [64, 256])
def test_one_row_tiles_read_scale_words_in_block_order(block_k):
    """One-hot rows, one per expert, through experts whose sixteen blocks a row carry sixteen
    different scales (K = 256: the one-row tiles read them four to a word): each output is one
    weight value times its own block's scale and its expert's global scale, exactly."""
    from nvfp4_cases import distinct_block_scales

    e, n, k = 3, 16, 256
    experts = [distinct_block_scales(n, roll=3 * i) for i in range(e)]
    qdata, scales = torch.stack([q for q, _ in experts]), torch.stack([s for _, s in experts])
    gs = torch.tensor([0.25, 2.0, 0.5])
    cols = [20, 40, 230]  # one activation per expert, in blocks 1, 2 and 14 (bytes 1, 2, 2 of a word)
    x = torch.zeros(e, k, dtype=torch.bfloat16)
    for i, c in enumerate(cols):
        x[i, c] = 1.0
    y = grouped_gemm(x, _offsets([1] * e), qdata, scales, gs, block_m=1, block_n=16, block_k=block_k).float()
    for i, c in enumerate(cols):
        w = nvfp4.dequantize(qdata[i], scales[i], gs[i])
        assert torch.equal(y[i], w[:, c].to(torch.bfloat16).float()), (i, c)


@pytest.mark.parametrize("tile", sorted({(bn, bk) for bn, bk, _, _ in ONE_ROW_CONFIGS}))
def test_every_one_row_autotune_tile_matches_the_reference(tile):
    bn, bk = tile
    counts, n, k = [1, 0, 1, 2], 40, 96
    offsets = _offsets(counts)
    x = torch.randn(sum(counts), k, generator=torch.Generator().manual_seed(1)).to(torch.bfloat16)
    (qdata, scales, gs), _ = _nvfp4_stack(len(counts), n, k, seed=2)
    fast = grouped_gemm(x, offsets, qdata, scales, gs, block_m=1, block_n=bn, block_k=bk).float()
    ref = grouped_gemm_ref(x, offsets, qdata, scales, gs).float()
    assert (fast - ref).abs().max().item() <= 2 * 2.0**-8 * ref.abs().max().item()


@pytest.mark.parametrize("counts", [[70, 0, 3], [2, 1, 0]])  # default tiles: 64 rows, and one-row at a row per expert
def test_default_tiles_and_fp16(counts):
    e, n, k = len(counts), 72, 128
    (qdata, scales, gs), _ = _nvfp4_stack(e, n, k, seed=5)
    x = torch.randn(sum(counts), k, generator=torch.Generator().manual_seed(3)).half()
    offsets = _offsets(counts)
    fast, ref = grouped_gemm(x, offsets, qdata, scales, gs), grouped_gemm_ref(x, offsets, qdata, scales, gs)
    assert fast.dtype == torch.float16
    torch.testing.assert_close(fast.float(), ref.float(), rtol=2.0**-10, atol=2.0**-10 * ref.abs().max().item())


@pytest.mark.parametrize("tile", sorted({(bn, bk) for bn, bk, _, _ in AUTOTUNE_CONFIGS}))
def test_every_autotune_tile_matches_the_reference(tile):
    """Each column tile the CUDA autotuner may pick, run under the interpreter (K = 96 is not a
    multiple of the wider K steps: the masked tail), NVFP4 and FP8 W8A16."""
    bn, bk = tile
    counts, n, k = [5, 0, 17], 40, 96
    offsets = _offsets(counts)
    x = torch.randn(sum(counts), k, generator=torch.Generator().manual_seed(1))
    (qdata, scales, gs), _ = _nvfp4_stack(len(counts), n, k, seed=2)
    fast = grouped_gemm(x, offsets, qdata, scales, gs, block_n=bn, block_k=bk)
    ref = grouped_gemm_ref(x, offsets, qdata, scales, gs)
    torch.testing.assert_close(fast, ref, rtol=1e-5, atol=1e-5 * ref.abs().max().item())
    (q8, s8), _ = _fp8_stack(len(counts), n, k, seed=3, granularity="channel")
    fast = grouped_gemm(x, offsets, q8, s8, None, block_n=bn, block_k=bk)
    ref = grouped_gemm_ref(x, offsets, q8, s8, None)
    torch.testing.assert_close(fast, ref, rtol=1e-5, atol=1e-5 * ref.abs().max().item())


def test_nvfp4_stack_at_an_odd_address():
    """The NVFP4 stack is read as int32 words: a view starting mid-word is copied (aligned) first."""
    counts, n, k = [3, 4], 24, 64
    (qdata, scales, gs), _ = _nvfp4_stack(len(counts), n, k, seed=8)
    odd = torch.zeros(qdata.numel() + 3, dtype=torch.uint8)[3:].view(qdata.shape)
    odd.copy_(qdata)
    assert odd.data_ptr() % 4 == 3
    x = torch.randn(sum(counts), k, generator=torch.Generator().manual_seed(4))
    offsets = _offsets(counts)
    torch.testing.assert_close(grouped_gemm(x, offsets, odd, scales, gs), grouped_gemm_ref(x, offsets, qdata, scales, gs),
                               rtol=1e-5, atol=1e-5)  # fmt: skip


def test_empty_input_and_one_line_errors():
    (qdata, scales, gs), _ = _nvfp4_stack(3, 16, 32, seed=0)
    offsets = _offsets([0, 0, 0])
    assert grouped_gemm(torch.randn(0, 32), offsets, qdata, scales, gs).shape == (0, 16)
    with pytest.raises(ValueError, match=r"expected x of shape \[A, 32\], got \(2, 16\)"):
        grouped_gemm(torch.randn(2, 16), offsets, qdata, scales, gs)
    with pytest.raises(ValueError, match="one global scale per expert"):
        grouped_gemm(torch.randn(2, 32), offsets, qdata, scales, gs[:2])
    with pytest.raises(ValueError, match=r"expected offsets of shape \(4,\)"):
        grouped_gemm(torch.randn(2, 32), offsets[:3], qdata, scales, gs)
    with pytest.raises(TypeError, match="expected stacked weights"):
        grouped_gemm(torch.randn(2, 32), offsets, qdata.float(), scales, gs)
    with pytest.raises(ValueError, match="give block_n and block_k together"):
        grouped_gemm(torch.randn(2, 32), offsets, qdata, scales, gs, block_n=32)
    with pytest.raises(ValueError, match="block_k must be a multiple of 32"):
        grouped_gemm(torch.randn(2, 32), offsets, qdata, scales, gs, block_n=32, block_k=48)
    with pytest.raises(ValueError, match="x_w8a16 goes with FP8 weights, x_scale"):
        grouped_gemm(torch.randn(2, 32), offsets, qdata, scales, gs, None, None, torch.randn(2, 32), 16)


@pytest.mark.skipif(not CUDA, reason="needs a CUDA GPU")
@pytest.mark.gpu
@pytest.mark.parametrize("counts", [[1, 0, 0, 2], [40, 3, 0, 90]])  # one-row tiles (3 rows, 4 experts), 64-row
def test_grouped_kernels_compiled_on_cuda(counts):
    e, n, k = len(counts), 256, 512
    (qdata, scales, gs), _ = _nvfp4_stack(e, n, k, seed=3, device="cuda")
    x = torch.randn(sum(counts), k, device="cuda", dtype=torch.bfloat16)
    offsets = _offsets(counts, "cuda")
    fast = grouped_gemm(x, offsets, qdata, scales, gs)
    ref = grouped_gemm_ref(x, offsets, qdata, scales, gs)
    torch.testing.assert_close(fast.float(), ref.float(), rtol=2.0**-7, atol=2.0**-5 * ref.abs().max().item())
    (q8, s8), _ = _fp8_stack(e, n, k, seed=4, granularity="channel", device="cuda")
    xq, xs = fp8.quantize(x, "token")
    fast = grouped_gemm(xq.to(torch.bfloat16), offsets, q8, s8, None, None, xs, out_dtype=torch.bfloat16)
    ref = grouped_gemm_ref(xq.float(), offsets, q8, s8, None, None, xs).to(torch.bfloat16)
    torch.testing.assert_close(fast.float(), ref.float(), rtol=2.0**-7, atol=2.0**-5 * ref.abs().max().item())
