"""Feed-forward layers: the dense relu² MLP (`-`) and the NemotronH mixture of experts (`E`).

MoE: a sigmoid router scores every routed expert; a per-expert correction bias (load balancing,
learned outside the gradient) shifts the scores used to *choose* experts but not the weights they get;
the choice is group-limited (keep the `topk_group` best of `n_group` expert groups, a group scored
by its two best experts) and then top-k; the k weights are renormalised and multiplied by
`routed_scaling_factor`. One shared expert sees every token.

Quantization contract: every weight a precision recipe may swap is an `nn.Linear` called as a module
(`experts.{j}.up_proj`, `shared_experts.down_proj`, ...). The router `gate` is not a Linear: it stays
in high precision and runs in fp32.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from model.config import BackboneConfig


class MLP(nn.Module):
    """down_proj(relu(up_proj(x))²): used for '-' layers, routed experts and the shared expert."""

    def __init__(self, d_in: int, d_hidden: int, bias: bool = False) -> None:
        super().__init__()
        self.up_proj = nn.Linear(d_in, d_hidden, bias=bias)
        self.down_proj = nn.Linear(d_hidden, d_in, bias=bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.down_proj(F.relu(self.up_proj(x)).square())


class TopkRouter(nn.Module):
    """Sigmoid router with score-correction bias and group-limited top-k; runs in fp32."""

    def __init__(self, cfg: BackboneConfig) -> None:
        super().__init__()
        self.top_k, self.n_group, self.topk_group = cfg.num_experts_per_tok, cfg.n_group, cfg.topk_group
        self.norm_topk_prob, self.scale = cfg.norm_topk_prob, cfg.routed_scaling_factor
        self.weight = nn.Parameter(torch.zeros(cfg.n_routed_experts, cfg.hidden_size))
        self.register_buffer("e_score_correction_bias", torch.zeros(cfg.n_routed_experts, dtype=torch.float32))

    def _apply(self, fn, recurse=True):  # type: ignore[no-untyped-def]
        # The bias separates near-tied experts: keep it fp32 whatever dtype the model is cast to.
        super()._apply(fn, recurse)
        self.e_score_correction_bias = self.e_score_correction_bias.float()
        return self

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """x [n, d] -> (weights [n, k] fp32, expert indices [n, k])."""
        scores = F.linear(x.float(), self.weight.float()).sigmoid()  # [n, E]
        choice = scores + self.e_score_correction_bias
        if self.topk_group < self.n_group:
            n, e = choice.shape
            grouped = choice.view(n, self.n_group, e // self.n_group)  # [n, E] -> [n, groups, E/groups]
            group_score = grouped.topk(2, dim=-1).values.sum(-1)  # [n, groups]
            keep = torch.zeros_like(group_score, dtype=torch.bool)
            keep.scatter_(1, group_score.topk(self.topk_group, dim=-1).indices, True)
            choice = grouped.masked_fill(~keep[..., None], float("-inf")).view(n, e)
        idx = choice.topk(self.top_k, dim=-1).indices  # [n, k]
        weights = scores.gather(1, idx)
        if self.norm_topk_prob:
            weights = weights / (weights.sum(-1, keepdim=True) + 1e-20)
        return weights * self.scale, idx


class MoE(nn.Module):
    """Routed relu² experts (a ModuleList of MLPs) plus one shared expert."""

    def __init__(self, cfg: BackboneConfig) -> None:
        super().__init__()
        d_expert = cfg.moe_latent_size or cfg.hidden_size
        self.gate = TopkRouter(cfg)
        self.experts = nn.ModuleList(
            [MLP(d_expert, cfg.moe_intermediate_size, cfg.mlp_bias) for _ in range(cfg.n_routed_experts)]
        )
        self.shared_experts = MLP(cfg.hidden_size, cfg.moe_shared_expert_intermediate_size, cfg.mlp_bias)
        if cfg.moe_latent_size is not None:  # LatentMoE: experts work in a smaller width
            self.fc1_latent_proj = nn.Linear(cfg.hidden_size, cfg.moe_latent_size, bias=cfg.mlp_bias)
            self.fc2_latent_proj = nn.Linear(cfg.moe_latent_size, cfg.hidden_size, bias=cfg.mlp_bias)
        else:
            self.fc1_latent_proj = self.fc2_latent_proj = None

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        """hidden [b, t, d] -> [b, t, d]."""
        x = hidden.reshape(-1, hidden.shape[-1])  # [b, t, d] -> [n, d]
        weights, idx = self.gate(x)
        if self.fc1_latent_proj is not None:
            x = self.fc1_latent_proj(x)
        routed = torch.zeros(x.shape, dtype=torch.float32, device=x.device)
        for e in idx.unique().tolist():  # only the experts some token chose
            rows, k = torch.where(idx == e)
            y = self.experts[e](x[rows]) * weights[rows, k, None]
            routed.index_add_(0, rows, y.float())
        routed = routed.to(hidden.dtype)
        if self.fc2_latent_proj is not None:
            routed = self.fc2_latent_proj(routed)
        return routed.view_as(hidden) + self.shared_experts(hidden)
