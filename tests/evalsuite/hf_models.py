"""Tiny random transformers model folders for the ``hf:`` backend tests, built offline from configs.

Each folder holds what a downloaded checkpoint holds: ``config.json`` + weights, a tokenizer trained
here with `tokenizers` (byte-level BPE, the model family's special tokens), a chat template, and for
vision/audio models a PIL image processor and a Whisper feature extractor. No hub, no torchvision.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

CORPUS = [
    "What is the total? The total is 42.50 and the date is 2024-01-31.",
    "Invoice number, customer name, amount due. Click: OK Cancel Submit.",
    "Answer with the option's letter. A. red B. blue C. green D. yellow",
    "Transcript of the audio: hello world. Text in the image: TOTAL 12.00",
]

QWEN_VL_SPECIAL = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|vision_start|>", "<|vision_end|>",
                   "<|image_pad|>", "<|video_pad|>"]
OMNI_SPECIAL = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|vision_bos|>", "<|vision_eos|>", "<|IMAGE|>",
                "<|VIDEO|>", "<|audio_bos|>", "<|audio_eos|>", "<|AUDIO|>"]

# Qwen-style ChatML; media parts become the family's placeholder runs.
_TEMPLATE = (
    "{% for m in messages %}<|im_start|>{{ m.role }}\n"
    "{% if m.content is string %}{{ m.content }}{% else %}{% for c in m.content %}"
    "{% if c.type == 'image' %}IMAGE{% elif c.type == 'video' %}VIDEO{% elif c.type == 'audio' %}AUDIO"
    "{% else %}{{ c.text }}{% endif %}{% endfor %}{% endif %}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
QWEN_VL_TEMPLATE = (_TEMPLATE.replace("IMAGE", "<|vision_start|><|image_pad|><|vision_end|>")
                    .replace("VIDEO", "<|vision_start|><|video_pad|><|vision_end|>").replace("AUDIO", ""))
OMNI_TEMPLATE = (_TEMPLATE.replace("IMAGE", "<|vision_bos|><|IMAGE|><|vision_eos|>")
                 .replace("VIDEO", "<|vision_bos|><|VIDEO|><|vision_eos|>")
                 .replace("AUDIO", "<|audio_bos|><|AUDIO|><|audio_eos|>"))


def train_tokenizer(special: list[str], template: str, vocab: int = 320, extra: dict[str, str] | None = None):
    """A byte-level BPE tokenizer trained on a few sentences, wrapped for transformers."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab, special_tokens=special,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train_from_iterator(CORPUS, trainer)
    kwargs = {"extra_special_tokens": extra} if extra else {}
    return PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<|im_end|>", pad_token="<|endoftext|>",
                                   chat_template=template, **kwargs)


def _text_config(tok, **kw) -> dict:
    ids = {t: tok.convert_tokens_to_ids(t) for t in ("<|endoftext|>", "<|im_end|>")}
    return dict(vocab_size=len(tok), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                num_attention_heads=2, num_key_value_heads=1, max_position_embeddings=2048,
                rope_parameters={"rope_type": "default", "rope_theta": 10000.0, "mrope_section": [2, 3, 3]},
                bos_token_id=ids["<|endoftext|>"], eos_token_id=ids["<|im_end|>"],
                pad_token_id=ids["<|endoftext|>"], **kw)


def _vision(**kw) -> dict:
    return dict(depth=1, hidden_size=32, intermediate_size=64, num_heads=2, out_hidden_size=32, patch_size=14,
                spatial_merge_size=2, temporal_patch_size=2, window_size=56, fullatt_block_indexes=[0], **kw)


def _image_processor():
    from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import Qwen2VLImageProcessorPil

    # 4..36 patches of 28x28 per image: tiny token counts
    return Qwen2VLImageProcessorPil(min_pixels=28 * 28 * 4, max_pixels=28 * 28 * 36)


