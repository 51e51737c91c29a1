"""videoqa: seeded sparse-event videos, visible events, split-disjoint seeds, cache reuse, scoring."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

import evalsuite.tasks.videoqa as videoqa
from evalsuite.media import probe_video, sample_frames
from evalsuite.task import TaskArgError
from evalsuite.types import SampleResult
from evalsuite.tasks.common import seed_split
from evalsuite.tasks.gen.video import BACKGROUND, BUCKETS, COLOURS, DIFFICULTIES, QUARTERS, build_video, render_video
from evalsuite.tasks.videoqa import VideoQA


@pytest.fixture(autouse=True)
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("EVALSUITE_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


def _sha(path) -> str:
    return hashlib.sha256(open(path, "rb").read()).hexdigest()


def test_same_seed_same_video_and_questions(tmp_path):
    a, b = build_video(11, "short", "hard"), build_video(11, "short", "hard")
    assert a.questions == b.questions and a.event_log() == b.event_log() and a.things == b.things
    assert build_video(12, "short", "hard").event_log() != a.event_log()
    render_video(a, tmp_path / "a.mp4")
    render_video(b, tmp_path / "b.mp4")
    assert _sha(tmp_path / "a.mp4") == _sha(tmp_path / "b.mp4")


def test_samples_are_deterministic_and_prefix_stable():
    first = [s.to_dict() for s in VideoQA(n=10).samples()]
    again = [s.to_dict() for s in VideoQA(n=10).samples()]
    assert first == again
    assert [s.to_dict() for s in VideoQA(n=4).samples()] == first[:4]


def test_train_and_eval_seeds_never_overlap():
    train = list(VideoQA(split="train", n=12).samples())
    evals = list(VideoQA(split="eval", n=12).samples())
    assert {seed_split(s.metadata["seed"]) for s in train} == {"train"}
    assert {seed_split(s.metadata["seed"]) for s in evals} == {"eval"}
    assert not {s.metadata["seed"] for s in train} & {s.metadata["seed"] for s in evals}
    assert train[0].metadata["text_form"] != evals[0].metadata["text_form"]


def test_second_call_reuses_the_cache(cache, monkeypatch):
    first = list(VideoQA(n=10).samples())
    files = sorted(p for p in cache.rglob("*") if p.is_file())
    assert len(files) == 2 and all(f.suffix == ".mp4" for f in files)
    stamps = {f: (f.stat().st_mtime_ns, f.stat().st_size) for f in files}

    def no_render(*args, **kwargs):
        raise AssertionError("a cached video was rendered again")

    monkeypatch.setattr(videoqa, "render_video", no_render)
    second = list(VideoQA(n=10).samples())
    assert [s.to_dict() for s in second] == [s.to_dict() for s in first]
    assert {f: (f.stat().st_mtime_ns, f.stat().st_size) for f in cache.rglob("*") if f.is_file()} == stamps


def test_sample_layout_and_metadata():
    samples = list(VideoQA(n=10).samples())
    assert len(samples) == 10 and len({s.id for s in samples}) == 10
    first_video = samples[:8]
    assert {s.metadata["cluster"] for s in first_video} == {first_video[0].metadata["cluster"]}
    assert samples[8].metadata["cluster"] != samples[0].metadata["cluster"]
    assert [s.metadata["bucket"] for s in (samples[0], samples[8])] == ["short", "medium"]
    for s in samples:
        assert s.error is None
        assert s.target in "ABCD" and len(s.choices) == 4
        assert s.metadata["category"] in ("order", "count", "attribute", "when")
        assert s.metadata["difficulty"] == "default"
        assert s.choices[" ABCD".index(s.target) - 1] == s.metadata["answer"]
        text = s.messages[0].content[1].text
        assert text.splitlines()[1:5] == [f"{l}. {c}" for l, c in zip("ABCD", s.choices)]
        assert s.messages[0].content[0].type == "video"
        assert s.metadata["text_form"].startswith("video of ")
    assert {s.metadata["category"] for s in first_video} == {"order", "count", "attribute", "when"}


def _cell_shows(frame: np.ndarray, box, colour: str) -> bool:
    x0, y0, x1, y1 = box
    patch = frame[y0:y1, x0:x1].astype(int)
    return int((np.abs(patch - np.array(COLOURS[colour])).max(-1) < 60).sum()) >= 20


def _cell_empty(frame: np.ndarray, box) -> bool:
    x0, y0, x1, y1 = box
    patch = frame[y0:y1, x0:x1].astype(int)
    return float((np.abs(patch - np.array(BACKGROUND)).max(-1) < 30).mean()) > 0.95


@pytest.mark.parametrize("bucket", BUCKETS)
def test_every_event_is_visible_at_the_default_sampling(tmp_path, bucket):
    spec = build_video(5, bucket, "hard")
    path = tmp_path / f"{bucket}.mp4"
    render_video(spec, path)
    info = probe_video(str(path))
    assert info.duration_s == pytest.approx(spec.duration_s) and (info.width, info.height) == spec.size
    args = VideoQA.default_args
    frames, stamps = sample_frames(str(path), fps=args["fps"], max_frames=args["max_frames"])
    assert len(frames) == spec.units
    for thing in spec.things:
        box = spec.cell_box(thing.cell)
        for a, b in thing.spans:  # each appearance is caught by >= 1 sampled frame, in its colour
            inside = [f for f, t in zip(frames, stamps) if a * spec.unit_s <= t < b * spec.unit_s]
            assert inside, f"{thing.name} at units {a}-{b} falls between sampled frames"
            for f, t in zip(frames, stamps):
                if a * spec.unit_s <= t < b * spec.unit_s:
                    want = thing.change[1] if thing.change and t >= thing.change[0] * spec.unit_s else thing.colour
                    assert _cell_shows(f, box, want), (thing.name, t)
        gaps = [f for f, t in zip(frames, stamps) if not any(a <= t / spec.unit_s < b for a, b in thing.spans)]
        assert all(_cell_empty(f, box) for f in gaps)
        if len(thing.spans) > 1:  # disappearances between appearances are seen too
            assert gaps
        if thing.change:  # both colours are seen
            assert any(_cell_shows(f, box, thing.colour) for f in frames)
            assert any(_cell_shows(f, box, thing.change[1]) for f in frames)


@settings(max_examples=60, deadline=None)
@given(seed=st.integers(0, 2**40), bucket=st.sampled_from(BUCKETS), difficulty=st.sampled_from(DIFFICULTIES))
def test_answers_follow_the_timeline(seed, bucket, difficulty):
    spec = build_video(seed, bucket, difficulty)
    n = spec.units
    order = sorted((t for t in spec.things if t.role == "order"), key=lambda t: t.spans[0][0])
    starts = [t.spans[0][0] for t in order]
    assert len(set(starts)) == 4
    for t in spec.things:
        assert all(0 <= a and b - a >= 2 and b <= n for a, b in t.spans)
        assert all(b2 - a1 >= 2 for (_, a1), (b2, _) in zip(t.spans, t.spans[1:])) or len(t.spans) == 1
    assert all(y - x >= 2 for x, y in zip((0,) + spec.counter, spec.counter + (n,)))
    assert len(spec.questions) == (12 if bucket == "long" else 8)
    for q in spec.questions:
        answer = q.options[q.answer]
        assert len(set(q.options)) == 4
        if q.category == "order":
            assert answer == order[("first", "second", "third", "last").index(q.subtype)].name
        if q.category == "when":
            assert q.options == QUARTERS
        if q.subtype == "object" and q.category == "when":
            thing = next(t for t in order if t.name in q.text)
            a, b = thing.spans[0]
            assert int(a * 4 // n) == int((b - 1e-9) * 4 // n) == q.answer  # the whole span in one quarter
        if q.subtype == "counter":
            assert answer == str(len(spec.counter))
        if q.subtype == "caption" and q.category == "attribute":
            assert answer == spec.caption[0]


def test_scores_letters_and_counts_unparsed():
    task = VideoQA(n=2)
    sample = next(iter(task.samples()))
    wrong = next(l for l in "ABCD" if l != sample.target)
    assert task.score(sample, sample.target)["score"] == 1.0
    assert task.score(sample, f"The answer is ({sample.target}).")["score"] == 1.0
    assert task.score(sample, wrong)["score"] == 0.0
    assert task.score(sample, sample.metadata["answer"])["score"] == 1.0  # option text alone
    bad = task.score(sample, "no idea")
    assert bad == {"score": 0.0, "parsed": None}
    results = [
        SampleResult(id=str(i), task="videoqa", target="A", prediction=p, score=s["score"], scores=s,
                     metadata={"duration_s": 1800.0})
        for i, (p, s) in enumerate([("A", {"score": 1.0, "parsed": "A"}), ("B", {"score": 0.0, "parsed": "B"}),
                                    ("?", {"score": 0.0, "parsed": None}), ("A", {"score": 1.0, "parsed": "A"})])
    ]
    results.append(SampleResult(id="e", task="videoqa", target="A", prediction=None, score=None, error="bad video",
                                metadata={"duration_s": 1800.0}))
    assert task.aggregate(results) == {"accuracy": 0.5, "n_unparsed": 1}
    eff = task.efficiency(results, wall_s=900.0)
    assert eff["video_hours"] == pytest.approx(2.0) and eff["video_hours_per_hour"] == pytest.approx(8.0)


def test_bad_arguments_end_in_one_clear_error():
    with pytest.raises(TaskArgError, match="split"):
        VideoQA(split="test")
    with pytest.raises(TaskArgError, match="difficulty"):
        VideoQA(difficulty="medium")
    with pytest.raises(TaskArgError, match="n"):
        VideoQA(n="many")
    with pytest.raises(TaskArgError, match="no argument"):
        VideoQA(frames=3)


def test_a_failed_encode_errors_its_samples_only(monkeypatch):
    calls = []

    def flaky(spec, path):
        calls.append(path)
        if len(calls) == 1:
            raise RuntimeError("disk full")
        render_video(spec, path)

    monkeypatch.setattr(videoqa, "render_video", flaky)
    samples = list(VideoQA(n=10).samples())
    assert [s.error is not None for s in samples] == [True] * 8 + [False] * 2
    assert "disk full" in samples[0].error


def test_mpeg4_fallback_encodes_a_decodable_video(tmp_path, monkeypatch):
    import evalsuite.tasks.gen.video as gen

    monkeypatch.setattr(gen, "video_codec", lambda: "mpeg4")
    spec = build_video(3, "short", "easy")
    path = tmp_path / "fallback.mp4"
    render_video(spec, path)
    frames, stamps = sample_frames(str(path), fps=0.5, max_frames=32)
    assert len(frames) == spec.units
    thing = spec.things[0]
    a, b = thing.spans[0]
    hits = [f for f, t in zip(frames, stamps) if a * spec.unit_s <= t < b * spec.unit_s]
    assert hits and all(_cell_shows(f, spec.cell_box(thing.cell), thing.colour) for f in hits)


@pytest.mark.parametrize("seed,bucket,fps,max_frames", [(3, "short", 0.5, 32), (11, "short", 4.0, 16),
                                                         (7, "medium", 0.5, 32), (5, "short", 2.0, 64)])
def test_drawn_frames_equal_decoded_frames_up_to_codec_loss(tmp_path, seed, bucket, fps, max_frames):
    """Training draws sampled frames in memory; eval decodes the mp4. Same frames, same stamps; the
    pixels differ only by the codec's loss."""
    from evalsuite.tasks.gen.video import draw_sampled_frames

    spec = build_video(seed, bucket)
    path = tmp_path / "v.mp4"
    render_video(spec, path)
    decoded, stamps = sample_frames(str(path), fps=fps, max_frames=max_frames)
    drawn, drawn_stamps = draw_sampled_frames(spec, fps, max_frames)
    assert drawn.shape == decoded.shape and drawn.dtype == np.uint8
    assert drawn_stamps == pytest.approx(stamps, abs=1e-6)
    diff = np.abs(drawn.astype(np.int16) - decoded.astype(np.int16))
    per_frame = diff.reshape(len(drawn), -1).mean(axis=1)
    print(f"mean |drawn - decoded| per frame: max {per_frame.max():.2f}, all {diff.mean():.2f} grey levels")
    assert per_frame.max() < 4.0  # codec loss only: a wrong frame differs by tens of levels
