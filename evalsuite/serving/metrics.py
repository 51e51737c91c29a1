"""Serving-benchmark metrics as pure functions of recorded token timings.

Definitions follow ``vllm bench serve`` (DESIGN §6); every function here takes numbers and returns
numbers, so tests check them on scripted timings with exact expected values.

Per request (times in seconds since the request was sent; ``token_times`` are the arrivals of the
streamed chunks, one per token in-process, one per SSE chunk over HTTP):

- TTFT = first chunk's time; E2EL = last chunk's time;
- ITL = every gap between consecutive chunks (all of them, not their mean);
- TPOT = (E2EL − TTFT) / (output tokens − 1), defined only for requests of 2 or more output tokens
  (output tokens come from the server's usage count, so several tokens in one chunk still count).

Per load point (a concurrency or an arrival rate): mean, median, p90 and p99 of each of them
(percentiles by linear interpolation, as ``numpy.percentile``); output tokens/s and requests/s over
the point's duration (first send to last token); goodput = requests meeting every SLO limit per
second; the mean number of requests in flight (Little's law: Σ E2EL / duration); tokens/s per user
in the two ways tools define it, both named: ``tokens_per_s_per_user_by_concurrency`` = output
tokens/s ÷ concurrency (the configured concurrency in closed loop, the mean in flight in open loop)
and ``tokens_per_s_per_user_by_itl`` = 1 / mean ITL; tokens/s per GPU = output tokens/s ÷ GPUs used,
``None`` (not 0) when no GPU is counted.

SLO search (`slo_search`): the highest concurrency (or rate) whose p99 TTFT and p99 TPOT meet their
limits, from points already measured plus new probes: bracket by doubling, then bisect; the crossing
is also estimated by linear interpolation between the last passing and first failing probes.
`pareto_front` keeps the points no other point beats on both tokens/s/user and tokens/s/GPU.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Sequence

QUANTILES = (("median", 50.0), ("p90", 90.0), ("p99", 99.0))


@dataclass(frozen=True)
class SLO:
    """Latency limits in seconds; None = no limit on that figure."""

    ttft_s: float | None = None
    tpot_s: float | None = None
    e2el_s: float | None = None

    def to_dict(self) -> dict[str, float | None]:
        return {"ttft_s": self.ttft_s, "tpot_s": self.tpot_s, "e2el_s": self.e2el_s}


@dataclass(frozen=True)
class Timing:
    """What one request's metrics need: chunk arrival times (seconds since sent) and token counts."""

    token_times: tuple[float, ...]
    output_tokens: int
    sent_s: float = 0.0  # when it was sent, seconds since the point started
    ok: bool = True  # False for errored or cut-off requests (left out of every latency figure)


# ---- per request --------------------------------------------------------------------------------
def ttft(t: Timing) -> float | None:
    return t.token_times[0] if t.token_times else None


def e2el(t: Timing) -> float | None:
    return t.token_times[-1] if t.token_times else None


def itls(t: Timing) -> list[float]:
    return [b - a for a, b in zip(t.token_times, t.token_times[1:])]


def tpot(t: Timing) -> float | None:
    first, last = ttft(t), e2el(t)
    if first is None or last is None or t.output_tokens < 2:
        return None
    return (last - first) / (t.output_tokens - 1)


def meets(t: Timing, slo: SLO) -> bool:
    """Whether one finished request meets every limit (TPOT is not limited on 1-token outputs)."""
    if not t.ok or not t.token_times:
        return False
    checks = ((slo.ttft_s, ttft(t)), (slo.tpot_s, tpot(t)), (slo.e2el_s, e2el(t)))
    return all(limit is None or value is None or value <= limit for limit, value in checks)


# ---- distributions ------------------------------------------------------------------------------
def percentile(values: Sequence[float], q: float) -> float:
    """The q-th percentile (0–100) by linear interpolation between order statistics."""
    if not values:
        raise ValueError("percentile of no values")
    xs = sorted(values)
    pos = (len(xs) - 1) * q / 100.0
    lo = math.floor(pos)
    hi = min(lo + 1, len(xs) - 1)
    return xs[lo] + (xs[hi] - xs[lo]) * (pos - lo)


