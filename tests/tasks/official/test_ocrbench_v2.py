"""OCRBench v2 adapter: official per-type rules, category means, unsupported types listed."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from evalsuite.task import DataLayoutError
from evalsuite.tasks.official import _ocrbench_v2_rules as rules
from evalsuite.tasks.official.ocrbench_v2 import OCRBenchV2


def _rec(i: int, qtype: str, answers, image: str = "EN_part/a.png", question: str = "q?", **extra) -> dict:
    return {"dataset_name": "src", "type": qtype, "id": i, "image_path": image, "question": question,
            "answers": answers, **extra}


RECORDS = [
    _rec(0, "text recognition en", ["HELLO"]),
    _rec(1, "cognition VQA en", ["the quick brown fox jumps"]),
    _rec(2, "diagram QA en", ["B"], eval="multiple choice"),
    _rec(3, "document classification en", ["B"], eval="multiple choice"),
    _rec(4, "math QA en", ["Xy"], eval="case sensitive"),
    _rec(5, "text counting en", ["10"], eval="regression"),
    _rec(6, "text counting en", ["Three"], eval="exact match"),
    _rec(7, "formula recognition en", ["x ^ { 2 }"]),
    _rec(8, "table parsing en", ["<table></table>"]),
    _rec(9, "text spotting en", ["a"]),
    _rec(10, "cognition VQA cn", ["北京 市"], image="CN_part/b.png"),
    _rec(11, "formula recognition cn", ["\\text{面积} = 3"], image="CN_part/b.png"),
    _rec(12, "handwritten answer extraction cn", ["AC"], image="CN_part/b.png", question="选择题"),
    _rec(13, "handwritten answer extraction cn", ["..."], image="CN_part/b.png", question="简答题：为什么"),
    _rec(14, "reasoning VQA cn", ["甲"], image="CN_part/missing.png"),
    _rec(15, "text grounding en", [100, 100, 300, 300]),
    {"dataset_name": "src", "type": "math QA en", "id": 16, "image_path": "EN_part/a.png", "answers": ["1"]},
]
PREDICTIONS = {
    "0": "hello world",  # substring, case-insensitive: 1
    "1": "the quick brown fox jumped",  # 5-word answer: ANLS 1 - 2/26
    "2": "(B)",  # letters only: "B" == "B"
    "3": "B. letter",  # letters only: "Bletter" != "B"
    "4": "xy",  # case-sensitive, short answer, list: no ANLS fallback: 0
    "5": "I count 8 words",  # regression: 1 - |8 - 10| / 10 = 0.8
    "6": "Three apples",  # exact match compares the lower-cased answer with the raw prediction: 0
    "7": "$x^{2}$",  # spaces removed: substring: 1
    "10": "答案是北京市",  # spaces removed: 1
    "11": "面积=3",  # \text{} removed: 1
    "12": "A、C",  # joined with 、: 1
    "15": "maybe [0, 0, 50, 50], no: (100, 100, 200, 300)",  # last box: IoU 200*100 / 200*200 = 0.5
}


def make_dataset(root: Path, media) -> Path:
    media.png(root / "EN_part" / "a.png")
    media.png(root / "CN_part" / "b.png")
    (root / "OCRBench_v2.json").write_text(json.dumps(RECORDS, ensure_ascii=False))
    return root


def test_official_category_means(tmp_path: Path, media) -> None:
    task = OCRBenchV2(data_dir=str(make_dataset(tmp_path / "v2", media)))
    samples = list(task.samples())
    errors = {s.id: s.error for s in samples if s.error}
    assert set(errors) == {"8", "9", "13", "14", "16"}
    assert "malformed" in errors["16"] and "question" in errors["16"]
    assert "not supported" in errors["8"] and "TEDS" in errors["8"] and "BLEU/METEOR" in errors["13"]
    assert "image file not found" in errors["14"]
    results = media.score_all(task, PREDICTIONS)
    m = task.aggregate(results)
    anls = 1 - 2 / 26
    assert m["en/text_recognition"] == 1.0
    assert m["en/visual_text_understanding"] == pytest.approx((anls + 1 + 0) / 3)
    assert m["en/mathematical_calculation"] == pytest.approx((0 + 0.8 + 0) / 3)
    assert m["en/element_parsing"] == 1.0
    assert m["en/text_detection"] == 0.5
    assert m["score_en"] == pytest.approx((1 + (anls + 1) / 3 + 0.8 / 3 + 1 + 0.5) / 5)
    assert m["accuracy"] == m["score_en"]
    assert m["score_cn"] == 1.0
    assert m["unsupported_types"] == ["handwritten answer extraction cn", "table parsing en", "text spotting en"]
    assert m["n_unsupported"] == 3
    assert m["partial_categories"] == ["cn/relationship_extraction", "en/element_parsing"]


@pytest.mark.parametrize(
    "fn, args, expected",
    [
        (rules.vqa, ("abcd efgh", ["one two three four five"]), 0.0),  # ANLS < 0.5
        (rules.vqa, ("the xY z", "Xy"), 1.0),  # bare string, case-insensitive
        (rules.vqa, ("xyz", "xyw"), 0.0),  # bare, short, not case-sensitive: no ANLS
        # bare string, case-sensitive: short answers fall back to ANLS (1 - 1/4)
        (lambda p, a: rules.vqa(p, a, case_sensitive=True), ("abcd", "abce"), 0.75),
        (lambda p, a: rules.vqa(p, a, case_sensitive=True), ("abcd", ["abce"]), 0.0),
        # bare string, case-sensitive, 5+ words: the official branch has no case for it, 0 (a list: ANLS)
        (lambda p, a: rules.vqa(p, a, case_sensitive=True),
         ("The Quick Brown Fox Jumped", "The Quick Brown Fox Jumps"), 0.0),
        (lambda p, a: rules.vqa(p, a, case_sensitive=True),
         ("The Quick Brown Fox Jumped", ["The Quick Brown Fox Jumps"]), pytest.approx(1 - 2 / 26)),
        (rules.vqa_cn, ("a,b,c,d", "a,b,c,d"), 0.0),  # bare, 4+ parts: the official scores nothing
        (rules.vqa_cn, ("a,b,c,d", ["a,b,c,e"]), pytest.approx(6 / 7)),  # list, 4+ parts: ANLS
        (lambda p, a: rules.counting(p, a, "exact match"), ("Three apples", "Three"), 1.0),  # bare: lower-cased
        (lambda p, a: rules.counting(p, a, "regression"), ("20", ["10"]), 0.0),  # n >= 2a
        (lambda p, a: rules.counting(p, a, "regression"), ("4", ["10"]), 0.0),  # iou 0.4 <= 0.5
        (lambda p, a: rules.counting(p, a, "regression"), ("no number", ["x"]), 0.0),  # answer never parsed
        (rules.multiple_choice, ("answer: A", ["A"]), 0.0),  # "answerA"
        (rules.handwritten_choice, ("选 A和C", ["AC"]), 1.0),
        (rules.handwritten_choice, ("C", ["C"]), 1.0),
        (rules.text_grounding, ("(0, 0, 10, 10) [0, 0, 1001, 5]", [0, 0, 10, 20]), 0.5),  # >1000 box ignored
        (rules.text_grounding, ("[1.5, 2, 3, 4]", [0, 0, 10, 10]), 0.0),  # decimals are no box
        (rules.text_grounding, ("(0, 0, 10, 10)", [0.9, 0.9, 10.9, 10.9]), 1.0),  # answer truncated by int()
    ],
)
def test_rules_quirks(fn, args, expected) -> None:
    assert fn(*args) == expected


def test_counting_rejects_unknown_method() -> None:
    with pytest.raises(ValueError, match="exact match"):
        rules.counting("1", ["1"], "fuzzy")


def test_wrong_layout(tmp_path: Path) -> None:
    (tmp_path / "x").mkdir()
    with pytest.raises(DataLayoutError, match="OCRBench_v2.json"):
        list(OCRBenchV2(data_dir=str(tmp_path / "x")).samples())


def test_end_to_end_through_runner(tmp_path: Path, media, run_replay) -> None:
    entry = run_replay("ocrbench_v2", make_dataset(tmp_path / "v2", media), PREDICTIONS)
    assert entry["metrics"]["score_cn"] == 1.0
    assert entry["metrics"]["unsupported_types"] == ["handwritten answer extraction cn", "table parsing en",
                                                      "text spotting en"]
    assert entry["breakdown"]["group"]["en/mathematical_calculation"]["accuracy"] == pytest.approx(0.8 / 3)
    assert entry["n_errors"] == 5 and entry["n_unsupported"] == 3


def test_unsupported_types_do_not_count_against_the_error_rate(tmp_path: Path, media) -> None:
    """A real OCRBench v2 folder holds many TEDS/BLEU-scored types: they are errored and reported, but a
    default run must not fail for them (only the 2 other errored samples count)."""
    import json

    from evalsuite.runner import RunConfig, run

    data = make_dataset(tmp_path / "v2", media)
    preds = tmp_path / "preds.jsonl"
    preds.write_text("".join(json.dumps({"id": i, "prediction": p}) + "\n" for i, p in PREDICTIONS.items()))
    n = len(json.loads((data / "OCRBench_v2.json").read_text()))
    for limit, status in ((2 / n + 0.01, "complete"), (2 / n - 0.01, "failed")):
        out = tmp_path / f"run-{status}"
        outcome = run(RunConfig(model=f"replay:{preds}", tasks=["ocrbench_v2"], out=out, quiet=True, report=False,
                                task_args={"ocrbench_v2": {"data_dir": str(data)}}, max_error_rate=limit))
        doc = json.loads((out / "results.json").read_text())
        assert doc["status"] == status, doc["status_reasons"]
        if status == "failed":
            assert doc["status_reasons"] == [f"task ocrbench_v2: 2/{n} samples errored, besides 3 of types the task "
                                             f"cannot score ({2 / n:.1%} > --max-error-rate {limit:.1%})"]
        assert outcome.exit_code == (0 if status == "complete" else 1)


# ---- the Hugging Face snapshot (ling99/OCRBench_v2) -------------------------------------------------
def make_snapshot(root: Path, release: Path, media) -> Path:
    """ling99/OCRBench_v2 as lmms-eval's upload script builds it from the release records: answers as
    text, eval "None" where absent, bbox/bbox_list/content columns, image bytes. Record 16 has no
    question, which that script cannot upload (it reads ``data[i]["question"]``): it is left out."""
    import datasets

    rows: dict[str, list] = {k: [] for k in ("id", "dataset_name", "question", "type", "answers", "image", "eval",
                                             "bbox", "bbox_list", "content")}
    for rec in RECORDS[:16]:
        image = release / rec["image_path"]
        rows["id"].append(int(rec["id"]))
        rows["dataset_name"].append(rec["dataset_name"])
        rows["question"].append(rec["question"])
        rows["type"].append(rec["type"])
        rows["answers"].append([json.dumps(a) if isinstance(a, dict) else str(a) for a in rec["answers"]])
        rows["image"].append(media.cell(image) if image.is_file() else {"bytes": None, "path": None})
        rows["eval"].append(str(rec.get("eval")))
        rows["bbox"].append(None)
        rows["bbox_list"].append(None)
        rows["content"].append(None)
    features = datasets.Features({
        "id": datasets.Value("int32"), "dataset_name": datasets.Value("string"), "question": datasets.Value("string"),
        "type": datasets.Value("string"), "answers": datasets.Sequence(datasets.Value("string")),
        "image": {"bytes": datasets.Value("binary"), "path": datasets.Value("string")},
        "eval": datasets.Value("string"), "bbox": datasets.Sequence(datasets.Value("int32")),
        "bbox_list": datasets.Sequence(datasets.Sequence(datasets.Value("int32"))),
        "content": datasets.Sequence(datasets.Value("string"))})
    return media.snapshot(root, "test", rows, features, shards=2, media={"image": "image"})


def test_snapshot_scores_equal_release(tmp_path: Path, media, run_replay) -> None:
    release = make_dataset(tmp_path / "v2", media)
    snap = make_snapshot(tmp_path / "snap", release, media)
    samples = list(OCRBenchV2(data_dir=str(snap)).samples())
    assert [s.id for s in samples] == [str(i) for i in range(16)]
    errors = {s.id: s.error for s in samples if s.error}
    assert set(errors) == {"8", "9", "13", "14"}
    assert "image cell is empty" in errors["14"] and "not supported" in errors["9"]
    assert samples[15].target == [100.0, 100.0, 300.0, 300.0] and samples[5].metadata["eval"] == "regression"
    assert samples[0].metadata["eval"] == ""  # "None" in the snapshot
    rel = run_replay("ocrbench_v2", release, PREDICTIONS)
    snp = run_replay("ocrbench_v2", snap, PREDICTIONS)
    assert snp["metrics"] == rel["metrics"] and snp["metrics"]["en/mathematical_calculation"] == pytest.approx(0.8 / 3)
    scored = {g: {k: v for k, v in m.items() if k not in ("n", "n_errors")}
              for g, m in rel["breakdown"]["category"].items() if m["n"] > m["n_errors"]}
    assert {g: {k: v for k, v in snp["breakdown"]["category"][g].items() if k not in ("n", "n_errors")}
            for g in scored} == scored

    # An unsupported row fails as unsupported, and its image is never written to the cache.
    png = media.png(tmp_path / "t.png", color=(1, 2, 3))
    only = media.snapshot(tmp_path / "only", "test", {
        "id": [0], "dataset_name": ["s"], "question": ["q"], "type": ["text spotting en"], "answers": [["a"]],
        "image": [media.cell(png)]}, media={"image": "image"})
    cache = tmp_path / "cache" / "ocrbench_v2" / "media"
    before = set(cache.rglob("*.*"))
    assert "not supported" in str(next(iter(OCRBenchV2(data_dir=str(only)).samples())).error)
    assert set(cache.rglob("*.*")) == before


def test_snapshot_from_hub_cache_and_schema_error(tmp_path: Path, media, run_replay) -> None:
    release = make_dataset(tmp_path / "v2", media)
    make_snapshot(media.hub(tmp_path, "ling99/OCRBench_v2"), release, media)
    entry = run_replay("ocrbench_v2", None, PREDICTIONS, hf="ling99/OCRBench_v2")
    assert entry["metrics"]["score_cn"] == 1.0 and entry["n_samples"] == 16
    bad = media.snapshot(tmp_path / "bad", "test", {"id": [1], "question": ["q"], "type": ["x"]})
    with pytest.raises(DataLayoutError, match=r"lacks column\(s\) dataset_name, answers, image \(expected the ling99/OCRBench_v2"):
        list(OCRBenchV2(data_dir=str(bad)).samples())


def test_every_official_task_is_found_by_name_in_a_fresh_interpreter() -> None:
    """The CLI finds tasks through the lazy catalog; a wrong module path there hides a task."""
    import os
    import subprocess
    import sys

    names = ["ocrbench", "ocrbench_v2", "videomme", "longvideobench", "screenspot", "screenspot_v2",
             "screenspot_pro", "mmau"]
    code = ("from evalsuite.registry import TASKS; import evalsuite; "
            f"print(' '.join(TASKS.get(n).name for n in {names!r}))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=dict(os.environ), timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == names
