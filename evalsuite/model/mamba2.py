"""Mamba-2 mixer (the `M` layers): selective state space model with a chunked scan.

Per head h (state N x head dim P), a token t updates and reads the state as

    S_t = exp(dt_t * A_h) * S_{t-1} + dt_t * x_t ⊗ B_t          S: [P, N]
    y_t = S_t · C_t + D_h * x_t

with dt_t = softplus(raw_dt_t + dt_bias) clamped from below, B/C shared by the heads of a group.

Prefill uses the SSD ("state space duality") chunked algorithm, `ssd_chunked_scan`; decode uses the
O(1) recurrence, `ssd_step`; `ssd_sequential_ref` is the plain loop both are tested against.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from evalsuite.model import fastpath
from evalsuite.model.config import BackboneConfig
from evalsuite.model.state import BatchIndex, MambaCache


def ssd_step(
    state: torch.Tensor, x: torch.Tensor, dt: torch.Tensor, A: torch.Tensor, B: torch.Tensor, C: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """One recurrent step for a single token: O(1) in the sequence length.

    state [b, h, p, n] (fp32), x [b, h, p], dt [b, h], A [h], B and C [b, g, n].
    Returns (y [b, h, p] fp32 without the D skip, new state [b, h, p, n] fp32).
    """
    b, h, p = x.shape
    g, n = B.shape[1:]
    r = h // g  # heads split as (group, head-in-group): B and C broadcast instead of being repeated per head
    dt = dt.float().reshape(b, g, r)
    decay = torch.exp(dt * A.float().view(g, r))  # [b, g, r]
    dt_x = dt[..., None] * x.float().reshape(b, g, r, p)  # [b, g, r, p]
    dBx = dt_x[..., None] * B.float()[:, :, None, None, :]  # [b, g, r, p, n]
    state = torch.addcmul(dBx, state.reshape(b, g, r, p, n), decay[..., None, None])
    y = (state * C.float()[:, :, None, None, :]).sum(-1)  # sum_n S[..., n] C[n]: [b, g, r, p]
    return y.view(b, h, p), state.view(b, h, p, n)


def ssd_sequential_ref(
    x: torch.Tensor,
    dt: torch.Tensor,
    A: torch.Tensor,
    B: torch.Tensor,
    C: torch.Tensor,
    initial_state: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Reference scan: `ssd_step` applied token by token. Same contract as `ssd_chunked_scan`."""
    b, t, h, p = x.shape
    state = (
        torch.zeros(b, h, p, B.shape[-1], dtype=torch.float32, device=x.device)
        if initial_state is None
        else initial_state.float()
    )
    ys = []
    for i in range(t):
        y, state = ssd_step(state, x[:, i], dt[:, i], A, B[:, i], C[:, i])
        ys.append(y)
    return torch.stack(ys, dim=1), state


