"""Model configurations: dataclasses with named presets.

`BackboneConfig` describes the hybrid language backbone (NemotronH layout); `OmniConfig` bundles it
with the encoder configurations. Field names follow transformers' `NemotronHConfig` where one exists,
so a checkpoint's `config.json` maps onto this class field by field (see `model/hf_compat.py`).

The layer stack is data: `hybrid_override_pattern` is one letter per layer,

    M  Mamba-2 mixer          E  mixture of experts
    *  grouped-query attention -  dense relu² MLP

and `model.backbone` feeds it to a single block factory.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, ClassVar

from evalsuite.model.config_encoders import AudioConfig, VideoConfig, VisionConfig, encoder_configs

LAYER_LETTERS: dict[str, str] = {"M": "mamba", "E": "moe", "*": "attention", "-": "mlp"}

# The published pattern: `hybrid_override_pattern` of nvidia/NVIDIA-Nemotron-3-Nano-30B-A3B's config.json,
# also NVIDIA Megatron-Bridge's `Nemotron3NanoProvider.hybrid_layer_pattern`. 23 M, 23 E, 6 *: 52 layers.
NANO_30B_A3B_PATTERN = "MEMEM*EMEMEM*EMEMEM*EMEMEM*EMEMEM*EMEMEMEM*EMEMEMEME"


@dataclass(frozen=True)
class BackboneConfig:
    """Hybrid Mamba-2 / attention / MoE language backbone (NemotronH)."""

    hybrid_override_pattern: str = "MEM*M-E*"
    vocab_size: int = 512
    hidden_size: int = 128
    # attention ('*')
    num_attention_heads: int = 4
    num_key_value_heads: int = 2
    head_dim: int = 32
    # Mamba-2 ('M'); inner width is mamba_num_heads * mamba_head_dim
    mamba_num_heads: int = 8
    mamba_head_dim: int = 16
    ssm_state_size: int = 16
    n_groups: int = 2
    conv_kernel: int = 4
    chunk_size: int = 16
    time_step_min: float = 0.001  # dt is clamped from below at this value (transformers' time_step_limit)
    use_conv_bias: bool = True
    use_bias: bool = False  # bias of Mamba in_proj/out_proj
    # MoE ('E')
    n_routed_experts: int = 8
    num_experts_per_tok: int = 2
    moe_intermediate_size: int = 64
    moe_shared_expert_intermediate_size: int = 128
    moe_latent_size: int | None = None
    routed_scaling_factor: float = 2.5
    n_group: int = 1
    topk_group: int = 1
    norm_topk_prob: bool = True
    # dense MLP ('-')
    intermediate_size: int = 256
    mlp_bias: bool = False
    # misc
    max_position_embeddings: int = 4096
    layer_norm_epsilon: float = 1e-5
    tie_word_embeddings: bool = False

    PRESETS: ClassVar[dict[str, dict[str, Any]]] = {}

    def __post_init__(self) -> None:
        bad = sorted(set(self.hybrid_override_pattern) - set(LAYER_LETTERS))
        if not self.hybrid_override_pattern or bad:
            raise ValueError(
                f"hybrid_override_pattern {self.hybrid_override_pattern!r}: expected a non-empty string of "
                f"the letters {''.join(LAYER_LETTERS)} (got {bad})"
            )
        checks = [
            (self.num_attention_heads % self.num_key_value_heads == 0,
             f"num_attention_heads ({self.num_attention_heads}) must be a multiple of num_key_value_heads "
             f"({self.num_key_value_heads})"),
            (self.mamba_num_heads % self.n_groups == 0,
             f"mamba_num_heads ({self.mamba_num_heads}) must be a multiple of n_groups ({self.n_groups})"),
            (self.num_experts_per_tok <= self.n_routed_experts,
             f"num_experts_per_tok ({self.num_experts_per_tok}) exceeds n_routed_experts ({self.n_routed_experts})"),
            (self.n_routed_experts % self.n_group == 0,
             f"n_routed_experts ({self.n_routed_experts}) must be a multiple of n_group ({self.n_group})"),
            (1 <= self.topk_group <= self.n_group,
             f"topk_group ({self.topk_group}) must be in [1, n_group={self.n_group}]"),
            (self.n_group == 1 or self.n_routed_experts // self.n_group >= 2,
             "group-limited routing scores a group by its top-2 experts: need >= 2 experts per group"),
            (self.chunk_size >= 1 and self.conv_kernel >= 2, "chunk_size must be >= 1 and conv_kernel >= 2"),
        ]
        for ok, message in checks:
            if not ok:
                raise ValueError(f"BackboneConfig: {message}")

    # --- derived sizes -------------------------------------------------------------------------
    @property
    def n_layers(self) -> int:
        return len(self.hybrid_override_pattern)

    @property
    def layer_types(self) -> list[str]:
        """One of 'mamba', 'moe', 'attention', 'mlp' per layer."""
        return [LAYER_LETTERS[c] for c in self.hybrid_override_pattern]

    @property
    def mamba_intermediate_size(self) -> int:
        return self.mamba_num_heads * self.mamba_head_dim

    @property
    def mamba_conv_dim(self) -> int:
        """Channels that go through the causal conv: x, B and C."""
        return self.mamba_intermediate_size + 2 * self.n_groups * self.ssm_state_size

    # --- presets -------------------------------------------------------------------------------
    @classmethod
    def preset(cls, name: str, **overrides: Any) -> BackboneConfig:
        """A named preset, optionally with some fields replaced."""
        if name not in cls.PRESETS:
            raise KeyError(f"unknown backbone preset {name!r}; expected one of {sorted(cls.PRESETS)}")
        return cls(**{**cls.PRESETS[name], **overrides})

    def replace(self, **changes: Any) -> BackboneConfig:
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


BackboneConfig.PRESETS.update(
    {
        # Runs and trains on 2 CPU cores: every layer kind present, byte-level vocabulary + specials.
        "tiny": dict(
            hybrid_override_pattern="MEM*M-E*",
            vocab_size=512,
            hidden_size=128,
            num_attention_heads=4,
            num_key_value_heads=2,
            head_dim=32,
            mamba_num_heads=8,
            mamba_head_dim=16,
            ssm_state_size=16,
            n_groups=2,
            conv_kernel=4,
            chunk_size=16,
            n_routed_experts=8,
            num_experts_per_tok=2,
            moe_intermediate_size=64,
            moe_shared_expert_intermediate_size=128,
            routed_scaling_factor=2.5,
            intermediate_size=256,
            max_position_embeddings=4096,
        ),
        # The published Nemotron 3 Nano 30B-A3B language backbone.
        "nano-omni-30b-a3b": dict(
            hybrid_override_pattern=NANO_30B_A3B_PATTERN,
            vocab_size=131072,
            hidden_size=2688,
            num_attention_heads=32,
            num_key_value_heads=2,
            head_dim=128,
            mamba_num_heads=64,
            mamba_head_dim=64,
            ssm_state_size=128,
            n_groups=8,
            conv_kernel=4,
            chunk_size=128,
            n_routed_experts=128,
            num_experts_per_tok=6,
            moe_intermediate_size=1856,
            moe_shared_expert_intermediate_size=3712,
            routed_scaling_factor=2.5,
            n_group=1,
            topk_group=1,
            norm_topk_prob=True,
            intermediate_size=1856,
            max_position_embeddings=262144,
            layer_norm_epsilon=1e-5,
        ),
    }
)


def _tiny_encoders() -> dict[str, Any]:
    return encoder_configs("tiny", lm_hidden=BackboneConfig.PRESETS["tiny"]["hidden_size"])


@dataclass(frozen=True)
class OmniConfig:
    """The omni model: the language backbone plus its media encoders (`model/config_encoders.py`).

    The encoders' projectors output `backbone.hidden_size` features, which the backbone takes as
    `inputs_embeds` at the media placeholders. ``loc_bins``: location tokens per axis in the
    tokenizer (`ByteTokenizer`; 0: none), which answer grounding questions as two ids.
    """

    backbone: BackboneConfig = field(default_factory=lambda: BackboneConfig.preset("tiny"))
    vision: VisionConfig = field(default_factory=lambda: _tiny_encoders()["vision"])
    video: VideoConfig = field(default_factory=lambda: _tiny_encoders()["video"])
    audio: AudioConfig = field(default_factory=lambda: _tiny_encoders()["audio"])
    loc_bins: int = 0

    def __post_init__(self) -> None:
        from evalsuite.model.tokenizer import LOC_SCALE, N_BYTES, SPECIAL_TOKENS

        if not isinstance(self.loc_bins, int) or not 0 <= self.loc_bins <= LOC_SCALE:
            raise ValueError(f"OmniConfig: loc_bins must be an int in [0, {LOC_SCALE}], got {self.loc_bins!r}")
        ids = N_BYTES + len(SPECIAL_TOKENS) + 2 * self.loc_bins
        if ids > self.backbone.vocab_size:
            raise ValueError(f"OmniConfig: {self.loc_bins} location bins need {ids} token ids but the backbone "
                             f"vocab_size is {self.backbone.vocab_size}")
        width = self.backbone.hidden_size
        for name, cfg in (("vision", self.vision), ("video", self.video.vision), ("audio", self.audio)):
            if cfg.lm_hidden != width:
                raise ValueError(f"OmniConfig: {name} projects to {cfg.lm_hidden} features but the backbone "
                                 f"hidden size is {width}")

    @classmethod
    def preset(cls, name: str) -> OmniConfig:
        """Backbone and encoders of one preset, projectors sized to the backbone width."""
        backbone = BackboneConfig.preset(name)
        encoders = encoder_configs(name, lm_hidden=backbone.hidden_size)
        return cls(backbone=backbone, **encoders)
