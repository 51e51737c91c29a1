import math
from statistics import NormalDist

import numpy as np
import pytest

from evalsuite.stats import (bootstrap_ci, bootstrap_stat_ci, cluster_quantile, cluster_robust_variance,
                             design_effect, mean_ci, wilson_ci)


def test_constant_scores_give_a_point_interval():
    assert bootstrap_ci([1.0] * 50) == (1.0, 1.0)
    assert bootstrap_ci([]) is None


def test_interval_covers_mean_and_matches_binomial_width():
    rng = np.random.default_rng(1)
    x = (rng.random(400) < 0.7).astype(float)
    lo, hi = bootstrap_ci(x)
    m = x.mean()
    se = np.sqrt(m * (1 - m) / len(x))
    print(lo, hi, m, se)
    assert lo < m < hi
    # Percentile bootstrap of a mean ~ normal interval: half-width close to 1.96 SE.
    assert abs((hi - lo) / 2 - 1.96 * se) < 0.25 * 1.96 * se


def test_clusters_widen_the_interval_when_samples_share_a_source():
    # 40 documents, 10 questions each, all answered alike within a document.
    doc_ok = (np.arange(40) % 3 != 0).astype(float)
    x = np.repeat(doc_ok, 10)
    clusters = [f"d{i}" for i in np.repeat(np.arange(40), 10)]
    naive = bootstrap_ci(x)
    clustered = bootstrap_ci(x, clusters)
    print(naive, clustered)
    assert (clustered[1] - clustered[0]) > 2.0 * (naive[1] - naive[0])


def test_generic_statistic_matches_mean_path():
    x = [1.0, 0.0, 1.0, 1.0, 0.0, 1.0, 1.0, 0.0] * 10
    ids = [str(i) for i in range(len(x))]
    a = bootstrap_stat_ci(x, lambda rows: float(np.mean(rows)), ids, n_boot=2000)
    b = bootstrap_ci(x, n_boot=2000)
    assert abs(a[0] - b[0]) < 0.05 and abs(a[1] - b[1]) < 0.05


def test_wilson_endpoints_solve_the_score_equation():
    z = NormalDist().inv_cdf(0.975)
    for k, n in [(0, 50), (50, 50), (13, 40), (1, 3), (7.5, 20)]:
        lo, hi = wilson_ci(k, n)
        phat = k / n
        for p in (lo, hi):
            if 0.0 < p < 1.0:  # (phat - p)^2 = z^2 p (1 - p) / n at both ends
                assert (phat - p) ** 2 == pytest.approx(z * z * p * (1 - p) / n, rel=1e-9)
    assert wilson_ci(50, 50)[1] == 1.0 and wilson_ci(0, 50)[0] == 0.0
    assert wilson_ci(0, 0) is None
    with pytest.raises(ValueError):
        wilson_ci(6, 5)


def test_all_right_in_shared_clusters_is_plain_wilson():
    # No variance: nothing to estimate the clustering from, so the interval is Wilson's, as for independent samples.
    clusters = [f"v{i // 10}" for i in range(50)]
    assert mean_ci([1.0] * 50, clusters) == mean_ci([1.0] * 50) == (pytest.approx(0.9286524008666414), 1.0)
    assert mean_ci([0.0] * 50, clusters) == mean_ci([0.0] * 50)
    # One wrong answer: estimated (deff 1 here), at t(4): lower than the iid Wilson's 0.895.
    lo, hi = mean_ci([1.0] * 49 + [0.0], clusters)
    assert lo < wilson_ci(49, 50)[0] - 0.03 and hi == pytest.approx(1.0, abs=0.01)


def test_all_right_does_not_claim_certainty():
    # 50/50 right: the bootstrap says [1, 1]; the reported interval is Wilson's [0.929, 1].
    lo, hi = mean_ci([1.0] * 50)
    assert lo == pytest.approx(50 / (50 + NormalDist().inv_cdf(0.975) ** 2)) and hi == 1.0
    assert 0.92 < lo < 0.93
    lo0, hi0 = mean_ci([0.0] * 50)
    assert lo0 == 0.0 and 0.07 < hi0 < 0.08


