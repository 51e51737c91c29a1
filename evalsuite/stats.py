"""Uncertainty for metrics: cluster bootstrap and Wilson score confidence intervals, corrected for clustering.

Samples that share a source (several questions about one video, document or audio clip) are not
independent; resampling single samples would make intervals too narrow. ``bootstrap_ci`` resamples
whole clusters (a cluster is ``Sample.metadata["cluster"]``, defaulting to the sample id). The seed
is fixed, so the same results give the same interval on every machine.

At the boundary the bootstrap claims certainty: 50 right answers out of 50 resample to [1, 1]
every time. ``mean_ci`` therefore reports, for a mean of scores in [0, 1], the hull of the cluster
bootstrap (which carries the clustering) and the Wilson score interval (which keeps its coverage at
0 and 1: 50/50 gives [0.929, 1]). For fractional scores the Wilson "successes" are the sum of the
scores; a score s in [0, 1] varies no more than a Bernoulli(s), so this errs on the wide side.

Clustering (some cluster holds more than one sample). Questions about one source move together: a
percentile cluster bootstrap lacks the C/(C-1) small-sample factor and uses a normal quantile where
only C - 1 degrees of freedom back the variance (7 to 25 clusters is common), and Wilson counts
every question as independent. So, when clusters are shared:

- ``bootstrap_ci`` widens the percentile interval around the mean by sqrt(C/(C-1)) * t(C-1) / z
  (C clusters, t(C-1) Student's quantile at the interval's level, z the normal one), and
  ``bootstrap_stat_ci`` (non-mean metrics) around the statistic's estimate by the same factor
  (clipped to the statistic's range where the caller gives it: the runner's accuracies to [0, 1]);
- ``mean_ci``'s Wilson half is a Rao-Scott style Wilson interval: effective sample size n / deff
  (successes scaled alike), ``design_effect`` deff = cluster-robust variance of the mean (with the
  C/(C-1) factor) over the iid variance, clipped at >= 1, and the t(C-1) quantile in place of z.
  For fractional scores deff is taken against the Bernoulli variance p(1 - p) Wilson assumes, so
  the clustering widens it only past that. All right or all wrong (50/50 in 5 clusters of 10)
  leaves nothing to estimate the clustering from: the plain Wilson interval, [0.929, 1] (too
  narrow if the clusters are in fact correlated, a limit of what the data can show). Scores in a
  single cluster that do vary: deff = n, one independent unit.

With every cluster a singleton (independent samples) no correction applies: the intervals are
exactly those of the plain bootstrap and Wilson. With few clusters that are not correlated the
correction over-covers (8 clusters cannot show the absence of correlation); near the boundary with
rare bad clusters a sample that misses them shows neither the loss nor the variance, and stays
short; so does a statistic skewed the same way (an F1 over 10 strongly correlated clusters: a
scale factor widens it but does not move it). Coverage measured by simulation: ``docs/statistics.md``.
"""

from __future__ import annotations

import math
from statistics import NormalDist
from typing import Callable, Sequence

import numpy as np

N_BOOT = 2000


def cluster_index(clusters: Sequence[str]) -> tuple[np.ndarray, int]:
    """Map cluster labels to 0..C-1 (in order of first appearance)."""
    ids: dict[str, int] = {}
    out = np.empty(len(clusters), dtype=np.int64)
    for i, c in enumerate(clusters):
        out[i] = ids.setdefault(str(c), len(ids))
    return out, len(ids)


def bootstrap_ci(
    values: Sequence[float],
    clusters: Sequence[str] | None = None,
    *,
    level: float = 0.95,
    n_boot: int = N_BOOT,
    seed: int = 0,
) -> tuple[float, float] | None:
    """Percentile bootstrap CI of the mean of ``values``, resampling clusters. None when empty.

    When some cluster holds more than one value, the percentile bounds are moved away from the
    mean by sqrt(C/(C-1)) * t(C-1)/z (C clusters, ``cluster_factor``): the CR1 small-sample factor
    and Student's quantile on C - 1 df, without which few clusters undercover (``widen_around``).
    The interval is not clipped (the values' range is unknown here; ``mean_ci`` clips scores in
    [0, 1])."""
    x = np.asarray(values, dtype=np.float64)
    if x.size == 0:
        return None
    if x.size == 1:
        return (float(x[0]), float(x[0]))
    labels = list(clusters) if clusters is not None else [str(i) for i in range(x.size)]
    idx, n_clusters = cluster_index(labels)
    sums = np.bincount(idx, weights=x, minlength=n_clusters)
    counts = np.bincount(idx, minlength=n_clusters).astype(np.float64)
    rng = np.random.default_rng(seed)
    # Each bootstrap replicate draws n_clusters clusters with replacement; the replicate's mean is
    # (sum of their sums) / (sum of their counts), via a multinomial weight per cluster.
    weights = rng.multinomial(n_clusters, np.full(n_clusters, 1.0 / n_clusters), size=n_boot)  # [B, C]
    means = (weights @ sums) / np.maximum(weights @ counts, 1.0)
    alpha = (1.0 - level) / 2.0
    lo, hi = np.quantile(means, [alpha, 1.0 - alpha])
    if 2 <= n_clusters < x.size:  # shared clusters: small-C factor and t(C-1) quantile, around the mean
        lo, hi = widen_around(float(x.mean()), float(lo), float(hi), cluster_factor(level, n_clusters))
    return (float(lo), float(hi))


