"""GPU benchmark: GEMM paths per format, the tiny engine's decode, and the full-size language model.

    make bench-gpu                          # or: PYTHONPATH=$PWD python3 bench/bench_gpu.py
    python bench/bench_gpu.py --sections gemm --budget-s 120

On a machine without CUDA it prints one line and exits 0. With CUDA it writes
``results/bench/gpu.json`` (after every section, atomically, so a run cut short keeps what it
measured) and ``results/bench/gpu.md`` (the same as Markdown tables), and prints the tables.

Before the sections, every autotune variant of the Triton decode kernels for the measured shapes
(the full-size config's, the two squares, the tiny engine's) is compiled by
``--precompile-workers`` processes (default: up to 16) into Triton's on-disk cache
(`precompile_kernels`, at most 75 s or a quarter of the budget, recorded under ``precompile``), so
the sections time kernels rather than compiles. The run's budget includes it.
``--precompile-workers 0`` skips the step (bench/gpu_session.sh, which precompiles beside its tests).

Sections, in the order ``gemm, full, moe, engine, compiled`` (``--sections`` picks and orders them).
Each runs under its own time cap: before each, the budget left is shared among the sections still
to run in proportion to their nominal caps, the full-size model's figures kept at 90 s or more
where the others can spare it (`section_plan`), so a section that finishes early leaves its time to
the later ones. An error or a cap ends that section only and is recorded in its ``error`` field; a
cap that a call inside caught (wrapped in its own exception, or swallowed) still ends the section
at its next row (`time_cap`, `reraise_timeout`, `check_cap`). gpu.json is written after each.

- ``gemm``: ``y = x @ W.T`` for M in 1, 16, 64, 256 rows over every distinct linear shape of the
  full-size config (read from the model built on the meta device; its layers first, then the
  vocabulary projection, `gemm_order`) plus 4096² and 8192² last. Paths:
  bf16 (cuBLAS); fp8 as `FP8Linear` dispatches it and raw (W8A16 GEMV, W8A8 ``_scaled_mm``);
  nvfp4 as `NVFP4Linear` dispatches it and raw (split-K GEMV, tiled kernel, dequantize + cuBLAS); at
  M=1 also the GEMV's variants on one tile (`_SameTile`; the tile in the table): as dispatched, with
  the E2M1 decode in Triton ops instead of inline PTX, and with fp32 instead of fp16 products
  (`GEMV_VARIANTS`). Afterwards, on any machine, ``--sass-from results/bench/gpu.json`` sets each of
  those rows' K-loop SASS instructions per weight value beside its time (compiled for the run's GPU:
  what the instruction counts of `make bench-static` are worth in time).
  Milliseconds from ``triton.testing.do_bench`` (warm-up included, L2 flushed between runs), speedup
  over bf16, and weight GB/s (the bytes of the weight as stored, over the time). Each path's
  relative error against its format's reference is checked once per shape.
- ``engine``: the tiny model (random weights) through the reference `Engine` per recipe (bf16, fp8,
  fp4) at 1, 8 and 64 concurrent sequences, with the decode step eager (``cuda_graphs="off"``) and
  replayed as a CUDA graph (``"on"``): decode tok/s, and kernel launches and host
  synchronizations per decode step counted by ``torch.profiler`` over up to 8 decode steps alone
  (after the engine's first step, which prefills: `decode_step_counts`).
- ``compiled``: the tiny model's decode step through `torch.compile` and then captured (``compile_step``),
  bf16 and fp4 at one sequence, beside the same step captured uncompiled, in one section: tok/s,
  launches per step, and the warm-up's seconds (the compile). 31 new tokens after a 32-token prompt
  keep every step in one KV window, so each recipe compiles once.
- ``full``: the full-size language model with random weights, built on the meta device,
  quantized there, materialized on the GPU and filled cheaply (no checkpoint), per recipe: decode
  tok/s and time per output token at 1 and 64 sequences, prefill tok/s of one 8K prompt (timed
  after an untimed prefill of the same length), peak memory. A recipe that does not fit the memory
  or the time left is recorded as skipped, with why.

``--device cpu --smoke`` tests the script on a CPU: tiny sizes everywhere, the tiny preset's shapes
and model in every section (the Triton kernels under the interpreter).
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import gc
import json
import math
import os
import platform
import signal
import sys
import time
import traceback
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from evalsuite.kernels import fp8, nvfp4  # noqa: E402
from evalsuite.env import folder_problem  # noqa: E402
from evalsuite.kernels.triton import HAS_TRITON  # noqa: E402

M_VALUES = (1, 16, 64, 256)
EXTRA_SHAPES = ((4096, 4096), (8192, 8192))
RECIPES = ("bf16", "fp8", "fp4")
ENGINE_BATCHES = (1, 8, 64)
# nominal seconds per section: the budget left after the precompile step is handed out in proportion
# to these (`section_cap`), recomputed before each section; never more than a section's own
SECTION_CAPS_S = {"gemm": 120.0, "moe": 25.0, "engine": 90.0, "compiled": 75.0, "full": 150.0}  # engine: each row eager and graphed
# the headline figures (the full-size model, three recipes of ~30 s, each started only with 20 s left in
# its section) run right after the GEMM sweep, and get at least this much where the budget allows
DEFAULT_SECTIONS = ("gemm", "full", "moe", "engine", "compiled")
SECTION_MIN_S = {"full": 90.0}
SECTION_MIN_KEEP = 0.5  # a minimum takes from the other sections at most this share of their own


def section_plan(todo: list[str] | tuple[str, ...], left: float, caps: dict[str, float] | None = None,
                 minimum: dict[str, float] | None = None) -> dict[str, float]:  # fmt: skip
    """Seconds for each of the sections still to run (``todo``) out of the ``left`` seconds of the
    run's budget (after the precompile step and the sections already run): shares of ``left`` in
    proportion to their caps (`SECTION_CAPS_S`), those with a minimum (`SECTION_MIN_S`) raised to it
    at the others' expense (each keeping at least `SECTION_MIN_KEEP` of its share), none above its
    own cap. The plan adds up to at most ``left``."""
    caps = SECTION_CAPS_S if caps is None else caps
    minimum = SECTION_MIN_S if minimum is None else minimum
    if not todo or left <= 0:
        return {s: 0.0 for s in todo}
    share = {s: caps[s] * left / sum(caps[t] for t in todo) for s in todo}
    want = {s: min(minimum[s], caps[s]) - share[s] for s in todo if min(minimum.get(s, 0.0), caps[s]) > share[s]}
    others = sum(share[s] for s in todo if s not in want)
    extra = sum(want.values())
    take = min(extra, (1 - SECTION_MIN_KEEP) * others)
    plan = {s: share[s] + want[s] * take / extra if s in want else share[s] * (1 - take / others if others else 1)
            for s in todo}  # fmt: skip
    return {s: max(0.0, min(caps[s], v)) for s, v in plan.items()}


def section_cap(todo: list[str] | tuple[str, ...], left: float) -> float:
    """The next section's (``todo[0]``) seconds by `section_plan`: main asks before each section, so one
    that finishes early leaves its time to the later ones."""
    return section_plan(todo, left)[todo[0]] if todo else 0.0


# ---- plumbing -----------------------------------------------------------------------------------
class SectionTimeout(Exception):
    pass


class _CapState:
    """The running section's time cap: ``active`` inside `time_cap`, ``expired`` once its alarm has
    gone off (or a handler found a `SectionTimeout` inside an exception it caught)."""

    active = False
    expired = False
    seconds = 0.0
    old_handler: Any = None


_CAP = _CapState()
CAP_REPEAT_S = 1.0  # after the cap, the alarm goes off again this often until the section has ended


def _disarm() -> None:
    """Stop the section's alarm and restore the previous SIGALRM handler (idempotent)."""
    _CAP.active = False
    if hasattr(signal, "setitimer"):
        signal.setitimer(signal.ITIMER_REAL, 0)
        if _CAP.old_handler is not None:
            signal.signal(signal.SIGALRM, _CAP.old_handler)
            _CAP.old_handler = None
    _CAP.expired = False


