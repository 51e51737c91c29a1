"""Checkpoint compatibility with transformers' NemotronH (`NemotronHForCausalLM`).

Two weight layouts exist for the same model:
  - NVIDIA hub layout (what `save_pretrained` writes, and this repo's own `state_dict()` names):
    `backbone.*`, routed experts one by one: `backbone.layers.{i}.mixer.experts.{j}.up_proj.weight`;
  - transformers 5 in-memory layout: `model.*`, experts fused into 3D parameters
    `model.layers.{i}.mixer.experts.up_proj` [E, I, H] and `.down_proj` [E, H, I].
`read_checkpoint` accepts either (and mixed); `write_checkpoint` writes the hub layout.
Multi-token-prediction weights (`mtp.*`) are ignored, as transformers does.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import torch
from torch import nn

from evalsuite.model.config import BackboneConfig

# transformers / legacy layer-type names -> pattern letters
_KIND_TO_LETTER = {
    "linear_attention": "M", "mamba": "M", "moe": "E", "full_attention": "*", "attention": "*", "mlp": "-",
}
# legacy config.json names (NVIDIA's remote-code configs) -> current names
_LEGACY_NAMES = {
    "mamba_n_groups": "n_groups", "mamba_d_conv": "conv_kernel", "mamba_chunk_size": "chunk_size",
    "mamba_dt_min": "time_step_min", "mamba_conv_bias": "use_conv_bias",
}
# fields copied one to one between BackboneConfig and NemotronHConfig
_SAME_NAMES = [
    "vocab_size", "hidden_size", "num_attention_heads", "num_key_value_heads", "head_dim", "mamba_num_heads",
    "mamba_head_dim", "ssm_state_size", "n_groups", "conv_kernel", "chunk_size", "time_step_min",
    "use_conv_bias", "use_bias", "n_routed_experts", "num_experts_per_tok", "moe_intermediate_size",
    "moe_shared_expert_intermediate_size", "moe_latent_size", "routed_scaling_factor", "n_group", "topk_group",
    "norm_topk_prob", "intermediate_size", "mlp_bias", "max_position_embeddings", "layer_norm_epsilon",
    "tie_word_embeddings",
]
_FUSED_EXPERT = re.compile(r"^(.*\.mixer\.experts)\.(up_proj|down_proj)$")


def config_from_hf(hf: dict[str, Any]) -> BackboneConfig:
    """BackboneConfig from a NemotronH config.json dict; one clear error for settings not supported here."""
    hf = {_LEGACY_NAMES.get(k, k): v for k, v in hf.items()}
    if hf.get("model_type", "nemotron_h") != "nemotron_h":
        raise ValueError(f"config.json: expected model_type 'nemotron_h', got {hf.get('model_type')!r}")
    unsupported = {
        "mamba_hidden_act": ("silu", hf.get("mamba_hidden_act", "silu")),
        "mlp_hidden_act": ("relu2", hf.get("mlp_hidden_act", "relu2")),
        "attention_bias": (False, hf.get("attention_bias", False)),
    }
    for name, (want, got) in unsupported.items():
        if got != want:
            raise ValueError(f"config.json: {name}={got!r} is not supported (expected {want!r})")
    if hf.get("hybrid_override_pattern"):
        pattern = hf["hybrid_override_pattern"]
    elif hf.get("layers_block_type"):
        try:
            pattern = "".join(_KIND_TO_LETTER[k] for k in hf["layers_block_type"])
        except KeyError as err:
            raise ValueError(f"config.json: unknown layer type {err.args[0]!r} in layers_block_type") from None
    else:
        raise ValueError("config.json: expected hybrid_override_pattern or layers_block_type")
    fields = {name: hf[name] for name in _SAME_NAMES if name in hf and hf[name] is not None}
    fields.setdefault("head_dim", hf["hidden_size"] // hf["num_attention_heads"])
    return BackboneConfig(hybrid_override_pattern=pattern, **fields)


def config_to_hf(cfg: BackboneConfig) -> dict[str, Any]:
    """A config.json dict that transformers' NemotronHConfig reads back to the same model."""
    hf: dict[str, Any] = {name: getattr(cfg, name) for name in _SAME_NAMES}
    hf.update(
        architectures=["NemotronHForCausalLM"],
        model_type="nemotron_h",
        layers_block_type=[{"M": "linear_attention", "E": "moe", "*": "full_attention", "-": "mlp"}[c]
                           for c in cfg.hybrid_override_pattern],
        mamba_hidden_act="silu",
        mlp_hidden_act="relu2",
        attention_bias=False,
        n_shared_experts=1,
        dtype="float32",
    )
    return hf


