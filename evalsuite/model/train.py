"""Train the reference omni model on the synthetic tasks' ``train`` split with a staged curriculum.

    python -m evalsuite.model.train --preset tiny --out evalsuite/model/checkpoints/tiny        (``make train``)

Curriculum (after the Nemotron 3 Nano Omni report: text first, then images, video, audio, each stage
replaying the earlier ones; see `STAGES`):

    text   the text-only forms of every task: a document's lines, a screen's element list with
           coordinates, a video's event log, a clip's transcript, each followed by the task's question
           (so a cascade of OCR/ASR specialists has a text reasoner to hand its output to)
    image  reading bridges first (one rendered line; one line placed at random on a page; a whole
           document transcribed), their share falling as the stage goes on, then docqa and gui
    video  videoqa
    audio  audioqa
    recall the text forms again, heavily (looking a value up in context had not been learnt)
    consolidate  every task and the reading bridges together, against forgetting
    audio-ctc    the audio encoder alone, re-initialised, with CTC on the transcripts of the train
                 clips with words (a head that lives only in the training state)
    audio-align  audioqa with that encoder frozen, the other tasks replayed
    image-ctc    the vision encoder alone, re-initialised, reading rendered lines with a CTC over its
                 patch columns
    image-align  the reading bridges, docqa and gui with that encoder frozen, the others replayed
    read         docqa above all, lines and gui, the encoders still frozen, the others replayed
    read-more    the same again (docqa was still rising)
    read-wide    lines first, then docqa and gui from train pools too wide to learn by heart
    image-ctc-chars  the vision encoder again with its CTC, now on lines of random characters too
                 (continued, not re-initialised; its new head is fitted before the encoder moves)
    read-chars   lines of random characters (only reading each character pays), docqa and gui wide,
                 the encoder frozen again
    lookup       the wide pool's documents as text beside their images (looking a value up), with
                 `point` (widgets scattered on an empty screen) as gui's bridge
    locate       gui above all, now that every image token carries its place (the vision encoder's
                 `token_pos` table, kept at zero and frozen until this stage)
    widen        docqa and lines of random characters through the projector's second branch
                 (`projector_extra`, kept at its start until this stage), gui replayed

Inside a stage the mixture weights move linearly from ``start`` to ``end`` (one line before full
layouts). The learning rate warms up, stays flat and decays linearly over the last quarter of each
stage to a tenth. Only answer tokens (and the closing ``<|end|>``) carry loss.

Determinism: the examples of step ``s`` of stage ``k`` are a pure function of (seed, k, s) — each
source draws by index from its fixed train pool — so a run resumed from its last checkpoint
(``train_state.pt``, written atomically every ``--save-every`` steps and at each stage's end) takes
exactly the steps an uninterrupted run would. No eval-split data is ever read: every pool is a task's
``split="train"``, whose seeds are disjoint from the eval split's (tests/model/test_train.py).

After each stage the checkpoint (``model.safetensors`` + ``config.json``, `model.weights.save`) is
evaluated through the harness itself (the ``bf16`` model on each task's eval split, ``--eval-n``
samples) and the table is appended to ``history.json`` and, with ``--bench``, to BENCHMARKS.md, so
forgetting shows if it happens.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import torch
import torch.nn.functional as F

from evalsuite.types import ContentPart, Message, Sample, user
from evalsuite.model.omni import LoadedMedia, OmniModel, build_omni, load_media

STAGE_NAMES: tuple[str, ...] = ("text", "image", "video", "audio", "recall", "consolidate", "audio-ctc",
                                 "audio-align", "image-ctc", "image-align", "read", "read-more", "read-wide",
                                 "image-ctc-chars", "read-chars", "lookup", "locate", "widen")
TASK_OF_STAGE = {"image": ("docqa", "gui"), "video": ("videoqa",), "audio": ("audioqa",)}
EVAL_TASKS: tuple[str, ...] = ("docqa", "gui", "videoqa", "audioqa")

# Mixture of each stage: source -> (weight at the stage's start, weight at its end).
STAGES: dict[str, dict[str, tuple[float, float]]] = {
    "text": {"text:docqa": (3, 3), "text:gui": (3, 3), "text:videoqa": (2, 2), "text:audioqa": (1, 1)},
    "image": {"line": (6, 0.5), "page-line": (3, 0.5), "transcribe": (3, 1.5), "docqa": (1, 5), "gui": (1, 4),
              "text:docqa": (0.5, 0.5), "text:gui": (0.5, 0.5), "text:videoqa": (0.25, 0.25),
              "text:audioqa": (0.25, 0.25)},
    "video": {"videoqa": (8, 8), "docqa": (1.5, 1.5), "gui": (1, 1), "transcribe": (0.3, 0.3),
              "text:docqa": (0.2, 0.2), "text:gui": (0.2, 0.2), "text:videoqa": (0.3, 0.3)},
    "audio": {"audioqa": (8, 8), "videoqa": (1.5, 1.5), "docqa": (1.5, 1.5), "gui": (1, 1),
              "transcribe": (0.3, 0.3), "text:docqa": (0.2, 0.2), "text:gui": (0.2, 0.2),
              "text:audioqa": (0.3, 0.3)},
    # Added after the first four had been run (their mixtures and steps are unchanged, so a finished
    # run extends exactly): the text forms again, because the backbone had not learnt to look a value
    # up in its context (teacher-forced exact match on text:docqa was 2% after the audio stage; 400
    # steps of text:docqa alone took it to 38%), then every task together against forgetting.
    "recall": {"text:docqa": (4, 4), "text:audioqa": (2, 2), "text:gui": (0.5, 0.5), "text:videoqa": (0.5, 0.5),
               "docqa": (0.5, 0.5), "audioqa": (0.5, 0.5)},
    "consolidate": {"audioqa": (3, 3), "videoqa": (2, 2), "docqa": (2, 2), "gui": (2, 2), "line": (1, 1),
                    "page-line": (0.5, 0.5), "transcribe": (0.5, 0.5), "text:docqa": (0.5, 0.5),
                    "text:audioqa": (0.5, 0.5), "text:gui": (0.25, 0.25), "text:videoqa": (0.25, 0.25)},
    # The audio encoder had collapsed to a constant (its tokens differ by 0.02% between clips,
    # `evalsuite.model.probe.encoder_spread`): trained only through the LM's few multiple-choice answer tokens it
    # never carried content. As the real model's encoder is pretrained (Parakeet, CTC/TDT) before it is
    # attached, `audio-ctc` trains it alone with CTC on the transcripts of the train clips with words
    # (`ENCODER_STAGES`), then `audio-align` teaches the projector and the LM to read it while the
    # encoder stays frozen (`FROZEN`), with the other tasks replayed.
    "audio-ctc": {"hear": (1, 1)},
    "audio-align": {"audioqa": (4, 4), "text:audioqa": (1, 1), "docqa": (0.5, 0.5), "gui": (0.5, 0.5),
                    "videoqa": (0.5, 0.5), "text:docqa": (0.5, 0.5)},
    # The same for the vision encoder, which had not learnt to read (teacher-forced exact match 0 on
    # one rendered line after every stage): `image-ctc` trains it alone to read rendered lines with a
    # CTC over its columns (`column_ctc_logits`), then `image-align` teaches the projector and the LM
    # to read its tokens with it frozen. The video encoder shares its transformer, so videoqa is
    # replayed there too; the audio encoder stays frozen as `audio-align` left it.
    "image-ctc": {"line": (1, 1)},
    "image-align": {"line": (3, 1), "page-line": (1, 1), "transcribe": (1, 1), "docqa": (2, 4), "gui": (1, 2),
                    "videoqa": (1, 1), "audioqa": (1, 1), "text:docqa": (0.5, 0.5), "text:audioqa": (0.25, 0.25)},
    # image-align left the LM reading a line's first half (teacher-forced token accuracy 0.49, exact
    # 0); from there, with the encoders still frozen, 1,500 steps of lines alone took exact lines to
    # 0.28 and 300 of docqa alone its teacher-forced exact match from 0.07 to 0.30 (both measured on
    # train-split examples, so partly seen ones): `read` is that, docqa first, the others replayed.
    "read": {"docqa": (6, 6), "line": (2, 1), "page-line": (1, 1), "gui": (2, 2), "audioqa": (1, 1),
             "videoqa": (0.5, 0.5), "text:docqa": (0.5, 0.5), "text:audioqa": (0.25, 0.25)},
}
# docqa was still rising when `read` ended (0.033 -> 0.117 on 60 eval samples): the run went on with
# the same mixture, the learning rate warmed up again.
STAGES["read-more"] = dict(STAGES["read"])
# After read-more the model knew its 2,000 train documents (teacher-forced exact match 0.77 after 800
# more docqa steps) but read the eval ones no better (0.17): it had learnt documents, not reading. It
# also copied only ~58% of a fresh line's characters. `read-wide` draws docqa and gui from pools 12x
# and 10x wider (`WIDE_POOLS`: too many documents to learn by heart) and starts line-heavy (lines are
# drawn fresh every time, so they can only be read).
STAGES["read-wide"] = {"line": (4, 1), "page-line": (2, 1), "docqa-wide": (3, 6), "gui-wide": (1.5, 2),
                       "audioqa": (1, 1), "videoqa": (0.5, 0.5), "text:docqa": (0.5, 0.5),
                       "text:audioqa": (0.25, 0.25)}
# After read-wide the model read generator-vocabulary words by their shape (teacher-forced character
# accuracy 0.87 on a word's later characters) but digits at 0.57 and a code's first character at 0.38
# (`python -m evalsuite.model.probe CKPT --chars 300`): docqa's numbers and codes were out of reach. The frozen
# vision encoder was part of it: a linear CTC head fitted on its columns read random-character lines
# at 0.71 (3,000 steps), and 4,000 more steps training the encoder with that head took it to 0.82.
# `image-ctc-chars` does that (`char-line`: no word to guess, every character must be read), then
# `read-chars` re-aligns the projector and the LM to the moved encoder on the same lines, with docqa
# and gui from the wide pools. Measured on the run (`--ctc 3000`, 200 eval samples): the linear head
# read 0.71 -> 0.88 of the characters; digits 0.57 -> 0.79; docqa 0.225 -> 0.320 (0.045 between the
# two stages, before the LM had re-aligned).
STAGES["image-ctc-chars"] = {"char-line": (3, 3), "line": (1, 1)}
STAGES["read-chars"] = {"char-line": (4, 2), "line": (1, 1), "page-line": (1, 1), "docqa-wide": (3, 5),
                        "gui-wide": (1, 1.5), "audioqa": (1.5, 1.5), "videoqa": (0.5, 0.5),
                        "text:docqa": (0.5, 0.5), "text:audioqa": (0.25, 0.25)}
# After read-chars the LM could not look a value up even from the document's text: given the text
# form of the 200 eval questions it answered 0.375 (numeric 0.08; `python -m evalsuite.model.probe CKPT
# --text-form 200`), barely above the image's 0.320, so reading was no longer the first limit. 600
# steps of `text:docqa-wide` alone (text forms of the wide pool's 25,000 documents, too many to learn
# by heart) took that to 0.850 (numeric 0.72) but the image's docqa down to 0.230 and audioqa from
# 0.865 to 0.200 (a side run). `lookup` trains the look-up from text beside the images, everything
# else replayed. gui had no bridge (its answers' x was often right and y a constant): `point` is one
# (widgets scattered on an empty screen, "Click: <name>" -> the centre), as `page-line` is reading's.
# Measured on the run (200 eval samples, bf16): docqa 0.320 -> 0.385 and its text form 0.375 -> 0.865;
# the wrong image answers are now mostly a digit off on the right row. gui 0.225 -> 0.215: `point`
# did not move it (icons 0.40, text elements 0.03).
STAGES["lookup"] = {"text:docqa-wide": (3, 2), "docqa-wide": (4, 5), "point": (2, 1), "gui-wide": (1, 1.5),
                    "char-line": (1, 1), "page-line": (1, 1), "line": (0.5, 0.5), "audioqa": (1.5, 1.5),
                    "text:audioqa": (0.25, 0.25), "videoqa": (0.5, 0.5)}
# gui's text elements stayed at 0.03 after lookup, their answers' y near a constant: a ridge readout
# of each v7 image token's normalized row from the token alone had R² 0.28 (column 0.41; `python -m
# model.probe CKPT --positions 120`) — the encoder, trained from scratch with a column CTC, had
# washed its input position features out, and the LM sees tokens only in raster order. The tiny
# preset now adds each merged token's position features through a learned table
# (`VisionConfig.token_pos`, zero-initialized: v7's tokens exactly) that every earlier stage keeps
# frozen at zero, so a run from scratch takes the same path. `locate`
# trains it, the projector and the LM, gui first, the encoders frozen, everything else replayed.
# Measured on the run (200 eval samples, bf16): the readout's R² 0.28 -> 0.73 (row), 0.41 -> 0.83
# (column); gui 0.215 -> 0.245 (text elements 0.03 -> 0.06, icons 0.40 -> 0.43), docqa 0.385 ->
# 0.380, audioqa 0.880 -> 0.910. The place is in the tokens now; finding the word is what fails.
STAGES["locate"] = {"gui-wide": (4, 5), "point": (2, 1), "docqa-wide": (3, 3), "text:docqa-wide": (1, 1),
                    "page-line": (1, 1), "char-line": (0.5, 0.5), "audioqa": (1.5, 1.5),
                    "text:audioqa": (0.25, 0.25), "videoqa": (0.5, 0.5)}
# A linear CTC head read 0.567 of a random-character line's characters off v7's image tokens (the
# projector's output, 4 frames per merged column) against 0.846 off the merged features they are
# made from (`python -m evalsuite.model.probe CKPT --ctc 1500 --ctc-at tokens|merged`, 300 fresh lines): the
# projector, 128 ReLU² units for the LM's 128, dropped characters before the LM saw them.
# `VisionConfig.projector_extra` adds 384 units beside them (4x the LM width, the published
# projector's ratio), their output layer zero at first; `widen` trains them
# (everything but the encoders) on docqa and random-character lines, the rest replayed.
# Measured on the run (200 eval samples, bf16): docqa 0.380 -> 0.415 (key_information 0.29 -> 0.36,
# numeric 0.04 -> 0.10), audioqa 0.910 -> 0.935, gui 0.245 -> 0.230. The probe's readout off the image
# tokens (`--ctc 1500 --ctc-at tokens`) moved only 0.567 -> 0.590, and no control run (the same steps
# without the branch) was made, so how much of docqa's gain is the branch and how much the 1,500 more
# docqa-heavy steps is open. The `line` source, not replayed, was partly forgotten (BENCHMARKS.md).
STAGES["widen"] = {"docqa-wide": (5, 6), "char-line": (3, 1.5), "page-line": (1, 1), "text:docqa-wide": (0.5, 0.5),
                   "gui-wide": (2, 2), "point": (0.5, 0.5), "audioqa": (1.5, 1.5), "text:audioqa": (0.25, 0.25),
                   "videoqa": (0.5, 0.5)}
# Stages that train one media encoder alone with its own objective instead of the LM's loss.
ENCODER_STAGES: dict[str, str] = {"audio-ctc": "audio", "image-ctc": "image", "image-ctc-chars": "image"}
# Steps at the start of an encoder stage in which only its new head learns (the encoder is a trained
# one, continued: a random head's gradients would only scramble it).
HEAD_WARMUP: dict[str, int] = {"image-ctc-chars": 1500}
AUDIO_ENCODER = ("audio.subsample.", "audio.blocks.")
VISION_ENCODER = ("vision.patch_embed.", "vision.blocks.", "vision.norm.")
# Parameters (name prefixes) a stage starts from fresh initial values (those of `build_omni` with the
# run's seed): the collapsed audio encoder is replaced rather than trained out of its constant.
REINIT: dict[str, tuple[str, ...]] = {"audio-ctc": AUDIO_ENCODER, "image-ctc": VISION_ENCODER}
# Parameters (name prefixes) a stage keeps frozen.
FROZEN: dict[str, tuple[str, ...]] = {"audio-align": AUDIO_ENCODER,
                                      **dict.fromkeys(("image-align", "read", "read-more", "read-wide",
                                                       "read-chars", "lookup", "locate", "widen"),
                                                      VISION_ENCODER + AUDIO_ENCODER)}
# Parameters (name prefixes) the tiny preset gained after its run had begun, each frozen at its
# initial value (a function-preserving zero) in every stage before the one that first trains it, so
# that a run from scratch takes the path the committed checkpoint took.
LATE_PARAMS: dict[str, tuple[str, ...]] = {"locate": ("vision.token_pos",), "widen": ("vision.projector.extra.",)}
for _late, _prefixes in LATE_PARAMS.items():
    for _stage in STAGE_NAMES[:STAGE_NAMES.index(_late)]:
        FROZEN[_stage] = FROZEN.get(_stage, ()) + _prefixes
# CTC frames per patch column in `image-ctc`: a column is 8 px, about 1.3 characters of the bitmap
# font, and CTC needs at least one frame per character (two for a doubled one).
IMAGE_CTC_FRAMES = 2
# Steps per stage for `make train` on two CPU cores (the tiny preset); scale with --steps-scale.
DEFAULT_STEPS: dict[str, int] = {"text": 250, "image": 3000, "video": 700, "audio": 800, "recall": 1200,
                                 "consolidate": 2000, "audio-ctc": 3000, "audio-align": 800,
                                 "image-ctc": 12000, "image-align": 1500, "read": 2000,
                                 "read-more": 1500, "read-wide": 4000, "image-ctc-chars": 10000,
                                 "read-chars": 4500, "lookup": 5000, "locate": 4000,
                                 "widen": 1500}
POOL_SIZES: dict[str, int] = {"docqa": 8000, "gui": 4000, "videoqa": 3000, "audioqa": 4000,
                              "docqa-wide": 100000, "gui-wide": 40000}
# Sources that draw a task's questions from a wider train pool than the task's own source (whose pool
# earlier stages drew from, and so must stay as it was for a run to extend exactly). The wide pool
# starts with the narrow one: 100,000 docqa questions are 25,000 documents where the narrow pool has
# 2,000, which the model had learnt by heart (teacher-forced exact match 0.77 on them, 0.17 on eval).
WIDE_POOLS: dict[str, str] = {"docqa-wide": "docqa", "gui-wide": "gui"}


def task_of(source: str) -> str:
    """The task a pool or task source draws from (``docqa-wide`` -> ``docqa``)."""
    return WIDE_POOLS.get(source, source)


STATE_FILE = "train_state.pt"
HISTORY_FILE = "history.json"


# ---- examples -----------------------------------------------------------------------------------
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
        key = (name, _media_key(sample))
        if key not in self._siblings:
            groups: dict[str, list[Sample]] = {}
            for s in self.samples(name):
                groups.setdefault(_media_key(s), []).append(s)
            for k, v in groups.items():
                self._siblings[(name, k)] = v
        return [s for s in self._siblings.get(key, []) if s.id != sample.id]

    def media(self, name: str, sample: Sample) -> list[LoadedMedia]:
        settings = self.task(name).media_settings()
        if task_of(name) != "videoqa":
            return load_media(sample.messages, self.cfg, settings)
        key = _media_key(sample)
        if key not in self._video_cache:
            self._video_cache[key] = load_media(sample.messages, self.cfg, settings)
        return self._video_cache[key]


def _answer_text(name: str, sample: Sample) -> str:
    target = sample.target
    if task_of(name) == "gui":
        return str(target["answer"])
    return str(target)


def _question_text(sample: Sample) -> str:
    return "".join(p.text or "" for m in sample.messages for p in m.content if p.type == "text")


def _media_key(sample: Sample) -> str:
    return "|".join(str(p.path) for m in sample.messages for p in m.content if p.type != "text")


def _media_kind(sample: Sample) -> str:
    return next(p.type for m in sample.messages for p in m.content if p.type != "text")


MAX_TURNS = 4  # questions per media file in one example


def _followups(pools: Pools, name: str, s: Sample, rng: random.Random) -> list[tuple[str, str]]:
    others = pools.siblings(name, s)
    picked = rng.sample(others, min(len(others), MAX_TURNS - 1))
    return [(_question_text(o), _answer_text(name, o)) for o in picked]


def task_example(pools: Pools, name: str, rng: random.Random) -> Example:
    s = pools.pick(name, rng)
    return Example(name, list(s.messages), pools.media(name, s), _answer_text(name, s),
                   _followups(pools, name, s, rng))


def text_form(sample: Sample) -> str:
    """A sample's media as text (document text, element list, event log, transcript); "" where it is
    blank: some clips (beeps, tones) have no words."""
    form = str(sample.metadata.get("text_form") or "")
    return form if form.strip() else ""


def text_form_question(sample: Sample, form: str) -> str:
    """The text-only prompt of ``sample``: the media's text ``form``, then the sample's question."""
    from evalsuite.tasks.common import text_form_prompt

    return text_form_prompt(_media_kind(sample), form, _question_text(sample))


def _pick_with_text_form(pools: Pools, name: str, rng: random.Random, draws: int) -> tuple[Sample, str]:
    """A train sample whose text form (`text_form`) is not blank, and that form."""
    for _ in range(draws):
        s = pools.pick(name, rng)
        form = text_form(s)
        if form:
            return s, form
    raise RuntimeError(f"no {name} train sample with a text form in {draws} draws")


def text_example(pools: Pools, name: str, rng: random.Random) -> Example:
    s, form = _pick_with_text_form(pools, name, rng, draws=20)
    prompt = text_form_question(s, form)
    return Example(f"text:{name}", [user(prompt)], [], _answer_text(name, s), _followups(pools, name, s, rng))


_WORDS: list[str] | None = None


def _vocabulary() -> list[str]:
    global _WORDS
    if _WORDS is None:
        from evalsuite.tasks.gen import doc

        _WORDS = sorted(set(doc.BRANDS + doc.SUFFIXES + doc.ITEMS + doc.FIRST + doc.LAST + doc.CITIES
                            + [w for t in doc.FORM_TITLES + doc.CHART_TITLES for w in t.split()]
                            + [x for labels in doc.CHART_LABELS for x in labels]))
    return _WORDS


def _random_line(rng: random.Random, max_chars: int) -> str:
    parts: list[str] = []
    while True:
        r = rng.random()
        word = (rng.choice(_vocabulary()) if r < 0.5 else str(rng.randrange(0, 10 ** rng.randint(1, 4))) if r < 0.8
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


def _random_chars_line(rng: random.Random, max_chars: int) -> str:
    """One to three "words" of 2-7 characters drawn independently from `CHAR_LINE_CHARS`."""
    words = ["".join(rng.choice(CHAR_LINE_CHARS) for _ in range(rng.randint(2, 7)))
             for _ in range(rng.randint(1, 3))]
    return " ".join(words)[:max_chars]


def _rendered_media(pools: Pools, image: Any, key: str) -> LoadedMedia:
    """A PIL image drawn for a training example (not a task sample) as the model's image input."""
    from evalsuite.model.vision import image_tokens, preprocess_image

    w, h = image.size
    pixels, grid = preprocess_image(image, pools.cfg.vision)
    return LoadedMedia("image", key, pixels, image_tokens(h, w, pools.cfg.vision), grid, {"size": [w, h]})


