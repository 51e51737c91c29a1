"""Serving metrics on scripted token timings: every figure checked against a hand computation."""

from __future__ import annotations

import pytest

from evalsuite.serving.metrics import (SLO, Timing, distribution, e2el, itls, meets, pareto_front, parse_percentiles,
                                       percentile, point_metrics, slo_search, tpot, ttft)

EXACT = dict(rel=1e-12, abs=1e-12)

# A: 4 tokens, one chunk each.  B: a single token.  C: 5 tokens in 2 chunks (an HTTP server that
# sends several tokens per chunk: TPOT counts tokens, ITL counts chunks).  D: errored.
# Times since each request's intended start (start_s); sent/done on the point's clock.
A = Timing((0.5, 0.6, 0.8, 1.1), output_tokens=4, start_s=0.0, sent_s=0.0, done_s=1.1, prompt_tokens=10)
B = Timing((1.0,), output_tokens=1, start_s=0.2, sent_s=0.2, done_s=1.2, prompt_tokens=0)
C = Timing((0.2, 0.4), output_tokens=5, start_s=0.5, sent_s=0.55, done_s=0.9, queue_s=0.05, prompt_tokens=20)
D = Timing((), output_tokens=0, start_s=0.1, sent_s=0.1, done_s=0.15, status="failed")


def test_per_request_definitions() -> None:
    assert ttft(A) == 0.5 and e2el(A) == 1.1
    assert itls(A) == pytest.approx([0.1, 0.2, 0.3], **EXACT)
    assert tpot(A) == pytest.approx(0.6 / 3, **EXACT)  # (E2EL - TTFT) / (tokens - 1)
    assert tpot(B) is None and itls(B) == []  # one token: no TPOT, no gap
    assert tpot(C) == pytest.approx(0.2 / 4, **EXACT)
    assert ttft(D) is None and e2el(D) is None and tpot(D) is None


def test_percentiles_interpolate_linearly() -> None:
    assert percentile([4.0, 1.0, 3.0, 2.0], 50) == 2.5
    assert percentile([1.0, 2.0, 3.0, 4.0], 90) == pytest.approx(3.7, **EXACT)
    assert percentile([7.0], 99) == 7.0
    assert distribution([None, None]) == {k: None for k in ("mean", "std", "min", "max", "median", "p50", "p90",
                                                            "p95", "p99")}
    d = distribution([1.0, 2.0, 3.0, 4.0], percentiles=(95, 99.9))
    assert list(d) == ["mean", "std", "min", "max", "median", "p90", "p95", "p99", "p99.9"]
    assert (d["mean"], d["min"], d["max"], d["median"]) == (2.5, 1.0, 4.0, 2.5)
    assert d["std"] == pytest.approx(1.25 ** 0.5, **EXACT)  # population std, as numpy.std
    assert d["p95"] == pytest.approx(3.85, **EXACT) and d["p99.9"] == pytest.approx(3.997, **EXACT)
    assert parse_percentiles("99, 50,95") == (50.0, 95.0, 99.0)
    with pytest.raises(ValueError, match=r"percentiles must lie in \(0, 100\]"):
        parse_percentiles("0,50")
    with pytest.raises(ValueError, match="expected percentiles like 50,90,95,99"):
        parse_percentiles("p99")
    with pytest.raises(ValueError):
        percentile([], 50)


