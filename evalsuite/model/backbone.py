"""The language backbone: a hybrid Mamba-2 / attention / MoE stack (NemotronH, as in Nemotron 3 Nano).

    LanguageModel
      backbone.embeddings                 token ids -> hidden
      backbone.layers[i]                  Block: x + mixer(norm(x)); one letter of the pattern each
        M  Mamba2Mixer   (model/mamba2.py)    chunked SSD scan for prefill, O(1) step for decode
        *  Attention     (model/attention.py) grouped-query, no positional encoding, KV cache
        E  MoE           (model/moe.py)       sigmoid router + correction bias, top-k relu² experts,
                                              one shared expert, routed scaling factor
        -  MLP           (model/moe.py)       relu² feed-forward
      backbone.norm_f                     RMSNorm
      lm_head                             hidden -> logits

Parameter names are transformers' NemotronH names (NVIDIA hub layout), so `state_dict()` keys are
checkpoint keys. Inference state (KV, conv, SSM) is explicit and preallocated: `model/state.py`.
`prefill` and `decode_step` at the bottom are the small generation functions; `decode_step_static`
is decode_step with static shapes and no host sync, the step that the engine captures as a CUDA graph.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

from evalsuite.model import fastpath
from evalsuite.model.attention import Attention
from evalsuite.model.config import BackboneConfig
from evalsuite.model.mamba2 import Mamba2Mixer
from evalsuite.model.moe import MLP, MoE, TopkRouter
from evalsuite.model.state import BatchIndex, InferenceState


class RMSNorm(nn.Module):
    """x / rms(x) * weight, computed in fp32 and cast back to the input dtype."""

    def __init__(self, size: int, eps: float) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(size))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # F.rms_norm: the same formula in one call (fewer ops per decode step)
        return F.rms_norm(x.float(), (x.shape[-1],), self.weight.float(), self.eps).to(x.dtype)


# The one block factory: a pattern letter's layer kind -> its mixer.
MIXERS: dict[str, Callable[[BackboneConfig], nn.Module]] = {
    "mamba": Mamba2Mixer,
    "attention": Attention,
    "moe": MoE,
    "mlp": lambda cfg: MLP(cfg.hidden_size, cfg.intermediate_size, cfg.mlp_bias),
}
STATEFUL = {"mamba", "attention"}


class Block(nn.Module):
    """Pre-norm residual block around one mixer."""

    def __init__(self, cfg: BackboneConfig, kind: str) -> None:
        super().__init__()
        self.kind = kind
        self.norm = RMSNorm(cfg.hidden_size, cfg.layer_norm_epsilon)
        self.mixer = MIXERS[kind](cfg)

    def forward(self, x: torch.Tensor, cache: nn.Module | None, batch: BatchIndex | None) -> torch.Tensor:
        h = self.norm(x)
        h = self.mixer(h, cache, batch) if self.kind in STATEFUL else self.mixer(h)
        return x + h


class Backbone(nn.Module):
    def __init__(self, cfg: BackboneConfig) -> None:
        super().__init__()
        self.embeddings = nn.Embedding(cfg.vocab_size, cfg.hidden_size)
        self.layers = nn.ModuleList([Block(cfg, kind) for kind in cfg.layer_types])
        self.norm_f = RMSNorm(cfg.hidden_size, cfg.layer_norm_epsilon)

    def forward(self, hidden: torch.Tensor, state: InferenceState | None, batch: BatchIndex | None) -> torch.Tensor:
        for i, layer in enumerate(self.layers):
            hidden = layer(hidden, None if state is None else state.layer(i), batch)
        return self.norm_f(hidden)


class LanguageModel(nn.Module):
    """Backbone + lm_head. `forward(input_ids [B, T]) -> logits [B, T, V]` (fp32)."""

    def __init__(self, cfg: BackboneConfig) -> None:
        super().__init__()
        self.config = cfg
        self.backbone = Backbone(cfg)
        self.lm_head = nn.Linear(cfg.hidden_size, cfg.vocab_size, bias=False)
        if cfg.tie_word_embeddings:
            self.lm_head.weight = self.backbone.embeddings.weight
        if self.lm_head.weight.device.type != "meta":
            init_weights(self)

    def forward(
        self,
        input_ids: torch.Tensor | None = None,
        state: InferenceState | None = None,
        positions: torch.Tensor | None = None,
        inputs_embeds: torch.Tensor | None = None,
        slots: torch.Tensor | list[int] | None = None,
        seq_lens: torch.Tensor | list[int] | None = None,
    ) -> torch.Tensor:
        """Logits [B, T, V] (fp32) for input_ids [B, T] or inputs_embeds [B, T, D].

        Without `state`: a full causal pass. With `state`: row i continues the sequence in slot
        `slots[i]` (default: slot i): its tokens take positions lengths[slot] + 0..T-1, the caches
        are written there and the slot lengths advance. `positions` [B, T], if given, must be exactly
        those positions (NemotronH has no positional encoding, so they only index the cache).
        `seq_lens` [B]: rows are right-padded and only the first seq_lens[i] tokens are real (the
        state ends after them; logits at padded places are meaningless).
        """
        return self.lm_head(self.hidden_states(input_ids, state, positions, inputs_embeds, slots, seq_lens)).float()

    def hidden_states(
        self,
        input_ids: torch.Tensor | None = None,
        state: InferenceState | None = None,
        positions: torch.Tensor | None = None,
        inputs_embeds: torch.Tensor | None = None,
        slots: torch.Tensor | list[int] | None = None,
        seq_lens: torch.Tensor | list[int] | None = None,
    ) -> torch.Tensor:
        """Final normed hidden states [B, T, D]; same arguments as `forward`."""
        hidden = self._embed(input_ids, inputs_embeds)
        b, t = hidden.shape[:2]
        batch = None
        if state is not None:
            batch = state.batch_index(b, t, slots, positions, seq_lens)
        elif positions is not None and tuple(positions.shape) != (b, t):
            raise ValueError(f"positions: expected shape ({b}, {t}), got {tuple(positions.shape)}")
        hidden = self.backbone(hidden, state, batch)
        if state is not None:
            state.advance(batch)
        return hidden

    def _embed(self, input_ids: torch.Tensor | None, inputs_embeds: torch.Tensor | None) -> torch.Tensor:
        if (input_ids is None) == (inputs_embeds is None):
            raise ValueError("pass exactly one of input_ids [B, T] or inputs_embeds [B, T, D]")
        if inputs_embeds is not None:
            if inputs_embeds.dim() != 3 or inputs_embeds.shape[-1] != self.config.hidden_size or inputs_embeds.shape[1] == 0:
                raise ValueError(f"inputs_embeds: expected [B, T>0, {self.config.hidden_size}], "
                                 f"got {tuple(inputs_embeds.shape)}")
            return inputs_embeds.to(self.backbone.embeddings.weight.dtype)
        if input_ids.dim() != 2 or input_ids.shape[1] == 0 or input_ids.dtype.is_floating_point:
            raise ValueError(f"input_ids: expected integer [B, T>0], got {input_ids.dtype} {tuple(input_ids.shape)}")
        lo, hi = torch.aminmax(input_ids)
        if int(lo) < 0 or int(hi) >= self.config.vocab_size:
            raise ValueError(f"input_ids out of range: expected values in [0, {self.config.vocab_size})")
        return self.backbone.embeddings(input_ids)

    def allocate_state(self, n_slots: int, max_len: int, kv_cache_dtype: str | None = None) -> InferenceState:
        """Preallocated state for `n_slots` sequences of up to `max_len` tokens, on the model's device/dtype."""
        weight = self.backbone.embeddings.weight
        return InferenceState(self.config, n_slots, max_len, weight.dtype, kv_cache_dtype, weight.device)


