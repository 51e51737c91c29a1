"""Training examples per second, per source: today's pool path (cold: the item generated into its
media file, then decoded; warm: the pool's media already made) against the fresh sources, which draw
a new train item per example in memory (`evalsuite.training.sources.FRESH_SOURCES`).

    python bench/bench_training_data.py [--n 12] [--workers 2] [--write]

One torch thread per process (data making is not what intra-op threads help). Cold = one example per
new item (what unbounded fresh data costs through files); warm = examples drawn from a pool whose
files exist (videoqa: decoded clips kept in memory, as `Pools` does). ``--workers``: the fresh
sources' rate with that many processes making examples in parallel. ``--write`` puts the table in
BENCHMARKS.md ("Training data").
"""

from __future__ import annotations

import argparse
import os
import random
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_gpu import positive_int  # noqa: E402  (the bench scripts' shared option type)

TASKS = ("videoqa", "docqa", "gui")
_POOLS = None


def _pools():
    global _POOLS
    if _POOLS is None:
        import torch

        from evalsuite.model.omni import build_omni
        from evalsuite.training.sources import Pools

        torch.set_num_threads(1)
        _POOLS = Pools(build_omni("tiny").config)
    return _POOLS


def _fresh(args: tuple[str, int]) -> int:
    from evalsuite.training.sources import make_example

    source, i = args
    make_example(_pools(), source, random.Random(f"bench:{i}"))
    return i


def rate(fn, n: int) -> float:
    t = time.perf_counter()
    for i in range(n):
        fn(i)
    return n / (time.perf_counter() - t)


def measure(n: int, workers: int) -> list[tuple[str, float, float, float, float]]:
    import torch

    from evalsuite.model.omni import build_omni
    from evalsuite.training.sources import Pools, make_example, media_key

    torch.set_num_threads(1)
    cfg = build_omni("tiny").config
    rows = []
    for task in TASKS:
        with tempfile.TemporaryDirectory() as cache:
            os.environ["EVALSUITE_CACHE"] = cache
            per_item = 8 if task == "videoqa" else 4  # questions per item, about
            pools = Pools(cfg, {task: n * per_item})
            t = time.perf_counter()
            samples = pools.samples(task)  # generates every item's media file
            items = {media_key(s): s for s in samples}
            for s in items.values():
                pools.media(task, s)  # read once (videoqa keeps the decoded clip)
            cold = len(items) / (time.perf_counter() - t)
            warm = rate(lambda i: make_example(pools, task, random.Random(i)), 4 * n)
            os.environ.pop("EVALSUITE_CACHE")
        fresh_pools = Pools(cfg)
        make_example(fresh_pools, f"{task}-fresh", random.Random(-1))  # imports, fonts
        fresh = rate(lambda i: make_example(fresh_pools, f"{task}-fresh", random.Random(i)), n)
        par = fresh  # one process: the rate just measured
        if workers > 1:
            with ProcessPoolExecutor(workers) as ex:
                list(ex.map(_fresh, [(f"{task}-fresh", -1 - w) for w in range(workers)]))  # warm the workers
                t = time.perf_counter()
                list(ex.map(_fresh, [(f"{task}-fresh", i) for i in range(2 * n)]))
                par = 2 * n / (time.perf_counter() - t)
        rows.append((task, cold, warm, fresh, par))
        print(f"{task}: cold {cold:.1f}/s, warm {warm:.1f}/s, fresh {fresh:.1f}/s, fresh x{workers} {par:.1f}/s",
              file=sys.stderr)
    return rows


def table(rows, workers: int) -> str:
    lines = [f"| source | pool, cold (ex/s) | pool, warm (ex/s) | fresh, 1 process (ex/s) | fresh, {workers} processes "
             "(ex/s) | fresh ×{w} vs cold |".replace("{w}", str(workers)),
             "|---|---:|---:|---:|---:|---:|"]
    for task, cold, warm, fresh, par in rows:
        lines.append(f"| {task} / {task}-fresh | {cold:.1f} | {warm:.0f} | {fresh:.1f} | {par:.1f} | {par / cold:.1f}× |")
    return "\n".join(lines)



def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python bench/bench_training_data.py", description=__doc__.split("\n")[0])
    p.add_argument("--n", type=positive_int, default=12, help="items per measurement")
    p.add_argument("--workers", type=positive_int, default=2)
    p.add_argument("--write", action="store_true")
    a = p.parse_args(argv)
    rows = measure(a.n, a.workers)
    body = table(rows, a.workers)
    print(body)
    if a.write:
        from bench.report import ROOT, device_line, update

        load = os.getloadavg()[0]
        update(ROOT / "BENCHMARKS.md", "Training data",
               f"Training examples per second per source, {time.strftime('%Y-%m-%d')}, {device_line()}, one torch "
               f"thread per process; load average {load:.1f} on {os.cpu_count()} cores at the end of the run (where "
               f"other jobs share the cores, the rates are lower bounds). Command: `python bench/bench_training_data.py "
               f"--n {a.n} --workers {a.workers} --write`. Cold: one example per new item through its media file "
               f"(generated, written, read back; videoqa: H.264 encode + decode); warm: drawn from a pool whose "
               f"media exist (videoqa's decoded clips in memory, so only the pool's memorisable ~360 videos); fresh: "
               f"a new train item per example drawn in memory (`evalsuite.training.sources.FRESH_SOURCES`).\n\n"
               + body)


if __name__ == "__main__":
    main()