def test_point_figures() -> None:
    slo = SLO(ttft_s=0.6, tpot_s=0.1)
    p = point_metrics([A, B, C, D], concurrency=2, gpus=2, slo=slo)
    print(p)
    assert (p["n_requests"], p["n_completed"], p["n_failed"], p["output_tokens"]) == (4, 3, 1, 10)
    assert (p["input_tokens"], p["input_tokens_per_s"]) == (30, pytest.approx(30 / 1.2, **EXACT))
    assert p["total_tokens_per_s"] == pytest.approx(40 / 1.2, **EXACT)
    assert p["duration_s"] == pytest.approx(1.2, **EXACT)  # first send 0.0 -> B's last token at 0.2 + 1.0
    assert p["output_tokens_per_s"] == pytest.approx(10 / 1.2, **EXACT)
    assert p["requests_per_s"] == pytest.approx(3 / 1.2, **EXACT)
    # TTFT over [0.5, 1.0, 0.2]
    assert p["ttft_s"]["mean"] == pytest.approx(1.7 / 3, **EXACT)
    assert p["ttft_s"]["median"] == 0.5
    assert p["ttft_s"]["p90"] == pytest.approx(0.9, **EXACT)
    assert p["ttft_s"]["p99"] == pytest.approx(0.99, **EXACT)
    # TPOT over [0.2, 0.05] (B has none)
    assert p["tpot_s"]["mean"] == pytest.approx(0.125, **EXACT)
    assert p["tpot_s"]["p99"] == pytest.approx(0.05 + 0.15 * 0.99, **EXACT)
    # every ITL gap: A's 0.1, 0.2, 0.3 and C's 0.2
    assert p["itl_s"]["mean"] == pytest.approx(0.2, **EXACT)
    assert p["itl_s"]["median"] == pytest.approx(0.2, **EXACT)
    assert p["e2el_s"]["mean"] == pytest.approx(2.5 / 3, **EXACT)
    # goodput: only C meets TTFT <= 0.6 and TPOT <= 0.1 (A's TPOT is 0.2, B's TTFT is 1.0)
    assert p["goodput_requests_per_s"] == pytest.approx(1 / 1.2, **EXACT)
    assert p["goodput_output_tokens_per_s"] == pytest.approx(5 / 1.2, **EXACT)
    # tokens/s/user, both definitions
    assert p["tokens_per_s_per_user_by_concurrency"] == pytest.approx(10 / 1.2 / 2, **EXACT)
    assert p["tokens_per_s_per_user_by_tpot"] == pytest.approx(8.0, **EXACT)  # 1 / mean TPOT 0.125
    assert p["chunks_per_s_per_user_by_itl"] == pytest.approx(5.0, **EXACT)  # 1 / mean gap between chunks
    # Σ (end − sent): A 1.1, B 1.0, C 0.35, D (failed, it still held the server) 0.05
    assert p["mean_in_flight"] == pytest.approx(2.5 / 1.2, **EXACT)
    assert p["queue_s"]["mean"] == pytest.approx(0.05, **EXACT)
    assert p["output_tokens_per_s_per_gpu"] == pytest.approx(10 / 1.2 / 2, **EXACT)
    assert p["meets_slo"] is False  # p99 TTFT 0.99 > 0.6


def test_point_without_gpu_or_concurrency() -> None:
    p = point_metrics([A, C], slo=SLO(ttft_s=1.0, tpot_s=0.25))
    assert p["output_tokens_per_s_per_gpu"] is None  # null, not zero, without a GPU
    assert point_metrics([A], gpus=0)["output_tokens_per_s_per_gpu"] is None
    # open loop: tokens/s/user divides by the measured mean in flight, (1.1 + 0.35) / 1.1
    assert p["duration_s"] == pytest.approx(1.1, **EXACT)
    assert p["tokens_per_s_per_user_by_concurrency"] == pytest.approx((9 / 1.1) / (1.45 / 1.1), **EXACT)
    assert p["meets_slo"] is True
    empty = point_metrics([D])
    assert empty["output_tokens_per_s"] == 0.0 and empty["meets_slo"] is False  # all failed: 0, measured
    cut = point_metrics([Timing((), 0, status="cancelled")])
    assert cut["output_tokens_per_s"] is None and cut["duration_s"] is None  # nothing ended: no figure
    # a server that sent no usage: its input tokens are unknown, not 0
    unknown = point_metrics([A, Timing((1.0,), output_tokens=1, start_s=0.2, sent_s=0.2, done_s=1.2)])
    assert (unknown["input_tokens"], unknown["input_tokens_per_s"], unknown["total_tokens_per_s"]) == (None, None, None)
    assert unknown["output_tokens_per_s"] == pytest.approx(5 / 1.2, **EXACT)


