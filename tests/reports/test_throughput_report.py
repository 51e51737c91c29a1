"""The run page of a throughput run: the Pareto curve, latency distributions per load point, the
points table and the SLO search, escaped and rendered from the run folder's files alone."""

from __future__ import annotations

import json
import re

from evalsuite.results import atomic_write_json
from evalsuite.runner import RunConfig, run
from evalsuite.reports.run_report import render_run_report

ARGS = {"mix": "text", "video_requests": 0, "audio_requests": 0, "warmup": 0, "concurrency": [1, 2],
        "rate_fractions": [1.0], "max_tokens": 4, "mlperf_crosscheck": True}


def test_throughput_page(tmp_path) -> None:
    out = tmp_path / "run"
    run(RunConfig(model="mock:ttft=0.002,itl=0.001", tasks=["throughput"], out=out, limit=3, quiet=True,
                  task_args={"throughput": ARGS}))
    results_path = out / "results.json"
    doc = json.loads(results_path.read_text())
    tp = doc["tasks"]["throughput"]["throughput"]
    tp["notes"].append("<script>alert(1)</script>")  # anything from the files is escaped
    atomic_write_json(results_path, doc)
    html = render_run_report(out).read_text()
    assert "<script>alert" not in html and "note: &lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert 'alt="Pareto curve: output tokens/s per user against output tokens/s per GPU"' in html
    assert 'alt="TTFT, TPOT, ITL and E2E latency per load point"' in html
    for p in tp["closed_loop"] + tp["open_loop"]:
        assert f"<td>{p['label']}" in html
    front = set(tp["pareto"]["points"])
    assert html.count('title="on the Pareto front"') == len(front) >= 1
    assert "SLO search (concurrency)" in html and "Cross-check: MLPerf LoadGen" in html
    # no accuracy bar chart for a task that has no accuracy: two figures, the Pareto curve and the boxes
    assert len(re.findall(r'src="data:image/png;base64,', html)) == 2
    assert render_run_report(out).read_text() == html  # the files alone give the same page


def test_points_table_in_ms_with_cap_failures_and_an_unconverged_search(tmp_path) -> None:
    out = tmp_path / "run"
    run(RunConfig(model="mock:ttft=0.002,itl=0.001", tasks=["throughput"], out=out, limit=3, quiet=True,
                  task_args={"throughput": {**ARGS, "mlperf_crosscheck": False, "percentiles": "50,95"}}))
    results_path = out / "results.json"
    doc = json.loads(results_path.read_text())
    tp = doc["tasks"]["throughput"]["throughput"]
    html = render_run_report(out).read_text()
    assert "TTFT ms<br><span class=\"muted\">p50 / p95</span>" in html and "ITL (chunks) ms" in html
    assert "<td class=\"num\">2.00 / 2.00</td>" in html  # closed-loop TTFT: the mock's 2 ms at p50 and p95
    assert "chunks/s/user (1/ITL)" in html and "hit cap" not in html
    op = tp["open_loop"][0]
    op.update(max_concurrency=2, hit_max_concurrency=True, n_waited_on_max_concurrency=3, n_failed=1)
    tp["slo_search"].update(status="unconverged", converged=False, best=1.0, first_failing=2.0)
    del tp["closed_loop"][0]["chunks_per_s_per_user_by_itl"]  # a version-1 point names 1/ITL tokens/s/user
    tp["closed_loop"][0]["tokens_per_s_per_user_by_itl"] = 123.0
    atomic_write_json(results_path, doc)
    html = render_run_report(out).read_text()
    assert ", cap 2 <span class=\"bad\"" in html and "hit cap (3)</span>" in html
    assert "<span class=\"bad\">not converged</span>: highest passing load 1.000, bracket [1.000, 2.000)" in html
    assert "highest load meeting the SLO" not in html and "123.00" in html
