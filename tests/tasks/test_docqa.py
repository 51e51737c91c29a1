"""docqa: rendered documents, their questions, the OCRBench/ANLS scoring and the argument checks."""

from __future__ import annotations

import math
from collections import Counter
from pathlib import Path

import pytest
from PIL import Image

from evalsuite.registry import TASKS
from evalsuite.task import TaskArgError
from evalsuite.types import Sample, SampleResult
from evalsuite.tasks.common import split_seed
from evalsuite.tasks.docqa import DocQA
from evalsuite.tasks.gen.canvas import text_size
from evalsuite.tasks.gen.doc import CATEGORIES, PROFILES, aspect_class, build_document


@pytest.fixture(autouse=True)
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("EVALSUITE_CACHE", str(tmp_path))
    return tmp_path


def test_registered_under_its_catalog_name() -> None:
    import evalsuite.catalog  # noqa: F401  (installs the lazy entries)

    assert TASKS.get("docqa") is DocQA


def test_samples_carry_image_question_answer_and_metadata() -> None:
    samples = list(DocQA(n=30).samples())
    assert len(samples) == 30
    assert len({s.id for s in samples}) == 30
    for s in samples:
        assert s.error is None
        (image,) = s.media
        assert Path(image.path).is_file()
        assert s.messages[0].text.endswith("?")  # the bare question
        md = s.metadata
        assert md["category"] in CATEGORIES and md["difficulty"] == "default"
        assert md["aspect"] in ("tall", "wide", "page", "square")
        with Image.open(image.path) as im:
            assert im.size == (md["width"], md["height"])
            assert max(im.size) <= 320
        # The answer is printed on the document, so it is in the text form too.
        assert isinstance(s.target, str) and s.target in md["text_form"]
    per_doc = Counter(s.cluster for s in samples)
    assert set(per_doc.values()) <= {PROFILES["default"].questions, 30 % PROFILES["default"].questions}
    assert len(per_doc) == math.ceil(30 / PROFILES["default"].questions)


def test_default_split_covers_every_question_type_and_aspect_class() -> None:
    samples = list(DocQA().samples())
    assert len(samples) == 200
    assert set(Counter(s.metadata["category"] for s in samples)) == set(CATEGORIES)
    assert set(Counter(s.metadata["aspect"] for s in samples)) == {"tall", "wide", "page", "square"}
    assert {s.metadata["kind"] for s in samples} == {"invoice", "receipt", "form", "table", "chart"}


@pytest.mark.parametrize("size, expected", [((80, 320), "tall"), ((320, 80), "wide"), ((192, 256), "page"),
                                            ((224, 224), "square"), ((256, 192), "square")])
def test_aspect_class(size: tuple[int, int], expected: str) -> None:
    assert aspect_class(*size) == expected


@pytest.mark.parametrize("difficulty", ["easy", "default", "hard"])
def test_all_text_is_drawn_inside_the_page(difficulty: str) -> None:
    for i in range(25):
        doc = build_document(split_seed("docqa", "eval", i), difficulty)
        for name, args, kwargs in doc.canvas.ops:
            if name == "text":
                (x, y), text = args
                w, h = text_size(kwargs["font"], text)
                assert 0 <= x and x + w <= doc.canvas.width and 0 <= y and y + h <= doc.canvas.height, (i, text)


def test_difficulty_levels_differ_in_size_and_question_count() -> None:
    easy = [build_document(split_seed("docqa", "eval", i), "easy") for i in range(12)]
    hard = [build_document(split_seed("docqa", "eval", i), "hard") for i in range(12)]
    assert all(len(d.questions) == 3 for d in easy)
    assert all(len(d.questions) == 5 for d in hard)
    assert all(max(d.canvas.size) <= 320 for d in easy)
    assert min(max(d.canvas.size) for d in hard) > 320
    assert all(d.font.startswith("bitmap") for d in easy)


def test_score_uses_ocrbench_rule_with_anls_alongside() -> None:
    task = DocQA(n=4)
    s = next(iter(task.samples()))
    exact = task.score(s, s.target)
    assert exact == {"score": 1.0, "anls": 1.0}
    wrapped = task.score(s, f"The answer is {s.target.lower()}.")
    assert wrapped["score"] == 1.0 and wrapped["anls"] == 0.0  # contained, but far in edit distance
    assert task.score(s, "zzzz") == {"score": 0.0, "anls": 0.0}


@pytest.mark.parametrize(
    "target, prediction, right",
    [
        ("2", "12", False), ("2", "2019", False), ("2", "2.50", False), ("77", "K-77", False),
        ("RICE", "PRICE", False), ("86", "555-8608", False), ("9", "6.93", False),
        ("2", "2.", True), ("12.50", "The total is $12.50.", True), ("JOHN GARCIA", "john garcia", True),
        ("john@cedar.com", "Email: john@cedar.com.", True), ("3", "3.0", True), ("12.50", "12.5", True),
    ],
)
def test_a_short_answer_inside_a_longer_token_is_not_right(target: str, prediction: str, right: bool) -> None:
    """Reading another field of the document ("2019" for the value of 2019, the PRICE header for the
    last item RICE) is wrong, though the answer is a substring of it."""
    s = Sample(id="x", messages=[], target=target)
    assert DocQA(n=1).score(s, prediction)["score"] == float(right)


def test_aggregate_reports_accuracy_and_anls_over_scored_results() -> None:
    def r(score: float | None, anls: float, error: str | None = None) -> SampleResult:
        return SampleResult(id="x", task="docqa", target="a", prediction="a", score=score, scores={"anls": anls},
                            error=error)

    metrics = DocQA().aggregate([r(1.0, 1.0), r(0.0, 0.5), r(1.0, 0.0), r(None, 0.0, error="boom")])
    assert metrics == pytest.approx({"accuracy": 2 / 3, "anls": 0.5})
    assert all(math.isnan(v) for v in DocQA().aggregate([]).values())


@pytest.mark.parametrize("args, expected", [({"difficulty": "medium"}, "easy, default, hard"),
                                            ({"split": "test"}, "train, eval"), ({"n": -1}, ">= 0"),
                                            ({"pages": 3}, "no argument 'pages'")])
def test_bad_arguments_end_in_one_clear_line(args: dict, expected: str) -> None:
    with pytest.raises(TaskArgError, match=expected) as e:
        DocQA(**args)
    assert "\n" not in str(e.value)


def test_string_arguments_are_coerced() -> None:
    assert len(list(DocQA(n="5").samples())) == 5


def test_a_document_that_fails_becomes_an_error_sample(monkeypatch: pytest.MonkeyPatch) -> None:
    import evalsuite.tasks.docqa as mod

    bad = split_seed("docqa", "eval", 1)
    real = mod.build_document

    def flaky(seed: int, difficulty: str):
        if seed == bad:
            raise RuntimeError("font exploded")
        return real(seed, difficulty)

    monkeypatch.setattr(mod, "build_document", flaky)
    samples = list(DocQA(n=12).samples())
    errors = [s for s in samples if s.error]
    assert len(errors) == 1 and "font exploded" in errors[0].error and errors[0].metadata["seed"] == bad
    assert len(samples) == 12 and sum(1 for s in samples if s.error is None) == 11
