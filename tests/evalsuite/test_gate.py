"""The CI gate: non-inferiority verdicts, efficiency ratios, baseline layouts, exit codes, reports."""

from __future__ import annotations

import dataclasses
import json
import math
import shutil

import numpy as np
import pytest
from runfolders import binary_samples, flipped, write_run

from evalsuite.cli import main as cli_main
from evalsuite.gate import (FAIL, INCONCLUSIVE, PASS, SKIPPED, GateError, check_efficiency, decide, gate_tasks, load_baseline, run_gate,
                            save_baseline)
from evalsuite.paired import Paired, binom_cdf_half
from evalsuite.reports.gate_page import render_gate
from evalsuite.results import GATE_SCHEMA_VERSION, RunFormatError, load_doc, load_run


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
    assert t["upper"] < -0.02 and t["p_worse_holm"] < 1e-3 and t["test"] == "cluster-signflip"
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


def test_one_way_flips_in_thirty_fail_once_exact_mcnemar_rejects(tmp_path):
    rows = binary_samples("videoqa", 30, n_clusters=30, accuracy=0.7, seed=3)
    right = sorted(r.id for r in rows if r.score == 1.0)
    base = write_run(tmp_path / "base", {"videoqa": rows})
    # 4 right -> wrong, none back: -13 points, but one-sided exact McNemar p = 1/16 > 0.05.
    four = write_run(tmp_path / "c4", {"videoqa": flipped(rows, set(right[:4]))})
    t4 = run_gate(load_run(base), load_run(four), n_boot=500).tasks[0]
    assert t4.test == "mcnemar-exact" and t4.p_worse == pytest.approx(1 / 16)
    assert t4.verdict == INCONCLUSIVE and t4.upper < -0.02  # its interval is past the margin; the test did not reject
    assert "entirely below -2.0, but the one-sided mcnemar-exact test did not reject (p = 0.062 > 0.05)" in t4.reason
    # 5 of them: p = 1/32 <= 0.05 and -16.7 points beyond the margin.
    five = write_run(tmp_path / "c5", {"videoqa": flipped(rows, set(right[:5]))})
    t5 = run_gate(load_run(base), load_run(five), n_boot=500).tasks[0]
    assert t5.p_worse == pytest.approx(1 / 32) and t5.verdict == FAIL


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


def test_a_rate_qualified_by_a_latency_word_is_higher_is_better():
    # tokens/s of one stream derived from TPOT: a faster candidate has a larger figure and must pass
    base = {"single_stream_tokens_per_s_by_tpot": 100.0, "tokens_per_s_per_user_by_tpot": 50.0,
            "chunks_per_s_per_user_by_itl": 20.0, "tpot_ms": {"mean": 10.0}, "joules_per_output_token": 2.0}
    cand = {"single_stream_tokens_per_s_by_tpot": 150.0, "tokens_per_s_per_user_by_tpot": 75.0,
            "chunks_per_s_per_user_by_itl": 30.0, "tpot_ms": {"mean": 20 / 3}, "joules_per_output_token": 1.0}
    v = {e.key: e for e in check_efficiency("t", base, cand, 0.20)}
    assert {k: round(e.speed_ratio, 6) for k, e in v.items()} == {
        "single_stream_tokens_per_s_by_tpot": 1.5, "tokens_per_s_per_user_by_tpot": 1.5,
        "chunks_per_s_per_user_by_itl": 1.5, "tpot_ms.mean": 1.5, "joules_per_output_token": 2.0}
    assert all(e.verdict == PASS for e in v.values())


def test_a_figure_the_candidate_lost_fails():
    # nothing met the SLO in the candidate: its at-SLO figures are 0 or null, and max goodput is absent
    base = {"output_tokens_per_s_at_slo": 900.0, "requests_per_s_at_slo": 4.0, "max_goodput_requests_per_s": 22.8,
            "ttft_ms": {"p99": 80.0}, "zero_in_base_per_s": 0.0}
    cand = {"output_tokens_per_s_at_slo": 0.0, "requests_per_s_at_slo": None, "ttft_ms": {"p99": 80.0},
            "zero_in_base_per_s": 5.0}
    v = {e.key: e for e in check_efficiency("t", base, cand, 0.20)}
    assert set(v) == {"output_tokens_per_s_at_slo", "requests_per_s_at_slo", "max_goodput_requests_per_s", "ttft_ms.p99"}
    assert [(v[k].candidate, v[k].speed_ratio, v[k].verdict) for k in sorted(v)] == [
        (None, 0.0, FAIL), (0.0, 0.0, FAIL), (None, 0.0, FAIL), (80.0, 1.0, PASS)]


def test_a_lost_figure_shows_as_missing_in_every_report(big, tmp_path, capsys):
    rows, _ = big
    base = write_run(tmp_path / "b", {"docqa": rows}, efficiency={"docqa": {"max_goodput_requests_per_s": 22.8}})
    cand = write_run(tmp_path / "c", {"docqa": rows}, efficiency={"docqa": {"max_goodput_requests_per_s": None}})
    out = tmp_path / "g"
    assert gate("--baseline", str(base), "--candidate", str(cand), "--out", str(out)) == 1
    assert ("max_goodput_requests_per_s  22.8      missing    0.000x  –       1+1   FAIL     the candidate reports "
            "nothing for a figure the baseline has") in capsys.readouterr().out
    assert load_doc(out, "gate")["efficiency"][0]["candidate"] is None
    assert ("| docqa | max_goodput_requests_per_s | 22.8 | missing | 0.000x | – | 1+1 | FAIL | the candidate reports "
            "nothing for a figure the baseline has |") in (out / "gate.md").read_text()
    assert '<td class="num">missing</td>' in (out / "gate.html").read_text()


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
    assert g.efficiency_skipped.startswith("different hardware (baseline device cpu, cpu test-cpu; candidate device cuda:0")


def test_the_verdict_says_when_throughput_was_not_gated(big, tmp_path, capsys):
    rows, _ = big
    base = write_run(tmp_path / "b", {"docqa": rows}, efficiency={"docqa": {"single_stream_tokens_per_s": 50.0}})
    other = write_run(tmp_path / "o", {"docqa": rows}, efficiency={"docqa": {"single_stream_tokens_per_s": 10.0}},
                      device="cuda:0")
    out = tmp_path / "g"
    assert gate("--baseline", str(base), "--candidate", str(other), "--out", str(out)) == 0
    assert "gate: PASS (accuracy only: throughput not gated, different hardware)" in capsys.readouterr().out
    doc = load_doc(out, "gate")
    assert doc["verdict"] == PASS and doc["verdict_text"] == "PASS (accuracy only: throughput not gated, different hardware)"
    assert (out / "gate.md").read_text().startswith("# evalsuite gate: **PASS** (accuracy only; efficiency not gated: different hardware")
    assert 'id="efficiency-skipped"' in (out / "gate.html").read_text()
    # Same hardware: gated, and the verdict is the bare word.
    same = write_run(tmp_path / "s", {"docqa": rows}, efficiency={"docqa": {"single_stream_tokens_per_s": 49.0}})
    gate("--baseline", str(base), "--candidate", str(same))
    assert capsys.readouterr().out.rstrip().endswith("gate: PASS")
    gate("--baseline", str(base), "--candidate", str(same), "--max-slowdown", "-1")
    assert "gate: PASS (accuracy only: throughput not asked (--max-slowdown < 0))" in capsys.readouterr().out


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

    md = markdown(run_gate(load_run(base), load_run(cand), n_boot=200).to_dict())
    assert "a\\|b&lt;script&gt;" in md and "<script>" not in md


def test_nothing_comparable_fails_the_gate(tmp_path, capsys):
    rows = binary_samples("docqa", 10, n_clusters=2, accuracy=0.5)
    for r in rows:
        r.score, r.error = None, "MediaError: corrupt"
    base = write_run(tmp_path / "base", {"docqa": rows})
    g = run_gate(load_run(base), load_run(base), n_boot=200)
    assert g.tasks[0].verdict == "SKIPPED" and g.verdict == FAIL and g.failed
    assert g.notes[0].startswith("gate failed: nothing was gated: no task has a sample scored in both runs")
    assert gate("--baseline", str(base), "--candidate", str(base)) == 1
    assert "note: gate failed: nothing was gated" in capsys.readouterr().out