def _finish(model, tok, path: Path, *preprocessors) -> Path:
    """Save like a downloaded checkpoint; several preprocessors share one preprocessor_config.json, as
    in Qwen2.5-Omni's (image processor and feature extractor keys side by side)."""
    with torch.no_grad():  # move weights off their init values so outputs depend on every input
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.02)
    model.eval().save_pretrained(path)
    tok.save_pretrained(path)
    merged: dict = {}
    for obj in preprocessors:
        merged.update(obj.to_dict())
    if merged:
        (path / "preprocessor_config.json").write_text(json.dumps(merged, indent=1, default=str))
    return path


def _qwen_vl_token_ids(tok) -> dict[str, int]:
    """The Qwen-VL configs' media token ids (Qwen2.5-VL and Qwen3-VL name them alike)."""
    ids = {t: tok.convert_tokens_to_ids(t) for t in QWEN_VL_SPECIAL}
    return {"image_token_id": ids["<|image_pad|>"], "video_token_id": ids["<|video_pad|>"],
            "vision_start_token_id": ids["<|vision_start|>"], "vision_end_token_id": ids["<|vision_end|>"]}


def build_qwen2_5_vl(path: Path, seed: int = 0) -> Path:
    from transformers import Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration

    tok = train_tokenizer(QWEN_VL_SPECIAL, QWEN_VL_TEMPLATE)
    cfg = Qwen2_5_VLConfig(text_config=_text_config(tok), vision_config=_vision(), **_qwen_vl_token_ids(tok))
    torch.manual_seed(seed)
    return _finish(Qwen2_5_VLForConditionalGeneration(cfg), tok, path, _image_processor())


# the Qwen-Omni processors' named special tokens
OMNI_EXTRA = {"image_token": "<|IMAGE|>", "video_token": "<|VIDEO|>", "audio_token": "<|AUDIO|>",
              "vision_bos_token": "<|vision_bos|>", "vision_eos_token": "<|vision_eos|>",
              "audio_bos_token": "<|audio_bos|>", "audio_eos_token": "<|audio_eos|>"}


def build_qwen2_5_omni_thinker(path: Path, seed: int = 0) -> Path:
    from transformers import (Qwen2_5OmniThinkerConfig, Qwen2_5OmniThinkerForConditionalGeneration,
                              WhisperFeatureExtractor)

    tok = train_tokenizer(OMNI_SPECIAL, OMNI_TEMPLATE, extra=OMNI_EXTRA)
    ids = {t: tok.convert_tokens_to_ids(t) for t in OMNI_SPECIAL}
    cfg = Qwen2_5OmniThinkerConfig(
        text_config=_text_config(tok),
        vision_config=_vision(),
        audio_config=dict(num_mel_bins=80, encoder_layers=1, encoder_attention_heads=2, encoder_ffn_dim=64,
                          d_model=32, output_dim=32, n_window=50, max_source_positions=1500),
        audio_token_index=ids["<|AUDIO|>"], image_token_index=ids["<|IMAGE|>"], video_token_index=ids["<|VIDEO|>"],
        audio_start_token_id=ids["<|audio_bos|>"], audio_end_token_id=ids["<|audio_eos|>"],
        vision_start_token_id=ids["<|vision_bos|>"], vision_end_token_id=ids["<|vision_eos|>"],
        user_token_id=tok.convert_tokens_to_ids("user") or 0,
    )
    torch.manual_seed(seed)
    fe = WhisperFeatureExtractor(feature_size=80, sampling_rate=16000)
    return _finish(Qwen2_5OmniThinkerForConditionalGeneration(cfg), tok, path, _image_processor(), fe)


