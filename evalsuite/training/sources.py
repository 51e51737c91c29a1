"""Training sources: the example makers behind every name in a stage's mixture.

Every example comes from the synthetic tasks' ``train`` split (seeds disjoint from the eval split)
or is drawn fresh from a seeded generator; nothing reads the eval split. The sources:

    <task>          a task's own train questions (``docqa``, ``gui``, ``videoqa``, ``audioqa``); every
                    question about the same media file rides along as a follow-up turn (one encoding)
    <task>-wide     the same task from a pool too wide to learn by heart (`WIDE_POOLS`)
    text:<task>     the media replaced by its text form (a document's text, a screen's element list,
                    a video's event log, a clip's transcript), then the question
    line            one rendered line of generator words, numbers and codes on its own small canvas
    page-line       such a line placed at random on a page-sized canvas
    char-line       a line of random characters (no word to guess: every character must be read)
    transcribe      a train document and its text, line by line
    point           widgets scattered on an empty screen, "Click: <name>" -> the widget's centre
    hear            a train clip with words and its transcript (the audio encoder's CTC target)
    choose          multiple-choice questions that name their option outright -> its letter
    choose-say      the same questions answered "<the option's text>. Answer: <letter>" (`say_answer`)

Fresh sources (`FRESH_SOURCES`) draw a new train item for every example straight from its generator,
in memory, never from a pool and never through a media file, so there is nothing to learn by heart:

    videoqa-fresh   a new train video's questions; its sampled frames drawn directly
                    (`evalsuite.tasks.gen.video.draw_sampled_frames`: no H.264 encode and decode)
    videoqa-open    the same questions without their options, answered with the right option's text
                    ("red", "3", "the second quarter"): the content of an answer without its letter
    videoqa-say     the lettered questions answered with the option's text, then its letter
                    ("red. Answer: C", `say_answer`): the content first, so that naming the letter
                    is `choose-say`'s look-up of a text just written
    docqa-fresh     a new train document's questions, its page rendered in memory (no PNG)
    gui-fresh       a new train screen's questions, rendered in memory
    gui-dense       a new train screen and every element on it that can be asked for, each one more
                    turn (up to `DENSE_TURNS`): dense grounding, the generator knows every box
    video-dense     a new train video with, per tubelet, what is on screen in each of its frames
                    (`video_state_targets`): the dense video objective's example

`step_examples` is the batch of one step, a pure function of (seed, stage index, step): each source
draws by index from its fixed train pool (or its fresh train seed) with its own seeded generator.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Any

from evalsuite.model.omni import LoadedMedia, load_media
from evalsuite.training.curriculum import step_sources
from evalsuite.types import ContentPart, Message, Sample, user

# Train-pool size of each task source (questions; several per media file).
POOL_SIZES: dict[str, int] = {"docqa": 8000, "gui": 4000, "videoqa": 3000, "audioqa": 4000,
                              "docqa-wide": 100000, "gui-wide": 40000}
# Sources that draw a task's questions from a wider train pool than the task's own source. A pool is
# the task's train split listed from its start, so the wide pool begins with the narrow one, and the
# narrow source keeps drawing what it always drew.
WIDE_POOLS: dict[str, str] = {"docqa-wide": "docqa", "gui-wide": "gui"}


def task_of(source: str) -> str:
    """The task a pool or task source draws from (``docqa-wide`` -> ``docqa``)."""
    return WIDE_POOLS.get(source, source)


@dataclass
class Example:
    """One training sequence: chat messages (media already loaded) and the answer to learn."""

    source: str
    messages: list[Message]
    media: list[LoadedMedia]
    answer: str
    # Further (question, answer) turns about the same media: every question about an image (clip)
    # is trained off one encoding, as a multi-turn chat; each answer carries loss.
    more: list[tuple[str, str]] = field(default_factory=list)
    # Per-tubelet labels of a `video-dense` example (`video_state_targets`); None elsewhere.
    targets: Any = None


class Pools:
    """The train split of each synthetic task, listed once (media generated into the cache on first
    use) and indexed by position; decoded videos are kept in memory (decoding is the slow part)."""

    def __init__(self, model_cfg: Any, sizes: dict[str, int] | None = None) -> None:
        self.cfg = model_cfg
        self.sizes = dict(POOL_SIZES, **(sizes or {}))
        self._samples: dict[str, list[Sample]] = {}
        self._tasks: dict[str, Any] = {}
        self._video_cache: dict[str, list[LoadedMedia]] = {}
        self._siblings: dict[tuple[str, str], list[Sample]] = {}

    def task(self, name: str) -> Any:
        if name not in self._tasks:
            import evalsuite.catalog  # noqa: F401  (registers the built-in tasks lazily)
            from evalsuite.registry import TASKS

            self._tasks[name] = TASKS.get(task_of(name))(split="train", n=self.sizes[name])
        return self._tasks[name]

    def samples(self, name: str) -> list[Sample]:
        if name not in self._samples:
            good = [s for s in self.task(name).samples() if s.error is None]
            if not good:
                raise RuntimeError(f"train pool of {name} is empty: its generator failed for every sample")
            self._samples[name] = good
        return self._samples[name]

    def pick(self, name: str, rng: random.Random) -> Sample:
        pool = self.samples(name)
        return pool[rng.randrange(len(pool))]

    def siblings(self, name: str, sample: Sample) -> list[Sample]:
        """The other questions of the pool about the same media file, in pool order."""
        key = (name, media_key(sample))
        if key not in self._siblings:
            groups: dict[str, list[Sample]] = {}
            for s in self.samples(name):
                groups.setdefault(media_key(s), []).append(s)
            for k, v in groups.items():
                self._siblings[(name, k)] = v
        return [s for s in self._siblings.get(key, []) if s.id != sample.id]

    def media(self, name: str, sample: Sample) -> list[LoadedMedia]:
        settings = self.task(name).media_settings()
        if task_of(name) != "videoqa":
            return load_media(sample.messages, self.cfg, settings)
        key = media_key(sample)
        if key not in self._video_cache:
            self._video_cache[key] = load_media(sample.messages, self.cfg, settings)
        return self._video_cache[key]


def answer_text(name: str, sample: Sample) -> str:
    target = sample.target
    if task_of(name) == "gui":
        return str(target["answer"])
    return str(target)


def question_text(sample: Sample) -> str:
    return "".join(p.text or "" for m in sample.messages for p in m.content if p.type == "text")


def media_key(sample: Sample) -> str:
    return "|".join(str(p.path) for m in sample.messages for p in m.content if p.type != "text")


def media_kind(sample: Sample) -> str:
    return next(p.type for m in sample.messages for p in m.content if p.type != "text")


MAX_TURNS = 4  # questions per media file in one example


def followups(pools: Pools, name: str, s: Sample, rng: random.Random) -> list[tuple[str, str]]:
    others = pools.siblings(name, s)
    picked = rng.sample(others, min(len(others), MAX_TURNS - 1))
    return [(question_text(o), answer_text(name, o)) for o in picked]


def task_example(pools: Pools, name: str, rng: random.Random) -> Example:
    s = pools.pick(name, rng)
    return Example(name, list(s.messages), pools.media(name, s), answer_text(name, s),
                   followups(pools, name, s, rng))


def text_form(sample: Sample) -> str:
    """A sample's media as text (document text, element list, event log, transcript); "" where it is
    blank: some clips (beeps, tones) have no words."""
    form = str(sample.metadata.get("text_form") or "")
    return form if form.strip() else ""


def text_form_question(sample: Sample, form: str) -> str:
    """The text-only prompt of ``sample``: the media's text ``form``, then the sample's question."""
    from evalsuite.tasks.common import text_form_prompt

    return text_form_prompt(media_kind(sample), form, question_text(sample))


def pick_with_text_form(pools: Pools, name: str, rng: random.Random, draws: int) -> tuple[Sample, str]:
    """A train sample whose text form (`text_form`) is not blank, and that form."""
    for _ in range(draws):
        s = pools.pick(name, rng)
        form = text_form(s)
        if form:
            return s, form
    raise RuntimeError(f"no {name} train sample with a text form in {draws} draws")


def text_example(pools: Pools, name: str, rng: random.Random) -> Example:
    s, form = pick_with_text_form(pools, name, rng, draws=20)
    prompt = text_form_question(s, form)
    return Example(f"text:{name}", [user(prompt)], [], answer_text(name, s), followups(pools, name, s, rng))


_WORDS: list[str] | None = None


def vocabulary() -> list[str]:
    """The document generator's words (brands, items, names, cities, titles, chart labels), sorted."""
    global _WORDS
    if _WORDS is None:
        from evalsuite.tasks.gen import doc

        _WORDS = sorted(set(doc.BRANDS + doc.SUFFIXES + doc.ITEMS + doc.FIRST + doc.LAST + doc.CITIES
                            + [w for t in doc.FORM_TITLES + doc.CHART_TITLES for w in t.split()]
                            + [x for labels in doc.CHART_LABELS for x in labels]))
    return _WORDS


