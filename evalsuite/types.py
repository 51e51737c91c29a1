"""Core data types: what flows between tasks, the runner, backends and scorers.

A :class:`Sample` is pure data: an id, chat messages whose content parts are typed and point at local
files, a target and metadata. Backends see :class:`Request` objects (never the target) and answer with
:class:`Response` objects. The runner scores each response into a :class:`SampleResult`, one JSON line
per sample; a :class:`RunResult`-shaped dict is written as ``results.json`` (see ``schema.py``).

Every type round-trips through plain JSON (``to_dict`` / ``from_dict``), because the files are the
contract between stages: reports, comparisons and the gate never see live objects.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Iterable, Literal, Mapping

# Task arguments that say where a benchmark's data lives, not what it is (``Task.location_keys``):
# not among the settings that make two runs comparable.
LOCATION_KEYS: tuple[str, ...] = ("data_dir", "media_dir")

PartType = Literal["text", "image", "video", "audio"]
PART_TYPES: tuple[str, ...] = ("text", "image", "video", "audio")
MEDIA_TYPES: tuple[str, ...] = ("image", "video", "audio")


@dataclass(frozen=True)
class ContentPart:
    """One typed piece of a chat message: inline text, or a local media file."""

    type: PartType
    text: str | None = None
    path: str | None = None

    def __post_init__(self) -> None:
        if self.type not in PART_TYPES:
            raise ValueError(f"content part type must be one of {PART_TYPES}, got {self.type!r}")
        if self.type == "text" and self.text is None:
            raise ValueError("a text content part needs 'text'")
        if self.type != "text" and not self.path:
            raise ValueError(f"a {self.type} content part needs 'path' (a local file)")

    @staticmethod
    def of_text(text: str) -> "ContentPart":
        return ContentPart("text", text=text)

    @staticmethod
    def of_media(kind: PartType, path: str) -> "ContentPart":
        return ContentPart(kind, path=str(path))

    def to_dict(self) -> dict[str, Any]:
        if self.type == "text":
            return {"type": "text", "text": self.text}
        return {"type": self.type, "path": self.path}

    @staticmethod
    def from_dict(d: dict[str, Any]) -> "ContentPart":
        return ContentPart(d["type"], text=d.get("text"), path=d.get("path"))


@dataclass(frozen=True)
class Message:
    role: Literal["system", "user", "assistant"]
    content: tuple[ContentPart, ...]

    def to_dict(self) -> dict[str, Any]:
        return {"role": self.role, "content": [p.to_dict() for p in self.content]}

    @staticmethod
    def from_dict(d: dict[str, Any]) -> "Message":
        return Message(d["role"], tuple(ContentPart.from_dict(p) for p in d["content"]))

    @property
    def text(self) -> str:
        return "".join(p.text or "" for p in self.content if p.type == "text")


def user(*parts: ContentPart | str) -> Message:
    """A user message from parts; bare strings become text parts."""
    return Message("user", tuple(ContentPart.of_text(p) if isinstance(p, str) else p for p in parts))


@dataclass
class Sample:
    """One evaluation item.

    ``id`` is the benchmark's own id where it has one (unique within the task). ``target`` is whatever
    the task's scorer understands (a string, a list of acceptable strings, a box, a choice letter).
    ``choices`` holds option texts for multiple-choice items. ``metadata`` carries ``category``,
    ``difficulty``, ``bucket`` and ``cluster`` (the source a sample shares with others: a video,
    document or audio file; used for clustered statistics) and anything else a scorer needs.
    """

    id: str
    messages: list[Message]
    target: Any
    choices: list[str] | None = None
    metadata: dict[str, Any] = field(default_factory=dict)
    # Set when the record could not be read (malformed, missing media): the sample is recorded as
    # errored with this message and the run goes on.
    error: str | None = None

    @property
    def media(self) -> list[ContentPart]:
        return [p for m in self.messages for p in m.content if p.type != "text"]

    @property
    def modalities(self) -> set[str]:
        return {p.type for m in self.messages for p in m.content}

    @property
    def cluster(self) -> str:
        return str(self.metadata.get("cluster", self.id))

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "messages": [m.to_dict() for m in self.messages],
            "target": self.target,
            "choices": self.choices,
            "metadata": self.metadata,
            "error": self.error,
        }

    @staticmethod
    def from_dict(d: dict[str, Any]) -> "Sample":
        return Sample(
            id=str(d["id"]),
            messages=[Message.from_dict(m) for m in d["messages"]],
            target=d.get("target"),
            choices=d.get("choices"),
            metadata=dict(d.get("metadata") or {}),
            error=d.get("error"),
        )


@dataclass
class Request:
    """What a backend sees: the messages and generation settings, never the target.

    ``media`` holds the task's preprocessing settings (fps, max_frames, patch budget, sample rate, EVS
    rate…) so every backend preprocesses the same way and the settings end up in the results.
    """

    sample_id: str
    messages: list[Message]
    max_tokens: int = 64
    temperature: float = 0.0
    top_p: float = 1.0
    stop: list[str] = field(default_factory=list)
    seed: int = 0
    media: dict[str, Any] = field(default_factory=dict)
    choices: list[str] | None = None
    task: str = ""
    # Generate max_tokens tokens whatever the model says (fixed output lengths for load tests).
    ignore_eos: bool = False
    # Refuse a prompt that leaves less room than max_tokens (the rule of OpenAI's API and vLLM, which a
    # served request follows) instead of ending the output where the context ends.
    require_room: bool = False

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["messages"] = [m.to_dict() for m in self.messages]
        return d


@dataclass
class Response:
    """A backend's answer to one request.

    Timings are seconds measured by the backend: ``ttft_s`` from request start to first output token,
    ``e2e_s`` to the last, ``token_times`` the offsets of every output token (streaming backends).
    ``info`` carries per-sample facts worth logging (video tokens before/after EVS, audio tokens…).
    """

    text: str
    prompt_tokens: int | None = None
    output_tokens: int | None = None
    ttft_s: float | None = None
    e2e_s: float | None = None
    token_times: list[float] | None = None
    finish_reason: str | None = None
    info: dict[str, Any] = field(default_factory=dict)


@dataclass
class SampleResult:
    """One scored (or errored) sample: one line of ``samples/<task>.jsonl``."""

    id: str
    task: str
    target: Any
    prediction: str | None
    score: float | None
    scores: dict[str, Any] = field(default_factory=dict)
    metadata: dict[str, Any] = field(default_factory=dict)
    error: str | None = None
    usage: dict[str, Any] = field(default_factory=dict)
    media: list[dict[str, Any]] = field(default_factory=list)
    prompt: str = ""
    choices: list[str] | None = None

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @staticmethod
    def from_dict(d: dict[str, Any]) -> "SampleResult":
        names = {f.name for f in dataclasses.fields(SampleResult)}
        return SampleResult(**{k: v for k, v in d.items() if k in names})


def one_line(e: BaseException) -> str:
    """An exception as the one line a sample's or request's ``error`` holds: its type and the first
    line of its message."""
    msg = str(e).strip().splitlines()[0] if str(e).strip() else ""
    return f"{type(e).__name__}: {msg}" if msg else type(e).__name__


def is_number(v: Any) -> bool:
    """An int or a float, not a bool (JSON's true is not the count 1)."""
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def numeric_fields(d: Mapping[str, Any], keys: Iterable[str] | None = None) -> dict[str, Any]:
    """The entries of ``d`` whose values are numbers (`is_number`), of ``keys`` only and in their order
    when given: the usage counts the server sends (``prompt_tokens_details``) and the OpenAI client
    reads back, so a stray bool or string in one never reaches a count."""
    return {k: d[k] for k in (d if keys is None else keys) if k in d and is_number(d[k])}
