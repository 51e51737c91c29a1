"""evalsuite.media decoding of the files real benchmarks ship: streams that do not start at 0, headers
without a duration, transparent / 16-bit / EXIF-turned images, multichannel audio and audio whose
format changes midway. Every file is a tiny one written here."""

from __future__ import annotations

import fractions
import io
import warnings

import numpy as np
import pytest

from evalsuite import media
from evalsuite.media import MediaError


# ---- video --------------------------------------------------------------------------------------
def _level(i: int) -> int:
    """Frame i's grey level (i < 44): far enough apart to tell frames apart through MPEG-4's loss."""
    return 20 + 5 * i


def _write_video(path, n: int, fps: int, offset_s: float = 0.0, fmt: str | None = None, gop: int = 4,
                 options: dict | None = None) -> str:
    """``n`` flat frames at ``fps`` whose first timestamp is ``offset_s`` (a clip cut from a stream)."""
    import av

    with av.open(str(path), "w", format=fmt, options=options or {}) as c:
        s = c.add_stream("mpeg4", rate=fps)
        s.width, s.height, s.pix_fmt = 32, 16, "yuv420p"
        s.codec_context.gop_size = gop
        for i in range(n):
            frame = av.VideoFrame.from_ndarray(np.full((16, 32, 3), _level(i), np.uint8), format="rgb24")
            frame.pts, frame.time_base = int(round(offset_s * fps)) + i, fractions.Fraction(1, fps)
            for pkt in s.encode(frame):
                c.mux(pkt)
        for pkt in s.encode():
            c.mux(pkt)
    return str(path)


def _indices(frames: np.ndarray, n: int) -> list[int]:
    """Which source frame each decoded frame is (nearest grey level)."""
    levels = np.array([_level(i) for i in range(n)])
    return [int(np.argmin(np.abs(levels - f.mean()))) for f in frames]


@pytest.mark.parametrize("fmt,ext", [("mp4", "mp4"), ("matroska", "mkv"), ("mpegts", "ts")])
@pytest.mark.parametrize("offset", [0.0, 1.5, 100.0])
def test_sampling_counts_from_the_streams_start(tmp_path, fmt, ext, offset):
    # 16 frames at 4 fps (4 s) sampled at 2 fps: the middle of each half second, whatever the first pts.
    path = _write_video(tmp_path / f"clip.{ext}", 16, 4, offset, fmt)
    frames, stamps = media.sample_frames(path, fps=2.0, max_frames=64)
    assert _indices(frames, 16) == [1, 3, 5, 7, 9, 11, 13, 15]
    assert stamps == pytest.approx([0.25, 0.75, 1.25, 1.75, 2.25, 2.75, 3.25, 3.75])  # from the start
    ref, ref_stamps = media.sample_frames(path, fps=2.0, max_frames=64, decode_all=True)
    assert np.array_equal(frames, ref) and stamps == ref_stamps
    info = media.probe_video(path)
    assert info.duration_s == pytest.approx(4.0)
    assert info.start_s == pytest.approx(offset, abs=0.6)  # MPEG-TS may delay the start a little


@pytest.mark.parametrize("offset", [0.0, 100.0])
def test_seeking_path_equals_decoding_all_on_an_offset_clip(tmp_path, offset):
    # 40 s at 1 fps sampled every 10 s: far apart, so the fast path seeks to keyframes.
    path = _write_video(tmp_path / "long.mp4", 40, 1, offset, gop=4)
    frames, stamps = media.sample_frames(path, fps=0.1, max_frames=64)
    assert _indices(frames, 40) == [5, 15, 25, 35]
    assert stamps == pytest.approx([5.0, 15.0, 25.0, 35.0])
    ref, ref_stamps = media.sample_frames(path, fps=0.1, max_frames=64, decode_all=True)
    assert np.array_equal(frames, ref) and stamps == ref_stamps


_PEAK_SCRIPT = """
import resource, sys
import numpy as np
from evalsuite import media
base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
frames, stamps = media.sample_frames(sys.argv[1], fps=float(sys.argv[2]), max_frames=64)
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(frames.nbytes, (peak - base) * 1024, len(stamps))
"""


