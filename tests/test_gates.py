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


def _planted(kind, strength, seed=0, n_hosts=30, per=3):
    """Paired-like data with one planted difference between classes."""
    rng = np.random.default_rng(seed)
    X, y, g = [], [], []
    for h in range(n_hosts):
        host = rng.normal(0, 0.5, (3, 1, 1)) + rng.normal(0, 0.05, (3, 64, 64))
        for _ in range(per):
            for lab in (0, 1):
                img = host + rng.normal(0, 1, (3, 64, 64))
                if lab and kind == "annulus":
                    img[:, 20:24, 40:44] += strength  # ~12 px from the centre
                if lab and kind == "flux":
                    img[0] += strength * 0.5  # a g-band excess everywhere
                X.append(img.astype(np.float32)), y.append(lab), g.append(h)
    return np.array(X), np.array(y), np.array(g)


@pytest.mark.parametrize("kind, gate", [("annulus", "annulus LR"), ("flux", "flux & colour")])
def test_each_image_gate_fires_on_its_planted_shortcut(kind, gate):
    """Arc-signal gates: 'arc detected' on a planted excess in their region, 'arc not detected' without."""
    X, y, g = _planted(kind, 2.0)
    r = gates.feature_gate(gate, gates.GATES[gate].features(X), y, g, n_boot=150)
    assert r.verdict == "arc detected" and r.kind == "arc signal", r
    X, y, g = _planted(kind, 0.0, seed=1)
    r = gates.feature_gate(gate, gates.GATES[gate].features(X), y, g, n_boot=150)
    assert r.verdict == "arc not detected", r


def test_radial_profile_gate_fires_on_a_ring():
    X, y, g = _planted("annulus", 0.0)
    yy, xx = np.mgrid[0:64, 0:64]
    ring = (np.hypot(xx - 31.5, yy - 31.5) > 9) & (np.hypot(xx - 31.5, yy - 31.5) < 12)
    X[y == 1] += 0.3 * ring
    assert gates.feature_gate("r", gates.radial_profile_features(X), y, g, n_boot=150).verdict == "shortcut"


def test_metadata_gate_fires_on_imbalanced_pools_and_skips_without_columns():
    import pandas as pd

    rng = np.random.default_rng(0)
    g = np.repeat(np.arange(40), 5)
    y = (g % 2).astype(int)  # unpaired: each host one class
    psf = rng.normal(1.3, 0.1, 40)[g] + 0.15 * y
    meta = pd.DataFrame({"psf_fwhm_used_r": psf})
    assert gates.metadata_gate(meta, y, g, ["psf_fwhm_used_r"], n_boot=150).verdict == "shortcut"
    meta["psf_fwhm_used_r"] = rng.normal(1.3, 0.1, 40)[g]
    assert gates.metadata_gate(meta, y, g, ["psf_fwhm_used_r"], n_boot=150).verdict != "shortcut"
    assert gates.metadata_gate(meta, y, g, ["host_z"]) is None


def test_fill_from_annulus_removes_core_information():
    X, y, g = _data(core_signal=3.0)
    filled = gates.fill_from_annulus(X, gates.CORE_MASK)
    assert gates.core_lr_gate(X, y, g, n_boot=100).verdict == "shortcut"
    assert gates.core_lr_gate(filled, y, g, n_boot=100).verdict == "no shortcut"
    assert np.array_equal(filled[:, :, ~gates.CORE_MASK], X[:, :, ~gates.CORE_MASK])


def test_model_gate_refuses_hosts_it_was_trained_on():
    y = np.array([0, 1] * 10)
    g = np.repeat(np.arange(10), 2)
    with pytest.raises(ValueError, match="both the model's training set"):
        gates.model_gate("m", np.arange(20.0), y, g, 0.5, fit_groups=[3, 99])


def test_arc_masks_find_the_arc():
    ctrl = np.random.default_rng(0).normal(0, 1, (2, 3, 64, 64)).astype(np.float32)
    stamp = ctrl.copy()
    stamp[:, :, 10:14, 50:54] += 5.0
    m = gates.arc_masks(stamp, ctrl, dilate=0)
    assert m[:, 10:14, 50:54].all() and m.sum() <= 2 * 16 + 20


def test_reliance_gate_fires_for_a_core_model_and_not_for_an_annulus_model():
    X, y, g = _data(core_signal=1.0)
    X[y == 1, :, 20:24, 40:44] += 1.0  # the arc: a blob ~12 px out
    filled = gates.fill_from_annulus(X, gates.CORE_MASK)

    def core_model(x):
        return x[:, :, 30:34, 30:34].mean(axis=(1, 2, 3))

    def arc_model(x):
        return x[:, :, 20:24, 40:44].mean(axis=(1, 2, 3))

    r = gates.reliance_gate("core", core_model(X), core_model(filled), y, g, n_boot=200)
    assert r["verdict"] == "relies" and r["AUROC drop"] > 0.3
    r = gates.reliance_gate("arc", arc_model(X), arc_model(filled), y, g, n_boot=200)
    assert r["verdict"] == "does not rely" and abs(r["AUROC drop"]) < 1e-9
    with pytest.raises(ValueError, match="both the model's training set"):
        gates.reliance_gate("x", arc_model(X), arc_model(filled), y, g, fit_groups=[0])


