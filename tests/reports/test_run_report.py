import json
import re

import pytest

from evalsuite.runner import RunConfig, run
from evalsuite.reports.run_report import render_run_report


def test_report_is_self_contained_escaped_and_shows_errors_and_media(toy, tmp_path):
    preds = tmp_path / "p.jsonl"
    preds.write_text("\n".join(json.dumps({"id": f"toy-{i:03d}", "prediction": "<script>alert(1)</script>red"})
                               for i in range(6)))
    out = tmp_path / "run"
    run(RunConfig(model=f"replay:{preds}", tasks=["toy"], out=out, quiet=True, max_error_rate=1.0,
                  task_args={"toy": {"n": "6", "corrupt": "2"}}))
    html = (out / "report.html").read_text()
    assert "<script>alert" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;red" in html
    assert "toy-002" in html and "image file is corrupt" in html  # errored samples listed
    assert html.count("data:image/png;base64,") >= 1 + 5  # the chart and five thumbnails
    assert "http://" not in html and "https://" not in html  # nothing fetched from the network
    # Re-rendering from the files alone gives the same page (no live objects involved).
    again = render_run_report(out)
    assert again.read_text() == html


def test_sample_headers_separate_id_score_and_metadata(toy, tmp_path):
    preds = tmp_path / "p.jsonl"
    preds.write_text("\n".join(json.dumps({"id": f"toy-{i:03d}", "prediction": "red"}) for i in range(4)))
    out = tmp_path / "run"
    run(RunConfig(model=f"replay:{preds}", tasks=["toy"], out=out, quiet=True, max_error_rate=1.0,
                  task_args={"toy": {"n": "4", "corrupt": "2"}}))
    html = (out / "report.html").read_text()
    heads = [re.sub(r"<[^>]+>", "", h) for h in re.findall(r'<div class="sample-head">(.*?)</div>', html)]
    assert heads == ["toy-000 · score 1.00 · category=even", "toy-001 · score 0.00 · category=odd",
                     "toy-002 · error · category=even", "toy-003 · score 0.00 · category=odd"]


def test_report_shows_a_failed_status_with_its_reason(toy, tmp_path):
    out = tmp_path / "run"
    outcome = run(RunConfig(model="mock:fail=toy-00", tasks=["toy"], out=out, quiet=True))
    assert outcome.exit_code == 1
    html = (out / "report.html").read_text()
    assert '<b id="run-status" class="bad">failed</b>' in html and "This run failed" in html
    assert "10/20 samples errored" in html and "max-error-rate" in html


def test_a_run_stopped_by_ctrl_c_or_a_crash_renders_its_page(toy, tmp_path, monkeypatch):
    """The page of an earlier, finished invocation stayed after a resumed run was stopped: it said
    "complete" beside a results.json that said "interrupted" (or "failed")."""
    import evalsuite.runner as runner_mod

    out = tmp_path / "run"
    run(RunConfig(model="mock", tasks=["toy"], out=out, quiet=True, limit=4, batch_size=4))
    assert '<b id="run-status" class="ok">complete</b>' in (out / "report.html").read_text()
    ctrl_c_on_second_batch(monkeypatch)
    with pytest.raises(KeyboardInterrupt):
        run(RunConfig(model="mock", tasks=["toy"], out=out, quiet=True, limit=12, batch_size=4))
    html = (out / "report.html").read_text()
    assert '<b id="run-status" class="bad">interrupted</b>' in html and "This run was interrupted" in html
    assert "interrupted (Ctrl-C): run the same command again to resume" in html

    def boom(*a, **kw):
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(runner_mod, "process_batch", boom)
    with pytest.raises(RuntimeError):
        run(RunConfig(model="mock", tasks=["toy"], out=out, quiet=True, limit=12, batch_size=4))
    html = (out / "report.html").read_text()
    assert '<b id="run-status" class="bad">failed</b>' in html and "disk on fire" in html


