"""Paired statistics for two runs scored on the same samples.

Two runs of one task answer the *same* questions, so the right unit is the per-sample difference
``d_i = score_B(i) - score_A(i)``, not two independent means: hard questions are hard for both
models, and pairing removes that shared variance (an unpaired interval is much wider on the
positively correlated scores real runs produce). Samples that share a source (several questions
about one video, document or audio file: ``metadata["cluster"]``) are not independent either, so
every resampling here resamples whole clusters.

What is here, and when each is used:

- :func:`pair` lines up two runs' sample results by id (scored in both; optionally counting the
  candidate's errors as wrong, which the gate does).
- :func:`paired_interval` — THE interval of mean(d) that compare, the gate and the leaderboard
  show: for scores in [0, 1] the hull of the paired cluster bootstrap (:func:`paired_bootstrap_ci`,
  which carries the clustering) and Tango's (1998) score interval (:func:`tango_ci`, which stays
  honest with few or zero discordant pairs: 30 identical answers do not prove two models within 2
  points of each other, yet the bootstrap interval would be [0, 0]). Other scores: the bootstrap.
  When pairs share clusters both halves are corrected (strongly clustered pairs make both too
  narrow): the bootstrap as ``evalsuite.stats.bootstrap_ci`` does (bounds moved from the estimate
  by sqrt(C/(C-1)) t(C-1)/z), and Tango's interval, which treats pairs as independent, becomes a
  Rao-Scott style one: n / deff pairs with the discordance counts scaled alike (deff the design
  effect of the mean difference, ``evalsuite.stats.design_effect``), at Student's t(C-1) quantile.
  Pairs in singleton clusters get exactly the uncorrected interval. With very few clusters the
  two-sided interval over-covers; neither correction answers the skew of rare, concentrated losses
  (coverage and the gate's P(PASS) at the margin, measured by simulation: ``docs/statistics.md``).
  :func:`unpaired_bootstrap_ci` (shown for contrast only) gets the bootstrap's correction, with the
  smaller of the two runs' C.
- :func:`paired_test` — THE test of "no change" in compare (two-sided) and the gate (one-sided,
  "less"): exact McNemar for 0/1 scores when no two pairs share a cluster (conditional on the ``k``
  discordant pairs, the number that improved is Binomial(k, 1/2) under H0), else the cluster
  sign-flip randomization test (:func:`signflip_pvalue`: under H0 each cluster's summed
  difference is equally likely ±; exact when few clusters differ), which McNemar is a special case of.
  :func:`smallest_p` is the least p-value it can give at a sample's size (1/2^C for C clusters).
- :func:`holm` — Holm's step-down adjustment of p-values across tasks (controls the family-wise error
  rate without assuming independence between tasks).
- :func:`unpaired_bootstrap_ci` — what an analysis that ignores pairing would report (each run's
  clusters resampled independently, widened for shared clusters by the same factor as the paired
  bootstrap); shown next to the paired interval so the gain is visible.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from statistics import NormalDist
from typing import Sequence

import numpy as np

from evalsuite.stats import (N_BOOT, bootstrap_ci, cluster_factor, cluster_index, cluster_quantile, design_effect,
                             widen_around)
from evalsuite.types import SampleResult

Interval = tuple[float, float]
EXACT_SIGNFLIP = 16  # up to this many non-zero cluster sums the sign-flip test enumerates every sign vector


# ---- lining up two runs -------------------------------------------------------------------------
@dataclass
class Paired:
    """Scores of the samples two runs share, in A's file order."""

    ids: list[str]
    a: np.ndarray  # float64[n]
    b: np.ndarray  # float64[n]
    clusters: list[str]
    n_only_a: int = 0  # scored in A, absent (or errored, when not counted as wrong) in B
    n_only_b: int = 0  # scored in B, absent or errored in A
    n_b_errors_as_wrong: int = 0  # pairs where B errored and was counted as score 0
    flips: list[tuple[SampleResult, SampleResult]] = field(default_factory=list)  # (A, B) changed pairs

    @property
    def n(self) -> int:
        return len(self.ids)

    @property
    def d(self) -> np.ndarray:
        return self.b - self.a

    @property
    def binary(self) -> bool:
        """True when every score is exactly 0 or 1 (McNemar / Tango apply)."""
        both = np.concatenate([self.a, self.b])
        return bool(both.size) and bool(np.all((both == 0.0) | (both == 1.0)))

    @property
    def n_improved(self) -> int:
        return int(np.sum(self.b > self.a))

    @property
    def n_worsened(self) -> int:
        return int(np.sum(self.b < self.a))


