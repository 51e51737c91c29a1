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
    # the interval is that of the reported accuracy (errored samples as not right), so it holds it
    from evalsuite.stats import mean_ci

    from evalsuite.results import read_samples

    rows = list(read_samples(tmp_path / "ocrbench-run-0" / "samples" / "ocrbench.jsonl").values())
    outcomes = [0.0 if r.error else r.score for r in rows]
    assert sum(outcomes) == 3 and len(outcomes) == 7
    expected = mean_ci(outcomes, [str(r.metadata.get("cluster", r.id)) for r in rows], n_boot=1000)
    assert entry["ci95"]["accuracy"] == pytest.approx(list(expected))  # was over the 5 scored samples only
    assert entry["ci95"]["accuracy"][0] <= 3 / 7 <= entry["ci95"]["accuracy"][1]


# ---- the Hugging Face snapshot (echo840/OCRBench) ---------------------------------------------------
def make_snapshot(root: Path, release: Path, media) -> Path:
    """echo840/OCRBench's schema, built from the release records as lmms-eval's upload script does:
    ``dataset``, ``question``, ``question_type``, ``answer`` (list) and ``image`` (bytes), same order."""
    import datasets

    rows: dict[str, list] = {"dataset": [], "question": [], "question_type": [], "answer": [], "image": []}
    for rec in RECORDS:
        image = release / "OCRBench_Images" / rec["image_path"]
        rows["dataset"].append(rec["dataset_name"])
        rows["question"].append(rec.get("question"))  # FUNSD:9 has none: a null cell
        rows["question_type"].append(rec["type"])
        rows["answer"].append(rec["answers"] if isinstance(rec["answers"], list) else [rec["answers"]])
        rows["image"].append(media.cell(image) if image.is_file() else {"bytes": None, "path": None})
    features = datasets.Features({
        "dataset": datasets.Value("string"), "question": datasets.Value("string"),
        "question_type": datasets.Value("string"), "answer": datasets.Sequence(datasets.Value("string")),
        "image": {"bytes": datasets.Value("binary"), "path": datasets.Value("string")}})
    return media.snapshot(root, "test", rows, features, shards=2, media={"image": "image"})


def snapshot_predictions() -> dict[str, str]:
    """The release predictions under the snapshot's ids (``test:<row>``, rows in release order)."""
    ids = [f"{r['dataset_name']}:{r['id']}" for r in RECORDS]
    return {f"test:{i}": PREDICTIONS[sid] for i, sid in enumerate(ids) if sid in PREDICTIONS}


def test_snapshot_scores_equal_release(tmp_path: Path, media, run_replay) -> None:
    release = make_dataset(tmp_path / "ocr", media)
    snap = make_snapshot(tmp_path / "snap", release, media)
    task = OCRBench(data_dir=str(snap))
    samples = list(task.samples())
    assert [s.id for s in samples] == [f"test:{i}" for i in range(7)]
    errors = {s.id: s.error for s in samples if s.error}
    assert set(errors) == {"test:5"} and "image cell is empty" in errors["test:5"]
    # The row without a question is read as an empty question (the snapshot has no way to say "missing").
    assert samples[6].error is None and samples[6].messages[0].text == ""
    s = samples[0]
    assert s.metadata["category"] == "Regular Text Recognition" and s.metadata["dataset"] == "IIIT5K"
    assert s.media[0].type == "image" and Path(s.media[0].path).read_bytes() == (
        release / "OCRBench_Images" / "IIIT5K" / "a.png").read_bytes()
    assert str(tmp_path / "cache" / "ocrbench" / "media") in s.media[0].path
    rel = run_replay("ocrbench", release, PREDICTIONS)
    snp = run_replay("ocrbench", snap, {**snapshot_predictions(), "test:6": "x"})
    # FUNSD:9 is errored in the release (no question) and answered "x" (right) from the snapshot.
    assert snp["metrics"]["score_official"] == rel["metrics"]["score_official"] + 1 == 4
    snp = run_replay("ocrbench", snap, {**snapshot_predictions(), "test:6": "wrong"})
    assert snp["metrics"] == rel["metrics"]
    # Every group of the release scores the same (FUNSD is a group only where its row could be read).
    for key, groups in rel["breakdown"].items():
        assert {g: snp["breakdown"][key][g] for g in groups} == groups
    assert set(snp["breakdown"]["dataset"]) - set(rel["breakdown"]["dataset"]) == {"FUNSD"}


