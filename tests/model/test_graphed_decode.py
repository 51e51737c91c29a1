"""The graph-safe decode step (`decode_step_static`) equals `decode_step`; it neither syncs with the
host nor changes its ops or shapes between steps (`graph_safety`, which catches a step that does);
the engine gives the same tokens with its static-buffer decoder on and off; on CUDA the step is
captured and replayed (skipped without CUDA)."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from evalsuite.model import fastpath
from evalsuite.model.backbone import LanguageModel, decode_step, decode_step_static, prefill
from evalsuite.model.engine import Engine, SamplingParams
from evalsuite.model.graph_safety import NotCapturable, check_capturable, trace
from evalsuite.model.graphed import MIN_KV_WINDOW, GraphedDecoder, buckets_for, static_step_is_cheap
from evalsuite.model.moe import MoE

from lm_testing import TINY, max_diff, random_moe, tiny_model

TOL = 1e-5  # fp32: the static step reorders sums (masked window, gathered rows), nothing else


@pytest.fixture(scope="module")
def tiny() -> LanguageModel:
    return tiny_model()


def with_recipe(model: LanguageModel, recipe: str, dtype: torch.dtype = torch.float32) -> LanguageModel:
    from evalsuite import kernels

    model = copy.deepcopy(model).to(dtype)
    if recipe != "bf16":
        kernels.quantize_model(model, recipe)
    return model


KV = {"bf16": None, "fp8": "fp8", "fp4": None}
CASES = [("bf16", torch.float32, TOL), ("bf16", torch.bfloat16, 0.1), ("fp8", torch.float32, TOL),
         ("fp4", torch.float32, TOL)]


@torch.no_grad()
@pytest.mark.parametrize("recipe,dtype,tol", CASES)
def test_static_step_equals_decode_step(tiny: LanguageModel, recipe: str, dtype: torch.dtype, tol: float) -> None:
    """Three slots out of order at different lengths plus one inactive padding row: logits and every
    state buffer equal the eager step's, and the padding row's slot is left untouched."""
    model = with_recipe(tiny, recipe, dtype)
    eager, static = (model.allocate_state(5, 48, KV[recipe]) for _ in range(2))
    slots, lens = [3, 0, 4], [14, 6, 9]
    prompts = torch.randint(0, TINY.vocab_size, (3, 14), generator=torch.Generator().manual_seed(2))
    prefill(model, prompts, eager, slots, lens)
    prefill(model, prompts, static, slots, lens)
    pad_slot = 1
    tokens = torch.tensor([5, 200, 17])
    for _ in range(5):
        ref = decode_step(model, tokens, eager, slots)
        out = decode_step_static(model, torch.cat([tokens, tokens[:1]]), static, torch.tensor(slots + [pad_slot]),
                                 torch.tensor([True, True, True, False]), kv_len=32)
        assert out.shape == (4, TINY.vocab_size) and out.dtype == torch.float32
        assert max_diff(out[:3], ref) < tol * max(1.0, ref.abs().max().item()) and ref.abs().max() > 0.1
        if dtype == torch.float32:
            assert torch.equal(out[:3].argmax(-1), ref.argmax(-1))
        tokens = ref.argmax(-1)
    assert static.lengths.tolist() == eager.lengths.tolist() == [6 + 5, 0, 0, 14 + 5, 9 + 5]
    for name, buf in eager.named_buffers():  # KV (fp8 codes and scales too), conv and SSM state
        assert max_diff(buf, static.get_buffer(name)) <= tol * max(1.0, buf.float().abs().max().item()), name
    fresh = model.allocate_state(5, 48, KV[recipe])
    for name, buf in static.named_buffers():  # the padding row's slot was never written
        assert torch.equal(buf[pad_slot], fresh.get_buffer(name)[pad_slot]), name


@torch.no_grad()
@pytest.mark.parametrize("recipe", ["bf16", "fp8", "fp4"])
def test_static_step_is_capturable_and_the_eager_step_is_not(tiny: LanguageModel, recipe: str) -> None:
    model = with_recipe(tiny, recipe, torch.bfloat16)
    state = model.allocate_state(4, 64, KV[recipe])
    prefill(model, torch.randint(0, TINY.vocab_size, (3, 9), generator=torch.Generator().manual_seed(3)),
            state, [0, 1, 3], [5, 9, 3])
    tokens = torch.tensor([1, 2, 3, 0])
    slots, active = torch.tensor([0, 1, 3, 2]), torch.tensor([True, True, True, False])

    def next_tokens(i: int) -> None:  # other tokens each call; the lengths advance by themselves
        tokens.copy_(torch.tensor([7 * i + 1, 11 * i + 2, 13 * i + 3, 0]))

    traces = check_capturable(lambda: decode_step_static(model, tokens, state, slots, active, kv_len=64),
                              calls=3, before_call=next_tokens)
    assert len(traces[0].ops) > 100 and traces[0].syncs == []
    assert state.lengths.tolist() == [5 + 4, 9 + 4, 0, 3 + 4]  # warm-up + 3 traced calls
    # today's eager step: slot lengths read on the host; its experts (dense, or grouped for quantized
    # ones) read nothing back
    syncs = trace(lambda: decode_step(model, tokens[:3], state, [0, 1, 3])).syncs
    assert any("tolist @ state.py" in s for s in syncs) and any("backbone.py" in s for s in syncs)
    assert not any("moe.py" in s for s in syncs)
    with pytest.raises(NotCapturable, match="host sync"):
        check_capturable(lambda: decode_step(model, tokens[:3], state, [0, 1, 3]))


def test_the_checker_catches_syncs_and_shape_changes() -> None:
    x = torch.arange(6.0)
    n = [3]

    def grow() -> None:  # data-independent shape that differs between calls: a replay would be wrong
        n[0] += 1

    cases = {
        "Tensor.item": lambda: x.sum().item(),
        "Tensor.tolist": lambda: x.tolist(),
        "Tensor.__bool__": lambda: 1 if x[0] > 0 else 0,
        "aten.nonzero": lambda: torch.where(x > 2),
        "boolean index": lambda: x[x > 2],
        "aten._unique2": lambda: x.unique(),
        "aten.lift_fresh": lambda: torch.tensor([1.0, 2.0]) + x[:2],
    }
    for name, fn in cases.items():
        with pytest.raises(NotCapturable, match=name.replace(".", r"\.")):
            check_capturable(fn)
    with pytest.raises(NotCapturable, match="differs from call 0"):
        check_capturable(lambda: torch.zeros(n[0]) + 1, before_call=lambda i: grow())
    traces = check_capturable(lambda: (x * 2).softmax(0).argmax(), calls=3)
    assert [op for op, _ in traces[0].ops] == ["mul", "_softmax", "argmax"]


@torch.no_grad()
@pytest.mark.parametrize("fmt", ["bf16", "fp8", "nvfp4"])
def test_routed_dense_equals_the_expert_loop(fmt: str) -> None:
    from evalsuite import kernels
    from evalsuite.kernels.recipes import Recipe

    moe = random_moe(seed=4)
    if fmt != "bf16":  # the experts' own (quantized) modules, as the static step calls them
        kernels.quantize_model(moe, Recipe(fmt, "", rules=(("experts.*.*", fmt),)))
    assert (type(moe.experts[0].up_proj) is nn.Linear) == (fmt == "bf16")
    x = torch.randn(5, TINY.hidden_size, generator=torch.Generator().manual_seed(5))
    weights, idx = moe.gate(x)
    ref, dense = moe.routed_loop(x, weights, idx), moe.routed_dense(x, weights, idx)
    assert max_diff(dense, ref) < TOL and ref.abs().max() > 0.1
    with fastpath.static_shapes():
        assert max_diff(moe(x[None]), _moe_with_loop(moe, x[None])) < TOL


def _moe_with_loop(moe: MoE, h: torch.Tensor) -> torch.Tensor:
    with fastpath.reference_paths():
        return moe(h)


def test_buckets_and_windows() -> None:
    assert buckets_for(1) == [1] and buckets_for(8) == [1, 2, 4, 8] and buckets_for(6) == [1, 2, 4, 6]
    model = tiny_model()
    dec = GraphedDecoder(model, model.allocate_state(6, 300), vocab_limit=256, capture=False)
    assert [dec.bucket(r) for r in range(1, 7)] == [1, 2, 4, 4, 6, 6]
    assert dec.window(0) == dec.window(MIN_KV_WINDOW - 1) == MIN_KV_WINDOW
    assert dec.window(MIN_KV_WINDOW) == 2 * MIN_KV_WINDOW and dec.window(299) == 300  # capped at max_len
    with pytest.raises(ValueError, match="no room"):
        dec.step([1], [0], [300])
    versions = dec._weight_versions()  # what a captured decoder compares every step
    with torch.no_grad():
        model.backbone.layers[1].mixer.experts[0].up_proj.weight.mul_(1.0)  # an in-place write, same values
    assert dec._weight_versions() != versions and len(versions) == len(list(model.parameters())) + len(
        list(model.buffers()))
    versions = dec._weight_versions()
    w = model.backbone.layers[1].mixer.experts[0].down_proj.weight
    w.data = w.data.clone()  # moved, as grouped stacking moves expert weights: same write counter
    assert dec._weight_versions() != versions
    with pytest.raises(ValueError, match="CUDA graphs need"):
        GraphedDecoder(model, model.allocate_state(2, 8), vocab_limit=256, capture=True)


def test_a_failed_capture_warns_and_decodes_without_graphs(tiny: LanguageModel,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    prompts, params = _requests(4, seed=5)
    expected = [r.tokens for r in Engine(tiny, 2, 96, cuda_graphs="off").generate(prompts, params)]
    engine = Engine(tiny, 2, 96, cuda_graphs="on")
    assert engine.decoder is not None
    engine.decoder.capture = True  # as on CUDA, with a capture that fails

    def invalidated(*args: object) -> None:
        raise RuntimeError("CUDA error: operation not permitted when stream is capturing\nmore detail")

    monkeypatch.setattr(engine.decoder, "_capture", invalidated)
    with pytest.warns(RuntimeWarning, match="capture failed, decoding without graphs.*not permitted when"):
        got = [r.tokens for r in engine.generate(prompts, params)]
    assert got == expected and not engine.decoder.capture and engine.decoder.captures == 0


def test_engine_option() -> None:
    from evalsuite.model.backbone import build

    model = tiny_model()
    # "auto" on CUDA captures only while the dense MoE form stays within the eager stacked bound
    from evalsuite.model.moe import DENSE_MAX_MACS, MoE

    limit = DENSE_MAX_MACS // max(m._dense_macs_per_token for m in model.modules() if isinstance(m, MoE))
    assert limit >= 8  # the reference backend's 8 slots
    assert static_step_is_cheap(model, limit) and not static_step_is_cheap(model, limit + 1)
    assert not static_step_is_cheap(build("nano-omni-30b-a3b", device="meta"), 1)  # 128 experts: eager loop
    assert Engine(model, 2, 32).decoder is None  # "auto" on a CPU: the eager step
    assert isinstance(Engine(model, 2, 32, cuda_graphs="on").decoder, GraphedDecoder)
    with pytest.raises(ValueError, match="cuda_graphs must be"):
        Engine(model, 2, 32, cuda_graphs="yes")  # type: ignore[arg-type]


def _requests(n: int, seed: int) -> tuple[list[torch.Tensor], list[SamplingParams]]:
    g = torch.Generator().manual_seed(seed)
    prompts = [torch.randint(0, 256, (int(torch.randint(2, 40, (1,), generator=g)),), generator=g) for _ in range(n)]
    params = [SamplingParams(max_tokens=int(torch.randint(3, 30, (1,), generator=g)), stop_token_ids=(),
                             temperature=(0.0, 0.7, 1.2)[i % 3], top_p=(1.0, 0.9)[i % 2], seed=i) for i in range(n)]
    return prompts, params


def test_a_step_with_sampled_rows_reads_the_host_once(tiny: LanguageModel) -> None:
    """Greedy, temperature and top-p rows in one decode step: the draws happen on the device and the
    step reads the ids on the host once (the eager engine reads more: lengths, positions)."""
    engine = Engine(tiny, 3, 96, cuda_graphs="on")
    g = torch.Generator().manual_seed(0)
    for i, (temperature, top_p) in enumerate([(0.0, 1.0), (0.7, 0.9), (1.0, 1.0)]):
        engine.submit(torch.randint(0, 256, (5 + i,), generator=g),
                      SamplingParams(max_tokens=10, stop_token_ids=(), temperature=temperature, top_p=top_p, seed=i))
    engine.step()  # the prompts
    engine.step()  # the first decode step (the step's buffers are built)
    reads = [s for s in trace(engine.step).syncs if s.startswith("Tensor.") or "_local_scalar_dense" in s]
    assert len(reads) == 1 and reads[0].startswith("Tensor.tolist @ graphed.py"), reads
    assert sorted(len(h.tokens) for h in engine.running.values()) == [3, 3, 3]


@pytest.mark.parametrize("recipe,kv_cache_dtype,n_slots", [("bf16", None, 3), ("bf16", "fp8", 4), ("bf16", None, 1),
                                                         ("fp4", None, 3)])
def test_engine_tokens_equal_with_the_static_decoder(tiny: LanguageModel, recipe: str, kv_cache_dtype: str | None,
                                                     n_slots: int) -> None:
    """More requests than slots (continuous batching: buckets with padding rows, slots reused),
    greedy and seeded temperature / top-p rows in one batch, a vocab limit below the embedding table;
    with quantized experts, the static step's dense routed form."""
    model = with_recipe(tiny, recipe)
    prompts, params = _requests(7, seed=n_slots)
    out = {}
    for mode in ("off", "on"):
        engine = Engine(model, n_slots, 96, kv_cache_dtype, vocab_limit=300, cuda_graphs=mode)
        results = engine.generate(prompts, params)
        out[mode] = [(r.tokens, r.text, r.finish_reason) for r in results]
        assert engine.state.lengths.tolist() == [0] * n_slots and not engine.busy
    assert out["on"] == out["off"]
    assert sum(len(t) for t, _, _ in out["on"]) == sum(p.max_tokens for p in params)
    assert all(tok < 300 for t, _, _ in out["on"] for tok in t)


