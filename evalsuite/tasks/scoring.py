"""Scoring rules shared by the synthetic tasks and the official-benchmark adapters.

Each function reproduces one published rule (our own implementation of it; the rule, not the code,
is carried over):

- :func:`ocrbench_match` — OCRBench (Yuliang-Liu/MultimodalOCR, ``scripts/*.py`` evaluation loop):
  a sample is right when any answer, lower-cased and stripped with newlines turned into spaces, is a
  substring of the prediction treated the same way. For HME100k the rule is case-sensitive and drops
  every space and newline from both sides (``hme=True``).
- :func:`anls` — Average Normalized Levenshtein Similarity (DocVQA / ST-VQA): ``1 - NL`` for the
  best answer, where ``NL = lev(a, b) / max(len(a), len(b))`` on lower-cased stripped strings, and 0
  when ``NL`` exceeds ``threshold`` (kept at ``NL == threshold``, as OCRBench v2's ``ANLS >= 0.5``
  and lmms-eval's ``similarity >= 0.5`` do).
- :func:`extract_choice` — a letter extractor in the spirit of lmms-eval's MMMU-style
  ``parse_multi_choice_response`` (bracketed letters first, then bare letters, then option text, the
  last mention winning among several), made robust: explicit "answer is X" phrases win, the article
  "A" is not a choice, and an unparseable response gives ``None`` instead of a random letter.
- :func:`videomme_extract` — Video-MME's ``extract_characters_regex`` (``eval_your_results.py``),
  quirks included: its prefix list lacks two commas, so "The best option is" / "Best answer:" are
  only removed as the concatenated strings; a response of more than 10 words without any of A–D is
  unparsed; otherwise the first A–D character anywhere is the answer.
- :func:`mmau_match` — MMAU's ``string_match`` (``evaluation.py``): every word token of the answer
  must be in the prediction, and no token of a wrong choice (minus the answer's own tokens) may be.
- :func:`click_point` / :func:`click_in_box` — GUI grounding of the official adapters (ScreenSpot,
  SeeClick's ``screenspot_test.py``; ScreenSpot-Pro's ``eval_screenspot_pro.py``): SeeClick's answer
  parsing or a lenient one; a click is right when it lies inside the target box, borders included,
  compared in fractions of the image as the scripts compare. :func:`parse_point` /
  :func:`point_in_box`: the lenient reading in pixels (the built-in ``gui`` task).
"""

from __future__ import annotations

import re
import unicodedata
from typing import Sequence

__all__ = [
    "ocrbench_match", "levenshtein", "anls", "extract_choice", "videomme_extract", "mmau_match",
    "parse_point", "point_in_box", "COORDS", "click_point", "click_in_box", "PARSERS",
]


def _as_list(answers: str | Sequence[object]) -> list[str]:
    if isinstance(answers, str):
        return [answers]
    return [str(a) for a in answers]


# ---- OCRBench -----------------------------------------------------------------------------------
_WORD = r"[^\W_]"  # a letter or digit
_JOINER = r"[.,\-/@_]"  # joins what is on either side into one token: "2.50", "K-77", "a@b.com"
_PLAIN_NUMBER = r"\d+(?:,\d{3})*(?:\.\d+)?"  # 12, 1,000, 3.0
_NUMBER = re.compile(rf"(?<!{_WORD})(?<!{_WORD}{_JOINER}){_PLAIN_NUMBER}(?!{_WORD})(?!{_JOINER}{_WORD})")


def _number(text: str) -> float | None:
    """``"1,000"`` → 1000.0, ``"3.0"`` → 3.0; None unless ``text`` is one plain number."""
    if re.fullmatch(_PLAIN_NUMBER, text) is None:
        return None
    return float(text.replace(",", ""))


def _as_tokens(answer: str, prediction: str) -> bool:
    """Whether ``answer`` stands in ``prediction`` as whole tokens, not joined to a letter or digit
    directly or through a joiner: "2" is not in "12", "2.50" or "K-2", "rice" not in "price". A
    numeric answer also matches an equal number ("3" in "3.0", "1000" in "1,000")."""
    if re.search(rf"(?<!{_WORD})(?<!{_WORD}{_JOINER}){re.escape(answer)}(?!{_WORD})(?!{_JOINER}{_WORD})", prediction):
        return True
    value = _number(answer)
    return value is not None and any(_number(m.group()) == value for m in _NUMBER.finditer(prediction))


