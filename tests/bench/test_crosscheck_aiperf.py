"""The aiperf cross-check (bench/crosscheck_aiperf.py): aiperf's export parsed from a real 0.13 file,
the server's counters, the ratios and tables; the suite-only run against a mock server (no aiperf)."""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path

import pytest

from evalsuite.model.tokenizer import SPECIAL_TOKENS, ByteTokenizer
from evalsuite.serving import metrics as sm
from evalsuite.serving.server import Metrics

from bench_scripts import load_bench_script

xc = load_bench_script("crosscheck_aiperf")
FIXTURE = Path(__file__).parent / "fixtures" / "aiperf_0.13_profile_export_aiperf.json"


def test_parse_aiperf_reads_a_real_export_in_seconds():
    parsed = xc.parse_aiperf(json.loads(FIXTURE.read_text()))
    assert parsed["version"] == "0.13.0"
    assert parsed["time_to_first_token"]["p50"] == pytest.approx(0.063419033)
    assert parsed["time_to_first_token"]["p99"] == pytest.approx(0.08250598391999999)
    assert parsed["inter_token_latency"]["p50"] == pytest.approx(0.011781052403225805)
    assert parsed["inter_chunk_latency"]["avg"] == pytest.approx(0.020066861222222222)
    assert parsed["request_latency"]["p50"] == pytest.approx(0.4206134125)
    assert parsed["output_token_throughput"] == pytest.approx(145.33675975493318)
    assert parsed["request_throughput"] == pytest.approx(4.541773742341662)
    assert parsed["benchmark_duration_s"] == pytest.approx(0.875866624)
    assert (parsed["total_output_tokens"], parsed["total_input_tokens"], parsed["completed"], parsed["errors"]) == \
        (128.0, 512.0, 4.0, 0)
    # aiperf divides by its profiling phase's window (start_time → end_time: 0.8807 s), not by
    # benchmark_duration (first request → last response: 0.8759 s)
    export = json.loads(FIXTURE.read_text())
    window = (datetime.fromisoformat(export["end_time"]) - datetime.fromisoformat(export["start_time"])).total_seconds()
    assert parsed["total_output_tokens"] / window == pytest.approx(parsed["output_token_throughput"])
    assert parsed["total_output_tokens"] / parsed["benchmark_duration_s"] > parsed["output_token_throughput"]


def test_parse_aiperf_counts_errors_and_refuses_an_unknown_time_unit():
    export = json.loads(FIXTURE.read_text())
    export["error_summary"] = [{"error_details": {"code": 429, "type": "HTTP", "message": "busy"}, "count": 3},
                               {"error_details": {"code": 500}, "count": 2}]
    assert xc.parse_aiperf(export)["errors"] == 5
    export["time_to_first_token"]["unit"] = "fortnights"
    with pytest.raises(ValueError, match="time_to_first_token.*fortnights"):
        xc.parse_aiperf(export)
    seconds = json.loads(FIXTURE.read_text())
    seconds["request_latency"] = {"unit": "s", "p50": 0.5, "avg": 0.5, "p99": 0.7}
    assert xc.parse_aiperf(seconds)["request_latency"]["p99"] == 0.7


def test_server_counters_are_parsed_from_its_own_metrics_page():
    before = Metrics()
    before.prompt_tokens, before.generation_tokens = 100, 64
    before.requests["ok"] = 2
    after = Metrics()
    after.prompt_tokens, after.generation_tokens = 1_000, 864
    after.requests.update(ok=27, server_error=1, cancelled=2)
    for v in (0.01, 0.03):
        after.tpot.observe(v)
    after.ttft.observe(0.25)
    b = xc.parse_prometheus(before.render({"slots_total": 8}))
    a = xc.parse_prometheus(after.render({"slots_total": 8}))
    assert b["evalsuite_generation_tokens_total"] == 64 and a['evalsuite_requests_total{status="ok"}'] == 27
    assert a["evalsuite_slots_total"] == 8 and a['evalsuite_time_to_first_token_seconds_bucket{le="+Inf"}'] == 1
    delta = xc.counter_delta(b, a)
    assert {k: delta[k] for k in ("generation_tokens", "prompt_tokens", "requests_ok", "requests_client_error",
                                  "requests_server_error", "requests_cancelled")} == {
        "generation_tokens": 800, "prompt_tokens": 900, "requests_ok": 25, "requests_client_error": 0,
        "requests_server_error": 1, "requests_cancelled": 2}
    assert xc.server_means(delta) == pytest.approx({"ttft_s": 0.25, "tpot_s": 0.02, "e2el_s": None})


