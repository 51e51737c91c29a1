"""OCRBench v2's per-sample rules, written after the official ``eval_scripts/eval.py`` and
``eval_scripts/vqa_metric.py`` (Yuliang-Liu/MultimodalOCR, ``OCRBench_v2/``), quirks included:

- VQA (``vqa_evaluation``): per answer, lower-cased, stripped, newlines as spaces; an answer of fewer
  than 5 words must be a substring of the prediction (1 or 0); a longer one scores its ANLS
  ``1 - lev / max_len`` when that is at least 0.5; the best answer counts. The case-sensitive variant
  skips lower-casing, and when ``answers`` is a bare string it also falls back to ANLS for short
  answers that are no substring, while a bare-string answer of 5+ words scores 0. The Chinese variant removes spaces and splits answers on commas
  (fewer than 4 parts: substring); with a bare-string answer of 4+ parts it scores 0.
- Multiple choice: the prediction's letters (``str.isalpha``) joined must equal the answer.
- Counting: "exact match" is an answer substring of the raw prediction (the lower-cased one when
  ``answers`` is a bare string); "regression" reads the prediction's first integer ``n`` and scores
  ``1 - |n - a| / a`` when ``0 < n < 2a`` and that exceeds 0.5.
- Formula (en): answer and prediction without spaces or newlines, case-sensitive substring; (cn)
  the same after removing ``\\text{…}`` wrappers.
- Handwritten answer extraction (cn, choice questions): the answer's characters joined by any of
  ten separators ("", ".", ", ", "、", "和", …) found in the prediction.
- Text grounding (``IoUscore_metric.py``): the last bracketed box of four integers, all within
  0–1000, in the prediction; its IoU with the answer box (both truncated to integers); no box is 0.

Every rule returns a float in [0, 1].
"""

from __future__ import annotations

import re
from typing import Sequence

from evalsuite.tasks.scoring import levenshtein

Answers = str | Sequence[object]


def _norm(s: object, *, lower: bool = True, no_spaces: bool = False) -> str:
    out = str(s).strip().replace("\n", " ")
    out = out.lower() if lower else out
    return out.replace(" ", "") if no_spaces else out


def _anls_at_least_half(pred: str, answer: str) -> float:
    length = max(len(pred), len(answer))
    value = 1.0 - (0.0 if length == 0 else levenshtein(pred, answer) / length)
    return value if value >= 0.5 else 0.0


def vqa(predict: str, answers: Answers, *, case_sensitive: bool = False) -> float:
    pred = _norm(predict, lower=not case_sensitive)
    bare = isinstance(answers, str)
    score = 0.0
    for raw in [answers] if bare else answers:
        answer = _norm(raw, lower=not case_sensitive)
        if len(answer.split()) < 5:
            if answer in pred:
                score = 1.0
            elif bare and case_sensitive:  # the official bare-string branch nests ANLS here
                score = max(score, _anls_at_least_half(pred, answer))
        elif not (bare and case_sensitive):  # the official bare-string branch has no long-answer case: 0
            score = max(score, _anls_at_least_half(pred, answer))
    return score


def vqa_cn(predict: str, answers: Answers) -> float:
    pred = _norm(predict, no_spaces=True)
    bare = isinstance(answers, str)
    score = 0.0
    for raw in [answers] if bare else answers:
        answer = _norm(raw, no_spaces=True)
        if len(answer.split(",")) < 4:
            if answer in pred:
                score = 1.0
            elif bare:
                score = max(score, _anls_at_least_half(pred, answer))
        elif not bare:
            score = max(score, _anls_at_least_half(pred, answer))
    return score


def multiple_choice(predict: str, answers: Answers) -> float:
    answer = answers if isinstance(answers, str) else answers[0]
    return float("".join(c for c in str(predict) if c.isalpha()) == answer)


def counting(predict: str, answers: Answers, method: str) -> float:
    if method not in ("exact match", "regression"):
        raise ValueError(f"OCRBench v2 counting eval must be 'exact match' or 'regression', got {method!r}")
    processed = _norm(predict)
    bare = isinstance(answers, str)
    best = 0.0
    for raw in [answers] if bare else answers:
        answer = _norm(raw)
        if method == "exact match":
            score = float(answer in (processed if bare else str(predict)))
        else:
            m = re.search(r"\d+", processed)
            n = int(m.group()) if m else 0
            score = 0.0
            if n:  # the official `if predict_number:`: no number, or 0, scores 0
                a = int(answer)
                iou = 1.0 - abs(n - a) / a if 0 < n < 2 * a else 0.0
                score = iou if iou > 0.5 else 0.0
        best = max(best, score)
    return best


def formula(predict: str, answers: Answers, *, cn: bool = False) -> float:
    pred, items = str(predict), ([answers] if isinstance(answers, str) else list(answers))
    if cn:  # the official takes answers[0] (of a bare string: its first character)
        items = [_strip_text_tags(str(answers[0]))]
        pred = _strip_text_tags(pred)
    pred = _norm(pred, lower=False, no_spaces=True)
    return float(any(_norm(a, lower=False, no_spaces=True) in pred for a in items))


def _strip_text_tags(latex: str) -> str:
    return re.sub(r"\\text\{([^{}]*)\}", r"\1", latex)


_SEPARATORS = ("", ".", ". ", ",", ", ", "、", ";", "; ", " ", "和")


def handwritten_choice(predict: str, answers: Answers) -> float:
    answer = str(answers[0])  # as the official: of a bare string, its first character
    variants = [sep.join(answer) for sep in _SEPARATORS] if len(answer) > 1 else [answer]
    return float(any(v in str(predict) for v in variants))


_BOX = re.compile(r"[\(\[]\s*(\d+)\s*,\s*(\d+)\s*,\s*(\d+)\s*,\s*(\d+)\s*[\)\]]")


def text_grounding(predict: str, answers: Sequence[object]) -> float:
    boxes = [tuple(int(g) for g in m.groups()) for m in _BOX.finditer(str(predict))]
    boxes = [b for b in boxes if all(0 <= n <= 1000 for n in b)]
    return box_iou(boxes[-1], answers) if boxes else 0.0


def box_iou(box1: Sequence[object], box2: Sequence[object]) -> float:
    """IoU of two [x1, y1, x2, y2] boxes after int() truncation; 0 where a box is not four numbers."""
    try:
        a = [int(v) for v in box1]  # type: ignore[call-overload]
        b = [int(v) for v in box2]  # type: ignore[call-overload]
    except (TypeError, ValueError):
        return 0.0
    if len(a) < 4 or len(b) < 4:
        return 0.0
    inter = max(0, min(a[2], b[2]) - max(a[0], b[0])) * max(0, min(a[3], b[3]) - max(a[1], b[1]))
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union != 0 else 0.0