def distribution(values: Iterable[float | None]) -> dict[str, float | None]:
    """mean, median, p90, p99 of the values that are not None (all None when there are none)."""
    xs = [float(v) for v in values if v is not None]
    if not xs:
        return {"mean": None, **{name: None for name, _ in QUANTILES}}
    return {"mean": sum(xs) / len(xs), **{name: percentile(xs, q) for name, q in QUANTILES}}


# ---- per point ----------------------------------------------------------------------------------
def point_metrics(timings: Sequence[Timing], *, concurrency: float | None = None, gpus: int | None = None,
                  slo: SLO = SLO(), duration_s: float | None = None) -> dict[str, Any]:
    """The figures of one load point. ``duration_s`` defaults to first send → last token of the
    finished requests; ``concurrency`` is the configured one (closed loop) or None (open loop: the
    measured mean in flight is used for tokens/s/user)."""
    done = [t for t in timings if t.ok and t.token_times]
    if duration_s is None:
        duration_s = (max(t.sent_s + t.token_times[-1] for t in done) - min(t.sent_s for t in timings)) if done else 0.0
    out_tokens = sum(t.output_tokens for t in done)
    all_itls = [g for t in done for g in itls(t)]
    per_s = (lambda n: n / duration_s) if duration_s > 0 else (lambda n: None)
    out_tps = per_s(out_tokens)
    in_flight = (sum(t.token_times[-1] for t in done) / duration_s) if duration_s > 0 else None
    users = concurrency if concurrency is not None else in_flight
    itl_dist = distribution(all_itls)
    good = [t for t in done if meets(t, slo)]
    return {
        "n_requests": len(timings),
        "n_completed": len(done),
        "duration_s": duration_s,
        "output_tokens": out_tokens,
        "output_tokens_per_s": out_tps,
        "requests_per_s": per_s(len(done)),
        "goodput_requests_per_s": per_s(len(good)),
        "goodput_output_tokens_per_s": per_s(sum(t.output_tokens for t in good)),
        "mean_in_flight": in_flight,
        "tokens_per_s_per_user_by_concurrency": (out_tps / users) if out_tps is not None and users else None,
        "tokens_per_s_per_user_by_itl": (1.0 / itl_dist["mean"]) if itl_dist["mean"] else None,
        "output_tokens_per_s_per_gpu": (out_tps / gpus) if out_tps is not None and gpus else None,
        "ttft_s": distribution(ttft(t) for t in done),
        "tpot_s": distribution(tpot(t) for t in done),
        "itl_s": itl_dist,
        "e2el_s": distribution(e2el(t) for t in done),
        "meets_slo": point_meets_slo_p99(done, slo),
    }


def point_meets_slo_p99(done: Sequence[Timing], slo: SLO) -> bool:
    """p99 TTFT, p99 TPOT (and p99 E2EL when limited) of the finished requests within the limits;
    False when nothing finished."""
    if not done:
        return False
    for limit, values in ((slo.ttft_s, [ttft(t) for t in done]), (slo.tpot_s, [tpot(t) for t in done]),
                          (slo.e2el_s, [e2el(t) for t in done])):
        xs = [v for v in values if v is not None]
        if limit is not None and xs and percentile(xs, 99.0) > limit:
            return False
    return True


def slo_ratio(point: dict[str, Any], slo: SLO) -> float | None:
    """The worst of p99 / limit over the limited figures of a point (≤ 1 meets the SLO)."""
    ratios = []
    for limit, key in ((slo.ttft_s, "ttft_s"), (slo.tpot_s, "tpot_s"), (slo.e2el_s, "e2el_s")):
        p99 = (point.get(key) or {}).get("p99")
        if limit is not None and p99 is not None:
            ratios.append(p99 / limit)
    return max(ratios) if ratios else None


