"""Edge cases of the shared scoring rules, taken from the official scripts they reproduce."""

from __future__ import annotations

import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from evalsuite.tasks.scoring import (
    anls, extract_choice, levenshtein, mmau_match, ocrbench_match, parse_point, point_in_box, videomme_extract,
)


# ---- OCRBench -----------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "pred, answers, hme, expected",
    [
        ("The word is CENTRE.", "centre", False, True),  # case-insensitive substring
        ("  Centre\n", ["centre"], False, True),
        ("centr", "CENTRE", False, False),
        ("line one\nline two", "one line", False, True),  # newline becomes a space
        ("no", ["yes", "NO"], False, True),  # any answer of a list
        ("y_2=-1", ["y _ { 2 } = - 1\n", "y_2 = - 1\n"], True, True),  # HME: spaces dropped
        ("Y_2=-1", ["y_2 = - 1"], True, False),  # HME: case-sensitive
        ("Y_2=-1", ["y_2 = - 1"], False, False),  # non-HME keeps spaces inside the answer
        ("x ^ { 2 }", "x^{2}", True, True),
        ("anything", "", False, True),  # an empty answer matches, as in the official loop
    ],
)
def test_ocrbench_match(pred: str, answers, hme: bool, expected: bool) -> None:
    assert ocrbench_match(pred, answers, hme=hme) is expected


# ---- ANLS ---------------------------------------------------------------------------------------
def test_levenshtein_known_values() -> None:
    assert levenshtein("kitten", "sitting") == 3
    assert levenshtein("", "abc") == 3
    assert levenshtein("abc", "abc") == 0


def test_anls_values() -> None:
    assert anls("Hello", "hello ") == 1.0  # lower-cased and stripped
    assert anls("helo", "hello") == pytest.approx(0.8)
    assert anls("abcd", "abef") == pytest.approx(0.5)  # NL == 0.5 is kept
    assert anls("abcde", "abxyz") == 0.0  # NL 0.6 > 0.5
    assert anls("abc", ["xyz", "abd"]) == pytest.approx(2 / 3)  # best answer
    assert anls("", "") == 1.0
    assert anls("abcd", "abef", threshold=0.4) == 0.0


@given(st.text(max_size=12), st.text(max_size=12))
@settings(max_examples=80, deadline=None)
def test_anls_bounds_and_symmetry(a: str, b: str) -> None:
    v = anls(a, b)
    assert 0.0 <= v <= 1.0
    assert v == pytest.approx(anls(b, a))
    assert levenshtein(a, b) <= max(len(a), len(b))


# ---- multiple choice ----------------------------------------------------------------------------
CHOICES = ["A. a blue car", "B. a red car", "C. green", "D. yellow"]


@pytest.mark.parametrize(
    "response, expected",
    [
        ("B", "B"),
        ("(C)", "C"),
        (" D. ", "D"),
        ("The answer is D.", "D"),
        ("Answer: (B) because A is wrong", "B"),  # explicit phrase beats other letters
        ("B. a red car", "B"),
        ("A dog crosses the road, so C", "C"),  # the article "A" is no choice
        ("I first thought (A) but it is (C)", "C"),  # last bracketed letter wins
        ("It is the red car.", "B"),  # option text
        ("It is green.", "C"),
        ("", None),
        ("I cannot tell from the video.", None),
        ("E", None),  # not among the letters
    ],
)
def test_extract_choice(response: str, expected: str | None) -> None:
    assert extract_choice(response, CHOICES) == expected


def test_extract_choice_letters_and_overlapping_texts() -> None:
    assert extract_choice("E", None, letters="ABCDE") == "E"
    # "car" is inside "red car": the longer match alone counts.
    assert extract_choice("it is clearly the red car", ["car", "red car"]) == "B"
    with pytest.raises(ValueError, match="letters"):
        extract_choice("A", None, letters="")


@given(st.sampled_from("ABCD"), st.sampled_from(["{}", "({})", "{}.", "Answer: {}", "The answer is {}.", "[{}]"]))
def test_extract_choice_finds_formatted_letter(letter: str, form: str) -> None:
    assert extract_choice(form.format(letter), CHOICES) == letter


@given(st.text(max_size=40))
@settings(max_examples=150, deadline=None)
def test_extract_choice_total(text: str) -> None:
    out = extract_choice(text, CHOICES)
    assert out is None or out in "ABCD"


