"""Examples made ahead of the loop by worker processes: the same examples, sooner.

`StepFeed` hands the loop the examples of each step, `sources.step_examples` exactly (each example is
a pure function of (seed, stage index, step, its place in the batch), so which process makes it does
not matter and a resumed run takes the same steps); with ``workers`` > 0 the examples of the next
``ahead`` steps are made in that many processes while the current step trains. Media tensors travel
between processes as numpy arrays (by value, no shared-memory handles to leak).
"""

from __future__ import annotations

import dataclasses
import multiprocessing
import random
from concurrent.futures import Future, ProcessPoolExecutor
from typing import Any

from evalsuite.training.curriculum import step_sources
from evalsuite.training.sources import Example, Pools, make_example, step_examples

_WORKER_POOLS: Pools | None = None


def _init_worker(model_cfg: Any, pool_sizes: dict[str, int]) -> None:
    import signal

    import torch

    global _WORKER_POOLS
    # Ctrl-C reaches the whole process group: the loop's process answers it (one line) and closes the
    # pool. A worker stops its example at once but quietly (a KeyboardInterrupt would print a traceback
    # of its own; ignoring the signal would keep the pool's shutdown waiting for the example)
    signal.signal(signal.SIGINT, _stop_quietly)
    torch.set_num_threads(1)  # one process per core: intra-op threads would only contend
    _WORKER_POOLS = Pools(model_cfg, pool_sizes)


def _stop_quietly(signum: int, frame: Any) -> None:
    raise SystemExit(128 + signum)


def _pack(ex: Example) -> Example:
    media = [dataclasses.replace(m, pixels=m.pixels.numpy()) for m in ex.media]
    targets = None if ex.targets is None else ex.targets.numpy()
    return dataclasses.replace(ex, media=media, targets=targets)


def _unpack(ex: Example) -> Example:
    import torch

    media = [dataclasses.replace(m, pixels=torch.from_numpy(m.pixels)) for m in ex.media]
    targets = None if ex.targets is None else torch.from_numpy(ex.targets)
    return dataclasses.replace(ex, media=media, targets=targets)


def _make(source: str, key: str) -> Example:
    assert _WORKER_POOLS is not None
    return _pack(make_example(_WORKER_POOLS, source, random.Random(key)))


class StepFeed:
    """The examples of each step, made ``ahead`` steps early by ``workers`` processes (0: in the
    loop's own process, as `step_examples`)."""

    def __init__(self, pools: Pools, seed: int, batch: int, workers: int = 0, ahead: int = 2) -> None:
        self.pools, self.seed, self.batch, self.ahead = pools, seed, batch, ahead
        self.pending: dict[tuple[int, int], list[Future]] = {}
        self.executor = None
        if workers > 0:
            self.executor = ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"),
                                                initializer=_init_worker, initargs=(pools.cfg, pools.sizes))

    def _submit(self, k: int, step: int, stage: str, total: int) -> None:
        assert self.executor is not None
        sources = step_sources(self.seed, k, step, stage, total, self.batch)
        self.pending[(k, step)] = [self.executor.submit(_make, src, f"example:{self.seed}:{k}:{step}:{i}")
                                   for i, src in enumerate(sources)]

    def step(self, k: int, step: int, stage: str, total: int) -> list[Example]:
        """The examples of step ``step`` of stage ``stage`` (index ``k``, ``total`` steps)."""
        if self.executor is None:
            return step_examples(self.pools, self.seed, k, step, stage, total, self.batch)
        for s in range(step, min(total, step + 1 + self.ahead)):
            if (k, s) not in self.pending:
                self._submit(k, s, stage, total)
        for key in [key for key in self.pending if key[0] != k or key[1] < step]:
            for f in self.pending.pop(key):  # another stage's or a skipped step's: not needed
                f.cancel()
        return [_unpack(f.result()) for f in self.pending.pop((k, step))]

    def close(self) -> None:
        if self.executor is not None:
            for futures in self.pending.values():
                for f in futures:
                    f.cancel()
            self.executor.shutdown(wait=True, cancel_futures=True)
            self.executor = None
            self.pending.clear()

    def __enter__(self) -> "StepFeed":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()
