"""Serving-benchmark metrics as pure functions of recorded token timings.

Definitions and names follow ``vllm bench serve`` (DESIGN §6): ``ttft``, ``tpot``, ``itl``, ``e2el``
(kept in seconds in results, ``_s``; reports show milliseconds); every function here takes numbers and
returns numbers, so tests check them on scripted timings with exact expected values.

Per request (``token_times``: arrivals of the streamed chunks, seconds since the request's intended
start — the scheduled send time in open loop, so client-side delays count — one chunk per token
in-process, one per SSE chunk over HTTP; a server streams text, so a token that completes no
character, such as the first byte of a multi-byte one, sends no chunk: over HTTP TTFT is the first
chunk that carries text, which may come a token later than the in-process first token):

- TTFT = first chunk's time; E2EL = the end of the response: its last chunk, the finish and usage
  chunks included (``Timing.end_s``), as ``vllm bench serve`` takes its latency after every chunk;
- ITL = every gap between consecutive chunks (all of them, not their mean; chunks, as vLLM's ITL);
- TPOT = (E2EL − TTFT) / (output tokens − 1) (vLLM's), defined only for requests of 2 or more output tokens
  (output tokens come from the server's usage count, so several tokens in one chunk still count; it
  is what aiperf calls inter-token latency); a server that sends no usage has its chunks counted
  instead (``Timing.tokens_counted`` False), an estimate, and a point says how many of its completed
  requests were counted so (``n_output_tokens_estimated``: their tokens/s and TPOT are estimates);
- queue = intended start → the request left the client (client-side queueing, reported on its own).

Per load point (a concurrency or an arrival rate), all on the load generator's one clock: mean, std,
min, max, median and percentiles (``percentiles``, default p50/p90/p95/p99, always with p90 and p99
for the SLO; linear interpolation, as ``numpy.percentile``) of each of them; input, output and total
tokens/s and requests/s over the point's duration (first intended start → last request ended);
goodput = requests meeting every SLO limit per second (failed requests never do); input and total
tokens/s are None when a completed request's prompt tokens are unknown; the mean number of
requests in flight at the server (Little's law: Σ (end − sent) / duration); tokens/s per user in the
ways tools define it, each named: ``tokens_per_s_per_user_by_concurrency`` = output tokens/s ÷
concurrency (the configured one in closed loop, the mean in flight in open loop),
``tokens_per_s_per_user_by_tpot`` = 1 / mean TPOT, ``chunks_per_s_per_user_by_itl`` = 1 / mean ITL
(streamed chunks, not tokens); tokens/s per GPU = output tokens/s ÷ GPUs used, ``None`` (not 0) when
no GPU is counted. Failed and cut-off requests are counted (``n_failed``, ``n_cancelled``), left out
of the latency distributions, and count as misses when a point is checked against its SLO.

SLO decision per point (``meets_slo``): the observed p99 of each limited figure within its limit,
failed and cut-off requests counting as over; an open-loop point must also keep pace with its
arrivals (`backlog_growth` ≤ ``PACE_TOLERANCE``). ``slo_evidence`` says what the decision rests on:
the point's n, how many were over, and the highest percentile that supports at 95% confidence
(`claimable_percentile`, distribution-free); ``proven`` when that reaches p99.

SLO search (`slo_search`): the highest concurrency (or rate) whose p99 TTFT and p99 TPOT meet their
limits, from points already measured plus new probes: bracket by doubling, then bisect; the crossing
is also estimated by linear interpolation between the last passing and first failing probes; the
result says whether the bracket closed (``converged``).
`pareto_front` keeps the points no other point beats on both tokens/s/user and tokens/s/GPU.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Sequence

PERCENTILES = (50.0, 90.0, 95.0, 99.0)
SLO_PERCENTILE = 99.0  # the SLO limits the p99 of each figure
CONFIDENCE = 0.95  # of a claim that a point meets it (`slo_evidence`)
PACE_TOLERANCE = 0.1  # an open-loop point keeps pace when its backlog grows by at most this (`backlog_growth`)
PACE_MIN_WINDOW_S = 10.0  # arrivals must span this (or a shorter rate_point_s) for `backlog_growth` to decide
ALWAYS = (90.0, 99.0)  # the SLO check and the old readers need these


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
    """What one request's metrics need: chunk arrival times (seconds since its intended start) and
    token counts; ``start_s``/``sent_s``/``done_s`` are seconds since the point started."""

    token_times: tuple[float, ...]
    output_tokens: int
    start_s: float = 0.0  # intended start
    sent_s: float | None = None  # left the client
    done_s: float | None = None  # ended (answered or failed); None while cut off
    queue_s: float | None = None
    status: str = "ok"  # "ok" | "failed" | "cancelled"
    prompt_tokens: int | None = None  # None: the backend did not say (an OpenAI server without usage)
    end_s: float | None = None  # the response's end (finish/usage chunk), since the intended start; None: last token
    tokens_counted: bool = True  # False: output_tokens is a count of streamed chunks (no usage), an estimate

    @property
    def ok(self) -> bool:
        return self.status == "ok"


# ---- per request --------------------------------------------------------------------------------
def ttft(t: Timing) -> float | None:
    return t.token_times[0] if t.token_times else None


def e2el(t: Timing) -> float | None:
    if not t.token_times:
        return None
    return max(t.token_times[-1], t.end_s) if t.end_s is not None else t.token_times[-1]


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
    frac = pos - lo
    if frac == 0 or xs[hi] == xs[lo] or math.isinf(xs[lo]):
        return xs[lo]
    return xs[lo] + (xs[hi] - xs[lo]) * frac


def pct_key(q: float) -> str:
    """``p99``, ``p95``, ``p99.9``: the key of a percentile."""
    return f"p{q:g}"


def parse_percentiles(spec: Any) -> tuple[float, ...]:
    """``"50,90,95,99"`` or a list of numbers → sorted percentiles in (0, 100]; ValueError otherwise."""
    items = spec.split(",") if isinstance(spec, str) else list(spec) if isinstance(spec, (list, tuple)) else None
    if not items:
        raise ValueError(f"expected percentiles like 50,90,95,99, got {spec!r}")
    try:
        qs = sorted({float(str(x).strip()) for x in items})
    except ValueError:
        raise ValueError(f"expected percentiles like 50,90,95,99, got {spec!r}") from None
    if any(not 0 < q <= 100 for q in qs):
        raise ValueError(f"percentiles must lie in (0, 100], got {spec!r}")
    return tuple(qs)


def distribution(values: Iterable[float | None], percentiles: Sequence[float] = PERCENTILES) -> dict[str, float | None]:
    """mean, std (population), min, max, median and the percentiles (with p90, p99) of the values
    that are not None (all None when there are none)."""
    xs = [float(v) for v in values if v is not None]
    qs = sorted(set(percentiles) | set(ALWAYS))
    keys = ["mean", "std", "min", "max", "median", *(pct_key(q) for q in qs)]
    if not xs:
        return {k: None for k in keys}
    mean = sum(xs) / len(xs)
    out: dict[str, float | None] = {"mean": mean, "std": math.sqrt(sum((x - mean) ** 2 for x in xs) / len(xs)),
                                    "min": min(xs), "max": max(xs), "median": percentile(xs, 50.0)}
    out.update({pct_key(q): percentile(xs, q) for q in qs})
    return out


# ---- per point ----------------------------------------------------------------------------------
def point_metrics(timings: Sequence[Timing], *, concurrency: float | None = None, gpus: int | None = None,
                  slo: SLO = SLO(), duration_s: float | None = None,
                  percentiles: Sequence[float] = PERCENTILES) -> dict[str, Any]:
    """The figures of one load point. ``duration_s`` defaults to the first intended start → the last
    request's end (answered or failed; cut-off requests end at the last cut); ``concurrency`` is the
    configured one (closed loop) or None (open loop: the measured mean in flight is used for
    tokens/s/user)."""
    done = [t for t in timings if t.ok and t.token_times]
    ended = [t for t in timings if t.done_s is not None]
    if duration_s is None and ended:
        duration_s = max(t.done_s for t in ended) - min(t.start_s for t in timings)  # type: ignore
    out_tokens = sum(t.output_tokens for t in done)
    in_tokens = None if any(t.prompt_tokens is None for t in done) else sum(t.prompt_tokens or 0 for t in done)
    all_itls = [g for t in done for g in itls(t)]
    measured = duration_s is not None and duration_s > 0
    per_s = (lambda n: n / duration_s if n is not None else None) if measured else (lambda n: None)
    out_tps = per_s(out_tokens)
    busy = sum(t.done_s - t.sent_s for t in ended if t.sent_s is not None)  # type: ignore[operator]
    in_flight = (busy / duration_s) if measured else None  # type: ignore[operator]
    users = concurrency if concurrency is not None else in_flight
    dist = lambda xs: distribution(xs, percentiles)  # noqa: E731
    itl_dist, tpot_dist = dist(all_itls), dist(tpot(t) for t in done)
    good = [t for t in done if meets(t, slo)]
    starts = [t.start_s for t in timings]
    pace = backlog_growth(timings) if concurrency is None else None
    return {
        "n_requests": len(timings),
        "n_completed": len(done),
        "n_failed": sum(1 for t in timings if t.status == "failed"),
        "n_cancelled": sum(1 for t in timings if t.status == "cancelled"),
        "duration_s": duration_s,
        "input_tokens": in_tokens,
        "output_tokens": out_tokens,
        "n_output_tokens_estimated": sum(1 for t in done if not t.tokens_counted),
        "input_tokens_per_s": per_s(in_tokens),
        "output_tokens_per_s": out_tps,
        "total_tokens_per_s": per_s(in_tokens + out_tokens if in_tokens is not None else None),
        "requests_per_s": per_s(len(done)),
        "goodput_requests_per_s": per_s(len(good)),
        "goodput_output_tokens_per_s": per_s(sum(t.output_tokens for t in good)),
        "mean_in_flight": in_flight,
        "tokens_per_s_per_user_by_concurrency": (out_tps / users) if out_tps is not None and users else None,
        "tokens_per_s_per_user_by_tpot": (1.0 / tpot_dist["mean"]) if tpot_dist["mean"] else None,
        "chunks_per_s_per_user_by_itl": (1.0 / itl_dist["mean"]) if itl_dist["mean"] else None,
        "output_tokens_per_s_per_gpu": (out_tps / gpus) if out_tps is not None and gpus else None,
        "ttft_s": dist(ttft(t) for t in done),
        "tpot_s": tpot_dist,
        "itl_s": itl_dist,
        "e2el_s": dist(e2el(t) for t in done),
        "queue_s": dist(t.queue_s for t in timings if t.queue_s is not None),
        "meets_slo": point_meets_slo_p99(timings, slo) and (pace is None or pace <= PACE_TOLERANCE),
        "slo_evidence": slo_evidence(timings, slo),
        **({"arrival_window_s": (max(starts) - min(starts)) if starts else None, "backlog_growth": pace,
            "keeps_pace": pace is None or pace <= PACE_TOLERANCE} if concurrency is None else {}),
    }


def backlog_growth(timings: Sequence[Timing]) -> float | None:
    """How fast an open-loop point's backlog grew: the least-squares slope of (k-th completion − k-th
    arrival) against the k-th arrival, over the requests in arrival order (completions sorted too, so
    which request finished first does not matter; a request that did not finish has no completion, so
    the pairs it leaves behind come later: never in the point's favour).

    A backend that keeps pace completes requests as fast as they arrive, so the k-th completion
    trails the k-th arrival by a level amount (the time in system); one of capacity μ offered λ > μ
    completes the k-th request at ≈ k/μ while it arrives at k/λ, so the gap grows by λ/μ − 1 per
    second of arrivals: the slope estimates offered / achieved rate − 1, whatever the service time
    and the latency limits, and the fit over every request averages out the queueing noise of a
    sustainable load (a slope of a few hundredths at 80% of capacity). None for fewer than 3
    completions or a burst (every arrival at once: no rate to keep)."""
    starts = sorted(t.start_s for t in timings)
    ends = sorted(t.done_s for t in timings if t.ok and t.token_times and t.done_s is not None)
    m = len(ends)
    if m < 3:
        return None
    xs = starts[:m]
    ys = [e - s for e, s in zip(ends, xs)]
    mx, my = sum(xs) / m, sum(ys) / m
    sxx = sum((x - mx) ** 2 for x in xs)
    if sxx <= 0:
        return None
    return sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / sxx


def point_meets_slo_p99(timings: Sequence[Timing], slo: SLO) -> bool:
    """p99 TTFT, p99 TPOT (and p99 E2EL when limited) within the limits, where a failed or cut-off
    request counts as an infinite latency — so with no limit set too, more than 1% of requests
    failing misses; False when nothing finished."""
    done = [t for t in timings if t.ok and t.token_times]
    if not few_enough_failures(len(timings), len(done)):
        return False
    missed = [math.inf] * (len(timings) - len(done))
    for limit, values in ((slo.ttft_s, [ttft(t) for t in done]), (slo.tpot_s, [tpot(t) for t in done]),
                          (slo.e2el_s, [e2el(t) for t in done])):
        xs = [v for v in values if v is not None]
        if limit is not None and xs and percentile(xs + missed, 99.0) > limit:
            return False
    return True


def few_enough_failures(n_requests: int, n_completed: int) -> bool:
    """The SLO check's first rule, which holds with no latency limit set: a failed or cut-off request
    counts as an infinite latency, so a point passes only when its p99 is still a finished request:
    at most 1% of (``n_requests`` − 1) did not finish (1 in 100 misses, 1 in 200 passes); False when
    nothing finished. ``n_completed`` counts the requests that finished with tokens (a point's
    ``n_completed``)."""
    if n_completed <= 0:
        return False
    missed = [math.inf] * (n_requests - n_completed)
    return not math.isinf(percentile([0.0] * n_completed + missed, 99.0))


def claimable_percentile(n: int, k: int, confidence: float = CONFIDENCE) -> float:
    """The highest percentile p (0–100) such that, with ``k`` of ``n`` requests over the limit, "the
    true p-th percentile is within the limit" holds at ``confidence`` — distribution-free, as MLPerf
    LoadGen's early stopping: the over-limit fraction q is binomial, and p = 100 · (1 − the one-sided
    Clopper–Pearson upper bound of q), the q at which P(Bin(n, q) ≤ k) = 1 − confidence. With no
    request over the limit that is 100 · (1 − confidence)^(1/n): 8 requests support p68.8, 299 are the
    fewest that support p99 (`requests_to_claim`); 0 when nothing was measured."""
    if n <= 0 or k >= n:
        return 0.0
    alpha = 1.0 - confidence
    if k <= 0:
        return 100.0 * alpha ** (1.0 / n)
    lo, hi = 0.0, 1.0  # P(Bin(n, q) <= k) falls as q grows: bisect for the q where it equals alpha
    for _ in range(100):
        mid = (lo + hi) / 2
        if _binom_cdf(k, n, mid) > alpha:
            lo = mid
        else:
            hi = mid
    return 100.0 * (1.0 - hi)


def requests_to_claim(percentile: float, k: int = 0, confidence: float = CONFIDENCE) -> int:
    """The fewest requests that support ``percentile`` with ``k`` of them over the limit (p99, k=0: 299)."""
    n = k + 1
    while claimable_percentile(n, k, confidence) < percentile:
        n = n * 2 if claimable_percentile(2 * n, k, confidence) < percentile else n + 1
    return n


def _binom_cdf(k: int, n: int, q: float) -> float:
    if q <= 0.0:
        return 1.0
    if q >= 1.0:
        return 0.0 if k < n else 1.0
    lq, lp = math.log(q), math.log1p(-q)
    return min(1.0, sum(math.exp(math.lgamma(n + 1) - math.lgamma(i + 1) - math.lgamma(n - i + 1) + i * lq
                                 + (n - i) * lp) for i in range(k + 1)))


def slo_evidence(timings: Sequence[Timing], slo: SLO, percentile: float = SLO_PERCENTILE,
                 confidence: float = CONFIDENCE) -> dict[str, Any]:
    """How much a point's SLO decision rests on: ``n`` requests, ``n_over`` of them over a limit
    (any of TTFT, TPOT, E2EL) or not finished, the highest percentile that sample supports at
    ``confidence`` (`claimable_percentile`; a request over any limit counts against every figure, so
    a claim on the union holds for each p99), and ``proven``: that percentile reaches the SLO's.
    ``meets_slo`` is the observed p99 (as ``vllm bench serve`` reports it); a point that meets it
    without ``proven`` passed on too few requests to show it with that confidence."""
    n = len(timings)
    over = sum(1 for t in timings if not meets(t, slo))
    claim = claimable_percentile(n, over, confidence)
    return {"n": n, "n_over": over, "percentile": percentile, "confidence": confidence,
            "claimable_percentile": claim, "proven": claim >= percentile,
            "n_needed": requests_to_claim(percentile, 0, confidence)}


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
    passing (the true limit may be higher); ``converged``: the bracket [best, failing] closed to the
    search's tolerance (1 for integers, ``rel_tol`` of ``best`` for rates)."""

    best: float | None
    points: dict[float, dict[str, Any]]
    probed: list[float] = field(default_factory=list)
    interpolated: float | None = None
    bounded: bool = False
    failing: float | None = None
    converged: bool = False

    @property
    def status(self) -> str:
        """converged | bounded (passes at the top of the range) | unconverged | none_passing."""
        if self.converged:
            return "converged"
        if self.bounded:
            return "bounded"
        return "none_passing" if self.best is None else "unconverged"


