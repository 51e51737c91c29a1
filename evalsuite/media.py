"""The suite's one media pipeline: every backend reads images, video frames and audio through here,
so preprocessing is the same for all of them and its settings are recorded with the results.

- Images: PIL, converted to RGB.
- Video: PyAV. ``sample_frames`` picks frame times by ``fps`` / ``max_frames`` and decodes only what
  it needs: for sparse sampling it seeks to the keyframe before each wanted time and decodes forward
  to it (skipping non-reference frames when the codec allows), instead of decoding every frame.
- Audio: PyAV decodes any container/codec and resamples to mono float32 at ``sample_rate``.

Errors a file can cause (missing, empty, not decodable) raise :class:`MediaError` with one line that
names the file and what was expected; the runner records it on that sample and goes on.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from typing import Any

import numpy as np

from evalsuite.types import ContentPart


class MediaError(ValueError):
    pass


def _require_file(path: str, kind: str) -> None:
    if not os.path.exists(path):
        raise MediaError(f"{kind} file not found: {path}")
    if not os.path.isfile(path):
        raise MediaError(f"{kind} path is not a file: {path}")
    if os.path.getsize(path) == 0:
        raise MediaError(f"{kind} file is empty: {path}")


# ---- images -------------------------------------------------------------------------------------
def load_image(path: str):
    """Open an image as RGB PIL.Image; MediaError if it is missing or not a decodable image."""
    from PIL import Image, UnidentifiedImageError

    _require_file(path, "image")
    try:
        with Image.open(path) as im:
            im.load()
            return im.convert("RGB")
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as e:
        raise MediaError(f"image file is corrupt or not an image (expected PNG/JPEG/…): {path}: {e}") from None


# ---- video --------------------------------------------------------------------------------------
@dataclass
class VideoInfo:
    duration_s: float
    fps: float
    n_frames: int
    width: int
    height: int


def probe_video(path: str) -> VideoInfo:
    import av

    _require_file(path, "video")
    try:
        with av.open(path) as c:
            if not c.streams.video:
                raise MediaError(f"video file has no video stream: {path}")
            s = c.streams.video[0]
            rate = float(s.average_rate or s.guessed_rate or 0) or 0.0
            if s.duration is not None and s.time_base is not None:
                duration = float(s.duration * s.time_base)
            elif c.duration is not None:
                duration = c.duration / 1_000_000
            else:
                duration = 0.0
            n = s.frames or (int(round(duration * rate)) if rate else 0)
            return VideoInfo(duration, rate, n, s.codec_context.width, s.codec_context.height)
    except MediaError:
        raise
    except Exception as e:  # av raises many error types for damaged files
        raise MediaError(f"video file is corrupt or not a video (expected MP4/MKV/…): {path}: {e}") from None


def frame_times(duration_s: float, fps: float, max_frames: int) -> list[float]:
    """Times (s) to sample: every 1/fps seconds from the middle of the first interval, thinned to at
    most ``max_frames`` evenly spread over the clip."""
    if duration_s <= 0:
        return [0.0]
    n = max(1, int(math.floor(duration_s * fps))) if fps > 0 else max_frames
    n = min(n, max_frames) if max_frames > 0 else n
    step = duration_s / n
    return [step * (i + 0.5) for i in range(n)]


def sample_frames(path: str, fps: float = 1.0, max_frames: int = 64, *, decode_all: bool = False) -> tuple[np.ndarray, list[float]]:
    """Decode frames at the times chosen by :func:`frame_times`.

    Returns (frames uint8[N, H, W, 3], timestamps in seconds). ``decode_all=True`` decodes every frame
    and picks from them: the slow reference that the fast path is tested and benchmarked against.
    """
    import av

    info = probe_video(path)
    times = frame_times(info.duration_s, fps, max_frames)
    try:
        with av.open(path) as c:
            s = c.streams.video[0]
            s.thread_type = "AUTO"
            tb = s.time_base
            if decode_all:
                return _pick_from_all(c, s, times, path)
            frames: list[np.ndarray] = []
            stamps: list[float] = []
            gap = (times[1] - times[0]) if len(times) > 1 else info.duration_s
            # Dense sampling (wanted frames closer than ~2 s): one forward decode beats seeking.
            if gap < 2.0:
                return _pick_forward(c, s, times, path)
            for t in times:
                c.seek(int(t / float(tb)), stream=s, backward=True, any_frame=False)
                best = None
                for frame in c.decode(s):
                    ft = float(frame.pts * tb) if frame.pts is not None else 0.0
                    best = frame, ft
                    if ft + 0.5 / max(info.fps, 1e-6) >= t:
                        break
                if best is None:
                    raise MediaError(f"video has no decodable frame near {t:.2f}s: {path}")
                frames.append(best[0].to_ndarray(format="rgb24"))
                stamps.append(best[1])
            return np.stack(frames), stamps
    except MediaError:
        raise
    except Exception as e:
        raise MediaError(f"video file could not be decoded: {path}: {e}") from None


def _pick_forward(c, s, times: list[float], path: str) -> tuple[np.ndarray, list[float]]:
    tb = s.time_base
    frames: list[np.ndarray] = []
    stamps: list[float] = []
    i = 0
    last = None
    for frame in c.decode(s):
        ft = float(frame.pts * tb) if frame.pts is not None else 0.0
        last = frame, ft
        while i < len(times) and ft + 1e-6 >= times[i] - _half_frame(s):
            frames.append(frame.to_ndarray(format="rgb24"))
            stamps.append(ft)
            i += 1
        if i == len(times):
            break
    while i < len(times) and last is not None:  # clip shorter than its header claims
        frames.append(last[0].to_ndarray(format="rgb24"))
        stamps.append(last[1])
        i += 1
    if not frames:
        raise MediaError(f"video has no decodable frames: {path}")
    return np.stack(frames), stamps


def _half_frame(s) -> float:
    rate = float(s.average_rate or s.guessed_rate or 25)
    return 0.5 / rate


def _pick_from_all(c, s, times: list[float], path: str) -> tuple[np.ndarray, list[float]]:
    tb = s.time_base
    decoded = [(float(f.pts * tb) if f.pts is not None else 0.0, f.to_ndarray(format="rgb24")) for f in c.decode(s)]
    if not decoded:
        raise MediaError(f"video has no decodable frames: {path}")
    out, stamps = [], []
    j = 0
    for t in times:
        while j < len(decoded) - 1 and decoded[j][0] + 1e-6 < t - _half_frame(s):
            j += 1
        out.append(decoded[j][1])
        stamps.append(decoded[j][0])
    return np.stack(out), stamps


# ---- audio --------------------------------------------------------------------------------------
def load_audio(path: str, sample_rate: int = 16000) -> np.ndarray:
    """Decode any audio file to mono float32 in [-1, 1] at ``sample_rate``."""
    import av

    _require_file(path, "audio")
    try:
        with av.open(path) as c:
            if not c.streams.audio:
                raise MediaError(f"audio file has no audio stream: {path}")
            s = c.streams.audio[0]
            resampler = av.AudioResampler(format="flt", layout="mono", rate=sample_rate)
            chunks = []
            for frame in c.decode(s):
                for out in resampler.resample(frame):
                    chunks.append(out.to_ndarray().reshape(-1))
            for out in resampler.resample(None):
                chunks.append(out.to_ndarray().reshape(-1))
    except MediaError:
        raise
    except Exception as e:
        raise MediaError(f"audio file is corrupt or not audio (expected WAV/FLAC/MP3/…): {path}: {e}") from None
    if not chunks:
        raise MediaError(f"audio file has no decodable samples: {path}")
    return np.concatenate(chunks).astype(np.float32)


# ---- checks -------------------------------------------------------------------------------------
def check(part: ContentPart) -> None:
    """Cheap validity check of a media part (header decode), raising MediaError with one line."""
    if part.type == "text":
        return
    assert part.path is not None
    if part.type == "image":
        from PIL import Image

        _require_file(part.path, "image")
        try:
            with Image.open(part.path) as im:
                im.verify()
        except Exception as e:
            raise MediaError(f"image file is corrupt or not an image (expected PNG/JPEG/…): {part.path}: {e}") from None
    elif part.type == "video":
        info = probe_video(part.path)
        if info.width <= 0 or info.height <= 0:
            raise MediaError(f"video file has no frame size: {part.path}")
    elif part.type == "audio":
        import av

        _require_file(part.path, "audio")
        try:
            with av.open(part.path) as c:
                if not c.streams.audio:
                    raise MediaError(f"audio file has no audio stream: {part.path}")
        except MediaError:
            raise
        except Exception as e:
            raise MediaError(f"audio file is corrupt or not audio (expected WAV/FLAC/MP3/…): {part.path}: {e}") from None


def describe(part: ContentPart) -> dict[str, Any]:
    """What the sample browser needs to show a media part: its type and path."""
    return {"type": part.type, "path": part.path}


__all__ = [
    "MediaError", "load_image", "probe_video", "frame_times", "sample_frames", "load_audio", "check", "VideoInfo",
]