def test_null_injection_data_keeps_every_image_gate_quiet():
    # a 'null injection': positives are the negatives' images plus nothing but their own noise realisation
    X, y, g = _data(core_signal=0.0, seed=4)
    for r in gates.image_gates(X, y, g, n_boot=150):
        assert r.verdict in ("no shortcut", "arc not detected"), r


def test_radial_profile_gate_quiet_without_a_ring():
    X, y, g = _data(core_signal=0.0, seed=5)
    assert gates.feature_gate("r", gates.radial_profile_features(X), y, g, n_boot=150).verdict == "no shortcut"


def test_newton_logistic_reaches_sklearns_optimum():
    """Same objective as LogisticRegression(C) (l2, unpenalised intercept): on correlated features, the
    Newton solution matches lbfgs run to a tight tolerance, and a wrong C would not."""
    from sklearn.linear_model import LogisticRegression

    from lensnb.gates import NewtonLogistic

    rng = np.random.default_rng(0)
    base = rng.normal(size=(600, 1))
    X = base + 0.3 * rng.normal(size=(600, 40))  # strongly correlated columns, like core pixels
    y = (base[:, 0] + 0.5 * rng.normal(size=600) > 0.2).astype(int)
    for C in (0.1, 1.0):
        ref = LogisticRegression(C=C, tol=1e-12, max_iter=100_000).fit(X, y)
        mine = NewtonLogistic(C=C).fit(X, y)
        assert mine.n_iter_ < 30
        np.testing.assert_allclose(mine.coef_, ref.coef_, atol=1e-5)
        np.testing.assert_allclose(mine.intercept_, ref.intercept_, atol=1e-5)
        np.testing.assert_allclose(mine.decision_function(X), ref.decision_function(X), atol=1e-4)
    other = NewtonLogistic(C=10.0).fit(X, y)
    assert np.abs(other.coef_ - ref.coef_).max() > 1e-2


def test_newton_logistic_is_finite_on_separable_data():
    from lensnb.gates import NewtonLogistic

    X = np.r_[np.zeros((20, 2)), np.ones((20, 2)) * 5]
    y = np.r_[np.zeros(20), np.ones(20)]
    m = NewtonLogistic(C=1.0).fit(X, y)
    assert np.all(np.isfinite(m.coef_)) and (m.decision_function(X[20:]) > 0).all()
    with pytest.raises(ValueError, match="two classes"):
        NewtonLogistic().fit(X, np.zeros(40))


def test_gate_by_bin_finds_a_shortcut_planted_in_one_bin_only(tmp_path, monkeypatch):
    """A core signal planted in the lenses of one bin: the per-bin gate fires there and not in the other bin,
    and the cached out-of-fold scores equal a fresh fit."""
    from lensnb import config

    monkeypatch.setattr(config, "PROCESSED_DIR", tmp_path)
    X, y, g = _data(n_hosts=40, per=3, core_signal=0.0, seed=2)
    rng = np.random.default_rng(0)
    small = np.where(y == 1, rng.random(len(y)) < 0.5, False)
    X[small, :, 30:34, 30:34] += 1.5
    bins = np.where(y == 1, np.where(small, "small", "large"), None)
    t = gates.gate_by_bin("core LR", gates.core_features(X), y, g, bins, n_boot=200).set_index("lenses")
    assert t.loc["small", "verdict"] == "shortcut" and t.loc["small", "ci_low"] > 0.65
    assert t.loc["large", "ci_high"] < t.loc["small", "ci_low"] and t.loc["large", "verdict"] != "shortcut"
    s1 = gates.cached_cv_scores(gates.core_features(X), y, g)
    np.testing.assert_array_equal(s1, gates.grouped_cv_scores(gates.core_features(X), y, g))
    r = gates.cached_feature_gate("core LR", gates.core_features(X), y, g, n_boot=200)
    f = gates.feature_gate("core LR", gates.core_features(X), y, g, n_boot=200)
    assert (r.statistic, r.ci_low, r.ci_high, r.verdict) == (f.statistic, f.ci_low, f.ci_high, f.verdict)


