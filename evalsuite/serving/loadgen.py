"""The load generator: send requests to a streaming backend in closed or open loop and record when
each was scheduled, sent and answered, token by token.

- Closed loop (`run_closed_loop`): ``concurrency`` workers, each sending its next request as soon as
  its previous one finished, so exactly that many are in flight while requests remain.
- Open loop (`run_open_loop`): requests sent at scheduled offsets whatever the backend's state;
  `arrival_times` draws them with gamma-distributed gaps of mean 1/rate and shape ``burstiness``
  (1 = Poisson arrivals, < 1 burstier, > 1 more regular; as ``vllm bench serve``).

Both stop sending at ``max_duration_s`` after the point's start, wait at most ``drain_s`` more for
the requests in flight, then cancel the rest (recorded as cut off, not as errors), so every point
ends by itself. ``send(request)`` is an awaitable returning the backend's :class:`Response` whose
``token_times`` are seconds since the call (`Backend.agenerate`). Every record keeps the scheduled and
the actual send time, so the generator's own timing accuracy is part of the results.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from typing import Awaitable, Callable, Iterator, Sequence

import numpy as np

from evalsuite.serving.metrics import Timing
from evalsuite.types import Request, Response

Send = Callable[[Request], Awaitable[Response]]
Clock = Callable[[], float]


def arrival_times(n: int, rate: float, burstiness: float = 1.0, seed: int = 0) -> list[float]:
    """Send offsets (seconds) of ``n`` requests at ``rate`` requests/s on average: the first at 0,
    then gaps drawn from Gamma(shape=burstiness, scale=1/(rate·burstiness)); all 0 when rate is inf."""
    if n < 0:
        raise ValueError(f"request count must be >= 0, got {n}")
    if not rate > 0:
        raise ValueError(f"rate must be > 0 requests/s, got {rate}")
    if not burstiness > 0:
        raise ValueError(f"burstiness must be > 0, got {burstiness}")
    if n == 0:
        return []
    if np.isinf(rate):
        return [0.0] * n
    gaps = np.random.default_rng(seed).gamma(burstiness, 1.0 / (rate * burstiness), size=n - 1)
    return [0.0] + np.cumsum(gaps).tolist()


@dataclass
class Record:
    """One request of a load point: times are seconds since the point started."""

    request: Request
    scheduled_s: float | None = None  # open loop: when the schedule meant to send it
    sent_s: float | None = None
    done_s: float | None = None
    response: Response | None = None
    error: str | None = None
    cancelled: bool = False  # cut off by the point's time bound

    @property
    def ok(self) -> bool:
        return self.response is not None and self.error is None and not self.cancelled

    @property
    def send_lag_s(self) -> float | None:
        if self.scheduled_s is None or self.sent_s is None:
            return None
        return self.sent_s - self.scheduled_s

    def timing(self) -> Timing:
        r = self.response
        if not self.ok or r is None or not r.token_times:
            return Timing((), 0, sent_s=self.sent_s or 0.0, ok=False)
        times = tuple(float(t) for t in r.token_times)
        return Timing(times, int(r.output_tokens if r.output_tokens is not None else len(times)),
                      sent_s=self.sent_s or 0.0)


@dataclass
class PointRun:
    """What one load point sent and got back; ``started``/``ended`` are clock readings."""

    kind: str  # "closed" | "open"
    records: list[Record]
    started: float
    ended: float
    concurrency: int | None = None
    rate: float | None = None
    burstiness: float | None = None
    max_duration_s: float = 0.0
    notes: list[str] = field(default_factory=list)

    @property
    def timings(self) -> list[Timing]:
        return [r.timing() for r in self.records if r.sent_s is not None]

    @property
    def n_cancelled(self) -> int:
        return sum(1 for r in self.records if r.cancelled)

    @property
    def n_errors(self) -> int:
        return sum(1 for r in self.records if r.error is not None)


def _one_line(e: BaseException) -> str:
    msg = str(e).strip().splitlines()[0] if str(e).strip() else ""
    return f"{type(e).__name__}: {msg}" if msg else type(e).__name__


async def _send(send: Send, rec: Record, clock: Clock, t0: float) -> None:
    rec.sent_s = clock() - t0
    try:
        rec.response = await send(rec.request)
        if not rec.response.token_times:
            rec.error = "the backend returned no token timings (it does not stream)"
    except asyncio.CancelledError:
        rec.cancelled = True
        raise
    except Exception as e:  # one failing request must not stop the point
        rec.error = _one_line(e)
    rec.done_s = clock() - t0


async def _drain(tasks: Sequence[asyncio.Task], deadline: float, clock: Clock) -> None:
    """Wait for ``tasks`` until the clock reaches ``deadline``, then cancel what is left."""
    pending = {t for t in tasks if not t.done()}
    if pending:
        _, pending = await asyncio.wait(pending, timeout=max(0.0, deadline - clock()))
    for t in pending:
        t.cancel()
    if pending:
        await asyncio.gather(*pending, return_exceptions=True)


async def run_closed_loop(send: Send, requests: Sequence[Request], concurrency: int, *, max_duration_s: float,
                          drain_s: float, clock: Clock = time.perf_counter) -> PointRun:
    """Send ``requests`` in order through ``concurrency`` workers (see the module docstring)."""
    if concurrency < 1:
        raise ValueError(f"concurrency must be >= 1, got {concurrency}")
    records: list[Record] = []
    queue: Iterator[Request] = iter(requests)
    t0 = clock()
    stop_at = t0 + max_duration_s

    async def worker() -> None:
        for req in queue:
            if clock() >= stop_at:
                return
            rec = Record(req)
            records.append(rec)
            await _send(send, rec, clock, t0)

    workers = [asyncio.ensure_future(worker()) for _ in range(concurrency)]
    await _drain(workers, stop_at + drain_s, clock)
    run = PointRun("closed", records, t0, clock(), concurrency=concurrency, max_duration_s=max_duration_s)
    if run.n_cancelled:
        run.notes.append(f"{run.n_cancelled} requests cut off at the point's time bound")
    return run


async def run_open_loop(send: Send, requests: Sequence[Request], offsets: Sequence[float], *, max_duration_s: float,
                        drain_s: float, rate: float | None = None, burstiness: float | None = None,
                        clock: Clock = time.perf_counter) -> PointRun:
    """Send ``requests[i]`` at ``offsets[i]`` seconds after the start (see the module docstring)."""
    if len(offsets) != len(requests):
        raise ValueError(f"{len(requests)} requests but {len(offsets)} send offsets")
    records: list[Record] = []
    tasks: list[asyncio.Task] = []
    t0 = clock()
    for req, at in zip(requests, offsets):
        if at >= max_duration_s:
            break
        wait = t0 + at - clock()
        if wait > 0:
            await asyncio.sleep(wait)
        rec = Record(req, scheduled_s=float(at))
        records.append(rec)
        tasks.append(asyncio.ensure_future(_send(send, rec, clock, t0)))
    await _drain(tasks, t0 + max_duration_s + drain_s, clock)
    run = PointRun("open", records, t0, clock(), rate=rate, burstiness=burstiness, max_duration_s=max_duration_s)
    if len(records) < len(requests):
        late = len(requests) - len(records)
        run.notes.append(f"{late} scheduled requests fell after the time bound and were not sent")
    if run.n_cancelled:
        run.notes.append(f"{run.n_cancelled} requests cut off at the point's time bound")
    return run
