"""ScreenSpot, ScreenSpot-v2 and ScreenSpot-Pro adapters: layouts, box formats, official click rule."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from evalsuite.task import DataLayoutError, TaskArgError
from evalsuite.tasks.official.screenspot import ScreenSpot, ScreenSpotV2
from evalsuite.tasks.official.screenspot_pro import ScreenSpotPro


def _rec(name: str, bbox, kind: str, source: str = "ios") -> dict:
    return {"img_filename": name, "bbox": bbox, "instruction": f"open {name}", "data_type": kind, "data_source": source}


def make_screenspot(root: Path, media) -> Path:
    for n in ("m.png", "w.png"):
        media.png(root / "screenspot_imgs" / n, 100, 50)
    mobile = [
        _rec("m.png", [10, 10, 20, 10], "text"),  # [10, 10, 30, 20]
        _rec("m.png", [50, 20, 10, 10], "icon"),  # [50, 20, 60, 30]
        _rec("m.png", [0, 0, 10, 10], "icon"),
        _rec("m.png", [0, 0, 10, 10], "icon"),
    ]
    web = [
        _rec("w.png", [40, 0, 60, 50], "text", "shop"),
        {"img_filename": "w.png", "instruction": "no box", "data_type": "icon"},
        _rec("gone.png", [0, 0, 1, 1], "icon", "shop"),
    ]
    (root / "screenspot_mobile.json").write_text(json.dumps(mobile))
    (root / "screenspot_web.json").write_text(json.dumps(web))
    return root


SS_PREDS = {
    "screenspot_mobile:0": "(200, 300)",  # -> (20, 15) px: inside
    "screenspot_mobile:1": "click (500, 400)",  # -> (50, 20): on the border, inclusive
    "screenspot_mobile:2": "(999, 999)",  # outside
    "screenspot_mobile:3": "I don't know",  # wrong format
    "screenspot_web:0": "(700, 500)",  # -> (70, 25): inside
}


def test_screenspot_official_numbers(tmp_path: Path, media) -> None:
    task = ScreenSpot(data_dir=str(make_screenspot(tmp_path / "ss", media)))
    samples = list(task.samples())
    assert [s.id for s in samples][:5] == list(SS_PREDS)
    errors = {s.id: s.error for s in samples if s.error}
    assert set(errors) == {"screenspot_web:1", "screenspot_web:2"}
    assert "bbox" in errors["screenspot_web:1"] and "image file not found" in errors["screenspot_web:2"]
    assert samples[0].target == [10.0, 10.0, 30.0, 20.0] and samples[0].metadata["img_size"] == [100, 50]
    results = media.score_all(task, SS_PREDS)
    assert [r.score for r in results[:5]] == [1.0, 1.0, 0.0, 0.0, 1.0]
    m = task.aggregate(results)
    # right / total, the two samples that failed counted as wrong (SeeClick: corr_action / num_action)
    assert m["accuracy"] == pytest.approx(3 / 7)
    assert m["text_acc"] == pytest.approx(1.0) and m["icon_acc"] == pytest.approx(1 / 5)
    # SeeClick paper average: mean of the platform x type accuracies present (web/icon: both its
    # samples failed, the record without a box among them: it keeps its platform and type)
    assert m["accuracy_macro"] == pytest.approx((1.0 + 1 / 3 + 1.0 + 0.0) / 4)
    assert m["n_wrong_format"] == 1


def test_screenspot_v2_normalized_reupload_and_pixel_coords(tmp_path: Path, media) -> None:
    root = tmp_path / "ss2"
    media.png(root / "screenspotv2_image" / "d.png", 100, 50)
    recs = [_rec("d.png", [0.1, 0.2, 0.3, 0.4], "text"), _rec("d.png", [0.1, 0.2, 0.3, 0.4], "icon")]
    (root / "screenspot_desktop_v2.json").write_text(json.dumps(recs))
    task = ScreenSpotV2(data_dir=str(root))
    samples = list(task.samples())
    assert samples[0].target == pytest.approx([10.0, 10.0, 30.0, 20.0])  # normalized x1y1x2y2, not xywh
    preds = {"screenspot_desktop_v2:0": "(200, 300)", "screenspot_desktop_v2:1": "(350, 300)"}
    assert [r.score for r in media.score_all(task, preds)] == [1.0, 0.0]  # (35, 15) is outside x1y1x2y2
    px = ScreenSpotV2(data_dir=str(root), coords="pixels")
    assert [r.score for r in media.score_all(px, {"screenspot_desktop_v2:0": "(20, 15)",
                                                  "screenspot_desktop_v2:1": "(0.2, 0.3)"})] == [1.0, 0.0]


def test_screenspot_layout_and_args(tmp_path: Path) -> None:
    (tmp_path / "x").mkdir()
    with pytest.raises(DataLayoutError, match="screenspot_mobile.json"):
        list(ScreenSpot(data_dir=str(tmp_path / "x")).samples())
    with pytest.raises(DataLayoutError, match="screenspot_mobile_v2.json"):
        list(ScreenSpotV2(data_dir=str(tmp_path / "x")).samples())
    with pytest.raises(TaskArgError, match="norm1000"):
        ScreenSpot(coords="percent")


def make_pro(root: Path, media) -> Path:
    media.png(root / "images" / "vscode_mac" / "a.png", 200, 100)
    media.png(root / "images" / "ps_win" / "b.png", 200, 100)
    common = {"application": "vscode", "platform": "macos", "group": "Dev", "img_size": [2000, 1000]}
    vscode = [
        {**common, "id": "vscode_macos_0", "img_filename": "vscode_mac/a.png", "bbox": [100, 100, 300, 200],
         "instruction": "open the file", "ui_type": "text"},
        {**common, "id": "vscode_macos_1", "img_filename": "vscode_mac/a.png", "bbox": [0, 0, 100, 100],
         "instruction": "close", "ui_type": "icon"},
    ]
    common = {"application": "photoshop", "platform": "windows", "group": "Creative", "img_size": [2000, 1000]}
    ps = [
        {**common, "id": "dup", "img_filename": "ps_win/b.png", "bbox": [1000, 500, 2000, 1000],
         "instruction": "brush", "ui_type": "icon"},
        {**common, "id": "dup", "img_filename": "ps_win/b.png", "bbox": [0, 0, 2000, 1000],
         "instruction": "menu", "ui_type": "text"},
        {**common, "id": "ps_2", "img_filename": "ps_win/gone.png", "bbox": [0, 0, 1, 1],
         "instruction": "x", "ui_type": "text"},
        {**common, "id": "ps_3", "img_filename": "ps_win/b.png", "bbox": [0, 0, 1], "instruction": "x",
         "ui_type": "text"},
    ]
    (root / "annotations").mkdir(parents=True)
    (root / "annotations" / "vscode_macos.json").write_text(json.dumps(vscode))
    (root / "annotations" / "photoshop_windows.json").write_text(json.dumps(ps))
    return root


PRO_PREDS = {
    "photoshop_windows:0": "(1000, 1000)",  # bottom-right corner of its box: right
    "photoshop_windows:1": "nothing to click",  # wrong format
    "vscode_macos_0": "(100, 150)",  # -> (200, 150) in the record's img_size: right
    "vscode_macos_1": "(100, 100)",  # -> (200, 100): outside [0, 0, 100, 100]
}


def test_screenspot_pro_official_numbers(tmp_path: Path, media) -> None:
    task = ScreenSpotPro(data_dir=str(make_pro(tmp_path / "pro", media)))
    samples = list(task.samples())
    assert [s.id for s in samples] == ["photoshop_windows:0", "photoshop_windows:1", "ps_2", "ps_3",
                                       "vscode_macos_0", "vscode_macos_1"]  # repeated ids fall back to stem:index
    assert samples[2].error and "image file not found" in samples[2].error
    assert samples[3].error and "bbox has 3 numbers" in samples[3].error
    results = media.score_all(task, PRO_PREDS)
    assert [r.score for r in results] == [1.0, 0.0, None, None, 1.0, 0.0]
    m = task.aggregate(results)
    # action_acc = correct_num / num_total: the two samples that failed are wrong, not left out
    assert m == {"accuracy": pytest.approx(2 / 6), "text_acc": 0.25, "icon_acc": 0.5, "n_wrong_format": 1}
    dev = [r for r in results if r.metadata.get("group") == "Dev"]
    assert task.aggregate(dev)["accuracy"] == 0.5


def test_release_numbers_written_as_strings_are_refused_not_read_by_character(tmp_path: Path, media) -> None:
    # iterating "1920x1080" gave img_size [1, 9] and "1234" a bbox [1, 2, 3, 4]: wrong boxes, wrong scores
    root = make_pro(tmp_path / "pro", media)
    common = {"application": "photoshop", "platform": "windows", "group": "Creative", "img_filename": "ps_win/b.png",
              "instruction": "x", "ui_type": "text"}
    bad = [{**common, "id": "s", "bbox": [0, 0, 10, 10], "img_size": "1920x1080"},
           {**common, "id": "b", "bbox": "1234", "img_size": [2000, 1000]},
           {**common, "id": "n", "bbox": [0, 0, 10, float("nan")]},
           {**common, "id": "z", "bbox": [0, 0, 10, 10], "img_size": [0, 1000]},
           {**common, "id": "ok", "bbox": ["0", "0", "10", "10"], "img_size": [2000, 1000]}]
    (root / "annotations" / "photoshop_windows.json").write_text(json.dumps(bad))
    (root / "annotations" / "vscode_macos.json").unlink()
    errors = {s.id: s.error for s in ScreenSpotPro(data_dir=str(root)).samples()}
    assert errors == {
        "s": "malformed ScreenSpot-Pro record: img_size must be a list of 2 numbers, got '1920x1080'",
        "b": "malformed ScreenSpot-Pro record (expected img_filename, instruction and bbox [x1, y1, x2, y2]): "
             "ValueError bbox must be a list of 4 numbers, got '1234'",
        "n": "malformed ScreenSpot-Pro record (expected img_filename, instruction and bbox [x1, y1, x2, y2]): "
             "ValueError bbox must be a list of 4 numbers, got [0, 0, 10, nan]",
        "z": "malformed ScreenSpot-Pro record: img_size must be [width, height] > 0, got [0, 1000]",
        "ok": None}
    ss = make_screenspot(tmp_path / "ss", media)
    (ss / "screenspot_web.json").write_text(json.dumps([_rec("w.png", "1234", "text"), _rec("w.png", [1, 2, 3, 4], "icon")]))
    errors = [s.error for s in ScreenSpot(data_dir=str(ss)).samples() if s.metadata.get("platform") == "web"]
    assert errors == ["malformed ScreenSpot record (expected img_filename, instruction, data_type and bbox [x, y, w, h]): "
                      "ValueError bbox must be a list of 4 numbers, got '1234'", None]


def test_screenspot_pro_layout(tmp_path: Path) -> None:
    (tmp_path / "p" / "images").mkdir(parents=True)
    with pytest.raises(DataLayoutError, match="annotations"):
        list(ScreenSpotPro(data_dir=str(tmp_path / "p")).samples())


def test_end_to_end_through_runner(tmp_path: Path, media, run_replay) -> None:
    entry = run_replay("screenspot", make_screenspot(tmp_path / "ss", media), SS_PREDS)
    assert entry["metrics"]["accuracy"] == pytest.approx(3 / 7)  # the 2 failed samples count as wrong
    assert entry["breakdown"]["platform_ui"]["mobile/icon"]["accuracy"] == pytest.approx(1 / 3)
    assert entry["n_errors"] == 2 and entry["args"]["coords"] == "norm1000"
    pro = run_replay("screenspot_pro", make_pro(tmp_path / "pro", media), PRO_PREDS)
    assert pro["metrics"]["accuracy"] == pytest.approx(2 / 6) and pro["breakdown"]["group"]["Creative"]["accuracy"] == 0.25


# ---- Hugging Face snapshots (rootsautomation/ScreenSpot, HongxinLi/ScreenSpot_v2, TIGER-Lab/ScreenSpot-Pro)
def _scores(groups: dict) -> dict:
    """A breakdown's metrics without its sample counts (errored rows may land in other groups)."""
    return {g: {k: v for k, v in m.items() if k not in ("n", "n_errors")} for g, m in groups.items()
            if m.get("n", 0) > m.get("n_errors", 0)}