def _scored(r: SampleResult) -> bool:
    return r.error is None and r.score is not None and not math.isnan(float(r.score))


def pair(a: Sequence[SampleResult], b: Sequence[SampleResult], *, b_errors_as_wrong: bool = False,
         a_errors_as_wrong: bool = False) -> Paired:
    """Line up sample results by id: pairs scored in both runs.

    With ``b_errors_as_wrong`` a sample that A scored and B errored on counts as score 0 for B (a
    candidate that crashes on hard inputs must not look better by dropping them); with
    ``a_errors_as_wrong`` too, A's errors count as 0 the same way. The gate sets both: with B's alone,
    two runs of one model with the same transient error rate are biased against B by about the error
    rate times the accuracy, so an A/A gate fails far more often than alpha. The cluster of a pair is A's
    ``metadata["cluster"]`` (the sample id when absent).
    """
    by_id_b = {r.id: r for r in b}
    ids: list[str] = []
    xa: list[float] = []
    xb: list[float] = []
    clusters: list[str] = []
    flips: list[tuple[SampleResult, SampleResult]] = []
    only_a = errors_as_wrong = 0
    seen: set[str] = set()
    for ra in a:
        if not _scored(ra) and not (a_errors_as_wrong and ra.error is not None):
            continue
        rb = by_id_b.get(ra.id)
        if not _scored(ra) and (rb is None or not _scored(rb)):  # errored in both (or A's alone): nothing to pair
            continue
        if rb is None or (not _scored(rb) and not (b_errors_as_wrong and rb.error is not None)):
            only_a += 1
            continue
        sa = float(ra.score) if _scored(ra) else 0.0  # type: ignore[arg-type]
        sb = float(rb.score) if _scored(rb) else 0.0
        errors_as_wrong += 0 if _scored(rb) else 1
        seen.add(ra.id)
        ids.append(ra.id)
        xa.append(sa)
        xb.append(sb)
        clusters.append(str(ra.metadata.get("cluster", ra.id)))
        if sb != xa[-1]:
            flips.append((ra, rb))
    only_b = sum(1 for r in b if _scored(r) and r.id not in seen)
    return Paired(ids, np.asarray(xa, dtype=np.float64), np.asarray(xb, dtype=np.float64), clusters,
                  n_only_a=only_a, n_only_b=only_b, n_b_errors_as_wrong=errors_as_wrong, flips=flips)


# ---- tests --------------------------------------------------------------------------------------
def binom_cdf_half(k: int, n: int) -> float:
    """P(X <= k) for X ~ Binomial(n, 1/2), exactly (integer arithmetic, one rounding at the end)."""
    if k < 0:
        return 0.0
    if k >= n:
        return 1.0
    return sum(math.comb(n, i) for i in range(k + 1)) / (1 << n)


def mcnemar_exact(n_improved: int, n_worsened: int) -> float:
    """Exact two-sided McNemar p-value from the discordant pair counts (1.0 when there are none)."""
    if n_improved < 0 or n_worsened < 0:
        raise ValueError("discordant pair counts must be >= 0")
    k = n_improved + n_worsened
    if k == 0:
        return 1.0
    return min(1.0, 2.0 * binom_cdf_half(min(n_improved, n_worsened), k))


