"""Model-card accounting: parameter counts and checkpoint bytes per precision recipe.

    python -m evalsuite.model.card nano-omni-30b-a3b [--json]

The backbone is built on the meta device (shapes only, no memory), so the full 30B configuration
costs nothing. Each nn.Linear weight is charged by the format its precision recipe
(`kernels/recipes.py`) gives it, at the bytes the format table (`kernels/formats.py`) gives that
format; every other tensor is BF16, except the router's correction bias, which checkpoints keep in
FP32. Encoder parameters (`model/config_encoders.py`) are BF16 in every recipe.

Active parameters per token: everything except the routed experts a token does not use, i.e. all
non-routed parameters plus top_k routed experts in each MoE layer.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

import torch
from torch import nn

from evalsuite.model.backbone import LanguageModel, build
from evalsuite.model.config import BackboneConfig
from evalsuite.model.config_encoders import AudioConfig, VideoConfig, VisionConfig, encoder_configs

RECIPE_NAMES = ("bf16", "fp8", "fp4", "fp4-all")


def format_bytes(fmt: str, weight: torch.Tensor) -> float:
    """Bytes that a linear weight takes in a checkpoint stored in `fmt` (`kernels.formats`)."""
    from evalsuite.kernels import formats

    rows, cols = weight.shape
    return formats.get(fmt).weight_bytes(rows, cols)


def encoder_params(cfg: VisionConfig | VideoConfig | AudioConfig, include_vision: bool = False) -> int:
    """Parameters of the encoder ``cfg`` describes, counted on the meta device (no memory, no init).
    Video reuses the vision transformer, so for a `VideoConfig` this is what video adds (the Conv3D
    tubelet embedding and the time index); ``include_vision`` adds the vision encoder for the whole
    video path."""
    from evalsuite.model.audio import AudioEncoder
    from evalsuite.model.video import TubeletEmbed
    from evalsuite.model.vision import VisionEncoder

    module = {VisionConfig: VisionEncoder, VideoConfig: TubeletEmbed, AudioConfig: AudioEncoder}[type(cfg)]
    with torch.device("meta"):
        n = sum(p.numel() for p in module(cfg).parameters())
    if isinstance(cfg, VideoConfig):
        n += cfg.time_pos * cfg.vision.lm_hidden  # VideoEncoder.time_pos
        if include_vision:
            n += encoder_params(cfg.vision)
    return n


def encoder_param_counts(name: str, lm_hidden: int | None = None) -> dict[str, int]:
    """Parameter counts per encoder of preset ``name`` (video: the tubelet embedding only)."""
    return {k: encoder_params(c) for k, c in encoder_configs(name, lm_hidden).items()}


def count_params(model: LanguageModel) -> dict[str, int]:
    """total, routed-expert, active and embedding parameter counts of a backbone."""
    cfg = model.config
    total = sum(p.numel() for p in model.parameters())
    routed = sum(p.numel() for n, p in model.named_parameters() if ".mixer.experts." in n)
    n_moe = cfg.hybrid_override_pattern.count("E")
    per_expert = routed // max(1, n_moe * cfg.n_routed_experts)
    active = total - routed + n_moe * cfg.num_experts_per_tok * per_expert
    embed = model.backbone.embeddings.weight.numel()
    return {"total": total, "routed_experts": routed, "active": active, "input_embedding": embed}


def weight_bytes(model: LanguageModel, recipe_name: str) -> int:
    """Checkpoint bytes of the backbone under a precision recipe (a tied embedding and LM head once)."""
    from evalsuite.kernels.recipes import get

    recipe = get(recipe_name)
    linear_weights = {f"{name}.weight": name for name, m in model.named_modules() if isinstance(m, nn.Linear)}
    total = 0.0
    seen: set[int] = set()
    for name, tensor in model.state_dict(keep_vars=True).items():
        if id(tensor) in seen:  # state_dict lists a tied weight under both names
            continue
        seen.add(id(tensor))
        if name in linear_weights:
            total += format_bytes(recipe.format_for(linear_weights[name]), tensor)
        elif name.endswith("e_score_correction_bias"):
            total += 4 * tensor.numel()
        else:
            total += 2 * tensor.numel()
    return int(round(total))


def state_bytes(cfg: BackboneConfig, recipe_name: str, dtype: torch.dtype = torch.bfloat16) -> dict[str, int]:
    """Inference state of one sequence under a recipe, as the engine allocates it (measured on the
    meta device): ``kv_per_token`` (attention layers only, in the recipe's KV cache dtype, with any
    per-slot scales in ``per_sequence``) and ``per_sequence`` (Mamba conv and SSM state: the same at
    any length)."""
    from evalsuite.kernels.recipes import get
    from evalsuite.model.state import InferenceState

    kv = get(recipe_name).kv_cache_dtype

    def total(max_len: int) -> int:
        st = InferenceState(cfg, 1, max_len, dtype, kv, "meta")
        return sum(b.numel() * b.element_size() for b in st.buffers())

    one, two = total(1), total(2)
    return {"kv_per_token": two - one, "per_sequence": one - (two - one)}


def card(name: str) -> dict[str, Any]:
    """The accounting of preset `name`: backbone, encoders and the whole omni model."""
    cfg = BackboneConfig.preset(name)
    model = build(cfg, device="meta")
    params = count_params(model)
    encoders = encoder_param_counts(name, lm_hidden=cfg.hidden_size)
    enc_total = sum(encoders.values())
    backbone_bytes = {r: weight_bytes(model, r) for r in RECIPE_NAMES}
    return {
        "preset": name,
        "layers": cfg.hybrid_override_pattern,
        "backbone": {
            "total_params": params["total"],
            "active_params": params["active"],
            "active_params_excluding_input_embedding": params["active"] - params["input_embedding"],
            "routed_expert_params": params["routed_experts"],
            "weight_bytes": backbone_bytes,
        },
        "encoders": {"params": encoders, "total_params": enc_total, "format": "bf16 in every recipe"},
        "total_params": params["total"] + enc_total,
        # encoders run once per media item, not per generated token: per-token activity is the backbone's
        "active_params": params["active"],
        "weight_bytes": {r: b + 2 * enc_total for r, b in backbone_bytes.items()},
        "state_bytes": {r: state_bytes(cfg, r) for r in RECIPE_NAMES},
    }


def _table(c: dict[str, Any]) -> str:
    b = c["backbone"]
    lines = [
        f"preset {c['preset']}  ({len(c['layers'])} layers: {c['layers']})",
        f"backbone params: total {b['total_params'] / 1e9:.3f} B, active/token {b['active_params'] / 1e9:.3f} B "
        f"({b['active_params_excluding_input_embedding'] / 1e9:.3f} B without the input embedding)",
        "encoder params: " + ", ".join(f"{k} {v / 1e6:.1f} M" for k, v in c["encoders"]["params"].items()),
        f"omni params: total {c['total_params'] / 1e9:.3f} B (encoders BF16 in every recipe)",
        f"{'recipe':<8} {'backbone GB':>12} {'omni GB':>10} {'omni GiB':>10}",
    ]
    for r in RECIPE_NAMES:
        lines.append(f"{r:<8} {b['weight_bytes'][r] / 1e9:>12.2f} {c['weight_bytes'][r] / 1e9:>10.2f} "
                     f"{c['weight_bytes'][r] / 2**30:>10.2f}")
    lines.append("inference state of one sequence (bf16 activations; KV in attention layers only, Mamba state fixed):")
    lines.append(f"{'recipe':<8} {'KV B/token':>12} {'fixed MiB':>10} {'at 8K MiB':>10}")
    for r in RECIPE_NAMES:
        st = c["state_bytes"][r]
        lines.append(f"{r:<8} {st['kv_per_token']:>12,} {st['per_sequence'] / 2**20:>10.1f} "
                     f"{(st['per_sequence'] + 8192 * st['kv_per_token']) / 2**20:>10.1f}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m evalsuite.model.card", description=__doc__.splitlines()[0])
    parser.add_argument("preset", help=f"one of {sorted(BackboneConfig.PRESETS)}")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    args = parser.parse_args(argv)
    if args.preset not in BackboneConfig.PRESETS:
        print(f"error: unknown preset {args.preset!r}; expected one of {sorted(BackboneConfig.PRESETS)}",
              file=sys.stderr)
        return 2
    result = card(args.preset)
    print(json.dumps(result, indent=2) if args.json else _table(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
