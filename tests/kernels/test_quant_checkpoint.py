"""Packed safetensors checkpoints: layout, round trip, sizes."""

from __future__ import annotations

import json

import pytest
import torch
from kernels_toy_model import build, inputs
from safetensors import safe_open
from safetensors.torch import save_file

from evalsuite import kernels
from evalsuite.kernels.checkpoint import checkpoint_size, load_packed, read_metadata, save_packed
from evalsuite.kernels.qlinear import FP8Linear, NVFP4Linear
from evalsuite.kernels.recipes import Recipe


@pytest.fixture(autouse=True)
def _no_grad():
    with torch.no_grad():
        yield


@pytest.mark.parametrize("recipe", ["fp8", "fp4", "fp4-all"])
def test_round_trip_gives_identical_tensors_and_logits(tmp_path, recipe):
    model = kernels.quantize_model(build(seed=0), recipe)
    path = save_packed(model, tmp_path / "m.safetensors")
    fresh = load_packed(build(seed=123), path)  # different init: everything must come from the file
    a, b = model.state_dict(), fresh.state_dict()
    assert a.keys() == b.keys()
    for k in a:
        assert a[k].dtype == b[k].dtype and torch.equal(a[k].reshape(-1).view(torch.uint8), b[k].reshape(-1).view(torch.uint8)), k
    assert kernels.report(fresh).formats() == kernels.report(model).formats()
    assert fresh.quant_recipe.name == recipe
    toks, img = inputs()
    assert torch.equal(fresh(toks, img), model(toks, img))


def test_layout_names_dtypes_and_metadata(tmp_path):
    model = kernels.quantize_model(build(), "fp4")
    path = save_packed(model, tmp_path / "m.safetensors")
    w = "backbone.layers.2.mixer.experts.1.up_proj.weight"
    f8 = "backbone.layers.0.mixer.in_proj.weight"
    with safe_open(str(path), framework="pt") as f:
        keys = set(f.keys())
        assert f.get_tensor(w + ".qdata").dtype == torch.uint8
        assert f.get_tensor(w + ".qdata").shape == (32, 16)
        assert f.get_tensor(w + ".block_scales").dtype == torch.float8_e4m3fn
        assert f.get_tensor(w + ".block_scales").shape == (32, 2)
        assert f.get_tensor(w + ".global_scale").shape == ()
        assert f.get_tensor(f8 + ".qdata").dtype == torch.float8_e4m3fn
        assert f.get_tensor(f8 + ".scale").dtype == torch.float32
    assert w not in keys and "lm_head.weight" in keys and "backbone.layers.2.mixer.gate.weight" in keys
    meta = read_metadata(path)
    layers = json.loads(meta["evalsuite.layers"])
    assert layers["backbone.layers.2.mixer.experts.1.up_proj"] == "nvfp4"
    assert layers["backbone.layers.0.mixer.in_proj"] == "fp8"
    assert "lm_head" not in layers and meta["evalsuite.kv_cache_dtype"] == "bf16"


def test_load_into_meta_model_materializes_it(tmp_path):
    model = kernels.quantize_model(build(), "fp4-all")
    path = save_packed(model, tmp_path / "m.safetensors")
    with torch.device("meta"):
        skeleton = build()
    loaded = load_packed(skeleton, path)
    assert not any(t.is_meta for t in loaded.state_dict().values())
    toks, img = inputs()
    assert torch.equal(loaded(toks, img), model(toks, img))


def test_per_channel_fp8_and_custom_recipe_round_trip(tmp_path):
    recipe = Recipe("custom", "", rules=(("backbone.layers.*.mixer.**", "fp8-channel"),))
    model = kernels.quantize_model(build(), recipe)
    path = save_packed(model, tmp_path / "m.safetensors")
    fresh = load_packed(build(seed=5), path)
    layer = fresh.backbone.layers[1].mixer.q_proj
    assert isinstance(layer, FP8Linear) and layer.scale.shape == (32, 1)
    assert not hasattr(fresh, "quant_recipe")  # a custom recipe's rules are not in the file
    toks, img = inputs()
    assert torch.equal(fresh(toks, img), model(toks, img))


def test_size_report_matches_layout_arithmetic(tmp_path):
    model = kernels.quantize_model(build(), "fp4-all")
    path = save_packed(model, tmp_path / "m.safetensors")
    size = checkpoint_size(path)
    nv = size.by_format["nvfp4"]
    n_weights = sum(m.in_features * m.out_features for m in model.modules() if isinstance(m, NVFP4Linear))
    n_layers = sum(isinstance(m, NVFP4Linear) for m in model.modules())
    assert nv["weights"] == n_weights
    assert nv["bytes"] == n_weights // 2 + n_weights // 16 + 4 * n_layers
    assert nv["bits_per_weight"] == pytest.approx(4.5 + 32 * n_layers / n_weights)
    assert size.quantized_bits_per_weight == pytest.approx(nv["bits_per_weight"])
    assert size.by_format["bf16"]["bits_per_weight"] == 16
    tensor_bytes = sum(r["bytes"] for r in size.by_format.values())
    assert tensor_bytes < size.file_bytes < tensor_bytes + 16384  # header only on top
    assert "nvfp4" in size.table()