def line_example(pools: Pools, rng: random.Random, on_page: bool, chars: bool = False) -> Example:
    """A rendered line of text (the first reading bridge), alone on a small canvas or placed at
    random on a page-sized one; the answer is the line. With ``chars`` the line is random
    characters (`_random_chars_line`) instead of words, numbers and codes."""
    from evalsuite.tasks.gen.canvas import Canvas, bitmap_font, text_size
    from evalsuite.tasks.gen.doc import SIZES

    font = bitmap_font()
    text = (_random_chars_line if chars else _random_line)(rng, 20)
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
    media = _rendered_media(pools, image, "<line>")
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
    media = _rendered_media(pools, screen.canvas.render(), "<screen>")
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
    s, form = _pick_with_text_form(pools, "audioqa", rng, draws=50)
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


def stage_weights(stage: str, progress: float) -> dict[str, float]:
    """Mixture weights of ``stage`` at ``progress`` in [0, 1] (linear from start to end)."""
    return {src: a + (b - a) * progress for src, (a, b) in STAGES[stage].items()}


def step_sources(seed: int, stage_index: int, step: int, stage: str, total: int, batch: int) -> list[str]:
    rng = random.Random(f"sources:{seed}:{stage_index}:{step}")
    weights = stage_weights(stage, step / max(1, total - 1))
    names = sorted(weights)
    return rng.choices(names, [weights[n] for n in names], k=batch)


