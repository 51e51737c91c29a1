"""NVFP4 skinny GEMV and one-pass dequantize (Triton interpreter on CPU) against their references."""

from __future__ import annotations

import pytest
import torch

from evalsuite.kernels import nvfp4
from evalsuite.kernels.triton import HAS_TRITON, TRITON_MISSING_REASON
from evalsuite.kernels.triton.nvfp4_gemm import nvfp4_gemm_ref

pytestmark = pytest.mark.skipif(not HAS_TRITON, reason=TRITON_MISSING_REASON or "triton missing")


def _case(m: int, n: int, k: int, dtype: torch.dtype, seed: int):
    g = torch.Generator().manual_seed(seed)
    w = torch.randn(n, k, generator=g) * torch.logspace(-2, 1, k)  # wide range: subnormal block scales
    x = torch.randn(m, k, generator=g).to(dtype)
    b = torch.randn(n, generator=g).to(dtype)
    return x, nvfp4.quantize(w), b


@pytest.mark.parametrize(
    "m, n, k, tile",
    [
        (1, 17, 32, (16, 32, 1)),  # odd N, one K block per program
        (2, 33, 96, (32, 64, 2)),  # K not a multiple of the K step; split-K
        (5, 40, 160, (16, 32, 4)),  # split-K with idle splits at the end
        (3, 24, 64, (16, 16, 3)),  # padded to the 16-row bucket
        (8, 24, 64, (16, 16, 3)),
        (9, 31, 128, (32, 64, 2)),
        (16, 48, 64, (16, 32, 1)),
    ],
)
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16])
def test_gemv_matches_reference(m, n, k, tile, dtype):
    from evalsuite.kernels.triton.nvfp4_gemv import nvfp4_gemv

    x, q, b = _case(m, n, k, dtype, seed=m * 100 + n + k)
    bn, bk, sk = tile
    fast = nvfp4_gemv(x, *q, bias=b, block_n=bn, block_k=bk, split_k=sk)
    ref = nvfp4_gemm_ref(x, *q, bias=b)
    print("max |fast - ref| =", (fast.float() - ref.float()).abs().max().item())
    assert fast.dtype == dtype and fast.shape == (m, n)
    tol = 1e-5 if dtype == torch.float32 else 2.0**-7 if dtype == torch.bfloat16 else 2.0**-10
    torch.testing.assert_close(fast.float(), ref.float(), rtol=tol, atol=tol * 4)


def test_gemv_without_bias_leading_dims_empty_and_too_many_rows():
    from evalsuite.kernels.triton.nvfp4_gemv import GEMV_MAX_M, nvfp4_gemv

    _, q, _ = _case(1, 16, 64, torch.float32, seed=3)
    x = torch.randn(2, 3, 64)
    torch.testing.assert_close(nvfp4_gemv(x, *q), nvfp4_gemm_ref(x, *q), rtol=1e-5, atol=1e-5)
    assert nvfp4_gemv(torch.randn(0, 64), *q).shape == (0, 16)
    with pytest.raises(ValueError, match=f"at most {GEMV_MAX_M} rows, got 17"):
        nvfp4_gemv(torch.randn(17, 64), *q)
    with pytest.raises(ValueError, match="block_k a power of two"):
        nvfp4_gemv(x, *q, block_n=16, block_k=48, split_k=1)


@pytest.fixture(params=[True, False], ids=["e4m3-convert", "bit-arithmetic"])
def e4m3_cvt(request, monkeypatch):
    """Both E4M3 decodes under the interpreter: the GPU's conversion (sm_89+, emulated) and the bit
    arithmetic that older GPUs compile (`kernels.triton.decode`)."""
    from evalsuite.kernels.triton import nvfp4_gemv as mod

    monkeypatch.setattr(mod, "e4m3_convert", lambda device: request.param)
    return request.param


