"""ScreenSpot-Pro from its original local folder.

Layout: ``DIR/annotations/<application>_<platform>.json`` and ``DIR/images/<img_filename>``. Records
have ``img_filename``, ``instruction``, ``bbox`` as ``[x1, y1, x2, y2]`` in pixels, ``img_size``
``[width, height]``, ``application``, ``platform``, ``group`` and ``ui_type``, and usually an
``id`` (used as the sample id when it is unique, else ``<json stem>:<index>``).

Rule reproduced: likaixin2000/ScreenSpot-Pro-GUI-Grounding ``eval_screenspot_pro.py``, positive
ground truth, English instructions: a click is right inside the box, borders included; no point is
"wrong_format" and counts as wrong; ``action_acc`` (here ``accuracy``) is right / total, with
``text_acc`` and ``icon_acc``; the leaderboard splits by group and application, the SeeClick-style
table by platform (all four are breakdown keys here). ``img_size`` from the record is trusted as
the script does; a record without it falls back to the image header.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any, Iterator

from evalsuite.registry import TASKS
from evalsuite.task import DataLayoutError, Task
from evalsuite.types import Sample, SampleResult
from evalsuite.tasks.official._common import bad_sample, data_root, read_json
from evalsuite.tasks.official._grounding import (
    GROUNDING_ARGS, check_coords, grounding_metrics, grounding_sample, grounding_score, image_size,
)

EXPECTED = "annotations/*.json and images/"


@TASKS.register("screenspot_pro")
class ScreenSpotPro(Task):
    """ScreenSpot-Pro (local folder): grounding in high-resolution professional software"""

    name = "screenspot_pro"
    version = "1"
    default_args = dict(GROUNDING_ARGS)
    media_keys = ("min_patches", "max_patches")
    breakdown_keys = ("group", "application", "platform", "ui_type")
    max_tokens = 32

    def __init__(self, **args: Any) -> None:
        super().__init__(**args)
        check_coords(self.name, self.args["coords"])

    def samples(self) -> Iterator[Sample]:
        root = data_root(self.name, self.args["data_dir"], EXPECTED)
        files = sorted((root / "annotations").glob("*.json"))
        if not files or not (root / "images").is_dir():
            raise DataLayoutError(f"{self.name}: {root} is not a ScreenSpot-Pro folder (expected {EXPECTED})")
        loaded = []
        for path in files:
            records = read_json(path, self.name, "a JSON list of ScreenSpot-Pro records")
            if not isinstance(records, list):
                raise DataLayoutError(f"{self.name}: {path} must hold a JSON list of records")
            loaded.append((path, records))
        counts = Counter(str(r["id"]) for _, rs in loaded for r in rs if isinstance(r, dict) and r.get("id") is not None)
        for path, records in loaded:
            for i, rec in enumerate(records):
                rid = rec.get("id") if isinstance(rec, dict) else None
                sid = str(rid) if rid is not None and counts[str(rid)] == 1 else f"{path.stem}:{i}"
                yield self._sample(sid, rec, root / "images")

    def _sample(self, sid: str, rec: Any, images: Path) -> Sample:
        try:
            name, instruction = str(rec["img_filename"]), str(rec["instruction"])
            box = [float(v) for v in rec["bbox"]]
            if len(box) != 4:
                raise ValueError(f"bbox has {len(box)} numbers")
            meta = {k: str(rec.get(k, "")) for k in ("group", "application", "platform", "ui_type")}
        except (KeyError, TypeError, ValueError) as e:
            return bad_sample(sid, "malformed ScreenSpot-Pro record (expected img_filename, instruction and bbox "
                                   f"[x1, y1, x2, y2]): {type(e).__name__} {e}")
        meta.update(category=meta["ui_type"], cluster=name)
        image = images / name
        if not image.is_file():
            return bad_sample(sid, f"image file not found: {image}", **meta)
        size = rec.get("img_size")
        try:
            width, height = (int(size[0]), int(size[1])) if size else image_size(image)
        except Exception as e:
            return bad_sample(sid, f"cannot read the image size of {image} (no img_size in the record): {e}", **meta)
        return grounding_sample(sid, image, instruction, box, (width, height), self.args["coords"], meta)

    def score(self, sample: Sample, prediction: str) -> dict[str, Any]:
        return grounding_score(sample, prediction, self.args["coords"])

    def aggregate(self, results: list[SampleResult]) -> dict[str, Any]:
        return grounding_metrics(results)