def step_examples(pools: Pools, seed: int, stage_index: int, step: int, stage: str, total: int,
                  batch: int) -> list[Example]:
    """The examples of one step: a pure function of (seed, stage, step)."""
    out = []
    for i, src in enumerate(step_sources(seed, stage_index, step, stage, total, batch)):
        out.append(make_example(pools, src, random.Random(f"example:{seed}:{stage_index}:{step}:{i}")))
    return out


# ---- the batched training forward -----------------------------------------------------------------
def example_ids(tok: Any, ex: Example) -> tuple[list[int], list[int]]:
    """Token ids of an example's whole chat and its labels (``labels[k]`` is the id to predict after
    position k, -100 where no loss applies: only answers and their closing ``<|end|>`` carry loss)."""
    counts = iter([m.n_tokens for m in ex.media])
    ids = tok.apply_chat(ex.messages, media_tokens=lambda part: next(counts))
    labels = [-100] * len(ids)

    def answer(text: str) -> None:
        start = len(ids)  # the answer's first token; position start - 1 (the assistant role) predicts it
        ids.extend(tok.encode(text) + [tok.end_id])
        labels.extend([-100] * (len(ids) - len(labels)))
        for k in range(start - 1, len(ids) - 1):
            labels[k] = ids[k + 1]

    answer(ex.answer)
    for question, ans in ex.more:
        ids.extend([tok.role_ids["user"]] + tok.encode(question) + [tok.end_id, tok.role_ids["assistant"]])
        labels.extend([-100] * (len(ids) - len(labels)))
        answer(ans)
    return ids, labels


