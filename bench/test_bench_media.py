"""Video decoding: the media pipeline's seek-to-keyframe sampling vs decoding every frame.

A 20-minute 96×64 H.264 clip at 2 fps with a keyframe every 10 s (a static scene with sparse
changes, like the long-video task's), sampled at 32 frames, as the long-video task does.
"""

from __future__ import annotations

import numpy as np
import pytest

from evalsuite import media

DURATION_S = 1200
FPS = 2


@pytest.fixture(scope="module")
def long_clip(tmp_path_factory):
    import av

    path = tmp_path_factory.mktemp("bench") / "long.mp4"
    with av.open(str(path), "w") as c:
        s = c.add_stream("libx264", rate=FPS)
        s.width, s.height, s.pix_fmt = 96, 64, "yuv420p"
        s.options = {"g": str(10 * FPS), "preset": "ultrafast"}
        for i in range(DURATION_S * FPS):
            img = np.full((64, 96, 3), 40, np.uint8)
            k = (i // (60 * FPS)) % 6
            img[10:30, 10 + 10 * k : 30 + 10 * k] = (200, 50, 50)
            for p in s.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
                c.mux(p)
        for p in s.encode():
            c.mux(p)
    return str(path)


def _run(benchmark, path, decode_all, role=None):
    frames, stamps = benchmark(media.sample_frames, path, fps=1.0, max_frames=32, decode_all=decode_all)
    assert frames.shape[0] == 32
    if benchmark.stats is None:  # --benchmark-disable (pytest's default here): one untimed call, the check above
        return frames
    per_call = benchmark.stats.stats.median
    benchmark.extra_info.update({
        "frames/s (sampled)": 32 / per_call,
        "video-hours/hour": (DURATION_S / 3600) / (per_call / 3600),
    })
    if role:
        benchmark.extra_info["role"] = role
    return frames


def test_decode_every_frame(benchmark, long_clip):
    benchmark.group = "sample 32 frames from a 20-min clip"
    _run(benchmark, long_clip, True, role="peer")


def test_seek_keyframes(benchmark, long_clip):
    benchmark.group = "sample 32 frames from a 20-min clip"
    # Checked before it is timed (a failed check records no time, so no speedup reaches the JSON): the
    # same frames as decoding every frame (within a keyframe-interval's worth of position, identical
    # content on a static scene).
    fast, _ = media.sample_frames(long_clip, fps=1.0, max_frames=32, decode_all=False)
    ref, _ = media.sample_frames(long_clip, fps=1.0, max_frames=32, decode_all=True)
    assert np.abs(fast.astype(int) - ref.astype(int)).mean() < 2.0
    _run(benchmark, long_clip, False)