def _z(level: float) -> float:
    return NormalDist().inv_cdf(0.5 + level / 2.0)


def cluster_factor(level: float, n_clusters: int) -> float:
    """How far a percentile cluster bootstrap's bounds move from the estimate when ``n_clusters``
    clusters are shared: sqrt(C/(C-1)) (the CR1 small-sample factor) * t(C-1)/z (Student's quantile
    on C - 1 df over the normal one). 1.0 below 2 clusters."""
    if n_clusters < 2:
        return 1.0
    return math.sqrt(n_clusters / (n_clusters - 1)) * cluster_quantile(level, n_clusters) / _z(level)


def widen_around(estimate: float, lo: float, hi: float, k: float) -> tuple[float, float]:
    """Move the bounds of ``[lo, hi]`` away from ``estimate`` by ``k`` (>= 1): ``estimate - k (estimate - lo)``
    and ``estimate + k (hi - estimate)``. A bound on the wrong side of the estimate (a bootstrap
    distribution shifted off the estimate, as a biased statistic's can be) counts as distance 0: the
    interval is that of the hull of the estimate and ``[lo, hi]``, so it holds both the estimate and
    the percentile interval, where scaling the signed distance would push the interval further
    from the estimate. With ``lo <= estimate <= hi`` this is the plain scaling."""
    return (estimate - k * max(estimate - lo, 0.0), estimate + k * max(hi - estimate, 0.0))


def cluster_quantile(level: float, n_clusters: int) -> float:
    """Two-sided quantile for an interval whose variance rests on ``n_clusters`` cluster totals:
    Student's t with C - 1 degrees of freedom (the normal quantile when C < 2, where no df remain)."""
    if n_clusters < 2:
        return _z(level)
    from scipy.special import stdtrit  # lazy: only clustered data pay for the import

    return float(stdtrit(n_clusters - 1, 0.5 + level / 2.0))


def cluster_robust_variance(values: Sequence[float], clusters: Sequence[str]) -> float:
    """Cluster-robust (CR1) variance of the mean: C/(C-1) * sum_c (S_c - n_c * mean)^2 / n^2, with S_c
    and n_c the sum and the size of cluster c. NaN with fewer than 2 clusters."""
    x = np.asarray(values, dtype=np.float64)
    idx, n_clusters = cluster_index(clusters)
    if n_clusters < 2:
        return math.nan
    m = float(x.mean())
    sums = np.bincount(idx, weights=x, minlength=n_clusters)
    counts = np.bincount(idx, minlength=n_clusters).astype(np.float64)
    return n_clusters / (n_clusters - 1) * float(np.sum((sums - counts * m) ** 2)) / (x.size * x.size)


def design_effect(values: Sequence[float], clusters: Sequence[str] | None = None, *,
                  unit_variance: float | None = None) -> float:
    """Design effect of the mean: cluster-robust variance / iid variance, clipped at >= 1.

    The iid variance is ``unit_variance / (n - 1)``; ``unit_variance`` defaults to the values' own
    variance sum((x - mean)^2) / n, which makes this Kish's deff = CR1 variance / (s^2 / n) (with
    s^2 the unbiased variance). A score interval that assumes a larger per-sample variance (Wilson's
    p(1 - p), which a fractional score in [0, 1] never exceeds) passes it, and gets the inflation of
    *its* variance that the clustering calls for. 1.0 when every cluster is a singleton (nothing to
    correct: exactly 1 by construction), when the values do not vary (nothing to estimate from), or
    for fewer than 2 values; n when all values share one cluster and vary (one independent unit).
    """
    x = np.asarray(values, dtype=np.float64)
    n = x.size
    labels = list(clusters) if clusters is not None else [str(i) for i in range(n)]
    if n < 2:
        return 1.0
    n_clusters = cluster_index(labels)[1]
    if n_clusters == n:
        return 1.0
    if unit_variance is None:
        unit_variance = float(np.sum((x - x.mean()) ** 2)) / n
    if not unit_variance > 0.0:
        return 1.0
    if n_clusters < 2:
        return float(n)
    return max(1.0, cluster_robust_variance(x, labels) * (n - 1) / unit_variance)


def _wilson(phat: float, n: float, z: float) -> tuple[float, float]:
    denom = 1.0 + z * z / n
    centre = (phat + z * z / (2 * n)) / denom
    half = z * math.sqrt(phat * (1.0 - phat) / n + z * z / (4.0 * n * n)) / denom
    return (max(0.0, centre - half), min(1.0, centre + half))


def wilson_ci(successes: float, n: int, *, level: float = 0.95) -> tuple[float, float] | None:
    """Wilson score interval of a proportion ``successes / n``; None when n == 0."""
    if n <= 0:
        return None
    if not 0.0 <= successes <= n:
        raise ValueError(f"successes must be in [0, n], got {successes} of {n}")
    return _wilson(successes / n, n, _z(level))


