"""Paired statistics: exact McNemar, Holm, paired vs unpaired bootstrap, Tango's score interval."""

from __future__ import annotations

import math
from statistics import NormalDist

import numpy as np
import pytest

from evalsuite.paired import (Paired, _tango_bounds, binom_cdf_half, holm, mcnemar_exact, pair, paired_bootstrap_ci,
                              paired_diff, paired_interval, paired_test, signflip_pvalue, tango_ci, tango_z,
                              unpaired_bootstrap_ci)
from evalsuite.stats import cluster_quantile, design_effect
from evalsuite.types import SampleResult


# ---- exact McNemar ------------------------------------------------------------------------------
def test_binom_cdf_half_by_hand():
    assert binom_cdf_half(0, 5) == 1 / 32
    assert binom_cdf_half(2, 10) == (1 + 10 + 45) / 1024
    assert binom_cdf_half(-1, 4) == 0.0 and binom_cdf_half(4, 4) == 1.0


@pytest.mark.parametrize("improved, worsened, expected", [
    (0, 5, 2 * 1 / 32),                                   # all 5 discordant pairs one way: 0.0625
    (2, 8, 2 * (1 + 10 + 45) / 1024),                     # 0.109375
    (12, 3, 2 * (1 + 15 + 105 + 455) / 2 ** 15),          # 0.03515625, symmetric in the two counts
    (5, 5, 1.0),                                          # 2 * P(X <= 5 | 10) > 1: capped
    (0, 0, 1.0),                                          # no discordant pair: no evidence
    (0, 1, 1.0),
])
def test_mcnemar_exact_matches_hand_computed_binomial(improved, worsened, expected):
    assert mcnemar_exact(improved, worsened) == pytest.approx(expected, rel=1e-12)
    assert mcnemar_exact(worsened, improved) == pytest.approx(expected, rel=1e-12)


def test_mcnemar_large_counts_do_not_overflow():
    p = mcnemar_exact(400, 600)  # 2 * P(X <= 400 | 1000): z ≈ -6.3, p ≈ 3e-10
    assert 1e-11 < p < 1e-9


def test_mcnemar_rejects_negative_counts():
    with pytest.raises(ValueError):
        mcnemar_exact(-1, 3)


# ---- Holm ---------------------------------------------------------------------------------------
def test_holm_hand_example():
    # sorted: .005*4=.02, .01*3=.03, .03*2=.06, .04*1=.04 -> running max .06
    assert holm([0.01, 0.04, 0.03, 0.005]) == pytest.approx([0.03, 0.06, 0.06, 0.02])


def test_holm_skips_missing_and_caps_at_one():
    out = holm([0.5, None, 0.2])
    assert out[1] is None
    assert out[0] == pytest.approx(0.5) and out[2] == pytest.approx(0.4)
    assert holm([0.9, 0.8]) == pytest.approx([1.0, 1.0])


# ---- bootstrap: paired vs unpaired --------------------------------------------------------------
def _correlated(seed: int, n_clusters: int = 60, per: int = 10, shift: float = 0.05) -> Paired:
    """A and B answer from the same latent difficulty; B is right on a band of ``shift`` more."""
    rng = np.random.default_rng(seed)
    q = np.linspace(0.2, 0.75, n_clusters)  # cluster ease; q + shift stays below 1: true delta = shift
    u = rng.random((n_clusters, per))
    a = (u < q[:, None]).astype(float).ravel()
    b = (u < q[:, None] + shift).astype(float).ravel()
    clusters = [f"c{c}" for c in range(n_clusters) for _ in range(per)]
    return Paired([str(i) for i in range(a.size)], a, b, clusters)


def test_paired_ci_covers_true_delta_and_is_narrower_than_unpaired():
    covered, ratios = 0, []
    for seed in range(20):
        p = _correlated(seed)
        lo, hi = paired_bootstrap_ci(p, n_boot=500, seed=seed)
        ulo, uhi = unpaired_bootstrap_ci(p.a, p.b, p.clusters, p.clusters, n_boot=500, seed=seed)
        covered += lo <= 0.05 <= hi
        ratios.append((hi - lo) / (uhi - ulo))
        assert lo <= float(p.d.mean()) <= hi
    assert covered >= 16, covered  # nominal 95%: 19/20 expected
    assert max(ratios) < 0.5, ratios  # pairing removes the shared difficulty


