"""``evalsuite leaderboard``: the table, the plots' inputs, per-run pages, escaping, offline pages."""

from __future__ import annotations

import re

import pytest
from runfolders import binary_samples, flipped, write_run

from evalsuite.cli import main as cli_main
from evalsuite.paired import tango_ci
from evalsuite.reports.leaderboard import (LeaderboardError, build_leaderboard, common_tasks, efficiency_figures,
                                           load_entries, pareto_front, pareto_plots, plot_points, precision_deltas,
                                           run_figures)


@pytest.fixture
def runs(tmp_path):
    doc = binary_samples("docqa", 100, n_clusters=10, accuracy=0.7, seed=1)
    vid = binary_samples("videoqa", 40, n_clusters=8, accuracy=0.6, seed=2)
    right = [r.id for r in doc if r.score == 1.0]
    root = tmp_path / "runs"
    write_run(root / "bf16", {"docqa": doc, "videoqa": vid}, name="bf16", precision="bf16", weight_bytes=2_000_000,
              efficiency={"docqa": {"single_stream_tokens_per_s": 50.0, "per_gpu_throughput_at_slo": 400.0}})
    write_run(root / "fp4", {"docqa": flipped(doc, set(right[:6])), "videoqa": vid}, name="fp4", precision="nvfp4",
              weight_bytes=600_000, efficiency={"docqa": {"single_stream_tokens_per_s": 90.0,
                                                               "per_gpu_throughput_at_slo": 900.0},
                                                "videoqa": {"video_hours_per_hour": 12.5}})
    write_run(root / "evil", {"docqa": doc}, name="<script>alert('x')</script>", backend="openai", precision=None)
    return root


def test_site_layout_table_and_escaping(runs, tmp_path, capsys):
    out = tmp_path / "site"
    assert cli_main(["leaderboard", str(runs), "--out", str(out)]) == 0  # a folder of run folders
    assert "leaderboard:" in capsys.readouterr().out
    index = (out / "index.html").read_text()
    pages = sorted(p.name for p in (out / "runs").iterdir())
    assert pages == ["00-bf16.html", "01-script-alert-x-script.html", "02-fp4.html"]
    for name in pages:
        assert f'href="runs/{name}"' in index
    # Values with their CI, headline figures, "–" where absent, weight bytes.
    assert re.search(r'data-sort="0\.69">0\.690<br><span class="muted small">\[0\.[56][0-9]{2}, 0\.[78][0-9]{2}\]', index)
    assert 'data-sort="0.63">0.630<br>' in index  # fp4: 6 of 69 right answers flipped
    assert 'data-sort="90.0">90.00' in index and 'data-sort="12.5">12.50' in index
    assert 'data-sort="600000.0">600,000' in index and index.count('data-sort="">–') >= 4
    # Escaped, never executed; nothing fetched from the network.
    assert "<script>alert" not in index and "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;" in index
    assert index.count("<script>") == 1  # the sorting script only
    for page in [index, *((out / "runs" / n).read_text() for n in pages)]:
        assert not re.search(r'(src|href)="(https?:)?//', page)
    assert index.count("data:image/png;base64,") == 2  # Pareto and precision-delta plots


def test_run_page_contents_and_names_the_run_report(runs, tmp_path):
    (runs / "fp4" / "report.html").write_text("<html></html>")
    out = tmp_path / "site"
    build_leaderboard([runs / "bf16", runs / "fp4"], out)
    page = (out / "runs" / "01-fp4.html").read_text()
    # the run's own report is outside the site: named as text, not a link that breaks once published
    assert 'href="../index.html"' in page and "report.html\"" not in page
    assert f"full run report with samples (not part of this site): <code>{runs / 'fp4' / 'report.html'}</code>" in page
    assert "video_hours_per_hour" in page and "nvfp4" in page and "test-cpu" in page
    assert "full run report" not in (out / "runs" / "00-bf16.html").read_text()


def test_precision_deltas_are_paired(runs):
    entries = load_entries([runs / "bf16", runs / "fp4", runs / "evil"])
    deltas = precision_deltas(entries, n_boot=300)
    assert [(d["run"], d["task"]) for d in deltas] == [("fp4", "docqa"), ("fp4", "videoqa")]
    doc, vid = deltas
    assert doc["delta"] == pytest.approx(-6 / 100) and doc["n"] == 100 and doc["ci"][1] < 0
    # Nothing changed on videoqa: the interval is the honest Tango one, not the bootstrap's [0, 0].
    n_vid = vid["n"]
    assert vid["delta"] == 0.0 and vid["ci"] == pytest.approx(tango_ci(0, 0, n_vid)) and vid["ci"][0] < -0.01


