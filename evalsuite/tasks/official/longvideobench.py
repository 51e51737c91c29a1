"""LongVideoBench from its Hugging Face snapshot, which is its release layout.

Layout (``longvideobench/LongVideoBench``, the repo lmms-eval loads: ``data_dir`` = its download
folder, or ``hf=longvideobench/LongVideoBench`` for the copy in the local Hugging Face cache):
``DIR/lvb_val.json`` (the ``index`` argument names another file, e.g. ``lvb_test_wo_gt.json``), the
videos ``videos/<video_path>`` and subtitles ``subtitles/<subtitle_path>``. The snapshot ships them
as ``videos.tar.part.*`` and ``subtitles.tar``; extracted, they are looked up in ``media_dir`` (the
folder of the video files) when given, else in ``DIR/videos/`` and in lmms-eval's extraction folder
``$HF_HOME/longvideobench/videos/``, subtitles in ``subtitles/`` beside that folder. Where the index
file is absent, the parquet shards of split ``validation`` are read instead with ``datasets`` (the
hub's parquet conversion of the same records). Records: ``id``, ``video_path``, ``question``,
options ``option0`` … ``option4`` (``"N/A"`` where a question has fewer) or a ``candidates`` list,
``correct_choice`` (the right option's index); read when present: ``video_id``, ``duration_group``,
``question_category``, ``level``, ``topic_category``, ``subtitle_path``. Sample ids are ``id``.

Rule reproduced: the parser of lmms-eval's ``longvideobench/utils.py`` (its docstring: "same as
original LongVideoBench paper"): drop the "The best answer is"-style prefixes, give up on a response of
more than 10 words without any of A–E, else take the first of A–E anywhere; accuracy is right / all.
Where that parser gives up it draws a random option; here such a sample scores the expectation of
that draw, 1/(number of options), so ``accuracy`` is the official number's expected value and is
reproducible. ``accuracy_strict`` counts them wrong; ``n_unparsed`` says how many. The prompt is the
official one (options as "A. …", then "Answer with the option's letter from the given choices
directly." and a newline, lmms-eval's post-prompt); ``subtitles=true`` puts before the question the
subtitle lines that lmms-eval's ``insert_subtitles_into_frames`` keeps for the frames evalsuite
samples (in the clip's time, a line kept when a sampled frame falls inside it; see ``_subtitles``).
lmms-eval interleaves those lines with the frames; a request here holds the video as one part, so
the lines come together, in order, before the question.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any, Iterator

from evalsuite.registry import TASKS
from evalsuite.task import DataLayoutError, Task
from evalsuite.types import ContentPart, Sample, SampleResult, user
from evalsuite.tasks.official import _hf
from evalsuite.tasks.official._common import VIDEO_ARGS, bad_sample, is_blank, ok, read_json, unique_ids

EXPECTED = "lvb_val.json and videos/ (subtitles/ for subtitles=true)"
HF_REPO, HF_SPLIT = "longvideobench/LongVideoBench", "validation"
HF_COLUMNS = ("id", "video_path", "question", "correct_choice")
_PREFIXES = ("The best answer is", "The correct answer is", "The answer is", "The answer",
             "The best option is", "The correct option is", "Best answer:", "Best option:")


def lvb_extract(response: str) -> str | None:
    """LongVideoBench's letter parser; ``None`` where it would fall back to a random choice."""
    s = str(response).strip()
    for prefix in _PREFIXES:
        s = s.replace(prefix, "")
    m = re.search(r"[ABCDE]", s)
    return m.group(0) if m else None  # (> 10 words and no letter) is a special case of "no letter"


def _clock(stamp: Any) -> float:
    """``h:m:s[.fff]`` in seconds (the subtitle files' start/end form)."""
    h, m, sec = str(stamp).split(":")
    return int(h) * 3600 + int(m) * 60 + float(sec)