def test_a_candidate_without_the_baselines_samples_fails(big, tmp_path, capsys):
    rows, base = big
    cand = write_run(tmp_path / "cand", {"docqa": rows})
    shutil.rmtree(cand / "samples")  # results.json alone: the samples were not copied
    assert gate("--baseline", str(base), "--candidate", str(cand)) == 1
    out = capsys.readouterr().out
    assert "the candidate has none of the 400 samples the baseline scored" in out
    g = run_gate(load_run(base), load_run(cand), n_boot=200)
    assert g.tasks[0].verdict == FAIL and g.tasks[0].n == 0


@pytest.mark.parametrize("status", ["interrupted", "failed"])
def test_an_unfinished_candidate_fails_even_when_its_samples_pass(big, tmp_path, status):
    rows, base = big
    cand = write_run(tmp_path / "cand", {"docqa": rows}, status=status, status_reasons=["stopped"])
    g = run_gate(load_run(base), load_run(cand), n_boot=200)
    assert g.tasks[0].verdict == PASS and g.verdict == FAIL
    assert g.notes[0] == (f"gate failed: the candidate run is {status}, not complete: the gate passes only a "
                          f"finished run (resume it, or fix what failed)")
    # an unfinished baseline is refused, unless allowed: then noted
    with pytest.raises(GateError, match=f"the baseline run baseline is {status}, not complete \\(stopped\\)"):
        run_gate(load_run(cand), load_run(base), n_boot=200)
    g = run_gate(load_run(cand), load_run(base), n_boot=200, allow_incomplete_baseline=True)
    assert g.verdict == PASS and g.notes == [f"the baseline run is {status} (allowed by --allow-incomplete-baseline): stopped"]


# ---- the FAIL rule by simulation ------------------------------------------------------------------
def _regressed(n: int, n_worse: int, n_better: int, *, per_cluster: int = 1) -> Paired:
    """``n`` pairs, A right on 80%, ``n_worse`` of A's right answers (each in its own cluster) wrong in B."""
    ids = [f"s{i}" for i in range(n)]
    a = (np.arange(n) % 5 != 4).astype(float)
    b = a.copy()
    right = [i for i in range(n) if a[i] == 1.0][::per_cluster]
    wrong = [i for i in range(n) if a[i] == 0.0]
    b[right[:n_worse]] = 0.0
    b[wrong[:n_better]] = 1.0
    return Paired(ids, a, b, [f"c{i // per_cluster}" for i in range(n)])


def test_issue_example_significant_regression_beyond_margin_fails():
    # 9 docqa answers right -> wrong and none back on 200 samples (-4.5 points, exact McNemar p = 1/512 one-sided);
    # gui likewise 8 -> 0. The 90% interval still reaches past -2 points, yet the gate must fail.
    for per_cluster in (1, 4):  # independent questions, or 4 questions per document (cluster sign-flip)
        pairs = {"docqa": _regressed(200, 9, 0, per_cluster=per_cluster),
                 "gui": _regressed(200, 8, 0, per_cluster=per_cluster)}
        doc, gui = gate_tasks(pairs, margin=0.02, alpha=0.05, n_boot=500)
        assert doc.delta == pytest.approx(-0.045) and gui.delta == pytest.approx(-0.04)
        assert gui.upper >= -0.02  # "the whole interval beyond the margin" would have said INCONCLUSIVE
        assert doc.p_worse == pytest.approx(1 / 512) and gui.p_worse == pytest.approx(1 / 256)
        assert doc.p_worse_holm == pytest.approx(2 / 512) and gui.p_worse_holm == pytest.approx(1 / 256)
        assert doc.verdict == FAIL and gui.verdict == FAIL, (doc, gui)
        assert doc.test == ("mcnemar-exact" if per_cluster == 1 else "cluster-signflip")
    # Significant but within the margin: not a FAIL (9 of 2000 is -0.45 points).
    small = decide("docqa", _regressed(2000, 9, 0), margin=0.02, alpha=0.05, n_boot=300)
    assert small.p_worse < 0.05 and small.verdict == PASS


def _aa_pairs(rng: np.random.Generator, n_clusters: int, per: int, *, cluster_shift: float) -> Paired:
    """Two runs of one model: answers differ by noise; with ``cluster_shift`` whole clusters move
    together (one way or the other with equal probability), so differences are correlated within a
    cluster while the two runs stay exchangeable."""
    ease = np.clip(rng.uniform(0.2, 0.8, n_clusters)[:, None] + rng.normal(0.0, 0.1, (n_clusters, per)), 0.02, 0.98)
    a = (rng.random((n_clusters, per)) < ease).astype(float)
    b = (rng.random((n_clusters, per)) < ease).astype(float)
    way = rng.choice([-1.0, 1.0], size=(n_clusters, 1))
    moved = rng.random((n_clusters, per)) < cluster_shift * rng.random((n_clusters, 1))
    b = np.where(moved, (way > 0).astype(float) * np.ones_like(b), b)
    ids = [str(i) for i in range(n_clusters * per)]
    clusters = [f"c{i // per}" for i in range(n_clusters * per)] if per > 1 else ids
    return Paired(ids, a.ravel(), b.ravel(), clusters)


def _binomial_slack(rate: float, n: int) -> float:
    return rate * n + 3.0 * math.sqrt(n * rate * (1.0 - rate))


@pytest.mark.parametrize("margin", [0.0, 0.02])
def test_a_a_fails_at_most_alpha_of_the_time(margin):
    rng = np.random.default_rng(1234)
    draws, alpha = 2000, 0.05
    fails = sum(decide("t", _aa_pairs(rng, 200, 1, cluster_shift=0.0), margin=margin, alpha=alpha,
                       n_boot=100).verdict == FAIL for _ in range(draws))
    assert fails <= _binomial_slack(alpha, draws)
    if margin == 0.0:  # the rule is not vacuous: at margin 0 it fails about as often as the test rejects
        assert fails >= 0.01 * draws


def test_a_a_with_shared_clusters_fails_at_most_alpha_where_mcnemar_would_not():
    rng = np.random.default_rng(99)
    draws, alpha = 400, 0.05
    fails = naive = 0
    for _ in range(draws):
        p = _aa_pairs(rng, 30, 6, cluster_shift=0.8)
        fails += decide("t", p, margin=0.0, alpha=alpha, n_boot=100).verdict == FAIL
        k = p.n_improved + p.n_worsened
        naive += k > 0 and binom_cdf_half(p.n_improved, k) <= alpha and p.d.mean() < 0
    assert fails <= _binomial_slack(alpha, draws)
    assert naive > _binomial_slack(alpha, draws)  # McNemar ignoring the clusters rejects far too often


def test_a_a_gate_of_three_tasks_fails_at_most_alpha():
    rng = np.random.default_rng(7)
    draws, alpha = 600, 0.05
    fails = 0
    for _ in range(draws):
        pairs = {t: _aa_pairs(rng, 150, 1, cluster_shift=0.0) for t in ("a", "b", "c")}
        fails += any(v.verdict == FAIL for v in gate_tasks(pairs, margin=0.0, alpha=alpha, n_boot=100))
    assert fails <= _binomial_slack(alpha, draws)


def test_gate_json_matches_its_schema_and_the_page_renders_from_it(big, tmp_path, capsys):
    rows, base = big
    cand = write_run(tmp_path / "cand", {"docqa": rows}, name="a<b>")
    out = tmp_path / "g"
    assert gate("--baseline", str(base), "--candidate", str(cand), "--out", str(out)) == 0
    doc = load_doc(out, "gate")
    assert doc["schema_version"] == GATE_SCHEMA_VERSION and doc["kind"] == "gate" and doc["verdict"] == PASS
    assert f"page:    {out / 'gate.html'}" in capsys.readouterr().out
    shutil.rmtree(cand)
    (out / "gate.html").unlink()
    html = render_gate(out).read_text()
    assert "PASS" in html and "a&lt;b&gt;" in html and "a<b>" not in html
    doc["tasks"][0]["verdict"] = "MAYBE"
    (out / "gate.json").write_text(json.dumps(doc))
    with pytest.raises(RunFormatError, match=f"gate.json does not match schema {GATE_SCHEMA_VERSION} at tasks/0/verdict"):
        render_gate(out)


