"""Inference fast paths (`model/fastpath.py`) equal the reference computations: contiguous-slot cache
views, the one-token Mamba-2 step, and the dense small-batch MoE over stacked expert weights; the dense
MoE path leaves quantized experts to the grouped path (`test_moe_grouped.py`) and autograd to the expert
loop, and follows weight changes."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from evalsuite.model import fastpath
from evalsuite.model.backbone import LanguageModel, decode_step, prefill
from evalsuite.model.config import BackboneConfig
from evalsuite.model.mamba2 import Mamba2Mixer
from evalsuite.model.moe import MoE

from lm_testing import max_diff, random_moe, tiny_model

TINY = BackboneConfig.preset("tiny")
TOL = 1e-5  # fp32: the fast paths reorder sums, nothing else


@pytest.fixture(scope="module")
def tiny() -> LanguageModel:
    return tiny_model()


def moes(model: nn.Module) -> list[MoE]:
    return [m for m in model.modules() if isinstance(m, MoE)]


@torch.no_grad()
def decode_both(model: LanguageModel, prompts: torch.Tensor, steps: int, slots: list[int] | None = None,
                seq_lens: list[int] | None = None, n_slots: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Prefill + `steps` greedy decode steps, once with the fast paths and once through the reference
    paths, each on its own state: logits [B, steps, V] of both (the same tokens are fed to both)."""
    b = prompts.shape[0]
    n_slots = n_slots or b
    fast_state = model.allocate_state(n_slots, prompts.shape[1] + steps + 1)
    ref_state = model.allocate_state(n_slots, prompts.shape[1] + steps + 1)
    token = prefill(model, prompts, fast_state, slots, seq_lens)
    with fastpath.reference_paths():
        ref_token = prefill(model, prompts, ref_state, slots, seq_lens)
    assert max_diff(token, ref_token) < TOL
    token = ref_token.argmax(-1)
    fast, ref = [], []
    for _ in range(steps):
        fast.append(decode_step(model, token, fast_state, slots))
        with fastpath.reference_paths():
            ref.append(decode_step(model, token, ref_state, slots))
        token = ref[-1].argmax(-1)
    assert torch.equal(fast_state.lengths, ref_state.lengths)
    for name, buf in fast_state.named_buffers():  # KV, conv and SSM state agree as well
        assert max_diff(buf, ref_state.get_buffer(name)) < TOL, name
    return torch.stack(fast, 1), torch.stack(ref, 1)


