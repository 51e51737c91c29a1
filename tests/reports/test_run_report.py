import json
import re

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
    assert '<b id="run-status" class="bad">failed</b>' in html and "This run is failed" in html
    assert "10/20 samples errored" in html and "max-error-rate" in html


def test_a_missing_samples_file_is_named_not_hidden(toy, tmp_path):
    out = tmp_path / "run"
    run(RunConfig(model="mock", tasks=["toy"], out=out, quiet=True, limit=3))
    (out / "samples" / "toy.jsonl").unlink()
    html = render_run_report(out).read_text()
    assert f'<p class="err missing-samples">{out}/samples/toy.jsonl is missing: the 3 sample results behind ' \
           f'these figures cannot be shown</p>' in html


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
