"""Omni model: prompt embedding (token layout, encoder outputs in the placeholders, media settings),
the precision plan over the whole model, and media errors."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
import soundfile
import torch

from evalsuite import kernels
from evalsuite.media import MediaError, load_image, sample_frames
from evalsuite.types import ContentPart, Message, user
from evalsuite.model.audio import audio_tokens, load_waveform
from evalsuite.model.omni import OmniModel, build_omni, load_media
from evalsuite.model.video import video_tokens
from evalsuite.model.vision import image_tokens
from lm_testing import max_diff
from omni_media import write_image, write_tone, write_video


@pytest.fixture(scope="module")
def omni() -> OmniModel:
    return build_omni("tiny", seed=0)


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    d = tmp_path_factory.mktemp("omni_media")
    return {
        "image": write_image(d / "a.png", (40, 24)),
        "image2": write_image(d / "b.png", (24, 56), seed=1),
        "video": write_video(d / "v.mp4", n_frames=8, fps=4),
        "audio": write_tone(d / "t.wav", 0.6),
    }


def test_build_is_deterministic_and_leaves_global_rng_alone() -> None:
    torch.manual_seed(123)
    before = torch.rand(1)
    torch.manual_seed(123)
    a, b = build_omni("tiny", seed=0), build_omni("tiny", seed=0)
    assert torch.rand(1).item() == before.item()  # fork_rng: the caller's stream is untouched
    c = build_omni("tiny", seed=1)
    w = "lm.backbone.layers.0.mixer.in_proj.weight"
    assert torch.equal(a.state_dict()[w], b.state_dict()[w])
    assert not torch.equal(a.state_dict()[w], c.state_dict()[w])


def test_text_prompt_is_the_embedding_of_the_chat_ids(omni: OmniModel) -> None:
    msgs = [Message("system", (ContentPart.of_text("Be brief."),)), user("What is 2+2?")]
    embeds, ids, info = omni.embed_prompt(msgs)
    expected = omni.tokenizer.apply_chat(msgs)
    assert ids.tolist() == expected and info == {"prompt_tokens": len(expected)}
    assert embeds.shape == (1, len(expected), omni.config.backbone.hidden_size)
    assert max_diff(embeds[0], omni.lm.backbone.embeddings.weight[ids]) == 0.0


def test_image_tokens_fill_their_placeholders(omni: OmniModel, files: dict[str, str]) -> None:
    msgs = [user(ContentPart.of_media("image", files["image"]), "left", ContentPart.of_media("image", files["image2"]),
                 "right")]
    embeds, ids, info = omni.embed_prompt(msgs)
    spans = omni.tokenizer.media_spans(ids.tolist())
    n1 = image_tokens(24, 40, omni.config.vision)
    n2 = image_tokens(56, 24, omni.config.vision)
    assert [s.length for s in spans] == [n1, n2] and info["image_tokens"] == n1 + n2
    assert info["prompt_tokens"] == len(ids)
    ref, _ = omni.vision.encode_images([load_image(files["image"]), load_image(files["image2"])])
    assert max_diff(embeds[0, spans[0].start:spans[0].start + n1], ref[0]) < 1e-5
    assert max_diff(embeds[0, spans[1].start:spans[1].start + n2], ref[1]) < 1e-5
    text = ids != omni.tokenizer.placeholder_ids["image"]
    assert max_diff(embeds[0, text], omni.lm.backbone.embeddings.weight[ids[text]]) == 0.0


def test_patch_budget_setting_changes_image_tokens(omni: OmniModel, files: dict[str, str]) -> None:
    msgs = [user(ContentPart.of_media("image", files["image"]), "?")]
    _, _, small = omni.embed_prompt(msgs, {"min_patches": 16, "max_patches": 24})
    _, _, big = omni.embed_prompt(msgs, {"min_patches": 64, "max_patches": 96})
    cfg = omni.config.vision
    expect_small = image_tokens(24, 40, dataclasses.replace(cfg, min_patches=16, max_patches=24))
    expect_big = image_tokens(24, 40, dataclasses.replace(cfg, min_patches=64, max_patches=96))
    assert (small["image_tokens"], big["image_tokens"]) == (expect_small, expect_big)
    assert 4 <= expect_small <= 6 and 16 <= expect_big <= 24


def test_video_tokens_follow_settings_and_evs(omni: OmniModel, files: dict[str, str]) -> None:
    msgs = [user(ContentPart.of_media("video", files["video"]), "What changes?")]
    settings = {"fps": 4.0, "max_frames": 6, "evs_q": 0.5}
    embeds, ids, info = omni.embed_prompt(msgs, settings)
    frames, _ = sample_frames(files["video"], 4.0, 6)
    before, after = video_tokens(len(frames), frames.shape[1], frames.shape[2], omni.config.video, 0.5)
    assert info["video_frames"] == len(frames) == 6
    assert (info["video_tokens_before_evs"], info["video_tokens_after_evs"]) == (before, after)
    assert after < before
    ref = omni.video.encode_file(files["video"], evs_rate=0.5, fps=4.0, max_frames=6).tokens
    (span,) = omni.tokenizer.media_spans(ids.tolist())
    assert span.length == after
    assert max_diff(embeds[0, span.start:span.start + after], ref) < 1e-5
    _, _, no_evs = omni.embed_prompt(msgs, {"fps": 4.0, "max_frames": 6, "evs_q": 0.0})
    assert no_evs["video_tokens_after_evs"] == no_evs["video_tokens_before_evs"] == before


def test_audio_tokens_and_sample_rate_setting(omni: OmniModel, files: dict[str, str]) -> None:
    msgs = [user(ContentPart.of_media("audio", files["audio"]), "What do you hear?")]
    embeds, ids, info = omni.embed_prompt(msgs, {"sample_rate": 16000})
    cfg = omni.config.audio
    wave = load_waveform(files["audio"], cfg)
    n = audio_tokens(wave.shape[-1], cfg)
    assert info["audio_tokens"] == n and info["audio_tokens_per_second"] == cfg.tokens_per_second == 12.5
    ref, _ = omni.audio.encode_waveforms([wave])
    (span,) = omni.tokenizer.media_spans(ids.tolist())
    assert max_diff(embeds[0, span.start:span.start + n], ref[0]) < 1e-5
    # a task that preprocesses at 8 kHz hears a band-limited clip: same length, different features
    low, _, info8 = omni.embed_prompt(msgs, {"sample_rate": 8000})
    assert info8["audio_tokens"] == n
    assert max_diff(low[0, span.start:span.start + n], ref[0]) > 1e-3


def test_mixed_prompt_orders_media_like_the_messages(omni: OmniModel, files: dict[str, str]) -> None:
    msgs = [user(ContentPart.of_media("audio", files["audio"]), "and", ContentPart.of_media("image", files["image"]),
                 ContentPart.of_media("video", files["video"]))]
    loaded = load_media(msgs, omni.config, {"fps": 4.0, "max_frames": 4})
    assert [m.kind for m in loaded] == ["audio", "image", "video"]
    _, ids, info = omni.embed_loaded(msgs, loaded)
    assert [s.kind for s in omni.tokenizer.media_spans(ids.tolist())] == ["audio", "image", "video"]
    assert {"audio_tokens", "image_tokens", "video_tokens_after_evs"} <= set(info)
    with pytest.raises(ValueError, match="do not match"):
        omni.embed_loaded(msgs, loaded[:2])


def test_corrupt_or_missing_media_raise_media_error(omni: OmniModel, tmp_path: Path) -> None:
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"not an image at all")
    with pytest.raises(MediaError, match="bad.png"):
        omni.embed_prompt([user(ContentPart.of_media("image", str(bad)), "?")])
    with pytest.raises(MediaError, match="not found"):
        omni.embed_prompt([user(ContentPart.of_media("audio", str(tmp_path / "none.wav")), "?")])
    with pytest.raises(ValueError, match="evs_q"):
        omni.embed_prompt([user("hi")], {"evs_q": 1.5})
    for fps in ("nan", "inf", 0):  # neither NaN nor inf is a sampling rate
        with pytest.raises(ValueError, match="expected a finite fps > 0"):
            omni.embed_prompt([user("hi")], {"fps": fps})
    for bad_value in (float("nan"), float("inf")):  # a float WAV with broken samples
        wave = np.full(1600, 0.25, dtype=np.float32)
        wave[100:110] = bad_value
        path = tmp_path / f"broken_{bad_value}.wav"
        soundfile.write(path, wave, 16000, subtype="FLOAT")
        with pytest.raises(MediaError, match=r"NaN or infinite samples .*broken_"):
            omni.embed_prompt([user(ContentPart.of_media("audio", str(path)), "?")])


def test_recipes_classify_backbone_under_lm_prefix_and_leave_encoders_alone(omni: OmniModel) -> None:
    for recipe in ("bf16", "fp8", "fp4", "fp4-all"):
        whole = kernels.plan(omni, recipe)
        alone = kernels.plan(omni.lm, recipe)
        lm_part = {k.removeprefix("lm."): v for k, v in whole.items() if k.startswith("lm.")}
        assert lm_part == alone, recipe
        encoders = {k: v for k, v in whole.items() if not k.startswith("lm.")}
        assert encoders and set(encoders.values()) == {"bf16"}, recipe
    plan = kernels.plan(omni, "fp4")
    assert plan["lm.backbone.layers.1.mixer.experts.0.up_proj"] == "nvfp4"
    assert plan["lm.backbone.layers.0.mixer.in_proj"] == "fp8"
    assert plan["lm.lm_head"] == "bf16"