def random_line(rng: random.Random, max_chars: int) -> str:
    """One to four generator words, numbers, codes (``K-53``) or amounts, at most ``max_chars``."""
    parts: list[str] = []
    while True:
        r = rng.random()
        word = (rng.choice(vocabulary()) if r < 0.5 else str(rng.randrange(0, 10 ** rng.randint(1, 4))) if r < 0.8
                else f"{rng.choice('ABCDEFGHKMNPRSTUVWXZ')}-{rng.randrange(10, 100)}" if r < 0.9
                else f"{rng.randrange(1, 1000)}.{rng.randrange(0, 100):02d}")
        if parts and len(" ".join(parts + [word])) > max_chars:
            break
        parts.append(word)
        if len(parts) >= rng.randint(1, 4):
            break
    return " ".join(parts)[:max_chars]


# Characters of `char-line`: capitals and digits twice as likely as lower case and punctuation, as in
# the documents' codes, totals and e-mail addresses.
CHAR_LINE_CHARS = ("ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789" * 2 + "abcdefghijklmnopqrstuvwxyz-.@:/")


def random_chars_line(rng: random.Random, max_chars: int) -> str:
    """One to three "words" of 2-7 characters drawn independently from `CHAR_LINE_CHARS`."""
    words = ["".join(rng.choice(CHAR_LINE_CHARS) for _ in range(rng.randint(2, 7)))
             for _ in range(rng.randint(1, 3))]
    return " ".join(words)[:max_chars]


