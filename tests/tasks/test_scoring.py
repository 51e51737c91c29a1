"""Edge cases of the shared scoring rules, taken from the official scripts they reproduce."""

from __future__ import annotations

import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from evalsuite.tasks.scoring import (
    anls, click_in_box, click_point, extract_choice, levenshtein, mmau_match, ocrbench_match, parse_point, point_in_box,
    videomme_extract,
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


def test_ocrbench_match_whole_tokens() -> None:
    assert ocrbench_match("2019", "2") and not ocrbench_match("2019", "2", whole_tokens=True)  # official: substring
    assert ocrbench_match("It is 1,000.", "1000", whole_tokens=True) and ocrbench_match("x", "", whole_tokens=True)


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


@pytest.mark.parametrize(
    "response, choices, expected",
    [
        ("12", ["2", "3", "4", "5"], None),  # "2" is inside "12", not named by it
        ("I saw it 3 times.", ["2", "3", "4", "5"], "B"),
        ("the shape was covered", ["red", "blue", "green", "white"], None),  # "red" inside "covered"
        ("It was red.", ["red", "blue", "green", "white"], "A"),
        ("the word BUSY", ["CAT", "BUS", "CUP", "ICE"], None),
        ("bus", ["CAT", "BUS", "CUP", "ICE"], "B"),
    ],
)
def test_extract_choice_reads_option_text_as_whole_words(response: str, choices: list[str], expected: str | None) -> None:
    assert extract_choice(response, choices) == expected


@pytest.mark.parametrize(
    "response", ["B or C", "A and C", "B, C", "B/C", "Either B or C", "Both A and B", "The answer is A or B.", "(A) or (B)"])
def test_extract_choice_leaves_a_hedge_between_letters_unparsed(response: str) -> None:
    assert extract_choice(response, CHOICES) is None
    assert extract_choice("B or B", CHOICES) == "B"  # one letter, said twice


@pytest.mark.parametrize(
    "response, expected",
    [
        ("b", "B"), ("(b)", "B"), ("c.", "C"), ("a", "A"),  # a lone letter in lower case
        ("The answer is b.", "B"),
        ("the answer is a blue car", "A"),  # "a" before a word is the article: the option text decides
        ("A is the answer.", "A"), ("A is correct", "A"), ("A is wrong, C is right.", "C"),
        ("Ｂ", "B"), ("（Ｃ）", "C"),  # full-width
    ],
)
def test_extract_choice_reads_lower_case_full_width_and_named_letters(response: str, expected: str) -> None:
    assert extract_choice(response, CHOICES) == expected


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
        # parse_answer's list (Video-MME's README) also removes "Answer:", "Option:", "The correct
        # answer", "The correct option": the A of "Answer:" is not read as the letter
        ("Answer: C", "C"),
        ("Answer: (D)", "D"),
        ("Answer:B", "B"),
        ("My Answer: C", "C"),
        ("Option: B", "B"),
        ("The correct answer: D", "D"),
    ],
)
def test_videomme_extract(response: str, expected: str | None) -> None:
    assert videomme_extract(response) == expected


def test_videomme_long_response_with_letter_is_parsed() -> None:
    assert videomme_extract("one two three four five six seven eight nine ten eleven C") == "C"


@given(st.lists(st.sampled_from(["Answer:", "Option:", "The correct answer", "The answer is", "Best answer:",
                                  " ", "A", "B", "(C)", "D.", "x", "\n"]), max_size=8).map("".join)
       | st.text(max_size=60))
@settings(max_examples=300, deadline=None)
def test_videomme_matches_rule(text: str) -> None:
    # The rule restated: after prefix removal, the first of A-D, unless none exists.
    s = text.strip()
    for p in ("The best answer is", "The correct answer is", "The answer is", "The answer",
              "The best option isThe correct option is", "Best answer:Best option:", "Answer:", "Option:",
              "The correct answer", "The correct option"):
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


# ---- GUI grounding of the official adapters: SeeClick's answer reading --------------------------
def _seeclick_official(response: str, box_xyxy_px, width: int, height: int) -> str:
    """SeeClick ``pretrain/screenspot_test.py`` (with ``process_utils.pred_2_point`` / ``extract_bbox``),
    transcribed: "correct", "wrong" or "wrong_format"; the model's numbers in 0-1."""
    bbox = [box_xyxy_px[0] / width, box_xyxy_px[1] / height, box_xyxy_px[2] / width, box_xyxy_px[3] / height]
    try:
        if "box" in response:
            found = re.findall(r"<box>\((\d+,\d+)\),\((\d+,\d+)\)</box>", response)
            pred = [(int(x.split(",")[0]), int(x.split(",")[1])) for x in sum(found, ())]
            click = [(pred[0][0] + pred[1][0]) / 2 / 1000, (pred[0][1] + pred[1][1]) / 2 / 1000]
        else:
            floats = [float(n) for n in re.findall(r"-?\d+\.?\d*", response)]
            if len(floats) == 2:
                click = floats
            elif len(floats) == 4:
                click = [(floats[0] + floats[2]) / 2, (floats[1] + floats[3]) / 2]
            else:
                raise UnboundLocalError("click_point")
        return "correct" if bbox[0] <= click[0] <= bbox[2] and bbox[1] <= click[1] <= bbox[3] else "wrong"
    except Exception:
        return "wrong_format"


