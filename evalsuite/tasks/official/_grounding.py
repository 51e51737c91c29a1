"""What the GUI-grounding adapters (ScreenSpot, ScreenSpot-v2, ScreenSpot-Pro) share: the prompt,
the click scorer and the metrics.

Rule (SeeClick ``pretrain/screenspot_test.py``; ScreenSpot-Pro ``eval_screenspot_pro.py``): the
model names one point; it is right when the point lies in the target box, borders included,
compared in fractions of the image as both scripts compare (the box over the image size, the
point over its scale). A response with no readable point is "wrong format" and counts as wrong, and
so does a sample that failed (its model call, its image): ``accuracy`` is right / total, as both
scripts' "action acc" (``correct_num / num_total``); ``text_acc`` / ``icon_acc`` split it by UI type.
Boxes are kept in pixels ``[x1, y1, x2, y2]``; the task's ``coords`` argument (``norm1000`` default,
``norm1``, ``pixels``) says the scale of the model's numbers, and ``parser`` how they are read
(:func:`evalsuite.tasks.scoring.click_point`): ``seeclick`` is SeeClick's ``pred_2_point`` /
``extract_bbox`` (exactly two numbers, or four for a box's centre; ``<box>(x1,y1),(x2,y2)</box>`` in
0–1000), ``lenient`` also reads verbose answers (first bracketed pair, ``x=…, y=…``, first two numbers).

Snapshots (Hugging Face parquet): a box is ``[x1, y1, x2, y2]``, a list or its JSON text; when every
box of the split lies in [0, 1] the split's boxes are fractions of the image size, else pixels (one
decision per split, as for a release file, so a pixel box near the origin is never misread).
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any, Iterable, Sequence

from evalsuite.task import TaskArgError
from evalsuite.types import ContentPart, Sample, SampleResult, user
from evalsuite.tasks.official._common import IMAGE_ARGS, bad_sample, ok, ratio
from evalsuite.tasks.scoring import COORDS, PARSERS, click_in_box, click_point

GROUNDING_ARGS: dict[str, Any] = {"data_dir": "", "coords": "norm1000", "parser": "seeclick", **IMAGE_ARGS}

_HINTS = {
    "norm1000": "as (x, y) with integers from 0 to 1000 relative to the image width and height",
    "norm1": "as (x, y) with numbers from 0 to 1 relative to the image width and height",
    "pixels": "as (x, y) in pixels of the image",
}


def check_coords(task: str, coords: str, parser: str = "seeclick") -> str:
    if coords not in COORDS:
        raise TaskArgError(f"task argument {task}.coords must be one of {', '.join(COORDS)}, got {coords!r}")
    if parser not in PARSERS:
        raise TaskArgError(f"task argument {task}.parser must be one of {', '.join(PARSERS)}, got {parser!r}")
    return coords


def image_size(path: Path) -> tuple[int, int]:
    """Width and height of the image as stored, from the header (no full decode): the pixels a
    benchmark's boxes are drawn on. `grounding_sample` turns box and size with the image's EXIF
    orientation into the pixels of the picture the model is shown."""
    from evalsuite import media

    return media.stored_size(str(path))[:2]


def number_list(value: Any, n: int, what: str) -> list[float]:
    """A release record's list of ``n`` finite numbers (numbers or numeric strings); ValueError (one
    line) for anything else. A string is refused whole: iterating "1920x1080" or "1234" would read
    its characters as numbers and score every click against the wrong box."""
    if isinstance(value, (str, bytes)) or not isinstance(value, (list, tuple)):
        raise ValueError(f"{what} must be a list of {n} numbers, got {value!r:.60}")
    if len(value) != n:
        raise ValueError(f"{what} has {len(value)} numbers, expected {n}")
    try:
        out = [float(v) for v in value if not isinstance(v, bool)]
    except (TypeError, ValueError):
        out = []
    if len(out) != n or not all(math.isfinite(v) for v in out):
        raise ValueError(f"{what} must be a list of {n} numbers, got {value!r:.60}")
    return out


def parse_box(value: Any) -> list[float]:
    """Four numbers from a list/array or its JSON text; ValueError (one line) otherwise."""
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError:
            raise ValueError(f"bbox is not a JSON list: {value!r}") from None
    if value is None or isinstance(value, (str, bytes)) or not hasattr(value, "__iter__"):
        raise ValueError(f"bbox must be a list of 4 numbers, got {value!r}")
    box = [float(v) for v in value]
    if len(box) != 4:
        raise ValueError(f"bbox has {len(box)} numbers")
    return box


def all_normalized(boxes: Iterable[Any]) -> bool:
    """Whether every readable box lies in [0, 1] (a split of fractions, not pixels)."""
    seen = False
    for value in boxes:
        try:
            box = parse_box(value)
        except (TypeError, ValueError):
            continue
        seen = True
        if not all(0.0 <= v <= 1.0 for v in box):
            return False
    return seen


def snapshot_boxes_normalized(files: Sequence[Path], column: str = "bbox") -> bool:
    """One pass over the box column alone (no media read) to decide fractions vs pixels."""
    from evalsuite.tasks.official._hf import column_values

    return all_normalized(column_values(files, column))


def pixel_box(box: Sequence[float], size: tuple[int, int], normalized: bool) -> list[float]:
    """A snapshot's ``[x1, y1, x2, y2]`` in pixels; ValueError when it is not ordered."""
    x1, y1, x2, y2 = box
    if x2 < x1 or y2 < y1:
        raise ValueError(f"bbox {list(box)} is not [x1, y1, x2, y2]")
    if normalized:
        return [x1 * size[0], y1 * size[1], x2 * size[0], y2 * size[1]]
    return [x1, y1, x2, y2]


