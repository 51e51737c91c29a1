"""Short clips for ``audioqa``: synthesized tones, chords, sweeps and noise, and speech from espeak-ng.

``build_clip(seed, subtype, difficulty)`` is a pure function returning a :class:`ClipSpec`: the
question, its choices and answer, the transcript (the text form) and a list of :class:`Segment`
recipes, played one after another. ``render_clip(spec, path)`` synthesizes them into a 16 kHz mono
16-bit FLAC file. Clips last 1-5 s.

Sub-types (``SUBTYPES``), by category:

- sound: ``count`` (how many beeps), ``pitch_order`` (a tone sequence rising, falling, peaking or
  dipping), ``duration`` / ``loudness`` (which of two tones is longer / louder), ``kind`` (tone,
  chord, noise or sweep). Transcript: empty.
- speech: ``digits`` (which digits were spoken), ``word`` (which word). Transcript: the words.
- paralinguistic: ``intonation`` (pitch rising or falling across the sentence: per-word SSML pitch
  steps over a narrowed natural contour), ``rate`` (espeak-ng ``-s`` fast vs slow), ``pitch``
  (``-p`` high vs low), ``expressiveness`` (SSML prosody ``range`` wide, with per-word pitch jumps,
  vs narrow: a lively vs a flat voice). Transcript: only the words, so a text-only model is at chance.
  The other prosodic settings are drawn at random within a middle band, so only the asked-about
  one separates the classes.

Choices are short texts without articles ("first", "rising", "chord") so MMAU's token match accepts
the bare word; no two choices share a token set (digit distractors always hold a digit the answer
lacks). Difficulty narrows the contrasts (semitone steps, duration ratio, level difference, speaking
rate and pitch gaps) and "hard" adds white noise at 12 dB SNR.
"""

from __future__ import annotations

import os
import random
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from evalsuite.tasks.common import atomic_path

SAMPLE_RATE = 16000
DIFFICULTIES = ("easy", "default", "hard")
SUBTYPES: dict[str, tuple[str, ...]] = {
    "sound": ("count", "pitch_order", "duration", "loudness", "kind"),
    "speech": ("digits", "word"),
    "paralinguistic": ("intonation", "rate", "pitch", "expressiveness"),
}
CATEGORY_OF = {sub: cat for cat, subs in SUBTYPES.items() for sub in subs}
VOICE = "en-us"
WORDS = ("apple", "river", "candle", "window", "garden", "pencil", "rocket", "silver", "tiger", "yellow",
         "basket", "doctor", "monkey", "planet", "summer", "button", "castle", "dragon", "forest", "mirror")
SENTENCES = (
    "the train leaves at noon", "please open the window", "we will meet again tomorrow",
    "the garden is full of flowers", "my brother plays the piano", "the shop closes at nine",
    "she bought a new blue car", "the river runs to the sea", "they walked along the beach",
    "the coffee is still warm", "our team won the last game", "he reads a book every night",
)
PITCH_PATTERNS = ("rising", "falling", "peaking", "dipping")


class EspeakMissing(RuntimeError):
    """espeak-ng is not installed; the message is one line saying how to install it."""


@dataclass(frozen=True)
class Segment:
    """One piece of a clip, followed by ``gap`` seconds of silence.

    ``kind``: ``tone`` (sine at ``freqs[0]``), ``chord`` (sum of ``freqs``), ``sweep`` (linear chirp
    ``freqs[0]`` → ``freqs[1]``), ``noise`` (white), ``silence``, or ``speech`` (espeak-ng ``text``
    with ``args``; ``ssml`` marks SSML input). ``duration`` is ignored for speech. ``gain_db`` is
    relative to full scale.
    """

    kind: str
    duration: float = 0.0
    freqs: tuple[float, ...] = ()
    gain_db: float = -12.0
    gap: float = 0.0
    text: str = ""
    args: tuple[str, ...] = ()
    ssml: bool = False


@dataclass(frozen=True)
class ClipSpec:
    seed: int
    category: str
    subtype: str
    difficulty: str
    question: str
    choices: tuple[str, ...]
    answer: str
    transcript: str
    segments: tuple[Segment, ...]
    snr_db: float | None  # white noise added over the whole clip, None = clean

    @property
    def needs_espeak(self) -> bool:
        return any(s.kind == "speech" for s in self.segments)


# ---- recipes ------------------------------------------------------------------------------------
def _semitones(base: float, steps: list[float]) -> tuple[float, ...]:
    return tuple(base * 2 ** (s / 12) for s in steps)


def _shuffled(rng: random.Random, items: list[str]) -> tuple[str, ...]:
    items = list(items)
    rng.shuffle(items)
    return tuple(items)


