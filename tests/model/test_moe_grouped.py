"""The grouped routed path (`MoE.grouped_experts`, `kernels.grouped`) equals the reference expert loop
(`MoE.routed_loop`) for plain and quantized experts, routings that leave experts without tokens, top-k
above one, latent width and biases; its stacks follow weight changes; and `MoE.forward` takes it only
where it applies (hooks, pinned backends and mixed kinds keep the loop)."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from evalsuite import kernels
from evalsuite.kernels import grouped
from evalsuite.kernels.recipes import Recipe
from evalsuite.model import fastpath
from evalsuite.model.moe import MoE

from lm_testing import TINY, max_diff, random_moe

FORMATS = ["nvfp4", "fp8", "fp8-channel"]


def _moe(seed: int = 0, dtype: torch.dtype = torch.float32, fmt: str | None = None, **change) -> MoE:
    cfg = TINY.replace(**change)
    moe = random_moe(seed, cfg)
    if cfg.mlp_bias:
        with torch.no_grad():
            for e in moe.experts:
                e.up_proj.bias.normal_(std=0.1)
                e.down_proj.bias.normal_(std=0.1)
    moe = moe.to(dtype)
    if fmt is not None:
        kernels.quantize_model(moe, Recipe("experts", "", rules=(("experts.*.*", fmt),)))
    return moe


def _routing(n: int, moe: MoE, unused: tuple[int, ...] = (), seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Random routing of n tokens: k distinct experts per token from those not in ``unused``, and weights."""
    g = torch.Generator().manual_seed(seed)
    k, e = moe.gate.top_k, len(moe.experts)
    allowed = torch.tensor([i for i in range(e) if i not in unused])
    idx = allowed[torch.rand(n, len(allowed), generator=g).argsort(-1)[:, :k]]  # [n, k]
    return torch.rand(n, k, generator=g) + 0.1, idx


