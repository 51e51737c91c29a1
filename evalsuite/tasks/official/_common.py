"""Plumbing shared by the official-benchmark adapters: reading index files, making sample ids unique
and turning a bad record into an errored sample (finding the data folder, release or Hugging Face
snapshot, is :mod:`evalsuite.tasks.official._hf`'s job).

Layout problems (no ``data_dir``, a missing index file, an index that is not JSON) raise
:class:`~evalsuite.task.DataLayoutError` naming the files expected; a problem with one record or one
media file becomes that sample's ``error`` so the others still load.
"""

from __future__ import annotations

import json
import math
from collections import Counter
from pathlib import Path
from typing import Any, Iterable, Sequence

from evalsuite.task import DataLayoutError
from evalsuite.types import Sample, SampleResult

# Media defaults shared by the adapters, recorded with every result and changed with --task-arg (the
# image patch budget is the full-size vision config's; video samples 1 fps and at most 64 frames, half
# the full-size VideoConfig's 2 fps / 128, which keeps long videos affordable on a CPU).
IMAGE_ARGS: dict[str, Any] = {"min_patches": 1024, "max_patches": 13312}
VIDEO_ARGS: dict[str, Any] = {"fps": 1.0, "max_frames": 64, "evs_q": 0.0}
AUDIO_ARGS: dict[str, Any] = {"sample_rate": 16000}


def read_json(path: Path, task: str, expected: str) -> Any:
    """Parse an index file; a missing or unparseable one is a layout error."""
    if not path.is_file():
        raise DataLayoutError(f"{task}: {path} not found (expected {expected})")
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise DataLayoutError(f"{task}: {path} is not valid JSON ({e}); expected {expected}") from None


def unique_ids(ids: Sequence[str]) -> list[str]:
    """Keep ids as they are; where one repeats, suffix every copy after the first with ``#n``."""
    seen: Counter[str] = Counter()
    out: list[str] = []
    for i in ids:
        seen[i] += 1
        out.append(i if seen[i] == 1 else f"{i}#{seen[i]}")
    return out


def bad_sample(sample_id: str, message: str, **metadata: Any) -> Sample:
    """A record that could not be read: kept, with its error, so the run reports it."""
    return Sample(id=sample_id, messages=[], target=None, metadata=dict(metadata), error=message)


def missing_media(paths: Iterable[Path], kind: str) -> str | None:
    """An error line for the first media file that does not exist, else None."""
    for p in paths:
        if not p.is_file():
            return f"{kind} file not found: {p}"
    return None


def is_blank(value: Any) -> bool:
    """None, NaN or an empty/whitespace string (how parquet and JSON spell a missing field)."""
    if value is None:
        return True
    if isinstance(value, float) and math.isnan(value):
        return True
    return isinstance(value, str) and not value.strip()


def ok(results: Iterable[SampleResult]) -> list[SampleResult]:
    """The results that were scored (no error)."""
    return [r for r in results if r.error is None and r.score is not None]


def ratio(num: float, den: float) -> float:
    return num / den if den else float("nan")