def rendered_media(pools: Pools, image: Any, key: str) -> LoadedMedia:
    """A PIL image drawn for a training example (not a task sample) as the model's image input."""
    from evalsuite.model.vision import image_tokens, preprocess_image

    w, h = image.size
    pixels, grid = preprocess_image(image, pools.cfg.vision)
    return LoadedMedia("image", key, pixels, image_tokens(h, w, pools.cfg.vision), grid, {"size": [w, h]})


def line_example(pools: Pools, rng: random.Random, on_page: bool, chars: bool = False) -> Example:
    """A rendered line of text (the first reading bridge), alone on a small canvas or placed at
    random on a page-sized one; the answer is the line. With ``chars`` the line is random
    characters (`random_chars_line`) instead of words, numbers and codes."""
    from evalsuite.tasks.gen.canvas import Canvas, bitmap_font, text_size
    from evalsuite.tasks.gen.doc import SIZES

    font = bitmap_font()
    text = (random_chars_line if chars else random_line)(rng, 20)
    tw, th = text_size(font, text)
    if on_page:
        w, h = rng.choice(SIZES[rng.choice(sorted(SIZES))])
    else:
        w, h = max(tw + rng.randint(4, 24), 32), th + rng.randint(5, 21)
    canvas = Canvas(w, h)
    x = rng.randint(2, max(2, w - tw - 2))
    y = rng.randint(2, max(2, h - th - 2))
    canvas.text(x, y, text, font)
    image = canvas.render()
    media = rendered_media(pools, image, "<line>")
    prompt = "Read the text." if not on_page else "What does the line say?"
    return Example("page-line" if on_page else "char-line" if chars else "line",
                   [user(ContentPart.of_media("image", "<line>"), prompt)], [media], text)


