"""audioqa: seeded clips, split-disjoint seeds, cache reuse, decodability, MMAU scoring, and the
measurable difference between paralinguistic classes (pitch track and speaking rate)."""

from __future__ import annotations

import numpy as np
import pytest

import evalsuite.tasks.audioqa as audioqa
import evalsuite.tasks.gen.audio as gen
from evalsuite.media import load_audio
from evalsuite.task import TaskArgError
from evalsuite.types import Sample
from evalsuite.tasks.audioqa import AudioQA, subtype_of
from evalsuite.tasks.common import seed_split
from evalsuite.tasks.gen.audio import CATEGORY_OF, SAMPLE_RATE, SUBTYPES, build_clip, espeak_available, synthesize

needs_espeak = pytest.mark.skipif(not espeak_available(), reason="espeak-ng is not installed (apt-get install espeak-ng)")
N_ALL = 33  # three of every sub-type


@pytest.fixture(autouse=True)
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("EVALSUITE_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


# ---- measurements -------------------------------------------------------------------------------
def f0_track(x: np.ndarray, sr: int = SAMPLE_RATE, fmin: float = 50, fmax: float = 400) -> np.ndarray:
    """Autocorrelation pitch (Hz) every 10 ms over 40 ms windows; NaN where unvoiced or quiet."""
    n, hop = int(0.04 * sr), int(0.01 * sr)
    frames = np.lib.stride_tricks.sliding_window_view(x, n)[::hop]
    energy = np.sqrt((frames**2).mean(axis=1))
    lo, hi = int(sr / fmax), int(sr / fmin)
    out = np.full(len(frames), np.nan)
    for i, w in enumerate(frames):
        if energy[i] < 0.3 * energy.max():
            continue
        w = w - w.mean()
        ac = np.correlate(w, w, "full")[n - 1:]
        k = lo + int(np.argmax(ac[lo:hi]))
        if ac[k] > 0.5 * ac[0]:
            out[i] = sr / k
    return out


def prosody(x: np.ndarray) -> dict[str, float]:
    """Median pitch (semitones re 1 Hz), rise (last third minus first third), range (p90 - p10)."""
    f = f0_track(x)
    st = 12 * np.log2(f[~np.isnan(f)])
    third = len(st) // 3
    return {
        "median": float(np.median(st)),
        "rise": float(np.median(st[-third:]) - np.median(st[:third])),
        "range": float(np.percentile(st, 90) - np.percentile(st, 10)),
    }


def bursts(x: np.ndarray, sr: int = SAMPLE_RATE) -> list[tuple[int, int]]:
    """(start, end) samples of the runs where a 5 ms envelope exceeds 10% of its peak."""
    hop = int(0.005 * sr)
    env = np.abs(x[: len(x) // hop * hop]).reshape(-1, hop).max(axis=1)
    on = np.concatenate([[0], (env > 0.1 * env.max()).astype(int), [0]])
    edges = np.flatnonzero(np.diff(on))
    return [(a * hop, b * hop) for a, b in zip(edges[::2], edges[1::2])]


def dominant_hz(x: np.ndarray, sr: int = SAMPLE_RATE) -> float:
    spectrum = np.abs(np.fft.rfft(x * np.hanning(len(x)), n=1 << 16))
    return float(np.argmax(spectrum) * sr / (1 << 16))


# ---- generator ----------------------------------------------------------------------------------
@needs_espeak
def test_same_seed_same_clip():
    for sub in CATEGORY_OF:
        a, b = build_clip(5, sub, "hard"), build_clip(5, sub, "hard")
        assert a == b
        assert np.array_equal(synthesize(a), synthesize(b))
    assert build_clip(6, "digits") != build_clip(5, "digits")
    assert build_clip(5, "digits", "easy") != build_clip(5, "digits", "hard")


@needs_espeak
def test_samples_cover_every_subtype_and_are_stable():
    samples = list(AudioQA(n=N_ALL).samples())
    assert [s.to_dict() for s in samples] == [s.to_dict() for s in AudioQA(n=N_ALL).samples()]
    assert {s.metadata["subtype"].split("/")[1] for s in samples} == set(CATEGORY_OF)
    assert [s.to_dict() for s in AudioQA(n=5).samples()] == [s.to_dict() for s in samples[:5]]
    for s in samples:
        assert s.error is None and s.target in s.choices and len(set(s.choices)) == len(s.choices) >= 2
        assert s.metadata["category"] == s.metadata["subtype"].split("/")[0] in SUBTYPES
        assert 1.0 <= s.metadata["duration_s"] <= 5.0
        assert s.metadata["cluster"] == s.id and s.metadata["difficulty"] == "default"
        text = s.messages[0].content[1].text
        assert all(f"- {c}" in text.splitlines() for c in s.choices)
        form = s.metadata["text_form"]
        if s.metadata["category"] == "sound":
            assert form == ""
        elif s.metadata["category"] == "paralinguistic":  # only the words, never the answer
            assert form and s.target not in form.split()
        else:
            assert s.target in form


def test_train_and_eval_seeds_never_overlap():
    task_train, task_eval = AudioQA(split="train", n=30), AudioQA(split="eval", n=30)
    train, evals = task_train._specs(), task_eval._specs()
    assert {seed_split(s.seed) for s in train} == {"train"} and {seed_split(s.seed) for s in evals} == {"eval"}
    assert not {s.seed for s in train} & {s.seed for s in evals}


@needs_espeak
def test_second_call_reuses_the_cache(cache, monkeypatch):
    first = list(AudioQA(n=6).samples())
    files = sorted(p for p in cache.rglob("*") if p.is_file())
    assert len(files) == 6 and all(f.suffix == ".flac" for f in files)
    stamps = {f: f.stat().st_mtime_ns for f in files}

    def no_render(*args, **kwargs):
        raise AssertionError("a cached clip was synthesized again")

    monkeypatch.setattr(audioqa, "render_clip", no_render)
    assert [s.to_dict() for s in AudioQA(n=6).samples()] == [s.to_dict() for s in first]
    assert {f: f.stat().st_mtime_ns for f in cache.rglob("*") if f.is_file()} == stamps


@needs_espeak
def test_clips_decode_through_the_media_pipeline():
    for s in AudioQA(n=6).samples():
        path = s.media[0].path
        x = load_audio(path, 16000)
        assert x.dtype == np.float32 and len(x) == pytest.approx(s.metadata["duration_s"] * 16000, abs=2)
        assert 0.05 < float(np.abs(x).max()) <= 0.91
        assert len(load_audio(path, 8000)) == pytest.approx(len(x) / 2, abs=40)


def test_missing_espeak_fails_with_one_line(monkeypatch):
    monkeypatch.setattr(gen.shutil, "which", lambda name: None)
    with pytest.raises(gen.EspeakMissing) as err:
        list(AudioQA(n=3).samples())
    assert "\n" not in str(err.value) and "espeak-ng" in str(err.value)


# ---- the sounds say what the answers say ------------------------------------------------------
@pytest.mark.parametrize("difficulty", ["easy", "default"])
def test_beep_count_duration_and_loudness_are_in_the_waveform(difficulty):
    for seed in range(4):
        spec = build_clip(seed, "count", difficulty)
        assert len(bursts(synthesize(spec))) == int(spec.answer)
        spec = build_clip(seed, "duration", difficulty)
        (a0, a1), (b0, b1) = bursts(synthesize(spec))
        assert ("first" if a1 - a0 > b1 - b0 else "second") == spec.answer
        spec = build_clip(seed, "loudness", difficulty)
        x = synthesize(spec)
        (a0, a1), (b0, b1) = bursts(x)
        rms = [float(np.sqrt(np.mean(x[s:e] ** 2))) for s, e in ((a0, a1), (b0, b1))]
        assert ("first" if rms[0] > rms[1] else "second") == spec.answer


@pytest.mark.parametrize("difficulty", ["easy", "hard"])
def test_pitch_order_follows_the_tone_frequencies(difficulty):
    seen = set()
    for seed in range(12):
        spec = build_clip(seed, "pitch_order", difficulty)
        x = synthesize(spec)
        if spec.snr_db is None:
            hz = [dominant_hz(x[a:b]) for a, b in bursts(x)]
        else:  # in noise, measure where the recipe put the tones
            hz = [dominant_hz(x[a:b]) for a, b in _segment_spans(spec)]
        d = np.sign(np.diff(hz))
        shape = {(1,): "rising", (-1,): "falling"}.get(tuple(set(d.tolist())))
        if shape is None:
            shape = "peaking" if d[0] > 0 else "dipping"
        assert shape == spec.answer, (hz, spec.answer)
        seen.add(shape)
    assert len(seen) >= 3


def _segment_spans(spec: gen.ClipSpec) -> list[tuple[int, int]]:
    pos, out = int(0.15 * SAMPLE_RATE), []
    for seg in spec.segments:
        n = int(seg.duration * SAMPLE_RATE)
        out.append((pos + n // 4, pos + 3 * n // 4))
        pos += n + int(seg.gap * SAMPLE_RATE)
    return out


@needs_espeak
@pytest.mark.parametrize("difficulty", ["default", "hard"])
def test_paralinguistic_classes_are_measurably_different(difficulty):
    """For each sub-type the asked-about measure separates the classes and (for expressiveness) the
    average pitch does not: the answer is in the prosody, not in the words or the pitch height."""
    measured: dict[tuple[str, str], list[dict[str, float]]] = {}
    for sub in SUBTYPES["paralinguistic"]:
        for seed in range(8):
            spec = build_clip(seed, sub, difficulty)
            x = synthesize(spec)
            m = prosody(x)
            m["s_per_word"] = len(x) / SAMPLE_RATE / len(spec.transcript.split())
            measured.setdefault((sub, spec.answer), []).append(m)

    def values(sub: str, label: str, key: str) -> list[float]:
        assert (sub, label) in measured, f"no {label!r} clip among the seeds of {sub}"
        return [m[key] for m in measured[(sub, label)]]

    assert max(values("intonation", "falling", "rise")) < 0 < min(values("intonation", "rising", "rise"))
    assert max(values("pitch", "low", "median")) + 3 < min(values("pitch", "high", "median"))
    assert max(values("rate", "fast", "s_per_word")) * 1.1 < min(values("rate", "slow", "s_per_word"))
    assert max(values("expressiveness", "flat", "range")) + 2 < min(values("expressiveness", "lively", "range"))
    lively, flat = values("expressiveness", "lively", "median"), values("expressiveness", "flat", "median")
    assert abs(float(np.mean(lively)) - float(np.mean(flat))) < 1.5  # semitones: not a pitch-height cue


# ---- scoring ------------------------------------------------------------------------------------
def test_mmau_match_accepts_the_answer_and_rejects_every_other_choice():
    task = AudioQA(n=N_ALL)
    for spec in task._specs():
        sample = Sample(id="x", messages=[], target=spec.answer, choices=list(spec.choices))
        assert task.score(sample, spec.answer)["score"] == 1.0
        assert task.score(sample, f"The answer is {spec.answer}.")["score"] == 1.0
        for wrong in spec.choices:
            if wrong != spec.answer:
                assert task.score(sample, wrong)["score"] == 0.0, (spec.subtype, wrong, spec.answer)
        assert task.score(sample, "")["score"] == 0.0
        assert task.score(sample, " ".join(spec.choices))["score"] == 0.0  # hedging over all choices


def test_subtypes_rotate_within_categories():
    assert [subtype_of(i) for i in range(6)] == ["count", "digits", "intonation", "pitch_order", "word", "rate"]


def test_bad_arguments_end_in_one_clear_error():
    with pytest.raises(TaskArgError, match="split"):
        AudioQA(split="dev")
    with pytest.raises(TaskArgError, match="difficulty"):
        AudioQA(difficulty="extreme")
    with pytest.raises(TaskArgError, match="sample_rate"):
        AudioQA(sample_rate="fast")
    with pytest.raises(ValueError, match="subtype"):
        build_clip(1, "music")
