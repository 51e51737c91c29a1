"""Grouped linears: E same-shaped layers (one projection of an MoE's routed experts) as one call.

The caller sorts its rows by layer: rows ``offsets[e] .. offsets[e+1] - 1`` of ``x[A, K]`` go through
layer ``e`` (``experts[A]`` names each row's layer, ascending), and ``y[A, N]`` keeps that order.
`stack_linears(layers)` stacks the layers' weights once (``[E, N, K]`` and their scales) and returns a
`GroupedLinear` whose call is each layer's own arithmetic on its rows, with no Python loop over layers:

- ``nn.Linear`` (bf16/fp16/fp32): ``torch._grouped_mm`` where this torch has it for the device and dtype
  (CPU: fp32/bf16/fp16; CUDA: bf16 on sm80+ with 16-byte aligned rows); otherwise one batched matmul
  over the segments padded to the longest (`padded_grouped_mm`). Bias added per row.
- `NVFP4Linear` / `FP8Linear`, CUDA with Triton: one `kernels.triton.grouped_gemm` launch on the
  packed weights. NVFP4 is W4A16; FP8 follows `FP8Linear`'s rule by row count, applied to each
  expert's rows inside the one launch: weight-only (W8A16) for an expert of at most ``FP8_GEMV_MAX_M``
  rows, else W8A8 (each row quantized per token, as `FP8Linear` does), so the grouped call does what
  the loop over the experts' own layers does.
- `NVFP4Linear` / `FP8Linear` elsewhere (CPU): the layers' ``"cached"`` arithmetic, i.e. the fp32
  matmul against the dequantized weight (FP8: against the per-token dequantized activations), with
  the fp32 weights dequantized once for all layers, stacked, and kept with the stack.

Stacking does not copy the weights for good: each layer's weight (packed data, block scales, bias)
becomes a view of its slice of the stack (`_stack`), so the experts are held once. A stack is valid
while its sources are: ``key`` (`version_key`) changes when any weight, scale or bias is replaced,
moved, cast or written in place, and the caller rebuilds the stack then. `stack_linears`
returns None, and the caller keeps its per-layer loop, when the layers cannot be grouped: mixed types
or formats, forward hooks (a hook must see its own layer's rows), a backend pinned on a quantized
layer, inference tensors (no version counter to invalidate a cache by), NVFP4/FP8 on CUDA without Triton.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from evalsuite.kernels import fp8, nvfp4
from evalsuite.kernels.qlinear import FP8_GEMV_MAX_M, FP8Linear, NVFP4Linear
from evalsuite.kernels.triton import HAS_TRITON
from evalsuite.kernels.triton.grouped_gemm import grouped_gemm


def version_key(sources: Sequence[torch.Tensor | None]) -> tuple | None:
    """Changes when any source tensor is replaced, moved, cast or modified in place (None for inference
    tensors, which have no version counter)."""
    key = []
    for t in sources:
        if t is None:
            key.append(None)
        elif t.is_inference():
            return None
        else:
            key.append((id(t), t._version, t.data_ptr()))
    return tuple(key)


def grouped_mm_applies(x: torch.Tensor, w: torch.Tensor) -> bool:
    """Whether ``torch._grouped_mm`` runs ``x[A, K]`` against ``w[E, N, K]`` here (see the module docstring)."""
    if not hasattr(torch, "_grouped_mm") or x.dtype != w.dtype:
        return False
    if x.device.type == "cpu":
        return x.dtype in (torch.float32, torch.bfloat16, torch.float16)
    if x.device.type == "cuda":
        k, n = w.shape[2], w.shape[1]
        return (x.dtype == torch.bfloat16 and torch.cuda.get_device_capability(x.device) >= (8, 0)
                and k % 8 == 0 and n % 8 == 0)  # fmt: skip
    return False


def grouped_mm(x: torch.Tensor, w: torch.Tensor, experts: torch.Tensor, offsets: torch.Tensor) -> torch.Tensor:
    """``y[i] = x[i] @ w[experts[i]].T`` for rows sorted by expert: x [A, K], w [E, N, K] -> [A, N]."""
    if grouped_mm_applies(x, w):
        # offs: one past each expert's last row; mat_b [E, K, N] as a view (column-major per expert)
        return torch._grouped_mm(x.contiguous(), w.transpose(1, 2), offs=offsets[1:].to(torch.int32))
    return padded_grouped_mm(x, w, experts, offsets)


def padded_grouped_mm(x: torch.Tensor, w: torch.Tensor, experts: torch.Tensor, offsets: torch.Tensor) -> torch.Tensor:
    """`grouped_mm` as one batched matmul: each expert that has rows gets a [C, K] slab (C = its most
    rows, the rest zeros), [E', C, K] @ [E', K, N]. Reads the counts on the host (a sync on a GPU)."""
    counts = offsets[1:] - offsets[:-1]  # [E]
    active = counts.nonzero().flatten()  # [E'] the experts some row goes to
    if active.numel() == 0:
        return x.new_zeros(x.shape[0], w.shape[1])
    slab = torch.empty_like(counts).index_copy_(0, active, torch.arange(active.numel(), device=x.device))
    pos = torch.arange(x.shape[0], device=x.device) - offsets[experts]  # [A] row within its segment
    c = int(counts.max())
    padded = x.new_zeros(active.numel(), c, x.shape[1])  # [E', C, K]
    padded[slab[experts], pos] = x
    wa = w if active.numel() == w.shape[0] else w[active]  # [E', N, K]
    return torch.bmm(padded, wa.transpose(1, 2))[slab[experts], pos]  # [E', C, N] -> [A, N]


class GroupedLinear:
    """E stacked layers of one kind; call ``(x [A, K], experts [A], offsets [E+1]) -> y [A, N]`` in ``x.dtype``."""

    def __init__(self, layers: Sequence[nn.Module]) -> None:
        self.key = stack_key(layers)
        assert self.key is not None
        self.sources = _sources(layers)  # held so that the ids in `key` stay unique while this is cached

    def __call__(self, x: torch.Tensor, experts: torch.Tensor, offsets: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError


def _stack(tensors: Sequence[torch.Tensor | None]) -> torch.Tensor | None:
    """``torch.stack`` of the layers' tensors, each of which then points (``.data``) at its slice of the
    stack, so the experts' weights are held once, not twice: a 30B model's routed experts are most of
    its memory. The tensors keep their identity (an optimizer or a hook holding a parameter still
    holds the one the layer uses) and their own version counters, so `version_key` still sees writes."""
    if tensors[0] is None:
        return None
    stacked = torch.stack([t.detach() for t in tensors])  # type: ignore[union-attr]
    for i, t in enumerate(tensors):
        t.data = stacked[i]  # type: ignore[union-attr]
    return stacked


class _PlainStack(GroupedLinear):
    """``nn.Linear`` layers: weight [E, N, K], bias [E, N]."""

    def __init__(self, layers: Sequence[nn.Linear]) -> None:
        self.weight = _stack([lin.weight for lin in layers])  # [E, N, K]
        self.bias = _stack([lin.bias for lin in layers])  # [E, N]
        super().__init__(layers)  # the key of the tensors as they now are: views of the stacks

    def __call__(self, x: torch.Tensor, experts: torch.Tensor, offsets: torch.Tensor) -> torch.Tensor:
        y = grouped_mm(x, self.weight, experts, offsets)  # type: ignore[arg-type]
        return y if self.bias is None else y + self.bias[experts]


class _NVFP4Stack(GroupedLinear):
    """`NVFP4Linear` layers: qdata [E, N, K/2], block scales [E, N, K/16], global scales [E], bias [E, N]."""

    def __init__(self, layers: Sequence[NVFP4Linear]) -> None:
        self.qdata = _stack([q.qdata for q in layers])
        self.block_scales = _stack([q.block_scales for q in layers])
        self.global_scale = torch.stack([q.global_scale.reshape(()).float() for q in layers])  # [E], a copy
        self.bias = _stack([q.bias for q in layers])
        self._fp32: torch.Tensor | None = None  # [E, N, K], made on the first call off CUDA
        super().__init__(layers)  # the key of the tensors as they now are: views of the stacks

    def __call__(self, x: torch.Tensor, experts: torch.Tensor, offsets: torch.Tensor) -> torch.Tensor:
        if x.device.type == "cuda":
            return grouped_gemm(x, offsets, self.qdata, self.block_scales, self.global_scale, self.bias)  # type: ignore[arg-type]
        if self._fp32 is None:
            gs = self.global_scale[:, None, None]  # type: ignore[index]  # [E] -> [E, 1, 1] against [E, N, K/16]
            self._fp32 = nvfp4.dequantize(self.qdata, self.block_scales, gs, torch.float32)  # type: ignore[arg-type]
        return _fp32_grouped(x.float(), self._fp32, self.bias, experts, offsets).to(x.dtype)


class _FP8Stack(GroupedLinear):
    """`FP8Linear` layers of one granularity: qdata [E, N, K], scales [E, N] (per tensor: repeated), bias [E, N]."""

    def __init__(self, layers: Sequence[FP8Linear]) -> None:
        self.qdata = _stack([q.qdata for q in layers])  # type: ignore[assignment]
        n = layers[0].out_features
        self.scales = torch.stack([q.scale.float().reshape(-1).expand(n) for q in layers]).detach()  # [E, N]
        self.bias = _stack([q.bias for q in layers])
        self._fp32: torch.Tensor | None = None
        super().__init__(layers)  # the key of the tensors as they now are: views of the stacks

    def __call__(self, x: torch.Tensor, experts: torch.Tensor, offsets: torch.Tensor) -> torch.Tensor:
        if x.device.type == "cuda":
            if x.shape[0] <= FP8_GEMV_MAX_M:  # W8A16, as `FP8Linear` at this many rows
                return grouped_gemm(x, offsets, self.qdata, self.scales, None, self.bias)  # type: ignore[arg-type]
            xq, xs = fp8.quantize(x, "token")  # W8A8: E4M3 values are exact in bf16
            codes = xq.to(x.dtype if x.dtype in (torch.bfloat16, torch.float16) else torch.float32)
            # per expert as `FP8Linear` per call: W8A16 for an expert of few rows, W8A8 above
            return grouped_gemm(codes, offsets, self.qdata, self.scales, None, self.bias, xs,  # type: ignore[arg-type]
                                x_w8a16=x, w8a16_max_rows=FP8_GEMV_MAX_M, out_dtype=x.dtype)
        if self._fp32 is None:
            self._fp32 = fp8.dequantize(self.qdata, self.scales[..., None])  # type: ignore[arg-type]  # [E, N, K]
        xq, xs = fp8.quantize(x, "token")  # W8A8, as `FP8Linear`'s cached path
        return _fp32_grouped(fp8.dequantize(xq, xs), self._fp32, self.bias, experts, offsets).to(x.dtype)


def _fp32_grouped(x: torch.Tensor, w: torch.Tensor, bias: torch.Tensor | None, experts: torch.Tensor,
                  offsets: torch.Tensor) -> torch.Tensor:
    """The quantized layers' reference arithmetic (`qlinear._fp32_linear`) per segment: fp32 in, fp32 out."""
    y = grouped_mm(x, w, experts, offsets)  # [A, N]
    return y if bias is None else y + bias.float()[experts]