def test_snapshot_from_hub_cache_offline(tmp_path: Path, media, run_replay) -> None:
    release = make_dataset(tmp_path / "ocr", media)
    make_snapshot(media.hub(tmp_path, "echo840/OCRBench"), release, media)
    entry = run_replay("ocrbench", None, {**snapshot_predictions(), "test:6": "wrong"}, hf="echo840/OCRBench")
    assert entry["metrics"]["score_official"] == 3 and entry["n_samples"] == 7 and entry["n_errors"] == 1


def test_snapshot_media_cached_by_content(tmp_path: Path, media) -> None:
    release = make_dataset(tmp_path / "ocr", media)
    snap = make_snapshot(tmp_path / "snap", release, media)
    first = [s.media[0].path for s in OCRBench(data_dir=str(snap)).samples() if s.media]
    second = [s.media[0].path for s in OCRBench(data_dir=str(snap)).samples() if s.media]
    # make_dataset writes one red PNG and one red JPEG under six names: two files, written once.
    assert first == second and len(first) == 6 and len(set(first)) == 2
    assert sorted(Path(p).suffix for p in set(first)) == [".jpg", ".png"]
    assert len(list((tmp_path / "cache" / "ocrbench" / "media").rglob("*.*"))) == 2


def test_snapshot_errors(tmp_path: Path, media) -> None:
    with pytest.raises(DataLayoutError, match=r"huggingface-cli download echo840/OCRBench --repo-type dataset"):
        list(OCRBench(hf="echo840/OCRBench").samples())
    with pytest.raises(DataLayoutError, match="either data_dir or hf"):
        list(OCRBench(data_dir=str(tmp_path), hf="echo840/OCRBench").samples())
    bad = media.snapshot(tmp_path / "bad", "test", {"dataset": ["a"], "question": ["q"], "answer": [["x"]]})
    with pytest.raises(DataLayoutError, match=r"lacks column\(s\) question_type, image \(expected the echo840/OCRBench"):
        list(OCRBench(data_dir=str(bad)).samples())
    (tmp_path / "other").mkdir()
    with pytest.raises(DataLayoutError, match=r"neither the release layout .* nor a snapshot of the Hugging Face dataset echo840/OCRBench"):
        list(OCRBench(data_dir=str(tmp_path / "other")).samples())


