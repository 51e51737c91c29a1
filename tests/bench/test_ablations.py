"""The ablation study (bench/ablations.py): real harness runs, tokens read back per sample, markdown tables."""

from __future__ import annotations

import json

import pytest

from evalsuite.model import weights
from evalsuite.model.omni import build_omni

from bench_scripts import load_bench_script


def _load():
    return load_bench_script("ablations")


ablations = _load()


@pytest.mark.slow
def test_ablations_run_the_harness_and_count_tokens(tmp_path, monkeypatch):
    ckpt = weights.save(build_omni("tiny"), tmp_path / "ckpt")
    monkeypatch.chdir(tmp_path)
    assert ablations.main(["--checkpoint", str(ckpt), "--n", "4", "--out", str(tmp_path / "abl")]) == 0
    data = json.loads((tmp_path / "abl" / "ablations.json").read_text())
    evs = {r["evs_q"]: r for r in data["evs"]}
    assert set(evs) == {0.0, 0.5, 0.75}
    assert evs[0.0]["video_tokens_after"] == evs[0.0]["video_tokens_before"] > 0
    # EVS keeps the first tubelet and drops about q of the rest
    assert evs[0.5]["video_tokens_after"] < evs[0.0]["video_tokens_after"]
    assert evs[0.75]["video_tokens_after"] < evs[0.5]["video_tokens_after"]
    assert all(r["video_tokens_before"] == evs[0.0]["video_tokens_before"] for r in evs.values())
    modes = {r["mode"]: r for r in data["resolution"]}
    assert set(modes) == {"dynamic", "tiling"} and modes["dynamic"]["n"] == 4
    assert sum(a["n"] for a in modes["dynamic"]["aspects"].values()) == 4
    assert modes["dynamic"]["image_tokens"] != modes["tiling"]["image_tokens"]


def test_markdown_tables():
    evs = [{"evs_q": 0.0, "n": 2, "accuracy": 0.5, "ci95": [0.0, 1.0], "video_tokens_before": 100.0,
            "video_tokens_after": 100.0},
           {"evs_q": 0.75, "n": 2, "accuracy": 0.25, "ci95": None, "video_tokens_before": 100.0,
            "video_tokens_after": 30.0}]
    res = [{"mode": "dynamic", "n": 2, "accuracy": 0.5, "ci95": [0.1, 0.9], "image_tokens": 80.0,
            "aspects": {"tall": {"n": 2, "accuracy": 0.5, "image_tokens": 80.0}}}]
    text = ablations.markdown(evs, res)
    assert "| 0.75 | 2 | 100.0 | 30.0 | 30% | 0.250 | – |" in text
    assert "| dynamic | 2 | 0.500 | [0.100, 0.900] | 80.0 | 0.500 / 80 (n=2) |" in text


def test_bench_records_the_options_that_made_the_table(tmp_path, monkeypatch):
    """--bench writes a command that reproduces its table: --n (default 200) and the model in it."""
    import bench.report

    written = {}
    monkeypatch.setattr(bench.report, "update", lambda md, section, body: written.update(section=section, body=body))
    monkeypatch.setattr(ablations, "evs_ablation", lambda ckpt, out, n, model: [
        {"evs_q": 0.0, "n": n, "accuracy": 0.5, "ci95": None, "video_tokens_before": 10.0, "video_tokens_after": 10.0}])
    monkeypatch.setattr(ablations, "resolution_ablation", lambda ckpt, out, n, model: [
        {"mode": "dynamic", "n": n, "accuracy": 0.5, "ci95": None, "image_tokens": 8.0, "aspects": {}}])
    assert ablations.main(["--n", "60", "--model", "fp8", "--out", str(tmp_path), "--bench"]) == 0
    assert written["section"] == "Ablations: EVS and dynamic resolution"
    assert ("; command: `python bench/ablations.py --checkpoint evalsuite/model/checkpoints/tiny --n 60 --model fp8 "
            "--bench`.\n\n**EVS on `videoqa`**") in written["body"]
    assert "`fp8`, 60 eval samples per run" in written["body"]
