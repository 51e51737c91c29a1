"""One switch for the inference fast paths, so that tests (and anyone debugging) can run the reference
computations on the same model and state.

The fast paths exist because a decode step of a small model is all per-op overhead (a few hundred
tiny ops per token), so they cut ops and copies, never change the math (equal up to fp32 rounding):

- `InferenceState.batch_index`: contiguous slots are read and written as views of the cache rows
  (no gather / scatter copies), and one token per row at a common position needs no attention mask;
- `Mamba2Mixer._step`: the one-token Mamba-2 update (conv as a weighted sum, `ssd_step`) instead of
  the chunked scan;
- `MoE.stacked_experts`: a small MoE on few tokens runs as two dense matmuls over its stacked
  routed-expert weights instead of a Python loop over experts; only without autograd and only while
  every routed expert is a plain `nn.Linear`;
- `MoE.grouped_experts`: otherwise the routed experts run grouped (assignments sorted by expert, one
  grouped call per projection, `kernels.grouped`), plain or quantized; the loop stays for autograd and
  for experts with forward hooks.

    with fastpath.reference_paths():   # everything through the general (reference) code
        logits = decode_step(model, tokens, state)

`static_shapes()` is the other switch: inside it (the graph-safe `decode_step_static`) a layer with a
data-dependent path takes its static-shape form instead, e.g. the MoE runs every routed expert on
every token with zero weight where not chosen (`MoE.routed_dense`) rather than looping over the
experts some token chose (`.unique().tolist()`, a host sync).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

ENABLED = True
STATIC = False


@contextmanager
def reference_paths() -> Iterator[None]:
    """Disable every fast path inside the block (process-wide)."""
    global ENABLED
    previous, ENABLED = ENABLED, False
    try:
        yield
    finally:
        ENABLED = previous


@contextmanager
def static_shapes() -> Iterator[None]:
    """Static-shape, host-sync-free forms of the data-dependent layer paths inside the block (process-wide)."""
    global STATIC
    previous, STATIC = STATIC, True
    try:
        yield
    finally:
        STATIC = previous