def ocrbench_match(prediction: str, answers: str | Sequence[str], *, hme: bool = False, whole_tokens: bool = False) -> bool:
    """OCRBench's substring rule; ``hme=True`` is HME100k's case-sensitive, space-free variant.

    ``whole_tokens=True`` (the synthetic ``docqa``, not the official rule) asks the answer to stand
    as whole tokens in the prediction, so a short answer is not found inside a longer wrong one
    ("2" inside "12" or "2019", "RICE" inside "PRICE"); a numeric answer also matches its equal."""
    pred = str(prediction)
    if hme:
        pred = pred.strip().replace("\n", " ").replace(" ", "")
    else:
        pred = pred.lower().strip().replace("\n", " ")
    for answer in _as_list(answers):
        if hme:
            a = answer.strip().replace("\n", " ").replace(" ", "")
        else:
            a = answer.lower().strip().replace("\n", " ")
        # an empty answer matches anything, as in the official loop
        if (_as_tokens(a, pred) if whole_tokens and a else a in pred):
            return True
    return False


# ---- ANLS ---------------------------------------------------------------------------------------
def levenshtein(a: str, b: str) -> int:
    """Edit distance (insertions, deletions, substitutions all cost 1)."""
    if len(a) < len(b):
        a, b = b, a
    prev = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        cur = [i]
        for j, cb in enumerate(b, 1):
            cur.append(min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (ca != cb)))
        prev = cur
    return prev[-1]


def anls(prediction: str, answers: str | Sequence[str], threshold: float = 0.5) -> float:
    """Best ``1 - NL`` over the answers, 0 where ``NL > threshold``; in [0, 1]."""
    pred = str(prediction).lower().strip()
    best = 0.0
    for answer in _as_list(answers):
        a = answer.lower().strip()
        length = max(len(a), len(pred))
        nl = 0.0 if length == 0 else levenshtein(pred, a) / length
        value = 1.0 - nl if nl <= threshold else 0.0
        best = max(best, value)
    return best


# ---- multiple choice ----------------------------------------------------------------------------
_OPTION_PREFIX = re.compile(r"^\s*[\(\[]?([A-Z])[\)\]\.:]\s+")
_EDGE_PUNCT = " \t\n\r,.!?;:'\"*`"


def _option_text(choice: str) -> str:
    """``'B. A red car.'`` → ``'red car'``: no letter prefix, leading article or edge punctuation."""
    text = _OPTION_PREFIX.sub("", choice, count=1).strip().strip(_EDGE_PUNCT)
    return re.sub(r"^(?:a|an|the)\s+", "", text, flags=re.IGNORECASE)


