"""What the GUI-grounding adapters (ScreenSpot, ScreenSpot-v2, ScreenSpot-Pro) share: the prompt,
the click scorer and the metrics.

Rule (SeeClick ``pretrain/screenspot_test.py``; ScreenSpot-Pro ``eval_screenspot_pro.py``): the
model names one point; it is right when the point lies in the target box, borders included. A
response with no readable point is "wrong format" and counts as wrong. ``accuracy`` is the number
right over the number scored, as both scripts' "action acc" is; ``text_acc`` / ``icon_acc`` split it
by UI type. Boxes are kept in pixels ``[x1, y1, x2, y2]`` and the model's point is brought to pixels
by the task's ``coords`` argument (``norm1000`` default, ``norm1``, ``pixels``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

from evalsuite.task import TaskArgError
from evalsuite.types import ContentPart, Sample, SampleResult, user
from evalsuite.tasks.official._common import IMAGE_ARGS, ok, ratio
from evalsuite.tasks.scoring import COORDS, parse_point, point_in_box

GROUNDING_ARGS: dict[str, Any] = {"data_dir": "", "coords": "norm1000", **IMAGE_ARGS}

_HINTS = {
    "norm1000": "as (x, y) with integers from 0 to 1000 relative to the image width and height",
    "norm1": "as (x, y) with numbers from 0 to 1 relative to the image width and height",
    "pixels": "as (x, y) in pixels of the image",
}


def check_coords(task: str, coords: str) -> str:
    if coords not in COORDS:
        raise TaskArgError(f"task argument {task}.coords must be one of {', '.join(COORDS)}, got {coords!r}")
    return coords


def image_size(path: Path) -> tuple[int, int]:
    """Width and height from the image header (no full decode)."""
    from PIL import Image

    with Image.open(path) as im:
        return im.size


def grounding_sample(sid: str, image: Path, instruction: str, box: Sequence[float], size: tuple[int, int],
                     coords: str, metadata: dict[str, Any]) -> Sample:
    prompt = (f'In this screenshot, where should one click to do this: "{instruction}"? '
              f"Answer with the point {_HINTS[coords]}.")
    meta = {**metadata, "img_size": [int(size[0]), int(size[1])], "cluster": metadata.get("cluster", str(image))}
    return Sample(id=sid, messages=[user(ContentPart.of_media("image", str(image)), prompt)],
                  target=[float(v) for v in box], metadata=meta)


def grounding_score(sample: Sample, prediction: str, coords: str) -> dict[str, Any]:
    width, height = sample.metadata["img_size"]
    point = parse_point(prediction, coords, int(width), int(height))
    if point is None:
        return {"score": 0.0, "point": None, "wrong_format": True}
    return {"score": float(point_in_box(point[0], point[1], sample.target)), "point": list(point), "wrong_format": False}


def grounding_metrics(results: list[SampleResult], ui_key: str = "ui_type") -> dict[str, Any]:
    scored = ok(results)

    def acc(rs: list[SampleResult]) -> float:
        return ratio(sum(r.score or 0.0 for r in rs), len(rs))

    out: dict[str, Any] = {"accuracy": acc(scored)}
    for ui in ("text", "icon"):  # only where the group has such samples (the official prints 0 instead)
        part = [r for r in scored if r.metadata.get(ui_key) == ui]
        if part:
            out[f"{ui}_acc"] = acc(part)
    out["n_wrong_format"] = sum(1 for r in scored if r.scores.get("wrong_format"))
    return out