def _has_cxx() -> bool:
    import os
    import shutil

    return any(shutil.which(c) for c in (os.environ.get("CXX", ""), "g++", "c++", "clang++") if c)


@pytest.mark.slow
@pytest.mark.skipif(not _has_cxx(), reason="torch.compile on a CPU needs a C++ compiler")
def test_compiled_step_gives_the_same_tokens_and_sees_weight_writes(tiny: LanguageModel) -> None:
    """`compile_step`: the static step through `torch.compile` (one compile: one batch bucket, one
    KV window) gives the eager engine's greedy tokens; an in-place weight write afterwards (the
    experts' stacked copies and every other cache the compiled step reads go stale) is seen."""
    model = copy.deepcopy(tiny)
    g = torch.Generator().manual_seed(9)
    prompts = [torch.randint(0, 256, (n,), generator=g) for n in (12, 7)]
    params = SamplingParams(max_tokens=10, stop_token_ids=())
    compiled = Engine(model, 2, 40, cuda_graphs="on", compile_step=True)
    eager = Engine(model, 2, 40, cuda_graphs="off")
    assert compiled.decoder is not None and compiled.decoder.compiled
    for _ in range(2):
        want = [r.tokens for r in eager.generate(prompts, params)]
        got = [r.tokens for r in compiled.generate(prompts, params)]
        assert got == want and compiled.decoder.compiled  # it did not fall back to the uncompiled step
        with torch.no_grad():  # new expert weights (the stacked copy must follow) and a new norm
            for m in model.modules():
                if isinstance(m, MoE):
                    m.experts[0].up_proj.weight.mul_(-3.0)
            model.backbone.norm_f.weight.mul_(0.5)
    with pytest.raises(ValueError, match="compile_step"):
        Engine(model, 2, 40, cuda_graphs="off", compile_step=True)