def test_paired_ci_is_zero_width_for_identical_runs():
    p = _correlated(0, shift=0.0)
    assert paired_bootstrap_ci(p, n_boot=200) == (0.0, 0.0)


# ---- Tango ------------------------------------------------------------------------------------
def test_tango_bounds_solve_the_score_equation():
    lo, hi = tango_ci(5, 10, 100, level=0.95)
    z = NormalDist().inv_cdf(0.975)
    assert tango_z(5, 10, 100, lo) == pytest.approx(z, abs=1e-6)
    assert tango_z(5, 10, 100, hi) == pytest.approx(-z, abs=1e-6)
    assert lo < -0.05 < hi


def test_tango_no_discordant_pairs_closed_form():
    # x = y = 0: Z(d)^2 = n|d| / (1 - |d|), so |d| = z^2 / (n + z^2).
    z = NormalDist().inv_cdf(0.95)
    for n in (30, 400):
        lo, hi = tango_ci(0, 0, n, level=0.90)
        assert hi == pytest.approx(z * z / (n + z * z), rel=1e-6) and lo == pytest.approx(-hi, rel=1e-6)


@pytest.mark.parametrize("n, p01, p10", [(30, 0.05, 0.10), (30, 0.0, 0.10), (50, 0.10, 0.20)])
def test_tango_exact_coverage_small_samples(n, p01, p10):
    cover = 0.0
    for x in range(n + 1):
        for y in range(n + 1 - x):
            pr = math.comb(n, x) * math.comb(n - x, y) * p01 ** x * p10 ** y * (1 - p01 - p10) ** (n - x - y)
            lo, hi = tango_ci(x, y, n)
            cover += pr * (lo <= p01 - p10 <= hi)
    assert 0.94 <= cover <= 1.0


def test_tango_extremes():
    assert tango_ci(0, 30, 30)[0] == -1.0
    assert tango_ci(30, 0, 30)[1] == 1.0
    assert tango_ci(0, 0, 0) is None


# ---- sign-flip test ---------------------------------------------------------------------------
def test_signflip_pvalue():
    clusters = [f"c{i // 2}" for i in range(40)]
    assert signflip_pvalue([0.0] * 40, clusters) == 1.0
    small = signflip_pvalue([0.3] * 40, clusters, n_perm=2000)
    assert small == pytest.approx(1 / 2001, rel=0.5)  # all 20 clusters positive: only ±all-same flips tie
    mixed = signflip_pvalue([0.3, -0.3] * 20, clusters, n_perm=2000)
    assert mixed == 1.0  # every cluster sums to 0


def test_signflip_is_exact_with_few_differing_clusters_and_matches_mcnemar():
    # 3 clusters differ (sums -2, -1, +1): the 8 sign vectors give sums {±4, ±2, ±2, 0, 0}.
    d = [-1.0, -1.0, 0.0, -1.0, 1.0, 0.0]
    clusters = ["a", "a", "b", "c", "d", "e"]
    assert signflip_pvalue(d, clusters, alternative="less") == pytest.approx(3 / 8)  # sums <= -2: -4, -2, -2
    assert signflip_pvalue(d, clusters) == pytest.approx(6 / 8)  # |sum| >= 2
    # Singleton clusters and 0/1 scores: the sign-flip test is exact McNemar.
    for imp, wor in [(0, 9), (2, 9), (3, 3), (5, 1)]:
        dd = [1.0] * imp + [-1.0] * wor + [0.0] * 20
        ids = [str(i) for i in range(len(dd))]
        assert signflip_pvalue(dd, ids) == pytest.approx(mcnemar_exact(imp, wor))
        assert signflip_pvalue(dd, ids, alternative="less") == pytest.approx(binom_cdf_half(imp, imp + wor))
    with pytest.raises(ValueError):
        signflip_pvalue(d, clusters, alternative="greater")


