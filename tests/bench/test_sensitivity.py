"""bench/sensitivity.py: SQNR arithmetic, per-layer measurement on the seed-0 tiny model, the proposed
recipe (choices, pattern compression, JSON round trip), built-in summaries and the command line."""

from __future__ import annotations

import copy
import json
import math
import random

import pytest
import torch
from torch import nn

from evalsuite.kernels import quantize_model, recipes, report
from evalsuite.kernels.qlinear import FP8Linear, NVFP4Linear
from evalsuite.kernels.recipes import NEVER_QUANTIZED, Recipe

from bench_scripts import load_bench_script

S = load_bench_script("sensitivity")
(QUANTIZABLE, calibration_prompts, check_recipe, choices_to_rules, load_model, logits_sqnr, main, measure, probe, propose,
 recipe_summary, sqnr_db, sqnr_from_sums) = (
    S.QUANTIZABLE, S.calibration_prompts, S.check_recipe, S.choices_to_rules, S.load_model, S.logits_sqnr, S.main,
    S.measure, S.probe, S.propose, S.recipe_summary, S.sqnr_db, S.sqnr_from_sums)

TASKS = ("docqa", "gui")


@pytest.fixture(scope="module")
def calibrated(tmp_path_factory):
    """The seed-0 tiny model, one train prompt each of docqa and gui, and their measurement."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("EVALSUITE_CACHE", str(tmp_path_factory.getbasetemp() / "cache"))
        model, note = load_model("random")
        cal = calibration_prompts(model, TASKS, 1)
    stats, ref_logits = measure(model.lm, cal, ("nvfp4", "fp8", "fp8-channel"))
    return model, cal, stats, ref_logits


def _named(linear: nn.Linear, name: str = "backbone.layers.0.mixer.up_proj") -> nn.Module:
    """A module tree in which ``linear`` is called ``name``."""
    root = nn.Module()
    parent = root
    parts = name.split(".")
    for part in parts[:-1]:
        child = nn.Module()
        parent.add_module(part, child)
        parent = child
    parent.add_module(parts[-1], linear)
    return root


# ---- the number ---------------------------------------------------------------------------------
def test_sqnr_by_hand():
    ref = torch.full((10, 10), 2.0)  # Σ ref² = 400
    assert sqnr_db(ref, ref + 0.2) == pytest.approx(20.0)  # Σ noise² = 100 * 0.04 = 4 -> 10 log10(100)
    assert sqnr_db(torch.tensor([3.0, 4.0]), torch.tensor([3.0, 3.5])) == pytest.approx(10 * math.log10(25 / 0.25))
    assert sqnr_db(ref, ref) == math.inf  # identity: no noise
    assert math.isnan(sqnr_from_sums(0.0, 0.0)) and sqnr_from_sums(0.0, 1.0) == -math.inf


def test_probe_matches_the_real_quantized_modules():
    torch.manual_seed(0)
    linear = nn.Linear(64, 32, bias=False)
    root = _named(linear)
    x = torch.randn(2, 5, 64)  # [B, T, K]: the hook flattens tokens
    with probe(root, ("fp8", "nvfp4", "fp8-channel")) as stats:
        y = linear(x)
    st = stats["backbone.layers.0.mixer.up_proj"]
    assert st.tokens == 10 and st.params == 64 * 32
    for fmt, q in (("fp8", FP8Linear.from_linear(linear)), ("nvfp4", NVFP4Linear.from_linear(linear)),
                   ("fp8-channel", FP8Linear.from_linear(linear, "channel"))):
        expected = sqnr_db(y, q(x))
        print(fmt, st.sqnr(fmt), expected)
        assert st.sqnr(fmt) == pytest.approx(expected, rel=1e-6)  # the hook subtracts in fp32
    assert 15 < st.sqnr("nvfp4") < st.sqnr("fp8") < 40
    assert st.sqnr("bf16") == math.inf
    assert not linear._forward_hooks  # the probe removed its hook


def test_exactly_representable_layer_is_almost_exact():
    linear = nn.Linear(16, 4, bias=False)
    with torch.no_grad():  # E2M1 values at block amax 6, E4M3 values at tensor amax 448 after scaling
        linear.weight.copy_(torch.tensor([6.0, 3.0, 1.5, -3.0]).repeat(4, 4))
    x = torch.tensor([[1.0, 2.0, -4.0, 0.5] * 4, [8.0, -1.0, 2.0, 4.0] * 4])  # E4M3 after per-token scaling
    with probe(_named(linear), ("fp8", "nvfp4")) as stats:
        linear(x)
    st = stats["backbone.layers.0.mixer.up_proj"]
    print(st.sqnr("fp8"), st.sqnr("nvfp4"))
    assert st.sqnr("fp8") > 100 and st.sqnr("nvfp4") > 100  # only the fp32 rounding of non-power-of-2 scales


def test_nvfp4_layer_needs_in_features_multiple_of_16():
    linear = nn.Linear(24, 8, bias=False)
    with probe(_named(linear), ("nvfp4", "fp8")) as stats:
        linear(torch.randn(3, 24))
    st = stats["backbone.layers.0.mixer.up_proj"]
    assert st.sqnr("nvfp4") is None and "multiple of 16" in st.unavailable["nvfp4"]
    assert st.sqnr("fp8") > 20
    recipe, choices = propose(stats, floor_db=0.0, formats=("nvfp4", "fp8"))
    assert choices == {"backbone.layers.0.mixer.up_proj": "fp8"}


# ---- the tiny model -----------------------------------------------------------------------------
def test_every_backbone_linear_but_router_and_head_is_measured(calibrated):
    model, cal, stats, _ = calibrated
    assert len(cal.embeds) == 2 and cal.ids[0].startswith("docqa/train-") and cal.ids[1].startswith("gui/train-")
    assert len(stats) == 52  # 3 Mamba x 2, 2 attention x 4, 2 MoE x (8 x 2 + 2), 1 MLP x 2
    assert all(n.startswith("backbone.layers.") for n in stats)
    assert not any(n.endswith(".gate") or "lm_head" in n for n in stats)
    dense = stats["backbone.layers.0.mixer.in_proj"]
    assert dense.tokens == cal.tokens  # non-expert layers see every prompt token
    experts = [s for n, s in stats.items() if n.startswith("backbone.layers.1.mixer.experts.")
               and n.endswith("up_proj")]
    assert sum(s.tokens for s in experts) == 2 * cal.tokens  # top-2 routing


def test_nvfp4_is_noisier_than_fp8_on_every_layer(calibrated):
    _, _, stats, _ = calibrated
    for name, st in stats.items():
        if st.unused:
            continue
        nv, f8 = st.sqnr("nvfp4"), st.sqnr("fp8")
        assert 17 < nv < 25 and 25 < f8 < 35, (name, nv, f8)  # about 4.5 and 8 bits of signal
        assert nv < f8 - 5


def test_proposal_follows_the_floor(calibrated):
    model, _, stats, _ = calibrated
    low, _ = propose(stats, floor_db=0.0)
    assert low.rules == NEVER_QUANTIZED + ((QUANTIZABLE, "nvfp4"),)
    high, choices = propose(stats, floor_db=1000.0)
    assert high.rules == NEVER_QUANTIZED and set(choices.values()) == {"bf16"}
    used = [s for s in stats.values() if not s.unused]
    floor = sorted(s.sqnr("nvfp4") for s in used)[len(used) // 2]  # about half the layers fail nvfp4
    mid, choices = propose(stats, floor_db=floor)
    assert set(choices.values()) == {"nvfp4", "fp8"}
    for name, fmt in choices.items():
        st = stats[name]
        assert st.sqnr(fmt) >= floor
        assert (fmt == "nvfp4") == (st.sqnr("nvfp4") >= floor)  # fp8 only where nvfp4 misses the floor
        assert mid.format_for(name) == fmt
    check_recipe(model, mid, choices)  # the whole omni model: encoders, router, lm_head stay bf16


def test_rules_reproduce_any_choice(calibrated):
    _, _, stats, _ = calibrated
    names = list(stats)
    rng = random.Random(0)
    for trial in range(20):
        fmts = ["bf16", "fp8", "nvfp4", "fp8-channel"][: 1 + trial % 4]
        choices = {n: rng.choice(fmts) for n in names}
        if trial % 2:  # mostly one format, a few exceptions: the compressed shape
            choices = {n: ("fp8" if rng.random() < 0.1 else "nvfp4") for n in names}
        r = Recipe("t", "", rules=NEVER_QUANTIZED + choices_to_rules(choices))
        assert {n: r.format_for(n) for n in names} == choices
    expert_rule = {n: ("nvfp4" if ".experts." in n else "bf16") for n in names}
    assert choices_to_rules(expert_rule) == (("backbone.layers.*.mixer.experts.*.up_proj", "nvfp4"),
                                             ("backbone.layers.*.mixer.experts.*.down_proj", "nvfp4"))


def test_builtin_recipes_summary_and_logits(calibrated):
    _, cal, stats, ref_logits = calibrated
    lm = calibrated[0].lm
    fp8 = recipe_summary(stats, recipes.get("fp8"), 25.0)
    assert fp8["quantized_layers"] == 52
    assert fp8["min_sqnr_db"] == min(s.sqnr("fp8") for s in stats.values())
    assert fp8["passes_floor"] and fp8["layers_below_floor"] == 0
    fp4 = recipe_summary(stats, recipes.get("fp4"), 25.0)
    assert fp4["quantized_layers"] == 44  # q/k/v of 2 attention layers and the dense MLP stay bf16
    assert not fp4["passes_floor"] and ".experts." in fp4["min_layer"]
    assert recipe_summary(stats, recipes.get("bf16"), 25.0)["quantized_layers"] == 0
    assert logits_sqnr(lm, recipes.get("bf16"), cal, ref_logits) == math.inf  # same path, bit for bit
    e2e_fp8 = logits_sqnr(lm, recipes.get("fp8"), cal, ref_logits)
    e2e_fp4_all = logits_sqnr(lm, recipes.get("fp4-all"), cal, ref_logits)
    print("logits SQNR fp8", e2e_fp8, "fp4-all", e2e_fp4_all)
    assert 10 < e2e_fp4_all < e2e_fp8 < 40


def test_unused_experts_do_not_crash_or_block(calibrated):
    model, cal, _, _ = calibrated
    model = copy.deepcopy(model)
    gate = model.lm.backbone.layers[1].mixer.gate
    with torch.no_grad():
        gate.e_score_correction_bias[:2] = 100.0  # layer 1 routes every token to experts 0 and 1
    stats, _ = measure(model.lm, cal, ("nvfp4", "fp8"))
    unused = sorted(n for n, s in stats.items() if s.unused)
    assert unused == sorted(f"backbone.layers.1.mixer.experts.{j}.{p}" for j in range(2, 8)
                            for p in ("up_proj", "down_proj"))
    assert all(stats[n].sqnr("fp8") is None and stats[n].tokens == 0 for n in unused)
    assert stats["backbone.layers.1.mixer.experts.0.up_proj"].tokens == cal.tokens
    floor = 0.5 * (stats["backbone.layers.1.mixer.experts.0.up_proj"].sqnr("nvfp4")
                   + stats["backbone.layers.1.mixer.experts.1.up_proj"].sqnr("nvfp4"))
    recipe, choices = propose(stats, floor_db=floor, formats=("nvfp4", "fp8"))
    ups = {choices[f"backbone.layers.1.mixer.experts.{j}.up_proj"] for j in (0, 1)}
    assert ups == {"nvfp4", "fp8"}  # one measured sibling passes nvfp4, the other needs fp8
    assert {choices[n] for n in unused if n.endswith("up_proj")} == {"fp8"}  # the siblings' most careful
    assert "bf16" not in {choices[n] for n in unused}
    quantize_model(model, recipe)  # and the recipe applies to the model
    assert isinstance(model.lm.backbone.layers[1].mixer.experts[5].up_proj, FP8Linear)


def test_recipe_json_round_trip_and_swap(calibrated, tmp_path):
    model, _, stats, _ = calibrated
    used = [s for s in stats.values() if not s.unused]
    floor = sorted(s.sqnr("nvfp4") for s in used)[len(used) // 3]
    recipe, choices = propose(stats, floor_db=floor)
    text = json.dumps(recipe.to_dict())
    back = Recipe.from_dict(json.loads(text))
    assert back == recipe
    path = tmp_path / "r.json"
    path.write_text(text)
    loaded = recipes.load(path)
    assert loaded == recipe
    q = quantize_model(copy.deepcopy(model), loaded)
    formats = {layer.name.removeprefix("lm."): layer.fmt for layer in report(q).layers}
    assert {n: formats[n] for n in choices} == {n: {"bf16": "fp32"}.get(f, f) for n, f in choices.items()}
    assert formats["lm_head"] == "fp32" and formats["vision.blocks.0.attn.qkv"] == "fp32"


@pytest.mark.parametrize("data, match", [
    ({"name": "x", "rules": [["a", "int4"]]}, "format 'int4'"),
    ({"name": "x", "rules": [["a"]]}, "pairs"),
    ({"name": "x", "rules": [["a..b", "fp8"]]}, "expected a dotted module name"),
    ({"name": "x", "extra": 1}, "unknown field"),
    ({"rules": []}, "name"),
    ([1, 2], "expected an object"),
])
def test_recipe_from_dict_rejects_malformed(data, match):
    with pytest.raises(ValueError, match=match):
        Recipe.from_dict(data)


def test_recipe_load_errors_name_the_file(tmp_path):
    with pytest.raises(ValueError, match="cannot read recipe file .*missing.json"):
        recipes.load(tmp_path / "missing.json")
    bad = tmp_path / "bad.json"
    bad.write_text("{")
    with pytest.raises(ValueError, match="bad.json is not valid JSON"):
        recipes.load(bad)


def test_builtin_recipes_round_trip_unchanged():
    for name in recipes.names():
        r = recipes.get(name)
        assert Recipe.from_dict(json.loads(json.dumps(r.to_dict()))) == r


# ---- command line -------------------------------------------------------------------------------
@pytest.mark.parametrize("argv, expected", [
    (["--formats", "fp8,int4"], "argument --formats: unknown format 'int4'; expected a comma-separated list of: "
                                "nvfp4, fp8, fp8-channel"),
    (["--tasks", "docqa,math"], "unknown task 'math'; expected a comma-separated list of: docqa, gui, videoqa, "
                                "audioqa"),
    (["--floor-db", "loud"], "argument --floor-db: expected a finite number of dB, got 'loud'"),
    (["--checkpoint", "/no/such/dir"], "checkpoint /no/such/dir: expected a directory holding config.json"),
])
def test_cli_bad_input_is_one_line_exit_2(argv, expected, capsys):
    with pytest.raises(SystemExit) as info:
        main(argv)
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert err.startswith("python bench/sensitivity.py: error: ") and expected in err


def test_cli_table_json_and_recipe_file(tmp_path, capsys):
    out = tmp_path / "recipe.json"
    assert main(["--checkpoint", "random", "--tasks", "gui", "--n", "1", "--floor-db", "0", "--out", str(out)]) == 0
    text = capsys.readouterr().out
    assert "backbone.layers.6.mixer.experts.7.down_proj" in text and "lm_head " not in text.split("proposed")[0]
    assert "sensitivity-0dB" in text and "fp4-all" in text
    assert recipes.load(out).rules == NEVER_QUANTIZED + ((QUANTIZABLE, "nvfp4"),)
    assert main(["--checkpoint", "random", "--tasks", "gui", "--n", "1", "--json", "--formats", "fp8"]) == 0
    res = json.loads(capsys.readouterr().out)
    assert res["samples"] == ["gui/train-default-00000-q0"] and len(res["layers"]) == 52
    assert {layer["chosen"] for layer in res["layers"]} == {"fp8"}  # 20 dB floor; fp8 the only candidate
    assert res["recipes"]["fp8"]["bits_per_weight"] < res["recipes"]["bf16"]["bits_per_weight"] == 16.0
    fp4_all = res["recipes"]["fp4-all"]
    assert fp4_all["passes_floor"] == (fp4_all["min_sqnr_db"] >= 20) and fp4_all["quantized_layers"] == 52


@pytest.mark.parametrize("cut", ["header", "data", "empty"])
def test_cli_truncated_checkpoint_weights_are_one_line_naming_the_file(cut, tmp_path, capsys):
    """A weights file cut short (safetensors raises its own SafetensorError, neither OSError nor
    ValueError) is one line naming the file, exit 2."""
    from evalsuite.model import weights

    src = weights.DEFAULT_DIR / weights.WEIGHTS_FILE
    if not src.is_file():  # pragma: no cover
        pytest.skip(f"no {src}")
    ckpt = tmp_path / "ckpt"
    ckpt.mkdir()
    (ckpt / weights.CONFIG_FILE).write_text((weights.DEFAULT_DIR / weights.CONFIG_FILE).read_text())
    data = src.read_bytes()
    (ckpt / weights.WEIGHTS_FILE).write_bytes({"header": data[:1000], "data": data[: len(data) // 2], "empty": b""}[cut])
    with pytest.raises(SystemExit) as info:
        main(["--checkpoint", str(ckpt)])
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err
    why = {"header": "invalid header length", "data": "incomplete metadata, file not fully covered",
           "empty": "header too small"}[cut]
    assert err == (f"python bench/sensitivity.py: error: cannot load the checkpoint {ckpt}: {ckpt / 'model.safetensors'} "
                   f"is not a readable safetensors file (Error while deserializing header: {why})\n")


def test_cli_checkpoint_config_that_is_not_an_object_is_one_line(tmp_path, capsys):
    (tmp_path / "config.json").write_text("[]")
    with pytest.raises(SystemExit) as info:
        main(["--checkpoint", str(tmp_path)])
    assert info.value.code == 2
    assert capsys.readouterr().err == (
        f"python bench/sensitivity.py: error: cannot load the checkpoint {tmp_path}: {tmp_path / 'config.json'} "
        "holds a JSON list; expected an object written by model.weights.save\n")