def _timing(start: float, times: tuple[float, ...], tokens: int) -> sm.Timing:
    return sm.Timing(times, tokens, start_s=start, sent_s=start, done_s=start + times[-1], prompt_tokens=10)


def test_ratios_of_suite_point_to_aiperf_and_to_the_server():
    # two requests, 5 tokens each, 3 streamed chunks: TTFT 0.1/0.3, E2E 0.5/0.7, over 0.0 → 0.9 s
    point = sm.point_metrics([_timing(0.0, (0.1, 0.3, 0.5), 5), _timing(0.2, (0.3, 0.5, 0.7), 5)], concurrency=1)
    suite = xc.suite_figures(point)
    assert suite["ttft_p50"] == pytest.approx(0.2) and suite["tpot_p50"] == pytest.approx(0.1)
    assert suite["itl_mean"] == pytest.approx(0.2) and suite["e2el_p50"] == pytest.approx(0.6)
    assert suite["output_tokens"] == 10 and suite["output_tokens_per_s"] == pytest.approx(10 / 0.9)
    export = json.loads(FIXTURE.read_text())
    export.update(time_to_first_token={"unit": "ms", "p50": 100.0, "p99": 300.0},
                  inter_token_latency={"unit": "ms", "p50": 100.0}, inter_chunk_latency={"unit": "ms", "avg": 250.0},
                  request_latency={"unit": "ms", "p50": 600.0}, output_token_throughput={"avg": 10 / 0.9},
                  request_throughput={"avg": 1.0}, total_output_tokens={"avg": 10.0})
    aiperf = xc.aiperf_figures(xc.parse_aiperf(export))
    r = xc.point_ratios(suite, aiperf, {"generation_tokens": 10.0, "time_per_output_token_seconds_sum": 0.3,
                                        "time_per_output_token_seconds_count": 3.0},
                        {"generation_tokens": 8.0, "time_per_output_token_seconds_sum": 0.4,
                         "time_per_output_token_seconds_count": 2.0})
    assert r["server_tpot_mean"] == pytest.approx(0.5) and r["server_ttft_mean"] is None
    # each tool against the server's own mean TPOT in its interval: suite 0.1 / 0.1, aiperf 0.1 / 0.2
    assert suite["tpot_mean"] == pytest.approx(0.1) and aiperf["tpot_mean"] is None  # the export has no avg here
    assert r["suite_tpot_mean_over_server"] == pytest.approx(1.0) and r["aiperf_tpot_mean_over_server"] is None
    export["inter_token_latency"]["avg"] = 100.0
    r2 = xc.point_ratios(suite, xc.aiperf_figures(xc.parse_aiperf(export)), {}, {
        "time_per_output_token_seconds_sum": 0.4, "time_per_output_token_seconds_count": 2.0})
    assert r2["aiperf_tpot_mean_over_server"] == pytest.approx(0.5) and r2["suite_tpot_mean_over_server"] is None
    assert r["ttft_p50"] == pytest.approx(2.0) and r["tpot_p50"] == pytest.approx(1.0)
    assert r["ttft_p99"] == pytest.approx(point["ttft_s"]["p99"] / 0.3)
    assert r["itl_mean"] == pytest.approx(0.8) and r["e2el_p50"] == pytest.approx(1.0)
    assert r["output_tokens_per_s"] == pytest.approx(1.0) and r["requests_per_s"] == pytest.approx(2 / 0.9)
    assert r["suite_tokens_over_server"] == 1.0 and r["aiperf_tokens_over_server"] == 1.25
    alone = xc.point_ratios(suite, None, {"generation_tokens": 10.0}, None)
    assert alone["ttft_p50"] is None and alone["suite_tokens_over_server"] == 1.0
    assert alone["aiperf_tokens_over_server"] is None


