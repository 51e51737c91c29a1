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

`step_examples` is the batch of one step, a pure function of (seed, stage index, step): each source
draws by index from its fixed train pool with its own seeded generator.
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


def choice_question(rng: random.Random) -> tuple[str, str]:
    """A multiple-choice question that names its option outright, in videoqa's prompt format: four
    distinct options from one of videoqa's answer vocabularies (colours, coloured shapes, caption
    words, counts, quarters); returns (prompt, the option's letter). The one step of every videoqa
    answer besides finding its content — binding a content to its letter — and nothing else."""
    from evalsuite.tasks.gen.video import COLOURS, QUARTERS, SHAPES, WORDS
    from evalsuite.tasks.videoqa import LETTERS, prompt

    vocabularies = (list(COLOURS), [f"{c} {s}" for c in COLOURS for s in SHAPES], list(WORDS),
                    [str(i) for i in range(10)], list(QUARTERS))
    options = rng.sample(rng.choice(vocabularies), len(LETTERS))
    k = rng.randrange(len(LETTERS))
    return prompt(rng.choice(CHOICE_QUESTIONS).format(t=options[k]), options), LETTERS[k]


def choose_example(rng: random.Random) -> Example:
    """``MAX_TURNS`` `choice_question` turns, text only (a bridge to videoqa's lettered answers)."""
    (question, answer), *more = [choice_question(rng) for _ in range(MAX_TURNS)]
    return Example("choose", [user(question)], [], answer, more)


def hear_example(pools: Pools, rng: random.Random) -> Example:
    """A train clip with words in it (not a tone or beeps) and its transcript: the audio encoder's
    own target in the ``audio-ctc`` stage."""
    s, form = pick_with_text_form(pools, "audioqa", rng, draws=50)
    audio = next(p for m in s.messages for p in m.content if p.type == "audio")
    return Example("hear", [user(audio, "Transcribe the audio.")], pools.media("audioqa", s), form.strip())


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
    if source == "choose":
        return choose_example(rng)
    return task_example(pools, source, rng)


def step_examples(pools: Pools, seed: int, stage_index: int, step: int, stage: str, total: int,
                  batch: int) -> list[Example]:
    """The examples of one step: a pure function of (seed, stage, step)."""
    out = []
    for i, src in enumerate(step_sources(seed, stage_index, step, stage, total, batch)):
        out.append(make_example(pools, src, random.Random(f"example:{seed}:{stage_index}:{step}:{i}")))
    return out
