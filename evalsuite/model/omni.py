"""The omni model: the hybrid language backbone plus its media encoders, and prompt embedding.

    OmniModel
      lm        LanguageModel (model/backbone.py): NemotronH names under it (``lm.backbone.layers.{i}.mixer…``,
                ``lm.lm_head``), so the precision recipes' suffix patterns find the backbone layers
      vision    VisionEncoder (model/vision.py): dynamic-resolution ViT → 2×2 merge → projector
      video     VideoEncoder (model/video.py): Conv3D tubelets through the *same* vision transformer → EVS
      audio     AudioEncoder (model/audio.py): log-mel → conv subsampling → conformer → projector

A prompt becomes model input in two phases, so that the slow, model-free part can run ahead in
worker threads while the model computes (the reference backend does this):

1. `load_media(messages, cfg, settings)` decodes every media file through the harness pipeline
   (`evalsuite.media`), resizes and normalizes it, and computes how many LM tokens its encoder will
   output from the encoder's formula (`image_tokens`, `video_tokens`, `audio_tokens`).
2. `OmniModel.embed_loaded(messages, media)` lays out the token ids with the tokenizer's chat
   template (placeholder runs sized by those counts), embeds the ids, runs the encoders and scatters
   their outputs into the placeholder positions: `inputs_embeds [1, T, D]` for the backbone.

`OmniModel.embed_prompt` does both. Media settings are the task's (`Request.media`): ``fps``,
``max_frames``, ``evs_q`` (or ``evs_rate``), ``sample_rate``, ``min_patches`` / ``max_patches``,
``image_mode``; missing ones take the encoder config's values, unknown ones are ignored.

The backbone has no positional encoding (order reaches it through the Mamba layers), so the
(t, h, w) positions that EVS keeps for video tokens are returned in ``info`` only as counts.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

import torch
from torch import nn

from evalsuite.types import ContentPart, Message
from evalsuite.model.audio import AudioEncoder, audio_tokens, load_waveform
from evalsuite.model.backbone import LanguageModel
from evalsuite.model.config import OmniConfig
from evalsuite.model.config_encoders import VisionConfig
from evalsuite.model.tokenizer import ByteTokenizer
from evalsuite.model.video import VideoEncoder, preprocess_frames, video_tokens
from evalsuite.model.vision import Grid, VisionEncoder, image_tokens, preprocess_image

# Request.media keys this model reads; everything else is left to other backends.
MEDIA_KEYS: tuple[str, ...] = ("fps", "max_frames", "evs_q", "evs_rate", "sample_rate", "min_patches",
                               "max_patches", "image_mode")


@dataclass(frozen=True)
class MediaOptions:
    """Preprocessing settings of one request, resolved against the encoder configs."""

    fps: float
    max_frames: int
    evs_rate: float
    sample_rate: int
    min_patches: int
    max_patches: int
    image_mode: str

    @staticmethod
    def resolve(cfg: OmniConfig, settings: Mapping[str, Any] | None) -> "MediaOptions":
        s = dict(settings or {})
        evs = s.get("evs_q", s.get("evs_rate", cfg.video.evs_rate))
        try:
            opts = MediaOptions(
                fps=float(s.get("fps", cfg.video.fps)),
                max_frames=int(s.get("max_frames", cfg.video.max_frames)),
                evs_rate=float(evs),
                sample_rate=int(s.get("sample_rate", cfg.audio.sample_rate)),
                min_patches=int(s.get("min_patches", cfg.vision.min_patches)),
                max_patches=int(s.get("max_patches", cfg.vision.max_patches)),
                image_mode=str(s.get("image_mode", cfg.vision.mode)),
            )
        except (TypeError, ValueError) as e:
            raise ValueError(f"media settings {s}: expected numbers for fps, max_frames, evs_q, sample_rate, "
                             f"min_patches, max_patches ({e})") from None
        if (not 0 < opts.fps < math.inf or opts.max_frames < 1 or opts.sample_rate < 1
                or not 0.0 <= opts.evs_rate < 1.0):  # comparisons refuse a NaN fps or evs_q too
            raise ValueError(f"media settings {s}: expected a finite fps > 0, max_frames >= 1, sample_rate >= 1, "
                             "0 <= evs_q < 1")
        return opts

    def vision_config(self, cfg: OmniConfig) -> VisionConfig:
        """The image encoder config with this request's patch budget and mode."""
        return dataclasses.replace(cfg.vision, min_patches=self.min_patches, max_patches=self.max_patches,
                                   mode=self.image_mode)


