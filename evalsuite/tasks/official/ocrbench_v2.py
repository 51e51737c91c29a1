"""OCRBench v2 from its original local folder or its Hugging Face snapshot.

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

Snapshot: ``ling99/OCRBench_v2`` (what lmms-eval loads), split ``test``, built by lmms-eval's
``upload_ocrbench_v2.py``: columns ``id`` (int), ``dataset_name``, ``question``, ``type``,
``answers`` (list of strings: the upload turned numbers and dicts into text), ``image`` (JPEG
bytes), ``eval`` (the text ``"None"`` where a record had none), ``bbox``, ``bbox_list``, ``content``.
Required: ``id``, ``dataset_name``, ``question``, ``type``, ``answers``, ``image``; ``eval`` when
present. ``"None"`` in ``eval`` is read as no eval, a text-grounding answer's numeric texts as
numbers again. That upload iterated a bare-string ``answers`` into single characters; a snapshot
holding such a row scores what it holds. Sample ids are built from ``id`` as for the release; the
images of unsupported types are not written to the cache.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any, Iterator

from evalsuite.registry import TASKS
from evalsuite.task import DataLayoutError, Task
from evalsuite.types import ContentPart, Sample, SampleResult, user
from evalsuite.tasks.official import _ocrbench_v2_rules as rules
from evalsuite.tasks.official import _hf
from evalsuite.tasks.official._common import IMAGE_ARGS, bad_sample, ok, read_json, unique_ids

EXPECTED = "OCRBench_v2.json and the EN_part/ and CN_part/ image folders"
HF_REPO, HF_SPLIT = "ling99/OCRBench_v2", "test"
HF_COLUMNS = ("id", "dataset_name", "question", "type", "answers", "image")
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
    """OCRBench v2 (release folder or HF snapshot): official per-type rules and category means"""

    name = "ocrbench_v2"
    version = "2"
    default_args = {"data_dir": "", "hf": "", **IMAGE_ARGS}
    media_keys = tuple(IMAGE_ARGS)
    breakdown_keys = ("group", "category")
    max_tokens = 256

    def samples(self) -> Iterator[Sample]:
        root = _hf.locate(self.name, self.args, EXPECTED, HF_REPO)
        index = root / "OCRBench_v2.json"
        if not index.is_file():
            shards = _hf.split_shards(root, HF_SPLIT)
            if not shards:
                raise _hf.neither(self.name, root, EXPECTED, HF_REPO, HF_SPLIT)
            yield from self._snapshot_samples(root, shards)
            return
        records = read_json(index, self.name, EXPECTED)
        if not isinstance(records, list):
            raise DataLayoutError(f"{self.name}: {index} must hold a JSON list of records")
        for sid, rec in zip(_ids(records), records):
            yield self._sample(sid, rec, root)

    def _snapshot_samples(self, root: Path, shards: list[Path]) -> Iterator[Sample]:
        _hf.check_columns(self.name, shards, HF_COLUMNS, HF_REPO)
        keys = [{"id": i, "dataset_name": d} for i, d in zip(_hf.column_values(shards, "id"),
                                                             _hf.column_values(shards, "dataset_name"))]
        for i, (sid, row) in enumerate(zip(_ids(keys), _hf.read_rows(self.name, shards, HF_SPLIT))):
            how = _hf.text(row.get("eval"))
            answers = list(row["answers"]) if isinstance(row["answers"], list) else row["answers"]
            rec = {"type": _hf.text(row["type"]), "question": _hf.text(row["question"]), "answers": answers,
                   "dataset_name": _hf.text(row["dataset_name"]), "eval": "" if how == "None" else how}
            if rec["type"] == "text grounding en" and isinstance(answers, list):
                rec["answers"] = [_number(a) for a in answers]
            if unsupported_reason(rec["type"], rec["question"]):
                rec["image_path"] = ""  # errored as unsupported before its image is looked at
            else:
                try:
                    rec["image_path"] = _hf.media_file(self.name, row["image"], "image", root)
                    rec["cluster"] = Path(rec["image_path"]).stem[:16]
                except ValueError as e:
                    yield bad_sample(sid, f"{HF_REPO} row {i}: {e}", category=rec["type"],
                                     group=GROUP_OF.get(rec["type"], "unknown"), dataset=rec["dataset_name"])
                    continue
            yield self._sample(sid, rec, root)

    def _sample(self, sid: str, rec: Any, root: Path) -> Sample:  # an absolute image_path stays as it is
        try:
            qtype, question, answers = str(rec["type"]), str(rec["question"]), rec["answers"]
            image = root / str(rec["image_path"])
        except (KeyError, TypeError) as e:
            return bad_sample(sid, "malformed OCRBench v2 record (expected type, image_path, question, answers): "
                                   f"missing {e}")
        meta = {"category": qtype, "group": GROUP_OF.get(qtype, "unknown"), "dataset": str(rec.get("dataset_name", "")),
                "eval": str(rec.get("eval", "")), "cluster": str(rec.get("cluster") or rec["image_path"])}
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


def _ids(records: list[Any]) -> list[str]:
    """``id``; ``<dataset_name>:<id>`` for all when an id repeats; ``#n`` suffixes for what still does."""
    raw = [str(r.get("id")) if isinstance(r, dict) else f"record:{i}" for i, r in enumerate(records)]
    if max(Counter(raw).values(), default=1) > 1:
        raw = [f"{r.get('dataset_name')}:{r.get('id')}" if isinstance(r, dict) else x for x, r in zip(raw, records)]
    return unique_ids(raw)


def _number(value: Any) -> Any:
    """A numeric text as the number it was before the snapshot's upload made it text."""
    try:
        return float(value) if isinstance(value, str) else value
    except ValueError:
        return value
