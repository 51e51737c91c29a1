"""Video-MME adapter: lmms-lab parquet layout, official extraction whose failures leave the denominator."""

from __future__ import annotations

from pathlib import Path

import pytest

from evalsuite.task import DataLayoutError
from evalsuite.tasks.official.videomme import VideoMME

pd = pytest.importorskip("pandas")
pytest.importorskip("pyarrow")

OPTS = ["A. Apples.", "B. Candles.", "C. Berries.", "D. Same."]


def _row(vid: str, qid: str, answer: str, duration: str, domain: str, task: str, options=OPTS) -> dict:
    return {"video_id": vid[-3:], "duration": duration, "domain": domain, "sub_category": "Humanity & History",
            "url": "", "videoID": vid, "question_id": qid, "task_type": task, "question": f"question {qid}?",
            "options": list(options), "answer": answer}


ROWS = [
    _row("v1", "001-1", "C", "short", "Knowledge", "Counting Problem"),
    _row("v1", "001-2", "A", "short", "Knowledge", "Information Synopsis"),
    _row("v1", "001-3", "D", "short", "Knowledge", "Counting Problem"),
    _row("v2", "002-1", "B", "long", "Sports Competition", "Action Recognition"),
    _row("v2", "002-2", "A", "long", "Sports Competition", "Action Recognition"),
    _row("v3", "003-1", "A", "medium", "Life Record", "OCR Problems"),  # video missing
    _row("v2", "002-3", "A", "long", "Sports Competition", "Action Recognition", options=OPTS[:3]),  # malformed
]
PREDICTIONS = {
    "001-1": "C. Berries.",  # right
    "001-2": "D.",  # wrong
    "001-3": "I cannot determine this from the video at all, sorry about that.",  # > 10 words, no A-D: unparsed
    "002-1": "Best answer: C",  # official quirk: "Best answer:" is never removed, the B of "Best" is read
    "002-2": "the answer is a",  # no capital A-D: unparsed
}


def make_dataset(root: Path, media) -> Path:
    (root / "videomme").mkdir(parents=True)
    pd.DataFrame(ROWS).to_parquet(root / "videomme" / "test-00000-of-00001.parquet")
    media.mp4(root / "data" / "v1.mp4")
    media.mp4(root / "data" / "v2.mp4")
    (root / "subtitle").mkdir()
    (root / "subtitle" / "v1.srt").write_text(
        "1\n00:00:00,000 --> 00:00:01,000\n<font color=\"white\" size=\".72c\">Hello there</font>\n\n"
        "2\n00:00:01,000 --> 00:00:02,000\nThree apples\n")
    return root


def test_official_accuracy_excludes_unparsed(tmp_path: Path, media) -> None:
    task = VideoMME(data_dir=str(make_dataset(tmp_path / "vmme", media)))
    samples = list(task.samples())
    errors = {s.id: s.error for s in samples if s.error}
    assert set(errors) == {"003-1", "002-3"}
    assert "video file not found" in errors["003-1"] and "4 options" in errors["002-3"]
    s = samples[0]
    assert s.metadata["cluster"] == "v1" and s.metadata["duration"] == "short"
    assert s.messages[0].text.endswith("D. Same.\nThe best answer is:")
    results = media.score_all(task, PREDICTIONS)
    assert [r.scores.get("parsed") for r in results[:5]] == ["C", "D", None, "B", None]
    m = task.aggregate(results)
    assert m["accuracy"] == pytest.approx(2 / 3)  # 2 right of 3 answered
    assert m["accuracy_strict"] == pytest.approx(2 / 5)
    assert m["n_unparsed"] == 2
    short = [r for r in results if r.metadata.get("duration") == "short"]
    assert task.aggregate(short)["accuracy"] == pytest.approx(1 / 2)


def test_subtitles_and_duration_filter(tmp_path: Path, media) -> None:
    root = make_dataset(tmp_path / "vmme", media)
    task = VideoMME(data_dir=str(root), subtitles="true", duration="short")
    samples = list(task.samples())
    assert [s.id for s in samples] == ["001-1", "001-2", "001-3"]
    # v1 lasts 1 s: at fps 1 the one frame sampled is at 0.5 s, inside the first cue only
    assert samples[0].messages[0].text.startswith("This video's subtitles are listed below:\nHello there\nSelect")


def test_subtitles_are_those_of_the_sampled_frames(tmp_path: Path, media) -> None:
    """Video-MME's README: "only use the subtitles corresponding to the sampled video frames"."""
    root = make_dataset(tmp_path / "vmme", media)
    media.mp4(root / "data" / "v1.mp4", frames=16, fps=4)  # 4 s
    (root / "subtitle" / "v1.srt").write_text(
        "1\n00:00:00,000 --> 00:00:00,400\nA\n\n2\n00:00:00,400 --> 00:00:01,000\nB\n\n"
        "3\n00:00:01,000 --> 00:00:01,400\nC\n\n4\n00:00:01,400 --> 00:00:03,000\nD\n\n"
        "5\n00:00:03,600 --> 00:00:04,000\nE\n")

    def subtitles(**args: str) -> str:
        s = next(iter(VideoMME(data_dir=str(root), subtitles="true", duration="short", **args).samples()))
        return s.messages[0].text.split("\nSelect")[0].split("listed below:\n")[1]

    assert subtitles() == "B\nD"  # frames at 0.5, 1.5, 2.5, 3.5 s; an end time is exclusive
    assert subtitles(max_frames="2") == "C"  # frames at 1.0 and 3.0 s
    assert subtitles(fps="4") == "A\nB\nC\nD\nE"  # 16 frames: every cue is seen


