"""ScreenSpot and ScreenSpot-v2 from their original local folders or their Hugging Face snapshots
(one module, two tasks).

Layout: ``DIR/screenspot_{mobile,desktop,web}.json`` (v2: ``screenspot_{mobile,desktop,web}_v2.json``)
and the screenshots in ``DIR/screenspot_imgs/`` (v2: ``screenspotv2_image/``; ``images/``, ``imgs/``
or ``DIR`` itself also work). Records have ``img_filename``, ``instruction``, ``bbox`` as
``[x, y, w, h]`` in pixels, ``data_type`` (text/icon) and ``data_source``. Re-uploads whose boxes are
normalized (every value of a file within [0, 1]) are read as normalized ``[x1, y1, x2, y2]``.

Rule reproduced: SeeClick ``pretrain/screenspot_test.py`` (njucckevin/SeeClick): the box becomes
``[x, y, x + w, y + h]`` and a click is right inside it, borders included; an unreadable answer
counts as wrong, as does a sample that failed (see :mod:`evalsuite.tasks.official._grounding`);
answers are read by SeeClick's ``pred_2_point`` (``parser=seeclick``, the default; ``lenient`` reads
verbose answers too). The script reports, per platform file, the action accuracy and the text/icon
accuracies; the SeeClick paper's "average" is the mean of the six platform x type accuracies,
reported here as ``accuracy_macro`` (``accuracy`` is right / total over all platforms; later papers
quote either).

Sample ids are ``<json stem>:<index>`` (the files carry no ids).

Snapshots (what lmms-eval loads; ``data_dir`` = the download folder, or ``hf=<repo>``): ScreenSpot
is ``rootsautomation/ScreenSpot``, split ``test``, columns ``image`` (bytes), ``instruction``,
``bbox`` (``[x1, y1, x2, y2]``, converted from the release's ``[x, y, w, h]``; fractions of the
image size when every box of the split is in [0, 1], else pixels), ``data_type``, ``data_source``
and ``file_name`` (optional, the cluster). ScreenSpot-v2 is ``HongxinLi/ScreenSpot_v2``, split
``test``, read with the same columns: lmms-eval's task reads ``image``, ``instruction``, ``bbox``,
``data_type`` and ``data_source`` from it, but its box convention could not be confirmed from a
published card; it is read as above. A snapshot has no platform column: the platform is derived
from ``data_source`` as lmms-eval does (ios/android: mobile, macos/windows: desktop, else web).
Sample ids are ``test:<row>``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar, Iterator

from evalsuite.registry import TASKS
from evalsuite.task import DataLayoutError, Task
from evalsuite.types import Sample, SampleResult
from evalsuite.tasks.official import _hf
from evalsuite.tasks.official._common import bad_sample, read_json
from evalsuite.tasks.official._grounding import (
    GROUNDING_ARGS, check_coords, grounding_accuracy, grounding_metrics, grounding_sample, grounding_score, image_size, number_list,
    parse_box, pixel_box, snapshot_boxes_normalized,
)

PLATFORMS = ("mobile", "desktop", "web")
HF_SPLIT = "test"
HF_COLUMNS = ("image", "instruction", "bbox", "data_type", "data_source")


@TASKS.register("screenspot")
class ScreenSpot(Task):
    """ScreenSpot (release folder or HF snapshot): click inside the target element's box"""

    name = "screenspot"
    version = "2"
    default_args = {**GROUNDING_ARGS, "hf": ""}
    media_keys = ("min_patches", "max_patches")
    breakdown_keys = ("platform", "ui_type", "platform_ui", "source")
    errors_count_as_wrong = True
    max_tokens = 32
    suffix: ClassVar[str] = ""
    hf_repo: ClassVar[str] = "rootsautomation/ScreenSpot"
    image_dirs: ClassVar[tuple[str, ...]] = ("screenspot_imgs", "images", "imgs", ".")

    def __init__(self, **args: Any) -> None:
        super().__init__(**args)
        check_coords(self.name, self.args["coords"], self.args["parser"])

    def expected(self) -> str:
        files = ", ".join(f"screenspot_{p}{self.suffix}.json" for p in PLATFORMS)
        return f"{files} and the screenshots in {self.image_dirs[0]}/"

    def samples(self) -> Iterator[Sample]:
        root = _hf.locate(self.name, self.args, self.expected(), self.hf_repo)
        files = [root / f"screenspot_{p}{self.suffix}.json" for p in PLATFORMS]
        if not any(f.is_file() for f in files):
            shards = _hf.split_shards(root, HF_SPLIT)
            if not shards:
                raise _hf.neither(self.name, root, self.expected(), self.hf_repo, HF_SPLIT)
            yield from self._snapshot_samples(root, shards)
            return
        dirs = [root / d for d in self.image_dirs if (root / d).is_dir()]
        for platform, path in zip(PLATFORMS, files):
            if not path.is_file():
                continue
            records = read_json(path, self.name, "a JSON list of ScreenSpot records")
            if not isinstance(records, list):
                raise DataLayoutError(f"{self.name}: {path} must hold a JSON list of records")
            normalized = _all_normalized(records)
            for i, rec in enumerate(records):
                yield self._sample(f"{path.stem}:{i}", rec, platform, dirs, normalized)

    def _snapshot_samples(self, root: Path, shards: list[Path]) -> Iterator[Sample]:
        columns = _hf.check_columns(self.name, shards, HF_COLUMNS, self.hf_repo)
        normalized = snapshot_boxes_normalized(shards)
        name_column = next((c for c in ("file_name", "img_filename") if c in columns), None)
        for i, row in enumerate(_hf.read_rows(self.name, shards, HF_SPLIT)):
            sid = _hf.row_id(HF_SPLIT, i)
            source, ui = _hf.text(row["data_source"]), _hf.text(row["data_type"])
            platform = platform_of(source)
            meta = {"platform": platform, "ui_type": ui, "platform_ui": f"{platform}/{ui}", "source": source,
                    "category": f"{platform}/{ui}"}
            try:
                box = parse_box(row["bbox"])
                image = Path(_hf.media_file(self.name, row["image"], "image", root))
            except (TypeError, ValueError) as e:
                yield bad_sample(sid, f"{self.hf_repo} row {i}: {e}", **meta)
                continue
            meta["cluster"] = _hf.text(row[name_column]) if name_column and row[name_column] else image.stem[:16]
            try:
                size = image_size(image)
            except Exception as e:  # PIL raises several types for damaged files
                yield bad_sample(sid, f"image bytes of row {i} are corrupt or not an image: {image}: {e}", **meta)
                continue
            try:
                pixels = pixel_box(box, size, normalized)
            except ValueError as e:
                yield bad_sample(sid, f"{self.hf_repo} row {i}: {e}", **meta)
                continue
            yield grounding_sample(sid, image, _hf.text(row["instruction"]), pixels, size, self.args["coords"], meta)

    def _sample(self, sid: str, rec: Any, platform: str, dirs: list[Path], normalized: bool) -> Sample:
        # the groups first: a malformed record still counts, as wrong, in its platform and UI type
        meta: dict[str, Any] = {"platform": platform}
        if isinstance(rec, dict) and rec.get("data_type") is not None:
            ui = str(rec["data_type"])
            meta.update(ui_type=ui, platform_ui=f"{platform}/{ui}", source=str(rec.get("data_source", "")),
                        category=f"{platform}/{ui}")
        try:
            name, instruction, ui = str(rec["img_filename"]), str(rec["instruction"]), str(rec["data_type"])
            x, y, w, h = number_list(rec["bbox"], 4, "bbox")
        except (KeyError, TypeError, ValueError) as e:
            return bad_sample(sid, "malformed ScreenSpot record (expected img_filename, instruction, data_type and "
                                   f"bbox [x, y, w, h]): {type(e).__name__} {e}", **meta)
        meta["cluster"] = name
        image = next((d / name for d in dirs if (d / name).is_file()), None)
        if image is None:
            where = dirs[0] if dirs else Path(self.args["data_dir"] or ".") / self.image_dirs[0]
            return bad_sample(sid, f"image file not found: {where / name}", **meta)
        try:
            width, height = image_size(image)
        except Exception as e:  # PIL raises several types for damaged files
            return bad_sample(sid, f"image file is corrupt or not an image: {image}: {e}", **meta)
        if normalized:  # the four numbers are x1, y1, x2, y2 as fractions of the image size
            box = [x * width, y * height, w * width, h * height]
        else:
            box = [x, y, x + w, y + h]
        return grounding_sample(sid, image, instruction, box, (width, height), self.args["coords"], meta)

    def score(self, sample: Sample, prediction: str) -> dict[str, Any]:
        return grounding_score(sample, prediction, self.args["coords"], self.args["parser"])

    def aggregate(self, results: list[SampleResult]) -> dict[str, Any]:
        out = grounding_metrics(results)
        groups: dict[str, list[SampleResult]] = {}
        for r in results:  # a record too malformed to have a platform and type is in no group
            if "platform_ui" in r.metadata:
                groups.setdefault(str(r.metadata["platform_ui"]), []).append(r)
        accs = [grounding_accuracy(v) for v in groups.values()]
        out["accuracy_macro"] = sum(accs) / len(accs) if accs else float("nan")
        return out


@TASKS.register("screenspot_v2")
class ScreenSpotV2(ScreenSpot):
    """ScreenSpot-v2 (release folder or HF snapshot): ScreenSpot with corrected annotations"""

    name = "screenspot_v2"
    suffix = "_v2"
    hf_repo = "HongxinLi/ScreenSpot_v2"
    image_dirs = ("screenspotv2_image", "screenspot_imgs", "images", "imgs", ".")


def platform_of(data_source: str) -> str:
    """lmms-eval's platform of a snapshot row, from its ``data_source``."""
    low = data_source.lower()
    if "ios" in low or "android" in low:
        return "mobile"
    if "macos" in low or "windows" in low:
        return "desktop"
    return "web"


def _all_normalized(records: list[Any]) -> bool:
    """Whether every box of a file lies in [0, 1]: a normalized re-upload rather than pixels."""
    boxes = [r.get("bbox") for r in records if isinstance(r, dict) and isinstance(r.get("bbox"), list)]
    try:
        return bool(boxes) and all(0.0 <= float(v) <= 1.0 for b in boxes for v in b)
    except (TypeError, ValueError):
        return False