def build_nemotron_h(path: Path, seed: int = 0) -> Path:
    """A tiny NemotronH text model (Mamba-2, MoE, attention and MLP layers) with a ChatML template."""
    from transformers import NemotronHConfig, NemotronHForCausalLM

    tok = train_tokenizer(QWEN_VL_SPECIAL[:3], _TEMPLATE.replace("IMAGE", "").replace("VIDEO", "").replace("AUDIO", ""))
    cfg = NemotronHConfig(
        vocab_size=len(tok), hidden_size=32, hybrid_override_pattern="ME*-", num_attention_heads=2,
        num_key_value_heads=1, head_dim=16, mamba_num_heads=4, mamba_head_dim=8, ssm_state_size=8, n_groups=1,
        conv_kernel=4, chunk_size=8, n_routed_experts=4, num_experts_per_tok=2, moe_intermediate_size=16,
        moe_shared_expert_intermediate_size=16, intermediate_size=32, n_group=1, topk_group=1,
        eos_token_id=tok.convert_tokens_to_ids("<|im_end|>"), pad_token_id=tok.convert_tokens_to_ids("<|endoftext|>"),
        bos_token_id=tok.convert_tokens_to_ids("<|endoftext|>"),
    )
    torch.manual_seed(seed)
    return _finish(NemotronHForCausalLM(cfg), tok, path)


def _qwen3_vision(**kw) -> dict:
    return dict(depth=2, hidden_size=32, intermediate_size=64, num_heads=2, out_hidden_size=32, patch_size=16,
                spatial_merge_size=2, temporal_patch_size=2, num_position_embeddings=64, deepstack_visual_indexes=[0],
                **kw)


def _qwen3_text_config(tok, **kw) -> dict:
    cfg = _text_config(tok, head_dim=16, **kw)
    cfg["rope_parameters"] = {"rope_type": "default", "rope_theta": 10000.0, "mrope_section": [2, 3, 3],
                              "mrope_interleaved": True}
    return cfg


def _qwen3_image_processor():
    from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import Qwen2VLImageProcessorPil

    # Qwen3-VL's 16-pixel patches: 4..36 patches of 32x32 per image
    return Qwen2VLImageProcessorPil(patch_size=16, min_pixels=32 * 32 * 4, max_pixels=32 * 32 * 36)


def build_qwen3_vl(path: Path, seed: int = 0) -> Path:
    """A tiny Qwen3-VL (deepstack vision, interleaved M-RoPE, ``<t seconds>`` video timestamps)."""
    from transformers import Qwen3VLConfig, Qwen3VLForConditionalGeneration

    tok = train_tokenizer(QWEN_VL_SPECIAL, QWEN_VL_TEMPLATE)
    cfg = Qwen3VLConfig(text_config=_qwen3_text_config(tok), vision_config=_qwen3_vision(), **_qwen_vl_token_ids(tok))
    torch.manual_seed(seed)
    return _finish(Qwen3VLForConditionalGeneration(cfg), tok, path, _qwen3_image_processor())


def build_qwen3_omni_moe_thinker(path: Path, seed: int = 0) -> Path:
    """A tiny Qwen3-Omni thinker (MoE text model; its processor pads audio clips to the longest)."""
    from transformers import (Qwen3OmniMoeThinkerConfig, Qwen3OmniMoeThinkerForConditionalGeneration,
                              WhisperFeatureExtractor)

    tok = train_tokenizer(OMNI_SPECIAL, OMNI_TEMPLATE, extra=OMNI_EXTRA)
    ids = {t: tok.convert_tokens_to_ids(t) for t in OMNI_SPECIAL}
    cfg = Qwen3OmniMoeThinkerConfig(
        text_config=_qwen3_text_config(tok, moe_intermediate_size=16, num_experts=4, num_experts_per_tok=2),
        vision_config=_qwen3_vision(),
        audio_config=dict(num_mel_bins=128, encoder_layers=1, encoder_attention_heads=2, encoder_ffn_dim=64,
                          d_model=32, output_dim=32, n_window=50, max_source_positions=1500,
                          downsample_hidden_size=16, n_window_infer=100),
        audio_token_id=ids["<|AUDIO|>"], image_token_id=ids["<|IMAGE|>"], video_token_id=ids["<|VIDEO|>"],
        audio_start_token_id=ids["<|audio_bos|>"], vision_start_token_id=ids["<|vision_bos|>"],
        user_token_id=tok.convert_tokens_to_ids("user") or 0,
    )
    torch.manual_seed(seed)
    fe = WhisperFeatureExtractor(feature_size=128, sampling_rate=16000)
    return _finish(Qwen3OmniMoeThinkerForConditionalGeneration(cfg), tok, path, _qwen3_image_processor(), fe)