def test_mean_ci_keeps_the_cluster_width_and_leaves_unbounded_scores_to_the_bootstrap():
    doc_ok = (np.arange(40) % 3 != 0).astype(float)
    x = np.repeat(doc_ok, 10)
    clusters = [f"d{i}" for i in np.repeat(np.arange(40), 10)]
    # Answers identical within a document: deff = (n - 1) / (C - 1) = 399 / 39, so Wilson counts ~39
    # effective samples (the 40 documents), not 400, at Student's t with 39 df.
    assert design_effect(x, clusters) == pytest.approx(399 / 39, rel=1e-12)
    phat = float(x.mean())
    z = cluster_quantile(0.95, 40)
    n_eff = 400 / (399 / 39)
    centre = (phat + z * z / (2 * n_eff)) / (1 + z * z / n_eff)
    half = z * math.sqrt(phat * (1 - phat) / n_eff + z * z / (4 * n_eff**2)) / (1 + z * z / n_eff)
    boot = bootstrap_ci(x, clusters)
    lo, hi = mean_ci(x, clusters)
    assert lo == pytest.approx(min(boot[0], centre - half)) and hi == pytest.approx(max(boot[1], centre + half))
    naive = wilson_ci(x.sum(), 400)
    assert hi - lo > 2.9 * (naive[1] - naive[0])  # ~sqrt(10) times the iid Wilson interval
    y = [2.0, 4.0, 4.0, 6.0]
    assert mean_ci(y) == bootstrap_ci(y)


# ---- clustering: design effect and small-number-of-clusters corrections ---------------------------
def test_design_effect_by_hand():
    # Clusters a = (1, 1), b = (0, 0), c = (1, 0); mean 0.5, sum of squares 1.5.
    # Cluster sums minus size * mean: 1, -1, 0 -> CR1 variance 3/2 * 2 / 36 = 1/12.
    # iid variance s^2 / n = (1.5 / 5) / 6 = 0.05.  deff = (1/12) / 0.05 = 5/3.
    x = [1.0, 1.0, 0.0, 0.0, 1.0, 0.0]
    cl = ["a", "a", "b", "b", "c", "c"]
    assert cluster_robust_variance(x, cl) == pytest.approx(1 / 12, rel=1e-12)
    assert design_effect(x, cl) == pytest.approx(5 / 3, rel=1e-12)
    # A score interval assuming per-sample variance 0.3 instead of 0.25 needs less inflation: 5/3 * 0.25 / 0.3.
    assert design_effect(x, cl, unit_variance=0.3) == pytest.approx(25 / 18, rel=1e-12)
    assert design_effect(x, cl, unit_variance=1.0) == 1.0  # clipped: never narrower than iid
    # Singletons (or no clusters): exactly 1. Constant values: 1 (nothing to estimate). One cluster: n.
    assert design_effect(x) == 1.0 and design_effect(x, [str(i) for i in range(6)]) == 1.0
    assert design_effect([1.0] * 6, cl) == 1.0
    assert design_effect(x, ["v"] * 6) == 6.0
    # Eight videos of eight questions (right per video: 8, 2, 8, 8, 7, 8, 7, 8; mean 0.875): sums minus 7 are
    # 1, -5, 1, 1, 0, 1, 0, 1 (squares sum to 30), so deff = 8/7 * 30 / 64^2 * 63 / (0.875 * 0.125) = 135/28.
    xv = np.concatenate([np.r_[np.ones(k), np.zeros(8 - k)] for k in (8, 2, 8, 8, 7, 8, 7, 8)])
    clv = [f"v{c}" for c in np.repeat(np.arange(8), 8)]
    assert design_effect(xv, clv) == pytest.approx(135 / 28, rel=1e-12)


def test_cluster_quantile_is_student_t_on_c_minus_1_df():
    assert cluster_quantile(0.95, 3) == pytest.approx(4.302652729911275, rel=1e-9)  # t(2), 97.5%
    assert cluster_quantile(0.90, 25) == pytest.approx(1.7108820799094275, rel=1e-9)  # t(24), 95%
    assert cluster_quantile(0.95, 1) == pytest.approx(NormalDist().inv_cdf(0.975))


def test_singleton_clusters_give_the_same_intervals_as_before():
    # Values of the code before the clustering correction (uncorrected bootstrap and Wilson), which
    # singleton clusters must keep: committed baselines and many tests rest on them.
    rng = np.random.default_rng(3)
    x = (rng.random(120) < 0.8).astype(float)
    ids = [str(i) for i in range(120)]
    assert mean_ci(x, ids) == (0.7659066765413198, 0.9002083333333322)
    assert mean_ci(x) == mean_ci(x, ids)
    assert bootstrap_ci(x, ids, n_boot=500) == (0.7706250000000001, 0.9043749999999998)


