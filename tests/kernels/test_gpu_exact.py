"""The decode GEMVs at 1, 2 and 16 rows, exactly, against an independent reference: the weight
dequantized by the pure-torch codecs (`kernels.nvfp4.dequantize`, `kernels.fp8.dequantize`) and
one fp32 matmul. On a GPU (marked ``gpu``: `bench/gpu_session.sh` runs them) the compiled kernels,
on sm_89+ with the inline PTX E2M1 decode (`decode.E2M1X8_PTX`, and `decode.E2M1X16_DOT_PTX` at one
row of bf16); on a CPU the same cases under Triton's interpreter.

Exact by construction: small-integer activations (|x| <= 3, exact in bf16), E2M1 codes times block
scales of at most two significant bits and a power-of-two global scale (every weight value has at
most four significant bits, exact in bf16 for the tensor-core path at 2..16 rows), FP8 weights of a
narrow exponent range and power-of-two scales. Every product and every partial sum is then a
multiple of one unit below 2^24 units, so the kernels' fp32 (and, at one row, fp16: sums of eight
products below 2^11 units) arithmetic is exact in any order and any K split, and the output is the
exact sum rounded once to the activations' dtype. (Triton's interpreter casts fp32 to bf16 by
truncation where a GPU rounds to nearest: the CPU cases expect that.)"""

from __future__ import annotations

import pytest
import torch

from evalsuite.kernels import fp8, nvfp4
from evalsuite.kernels.triton import HAS_TRITON, TRITON_MISSING_REASON, e4m3_convert

pytestmark = pytest.mark.skipif(not HAS_TRITON, reason=TRITON_MISSING_REASON or "triton missing")

CUDA = torch.cuda.is_available()
ON_GPU = [pytest.mark.gpu, pytest.mark.skipif(not CUDA, reason="needs a CUDA GPU")]
# (dtype, device): bf16 activations (the decode's) on both; fp32 under the interpreter only, where it
# adds the fp32-product path at one row (on a GPU the other tests' one-hot fp32 rows cover it), so the
# GPU session compiles few variants (each explicit tile compiles once per row bucket)
CASES = [pytest.param(torch.bfloat16, "cpu", id="bf16-cpu"), pytest.param(torch.float32, "cpu", id="fp32-cpu"),
         pytest.param(torch.bfloat16, "cuda", id="bf16-cuda", marks=ON_GPU)]  # fmt: skip
ROWS = (1, 2, 16)  # the one-row CUDA-core path, and 2 and 16 rows padded to the 16-row tensor-core tile
N, K = 80, 512  # N not a multiple of the tile's 32 (masked columns); K a multiple of 64 (scale words at one row)
TILE = dict(block_n=32, block_k=128, split_k=2)  # explicit: one compile per row bucket, no autotuning
# E4M3 block scales of at most two significant bits, two of them negative
SCALES = (0.25, 0.375, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, -1.0, -0.75)


def _activations(m: int, dtype: torch.dtype, g: torch.Generator) -> torch.Tensor:
    x = torch.randint(-3, 4, (m, K), generator=g).to(dtype)
    x[0, :16] = 0  # a block of zeros (its fp16 scaling has no largest value to go by)
    x[-1, 16:32] = 3  # and one of the largest
    return x


def _expected(ref: torch.Tensor, dtype: torch.dtype, device: str) -> torch.Tensor:
    """The exact fp32 result rounded once to ``dtype``: to nearest on a GPU, toward zero for bf16 under
    the interpreter (its fp32 -> bf16 cast truncates)."""
    if device == "cpu" and dtype == torch.bfloat16:
        return (ref.contiguous().view(torch.int32) & -65536).view(torch.float32).to(torch.bfloat16)
    return ref.to(dtype)


