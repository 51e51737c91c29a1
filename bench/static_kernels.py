"""What ptxas makes of the decode kernels for a GPU, on a machine without one (no timing).

    make bench-static                       # sm_90, the full-size config's linear shapes
    python bench/static_kernels.py --arch 90 --shapes 2688x1856,4096x4096 --rows 1,16

Each decode kernel is compiled through its real wrapper on ``device="meta"`` tensors inside
`evalsuite.kernels.triton.static.compile_for`, once per autotune config the launch would time, for
every (N, K) of the preset's linear layers (the grouped kernel: its expert shapes and expert count,
at a decode's 6 rows (one-row tiles), 3 rows an expert (16-row tiles) and a prefill's 32 an expert
(64-row tiles): `grouped_rows`). One Markdown row per kernel and row count: how many variants
compiled, their register range, how many spill (and the most bytes), how many read with 128-bit
global loads at all, and the K loop's SASS instructions per weight value a thread handles in one
step (an H200 issues ~33.5e12 thread-instructions/s: that over this bounds the values/s).
``--json`` writes every variant's report. Speed is not measured here: that is ``make bench-gpu``'s,
on a GPU.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import json
import os
import sys
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from evalsuite.env import folder_problem  # noqa: E402
from bench_gpu import _Parser, linear_shapes, precompile_shapes  # noqa: E402  (shared with make bench-gpu)

KERNELS = ("nvfp4_gemv", "fp8_gemv", "grouped_nvfp4", "grouped_fp8", "nvfp4_dequant")
# --arch values this toolchain compiles and reads back (Triton 3.9's LLVM, ptxas and cuobjdump): sm_70/72
# compile but cuobjdump cannot read their cubins; a number LLVM does not know (0, 85, 91…) aborts the process
ARCHS = (75, 80, 86, 87, 89, 90, 100, 103, 110, 120, 121)


def grouped_rows(experts: int) -> tuple[int, int, int]:
    """Row counts of the grouped calls compiled for ``experts`` experts, one per tile kind the wrapper
    picks: a decode's 6 rows (no more than the experts: one-row tiles), 3 rows an expert (16-row
    tiles), a prefill's 32 an expert (64-row tiles)."""
    return min(6, experts), 3 * experts, 32 * experts


def preset_experts(preset: str) -> int:
    from evalsuite.model.config import BackboneConfig

    return BackboneConfig.preset(preset).n_routed_experts


def _meta(*shape: int, dtype: torch.dtype = torch.bfloat16) -> torch.Tensor:
    return torch.empty(shape, dtype=dtype, device="meta")


def compile_all(shapes: list[tuple[int, int, str]], rows: list[int], kernels: tuple[str, ...], arch: int,
                read: bool = True, experts: int = 128) -> list[dict[str, Any]]:  # fmt: skip
    """Every variant's report as a dict, with the kernel family, shape and row count it was compiled for
    (``read=False``: compile only, one bare dict per variant; the compiles land in Triton's cache). The
    grouped kernel is compiled for ``experts`` experts (the count is part of its specialization: a
    model's own count, for a cache its launches find) at `grouped_rows`."""
    from evalsuite.kernels.triton.fp8_gemv import fp8_gemv
    from evalsuite.kernels.triton.grouped_gemm import grouped_gemm
    from evalsuite.kernels.triton.nvfp4_gemv import nvfp4_dequantize_triton, nvfp4_gemv
    from evalsuite.kernels.triton.static import compile_for

    out: list[dict[str, Any]] = []
    for n, k, label in shapes:
        fp4 = (_meta(n, k // 2, dtype=torch.uint8), _meta(n, k // 16, dtype=torch.float8_e4m3fn),
               _meta(dtype=torch.float32))  # fmt: skip
        w8 = (_meta(n, k, dtype=torch.float8_e4m3fn), _meta(n, 1, dtype=torch.float32))
        e = experts
        g4 = (_meta(e, n, k // 2, dtype=torch.uint8), _meta(e, n, k // 16, dtype=torch.float8_e4m3fn),
              _meta(e, dtype=torch.float32))  # fmt: skip
        g8 = (_meta(e, n, k, dtype=torch.float8_e4m3fn), _meta(e, n, dtype=torch.float32))
        expert = ".experts." in f".{label}."
        jobs: list[tuple[str, int, Any]] = []
        for m in rows:
            jobs.append(("nvfp4_gemv", m, lambda m=m: nvfp4_gemv(_meta(m, k), *fp4)))
            jobs.append(("fp8_gemv", m, lambda m=m: fp8_gemv(_meta(m, k), *w8)))
        if expert:
            for a in grouped_rows(e):
                off = _meta(e + 1, dtype=torch.int64)
                jobs.append(("grouped_nvfp4", a, lambda a=a, off=off: grouped_gemm(_meta(a, k), off, *g4)))
                jobs.append(("grouped_fp8", a, lambda a=a, off=off: grouped_gemm(_meta(a, k), off, *g8)))
        jobs.append(("nvfp4_dequant", 0, lambda: nvfp4_dequantize_triton(*fp4)))
        for family, m, call in jobs:
            if family not in kernels:
                continue
            with compile_for(arch) as rec:
                call()
            if not read:
                out.extend({"family": family, "rows": m, "shape": f"{n}x{k}"} for _ in rec.compiled)
                continue
            for r in rec.reports():
                out.append({"family": family, "rows": m, "shape": f"{n}x{k}", "layer": label,
                            **dataclasses.asdict(r), "loop_per_value": r.loop_per_value})  # fmt: skip
    return out


def _compile_share(shape: tuple[int, int, str], family: str, rows: list[int], arch: int, experts: int) -> int:
    return len(compile_all([shape], rows, (family,), arch, read=False, experts=experts))


def precompile(shapes: list[tuple[int, int, str]], rows: list[int], kernels: tuple[str, ...], arch: int,
               workers: int, experts: tuple[int, ...] = (128,)) -> int:  # fmt: skip
    """Compile every variant of `compile_all` in ``workers`` processes, one (shape, kernel) each, into
    Triton's on-disk cache; returns how many. A later launch on a GPU of that architecture finds them
    there: the cache key is the source, the specialization, the options and the target
    (``GPUTarget("cuda", arch, 32)`` for the stand-in driver and the real one alike), so the
    autotuner's first call of a shape loads cubins instead of compiling ~24 variants one by one. The
    grouped kernel is compiled once per count in ``experts`` (the models' counts: part of its key).
    Spawned processes: safe after CUDA is initialized in the caller."""
    import multiprocessing

    jobs = [(shape, family, rows, arch, e) for shape in shapes for family in kernels
            for e in (experts if family.startswith("grouped") else experts[:1])]  # fmt: skip
    # A caller's time cap (SIGALRM) waits while the workers start: raised between spawning a worker
    # and sending it its start-up data, it left that worker to die on an EOFError traceback. Inside
    # the pool it interrupts the map, and the pool's exit terminates its workers.
    import signal

    old = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGALRM})
    try:
        pool = multiprocessing.get_context("spawn").Pool(max(1, workers))
    except BaseException:
        signal.pthread_sigmask(signal.SIG_SETMASK, old)
        raise
    with pool:
        signal.pthread_sigmask(signal.SIG_SETMASK, old)
        return sum(pool.starmap(_compile_share, jobs, chunksize=1))


