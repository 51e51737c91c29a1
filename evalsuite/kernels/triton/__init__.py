"""Triton kernels, each beside its plain-PyTorch ``*_ref``. Importable without Triton installed.

``HAS_TRITON`` says whether ``import triton`` works here; ``TRITON_MISSING_REASON`` says why not.
Kernels run compiled on CUDA tensors and under Triton's interpreter on CPU tensors (tests).
"""

from __future__ import annotations

from typing import Any, Callable

try:
    import triton as _triton  # noqa: F401  (the top-level package, not this one)

    HAS_TRITON = True
    TRITON_MISSING_REASON = ""
except ImportError as exc:  # pragma: no cover - depends on the environment
    HAS_TRITON = False
    TRITON_MISSING_REASON = f"triton is not importable: {exc}"

# Compile options every kernel launch here passes: fused multiply-adds on, as the kernels' instruction
# counts (BENCHMARKS.md) and their GPU tests assume. Stated, not left to Triton's default, which Triton
# 3.9 warns will turn off in 3.10 (``TRITON_DEFAULT_FP_FUSION``); ``TRITON_FORCE_DISABLE_FP_FUSION``
# still wins. The interpreter drops them.
COMPILE_OPTIONS: dict[str, Any] = {"enable_fp_fusion": True}

_BUILT: dict[tuple[Any, str], Any] = {}
# set by `kernels.triton.static.compile_for`: while it holds a recorder, compiled modes get its
# ``launch(fn, mode, autotune)``, which compiles for the recorder's ``arch`` and launches nothing (the
# interpreter is never intercepted)
_static_hook: list[Any] = []


def e4m3_convert(device: Any) -> bool:
    """Whether kernels for ``device`` decode E4M3 with the GPU's conversion (`kernels.triton.decode`):
    CUDA devices of compute capability 8.9 and up, meta tensors under `compile_for` by its
    architecture, and the interpreter (CPU), which emulates it; else bit arithmetic."""
    if device.type == "cuda":
        return _cuda_converts_e4m3(device.index)
    if device.type == "meta" and _static_hook:  # meta tensors carry no architecture: compile_for's
        return _static_hook[-1].arch >= 89
    return True


def _assume_constant(fn: Callable[..., Any]) -> Callable[..., Any]:
    """``torch.compiler.assume_constant_result``: dynamo calls ``fn`` while tracing a compiled decode
    step and keeps the answer, rather than tracing into the CUDA device queries."""
    import torch

    return torch.compiler.assume_constant_result(fn)


@_assume_constant  # (not lru_cache'd: dynamo would trace through the cache wrapper)
def _cuda_converts_e4m3(index: int | None) -> bool:
    import torch

    return torch.cuda.get_device_capability(index) >= (8, 9)


def _interpreted(fn: Callable[..., Any]) -> Any:
    """``fn`` under Triton's interpreter, its ``@triton.jit`` helpers (module globals, such as
    `kernels.triton.decode`'s, and theirs in turn) replaced by interpreted twins: the interpreter
    cannot call a JITFunction, and a compiled kernel can call nothing else."""
    from triton.runtime.interpreter import InterpretedFunction

    return InterpretedFunction(_with_interpreted_helpers(fn, {}))


def _with_interpreted_helpers(fn: Callable[..., Any], done: dict[Any, Any]) -> Callable[..., Any]:
    """A clone of ``fn`` whose globals map each JITFunction to an InterpretedFunction of its own such
    clone (``done``: those made so far, so a helper used twice is cloned once)."""
    import types

    from triton.runtime.interpreter import InterpretedFunction
    from triton.runtime.jit import JITFunction

    helpers = {}
    for name in fn.__code__.co_names:  # the globals ``fn`` names (not its module's every helper)
        value = fn.__globals__.get(name)
        if isinstance(value, JITFunction) and value.fn is not fn:
            if value not in done:
                done[value] = InterpretedFunction(_with_interpreted_helpers(value.fn, done))
            helpers[name] = done[value]
    if not helpers:
        return fn
    clone = types.FunctionType(fn.__code__, {**fn.__globals__, **helpers}, fn.__name__, fn.__defaults__,
                               fn.__closure__)  # fmt: skip
    clone.__module__, clone.__qualname__ = fn.__module__, fn.__qualname__
    return clone


def build_kernel(fn: Callable[..., Any], mode: str, autotune: Callable[[Any], Any] | None = None) -> Any:
    """A kernel function built once per ``mode``: ``interpret`` (Triton's interpreter, CPU tensors),
    ``jit`` (compiled, an explicit tile) or ``autotune`` (``autotune(fn)``, compiled with the tile
    chosen on the machine that runs it)."""
    if _static_hook and mode in ("jit", "autotune"):
        return _static_hook[-1].launch(fn, mode, autotune)
    key = (fn, mode)
    if key not in _BUILT:
        if mode == "interpret":
            _BUILT[key] = _interpreted(fn)
        elif mode == "jit":
            import triton

            _BUILT[key] = triton.jit(fn)
        elif mode == "autotune" and autotune is not None:
            _BUILT[key] = autotune(fn)
        else:
            raise ValueError(f"kernel mode must be 'interpret', 'jit' or 'autotune' (with a tuner), got {mode!r}")
    return _BUILT[key]


__all__ = ["COMPILE_OPTIONS", "HAS_TRITON", "TRITON_MISSING_REASON", "build_kernel", "e4m3_convert"]
