"""Can a step be captured as a CUDA graph? A check that runs on the CPU.

A CUDA graph records the kernels one call launches and replays them with the same pointers and the
same shapes. Capture is invalidated (``cudaErrorStreamCaptureInvalidated``) by anything in the call
that makes the host wait for the device, and a replay is wrong if the call would have launched other
kernels or other shapes for other inputs. Both show up without a GPU:

1. host syncs: an op that reads a device value on the host (``.item()``, ``int(t)``, ``if t``,
   ``.tolist()``, ``.numpy()``, ``.cpu()``), one whose output shape depends on the data (``nonzero``,
   ``unique``, boolean-mask indexing, one-argument ``torch.where``, ``masked_select``), a comparison
   answered on the host (``torch.equal``), or host data copied in (``torch.tensor(list)``);
2. static shapes: two calls with different inputs (other tokens, other lengths) must run the same
   ops with the same output shapes and dtypes.

`trace` runs a function under a `TorchFunctionMode` (Python-level reads such as ``.tolist()``, which
on a CPU tensor never reach the dispatcher) and a `TorchDispatchMode` (every aten op, with its output
shapes); `check_capturable` runs it several times and raises `NotCapturable` naming the first
offending op and the model line that called it. On a CPU this is the proof that capture will not be
invalidated up to what only CUDA can show (a kernel library that syncs internally, a host-pageable
copy): the CUDA capture test covers that where a GPU exists.
"""

from __future__ import annotations

import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch.overrides import TorchFunctionMode
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten

# aten ops (overload packet names) that sync with the host or have data-dependent output shapes
SYNC_OPS = frozenset({
    "_local_scalar_dense", "item", "nonzero", "_unique", "_unique2", "unique_dim", "unique_consecutive",
    "unique_dim_consecutive", "equal", "is_nonzero", "masked_select", "lift_fresh", "lift_fresh_copy",
})
# ops that sync only with a boolean index (it is resolved through nonzero)
_INDEXING = frozenset({"index", "index_put", "index_put_", "_index_put_impl_"})
# Tensor methods that read device data on the host (on a CPU tensor some never reach the dispatcher)
_HOST_READS = {getattr(torch.Tensor, n): n for n in (
    "tolist", "item", "numpy", "cpu", "__bool__", "__int__", "__float__", "__index__", "__complex__")}
_HERE = str(Path(__file__).resolve())


@dataclass
class StepTrace:
    """What one call ran: every aten op with its tensor outputs' (shape, dtype), and the host syncs
    (each as ``op @ file:line`` of the innermost evalsuite frame that caused it)."""

    ops: list[tuple[str, tuple[tuple[tuple[int, ...], torch.dtype], ...]]] = field(default_factory=list)
    syncs: list[str] = field(default_factory=list)


class NotCapturable(AssertionError):
    """The traced step syncs with the host or changes its ops or shapes between calls."""


def _caller() -> str:
    """file:line of the innermost evalsuite frame below the tracer (where the sync comes from)."""
    for frame in reversed(traceback.extract_stack()):
        if "evalsuite" in frame.filename and frame.filename != _HERE:
            return f"{Path(frame.filename).name}:{frame.lineno}"
    return "?"


class _HostReads(TorchFunctionMode):
    def __init__(self, out: StepTrace) -> None:
        super().__init__()
        self.out = out

    def __torch_function__(self, func: Any, types: Any, args: tuple = (), kwargs: dict | None = None) -> Any:
        name = _HOST_READS.get(func)
        if name is not None:
            self.out.syncs.append(f"Tensor.{name} @ {_caller()}")
        return func(*args, **(kwargs or {}))


class _AtenOps(TorchDispatchMode):
    def __init__(self, out: StepTrace) -> None:
        super().__init__()
        self.out = out

    def __torch_dispatch__(self, func: Any, types: Any, args: tuple = (), kwargs: dict | None = None) -> Any:
        kwargs = kwargs or {}
        name = func.overloadpacket.__name__
        inputs = [a for a in tree_flatten((args, kwargs))[0] if isinstance(a, torch.Tensor)]
        if name in SYNC_OPS:
            self.out.syncs.append(f"aten.{name} @ {_caller()}")
        elif name in _INDEXING and any(t.dtype in (torch.bool, torch.uint8) for t in _index_tensors(args)):
            self.out.syncs.append(f"aten.{name} with a boolean index @ {_caller()}")
        elif name in ("_to_copy", "copy_") and len({t.device for t in inputs} | _target_device(kwargs)) > 1:
            self.out.syncs.append(f"aten.{name} across devices @ {_caller()}")
        result = func(*args, **kwargs)
        outs = tuple((tuple(t.shape), t.dtype) for t in tree_flatten(result)[0] if isinstance(t, torch.Tensor))
        self.out.ops.append((name, outs))
        return result


def _index_tensors(args: tuple) -> list[torch.Tensor]:
    """The index tensors of an aten index / index_put call (its second argument, a list)."""
    if len(args) < 2 or not isinstance(args[1], (list, tuple)):
        return []
    return [t for t in args[1] if isinstance(t, torch.Tensor)]


def _target_device(kwargs: dict) -> set[torch.device]:
    device = kwargs.get("device")
    return set() if device is None else {torch.device(device)}


def trace(fn: Callable[[], object]) -> StepTrace:
    """Run ``fn()`` once and record its aten ops (with output shapes) and host syncs."""
    out = StepTrace()
    with _HostReads(out), _AtenOps(out):
        fn()
    return out


def check_capturable(fn: Callable[[], object], calls: int = 2, before_call: Callable[[int], None] | None = None,
                     warmup: int = 1) -> list[StepTrace]:
    """Trace ``fn`` ``calls`` times (``before_call(i)`` first, e.g. to change tokens and lengths) and
    raise `NotCapturable` if any call syncs with the host or if two calls differ in their ops or
    output shapes; the traces otherwise. ``warmup`` untraced calls come first, as before a capture:
    lazily built caches (stacked or dequantized weights) and kernel autotuning belong to them."""
    for _ in range(warmup):
        fn()
    traces = []
    for i in range(calls):
        if before_call is not None:
            before_call(i)
        traces.append(trace(fn))
        if traces[-1].syncs:
            first = traces[-1].syncs[0]
            raise NotCapturable(f"not capturable: {len(traces[-1].syncs)} host sync(s) in call {i}, first {first}")
    for i, t in enumerate(traces[1:], 1):
        if t.ops != traces[0].ops:
            base = traces[0].ops
            j = next((k for k, (a, b) in enumerate(zip(t.ops, base)) if a != b), min(len(t.ops), len(base)))
            a = base[j] if j < len(base) else "(end)"
            b = t.ops[j] if j < len(t.ops) else "(end)"
            raise NotCapturable(f"not capturable: call {i} differs from call 0 at op {j}: {b} vs {a} "
                                f"({len(t.ops)} vs {len(base)} ops)")
    return traces


__all__ = ["SYNC_OPS", "StepTrace", "NotCapturable", "trace", "check_capturable"]
