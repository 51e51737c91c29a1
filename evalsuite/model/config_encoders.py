"""Configs of the reference model's media encoders: vision (dynamic-resolution ViT), video (Conv3D
tubelets + Efficient Video Sampling on top of the vision transformer) and audio (log-mel →
conv subsampling ×8 → conformer → projector).

Each config is a frozen dataclass with named presets:

- ``tiny``: trains on two CPU cores (8-px patches, 2 layers of width 64, budgets of tens of patches);
  projectors output 128 features, the backbone's tiny hidden size.
- ``nano-omni-30b-a3b``: the published sizes, for accounting on the meta device. Vision is a
  ViT-H/16-class encoder (32 × 1280, 16 heads, MLP 5120; 1,024–13,312 patches; 2×2 merge; MLP
  projector to the LM hidden size 2688). Audio is a Parakeet/FastConformer-0.6B-class encoder
  (128 mel bins, 8× depthwise-striding conv subsampling, 24 conformer layers of width 1024).

Configs are data and import no module: the model card (`model.card.encoder_params`) builds each
encoder on the meta device to count its parameters.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Literal


ImageMode = Literal["dynamic", "tiling"]
EvsMetric = Literal["pixel", "feature"]

# CLIP/RADIO-style normalization constants (RGB, in [0, 1] units).
IMAGE_MEAN: tuple[float, float, float] = (0.48145466, 0.4578275, 0.40821073)
IMAGE_STD: tuple[float, float, float] = (0.26862954, 0.26130258, 0.27577711)


def _replace(cfg: Any, overrides: dict[str, Any]) -> Any:
    names = {f.name for f in dataclasses.fields(cfg)}
    bad = sorted(set(overrides) - names)
    if bad:
        raise ValueError(f"{type(cfg).__name__} has no field(s) {bad}; expected some of {sorted(names)}")
    return dataclasses.replace(cfg, **overrides)


def _unknown_preset(kind: str, name: str) -> ValueError:
    return ValueError(f"unknown {kind} preset {name!r}; expected one of {list(PRESET_NAMES)}")


PRESET_NAMES: tuple[str, ...] = ("tiny", "nano-omni-30b-a3b")


@dataclass(frozen=True)
class VisionConfig:
    """ViT with native-aspect-ratio dynamic resolution, 2×2 spatial merge and an MLP projector.

    Budgets are in *patches* (before the merge); an image yields ``patches / merge**2`` LM tokens.
    Positions are 2D rotary embeddings (half of each head's rotary pairs turn with the row index,
    half with the column index), so any grid works without interpolating a learned table.
    """

    patch_size: int = 16
    width: int = 1280
    depth: int = 32
    heads: int = 16
    mlp_dim: int = 5120
    in_channels: int = 3
    merge: int = 2  # merge×merge patches → one LM token (pixel-shuffle concat)
    min_patches: int = 1024
    max_patches: int = 13312
    lm_hidden: int = 2688
    projector_hidden: int = 10752
    rope_theta: float = 10000.0
    norm_eps: float = 1e-6
    # Fixed (parameter-free) sinusoidal features of each patch's *normalized* (row, col) centre in the
    # crop, added to the patch embedding: RoPE only tells patches how far apart they are, while GUI
    # grounding answers absolute 0-1000 coordinates, so tokens also carry where in the image they are.
    abs_pos: bool = True
    # Dimension of the same normalized-position features of each *merged token* (0: none), mapped by a
    # learned matrix (zero at initialization) and added to the projector's output: the tiny encoder,
    # trained from scratch with a column CTC that needs no absolute place, washes ``abs_pos`` out (a
    # linear readout of a token's row from v7's tokens had R² 0.28), so GUI answers lost y. Not in the
    # published model, whose encoder is pretrained at scale; the tiny preset uses it.
    token_pos: int = 0
    # Hidden units of a second ReLU² branch of the projector beside ``projector_hidden`` (0: none),
    # reading the same normalized merged features, its output layer zero at initialization. The tiny
    # preset's 128 + 384 = 512 hidden units are 4x the LM width, the published projector's ratio
    # (10752 = 4 x 2688); with 128 alone a linear CTC head read 0.57 of a line's characters off the
    # projector's output against 0.85 off its input (v7; `evalsuite.training.probe --ctc 1500 --ctc-at`). A branch
    # rather than a wider first layer so that it can start at zero without touching the trained units.
    projector_extra: int = 0
    mode: ImageMode = "dynamic"
    # Tiling mode (ablation): square tiles of tile_size px, up to max_tiles, plus a thumbnail.
    tile_size: int = 512
    max_tiles: int = 12
    image_mean: tuple[float, float, float] = IMAGE_MEAN
    image_std: tuple[float, float, float] = IMAGE_STD

    def __post_init__(self) -> None:
        if self.width % self.heads:
            raise ValueError(f"vision width {self.width} must be divisible by heads {self.heads}")
        if (self.width // self.heads) % 4:
            raise ValueError(f"vision head dim {self.width // self.heads} must be a multiple of 4 (2D RoPE)")
        if not 0 < self.min_patches <= self.max_patches:
            raise ValueError(f"need 0 < min_patches <= max_patches, got {self.min_patches}, {self.max_patches}")
        if self.max_patches < self.merge * self.merge:
            raise ValueError(f"max_patches {self.max_patches} is below one merged token ({self.merge}x{self.merge})")
        if self.tile_size % (self.patch_size * self.merge):
            raise ValueError(f"tile_size {self.tile_size} must be a multiple of patch_size*merge")
        if self.projector_extra < 0:
            raise ValueError(f"vision projector_extra must be >= 0, got {self.projector_extra}")
        if self.token_pos < 0 or self.token_pos % 4:
            raise ValueError(f"vision token_pos must be 0 or a positive multiple of 4, got {self.token_pos}")
        if self.mode not in ("dynamic", "tiling"):
            raise ValueError(f"vision mode must be 'dynamic' or 'tiling', got {self.mode!r}")

    @staticmethod
    def preset(name: str, **overrides: Any) -> "VisionConfig":
        if name == "tiny":
            cfg = VisionConfig(
                patch_size=8, width=64, depth=2, heads=4, mlp_dim=128, merge=2,
                min_patches=16, max_patches=1280, lm_hidden=128, projector_hidden=128,
                tile_size=32, max_tiles=6, token_pos=64, projector_extra=384,
            )
        elif name == "nano-omni-30b-a3b":
            cfg = VisionConfig()
        else:
            raise _unknown_preset("vision", name)
        return _replace(cfg, overrides)

    @property
    def merged_dim(self) -> int:
        return self.width * self.merge * self.merge


@dataclass(frozen=True)
class VideoConfig:
    """Video = frames sampled by the harness → Conv3D tubelets → the vision transformer → EVS.

    ``evs_rate`` is the pruning rate q: the fraction of tokens of tubelets 1..T-1 that Efficient
    Video Sampling drops (tubelet 0 is always kept); 0 disables it.
    """

    vision: VisionConfig = field(default_factory=VisionConfig)
    tubelet: int = 2  # frames per tubelet
    fps: float = 2.0
    max_frames: int = 128
    frame_min_patches: int = 256
    frame_max_patches: int = 1024
    evs_rate: float = 0.0
    evs_metric: EvsMetric = "pixel"
    # Width of the fixed time features of each tubelet's normalized time, mapped to the LM width by
    # a learned zero-initialized table (0: no time index). Added before EVS, so kept tokens keep it.
    time_pos: int = 0

    def __post_init__(self) -> None:
        if self.time_pos < 0 or self.time_pos % 2:
            raise ValueError(f"video time_pos must be 0 or a positive even number, got {self.time_pos}")
        if not 0.0 <= self.evs_rate < 1.0:
            raise ValueError(f"evs_rate (pruning rate q) must be in [0, 1), got {self.evs_rate}")
        if self.tubelet < 1:
            raise ValueError(f"tubelet must be >= 1 frame, got {self.tubelet}")
        if not 0 < self.frame_min_patches <= self.frame_max_patches:
            raise ValueError("need 0 < frame_min_patches <= frame_max_patches")
        if self.evs_metric not in ("pixel", "feature"):
            raise ValueError(f"evs_metric must be 'pixel' or 'feature', got {self.evs_metric!r}")

    @staticmethod
    def preset(name: str, **overrides: Any) -> "VideoConfig":
        if name == "tiny":
            cfg = VideoConfig(vision=VisionConfig.preset("tiny"), fps=4.0, max_frames=16,
                              frame_min_patches=16, frame_max_patches=64)
        elif name == "nano-omni-30b-a3b":
            cfg = VideoConfig(vision=VisionConfig.preset(name), time_pos=64)
        else:
            raise _unknown_preset("video", name)
        return _replace(cfg, overrides)


@dataclass(frozen=True)
class AudioConfig:
    """Raw waveform → log-mel (25 ms window, 10 ms hop) → 3 stride-2 convs (×8) → conformer → MLP.

    One LM token covers ``hop_ms * 8`` = 80 ms: 12.5 tokens per second of audio.
    """

    sample_rate: int = 16000
    n_mels: int = 128
    n_fft: int = 512
    win_ms: float = 25.0
    hop_ms: float = 10.0
    f_min: float = 0.0
    f_max: float | None = None  # None: Nyquist
    preemph: float = 0.97
    subsample_channels: int = 256
    subsample_layers: int = 3  # stride-2 convs: factor 2**layers
    width: int = 1024
    depth: int = 24
    heads: int = 8
    ffn_dim: int = 4096
    conv_kernel: int = 9
    lm_hidden: int = 2688
    projector_hidden: int = 4096
    rope_theta: float = 10000.0
    norm_eps: float = 1e-5

    def __post_init__(self) -> None:
        if self.width % self.heads or (self.width // self.heads) % 2:
            raise ValueError(f"audio width {self.width} must split into an even head dim over {self.heads} heads")
        if self.conv_kernel % 2 == 0:
            raise ValueError(f"conv_kernel must be odd, got {self.conv_kernel}")
        if self.win_length > self.n_fft:
            raise ValueError(f"window ({self.win_length} samples) is longer than n_fft {self.n_fft}")

    @staticmethod
    def preset(name: str, **overrides: Any) -> "AudioConfig":
        if name == "tiny":
            cfg = AudioConfig(n_mels=32, subsample_channels=16, width=64, depth=2, heads=4, ffn_dim=128,
                              conv_kernel=5, lm_hidden=128, projector_hidden=128)
        elif name == "nano-omni-30b-a3b":
            cfg = AudioConfig()
        else:
            raise _unknown_preset("audio", name)
        return _replace(cfg, overrides)

    @property
    def win_length(self) -> int:
        return int(round(self.sample_rate * self.win_ms / 1000))

    @property
    def hop_length(self) -> int:
        return int(round(self.sample_rate * self.hop_ms / 1000))

    @property
    def subsampling(self) -> int:
        return 2 ** self.subsample_layers

    @property
    def tokens_per_second(self) -> float:
        return self.sample_rate / (self.hop_length * self.subsampling)


def encoder_configs(name: str, lm_hidden: int | None = None) -> dict[str, Any]:
    """The three encoder configs of one preset (``lm_hidden`` overrides the projector output)."""
    over = {} if lm_hidden is None else {"lm_hidden": lm_hidden}
    vision = VisionConfig.preset(name, **over)
    return {
        "vision": vision,
        "video": VideoConfig.preset(name, vision=vision),
        "audio": AudioConfig.preset(name, **over),
    }


__all__ = [
    "VisionConfig", "VideoConfig", "AudioConfig", "encoder_configs",
    "PRESET_NAMES", "IMAGE_MEAN", "IMAGE_STD",
]
