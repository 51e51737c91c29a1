"""Checkpoint compatibility: our backbone vs transformers' NemotronHForCausalLM on the same weights.

transformers runs here on CPU without mamba-ssm, i.e. through its pure-torch fallback path.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

transformers = pytest.importorskip("transformers")
from safetensors.torch import save_file  # noqa: E402
from transformers import NemotronHConfig, NemotronHForCausalLM  # noqa: E402

from evalsuite.model.backbone import LanguageModel, export_hf, from_pretrained_hf  # noqa: E402
from evalsuite.model.hf_compat import config_from_hf  # noqa: E402

from lm_testing import max_diff  # noqa: E402

VOCAB = 96


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory) -> tuple[NemotronHForCausalLM, Path]:
    """A tiny random NemotronH (all four layer kinds, group-limited routing), saved with save_pretrained."""
    cfg = NemotronHConfig(
        vocab_size=VOCAB, hidden_size=64, hybrid_override_pattern="ME*-ME", num_attention_heads=4,
        num_key_value_heads=2, head_dim=16, mamba_num_heads=8, mamba_head_dim=8, ssm_state_size=16, n_groups=2,
        conv_kernel=4, chunk_size=8, n_routed_experts=8, num_experts_per_tok=2, moe_intermediate_size=32,
        moe_shared_expert_intermediate_size=48, intermediate_size=80, n_group=4, topk_group=2,
        routed_scaling_factor=2.5,
    )
    torch.manual_seed(0)
    model = NemotronHForCausalLM(cfg).eval()
    with torch.no_grad():  # move every weight off its init value, as training would
        for name, p in model.named_parameters():
            p.add_(torch.randn_like(p) * 0.05)
        for name, b in model.named_buffers():
            if "e_score_correction_bias" in name:
                b.uniform_(0.0, 0.1)
    path = tmp_path_factory.mktemp("hf") / "nemotron_h"
    model.save_pretrained(path)
    return model, path


@pytest.fixture(scope="module")
def ids() -> torch.Tensor:
    return torch.randint(0, VOCAB, (2, 21), generator=torch.Generator().manual_seed(1))


@torch.no_grad()
def test_loaded_checkpoint_matches_transformers(reference, ids) -> None:
    ref, path = reference
    ours = from_pretrained_hf(path).eval()
    assert ours.config.hybrid_override_pattern == "ME*-ME" and ours.config.n_group == 4
    expected = ref(ids).logits
    assert max_diff(ours(ids), expected) < 1e-4
    assert expected.abs().max() > 0.5


@torch.no_grad()
def test_cached_decoding_of_loaded_checkpoint_matches_transformers(reference, ids) -> None:
    ref, path = reference
    ours = from_pretrained_hf(path).eval()
    state = ours.allocate_state(n_slots=2, max_len=21)
    steps = [ours(ids[:, :11], state=state)] + [ours(ids[:, i:i + 1], state=state) for i in range(11, 21)]
    assert max_diff(torch.cat(steps, 1), ref(ids).logits) < 1e-4


@torch.no_grad()
def test_fused_expert_layout_loads(reference, ids, tmp_path: Path) -> None:
    """transformers' in-memory layout: `model.*` keys and experts as 3D [E, out, in] tensors."""
    ref, path = reference
    sd = ref.state_dict()
    assert sd["model.layers.1.mixer.experts.up_proj"].dim() == 3
    save_file({k: v.contiguous() for k, v in sd.items()}, str(tmp_path / "model.safetensors"))
    (tmp_path / "config.json").write_text((path / "config.json").read_text())
    assert max_diff(from_pretrained_hf(tmp_path)(ids), ref(ids).logits) < 1e-4


@torch.no_grad()
def test_export_loads_in_transformers_with_identical_outputs(reference, ids, tmp_path: Path) -> None:
    ref, path = reference
    ours = from_pretrained_hf(path).eval()
    export_hf(ours, tmp_path)
    back = NemotronHForCausalLM.from_pretrained(tmp_path).eval()
    assert max_diff(back(ids).logits, ref(ids).logits) == 0.0
    assert max_diff(from_pretrained_hf(tmp_path)(ids), ours(ids)) == 0.0


