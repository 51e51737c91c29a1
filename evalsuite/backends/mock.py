"""A deterministic mock model: answers depend only on (sample id, seed), so whole evals run in tests
and dry runs with no model. It accepts every modality and reads no media.

Answers: a choice letter for multiple-choice requests, a point ``(x, y)`` in 0–1000 for grounding
prompts, otherwise the first words of the question. ``mock:<name>`` only renames it (two mocks can
stand side by side in a leaderboard). Options, comma-separated after the colon:
``letter=B`` answers that letter on every choice question; ``delay=0.05`` sleeps that many seconds per
request (for kill-and-resume tests); ``fail=<substring>`` raises on sample ids containing it (for
error-isolation tests).
"""

from __future__ import annotations

import hashlib
import time
from typing import Any

from evalsuite.backend import Backend
from evalsuite.registry import BACKENDS
from evalsuite.types import Request, Response


def _h(*parts: Any) -> int:
    return int.from_bytes(hashlib.sha256("|".join(map(str, parts)).encode()).digest()[:8], "little")


@BACKENDS.register("mock")
class MockBackend(Backend):
    """deterministic mock model (tests, dry runs)"""

    modalities = frozenset({"text", "image", "video", "audio"})
    backend_name = "mock"

    def __init__(self, arg: str | None = None, **options: Any) -> None:
        super().__init__(arg, **options)
        self.seed = int(options.get("seed", 0))
        opts = dict(kv.split("=", 1) for kv in (arg or "").split(",") if "=" in kv)
        self.fixed_letter = opts.get("letter")
        self.delay = float(opts.get("delay", 0.0))
        self.fail = opts.get("fail")

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

    def describe(self) -> dict[str, Any]:
        d = super().describe()
        d.update(precision=None, engine_version="mock-1")
        return d
