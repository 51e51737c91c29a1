"""LongVideoBench adapter: json layout, option0-4 / candidates, official parser with expected random fallback."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from evalsuite.task import DataLayoutError
from evalsuite.tasks.official.longvideobench import LongVideoBench, lvb_extract


def _opts(*texts: str) -> dict:
    padded = list(texts) + ["N/A"] * (5 - len(texts))
    return {f"option{i}": t for i, t in enumerate(padded)}


RECORDS = [
    {"id": "q1", "video_id": "va", "video_path": "a.mp4", "question": "What falls?", **_opts("cup", "pen", "hat"),
     "correct_choice": 1, "duration_group": 15, "question_category": "S2E", "level": "L1-Perception"},
    {"id": "q2", "video_id": "va", "video_path": "a.mp4", "question": "Who?", "candidates": ["w", "x", "y", "z"],
     "correct_choice": 0, "duration_group": 15, "question_category": "E2O", "level": "L2-Relation"},
    {"id": "q3", "video_id": "vb", "video_path": "b.mp4", "question": "When?", **_opts("1", "2", "3", "4", "5"),
     "correct_choice": 4, "duration_group": 600, "question_category": "T3E", "level": "L2-Relation"},
    {"id": "q4", "video_id": "vb", "video_path": "b.mp4", "question": "Which?", **_opts("p", "q", "r", "s"),
     "correct_choice": 2, "duration_group": 600, "question_category": "S2E", "level": "L1-Perception"},
    {"id": "q5", "video_id": "vc", "video_path": "gone.mp4", "question": "?", **_opts("p", "q"), "correct_choice": 0},
    {"id": "q6", "video_id": "va", "video_path": "a.mp4", "question": "?", **_opts("p", "q")},  # no correct_choice
]
PREDICTIONS = {
    "q1": "B",  # right
    "q2": "The best answer is D",  # prefix dropped, D: wrong
    "q3": "I do not know",  # no A-E: the official parser guesses among 5 options -> expected 1/5
    "q4": "Dogs, so C",  # first of A-E anywhere is the D of "Dogs": wrong
}


def make_dataset(root: Path, media) -> Path:
    media.mp4(root / "videos" / "a.mp4")
    media.mp4(root / "videos" / "b.mp4")
    (root / "lvb_val.json").write_text(json.dumps(RECORDS))
    return root


def test_official_parser_and_expected_fallback(tmp_path: Path, media) -> None:
    task = LongVideoBench(data_dir=str(make_dataset(tmp_path / "lvb", media)))
    samples = list(task.samples())
    errors = {s.id: s.error for s in samples if s.error}
    assert set(errors) == {"q5", "q6"} and "video file not found" in errors["q5"] and "correct_choice" in errors["q6"]
    assert samples[0].choices == ["cup", "pen", "hat"] and samples[0].target == "B"
    assert "C. hat\nAnswer with the option's letter" in samples[0].messages[0].text
    results = media.score_all(task, PREDICTIONS)
    assert [r.score for r in results] == [1.0, 0.0, pytest.approx(0.2), 0.0, None, None]
    m = task.aggregate(results)
    assert m["accuracy"] == pytest.approx((1 + 0.2) / 4)
    assert m["accuracy_strict"] == pytest.approx(1 / 4)
    assert m["n_unparsed"] == 1


@given(st.text(max_size=60))
def test_lvb_extract_is_first_letter_after_prefixes(text: str) -> None:
    got = lvb_extract(text)
    assert got is None or got in "ABCDE"
    if not any(p in text for p in ("The", "Best")):
        first = next((c for c in text if c in "ABCDE"), None)
        assert got == first


def test_wrong_layout(tmp_path: Path) -> None:
    (tmp_path / "l").mkdir()
    (tmp_path / "l" / "lvb_val.json").write_text("[]")
    with pytest.raises(DataLayoutError, match="videos"):
        list(LongVideoBench(data_dir=str(tmp_path / "l")).samples())
    (tmp_path / "l" / "lvb_val.json").write_text("{not json")
    with pytest.raises(DataLayoutError, match="not valid JSON"):
        list(LongVideoBench(data_dir=str(tmp_path / "l")).samples())


def test_end_to_end_through_runner(tmp_path: Path, media, run_replay) -> None:
    entry = run_replay("longvideobench", make_dataset(tmp_path / "lvb", media), PREDICTIONS)
    assert entry["metrics"]["accuracy"] == pytest.approx(0.3)
    assert entry["breakdown"]["duration_group"]["15"]["accuracy"] == pytest.approx(0.5)
    assert entry["n_errors"] == 2


# ---- the Hugging Face snapshot (longvideobench/LongVideoBench) ----------------------------------------
def test_snapshot_from_hub_cache_with_tarred_videos(tmp_path: Path, media, run_replay) -> None:
    """The snapshot is the release layout with the videos tarred: the cache hit reads lvb_val.json,
    says how to extract the tar parts, and finds videos where lmms-eval extracts them."""
    import os

    snap = media.hub(tmp_path, "longvideobench/LongVideoBench")
    (snap / "lvb_val.json").write_text(json.dumps(RECORDS))
    (snap / "videos.tar.part.aa").write_bytes(b"\0" * 512)
    with pytest.raises(DataLayoutError, match=r"cat .*videos\.tar\.part\.\* \| tar -x"):
        list(LongVideoBench(hf="longvideobench/LongVideoBench").samples())
    extracted = Path(os.environ["HF_HOME"]) / "longvideobench"
    make_dataset(extracted, media)  # videos/ and subtitles/ as lmms-eval leaves them
    (extracted / "subtitles").mkdir()
    (extracted / "subtitles" / "a_en.json").write_text(json.dumps(
        [{"timestamp": [0.0, 1.0], "text": "hello"}, {"start": "0:00:00.2", "end": "0:00:00.9", "line": "there"}]))
    rel = run_replay("longvideobench", make_dataset(tmp_path / "lvb", media), PREDICTIONS)
    snp = run_replay("longvideobench", None, PREDICTIONS, hf="longvideobench/LongVideoBench")
    assert snp["metrics"] == rel["metrics"] and snp["metrics"]["accuracy"] == pytest.approx(0.3)
    assert snp["breakdown"] == rel["breakdown"]
    recs = [{**RECORDS[0], "subtitle_path": "a_en.json"}]
    (snap / "lvb_val.json").write_text(json.dumps(recs))
    s = next(iter(LongVideoBench(hf="longvideobench/LongVideoBench", subtitles="true").samples()))
    assert s.messages[0].text.startswith("hello\nthere\nWhat falls?") and s.media[0].path == str(extracted / "videos" / "a.mp4")


def test_snapshot_parquet_split_and_media_dir(tmp_path: Path, media, run_replay) -> None:
    """Without lvb_val.json the validation shards are read with datasets; media_dir names the videos."""
    cols = sorted({k for r in RECORDS for k in r})
    rows = {k: [r.get(k) for r in RECORDS] for k in cols}
    for k in ("duration_group", "correct_choice"):
        rows[k] = [None if v is None else int(v) for v in rows[k]]
    snap = media.snapshot(tmp_path / "snap", "validation", rows, shards=2)
    make_dataset(tmp_path / "elsewhere", media)
    rel = run_replay("longvideobench", make_dataset(tmp_path / "lvb", media), PREDICTIONS)
    snp = run_replay("longvideobench", snap, PREDICTIONS, media_dir=str(tmp_path / "elsewhere" / "videos"))
    assert snp["metrics"] == rel["metrics"] and snp["breakdown"] == rel["breakdown"]
    bad = media.snapshot(tmp_path / "bad", "validation", {"id": ["x"], "question": ["q"]})
    (bad / "videos").mkdir()
    with pytest.raises(DataLayoutError, match=r"lacks column\(s\) video_path, correct_choice \(expected the longvideobench/LongVideoBench"):
        list(LongVideoBench(data_dir=str(bad)).samples())


def test_subtitles_are_the_lines_at_the_sampled_frames_in_the_clips_time(tmp_path: Path, media) -> None:
    """lmms-eval's insert_subtitles_into_frames: cues moved by starting_timestamp_for_subtitles, a cue
    under 1 s widened to its midpoint +- 0.5 s, kept when a sampled frame lies strictly inside it (every
    line of the file went in, those outside the clip too)."""
    root = tmp_path / "lvb"
    media.mp4(root / "videos" / "a.mp4", frames=80, fps=4)  # 20 s: frames at 0.5, 1.5, ... 19.5 s at fps 1
    cues = [{"timestamp": [50.0, 52.0], "text": "before the clip"},
            {"timestamp": [101.0, 103.0], "text": "in clip 1-3 s"},
            {"start": "0:01:55.0", "end": "0:01:55.2", "line": "short, widened to 14.6-15.6 s"},
            {"timestamp": [110.9, 111.1], "text": "short, 10.5-11.5 s: no frame strictly inside"},
            # the official quirk: an end that is not a float becomes the clip's duration *before* the
            # offset is taken off (20 - 100 = -80): such a cue is never shown
            {"timestamp": [118.0, None], "text": "open end"},
            {"timestamp": [200.0, 205.0], "text": "after the clip"}]
    (root / "subtitles").mkdir(parents=True)
    (root / "subtitles" / "a.json").write_text(json.dumps(cues))
    rec = {**RECORDS[0], "subtitle_path": "a.json", "starting_timestamp_for_subtitles": 100.0, "duration": 20.0}
    (root / "lvb_val.json").write_text(json.dumps([rec, {**rec, "id": "q9", "subtitle_path": "gone.json"},
                                                   {**rec, "id": "q10", "subtitle_path": None}]))
    samples = list(LongVideoBench(data_dir=str(root), subtitles="true").samples())
    assert samples[0].messages[0].text.split("What falls?")[0] == (
        "in clip 1-3 s\nshort, widened to 14.6-15.6 s\n")
    assert samples[0].messages[0].text.endswith("Answer with the option's letter from the given choices directly.\n")
    assert "subtitle file not found" in samples[1].error and "no subtitle_path" in samples[2].error