@dataclass
class LoadedMedia:
    """One media part, decoded and preprocessed, ready for its encoder.

    ``pixels``: image (N crops, 3, H, W) or video (T', 3, H, W) normalized floats; audio: mono
    waveform (samples,) at the encoder's sample rate. ``n_tokens`` is the LM token count from the
    encoder's formula (video: after EVS). ``info`` holds per-part facts for the response.
    """

    kind: str
    path: str
    pixels: torch.Tensor
    n_tokens: int
    grid: Grid | None = None
    info: dict[str, Any] = field(default_factory=dict)


def media_parts(messages: Sequence[Message]) -> list[ContentPart]:
    return [p for m in messages for p in m.content if p.type != "text"]


def load_media(messages: Sequence[Message], cfg: OmniConfig,
               settings: Mapping[str, Any] | None = None) -> list[LoadedMedia]:
    """Decode and preprocess every media part of ``messages`` (no model needed; thread-safe).

    Raises `evalsuite.media.MediaError` (one line naming the file) for a missing or corrupt file.
    """
    from evalsuite.media import MediaError, load_audio, load_image, sample_frames

    opts = MediaOptions.resolve(cfg, settings)
    out: list[LoadedMedia] = []
    for part in media_parts(messages):
        path = str(part.path)
        if part.type == "image":
            image = load_image(path)
            vcfg = opts.vision_config(cfg)
            pixels, grid = preprocess_image(image, vcfg)
            n = image_tokens(image.height, image.width, vcfg)
            out.append(LoadedMedia("image", path, pixels, n, grid, {"size": [image.width, image.height]}))
        elif part.type == "video":
            frames, stamps = sample_frames(path, opts.fps, opts.max_frames)  # uint8 (T, H, W, 3)
            t, h, w, _ = frames.shape
            pixels, grid = preprocess_frames(frames, cfg.video)
            before, after = video_tokens(t, h, w, cfg.video, opts.evs_rate)
            info = {"frames": int(t), "before_evs": before, "evs_rate": opts.evs_rate,
                    "timestamps": [round(float(s), 4) for s in stamps]}
            out.append(LoadedMedia("video", path, pixels, after, grid, info))
        elif part.type == "audio":
            raw = load_audio(path, opts.sample_rate)
            if raw.size == 0:
                raise MediaError(f"audio file has no samples: {path}")
            wave = load_waveform((raw, opts.sample_rate), cfg.audio)  # resampled to the encoder's rate
            n = audio_tokens(wave.shape[-1], cfg.audio)
            out.append(LoadedMedia("audio", path, wave, n, None,
                                   {"seconds": wave.shape[-1] / cfg.audio.sample_rate}))
        else:  # ContentPart already rejects other types; kept for a clear message if that changes
            raise ValueError(f"unknown media part type {part.type!r}; expected image, video or audio")
    return out


