"""FP8 W8A16 for skinny activations (decode, M <= 16): E4M3 weight dequantized in the kernel.

``y = x @ (W * scale).T + bias`` with ``W[N, K]`` float8_e4m3fn and an fp32 ``scale`` of shape ``()``
(per tensor) or ``[N, 1]`` (per channel), ``x[..., K]`` bf16/fp16/fp32 left as it is. `fp8_gemv_ref`
is the definition (dequantize to fp32, one fp32 matmul, cast). This is weight-only: unlike the W8A8
`kernels.fp8_gemm`, the activations are not quantized, so at M <= 16 nothing is spent on a
per-token quantization pass and the result is closer to the unquantized layer.

The kernel is the NVFP4 GEMV's design (`kernels.triton.nvfp4_gemv`) with one byte per value:
split-K programs over ``[BLOCK_N, BLOCK_K]`` row-major byte tiles (contiguous along K, so wide
loads), E4M3 decoded by `kernels.triton.decode.e4m3_to_f32` (the GPU's conversion on sm_89+, two
values per instruction; bit arithmetic before; exact, 0x7F/0xFF NaN), fp32
accumulation (multiply-and-reduce for one row, ``tl.dot`` for 2..16), the weight scale
applied to each partial sum, the K splits' partial sums added by the last split to finish
(`nvfp4_gemv.split_k_store`: one launch, a fixed summation order). Autotuned on CUDA, keyed on
``N``, ``K`` and the row bucket.
"""

from __future__ import annotations

from typing import Any

import torch

from evalsuite.kernels import fp8
from evalsuite.kernels.constants import E4M3_DTYPE
from evalsuite.kernels.triton import HAS_TRITON, TRITON_MISSING_REASON, build_kernel, e4m3_convert
from evalsuite.kernels.triton.nvfp4_gemv import (
    GEMV_DOT_MIN_ROWS,
    GEMV_MAX_SPLIT_K,
    autotuned,
    gemv_tiles,
    launch_gemv,
    row_bucket,
    split_k_buffers,
)

if HAS_TRITON:
    import triton
    import triton.language as tl

    from evalsuite.kernels.triton.decode import e4m3_to_f32
    from evalsuite.kernels.triton.nvfp4_gemv import split_k_store

    _SUM = tl.standard._sum_combine

GEMV_MAX_M = 16


def fp8_gemv_ref(
    x: torch.Tensor, qweight: torch.Tensor, weight_scale: torch.Tensor, bias: torch.Tensor | None = None
) -> torch.Tensor:
    """Reference W8A16: ``x @ dequantize(W).T + bias`` in fp32, returned in ``x.dtype``."""
    _check_operands(x, qweight, weight_scale)
    y = x.float() @ fp8.dequantize(qweight, weight_scale).t()  # [..., K] @ [K, N]
    if bias is not None:
        y = y + bias.float()
    return y.to(x.dtype)


