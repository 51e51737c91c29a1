"""The load generator on a virtual clock: arrival schedules, closed-loop figures equal to the analytic
ones, open loop above capacity (throughput bounded by the server, latency from the intended start),
a declared client cap that reports itself, failures counted, and the send timer's spin."""

from __future__ import annotations

import asyncio
import selectors
from typing import Any, Awaitable, Callable

import numpy as np
import pytest

from evalsuite.serving.loadgen import arrival_times, run_closed_loop, run_open_loop, wait_until
from evalsuite.serving.metrics import point_metrics
from evalsuite.types import Request, Response, user

EXACT = dict(rel=1e-9, abs=1e-9)


class _AdvancingSelector(selectors.SelectSelector):
    """Never sleeps: when nothing is ready it moves the loop's clock to the next timer instead."""

    def __init__(self, loop: "VirtualTimeLoop") -> None:
        super().__init__()
        self._vloop = loop

    def select(self, timeout: float | None = None) -> list:
        ready = super().select(0)
        if not ready and timeout is not None and timeout > 0:
            self._vloop.now += timeout
        return ready


class VirtualTimeLoop(asyncio.SelectorEventLoop):
    """An event loop whose time is virtual: sleeps take no wall time, so figures are exact."""

    def __init__(self) -> None:
        self.now = 0.0
        super().__init__(_AdvancingSelector(self))

    def time(self) -> float:
        return self.now


def vrun(make: Callable[[Callable[[], float]], Awaitable[Any]]) -> Any:
    """Run ``make(clock)`` on a virtual-time loop; ``clock`` is that loop's time."""
    with asyncio.Runner(loop_factory=VirtualTimeLoop) as runner:
        loop = runner.get_loop()
        return runner.run(make(loop.time))


class SlotServer:
    """A server with ``slots`` that serve FIFO; a request holds one for ``prefill`` + (tokens − 1) ×
    ``per_token`` seconds, its tokens at ``prefill + k·per_token`` after it got the slot. Token times
    are seconds since the call, as `Backend.agenerate` reports them."""

    def __init__(self, clock: Callable[[], float], slots: int, prefill: float = 0.1, per_token: float = 0.01,
                 tokens: int = 5, fail: str | None = None) -> None:
        self.clock, self.slots = clock, slots
        self.prefill, self.per_token, self.tokens, self.fail = prefill, per_token, tokens, fail
        self.sem = asyncio.Semaphore(slots)
        self.running = self.max_running = 0
        self.begun: dict[str, float] = {}

    @property
    def service_s(self) -> float:
        return self.prefill + (self.tokens - 1) * self.per_token

    async def send(self, req: Request) -> Response:
        t_call = self.clock()
        if self.fail and self.fail in req.sample_id:
            await asyncio.sleep(0.001)
            raise RuntimeError("HTTP 429: too many requests")
        async with self.sem:
            begin = self.begun[req.sample_id] = self.clock()
            self.running += 1
            self.max_running = max(self.max_running, self.running)
            times = []
            try:
                for k in range(self.tokens):
                    await asyncio.sleep(begin + self.prefill + k * self.per_token - self.clock())
                    times.append(self.clock() - t_call)
            finally:
                self.running -= 1
        return Response(text="x" * self.tokens, prompt_tokens=7, output_tokens=self.tokens, token_times=times)


def reqs(n: int) -> list[Request]:
    return [Request(sample_id=f"r{i}", messages=[user(f"q{i}")], max_tokens=4) for i in range(n)]


def test_arrival_times_are_seeded_gamma_gaps() -> None:
    a = arrival_times(4001, rate=5.0, burstiness=1.0, seed=3)
    assert a[0] == 0.0 and a == arrival_times(4001, rate=5.0, burstiness=1.0, seed=3)
    gaps = np.diff(a)
    print("mean gap", gaps.mean(), "cv^2", gaps.var() / gaps.mean() ** 2)
    assert gaps.mean() == pytest.approx(0.2, rel=0.05)  # 1 / rate
    assert gaps.var() / gaps.mean() ** 2 == pytest.approx(1.0, rel=0.1)  # Poisson: CV^2 = 1
    bursty = np.diff(arrival_times(4001, rate=5.0, burstiness=0.25, seed=3))
    assert bursty.mean() == pytest.approx(0.2, rel=0.1)
    assert bursty.var() / bursty.mean() ** 2 == pytest.approx(4.0, rel=0.15)  # gamma: CV^2 = 1 / shape
    assert arrival_times(3, float("inf")) == [0.0, 0.0, 0.0]
    with pytest.raises(ValueError, match="rate must be > 0"):
        arrival_times(3, 0.0)