def slo_search(probe: Callable[[float], dict[str, Any]], slo: SLO, *, start: float, upper: float,
               integer: bool, max_probes: int, known: dict[float, dict[str, Any]] | None = None,
               lower: float | None = None, rel_tol: float = 0.1) -> SearchResult:
    """Find the highest load ≤ ``upper`` whose point meets the SLO (``point["meets_slo"]``),
    assuming that meeting it is monotone in the load. ``probe(x)`` measures load ``x``; ``known``
    points (a sweep already run) seed the bracket. Bracketing doubles from the highest passing load
    (or halves below the lowest failing one, down to ``lower``); bisection then narrows the bracket
    to ``rel_tol`` of the passing load (integers: that or 1), within ``max_probes`` new measurements."""
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
    def closed(lo: float, hi: float) -> bool:
        # integers: adjacent, or within rel_tol of the passing load, as a rate search stops (a bracket of
        # two integers apart at a load of 32 is as narrow; probing between them can exceed the budget)
        return (hi - lo <= max(1.0, rel_tol * lo)) if integer else (hi - lo <= rel_tol * lo)

    while lo is not None and hi is not None and len(probed) < max_probes:  # bisect
        if closed(lo, hi):
            break
        mid = float((int(lo) + int(hi)) // 2) if integer else (lo + hi) / 2
        measure(mid)
        lo, hi = bracket()
    return SearchResult(best=lo, points=points, probed=probed, interpolated=_crossing(points, lo, hi, slo),
                        bounded=lo is not None and hi is None and lo >= upper, failing=hi,
                        converged=lo is not None and hi is not None and closed(lo, hi))


def _crossing(points: dict[float, dict[str, Any]], lo: float | None, hi: float | None, slo: SLO) -> float | None:
    if lo is None or hi is None:
        return None
    r_lo, r_hi = slo_ratio(points[lo], slo), slo_ratio(points[hi], slo)
    if r_lo is None or r_hi is None or r_hi <= r_lo or r_hi <= 1.0:
        return None  # r_hi <= 1: that load failed on its failed requests, not on latency; no crossing to place
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