@contextlib.contextmanager
def time_cap(seconds: float, repeat_s: float = CAP_REPEAT_S) -> Iterator[None]:
    """Raise `SectionTimeout` in the main thread after ``seconds`` (checked between Python bytecodes).

    A call inside may catch that exception and wrap it (Triton's interpreter raises InterpreterError
    from it, torch.compile its own errors) or go on after it (a compile falling back to eager): so the
    alarm goes off again every ``repeat_s`` seconds (0: once) until the block ends, and the cap stays
    marked expired (`check_cap`, `reraise_timeout`: the handlers and the loops between rows end the
    section at the next chance)."""
    _disarm()
    _CAP.active, _CAP.seconds = True, seconds
    if seconds <= 0 or not hasattr(signal, "setitimer"):
        try:
            yield
        finally:
            _disarm()
        return

    def _raise(signum: int, frame: Any) -> None:
        if not _CAP.active:  # a late alarm after the section: nothing to stop
            return
        _CAP.expired = True
        if frame is not None and frame.f_code in _CLEAN_UP_CODE:  # in time_cap's own clean-up: let it finish
            return
        raise SectionTimeout(f"time cap of {seconds:.0f} s reached")

    _CAP.old_handler = signal.signal(signal.SIGALRM, _raise)
    signal.setitimer(signal.ITIMER_REAL, seconds, max(repeat_s, 0.0))
    try:
        yield
    finally:
        _disarm()


_CLEAN_UP_CODE = (time_cap.__wrapped__.__code__, _disarm.__code__)  # type: ignore[attr-defined]


def cap_expired() -> bool:
    """Whether the running section's time cap has passed (False outside `time_cap`)."""
    return _CAP.active and _CAP.expired


def check_cap() -> None:
    """Raise `SectionTimeout` when the running section's cap has passed: the loops call it between
    rows, so a timeout that a call inside caught and swallowed still ends the section."""
    if cap_expired():
        raise SectionTimeout(f"time cap of {_CAP.seconds:.0f} s reached (noticed between rows)")


def _timeout_in(exc: BaseException) -> SectionTimeout | None:
    """The `SectionTimeout` that ``exc`` is or wraps (anywhere in its ``__cause__``/``__context__``
    chain), else None."""
    todo, seen = [exc], set()
    while todo:
        e = todo.pop()
        if e is None or id(e) in seen:
            continue
        seen.add(id(e))
        if isinstance(e, SectionTimeout):
            return e
        todo += [e.__cause__, e.__context__]
    return None


def reraise_timeout(exc: BaseException) -> None:
    """For each ``except Exception`` handler of a section: raise `SectionTimeout` (from ``exc``) when
    ``exc`` wraps one, or when the section's cap has passed, marking the cap expired; else return."""
    found = _timeout_in(exc)
    if found is not None and _CAP.active:
        _CAP.expired = True
    if found is not None or cap_expired():
        raise SectionTimeout(str(found) if found is not None else
                             f"time cap of {_CAP.seconds:.0f} s reached") from exc


class Deadline:
    def __init__(self, seconds: float) -> None:
        self.end = time.monotonic() + seconds

    def left(self) -> float:
        return self.end - time.monotonic()


