"""The backend contract: turn a batch of requests into responses, and describe yourself.

A backend is created from a model name (``fp4``, ``replay:preds.jsonl``, ``openai:http://…``) by its
registered factory, ``factory(arg, **options)``, where ``arg`` is the text after the colon and
``options`` are run settings (``device``, ``seed``, ``batch_size``). It declares the modalities it
accepts; a request with another modality errors that sample with a clear message.

``generate`` may raise for the whole batch; the runner then retries the requests one by one so that
one bad sample never loses the others. ``describe`` returns provenance for ``results.json``: name,
backend, precision recipe, weights sha256, device, engine version, and anything else that identifies
what produced the numbers.
"""

from __future__ import annotations

from typing import Any, ClassVar, Iterator

from evalsuite.types import Request, Response


class UnsupportedModality(ValueError):
    pass


class BackendConfigError(ValueError):
    """A model name or its argument cannot be used (missing file, bad URL…): one line for the user."""


class Backend:
    modalities: ClassVar[frozenset[str]] = frozenset({"text"})
    backend_name: ClassVar[str] = ""

    def __init__(self, arg: str | None = None, **options: Any) -> None:
        self.arg = arg
        self.options = options

    def generate(self, requests: list[Request]) -> list[Response]:
        raise NotImplementedError

    def stream(self, request: Request) -> Iterator[tuple[float, str]]:
        """Yield (seconds since the request was sent, token text) per output token, in order."""
        raise NotImplementedError(f"backend {self.backend_name!r} does not stream")

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
