"""What the synthetic image tasks share: argument checks and the cached media file of each seed.

A task's samples come in clusters: one generated image (a document, a screenshot) and the several
questions asked about it. Cluster ``i`` of a split uses ``split_seed(task, split, i)``; its PNG lives
at ``task_cache(task, version, split)/<difficulty>/<i>.png`` and is drawn only when missing, so a
second pass over the same samples writes nothing.
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import count
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

from evalsuite.task import TaskArgError
from evalsuite.types import Sample
from evalsuite.tasks.common import SPLITS, split_seed, task_cache
from evalsuite.tasks.gen.canvas import Canvas


@dataclass(frozen=True)
class Cluster:
    index: int
    seed: int
    name: str  # "<difficulty>-<index>", the metadata cluster id
    path: Path  # where its PNG lives


def check_args(task: str, args: dict[str, Any], difficulties: Sequence[str]) -> tuple[str, int, str]:
    """(split, n, difficulty) from a synthetic task's args, or one TaskArgError line."""
    split, n, difficulty = args["split"], args["n"], args["difficulty"]
    if split not in SPLITS:
        raise TaskArgError(f"task argument {task}.split expects one of {', '.join(SPLITS)}, got {split!r}")
    if not isinstance(n, int) or isinstance(n, bool) or n < 0:
        raise TaskArgError(f"task argument {task}.n expects a number of samples >= 0, got {n!r}")
    if difficulty not in difficulties:
        raise TaskArgError(
            f"task argument {task}.difficulty expects one of {', '.join(difficulties)}, got {difficulty!r}")
    return split, n, difficulty


def clusters(task: str, version: str, split: str, difficulty: str) -> Iterator[Cluster]:
    """Clusters 0, 1, 2, ... of a split (endless; the caller stops)."""
    root = task_cache(task, version, split) / difficulty
    for i in count():
        name = f"{difficulty}-{i:05d}"
        yield Cluster(i, split_seed(task, split, i), name, root / f"{i:05d}.png")


def ensure_png(canvas: Canvas, path: Path) -> bool:
    """Render ``canvas`` to ``path`` unless the file is already there; True when it wrote."""
    if path.is_file() and path.stat().st_size > 0:
        return False
    canvas.save_png(path)
    return True


def error_sample(task: str, split: str, cluster: Cluster, difficulty: str, error: BaseException) -> Sample:
    """The stand-in for a cluster whose media could not be generated: recorded, not raised."""
    return Sample(
        id=f"{split}-{cluster.name}-q0",
        messages=[],
        target=None,
        metadata={"category": "error", "difficulty": difficulty, "cluster": cluster.name, "seed": cluster.seed},
        error=f"{task}: could not generate {cluster.path.name} (seed {cluster.seed}): {type(error).__name__}: {error}",
    )


def rendered(task: str, version: str, split: str, difficulty: str,
             build: Callable[[int, str], Any]) -> Iterator[tuple[Cluster, Any]]:
    """Each cluster with its built item, whose ``canvas`` is written to ``cluster.path`` unless
    cached; a cluster whose build or render fails comes with its error sample instead (a
    :class:`Sample`), so one bad image never loses the others. Endless and lazy: take what you need."""
    for cluster in clusters(task, version, split, difficulty):
        try:
            item = build(cluster.seed, difficulty)
            ensure_png(item.canvas, cluster.path)
        except Exception as e:
            yield cluster, error_sample(task, split, cluster, difficulty, e)
            continue
        yield cluster, item
