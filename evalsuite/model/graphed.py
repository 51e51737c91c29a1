"""Decode without launch overhead: the engine's decode step, captured as a CUDA graph and replayed.

Why: a decode step of a small model is a few hundred tiny kernels, and eager PyTorch pays a Python
dispatch and a launch for each, plus a host sync wherever the step reads a device value (slot
lengths, the MoE's chosen experts, the token-range check). A CUDA graph records the kernels of one
step once and replays them with one launch; it needs a step that never syncs and whose shapes do not
depend on the data: `decode_step_static` (checked on the CPU by `graph_safety.check_capturable`).

How `GraphedDecoder` runs a step for r sequences:

- Static buffers: inputs [3, B] long (token ids, slots, active flags) and outputs (logits [B, V]
  fp32 with the ids past ``vocab_limit`` at -inf, greedy ids [B]). B is a batch bucket (1, 2, 4, ...,
  ``n_slots``): the smallest that holds r, padded with inactive rows on other slots (computed, and
  their slots left exactly as they were). The KV window is a power of two from `MIN_KV_WINDOW` (capped at
  the state's ``max_len``) above every row's length, so attention does not scan the whole cache of a
  long ``max_len`` at every step. One graph per (bucket, window), captured on first use.
- Capture: a warm-up on a side stream first (lazily built caches such as the MoE's stacked weights,
  Triton autotuning, cuBLAS workspaces), with every row inactive so that no slot changes, then
  `torch.cuda.graph`. Each graph keeps its own memory pool (graphs are replayed in any order).
- A step: the host writes the inputs into a pinned buffer, one asynchronous host-to-device copy,
  one replay, one device-to-host read of the ids.
- Sampling: greedy rows (``temperature == 0``) take the argmax computed in the graph. Rows with a
  temperature are drawn after the replay, eagerly but on the device, from the graph's logits with
  their request's own ``torch.Generator`` (the engine's ``sampler``, `engine.sample_ids`): their tokens
  equal the eager engine's, and the step still reads the ids once. An in-graph sampler would need a
  counter-based generator and new streams of random numbers.
- Cost: the static step runs every routed expert on every row (`MoE.routed_dense`, when the stacked
  form does not apply); `static_step_is_cheap` says whether that stays within what the eager fast
  path already spends (the stacked-experts bound, `moe.DENSE_MAX_MACS`): the engine's "auto" captures
  only then (the tiny model, not a 128-expert one, whose eager loop reads only the chosen experts).
- Weights are captured by address: an in-place write to any parameter or buffer (a new version,
  e.g. `load_state_dict`) drops the graphs, which are captured again on the next step; modules
  swapped after the first step (e.g. quantizing a model an engine already decoded with) need `reset`.

On a CPU the same buffers and step run eagerly (nothing to capture): the engine's tokens are then
those of the graph path up to where only CUDA can differ (its kernels), which the CUDA test covers.
A capture that fails (a warning says why) leaves the decoder running the same step eagerly.

``compile=True`` runs the step through `torch.compile` (``fullgraph``, static shapes: one compile
per (bucket, window), each tens of seconds) before capturing it. A graph replays every kernel of
the step, and the static step is a few hundred small ones (the tiny bf16 model: 348 non-view aten
ops, a quarter of them dtype casts and the norms' arithmetic); Inductor fuses the elementwise chains
into far fewer kernels, which is what a replay then launches. Caches that the step reads (the
stacked experts, quantized layers' dequantized weights) are filled by an eager call first and read
as they are while compiling; a weight written in place drops them (the version check below, on
with compile as with capture) and the next step fills them again. A compile that fails (a warning
says why) leaves the step uncompiled. Every compile is an entry in dynamo's cache of the one step
function, shared by all decoders of the process (three recipes in a benchmark) and grown by weight
writes, and dynamo allows 8 by default: with ``fullgraph`` the ninth (bucket, window) would raise and
drop compiling for every step. So the compiled step runs with room for `COMPILE_LIMIT` of them,
within that call only (dynamo's global settings are left as they are).
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from operator import attrgetter

import torch

from evalsuite.model.backbone import LanguageModel, decode_step_static
from evalsuite.model.moe import DENSE_MAX_MACS, MoE
from evalsuite.model.state import InferenceState

MIN_KV_WINDOW = 64  # smallest attention window a step is built for (positions)
WARMUP_CALLS = 2  # eager calls on a side stream before a capture
COMPILE_LIMIT = 1024  # compiles of the step function allowed while a compiled step runs (dynamo: 8)
# a tensor's in-place write counter and where its data lives: `t.data = other` (grouped stacking moves
# expert weights into one stacked tensor that way) keeps the counter but moves the data, and a graph
# captured before it would read the freed buffer
_VERSION = attrgetter("_version")


def _where_and_version(t: torch.Tensor) -> tuple[int, int]:
    return _VERSION(t), t.data_ptr()


@dataclass
class _Step:
    """One (bucket, window)'s buffers and, on CUDA, its captured graph."""

    inputs: torch.Tensor  # [3, B] long on the state's device: token ids, slots, active (0/1)
    host: torch.Tensor  # [3, B] long staging buffer (pinned on CUDA; on a CPU the inputs themselves)
    host_np: object = None  # numpy view of `host`, written row by row each step
    graph: torch.cuda.CUDAGraph | None = None
    logits: torch.Tensor | None = None  # [B, V] fp32, the graph's output buffer
    ids: torch.Tensor | None = None  # [B] long, greedy ids


