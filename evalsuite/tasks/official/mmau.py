"""MMAU test-mini from its original local folder.

Layout (as released in Sakshi113/MMAU): ``DIR/mmau-test-mini.json`` and the audio files at each
record's ``audio_id`` relative to ``DIR`` (``./test-mini-audios/<id>.wav``). Records have ``id``,
``question``, ``choices`` (option texts), ``answer`` (the right option's text), ``task``
(sound/music/speech), ``difficulty``, ``category`` and ``sub-category``.

Rule reproduced: MMAU ``evaluation.py`` ``string_match`` (:func:`evalsuite.tasks.scoring.mmau_match`): the
prediction's word tokens must hold every token of the answer and none of the wrong options' tokens
that the answer lacks. Accuracy is right / scored, split by task, difficulty and sub-category as the
script prints it. The official script never maps a bare letter ("B") to its option, so a letter
answer is wrong; ``map_letters=true`` asks for that mapping (and shows the options with letters).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Iterator

from evalsuite.registry import TASKS
from evalsuite.task import DataLayoutError, Task
from evalsuite.types import ContentPart, Sample, user
from evalsuite.tasks.official._common import AUDIO_ARGS, bad_sample, data_root, read_json, unique_ids
from evalsuite.tasks.scoring import mmau_match

_BARE_LETTER = re.compile(r"[\(\[]?([A-Z])[\)\]\.:]?")


@TASKS.register("mmau")
class MMAU(Task):
    """MMAU test-mini (local folder): audio multiple choice, official string match"""

    name = "mmau"
    version = "1"
    default_args = {"data_dir": "", "index": "mmau-test-mini.json", "map_letters": False, **AUDIO_ARGS}
    media_keys = tuple(AUDIO_ARGS)
    breakdown_keys = ("task", "difficulty", "sub_category")
    max_tokens = 64

    def samples(self) -> Iterator[Sample]:
        expected = f"{self.args['index']} and the audio files it names (test-mini-audios/)"
        root = data_root(self.name, self.args["data_dir"], expected)
        records = read_json(root / self.args["index"], self.name, expected)
        if not isinstance(records, list):
            raise DataLayoutError(f"{self.name}: {root / self.args['index']} must hold a JSON list of records")
        ids = unique_ids([str(r.get("id")) if isinstance(r, dict) and r.get("id") else f"record:{i}"
                          for i, r in enumerate(records)])
        for sid, rec in zip(ids, records):
            yield self._sample(sid, rec, root)

    def _sample(self, sid: str, rec: Any, root: Path) -> Sample:
        try:
            question, answer, audio = str(rec["question"]), str(rec["answer"]), str(rec["audio_id"])
            choices = [str(c) for c in rec["choices"]]
        except (KeyError, TypeError) as e:
            return bad_sample(sid, "malformed MMAU record (expected question, choices, answer, audio_id; the test "
                                   f"split's answers are not public): missing {e}")
        meta = {"task": str(rec.get("task", "")), "difficulty": str(rec.get("difficulty", "")),
                "sub_category": str(rec.get("sub-category", "")), "skill": str(rec.get("category", "")),
                "category": str(rec.get("sub-category", "")), "cluster": audio}
        path = root / audio
        if not path.is_file():
            return bad_sample(sid, f"audio file not found: {path}", **meta)
        if self.args["map_letters"]:
            options = "\n".join(f"{chr(65 + i)}. {c}" for i, c in enumerate(choices))
            ask = "Answer with the option's letter or text."
        else:
            options = "\n".join(f"- {c}" for c in choices)
            ask = "Answer with the text of the correct option."
        prompt = f"{question}\nOptions:\n{options}\n{ask}"
        return Sample(id=sid, messages=[user(ContentPart.of_media("audio", str(path)), prompt)],
                      target=answer, choices=choices, metadata=meta)

    def score(self, sample: Sample, prediction: str) -> dict[str, Any]:
        choices = sample.choices or []
        pred = str(prediction)
        m = _BARE_LETTER.fullmatch(pred.strip())
        if self.args["map_letters"] and m and ord(m.group(1)) - 65 < len(choices):
            pred = choices[ord(m.group(1)) - 65]
        return {"score": float(mmau_match(pred, choices, str(sample.target))), "matched_text": pred}
