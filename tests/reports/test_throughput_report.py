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


# The reference model on two CPU cores saturates: c4, c8, the SLO search's point and the open-loop
# points at the peak rate land within a few pixels of each other.
CLUSTER = [
    {"label": "c1", "kind": "closed", "x": 30.0, "y": 30.0},
    {"label": "c2", "kind": "closed", "x": 24.0, "y": 48.0},
    {"label": "c4", "kind": "closed", "x": 13.1, "y": 52.4},
    {"label": "c8", "kind": "closed", "x": 6.6, "y": 52.6},
    {"label": "search-c5", "kind": "closed", "x": 10.5, "y": 52.5},
    {"label": "r3.3", "kind": "open", "x": 6.7, "y": 52.0},
    {"label": "r1.6", "kind": "open", "x": 13.0, "y": 51.9},
]


def _overlap(a, b) -> float:
    w, h = min(a.x1, b.x1) - max(a.x0, b.x0), min(a.y1, b.y1) - max(a.y0, b.y0)
    return w * h if w > 0 and h > 0 else 0.0


def test_pareto_labels_overlap_no_label_no_marker_and_stay_inside() -> None:
    from matplotlib.text import Text
    from matplotlib.transforms import Bbox

    from evalsuite.reports.plots import pareto_figure

    fig = pareto_figure(CLUSTER, ["c1", "c2", "c4", "search-c5"], x_key="x", y_key="y", xlabel="x", ylabel="y")
    ax = fig.axes[0]
    fig.canvas.draw()  # positions as they are drawn
    renderer = fig.canvas.get_renderer()
    labels = list(ax.texts)
    assert sorted(t.get_text() for t in labels) == sorted(p["label"] for p in CLUSTER)
    boxes = {t.get_text(): Text.get_window_extent(t, renderer) for t in labels}
    names = list(boxes)
    clashes = [(a, b) for i, a in enumerate(names) for b in names[i + 1:] if _overlap(boxes[a], boxes[b])]
    assert clashes == []
    half = 3.0 * fig.dpi / 72  # a default scatter marker is 6 points across
    for p in CLUSTER:
        x, y = ax.transData.transform((p["x"], p["y"]))
        marker = Bbox.from_extents(x - half, y - half, x + half, y + half)
        covering = [n for n in names if _overlap(boxes[n], marker)]
        assert covering == [], (p["label"], covering)
    frame = ax.get_window_extent(renderer)
    assert all(frame.x0 <= b.x0 and b.x1 <= frame.x1 and frame.y0 <= b.y0 and b.y1 <= frame.y1 for b in boxes.values())
    legend = ax.get_legend().get_window_extent(renderer)
    assert legend.x0 > frame.x1  # the legend sits outside the axes, over no point or label

    # the check can fail: the one fixed offset used before puts labels of this cluster on top of each other
    naive = [ax.annotate(p["label"], (p["x"], p["y"]), textcoords="offset points", xytext=(4, 4), fontsize=7)
             for p in CLUSTER]
    naive_boxes = [t.get_window_extent(renderer) for t in naive]
    assert any(_overlap(a, b) for i, a in enumerate(naive_boxes) for b in naive_boxes[i + 1:])


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


def test_a_load_never_reached_says_so_and_why(tmp_path) -> None:
    """A closed-loop point with fewer requests than its concurrency was not a red "misses" with no
    reason: the point's notes are shown under it and its SLO cell reads "not reached"."""
    out = tmp_path / "run"
    run(RunConfig(model="mock:ttft=0.002,itl=0.001", tasks=["throughput"], out=out, limit=3, quiet=True,
                  task_args={"throughput": {**ARGS, "mlperf_crosscheck": False}}))
    results_path = out / "results.json"
    doc = json.loads(results_path.read_text())
    point = doc["tasks"]["throughput"]["throughput"]["closed_loop"][-1]
    why = f"only 1 requests were sent at concurrency {point['concurrency']}: that load was never reached, so " \
          "the point does not count as meeting the SLO"
    point.update(reached_concurrency=False, meets_slo=False, notes=[why, "<b>x</b>"])
    atomic_write_json(results_path, doc)
    html = render_run_report(out).read_text()
    row = html[html.index(f"<tr><td>{point['label']}"):]
    row, notes = row.split("</tr>", 2)[:2]
    assert '<td class="muted not-reached"' in row and ">not reached</td>" in row and "misses" not in row
    assert '<tr class="point-notes">' in notes and f"{point['label']}: {why}" in notes
    assert "&lt;b&gt;x&lt;/b&gt;" in notes


def test_the_page_marks_survivor_latencies_and_the_unproven_figure_at_slo(tmp_path) -> None:
    """A point where requests were cut off shows its latencies as the survivors' ("37/55 failed or cut
    off"); the SLO search lists each probe's n and its unproven claim; the summary's figure at SLO
    carries the search's marks (bounded by --limit, p99 unproven on 3 requests)."""
    out = tmp_path / "run"
    run(RunConfig(model="mock:ttft=0.002,itl=0.001", tasks=["throughput"], out=out, limit=3, quiet=True,
                  task_args={"throughput": {**ARGS, "mlperf_crosscheck": False}}))
    results_path = out / "results.json"
    doc = json.loads(results_path.read_text())
    tp = doc["tasks"]["throughput"]["throughput"]
    tp["open_loop"][0].update(n_requests=55, n_failed=7, n_cancelled=30)
    atomic_write_json(results_path, doc)
    html = render_run_report(out).read_text()
    assert html.count('<span class="bad small survivors">37/55 failed or cut off: latencies of the rest</span>') == 4
    assert html.count('class="bad small survivors"') == 4  # only that point's four latency cells
    assert "p99 unproven: n=3, 0 over → p36.8 at 95% (needs ≥ 299 requests with none over)" in html
    assert re.search(r'<span class="bad small at-slo-mark">bounded: still meets the SLO at the top of the search '
                     r'range \(3\.0\)', html)
    assert re.search(r"<th>load</th><th>n</th>", html) and '<td class="num">3</td>' in html
    assert "over HTTP the first chunk that carries text" in html  # what TTFT times, said on the page


def test_a_point_that_misses_the_slo_carries_no_unproven_mark(tmp_path) -> None:
    """"unproven" says a pass rests on too few requests; under a point that misses (8 of 8 requests
    failed) the page read "misses / p99 unproven: n=8, 8 over → p0.0 … (needs ≥ 299 requests with none
    over)", as if more requests could prove that miss a pass."""
    out = tmp_path / "run"
    run(RunConfig(model="mock:ttft=0.002,itl=0.001", tasks=["throughput"], out=out, limit=3, quiet=True,
                  task_args={"throughput": {**ARGS, "mlperf_crosscheck": False}}))
    results_path = out / "results.json"
    doc = json.loads(results_path.read_text())
    points = doc["tasks"]["throughput"]["throughput"]["slo_search"]["points"]
    assert len(points) >= 2 and all(q["evidence"] for q in points)
    points[-1].update(meets_slo=False, evidence="p99 unproven: n=3, 3 over → p0.0 at 95% (needs ≥ 299 requests "
                                                "with none over)")
    atomic_write_json(results_path, doc)
    html = render_run_report(out).read_text()
    cells = re.findall(r'<td class="(ok|bad)">(meets|misses)(.*?)</td></tr>', html[html.index("<h3>SLO search"):])
    assert [c[1] for c in cells] == ["meets"] * (len(points) - 1) + ["misses"]
    assert all("unproven" in extra for _, verdict, extra in cells if verdict == "meets")
    assert cells[-1][2] == ""