# the tensors of each groupable kind whose identity and version say whether a stack is still valid
_SOURCES: dict[type, tuple[tuple[str, ...], tuple[str, ...]]] = {  # kind -> (buffer names, parameter names)
    nn.Linear: ((), ("weight", "bias")),
    NVFP4Linear: (("qdata", "block_scales", "global_scale"), ("bias",)),
    FP8Linear: (("qdata", "scale"), ("bias",)),
}


def _sources(layers: Sequence[nn.Module]) -> tuple[torch.Tensor | None, ...]:
    buffers, params = _SOURCES[type(layers[0])]
    return tuple(t for layer in layers
                 for t in (*(layer._buffers[b] for b in buffers), *(layer._parameters.get(p) for p in params)))  # fmt: skip


def stack_key(layers: Sequence[nn.Module]) -> tuple | None:
    """What a valid stack of ``layers`` was built from (`version_key` of their tensors), or None while
    they cannot be grouped: kinds mixed or not groupable, a forward hook, a backend pinned on a quantized
    layer, FP8 granularities mixed, inference tensors. Cheap: a decode step calls it for every MoE layer,
    so it reads the module dicts directly (no `nn.Module.__getattr__`)."""
    first = layers[0]
    kind = type(first)
    if kind not in _SOURCES:
        return None
    for layer in layers:
        if type(layer) is not kind or layer._forward_hooks or layer._forward_pre_hooks:
            return None
        if kind is not nn.Linear and layer.backend != "auto":  # type: ignore[attr-defined]
            return None
        if kind is FP8Linear and layer.granularity != first.granularity:  # type: ignore[attr-defined]
            return None
    return version_key(_sources(layers))