def test_a_missing_samples_file_is_named_not_hidden(toy, tmp_path):
    out = tmp_path / "run"
    run(RunConfig(model="mock", tasks=["toy"], out=out, quiet=True, limit=3))
    (out / "samples" / "toy.jsonl").unlink()
    html = render_run_report(out).read_text()
    assert f'<p class="err missing-samples">{out}/samples/toy.jsonl is missing: the 3 sample results behind ' \
           f'these figures cannot be shown</p>' in html
    assert "Samples (first 0)" not in html


def test_a_specialists_reading_is_shown_with_its_sample(toy, tmp_path):
    import json as _json

    out = tmp_path / "run"
    run(RunConfig(model="mock", tasks=["toy"], out=out, quiet=True, limit=2))
    log = out / "samples" / "toy.jsonl"
    rows = [_json.loads(line) for line in log.read_text().splitlines()]
    rows[0]["usage"]["ocr_text"] = "TOTAL <b>42</b>"
    log.write_text("".join(_json.dumps(r) + "\n" for r in rows))
    html = render_run_report(out).read_text()
    assert '<div class="specialist"><b>ocr_text</b>' in html and "<pre>TOTAL &lt;b&gt;42&lt;/b&gt;</pre>" in html
    assert html.count('<div class="specialist">') == 1


def test_retried_samples_are_counted_beside_the_mean_end_to_end(toy, tmp_path):
    """A backend that retried times the answering attempt (openai: usage retry_s): results.json counts
    the retried samples and the report says how the mean end-to-end is to be read."""
    import json as _json

    out = tmp_path / "run"
    run(RunConfig(model="mock", tasks=["toy"], out=out, quiet=True, limit=3))
    log = out / "samples" / "toy.jsonl"
    rows = [_json.loads(line) for line in log.read_text().splitlines()]
    for r, wait in zip(rows, (1.5, 0.5)):  # as openai records it: on the retried samples only
        r["usage"]["retry_s"] = wait
    log.write_text("".join(_json.dumps(r) + "\n" for r in rows))
    done = run(RunConfig(model="mock", tasks=["toy"], out=out, quiet=True, limit=3))  # all done: summarized again
    usage = done.results["tasks"]["toy"]["usage"]
    assert usage["n_retried"] == 2 and usage["mean_retry_s"] == 1.0
    html = render_run_report(out).read_text()
    assert "timed from the attempt that answered: 2 samples were retried" in html


# ---- pages from hand-written run folders ----------------------------------------------------------
from runfolders import binary_samples, ctrl_c_on_second_batch, write_run  # noqa: E402

from evalsuite.tasks import audioqa, videoqa  # noqa: E402
from evalsuite.types import SampleResult  # noqa: E402


def _choices_block(html: str, sample_id: str) -> str:
    part = html[html.index(f"<code>{sample_id}</code>"):]
    return re.search(r"<b>choices</b><pre>(.*?)</pre>", part, re.S).group(1)  # type: ignore[union-attr]


def test_choices_carry_letters_only_where_the_prompt_did(tmp_path):
    """audioqa lists "- text" and scores the text: a page that printed "A. fast / B. slow" made a
    prediction "B" scored 0 look like a scoring bug."""
    many = [f"option {i}" for i in range(10)]
    rows = [
        SampleResult(id="aud", task="mix", target="slow", prediction="B", score=0.0,
                     prompt=audioqa.prompt("Which is it?", ["fast", "slow"]), choices=["fast", "slow"]),
        SampleResult(id="vid", task="mix", target="B", prediction="B", score=1.0,
                     prompt=videoqa.prompt("Which first?", ["red", "blue"]), choices=["red", "blue"]),
        SampleResult(id="ten", task="mix", target="J", prediction="J", score=1.0,
                     prompt="Q\n" + "\n".join(f"{chr(65 + i)}. {c}" for i, c in enumerate(many)), choices=many),
        SampleResult(id="vmme", task="mix", target="A", prediction="A", score=1.0,  # Video-MME: letters in the text
                     prompt="Q\nA. red\nB. blue\nThe best answer is:", choices=["A. red", "B. blue"]),
    ]
    run_dir = write_run(tmp_path / "run", {"mix": rows})
    html = render_run_report(run_dir).read_text()
    assert _choices_block(html, "aud") == "- fast\n- slow\n"
    assert _choices_block(html, "vid") == "A. red\nB. blue\n"
    assert _choices_block(html, "ten").splitlines()[8:] == ["I. option 8", "J. option 9"]  # was ". option 8"
    assert _choices_block(html, "vmme") == "- A. red\n- B. blue\n"
    from evalsuite.reports.run_report import choice_lines

    assert choice_lines("anything", None) == []


