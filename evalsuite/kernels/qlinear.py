"""Quantized drop-in replacements for ``nn.Linear``: the module layer of `kernels/`.

- `FP8Linear`: E4M3 weight with a per-tensor (model card) or per-channel fp32 scale. W8A8 (activations
  quantized per token on every call, `kernels.fp8_gemm`), except on CUDA with Triton for at most
  ``FP8_GEMV_MAX_M`` rows: there the weight-only W8A16 GEMV (`kernels.triton.fp8_gemv`), since a
  decode step is a weight stream and quantizing its few activation rows only adds a pass.
- `NVFP4Linear`: W4A16. NVFP4 weight (`kernels.nvfp4`); activations stay in their dtype. CUDA
  inputs with Triton pick by row count M: the split-K GEMV (`kernels.triton.nvfp4_gemv`) for
  ``M <= NVFP4_GEMV_MAX_M``, dequantize-then-cuBLAS for ``M >= NVFP4_DEQUANT_MIN_M`` (a 4-bit
  weight saves nothing once the matmul is compute-bound, and the vendor matmul is the fastest one
  there), the tiled kernel (`kernels.triton.nvfp4_gemm`) between.

Off CUDA both run their reference arithmetic (``cached``): the same fp32 matmul against the
dequantized weight as `nvfp4_gemm_ref` / `fp8_gemm_ref`, bit for bit, but the fp32 weight is
dequantized once and kept until the module's buffers change (replaced, moved or written in place),
instead of on every call. ``ref`` always dequantizes: the oracle.

Both are built with ``from_linear(linear)``, keep the bias in its original dtype, return outputs in
the input's dtype, and expose ``fmt`` (the format name), ``dequantized_weight()`` and ``nbytes``.
Their buffers are named as in the packed checkpoint (`evalsuite.kernels.checkpoint`): ``qdata``, ``scale`` /
``block_scales``, ``global_scale``. A linear on the meta device converts to a meta quantized layer
(shapes only), so a full-size model can be planned and sized without memory.
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import nn

from evalsuite.kernels import fp8, nvfp4
from evalsuite.kernels.constants import E4M3_DTYPE, NVFP4_BLOCK_SIZE
from evalsuite.kernels.fp8_gemm import fp8_gemm
from evalsuite.kernels.triton import HAS_TRITON
from evalsuite.kernels.triton.fp8_gemv import GEMV_MAX_M as _FP8_GEMV_MAX_M
from evalsuite.kernels.triton.fp8_gemv import fp8_gemv
from evalsuite.kernels.triton.nvfp4_gemm import nvfp4_gemm, nvfp4_gemm_ref
from evalsuite.kernels.triton.nvfp4_gemv import GEMV_MAX_M, nvfp4_dequantize_triton, nvfp4_gemv

FP8Backend = Literal["auto", "gemv", "scaled_mm", "cached", "ref"]
NVFP4Backend = Literal["auto", "triton", "gemv", "dequant", "cached", "ref"]
FP8_GEMV_MAX_M = _FP8_GEMV_MAX_M  # rows up to which `FP8Linear` on CUDA runs the W8A16 GEMV
NVFP4_GEMV_MAX_M = GEMV_MAX_M  # rows up to which `NVFP4Linear` on CUDA runs the GEMV
NVFP4_DEQUANT_MIN_M = 64  # rows from which it dequantizes to the activation dtype and calls the vendor matmul


def fp8_backend_for(m: int, device: torch.device) -> str:
    """The `FP8Linear` backend ``"auto"`` resolves to for ``m`` rows (``"auto"``: `fp8_gemm` decides)."""
    if device.type != "cuda":
        return "cached"
    return "gemv" if HAS_TRITON and m <= FP8_GEMV_MAX_M else "auto"


def nvfp4_backend_for(m: int, device: torch.device) -> str:
    """The `NVFP4Linear` backend ``"auto"`` resolves to for ``m`` activation rows on ``device``."""
    if device.type != "cuda":
        return "cached"
    if not HAS_TRITON:
        return "ref"
    if m <= NVFP4_GEMV_MAX_M:
        return "gemv"
    return "dequant" if m >= NVFP4_DEQUANT_MIN_M else "triton"


class _WeightCache:
    """The fp32 dequantized weight of a quantized layer, kept while its source buffers are the same
    tensors at the same in-place version (``Tensor._version`` counts writes such as ``copy_``).
    Inference tensors (made under ``torch.inference_mode``) count no versions and are never cached."""

    def __init__(self) -> None:
        self.sources: tuple[torch.Tensor, ...] = ()
        self.versions: tuple[tuple[int, int], ...] = ()
        self.weight: torch.Tensor | None = None

    def get(self, sources: tuple[torch.Tensor, ...], make) -> torch.Tensor:
        if torch.compiler.is_compiling():  # traced after an eager warm-up filled the cache; a weight
            return make() if self.weight is None else self.weight  # change means a new compile
        if any(t.is_inference() for t in sources):  # no version counter: writes cannot be seen, so no cache
            return make()
        # ``layer.qdata.data = new`` keeps the tensor and its version but not its storage
        versions = tuple((t._version, t.data_ptr()) for t in sources)
        fresh = (self.weight is not None and len(sources) == len(self.sources)
                 and all(a is b for a, b in zip(sources, self.sources)) and versions == self.versions)
        if not fresh:
            self.sources, self.versions, self.weight = sources, versions, make()
        return self.weight


def _fp32_linear(x: torch.Tensor, w: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    """``x @ w.T + bias`` for fp32 ``x`` and ``w``, in fp32: the references' arithmetic after dequantizing."""
    y = x @ w.t()  # [..., K] @ [K, N] -> [..., N]
    return y if bias is None else y + bias.float()