def encode_rows(model: OmniModel, examples: Sequence[Example]) -> list[tuple[torch.Tensor, list[int]]]:
    """Each example → (inputs_embeds row [T, D] with encoder outputs at its media placeholders, labels)."""
    tok = model.tokenizer
    emb_layer = model.lm.backbone.embeddings
    out: list[tuple[torch.Tensor, list[int]]] = []
    for ex in examples:
        ids, lab = example_ids(tok, ex)
        row = emb_layer(torch.tensor(ids, dtype=torch.long, device=model.device))  # [T, D]
        if ex.media:
            spans = tok.media_spans(ids)
            encoded = model._encode(ex.media)
            pieces, at = [], 0
            for span, tokens in zip(spans, encoded):
                if tokens.shape[0] != span.length:
                    raise RuntimeError(f"{span.kind} encoder gave {tokens.shape[0]} tokens for a span of {span.length}")
                pieces += [row[at:span.start], tokens.to(row.dtype)]
                at = span.start + span.length
            pieces.append(row[at:])
            row = torch.cat(pieces)
        out.append((row, lab))
    return out


def _pad(rows: Sequence[tuple[torch.Tensor, list[int]]], device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    t = max(r.shape[0] for r, _ in rows)
    embeds = torch.stack([F.pad(r, (0, 0, 0, t - r.shape[0])) for r, _ in rows])
    lab_t = torch.full((len(rows), t), -100, dtype=torch.long)
    for i, (_, lab) in enumerate(rows):
        lab_t[i, : len(lab)] = torch.tensor(lab)
    return embeds, lab_t.to(device)


def encode_batch(model: OmniModel, examples: Sequence[Example]) -> tuple[torch.Tensor, torch.Tensor]:
    """Examples → (inputs_embeds [B, T, D] right-padded, labels [B, T] with -100 off the answers)."""
    return _pad(encode_rows(model, examples), model.device)


def length_groups(lengths: Sequence[int], ratio: float = 0.7) -> list[list[int]]:
    """Indices grouped into micro-batches of similar length (longest first): a new group starts when
    an example is shorter than ``ratio`` × its group's longest, so padding stays under ~30%."""
    order = sorted(range(len(lengths)), key=lambda i: (-lengths[i], i))
    groups: list[list[int]] = []
    for i in order:
        if groups and lengths[i] >= ratio * lengths[groups[-1][0]]:
            groups[-1].append(i)
        else:
            groups.append([i])
    return groups


def batch_loss(model: OmniModel, examples: Sequence[Example], bucket: bool = True) -> tuple[torch.Tensor, int]:
    """Mean cross-entropy over the answer tokens of a batch, and how many there were.

    With ``bucket`` the batch runs as micro-batches of similar length (`length_groups`): the same
    loss as one right-padded batch (padding sits after every real token, and the model is causal),
    without paying for padding a long text-form example up to everything else."""
    rows = encode_rows(model, examples)
    groups = length_groups([r.shape[0] for r, _ in rows]) if bucket else [list(range(len(rows)))]
    total = torch.zeros((), device=model.device)
    count = 0
    for g in groups:
        embeds, labels = _pad([rows[i] for i in g], model.device)
        hidden = model.lm.hidden_states(inputs_embeds=embeds)
        mask = labels >= 0
        logits = model.lm.lm_head(hidden[mask]).float()
        total = total + F.cross_entropy(logits, labels[mask], reduction="sum")
        count += int(mask.sum())
    return total / max(1, count), count


def ctc_head(model: OmniModel, kind: str, seed: int, stage_index: int) -> torch.nn.Linear:
    """The encoder stage's output layer, seeded by (seed, stage): width → blank + the tokenizer's ids
    (audio: per frame; image: `IMAGE_CTC_FRAMES` such frames per patch column). It lives in the
    training state only, never in the checkpoint."""
    if kind not in ("audio", "image"):
        raise ValueError(f"no encoder objective for {kind!r} (expected one of {sorted(set(ENCODER_STAGES.values()))})")
    width = model.audio.cfg.width if kind == "audio" else model.vision.cfg.width
    frames = 1 if kind == "audio" else IMAGE_CTC_FRAMES
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed * 1000 + stage_index)
        head = torch.nn.Linear(width, frames * (model.tokenizer.vocab_size + 1))
    return head.to(model.device)