# ---- Video-MME ----------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "response, expected",
    [
        ("C. Berries.", "C"),
        ("D.", "D"),
        ("The best answer is A", "A"),
        ("The correct answer is (B).", "B"),
        ("the answer is b", None),  # lower case is not a letter here
        # Official quirk: "Best answer:" is never removed (missing comma in the official list), so
        # the B of "Best" is the first capital A-D.
        ("Best answer: C", "B"),
        ("Best option: A", "B"),  # same quirk
        ("eleven words long but there is no capital letter among any of them", None),
        ("a man is in it", None),  # short, no capital A-D
        ("Dogs appear, answer C", "D"),  # first capital A-D anywhere wins
    ],
)
def test_videomme_extract(response: str, expected: str | None) -> None:
    assert videomme_extract(response) == expected


def test_videomme_long_response_with_letter_is_parsed() -> None:
    assert videomme_extract("one two three four five six seven eight nine ten eleven C") == "C"


@given(st.text(max_size=60))
@settings(max_examples=150, deadline=None)
def test_videomme_matches_rule(text: str) -> None:
    # The rule restated: after prefix removal, the first of A-D, unless none exists.
    s = text.strip()
    for p in ("The best answer is", "The correct answer is", "The answer is", "The answer",
              "The best option isThe correct option is", "Best answer:Best option:"):
        s = s.replace(p, "")
    m = re.search("[ABCD]", s)
    assert videomme_extract(text) == (m.group(0) if m else None)


# ---- MMAU ---------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "pred, choices, answer, expected",
    [
        ("Man", ["Man", "Woman", "Child", "Robot"], "Man", True),
        ("The speaker is a man.", ["Man", "Woman", "Child", "Robot"], "Man", True),
        ("a man or a woman", ["Man", "Woman", "Child", "Robot"], "Man", False),  # wrong-choice token
        ("A", ["Man", "Woman", "Child", "Robot"], "Man", False),  # a bare letter is not the text
        ("", ["Man", "Woman"], "Man", False),
        ("Slow tempo", ["Slow tempo", "Fast tempo"], "Slow tempo", True),  # shared "tempo" is allowed
        ("fast tempo", ["Slow tempo", "Fast tempo"], "Slow tempo", False),
        ("slow", ["Slow tempo", "Fast tempo"], "Slow tempo", False),  # all answer tokens needed
    ],
)
def test_mmau_match(pred: str, choices: list[str], answer: str, expected: bool) -> None:
    assert mmau_match(pred, choices, answer) is expected


# ---- GUI grounding ------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "text, coords, expected",
    [
        ("(500, 250)", "norm1000", (100.0, 25.0)),
        ("click [0.5,0.5]", "norm1", (100.0, 50.0)),
        ("(20, 30)", "pixels", (20.0, 30.0)),
        ("[100, 200, 300, 400]", "norm1000", (40.0, 30.0)),  # a box gives its centre
        ("x=250, y=500", "norm1000", (50.0, 50.0)),
        ("<point>250 500</point>", "norm1000", (50.0, 50.0)),  # first two numbers
        ("(1500, 20)", "norm1000", None),  # outside the scale
        ("(0.5, 0.5)", "pixels", (0.5, 0.5)),
        ("no idea", "norm1000", None),
        ("(-3, 4)", "pixels", None),
    ],
)
def test_parse_point(text: str, coords: str, expected) -> None:
    got = parse_point(text, coords, 200, 100)
    if expected is None:
        assert got is None
    else:
        assert got == pytest.approx(expected)


def test_parse_point_rejects_bad_arguments() -> None:
    with pytest.raises(ValueError, match="coords"):
        parse_point("(1, 2)", "percent", 10, 10)
    with pytest.raises(ValueError, match="size"):
        parse_point("(1, 2)", "pixels", 0, 10)


@given(st.integers(0, 1000), st.integers(0, 1000))
def test_parse_point_roundtrip_norm1000(x: int, y: int) -> None:
    assert parse_point(f"({x}, {y})", "norm1000", 1920, 1080) == pytest.approx((x * 1.92, y * 1.08))


def test_point_in_box_is_inclusive() -> None:
    box = [10, 20, 30, 40]
    assert point_in_box(10, 20, box) and point_in_box(30, 40, box) and point_in_box(15, 25, box)
    assert not point_in_box(9.99, 25, box) and not point_in_box(15, 40.01, box)
    with pytest.raises(ValueError, match="x1, y1, x2, y2"):
        point_in_box(1, 1, [1, 2, 3])
