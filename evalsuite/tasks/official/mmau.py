"""MMAU test-mini from its original local folder or its Hugging Face snapshot.

Layout (as released in Sakshi113/MMAU): ``DIR/mmau-test-mini.json`` and the audio files at each
record's ``audio_id`` relative to ``DIR`` (``./test-mini-audios/<id>.wav``). Records have ``id``,
``question``, ``choices`` (option texts), ``answer`` (the right option's text), ``task``
(sound/music/speech), ``difficulty``, ``category`` and ``sub-category``.

Rule reproduced: MMAU ``evaluation.py`` ``string_match`` (:func:`evalsuite.tasks.scoring.mmau_match`): the
prediction's word tokens must hold every token of the answer and none of the wrong options' tokens
that the answer lacks. Accuracy is right / scored, split by task, difficulty and sub-category as the
script prints it. The official script never maps a bare letter ("B") to its option, so a letter
answer is wrong; ``map_letters=true`` asks for that mapping (and shows the options with letters).
MMAU prescribes no prompt; this one lists the options and asks for the option's text. lmms-eval's
``mmau_test_mini`` asks for the letter ("A. …", "Answer with the option's letter from the given
choices directly.") and maps it back: its numbers are closer to ``map_letters=true`` than to this
default.

Snapshot: lmms-eval's ``mmau_test_mini`` loads ``lmms-lab-audio/mmau``; the published card of
``lmms-lab/mmau`` gives the schema both read (pass whichever you hold: ``hf=<repo>``): splits
``test_mini`` (the one with answers; the ``split`` argument picks another) and ``test``, shards
``data/<split>-*.parquet``, columns ``id``, ``audio`` (encoded bytes), ``question``, ``choices``
(the option texts as JSON text; a list is read too), ``answer``, ``task``, ``difficulty``,
``category``, ``sub-category`` (and ``dataset``, ``split``, unused). Required: ``id``, ``audio``,
``question``, ``choices``, ``answer``. Sample ids are the ``id`` column, as in the release.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any, Iterator

from evalsuite.registry import TASKS
from evalsuite.task import DataLayoutError, Task
from evalsuite.types import ContentPart, Sample, user
from evalsuite.tasks.official import _hf
from evalsuite.tasks.official._common import AUDIO_ARGS, bad_sample, is_blank, read_json, unique_ids
from evalsuite.tasks.scoring import mmau_match

_BARE_LETTER = re.compile(r"[\(\[]?([A-Z])[\)\]\.:]?")
HF_REPO = "lmms-lab-audio/mmau"
HF_COLUMNS = ("id", "audio", "question", "choices", "answer")


@TASKS.register("mmau")
class MMAU(Task):
    """MMAU test-mini (release folder or HF snapshot): audio multiple choice, official string match"""

    name = "mmau"
    version = "1"
    default_args = {"data_dir": "", "hf": "", "index": "mmau-test-mini.json", "split": "test_mini",
                    "map_letters": False, **AUDIO_ARGS}
    media_keys = tuple(AUDIO_ARGS)
    breakdown_keys = ("task", "difficulty", "sub_category")
    max_tokens = 64

    def samples(self) -> Iterator[Sample]:
        expected = f"{self.args['index']} and the audio files it names (test-mini-audios/)"
        root = _hf.locate(self.name, self.args, expected, HF_REPO)
        if not (root / self.args["index"]).is_file():
            split = str(self.args["split"])
            shards = _hf.split_shards(root, split)
            if not shards:
                raise _hf.neither(self.name, root, expected, HF_REPO, split)
            yield from self._snapshot_samples(root, shards, split)
            return
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
            if not isinstance(rec["choices"], list) or not rec["choices"]:  # "ab" would be two options a and b
                return bad_sample(sid, f"malformed MMAU record: choices must be a non-empty list of option texts, "
                                       f"got {rec['choices']!r:.80}")
            choices = [str(c) for c in rec["choices"]]
        except (KeyError, TypeError) as e:
            return bad_sample(sid, "malformed MMAU record (expected question, choices, answer, audio_id; the test "
                                   f"split's answers are not public): missing {e}")
        meta = {**_meta(rec), "cluster": audio}
        path = root / audio
        if not path.is_file():
            return bad_sample(sid, f"audio file not found: {path}", **meta)
        return self._build(sid, str(path), question, choices, answer, meta)

    def _snapshot_samples(self, root: Path, shards: list[Path], split: str) -> Iterator[Sample]:
        _hf.check_columns(self.name, shards, HF_COLUMNS, HF_REPO)
        ids = unique_ids([_hf.row_id(split, i) if is_blank(v) else str(v)
                          for i, v in enumerate(_hf.column_values(shards, "id"))])
        for i, (sid, row) in enumerate(zip(ids, _hf.read_rows(self.name, shards, split))):
            meta = _meta(row)
            try:
                choices = row["choices"]
                if isinstance(choices, str):
                    choices = json.loads(choices)
                if not isinstance(choices, list) or not choices:
                    raise ValueError(f"choices must be a non-empty list, got {row['choices']!r}")
                if is_blank(row["answer"]):
                    raise ValueError("answer is empty (the test split's answers are not public)")
                path = _hf.media_file(self.name, row["audio"], "audio", root)
            except ValueError as e:  # json.JSONDecodeError is a ValueError
                yield bad_sample(sid, f"malformed MMAU row {i}: {str(e).splitlines()[0]}", **meta)
                continue
            meta["cluster"] = _hf.text(row.get("audio_id")) or Path(path).stem[:16]
            yield self._build(sid, path, _hf.text(row["question"]), [str(c) for c in choices], _hf.text(row["answer"]),
                              meta)

    def _build(self, sid: str, path: str, question: str, choices: list[str], answer: str,
               meta: dict[str, Any]) -> Sample:
        if self.args["map_letters"]:
            options = "\n".join(f"{chr(65 + i)}. {c}" for i, c in enumerate(choices))
            ask = "Answer with the option's letter or text."
        else:
            options = "\n".join(f"- {c}" for c in choices)
            ask = "Answer with the text of the correct option."
        prompt = f"{question}\nOptions:\n{options}\n{ask}"
        return Sample(id=sid, messages=[user(ContentPart.of_media("audio", path), prompt)],
                      target=answer, choices=choices, metadata=meta)

    def score(self, sample: Sample, prediction: str) -> dict[str, Any]:
        choices = sample.choices or []
        pred = str(prediction)
        m = _BARE_LETTER.fullmatch(pred.strip())
        if self.args["map_letters"] and m and ord(m.group(1)) - 65 < len(choices):
            pred = choices[ord(m.group(1)) - 65]
        return {"score": float(mmau_match(pred, choices, str(sample.target))), "matched_text": pred}


def _meta(rec: dict[str, Any]) -> dict[str, Any]:
    """The breakdown fields of a record or row (the same names in both layouts)."""
    def get(key: str) -> str:
        value = rec.get(key)
        return "" if is_blank(value) else str(value)

    return {"task": get("task"), "difficulty": get("difficulty"), "sub_category": get("sub-category"),
            "skill": get("category"), "category": get("sub-category")}
