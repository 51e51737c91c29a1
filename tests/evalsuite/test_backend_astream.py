"""The default asyncio streaming of a backend: a blocking ``stream`` run in a thread, one request at
a time, its token times kept; a backend that only generates gives no token times."""

from __future__ import annotations

import asyncio
import threading
from typing import Iterator

import pytest

from evalsuite.backend import Backend
from evalsuite.types import Request, Response, user


class Scripted(Backend):
    backend_name = "scripted"

    def __init__(self) -> None:
        super().__init__()
        self.active = self.max_active = 0
        self.lock = threading.Lock()

    def stream(self, request: Request) -> Iterator[tuple[float, str]]:
        with self.lock:
            self.active += 1
            self.max_active = max(self.max_active, self.active)
        try:
            yield from [(0.25, "a"), (0.5, "b"), (1.0, "c")]  # scripted offsets, no sleeping
        finally:
            with self.lock:
                self.active -= 1


class GenerateOnly(Backend):
    backend_name = "generate-only"

    def generate(self, requests: list[Request]) -> list[Response]:
        return [Response(text="x", output_tokens=1) for _ in requests]


REQ = Request(sample_id="s", messages=[user("hi")])


def test_blocking_stream_becomes_timed_async_stream() -> None:
    b = Scripted()

    async def main() -> list[Response]:
        return list(await asyncio.gather(*(b.agenerate(REQ) for _ in range(4))))

    for r in asyncio.run(main()):
        assert r.text == "abc" and r.output_tokens == 3
        t = r.token_times
        assert t[1] - t[0] == pytest.approx(0.25, abs=1e-12) and t[2] - t[1] == pytest.approx(0.5, abs=1e-12)
        assert t[0] >= 0.25 and r.ttft_s == t[0] and r.e2e_s == t[2]
    assert b.max_active == 1  # one request at a time


def test_generate_only_backend_gives_no_token_times() -> None:
    r = asyncio.run(GenerateOnly().agenerate(REQ))
    assert r.text == "x" and r.token_times is None


def test_a_generate_only_backend_counts_the_wait_behind_others(monkeypatch: pytest.MonkeyPatch) -> None:
    """Requests wait for the backend's lock; their times came from generate alone, so a load point of
    8 concurrent requests showed no queueing (TTFT flat, ~6x the real throughput). A scripted clock:
    each generate takes 1 s, answering ttft 0.5 and e2e 1 from its own start."""
    import evalsuite.backend as backend_module

    now = [100.0]
    both_sent = threading.Event()
    monkeypatch.setattr(backend_module.time, "perf_counter", lambda: now[0])

    class Timed(Backend):
        backend_name = "timed"

        def generate(self, requests: list[Request]) -> list[Response]:
            both_sent.wait(10)  # both requests were sent (their clocks started) before any generates
            now[0] += 1.0
            return [Response(text="x", output_tokens=2, ttft_s=0.5, e2e_s=1.0, token_times=[0.5, 1.0])
                    for _ in requests]

    async def release() -> None:
        both_sent.set()  # runs after both agenerate calls reached their first await

    async def both() -> list[Response]:
        b = Timed()
        return list(await asyncio.gather(b.agenerate(REQ), b.agenerate(REQ), release()))[:2]

    first, second = sorted(asyncio.run(both()), key=lambda r: r.e2e_s)
    assert (first.ttft_s, first.e2e_s) == (0.5, 1.0)
    assert (second.ttft_s, second.e2e_s, second.token_times) == (1.5, 2.0, [1.5, 2.0])
