"""Tiny real media files for tests: a PNG, a 440 Hz WAV, an MPEG-4 clip whose frames brighten."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def write_png(path: Path, width: int = 16, height: int = 12, color: tuple[int, int, int] = (200, 30, 30)) -> Path:
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (width, height), color).save(path)
    return path


def write_wav(path: Path, seconds: float = 0.1, rate: int = 8000) -> Path:
    import soundfile as sf

    path.parent.mkdir(parents=True, exist_ok=True)
    t = np.arange(int(seconds * rate)) / rate
    sf.write(path, (0.2 * np.sin(2 * np.pi * 440 * t)).astype(np.float32), rate)
    return path


def write_mp4(path: Path, frames: int = 4, size: int = 16, fps: int = 4, step: int = 40) -> Path:
    import av

    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), "w") as c:
        s = c.add_stream("mpeg4", rate=fps)
        s.width = s.height = size
        s.pix_fmt = "yuv420p"
        for i in range(frames):
            img = np.full((size, size, 3), step * i % 255, dtype=np.uint8)
            for pkt in s.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
                c.mux(pkt)
        for pkt in s.encode():
            c.mux(pkt)
    return path


def write_pcm16(path: Path, wave: np.ndarray, rate: int) -> str:
    """A mono 16-bit PCM WAV of ``wave`` (floats in [-1, 1]) encoded by PyAV, the harness's reader."""
    import av

    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), "w") as c:
        s = c.add_stream("pcm_s16le", rate=rate, layout="mono")
        frame = av.AudioFrame.from_ndarray((wave * 32767).astype(np.int16)[None, :], format="s16", layout="mono")
        frame.sample_rate = rate
        for pkt in s.encode(frame):
            c.mux(pkt)
        for pkt in s.encode():
            c.mux(pkt)
    return str(path)