def test_a_point_says_how_many_output_counts_are_chunk_estimates() -> None:
    """A request whose server sent no usage has its chunks counted (``tokens_counted`` False): the
    point's tokens/s and TPOT use that estimate and ``n_output_tokens_estimated`` says for how many."""
    guessed = Timing((0.2, 0.4), output_tokens=2, start_s=0.5, sent_s=0.55, done_s=0.9, tokens_counted=False)
    assert point_metrics([A, C])["n_output_tokens_estimated"] == 0
    p = point_metrics([A, guessed, D])
    assert p["n_output_tokens_estimated"] == 1 and p["output_tokens"] == 6 and p["n_completed"] == 2


def test_failed_and_cut_off_requests_count_as_misses() -> None:
    fine = [Timing((0.1, 0.2), 2, done_s=0.2) for _ in range(199)]
    slo = SLO(ttft_s=0.5)
    assert point_metrics(fine + [D], slo=slo)["meets_slo"] is True  # 1 in 200: above p99
    cut = Timing((), 0, start_s=0.3, status="cancelled")
    p = point_metrics(fine[:100] + [D, cut], slo=slo)
    assert p["meets_slo"] is False and (p["n_failed"], p["n_cancelled"]) == (1, 1)
    assert p["goodput_requests_per_s"] == pytest.approx(100 / 0.2, **EXACT)


def test_request_slo_check() -> None:
    assert meets(C, SLO(ttft_s=0.2, tpot_s=0.05, e2el_s=0.4))
    assert not meets(C, SLO(e2el_s=0.39))
    assert meets(B, SLO(tpot_s=0.001))  # no TPOT on one token: not limited
    assert not meets(D, SLO())


def linear_model(limit_x: float):
    """p99 TTFT = 0.1 x; the SLO (TTFT <= 0.1 limit_x) holds up to limit_x."""
    calls: list[float] = []

    def probe(x: float) -> dict:
        calls.append(x)
        return {"ttft_s": {"p99": 0.1 * x}, "tpot_s": {"p99": 0.01}, "meets_slo": 0.1 * x <= 0.1 * limit_x + 1e-9}

    return probe, calls


def test_slo_search_bisects_between_known_sweep_points() -> None:
    probe, calls = linear_model(10.5)
    known = {x: probe(x) for x in (1.0, 4.0, 16.0)}
    calls.clear()
    r = slo_search(probe, SLO(ttft_s=1.05), start=1, upper=64, integer=True, max_probes=8, known=known)
    assert r.probed == calls == [10.0, 13.0, 11.0]
    assert (r.best, r.failing, r.bounded, r.converged, r.status) == (10.0, 11.0, False, True, "converged")
    assert r.interpolated == pytest.approx(10.5, **EXACT)  # p99/limit crosses 1 halfway from 10 to 11


def test_slo_search_brackets_by_doubling_and_respects_probe_budget() -> None:
    probe, _ = linear_model(10.5)
    r = slo_search(probe, SLO(ttft_s=1.05), start=1, upper=64, integer=True, max_probes=20)
    assert r.probed == [1.0, 2.0, 4.0, 8.0, 16.0, 12.0, 10.0, 11.0] and r.best == 10.0
    r = slo_search(probe, SLO(ttft_s=1.05), start=1, upper=64, integer=True, max_probes=6)
    assert r.probed == [1.0, 2.0, 4.0, 8.0, 16.0, 12.0] and (r.best, r.failing) == (8.0, 12.0)
    assert not r.converged and r.status == "unconverged"  # out of probes with the bracket [8, 12) open


def test_slo_search_bounded_and_unreachable() -> None:
    probe, _ = linear_model(100)
    r = slo_search(probe, SLO(ttft_s=10), start=1, upper=8, integer=True, max_probes=10)
    assert r.probed == [1.0, 2.0, 4.0, 8.0] and r.best == 8.0 and r.bounded and r.status == "bounded"
    probe, _ = linear_model(0.5)
    r = slo_search(probe, SLO(ttft_s=0.05), start=1, upper=8, integer=True, max_probes=10)
    assert r.best is None and r.probed == [1.0] and r.interpolated is None and r.status == "none_passing"