def column_ctc_logits(model: OmniModel, head: torch.nn.Linear, pixels: Sequence[torch.Tensor]
                      ) -> tuple[torch.Tensor, torch.Tensor]:
    """Log-probabilities (B, T, C) and lengths of the image-CTC frames: each image's patch features
    (`VisionEncoder.hidden`) are averaged over the rows, and every column gives `IMAGE_CTC_FRAMES`
    frames, left to right (a line of text reads along the columns)."""
    c = model.tokenizer.vocab_size + 1
    seqs = []
    for h in model.vision.hidden([p.to(model.device) for p in pixels]):
        cols = h.float().mean(dim=1)  # (N, gw, D): N tiles of one image side by side
        seqs.append(head(cols.flatten(0, 1)).view(-1, c).log_softmax(-1))
    return stack_frames(seqs)


def stack_frames(seqs: Sequence[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-image CTC log-probabilities (T_i, C) → one zero-padded (B, max T_i, C) tensor and the T_i."""
    lengths = torch.tensor([x.shape[0] for x in seqs])
    t = int(lengths.max())
    return torch.stack([F.pad(x, (0, 0, 0, t - x.shape[0])) for x in seqs]), lengths


def ctc_batch_loss(model: OmniModel, head: torch.nn.Linear, examples: Sequence[Example],
                   kind: str = "audio") -> tuple[torch.Tensor, int]:
    """CTC loss of one encoder's features (before its projector) against each example's answer in
    the tokenizer's ids (blank = 0, id k = class k + 1), averaged over the batch: the audio encoder's
    frames against a clip's transcript, or the vision encoder's columns against a rendered line."""
    if kind == "audio":
        enc = model.audio
        waves = [ex.media[0].pixels.to(model.device) for ex in examples]
        feats, lengths = enc.batch_features(waves)
        hidden, out_len = enc.hidden(feats, lengths.to(model.device))
        logp = head(hidden.float()).log_softmax(-1)  # (B, T', C)
    else:
        logp, out_len = column_ctc_logits(model, head, [ex.media[0].pixels for ex in examples])
    return ctc_answer_loss(model, logp, out_len, examples)


def ctc_answer_loss(model: OmniModel, logp: torch.Tensor, out_len: torch.Tensor, examples: Sequence[Example]
                    ) -> tuple[torch.Tensor, int]:
    """CTC loss of frames ``logp`` (B, T, C; ``out_len`` each) against each example's answer in the
    tokenizer's ids (blank = 0, id k = class k + 1), averaged over the batch; and the target count."""
    targets = [torch.tensor(model.tokenizer.encode(ex.answer), dtype=torch.long) + 1 for ex in examples]
    loss = F.ctc_loss(logp.transpose(0, 1), torch.cat(targets).to(model.device), out_len,
                      torch.tensor([len(t) for t in targets]), blank=0, zero_infinity=True)
    return loss, sum(len(t) for t in targets)


# ---- schedule, state ----------------------------------------------------------------------------
def lr_at(step: int, total: int, base: float, warmup: int = 50, decay_frac: float = 0.25) -> float:
    """Warm up, hold, then decay linearly over the last ``decay_frac`` of the stage to base/10."""
    if step < warmup:
        return base * (step + 1) / warmup
    start = int(total * (1 - decay_frac))
    if step < start:
        return base
    frac = (step - start) / max(1, total - start)
    return base * (1 - 0.9 * frac)


@dataclass
class TrainArgs:
    preset: str = "tiny"
    out: str = "evalsuite/model/checkpoints/tiny"
    seed: int = 0
    batch: int = 16
    lr: float = 2e-3
    weight_decay: float = 0.01
    stages: tuple[str, ...] = STAGE_NAMES
    steps: dict[str, int] = field(default_factory=lambda: dict(DEFAULT_STEPS))
    eval_n: int = 200
    save_every: int = 200
    device: str = "cpu"
    threads: int = 0
    bench: bool = False
    pool_sizes: dict[str, int] = field(default_factory=dict)

    def fingerprint(self) -> dict[str, Any]:
        """What a resumed run must share with the run it continues."""
        return {k: v for k, v in asdict(self).items() if k not in ("out", "eval_n", "save_every", "device",
                                                                 "threads", "bench")}


def _atomic_torch_save(obj: Any, path: Path) -> None:
    tmp = path.with_name(path.name + ".tmp")
    torch.save(obj, tmp)
    os.replace(tmp, path)


def save_state(out: Path, model: OmniModel, opt: torch.optim.Optimizer, stage: int, step: int,
               history: dict[str, Any], args: TrainArgs, aux: dict[str, Any] | None = None) -> None:
    """``aux``: an encoder stage's head and its optimizer, while that stage is under way."""
    from evalsuite.model import weights

    out.mkdir(parents=True, exist_ok=True)
    _atomic_torch_save({"stage": stage, "step": step, "model": model.state_dict(), "opt": opt.state_dict(),
                        "args": args.fingerprint(), "history": history, "aux": aux}, out / STATE_FILE)
    weights.save(model, out)
    write_history(out, history)


def write_history(out: Path, history: dict[str, Any]) -> None:
    from evalsuite.results import atomic_write_text

    atomic_write_text(out / HISTORY_FILE, json.dumps(history, indent=1) + "\n")


def load_state(out: Path, args: TrainArgs) -> dict[str, Any] | None:
    path = out / STATE_FILE
    if not path.is_file():
        return None
    state = torch.load(path, map_location="cpu", weights_only=False)
    saved, now = dict(state.get("args") or {}), args.fingerprint()
    # What is still to come may change on resume (the steps of stages not begun, and the stages after
    # them: a finished run can be extended with more); the stages already run, or under way, and their
    # steps may not.
    n_begun = state["stage"] + (1 if state["step"] > 0 else 0)
    saved_stages = tuple(saved.pop("stages", ()))
    begun = list(saved_stages[:n_begun])
    same_begun = tuple(args.stages[:n_begun]) == tuple(begun) and \
        {k: v for k, v in (saved.get("steps") or {}).items() if k in begun} == \
        {k: v for k, v in now["steps"].items() if k in begun}
    saved.pop("steps", None)
    rest = {k: v for k, v in now.items() if k not in ("steps", "stages")}
    if saved != rest or not same_begun:
        raise SystemExit(f"{path}: written by a run with different settings {state.get('args')}; expected "
                         f"{now} (use another --out, or delete it to start over)")
    return state


# ---- evaluation through the harness ---------------------------------------------------------------
def evaluate(out: Path, tag: str, n: int, tasks: Sequence[str] = EVAL_TASKS, model: str = "bf16") -> dict[str, Any]:
    """Evaluate the checkpoint in ``out`` with the harness (``model`` on each task's eval split, ``n``
    samples); returns {task: {metric: value}} and the prompt-token counts."""
    from evalsuite.backends.reference import using_checkpoint
    from evalsuite.runner import RunConfig, run

    with using_checkpoint(out):
        outcome = run(RunConfig(model=model, tasks=list(tasks), out=out / "evals" / tag, limit=n, overwrite=True,
                                quiet=True, report=False))
    table = {}
    for name, res in outcome.results["tasks"].items():
        table[name] = {"primary": res.get("primary_metric"), **{k: v for k, v in res["metrics"].items()
                                                                if isinstance(v, (int, float))}}
    return table


def eval_counts(history: dict[str, Any]) -> set[Any]:
    """The eval sample counts of the history's per-stage evaluations (None where one was not
    recorded): more than one means the table shows them per row."""
    return {e.get("n") for e in history.get("evals", [])}


def bench_table(history: dict[str, Any]) -> str:
    """Markdown: one row per evaluated stage, one column per task (primary metric)."""
    evals = history.get("evals", [])
    with_n = len(eval_counts(history)) > 1  # the sample count changed between stages: show it per row
    lines = ["| after stage | step | " + ("n | " if with_n else "") + " | ".join(EVAL_TASKS) + " | samples/s |",
             "|---|---:|" + ("---:|" if with_n else "") + "---:|" * len(EVAL_TASKS) + "---:|"]
    for e in evals:
        cells = []
        for t in EVAL_TASKS:
            r = e["table"].get(t, {})
            v = r.get(r.get("primary") or "", None)
            cells.append("—" if v is None else f"{v:.3f}")
        n = (f"{e['n']} | " if e.get("n") is not None else "— | ") if with_n else ""
        lines.append(f"| {e['stage']} | {e['global_step']} | " + n + " | ".join(cells)
                     + f" | {e.get('samples_per_s', 0):.1f} |")
    return "\n".join(lines)


# ---- the loop -----------------------------------------------------------------------------------
def train(args: TrainArgs, progress: bool = True, stop_after: int | None = None) -> dict[str, Any]:
    """Run (or resume) the curriculum in ``args.out``; returns the history. ``stop_after``: save a
    resumable state and return after that many steps of this call (a time-boxed session)."""
    from tqdm import tqdm

    if args.threads:
        torch.set_num_threads(args.threads)
    out = Path(args.out)
    unknown = [s for s in args.stages if s not in STAGES]
    if unknown:
        raise SystemExit(f"unknown stage(s) {unknown}; expected some of {list(STAGES)}")
    device = torch.device(args.device)
    model = build_omni(args.preset, seed=args.seed, device=device).train()
    opt = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=args.weight_decay, betas=(0.9, 0.98))
    history: dict[str, Any] = {"args": asdict(args), "curve": [], "evals": []}
    start_stage, start_step = 0, 0
    state = load_state(out, args)
    if state is not None:
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["opt"])
        start_stage, start_step, history = state["stage"], state["step"], state["history"]
        history["args"] = asdict(args)  # an extended run records the stages it now runs
        if progress:
            print(f"resuming {out} at stage {args.stages[start_stage] if start_stage < len(args.stages) else 'done'} "
                  f"step {start_step}", file=sys.stderr)
    pools = Pools(model.config, args.pool_sizes)
    global_step = sum(args.steps[s] for s in args.stages[:start_stage]) + start_step
    steps_before = global_step
    for k in range(start_stage, len(args.stages)):
        stage = args.stages[k]
        total = args.steps[stage]
        first = start_step if k == start_stage else 0
        if first == 0 and stage in REINIT:
            fresh = dict(build_omni(model.config, seed=args.seed).named_parameters())
            with torch.no_grad():
                for name, p in model.named_parameters():
                    if name.startswith(REINIT[stage]):
                        p.copy_(fresh[name])
                        opt.state.pop(p, None)  # its Adam moments belonged to the old values
        head = head_opt = None
        if stage in ENCODER_STAGES:  # the encoder alone, with its own head and optimizer
            head = ctc_head(model, ENCODER_STAGES[stage], args.seed, k)
            head_opt = torch.optim.AdamW(head.parameters(), lr=args.lr, weight_decay=args.weight_decay,
                                         betas=(0.9, 0.98))
            if first and state is not None and state.get("aux"):
                head.load_state_dict(state["aux"]["head"])
                head_opt.load_state_dict(state["aux"]["opt"])
        frozen = [p for name, p in model.named_parameters() if name.startswith(FROZEN.get(stage, ())) and p.requires_grad]
        for p in frozen:
            p.requires_grad_(False)

        def aux() -> dict[str, Any] | None:
            return None if head is None else {"head": head.state_dict(), "opt": head_opt.state_dict()}
        bar = tqdm(range(first, total), desc=f"stage {stage}", disable=not progress, mininterval=5.0,
                   initial=first, total=total)
        t0, seen, loss_acc, n_acc = time.perf_counter(), 0, 0.0, 0
        for step in bar:
            examples = step_examples(pools, args.seed, k, step, stage, total, args.batch)
            for group in opt.param_groups + (head_opt.param_groups if head_opt else []):
                group["lr"] = lr_at(step, total, args.lr)
            loss, _ = (batch_loss(model, examples) if head is None
                       else ctc_batch_loss(model, head, examples, ENCODER_STAGES[stage]))
            opt.zero_grad(set_to_none=True)
            if head_opt is not None:
                head_opt.zero_grad(set_to_none=True)
            loss.backward()
            # parameters without a gradient (frozen, or outside an encoder stage's encoder) are skipped
            # by the clipping and left untouched by AdamW, weight decay included
            torch.nn.utils.clip_grad_norm_(list(model.parameters()) + (list(head.parameters()) if head else []), 1.0)
            if step >= HEAD_WARMUP.get(stage, 0):
                opt.step()
            if head_opt is not None:
                head_opt.step()
            global_step += 1
            seen += len(examples)
            loss_acc += loss.item()
            n_acc += 1
            rate = seen / max(1e-9, time.perf_counter() - t0)
            bar.set_postfix(loss=f"{loss.item():.3f}", samples_s=f"{rate:.1f}", refresh=False)
            if (step + 1) % 25 == 0 or step + 1 == total:
                history["curve"].append({"stage": stage, "step": step + 1, "global_step": global_step,
                                         "loss": round(loss_acc / n_acc, 4), "samples_per_s": round(rate, 2)})
                loss_acc, n_acc = 0.0, 0
            if (step + 1) % args.save_every == 0 and step + 1 < total:
                save_state(out, model, opt, k, step + 1, history, args, aux())
            if stop_after is not None and global_step - steps_before >= stop_after and step + 1 < total:
                save_state(out, model, opt, k, step + 1, history, args, aux())
                for p in frozen:
                    p.requires_grad_(True)
                bar.close()
                return history
        bar.close()
        for p in frozen:
            p.requires_grad_(True)
        model.eval()
        save_state(out, model, opt, k + 1, 0, history, args)
        if args.eval_n > 0:
            table = evaluate(out, f"after-{stage}", args.eval_n)
            history["evals"].append({"stage": stage, "global_step": global_step, "table": table, "n": args.eval_n,
                                     "samples_per_s": history["curve"][-1]["samples_per_s"] if history["curve"] else 0})
            save_state(out, model, opt, k + 1, 0, history, args)
            if progress:
                print(bench_table(history), file=sys.stderr)
            if args.bench:
                write_bench(history, args)
        model.train()
        if stop_after is not None and global_step - steps_before >= stop_after:
            return history
    if (out / STATE_FILE).is_file() and history.get("done") != list(args.stages):
        history["done"] = list(args.stages)  # the stages a finished run ran (it may be extended later)
        write_history(out, history)
    return history


