"""The realism probe: domain classifier and recall on real lenses, on planted cases."""
import numpy as np
import pytest

from lensnb import probe


def test_domain_probe_is_at_chance_for_one_distribution_and_near_one_for_two():
    rng = np.random.default_rng(0)
    hosts = np.repeat(np.arange(60), 5)
    sim = rng.normal(size=(300, 10)) + rng.normal(size=(60, 10))[hosts] * 0.5  # host-level structure
    same = rng.normal(size=(150, 10)) + rng.normal(size=(150, 10)) * 0.5
    r0 = probe.domain_probe(sim, same, hosts, n_boot=200)
    assert r0.ci_low < 0.5 < r0.ci_high  # injections indistinguishable: judged against chance
    shifted = same.copy()
    shifted[:, 3] += 2.0  # the real set has something the injections lack
    r1 = probe.domain_probe(sim, shifted, hosts, n_boot=200)
    assert r1.ci_low > 0.85
    with pytest.raises(ValueError, match="same d"):
        probe.domain_probe(sim, same[:, :5], hosts)


def test_binned_pixels_average_blocks():
    x = np.arange(2 * 3 * 64 * 64, dtype=float).reshape(2, 3, 64, 64)
    b = probe.binned_pixels(x, 8)
    assert b.shape == (2, 3 * 8 * 8)
    assert b[0, 0] == pytest.approx(x[0, 0, :8, :8].mean())
    with pytest.raises(ValueError, match="factor"):
        probe.binned_pixels(x, 7)


def test_recall_and_threshold():
    neg = np.linspace(0, 1, 1001)
    t = probe.threshold_at_fpr(neg, 0.01)
    assert (neg > t).mean() == pytest.approx(0.01, abs=0.002)
    rec, lo, hi = probe.recall_on_real(np.r_[np.full(30, 2.0), np.full(70, -1.0)], t)
    assert rec == 0.3 and lo < 0.3 < hi and hi - lo < 0.2
    assert probe.wilson_interval(0, 10)[0] == pytest.approx(0.0, abs=1e-12)
    assert probe.wilson_interval(10, 10)[1] == pytest.approx(1.0, abs=1e-12)
    assert probe.wilson_interval(10, 10)[0] == pytest.approx(0.7225, abs=1e-3)  # the textbook value for 10/10


def test_penultimate_features_shape():
    from lensnb.train import Normaliser, SmallResNet

    m = SmallResNet(8)
    f = probe.penultimate_features(m, Normaliser(), np.zeros((5, 3, 64, 64), np.float32), device="cpu")
    assert f.shape == (5, 32)
