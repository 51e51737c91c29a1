"""Save and load the omni model: ``config.json`` (the `OmniConfig`) + ``model.safetensors`` (weights).

The weights are the unquantized master copy; a precision recipe is applied after loading
(`evalsuite.kernels.quantize_model`), and packed quantized checkpoints are `evalsuite.kernels.checkpoint`'s job.

The video encoder shares the vision transformer, so ``state_dict()`` lists those tensors twice
(``vision.*`` and ``video.vision.*``); files keep each tensor once, under its first name.

`state_dict_sha256(model)` and `weights_sha256(dir)` hash the same canonical form — every unique
tensor in name order: name, dtype, shape, raw bytes — so a model and its saved checkpoint have the
same hash, whatever safetensors' file layout.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import typing
from pathlib import Path
from typing import Any, Mapping

import torch
from torch import nn

from evalsuite.model.config import BackboneConfig, OmniConfig
from evalsuite.results import atomic_write_text, kept_file_mode
from evalsuite.model.config_encoders import AudioConfig, VideoConfig, VisionConfig

CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"
FORMAT_TAG = "evalsuite-omni-v1"
DEFAULT_DIR = Path(__file__).resolve().parent / "checkpoints" / "tiny"


def unique_state_dict(model: nn.Module) -> dict[str, torch.Tensor]:
    """``state_dict()`` with each shared tensor once, under its first name."""
    out: dict[str, torch.Tensor] = {}
    seen: set[tuple[int, int, tuple[int, ...]]] = set()
    for name, t in model.state_dict().items():
        key = (t.untyped_storage().data_ptr(), t.storage_offset(), tuple(t.shape))
        if key in seen:
            continue
        seen.add(key)
        out[name] = t
    return out


def _hash_tensors(tensors: Mapping[str, torch.Tensor]) -> str:
    h = hashlib.sha256()
    for name in sorted(tensors):
        t = tensors[name].detach().cpu().contiguous()
        h.update(f"{name}|{str(t.dtype).removeprefix('torch.')}|{list(t.shape)}\n".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()


def state_dict_sha256(model: nn.Module) -> str:
    """sha256 of the model's unique tensors (see the module docstring)."""
    return _hash_tensors(unique_state_dict(model))


def weights_sha256(path: str | Path) -> str:
    """sha256 of a checkpoint directory's weights, equal to `state_dict_sha256` of the saved model."""
    from safetensors.torch import load_file

    return _hash_tensors(load_file(str(_weights_path(Path(path)))))


# ---- config (de)serialization -------------------------------------------------------------------
def config_to_dict(cfg: OmniConfig) -> dict[str, Any]:
    return {"format": FORMAT_TAG, **dataclasses.asdict(cfg)}


def _from_dict(cls: type, data: Mapping[str, Any]) -> Any:
    """A frozen config dataclass from plain data: nested configs rebuilt, JSON lists back to tuples."""
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - names)
    if unknown:
        raise ValueError(f"{cls.__name__}: unknown field(s) {unknown} in config.json")
    kwargs: dict[str, Any] = {}
    for f in dataclasses.fields(cls):
        if f.name not in data:
            continue
        value = data[f.name]
        hint = hints[f.name]
        if hint is VisionConfig and isinstance(value, Mapping):
            value = _from_dict(VisionConfig, value)
        elif isinstance(value, list) and typing.get_origin(hint) is tuple:
            value = tuple(value)
        kwargs[f.name] = value
    return cls(**kwargs)


def config_from_dict(data: Mapping[str, Any]) -> OmniConfig:
    if data.get("format") != FORMAT_TAG:
        raise ValueError(f"config.json: expected format {FORMAT_TAG!r}, got {data.get('format')!r}")
    try:
        return OmniConfig(
            backbone=_from_dict(BackboneConfig, data["backbone"]),
            vision=_from_dict(VisionConfig, data["vision"]),
            video=_from_dict(VideoConfig, data["video"]),
            audio=_from_dict(AudioConfig, data["audio"]),
            loc_bins=int(data.get("loc_bins", 0)),  # checkpoints from before location tokens have none
        )
    except KeyError as e:
        raise ValueError(f"config.json: missing section {e}; expected backbone, vision, video, audio") from None


# ---- save / load --------------------------------------------------------------------------------
def save(model: nn.Module, path: str | Path) -> Path:
    """Write ``model`` (an `OmniModel`, unquantized) to directory ``path``; returns it."""
    from safetensors.torch import save_file

    from evalsuite.model.omni import OmniModel

    if not isinstance(model, OmniModel):
        raise TypeError(f"weights.save expects an OmniModel, got {type(model).__name__}")
    if getattr(model, "quant_recipe", None) is not None or any(
            type(m).__name__ in ("FP8Linear", "NVFP4Linear") for m in model.modules()):
        raise ValueError("weights.save writes the unquantized master weights; this model is quantized "
                         "(use kernels.checkpoint.save_packed for packed quantized weights)")
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    tensors = {k: v.detach().cpu().contiguous() for k, v in unique_state_dict(model).items()}
    target = path / WEIGHTS_FILE
    mode = kept_file_mode(target)
    save_file(tensors, str(target), metadata={"format": FORMAT_TAG})  # a temp file renamed over the old one
    os.chmod(target, mode)
    atomic_write_text(path / CONFIG_FILE, json.dumps(config_to_dict(model.config), indent=2) + "\n")
    return path



def load(path: str | Path = DEFAULT_DIR, dtype: torch.dtype | None = None,
         device: torch.device | str = "cpu"):  # -> OmniModel
    """Read a directory written by `save` into a new `OmniModel` (eval mode). Every parameter and
    persistent buffer must be in the file (shared ones under any of their names)."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    from evalsuite.model.omni import OmniModel

    path = Path(path)
    cfg_path = path / CONFIG_FILE
    if not cfg_path.is_file():
        raise FileNotFoundError(f"no omni checkpoint at {path}: expected {CONFIG_FILE} and {WEIGHTS_FILE}")
    try:
        raw = json.loads(cfg_path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise ValueError(f"{cfg_path} is not valid JSON: {e}") from None
    if not isinstance(raw, dict):
        raise ValueError(f"{cfg_path} holds a JSON {type(raw).__name__}; expected an object written by model.weights.save")
    cfg = config_from_dict(raw)
    weights_file = _weights_path(path)
    try:
        tensors = load_file(str(weights_file))
    except SafetensorError as e:  # truncated or foreign: neither an OSError nor a ValueError
        raise ValueError(f"{weights_file} is not a readable safetensors file ({str(e).splitlines()[0]})") from None
    model = OmniModel(cfg)
    expected = unique_state_dict(model)
    missing = sorted(set(expected) - set(tensors))
    unexpected = sorted(set(tensors) - set(expected))
    if missing or unexpected:
        raise ValueError(f"{path / WEIGHTS_FILE} does not match its config: missing {missing[:5]}, "
                         f"unexpected {unexpected[:5]}")
    model.load_state_dict(tensors, strict=False)  # the skipped keys are aliases of loaded tensors
    model = model.to(device=device)
    return (model if dtype is None else model.to(dtype)).eval()


def _weights_path(path: Path) -> Path:
    p = path / WEIGHTS_FILE
    if not p.is_file():
        raise FileNotFoundError(f"no weights file {p}: expected a directory written by model.weights.save")
    return p


__all__ = ["save", "load", "weights_sha256", "state_dict_sha256", "unique_state_dict", "config_to_dict",
           "config_from_dict", "DEFAULT_DIR"]
