"""Model-card accounting: parameter counts and checkpoint bytes per precision recipe."""

from __future__ import annotations

import json

import pytest
import torch

from evalsuite.model.backbone import build
from evalsuite.model.card import card, count_params, format_bytes, main, weight_bytes
from evalsuite.model.config import BackboneConfig

TINY = BackboneConfig.preset("tiny")


def test_format_bytes_per_weight() -> None:
    w = torch.empty(32, 64, device="meta")  # 2048 values
    assert format_bytes("bf16", w) == 4096
    assert format_bytes("fp8", w) == 2048 + 4
    assert format_bytes("fp8-channel", w) == 2048 + 4 * 32
    assert format_bytes("nvfp4", w) == 1024 + 128 + 4  # E2M1 nibbles + E4M3 per 16 + fp32 tensor scale
    with pytest.raises(ValueError, match="nvfp4"):
        format_bytes("int3", w)


def test_tiny_counts_match_a_real_model() -> None:
    model = build(TINY)
    params = count_params(build(TINY, device="meta"))
    assert params["total"] == sum(p.numel() for p in model.parameters())
    per_expert = 2 * TINY.hidden_size * TINY.moe_intermediate_size
    n_moe = TINY.hybrid_override_pattern.count("E")
    assert params["routed_experts"] == n_moe * TINY.n_routed_experts * per_expert
    assert params["active"] == params["total"] - n_moe * (TINY.n_routed_experts - TINY.num_experts_per_tok) * per_expert


def test_recipe_bytes_on_tiny() -> None:
    meta = build(TINY, device="meta")
    n = count_params(meta)["total"]
    n_bias = TINY.hybrid_override_pattern.count("E") * TINY.n_routed_experts  # fp32 correction bias
    bf16 = weight_bytes(meta, "bf16")
    assert bf16 == 2 * n + 4 * n_bias
    # fp8: every backbone linear (not lm_head, not the router) goes from 2 bytes to 1 + a 4-byte scale
    linears = [m.weight for name, m in meta.named_modules()
               if isinstance(m, torch.nn.Linear) and name.startswith("backbone.")]
    assert weight_bytes(meta, "fp8") == bf16 - sum(w.numel() for w in linears) + 4 * len(linears)
    # (in tiny, fp4 > fp8: q/k/v and the dense MLP stay BF16 under fp4 and the experts are small)
    assert weight_bytes(meta, "fp4-all") < weight_bytes(meta, "fp8") < bf16
    assert weight_bytes(meta, "fp4") < bf16


def test_a_tied_embedding_counts_once() -> None:
    import dataclasses

    tied = build(dataclasses.replace(TINY, tie_word_embeddings=True), device="meta")
    assert weight_bytes(tied, "bf16") == 2 * count_params(tied)["total"] + \
        4 * TINY.hybrid_override_pattern.count("E") * TINY.n_routed_experts  # state_dict lists it twice


def test_nano_state_bytes_by_hand() -> None:
    """KV per token: attention layers x (K and V) x KV heads x head_dim x 2 bytes (1 under fp8); the
    Mamba state per layer: SSM heads x head_dim x state (fp32) + conv channels x (kernel - 1) (bf16)."""
    from evalsuite.model.card import state_bytes

    cfg = BackboneConfig.preset("nano-omni-30b-a3b")
    n_attn, n_mamba = cfg.hybrid_override_pattern.count("*"), cfg.hybrid_override_pattern.count("M")
    assert state_bytes(cfg, "bf16")["kv_per_token"] == n_attn * 2 * cfg.num_key_value_heads * cfg.head_dim * 2 == 6144
    assert state_bytes(cfg, "fp8")["kv_per_token"] == 3072
    mamba = n_mamba * (64 * 64 * 128 * 4 + 6144 * 3 * 2)
    assert mamba == 49_082_368 and state_bytes(cfg, "bf16")["per_sequence"] == mamba + 8  # + the slot's length


def test_nano_card_is_near_the_published_figures() -> None:
    c = card("nano-omni-30b-a3b")
    b = c["backbone"]
    print(json.dumps(b, indent=1))
    assert abs(b["total_params"] / 31.6e9 - 1) < 0.005  # model card: 31.6B total
    assert abs(b["active_params_excluding_input_embedding"] / 3.2e9 - 1) < 0.02  # ~3.2B active
    # model card checkpoint sizes for the omni model, read as GiB: 61.5 / 32.8 / 20.9
    for recipe, published in (("bf16", 61.5), ("fp8", 32.8), ("fp4", 20.9)):
        assert abs(c["weight_bytes"][recipe] / 2**30 / published - 1) < 0.02
    assert b["weight_bytes"]["fp4"] < b["weight_bytes"]["fp8"] < b["weight_bytes"]["bf16"]


def test_cli_json_and_bad_preset(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["tiny", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["backbone"]["total_params"] == count_params(build(TINY, device="meta"))["total"]
    assert set(out["weight_bytes"]) == {"bf16", "fp8", "fp4", "fp4-all"}
    assert main(["huge"]) == 2
    assert "unknown preset" in capsys.readouterr().err
