"""Audio encoder: raw waveform → log-mel → conv subsampling ×8 → conformer blocks → MLP projector.

Features, top-down (a Parakeet/FastConformer-style encoder):

- input: any sample rate; files go through :func:`evalsuite.media.load_audio` at the model rate,
  in-memory waveforms are resampled here with a windowed-sinc polyphase filter (:func:`resample`);
- features: pre-emphasis, STFT (25 ms Hann window, 10 ms hop, ``torch.stft``), power spectrum,
  a Slaney-style mel filterbank built here (:func:`mel_filterbank`; no torchaudio), ``log(x + 2^-24)``,
  then per-utterance per-feature normalization over the valid frames;
- subsampling: three stride-2 3×3 convs over (time, mel) (the first full, then depthwise + pointwise:
  NeMo's ``dw_striding``), flattened and projected to the model width: one frame per 80 ms, i.e.
  12.5 tokens per second at a 10 ms hop;
- conformer block: ½ FFN → MHSA (1D rotary positions) → conv module (pointwise → GLU → depthwise →
  LayerNorm → SiLU → pointwise) → ½ FFN → LayerNorm;
- projector: RMSNorm → Linear → ReLU² → Linear to the LM hidden size.

Batches of different lengths are padded; every layer masks the padding (between subsampling convs,
before the depthwise conv, in attention), so a padded batch equals encoding each clip alone.
Departures from Parakeet: rotary instead of Transformer-XL relative positions, LayerNorm instead of
BatchNorm in the conv module (batch-independent, padding-safe), no dither.
"""

from __future__ import annotations

import math
from typing import Any, Sequence

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from evalsuite.model.config_encoders import AudioConfig
from evalsuite.model.vision import Projector


# ---- resampling ---------------------------------------------------------------------------------
def resample(wave: torch.Tensor, orig_sr: int, new_sr: int, lowpass_width: int = 6,
             rolloff: float = 0.99) -> torch.Tensor:
    """Band-limited resampling of (..., N) along the last axis; output length ``ceil(N * new / orig)``.

    Polyphase windowed-sinc: after dividing both rates by their gcd, output phase j of each block
    of ``new`` samples is a fixed FIR over the input (a Hann-windowed sinc with cutoff
    ``rolloff * min(orig, new) / 2``, ``lowpass_width`` zero crossings each side), so the whole
    resampling is one strided conv1d with ``new`` output channels.
    """
    if orig_sr <= 0 or new_sr <= 0:
        raise ValueError(f"sample rates must be positive, got {orig_sr} -> {new_sr}")
    if orig_sr == new_sr:
        return wave
    g = math.gcd(int(orig_sr), int(new_sr))
    orig, new = int(orig_sr) // g, int(new_sr) // g
    shape, n = wave.shape[:-1], wave.shape[-1]
    x = wave.reshape(-1, 1, n).to(torch.float64)  # (B, 1, N)
    base = min(orig, new) * rolloff  # cutoff, in units where the input rate is `orig`
    width = math.ceil(lowpass_width * orig / base)  # filter half-length in input samples
    idx = torch.arange(-width, width + orig, dtype=torch.float64) / orig  # (K,)
    t = torch.arange(0, -new, -1, dtype=torch.float64)[:, None] / new + idx[None, :]  # (new, K)
    t = (t * base).clamp(-lowpass_width, lowpass_width)
    window = torch.cos(t * math.pi / lowpass_width / 2) ** 2
    t = t * math.pi
    sinc = torch.where(t == 0, torch.ones_like(t), torch.sin(t) / torch.where(t == 0, torch.ones_like(t), t))
    kernels = (sinc * window * (base / orig))[:, None, :]  # (new, 1, K)
    x = F.pad(x, (width, width + orig))
    y = F.conv1d(x, kernels, stride=orig)  # (B, new, N/orig + 1)
    y = y.transpose(1, 2).reshape(x.shape[0], -1)  # interleave phases: (B, new * blocks)
    target = math.ceil(new * n / orig)
    return y[..., :target].to(wave.dtype).reshape(*shape, target)