def test_gate_shows_run_statuses(big, tmp_path, capsys):
    rows, base = big
    cand = write_run(tmp_path / "cand", {"docqa": rows}, name="fp8", status="failed",
                     status_reasons=["task docqa: 30/400 samples errored (7.5% > --max-error-rate 5.0%)"])
    out = tmp_path / "g"
    gate("--baseline", str(base), "--candidate", str(cand), "--out", str(out))
    text = capsys.readouterr().out
    assert "note: the candidate run is failed: task docqa: 30/400 samples errored" in text
    assert "gate: FAIL" in text
    doc = load_doc(out, "gate")
    assert doc["candidate"]["status"] == "failed" and doc["baseline"]["status"] == "complete"
    assert "), run failed" in (out / "gate.md").read_text()
    assert '<td class="bad">failed</td>' in (out / "gate.html").read_text()


@pytest.mark.parametrize("opt,value,message", [
    ("--margin", "nan", "--margin must be a finite number of points >= 0, got nan"),
    ("--margin", "inf", "--margin must be a finite number of points >= 0, got inf"),
    ("--max-slowdown", "inf", "--max-slowdown must be a finite percentage (negative: do not gate efficiency), got inf"),
    ("--max-slowdown", "nan", "--max-slowdown must be a finite percentage (negative: do not gate efficiency), got nan"),
])
def test_options_out_of_range_are_one_line_errors(big, tmp_path, capsys, opt, value, message):
    _, base = big
    assert gate("--baseline", str(base), "--candidate", str(base), opt, value) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


def test_an_out_that_is_a_file_is_refused(big, tmp_path, capsys):
    _, base = big
    (tmp_path / "f").write_text("x")
    assert gate("--baseline", str(base), "--candidate", str(base), "--out", str(tmp_path / "f")) == 2
    assert "--out " + str(tmp_path / "f") + " is a file" in capsys.readouterr().err


def test_a_candidate_cut_short_before_any_task_fails_not_a_usage_error(big, tmp_path, capsys):
    _, base = big
    cand = write_run(tmp_path / "cand", {}, status="interrupted", status_reasons=["interrupted (SIGTERM)"])
    assert gate("--baseline", str(base), "--candidate", str(cand)) == 1  # was 2: "no task in common"
    out = capsys.readouterr().out
    assert "note: gate failed: the candidate run is interrupted, not complete" in out and "gate: FAIL" in out


def test_efficiency_is_gated_only_over_the_same_samples(big, tmp_path):
    # a 3-sample candidate's video-hours per hour are over other videos than the baseline's 400
    rows, _ = big
    base = write_run(tmp_path / "b", {"docqa": rows}, efficiency={"docqa": {"video_hours_per_hour": 298.0}})
    few = write_run(tmp_path / "c", {"docqa": rows[:3]}, efficiency={"docqa": {"video_hours_per_hour": 7284.0}},
                    args={"docqa": {"n": 400}})  # the same settings, cut by --limit
    g = run_gate(load_run(base), load_run(few), n_boot=200)
    assert g.efficiency == [] and any(n == "task 'docqa': efficiency not gated: the runs hold different samples "
                                           "(400 in the baseline, 3 in the candidate, 3 in both); run the candidate "
                                           "on the baseline's samples" for n in g.notes)
    same = write_run(tmp_path / "s", {"docqa": rows}, efficiency={"docqa": {"video_hours_per_hour": 100.0}})
    g = run_gate(load_run(base), load_run(same), n_boot=200)
    assert [(e.key, e.verdict) for e in g.efficiency] == [("video_hours_per_hour", FAIL)]


def test_a_failed_candidate_says_why_under_the_badge_and_shows_missing_tasks(big, tmp_path):
    """The gate of a failed candidate: FAIL, every task row INCONCLUSIVE; the reason was only in the
    notes at the bottom, and the baseline's tasks the candidate lacks were only notes too."""
    rows, _ = big
    vid = binary_samples("videoqa", 40, n_clusters=8, accuracy=0.6, seed=2)
    base = write_run(tmp_path / "b", {"docqa": rows, "videoqa": vid})
    cand = write_run(tmp_path / "c", {"docqa": rows[:20]}, status="failed", args={"docqa": {"n": 400}},
                     status_reasons=["task docqa: 20/20 samples errored (100.0% > --max-error-rate 5.0%)"])
    assert gate("--baseline", str(base), "--candidate", str(cand), "--out", str(tmp_path / "g")) == 1
    doc = load_doc(tmp_path / "g" / "gate.json", "gate")
    assert [(t["task"], t["verdict"]) for t in doc["tasks"]] == [("docqa", INCONCLUSIVE), ("videoqa", "SKIPPED")]
    assert doc["fail_reasons"][0].startswith("the candidate run is failed, not complete")
    html = (tmp_path / "g" / "gate.html").read_text()
    top = html[html.index('<span class="badge FAIL">'):html.index("<table>")]
    assert 'id="verdict-reasons"' in top and "the candidate run is failed, not complete" in top
    assert "the candidate run is failed: task docqa: 20/20 samples errored" in top
    assert '<tr><td>videoqa</td><td class="verdict SKIPPED">SKIPPED</td>' in html
    assert "in the baseline but not run by the candidate: the gate fails" in html
    notes = html[html.index("<h2>Notes</h2>"):] if "<h2>Notes</h2>" in html else ""
    assert "gate failed:" not in notes and "the candidate run is failed" not in notes  # said once, at the top


def test_no_not_gated_note_for_a_task_whose_row_fails(big, tmp_path):
    rows, base = big
    cand = write_run(tmp_path / "cand", {"docqa": rows})
    shutil.rmtree(cand / "samples")
    g = run_gate(load_run(base), load_run(cand), n_boot=200)
    assert g.tasks[0].verdict == FAIL
    assert not any("missing from the candidate: not gated" in n for n in g.notes)
    assert gate("--baseline", str(base), "--candidate", str(cand), "--out", str(tmp_path / "g")) == 1
    html = (tmp_path / "g" / "gate.html").read_text()
    top = html[html.index('<span class="badge FAIL">'):html.index("<table>")]
    assert "task docqa: the candidate has none of the 400 samples the baseline scored" in top


# ---- efficiency over repeated runs ---------------------------------------------------------------
def test_speed_test_is_the_pooled_t_test_on_log_figures():
    from scipy import stats

    from evalsuite.gate import speed_test
    speed, lo, hi, p = speed_test([100.0, 110.0, 90.0], [80.0, 85.0, 75.0], +1, 0.05, 0.10)
    assert speed == pytest.approx(0.801638, abs=1e-6)  # ratio of geometric means
    assert (lo, hi) == (pytest.approx(0.693020, abs=1e-6), pytest.approx(0.927280, abs=1e-6))
    # p of H0 "at most 10% slower": the pooled two-sample t test of log(candidate / 0.9) against log(baseline)
    ref = stats.ttest_ind(np.log([80.0, 85.0, 75.0]) - math.log(0.9), np.log([100.0, 110.0, 90.0]), alternative="less")
    assert p == pytest.approx(ref.pvalue, rel=1e-12) and p == pytest.approx(0.0827, abs=1e-4)
    assert speed_test([100.0, 110.0, 90.0], [80.0, 85.0, 75.0], +1, 0.05, 0.0)[3] == pytest.approx(0.015877, abs=1e-6)
    # a latency is inverted: the candidate taking 1.25x as long is 0.8x the speed
    speed, lo, hi, p = speed_test([10.0, 11.0, 9.0], [12.5, 13.75, 11.25], -1, 0.05, 0.0)
    assert speed == pytest.approx(0.8) and lo < 0.8 < hi and p < 0.05
    # one run per side: the plain ratio, no noise estimate
    assert speed_test([100.0], [70.0], +1, 0.05, 0.2) == (0.7, None, None, None)
    # one side repeated is enough (pooled over the side that has a spread)
    assert speed_test([100.0, 104.0], [70.0], +1, 0.05, 0.2)[3] is not None