def test_cli_reads_the_cache_and_says_how_to_fill_it(tmp_path: Path, media, capsys) -> None:
    from evalsuite.cli import main

    preds = tmp_path / "preds.jsonl"
    preds.write_text("".join(json.dumps({"id": i, "prediction": p}) + "\n" for i, p in snapshot_predictions().items()))
    argv = ["run", "--model", f"replay:{preds}", "--tasks", "ocrbench", "--quiet", "--max-error-rate", "1",
            "--task-arg", "ocrbench.hf=echo840/OCRBench"]
    assert main([*argv, "--out", str(tmp_path / "missing")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "huggingface-cli download echo840/OCRBench --repo-type dataset" in err
    make_snapshot(media.hub(tmp_path, "echo840/OCRBench"), make_dataset(tmp_path / "ocr", media), media)
    assert main([*argv, "--out", str(tmp_path / "run")]) == 0
    entry = json.loads((tmp_path / "run" / "results.json").read_text())["tasks"]["ocrbench"]
    assert entry["metrics"]["score_official"] == 3 and entry["args"]["hf"] == "echo840/OCRBench"


def test_corrupt_image_bytes_fail_that_row_only(tmp_path: Path, media, run_replay) -> None:
    import datasets

    good = media.png(tmp_path / "g.png")
    rows = {"dataset": ["IIIT5K", "svt"], "question": ["q", "q"], "question_type": ["Regular Text Recognition"] * 2,
            "answer": [["CENTRE"], ["FRIEND"]],
            "image": [media.cell(good), {"bytes": b"\x89PNG not really", "path": "bad.png"}]}
    features = datasets.Features({
        "dataset": datasets.Value("string"), "question": datasets.Value("string"),
        "question_type": datasets.Value("string"), "answer": datasets.Sequence(datasets.Value("string")),
        "image": {"bytes": datasets.Value("binary"), "path": datasets.Value("string")}})
    snap = media.snapshot(tmp_path / "snap", "test", rows, features, media={"image": "image"})
    entry = run_replay("ocrbench", snap, {"test:0": "centre", "test:1": "friend"})
    assert entry["n_errors"] == 1 and entry["metrics"]["score_official"] == 1
    lines = [json.loads(x) for x in (tmp_path / "ocrbench-run-0" / "samples" / "ocrbench.jsonl").read_text().splitlines()]
    bad = next(x for x in lines if x["id"] == "test:1")
    assert "image file is corrupt" in bad["error"]


def test_network_is_blocked_in_these_tests() -> None:
    import socket

    with pytest.raises(AssertionError, match="network access attempted"):
        socket.create_connection(("huggingface.co", 443), timeout=1)


def test_a_moved_benchmark_is_the_same_benchmark_but_changed_data_is_not(tmp_path: Path, media) -> None:
    """Where the data lives is not a setting: a run resumes after the folder moved and compares with a
    run from another folder; the same ids with other answers (another version) are refused."""
    import shutil

    from evalsuite.compare import CompareError, compare_runs
    from evalsuite.gate import run_gate
    from evalsuite.results import load_run
    from evalsuite.runner import RunConfig, RunError, run

    preds = tmp_path / "preds.jsonl"
    preds.write_text("".join(json.dumps({"id": i, "prediction": p}) + "\n" for i, p in PREDICTIONS.items()))

    def go(data: Path, out: Path, limit: int | None = None) -> None:
        run(RunConfig(model=f"replay:{preds}", tasks=["ocrbench"], out=out, quiet=True, report=False, limit=limit,
                      task_args={"ocrbench": {"data_dir": str(data)}}, max_error_rate=1.0))

    first = make_dataset(tmp_path / "ocr", media)
    go(first, tmp_path / "a", limit=3)
    moved = tmp_path / "elsewhere" / "ocr"
    shutil.move(str(first), moved)
    go(moved, tmp_path / "a")  # resumes: 3 samples kept, 4 run
    entry = json.loads((tmp_path / "a" / "results.json").read_text())["tasks"]["ocrbench"]
    assert "data_dir" not in entry["args"] and entry["data_location"] == {"data_dir": str(moved)}
    assert entry["n_samples"] == 7
    go(moved, tmp_path / "b")
    cmp = compare_runs(load_run(tmp_path / "a"), load_run(tmp_path / "b"))
    assert cmp.tasks[0].config_diffs == [] and cmp.tasks[0].diff.n == 5
    # another version of the data under the same ids: refused on resume, in compare and in the gate
    other = make_dataset(tmp_path / "v2", media)
    records = json.loads((other / "OCRBench.json").read_text())
    records[0]["answers"] = "CENTER"
    (other / "OCRBench.json").write_text(json.dumps(records))
    with pytest.raises(RunError, match=r"1 finished sample\(s\) of 'ocrbench' were run on other data \(sample "
                                       r"'IIIT5K:1': target 'CENTRE' then, 'CENTER' now\)"):
        go(other, tmp_path / "a")
    go(other, tmp_path / "c")
    with pytest.raises(CompareError, match="task 'ocrbench': the runs read different data \\(1 sample\\(s\\) with "
                                           "the same id have another target"):
        compare_runs(load_run(tmp_path / "a"), load_run(tmp_path / "c"))
    assert load_run(tmp_path / "a")[0]["status"] == "complete"  # the refused resume left run a as it was
    with pytest.raises(CompareError, match="the runs read different data"):
        run_gate(load_run(tmp_path / "a"), load_run(tmp_path / "c"), n_boot=200)
    g = run_gate(load_run(tmp_path / "a"), load_run(tmp_path / "c"), n_boot=200, allow_config_mismatch=True)
    assert any("data: 1 sample(s) with the same id have another target" in n for n in g.notes)


def test_a_sample_that_could_not_be_read_says_nothing_about_the_data(tmp_path: Path, media) -> None:
    """docVQA:8's image is missing in the first run (an errored sample without a target) and there in
    the second: the same benchmark, so the runs compare and the first resumes."""
    from evalsuite.compare import compare_runs
    from evalsuite.results import load_run
    from evalsuite.runner import RunConfig, run

    preds = tmp_path / "preds.jsonl"
    preds.write_text("".join(json.dumps({"id": i, "prediction": p}) + "\n" for i, p in PREDICTIONS.items()))

    def go(data: Path, out: Path) -> None:
        run(RunConfig(model=f"replay:{preds}", tasks=["ocrbench"], out=out, quiet=True, report=False,
                      task_args={"ocrbench": {"data_dir": str(data)}}, max_error_rate=1.0))

    data = make_dataset(tmp_path / "ocr", media)
    go(data, tmp_path / "a")
    media.png(data / "OCRBench_Images" / "docVQA" / "missing.png")
    go(data, tmp_path / "b")
    cmp = compare_runs(load_run(tmp_path / "a"), load_run(tmp_path / "b"))
    assert cmp.tasks[0].config_diffs == []
    go(data, tmp_path / "a")  # resumes (nothing left to run), not refused as other data


def test_a_target_with_nan_is_the_same_target_read_back() -> None:
    from evalsuite.results import dumps, other_data
    from evalsuite.types import SampleResult

    box = [0.1, 0.2, float("nan"), 0.4]
    written = SampleResult.from_dict(json.loads(dumps(SampleResult("x", "t", box, "", 0.0).to_dict())))
    assert written.target == [0.1, 0.2, None, 0.4]
    assert not other_data(written, box) and other_data(written, [0.1, 0.2, 0.3, 0.4])


def test_a_run_started_before_the_location_left_the_settings_resumes(tmp_path: Path, media) -> None:
    """Runs written when data_dir was part of the config hash resume with their data where it was."""
    from evalsuite.registry import TASKS
    from evalsuite.runner import RunConfig, config_hash, run

    preds = tmp_path / "preds.jsonl"
    preds.write_text("".join(json.dumps({"id": i, "prediction": p}) + "\n" for i, p in PREDICTIONS.items()))
    data = make_dataset(tmp_path / "ocr", media)
    cfg = dict(model=f"replay:{preds}", tasks=["ocrbench"], out=tmp_path / "a", quiet=True, report=False,
               task_args={"ocrbench": {"data_dir": str(data)}}, max_error_rate=1.0)
    run(RunConfig(**cfg, limit=3))
    stamp_file = tmp_path / "a" / "samples" / "ocrbench.config.json"
    stamp = json.loads(stamp_file.read_text())
    task = TASKS.get("ocrbench")(data_dir=str(data))
    model = json.loads((tmp_path / "a" / "results.json").read_text())["model"]
    legacy = config_hash(task, model, with_location=True)
    assert legacy != stamp["config_hash"] == config_hash(task, model)
    stamp_file.write_text(json.dumps({**stamp, "config_hash": legacy}))  # as an older version wrote it
    run(RunConfig(**cfg))
    entry = json.loads((tmp_path / "a" / "results.json").read_text())["tasks"]["ocrbench"]
    assert entry["n_samples"] == 7 and entry["config_hash"] == config_hash(task, model)