def mean_ci(values: Sequence[float], clusters: Sequence[str] | None = None, *, level: float = 0.95,
            n_boot: int = N_BOOT, seed: int = 0) -> tuple[float, float] | None:
    """CI of the mean of ``values``: hull of cluster bootstrap and Wilson for values in [0, 1],
    the cluster bootstrap alone otherwise. None when empty.

    With shared clusters both are corrected (module docstring): the bootstrap by
    sqrt(C/(C-1)) * t(C-1)/z, Wilson to n / deff effective samples at the t(C-1) quantile; the hull
    is clipped to [0, 1]. With singleton clusters: the plain bootstrap and Wilson, as ever; all
    right or all wrong: plain Wilson (no variance to estimate the clustering from)."""
    boot = bootstrap_ci(values, clusters, level=level, n_boot=n_boot, seed=seed)
    x = np.asarray(values, dtype=np.float64)
    if boot is None or not (np.all(x >= 0.0) and np.all(x <= 1.0)):
        return boot
    labels = list(clusters) if clusters is not None else [str(i) for i in range(x.size)]
    n_clusters = cluster_index(labels)[1]
    phat = min(float(x.mean()), 1.0)
    if n_clusters == x.size or not 0.0 < phat < 1.0:  # independent samples, or no variance: plain Wilson
        w = wilson_ci(float(min(x.sum(), x.size)), int(x.size), level=level)
        assert w is not None
        return (min(boot[0], w[0]), max(boot[1], w[1]))
    deff = design_effect(x, labels, unit_variance=phat * (1.0 - phat))
    w = _wilson(phat, x.size / deff, cluster_quantile(level, n_clusters))
    return (max(0.0, min(boot[0], w[0])), min(1.0, max(boot[1], w[1])))


def bootstrap_stat_ci(
    rows: Sequence[object],
    stat: Callable[[list[object]], float],
    clusters: Sequence[str],
    *,
    level: float = 0.95,
    n_boot: int = 500,
    seed: int = 0,
    bounds: tuple[float, float] | None = None,
) -> tuple[float, float] | None:
    """Percentile cluster bootstrap CI of an arbitrary statistic over rows (for non-mean metrics).

    None when there are no rows or every replicate is NaN (replicates where the statistic is NaN
    are left out). With shared clusters (2 <= C < number of rows) the percentile bounds are moved
    away from the estimate ``stat(rows)`` by sqrt(C/(C-1)) * t(C-1)/z, as ``bootstrap_ci`` moves
    them from the mean (``widen_around``: a percentile bound on the far side of the estimate counts
    as distance 0, so the interval holds the estimate); None there when the estimate is NaN (no
    point to widen around). ``bounds``: the statistic's range when the caller knows it (an accuracy:
    (0, 1)); the interval is clipped to it, as ``mean_ci`` clips a mean of scores in [0, 1];
    unclipped without it, as ``bootstrap_ci`` (the range of an arbitrary statistic is unknown here).
    Singleton clusters: the plain percentile interval, whatever the estimate (its bounds are values
    of replicates, inside the statistic's range already)."""
    if not rows:
        return None
    idx, n_clusters = cluster_index(clusters)
    members: list[list[int]] = [[] for _ in range(n_clusters)]
    for i, c in enumerate(idx):
        members[c].append(i)
    rng = np.random.default_rng(seed)
    vals = []
    for _ in range(n_boot):
        pick = rng.integers(0, n_clusters, size=n_clusters)
        sample = [rows[i] for c in pick for i in members[c]]
        v = stat(sample)
        if not math.isnan(v):
            vals.append(v)
    if not vals:
        return None
    alpha = (1.0 - level) / 2.0
    lo, hi = np.quantile(np.asarray(vals), [alpha, 1.0 - alpha])
    if 2 <= n_clusters < len(rows):  # shared clusters: small-C factor and t(C-1) quantile, around the estimate
        estimate = float(stat(list(rows)))
        if math.isnan(estimate):
            return None
        lo, hi = widen_around(estimate, float(lo), float(hi), cluster_factor(level, n_clusters))
    if bounds is not None:
        lo, hi = max(bounds[0], lo), min(bounds[1], hi)
    return (float(lo), float(hi))


# ---- formatting (shared by the text tables and the pages) ----------------------------------------
def points(x: float | None, signed: bool = True) -> str:
    """A score difference in percentage points."""
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "–"
    return f"{100 * x:+.1f}" if signed else f"{100 * x:.1f}"


def speed_bounds(e: dict[str, object]) -> str:
    """A gated efficiency figure's speed-ratio interval (``lower``/``upper``), "–" with one run per side."""
    lo, hi = e.get("lower"), e.get("upper")
    ok = all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in (lo, hi))
    return f"[{lo:.3f}x, {hi:.3f}x]" if ok else "–"


def fmt_p(p: float | None) -> str:
    """A p-value: three decimals, or two significant digits below 0.001."""
    if p is None:
        return "–"
    return f"{p:.2g}" if p < 0.001 else f"{p:.3f}"