def _newton_problem(rng, n: int, d: int):
    """A Newton step's inputs on correlated columns plus an intercept column (rows ``Xb``, weights ``w``, penalty
    ``reg``, gradient ``g``) and the step of the general solve on the full Hessian, the reference for both routes."""
    Xb = np.hstack([rng.normal(size=(n, d)) + rng.normal(size=(n, 1)), np.ones((n, 1))])
    w = rng.uniform(0.01, 0.25, n)
    reg = np.r_[np.ones(d), 0.0]
    g = rng.normal(size=d + 1)
    H = (Xb * w[:, None]).T @ Xb
    H[np.diag_indices(d + 1)] += reg + 1e-12
    return Xb, w, reg, g, np.linalg.solve(H, g)


def test_newton_step_with_fewer_rows_than_features_is_the_full_solve():
    """The (n x n) route a small table under a 2,000-pixel gate takes gives the step of the (d x d) solve, and the
    fit it drives reaches the optimum scikit-learn's solver approaches."""
    from sklearn.linear_model import LogisticRegression

    rng = np.random.default_rng(3)
    n, d = 120, 400
    Xb, w, reg, g, full = _newton_problem(rng, n, d)
    np.testing.assert_allclose(gates.NewtonLogistic._newton_step(Xb, w, reg, g), full, rtol=0, atol=1e-8 * np.abs(full).max())
    X = Xb[:, :-1]
    y = (X[:, :3].sum(1) + rng.normal(size=n) > 0).astype(int)
    ours = gates.NewtonLogistic(C=1.0).fit(X, y)
    ref = LogisticRegression(C=1.0, tol=1e-10, max_iter=20000).fit(X, y)
    np.testing.assert_allclose(ours.decision_function(X), ref.decision_function(X), atol=1e-3)


def test_wide_fit_with_a_float32_hessian_reaches_the_float64_optimum(monkeypatch):
    """Above ``F32_HESSIAN_COLUMNS`` the Newton step forms its Hessian in float32; the gradient and the stopping test
    stay float64, so the fit lands on the optimum of the float64 route, in about as many steps."""
    rng = np.random.default_rng(4)
    n, d = 700, 300
    X = rng.normal(size=(n, d)) + rng.normal(size=(n, 1))
    y = (X[:, :5].sum(1) + rng.normal(size=n) > 0).astype(int)
    monkeypatch.setattr(gates, "F32_HESSIAN_COLUMNS", 10**9)
    exact = gates.NewtonLogistic(C=1.0).fit(X, y)
    monkeypatch.setattr(gates, "F32_HESSIAN_COLUMNS", 100)
    f32 = gates.NewtonLogistic(C=1.0).fit(X, y)
    s64, s32 = exact.decision_function(X), f32.decision_function(X)
    assert not np.array_equal(s64, s32)  # the float32 route ran
    np.testing.assert_allclose(s32, s64, rtol=0, atol=1e-6 * np.abs(s64).max())
    assert abs(f32.n_iter_ - exact.n_iter_) <= 2


def test_gate_fits_keep_to_the_threads_the_build_gives_each_chapter(monkeypatch):
    """A large fit uses every core of a small machine, unless OMP_NUM_THREADS caps it (the book's chapters run side
    by side on one thread each, where a second OpenMP thread per fit only spin-waits against the other chapter)."""
    import os

    monkeypatch.setattr(os, "cpu_count", lambda: 2)
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    assert gates._gate_threads(gates.PARALLEL_ROWS) == 2 and gates._gate_threads(10) == 1
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    assert gates._gate_threads(gates.PARALLEL_ROWS) == 1
    monkeypatch.setattr(os, "cpu_count", lambda: 16)
    assert gates._gate_threads(10) == 1
    monkeypatch.setenv("OMP_NUM_THREADS", "4")
    assert gates._gate_threads(10) == 4
    monkeypatch.setenv("OMP_NUM_THREADS", "x")  # not a number: ignored
    assert gates._gate_threads(10) == 8


def test_newton_step_with_more_rows_than_features_is_the_full_solve(monkeypatch):
    """The (d x d) route (a rank-k Hessian and a Cholesky solve) gives the general solve's step on the full Hessian;
    where the factorisation fails it falls back to that solve."""
    import scipy.linalg

    Xb, w, reg, g, full = _newton_problem(np.random.default_rng(5), 500, 60)
    step = gates.NewtonLogistic._newton_step(Xb, w, reg, g)
    np.testing.assert_allclose(step, full, rtol=0, atol=1e-10 * np.abs(full).max())

    def fail(*args, **kwargs):
        raise scipy.linalg.LinAlgError("not positive definite")

    monkeypatch.setattr(scipy.linalg, "cho_factor", fail)
    np.testing.assert_allclose(gates.NewtonLogistic._newton_step(Xb, w, reg, g), full, rtol=0,
                               atol=1e-10 * np.abs(full).max())