def test_pareto_front_by_hand():
    pts = [(1.0, 0.9), (2.0, 0.8), (1.5, 0.7), (3.0, 0.5), (3.0, 0.4), (0.5, 0.9)]
    # (1.5, .7) is beaten by (2, .8); (3, .4) by (3, .5); (0.5, .9) by (1, .9).
    assert pareto_front(pts) == [0, 1, 3]


def test_samples_per_s_is_the_runs_total_whatever_the_task_order():
    """Each task's samples_per_s is its samples over its wall time; the run's is all samples over all
    wall time (it was the first task's, so --tasks docqa,gui and --tasks gui,docqa plotted apart)."""
    docqa = {"n_samples": 100, "wall_time_s": 10.0, "efficiency": {"samples_per_s": 10.0}}
    gui = {"n_samples": 10, "wall_time_s": 10.0, "efficiency": {"samples_per_s": 1.0}}
    one = run_figures({"tasks": {"docqa": docqa, "gui": gui}})
    other = run_figures({"tasks": {"gui": gui, "docqa": docqa}})
    assert one == other and one[0] == {"samples_per_s": 5.5}
    assert one[1] == {"samples_per_s": "110 samples over 20.0 s of 2 tasks"}
    # another figure several tasks report comes from a named task, the same in any order
    a = {"efficiency": {"video_hours_per_hour": 3.0}}
    b = {"efficiency": {"video_hours_per_hour": 5.0}}
    assert run_figures({"tasks": {"videoqa": b, "longvideo": a}}) == run_figures({"tasks": {"longvideo": a, "videoqa": b}})
    assert run_figures({"tasks": {"videoqa": b, "longvideo": a}})[1] == {
        "video_hours_per_hour": "from longvideo (also reported by videoqa)"}


def test_efficiency_figures_prefer_throughput_task():
    res = {"tasks": {"docqa": {"efficiency": {"samples_per_s": 3.0, "single_stream_tokens_per_s": 1.0}},
                     "throughput": {"efficiency": {"single_stream_tokens_per_s": 70.0, "ttft_ms": {"p50": 3}}}}}
    assert efficiency_figures(res) == {"single_stream_tokens_per_s": 70.0, "samples_per_s": 3.0}



def test_a_version_1_throughput_run_reads_its_output_rate_as_single_stream():
    """v1 wrote 1 / mean TPOT as single_stream_tokens_per_s; the output tok/s at c=1 is the figure now."""
    res = {"tasks": {"throughput": {"version": "1", "efficiency": {"single_stream_tokens_per_s": 90.0,
                                                                    "single_stream_output_tokens_per_s": 60.0}}}}
    assert efficiency_figures(res) == {"single_stream_tokens_per_s": 60.0}


def test_without_throughput_or_bf16_the_plots_say_why(tmp_path):
    rows = binary_samples("docqa", 20, n_clusters=4, accuracy=0.5)
    a = write_run(tmp_path / "a", {"docqa": rows}, name="m1", precision="fp8")
    index = build_leaderboard([a], tmp_path / "site").read_text()
    assert "no run reports a throughput figure" in index and "No precision deltas" in index
    assert "data:image/png" not in index


