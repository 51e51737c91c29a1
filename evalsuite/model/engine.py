"""Generation engine: continuous batching over a preallocated inference state.

The state (`model/state.py`) has ``n_slots`` rows — KV cache, Mamba conv and SSM state, one row per
sequence — allocated once. Requests wait in a queue; each `Engine.step`:

1. admits waiting requests into free slots and prefills them (prompt embeddings, right-padded into
   groups of similar length so that padding costs little), sampling each one's first token;
2. runs one decode step for every sequence that was already running: its last token in, one new
   token out, all slots in one batch (each at its own length);
3. retires sequences that hit a stop token, a stop string, ``max_tokens`` or the state's length,
   resetting their slots for the next requests.

So a request entering mid-run joins the running batch at the next step, and no slot or cache row is
ever allocated during generation. Sampling is greedy (``temperature == 0``) or temperature + top-p
with a per-request ``torch.Generator`` seeded from ``SamplingParams.seed``: a request's sampling does
not depend on what else is in the batch. Its logits may, in the last bits: a float32 matmul's
per-row result can change with the number of rows (CPU BLAS blocking), by 1e-6 to 1e-5 relative;
bf16 decoding absorbs that, but an fp8 recipe's activation rounding can magnify it into a different
pick between two near-tied tokens. Every generated token is reported to the request's
``on_token`` callback with its `time.perf_counter` time; text is released only when it can no longer
turn out to be the start of a stop string (as serving engines stream).

The small free functions `prefill_embeds`, `sample_ids` (`sample_rows`) and `top_p_filter` are the generation
primitives; `Engine` holds the queue and slot bookkeeping around them. Not thread-safe: one thread
drives ``submit`` / ``step``.

Decode on CUDA replays a captured step (``cuda_graphs="auto"``, `model/graphed.py`; for models
whose static step is cheap, see `Engine`): the step for the running slots is a CUDA graph per batch
bucket, greedy ids are taken on the device and read once per step; rows with a temperature are
sampled after the replay exactly as here. ``cuda_graphs="on"`` on a CPU runs that same
static-buffer step eagerly (its tokens equal the eager engine's), ``"off"`` keeps the eager
`decode_step` everywhere.
"""

from __future__ import annotations

import codecs
import itertools
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Callable, Literal, Sequence

import torch

from evalsuite.backend import PromptTooLong
from evalsuite.model.backbone import LanguageModel, decode_step
from evalsuite.model.graphed import GraphedDecoder, static_step_is_cheap
from evalsuite.model.state import InferenceState
from evalsuite.model.tokenizer import N_BYTES, ByteTokenizer

FinishReason = Literal["stop", "length"]
CudaGraphs = Literal["auto", "on", "off"]
ENGINE_VERSION = "reference-engine-1"
# Prompts admitted in one step are prefilled together while the padded size stays within this
# factor of their real tokens; otherwise they are split into groups of similar length.
PREFILL_PAD_FACTOR = 1.25


@dataclass(frozen=True)
class SamplingParams:
    """How to generate for one request.

    ``stop``: strings that end the output (cut before them); ``stop_token_ids``: ids that end it
    (not part of the text; None = the tokenizer's end-of-turn ids).
    """

    max_tokens: int = 64
    temperature: float = 0.0
    top_p: float = 1.0
    seed: int = 0
    stop: tuple[str, ...] = ()
    stop_token_ids: tuple[int, ...] | None = None
    require_room: bool = False  # refuse a prompt that leaves less room than max_tokens (else: cut at max_len)

    def __post_init__(self) -> None:
        if self.max_tokens < 1:
            raise ValueError(f"max_tokens must be >= 1, got {self.max_tokens}")
        if self.temperature < 0:
            raise ValueError(f"temperature must be >= 0, got {self.temperature}")
        if not 0.0 < self.top_p <= 1.0:
            raise ValueError(f"top_p must be in (0, 1], got {self.top_p}")
        if any(not isinstance(s, str) or not s for s in self.stop):
            raise ValueError(f"stop strings must be non-empty strings, got {list(self.stop)}")


