"""Gate input checks and the core-LR gate on planted data."""
import numpy as np
import pytest

from lensnb import gates
from lensnb.metrics import cluster_bootstrap_ci


def _data(n_hosts=30, per=4, core_signal=0.0, seed=0):
    rng = np.random.default_rng(seed)
    host_level = rng.normal(0, 1, (n_hosts, 3, 1, 1)).astype(np.float32)
    X, y, g = [], [], []
    for h in range(n_hosts):
        for _ in range(per):
            for lab in (0, 1):
                img = host_level[h] + rng.normal(0, 1, (3, 64, 64)).astype(np.float32)
                if lab:
                    img[:, 30:34, 30:34] += core_signal
                X.append(img), y.append(lab), g.append(h)
    return np.array(X), np.array(y), np.array(g)


def test_core_lr_fires_on_a_planted_core_shortcut_and_is_quiet_without():
    X, y, g = _data(core_signal=1.0)
    r = gates.core_lr_gate(X, y, g, n_boot=200)
    assert r.verdict == "shortcut" and r.ci_low > 0.65
    X, y, g = _data(core_signal=0.0, seed=1)
    r = gates.core_lr_gate(X, y, g, n_boot=200)
    assert r.verdict == "no shortcut" and r.ci_high < 0.65


def test_gate_refuses_meaningless_input():
    X, y, g = _data(n_hosts=10, per=1)
    with pytest.raises(ValueError, match="only class"):
        gates.core_lr_gate(X[y == 1], y[y == 1], g[y == 1])
    with pytest.raises(ValueError, match="hosts"):
        gates.core_lr_gate(X[:8], y[:8], g[:8])


def test_verdict_is_undecidable_when_ci_straddles():
    assert gates.verdict(0.6, 0.7, 0.65) == "undecidable"
    assert gates.verdict(0.66, 0.7, 0.65) == "shortcut"
    assert gates.verdict(0.5, 0.6, 0.65) == "no shortcut"


def test_cluster_bootstrap_resamples_hosts():
    rng = np.random.default_rng(0)
    g = np.repeat(np.arange(40), 10)
    y = np.tile([0, 1], 200)
    s = rng.normal(size=400) + 0.5 * y
    auc, lo, hi = cluster_bootstrap_ci(y, s, g, n_boot=300)
    assert lo < auc < hi
