"""Sparse-event videos for ``videoqa``: a mostly static screen where coloured objects appear and
disappear, one object changes colour, a counter in the title bar goes up and a caption is shown once.

``build_video(seed, bucket, difficulty)`` is a pure function returning a :class:`VideoSpec`: the
timeline, the questions and the event log (the text form), all without drawing a pixel, so a cached
video's samples are rebuilt from the seed alone. ``render_video(spec, path)`` draws and encodes it;
``draw_sampled_frames(spec, fps, max_frames)`` draws, in memory, the frames that sampling that file
would decode (training's fast path: no H.264 encode and decode; eval keeps going through the file).

Timeline. Events are laid out on a grid of *units*: the clip is cut into ``n`` equal units, where ``n``
is the number of frames :func:`evalsuite.media.frame_times` samples at the design sampling
(``DESIGN_FPS``, ``DESIGN_MAX_FRAMES``; the task's defaults). Sampled frames sit at unit centres, so an
event spanning at least 2 whole units is seen by at least 2 sampled frames, the gap between two
appearances of one object (≥ 2 units) is seen too, and two starts in different units are seen in
order. Events asked about with "in which quarter" lie inside one quarter. Denser sampling sees all of
this as well; sparser sampling (fewer frames than the design) may miss events.

Frames. Each frame is drawn on a 96x64 pixel-art canvas (title bar with the counter, a 4x2 grid of
cells, one object per cell, a caption band) and scaled up by an integer factor: short clips are
192x128 at 2 fps, medium and long ones 96x64 at 1 fps. Encoding is H.264 (libx264, yuv420p, long
GOPs: a static hour is ~100 kB and a sparse seek decodes at most one GOP); when the bundled ffmpeg
lacks libx264 the encoder falls back to MPEG-4 part 2 in the same MP4 container, with a warning.
"""

from __future__ import annotations

import functools
import math
import random
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from evalsuite.media import frame_times
from evalsuite.tasks.common import atomic_path

DIFFICULTIES = ("easy", "default", "hard")
BUCKETS = ("short", "medium", "long")
CATEGORIES = ("order", "count", "attribute", "when")
DESIGN_FPS = 0.5
DESIGN_MAX_FRAMES = 32

SHAPES = ("square", "circle", "triangle", "diamond", "cross", "ring", "bar", "frame")
COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (230, 30, 30), "green": (30, 200, 50), "blue": (40, 80, 250), "yellow": (245, 225, 30),
    "magenta": (225, 40, 225), "cyan": (30, 225, 235), "orange": (255, 140, 0), "white": (250, 250, 250),
}
WORDS = ("CAT", "SUN", "BOX", "MAP", "KEY", "CUP", "PEN", "HAT", "OWL", "FOX", "JAR", "BUS", "ICE", "LOG",
         "NET", "RUG", "TOY", "VAN", "WEB", "ZIP", "CAR", "CAP", "COW", "SKY")
QUARTERS = ("the first quarter", "the second quarter", "the third quarter", "the last quarter")
RANKS = ("first", "second", "third", "last")

# Base canvas layout (96x64): title bar, 4x2 object cells, caption band.
BASE_W, BASE_H = 96, 64
BAR_H, CELL_TOP, CELL_W, CELL_H, CAPTION_TOP = 12, 13, 24, 19, 52
BACKGROUND, BAR, BAND, INK = (34, 34, 42), (66, 66, 88), (12, 12, 12), (255, 255, 255)


@dataclass(frozen=True)
class Bucket:
    """Duration range (s), integer upscale of the 96x64 canvas, encoding frame rate, GOP (s)."""

    duration: tuple[int, int]
    scale: int
    fps: int
    gop_s: int


BUCKET_SPECS = {
    "short": Bucket((40, 59), 2, 2, 10),
    "medium": Bucket((300, 900), 1, 1, 30),
    "long": Bucket((3600, 4200), 1, 1, 60),
}


@dataclass(frozen=True)
class Profile:
    """How a difficulty level lays out a timeline (all lengths in units)."""

    span: tuple[int, int]  # length of one appearance
    order_gap: int  # least difference between the start units of the order objects
    distinct_quarters: bool  # order objects each in their own quarter
    count: tuple[int, int]  # appearances of the counted object
    counter: tuple[int, int]  # counter increments
    distractors: int  # extra objects never asked about


