"""Throughput of the reference codecs: quantize / dequantize GB/s for FP8 and NVFP4.

    python bench/bench_kernels.py [--sizes 1024x1024,4096x4096] [--repeats 5] [--device cpu]

GB/s counts bytes moved once: for quantize, the bf16 input read plus the packed data and scales
written; for dequantize, the packed data and scales read plus the bf16 output written. Each cell
is the best of ``--repeats`` timed runs after one warm-up. Prints a Markdown table with the device,
thread count, torch version and date, ready to paste into BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import datetime
import platform
import sys
import time
from pathlib import Path
from typing import Callable

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_gpu import _Parser, parse_device  # noqa: E402  (one option parser for the bench scripts)
from evalsuite.kernels import fp8, nvfp4  # noqa: E402


def _nbytes(*ts: torch.Tensor) -> int:
    return sum(t.numel() * t.element_size() for t in ts)


def _best_seconds(fn: Callable[[], object], repeats: int, device: torch.device) -> float:
    if repeats < 1:  # no timed run: no time to report (inf ms would read as a measurement)
        raise ValueError(f"repeats: expected an integer >= 1, got {repeats}")
    fn()  # warm-up
    best = float("inf")
    for _ in range(repeats):
        if device.type == "cuda":
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        fn()
        if device.type == "cuda":
            torch.cuda.synchronize()
        best = min(best, time.perf_counter() - t0)
    return best


def bench(sizes: list[tuple[int, int]], repeats: int, device: torch.device) -> list[dict[str, object]]:
    rows: list[dict[str, object]] = []
    for n, k in sizes:
        x = torch.randn(n, k, device=device).to(torch.bfloat16)
        cases: list[tuple[str, Callable[[], object], int, Callable[[], object], int]] = []

        q8 = fp8.quantize(x, "tensor")
        cases.append(("fp8 per-tensor", lambda: fp8.quantize(x, "tensor"), _nbytes(x, *q8),
                      lambda: fp8.dequantize(q8.qdata, q8.scales, torch.bfloat16), _nbytes(*q8, x)))  # fmt: skip
        q8t = fp8.quantize(x, "token")
        cases.append(("fp8 per-token", lambda: fp8.quantize(x, "token"), _nbytes(x, *q8t),
                      lambda: fp8.dequantize(q8t.qdata, q8t.scales, torch.bfloat16), _nbytes(*q8t, x)))  # fmt: skip
        q4 = nvfp4.quantize(x)
        cases.append(("nvfp4", lambda: nvfp4.quantize(x), _nbytes(x, *q4),
                      lambda: nvfp4.dequantize(*q4, dtype=torch.bfloat16), _nbytes(*q4, x)))  # fmt: skip

        for name, qfn, qbytes, dfn, dbytes in cases:
            tq = _best_seconds(qfn, repeats, device)
            td = _best_seconds(dfn, repeats, device)
            rows.append({"format": name, "shape": f"{n}x{k}", "quant_ms": tq * 1e3, "quant_gbs": qbytes / tq / 1e9,
                         "deq_ms": td * 1e3, "deq_gbs": dbytes / td / 1e9})  # fmt: skip
    return rows


def table(rows: list[dict[str, object]], device: torch.device) -> str:
    dev = torch.cuda.get_device_name(device) if device.type == "cuda" else (platform.processor() or platform.machine())
    head = (
        f"Reference codecs (plain PyTorch), {dev}, {torch.get_num_threads()} threads, torch {torch.__version__}, "
        f"{datetime.date.today().isoformat()}\n\n"
        "| format | shape (bf16 in) | quantize ms | quantize GB/s | dequantize ms | dequantize GB/s |\n"
        "|---|---|---:|---:|---:|---:|"
    )
    body = [
        f"| {r['format']} | {r['shape']} | {r['quant_ms']:.2f} | {r['quant_gbs']:.2f} | {r['deq_ms']:.2f} | {r['deq_gbs']:.2f} |"
        for r in rows
    ]
    return "\n".join([head, *body])


def _sizes(text: str) -> list[tuple[int, int]]:
    """``NxK[,NxK...]`` with N >= 1 and K a multiple of 16 (the NVFP4 block), at least 16."""
    out = []
    for item in text.split(","):
        try:
            n, k = (int(v) for v in item.strip().lower().split("x"))
        except ValueError:
            n = k = -1
        if n < 1 or k < 16 or k % 16:
            raise argparse.ArgumentTypeError(
                f"expected NxK pairs with N >= 1 and K a multiple of 16 (at least 16), got {item!r}")
        out.append((n, k))
    return out


def _repeats(text: str) -> int:
    try:
        v = int(text)
    except ValueError:
        v = 0
    if v < 1:
        raise argparse.ArgumentTypeError(f"expected an integer >= 1 (timed runs per cell), got {text!r}")
    return v


def check_device(text: str) -> torch.device:
    """``cpu``, ``cuda`` or ``cuda:N`` that exists here; else `ValueError` saying what was expected."""
    device = parse_device(text, expected="cpu, cuda or cuda:N")
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(f"--device {text}: no CUDA device is available here (torch.cuda.is_available() is False)")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise ValueError(f"--device {text}: expected a CUDA device index below {torch.cuda.device_count()}")
    return device


def main(argv: list[str] | None = None) -> int:
    p = _Parser(prog="python bench/bench_kernels.py", description=__doc__.splitlines()[0])
    p.add_argument("--sizes", type=_sizes, default="256x1024,1024x1024,2048x2048",
                   help="comma-separated NxK (K a multiple of 16)")
    p.add_argument("--repeats", type=_repeats, default=5, help="timed runs per cell, the best kept (>= 1)")
    p.add_argument("--device", default="cpu", help="cpu (default), cuda or cuda:N")
    args = p.parse_args(argv)
    try:
        device = check_device(args.device)
    except ValueError as exc:
        p.error(str(exc))
    print(table(bench(args.sizes, args.repeats, device), device))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
