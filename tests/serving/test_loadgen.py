"""The load generator: arrival schedules, the closed-loop concurrency bound, open-loop send times,
the time bound that ends every point by itself, and per-request error isolation."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest

from evalsuite.serving.loadgen import arrival_times, run_closed_loop, run_open_loop
from evalsuite.types import Request, Response, user


def reqs(n: int) -> list[Request]:
    return [Request(sample_id=f"r{i}", messages=[user(f"q{i}")], max_tokens=4) for i in range(n)]


class FakeServer:
    """Answers after ``delay`` seconds with scripted token times; counts requests in flight."""

    def __init__(self, delay: float = 0.002, fail: str | None = None) -> None:
        self.delay, self.fail = delay, fail
        self.in_flight = self.max_in_flight = 0
        self.order: list[str] = []

    async def send(self, req: Request) -> Response:
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        self.order.append(req.sample_id)
        try:
            await asyncio.sleep(self.delay)
            if self.fail and req.sample_id == self.fail:
                raise RuntimeError("boom\nsecond line")
            return Response(text="abcd", output_tokens=4, token_times=[0.1, 0.2, 0.3, 0.4])
        finally:
            self.in_flight -= 1


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


def test_closed_loop_keeps_exactly_c_in_flight_and_sends_in_order() -> None:
    srv = FakeServer()
    run = asyncio.run(run_closed_loop(srv.send, reqs(10), 3, max_duration_s=60, drain_s=60))
    assert srv.max_in_flight == 3 and srv.order == [f"r{i}" for i in range(10)]
    assert len(run.records) == 10 and all(r.ok for r in run.records) and run.n_cancelled == 0
    assert all(r.scheduled_s is None and r.send_lag_s is None for r in run.records)
    t = run.timings[0]
    assert t.token_times == (0.1, 0.2, 0.3, 0.4) and t.output_tokens == 4


def test_open_loop_follows_the_schedule_and_skips_late_arrivals() -> None:
    srv = FakeServer()
    offsets = [0.0, 0.01, 0.02, 100.0]
    run = asyncio.run(run_open_loop(srv.send, reqs(4), offsets, max_duration_s=5, drain_s=5, rate=1.0))
    assert [r.scheduled_s for r in run.records] == [0.0, 0.01, 0.02]  # the 4th falls after the bound
    assert all(r.sent_s >= r.scheduled_s and r.send_lag_s >= 0 for r in run.records)
    assert run.notes == ["1 scheduled requests fell after the time bound and were not sent"]


def test_points_stop_by_themselves_and_cut_requests_are_not_errors() -> None:
    srv = FakeServer(delay=30.0)  # a server that never answers in time
    run = asyncio.run(run_closed_loop(srv.send, reqs(8), 2, max_duration_s=0.05, drain_s=0.05))
    assert len(run.records) == 2 and run.n_cancelled == 2 and run.n_errors == 0
    assert srv.in_flight == 0  # the cancelled sends were unwound
    assert all(not t.ok for t in run.timings)


def test_one_failing_request_is_recorded_and_the_others_finish() -> None:
    srv = FakeServer(fail="r1")
    run = asyncio.run(run_closed_loop(srv.send, reqs(4), 2, max_duration_s=60, drain_s=60))
    errs = {r.request.sample_id: r.error for r in run.records if r.error}
    assert errs == {"r1": "RuntimeError: boom"} and sum(r.ok for r in run.records) == 3


def test_a_response_without_token_times_is_an_error() -> None:
    async def send(_: Request) -> Response:
        return Response(text="x", output_tokens=1)

    run = asyncio.run(run_closed_loop(send, reqs(1), 1, max_duration_s=5, drain_s=5))
    assert run.records[0].error == "the backend returned no token timings (it does not stream)"