def _features(**extra):
    import datasets

    cols = {"file_name": datasets.Value("string"), "bbox": datasets.Sequence(datasets.Value("float64")),
            "instruction": datasets.Value("string"), "data_type": datasets.Value("string"),
            "data_source": datasets.Value("string"),
            "image": {"bytes": datasets.Value("binary"), "path": datasets.Value("string")}}
    cols.update(extra)
    return datasets.Features(cols)


def make_screenspot_snapshot(root: Path, release: Path, media) -> Path:
    """rootsautomation/ScreenSpot's schema from the release records: boxes turned into x1, y1, x2, y2
    as fractions of the 100 x 50 screenshots, rows in release order (mobile, then web)."""
    rows: dict[str, list] = {k: [] for k in ("file_name", "bbox", "instruction", "data_type", "data_source", "image")}
    for name in ("screenspot_mobile.json", "screenspot_web.json"):
        for rec in json.loads((release / name).read_text()):
            x, y, w, h = rec["bbox"] if "bbox" in rec else (None,) * 4
            image = release / "screenspot_imgs" / rec["img_filename"]
            rows["file_name"].append(rec["img_filename"])
            rows["bbox"].append(None if x is None else [x / 100, y / 50, (x + w) / 100, (y + h) / 50])
            rows["instruction"].append(rec["instruction"])
            rows["data_type"].append(rec["data_type"])
            rows["data_source"].append(rec.get("data_source", "shop"))
            rows["image"].append(media.cell(image) if image.is_file() else {"bytes": None, "path": None})
    return media.snapshot(root, "test", rows, _features(), shards=3, media={"image": "image"})