def test_the_compiled_step_compiles_past_dynamos_recompile_limit(tiny: LanguageModel,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """One compile per (bucket, window): more than dynamo's recompile limit (here lowered to 2 to keep
    the test short; 8 by default), past which a fullgraph compile raises and the decoder would have
    dropped compiling for every step. The decoder keeps compiling, gives the uncompiled step's logits,
    and leaves dynamo's global limit as it was. (Dynamo's eager backend: its tracing, not Inductor.)"""
    import torch._dynamo

    from evalsuite.model import graphed

    compiles: list[int] = []

    def backend(gm: torch.fx.GraphModule, example_inputs: object) -> object:
        compiles.append(1)
        return gm.forward

    torch._dynamo.reset()
    monkeypatch.setattr(graphed, "compiled_step",
                        lambda: torch.compile(decode_step_static, fullgraph=True, dynamic=False, backend=backend))
    model = copy.deepcopy(tiny).eval()
    states = [model.allocate_state(2, 2 * MIN_KV_WINDOW + 8) for _ in range(2)]
    plain = GraphedDecoder(model, states[0], 512, capture=False)
    compiled = GraphedDecoder(model, states[1], 512, capture=False, compile=True)
    steps = [(1, 5), (2, 5), (1, MIN_KV_WINDOW + 3), (2, MIN_KV_WINDOW + 9), (2, 6)]  # four (bucket, window)
    try:
        with torch._dynamo.config.patch(recompile_limit=2):
            for rows, length in steps:
                args = ([7 + rows] * rows, list(range(rows)), [length] * rows)
                want_ids, want = plain.step(*args)
                got_ids, got = compiled.step(*args)
                assert got_ids == want_ids and torch.equal(got, want)
            assert compiled.compiled and len(compiles) == 4 and len(compiled._steps) == 4
            assert torch._dynamo.config.recompile_limit == 2
    finally:
        torch._dynamo.reset()


def test_a_failed_compile_warns_and_runs_the_step_uncompiled(tiny: LanguageModel,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    from evalsuite.model import graphed

    def broken(*args: object, **kwargs: object) -> None:
        raise RuntimeError("Unsupported: dynamo could not trace this\nmore detail")

    monkeypatch.setattr(graphed, "compiled_step", lambda: broken)
    prompts, params = _requests(3, seed=4)
    expected = [r.tokens for r in Engine(tiny, 2, 96, cuda_graphs="off").generate(prompts, params)]
    engine = Engine(tiny, 2, 96, compile_step=True)
    with pytest.warns(RuntimeWarning, match="torch.compile of the decode step failed.*could not trace"):
        got = [r.tokens for r in engine.generate(prompts, params)]
    assert got == expected and engine.decoder is not None and not engine.decoder.compiled


def CUDA(fn):  # noqa: N802  (a decorator: skipped without a device, selected by ``-m gpu``)
    return pytest.mark.gpu(pytest.mark.skipif(not torch.cuda.is_available(), reason="CUDA graphs need a CUDA device")(fn))


def _cuda_model(recipe: str, dtype: torch.dtype) -> LanguageModel:
    from evalsuite.kernels.triton import HAS_TRITON

    if recipe != "bf16" and not HAS_TRITON:
        pytest.skip("quantized decode on CUDA needs Triton")
    return with_recipe(tiny_model(), recipe, dtype).cuda()


@CUDA
@torch.no_grad()
@pytest.mark.parametrize("recipe", ["bf16", "fp8", "fp4"])
@pytest.mark.parametrize("dtype,tol", [(torch.float32, 1e-4), (torch.bfloat16, 3e-2)])
def test_cuda_replayed_step_equals_decode_step(recipe: str, dtype: torch.dtype, tol: float) -> None:
    """The captured step, replayed over several steps with rows at different lengths and a padding
    row, gives the eager step's logits (relative to their scale) and advances the same lengths."""
    model = _cuda_model(recipe, dtype)
    eager, static = (model.allocate_state(4, 160, KV[recipe]) for _ in range(2))
    slots, lens = [2, 0, 3], [30, 12, 70]
    prompts = torch.randint(0, TINY.vocab_size, (3, 70), generator=torch.Generator().manual_seed(6)).cuda()
    prefill(model, prompts, eager, slots, lens)
    prefill(model, prompts, static, slots, lens)
    dec = GraphedDecoder(model, static, vocab_limit=TINY.vocab_size)
    assert dec.capture
    tokens = [5, 200, 17]
    for i in range(4):
        ref = decode_step(model, torch.tensor(tokens, device="cuda"), eager, slots)
        ids, logits = dec.step(tokens, slots, [n + i for n in lens])
        scale = ref.abs().max().item()
        assert max_diff(logits, ref) < tol * scale and scale > 0.1
        assert ids == logits.argmax(-1).tolist()  # the greedy ids taken in the graph
        tokens = ref.argmax(-1).tolist()
    assert dec.captures == 1  # one bucket (4) and one window (128): captured once, replayed after
    assert static.lengths.tolist() == eager.lengths.tolist() == [12 + 4, 0, 30 + 4, 70 + 4]


@CUDA
@pytest.mark.parametrize("recipe", ["bf16", "fp8", "fp4"])
def test_cuda_engine_tokens_equal_and_weight_writes_recapture(recipe: str) -> None:
    """fp32 on CUDA (so that no near-tie flips an argmax): the engine with its captured step ("auto")
    gives the eager engine's tokens; a second run only replays; an in-place weight write (including
    the stacked expert copy a bf16 graph holds) is picked up by capturing again."""
    model = _cuda_model(recipe, torch.float32)
    prompts, _ = _requests(6, seed=9)
    prompts = [x.cuda() for x in prompts]
    params = SamplingParams(max_tokens=24, stop_token_ids=())

    def eager_tokens() -> list[list[int]]:
        return [r.tokens for r in Engine(model, 4, 128, KV[recipe], cuda_graphs="off").generate(prompts, params)]

    engine = Engine(model, 4, 128, KV[recipe])
    assert engine.decoder is not None and engine.decoder.capture
    assert [r.tokens for r in engine.generate(prompts, params)] == eager_tokens()
    captures = engine.decoder.captures
    assert captures >= 2  # several buckets as the batch drains
    assert [r.tokens for r in engine.generate(prompts, params)] == eager_tokens()
    assert engine.decoder.captures == captures  # replays only
    with torch.no_grad():
        model.backbone.layers[0].norm.weight.mul_(1.5)
        up = model.backbone.layers[1].mixer.experts[0].up_proj
        if isinstance(up, nn.Linear):
            up.weight.mul_(3.0)
    assert [r.tokens for r in engine.generate(prompts, params)] == eager_tokens()
    assert engine.decoder.captures > captures
