import math
from statistics import NormalDist

import numpy as np
import pytest

from evalsuite.stats import bootstrap_ci, bootstrap_stat_ci, mean_ci, wilson_ci


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
    assert mean_ci(x, clusters) == bootstrap_ci(x, clusters)  # the clustered bootstrap is the wider one here
    y = [2.0, 4.0, 4.0, 6.0]
    assert mean_ci(y) == bootstrap_ci(y)


def test_wilson_hull_covers_near_the_boundary():
    # Exact coverage (binomial sum, no simulation) of the reported interval for a 0/1 mean at p = 0.98, n = 50.
    n, p = 50, 0.98
    cover = 0.0
    for k in range(n + 1):
        lo, hi = mean_ci([1.0] * k + [0.0] * (n - k), n_boot=200)
        if lo <= p <= hi:
            cover += math.comb(n, k) * p**k * (1 - p) ** (n - k)
    assert cover > 0.9
