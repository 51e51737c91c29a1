"""NVFP4 codec: the plain-PyTorch reference for every NVFP4 path in the suite.

NVFP4 stores a tensor ``x[..., K]`` as

- ``qdata``: uint8 ``[..., K/2]``, two E2M1 codes per byte, the FIRST value of each pair in the LOW
  nibble (``byte = code[2i] | code[2i+1] << 4``);
- ``block_scales``: float8_e4m3fn ``[..., K/16]``, one per 16 consecutive values of the last dim;
- ``global_scale``: fp32 scalar, ``amax(|x|) / (448 * 6)``.

and decodes ``x ≈ e2m1(code) * block_scale * global_scale``. The global scale is chosen so that the
largest block of the tensor gets block scale 448, the top of the E4M3 range, leaving the whole
E4M3 range (normal and subnormal) for the other blocks.

Definition followed: NVIDIA Model Optimizer (ModelOpt) 0.47.0, ``NVFP4QTensor.quantize`` in
``modelopt/torch/quantization/qtensor/nvfp4_tensor.py``, the path its checkpoint export
(``modelopt/torch/export/quant_utils.py``, ``to_quantized_weight``) takes to write the published NVFP4
checkpoints. torchao's ``nvfp4_quantize`` agrees except where noted. All in fp32:

1. ``global_scale = amax(|x|) / 2688``
2. ``s = amax(|block|) / (6 * global_scale)``; a block whose amax is exactly 0 gets ``s = 1``;
   ``block_scale = e4m3(s)``, round to nearest even, subnormals kept (small blocks keep precision).
3. ``y = x / (float(block_scale) * global_scale)``: one product, then one division, in that order
   (ModelOpt's ``input / (weights_scaling_factor.to(float32) * weights_scaling_factor_2)``). The order
   decides the side of a rounding tie: with ``a = 1e-3`` and the tensor amax ``6a``, ``-0.25a`` divides
   to ``-0.25000003`` (code 9, -0.5), while ``x * ((1 / global_scale) / block_scale)`` gives exactly
   ``-0.25`` (code 8, -0).
4. ``code = E2M1 round-to-nearest-even of |y|``, saturating at 6; sign bit (bit 3) set iff ``y < 0``
   (so -0.0 encodes as code 0 and a small negative value that rounds to zero as code 8).

Step 4 counts the midpoints between consecutive E2M1 magnitudes (0.25, 0.75, 1.25, 1.75, 2.5, 3.5,
5) that ``|y|`` lies above; that count is the magnitude code, and it saturates at 7 (= 6.0) by
construction. A value exactly on a midpoint must go to the neighbour with the even mantissa bit
(0.25→0, 0.75→1, 1.25→1, 1.75→2, 2.5→2, 3.5→4, 5→4), so the comparison is ``>=`` for the three
midpoints whose tie rounds up and ``>`` for the four whose tie rounds down. Seven uint8 compares
are faster on CPU than ``bucketize`` and state the rounding rule directly.

Where this codec departs from the published code, on inputs where that code has no sensible answer:

- ``amax == 0`` (all-zero tensor): ``global_scale = 1`` (the published code divides by zero and
  returns NaN scales). An all-zero tensor round-trips to zeros.
- A caller-given global scale that puts ``s`` above 448: ``s`` is clamped to 448 and the values
  saturate at ±6 (ModelOpt's cast would give NaN or depend on the torch version's cast).
- A block whose ``s`` is nonzero but rounds to E4M3 zero (block amax below ~2e-6 of the tensor's):
  its block scale is 0 and its codes are 0, so it dequantizes to 0. ModelOpt 0.47 clamps ``s``
  below at 2^-9 (the smallest E4M3 subnormal) instead, so such a block keeps a coarse grid.
- torchao 0.18.0 differs in two ways: it clamps ``s`` below at 2^-6 (no subnormal block
  scales, so blocks far below the tensor's amax get a coarser grid), and ``_nvfp4_quantize``
  multiplies by ``(1 / per_tensor_scale) / block_scale`` instead of dividing (to match a Triton
  kernel), which flips a code that sits on a rounding midpoint (step 3).
- NaN and ±inf: E2M1 cannot encode them, and one would poison the global scale of the whole
  tensor, so ``quantize`` raises ``ValueError``. NVFP4 here is a weight format (W4A16), quantized
  once, so the check is cheap.

``rounding="stochastic"`` rounds each scaled value to one of its two E2M1 neighbours with
probability proportional to proximity (block scales stay round-to-nearest), so the expected
dequantized value equals the input wherever ``|y| <= 6``.
"""

from __future__ import annotations

from typing import Literal, NamedTuple

import torch

from evalsuite.kernels.constants import (
    E2M1_BOUNDS,
    E2M1_MAX,
    E2M1_SIGN_BIT,
    E2M1_TIES_ROUND_UP,
    E2M1_VALUES,
    E4M3_DTYPE,
    E4M3_MAX,
    NVFP4_BLOCK_SIZE,
    NVFP4_GLOBAL_DENOM,
)

