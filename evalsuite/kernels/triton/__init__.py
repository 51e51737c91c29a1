"""Triton kernels, each beside its plain-PyTorch ``*_ref``. Importable without Triton installed.

``HAS_TRITON`` says whether ``import triton`` works here; ``TRITON_MISSING_REASON`` says why not.
Kernels run compiled on CUDA tensors and under Triton's interpreter on CPU tensors (tests).
"""

from __future__ import annotations

try:
    import triton as _triton  # noqa: F401  (the top-level package, not this one)

    HAS_TRITON = True
    TRITON_MISSING_REASON = ""
except ImportError as exc:  # pragma: no cover - depends on the environment
    HAS_TRITON = False
    TRITON_MISSING_REASON = f"triton is not importable: {exc}"

__all__ = ["HAS_TRITON", "TRITON_MISSING_REASON"]
