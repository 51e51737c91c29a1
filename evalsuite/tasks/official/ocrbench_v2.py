"""OCRBench v2 from its original local folder.

Layout (as released): ``DIR/OCRBench_v2.json`` and the images under ``DIR`` at each record's
``image_path`` (``EN_part/…``, ``CN_part/…``). Records have ``dataset_name``, ``type`` (one of 31
question types), ``id``, ``image_path``, ``question``, ``answers`` and sometimes ``eval``.

Rules reproduced: ``OCRBench_v2/eval_scripts/eval.py`` per sample (see
:mod:`tasks.official._ocrbench_v2_rules`) and ``get_score.py`` for the totals: each type belongs to
one of 8 English or 5 Chinese categories; a category's score is the mean of its samples; the English
(Chinese) score is the mean of the English (Chinese) categories present. ``accuracy`` is the English
score when there are English samples, else the Chinese one; ``score_en``, ``score_cn`` and every
``en/<category>``, ``cn/<category>`` are reported too.

Supported: the VQA types (substring / ANLS >= 0.5, case-sensitive and multiple-choice variants, the
Chinese VQA rule), text counting, formula recognition (en, cn), text grounding (IoU) and the choice
questions of handwritten answer extraction. Types that need TEDS, spotting, KIE-F1, the JSON answer
of VQA-with-position or BLEU/METEOR are not
supported: their samples are errored with a message saying so, ``unsupported_types`` lists them and
``partial_categories`` names the categories whose score therefore covers only part of their samples.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any, Iterator

from evalsuite.registry import TASKS
from evalsuite.task import DataLayoutError, Task
from evalsuite.types import ContentPart, Sample, SampleResult, user
from evalsuite.tasks.official import _ocrbench_v2_rules as rules
from evalsuite.tasks.official._common import IMAGE_ARGS, bad_sample, data_root, ok, read_json, unique_ids

EXPECTED = "OCRBench_v2.json and the EN_part/ and CN_part/ image folders"
CATEGORIES: dict[str, tuple[str, ...]] = {
    "en/text_recognition": ("text recognition en", "fine-grained text recognition en", "full-page OCR en"),
    "en/text_detection": ("text grounding en", "VQA with position en"),
    "en/text_spotting": ("text spotting en",),
    "en/relationship_extraction": ("key information extraction en", "key information mapping en"),
    "en/element_parsing": ("document parsing en", "chart parsing en", "table parsing en", "formula recognition en"),
    "en/mathematical_calculation": ("math QA en", "text counting en"),
    "en/visual_text_understanding": ("document classification en", "cognition VQA en", "diagram QA en"),
    "en/knowledge_reasoning": ("reasoning VQA en", "science QA en", "APP agent en", "ASCII art classification en"),
    "cn/text_recognition": ("full-page OCR cn",),
    "cn/relationship_extraction": ("key information extraction cn", "handwritten answer extraction cn"),
    "cn/element_parsing": ("document parsing cn", "table parsing cn", "formula recognition cn"),
    "cn/visual_text_understanding": ("cognition VQA cn",),
    "cn/knowledge_reasoning": ("reasoning VQA cn", "text translation cn"),
}
GROUP_OF = {t: g for g, types in CATEGORIES.items() for t in types}
VQA_EN = set(CATEGORIES["en/knowledge_reasoning"]) | set(CATEGORIES["en/visual_text_understanding"]) | {
    "math QA en", "text recognition en"}
VQA_CN = {"cognition VQA cn", "reasoning VQA cn"}
SUPPORTED = VQA_EN | VQA_CN | {"text counting en", "formula recognition en", "formula recognition cn",
                               "handwritten answer extraction cn", "text grounding en"}
_NEEDS = {"parsing": "TEDS", "position": "JSON answer parsing and IoU", "spotting": "spotting F1",
          "key information": "KIE F1", "OCR": "BLEU/METEOR", "fine-grained": "BLEU/METEOR", "translation": "BLEU/METEOR"}


def unsupported_reason(qtype: str, question: str) -> str | None:
    """Why a sample cannot be scored here, or None when it can."""
    if qtype == "handwritten answer extraction cn" and "简答" in question:
        need = "BLEU/METEOR"
    elif qtype in SUPPORTED:
        return None
    elif qtype not in GROUP_OF:
        return f"unknown OCRBench v2 type {qtype!r}"
    else:
        need = next((v for k, v in _NEEDS.items() if k in qtype), "its own metric")
    return f"OCRBench v2 type {qtype!r} is not supported by this adapter (its official metric needs {need})"


@TASKS.register("ocrbench_v2")
class OCRBenchV2(Task):
    """OCRBench v2 (local folder): official per-type rules and category means"""

    name = "ocrbench_v2"
    version = "1"
    default_args = {"data_dir": "", **IMAGE_ARGS}
    media_keys = tuple(IMAGE_ARGS)
    breakdown_keys = ("group", "category")
    max_tokens = 256

    def samples(self) -> Iterator[Sample]:
        root = data_root(self.name, self.args["data_dir"], EXPECTED)
        index = root / "OCRBench_v2.json"
        records = read_json(index, self.name, EXPECTED)
        if not isinstance(records, list):
            raise DataLayoutError(f"{self.name}: {index} must hold a JSON list of records")
        raw = [str(r.get("id")) if isinstance(r, dict) else f"record:{i}" for i, r in enumerate(records)]
        if max(Counter(raw).values(), default=1) > 1:
            raw = [f"{r.get('dataset_name')}:{r.get('id')}" if isinstance(r, dict) else x for x, r in zip(raw, records)]
        for sid, rec in zip(unique_ids(raw), records):
            yield self._sample(sid, rec, root)

    def _sample(self, sid: str, rec: Any, root: Path) -> Sample:
        try:
            qtype, question, answers = str(rec["type"]), str(rec["question"]), rec["answers"]
            image = root / str(rec["image_path"])
        except (KeyError, TypeError) as e:
            return bad_sample(sid, "malformed OCRBench v2 record (expected type, image_path, question, answers): "
                                   f"missing {e}")
        meta = {"category": qtype, "group": GROUP_OF.get(qtype, "unknown"), "dataset": str(rec.get("dataset_name", "")),
                "eval": str(rec.get("eval", "")), "cluster": str(rec["image_path"])}
        reason = unsupported_reason(qtype, question)
        if reason:
            return bad_sample(sid, reason, unsupported=True, **meta)
        if not isinstance(answers, (str, list)) or not answers:
            return bad_sample(sid, f"malformed OCRBench v2 record: answers must be a non-empty list, got {answers!r}", **meta)
        if qtype == "text counting en" and meta["eval"] not in ("exact match", "regression"):
            return bad_sample(sid, f"malformed OCRBench v2 record: counting needs eval 'exact match' or 'regression', "
                                   f"got {meta['eval']!r}", **meta)
        if not image.is_file():
            return bad_sample(sid, f"image file not found: {image}", **meta)
        return Sample(id=sid, messages=[user(ContentPart.of_media("image", str(image)), question)],
                      target=answers, metadata=meta)

    def score(self, sample: Sample, prediction: str) -> dict[str, Any]:
        qtype, how, ans = sample.metadata["category"], sample.metadata.get("eval", ""), sample.target
        if qtype in VQA_EN | VQA_CN and how == "multiple choice":
            value = rules.multiple_choice(prediction, ans)
        elif qtype in VQA_EN | VQA_CN and how == "case sensitive":
            value = rules.vqa(prediction, ans, case_sensitive=True)
        elif qtype in VQA_EN:
            value = rules.vqa(prediction, ans)
        elif qtype in VQA_CN:
            value = rules.vqa_cn(prediction, ans)
        elif qtype == "text counting en":
            value = rules.counting(prediction, ans, how)
        elif qtype == "text grounding en":
            value = rules.text_grounding(prediction, ans)
        elif qtype in ("formula recognition en", "formula recognition cn"):
            value = rules.formula(prediction, ans, cn=qtype.endswith("cn"))
        else:  # handwritten answer extraction cn, choice questions
            value = rules.handwritten_choice(prediction, ans)
        return {"score": float(value)}

    def aggregate(self, results: list[SampleResult]) -> dict[str, Any]:
        per: dict[str, list[float]] = {}
        for r in ok(results):
            per.setdefault(GROUP_OF.get(str(r.metadata.get("category")), "unknown"), []).append(r.score or 0.0)
        means = {g: sum(v) / len(v) for g, v in sorted(per.items())}
        en = [v for g, v in means.items() if g.startswith("en/")]
        cn = [v for g, v in means.items() if g.startswith("cn/")]
        unsupported = [r for r in results if r.error and r.metadata.get("unsupported")]
        out: dict[str, Any] = {
            "score_en": sum(en) / len(en) if en else float("nan"),
            "score_cn": sum(cn) / len(cn) if cn else float("nan"),
        }
        out["accuracy"] = out["score_en"] if en else out["score_cn"]
        out.update(means)
        out["unsupported_types"] = sorted({str(r.metadata.get("category")) for r in unsupported})
        out["n_unsupported"] = len(unsupported)
        out["partial_categories"] = sorted({str(r.metadata.get("group")) for r in unsupported} & set(means))
        return out
