"""``evalsuite compare``: paired deltas, McNemar + Holm, efficiency ratios, config checks, pages."""

from __future__ import annotations

import itertools
import json
import re
import shutil

import numpy as np
import pytest
from runfolders import binary_samples, flipped, write_run

from evalsuite.cli import main as cli_main
from evalsuite.compare import (CompareError, compare_runs, config_differences, efficiency_direction,
                               efficiency_ratios)
from evalsuite.paired import holm
from evalsuite.reports.compare_page import render_compare
from evalsuite.results import COMPARE_SCHEMA_VERSION, RunFormatError, load_doc, load_run, read_jsonl as json_rows
from evalsuite.types import SampleResult


def _two_runs(tmp_path, *, eff_a=None, eff_b=None):
    doc = binary_samples("docqa", 200, n_clusters=20, accuracy=0.7, seed=1)
    aud = binary_samples("audioqa", 60, n_clusters=12, accuracy=0.6, seed=2)
    right = [r.id for r in doc if r.score == 1.0]
    wrong = [r.id for r in doc if r.score == 0.0]
    doc_b = flipped(doc, set(right[:9]) | set(wrong[:2]))  # 9 right->wrong, 2 wrong->right
    aud_b = flipped(aud, {aud[0].id, aud[1].id, aud[2].id})
    a = write_run(tmp_path / "a", {"docqa": doc, "audioqa": aud}, efficiency=eff_a)
    b = write_run(tmp_path / "b", {"docqa": doc_b, "audioqa": aud_b}, name="fp8", precision="fp8", efficiency=eff_b)
    return a, b, doc, aud


def test_compare_json_values(tmp_path, capsys):
    a, b, doc, aud = _two_runs(tmp_path, eff_a={"docqa": {"single_stream_tokens_per_s": 50.0, "ttft_ms": 20.0}},
                               eff_b={"docqa": {"single_stream_tokens_per_s": 80.0, "ttft_ms": 25.0, "only_b": 1.0}})
    assert cli_main(["compare", str(a), str(b), "--out", str(tmp_path / "out"), "--n-boot", "500"]) == 0
    out = capsys.readouterr().out
    assert "docqa" in out and "cluster-signflip" in out and "B/A" in out
    c = json.loads((tmp_path / "out" / "compare.json").read_text())
    d = c["tasks"]["docqa"]
    assert (d["n"], d["n_worsened"], d["n_improved"]) == (200, 9, 2)
    assert d["delta"] == pytest.approx((2 - 9) / 200)
    # 20 clusters: the exact cluster sign-flip test over the clusters whose answers changed.
    sums = {}
    for ra, rb in zip(doc, json_rows(b / "samples" / "docqa.jsonl")):
        c_ = ra.metadata["cluster"]
        sums[c_] = sums.get(c_, 0.0) + rb["score"] - ra.score
    nz = [v for v in sums.values() if v]
    flips = [sum(s * v for s, v in zip(signs, nz)) for signs in itertools.product([-1, 1], repeat=len(nz))]
    assert d["test"] == "cluster-signflip"
    assert d["p_value"] == pytest.approx(sum(abs(f) >= abs(sum(nz)) - 1e-9 for f in flips) / len(flips))
    assert d["ci"][0] < d["delta"] < d["ci"][1] and d["ci"][1] - d["ci"][0] < d["ci_unpaired"][1] - d["ci_unpaired"][0]
    au = c["tasks"]["audioqa"]
    assert au["n_worsened"] + au["n_improved"] == 3
    assert au["test"] == "cluster-signflip" and 0.2 < au["p_value"] <= 1.0
    assert [d["p_holm"], au["p_holm"]] == pytest.approx(holm([d["p_value"], au["p_value"]]))
    assert d["efficiency"] == {
        "single_stream_tokens_per_s": {"a": 50.0, "b": 80.0, "ratio": 1.6, "direction": 1,
                                       "basis": "whole run (same samples)"},
        "ttft_ms": {"a": 20.0, "b": 25.0, "ratio": 1.25, "direction": -1, "basis": "whole run (same samples)"},
    }
    assert sorted(f["id"] for f in d["flips"]) == sorted(
        r.id for r, s in zip(doc, load_run(b)[1]["docqa"]) if r.score != s.score)