def test_one_sided_mcnemar_of_the_issue_example():
    a = np.ones(200)
    b = a.copy()
    b[:9] = 0.0  # 9 right -> wrong, none back
    ids = [str(i) for i in range(200)]
    name, pv = paired_test(Paired(ids, a, b, ids), alternative="less")
    assert name == "mcnemar-exact" and pv == pytest.approx(1 / 512)
    assert paired_test(Paired(ids, a, b, ids))[1] == pytest.approx(2 / 512)


# ---- the one interval -----------------------------------------------------------------------------
def test_paired_interval_is_honest_when_nothing_changed():
    ids = [str(i) for i in range(100)]
    a = (np.arange(100) % 3 == 0).astype(float)
    (lo, hi), method = paired_interval(Paired(ids, a, a.copy(), ids), level=0.95, n_boot=300)
    assert "Tango" in method
    assert (lo, hi) == pytest.approx(tango_ci(0, 0, 100))  # the bootstrap alone says [0, 0]
    assert -0.05 < lo < -0.03 and hi == pytest.approx(-lo)
    # Fractional scores in [0, 1]: the same, on fractional discordance counts.
    c = np.linspace(0.0, 1.0, 100)
    (clo, chi), _ = paired_interval(Paired(ids, c, c.copy(), ids), n_boot=300)
    assert (clo, chi) == pytest.approx((lo, hi))
    # Scores outside [0, 1]: the bootstrap only.
    big = np.linspace(0.0, 50.0, 100)
    (blo, bhi), bmethod = paired_interval(Paired(ids, big, big + 1.0, ids), n_boot=300)
    assert bmethod == "paired cluster bootstrap" and blo == pytest.approx(1.0) and bhi == pytest.approx(1.0)


def test_paired_interval_keeps_the_cluster_width():
    # 60 clusters of 10: the hull of the (small-C corrected) cluster bootstrap and Tango on n / deff pairs
    # at t(59), both at least as wide as the uncorrected ones.
    p = _correlated(2)
    (lo, hi), method = paired_interval(p, n_boot=500)
    boot = paired_bootstrap_ci(p, n_boot=500)
    deff = design_effect(p.d, p.clusters)  # 0/1 scores: Tango's per-pair variance is the sample's own
    assert deff == pytest.approx(1.0244, abs=1e-4)  # little clustering of the differences here
    t = _tango_bounds(p.n_improved / deff, p.n_worsened / deff, p.n / deff, cluster_quantile(0.95, 60))
    assert lo == pytest.approx(min(boot[0], t[0])) and hi == pytest.approx(max(boot[1], t[1]))
    t_iid = tango_ci(p.n_improved, p.n_worsened, p.n)
    assert t[0] < t_iid[0] and t[1] > t_iid[1]
    assert "design effect" in method and "59 df" in method


# ---- clustering: design effect in Tango, small-C correction -----------------------------------------
def _pairs(d: np.ndarray, clusters: list[str]) -> Paired:
    a = np.where(d < 0, 1.0, np.where(d > 0, 0.0, (np.arange(d.size) % 3 > 0) * 1.0))
    return Paired([str(i) for i in range(d.size)], a, a + d, clusters)


def test_paired_design_effect_by_hand():
    # d = (-1, -1, 0 | 0, 0, 0 | 1, 0, 0), mean -1/9. Cluster sums + 3/9: -5/3, 1/3, 4/3, squares 42/9, so
    # CR1 = 3/2 * (42/9) / 81 = 7/81. Tango's per-pair variance (x + y)/n - mean^2 = 3/9 - 1/81 = 26/81,
    # iid variance 26/81 / 8. deff = (7/81) / (26/648) = 28/13.
    d = np.array([-1.0, -1.0, 0.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0])
    cl = list("aaabbbccc")
    assert design_effect(d, cl) == pytest.approx(28 / 13, rel=1e-12)
    assert design_effect(d, cl, unit_variance=26 / 81) == pytest.approx(28 / 13, rel=1e-12)
    (lo, hi), method = paired_interval(_pairs(d, cl), level=0.95, n_boot=300)
    assert "design effect 2.15" in method and "2 df" in method
    # Tango's half: the score equation on 9 / deff pairs (1 and 2 discordant, scaled alike) at t(2).
    tlo, thi = _tango_bounds(13 / 28, 26 / 28, 9 * 13 / 28, 4.302652729911275)
    assert tango_z(13 / 28, 26 / 28, 9 * 13 / 28, tlo) == pytest.approx(4.302652729911275, abs=1e-6)
    assert tango_z(13 / 28, 26 / 28, 9 * 13 / 28, thi) == pytest.approx(-4.302652729911275, abs=1e-6)
    assert lo <= tlo and hi >= thi and -1.0 <= lo and hi <= 1.0


