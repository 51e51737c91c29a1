"""ScreenSpot, ScreenSpot-v2 and ScreenSpot-Pro adapters: layouts, box formats, official click rule."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

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
        _rec("gone.png", [0, 0, 1, 1], "icon"),
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
    assert m["accuracy"] == pytest.approx(3 / 5)
    assert m["text_acc"] == pytest.approx(1.0) and m["icon_acc"] == pytest.approx(1 / 3)
    # SeeClick paper average: mean of the platform x type accuracies present.
    assert m["accuracy_macro"] == pytest.approx((1.0 + 1 / 3 + 1.0) / 3)
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
    assert m == {"accuracy": 0.5, "text_acc": 0.5, "icon_acc": 0.5, "n_wrong_format": 1}
    dev = [r for r in results if r.metadata.get("group") == "Dev"]
    assert task.aggregate(dev)["accuracy"] == 0.5


def test_screenspot_pro_layout(tmp_path: Path) -> None:
    (tmp_path / "p" / "images").mkdir(parents=True)
    with pytest.raises(DataLayoutError, match="annotations"):
        list(ScreenSpotPro(data_dir=str(tmp_path / "p")).samples())


def test_end_to_end_through_runner(tmp_path: Path, media, run_replay) -> None:
    entry = run_replay("screenspot", make_screenspot(tmp_path / "ss", media), SS_PREDS)
    assert entry["metrics"]["accuracy"] == pytest.approx(0.6)
    assert entry["breakdown"]["platform_ui"]["mobile/icon"]["accuracy"] == pytest.approx(1 / 3)
    assert entry["n_errors"] == 2 and entry["args"]["coords"] == "norm1000"
    pro = run_replay("screenspot_pro", make_pro(tmp_path / "pro", media), PRO_PREDS)
    assert pro["metrics"]["accuracy"] == 0.5 and pro["breakdown"]["group"]["Creative"]["accuracy"] == 0.5