def test_strongly_clustered_scores_get_a_wider_interval_than_before():
    # 8 videos x 8 questions (the design-effect example above): 56/64 right, but one video got 2 of 8.
    # Before: (0.6875, 0.984), the bootstrap with a normal quantile on 8 clusters and Wilson on 64
    # independent answers. Now Wilson on 64 / (135/28) = 13.3 effective answers at t(7), hulled
    # with the bootstrap widened by sqrt(8/7) t(7) / z.
    xv = np.concatenate([np.r_[np.ones(k), np.zeros(8 - k)] for k in (8, 2, 8, 8, 7, 8, 7, 8)])
    clv = [f"v{c}" for c in np.repeat(np.arange(8), 8)]
    lo, hi = mean_ci(xv, clv)
    n_eff, z, phat = 64 / (135 / 28), cluster_quantile(0.95, 8), 0.875
    w_lo = ((phat + z * z / (2 * n_eff)) - z * math.sqrt(phat * (1 - phat) / n_eff + z * z / (4 * n_eff**2))) / (
        1 + z * z / n_eff)
    assert lo == pytest.approx(min(w_lo, bootstrap_ci(xv, clv)[0])) and hi == 1.0
    assert lo < 0.6875 - 0.1  # more than 10 points lower than before
    # The bootstrap alone: its percentile bounds moved from the mean by sqrt(8/7) * t(7) / z = 1.290.
    b_lo, b_hi = bootstrap_ci(xv, clv, n_boot=500)
    k = math.sqrt(8 / 7) * cluster_quantile(0.95, 8) / NormalDist().inv_cdf(0.975)
    assert k == pytest.approx(1.2898, abs=1e-4)
    # The uncorrected percentile interval (same seed and replicates) was (0.679296875, 0.984375).
    assert b_lo == pytest.approx(0.875 - k * (0.875 - 0.679296875), rel=1e-12)
    assert b_hi == pytest.approx(0.875 + k * (0.984375 - 0.875), rel=1e-12)


