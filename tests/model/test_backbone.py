"""Backbone: configs, the chunked scan, MoE routing, and cached / batched decoding vs the full pass."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from evalsuite.model.backbone import LanguageModel, build, decode_step, prefill
from evalsuite.model.config import BackboneConfig, OmniConfig
from evalsuite.model.mamba2 import ssd_chunked_scan, ssd_sequential_ref
from evalsuite.model.moe import TopkRouter

from lm_testing import max_diff, random_moe, tiny_model

TINY = BackboneConfig.preset("tiny")


@pytest.fixture(scope="module")
def tiny() -> LanguageModel:
    return tiny_model()


# --- configs -----------------------------------------------------------------------------------

def test_presets() -> None:
    nano = BackboneConfig.preset("nano-omni-30b-a3b")
    p = nano.hybrid_override_pattern
    assert (len(p), p.count("M"), p.count("E"), p.count("*"), p.count("-")) == (52, 23, 23, 6, 0)
    assert (nano.hidden_size, nano.num_attention_heads, nano.num_key_value_heads, nano.head_dim) == (2688, 32, 2, 128)
    assert nano.mamba_conv_dim == 64 * 64 + 2 * 8 * 128
    assert set(TINY.hybrid_override_pattern) == set("ME*-") and 6 <= TINY.n_layers <= 8
    assert BackboneConfig.preset("tiny", vocab_size=300).vocab_size == 300
    omni = OmniConfig.preset("nano-omni-30b-a3b")
    assert omni.vision.lm_hidden == omni.audio.lm_hidden == omni.video.vision.lm_hidden == 2688
    assert OmniConfig() == OmniConfig.preset("tiny") and OmniConfig().audio.lm_hidden == TINY.hidden_size
    with pytest.raises(ValueError, match="hidden size"):
        OmniConfig(backbone=TINY.replace(hidden_size=64))


@pytest.mark.parametrize(
    "change, message",
    [
        (dict(hybrid_override_pattern="MXE"), "hybrid_override_pattern"),
        (dict(num_key_value_heads=3), "num_key_value_heads"),
        (dict(n_group=3), "n_group"),
        (dict(num_experts_per_tok=9), "num_experts_per_tok"),
    ],
)
def test_bad_config_says_what_is_expected(change: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        TINY.replace(**change)
    with pytest.raises(KeyError, match="tiny"):
        BackboneConfig.preset("huge")


# --- Mamba-2 scan ------------------------------------------------------------------------------

def _scan_inputs(b: int = 2, t: int = 37, h: int = 6, p: int = 4, g: int = 3, n: int = 5):
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(b, t, h, p, generator=gen)
    dt = torch.nn.functional.softplus(torch.randn(b, t, h, generator=gen))
    A = -torch.rand(h, generator=gen) * 2 - 0.1
    B = torch.randn(b, t, g, n, generator=gen)
    C = torch.randn(b, t, g, n, generator=gen)
    s0 = torch.randn(b, h, p, n, generator=gen)
    return x, dt, A, B, C, s0


@pytest.mark.parametrize("chunk", [1, 5, 8, 64])
def test_chunked_scan_equals_sequential_reference(chunk: int) -> None:
    x, dt, A, B, C, s0 = _scan_inputs()
    y_ref, s_ref = ssd_sequential_ref(x, dt, A, B, C, s0)
    y, s = ssd_chunked_scan(x, dt, A, B, C, chunk, s0)
    assert max_diff(y, y_ref) < 1e-4 and max_diff(s, s_ref) < 1e-4
    assert y_ref.abs().max() > 1  # the comparison is not between two near-zero tensors


def test_scan_with_zero_dt_padding_keeps_the_state() -> None:
    x, dt, A, B, C, _ = _scan_inputs(t=20)
    _, s_real = ssd_chunked_scan(x[:, :13], dt[:, :13], A, B[:, :13], C[:, :13], 8)
    dt_padded = dt.clone()
    dt_padded[:, 13:] = 0
    _, s_padded = ssd_chunked_scan(x, dt_padded, A, B, C, 8)
    assert max_diff(s_padded, s_real) < 1e-5


# --- MoE ---------------------------------------------------------------------------------------

@torch.no_grad()
def test_group_limited_router_matches_brute_force() -> None:
    cfg = TINY.replace(n_routed_experts=12, n_group=4, topk_group=2, num_experts_per_tok=3)
    torch.manual_seed(2)
    router = TopkRouter(cfg)
    nn.init.normal_(router.weight, std=0.5)
    router.e_score_correction_bias.uniform_(-0.2, 0.2)
    x = torch.randn(16, cfg.hidden_size)
    weights, idx = router(x)
    for i in range(x.shape[0]):
        scores = torch.sigmoid(x[i] @ router.weight.T)
        choice = scores + router.e_score_correction_bias
        groups = [choice[g * 3:(g + 1) * 3] for g in range(4)]
        best_groups = sorted(range(4), key=lambda g: -float(groups[g].sort(descending=True).values[:2].sum()))[:2]
        allowed = [e for e in range(12) if e // 3 in best_groups]
        chosen = sorted(allowed, key=lambda e: -float(choice[e]))[:3]
        w = scores[chosen] / scores[chosen].sum() * cfg.routed_scaling_factor
        got = dict(zip(idx[i].tolist(), weights[i].tolist()))
        assert sorted(got) == sorted(chosen)
        assert max(abs(got[e] - float(wi)) for e, wi in zip(chosen, w)) < 1e-6


def test_moe_equals_dense_per_token_reference() -> None:
    moe = random_moe(seed=3)
    h = torch.randn(2, 7, TINY.hidden_size)
    out = moe(h)
    weights, idx = moe.gate(h.view(-1, TINY.hidden_size))
    ref = []
    for i, tok in enumerate(h.view(-1, TINY.hidden_size)):
        y = moe.shared_experts(tok)
        for w, e in zip(weights[i], idx[i]):
            y = y + w * moe.experts[int(e)](tok)
        ref.append(y)
    assert max_diff(out.view(-1, TINY.hidden_size), torch.stack(ref)) < 1e-5
    assert out.abs().max() > 1e-2


def test_quantizable_weights_are_linear_modules(tiny: LanguageModel) -> None:
    modules = dict(tiny.named_modules())
    moe_layer = TINY.hybrid_override_pattern.index("E")
    mamba_layer = TINY.hybrid_override_pattern.index("M")
    attn_layer = TINY.hybrid_override_pattern.index("*")
    names = [f"backbone.layers.{moe_layer}.mixer.experts.{j}.{w}" for j in range(8) for w in ("up_proj", "down_proj")]
    names += [f"backbone.layers.{moe_layer}.mixer.shared_experts.{w}" for w in ("up_proj", "down_proj")]
    names += [f"backbone.layers.{mamba_layer}.mixer.{w}" for w in ("in_proj", "out_proj")]
    names += [f"backbone.layers.{attn_layer}.mixer.{w}_proj" for w in "qkvo"] + ["lm_head"]
    assert all(isinstance(modules[n], nn.Linear) for n in names)
    gate = modules[f"backbone.layers.{moe_layer}.mixer.gate"]
    assert not isinstance(gate, nn.Linear) and gate.e_score_correction_bias.dtype == torch.float32
    assert f"backbone.layers.{moe_layer}.mixer.gate.e_score_correction_bias" in tiny.state_dict()
    # the router bias stays fp32 when the model is cast
    assert build(TINY, dtype=torch.bfloat16).backbone.layers[moe_layer].mixer.gate.e_score_correction_bias.dtype \
        == torch.float32


# --- cached and batched decoding ---------------------------------------------------------------

@torch.no_grad()
def test_cached_decoding_equals_full_forward(tiny: LanguageModel) -> None:
    ids = torch.randint(0, TINY.vocab_size, (2, 41), generator=torch.Generator().manual_seed(4))
    full = tiny(ids)
    state = tiny.allocate_state(n_slots=2, max_len=64)
    logits = [prefill(tiny, ids[:, :19], state)]  # crosses a chunk boundary (chunk 16)
    for i in range(19, 40):
        logits.append(decode_step(tiny, ids[:, i], state))
    assert state.lengths.tolist() == [40, 40]
    assert max_diff(torch.stack(logits, 1), full[:, 18:40]) < 2e-5


@torch.no_grad()
def test_prefill_in_pieces_equals_full_forward(tiny: LanguageModel) -> None:
    ids = torch.randint(0, TINY.vocab_size, (1, 40), generator=torch.Generator().manual_seed(5))
    full = tiny(ids)
    state = tiny.allocate_state(n_slots=1, max_len=40)
    pieces = [tiny(ids[:, s:s + 7], state=state) for s in range(0, 40, 7)]
    assert max_diff(torch.cat(pieces, 1), full) < 2e-5


@torch.no_grad()
def test_batched_padded_slotted_equals_unbatched(tiny: LanguageModel) -> None:
    gen = torch.Generator().manual_seed(6)
    lens, steps = [5, 12, 20], 6
    seqs = [torch.randint(0, TINY.vocab_size, (n + steps,), generator=gen) for n in lens]
    state = tiny.allocate_state(n_slots=4, max_len=32)
    slots = [2, 0, 3]
    padded = torch.zeros(3, max(lens), dtype=torch.long)  # right padding with token 0
    for i, (s, n) in enumerate(zip(seqs, lens)):
        padded[i, :n] = s[:n]
    got = [prefill(tiny, padded, state, slots=slots, seq_lens=lens)]
    for k in range(steps - 1):  # every slot at a different length
        got.append(decode_step(tiny, torch.stack([s[n + k] for s, n in zip(seqs, lens)]), state, slots=slots))
    assert state.lengths[slots].tolist() == [n + steps - 1 for n in lens] and state.lengths[1] == 0
    got = torch.stack(got, 1)  # [3, steps, V]
    for i, (s, n) in enumerate(zip(seqs, lens)):
        alone = tiny(s[None])[0, n - 1:n + steps - 1]
        assert max_diff(got[i], alone) < 2e-5


@torch.no_grad()
def test_reset_slot_starts_a_new_sequence(tiny: LanguageModel) -> None:
    ids = torch.randint(0, TINY.vocab_size, (1, 10), generator=torch.Generator().manual_seed(7))
    state = tiny.allocate_state(n_slots=1, max_len=16)
    first = prefill(tiny, ids, state)
    state.reset([0])
    assert max_diff(prefill(tiny, ids, state), first) == 0.0


@torch.no_grad()
@pytest.mark.parametrize("kv_dtype, storage, tol", [("fp8", torch.float8_e4m3fn, 0.02), ("bf16", torch.bfloat16, 2e-3)])
def test_low_precision_kv_cache_stays_close(tiny: LanguageModel, kv_dtype: str, storage: torch.dtype,
                                            tol: float) -> None:
    ids = torch.randint(0, TINY.vocab_size, (2, 30), generator=torch.Generator().manual_seed(8))
    full = tiny(ids)
    state = tiny.allocate_state(n_slots=2, max_len=32, kv_cache_dtype=kv_dtype)
    attn = TINY.hybrid_override_pattern.index("*")
    assert state.layer(attn).k.dtype == storage
    logits = [prefill(tiny, ids[:, :20], state)] + [decode_step(tiny, ids[:, i], state) for i in range(20, 29)]
    rel = max_diff(torch.stack(logits, 1), full[:, 19:29]) / full.abs().max().item()
    print(f"relative error {rel:.3e}")
    assert 0 < rel < tol


@torch.no_grad()
def test_inputs_embeds_equal_input_ids(tiny: LanguageModel) -> None:
    ids = torch.randint(0, TINY.vocab_size, (2, 9), generator=torch.Generator().manual_seed(9))
    assert max_diff(tiny(inputs_embeds=tiny.backbone.embeddings(ids)), tiny(ids)) == 0.0


def test_bad_inputs_give_one_clear_error(tiny: LanguageModel) -> None:
    ids = torch.zeros(1, 4, dtype=torch.long)
    state = tiny.allocate_state(n_slots=1, max_len=6)
    cases = [
        (lambda: tiny(ids + TINY.vocab_size), "out of range"),
        (lambda: tiny(ids, inputs_embeds=torch.zeros(1, 4, TINY.hidden_size)), "exactly one"),
        (lambda: tiny(ids.float()), "integer"),
        (lambda: tiny(ids, state=state, positions=torch.arange(1, 5)[None]), "positions must continue"),
        (lambda: tiny(torch.zeros(1, 7, dtype=torch.long), state=state), "too long"),
        (lambda: tiny(ids, state=state, slots=[1]), "slots"),
        (lambda: tiny.allocate_state(1, 8, kv_cache_dtype="int4"), "kv_cache_dtype"),
    ]
    for call, message in cases:
        with pytest.raises(ValueError, match=message):
            call()


# --- dtype and training ------------------------------------------------------------------------

@torch.no_grad()
def test_bf16_decode_tracks_fp32(tiny: LanguageModel) -> None:
    model = build(TINY, dtype=torch.bfloat16)
    model.load_state_dict(tiny.state_dict())
    ids = torch.randint(0, TINY.vocab_size, (1, 24), generator=torch.Generator().manual_seed(10))
    state = model.allocate_state(1, 24)
    logits = [prefill(model, ids[:, :16], state)] + [decode_step(model, ids[:, i], state) for i in range(16, 24)]
    rel = max_diff(torch.stack(logits, 1), tiny(ids)[:, 15:24]) / tiny(ids).abs().max().item()
    assert torch.isfinite(torch.stack(logits)).all() and rel < 0.05


def test_tiny_model_learns_a_fixed_batch() -> None:
    torch.manual_seed(11)
    model = build(TINY)
    ids = torch.randint(0, 64, (4, 24))
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    losses = []
    for _ in range(12):
        logits = model(ids[:, :-1])
        loss = nn.functional.cross_entropy(logits.reshape(-1, TINY.vocab_size), ids[:, 1:].reshape(-1))
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    print(f"loss {losses[0]:.3f} -> {losses[-1]:.3f}")
    mamba = model.backbone.layers[0].mixer
    assert mamba.A_log.grad is not None and mamba.A_log.grad.abs().sum() > 0  # gradients reach the scan
    assert losses[-1] < 0.7 * losses[0]


@torch.no_grad()
@pytest.mark.parametrize("padded", [False, True])
def test_the_causal_prefill_of_cuda_equals_the_masked_one(tiny: LanguageModel, monkeypatch, padded: bool) -> None:
    """A fresh prefill runs on CUDA as is_causal without a mask (flash attention's GQA); forced here on a
    CPU, it gives what the explicit mask gives, right padding included, and later decode steps agree."""
    from evalsuite.model import attention

    gen = torch.Generator().manual_seed(11)
    ids = torch.randint(0, TINY.vocab_size, (2, 23), generator=gen)
    lens = [23, 15] if padded else None
    runs, calls = [], []
    sdpa = attention.F.scaled_dot_product_attention
    monkeypatch.setattr(attention.F, "scaled_dot_product_attention",
                        lambda *a, **k: calls.append(k.get("is_causal")) or sdpa(*a, **k))
    for causal in (False, True):
        monkeypatch.setattr(attention, "causal_prefill", lambda device, causal=causal: causal)
        state = tiny.allocate_state(n_slots=2, max_len=32)
        out = [prefill(tiny, ids, state, seq_lens=lens)]
        out.append(decode_step(tiny, ids[:, 3], state))
        runs.append(torch.stack(out, 1))
    assert max_diff(runs[0], runs[1]) < 2e-5
    n_attn = TINY.hybrid_override_pattern.count("*")
    assert calls.count(True) == n_attn  # the forced run's prefill only; its decode step and the other run masked