def test_export_of_a_fresh_model_round_trips_through_transformers(tmp_path: Path) -> None:
    from evalsuite.model.backbone import build
    from evalsuite.model.config import BackboneConfig

    torch.manual_seed(2)
    ours = build(BackboneConfig.preset("tiny", hybrid_override_pattern="M*E-")).eval()
    export_hf(ours, tmp_path)
    back = NemotronHForCausalLM.from_pretrained(tmp_path).eval()
    x = torch.randint(0, ours.config.vocab_size, (1, 19), generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        assert max_diff(back(x).logits, ours(x)) < 1e-4
    assert config_from_hf(json.loads((tmp_path / "config.json").read_text())) == ours.config


def test_bad_checkpoint_dirs_give_one_clear_error(reference, tmp_path: Path) -> None:
    _, path = reference
    with pytest.raises(FileNotFoundError, match="config.json"):
        from_pretrained_hf(tmp_path)
    cfg = json.loads((path / "config.json").read_text())
    (tmp_path / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(FileNotFoundError, match="safetensors"):
        from_pretrained_hf(tmp_path)
    save_file({"backbone.embeddings.weight": torch.zeros(VOCAB, 64)}, str(tmp_path / "model.safetensors"))
    with pytest.raises(ValueError, match="missing"):
        from_pretrained_hf(tmp_path)
    cfg["mlp_hidden_act"] = "gelu"
    with pytest.raises(ValueError, match="mlp_hidden_act"):
        config_from_hf(cfg)


def test_state_dict_names_are_the_checkpoint_names(reference) -> None:
    _, path = reference
    from safetensors import safe_open

    with safe_open(str(path / "model.safetensors"), "pt") as f:
        hub_keys = set(f.keys())
    ours: LanguageModel = from_pretrained_hf(path)
    assert set(ours.state_dict()) == hub_keys


# The published Nemotron-3-Nano-30B-A3B config.json (the fields that matter, as on the hub).
NANO_HUB_CONFIG = {
    "architectures": ["NemotronHForCausalLM"], "model_type": "nemotron_h", "attention_bias": False,
    "chunk_size": 128, "conv_kernel": 4, "expand": 2, "head_dim": 128, "hidden_size": 2688,
    "hybrid_override_pattern": "MEMEM*EMEMEM*EMEMEM*EMEMEM*EMEMEM*EMEMEMEM*EMEMEMEME", "intermediate_size": 1856,
    "layer_norm_epsilon": 1e-05, "mamba_head_dim": 64, "mamba_hidden_act": "silu", "mamba_num_heads": 64,
    "mamba_proj_bias": False, "max_position_embeddings": 262144, "mlp_bias": False, "mlp_hidden_act": "relu2",
    "moe_intermediate_size": 1856, "moe_shared_expert_intermediate_size": 3712, "n_group": 1, "n_groups": 8,
    "n_routed_experts": 128, "n_shared_experts": 1, "norm_topk_prob": True, "num_attention_heads": 32,
    "num_experts_per_tok": 6, "num_hidden_layers": 52, "num_key_value_heads": 2, "residual_in_fp32": False,
    "rope_theta": 10000, "routed_scaling_factor": 2.5, "sliding_window": None, "ssm_state_size": 128,
    "tie_word_embeddings": False, "time_step_min": 0.001, "topk_group": 1, "torch_dtype": "bfloat16",
    "use_bias": False, "use_conv_bias": True, "vocab_size": 131072,
}


def test_published_config_maps_to_the_nano_preset() -> None:
    from evalsuite.model.config import BackboneConfig

    assert config_from_hf(NANO_HUB_CONFIG) == BackboneConfig.preset("nano-omni-30b-a3b")
    legacy_kinds = {**NANO_HUB_CONFIG, "hybrid_override_pattern": None,
                    "layers_block_type": ["mamba", "moe", "attention", "mlp"]}
    assert config_from_hf(legacy_kinds).hybrid_override_pattern == "ME*-"