def _level(difficulty: str, easy: float, default: float, hard: float) -> float:
    return {"easy": easy, "default": default, "hard": hard}[difficulty]


def _count(rng: random.Random, d: str) -> tuple[str, tuple[str, ...], str, tuple[Segment, ...]]:
    lo_k, hi_k = {"easy": (1, 4), "default": (2, 6), "hard": (3, 8)}[d]
    k = rng.randint(lo_k, hi_k)
    gap = _level(d, 0.3, 0.22, 0.14)
    freq = rng.uniform(500, 1500)
    segs = tuple(Segment("tone", rng.uniform(0.1, 0.18), (freq,), rng.uniform(-14, -8), gap * rng.uniform(0.8, 1.2))
                 for _ in range(k))
    lo = rng.randint(max(1, k - 3), k)
    return "How many beeps are there?", tuple(str(v) for v in range(lo, lo + 4)), str(k), segs


def _pitch_order(rng: random.Random, d: str) -> tuple[str, tuple[str, ...], str, tuple[Segment, ...]]:
    n = {"easy": 3, "default": 5, "hard": 5}[d]
    step = _level(d, 5.0, 3.0, 1.5)
    pattern = rng.choice(PITCH_PATTERNS)
    peak = [step * min(i, n - 1 - i) for i in range(n)]
    steps = {
        "rising": [step * i for i in range(n)],
        "falling": [step * (n - 1 - i) for i in range(n)],
        "peaking": peak,
        "dipping": [max(peak) - s for s in peak],
    }
    freqs = _semitones(rng.uniform(300, 700), steps[pattern])
    dur = rng.uniform(0.2, 0.3)
    segs = tuple(Segment("tone", dur, (f,), -12.0, 0.08) for f in freqs)
    return "How does the pitch of the tones change?", _shuffled(rng, list(PITCH_PATTERNS)), pattern, segs


def _pair(rng: random.Random, d: str, what: str) -> tuple[str, tuple[str, ...], str, tuple[Segment, ...]]:
    which = rng.choice(("first", "second"))
    freq = rng.uniform(300, 1200)
    if what == "duration":
        short = rng.uniform(0.25, 0.45)
        long = short * _level(d, 3.0, 2.0, 1.5)
        durs = (long, short) if which == "first" else (short, long)
        f2 = freq * 2 ** (rng.uniform(-4, 4) / 12)  # a pitch change that says nothing about length
        segs = (Segment("tone", durs[0], (freq,), -12.0, 0.4), Segment("tone", durs[1], (f2,), -12.0))
        return "Which tone is longer, the first or the second?", ("first", "second"), which, segs
    quiet = rng.uniform(-28, -24)
    loud = quiet + _level(d, 15.0, 10.0, 6.0)
    gains = (loud, quiet) if which == "first" else (quiet, loud)
    dur = rng.uniform(0.4, 0.7)
    segs = (Segment("tone", dur, (freq,), gains[0], 0.4), Segment("tone", dur, (freq,), gains[1]))
    return "Which tone is louder, the first or the second?", ("first", "second"), which, segs


def _kind(rng: random.Random, d: str) -> tuple[str, tuple[str, ...], str, tuple[Segment, ...]]:
    kind = rng.choice(("tone", "chord", "noise", "sweep"))
    base = rng.uniform(250, 600)
    dur = rng.uniform(0.6, 1.2) if d != "hard" else rng.uniform(0.3, 0.6)
    freqs = {
        "tone": (base,),
        "chord": _semitones(base, [0, 4, 7]),
        "noise": (),
        "sweep": (base, base * rng.choice((0.5, 2.5))),
    }[kind]
    seg = Segment(kind, dur, freqs, -12.0 if kind != "noise" else -18.0)
    return "What kind of sound is it?", _shuffled(rng, ["tone", "chord", "noise", "sweep"]), kind, (seg,)


def _speech_args(rng: random.Random, rate: tuple[int, int] = (150, 190), pitch: tuple[int, int] = (35, 65)) -> tuple[str, ...]:
    return ("-s", str(rng.randint(*rate)), "-p", str(rng.randint(*pitch)))


def _digits(rng: random.Random, d: str) -> tuple[str, tuple[str, ...], str, tuple[Segment, ...]]:
    k = {"easy": 3, "default": 4, "hard": 5}[d]
    answer = [rng.choice("0123456789") for _ in range(k)]
    choices = {" ".join(answer)}
    while len(choices) < 4:  # each distractor holds a digit the answer lacks: a distinct token set
        wrong = list(answer)
        wrong[rng.randrange(k)] = rng.choice([c for c in "0123456789" if c not in answer])
        choices.add(" ".join(wrong))
    text = " ".join(answer)
    seg = Segment("speech", text=text, args=_speech_args(rng) + ("-g", "4"))
    return "Which digits are spoken?", _shuffled(rng, sorted(choices)), text, (seg,)