def _signflip_null(sums: np.ndarray, n_perm: int, rng: np.random.Generator) -> tuple[np.ndarray, bool]:
    """Sign-flip null distribution of sum(sums): every sign vector when there are at most
    ``EXACT_SIGNFLIP`` non-zero cluster sums (exact), else ``n_perm`` random ones."""
    nz = sums[sums != 0.0]
    if nz.size <= EXACT_SIGNFLIP:
        grid = ((np.arange(1 << nz.size)[:, None] >> np.arange(nz.size)[None, :]) & 1) * 2.0 - 1.0  # [2^k, k]
        return grid @ nz, True
    signs = rng.choice(np.array([-1.0, 1.0]), size=(n_perm, nz.size))
    return signs @ nz, False


def signflip_pvalue(d: Sequence[float], clusters: Sequence[str], *, n_perm: int = 10000, seed: int = 0,
                    alternative: str = "two-sided") -> float:
    """Cluster sign-flip randomization p-value for H0: mean difference 0.

    ``alternative``: "two-sided", or "less" (H1: B worse than A, mean(d) < 0). Exact (every sign
    vector) when at most ``EXACT_SIGNFLIP`` clusters have a non-zero summed difference; otherwise
    Monte Carlo with the ``(1 + hits) / (1 + n_perm)`` estimate, which keeps the test valid.
    """
    if alternative not in ("two-sided", "less"):
        raise ValueError(f"alternative must be 'two-sided' or 'less', got {alternative!r}")
    x = np.asarray(d, dtype=np.float64)
    if x.size == 0 or not np.any(x):
        return 1.0
    idx, n_clusters = cluster_index(clusters)
    sums = np.bincount(idx, weights=x, minlength=n_clusters)
    observed = float(sums.sum())
    null, exact = _signflip_null(sums, n_perm, np.random.default_rng(seed))
    tol = 1e-9 * max(1.0, float(np.abs(sums).sum()))
    if alternative == "two-sided":
        hits = int(np.sum(np.abs(null) >= abs(observed) - tol))
    else:
        hits = int(np.sum(null <= observed + tol))
    return hits / null.size if exact else (1 + hits) / (1 + null.size)


def singleton_clusters(p: Paired) -> bool:
    """True when no two pairs share a cluster (every pair is its own source)."""
    return len(set(p.clusters)) == p.n


def paired_test(p: Paired, *, alternative: str = "two-sided", n_perm: int = 10000, seed: int = 0) -> tuple[str, float]:
    """(name, p-value) of the paired test of H0: no change, used by both compare and the gate.

    0/1 scores with no shared clusters: exact McNemar (one-sided for "less": P(X <= improved) with
    X ~ Binomial(discordant, 1/2)). Otherwise the cluster sign-flip test, which for 0/1 scores
    in singleton clusters is the same test; with shared clusters it stays valid where McNemar,
    which treats pairs as independent, would reject too often.
    """
    if p.binary and singleton_clusters(p):
        if alternative == "two-sided":
            return "mcnemar-exact", mcnemar_exact(p.n_improved, p.n_worsened)
        k = p.n_improved + p.n_worsened
        return "mcnemar-exact", (binom_cdf_half(p.n_improved, k) if k else 1.0)
    return "cluster-signflip", signflip_pvalue(p.d, p.clusters, n_perm=n_perm, seed=seed, alternative=alternative)


def smallest_p(p: Paired) -> float:
    """The smallest one-sided ("less") p-value :func:`paired_test` can give pairs in these clusters,
    whatever their scores: exact McNemar, every pair worse, 1/2^n; the sign-flip test, every cluster
    worse, 1/2^C (exact enumeration up to ``EXACT_SIGNFLIP`` clusters; beyond it, outcomes with that
    many non-zero clusters reach 1/2^EXACT_SIGNFLIP). With few clusters this is large (5 clusters:
    1/32), and no outcome, not even every answer lost, is significant below it."""
    if p.n == 0:
        return 1.0
    if p.binary and singleton_clusters(p):
        return 0.5 ** p.n
    return 0.5 ** min(cluster_index(p.clusters)[1], EXACT_SIGNFLIP)