def test_slo_search_over_rates_halves_then_bisects() -> None:
    probe, _ = linear_model(3.3)
    r = slo_search(probe, SLO(ttft_s=0.33), start=1.0, upper=100, integer=False, max_probes=10, rel_tol=0.1)
    assert r.probed == [1.0, 2.0, 4.0, 3.0, 3.5, 3.25] and r.best == 3.25 and r.converged
    probe, _ = linear_model(0.3)
    r = slo_search(probe, SLO(ttft_s=0.03), start=1.0, upper=100, integer=False, max_probes=10, rel_tol=0.1)
    assert r.probed == [1.0, 0.5, 0.25, 0.375, 0.3125, 0.28125, 0.296875] and r.best == 0.296875


def test_pareto_front() -> None:
    pts = [(1.0, 10.0), (2.0, 8.0), (1.5, 9.0), (1.0, 5.0), (3.0, 8.0)]
    assert pareto_front(pts) == [0, 2, 4]
    assert pareto_front([(1.0, 1.0), (1.0, 1.0)]) == [0, 1]  # ties dominate nothing


def test_no_crossing_is_placed_at_a_load_that_failed_on_its_failures() -> None:
    # c4's completed requests have p99 TTFT 0.8 of the limit, but half its requests failed: it misses
    # the SLO on failures, so no latency crossing lies between c2 and c4 (was: interpolated 4.0)
    from evalsuite.serving.metrics import slo_search

    slo = SLO(ttft_s=1.0)
    ok = lambda ttft: Timing((ttft, ttft + 0.01), output_tokens=2, start_s=0.0, sent_s=0.0, done_s=ttft + 0.01,  # noqa: E731
                             prompt_tokens=1)
    c2 = point_metrics([ok(0.5)] * 100, concurrency=2, slo=slo)
    c4 = point_metrics([ok(0.8)] * 50 + [Timing((), 0, done_s=0.1, status="failed")] * 50, concurrency=4, slo=slo)
    assert c2["meets_slo"] and not c4["meets_slo"]
    res = slo_search(lambda x: {}, slo, start=2, upper=4, integer=True, max_probes=0, known={2.0: c2, 4.0: c4})
    assert (res.best, res.failing, res.interpolated) == (2.0, 4.0, None)
    # a real latency crossing is still placed: c4 at p99 1.5 of the limit
    c4_slow = point_metrics([ok(1.5)] * 100, concurrency=4, slo=slo)
    res = slo_search(lambda x: {}, slo, start=2, upper=4, integer=True, max_probes=0, known={2.0: c2, 4.0: c4_slow})
    assert res.interpolated == pytest.approx(2 + (1 - 0.5) / (1.5 - 0.5) * 2, **EXACT)


def test_an_integer_search_within_the_relative_tolerance_is_converged() -> None:
    """[32, 34] is as narrow as a rate search stops at (10%): a CPU run that ran out of probes one step
    short of 33 reported no output tok/s at the SLO at all."""
    probe, calls = linear_model(33.5)
    known = {x: probe(x) for x in (1.0, 4.0, 16.0)}
    calls.clear()
    r = slo_search(probe, SLO(ttft_s=3.35), start=1, upper=64, integer=True, max_probes=6, known=known)
    assert r.probed == [32.0, 64.0, 48.0, 40.0, 36.0, 34.0] and (r.best, r.failing) == (32.0, 34.0)
    assert r.converged and r.status == "converged"  # was "unconverged": 33 would have been a 7th probe


def test_the_failure_rule_alone() -> None:
    """`few_enough_failures`: the SLO check's rule with no latency limit (the throughput task's
    max_output_tokens_per_s takes only points that pass it); the same verdict as point_meets_slo_p99."""
    from evalsuite.serving.metrics import few_enough_failures, point_meets_slo_p99

    assert few_enough_failures(200, 199) and not few_enough_failures(100, 99) and few_enough_failures(8, 8)
    assert not few_enough_failures(5, 4) and not few_enough_failures(3, 0) and not few_enough_failures(0, 0)
    ok = Timing(token_times=(0.1, 0.2), output_tokens=2)
    failed = Timing(token_times=(), output_tokens=0, status="failed")
    for n_ok, n_failed in ((199, 1), (99, 1), (8, 0), (4, 1), (0, 3)):
        timings = [ok] * n_ok + [failed] * n_failed
        assert point_meets_slo_p99(timings, SLO()) == few_enough_failures(n_ok + n_failed, n_ok)