def transcribe_example(pools: Pools, rng: random.Random, max_chars: int = 160) -> Example:
    """A train document and its text, line by line (dense supervision: every character is a target)."""
    s = pools.pick("docqa", rng)
    lines = str(s.metadata.get("text_form") or "").split("\n")
    out: list[str] = []
    for line in lines:
        if out and len("\n".join(out + [line])) > max_chars:
            break
        out.append(line)
    image = next(p for m in s.messages for p in m.content if p.type == "image")
    return Example("transcribe", [user(image, "Read the document.")], pools.media("docqa", s), "\n".join(out))


def point_example(pools: Pools, rng: random.Random, max_widgets: int = 6) -> Example:
    """GUI grounding's bridge: one to ``max_widgets`` widgets scattered on an empty screen
    (`evalsuite.tasks.gen.gui.scatter_screen`), "Click: <name>" in the gui task's default answer format, the
    widget's centre as the answer; the other widgets are asked about as follow-ups (one encoding)."""
    from evalsuite.tasks.gen.gui import scatter_screen
    from evalsuite.tasks.gui import FORMATS, format_point

    screen = scatter_screen(rng.randrange(2 ** 31), rng.randint(1, max_widgets))
    w, h = screen.canvas.size
    media = rendered_media(pools, screen.canvas.render(), "<screen>")
    targets = rng.sample(screen.targets, min(len(screen.targets), MAX_TURNS))

    def turn(e: Any) -> tuple[str, str]:
        x1, y1, x2, y2 = e.box
        return f"Click: {e.name}\n{FORMATS['norm1000']}", format_point((x1 + x2) / 2, (y1 + y2) / 2, "norm1000", w, h)

    (question, answer), *more = [turn(e) for e in targets]
    return Example("point", [user(ContentPart.of_media("image", "<screen>"), question)], [media], answer, more)


CHOICE_QUESTIONS: tuple[str, ...] = ("Which option is {t}?", "Which option says {t}?", "Pick {t}.")


def say_answer(text: str, letter: str) -> str:
    """A lettered answer that says its content first: ``"red circle. Answer: C"`` (videoqa's letter
    extractor reads the letter from the explicit "Answer: C"). The letter then depends on a text the
    model has just written, found among the options, rather than on the whole question."""
    return f"{text}. Answer: {letter}"


def choice_question(rng: random.Random, say: bool = False) -> tuple[str, str]:
    """A multiple-choice question that names its option outright, in videoqa's prompt format: four
    distinct options from one of videoqa's answer vocabularies (colours, coloured shapes, caption
    words, counts, quarters); returns (prompt, the option's letter, or with ``say`` `say_answer`).
    The one step of every videoqa answer besides finding its content — binding a content to its
    letter — and nothing else."""
    from evalsuite.tasks.gen.video import COLOURS, QUARTERS, SHAPES, WORDS
    from evalsuite.tasks.videoqa import LETTERS, prompt

    vocabularies = (list(COLOURS), [f"{c} {s}" for c in COLOURS for s in SHAPES], list(WORDS),
                    [str(i) for i in range(10)], list(QUARTERS))
    options = rng.sample(rng.choice(vocabularies), len(LETTERS))
    k = rng.randrange(len(LETTERS))
    answer = say_answer(options[k], LETTERS[k]) if say else LETTERS[k]
    return prompt(rng.choice(CHOICE_QUESTIONS).format(t=options[k]), options), answer


def choose_example(rng: random.Random, say: bool = False) -> Example:
    """``MAX_TURNS`` `choice_question` turns, text only (a bridge to videoqa's lettered answers)."""
    (question, answer), *more = [choice_question(rng, say) for _ in range(MAX_TURNS)]
    return Example("choose-say" if say else "choose", [user(question)], [], answer, more)


