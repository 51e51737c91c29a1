"""The task contract: data + prompt + scorer + aggregation, and no model code.

A task subclass declares its name, version, default arguments (media preprocessing settings among
them) and implements three things:

- ``samples()`` yields :class:`~evalsuite.types.Sample` objects (its prompt template is applied
  here: the sample's messages are what the model sees). A record that cannot be read becomes a
  sample with ``error`` set, so one bad record never loses the others; a folder in the wrong layout
  raises :class:`DataLayoutError` naming the files expected.
- ``score(sample, prediction)`` returns a dict with at least ``score`` (a float; 0/1 for accuracy)
  and any per-sample extras (``parsed``, ``anls``…).
- ``aggregate(results)`` turns the scored results into the task's metrics. The default is the mean
  of ``score`` as ``accuracy``; official adapters override it to reproduce their authors' rules.
- ``check()`` (optional): problems found without the model (an unknown lm-eval task name), raised as
  :class:`TaskArgError` / :class:`DataLayoutError`; the runner calls it before it builds the backend,
  so a typo never waits for a model to load.
- ``chance(sample)``: what a uniform random guess scores on a sample (1 / number of choices by
  default; a grounding task: the target's share of the screen). The runner writes the mean as the
  task's chance level, so a score near it reads as a guess, not a result.

Everything about a task that changes its numbers is in ``name``, ``version`` and ``args``; the runner
hashes these into the config hash that guards resumed runs and writes them into ``results.json``.
"""

from __future__ import annotations

import json
import math
from typing import Any, ClassVar, Iterable

from evalsuite.types import LOCATION_KEYS, Request, Sample, SampleResult


class DataLayoutError(ValueError):
    """A benchmark folder is not in the expected layout; the message names the files expected."""


class TaskArgError(ValueError):
    """A task argument has the wrong name or type; the message names what was expected."""


class Task:
    name: ClassVar[str] = ""
    version: ClassVar[str] = "1"
    primary_metric: ClassVar[str] = "accuracy"
    # Defaults for every argument the task understands; --task-arg may only set these keys.
    default_args: ClassVar[dict[str, Any]] = {}
    # Keys of ``args`` that are media preprocessing settings, passed to backends in Request.media.
    media_keys: ClassVar[tuple[str, ...]] = ()
    # Keys of ``args`` that say where the data lives, not what it is: a benchmark folder moved, or
    # read on another machine, is the same benchmark. Left out of the settings that make two runs
    # comparable (``settings``; results.json has them apart as ``data_location``); that the data is
    # the same is checked on the samples instead (their targets, on resume and in compare and gate).
    # (``hf``, a dataset's repo id, names the data and stays a setting.)
    location_keys: ClassVar[tuple[str, ...]] = LOCATION_KEYS
    # Metadata keys whose values split the metrics in the results' breakdown.
    breakdown_keys: ClassVar[tuple[str, ...]] = ("category",)
    # True where the primary metric counts a sample that failed (model call, media) as wrong, as the
    # official script does (OCRBench, ScreenSpot): its interval is then over every sample, a failed
    # one scored 0; False: over the scored samples (the metric leaves failures out).
    errors_count_as_wrong: ClassVar[bool] = False
    # Generation settings.
    max_tokens: ClassVar[int] = 32
    # How chance() is defined, written beside the chance level in results.json; a task without a
    # chance level says here why it has none.
    chance_method: ClassVar[str] = "analytic: 1 / number of choices, a uniform guess among them"

    def __init__(self, **args: Any) -> None:
        unknown = sorted(set(args) - set(self.default_args))
        if unknown:
            known = ", ".join(sorted(self.default_args)) or "none"
            raise TaskArgError(f"task {self.name!r} has no argument {unknown[0]!r} (known: {known})")
        merged = dict(self.default_args)
        for key, value in args.items():
            merged[key] = _coerce(self.name, key, value, self.default_args[key])
        q = merged.get("evs_q")
        if "evs_q" in self.media_keys and isinstance(q, (int, float)) and not 0.0 <= q < 1.0:
            # the video encoder refuses it; said once here rather than once per video sample
            raise TaskArgError(f"task argument {self.name}.evs_q expects an EVS pruning rate in [0, 1), got {q!r}")
        self.args: dict[str, Any] = merged

    # ---- to implement -------------------------------------------------------------------------
    def samples(self) -> Iterable[Sample]:
        raise NotImplementedError

    def score(self, sample: Sample, prediction: str) -> dict[str, Any]:
        raise NotImplementedError

    # ---- defaults -----------------------------------------------------------------------------
    def check(self) -> None:
        """Raise TaskArgError / DataLayoutError for what can be found wrong before any model exists;
        the runner calls it for every task before it builds the backend. Nothing by default."""

    def request(self, sample: Sample, seed: int = 0) -> Request:
        return Request(
            sample_id=sample.id,
            messages=sample.messages,
            max_tokens=int(self.args.get("max_tokens", self.max_tokens)),
            seed=seed,
            media=self.media_settings(),
            choices=sample.choices,
            task=self.name,
        )

    def media_settings(self) -> dict[str, Any]:
        return {k: self.args[k] for k in self.media_keys if k in self.args}

    def aggregate(self, results: list[SampleResult]) -> dict[str, float]:
        scored = [r.score for r in results if r.error is None and r.score is not None]
        return {self.primary_metric: (sum(scored) / len(scored)) if scored else float("nan")}

    def chance(self, sample: Sample) -> float | None:
        """The expected score of a uniform random guess on this sample (None when not defined).
        Multiple choice: 1 / number of choices. The task's chance level is the mean over its samples."""
        return 1.0 / len(sample.choices) if sample.choices else None

    def settings(self) -> dict[str, Any]:
        """``args`` without the data's location: what makes two runs of the task comparable."""
        return {k: v for k, v in self.args.items() if k not in self.location_keys}

    def data_location(self) -> dict[str, Any]:
        """Where the task read its data (the location args given), for the record."""
        return {k: v for k, v in self.args.items() if k in self.location_keys and v}

    def describe(self) -> dict[str, Any]:
        return {"name": self.name, "version": self.version, "args": self.settings()}

    def efficiency(self, results: list[SampleResult], wall_s: float) -> dict[str, Any]:
        """Task-specific efficiency figures (video-hours per hour…); empty by default."""
        return {}