def stack_linears(layers: Sequence[nn.Module]) -> GroupedLinear | None:
    """The layers stacked for one grouped call, or None where they cannot be (see `stack_key`; also
    mixed shapes, dtypes, devices or bias presence, and NVFP4/FP8 on CUDA without Triton)."""
    if stack_key(layers) is None:
        return None
    sources = _sources(layers)
    present = [t for t in sources if t is not None]
    biases = {layer._parameters.get("bias") is None for layer in layers}
    if len({t.device for t in present}) != 1 or len(biases) != 1:
        return None
    kind = type(layers[0])
    if kind is nn.Linear:
        if len({(lin.weight.dtype, lin.weight.shape) for lin in layers}) != 1:  # type: ignore[union-attr]
            return None
        with torch.inference_mode(False):
            return _PlainStack(layers)  # type: ignore[arg-type]
    if present[0].device.type == "cuda" and not HAS_TRITON:  # the layers' own path there is the reference
        return None
    if len({(q.in_features, q.out_features) for q in layers}) != 1:  # type: ignore[union-attr]
        return None
    with torch.inference_mode(False):  # the layers' tensors will be views of the stacks: normal tensors
        return _NVFP4Stack(layers) if kind is NVFP4Linear else _FP8Stack(layers)  # type: ignore[arg-type]