# ---- features -----------------------------------------------------------------------------------
_F_SP = 200.0 / 3  # Slaney mel scale: linear below 1 kHz, logarithmic above
_MIN_LOG_HZ = 1000.0
_MIN_LOG_MEL = _MIN_LOG_HZ / _F_SP
_LOGSTEP = math.log(6.4) / 27.0


def hz_to_mel(f: torch.Tensor) -> torch.Tensor:
    f = torch.as_tensor(f, dtype=torch.float64)
    log_part = _MIN_LOG_MEL + torch.log(torch.clamp(f, min=_MIN_LOG_HZ) / _MIN_LOG_HZ) / _LOGSTEP
    return torch.where(f >= _MIN_LOG_HZ, log_part, f / _F_SP)


def mel_to_hz(m: torch.Tensor) -> torch.Tensor:
    m = torch.as_tensor(m, dtype=torch.float64)
    log_part = _MIN_LOG_HZ * torch.exp(_LOGSTEP * (m - _MIN_LOG_MEL))
    return torch.where(m >= _MIN_LOG_MEL, log_part, m * _F_SP)


def mel_filterbank(n_freqs: int, sample_rate: int, n_mels: int, f_min: float = 0.0,
                   f_max: float | None = None) -> torch.Tensor:
    """(n_mels, n_freqs) Slaney mel filterbank with Slaney area normalization (librosa's default).

    Filter i is a triangle over FFT bin frequencies rising from edge i to edge i+1 and falling to
    edge i+2 (edges equally spaced in mel), scaled by ``2 / (edge[i+2] - edge[i])``.
    """
    f_max = sample_rate / 2 if f_max is None else f_max
    fft_freqs = torch.linspace(0, sample_rate / 2, n_freqs, dtype=torch.float64)  # (F,)
    edges = mel_to_hz(torch.linspace(float(hz_to_mel(f_min)), float(hz_to_mel(f_max)), n_mels + 2, dtype=torch.float64))
    fdiff = edges[1:] - edges[:-1]  # (M+1,)
    ramps = edges[:, None] - fft_freqs[None, :]  # (M+2, F)
    lower = -ramps[:-2] / fdiff[:-1, None]  # rising edge, (M, F)
    upper = ramps[2:] / fdiff[1:, None]  # falling edge, (M, F)
    weights = torch.clamp(torch.minimum(lower, upper), min=0.0)
    enorm = 2.0 / (edges[2:] - edges[:-2])  # (M,)
    return (weights * enorm[:, None]).float()


def num_frames(n_samples: int, cfg: AudioConfig) -> int:
    """STFT frames for ``n_samples`` (centered frames)."""
    return 1 + n_samples // cfg.hop_length


def subsampled_length(frames: int, cfg: AudioConfig) -> int:
    for _ in range(cfg.subsample_layers):
        frames = (frames + 1) // 2  # 3×3 kernel, stride 2, padding 1: ceil(L / 2)
    return frames


def audio_tokens(n_samples: int, cfg: AudioConfig) -> int:
    """LM tokens for ``n_samples`` samples at ``cfg.sample_rate`` (~12.5 per second)."""
    return subsampled_length(num_frames(n_samples, cfg), cfg)