def write_bench(history: dict[str, Any], args: TrainArgs) -> None:
    from bench.report import ROOT, device_line, update

    counts = eval_counts(history)
    samples = ("samples per stage in the n column" if len(counts) > 1
               else f"{next(iter(counts), None) or args.eval_n} samples")
    body = (f"Per-stage evaluation of the trained `{args.preset}` model (`bf16`, each task's eval split, "
            f"{samples}, primary metric), {time.strftime('%Y-%m-%d')}, {device_line()}; "
            f"command: `python -m evalsuite.model.train --bench` (`make train`), steps {args.steps}, batch {args.batch}.\n\n"
            + bench_table(history))
    update(ROOT / "BENCHMARKS.md", "Training curriculum", body)


def parse(argv: Sequence[str] | None = None) -> tuple[TrainArgs, int | None]:
    p = argparse.ArgumentParser(prog="python -m evalsuite.model.train", description=__doc__.split("\n")[0])
    p.add_argument("--preset", default="tiny")
    p.add_argument("--out", default="evalsuite/model/checkpoints/tiny")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--lr", type=float, default=2e-3)
    p.add_argument("--stages", default=",".join(STAGE_NAMES), help="comma-separated, in order")
    p.add_argument("--steps", default="", help="per-stage steps, e.g. text=600,image=3000")
    p.add_argument("--steps-scale", type=float, default=1.0, help="multiply every stage's steps")
    p.add_argument("--eval-n", type=int, default=200, help="eval samples per task after each stage (0: none)")
    p.add_argument("--save-every", type=int, default=200)
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--threads", type=int, default=0)
    p.add_argument("--bench", action="store_true", help="write the per-stage table to BENCHMARKS.md")
    p.add_argument("--stop-after", type=int, default=None,
                   help="save a resumable state and exit after this many steps (resume by running again)")
    a = p.parse_args(argv)
    stages = tuple(s for s in a.stages.split(",") if s)
    steps = dict(DEFAULT_STEPS)
    for item in filter(None, a.steps.split(",")):
        name, _, val = item.partition("=")
        if name not in STAGES or not val.isdigit():
            p.error(f"--steps expects stage=N pairs with stages from {list(STAGES)}, got {item!r}")
        steps[name] = int(val)
    steps = {k: max(1, int(round(v * a.steps_scale))) for k, v in steps.items()}
    args = TrainArgs(preset=a.preset, out=a.out, seed=a.seed, batch=a.batch, lr=a.lr, stages=stages, steps=steps,
                     eval_n=a.eval_n, save_every=a.save_every, device=a.device, threads=a.threads, bench=a.bench)
    return args, a.stop_after


def main(argv: Sequence[str] | None = None) -> int:
    args, stop_after = parse(argv)
    train(args, stop_after=stop_after)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
