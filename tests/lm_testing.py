"""Shared helpers of the language-model tests: the comparison they all print, and the seeded tiny
models they build (a router with a non-trivial correction bias, an MoE with non-trivial weights)."""

from __future__ import annotations

import torch
from torch import nn

from evalsuite.model.backbone import LanguageModel, build
from evalsuite.model.config import BackboneConfig
from evalsuite.model.moe import MoE, TopkRouter

TINY = BackboneConfig.preset("tiny")


def max_diff(a: torch.Tensor, b: torch.Tensor) -> float:
    d = (a.float() - b.float()).abs().max().item()
    print(f"max |diff| = {d:.3e}")
    return d


def tiny_model(seed: int = 0) -> LanguageModel:
    """The tiny backbone from ``seed``, in eval mode, with a router correction bias as a trained one has."""
    torch.manual_seed(seed)
    model = build(TINY).eval()
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, TopkRouter):
                m.e_score_correction_bias.uniform_(-0.05, 0.05)
    return model


def random_moe(seed: int, cfg: BackboneConfig = TINY) -> MoE:
    """An MoE whose linears (std 0.1) and router (std 0.3) are large enough for routing to matter."""
    torch.manual_seed(seed)
    moe = MoE(cfg)
    for m in moe.modules():
        if isinstance(m, nn.Linear):
            nn.init.normal_(m.weight, std=0.1)
    nn.init.normal_(moe.gate.weight, std=0.3)
    return moe