def options_of(rec: dict[str, Any]) -> list[str]:
    """``candidates``, else ``option0..4`` up to the first ``"N/A"`` or missing one."""
    if isinstance(rec.get("candidates"), list):
        return [str(c) for c in rec["candidates"]]
    out: list[str] = []
    for i in range(5):
        opt = rec.get(f"option{i}")
        if opt == "N/A" or is_blank(opt):
            break
        out.append(str(opt))
    return out


@TASKS.register("longvideobench")
class LongVideoBench(Task):
    """LongVideoBench (snapshot folder or HF cache): long-video multiple choice, official letter parsing"""

    name = "longvideobench"
    version = "2"
    default_args = {"data_dir": "", "hf": "", "media_dir": "", "index": "lvb_val.json", "subtitles": False,
                    **VIDEO_ARGS}
    media_keys = tuple(VIDEO_ARGS)
    breakdown_keys = ("duration_group", "question_category", "level")
    max_tokens = 32

    def samples(self) -> Iterator[Sample]:
        root = _hf.locate(self.name, self.args, EXPECTED, HF_REPO)
        index = root / self.args["index"]
        records: list[Any]
        if index.is_file() or not _hf.split_shards(root, HF_SPLIT):
            records = read_json(index, self.name, EXPECTED)
            if not isinstance(records, list):
                raise DataLayoutError(f"{self.name}: {index} must hold a JSON list of records")
        else:
            shards = _hf.split_shards(root, HF_SPLIT)
            _hf.check_columns(self.name, shards, HF_COLUMNS, HF_REPO)
            records = list(_hf.read_rows(self.name, shards, HF_SPLIT))  # text only: the videos are files
        videos = self._video_dirs(root)
        ids = unique_ids([str(r["id"]) if isinstance(r, dict) and not is_blank(r.get("id")) else f"record:{i}"
                          for i, r in enumerate(records)])
        # per file, for this listing: a video's sampled times, a subtitle file's cues (questions share them)
        self._times: dict[Path, tuple[float, list[float]]] = {}
        self._cue_files: dict[Path, Any] = {}
        for sid, rec in zip(ids, records):
            yield self._sample(sid, rec, videos)

    def _video_dirs(self, root: Path) -> list[Path]:
        """Folders of the video files (``subtitles/`` sits beside each); a layout error when there is none."""
        if self.args["media_dir"]:
            given = Path(str(self.args["media_dir"])).expanduser()
            if not given.is_dir():
                raise DataLayoutError(f"{self.name}: media_dir not found: {given} (expected a folder of the videos)")
            return [given]
        found = [d for d in (root / "videos", _hf.hf_home() / "longvideobench" / "videos") if d.is_dir()]
        if not found:
            hint = (f"extract them with `cat {root}/videos.tar.part.* | tar -x -C {root}`"
                    if any(root.glob("videos.tar*")) else f"expected {EXPECTED}")
            raise DataLayoutError(f"{self.name}: {root / 'videos'} not found ({hint}, or pass "
                                  f"--task-arg {self.name}.media_dir=FOLDER)")
        return found

    def _sample(self, sid: str, rec: Any, videos: list[Path]) -> Sample:
        try:
            question, video_path = str(rec["question"]), str(rec["video_path"])
            options = options_of(rec)
            answer = int(rec["correct_choice"])
            if not 2 <= len(options) <= 5 or not 0 <= answer < len(options):
                raise ValueError(f"{len(options)} options, correct_choice={answer}")
        except (KeyError, TypeError, ValueError) as e:
            return bad_sample(sid, "malformed LongVideoBench record (expected question, video_path, option0-4 or "
                                   f"candidates, correct_choice): {type(e).__name__} {e}")
        meta = {k: _hf.text(rec.get(k)) for k in ("duration_group", "question_category", "level", "topic_category")}
        meta.update(category=meta["question_category"], cluster=str(rec.get("video_id") or video_path))
        video = next((d / video_path for d in videos if (d / video_path).is_file()), None)
        if video is None:
            return bad_sample(sid, f"video file not found: {videos[0] / video_path}", **meta)
        letters = [chr(65 + i) for i in range(len(options))]
        text = question + "\n" + "\n".join(f"{l}. {o}" for l, o in zip(letters, options))
        text += "\nAnswer with the option's letter from the given choices directly.\n"
        if self.args["subtitles"]:
            try:
                lines = self._subtitles(videos, video, rec)
            except (OSError, ValueError, KeyError, TypeError) as e:  # media.MediaError is a ValueError
                return bad_sample(sid, f"subtitles: {e}", **meta)
            text = "".join(line + "\n" for line in lines) + text
        return Sample(id=sid, messages=[user(ContentPart.of_media("video", str(video)), text)],
                      target=letters[answer], choices=options, metadata=meta)

    def _subtitles(self, videos: list[Path], video: Path, rec: dict[str, Any]) -> list[str]:
        """The subtitle lines shown while the sampled frames are, as lmms-eval's
        ``insert_subtitles_into_frames`` keeps them: each cue moved into the clip's time (less the
        record's ``starting_timestamp_for_subtitles``), widened to its midpoint ± 0.5 s when shorter
        than 1 s, kept when a sampled frame lies strictly inside it; in file order. The frames are
        those :func:`evalsuite.media.frame_times` samples with the task's ``fps`` and ``max_frames``.
        A record without ``subtitle_path``, or whose file is missing or unreadable, is an error (the
        official code fails on it)."""
        from evalsuite import media

        name = str(rec.get("subtitle_path") or "")
        if not name:
            raise ValueError("the record has no subtitle_path (subtitles=true needs one)")
        path = next((d.parent / "subtitles" / name for d in videos if (d.parent / "subtitles" / name).is_file()),
                    None)
        if path is None:
            raise ValueError(f"subtitle file not found: {videos[0].parent / 'subtitles' / name}")
        if path not in self._cue_files:
            self._cue_files[path] = json.loads(path.read_text(encoding="utf-8"))
        cues = self._cue_files[path]
        if not isinstance(cues, list):
            raise ValueError(f"{path} must hold a JSON list of cues")
        if video not in self._times:
            duration = media.probe_video(str(video)).duration_s
            self._times[video] = (duration, media.frame_times(duration, float(self.args["fps"]),
                                                              int(self.args["max_frames"])))
        duration, times = self._times[video]
        offset = float(rec.get("starting_timestamp_for_subtitles") or 0.0)
        clip = float(rec["duration"]) if isinstance(rec.get("duration"), (int, float)) else duration
        lines = []
        for cue in cues:
            if not isinstance(cue, dict):
                continue
            if "timestamp" in cue:
                start, end = cue["timestamp"]
                # as both official versions: an end that is not a float (open, or a JSON integer) becomes
                # the clip's duration, from which the offset is then taken too (such a cue is rarely kept)
                end = end if isinstance(end, float) else clip
                text = cue.get("text", "")
            else:
                start, end, text = _clock(cue["start"]), _clock(cue["end"]), cue.get("line", "")
            start, end = float(start) - offset, float(end) - offset
            if end - start < 1:
                mid = (start + end) / 2
                start, end = mid - 0.5, mid + 0.5
            if any(start < t < end for t in times):
                lines.append(str(text))
        return lines

    def score(self, sample: Sample, prediction: str) -> dict[str, Any]:
        parsed = lvb_extract(prediction)
        if parsed is None:  # the official parser draws one of the options at random: credit its expectation
            return {"score": 1.0 / len(sample.choices or [1]), "parsed": None, "unparsed": True}
        return {"score": float(parsed == sample.target), "parsed": parsed, "unparsed": False}

    def aggregate(self, results: list[SampleResult]) -> dict[str, Any]:
        scored = ok(results)
        if not scored:
            return {"accuracy": float("nan"), "accuracy_strict": float("nan"), "n_unparsed": 0}
        strict = [0.0 if r.scores.get("unparsed") else (r.score or 0.0) for r in scored]
        return {
            "accuracy": sum(r.score or 0.0 for r in scored) / len(scored),
            "accuracy_strict": sum(strict) / len(scored),
            "n_unparsed": sum(1 for r in scored if r.scores.get("unparsed")),
        }