@pytest.mark.parametrize("c, slots", [(2, 4), (8, 4)])
def test_closed_loop_figures_equal_the_analytic_ones(c: int, slots: int) -> None:
    """c workers, 4c requests: waves of min(c, slots) requests of D = 0.14 s each."""
    async def go(clock):
        srv = SlotServer(clock, slots)
        return srv, await run_closed_loop(srv.send, reqs(4 * c), c, max_duration_s=60, drain_s=60, clock=clock)

    srv, run = vrun(go)
    d = srv.service_s
    waves = 4 * c // min(c, slots)
    p = point_metrics(run.timings, concurrency=c)
    print(p)
    assert srv.max_running == min(c, slots) and all(r.ok for r in run.records)
    assert p["duration_s"] == pytest.approx(waves * d, **EXACT)
    assert p["output_tokens_per_s"] == pytest.approx(4 * c * 5 / (waves * d), **EXACT)
    assert p["requests_per_s"] == pytest.approx(4 * c / (waves * d), **EXACT)
    assert p["input_tokens_per_s"] == pytest.approx(4 * c * 7 / (waves * d), **EXACT)
    assert p["tpot_s"]["max"] == pytest.approx(0.01, **EXACT) and p["itl_s"]["min"] == pytest.approx(0.01, **EXACT)
    if c <= slots:  # no server queue: TTFT is the prefill, E2E the service time; c in flight throughout
        assert (p["ttft_s"]["max"], p["e2el_s"]["p99"]) == (pytest.approx(0.1, **EXACT), pytest.approx(d, **EXACT))
        assert p["mean_in_flight"] == pytest.approx(c, **EXACT)
    else:  # all but the first `slots` requests wait one service time for a slot (E2E 2D)
        assert p["ttft_s"]["min"] == pytest.approx(0.1, **EXACT)
        assert p["ttft_s"]["max"] == pytest.approx(0.1 + d, **EXACT)
        waiting = 4 * c - slots
        assert p["ttft_s"]["mean"] == pytest.approx(0.1 + d * waiting / (4 * c), **EXACT)
        # Little's law on one clock: Σ E2E / duration = (slots·D + waiting·2D) / (waves·D)
        assert p["mean_in_flight"] == pytest.approx((slots + 2 * waiting) / waves, **EXACT)
    assert all(r.queue_s == 0.0 for r in run.records)  # nothing waited on the client


def test_open_loop_above_capacity_is_bounded_by_the_server_and_timed_from_the_intended_start() -> None:
    """40 req/s at a server that serves 2 / 0.14 s = 14.3 req/s: throughput stays at capacity and
    each TTFT counts the wait since its scheduled send, as the FIFO recurrence predicts."""
    rate, n = 40.0, 20
    offsets = [k / rate for k in range(n)]

    async def go(clock):
        srv = SlotServer(clock, slots=2)
        run = await run_open_loop(srv.send, reqs(n), offsets, max_duration_s=60, drain_s=60, rate=rate, clock=clock,
                                  spin_s=0.0)
        return srv, run

    srv, run = vrun(go)
    d = srv.service_s
    begin: list[float] = []
    for k, a in enumerate(offsets):
        begin.append(max(a, begin[k - 2] + d) if k >= 2 else a)
    p = point_metrics(run.timings)
    capacity_tps = 2 * 5 / d
    print(p["output_tokens_per_s"], capacity_tps, p["ttft_s"])
    assert p["output_tokens_per_s"] <= capacity_tps * (1 + 1e-9)
    assert p["output_tokens_per_s"] == pytest.approx(n * 5 / (begin[-1] + d), **EXACT)
    assert p["requests_per_s"] < rate / 2
    for k, t in enumerate(run.timings):
        assert t.token_times[0] == pytest.approx(begin[k] + 0.1 - offsets[k], **EXACT)
    assert p["ttft_s"]["max"] == pytest.approx(begin[-1] + 0.1 - offsets[-1], **EXACT)
    assert p["ttft_s"]["max"] > 0.7  # ≈ 0.73 s of queueing behind the 2 slots, not hidden
    assert all(r.send_lag_s == 0.0 for r in run.records)  # the sender is exact on a virtual clock
    assert p["mean_in_flight"] <= n  # one clock: bounded by what was sent
    assert run.cap_waits == 0 and run.max_concurrency is None and not run.notes