def holm(pvalues: Sequence[float | None]) -> list[float | None]:
    """Holm step-down adjusted p-values (None entries are not tests and stay None)."""
    present = [(p, i) for i, p in enumerate(pvalues) if p is not None]
    m = len(present)
    out: list[float | None] = [None] * len(pvalues)
    running = 0.0
    for rank, (p, i) in enumerate(sorted(present)):
        running = max(running, min(1.0, (m - rank) * p))
        out[i] = running
    return out


# ---- intervals ----------------------------------------------------------------------------------
def paired_bootstrap_ci(p: Paired, *, level: float = 0.95, n_boot: int = N_BOOT, seed: int = 0) -> Interval | None:
    """Percentile CI of mean(B - A), resampling clusters of pairs."""
    return bootstrap_ci(p.d, p.clusters, level=level, n_boot=n_boot, seed=seed)


def _cluster_boot_means(x: np.ndarray, clusters: Sequence[str], n_boot: int, rng: np.random.Generator) -> np.ndarray:
    idx, c = cluster_index(clusters)
    sums = np.bincount(idx, weights=x, minlength=c)
    counts = np.bincount(idx, minlength=c).astype(np.float64)
    w = rng.multinomial(c, np.full(c, 1.0 / c), size=n_boot)  # [B, C]
    return (w @ sums) / np.maximum(w @ counts, 1.0)


def unpaired_bootstrap_ci(a: Sequence[float], b: Sequence[float], clusters_a: Sequence[str],
                          clusters_b: Sequence[str], *, level: float = 0.95, n_boot: int = N_BOOT,
                          seed: int = 0) -> Interval | None:
    """CI of mean(B) - mean(A) as an analysis that ignores pairing reports it: each run's clusters
    resampled independently, the percentile interval of the difference.

    When a run's samples share clusters, both runs' bootstrap deviations are widened by the factor
    ``evalsuite.stats.bootstrap_ci`` uses, sqrt(C/(C-1)) t(C-1)/z, with C the smaller cluster count
    of the runs that share clusters; scaling both deviations alike is moving the difference's
    percentile bounds from the observed difference by that factor (``widen_around``). The smaller
    C because the difference's variance is no better known than that of its less replicated side
    (Welch's df is never below min(C_A, C_B) - 1, so this errs on the wide side); and compare shows
    it beside the paired interval of the same C clusters, widened by that same factor, so the two
    widths differ by what pairing removes, not by a df convention. A run in singleton clusters
    adds no correction (as ``bootstrap_ci``); both in singletons: the plain percentile interval.
    Clipped to [-1, 1] for scores in [0, 1], as ``paired_interval``.

    None where the bootstrap cannot estimate it: a run with fewer than 2 clusters (every resample
    is the same data, so the "interval" is the observed difference, [-60, -60] at n=5), or every
    resample giving the same difference (scores constant within each run). A zero-width interval
    there would read as certainty, narrower than the paired one it is shown beside."""
    xa, xb = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if xa.size == 0 or xb.size == 0:
        return None
    ca, cb = cluster_index(clusters_a)[1], cluster_index(clusters_b)[1]
    if ca < 2 or cb < 2:
        return None
    rng = np.random.default_rng(seed)
    diffs = _cluster_boot_means(xb, clusters_b, n_boot, rng) - _cluster_boot_means(xa, clusters_a, n_boot, rng)
    alpha = (1.0 - level) / 2.0
    lo, hi = np.quantile(diffs, [alpha, 1.0 - alpha])
    if not hi > lo:
        return None
    shared = [c for c, n in ((ca, xa.size), (cb, xb.size)) if c < n]
    if shared:
        lo, hi = widen_around(float(xb.mean() - xa.mean()), float(lo), float(hi), cluster_factor(level, min(shared)))
        if np.all((xa >= 0.0) & (xa <= 1.0)) and np.all((xb >= 0.0) & (xb <= 1.0)):
            lo, hi = max(-1.0, lo), min(1.0, hi)
    return (float(lo), float(hi))


