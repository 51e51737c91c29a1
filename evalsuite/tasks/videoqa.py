"""``videoqa``: long-video multiple-choice QA on synthetic sparse-event videos.

Each video (``evalsuite.tasks.gen.video``) is a static screen where objects appear and disappear, one object
changes colour, a counter goes up and a caption is shown once; 8 questions per video (12 for hour-long
ones) ask about order, count, attribute and when ("in which quarter"), with 4 lettered options.
Videos cycle through duration buckets (``BUCKET_CYCLE``): per 12 videos, 6 short (< 1 min), 5 medium
(5-15 min) and 1 long (1-1.2 h), so the default 200 questions use 24 videos, two of them hour-long.

Metric: accuracy with the robust letter extractor (``evalsuite.tasks.scoring.extract_choice``); an unparsed
response is wrong and counted in ``n_unparsed``. Efficiency: ``video_hours_per_hour``, the summed
duration of the scored samples' videos over the run's wall time (a video asked about 8 times is
watched 8 times). Text-only form (``metadata["text_form"]``): the video's event log.
"""

from __future__ import annotations

from typing import Any, Iterator

from evalsuite.registry import TASKS
from evalsuite.task import Task, TaskArgError
from evalsuite.types import ContentPart, Sample, SampleResult, user
from evalsuite.tasks.common import SPLITS, split_seed, task_cache
from evalsuite.tasks.gen.video import DESIGN_FPS, DESIGN_MAX_FRAMES, DIFFICULTIES, VideoSpec, build_video, render_video
from evalsuite.tasks.scoring import extract_choice

LETTERS = "ABCD"
BUCKET_CYCLE = ("short", "medium", "short", "medium", "short", "long",
                "short", "medium", "short", "medium", "short", "medium")


def prompt(question: str, options: tuple[str, ...] | list[str]) -> str:
    """The fixed prompt: the question, the lettered options, the instruction."""
    lines = [question] + [f"{letter}. {text}" for letter, text in zip(LETTERS, options)]
    return "\n".join(lines) + "\nAnswer with the option's letter."


def video_samples(spec: VideoSpec, path: str, split: str, index: int) -> list[Sample]:
    """The samples (one per question) of video ``index``, all sharing its file as their cluster."""
    cluster = f"{split}-{index:05d}"
    log = spec.event_log()
    out = []
    for k, q in enumerate(spec.questions):
        out.append(Sample(
            id=f"{cluster}-{k:02d}",
            messages=[user(ContentPart.of_media("video", path), prompt(q.text, q.options))],
            target=LETTERS[q.answer],
            choices=list(q.options),
            metadata={
                "category": q.category, "subtype": f"{q.category}/{q.subtype}", "bucket": spec.bucket,
                "duration_s": float(spec.duration_s), "difficulty": spec.difficulty, "cluster": cluster,
                "seed": spec.seed, "answer": q.options[q.answer], "text_form": log,
            },
        ))
    return out


@TASKS.register("videoqa")
class VideoQA(Task):
    """Long-video multiple-choice QA on sparse-event videos (order, count, attribute, when)."""

    name = "videoqa"
    version = "2"  # 2: the letter reader of extract_choice as it is now (hedges, explanations)
    default_args: dict[str, Any] = {
        "split": "eval", "n": 200, "difficulty": "default",
        "fps": DESIGN_FPS, "max_frames": DESIGN_MAX_FRAMES, "evs_q": 0.0,
    }
    media_keys = ("fps", "max_frames", "evs_q")
    breakdown_keys = ("category", "bucket")
    max_tokens = 32

    def __init__(self, **args: Any) -> None:
        super().__init__(**args)
        if self.args["split"] not in SPLITS:
            raise TaskArgError(f"task argument videoqa.split expects one of {SPLITS}, got {self.args['split']!r}")
        if self.args["difficulty"] not in DIFFICULTIES:
            raise TaskArgError(
                f"task argument videoqa.difficulty expects one of {DIFFICULTIES}, got {self.args['difficulty']!r}")
        if self.args["n"] < 0:
            raise TaskArgError(f"task argument videoqa.n expects a count >= 0, got {self.args['n']}")

    def samples(self) -> Iterator[Sample]:
        split, n, difficulty = self.args["split"], self.args["n"], self.args["difficulty"]
        folder = task_cache(self.name, self.version, split) / difficulty
        made, index = 0, 0
        while made < n:
            bucket = BUCKET_CYCLE[index % len(BUCKET_CYCLE)]
            seed = split_seed(self.name, split, index)
            spec = build_video(seed, bucket, difficulty)
            path = folder / f"{index:05d}.mp4"
            batch = video_samples(spec, str(path), split, index)[: n - made]
            if not path.exists():
                try:
                    render_video(spec, path)
                except Exception as e:  # one video that fails to encode must not lose the others
                    for s in batch:
                        s.error = f"could not generate video {path}: {type(e).__name__}: {e}"
            yield from batch
            made += len(batch)
            index += 1

    def score(self, sample: Sample, prediction: str) -> dict[str, Any]:
        letter = extract_choice(prediction, sample.choices, LETTERS)
        return {"score": float(letter == sample.target), "parsed": letter}

    def aggregate(self, results: list[SampleResult]) -> dict[str, float]:
        scored = [r for r in results if r.error is None and r.score is not None]
        if not scored:
            return {"accuracy": float("nan"), "n_unparsed": 0}
        return {
            "accuracy": sum(float(r.score or 0.0) for r in scored) / len(scored),
            "n_unparsed": sum(1 for r in scored if r.scores.get("parsed") is None),
        }

    def efficiency(self, results: list[SampleResult], wall_s: float) -> dict[str, Any]:
        seconds = sum(float(r.metadata.get("duration_s", 0.0)) for r in results if r.error is None and r.score is not None)
        out: dict[str, Any] = {"video_hours": seconds / 3600}
        if wall_s > 0:
            out["video_hours_per_hour"] = seconds / wall_s
        return out