def test_a_declared_client_cap_is_counted_in_latency_and_reported() -> None:
    """A cap of 2 in front of a server with room for 8: the queue is the client's, and it shows."""
    offsets = [0.0, 0.01, 0.02, 0.03]

    async def go(clock):
        srv = SlotServer(clock, slots=8)
        run = await run_open_loop(srv.send, reqs(4), offsets, max_duration_s=60, drain_s=60, clock=clock,
                                  max_concurrency=2, spin_s=0.0)
        return srv, run

    srv, run = vrun(go)
    d = srv.service_s
    assert srv.max_running == 2 and run.cap_waits == 2
    assert run.notes == ["2 of 4 requests waited on max_concurrency=2 (their latency counts the wait, from the "
                         "intended start)"]
    r2, r3 = run.records[2], run.records[3]
    assert r2.waited_on_cap and r2.called_s == pytest.approx(d, **EXACT)  # when r0 freed its place
    assert r2.queue_s == pytest.approx(d - 0.02, **EXACT) and r3.queue_s == pytest.approx(d + 0.01 - 0.03, **EXACT)
    t2 = r2.timing()
    assert t2.token_times[0] == pytest.approx(d - 0.02 + 0.1, **EXACT)  # TTFT from the intended start
    p = point_metrics(run.timings)
    assert p["queue_s"]["max"] == pytest.approx(d - 0.02, **EXACT)


def test_failures_are_counted_not_hidden() -> None:
    async def go(clock):
        srv = SlotServer(clock, slots=4, fail="r1")
        return await run_open_loop(srv.send, reqs(4), [0.0, 0.0, 0.0, 0.0], max_duration_s=60, drain_s=60,
                                   clock=clock, spin_s=0.0)

    run = vrun(go)
    p = point_metrics(run.timings)
    assert run.records[1].error == "RuntimeError: HTTP 429: too many requests"
    # no latency limit set, but a failed request is an infinite latency: 1 of 4 failing misses at p99
    assert (p["n_completed"], p["n_failed"]) == (3, 1) and p["meets_slo"] is False
    assert point_metrics(run.timings[:1] + run.timings[2:])["meets_slo"] is True
    assert p["duration_s"] == pytest.approx(0.14, **EXACT)


def test_points_stop_by_themselves_and_cut_requests_are_not_errors() -> None:
    async def go(clock):
        srv = SlotServer(clock, slots=1, prefill=30.0)  # a server that never answers in time
        run = await run_closed_loop(srv.send, reqs(8), 2, max_duration_s=0.05, drain_s=0.05, clock=clock)
        return srv, run

    srv, run = vrun(go)
    assert len(run.records) == 2 and run.n_cancelled == 2 and run.n_errors == 0
    assert srv.running == 0  # the cancelled sends were unwound
    assert all(t.status == "cancelled" for t in run.timings)


def test_open_loop_skips_arrivals_after_the_time_bound() -> None:
    async def go(clock):
        srv = SlotServer(clock, slots=4)
        return await run_open_loop(srv.send, reqs(4), [0.0, 0.01, 0.02, 100.0], max_duration_s=5, drain_s=5,
                                   clock=clock, spin_s=0.0)

    run = vrun(go)
    assert [r.scheduled_s for r in run.records] == [0.0, 0.01, 0.02]
    assert run.notes == ["1 scheduled requests fell after the time bound and were not sent"]


def test_a_response_without_token_times_is_an_error() -> None:
    async def send(_: Request) -> Response:
        return Response(text="x", output_tokens=1)

    run = asyncio.run(run_closed_loop(send, reqs(1), 1, max_duration_s=5, drain_s=5))
    assert run.records[0].error == "the backend returned no token timings (it does not stream)"