def ssd_chunked_scan(
    x: torch.Tensor,
    dt: torch.Tensor,
    A: torch.Tensor,
    B: torch.Tensor,
    C: torch.Tensor,
    chunk_size: int,
    initial_state: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Chunked SSD scan: the whole prefill in O(T * Q) work for chunk size Q.

    x [b, t, h, p], dt [b, t, h] (already discretised: >= 0, and 0 on padding), A [h] (< 0),
    B and C [b, t, g, n], initial_state [b, h, p, n] or None.
    Returns (y [b, t, h, p] fp32 without the D skip, final state [b, h, p, n] fp32).

    Rationale. Unrolling the recurrence gives y_l = sum_{s<=l} (C_l·B_s) exp(a_{s+1}+...+a_l) dt_s x_s
    with a = dt*A: a causal, decayed "attention" whose matrix is semiseparable. Computing it whole
    costs O(T²); running the recurrence token by token costs T sequential steps. SSD cuts the
    sequence into chunks of Q tokens and splits the matrix into
      1. diagonal blocks (token pairs in the same chunk): a masked Q x Q attention per chunk,
         batched over all chunks at once -- O(T * Q);
      2. off-diagonal blocks, which are low rank through the state: each chunk's own contribution
         to its end state (sum over its tokens), a short recurrence that carries the state across
         chunk boundaries (T/Q sequential steps on [h, p, n] states), and the read-out of each
         chunk's start state by its tokens (C_l · S_start, decayed to position l).
    Decays are handled as differences of within-chunk cumulative sums of a (all <= 0 where they are
    exponentiated), so nothing overflows. Padding the last chunk with dt = 0 leaves the state
    untouched (exp(0) = 1 and no input), so the final state is exact for any length.
    """
    b, t, h, p = x.shape
    g, n = B.shape[-2:]
    r = h // g  # heads per group
    q = chunk_size
    pad = (-t) % q
    nc = (t + pad) // q
    # [b, t, ...] -> [b, t + pad, ...]: zeros on the time axis (dim 1)
    x = F.pad(x.float(), (0, 0, 0, 0, 0, pad))
    dt = F.pad(dt.float(), (0, 0, 0, pad))
    B = F.pad(B.float(), (0, 0, 0, 0, 0, pad))
    C = F.pad(C.float(), (0, 0, 0, 0, 0, pad))
    # heads split as (group, head-in-group) so B/C are never repeated per head
    x = x.view(b, nc, q, g, r, p)
    dt = dt.view(b, nc, q, g, r)
    B = B.view(b, nc, q, g, n)
    C = C.view(b, nc, q, g, n)

    a_cum = torch.cumsum(dt * A.float().view(g, r), dim=2)  # [b, c, q, g, r] log decay from chunk start
    x_dt = x * dt[..., None]  # [b, c, q, g, r, p]

    # 1. diagonal blocks: y_l += sum_{s<=l} (C_l·B_s) exp(a_cum_l - a_cum_s) x_dt_s
    causal = torch.ones(q, q, dtype=torch.bool, device=x.device).tril().view(q, q, 1, 1)
    seg = a_cum[:, :, :, None] - a_cum[:, :, None, :]  # [b, c, l, s, g, r]
    decay = torch.exp(seg.masked_fill(~causal, float("-inf")))
    scores = torch.einsum("bclgn,bcsgn->bclsg", C, B)  # [b, c, l, s, g]
    y = torch.einsum("bclsgr,bcsgrp->bclgrp", scores[..., None] * decay, x_dt)

    # 2. each chunk's contribution to its own end state: sum_s exp(a_cum_last - a_cum_s) B_s ⊗ x_dt_s
    to_end = torch.exp(a_cum[:, :, -1:] - a_cum)  # [b, c, q, g, r]
    chunk_states = torch.einsum("bcsgn,bcsgrp->bcgrpn", B, x_dt * to_end[..., None])  # [b, c, g, r, p, n]

    # 3. carry the state across chunk boundaries: nc sequential steps
    chunk_decay = torch.exp(a_cum[:, :, -1])  # [b, c, g, r]
    state = (
        torch.zeros(b, g, r, p, n, dtype=torch.float32, device=x.device)
        if initial_state is None
        else initial_state.float().reshape(b, g, r, p, n)  # [b, h, p, n] -> [b, g, r, p, n]
    )
    starts = []
    for c in range(nc):
        starts.append(state)
        state = state * chunk_decay[:, c, :, :, None, None] + chunk_states[:, c]
    start_states = torch.stack(starts, dim=1)  # [b, c, g, r, p, n]

    # 4. off-diagonal blocks: each token reads its chunk's start state, decayed to its position
    y = y + torch.einsum("bclgn,bcgrpn->bclgrp", C, start_states) * torch.exp(a_cum)[..., None]

    y = y.reshape(b, nc * q, h, p)[:, :t]  # [b, c, q, g, r, p] -> [b, t, h, p]
    return y, state.reshape(b, h, p, n)


class GatedRMSNorm(nn.Module):
    """RMSNorm of y * silu(z), normalised per group of channels (Mamba-2's output norm), in fp32."""

    def __init__(self, size: int, group_size: int, eps: float) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(size))
        self.group_size = group_size
        self.eps = eps

    def forward(self, y: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        y = y.float() * F.silu(z.float())
        grouped = y.view(*y.shape[:-1], -1, self.group_size)  # [..., I] -> [..., groups, I/groups]
        grouped = F.rms_norm(grouped, (self.group_size,), eps=self.eps)
        return self.weight.float() * grouped.view(y.shape)


class Mamba2Mixer(nn.Module):
    """in_proj -> (z | x,B,C | dt); causal depthwise conv + silu on x,B,C; SSM scan; gated norm; out_proj."""

    def __init__(self, cfg: BackboneConfig) -> None:
        super().__init__()
        self.n_heads = cfg.mamba_num_heads
        self.head_dim = cfg.mamba_head_dim
        self.state_size = cfg.ssm_state_size
        self.n_groups = cfg.n_groups
        self.chunk_size = cfg.chunk_size
        self.kernel = cfg.conv_kernel
        self.dt_min = cfg.time_step_min
        self.inner = cfg.mamba_intermediate_size
        self.conv_dim = cfg.mamba_conv_dim
        self.in_proj = nn.Linear(cfg.hidden_size, self.inner + self.conv_dim + self.n_heads, bias=cfg.use_bias)
        self.conv1d = nn.Conv1d(
            self.conv_dim, self.conv_dim, cfg.conv_kernel, groups=self.conv_dim,
            padding=cfg.conv_kernel - 1, bias=cfg.use_conv_bias,
        )
        self.dt_bias = nn.Parameter(torch.ones(self.n_heads))
        self.A_log = nn.Parameter(torch.log(torch.arange(1, self.n_heads + 1, dtype=torch.float32)))
        self.D = nn.Parameter(torch.ones(self.n_heads))
        self.norm = GatedRMSNorm(self.inner, self.inner // self.n_groups, cfg.layer_norm_epsilon)
        self.out_proj = nn.Linear(self.inner, cfg.hidden_size, bias=cfg.use_bias)

    def forward(
        self, hidden: torch.Tensor, cache: MambaCache | None = None, batch: BatchIndex | None = None
    ) -> torch.Tensor:
        """hidden [b, t, d] -> [b, t, d]; reads and updates `cache` rows `batch.slots` when given."""
        b, t, _ = hidden.shape
        if cache is not None and t == 1 and fastpath.ENABLED:
            return self._step(hidden, cache, batch)
        z, xbc, dt = self.in_proj(hidden).split([self.inner, self.conv_dim, self.n_heads], dim=-1)

        # causal depthwise conv over time; the cache holds the previous kernel-1 inputs
        xbc = xbc.transpose(1, 2)  # [b, t, conv_dim] -> [b, conv_dim, t]
        if cache is None:
            conv_in = F.pad(xbc, (self.kernel - 1, 0))
        else:
            conv_in = torch.cat([batch.gather(cache.conv).to(xbc.dtype), xbc], dim=-1)  # [b, conv_dim, k-1+t]
        weight = self.conv1d.weight.to(xbc.dtype)
        bias = None if self.conv1d.bias is None else self.conv1d.bias.to(xbc.dtype)
        xbc_conv = F.silu(F.conv1d(conv_in, weight, bias, groups=self.conv_dim)).transpose(1, 2)  # [b, t, conv_dim]
        x, B, C = xbc_conv.split([self.inner, self.n_groups * self.state_size, self.n_groups * self.state_size], -1)
        x = x.reshape(b, t, self.n_heads, self.head_dim)
        B = B.reshape(b, t, self.n_groups, self.state_size)
        C = C.reshape(b, t, self.n_groups, self.state_size)

        dt = F.softplus(dt.float() + self.dt_bias.float()).clamp(min=self.dt_min)  # [b, t, h]
        if batch is not None and batch.seq_lens is not None:
            dt = dt * batch.valid_mask(t)[..., None]  # padding: dt = 0 leaves the state unchanged
        A = -torch.exp(self.A_log.float())

        initial = None if cache is None else batch.gather(cache.ssm)
        y, final = ssd_chunked_scan(x, dt, A, B, C, self.chunk_size, initial)
        y = y + self.D.float()[:, None] * x.float()

        if cache is not None:
            batch.scatter(cache.ssm, final)
            batch.scatter(cache.conv, self._last_conv_inputs(conv_in, batch))

        y = self.norm(y.reshape(b, t, self.inner), z)  # [b, t, h, p] -> [b, t, inner]
        return self.out_proj(y.to(hidden.dtype))

    def _step(self, hidden: torch.Tensor, cache: MambaCache, batch: BatchIndex) -> torch.Tensor:
        """Decode: one token per row, the same computation as `forward` at t = 1 in fewer, smaller ops.

        Why a separate path: at one token the layer is all per-op overhead. The conv over the k-1
        cached inputs plus the new one is a weighted sum (no conv1d call), the SSM step is `ssd_step`,
        and both states are read and written as views of the cache rows when the slots are contiguous.
        """
        b = hidden.shape[0]
        z, xbc, dt = self.in_proj(hidden[:, 0]).split([self.inner, self.conv_dim, self.n_heads], dim=-1)

        conv_in = torch.cat([batch.gather(cache.conv), xbc.to(cache.conv.dtype)[..., None]], dim=-1)  # [b, c, k]
        batch.scatter(cache.conv, conv_in[..., 1:])  # the cache keeps the last kernel-1 inputs
        xbc = (conv_in.float() * self.conv1d.weight.float()[:, 0]).sum(-1)  # depthwise conv at the last position
        if self.conv1d.bias is not None:
            xbc = xbc + self.conv1d.bias.float()
        xbc = F.silu(xbc.to(hidden.dtype))
        x, B, C = xbc.split([self.inner, self.n_groups * self.state_size, self.n_groups * self.state_size], -1)
        x = x.reshape(b, self.n_heads, self.head_dim)

        dt = F.softplus(dt.float() + self.dt_bias.float()).clamp(min=self.dt_min)  # [b, h] (t = 1: no padding)
        A = -torch.exp(self.A_log.float())
        y, final = ssd_step(batch.gather(cache.ssm), x, dt, A,
                            B.view(b, self.n_groups, self.state_size), C.view(b, self.n_groups, self.state_size))
        batch.scatter(cache.ssm, final)
        y = y + self.D.float()[:, None] * x.float()  # [b, h, p]

        y = self.norm(y.view(b, 1, self.inner), z[:, None])
        return self.out_proj(y.to(hidden.dtype))

    def _last_conv_inputs(self, conv_in: torch.Tensor, batch: BatchIndex) -> torch.Tensor:
        """The kernel-1 conv inputs that end at each row's last valid token: [b, conv_dim, k-1]."""
        k1 = self.kernel - 1
        if batch.seq_lens is None:
            return conv_in[:, :, -k1:]
        # valid inputs of row i end at column k1 + seq_lens[i] of conv_in
        idx = batch.seq_lens[:, None] + torch.arange(k1, device=conv_in.device)  # [b, k-1]
        return conv_in.gather(2, idx[:, None, :].expand(-1, conv_in.shape[1], -1))