def test_bad_files_are_clear_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="packed checkpoint not found"):
        read_metadata(tmp_path / "missing.safetensors")
    plain = tmp_path / "plain.safetensors"
    save_file({"x": torch.zeros(2)}, str(plain))
    with pytest.raises(ValueError, match="is not an evalsuite packed checkpoint"):
        load_packed(build(), plain)
    model = kernels.quantize_model(build(), "fp4")
    path = save_packed(model, tmp_path / "m.safetensors")
    other = build()
    del other.backbone.layers[2].mixer.experts[3]
    with pytest.raises(ValueError, match="experts.3.up_proj has no counterpart in the model"):
        load_packed(other, path)


def test_damaged_metadata_and_unknown_dtypes_are_clear_errors(tmp_path):
    from evalsuite.kernels.checkpoint import FORMAT_TAG, checkpoint_size

    no_layers = tmp_path / "no_layers.safetensors"
    save_file({"x": torch.zeros(2)}, str(no_layers), metadata={"evalsuite.format": FORMAT_TAG})
    with pytest.raises(ValueError, match="metadata evalsuite.layers is missing or not JSON"):
        load_packed(build(), no_layers)  # was KeyError: 'evalsuite.layers'
    bad_json = tmp_path / "bad_json.safetensors"
    save_file({"x": torch.zeros(2)}, str(bad_json), metadata={"evalsuite.format": FORMAT_TAG, "evalsuite.layers": "{"})
    with pytest.raises(ValueError, match="metadata evalsuite.layers is missing or not JSON"):
        checkpoint_size(bad_json)
    model = kernels.quantize_model(build(), "fp4")
    path = save_packed(model, tmp_path / "m.safetensors")
    cut = tmp_path / "cut.safetensors"
    cut.write_bytes(path.read_bytes()[:50])
    with pytest.raises(ValueError, match=rf"^{cut} is not a readable safetensors file"):
        load_packed(build(), cut)
    # int16 was missing from the size table
    odd = tmp_path / "odd.safetensors"
    save_file({"x": torch.zeros(1000, dtype=torch.int16)}, str(odd),
              metadata={"evalsuite.format": FORMAT_TAG, "evalsuite.layers": "{}"})
    assert checkpoint_size(odd).by_format["i16"]["bytes"] == 2000  # was 4000: an unknown dtype counted 32 bits


def _with_shared_encoder(model):
    """``video.vision`` is the same module as ``vision``, as in the omni model: state_dict() lists its tensors twice."""
    model.video = torch.nn.Module()
    model.video.vision = model.vision
    return model


def test_a_shared_submodule_is_stored_once_and_loads_under_both_names(tmp_path):
    recipe = Recipe("enc", "", rules=(("vision.0", "fp8"), ("backbone.layers.*.mixer.**", "nvfp4")))
    model = kernels.quantize_model(_with_shared_encoder(build(seed=0)), recipe)
    assert model.video.vision[0] is model.vision[0] and isinstance(model.vision[0], FP8Linear)
    path = save_packed(model, tmp_path / "m.safetensors")  # safetensors refused the aliased tensors
    with safe_open(str(path), framework="pt") as f:
        keys = set(f.keys())
    assert "vision.0.weight.qdata" in keys and "vision.2.weight" in keys
    assert not any(k.startswith("video.") for k in keys)
    fresh = load_packed(_with_shared_encoder(build(seed=7)), path)
    assert fresh.video.vision is fresh.vision and isinstance(fresh.vision[0], FP8Linear)
    assert torch.equal(fresh.video.vision[2].weight, model.vision[2].weight)
    assert torch.equal(fresh.vision[0].qdata.view(torch.uint8), model.vision[0].qdata.view(torch.uint8))
    toks, img = inputs()
    assert torch.equal(fresh(toks, img), model(toks, img))