SNAP_PREDS = {f"test:{i}": p for i, p in enumerate(SS_PREDS.values())}  # rows 0-3 mobile, 4 the first web row


def test_screenspot_snapshot_scores_equal_release(tmp_path: Path, media, run_replay) -> None:
    release = make_screenspot(tmp_path / "ss", media)
    snap = make_screenspot_snapshot(tmp_path / "snap", release, media)
    task = ScreenSpot(data_dir=str(snap))
    samples = list(task.samples())
    assert [s.id for s in samples] == [f"test:{i}" for i in range(7)]
    errors = {s.id: s.error for s in samples if s.error}
    assert set(errors) == {"test:5", "test:6"}
    assert "bbox must be a list" in errors["test:5"] and "image cell is empty" in errors["test:6"]
    assert samples[0].target == pytest.approx([10.0, 10.0, 30.0, 20.0]) and samples[0].metadata["img_size"] == [100, 50]
    assert samples[0].metadata["platform"] == "mobile" and samples[4].metadata["platform"] == "web"
    assert samples[0].metadata["cluster"] == "m.png"
    rel = run_replay("screenspot", release, SS_PREDS)
    snp = run_replay("screenspot", snap, SNAP_PREDS)
    assert snp["metrics"] == rel["metrics"]
    assert snp["metrics"]["accuracy"] == pytest.approx(3 / 7) and snp["n_errors"] == rel["n_errors"] == 2
    for key in ("platform_ui", "ui_type"):
        assert _scores(snp["breakdown"][key]) == _scores(rel["breakdown"][key])


