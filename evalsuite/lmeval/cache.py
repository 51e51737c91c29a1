"""The model's answers to lm-eval's requests, kept in the run folder so that an ``lmeval:<task>`` run
cut short (Ctrl-C, a crash, a backend that died) and run again asks the backend only for the rest.

One JSON line per answered request, ``{"key", "type", "answer", "s"}``, appended, flushed and fsynced
after every batch (a torn last line, from a kill mid-write, is cut off before the next append and
read as a miss). The key hashes what decides the answer:

- the scope: the run's config hash (task name, version and args, lm-eval's version, the model's
  identity) and the backend's device and precision, so that a changed config never replays another
  model's answers;
- the request type and lm-eval's arguments for it (context, generation arguments, continuation;
  images and audio by a digest of their content);
- for ``generate_until``, the request's sampling seed: each repeat of a document (``repeats: N``)
  samples with its own seed and keeps its own answer.

``s`` is the seconds the answer took (its batch's time, shared among the batch's answers): a
replayed answer adds it to the run's wall time (``replayed_s``), so a resumed run reports the time its
answers took, not only the rerun's, as every task's resume does.

Only answers are stored: a request that failed (``EvalsuiteLM.errors``) is not, so a rerun asks for it
again. Why not lm-eval's ``CachingLM`` (sqlitedict, lm-eval 0.4), the cache of lm-eval's own CLI: it
stores a call's answers only once the whole call has returned (lm-eval hands the model every request
of a type in one call; the model feeds it each answer as it comes, `EvalsuiteLM._partial`, only under
lm-eval's CLI); it stores the empty answer a failed request is given as if the model had said it (the
CLI's ``main`` removes those after the run, `EvalsuiteLM.forget_unkept`, not before it ends); its key
is lm-eval's arguments alone, the same for every model and every repeat of a document (a sampled task
without ``do_sample: true`` replayed one answer for all of them); and its hashing raises on audio arrays.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

from evalsuite.results import repair_jsonl


def _digest(obj: Any) -> Any:
    """JSON ``default`` for request arguments: media by a digest of its content (never a repr, which
    would differ from one run to the next); anything else is not cacheable (TypeError)."""
    import numpy as np
    from PIL import Image

    if isinstance(obj, (bytes, bytearray)):
        return {"bytes_sha256": hashlib.sha256(bytes(obj)).hexdigest()}
    if isinstance(obj, Path):
        return str(obj)
    if isinstance(obj, np.ndarray):  # audio
        return {"array_sha256": hashlib.sha256(np.ascontiguousarray(obj).tobytes()).hexdigest(),
                "dtype": str(obj.dtype), "shape": list(obj.shape)}
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, Image.Image):
        return {"image_sha256": hashlib.sha256(obj.tobytes()).hexdigest(), "mode": obj.mode, "size": list(obj.size)}
    raise TypeError(f"{type(obj).__name__} is not cacheable")


class AnswerCache:
    """Answers by request key, read from ``path`` and appended to it batch by batch."""

    def __init__(self, path: str | os.PathLike[str], scope: dict[str, Any]) -> None:
        self.path = Path(path)
        self.scope = hashlib.sha256(json.dumps(scope, sort_keys=True, default=str).encode()).hexdigest()
        self._answers: dict[str, Any] = {}
        self._seconds: dict[str, float] = {}
        self.hits = 0  # answers replayed this run
        self.replayed_s = 0.0  # the time the replayed answers took when they were computed
        self._repaired = False
        try:
            lines = self.path.read_bytes().split(b"\n")
        except FileNotFoundError:
            lines = []
        for line in lines:
            try:
                row = json.loads(line)
                self._answers[row["key"]] = row["answer"]
                self._seconds[row["key"]] = float(row.get("s") or 0.0)
            except (ValueError, TypeError, KeyError):  # a torn or foreign line: a miss, asked again
                continue
        self.loaded = len(self._answers)  # answers an earlier run kept

    def key(self, kind: str, args: Any, seed: int | None = None) -> str | None:
        """The key of one request; None when its arguments cannot be hashed (answered, not cached)."""
        try:
            text = json.dumps([self.scope, kind, list(args), seed], sort_keys=True, default=_digest)
        except (TypeError, ValueError):
            return None
        return hashlib.sha256(text.encode()).hexdigest()

    def get(self, key: str | None) -> tuple[bool, Any]:
        """(found, answer)."""
        if key is None or key not in self._answers:
            return False, None
        self.hits += 1
        self.replayed_s += self._seconds.get(key, 0.0)
        return True, self._answers[key]

    def put(self, kind: str, answers: list[tuple[str | None, Any]], seconds: float = 0.0) -> None:
        """Append one batch's answers, which took ``seconds`` together, and make them durable before
        the next batch is asked for."""
        rows = [(k, a) for k, a in answers if k is not None]
        if not rows:
            return
        each = max(0.0, float(seconds)) / len(answers)
        if not self._repaired:  # once: a torn last line of a killed run is cut, appends start on a new line
            self.path.parent.mkdir(parents=True, exist_ok=True)
            repair_jsonl(self.path)
            self._repaired = True
        with open(self.path, "a", encoding="utf-8") as f:
            for k, a in rows:
                f.write(json.dumps({"key": k, "type": kind, "answer": a, "s": round(each, 6)},
                                   ensure_ascii=False) + "\n")
                self._answers[k] = a
                self._seconds[k] = each
            f.flush()
            os.fsync(f.fileno())
