"""``audioqa``: MMAU-style audio QA on short synthetic clips (sound, speech, paralinguistic).

One question per clip (``evalsuite.tasks.gen.audio``). Sample ``i`` takes its category from ``i % 3`` (sound,
speech, paralinguistic) and its sub-type in turn within the category, so any prefix of the split is
balanced. Choices are texts and the prompt lists them; the metric is MMAU's official string match
(``evalsuite.tasks.scoring.mmau_match``), broken down by category and sub-type. Text-only form
(``metadata["text_form"]``): the transcript: the words for speech and paralinguistic clips (what only
the voice carries is left out), empty for tones and noise.
"""

from __future__ import annotations

from typing import Any, Iterator

import soundfile as sf

from evalsuite.registry import TASKS
from evalsuite.task import Task, TaskArgError
from evalsuite.types import ContentPart, Sample, user
from evalsuite.tasks.common import SPLITS, split_seed, task_cache
from evalsuite.tasks.gen.audio import DIFFICULTIES, SAMPLE_RATE, SUBTYPES, ClipSpec, build_clip, render_clip, require_espeak
from evalsuite.tasks.scoring import mmau_match

CATEGORIES = tuple(SUBTYPES)


def prompt(question: str, choices: tuple[str, ...] | list[str]) -> str:
    """The fixed prompt: the question, the choices one per line, the instruction."""
    return "\n".join([question, "Choices:"] + [f"- {c}" for c in choices] + ["Answer with one of the choices."])


def subtype_of(index: int) -> str:
    """Sub-type of sample ``index``: categories in turn, sub-types in turn within each."""
    subs = SUBTYPES[CATEGORIES[index % len(CATEGORIES)]]
    return subs[(index // len(CATEGORIES)) % len(subs)]


@TASKS.register("audioqa")
class AudioQA(Task):
    """MMAU-style audio QA: sound, speech and paralinguistic questions on short synthetic clips."""

    name = "audioqa"
    version = "1"
    default_args: dict[str, Any] = {"split": "eval", "n": 200, "difficulty": "default", "sample_rate": SAMPLE_RATE}
    media_keys = ("sample_rate",)
    breakdown_keys = ("category", "subtype")
    max_tokens = 16

    def __init__(self, **args: Any) -> None:
        super().__init__(**args)
        if self.args["split"] not in SPLITS:
            raise TaskArgError(f"task argument audioqa.split expects one of {SPLITS}, got {self.args['split']!r}")
        if self.args["difficulty"] not in DIFFICULTIES:
            raise TaskArgError(
                f"task argument audioqa.difficulty expects one of {DIFFICULTIES}, got {self.args['difficulty']!r}")
        if self.args["n"] < 0:
            raise TaskArgError(f"task argument audioqa.n expects a count >= 0, got {self.args['n']}")
        if self.args["sample_rate"] <= 0:
            raise TaskArgError(f"task argument audioqa.sample_rate expects Hz > 0, got {self.args['sample_rate']}")

    def _specs(self) -> list[ClipSpec]:
        split, difficulty = self.args["split"], self.args["difficulty"]
        return [build_clip(split_seed(self.name, split, i), subtype_of(i), difficulty) for i in range(self.args["n"])]

    def samples(self) -> Iterator[Sample]:
        split, difficulty = self.args["split"], self.args["difficulty"]
        folder = task_cache(self.name, self.version, split) / difficulty
        specs = self._specs()
        paths = [folder / f"{i:05d}.flac" for i in range(len(specs))]
        if any(s.needs_espeak and not p.exists() for s, p in zip(specs, paths)):
            require_espeak()  # a missing tool fails the whole task with one line, before any work
        for i, (spec, path) in enumerate(zip(specs, paths)):
            error, duration = None, 0.0
            try:
                duration = render_clip(spec, path) if not path.exists() else sf.info(str(path)).duration
            except Exception as e:  # one clip that fails to synthesize must not lose the others
                error = f"could not generate audio {path}: {type(e).__name__}: {e}"
            clip_id = f"{split}-{i:05d}"
            yield Sample(
                id=clip_id,
                messages=[user(ContentPart.of_media("audio", str(path)), prompt(spec.question, spec.choices))],
                target=spec.answer,
                choices=list(spec.choices),
                metadata={
                    "category": spec.category, "subtype": f"{spec.category}/{spec.subtype}",
                    "difficulty": spec.difficulty, "cluster": clip_id, "seed": spec.seed,
                    "duration_s": round(duration, 4), "text_form": spec.transcript,
                },
                error=error,
            )

    def score(self, sample: Sample, prediction: str) -> dict[str, Any]:
        return {"score": float(mmau_match(prediction, sample.choices or [], str(sample.target)))}