def test_summarize_takes_medians_over_repeats():
    runs = [{"suite_figures": {"ttft_p50": v, "output_tokens_per_s": 10 * v}, "aiperf_figures": None,
             "ratios": {"ttft_p50": v / 2}, "suite": {"mean_in_flight": v, "hit_max_concurrency": v == 3}}
            for v in (1.0, 3.0, 2.0)]
    s = xc.summarize(runs)
    assert s["repeats"] == 3 and s["suite_figures"] == {"ttft_p50": 2.0, "output_tokens_per_s": 20.0}
    assert s["aiperf_figures"] is None and s["ratios"] == {"ttft_p50": 1.0}
    assert s["suite"] == {"mean_in_flight": 2.0, "hit_max_concurrency": True}
    assert xc.summarize(runs[:2])["ratios"] == {"ttft_p50": 1.0}  # even count: mean of the middle two


def test_prompts_file_and_commands():
    text = xc.aiperf_prompts([("abc de", 32), ("xyz", 8)], [0.0, 0.0123456])
    assert [json.loads(line) for line in text.splitlines()] == [
        {"text": "abc de", "output_length": 32, "timestamp": 0.0},
        {"text": "xyz", "output_length": 8, "timestamp": 12.346}]
    assert json.loads(xc.aiperf_prompts([("a", 1)]).strip()) == {"text": "a", "output_length": 1}
    with pytest.raises(ValueError, match="2 prompts but 1 send offsets"):
        xc.aiperf_prompts([("a", 1), ("b", 1)], [0.0])
    common = dict(url="http://127.0.0.1:9", model="fp4", prompts_file=Path("p.jsonl"), tokenizer=Path("tok"),
                  out=Path("o"), n=24)
    closed = xc.aiperf_command("aiperf", concurrency=4, **common)
    assert closed[closed.index("--concurrency") + 1] == "4" and closed[closed.index("--request-count") + 1] == "24"
    assert "--use-server-token-count" in closed and "ignore_eos:true" in closed and "--request-rate" not in closed
    replay = xc.aiperf_command("aiperf", schedule=True, **common)
    assert "--fixed-schedule" in replay and "--concurrency" not in replay and "--request-rate" not in replay
    own = xc.aiperf_command("aiperf", rate=200.0, **common)
    assert own[own.index("--request-rate") + 1] == "200" and own[own.index("--arrival-pattern") + 1] == "poisson"
    with pytest.raises(ValueError, match="exactly one"):
        xc.aiperf_command("aiperf", concurrency=1, rate=2.0, **common)


def test_byte_tokenizer_for_aiperf_gives_the_reference_models_ids():
    files = xc.byte_tokenizer_files()
    tok = json.loads(files["tokenizer.json"])
    vocab = tok["model"]["vocab"]
    assert sorted(vocab.values()) == list(range(256)) and len(set(vocab)) == 256
    assert [t["content"] for t in tok["added_tokens"]] == list(SPECIAL_TOKENS)
    assert [t["id"] for t in tok["added_tokens"]] == [ByteTokenizer().special_ids[s] for s in SPECIAL_TOKENS]
    tokenizers = pytest.importorskip("tokenizers")
    hf = tokenizers.Tokenizer.from_str(files["tokenizer.json"])
    for text in ("hello world", "héllo ünïcode ✓", "  two  spaces\n"):
        assert hf.encode(text).ids == list(text.encode("utf-8"))
        assert hf.decode(hf.encode(text).ids) == text


