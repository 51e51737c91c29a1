"""One thread that owns the reference engine, so that many concurrent callers share it with
continuous batching: the HTTP server's handlers and the throughput task's load generator (both
asyncio) submit requests from their own threads and get token callbacks back.

Each loop turn: take new submissions and cancellations from the inbox; admit requests whose media
is decoded (a small pool decodes ahead) into the engine's queue while it has free slots for them;
run one engine step (prefill the admitted, decode one token for every running request); report the
finished ones. A request cancelled by its caller (a client that disconnected) is dropped from the
engine at once and its slot reset, so no slot ever leaks. The engine is held under the backend's
lock while the worker has work, so a blocking ``generate`` never interleaves with it.
"""

from __future__ import annotations

import queue
import threading
import time
from collections import deque
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any, Callable

from evalsuite.types import Request, Response

OnToken = Callable[[float, str], None]
OnDone = Callable[[Response | None, BaseException | None], None]
IDLE_POLL_S = 0.5


@dataclass(eq=False)
class Ticket:
    """A submitted request: its callbacks run on the worker thread and must not block."""

    request: Request
    on_token: OnToken
    on_done: OnDone
    t0: float = field(default_factory=time.perf_counter)
    media: Future | None = None
    handle: Any = None  # the engine's Handle once admitted
    info: dict[str, Any] = field(default_factory=dict)
    finished: bool = False

    def finish(self, response: Response | None, error: BaseException | None) -> None:
        if not self.finished:
            self.finished = True
            self.on_done(response, error)


class EngineWorker:
    def __init__(self, backend: Any) -> None:
        self.backend = backend
        self.engine = backend.engine
        self._inbox: queue.SimpleQueue[tuple[str, Ticket | None]] = queue.SimpleQueue()
        self._pending: deque[Ticket] = deque()  # media decoding, not yet in the engine
        self._live: dict[int, Ticket] = {}  # engine request id -> ticket
        self._holding = False
        self._closed = False
        self._thread = threading.Thread(target=self._run, name="evalsuite-engine", daemon=True)
        self._thread.start()

    # ---- callers (any thread) -----------------------------------------------------------------
    def submit(self, request: Request, on_token: OnToken, on_done: OnDone) -> Ticket:
        ticket = Ticket(request, on_token, on_done)
        if self._closed:
            raise RuntimeError("the engine worker is closed")
        self._inbox.put(("submit", ticket))
        return ticket

    def cancel(self, ticket: Ticket) -> None:
        self._inbox.put(("cancel", ticket))

    def stats(self) -> dict[str, int]:
        """Gauges for /metrics (read without locking: a snapshot, not a transaction)."""
        e = self.engine
        return {"requests_running": len(e.running), "requests_waiting": len(e.waiting) + len(self._pending),
                "slots_total": e.n_slots, "slots_free": e.free_slots}

    def close(self) -> None:
        self._closed = True
        self._inbox.put(("close", None))
        self._thread.join(timeout=10)

    # ---- the loop (worker thread) -------------------------------------------------------------
    def _run(self) -> None:
        engine = self.engine
        while True:
            idle = not (engine.busy or self._pending)
            try:
                msg = self._inbox.get(timeout=IDLE_POLL_S) if idle else self._inbox.get_nowait()
            except queue.Empty:
                msg = None
            while msg is not None:
                if msg[0] == "close":
                    self._abort_all(RuntimeError("the server is shutting down"))
                    self._release()
                    return
                self._handle(*msg)  # type: ignore[arg-type]
                try:
                    msg = self._inbox.get_nowait()
                except queue.Empty:
                    msg = None
            if engine.busy or self._pending:
                if not self._holding:
                    self.backend.engine_lock.acquire()
                    self._holding = True
                self._admit()
                if engine.busy:
                    try:
                        finished = engine.step()
                    except Exception as e:  # the whole batch failed: fail its requests, keep serving
                        self._abort_live(e)
                        finished = []
                    for result in finished:
                        t = self._live.pop(result.request_id, None)
                        if t is not None:
                            t.finish(self.backend._response(result, t.info), None)
            else:
                self._release()

    def _handle(self, kind: str, ticket: Ticket) -> None:
        if kind == "submit":
            try:
                self.backend.check(ticket.request)
                ticket.media = self.backend._load(ticket.request)
            except Exception as e:
                ticket.finish(None, e)
                return
            self._pending.append(ticket)
        elif kind == "cancel" and not ticket.finished:
            ticket.finished = True  # no callback: the caller is gone
            if ticket in self._pending:
                self._pending.remove(ticket)
                if ticket.media is not None:
                    ticket.media.cancel()
            elif ticket.handle is not None:
                self._live.pop(ticket.handle.id, None)
                self.engine.cancel(ticket.handle)

    def _admit(self) -> None:
        """Embed and queue requests whose media is ready while the engine has slots for them; wait
        for media only when the engine has nothing else to do."""
        engine = self.engine
        while self._pending and engine.free_slots > len(engine.waiting):
            t = self._pending[0]
            assert t.media is not None
            if engine.busy and not t.media.done():
                return
            self._pending.popleft()
            try:
                embeds, _, t.info = self.backend._embed(t.request, t.media.result())
                on_token = lambda ev, t=t: t.on_token(ev.time - t.t0, ev.text)  # noqa: E731
                t.handle = engine.submit(embeds, self.backend._params(t.request), on_token=on_token, t_start=t.t0)
            except Exception as e:  # bad media, a prompt too long: that request only
                t.finish(None, e)
                continue
            self._live[t.handle.id] = t

    def _abort_live(self, error: BaseException) -> None:
        self.engine.cancel_all()
        for t in self._live.values():
            t.finish(None, error)
        self._live.clear()

    def _abort_all(self, error: BaseException) -> None:
        self._abort_live(error)
        while self._pending:
            t = self._pending.popleft()
            if t.media is not None:
                t.media.cancel()
            t.finish(None, error)

    def _release(self) -> None:
        if self._holding:
            self._holding = False
            self.backend.engine_lock.release()