@pytest.mark.parametrize("fps", [4.0, 0.25])  # dense: one forward decode; sparse: a seek per frame
def test_sampled_frames_are_held_once(tmp_path, fps):
    """The frames go into one array as they are decoded: the peak is one copy of them, not a list of
    decoded frames and then their stacked copy (64 frames of 4K were 3.2 GB at the end, not 1.6). A
    fresh process, so its peak resident memory is this call's."""
    import os
    import subprocess
    import sys

    import av

    path = tmp_path / "big.mp4"
    with av.open(str(path), "w") as c:
        s = c.add_stream("mpeg4", rate=4)
        s.width, s.height, s.pix_fmt = 1280, 720, "yuv420p"
        s.codec_context.gop_size = 4
        for i in range(64):
            frame = av.VideoFrame.from_ndarray(np.full((720, 1280, 3), 3 * i, np.uint8), format="rgb24")
            for pkt in s.encode(frame):
                c.mux(pkt)
        for pkt in s.encode():
            c.mux(pkt)
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    out = subprocess.run([sys.executable, "-c", _PEAK_SCRIPT, str(path), str(fps)], capture_output=True, text=True,
                         check=True, cwd=root, env={**os.environ, "PYTHONPATH": root}).stdout.split()
    nbytes, grew, n = map(int, out)
    assert n == (64 if fps == 4.0 else 4) and nbytes == n * 720 * 1280 * 3
    assert grew < nbytes + 48 * 2**20  # one copy, the decoder's buffers and a frame in flight
    frames, stamps = media.sample_frames(str(path), fps=fps, max_frames=64)
    ref, ref_stamps = media.sample_frames(str(path), fps=fps, max_frames=64, decode_all=True)
    assert np.array_equal(frames, ref) and stamps == ref_stamps


@pytest.mark.parametrize("fmt,ext", [("matroska", "mkv"), ("webm", "webm")])
def test_a_header_without_duration_is_measured_from_the_packets(tmp_path, fmt, ext):
    if fmt == "webm":  # WebM takes VP8/VP9/AV1 only
        pytest.importorskip("av")
        import av

        if "libvpx-vp9" not in av.codecs_available:
            pytest.skip("no VP9 encoder in this PyAV build")
        path = str(tmp_path / f"live.{ext}")
        with av.open(path, "w", format=fmt, options={"live": "1"}) as c:
            s = c.add_stream("libvpx-vp9", rate=4)
            s.width, s.height, s.pix_fmt = 32, 16, "yuv420p"
            for i in range(40):
                frame = av.VideoFrame.from_ndarray(np.full((16, 32, 3), _level(i), np.uint8), format="rgb24")
                frame.pts, frame.time_base = i, fractions.Fraction(1, 4)
                for pkt in s.encode(frame):
                    c.mux(pkt)
            for pkt in s.encode():
                c.mux(pkt)
    else:
        path = _write_video(tmp_path / f"live.{ext}", 40, 4, fmt=fmt, options={"live": "1"})
    info = media.probe_video(path)  # "live": no duration written, as a recorder streaming it writes
    assert info.duration_s == pytest.approx(10.0) and info.n_frames == 40
    frames, stamps = media.sample_frames(path, fps=1.0, max_frames=64)
    assert len(frames) == 10  # not one frame for an unknown duration
    assert stamps == pytest.approx([0.5 + k for k in range(10)])
    assert _indices(frames, 40) == [2 + 4 * k for k in range(10)]


def test_no_duration_and_no_timestamps_is_one_clear_error(tmp_path, monkeypatch):
    path = _write_video(tmp_path / "live.mkv", 8, 4, fmt="matroska", options={"live": "1"})
    monkeypatch.setattr(media, "_scan_packets", lambda c, s, rate: None)  # as if no packet had a pts
    with pytest.raises(MediaError) as e:
        media.sample_frames(path)
    assert "no duration" in str(e.value) and path in str(e.value) and "\n" not in str(e.value)


# ---- images -------------------------------------------------------------------------------------
def _text_like(mode: str, fg, bg, size=(24, 12)):
    """A ``mode`` image of ``bg`` with a ``fg`` block in its left half (text on a background)."""
    from PIL import Image, ImageDraw

    im = Image.new(mode, size, bg)
    ImageDraw.Draw(im).rectangle((2, 2, 9, 9), fill=fg)
    return im


def _save(im, path, **kw) -> str:
    im.save(path, **kw)
    return str(path)


@pytest.mark.parametrize("mode,fg,bg", [
    ("RGBA", (0, 0, 0, 255), (0, 0, 0, 0)),  # black text on a transparent background (black under it)
    ("LA", (0, 255), (0, 0)),
])
def test_transparent_areas_are_white(tmp_path, mode, fg, bg):
    a = np.asarray(media.load_image(_save(_text_like(mode, fg, bg), tmp_path / "t.png")))
    assert (a[5, 5] == 0).all() and (a[0, 20] == 255).all()  # text black, background white


def test_half_transparent_pixels_blend_with_white(tmp_path):
    a = np.asarray(media.load_image(_save(_text_like("RGBA", (0, 0, 0, 255), (0, 0, 0, 128)), tmp_path / "t.png")))
    assert abs(int(a[0, 20, 0]) - 127) <= 1