def test_pages_show_every_flip_and_only_flips(tmp_path):
    a, b, doc, _ = _two_runs(tmp_path)
    cli_main(["compare", str(a), str(b), "--out", str(tmp_path / "out")])
    flips = (tmp_path / "out" / "flips.html").read_text()
    changed = json.loads((tmp_path / "out" / "compare.json").read_text())["tasks"]["docqa"]["flips"]
    for f in changed:
        assert f"<code>{f['id']}</code>" in flips
    unchanged = {r.id for r in doc} - {f["id"] for f in changed}
    assert not any(f"<code>{i}</code>" in flips for i in unchanged)
    assert flips.count("right → wrong") == 9 + sum(1 for f in json.loads(
        (tmp_path / "out" / "compare.json").read_text())["tasks"]["audioqa"]["flips"] if f["b"]["score"] < f["a"]["score"])
    index = (tmp_path / "out" / "index.html").read_text()
    assert 'href="flips.html#task-docqa"' in index and "data:image/png;base64," in index  # forest plot


def test_max_flips_limits_the_browser(tmp_path):
    a, b, _, _ = _two_runs(tmp_path)
    cli_main(["compare", str(a), str(b), "--out", str(tmp_path / "out"), "--max-flips", "3"])
    flips = (tmp_path / "out" / "flips.html").read_text()
    assert "first 3 shown, 8 more in compare.json" in flips