def _ours(response: str, box, width: int, height: int, coords: str = "norm1", parser: str = "seeclick") -> str:
    point = click_point(response, coords, parser, width, height)
    if point is None:
        return "wrong_format"
    return "correct" if click_in_box(point, box, width, height) else "wrong"


BOX = [200.0, 100.0, 300.0, 200.0]  # ScreenSpot [x, y, w, h] = [200, 100, 100, 100] on 1000 x 500


@pytest.mark.parametrize(
    "response, seeclick, lenient",
    [
        ("(0.25, 0.3)", "correct", "correct"),
        ("Click (0.25, 0.3) on button 3", "wrong_format", "correct"),  # three numbers: SeeClick refuses
        ("0.25, 0.3, 0.9", "wrong_format", "correct"),
        ("the search box at (0.25, 0.3)", "wrong_format", "correct"),  # "box" without <box>…</box>
        ("<box>(100,100),(300,400)</box>", "correct", "wrong_format"),  # centre (200, 250) / 1000; lenient: norm1
        ("[0.2, 0.2, 0.3, 0.4]", "correct", "correct"),  # four numbers: the centre
        ("(-0.5, 0.3)", "wrong", "wrong_format"),  # SeeClick has no range check: outside the box
        ("(0.5, 0.3)", "wrong", "wrong"),
        ("", "wrong_format", "wrong_format"),
    ],
)
def test_seeclick_and_lenient_reading(response: str, seeclick: str, lenient: str) -> None:
    assert _seeclick_official(response, BOX, 1000, 500) == seeclick
    assert _ours(response, BOX, 1000, 500) == seeclick
    assert _ours(response, BOX, 1000, 500, parser="lenient") == lenient


def test_lenient_reads_a_tagged_box_as_its_centre() -> None:
    # a Qwen-VL style box in 0-1000: its centre (200, 250) -> (0.2, 0.5) of the image, not its first corner
    assert click_point("<box>(100, 100), (300, 400)</box>", "norm1000", "lenient", 1000, 500) == (200.0, 250.0, 1000.0, 1000.0)
    assert _ours("<box>(100,100),(300,400)</box>", BOX, 1000, 500, "norm1000", "lenient") == "correct"


def test_border_compared_in_fractions_as_the_official() -> None:
    # 0.1375 * 800 = 110.00000000000001 > 110 in pixels; in fractions 110 / 800 == 0.1375: on the border
    box = [1040.0, 87.0, 1068.0, 110.0]
    assert _seeclick_official("(0.8125, 0.1375)", box, 1280, 800) == "correct"
    assert _ours("(0.8125, 0.1375)", box, 1280, 800) == "correct"
    assert _ours("(1068, 110)", box, 1280, 800, coords="pixels") == "correct"  # pixels compare in pixels


@given(st.lists(st.sampled_from(["(", ")", ",", " ", "<box>", "</box>", "box", "0.25", "0.3", "-1", "7", "100,100",
                                 "(100,100),(300,400)", ".", "x", "12.5.3"]), max_size=10).map("".join),
       st.sampled_from([(1000, 500), (1280, 800), (7, 3)]))
@settings(max_examples=400, deadline=None)
def test_seeclick_reading_matches_the_official_script(response: str, size) -> None:
    w, h = size
    box = [0.2 * w, 0.1 * h, 0.5 * w, 0.9 * h]
    assert _ours(response, box, w, h) == _seeclick_official(response, box, w, h)


def test_extract_choice_keeps_the_answer_over_an_explanation_and_leaves_hedges_in_sentences_unparsed():
    """An explicit answer phrase or a leading letter is the answer, whatever the explanation after it
    says ('D. B is the correct colour of the square'); 'X is correct' answers where neither does. Two
    letters joined by 'or' or '/' are a hedge (no single choice) in an answer phrase ('The answer is B
    or C, since ...') or where nothing else answers ('I think B or C.'), unless ruled out ('not A or B')."""
    choices = ["yellow", "blue", "red", "white"]
    for text, want in [("D. B is the correct colour of the square, not the cross.", "D"),
                       ("Answer: D. (B is the correct answer for the square.)", "D"),
                       ("D. The cross was white. A is the right colour for the ring, not the cross.", "D"),
                       ("(D) white. B is correct for the frame.", "D"),
                       ("A is correct", "A"), ("B is the correct answer.", "B"),
                       ("I think B or C.", None), ("It is B or C, not sure.", None), ("Probably C or B", None),
                       ("The answer is B or C, since both appeared early", None), ("B/C", None),
                       ("The answer is C, not A or B.", "C"), ("Rather than A or B, it is D.", "D"),
                       ("B or B", "B"),
                       # an answer followed by options it rules out is the answer
                       ("The answer is B. A or C would be wrong because the car is blue.", "B"),
                       ("Answer: D. It cannot be A or B, since the ring is white.", "D"),
                       ("B. It isn't A or C.", "B"), ("Between B or C, the answer is C.", "C"),
                       ("Answer: C. The A/B split screen shows red.", "C"), ("(B) blue. Unlike A or C, it matches.", "B"),
                       # "X is correct" after a preamble, with other letters after it
                       ("Based on the video, C is correct. D is incorrect.", "C"),
                       ("After watching carefully, D is the best answer. Options A and B show other colours.", "D"),
                       ("From the frames shown, I believe B is correct, since C never appears.", "B"),
                       ("The answer is (B) or (C).", None)]:
        assert extract_choice(text, choices) == want, text
