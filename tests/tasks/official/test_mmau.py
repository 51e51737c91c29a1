"""MMAU adapter: original layout, official string match, letters mapped only on request."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from evalsuite.task import DataLayoutError
from evalsuite.tasks.official.mmau import MMAU

VOICE = ["Man", "Woman", "Child", "Robot"]
RECORDS = [
    {"id": "a", "audio_id": "./test-mini-audios/a.wav", "question": "Who speaks?", "choices": VOICE, "answer": "Man",
     "task": "sound", "difficulty": "medium", "category": "Reasoning", "sub-category": "Acoustic Source Inference"},
    {"id": "b", "audio_id": "./test-mini-audios/b.wav", "question": "Tempo?", "choices": ["Slow tempo", "Fast tempo"],
     "answer": "Slow tempo", "task": "music", "difficulty": "easy", "category": "Information Extraction",
     "sub-category": "Tempo"},
    {"id": "c", "audio_id": "./test-mini-audios/c.wav", "question": "Who speaks?", "choices": VOICE, "answer": "Woman",
     "task": "speech", "difficulty": "hard", "category": "Reasoning", "sub-category": "Speaker Identification"},
    {"id": "d", "audio_id": "./test-mini-audios/missing.wav", "question": "?", "choices": VOICE, "answer": "Man",
     "task": "sound", "difficulty": "easy"},
    {"id": "e", "audio_id": "./test-mini-audios/a.wav", "question": "no choices", "answer": "Man"},
]
PREDICTIONS = {"a": "The speaker is a man.", "b": "fast tempo", "c": "B"}


def make_dataset(root: Path, media) -> Path:
    for n in "abc":
        media.wav(root / "test-mini-audios" / f"{n}.wav")
    (root / "mmau-test-mini.json").write_text(json.dumps(RECORDS))
    return root


def test_official_string_match(tmp_path: Path, media) -> None:
    task = MMAU(data_dir=str(make_dataset(tmp_path / "mmau", media)))
    samples = list(task.samples())
    errors = {s.id: s.error for s in samples if s.error}
    assert set(errors) == {"d", "e"} and "audio file not found" in errors["d"] and "choices" in errors["e"]
    assert "B." not in samples[2].messages[0].text  # no letters shown: the official match wants option text
    results = media.score_all(task, PREDICTIONS)
    assert [r.score for r in results] == [1.0, 0.0, 0.0, None, None]  # a bare "B" is not "Woman"
    assert task.aggregate(results)["accuracy"] == pytest.approx(1 / 3)
    by_task = {t: task.aggregate([r for r in results if r.metadata.get("task") == t])["accuracy"]
               for t in ("sound", "music", "speech")}
    assert by_task == {"sound": 1.0, "music": 0.0, "speech": 0.0}


@pytest.mark.parametrize("choices", ["ab", [], {"a": 1}])
def test_release_choices_that_are_not_a_list_error_that_record(tmp_path: Path, media, choices) -> None:
    root = make_dataset(tmp_path / "mmau", media)
    (root / "mmau-test-mini.json").write_text(json.dumps([{**RECORDS[0], "choices": choices}, RECORDS[1]]))
    samples = list(MMAU(data_dir=str(root)).samples())
    assert samples[0].error == ("malformed MMAU record: choices must be a non-empty list of option texts, "
                                f"got {choices!r}")
    assert samples[1].error is None and samples[1].choices == ["Slow tempo", "Fast tempo"]


def test_map_letters_on_request(tmp_path: Path, media) -> None:
    task = MMAU(data_dir=str(make_dataset(tmp_path / "mmau", media)), map_letters="true")
    assert "B. Woman" in list(task.samples())[2].messages[0].text
    results = media.score_all(task, {**PREDICTIONS, "b": "(E)"})  # a letter beyond the options stays text
    assert [r.score for r in results[:3]] == [1.0, 0.0, 1.0]
    assert task.aggregate(results)["accuracy"] == pytest.approx(2 / 3)


def test_wrong_layout(tmp_path: Path) -> None:
    (tmp_path / "m").mkdir()
    with pytest.raises(DataLayoutError, match="mmau-test-mini.json"):
        list(MMAU(data_dir=str(tmp_path / "m")).samples())


def test_end_to_end_through_runner(tmp_path: Path, media, run_replay) -> None:
    entry = run_replay("mmau", make_dataset(tmp_path / "mmau", media), PREDICTIONS)
    assert entry["metrics"]["accuracy"] == pytest.approx(1 / 3)
    assert entry["breakdown"]["difficulty"]["medium"]["accuracy"] == 1.0
    assert entry["media"] == {"sample_rate": 16000} and entry["n_errors"] == 2


# ---- the Hugging Face snapshot (lmms-lab(-audio)/mmau) -----------------------------------------------
COLUMNS = ("id", "audio", "question", "choices", "answer", "dataset", "task", "split", "category", "sub-category",
           "difficulty")


def make_snapshot(root: Path, release: Path, media, split: str = "test_mini") -> Path:
    """The card's schema (choices as JSON text, audio as bytes), rows in the release's order."""
    rows: dict[str, list] = {c: [] for c in COLUMNS}
    for rec in RECORDS:
        audio = release / rec["audio_id"]
        rows["audio"].append(media.cell(audio) if audio.is_file() else {"bytes": None, "path": None})
        rows["choices"].append(json.dumps(rec["choices"]) if "choices" in rec else "not json")
        rows["dataset"].append("mmau")
        rows["split"].append(split)
        for k in ("id", "question", "answer", "task", "category", "sub-category", "difficulty"):
            rows[k].append(rec.get(k))
    return media.snapshot(root, split, rows, media={"audio": "audio"}, shards=2)


def test_snapshot_scores_equal_release(tmp_path: Path, media, run_replay) -> None:
    release = make_dataset(tmp_path / "mmau", media)
    snap = make_snapshot(tmp_path / "snap", release, media)
    media.snapshot(snap, "test", {"id": ["x"], "audio": [None], "question": ["q"], "choices": ["[]"], "answer": [""]})
    samples = list(MMAU(data_dir=str(snap)).samples())
    assert [s.id for s in samples] == ["a", "b", "c", "d", "e"]
    errors = {s.id: s.error for s in samples if s.error}
    assert set(errors) == {"d", "e"} and "audio cell is empty" in errors["d"] and "malformed MMAU row 4" in errors["e"]
    assert samples[0].media[0].type == "audio" and samples[0].media[0].path.endswith(".wav")
    assert samples[0].choices == VOICE and samples[1].metadata["sub_category"] == "Tempo"
    for letters in ("false", "true"):
        rel = run_replay("mmau", release, PREDICTIONS, map_letters=letters)
        snp = run_replay("mmau", snap, PREDICTIONS, map_letters=letters)
        assert snp["metrics"] == rel["metrics"]
        scored = {g: m for g, m in snp["breakdown"]["task"].items() if m["n"] > m["n_errors"]}
        assert scored == rel["breakdown"]["task"]  # row e fails in group "" (the release's record has none)
    assert snp["metrics"]["accuracy"] == pytest.approx(2 / 3)
    test = MMAU(data_dir=str(snap), split="test")
    assert [s.error for s in test.samples()] == ["malformed MMAU row 0: choices must be a non-empty list, got '[]'"]


def test_snapshot_from_hub_cache(tmp_path: Path, media, run_replay) -> None:
    release = make_dataset(tmp_path / "mmau", media)
    make_snapshot(media.hub(tmp_path, "lmms-lab/mmau"), release, media)
    entry = run_replay("mmau", None, PREDICTIONS, hf="lmms-lab/mmau")
    assert entry["metrics"]["accuracy"] == pytest.approx(1 / 3) and entry["n_errors"] == 2


def test_snapshot_schema_error(tmp_path: Path, media) -> None:
    snap = media.snapshot(tmp_path / "s", "test_mini", {"id": ["a"], "question": ["q"], "answer": ["x"]})
    with pytest.raises(DataLayoutError, match=r"lacks column\(s\) audio, choices \(expected the lmms-lab-audio/mmau"):
        list(MMAU(data_dir=str(snap)).samples())
    with pytest.raises(DataLayoutError, match="huggingface-cli download lmms-lab/mmau --repo-type dataset"):
        list(MMAU(hf="lmms-lab/mmau").samples())


def test_hub_cache_pinned_to_a_commit_without_refs(tmp_path: Path, media) -> None:
    release = make_dataset(tmp_path / "mmau", media)
    snap = media.hub(tmp_path, "lmms-lab/mmau")
    make_snapshot(snap, release, media)
    (snap.parent.parent / "refs" / "main").unlink()
    assert [s.id for s in MMAU(hf="lmms-lab/mmau").samples()] == ["a", "b", "c", "d", "e"]
    (snap.parent / "fedcba9876543210fedcba9876543210fedcba98").mkdir()  # two commits, no ref: ambiguous
    with pytest.raises(DataLayoutError, match="not in the local Hugging Face cache"):
        list(MMAU(hf="lmms-lab/mmau").samples())