def _every_code_and_scale(device: str, **tile: int) -> None:
    """Rows of the identity through a weight holding every E2M1 code in both nibbles of a byte and
    four E4M3 scales (a subnormal, the largest, a negative, a fraction): each output is one weight
    value, exact. One row at a time (the CUDA-core path, on sm_89+ GPUs the inline PTX decode), also in
    bf16 (fp16 products, `decode.E2M1X16_DOT_PTX`: a one-hot row's products and sums are exact too),
    2 and 16 rows (tensor cores)."""
    from evalsuite.kernels.triton.nvfp4_gemv import nvfp4_gemv

    codes = torch.arange(16, dtype=torch.uint8).repeat(2, 2)  # [2, 32]: every code, both nibbles
    qdata = nvfp4.pack_fp4(codes).to(device)
    scale_bits = torch.tensor([[0x01, 0x7E], [0xB8, 0x33]], dtype=torch.uint8)  # 2^-9, 448, -1, 0.6875
    scales = scale_bits.view(torch.float8_e4m3fn).to(device)
    gs = torch.tensor(0.5, device=device)
    eye = torch.eye(32, device=device)
    expected = nvfp4.dequantize(qdata.cpu(), scales.cpu(), gs.cpu()).t()
    for rows in [eye[:16], eye[16:], eye[3:5]] + list(eye[:, None]):
        y = nvfp4_gemv(rows, qdata, scales, gs, **tile)
        assert torch.equal(y.cpu(), rows.cpu() @ expected)
    for row in eye[:, None].to(torch.bfloat16):  # every value is exact in bf16 (<= 5 significant bits)
        y = nvfp4_gemv(row, qdata, scales, gs, **tile)
        assert torch.equal(y.cpu().float(), row.cpu().float() @ expected)


def test_gemv_decodes_every_code_and_scale_exactly(e4m3_cvt):
    _every_code_and_scale("cpu", block_n=16, block_k=16, split_k=2)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.gpu
@pytest.mark.parametrize("tile", [{}, {"block_n": 16, "block_k": 16, "split_k": 2}], ids=["autotuned", "16x16"])
def test_gemv_on_gpu_decodes_every_code_and_scale_exactly(tile):
    _every_code_and_scale("cuda", **tile)


def test_dequantize_kernel_equals_the_codec(e4m3_cvt):
    from evalsuite.kernels.triton.nvfp4_gemv import nvfp4_dequantize_triton

    g = torch.Generator().manual_seed(7)
    w = torch.randn(37, 96, generator=g) * torch.logspace(-3, 1, 96)
    q = nvfp4.quantize(w)
    fast = nvfp4_dequantize_triton(*q, dtype=torch.float32, block_n=16, block_k=64)
    assert torch.equal(fast, nvfp4.dequantize(*q))
    # the interpreter casts fp32 -> bf16 by truncation (a GPU rounds to nearest): within one ulp
    for dtype, ulp in ((torch.bfloat16, 2.0**-7), (torch.float16, 2.0**-10)):
        fast = nvfp4_dequantize_triton(*q, dtype=dtype, block_n=16, block_k=64)
        assert fast.dtype == dtype
        torch.testing.assert_close(fast.float(), nvfp4.dequantize(*q), rtol=ulp, atol=1e-7)
    nan_scale = torch.full((16, 2), 0x7F, dtype=torch.uint8).view(torch.float8_e4m3fn)
    assert nvfp4_dequantize_triton(q.qdata[:16, :16], nan_scale, q.global_scale, block_k=16).isnan().all()


def test_one_row_path_refuses_several_rows():
    """The CUDA-core path (``USE_DOT`` off) keeps one row's sums per word across K steps: a launch
    with more rows is refused, not silently summed into one."""
    from evalsuite.kernels.triton import nvfp4_gemv as mod

    x, q, b = _case(3, 20, 64, torch.float32, seed=11)
    y = torch.zeros(3, 20)
    ws, counters = mod.split_k_buffers(x.device, 3, 20, 2)
    gs = q.global_scale.reshape(1)
    with pytest.raises(Exception, match="one row"):
        mod._kernel("gemv", "interpret")[(2, 2)](
            x, q.qdata, q.block_scales.view(torch.uint8), gs, b, y, ws, counters, 3, 20, 64, 32,
            x.stride(0), x.stride(1), q.qdata.stride(0), q.block_scales.stride(0),
            HAS_BIAS=True, BLOCK_M=4, USE_DOT=False, DOT_FP32=True, INTERPRET=True, E4M3_CVT=True, WORD_PTX=False,
            F16_PRODUCTS=False, SCALE_WORDS=False, BLOCK_N=16, BLOCK_K=32, SPLIT_K=2,
        )  # fmt: skip


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_one_row_fp16_products_against_fp32_products_and_the_reference(dtype):
    """One row of bf16/fp16 activations multiplies in fp16 by default (`decode.e2m1_block_dot`): the
    result stays within the output format's rounding of both the fp32-product kernel and the
    reference, K split or not, over weights whose block scales span subnormals to large."""
    from evalsuite.kernels.triton.nvfp4_gemv import nvfp4_gemv

    x, q, b = _case(1, 40, 512, dtype, seed=5)
    ulp = 2.0**-8 if dtype == torch.bfloat16 else 2.0**-11
    ref = nvfp4_gemm_ref(x, *q, bias=b).float()
    for tile in ((16, 64, 1), (32, 128, 3)):
        bn, bk, sk = tile
        f16 = nvfp4_gemv(x, *q, bias=b, block_n=bn, block_k=bk, split_k=sk).float()
        f32 = nvfp4_gemv(x, *q, bias=b, block_n=bn, block_k=bk, split_k=sk, f16_products=False).float()
        scale = ref.abs().max().item()
        assert (f16 - f32).abs().max().item() <= 2 * ulp * scale, tile
        assert (f16 - ref).abs().max().item() <= 2 * ulp * scale, tile