def hear_example(pools: Pools, rng: random.Random) -> Example:
    """A train clip with words in it (not a tone or beeps) and its transcript: the audio encoder's
    own target in the ``audio-ctc`` stage."""
    s, form = pick_with_text_form(pools, "audioqa", rng, draws=50)
    audio = next(p for m in s.messages for p in m.content if p.type == "audio")
    return Example("hear", [user(audio, "Transcribe the audio.")], pools.media("audioqa", s), form.strip())


# ---- fresh sources: a new train item per example, drawn in memory -------------------------------
FRESH_SOURCES: tuple[str, ...] = ("videoqa-fresh", "videoqa-open", "videoqa-say", "docqa-fresh", "gui-fresh", "gui-dense", "video-dense")
DENSE_TURNS = 12  # elements asked about in one `gui-dense` example
# Fresh items are train indices drawn uniformly below this (the train split's seeds, `split_seed`,
# are disjoint from the eval split's whatever the index).
FRESH_SPAN = 1 << 32


def fresh_seed(task: str, rng: random.Random) -> tuple[int, int]:
    """A new train item of ``task``: (its index in the train split, its seed)."""
    from evalsuite.tasks.common import split_seed

    index = rng.randrange(FRESH_SPAN)
    return index, split_seed(task, "train", index)


def fresh_video(pools: Pools, rng: random.Random) -> Any:
    """A new train video of the videoqa task (its bucket by index, as the task cycles them)."""
    from evalsuite.tasks.gen.video import build_video
    from evalsuite.tasks.videoqa import BUCKET_CYCLE

    index, seed = fresh_seed("videoqa", rng)
    return build_video(seed, BUCKET_CYCLE[index % len(BUCKET_CYCLE)], pools.task("videoqa").args["difficulty"])


def preprocess_repeated_frames(frames: Any, cfg: Any) -> tuple[Any, Any]:
    """`evalsuite.model.video.preprocess_frames` of ``frames``, resizing each run of identical
    consecutive frames once (a sparse-event video repeats most of its sampled frames)."""
    import numpy as np
    import torch

    from evalsuite.model.video import preprocess_frames

    t = frames.shape[0]
    same = np.array([False] + [np.array_equal(frames[i], frames[i - 1]) for i in range(1, t)])
    firsts = np.flatnonzero(~same)
    run_of = np.cumsum(~same) - 1  # frame i shows the run_of[i]-th distinct frame
    unique, grid = preprocess_frames(frames[firsts], cfg)
    x = unique[torch.from_numpy(run_of)]
    pad = (-t) % cfg.tubelet
    if pad:
        x = torch.cat([x, x[-1:].expand(pad, -1, -1, -1)])
    return x, grid


def video_media(spec: Any, cfg: Any, settings: dict[str, Any]) -> tuple[LoadedMedia, list[float]]:
    """The model input `load_media` would make of ``render_video(spec)``'s file at the task's
    ``settings``, from frames drawn directly (`draw_sampled_frames`); and the frames' time stamps."""
    from evalsuite.model.omni import MediaOptions
    from evalsuite.model.video import video_tokens
    from evalsuite.tasks.gen.video import draw_sampled_frames

    opts = MediaOptions.resolve(cfg, settings)
    frames, stamps = draw_sampled_frames(spec, opts.fps, opts.max_frames)
    t, h, w, _ = frames.shape
    pixels, grid = preprocess_repeated_frames(frames, cfg.video)
    before, after = video_tokens(t, h, w, cfg.video, opts.evs_rate)
    info = {"frames": int(t), "before_evs": before, "evs_rate": opts.evs_rate,
            "timestamps": [round(float(x), 4) for x in stamps]}
    return LoadedMedia("video", f"<video:{spec.seed}>", pixels, after, grid, info), stamps