# ---- SLO search ---------------------------------------------------------------------------------
@dataclass
class SearchResult:
    """``best``: the highest load that met the SLO (None: not even the lowest one did);
    ``points``: every load measured, by load; ``probed``: the loads measured by the search itself,
    in order; ``interpolated``: where the worst p99/limit ratio crosses 1 between ``best`` and the
    lowest failing load (None without both); ``bounded``: the search hit its upper bound still
    passing (the true limit may be higher)."""

    best: float | None
    points: dict[float, dict[str, Any]]
    probed: list[float] = field(default_factory=list)
    interpolated: float | None = None
    bounded: bool = False
    failing: float | None = None


def slo_search(probe: Callable[[float], dict[str, Any]], slo: SLO, *, start: float, upper: float,
               integer: bool, max_probes: int, known: dict[float, dict[str, Any]] | None = None,
               lower: float | None = None, rel_tol: float = 0.1) -> SearchResult:
    """Find the highest load ≤ ``upper`` whose point meets the SLO (``point["meets_slo"]``),
    assuming that meeting it is monotone in the load. ``probe(x)`` measures load ``x``; ``known``
    points (a sweep already run) seed the bracket. Bracketing doubles from the highest passing load
    (or halves below the lowest failing one, down to ``lower``); bisection then narrows the bracket
    to 1 (integers) or ``rel_tol`` of the passing load, within ``max_probes`` new measurements."""
    points: dict[float, dict[str, Any]] = dict(known or {})
    probed: list[float] = []
    lower = (1.0 if integer else start / 64) if lower is None else lower

    def measure(x: float) -> bool:
        if x not in points:
            points[x] = probe(x)
            probed.append(x)
        return bool(points[x]["meets_slo"])

    def bracket() -> tuple[float | None, float | None]:
        fails = [x for x, p in points.items() if not p["meets_slo"]]
        hi = min(fails) if fails else None
        passes = [x for x, p in points.items() if p["meets_slo"] and (hi is None or x < hi)]
        return (max(passes) if passes else None), hi

    if not points:
        measure(float(start))
    lo, hi = bracket()
    while lo is None and len(probed) < max_probes:  # nothing passes yet: go down
        x = (hi if hi is not None else float(start)) / 2
        x = float(math.floor(x)) if integer else x
        if x < lower or x in points:
            break
        measure(x)
        lo, hi = bracket()
    while lo is not None and hi is None and lo < upper and len(probed) < max_probes:  # all pass: go up
        measure(min(2 * lo, float(upper)))
        lo, hi = bracket()
    while lo is not None and hi is not None and len(probed) < max_probes:  # bisect
        if (hi - lo <= 1) if integer else (hi - lo <= rel_tol * lo):
            break
        mid = float((int(lo) + int(hi)) // 2) if integer else (lo + hi) / 2
        measure(mid)
        lo, hi = bracket()
    return SearchResult(best=lo, points=points, probed=probed, interpolated=_crossing(points, lo, hi, slo),
                        bounded=lo is not None and hi is None and lo >= upper, failing=hi)


def _crossing(points: dict[float, dict[str, Any]], lo: float | None, hi: float | None, slo: SLO) -> float | None:
    if lo is None or hi is None:
        return None
    r_lo, r_hi = slo_ratio(points[lo], slo), slo_ratio(points[hi], slo)
    if r_lo is None or r_hi is None or r_hi <= r_lo:
        return None
    x = lo + (1.0 - r_lo) / (r_hi - r_lo) * (hi - lo)
    return min(max(x, lo), hi)


# ---- Pareto front -------------------------------------------------------------------------------
def pareto_front(points: Sequence[tuple[float, float]]) -> list[int]:
    """Indices of the points (x, y) that no other point beats on both (≥ on both, > on one), by x."""
    keep = []
    for i, (x, y) in enumerate(points):
        dominated = any((x2 >= x and y2 >= y) and (x2 > x or y2 > y) for j, (x2, y2) in enumerate(points) if j != i)
        if not dominated:
            keep.append(i)
    return sorted(keep, key=lambda i: (points[i][0], points[i][1]))