MAGNITUDES = [1e-30, 1e-6, 1e-4, 1e-2, 1.0, 1e4, 1e8, 1e30]


def _fp16_products_at(magnitude: float, device: str, tiles: list[dict[str, int]]) -> None:
    """One row of bf16 activations ``randn * magnitude`` (then one outlier 1e5 times larger) within two
    bf16 units in the last place of the largest output of the reference, on every tile."""
    from evalsuite.kernels.triton.nvfp4_gemv import nvfp4_gemv

    x, q, _ = _case(1, 32, 256, torch.float32, seed=9)
    x = (x * magnitude).to(torch.bfloat16)
    q = tuple(t.to(device) for t in q)
    for outlier in (False, True):
        if outlier:
            x[0, 5] = magnitude * 1e5  # its block's others keep their precision
        ref = nvfp4_gemm_ref(x, *(t.cpu() for t in q)).float()
        for tile in tiles:
            y = nvfp4_gemv(x.to(device), *q, **tile).float().cpu()
            assert (y - ref).abs().max().item() <= 2 * 2.0**-8 * ref.abs().max().item(), (tile, outlier)


@pytest.mark.parametrize("magnitude", MAGNITUDES)
def test_one_row_fp16_products_hold_at_every_activation_magnitude(magnitude):
    """Each block of sixteen activations enters the fp16 products scaled by its own power of two
    (`decode.x_f16_pairs`): as accurate at 1e-30 or 1e30 as at 1, where a fixed scale (2^-4, before)
    put products of activations near 1e-4 into fp16's subnormals (15 bf16 units in the last place
    off) and overflowed past 2^20; a large activation beside ordinary ones loses them nothing."""
    tiles = [dict(block_n=16, block_k=64, split_k=1), dict(block_n=32, block_k=128, split_k=2)]
    _fp16_products_at(magnitude, "cpu", tiles)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.gpu
@pytest.mark.parametrize("magnitude", MAGNITUDES)
def test_one_row_fp16_products_on_gpu_hold_at_every_activation_magnitude(magnitude):
    """The same on a GPU: the inline PTX products (sm_89+) and the compiled per-block scaling (two
    explicit tiles: each compiles once for every magnitude, where autotuning would compile nine)."""
    tiles = [dict(block_n=32, block_k=256, split_k=2), dict(block_n=64, block_k=128, split_k=1)]
    _fp16_products_at(magnitude, "cuda", tiles)


def test_one_row_fp16_products_pass_inf_and_nan_on():
    """A non-finite activation makes the outputs it meets non-finite, as in the reference; the
    other K splits' outputs are unaffected only where the reference's are."""
    from evalsuite.kernels.triton.nvfp4_gemv import nvfp4_gemv

    x, q, _ = _case(1, 16, 64, torch.float32, seed=3)
    x = x.to(torch.bfloat16)
    for bad in (float("inf"), float("nan")):
        x[0, 7] = bad
        y = nvfp4_gemv(x, *q, block_n=16, block_k=64, split_k=1).float()
        ref = nvfp4_gemm_ref(x, *q).float()
        assert torch.equal(torch.isfinite(y), torch.isfinite(ref)) and not torch.isfinite(y).all()


def test_fp16_products_are_refused_where_they_do_not_apply():
    from evalsuite.kernels.triton.nvfp4_gemv import nvfp4_gemv

    _, q, _ = _case(1, 16, 64, torch.float32, seed=3)
    with pytest.raises(ValueError, match="one row of bf16/fp16 activations, got 2 rows of torch.bfloat16"):
        nvfp4_gemv(torch.randn(2, 64).to(torch.bfloat16), *q, f16_products=True)
    with pytest.raises(ValueError, match="got 1 rows of torch.float32"):
        nvfp4_gemv(torch.randn(1, 64), *q, f16_products=True)


