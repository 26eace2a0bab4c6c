"""Power and clustered variance: checked against cases with known answers."""
import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from lensnb.metrics import cluster_bootstrap_ci
from lensnb.power import auroc_clustered, design_effect, hosts_needed, icc_oneway, power, simulate_scores


def test_auroc_matches_sklearn_and_the_iid_hanley_mcneil_se():
    rng = np.random.default_rng(0)
    y, s, g = simulate_scores(400, 1, 0.8, 0.0, rng, paired=False)
    a, se = auroc_clustered(y, s, g)
    assert a == pytest.approx(roc_auc_score(y, s))
    # one image per host: the clustered SE reduces to the ordinary (Hanley-McNeil) SE
    m = n = 200
    q1, q2 = a / (2 - a), 2 * a**2 / (1 + a)
    hm = np.sqrt((a * (1 - a) + (m - 1) * (q1 - a**2) + (n - 1) * (q2 - a**2)) / (m * n))
    assert se == pytest.approx(hm, rel=0.15)


def test_clustered_se_agrees_with_host_bootstrap():
    rng = np.random.default_rng(1)
    y, s, g = simulate_scores(60, 8, 0.75, 0.4, rng, paired=False)
    a, se = auroc_clustered(y, s, g)
    _, lo, hi = cluster_bootstrap_ci(y, s, g, n_boot=800, seed=2)
    assert (hi - lo) / 3.92 == pytest.approx(se, rel=0.25)


def test_icc_and_design_effect():
    rng = np.random.default_rng(3)
    g = np.repeat(np.arange(300), 10)
    v = rng.normal(0, np.sqrt(0.3), 300)[g] + rng.normal(0, np.sqrt(0.7), len(g))
    assert icc_oneway(v, g) == pytest.approx(0.3, abs=0.05)
    assert design_effect(10, 0.3) == pytest.approx(3.7)


def test_power_has_its_known_limits():
    # true AUROC on the threshold: a one-sided 2.5% test rejects ~2.5% of the time
    p0 = power(40, 10, 0.65, 0.65, 0.2, below=True, n_sim=400, seed=0)
    assert p0 <= 0.08
    # far from the threshold with many hosts: certain
    assert power(200, 10, 0.5, 0.65, 0.2, below=True, n_sim=100, seed=1) == 1.0
    # more hosts never hurt (monotone within simulation noise)
    small = power(10, 10, 0.58, 0.65, 0.3, below=True, n_sim=300, seed=2)
    large = power(80, 10, 0.58, 0.65, 0.3, below=True, n_sim=300, seed=2)
    assert large > small + 0.2
    assert hosts_needed([10, 20, 40], [0.3, 0.85, 0.95]) == 20 and hosts_needed([10], [0.1]) is None
