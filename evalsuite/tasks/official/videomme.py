"""Video-MME from the lmms-lab local layout, scored as the official ``eval_your_results.py`` scores it.

Layout (the lmms-lab/Video-MME download): ``DIR/videomme/test-*.parquet`` with one row per question
(``videoID``, ``question_id``, ``duration``, ``domain``, ``sub_category``, ``task_type``,
``question``, ``options`` as "A. …" strings, ``answer``), the videos as ``DIR/data/<videoID>.mp4``
(``.MP4``/``.mkv`` too) and optional subtitles ``DIR/subtitle/<videoID>.srt``.

Rule reproduced: BradyFU/Video-MME ``evaluation/eval_your_results.py``: the letter comes from
``extract_characters_regex`` (:func:`evalsuite.tasks.scoring.videomme_extract`, quirks included); a response
it cannot parse is not counted at all — it leaves the denominator — so ``accuracy`` is right /
answered, overall and in every group (duration, domain, task type). ``accuracy_strict`` counts the
unparsed as wrong; ``n_unparsed`` says how many there were. The prompt is the README's; with
``subtitles=true`` the whole subtitle text is put before it (the README's subtitle setting).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Iterator

from evalsuite.registry import TASKS
from evalsuite.task import DataLayoutError, Task
from evalsuite.types import ContentPart, Sample, SampleResult, user
from evalsuite.tasks.official._common import VIDEO_ARGS, bad_sample, data_root, is_blank, ok, unique_ids
from evalsuite.tasks.scoring import videomme_extract

EXPECTED = "videomme/test-*.parquet and data/<videoID>.mp4 (optional subtitle/<videoID>.srt)"
INSTRUCTION = ("Select the best answer to the following multiple-choice question based on the video. "
               "Respond with only the letter (A, B, C, or D) of the correct option.")


@TASKS.register("videomme")
class VideoMME(Task):
    """Video-MME (lmms-lab layout, local folder), official answer extraction"""

    name = "videomme"
    version = "1"
    default_args = {"data_dir": "", "subtitles": False, "duration": "", **VIDEO_ARGS}
    media_keys = tuple(VIDEO_ARGS)
    breakdown_keys = ("duration", "domain", "task_type")
    max_tokens = 16

    def samples(self) -> Iterator[Sample]:
        root = data_root(self.name, self.args["data_dir"], EXPECTED)
        rows = read_parquet_rows(self.name, sorted((root / "videomme").glob("test-*.parquet")), root)
        keep = {d.strip() for d in str(self.args["duration"]).split(",") if d.strip()}
        rows = [r for r in rows if not keep or r.get("duration") in keep]
        ids = unique_ids([str(r.get("question_id")) if not is_blank(r.get("question_id")) else f"row:{i}"
                          for i, r in enumerate(rows)])
        for sid, row in zip(ids, rows):
            yield self._sample(sid, row, root)

    def _sample(self, sid: str, row: dict[str, Any], root: Path) -> Sample:
        try:
            vid, question, answer = str(row["videoID"]), str(row["question"]), str(row["answer"]).strip()
            options = [str(o) for o in row["options"]]
            if is_blank(row["videoID"]) or len(options) != 4 or answer not in ("A", "B", "C", "D"):
                raise ValueError(f"videoID={row['videoID']!r}, {len(options)} options, answer={answer!r}")
        except (KeyError, TypeError, ValueError) as e:
            return bad_sample(sid, "malformed Video-MME row (expected videoID, question, 4 options, answer A-D): "
                                   f"{type(e).__name__} {e}")
        meta = {k: str(row.get(k, "")) for k in ("duration", "domain", "sub_category", "task_type")}
        meta.update(category=meta["task_type"], cluster=vid)
        video = next((root / "data" / f"{vid}{ext}" for ext in (".mp4", ".MP4", ".mkv")
                      if (root / "data" / f"{vid}{ext}").is_file()), None)
        if video is None:
            return bad_sample(sid, f"video file not found: {root / 'data' / (vid + '.mp4')}", **meta)
        text = f"{INSTRUCTION}\n{question}\n" + "\n".join(options) + "\nThe best answer is:"
        if self.args["subtitles"]:
            srt = root / "subtitle" / f"{vid}.srt"
            lines = srt_text(srt) if srt.is_file() else "No subtitles available"
            text = f"This video's subtitles are listed below:\n{lines}\n{text}"
        return Sample(id=sid, messages=[user(ContentPart.of_media("video", str(video)), text)], target=answer,
                      choices=options, metadata=meta)

    def score(self, sample: Sample, prediction: str) -> dict[str, Any]:
        parsed = videomme_extract(prediction)
        return {"score": float(parsed == sample.target), "parsed": parsed, "answered": parsed is not None}

    def aggregate(self, results: list[SampleResult]) -> dict[str, Any]:
        scored = ok(results)
        answered = [r for r in scored if r.scores.get("answered")]
        correct = sum(r.score or 0.0 for r in answered)
        official = (correct / len(answered) if answered else 0.0) if scored else float("nan")
        return {
            "accuracy": official,
            "accuracy_strict": correct / len(scored) if scored else float("nan"),
            "n_unparsed": len(scored) - len(answered),
        }


def read_parquet_rows(task: str, files: list[Path], root: Path) -> list[dict[str, Any]]:
    """All rows of the parquet shards as dicts; no shard is a layout error."""
    if not files:
        raise DataLayoutError(f"{task}: no parquet file in {root / 'videomme'} (expected {EXPECTED})")
    try:
        import pandas as pd

        frames = [pd.read_parquet(f) for f in files]
    except ImportError as e:
        raise DataLayoutError(f"{task}: reading {files[0].name} needs pyarrow (pip install pyarrow): {e}") from None
    except Exception as e:  # pyarrow raises its own types for damaged files
        raise DataLayoutError(f"{task}: cannot read parquet ({e}); expected {EXPECTED}") from None
    rows: list[dict[str, Any]] = []
    for df in frames:
        rows.extend(df.to_dict(orient="records"))
    return rows


def srt_text(path: Path) -> str:
    """The spoken lines of an .srt file, markup removed, one per cue."""
    out = []
    for block in path.read_text(encoding="utf-8", errors="replace").replace("\r\n", "\n").split("\n\n"):
        lines = [ln for ln in block.strip().split("\n") if ln.strip()]
        if len(lines) >= 3 and "-->" in lines[1]:
            out.append(re.sub(r"<[^>]+>", "", " ".join(lines[2:])).strip())
    return "\n".join(out)