class OmniModel(nn.Module):
    """Language backbone + vision/video/audio encoders; see the module docstring."""

    def __init__(self, cfg: OmniConfig) -> None:
        super().__init__()
        self.config = cfg
        self.lm = LanguageModel(cfg.backbone)
        self.vision = VisionEncoder(cfg.vision)
        self.video = VideoEncoder(cfg.video, vision=self.vision)  # shares the vision transformer
        self.audio = AudioEncoder(cfg.audio)
        self.tokenizer = ByteTokenizer(cfg.loc_bins)
        if self.tokenizer.vocab_size > cfg.backbone.vocab_size:
            raise ValueError(f"OmniModel: the tokenizer has {self.tokenizer.vocab_size} ids but the backbone "
                             f"vocab_size is {cfg.backbone.vocab_size}")

    @property
    def dtype(self) -> torch.dtype:
        return self.lm.backbone.embeddings.weight.dtype

    @property
    def device(self) -> torch.device:
        return self.lm.backbone.embeddings.weight.device

    @torch.no_grad()
    def embed_prompt(self, messages: Sequence[Message], settings: Mapping[str, Any] | None = None
                     ) -> tuple[torch.Tensor, torch.Tensor, dict[str, Any]]:
        """Chat messages → (inputs_embeds [1, T, D], input_ids [T], info); see `embed_loaded`."""
        return self.embed_loaded(messages, load_media(messages, self.config, settings))

    @torch.no_grad()
    def embed_loaded(self, messages: Sequence[Message], media: Sequence[LoadedMedia],
                     ids: Sequence[int] | None = None) -> tuple[torch.Tensor, torch.Tensor, dict[str, Any]]:
        """Messages + their preprocessed media (`load_media`) → (inputs_embeds [1, T, D], input_ids [T], info).

        ``ids``: the messages' token ids as the tokenizer's chat template lays them out with these
        media's token counts, when the caller already has them (the reference backend measures the
        prompt with them); None applies the template here.

        ``info``: ``prompt_tokens``, and per modality present ``image_tokens``,
        ``video_tokens_before_evs`` / ``video_tokens_after_evs`` / ``video_frames``, ``audio_tokens`` /
        ``audio_tokens_per_second`` / ``audio_seconds`` (sums over the parts of that kind).
        """
        parts = media_parts(messages)
        if len(parts) != len(media) or any(p.type != m.kind for p, m in zip(parts, media)):
            raise ValueError("embed_loaded: media do not match the messages' media parts (use load_media)")
        if ids is None:
            counts = iter([m.n_tokens for m in media])
            ids = self.tokenizer.apply_chat(messages, media_tokens=lambda part: next(counts))
        ids = list(ids)
        input_ids = torch.tensor(ids, dtype=torch.long, device=self.device)
        embeds = self.lm.backbone.embeddings(input_ids)  # [T, D]
        spans = self.tokenizer.media_spans(ids)
        for span, tokens in zip(spans, self._encode(media)):
            if tokens.shape[0] != span.length:
                raise RuntimeError(f"{span.kind} encoder gave {tokens.shape[0]} tokens, its formula "
                                   f"{span.length}: encoder and token-count formula disagree")
            embeds[span.start:span.start + span.length] = tokens.to(embeds.dtype)
        return embeds[None], input_ids, self._info(media, len(ids))

    def _encode(self, media: Sequence[LoadedMedia]) -> list[torch.Tensor]:
        """Encoder outputs (n_tokens, D) per media part, in order. Images go through the vision
        encoder together (one packed sequence, block-diagonal attention); video and audio one by one."""
        device = self.vision.patch_embed.weight.device
        # Inputs go in as float32 (pixels, waveforms): each encoder casts them to its weights' dtype
        # where they enter, after any float32-only front end (EVS pixel change, log-mel).
        out: list[torch.Tensor | None] = [None] * len(media)
        images = [i for i, m in enumerate(media) if m.kind == "image"]
        if images:
            encoded = self.vision.encode([media[i].pixels.to(device) for i in images])
            for i, tokens in zip(images, encoded):
                out[i] = tokens.reshape(-1, tokens.shape[-1])  # (crops, T_i, D) -> (crops*T_i, D)
        for i, m in enumerate(media):
            if m.kind == "video":
                assert m.grid is not None
                pixels = m.pixels.to(device)
                evs = _evs_rate_of(m, self.config)
                out[i] = self.video(pixels, m.grid, evs, n_frames=m.info["frames"]).tokens
            elif m.kind == "audio":
                wave = m.pixels.to(device)
                tokens, _ = self.audio.encode_waveforms([wave])
                out[i] = tokens[0]
        return [t for t in out if t is not None]

    def _info(self, media: Sequence[LoadedMedia], n_ids: int) -> dict[str, Any]:
        info: dict[str, Any] = {"prompt_tokens": n_ids}
        kinds = {m.kind for m in media}
        if "image" in kinds:
            info["image_tokens"] = sum(m.n_tokens for m in media if m.kind == "image")
        if "video" in kinds:
            vids = [m for m in media if m.kind == "video"]
            info["video_tokens_before_evs"] = sum(m.info["before_evs"] for m in vids)
            info["video_tokens_after_evs"] = sum(m.n_tokens for m in vids)
            info["video_frames"] = sum(m.info["frames"] for m in vids)
        if "audio" in kinds:
            clips = [m for m in media if m.kind == "audio"]
            info["audio_tokens"] = sum(m.n_tokens for m in clips)
            info["audio_seconds"] = round(sum(m.info["seconds"] for m in clips), 4)
            info["audio_tokens_per_second"] = self.config.audio.tokens_per_second
        return info


def _evs_rate_of(media: LoadedMedia, cfg: OmniConfig) -> float:
    """The EVS rate a loaded video was counted with (stored so the encoder prunes the same amount)."""
    return float(media.info.get("evs_rate", cfg.video.evs_rate))


def build_omni(cfg: OmniConfig | str = "tiny", seed: int = 0, dtype: torch.dtype = torch.float32,
               device: torch.device | str = "cpu") -> OmniModel:
    """A freshly initialised omni model; the same ``seed`` gives the same weights (the global RNG is
    left as it was)."""
    cfg = OmniConfig.preset(cfg) if isinstance(cfg, str) else cfg
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = OmniModel(cfg)
    return model.to(device=device, dtype=dtype).eval()


__all__ = ["OmniModel", "LoadedMedia", "MediaOptions", "load_media", "media_parts", "build_omni", "MEDIA_KEYS"]