def test_packed_weight_at_an_odd_address_is_read_from_an_aligned_copy():
    """The kernels read the packed weight as int32 words; a view that starts mid-word (which a GPU
    would fault on) is copied first, and a weight as allocated is used as it is."""
    from evalsuite.kernels.triton.decode import word_aligned
    from evalsuite.kernels.triton.nvfp4_gemv import nvfp4_gemv

    x, q, b = _case(1, 24, 64, torch.float32, seed=5)
    buf = torch.zeros(q.qdata.numel() + 1, dtype=torch.uint8)
    odd = buf[1:].view(q.qdata.shape)
    odd.copy_(q.qdata)
    assert odd.data_ptr() % 4 == 1
    moved = word_aligned(odd)
    assert moved.data_ptr() % 4 == 0 and torch.equal(moved, odd)
    assert word_aligned(q.qdata) is q.qdata
    assert word_aligned(q.qdata[:, :16]).stride() == (32, 1)  # rows 32 bytes apart: as it is
    assert word_aligned(torch.zeros(4, 34, dtype=torch.uint8)[:, :32]).stride() == (32, 1)  # 34: copied
    y = nvfp4_gemv(x, odd, q.block_scales, q.global_scale, b)
    torch.testing.assert_close(y, nvfp4_gemm_ref(x, *q, bias=b), rtol=1e-5, atol=1e-5)


def test_tuned_tile_reads_the_autotuners_choice(monkeypatch):
    """`tuned_tile` finds the tile the autotuner picked for (N, K, row bucket), for running another
    variant of the kernel on it (bench-gpu's ``use_ptx=False`` row); none before tuning, none of 8 warps."""
    import triton

    from evalsuite.kernels.triton import nvfp4_gemv as mod

    tuner = mod._kernel("gemv", "autotune")
    monkeypatch.setattr(tuner, "cache", {
        (96, 128, 1, "torch.bfloat16", "torch.int32"): triton.Config({"BLOCK_N": 32, "BLOCK_K": 256, "SPLIT_K": 4}, num_warps=4),
        (96, 128, 16, "torch.bfloat16"): triton.Config({"BLOCK_N": 64, "BLOCK_K": 128, "SPLIT_K": 2}, num_warps=8),
    })  # fmt: skip
    assert mod.tuned_tile(96, 128, 1) == {"block_n": 32, "block_k": 256, "split_k": 4}
    assert mod.tuned_tile(96, 128, 5) is None  # the 16-row bucket's tile has 8 warps
    assert mod.tuned_tile(64, 128, 1) is None


if HAS_TRITON:
    import triton.language as tl

    from evalsuite.kernels.triton.nvfp4_gemv import split_k_store

    def _store_one_split(acc_ptr, y_ptr, ws_ptr, cnt_ptr, M, N, SPLIT_K: tl.constexpr, BLOCK_N: tl.constexpr):
        offs_m = tl.arange(0, 1)
        offs_n = tl.arange(0, BLOCK_N)
        mask = (offs_m[:, None] < M) & (offs_n[None, :] < N)
        acc = tl.load(acc_ptr + offs_m[:, None] * N + offs_n[None, :], mask=mask, other=0.0)
        split_k_store(acc, y_ptr, ws_ptr, cnt_ptr, offs_m, offs_n, mask, M, N, SPLIT_K)


def test_split_k_store_the_last_to_arrive_adds_the_partials_in_split_order():
    """Whichever split takes the last ticket sums every split's partial (0, 1, 2, ...) and writes y;
    the others only leave their partial. Here split 0 arrives last: splits 1-3 are already in the
    workspace and the tile's counter reads 3."""
    from evalsuite.kernels.triton import build_kernel
    from evalsuite.kernels.triton.nvfp4_gemv import split_k_buffers

    n, splits = 10, 4
    g = torch.Generator().manual_seed(2)
    parts = torch.randn(splits, 1, n, generator=g) * torch.tensor([1e8, 1.0, -1e8, 3.0])[:, None, None]
    ws, _ = split_k_buffers(torch.device("cpu"), 1, n, splits)
    counters = torch.zeros(4, dtype=torch.int32)
    ws.view(splits, 1, n)[1:] = parts[1:]
    counters[0] = splits - 1
    y = torch.full((1, n), float("nan"))
    kernel = build_kernel(_store_one_split, "interpret")
    kernel[(1, 1)](parts[0].clone(), y, ws, counters, 1, n, SPLIT_K=splits, BLOCK_N=16)
    expected = ((parts[0] + parts[1]) + parts[2]) + parts[3]  # split order (magnitudes 1e8 and 1: order shows)
    assert torch.equal(y, expected) and counters.tolist() == [0, 0, 0, 0]
    # not the last: its partial stored, y untouched, one more ticket taken
    counters[0] = 1
    y2 = torch.full((1, n), float("nan"))
    kernel[(1, 1)](parts[0].clone(), y2, ws, counters, 1, n, SPLIT_K=splits, BLOCK_N=16)
    assert y2.isnan().all() and counters[0] == 2 and torch.equal(ws.view(splits, 1, n)[0], parts[0])


