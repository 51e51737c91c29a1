"""Fast GEMM paths against their references: FP8 ``torch._scaled_mm`` and the NVFP4 Triton kernel."""

from __future__ import annotations

import pytest
import torch

from evalsuite.kernels import fp8, nvfp4
from evalsuite.kernels.fp8_gemm import fp8_gemm, fp8_gemm_ref
from evalsuite.kernels.triton import HAS_TRITON, TRITON_MISSING_REASON
from evalsuite.kernels.triton.nvfp4_gemm import nvfp4_gemm, nvfp4_gemm_ref

needs_triton = pytest.mark.skipif(not HAS_TRITON, reason=TRITON_MISSING_REASON or "triton missing")
needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


def _sqnr_db(ref: torch.Tensor, test: torch.Tensor) -> float:
    ref, test = ref.double(), test.double()
    return float(10 * torch.log10(ref.pow(2).sum() / (ref - test).pow(2).sum().clamp_min(1e-30)))


# ---- references mean what they say -------------------------------------------------------------
def test_fp8_gemm_ref_is_dequantize_then_matmul():
    g = torch.Generator().manual_seed(0)
    x, w, b = torch.randn(3, 5, 32, generator=g), torch.randn(16, 32, generator=g), torch.randn(16, generator=g)
    qw = fp8.quantize(w)
    y = fp8_gemm_ref(x, qw.qdata, qw.scales, b)
    xq = fp8.quantize(x, "token")
    expected = fp8.dequantize(*xq) @ fp8.dequantize(*qw).t() + b
    assert y.shape == (3, 5, 16)
    torch.testing.assert_close(y, expected, rtol=0, atol=0)
    assert _sqnr_db(x @ w.t() + b, y) > 25  # W8A8 keeps ~30 dB on Gaussian data


def test_nvfp4_gemm_ref_is_dequantize_then_matmul():
    g = torch.Generator().manual_seed(0)
    x, w = torch.randn(4, 64, generator=g), torch.randn(24, 64, generator=g)
    q = nvfp4.quantize(w)
    y = nvfp4_gemm_ref(x, *q)
    torch.testing.assert_close(y, x @ nvfp4.dequantize(*q).t(), rtol=0, atol=0)
    assert _sqnr_db(x @ w.t(), y) > 15  # 4-bit weights: ~20 dB


# ---- FP8: torch._scaled_mm (runs on CPU in this torch build) vs reference ------------------------
@pytest.mark.parametrize("granularity", ["tensor", "channel"])
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float32])
def test_fp8_scaled_mm_matches_reference(granularity, dtype):
    g = torch.Generator().manual_seed(1)
    x = torch.randn(2, 7, 48, generator=g).to(dtype)
    w = torch.randn(32, 48, generator=g) * torch.linspace(0.1, 3, 32)[:, None]
    b = torch.randn(32, generator=g).to(dtype)
    qw = fp8.quantize(w, granularity)
    try:
        fast = fp8_gemm(x, qw.qdata, qw.scales, b, backend="scaled_mm")
    except (RuntimeError, NotImplementedError) as exc:  # pragma: no cover - build without CPU scaled_mm
        pytest.skip(f"torch._scaled_mm unavailable on {x.device}: {exc}")
    ref = fp8_gemm_ref(x, qw.qdata, qw.scales, b)
    print("max |fast - ref| =", (fast.float() - ref.float()).abs().max().item())
    assert fast.dtype == dtype and fast.shape == (2, 7, 32)
    # same products of exact FP8 values; only summation order and output rounding differ
    tol = 1e-5 if dtype == torch.float32 else 2.0**-7
    torch.testing.assert_close(fast.float(), ref.float(), rtol=tol, atol=tol)


def test_fp8_auto_backend_uses_reference_on_cpu_and_rejects_bad_shapes():
    w = fp8.quantize(torch.randn(16, 32))
    x = torch.randn(3, 32)
    assert torch.equal(fp8_gemm(x, w.qdata, w.scales), fp8_gemm_ref(x, w.qdata, w.scales))
    odd = fp8.quantize(torch.randn(10, 32))
    with pytest.raises(ValueError, match="multiples of 16"):
        fp8_gemm(x, odd.qdata, odd.scales, backend="scaled_mm")
    with pytest.raises(ValueError, match="x has last dimension 31, the weight expects K = 32"):
        fp8_gemm_ref(torch.randn(2, 31), w.qdata, w.scales)


# ---- NVFP4 Triton kernel (interpreter on CPU) vs reference --------------------------------------
@needs_triton
@pytest.mark.parametrize("m, n, k", [(1, 16, 16), (3, 40, 48), (20, 70, 96)])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_nvfp4_triton_matches_reference(m, n, k, dtype):
    g = torch.Generator().manual_seed(m * n + k)
    w = torch.randn(n, k, generator=g) * torch.logspace(-2, 1, k)  # wide range: subnormal block scales
    x = torch.randn(m, k, generator=g).to(dtype)
    b = torch.randn(n, generator=g).to(dtype)
    q = nvfp4.quantize(w)
    fast = nvfp4_gemm(x, *q, bias=b, block_n=32)
    ref = nvfp4_gemm_ref(x, *q, bias=b)
    print("max |fast - ref| =", (fast.float() - ref.float()).abs().max().item())
    assert fast.dtype == dtype and fast.shape == (m, n)
    tol = 1e-5 if dtype == torch.float32 else 2.0**-7  # bf16 output: one rounding of the same sum
    torch.testing.assert_close(fast.float(), ref.float(), rtol=tol, atol=tol)