def test_a_file_of_another_shape_or_format_is_one_line_and_leaves_the_model_as_it_was(tmp_path):
    from kernels_toy_model import ToyLM

    model = kernels.quantize_model(build(seed=0), "fp4")
    path = save_packed(model, tmp_path / "m.safetensors")
    wider = ToyLM(d=48).to(torch.bfloat16)
    before = {k: v.clone() for k, v in wider.state_dict().items()}
    with pytest.raises(ValueError) as err:
        load_packed(wider, path)
    msg = str(err.value)
    assert "\n" not in msg and msg.startswith(f"{path} does not fit this model: ")
    assert "backbone.embeddings.weight is bfloat16 [48, 32] in the file, the model expects bfloat16 [48, 48]" in msg
    assert kernels.report(wider).by_format().keys() == {"bf16"}  # no layer swapped
    assert all(torch.equal(v, before[k]) for k, v in wider.state_dict().items())

    # the metadata names a layer fp8 while the file holds per-channel scales: another format
    recipe = Recipe("custom", "", rules=(("backbone.layers.*.mixer.**", "fp8-channel"),))
    chan = save_packed(kernels.quantize_model(build(), recipe), tmp_path / "chan.safetensors")
    with safe_open(str(chan), framework="pt") as f:
        tensors = {k: f.get_tensor(k) for k in f.keys()}
        meta = f.metadata()
    meta["evalsuite.layers"] = meta["evalsuite.layers"].replace("fp8-channel", "fp8")
    save_file(tensors, str(tmp_path / "relabeled.safetensors"), metadata=meta)
    with pytest.raises(ValueError, match=r"mixer.in_proj.weight.scale is float32 \[64, 1\] in the file, "
                                         r"the model expects float32 \[\]"):
        load_packed(build(), tmp_path / "relabeled.safetensors")
    # an fp8 layer whose codes are stored as bytes: same shape, another dtype
    qdata = "backbone.layers.0.mixer.in_proj.weight.qdata"
    tensors[qdata] = tensors[qdata].view(torch.uint8)
    meta["evalsuite.layers"] = meta["evalsuite.layers"].replace('"fp8"', '"fp8-channel"')
    save_file(tensors, str(tmp_path / "bytes.safetensors"), metadata=meta)
    with pytest.raises(ValueError, match=r"in_proj.weight.qdata is uint8 \[64, 32\] in the file, the model expects "
                                         r"float8_e4m3fn \[64, 32\]$"):
        load_packed(build(), tmp_path / "bytes.safetensors")
    # a tensor the model does not have
    tensors[qdata] = tensors[qdata].view(torch.float8_e4m3fn)
    tensors["extra.weight"] = torch.zeros(2)
    save_file(tensors, str(tmp_path / "extra.safetensors"), metadata=meta)
    with pytest.raises(ValueError, match="1 tensors of the file are not in the model: extra.weight$"):
        load_packed(build(), tmp_path / "extra.safetensors")


def test_a_packed_checkpoint_is_readable_as_the_umask_allows_and_keeps_its_mode(tmp_path):
    import os

    model = kernels.quantize_model(build(), "fp8")
    old = os.umask(0o022)
    try:
        path = save_packed(model, tmp_path / "m.safetensors")
        assert path.stat().st_mode & 0o777 == 0o644  # safetensors' temp file is 0600
        os.chmod(path, 0o640)
        save_packed(model, path)
        assert path.stat().st_mode & 0o777 == 0o640
    finally:
        os.umask(old)


def test_save_packed_makes_the_folder_it_writes_into(tmp_path):
    """As `weights.save`: a path in a folder that does not exist yet is written, not a SafetensorError
    naming a temp file."""
    model = kernels.quantize_model(build(), "fp8")
    path = save_packed(model, tmp_path / "new" / "sub" / "m.safetensors")
    assert path.is_file() and read_metadata(path)["evalsuite.format"] == "packed-v1"


def test_tied_weights_stay_tied_through_load_and_save_again(tmp_path):
    """An LM head tied to the embedding is stored once; loading gave each name a Parameter of its
    own (assign=True), so the model was no longer tied and saving it again was refused by safetensors
    ("Some tensors share memory")."""
    from evalsuite.model.backbone import LanguageModel
    from evalsuite.model.config import BackboneConfig

    cfg = BackboneConfig(tie_word_embeddings=True)
    torch.manual_seed(0)
    model = kernels.quantize_model(LanguageModel(cfg).to(torch.bfloat16), "fp8")
    first = save_packed(model, tmp_path / "a.safetensors")
    loaded = load_packed(LanguageModel(cfg).to(torch.bfloat16), first)
    assert loaded.lm_head.weight is loaded.backbone.embeddings.weight
    second = save_packed(loaded, tmp_path / "b.safetensors")
    with safe_open(str(first), "pt") as a, safe_open(str(second), "pt") as b:
        assert sorted(a.keys()) == sorted(b.keys())
        assert all(torch.equal(a.get_tensor(k), b.get_tensor(k)) for k in a.keys())


def test_a_file_with_untied_weights_does_not_load_tied(tmp_path):
    """A checkpoint of an untied model holds the LM head and the embedding apart; loading it into a
    tied model kept one of them silently. Strict: one line; not strict: they load apart."""
    from evalsuite.model.backbone import LanguageModel
    from evalsuite.model.config import BackboneConfig

    torch.manual_seed(0)
    untied = kernels.quantize_model(LanguageModel(BackboneConfig()).to(torch.bfloat16), "fp8")
    path = save_packed(untied, tmp_path / "untied.safetensors")
    tied_cfg = BackboneConfig(tie_word_embeddings=True)
    with pytest.raises(ValueError, match=r"untied\.safetensors does not fit this model: it holds "
                                         r"backbone\.embeddings\.weight, lm_head\.weight as different tensors"):
        load_packed(LanguageModel(tied_cfg).to(torch.bfloat16), path)
    loose = load_packed(LanguageModel(tied_cfg).to(torch.bfloat16), path, strict=False)
    assert torch.equal(loose.lm_head.weight, untied.lm_head.weight)
    assert torch.equal(loose.backbone.embeddings.weight, untied.backbone.embeddings.weight)