def test_bounds_past_the_allowance_without_significance_after_holm_say_so():
    # one figure 38% slower, four unchanged: its bounds lie wholly below 0.80x, but Holm across the five
    # figures leaves it short of significance; the reason must not claim the bounds reach 0.80x
    base = [{"a_per_s": 100.0 * k, **{f"{x}_per_s": 10.0 * k for x in "bcde"}} for k in (1.0, 1.05, 0.95)]
    cand = [{"a_per_s": 62.0 * k, **{f"{x}_per_s": 10.0 * k for x in "bcde"}} for k in (1.0, 1.12, 0.9)]
    v = check_efficiency("t", base, cand, 0.20)[0]
    assert v.key == "a_per_s" and v.verdict == INCONCLUSIVE
    assert v.upper < 0.8 and v.p_beyond < 0.05 < v.p_beyond_holm
    assert v.reason == (f"37.8% slower, bounds [{v.lower:.3f}x, {v.upper:.3f}x] over 3 + 3 runs entirely below "
                        "0.80x, but not significantly after Holm across the gated figures (one-sided t test "
                        "p = 0.056 > 0.05): give more runs")


def _sim_gate(rng, n_base, n_cand, true_speed, noise=0.15, max_slowdown=0.20, n_sim=1500):
    """Verdict counts of one throughput figure with lognormal run-to-run noise (sd ``noise`` of the log)."""
    counts = {PASS: 0, FAIL: 0, INCONCLUSIVE: 0}
    for _ in range(n_sim):
        base = [{"samples_per_s": float(v)} for v in 20.0 * np.exp(rng.normal(0, noise, n_base))]
        cand = [{"samples_per_s": float(v)} for v in 20.0 * true_speed * np.exp(rng.normal(0, noise, n_cand))]
        counts[check_efficiency("t", base, cand, max_slowdown)[0].verdict] += 1
    return {k: v / n_sim for k, v in counts.items()}


def test_identical_runs_fail_at_most_alpha_once_the_noise_is_estimated():
    rng = np.random.default_rng(7)
    # One run per side, a run-to-run noise like a shared 2-core CPU's (15%): identical models fail
    # the 20% rule about 1 time in 6 - the reason repeats exist.
    assert 0.10 < _sim_gate(rng, 1, 1, 1.0)[FAIL] < 0.25
    # Three runs per side: FAIL needs the slowdown shown to be beyond 20%
    assert _sim_gate(rng, 3, 3, 1.0)[FAIL] < 0.005
    assert _sim_gate(rng, 3, 3, 0.8)[FAIL] <= 0.05 + 0.015  # exactly at the allowance: at most alpha
    # a true 50% slowdown is caught nearly always
    assert _sim_gate(rng, 3, 3, 0.5)[FAIL] > 0.85
    # with a quiet machine (3% noise) an unchanged model passes
    assert _sim_gate(rng, 3, 3, 1.0, noise=0.03)[PASS] > 0.95


def test_repeats_gate_efficiency_with_bounds_in_every_report(big, tmp_path, capsys):
    rows, _ = big
    runs = {}
    for side, values in (("b", (20.0, 21.0, 19.5)), ("c", (11.0, 11.5, 10.8))):
        for i, v in enumerate(values):
            runs[side, i] = write_run(tmp_path / f"{side}{i}", {"docqa": rows}, efficiency={"docqa": {"samples_per_s": v}},
                                      run_id=f"{side}{i}")
    out = tmp_path / "g"
    argv = ["--baseline", *(str(runs["b", i]) for i in range(3)), "--candidate", *(str(runs["c", i]) for i in range(3))]
    assert gate(*argv, "--out", str(out)) == 1
    doc = load_doc(out, "gate")
    e = doc["efficiency"][0]
    assert (e["n_baseline"], e["n_candidate"], e["verdict"]) == (3, 3, FAIL)
    assert e["baseline"] == pytest.approx((20.0 * 21.0 * 19.5) ** (1 / 3))
    assert e["speed_ratio"] == pytest.approx(((11.0 * 11.5 * 10.8) / (20.0 * 21.0 * 19.5)) ** (1 / 3))
    assert e["lower"] < e["speed_ratio"] < e["upper"] < 0.8 and e["p_beyond_holm"] < 0.05
    assert e["reason"].startswith("45.0% slower: more than the allowed 20%, significantly over 3 + 3 runs")
    assert doc["candidate"]["repeats"] == [str(runs["c", 1]), str(runs["c", 2])]
    assert doc["tasks"][0]["verdict"] == PASS  # accuracy on the first run of each side
    text = capsys.readouterr().out
    assert f"[{e['lower']:.3f}x, {e['upper']:.3f}x]  3+3   FAIL" in text
    assert f"| [{e['lower']:.3f}x, {e['upper']:.3f}x] | 3+3 | FAIL |" in (out / "gate.md").read_text()
    html = (out / "gate.html").read_text()
    assert f"<td>[{e['lower']:.3f}x, {e['upper']:.3f}x]</td><td class=\"num\">3 + 3</td>" in html
    # noisy repeats with a slowdown beyond the allowance but not significant: INCONCLUSIVE, exit 0
    noisy = [write_run(tmp_path / f"n{i}", {"docqa": rows}, efficiency={"docqa": {"samples_per_s": v}}, run_id=f"n{i}")
             for i, v in enumerate((8.0, 25.0, 12.0))]
    assert gate("--baseline", *(str(runs["b", i]) for i in range(3)), "--candidate", *map(str, noisy),
                "--out", str(out)) == 0
    doc = load_doc(out, "gate")
    assert doc["verdict"] == INCONCLUSIVE and doc["efficiency"][0]["verdict"] == INCONCLUSIVE
    assert "over 3 + 3 runs reach 0.80x: the runs vary too much to tell" in doc["efficiency"][0]["reason"]
    assert "docqa samples_per_s inconclusive: " in (out / "gate.html").read_text()
    # the same runs, close to the baseline: PASS once the lower bound is within 20%
    close = [write_run(tmp_path / f"k{i}", {"docqa": rows}, efficiency={"docqa": {"samples_per_s": v}}, run_id=f"k{i}")
             for i, v in enumerate((19.8, 20.6, 20.1))]
    assert gate("--baseline", *(str(runs["b", i]) for i in range(3)), "--candidate", *map(str, close),
                "--out", str(out)) == 0
    assert load_doc(out, "gate")["verdict"] == PASS


def test_a_repeat_must_be_the_same_run_again(big, tmp_path, capsys):
    rows, _ = big
    eff = {"docqa": {"samples_per_s": 20.0}}
    base = write_run(tmp_path / "b", {"docqa": rows}, efficiency=eff, run_id="b")
    cand = write_run(tmp_path / "c", {"docqa": rows}, efficiency=eff, run_id="c")
    fewer = write_run(tmp_path / "few", {"docqa": rows[:10]}, efficiency=eff)
    other_hw = write_run(tmp_path / "hw", {"docqa": rows}, efficiency=eff, device="cuda:0")
    other_model = write_run(tmp_path / "m", {"docqa": rows}, efficiency=eff, name="fp4")
    for bad, why in ((fewer, "task 'docqa' holds other samples than"), (other_hw, "other hardware than"),
                     (other_model, "another model than")):
        with pytest.raises(GateError, match=f"candidate run {bad}: {why}"):
            run_gate(load_run(base), load_run(cand), candidate_repeats=[(load_run(bad), str(bad))], n_boot=200)
    assert cli_main(["gate", "--baseline", str(base), str(tmp_path), "--candidate", str(cand)]) == 2
    assert "a repeat of the baseline is a run folder or a results .json file" in capsys.readouterr().err
    # the same weights read from another checkout (another path) are the same model
    moved = write_run(tmp_path / "moved", {"docqa": rows}, efficiency=eff, run_id="moved")
    doc = json.loads((moved / "results.json").read_text())
    doc["model"]["weights"], doc["model"]["batch_size"] = "checkpoint /elsewhere/tiny", 4
    (moved / "results.json").write_text(json.dumps(doc))
    g = run_gate(load_run(base), load_run(cand), candidate_repeats=[(load_run(moved), str(moved))], n_boot=200)
    assert [(e.n_candidate, e.verdict) for e in g.efficiency] == [(2, PASS)]
    # a candidate repeat that reached no SLO point fails the figure, like a single run would
    zero = write_run(tmp_path / "z", {"docqa": rows}, efficiency={"docqa": {"samples_per_s": 0.0}}, run_id="z")
    g = run_gate(load_run(base), load_run(cand), candidate_repeats=[(load_run(zero), str(zero))], n_boot=200)
    assert [(e.verdict, e.candidate, e.reason) for e in g.efficiency] == [
        (FAIL, 0.0, "the candidate reports 0 in 1 of its 2 runs for a figure the baseline has")]
    none = write_run(tmp_path / "none", {"docqa": rows}, efficiency={"docqa": {}}, run_id="none")
    g = run_gate(load_run(base), load_run(cand), n_boot=200,
                 candidate_repeats=[(load_run(zero), str(zero)), (load_run(none), str(none))])
    assert [e.reason for e in g.efficiency] == [
        "the candidate reports nothing in 1 and 0 in 1 of its 3 runs for a figure the baseline has"]
    # the same run given twice would count one measurement as two (and claim certainty): refused
    for argv in (["--baseline", str(base), str(base), "--candidate", str(cand)],
                 ["--baseline", str(base), "--candidate", str(cand), str(moved), str(moved)],
                 ["--baseline", str(base), str(moved), "--candidate", str(cand), str(moved)]):
        assert cli_main(["gate", *argv]) == 2
        assert "again (run_id " in capsys.readouterr().err