def extract_choice(response: str, choices: Sequence[str] | None = None, letters: str = "ABCD") -> str | None:
    """The chosen letter in ``response``, or ``None`` when no rule finds exactly one.

    Priority: (1) the whole response is a letter of either case, optionally bracketed or punctuated
    ("B", "(b)", "B."), while a response that is only different letters joined by "or", "and", ","
    or "/" ("B or C", "The answer is A or B", "Both A and B") names none and gives ``None``; (2) an
    explicit phrase — "answer is B", "Answer: (B)", "option B"; a lower-case letter only where the
    response ends with it ("answer is b") — the last one wins, and one hedged ("answer is B or C,
    since …") names none; (3) a leading letter with a delimiter ("B. a red car", "(B) ..."), whatever
    the explanation after it says; then "B is correct", "C is the best answer" (the last one); a
    response that hedges between two letters with "or" or "/" ("I think B or C.") and names none of
    the above gives ``None`` unless words before the pair rule them out ("rather than A or B");
    (4) bracketed letters "(B)",
    the last one wins; (5) standalone capital letters, not counting the article "A" before a
    lower-case word, the last one wins; (6) option text from ``choices`` found in the response as
    whole words (the longest matching texts only, the last one wins). Full-width forms read as
    their ASCII letters (NFKC).
    """
    if not letters:
        raise ValueError("letters must name at least one choice letter, like 'ABCD'")
    text = unicodedata.normalize("NFKC", str(response or "")).strip()  # full-width "Ｂ" is "B"
    if not text:
        return None
    L = re.escape(letters)
    core = text.strip(_EDGE_PUNCT)
    m = re.fullmatch(rf"[\(\[]?([{L}])[\)\]]?", core, re.IGNORECASE)
    if m:
        return next(c for c in letters if c.lower() == m.group(1).lower())
    one = rf"[\(\[]?[{L}][\)\]\.]?"
    joined = rf"(?:\s*[,/&]\s*(?:(?i:or|and)\s+)?|\s+(?i:or|and)\s+)"
    lead = r"(?i:(?:the\s+)?(?:(?:correct|right|best)\s+)?(?:answer|option|choice)s?\s*(?:is|are|:)?\s*:?\s*)?(?i:(?:both|either)\s+)?"
    if re.fullmatch(rf"{lead}{one}(?:{joined}{one})+", core):
        if len(set(re.findall(rf"(?<![A-Za-z])[{L}](?![A-Za-z])", core))) > 1:
            return None  # "B or C", "A and B", "A, B": several letters name no single choice
    # "B or C", "B/C": a hedge between two letters, unless words before it rule them out ("not A or B")
    hedge = re.compile(rf"[\(\[]?([{L}])[\)\]]?(?:\s+or\s+|\s*/\s*)[\(\[]?([{L}])[\)\]]?(?![A-Za-z0-9])")

    def hedged(at: int) -> bool:
        """Whether a hedge starts at ``at``."""
        h = hedge.match(text, at)
        return bool(h) and h.group(1) != h.group(2)
    phrase = re.compile(
        rf"(?:answer|option|choice)\s*(?:is|would be|should be|:)?\s*:?\s*(?:option\s*)?[\(\[]?([{L}])(?![A-Za-z0-9])",
        re.IGNORECASE,
    )
    named = re.compile(
        rf"(?<![A-Za-z0-9])[\(\[]?([{L}])[\)\]]?\s+(?:is|would be|should be)\s+(?:the\s+)?(?:correct|right|best|answer|option|choice)\b",
        re.IGNORECASE,
    )
    # a lower-case letter counts only where nothing follows it: "answer is b", not "answer is a red car"
    hits = [h for h in phrase.finditer(text) if h.group(1).isupper() or not text[h.end():].strip(_EDGE_PUNCT + ")]")]
    if hits:  # "The answer is B or C, since ...": the phrase names no single choice
        return None if hedged(hits[-1].start(1) - (text[hits[-1].start(1) - 1] in "([")) else \
            next(c for c in letters if c.lower() == hits[-1].group(1).lower())
    m = re.match(rf"\s*[\(\[]?([{L}])(?:[\)\]\.:,]|\s*$)", text)
    if m:  # a leading letter: what follows explains it ("D. B is the correct colour of the square")
        return m.group(1)
    # "B is correct", "C is the best answer" where no phrase or leading letter answered: the last one
    named_hits = [h for h in named.finditer(text) if h.group(1).isupper()]
    if named_hits:
        return named_hits[-1].group(1)
    for h in hedge.finditer(text):  # "I think B or C.", "Probably C or B": no single choice
        if h.group(1) != h.group(2) and not re.search(r"\b(?:not|neither|nor|than|of|unlike)\s*$", text[:h.start()], re.I):
            return None
    bracketed = re.findall(rf"[\(\[]([{L}])[\)\]]", text)
    if bracketed:
        return bracketed[-1]
    bare = [
        h.group(1)
        for h in re.finditer(rf"(?<![A-Za-z0-9])([{L}])(?![A-Za-z0-9'])", text)
        if not (h.group(1) == "A" and re.match(r"\s+[a-z]", text[h.end():]))
    ]
    if bare:
        return bare[-1]
    if choices:
        low = text.lower()
        found: list[tuple[int, str, str]] = []
        for letter, choice in zip(letters, choices):
            opt = _option_text(choice).lower()
            # whole words only: "12" does not name the option "2", nor "covered" the option "red"
            hits = [h.start() for h in re.finditer(rf"(?<![^\W_]){re.escape(opt)}(?![^\W_])", low)] if opt else []
            if hits:
                found.append((hits[-1], letter, opt))
        found = [f for f in found if not any(f[2] != g[2] and f[2] in g[2] for g in found)]
        if found:
            return max(found)[1]
    return None


