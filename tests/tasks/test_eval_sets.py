"""The default eval sets (200 samples per synthetic task, as committed baselines score them): every
target checked against what the media show. Known flaws are pinned by id, so a generator change that
adds one (or removes one, which also moves the committed figures) fails here.

- videoqa: every answer follows from the frames the default sampling sees; four "in which quarter"
  objects start on, or within half a unit after, a quarter boundary (each is seen only inside its
  answer's quarter, but the frame before it lies in the previous quarter).
- docqa: every answer is drawn as its own text, the item or label a question names is drawn once,
  and no text is drawn over other text; in four forms the descenders of an e-mail address touch the
  bottom of its field box.
- gui: every target is named once, lies on the screen and its canonical answer scores; three targets
  (browser icons of dark-theme web pages) are drawn in the light ink of the dark theme on the
  always-light browser bar, so they cannot be seen.
- audioqa: the answer of every beep-count, pitch-order, duration and loudness question is
  measurable in the waveform.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw

from evalsuite.media import frame_times
from evalsuite.tasks.audioqa import AudioQA, subtype_of
from evalsuite.tasks.common import split_seed
from evalsuite.tasks.docqa import DocQA
from evalsuite.tasks.gen.audio import SUBTYPES, build_clip, synthesize
from evalsuite.tasks.gen.doc import build_document
from evalsuite.tasks.gen.gui import build_screen
from evalsuite.tasks.gen.video import QUARTERS, RANKS, build_video
from evalsuite.tasks.gui import GUI
from evalsuite.tasks.videoqa import BUCKET_CYCLE, LETTERS, VideoQA, video_samples

N = 200


@pytest.fixture(autouse=True)
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("EVALSUITE_CACHE", str(tmp_path))
    return tmp_path


# ---- videoqa ------------------------------------------------------------------------------------
def _video_eval_set():
    """(spec, sample) of the first 200 eval samples, without encoding a video."""
    out, index = [], 0
    while len(out) < N:
        spec = build_video(split_seed("videoqa", "eval", index), BUCKET_CYCLE[index % len(BUCKET_CYCLE)])
        out += [(spec, s) for s in video_samples(spec, f"{index:05d}.mp4", "eval", index)][: N - len(out)]
        index += 1
    return out


def _seen_states(spec):
    """What the frames of the default sampling show: (times, states); frame i of the encoded file
    shows ``spec.state(i / fps)`` and sampling takes the first frame at or after half a frame early."""
    args = VideoQA.default_args
    stamps = []
    for t in frame_times(float(spec.duration_s), args["fps"], args["max_frames"]):
        i = min(max(0, int(np.ceil((t - 0.5 / spec.fps) * spec.fps - 1e-6))), spec.duration_s * spec.fps - 1)
        stamps.append(i / spec.fps)
    return stamps, [spec.state(t) for t in stamps]


def test_videoqa_answers_follow_from_the_sampled_frames():
    boundary = []
    for spec, s in _video_eval_set():
        stamps, states = _seen_states(spec)
        kind, what = s.metadata["subtype"].split("/")
        text, answer = s.messages[0].text.split("\n")[0], s.choices[LETTERS.index(s.target)]
        assert len(set(s.choices)) == 4, s.id
        by_name = {th.name: th for th in spec.things}

        def frames_with(pred):
            return [i for i, st in enumerate(states) if pred(st)]

        def showing(th):
            return lambda st: any(shape == th.shape and cell == th.cell for shape, cell, _ in st[0])

        if kind == "order":
            first = {o: frames_with(showing(by_name[o]))[0] for o in s.choices}
            assert len(set(first.values())) == 4, s.id
            assert sorted(first, key=first.get)[RANKS.index(what)] == answer, s.id
        elif s.metadata["subtype"] == "count/object":
            th = next(t for t in spec.things if t.role == "count")
            seen = set(frames_with(showing(th)))
            assert str(sum(1 for i in seen if i - 1 not in seen)) == answer, s.id
        elif s.metadata["subtype"] == "count/counter":
            values = [st[1] for st in states]
            assert values[0] == 0 and sum(b > a for a, b in zip(values, values[1:])) == values[-1] == int(answer), s.id
        elif s.metadata["subtype"] == "attribute/colour":
            shape = text.rsplit(" ", 1)[1].rstrip("?")
            assert {c for st in states for sh, _, c in st[0] if sh == shape} == {answer}, s.id
        elif s.metadata["subtype"] == "attribute/change":
            th = next(t for t in spec.things if t.role == "change")
            seq = [c for st in states for sh, _, c in st[0] if sh == th.shape]
            assert seq[-1] == answer != seq[0] and seq[0] in s.choices, s.id
        elif s.metadata["subtype"] == "attribute/caption":
            assert {st[2] for st in states if st[2]} == {answer}, s.id
        else:  # when: the quarter of the first frame showing the event, and of the frame before it
            if what == "object":
                th = by_name[text.split("did the ")[1].split(" appear")[0]]
                seen = frames_with(showing(th))
                assert len(seen) == seen[-1] - seen[0] + 1, s.id  # one appearance
                i = seen[0]
            elif what == "change":
                th = next(t for t in spec.things if t.role == "change")
                i = frames_with(lambda st: any(sh == th.shape and c == th.change[1] for sh, _, c in st[0]))[0]
            else:
                i = frames_with(lambda st: st[2] != "")[0]
            quarter = lambda t: min(3, int(t * 4 // spec.duration_s))  # noqa: E731
            assert QUARTERS[quarter(stamps[i])] == answer, s.id
            if i > 0 and quarter(stamps[i - 1]) != quarter(stamps[i]):
                boundary.append(s.id)
    assert boundary == ["eval-00007-07", "eval-00009-03", "eval-00015-03", "eval-00018-07"]


# ---- docqa --------------------------------------------------------------------------------------
def _ink(canvas, op) -> np.ndarray:
    name, args, kwargs = op
    image = Image.new("L", canvas.size, 0)
    kwargs = {k: (255 if k in ("fill", "outline") and v is not None else v) for k, v in kwargs.items()}
    getattr(ImageDraw.Draw(image), name)(*args, **kwargs)
    return np.asarray(image) > 0


def test_docqa_answers_are_drawn_and_their_keys_unique():
    touching = set()
    samples = list(DocQA(n=N).samples())
    for cluster in sorted({s.metadata["cluster"] for s in samples}):
        qs = [s for s in samples if s.metadata["cluster"] == cluster]
        doc = build_document(qs[0].metadata["seed"], "default")
        texts = [op for op in doc.canvas.ops if op[0] == "text"]
        drawn = [op[1][1] for op in texts]
        inks = {id(op): _ink(doc.canvas, op) for op in doc.canvas.ops}
        for a in texts:
            assert inks[id(a)].any(), (cluster, a[1])
            for b in doc.canvas.ops:
                if b is not a and (inks[id(a)] & inks[id(b)]).any():
                    assert b[0] == "rectangle" and doc.kind == "form", (cluster, a[1], b[0], b[1])
                    touching.add(cluster)
        for s in qs:
            token = re.compile(rf"(?:^|[ :]){re.escape(s.target)}$|^{re.escape(s.target)}(?: |$)")
            assert sum(bool(token.search(t)) for t in drawn) >= 1, s.id
            m = re.match(r"What is the (?:price|code|value) of (\w+)\?|How many (\w+)\?", s.messages[0].text)
            if m:
                key = m.group(1) or m.group(2)
                assert sum(t == key or t.startswith(key + " ") for t in drawn) == 1, s.id
    assert touching == {"default-00001", "default-00016", "default-00028", "default-00029"}


# ---- gui ----------------------------------------------------------------------------------------
def _luminance(rgb) -> float:
    c = [v / 255 for v in rgb]
    c = [v / 12.92 if v <= 0.03928 else ((v + 0.055) / 1.055) ** 2.4 for v in c]
    return 0.2126 * c[0] + 0.7152 * c[1] + 0.0722 * c[2]


def test_gui_targets_are_unique_on_screen_and_visible():
    task = GUI(n=N)
    invisible = []
    for s in task.samples():
        screen = build_screen(s.metadata["seed"], "default")
        w, h = screen.canvas.size
        name = s.messages[0].text.split("\n")[0][len("Click: "):]
        (e,) = [e for e in screen.elements if e.name == name]
        x1, y1, x2, y2 = e.box
        assert 0 <= x1 < x2 <= w and 0 <= y1 < y2 <= h and list(e.box) == s.target["box"], s.id
        assert task.score(s, s.target["answer"])["score"] == 1.0, s.id
        patch = np.asarray(Image.open(s.media[0].path).convert("RGB"))[y1:y2, x1:x2].reshape(-1, 3)
        colours, counts = np.unique(patch, axis=0, return_counts=True)
        bg = _luminance(colours[counts.argmax()])
        best = max((max(_luminance(c), bg) + 0.05) / (min(_luminance(c), bg) + 0.05)
                   for c, k in zip(colours, counts) if k >= 4)
        if best < 1.5:
            invisible.append(s.id)
    assert invisible == ["eval-default-00011-q3", "eval-default-00018-q1", "eval-default-00037-q3"]


# ---- audioqa ------------------------------------------------------------------------------------
def _bursts(x: np.ndarray, sr: int = 16000) -> list[tuple[int, int]]:
    hop = int(0.005 * sr)
    env = np.abs(x[: len(x) // hop * hop]).reshape(-1, hop).max(axis=1)
    on = np.concatenate([[0], (env > 0.1 * env.max()).astype(int), [0]])
    edges = np.flatnonzero(np.diff(on))
    return [(a * hop, b * hop) for a, b in zip(edges[::2], edges[1::2])]


def _hz(x: np.ndarray, sr: int = 16000) -> float:
    return float(np.argmax(np.abs(np.fft.rfft(x * np.hanning(len(x)), n=1 << 16))) * sr / (1 << 16))


def test_audioqa_sound_answers_are_in_the_waveform():
    checked = 0
    for i in range(N):
        sub = subtype_of(i)
        if sub not in SUBTYPES["sound"] or sub == "kind":
            continue
        spec = build_clip(split_seed(AudioQA.name, "eval", i), sub, "default")
        x = synthesize(spec)
        parts = _bursts(x)
        if sub == "count":
            assert str(len(parts)) == spec.answer, i
        elif sub == "pitch_order":
            d = np.sign(np.diff([_hz(x[a:b]) for a, b in parts])).tolist()
            k = d.index(-d[0]) if -d[0] in d else len(d)
            shape = ("rising" if d[0] > 0 else "falling") if k == len(d) else ("peaking" if d[0] > 0 else "dipping")
            assert all(v == d[0] for v in d[:k]) and all(v == -d[0] for v in d[k:]) and shape == spec.answer, i
        else:
            (a0, a1), (b0, b1) = parts
            if sub == "duration":
                ratio = (a1 - a0) / (b1 - b0)
            else:
                ratio = float(np.sqrt(np.mean(x[a0:a1] ** 2)) / np.sqrt(np.mean(x[b0:b1] ** 2)))
            assert ("first" if ratio > 1 else "second") == spec.answer and max(ratio, 1 / ratio) > 1.8, i
        checked += 1
    assert checked == 54
