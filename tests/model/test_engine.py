"""Generation engine: cached decoding equals the full forward pass, continuous batching equals
one-at-a-time generation token for token, stops, sampling, and slot bookkeeping."""

from __future__ import annotations

import pytest
import torch

from evalsuite.model.backbone import LanguageModel, decode_step
from evalsuite.model.config import BackboneConfig
from evalsuite.model.engine import (Engine, Handle, SamplingParams, TokenEvent, _prefill_groups, prefill_embeds, sample_rows,
                          top_p_filter)
from evalsuite.model.state import InferenceState
from evalsuite.model.tokenizer import ByteTokenizer

from lm_testing import max_diff, tiny_model

TOK = ByteTokenizer()
TINY_CFG = BackboneConfig.preset("tiny")
NO_STOP = dict(stop_token_ids=())  # untrained model: run to max_tokens unless a test sets stops


@pytest.fixture(scope="module")
def lm() -> LanguageModel:
    return tiny_model()


def prompt_ids(n: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.cat([torch.tensor([TOK.bos_id]), torch.randint(32, 127, (n - 1,), generator=g)])


@torch.no_grad()
def greedy_uncached(lm: LanguageModel, embeds: torch.Tensor, n: int) -> list[int]:
    """Greedy tokens from full forward passes over the whole sequence each step (no state)."""
    out: list[int] = []
    for _ in range(n):
        seq = torch.cat([embeds, lm.backbone.embeddings(torch.tensor(out, dtype=torch.long))]) if out else embeds
        logits = lm(inputs_embeds=seq[None])[0, -1]
        logits[TOK.vocab_size:] = float("-inf")
        out.append(int(logits.argmax()))
    return out


def test_cached_prefill_and_decode_equal_the_full_pass(lm: LanguageModel) -> None:
    """Prompt embeddings (arbitrary vectors, as media are) + 12 decoded tokens: every step's logits
    equal the uncached forward pass at that position (fp32)."""
    g = torch.Generator().manual_seed(1)
    prompt = torch.randn(37, lm.config.hidden_size, generator=g) * 0.5
    state = lm.allocate_state(2, 128)
    slot = torch.tensor([1])
    steps = [prefill_embeds(lm, prompt[None], state, slot)[0]]
    tokens = [int(steps[0][: TOK.vocab_size].argmax())]
    for _ in range(12):
        steps.append(decode_step(lm, torch.tensor(tokens[-1:]), state, slot)[0])
        tokens.append(int(steps[-1][: TOK.vocab_size].argmax()))
    full_in = torch.cat([prompt, lm.backbone.embeddings(torch.tensor(tokens[:-1]))])[None]
    with torch.no_grad():
        full = lm(inputs_embeds=full_in)[0, prompt.shape[0] - 1:]  # logits that predicted each token
    assert max_diff(torch.stack(steps), full) < 1e-4
    assert int(state.lengths[1]) == 37 + 12 and int(state.lengths[0]) == 0


def test_engine_greedy_equals_uncached_reference(lm: LanguageModel) -> None:
    engine = Engine(lm, n_slots=2, max_len=128)
    ids = prompt_ids(21, seed=2)
    (res,) = engine.generate([ids], SamplingParams(max_tokens=10, **NO_STOP))
    ref = greedy_uncached(lm, lm.backbone.embeddings(ids).detach(), 10)
    print("engine", res.tokens, "\nref   ", ref)
    assert res.tokens == ref and res.finish_reason == "length" and res.prompt_tokens == 21


@pytest.mark.parametrize("kv_cache_dtype", [None, "bf16", "fp8"])
def test_continuous_batching_equals_one_at_a_time(lm: LanguageModel, kv_cache_dtype: str | None) -> None:
    """Five prompts of different lengths and budgets through 3 slots, one submitted mid-run:
    token-for-token what each gives alone. Prompts 1 and 2 are prefilled together, right-padded."""
    lengths, budgets = [5, 30, 33, 9, 50], [12, 5, 20, 8, 15]
    assert [len(g) for g in _prefill_groups_of(lengths[:3])] == [1, 2]
    prompts = [prompt_ids(n, seed=10 + i) for i, n in enumerate(lengths)]
    prompts[2] = lm.backbone.embeddings(prompts[2]).detach() + 0.1  # an embeddings prompt (like media)
    params = [SamplingParams(max_tokens=b, **NO_STOP) for b in budgets]

    alone = []
    for p, sp in zip(prompts, params):
        single = Engine(lm, n_slots=1, max_len=128, kv_cache_dtype=kv_cache_dtype)
        alone.append(single.generate([p], sp)[0].tokens)

    engine = Engine(lm, n_slots=3, max_len=128, kv_cache_dtype=kv_cache_dtype)
    handles = [engine.submit(p, sp) for p, sp in zip(prompts[:4], params[:4])]
    for _ in range(3):
        engine.step()
    assert len(engine.running) == 3 and len(engine.waiting) == 1  # full: the 4th waits for a slot
    handles.append(engine.submit(prompts[4], params[4]))  # enters mid-run
    engine.run_until_done()
    for i, (h, ref) in enumerate(zip(handles, alone)):
        print(i, h.result.tokens, ref)
        assert h.result.tokens == ref
        assert h.result.output_tokens == budgets[i] and h.result.finish_reason == "length"
    assert engine.free_slots == 3 and not engine.busy


def _prefill_groups_of(lengths: list[int]) -> list[list[Handle]]:
    d = 4
    return _prefill_groups([Handle(i, torch.zeros(n, d), SamplingParams(), None, 0.0, frozenset())
                            for i, n in enumerate(lengths)])


def test_fp8_kv_cache_decodes_close_to_the_full_pass(lm: LanguageModel) -> None:
    state = lm.allocate_state(1, 64, kv_cache_dtype="fp8")
    ids = prompt_ids(24, seed=3)
    cached = prefill_embeds(lm, lm.backbone.embeddings(ids)[None].detach(), state, torch.tensor([0]))[0]
    with torch.no_grad():
        full = lm(ids[None])[0, -1]
    d = max_diff(cached, full)
    assert 0 < d < 0.05 * full.abs().max().item()  # quantized, so not exact, but close


@torch.no_grad()
@pytest.mark.parametrize("slots", [[0, 1, 2], [2, 0, 1]])  # contiguous rows (plain copy) and a scatter
@pytest.mark.parametrize("kv_cache_dtype", [None, "bf16", "fp8"])
def test_padded_kv_write_stores_each_row_as_alone(kv_cache_dtype: str | None, slots: list[int]) -> None:
    """Right padding of a batched write takes no part in the FP8 scale and is stored as zeros: every
    row's cache (values and scales, bit for bit) equals writing that row's real tokens alone."""
    lens, t, heads, hd = [4, 10, 7], 10, TINY_CFG.num_key_value_heads, TINY_CFG.head_dim
    g = torch.Generator().manual_seed(0)
    k, v = torch.randn(3, heads, t, hd, generator=g), torch.randn(3, heads, t, hd, generator=g)
    for i, n in enumerate(lens):  # padding far larger than the real values: it would set the scale
        k[i, :, n:] *= 100
        v[i, :, n:] = float("nan")
    state = InferenceState(TINY_CFG, n_slots=3, max_len=16, kv_cache_dtype=kv_cache_dtype)
    cache = state.layer(TINY_CFG.layer_types.index("attention"))
    cache.write(state.batch_index(3, t, slots, None, lens), k, v)
    for i, (slot, n) in enumerate(zip(slots, lens)):
        alone = InferenceState(TINY_CFG, n_slots=1, max_len=16, kv_cache_dtype=kv_cache_dtype)
        ref = alone.layer(TINY_CFG.layer_types.index("attention"))
        ref.write(alone.batch_index(1, n, None, None, None), k[i:i + 1, :, :n], v[i:i + 1, :, :n])
        for name, buf in ref.named_buffers():
            a, b = buf[0], getattr(cache, name)[slot]
            if a.dtype == torch.float8_e4m3fn:
                a, b = a.view(torch.uint8), b.view(torch.uint8)
            assert torch.equal(a, b), (i, name)


@torch.no_grad()
def test_batched_prefill_fills_the_fp8_cache_like_one_at_a_time(lm: LanguageModel) -> None:
    """Prompts of different lengths prefilled together (right-padded with junk) give each sequence
    the FP8 KV scales and values it gets prefilled alone (up to float32 rounding of batched matmuls)."""
    lens = [7, 19, 12]
    g = torch.Generator().manual_seed(1)
    embeds = [lm.backbone.embeddings(prompt_ids(n, seed=20 + i)) for i, n in enumerate(lens)]
    padded = 10 * torch.randn(len(lens), max(lens), embeds[0].shape[-1], generator=g)
    for i, e in enumerate(embeds):
        padded[i, : lens[i]] = e
    state = lm.allocate_state(3, 32, kv_cache_dtype="fp8")
    logits = prefill_embeds(lm, padded, state, torch.tensor([0, 1, 2]), torch.tensor(lens))
    attn = [i for i, kind in enumerate(lm.config.layer_types) if kind == "attention"]
    for i, (e, n) in enumerate(zip(embeds, lens)):
        alone = lm.allocate_state(1, 32, kv_cache_dtype="fp8")
        ref = prefill_embeds(lm, e[None], alone, torch.tensor([0]))
        assert max_diff(logits[i], ref[0]) < 1e-5
        for layer in attn:
            got, want = state.layer(layer), alone.layer(layer)
            for x in ("k", "v"):
                s_got, s_want = getattr(got, f"{x}_scale")[i], getattr(want, f"{x}_scale")[0]
                assert torch.allclose(s_got, s_want, rtol=1e-5, atol=0), (i, layer, x, s_got / s_want)
                q_got, q_want = getattr(got, x)[i], getattr(want, x)[0]
                assert torch.all(q_got[:, n:].view(torch.uint8) == 0)  # padding stored as zeros
                deq_got, deq_want = q_got[:, :n].float() * s_got[:, None, None], q_want[:, :n].float() * s_want[:, None, None]
                # at most one float8 step apart (in practice bit-equal)
                assert torch.allclose(deq_got, deq_want, rtol=0.125, atol=float(s_want.max()) * 2 ** -9)


def test_max_tokens_stop_strings_stop_ids_and_released_text(lm: LanguageModel) -> None:
    engine = Engine(lm, n_slots=2, max_len=128)
    ids = prompt_ids(12, seed=4)
    free = engine.generate([ids], SamplingParams(max_tokens=24, **NO_STOP))[0]
    assert free.output_tokens == 24 and free.finish_reason == "length"
    assert len(free.token_times) == 24 and free.token_times == sorted(free.token_times)
    assert free.text == TOK.decode(free.tokens)

    # a stop id: the first occurrence of the 6th token ends the output, without its text
    stop_tok = free.tokens[5]
    first = free.tokens.index(stop_tok)
    r = engine.generate([ids], SamplingParams(max_tokens=24, stop_token_ids=(stop_tok,)))[0]
    assert r.tokens == free.tokens[: first + 1] and r.finish_reason == "stop"
    assert r.text == TOK.decode(free.tokens[:first])

    # a stop string taken from the free text: output cut before its first occurrence
    text = free.text
    stop = next(text[i:i + 2] for i in range(3, len(text) - 1)
                if text[i:i + 2].strip() and text.find(text[i:i + 2]) >= 3)
    print("free text", repr(text), "stop", repr(stop))
    events: list[TokenEvent] = []
    h = engine.submit(ids, SamplingParams(max_tokens=24, stop=(stop, "\x00never"), **NO_STOP), on_token=events.append)
    engine.run_until_done()
    assert h.result.finish_reason == "stop"
    assert h.result.text == text[: text.find(stop)]
    # streamed pieces: one event per token, pieces add up to the final text, never past a stop
    assert len(events) == h.result.output_tokens and [e.index for e in events] == list(range(len(events)))
    assert "".join(e.text for e in events) == h.result.text
    assert engine.free_slots == 2


def test_top_p_filter_and_seeded_sampling_are_deterministic(lm: LanguageModel) -> None:
    probs = torch.tensor([0.1, 0.5, 0.15, 0.25])
    assert top_p_filter(probs, 0.5).tolist() == [0.0, 0.5, 0.0, 0.0]
    assert top_p_filter(probs, 0.6).tolist() == [0.0, 0.5, 0.0, 0.25]
    assert top_p_filter(probs, 1.0) is probs
    gens = [torch.Generator().manual_seed(0), None]
    logits = torch.log(probs)[None].repeat(2, 1)
    assert sample_rows(logits, [SamplingParams(temperature=1.0, top_p=0.5), SamplingParams()], gens) == [1, 1]

    engine = Engine(lm, n_slots=4, max_len=128)
    ids = [prompt_ids(10, seed=5), prompt_ids(19, seed=6)]
    sp = lambda seed: SamplingParams(max_tokens=16, temperature=1.0, top_p=0.9, seed=seed, **NO_STOP)  # noqa: E731
    a = engine.generate(ids, [sp(1), sp(2)])
    b = engine.generate(ids[::-1], [sp(2), sp(1)])  # other order, other slots
    c = engine.generate([ids[0]], [sp(1)])  # alone
    assert a[0].tokens == b[1].tokens == c[0].tokens and a[1].tokens == b[0].tokens
    d = engine.generate([ids[0]], [sp(99)])
    assert d[0].tokens != a[0].tokens  # the seed matters
    greedy = engine.generate([ids[0]], SamplingParams(max_tokens=16, **NO_STOP))[0]
    nucleus_of_one = engine.generate([ids[0]], SamplingParams(max_tokens=16, temperature=1.0, top_p=1e-6,
                                                             **NO_STOP))[0]
    assert nucleus_of_one.tokens == greedy.tokens
    assert all(t < TOK.vocab_size for r in a + b + d for t in r.tokens)  # never past the tokenizer


def test_slots_are_freed_and_reused_without_leaks(lm: LanguageModel) -> None:
    engine = Engine(lm, n_slots=2, max_len=64)
    prompts = [prompt_ids(8 + 3 * i, seed=20 + i) for i in range(5)]
    sp = SamplingParams(max_tokens=6, **NO_STOP)
    first = [r.tokens for r in engine.generate(prompts, sp)]
    assert engine.free_slots == 2 and not engine.running and not engine.waiting
    assert engine.state.lengths.tolist() == [0, 0]
    assert all(float(c.ssm.abs().sum()) == 0 for c in engine.state.caches.values() if hasattr(c, "ssm"))
    again = [r.tokens for r in engine.generate(prompts[::-1], sp)][::-1]
    assert again == first  # reused slots carry nothing over
    # cancel_all empties the engine mid-run
    for p in prompts:
        engine.submit(p, sp)
    engine.step()
    engine.cancel_all()
    assert engine.free_slots == 2 and not engine.busy and engine.state.lengths.tolist() == [0, 0]


@pytest.mark.parametrize("cuda_graphs,n_slots,kv_cache_dtype", [("off", 2, None), ("off", 2, "fp8"), ("on", 1, None)])
def test_a_slot_with_nan_left_in_its_cache_poisons_no_later_request(lm: LanguageModel, cuda_graphs: str, n_slots: int,
                                                                    kv_cache_dtype: str | None) -> None:
    """A request whose prompt holds NaN (a broken media file's encoder output) leaves NaN keys and
    values in its slot; the next, shorter request in that slot attends over a window past its own
    length (beside a longer row, or the static step's fixed window) with those entries masked, and
    still generates exactly what it generates alone."""
    short = prompt_ids(6, seed=31)
    (ref,) = Engine(lm, n_slots=1, max_len=128, kv_cache_dtype=kv_cache_dtype).generate(
        [short], SamplingParams(max_tokens=8, **NO_STOP))
    engine = Engine(lm, n_slots=n_slots, max_len=128, kv_cache_dtype=kv_cache_dtype, cuda_graphs=cuda_graphs)
    broken = lm.backbone.embeddings(prompt_ids(30, seed=32)).detach()
    broken[3] = float("nan")
    bad = engine.submit(broken, SamplingParams(max_tokens=1, **NO_STOP))
    if n_slots > 1:
        engine.submit(prompt_ids(40, seed=33), SamplingParams(max_tokens=20, **NO_STOP))
    engine.step()
    assert bad.done and engine.free_slots == 1
    h = engine.submit(short, SamplingParams(max_tokens=8, **NO_STOP))
    engine.run_until_done()
    assert h.slot == bad.slot and h.result.tokens == ref.tokens


def test_length_limits(lm: LanguageModel) -> None:
    engine = Engine(lm, n_slots=1, max_len=16)
    with pytest.raises(ValueError, match="max_len"):
        engine.submit(prompt_ids(16, seed=7))
    never = dict(stop_token_ids=(-1,))  # a stop id no step produces: the output runs into max_len
    r = engine.generate([prompt_ids(12, seed=7)], SamplingParams(max_tokens=50, **never))[0]
    assert r.finish_reason == "length" and r.output_tokens == 16 - 12 + 1  # the last one is never fed
    # without stop tokens (ignore_eos) a request is exactly max_tokens long, so one that cannot fit is
    # refused rather than cut short; one that just fits runs to its length
    with pytest.raises(ValueError, match=r"plus max_tokens 6 .* max_len 16"):
        engine.submit(prompt_ids(12, seed=7), SamplingParams(max_tokens=6, **NO_STOP))
    r = engine.generate([prompt_ids(12, seed=7)], SamplingParams(max_tokens=5, **NO_STOP))[0]
    assert r.finish_reason == "length" and r.output_tokens == 5
    with pytest.raises(ValueError, match="embeddings"):
        engine.submit(torch.zeros(3, 7))
    with pytest.raises(ValueError, match="max_tokens"):
        SamplingParams(max_tokens=0)
    with pytest.raises(ValueError, match="top_p"):
        SamplingParams(top_p=0.0)


def test_cancel_frees_the_slot_and_leaves_no_state_behind(lm: LanguageModel) -> None:
    """A client that goes away: cancelling a running and a waiting request frees the slot at once,
    and the next request in that slot generates exactly what it generates in a fresh engine."""
    engine = Engine(lm, n_slots=2, max_len=128)
    params = SamplingParams(max_tokens=30, **NO_STOP)
    a, b, c = (engine.submit(prompt_ids(9 + i, seed=10 + i), params) for i in range(3))
    engine.step()
    engine.step()
    assert (engine.free_slots, len(engine.waiting)) == (0, 1)
    slot_a = a.slot
    assert engine.cancel(a) and engine.cancel(c)
    assert engine.free_slots == 1 and not engine.waiting and int(engine.state.lengths[slot_a]) == 0
    fresh_ids = prompt_ids(17, seed=99)
    d = engine.submit(fresh_ids, SamplingParams(max_tokens=6, **NO_STOP))
    engine.run_until_done()
    assert a.result is None and c.result is None and b.result is not None and d.slot == slot_a
    (ref,) = Engine(lm, n_slots=1, max_len=128).generate([fresh_ids], SamplingParams(max_tokens=6, **NO_STOP))
    assert d.result.tokens == ref.tokens
    assert not engine.cancel(b) and not engine.cancel(a)  # finished or already gone: nothing to do
    assert engine.free_slots == 2
