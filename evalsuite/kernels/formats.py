"""The format table: every weight format the suite knows, registered once.

A format is a name plus what the rest of the suite needs to know about it:

- ``quantize`` / ``dequantize`` — the pure reference codec (`kernels.fp8`, `kernels.nvfp4`);
- ``linear`` — the module that holds a layer stored in the format (built empty, for loading), and
  ``from_linear`` — the same built from an ``nn.Linear``'s weight (the module swap);
- ``weight_bytes(rows, cols)`` — bytes of a ``[rows, cols]`` weight as a checkpoint stores it, which
  the model card, the swap's size report and the sensitivity study count;
- ``block`` — ``in_features`` must be a multiple of it; ``values_per_element`` — values per stored
  ``qdata`` element (two E2M1 nibbles per byte for NVFP4).

Precision recipes (`kernels.recipes`) name formats from this table, the swap (`kernels.swap`) and
packed checkpoints (`kernels.checkpoint`) build their modules from it, and the model card
(`model.card`) charges their bytes. Adding a format means a codec, a module, and one entry here.

Bytes per ``[rows, cols]`` weight of ``n`` values:

    bf16         2 n
    fp8          n + 4                 (E4M3 values, one fp32 per-tensor scale)
    fp8-channel  n + 4 rows            (one fp32 scale per output channel)
    nvfp4        n / 2 + n / 16 + 4    (E2M1 values, one E4M3 scale per 16 values, fp32 tensor scale)
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import partial
from typing import Any, Callable

import torch
from torch import nn

from evalsuite.kernels import fp8, nvfp4
from evalsuite.kernels.constants import NVFP4_BLOCK_SIZE
from evalsuite.kernels.qlinear import FP8Linear, NVFP4Linear
from evalsuite.registry import Registry


@dataclass(frozen=True)
class WeightFormat:
    """One row of the format table (see the module docstring)."""

    name: str
    description: str
    quantize: Callable[[torch.Tensor], Any]
    dequantize: Callable[..., torch.Tensor]
    weight_bytes: Callable[[int, int], float]
    linear: Callable[..., nn.Module] | None = None
    from_linear: Callable[[nn.Linear], nn.Module] | None = None
    block: int = 1
    values_per_element: int = 1

    @property
    def quantized(self) -> bool:
        """Whether a layer in this format is swapped for a quantized module (bf16 is not)."""
        return self.linear is not None

    def bits_per_weight(self, rows: int, cols: int) -> float:
        return 8 * self.weight_bytes(rows, cols) / (rows * cols)

    def cannot_hold(self, in_features: int) -> str:
        """Why a layer with ``in_features`` inputs cannot be stored in this format ('' when it can)."""
        if in_features % self.block:
            return f"in_features {in_features} is not a multiple of {self.block}"
        return ""


FORMATS: Registry[WeightFormat] = Registry("weight format")


def register(fmt: WeightFormat) -> WeightFormat:
    return FORMATS.register(fmt.name, help=fmt.description)(fmt)


def _bf16_quantize(w: torch.Tensor) -> torch.Tensor:
    return w.to(torch.bfloat16)


def _bf16_dequantize(w: torch.Tensor, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    return w.to(dtype)


register(WeightFormat(
    "bf16", "BF16, as trained: the layer is left as it is",
    quantize=_bf16_quantize, dequantize=_bf16_dequantize,
    weight_bytes=lambda rows, cols: 2 * rows * cols,
))
for _granularity, _name, _extra in (("tensor", "fp8", lambda rows: 4), ("channel", "fp8-channel", lambda rows: 4 * rows)):
    register(WeightFormat(
        _name, f"W8A8 FP8 E4M3, one fp32 scale per {_granularity}",
        quantize=partial(fp8.quantize, granularity=_granularity), dequantize=fp8.dequantize,
        weight_bytes=lambda rows, cols, _extra=_extra: rows * cols + _extra(rows),
        linear=partial(FP8Linear, granularity=_granularity),
        from_linear=partial(FP8Linear.from_linear, granularity=_granularity),
    ))
register(WeightFormat(
    "nvfp4", "W4A16 NVFP4: E2M1 values, one E4M3 scale per 16 values, one fp32 tensor scale",
    quantize=nvfp4.quantize, dequantize=nvfp4.dequantize,
    weight_bytes=lambda rows, cols: rows * cols / 2 + math.ceil(rows * cols / NVFP4_BLOCK_SIZE) + 4,
    linear=NVFP4Linear, from_linear=NVFP4Linear.from_linear,
    block=NVFP4_BLOCK_SIZE, values_per_element=2,
))


def get(name: str) -> WeightFormat:
    """The format called ``name``; an unknown name raises one ``ValueError`` line listing the known ones."""
    if name not in FORMATS:
        raise ValueError(f"unknown weight format {name!r}; expected one of {', '.join(names())}")
    return FORMATS.get(name)


def names() -> tuple[str, ...]:
    return tuple(FORMATS.names())


def quantized_names() -> tuple[str, ...]:
    return tuple(n for n in FORMATS.names() if FORMATS.get(n).quantized)


def quantized_modules() -> tuple[type[nn.Module], ...]:
    """The module classes that hold quantized layers (every ``fmt`` attribute names a format)."""
    out: list[type[nn.Module]] = []
    for n in quantized_names():
        ctor = FORMATS.get(n).linear
        cls = ctor.func if isinstance(ctor, partial) else ctor
        if isinstance(cls, type) and cls not in out:
            out.append(cls)
    return tuple(out)
