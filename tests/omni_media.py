"""Tiny media files for the reference-model tests: an image, a short video and a tone, written with
the same libraries the harness reads them with (PIL, PyAV)."""

from __future__ import annotations

from pathlib import Path

import av
import numpy as np
from PIL import Image

from media_files import write_pcm16


def write_image(path: Path, size: tuple[int, int] = (40, 24), seed: int = 0) -> str:
    """A noisy RGB image of ``size`` (width, height)."""
    rng = np.random.default_rng(seed)
    Image.fromarray(rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)).save(path)
    return str(path)


def write_video(path: Path, n_frames: int = 8, fps: int = 4, size: tuple[int, int] = (32, 24)) -> str:
    """A static textured clip with one block that changes every frame (so EVS has something to keep)."""
    w, h = size
    yy, xx = np.mgrid[0:h, 0:w]
    base = np.stack([(yy * 9) % 256, (xx * 7) % 256, ((yy + xx) * 5) % 256], -1).astype(np.uint8)
    codec = "libx264" if "libx264" in av.codecs_available else "mpeg4"
    with av.open(str(path), "w") as c:
        s = c.add_stream(codec, rate=fps)
        s.width, s.height, s.pix_fmt = w, h, "yuv420p"
        s.options = {"crf": "4"} if codec == "libx264" else {"qscale": "2"}
        for i in range(n_frames):
            f = base.copy()
            f[:8, :8] = (40 + 50 * i) % 256
            for pkt in s.encode(av.VideoFrame.from_ndarray(f, format="rgb24")):
                c.mux(pkt)
        for pkt in s.encode():
            c.mux(pkt)
    return str(path)


def write_tone(path: Path, seconds: float = 0.6, sr: int = 16000, freq: float = 440.0) -> str:
    """A mono 16-bit WAV sine tone."""
    t = np.arange(int(seconds * sr)) / sr
    return write_pcm16(path, 0.5 * np.sin(2 * np.pi * freq * t), sr)
