"""The load generator: send requests to a streaming backend in closed or open loop and record when
each was meant to start, when it was released, when it left the client and when it was answered,
token by token, all on one clock from one origin.

- Closed loop (`run_closed_loop`): ``concurrency`` workers, each sending its next request as soon as
  its previous one finished, so exactly that many are in flight while requests remain. A request's
  intended start is the moment its worker became free.
- Open loop (`run_open_loop`): requests released at scheduled offsets whatever the backend's state;
  `arrival_times` draws them with gamma-distributed gaps of mean 1/rate and shape ``burstiness``
  (1 = Poisson arrivals, < 1 burstier, > 1 more regular; as ``vllm bench serve``); ``rate=inf`` is a
  burst (every request at 0). A request's intended start is its scheduled offset, so its TTFT and
  E2E latency count whatever delayed it on the client (no coordinated omission, as MLPerf LoadGen
  and wrk2 measure). Open loop never waits on a hidden cap: ``max_concurrency`` (None = no cap, as
  ``vllm bench serve --max-concurrency``) is the only bound, and a point whose requests waited on it
  says so (`PointRun.cap_waits`, a note).

The clock (``clock``, default `time.perf_counter`) is read for every stamp, relative to the point's
start ``t0``: scheduled, released, called and done times, and the backend's token times, which are
seconds since the call (`Backend.agenerate`) on the same clock. A backend that spends time before
the request leaves (encoding media, its own queue) reports it as ``Response.info["client_s"]``; that
moves ``sent_s`` and counts as client-side queueing, reported on its own. A backend that retried a
request times it from the attempt that answered and reports the failed attempts and waits before it
as ``Response.info["retry_s"]`` (`retry_s`); they are added back, so a retried request's latency
still counts from its intended start.

Send precision: the sender sleeps on the loop until ``spin_s`` before the scheduled time (asyncio's
timers wake up to a millisecond late), then spins on the clock; it only releases requests, the
streams are read by their own tasks. Both loops stop releasing at ``max_duration_s`` after the
point's start, wait at most ``drain_s`` more for the requests in flight, then cancel the rest
(recorded as cut off, not as errors), so every point ends by itself; requests of a list that were
never sent are counted (`PointRun.n_unsent`) and noted.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from typing import Awaitable, Callable, Iterator, Sequence

import numpy as np

from evalsuite.serving.metrics import Timing
from evalsuite.types import Request, Response, one_line

Send = Callable[[Request], Awaitable[Response]]
Clock = Callable[[], float]
SPIN_S = 0.001


def retry_s(response: Response) -> float:
    """Seconds a backend spent on a request's failed attempts and the waits between them, which its
    token times leave out (``info["retry_s"]``; 0 when it did not retry)."""
    v = response.info.get("retry_s") if isinstance(response.info, dict) else None
    return float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) and v > 0 else 0.0


def arrival_times(n: int, rate: float, burstiness: float = 1.0, seed: int = 0, exact: bool = False) -> list[float]:
    """Send offsets (seconds) of ``n`` requests at ``rate`` requests/s on average: the first at 0,
    then gaps drawn from Gamma(shape=burstiness, scale=1/(rate·burstiness)); all 0 when rate is inf.

    ``exact``: the gaps are then scaled so that the n arrivals span exactly (n − 1) / rate, i.e. the
    schedule offers ``rate`` itself rather than a draw around it (16 Poisson arrivals realise a rate
    within ±25% of the asked one only two times in three): the point's figures are at the rate it
    names. Scaled gaps keep their relative spread (Poisson arrivals given their count and span)."""
    if n < 0:
        raise ValueError(f"request count must be >= 0, got {n}")
    if not rate > 0:
        raise ValueError(f"rate must be > 0 requests/s, got {rate}")
    if not 0 < burstiness < np.inf:  # inf makes every gap NaN and the sender never returns
        raise ValueError(f"burstiness must be a finite number > 0, got {burstiness}")
    if n == 0:
        return []
    if np.isinf(rate):
        return [0.0] * n
    gaps = np.random.default_rng(seed).gamma(burstiness, 1.0 / (rate * burstiness), size=n - 1)
    if exact and n > 1 and gaps.sum() > 0:
        gaps *= (n - 1) / rate / gaps.sum()
    return [0.0] + np.cumsum(gaps).tolist()


@dataclass
class Record:
    """One request of a load point; every time is seconds since the point started, on one clock.

    ``start_s`` is the intended start (the schedule in open loop, the worker's free moment in closed
    loop); ``released_s`` when the load generator let it go (its precision: ``send_lag_s``);
    ``called_s`` when the backend was called (after a declared cap, if it waited on one);
    ``sent_s`` when it left the client (``called_s`` + the backend's own client time); ``done_s`` when
    its last byte arrived, or it failed."""

    request: Request
    scheduled_s: float | None = None  # open loop only
    start_s: float | None = None
    released_s: float | None = None
    called_s: float | None = None
    sent_s: float | None = None
    done_s: float | None = None
    response: Response | None = None
    error: str | None = None
    cancelled: bool = False  # cut off by the point's time bound
    waited_on_cap: bool = False

    @property
    def ok(self) -> bool:
        return self.response is not None and self.error is None and not self.cancelled

    @property
    def send_lag_s(self) -> float | None:
        """Released − scheduled: the open-loop sender's own timing error."""
        if self.scheduled_s is None or self.released_s is None:
            return None
        return self.released_s - self.scheduled_s

    @property
    def queue_s(self) -> float | None:
        """Client-side queueing: intended start → the request left the client."""
        if self.start_s is None or self.sent_s is None:
            return None
        return self.sent_s - self.start_s

    def timing(self) -> Timing:
        status = "ok" if self.ok else "cancelled" if self.cancelled else "failed"
        start = self.start_s or 0.0
        r = self.response
        if status != "ok" or r is None or not r.token_times or self.called_s is None:
            return Timing((), 0, start_s=start, sent_s=self.sent_s, done_s=self.done_s,
                          status="failed" if status == "ok" else status)
        # token times: since the call (less the backend's failed attempts) → since the intended start
        shift = self.called_s - start + retry_s(r)
        times = tuple(shift + float(t) for t in r.token_times)
        end = max(times[-1], shift + float(r.e2e_s)) if r.e2e_s is not None else times[-1]
        counted = r.output_tokens is not None and r.info.get("token_count_source") != "chunks"
        return Timing(times, int(r.output_tokens if r.output_tokens is not None else len(times)), start_s=start,
                      sent_s=self.sent_s, done_s=start + end, queue_s=self.queue_s,
                      prompt_tokens=r.prompt_tokens, end_s=end, tokens_counted=counted)


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
    max_concurrency: int | None = None  # open loop: the declared client cap (None: none)
    max_duration_s: float = 0.0
    notes: list[str] = field(default_factory=list)
    origin_unix: float = 0.0  # wall-clock time of the origin, read once: absolute stamps = origin + offset
    n_unsent: int = 0  # requests of a given list left unsent at the time bound (an endless source: 0)

    @property
    def timings(self) -> list[Timing]:
        return [r.timing() for r in self.records if r.start_s is not None]

    @property
    def n_cancelled(self) -> int:
        return sum(1 for r in self.records if r.cancelled)

    @property
    def n_errors(self) -> int:
        return sum(1 for r in self.records if r.error is not None)

    @property
    def cap_waits(self) -> int:
        return sum(1 for r in self.records if r.waited_on_cap)


async def _send(send: Send, rec: Record, clock: Clock, t0: float, cap: asyncio.Semaphore | None = None) -> None:
    try:
        if cap is not None:
            rec.waited_on_cap = cap.locked()
            await cap.acquire()
        try:
            rec.called_s = rec.sent_s = clock() - t0
            if rec.start_s is None:  # closed loop: the call is the intended start
                rec.start_s = rec.released_s = rec.called_s
            rec.response = await send(rec.request)
            client_s = rec.response.info.get("client_s") if isinstance(rec.response.info, dict) else None
            if isinstance(client_s, (int, float)) and client_s > 0:
                rec.sent_s = rec.called_s + float(client_s)
            if not rec.response.token_times:
                rec.error = "the backend returned no token timings (it does not stream)"
        finally:
            if cap is not None:
                cap.release()
    except asyncio.CancelledError:
        rec.cancelled = True
        rec.done_s = clock() - t0  # the cut: it ends the point's duration and its time in flight
        raise
    except Exception as e:  # one failing request must not stop the point
        rec.error = one_line(e)
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


async def wait_until(target: float, clock: Clock, spin_s: float = SPIN_S) -> None:
    """Return at clock reading ``target``: sleep on the loop until ``spin_s`` before it, then spin."""
    while True:
        left = target - clock()
        if left <= spin_s:
            break
        await asyncio.sleep(left - spin_s)
    while clock() < target:
        pass


async def run_closed_loop(send: Send, requests: Sequence[Request], concurrency: int, *, max_duration_s: float,
                          drain_s: float, clock: Clock = time.perf_counter) -> PointRun:
    """Send ``requests`` in order through ``concurrency`` workers (see the module docstring)."""
    if concurrency < 1:
        raise ValueError(f"concurrency must be >= 1, got {concurrency}")
    records: list[Record] = []
    queue: Iterator[Request] = iter(requests)
    t0, origin_unix = clock(), time.time()
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
    run = PointRun("closed", records, t0, clock(), concurrency=concurrency, max_duration_s=max_duration_s,
                   origin_unix=origin_unix)
    if isinstance(requests, Sequence) and len(records) < len(requests):  # a list ran out of time, not of requests
        run.n_unsent = len(requests) - len(records)
        run.notes.append(f"only {len(records)} of the {len(requests)} requests planned were sent: sending stopped at "
                         f"the point's time bound ({max_duration_s:g} s)")
    if run.n_cancelled:
        run.notes.append(f"{run.n_cancelled} requests cut off at the point's time bound")
    return run


async def run_open_loop(send: Send, requests: Sequence[Request], offsets: Sequence[float], *, max_duration_s: float,
                        drain_s: float, rate: float | None = None, burstiness: float | None = None,
                        max_concurrency: int | None = None, clock: Clock = time.perf_counter,
                        spin_s: float = SPIN_S) -> PointRun:
    """Release ``requests[i]`` at ``offsets[i]`` seconds after the start (see the module docstring)."""
    if len(offsets) != len(requests):
        raise ValueError(f"{len(requests)} requests but {len(offsets)} send offsets")
    if max_concurrency is not None and max_concurrency < 1:
        raise ValueError(f"max_concurrency must be >= 1 or None, got {max_concurrency}")
    cap = asyncio.Semaphore(max_concurrency) if max_concurrency is not None else None
    records: list[Record] = []
    tasks: list[asyncio.Task] = []
    t0, origin_unix = clock(), time.time()
    for req, at in zip(requests, offsets):
        if at >= max_duration_s:
            break
        await wait_until(t0 + at, clock, spin_s)
        rec = Record(req, scheduled_s=float(at), start_s=float(at), released_s=clock() - t0)
        records.append(rec)
        tasks.append(asyncio.ensure_future(_send(send, rec, clock, t0, cap)))
    await _drain(tasks, t0 + max_duration_s + drain_s, clock)
    run = PointRun("open", records, t0, clock(), rate=rate, burstiness=burstiness, max_concurrency=max_concurrency,
                   max_duration_s=max_duration_s, origin_unix=origin_unix)
    if len(records) < len(requests):
        late = run.n_unsent = len(requests) - len(records)
        run.notes.append(f"{late} scheduled requests fell after the time bound and were not sent")
    if run.cap_waits:
        run.notes.append(f"{run.cap_waits} of {len(records)} requests waited on max_concurrency={max_concurrency} "
                         "(their latency counts the wait, from the intended start)")
    if run.n_cancelled:
        run.notes.append(f"{run.n_cancelled} requests cut off at the point's time bound")
    return run