def log_mel(wave: torch.Tensor, cfg: AudioConfig) -> torch.Tensor:
    """Waveform (N,) or (B, N) at ``cfg.sample_rate`` → log-mel (…, n_mels, 1 + N // hop)."""
    if wave.dim() not in (1, 2) or wave.shape[-1] == 0:
        raise ValueError(f"expected a waveform (N,) or (B, N) with N > 0, got {tuple(wave.shape)}")
    x = wave.float()
    if cfg.preemph:
        x = torch.cat([x[..., :1], x[..., 1:] - cfg.preemph * x[..., :-1]], dim=-1)
    window = torch.hann_window(cfg.win_length, periodic=False, dtype=x.dtype, device=x.device)
    spec = torch.stft(x, cfg.n_fft, hop_length=cfg.hop_length, win_length=cfg.win_length, window=window,
                      center=True, pad_mode="constant", return_complex=True)  # (…, F, frames)
    power = spec.real.square() + spec.imag.square()
    fb = mel_filterbank(cfg.n_fft // 2 + 1, cfg.sample_rate, cfg.n_mels, cfg.f_min, cfg.f_max).to(x.device)
    return torch.log(torch.matmul(fb, power) + 2.0 ** -24)  # (…, M, frames)


def load_waveform(source: str | tuple[np.ndarray | torch.Tensor, int], cfg: AudioConfig) -> torch.Tensor:
    """A file path (decoded by the harness pipeline at ``cfg.sample_rate``) or ``(waveform, rate)``
    (mono (N,), or (C, N) which is averaged to mono, resampled here) → float32 (N,)."""
    if isinstance(source, (str, bytes)) or hasattr(source, "__fspath__"):
        from evalsuite.media import load_audio

        return torch.from_numpy(load_audio(str(source), cfg.sample_rate))
    if not (isinstance(source, tuple) and len(source) == 2):
        raise TypeError(f"expected an audio path or (waveform, sample_rate), got {type(source).__name__}")
    wave, rate = source
    w = torch.as_tensor(np.asarray(wave) if not isinstance(wave, torch.Tensor) else wave).float()
    if w.dim() == 2:
        w = w.mean(dim=0)
    if w.dim() != 1 or w.numel() == 0:
        raise ValueError(f"expected a mono waveform (N,) or (channels, N) with N > 0, got {tuple(w.shape)}")
    return resample(w, int(rate), cfg.sample_rate)


def normalize_features(feats: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """Per-utterance, per-mel-bin mean/std over valid frames; padding set to 0. (B, M, T) → same."""
    t = feats.shape[-1]
    mask = (torch.arange(t, device=feats.device)[None, :] < lengths[:, None]).unsqueeze(1)  # (B, 1, T)
    n = lengths.clamp(min=1).view(-1, 1, 1).to(feats.dtype)
    mean = (feats * mask).sum(-1, keepdim=True) / n
    var = ((feats - mean).square() * mask).sum(-1, keepdim=True) / (n - 1).clamp(min=1)
    return ((feats - mean) / (var.sqrt() + 1e-5)) * mask


# ---- modules ------------------------------------------------------------------------------------
def _time_mask(lengths: torch.Tensor, t: int) -> torch.Tensor:
    return torch.arange(t, device=lengths.device)[None, :] < lengths[:, None]  # (B, T)


class ConvSubsampling(nn.Module):
    """(B, M, T) features → (B, T/8, width): stride-2 3×3 convs over (time, mel), then a linear."""

    def __init__(self, cfg: AudioConfig) -> None:
        super().__init__()
        c = cfg.subsample_channels
        layers: list[nn.Module] = [nn.Conv2d(1, c, 3, stride=2, padding=1)]
        for _ in range(cfg.subsample_layers - 1):
            layers.append(nn.Sequential(nn.Conv2d(c, c, 3, stride=2, padding=1, groups=c), nn.Conv2d(c, c, 1)))
        self.convs = nn.ModuleList(layers)
        f = cfg.n_mels
        for _ in range(cfg.subsample_layers):
            f = (f + 1) // 2
        self.out = nn.Linear(c * f, cfg.width)

    def forward(self, feats: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = feats.transpose(1, 2).unsqueeze(1)  # (B, 1, T, M)
        for conv in self.convs:
            x = F.relu(conv(x))
            lengths = (lengths + 1) // 2
            x = x * _time_mask(lengths, x.shape[2])[:, None, :, None]  # keep padding at exactly 0
        b, c, t, f = x.shape
        return self.out(x.permute(0, 2, 1, 3).reshape(b, t, c * f)), lengths  # (B, T', C*F') → (B, T', D)


def _rope_1d(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    a, b = x.chunk(2, dim=-1)
    return x * cos + torch.cat([-b, a], dim=-1) * sin


class FeedForward(nn.Module):
    def __init__(self, cfg: AudioConfig) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.LayerNorm(cfg.width, eps=cfg.norm_eps), nn.Linear(cfg.width, cfg.ffn_dim),
                                 nn.SiLU(), nn.Linear(cfg.ffn_dim, cfg.width))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class SelfAttention(nn.Module):
    def __init__(self, cfg: AudioConfig) -> None:
        super().__init__()
        self.heads = cfg.heads
        self.norm = nn.LayerNorm(cfg.width, eps=cfg.norm_eps)
        self.qkv = nn.Linear(cfg.width, 3 * cfg.width)
        self.proj = nn.Linear(cfg.width, cfg.width)

    def forward(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, key_mask: torch.Tensor) -> torch.Tensor:
        b, t, d = x.shape
        qkv = self.qkv(self.norm(x)).view(b, t, 3, self.heads, d // self.heads)  # (B, T, 3, H, hd)
        q, k, v = qkv.permute(2, 0, 3, 1, 4)  # each (B, H, T, hd)
        q, k = _rope_1d(q, cos, sin), _rope_1d(k, cos, sin)
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=key_mask[:, None, None, :])  # (B, H, T, hd)
        return self.proj(y.transpose(1, 2).reshape(b, t, d))


class ConvModule(nn.Module):
    """LayerNorm → pointwise (D→2D) → GLU → depthwise conv (k) → LayerNorm → SiLU → pointwise."""

    def __init__(self, cfg: AudioConfig) -> None:
        super().__init__()
        d = cfg.width
        self.norm = nn.LayerNorm(d, eps=cfg.norm_eps)
        self.pw1 = nn.Linear(d, 2 * d)
        self.dw = nn.Conv1d(d, d, cfg.conv_kernel, padding=cfg.conv_kernel // 2, groups=d)
        self.dw_norm = nn.LayerNorm(d, eps=cfg.norm_eps)
        self.pw2 = nn.Linear(d, d)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        y = F.glu(self.pw1(self.norm(x)), dim=-1) * mask[..., None]  # (B, T, D), padding zeroed
        y = self.dw(y.transpose(1, 2)).transpose(1, 2)  # depthwise over time: (B, D, T) ↔ (B, T, D)
        return self.pw2(F.silu(self.dw_norm(y)))


class ConformerBlock(nn.Module):
    def __init__(self, cfg: AudioConfig) -> None:
        super().__init__()
        self.ff1 = FeedForward(cfg)
        self.attn = SelfAttention(cfg)
        self.conv = ConvModule(cfg)
        self.ff2 = FeedForward(cfg)
        self.norm = nn.LayerNorm(cfg.width, eps=cfg.norm_eps)

    def forward(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        x = x + 0.5 * self.ff1(x)
        x = x + self.attn(x, cos, sin, mask)
        x = x + self.conv(x, mask)
        x = x + 0.5 * self.ff2(x)
        return self.norm(x)


class AudioEncoder(nn.Module):
    """log-mel (B, n_mels, T) + lengths → LM-space tokens (B, T', lm_hidden) + token lengths."""

    def __init__(self, cfg: AudioConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.subsample = ConvSubsampling(cfg)
        self.blocks = nn.ModuleList(ConformerBlock(cfg) for _ in range(cfg.depth))
        self.projector = Projector(cfg.width, cfg.projector_hidden, cfg.lm_hidden, cfg.norm_eps)
        self.register_buffer("inv_freq", self._inv_freq(), persistent=False)

    def _inv_freq(self) -> torch.Tensor:
        hd = self.cfg.width // self.cfg.heads
        return 1.0 / self.cfg.rope_theta ** (torch.arange(0, hd, 2, dtype=torch.float32) / hd)

    def _apply(self, fn: Any, recurse: bool = True) -> "AudioEncoder":
        # The rotary table stays float32 when the module is cast (model.to(torch.bfloat16)):
        # recomputed exactly as at construction, on the buffer's new device.
        super()._apply(fn, recurse)
        if self.inv_freq.dtype != torch.float32:
            self.inv_freq = self._inv_freq().to(self.inv_freq.device)
        return self

    @property
    def dtype(self) -> torch.dtype:
        """The weights' dtype, which the encoder computes in (float32, or bfloat16 as the recipes store it)."""
        return self.subsample.out.weight.dtype

    def forward(self, feats: torch.Tensor, lengths: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """log-mel (B, n_mels, T) (any float dtype; normalized in float32) → tokens (B, T', lm_hidden)
        in the weights' dtype, and token lengths."""
        x, lengths = self.hidden(feats, lengths)
        return self.projector(x), lengths

    def hidden(self, feats: torch.Tensor, lengths: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """The conformer's output before the projector: (B, T', width) and token lengths (what an
        encoder-only objective, such as the trainer's CTC stage, reads)."""
        if feats.dim() != 3 or feats.shape[1] != self.cfg.n_mels:
            raise ValueError(f"expected log-mel (B, {self.cfg.n_mels}, T), got {tuple(feats.shape)}")
        b, _, t = feats.shape
        if lengths is None:
            lengths = torch.full((b,), t, dtype=torch.long, device=feats.device)
        # log-mel statistics in float32, then cast to the weights' dtype (no-op for float32 weights)
        x = normalize_features(feats.float(), lengths).to(self.dtype)
        x, lengths = self.subsample(x, lengths)  # (B, T', D)
        mask = _time_mask(lengths, x.shape[1])  # (B, T')
        ang = torch.arange(x.shape[1], device=x.device, dtype=torch.float32)[:, None] * self.inv_freq  # (T', hd/2)
        ang = torch.cat([ang, ang], dim=-1)  # (T', hd)
        cos, sin = ang.cos().to(x.dtype), ang.sin().to(x.dtype)  # float32 angles, cast after
        for blk in self.blocks:
            x = blk(x, cos, sin, mask)
        return x, lengths

    def batch_features(self, waves: Sequence[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """Mono waveforms → right-padded log-mel (B, n_mels, T) and their frame counts."""
        mels = [log_mel(w, self.cfg) for w in waves]  # each (M, T_i)
        lengths = torch.tensor([m.shape[-1] for m in mels])
        t = int(lengths.max())
        return torch.stack([F.pad(m, (0, t - m.shape[-1])) for m in mels]), lengths  # (B, M, T)

    def encode_waveforms(self, waves: Sequence[torch.Tensor]) -> tuple[list[torch.Tensor], dict[str, Any]]:
        """Mono waveforms at ``cfg.sample_rate`` → per-clip tokens (T'_i, lm_hidden) + info."""
        if not waves:
            return [], {"audio_tokens": []}
        feats, lengths = self.batch_features(waves)
        tokens, out_len = self(feats, lengths)
        outs = [tokens[i, : int(out_len[i])] for i in range(len(waves))]
        info = {
            "audio_tokens": [int(n) for n in out_len],
            "audio_seconds": [round(w.shape[-1] / self.cfg.sample_rate, 4) for w in waves],
            "audio_tokens_per_second": self.cfg.tokens_per_second,
            "audio_sample_rate": self.cfg.sample_rate,
        }
        return outs, info

    def encode(self, sources: Sequence[str | tuple[np.ndarray | torch.Tensor, int]]
               ) -> tuple[list[torch.Tensor], dict[str, Any]]:
        """Paths or (waveform, rate) pairs → per-clip tokens + info."""
        return self.encode_waveforms([load_waveform(s, self.cfg) for s in sources])


__all__ = [
    "resample", "hz_to_mel", "mel_to_hz", "mel_filterbank", "num_frames", "subsampled_length", "audio_tokens",
    "log_mel", "load_waveform", "normalize_features", "ConvSubsampling", "ConformerBlock", "AudioEncoder",
]
