"""The GPU benchmark script: its CPU-side behaviour (no timing asserted; the GPU run is `make bench-gpu`)."""

from __future__ import annotations

import time

import pytest
import torch

from bench_scripts import load_bench_script, one_line_exit_2


def _load():
    return load_bench_script("bench_gpu")


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the no-CUDA exit")
def test_without_cuda_one_line_and_exit_zero(tmp_path, capsys):
    assert _load().main(["--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out.strip().splitlines()
    assert len(out) == 1 and "no CUDA device" in out[0]
    assert not any(tmp_path.iterdir())


def test_bad_section_is_one_clear_error(capsys):
    with pytest.raises(SystemExit):
        _load().main(["--device", "cpu", "--sections", "gemm,warp"])
    assert "unknown ['warp']" in capsys.readouterr().err


def test_shapes_come_from_the_config():
    shapes = _load().linear_shapes("nano-omni-30b-a3b")
    by_layer = {label: (n, k) for n, k, label in shapes}
    assert by_layer["mixer.experts.up_proj"] == (1856, 2688)
    assert by_layer["mixer.experts.down_proj"] == (2688, 1856)
    assert by_layer["lm_head"] == (131072, 2688)
    assert len({(n, k) for n, k, _ in shapes}) == len(shapes)


@pytest.mark.parametrize("recipe", ["bf16", "fp8", "fp4"])
def test_random_model_is_materialized_finite_and_runs(recipe):
    bench = _load()
    model = bench.build_random("tiny", recipe, torch.device("cpu"))
    for name, t in list(model.named_parameters()) + list(model.named_buffers()):
        assert not t.is_meta, name
        if t.dtype == torch.float8_e4m3fn:
            assert torch.isfinite(t.float()).all(), name
    from evalsuite.model.backbone import decode_step, prefill

    state = model.allocate_state(1, 16)
    logits = prefill(model, torch.randint(0, 512, (1, 8)), state)
    logits = decode_step(model, logits.argmax(-1), state)
    assert logits.shape == (1, 512) and torch.isfinite(logits).all()


def test_section_failure_is_recorded_and_the_others_run(tmp_path, monkeypatch):
    bench = _load()

    def boom(*args, **kwargs):
        raise RuntimeError("kernel exploded")

    def engine_ok(sec, *args, **kwargs):
        sec["rows"] = [{"recipe": "bf16", "batch": 1, "tok_s": 10.0, "launches_per_step": 5.0, "syncs_per_step": 1.0}]

    monkeypatch.setattr(bench, "run_gemm", boom)
    monkeypatch.setattr(bench, "run_engine", engine_ok)
    assert bench.main(["--device", "cpu", "--sections", "gemm,engine", "--out", str(tmp_path)]) == 0
    import json

    res = json.loads((tmp_path / "gpu.json").read_text())
    assert res["sections"]["gemm"]["error"] == "RuntimeError: kernel exploded"
    assert res["sections"]["engine"]["rows"][0]["tok_s"] == 10.0
    md = (tmp_path / "gpu.md").read_text()
    assert "Section gemm stopped: RuntimeError: kernel exploded" in md
    assert "| bf16 | 1 | 10 | 5 | 1.0 |" in md


def test_sass_from_sets_each_a_b_rows_instructions_per_value_after_the_run(tmp_path, capsys):
    """``--sass-from``: a GPU run's gpu.json gets, on each GEMV A/B row, its K loop's SASS per value
    for the run's architecture (compiled here, no GPU); the fp32 products cost more than the fp16."""
    import json

    from evalsuite.kernels.triton.static import toolchain_missing

    if missing := toolchain_missing():
        pytest.skip(missing)
    bench_gpu = _load()
    tile = {"block_n": 32, "block_k": 256, "split_k": 2}
    rows = [{"shape": "256x512", "layer": "x", "M": 1, "path": name, "ms": 0.01, "tile": "32x256 split 2",
             "tile_cfg": tile} for name in bench_gpu.GEMV_VARIANTS]  # fmt: skip
    rows.append({"shape": "256x512", "layer": "x", "M": 1, "path": "bf16", "ms": 0.02})
    out = tmp_path / "gpu.json"
    out.write_text(json.dumps({"env": {"sm": "9.0"}, "sections": {"gemm": {"rows": rows}}}))
    assert bench_gpu.main(["--sass-from", str(out)]) == 0
    got = {r["path"]: r.get("sass_per_value") for r in json.loads(out.read_text())["sections"]["gemm"]["rows"]}
    assert got["bf16"] is None
    assert 2.0 < got["nvfp4 gemv, A/B tile"] < got["nvfp4 gemv, fp32 products"] < 8.0, got
    assert got["nvfp4 gemv, Triton decode"] > got["nvfp4 gemv, A/B tile"]
    assert "SASS/value) |" in (tmp_path / "gpu.md").read_text()
    out.write_text(json.dumps({"env": {"device": "x86_64"}, "sections": {}}))
    with pytest.raises(SystemExit):
        bench_gpu.main(["--sass-from", str(out)])
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert "expected a CUDA run's gpu.json" in err and "no GPU architecture" in err
    with pytest.raises(SystemExit):
        bench_gpu.main(["--sass-from", str(tmp_path / "missing.json")])
    assert "expected a CUDA run's gpu.json" in capsys.readouterr().err


def test_moe_section_on_a_cpu_makes_its_rows_and_table(tmp_path):
    """The MoE section's plumbing at smoke sizes on a CPU (the tiny preset's expert shapes, 8 experts,
    top 2; NVFP4 under the interpreter): one row per shape, batch and path, each within its format's
    error, and its table."""
    import json

    bench = _load()
    assert bench.main(["--device", "cpu", "--smoke", "--sections", "moe", "--out", str(tmp_path)]) == 0
    sec = json.loads((tmp_path / "gpu.json").read_text())["sections"]["moe"]
    assert "error" not in sec and (sec["experts"], sec["top_k"]) == (8, 2)
    assert [(r["shape"], r["batch"], r["rows"], r["path"]) for r in sec["rows"]] == [
        (shape, batch, 2 * batch, path) for shape in ("64x128", "128x64") for batch in (1, 2)
        for path in ("bf16 grouped_mm", "nvfp4 grouped", "nvfp4 grouped, 16-row tiles")]  # fmt: skip
    for r in sec["rows"]:
        assert "error" not in r and r["ms"] > 0 and r["experts_used"] <= r["rows"], r
        assert r["rel_err"] < (1e-2 if r["path"].startswith("bf16") else 2e-2), r
    assert "### MoE at decode: one routed-expert projection, 8 experts, top 2" in (tmp_path / "gpu.md").read_text()


def test_gemm_section_makes_a_row_per_shape_m_and_path_and_a_failing_path_stops_nothing(tmp_path, monkeypatch):
    """run_gemm's plumbing with stand-in paths (the real ones are the GPU's): a row per shape, M and
    path, each timed against its format's reference and bf16; a path that raises is one error row."""
    import json

    bench = _load()

    def fails(x):
        raise RuntimeError("no kernel here")

    def paths(w):
        def exact(x):
            return x.float() @ w.float().t()

        n, k = w.shape
        named = {"bf16": bench.Path_(exact, 2 * n * k, "bf16"), "nvfp4 stand-in": bench.Path_(fails, n * k, "nvfp4"),
                 "nvfp4 exact": bench.Path_(exact, n * k, "nvfp4")}  # fmt: skip
        return named, {"bf16": exact, "nvfp4": exact}

    monkeypatch.setattr(bench, "gemm_paths", paths)
    monkeypatch.setattr(bench, "linear_shapes", lambda preset: [(32, 64, "a.proj")])
    assert bench.main(["--device", "cpu", "--smoke", "--sections", "gemm", "--m", "1,2", "--out", str(tmp_path)]) == 0
    rows = json.loads((tmp_path / "gpu.json").read_text())["sections"]["gemm"]["rows"]
    assert [(r["shape"], r["M"], r["path"]) for r in rows] == [
        (shape, m, p) for shape in ("32x64", "256x256") for m in (1, 2) for p in ("bf16", "nvfp4 stand-in", "nvfp4 exact")]
    for r in rows:
        if r["path"] == "nvfp4 stand-in":
            assert r["error"] == "RuntimeError: no kernel here" and "ms" not in r
        else:
            assert r["rel_err"] == 0.0 and r["ms"] > 0 and r["speedup_vs_bf16"] > 0 and r["weight_gbs"] > 0


def test_moe_routing_sorts_rows_by_expert_with_distinct_experts_per_token():
    bench = _load()
    g = torch.Generator().manual_seed(0)
    experts, offsets = bench.moe_routing(5, 16, 3, g, torch.device("cpu"))
    assert experts.tolist() == sorted(experts.tolist()) and experts.shape == (15,)
    assert offsets.tolist()[-1] == 15 and offsets.shape == (17,)
    assert torch.equal(torch.bincount(experts, minlength=16), offsets[1:] - offsets[:-1])


def test_gemm_table_names_the_tile_an_a_b_row_ran_on():
    bench = _load()
    rows = [{"shape": "64x128", "layer": "x", "M": 1, "path": "nvfp4 gemv, fp32 products", "ms": 0.01,
             "weight_gbs": 500.0, "rel_err": 1e-3, "tile": "32x512 split 2", "sass_per_value": 4.912},
            {"shape": "64x128", "layer": "x", "M": 1, "path": "nvfp4 gemv", "ms": 0.008, "weight_gbs": 600.0}]
    md = bench.markdown({"sections": {"gemm": {"rows": rows}}})
    assert "| nvfp4 gemv, fp32 products (32x512 split 2; 4.91 SASS/value) | 0.0100 |" in md and "| nvfp4 gemv | 0.0080 |" in md


def test_time_cap_interrupts_a_section():
    bench = _load()
    with pytest.raises(bench.SectionTimeout):
        with bench.time_cap(0.05):
            for _ in range(1000):
                time.sleep(0.01)


@pytest.mark.slow
def test_engine_and_compiled_sections_on_a_cpu_make_their_rows_and_table(tmp_path, monkeypatch):
    """The engine section's plumbing at smoke sizes on a CPU (the step's compile replaced by the
    uncompiled step, so no compiler runs): a row per recipe, batch and mode, and the tables."""
    import json

    from evalsuite.model import graphed
    from evalsuite.model.backbone import decode_step_static

    bench = _load()
    monkeypatch.setattr(graphed, "compiled_step", lambda: decode_step_static)
    monkeypatch.setattr(bench, "RECIPES", ("bf16",))
    assert bench.main(["--device", "cpu", "--smoke", "--sections", "engine,compiled", "--out", str(tmp_path)]) == 0
    res = json.loads((tmp_path / "gpu.json").read_text())
    eng, comp = res["sections"]["engine"], res["sections"]["compiled"]
    assert "error" not in eng and "error" not in comp
    assert [(r["batch"], r["cuda_graphs"], r["compile_step"]) for r in eng["rows"]] == [
        (1, "off", False), (1, "on", False), (2, "off", False), (2, "on", False)]
    assert [(r["recipe"], r["cuda_graphs"], r["compile_step"], r.get("compiled")) for r in comp["rows"]] == [
        ("bf16", "on", False, False), ("bf16", "on", True, True), ("fp4", "on", False, False), ("fp4", "on", True, True)]
    assert all(r["tokens"] == r["batch"] * 4 and r["tok_s"] > 0 and "error" not in r for r in eng["rows"] + comp["rows"])
    md = (tmp_path / "gpu.md").read_text()
    assert "### Tiny engine, decode step compiled" in md and "| on | yes |" in md


def test_precompile_step_reports_its_variants_and_stops_at_its_cap(tmp_path, monkeypatch):
    """The step before the sections, with the device's capability faked (the compile needs no GPU)."""
    from evalsuite.kernels.triton import HAS_TRITON

    if not HAS_TRITON:  # pragma: no cover
        pytest.skip("triton missing")
    from evalsuite.kernels.triton.static import toolchain_missing

    if toolchain_missing():  # pragma: no cover
        pytest.skip(toolchain_missing())
    from bench_scripts import BENCH

    monkeypatch.setenv("TRITON_CACHE_DIR", str(tmp_path))
    monkeypatch.setenv("TRITON_DEFAULT_FP_FUSION", "1")
    monkeypatch.syspath_prepend(str(BENCH))
    import static_kernels

    monkeypatch.setattr(static_kernels, "KERNELS", ("nvfp4_dequant",))
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: (9, 0))
    bench = _load()
    shapes = [(64, 128, "q_proj"), (32, 256, "k_proj")]
    info = bench.precompile_kernels(torch.device("cuda"), shapes, workers=2, cap_s=120)
    assert {k: info[k] for k in ("arch", "workers", "variants")} == {"arch": 90, "workers": 2, "variants": 2}
    assert "error" not in info
    capped = bench.precompile_kernels(torch.device("cuda"), shapes, workers=1, cap_s=0.01)
    assert "variants" not in capped and "time cap" in capped["error"]


def test_same_tile_path_runs_on_the_tuned_tile_or_says_why_not(monkeypatch):
    from evalsuite.kernels.triton import nvfp4_gemv as mod

    bench_gpu = _load()

    seen = []
    path = bench_gpu._SameTile(96, 128, lambda x, tile: seen.append(tile) or x)
    monkeypatch.setattr(mod, "tuned_tile", lambda n, k, rows: None)
    with pytest.raises(RuntimeError, match="no tuned 4-warp tile"):
        path(torch.zeros(1, 128))
    monkeypatch.setattr(mod, "tuned_tile", lambda n, k, rows: {"block_n": 32, "block_k": 256, "split_k": 4})
    path(torch.zeros(1, 128))
    path(torch.zeros(1, 128))
    assert seen == [{"block_n": 32, "block_k": 256, "split_k": 4}] * 2
    # a one-row-only tile (the fp32-product and Triton-decode variants spill on it): 32 x 512 instead
    seen.clear()
    path = bench_gpu._SameTile(96, 128, lambda x, tile: seen.append(tile) or x)
    monkeypatch.setattr(mod, "tuned_tile", lambda n, k, rows: {"block_n": 64, "block_k": 512, "split_k": 2})
    path(torch.zeros(1, 128))
    assert seen == [{"block_n": 32, "block_k": 512, "split_k": 2}]


def test_unknown_device_is_one_line(capsys):
    err = one_line_exit_2(_load().main, ["--device", "bogus"], capsys)
    assert err == ("python bench/bench_gpu.py: error: --device: expected cuda, cuda:N or cpu (a smoke test of the "
                   "script), got 'bogus'")


@pytest.mark.parametrize("content, why", [
    ("[]", "add_sass_per_value: the results are a JSON list, not an object"),
    ('{"env": [], "sections": {}}', "add_sass_per_value: expected an object with 'env' an object and "
                                   "'sections.gemm.rows' a list of objects"),
    ('{"env": {"sm": "9.0"}, "sections": {"gemm": {"rows": [1]}}}',
     "add_sass_per_value: expected an object with 'env' an object and 'sections.gemm.rows' a list of objects"),
])
def test_sass_from_a_foreign_json_is_one_line(content, why, tmp_path, capsys):
    f = tmp_path / "gpu.json"
    f.write_text(content)
    err = one_line_exit_2(_load().main, ["--sass-from", str(f)], capsys)
    assert err == f"python bench/bench_gpu.py: error: --sass-from {f}: expected a CUDA run's gpu.json: {why}"
    assert f.read_text() == content and not (tmp_path / "gpu.md").exists()


@pytest.mark.parametrize("under", [False, True])
def test_out_that_is_a_file_is_one_line_and_nothing_runs(under, tmp_path, monkeypatch, capsys):
    bench = _load()
    monkeypatch.setattr(bench, "run_gemm", lambda *a, **k: pytest.fail("a section ran"))
    afile = tmp_path / "afile"
    afile.write_text("keep")
    out = afile / "sub" if under else afile
    err = one_line_exit_2(bench.main, ["--device", "cpu", "--smoke", "--budget-s", "0", "--sections", "gemm",
                                        "--out", str(out)], capsys)  # fmt: skip
    where = f"--out {out}: {afile}" if under else f"--out {afile}"
    assert err == f"python bench/bench_gpu.py: error: {where} is a file; expected a folder for gpu.json and gpu.md"
    assert afile.read_text() == "keep"


@pytest.mark.parametrize("argv, expected", [
    (["--sections", "bogus"], "--sections: unknown ['bogus']; expected some of "
                              "['compiled', 'engine', 'full', 'gemm', 'moe']"),
    (["--sections", ","], "--sections: expected some of ['compiled', 'engine', 'full', 'gemm', 'moe'], got none"),
    (["--m", "1,0"], "--m: expected comma-separated integers >= 1, got '1,0'"),
    (["--budget-s", "nan"], "--budget-s: expected a finite number of seconds >= 0, got nan"),
    (["--preset", "bogus"], "--preset: expected one of nano-omni-30b-a3b, tiny, got 'bogus'"),
    (["--precompile-workers", "-1"], "--precompile-workers: expected an integer >= 0, got -1"),
])
def test_options_are_checked_before_the_no_cuda_exit(argv, expected, tmp_path, monkeypatch, capsys):
    """Without CUDA a bad option is still an error (exit 2), not the no-CUDA line (exit 0)."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    err = one_line_exit_2(_load().main, [*argv, "--out", str(tmp_path)], capsys)
    assert err == f"python bench/bench_gpu.py: error: {expected}"
    assert not any(tmp_path.iterdir())


def test_valid_options_without_cuda_still_one_line_exit_zero(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    out = tmp_path / "new" / "folder"
    assert _load().main(["--sections", "gemm,moe", "--m", "1,16", "--out", str(out)]) == 0
    assert capsys.readouterr().out == ("bench-gpu: no CUDA device here (torch.cuda.is_available() is False); "
                                       "nothing measured\n")
    assert not out.exists()


# ---- the budget: what is left after the precompile step, shared among the sections still to run ----
def _allocate(bench, order, left, used=None):
    """Each section's cap in ``order`` as main hands them out, each section using ``used[name]``
    seconds (default: all of its cap)."""
    caps = {}
    for i, name in enumerate(order):
        caps[name] = bench.section_cap(list(order[i:]), left)
        left -= min(caps[name], (used or {}).get(name, caps[name]))
    return caps


@pytest.mark.parametrize("precompile_s", [0.0, 75.0])
def test_section_caps_share_what_is_left_after_the_precompile_step(precompile_s):
    """The caps add up to no more than the budget left after the precompile step, and the full-size
    model's figures (three recipes of ~30 s, each started only with 20 s left) keep their minimum:
    scaled from the whole budget, a 75 s precompile left them 70 s and the sections after them none."""
    bench = _load()
    left = 290.0 - precompile_s
    caps = _allocate(bench, bench.DEFAULT_SECTIONS, left)
    assert sum(caps.values()) <= left + 1e-9
    assert caps["full"] >= bench.SECTION_MIN_S["full"] == 90.0
    assert all(caps[s] <= bench.SECTION_CAPS_S[s] for s in caps)
    assert all(caps[s] > 0 for s in caps)
    # the same sections in the old order (full last): the reserve still holds
    caps = _allocate(bench, ["gemm", "moe", "engine", "compiled", "full"], left)
    assert caps["full"] >= 90.0 and sum(caps.values()) <= left + 1e-9


def test_a_section_that_finishes_early_leaves_its_time_to_the_later_ones():
    bench = _load()
    order = list(bench.DEFAULT_SECTIONS)
    all_used = _allocate(bench, order, 215.0)
    early = _allocate(bench, order, 215.0, used={"gemm": 5.0})
    assert all(early[s] >= all_used[s] for s in order[1:]) and early["moe"] > all_used["moe"]
    # proportional to the nominal caps among the sections still to run, never above a section's own
    assert bench.section_cap(["moe", "engine"], 100.0) == pytest.approx(100.0 * 25 / 115)
    assert bench.section_cap(["gemm"], 1000.0) == 120.0
    assert bench.section_cap(["gemm", "full"], 0.0) == 0.0
    # the full-size model's minimum comes out of the others' shares ...
    assert bench.section_cap(["gemm", "full"], 150.0) == pytest.approx(150.0 - 90.0)
    assert bench.section_plan(["gemm", "full"], 150.0) == pytest.approx({"gemm": 60.0, "full": 90.0})
    assert bench.section_cap(["gemm", "full"], 200.0) == pytest.approx(200.0 * 120 / 270)  # its share is enough
    # ... but leaves each at least half of its own: on a small budget the first section still runs
    assert bench.section_cap(["gemm", "full"], 60.0) == pytest.approx(0.5 * 60.0 * 120 / 270)
    assert sum(bench.section_plan(list(bench.DEFAULT_SECTIONS), 60.0).values()) == pytest.approx(60.0)


def test_main_records_each_sections_cap_from_what_is_left(tmp_path, monkeypatch):
    """main runs the sections in the default order (the full-size model right after the GEMM
    sweep) and gives each `section_cap` of the budget left when it starts."""
    import json

    bench = _load()
    seen = []
    for name in ("run_gemm", "run_moe", "run_engine", "run_full"):
        monkeypatch.setattr(bench, name, lambda sec, *a, _n=name, **k: seen.append(_n))
    assert bench.main(["--device", "cpu", "--smoke", "--budget-s", "200", "--out", str(tmp_path)]) == 0
    res = json.loads((tmp_path / "gpu.json").read_text())
    assert list(res["sections"]) == list(bench.DEFAULT_SECTIONS) == ["gemm", "full", "moe", "engine", "compiled"]
    assert seen == ["run_gemm", "run_full", "run_moe", "run_engine", "run_engine"]
    caps = {name: sec["cap_s"] for name, sec in res["sections"].items()}
    order = list(bench.DEFAULT_SECTIONS)
    assert caps["gemm"] == pytest.approx(bench.section_cap(order, 200), abs=0.2)
    assert caps["gemm"] < 200 * 120 / 460  # the full-size model's minimum taken from it
    # the stand-ins take no time: each later section's cap is computed from (nearly) all 200 s again
    for i, name in enumerate(order[1:], 1):
        assert caps[name] == pytest.approx(bench.section_cap(order[i:], 200), abs=0.2), name
    assert caps["full"] == 90.0 and caps["engine"] == 90.0
    assert all(sec["seconds"] < 5 for sec in res["sections"].values())


# ---- the GEMM sweep's order ----------------------------------------------------------------------
def test_gemm_order_puts_the_models_layers_first_then_the_vocabulary_then_the_squares():
    bench = _load()
    shapes = bench.linear_shapes("nano-omni-30b-a3b") + [(8192, 8192, "square"), (4096, 4096, "square")]
    ordered = bench.gemm_order(shapes)
    labels = [label for _, _, label in ordered]
    layers = [s for s in shapes if s[2] not in ("lm_head", "square")]
    assert ordered[: len(layers)] == layers  # the model's order kept
    assert labels[len(layers):] == ["lm_head", "square", "square"]
    assert [(n, k) for n, k, label in ordered if label == "square"] == [(4096, 4096), (8192, 8192)]
    assert "mixer.experts.up_proj" in labels[: len(layers)]


# ---- launches and syncs per decode step: the prefill not charged to decode --------------------
def _counting_profiler(monkeypatch, bench):
    """count_launches_and_syncs stand-in: 1000 "launches" per prefill and 10 per decode step of the
    engine while ``fn`` runs (a CPU has no CUDA launches to count), 1 "sync" per prefill."""
    from evalsuite.model.engine import Engine

    def fake(fn):
        calls = {"prefill": 0, "decode": 0}
        orig_prefill, orig_decode = Engine._prefill, Engine._decode

        def prefill(self, group):
            calls["prefill"] += 1
            return orig_prefill(self, group)

        def decode(self, handles):
            calls["decode"] += 1
            return orig_decode(self, handles)

        Engine._prefill, Engine._decode = prefill, decode
        try:
            fn()
        finally:
            Engine._prefill, Engine._decode = orig_prefill, orig_decode
        return 1000 * calls["prefill"] + 10 * calls["decode"], calls["prefill"], calls["decode"]

    monkeypatch.setattr(bench, "count_launches_and_syncs", fake)


@pytest.mark.parametrize("prompt_len", [8, 24])
def test_launches_per_decode_step_leave_out_the_prefill(prompt_len, monkeypatch):
    """A profiled generate() of 8 tokens is one prefill and 7 decode steps: divided by 8 it charged
    the prefill's launches and syncs to decode. Counted over decode steps alone, each step is one
    decode step's work, whatever the prompt length."""
    bench = _load()
    _counting_profiler(monkeypatch, bench)
    model = bench._tiny_model("bf16", torch.device("cpu"))
    row = {}
    bench._engine_row(row, model, torch.device("cpu"), 2, "bf16", "off", False, prompt_len, 10)
    assert row["launches_per_step"] == 10.0 and row["syncs_per_step"] == 0.0 and row["device_ops_per_step"] == 1.0
    assert row["counted_steps"] == 8 and row["tokens"] == 20


def test_decode_step_counts_leave_the_engine_empty_and_refuse_too_many_steps(monkeypatch):
    from evalsuite.model.engine import Engine

    bench = _load()
    _counting_profiler(monkeypatch, bench)
    model = bench._tiny_model("bf16", torch.device("cpu"))
    engine = Engine(model, n_slots=3, max_len=16, cuda_graphs="off")
    prompts = [torch.arange(5) + i for i in range(3)]
    assert bench.decode_step_counts(engine, prompts, 6, 4, torch.device("cpu")) == (40, 0, 4)
    assert not engine.busy and engine.free_slots == 3
    with pytest.raises(ValueError, match="steps <= new_tokens - 2"):
        bench.decode_step_counts(engine, prompts, 6, 5, torch.device("cpu"))
    # more prompts than slots: the first step could not prefill them all
    with pytest.raises(RuntimeError, match="3 of 4 sequences admitted"):
        bench.decode_step_counts(engine, prompts + [torch.arange(4)], 6, 2, torch.device("cpu"))
    assert not engine.busy


# ---- the 8K prefill: timed warm ------------------------------------------------------------------
def test_full_section_times_a_second_prefill_after_an_untimed_one(monkeypatch):
    """The first prefill of a length pays the allocator's growth and the first calls' compiles and
    autotuning: it runs untimed, and the second is timed."""
    from evalsuite.model import backbone

    bench = _load()
    real = backbone.prefill
    calls = []

    def prefill(model, ids, state, *a, **k):
        calls.append(ids.shape)
        if ids.shape[1] != 64:  # the decode rows' 32-token prompts
            return real(model, ids, state, *a, **k)
        if [c[1] for c in calls].count(64) % 2:
            time.sleep(0.5)  # each recipe's first: the cold one

    monkeypatch.setattr(backbone, "prefill", prefill)
    sec = {}
    bench.run_full(sec, torch.device("cpu"), "tiny", (1,), 64, 2, bench.Deadline(300))
    rows = {r["recipe"]: r for r in sec["rows"]}
    assert set(rows) == {"bf16", "fp4", "fp8"} and not any("error" in r for r in rows.values()), rows
    assert [c[1] for c in calls].count(64) == 6  # two per recipe
    assert rows["bf16"]["prefill_warmup_s"] >= 0.5
    assert rows["bf16"]["prefill_tok_s"] > 64 / 0.5  # the warm one, not the cold


def test_the_full_size_figure_at_a_tpot_slo_is_the_fastest_batch_within_it():
    """The issue's 'output tok/s at a TPOT SLO' of the full-size model: of the batches measured, the
    one with the most tok/s whose time per decode step meets the target."""
    bench = _load()
    row = {"recipe": "fp4", "decode_b1_tok_s": 90.0, "tpot_b1_ms": 11.1, "decode_b16_tok_s": 800.0,
           "tpot_b16_ms": 20.0, "decode_b64_tok_s": 1600.0, "tpot_b64_ms": 40.0}
    assert bench.at_tpot_slo(row, 50.0) == (1600.0, 64) and bench.at_tpot_slo(row, 30.0) == (800.0, 16)
    assert bench.at_tpot_slo(row, 5.0) == (None, None)
    row["tok_s_at_tpot_slo"], row["slo_batch"] = bench.at_tpot_slo(row, 30.0)
    md = bench.markdown({"sections": {"full": {"preset": "p", "prefill_len": 8192, "tpot_slo_ms": 30.0,
                                               "rows": [row, {"recipe": "bf16", "skipped": "no time"}]}}})
    assert "tok/s at TPOT ≤ 30 ms (batch)" in md and "| 800.0 (16) |" in md
    assert "| bf16 |" in md and "| – |" in md


# ---- time caps that a call inside catches ---------------------------------------------------------
def test_timeout_inside_a_wrapping_exception_is_found():
    bench = _load()
    inner = bench.SectionTimeout("time cap of 3 s reached")
    try:
        try:
            raise inner
        except bench.SectionTimeout as e:
            raise RuntimeError("InterpreterError: SectionTimeout(...)") from e
    except RuntimeError as e:
        by_cause = e
    try:
        try:
            raise inner
        except bench.SectionTimeout:
            raise KeyError("raised while handling it")  # __context__ only
    except KeyError as e:
        by_context = e
    assert bench._timeout_in(by_cause) is inner and bench._timeout_in(by_context) is inner
    assert bench._timeout_in(ValueError("no")) is None
    with pytest.raises(bench.SectionTimeout, match="time cap of 3 s"):
        bench.reraise_timeout(by_cause)
    bench.reraise_timeout(ValueError("an ordinary failure: the caller records it"))


def _gemm_stand_ins(bench, monkeypatch, path_fn):
    def paths(w):
        def exact(x):
            return x.float() @ w.float().t()

        n, k = w.shape
        named = {"bf16": bench.Path_(exact, 2 * n * k, "bf16"),
                 "nvfp4 x": bench.Path_(lambda x: path_fn(x, exact), n * k, "nvfp4")}
        return named, {"bf16": exact, "nvfp4": exact}

    monkeypatch.setattr(bench, "gemm_paths", paths)
    monkeypatch.setattr(bench, "linear_shapes", lambda preset: [(32, 64, "a.proj"), (16, 64, "b.proj")])


def test_a_wrapped_time_cap_ends_the_section_and_the_json_is_written(tmp_path, monkeypatch):
    """A row's call raises an exception that wraps `SectionTimeout` (as Triton's interpreter does with
    the alarm's exception): the section ends there with the cap as its error, not as a failed row
    after which the sweep goes on; gpu.json and gpu.md are written."""
    import json

    bench = _load()
    calls = []

    def wraps_a_timeout(x, exact):
        calls.append(x.shape[0])
        try:
            raise bench.SectionTimeout("time cap of 9 s reached")
        except bench.SectionTimeout as e:
            raise RuntimeError("InterpreterError(SectionTimeout(...))") from e

    _gemm_stand_ins(bench, monkeypatch, wraps_a_timeout)
    assert bench.main(["--device", "cpu", "--smoke", "--sections", "gemm,moe", "--m", "1,2", "--budget-s", "60",
                       "--out", str(tmp_path)]) == 0  # fmt: skip
    res = json.loads((tmp_path / "gpu.json").read_text())
    gemm = res["sections"]["gemm"]
    assert gemm["error"] == "SectionTimeout: time cap of 9 s reached" and "traceback" not in gemm
    assert calls == [1] and [(r["shape"], r["M"], r["path"]) for r in gemm["rows"]] == [("32x64", 1, "bf16")]
    assert "moe" in res["sections"]  # the next section runs
    assert "Section gemm stopped: SectionTimeout: time cap of 9 s reached" in (tmp_path / "gpu.md").read_text()


def test_a_swallowed_time_cap_still_ends_the_section_at_the_next_row(tmp_path, monkeypatch):
    """A row's call catches the alarm's exception and goes on (as a compile falling back to eager
    does): the cap stays expired, so the section ends at the next row with the cap as its error,
    instead of going on with the rows it has time for. The alarm is simulated (the cap marked
    expired inside the call, as the signal handler does), so no timing is involved."""
    import json

    bench = _load()
    calls = []

    def swallows(x, exact):
        calls.append(x.shape[0])
        if len(calls) == 1:
            bench._CAP.expired = True  # the alarm went off in here, and this call caught it and went on
        return exact(x)

    monkeypatch.setattr(bench, "SECTION_CAPS_S", {**bench.SECTION_CAPS_S, "gemm": 600.0})
    _gemm_stand_ins(bench, monkeypatch, swallows)
    assert bench.main(["--device", "cpu", "--smoke", "--sections", "gemm", "--m", "1,2,3,4", "--budget-s", "3000",
                       "--out", str(tmp_path)]) == 0  # fmt: skip
    gemm = json.loads((tmp_path / "gpu.json").read_text())["sections"]["gemm"]
    assert gemm["error"].startswith("SectionTimeout: time cap of"), gemm
    assert len(gemm["rows"]) <= 2 and len(set(calls)) == 1  # no row after the one the alarm hit
    assert not bench.cap_expired()


def test_the_alarm_repeats_after_a_swallowed_one_and_stops_with_the_block():
    bench = _load()
    caught = 0
    with pytest.raises(bench.SectionTimeout):
        with bench.time_cap(0.2, repeat_s=0.2):
            while True:
                try:
                    time.sleep(0.01)
                except bench.SectionTimeout:
                    caught += 1
                    assert bench.cap_expired()
                    if caught == 3:
                        bench.check_cap()  # what the loops do between rows
    assert caught == 3 and not bench.cap_expired()
    time.sleep(0.5)  # no late alarm after the block


# ---- bench/gpu_session.sh ------------------------------------------------------------------------
FAKE_NVIDIA_SMI = """#!/bin/bash
case "$*" in *compute_cap*) echo "9.0" ;; *) echo "name, driver_version, memory.total"; echo "H100, 1, 80 GiB" ;; esac
"""
FAKE_PYTHON3 = """#!/bin/bash
echo "ARGS $*" >> "$FAKE_LOG"
case "$*" in
  *"-m pytest"*)
    sleep 30 & SLEEPER=$!
    trap 'kill $SLEEPER; echo "pytest: SIGINT" >> "$FAKE_LOG"; echo "FAILED tests/x.py::test_y - boom"; exit 2' INT
    trap 'kill $SLEEPER; echo "pytest: SIGTERM" >> "$FAKE_LOG"; exit 143' TERM
    wait ;;
  *static_kernels.py*) echo "static_kernels: 7 variants for sm_90 in Triton's cache"; exit "${FAKE_PRE_RC:-0}" ;;
  *bench_gpu.py*) exit 0 ;;
  *) echo "torch 0 triton 0" ;;
esac
"""


@pytest.mark.parametrize("precompiled", [True, False])
def test_gpu_session_interrupts_pytest_for_its_summary_and_skips_a_second_precompile(precompiled, tmp_path):
    """The session script with stand-ins for nvidia-smi and python3: the tests' cap sends SIGINT (pytest
    then prints its summary and the failures so far: -rfE), and the benchmark is told to skip its own
    precompile step only when the one beside the tests finished."""
    import os
    import shutil
    import subprocess

    from bench_scripts import BENCH

    if not shutil.which("bash") or not shutil.which("timeout"):
        pytest.skip("needs bash and coreutils' timeout")
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for name, text in (("nvidia-smi", FAKE_NVIDIA_SMI), ("python3", FAKE_PYTHON3)):
        (bin_dir / name).write_text(text)
        (bin_dir / name).chmod(0o755)
    log, out = tmp_path / "calls.log", tmp_path / "out"
    env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}", "FAKE_LOG": str(log), "OUT": str(out),
           "TEST_S": "1", "FAKE_PRE_RC": "0" if precompiled else "1"}  # fmt: skip
    proc = subprocess.run(["bash", str(BENCH / "gpu_session.sh")], cwd=tmp_path, env=env, capture_output=True,
                          text=True, timeout=120)  # fmt: skip
    assert proc.returncode == 0, proc.stderr  # the fake pytest's 30 s sleep was cut by the TEST_S=1 cap (SIGINT)
    calls = log.read_text().splitlines()
    assert "pytest: SIGINT" in calls and "pytest: SIGTERM" not in calls
    (pytest_args,) = [c for c in calls if "-m pytest" in c]
    assert " -rfE " in pytest_args and " -m gpu " in pytest_args
    assert "GPU tests: rc 124" in proc.stdout and "FAILED tests/x.py::test_y - boom" in proc.stdout
    assert f"precompile: rc {0 if precompiled else 1}" in proc.stdout
    (bench_args,) = [c for c in calls if "bench_gpu.py" in c]
    assert bench_args.endswith("--budget-s 290 --precompile-workers 0" if precompiled else "--budget-s 290")
    assert "set -uo pipefail" in (BENCH / "gpu_session.sh").read_text()