def test_an_unknown_duration_is_refused_not_an_empty_benchmark(tmp_path: Path, media) -> None:
    from evalsuite.task import TaskArgError

    root = make_dataset(tmp_path / "vmme", media)
    assert len(list(VideoMME(data_dir=str(root), duration="short, long").samples())) > 3
    with pytest.raises(TaskArgError, match=r"^task argument videomme.duration must be a comma-separated subset of "
                                           r"short, medium, long, got 'shrot'$"):
        list(VideoMME(data_dir=str(root), duration="shrot").samples())


def test_wrong_layout(tmp_path: Path) -> None:
    (tmp_path / "v" / "data").mkdir(parents=True)
    with pytest.raises(DataLayoutError, match=r"videomme/test-\*\.parquet"):
        list(VideoMME(data_dir=str(tmp_path / "v")).samples())


def test_end_to_end_through_runner(tmp_path: Path, media, run_replay) -> None:
    entry = run_replay("videomme", make_dataset(tmp_path / "vmme", media), PREDICTIONS)
    assert entry["metrics"]["accuracy"] == pytest.approx(2 / 3)
    assert entry["metrics"]["n_unparsed"] == 2
    assert entry["breakdown"]["duration"]["long"]["accuracy"] == 1.0
    assert entry["media"] == {"fps": 1.0, "max_frames": 64, "evs_q": 0.0}


# ---- the snapshot built with datasets, from the HF cache, with the videos elsewhere ----------------
def _snapshot_rows() -> dict[str, list]:
    return {k: [r[k] for r in ROWS] for k in ROWS[0]}


def test_snapshot_from_hub_cache_with_lmms_eval_video_folder(tmp_path: Path, media, run_replay) -> None:
    import os

    snap = media.hub(tmp_path, "lmms-lab/Video-MME")
    media.snapshot(snap, "test", _snapshot_rows(), folder="videomme", shards=2)
    (snap / "videos_chunked_01.zip").write_bytes(b"PK")
    with pytest.raises(DataLayoutError, match=r"unzip .*videos_chunked_\*\.zip"):
        list(VideoMME(hf="lmms-lab/Video-MME").samples())
    extracted = Path(os.environ["HF_HOME"]) / "videomme"  # where lmms-eval unzips them
    media.mp4(extracted / "data" / "v1.mp4")
    media.mp4(extracted / "data" / "v2.mp4")
    rel = run_replay("videomme", make_dataset(tmp_path / "vmme", media), PREDICTIONS)
    snp = run_replay("videomme", None, PREDICTIONS, hf="lmms-lab/Video-MME")
    assert snp["metrics"] == rel["metrics"] and snp["metrics"]["accuracy"] == pytest.approx(2 / 3)
    assert snp["breakdown"] == rel["breakdown"]
    task = VideoMME(hf="lmms-lab/Video-MME")
    assert next(iter(task.samples())).media[0].path == str(extracted / "data" / "v1.mp4")


def test_media_dir_and_data_shards(tmp_path: Path, media) -> None:
    root = media.snapshot(tmp_path / "snap", "test", _snapshot_rows())  # data/test-00000-of-00001.parquet
    with pytest.raises(DataLayoutError, match="media_dir not found"):
        list(VideoMME(data_dir=str(root), media_dir=str(tmp_path / "nowhere")).samples())
    media.mp4(tmp_path / "videos" / "v1.mp4")
    (tmp_path / "subtitle").mkdir()
    (tmp_path / "subtitle" / "v1.srt").write_text("1\n00:00:00,000 --> 00:00:01,000\nHi\n")
    samples = list(VideoMME(data_dir=str(root), media_dir=str(tmp_path / "videos"), duration="short",
                            subtitles="true").samples())
    assert [s.error for s in samples] == [None, None, None]
    assert samples[0].media[0].path == str(tmp_path / "videos" / "v1.mp4")
    assert samples[0].messages[0].text.startswith("This video's subtitles are listed below:\nHi\n")


def test_snapshot_schema_error(tmp_path: Path, media) -> None:
    rows = {k: v for k, v in _snapshot_rows().items() if k not in ("question_id", "options")}
    root = media.snapshot(tmp_path / "s", "test", rows, folder="videomme")
    (root / "data").mkdir(exist_ok=True)
    with pytest.raises(DataLayoutError, match=r"lacks column\(s\) question_id, options \(expected the lmms-lab/Video-MME"):
        list(VideoMME(data_dir=str(root)).samples())


def test_srt_cue_times(tmp_path: Path) -> None:
    from evalsuite.tasks.official.videomme import srt_cues

    srt = tmp_path / "a.srt"
    srt.write_text("\ufeff1\r\n00:00:01,500 --> 00:00:02.25\r\nOne\r\n\r\n2\r\n00:03,000 --> 00:04,000\r\n<i>Two</i>\r\n\r\n"
                   "3\r\n01:02:03 --> 01:02:04,5\r\nThree\r\n\r\n4\r\nno timing --> here\r\nFour\r\n", encoding="utf-8")
    # hours optional (mm:ss,mmm), '.' or ',' before the milliseconds, none at all; an unreadable cue is left out
    assert srt_cues(srt) == [(1.5, 2.25, "One"), (3.0, 4.0, "Two"), (3723.0, 3724.5, "Three")]


def test_subtitles_with_no_frames_to_sample_fail_that_sample(tmp_path: Path, media) -> None:
    root = make_dataset(tmp_path / "vmme", media)
    samples = list(VideoMME(data_dir=str(root), subtitles="true", duration="short", fps="0", max_frames="0").samples())
    assert samples[0].error and "fps or max_frames must be > 0" in samples[0].error
    assert samples[1].error == samples[0].error  # the others of the video too, each on its own