def test_a_gemv_call_leaves_the_counters_at_zero_and_writes_its_dtype():
    from evalsuite.kernels.triton.nvfp4_gemv import _COUNTERS, nvfp4_gemv

    x, q, b = _case(1, 40, 128, torch.bfloat16, seed=9)
    for split in (1, 3):
        y = nvfp4_gemv(x, *q, b, block_n=16, block_k=32, split_k=split)
        assert y.dtype == torch.bfloat16
        torch.testing.assert_close(y.float(), nvfp4_gemm_ref(x, *q, bias=b).float(), rtol=2**-7, atol=1e-2)
        assert int(_COUNTERS["cpu"].abs().sum()) == 0


def test_the_split_k_workspace_covers_every_autotune_config():
    """Autotuned calls size the split-K partials by GEMV_MAX_SPLIT_K: no config of either GEMV may
    split K further (its partials would run past the workspace)."""
    from evalsuite.kernels.triton import fp8_gemv, nvfp4_gemv

    for mod in (nvfp4_gemv, fp8_gemv):
        assert max(c.kwargs["SPLIT_K"] for c in mod._autotune_configs()) <= nvfp4_gemv.GEMV_MAX_SPLIT_K


def _distinct_scale_blocks(device: str) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """A weight [8, 256] of every E2M1 code whose 16 scale blocks a row all have different E4M3
    scales (`nvfp4_cases.distinct_block_scales`), and what it dequantizes to."""
    from nvfp4_cases import distinct_block_scales

    qdata, scales = distinct_block_scales(8)
    gs = torch.tensor(0.25)
    return qdata.to(device), scales.to(device), gs.to(device), nvfp4.dequantize(qdata, scales, gs)


def test_scale_words_are_used_where_the_layout_allows_them():
    from evalsuite.kernels.triton.decode import scale_words

    buf = torch.zeros(8 * 17, dtype=torch.uint8)
    assert scale_words(buf[:64].view(8, 8), 128) and scale_words(buf[:16].view(1, 16), 256)
    assert not scale_words(buf[:48].view(8, 6), 96)  # K not a multiple of 64: a row ends mid-word
    assert not scale_words(buf[1:65].view(8, 8), 128)  # a row starts off a 4-byte boundary
    assert not scale_words(buf[:136].view(8, 17)[:, :8], 128)  # rows 17 bytes apart
    assert not scale_words(buf[:128].view(8, 16)[:, ::2], 128)  # blocks not contiguous


@pytest.mark.parametrize("block_k", [64, 128, 256])
def test_one_row_reads_scale_words_in_block_order(block_k):
    """One-hot rows through a weight whose sixteen blocks a row have sixteen different scales: each
    output is one weight value times its own block's scale, exactly, whether the scales are read a
    word of four at a time (K = 256: every tile here) or a byte at a time (the same scales at an
    address off a 4-byte boundary)."""
    from evalsuite.kernels.triton.nvfp4_gemv import nvfp4_gemv

    qdata, scales, gs, w = _distinct_scale_blocks("cpu")
    odd = torch.empty(scales.numel() + 1, dtype=torch.uint8)[1:].view(scales.shape)
    odd.copy_(scales.view(torch.uint8))
    for k in (0, 17, 100, 255):
        row = torch.zeros(1, 256, dtype=torch.bfloat16)
        row[0, k] = 1.0
        for s in (scales, odd.view(torch.float8_e4m3fn)):
            y = nvfp4_gemv(row, qdata, s, gs, block_n=16, block_k=block_k, split_k=2)
            assert torch.equal(y.float()[0], w[:, k].to(torch.bfloat16).float()), (k, block_k)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.gpu
def test_one_row_on_gpu_reads_scale_words_in_block_order():
    from evalsuite.kernels.triton.nvfp4_gemv import nvfp4_gemv

    qdata, scales, gs, w = _distinct_scale_blocks("cuda")
    eye = torch.eye(256, dtype=torch.bfloat16, device="cuda")
    for k in range(0, 256, 5):
        y = nvfp4_gemv(eye[k:k + 1], qdata, scales, gs, block_n=32, block_k=128, split_k=2)
        assert torch.equal(y.float().cpu()[0], w[:, k].to(torch.bfloat16).float()), k
