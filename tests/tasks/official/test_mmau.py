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