def tango_z(n_improved: int, n_worsened: int, n: int, delta0: float) -> float:
    """Tango's score statistic for H0: p(B right, A wrong) - p(A right, B wrong) = delta0."""
    x, y = n_improved, n_worsened
    # Constrained MLE of p_worsened given p_improved = p_worsened + delta0 (root of a quadratic).
    bq = (x + y) + (x - y) * delta0 - 2 * n * delta0
    cq = y * delta0 * (1.0 - delta0)
    p10 = (bq + math.sqrt(max(bq * bq + 8.0 * n * cq, 0.0))) / (4.0 * n)
    var = n * (2.0 * p10 + delta0 * (1.0 - delta0))
    num = x - y - n * delta0
    if var <= 1e-300:
        return 0.0 if abs(num) < 1e-12 else math.copysign(math.inf, num)
    return num / math.sqrt(var)


def tango_ci(n_improved: int, n_worsened: int, n: int, *, level: float = 0.95) -> Interval | None:
    """Tango's score CI for the paired difference of proportions (B - A); None when n == 0."""
    if n <= 0:
        return None
    if n_improved + n_worsened > n:
        raise ValueError("more discordant pairs than pairs")
    return _tango_bounds(n_improved, n_worsened, n, NormalDist().inv_cdf(0.5 + level / 2.0))


def _tango_bounds(n_improved: float, n_worsened: float, n: float, z: float) -> Interval:
    """Tango's interval at quantile ``z``; counts and n may be fractional (design-effect scaled)."""

    def root(target: float) -> float:  # tango_z is decreasing in delta0: bisection on (-1, 1)
        lo, hi = -1.0 + 1e-12, 1.0 - 1e-12
        if tango_z(n_improved, n_worsened, n, lo) <= target:
            return -1.0
        if tango_z(n_improved, n_worsened, n, hi) >= target:
            return 1.0
        for _ in range(100):
            mid = 0.5 * (lo + hi)
            if tango_z(n_improved, n_worsened, n, mid) > target:
                lo = mid
            else:
                hi = mid
        return 0.5 * (lo + hi)

    return (root(z), root(-z))


