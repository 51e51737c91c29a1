"""A deterministic mock model: answers depend only on (sample id, seed), so whole evals run in tests
and dry runs with no model. It accepts every modality and reads no media.

Answers: a choice letter for multiple-choice requests, a point ``(x, y)`` in 0–1000 for grounding
prompts, otherwise the first words of the question. Options, comma-separated after the colon (the
model's name is the whole ``mock:<options>``, so two mocks with other options stand side by side in
a leaderboard):
``letter=B`` answers that letter on every choice question; ``delay=0.05`` sleeps that many seconds per
request (for kill-and-resume tests); ``fail=<substring>`` raises on sample ids containing it (for
error-isolation tests).

Streaming (`astream`, for the throughput task and the server's tests) follows a script: the answer's
words are its tokens (cycled up to ``max_tokens`` when the request sets ``ignore_eos``, or exactly
``tokens=N`` of them); token k arrives ``ttft + k·itl`` seconds after the request starts running
(``ttft=0.05,itl=0.01``; both 0 by default). ``slots=N`` lets only N requests run at once, the others
queue, so latency grows with load as on a real server. The reported token times are the scripted
ones plus the measured queueing time, so tests can assert exact TTFT and TPOT without slots.
"""

from __future__ import annotations

import asyncio
import hashlib
import math
import time
import weakref
from typing import Any, AsyncIterator

from evalsuite.backend import Backend, BackendConfigError
from evalsuite.registry import BACKENDS
from evalsuite.types import Request, Response


def _h(*parts: Any) -> int:
    return int.from_bytes(hashlib.sha256("|".join(map(str, parts)).encode()).digest()[:8], "little")


MOCK_OPTIONS = ("letter", "fail", "delay", "ttft", "itl", "tokens", "slots")


@BACKENDS.register("mock")
class MockBackend(Backend):
    """deterministic mock model (tests, dry runs)"""

    modalities = frozenset({"text", "image", "video", "audio"})
    backend_name = "mock"

    def __init__(self, arg: str | None = None, **options: Any) -> None:
        super().__init__(arg, **options)
        self.seed = int(options.get("seed", 0))
        parts = [kv for kv in (arg or "").split(",") if kv.strip()]
        opts = dict(kv.split("=", 1) for kv in parts if "=" in kv)
        unknown = sorted({kv.split("=", 1)[0] for kv in parts} - set(MOCK_OPTIONS))
        if unknown:  # a misspelt key ("dealy=0.05") would run with the default
            raise BackendConfigError(f"mock options: unknown {', '.join(repr(u) for u in unknown)}; expected "
                                     f"KEY=VALUE with KEY one of {', '.join(MOCK_OPTIONS)}")
        self.fixed_letter = opts.get("letter")
        self.fail = opts.get("fail")
        try:
            self.delay = float(opts.get("delay", 0.0))
            self.ttft = float(opts.get("ttft", 0.0))
            self.itl = float(opts.get("itl", 0.0))
            self.tokens = int(opts["tokens"]) if "tokens" in opts else None
            self.slots = int(opts["slots"]) if "slots" in opts else None
        except ValueError as e:
            raise BackendConfigError(f"mock options: delay/ttft/itl expect seconds, tokens/slots counts ({e})") from None
        if not all(0 <= x < math.inf for x in (self.delay, self.ttft, self.itl)) or \
                (self.tokens is not None and self.tokens < 1) or (self.slots is not None and self.slots < 1):
            raise BackendConfigError("mock options: delay, ttft and itl must be finite seconds >= 0, tokens and "
                                     "slots >= 1")
        self._slot_sems: weakref.WeakKeyDictionary[Any, asyncio.Semaphore] = weakref.WeakKeyDictionary()
        self.running = 0  # requests streaming now (tests check that none leak)
        self.max_running = 0

    def answer(self, req: Request) -> str:
        h = _h(req.sample_id, self.seed)
        if req.choices:
            return self.fixed_letter or "ABCDEFGH"[h % len(req.choices)]
        question = " ".join(m.text for m in req.messages).strip()
        if "(x, y)" in question or "click" in question.lower() or "point" in question.lower():
            return f"({h % 1001}, {(h >> 16) % 1001})"
        return " ".join(question.split()[:3]) or "mock"

    def generate(self, requests: list[Request]) -> list[Response]:
        out = []
        for r in requests:
            if self.fail and self.fail in r.sample_id:
                raise RuntimeError(f"mock failure on {r.sample_id}")
            if self.delay:
                time.sleep(self.delay)
            text = self.answer(r)
            n_prompt = sum(len(m.text.split()) + 16 * sum(p.type != "text" for p in m.content) for m in r.messages)
            out.append(Response(text=text, prompt_tokens=n_prompt, output_tokens=max(1, len(text.split())),
                                finish_reason="stop"))
        return out

    def token_texts(self, req: Request) -> list[str]:
        """The scripted output tokens of a request (see the module docstring)."""
        words = self.answer(req).split() or ["mock"]
        n = self.tokens or (req.max_tokens if req.ignore_eos else min(len(words), req.max_tokens))
        return [(" " if k else "") + words[k % len(words)] for k in range(max(1, n))]

    async def astream(self, request: Request) -> AsyncIterator[tuple[float, str] | Response]:
        if self.fail and self.fail in request.sample_id:
            raise RuntimeError(f"mock failure on {request.sample_id}")
        t0 = time.perf_counter()
        sem = None
        if self.slots is not None:
            loop = asyncio.get_running_loop()
            sem = self._slot_sems.setdefault(loop, asyncio.Semaphore(self.slots))
            await sem.acquire()
        self.running += 1
        self.max_running = max(self.max_running, self.running)
        try:
            wait = time.perf_counter() - t0 if sem is not None else 0.0
            texts = self.token_texts(request)
            times = [wait + self.ttft + k * self.itl for k in range(len(texts))]
            for t, text in zip(times, texts):
                delay = t0 + t - time.perf_counter()
                await asyncio.sleep(max(0.0, delay))
                yield t, text
            n_prompt = sum(len(m.text.split()) + 16 * sum(p.type != "text" for p in m.content)
                           for m in request.messages)
            yield Response(text="".join(texts), prompt_tokens=n_prompt, output_tokens=len(texts), ttft_s=times[0],
                           e2e_s=times[-1], token_times=times, finish_reason="length" if request.ignore_eos else "stop")
        finally:
            self.running -= 1
            if sem is not None:
                sem.release()

    def describe(self) -> dict[str, Any]:
        d = super().describe()
        d.update(precision=None, engine_version="mock-1")
        return d
