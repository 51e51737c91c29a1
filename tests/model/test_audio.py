"""Audio encoder: mel filterbank vs a slow reference, tone → mel bin, token rate, resampling, batching."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch

from evalsuite.media import MediaError
from media_files import write_pcm16
from evalsuite.model.card import encoder_params
from evalsuite.model.audio import (
    AudioEncoder,
    audio_tokens,
    load_waveform,
    log_mel,
    mel_filterbank,
    resample,
    subsampled_length,
)
from evalsuite.model.config_encoders import AudioConfig

TINY = AudioConfig.preset("tiny")
FULL = AudioConfig.preset("nano-omni-30b-a3b")


def _tone(freq: float, seconds: float, sr: int, amp: float = 0.5) -> torch.Tensor:
    t = torch.arange(int(round(seconds * sr)), dtype=torch.float64) / sr
    return (amp * torch.sin(2 * math.pi * freq * t)).float()


# ---- slow references ----------------------------------------------------------------------------
def _mel_ref(f: float) -> float:
    """Slaney mel, written piecewise: linear 200/3 Hz per mel below 1 kHz, log (6.4 per 27 mel) above."""
    return f * 3 / 200 if f < 1000 else 15 + 27 * math.log(f / 1000) / math.log(6.4)


def _hz_ref(m: float) -> float:
    return m * 200 / 3 if m < 15 else 1000 * 6.4 ** ((m - 15) / 27)


def _filterbank_ref(n_freqs: int, sr: int, n_mels: int, f_min: float, f_max: float) -> np.ndarray:
    """Direct triangle formula, one filter and one FFT bin at a time."""
    lo, hi = _mel_ref(f_min), _mel_ref(f_max)
    edges = [_hz_ref(lo + (hi - lo) * i / (n_mels + 1)) for i in range(n_mels + 2)]
    out = np.zeros((n_mels, n_freqs))
    for i in range(n_mels):
        left, center, right = edges[i], edges[i + 1], edges[i + 2]
        for j in range(n_freqs):
            f = j * (sr / 2) / (n_freqs - 1)
            if left <= f <= center:
                w = (f - left) / (center - left)
            elif center < f <= right:
                w = (right - f) / (right - center)
            else:
                w = 0.0
            out[i, j] = w * 2 / (right - left)
    return out


@pytest.mark.parametrize("n_fft,sr,n_mels,f_min,f_max", [(512, 16000, 128, 0.0, 8000.0), (512, 16000, 32, 0.0, 8000.0),
                                                         (400, 22050, 40, 60.0, 7600.0)])
def test_mel_filterbank_matches_slow_reference(n_fft: int, sr: int, n_mels: int, f_min: float, f_max: float) -> None:
    n_freqs = n_fft // 2 + 1
    fb = mel_filterbank(n_freqs, sr, n_mels, f_min, f_max).double().numpy()
    ref = _filterbank_ref(n_freqs, sr, n_mels, f_min, f_max)
    print("filterbank max abs diff", np.abs(fb - ref).max(), "max weight", ref.max())
    np.testing.assert_allclose(fb, ref, atol=1e-7, rtol=1e-5)
    assert (fb.sum(axis=1) > 0).all()  # no empty filter at these sizes


@pytest.mark.parametrize("freq", [440.0, 3000.0])
def test_tone_peaks_in_the_right_mel_bin(freq: float) -> None:
    mel = log_mel(_tone(freq, 1.0, 16000), FULL)  # (128, 101)
    assert mel.shape == (128, 101)
    profile = mel.mean(dim=-1)
    lo, hi = _mel_ref(0.0), _mel_ref(8000.0)
    centers = np.array([_hz_ref(lo + (hi - lo) * (i + 1) / 129) for i in range(128)])
    expected = int(np.abs(centers - freq).argmin())
    print(f"{freq} Hz: peak bin {int(profile.argmax())} (center {centers[int(profile.argmax())]:.1f} Hz), expected {expected}")
    assert int(profile.argmax()) == expected
    assert abs(centers[expected] - freq) < 50
    # The tone dominates: far bins are many nats below the peak.
    assert float(profile.max() - profile[(expected + 20) % 128]) > 5


def test_tokens_per_second() -> None:
    assert FULL.tokens_per_second == 12.5 and TINY.tokens_per_second == 12.5
    assert (FULL.win_length, FULL.hop_length, FULL.subsampling) == (400, 160, 8)
    # 1 s → 101 mel frames → 51 → 26 → 13 tokens; 10 s → 1001 → 126.
    assert audio_tokens(16000, FULL) == 13 and audio_tokens(160000, FULL) == 126
    for seconds in [0.5, 1.0, 4.0, 10.0, 60.0]:
        n = audio_tokens(int(seconds * 16000), FULL)
        assert abs(n - 12.5 * seconds) <= 1.0, (seconds, n)
    torch.manual_seed(0)
    enc = AudioEncoder(TINY).eval()
    with torch.no_grad():
        outs, info = enc.encode_waveforms([_tone(300, 2.0, 16000), _tone(300, 0.37, 16000)])
    assert [o.shape[0] for o in outs] == info["audio_tokens"] == [audio_tokens(32000, TINY), audio_tokens(5920, TINY)] == [26, 5]
    assert outs[0].shape[1] == TINY.lm_hidden and info["audio_tokens_per_second"] == 12.5


@pytest.mark.parametrize("sr", [8000, 44100, 22050])
def test_resample_length_and_frequency(sr: int) -> None:
    seconds = 1.0
    x = _tone(440.0, seconds, sr)
    y = resample(x, sr, 16000)
    assert y.shape == (math.ceil(x.shape[0] * 16000 / sr),) == (16000,)
    # Away from the edges the result is the analytically sampled 16 kHz tone.
    ref = _tone(440.0, seconds, 16000)
    err = float((y[400:-400] - ref[400:-400]).abs().max())
    print(f"{sr} → 16k: max error vs analytic tone {err:.2e}")
    assert err < 1e-3
    spectrum = torch.fft.rfft(y.double() * torch.hann_window(y.shape[0], dtype=torch.float64)).abs()
    assert int(spectrum.argmax()) == 440  # 1 Hz bins over 1 s


def test_resample_rejects_frequencies_above_new_nyquist() -> None:
    x = _tone(12000.0, 0.5, 44100)  # above 8 kHz: must not alias into the 16 kHz result
    y = resample(x, 44100, 16000)
    rms_in, rms_out = float(x.pow(2).mean().sqrt()), float(y[200:-200].pow(2).mean().sqrt())
    print("alias rms", rms_out, "of", rms_in)
    assert rms_out < 0.01 * rms_in
    z = torch.randn(3, 1000)
    assert torch.equal(resample(z, 16000, 16000), z)
    assert resample(z, 16000, 8000).shape == (3, 500)


def test_file_goes_through_harness_pipeline(tmp_path: Path) -> None:
    wave = _tone(440.0, 1.5, 44100).numpy()
    path = write_pcm16(tmp_path / "tone.wav", wave, 44100)
    from_file = load_waveform(path, TINY)
    from_array = load_waveform((wave, 44100), TINY)
    assert abs(from_file.shape[0] - 24000) <= 64 and from_array.shape[0] == 24000
    n = min(from_file.shape[0], from_array.shape[0])
    diff = float((from_file[500:n - 500] - from_array[500:n - 500]).abs().max())
    print("ffmpeg vs torch resampler max diff", diff)
    assert diff < 2e-3  # two independent resamplers agree
    torch.manual_seed(0)
    enc = AudioEncoder(TINY).eval()
    with torch.no_grad():
        outs, info = enc.encode([path, (wave, 44100)])
    assert info["audio_tokens"] == [audio_tokens(from_file.shape[0], TINY), audio_tokens(24000, TINY)]
    # Stereo arrays are averaged to mono.
    assert torch.allclose(load_waveform((np.stack([wave, wave]), 44100), TINY), from_array)


def test_padded_batch_equals_one_by_one() -> None:
    torch.manual_seed(0)
    enc = AudioEncoder(TINY).eval()
    g = torch.Generator().manual_seed(1)
    waves = [torch.randn(16000, generator=g) * 0.1, torch.randn(5800, generator=g) * 0.1, _tone(700, 0.9, 16000)]
    with torch.no_grad():
        batch, _ = enc.encode_waveforms(waves)
        single = [enc.encode_waveforms([w])[0][0] for w in waves]
    for b, s in zip(batch, single):
        assert b.shape == s.shape
        print("batch vs single max diff", float((b - s).abs().max()))
        torch.testing.assert_close(b, s, atol=1e-5, rtol=1e-4)


def test_subsampling_length_formula() -> None:
    torch.manual_seed(0)
    enc = AudioEncoder(TINY).eval()
    for t in [1, 7, 8, 9, 101, 250]:
        feats = torch.randn(1, TINY.n_mels, t)
        with torch.no_grad():
            out, lengths = enc(feats)
        assert out.shape[1] == int(lengths[0]) == subsampled_length(t, TINY) == math.ceil(t / 8)


def test_bad_inputs(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="waveform"):
        load_waveform((np.zeros(0), 16000), TINY)
    with pytest.raises(TypeError, match="audio path or"):
        load_waveform(12345, TINY)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="sample rates must be positive"):
        resample(torch.zeros(10), 0, 16000)
    with pytest.raises(MediaError, match="not found"):
        load_waveform(str(tmp_path / "missing.wav"), TINY)
    with pytest.raises(ValueError, match="log-mel"):
        AudioEncoder(TINY)(torch.zeros(1, 7, 10))


def test_full_size_parameter_count_is_parakeet_class() -> None:
    n = encoder_params(FULL)
    print(f"audio params: {n / 1e6:.1f}M")
    assert 0.55e9 < n < 0.65e9  # Parakeet/FastConformer 0.6B