def test_bad_inputs(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    assert cli_main(["leaderboard", str(tmp_path / "empty"), "--out", str(tmp_path / "o")]) == 2
    assert "no results.json there or in its subfolders" in capsys.readouterr().err
    with pytest.raises(LeaderboardError):
        build_leaderboard([tmp_path / "missing"], tmp_path / "o")


def test_duplicate_model_names_get_run_ids(tmp_path):
    rows = binary_samples("docqa", 10, n_clusters=2, accuracy=0.5)
    a = write_run(tmp_path / "a", {"docqa": rows}, name="fp8", run_id="r1")
    b = write_run(tmp_path / "b", {"docqa": rows}, name="fp8", run_id="r2")
    assert [e.label for e in load_entries([a, b])] == ["fp8 (r1)", "fp8 (r2)"]


def test_run_status_and_errors_are_shown(tmp_path):
    rows = binary_samples("docqa", 20, n_clusters=4, accuracy=0.5)
    broken = [r.__class__(**{**r.__dict__, "score": None, "error": "backend timeout"}) for r in rows]
    ok = write_run(tmp_path / "ok", {"docqa": rows}, name="good")
    bad = write_run(tmp_path / "bad", {"docqa": broken}, name="broken", status="failed",
                    status_reasons=["task docqa: 20/20 samples errored (100.0% > --max-error-rate 5.0%)"])
    out = tmp_path / "site"
    index = build_leaderboard([ok, bad], out).read_text()
    assert '<td data-sort="complete" class="status ok">complete</td>' in index
    assert '<td data-sort="failed" class="status bad">failed<br><span class="small">task docqa: 20/20 samples errored' in index
    assert '<span class="bad small">20/20 errored</span>' in index
    page = (out / "runs" / "01-broken.html").read_text()
    assert '<b class="bad">failed</b>' in page and "20/20 samples errored" in page


def _with_throughput_task(e, tokens_per_s: float) -> None:
    """Give a loaded run the throughput task's entry: its primary metric is tokens/s, not an accuracy."""
    e.results["tasks"]["throughput"] = {"primary_metric": "output_tokens_per_s_at_slo",
                                        "metrics": {"output_tokens_per_s_at_slo": tokens_per_s}, "ci95": {},
                                        "throughput": {"closed_loop": []}, "efficiency": {}}


def _four_task_runs(tmp_path, accs: dict[str, dict[str, float]], tps: dict[str, float], status=None):
    runs = []
    for name, per_task in accs.items():
        samples = {t: [r.__class__(**{**r.__dict__, "score": float(i < round(20 * a))})
                       for i, r in enumerate(binary_samples(t, 20, n_clusters=4, accuracy=0.5))]
                   for t, a in per_task.items()}
        runs.append(write_run(tmp_path / name, samples, name=name, status=(status or {}).get(name, "complete"),
                              efficiency={t: {"single_stream_tokens_per_s": tps[name]} for t in per_task}))
    return load_entries(runs)


def test_accuracy_axis_is_the_mean_accuracy_never_tokens_per_s(tmp_path):
    # The bf16 point: 0.38, 0.26, 1.0 and 0.32 on four tasks, 489.5 tokens/s on throughput.
    accs = {"bf16": {"docqa": 0.4, "videoqa": 0.25, "audioqa": 1.0, "gui": 0.3},
            "fp4": {"docqa": 0.35, "videoqa": 0.25, "audioqa": 0.95, "gui": 0.3}}
    entries = _four_task_runs(tmp_path, accs, {"bf16": 489.5, "fp4": 700.0})
    for e in entries:
        _with_throughput_task(e, e.figures["single_stream_tokens_per_s"])
    assert common_tasks(entries) == ["docqa", "videoqa", "audioqa", "gui"]  # not "throughput"
    pts = plot_points(entries, common_tasks(entries), "single_stream_tokens_per_s")
    assert [(e.label, x) for e, x, _ in pts] == [("bf16", 489.5), ("fp4", 700.0)]
    assert [y for _, _, y in pts] == pytest.approx([(0.4 + 0.25 + 1.0 + 0.3) / 4, (0.35 + 0.25 + 0.95 + 0.3) / 4])
    figs, note = pareto_plots(entries)
    assert len(figs) == 1 and note == ""
    assert ("y: mean primary metric of the accuracy tasks every plotted run has with the same settings and samples "
            "(docqa, videoqa, audioqa, gui)") in figs[0][1]


def test_a_run_with_another_task_set_plots_on_the_shared_tasks_or_per_task(tmp_path):
    accs = {"a": {"docqa": 0.5, "videoqa": 0.25}, "b": {"docqa": 0.75}}
    entries = _four_task_runs(tmp_path / "x", accs, {"a": 10.0, "b": 20.0})
    figs, _ = pareto_plots(entries)
    assert len(figs) == 1 and "(docqa)" in figs[0][1] and "left out of y: videoqa" in figs[0][1]
    assert [y for _, _, y in plot_points(entries, ["docqa"], "single_stream_tokens_per_s")] == [0.5, 0.75]
    apart = _four_task_runs(tmp_path / "y", {"a": {"docqa": 0.5}, "b": {"gui": 0.75}}, {"a": 10.0, "b": 20.0})
    figs, _ = pareto_plots(apart)
    assert [c.split(":")[0] for _, c in figs] == ["docqa", "gui"] and "share no accuracy task" in figs[0][1]
    index = build_leaderboard([e.path for e in apart], tmp_path / "site").read_text()
    assert index.count("data:image/png;base64,") == 2


def test_failed_runs_stay_out_of_the_plots(tmp_path):
    accs = {"good": {"docqa": 0.5}, "fast": {"docqa": 0.6}, "broken": {"docqa": 0.0}}
    entries = _four_task_runs(tmp_path, accs, {"good": 10.0, "fast": 20.0, "broken": 99.0},
                              status={"broken": "failed"})
    figs, note = pareto_plots(entries)
    assert len(figs) == 1 and note == "not plotted: broken (failed)"
    index = build_leaderboard([e.path for e in entries], tmp_path / "site").read_text()
    assert '<p class="muted" id="pareto-note">not plotted: broken (failed)</p>' in index


def test_dollar_signs_in_model_names_are_text_in_the_plots(tmp_path):
    # matplotlib would parse "$...$" as mathtext: an unbalanced or unknown command raised ValueError
    # and lost the whole leaderboard
    doc = binary_samples("docqa", 60, n_clusters=6, accuracy=0.7, seed=1)
    root = tmp_path / "runs"
    for i, name in enumerate(["$5 model", r"a_$\frac{$b", "plain"]):
        write_run(root / f"r{i}", {"docqa": doc}, name=name, precision="bf16" if i == 2 else "nvfp4",
                  efficiency={"docqa": {"single_stream_tokens_per_s": 50.0 + i}})
    assert cli_main(["leaderboard", str(root), "--out", str(tmp_path / "site")]) == 0
    index = (tmp_path / "site" / "index.html").read_text()
    assert "$5 model" in index and index.count("data:image/png;base64,") >= 1


def test_a_task_run_with_other_settings_is_flagged_in_its_cell(tmp_path):
    doc = binary_samples("docqa", 60, n_clusters=6, accuracy=0.7, seed=1)
    root = tmp_path / "runs"
    write_run(root / "a", {"docqa": doc}, name="a", args={"docqa": {"n": 60, "split": "test"}})
    write_run(root / "b", {"docqa": doc[:30]}, name="b<i>", args={"docqa": {"n": 30, "split": "test"}})
    write_run(root / "c", {"docqa": doc}, name="c", args={"docqa": {"n": 60, "split": "test"}})
    assert cli_main(["leaderboard", str(root), "--out", str(tmp_path / "site")]) == 0
    index = (tmp_path / "site" / "index.html").read_text()
    flags = re.findall(r'<span class="bad small other-settings">([^<]*)</span>', index)
    assert flags == ["other settings than a: args.n: 60 != 30"]  # b only; a and c agree
    assert "b&lt;i&gt;" in index
    # and the accuracy axis of the Pareto plot leaves that task out rather than average across settings
    from evalsuite.reports.leaderboard import load_entries

    entries = load_entries([root])
    assert common_tasks(entries) == []
    assert common_tasks([e for e in entries if e.label != "b<i>"]) == ["docqa"]


def test_a_task_run_over_other_samples_is_flagged_with_its_n(tmp_path):
    """--limit cuts the samples, not the settings: 5 questions against 60 are flagged like other settings."""
    doc = binary_samples("docqa", 60, n_clusters=6, accuracy=0.7, seed=1)
    root = tmp_path / "runs"
    write_run(root / "a", {"docqa": doc}, name="a", args={"docqa": {"split": "test"}})
    write_run(root / "b", {"docqa": doc[:5]}, name="b", args={"docqa": {"split": "test"}})
    write_run(root / "c", {"docqa": doc}, name="c", args={"docqa": {"split": "test"}})
    index = build_leaderboard([root], tmp_path / "site").read_text()
    flags = re.findall(r'<span class="bad small other-samples">([^<]*)</span>', index)
    assert flags == ["other samples than a: n=5 vs 60, 5 in both"]
    assert "n=60" in index and "n=5" in index
    entries = load_entries([root])
    assert common_tasks(entries) == []  # and it stays out of the plot's accuracy axis
    assert common_tasks([e for e in entries if e.label != "b"]) == ["docqa"]


def test_runs_of_one_server_are_named_by_the_model_it_served(tmp_path):
    import json

    rows = binary_samples("docqa", 10, n_clusters=2, accuracy=0.5)
    runs = []
    for i, served in enumerate(["llama-8b", "qwen-7b"]):
        run = write_run(tmp_path / f"r{i}", {"docqa": rows}, name="openai:http://h:8000/v1", backend="openai",
                        run_id=f"r{i}")
        res = json.loads((run / "results.json").read_text())
        res["model"]["served_model"] = served
        (run / "results.json").write_text(json.dumps(res))
        runs.append(run)
    assert [e.label for e in load_entries(runs)] == ["openai:http://h:8000/v1 [llama-8b]",
                                                     "openai:http://h:8000/v1 [qwen-7b]"]


def test_every_efficiency_cell_of_a_run_with_other_settings_is_flagged_and_bounded_is_marked(tmp_path):
    """Two throughput runs with different SLOs and output lengths: the single-stream cell (and every
    headline figure from that task) is flagged like the task's own column, not only the throughput
    column; a search that stopped at the top of its range (--limit) is marked on the figure at SLO."""
    from evalsuite.reports.leaderboard import HEADLINE, table_rows
    from evalsuite.runner import RunConfig, run

    base = {"mix": "text", "video_requests": 0, "audio_requests": 0, "warmup": 1, "concurrency": [1, 2],
            "rate_fractions": [], "max_tokens": 8, "point_warmup": False}
    for name, extra in (("strict", {"slo_tpot_s": 0.2, "slo_ttft_s": 2.0}),
                        ("loose", {"slo_tpot_s": 5.0, "slo_ttft_s": 60.0, "max_tokens": 16})):
        o = run(RunConfig(model="mock:ttft=0.01,itl=0.002,slots=1", tasks=["throughput"], out=tmp_path / name,
                          limit=4, quiet=True, task_args={"throughput": {**base, **extra}}))
        assert o.exit_code == 0
    entries = load_entries([tmp_path / "strict", tmp_path / "loose"])
    rows = table_rows(entries, ["throughput"])
    keys = ["throughput"] + [k for k, _ in HEADLINE] + ["weight_bytes"]
    cells = {(r["e"].path.name, k): c for r in rows for k, c in zip(keys, r["cells"])}
    assert cells[("loose", "throughput")]["settings"].startswith("other settings than ")
    assert cells[("loose", "single_stream_tokens_per_s")]["settings"] == cells[("loose", "throughput")]["settings"]
    assert cells[("strict", "single_stream_tokens_per_s")]["settings"] == ""
    assert cells[("loose", "per_gpu_throughput_at_slo")]["text"] == "–"  # no GPU: nothing to flag or mark
    for run_name in ("strict", "loose"):
        assert cells[(run_name, "throughput")]["mark"].startswith("bounded: still meets the SLO at the top")
        assert "p99 unproven: n=4" in cells[(run_name, "throughput")]["mark"]
        assert cells[(run_name, "single_stream_tokens_per_s")]["mark"] == ""  # not a figure at SLO
    index = (build_leaderboard([tmp_path / "strict", tmp_path / "loose"], tmp_path / "site")).read_text()
    assert index.count('class="bad small at-slo-mark"') == 2
    assert index.count('class="bad small other-settings"') >= 2  # the task's column and its single-stream cell


def test_a_load_tests_requests_are_not_other_samples(tmp_path):
    """The throughput task's samples are the requests its SLO search sent, other ids in every run: two
    runs of it with the same settings are not flagged as over other samples (neither its column nor
    the headline figures it gives), while an accuracy task cut by --limit still is."""
    from evalsuite.reports.leaderboard import HEADLINE, table_rows

    doc = binary_samples("docqa", 20, n_clusters=4, accuracy=0.5, seed=1)
    tp = binary_samples("throughput", 30, n_clusters=30, accuracy=0.5, seed=2)
    args = {"docqa": {"split": "test"}, "throughput": {"concurrency": [1, 4]}}
    a = write_run(tmp_path / "a", {"docqa": doc, "throughput": tp[:20]}, name="a", args=args)
    b = write_run(tmp_path / "b", {"docqa": doc[:10], "throughput": tp[10:]}, name="b", args=args)
    entries = load_entries([a, b])
    for e, tps in zip(entries, (500.0, 800.0)):
        entry = e.results["tasks"]["throughput"]
        entry.update(primary_metric="output_tokens_per_s_at_slo", metrics={"output_tokens_per_s_at_slo": tps},
                     ci95={}, throughput={"closed_loop": []}, efficiency={"single_stream_tokens_per_s": tps / 10})
        e.figures, e.sources = run_figures(e.results)
    rows = table_rows(entries, ["docqa", "throughput"])
    keys = ["docqa", "throughput"] + [k for k, _ in HEADLINE] + ["weight_bytes"]
    cells = {(r["e"].label, k): c for r in rows for k, c in zip(keys, r["cells"])}
    assert cells[("b", "throughput")]["samples"] == "" and cells[("b", "throughput")]["text"] == "800.000"
    assert cells[("b", "single_stream_tokens_per_s")]["samples"] == ""
    assert cells[("b", "docqa")]["samples"] == "other samples than a: n=10 vs 20, 10 in both"


def test_lower_is_better_metrics_stay_out_of_the_accuracy_axis_and_say_so(tmp_path):
    """An lm-eval error rate (lower_is_better) and a perplexity (lm-eval's higher_is_better: false only)
    averaged into the plot's "mean accuracy" made the run with more errors the better one; they are
    left out of y and named, their columns say lower is better, and their precision deltas too."""
    import json

    doc = binary_samples("docqa", 40, n_clusters=8, accuracy=0.6, seed=1)
    err = binary_samples("lmeval:err", 40, n_clusters=40, accuracy=0.3, seed=2)
    runs = []
    for name, prec, errs, ppl, tps in (("bf16", "bf16", err, 20.0, 10.0),
                                       ("fp4", "fp4", flipped(err, {r.id for r in err[:10]}), 90.0, 20.0)):
        run = write_run(tmp_path / name, {"docqa": doc, "lmeval:err": errs, "lmeval:ppl": []}, name=name,
                        precision=prec, efficiency={"docqa": {"single_stream_tokens_per_s": tps}})
        res = json.loads((run / "results.json").read_text())
        entry = res["tasks"]["lmeval:err"]
        entry.update(primary_metric="err", metrics={"err": entry["metrics"]["accuracy"]}, ci95={"err": None},
                     lower_is_better=True)
        res["tasks"]["lmeval:ppl"].update(primary_metric="word_perplexity", metrics={"word_perplexity": ppl},
                                          ci95={"word_perplexity": None},
                                          lm_eval={"higher_is_better": {"ppl": {"word_perplexity": False}}})
        (run / "results.json").write_text(json.dumps(res))
        runs.append(run)
    entries = load_entries(runs)
    assert common_tasks(entries) == ["docqa"]
    (_, caption), = pareto_plots(entries)[0]
    assert "same settings and samples (docqa); lower-is-better metrics, left out of y: lmeval:err, lmeval:ppl" in caption
    assert [y for _, _, y in plot_points(entries, common_tasks(entries), "single_stream_tokens_per_s")] == \
        pytest.approx([sum(r.score for r in doc) / 40] * 2)
    deltas = {d["task"]: d for d in precision_deltas(entries, n_boot=200)}
    assert deltas["lmeval:err"]["lower_is_better"] is True and deltas["docqa"]["lower_is_better"] is False
    index = build_leaderboard(runs, tmp_path / "site").read_text()
    assert index.count('<span class="muted small lower-is-better">lower is better</span>') == 2  # err, ppl headers
    assert index.count("(lower is better: a positive delta is a loss)") == 1


def test_speeds_measured_on_other_hardware_or_batch_size_are_flagged(tmp_path):
    """A GPU run's and a --batch-size 1 run's speeds sat in one column with CPU runs at batch 8, and on one
    plot, with nothing to say that they compare no speed (the gate refuses to compare them)."""
    import json

    from evalsuite.reports.leaderboard import HEADLINE, table_rows

    doc = binary_samples("docqa", 20, n_clusters=4, accuracy=0.5, seed=1)
    runs = []
    for name, device, batch in (("a", "cpu", 8), ("b", "cpu", 8), ("gpu", "cuda:0", 8), ("b1", "cpu", 1)):
        run = write_run(tmp_path / name, {"docqa": doc}, name=name, device=device, args={"docqa": {"split": "test"}},
                        efficiency={"docqa": {"single_stream_tokens_per_s": 10.0 + len(runs)}})
        res = json.loads((run / "results.json").read_text())
        res["environment"]["batch_size"] = batch
        (run / "results.json").write_text(json.dumps(res))
        runs.append(run)
    entries = load_entries(runs)
    rows = table_rows(entries, ["docqa"])
    keys = ["docqa"] + [k for k, _ in HEADLINE] + ["weight_bytes"]
    cells = {(r["e"].label, k): c for r in rows for k, c in zip(keys, r["cells"])}
    speed = {label: cells[(label, "single_stream_tokens_per_s")]["speed"] for label in ("a", "b", "gpu", "b1")}
    assert speed == {"a": "", "b": "",
                     "gpu": "measured on other hardware or run settings than a: device cpu vs cuda:0",
                     "b1": "measured on other hardware or run settings than a: batch_size 8 vs 1"}
    assert all(cells[(label, "docqa")]["speed"] == "" for label in speed)  # an accuracy is no speed
    assert cells[("a", "per_gpu_throughput_at_slo")]["speed"] == ""  # no figure, no flag
    _, note = pareto_plots(entries)
    assert note == ("x of gpu measured on other hardware or run settings than a: device cpu vs cuda:0; "
                    "x of b1 measured on other hardware or run settings than a: batch_size 8 vs 1")
    index = build_leaderboard(runs, tmp_path / "site").read_text()
    assert index.count('class="bad small other-hardware"') == 2


def test_a_run_named_twice_is_one_row(tmp_path):
    """``leaderboard results/runs results/runs/b``: b was two identical rows with one label, and counted
    twice when a column's reference (its most common settings and samples) was chosen."""
    from evalsuite.reports.leaderboard import expand_runs

    rows = binary_samples("docqa", 10, n_clusters=2, accuracy=0.5)
    root = tmp_path / "runs"
    a = write_run(root / "a", {"docqa": rows}, name="a")
    b = write_run(root / "b", {"docqa": rows}, name="b")
    assert expand_runs([root, b, root / "b" / "results.json", tmp_path / "runs" / ".." / "runs" / "a"]) == [a, b]
    assert [e.label for e in load_entries([root, b])] == ["a", "b"]


def test_a_per_task_plot_leaves_out_runs_over_other_samples(tmp_path):
    """Runs sharing no task with the same samples get one plot per task; a --limit 5 run's mean sat on
    the same axis as the 20-sample runs', under a caption saying the runs share no task at all."""
    doc = binary_samples("docqa", 20, n_clusters=4, accuracy=0.5, seed=1)
    args = {"docqa": {"split": "test"}}
    runs = [write_run(tmp_path / name, {"docqa": rows}, name=name, args=args,
                      efficiency={"docqa": {"single_stream_tokens_per_s": tps}})
            for name, rows, tps in (("a", doc, 10.0), ("b", doc, 20.0), ("c", doc[:5], 30.0))]
    figs, _ = pareto_plots(load_entries(runs))
    (_, caption), = figs
    assert "single_stream_tokens_per_s, y its primary metric (2 run(s) with its most common settings and samples;" in caption
    assert caption.endswith("; left out, run with other settings or samples: c")


def test_a_baselines_folder_is_its_runs(tmp_path):
    """``leaderboard results/baselines``: the <name>.json layout the gate reads (its samples in
    <name>/samples) was "no results.json there or in its subfolders"; <name>.json wins over a
    <name>/results.json, and a compare.json beside them is not a run."""
    import json
    import shutil
    from pathlib import Path

    from evalsuite.reports.leaderboard import expand_runs

    root = tmp_path / "baselines"
    shutil.copytree(Path(__file__).resolve().parents[2] / "results" / "baselines", root)
    shutil.copytree(root / "fp8", root / "fp8-dir")
    shutil.copy(root / "fp8.json", root / "fp8-dir" / "results.json")
    (root / "fp8-dir" / "results.json").write_text((root / "fp8.json").read_text().replace("fp8/samples/", "samples/"))
    shutil.copy(root / "fp8.json", root / "bf16" / "results.json")  # beside bf16.json, which wins
    (root / "compare.json").write_text(json.dumps({"kind": "compare", "tasks": {}}))
    runs = expand_runs([root])
    assert [p.name for p in runs] == ["bf16.json", "fp4.json", "fp8-dir", "fp8.json"]
    assert [e.results["model"]["name"] for e in load_entries([root])] == ["reference:bf16", "reference:fp4", "reference:fp8", "reference:fp8"]
