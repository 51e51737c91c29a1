"""The CI gate: non-inferiority verdicts, efficiency ratios, baseline layouts, exit codes, reports."""

from __future__ import annotations

import json

import numpy as np
import pytest
from runfolders import binary_samples, flipped, write_run

from evalsuite.cli import main as cli_main
from evalsuite.gate import (FAIL, INCONCLUSIVE, PASS, GateError, check_efficiency, load_baseline, run_gate,
                            save_baseline)
from evalsuite.results import load_run


def _flip_correct(samples, frac: float, seed: int = 0) -> set[str]:
    rng = np.random.default_rng(seed)
    right = [r.id for r in samples if r.score == 1.0]
    return set(rng.choice(right, size=int(round(frac * len(right))), replace=False).tolist())


@pytest.fixture
def big(tmp_path):
    """Baseline: n = 400 in 40 clusters (10 questions per document), accuracy about 0.7."""
    rows = binary_samples("docqa", 400, n_clusters=40, accuracy=0.7, seed=1)
    return rows, write_run(tmp_path / "base", {"docqa": rows})


def gate(*argv: str) -> int:
    return cli_main(["gate", *argv])


def test_ten_percent_of_correct_flipped_fails(big, tmp_path, capsys):
    rows, base = big
    ids = _flip_correct(rows, 0.10)
    assert len(ids) >= 25
    cand = write_run(tmp_path / "cand", {"docqa": flipped(rows, ids)}, name="fp4", precision="nvfp4")
    assert gate("--baseline", str(base), "--candidate", str(cand), "--out", str(tmp_path / "g")) == 1
    out = capsys.readouterr().out
    assert "FAIL" in out and "gate: FAIL" in out
    report = json.loads((tmp_path / "g" / "gate.json").read_text())
    t = report["tasks"][0]
    assert t["verdict"] == FAIL and t["n_worsened"] == len(ids) and t["n_improved"] == 0
    assert t["delta"] == pytest.approx(-len(ids) / 400)
    assert t["upper"] < -0.02 and t["p_inferior"] < 0.05
    assert (tmp_path / "g" / "gate.md").read_text().startswith("# evalsuite gate: **FAIL**")
    assert "FAIL" in (tmp_path / "g" / "gate.html").read_text()


def test_identical_candidate_passes(big, tmp_path, capsys):
    rows, base = big
    cand = write_run(tmp_path / "cand", {"docqa": rows}, name="bf16-again")
    assert gate("--baseline", str(base), "--candidate", str(cand)) == 0
    assert "gate: PASS" in capsys.readouterr().out
    g = run_gate(load_run(base), load_run(cand), n_boot=300)
    t = g.tasks[0]
    assert t.verdict == PASS and t.delta == 0.0
    # Tango's interval keeps the bound honest: n = 400 identical answers show |delta| < ~0.7 points.
    assert -0.01 < t.lower < -0.005


def test_few_random_flips_on_small_sample_are_inconclusive(tmp_path):
    rows = binary_samples("videoqa", 30, n_clusters=10, accuracy=0.7, seed=3)
    base = write_run(tmp_path / "base", {"videoqa": rows})
    for seed, k in [(0, 3), (1, 4), (2, 4)]:
        ids = set(np.random.default_rng(seed).choice([r.id for r in rows], size=k, replace=False).tolist())
        cand = write_run(tmp_path / f"cand{seed}", {"videoqa": flipped(rows, ids)}, name="fp8", precision="fp8")
        g = run_gate(load_run(base), load_run(cand), n_boot=500)
        t = g.tasks[0]
        assert t.n_improved + t.n_worsened == k
        assert t.verdict == INCONCLUSIVE, (seed, t)
        assert not g.failed and g.verdict == INCONCLUSIVE
    assert gate("--baseline", str(base), "--candidate", str(tmp_path / "cand0")) == 0


def test_identical_small_sample_is_inconclusive_not_pass(tmp_path):
    rows = binary_samples("videoqa", 30, n_clusters=10, accuracy=0.7, seed=3)
    base = write_run(tmp_path / "base", {"videoqa": rows})
    g = run_gate(load_run(base), load_run(base), n_boot=300)
    # The bootstrap alone would say [0, 0]; 30 answers cannot show a 2-point non-inferiority.
    assert g.tasks[0].verdict == INCONCLUSIVE and g.tasks[0].lower < -0.05


