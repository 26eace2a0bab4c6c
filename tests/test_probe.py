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


def test_real_lens_check_sizes_follow_the_intervals_they_promise():
    """The lens count for recall within ±0.1 gives a Wilson interval that narrow and one lens fewer does not; the
    probe size decides a probe at its reading and one image fewer does not; a reading nearer the threshold needs
    more."""
    from lensnb import probe

    for r in (0.5, 0.8, 0.95):
        n = probe.lenses_for_recall(r, 0.1)
        lo, hi = probe.wilson_interval(int(round(r * n)), n)
        assert (hi - lo) / 2 <= 0.1
        lo, hi = probe.wilson_interval(int(round(r * (n - 1))), n - 1)
        assert (hi - lo) / 2 > 0.1
    n = probe.probe_sizes(0.5, 0.65)
    assert 1.96 * probe.auroc_se(0.5, n, n) < 0.15 <= 1.96 * probe.auroc_se(0.5, n - 1, n - 1)
    assert probe.probe_sizes(0.6, 0.65) > probe.probe_sizes(0.5, 0.65)
    assert probe.probe_sizes(0.5, 0.65, ratio=10) < probe.probe_sizes(0.5, 0.65)
    with pytest.raises(ValueError):
        probe.probe_sizes(0.65, 0.65)


def test_planted_gap_demos_catch_brighter_arcs_and_ignore_the_hosts():
    """Two halves of one planted sample: no gap reads quiet, arcs 1.5 mag brighter fire, a host-brightness split reads
    quiet on host-subtracted images and fires on raw stamps."""
    from lensnb import probe
    from lensnb.config import RADIUS_PX

    rng = np.random.default_rng(0)
    n = 240
    hosts = np.arange(n) // 2
    host_amp = np.exp(rng.normal(0, 0.6, n // 2))[hosts]
    host = np.exp(-RADIUS_PX / 4.0)[None, None] * host_amp[:, None, None, None] * np.ones((1, 3, 1, 1))
    arc = np.exp(-0.5 * ((RADIUS_PX - 8) / 1.2) ** 2)[None, None] * rng.uniform(0.2, 0.4, (n, 1, 1, 1))
    noise = rng.normal(0, 0.05, (n, 3, 64, 64))
    ctrls = (host + noise).astype(np.float32)
    stamps = (host + arc + noise).astype(np.float32)
    t = probe.planted_gap_demos(stamps, ctrls, hosts, n_boot=100, seed=0).set_index(["planted gap", "input"])
    assert t.loc[("none (two halves of one sample)", "host-subtracted"), "verdict"] != "fires"
    assert t.loc[("arcs 1.5 mag brighter", "host-subtracted"), "verdict"] == "fires"
    assert t.loc[("hosts only: brighter vs fainter hosts", "host-subtracted"), "verdict"] != "fires"
    assert t.loc[("hosts only: brighter vs fainter hosts", "raw stamps"), "verdict"] == "fires"


def test_real_check_sizes_are_the_book_interval_codes_sizes():
    rng = np.random.default_rng(0)
    y = np.r_[np.ones(500, int), np.zeros(2000, int)]
    s = np.r_[rng.normal(2.5, 1, 500), rng.normal(0, 1, 2000)]
    sz = probe.real_check_sizes(s, y, 0.01, 0.65)
    rec = probe.recall_on_real(s[y == 1], probe.threshold_at_fpr(s[y == 0], 0.01))[0]
    assert sz["sim_recall"] == rec and 0 < rec < 1
    assert sz["recall"] == probe.lenses_for_recall(rec, 0.1) and sz["nonlens"] == 500
    assert sz["probe_quiet"] == probe.probe_sizes(0.5, 0.65) and sz["gap_auc"] == pytest.approx(0.75)
    assert sz["probe_fire"] == probe.probe_sizes(0.75, 0.65)
    assert probe.real_check_sizes(s, y, 0.001, 0.65)["nonlens"] == 5000