def paired_interval(p: Paired, *, level: float = 0.95, n_boot: int = N_BOOT, seed: int = 0) -> tuple[Interval, str]:
    """(interval of mean(B - A), method): the one interval that compare, the gate and the leaderboard show.

    Scores in [0, 1]: the hull of the paired cluster bootstrap (which carries the clustering) and
    Tango's score interval on the discordance counts (which stays honest at the boundary, where the
    bootstrap collapses to a point: nothing changed in 30 pairs gives [0, 0] by bootstrap, about
    ±12 points by Tango). For scores that are not 0/1 the counts are fractional: the sum of the
    positive and of the negative differences. A difference d in [-1, 1] has at most the second
    moment |d| of a -1/0/+1 outcome with P(+1) = max(d, 0), P(-1) = max(-d, 0), so this is the
    interval of a trinomial that is at least as variable as the data. Other scores: the bootstrap.

    Pairs sharing clusters (C clusters, fewer than the n pairs): the bootstrap's bounds are moved from
    the mean by sqrt(C/(C-1)) t(C-1)/z, and Tango's interval is taken on n / deff pairs, both counts
    divided by deff alike, at the t(C-1) quantile. deff = CR1 variance of mean(d) over the
    variance Tango assumes per pair at the estimate, ((x + y)/n - mean(d)^2) / (n - 1), clipped at
    >= 1 (for 0/1 scores: Kish's design effect of d). The hull is clipped to [-1, 1], and the
    method string names the clusters, deff and df. With no discordant pair, or every pair changed
    alike, there is no variance to estimate the clustering from: plain Tango, as for independent
    pairs (too narrow if changes,
    had there been any, would come in clusters: a limit of what the data can show).
    """
    if p.n == 0:
        raise ValueError("no paired samples")
    boot = paired_bootstrap_ci(p, level=level, n_boot=n_boot, seed=seed)
    assert boot is not None
    both = np.concatenate([p.a, p.b])
    if not (np.all(both >= 0.0) and np.all(both <= 1.0)):
        return boot, "paired cluster bootstrap"
    d = p.d
    x, y = float(np.clip(d, 0.0, None).sum()), float(np.clip(-d, 0.0, None).sum())
    n_clusters = cluster_index(p.clusters)[1]
    mean_d = float(d.mean())
    unit = (x + y) / p.n - mean_d * mean_d  # Tango's variance per pair at the estimate
    if n_clusters == p.n or not unit > 0.0:  # independent pairs, or no variance (nothing changed, or every
        # pair changed alike) to estimate the clustering from: plain Tango, as mean_ci's plain Wilson
        t = tango_ci(x, y, p.n, level=level)
        assert t is not None
        return (min(boot[0], t[0]), max(boot[1], t[1])), "hull of paired cluster bootstrap and Tango score interval"
    # Shared clusters: Tango on n / deff pairs (counts alike) at the t(C-1) quantile. Tango's variance
    # per pair at the estimate is that of the trinomial (x + y) / n - mean(d)^2.
    deff = design_effect(d, p.clusters, unit_variance=unit)
    t = _tango_bounds(x / deff, y / deff, p.n / deff, cluster_quantile(level, n_clusters))
    return ((max(-1.0, min(boot[0], t[0])), min(1.0, max(boot[1], t[1]))),
            f"hull of paired cluster bootstrap and Tango score interval, corrected for {n_clusters} shared "
            f"clusters (design effect {deff:.2f}, t quantile with {n_clusters - 1} df)")


# ---- one summary --------------------------------------------------------------------------------
@dataclass
class PairedDiff:
    """Paired comparison of one task: B - A on the shared samples."""

    n: int
    n_clusters: int
    mean_a: float
    mean_b: float
    delta: float
    ci: Interval | None  # paired_interval
    ci_unpaired: Interval | None
    n_improved: int
    n_worsened: int
    binary: bool
    test: str  # "mcnemar-exact" or "cluster-signflip"
    p_value: float
    ci_method: str = ""

    def to_dict(self) -> dict[str, object]:
        return dict(self.__dict__)


def paired_diff(p: Paired, *, level: float = 0.95, n_boot: int = N_BOOT, seed: int = 0) -> PairedDiff:
    """Delta, paired and unpaired CIs, and the two-sided test appropriate to the score type."""
    if p.n == 0:
        raise ValueError("no paired samples to compare")
    test, pv = paired_test(p, seed=seed)
    ci, method = paired_interval(p, level=level, n_boot=n_boot, seed=seed)
    return PairedDiff(
        n=p.n, n_clusters=cluster_index(p.clusters)[1], mean_a=float(p.a.mean()), mean_b=float(p.b.mean()),
        delta=float(p.d.mean()), ci=ci,
        ci_unpaired=unpaired_bootstrap_ci(p.a, p.b, p.clusters, p.clusters, level=level, n_boot=n_boot, seed=seed),
        n_improved=p.n_improved, n_worsened=p.n_worsened, binary=p.binary, test=test, p_value=pv, ci_method=method,
    )


__all__ = [
    "Paired", "PairedDiff", "pair", "paired_diff", "binom_cdf_half", "mcnemar_exact", "signflip_pvalue", "holm",
    "paired_bootstrap_ci", "unpaired_bootstrap_ci", "tango_z", "tango_ci", "paired_interval", "paired_test",
    "singleton_clusters", "smallest_p",
]