# ---- Video-MME ----------------------------------------------------------------------------------
# The official list (thanku-all/parse_answer ``eval_your_results.py``, where Video-MME's README points),
# in its order, with its two missing commas reproduced: Python joins the adjacent literals.
_VIDEOMME_PREFIXES = (
    "The best answer is",
    "The correct answer is",
    "The answer is",
    "The answer",
    "The best option is" "The correct option is",
    "Best answer:" "Best option:",
    "Answer:",
    "Option:",
    "The correct answer",
    "The correct option",
)


def videomme_extract(response: str) -> str | None:
    """Video-MME's official letter extraction; ``None`` where the official script gives ``""``."""
    s = str(response).strip()
    for prefix in _VIDEOMME_PREFIXES:
        s = s.replace(prefix, "")
    has_letter = re.search(r"[ABCD]", s)
    if len(s.split()) > 10 and not has_letter:
        return None
    return has_letter.group(0) if has_letter else None


# ---- MMAU ---------------------------------------------------------------------------------------
def _tokens(text: str) -> set[str]:
    return set(re.findall(r"\b\w+\b", str(text).lower()))


def mmau_match(prediction: str, choices: Sequence[str], answer: str) -> bool:
    """MMAU's official ``string_match``: all answer tokens present, no wrong-choice-only token."""
    pred = _tokens(prediction)
    if not pred:
        return False
    ans = _tokens(answer)
    wrong: set[str] = set()
    for choice in choices:
        toks = _tokens(choice)
        if toks != ans:
            wrong |= toks - ans
    return ans <= pred and pred.isdisjoint(wrong)


# ---- GUI grounding ------------------------------------------------------------------------------
COORDS = ("norm1000", "norm1", "pixels")
_NUM = r"[-+]?\d+(?:\.\d+)?"
_BRACKETED = re.compile(rf"[\(\[<{{]\s*({_NUM})\s*,\s*({_NUM})(?:\s*,\s*({_NUM})\s*,\s*({_NUM}))?\s*[\)\]>}}]")
_XY = re.compile(rf"\bx\s*[:=]\s*({_NUM}).*?\by\s*[:=]\s*({_NUM})", re.IGNORECASE | re.DOTALL)


def _lenient_xy(s: str) -> tuple[float, float] | None:
    m = _BRACKETED.search(s)
    if m:
        nums = [float(g) for g in m.groups() if g is not None]
        return (nums[0], nums[1]) if len(nums) == 2 else ((nums[0] + nums[2]) / 2, (nums[1] + nums[3]) / 2)
    if (m := _XY.search(s)) is not None:
        return float(m.group(1)), float(m.group(2))
    nums = re.findall(_NUM, s)
    return (float(nums[0]), float(nums[1])) if len(nums) >= 2 else None


def parse_point(text: str, coords: str, width: int, height: int) -> tuple[float, float] | None:
    """The point a response names, in pixels, or ``None`` when it names none inside the frame.

    Accepted forms, first found wins: a bracketed pair "(x, y)" / "[x, y]" (a bracketed box
    "[x1, y1, x2, y2]" gives its centre), "x=…, y=…", else the first two numbers of the text.
    ``coords`` says how the model's numbers are scaled: ``norm1000`` (0–1000), ``norm1`` (0–1) or
    ``pixels``. A point outside [0, scale] on either axis is treated as unparsed.
    """
    if coords not in COORDS:
        raise ValueError(f"coords must be one of {COORDS}, got {coords!r}")
    if width <= 0 or height <= 0:
        raise ValueError(f"image size must be positive, got {width}x{height}")
    xy = _lenient_xy(str(text))
    if xy is None:
        return None
    sx, sy = {"norm1000": (1000.0, 1000.0), "norm1": (1.0, 1.0), "pixels": (float(width), float(height))}[coords]
    x, y = xy
    if not (0.0 <= x <= sx and 0.0 <= y <= sy):
        return None
    return x / sx * width, y / sy * height


