"""OCRBench from its original local folder or its Hugging Face snapshot, scored as the official
script scores it.

Layout (as released): ``DIR/OCRBench.json`` (or ``DIR/OCRBench/OCRBench.json``) and
``DIR/OCRBench_Images/<image_path>``. Each record has ``dataset_name``, ``id``, ``image_path``,
``question``, ``answers`` (a string or a list) and ``type`` (one of the ten question types).

Snapshot (``echo840/OCRBench``, the one lmms-eval loads; ``data_dir`` = its download folder or
``hf=echo840/OCRBench``): split ``test``, columns ``dataset`` (the release's ``dataset_name``),
``question``, ``question_type`` (``type``), ``answer`` (list of strings; a bare release answer
becomes a one-item list, which scores the same) and ``image`` (encoded bytes), in the release's
order. It has no id column, so sample ids are ``test:<row>``; ``cluster`` is the image's hash.

Rule reproduced: Yuliang-Liu/MultimodalOCR ``OCRBench/example.py`` (the evaluation loop shared by the
``scripts/*.py`` runners): a sample is right when an answer is a substring of the prediction after
lower-casing, stripping and turning newlines into spaces; for ``HME100k`` the comparison is
case-sensitive with every space removed (:func:`evalsuite.tasks.scoring.ocrbench_match`). The official score
is the number right out of 1000 (a sample without prediction simply is not right); here
``score_official`` is that count and ``accuracy`` the count over all samples, errored ones included.

Sample ids (release layout) are ``<dataset_name>:<id>``, since ``id`` repeats across the 25 source
datasets.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Iterator

from evalsuite.registry import TASKS
from evalsuite.task import DataLayoutError, Task
from evalsuite.types import ContentPart, Sample, SampleResult, user
from evalsuite.tasks.official import _hf
from evalsuite.tasks.official._common import IMAGE_ARGS, bad_sample, ok, read_json, unique_ids
from evalsuite.tasks.scoring import ocrbench_match

EXPECTED = "OCRBench.json and OCRBench_Images/"
HF_REPO, HF_SPLIT = "echo840/OCRBench", "test"
HF_COLUMNS = ("dataset", "question", "question_type", "answer", "image")
RECOGNITION_TYPES = (
    "Regular Text Recognition", "Irregular Text Recognition", "Artistic Text Recognition",
    "Handwriting Recognition", "Digit String Recognition", "Non-Semantic Text Recognition",
)


@TASKS.register("ocrbench")
class OCRBench(Task):
    """OCRBench (release folder or HF snapshot), official substring scoring out of 1000"""

    name = "ocrbench"
    version = "1"
    default_args = {"data_dir": "", "hf": "", **IMAGE_ARGS}
    media_keys = tuple(IMAGE_ARGS)
    breakdown_keys = ("category", "dataset")
    errors_count_as_wrong = True
    max_tokens = 100  # the official runners generate up to 100 new tokens

    def samples(self) -> Iterator[Sample]:
        root = _hf.locate(self.name, self.args, EXPECTED, HF_REPO)
        index = next((p for p in (root / "OCRBench.json", root / "OCRBench" / "OCRBench.json") if p.is_file()), None)
        if index is None:
            shards = _hf.split_shards(root, HF_SPLIT)
            if not shards:
                raise _hf.neither(self.name, root, EXPECTED, HF_REPO, HF_SPLIT)
            yield from self._snapshot_samples(root, shards)
            return
        records = read_json(index, self.name, "a JSON list of OCRBench records (" + EXPECTED + ")")
        images = root / "OCRBench_Images"
        if not isinstance(records, list):
            raise DataLayoutError(f"{self.name}: {index} must hold a JSON list of records")
        if not images.is_dir():
            raise DataLayoutError(f"{self.name}: {images} not found (expected {EXPECTED})")
        raw_ids = [f"{r.get('dataset_name')}:{r.get('id')}" if isinstance(r, dict) else f"record:{i}"
                   for i, r in enumerate(records)]
        for sid, rec in zip(unique_ids(raw_ids), records):
            yield self._sample(sid, rec, images)

    def _snapshot_samples(self, root: Path, shards: list[Path]) -> Iterator[Sample]:
        _hf.check_columns(self.name, shards, HF_COLUMNS, HF_REPO)
        for i, row in enumerate(_hf.read_rows(self.name, shards, HF_SPLIT)):
            sid = _hf.row_id(HF_SPLIT, i)
            meta = {"category": _hf.text(row["question_type"]), "dataset": _hf.text(row["dataset"])}
            answers = row["answer"]
            if not isinstance(answers, (str, list)) or not answers:
                yield bad_sample(sid, f"malformed OCRBench row: answer must be a non-empty list, got {answers!r}", **meta)
                continue
            try:
                image = _hf.media_file(self.name, row["image"], "image", root)
            except ValueError as e:
                yield bad_sample(sid, f"OCRBench row {i}: {e}", **meta)
                continue
            meta["cluster"] = Path(image).stem[:16]
            yield Sample(id=sid, messages=[user(ContentPart.of_media("image", image), _hf.text(row["question"]))],
                         target=answers, metadata=meta)

    def _sample(self, sid: str, rec: Any, images: Path) -> Sample:
        try:
            dataset, qtype, question = str(rec["dataset_name"]), str(rec["type"]), str(rec["question"])
            answers = rec["answers"]
            image = images / str(rec["image_path"])
        except (KeyError, TypeError) as e:
            return bad_sample(sid, f"malformed OCRBench record (expected dataset_name, id, image_path, question, "
                                   f"answers, type): missing {e}")
        meta = {"category": qtype, "dataset": dataset, "cluster": str(rec["image_path"])}
        if not isinstance(answers, (str, list)) or not answers:
            return bad_sample(sid, f"malformed OCRBench record: answers must be a string or a list, got {answers!r}", **meta)
        if not image.is_file():
            return bad_sample(sid, f"image file not found: {image}", **meta)
        return Sample(id=sid, messages=[user(ContentPart.of_media("image", str(image)), question)],
                      target=answers, metadata=meta)

    def score(self, sample: Sample, prediction: str) -> dict[str, Any]:
        hme = sample.metadata.get("dataset") == "HME100k"
        return {"score": float(ocrbench_match(prediction, sample.target, hme=hme))}

    def aggregate(self, results: list[SampleResult]) -> dict[str, Any]:
        right = ok(results)
        correct = sum(r.score or 0.0 for r in right)
        recognition = sum(r.score or 0.0 for r in right if r.metadata.get("category") in RECOGNITION_TYPES)
        return {
            "accuracy": correct / len(results) if results else float("nan"),
            "score_official": int(correct),
            "score_text_recognition": int(recognition),
        }
