"""Decode speed of the reference engine per precision recipe on this machine's CPU.

    python bench/bench_engine.py [--recipes bf16,fp8,fp4,fp4-all] [--repeats 3] [--cpu-time] [--cuda-graphs auto|on|off] [--compile-step]

The tiny omni model with its seed-0 weights (untrained: speed does not depend on the weights), a
106-token prompt, 64 output tokens (no stop token), batch 1 and 8 through
`ReferenceBackend(recipe, batch_size=8).engine.generate`; best of ``--repeats``, all recipes in one
process so their ratios share the machine's state. Prints a markdown table with each recipe's ratio
to the first recipe of ``--recipes`` (bf16 by default), which the header names. ``--cpu-time`` times in this process's CPU seconds with one thread instead
of wall time with torch's default threads: on a machine shared with other jobs, wall time measures
their load as much as the engine. ``--cuda-graphs on`` decodes through the engine's static-buffer
step (on a CPU run eagerly: nothing is captured), ``off`` through the eager step; ``auto`` (default)
is the eager step on a CPU. ``--compile-step`` runs that static step through `torch.compile` (the
warm-up then generates every batch's full length once, so that every step shape is compiled before
the timed runs; compiling takes minutes on two cores).
"""

from __future__ import annotations

import os
import platform
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_gpu import _Parser, one_of, positive_int  # noqa: E402  (one option parser for the bench scripts)


def measure(recipe: str, repeats: int, batches: tuple[int, ...] = (1, 8), clock=time.perf_counter,
            cuda_graphs: str = "auto", compile_step: bool = False) -> dict[int, float]:
    from evalsuite.backends.reference import ReferenceBackend
    from evalsuite.model.engine import SamplingParams

    engine = ReferenceBackend(recipe, batch_size=max(batches), cuda_graphs=cuda_graphs,
                              compile_step=compile_step).engine
    prompt = torch.arange(1, 107)
    params = SamplingParams(max_tokens=64, stop_token_ids=())
    engine.generate([prompt], SamplingParams(max_tokens=4, stop_token_ids=()))  # warm-up
    if compile_step:
        for b in batches:  # every (batch bucket, KV window) the timed runs step through, compiled here
            engine.generate([prompt] * b, params)
    out = {}
    for b in batches:
        best = min(_timed(lambda: engine.generate([prompt] * b, params), clock) for _ in range(repeats))
        out[b] = 64 * b / best
    return out


def _timed(fn, clock=time.perf_counter) -> float:
    t = clock()
    fn()
    return clock() - t


def main(argv: list[str] | None = None) -> int:
    from evalsuite.kernels import recipes

    p = _Parser(prog="python bench/bench_engine.py", description=__doc__.splitlines()[0])
    p.add_argument("--recipes", type=one_of(recipes.names(), "recipes"), default="bf16,fp8,fp4,fp4-all",
                   help="comma-separated; the ratios are to the first")
    p.add_argument("--repeats", type=positive_int, default=3, help="timed runs per batch, the best kept (>= 1)")
    p.add_argument("--cpu-time", action="store_true", help="CPU seconds of this process, one thread")
    p.add_argument("--cuda-graphs", choices=("auto", "on", "off"), default="auto")
    p.add_argument("--compile-step", action="store_true", help="the static decode step through torch.compile")
    args = p.parse_args(argv)
    clock = time.perf_counter
    if args.cpu_time:
        torch.set_num_threads(1)
        clock = time.process_time
    os.environ.setdefault("EVALSUITE_CHECKPOINT", "random")
    from evalsuite.env import cpu_name

    rows = {r: measure(r, args.repeats, clock=clock, cuda_graphs=args.cuda_graphs, compile_step=args.compile_step)
            for r in args.recipes}
    base_name, base = next(iter(rows.items()))  # the ratios' denominator: the first recipe asked for
    print(f"Device: CPU only: {cpu_name() or platform.processor()} ({os.cpu_count()} cores), "
          f"torch {torch.__version__}, {torch.get_num_threads()} threads"
          f"{', CPU time' if args.cpu_time else ''}, cuda_graphs={args.cuda_graphs}"
          f"{', compiled decode step' if args.compile_step else ''}.\n")
    print(f"| recipe | tokens/s batch 1 | tokens/s batch 8 | batch 1 vs {base_name} | batch 8 vs {base_name} |")
    print("|---|---:|---:|---:|---:|")
    for r, v in rows.items():
        print(f"| {r} | {v[1]:,.0f} | {v[8]:,.0f} | {v[1] / base[1]:.2f} | {v[8] / base[8]:.2f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