@torch.no_grad()
def init_weights(model: LanguageModel) -> None:
    """Initialisation for training from scratch (transformers' NemotronH scheme)."""
    cfg, std = model.config, 0.02
    for module in model.modules():
        if isinstance(module, nn.Linear):
            nn.init.normal_(module.weight, std=std)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.Embedding):
            nn.init.normal_(module.weight, std=std)
        elif isinstance(module, TopkRouter):
            nn.init.normal_(module.weight, std=std)
            module.e_score_correction_bias.zero_()
    for module in model.modules():
        if isinstance(module, Mamba2Mixer):
            h = module.n_heads
            module.A_log.copy_(torch.log(torch.arange(1, h + 1, dtype=torch.float32)))
            module.D.fill_(1.0)
            # dt log-uniform in [1e-3, 1e-1] (floored at 1e-4); dt_bias is its softplus inverse
            dt = torch.exp(torch.rand(h) * (math.log(0.1) - math.log(1e-3)) + math.log(1e-3)).clamp(min=1e-4)
            module.dt_bias.copy_(dt + torch.log(-torch.expm1(-dt)))
            # residual-branch output scaled by 1/sqrt(n_layers)
            nn.init.kaiming_uniform_(module.out_proj.weight, a=math.sqrt(5))
            module.out_proj.weight.div_(math.sqrt(cfg.n_layers))


