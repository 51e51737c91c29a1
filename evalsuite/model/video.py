"""Video encoder: sampled frames → Conv3D tubelets → the vision transformer → Efficient Video Sampling.

Pipeline
--------
1. Frames come from :func:`evalsuite.media.sample_frames` (``fps`` / ``max_frames``), are resized to
   one shared patch grid chosen by the vision dynamic-resolution rule under a per-frame budget
   (``frame_min_patches``..``frame_max_patches``) and normalized like images.
2. Consecutive frames are grouped into tubelets of ``tubelet`` (2) frames; an odd count is padded by
   repeating the last frame. A Conv3D with kernel = stride = (2, p, p) embeds each tubelet's patches.
   Its weights are inflated from the image patch embedding (2D kernel / 2 on each frame), so a static
   tubelet embeds exactly like the still image at initialization.
3. Each tubelet goes through the shared vision transformer as one "image" (attention within a
   tubelet), then the 2×2 merge and the projector: ``n = gh/2 * gw/2`` tokens per tubelet.

Efficient Video Sampling (EVS), the rationale
---------------------------------------------
Most of a video does not change from one tubelet to the next (static backgrounds, slides, screen
recordings), yet every tubelet costs the LM ``n`` tokens. EVS scores each token by how much its
footprint changed since the *same position in the previous tubelet* and drops the least-changed
ones, keeping the positions of the survivors so the LM still knows where and when each token is:

- change metric ``pixel`` (default): mean absolute difference of the normalized pixels the token
  covers (its 2×2 patches × 2 frames) between tubelet t and t-1. Cheap, known before the encoder
  runs, and exactly zero for a truly static region. ``feature``: 1 - cosine similarity of the two
  output tokens.
- pruning rate q: among the ``N_c = (T - 1) * n`` tokens of tubelets 1..T-1, the ``floor(q * N_c)``
  with the smallest change are dropped, i.e. those below the empirical q-quantile of changes in the
  clip (ranking instead of a threshold comparison, so ties at zero change, common in static video,
  still prune exactly the requested fraction; ties drop the earlier token first). Tubelet 0 is
  always kept whole: it is the reference the others are differences from. q = 0 disables EVS.
- kept tokens stay in (t, h, w) order and are returned with their (t, h, w) positions, where h, w
  index the merged grid; tokens after EVS = ``n + N_c - floor(q * N_c)`` (:func:`video_tokens`).

Time index. The backbone has no positional signal of its own, and after EVS a tubelet's tokens are no
longer a fixed-size block the LM could count. With ``cfg.time_pos`` > 0 each token gets its tubelet's
time added before EVS (:func:`time_features` of the normalized time ``(t + 0.5) / T`` through a learned,
zero-initialized table), so "which quarter" and "which came first" are read off the tokens themselves
and survive pruning. The change ranking is computed before the time is added: EVS prunes the same
tokens with or without it.

The pruning happens after the encoder (the LM sequence shrinks, the encoder cost does not), as in
Nemotron Nano VL's EVS; the pixel metric would also allow skipping encoder work, not done here.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from evalsuite.model.config_encoders import VideoConfig
from evalsuite.model.vision import Grid, VisionEncoder, dynamic_grid


# ---- preprocessing ------------------------------------------------------------------------------
def frame_grid(height: int, width: int, cfg: VideoConfig) -> Grid:
    """Patch grid shared by all frames of a clip (the per-frame patch budget)."""
    return dynamic_grid(height, width, cfg.vision, min_patches=cfg.frame_min_patches,
                        max_patches=cfg.frame_max_patches)


def preprocess_frames(frames: np.ndarray, cfg: VideoConfig) -> tuple[torch.Tensor, Grid]:
    """uint8 frames (T, H, W, 3) → normalized pixels (T', 3, gh*p, gw*p), T' = T padded to a whole
    number of tubelets by repeating the last frame; and the patch grid (gh, gw)."""
    from PIL import Image

    frames = np.asarray(frames)
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.shape[0] == 0 or frames.dtype != np.uint8:
        raise ValueError(f"expected uint8 frames (T>0, H, W, 3), got {frames.dtype} {frames.shape}")
    t, h, w, _ = frames.shape
    vc = cfg.vision
    gh, gw = frame_grid(h, w, cfg)
    size = (gw * vc.patch_size, gh * vc.patch_size)
    if (w, h) == size:
        arr = frames.astype(np.float32)
    else:
        arr = np.stack([np.asarray(Image.fromarray(f).resize(size, Image.BICUBIC)) for f in frames]).astype(np.float32)
    x = torch.from_numpy(arr / 255.0).permute(0, 3, 1, 2)  # (T, H, W, 3) → (T, 3, H, W)
    x = (x - torch.tensor(vc.image_mean).view(1, 3, 1, 1)) / torch.tensor(vc.image_std).view(1, 3, 1, 1)
    pad = (-t) % cfg.tubelet
    if pad:
        x = torch.cat([x, x[-1:].expand(pad, -1, -1, -1)])  # repeat the last frame
    return x, (gh, gw)


def video_tokens(n_frames: int, height: int, width: int, cfg: VideoConfig,
                 evs_rate: float | None = None) -> tuple[int, int]:
    """(tokens before EVS, tokens after EVS) for ``n_frames`` sampled frames of ``height × width``."""
    q = cfg.evs_rate if evs_rate is None else evs_rate
    gh, gw = frame_grid(height, width, cfg)
    m = cfg.vision.merge
    n = (gh // m) * (gw // m)
    tubelets = math.ceil(n_frames / cfg.tubelet)
    cand = (tubelets - 1) * n
    return tubelets * n, n + cand - math.floor(q * cand)


def time_features(n_tubelets: int, dim: int, device: torch.device | None = None,
                  dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """(T, dim) fixed features of each tubelet's normalized time u = (t + 0.5) / T in (0, 1):
    ``sin/cos(pi * k * u)`` for k = 1..dim/2 (no parameters: any clip length works)."""
    k = torch.arange(1, dim // 2 + 1, device=device, dtype=torch.float32) * math.pi
    u = (torch.arange(n_tubelets, device=device, dtype=torch.float32) + 0.5) / n_tubelets
    return torch.cat([(u[:, None] * k).sin(), (u[:, None] * k).cos()], -1).to(dtype)


# ---- EVS ----------------------------------------------------------------------------------------
def pixel_change(pixels: torch.Tensor, grid: Grid, cfg: VideoConfig) -> torch.Tensor:
    """Per-token change between consecutive tubelets: (T, n) mean |Δ pixel| over each token's
    footprint (tubelet frames × merge×merge patches); row 0 (no predecessor) is +inf."""
    k, p, m = cfg.tubelet, cfg.vision.patch_size, cfg.vision.merge
    gh, gw = grid
    t = pixels.shape[0] // k
    x = pixels.view(t, k, 3, gh // m, m * p, gw // m, m * p)  # (T, k, C, H/mp, mp, W/mp, mp)
    d = (x[1:] - x[:-1]).abs().mean(dim=(1, 2, 4, 6))  # (T-1, gh/m, gw/m)
    n = (gh // m) * (gw // m)
    first = torch.full((1, n), math.inf, dtype=d.dtype, device=d.device)
    return torch.cat([first, d.reshape(t - 1, n)])  # (T, n)


def feature_change(tokens: torch.Tensor) -> torch.Tensor:
    """(T, n, D) tokens → (T, n) 1 - cosine similarity with the same position one tubelet earlier,
    computed in float32 whatever the tokens' dtype (bfloat16 would make near-ties of the ranking)."""
    tokens = tokens.float()
    sim = F.cosine_similarity(tokens[1:], tokens[:-1], dim=-1)  # (T-1, n)
    first = torch.full((1, tokens.shape[1]), math.inf, dtype=sim.dtype, device=sim.device)
    return torch.cat([first, 1.0 - sim])


def evs_keep_mask(change: torch.Tensor, q: float) -> torch.Tensor:
    """(T, n) change → bool keep mask: all of tubelet 0, and all but the ``floor(q * N_c)``
    least-changed tokens of tubelets 1..T-1 (stable: among equal changes the earlier one goes)."""
    if not 0.0 <= q < 1.0:
        raise ValueError(f"EVS pruning rate q must be in [0, 1), got {q}")
    keep = torch.ones_like(change, dtype=torch.bool)
    cand = change[1:].reshape(-1)  # (N_c,)
    n_drop = math.floor(q * cand.numel())
    if n_drop:
        order = torch.sort(cand, stable=True).indices  # ascending change, ties by index
        rest = keep[1:].reshape(-1).clone()
        rest[order[:n_drop]] = False
        keep[1:] = rest.view(change.shape[0] - 1, change.shape[1])
    return keep


def apply_evs(tokens: torch.Tensor, keep: torch.Tensor, merged_grid: Grid) -> tuple[torch.Tensor, torch.Tensor]:
    """tokens (T, n, D) + keep (T, n) → kept tokens (K, D) in (t, h, w) order and positions (K, 3)."""
    t, n, _ = tokens.shape
    hm, wm = merged_grid
    tt = torch.arange(t, device=tokens.device).repeat_interleave(n)  # (T*n,)
    hh = torch.arange(hm, device=tokens.device).repeat_interleave(wm).repeat(t)
    ww = torch.arange(wm, device=tokens.device).repeat(hm * t)
    pos = torch.stack([tt, hh, ww], dim=-1)  # (T*n, 3)
    flat = keep.reshape(-1)
    return tokens.reshape(t * n, -1)[flat], pos[flat]


# ---- module -------------------------------------------------------------------------------------
class TubeletEmbed(nn.Module):
    """Conv3D patch embedding over (tubelet frames × patch × patch)."""

    def __init__(self, cfg: VideoConfig) -> None:
        super().__init__()
        vc = cfg.vision
        k = (cfg.tubelet, vc.patch_size, vc.patch_size)
        self.proj = nn.Conv3d(vc.in_channels, vc.width, kernel_size=k, stride=k)

    @torch.no_grad()
    def inflate_from(self, patch_embed: nn.Conv2d) -> None:
        """Initialize from a 2D patch embedding: each frame gets weight/tubelet, same bias."""
        k = self.proj.weight.shape[2]
        self.proj.weight.copy_(patch_embed.weight.unsqueeze(2).expand_as(self.proj.weight) / k)
        self.proj.bias.copy_(patch_embed.bias)

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        """(T', 3, H, W) frames → (T'/k, gh*gw, D) tubelet patch features, in the weights' dtype
        (pixels are cast where they enter; a no-op for float32 weights)."""
        x = pixels.to(self.proj.weight.dtype).transpose(0, 1).unsqueeze(0)  # (1, 3, T', H, W)
        x = self.proj(x)[0]  # (D, T, gh, gw)
        return x.flatten(2).permute(1, 2, 0)  # (T, gh*gw, D)


@dataclass
class VideoOutput:
    """Kept tokens (K, lm_hidden), their (t, h, w) positions (K, 3), and per-sample facts."""

    tokens: torch.Tensor
    positions: torch.Tensor
    info: dict[str, Any] = field(default_factory=dict)


class VideoEncoder(nn.Module):
    """frames → tubelet tokens (through the shared :class:`VisionEncoder`) → EVS."""

    def __init__(self, cfg: VideoConfig, vision: VisionEncoder | None = None) -> None:
        super().__init__()
        self.cfg = cfg
        self.vision = vision if vision is not None else VisionEncoder(cfg.vision)
        if self.vision.cfg != cfg.vision:
            raise ValueError("VideoEncoder: the shared VisionEncoder was built from a different VisionConfig")
        self.tubelet_embed = TubeletEmbed(cfg)
        if self.tubelet_embed.proj.weight.device.type != "meta":
            self.tubelet_embed.inflate_from(self.vision.patch_embed)
        if cfg.time_pos:  # zeros, drawn from no random stream: the other modules initialize as without it
            self.time_pos = nn.Parameter(torch.zeros(cfg.time_pos, cfg.vision.lm_hidden))

    def encode_tubelets(self, pixels: torch.Tensor, grid: Grid) -> torch.Tensor:
        """Preprocessed frames (T', 3, H, W) → all tubelet tokens (T, n, lm_hidden), before EVS."""
        if pixels.dim() != 4 or pixels.shape[0] % self.cfg.tubelet:
            raise ValueError(f"expected frames (T', 3, H, W) with T' a multiple of {self.cfg.tubelet}, "
                             f"got {tuple(pixels.shape)}")
        return self.vision.from_patches(self.tubelet_embed(pixels), grid)

    def forward(self, pixels: torch.Tensor, grid: Grid, evs_rate: float | None = None,
                n_frames: int | None = None) -> VideoOutput:
        """Preprocessed frames → kept tokens + positions + info (tokens before/after EVS)."""
        q = self.cfg.evs_rate if evs_rate is None else evs_rate
        tokens = self.encode_tubelets(pixels, grid)  # (T, n, lm_hidden), in the weights' dtype
        m = self.cfg.vision.merge
        merged = (grid[0] // m, grid[1] // m)
        if self.cfg.evs_metric == "pixel":
            change = pixel_change(pixels, grid, self.cfg)
        else:
            change = feature_change(tokens)
        keep = evs_keep_mask(change, q)
        if self.cfg.time_pos:
            when = time_features(tokens.shape[0], self.cfg.time_pos, tokens.device, tokens.dtype)  # (T, time_pos)
            tokens = tokens + (when @ self.time_pos.to(tokens.dtype))[:, None, :]  # (T, 1, D) over n tokens
        kept, pos = apply_evs(tokens, keep, merged)
        info = {
            "video_frames": int(n_frames if n_frames is not None else pixels.shape[0]),
            "video_tubelets": int(tokens.shape[0]),
            "video_grid": [int(grid[0]), int(grid[1])],
            "video_tokens_per_tubelet": int(tokens.shape[1]),
            "video_tokens_before_evs": int(tokens.shape[0] * tokens.shape[1]),
            "video_tokens_after_evs": int(kept.shape[0]),
            "evs_rate": float(q),
        }
        return VideoOutput(kept, pos, info)

    def encode_frames(self, frames: np.ndarray, evs_rate: float | None = None) -> VideoOutput:
        """uint8 frames (T, H, W, 3) → :class:`VideoOutput`."""
        pixels, grid = preprocess_frames(frames, self.cfg)
        return self(pixels, grid, evs_rate, n_frames=len(frames))

    def encode_file(self, path: str, evs_rate: float | None = None, fps: float | None = None,
                    max_frames: int | None = None) -> VideoOutput:
        """Decode a video with the harness pipeline and encode it. ``fps`` / ``max_frames`` /
        ``evs_rate`` default to the config (tasks pass their own; they are echoed in ``info``)."""
        from evalsuite.media import sample_frames

        fps = self.cfg.fps if fps is None else fps
        max_frames = self.cfg.max_frames if max_frames is None else max_frames
        frames, stamps = sample_frames(path, fps, max_frames)
        out = self.encode_frames(frames, evs_rate)
        out.info["video_timestamps"] = [round(float(s), 4) for s in stamps]
        out.info["video_fps"] = fps
        out.info["video_max_frames"] = max_frames
        return out


__all__ = [
    "frame_grid", "preprocess_frames", "video_tokens", "time_features", "pixel_change", "feature_change", "evs_keep_mask",
    "apply_evs", "TubeletEmbed", "VideoOutput", "VideoEncoder",
]
