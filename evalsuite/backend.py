"""The backend contract: turn a batch of requests into responses, and describe yourself.

A backend is created from a model name (``fp4``, ``replay:preds.jsonl``, ``openai:http://…``) by its
registered factory, ``factory(arg, **options)``, where ``arg`` is the text after the colon and
``options`` are run settings (``device``, ``seed``, ``batch_size``). It declares the modalities it
accepts; a request with another modality errors that sample with a clear message.

``generate`` returns one item per request, in order: a :class:`Response`, or the exception of a
request that failed, in its place (the runner records it as that sample's error and sends nothing
again). It may also raise for the whole batch; the runner then sends the requests one by one so
that one bad sample never loses the others.

Streaming: ``stream`` yields timed tokens of one request (blocking); ``astream`` is its asyncio form
for many concurrent requests (the throughput task and the HTTP server use it): it yields (seconds
since the call, text) per output token, then one final :class:`Response` with the usage counts and
every token's time (a backend that retries a request times the attempt that answered, and gives the
seconds its failed attempts and waits took as ``Response.info["retry_s"]``). Cancelling it (closing
the iterator, cancelling its task) cancels the request, so a backend frees whatever the request
held. The default runs ``stream`` (or ``generate``, which gives no token times) in a worker thread
one request at a time; backends that batch override it.

``describe`` returns provenance for ``results.json``: name, backend, precision recipe, weights
sha256, device, engine version, and anything else that identifies what produced the numbers.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import dataclasses
import threading
import time
from typing import Any, AsyncIterator, Awaitable, Callable, ClassVar, Coroutine, Iterator, TypeVar

from evalsuite.types import Request, Response

T = TypeVar("T")


async def cancel_others() -> None:
    """Cancel every other task of the running loop and wait until each has ended: what the owner of
    a loop thread runs on it when interrupted and before ending it, so that no request is left
    pending for the loop's end to find."""
    me = asyncio.current_task()
    tasks = [t for t in asyncio.all_tasks() if t is not me]
    for t in tasks:
        t.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


class LoopThread:
    """An asyncio loop on its own daemon thread, for synchronous code that runs coroutines (the openai
    backend's blocking ``generate``, the throughput task's load points). Interrupted while a coroutine
    runs (Ctrl-C, SIGTERM), it cancels everything on the loop and waits for it to end; ``close`` does
    the same for what is left, awaits ``before`` (an HTTP session's close) and finalizes async
    generators before the loop ends."""

    def __init__(self, name: str) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, name=name, daemon=True)
        self._thread.start()

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        fut = asyncio.run_coroutine_threadsafe(coro, self.loop)
        try:
            return fut.result()
        except BaseException:
            if not fut.done():
                self._settle(final=False)  # the loop stays usable: its async generators are not finalized
            raise

    def _settle(self, before: Callable[[], Awaitable[Any]] | None = None, *, final: bool = True,
                wait_s: float = 10.0) -> None:
        async def settle() -> None:
            await cancel_others()
            if before is not None:
                await before()
            if final:
                await asyncio.get_running_loop().shutdown_asyncgens()

        try:
            asyncio.run_coroutine_threadsafe(settle(), self.loop).result(wait_s)
        except (concurrent.futures.TimeoutError, concurrent.futures.CancelledError, RuntimeError):
            pass  # the loop is stopping or stuck: closing it goes on

    def close(self, before: Callable[[], Awaitable[Any]] | None = None) -> None:
        if self.loop.is_closed():  # closed already: nothing left to end
            return
        try:
            self._settle(before)
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self._thread.join(timeout=10)
            if not self._thread.is_alive():
                self.loop.close()


class UnsupportedModality(ValueError):
    pass


class PromptTooLong(ValueError):
    """A prompt, or a prompt with the output it asks room for, that does not fit the model's context."""


class BackendConfigError(ValueError):
    """A model name or its argument cannot be used (missing file, bad URL…): one line for the user."""


