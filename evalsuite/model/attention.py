"""Grouped-query attention (the `*` layers).

NemotronH attention carries no positional encoding: order reaches it through the Mamba layers, so
positions only say where keys and values go in the KV cache and which of them a query may see.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from evalsuite.model.config import BackboneConfig
from evalsuite.model.state import BatchIndex, KVCache


def causal_prefill(device: torch.device) -> bool:
    """Whether a fresh prefill (every row from position 0, the cache prefix exactly its tokens) runs as
    ``is_causal`` without a mask: on CUDA, where SDPA's GQA support is flash attention's, which takes no
    mask (with one it falls back to the math kernel, whose fp32 scores of an 8K prompt are ~9 GB per
    32 heads). The same attention as the explicit mask; CPU runs keep the mask, so their numbers (and
    the committed baselines' answers) stay as they are."""
    return device.type == "cuda"


class Attention(nn.Module):
    """Causal GQA: num_attention_heads queries share num_key_value_heads keys/values."""

    def __init__(self, cfg: BackboneConfig) -> None:
        super().__init__()
        self.n_heads, self.n_kv_heads, self.head_dim = cfg.num_attention_heads, cfg.num_key_value_heads, cfg.head_dim
        self.q_proj = nn.Linear(cfg.hidden_size, self.n_heads * self.head_dim, bias=False)
        self.k_proj = nn.Linear(cfg.hidden_size, self.n_kv_heads * self.head_dim, bias=False)
        self.v_proj = nn.Linear(cfg.hidden_size, self.n_kv_heads * self.head_dim, bias=False)
        self.o_proj = nn.Linear(self.n_heads * self.head_dim, cfg.hidden_size, bias=False)

    def forward(
        self, hidden: torch.Tensor, cache: KVCache | None = None, batch: BatchIndex | None = None
    ) -> torch.Tensor:
        """hidden [b, t, d] -> [b, t, d]; with a cache, writes this step's K/V and attends to the slot's past."""
        b, t, _ = hidden.shape
        q = self.q_proj(hidden).view(b, t, self.n_heads, self.head_dim).transpose(1, 2)  # [b, hq, t, hd]
        k = self.k_proj(hidden).view(b, t, self.n_kv_heads, self.head_dim).transpose(1, 2)  # [b, hkv, t, hd]
        v = self.v_proj(hidden).view(b, t, self.n_kv_heads, self.head_dim).transpose(1, 2)
        if cache is None:
            out = F.scaled_dot_product_attention(q, k, v, is_causal=True, enable_gqa=True)
        else:
            cache.write(batch, k, v)
            k, v = cache.read(batch)  # [b, hkv, end, hd]: views of the cache when the slots are contiguous
            causal = False
            if t == 1 and batch.start is not None:
                mask = None  # one token per row, all at position end - 1: every cached entry is visible
            elif batch.start == 0 and batch.end == t and causal_prefill(q.device):
                mask, causal = None, True  # a fresh prefill: token j sees 0..j, the plain causal mask
            else:  # a query at position p sees cache entries 0..p of its own slot
                keys = torch.arange(batch.end, device=q.device)
                mask = keys[None, None, None, :] <= batch.positions[:, None, :, None]  # [b, 1, t, end]
            out = F.scaled_dot_product_attention(q, k.to(q.dtype), v.to(q.dtype), attn_mask=mask, is_causal=causal,
                                                 enable_gqa=True)
        out = out.transpose(1, 2).reshape(b, t, self.n_heads * self.head_dim)  # [b, hq, t, hd] -> [b, t, hq*hd]
        return self.o_proj(out)