@torch.no_grad()
def _both(moe: MoE, x: torch.Tensor, weights: torch.Tensor, idx: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    g = moe.grouped_experts()
    assert g is not None
    return g(x, weights, idx), moe.routed_loop(x, weights, idx)


@pytest.mark.parametrize("change", [{}, dict(mlp_bias=True), dict(moe_latent_size=64), dict(num_experts_per_tok=4),
                                    dict(num_experts_per_tok=1, n_routed_experts=16, n_group=1, topk_group=1)])  # fmt: skip
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_grouped_equals_the_expert_loop(change: dict, dtype: torch.dtype) -> None:
    moe = _moe(1, dtype, **change)
    d = moe.experts[0].up_proj.in_features
    x = torch.randn(37, d).to(dtype)
    weights, idx = _routing(37, moe, unused=(2, 5))  # experts 2 and 5 get no token
    fast, ref = _both(moe, x, weights, idx)
    assert fast.dtype == ref.dtype == torch.float32 and ref.abs().max() > 0.1
    if dtype == torch.float32:
        assert max_diff(fast, ref) < 1e-5
    else:  # bf16 per expert either way; grouped adds a bias after rounding the matmul, the loop inside
        assert max_diff(fast, ref) < 2.0**-6 * ref.abs().max().item()


def test_padded_batched_matmul_fallback_equals_the_loop(monkeypatch: pytest.MonkeyPatch) -> None:
    """Where `torch._grouped_mm` does not apply (dtype, device, an older torch): one padded bmm."""
    calls = []
    monkeypatch.setattr(grouped, "grouped_mm_applies", lambda x, w: calls.append(1) and False)
    moe = _moe(2, mlp_bias=True)
    x = torch.randn(23, TINY.hidden_size)
    weights, idx = _routing(23, moe, unused=(0, 7))  # the first and the last expert empty
    fast, ref = _both(moe, x, weights, idx)
    assert calls and max_diff(fast, ref) < 1e-5 and ref.abs().max() > 0.1


@torch.no_grad()
def test_float64_takes_the_fallback_and_one_token() -> None:
    moe = _moe(3, torch.float64)
    x = torch.randn(1, TINY.hidden_size, dtype=torch.float64)
    weights, idx = _routing(1, moe)
    assert not grouped.grouped_mm_applies(x, moe.grouped_experts().up.weight)
    fast, ref = _both(moe, x, weights, idx)
    assert max_diff(fast, ref) < 1e-12 and ref.abs().max() > 1e-3


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("change", [{}, dict(mlp_bias=True), dict(moe_latent_size=64)])
def test_quantized_grouped_equals_their_loop(fmt: str, dtype: torch.dtype, change: dict) -> None:
    moe = _moe(4, dtype, fmt, **change)
    kinds = {type(m).__name__ for e in moe.experts for m in e.children()}
    assert kinds == {"NVFP4Linear" if fmt == "nvfp4" else "FP8Linear"}
    d = moe.experts[0].up_proj.in_features
    x = torch.randn(29, d).to(dtype)
    weights, idx = _routing(29, moe, unused=(3,), seed=1)
    fast, ref = _both(moe, x, weights, idx)
    # fp32: the same fp32 matmuls against the same dequantized weights, grouped
    tol = 1e-5 if dtype == torch.float32 else 2.0**-6 * ref.abs().max().item()
    assert max_diff(fast, ref) < tol and ref.abs().max() > 0.1


@torch.no_grad()
@pytest.mark.parametrize("fmt", [None, *FORMATS])
def test_stacks_follow_weight_changes(fmt: str | None) -> None:
    moe = _moe(5, fmt=fmt)
    x = torch.randn(40, TINY.hidden_size)
    weights, idx = _routing(40, moe)

    def check() -> None:
        fast, ref = _both(moe, x, weights, idx)
        assert max_diff(fast, ref) < 1e-5

    check()
    stack = moe.grouped_experts()
    assert moe.grouped_experts() is stack  # unchanged weights: reused
    up, down = moe.experts[1].up_proj, moe.experts[6].down_proj
    other = _moe(6, fmt=fmt)
    changes = [
        lambda: up.get_parameter("weight").mul_(1.5) if fmt is None else up.get_buffer("qdata").copy_(
            other.experts[1].up_proj.qdata),  # in place
        lambda: moe.load_state_dict(other.state_dict()),  # copied in
        lambda: setattr(down, "bias", nn.Parameter(torch.randn(TINY.hidden_size) * 0.1, requires_grad=False)),
    ]
    for change in changes:
        before = moe.grouped_experts()
        change()
        if change is changes[-1]:  # one expert with a bias, the others without: not groupable
            assert moe.grouped_experts() is None
            continue
        check()
        assert moe.grouped_experts() is not before


@torch.no_grad()
def test_forward_picks_dense_grouped_or_loop() -> None:
    moe = _moe(7)
    small, large = torch.randn(1, 2, TINY.hidden_size), torch.randn(2, 40, TINY.hidden_size)
    out = moe(small)
    assert moe._stacked is not None and moe._grouped is None  # few tokens: dense
    out_large = moe(large)
    assert moe._grouped is not None  # many tokens: grouped
    with fastpath.reference_paths():
        assert max_diff(out, moe(small)) < 1e-5 and max_diff(out_large, moe(large)) < 1e-5
    quantized = copy.deepcopy(moe)
    kernels.quantize_model(quantized, Recipe("experts", "", rules=(("experts.*.*", "nvfp4"),)))
    quantized(small)
    assert quantized._grouped is not None and quantized._stacked is None  # quantized: grouped at any size


@torch.no_grad()
def test_what_keeps_the_loop(monkeypatch: pytest.MonkeyPatch) -> None:
    """A forward hook (it must see its expert's rows), a backend pinned on one quantized expert, mixed
    kinds: no grouped stack, and `forward` runs the loop."""
    moe = _moe(8, fmt="nvfp4")
    assert moe.grouped_experts() is not None
    handle = moe.experts[4].down_proj.register_forward_hook(lambda *a: None)
    assert moe.grouped_experts() is None
    handle.remove()
    moe.experts[4].up_proj.backend = "ref"
    assert moe.grouped_experts() is None
    moe.experts[4].up_proj.backend = "auto"
    assert moe.grouped_experts() is not None
    handle = moe.experts[2].register_forward_pre_hook(lambda *a: None)  # on a whole expert
    assert moe.grouped_experts() is None
    handle.remove()
    mixed = _moe(8)
    kernels.quantize_model(mixed, Recipe("one", "", rules=(("experts.3.up_proj", "fp8"),)))
    assert mixed.grouped_experts() is None and mixed.stacked_experts() is None
    loops = []
    monkeypatch.setattr(MoE, "routed_loop", lambda self, *a: loops.append(1) or torch.zeros(a[0].shape))
    mixed(torch.randn(1, 50, TINY.hidden_size))
    assert loops == [1]


def test_experts_hold_their_weights_once_and_stay_trainable() -> None:
    """After stacking, each expert's tensors are views of the stacks (one copy of the weights); built
    under inference mode they stay normal tensors; an optimizer step on them is seen by the next call."""
    moe = _moe(9, mlp_bias=True)
    weight = moe.experts[3].up_proj.weight
    x = torch.randn(2, 40, TINY.hidden_size)
    with torch.inference_mode():
        first = moe(x)
    stack = moe.grouped_experts()
    assert moe.experts[3].up_proj.weight is weight and not weight.is_inference()
    for mlp in moe.experts:
        for lin, g in ((mlp.up_proj, stack.up), (mlp.down_proj, stack.down)):
            assert lin.weight.untyped_storage().data_ptr() == g.weight.untyped_storage().data_ptr()
            assert lin.bias.untyped_storage().data_ptr() == g.bias.untyped_storage().data_ptr()
    opt = torch.optim.SGD(moe.parameters(), lr=0.5)
    moe(x).square().mean().backward()  # grad enabled: the loop, gradients into the views
    opt.step()
    with torch.no_grad():
        after = moe(x)
        assert moe.grouped_experts() is not stack  # rebuilt from the updated weights
        with fastpath.reference_paths():
            assert max_diff(after, moe(x)) < 1e-5
    assert max_diff(after, first) > 1e-2


@torch.no_grad()
def test_a_packed_checkpoint_of_stacked_experts_is_unchanged(tmp_path) -> None:
    """Views of the stacks save as the tensors they are (safetensors takes non-overlapping views)."""
    from safetensors.torch import load_file

    from evalsuite.kernels.checkpoint import save_packed

    moe = _moe(10, fmt="nvfp4", mlp_bias=True)
    before = save_packed(moe, tmp_path / "before.safetensors")
    moe(torch.randn(2, 40, TINY.hidden_size))
    assert moe._grouped is not None
    after = save_packed(moe, tmp_path / "after.safetensors")
    assert after.stat().st_size == before.stat().st_size  # no stack saved whole beside a view
    a, b = load_file(after), load_file(before)
    assert a.keys() == b.keys() and all(torch.equal(a[k].reshape(-1).view(torch.uint8), b[k].reshape(-1).view(torch.uint8)) for k in a)


@torch.no_grad()
def test_a_refused_stack_is_not_retried_every_call(monkeypatch: pytest.MonkeyPatch) -> None:
    """Groupable ups with ungroupable downs (here: one down on another dtype) are refused once, and
    again only after a weight changed."""
    moe = _moe(11)
    moe.experts[5].down_proj.to(torch.float64)
    built = []
    stack = grouped.stack_linears
    monkeypatch.setattr("evalsuite.model.moe.stack_linears", lambda layers: built.append(1) or stack(layers))
    assert moe.grouped_experts() is None and moe.grouped_experts() is None and len(built) == 2  # up, down once
    moe.experts[5].down_proj.to(torch.float32)
    assert moe.grouped_experts() is not None and len(built) == 4


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
@pytest.mark.gpu
@pytest.mark.parametrize("fmt", [None, *FORMATS])
@pytest.mark.parametrize("tokens", [1, 3, 40, 200])  # FP8: W8A16 up to 16 rows an expert, W8A8 above (40: both)
def test_grouped_on_cuda_equals_the_loop(fmt: str | None, tokens: int) -> None:
    """bf16 experts through `torch._grouped_mm`, NVFP4 / FP8 through the Triton grouped kernel, against
    the loop over the same layers on the GPU (their own GEMV / GEMM / dequantize paths)."""
    moe = _moe(12, torch.bfloat16, fmt, mlp_bias=True).to("cuda")
    x = torch.randn(tokens, TINY.hidden_size, device="cuda", dtype=torch.bfloat16)
    weights, idx = _routing(tokens, moe, unused=(1,))
    fast, ref = _both(moe, x, weights.cuda(), idx.cuda())
    assert max_diff(fast, ref) < 2.0**-5 * ref.abs().max().item() and ref.abs().max() > 0.1
