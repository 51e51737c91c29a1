"""FP8 E4M3 codec: the plain-PyTorch reference for every FP8 path in the suite.

A scale group (the whole tensor, one row of a weight, or one token of an activation) is mapped
onto E4M3 by ``scale = amax / 448`` and ``qdata = e4m3(clamp(x / scale, -448, 448))``, and back by
``qdata * scale``. The division and clamp run in fp32; the cast rounds to nearest, ties to even.

Granularity (``granularity=``):

- ``"tensor"``: one fp32 scale, shape ``()``. The model card's FP8 weights are per-tensor.
- ``"channel"``: one scale per row of a ``[N, K]`` weight (per output channel), shape ``[N, 1]``.
- ``"token"``: one scale per row of an ``[..., K]`` activation, shape ``[..., 1]``. Computed on the
  fly in the W8A8 linear layer (dynamic per-token activation scaling).

``channel`` and ``token`` are the same arithmetic (reduce over the last dimension); the two names
say what the caller means. Scales always broadcast against ``x``, so ``dequantize`` is one multiply.

Edge cases, all tested:

- An all-zero group gets ``scale = 1e-12 / 448`` (amax is floored at ``FP8_AMAX_EPS``) and
  round-trips to exact zeros instead of 0/0.
- Values beyond the scale's range saturate to ±448 (explicit clamp, so the behaviour does not depend
  on how a given torch version casts out-of-range values).
- NaN or ±inf poison their scale group: amax becomes NaN or inf, and every value of that group
  dequantizes to NaN (E4M3 has a NaN but no infinity). Other groups are untouched. The codec does
  not check for them, because activation quantization runs inside every forward pass; the model
  swap (`evalsuite.kernels.swap`) refuses non-finite weights with an error that names the module.

``rounding="stochastic"`` rounds each scaled value to one of its two E4M3 neighbours with
probability proportional to proximity, so the expected dequantized value equals the input (for
values inside the representable range). Pass a ``torch.Generator`` for reproducible draws.
"""

from __future__ import annotations

from typing import Literal, NamedTuple

import torch

from evalsuite.kernels.constants import E4M3_DTYPE, E4M3_MAX, FP8_AMAX_EPS

Granularity = Literal["tensor", "channel", "token"]
Rounding = Literal["nearest", "stochastic"]
GRANULARITIES: tuple[str, ...] = ("tensor", "channel", "token")

_FLOAT_DTYPES = (torch.float32, torch.bfloat16, torch.float16)


class FP8Quantized(NamedTuple):
    """``qdata``: float8_e4m3fn, same shape as the input. ``scales``: fp32, broadcastable to it."""

    qdata: torch.Tensor
    scales: torch.Tensor


def compute_scales(x: torch.Tensor, granularity: Granularity = "tensor") -> torch.Tensor:
    """fp32 scales ``amax / 448`` for ``x`` at ``granularity`` (shape ``()`` or ``[..., 1]``)."""
    _check_input(x, granularity)
    ax = x.detach().abs().float()
    if granularity == "tensor":
        amax = ax.amax() if x.numel() else torch.zeros((), device=x.device)
    else:
        amax = ax.amax(dim=-1, keepdim=True)  # [..., K] -> [..., 1]
    # clamp_min keeps NaN (so a NaN group stays poisoned) and lifts 0 to the floor
    return amax.clamp_min(FP8_AMAX_EPS) / E4M3_MAX


def quantize(
    x: torch.Tensor,
    granularity: Granularity = "tensor",
    *,
    scales: torch.Tensor | None = None,
    rounding: Rounding = "nearest",
    generator: torch.Generator | None = None,
) -> FP8Quantized:
    """Quantize ``x`` to E4M3 with scales from its amax at ``granularity`` (or the given ``scales``)."""
    if scales is None:
        scales = compute_scales(x, granularity)
    else:
        _check_input(x, granularity)
        scales = scales.float()
    y = (x.float() / scales).clamp(-E4M3_MAX, E4M3_MAX)
    if rounding == "nearest":
        q = y.to(E4M3_DTYPE)
    elif rounding == "stochastic":
        q = _round_stochastic(y, generator)
    else:
        raise ValueError(f"fp8.quantize: rounding must be 'nearest' or 'stochastic', got {rounding!r}")
    return FP8Quantized(q, scales)


def dequantize(qdata: torch.Tensor, scales: torch.Tensor, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """``qdata * scales`` computed in fp32, returned as ``dtype``."""
    if qdata.dtype != E4M3_DTYPE:
        raise TypeError(f"fp8.dequantize: expected qdata of dtype float8_e4m3fn, got {qdata.dtype}")
    return (qdata.float() * scales.float()).to(dtype)


def _round_stochastic(y: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
    """Round fp32 ``y`` (already within ±448) to E4M3, up or down with probability by distance."""
    mag = y.abs()
    near = mag.to(E4M3_DTYPE)  # RNE neighbour; its bit pattern orders like its value for mag >= 0
    near_f = near.float()
    bits = near.view(torch.uint8).to(torch.int16)
    # the other neighbour is one code step away, toward the side of mag that `near` is not on
    other_bits = torch.where(near_f > mag, bits - 1, bits + 1).clamp(0, 0x7E)  # 0x7E = 448
    other_f = other_bits.to(torch.uint8).view(E4M3_DTYPE).float()
    lo = torch.minimum(near_f, other_f)
    hi = torch.maximum(near_f, other_f)
    gap = hi - lo
    p_up = torch.where(gap > 0, (mag - lo) / torch.where(gap > 0, gap, 1.0), 0.0)
    u = torch.rand(mag.shape, generator=generator, device=mag.device)
    out = torch.where(u < p_up, hi, lo)
    out = torch.where(torch.isnan(y), y, out)  # NaN stays NaN
    return torch.copysign(out, y).to(E4M3_DTYPE)


def _check_input(x: torch.Tensor, granularity: str) -> None:
    if not isinstance(x, torch.Tensor) or x.dtype not in _FLOAT_DTYPES:
        got = x.dtype if isinstance(x, torch.Tensor) else type(x).__name__
        raise TypeError(f"fp8.quantize: expected a float32/bfloat16/float16 tensor, got {got}")
    if granularity not in GRANULARITIES:
        raise ValueError(f"fp8.quantize: granularity must be one of {GRANULARITIES}, got {granularity!r}")
    if granularity != "tensor" and x.dim() == 0:
        raise ValueError(f"fp8.quantize: granularity {granularity!r} needs at least 1 dimension, got a scalar")
    if x.numel() == 0 and (granularity == "tensor" or x.shape[-1] == 0):
        raise ValueError(f"fp8.quantize: expected a non-empty tensor (granularity {granularity!r}), "
                         f"got shape {tuple(x.shape)}")