def test_singleton_pairs_give_the_same_interval_as_before():
    # Values of the code before the clustering correction: independent pairs keep them exactly.
    rng = np.random.default_rng(3)
    rng.random(120)
    a = (rng.random(150) < 0.7).astype(float)
    b = a.copy()
    flip = rng.random(150) < 0.1
    b[flip] = 1 - b[flip]
    ids = [str(i) for i in range(150)]
    p = Paired(ids, a, b, ids)
    assert (p.n_improved, p.n_worsened) == (4, 12)
    assert paired_interval(p, level=0.90) == ((-0.1015762428353302, -0.010296155085472328),
                                              "hull of paired cluster bootstrap and Tango score interval")
    assert paired_interval(p, level=0.95)[0] == (-0.11226662023281159, 0.0)


def test_no_discordant_pairs_in_shared_clusters_stay_tango():
    # Nothing changed on 100 pairs in 20 clusters of 5: no variance to estimate the clustering from,
    # so plain Tango, |d| = z^2 / (n + z^2), not the bootstrap's [0, 0].
    d = np.zeros(100)
    cl = [f"v{i // 5}" for i in range(100)]
    (lo, hi), method = paired_interval(_pairs(d, cl), level=0.95, n_boot=300)
    z = NormalDist().inv_cdf(0.975)
    assert hi == pytest.approx(z * z / (100 + z * z), rel=1e-6) and lo == pytest.approx(-hi, rel=1e-6)
    assert (lo, hi) == tango_ci(0, 0, 100) and "design effect" not in method
    # One change: the clustering is estimated (deff 1.0 here) and t(19) applies: wider than iid Tango.
    d[7] = -1.0
    (lo1, hi1), method1 = paired_interval(_pairs(d, cl), level=0.95, n_boot=300)
    t_iid = tango_ci(0, 1, 100)
    assert "19 df" in method1 and lo1 < t_iid[0] and hi1 > t_iid[1]


def test_strongly_clustered_pairs_get_a_wider_interval_than_before():
    # 10 videos of 10 questions; 10 answers got worse, all in two videos (6 and 4), 1 better.
    # deff = CR1 * 99 / (0.11 - 0.09^2): cluster sums + 0.9 are -5.1, -3.1, 1.9 and seven 0.9s (squares 44.9),
    # CR1 = 10/9 * 44.9 / 10^4, so deff = 4939 / 1019 = 4.85.
    d = np.zeros(100)
    d[0:6] = -1.0
    d[10:14] = -1.0
    d[50] = 1.0
    cl = [f"v{i // 10}" for i in range(100)]
    assert design_effect(d, cl) == pytest.approx(4939 / 1019, rel=1e-12)
    (lo, hi), _ = paired_interval(_pairs(d, cl), level=0.90)
    # Before: (-0.200, +0.010), the percentile bootstrap on 10 clusters with a normal quantile.
    assert lo == pytest.approx(-0.2742539271773432, abs=1e-9) and hi == pytest.approx(0.07418123035916346, abs=1e-9)
    assert lo < -0.200 - 0.05 and hi > 0.010 + 0.05


