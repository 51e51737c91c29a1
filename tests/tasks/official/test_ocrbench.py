"""OCRBench adapter: original layout, official substring rule (HME100k variant), count out of N."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from evalsuite.task import DataLayoutError
from evalsuite.tasks.official.ocrbench import OCRBench

RECORDS = [
    {"dataset_name": "IIIT5K", "id": 1, "image_path": "IIIT5K/a.png", "question": "what is written?",
     "answers": "CENTRE", "type": "Regular Text Recognition"},
    {"dataset_name": "svt", "id": 1, "image_path": "svt/b.png", "question": "what is written?",
     "answers": ["FRIEND"], "type": "Irregular Text Recognition"},
    {"dataset_name": "HME100k", "id": 5, "image_path": "HME100K/c.jpg", "question": "latex?",
     "answers": ["y _ { 2 } = - 1\n", "y_2 = - 1\n"], "type": "Handwritten Mathematical Expression Recognition"},
    {"dataset_name": "HME100k", "id": 6, "image_path": "HME100K/d.jpg", "question": "latex?",
     "answers": ["x ^ { 2 }"], "type": "Handwritten Mathematical Expression Recognition"},
    {"dataset_name": "docVQA", "id": 7, "image_path": "docVQA/e.png", "question": "total?",
     "answers": ["$12.50", "12.50"], "type": "Doc-oriented VQA"},
    {"dataset_name": "docVQA", "id": 8, "image_path": "docVQA/missing.png", "question": "date?",
     "answers": ["1999"], "type": "Doc-oriented VQA"},
    {"dataset_name": "FUNSD", "id": 9, "image_path": "FUNSD/f.png", "answers": "x", "type": "Key Information Extraction"},
]
PREDICTIONS = {
    "IIIT5K:1": "The word is centre.",  # case-insensitive substring: right
    "svt:1": "fiend",  # wrong
    "HME100k:5": "y_2=-1",  # spaces removed on both sides: right
    "HME100k:6": "X^{2}",  # HME is case-sensitive: wrong
    "docVQA:7": "The total is\n12.50 dollars",  # second answer matches: right
}


def make_dataset(root: Path, media) -> Path:
    (root / "OCRBench_Images").mkdir(parents=True)
    for rec in RECORDS:
        if "missing" not in rec["image_path"]:
            media.png(root / "OCRBench_Images" / rec["image_path"])
    (root / "OCRBench.json").write_text(json.dumps(RECORDS))
    return root


def test_official_count_and_accuracy(tmp_path: Path, media) -> None:
    task = OCRBench(data_dir=str(make_dataset(tmp_path / "ocr", media)))
    samples = list(task.samples())
    assert [s.id for s in samples] == ["IIIT5K:1", "svt:1", "HME100k:5", "HME100k:6", "docVQA:7", "docVQA:8", "FUNSD:9"]
    errors = {s.id: s.error for s in samples if s.error}
    assert set(errors) == {"docVQA:8", "FUNSD:9"}
    assert "image file not found" in errors["docVQA:8"] and "question" in errors["FUNSD:9"]
    results = media.score_all(task, PREDICTIONS)
    assert [r.score for r in results] == [1.0, 0.0, 1.0, 0.0, 1.0, None, None]
    metrics = task.aggregate(results)
    # Official: 3 right; the total counts every sample (errored ones are simply not right).
    assert metrics["score_official"] == 3
    assert metrics["accuracy"] == pytest.approx(3 / 7)
    assert metrics["score_text_recognition"] == 1


def test_sample_content_and_metadata(tmp_path: Path, media) -> None:
    task = OCRBench(data_dir=str(make_dataset(tmp_path / "ocr", media)))
    s = next(iter(task.samples()))
    assert s.modalities == {"image", "text"}
    assert s.media[0].path.endswith("OCRBench_Images/IIIT5K/a.png")
    assert s.metadata == {"category": "Regular Text Recognition", "dataset": "IIIT5K", "cluster": "IIIT5K/a.png"}


def test_wrong_layout_names_expected_files(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataLayoutError, match="OCRBench.json"):
        list(OCRBench(data_dir=str(tmp_path / "empty")).samples())
    with pytest.raises(DataLayoutError, match="data_dir"):
        list(OCRBench().samples())


def test_end_to_end_through_runner(tmp_path: Path, media, run_replay) -> None:
    entry = run_replay("ocrbench", make_dataset(tmp_path / "ocr", media), PREDICTIONS)
    assert entry["metrics"]["score_official"] == 3
    assert entry["metrics"]["accuracy"] == pytest.approx(3 / 7)
    assert entry["n_errors"] == 2 and entry["n_samples"] == 7
    assert entry["breakdown"]["category"]["Doc-oriented VQA"]["score_official"] == 1
