"""Uncertainty for metrics: cluster bootstrap and Wilson score confidence intervals.

Samples that share a source (several questions about one video, document or audio clip) are not
independent; resampling single samples would make intervals too narrow. ``bootstrap_ci`` resamples
whole clusters (a cluster is ``Sample.metadata["cluster"]``, defaulting to the sample id). The seed
is fixed, so the same results give the same interval on every machine.

At the boundary the bootstrap claims certainty: 50 right answers out of 50 resample to [1, 1]
every time. ``mean_ci`` therefore reports, for a mean of scores in [0, 1], the hull of the cluster
bootstrap (which carries the clustering) and the Wilson score interval (which keeps its coverage at
0 and 1: 50/50 gives [0.929, 1]). For fractional scores the Wilson "successes" are the sum of the
scores; a score s in [0, 1] varies no more than a Bernoulli(s), so this errs on the wide side.
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
    """Percentile bootstrap CI of the mean of ``values``, resampling clusters. None when empty."""
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
    return (float(lo), float(hi))


def wilson_ci(successes: float, n: int, *, level: float = 0.95) -> tuple[float, float] | None:
    """Wilson score interval of a proportion ``successes / n``; None when n == 0."""
    if n <= 0:
        return None
    if not 0.0 <= successes <= n:
        raise ValueError(f"successes must be in [0, n], got {successes} of {n}")
    z = NormalDist().inv_cdf(0.5 + level / 2.0)
    phat = successes / n
    denom = 1.0 + z * z / n
    centre = (phat + z * z / (2 * n)) / denom
    half = z * math.sqrt(phat * (1.0 - phat) / n + z * z / (4.0 * n * n)) / denom
    return (max(0.0, centre - half), min(1.0, centre + half))


def mean_ci(values: Sequence[float], clusters: Sequence[str] | None = None, *, level: float = 0.95,
            n_boot: int = N_BOOT, seed: int = 0) -> tuple[float, float] | None:
    """CI of the mean of ``values``: hull of cluster bootstrap and Wilson for values in [0, 1],
    the cluster bootstrap alone otherwise. None when empty."""
    boot = bootstrap_ci(values, clusters, level=level, n_boot=n_boot, seed=seed)
    x = np.asarray(values, dtype=np.float64)
    if boot is None or not (np.all(x >= 0.0) and np.all(x <= 1.0)):
        return boot
    w = wilson_ci(float(min(x.sum(), x.size)), int(x.size), level=level)
    assert w is not None
    return (min(boot[0], w[0]), max(boot[1], w[1]))


def bootstrap_stat_ci(
    rows: Sequence[object],
    stat: Callable[[list[object]], float],
    clusters: Sequence[str],
    *,
    level: float = 0.95,
    n_boot: int = 500,
    seed: int = 0,
) -> tuple[float, float] | None:
    """Cluster bootstrap CI of an arbitrary statistic over rows (for non-mean metrics)."""
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