def test_the_send_timer_sleeps_then_spins_to_the_target() -> None:
    """The loop's sleep ends 1 ms early; the spin then reads a clock that moves 10 µs per reading."""
    reads: list[float] = []

    async def go(clock):
        def moving() -> float:
            reads.append(clock() + 1e-5 * len(reads))
            return reads[-1]

        await wait_until(1.0, moving, spin_s=0.001)
        return clock(), moving()

    loop_time, last = vrun(go)
    assert loop_time < 1.0 and loop_time == pytest.approx(0.999, abs=1e-3)  # slept until ~1 ms before
    assert 1.0 <= reads[-2] < 1.0 + 1e-5 + 1e-12 and last > 1.0  # spun until the target, not past a step


def test_a_cut_off_request_ends_at_the_cut_so_the_point_runs_to_it() -> None:
    # two requests at concurrency 2: one answers at 0.1 s, the other would take 5 s and is cut off after
    # the 0.2 s bound plus 0.3 s of drain; the point lasted 0.5 s, and so do its per-second figures
    async def go(clock):
        async def send(req: Request) -> Response:
            wait = 0.1 if req.sample_id == "r0" else 5.0
            await asyncio.sleep(wait)
            return Response(text="x", output_tokens=10, token_times=[wait])

        return await run_closed_loop(send, reqs(2), 2, max_duration_s=0.2, drain_s=0.3, clock=clock)

    run = vrun(go)
    assert [r.cancelled for r in run.records] == [False, True]
    assert run.records[1].done_s == pytest.approx(0.5, **EXACT)
    p = point_metrics(run.timings, concurrency=2)
    assert p["duration_s"] == pytest.approx(0.5, **EXACT)  # was 0.1: the cut request left the duration
    assert p["output_tokens_per_s"] == pytest.approx(10 / 0.5, **EXACT)
    assert p["mean_in_flight"] == pytest.approx((0.1 + 0.5) / 0.5, **EXACT)


def test_e2el_runs_to_the_end_of_the_response_as_vllm_counts_it() -> None:
    # tokens at 0.1/0.2/0.3 s, the finish and usage chunks at 0.5 s: vLLM's latency is 0.5 and its
    # TPOT (0.5 - 0.1) / 2
    async def go(clock):
        async def send(req: Request) -> Response:
            await asyncio.sleep(0.5)
            return Response(text="abc", output_tokens=3, token_times=[0.1, 0.2, 0.3], e2e_s=0.5)

        return await run_closed_loop(send, reqs(1), 1, max_duration_s=10, drain_s=10, clock=clock)

    p = point_metrics(vrun(go).timings, concurrency=1)
    assert p["e2el_s"]["mean"] == pytest.approx(0.5, **EXACT) and p["tpot_s"]["mean"] == pytest.approx(0.2, **EXACT)
    assert p["ttft_s"]["mean"] == pytest.approx(0.1, **EXACT) and p["duration_s"] == pytest.approx(0.5, **EXACT)


def test_arrival_times_refuse_a_schedule_that_cannot_be_drawn() -> None:
    with pytest.raises(ValueError, match=r"^burstiness must be a finite number > 0, got inf$"):
        arrival_times(4, 10.0, burstiness=float("inf"))  # every gap NaN: the sender never returned
    with pytest.raises(ValueError, match=r"^rate must be > 0 requests/s, got nan$"):
        arrival_times(4, float("nan"))


def test_a_retried_request_counts_its_retries_from_the_intended_start() -> None:
    """A backend times a retried request from the attempt that answered and reports the 2 s of
    failed attempt and wait before it as info["retry_s"]: open-loop latency adds them back, so it
    still runs from the scheduled send (TTFT 2.1 s, not 0.1 s)."""
    async def go(clock):
        async def send(req: Request) -> Response:
            await asyncio.sleep(2.0)  # a refused attempt and the wait before the next
            await asyncio.sleep(0.3)
            return Response(text="ab", output_tokens=2, token_times=[0.1, 0.2], e2e_s=0.3,
                            info={"retries": 1, "retry_s": 2.0})

        return await run_open_loop(send, reqs(1), [0.0], max_duration_s=10, drain_s=10, clock=clock, spin_s=0.0)

    p = point_metrics(vrun(go).timings)
    assert p["ttft_s"]["mean"] == pytest.approx(2.1, **EXACT) and p["e2el_s"]["mean"] == pytest.approx(2.3, **EXACT)
    assert p["tpot_s"]["mean"] == pytest.approx(0.2, **EXACT) and p["duration_s"] == pytest.approx(2.3, **EXACT)