@needs_triton
def test_nvfp4_triton_decodes_every_code_and_scale_exactly():
    # identity-like activations read the weight back column by column: y = W_deq exactly
    codes = torch.arange(16, dtype=torch.uint8).repeat(2, 2)  # [2, 32]: every code, both nibbles
    qdata = nvfp4.pack_fp4(codes)
    scale_bits = torch.tensor([[0x01, 0x7E], [0x38, 0x33]], dtype=torch.uint8)  # 2^-9, 448, 1, 0.6875
    scales = scale_bits.view(torch.float8_e4m3fn)
    gs = torch.tensor(0.5)
    x = torch.eye(32)
    y = nvfp4_gemm(x, qdata, scales, gs)  # [32, 2] = W^T
    assert torch.equal(y.t(), nvfp4.dequantize(qdata, scales, gs))


@needs_triton
def test_nvfp4_triton_handles_leading_dims_and_empty_input():
    q = nvfp4.quantize(torch.randn(16, 32))
    x = torch.randn(2, 3, 32)
    torch.testing.assert_close(nvfp4_gemm(x, *q), nvfp4_gemm_ref(x, *q), rtol=1e-5, atol=1e-5)
    assert nvfp4_gemm(torch.randn(0, 32), *q).shape == (0, 16)


def test_nvfp4_gemm_rejects_mismatched_operands():
    q = nvfp4.quantize(torch.randn(16, 32))
    with pytest.raises(ValueError, match="weight expects K = 32"):
        nvfp4_gemm_ref(torch.randn(2, 16), *q)
    with pytest.raises(ValueError, match="expected block_scales float8_e4m3fn \\(16, 2\\)"):
        nvfp4_gemm_ref(torch.randn(2, 32), q.qdata, q.block_scales[:, :1], q.global_scale)


# ---- GPU: compiled kernels (skipped without CUDA) -----------------------------------------------
@needs_cuda
@needs_triton
@pytest.mark.gpu
@pytest.mark.parametrize("m, n, k", [(1, 256, 512), (77, 320, 1024)])
def test_nvfp4_triton_on_gpu_matches_reference(m, n, k):
    g = torch.Generator(device="cuda").manual_seed(0)
    w = torch.randn(n, k, device="cuda", generator=g)
    x = torch.randn(m, k, device="cuda", generator=g, dtype=torch.bfloat16)
    q = nvfp4.quantize(w)
    fast = nvfp4_gemm(x, *q)
    ref = nvfp4_gemm_ref(x, *q)
    torch.testing.assert_close(fast.float(), ref.float(), rtol=2.0**-7, atol=1e-2)


@needs_cuda
@pytest.mark.gpu
def test_fp8_scaled_mm_on_gpu_matches_reference():
    from evalsuite.kernels.fp8_gemm import scaled_mm_available

    if not scaled_mm_available(torch.device("cuda")):
        pytest.skip("GPU has no FP8 tensor cores (needs sm_89+)")
    x = torch.randn(33, 256, device="cuda", dtype=torch.bfloat16)
    qw = fp8.quantize(torch.randn(128, 256, device="cuda"))
    fast = fp8_gemm(x, qw.qdata, qw.scales, backend="scaled_mm")
    ref = fp8_gemm_ref(x, qw.qdata, qw.scales)
    torch.testing.assert_close(fast.float(), ref.float(), rtol=2.0**-7, atol=1e-2)


@needs_triton
def test_nvfp4_kernel_compiles_to_tensor_core_code_for_sm90(tmp_path, monkeypatch):
    """No GPU here: compile the kernel ahead of time for Hopper with the ptxas bundled in Triton."""
    monkeypatch.setenv("TRITON_CACHE_DIR", str(tmp_path))  # really compile, and leave no cache behind
    monkeypatch.setenv("TRITON_DEFAULT_FP_FUSION", "1")  # the current default, stated (silences a warning)
    import triton
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource

    from evalsuite.kernels.triton.nvfp4_gemm import _kernel

    ptrs = {"x_ptr": "*bf16", "w_ptr": "*u8", "s_ptr": "*u8", "gs_ptr": "*fp32", "b_ptr": "*bf16", "y_ptr": "*bf16"}
    ints = ["M", "N", "K", "stride_xm", "stride_xk", "stride_wn", "stride_wk", "stride_sn", "stride_sk",
            "stride_ym", "stride_yn"]  # fmt: skip
    consts = {"HAS_BIAS": True, "DOT_FP32": False, "BLOCK_M": 64, "BLOCK_N": 64, "BLOCK_K": 64}
    sig = {**ptrs, **{i: "i32" for i in ints}, **{c: "constexpr" for c in consts}}
    try:
        compiled = triton.compile(
            ASTSource(fn=_kernel(interpret=False), signature=sig, constexprs=consts),
            target=GPUTarget("cuda", 90, 32),
        )
    except RuntimeError as exc:  # pragma: no cover - a triton build without the CUDA toolchain
        pytest.skip(f"cannot compile for CUDA here: {exc}")
    assert "cubin" in compiled.asm
    assert "mma" in compiled.asm["ptx"]  # the dot lowered to tensor-core instructions