def check_room(prompt_tokens: int, max_tokens: int, max_len: int, *, exact: bool, ignore_eos: bool = False) -> None:
    """Raise PromptTooLong when a prompt of ``prompt_tokens`` leaves no room for an output token in
    ``max_len`` positions, or, with ``exact``, less room than ``max_tokens``: cutting such an output
    short at max_len would pass off a shorter output as the one asked for (vLLM refuses it too). The
    last token is never fed, so a prompt of T leaves room for max_len - T + 1."""
    if prompt_tokens >= max_len:
        raise PromptTooLong(f"prompt of {prompt_tokens} tokens does not fit the engine's max_len {max_len} "
                            "(room is needed for at least one output token)")
    if exact and max_tokens > max_len - prompt_tokens + 1:
        what = "(no stop tokens: exactly that many)" if ignore_eos else f"(at most {max_len - prompt_tokens + 1} fit)"
        raise PromptTooLong(f"prompt of {prompt_tokens} tokens plus max_tokens {max_tokens} {what} does not fit "
                            f"the engine's max_len {max_len}")


@dataclass(frozen=True)
class TokenEvent:
    """One generated token: its id, the text it releases (may be '' while a stop string could still
    be forming, or more than one token's worth when held text is released), its perf_counter time."""

    request_id: int
    index: int
    token: int
    text: str
    time: float


@dataclass
class Result:
    """A finished request. ``tokens`` are all generated ids (a final stop token included);
    ``token_times`` are their perf_counter times; ``t_start`` is when the request was sent."""

    request_id: int
    tokens: list[int]
    text: str
    finish_reason: FinishReason
    prompt_tokens: int
    t_start: float
    token_times: list[float]

    @property
    def output_tokens(self) -> int:
        return len(self.tokens)

    @property
    def ttft_s(self) -> float:
        return self.token_times[0] - self.t_start

    @property
    def e2e_s(self) -> float:
        return self.token_times[-1] - self.t_start


TokenCallback = Callable[[TokenEvent], None]


@dataclass(eq=False)
class Handle:
    """A submitted request: ``result`` is set when it finishes. Engine bookkeeping lives here too."""

    id: int
    prompt: torch.Tensor  # [T, D] prompt embeddings
    params: SamplingParams
    on_token: TokenCallback | None
    t_start: float
    stop_ids: frozenset[int]
    generator: torch.Generator | None = None
    slot: int = -1
    prompt_len: int = 0
    length: int = 0  # positions of the slot consumed so far
    tokens: list[int] = field(default_factory=list)
    token_times: list[float] = field(default_factory=list)
    text: str = ""
    released: int = 0  # chars of `text` already given to on_token
    finish_reason: FinishReason | None = None
    result: Result | None = None
    _utf8: codecs.IncrementalDecoder = field(default_factory=lambda: codecs.getincrementaldecoder("utf-8")("replace"))

    @property
    def done(self) -> bool:
        return self.result is not None


# ---- generation primitives ----------------------------------------------------------------------
@torch.no_grad()
def prefill_embeds(model: LanguageModel, embeds: torch.Tensor, state: InferenceState, slots: torch.Tensor,
                   seq_lens: torch.Tensor | None = None) -> torch.Tensor:
    """Run prompt embeddings [B, T, D] (right-padded, real lengths ``seq_lens``) into ``slots``;
    logits [B, V] (fp32) of each row's last real token."""
    hidden = model.hidden_states(inputs_embeds=embeds, state=state, slots=slots, seq_lens=seq_lens)
    b, t = embeds.shape[:2]
    last = torch.full((b,), t - 1, device=hidden.device) if seq_lens is None else seq_lens.to(hidden.device) - 1
    return model.lm_head(hidden[torch.arange(b, device=hidden.device), last]).float()


def top_p_filter(probs: torch.Tensor, top_p: float) -> torch.Tensor:
    """probs [V] → probs with everything outside the nucleus zeroed (not renormalised): the smallest
    set of most likely tokens whose mass reaches ``top_p`` (the most likely token always stays)."""
    if top_p >= 1.0:
        return probs
    sorted_p, order = probs.sort(descending=True)
    keep = (sorted_p.cumsum(0) - sorted_p) < top_p  # mass strictly before a token is below top_p
    return torch.zeros_like(probs).scatter(0, order, sorted_p * keep)


def sample_ids(logits: torch.Tensor, params: Sequence[SamplingParams], generators: Sequence[torch.Generator | None],
               greedy: torch.Tensor | None = None) -> torch.Tensor:
    """One token per row of logits [B, V] (fp32), as ids [B] on the logits' device with nothing read on
    the host: greedy rows take ``greedy`` (default: the argmax), the others a temperature + top-p draw
    with that row's generator."""
    ids = logits.argmax(-1) if greedy is None else greedy.clone()
    for i, (p, gen) in enumerate(zip(params, generators)):
        if p.temperature != 0.0:
            probs = top_p_filter(torch.softmax(logits[i] / p.temperature, dim=-1), p.top_p)
            ids[i:i + 1] = torch.multinomial(probs, 1, generator=gen)
    return ids