def test_palette_transparency_is_white_and_silent(tmp_path):
    from PIL import Image

    p = _text_like("RGB", (0, 0, 0), (255, 0, 0)).convert("P", palette=Image.Palette.ADAPTIVE, colors=4)
    index = int(np.asarray(p)[0, 20])  # the background's palette entry, made transparent
    path = _save(p, tmp_path / "p.png", transparency=index)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # PIL warns when such an image is converted straight to RGB
        a = np.asarray(media.load_image(path))
    assert (a[0, 20] == 255).all() and (a[5, 5] == 0).all()


def test_opaque_images_convert_as_before(tmp_path):
    from PIL import Image

    for im in (_text_like("RGB", (10, 20, 30), (200, 100, 50)), _text_like("L", 7, 250),
               _text_like("RGB", (10, 20, 30), (200, 100, 50)).convert("P", palette=Image.Palette.ADAPTIVE)):
        path = _save(im, tmp_path / f"{im.mode}.png")
        with Image.open(path) as raw:
            assert np.array_equal(np.asarray(media.load_image(path)), np.asarray(raw.convert("RGB")))


def test_16_bit_grayscale_keeps_its_levels(tmp_path):
    from PIL import Image

    levels = np.array([[0, 64, 128, 255]], np.uint16).repeat(4, axis=0)
    path = _save(Image.fromarray(levels * 257), tmp_path / "g16.png")  # 16-bit PNG: 257·v is v at 8 bits
    with Image.open(path) as raw:
        assert raw.mode.startswith("I")
    a = np.asarray(media.load_image(path))
    assert np.array_equal(a[..., 0], levels.astype(np.uint8)) and np.array_equal(a[..., 0], a[..., 2])


@pytest.mark.parametrize("mode,values,expected", [
    ("I;16", [0, 32896, 65535], [0, 128, 255]),
    ("I", [0, 32896, 65535], [0, 128, 255]),  # 16-bit data in a 32-bit image (any value > 255)
    ("I", [0, 128, 255], [0, 128, 255]),  # 8-bit values in a 32-bit image
    ("I", [-5, 128, 70000], [0, 0, 255]),  # > 255: read as 16-bit, clipped to 0..65535
    ("F", [0.0, 0.5, 1.0], [0, 128, 255]),  # 0..1 floats
    ("F", [-3.0, 100.0, 300.0], [0, 100, 255]),  # 0..255 floats
])
def test_wide_grayscale_modes_scale_to_8_bits(tmp_path, mode, values, expected):
    from PIL import Image

    dtype = {"I;16": np.uint16, "I": np.int32, "F": np.float32}[mode]
    path = _save(Image.fromarray(np.array([values], dtype=dtype)), tmp_path / "w.tif")
    with Image.open(path) as raw:
        assert raw.mode == mode
    a = np.asarray(media.load_image(path))
    assert a.shape == (1, 3, 3) and a[0, :, 0].tolist() == expected


def _exif_jpeg(path, orientation: int) -> str:
    from PIL import Image

    im = Image.new("RGB", (40, 20), (255, 255, 255))
    im.paste((255, 0, 0), (0, 0, 10, 10))  # a red mark top-left as stored
    exif = Image.Exif()
    exif[0x0112] = orientation  # EXIF Orientation
    im.save(path, exif=exif.tobytes(), quality=95)
    return str(path)


def test_exif_orientation_turns_the_image_and_its_size(tmp_path):
    from evalsuite.tasks.official._grounding import image_size

    path = _exif_jpeg(tmp_path / "o6.jpg", 6)  # stored landscape, shown turned 90° clockwise
    im = media.load_image(path)
    assert im.size == (20, 40) == media.image_size(path)
    assert image_size(path) == (40, 20) and media.stored_size(path) == (40, 20, 6)  # boxes are on stored pixels
    a = np.asarray(im).astype(int)
    assert a[2, 17, 0] > 200 and a[2, 17, 1] < 60  # the mark is now top-right
    plain = _exif_jpeg(tmp_path / "o1.jpg", 1)
    assert media.load_image(plain).size == (40, 20) == image_size(plain)


def test_image_size_reads_only_the_header(tmp_path, monkeypatch):
    from PIL import ImageFile

    from evalsuite.tasks.official._grounding import image_size

    png = _save(_text_like("RGB", (0, 0, 0), (255, 255, 255), size=(30, 17)), tmp_path / "s.png")
    jpg = _exif_jpeg(tmp_path / "o8.jpg", 8)

    def no_decode(self):
        raise AssertionError("image_size decoded the pixels")

    monkeypatch.setattr(ImageFile.ImageFile, "load", no_decode)
    assert image_size(png) == (30, 17) and image_size(jpg) == (40, 20)  # as stored
    assert media.image_size(str(jpg)) == (20, 40)  # as shown