Rounding = Literal["nearest", "stochastic"]
_FLOAT_DTYPES = (torch.float32, torch.bfloat16, torch.float16)


class NVFP4Quantized(NamedTuple):
    """Result of `quantize`: ``qdata, block_scales, global_scale = quantize(x)``.

    ``qdata`` uint8 ``[..., K/2]`` (first value low nibble), ``block_scales`` float8_e4m3fn
    ``[..., K/16]``, ``global_scale`` fp32 scalar tensor (the one passed in, or ``amax / 2688``).
    """

    qdata: torch.Tensor
    block_scales: torch.Tensor
    global_scale: torch.Tensor


# ---- E2M1 codes ---------------------------------------------------------------------------------
def encode_e2m1(y: torch.Tensor) -> torch.Tensor:
    """Round fp32 ``y`` to nearest-even E2M1, saturating at ±6. Returns uint8 codes 0–15, same shape."""
    mag = y.float().abs()
    code = torch.zeros(y.shape, dtype=torch.uint8, device=y.device)
    for bound in E2M1_BOUNDS:
        code += (mag >= bound) if bound in E2M1_TIES_ROUND_UP else (mag > bound)
    return code | (y < 0).to(torch.uint8) * E2M1_SIGN_BIT


def decode_e2m1(codes: torch.Tensor) -> torch.Tensor:
    """fp32 values of uint8 E2M1 codes (0–15), same shape."""
    table = torch.tensor(E2M1_VALUES, dtype=torch.float32, device=codes.device)
    return table[codes.long()]


def pack_fp4(codes: torch.Tensor) -> torch.Tensor:
    """uint8 codes ``[..., K]`` (K even) → bytes ``[..., K/2]``, first of each pair in the low nibble."""
    if codes.shape[-1] % 2:
        raise ValueError(f"pack_fp4: last dimension must be even, got shape {tuple(codes.shape)}")
    pairs = codes.to(torch.uint8).reshape(*codes.shape[:-1], -1, 2)  # [..., K] -> [..., K/2, 2]
    return pairs[..., 0] | (pairs[..., 1] << 4)


def unpack_fp4(packed: torch.Tensor) -> torch.Tensor:
    """Bytes ``[..., K/2]`` → uint8 codes ``[..., K]``; inverse of `pack_fp4`."""
    if packed.dtype != torch.uint8:
        raise TypeError(f"unpack_fp4: expected uint8 packed data, got {packed.dtype}")
    pairs = torch.stack((packed & 0xF, packed >> 4), dim=-1)  # [..., K/2, 2]
    return pairs.reshape(*packed.shape[:-1], -1)  # [..., K]


# ---- scales -------------------------------------------------------------------------------------
def global_scale_from_amax(amax: torch.Tensor | float) -> torch.Tensor:
    """fp32 scalar ``amax / (448 * 6)``; 1.0 when ``amax == 0``."""
    a = torch.as_tensor(amax).float().reshape(())
    # amax below ~3.8e-42 (fp32 subnormals) would divide to 0, a scale the codec then refuses
    tiny = torch.finfo(torch.float32).tiny
    return torch.where(a > 0, (a / NVFP4_GLOBAL_DENOM).clamp(min=tiny), torch.ones_like(a))


def compute_global_scale(x: torch.Tensor) -> torch.Tensor:
    """fp32 scalar global scale of ``x``: ``amax(|x|) / 2688`` (1.0 for an all-zero tensor)."""
    _check_input(x)
    return global_scale_from_amax(x.detach().abs().amax().float())


def compute_block_scales(x: torch.Tensor, global_scale: torch.Tensor) -> torch.Tensor:
    """E4M3 block scales ``[..., K/16]`` of ``x[..., K]`` under ``global_scale``."""
    blocks = x.detach().float().reshape(*x.shape[:-1], -1, NVFP4_BLOCK_SIZE)  # [..., K/16, 16]
    s = blocks.abs().amax(dim=-1) / (E2M1_MAX * global_scale)
    s = torch.where(s == 0, torch.ones_like(s), s)
    return s.clamp(max=E4M3_MAX).to(E4M3_DTYPE)