def test_screenspot_v2_snapshot_from_hub_cache_in_pixels(tmp_path: Path, media, run_replay) -> None:
    release = tmp_path / "ss2"
    media.png(release / "screenspotv2_image" / "d.png", 100, 50)
    recs = [_rec("d.png", [0.1, 0.2, 0.3, 0.4], "text"), _rec("d.png", [0.1, 0.2, 0.3, 0.4], "icon")]
    (release / "screenspot_desktop_v2.json").write_text(json.dumps(recs))
    cell = media.cell(release / "screenspotv2_image" / "d.png")
    rows = {"file_name": ["d.png"] * 2, "bbox": [[10.0, 10.0, 30.0, 20.0]] * 2, "instruction": ["open d.png"] * 2,
            "data_type": ["text", "icon"], "data_source": ["windows"] * 2, "image": [cell, cell]}
    media.snapshot(media.hub(tmp_path, "HongxinLi/ScreenSpot_v2"), "test", rows, _features(), media={"image": "image"})
    preds = ["(200, 300)", "(350, 300)"]
    rel = run_replay("screenspot_v2", release, dict(zip(["screenspot_desktop_v2:0", "screenspot_desktop_v2:1"], preds)))
    snp = run_replay("screenspot_v2", None, dict(zip(["test:0", "test:1"], preds)), hf="HongxinLi/ScreenSpot_v2")
    assert snp["metrics"] == rel["metrics"] and snp["metrics"]["accuracy"] == 0.5
    assert snp["breakdown"]["platform_ui"] == rel["breakdown"]["platform_ui"]