def test_config_mismatch_refused_unless_allowed(tmp_path, capsys):
    rows = binary_samples("videoqa", 20, n_clusters=4, accuracy=0.5)
    a = write_run(tmp_path / "a", {"videoqa": rows}, args={"videoqa": {"fps": 1.0, "max_frames": 32}})
    b = write_run(tmp_path / "b", {"videoqa": rows}, args={"videoqa": {"fps": 0.5, "max_frames": 32}})
    assert cli_main(["compare", str(a), str(b), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: task 'videoqa' was run with different settings (args.fps: 1.0 != 0.5)")
    assert cli_main(["compare", str(a), str(b), "--out", str(tmp_path / "o"), "--allow-config-mismatch"]) == 0
    assert "warning: task 'videoqa' settings differ" in capsys.readouterr().err
    assert "different settings" in (tmp_path / "o" / "index.html").read_text()


def test_config_differences_flattens_nested_settings():
    ta = {"version": "1", "args": {"n": 5, "media": {"fps": 1}}, "media": {"sr": 16000}}
    tb = {"version": "2", "args": {"n": 5, "media": {"fps": 2}}, "media": {"sr": 16000}}
    assert config_differences(ta, tb) == ["args.media.fps: 1 != 2", "version: '1' != '2'"]
    assert config_differences(ta, ta) == []
    # where an official benchmark was read from is not a setting, in results written before data_location too
    old = {"version": "1", "args": {"data_dir": "/data/ocrbench", "media_dir": "/m", "hf": ""}}
    new = {"version": "1", "args": {"hf": ""}, "data_location": {"data_dir": "/mnt/ocrbench"}}
    assert config_differences(old, new) == []
    assert config_differences(old, {"version": "1", "args": {"hf": "echo840/OCRBench"}}) == ["args.hf: '' != 'echo840/OCRBench'"]


def test_no_common_task_and_bad_folders(tmp_path, capsys):
    a = write_run(tmp_path / "a", {"docqa": binary_samples("docqa", 10, n_clusters=2, accuracy=0.5)})
    b = write_run(tmp_path / "b", {"gui": binary_samples("gui", 10, n_clusters=2, accuracy=0.5)})
    assert cli_main(["compare", str(a), str(b), "--out", str(tmp_path / "o")]) == 2
    assert "have no task in common (A: docqa; B: gui)" in capsys.readouterr().err
    (tmp_path / "empty").mkdir()
    assert cli_main(["compare", str(a), str(tmp_path / "empty"), "--out", str(tmp_path / "o")]) == 2
    assert "no results.json" in capsys.readouterr().err
    with pytest.raises(CompareError, match="task\\(s\\) gui not in both"):
        compare_runs(load_run(a), load_run(a), tasks=["gui"])


def test_task_without_shared_samples_is_reported_not_crashing(tmp_path):
    a_rows = binary_samples("docqa", 10, n_clusters=2, accuracy=0.5)
    b_rows = [SampleResult(id=r.id, task="docqa", target=r.target, prediction=None, score=None, error="boom")
              for r in a_rows]
    c = compare_runs(load_run(write_run(tmp_path / "a", {"docqa": a_rows})),
                     load_run(write_run(tmp_path / "b", {"docqa": b_rows})))
    t = c.tasks[0]
    assert t.diff is None and t.note == "no sample scored in both runs" and t.p_holm is None and t.n_only_a == 10


def test_continuous_scores_use_signflip(tmp_path):
    rng = np.random.default_rng(0)
    a_rows = [SampleResult(id=str(i), task="ocr", target="x", prediction="x", score=float(rng.random()),
                           metadata={"cluster": f"d{i % 10}"}) for i in range(80)]
    b_rows = [SampleResult(id=r.id, task="ocr", target="x", prediction="y", score=min(1.0, r.score + 0.1),
                           metadata=r.metadata) for r in a_rows]
    c = compare_runs(load_run(write_run(tmp_path / "a", {"ocr": a_rows})),
                     load_run(write_run(tmp_path / "b", {"ocr": b_rows})), n_boot=300)
    d = c.tasks[0].diff
    # 10 clusters: Tango's (fractional-count) interval at Student's t(9), lower bound 0.028 (0.043 at z).
    assert d is not None and d.test == "cluster-signflip" and d.p_value < 0.01 and 0.02 < d.ci[0] < d.delta


def test_efficiency_helpers():
    assert efficiency_direction("single_stream_tokens_per_s") == 1
    assert efficiency_direction("per_gpu_throughput_at_slo") == 1
    assert efficiency_direction("video_hours_per_hour") == 1
    assert efficiency_direction("ttft_ms.p99") == -1 and efficiency_direction("e2e_s") == -1
    assert efficiency_direction("joules_per_token") == -1 and efficiency_direction("n_requests") == 0
    r = efficiency_ratios({"x_per_s": 0.0, "y": "text", "z": True, "w": {"p50": 2.0}}, {"x_per_s": 3.0, "y": "t", "w": {"p50": 3.0}})
    assert r == {"x_per_s": {"a": 0.0, "b": 3.0, "ratio": None, "direction": 1},
                 "w.p50": {"a": 2.0, "b": 3.0, "ratio": 1.5, "direction": 0}}


def test_compare_json_matches_its_schema_and_pages_render_from_the_file_alone(tmp_path):
    a, b, doc, _ = _two_runs(tmp_path)
    out = tmp_path / "out"
    assert cli_main(["compare", str(a), str(b), "--out", str(out)]) == 0
    c = load_doc(out, "compare")  # validates against evalsuite/schema/compare.schema.json
    assert c["schema_version"] == COMPARE_SCHEMA_VERSION and c["kind"] == "compare"
    f = next(f for f in c["tasks"]["docqa"]["flips"] if f["a"]["score"] == 1.0)
    row = next(r for r in doc if r.id == f["id"])
    assert f["prompt"] == row.prompt and f["target"] == row.target and f["a"]["prediction"] == row.prediction
    # The runs are gone; the pages still render from compare.json.
    shutil.rmtree(a)
    shutil.rmtree(b)
    (out / "index.html").unlink()
    (out / "flips.html").unlink()
    render_compare(out)
    assert f"<code>{f['id']}</code>" in (out / "flips.html").read_text()
    assert "docqa" in (out / "index.html").read_text()
    broken = {**c, "level": "high"}
    (out / "compare.json").write_text(json.dumps(broken))
    with pytest.raises(RunFormatError, match=f"compare.json does not match schema {COMPARE_SCHEMA_VERSION} at level"):
        render_compare(out)
    assert cli_main(["compare", str(tmp_path / "nowhere"), str(tmp_path / "nowhere"), "--out", str(out)]) == 2


def _timed(rows, e2e: float, tokens: int, duration: float):
    return [SampleResult(**{**r.__dict__, "usage": {"e2e_s": e2e + 0.01 * i, "output_tokens": tokens},
                            "metadata": {**r.metadata, "duration_s": duration}}) for i, r in enumerate(rows)]


def test_efficiency_is_compared_on_paired_samples_with_directions(tmp_path, capsys):
    rows = binary_samples("videoqa", 200, n_clusters=20, accuracy=0.4, seed=5)
    a = write_run(tmp_path / "a", {"videoqa": _timed(rows[:50], 2.0, 10, 30.0)}, args={"videoqa": {}},
                  efficiency={"videoqa": {"video_hours": 50 * 30 / 3600, "video_hours_per_hour": 14.78}})
    b = write_run(tmp_path / "b", {"videoqa": _timed(rows, 1.0, 12, 30.0)}, name="fp8", precision="fp8",
                  args={"videoqa": {}}, efficiency={"videoqa": {"video_hours": 200 * 30 / 3600, "video_hours_per_hour": 39.99}})
    assert cli_main(["compare", str(a), str(b), "--out", str(tmp_path / "out"), "--n-boot", "200"]) == 0
    t = json.loads((tmp_path / "out" / "compare.json").read_text())["tasks"]["videoqa"]
    assert t["n"] == 50 and t["n_only_b"] == 150
    eff = t["efficiency"]
    assert set(eff) == {"mean_e2e_s", "output_tokens_per_s", "media_hours_per_hour"}  # no whole-run figure, no total
    e2e_a = sum(2.0 + 0.01 * i for i in range(50))
    e2e_b = sum(1.0 + 0.01 * i for i in range(50))  # B's first 50 samples only
    assert eff["mean_e2e_s"]["a"] == pytest.approx(e2e_a / 50) and eff["mean_e2e_s"]["b"] == pytest.approx(e2e_b / 50)
    assert eff["mean_e2e_s"]["direction"] == -1 and eff["mean_e2e_s"]["basis"] == "paired samples (n=50)"
    assert eff["output_tokens_per_s"]["b"] == pytest.approx(12 * 50 / e2e_b) and eff["output_tokens_per_s"]["direction"] == 1
    assert eff["media_hours_per_hour"]["a"] == pytest.approx(50 * 30 / e2e_a)
    assert "cover 50 vs 200 samples" in t["efficiency_notes"][0]
    out = capsys.readouterr().out
    assert "better" in out and "?" not in out.split("efficiency")[1].split("note:")[0]
    page = (tmp_path / "out" / "index.html").read_text()
    assert "paired samples (n=50)" in page and ">?<" not in page and "cover 50 vs 200 samples" in page


def test_paired_tokens_per_s_says_when_counts_are_chunk_estimates():
    """An openai: run against a server that sent no usage counts streamed chunks as output tokens
    (``token_count_source`` ``chunks``): the paired tokens/s basis says how many are estimates."""
    from evalsuite.compare import paired_efficiency

    rows = binary_samples("videoqa", 4, n_clusters=2, accuracy=0.5, seed=1)
    a, b = _timed(rows, 2.0, 10, 30.0), _timed(rows, 1.0, 10, 30.0)
    assert paired_efficiency(a, b)["output_tokens_per_s"]["basis"] == "paired samples (n=4)"
    for r in b[:3]:
        r.usage["token_count_source"] = "chunks"
    eff = paired_efficiency(a, b)
    assert eff["output_tokens_per_s"]["basis"] == ("paired samples (n=4); output tokens estimated from streamed "
                                                   "chunks for 0 in a, 3 in b")
    assert eff["mean_e2e_s"]["basis"] == "paired samples (n=4)"


def test_paired_latencies_say_when_samples_were_retried():
    """A backend that retried times the answering attempt (usage retry_s): every basis says how many
    samples on each side were retried (two 30 s retries compared as 'ratio 1.0' in silence)."""
    from evalsuite.compare import paired_efficiency

    rows = binary_samples("videoqa", 4, n_clusters=2, accuracy=0.5, seed=1)
    a, b = _timed(rows, 1.0, 10, 30.0), _timed(rows, 1.0, 10, 30.0)
    for r in b[:2]:
        r.usage["retry_s"] = 30.0
    eff = paired_efficiency(a, b)
    assert eff["mean_e2e_s"]["basis"] == "paired samples (n=4); timed from the answering attempt, retried: 0 in a, 2 in b"
    assert eff["output_tokens_per_s"]["basis"].endswith("retried: 0 in a, 2 in b")


def test_same_samples_keep_the_runs_own_rates_but_not_totals(tmp_path):
    rows = binary_samples("videoqa", 20, n_clusters=4, accuracy=0.4, seed=5)
    a = write_run(tmp_path / "a", {"videoqa": rows}, efficiency={"videoqa": {"video_hours": 0.1, "video_hours_per_hour": 2.0}})
    b = write_run(tmp_path / "b", {"videoqa": rows}, name="b", efficiency={"videoqa": {"video_hours": 0.1, "video_hours_per_hour": 3.0}})
    t = compare_runs(load_run(a), load_run(b), n_boot=200).tasks[0]
    assert t.efficiency == {"video_hours_per_hour": {"a": 2.0, "b": 3.0, "ratio": 1.5, "direction": 1,
                                                     "basis": "whole run (same samples)"}}
    assert t.efficiency_notes == ["not compared (no better direction, e.g. totals): video_hours"]


def test_the_paired_rates_note_appears_only_with_paired_rates(tmp_path):
    """No per-sample latency, so no paired rate: the note must not point at "rates above"."""
    rows = binary_samples("videoqa", 20, n_clusters=4, accuracy=0.4, seed=5)
    a = write_run(tmp_path / "a", {"videoqa": rows[:5]}, args={"videoqa": {}},
                  efficiency={"videoqa": {"video_hours_per_hour": 2.0}})
    b = write_run(tmp_path / "b", {"videoqa": rows}, name="b", args={"videoqa": {}},
                  efficiency={"videoqa": {"video_hours_per_hour": 3.0}})
    t = compare_runs(load_run(a), load_run(b), n_boot=200).tasks[0]
    assert t.efficiency == {}
    assert t.efficiency_notes == ["the runs' own efficiency figures (video_hours_per_hour) are left out: they cover "
                                  "5 vs 20 samples"]


def _scored(task: str, scores: list[float], clusters: list[str] | None = None) -> list[SampleResult]:
    return [SampleResult(id=f"{task}-{i}", task=task, target="A", prediction="A" if s else "B", score=s,
                         metadata={"cluster": (clusters or [f"c{i}" for i in range(len(scores))])[i]})
            for i, s in enumerate(scores)]


def test_compare_page_units_unpaired_dash_and_colour_by_the_holm_test(tmp_path):
    # audioqa: 5 of 5 wrong -> right, 5 clusters: the score interval excludes 0, but the exact test's
    #   p = 0.0625 (Holm 0.25 over four tasks): not a significant change, so not green.
    # videoqa: 1 cluster: no unpaired bootstrap. docqa: no sample in both runs (its own metric, in points).
    a = write_run(tmp_path / "a", {"audioqa": _scored("audioqa", [0.0] * 5),
                                   "videoqa": _scored("videoqa", [1.0, 1.0, 1.0, 0.0, 1.0], ["v"] * 5),
                                   "docqa": _scored("docqa", [1.0, 0.0, 0.0, 0.0, 0.0]),
                                   "gui": _scored("gui", [1.0, 0.0] * 10)})
    renamed = [SampleResult(**{**r.__dict__, "id": "other-" + r.id}) for r in _scored("docqa", [1.0, 0.0, 0.0, 0.0, 0.0])]
    b = write_run(tmp_path / "b", {"audioqa": _scored("audioqa", [1.0] * 5),
                                   "videoqa": _scored("videoqa", [0.0, 0.0, 1.0, 0.0, 0.0], ["v"] * 5),
                                   "docqa": renamed, "gui": _scored("gui", [0.0] * 20)},
                  name="b", precision=None)
    assert cli_main(["compare", str(a), str(b), "--out", str(tmp_path / "out"), "--n-boot", "200"]) == 0
    c = json.loads((tmp_path / "out" / "compare.json").read_text())
    au, vid = c["tasks"]["audioqa"], c["tasks"]["videoqa"]
    assert au["ci"][0] > 0 and au["p_holm"] > 0.05 and vid["ci_unpaired"] is None
    page = (tmp_path / "out" / "index.html").read_text()
    rows = {m.group(1): m.group(0) for m in re.finditer(r"<tr><td>(\w+)</td>.*?</tr>", page, re.S)}
    assert '<td class="num ">+100.0</td>' in rows["audioqa"]  # uncoloured: the test does not reject
    assert '<td class="num bad">-50.0</td>' in rows["gui"]  # 10 of 10 right -> wrong: it does
    assert "not estimable: 1 cluster" in rows["videoqa"] and "[-60.0, -60.0]" not in rows["videoqa"]
    assert '<td class="num">20.0</td><td class="num">20.0</td>' in rows["docqa"]  # was 0.2 beside 20.0
    assert "<td>None</td>" not in page  # B's precision


def test_samples_left_out_and_run_statuses_are_said(tmp_path, capsys):
    """B errored on 120 samples A got right: compare printed delta +0.0 over 280 of 400 with no word
    of the 120, nor that B's run had failed."""
    a_rows = binary_samples("docqa", 400, n_clusters=400, accuracy=0.7, seed=1)
    b_rows, k = [], 0
    for r in a_rows:
        x = SampleResult(**{**r.__dict__})
        if r.score == 1.0 and k < 120:
            x.score, x.prediction, x.error = None, None, "RuntimeError: CUDA error"
            k += 1
        b_rows.append(x)
    a_rows = a_rows[:390]  # and A lacks 10 that B holds (B scored 8 of them)
    a = write_run(tmp_path / "a", {"docqa": a_rows}, args={"docqa": {"n": 400}})
    b = write_run(tmp_path / "b", {"docqa": b_rows}, run_id="b", status="failed", args={"docqa": {"n": 400}},
                  status_reasons=["task docqa: 120/400 samples errored"])
    out = tmp_path / "out"
    assert cli_main(["compare", str(a), str(b), "--out", str(out), "--n-boot", "200"]) == 0
    text = capsys.readouterr().out
    n_b_only = sum(1 for r in b_rows[390:] if r.error is None)
    assert (f"note: docqa: {120 + n_b_only} sample(s) left out of the paired comparison: B errored on 120 that A "
            f"scored, A lacks {n_b_only} that B scored") in text
    assert f"note: run B ({b}) is failed: task docqa: 120/400 samples errored" in text and "run A" not in text
    doc = load_doc(out, "compare")
    assert doc["tasks"]["docqa"]["excluded"] == {"a": {"errored": 0, "missing": n_b_only},
                                                 "b": {"errored": 120, "missing": 0}, "errored_in_both": 0,
                                                 "unscored_in_both": 0}
    assert doc["b"]["status_reasons"] == ["task docqa: 120/400 samples errored"]
    html = (out / "index.html").read_text()
    assert '<td class="bad">failed: task docqa: 120/400 samples errored</td>' in html
    assert '<td class="ok">complete</td>' in html
    assert (f"docqa: left out of the paired comparison: B errored on 120 that A scored, A lacks {n_b_only} that B "
            f"scored") in html


def test_committed_margins_stay_valid_compare_json():
    from pathlib import Path

    for path in sorted((Path(__file__).parents[2] / "results" / "baselines" / "margins").glob("*.json")):
        load_doc(path, "compare")  # schema 1.0 files under the extended schema


def test_samples_asked_different_prompts_are_noted_by_compare_and_gate(tmp_path, capsys):
    """A changed prompt template (or other few-shot examples under another seed) was compared and
    gated with no word: the difference may be the point, but it must be said."""
    rows = binary_samples("docqa", 100, n_clusters=100, accuracy=0.7, seed=1)
    changed = [SampleResult(**{**r.__dict__, "prompt": ("Think step by step.\n" + r.prompt) if i < 30 else r.prompt})
               for i, r in enumerate(rows)]
    a = write_run(tmp_path / "a", {"docqa": rows})
    b = write_run(tmp_path / "b", {"docqa": changed}, run_id="b")
    note = ("30 of 100 sample(s) in both runs were asked different prompts (e.g. 'docqa-0000'): the difference "
            "includes the prompt change")
    assert cli_main(["compare", str(a), str(b), "--out", str(tmp_path / "out"), "--n-boot", "200"]) == 0
    assert f"note: docqa: {note}\n" in capsys.readouterr().out
    assert load_doc(tmp_path / "out", "compare")["tasks"]["docqa"]["notes"] == [note]
    assert f"docqa: {note}".replace("'", "&#39;") in (tmp_path / "out" / "index.html").read_text()
    assert cli_main(["gate", "--baseline", str(a), "--candidate", str(b), "--max-slowdown", "-1"]) == 0
    assert f"note: task 'docqa': {note}\n" in capsys.readouterr().out
    # another seed: said too (lm-eval draws its few-shot examples with it)
    doc = json.loads((b / "results.json").read_text())
    doc["environment"]["seed"] = 7
    (b / "results.json").write_text(json.dumps(doc))
    c = compare_runs(load_run(a), load_run(b), n_boot=200)
    assert c.tasks[0].notes == [note + "; the runs' seeds differ (0 vs 7), and tasks that draw prompts with it "
                                       "(lm-eval few-shot examples) ask other ones"]
    assert compare_runs(load_run(a), load_run(a), n_boot=200).tasks[0].notes == []


def test_samples_scored_in_neither_run_are_named_by_why(tmp_path):
    """Samples neither run scored were all called "errored in both", those without an error too, and a
    load test's requests (no sample scored at all) got a note of hundreds left out."""
    from evalsuite.compare import excluded_samples, excluded_text

    rows = binary_samples("docqa", 6, n_clusters=6, accuracy=0.5, seed=3)
    a = [SampleResult(**{**r.__dict__}) for r in rows]
    b = [SampleResult(**{**r.__dict__}) for r in rows]
    a[0].score = b[0].score = None  # a type the task cannot score: no error either side
    a[1].score, a[1].error = None, "RuntimeError: boom"  # errored in A, unscored in B
    b[1].score = None
    a[2].score, a[2].error = None, "x"
    b[2].score, b[2].error = None, "y"
    ex = excluded_samples(a, b)
    assert ex["errored_in_both"] == 2 and ex["unscored_in_both"] == 1
    assert excluded_text(ex) == ("3 sample(s) left out of the paired comparison: 2 scored in neither (errored), "
                                 "1 scored in neither (no score, no error)")
    requests = [SampleResult(**{**r.__dict__, "score": None}) for r in rows]  # a load test's samples
    assert excluded_text(excluded_samples(requests, requests)) is None
    dead = [SampleResult(**{**r.__dict__, "score": None, "error": "backend died"}) for r in rows]
    assert excluded_text(excluded_samples(dead, dead)) == ("6 sample(s) left out of the paired comparison: "
                                                           "6 scored in neither (errored)")


def test_a_lower_is_better_task_is_coloured_and_counted_the_right_way_round(tmp_path):
    """An lm-eval error rate that fell from 1 to 0 on 10 samples is B's gain: the page coloured it red,
    counted 10 right -> wrong and the flips page said so for each sample."""
    def err_run(folder, scores, name):
        run = write_run(folder, {"lmeval:err": _scored("lmeval:err", scores)}, name=name)
        res = json.loads((run / "results.json").read_text())
        res["tasks"]["lmeval:err"].update(primary_metric="err", metrics={"err": sum(scores) / len(scores)},
                                          lower_is_better=True)
        (run / "results.json").write_text(json.dumps(res))
        return run

    a, b = err_run(tmp_path / "a", [1.0] * 10, "a"), err_run(tmp_path / "b", [0.0] * 10, "b")
    assert cli_main(["compare", str(a), str(b), "--out", str(tmp_path / "out"), "--n-boot", "200"]) == 0
    t = load_doc(tmp_path / "out", "compare")["tasks"]["lmeval:err"]
    assert t["lower_is_better"] is True and t["n_worsened"] == 10 and t["p_holm"] < 0.05
    page = (tmp_path / "out" / "index.html").read_text()
    row = re.search(r"<tr><td>lmeval:err</td>.*?</tr>", page, re.S).group(0)
    assert '<td class="num ok">-100.0</td>' in row and "(lower is better)" in row
    assert '<td class="num">0</td><td class="num">10</td><td>mcnemar-exact</td>' in row  # right→wrong, wrong→right
    flips = (tmp_path / "out" / "flips.html").read_text()
    assert flips.count("wrong → right") == 10 and "right → wrong" not in flips
    assert "0 right→wrong, 10 wrong→right" in flips
