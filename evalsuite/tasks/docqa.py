"""docqa: OCRBench-style questions on rendered documents (synthetic, runs anywhere).

Invoices, receipts, forms, tables and bar charts drawn by :mod:`evalsuite.tasks.gen.doc`, several questions per
document (one ``cluster``). Question types (``category``): text_recognition, key_information,
numeric, chart_value. The prompt is the bare question ("What is the total?"); answers are short
strings. Scored by OCRBench's rule (the answer contained in the prediction, case-insensitive) with
whole tokens (a short answer inside a longer token does not count: "2" in "12" or "2019", "RICE" in
"PRICE"; a number matches its equal, "3.0" for "3") as ``accuracy``, with ANLS alongside; broken
down by question type, aspect ratio class (tall / wide / page / square) and document kind.

Arguments: ``split`` (eval | train; seeds never overlap), ``n`` samples, ``difficulty`` (easy |
default | hard), ``image_mode`` (dynamic | tiling: the image preprocessing a backend that has both
uses — the dynamic-resolution vs tiling ablation).
"""

from __future__ import annotations

from itertools import islice
from typing import Any, Iterator

from evalsuite.registry import TASKS
from evalsuite.task import Task, TaskArgError
from evalsuite.types import ContentPart, Sample, SampleResult, user
from evalsuite.tasks.gen.cache import check_args, rendered
from evalsuite.tasks.gen.doc import DIFFICULTIES, build_document
from evalsuite.tasks.scoring import anls, ocrbench_match


@TASKS.register("docqa")
class DocQA(Task):
    """OCRBench-style document QA on rendered invoices, receipts, forms, tables, charts."""

    name = "docqa"
    version = "2"  # 2: answers read as whole tokens (numbers by value)
    default_args: dict[str, Any] = {"split": "eval", "n": 200, "difficulty": "default", "image_mode": "dynamic"}
    media_keys = ("image_mode",)
    breakdown_keys = ("category", "aspect", "kind")
    max_tokens = 16

    def __init__(self, **args: Any) -> None:
        super().__init__(**args)
        self.split, self.n, self.difficulty = check_args(self.name, self.args, DIFFICULTIES)
        if self.args["image_mode"] not in ("dynamic", "tiling"):
            raise TaskArgError(f"task argument docqa.image_mode expects dynamic or tiling, got {self.args['image_mode']!r}")

    def samples(self) -> Iterator[Sample]:
        return islice(self._questions(), self.n)

    def _questions(self) -> Iterator[Sample]:
        for cluster, doc in rendered(self.name, self.version, self.split, self.difficulty, build_document):
            if isinstance(doc, Sample):  # the document could not be built: its error sample
                yield doc
                continue
            meta = {
                "difficulty": self.difficulty, "cluster": cluster.name, "seed": cluster.seed,
                "kind": doc.kind, "aspect": doc.aspect, "width": doc.canvas.width, "height": doc.canvas.height,
                "font": doc.font, "text_form": doc.text_form,
            }
            for k, q in enumerate(doc.questions):
                yield Sample(
                    id=f"{self.split}-{cluster.name}-q{k}",
                    messages=[user(ContentPart.of_media("image", str(cluster.path)), q.prompt)],
                    target=q.answer,
                    metadata={"category": q.category, **meta},
                )

    chance_method = ("none: free-text answers (numbers, words, dates) scored by match; a guess practically "
                     "never matches, so the chance level is about 0 and none is declared")

    def chance(self, sample: Sample) -> float | None:
        return None

    def score(self, sample: Sample, prediction: str) -> dict[str, Any]:
        return {"score": float(ocrbench_match(prediction, sample.target, whole_tokens=True)),
                "anls": anls(prediction, sample.target)}

    def aggregate(self, results: list[SampleResult]) -> dict[str, float]:
        ok = [r for r in results if r.error is None and r.score is not None]
        if not ok:
            return {"accuracy": float("nan"), "anls": float("nan")}
        return {
            "accuracy": sum(float(r.score or 0.0) for r in ok) / len(ok),
            "anls": sum(float(r.scores.get("anls", 0.0)) for r in ok) / len(ok),
        }
