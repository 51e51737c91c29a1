"""W8A8 FP8 GEMM: ``y = x @ W.T (+ bias)`` with E4M3 weights and dynamic per-token E4M3 activations.

``W[N, K]`` is float8_e4m3fn with an fp32 scale of shape ``()`` (per-tensor) or ``[N, 1]``
(per-channel). Each call quantizes the activations ``x[..., K]`` per token (one scale per row,
`kernels.fp8` granularity ``"token"``), then multiplies.

- `fp8_gemm_ref`: dequantize both operands to fp32, one fp32 matmul, cast to ``x.dtype``.
- ``backend="scaled_mm"``: ``torch._scaled_mm`` with row-wise scales (activation scales ``[M, 1]``,
  weight scales broadcast to ``[1, N]``); on a GPU with FP8 tensor cores (compute capability
  >= 8.9) this is the fast path. It needs K and N multiples of 16.
- ``backend="auto"`` picks ``scaled_mm`` on such a GPU when the shapes allow it, else the reference.
"""

from __future__ import annotations

from typing import Literal

import torch

from evalsuite.kernels import fp8
from evalsuite.kernels.constants import E4M3_DTYPE

Backend = Literal["auto", "scaled_mm", "ref"]


def fp8_gemm_ref(
    x: torch.Tensor, qweight: torch.Tensor, weight_scale: torch.Tensor, bias: torch.Tensor | None = None
) -> torch.Tensor:
    """Reference W8A8: quantize ``x`` per token, dequantize both, fp32 matmul, + bias, cast."""
    _check_operands(x, qweight, weight_scale)
    xq, xs = fp8.quantize(x, "token")
    y = fp8.dequantize(xq, xs) @ fp8.dequantize(qweight, weight_scale).t()  # [..., K] @ [K, N]
    if bias is not None:
        y = y + bias.float()
    return y.to(x.dtype)


def scaled_mm_available(device: torch.device) -> bool:
    """True on CUDA devices with FP8 tensor cores (sm_89 and newer)."""
    return device.type == "cuda" and torch.cuda.get_device_capability(device) >= (8, 9)


def fp8_gemm(
    x: torch.Tensor,
    qweight: torch.Tensor,
    weight_scale: torch.Tensor,
    bias: torch.Tensor | None = None,
    *,
    backend: Backend = "auto",
) -> torch.Tensor:
    """W8A8 GEMM, same contract as `fp8_gemm_ref`; ``backend`` picks the implementation."""
    n, k = qweight.shape if qweight.dim() == 2 else (0, 0)
    shapes_ok = k % 16 == 0 and n % 16 == 0
    if backend == "auto":
        backend = "scaled_mm" if scaled_mm_available(x.device) and shapes_ok else "ref"
    if backend == "ref":
        return fp8_gemm_ref(x, qweight, weight_scale, bias)
    if backend != "scaled_mm":
        raise ValueError(f"fp8_gemm: backend must be 'auto', 'scaled_mm' or 'ref', got {backend!r}")
    _check_operands(x, qweight, weight_scale)
    if not shapes_ok:
        raise ValueError(f"fp8_gemm: torch._scaled_mm needs N and K multiples of 16, got weight {(n, k)}")
    x2 = x.reshape(-1, k)  # [..., K] -> [M, K]
    xq, xs = fp8.quantize(x2, "token")  # [M, K] e4m3, [M, 1] fp32
    ws = weight_scale.float().reshape(-1, 1).expand(n, 1).reshape(1, n).contiguous()  # -> [1, N]
    out_dtype = x.dtype if x.dtype in (torch.bfloat16, torch.float16) else torch.float32
    y = torch._scaled_mm(xq, qweight.t(), scale_a=xs, scale_b=ws, out_dtype=out_dtype)  # [M, N]
    if bias is not None:
        y = (y.float() + bias.float()).to(out_dtype)
    return y.to(x.dtype).reshape(*x.shape[:-1], n)  # [M, N] -> [..., N]


def _check_operands(x: torch.Tensor, qweight: torch.Tensor, weight_scale: torch.Tensor) -> None:
    if qweight.dtype != E4M3_DTYPE or qweight.dim() != 2:
        raise TypeError(f"fp8_gemm: expected weight float8_e4m3fn [N, K], got {qweight.dtype} {tuple(qweight.shape)}")
    n, k = qweight.shape
    if tuple(weight_scale.shape) not in ((), (1,), (n, 1)):
        raise ValueError(f"fp8_gemm: expected weight scale of shape () or ({n}, 1), got {tuple(weight_scale.shape)}")
    if x.shape[-1] != k:
        raise ValueError(f"fp8_gemm: x has last dimension {x.shape[-1]}, the weight expects K = {k}")