def _fp8_gemv_kernel(
    x_ptr, w_ptr, s_ptr, b_ptr, y_ptr, ws_ptr, cnt_ptr,
    M, N, K,
    stride_xm, stride_xk, stride_wn, stride_sn,
    HAS_BIAS: tl.constexpr,
    BLOCK_M: tl.constexpr,
    USE_DOT: tl.constexpr,
    DOT_FP32: tl.constexpr,
    INTERPRET: tl.constexpr,
    E4M3_CVT: tl.constexpr,
    BLOCK_N: tl.constexpr,
    BLOCK_K: tl.constexpr,
    SPLIT_K: tl.constexpr,
):  # fmt: skip
    pid_n = tl.program_id(0)
    pid_k = tl.program_id(1)
    offs_n = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)
    offs_k = tl.arange(0, BLOCK_K)
    offs_m = tl.arange(0, BLOCK_M)
    mask_n = offs_n < N
    mask_m = offs_m < M
    k_per_split = ((K + SPLIT_K - 1) // SPLIT_K + BLOCK_K - 1) // BLOCK_K * BLOCK_K  # (tl.cdiv is @jit)
    k_lo = pid_k * k_per_split
    k_hi = tl.where(k_lo + k_per_split < K, k_lo + k_per_split, K)
    acc = tl.full((BLOCK_M, BLOCK_N), 0.0, tl.float32)
    for k0 in range(k_lo, k_hi, BLOCK_K):
        kk = k0 + offs_k
        mask_k = kk < k_hi
        wb = tl.load(w_ptr + offs_n[:, None] * stride_wn + kk[None, :],
                     mask=mask_n[:, None] & mask_k[None, :], other=0)  # fmt: skip
        w = e4m3_to_f32(wb, E4M3_CVT, INTERPRET)  # [BLOCK_N, BLOCK_K]; sm_89+: the GPU's conversion
        if USE_DOT:
            xmask = mask_m[:, None] & mask_k[None, :]
            xt = tl.load(x_ptr + offs_m[:, None] * stride_xm + kk[None, :] * stride_xk, mask=xmask, other=0.0)
            if DOT_FP32:
                acc += tl.dot(xt.to(tl.float32), tl.trans(w), input_precision="ieee")
            else:
                acc += tl.dot(xt, tl.trans(w).to(xt.dtype))
        else:
            for r in tl.static_range(BLOCK_M):
                # rows past M (the bucket's padding) re-read row M-1; the store masks them out
                x_row = x_ptr + tl.where(M > r, r, M - 1) * stride_xm
                xr = tl.load(x_row + kk * stride_xk, mask=mask_k, other=0.0).to(tl.float32)
                part = tl.reduce(w * xr[None, :], 1, _SUM)  # [BLOCK_N]  (tl.sum is @jit)
                acc += tl.where(offs_m[:, None] == r, part[None, :], 0.0)
    scale = tl.load(s_ptr + offs_n * stride_sn, mask=mask_n, other=0.0)
    acc = acc * scale[None, :]
    if HAS_BIAS:
        bias = tl.load(b_ptr + offs_n, mask=mask_n, other=0.0).to(tl.float32)
        acc += tl.where(pid_k == 0, 1.0, 0.0) * bias[None, :]
    split_k_store(acc, y_ptr, ws_ptr, cnt_ptr, offs_m, offs_n, mask_m[:, None] & mask_n[None, :], M, N, SPLIT_K)


def _autotune_configs() -> list[Any]:
    cfgs = []
    # at most 64 weight values per thread (BLOCK_N * BLOCK_K / (32 * warps)): with 128, sm_90's
    # ptxas needs 255 registers and spills (64x256 and 32x512 at 4 warps; `kernels.triton.static`)
    for bn, bk, sk, warps in [
        (32, 256, 2, 4), (64, 256, 4, 8), (64, 128, 2, 4), (128, 128, 2, 8), (32, 512, 8, 8),
    ]:  # fmt: skip
        cfgs.append(triton.Config({"BLOCK_N": bn, "BLOCK_K": bk, "SPLIT_K": sk}, num_warps=warps, num_stages=3))
    return cfgs


def _kernel(mode: str) -> Any:
    """``mode``: 'interpret' (CPU tensors), 'jit' (explicit tile) or 'autotune' (CUDA)."""
    return build_kernel(_fp8_gemv_kernel, mode, lambda fn: autotuned(fn, _autotune_configs()))


def fp8_gemv(
    x: torch.Tensor,
    qweight: torch.Tensor,
    weight_scale: torch.Tensor,
    bias: torch.Tensor | None = None,
    *,
    block_n: int | None = None,
    block_k: int | None = None,
    split_k: int | None = None,
) -> torch.Tensor:
    """W8A16 ``x @ (W * scale).T + bias`` for at most `GEMV_MAX_M` rows; contract of `fp8_gemv_ref`.

    CUDA tensors: autotuned unless ``block_n``, ``block_k`` and ``split_k`` are all given; CPU
    tensors run under Triton's interpreter (defaults 32, 32, 2)."""
    if not HAS_TRITON:
        raise RuntimeError(f"fp8_gemv needs Triton ({TRITON_MISSING_REASON}); use fp8_gemv_ref")
    _check_operands(x, qweight, weight_scale)
    n, k = qweight.shape
    x2 = x.reshape(-1, k)  # [..., K] -> [M, K]
    m = x2.shape[0]
    if m > GEMV_MAX_M:
        raise ValueError(f"fp8_gemv: at most {GEMV_MAX_M} rows, got {m}; use fp8_gemm")
    if m == 0:
        return torch.empty(*x.shape[:-1], n, dtype=x.dtype, device=x.device)
    interpret = x.device.type == "cpu"
    tiles = gemv_tiles("fp8_gemv", interpret, block_n, block_k, split_k, default_block_k=32)
    block_m = row_bucket(m)
    y = torch.empty(m, n, dtype=x.dtype, device=x.device)
    ws, counters = split_k_buffers(x.device, m, n, tiles[3] if tiles[0] else GEMV_MAX_SPLIT_K)
    scale = weight_scale.float().reshape(-1)  # [1] or [N]
    qweight = qweight.contiguous()  # the kernel reads rows with unit stride along K
    args = (x2, qweight.view(torch.uint8), scale, bias if bias is not None else scale, y, ws, counters, m, n, k,
            x2.stride(0), x2.stride(1), qweight.stride(0), 0 if scale.numel() == 1 else 1)  # fmt: skip
    consts = dict(HAS_BIAS=bias is not None, BLOCK_M=block_m, USE_DOT=block_m >= GEMV_DOT_MIN_ROWS,
                  DOT_FP32=interpret or x.dtype == torch.float32, INTERPRET=interpret,
                  E4M3_CVT=e4m3_convert(x.device))  # fmt: skip
    launch_gemv(_kernel, n, interpret, tiles, args, consts)
    return y.reshape(*x.shape[:-1], n)  # [M, N] -> [..., N]


def _check_operands(x: torch.Tensor, qweight: torch.Tensor, weight_scale: torch.Tensor) -> None:
    if qweight.dtype != E4M3_DTYPE or qweight.dim() != 2:
        raise TypeError(f"fp8_gemv: expected weight float8_e4m3fn [N, K], got {qweight.dtype} {tuple(qweight.shape)}")
    n, k = qweight.shape
    if tuple(weight_scale.shape) not in ((), (1,), (n, 1)):
        raise ValueError(f"fp8_gemv: expected weight scale of shape () or ({n}, 1), got {tuple(weight_scale.shape)}")
    if x.shape[-1] != k:
        raise ValueError(f"fp8_gemv: x has last dimension {x.shape[-1]}, the weight expects K = {k}")