# ---- codec --------------------------------------------------------------------------------------
def quantize(
    x: torch.Tensor,
    global_scale: torch.Tensor | float | None = None,
    *,
    rounding: Rounding = "nearest",
    generator: torch.Generator | None = None,
) -> NVFP4Quantized:
    """Quantize ``x[..., K]`` (K a multiple of 16) to NVFP4. See `NVFP4Quantized` for the result."""
    _check_input(x)
    if not bool(torch.isfinite(x).all()):
        n_bad = int((~torch.isfinite(x)).sum())
        raise ValueError(f"nvfp4.quantize: input has {n_bad} NaN/inf values; NVFP4 cannot encode them")
    gs = compute_global_scale(x) if global_scale is None else _check_global_scale(global_scale, x.device)
    block_scales = compute_block_scales(x, gs)
    denom = block_scales.float() * gs  # [..., K/16]
    blocks = x.float().reshape(*x.shape[:-1], -1, NVFP4_BLOCK_SIZE)  # [..., K/16, 16]
    safe = torch.where(denom > 0, denom, torch.ones_like(denom)).unsqueeze(-1)
    y = torch.where(denom.unsqueeze(-1) > 0, blocks / safe, torch.zeros_like(blocks))
    y = y.reshape(x.shape)  # [..., K/16, 16] -> [..., K]
    if rounding == "nearest":
        codes = encode_e2m1(y)
    elif rounding == "stochastic":
        codes = _encode_e2m1_stochastic(y, generator)
    else:
        raise ValueError(f"nvfp4.quantize: rounding must be 'nearest' or 'stochastic', got {rounding!r}")
    return NVFP4Quantized(pack_fp4(codes), block_scales, gs)


def dequantize(
    qdata: torch.Tensor,
    block_scales: torch.Tensor,
    global_scale: torch.Tensor | float,
    dtype: torch.dtype = torch.float32,
) -> torch.Tensor:
    """``e2m1(code) * block_scale * global_scale`` in fp32, returned as ``dtype``, shape ``[..., K]``."""
    if qdata.dtype != torch.uint8:
        raise TypeError(f"nvfp4.dequantize: expected uint8 qdata, got {qdata.dtype}")
    if block_scales.dtype != E4M3_DTYPE:
        raise TypeError(f"nvfp4.dequantize: expected float8_e4m3fn block_scales, got {block_scales.dtype}")
    k = qdata.shape[-1] * 2
    if tuple(block_scales.shape) != (*qdata.shape[:-1], k // NVFP4_BLOCK_SIZE) or k % NVFP4_BLOCK_SIZE:
        raise ValueError(
            f"nvfp4.dequantize: qdata {tuple(qdata.shape)} needs block_scales of shape "
            f"{(*qdata.shape[:-1], k // NVFP4_BLOCK_SIZE)}, got {tuple(block_scales.shape)}"
        )
    gs = torch.as_tensor(global_scale, device=qdata.device).float()
    values = decode_e2m1(unpack_fp4(qdata))  # [..., K]
    blocks = values.reshape(*qdata.shape[:-1], -1, NVFP4_BLOCK_SIZE)  # [..., K/16, 16]
    out = blocks * (block_scales.float() * gs).unsqueeze(-1)
    return out.reshape(values.shape).to(dtype)


def _encode_e2m1_stochastic(y: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
    """E2M1 codes rounding ``|y|`` up or down at random, P(up) = distance from the lower neighbour."""
    grid = torch.tensor(E2M1_VALUES[:8], dtype=torch.float32, device=y.device)  # 0 .. 6 ascending
    mag = y.abs().clamp(max=E2M1_MAX)
    lo = torch.bucketize(mag, grid, right=True) - 1  # grid[lo] <= mag, 0..7
    hi = (lo + 1).clamp(max=7)
    lo_v, hi_v = grid[lo], grid[hi]
    gap = hi_v - lo_v
    p_up = torch.where(gap > 0, (mag - lo_v) / torch.where(gap > 0, gap, 1.0), 0.0)
    u = torch.rand(mag.shape, generator=generator, device=y.device)
    mag_code = torch.where(u < p_up, hi, lo).to(torch.uint8)
    return mag_code | (y < 0).to(torch.uint8) * E2M1_SIGN_BIT


def _check_input(x: torch.Tensor) -> None:
    if not isinstance(x, torch.Tensor) or x.dtype not in _FLOAT_DTYPES:
        got = x.dtype if isinstance(x, torch.Tensor) else type(x).__name__
        raise TypeError(f"nvfp4.quantize: expected a float32/bfloat16/float16 tensor, got {got}")
    if x.numel() == 0:
        raise ValueError(f"nvfp4.quantize: expected a non-empty tensor, got shape {tuple(x.shape)}")
    if x.dim() == 0 or x.shape[-1] % NVFP4_BLOCK_SIZE:
        raise ValueError(
            f"nvfp4.quantize: last dimension must be a multiple of {NVFP4_BLOCK_SIZE} (the NVFP4 block "
            f"size), got shape {tuple(x.shape)}"
        )


def _check_global_scale(global_scale: torch.Tensor | float, device: torch.device) -> torch.Tensor:
    gs = torch.as_tensor(global_scale, device=device).float()
    if gs.numel() != 1 or not bool(torch.isfinite(gs).all()) or not bool((gs > 0).all()):
        raise ValueError(f"nvfp4.quantize: global_scale must be one finite positive number, got {global_scale!r}")
    return gs.reshape(())