def make_pro_snapshot(root: Path, release: Path, media, *, ids: list[str] | None = None) -> Path:
    """TIGER-Lab/ScreenSpot-Pro as lmms-eval reads it, from the release records in file-name order;
    ``bbox`` and ``img_size`` as JSON text (lmms-eval accepts a list or its text)."""
    rows: dict[str, list] = {k: [] for k in ("id", "img_filename", "bbox", "img_size", "instruction", "ui_type",
                                             "group", "application", "platform", "image")}
    for path in sorted((release / "annotations").glob("*.json")):
        for rec in json.loads(path.read_text()):
            image = release / "images" / rec["img_filename"]
            rows["image"].append(media.cell(image) if image.is_file() else {"bytes": None, "path": None})
            for k in ("bbox", "img_size"):
                rows[k].append(json.dumps(rec[k]))
            for k in ("id", "img_filename", "instruction", "ui_type", "group", "application", "platform"):
                rows[k].append(rec[k])
    if ids:
        rows["id"] = ids
    return media.snapshot(root, "test", rows, media={"image": "image"})


def test_screenspot_pro_snapshot_scores_equal_release(tmp_path: Path, media, run_replay) -> None:
    release = make_pro(tmp_path / "pro", media)
    snap = make_pro_snapshot(tmp_path / "snap", release, media)
    samples = list(ScreenSpotPro(data_dir=str(snap)).samples())
    assert [s.id for s in samples] == [f"test:{i}" for i in range(6)]  # "dup" repeats: row ids for all
    errors = {s.id: s.error for s in samples if s.error}
    assert "image cell is empty" in errors["test:2"] and "bbox has 3 numbers" in errors["test:3"]
    assert samples[4].metadata["img_size"] == [2000, 1000] and samples[4].metadata["group"] == "Dev"
    rel_ids = ["photoshop_windows:0", "photoshop_windows:1", "ps_2", "ps_3", "vscode_macos_0", "vscode_macos_1"]
    snp_preds = {f"test:{rel_ids.index(k)}": v for k, v in PRO_PREDS.items()}
    rel = run_replay("screenspot_pro", release, PRO_PREDS)
    snp = run_replay("screenspot_pro", snap, snp_preds)
    assert snp["metrics"] == rel["metrics"] == {**snp["metrics"], "accuracy": pytest.approx(2 / 6)}
    # Same scores per group; a row or record that fails keeps its group.
    assert _scores(snp["breakdown"]["group"]) == _scores(rel["breakdown"]["group"])
    assert snp["breakdown"]["group"]["Creative"]["n_errors"] == 2
    uniq = make_pro_snapshot(tmp_path / "uniq", release, media, ids=[f"pro_{i}" for i in range(6)])
    assert [s.id for s in ScreenSpotPro(data_dir=str(uniq)).samples()] == [f"pro_{i}" for i in range(6)]