PARSERS = ("seeclick", "lenient")
_SEECLICK_NUM = re.compile(r"-?\d+\.?\d*")
_SEECLICK_BOX = re.compile(r"<box>\((\d+,\d+)\),\((\d+,\d+)\)</box>")
_TAGGED_BOX = re.compile(rf"<box>\s*\(\s*({_NUM})\s*,\s*({_NUM})\s*\)\s*,?\s*\(\s*({_NUM})\s*,\s*({_NUM})\s*\)\s*</box>")


def click_point(text: str, coords: str, parser: str, width: int, height: int) -> tuple[float, float, float, float] | None:
    """The click a response names as ``(x, y, sx, sy)``: its numbers and the scale they are in
    (1000 for 0–1000, 1 for 0–1, the image's width and height for pixels); ``None`` is "wrong format".

    ``seeclick`` is SeeClick's ``pred_2_point`` / ``extract_bbox`` (``pretrain/screenspot_test.py``):
    a response containing "box" must hold ``<box>(x1,y1),(x2,y2)</box>`` (integers, 0–1000), whose
    centre is the click whatever ``coords`` says; else the numbers ``-?\\d+\\.?\\d*`` of the text must
    be exactly two (the point) or four (a box: its centre), in the scale ``coords`` names; anything
    else is wrong format. No range check (a point off the screen is simply outside every box).
    ``lenient`` reads more answer styles: a tagged box ``<box>(x1, y1), (x2, y2)</box>`` (its centre),
    else :func:`parse_point`'s forms (first bracketed pair or box, ``x=…, y=…``, the first two
    numbers); a point outside [0, scale] is wrong format."""
    if parser not in PARSERS:
        raise ValueError(f"parser must be one of {PARSERS}, got {parser!r}")
    if coords not in COORDS:
        raise ValueError(f"coords must be one of {COORDS}, got {coords!r}")
    if width <= 0 or height <= 0:
        raise ValueError(f"image size must be positive, got {width}x{height}")
    sx, sy = {"norm1000": (1000.0, 1000.0), "norm1": (1.0, 1.0), "pixels": (float(width), float(height))}[coords]
    s = str(text)
    if parser == "seeclick":
        if "box" in s:
            found = _SEECLICK_BOX.findall(s)
            if not found:
                return None
            (x1, y1), (x2, y2) = ((int(v) for v in pair.split(",")) for pair in found[0])
            return (x1 + x2) / 2, (y1 + y2) / 2, 1000.0, 1000.0
        nums = [float(v) for v in _SEECLICK_NUM.findall(s)]
        if len(nums) == 2:
            return nums[0], nums[1], sx, sy
        if len(nums) == 4:
            return (nums[0] + nums[2]) / 2, (nums[1] + nums[3]) / 2, sx, sy
        return None
    m = _TAGGED_BOX.search(s)
    if m:
        x1, y1, x2, y2 = (float(v) for v in m.groups())
        x, y = (x1 + x2) / 2, (y1 + y2) / 2
    else:
        xy = _lenient_xy(s)
        if xy is None:
            return None
        x, y = xy
    if not (0.0 <= x <= sx and 0.0 <= y <= sy):
        return None
    return x, y, sx, sy


def click_in_box(point: tuple[float, float, float, float], box_xyxy: Sequence[float], width: int, height: int) -> bool:
    """Whether a :func:`click_point` lies in a pixel box ``[x1, y1, x2, y2]``, borders included,
    compared as the official scripts compare: in fractions of the image (the box divided by the image
    size, the point by its scale), or in pixels when the point is in pixels."""
    x, y, sx, sy = point
    if (sx, sy) == (float(width), float(height)):
        return point_in_box(x, y, box_xyxy)
    x1, y1, x2, y2 = box_xyxy
    return point_in_box(x / sx, y / sy, [x1 / width, y1 / height, x2 / width, y2 / height])


def point_in_box(x: float, y: float, box_xyxy: Sequence[float]) -> bool:
    """Whether (x, y) lies in the box ``[x1, y1, x2, y2]``, borders included."""
    if len(box_xyxy) != 4:
        raise ValueError(f"box must be [x1, y1, x2, y2], got {list(box_xyxy)!r}")
    x1, y1, x2, y2 = (float(v) for v in box_xyxy)
    return x1 <= x <= x2 and y1 <= y <= y2