def test_claimable_percentile_is_the_binomial_bound() -> None:
    """The highest percentile k of n requests over the limit support at 95% (Clopper–Pearson, as
    MLPerf's early stopping): 8 clean requests show p68.8, not p99; 299 are the fewest that show p99."""
    from evalsuite.serving.metrics import claimable_percentile, requests_to_claim

    assert claimable_percentile(8, 0) == pytest.approx(100 * 0.05 ** (1 / 8), **EXACT)  # 68.77
    assert claimable_percentile(299, 0) >= 99.0 > claimable_percentile(298, 0)
    assert claimable_percentile(473, 1) >= 99.0 > claimable_percentile(472, 1)
    assert claimable_percentile(100, 5) == pytest.approx(89.7747, abs=1e-3)  # 1 − beta.ppf(.95, 6, 95)
    assert claimable_percentile(0, 0) == 0.0 and claimable_percentile(5, 5) == 0.0
    assert requests_to_claim(99) == 299 and requests_to_claim(99, 1) == 473 and requests_to_claim(90) == 29
    ok = [Timing((0.1, 0.2), 2, start_s=0.0, sent_s=0.0, done_s=0.2)] * 8
    p = point_metrics(ok, concurrency=1, slo=SLO(ttft_s=1.0))
    assert p["meets_slo"] is True  # the observed p99, as vllm bench serve reports it…
    ev = p["slo_evidence"]  # …on too few requests to show it
    assert (ev["n"], ev["n_over"], ev["proven"], ev["n_needed"]) == (8, 0, False, 299)
    assert ev["claimable_percentile"] == pytest.approx(68.766, abs=1e-3)
    late = [Timing((2.0, 2.1), 2, start_s=0.0, sent_s=0.0, done_s=2.1)]
    assert point_metrics(ok * 40 + late, concurrency=1, slo=SLO(ttft_s=1.0))["slo_evidence"]["n_over"] == 1
    assert point_metrics(ok * 38, concurrency=1, slo=SLO(ttft_s=1.0))["slo_evidence"]["proven"] is True


def test_backlog_growth_is_offered_over_achieved_rate_minus_one() -> None:
    """Arrivals every 0.1 s at a server that completes one every 0.2 s: the k-th completion trails the
    k-th arrival by 0.1·k more, so the backlog grows by 1 per second of arrivals (offered 10/s,
    achieved 5/s); such an open-loop point does not meet the SLO even with no latency limit set."""
    from evalsuite.serving.metrics import backlog_growth

    slow = [Timing((0.2 * (k + 1) - 0.1 * k,), 1, start_s=0.1 * k, sent_s=0.1 * k, done_s=0.2 * (k + 1))
            for k in range(20)]
    assert backlog_growth(slow) == pytest.approx(1.0, **EXACT)
    steady = [Timing((0.3,), 1, start_s=0.1 * k, sent_s=0.1 * k, done_s=0.1 * k + 0.3) for k in range(20)]
    assert backlog_growth(steady) == pytest.approx(0.0, abs=1e-12)
    assert backlog_growth([Timing((0.3,), 1, start_s=0.0, done_s=0.3)] * 5) is None  # a burst: no rate
    p = point_metrics(slow)  # open loop (no concurrency), no limit
    assert (p["keeps_pace"], p["meets_slo"]) == (False, False) and p["arrival_window_s"] == pytest.approx(1.9)
    q = point_metrics(steady)
    assert (q["keeps_pace"], q["meets_slo"]) == (True, True)
    assert "keeps_pace" not in point_metrics(slow, concurrency=1)  # closed loop keeps pace by construction