def fresh_turns(turns: list[tuple[str, str]], rng: random.Random) -> tuple[str, str, list[tuple[str, str]]]:
    """Up to `MAX_TURNS` of an item's (question, answer) turns in random order: first, the rest."""
    (question, answer), *more = rng.sample(turns, min(len(turns), MAX_TURNS))
    return question, answer, more


def videoqa_fresh_example(pools: Pools, rng: random.Random, say: bool = False) -> Example:
    """A new train video's lettered questions, answered with the letter (``say``: `say_answer`)."""
    from evalsuite.tasks.videoqa import LETTERS, prompt

    spec = fresh_video(pools, rng)
    media, _ = video_media(spec, pools.cfg, pools.task("videoqa").media_settings())
    turns = [(prompt(q.text, q.options), say_answer(q.options[q.answer], LETTERS[q.answer]) if say
              else LETTERS[q.answer]) for q in spec.questions]
    question, answer, more = fresh_turns(turns, rng)
    return Example("videoqa-say" if say else "videoqa-fresh",
                   [user(ContentPart.of_media("video", media.path), question)], [media], answer, more)


OPEN_INSTRUCTION = "Answer in a few words."


def videoqa_open_example(pools: Pools, rng: random.Random) -> Example:
    """A new train video's questions with no options, each answered with its right option's text:
    what a lettered answer must find in the video before `choose` binds it to a letter."""
    spec = fresh_video(pools, rng)
    media, _ = video_media(spec, pools.cfg, pools.task("videoqa").media_settings())
    turns = [(f"{q.text}\n{OPEN_INSTRUCTION}", q.options[q.answer]) for q in spec.questions]
    question, answer, more = fresh_turns(turns, rng)
    return Example("videoqa-open", [user(ContentPart.of_media("video", media.path), question)], [media],
                   answer, more)


def image_media(pools: Pools, task: str, image: Any, key: str) -> LoadedMedia:
    """A PIL image rendered in memory as ``task``'s model input (its media settings, as `load_media`)."""
    from evalsuite.model.omni import MediaOptions
    from evalsuite.model.vision import image_tokens, preprocess_image

    vcfg = MediaOptions.resolve(pools.cfg, pools.task(task).media_settings()).vision_config(pools.cfg)
    pixels, grid = preprocess_image(image, vcfg)
    return LoadedMedia("image", key, pixels, image_tokens(image.height, image.width, vcfg), grid,
                       {"size": [image.width, image.height]})


def docqa_fresh_example(pools: Pools, rng: random.Random) -> Example:
    from evalsuite.tasks.gen.doc import build_document

    _, seed = fresh_seed("docqa", rng)
    doc = build_document(seed, pools.task("docqa").args["difficulty"])
    media = image_media(pools, "docqa", doc.canvas.render(), f"<document:{seed}>")
    question, answer, more = fresh_turns([(q.prompt, str(q.answer)) for q in doc.questions], rng)
    return Example("docqa-fresh", [user(ContentPart.of_media("image", media.path), question)], [media],
                   answer, more)


def gui_fresh_example(pools: Pools, rng: random.Random, dense: bool = False) -> Example:
    """A new train screen's questions (``dense``: every element that can be asked for, not only the
    screen's chosen targets, up to `DENSE_TURNS` of them)."""
    from evalsuite.tasks.gen.gui import build_screen
    from evalsuite.tasks.gui import FORMATS, format_point

    task = pools.task("gui")
    _, seed = fresh_seed("gui", rng)
    screen = build_screen(seed, task.args["difficulty"])
    w, h = screen.canvas.size
    media = image_media(pools, "gui", screen.canvas.render(), f"<screen:{seed}>")
    asked = [e for e in screen.elements if e.target] if dense else screen.targets
    turns = [(f"Click: {e.name}\n{FORMATS[task.coords]}",
              format_point((e.box[0] + e.box[2]) / 2, (e.box[1] + e.box[3]) / 2, task.coords, w, h))
             for e in asked]
    if dense:
        (question, answer), *more = rng.sample(turns, min(len(turns), DENSE_TURNS))
    else:
        question, answer, more = fresh_turns(turns, rng)
    return Example("gui-dense" if dense else "gui-fresh", [user(ContentPart.of_media("image", media.path), question)],
                   [media], answer, more)


