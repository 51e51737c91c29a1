"""Inference state: explicit, preallocated, one row per slot.

A slot holds one sequence. For every attention layer a `KVCache` keeps keys and values written by
position; for every Mamba layer a `MambaCache` keeps the last kernel-1 conv inputs and the SSM state
(fp32). `InferenceState.lengths[slot]` counts the tokens a slot has consumed; the model's forward
writes at positions `lengths[slot] + 0..T-1` and advances it. Nothing grows during generation.

KV storage dtype (`kv_cache_dtype`): None (the model dtype), "bf16", "fp32", or "fp8": float8_e4m3fn
with a float32 scale per (slot, kv head), taken when a slot is first written (position 0) as
`amax * FP8_HEADROOM / 448` over that write's real tokens (right padding of a batched prefill is
stored as zeros and excluded); later values beyond the range saturate at +-448 * scale.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from evalsuite.model import fastpath
from evalsuite.model.config import BackboneConfig

FP8_MAX = 448.0  # largest finite float8_e4m3fn
FP8_HEADROOM = 2.0  # the first write's amax maps to 448 / FP8_HEADROOM: room for later, larger values
KV_CACHE_DTYPES = {"bf16": torch.bfloat16, "fp32": torch.float32, "fp8": torch.float8_e4m3fn}


@dataclass
class BatchIndex:
    """Which slots the rows of a batch occupy and where their tokens go.

    slots [b] long; positions [b, t] long (the cache index of each token); seq_lens [b] long or None:
    the number of valid tokens per row when rows are right-padded (None: all t are valid).

    Resolved once per forward, on the host, so that the layers need no device syncs of their own:
    `rows` is `slice(s, s + b)` when the slots are the ascending run s..s+b-1 (the usual decode batch,
    and the default slots): the caches then read and write views of their rows instead of gathering
    and scattering copies. `start` is the common first position of all rows (None when they differ),
    `end` one past the largest position (the KV prefix any query of the batch can see).

    A static batch (`InferenceState.static_batch_index`, the graph-safe decode step) resolves nothing
    on the host: positions are read from the device lengths, `end` is a fixed KV window, and `active`
    [b] bool marks the rows whose state is updated (padding rows of a fixed-size batch compute and
    write back what they read, so their slots are left exactly as they were).
    """

    slots: torch.Tensor
    positions: torch.Tensor
    seq_lens: torch.Tensor | None = None
    rows: slice | None = None
    start: int | None = None
    end: int = 0
    active: torch.Tensor | None = None

    def valid_mask(self, t: int) -> torch.Tensor:
        """[b, t] float: 1 on real tokens, 0 on right padding."""
        steps = torch.arange(t, device=self.slots.device)
        if self.seq_lens is None:
            return torch.ones(self.slots.shape[0], t, device=self.slots.device)
        return (steps[None, :] < self.seq_lens[:, None]).float()

    def gather(self, buffer: torch.Tensor) -> torch.Tensor:
        """buffer[slots]: a view when the slots are contiguous, else a copy."""
        return buffer[self.rows] if self.rows is not None else buffer.index_select(0, self.slots)

    def keep_inactive(self, new: torch.Tensor, old: torch.Tensor) -> torch.Tensor:
        """new [b, ...] where the row is active, else old [b, ...] (no-op without `active`)."""
        if self.active is None:
            return new
        mask = self.active.view(-1, *(1,) * (new.dim() - 1))  # [b] -> [b, 1, ...]
        if new.is_floating_point() and new.element_size() == 1:  # float8: select the bytes (no fp8 `where` everywhere)
            return torch.where(mask, new.view(torch.uint8), old.view(torch.uint8)).view(new.dtype)
        return torch.where(mask, new, old)

    def scatter(self, buffer: torch.Tensor, value: torch.Tensor) -> None:
        """buffer[slots] = value (rows that are not `active` keep their old value)."""
        if self.active is not None:
            value = self.keep_inactive(value.to(buffer.dtype), self.gather(buffer))
        if self.rows is not None:
            buffer[self.rows].copy_(value)
        else:
            buffer.index_copy_(0, self.slots, value.to(buffer.dtype))


class KVCache(nn.Module):
    """Keys and values of one attention layer: [slots, kv_heads, max_len, head_dim], written by index."""

    def __init__(
        self, n_slots: int, n_kv_heads: int, max_len: int, head_dim: int, dtype: torch.dtype,
        kv_cache_dtype: str | None = None, device: torch.device | str | None = None,
    ) -> None:
        super().__init__()
        self.compute_dtype = dtype
        self.fp8 = kv_cache_dtype == "fp8"
        storage = dtype if kv_cache_dtype is None else KV_CACHE_DTYPES[kv_cache_dtype]
        shape = (n_slots, n_kv_heads, max_len, head_dim)
        self.register_buffer("k", torch.zeros(shape, dtype=storage, device=device), persistent=False)
        self.register_buffer("v", torch.zeros(shape, dtype=storage, device=device), persistent=False)
        if self.fp8:
            ones = torch.ones(n_slots, n_kv_heads, dtype=torch.float32, device=device)
            self.register_buffer("k_scale", ones.clone(), persistent=False)
            self.register_buffer("v_scale", ones.clone(), persistent=False)

    def write(self, batch: BatchIndex, k: torch.Tensor, v: torch.Tensor) -> None:
        """Store k, v [b, kv_heads, t, head_dim] at `batch.positions` of rows `batch.slots`.

        Right padding (steps at or past `batch.seq_lens`) is stored as zeros and takes no part in a
        fresh FP8 scale, so a row of a padded batch caches exactly what the sequence alone would."""
        b, _, t, _ = k.shape
        if batch.seq_lens is not None:
            valid = (torch.arange(t, device=k.device)[None, :] < batch.seq_lens[:, None])[:, None, :, None]
            k, v = k.masked_fill(~valid, 0), v.masked_fill(~valid, 0)  # [b, 1, t, 1] mask
        if self.fp8:
            fresh = batch.positions[:, 0] == 0  # a slot's first write sets its per-head scales
            k = self._quantize(k, self.k_scale, batch, fresh)
            v = self._quantize(v, self.v_scale, batch, fresh)
        if batch.rows is not None and batch.start is not None:  # one block of contiguous rows: a plain copy
            self.k[batch.rows, :, batch.start:batch.start + t] = k
            self.v[batch.rows, :, batch.start:batch.start + t] = v
            return
        rows = batch.slots[:, None].expand(b, t)  # [b, t]
        # advanced indices around a slice put the indexed dims first: target is [b, t, kv_heads, head_dim]
        k, v = k.transpose(1, 2).to(self.k.dtype), v.transpose(1, 2).to(self.v.dtype)
        if batch.active is not None:  # inactive rows write back what is there
            k = batch.keep_inactive(k, self.k[rows, :, batch.positions])
            v = batch.keep_inactive(v, self.v[rows, :, batch.positions])
        self.k[rows, :, batch.positions] = k
        self.v[rows, :, batch.positions] = v

    def read(self, batch: BatchIndex) -> tuple[torch.Tensor, torch.Tensor]:
        """Keys and values of the batch's slots at positions [0, batch.end): [b, kv_heads, end, head_dim].

        Views of the cache when the slots are contiguous (nothing is copied), else copies of only
        that prefix."""
        k, v = batch.gather(self.k[:, :, :batch.end]), batch.gather(self.v[:, :, :batch.end])
        if self.fp8:
            k = k.to(self.compute_dtype) * batch.gather(self.k_scale)[..., None, None].to(self.compute_dtype)
            v = v.to(self.compute_dtype) * batch.gather(self.v_scale)[..., None, None].to(self.compute_dtype)
        return k, v

    @staticmethod
    def _quantize(x: torch.Tensor, scale: torch.Tensor, batch: BatchIndex, fresh: torch.Tensor) -> torch.Tensor:
        """x [b, kv_heads, t, d] -> float8 values; sets `scale[slot]` for the (active) rows in `fresh`."""
        slots = batch.slots
        amax = x.detach().abs().amax(dim=(2, 3)).float()  # [b, kv_heads]
        new = torch.clamp(amax * FP8_HEADROOM / FP8_MAX, min=1e-12)
        if batch.active is not None:
            fresh = fresh & batch.active
        row_scale = torch.where(fresh[:, None], new, scale[slots])
        scale[slots] = row_scale
        q = (x.float() / row_scale[..., None, None]).clamp(-FP8_MAX, FP8_MAX)
        return q.to(torch.float8_e4m3fn)

    def reset(self, slots: torch.Tensor) -> None:
        """Zero the slots' keys and values (and FP8 scales back to 1). A query attends over a window
        that can reach past its own row's length (the batch's longest row, or the static step's
        fixed window) with those entries masked, and a masked NaN or inf that an earlier sequence
        left there would still reach the output (0 * NaN in the weighted sum of values)."""
        self.k[slots] = 0
        self.v[slots] = 0
        if self.fp8:
            self.k_scale[slots] = 1.0
            self.v_scale[slots] = 1.0


class MambaCache(nn.Module):
    """Conv inputs [slots, conv_dim, kernel-1] (model dtype) and SSM state [slots, heads, head_dim, state] (fp32)."""

    def __init__(self, n_slots: int, cfg: BackboneConfig, dtype: torch.dtype,
                 device: torch.device | str | None = None) -> None:
        super().__init__()
        conv_shape = (n_slots, cfg.mamba_conv_dim, cfg.conv_kernel - 1)
        ssm_shape = (n_slots, cfg.mamba_num_heads, cfg.mamba_head_dim, cfg.ssm_state_size)
        self.register_buffer("conv", torch.zeros(conv_shape, dtype=dtype, device=device), persistent=False)
        self.register_buffer("ssm", torch.zeros(ssm_shape, dtype=torch.float32, device=device), persistent=False)

    def reset(self, slots: torch.Tensor) -> None:
        self.conv[slots] = 0
        self.ssm[slots] = 0


class InferenceState(nn.Module):
    """All per-slot state of a backbone: caches for attention and Mamba layers plus slot lengths."""

    def __init__(
        self, cfg: BackboneConfig, n_slots: int, max_len: int, dtype: torch.dtype = torch.float32,
        kv_cache_dtype: str | None = None, device: torch.device | str | None = None,
    ) -> None:
        super().__init__()
        if n_slots < 1 or max_len < 1:
            raise ValueError(f"InferenceState: n_slots and max_len must be >= 1 (got {n_slots}, {max_len})")
        if kv_cache_dtype is not None and kv_cache_dtype not in KV_CACHE_DTYPES:
            raise ValueError(f"kv_cache_dtype {kv_cache_dtype!r}: expected None or one of {sorted(KV_CACHE_DTYPES)}")
        self.n_slots, self.max_len, self.kv_cache_dtype = n_slots, max_len, kv_cache_dtype
        caches: dict[str, nn.Module] = {}
        for i, kind in enumerate(cfg.layer_types):
            if kind == "attention":
                caches[str(i)] = KVCache(n_slots, cfg.num_key_value_heads, max_len, cfg.head_dim, dtype,
                                         kv_cache_dtype, device)
            elif kind == "mamba":
                caches[str(i)] = MambaCache(n_slots, cfg, dtype, device)
        self.caches = nn.ModuleDict(caches)
        self.register_buffer("lengths", torch.zeros(n_slots, dtype=torch.long, device=device), persistent=False)

    def layer(self, i: int) -> nn.Module | None:
        """The cache of layer i, or None for layers without state (MoE, MLP)."""
        return self.caches[str(i)] if str(i) in self.caches else None

    def reset(self, slots: torch.Tensor | list[int] | None = None) -> None:
        """Empty the given slots (all when None) so that they can take a new sequence."""
        if slots is None:
            slots = torch.arange(self.n_slots, device=self.lengths.device)
        slots = torch.as_tensor(slots, dtype=torch.long, device=self.lengths.device)
        self.lengths[slots] = 0
        for cache in self.caches.values():
            cache.reset(slots)  # type: ignore[operator]

    def batch_index(
        self, batch_size: int, t: int, slots: torch.Tensor | list[int] | None,
        positions: torch.Tensor | None, seq_lens: torch.Tensor | list[int] | None,
    ) -> BatchIndex:
        """Resolve and check where a [batch_size, t] input goes; see `LanguageModel.forward`."""
        device = self.lengths.device
        slots = torch.arange(batch_size, device=device) if slots is None else torch.as_tensor(
            slots, dtype=torch.long, device=device)
        if slots.shape != (batch_size,):
            raise ValueError(f"slots: expected shape ({batch_size},), got {tuple(slots.shape)}")
        # checked on host copies of the slots and their lengths (two small reads, no per-layer syncs later)
        slot_list = slots.tolist()
        if min(slot_list) < 0 or max(slot_list) >= self.n_slots or len(set(slot_list)) != batch_size:
            raise ValueError(f"slots {slot_list}: expected {batch_size} distinct slots in [0, {self.n_slots})")
        contiguous = fastpath.ENABLED and slot_list == list(range(slot_list[0], slot_list[0] + batch_size))
        rows = slice(slot_list[0], slot_list[0] + batch_size) if contiguous else None
        starts = self.lengths[rows].tolist() if contiguous else self.lengths.index_select(0, slots).tolist()
        expected = torch.tensor(starts, device=device)[:, None] + torch.arange(t, device=device)  # [b, t]
        if positions is not None:
            positions = torch.as_tensor(positions, dtype=torch.long, device=device)
            if positions.shape != expected.shape or not torch.equal(positions, expected):
                raise ValueError(
                    "positions must continue each slot's sequence (Mamba state is sequential): expected rows "
                    f"starting at {starts} with shape {tuple(expected.shape)}"
                )
        end = max(starts) + t
        if end > self.max_len:
            raise ValueError(f"sequence too long for the state: needs {end} positions, max_len is {self.max_len}")
        if seq_lens is not None:
            seq_lens = torch.as_tensor(seq_lens, dtype=torch.long, device=device)
            if seq_lens.shape != (batch_size,) or int(seq_lens.min()) < 1 or int(seq_lens.max()) > t:
                raise ValueError(f"seq_lens {seq_lens.tolist()}: expected {batch_size} values in [1, {t}]")
        start = starts[0] if fastpath.ENABLED and min(starts) == max(starts) else None
        return BatchIndex(slots=slots, positions=expected, seq_lens=seq_lens, rows=rows, start=start, end=end)

    def static_batch_index(self, slots: torch.Tensor, active: torch.Tensor, kv_len: int | None = None) -> BatchIndex:
        """A one-token-per-row batch resolved without reading anything on the host (graph-safe).

        slots [b] long, distinct; active [b] bool (see `BatchIndex`); kv_len: the KV window every row
        attends over (masked to each row's own length; default the whole cache). The caller guarantees
        what `batch_index` would check: slots in range and distinct, each active row's length below
        ``kv_len`` (a data-dependent check would be a host sync)."""
        kv_len = self.max_len if kv_len is None else kv_len
        if not 1 <= kv_len <= self.max_len:
            raise ValueError(f"kv_len {kv_len}: expected a window in [1, {self.max_len}]")
        positions = self.lengths.index_select(0, slots)[:, None]  # [b, 1]: each row's next position
        return BatchIndex(slots=slots, positions=positions, end=kv_len, active=active)

    def advance(self, batch: BatchIndex) -> None:
        if batch.active is not None:  # static batch: one token per active row, counted on the device
            self.lengths.index_add_(0, batch.slots, batch.active.long())
            return
        t = batch.positions.shape[1]
        step = t if batch.seq_lens is None else batch.seq_lens
        if batch.rows is not None:
            self.lengths[batch.rows] += step
        else:
            self.lengths[batch.slots] += step