class DrivingTask(Task):
    """A task that drives the backend itself instead of sending its samples one by one: the
    throughput task (load generation against a streaming backend) and lm-eval tasks (lm-eval's own
    loop). The runner hands it the backend, the run config and the output folder; it returns the
    task's results entry (None when the task produced nothing, e.g. a non-leader rank)."""

    def run_with(self, backend: Any, *, cfg: Any, out: Any, config_hash: str) -> dict[str, Any] | None:
        raise NotImplementedError


def _coerce(task: str, key: str, value: Any, default: Any) -> Any:
    """Coerce a --task-arg string to the default's type, with one clear error when it cannot be."""
    if default is None or isinstance(default, str):
        return value
    if not isinstance(value, str):  # given from Python: the default's type (a bool is not a number)
        want = (bool,) if isinstance(default, bool) else (int,) if isinstance(default, int) else \
            (int, float) if isinstance(default, float) else (type(default),)
        if isinstance(value, want) and (isinstance(default, bool) or not isinstance(value, bool)):
            if isinstance(value, float) and not math.isfinite(value):
                raise TaskArgError(_not_finite(task, key, value))
            return value
        raise TaskArgError(f"task argument {task}.{key} expects {type(default).__name__} "
                           f"(like {json.dumps(default)}), got {value!r}")
    try:
        if isinstance(default, bool):
            low = value.lower()
            if low in ("1", "true", "yes", "on"):
                return True
            if low in ("0", "false", "no", "off"):
                return False
            raise ValueError(value)
        if isinstance(default, int):
            return int(value)
        if isinstance(default, float):
            number = float(value)
            if math.isfinite(number):
                return number
        if isinstance(default, (list, dict)):
            out = json.loads(value)
            if not isinstance(out, type(default)):
                raise ValueError(value)
            return out
    except ValueError:
        raise TaskArgError(
            f"task argument {task}.{key} expects {type(default).__name__} (like {json.dumps(default)}), got {value!r}"
        ) from None
    if isinstance(default, float):  # a float that is not finite
        raise TaskArgError(_not_finite(task, key, value))
    return value


def _not_finite(task: str, key: str, value: Any) -> str:
    """NaN and infinity are refused: results.json (JSON) records them as null, so the run's settings
    would read as unset and two runs with different values as equal."""
    return f"task argument {task}.{key} expects a finite number, got {value!r}"