def test_an_interrupted_run_lists_the_task_it_was_in(tmp_path):
    rows = binary_samples("docqa", 120, n_clusters=12, accuracy=0.5)
    rows[0].score, rows[0].error = None, "MediaError: corrupt"
    run_dir = write_run(tmp_path / "run", {}, status="interrupted", status_reasons=["interrupted (SIGTERM)"])
    (run_dir / "samples" / "docqa.jsonl").write_text("".join(json.dumps(r.to_dict()) + "\n" for r in rows) + '{"id": "torn')
    html = render_run_report(run_dir).read_text()
    row = re.search(r'<tr class="in-progress">(.*?)</tr>', html, re.S).group(1)  # type: ignore[union-attr]
    assert row.startswith("<td>docqa</td>") and "119 scored so far, 1 errored, run not finished" in row
    assert "This run was interrupted" in html


def test_a_task_without_a_value_is_named_under_the_chart(tmp_path):
    good = binary_samples("gui", 10, n_clusters=2, accuracy=0.5)
    dead = binary_samples("docqa", 20, n_clusters=2, accuracy=0.5)
    for r in dead:
        r.score, r.error = None, "backend timeout"
    html = render_run_report(write_run(tmp_path / "run", {"gui": good, "docqa": dead})).read_text()
    assert '<p class="muted no-value">not in the chart: no value for docqa (20/20 errored)</p>' in html
    html = render_run_report(write_run(tmp_path / "dead", {"docqa": dead})).read_text()
    assert "no chart: no value for docqa (20/20 errored)" in html


def test_control_characters_are_shown_and_none_is_a_dash(tmp_path):
    rows = binary_samples("docqa", 2, n_clusters=1, accuracy=0.5)
    rows[0].prediction = "nul\x00 esc\x1b[31m red\x7f"
    rows[1].target = None
    html = render_run_report(write_run(tmp_path / "run", {"docqa": rows})).read_text()
    assert "\x00" not in html and "\x1b" not in html and "\x7f" not in html
    assert "nul\u2400 esc\u241b[31m red\u2421" in html
    assert "<b>target</b><pre>–</pre>" in html and "<b>target</b><pre>None</pre>" not in html
    assert '<meta name="viewport" content="width=device-width, initial-scale=1">' in html


def test_a_finished_task_run_again_and_stopped_says_its_figures_are_of_fewer_samples(tmp_path):
    """A task finished on 4 samples, run again on more and interrupted, keeps its 4-sample entry in
    results.json while its samples file holds 10: the page said n=4 and nothing else."""
    rows = binary_samples("docqa", 10, n_clusters=2, accuracy=0.5)
    rows[7].score, rows[7].error = None, "backend timeout"
    run_dir = write_run(tmp_path / "run", {"docqa": rows[:4]}, status="interrupted",
                        status_reasons=["interrupted (SIGTERM)"])
    (run_dir / "samples" / "docqa.jsonl").write_text("".join(json.dumps(r.to_dict()) + "\n" for r in rows))
    html = render_run_report(run_dir).read_text()
    row = re.search(r'<tr class="in-progress">(.*?)</tr>', html, re.S).group(1)  # type: ignore[union-attr]
    assert row.startswith("<td>docqa</td>") and "9 scored so far, 1 errored, run not finished: the figures " \
        "of docqa above are of the 4 samples it finished before" in row
    html = render_run_report(write_run(tmp_path / "done", {"docqa": rows})).read_text()
    assert 'class="in-progress"' not in html


