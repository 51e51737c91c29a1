"""A tiny stand-in language model with NemotronH module names, for the swap and checkpoint tests.

Layer pattern ``M*E-``: Mamba-like (in_proj/out_proj + conv), attention (q/k/v/o_proj), MoE
(router ``gate`` that is NOT an nn.Linear, routed ``experts.{j}``, ``shared_experts``), dense MLP.
Plus ``lm_head``, a ``vision`` encoder and an ``mm_projector`` outside the backbone. The forward
pass is simplified (no recurrence, no causal mask) but runs every linear layer.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class Mamba(nn.Module):
    def __init__(self, d: int) -> None:
        super().__init__()
        self.in_proj = nn.Linear(d, 2 * d, bias=False)
        self.conv1d = nn.Conv1d(d, d, 3, padding=1, groups=d)
        self.out_proj = nn.Linear(d, d, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, z = self.in_proj(x).chunk(2, dim=-1)
        h = self.conv1d(h.transpose(1, 2)).transpose(1, 2)
        return self.out_proj(F.silu(h) * torch.sigmoid(z))


class Attention(nn.Module):
    def __init__(self, d: int, heads: int = 2) -> None:
        super().__init__()
        self.heads = heads
        self.q_proj = nn.Linear(d, d, bias=False)
        self.k_proj = nn.Linear(d, d, bias=False)
        self.v_proj = nn.Linear(d, d, bias=False)
        self.o_proj = nn.Linear(d, d, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, t, d = x.shape

        def split(y: torch.Tensor) -> torch.Tensor:
            return y.reshape(b, t, self.heads, d // self.heads).transpose(1, 2)  # [B, H, T, d/H]

        o = F.scaled_dot_product_attention(split(self.q_proj(x)), split(self.k_proj(x)), split(self.v_proj(x)))
        return self.o_proj(o.transpose(1, 2).reshape(b, t, d))


class Expert(nn.Module):
    def __init__(self, d: int, hidden: int) -> None:
        super().__init__()
        self.up_proj = nn.Linear(d, hidden, bias=False)
        self.down_proj = nn.Linear(hidden, d, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.down_proj(F.relu(self.up_proj(x)).square())


class Router(nn.Module):
    """Like NemotronH's TopkRouter: a raw weight, not an nn.Linear."""

    def __init__(self, d: int, n_experts: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.randn(n_experts, d) * 0.1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(x.float() @ self.weight.float().t())


class MoE(nn.Module):
    def __init__(self, d: int, n_experts: int = 4, hidden: int = 32) -> None:
        super().__init__()
        self.gate = Router(d, n_experts)
        self.experts = nn.ModuleList(Expert(d, hidden) for _ in range(n_experts))
        self.shared_experts = Expert(d, hidden)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        probs = self.gate(x)  # [B, T, E]
        top = probs.topk(2, dim=-1)
        weights = torch.zeros_like(probs).scatter(-1, top.indices, top.values).to(x.dtype)
        routed = sum(weights[..., j : j + 1] * e(x) for j, e in enumerate(self.experts))
        return routed + self.shared_experts(x)


class MLP(nn.Module):
    def __init__(self, d: int, hidden: int = 64) -> None:
        super().__init__()
        self.up_proj = nn.Linear(d, hidden, bias=False)
        self.down_proj = nn.Linear(hidden, d, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.down_proj(F.relu(self.up_proj(x)).square())


class Block(nn.Module):
    def __init__(self, mixer: nn.Module, d: int) -> None:
        super().__init__()
        self.norm = nn.RMSNorm(d)
        self.mixer = mixer

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.mixer(self.norm(x))


class Backbone(nn.Module):
    def __init__(self, d: int, vocab: int) -> None:
        super().__init__()
        self.embeddings = nn.Embedding(vocab, d)
        self.layers = nn.ModuleList([Block(Mamba(d), d), Block(Attention(d), d), Block(MoE(d), d), Block(MLP(d), d)])
        self.norm_f = nn.RMSNorm(d)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        for layer in self.layers:
            h = layer(h)
        return self.norm_f(h)


class ToyLM(nn.Module):
    def __init__(self, d: int = 32, vocab: int = 48) -> None:
        super().__init__()
        self.backbone = Backbone(d, vocab)
        self.lm_head = nn.Linear(d, vocab, bias=False)
        self.vision = nn.Sequential(nn.Linear(16, 24), nn.GELU(), nn.Linear(24, 16))
        self.mm_projector = nn.Linear(16, d)

    def forward(self, tokens: torch.Tensor, image_feats: torch.Tensor) -> torch.Tensor:
        img = self.mm_projector(self.vision(image_feats))  # [B, P, d]
        h = torch.cat([img, self.backbone.embeddings(tokens)], dim=1)
        return self.lm_head(self.backbone(h))


class Wrapped(nn.Module):
    """Adds a ``model.`` prefix to every name, as HF wrappers do."""

    def __init__(self, inner: nn.Module) -> None:
        super().__init__()
        self.model = inner

    def forward(self, *args: torch.Tensor) -> torch.Tensor:
        return self.model(*args)


def build(seed: int = 0, dtype: torch.dtype = torch.bfloat16) -> ToyLM:
    torch.manual_seed(seed)
    return ToyLM().to(dtype)


def inputs(seed: int = 1, dtype: torch.dtype = torch.bfloat16) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 48, (2, 5), generator=g), torch.randn(2, 3, 16, generator=g).to(dtype)
