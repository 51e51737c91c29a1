"""FP8 W8A16 GEMV (Triton interpreter on CPU) against its reference, and FP8Linear's dispatch."""

from __future__ import annotations

import pytest
import torch

from evalsuite.kernels import fp8
from evalsuite.kernels.triton import HAS_TRITON, TRITON_MISSING_REASON
from evalsuite.kernels.triton.fp8_gemv import fp8_gemv_ref

needs_triton = pytest.mark.skipif(not HAS_TRITON, reason=TRITON_MISSING_REASON or "triton missing")


def test_reference_is_dequantize_then_matmul():
    g = torch.Generator().manual_seed(0)
    x, w, b = torch.randn(3, 32, generator=g), torch.randn(16, 32, generator=g), torch.randn(16, generator=g)
    q = fp8.quantize(w, "channel")
    torch.testing.assert_close(fp8_gemv_ref(x, *q, b), x @ fp8.dequantize(*q).t() + b, rtol=0, atol=0)
    with pytest.raises(ValueError, match="weight expects K = 32"):
        fp8_gemv_ref(torch.randn(2, 31), *q)


@needs_triton
@pytest.mark.parametrize(
    "m, n, k, tile",
    [(1, 17, 48, (16, 16, 2)), (2, 33, 96, (32, 32, 3)), (4, 40, 160, (16, 64, 2)), (7, 24, 64, (16, 32, 1)),
     (16, 31, 128, (32, 32, 4))],
)  # fmt: skip
@pytest.mark.parametrize("granularity", ["tensor", "channel"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16])
def test_gemv_matches_reference(m, n, k, tile, granularity, dtype):
    from evalsuite.kernels.triton.fp8_gemv import fp8_gemv

    g = torch.Generator().manual_seed(m * 100 + n + k)
    w = torch.randn(n, k, generator=g) * torch.linspace(0.01, 3, n)[:, None]
    x = torch.randn(m, k, generator=g).to(dtype)
    b = torch.randn(n, generator=g).to(dtype)
    q = fp8.quantize(w, granularity)
    bn, bk, sk = tile
    fast = fp8_gemv(x, *q, b, block_n=bn, block_k=bk, split_k=sk)
    ref = fp8_gemv_ref(x, *q, b)
    print("max |fast - ref| =", (fast.float() - ref.float()).abs().max().item())
    assert fast.dtype == dtype and fast.shape == (m, n)
    tol = 1e-5 if dtype == torch.float32 else 2.0**-7 if dtype == torch.bfloat16 else 2.0**-10
    torch.testing.assert_close(fast.float(), ref.float(), rtol=tol, atol=tol * 8)


@needs_triton
@pytest.mark.parametrize("cvt", [True, False], ids=["e4m3-convert", "bit-arithmetic"])
def test_gemv_decodes_every_e4m3_byte_exactly(cvt, monkeypatch):
    """Both decodes under the interpreter: the GPU's conversion (sm_89+, emulated; 0x7F/0xFF made NaN
    by hand there) and the bit arithmetic older GPUs compile."""
    from evalsuite.kernels.triton import fp8_gemv as mod
    from evalsuite.kernels.triton.fp8_gemv import fp8_gemv

    monkeypatch.setattr(mod, "e4m3_convert", lambda device: cvt)

    w = torch.arange(256, dtype=torch.uint8).reshape(8, 32).view(torch.float8_e4m3fn)  # every byte once
    scale = torch.tensor(0.25)
    for rows in [torch.eye(32)[:2], torch.eye(32)[8:24], torch.eye(32)[5:6], torch.eye(32)[31:]]:  # both paths
        y = fp8_gemv(rows, w, scale, block_n=16, block_k=16, split_k=2)
        expected = rows @ fp8.dequantize(w, scale).t()
        assert torch.equal(y.isnan(), expected.isnan()) and y.isnan().any()
        assert torch.equal(y.nan_to_num(), expected.nan_to_num())


@needs_triton
def test_gemv_edge_cases():
    from evalsuite.kernels.triton.fp8_gemv import GEMV_MAX_M, fp8_gemv

    q = fp8.quantize(torch.randn(16, 32))
    x = torch.randn(2, 3, 32)
    torch.testing.assert_close(fp8_gemv(x, *q), fp8_gemv_ref(x, *q), rtol=1e-5, atol=1e-5)
    assert fp8_gemv(torch.randn(0, 32), *q).shape == (0, 16)
    with pytest.raises(ValueError, match=f"at most {GEMV_MAX_M} rows, got 17"):
        fp8_gemv(torch.randn(17, 32), *q)


@needs_triton
def test_fp8_linear_gemv_backend_is_weight_only():
    from torch import nn

    from evalsuite.kernels.qlinear import FP8Linear, fp8_backend_for

    torch.manual_seed(0)
    lin = nn.Linear(64, 40).to(torch.bfloat16)
    q = FP8Linear.from_linear(lin, "channel")
    x = torch.randn(3, 64, dtype=torch.bfloat16)
    q.backend = "gemv"
    ref = fp8_gemv_ref(x, q.qdata, q.scale, q.bias)
    torch.testing.assert_close(q(x).float(), ref.float(), rtol=2.0**-7, atol=2.0**-7)
    assert fp8_backend_for(1, torch.device("cpu")) == "cached"
    assert fp8_backend_for(16, torch.device("cuda")) == "gemv"
    assert fp8_backend_for(17, torch.device("cuda")) == "auto"


@needs_triton
def test_kernel_compiles_for_sm90(tmp_path, monkeypatch):
    monkeypatch.setenv("TRITON_CACHE_DIR", str(tmp_path))
    monkeypatch.setenv("TRITON_DEFAULT_FP_FUSION", "1")
    import triton
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource

    from evalsuite.kernels.triton.fp8_gemv import _kernel

    ptrs = {"x_ptr": "*bf16", "w_ptr": "*u8", "s_ptr": "*fp32", "b_ptr": "*bf16", "y_ptr": "*bf16", "ws_ptr": "*fp32",
            "cnt_ptr": "*i32"}  # fmt: skip
    ints = ["M", "N", "K", "stride_xm", "stride_xk", "stride_wn", "stride_sn"]
    for bucket in (1, 16):
        consts = {"HAS_BIAS": True, "BLOCK_M": bucket, "USE_DOT": bucket == 16, "DOT_FP32": False, "INTERPRET": False, "E4M3_CVT": True,
                  "BLOCK_N": 32, "BLOCK_K": 256, "SPLIT_K": 4}  # fmt: skip
        sig = {**ptrs, **{i: "i32" for i in ints}, **{c: "constexpr" for c in consts}}
        try:
            compiled = triton.compile(ASTSource(fn=_kernel("jit"), signature=sig, constexprs=consts),
                                      target=GPUTarget("cuda", 90, 32))  # fmt: skip
        except RuntimeError as exc:  # pragma: no cover - a triton build without the CUDA toolchain
            pytest.skip(f"cannot compile for CUDA here: {exc}")
        assert "cubin" in compiled.asm