def test_a_breakdown_group_shows_its_figure_under_its_own_name(tmp_path):
    """An lm-eval group without an aggregate has primary metric "suba/exact_match", and its subtask
    "subb" holds its figure as "exact_match": the by-subtask table showed "–" for subb."""
    rows = binary_samples("lmeval:grpn", 6, n_clusters=2, accuracy=0.5)
    run_dir = write_run(tmp_path / "run", {"lmeval:grpn": rows})
    doc = json.loads((run_dir / "results.json").read_text())
    t = doc["tasks"]["lmeval:grpn"]
    t["primary_metric"] = "suba/exact_match"
    t["metrics"] = {"suba/exact_match": 0.5, "subb/exact_match": 0.25}
    t["ci95"] = {"suba/exact_match": None}
    t["breakdown"] = {"subtask": {"suba": {"suba/exact_match": 0.5, "n": 2, "n_errors": 0},
                                  "subb": {"exact_match": 0.25, "n": 4, "n_errors": 0},
                                  "subc": {"exact_match": 0.75, "acc": 0.5, "n": 4, "n_errors": 0}}}
    (run_dir / "results.json").write_text(json.dumps(doc))
    html = render_run_report(run_dir).read_text()
    table = html[html.index("<h3>by subtask</h3>"):]
    table = table[:table.index("</table>")]
    assert '<td>suba</td><td class="num">2</td><td class="num">0</td><td class="num">0.5000</td>' in table
    assert '<td>subb</td><td class="num">4</td><td class="num">0</td><td class="num">0.2500 ' \
           '<span class="muted small">(exact_match)</span></td>' in table
    assert '<td>subc</td><td class="num">4</td><td class="num">0</td><td class="num">–</td>' in table  # which one?


def test_a_damaged_samples_file_costs_its_task_not_the_page(tmp_path):
    """One line that is not JSON in one task's samples file made 'evalsuite report' exit with that
    error and write no page at all; the other tasks and the figures in results.json are still good."""
    good = binary_samples("gui", 4, n_clusters=2, accuracy=0.5)
    bad = binary_samples("docqa", 4, n_clusters=2, accuracy=0.5)
    run_dir = write_run(tmp_path / "run", {"gui": good, "docqa": bad})
    log = run_dir / "samples" / "docqa.jsonl"
    lines = log.read_text().splitlines()
    log.write_text("\n".join([lines[0], "garbage", *lines[2:]]) + "\n")
    html = render_run_report(run_dir).read_text()
    assert f'<p class="err missing-samples">{log}:2: not a JSON line (expected one sample result per line): the 4 ' \
           f'sample results behind these figures cannot be shown</p>' in html
    assert "<code>gui-0003</code>" in html and "<code>docqa-0000</code>" not in html
    assert '<a href="#task-docqa">docqa</a>' in html


def test_a_cut_list_of_errored_samples_says_so(tmp_path):
    """The page lists at most max_errors errored samples; under "Errored samples (5)" three rows read
    as if the other two had not errored."""
    rows = binary_samples("docqa", 8, n_clusters=2, accuracy=0.5)
    for r in rows[:5]:
        r.score, r.error = None, "backend timeout"
    run_dir = write_run(tmp_path / "run", {"docqa": rows})
    html = render_run_report(run_dir, max_errors=3).read_text()
    assert '<h3 class="err">Errored samples (5): the first 3 listed, every one in samples/docqa.jsonl</h3>' in html
    assert html.count('<td class="err">backend timeout</td>') == 3
    html = render_run_report(run_dir).read_text()
    assert '<h3 class="err">Errored samples (5)</h3>' in html