def grounding_sample(sid: str, image: Path, instruction: str, box: Sequence[float], size: tuple[int, int],
                     coords: str, metadata: dict[str, Any]) -> Sample:
    """The sample of one target: ``box`` ``[x1, y1, x2, y2]`` in pixels of the image as stored, ``size``
    its stored (width, height). An image with an EXIF orientation is shown turned
    (`evalsuite.media.load_image`, as datasets decodes images), so box and size are turned with it: a
    click on the element in the picture the model sees lands in its box. (SeeClick's script shows the
    stored pixels; for the rare screenshot with an orientation tag the two agree on what is clicked.)"""
    from evalsuite import media

    try:
        orientation = media.stored_size(str(image))[2]
    except Exception as e:  # PIL raises several types for damaged files
        return bad_sample(sid, f"image file is corrupt or not an image: {image}: {e}", **metadata)
    if orientation != 1:
        box = media.oriented_box(box, int(size[0]), int(size[1]), orientation)
        size = (size[1], size[0]) if orientation in media.TURNED else size
    prompt = (f'In this screenshot, where should one click to do this: "{instruction}"? '
              f"Answer with the point {_HINTS[coords]}.")
    meta = {**metadata, "img_size": [int(size[0]), int(size[1])], "cluster": metadata.get("cluster", str(image))}
    return Sample(id=sid, messages=[user(ContentPart.of_media("image", str(image)), prompt)],
                  target=[float(v) for v in box], metadata=meta)


def grounding_score(sample: Sample, prediction: str, coords: str, parser: str) -> dict[str, Any]:
    """1.0 for a click inside the box; ``point`` in pixels of the image (None: wrong format)."""
    width, height = (int(v) for v in sample.metadata["img_size"])
    point = click_point(prediction, coords, parser, width, height)
    if point is None:
        return {"score": 0.0, "point": None, "wrong_format": True}
    x, y, sx, sy = point
    return {"score": float(click_in_box(point, sample.target, width, height)),
            "point": [x / sx * width, y / sy * height], "wrong_format": False}


def grounding_accuracy(results: list[SampleResult]) -> float:
    """Right / total: a sample that failed (model call, image) counts as wrong, as in the scripts."""
    return ratio(sum(r.score or 0.0 for r in ok(results)), len(results))


def grounding_metrics(results: list[SampleResult], ui_key: str = "ui_type") -> dict[str, Any]:
    out: dict[str, Any] = {"accuracy": grounding_accuracy(results)}
    for ui in ("text", "icon"):  # only where the group has such samples (the official prints 0 instead)
        part = [r for r in results if r.metadata.get(ui_key) == ui]
        if part:
            out[f"{ui}_acc"] = grounding_accuracy(part)
    out["n_wrong_format"] = sum(1 for r in ok(results) if r.scores.get("wrong_format"))
    return out
