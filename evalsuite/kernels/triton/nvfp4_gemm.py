"""W4A16 NVFP4 GEMM: ``y = x @ W.T (+ bias)`` with ``W`` kept packed; Triton kernel beside its ref.

``W[N, K]`` arrives as the `kernels.nvfp4` triple: ``qdata`` uint8 ``[N, K/2]`` (first value of each
pair in the low nibble), ``block_scales`` float8_e4m3fn ``[N, K/16]``, ``global_scale`` fp32 scalar.
``x`` is bf16/fp16/fp32 ``[..., K]``; ``y`` has ``x``'s dtype and shape ``[..., N]``.

`nvfp4_gemm_ref` is the definition: dequantize ``W`` to fp32 with `kernels.nvfp4.dequantize`, one
fp32 matmul, cast. It materializes the weight and is what the CPU path of `NVFP4Linear` runs.

`nvfp4_gemm` is the Triton kernel. It never materializes a bf16 weight: each program owns a
``BLOCK_M x BLOCK_N`` output tile and walks K in steps of ``BLOCK_K``. Per step it

1. loads the packed bytes as a ``[BLOCK_K/2, BLOCK_N]`` tile (the transpose is in the pointer
   arithmetic) and splits each byte into its low nibble (values at even k) and high nibble (odd k);
2. decodes the E2M1 codes arithmetically: sign = bit 3, exponent e = bits 1–2, mantissa m = bit 0,
   magnitude ``m/2`` if ``e == 0`` else ``(1 + m/2) * 2^(e-1)``;
3. loads the E4M3 block scales as raw bytes (byte column j of the tile belongs to block ``j // 8``)
   and decodes them arithmetically too (``m * 2^-9`` subnormal, ``(1 + m/8) * 2^(e-7)`` normal,
   NaN for 0x7F), so no FP8 support is needed from the GPU or the interpreter;
4. multiplies codes by block scales in registers — the product has at most 6 significant bits and
   stays inside bf16's range, so casting it to the activation dtype is exact;
5. loads the matching activation columns de-interleaved, ``x[:, k0 + 2j]`` and ``x[:, k0 + 2j + 1]``,
   and accumulates ``dot(x_even, W_lo) + dot(x_odd, W_hi)`` in fp32. Splitting the activations
   instead of interleaving the weight avoids a register shuffle (``tl.join`` + reshape).

The global scale is applied once to the fp32 accumulator at the end, then the bias, then the cast.
Against the reference the only differences are fp32 summation order and where the global scale is
applied, so the tests hold it to a tight tolerance.

Under Triton's CPU interpreter (CPU tensors, used by the tests) ``tl.dot`` on bf16 operands is
unreliable, so ``DOT_FP32`` upcasts both operands to fp32 there. The kernel is created lazily, per
mode, so the same process can run it interpreted on CPU and compiled on CUDA.
"""

from __future__ import annotations

from typing import Any

import torch

from evalsuite.kernels import nvfp4
from evalsuite.kernels.constants import E4M3_DTYPE, NVFP4_BLOCK_SIZE
from evalsuite.kernels.triton import COMPILE_OPTIONS, HAS_TRITON, TRITON_MISSING_REASON, build_kernel

if HAS_TRITON:
    import triton
    import triton.language as tl


def nvfp4_gemm_ref(
    x: torch.Tensor,
    qdata: torch.Tensor,
    block_scales: torch.Tensor,
    global_scale: torch.Tensor,
    bias: torch.Tensor | None = None,
) -> torch.Tensor:
    """Reference: ``x @ dequantize(W).T + bias`` in fp32, returned in ``x.dtype``."""
    _check_operands(x, qdata, block_scales)
    w = nvfp4.dequantize(qdata, block_scales, global_scale, torch.float32)  # [N, K]
    y = x.float() @ w.t()  # [..., K] @ [K, N] -> [..., N]
    if bias is not None:
        y = y + bias.float()
    return y.to(x.dtype)


