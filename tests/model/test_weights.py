"""Omni checkpoints: save / load round trip, the weights hash, and clear errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from evalsuite import kernels
from evalsuite.model import weights
from evalsuite.model.omni import build_omni


def test_round_trip_keeps_weights_config_and_hash(tmp_path: Path) -> None:
    model = build_omni("tiny", seed=3)
    weights.save(model, tmp_path / "ck")
    assert sorted(p.name for p in (tmp_path / "ck").iterdir()) == ["config.json", "model.safetensors"]
    loaded = weights.load(tmp_path / "ck")
    assert loaded.config == model.config
    assert loaded.video.vision is loaded.vision  # shared encoder stays shared
    a, b = model.state_dict(), loaded.state_dict()
    assert a.keys() == b.keys()
    diff = max((a[k].float() - b[k].float()).abs().max().item() for k in a)
    print(f"max |diff| over {len(a)} tensors = {diff:.3e}")
    assert diff == 0.0
    sha = weights.weights_sha256(tmp_path / "ck")
    assert sha == weights.state_dict_sha256(model) == weights.state_dict_sha256(loaded)
    assert sha != weights.state_dict_sha256(build_omni("tiny", seed=4))
    # shared tensors are stored once
    from safetensors import safe_open

    with safe_open(str(tmp_path / "ck" / "model.safetensors"), "pt") as f:
        keys = set(f.keys())
    assert not any(k.startswith("video.vision.") for k in keys) and "vision.patch_embed.weight" in keys


def test_errors_are_one_clear_line(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="config.json"):
        weights.load(tmp_path / "nowhere")
    model = build_omni("tiny")
    weights.save(model, tmp_path / "ck")
    cfg = json.loads((tmp_path / "ck" / "config.json").read_text())
    cfg["backbone"]["hidden_size"] = 64
    (tmp_path / "ck" / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(ValueError, match="hidden size"):
        weights.load(tmp_path / "ck")
    kernels.quantize_model(model, "fp4")
    with pytest.raises(ValueError, match="quantized"):
        weights.save(model, tmp_path / "q")
    with pytest.raises(TypeError, match="OmniModel"):
        weights.save(torch.nn.Linear(2, 2), tmp_path / "x")


def test_a_damaged_checkpoint_is_a_value_error_every_caller_reports(tmp_path: Path) -> None:
    """The reference backend, the probe, training's --init and the sensitivity study all report a
    ValueError of `weights.load` in one line; a truncated weights file raised safetensors' own error."""
    weights.save(build_omni("tiny"), tmp_path / "ck")
    w = tmp_path / "ck" / "model.safetensors"
    w.write_bytes(w.read_bytes()[:100])
    with pytest.raises(ValueError, match=rf"^{w} is not a readable safetensors file \("):
        weights.load(tmp_path / "ck")
    (tmp_path / "ck" / "config.json").write_text("[]")
    with pytest.raises(ValueError, match=r"config.json holds a JSON list; expected an object written by model.weights.save$"):
        weights.load(tmp_path / "ck")


def test_saving_again_keeps_the_files_mode_and_a_new_file_takes_the_umasks(tmp_path: Path) -> None:
    """safetensors writes a 0600 temp file and renames it over the target: an in-place re-make must not
    leave the committed weights unreadable to others."""
    import os

    model = build_omni("tiny")
    umask = os.umask(0o022)
    try:
        weights.save(model, tmp_path)
        assert (tmp_path / weights.WEIGHTS_FILE).stat().st_mode & 0o777 == 0o644
        (tmp_path / weights.WEIGHTS_FILE).chmod(0o664)
        weights.save(model, tmp_path)
    finally:
        os.umask(umask)
    assert (tmp_path / weights.WEIGHTS_FILE).stat().st_mode & 0o777 == 0o664
    assert (tmp_path / weights.CONFIG_FILE).stat().st_mode & 0o777 == 0o644
    assert not [p.name for p in tmp_path.iterdir() if p.name not in (weights.WEIGHTS_FILE, weights.CONFIG_FILE)]