def test_a_candidate_repeat_cut_short_fails_the_gate(big, tmp_path, capsys):
    rows, _ = big
    eff = {"docqa": {"samples_per_s": 20.0}}
    base = write_run(tmp_path / "b", {"docqa": rows}, efficiency=eff, run_id="b")
    cand = write_run(tmp_path / "c", {"docqa": rows}, efficiency=eff, run_id="c")
    short = write_run(tmp_path / "s", {"docqa": rows}, efficiency=eff, run_id="s", status="interrupted")
    lines = (short / "samples" / "docqa.jsonl").read_text().splitlines(keepends=True)
    (short / "samples" / "docqa.jsonl").write_text("".join(lines[:30]))  # cut short after 30 samples
    for order in ([cand, short], [short, cand]):
        assert gate("--baseline", str(base), "--candidate", *map(str, order)) == 1
        out = capsys.readouterr().out
        assert "gate: FAIL" in out and "interrupted, not complete" in out


def test_efficiency_edge_cases_say_what_they_left_out(big, tmp_path):
    rows, _ = big
    mk = lambda name, e: write_run(tmp_path / name, {"docqa": rows}, efficiency={"docqa": e}, run_id=name)  # noqa: E731
    base, base2 = mk("b", {"samples_per_s": 20.0, "ttft_s": 0.2}), mk("b2", {"samples_per_s": 5.0, "ttft_s": 0.2})
    cand = mk("c", {"samples_per_s": 19.0, "ttft_s": 0.0})
    cand2 = mk("c2", {"samples_per_s": -1.0, "ttft_s": 0.0})
    # a tiny alpha with two runs on a side: t quantiles near 1e5, no overflow
    g = run_gate(load_run(base), load_run(cand), alpha=1e-5, n_boot=200, baseline_repeats=[(load_run(base2), "b2")])
    e = {x.key: x for x in g.efficiency}["samples_per_s"]
    assert e.verdict == INCONCLUSIVE and 0 < e.lower < e.upper and math.isfinite(e.upper)
    # a latency of 0 and a negative throughput are not measurements: left out, with a note
    g = run_gate(load_run(base), load_run(cand), n_boot=200, candidate_repeats=[(load_run(cand2), "c2")])
    assert [(x.key, x.n_candidate) for x in g.efficiency] == [("samples_per_s", 1)]
    assert "task 'docqa': samples_per_s gated over 1 of the candidate's 2 runs: the candidate reports -1.0, " \
           "not a measurement" in g.notes
    assert "task 'docqa': ttft_s not gated: the candidate reports 0.0, 0.0, not a measurement" in g.notes


def test_the_throughput_task_is_gated_though_its_requests_differ(tmp_path):
    """A load test's samples are the requests its SLO search sent: their ids differ from run to run, and
    the gate left its figures out as "other samples" (the throughput headline was hardly ever gated).
    Its figures compare when its settings do; compare shows them as a load test's."""
    from evalsuite.compare import compare_runs
    from evalsuite.types import SampleResult

    def load_test(folder, ids, rate, run_id):
        rows = [SampleResult(i, "throughput", None, "x", None, usage={"e2e_s": 0.1, "output_tokens": 8}) for i in ids]
        path = write_run(folder, {"throughput": rows}, run_id=run_id, args={"throughput": {"slo": "default"}},
                         efficiency={"throughput": {"output_tokens_per_s_at_slo": rate}})
        doc = json.loads((path / "results.json").read_text())
        doc["tasks"]["throughput"]["throughput"] = {"slo": {}, "gpus": {"count": None, "source": "none"},
                                                   "closed_loop": [], "open_loop": [],
                                                   "slo_search": {"mode": "concurrency", "best": None}}
        (path / "results.json").write_text(json.dumps(doc))
        return path

    base = load_test(tmp_path / "b", ["c1/0000", "c8/0001", "c16/0002"], 600.0, "b")
    slow = load_test(tmp_path / "s", ["c1/0000", "c4/0001", "c6/0002", "c5/0003"], 300.0, "s")
    g = run_gate(load_run(base), load_run(slow), n_boot=200)
    assert [(e.task, e.key, e.speed_ratio, e.verdict) for e in g.efficiency] == [
        ("throughput", "output_tokens_per_s_at_slo", 0.5, FAIL)]
    assert not any("efficiency not gated" in n for n in g.notes)
    c = compare_runs(load_run(base), load_run(slow))
    assert c.tasks[0].efficiency["output_tokens_per_s_at_slo"]["basis"] == "whole run (load test)"
    # repeats of a load test are repeats though their requests differ
    again = load_test(tmp_path / "s2", ["c1/0000", "c4/0001"], 310.0, "s2")
    g = run_gate(load_run(base), load_run(slow), n_boot=200, candidate_repeats=[(load_run(again), "s2")])
    assert [(e.n_candidate, e.verdict) for e in g.efficiency] == [(2, FAIL)] and g.efficiency[0].upper < 0.8


