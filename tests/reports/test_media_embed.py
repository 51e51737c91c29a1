"""Media of the pages: audio is inline FLAC; a clip too large to embed is named as text, never linked
to a file outside the page's folder."""

from __future__ import annotations

import base64
import io
from pathlib import Path

import numpy as np
import soundfile as sf
from media_files import write_wav

from evalsuite.reports import media_embed


def _noise_wav(path: Path, seconds: float, rate: int = 16000) -> Path:
    """Speech-like (band-limited noise with pauses) audio: what FLAC meets in the audio tasks."""
    rng = np.random.default_rng(0)
    x = np.convolve(rng.normal(0, 0.1, int(seconds * rate)), np.ones(16) / 16, mode="same")
    x *= (np.arange(x.size) // (rate // 2)) % 3 != 2  # a pause every 1.5 s
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(path, x.astype(np.float32), rate)
    return path


def test_audio_is_inline_flac_a_fraction_of_the_wav(tmp_path: Path) -> None:
    path = _noise_wav(tmp_path / "a29.wav", 29.0)
    out = media_embed.embed({"type": "audio", "path": str(path)})
    (uri,) = out["uris"]
    assert uri.startswith("data:audio/flac;base64,") and out["note"] == "29.0 s"
    data = base64.b64decode(uri.split(",", 1)[1])
    wav, rate = sf.read(io.BytesIO(data))
    assert rate == media_embed.AUDIO_RATE and abs(len(wav) / rate - 29.0) < 0.01  # the whole clip, lossless
    # the 16 kHz PCM16 WAV the page used to carry: 0.93 MB for these 29 s
    assert len(data) < 0.5 * (44 + 2 * 16000 * 29)


def test_a_clip_too_large_to_embed_is_named_not_linked(tmp_path: Path, monkeypatch) -> None:
    folder = tmp_path / "cache" / "m d#q?%"
    path = write_wav(folder / "long a#1.wav", seconds=40, rate=8000)
    monkeypatch.setattr(media_embed, "MAX_INLINE_AUDIO_BYTES", 1000)
    out = media_embed.embed({"type": "audio", "path": str(path)})
    assert out["uris"] == [] and "link" not in out
    assert out["note"].startswith("audio not embedded (40.0 s, ") and out["note"].endswith(", see long a#1.wav)")
    monkeypatch.setattr(media_embed, "MAX_INLINE_AUDIO_S", 30.0)  # too long even to encode
    out = media_embed.embed({"type": "audio", "path": str(path)})
    assert out["uris"] == [] and out["note"] == "audio not embedded (40.0 s, see long a#1.wav)"
