"""Robustness of ``evalsuite serve`` on 127.0.0.1: 256 concurrent streams, /health answering under
that load, and clients that disconnect mid-stream (their slots freed: no slot leaks, in the mock and
in the reference engine). Every loop here is bounded in count and time and stops by itself."""

from __future__ import annotations

import asyncio
import json
import threading
import time

import aiohttp
import pytest

from evalsuite.backends.mock import MockBackend
from evalsuite.serving.server import ServerConfig, ServerThread

BODY = {"model": "m", "messages": [{"role": "user", "content": "one two three"}], "max_tokens": 8, "stream": True,
        "ignore_eos": True}


async def stream_all(session: aiohttp.ClientSession, url: str, body: dict) -> str:
    text = []
    async with session.post(url, json=body) as r:
        assert r.status == 200
        async for raw in r.content:
            line = raw.strip()
            if line.startswith(b"data: ") and line != b"data: [DONE]":
                for ch in json.loads(line[6:])["choices"]:
                    text.append(ch["delta"].get("content") or "")
    return "".join(text)


async def wait_until(cond, timeout_s: float = 90.0) -> bool:
    """Poll ``cond`` until true or the (bounded) timeout: returns the last value."""
    end = time.monotonic() + timeout_s
    while not cond() and time.monotonic() < end:
        await asyncio.sleep(0.02)
    return cond()


class HeldMock(MockBackend):
    """The mock, but every stream stops after its first token until ``release`` is set: "all 256
    streaming at once" is then a state the test reaches for sure, not a race against 0.2-s streams
    on a loaded machine."""

    def __init__(self, arg: str | None = None) -> None:
        super().__init__(arg)
        self.release = threading.Event()

    async def astream(self, request):  # type: ignore[override]
        first = True
        async for item in super().astream(request):
            yield item
            while first and not self.release.is_set():
                await asyncio.sleep(0.01)
            first = False


@pytest.mark.slow
def test_256_concurrent_streams_and_health_under_load() -> None:
    mock = HeldMock("ttft=0.05,itl=0.02")
    with ServerThread(mock, ServerConfig(model_names=["m"])) as s:
        url = f"{s.base_url}/chat/completions"
        health = f"http://127.0.0.1:{s.port}/health"

        async def main() -> tuple[list[str], list[int], int]:
            conn = aiohttp.TCPConnector(limit=0)
            async with aiohttp.ClientSession(connector=conn, timeout=aiohttp.ClientTimeout(total=120)) as session:
                streams = [asyncio.ensure_future(stream_all(session, url, BODY)) for _ in range(256)]
                assert await wait_until(lambda: mock.running == 256)  # all 256 streaming at once
                codes = []
                for _ in range(10):  # /health keeps answering while they stream
                    async with session.get(health) as r:
                        codes.append(r.status)
                peak = mock.running
                mock.release.set()
                texts = await asyncio.gather(*streams)
                # the server counts a request after its last byte: wait for the books to close
                m = s.server.metrics
                assert await wait_until(lambda: m.requests["ok"] == 256 and m.in_flight == 0)
                return texts, codes, peak

        texts, codes, peak = asyncio.run(main())
        assert peak == 256 and codes == [200] * 10
        assert texts == ["one two three one two three one two"] * 256
        assert mock.running == 0 and s.server.metrics.in_flight == 0
        assert s.server.metrics.requests["ok"] == 256


def test_disconnected_clients_free_their_streams() -> None:
    mock = MockBackend("itl=0.01,tokens=500")  # 5 s per stream: only a disconnect ends it early
    with ServerThread(mock, ServerConfig(model_names=["m"])) as s:
        url = f"{s.base_url}/chat/completions"

        async def hang_up() -> None:
            async with aiohttp.ClientSession() as session:
                for _ in range(16):
                    r = await session.post(url, json=BODY)
                    await r.content.readline()  # the first chunk arrived: the stream is running
                    r.close()  # drop the connection mid-stream
            assert await wait_until(lambda: mock.running == 0 and s.server.metrics.requests["cancelled"] == 16
                                    and s.server.metrics.in_flight == 0)

        asyncio.run(hang_up())
        assert mock.running == 0 and s.server.metrics.in_flight == 0
        assert s.server.metrics.requests["cancelled"] == 16


@pytest.mark.slow
def test_reference_engine_frees_slots_of_disconnected_clients() -> None:
    from evalsuite.runner import make_backend

    backend = make_backend("fp4", batch_size=4)
    try:
        with ServerThread(backend, ServerConfig(model_names=["m"])) as s:
            url = f"{s.base_url}/chat/completions"
            long = {**BODY, "max_tokens": 400}

            async def hang_up_after_first_chunk(session: aiohttp.ClientSession) -> None:
                async with session.post(url, json=long) as r:
                    await r.content.readline()
                    await asyncio.sleep(60)  # cancelled long before

            async def main() -> str:
                async with aiohttp.ClientSession() as session:
                    clients = [asyncio.ensure_future(hang_up_after_first_chunk(session)) for _ in range(6)]
                    busy = lambda: backend.serving_stats() == {  # noqa: E731
                        "requests_running": 4, "requests_waiting": 2, "slots_total": 4, "slots_free": 0}
                    assert await wait_until(busy), backend.serving_stats()  # 4 streaming, 2 queued
                    for c in clients:  # all six hang up: four mid-stream, two while queued
                        c.cancel()
                    await asyncio.gather(*clients, return_exceptions=True)
                    idle = lambda: backend.serving_stats() == {  # noqa: E731
                        "requests_running": 0, "requests_waiting": 0, "slots_total": 4, "slots_free": 4}
                    assert await wait_until(idle), backend.serving_stats()
                    text = await stream_all(session, url, {**BODY, "max_tokens": 5})  # the engine still serves
                    assert await wait_until(lambda: s.server.metrics.requests["ok"] == 1)  # counted after [DONE]
                    return text

            asyncio.run(main())
            assert s.server.metrics.generation_tokens == 5  # only the finished request's tokens
            assert backend.engine.free_slots == 4 and not backend.engine.running and not backend.engine.waiting
            assert s.server.metrics.requests["cancelled"] == 6 and s.server.metrics.requests["ok"] == 1
    finally:
        backend.close()