def build(cfg: BackboneConfig | str, device: torch.device | str | None = None,
          dtype: torch.dtype = torch.float32) -> LanguageModel:
    """A freshly initialised model (`device="meta"` builds shapes only, e.g. for accounting)."""
    cfg = BackboneConfig.preset(cfg) if isinstance(cfg, str) else cfg
    with torch.device(device or "cpu"):
        model = LanguageModel(cfg)
    return model.to(dtype)


# --- generation: small free functions ------------------------------------------------------------

@torch.no_grad()
def prefill(model: LanguageModel, input_ids: torch.Tensor, state: InferenceState,
            slots: torch.Tensor | list[int] | None = None,
            seq_lens: torch.Tensor | list[int] | None = None) -> torch.Tensor:
    """Run prompts [B, T] (right-padded to T, real lengths `seq_lens`) into `slots`; logits [B, V] of each last real token."""
    hidden = model.hidden_states(input_ids, state=state, slots=slots, seq_lens=seq_lens)
    b, t = input_ids.shape
    last = torch.full((b,), t - 1) if seq_lens is None else torch.as_tensor(seq_lens) - 1
    return model.lm_head(hidden[torch.arange(b), last.to(hidden.device)]).float()


@torch.no_grad()
def decode_step(model: LanguageModel, tokens: torch.Tensor, state: InferenceState,
                slots: torch.Tensor | list[int] | None = None) -> torch.Tensor:
    """One token for each of B slots (each at its own length): tokens [B] -> logits [B, V]."""
    return model(tokens[:, None], state=state, slots=slots)[:, 0]


@torch.no_grad()
def decode_step_static(model: LanguageModel, tokens: torch.Tensor, state: InferenceState, slots: torch.Tensor,
                       active: torch.Tensor, kv_len: int | None = None) -> torch.Tensor:
    """`decode_step` with static shapes and no host sync, so that it can be captured as a CUDA graph
    and replayed: tokens [B] and slots [B] long, active [B] bool -> logits [B, V] (fp32).

    Every input is a device tensor read only on the device: positions come from ``state.lengths``,
    attention runs over the fixed window ``kv_len`` (default the whole cache) masked to each row's
    length, Mamba states are gathered and scattered by slot index, the MoE takes its dense routed
    form, and nothing is checked on the host (`InferenceState.static_batch_index` says what the
    caller guarantees). Rows with ``active`` False are computed but leave their slot's state
    untouched: a batch of any size up to B runs through the same B-row step."""
    batch = state.static_batch_index(slots, active, kv_len)
    hidden = model.backbone.embeddings(tokens[:, None])  # [B, 1, D]; ids are not range-checked (a sync)
    with fastpath.static_shapes():
        hidden = model.backbone(hidden, state, batch)
    state.advance(batch)
    return model.lm_head(hidden[:, 0]).float()


# --- checkpoints -------------------------------------------------------------------------------

def from_pretrained_hf(path: str | Path, dtype: torch.dtype | None = None,
                       device: torch.device | str = "cpu") -> LanguageModel:
    """Load a transformers `NemotronHForCausalLM` checkpoint directory (config.json + safetensors).

    Accepts NVIDIA's hub layout (`backbone.*`, per-expert `experts.{j}.up_proj.weight`) and
    transformers' in-memory layout (`model.*`, fused `experts.up_proj [E, I, H]`).
    """
    from evalsuite.model import hf_compat

    cfg, state_dict = hf_compat.read_checkpoint(Path(path))
    with torch.device("meta"):
        model = LanguageModel(cfg)
    hf_compat.check_keys(model, state_dict)
    model.load_state_dict(state_dict, strict=False, assign=True)
    if cfg.tie_word_embeddings:
        model.lm_head.weight = model.backbone.embeddings.weight
    model = model.to(device=device)
    return model if dtype is None else model.to(dtype)


def export_hf(model: LanguageModel, path: str | Path) -> None:
    """Write `model` as a transformers NemotronH checkpoint (config.json + model.safetensors, hub layout)."""
    from evalsuite.model import hf_compat

    hf_compat.write_checkpoint(model, Path(path))
