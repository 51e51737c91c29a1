"""Video encoder: tubelets, Efficient Video Sampling (kept tokens, positions, counts), file decoding."""

from __future__ import annotations

import math
from pathlib import Path

import av
import numpy as np
import pytest
import torch

from evalsuite.media import MediaError
from evalsuite.model.card import encoder_params
from evalsuite.model.config_encoders import VideoConfig
from evalsuite.model.video import (
    VideoEncoder,
    apply_evs,
    evs_keep_mask,
    pixel_change,
    preprocess_frames,
    video_tokens,
)
from evalsuite.model.vision import VisionEncoder

CFG = VideoConfig.preset("tiny")  # 8-px patches, 2×2 merge, fps 4
H, W = 48, 64  # 6×8 patches (inside the 16..64 frame budget) → 3×4 = 12 tokens per tubelet
MOVING = (1, 2)  # merged-grid (h, w) of the one changing region: pixels [16:32, 32:48]


def _clip(n: int, seed: int = 0) -> np.ndarray:
    """A static textured background with one 16×16 block whose brightness changes every frame."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:H, 0:W]
    base = np.stack([(yy * 4) % 256, (xx * 3) % 256, ((yy + xx) * 2) % 256], -1).astype(np.uint8)
    base = np.clip(base.astype(int) + rng.integers(-8, 8, base.shape), 0, 255).astype(np.uint8)
    frames = np.repeat(base[None], n, axis=0)
    for i in range(n):
        frames[i, 16:32, 32:48] = (40 + 50 * i) % 256
    return frames


def _write_video(path: Path, frames: np.ndarray, fps: int) -> str:
    codec = "libx264" if "libx264" in av.codecs_available else "mpeg4"
    with av.open(str(path), "w") as c:
        s = c.add_stream(codec, rate=fps)
        s.width, s.height, s.pix_fmt = frames.shape[2], frames.shape[1], "yuv420p"
        s.options = {"crf": "4"} if codec == "libx264" else {"qscale": "2"}
        for f in frames:
            for pkt in s.encode(av.VideoFrame.from_ndarray(f, format="rgb24")):
                c.mux(pkt)
        for pkt in s.encode():
            c.mux(pkt)
    return str(path)


@pytest.fixture(scope="module")
def encoder() -> VideoEncoder:
    torch.manual_seed(0)
    return VideoEncoder(CFG).eval()


@pytest.fixture(scope="module")
def clip_path(tmp_path_factory: pytest.TempPathFactory) -> str:
    # 2 s at 8 fps; the encoder samples 4 fps → 8 frames → 4 tubelets.
    return _write_video(tmp_path_factory.mktemp("video") / "clip.mp4", _clip(16), fps=8)


@pytest.mark.parametrize("q,kept", [(0.5, 12 + 36 - 18), (0.75, 12 + 36 - 27)])
def test_evs_keeps_changing_tokens_and_first_tubelet(encoder: VideoEncoder, clip_path: str, q: float, kept: int) -> None:
    with torch.no_grad():
        out = encoder.encode_file(clip_path, evs_rate=q)
    info = out.info
    print("EVS info", {k: v for k, v in info.items() if k != "video_timestamps"})
    assert info["video_frames"] == 8 and info["video_tubelets"] == 4 and info["video_grid"] == [6, 8]
    assert info["video_tokens_before_evs"] == 48
    assert info["video_tokens_after_evs"] == kept == out.tokens.shape[0]
    assert video_tokens(8, H, W, CFG, q) == (48, kept)
    pos = {tuple(p) for p in out.positions.tolist()}
    assert {(0, h, w) for h in range(3) for w in range(4)} <= pos  # tubelet 0 whole
    assert {(t, *MOVING) for t in range(1, 4)} <= pos  # the changing region in every tubelet
    assert len(info["video_timestamps"]) == 8


def test_q0_keeps_everything(encoder: VideoEncoder) -> None:
    frames = _clip(8)
    pixels, grid = preprocess_frames(frames, CFG)
    with torch.no_grad():
        out = encoder(pixels, grid, evs_rate=0.0)
        full = encoder.encode_tubelets(pixels, grid)  # (4, 12, D)
    assert out.info["video_tokens_after_evs"] == out.info["video_tokens_before_evs"] == 48
    torch.testing.assert_close(out.tokens, full.reshape(48, -1))
    expected = [[t, h, w] for t in range(4) for h in range(3) for w in range(4)]
    assert out.positions.tolist() == expected


def test_positions_preserved(encoder: VideoEncoder) -> None:
    frames = _clip(8)
    pixels, grid = preprocess_frames(frames, CFG)
    with torch.no_grad():
        out = encoder(pixels, grid, evs_rate=0.75)
        full = encoder.encode_tubelets(pixels, grid)  # (T, n, D)
    assert out.tokens.shape[0] == 12 + 9
    # Every kept token is the full-clip token at its (t, h, w); positions are in (t, h, w) order.
    for tok, (t, h, w) in zip(out.tokens, out.positions.tolist()):
        torch.testing.assert_close(tok, full[t, h * 4 + w])
    keys = [tuple(p) for p in out.positions.tolist()]
    assert keys == sorted(keys)
    # Synthetic frames are exact: the static tokens of tubelets 1..3 have zero change, so exactly
    # 9 = 36 - 27 survive — the 3 changing ones plus the 6 latest static ones (ties drop earlier first).
    later = [k for k in keys if k[0] > 0]
    assert [k for k in later if k[1:] == MOVING] == [(1, 1, 2), (2, 1, 2), (3, 1, 2)]
    assert [k for k in later if k[1:] != MOVING] == [(3, 1, 1), (3, 1, 3), (3, 2, 0), (3, 2, 1), (3, 2, 2), (3, 2, 3)]


def test_pixel_change_matches_loop_reference() -> None:
    frames = _clip(6, seed=1)
    frames[5, 0:16, 0:16] = 255  # a second change, in tubelet 2 at (0, 0)
    pixels, grid = preprocess_frames(frames, CFG)
    change = pixel_change(pixels, grid, CFG)
    assert change.shape == (3, 12) and torch.isinf(change[0]).all()
    for t in range(1, 3):
        for h in range(3):
            for w in range(4):
                cur = pixels[2 * t:2 * t + 2, :, 16 * h:16 * h + 16, 16 * w:16 * w + 16]
                prev = pixels[2 * t - 2:2 * t, :, 16 * h:16 * h + 16, 16 * w:16 * w + 16]
                ref = float((cur - prev).abs().mean())
                assert float(change[t, h * 4 + w]) == pytest.approx(ref, abs=1e-6)
                if (h, w) != MOVING and not (t == 2 and (h, w) == (0, 0)):
                    assert ref == 0.0
    assert float(change[2, 0]) > 0 and float(change[1, 6]) > 0


def test_keep_mask_count_formula() -> None:
    torch.manual_seed(0)
    for t, n in [(1, 5), (2, 12), (7, 9)]:
        change = torch.rand(t, n)
        for q in [0.0, 0.1, 0.5, 0.75, 0.99]:
            keep = evs_keep_mask(change, q)
            cand = (t - 1) * n
            assert int(keep.sum()) == n + cand - math.floor(q * cand)
            assert keep[0].all()
            if 0 < math.floor(q * cand) < cand:  # kept candidates all changed at least as much as dropped
                assert float(change[1:][keep[1:]].min()) >= float(change[1:][~keep[1:]].max())
    with pytest.raises(ValueError, match="pruning rate"):
        evs_keep_mask(torch.rand(2, 3), 1.0)


def test_odd_frame_count_pads_by_repeating_last(encoder: VideoEncoder) -> None:
    frames = _clip(5)
    pixels, grid = preprocess_frames(frames, CFG)
    assert pixels.shape == (6, 3, 48, 64) and grid == (6, 8)
    torch.testing.assert_close(pixels[5], pixels[4])
    with torch.no_grad():
        out = encoder.encode_frames(frames, evs_rate=0.5)
    assert out.info["video_frames"] == 5 and out.info["video_tubelets"] == 3
    assert (out.info["video_tokens_before_evs"], out.info["video_tokens_after_evs"]) == video_tokens(5, H, W, CFG, 0.5) == (36, 24)


def test_static_tubelet_embeds_like_the_still_image(encoder: VideoEncoder) -> None:
    # Conv3D weights are inflated from the 2D patch embedding: two equal frames = the image.
    frame = _clip(1)
    pixels, grid = preprocess_frames(np.repeat(frame, 2, axis=0), CFG)
    with torch.no_grad():
        video = encoder.encode_tubelets(pixels, grid)
        image = encoder.vision(pixels[:1])
    torch.testing.assert_close(video, image, atol=1e-5, rtol=1e-4)


def test_feature_metric_also_keeps_the_changing_region() -> None:
    torch.manual_seed(0)
    cfg = VideoConfig.preset("tiny", evs_metric="feature")
    enc = VideoEncoder(cfg).eval()
    with torch.no_grad():
        out = enc.encode_frames(_clip(8), evs_rate=0.75)
    pos = {tuple(p) for p in out.positions.tolist()}
    assert {(t, *MOVING) for t in range(1, 4)} <= pos
    assert out.tokens.shape[0] == 21


def test_frame_budget_resizes_large_frames(encoder: VideoEncoder) -> None:
    frames = np.zeros((2, 240, 320, 3), dtype=np.uint8)
    pixels, grid = preprocess_frames(frames, CFG)
    assert CFG.frame_min_patches <= grid[0] * grid[1] <= CFG.frame_max_patches
    assert pixels.shape[-2:] == (grid[0] * 8, grid[1] * 8)
    assert abs(grid[1] / grid[0] - 4 / 3) < 0.2


def test_shared_vision_and_param_count() -> None:
    vision = VisionEncoder(CFG.vision)
    enc = VideoEncoder(CFG, vision)
    assert enc.vision is vision
    full = VideoConfig.preset("nano-omni-30b-a3b")
    # the Conv3D tubelet embedding and the time index (64 time features to the LM width 2688)
    assert encoder_params(full) == 3 * 2 * 16 * 16 * 1280 + 1280 + 64 * 2688
    assert encoder_params(full, include_vision=True) == encoder_params(full) + encoder_params(full.vision)


def test_bad_inputs(encoder: VideoEncoder, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="uint8 frames"):
        preprocess_frames(np.zeros((4, 8, 8, 3), dtype=np.float32), CFG)
    with pytest.raises(ValueError, match="pruning rate"):
        VideoConfig.preset("tiny", evs_rate=1.5)
    bad = tmp_path / "broken.mp4"
    bad.write_bytes(b"not a video at all")
    with pytest.raises(MediaError, match="broken.mp4"):
        encoder.encode_file(str(bad))


def test_apply_evs_positions_layout() -> None:
    tokens = torch.arange(2 * 6 * 1, dtype=torch.float32).view(2, 6, 1)
    keep = torch.tensor([[True] * 6, [False, True, False, False, False, True]])
    kept, pos = apply_evs(tokens, keep, (2, 3))
    assert kept.view(-1).tolist() == [0, 1, 2, 3, 4, 5, 7, 11]
    assert pos.tolist()[-2:] == [[1, 0, 1], [1, 1, 2]]


def test_short_clips_single_tubelet(encoder: VideoEncoder) -> None:
    for n in (1, 2):
        with torch.no_grad():
            out = encoder.encode_frames(_clip(n), evs_rate=0.75)
        assert out.info["video_tubelets"] == 1
        assert out.info["video_tokens_after_evs"] == out.info["video_tokens_before_evs"] == 12
        assert video_tokens(n, H, W, CFG, 0.75) == (12, 12)


def test_task_settings_override_config(encoder: VideoEncoder, clip_path: str) -> None:
    with torch.no_grad():
        out = encoder.encode_file(clip_path, evs_rate=0.0, fps=2.0, max_frames=3)
    assert out.info["video_frames"] == 3 and out.info["video_tubelets"] == 2
    assert (out.info["video_fps"], out.info["video_max_frames"], out.info["evs_rate"]) == (2.0, 3, 0.0)


def test_time_index_starts_at_zero_survives_evs_and_is_the_same_for_a_tubelet() -> None:
    """time_pos: zero-initialized (outputs equal the model without it), then each kept token carries
    its own tubelet's time, whatever EVS dropped; the pruning itself does not change."""
    from evalsuite.model.video import time_features

    torch.manual_seed(0)
    plain = VideoEncoder(CFG).eval()
    timed_cfg = VideoConfig.preset("tiny", time_pos=8)
    torch.manual_seed(0)
    timed = VideoEncoder(timed_cfg).eval()
    frames = np.random.default_rng(0).integers(0, 255, (8, 32, 32, 3), dtype=np.uint8)
    frames[4:, :16] = frames[3, :16]  # the top half stops changing: EVS has ties to break
    pixels, grid = preprocess_frames(frames, CFG)
    with torch.no_grad():
        a = plain(pixels, grid, evs_rate=0.5)
        b = timed(pixels, grid, evs_rate=0.5)
        assert torch.equal(a.tokens, b.tokens) and torch.equal(a.positions, b.positions)
        timed.time_pos.normal_()
        c = timed(pixels, grid, evs_rate=0.5)
    assert torch.equal(c.positions, a.positions)  # same tokens kept
    t = c.positions[:, 0]
    want = (time_features(4, 8) @ timed.time_pos)[t]  # (K, D): each token's own tubelet time
    torch.testing.assert_close(c.tokens - a.tokens, want, rtol=1e-5, atol=1e-5)
    assert len(set(t.tolist())) == 4 and not torch.allclose(want[t == 0][0], want[t == 3][0])


def test_time_features_are_normalized_time() -> None:
    from evalsuite.model.video import time_features

    f = time_features(4, 6)
    u = torch.tensor([0.125, 0.375, 0.625, 0.875])
    torch.testing.assert_close(f[:, 0], torch.sin(math.pi * u))
    torch.testing.assert_close(f[:, 5], torch.cos(3 * math.pi * u))
    with pytest.raises(ValueError, match="time_pos must be 0 or a positive even number"):
        VideoConfig.preset("tiny", time_pos=3)