class Backend:
    modalities: ClassVar[frozenset[str]] = frozenset({"text"})
    backend_name: ClassVar[str] = ""
    # runs on this machine's --device (checked before it is built); False: remote, records "remote"
    uses_local_device: ClassVar[bool] = True

    def __init__(self, arg: str | None = None, **options: Any) -> None:
        self.arg = arg
        self.options = options

    def generate(self, requests: list[Request]) -> list[Response | BaseException]:
        """One Response per request, in order, or a failed request's exception in its place."""
        raise NotImplementedError

    def stream(self, request: Request) -> Iterator[tuple[float, str]]:
        """Yield (seconds since the request was sent, token text) per output token, in order."""
        raise NotImplementedError(f"backend {self.backend_name!r} does not stream")

    async def astream(self, request: Request) -> AsyncIterator[tuple[float, str] | Response]:
        """Yield (seconds since this call, text) per output token, then the final Response (see
        the module docstring). Default: `stream` (else `generate`) in a thread, one request at a time."""
        loop = asyncio.get_running_loop()
        items: asyncio.Queue[Any] = asyncio.Queue()
        stop = threading.Event()
        lock = self.__dict__.setdefault("_serial_lock", threading.Lock())
        t0 = time.perf_counter()

        def put(item: Any) -> None:
            try:
                loop.call_soon_threadsafe(items.put_nowait, item)
            except RuntimeError:  # the loop is gone: nobody is listening any more
                pass

        def work() -> None:
            with lock:
                if stop.is_set():
                    return
                try:
                    if type(self).stream is Backend.stream:
                        # its times count from when generate began: add the wait for the lock, so that
                        # a request queued behind others shows that wait (in TTFT and E2E) as a served one does
                        t_call = time.perf_counter() - t0
                        r = self.generate([request])[0]
                        if isinstance(r, BaseException):
                            raise r
                        if t_call > 0:
                            r = dataclasses.replace(
                                r, ttft_s=None if r.ttft_s is None else t_call + r.ttft_s,
                                e2e_s=None if r.e2e_s is None else t_call + r.e2e_s,
                                token_times=None if r.token_times is None else [t_call + t for t in r.token_times])
                        put(r)
                        return
                    times: list[float] = []
                    texts: list[str] = []
                    t_call = time.perf_counter() - t0
                    for t, text in self.stream(request):
                        if stop.is_set():
                            return
                        times.append(t_call + t)
                        texts.append(text)
                        put((times[-1], text))
                    put(Response(text="".join(texts), output_tokens=len(times), ttft_s=times[0] if times else None,
                                 e2e_s=times[-1] if times else None, token_times=times))
                except BaseException as e:  # handed to the caller, raised there
                    put(e)

        worker = loop.run_in_executor(None, work)
        try:
            while True:
                item = await items.get()
                if isinstance(item, BaseException):
                    raise item
                yield item
                if isinstance(item, Response):
                    return
        finally:
            stop.set()
            worker.cancel()

    async def agenerate(self, request: Request) -> Response:
        """One request through `astream`; the Response carries its token times."""
        final: Response | None = None
        gen = self.astream(request)
        try:
            async for item in gen:
                if isinstance(item, Response):
                    final = item
        finally:
            await gen.aclose()
        if final is None:
            raise RuntimeError(f"backend {self.backend_name!r} ended a stream without a response")
        return final

    @property
    def max_model_len(self) -> int | None:
        """The model's context in tokens (prompt and output together) when this backend knows it and
        enforces it, else None. The HTTP server caps ``max_tokens`` at it and lists it in /v1/models."""
        return None

    async def aclose(self) -> None:
        """Release what this backend holds on the running event loop (HTTP sessions); the loop's
        owner calls it before the loop ends."""

    def describe(self) -> dict[str, Any]:
        return {
            "name": self.backend_name if self.arg is None else f"{self.backend_name}:{self.arg}",
            "backend": self.backend_name,
            "precision": None,
            "weights_sha256": None,
            "device": self.options.get("device", "cpu"),
            "engine_version": None,
        }

    def check(self, request: Request) -> None:
        """Raise UnsupportedModality if the request carries a modality this backend cannot read."""
        kinds = {p.type for m in request.messages for p in m.content}
        missing = sorted(kinds - set(self.modalities))
        if missing:
            raise UnsupportedModality(
                f"model {self.describe()['name']!r} does not accept {', '.join(missing)} input "
                f"(accepts: {', '.join(sorted(self.modalities))})"
            )

    def close(self) -> None:
        pass