def test_grounding_snapshot_schema_error(tmp_path: Path, media) -> None:
    snap = media.snapshot(tmp_path / "s", "test", {"instruction": ["x"], "data_type": ["text"]})
    with pytest.raises(DataLayoutError, match=r"lacks column\(s\) image, bbox, data_source \(expected the rootsautomation/ScreenSpot schema"):
        list(ScreenSpot(data_dir=str(snap)).samples())
    with pytest.raises(DataLayoutError, match=r"lacks column\(s\) image, bbox \(expected the TIGER-Lab/ScreenSpot-Pro"):
        list(ScreenSpotPro(data_dir=str(snap)).samples())
    with pytest.raises(DataLayoutError, match="huggingface-cli download HongxinLi/ScreenSpot_v2 --repo-type dataset"):
        list(ScreenSpotV2(hf="HongxinLi/ScreenSpot_v2").samples())


@given(st.lists(st.floats(min_value=-5, max_value=5000, allow_nan=False), min_size=4, max_size=4))
def test_parse_box_reads_lists_and_their_json_text_alike(box: list[float]) -> None:
    from evalsuite.tasks.official._grounding import all_normalized, parse_box

    assert parse_box(box) == parse_box(json.dumps(box)) == box
    assert all_normalized([box, json.dumps(box)]) == all(0 <= v <= 1 for v in box)


def test_damaged_shard_is_one_layout_error(tmp_path: Path) -> None:
    (tmp_path / "s" / "data").mkdir(parents=True)
    (tmp_path / "s" / "data" / "test-00000-of-00001.parquet").write_bytes(b"PAR1 not a parquet file\nreally")
    with pytest.raises(DataLayoutError, match=r"cannot read parquet .*test-00000-of-00001\.parquet") as e:
        list(ScreenSpot(data_dir=str(tmp_path / "s")).samples())
    assert "\n" not in str(e.value)


def test_an_exif_turned_screenshot_turns_its_box_with_it(tmp_path: Path, media) -> None:
    """The box is drawn on the stored pixels; the model is shown the image turned by its EXIF
    orientation (as datasets decodes it), so box and size turn with it: a click on the element in the
    picture shown is right (the box stayed in stored pixels, outside the turned image)."""
    import numpy as np
    from PIL import Image

    from evalsuite import media as media_lib

    root = tmp_path / "ss"
    (root / "screenspot_imgs").mkdir(parents=True)
    pixels = np.zeros((100, 200, 3), np.uint8)
    pixels[10:30, 150:190] = (255, 0, 0)  # the element: [x, y, w, h] = [150, 10, 40, 20] as stored
    exif = Image.Exif()
    exif[0x0112] = 6  # shown turned 90 degrees clockwise: 100 x 200
    Image.fromarray(pixels).save(root / "screenspot_imgs" / "r.png", exif=exif.tobytes())
    (root / "screenspot_mobile.json").write_text(json.dumps([_rec("r.png", [150, 10, 40, 20], "icon")]))
    task = ScreenSpot(data_dir=str(root), coords="pixels")
    s = next(iter(task.samples()))
    shown = np.asarray(media_lib.load_image(str(root / "screenspot_imgs" / "r.png")))
    ys, xs = np.nonzero(shown[..., 0] > 128)
    assert s.metadata["img_size"] == [100, 200] and shown.shape[:2] == (200, 100)
    assert s.target == [xs.min(), ys.min(), xs.max() + 1, ys.max() + 1] == [70, 150, 90, 190]
    centre = f"({(xs.min() + xs.max()) / 2}, {(ys.min() + ys.max()) / 2})"
    assert [r.score for r in media.score_all(task, {s.id: centre})] == [1.0]