def _dirichlet_pairs(rng: np.random.Generator, n: int, per: int, rho: float, pw: float, pb: float) -> Paired:
    """Pairs in clusters of ``per``: each cluster's P(worse), P(better) ~ Dirichlet with means pw, pb and
    intra-cluster correlation rho of each indicator."""
    c = -(-n // per)
    cl = np.repeat(np.arange(c), per)[:n]
    probs = rng.dirichlet(np.array([pw, pb, 1 - pw - pb]) * (1 - rho) / rho, size=c)[cl]
    u = rng.random(n)
    d = np.where(u < probs[:, 0], -1.0, np.where(u < probs[:, 0] + probs[:, 1], 1.0, 0.0))
    return _pairs(d, [f"c{i}" for i in cl])


def test_gate_lower_bound_covers_under_strong_clustering():
    # The gate's one-sided 95% lower bound (level 0.90) with 60 pairs in 8 clusters, rho = 0.5, true
    # delta = 0.07 - 0.12 = -0.05. Before this correction it covered in 421 of these 500 seeded data sets
    # (0.842); now 479.
    rng = np.random.default_rng(0)
    covered = 0
    for rep in range(500):
        p = _dirichlet_pairs(rng, 60, 8, 0.5, 0.12, 0.07)
        (lo, _), _ = paired_interval(p, level=0.90, n_boot=200, seed=rep)
        covered += lo <= -0.05
    assert covered >= 460, covered  # nominal 95%: 475 expected


# ---- pairing ----------------------------------------------------------------------------------
def _r(i: str, score: float | None, error: str | None = None, cluster: str | None = None) -> SampleResult:
    return SampleResult(id=i, task="t", target="x", prediction="x", score=score, error=error,
                        metadata={"cluster": cluster} if cluster else {})


def test_pair_lines_up_ids_and_handles_errors():
    a = [_r("1", 1.0, cluster="v1"), _r("2", 0.0), _r("3", 1.0), _r("4", None, error="boom"), _r("5", 1.0)]
    b = [_r("3", 0.0), _r("1", 1.0), _r("2", 1.0), _r("4", 1.0), _r("5", None, error="timeout"), _r("6", 1.0)]
    p = pair(a, b)
    assert p.ids == ["1", "2", "3"] and list(p.a) == [1, 0, 1] and list(p.b) == [1, 1, 0]
    assert p.clusters == ["v1", "2", "3"]
    assert (p.n_improved, p.n_worsened, p.n_only_a, p.n_only_b) == (1, 1, 1, 2)
    assert [(x.id, y.id) for x, y in p.flips] == [("2", "2"), ("3", "3")]
    q = pair(a, b, b_errors_as_wrong=True)
    assert q.ids == ["1", "2", "3", "5"] and q.b[-1] == 0.0 and q.n_b_errors_as_wrong == 1
    both = pair(a, b, a_errors_as_wrong=True, b_errors_as_wrong=True)  # the gate's: errors count alike
    assert both.ids == ["1", "2", "3", "4", "5"] and list(both.a) == [1, 0, 1, 0, 1] and list(both.b) == [1, 1, 0, 1, 0]
    assert pair([_r("7", None, error="x")], [_r("7", None, error="y")], a_errors_as_wrong=True,
                b_errors_as_wrong=True).ids == []  # errored in both: no pair


def test_the_gate_of_two_runs_with_the_same_error_rate_fails_no_more_than_alpha():
    """Errors counted wrong on the candidate's side alone biased an A/A gate: with 2% transient errors per
    run it failed ~23% of the time at alpha 5% (an audit's simulation). Counted alike, no bias."""
    import numpy as np

    from evalsuite.gate import FAIL, gate_tasks

    rng = np.random.default_rng(0)
    fails = 0
    for rep in range(200):
        right = rng.random(200) < 0.8  # each sample's answer, the same in both runs
        rows = []
        for _ in range(2):
            err = rng.random(200) < 0.04
            rows.append([_r(str(i), None if e else float(ok), error="timeout" if e else None)
                         for i, (ok, e) in enumerate(zip(right, err))])
        p = pair(rows[0], rows[1], a_errors_as_wrong=True, b_errors_as_wrong=True)
        fails += gate_tasks({"t": p}, margin=0.02, alpha=0.05, n_boot=200, seed=rep)[0].verdict == FAIL
    assert fails / 200 <= 0.05 + 2 * (0.05 * 0.95 / 200) ** 0.5  # alpha plus two Monte Carlo standard errors


def test_paired_diff_chooses_the_test():
    p = _correlated(1)
    d = paired_diff(p, n_boot=200)
    # 0/1 scores in shared clusters: McNemar would treat the pairs as independent.
    assert d.binary and d.test == "cluster-signflip"
    assert d.p_value == pytest.approx(signflip_pvalue(p.d, p.clusters))
    assert d.n_worsened == 0 and d.n_improved > 0 and d.delta == pytest.approx(d.n_improved / d.n)
    single = Paired(p.ids, p.a, p.b, p.ids)
    s = paired_diff(single, n_boot=200)
    assert s.test == "mcnemar-exact" and s.p_value == pytest.approx(mcnemar_exact(s.n_improved, s.n_worsened))
    cont = Paired(["1", "2", "3"], np.array([0.5, 0.2, 0.9]), np.array([0.6, 0.2, 0.7]), ["a", "b", "c"])
    assert paired_diff(cont, n_boot=200).test == "cluster-signflip"
    with pytest.raises(ValueError):
        paired_diff(Paired([], np.array([]), np.array([]), []))


def test_unpaired_interval_is_none_where_a_cluster_bootstrap_cannot_estimate_it():
    """One cluster: every resample is the same data, so the "interval" was the observed difference
    ([-60, -60] at n=5), narrower than the paired one beside it. Constant scores: likewise."""
    a, b = [1.0, 1.0, 1.0, 0.0, 1.0], [0.0, 0.0, 1.0, 0.0, 0.0]
    one = ["v"] * 5
    assert unpaired_bootstrap_ci(a, b, one, one, n_boot=200) is None
    many = [f"c{i}" for i in range(5)]
    assert unpaired_bootstrap_ci([1.0] * 5, [0.0] * 5, many, many, n_boot=200) is None
    lo, hi = unpaired_bootstrap_ci(a, b, many, many, n_boot=200)  # type: ignore[misc]
    assert lo < -0.6 < hi
    p = pair([SampleResult(id=f"s{i}", task="t", target="A", prediction="", score=x, metadata={"cluster": "v"})
              for i, x in enumerate(a)],
             [SampleResult(id=f"s{i}", task="t", target="A", prediction="", score=x, metadata={"cluster": "v"})
              for i, x in enumerate(b)])
    d = paired_diff(p, n_boot=200)
    assert d.ci_unpaired is None and d.ci is not None and d.ci[1] > d.ci[0]


def test_every_pair_changed_alike_gives_plain_tango_whatever_the_clusters():
    """6 of 6 pairs improved: no variance to estimate the clustering from, so the interval does not
    depend on how the pairs are grouped (it was 0.378 in 1 cluster, -0.738 in 2, -0.174 in 3)."""
    from evalsuite.paired import paired_interval, tango_ci

    plain = tango_ci(6, 0, 6, level=0.9)
    for c in (1, 2, 3, 6):
        p = Paired([str(i) for i in range(6)], np.zeros(6), np.ones(6), [str(i * c // 6) for i in range(6)])
        (lo, hi), method = paired_interval(p, level=0.9)
        assert (lo, hi) == (pytest.approx(plain[0]), 1.0) and "corrected" not in method


# ---- unpaired interval: corrected for shared clusters like the paired bootstrap ---------------------
# Five sources of four questions; A right on 11, B on 15: mean(B) - mean(A) = 0.25.
_UA = [1.0, 1, 1, 0, 0, 0, 0, 0, 1, 1, 0, 1, 1, 1, 1, 1, 0, 1, 0, 0]
_UB = [1.0, 1, 1, 1, 0, 1, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 1]
_U5 = [f"v{i // 4}" for i in range(20)]


def _k(level: float, n_clusters: int) -> float:
    """sqrt(C/(C-1)) t(C-1)/z, from scipy.stats (not the code under test)."""
    from scipy.stats import norm, t

    q = 0.5 + level / 2
    return math.sqrt(n_clusters / (n_clusters - 1)) * float(t.ppf(q, n_clusters - 1)) / float(norm.ppf(q))


def _plain_unpaired(a, b, ca, cb, n_boot, seed=0, level=0.95):
    """The uncorrected interval written out: B's clusters drawn first, then A's, from one generator."""
    rng = np.random.default_rng(seed)

    def means(x, cl):
        labels = list(dict.fromkeys(cl))
        sums = np.array([sum(v for v, c in zip(x, cl) if c == lab) for lab in labels], dtype=float)
        sizes = np.array([sum(1 for c in cl if c == lab) for lab in labels], dtype=float)
        w = rng.multinomial(len(labels), np.full(len(labels), 1 / len(labels)), size=n_boot)
        return (w @ sums) / (w @ sizes)

    diffs = means(b, cb) - means(a, ca)
    return tuple(float(q) for q in np.quantile(diffs, [(1 - level) / 2, (1 + level) / 2]))


def test_unpaired_interval_with_shared_clusters_is_widened_around_the_difference():
    # Uncorrected (the code before, and written out): (-0.15, 0.65) around 0.25. Five clusters a run:
    # both runs' deviations, so the difference's, grow by sqrt(5/4) t(4)/z = 1.584.
    plain = _plain_unpaired(_UA, _UB, _U5, _U5, 500)
    assert plain == pytest.approx((-0.15, 0.65), abs=1e-12)
    k = _k(0.95, 5)
    assert k == pytest.approx(1.5838, abs=1e-4)
    lo, hi = unpaired_bootstrap_ci(_UA, _UB, _U5, _U5, n_boot=500)  # type: ignore[misc]
    assert lo == pytest.approx(0.25 - k * 0.4, rel=1e-12) and hi == pytest.approx(0.25 + k * 0.4, rel=1e-12)
    # Runs with different cluster counts (A 5 sources, B 10 of 2): the smaller C, 5, sets the factor.
    u10 = [f"w{i // 2}" for i in range(20)]
    plain = _plain_unpaired(_UA, _UB, _U5, u10, 500)
    lo, hi = unpaired_bootstrap_ci(_UA, _UB, _U5, u10, n_boot=500)  # type: ignore[misc]
    assert (lo, hi) == pytest.approx((0.25 - k * (0.25 - plain[0]), 0.25 + k * (plain[1] - 0.25)), rel=1e-12)
    # A in singletons adds nothing: B's 10 clusters set it.
    ids = [str(i) for i in range(20)]
    plain = _plain_unpaired(_UA, _UB, ids, u10, 500)
    k10 = _k(0.95, 10)
    lo, hi = unpaired_bootstrap_ci(_UA, _UB, ids, u10, n_boot=500)  # type: ignore[misc]
    assert (lo, hi) == pytest.approx((0.25 - k10 * (0.25 - plain[0]), 0.25 + k10 * (plain[1] - 0.25)), rel=1e-12)


def test_unpaired_interval_with_singleton_clusters_is_the_plain_interval():
    ids = [str(i) for i in range(20)]
    assert unpaired_bootstrap_ci(_UA, _UB, ids, ids, n_boot=500) == (-0.04999999999999993, 0.49999999999999994)
    assert unpaired_bootstrap_ci(_UA, _UB, ids, ids, n_boot=500) == _plain_unpaired(_UA, _UB, ids, ids, 500)


def test_unpaired_interval_is_clipped_for_scores_in_0_1():
    # Three sources of four: B right on 11 of 12, A on 1; the widened upper bound, by sqrt(3/2) t(2)/z = 2.69,
    # passes +1, which a difference of two accuracies cannot.
    a = [0.0] * 9 + [1.0, 0.0, 0.0]
    b = [1.0] * 11 + [0.0]
    cl = [f"v{i // 4}" for i in range(12)]
    plain = _plain_unpaired(a, b, cl, cl, 500)
    k, d = _k(0.95, 3), 10 / 12
    assert d + k * (plain[1] - d) > 1.0
    lo, hi = unpaired_bootstrap_ci(a, b, cl, cl, n_boot=500)  # type: ignore[misc]
    assert lo == pytest.approx(d - k * (d - plain[0]), rel=1e-12) and hi == 1.0
    # Other scores are not clipped.
    lo2, hi2 = unpaired_bootstrap_ci([2 * x for x in a], [2 * x for x in b], cl, cl, n_boot=500)  # type: ignore[misc]
    assert hi2 == pytest.approx(2 * d + k * (2 * plain[1] - 2 * d), rel=1e-12) and hi2 > 2 * hi