def test_exact_arrivals_offer_the_asked_rate() -> None:
    offs = arrival_times(16, 8.0, 1.0, seed=3, exact=True)
    assert offs[0] == 0.0 and offs[-1] == pytest.approx(15 / 8.0, **EXACT)
    drawn = arrival_times(16, 8.0, 1.0, seed=3)
    gaps, drawn_gaps = np.diff(offs), np.diff(drawn)
    assert gaps / drawn_gaps == pytest.approx(np.full(15, gaps[0] / drawn_gaps[0]))  # the same draw, scaled


@pytest.mark.parametrize("ratio", [0.25, 0.5, 0.8, 1.2, 1.5, 3.0])
def test_a_rate_at_or_above_1_2x_capacity_never_meets_the_slo_and_one_at_0_8x_does(ratio: float) -> None:
    """The throughput task's default rate points against a FIFO server of known capacity (2 slots ×
    0.14 s: 14.3 req/s), on virtual time, over several arrival seeds: at ≥ 1.2× capacity the point
    fails (the queue outgrows the 2 s TTFT limit within the rate window, and completions fall behind
    arrivals), at ≤ 0.8× it passes. Before, 16 requests at 80 req/s against 25 req/s met the SLO."""
    from evalsuite.serving.throughput import Throughput, rate_point_size, rate_windows

    task = Throughput()
    a = task.args
    overload, window = rate_windows(task.slo, float(a["rate_point_s"]), float(a["point_duration_s"]))
    assert (overload, window) == (12.0, 12.0)  # 6 × the 2 s TTFT limit
    capacity = 2 / 0.14
    rate = ratio * capacity
    n = rate_point_size(rate, max(16, 4 * max(a["concurrency"])), window, float(a["point_duration_s"]))
    verdicts = []
    for seed in range(4):
        offsets = arrival_times(n, rate, float(a["burstiness"]), seed=seed, exact=True)

        async def go(clock):
            srv = SlotServer(clock, slots=2)
            return await run_open_loop(srv.send, reqs(n), offsets, max_duration_s=float(a["point_duration_s"]),
                                       drain_s=float(a["drain_s"]), rate=rate, clock=clock, spin_s=0.0)

        p = point_metrics(vrun(go).timings, slo=task.slo, percentiles=task.percentiles)
        assert p["arrival_window_s"] >= overload * (1 - 1e-9)
        verdicts.append(p["meets_slo"])
        print(ratio, seed, n, p["backlog_growth"], p["ttft_s"]["p99"], p["meets_slo"])
    assert verdicts == [ratio <= 0.8] * 4


def test_a_closed_loop_list_cut_by_the_time_bound_counts_what_it_did_not_send() -> None:
    """8 requests planned at concurrency 1, 0.5 s each, a 1 s bound: 2 sent, 6 never; the run says so
    (the task then does not count the point as meeting the SLO)."""
    async def go(clock):
        srv = SlotServer(clock, slots=1, prefill=0.5, per_token=0.0, tokens=2)
        return await run_closed_loop(srv.send, reqs(8), 1, max_duration_s=1.0, drain_s=5.0, clock=clock)

    run = vrun(go)
    assert (len(run.records), run.n_unsent) == (2, 6)
    assert any("only 2 of the 8 requests planned were sent" in n for n in run.notes)

    async def endless(clock):  # an endless source (duration mode) has nothing "unsent"
        srv = SlotServer(clock, slots=1, prefill=0.5, per_token=0.0, tokens=2)
        return await run_closed_loop(srv.send, (r for r in reqs(100)), 1, max_duration_s=1.0, drain_s=5.0,
                                     clock=clock)

    assert vrun(endless).n_unsent == 0