def _nbytes(*tensors: torch.Tensor | None) -> int:
    return sum(t.numel() * t.element_size() for t in tensors if t is not None)


def _copy_bias(linear: nn.Linear) -> nn.Parameter | None:
    if linear.bias is None:
        return None
    return nn.Parameter(linear.bias.detach().clone(), requires_grad=False)


class _QuantizedBuffers(nn.Module):
    """Keeps the stored format of the quantized buffers (``_formatted``) through ``.to(dtype)``,
    ``.half()``, ``.bfloat16()`` on the layer or its model: PyTorch counts float8 as a floating dtype
    and would cast the codes and round the fp32 scales (the next forward then fails, or dequantizes
    with bf16 scales). Device moves and ``to_empty`` still apply; the bias follows the cast."""

    _formatted: tuple[str, ...] = ()

    def _apply(self, fn, recurse: bool = True):  # type: ignore[no-untyped-def]
        saved = {n: self._buffers[n] for n in self._formatted if self._buffers.get(n) is not None}
        for n in saved:
            self._buffers[n] = None  # hidden from nn.Module._apply
        try:
            super()._apply(fn, recurse)
        finally:
            for n, t in saved.items():
                out = fn(t)
                if out.dtype != t.dtype:  # a cast: keep the format, take only the move
                    out = torch.empty_like(t, device=out.device) if t.is_meta else t.to(device=out.device)
                self._buffers[n] = out
        return self


