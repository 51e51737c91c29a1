"""Video-MME from the lmms-lab/Video-MME snapshot, scored as the official ``eval_your_results.py``
scores it.

Layout (the ``lmms-lab/Video-MME`` download, ``data_dir=DIR``, or ``hf=lmms-lab/Video-MME`` for the
copy in the local Hugging Face cache): ``DIR/videomme/test-*.parquet`` (``data/test-*.parquet`` is
read too) with one row per question, read with ``datasets``. Required columns: ``videoID``,
``question_id``, ``question``, ``options`` ("A. …" strings), ``answer``; read when present:
``duration``, ``domain``, ``sub_category``, ``task_type``. The videos come zipped in the snapshot
(``videos_chunked_*.zip``); unzipped they are ``data/<videoID>.mp4`` (``.MP4``/``.mkv`` too), looked
up in ``media_dir`` (the folder of the video files) when given, else in ``DIR/data/`` and in
lmms-eval's extraction folder ``$HF_HOME/videomme/data/``; optional subtitles are
``subtitle/<videoID>.srt`` beside that folder. Sample ids are ``question_id``, the benchmark's own.

Rule reproduced: ``eval_your_results.py`` of thanku-all/parse_answer (where Video-MME's README
points; it replaced BradyFU/Video-MME's ``evaluation/eval_your_results.py`` and adds the prefixes
"Answer:", "Option:", "The correct answer", "The correct option"): the letter comes from
``extract_characters_regex`` (:func:`evalsuite.tasks.scoring.videomme_extract`, quirks included); a response
it cannot parse is not counted at all — it leaves the denominator — so ``accuracy`` is right /
answered, overall and in every group (duration, domain, task type). ``accuracy_strict`` counts the
unparsed as wrong; ``n_unparsed`` says how many there were. The prompt is the README's; with
``subtitles=true`` the subtitles go before it, and only those "corresponding to the sampled video
frames" (the README's rule): the cues shown at the times the task's ``fps`` / ``max_frames`` sample
(``start <= t < end``, as lmms-eval selects them), one line each in cue order. lmms-eval's
``videomme`` task differs, so its numbers are not this one's: it always takes 32 frames
(``np.linspace`` over the frame indices) whatever the model sees, keeps only each cue's first
``<font>`` text, orders the lines through a ``set``, and words the prompt its own way.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Iterator

from evalsuite.media import MediaError
from evalsuite.registry import TASKS
from evalsuite.task import DataLayoutError, Task, TaskArgError
from evalsuite.types import ContentPart, Sample, SampleResult, user
from evalsuite.tasks.official import _hf
from evalsuite.tasks.official._common import VIDEO_ARGS, bad_sample, is_blank, ok, unique_ids
from evalsuite.tasks.scoring import videomme_extract

EXPECTED = "videomme/test-*.parquet and data/<videoID>.mp4 (optional subtitle/<videoID>.srt)"
DURATIONS = ("short", "medium", "long")  # the snapshot's duration column (Video-MME's three lengths)
HF_REPO, HF_SPLIT = "lmms-lab/Video-MME", "test"
HF_COLUMNS = ("videoID", "question_id", "question", "options", "answer")
INSTRUCTION = ("Select the best answer to the following multiple-choice question based on the video. "
               "Respond with only the letter (A, B, C, or D) of the correct option.")


@TASKS.register("videomme")
class VideoMME(Task):
    """Video-MME (lmms-lab snapshot folder or HF cache), official answer extraction"""

    name = "videomme"
    version = "2"
    default_args = {"data_dir": "", "hf": "", "media_dir": "", "subtitles": False, "duration": "", **VIDEO_ARGS}
    media_keys = tuple(VIDEO_ARGS)
    breakdown_keys = ("duration", "domain", "task_type")
    max_tokens = 16

    def samples(self) -> Iterator[Sample]:
        keep = {d.strip() for d in str(self.args["duration"]).split(",") if d.strip()}
        if keep - set(DURATIONS):  # a typo would select nothing and pass for an empty benchmark
            raise TaskArgError(f"task argument videomme.duration must be a comma-separated subset of "
                               f"{', '.join(DURATIONS)}, got {self.args['duration']!r}")
        root = _hf.locate(self.name, self.args, EXPECTED, HF_REPO)
        shards = _hf.split_shards(root, HF_SPLIT)
        if not shards:
            raise _hf.neither(self.name, root, EXPECTED, HF_REPO, HF_SPLIT)
        _hf.check_columns(self.name, shards, HF_COLUMNS, HF_REPO)
        rows = list(_hf.read_rows(self.name, shards, HF_SPLIT))  # text only: the videos are files
        media = self._media_dirs(root)
        rows = [r for r in rows if not keep or r.get("duration") in keep]
        ids = unique_ids([str(r.get("question_id")) if not is_blank(r.get("question_id")) else f"row:{i}"
                          for i, r in enumerate(rows)])
        self._cues: dict[Path, list[tuple[float, float, str]]] = {}  # per video, for this listing
        for sid, row in zip(ids, rows):
            yield self._sample(sid, row, media)

    def _media_dirs(self, root: Path) -> list[Path]:
        """Folders of the video files (``subtitle/`` sits beside each); a layout error when there is none."""
        if self.args["media_dir"]:
            given = Path(str(self.args["media_dir"])).expanduser()
            if not given.is_dir():
                raise DataLayoutError(f"{self.name}: media_dir not found: {given} (expected a folder of <videoID>.mp4)")
            return [given]
        found = [d for d in (root / "data", _hf.hf_home() / "videomme" / "data") if d.is_dir()]
        if not found:
            zipped = sorted(root.glob("videos_chunked_*.zip"))
            hint = (f"unzip {root}/videos_chunked_*.zip into {root} (they hold data/<videoID>.mp4)" if zipped
                    else "put the videos in DIR/data/")
            raise DataLayoutError(f"{self.name}: no video folder {root / 'data'} ({hint}, or pass "
                                  f"--task-arg {self.name}.media_dir=FOLDER)")
        return found

    def _sample(self, sid: str, row: dict[str, Any], media: list[Path]) -> Sample:
        try:
            vid, question, answer = str(row["videoID"]), str(row["question"]), str(row["answer"]).strip()
            options = [str(o) for o in row["options"]]
            if is_blank(row["videoID"]) or len(options) != 4 or answer not in ("A", "B", "C", "D"):
                raise ValueError(f"videoID={row['videoID']!r}, {len(options)} options, answer={answer!r}")
        except (KeyError, TypeError, ValueError) as e:
            return bad_sample(sid, "malformed Video-MME row (expected videoID, question, 4 options, answer A-D): "
                                   f"{type(e).__name__} {e}")
        meta = {k: _hf.text(row.get(k)) for k in ("duration", "domain", "sub_category", "task_type")}
        meta.update(category=meta["task_type"], cluster=vid)
        video = next((d / f"{vid}{ext}" for d in media for ext in (".mp4", ".MP4", ".mkv")
                      if (d / f"{vid}{ext}").is_file()), None)
        if video is None:
            return bad_sample(sid, f"video file not found: {media[0] / (vid + '.mp4')}", **meta)
        text = f"{INSTRUCTION}\n{question}\n" + "\n".join(options) + "\nThe best answer is:"
        if self.args["subtitles"]:
            srt = next((d.parent / "subtitle" / f"{vid}.srt" for d in media
                        if (d.parent / "subtitle" / f"{vid}.srt").is_file()), None)
            if srt is None:
                lines = "No subtitles available"
            else:
                try:
                    lines = "\n".join(text for _, _, text in self._frame_cues(video, srt))
                except (MediaError, ValueError) as e:  # an unreadable video; fps and max_frames both 0
                    return bad_sample(sid, str(e), **meta)
            text = f"This video's subtitles are listed below:\n{lines}\n{text}"
        return Sample(id=sid, messages=[user(ContentPart.of_media("video", str(video)), text)], target=answer,
                      choices=options, metadata=meta)

    def _frame_cues(self, video: Path, srt: Path) -> list[tuple[float, float, str]]:
        """The subtitle cues shown at the times the video's frames are sampled (the task's ``fps`` and
        ``max_frames``, as :func:`evalsuite.media.sample_frames` chooses them): a cue counts when
        ``start <= t < end`` for some sampled time t, as lmms-eval selects them per frame; in cue order."""
        from evalsuite import media

        if video not in self._cues:  # three questions per video: one probe and one parse each
            times = media.frame_times(media.probe_video(str(video)).duration_s, float(self.args["fps"]),
                                      int(self.args["max_frames"]))
            self._cues[video] = [c for c in srt_cues(srt) if any(c[0] <= t < c[1] for t in times)]
        return self._cues[video]

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


_SRT_TIME = re.compile(r"(?:(\d+):)?(\d{1,2}):(\d{1,2})(?:[,.](\d{1,3}))?")


def _srt_seconds(stamp: str) -> float | None:
    """``hh:mm:ss,mmm`` (also ``.mmm``, no milliseconds, or ``mm:ss,mmm`` without hours) in seconds."""
    m = _SRT_TIME.search(stamp)
    if m is None:
        return None
    h, mi, se, ms = m.groups()
    return int(h or 0) * 3600 + int(mi) * 60 + int(se) + (int(ms.ljust(3, "0")) / 1000 if ms else 0.0)


def srt_cues(path: Path) -> list[tuple[float, float, str]]:
    """The cues of an .srt file as (start s, end s, spoken line with markup removed); a cue whose
    timing line cannot be read is left out."""
    out = []
    for block in path.read_text(encoding="utf-8", errors="replace").replace("\r\n", "\n").split("\n\n"):
        lines = [ln for ln in block.strip().split("\n") if ln.strip()]
        if len(lines) >= 3 and "-->" in lines[1]:
            start, _, end = lines[1].partition("-->")
            t0, t1 = _srt_seconds(start), _srt_seconds(end)
            if t0 is not None and t1 is not None:
                out.append((t0, t1, re.sub(r"<[^>]+>", "", " ".join(lines[2:])).strip()))
    return out
