"""The curriculum as data: the stages `make train` runs, in order, and the schedule inside a stage.

A `Stage` names its mixture of training sources (`evalsuite.training.sources`), each with a weight
that moves linearly from the stage's start to its end, its steps at batch 16 on two CPU cores, and
which parameters it re-initialises, freezes or first trains. An encoder stage (``encoder`` set)
trains one media encoder alone with a CTC head of its own (`evalsuite.training.losses`) instead of
the LM's answer loss. The learning rate warms up, holds and decays over the last quarter of every
stage (`lr_at`). Why each stage exists and what it measured: docs/training.md.

The committed checkpoint (`evalsuite/model/checkpoints/tiny`) is this curriculum run with seed 0,
batch 16 and learning rate 2e-3; its ``history.json`` records the stages and steps it ran. A v2
curriculum (`V2_STAGES`, `CURRICULA`) appends the video stages (the dense per-tubelet objective, then
videoqa on fresh videos) and gui with location tokens; `STAGES` and `CURRICULUM` stay the committed
run's.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Mapping

# Parameter name prefixes of the two encoders a stage may re-initialise or freeze.
AUDIO_ENCODER: tuple[str, ...] = ("audio.subsample.", "audio.blocks.")
VISION_ENCODER: tuple[str, ...] = ("vision.patch_embed.", "vision.blocks.", "vision.norm.")
ENCODERS: tuple[str, ...] = VISION_ENCODER + AUDIO_ENCODER

# The tasks evaluated through the harness after every stage.
EVAL_TASKS: tuple[str, ...] = ("docqa", "gui", "videoqa", "audioqa")


@dataclass(frozen=True)
class Stage:
    """One stage of the curriculum.

    ``mix``: source -> (weight at the stage's start, weight at its end). ``encoder``: ``"audio"`` or
    ``"image"`` for a stage that trains that encoder alone with CTC, ``"tokens"`` for one that trains
    what makes the image tokens after the vision transformer (the projector) with CTC on their merged
    columns (`losses.merged_column_logits`), ``"video"`` for one that trains
    the video tokens alone with the dense per-tubelet state objective (`losses.video_state_loss`).
    ``reinflate``: the tubelet embedding is inflated again from the current image patch embedding
    when the stage begins. ``reinit``: parameter prefixes
    reset to their initial values (those of `build_omni` with the run's seed) when the stage begins.
    ``frozen``: parameter prefixes the stage does not train. ``head_warmup``: steps at the start of
    an encoder stage in which only its new CTC head learns (the encoder it continues is a trained
    one; a random head's gradients would only scramble it). ``introduces``: parameters the stage is
    the first to train; they start as a function-preserving zero and every earlier stage holds them
    there (`frozen_prefixes`). ``locations``: the stage answers grounding questions with location
    tokens (the model needs some, `OmniConfig.loc_bins`); their embedding and output rows start from
    the image position table when it begins (`evalsuite.model.locations`)."""

    name: str
    steps: int
    mix: Mapping[str, tuple[float, float]]
    about: str = ""
    encoder: str | None = None
    reinit: tuple[str, ...] = ()
    frozen: tuple[str, ...] = ()
    head_warmup: int = 0
    introduces: tuple[str, ...] = field(default=())
    reinflate: bool = False
    locations: bool = False

    def __post_init__(self) -> None:
        object.__setattr__(self, "mix", MappingProxyType(dict(self.mix)))
        if self.encoder not in (None, "audio", "image", "tokens", "video"):
            raise ValueError(f"stage {self.name}: encoder must be 'audio', 'image', 'tokens', 'video' or None, "
                             f"got {self.encoder!r}")

    def weights(self, progress: float) -> dict[str, float]:
        """Mixture weights at ``progress`` in [0, 1] (linear from start to end)."""
        return {src: a + (b - a) * progress for src, (a, b) in self.mix.items()}


_READ_MIX = {"docqa": (6, 6), "line": (2, 1), "page-line": (1, 1), "gui": (2, 2), "audioqa": (1, 1),
             "videoqa": (0.5, 0.5), "text:docqa": (0.5, 0.5), "text:audioqa": (0.25, 0.25)}

CURRICULUM: tuple[Stage, ...] = (
    Stage("text", 250, {"text:docqa": (3, 3), "text:gui": (3, 3), "text:videoqa": (2, 2), "text:audioqa": (1, 1)},
          about="the text forms of every task: a document's lines, a screen's element list, a video's event "
                "log, a clip's transcript, each followed by the task's question"),
    Stage("image", 3000, {"line": (6, 0.5), "page-line": (3, 0.5), "transcribe": (3, 1.5), "docqa": (1, 5),
                          "gui": (1, 4), "text:docqa": (0.5, 0.5), "text:gui": (0.5, 0.5),
                          "text:videoqa": (0.25, 0.25), "text:audioqa": (0.25, 0.25)},
          about="reading bridges first (one rendered line; a line placed on a page; a whole document "
                "transcribed), their share falling, then docqa and gui"),
    Stage("video", 700, {"videoqa": (8, 8), "docqa": (1.5, 1.5), "gui": (1, 1), "transcribe": (0.3, 0.3),
                         "text:docqa": (0.2, 0.2), "text:gui": (0.2, 0.2), "text:videoqa": (0.3, 0.3)},
          about="videoqa"),
    Stage("audio", 800, {"audioqa": (8, 8), "videoqa": (1.5, 1.5), "docqa": (1.5, 1.5), "gui": (1, 1),
                         "transcribe": (0.3, 0.3), "text:docqa": (0.2, 0.2), "text:gui": (0.2, 0.2),
                         "text:audioqa": (0.3, 0.3)},
          about="audioqa"),
    Stage("recall", 1200, {"text:docqa": (4, 4), "text:audioqa": (2, 2), "text:gui": (0.5, 0.5),
                           "text:videoqa": (0.5, 0.5), "docqa": (0.5, 0.5), "audioqa": (0.5, 0.5)},
          about="the text forms again, heavily: looking a value up in context"),
    Stage("consolidate", 2000, {"audioqa": (3, 3), "videoqa": (2, 2), "docqa": (2, 2), "gui": (2, 2), "line": (1, 1),
                                "page-line": (0.5, 0.5), "transcribe": (0.5, 0.5), "text:docqa": (0.5, 0.5),
                                "text:audioqa": (0.5, 0.5), "text:gui": (0.25, 0.25), "text:videoqa": (0.25, 0.25)},
          about="every task and the reading bridges together, against forgetting"),
    Stage("audio-ctc", 3000, {"hear": (1, 1)}, encoder="audio", reinit=AUDIO_ENCODER,
          about="the audio encoder alone, re-initialised, with CTC on the transcripts of train clips with words"),
    Stage("audio-align", 800, {"audioqa": (4, 4), "text:audioqa": (1, 1), "docqa": (0.5, 0.5), "gui": (0.5, 0.5),
                               "videoqa": (0.5, 0.5), "text:docqa": (0.5, 0.5)},
          frozen=AUDIO_ENCODER, about="audioqa with the audio encoder frozen, the other tasks replayed"),
    Stage("image-ctc", 12000, {"line": (1, 1)}, encoder="image", reinit=VISION_ENCODER,
          about="the vision encoder alone, re-initialised, reading rendered lines with a CTC over its patch columns"),
    Stage("image-align", 1500, {"line": (3, 1), "page-line": (1, 1), "transcribe": (1, 1), "docqa": (2, 4),
                                "gui": (1, 2), "videoqa": (1, 1), "audioqa": (1, 1), "text:docqa": (0.5, 0.5),
                                "text:audioqa": (0.25, 0.25)},
          frozen=ENCODERS, about="the reading bridges, docqa and gui with the encoders frozen, the others replayed"),
    Stage("read", 2000, _READ_MIX, frozen=ENCODERS,
          about="docqa above all, lines and gui, the encoders frozen, the others replayed"),
    Stage("read-more", 1500, _READ_MIX, frozen=ENCODERS,
          about="the same mixture again, the learning rate warmed up again"),
    Stage("read-wide", 4000, {"line": (4, 1), "page-line": (2, 1), "docqa-wide": (3, 6), "gui-wide": (1.5, 2),
                              "audioqa": (1, 1), "videoqa": (0.5, 0.5), "text:docqa": (0.5, 0.5),
                              "text:audioqa": (0.25, 0.25)},
          frozen=ENCODERS, about="lines first, then docqa and gui from train pools too wide to learn by heart"),
    Stage("image-ctc-chars", 10000, {"char-line": (3, 3), "line": (1, 1)}, encoder="image", head_warmup=1500,
          about="the trained vision encoder again with a new CTC head, on lines of random characters too"),
    Stage("read-chars", 4500, {"char-line": (4, 2), "line": (1, 1), "page-line": (1, 1), "docqa-wide": (3, 5),
                               "gui-wide": (1, 1.5), "audioqa": (1.5, 1.5), "videoqa": (0.5, 0.5),
                               "text:docqa": (0.5, 0.5), "text:audioqa": (0.25, 0.25)},
          frozen=ENCODERS, about="the LM re-aligned to the moved encoder: random-character lines, docqa and gui wide"),
    Stage("lookup", 5000, {"text:docqa-wide": (3, 2), "docqa-wide": (4, 5), "point": (2, 1), "gui-wide": (1, 1.5),
                           "char-line": (1, 1), "page-line": (1, 1), "line": (0.5, 0.5), "audioqa": (1.5, 1.5),
                           "text:audioqa": (0.25, 0.25), "videoqa": (0.5, 0.5)},
          frozen=ENCODERS, about="the wide pool's documents as text beside their images, and gui's bridge `point`"),
    Stage("locate", 4000, {"gui-wide": (4, 5), "point": (2, 1), "docqa-wide": (3, 3), "text:docqa-wide": (1, 1),
                           "page-line": (1, 1), "char-line": (0.5, 0.5), "audioqa": (1.5, 1.5),
                           "text:audioqa": (0.25, 0.25), "videoqa": (0.5, 0.5)},
          frozen=ENCODERS, introduces=("vision.token_pos",),
          about="gui above all, training the image tokens' position table (`VisionConfig.token_pos`)"),
    Stage("widen", 1500, {"docqa-wide": (5, 6), "char-line": (3, 1.5), "page-line": (1, 1),
                          "text:docqa-wide": (0.5, 0.5), "gui-wide": (2, 2), "point": (0.5, 0.5),
                          "audioqa": (1.5, 1.5), "text:audioqa": (0.25, 0.25), "videoqa": (0.5, 0.5)},
          frozen=ENCODERS, introduces=("vision.projector.extra.",),
          about="docqa and random-character lines through the projector's second branch "
                "(`VisionConfig.projector_extra`), gui replayed"),
)

STAGES: dict[str, Stage] = {s.name: s for s in CURRICULUM}
STAGE_NAMES: tuple[str, ...] = tuple(STAGES)
DEFAULT_STEPS: dict[str, int] = {s.name: s.steps for s in CURRICULUM}

# The stages of a v2 curriculum, run after `CURRICULUM` (``python -m evalsuite.training
# --curriculum v2``, which extends a finished v1 run or starts from a v1 checkpoint with ``--init``).
# Not yet run: their steps are estimates, not measured choices.
VIDEO_PARTS: tuple[str, ...] = VISION_ENCODER + ("vision.projector.", "vision.token_pos")
V2_STAGES: tuple[Stage, ...] = (
    Stage("video-dense", 3000, {"video-dense": (1, 1)}, encoder="video", reinflate=True,
          frozen=VIDEO_PARTS,
          about="the tubelet embedding, inflated again from the trained patch embedding, trained alone on fresh "
                "videos to make each tubelet's tokens tell every cell's colour and shape, the counter and the "
                "caption (a linear readout of the tokens the LM sees; the shared vision encoder stays frozen)"),
    Stage("video-open", 1500, {"videoqa-open": (6, 6), "docqa-fresh": (2, 2), "gui-fresh": (1, 1),
                               "audioqa": (1.5, 1.5), "text:audioqa": (0.25, 0.25)},
          frozen=ENCODERS + ("video.tubelet_embed.",), introduces=("video.time_pos",),
          about="videoqa on fresh videos without options, answered with the option's text (a colour, a count, "
                "a quarter): finding the answer in the frozen video tokens apart from binding it to a letter; "
                "the time index (`VideoConfig.time_pos`, where the model has one) first trained; docqa and gui "
                "replayed from fresh items, audioqa from its pool"),
    Stage("video-align", 3000, {"videoqa-fresh": (6, 6), "videoqa-open": (2, 1), "choose": (1, 0.5),
                                "docqa-fresh": (2, 2), "gui-fresh": (1, 1), "audioqa": (1.5, 1.5),
                                "text:audioqa": (0.25, 0.25)},
          frozen=ENCODERS + ("video.tubelet_embed.",),
          about="videoqa on fresh videos with the video tokens frozen, answered with the letter, the choose bridge "
                "for binding a content to its letter, the open answers kept up; docqa and gui replayed from fresh "
                "items, audioqa from its pool"),
    Stage("settle", 600, {"videoqa-fresh": (2, 2), "videoqa-open": (0.5, 0.5), "choose": (0.25, 0.25),
                          "docqa-fresh": (2, 2), "gui-fresh": (1, 1), "gui-dense": (0.5, 0.5), "audioqa": (3, 3),
                          "text:audioqa": (0.5, 0.5), "text:docqa": (0.25, 0.25)},
          frozen=ENCODERS + ("video.tubelet_embed.",),
          about="every task's answers replayed together with the learning rate warmed up again and decayed (the "
                "video stages let audioqa slip): audioqa above all, videoqa, docqa and gui from fresh items"),
    Stage("gui-loc", 1200, {"gui-fresh": (4, 4), "gui-dense": (2, 2), "point": (1, 0.5), "text:gui": (0.5, 0.5),
                            "docqa-fresh": (2, 2), "videoqa": (0.5, 0.5), "audioqa": (1, 1),
                            "text:docqa": (0.25, 0.25), "text:audioqa": (0.25, 0.25)},
          frozen=ENCODERS + ("video.tubelet_embed.",), locations=True,
          about="gui answered with location tokens (a column and a row bin) whose rows start from the image "
                "position table, on fresh screens and every element of some (`gui-dense`); docqa, audioqa and "
                "videoqa replayed"),
    Stage("gui-loc-more", 1500, {"gui-fresh": (3, 3), "gui-dense": (3, 3), "point": (0.25, 0.25),
                                 "text:gui": (0.25, 0.25), "docqa-fresh": (3, 3), "videoqa": (0.5, 0.5),
                                 "audioqa": (1.5, 1.5), "text:docqa": (0.5, 0.5), "text:audioqa": (0.25, 0.25)},
          frozen=ENCODERS + ("video.tubelet_embed.",),
          about="the same with the learning rate warmed up again, more dense gui and more replay of docqa and "
                "audioqa (which `gui-loc` let slip)"),
    Stage("tokens-ctc", 2000, {"char-line": (3, 3), "line": (1, 1)}, encoder="tokens", head_warmup=300,
          frozen=VISION_ENCODER + ("vision.token_pos",),
          about="the projector alone, reading random-character and generator lines off the image tokens' merged "
                "columns with a CTC head (the vision transformer and the position table frozen)"),
    Stage("read-tokens", 1500, {"docqa-fresh": (6, 6), "char-line": (2, 1), "page-line": (1, 1), "line": (0.5, 0.5),
                                "gui-fresh": (1.5, 1.5), "gui-dense": (0.5, 0.5), "audioqa": (1, 1),
                                "videoqa": (0.5, 0.5), "text:docqa": (0.5, 0.5), "text:audioqa": (0.25, 0.25)},
          frozen=ENCODERS + ("video.tubelet_embed.",),
          about="the LM re-aligned to the image tokens `tokens-ctc` moved: docqa on fresh documents above all, "
                "lines, gui, audioqa and videoqa replayed"),
)
CURRICULA: dict[str, tuple[Stage, ...]] = {"v1": CURRICULUM, "v2": CURRICULUM + V2_STAGES}
V2_ONLY: dict[str, Stage] = {s.name: s for s in V2_STAGES}


def stage_named(name: str) -> Stage:
    """The stage ``name`` of any curriculum (names are unique across them)."""
    return STAGES[name] if name in STAGES else V2_ONLY[name]


def frozen_prefixes(name: str, curriculum: str = "v1") -> tuple[str, ...]:
    """The parameter prefixes stage ``name`` keeps frozen: its own ``frozen`` and what every later
    stage of the ``curriculum`` ``introduces`` (held at its zero start until the stage that trains
    it, so that a run from scratch trains exactly what the committed run trained)."""
    stages = CURRICULA[curriculum]
    names = [s.name for s in stages]
    later = stages[names.index(name) + 1:]
    return stage_named(name).frozen + tuple(p for s in later for p in s.introduces)


def stage_weights(stage: str, progress: float) -> dict[str, float]:
    """Mixture weights of ``stage`` at ``progress`` in [0, 1] (linear from start to end)."""
    return stage_named(stage).weights(progress)


def step_sources(seed: int, stage_index: int, step: int, stage: str, total: int, batch: int) -> list[str]:
    """The source of each example of one step: a pure function of (seed, stage index, step)."""
    rng = random.Random(f"sources:{seed}:{stage_index}:{step}")
    weights = stage_weights(stage, step / max(1, total - 1))
    names = sorted(weights)
    return rng.choices(names, [weights[n] for n in names], k=batch)


def lr_at(step: int, total: int, base: float, warmup: int = 50, decay_frac: float = 0.25) -> float:
    """Warm up, hold, then decay linearly over the last ``decay_frac`` of the stage to base/10."""
    if step < warmup:
        return base * (step + 1) / warmup
    start = int(total * (1 - decay_frac))
    if step < start:
        return base
    frac = (step - start) / max(1, total - start)
    return base * (1 - 0.9 * frac)