def _nvfp4_gemm_kernel(
    x_ptr, w_ptr, s_ptr, gs_ptr, b_ptr, y_ptr,
    M, N, K,
    stride_xm, stride_xk, stride_wn, stride_wk, stride_sn, stride_sk, stride_ym, stride_yn,
    HAS_BIAS: tl.constexpr,
    DOT_FP32: tl.constexpr,
    BLOCK_M: tl.constexpr,
    BLOCK_N: tl.constexpr,
    BLOCK_K: tl.constexpr,
):  # fmt: skip
    pid_m = tl.program_id(0)
    pid_n = tl.program_id(1)
    offs_m = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)
    offs_n = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)
    offs_j = tl.arange(0, BLOCK_K // 2)  # byte column within the K step
    mask_m = offs_m < M
    mask_n = offs_n < N
    acc = tl.full((BLOCK_M, BLOCK_N), 0.0, tl.float32)  # tl.full, a builtin: tl.zeros is @jit and
    # would refuse to run under the interpreter unless TRITON_INTERPRET was set before import
    for k0 in range(0, K, BLOCK_K):
        kb = k0 // 2 + offs_j  # byte column in the packed weight, [BLOCK_K/2]
        mask_kb = kb < K // 2
        wmask = mask_kb[:, None] & mask_n[None, :]
        # packed weight bytes, transposed by addressing: [BLOCK_K/2, BLOCK_N]
        w = tl.load(w_ptr + kb[:, None] * stride_wk + offs_n[None, :] * stride_wn, mask=wmask, other=0)
        w = w.to(tl.int32)
        # E4M3 block-scale bytes for the same positions; byte column kb lies in block kb // 8
        sb = tl.load(s_ptr + (kb // 8)[:, None] * stride_sk + offs_n[None, :] * stride_sn, mask=wmask, other=0)
        sb = sb.to(tl.int32)
        s_exp = (sb >> 3) & 0xF
        s_man = (sb & 0x7).to(tl.float32)
        scale = tl.where(
            s_exp == 0, s_man * 0.001953125, (1.0 + s_man * 0.125) * tl.exp2((s_exp - 7).to(tl.float32))
        )
        scale = tl.where((sb & 0x7F) == 0x7F, float("nan"), scale)
        scale = tl.where((sb & 0x80) != 0, -scale, scale)
        # E2M1 decode of both nibbles, then scale in registers
        lo = w & 0xF
        hi = (w >> 4) & 0xF
        lo_e = (lo >> 1) & 0x3
        lo_m = (lo & 0x1).to(tl.float32)
        lo_v = tl.where(lo_e == 0, lo_m * 0.5, (1.0 + lo_m * 0.5) * tl.exp2((lo_e - 1).to(tl.float32)))
        lo_v = tl.where((lo & 0x8) != 0, -lo_v, lo_v) * scale
        hi_e = (hi >> 1) & 0x3
        hi_m = (hi & 0x1).to(tl.float32)
        hi_v = tl.where(hi_e == 0, hi_m * 0.5, (1.0 + hi_m * 0.5) * tl.exp2((hi_e - 1).to(tl.float32)))
        hi_v = tl.where((hi & 0x8) != 0, -hi_v, hi_v) * scale
        # activations at even and odd k: [BLOCK_M, BLOCK_K/2] each
        xmask = mask_m[:, None] & mask_kb[None, :]
        x_base = x_ptr + offs_m[:, None] * stride_xm
        x_even = tl.load(x_base + (2 * kb)[None, :] * stride_xk, mask=xmask, other=0.0)
        x_odd = tl.load(x_base + (2 * kb + 1)[None, :] * stride_xk, mask=xmask, other=0.0)
        if DOT_FP32:
            acc += tl.dot(x_even.to(tl.float32), lo_v, input_precision="ieee")
            acc += tl.dot(x_odd.to(tl.float32), hi_v, input_precision="ieee")
        else:
            acc += tl.dot(x_even, lo_v.to(x_even.dtype))
            acc += tl.dot(x_odd, hi_v.to(x_odd.dtype))
    acc = acc * tl.load(gs_ptr)
    if HAS_BIAS:
        acc += tl.load(b_ptr + offs_n, mask=mask_n, other=0.0).to(tl.float32)[None, :]
    y_ptrs = y_ptr + offs_m[:, None] * stride_ym + offs_n[None, :] * stride_yn
    tl.store(y_ptrs, acc.to(y_ptr.dtype.element_ty), mask=mask_m[:, None] & mask_n[None, :])


def _kernel(interpret: bool) -> Any:
    """The kernel compiled for CUDA (``interpret=False``) or wrapped for the CPU interpreter."""
    return build_kernel(_nvfp4_gemm_kernel, "interpret" if interpret else "jit")


def nvfp4_gemm(
    x: torch.Tensor,
    qdata: torch.Tensor,
    block_scales: torch.Tensor,
    global_scale: torch.Tensor,
    bias: torch.Tensor | None = None,
    *,
    block_m: int | None = None,
    block_n: int = 64,
    block_k: int = 64,
) -> torch.Tensor:
    """Triton W4A16 GEMM, same contract as `nvfp4_gemm_ref`. CUDA tensors compile; CPU tensors interpret."""
    if not HAS_TRITON:
        raise RuntimeError(f"nvfp4_gemm needs Triton ({TRITON_MISSING_REASON}); use nvfp4_gemm_ref")
    _check_operands(x, qdata, block_scales)
    if block_k < 32 or block_k % 32 or block_n < 16:
        raise ValueError(f"nvfp4_gemm: block_k must be a multiple of 32 and block_n >= 16, got {block_k}, {block_n}")
    k = x.shape[-1]
    n = qdata.shape[0]
    x2 = x.reshape(-1, k)  # [..., K] -> [M, K]
    m = x2.shape[0]
    y = torch.empty(m, n, dtype=x.dtype, device=x.device)
    if m == 0:
        return y.reshape(*x.shape[:-1], n)
    if block_m is None:
        block_m = 16 if m <= 16 else 64
    interpret = x.device.type == "cpu"
    gs = torch.as_tensor(global_scale, device=x.device).float().reshape(1)
    scale_bytes = block_scales.view(torch.uint8)
    grid = (triton.cdiv(m, block_m), triton.cdiv(n, block_n))
    _kernel(interpret)[grid](
        x2, qdata, scale_bytes, gs, bias if bias is not None else gs, y,
        m, n, k,
        x2.stride(0), x2.stride(1), qdata.stride(0), qdata.stride(1),
        scale_bytes.stride(0), scale_bytes.stride(1), y.stride(0), y.stride(1),
        HAS_BIAS=bias is not None,
        DOT_FP32=interpret or x.dtype == torch.float32,
        BLOCK_M=block_m, BLOCK_N=block_n, BLOCK_K=block_k, **COMPILE_OPTIONS,
    )  # fmt: skip
    return y.reshape(*x.shape[:-1], n)  # [M, N] -> [..., N]


def _check_operands(x: torch.Tensor, qdata: torch.Tensor, block_scales: torch.Tensor) -> None:
    if qdata.dtype != torch.uint8 or qdata.dim() != 2:
        raise TypeError(f"nvfp4_gemm: expected packed weight uint8 [N, K/2], got {qdata.dtype} {tuple(qdata.shape)}")
    n, k = qdata.shape[0], qdata.shape[1] * 2
    if block_scales.dtype != E4M3_DTYPE or tuple(block_scales.shape) != (n, k // NVFP4_BLOCK_SIZE):
        raise ValueError(
            f"nvfp4_gemm: expected block_scales float8_e4m3fn {(n, k // NVFP4_BLOCK_SIZE)}, "
            f"got {block_scales.dtype} {tuple(block_scales.shape)}"
        )
    if x.shape[-1] != k:
        raise ValueError(f"nvfp4_gemm: x has last dimension {x.shape[-1]}, the weight expects K = {k}")