def static_step_is_cheap(model: LanguageModel, rows: int) -> bool:
    """Whether every MoE of ``model`` may run all its routed experts on ``rows`` tokens within the
    eager stacked-experts bound, so that the static step costs no more expert work than eager decode."""
    return all(rows * m._dense_macs_per_token <= DENSE_MAX_MACS for m in model.modules() if isinstance(m, MoE))


def buckets_for(n_slots: int) -> list[int]:
    """Batch sizes a step is built for: powers of two below ``n_slots``, and ``n_slots``."""
    return sorted({1 << i for i in range(n_slots.bit_length()) if 1 << i < n_slots} | {n_slots})


class GraphedDecoder:
    """The engine's decode step on static buffers, captured per (batch bucket, KV window) as a CUDA
    graph when ``capture`` (default: the state is on CUDA), else run eagerly on the same buffers."""

    def __init__(self, model: LanguageModel, state: InferenceState, vocab_limit: int,
                 capture: bool | None = None, compile: bool = False) -> None:
        self.model, self.state, self.vocab_limit = model, state, vocab_limit
        self.device = state.lengths.device
        self.capture = self.device.type == "cuda" if capture is None else capture
        if self.capture and self.device.type != "cuda":
            raise ValueError(f"GraphedDecoder: CUDA graphs need the state on a CUDA device, got {self.device}")
        self.compiled = compile
        self._step_fn = compiled_step() if compile else decode_step_static
        self.buckets = buckets_for(state.n_slots)
        self._steps: dict[tuple[int, int], _Step] = {}
        self._tensors = list(model.parameters()) + list(model.buffers())
        self._counted: list[torch.Tensor] | None = None
        self._uncounted = False
        self._versions = self._weight_versions()
        self.captures = 0  # graphs captured so far (tests and benchmarks read it)

    def reset(self) -> None:
        """Drop every captured graph and buffer (the next steps capture again)."""
        self._steps.clear()
        self._tensors = list(self.model.parameters()) + list(self.model.buffers())
        self._counted = None
        self._versions = self._weight_versions()

    @torch.no_grad()
    def prebuild(self, rows: int, shortest: int, longest: int) -> int:
        """Build now every step a load can reach that has at most ``rows`` sequences, each of
        ``shortest``..``longest`` positions: each bucket up to ``bucket(rows)`` with each window from
        ``window(shortest)`` to ``window(longest)`` (a capture, or a compile, per new one), so that
        none is built inside a measured step. Returns how many were built."""
        if (self.capture or self.compiled) and self._weight_versions() != self._versions:
            self.reset()
        rows = max(1, min(rows, self.state.n_slots))
        longest = min(max(longest, shortest), self.state.max_len - 1)
        windows, top = [self.window(shortest)], self.window(longest)
        while windows[-1] < top:
            windows.append(min(windows[-1] * 2, self.state.max_len))
        built = 0
        for b in (x for x in self.buckets if x <= self.bucket(rows)):
            for w in windows:
                if (b, w) not in self._steps:
                    with _compile_room() if self.compiled else contextlib.nullcontext():
                        self._steps[(b, w)] = self._build(b, w)
                    built += 1
        return built

    def bucket(self, rows: int) -> int:
        return next(b for b in self.buckets if b >= rows)

    def window(self, longest: int) -> int:
        """The KV window for rows of at most ``longest`` positions so far (each writes at its length)."""
        w = MIN_KV_WINDOW
        while w <= longest:
            w *= 2
        return min(w, self.state.max_len)

    @torch.no_grad()
    def step(self, tokens: Sequence[int], slots: Sequence[int], lengths: Sequence[int],
             sampler: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = None
             ) -> tuple[list[int], torch.Tensor]:
        """One token for each row: ``tokens[i]`` goes into slot ``slots[i]`` (distinct), which holds
        ``lengths[i]`` positions (below the state's max_len). Returns (ids, logits [r, V] fp32 with ids
        past vocab_limit at -inf); the logits are a view of the step's output buffer, valid until the
        next step. The ids are the greedy ones, or ``sampler(logits, greedy ids [r])``'s (on the
        device, read with one host read). The state's lengths advance by one for these slots."""
        r = len(tokens)
        if not 0 < r <= self.state.n_slots or len(slots) != r or len(lengths) != r:
            raise ValueError(f"GraphedDecoder.step: expected 1..{self.state.n_slots} rows of tokens, slots and "
                             f"lengths, got {len(tokens)}, {len(slots)}, {len(lengths)}")
        if max(lengths) >= self.state.max_len:
            raise ValueError(f"GraphedDecoder.step: a row at length {max(lengths)} has no room (max_len "
                             f"{self.state.max_len})")
        if (self.capture or self.compiled) and self._weight_versions() != self._versions:
            self.reset()  # a weight was written in place: the stacked copies in the graphs are stale
        b, kv_len = self.bucket(r), self.window(max(lengths))
        s = self._steps.get((b, kv_len))
        fresh = s is None  # a new (bucket, window), or the first since a reset: a compiled step compiles now
        room = _compile_room() if fresh and self.compiled else contextlib.nullcontext()
        if s is None:
            with room:
                s = self._steps[(b, kv_len)] = self._build(b, kv_len)
        taken = set(slots)
        pad = [x for x in range(self.state.n_slots) if x not in taken][: b - r]  # inactive rows' slots
        host = s.host_np
        host[0, :r], host[0, r:] = tokens, 0
        host[1, :r], host[1, r:] = slots, pad
        host[2, :r], host[2, r:] = 1, 0
        if s.host is not s.inputs:
            s.inputs.copy_(s.host, non_blocking=True)  # pinned: no wait (the previous step's read ended its use)
        if s.graph is not None:
            s.graph.replay()
            logits, ids = s.logits, s.ids
        else:
            with room:
                logits, ids = self._forward(s, kv_len)
        assert logits is not None and ids is not None
        out = ids[:r] if sampler is None else sampler(logits[:r], ids[:r])
        return out.tolist(), logits[:r]  # the one device-to-host read of the step

    def _forward(self, s: _Step, kv_len: int) -> tuple[torch.Tensor, torch.Tensor]:
        tokens, slots, active = s.inputs  # [B] each
        try:
            logits = self._step_fn(self.model, tokens, self.state, slots, active.bool(), kv_len)  # [B, V]
        except Exception as exc:
            if self._step_fn is decode_step_static:
                raise
            # compiling failed (before the step ran: the state is unchanged): the same step uncompiled
            warnings.warn(f"GraphedDecoder: torch.compile of the decode step failed, running it uncompiled: "
                          f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}", RuntimeWarning,
                          stacklevel=4)
            self._step_fn, self.compiled = decode_step_static, False
            logits = decode_step_static(self.model, tokens, self.state, slots, active.bool(), kv_len)
        if self.vocab_limit < logits.shape[-1]:
            logits[:, self.vocab_limit:] = float("-inf")
        return logits, logits.argmax(-1)

    def _build(self, b: int, kv_len: int) -> _Step:
        inputs = torch.zeros(3, b, dtype=torch.long, device=self.device)
        host = inputs if self.device.type == "cpu" else torch.zeros(3, b, dtype=torch.long).pin_memory()
        s = _Step(inputs=inputs, host=host, host_np=host.numpy())
        if self.compiled:  # fill the caches the compiled step reads: every row inactive, no slot changes
            decode_step_static(self.model, inputs[0], self.state, torch.arange(b, device=self.device),
                               inputs[2].bool(), kv_len)
        if self.capture:
            try:
                self._capture(s, b, kv_len)
            except RuntimeError as exc:  # e.g. a kernel library that syncs: decode eagerly rather than fail
                warnings.warn(f"GraphedDecoder: CUDA graph capture failed, decoding without graphs from now on: "
                              f"{str(exc).splitlines()[0] if str(exc) else type(exc).__name__}", RuntimeWarning,
                              stacklevel=3)
                self.capture = False
                self._steps.clear()  # keep no step whose graph might be half made
        return s

    def _capture(self, s: _Step, b: int, kv_len: int) -> None:
        s.inputs[1] = torch.arange(b, device=self.device)  # warm-up rows: distinct slots, all inactive
        side = torch.cuda.Stream(self.device)
        side.wait_stream(torch.cuda.current_stream(self.device))
        with torch.cuda.stream(side):
            for _ in range(WARMUP_CALLS):
                self._forward(s, kv_len)
        torch.cuda.current_stream(self.device).wait_stream(side)
        graph = torch.cuda.CUDAGraph()
        # thread_local: other threads (the backend's media workers) may use CUDA while this one captures
        with torch.cuda.graph(graph, capture_error_mode="thread_local"):
            logits, ids = self._forward(s, kv_len)
        s.graph, s.logits, s.ids = graph, logits, ids
        self.captures += 1

    def _weight_versions(self) -> tuple[int, ...] | None:
        """In-place write counters and data addresses of every parameter and buffer, read every step (a
        few microseconds); None when some are inference tensors, which count no writes (theirs cannot
        be seen)."""
        if self._counted is None:
            self._counted = [t for t in self._tensors if not t.is_inference()]
            self._uncounted = len(self._counted) < len(self._tensors)
        return None if self._uncounted else tuple(map(_where_and_version, self._counted))


def _compile_room() -> contextlib.AbstractContextManager[None]:
    """Dynamo's recompile limits raised to at least `COMPILE_LIMIT` for the calls inside (see the
    module docstring): one compile per (bucket, window) of every decoder in the process."""
    import torch._dynamo

    cfg = torch._dynamo.config
    return cfg.patch(recompile_limit=max(cfg.recompile_limit, COMPILE_LIMIT),  # type: ignore[no-any-return]
                     accumulated_recompile_limit=max(cfg.accumulated_recompile_limit, COMPILE_LIMIT))


def compiled_step():  # type: ignore[no-untyped-def]
    """`decode_step_static` through `torch.compile` (whole graph, static shapes)."""
    return torch.compile(decode_step_static, fullgraph=True, dynamic=False)


__all__ = ["GraphedDecoder", "compiled_step", "buckets_for", "static_step_is_cheap", "MIN_KV_WINDOW", "COMPILE_LIMIT"]
