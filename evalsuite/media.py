"""The suite's one media pipeline: every backend reads images, video frames and audio through here,
so preprocessing is the same for all of them and its settings are recorded with the results.

- Images: PIL, as a viewer shows them: turned by their EXIF orientation, transparent areas on white,
  16-bit / float grayscale scaled to 8 bits, then RGB.
- Video: PyAV. ``sample_frames`` picks frame times by ``fps`` / ``max_frames`` and decodes only what
  it needs: for sparse sampling it seeks to the keyframe before each wanted time and decodes forward
  to it (skipping non-reference frames when the codec allows), instead of decoding every frame.
  Times count from the stream's first frame (its start time), not from timestamp 0.
- Audio: PyAV decodes any container/codec, resamples to float32 at ``sample_rate`` and averages the
  channels to mono.

Errors a file can cause (missing, empty, not decodable) raise :class:`MediaError` with one line that
names the file and what was expected; the runner records it on that sample and goes on.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from typing import Any, Sequence

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
ORIENTATION = 0x0112  # EXIF tag: 1 = as stored, 2-8 = mirrored and/or turned
TURNED = (5, 6, 7, 8)  # orientations that turn the image by 90°: width and height swap


def exif_orientation(im) -> int:
    """The EXIF orientation of an opened (not yet loaded) image, from its header alone.

    A PNG's ``getexif()`` decodes the whole image when the header has no eXIf chunk (to look for one
    after the pixel data), so a PNG's orientation is read only from an eXIf chunk before the pixels.
    `load_image` and `image_size` both go by this, so a box in pixels and the image agree."""
    if im.format == "PNG" and "exif" not in im.info:
        return 1
    try:
        value = int(im.getexif().get(ORIENTATION, 1) or 1)
    except Exception:  # a damaged EXIF block: shown as stored, as viewers do
        return 1
    return value if 1 <= value <= 8 else 1


def image_size(path: str) -> tuple[int, int]:
    """(width, height) of the image `load_image` returns, from the header (no pixel decode): the
    stored size, swapped for an EXIF orientation that turns it by 90°."""
    from PIL import Image

    with Image.open(path) as im:
        width, height = im.size
        return (height, width) if exif_orientation(im) in TURNED else (width, height)


def stored_size(path: str) -> tuple[int, int, int]:
    """(width, height, EXIF orientation) of an image as stored, before `load_image` turns it."""
    from PIL import Image

    with Image.open(path) as im:
        return im.size[0], im.size[1], exif_orientation(im)


# where a point (x, y) of a stored W x H image lands in the image `load_image` returns, per EXIF
# orientation (PIL's exif_transpose: 2 mirror, 3 rotate 180, 4 flip, 5 transpose, 6 rotate 90
# clockwise, 7 transverse, 8 rotate 90 counter-clockwise)
_ORIENT = {
    1: lambda x, y, w, h: (x, y), 2: lambda x, y, w, h: (w - x, y), 3: lambda x, y, w, h: (w - x, h - y),
    4: lambda x, y, w, h: (x, h - y), 5: lambda x, y, w, h: (y, x), 6: lambda x, y, w, h: (h - y, x),
    7: lambda x, y, w, h: (h - y, w - x), 8: lambda x, y, w, h: (y, w - x),
}


def oriented_box(box_xyxy: Sequence[float], width: int, height: int, orientation: int) -> list[float]:
    """A box ``[x1, y1, x2, y2]`` in pixels of the image as stored (``width`` x ``height``), in pixels of
    the image `load_image` returns (turned by its EXIF orientation): what a benchmark's box, drawn on
    the stored pixels, covers in the picture the model is shown."""
    f = _ORIENT.get(int(orientation), _ORIENT[1])
    x1, y1, x2, y2 = box_xyxy
    (ax, ay), (bx, by) = f(x1, y1, width, height), f(x2, y2, width, height)
    return [min(ax, bx), min(ay, by), max(ax, bx), max(ay, by)]


def to_rgb(im):
    """An RGB copy of a loaded PIL image, as a viewer shows it.

    - Transparency (an alpha channel, a palette with alpha, a transparent colour) is composited on
      white, as transformers' ``convert_to_rgb`` does; a plain RGB conversion drops the alpha and shows
      what lies under it, often black (black text on a transparent background turns all black).
    - 16-bit and float grayscale, which PIL's conversion clips to 255 (a 16-bit PNG turns white), is
      scaled to 8 bits: ``I;16*`` keeps the high byte (``>> 8``: 257·v gives back v); ``I`` (32-bit,
      where PIL puts 16-bit PNG/TIFF data) the same when any value exceeds 255, else it holds 8-bit
      values and is clipped to 0..255; ``F`` is taken as 0..1 when its maximum is at most 1, else as
      0..255 (NaN as 0).
    """
    from PIL import Image

    if im.mode.startswith("I") or im.mode == "F":
        im = Image.fromarray(_gray_to_8bit(np.asarray(im), im.mode), "L")
    if im.mode in ("RGBA", "RGBa", "LA", "La", "PA") or "transparency" in im.info or (
            im.mode == "P" and im.palette is not None and im.palette.mode == "RGBA"):
        rgba = im.convert("RGBA")  # P with byte transparency: no warning on this path (unlike RGB)
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(white, rgba).convert("RGB")
    return im.convert("RGB")


def _gray_to_8bit(a: np.ndarray, mode: str) -> np.ndarray:
    if mode == "F":
        a = np.nan_to_num(a.astype(np.float64), nan=0.0)
        if a.size and a.max() <= 1.0:
            a = a * 255.0
        return np.clip(np.rint(a), 0, 255).astype(np.uint8)
    a = a.astype(np.int64)
    if mode.startswith("I;16") or (a.size and a.max() > 255):
        return (np.clip(a, 0, 65535) >> 8).astype(np.uint8)
    return np.clip(a, 0, 255).astype(np.uint8)


def load_image(path: str):
    """Open an image as RGB PIL.Image (see `to_rgb`), turned by its EXIF orientation as
    ``ImageOps.exif_transpose`` does (and as Hugging Face datasets decode images); MediaError if it is
    missing or not a decodable image."""
    from PIL import Image, ImageOps, UnidentifiedImageError

    _require_file(path, "image")
    try:
        with Image.open(path) as im:
            turn = exif_orientation(im) != 1  # from the header, as image_size reads it
            im.load()
            return to_rgb(ImageOps.exif_transpose(im) if turn else im)
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
    start_s: float = 0.0  # the stream's first timestamp: sample times count from here


def probe_video(path: str) -> VideoInfo:
    """Duration, rate, frame count and size of the first video stream.

    The duration is the stream's span from its start time (a clip cut from a stream can begin at
    100 s). A header without one (WebM/MKV written live) or a Matroska file not starting at 0 (whose
    segment duration some muxers count from 0, others from the first frame) has its packets' timestamps
    read instead (demuxed, not decoded); a file with no duration and no timestamps is a MediaError, not
    a one-frame clip."""
    import av

    _require_file(path, "video")
    try:
        with av.open(path) as c:
            if not c.streams.video:
                raise MediaError(f"video file has no video stream: {path}")
            s = c.streams.video[0]
            rate = float(s.average_rate or s.guessed_rate or 0) or 0.0
            start = _start_time(c, s)
            if s.duration is not None and s.time_base is not None:
                duration = float(s.duration * s.time_base)
            elif c.duration is not None and (start == 0.0 or "matroska" not in c.format.name):
                duration = c.duration / 1_000_000
            else:
                duration = 0.0
            n = s.frames or (int(round(duration * rate)) if rate else 0)
            if duration <= 0:
                scanned = _scan_packets(c, s, rate)
                if scanned is None:
                    raise MediaError(f"video has no duration in its header and no frame timestamps: {path}")
                first, end, n = scanned
                start = start if s.start_time is not None else first
                duration = end - start
            return VideoInfo(duration, rate, n, s.codec_context.width, s.codec_context.height, start)
    except MediaError:
        raise
    except Exception as e:  # av raises many error types for damaged files
        raise MediaError(f"video file is corrupt or not a video (expected MP4/MKV/…): {path}: {e}") from None


def _start_time(c, s) -> float:
    """The stream's first timestamp in seconds (its start time, else the container's, else 0)."""
    if s.start_time is not None and s.time_base is not None:
        return float(s.start_time * s.time_base)
    if c.start_time is not None:
        return c.start_time / 1_000_000
    return 0.0


def _scan_packets(c, s, rate: float) -> tuple[float, float, int] | None:
    """(first timestamp, end of the last frame, frame count) from the stream's packets, demuxed without
    decoding; None when no packet has a timestamp."""
    tb = s.time_base
    first = end = None
    n = 0
    for pkt in c.demux(s):
        ts = pkt.pts if pkt.pts is not None else pkt.dts
        if ts is None or pkt.size == 0:  # the demuxer's closing empty packet
            continue
        n += 1
        t = float(ts * tb)
        length = float(pkt.duration * tb) if pkt.duration else (1.0 / rate if rate else 0.0)
        first = t if first is None else min(first, t)
        end = t + length if end is None else max(end, t + length)
    if first is None or end is None:
        return None
    return first, end, n


def frame_times(duration_s: float, fps: float, max_frames: int) -> list[float]:
    """Times (s) to sample: every 1/fps seconds from the middle of the first interval, thinned to at
    most ``max_frames`` evenly spread over the clip."""
    if fps <= 0 and max_frames <= 0:
        raise ValueError(f"fps or max_frames must be > 0 to sample a video, got fps={fps}, max_frames={max_frames}")
    if duration_s <= 0:
        return [0.0]
    n = max(1, int(math.floor(duration_s * fps))) if fps > 0 else max_frames
    n = min(n, max_frames) if max_frames > 0 else n
    step = duration_s / n
    return [step * (i + 0.5) for i in range(n)]


def sample_frames(path: str, fps: float = 1.0, max_frames: int = 64, *, decode_all: bool = False) -> tuple[np.ndarray, list[float]]:
    """Decode frames at the times chosen by :func:`frame_times`.

    Returns (frames uint8[N, H, W, 3], timestamps in seconds from the stream's start). Times are
    relative to the stream's start time (`probe_video`'s ``start_s``): frame timestamps are absolute,
    and a clip starting at 100 s would otherwise give its first frame N times. ``decode_all=True``
    decodes every frame and picks from them: the slow reference that the fast path is tested and
    benchmarked against.
    """
    import av

    info = probe_video(path)
    times = frame_times(info.duration_s, fps, max_frames)
    t0 = info.start_s
    try:
        with av.open(path) as c:
            s = c.streams.video[0]
            s.thread_type = "AUTO"
            tb = s.time_base
            if decode_all:
                return _pick_from_all(c, s, times, t0, path)
            frames = _Frames(len(times), path)
            gap = (times[1] - times[0]) if len(times) > 1 else info.duration_s
            # Dense sampling (wanted frames closer than ~2 s): one forward decode beats seeking.
            if gap < 2.0:
                return _pick_forward(c, s, times, t0, path)
            for t in times:
                c.seek(int((t0 + t) / float(tb)), stream=s, backward=True, any_frame=False)
                best = None
                for frame in c.decode(s):
                    ft = _frame_time(frame, tb, t0)
                    best = frame, ft
                    if ft + 0.5 / max(info.fps, 1e-6) >= t:
                        break
                if best is None:
                    raise MediaError(f"video has no decodable frame near {t:.2f}s: {path}")
                frames.add(best[0].to_ndarray(format="rgb24"), best[1])
            return frames.result()
    except MediaError:
        raise
    except Exception as e:
        raise MediaError(f"video file could not be decoded: {path}: {e}") from None


class _Frames:
    """The sampled frames, written into one preallocated uint8[N, H, W, 3] array as they are decoded,
    so they are held once (64 frames of 4K are 1.6 GB), not as a list and then its stacked copy."""

    def __init__(self, n: int, path: str) -> None:
        self.n, self.path, self.k = n, path, 0
        self.out: np.ndarray | None = None
        self.stamps: list[float] = []

    def add(self, rgb: np.ndarray, stamp: float) -> None:
        if self.out is None:
            self.out = np.empty((self.n, *rgb.shape), dtype=np.uint8)
        elif rgb.shape != self.out.shape[1:]:
            raise MediaError(f"video changes frame size midway ({self.out.shape[2]}x{self.out.shape[1]} to "
                             f"{rgb.shape[1]}x{rgb.shape[0]}): {self.path}")
        self.out[self.k] = rgb
        self.k += 1
        self.stamps.append(stamp)

    def result(self) -> tuple[np.ndarray, list[float]]:
        assert self.out is not None and self.k == self.n
        return self.out, self.stamps


def _frame_time(frame, tb, t0: float) -> float:
    """A decoded frame's time in seconds from the stream's start (0 when it has no timestamp)."""
    return float(frame.pts * tb) - t0 if frame.pts is not None else 0.0


def _pick_forward(c, s, times: list[float], t0: float, path: str) -> tuple[np.ndarray, list[float]]:
    tb = s.time_base
    frames = _Frames(len(times), path)
    i = 0
    last = None
    for frame in c.decode(s):
        ft = _frame_time(frame, tb, t0)
        last = frame, ft
        if i < len(times) and ft + 1e-6 >= times[i] - _half_frame(s):
            rgb = frame.to_ndarray(format="rgb24")  # once, however many wanted times it covers
            while i < len(times) and ft + 1e-6 >= times[i] - _half_frame(s):
                frames.add(rgb, ft)
                i += 1
        if i == len(times):
            break
    if last is None:
        raise MediaError(f"video has no decodable frames: {path}")
    if i < len(times):  # clip shorter than its header claims: its last frame stands in
        rgb = last[0].to_ndarray(format="rgb24")
        while i < len(times):
            frames.add(rgb, last[1])
            i += 1
    return frames.result()


def _half_frame(s) -> float:
    rate = float(s.average_rate or s.guessed_rate or 25)
    return 0.5 / rate


def _pick_from_all(c, s, times: list[float], t0: float, path: str) -> tuple[np.ndarray, list[float]]:
    tb = s.time_base
    decoded = [(_frame_time(f, tb, t0), f.to_ndarray(format="rgb24")) for f in c.decode(s)]
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
    """Decode any audio file to mono float32 in [-1, 1] at ``sample_rate``.

    The resampler changes only rate and sample format; the channels are then averaged, as the audio
    encoder averages a (channels, N) waveform. swresample's own downmix sums them at -3 dB, which takes
    a stereo peak of 0.9 to 1.27 and a 5.1 one past 3. A stream whose rate, layout or format changes
    midway (concatenated MP3s) gets a fresh resampler at each change, the previous one flushed first.
    """
    import av

    _require_file(path, "audio")
    try:
        with av.open(path) as c:
            if not c.streams.audio:
                raise MediaError(f"audio file has no audio stream: {path}")
            s = c.streams.audio[0]
            resampler, setup = None, None
            chunks = []
            for frame in c.decode(s):
                frame_setup = (frame.format.name, frame.layout.name, frame.sample_rate)
                if frame_setup != setup:
                    if resampler is not None:
                        chunks += [_mono(out) for out in resampler.resample(None)]
                    resampler, setup = av.AudioResampler(format="flt", rate=sample_rate), frame_setup
                chunks += [_mono(out) for out in resampler.resample(frame)]
            if resampler is not None:
                chunks += [_mono(out) for out in resampler.resample(None)]
    except MediaError:
        raise
    except Exception as e:
        raise MediaError(f"audio file is corrupt or not audio (expected WAV/FLAC/MP3/…): {path}: {e}") from None
    if not chunks:
        raise MediaError(f"audio file has no decodable samples: {path}")
    wave = np.concatenate(chunks).astype(np.float32)
    if not np.isfinite(wave).all():  # through any model: NaN logits, an answer of NUL bytes, not an error
        raise MediaError(f"audio file has NaN or infinite samples (expected finite values in [-1, 1]): {path}")
    return wave


def _mono(frame) -> np.ndarray:
    """A packed float frame's samples, its channels averaged."""
    channels = frame.layout.nb_channels
    samples = frame.to_ndarray().reshape(-1, channels)
    return samples[:, 0] if channels == 1 else samples.mean(axis=1, dtype=np.float32)


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
    "MediaError", "load_image", "to_rgb", "exif_orientation", "image_size", "probe_video", "frame_times",
    "sample_frames", "load_audio", "check", "VideoInfo",
]