PROFILES = {
    "easy": Profile((3, 4), 2, True, (1, 3), (1, 3), 0),
    "default": Profile((2, 3), 2, False, (1, 4), (1, 4), 1),
    "hard": Profile((2, 2), 1, False, (2, 5), (2, 5), 2),
}


@dataclass(frozen=True)
class Thing:
    """An on-screen object: visible during ``spans`` (units, end exclusive) in its own cell."""

    role: str  # order | count | change | distractor
    shape: str
    colour: str
    cell: int
    spans: tuple[tuple[int, int], ...]
    change: tuple[int, str] | None = None  # (unit, new colour)

    @property
    def name(self) -> str:
        return f"{self.colour} {self.shape}"


@dataclass(frozen=True)
class Question:
    category: str
    subtype: str
    text: str
    options: tuple[str, ...]
    answer: int  # index into options


@dataclass
class VideoSpec:
    seed: int
    bucket: str
    difficulty: str
    duration_s: int
    fps: int
    scale: int
    gop_s: int
    units: int
    things: list[Thing]
    counter: tuple[int, ...]  # units at which the counter goes up by one
    caption: tuple[str, int, int]  # word, start unit, end unit
    questions: list[Question] = field(default_factory=list)

    @property
    def unit_s(self) -> float:
        return self.duration_s / self.units

    @property
    def size(self) -> tuple[int, int]:
        return BASE_W * self.scale, BASE_H * self.scale

    def cell_box(self, cell: int) -> tuple[int, int, int, int]:
        """Pixel box (x0, y0, x1, y1; end exclusive) of ``cell`` in the encoded frame."""
        x0, y0 = (cell % 4) * CELL_W, CELL_TOP + (cell // 4) * CELL_H
        s = self.scale
        return x0 * s, y0 * s, (x0 + CELL_W) * s, (y0 + CELL_H) * s

    def state(self, t: float) -> tuple[tuple[tuple[str, int, str], ...], int, str]:
        """What is on screen at ``t`` seconds: (shape, cell, colour) per visible object, counter, caption."""
        x = t / self.unit_s
        shown = []
        for th in self.things:
            if any(a <= x < b for a, b in th.spans):
                colour = th.change[1] if th.change and x >= th.change[0] else th.colour
                shown.append((th.shape, th.cell, colour))
        word, a, b = self.caption
        return tuple(shown), sum(1 for u in self.counter if x >= u), word if a <= x < b else ""

    def event_log(self) -> str:
        """The text form: every change on screen with its time stamp, in order."""
        events: list[tuple[float, int, str]] = []
        for th in self.things:
            for a, b in th.spans:
                events.append((a * self.unit_s, 1, f"the {th.name} appears"))
                if b < self.units:
                    events.append((b * self.unit_s, 0, f"the {th.name} disappears"))
            if th.change:
                events.append((th.change[0] * self.unit_s, 2, f"the {th.shape} turns {th.change[1]}"))
        for value, u in enumerate(self.counter, start=1):
            events.append((u * self.unit_s, 2, f"the counter shows {value}"))
        word, a, b = self.caption
        events.append((a * self.unit_s, 1, f"the word {word} is shown"))
        events.append((b * self.unit_s, 0, f"the word {word} is hidden"))
        lines = [f"video of {clock(self.duration_s)}; the counter shows 0"]
        lines += [f"{clock(t)} {text}" for t, _, text in sorted(events)]
        return "\n".join(lines)


def clock(seconds: float) -> str:
    """``m:ss``, or ``h:mm:ss`` from an hour on."""
    s = int(round(seconds))
    h, m = divmod(s // 60, 60)
    return f"{h}:{m:02d}:{s % 60:02d}" if h else f"{m}:{s % 60:02d}"


def design_units(duration_s: float) -> int:
    """Number of frames sampled at the design sampling: the timeline's unit count."""
    return len(frame_times(duration_s, DESIGN_FPS, DESIGN_MAX_FRAMES))


# ---- timeline -----------------------------------------------------------------------------------
def _quarter_range(q: int, n: int) -> tuple[int, int]:
    """Whole units inside quarter ``q`` of an ``n``-unit clip: [lo, hi)."""
    return math.ceil(q * n / 4), math.floor((q + 1) * n / 4)


def _quarter_of(unit: float, n: int) -> int:
    return min(3, int(unit * 4 // n))


def _spread(rng: random.Random, lengths: list[int], gaps: list[int], n: int, start: int = 0) -> list[tuple[int, int]]:
    """Place spans of ``lengths`` in order within [start, n), at least ``gaps[i]`` apart, slack at random."""
    slack = n - start - sum(lengths) - sum(gaps)
    if slack < 0:
        raise ValueError(f"timeline of {n} units cannot hold spans {lengths} with gaps {gaps}")
    cuts = sorted(rng.randint(0, slack) for _ in lengths)
    spans, pos = [], start
    for i, length in enumerate(lengths):
        a = pos + cuts[i] - (cuts[i - 1] if i else 0)
        spans.append((a, a + length))
        pos = a + length + (gaps[i] if i < len(gaps) else 0)
    return spans


def _order_spans(rng: random.Random, p: Profile, n: int) -> list[tuple[int, int]]:
    """Four single appearances, each inside one quarter, with start units ``order_gap`` apart."""
    for _ in range(200):
        if p.distinct_quarters:
            quarters = rng.sample(range(4), 4)
        else:
            quarters = [rng.randrange(4) for _ in range(4)]
            if max(quarters.count(q) for q in range(4)) > 2:
                continue
        spans = []
        for q in quarters:
            lo, hi = _quarter_range(q, n)
            length = rng.randint(*p.span)
            spans.append((a := rng.randint(lo, max(lo, hi - length)), a + length))
        starts = sorted(a for a, _ in spans)
        fits = all(b <= _quarter_range(q, n)[1] for (_, b), q in zip(spans, quarters))
        if fits and all(y - x >= p.order_gap for x, y in zip(starts, starts[1:])):
            return spans
    raise ValueError(f"no order layout fits {n} units")  # unreachable for n >= 20 (tested)


def _in_quarter(rng: random.Random, length: int, n: int) -> tuple[int, int]:
    lo, hi = _quarter_range(rng.randrange(4), n)
    a = rng.randint(lo, hi - length)
    return a, a + length


def build_video(seed: int, bucket: str, difficulty: str = "default") -> VideoSpec:
    """The video of ``seed``: timeline, questions and event log (nothing drawn)."""
    if bucket not in BUCKET_SPECS:
        raise ValueError(f"bucket must be one of {BUCKETS}, got {bucket!r}")
    if difficulty not in PROFILES:
        raise ValueError(f"difficulty must be one of {DIFFICULTIES}, got {difficulty!r}")
    b, p = BUCKET_SPECS[bucket], PROFILES[difficulty]
    rng = random.Random(f"videoqa:{difficulty}:{bucket}:{seed}")
    duration = rng.randint(*b.duration)
    n = design_units(duration)
    shapes, cells = rng.sample(SHAPES, len(SHAPES)), rng.sample(range(8), 8)
    colours = list(COLOURS)

    def thing(i: int, role: str, spans: list[tuple[int, int]], change: tuple[int, str] | None = None,
              colour: str | None = None) -> Thing:
        return Thing(role, shapes[i], colour or rng.choice(colours), cells[i], tuple(spans), change)

    things = [thing(i, "order", [s]) for i, s in enumerate(_order_spans(rng, p, n))]
    k = rng.randint(*p.count)
    things.append(thing(4, "count", _spread(rng, [rng.randint(*p.span) for _ in range(k)], [2] * (k - 1), n)))
    start = rng.randint(0, n // 8)
    ok = [u for u in range(start + 2, n - 1) if all(abs(u - j * n / 4) >= 1 for j in (1, 2, 3))]
    old = rng.choice(colours)
    things.append(thing(5, "change", [(start, n)], (rng.choice(ok), rng.choice([c for c in colours if c != old])), old))
    for i in range(p.distractors):
        length = rng.randint(*p.span)
        a = rng.randint(0, n - length)
        things.append(thing(6 + i, "distractor", [(a, a + length)]))
    m = rng.randint(*p.counter)
    counter = tuple(a for a, _ in _spread(rng, [1] * m, [1] * (m - 1), n - 1, start=2))
    word = rng.choice(WORDS)
    caption = (word, *_in_quarter(rng, rng.randint(*p.span), n))
    spec = VideoSpec(seed, bucket, difficulty, duration, b.fps, b.scale, b.gop_s, n, things, counter, caption)
    spec.questions = _questions(rng, spec, difficulty)
    return spec


# ---- questions ----------------------------------------------------------------------------------
def _options(rng: random.Random, answer: str, pool: list[str]) -> tuple[tuple[str, ...], int]:
    opts = [answer] + rng.sample([x for x in pool if x != answer], 3)
    rng.shuffle(opts)
    return tuple(opts), opts.index(answer)


def _numbers(rng: random.Random, value: int) -> tuple[tuple[str, ...], int]:
    lo = rng.randint(max(0, value - 3), value)
    return _options(rng, str(value), [str(v) for v in range(lo, lo + 4)])


def _word_pool(word: str, difficulty: str) -> list[str]:
    """Distractor words; "hard" prefers words sharing a letter position with the answer."""
    others = [w for w in WORDS if w != word]
    if difficulty == "hard":
        close = [w for w in others if any(x == y for x, y in zip(w, word))]
        return close if len(close) >= 3 else others
    return others


def _questions(rng: random.Random, spec: VideoSpec, difficulty: str) -> list[Question]:
    n = spec.units
    order = sorted((t for t in spec.things if t.role == "order"), key=lambda t: t.spans[0][0])
    names = [t.name for t in order]
    counted = next(t for t in spec.things if t.role == "count")
    changed = next(t for t in spec.things if t.role == "change")
    assert changed.change is not None
    word, wa, _ = spec.caption
    pool: dict[str, list[Question]] = {c: [] for c in CATEGORIES}
    for rank, thing in zip(RANKS, order):
        opts, ans = _options(rng, thing.name, names)
        pool["order"].append(Question("order", rank, f"Which of these appeared {rank}?", opts, ans))
    pool["count"].append(Question("count", "object", f"How many times did the {counted.name} appear?",
                                  *_numbers(rng, len(counted.spans))))
    pool["count"].append(Question("count", "counter", "How many times did the counter go up?",
                                  *_numbers(rng, len(spec.counter))))
    colours = list(COLOURS)
    for thing in order + [counted]:
        pool["attribute"].append(Question("attribute", "colour", f"What colour was the {thing.shape}?",
                                          *_options(rng, thing.colour, colours)))
    new = changed.change[1]
    opts_list = [new, changed.colour] + rng.sample([c for c in colours if c not in (new, changed.colour)], 2)
    rng.shuffle(opts_list)  # the old colour is always a distractor
    pool["attribute"].append(Question("attribute", "change", f"What colour did the {changed.shape} change to?",
                                      tuple(opts_list), opts_list.index(new)))
    pool["attribute"].append(Question("attribute", "caption", "Which word was shown at the bottom?",
                                      *_options(rng, word, _word_pool(word, difficulty))))
    for thing in order:
        pool["when"].append(Question("when", "object", f"In which quarter of the video did the {thing.name} appear?",
                                     QUARTERS, _quarter_of(thing.spans[0][0], n)))
    pool["when"].append(Question("when", "change", f"In which quarter of the video did the {changed.shape} change colour?",
                                 QUARTERS, _quarter_of(changed.change[0], n)))
    pool["when"].append(Question("when", "caption", f"In which quarter of the video was the word {word} shown?",
                                 QUARTERS, _quarter_of(wa, n)))
    want = 12 if spec.bucket == "long" else 8
    left = {c: rng.sample(qs, len(qs)) for c, qs in pool.items()}
    out: list[Question] = []
    while len(out) < want and any(left.values()):
        for c in CATEGORIES:
            if left[c] and len(out) < want:
                out.append(left[c].pop())
    return out


# ---- rendering ----------------------------------------------------------------------------------
@functools.lru_cache(maxsize=1)
def _font() -> ImageFont.ImageFont:
    """Pillow's built-in bitmap font (6x11 px, no anti-aliasing), the same on every machine."""
    if hasattr(ImageFont, "load_default_imagefont"):
        return ImageFont.load_default_imagefont()
    return ImageFont.load_default()  # type: ignore[return-value]


def _draw_shape(draw: ImageDraw.ImageDraw, shape: str, cell: int, rgb: tuple[int, int, int]) -> None:
    cx, cy = (cell % 4) * CELL_W + CELL_W // 2, CELL_TOP + (cell // 4) * CELL_H + CELL_H // 2
    box = (cx - 7, cy - 7, cx + 7, cy + 7)
    if shape == "square":
        draw.rectangle(box, fill=rgb)
    elif shape == "circle":
        draw.ellipse(box, fill=rgb)
    elif shape == "triangle":
        draw.polygon([(cx, cy - 7), (cx - 8, cy + 7), (cx + 8, cy + 7)], fill=rgb)
    elif shape == "diamond":
        draw.polygon([(cx, cy - 8), (cx + 8, cy), (cx, cy + 8), (cx - 8, cy)], fill=rgb)
    elif shape == "cross":
        draw.rectangle((cx - 2, cy - 7, cx + 2, cy + 7), fill=rgb)
        draw.rectangle((cx - 7, cy - 2, cx + 7, cy + 2), fill=rgb)
    elif shape == "ring":
        draw.ellipse(box, outline=rgb, width=3)
    elif shape == "bar":
        draw.rectangle((cx - 9, cy - 3, cx + 9, cy + 3), fill=rgb)
    elif shape == "frame":
        draw.rectangle(box, outline=rgb, width=3)
    else:
        raise ValueError(f"shape must be one of {SHAPES}, got {shape!r}")


def draw_frame(spec: VideoSpec, state: tuple[tuple[tuple[str, int, str], ...], int, str]) -> np.ndarray:
    """One frame (uint8 HxWx3 at the encoded size) showing ``state`` (see :meth:`VideoSpec.state`)."""
    shown, count, word = state
    image = Image.new("RGB", (BASE_W, BASE_H), BACKGROUND)
    draw = ImageDraw.Draw(image)
    draw.rectangle((0, 0, BASE_W - 1, BAR_H - 1), fill=BAR)
    draw.text((3, 0), str(count), font=_font(), fill=INK)
    draw.rectangle((0, CAPTION_TOP, BASE_W - 1, BASE_H - 1), fill=BAND)
    if word:
        width = int(_font().getbbox(word)[2])
        draw.text(((BASE_W - width) // 2, CAPTION_TOP), word, font=_font(), fill=INK)
    for shape, cell, colour in shown:
        _draw_shape(draw, shape, cell, COLOURS[colour])
    pixels = np.asarray(image)
    return pixels.repeat(spec.scale, axis=0).repeat(spec.scale, axis=1) if spec.scale > 1 else pixels


def video_codec() -> str:
    """libx264 when the bundled ffmpeg has it, else MPEG-4 part 2 (with a warning)."""
    import av

    if "libx264" in av.codecs_available:
        return "libx264"
    warnings.warn("PyAV's ffmpeg has no libx264; videoqa falls back to MPEG-4 part 2", stacklevel=2)
    return "mpeg4"


def render_video(spec: VideoSpec, path: str | Path) -> None:
    """Draw every frame and encode the MP4 atomically; a frame is redrawn only when the screen changes."""
    import av

    codec = video_codec()
    width, height = spec.size
    with atomic_path(path) as tmp:
        with av.open(tmp, mode="w", format="mp4") as out:
            stream = out.add_stream(codec, rate=spec.fps)
            stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
            stream.codec_context.gop_size = spec.gop_s * spec.fps
            if codec == "libx264":
                stream.options = {"crf": "18", "preset": "veryfast", "threads": "1"}
            else:
                stream.options = {"qscale": "3"}
            last, pixels = None, None
            for i in range(spec.duration_s * spec.fps):
                state = spec.state(i / spec.fps)
                if state != last:
                    last, pixels = state, draw_frame(spec, state)
                frame = av.VideoFrame.from_ndarray(pixels, format="rgb24")
                frame.pts = i
                for packet in stream.encode(frame):
                    out.mux(packet)
            for packet in stream.encode(None):
                out.mux(packet)


def draw_sampled_frames(spec: VideoSpec, fps: float, max_frames: int) -> tuple[np.ndarray, list[float]]:
    """The frames and timestamps `evalsuite.media.sample_frames` returns for ``render_video(spec)``'s
    file at ``fps`` / ``max_frames``, drawn directly: uint8 ``[N, H, W, 3]``.

    Sampling picks, for each time of `frame_times`, the first encoded frame at or after half a frame
    before it; frame ``i`` shows ``spec.state(i / spec.fps)``. The only difference from the decoded
    frames is the codec's loss (yuv420p chroma, CRF 18), a few grey levels on average.
    """
    n_frames = spec.duration_s * spec.fps
    half = 0.5 / spec.fps
    frames: list[np.ndarray] = []
    stamps: list[float] = []
    drawn: dict[tuple, np.ndarray] = {}
    for t in frame_times(float(spec.duration_s), fps, max_frames):
        i = min(max(0, math.ceil((t - half) * spec.fps - 1e-6)), n_frames - 1)
        state = spec.state(i / spec.fps)
        if state not in drawn:
            drawn[state] = draw_frame(spec, state)
        frames.append(drawn[state])
        stamps.append(i / spec.fps)
    return np.stack(frames), stamps