def test_where_an_official_task_read_its_data_is_on_the_page(tmp_path):
    """data_dir / media_dir left the task's args for results.json's data_location; the page showed
    args only, so it no longer said which benchmark folder a run read."""
    rows = binary_samples("ocrbench", 2, n_clusters=1, accuracy=0.5)
    run_dir = write_run(tmp_path / "run", {"ocrbench": rows})
    doc = json.loads((run_dir / "results.json").read_text())
    doc["tasks"]["ocrbench"]["data_location"] = {"data_dir": "/data/<OCRBench>"}
    (run_dir / "results.json").write_text(json.dumps(doc))
    html = render_run_report(run_dir).read_text()
    assert '<tr class="data-location"><th>data_dir</th><td><code>/data/&lt;OCRBench&gt;</code>' in html


def test_a_negative_figure_is_drawn_below_zero_not_cut_off():
    """lm-eval's Matthews correlation (cola) can be negative: the bar chart's axis started at 0, so the
    bar and the lower end of its whisker were outside the figure."""
    import matplotlib.pyplot as plt

    from evalsuite.reports.plots import bar_figure

    fig = bar_figure(["lmeval:cola", "docqa"], [-0.2, 0.4], [(-0.3, -0.1), (0.3, 0.5)], chance=[None, None])
    bottom, top = fig.axes[0].get_ylim()
    plt.close(fig)
    assert bottom == pytest.approx(-0.3 * 1.05) and top == pytest.approx(1.05)
    fig = bar_figure(["docqa"], [0.4], [(0.3, 0.5)])
    limits = fig.axes[0].get_ylim()
    plt.close(fig)
    assert limits == pytest.approx((0.0, 1.05))


def test_torchrun_shards_of_a_stopped_task_are_one_row_of_that_task(tmp_path):
    """Under torchrun each rank appends to samples/<task>.rank<r>-of-<N>.jsonl until the task finishes;
    a run stopped inside it listed each shard as a task of its own ("docqa.rank0-of-2"), and beside a
    finished entry of that task said nothing of the results the shards add."""
    rows = binary_samples("docqa", 10, n_clusters=2, accuracy=0.5)
    rows[3].score, rows[3].error = None, "backend timeout"
    run_dir = write_run(tmp_path / "run", {}, status="interrupted", status_reasons=["interrupted (SIGTERM)"])
    for r in range(2):
        (run_dir / "samples" / f"docqa.rank{r}-of-2.jsonl").write_text(
            "".join(json.dumps(x.to_dict()) + "\n" for x in rows[r::2]))
    html = render_run_report(run_dir).read_text()
    found = re.findall(r'<tr class="in-progress">(.*?)</tr>', html, re.S)
    assert len(found) == 1 and found[0].startswith("<td>docqa</td>")
    assert "9 scored so far, 1 errored, run not finished" in found[0]
    assert "(samples/docqa.rank0-of-2.jsonl, samples/docqa.rank1-of-2.jsonl;" in found[0]
    # the task finished on its first 4 samples before, then ran again on 10 under torchrun and stopped
    run_dir = write_run(tmp_path / "again", {"docqa": rows[:4]}, status="interrupted",
                        status_reasons=["interrupted (SIGTERM)"])
    for r in range(2):
        (run_dir / "samples" / f"docqa.rank{r}-of-2.jsonl").write_text(
            "".join(json.dumps(x.to_dict()) + "\n" for x in rows[4:][r::2]))
    html = render_run_report(run_dir).read_text()
    found = re.findall(r'<tr class="in-progress">(.*?)</tr>', html, re.S)
    assert len(found) == 1 and found[0].startswith("<td>docqa</td>")
    assert "9 scored so far, 1 errored, run not finished: the figures of docqa above are of the 4 samples it " \
           "finished before" in found[0]


def test_a_figure_below_the_shown_digits_keeps_two_of_its_own():
    """ScreenSpot-Pro's chance level (~3e-4) read "0.000" beside a score of 0.001; zero stays zero."""
    from evalsuite.reports.run_report import fmt_num

    assert fmt_num(3.2e-4, 3) == "0.00032"
    assert fmt_num(0.0, 3) == "0.000"
    assert fmt_num(-4e-6) == "-4e-06"
    assert fmt_num(0.25, 3) == "0.250"
    assert fmt_num(0.0004, 3) == "0.0004"