# Label columns of `video_state_targets`, per tubelet frame: each cell's colour (0 empty, 1 + index in
# `COLOURS`), each cell's shape (0 empty, 1 + index in `SHAPES`), the counter, the caption word (0 none,
# 1 + index in `WORDS`).
VIDEO_CELLS = 8
COUNTER_CLASSES = 10


def video_classes() -> dict[str, int]:
    """Class count of each target of the dense video objective."""
    from evalsuite.tasks.gen.video import COLOURS, SHAPES, WORDS

    return {"colour": len(COLOURS) + 1, "shape": len(SHAPES) + 1, "counter": COUNTER_CLASSES,
            "caption": len(WORDS) + 1}


def video_state_targets(spec: Any, stamps: list[float], tubelet: int) -> Any:
    """Labels (T, tubelet, 2 * VIDEO_CELLS + 2) of every tubelet frame: ``spec.state`` at the frame's
    time stamp (a clip padded to whole tubelets repeats its last frame, as `preprocess_frames` does)."""
    import torch

    from evalsuite.tasks.gen.video import COLOURS, SHAPES, WORDS

    colours, shapes = list(COLOURS), list(SHAPES)
    stamps = list(stamps) + [stamps[-1]] * ((-len(stamps)) % tubelet)
    rows = []
    for t in stamps:
        shown, counter, word = spec.state(t)
        colour, shape = [0] * VIDEO_CELLS, [0] * VIDEO_CELLS
        for name, cell, c in shown:
            colour[cell], shape[cell] = 1 + colours.index(c), 1 + shapes.index(name)
        rows.append(colour + shape + [min(counter, COUNTER_CLASSES - 1), 1 + WORDS.index(word) if word else 0])
    return torch.tensor(rows, dtype=torch.long).view(len(stamps) // tubelet, tubelet, -1)


def video_dense_example(pools: Pools, rng: random.Random) -> Example:
    """A new train video and, per tubelet frame, what is on screen (`video_state_targets`)."""
    spec = fresh_video(pools, rng)
    media, stamps = video_media(spec, pools.cfg, pools.task("videoqa").media_settings())
    return Example("video-dense", [user(ContentPart.of_media("video", media.path), "What is on screen?")], [media],
                   "", targets=video_state_targets(spec, stamps, pools.cfg.video.tubelet))


def make_example(pools: Pools, source: str, rng: random.Random) -> Example:
    if source.startswith("text:"):
        return text_example(pools, source.split(":", 1)[1], rng)
    if source in ("line", "page-line", "char-line"):
        return line_example(pools, rng, on_page=source == "page-line", chars=source == "char-line")
    if source == "transcribe":
        return transcribe_example(pools, rng)
    if source == "hear":
        return hear_example(pools, rng)
    if source == "point":
        return point_example(pools, rng)
    if source in ("choose", "choose-say"):
        return choose_example(rng, say=source == "choose-say")
    if source in ("videoqa-fresh", "videoqa-say"):
        return videoqa_fresh_example(pools, rng, say=source == "videoqa-say")
    if source == "videoqa-open":
        return videoqa_open_example(pools, rng)
    if source == "docqa-fresh":
        return docqa_fresh_example(pools, rng)
    if source in ("gui-fresh", "gui-dense"):
        return gui_fresh_example(pools, rng, dense=source == "gui-dense")
    if source == "video-dense":
        return video_dense_example(pools, rng)
    return task_example(pools, source, rng)


def step_examples(pools: Pools, seed: int, stage_index: int, step: int, stage: str, total: int,
                  batch: int) -> list[Example]:
    """The examples of one step: a pure function of (seed, stage, step)."""
    out = []
    for i, src in enumerate(step_sources(seed, stage_index, step, stage, total, batch)):
        out.append(make_example(pools, src, random.Random(f"example:{seed}:{stage_index}:{step}:{i}")))
    return out