# ---- audio --------------------------------------------------------------------------------------
def _tone(rate: int, seconds: float = 0.5, hz: float = 440.0, amp: float = 0.9) -> np.ndarray:
    t = np.arange(int(rate * seconds)) / rate
    return (amp * np.sin(2 * np.pi * hz * t)).astype(np.float32)


@pytest.mark.parametrize("channels", [2, 6])
def test_channels_are_averaged_and_stay_in_range(tmp_path, channels):
    import soundfile as sf

    x = _tone(16000)
    sf.write(tmp_path / "m.wav", np.stack([x] * channels, 1), 16000, subtype="FLOAT")
    y = media.load_audio(str(tmp_path / "m.wav"), 16000)
    assert np.abs(y).max() <= 1.0
    np.testing.assert_allclose(y, x, atol=1e-6)  # identical channels: the mono signal itself


def test_stereo_downmix_is_the_channel_mean(tmp_path):
    import soundfile as sf

    left, right = _tone(16000, hz=440), _tone(16000, hz=1000, amp=0.3)
    sf.write(tmp_path / "s.wav", np.stack([left, right], 1), 16000, subtype="FLOAT")
    y = media.load_audio(str(tmp_path / "s.wav"), 16000)
    np.testing.assert_allclose(y, (left + right) / 2, atol=1e-6)
    # resampled too: the same mean, at the new rate
    y8 = media.load_audio(str(tmp_path / "s.wav"), 8000)
    assert len(y8) == pytest.approx(len(y) / 2, abs=40) and np.abs(y8).max() <= 0.61


def test_identical_stereo_channels_decode_as_the_mono_file(tmp_path):
    import soundfile as sf

    x = _tone(44100)
    sf.write(tmp_path / "m.wav", x, 44100, subtype="PCM_16")
    sf.write(tmp_path / "s.wav", np.stack([x, x], 1), 44100, subtype="PCM_16")
    mono = media.load_audio(str(tmp_path / "m.wav"), 16000)
    assert np.array_equal(mono, media.load_audio(str(tmp_path / "s.wav"), 16000))
    assert len(mono) == pytest.approx(8000, abs=2) and np.abs(mono).max() < 0.95


def _mp2(rate: int, seconds: float) -> bytes:
    import av

    buf = io.BytesIO()
    with av.open(buf, "w", format="mp2") as c:
        s = c.add_stream("mp2", rate=rate, layout="mono")
        frame = av.AudioFrame.from_ndarray((_tone(rate, seconds, amp=0.5) * 32767).astype(np.int16)[None],
                                           format="s16", layout="mono")
        frame.sample_rate = rate
        for pkt in s.encode(frame):
            c.mux(pkt)
        for pkt in s.encode():
            c.mux(pkt)
    return buf.getvalue()


def test_a_rate_change_midway_is_decoded_not_called_corrupt(tmp_path):
    path = tmp_path / "chained.mp3"  # two MPEG audio files back to back, 44.1 kHz then 22.05 kHz
    path.write_bytes(_mp2(44100, 1.0) + _mp2(22050, 1.0))
    y = media.load_audio(str(path), 16000)
    assert len(y) == pytest.approx(32000, rel=0.05)  # both seconds, the second one not lost
    second = y[20000:30000]
    assert 0.4 < np.abs(second).max() <= 0.6  # the 22.05 kHz part's tone, resampled


def test_broken_audio_is_still_one_line(tmp_path):
    path = tmp_path / "bad.mp3"
    path.write_bytes(b"not audio at all" * 10)
    with pytest.raises(MediaError) as e:
        media.load_audio(str(path))
    assert "\n" not in str(e.value) and str(path) in str(e.value)


def test_audio_with_nan_or_infinite_samples_is_one_line_for_every_backend(tmp_path):
    """`load_audio` is what every backend reads audio with (reference, hf, cascade): a float WAV with
    NaN or inf samples is refused there, not answered with NaN logits."""
    import soundfile

    for bad in (float("nan"), float("inf")):
        wave = np.full(1600, 0.25, dtype=np.float32)
        wave[10:20] = bad
        path = tmp_path / f"broken_{bad}.wav"
        soundfile.write(path, wave, 16000, subtype="FLOAT")
        with pytest.raises(MediaError, match=rf"^audio file has NaN or infinite samples \(expected finite values in "
                                             rf"\[-1, 1\]\): .*broken_{bad}\.wav$"):
            media.load_audio(str(path))