def sample_rows(logits: torch.Tensor, params: Sequence[SamplingParams],
                generators: Sequence[torch.Generator | None]) -> list[int]:
    """`sample_ids` read on the host once."""
    return sample_ids(logits, params, generators).tolist()  # type: ignore[no-any-return]


def _prefill_groups(handles: list[Handle]) -> list[list[Handle]]:
    """Split prompts into groups whose right-padded size stays within PREFILL_PAD_FACTOR of their
    real token count (sorted by length, so similar lengths share a group)."""
    groups: list[list[Handle]] = []
    for h in sorted(handles, key=lambda h: h.prompt.shape[0]):
        if groups:
            g = groups[-1] + [h]
            padded = len(g) * h.prompt.shape[0]  # h is the longest so far
            if padded <= PREFILL_PAD_FACTOR * sum(x.prompt.shape[0] for x in g):
                groups[-1] = g
                continue
        groups.append([h])
    return groups


# ---- the engine ---------------------------------------------------------------------------------
class Engine:
    """Continuous batching over ``n_slots`` preallocated sequences of up to ``max_len`` positions.

    ``vocab_limit``: only ids below it are ever sampled (default: the tokenizer's vocabulary; the
    backbone's embedding table may be larger, and ids past the tokenizer have no text).
    ``cuda_graphs``: "auto" replays a captured decode step on CUDA when its dense MoE form costs no
    more than eager decode (`graphed.static_step_is_cheap`: the tiny model, not a 128-expert one)
    and decodes eagerly otherwise; "on" uses the static-buffer step on any device (captured on CUDA,
    eager on a CPU); "off" never does. ``compile_step``: that static-buffer step (on any device, with
    ``cuda_graphs`` "auto" or "on") goes through `torch.compile` first (`graphed.GraphedDecoder`):
    tens of seconds per batch bucket and KV window the first time, fewer and fused kernels after.
    """

    def __init__(self, model: LanguageModel, n_slots: int, max_len: int, kv_cache_dtype: str | None = None,
                 tokenizer: ByteTokenizer | None = None, vocab_limit: int | None = None,
                 cuda_graphs: CudaGraphs = "auto", compile_step: bool = False) -> None:
        if cuda_graphs not in ("auto", "on", "off"):
            raise ValueError(f"cuda_graphs must be 'auto', 'on' or 'off', got {cuda_graphs!r}")
        if compile_step and cuda_graphs == "off":
            raise ValueError("compile_step compiles the static-buffer decode step, which cuda_graphs='off' turns off")
        self.model = model
        self.tokenizer = tokenizer or ByteTokenizer()
        self.state = model.allocate_state(n_slots, max_len, kv_cache_dtype)
        self.n_slots, self.max_len, self.kv_cache_dtype = n_slots, max_len, kv_cache_dtype
        vocab = model.config.vocab_size
        self.vocab_limit = min(vocab, vocab_limit if vocab_limit is not None else self.tokenizer.vocab_size)
        on_cuda = self.state.lengths.device.type == "cuda"
        use_graphs = (cuda_graphs == "on" or compile_step
                      or (cuda_graphs == "auto" and on_cuda and static_step_is_cheap(model, n_slots)))
        self.decoder = GraphedDecoder(model, self.state, self.vocab_limit, compile=compile_step) if use_graphs else None
        self.free: list[int] = list(range(n_slots))
        self.waiting: deque[Handle] = deque()
        self.running: dict[int, Handle] = {}  # slot -> handle
        self._ids = itertools.count()

    # ---- queue --------------------------------------------------------------------------------
    @property
    def busy(self) -> bool:
        return bool(self.waiting or self.running)

    @property
    def free_slots(self) -> int:
        return len(self.free)

    def submit(self, prompt: torch.Tensor, params: SamplingParams | None = None,
               on_token: TokenCallback | None = None, t_start: float | None = None) -> Handle:
        """Queue a prompt: embeddings [T, D] (or [1, T, D]), or token ids [T] (embedded here).
        ``t_start``: when the request was sent (perf_counter; default now), the origin of its TTFT."""
        t0 = time.perf_counter() if t_start is None else t_start
        params = params or SamplingParams()
        embeds = self._as_embeds(prompt)
        check_room(embeds.shape[0], params.max_tokens, self.max_len,
                   exact=params.stop_token_ids == () or params.require_room, ignore_eos=params.stop_token_ids == ())
        stop = params.stop_token_ids if params.stop_token_ids is not None else self.tokenizer.stop_ids
        gen = None
        if params.temperature > 0:
            gen = torch.Generator(device=embeds.device).manual_seed(int(params.seed))
        handle = Handle(next(self._ids), embeds, params, on_token, t0, frozenset(stop), gen)
        self.waiting.append(handle)
        return handle

    def _as_embeds(self, prompt: torch.Tensor) -> torch.Tensor:
        d = self.model.config.hidden_size
        if prompt.dim() == 3 and prompt.shape[0] == 1:
            prompt = prompt[0]
        if prompt.dim() == 1 and not prompt.dtype.is_floating_point:
            if prompt.numel() == 0 or int(prompt.min()) < 0 or int(prompt.max()) >= self.model.config.vocab_size:
                raise ValueError(f"prompt ids: expected a non-empty [T] of ids in [0, {self.model.config.vocab_size})")
            with torch.no_grad():
                return self.model.backbone.embeddings(prompt.to(self.model.backbone.embeddings.weight.device))
        if prompt.dim() != 2 or prompt.shape[-1] != d or prompt.shape[0] == 0:
            raise ValueError(f"prompt: expected embeddings [T>0, {d}] or token ids [T], got "
                             f"{prompt.dtype} {tuple(prompt.shape)}")
        return prompt

    # ---- stepping -----------------------------------------------------------------------------
    @torch.no_grad()
    def step(self) -> list[Result]:
        """Admit + prefill waiting requests, decode one token for the others; returns finished results."""
        decoding = [self.running[s] for s in sorted(self.running)]
        admitted: list[Handle] = []
        while self.waiting and self.free:
            h = self.waiting.popleft()
            h.slot = self.free.pop(0)
            self.running[h.slot] = h
            admitted.append(h)
        for group in _prefill_groups(admitted):
            self._prefill(group)
        if decoding:
            self._decode(decoding)
        return self._retire()

    def run_until_done(self) -> list[Result]:
        """Step until nothing is waiting or running; results in completion order."""
        out: list[Result] = []
        while self.busy:
            out.extend(self.step())
        return out

    def generate(self, prompts: Sequence[torch.Tensor], params: SamplingParams | Sequence[SamplingParams] | None = None
                 ) -> list[Result]:
        """Submit ``prompts`` (see `submit`), run to completion, results in input order."""
        plist = list(params) if isinstance(params, Sequence) else [params or SamplingParams()] * len(prompts)
        if len(plist) != len(prompts):
            raise ValueError(f"generate: {len(prompts)} prompts but {len(plist)} sampling params")
        handles = [self.submit(p, sp) for p, sp in zip(prompts, plist)]
        self.run_until_done()
        return [h.result for h in handles]  # type: ignore[misc]

    def cancel_all(self) -> None:
        """Drop every waiting and running request (no results) and reset their slots: the engine is
        empty again, e.g. after an error in the middle of a batch."""
        self.waiting.clear()
        if self.running:
            self.state.reset(sorted(self.running))
            self.free.extend(self.running)
            self.running.clear()
            self.free.sort()

    def cancel(self, handle: Handle) -> bool:
        """Drop one request, waiting or running, without a result, and reset its slot for the next
        request (a client that went away). False when it had already finished or is not here."""
        if handle.done:
            return False
        try:
            self.waiting.remove(handle)
            return True
        except ValueError:
            pass
        if self.running.get(handle.slot) is not handle:
            return False
        del self.running[handle.slot]
        self.state.reset([handle.slot])
        self.free.append(handle.slot)
        self.free.sort()
        handle.generator = None
        return True

    def _prefill(self, group: list[Handle]) -> None:
        lens = [h.prompt.shape[0] for h in group]
        t = max(lens)
        d = group[0].prompt.shape[1]
        embeds = group[0].prompt.new_zeros(len(group), t, d)  # [B, T, D], right-padded
        for i, h in enumerate(group):
            embeds[i, : lens[i]] = h.prompt
        slots = torch.tensor([h.slot for h in group], device=self.state.lengths.device)
        seq_lens = None if min(lens) == t else torch.tensor(lens, device=self.state.lengths.device)
        logits = prefill_embeds(self.model, embeds, self.state, slots, seq_lens)
        for h, n in zip(group, lens):
            h.length = n
            h.prompt_len = n
            h.prompt = h.prompt[:0]  # the prompt now lives in the state; drop the embeddings
        self._sample_and_emit(group, logits)

    def _decode(self, handles: list[Handle]) -> None:
        if self.decoder is not None:
            return self._decode_static(handles)
        device = self.state.lengths.device
        tokens = torch.tensor([h.tokens[-1] for h in handles], device=device)
        slots = torch.tensor([h.slot for h in handles], device=device)
        logits = decode_step(self.model, tokens, self.state, slots)  # [B, V]
        for h in handles:
            h.length += 1
        self._sample_and_emit(handles, logits)

    def _decode_static(self, handles: list[Handle]) -> None:
        """The decode step through `GraphedDecoder`: greedy ids come from the device; rows with a
        temperature are sampled from the step's logits as `_sample_and_emit` would (same tokens)."""
        assert self.decoder is not None
        params = [h.params for h in handles]
        sampler = None
        if any(p.temperature > 0 for p in params):  # drawn on the device from the step's logits, read with the rest
            generators = [h.generator for h in handles]

            def sampler(logits: torch.Tensor, greedy: torch.Tensor) -> torch.Tensor:
                return sample_ids(logits, params, generators, greedy)

        ids, _ = self.decoder.step([h.tokens[-1] for h in handles], [h.slot for h in handles],
                                   [h.length for h in handles], sampler)
        for h in handles:
            h.length += 1
        now = time.perf_counter()
        for h, tok in zip(handles, ids):
            self._emit(h, tok, now)

    def _sample_and_emit(self, handles: list[Handle], logits: torch.Tensor) -> None:
        if self.vocab_limit < logits.shape[-1]:
            logits[:, self.vocab_limit:] = float("-inf")
        tokens = sample_rows(logits, [h.params for h in handles], [h.generator for h in handles])
        now = time.perf_counter()
        for h, tok in zip(handles, tokens):
            self._emit(h, tok, now)

    def _emit(self, h: Handle, token: int, now: float) -> None:
        """Record one token for ``h``, update its text, decide whether it is finished, release text."""
        h.tokens.append(token)
        h.token_times.append(now)
        p = h.params
        if token in h.stop_ids:
            h.finish_reason = "stop"
        else:
            if token < N_BYTES:
                h.text += h._utf8.decode(bytes([token]))
            else:  # a special or location token: it ends a pending byte sequence; a location reads as its place
                h.text += h._utf8.decode(b"", final=True)
                h._utf8.reset()
                if self.tokenizer.is_location(token):
                    h.text += self.tokenizer.location_text(token)
            cut = _find_stop(h.text, p.stop, h.released)
            if cut is not None:
                h.text, h.finish_reason = h.text[:cut], "stop"
            elif len(h.tokens) >= p.max_tokens or h.length >= self.max_len:
                h.finish_reason = "length"
        if h.finish_reason is not None:
            if h.finish_reason == "length" or token in h.stop_ids:
                h.text += h._utf8.decode(b"", final=True)  # flush a dangling partial character
            end = len(h.text)
        else:
            end = len(h.text) - _held_back(h.text, p.stop)
        piece = h.text[h.released:end]
        h.released = max(h.released, end)
        if h.on_token is not None:
            h.on_token(TokenEvent(h.id, len(h.tokens) - 1, token, piece, now))

    def _retire(self) -> list[Result]:
        done: list[Result] = []
        for slot in [s for s, h in self.running.items() if h.finish_reason is not None]:
            h = self.running.pop(slot)
            assert h.finish_reason is not None
            h.result = Result(h.id, h.tokens, h.text, h.finish_reason, h.prompt_len, h.t_start, h.token_times)
            self.state.reset([slot])
            self.free.append(slot)
            h.generator = None
            done.append(h.result)
        self.free.sort()
        return done


def _find_stop(text: str, stops: Sequence[str], start: int) -> int | None:
    """Index of the earliest stop string in ``text`` that ends after ``start`` (older text was
    already checked), or None."""
    best: int | None = None
    for s in stops:
        i = text.find(s, max(0, start - len(s) + 1))
        if i >= 0 and (best is None or i < best):
            best = i
    return best


def _held_back(text: str, stops: Sequence[str]) -> int:
    """Length of the longest suffix of ``text`` that is a proper prefix of a stop string."""
    held = 0
    for s in stops:
        for k in range(min(len(s) - 1, len(text)), held, -1):
            if text.endswith(s[:k]):
                held = k
                break
    return held


__all__ = ["Engine", "SamplingParams", "Result", "Handle", "TokenEvent", "prefill_embeds", "sample_ids", "sample_rows",
           "top_p_filter", "ENGINE_VERSION"]