def _word(rng: random.Random, d: str) -> tuple[str, tuple[str, ...], str, tuple[Segment, ...]]:
    options = rng.sample(WORDS, 4)
    word = options[0]
    text = word if d == "easy" else f"the word is {word}"
    seg = Segment("speech", text=text, args=_speech_args(rng))
    return "Which word is spoken?", _shuffled(rng, options), word, (seg,)


def _ssml(words: list[str], pitches: list[int], range_: str) -> str:
    inner = " ".join(f'<prosody pitch="{p:+d}%">{w}</prosody>' for w, p in zip(words, pitches))
    return f'<speak><prosody range="{range_}">{inner}</prosody></speak>'


def _paralinguistic(rng: random.Random, d: str, subtype: str) -> tuple[str, tuple[str, ...], str, tuple[Segment, ...], str]:
    sentence = rng.choice(SENTENCES)
    words = sentence.split()
    if subtype == "intonation":
        label = rng.choice(("rising", "falling"))
        span = int(_level(d, 50, 35, 22))
        ramp = [round(-span + 2 * span * i / (len(words) - 1)) for i in range(len(words))]
        pitches = ramp if label == "rising" else ramp[::-1]
        seg = Segment("speech", text=_ssml(words, pitches, "x-low"), args=_speech_args(rng), ssml=True)
        return "Does the speaker's pitch rise or fall?", ("rising", "falling"), label, (seg,), sentence
    if subtype == "rate":
        label = rng.choice(("fast", "slow"))
        slow, fast = {"easy": ((85, 100), (270, 300)), "default": ((100, 120), (230, 260)),
                      "hard": ((120, 135), (200, 215))}[d]
        args = _speech_args(rng, rate=fast if label == "fast" else slow)
        seg = Segment("speech", text=sentence, args=args)
        return "Is the speaker talking fast or slowly?", ("fast", "slow"), label, (seg,), sentence
    if subtype == "pitch":
        label = rng.choice(("high", "low"))
        low, high = {"easy": ((0, 10), (88, 99)), "default": ((10, 20), (78, 88)), "hard": ((20, 30), (68, 78))}[d]
        args = _speech_args(rng, pitch=high if label == "high" else low)
        seg = Segment("speech", text=sentence, args=args)
        return "Is the speaker's voice high or low?", ("high", "low"), label, (seg,), sentence
    if subtype == "expressiveness":
        label = rng.choice(("lively", "flat"))
        jump = int(_level(d, 40, 30, 20))
        # A wide range also lifts the average pitch; a lower base pitch for "lively" cancels that,
        # so the two classes differ in pitch range, not in pitch height (a test checks both).
        if label == "lively":
            pitches = [jump // 2 if i % 2 else -jump // 2 for i in range(len(words))]
            text, args = _ssml(words, pitches, "x-high"), _speech_args(rng, pitch=(15, 40))
        else:
            text, args = _ssml(words, [0] * len(words), "x-low"), _speech_args(rng, pitch=(40, 65))
        seg = Segment("speech", text=text, args=args, ssml=True)
        return "Does the voice sound lively or flat?", ("lively", "flat"), label, (seg,), sentence
    raise ValueError(f"paralinguistic subtype must be one of {SUBTYPES['paralinguistic']}, got {subtype!r}")


def build_clip(seed: int, subtype: str, difficulty: str = "default") -> ClipSpec:
    """The clip of ``seed``: question, choices, answer, transcript and synthesis recipe (nothing rendered)."""
    if subtype not in CATEGORY_OF:
        raise ValueError(f"audio subtype must be one of {sorted(CATEGORY_OF)}, got {subtype!r}")
    if difficulty not in DIFFICULTIES:
        raise ValueError(f"difficulty must be one of {DIFFICULTIES}, got {difficulty!r}")
    rng = random.Random(f"audioqa:{difficulty}:{subtype}:{seed}")
    category = CATEGORY_OF[subtype]
    transcript = ""
    if subtype == "count":
        q, choices, answer, segs = _count(rng, difficulty)
    elif subtype == "pitch_order":
        q, choices, answer, segs = _pitch_order(rng, difficulty)
    elif subtype in ("duration", "loudness"):
        q, choices, answer, segs = _pair(rng, difficulty, subtype)
    elif subtype == "kind":
        q, choices, answer, segs = _kind(rng, difficulty)
    elif subtype == "digits":
        q, choices, answer, segs = _digits(rng, difficulty)
        transcript = answer
    elif subtype == "word":
        q, choices, answer, segs = _word(rng, difficulty)
        transcript = segs[0].text
    else:
        q, choices, answer, segs, transcript = _paralinguistic(rng, difficulty, subtype)
    snr = 12.0 if difficulty == "hard" else None
    return ClipSpec(seed, category, subtype, difficulty, q, choices, answer, transcript, segs, snr)


# ---- synthesis ----------------------------------------------------------------------------------
def _fade(x: np.ndarray, seconds: float = 0.01) -> np.ndarray:
    n = min(len(x) // 2, int(seconds * SAMPLE_RATE))
    if n > 0:
        ramp = 0.5 - 0.5 * np.cos(np.linspace(0, np.pi, n))
        x[:n] *= ramp
        x[-n:] *= ramp[::-1]
    return x


def espeak_available() -> bool:
    return shutil.which("espeak-ng") is not None


def require_espeak() -> None:
    if not espeak_available():
        raise EspeakMissing("espeak-ng is not installed; audioqa's speech clips need it (apt-get install espeak-ng)")


def speak(text: str, args: tuple[str, ...] = (), ssml: bool = False) -> np.ndarray:
    """espeak-ng speech as float32 mono at ``SAMPLE_RATE``, leading/trailing silence trimmed."""
    from evalsuite.media import load_audio

    require_espeak()
    fd, wav = tempfile.mkstemp(suffix=".wav")
    os.close(fd)
    try:
        cmd = ["espeak-ng", "-v", VOICE, "-z", *(["-m"] if ssml else []), *args, "-w", wav, text]
        done = subprocess.run(cmd, capture_output=True, text=True)
        if done.returncode != 0:
            raise RuntimeError(f"espeak-ng failed ({done.returncode}): {done.stderr.strip()[:200]}")
        x = load_audio(wav, SAMPLE_RATE)
    finally:
        os.unlink(wav)
    loud = np.flatnonzero(np.abs(x) > 0.01)
    return x[loud[0]: loud[-1] + 1].copy() if len(loud) else x


def synthesize(spec: ClipSpec) -> np.ndarray:
    """The clip's waveform: float32 mono in [-1, 1] at ``SAMPLE_RATE``, 1-5 s long."""
    rng = np.random.default_rng(spec.seed % (1 << 63))
    pieces = [np.zeros(int(0.15 * SAMPLE_RATE), np.float32)]
    for seg in spec.segments:
        t = np.arange(int(seg.duration * SAMPLE_RATE)) / SAMPLE_RATE
        amp = 10 ** (seg.gain_db / 20)
        if seg.kind == "tone":
            x = np.sin(2 * np.pi * seg.freqs[0] * t)
        elif seg.kind == "chord":
            x = sum(np.sin(2 * np.pi * f * t) for f in seg.freqs) / len(seg.freqs)
        elif seg.kind == "sweep":
            f0, f1 = seg.freqs
            x = np.sin(2 * np.pi * (f0 * t + (f1 - f0) * t**2 / (2 * max(seg.duration, 1e-6))))
        elif seg.kind == "noise":
            x = np.clip(rng.standard_normal(len(t)) / 3, -1, 1)
        elif seg.kind == "silence":
            x = np.zeros(len(t))
        elif seg.kind == "speech":
            x, amp = speak(seg.text, seg.args, seg.ssml), 1.0
        else:
            raise ValueError(f"segment kind must be tone/chord/sweep/noise/silence/speech, got {seg.kind!r}")
        pieces.append(_fade(np.asarray(x, np.float64) * amp).astype(np.float32))
        pieces.append(np.zeros(int(seg.gap * SAMPLE_RATE), np.float32))
    pieces.append(np.zeros(int(0.15 * SAMPLE_RATE), np.float32))
    y = np.concatenate(pieces)
    if len(y) < SAMPLE_RATE:  # at least 1 s
        y = np.concatenate([y, np.zeros(SAMPLE_RATE - len(y), np.float32)])
    if spec.snr_db is not None:
        power = float(np.mean(y[np.abs(y) > 1e-4] ** 2)) if np.any(np.abs(y) > 1e-4) else 1e-4
        y = y + rng.standard_normal(len(y)).astype(np.float32) * np.sqrt(power / 10 ** (spec.snr_db / 10))
    peak = float(np.max(np.abs(y)))
    return (y * (0.9 / peak) if peak > 0.9 else y).astype(np.float32)


def render_clip(spec: ClipSpec, path: str | Path) -> float:
    """Synthesize ``spec`` and write a 16-bit FLAC atomically; returns the duration in seconds."""
    import soundfile as sf

    y = synthesize(spec)
    with atomic_path(path) as tmp:
        sf.write(tmp, y, SAMPLE_RATE, subtype="PCM_16", format="FLAC")
    return len(y) / SAMPLE_RATE