def test_markdown_rows():
    fig = {"ttft_p50": 0.1, "ttft_p99": 0.2, "tpot_p50": 0.01, "itl_mean": 0.02, "e2el_p50": 0.5,
           "output_tokens_per_s": 500.0, "requests_per_s": 15.0, "client_cpu_s": 2.5}
    ratios = {**{k: 1.0 for k in fig}, "ttft_p50": 0.95, "suite_tokens_over_server": 1.0,
              "aiperf_tokens_over_server": 1.0, "server_tpot_mean": 1.02,
              **{f"{tool}_{m}_mean_over_server": 1.0 for tool in ("suite", "aiperf") for m in ("ttft", "tpot", "e2el")}}
    points = [{"label": "c8", "kind": "closed", "n": 48, "max_concurrency": 8, "repeats": 3, "ratios": ratios,
               "suite_figures": fig, "aiperf_figures": fig, "suite": {"mean_in_flight": 7.9}},
              {"label": "200 req/s", "kind": "open", "n": 200, "max_concurrency": None, "repeats": 3,
               "ratios": {**ratios, "aiperf_tokens_over_server": None}, "suite_figures": {**fig, "output_tokens_per_s": 520.0},
               "aiperf_figures": None, "suite": {"mean_in_flight": 60.2, "hit_max_concurrency": False}}]
    result = {"aiperf_version": "0.13.0", "input_len": 128, "output_len": 32, "aiperf_arrivals": "suite",
              "environment": {"device": "CPU", "note": "loaded", "load_before": 3.0, "load_after": 4.0,
                              "date": "2026-12-04", "command": "python bench/crosscheck_aiperf.py", "server": "s"},
              "points": points, "open_over_saturation": xc.open_over_saturation(points, "200 req/s", "c8"),
              "notes": ["a note"]}
    text = xc.markdown(result)
    assert "| c8 | 48 | 0.95 | 1.00 | 1.00 | 1.00 | 1.00 | 1.00 | 1.00 | 1.000 | 1.000 | 1.02 | – |" in text
    assert "| 200 req/s | 200 | 0.95 |" in text and "| 1.000 | – | 1.02 | no (none declared) |" in text
    assert "| c8 | 100.0 / 100.0 | 200.0 / 200.0 | 10.0 / 10.0 | 20.0 / 20.0 | 500.0 / 500.0 | 500.0 / 500.0 " \
           "| 15.0 / 15.0 | 2.5 / 2.5 | 7.9 |" in text
    assert "| 200 req/s | 100.0 / – |" in text
    assert "| c8 | 1.00 | 1.00 | 1.00 | 1.00 | 1.00 | 1.00 |" in text
    assert "suite 1.04, aiperf – (target: within 10%" in text and "medians over 3 repeats" in text
    assert "- a note" in text and "loaded (load average 3.0 before, 4.0 after)" in text


@pytest.mark.slow
def test_without_aiperf_the_suite_side_runs_alone(tmp_path, capsys):
    """Against a mock server: one line says aiperf was not found, exit 0, the suite's tokens equal the
    server's count."""
    out = tmp_path / "bench"
    code = xc.main(["--aiperf", str(tmp_path / "no-aiperf"), "--model", "mock:ttft=0.005,itl=0.001,tokens=4",
                    "--concurrency", "2", "--closed-requests", "4", "--rates", "50", "--open-requests", "6",
                    "--warmup", "0", "--out", str(out)])
    assert code == 0
    err = capsys.readouterr().err
    assert [line for line in err.splitlines() if "aiperf not found" in line] == [
        f"aiperf not found ({tmp_path / 'no-aiperf'}); measuring the suite's side only"]
    data = json.loads((out / "crosscheck.json").read_text())
    assert [p["label"] for p in data["points"]] == ["c2", "50 req/s"]
    for p in data["points"]:
        run = p["runs"][0]
        assert run["order"] == ["suite"] and run["aiperf_figures"] is None
        assert run["suite"]["n_completed"] == p["n"] and run["server_suite"]["requests_ok"] == p["n"]
        assert run["ratios"]["suite_tokens_over_server"] == 1.0
    assert (out / "crosscheck.md").read_text().count("| c2 | 4 |") == 1


def test_cpu_lists_and_the_pinning_line():
    assert xc.cpu_set("") == set() and xc.cpu_set("0") == {0} and xc.cpu_set("0, 2-4") == {0, 2, 3, 4}
    with pytest.raises(SystemExit, match="CPU list expects"):
        xc.cpu_set("a-b")
    assert xc.pinning({"server_cpus": [0], "client_cpus": [1]}) == ", the server on CPUs [0], the clients on [1]"
    assert xc.pinning({}) == "" and xc.pinning({"server_cpus": [], "client_cpus": []}) == ""