class FP8Linear(_QuantizedBuffers):
    """W8A8 FP8 linear layer: E4M3 weight ``qdata[N, K]`` with fp32 ``scale`` (``()`` or ``[N, 1]``)."""

    _formatted = ("qdata", "scale")

    def __init__(
        self,
        in_features: int,
        out_features: int,
        bias: bool = True,
        *,
        granularity: Literal["tensor", "channel"] = "tensor",
        device: torch.device | str | None = None,
        bias_dtype: torch.dtype = torch.bfloat16,
    ) -> None:
        super().__init__()
        if granularity not in ("tensor", "channel"):
            raise ValueError(f"FP8Linear: granularity must be 'tensor' or 'channel', got {granularity!r}")
        self.in_features, self.out_features, self.granularity = in_features, out_features, granularity
        scale_shape = () if granularity == "tensor" else (out_features, 1)
        self.register_buffer("qdata", torch.zeros(out_features, in_features, dtype=E4M3_DTYPE, device=device))
        self.register_buffer("scale", torch.ones(scale_shape, dtype=torch.float32, device=device))
        b = torch.zeros(out_features, dtype=bias_dtype, device=device) if bias else None
        self.bias = nn.Parameter(b, requires_grad=False) if b is not None else None
        self.backend: FP8Backend = "auto"
        self._cache = _WeightCache()

    @property
    def fmt(self) -> str:
        return "fp8" if self.granularity == "tensor" else "fp8-channel"

    @classmethod
    def from_linear(cls, linear: nn.Linear, granularity: Literal["tensor", "channel"] = "tensor") -> FP8Linear:
        w = linear.weight
        bias_dtype = linear.bias.dtype if linear.bias is not None else w.dtype
        layer = cls(linear.in_features, linear.out_features, linear.bias is not None,
                    granularity=granularity, device=w.device, bias_dtype=bias_dtype)  # fmt: skip
        if not w.is_meta:
            q = fp8.quantize(w.detach(), granularity)
            layer.qdata.copy_(q.qdata)
            layer.scale.copy_(q.scales)
        layer.bias = _copy_bias(linear)
        return layer

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        backend = self.backend
        if backend not in ("auto", "gemv", "cached", "scaled_mm", "ref"):
            raise ValueError(f"FP8Linear: backend must be one of auto, gemv, cached, scaled_mm, ref; got {backend!r}")
        if backend == "auto":  # may resolve to "auto" again: fp8_gemm then picks scaled_mm or its reference by shape
            backend = fp8_backend_for(x.numel() // max(x.shape[-1], 1), x.device)
        if backend == "gemv":
            return fp8_gemv(x, self.qdata, self.scale, self.bias)
        if backend == "cached":
            w = self._cache.get((self.qdata, self.scale), lambda: fp8.dequantize(self.qdata, self.scale))
            xq, xs = fp8.quantize(x, "token")  # W8A8: the activations are quantized on every call
            return _fp32_linear(fp8.dequantize(xq, xs), w, self.bias).to(x.dtype)
        return fp8_gemm(x, self.qdata, self.scale, self.bias, backend=backend)

    def dequantized_weight(self, dtype: torch.dtype = torch.float32) -> torch.Tensor:
        return fp8.dequantize(self.qdata, self.scale, dtype)

    @property
    def nbytes(self) -> int:
        return _nbytes(self.qdata, self.scale, self.bias)

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, fmt={self.fmt}, bias={self.bias is not None}"


class NVFP4Linear(_QuantizedBuffers):
    """W4A16 NVFP4 linear layer: ``qdata[N, K/2]`` uint8, ``block_scales[N, K/16]`` E4M3, fp32 ``global_scale``."""

    fmt = "nvfp4"
    _formatted = ("qdata", "block_scales", "global_scale")

    def __init__(
        self,
        in_features: int,
        out_features: int,
        bias: bool = True,
        *,
        device: torch.device | str | None = None,
        bias_dtype: torch.dtype = torch.bfloat16,
    ) -> None:
        super().__init__()
        if in_features % NVFP4_BLOCK_SIZE:
            raise ValueError(f"NVFP4Linear: in_features must be a multiple of {NVFP4_BLOCK_SIZE}, got {in_features}")
        self.in_features, self.out_features = in_features, out_features
        n, k = out_features, in_features
        self.register_buffer("qdata", torch.zeros(n, k // 2, dtype=torch.uint8, device=device))
        self.register_buffer(
            "block_scales", torch.zeros(n, k // NVFP4_BLOCK_SIZE, dtype=E4M3_DTYPE, device=device)
        )
        self.register_buffer("global_scale", torch.ones((), dtype=torch.float32, device=device))
        b = torch.zeros(out_features, dtype=bias_dtype, device=device) if bias else None
        self.bias = nn.Parameter(b, requires_grad=False) if b is not None else None
        self.backend: NVFP4Backend = "auto"
        self._cache = _WeightCache()

    @classmethod
    def from_linear(cls, linear: nn.Linear) -> NVFP4Linear:
        w = linear.weight
        bias_dtype = linear.bias.dtype if linear.bias is not None else w.dtype
        layer = cls(linear.in_features, linear.out_features, linear.bias is not None,
                    device=w.device, bias_dtype=bias_dtype)  # fmt: skip
        if not w.is_meta:
            q = nvfp4.quantize(w.detach())
            layer.qdata.copy_(q.qdata)
            layer.block_scales.copy_(q.block_scales)
            layer.global_scale.copy_(q.global_scale)
        layer.bias = _copy_bias(linear)
        return layer

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        backend = self.backend
        if backend == "auto":
            backend = nvfp4_backend_for(x.numel() // max(x.shape[-1], 1), x.device)
        args = (x, self.qdata, self.block_scales, self.global_scale, self.bias)
        if backend == "gemv":
            return nvfp4_gemv(*args)
        if backend == "dequant":
            dtype = x.dtype if x.dtype in (torch.bfloat16, torch.float16) else torch.float32
            w = nvfp4_dequantize_triton(self.qdata, self.block_scales, self.global_scale, dtype)
            bias = None if self.bias is None else self.bias.to(dtype)
            return torch.nn.functional.linear(x.to(dtype), w, bias).to(x.dtype)
        if backend == "triton":
            return nvfp4_gemm(*args)
        if backend == "cached":
            w = self._cache.get((self.qdata, self.block_scales, self.global_scale),
                                lambda: nvfp4.dequantize(self.qdata, self.block_scales, self.global_scale, torch.float32))
            return _fp32_linear(x.float(), w, self.bias).to(x.dtype)
        if backend == "ref":
            return nvfp4_gemm_ref(*args)
        raise ValueError(f"NVFP4Linear: backend must be one of auto, triton, gemv, dequant, cached, ref; got {backend!r}")

    def dequantized_weight(self, dtype: torch.dtype = torch.float32) -> torch.Tensor:
        return nvfp4.dequantize(self.qdata, self.block_scales, self.global_scale, dtype)

    @property
    def nbytes(self) -> int:
        return _nbytes(self.qdata, self.block_scales, self.global_scale, self.bias)

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, fmt=nvfp4, bias={self.bias is not None}"


QuantizedLinear = FP8Linear | NVFP4Linear
