"""The curriculum as data: the stages that built the committed checkpoint, mixtures, schedule."""

from __future__ import annotations

import json

import pytest

from evalsuite.model import weights
from evalsuite.training import curriculum as C


def test_mixture_moves_from_bridges_to_tasks():
    early, late = C.stage_weights("image", 0.0), C.stage_weights("image", 1.0)
    assert early["line"] == 6 and late["line"] == 0.5
    assert early["docqa"] == 1 and late["docqa"] == 5
    mid = C.stage_weights("image", 0.5)
    assert mid["line"] == pytest.approx(3.25)


def test_lr_schedule_warms_up_holds_and_decays():
    assert C.lr_at(0, 1000, 1e-3) == pytest.approx(1e-3 / 50)
    assert C.lr_at(100, 1000, 1e-3) == 1e-3
    assert C.lr_at(749, 1000, 1e-3) == 1e-3
    assert C.lr_at(999, 1000, 1e-3) == pytest.approx(1e-3 * (1 - 0.9 * 249 / 250))


def test_the_curriculum_is_the_one_that_built_the_committed_checkpoint():
    """`make train` runs `CURRICULUM`: its stages and steps are those the committed checkpoint's
    history.json records (the mixtures are not recorded there; the stage names and steps are)."""
    history = json.loads((weights.DEFAULT_DIR / "history.json").read_text())
    assert tuple(history["args"]["stages"]) == C.STAGE_NAMES == tuple(history["done"])
    assert history["args"]["steps"] == C.DEFAULT_STEPS
    assert [e["stage"] for e in history["evals"]] == list(C.STAGE_NAMES)
    assert history["evals"][-1]["global_step"] == sum(C.DEFAULT_STEPS.values()) == 57_750


def test_stages_freeze_what_later_stages_introduce_and_encoder_stages_train_one_encoder():
    assert C.frozen_prefixes("text") == ("vision.token_pos", "vision.projector.extra.")
    assert C.frozen_prefixes("audio-align") == C.AUDIO_ENCODER + ("vision.token_pos", "vision.projector.extra.")
    assert C.frozen_prefixes("locate") == C.ENCODERS + ("vision.projector.extra.",)
    assert C.frozen_prefixes("widen") == C.ENCODERS
    encoders = {s.name: s.encoder for s in C.CURRICULUM if s.encoder}
    assert encoders == {"audio-ctc": "audio", "image-ctc": "image", "image-ctc-chars": "image"}
    assert {s.name: s.reinit for s in C.CURRICULUM if s.reinit} == {"audio-ctc": C.AUDIO_ENCODER,
                                                                    "image-ctc": C.VISION_ENCODER}
    assert {s.name: s.head_warmup for s in C.CURRICULUM if s.head_warmup} == {"image-ctc-chars": 1500}
    assert C.STAGES["read-more"].mix == C.STAGES["read"].mix
    for s in C.CURRICULUM:
        assert s.steps > 0 and s.mix and all(a >= 0 and b >= 0 and a + b > 0 for a, b in s.mix.values()), s.name
    with pytest.raises(ValueError, match="encoder must be"):
        C.Stage("x", 1, {"line": (1, 1)}, encoder="pictures")


def test_step_sources_follow_the_mixture_and_are_seeded():
    a = C.step_sources(0, 1, 7, "image", 100, 64)
    assert a == C.step_sources(0, 1, 7, "image", 100, 64) != C.step_sources(0, 1, 8, "image", 100, 64)
    assert set(a) <= set(C.STAGES["image"].mix)
    assert set(C.step_sources(0, 6, 0, "audio-ctc", 10, 8)) == {"hear"}