def summarize(reports: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per (kernel family, rows): variants, register range, spills, 128-bit readers."""
    groups: dict[tuple[str, int], list[dict[str, Any]]] = {}
    for r in reports:
        groups.setdefault((r["family"], r["rows"]), []).append(r)
    rows = []
    for (family, m), rs in groups.items():
        spilled = [r for r in rs if r["stack_bytes"] or r["local_bytes"]]
        rows.append({
            "kernel": family, "rows": m, "variants": len(rs), "shapes": len({r["shape"] for r in rs}),
            "regs_min": min(r["registers"] for r in rs), "regs_max": max(r["registers"] for r in rs),
            "spilled": len(spilled), "max_spill_bytes": max((r["stack_bytes"] + r["local_bytes"] for r in spilled), default=0),
            "spilled_in_loop": sum(bool(r.get("loop_local_accesses")) for r in rs),
            "load128": sum(128 in r["global_loads"] for r in rs),
            "max_32bit_loads": max(r["global_loads"].get(32, 0) for r in rs),
            "async_copy_variants": sum(bool(r["async_copies"]) for r in rs),
            "loop_per_value": [min(per), max(per)] if (per := [r["loop_per_value"] for r in rs if r["loop_per_value"]]) else None,
        })  # fmt: skip
    return rows


def markdown(summary: list[dict[str, Any]], arch: int, command: str) -> str:
    import triton

    lines = [
        f"Compiled for sm_{arch} on CPU (no GPU), {datetime.date.today()}, torch {torch.__version__}, "
        f"Triton {triton.__version__}; `{command}`. Rows: the activation rows of the call (grouped: all "
        f"experts' rows; dequantize: none). Every autotune config the launch would time, every shape.",
        "",
        "| kernel | rows | variants (shapes) | registers | spilled | 128-bit loads | max 32-bit loads | cp.async "
        "| loop SASS / value |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for s in summary:
        spill = (f"{s['spilled']} (≤{s['max_spill_bytes']} B, {s.get('spilled_in_loop', 0)} in the loop)"
                 if s["spilled"] else "0")  # fmt: skip
        lo_hi = s["loop_per_value"]
        per_value = f"{lo_hi[0]:.1f}–{lo_hi[1]:.1f}" if lo_hi else "-"
        lines.append(f"| {s['kernel']} | {s['rows'] or '-'} | {s['variants']} ({s['shapes']}) | "
                     f"{s['regs_min']}–{s['regs_max']} | {spill} | {s['load128']}/{s['variants']} | "
                     f"{s['max_32bit_loads']} | {s['async_copy_variants']}/{s['variants']} | {per_value} |")  # fmt: skip
    return "\n".join(lines) + "\n"


def _shapes(text: str) -> list[tuple[int, int, str]]:
    out = []
    for item in text.split(","):
        try:
            n, k = (int(v) for v in item.lower().split("x"))
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected NxK[,NxK...] like 2688x1856, got {item!r}") from None
        if n < 1 or k < 16 or k % 16:
            raise argparse.ArgumentTypeError(f"expected N >= 1 and K a multiple of 16, got {item!r}")
        out.append((n, k, "experts.custom"))
    return out


def _arch(text: str) -> int:
    try:
        arch = int(text)
    except ValueError:
        arch = -1
    if arch not in ARCHS:
        raise argparse.ArgumentTypeError(f"expected a compute capability as one number, one of "
                                         f"{', '.join(map(str, ARCHS))} (90: H100/H200), got {text!r}")
    return arch


def gemv_max_rows() -> int:
    """The most activation rows both GEMV wrappers take (each raises past its ``GEMV_MAX_M``)."""
    from evalsuite.kernels.triton.fp8_gemv import GEMV_MAX_M as FP8_MAX
    from evalsuite.kernels.triton.nvfp4_gemv import GEMV_MAX_M as NVFP4_MAX

    return min(FP8_MAX, NVFP4_MAX)


def _rows(text: str) -> list[int]:
    top = gemv_max_rows()
    try:
        rows = [int(r) for r in text.split(",")]
    except ValueError:
        rows = []
    if not rows or any(not 1 <= r <= top for r in rows):
        raise argparse.ArgumentTypeError(f"expected comma-separated row counts from 1 to {top} (the GEMV kernels "
                                         f"nvfp4_gemv and fp8_gemv take at most {top} rows), got {text!r}")
    return list(dict.fromkeys(rows))


def main(argv: list[str] | None = None) -> int:
    p = _Parser(prog="python bench/static_kernels.py", description=__doc__.split("\n\n")[0])
    p.add_argument("--arch", type=_arch, default=90,
                   help=f"CUDA compute capability as one number, one of {', '.join(map(str, ARCHS))} (90: H100/H200)")
    p.add_argument("--preset", default="nano-omni-30b-a3b", help="config whose linear shapes are compiled")
    p.add_argument("--shapes", type=_shapes, default=None, help="NxK list instead of the preset's (grouped: as experts)")
    p.add_argument("--rows", type=_rows, default="1,16", help="activation rows of the GEMV calls (1 to 16)")
    p.add_argument("--kernels", default=",".join(KERNELS), help=f"subset of {','.join(KERNELS)}")
    p.add_argument("--json", type=Path, default=None, help="write every variant's report here")
    p.add_argument("--precompile-workers", type=int, default=0,
                   help="N > 0: only compile, in N processes, what make bench-gpu runs (its shapes, rows 1 "
                        "and 16) into Triton's cache, and say how many; for a GPU session, beside its tests")
    args = p.parse_args(argv)
    kernels = tuple(x for x in args.kernels.split(",") if x)
    if unknown := [x for x in kernels if x not in KERNELS]:
        p.error(f"--kernels: expected some of {','.join(KERNELS)}, got {','.join(unknown)}")
    if not kernels:
        p.error(f"--kernels: expected some of {','.join(KERNELS)}, got none")
    from evalsuite.model.config import BackboneConfig

    if args.preset not in BackboneConfig.PRESETS:
        p.error(f"--preset: expected one of {', '.join(sorted(BackboneConfig.PRESETS))}, got {args.preset!r}")
    if args.precompile_workers < 0:
        p.error(f"--precompile-workers: expected an integer >= 0, got {args.precompile_workers}")
    if args.json is not None:
        if args.json.is_dir():
            p.error(f"--json {args.json} is a directory; expected a file name for the reports")
        if problem := folder_problem("--json", args.json, "a file in a folder that exists or can be made",
                                     folder=args.json.parent):
            p.error(problem)
    from evalsuite.kernels.triton.static import toolchain_missing

    if missing := toolchain_missing():
        print(f"static_kernels: cannot compile for CUDA here ({missing})")
        return 0
    if args.precompile_workers > 0:  # the caller's environment as it is: Triton's cache key includes it
        shapes = args.shapes or precompile_shapes(args.preset)
        experts = tuple(sorted({preset_experts(args.preset), preset_experts("tiny")}))  # bench-gpu's models
        n = precompile(shapes, [1, 16], kernels, args.arch, args.precompile_workers, experts)
        print(f"static_kernels: {n} variants for sm_{args.arch} in Triton's cache")
        return 0
    os.environ.setdefault("TRITON_DEFAULT_FP_FUSION", "1")  # the current default, stated
    shapes = args.shapes or linear_shapes(args.preset)
    reports = compile_all(shapes, args.rows, kernels, args.arch, experts=preset_experts(args.preset))
    if args.json:
        from evalsuite.results import atomic_write_text

        try:
            atomic_write_text(args.json, json.dumps(reports, indent=1))
        except OSError as exc:
            p.error(f"--json {args.json}: cannot write the reports: {exc}")
    command = "python bench/static_kernels.py " + " ".join(argv if argv is not None else sys.argv[1:])
    print(markdown(summarize(reports), args.arch, command.strip()))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
