"""ScreenSpot-Pro from its original local folder or its Hugging Face snapshot.

Layout: ``DIR/annotations/<application>_<platform>.json`` and ``DIR/images/<img_filename>``. Records
have ``img_filename``, ``instruction``, ``bbox`` as ``[x1, y1, x2, y2]`` in pixels, ``img_size``
``[width, height]``, ``application``, ``platform``, ``group`` and ``ui_type``, and usually an
``id`` (used as the sample id when it is unique, else ``<json stem>:<index>``).

Rule reproduced: likaixin2000/ScreenSpot-Pro-GUI-Grounding ``eval_screenspot_pro.py``, positive
ground truth, English instructions: a click is right inside the box, borders included; no point is
"wrong_format" and counts as wrong, as does a sample that failed; ``action_acc`` (here
``accuracy``) is right / total, with
``text_acc`` and ``icon_acc``; the leaderboard splits by group and application, the SeeClick-style
table by platform (all four are breakdown keys here). The script leaves reading the answer to
each model's wrapper, so ``parser`` defaults to ``lenient`` here (``parser=seeclick`` for SeeClick's
rule). ``img_size`` from the record is trusted as
the script does; a record without it falls back to the image header.

Snapshot: ``TIGER-Lab/ScreenSpot-Pro`` (what lmms-eval loads), split ``test``. Required columns:
``image`` (bytes), ``instruction`` and ``bbox`` (``[x1, y1, x2, y2]``, a list or its JSON text;
fractions of the image size when every box of the split is in [0, 1], else pixels). Read when
present: ``img_size`` (``[width, height]``, list or JSON text; else ``image_width`` /
``image_height``; else the image header), ``ui_type`` (else ``data_type``), ``group``,
``application``, ``platform``, ``img_filename`` and ``id``. This list follows what lmms-eval's task
reads (it tolerates each of these being absent); the repo's exact schema could not be confirmed from
a published card. Sample ids: ``id`` where the split has it and it is unique, else ``test:<row>``.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any, Iterator

from evalsuite.registry import TASKS
from evalsuite.task import DataLayoutError, Task
from evalsuite.types import Sample, SampleResult
from evalsuite.tasks.official import _hf
from evalsuite.tasks.official._common import bad_sample, is_blank, read_json
from evalsuite.tasks.official._grounding import (
    GROUNDING_ARGS, check_coords, grounding_metrics, grounding_sample, grounding_score, image_size, number_list,
    parse_box, pixel_box, snapshot_boxes_normalized,
)

EXPECTED = "annotations/*.json and images/"
HF_REPO, HF_SPLIT = "TIGER-Lab/ScreenSpot-Pro", "test"
HF_COLUMNS = ("image", "instruction", "bbox")


@TASKS.register("screenspot_pro")
class ScreenSpotPro(Task):
    """ScreenSpot-Pro (release folder or HF snapshot): grounding in high-resolution professional software"""

    name = "screenspot_pro"
    version = "2"
    default_args = {**GROUNDING_ARGS, "parser": "lenient", "hf": ""}
    media_keys = ("min_patches", "max_patches")
    breakdown_keys = ("group", "application", "platform", "ui_type")
    errors_count_as_wrong = True
    max_tokens = 32

    def __init__(self, **args: Any) -> None:
        super().__init__(**args)
        check_coords(self.name, self.args["coords"], self.args["parser"])

    def samples(self) -> Iterator[Sample]:
        root = _hf.locate(self.name, self.args, EXPECTED, HF_REPO)
        files = sorted((root / "annotations").glob("*.json"))
        if not files and not (root / "images").is_dir():
            shards = _hf.split_shards(root, HF_SPLIT)
            if not shards:
                raise _hf.neither(self.name, root, EXPECTED, HF_REPO, HF_SPLIT)
            yield from self._snapshot_samples(root, shards)
            return
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

    def _snapshot_samples(self, root: Path, shards: list[Path]) -> Iterator[Sample]:
        columns = _hf.check_columns(self.name, shards, HF_COLUMNS, HF_REPO)
        normalized = snapshot_boxes_normalized(shards)
        ids: list[str] | None = None
        if "id" in columns:
            raw = _hf.column_values(shards, "id")
            if all(not is_blank(v) for v in raw) and len({str(v) for v in raw}) == len(raw):
                ids = [str(v) for v in raw]
        ui_column = next((c for c in ("ui_type", "data_type") if c in columns), None)
        for i, row in enumerate(_hf.read_rows(self.name, shards, HF_SPLIT)):
            sid = ids[i] if ids else _hf.row_id(HF_SPLIT, i)
            meta = {k: _hf.text(row.get(k)) for k in ("group", "application", "platform")}
            meta["ui_type"] = _hf.text(row[ui_column]).lower() if ui_column else ""
            meta["category"] = meta["ui_type"]
            try:
                box = parse_box(row["bbox"])
                image = Path(_hf.media_file(self.name, row["image"], "image", root))
            except (TypeError, ValueError) as e:
                yield bad_sample(sid, f"{HF_REPO} row {i}: {e}", **meta)
                continue
            meta["cluster"] = _hf.text(row.get("img_filename")) or image.stem[:16]
            try:
                size = _snapshot_size(row) or image_size(image)
                pixels = pixel_box(box, size, normalized)
            except ValueError as e:
                yield bad_sample(sid, f"{HF_REPO} row {i}: {e}", **meta)
                continue
            except Exception as e:  # PIL raises several types for damaged files
                yield bad_sample(sid, f"image bytes of row {i} are corrupt or not an image: {image}: {e}", **meta)
                continue
            yield grounding_sample(sid, image, _hf.text(row["instruction"]), pixels, size, self.args["coords"], meta)

    def _sample(self, sid: str, rec: Any, images: Path) -> Sample:
        # the groups first: a malformed record still counts, as wrong, in its group and UI type
        meta = {k: str(rec.get(k, "")) for k in ("group", "application", "platform", "ui_type")} if isinstance(rec, dict) else {}
        meta["category"] = meta.get("ui_type", "")
        try:
            name, instruction = str(rec["img_filename"]), str(rec["instruction"])
            box = number_list(rec["bbox"], 4, "bbox")
        except (KeyError, TypeError, ValueError) as e:
            return bad_sample(sid, "malformed ScreenSpot-Pro record (expected img_filename, instruction and bbox "
                                   f"[x1, y1, x2, y2]): {type(e).__name__} {e}", **meta)
        meta["cluster"] = name
        image = images / name
        if not image.is_file():
            return bad_sample(sid, f"image file not found: {image}", **meta)
        size = rec.get("img_size")
        if size is not None:
            try:
                width, height = (int(v) for v in number_list(size, 2, "img_size"))
                if min(width, height) <= 0:
                    raise ValueError(f"img_size must be [width, height] > 0, got {size!r}")
            except ValueError as e:
                return bad_sample(sid, f"malformed ScreenSpot-Pro record: {e}", **meta)
        else:
            try:
                width, height = image_size(image)
            except Exception as e:
                return bad_sample(sid, f"cannot read the image size of {image} (no img_size in the record): {e}", **meta)
        return grounding_sample(sid, image, instruction, box, (width, height), self.args["coords"], meta)

    def score(self, sample: Sample, prediction: str) -> dict[str, Any]:
        return grounding_score(sample, prediction, self.args["coords"], self.args["parser"])

    def aggregate(self, results: list[SampleResult]) -> dict[str, Any]:
        return grounding_metrics(results)


def _snapshot_size(row: dict[str, Any]) -> tuple[int, int] | None:
    """``img_size`` (list or JSON text), else ``image_width``/``image_height``; None when neither."""
    size = row.get("img_size")
    if isinstance(size, str):
        try:
            size = json.loads(size)
        except ValueError:
            raise ValueError(f"img_size is not a JSON list: {size!r}") from None
    if size is not None and not isinstance(size, (str, bytes)):
        values = [int(v) for v in size]
        if len(values) != 2 or min(values) <= 0:
            raise ValueError(f"img_size must be [width, height], got {size!r}")
        return values[0], values[1]
    width, height = row.get("image_width"), row.get("image_height")
    if not is_blank(width) and not is_blank(height):
        return int(width), int(height)
    return None
