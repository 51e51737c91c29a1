"""Feed-forward layers: the dense relu² MLP (`-`) and the NemotronH mixture of experts (`E`).

MoE: a sigmoid router scores every routed expert; a per-expert correction bias (load balancing,
learned outside the gradient) shifts the scores used to *choose* experts but not the weights they get;
the choice is group-limited (keep the `topk_group` best of `n_group` expert groups, a group scored
by its two best experts) and then top-k; the k weights are renormalised and multiplied by
`routed_scaling_factor`. One shared expert sees every token.

Quantization contract: every weight a precision recipe may swap is an `nn.Linear` called as a module
(`experts.{j}.up_proj`, `shared_experts.down_proj`, ...). The router `gate` is not a Linear: it stays
in high precision and runs in fp32.

Routed experts, three ways to the same sum (`MoE.forward` picks; all agree up to summation order):

- `MoE.routed_loop`, the reference: each chosen expert's module on its rows, a Python loop over experts.
  The only path under autograd, under `fastpath.reference_paths()`, and while an expert linear has a
  forward hook (a hook must see the rows routed to its expert).
- `StackedExperts`, dense: every expert on every token, gated; the cheapest for a few tokens of a small
  MoE (decode of the tiny model), plain `nn.Linear` experts only.
- `GroupedExperts`, grouped: the (token, k) assignments sorted by expert, the rows gathered once, each
  projection one grouped call over the per-expert segments (`kernels.grouped`: `torch._grouped_mm`
  or a batched matmul for bf16/fp32, the Triton grouped kernel on CUDA and a cached dequantized stack
  on CPU for the quantized formats), the outputs weighted and scattered back with one `index_add_`.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from evalsuite.kernels.grouped import GroupedLinear, stack_key, stack_linears, version_key
from evalsuite.model import fastpath
from evalsuite.model.config import BackboneConfig


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


# Small-batch fast path (decode). Even grouped, routing costs a fixed dozen small ops (sort, count,
# gather, scatter); a small MoE on a few tokens is faster run as two dense matmuls over all routed
# experts' stacked weights, the routing weights (0 for an expert a token did not choose) applied
# between them. It computes every expert for every token, so it is used only while that stays cheap
# (tokens x all routed expert weights <= DENSE_MAX_MACS: up to 32 tokens of the tiny model, where bf16
# on a 2-core CPU crosses over to the grouped path; never the 30B model's 128 experts), without
# autograd, and only while every routed expert is a plain `nn.Linear` (not a quantized layer) without
# forward hooks (a hook must see the rows routed to its expert).
DENSE_MAX_MACS = 1 << 22


class StackedExperts:
    """All routed experts' weights, stacked, plus the identity and version of the tensors they came from."""

    def __init__(self, sources: tuple[torch.Tensor | None, ...], n_experts: int) -> None:
        ups, up_biases = sources[0::4], sources[1::4]
        downs, down_biases = sources[2::4], sources[3::4]
        self.key = version_key(sources)
        assert self.key is not None
        self.sources = sources  # held so that the ids in `key` stay unique while this is cached
        self.n_experts = n_experts
        self.up = torch.cat(ups).detach()  # [E * I, d]: expert e's rows at e*I .. (e+1)*I - 1
        self.down = torch.cat(downs, dim=1).detach()  # [d, E * I]
        self.up_bias = None if up_biases[0] is None else torch.cat(up_biases).detach()  # [E * I]
        self.down_bias = None if down_biases[0] is None else torch.stack(down_biases).detach()  # [E, d]

    def __call__(self, x: torch.Tensor, weights: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
        """x [n, d], routing weights [n, k] fp32 and experts [n, k] -> sum_k weights * expert(x), fp32 [n, d]."""
        n, e = x.shape[0], self.n_experts
        gates = torch.zeros(n, e, dtype=torch.float32, device=x.device).scatter_(1, idx, weights)  # [n, E]
        h = F.relu(F.linear(x, self.up, self.up_bias)).square()  # [n, E * I]
        h = (h.view(n, e, -1).float() * gates[..., None]).to(x.dtype).view(n, -1)
        out = F.linear(h, self.down).float()  # = sum_e gates[:, e] * down_e(h_e)
        if self.down_bias is not None:
            out = out + gates @ self.down_bias.float()
        return out


class GroupedExperts:
    """Each projection of the routed experts stacked for one grouped call (`kernels.grouped.GroupedLinear`)."""

    def __init__(self, up: GroupedLinear, down: GroupedLinear, n_experts: int) -> None:
        self.up, self.down, self.n_experts = up, down, n_experts
        self.key = (up.key, down.key)

    def __call__(self, x: torch.Tensor, weights: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
        """x [n, d], routing weights [n, k] fp32 and experts [n, k] -> sum_k weights * expert(x), fp32 [n, d]."""
        n, k = idx.shape
        flat = idx.reshape(-1)  # [n*k] assignments, token-major
        order = flat.argsort(stable=True)  # [A = n*k] assignments sorted by expert
        experts = flat[order]  # [A] ascending
        rows = order // k  # [A] the token of each sorted assignment
        # [E+1]: expert e's rows are offsets[e] .. offsets[e+1]-1 (a search, not bincount: no host sync on a GPU)
        offsets = torch.searchsorted(experts, torch.arange(self.n_experts + 1, device=x.device))
        h = F.relu(self.up(x[rows], experts, offsets)).square()  # [A, I]
        y = self.down(h, experts, offsets) * weights.reshape(-1)[order, None]  # [A, d] fp32
        return torch.zeros(x.shape, dtype=torch.float32, device=x.device).index_add_(0, rows, y.float())


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
        # the small-batch dense path: its cost per token, and its cached stacked weights (not state)
        self._dense_macs_per_token = 2 * cfg.n_routed_experts * d_expert * cfg.moe_intermediate_size
        self._stacked: StackedExperts | None = None
        self._grouped: GroupedExperts | None = None  # the grouped path's stacked weights (not state)
        self._grouped_refused: tuple | None = None  # the key of weights `stack_linears` could not group

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        """hidden [b, t, d] -> [b, t, d]."""
        x = hidden.reshape(-1, hidden.shape[-1])  # [b, t, d] -> [n, d]
        weights, idx = self.gate(x)
        if self.fc1_latent_proj is not None:
            x = self.fc1_latent_proj(x)
        routed = self.routed(x, weights, idx).to(hidden.dtype)
        if self.fc2_latent_proj is not None:
            routed = self.fc2_latent_proj(routed)
        return routed.view_as(hidden) + self.shared_experts(hidden)

    def routed(self, x: torch.Tensor, weights: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
        """The routed experts' weighted sum by the cheapest path that applies (module docstring); in a
        static-shape step (`fastpath.STATIC`, a captured decode step) never a path that syncs with
        the host or sizes tensors by the routing: the dense stacked path, else `routed_dense`.
        -> fp32 [n, d]"""
        fast = fastpath.ENABLED and not torch.is_grad_enabled()
        if fast and x.shape[0] * self._dense_macs_per_token <= DENSE_MAX_MACS:
            stacked = self.stacked_experts()
            if stacked is not None:
                return stacked(x, weights, idx)
        if fastpath.STATIC:
            return self.routed_dense(x, weights, idx)
        if not fast:
            return self.routed_loop(x, weights, idx)
        grouped = self.grouped_experts()
        return self.routed_loop(x, weights, idx) if grouped is None else grouped(x, weights, idx)

    def routed_loop(self, x: torch.Tensor, weights: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
        """The reference routed path: each chosen expert on its tokens. x [n, d] -> fp32 [n, d]."""
        routed = torch.zeros(x.shape, dtype=torch.float32, device=x.device)
        for e in idx.unique().tolist():  # only the experts some token chose
            rows, k = torch.where(idx == e)
            y = self.experts[e](x[rows]) * weights[rows, k, None]
            routed.index_add_(0, rows, y.float())
        return routed

    def routed_dense(self, x: torch.Tensor, weights: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
        """The routed path with static shapes and no host sync (a captured decode step): every routed
        expert, as its own module (quantized or not), on every token; a token's output from an expert
        it did not choose is dropped (selected away, so an overflow there cannot leak in as 0 * inf).
        Costs n_experts / top_k times the expert work of `routed_loop`, with the same sum in the same
        expert order. x [n, d] -> fp32 [n, d]."""
        n, e = x.shape[0], len(self.experts)
        gates = torch.zeros(n, e, dtype=torch.float32, device=x.device).scatter_(1, idx, weights)  # [n, E]
        chosen = torch.zeros(n, e, dtype=torch.bool, device=x.device).scatter_(1, idx, True)
        routed = torch.zeros(x.shape, dtype=torch.float32, device=x.device)
        for j, expert in enumerate(self.experts):
            y = expert(x) * gates[:, j, None]  # [n, d] fp32
            routed += torch.where(chosen[:, j, None], y.float(), 0.0)
        return routed

    def stacked_experts(self) -> StackedExperts | None:
        """The routed experts' stacked weights for the small-batch path, rebuilt whenever a weight changed;
        None when that path does not apply (a quantized or otherwise non-`nn.Linear` expert, an expert
        linear with forward hooks, mixed dtypes or devices, inference tensors). Weight changes are seen
        through each tensor's identity, storage and version counter, i.e. any replacement, cast, move or
        in-place update except one made through `.data` (which bypasses the version counter; nothing here
        does that).

        Runs every decode step, so it reads the module dicts directly (no `nn.Module.__getattr__`).
        Under `torch.compile` it returns the stack an eager call built (the compiled step is traced
        after an eager warm-up, and whoever compiled it recompiles after a weight change)."""
        if torch.compiler.is_compiling():
            return self._stacked
        sources: list[torch.Tensor | None] = []
        for mlp in self.experts._modules.values():
            if mlp._forward_hooks or mlp._forward_pre_hooks:  # type: ignore[union-attr]
                self._stacked = None
                return None
            for name in ("up_proj", "down_proj"):
                linear = mlp._modules[name]  # type: ignore[union-attr]
                # a quantized (non-`nn.Linear`) expert, or one with hooks that must see its own call
                if type(linear) is not nn.Linear or linear._forward_hooks or linear._forward_pre_hooks:
                    self._stacked = None
                    return None
                sources += linear._parameters.values()  # weight, bias (None without bias)
        key = version_key(sources)
        cached = self._stacked
        if cached is not None and cached.key == key:
            return cached
        self._stacked = None
        present = [t for t in sources if t is not None]
        if key is None or len({(t.dtype, t.device) for t in present}) != 1:
            return None
        self._stacked = StackedExperts(tuple(sources), len(self.experts))
        return self._stacked

    def grouped_experts(self) -> GroupedExperts | None:
        """The routed experts' projections stacked for the grouped path, rebuilt whenever a weight changed
        (`kernels.grouped.stack_key`: identity, storage and version of every weight, scale and bias); None
        when the experts cannot be grouped (a forward hook, mixed kinds or formats, inference tensors, ...)."""
        mlps = list(self.experts._modules.values())
        if any(mlp._forward_hooks or mlp._forward_pre_hooks for mlp in mlps):  # type: ignore[union-attr]
            return None  # a hook on a whole expert must see its rows too
        ups = [mlp._modules["up_proj"] for mlp in mlps]  # type: ignore[union-attr]
        downs = [mlp._modules["down_proj"] for mlp in mlps]  # type: ignore[union-attr]
        key = (stack_key(ups), stack_key(downs))  # type: ignore[arg-type]
        cached = self._grouped
        if cached is not None and cached.key == key:
            return cached
        self._grouped = None
        if None in key or key == self._grouped_refused:
            return None
        up, down = stack_linears(ups), stack_linears(downs)  # type: ignore[arg-type]
        if up is None or down is None:  # e.g. mixed shapes or devices: not retried until a weight changes
            self._grouped_refused = (stack_key(ups), stack_key(downs))  # type: ignore[arg-type]  # as now stored
            return None
        self._grouped = GroupedExperts(up, down, len(ups))
        return self._grouped