def test_an_inconclusive_task_says_how_many_samples_would_decide_it():
    """The hint scales the pairs' counts until Tango's bound clears the margin: for identical runs of 20
    it says about 130 (a 1/sqrt(n) rule said 710), and a gate of the data repeated that often PASSes."""
    from evalsuite.gate import samples_to_decide
    from evalsuite.paired import pair

    rows = binary_samples("docqa", 20, n_clusters=20, accuracy=0.5)
    v = decide("docqa", pair(rows, rows), margin=0.02, alpha=0.05)
    assert v.verdict == INCONCLUSIVE and "samples would show it within the margin" in v.reason
    need = int(v.reason.split("about ")[1].split(" samples")[0].replace(",", ""))
    assert 100 <= need <= 160
    reps = -(-need // 20)
    big = [dataclasses.replace(r, id=f"{r.id}-{k}") for k in range(reps) for r in rows]
    assert decide("docqa", pair(big, big), margin=0.02, alpha=0.05).verdict == PASS
    right = next(r.id for r in rows if r.score == 1.0)
    worse = pair(rows, flipped(rows, {right}))  # 5 points worse: beyond the 2-point margin, no hint
    assert samples_to_decide(worse, 0.02, 0.05) == ""


def test_a_lower_is_better_metric_is_not_gated_backwards(big, tmp_path, capsys):
    """An lm-eval metric with higher_is_better: false (an error rate): half the samples got worse
    (the value rose); the paired test reads a rise as better and PASSed it. It is SKIPPED, saying why."""
    rows, _ = big
    worse = [r for r in rows if r.score == 0.0][:100]
    base = write_run(tmp_path / "b", {"docqa": rows})
    cand = write_run(tmp_path / "c", {"docqa": flipped(rows, {r.id for r in worse})})
    for run in (base, cand):
        res = json.loads((run / "results.json").read_text())
        res["tasks"]["docqa"]["lower_is_better"] = True
        (run / "results.json").write_text(json.dumps(res))
    code = gate("--baseline", str(base), "--candidate", str(cand), "--out", str(tmp_path / "g"))
    doc = load_doc(tmp_path / "g", "gate")
    assert [(t["task"], t["verdict"]) for t in doc["tasks"]] == [("docqa", SKIPPED)]
    assert "lower-is-better" in doc["tasks"][0]["reason"]
    assert code == 1 and "nothing was gated: docqa: lower-is-better, not gated" in capsys.readouterr().out


# ---- what the gate covers -------------------------------------------------------------------------
def test_a_baseline_task_the_candidate_did_not_run_fails_the_gate(big, tmp_path, capsys):
    """A candidate without three of the baseline's tasks passed (SKIPPED rows) while the same
    candidate with those tasks' samples lost failed: a lost task must not be the easier way through."""
    rows, _ = big
    vid = binary_samples("videoqa", 40, n_clusters=8, accuracy=0.6, seed=2)
    base = write_run(tmp_path / "b", {"docqa": rows, "videoqa": vid})
    cand = write_run(tmp_path / "c", {"docqa": rows, "gui": binary_samples("gui", 20, n_clusters=5, accuracy=0.5)})
    assert gate("--baseline", str(base), "--candidate", str(cand), "--max-slowdown", "-1") == 1
    out = capsys.readouterr().out
    assert "note: gate failed: baseline task(s) videoqa not run by the candidate" in out
    assert "note: task(s) gui: in the candidate but not in the baseline: not gated" in out
    g = run_gate(load_run(base), load_run(cand), n_boot=200)
    assert [(t.task, t.verdict) for t in g.tasks] == [("docqa", PASS), ("videoqa", SKIPPED)] and g.verdict == FAIL
    # --tasks asks for a narrower gate: only the named tasks are required
    assert gate("--baseline", str(base), "--candidate", str(cand), "--tasks", "docqa", "--max-slowdown", "-1") == 0
    assert "gate: PASS" in capsys.readouterr().out
    assert gate("--baseline", str(base), "--candidate", str(cand), "--tasks", "docqa,videoqa", "--max-slowdown", "-1") == 1
    assert "baseline task(s) videoqa not run by the candidate" in capsys.readouterr().out
    assert gate("--baseline", str(base), "--candidate", str(cand), "--tasks", "gui") == 2
    assert "task(s) gui not in the baseline" in capsys.readouterr().err


def test_save_baseline_replaces_a_baseline_only_with_a_pass_that_covers_it(big, tmp_path, capsys):
    """--save-baseline overwrote a good baseline after an INCONCLUSIVE gate, and with a run of fewer
    tasks or samples: what the new one lacked was never gated again."""
    rows, _ = big
    vid = binary_samples("videoqa", 40, n_clusters=8, accuracy=0.6, seed=2)
    folder = tmp_path / "bl"
    save_baseline(write_run(tmp_path / "b", {"docqa": rows, "videoqa": vid}, name="fp4", precision="nvfp4"), folder, "fp4")
    before = (folder / "fp4.json").read_text()

    def save(cand, *more):
        code = gate("--baseline", str(folder), "--candidate", str(cand), "--max-slowdown", "-1",
                    "--save-baseline", "fp4", *more)
        return code, capsys.readouterr().out

    # a PASS over docqa alone (--tasks): videoqa would be lost
    docqa_only = write_run(tmp_path / "c1", {"docqa": rows}, name="fp4", precision="nvfp4", run_id="c1")
    code, out = save(docqa_only, "--tasks", "docqa")
    assert code == 0 and "gate: PASS" in out
    assert ("baseline not saved: baseline fp4 has task(s) videoqa that the candidate did not run: saving would stop "
            "gating them (re-baseline deliberately with --force-save)") in out
    # a PASS over fewer samples (at a wide margin)
    fewer = write_run(tmp_path / "c2", {"docqa": rows[:300], "videoqa": vid}, name="fp4", precision="nvfp4",
                      run_id="c2", args={"docqa": {"n": 400}, "videoqa": {"n": 40}})
    code, out = save(fewer, "--margin", "30")
    assert code == 0 and "gate: PASS" in out
    assert "baseline not saved: the candidate has fewer samples than baseline fp4 (docqa 300 < 400)" in out
    # an INCONCLUSIVE gate (a few flips on videoqa's 40 samples)
    worse = write_run(tmp_path / "c3", {"docqa": rows, "videoqa": flipped(vid, {vid[0].id, vid[1].id})}, name="fp4",
                      precision="nvfp4", run_id="c3")
    code, out = save(worse)
    assert code == 0 and "gate: INCONCLUSIVE" in out
    assert "baseline not saved: the gate's verdict is INCONCLUSIVE, not PASS (re-baseline deliberately with --force-save)" in out
    assert (folder / "fp4.json").read_text() == before and (folder / "fp4" / "samples" / "videoqa.jsonl").exists()
    # deliberate re-baselining: --force-save writes it; the exit status stays the gate's
    code, out = save(docqa_only, "--tasks", "docqa", "--force-save")
    assert code == 0 and f"baseline: {folder / 'fp4.json'}" in out
    assert list(json.loads((folder / "fp4.json").read_text())["tasks"]) == ["docqa"]
    # a run that is not complete is never saved
    cut = write_run(tmp_path / "c4", {"docqa": rows}, name="fp4", precision="nvfp4", run_id="c4", status="interrupted")
    code, out = save(cut, "--force-save")
    assert code == 1 and "baseline not saved: the candidate run is interrupted, not complete" in out


def test_save_baseline_needs_every_shared_task_gated_against_the_baseline_it_replaces(big, tmp_path, capsys):
    """A candidate whose videoqa collapsed PASSed a gate restricted to docqa (--tasks) and replaced the
    baseline, videoqa at 0 included: the next equally broken candidate then PASSed the whole gate."""
    rows, _ = big
    vid = binary_samples("videoqa", 40, n_clusters=8, accuracy=0.6, seed=2)
    folder = tmp_path / "bl"
    save_baseline(write_run(tmp_path / "b", {"docqa": rows, "videoqa": vid}, name="fp4", precision="nvfp4"), folder, "fp4")
    save_baseline(write_run(tmp_path / "b8", {"docqa": rows, "videoqa": vid}, name="fp8", precision="fp8",
                            run_id="b8"), folder, "fp8")
    before = (folder / "fp4.json").read_text()
    broken = write_run(tmp_path / "c", {"docqa": rows, "videoqa": [dataclasses.replace(r, score=0.0) for r in vid]},
                       name="fp4", precision="nvfp4", run_id="c")
    code = gate("--baseline", str(folder), "--candidate", str(broken), "--max-slowdown", "-1", "--margin", "30", "--tasks", "docqa",
                "--save-baseline", "fp4")
    out = capsys.readouterr().out
    assert code == 0 and "gate: PASS" in out
    assert ("baseline not saved: task(s) videoqa of baseline fp4 were not gated (--tasks, or nothing to compare): "
            "saving would replace them unchecked") in out
    assert (folder / "fp4.json").read_text() == before
    # a PASS against another baseline (fp8, by name) does not replace fp4
    fine = write_run(tmp_path / "d", {"docqa": rows, "videoqa": vid}, name="fp4", precision="nvfp4", run_id="d")
    code = gate("--baseline", str(folder), "--baseline-name", "fp8", "--candidate", str(fine), "--max-slowdown", "-1", "--margin", "30",
                "--save-baseline", "fp4")
    out = capsys.readouterr().out
    assert code == 0 and "gate: PASS" in out
    assert f"baseline not saved: the gate ran against {folder / 'fp8.json'}, not baseline fp4" in out
    assert (folder / "fp4.json").read_text() == before
    # gated against fp4 itself, every task: saved
    code = gate("--baseline", str(folder), "--candidate", str(fine), "--max-slowdown", "-1", "--margin", "30", "--save-baseline", "fp4")
    out = capsys.readouterr().out
    assert code == 0 and f"baseline: {folder / 'fp4.json'}" in out


def test_a_baseline_that_is_not_complete_is_refused_unless_allowed(tmp_path, capsys):
    """A failed baseline (40% of its samples errored) gated a candidate that lost 10 points on every
    sample the baseline answered: the baseline's errors counted as wrong and the candidate PASSed."""
    base_rows = binary_samples("docqa", 400, n_clusters=400, accuracy=0.7, seed=1)
    b_rows, c_rows = [], []
    for i, r in enumerate(base_rows):
        rb, rc = dataclasses.replace(r), dataclasses.replace(r)
        if i % 5 < 2:
            rb.score, rb.prediction, rb.error = None, None, "TimeoutError: server unavailable"
        elif r.score == 1.0 and i % 3 == 0:
            rc.score, rc.prediction = 0.0, "B"
        b_rows.append(rb)
        c_rows.append(rc)
    reason = "task docqa: 160/400 samples errored (40.0% > --max-error-rate 5.0%)"
    base = write_run(tmp_path / "b", {"docqa": b_rows}, status="failed", status_reasons=[reason])
    cand = write_run(tmp_path / "c", {"docqa": c_rows}, run_id="c")
    assert gate("--baseline", str(base), "--candidate", str(cand), "--max-slowdown", "-1") == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"the baseline run {base} is failed, not complete ({reason})" in err
    assert "--allow-incomplete-baseline" in err
    out = tmp_path / "g"
    code = gate("--baseline", str(base), "--candidate", str(cand), "--max-slowdown", "-1", "--allow-incomplete-baseline",
                "--out", str(out))
    text = capsys.readouterr().out
    assert code == 0 and (
        "\ngate: PASS (accuracy only: throughput not asked (--max-slowdown < 0); against a failed baseline run, "
        "allowed by --allow-incomplete-baseline)\n") in text
    assert f"note: the baseline run is failed (allowed by --allow-incomplete-baseline): {reason}" in text
    html = (out / "gate.html").read_text()
    top = html[html.index('<span class="badge'):html.index("<table>")]
    assert "gated against a failed baseline run: task docqa: 160/400 samples errored (40.0% &gt; --max-error" in top


@pytest.mark.parametrize("layout", ["run folder", "json"])
def test_a_baseline_missing_a_samples_file_is_an_error_in_either_layout(tmp_path, capsys, layout):
    """A run-folder baseline without a task's samples file left that task silently ungated (PASS),
    while the <name>.json layout refused; both refuse now when results.json says the task has samples."""
    rows = {t: binary_samples(t, 40, n_clusters=8, accuracy=0.7, seed=i) for i, t in enumerate(["docqa", "videoqa"])}
    run = write_run(tmp_path / "run", rows)
    folder = tmp_path / "bl"
    if layout == "json":
        save_baseline(run, folder, "bf16")
        (folder / "bf16" / "samples" / "videoqa.jsonl").unlink()
        base, missing = folder / "bf16.json", folder / "bf16" / "samples" / "videoqa.jsonl"
    else:
        base = write_run(folder / "bf16", rows)
        missing = base / "samples" / "videoqa.jsonl"
        missing.unlink()
    cand = write_run(tmp_path / "cand", {"docqa": rows["docqa"], "videoqa": flipped(rows["videoqa"], {r.id for r in rows["videoqa"]})},
                     run_id="c")
    for b in (base, folder):
        assert gate("--baseline", str(b), "--candidate", str(cand), "--max-slowdown", "-1") == 2
        err = capsys.readouterr().err
        assert err == f"error: baseline {base} has no sample file for task 'videoqa' (expected {missing}; the gate needs per-sample scores)\n"


@pytest.mark.parametrize("side", ["candidate", "baseline"])
def test_a_complete_run_whose_samples_file_disagrees_with_its_results_is_refused(big, tmp_path, capsys, side):
    """A complete candidate (n_samples 400) whose samples file held 300 lines, the wrong answers gone,
    PASSed with a note; the gate would judge other samples than the run scored."""
    rows, base = big
    lost = [r for r in rows if r.score == 0.0][:100]
    other = write_run(tmp_path / side, {"docqa": rows}, run_id=side)
    (other / "samples" / "docqa.jsonl").write_text(
        "".join(json.dumps(r.to_dict()) + "\n" for r in rows if r not in lost))
    b, c = (base, other) if side == "candidate" else (other, base)
    assert gate("--baseline", str(b), "--candidate", str(c), "--max-slowdown", "-1") == 2
    assert capsys.readouterr().err == (
        f"error: {side} {other}: task 'docqa': samples/docqa.jsonl holds 300 distinct sample id(s) but its "
        f"results.json says n_samples 400 (the run is complete): its files disagree (a partial copy?); refusing "
        f"inconsistent input\n")
    # a run that is not complete may hold fewer (the candidate then fails on its status)
    cut = write_run(tmp_path / "cut", {"docqa": rows}, run_id="cut", status="interrupted")
    (cut / "samples" / "docqa.jsonl").write_text("".join(json.dumps(r.to_dict()) + "\n" for r in rows[:300]))
    assert gate("--baseline", str(base), "--candidate", str(cut), "--max-slowdown", "-1") == 1


# ---- what a small gate can show -----------------------------------------------------------------
def test_a_task_that_cannot_fail_at_its_size_says_so():
    """20 samples from 5 documents, every answer lost: the sign-flip test cannot go below 1/32 and
    Holm across 4 tasks makes that 0.125, so the task could never FAIL; it read "not significantly
    worse" beside an interval wholly below the margin."""
    def task(n_clusters, lost):
        ids = [f"s{i}" for i in range(20)]
        a = np.ones(20)
        b = a.copy()
        b[:lost] = 0.0
        return Paired(ids, a, b, [f"c{i % n_clusters}" for i in range(20)])

    pairs = {"docqa": task(5, 20), "videoqa": task(5, 0), "audioqa": task(20, 0), "gui": task(5, 0)}
    v = gate_tasks(pairs, margin=0.02, alpha=0.05, n_boot=200)[0]
    assert v.verdict == INCONCLUSIVE and v.p_worse_holm == pytest.approx(0.125) and v.upper < -0.02
    assert v.p_worse_floor == pytest.approx(0.125)
    assert v.reason == (f"worse by 100.0 points, its interval [{100 * v.lower:+.1f}, {100 * v.upper:+.1f}] entirely "
                        "below -2.0, but it cannot fail at this size: 5 source clusters, smallest attainable p 0.125 "
                        "after Holm across 4 tasks > 0.05 (gate more samples, from more sources)")
    # the same size where nothing changed: the interval reaches -2, and the reason says it cannot fail either
    v = gate_tasks(pairs, margin=0.02, alpha=0.05, n_boot=200)[1]
    assert v.verdict == INCONCLUSIVE and v.reason.endswith(
        "; it cannot fail at this size: 5 source clusters, smallest attainable p 0.125 after Holm across 4 tasks > 0.05 "
        "(gate more samples, from more sources)")
    # 20 independent samples could fail: no such words
    assert "cannot fail" not in gate_tasks(pairs, margin=0.02, alpha=0.05, n_boot=200)[2].reason
    # an interval past the margin that the (Holm-adjusted) test did not reject, at a size that could fail
    p = _regressed(200, 12, 0)
    v = decide("docqa", p, margin=0.02, alpha=0.05, p_worse_adjusted=0.08, p_worse_floor=1e-9, n_tasks=3, n_boot=200)
    assert v.verdict == INCONCLUSIVE and v.upper < -0.02
    assert v.reason == (f"worse by 6.0 points, its interval [{100 * v.lower:+.1f}, {100 * v.upper:+.1f}] entirely below "
                        "-2.0, but the one-sided mcnemar-exact test did not reject (p = 0.080 after Holm across 3 tasks "
                        "> 0.05): too few samples to tell")


def test_efficiency_is_not_gated_across_core_counts_servers_or_speed_settings(big, tmp_path, capsys):
    """hardware() compared device, CPU model and GPUs only: a 1-core runner against a 2-core baseline
    FAILed on speed, two openai: servers (device "remote") counted as one machine, and a batch size
    of 32 against 8 was gated as if the same run."""
    rows, _ = big

    def run(name, *, model=None, env=None, rate=10.0):
        folder = write_run(tmp_path / name, {"docqa": rows}, run_id=name, efficiency={"docqa": {"samples_per_s": rate}})
        doc = json.loads((folder / "results.json").read_text())
        doc["model"].update(model or {})
        doc["environment"].update(env or {})
        (folder / "results.json").write_text(json.dumps(doc))
        return load_run(folder)

    base = run("b", env={"cpu_count": 2}, model={"batch_size": 8})
    g = run_gate(base, run("one_core", env={"cpu_count": 1}, model={"batch_size": 8}, rate=5.0), n_boot=200)
    assert not g.efficiency and not g.failed
    assert g.efficiency_skipped.startswith("different hardware (baseline device cpu, cpu test-cpu, cpu_count 2; "
                                           "candidate device cpu, cpu test-cpu, cpu_count 1)")
    g = run_gate(base, run("batch32", env={"cpu_count": 2}, model={"batch_size": 32}, rate=9.5), n_boot=200)
    assert not g.efficiency and g.verdict == PASS
    assert g.efficiency_skipped == ("different run settings (batch_size 8 vs 32, baseline vs candidate): the efficiency "
                                    "figures depend on them; run both sides with the same settings")
    assert g.to_dict()["verdict_text"] == "PASS (accuracy only: throughput not gated, different run settings)"
    same = run("same", env={"cpu_count": 2}, model={"batch_size": 8}, rate=5.0)
    assert [e.verdict for e in run_gate(base, same, n_boot=200).efficiency] == [FAIL]  # same machine and settings: gated

    def remote(name, url, served="omni", concurrency=16, rate=10.0):
        return run(name, model={"device": "remote", "backend": "openai", "name": f"openai:{url}", "base_url": url,
                                "served_model": served, "max_concurrency": concurrency}, rate=rate)

    h100 = remote("h100", "http://h100-box:8000/v1")
    g = run_gate(h100, remote("l4", "http://l4-box:8000/v1", rate=1.5), n_boot=200, allow_config_mismatch=True)
    assert not g.efficiency and "server http://l4-box:8000/v1 model omni" in g.efficiency_skipped
    g = run_gate(h100, remote("h100c4", "http://h100-box:8000/v1", concurrency=4, rate=3.0), n_boot=200)
    assert not g.efficiency and g.efficiency_skipped.startswith("different run settings (max_concurrency 16 vs 4")
    g = run_gate(h100, remote("h100again", "http://h100-box:8000/v1", rate=3.0), n_boot=200)
    assert [e.verdict for e in g.efficiency] == [FAIL]
    # the runner's --batch-size, recorded for every backend: an openai: client sends that many at once
    g = run_gate(run("o8", env={"batch_size": 8}, model={"device": "remote", "backend": "openai"}),
                 run("o64", env={"batch_size": 64}, model={"device": "remote", "backend": "openai"}, rate=30.0),
                 n_boot=200)
    assert not g.efficiency and g.efficiency_skipped.startswith("different run settings (batch_size 8 vs 64")
    # torchrun: a run's samples/s is the sum over its processes, 2 of them twice one's
    g = run_gate(run("torchrun2", env={"cpu_count": 2, "processes": 2}, model={"batch_size": 8}, rate=20.0),
                 run("alone", env={"cpu_count": 2, "processes": 1}, model={"batch_size": 8}, rate=10.0), n_boot=200)
    assert not g.efficiency and g.efficiency_skipped.startswith("different run settings (processes 2 vs 1")
    # a folder whose results ran at two batch sizes records none: its speed matches nothing, itself included
    mixed = run("mixed", env={"cpu_count": 2, "batch_size": None}, rate=5.0)
    g = run_gate(run("b8", env={"cpu_count": 2, "batch_size": 8}), mixed, n_boot=200)
    assert not g.efficiency and g.efficiency_skipped.startswith("different run settings (batch_size 8 vs mixed")
    g = run_gate(mixed, mixed, n_boot=200)
    assert not g.efficiency and g.efficiency_skipped.startswith("different run settings (batch_size mixed vs mixed")
    # the reference model describes the last invocation's batch size; the folder's record says mixed
    ref_mixed = run("ref_mixed", env={"cpu_count": 2, "batch_size": None}, model={"batch_size": 2}, rate=5.0)
    g = run_gate(run("ref2", env={"cpu_count": 2, "batch_size": 2}, model={"batch_size": 2}), ref_mixed, n_boot=200)
    assert not g.efficiency and g.efficiency_skipped.startswith("different run settings (batch_size 2 vs mixed")
    # repeats of one side may both be mixed: the accuracy gate runs (efficiency still not gated)
    g = run_gate(mixed, base, n_boot=200,
                 baseline_repeats=[(run("mixed2", env={"cpu_count": 2, "batch_size": None}, rate=5.0), "mixed2")])
    assert g.tasks and not g.efficiency
    # results written before a setting was recorded (no key): compared as before
    g = run_gate(run("b8again", env={"cpu_count": 2, "batch_size": 8}), run("old", env={"cpu_count": 2}, rate=5.0),
                 n_boot=200)
    assert [e.verdict for e in g.efficiency] == [FAIL]


def test_the_cli_says_which_baseline_it_picked_from_a_folder_and_why(big, tmp_path, capsys):
    rows, run = big
    folder = tmp_path / "baselines"
    save_baseline(run, folder, "bf16")
    save_baseline(write_run(tmp_path / "fp4run", {"docqa": rows}, name="fp4", precision="nvfp4"), folder, "fp4")
    by_name = write_run(tmp_path / "c1", {"docqa": rows}, name="fp4", precision="nvfp4", run_id="c1")
    gate("--baseline", str(folder), "--candidate", str(by_name), "--max-slowdown", "-1")
    assert capsys.readouterr().out.startswith(
        f"gating against baseline {folder / 'fp4.json'} (its model name 'fp4' is the candidate's)\n")
    by_precision = write_run(tmp_path / "c2", {"docqa": rows}, name="fp4-rerun", precision="nvfp4", run_id="c2")
    gate("--baseline", str(folder), "--candidate", str(by_precision), "--max-slowdown", "-1")
    assert capsys.readouterr().out.startswith(
        f"gating against baseline {folder / 'fp4.json'} (no baseline has the candidate's model name 'fp4-rerun'; this "
        f"one has its precision 'nvfp4')\n")
    gate("--baseline", str(folder), "--candidate", str(by_name), "--max-slowdown", "-1", "--baseline-name", "bf16")
    assert capsys.readouterr().out.startswith(f"gating against baseline {folder / 'bf16.json'} (named by --baseline-name bf16)\n")
    gate("--baseline", str(run), "--candidate", str(by_name), "--max-slowdown", "-1")  # given directly: nothing to say
    assert capsys.readouterr().out.startswith("task ")


def test_a_load_tests_settings_are_noted_not_refused_when_efficiency_is_not_asked(big, tmp_path):
    """A baseline holding the throughput task at an older version refused the whole gate, even with
    --max-slowdown < 0 (nothing of the load test gated): its settings are then a note."""
    from evalsuite.compare import CompareError
    from evalsuite.runner import RunConfig, run

    rows, _ = big
    tp = tmp_path / "tp"
    run(RunConfig(model="mock:ttft=0.01,itl=0.002", tasks=["throughput"], out=tp, limit=3, quiet=True, report=False,
                  task_args={"throughput": {"mix": "text", "video_requests": 0, "audio_requests": 0, "warmup": 0,
                                            "concurrency": [1], "rate_fractions": [], "max_tokens": 4}}))
    entry = json.loads((tp / "results.json").read_text())["tasks"]["throughput"]

    def with_load_test(name, version):
        folder = write_run(tmp_path / name, {"docqa": rows}, run_id=name)
        doc = json.loads((folder / "results.json").read_text())
        doc["tasks"]["throughput"] = {**entry, "version": version}
        (folder / "results.json").write_text(json.dumps(doc))
        shutil.copy(tp / "samples" / "throughput.jsonl", folder / "samples" / "throughput.jsonl")
        return load_run(folder)

    base, cand = with_load_test("b", "2"), with_load_test("c", entry["version"])
    g = run_gate(base, cand, max_slowdown_pct=None, n_boot=200)
    assert g.verdict == PASS and not g.failed
    assert any(n.startswith("task 'throughput': settings differ (version") for n in g.notes)
    with pytest.raises(CompareError, match="task 'throughput' was run with different settings \\(version"):
        run_gate(base, cand, max_slowdown_pct=20.0, n_boot=200)  # its figures gated: not across versions