@pytest.fixture
def count_mamba_steps(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    calls: list[int] = []
    step = Mamba2Mixer._step

    def counted(self, *args):  # type: ignore[no-untyped-def]
        calls.append(1)
        return step(self, *args)

    monkeypatch.setattr(Mamba2Mixer, "_step", counted)
    return calls


@pytest.mark.parametrize("batch", [1, 16])
def test_fast_decode_equals_reference_paths(tiny: LanguageModel, batch: int, count_mamba_steps: list[int]) -> None:
    prompts = torch.randint(0, TINY.vocab_size, (batch, 19), generator=torch.Generator().manual_seed(batch))
    for moe in moes(tiny):
        moe._stacked = None
    fast, ref = decode_both(tiny, prompts, steps=6)
    assert max_diff(fast, ref) < TOL and ref.abs().max() > 0.1
    # the fast paths did run: the one-token Mamba step and the stacked experts
    assert len(count_mamba_steps) == 6 * TINY.hybrid_override_pattern.count("M")
    assert all(moe._stacked is not None for moe in moes(tiny))


def test_scattered_slots_and_ragged_lengths_equal_reference_paths(tiny: LanguageModel) -> None:
    """Slots out of order (gather/scatter copies, not views) at different lengths (attention mask)."""
    gen = torch.Generator().manual_seed(3)
    prompts = torch.randint(0, TINY.vocab_size, (3, 14), generator=gen)
    fast, ref = decode_both(tiny, prompts, steps=5, slots=[3, 0, 2], seq_lens=[14, 6, 9], n_slots=5)
    assert max_diff(fast, ref) < TOL


@pytest.mark.parametrize("recipe", ["fp4", "fp8", "one-expert"])
def test_quantized_experts_take_the_grouped_path_or_the_loop(tiny: LanguageModel, recipe: str) -> None:
    """Quantized experts never take the dense path; all of one format run grouped, a mix loops."""
    from evalsuite import kernels
    from evalsuite.kernels.recipes import Recipe

    model = copy.deepcopy(tiny)
    grouped = recipe != "one-expert"
    if recipe == "one-expert":  # a single swapped expert is enough to leave the stacked and grouped paths
        recipe = Recipe("one-expert", "", rules=(("backbone.layers.*.mixer.experts.3.up_proj", "fp8"),))
    kernels.quantize_model(model, recipe)
    assert all(moe.stacked_experts() is None for moe in moes(model))
    assert all((moe.grouped_experts() is not None) == grouped for moe in moes(model))
    prompts = torch.randint(0, TINY.vocab_size, (4, 11), generator=torch.Generator().manual_seed(4))
    fast, ref = decode_both(model, prompts, steps=4)
    assert max_diff(fast, ref) < TOL


@torch.no_grad()
def test_an_expert_with_a_forward_hook_sees_its_tokens() -> None:
    """A hook on an expert linear (activation capture, calibration) takes the per-expert loop, so the
    hook runs on exactly the rows routed to that expert; removing it restores the stacked path."""
    torch.manual_seed(8)
    moe = MoE(TINY)
    nn.init.normal_(moe.gate.weight, std=0.3)
    h = torch.randn(1, 6, TINY.hidden_size)
    assert moe.stacked_experts() is not None
    _, idx = moe.gate(h.view(-1, TINY.hidden_size))
    e = int(idx.flatten().mode().values)  # an expert some tokens chose
    routed = int((idx == e).any(-1).sum())
    assert routed > 0
    seen: list[int] = []
    handle = moe.experts[e].up_proj.register_forward_hook(lambda mod, inp, out: seen.append(inp[0].shape[0]))
    assert moe.stacked_experts() is None
    moe(h)
    assert sum(seen) == routed
    handle.remove()
    assert moe.stacked_experts() is not None


@torch.no_grad()
def test_stacked_experts_follow_weight_changes() -> None:
    model = tiny_model(seed=1)
    other = tiny_model(seed=2)
    moe = moes(model)[0]
    prompts = torch.randint(0, TINY.vocab_size, (2, 9), generator=torch.Generator().manual_seed(5))

    def check() -> None:
        fast, ref = decode_both(model, prompts, steps=2)
        assert max_diff(fast, ref) < TOL

    check()
    changes = [
        lambda: moe.experts[1].up_proj.weight.mul_(1.5),  # in place (an optimizer step, nn.init)
        lambda: model.load_state_dict(other.state_dict()),  # copied in
        lambda: setattr(moe.experts[2].down_proj, "weight", nn.Parameter(torch.randn(TINY.hidden_size, 64) * 0.1)),
    ]
    for change in changes:
        before = moe._stacked
        assert before is not None
        change()
        check()
        assert moe._stacked is not None and moe._stacked is not before  # rebuilt, not reused
    stacked = moe.stacked_experts()
    assert moe.stacked_experts() is stacked  # unchanged weights: reused
    moe.to(torch.float64)  # cast: new storage
    assert moe.stacked_experts().up.dtype == torch.float64


def test_autograd_takes_the_expert_loop_with_the_same_result() -> None:
    moe = random_moe(seed=6)
    h = torch.randn(1, 3, TINY.hidden_size)
    with torch.no_grad():
        fast = moe(h)
    assert moe._stacked is not None
    moe._stacked = None
    out = moe(h)  # grad enabled: the loop, with gradients into the experts the tokens chose
    assert moe._stacked is None and max_diff(out, fast) < TOL
    out.square().sum().backward()
    _, idx = moe.gate(h.view(-1, TINY.hidden_size))
    chosen = set(idx.flatten().tolist())
    for e in range(TINY.n_routed_experts):
        grad = moe.experts[e].up_proj.weight.grad
        assert (grad is not None and bool(grad.abs().sum() > 0)) == (e in chosen)


@torch.no_grad()
@pytest.mark.parametrize("change", [dict(mlp_bias=True), dict(moe_latent_size=64)])
def test_stacked_experts_with_biases_and_latent_width(change: dict) -> None:
    cfg = TINY.replace(**change)
    torch.manual_seed(7)
    moe = MoE(cfg)
    for name, p in moe.named_parameters():
        if name != "gate.weight":
            nn.init.normal_(p, std=0.1)
    nn.init.normal_(moe.gate.weight, std=0.3)
    h = torch.randn(2, 5, cfg.hidden_size)
    fast = moe(h)
    assert moe._stacked is not None
    with fastpath.reference_paths():
        ref = moe(h)
    assert max_diff(fast, ref) < TOL and ref.abs().max() > 1e-2
