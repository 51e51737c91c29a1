import numpy as np

from evalsuite.stats import bootstrap_ci, bootstrap_stat_ci


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