def test_four_one_way_flips_in_thirty_is_significant(tmp_path):
    rows = binary_samples("videoqa", 30, n_clusters=30, accuracy=0.7, seed=3)
    ids = {r.id for r in rows if r.score == 1.0}
    base = write_run(tmp_path / "base", {"videoqa": rows})
    cand = write_run(tmp_path / "c", {"videoqa": flipped(rows, set(sorted(ids)[:4]))})
    # -13 points with no improvement: one-sided 95% upper bound about -4 points, below -2.
    assert run_gate(load_run(base), load_run(cand), n_boot=500).tasks[0].verdict == FAIL


def test_wider_margin_turns_fail_into_pass(big, tmp_path):
    rows, base = big
    cand = write_run(tmp_path / "cand", {"docqa": flipped(rows, _flip_correct(rows, 0.02))})
    strict = run_gate(load_run(base), load_run(cand), margin_points=0.0, n_boot=300)
    loose = run_gate(load_run(base), load_run(cand), margin_points=5.0, n_boot=300)
    assert strict.tasks[0].verdict == FAIL and loose.tasks[0].verdict == PASS


def test_candidate_errors_count_as_wrong(big, tmp_path):
    rows, base = big
    bad = flipped(rows, set())
    for r in bad:
        if r.score == 1.0 and int(r.id[-4:]) % 5 == 0:  # ~14% of the correct answers now error out
            r.score, r.error, r.prediction = None, "RuntimeError: boom", None
    cand = write_run(tmp_path / "cand", {"docqa": bad})
    t = run_gate(load_run(base), load_run(cand), n_boot=300).tasks[0]
    assert t.n_candidate_errors > 30 and t.verdict == FAIL and t.n == 400


# ---- efficiency ---------------------------------------------------------------------------------
def test_efficiency_directions_and_slowdown():
    base = {"single_stream_tokens_per_s": 100.0, "ttft_ms": {"p50": 50.0}, "mystery": 3.0, "samples_per_s": 10.0}
    cand = {"single_stream_tokens_per_s": 75.0, "ttft_ms": {"p50": 55.0}, "mystery": 1.0, "samples_per_s": 20.0}
    v = {e.key: e for e in check_efficiency("t", base, cand, 0.20)}
    assert set(v) == {"single_stream_tokens_per_s", "ttft_ms.p50", "samples_per_s"}  # unknown direction: not gated
    assert v["single_stream_tokens_per_s"].speed_ratio == pytest.approx(0.75) and v["single_stream_tokens_per_s"].verdict == FAIL
    assert v["ttft_ms.p50"].speed_ratio == pytest.approx(50 / 55) and v["ttft_ms.p50"].verdict == PASS
    assert v["samples_per_s"].speed_ratio == pytest.approx(2.0)


def test_throughput_regression_fails_and_other_hardware_is_not_gated(big, tmp_path):
    rows, base_dir = big
    eff_b = {"docqa": {"per_gpu_throughput_at_slo": 1000.0}}
    base = write_run(tmp_path / "b", {"docqa": rows}, efficiency=eff_b)
    slow = write_run(tmp_path / "s", {"docqa": rows}, efficiency={"docqa": {"per_gpu_throughput_at_slo": 700.0}})
    assert gate("--baseline", str(base), "--candidate", str(slow)) == 1
    assert gate("--baseline", str(base), "--candidate", str(slow), "--max-slowdown", "35") == 0
    assert gate("--baseline", str(base), "--candidate", str(slow), "--max-slowdown", "-1") == 0
    other = write_run(tmp_path / "o", {"docqa": rows}, efficiency={"docqa": {"per_gpu_throughput_at_slo": 700.0}},
                      device="cuda:0")
    g = run_gate(load_run(base), load_run(other), n_boot=200)
    assert not g.efficiency and not g.failed and any("different hardware" in n for n in g.notes)


