"""Number formats, quantized layers and precision recipes.

Layers, one job per file, each fast path beside its reference:

- `evalsuite.kernels.constants` — the numbers of E4M3, E2M1 and NVFP4.
- `kernels.fp8`, `kernels.nvfp4` — pure ``quantize`` / ``dequantize`` reference codecs.
- `kernels.fp8_gemm` — W8A8 matmul (``torch._scaled_mm`` on FP8 GPUs, reference elsewhere).
- `kernels.triton.nvfp4_gemm` — W4A16 Triton kernel beside ``nvfp4_gemm_ref``.
- `evalsuite.kernels.qlinear` — ``FP8Linear`` / ``NVFP4Linear`` modules.
- `evalsuite.kernels.recipes` — named precision recipes (data), ``recipes.get(name)``.
- `evalsuite.kernels.swap` — ``quantize_model(model, recipe)``, ``report(model)``, ``plan(model, recipe)``.
- `evalsuite.kernels.checkpoint` — packed safetensors save / load and on-disk size.
- `evalsuite.kernels.formats` — the format table: every weight format's codec, module and bytes.

The sensitivity study (each layer's output SQNR per format, the cheapest recipe above a floor) is
``bench/sensitivity.py``.
"""

from __future__ import annotations

from evalsuite.kernels.swap import QuantReport, plan, quantize_model, report

__all__ = ["QuantReport", "plan", "quantize_model", "report"]
