"""Encoders under the precision recipes: the vision, video and audio encoders (and their projectors)
run with bfloat16 weights, close to float32; float32-only parts (log-mel, feature statistics, rotary
tables, EVS pixel change) stay float32; the float32 path is unchanged from the recorded reference."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from evalsuite.types import ContentPart, user
from evalsuite.model.omni import OmniModel, build_omni, load_media
from omni_media import write_image, write_tone, write_video

# Relative error (Frobenius norm of the difference / norm of the float32 output) of an encoder with
# bfloat16 weights and bfloat16 compute against the same encoder in float32 (seed-0 tiny model, the
# inputs below). Measured: vision 7.1e-3..7.6e-3, video 7.2e-3..7.6e-3, audio 1.0e-2..1.1e-2 over
# three input seeds; rounding the weights alone accounts for 3e-3 (vision) / 5e-3 (audio), the rest
# is bfloat16 activations (unit roundoff 2^-9 ~ 2e-3 per op) through the 2-layer stacks. 2e-2 leaves
# about 2x margin; a float32-only part computed in bfloat16 or a dtype mix-up fails far above it or raises.
BF16_REL_TOL = 2e-2

# Float32 outputs of the seed-0 tiny encoders on `fixed_inputs()`, recorded with the code before
# the bfloat16 changes: (sum, sum of |x|, element 7, element -3) as float64 hex, compared exactly.
FP32_REFERENCE = {
    "vision": ((7, 128), ("0x1.8f0b893640000p+2", "0x1.55a686e9f6800p+7", "-0x1.1f60300000000p-2",
                          "-0x1.a7627c0000000p-2")),
    "video": ((6, 128), ("0x1.0c856d8f2b000p+3", "0x1.0d424a497eb00p+7", "-0x1.847e1e0000000p-3",
                         "-0x1.90aa9c0000000p-3")),
    "audio": ((11, 128), ("-0x1.4329dc66f1000p+4", "0x1.9efae72fe3e00p+7", "-0x1.1201940000000p-3",
                          "-0x1.c65dce0000000p-3")),
}


def fixed_inputs(seed: int = 2024) -> tuple[list[torch.Tensor], torch.Tensor, list[torch.Tensor]]:
    """Two image crops (grids 4x6 and 2x2), 4 video frames (grid 4x4), two waveforms; float32."""
    rng = np.random.default_rng(seed)
    crops = [torch.from_numpy(rng.standard_normal((1, 3, 32, 48)).astype(np.float32)),
             torch.from_numpy(rng.standard_normal((1, 3, 16, 16)).astype(np.float32))]
    frames = torch.from_numpy(rng.standard_normal((4, 3, 32, 32)).astype(np.float32))
    waves = [torch.from_numpy(0.1 * rng.standard_normal(n).astype(np.float32)) for n in (8000, 5000)]
    return crops, frames, waves


@torch.no_grad()
def encode_all(model: OmniModel, seed: int = 2024, evs_rate: float = 0.5) -> dict[str, torch.Tensor]:
    crops, frames, waves = fixed_inputs(seed)
    return {
        "vision": torch.cat([o.reshape(-1, o.shape[-1]) for o in model.vision.encode(crops)]),
        "video": model.video(frames, (4, 4), evs_rate).tokens,
        "audio": torch.cat(model.audio.encode_waveforms(waves)[0]),
    }


def fingerprint(t: torch.Tensor) -> tuple[str, ...]:
    t = t.detach().double()
    return (t.sum().item().hex(), t.abs().sum().item().hex(), t.flatten()[7].item().hex(),
            t.flatten()[-3].item().hex())


def rel_err(got: torch.Tensor, ref: torch.Tensor) -> float:
    r = ((got.float() - ref.float()).norm() / ref.float().norm()).item()
    print(f"relative error {r:.3e}")
    return r


def bf16_encoders(model: OmniModel) -> OmniModel:
    for enc in (model.vision, model.video, model.audio):  # the video encoder shares the vision transformer
        enc.to(torch.bfloat16)
    return model


@pytest.fixture(scope="module")
def fp32() -> OmniModel:
    return build_omni("tiny", seed=0)


@pytest.fixture(scope="module")
def bf16() -> OmniModel:
    return bf16_encoders(build_omni("tiny", seed=0))


@pytest.fixture(scope="module")
def fp32_out(fp32: OmniModel) -> dict[str, torch.Tensor]:
    return encode_all(fp32)


@pytest.mark.parametrize("kind", ["vision", "video", "audio"])
def test_fp32_path_equals_the_recorded_reference(fp32_out: dict[str, torch.Tensor], kind: str) -> None:
    shape, ref = FP32_REFERENCE[kind]
    out = fp32_out[kind]
    assert out.dtype == torch.float32 and tuple(out.shape) == shape
    # recorded on one CPU; another machine's math library may sum in another order, hence rel 1e-5
    got = [float.fromhex(h) for h in fingerprint(out)]
    assert got == pytest.approx([float.fromhex(h) for h in ref], rel=1e-5, abs=1e-6)


@pytest.mark.parametrize("kind", ["vision", "video", "audio"])
@pytest.mark.parametrize("seed", [2024, 7])
def test_bf16_weights_run_close_to_fp32(fp32: OmniModel, bf16: OmniModel, kind: str, seed: int) -> None:
    assert bf16.vision.patch_embed.weight.dtype == bf16.audio.subsample.out.weight.dtype == torch.bfloat16
    ref = encode_all(fp32, seed)[kind]
    out = encode_all(bf16, seed)[kind]
    assert out.dtype == torch.bfloat16 and out.shape == ref.shape and torch.isfinite(out).all()
    assert rel_err(out, ref) < BF16_REL_TOL


def test_fp32_only_parts_stay_fp32_under_a_cast() -> None:
    """model.to(bfloat16) keeps the rotary inverse frequencies float32 and exactly as built."""
    a, b = build_omni("tiny", seed=0), build_omni("tiny", seed=0, dtype=torch.bfloat16)
    for x, y in ((a.vision.rope.inv_freq, b.vision.rope.inv_freq), (a.audio.inv_freq, b.audio.inv_freq)):
        assert y.dtype == torch.float32 and torch.equal(x, y)
    pos = torch.tensor([[0, 0], [3, 5], [40, 70]])
    assert all(torch.equal(p, q) for p, q in zip(a.vision.rope(pos), b.vision.rope(pos)))
    back = b.float()  # and back to float32: nothing of the table was lost on the way
    assert torch.equal(back.vision.rope.inv_freq, a.vision.rope.inv_freq)


def test_evs_pixel_metric_keeps_the_same_tokens_in_bf16(fp32: OmniModel, bf16: OmniModel) -> None:
    _, frames, _ = fixed_inputs()
    with torch.no_grad():
        ref, out = fp32.video(frames, (4, 4), 0.5), bf16.video(frames, (4, 4), 0.5)
    assert torch.equal(out.positions, ref.positions)  # the change metric is computed on float32 pixels
    assert out.info == ref.info


def test_prompt_embeds_come_in_the_language_models_dtype(fp32: OmniModel, tmp_path) -> None:
    msgs = [user(ContentPart.of_media("image", write_image(tmp_path / "a.png", (40, 24))),
                 ContentPart.of_media("video", write_video(tmp_path / "v.mp4", n_frames=6, fps=4)),
                 ContentPart.of_media("audio", write_tone(tmp_path / "t.wav", 0.5)), "What is this?")]
    media = load_media(msgs, fp32.config)
    ref, ids, _ = fp32.embed_loaded(msgs, media)
    mixed = bf16_encoders(build_omni("tiny", seed=0))  # bf16 encoders, float32 LM
    full = build_omni("tiny", seed=0, dtype=torch.bfloat16)  # everything bf16
    for model, dtype in ((mixed, torch.float32), (full, torch.bfloat16)):
        embeds, ids2, _ = model.embed_loaded(msgs, media)
        assert embeds.dtype == dtype and torch.equal(ids, ids2)
        assert rel_err(embeds, ref) < BF16_REL_TOL