# ---- baselines ----------------------------------------------------------------------------------
def test_baseline_folder_layout_and_selection(big, tmp_path, capsys):
    rows, run = big
    folder = tmp_path / "baselines"
    save_baseline(run, folder, "bf16")
    fp4 = write_run(tmp_path / "fp4run", {"docqa": rows}, name="fp4", precision="nvfp4")
    save_baseline(fp4, folder, "fp4")
    assert (folder / "bf16.json").exists() and (folder / "fp4" / "samples" / "docqa.jsonl").exists()
    # A run-folder baseline beside the .json ones.
    write_run(folder / "fp8", {"docqa": rows}, name="fp8", precision="fp8")

    cand = write_run(tmp_path / "cand", {"docqa": rows}, name="fp4", precision="nvfp4")
    (b, _), label = load_baseline(folder, load_run(cand)[0])
    assert b["model"]["name"] == "fp4" and label.endswith("fp4.json")
    cand8 = write_run(tmp_path / "cand8", {"docqa": rows}, name="fp8-rerun", precision="fp8")
    (b, _), label = load_baseline(folder, load_run(cand8)[0])  # no name match: precision match
    assert b["model"]["name"] == "fp8" and label.endswith("fp8")
    (b, s), _ = load_baseline(folder, load_run(cand)[0], name="bf16")
    assert b["model"]["name"] == "bf16" and len(s["docqa"]) == 400

    other = write_run(tmp_path / "o", {"docqa": rows}, name="qwen", precision="int4")
    with pytest.raises(GateError, match="no baseline in .* matches the candidate"):
        load_baseline(folder, load_run(other)[0])
    with pytest.raises(GateError, match="no baseline named 'nope'"):
        load_baseline(folder, load_run(other)[0], name="nope")
    assert gate("--baseline", str(folder), "--candidate", str(other), "--baseline-name", "bf16") == 0

    # --save-baseline after a passing gate writes the committed layout.
    assert gate("--baseline", str(folder), "--candidate", str(other), "--baseline-name", "bf16",
                "--save-baseline", "qwen") == 0
    assert (folder / "qwen.json").exists() and (folder / "qwen" / "samples" / "docqa.jsonl").exists()
    (b, _), _ = load_baseline(folder, load_run(other)[0])
    assert b["model"]["name"] == "qwen"


def test_baseline_json_without_samples_is_an_error(big, tmp_path, capsys):
    rows, run = big
    folder = tmp_path / "bl"
    folder.mkdir()
    (folder / "x.json").write_text((run / "results.json").read_text())
    with pytest.raises(GateError, match="no sample file for task 'docqa'"):
        load_baseline(folder / "x.json", {})
    assert gate("--baseline", str(tmp_path / "missing"), "--candidate", str(run)) == 2
    assert "does not exist" in capsys.readouterr().err


def test_usage_errors_exit_2(big, tmp_path, capsys):
    rows, base = big
    other_task = write_run(tmp_path / "o", {"gui": binary_samples("gui", 20, n_clusters=5, accuracy=0.5)})
    assert gate("--baseline", str(base), "--candidate", str(other_task)) == 2
    assert "no task in common" in capsys.readouterr().err
    changed = write_run(tmp_path / "c", {"docqa": rows}, args={"docqa": {"n": 400, "fps": 2}})
    assert gate("--baseline", str(base), "--candidate", str(changed)) == 2
    err = capsys.readouterr().err
    assert "different settings" in err and "args.fps" in err and err.count("\n") == 1
    assert gate("--baseline", str(base), "--candidate", str(changed), "--allow-config-mismatch") == 0
    assert gate("--baseline", str(base), "--candidate", str(base), "--alpha", "0.7") == 2
    assert gate("--baseline", str(base), "--candidate", str(tmp_path / "nothing")) == 2
    assert "no results.json" in capsys.readouterr().err


def test_markdown_escapes_table_breakers(big, tmp_path):
    rows, base = big
    cand = write_run(tmp_path / "c", {"docqa": rows}, name="a|b<script>")
    from evalsuite.gate import markdown

    md = markdown(run_gate(load_run(base), load_run(cand), n_boot=200))
    assert "a\\|b&lt;script&gt;" in md and "<script>" not in md


def test_nothing_comparable_is_inconclusive_not_pass(tmp_path):
    rows = binary_samples("docqa", 10, n_clusters=2, accuracy=0.5)
    for r in rows:
        r.score, r.error = None, "MediaError: corrupt"
    base = write_run(tmp_path / "base", {"docqa": rows})
    g = run_gate(load_run(base), load_run(base), n_boot=200)
    assert g.tasks[0].verdict == "SKIPPED" and g.verdict == INCONCLUSIVE and not g.failed