def _clustered_binary(rng: np.random.Generator, n: int, per: int, rho: float, p: float) -> tuple[np.ndarray, list[str]]:
    """Binary scores in clusters of ``per``: cluster accuracy ~ Beta with mean p, intra-cluster correlation rho."""
    c = -(-n // per)
    s = (1 - rho) / rho
    pc = rng.beta(p * s, (1 - p) * s, size=c)
    cl = np.repeat(np.arange(c), per)[:n]
    return (rng.random(n) < pc[cl]).astype(float), [f"c{i}" for i in cl]


def test_mean_ci_covers_under_strong_clustering():
    # 60 answers in 8 clusters (of 8, the last of 4), rho = 0.5: the interval before this correction covered
    # p = 0.7 in 856 of these 1000 seeded data sets (0.856); now 937.
    rng = np.random.default_rng(0)
    covered = 0
    for rep in range(1000):
        x, cl = _clustered_binary(rng, 60, 8, 0.5, 0.7)
        lo, hi = mean_ci(x, cl, n_boot=200, seed=rep)
        covered += lo <= 0.7 <= hi
    assert covered >= 910, covered  # nominal 95%


def test_wilson_hull_covers_near_the_boundary():
    # Exact coverage (binomial sum, no simulation) of the reported interval for a 0/1 mean at p = 0.98, n = 50.
    n, p = 50, 0.98
    cover = 0.0
    for k in range(n + 1):
        lo, hi = mean_ci([1.0] * k + [0.0] * (n - k), n_boot=200)
        if lo <= p <= hi:
            cover += math.comb(n, k) * p**k * (1 - p) ** (n - k)
    assert cover > 0.9


# ---- bootstrap_stat_ci: non-mean statistics, corrected for shared clusters -----------------------
# Six sources of three questions, fractional scores; the statistic is the median (0.7).
_ROWS = [0.9, 0.8, 1.0, 0.2, 0.4, 0.3, 0.7, 0.6, 0.8, 0.5, 0.3, 0.4, 1.0, 0.9, 0.9, 0.6, 0.8, 0.7]
_SOURCES = [f"v{i // 3}" for i in range(18)]


def _median(rows: list[float]) -> float:
    return float(np.median(rows))


def _k(level: float, n_clusters: int) -> float:
    """sqrt(C/(C-1)) t(C-1)/z, from scipy.stats (not the code under test)."""
    from scipy.stats import norm, t

    q = 0.5 + level / 2
    return math.sqrt(n_clusters / (n_clusters - 1)) * float(t.ppf(q, n_clusters - 1)) / float(norm.ppf(q))


def _plain_percentile(rows, stat, clusters, n_boot, seed=0, level=0.95):
    """The uncorrected percentile cluster bootstrap, written out: same generator, same draws."""
    labels = list(dict.fromkeys(clusters))
    members = [[i for i, c in enumerate(clusters) if c == lab] for lab in labels]
    rng = np.random.default_rng(seed)
    vals = [stat([rows[i] for c in rng.integers(0, len(labels), size=len(labels)) for i in members[c]])
            for _ in range(n_boot)]
    kept = [v for v in vals if not math.isnan(v)]
    return tuple(float(q) for q in np.quantile(kept, [(1 - level) / 2, (1 + level) / 2]))


def test_stat_ci_with_shared_clusters_is_widened_around_the_estimate():
    # The uncorrected interval (the code before this correction, and the written-out bootstrap) was
    # (0.4, 0.9) around the median 0.7; with 6 clusters its deviations grow by sqrt(6/5) t(5)/z = 1.437.
    plain = _plain_percentile(_ROWS, _median, _SOURCES, 500)
    assert plain == pytest.approx((0.4, 0.9), abs=1e-12)
    k = _k(0.95, 6)
    assert k == pytest.approx(1.4367, abs=1e-4)
    lo, hi = bootstrap_stat_ci(_ROWS, _median, _SOURCES, n_boot=500)
    assert lo == pytest.approx(0.7 - k * 0.3, rel=1e-12) and hi == pytest.approx(0.7 + k * 0.2, rel=1e-12)
    assert lo < 0.4 - 0.1  # more than 10 points below the uncorrected bound
    # 90%: t(5) at 95% over z at 95%, on the 90% percentile interval
    plain90 = _plain_percentile(_ROWS, _median, _SOURCES, 500, level=0.90)
    lo90, hi90 = bootstrap_stat_ci(_ROWS, _median, _SOURCES, n_boot=500, level=0.90)
    k90 = _k(0.90, 6)
    assert (lo90, hi90) == pytest.approx((0.7 - k90 * (0.7 - plain90[0]), 0.7 + k90 * (plain90[1] - 0.7)), rel=1e-12)


def test_stat_ci_with_singleton_clusters_is_the_plain_interval():
    ids = [str(i) for i in range(18)]
    # The value of the code before the correction, which singletons keep exactly.
    assert bootstrap_stat_ci(_ROWS, _median, ids, n_boot=500) == (0.45, 0.8500000000000001)
    assert bootstrap_stat_ci(_ROWS, _median, ids, n_boot=500) == _plain_percentile(_ROWS, _median, ids, 500)
    assert bootstrap_stat_ci(_ROWS, _median, ids, n_boot=500, bounds=(0.0, 1.0)) == (0.45, 0.8500000000000001)


def test_stat_ci_holds_an_estimate_outside_the_percentile_interval():
    # The number of distinct values of 18 distinct rows in 6 sources: 18, and a resample has 18 only when
    # it draws all 6 sources (6!/6^6 = 1.5%), so the percentile interval (6, 15) lies below the estimate.
    # Scaling the signed distances would give (0.76, 13.7), further off; the upper distance counts as 0.
    rows = [i / 20 for i in range(18)]
    distinct = lambda r: float(len(set(r)))  # noqa: E731
    assert _plain_percentile(rows, distinct, _SOURCES, 500) == (6.0, 15.0)
    lo, hi = bootstrap_stat_ci(rows, distinct, _SOURCES, n_boot=500)
    assert lo == pytest.approx(18 - _k(0.95, 6) * 12, rel=1e-12) and hi == 18.0


def test_stat_ci_nan_estimate_and_bounds():
    # NaN on the full data (all 18 values distinct) but not on resamples: no estimate to widen around.
    rows = [i / 20 for i in range(18)]
    odd = lambda r: math.nan if len(set(r)) == 18 else float(np.median(r))  # noqa: E731
    assert bootstrap_stat_ci(rows, odd, _SOURCES, n_boot=200) is None
    assert bootstrap_stat_ci(rows, odd, [str(i) for i in range(18)], n_boot=200) is not None  # plain, as before
    assert bootstrap_stat_ci(rows, lambda r: math.nan, _SOURCES, n_boot=50) is None
    # Known range: the widened bound past 1 is clipped there (the median 0.9 of scores near 1).
    high = [min(1.0, x + 0.2) for x in _ROWS]
    lo, hi = bootstrap_stat_ci(high, _median, _SOURCES, n_boot=500)
    assert hi > 1.0
    assert bootstrap_stat_ci(high, _median, _SOURCES, n_boot=500, bounds=(0.0, 1.0)) == (lo, 1.0)