def state_dict_from_hf(state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Checkpoint tensors in either layout -> this repo's names (hub layout, per-expert Linear weights)."""
    out: dict[str, torch.Tensor] = {}
    for key, tensor in state_dict.items():
        if key.startswith("mtp.") or ".mtp." in key:
            continue
        if key.startswith("model."):
            key = "backbone." + key[len("model."):]
        fused = _FUSED_EXPERT.match(key)
        if fused:  # [E, out, in] -> E tensors [out, in]
            for j, weight in enumerate(tensor.unbind(0)):
                out[f"{fused.group(1)}.{j}.{fused.group(2)}.weight"] = weight.contiguous()
        else:
            out[key] = tensor
    return out


def read_checkpoint(path: Path) -> tuple[BackboneConfig, dict[str, torch.Tensor]]:
    """(config, tensors renamed to this repo's names) from a checkpoint directory."""
    from safetensors.torch import load_file

    config_file = path / "config.json"
    if not config_file.is_file():
        raise FileNotFoundError(f"{path}: expected a NemotronH checkpoint directory with config.json")
    cfg = config_from_hf(json.loads(config_file.read_text()))
    index = path / "model.safetensors.index.json"
    if index.is_file():
        files = sorted(set(json.loads(index.read_text())["weight_map"].values()))
    else:
        files = sorted(p.name for p in path.glob("*.safetensors"))
    if not files:
        raise FileNotFoundError(f"{path}: expected model.safetensors or a sharded safetensors index")
    tensors: dict[str, torch.Tensor] = {}
    for name in files:
        tensors.update(load_file(path / name))
    return cfg, state_dict_from_hf(tensors)


def check_keys(model: nn.Module, state_dict: dict[str, torch.Tensor]) -> None:
    """Raise one clear error if the checkpoint's tensors do not match the model's names and shapes."""
    expected = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    if getattr(model.config, "tie_word_embeddings", False):
        expected.pop("lm_head.weight", None)
        state_dict.pop("lm_head.weight", None)
    missing = sorted(set(expected) - set(state_dict))
    unexpected = sorted(set(state_dict) - set(expected))
    wrong = sorted(k for k in set(expected) & set(state_dict) if tuple(state_dict[k].shape) != expected[k])
    if missing or unexpected or wrong:
        raise ValueError(
            "checkpoint does not match its config.json: "
            f"missing {missing[:3]}{'...' if len(missing) > 3 else ''} ({len(missing)}), "
            f"unexpected {unexpected[:3]}{'...' if len(unexpected) > 3 else ''} ({len(unexpected)}), "
            f"wrong shape {[(k, tuple(state_dict[k].shape), expected[k]) for k in wrong[:3]]} ({len(wrong)})"
        )
    for key, tensor in state_dict.items():  # the router's correction bias is kept in fp32
        if key.endswith("e_score_correction_bias"):
            state_dict[key] = tensor.float()


def write_checkpoint(model: nn.Module, path: Path) -> None:
    """config.json + model.safetensors in NVIDIA's hub layout (transformers converts it on load)."""
    from safetensors.torch import save_file

    cfg: BackboneConfig = model.config
    path.mkdir(parents=True, exist_ok=True)
    hf_cfg = config_to_hf(cfg)
    hf_cfg["dtype"] = str(model.lm_head.weight.dtype).removeprefix("torch.")
    (path / "config.json").write_text(json.dumps(hf_cfg, indent=2))
    tensors = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
    if cfg.tie_word_embeddings:
        tensors.pop("lm_head.weight")
    save_file(tensors, str(path / "model.safetensors"), metadata={"format": "pt"})
