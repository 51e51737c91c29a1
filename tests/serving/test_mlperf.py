"""The MLPerf LoadGen cross-check: its log is read right, and on the same requests against the same
server its latencies agree with the suite's own measurement."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from evalsuite.serving import metrics as sm
from evalsuite.serving.mlperf import parse_detail_log, run_server_scenario, suite_timing, summarize_log
from evalsuite.types import Response


def test_the_suites_side_ends_a_response_where_the_load_generator_does() -> None:
    """Text chunks at 0.1, 0.2, 0.3 s, then tokens that stream no text until the response ends at
    0.9 s (its finish and usage chunks; LoadGen's completion comes after them): E2EL is 0.9 s and TPOT
    (0.9 − 0.1) / 4 over the 5 tokens, as the load generator counts them, not 0.3 s and 0.05 s; a
    retried request's failed attempts (0.5 s) and the issue-to-send offset are added to every time."""
    r = Response(text="abc", output_tokens=5, ttft_s=0.1, e2e_s=0.9, token_times=[0.1, 0.2, 0.3])
    t = suite_timing(r)
    assert (sm.ttft(t), sm.e2el(t), sm.tpot(t)) == (0.1, 0.9, pytest.approx(0.2, abs=1e-12))
    retried = Response(text="abc", output_tokens=5, e2e_s=0.9, token_times=[0.1, 0.2, 0.3], info={"retry_s": 0.5})
    t = suite_timing(retried, 0.25)
    assert sm.ttft(t) == pytest.approx(0.85, abs=1e-12) and sm.e2el(t) == pytest.approx(1.65, abs=1e-12)
    assert sm.itls(t) == pytest.approx([0.1, 0.1], abs=1e-12)
    no_end = Response(text="ab", output_tokens=2, token_times=[0.1, 0.4])
    assert sm.e2el(suite_timing(no_end)) == 0.4


needs_loadgen = pytest.mark.skipif(__import__("importlib").util.find_spec("mlperf_loadgen") is None,
                                   reason="mlcommons-loadgen is not installed")


def test_detail_log_is_parsed_into_seconds(tmp_path: Path) -> None:
    lines = ["garbage line", ':::MLLOG {"key": "result_validity", "value": "VALID"}',
             ':::MLLOG {"key": "result_first_token_mean_latency_ns", "value": 1500000}',
             ':::MLLOG {"key": "result_first_token_99.00_percentile_latency_ns", "value": 4000000}',
             ':::MLLOG {"key": "result_time_to_output_token_mean", "value": 250000}',
             ':::MLLOG {"key": "result_50.00_percentile_latency_ns", "value": 2000000000}',
             ':::MLLOG {"key": "result_validity", "value": "INVALID"}', ":::MLLOG {not json"]
    (tmp_path / "log.txt").write_text("\n".join(lines))
    s = summarize_log(parse_detail_log(tmp_path / "log.txt"))
    assert s["validity"] == "INVALID"  # the last value of a key wins
    assert s["ttft_s"] == {"mean": 0.0015, "median": None, "p90": None, "p99": 0.004}
    assert s["tpot_s"]["mean"] == 0.00025 and s["e2el_s"]["median"] == 2.0


@needs_loadgen
@pytest.mark.slow
def test_loadgen_latencies_agree_with_the_suite_on_the_same_requests(tmp_path: Path) -> None:
    from evalsuite.backends.mock import MockBackend
    from evalsuite.backends.openai_compat import OpenAIBackend
    from evalsuite.serving.server import ServerConfig, ServerThread
    from evalsuite.types import Request, user

    mock = MockBackend("ttft=0.04,itl=0.01,tokens=6")
    reqs = [Request(sample_id=f"s{i}", messages=[user("a b c")], max_tokens=6) for i in range(24)]
    with ServerThread(mock, ServerConfig(model_names=["m"])) as s:  # timed by the HTTP client, not scripted
        backend = OpenAIBackend(s.base_url)
        r = run_server_scenario(backend, reqs, target_qps=30, ttft_s=2.0, tpot_s=0.2, outdir=tmp_path / "lg")
    print(json.dumps({k: r[k] for k in ("agreement", "issue_to_send_s")}, indent=1))
    lg, suite = r["loadgen"], r["suite"]
    assert lg["query_count"] == suite["n"] == 24 and suite["n_errors"] == 0
    assert lg["version"].startswith(("5.", "6.", "7.")) and (tmp_path / "lg" / "mlperf_log_summary.txt").exists()
    # same requests, same origin: the tools differ only by their callbacks' timing
    for key, abs_tol in (("ttft_s", 0.01), ("e2el_s", 0.01), ("tpot_s", 0.001)):
        assert abs(r["agreement"][f"{key.removesuffix('_s')}_mean_diff_s"]) <= abs_tol + 0.1 * lg[key]["mean"], key
    assert suite["tpot_s"]["mean"] == pytest.approx(0.01, abs=0.005)
    assert lg["tpot_s"]["mean"] == pytest.approx(0.01, abs=0.005)
    assert r["issue_to_send_s"]["p99"] is not None and r["issue_to_send_s"]["p99"] >= 0


@needs_loadgen
def test_loadgen_tpot_is_null_over_a_query_it_cannot_define(tmp_path: Path) -> None:
    """LoadGen's TPOT over a query of fewer than 2 tokens (a failed one is reported as 1) is 0 or
    negative, and a negative one wraps its mean to ~1e9 s: its TPOT figures over such a run are null,
    with how many queries they would have included; a run of 3-token answers keeps them."""
    from evalsuite.backends.mock import MockBackend
    from evalsuite.types import Request, user

    reqs = [Request(sample_id=f"s{i}", messages=[user("a b c")], max_tokens=3) for i in range(6)]
    r = run_server_scenario(MockBackend("ttft=0.01,itl=0.005,tokens=3,fail=s1"), reqs, target_qps=50, ttft_s=2.0,
                            tpot_s=0.2, outdir=tmp_path / "failed")
    assert r["loadgen"]["n_tpot_undefined"] == r["suite"]["n_errors"] >= 1  # LoadGen may issue s1 more than once
    assert r["loadgen"]["tpot_s"] == {"mean": None, "median": None, "p90": None, "p99": None}
    assert r["agreement"]["tpot_mean_diff_s"] is None and r["suite"]["tpot_s"]["mean"] is not None
    r = run_server_scenario(MockBackend("ttft=0.01,itl=0.005,tokens=3"), reqs, target_qps=50, ttft_s=2.0, tpot_s=0.2,
                            outdir=tmp_path / "ok")
    assert r["loadgen"]["n_tpot_undefined"] == 0 and r["loadgen"]["tpot_s"]["mean"] > 0
    assert r["agreement"]["tpot_mean_diff_s"] is not None