def write_atomic(path: Path, text: str) -> None:
    from evalsuite.results import atomic_write_text

    atomic_write_text(path, text)


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_ms(fn: Callable[[], object], device: torch.device, rep_ms: float = 20.0) -> float:
    """Median milliseconds of ``fn``: triton's do_bench on CUDA (warm-up, L2 flush), else best of a few."""
    if device.type == "cuda" and HAS_TRITON:
        from triton.testing import do_bench

        return float(do_bench(fn, warmup=5, rep=rep_ms, return_mode="median"))
    if device.type == "cuda":
        fn()
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        times = []
        for _ in range(10):
            start.record()
            fn()
            end.record()
            end.synchronize()
            times.append(start.elapsed_time(end))
        return sorted(times)[len(times) // 2]
    fn()
    best = math.inf
    for _ in range(3):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best * 1e3


def short_error(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"[:300]


def environment(device: torch.device) -> dict[str, Any]:
    env: dict[str, Any] = {
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else platform.machine(),
    }
    if HAS_TRITON:
        import triton

        env["triton"] = triton.__version__
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        env.update(sm=f"{props.major}.{props.minor}", sms=props.multi_processor_count,
                   memory_gb=round(props.total_memory / 2**30, 1))  # fmt: skip
    from evalsuite.kernels import qlinear

    env["dispatch"] = {k: getattr(qlinear, k) for k in dir(qlinear) if k.endswith("_M") and k.isupper()}
    return env


# ---- before the sections: the Triton variants compiled in parallel ------------------------------
PRECOMPILE_CAP_S = 75.0


def precompile_shapes(preset: str) -> list[tuple[int, int, str]]:
    """The (N, K, layer) the sections run: the GEMM sweep's (the preset's and the two squares), then
    the tiny engine's (the engine and compiled sections); distinct (N, K)."""
    shapes = linear_shapes(preset) + [(n, k, "square") for n, k in EXTRA_SHAPES] + linear_shapes("tiny")
    seen: dict[tuple[int, int], tuple[int, int, str]] = {}
    for n, k, label in shapes:
        seen.setdefault((n, k), (n, k, label))
    return list(seen.values())


def precompile_kernels(device: torch.device, shapes: list[tuple[int, int, str]], workers: int,
                       cap_s: float, experts: tuple[int, ...] = (128,)) -> dict[str, Any]:  # fmt: skip
    """Every autotune variant of the decode kernels (GEMV at 1 and 16 rows, grouped, dequantize) for
    ``shapes``, compiled by ``workers`` processes into Triton's on-disk cache (bench/static_kernels.py
    `precompile`), so the sections' first calls load cubins instead of compiling one variant at a
    time (~0.5 s each, ~35 per shape: most of the GEMM section's budget otherwise). Capped at
    ``cap_s``; what is not compiled then compiles on first use, as without this step."""
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from static_kernels import KERNELS, precompile

    major, minor = torch.cuda.get_device_capability(device)
    t0 = time.monotonic()
    info: dict[str, Any] = {"arch": major * 10 + minor, "workers": workers}
    try:
        with time_cap(cap_s, repeat_s=0):  # (one alarm: the pool's exit then stops its workers)
            # GEMV row buckets 1 and 16; the grouped kernel for each model's expert count
            info["variants"] = precompile(shapes, [1, 16], KERNELS, info["arch"], workers, experts)
    except Exception as exc:  # SectionTimeout included: the sections compile what is missing
        info["error"] = short_error(exc)
    info["seconds"] = round(time.monotonic() - t0, 1)
    return info


# ---- section: GEMM sweep ------------------------------------------------------------------------
def linear_shapes(preset: str) -> list[tuple[int, int, str]]:
    """Distinct (N, K) of the preset's linear layers, with one module name each, from the meta model."""
    from evalsuite.model.backbone import LanguageModel
    from evalsuite.model.config import BackboneConfig

    with torch.device("meta"):
        model = LanguageModel(BackboneConfig.preset(preset))
    seen: dict[tuple[int, int], str] = {}
    for name, m in model.named_modules():
        if isinstance(m, nn.Linear):
            short = ".".join(p for p in name.split(".") if not p.isdigit()).removeprefix("backbone.layers.")
            seen.setdefault((m.out_features, m.in_features), short)
    return [(n, k, label) for (n, k), label in seen.items()]


def _rel_err(y: torch.Tensor, ref: torch.Tensor) -> float:
    return float((y.float() - ref.float()).norm() / ref.float().norm().clamp_min(1e-30))


def measure_into(row: dict[str, Any], run: Callable[[], torch.Tensor], ref: Callable[[], torch.Tensor],
                 nbytes: int, device: torch.device, rep_ms: float) -> float | None:
    """``run``'s relative error against ``ref()``, its milliseconds and the weight GB/s (``nbytes``
    read per call) into ``row``; the ms, or None when it failed (the error is in ``row``, and the
    caller's other paths go on; the section's time cap is not caught)."""
    check_cap()
    try:
        row["rel_err"] = _rel_err(run(), ref())
        ms = time_ms(run, device, rep_ms)
    except SectionTimeout:
        raise
    except Exception as exc:
        reraise_timeout(exc)  # a time cap wrapped by the call (Triton's InterpreterError, dynamo's errors)
        row["error"] = short_error(exc)
        return None
    row.update(ms=ms, weight_gbs=nbytes / (ms * 1e-3) / 1e9)
    return ms


class Path_:
    """One way to compute ``x @ W.T``: ``fn(x)``, the weight's stored bytes, its format, a row limit."""

    def __init__(self, fn: Callable[[torch.Tensor], torch.Tensor], nbytes: int, fmt: str, max_m: int | None = None):
        self.fn, self.nbytes, self.fmt, self.max_m = fn, nbytes, fmt, max_m


class _SameTile:
    """``fn(x, tile)`` on the one tile the GEMV variants are compared on, looked up once: the tile
    the autotuner chose for the ``nvfp4 gemv`` path of this shape (which runs first), unless it is a
    one-row-only tile (over `ONE_ROW_ONLY_TILE` values: 64 x 512 takes 245 registers with fp16
    products and spills with fp32 products or the Triton-ops decode), then 32 x 512 with its split."""

    def __init__(self, n: int, k: int, fn: Callable[..., torch.Tensor], **variant: Any):
        # fn(x, tile, **variant); variant: nvfp4_gemv's keyword arguments that make the variant
        self.n, self.k, self.fn, self.variant, self.tile = n, k, fn, variant, None

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        if self.tile is None:
            from evalsuite.kernels.triton.nvfp4_gemv import ONE_ROW_ONLY_TILE, tuned_tile

            tile = tuned_tile(self.n, self.k, x.shape[0])
            if tile is None:
                raise RuntimeError("no tuned 4-warp tile of the nvfp4 gemv path for this shape to compare on")
            if tile["block_n"] * tile["block_k"] > ONE_ROW_ONLY_TILE:
                tile = {"block_n": 32, "block_k": 512, "split_k": tile["split_k"]}
            self.tile = tile
        return self.fn(x, self.tile, **self.variant)


# The one-row NVFP4 GEMV's variants compared on one tile (`_SameTile`): path name -> nvfp4_gemv's
# keyword arguments that make the variant
GEMV_VARIANTS: dict[str, dict[str, Any]] = {
    "nvfp4 gemv, A/B tile": {},  # as dispatched: inline PTX decode, fp16 products
    "nvfp4 gemv, Triton decode": {"use_ptx": False},  # what the PTX is worth
    "nvfp4 gemv, fp32 products": {"f16_products": False},  # what the fp16 products are worth
}


def gemv_sass_per_value(n: int, k: int, tile: dict[str, int], arch: int, **variant: Any) -> float:
    """The one-row NVFP4 GEMV variant's K loop on ``tile`` compiled for ``sm_<arch>``: SASS
    instructions per weight value (`kernels.triton.static`, as `make bench-static` counts them)."""
    from evalsuite.kernels.constants import E4M3_DTYPE
    from evalsuite.kernels.triton.nvfp4_gemv import nvfp4_gemv
    from evalsuite.kernels.triton.static import compile_for

    def meta(*shape: int, dtype: torch.dtype = torch.bfloat16) -> torch.Tensor:
        return torch.empty(shape, dtype=dtype, device="meta")

    with compile_for(arch) as rec:
        nvfp4_gemv(meta(1, k), meta(n, k // 2, dtype=torch.uint8), meta(n, k // 16, dtype=E4M3_DTYPE),
                   meta(dtype=torch.float32), **variant, **tile)  # fmt: skip
    (report,) = rec.reports()
    return report.loop_per_value


def add_sass_per_value(res: dict[str, Any]) -> int:
    """Set ``sass_per_value`` on each GEMM row that ran a `GEMV_VARIANTS` path on a recorded tile, for
    the architecture the run recorded (``env.sm``); compiles only (any machine with Triton's
    toolchain), so the GPU's time goes to measuring. Returns the rows set."""
    if not isinstance(res, dict):
        raise ValueError(f"add_sass_per_value: the results are a JSON {type(res).__name__}, not an object")
    env, sections = res.get("env", {}), res.get("sections", {})
    gemm = sections.get("gemm", {}) if isinstance(sections, dict) else None
    rows = gemm.get("rows", []) if isinstance(gemm, dict) else None
    if not isinstance(env, dict) or not isinstance(rows, list) or not all(isinstance(r, dict) for r in rows):
        raise ValueError("add_sass_per_value: expected an object with 'env' an object and 'sections.gemm.rows' "
                         "a list of objects")
    sm = env.get("sm")
    if not sm:
        raise ValueError("add_sass_per_value: the results record no GPU architecture (env.sm); "
                         "a CUDA run's gpu.json is needed")
    try:
        arch = int(str(sm).replace(".", ""))
    except ValueError:
        raise ValueError(f"add_sass_per_value: env.sm {sm!r} is not a compute capability like '9.0'") from None
    todo = [row for row in rows if row.get("tile_cfg") and row.get("path") in GEMV_VARIANTS]
    if todo:
        from evalsuite.kernels.triton.static import toolchain_missing

        if missing := toolchain_missing():
            raise ValueError(f"add_sass_per_value: cannot compile for CUDA here ({missing})")
    done = 0
    for row in todo:
        tile = row["tile_cfg"]
        try:
            n, k = (int(v) for v in str(row.get("shape")).split("x"))
            ok = isinstance(tile, dict) and set(tile) == {"block_n", "block_k", "split_k"}
        except ValueError:
            ok = False
        if not ok:
            raise ValueError(f"add_sass_per_value: row {row.get('path')!r} at {row.get('shape')!r}: expected "
                             f"'shape' NxK and 'tile_cfg' with block_n, block_k, split_k, got {tile!r}")
        row["sass_per_value"] = gemv_sass_per_value(n, k, tile, arch, **GEMV_VARIANTS[row["path"]])
        done += 1
    return done


def gemm_paths(w: torch.Tensor) -> tuple[dict[str, Path_], dict[str, Callable[[torch.Tensor], torch.Tensor]]]:
    """(name -> path, format -> fp32 reference) for the bf16 weight ``w[N, K]``; quantized once."""
    from evalsuite.kernels.fp8_gemm import fp8_gemm
    from evalsuite.kernels.qlinear import FP8Linear, NVFP4Linear
    from evalsuite.kernels.triton.nvfp4_gemm import nvfp4_gemm
    from evalsuite.kernels.triton.nvfp4_gemv import GEMV_MAX_M, nvfp4_dequantize_triton, nvfp4_gemv

    n, k = w.shape
    lin = nn.Linear(k, n, bias=False, device=w.device, dtype=w.dtype)
    lin.weight.data.copy_(w)
    f8, f4 = FP8Linear.from_linear(lin), NVFP4Linear.from_linear(lin)
    q8 = (f8.qdata, f8.scale)
    q4 = (f4.qdata, f4.block_scales, f4.global_scale)
    b16, b8, b4 = 2 * n * k, n * k, n * k // 2 + n * k // 16

    def ab(x: torch.Tensor, tile: dict[str, int], **variant: Any) -> torch.Tensor:
        return nvfp4_gemv(x, *q4, **variant, **tile)

    paths = {
        "bf16": Path_(lambda x: F.linear(x, w), b16, "bf16"),
        "fp8 FP8Linear": Path_(f8, b8, "fp8"),
        "fp8 scaled_mm (W8A8)": Path_(lambda x: fp8_gemm(x, *q8, backend="scaled_mm"), b8, "fp8"),
        "nvfp4 NVFP4Linear": Path_(f4, b4, "nvfp4"),
        "nvfp4 gemv": Path_(lambda x: nvfp4_gemv(x, *q4), b4, "nvfp4", GEMV_MAX_M),
        # the default kernel on the tile the two variants below run on (`_SameTile`: the tuned tile,
        # or 32 x 512 when the autotuner chose a tile only the default compiles without spilling)
        **{name: Path_(_SameTile(n, k, ab, **variant), b4, "nvfp4", 1) for name, variant in GEMV_VARIANTS.items()},
        # (then the same kernel and tile with the E2M1 decode in Triton ops instead of inline PTX, and
        # with each product in fp32 instead of fp16: what each is worth, in time and in rel_err)
        "nvfp4 tiled": Path_(lambda x: nvfp4_gemm(x, *q4), b4, "nvfp4"),
        "nvfp4 dequant+bf16": Path_(lambda x: F.linear(x, nvfp4_dequantize_triton(*q4, dtype=x.dtype)), b4, "nvfp4"),
    }
    try:
        from evalsuite.kernels.triton.fp8_gemv import GEMV_MAX_M as FP8_GEMV_MAX_M
        from evalsuite.kernels.triton.fp8_gemv import fp8_gemv

        paths["fp8 gemv (W8A16)"] = Path_(lambda x: fp8_gemv(x, *q8), b8, "fp8", FP8_GEMV_MAX_M)
    except ImportError:
        pass
    refs = {
        "bf16": lambda x: F.linear(x.float(), w.float()),
        "fp8": lambda x: F.linear(x.float(), fp8.dequantize(*q8)),
        "nvfp4": lambda x: F.linear(x.float(), nvfp4.dequantize(*q4)),
    }
    return paths, refs


def gemm_order(shapes: list[tuple[int, int, str]]) -> list[tuple[int, int, str]]:
    """The GEMM sweep's order, so that a time cap cuts what matters least: the decode-relevant shapes
    first (the model's own layers: its projections and experts, in model order), then the vocabulary
    projection (the model's too, but the largest and slowest to time), then the extra squares (not the
    model's: for comparison with other kernels' published figures), smallest first."""
    def key(s: tuple[int, int, str]) -> tuple[int, int]:
        n, k, label = s
        return (2, n * k) if label == "square" else (1, 0) if label == "lm_head" else (0, 0)

    return sorted(shapes, key=key)  # stable: the layers keep the model's order


def run_gemm(out: dict[str, Any], device: torch.device, preset: str, m_values: tuple[int, ...],
             extra: tuple[tuple[int, int], ...], deadline: Deadline, rep_ms: float) -> None:
    shapes = gemm_order(linear_shapes(preset) + [(n, k, "square") for n, k in extra])
    out["shapes"] = [f"{n}x{k} {label}" for n, k, label in shapes]
    out["rel_err"] = "relative L2 error against the format's fp32 weight-only reference (W8A8 includes activation rounding)"
    rows = out.setdefault("rows", [])
    for n, k, label in shapes:
        check_cap()
        if deadline.left() <= 0:
            out.setdefault("skipped", []).append(f"{n}x{k} {label}: section time cap")
            continue
        g = torch.Generator(device=device).manual_seed(n * 7 + k)
        w = (torch.randn(n, k, device=device, generator=g) * 0.02).to(torch.bfloat16)
        try:
            paths, refs = gemm_paths(w)
        except SectionTimeout:
            raise
        except Exception as exc:
            reraise_timeout(exc)
            rows.append({"shape": f"{n}x{k}", "layer": label, "M": "-", "path": "quantize", "error": short_error(exc)})
            continue
        for m in m_values:
            x = torch.randn(m, k, device=device, generator=g).to(torch.bfloat16)
            base_ms = None
            ref_out: dict[str, torch.Tensor] = {}
            for name, path in paths.items():
                if path.max_m is not None and m > path.max_m:
                    continue
                row: dict[str, Any] = {"shape": f"{n}x{k}", "layer": label, "M": m, "path": name}

                def ref(fmt: str = path.fmt) -> torch.Tensor:  # each format's reference once per M
                    if fmt not in ref_out:
                        ref_out[fmt] = refs[fmt](x)
                    return ref_out[fmt]

                ms = measure_into(row, lambda: path.fn(x), ref, path.nbytes, device, rep_ms)
                if ms is not None:
                    if isinstance(path.fn, _SameTile) and path.fn.tile:
                        row["tile"] = "{block_n}x{block_k} split {split_k}".format(**path.fn.tile)
                        row["tile_cfg"] = dict(path.fn.tile)  # for add_sass_per_value, after the run
                    if name == "bf16":
                        base_ms = ms
                    if base_ms:
                        row["speedup_vs_bf16"] = base_ms / ms
                rows.append(row)
            del ref_out
        del w, paths, refs
        if device.type == "cuda":
            torch.cuda.empty_cache()


# ---- section: MoE at decode --------------------------------------------------------------------------
MOE_BATCHES = (1, 8)  # decode batches: top-k routed rows per token


def moe_routing(n_tokens: int, n_experts: int, top_k: int, g: torch.Generator, device: torch.device
                ) -> tuple[torch.Tensor, torch.Tensor]:  # fmt: skip
    """(each row's expert, ascending; offsets [E+1]) for ``n_tokens`` tokens each routed to ``top_k``
    distinct experts at random, the rows sorted by expert as the MoE layer sorts them."""
    picks = torch.stack([torch.randperm(n_experts, generator=g, device=device)[:top_k] for _ in range(n_tokens)])
    experts = picks.reshape(-1).sort().values
    counts = torch.bincount(experts, minlength=n_experts)
    return experts, F.pad(counts.cumsum(0), (1, 0))


def run_moe(out: dict[str, Any], device: torch.device, preset: str, batches: tuple[int, ...], deadline: Deadline,
            rep_ms: float) -> None:  # fmt: skip
    """One routed-expert projection of the preset's MoE at decode, per expert shape and batch: bf16
    (`kernels.grouped.grouped_mm`, the model's bf16 path) against NVFP4 `grouped_gemm` as dispatched
    (one-row tiles while there are no more rows than experts) and with 16-row tiles. Weight GB/s
    counts the experts that have rows."""
    from evalsuite.kernels import nvfp4
    from evalsuite.kernels.grouped import grouped_mm
    from evalsuite.kernels.triton.grouped_gemm import grouped_gemm, grouped_gemm_ref
    from evalsuite.model.config import BackboneConfig

    cfg = BackboneConfig.preset(preset)
    n_experts, top_k = cfg.n_routed_experts, cfg.num_experts_per_tok
    out.update(experts=n_experts, top_k=top_k)
    rows = out.setdefault("rows", [])
    for n, k, label in [s for s in linear_shapes(preset) if ".experts." in f".{s[2]}"]:
        check_cap()
        if deadline.left() <= 0:
            out.setdefault("skipped", []).append(f"{n}x{k} {label}: section time cap")
            continue
        g = torch.Generator(device=device).manual_seed(n * 3 + k)
        w = (torch.randn(n_experts, n, k, device=device, generator=g) * 0.02).to(torch.bfloat16)
        qs = [nvfp4.quantize(w[e]) for e in range(n_experts)]
        q4 = (torch.stack([q.qdata for q in qs]), torch.stack([q.block_scales for q in qs]),
              torch.stack([q.global_scale.reshape(()) for q in qs]))  # fmt: skip
        del qs
        for batch in batches:
            check_cap()
            experts, offsets = moe_routing(batch, n_experts, top_k, g, device)
            x = torch.randn(experts.shape[0], k, device=device, generator=g).to(torch.bfloat16)
            used = int((offsets[1:] > offsets[:-1]).sum())
            paths = {
                "bf16 grouped_mm": (lambda: grouped_mm(x, w, experts, offsets), 2 * used * n * k),
                "nvfp4 grouped": (lambda: grouped_gemm(x, offsets, *q4), used * (n * k // 2 + n * k // 16)),
                "nvfp4 grouped, 16-row tiles": (lambda: grouped_gemm(x, offsets, *q4, block_m=16),
                                                used * (n * k // 2 + n * k // 16)),
            }  # fmt: skip
            refs = {"bf16": grouped_mm(x.float(), w.float(), experts, offsets),
                    "nvfp4": grouped_gemm_ref(x, offsets, *q4).float()}  # fmt: skip
            base_ms = None
            for name, (fn, nbytes) in paths.items():
                row: dict[str, Any] = {"shape": f"{n}x{k}", "layer": label, "batch": batch, "rows": x.shape[0],
                                       "experts_used": used, "path": name}  # fmt: skip
                ms = measure_into(row, fn, lambda fmt=name.split()[0]: refs[fmt], nbytes, device, rep_ms)
                if ms is not None:
                    if name.startswith("bf16"):
                        base_ms = ms
                    if base_ms:
                        row["speedup_vs_bf16"] = base_ms / ms
                rows.append(row)
        del w, q4
        if device.type == "cuda":
            torch.cuda.empty_cache()


# ---- section: tiny engine -------------------------------------------------------------------------
LAUNCH_NAMES = ("cudaLaunchKernel", "cudaLaunchKernelExC", "cuLaunchKernel", "cuLaunchKernelEx",
                "cudaLaunchCooperativeKernel", "cudaGraphLaunch")  # fmt: skip
SYNC_NAMES = ("cudaStreamSynchronize", "cudaDeviceSynchronize", "cudaEventSynchronize", "cudaMemcpy")


def count_launches_and_syncs(fn: Callable[[], object]) -> tuple[int, int, int]:
    """(launch API calls, host sync API calls, GPU-side kernel/memcpy/memset events) while ``fn`` runs."""
    from torch.profiler import ProfilerActivity, profile

    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if torch.cuda.is_available() else [])
    with profile(activities=activities) as prof:
        fn()
    launches = syncs = device_events = 0
    for evt in prof.key_averages():
        if evt.key in LAUNCH_NAMES:
            launches += evt.count
        elif evt.key in SYNC_NAMES:
            syncs += evt.count
        if str(getattr(evt, "device_type", "")).endswith("CUDA"):
            device_events += evt.count
    return launches, syncs, device_events


def _tiny_model(recipe: str, device: torch.device, preset: str = "tiny") -> nn.Module:
    from evalsuite.kernels import quantize_model
    from evalsuite.model.backbone import build

    torch.manual_seed(0)
    model = build(preset, device=device, dtype=torch.bfloat16).eval()
    if recipe != "bf16":
        quantize_model(model, recipe)
    return model


def decode_step_counts(engine: Any, prompts: list[torch.Tensor], new_tokens: int, steps: int,
                       device: torch.device) -> tuple[int, int, int]:  # fmt: skip
    """`count_launches_and_syncs` over ``steps`` decode steps alone: the prompts submitted (each to
    ``new_tokens`` tokens) and the engine's first step (admission, prefill, the first token) run
    unprofiled, then ``steps`` steps profiled, each one decode step of every sequence (none finishes:
    ``steps`` <= ``new_tokens`` - 2), then the requests dropped. So the prefill's launches and syncs
    are not charged to decode."""
    from evalsuite.model.engine import SamplingParams

    if not 1 <= steps <= new_tokens - 2:
        raise ValueError(f"decode_step_counts: expected 1 <= steps <= new_tokens - 2, got {steps} and {new_tokens}")
    params = SamplingParams(max_tokens=new_tokens, stop_token_ids=())
    handles = [engine.submit(p, params) for p in prompts]
    try:
        engine.step()  # admit and prefill every prompt: the step that is not counted
        if engine.waiting or len(engine.running) != len(handles):
            raise RuntimeError(f"decode_step_counts: {len(engine.running)} of {len(handles)} sequences admitted "
                               "in the first step; the engine needs a slot for each")
        sync(device)

        def decode_steps() -> None:
            for _ in range(steps):
                engine.step()

        counts = count_launches_and_syncs(decode_steps)
        if any(h.done for h in handles) or any(len(h.tokens) != 1 + steps for h in handles):
            raise RuntimeError("decode_step_counts: a profiled step was not one decode step of every sequence")
    finally:
        engine.cancel_all()
    return counts


def _engine_row(row: dict[str, Any], model: nn.Module, device: torch.device, b: int, kv: str, graphs: str,
                compile_step: bool, prompt_len: int, new_tokens: int) -> None:
    """Fill ``row`` with one engine configuration's decode tok/s and per-step launches and syncs."""
    from evalsuite.model.engine import Engine, SamplingParams

    engine = Engine(model, n_slots=b, max_len=prompt_len + new_tokens + 1,
                    kv_cache_dtype=None if kv == "bf16" else kv, cuda_graphs=graphs, compile_step=compile_step)  # fmt: skip
    g = torch.Generator().manual_seed(b)
    prompts = [torch.randint(0, 256, (prompt_len,), generator=g) for _ in range(b)]
    params = SamplingParams(max_tokens=new_tokens, stop_token_ids=())
    t0 = time.perf_counter()
    engine.generate(prompts, params)  # warm-up: every step shape, so every graph is captured (and compiled) here
    sync(device)
    row["warmup_s"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    results = engine.generate(prompts, params)
    sync(device)
    elapsed = time.perf_counter() - t0
    generated = sum(r.output_tokens for r in results)
    row.update(tok_s=generated / elapsed, seconds=elapsed, tokens=generated)
    steps = min(8, new_tokens - 2)  # the engine is sized for new_tokens; none may finish while profiled
    if steps >= 1:
        launches, syncs, on_device = decode_step_counts(engine, prompts, new_tokens, steps, device)
        row.update(launches_per_step=launches / steps, syncs_per_step=syncs / steps,
                   device_ops_per_step=on_device / steps, counted_steps=steps)  # fmt: skip
    if engine.decoder is not None:
        row["graphs_captured"] = engine.decoder.captures
        row["compiled"] = engine.decoder.compiled  # False when compiling failed (a warning said why)


def run_engine(out: dict[str, Any], device: torch.device, batches: tuple[int, ...], prompt_len: int,
               new_tokens: int, deadline: Deadline, modes: tuple[str, ...] = ("off", "on"),
               recipes: tuple[str, ...] | None = None) -> None:
    """Engine rows per recipe, batch and mode: "off" (eager step), "on" (CUDA graph), "compile"
    (the graph of the `torch.compile`d step)."""
    from evalsuite.kernels import recipes as recipe_table

    rows = out.setdefault("rows", [])
    out.update(prompt_len=prompt_len, new_tokens=new_tokens,
               counted="kernel launches (runtime + driver API) and host syncs (stream/device/event "
                       "synchronize, blocking memcpy) per decode step, from profiled decode steps alone "
                       "(after the step that prefills: the prefill is not counted)")  # fmt: skip
    for recipe in recipes or RECIPES:
        check_cap()
        if deadline.left() <= 0:
            out.setdefault("skipped", []).append(f"{recipe}: section time cap")
            continue
        model = _tiny_model(recipe, device)
        kv = recipe_table.get(recipe).kv_cache_dtype
        for b, mode in [(b, m) for b in batches for m in modes]:
            graphs = "off" if mode == "off" else "on"
            row: dict[str, Any] = {"recipe": recipe, "batch": b, "cuda_graphs": graphs, "compile_step": mode == "compile"}
            check_cap()
            if deadline.left() <= 0:
                row["error"] = "skipped: section time cap"
                rows.append(row)
                continue
            try:
                _engine_row(row, model, device, b, kv, graphs, mode == "compile", prompt_len, new_tokens)
            except SectionTimeout as exc:
                row["error"] = short_error(exc)
                rows.append(row)
                raise
            except Exception as exc:
                row["error"] = short_error(exc)
                rows.append(row)
                reraise_timeout(exc)
                continue
            rows.append(row)
        del model
        gc.collect()


def _fill_random_(model: nn.Module, seed: int = 0) -> None:
    """Cheap random contents for every parameter and buffer after ``to_empty``: normal(0, 0.02)
    weights, unit norms, the Mamba constants as initialised, finite FP8 / NVFP4 codes and scales."""
    from evalsuite.model.mamba2 import Mamba2Mixer

    torch.manual_seed(seed)
    with torch.no_grad():
        for mod_name, module in model.named_modules():
            for name, t in list(module.named_parameters(recurse=False)) + list(module.named_buffers(recurse=False)):
                if t.dtype == torch.uint8:  # NVFP4 packed codes: any byte is two valid codes
                    t.copy_(torch.randint(0, 256, t.shape, dtype=torch.uint8, device=t.device))
                elif t.dtype == torch.float8_e4m3fn:
                    if name == "block_scales":
                        t.view(torch.uint8).fill_(0x38)  # 1.0
                    else:  # FP8 weight codes: magnitudes below 448, never the NaN pattern
                        codes = torch.randint(0, 0x7E, t.shape, dtype=torch.uint8, device=t.device)
                        sign = torch.randint(0, 2, t.shape, dtype=torch.uint8, device=t.device) << 7
                        t.view(torch.uint8).copy_(codes | sign)
                elif name == "global_scale":
                    t.fill_(0.02 / 6)
                elif name == "scale":
                    t.fill_(0.02 / 448)
                elif name == "e_score_correction_bias" or name == "bias":
                    t.zero_()
                elif isinstance(module, Mamba2Mixer) and name in ("A_log", "D", "dt_bias"):
                    h = t.shape[0]
                    if name == "A_log":
                        t.copy_(torch.log(torch.arange(1, h + 1, dtype=torch.float32, device=t.device)))
                    else:
                        t.fill_(1.0 if name == "D" else -4.0)
                elif name == "weight" and t.dim() == 1:  # norms
                    t.fill_(1.0)
                elif t.is_floating_point():
                    t.normal_(0.0, 0.02)


def _model_bytes(model: nn.Module) -> int:
    return sum(t.numel() * t.element_size() for t in list(model.parameters()) + list(model.buffers()))


def build_random(preset: str, recipe: str, device: torch.device) -> nn.Module:
    """The preset's language model with random weights in ``recipe``, never materialized in bf16 first."""
    from evalsuite.kernels import quantize_model
    from evalsuite.model.backbone import LanguageModel
    from evalsuite.model.config import BackboneConfig

    with torch.device("meta"):
        model = LanguageModel(BackboneConfig.preset(preset)).to(torch.bfloat16)
    if recipe != "bf16":
        quantize_model(model, recipe)
    need = _model_bytes(model)
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        if need > 0.9 * free:
            raise MemoryError(f"needs {need / 2**30:.1f} GiB of weights, {free / 2**30:.1f} GiB free")
    model = model.to_empty(device=device)
    _fill_random_(model)
    return model.eval()


def _decode_rate(model: nn.Module, batch: int, prompt_len: int, steps: int, device: torch.device,
                 kv: str | None) -> dict[str, float]:
    from evalsuite.model.backbone import decode_step, prefill

    state = model.allocate_state(batch, prompt_len + steps + 3, kv)
    vocab = model.config.vocab_size
    ids = torch.randint(0, vocab, (batch, prompt_len), device=device)
    prefill(model, ids, state)
    tokens = torch.randint(0, vocab, (batch,), device=device)
    for _ in range(2):  # warm-up
        decode_step(model, tokens, state)
    sync(device)
    t0 = time.perf_counter()
    for _ in range(steps):
        decode_step(model, tokens, state)
    sync(device)
    step_s = (time.perf_counter() - t0) / steps
    del state
    return {"tpot_ms": step_s * 1e3, "tok_s": batch / step_s}


def at_tpot_slo(row: dict[str, Any], slo_ms: float) -> tuple[float | None, int | None]:
    """(output tok/s, batch) of the measured batch with the highest decode rate whose TPOT meets the
    SLO; (None, None) when none does."""
    met = [(row[f"decode_b{b}_tok_s"], b) for b in sorted(int(k[8:-6]) for k in row if k.startswith("decode_b"))
           if row.get(f"tpot_b{b}_ms") is not None and row[f"tpot_b{b}_ms"] <= slo_ms]
    return max(met) if met else (None, None)


def run_full(out: dict[str, Any], device: torch.device, preset: str, batches: tuple[int, ...],
             prefill_len: int, decode_steps: int, deadline: Deadline, tpot_slo_ms: float = 50.0) -> None:
    from evalsuite.kernels import recipes
    from evalsuite.model.backbone import prefill

    out.update(preset=preset, prefill_len=prefill_len, decode_steps=decode_steps, tpot_slo_ms=tpot_slo_ms,
               note="random weights, no checkpoint; decode from a 32-token prompt; TPOT = time per decode step; "
                    f"at SLO = the measured batch with the most tok/s whose TPOT <= {tpot_slo_ms:g} ms; "
                    "prefill timed after an untimed one of the same length")  # fmt: skip
    rows = out.setdefault("rows", [])
    for recipe in ("bf16", "fp4", "fp8"):
        check_cap()
        row: dict[str, Any] = {"recipe": recipe}
        rows.append(row)
        if deadline.left() < 20:
            row["skipped"] = f"{deadline.left():.0f} s left in the section, a recipe needs about 30"
            continue
        model = None
        try:
            if device.type == "cuda":
                torch.cuda.empty_cache()
                torch.cuda.reset_peak_memory_stats(device)
            t0 = time.perf_counter()
            model = build_random(preset, recipe, device)
            sync(device)
            row.update(build_s=time.perf_counter() - t0, weights_gib=_model_bytes(model) / 2**30)
            kv = recipes.get(recipe).kv_cache_dtype
            kv = None if kv == "bf16" else kv
            with torch.no_grad():
                for b in batches:
                    check_cap()
                    r = _decode_rate(model, b, 32, decode_steps, device, kv)
                    row[f"decode_b{b}_tok_s"] = r["tok_s"]
                    row[f"tpot_b{b}_ms"] = r["tpot_ms"]
                    row["tok_s_at_tpot_slo"], row["slo_batch"] = at_tpot_slo(row, tpot_slo_ms)
                if deadline.left() < 10:
                    row["prefill"] = "skipped: section time cap"
                else:
                    ids = torch.randint(0, model.config.vocab_size, (1, prefill_len), device=device)
                    # an untimed prefill of the same length first (the allocator's growth, autotuning
                    # and first-call compiles of the prefill's shapes), then the timed one
                    state = model.allocate_state(1, prefill_len + 1, kv)
                    t0 = time.perf_counter()
                    prefill(model, ids, state)
                    sync(device)
                    row["prefill_warmup_s"] = time.perf_counter() - t0
                    del state
                    check_cap()
                    state = model.allocate_state(1, prefill_len + 1, kv)
                    sync(device)
                    t0 = time.perf_counter()
                    prefill(model, ids, state)
                    sync(device)
                    row["prefill_tok_s"] = prefill_len / (time.perf_counter() - t0)
                    del state
            if device.type == "cuda":
                row["peak_mem_gib"] = torch.cuda.max_memory_allocated(device) / 2**30
        except SectionTimeout as exc:
            row["error"] = short_error(exc)
            raise
        except Exception as exc:
            row["error"] = short_error(exc)
            reraise_timeout(exc)
        finally:
            del model
            gc.collect()
            if device.type == "cuda":
                torch.cuda.empty_cache()


# ---- report ---------------------------------------------------------------------------------------
def _f(v: Any, digits: int = 2) -> str:
    if isinstance(v, float):
        return f"{v:,.{digits}f}"
    return "" if v is None else str(v)


def markdown(res: dict[str, Any]) -> str:
    env = res.get("env", {})
    lines = [f"GPU benchmark (`{res.get('command', '')}`), {env.get('device', '?')}, torch {env.get('torch', '?')}, "
             f"triton {env.get('triton', '-')}, {env.get('date', '?')}; dispatch thresholds {env.get('dispatch', {})}"]
    if "precompile" in res:
        lines.append(f"Precompiled Triton variants (before the sections): {res['precompile']}")
    sec = res.get("sections", {})
    gemm = sec.get("gemm")
    if gemm:
        lines += ["", "### GEMM: y = x @ W.T, bf16 activations (ms, speedup vs bf16, weight GB/s)", "",
                  "| shape N×K | layer | M | path | ms | × bf16 | weight GB/s | rel. err |", "|---|---|---:|---|---:|---:|---:|---:|"]
        for r in gemm.get("rows", []):
            if "error" in r:
                lines.append(f"| {r['shape']} | {r['layer']} | {r['M']} | {r['path']} | error: {r['error']} | | | |")
            else:
                path = r["path"]
                if r.get("tile"):
                    sass = f"; {r['sass_per_value']:.2f} SASS/value" if r.get("sass_per_value") else ""
                    path += f" ({r['tile']}{sass})"
                lines.append(f"| {r['shape']} | {r['layer']} | {r['M']} | {path} | {_f(r.get('ms'), 4)} | "
                             f"{_f(r.get('speedup_vs_bf16'))} | {_f(r.get('weight_gbs'), 0)} | {_f(r.get('rel_err'), 5)} |")
    moe = sec.get("moe")
    if moe and moe.get("rows"):
        lines += ["", f"### MoE at decode: one routed-expert projection, {moe.get('experts')} experts, top "
                  f"{moe.get('top_k')} (ms, speedup vs bf16 grouped_mm, GB/s of the experts used)", "",
                  "| shape N×K | layer | batch | rows | experts used | path | ms | × bf16 | weight GB/s | rel. err |",
                  "|---|---|---:|---:|---:|---|---:|---:|---:|---:|"]
        for r in moe["rows"]:
            head = f"| {r['shape']} | {r['layer']} | {r['batch']} | {r['rows']} | {r['experts_used']} | {r['path']} |"
            if "error" in r:
                lines.append(f"{head} error: {r['error']} | | | |")
            else:
                lines.append(f"{head} {_f(r.get('ms'), 4)} | {_f(r.get('speedup_vs_bf16'))} | "
                             f"{_f(r.get('weight_gbs'), 0)} | {_f(r.get('rel_err'), 5)} |")
    for key, title in (("engine", "Tiny engine"), ("compiled", "Tiny engine, decode step compiled")):
        eng = sec.get(key)
        if not eng:
            continue
        lines += ["", f"### {title}: {eng.get('prompt_len')}-token prompts, {eng.get('new_tokens')} new tokens "
                  "(a step = one token for every sequence; counts per decode step, prefill not included)", "",
                  "| recipe | batch | tok/s | launches / step | host syncs / step | GPU ops / step | CUDA graph | "
                  "compiled | warm-up s |",
                  "|---|---:|---:|---:|---:|---:|---|---|---:|"]
        for r in eng.get("rows", []):
            graph = r.get("cuda_graphs", "off")
            comp = "yes" if r.get("compiled") else ("failed" if r.get("compile_step") and "error" not in r else "no")
            if "error" in r:
                lines.append(f"| {r['recipe']} | {r['batch']} | error: {r['error']} | | | | {graph} | {comp} | |")
            else:
                lines.append(f"| {r['recipe']} | {r['batch']} | {_f(r.get('tok_s'), 0)} | {_f(r.get('launches_per_step'), 0)} | "
                             f"{_f(r.get('syncs_per_step'), 1)} | {_f(r.get('device_ops_per_step'), 0)} | {graph} | "
                             f"{comp} | {_f(r.get('warmup_s'), 1)} |")
    full = sec.get("full")
    if full:
        bs = [k.removeprefix("decode_b").removesuffix("_tok_s") for r in full.get("rows", []) for k in r
              if k.startswith("decode_b")]
        bs = sorted(set(bs), key=int)
        head = " | ".join(f"decode b{b} tok/s | TPOT b{b} ms" for b in bs)
        lines += ["", f"### Full-size `{full.get('preset')}` LM, random weights ({full.get('note', '')})", "",
                  f"| recipe | weights GiB | {head} | tok/s at TPOT ≤ {_f(full.get('tpot_slo_ms'), 0)} ms (batch) | "
                  f"prefill {full.get('prefill_len')} tok/s | peak GiB | note |",
                  "|---|---:|" + "---:|" * (2 * len(bs)) + "---:|---:|---:|---|"]
        for r in full.get("rows", []):
            cells = " | ".join(f"{_f(r.get(f'decode_b{b}_tok_s'), 1)} | {_f(r.get(f'tpot_b{b}_ms'), 1)}" for b in bs)
            note = r.get("error") or r.get("skipped") or (r["prefill"] if isinstance(r.get("prefill"), str) else "")
            slo = (f"{_f(r['tok_s_at_tpot_slo'], 1)} ({r['slo_batch']})" if r.get("tok_s_at_tpot_slo") is not None
                   else ("none" if any(k.startswith("decode_b") for k in r) else "–"))
            lines.append(f"| {r['recipe']} | {_f(r.get('weights_gib'), 1)} | {cells} | {slo} | "
                         f"{_f(r.get('prefill_tok_s'), 0)} | {_f(r.get('peak_mem_gib'), 1)} | {note} |")
    for name, s in sec.items():
        if s.get("error"):
            lines += ["", f"Section {name} stopped: {s['error']}"]
        for skipped in s.get("skipped", []):
            lines.append(f"- {name} skipped {skipped}")
    return "\n".join(lines) + "\n"


# ---- main -----------------------------------------------------------------------------------------
class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]  (one line, no usage block)
        print(f"{self.prog}: error: {message}", file=sys.stderr)
        raise SystemExit(2)


def positive_int(text: str) -> int:
    """An integer >= 1 (repeats, calls, lengths); the bench scripts share it as an option type."""
    try:
        v = int(text)
    except ValueError:
        v = 0
    if v < 1:
        raise argparse.ArgumentTypeError(f"expected an integer >= 1, got {text!r}")
    return v


def one_of(allowed: tuple[str, ...] | list[str], kind: str) -> Callable[[str], list[str]]:
    """Option type: a comma-separated list of ``allowed`` names (``kind`` names them in the error)."""
    def parse(text: str) -> list[str]:
        items = [x.strip() for x in text.split(",") if x.strip()]
        bad = [x for x in items if x not in allowed]
        if bad or not items:
            raise argparse.ArgumentTypeError(f"expected a comma-separated list of {kind} ({', '.join(allowed)}), "
                                             f"got {text!r}")
        return items

    return parse


def parse_device(text: str, expected: str = "cuda, cuda:N or cpu (a smoke test of the script)") -> torch.device:
    """``cuda``, ``cuda:N`` or ``cpu`` (whether that CUDA device exists is checked later); the bench
    scripts share it."""
    try:
        device = torch.device(text)
    except (RuntimeError, ValueError):
        device = None
    if device is None or device.type not in ("cpu", "cuda") or (device.type == "cpu" and device.index):
        raise ValueError(f"--device: expected {expected}, got {text!r}")
    return device


def main(argv: list[str] | None = None) -> int:
    p = _Parser(prog="python bench/bench_gpu.py", description=__doc__.splitlines()[0])
    p.add_argument("--out", default="results/bench", help="folder for gpu.json and gpu.md")
    p.add_argument("--sections", default=",".join(DEFAULT_SECTIONS),
                   help="comma-separated, run in this order: gemm, full, moe, engine, compiled")
    p.add_argument("--budget-s", type=float, default=290.0, help="wall-clock budget of the whole run")
    p.add_argument("--device", default="cuda", help="cuda (default); cpu only for a smoke test of the script")
    p.add_argument("--preset", default="nano-omni-30b-a3b", help="config whose shapes and model are measured")
    p.add_argument("--m", default=",".join(map(str, M_VALUES)), help="GEMM row counts")
    p.add_argument("--smoke", action="store_true",
                   help="tiny sizes everywhere, the tiny preset's shapes and model (tests the script on CPU)")
    p.add_argument("--tpot-slo-ms", type=float, default=50.0,
                   help="the full-size model's TPOT target: its output tok/s at the SLO is that of the measured "
                        "batch with the most tok/s within it")
    p.add_argument("--precompile-workers", type=int, default=min(16, os.cpu_count() or 1),
                   help="processes compiling the Triton kernels' variants before the sections (0: none)")
    p.add_argument("--sass-from", type=Path, default=None,
                   help="measure nothing: add each GEMV A/B row's SASS per value (compiled for the run's GPU, no "
                        "GPU needed) to this gpu.json, and rewrite it and its gpu.md")
    args = p.parse_args(argv)
    # every option is checked before anything runs (the no-CUDA exit included)
    try:
        device = parse_device(args.device)
    except ValueError as exc:
        p.error(str(exc))
    sections = [s.strip() for s in args.sections.split(",") if s.strip()]
    unknown = sorted(set(sections) - set(SECTION_CAPS_S))
    if unknown or not sections:
        p.error(f"--sections: unknown {unknown}; expected some of {sorted(SECTION_CAPS_S)}" if unknown else
                f"--sections: expected some of {sorted(SECTION_CAPS_S)}, got none")
    try:
        m_values = tuple(int(v) for v in args.m.split(","))
        if any(m < 1 for m in m_values):
            raise ValueError
    except ValueError:
        p.error(f"--m: expected comma-separated integers >= 1, got {args.m!r}")
    if not math.isfinite(args.tpot_slo_ms) or args.tpot_slo_ms <= 0:
        p.error(f"--tpot-slo-ms: expected a finite number of milliseconds > 0, got {args.tpot_slo_ms}")
    if not math.isfinite(args.budget_s) or args.budget_s < 0:
        p.error(f"--budget-s: expected a finite number of seconds >= 0, got {args.budget_s}")
    if args.precompile_workers < 0:
        p.error(f"--precompile-workers: expected an integer >= 0, got {args.precompile_workers}")
    from evalsuite.model.config import BackboneConfig

    if args.preset not in BackboneConfig.PRESETS:
        p.error(f"--preset: expected one of {', '.join(sorted(BackboneConfig.PRESETS))}, got {args.preset!r}")
    if args.sass_from is not None:
        try:
            res = json.loads(args.sass_from.read_text(encoding="utf-8"))
            done = add_sass_per_value(res)
        except (OSError, ValueError) as exc:  # a missing or foreign file: one line (JSONDecodeError is a ValueError)
            p.error(f"--sass-from {args.sass_from}: expected a CUDA run's gpu.json: {(str(exc).splitlines() or [repr(exc)])[0]}")
        print(f"bench-gpu: SASS per value set on {done} rows")
        try:
            write_atomic(args.sass_from, json.dumps(res, indent=1, default=str))
            write_atomic(args.sass_from.with_suffix(".md"), markdown(res))
        except OSError as exc:
            p.error(f"--sass-from {args.sass_from}: cannot rewrite it and its .md: {exc}")
        return 0
    if problem := folder_problem("--out", args.out, "a folder for gpu.json and gpu.md"):
        p.error(problem)
    if device.type == "cuda" and not torch.cuda.is_available():
        print("bench-gpu: no CUDA device here (torch.cuda.is_available() is False); nothing measured")
        return 0
    if device.type == "cuda" and device.index is not None and device.index >= torch.cuda.device_count():
        p.error(f"--device {args.device}: expected a CUDA device index below {torch.cuda.device_count()}")
    out_dir = Path(args.out)
    t_start = time.monotonic()
    res: dict[str, Any] = {"command": " ".join(["python bench/bench_gpu.py", *(argv if argv is not None else sys.argv[1:])]),
                           "env": environment(device), "sections": {}}  # fmt: skip

    def save() -> None:
        write_atomic(out_dir / "gpu.json", json.dumps(res, indent=1, default=str))
        write_atomic(out_dir / "gpu.md", markdown(res))

    if device.type == "cuda" and HAS_TRITON and args.precompile_workers > 0 and not args.smoke:
        experts = tuple(sorted({BackboneConfig.preset(p).n_routed_experts for p in (args.preset, "tiny")}))
        res["precompile"] = precompile_kernels(device, precompile_shapes(args.preset), args.precompile_workers,
                                               cap_s=min(PRECOMPILE_CAP_S, 0.25 * args.budget_s),
                                               experts=experts)  # fmt: skip
        print(f"bench-gpu: precompile {res['precompile']}", flush=True)
        save()
    elif device.type == "cuda" and HAS_TRITON and not args.smoke:
        res["precompile"] = {"skipped": "--precompile-workers 0: what is in Triton's cache already (bench/gpu_session.sh "
                                        "precompiles beside its tests), the rest compiles on first use"}
    # the smoke test's sizes: the tiny preset's shapes and model (the full-size one would not fit a CPU's memory)
    shapes_preset = "tiny" if args.smoke else args.preset
    for i, name in enumerate(sections):
        # the budget left after the precompile step and the sections run so far, shared among those to run
        left = args.budget_s - (time.monotonic() - t_start)
        cap = section_cap(sections[i:], left)
        sec: dict[str, Any] = {"cap_s": round(cap, 1)}
        res["sections"][name] = sec
        t0 = time.monotonic()
        print(f"bench-gpu: section {name} (cap {cap:.0f} s of {max(left, 0):.0f} s left)", flush=True)
        if cap <= 1:
            sec["error"] = "no time left in the run's budget"
            save()
            continue
        deadline = Deadline(cap * 0.9)  # sections stop starting new work before the hard cap
        try:
            with time_cap(cap):
                if name == "gemm":
                    extra = ((256, 256),) if args.smoke else EXTRA_SHAPES
                    run_gemm(sec, device, shapes_preset, m_values, extra, deadline, rep_ms=2.0 if args.smoke else 20.0)
                elif name == "moe":
                    run_moe(sec, device, "tiny" if args.smoke else args.preset, (1, 2) if args.smoke else MOE_BATCHES,
                            deadline, rep_ms=2.0 if args.smoke else 20.0)
                elif name == "engine":
                    run_engine(sec, device, (1, 2) if args.smoke else ENGINE_BATCHES, 8 if args.smoke else 32,
                               4 if args.smoke else 32, deadline)
                elif name == "compiled":  # the decoder gives dynamo room for its compiles (graphed.COMPILE_LIMIT)
                    run_engine(sec, device, (1,), 8 if args.smoke else 32, 4 if args.smoke else 31, deadline,
                               modes=("on", "compile"), recipes=("bf16", "fp4"))
                else:
                    run_full(sec, device, shapes_preset, (1, 2) if args.smoke else (1, 16, 64),
                             64 if args.smoke else 8192, 2 if args.smoke else 8, deadline, args.tpot_slo_ms)
        except SectionTimeout as exc:
            sec["error"] = short_error(exc)
        except Exception as exc:  # a failing section leaves the others
            if (timeout := _timeout_in(exc)) is not None:  # the cap, wrapped by a call inside
                sec["error"] = short_error(timeout)
            else:
                sec["error"] = short_error(exc)
                sec["traceback"] = traceback.format_exc(limit=8)
        finally:
            _disarm()  # (time_cap's own exit does it; again here, so no late alarm reaches save())
        sec["seconds"] = round(time.monotonic() - t0, 1)
        save()
    res["total_s"] = round(time.monotonic() - t_start, 1)
    save()
    print(markdown(res))
    print(f"bench-gpu: wrote {out_dir / 'gpu.json'} and {out_dir / 'gpu.md'} in {res['total_s']} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