def nvfp4_exact_case(m: int, dtype: torch.dtype, seed: int):
    """(x [m, K], packed E2M1 [N, K/2], E4M3 block scales [N, K/16], global scale) and the exact
    x @ W.T in fp32, W dequantized by `nvfp4.dequantize`."""
    g = torch.Generator().manual_seed(seed)
    codes = torch.randint(0, 16, (N, K), generator=g).to(torch.uint8)  # every code, -0 included
    qdata = nvfp4.pack_fp4(codes)
    picks = torch.randint(0, len(SCALES), (N, K // 16), generator=g)
    scales = torch.tensor(SCALES)[picks].to(torch.float8_e4m3fn)
    assert torch.equal(scales.float(), torch.tensor(SCALES)[picks])  # representable: no rounding here
    gs = torch.tensor(2.0**-4)
    x = _activations(m, dtype, g)
    ref = x.float() @ nvfp4.dequantize(qdata, scales, gs).t()
    return x, qdata, scales, gs, ref


@pytest.mark.parametrize("dtype, device", CASES)
@pytest.mark.parametrize("m", ROWS)
def test_nvfp4_gemv_is_exact_at_1_2_and_16_rows(m, dtype, device):
    """As dispatched on the device: on sm_89+ the inline PTX decode (E2M1 words to E4M3 to fp16/fp32),
    at 2 and 16 rows the decoded tile into ``tl.dot`` (bf16 operands on a GPU), at one row of bf16
    the fp16 products, of fp32 the fp32 products; split K, masked columns."""
    from evalsuite.kernels.triton.nvfp4_gemv import nvfp4_gemv

    x, qdata, scales, gs, ref = nvfp4_exact_case(m, dtype, seed=100 + m)
    y = nvfp4_gemv(x.to(device), qdata.to(device), scales.to(device), gs.to(device), **TILE)
    assert y.dtype == dtype and y.shape == (m, N)
    expected = _expected(ref, dtype, device)
    bad = (y.cpu() != expected).nonzero().tolist()
    assert not bad, (f"{len(bad)} outputs differ, first {bad[:4]}: got {y.cpu()[tuple(bad[0])].item()}, "
                     f"expected {expected[tuple(bad[0])].item()} (E4M3 convert: {e4m3_convert(y.device)})")


@pytest.mark.gpu
@pytest.mark.skipif(not CUDA, reason="needs a CUDA GPU")
@pytest.mark.parametrize("m", [1, 2])
def test_nvfp4_gemv_inline_ptx_equals_the_triton_decode_on_gpu(m):
    """The inline PTX decode and the Triton-ops decode (``use_ptx=False``, bench-gpu's "Triton
    decode" row) give the same, exact, outputs at one and two rows of bf16."""
    from evalsuite.kernels.triton.nvfp4_gemv import nvfp4_gemv

    x, qdata, scales, gs, ref = nvfp4_exact_case(m, torch.bfloat16, seed=200 + m)
    args = (x.cuda(), qdata.cuda(), scales.cuda(), gs.cuda())
    ptx = nvfp4_gemv(*args, **TILE)
    ops = nvfp4_gemv(*args, use_ptx=False, **TILE)
    assert torch.equal(ptx, ops) and torch.equal(ptx.cpu(), ref.to(torch.bfloat16))


def fp8_exact_case(m: int, dtype: torch.dtype, granularity: str, seed: int):
    """(x [m, K], E4M3 weight [N, K], fp32 scale () or [N, 1]) and the exact x @ W.T in fp32, W
    dequantized by `fp8.dequantize`: weights 0 or of magnitude 0.5 to 7.5 (exponent fields 6-9, every
    mantissa), both signs; power-of-two scales."""
    g = torch.Generator().manual_seed(seed)
    exponent = torch.randint(6, 10, (N, K), generator=g)
    mantissa = torch.randint(0, 8, (N, K), generator=g)
    sign = torch.randint(0, 2, (N, K), generator=g)
    bits = (sign << 7) | (exponent << 3) | mantissa
    bits[torch.rand(N, K, generator=g) < 0.1] = 0
    w = bits.to(torch.uint8).view(torch.float8_e4m3fn)
    if granularity == "tensor":
        scale = torch.tensor(2.0**-2)
    else:
        scale = 2.0 ** torch.randint(-3, 2, (N, 1), generator=g).float()
    x = _activations(m, dtype, g)
    ref = x.float() @ fp8.dequantize(w, scale).t()
    return x, w, scale, ref


@pytest.mark.parametrize("dtype, device", CASES)
@pytest.mark.parametrize("granularity", ["channel", "tensor"])  # (a per-tensor scale: stride 0, its own compile)
@pytest.mark.parametrize("m", ROWS)
def test_fp8_gemv_is_exact_at_1_2_and_16_rows(m, dtype, granularity, device):
    """`fp8_gemv` against the pure-torch dequantize and matmul, and against `fp8_gemv_ref`."""
    from evalsuite.kernels.triton.fp8_gemv import fp8_gemv, fp8_gemv_ref

    x, w, scale, ref = fp8_exact_case(m, dtype, granularity, seed=300 + m)
    y = fp8_gemv(x.to(device), w.to(device), scale.to(device), **TILE)
    assert y.dtype == dtype and y.shape == (m, N)
    expected = _expected(ref, dtype, device)
    bad = (y.cpu() != expected).nonzero().tolist()
    assert not bad, (f"{len(bad)} outputs differ, first {bad[:4]}: got {y.cpu()[tuple(bad[0])].item()}, "
                     f"expected {expected[tuple(bad[0])].item()}")
    if device == "cuda":  # the module's own reference, on the device (rounds to nearest like the kernel)
        assert torch.equal(y, fp8_gemv_ref(x.cuda(), w.cuda(), scale.cuda()))
