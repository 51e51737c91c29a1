"""Byte-level tokenizer for the reference model: 256 byte ids, then a fixed list of special tokens.

Text is its UTF-8 bytes, one id each, so every string round-trips and no text can ever produce a
special id — a prompt that *spells* ``<|user|>`` or ``<image>`` stays plain bytes. Specials are only
inserted structurally by :meth:`ByteTokenizer.apply_chat`:

    <bos> <|system|> …bytes… <|end|> <|user|> …bytes… <image_start> <image>×N <image_end> … <|end|>
    <|assistant|>                       (generation prompt; the model answers and closes with <|end|>)

A media part becomes its begin marker, N placeholder ids and its end marker. N depends on the
encoder and the preprocessing (image grid, video tubelets after EVS, audio length), so the caller
supplies it through a callback; the engine later scatters the encoder's N output vectors into the
placeholder positions (:meth:`ByteTokenizer.media_spans` finds them).

A tokenizer built with ``loc_bins`` K > 0 has 2K location tokens after the specials: ``<loc_x_i>``
then ``<loc_y_j>`` (i, j < K), a point's column and row on the 0–1000 scale cut into K equal bins, as
PaliGemma and Florence-2 emit places. Text never produces them either; a grounding answer "(x, y)"
becomes the two ids (`ByteTokenizer.point_ids`, used by training), and decoding renders them back as
"(cx, " and "cy)" with each bin's centre, so scoring and answer formats are unchanged.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Mapping, Sequence

from evalsuite.types import ContentPart, Message

SPECIAL_TOKENS: tuple[str, ...] = (
    "<pad>", "<bos>", "<eos>",
    "<|system|>", "<|user|>", "<|assistant|>", "<|end|>",
    "<image>", "<video>", "<audio>",
    "<image_start>", "<image_end>", "<video_start>", "<video_end>", "<audio_start>", "<audio_end>",
)
N_BYTES = 256
ROLES: tuple[str, ...] = ("system", "user", "assistant")
MEDIA_KINDS: tuple[str, ...] = ("image", "video", "audio")
# The scale location tokens cut into bins: the gui task's default ``norm1000`` answers.
LOC_SCALE = 1000
_POINT = re.compile(r"\(\s*(\d+(?:\.\d+)?)\s*,\s*(\d+(?:\.\d+)?)\s*\)")

MediaTokenCount = Callable[[ContentPart], int]


@dataclass(frozen=True)
class MediaSpan:
    """Placeholder run of one media part in a token sequence: ids[start:start+length] are ``<kind>``."""

    kind: str
    start: int
    length: int


class ByteTokenizer:
    """UTF-8 bytes (ids 0..255) + :data:`SPECIAL_TOKENS` (ids 256..271) + ``2 * loc_bins`` location
    tokens (ids 272..); ``vocab_size`` = 272 + 2 * loc_bins."""

    def __init__(self, loc_bins: int = 0) -> None:
        if not isinstance(loc_bins, int) or isinstance(loc_bins, bool) or not 0 <= loc_bins <= LOC_SCALE:
            raise ValueError(f"loc_bins must be an int in [0, {LOC_SCALE}], got {loc_bins!r}")
        self.special_ids: dict[str, int] = {name: N_BYTES + i for i, name in enumerate(SPECIAL_TOKENS)}
        self.special_names: dict[int, str] = {i: n for n, i in self.special_ids.items()}
        self.loc_bins = loc_bins
        self.loc_start = N_BYTES + len(SPECIAL_TOKENS)  # <loc_x_0>; <loc_y_0> is loc_start + loc_bins
        self.vocab_size: int = self.loc_start + 2 * loc_bins
        self.pad_id = self.special_ids["<pad>"]
        self.bos_id = self.special_ids["<bos>"]
        self.eos_id = self.special_ids["<eos>"]
        self.end_id = self.special_ids["<|end|>"]
        self.role_ids = {r: self.special_ids[f"<|{r}|>"] for r in ROLES}
        self.placeholder_ids = {k: self.special_ids[f"<{k}>"] for k in MEDIA_KINDS}
        self.start_ids = {k: self.special_ids[f"<{k}_start>"] for k in MEDIA_KINDS}
        self.end_ids = {k: self.special_ids[f"<{k}_end>"] for k in MEDIA_KINDS}

    @property
    def stop_ids(self) -> tuple[int, ...]:
        """Ids that end an assistant turn."""
        return (self.end_id, self.eos_id)

    def token_id(self, name: str) -> int:
        if name not in self.special_ids:
            raise KeyError(f"unknown special token {name!r}; expected one of {list(SPECIAL_TOKENS)}")
        return self.special_ids[name]

    def is_special(self, token: int) -> bool:
        return N_BYTES <= token < self.loc_start

    # ---- locations ----------------------------------------------------------------------------
    def is_location(self, token: int) -> bool:
        return self.loc_start <= token < self.vocab_size

    def loc_bin(self, value: float) -> int:
        """The bin of a coordinate on the 0–1000 scale (values outside are clamped)."""
        return min(self.loc_bins - 1, max(0, int(value * self.loc_bins // LOC_SCALE)))

    def bin_centre(self, i: int) -> int:
        """Bin ``i``'s centre on the 0–1000 scale, rounded to an integer as answers are written."""
        return round((i + 0.5) * LOC_SCALE / self.loc_bins)

    def location_name(self, token: int) -> str:
        axis, i = divmod(token - self.loc_start, self.loc_bins)
        return f"<loc_{'xy'[axis]}_{i}>"

    def location_text(self, token: int) -> str:
        """What a location token reads as: "(cx, " for a column bin, "cy)" for a row bin."""
        if not self.is_location(token):
            raise ValueError(f"token id {token} is not a location token: expected {self.loc_start}.."
                             f"{self.vocab_size - 1}")
        axis, i = divmod(token - self.loc_start, self.loc_bins)
        return f"({self.bin_centre(i)}, " if axis == 0 else f"{self.bin_centre(i)})"

    def point_ids(self, text: str) -> list[int] | None:
        """A whole answer "(x, y)" on the 0–1000 scale → [<loc_x_i>, <loc_y_j>]; None when the tokenizer
        has no location tokens or the text is not exactly one such point."""
        m = _POINT.fullmatch(text.strip())
        if not self.loc_bins or m is None:
            return None
        x, y = float(m.group(1)), float(m.group(2))
        if x > LOC_SCALE or y > LOC_SCALE:
            return None
        return [self.loc_start + self.loc_bin(x), self.loc_start + self.loc_bins + self.loc_bin(y)]

    # ---- text ---------------------------------------------------------------------------------
    def encode(self, text: str, *, bos: bool = False, eos: bool = False) -> list[int]:
        """Plain text → byte ids (never a special id), optionally framed by <bos>/<eos>."""
        if not isinstance(text, str):
            raise TypeError(f"encode expects str, got {type(text).__name__}")
        ids = list(text.encode("utf-8"))
        return ([self.bos_id] if bos else []) + ids + ([self.eos_id] if eos else [])

    def decode(self, ids: Iterable[int], *, skip_special: bool = True) -> str:
        """Ids → text. Byte runs are decoded as UTF-8 (invalid sequences become U+FFFD); location
        tokens read as their coordinates (`location_text`); specials are dropped, or written as their
        names with ``skip_special=False``."""
        out: list[str] = []
        buf = bytearray()
        for raw in ids:
            t = int(raw)
            if 0 <= t < N_BYTES:
                buf.append(t)
                continue
            if not 0 <= t < self.vocab_size:
                raise ValueError(f"token id {t} out of range: expected 0..{self.vocab_size - 1}")
            if buf:
                out.append(buf.decode("utf-8", errors="replace"))
                buf.clear()
            if self.is_location(t):
                out.append(self.location_text(t))
            elif not skip_special:
                out.append(self.special_names[t])
        if buf:
            out.append(buf.decode("utf-8", errors="replace"))
        return "".join(out)

    # ---- chat ---------------------------------------------------------------------------------
    def apply_chat(self, messages: Sequence[Message | Mapping[str, Any]], media_tokens: MediaTokenCount | None = None,
                   *, add_generation_prompt: bool = True, bos: bool = True) -> list[int]:
        """Chat messages (harness :class:`Message` or their dicts) → ids.

        ``media_tokens(part)`` returns how many placeholder tokens a media part takes (what its
        encoder will output for it); required when a message has media.
        """
        ids: list[int] = [self.bos_id] if bos else []
        for raw in messages:
            msg = raw if isinstance(raw, Message) else Message.from_dict(dict(raw))
            if msg.role not in self.role_ids:
                raise ValueError(f"message role must be one of {ROLES}, got {msg.role!r}")
            ids.append(self.role_ids[msg.role])
            for part in msg.content:
                if part.type == "text":
                    ids.extend(self.encode(part.text or ""))
                    continue
                if media_tokens is None:
                    raise ValueError(f"a {part.type} part ({part.path}) needs a media_tokens callback "
                                     "to size its placeholders")
                n = media_tokens(part)
                if not isinstance(n, int) or isinstance(n, bool) or n < 1:
                    raise ValueError(f"media_tokens must return a positive int for {part.type} {part.path}, got {n!r}")
                ids.append(self.start_ids[part.type])
                ids.extend([self.placeholder_ids[part.type]] * n)
                ids.append(self.end_ids[part.type])
            ids.append(self.end_id)
        if add_generation_prompt:
            ids.append(self.role_ids["assistant"])
        return ids

    def media_spans(self, ids: Sequence[int]) -> list[MediaSpan]:
        """Placeholder runs in order of appearance (one per media part, delimited by its markers)."""
        spans: list[MediaSpan] = []
        kind_of_start = {v: k for k, v in self.start_ids.items()}
        i = 0
        while i < len(ids):
            kind = kind_of_start.get(int(ids[i]))
            if kind is None:
                i += 1
                continue
            j = i + 1
            while j < len(ids) and int(ids[j]) == self.placeholder_ids[kind]:
                j += 1
            if j >= len(ids) or int(ids[j]) != self.end_ids[kind]:
                raise ValueError(f"unterminated {kind} span starting at position {i}")
            spans.append(MediaSpan(kind, i + 1, j - i - 1))
            i = j + 1
        return spans


__all__ = ["ByteTokenizer", "MediaSpan", "SPECIAL_TOKENS", "N_BYTES", "LOC_SCALE", "MediaTokenCount"]
