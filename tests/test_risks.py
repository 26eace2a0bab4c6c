"""Each risk monitor of the failure-mode chapter (lensnb.risks) trips on a planted risk and stays quiet without it."""
import numpy as np
import pandas as pd
import pytest

from lensnb import risks


def test_monitor_verdict_reads_the_whole_interval():
    assert risks.monitor_verdict(0.06, 0.1, 0.05) == "fires"
    assert risks.monitor_verdict(-0.02, 0.04, 0.05) == "quiet"
    assert risks.monitor_verdict(0.01, 0.09, 0.05) == "undecidable"
    assert risks.monitor_verdict(-0.3, -0.15, -0.1, bad_above=False) == "fires"
    assert risks.monitor_verdict(-0.05, 0.02, -0.1, bad_above=False) == "quiet"
    assert risks.monitor_verdict(np.nan, 0.2, 0.05) == "undecidable"


def _scores(n, shift, rng):
    y = np.r_[np.ones(n, int), np.zeros(n, int)]
    return y, np.r_[rng.normal(shift, 1, n), rng.normal(0, 1, n)]


def test_memorisation_gap_trips_on_planted_memorisation_only():
    rng = np.random.default_rng(0)
    y, s_unseen = _scores(400, 1.0, rng)
    g = np.arange(800)
    y2, s_seen_mem = _scores(400, 3.0, rng)  # much easier on the training hosts: memorised
    y3, s_seen_ok = _scores(400, 1.0, rng)
    mem = risks.memorisation_gap(y2, s_seen_mem, g + 1000, y, s_unseen, g, n_boot=200)
    ok = risks.memorisation_gap(y3, s_seen_ok, g + 1000, y, s_unseen, g, n_boot=200)
    assert risks.monitor_verdict(mem[1], mem[2], 0.05) == "fires"
    assert risks.monitor_verdict(ok[1], ok[2], 0.05) != "fires" and abs(ok[0]) < 0.05


def test_tpr_change_detects_a_completeness_loss_and_not_a_null():
    rng = np.random.default_rng(1)
    y, s = _scores(1000, 2.5, rng)
    g = np.arange(len(y))
    worse = s.copy()
    worse[y == 1] -= 1.5  # the same lenses scored lower: completeness drops
    d = risks.tpr_change(y, s, worse, g, 0.01, n_boot=100)
    assert risks.monitor_verdict(d[1], d[2], -0.1, bad_above=False) == "fires"
    same = risks.tpr_change(y, s, s, g, 0.01, n_boot=50)
    assert same == (0.0, 0.0, 0.0)
    # subsets: small-theta lenses planted fainter
    small = (y == 1) & (np.arange(len(y)) % 2 == 0)
    s2 = s.copy()
    s2[small] -= 2.0
    t = risks.tpr_change(y, s2, s2, g, 0.01, sub_a=(y == 1) & ~small, sub_b=small, n_boot=100)
    assert t[0] < -0.3 and t[2] < 0


def test_relative_tpr_change_fires_where_an_absolute_threshold_cannot():
    # faint lenses: about 10% found at 1% FPR; a shift that loses most of them moves the absolute TPR by less than
    # 0.10 (an absolute monitor at -0.10 cannot fire), while the relative change shows most of the completeness lost
    rng = np.random.default_rng(3)
    y, s = _scores(2000, 1.0, rng)
    g = np.arange(len(y))
    worse = s.copy()
    worse[y == 1] -= 1.0
    ab = risks.tpr_change(y, s, worse, g, 0.01, n_boot=100)
    assert -0.1 < ab[0] < 0 and risks.monitor_verdict(ab[1], ab[2], -0.1, bad_above=False) != "fires"
    rel = risks.tpr_change(y, s, worse, g, 0.01, n_boot=100, relative=True)
    assert rel[0] < -0.5 and risks.monitor_verdict(rel[1], rel[2], -0.25, bad_above=False) == "fires"
    assert risks.tpr_change(y, s, s, g, 0.01, n_boot=50, relative=True) == (0.0, 0.0, 0.0)
    other = s.copy()
    other[y == 1] = rng.permutation(s[y == 1])  # the same distribution of lens scores: no loss
    q = risks.tpr_change(y, s, other, g, 0.01, n_boot=100, relative=True)
    assert risks.monitor_verdict(q[1], q[2], -0.25, bad_above=False) != "fires"


def test_naive_gates_are_optimistic_on_labels_with_no_signal():
    rng = np.random.default_rng(2)
    hosts = np.repeat(np.arange(60), 5)
    host_feat = rng.normal(0, 1, (60, 30))
    X = host_feat[hosts] + 0.05 * rng.normal(0, 1, (len(hosts), 30))  # a host's rows are near-identical
    y = risks.null_labels_by_host(hosts, 0)
    assert y.sum() == 150 and all(len(set(y[hosts == h])) == 1 for h in range(60))
    ins = risks.in_sample_optimism(X, y, hosts, n_boot=100)
    ung = risks.ungrouped_cv_optimism(X, y, hosts, n_boot=100)
    assert ins["fitted and scored on the same rows"] > 0.8 and ung["folds ignoring hosts"] > 0.9
    assert abs(ins["host-grouped CV"] - 0.5) < 0.15
    assert ins["ci_low"] > 0.05 and ung["ci_low"] > 0.05
    # with independent rows (no host structure), ungrouped folds are not optimistic
    Xi = rng.normal(0, 1, (len(hosts), 30))
    ok = risks.ungrouped_cv_optimism(Xi, y, hosts, n_boot=100)
    assert abs(ok["optimism"]) < 0.1


def test_one_class_slice_is_refused():
    y = np.r_[np.ones(100, int), np.zeros(100, int)]
    r = risks.one_class_slice(y, 50)
    assert r["classes in the slice"] == 1 and r["naive AUROC"] == 0.5 and "only class [1]" in r["lensnb"]
    ok = risks.one_class_slice(np.tile([1, 0], 100), 50)
    assert ok["lensnb"] == "" and ok["classes in the slice"] == 2


def test_imbalanced_pools_split_by_the_column():
    props = pd.DataFrame({"psf_fwhm_used_r": np.arange(10.0)}, index=[f"h{i}" for i in range(10)])
    pos, neg = risks.imbalanced_pools(props, "psf_fwhm_used_r", 0)
    assert set(pos) == {f"h{i}" for i in range(5, 10)} and set(neg) == {f"h{i}" for i in range(5)}


def test_an_undecidable_monitor_says_the_size_that_would_decide_it():
    from lensnb import risks

    assert risks.thresholds_in("outside (0.35, 0.65)") == [0.35, 0.65] and risks.thresholds_in("< −0.25 (relative)") == [-0.25]
    # estimate 0.60, interval 0.50-0.70 against 0.65: the upper half (0.10) must shrink to the distance (0.05): 4x
    assert abs(risks.deciding_factor(0.60, 0.50, 0.70, [0.35, 0.65]) - 4.0) < 1e-9
    assert abs(risks.deciding_factor(0.30, 0.20, 0.34, [0.35, 0.65]) - (0.04 / 0.05) ** 2) < 1e-9  # decided already
    assert risks.deciding_factor(0.65, 0.6, 0.7, [0.65]) == float("inf")
    assert risks.to_decide("quiet", 0.1, 0.0, 0.15, "> 0.20") == ""
    assert risks.to_decide("undecidable", 0.15, 0.05, 0.25, "> 0.20") == "≈ 4.0× this run's test hosts"
    assert risks.monitor_verdict(0.05, 0.25, 0.20) == "undecidable" and risks.monitor_verdict(0.05, 0.19, 0.20) == "quiet"


def test_memorisation_by_bin_fires_only_where_the_training_hosts_are_remembered():
    """Seen-host scores raised for the lenses of one bin only: that bin's gap is large and its interval excludes
    zero; the other bin's interval holds zero; 'all lenses' equals risks.memorisation_gap."""
    import pandas as pd

    from lensnb.experiment import memorisation_by_bin

    rng = np.random.default_rng(1)
    n = 400
    y = np.r_[np.ones(n // 2, int), np.zeros(n // 2, int)]
    b = np.where(y == 1, np.where(np.arange(n) % 2 == 0, "small", "large"), None)
    g = np.arange(n) // 2
    Su = rng.normal(size=(2, n)) + y
    Ss = rng.normal(size=(2, n)) + y + 1.5 * ((b == "small") & (y == 1))
    cats = ["small", "large"]
    t = memorisation_by_bin((y, Ss, g + 10_000, pd.Categorical(b, categories=cats)),
                            (y, Su, g, pd.Categorical(b, categories=cats)), n_boot=200, seed=0).set_index("lenses")
    assert t.loc["small", "ci_low"] > 0.1
    assert t.loc["large", "ci_low"] < 0 < t.loc["large", "ci_high"]
    assert tuple(t.loc["all lenses", ["gap", "ci_low", "ci_high"]]) == pytest.approx(
        risks.memorisation_gap(y, Ss, g + 10_000, y, Su, g, n_boot=200, seed=0))


# ---------------------------------------------------------------- the register's families, one function each
def test_core_shortcut_rows_fire_where_either_core_gate_does_and_are_quiet_only_where_both_pass():
    g = pd.DataFrame({"candidate": ["paired_raw"] * 2 + ["unpaired_raw"] * 2,
                      "gate": ["core LR", "nonlinear core"] * 2, "auroc": [0.55, 0.80, 0.52, 0.55],
                      "ci_low": [0.50, 0.75, 0.48, 0.50], "ci_high": [0.60, 0.85, 0.56, 0.60],
                      "verdict": ["no shortcut", "shortcut", "no shortcut", "no shortcut"]})
    rows = risks.core_shortcut_rows(g, 0.65)
    assert [r["verdict"] for r in rows] == ["fires", "quiet"]
    assert rows[0]["threshold"] == "outside (0.35, 0.65)" and "nonlinear gate: 0.80" in rows[0]["measured"]


def test_pool_confounder_rows_fire_on_pools_split_by_seeing_and_not_on_random_pools():
    rng = np.random.default_rng(4)
    n_hosts, k = 800, 2
    host = np.repeat(np.arange(n_hosts), k)
    psf = np.repeat(rng.uniform(1.0, 1.8, n_hosts), k)
    meta = pd.DataFrame({"ra": host * 1.0, "dec": 0.0, "psf_fwhm_used_r": psf,
                         "host_z": np.repeat(rng.uniform(0.3, 0.8, n_hosts), k)})
    from lensnb.pools import host_key

    keys = host_key(meta).to_numpy()
    hosts = np.unique(keys)
    lab = rng.permutation(len(hosts)) % 2
    t = pd.DataFrame({"host": np.repeat(hosts, 2), "label": np.repeat(lab, 2)})
    rows, res = risks.pool_confounder_rows(meta, t, hosts, 800, 0.65, n_boot=100, seed=0)
    assert [r["verdict"] for r in rows] == ["quiet", "fires"]
    assert res["planted"].statistic > 0.9 and 0.35 < res["random"].statistic < 0.65


def test_processing_path_rows_are_quiet_for_identical_pairs_and_fire_on_a_planted_float16_trip():
    rng = np.random.default_rng(5)
    n = 120
    ctrl = rng.normal(0, 1e-3, (n, 3, 64, 64)).astype(np.float32) + 0.01
    rows, worst = risks.processing_path_rows(ctrl.copy(), ctrl, np.arange(n), n_boot=100, seed=0)
    assert [r["verdict"] for r in rows] == ["quiet", "fires"] and len(worst) == 2


def test_theta_and_variant_rows_read_planted_losses_and_skip_small_bins():
    rng = np.random.default_rng(6)
    n = 400
    y = np.r_[np.ones(n, int), np.zeros(n, int)]
    theta = np.r_[np.where(np.arange(n) % 2 == 0, 0.5, 2.0), np.full(n, np.nan)]
    from lensnb.detectability import theta_bins

    bins = theta_bins(theta, np.ones(2 * n))
    S = np.stack([np.r_[np.where(theta[:n] < 1, rng.normal(0.5, 1, n), rng.normal(4, 1, n)), rng.normal(0, 1, n)]])
    rows = risks.theta_rows(y, S, np.arange(2 * n), bins, 0.05, 0.25, n_boot=100, seed=0)
    assert len(rows) == 1 and rows[0]["verdict"] == "fires"
    few = np.r_[np.arange(0, 16, 2), np.arange(1, n, 2), np.arange(n, 2 * n)]  # 8 small-θ_E lenses: too few
    assert risks.theta_rows(y[few], S[:, few], few, theta_bins(theta[few], np.ones(len(few))), 0.05, 0.25,
                            n_boot=50, seed=0) == []
    base = np.stack([np.r_[rng.normal(3, 1, n), rng.normal(0, 1, n)]])
    worse = base.copy()
    worse[:, :n] -= 2.0
    rows, table = risks.variant_rows(y, base, np.arange(2 * n), {"clumpy sources": (worse, "source morphology", "m"),
                                                                  "PSF FWHM +10%": (base, "PSF mismatch", "m")},
                                     0.05, 0.05, 0.25, n_boot=100, seed=0)
    got = {r["risk"]: r["verdict"] for r in rows}
    assert got == {"source morphology: clumpy sources": "fires",
                   "source morphology: clumpy sources, completeness": "fires", "PSF mismatch: PSF FWHM +10%": "quiet"}
    assert list(table["variant"]) == ["clumpy sources", "PSF FWHM +10%"]


def test_register_frame_marks_demonstrations_and_says_what_would_decide():
    rows = [risks.register_row("a risk", "m", "x", 0.1, 0.0, 0.2, "mon", "> 0.05", "undecidable", "fix"),
            risks.register_row("gate artifact: one-class slice", "m", "x", 0.5, np.nan, np.nan, "mon", "refuses",
                               "refused by lensnb", "fix"),
            risks.register_row("sim-to-real gap: recall on real lenses (planted)", "m", "x", -0.5, -0.6, -0.4, "mon",
                               "< −0.25 (relative)", "fires", "fix")]
    reg = risks.register_frame(rows)
    assert list(reg["demonstration"]) == [False, True, True]
    assert reg.loc[0, "to decide"].startswith("≈") and reg.loc[1, "size here (95% CI)"] == "0.500"
    summary = risks.register_summary(pd.concat([reg, reg.iloc[[0]].assign(risk="b", verdict="fires")],
                                               ignore_index=True))
    assert summary == {"n_risks": 2, "n_fire": 1, "n_undecidable": 1, "fired": "*b*"}
    assert risks.register_summary(reg)["fired"] == "none"


def test_brightness_risk_fires_on_a_planted_completeness_loss_and_says_what_it_needs_without_a_bright_model():
    rng = np.random.default_rng(8)
    y, s = _scores(800, 3.0, rng)
    worse = s.copy()
    worse[y == 1] -= 2.0
    meta, bright = pd.DataFrame({"arc_snr": [10.0, 20.0, 30.0]}), pd.DataFrame({"arc_snr": [80.0, 90.0]})
    rows, text = risks.brightness_risk(y, s[None], worse[None], np.arange(len(y)), 0.01, 0.25, "detectable",
                                       bright_meta=bright, meta=meta, n_boot=100, seed=0)
    assert [r["verdict"] for r in rows] == ["fires"]
    assert text == "The bright training set's median arc S/N is 85; the detectable one's is 20."
    rows, text = risks.brightness_risk(y, s[None], s[None], np.arange(len(y)), 0.01, 0.25, "detectable",
                                       bright_meta=bright, meta=meta, n_boot=50, seed=0)
    assert rows[0]["verdict"] != "fires"
    for S_bright, fpr in ((None, 0.01), (worse[None], None)):
        rows, text = risks.brightness_risk(y, s[None], S_bright, np.arange(len(y)), fpr, 0.25, "detectable",
                                           bright_meta=bright, meta=meta, n_boot=50, seed=0)
        assert rows == [] and text.startswith("The brightness risk needs")


def test_gate_reading_names_the_interval_and_the_monitor_word():
    from types import SimpleNamespace

    r = SimpleNamespace(statistic=0.7, ci_low=0.66, ci_high=0.74, verdict="shortcut")
    assert risks.gate_reading(r) == ("0.700 (0.660–0.740), fires", "fires")
    assert risks.gate_reading(SimpleNamespace(statistic=0.5, ci_low=0.4, ci_high=0.6, verdict="no shortcut"))[1] == "quiet"
    assert risks.gate_word("undecidable") == "undecidable"


def test_probe_demos_without_the_simulator_say_so_and_with_planted_gaps_read_as_expected():
    from lensnb import alternatives as alt

    note, text = risks.probe_demos(alt.TestSet("t", pd.DataFrame({"label": [1, 1, 0, 0], "host": list("abcd")}),
                                               images=np.zeros((4, 3, 64, 64), np.float32)),
                                   {}, 0.65, n_boot=10, seed=0)
    assert list(note.columns) == ["note"] and text == "The planted-gap demonstration needs the simulator."
    rng = np.random.default_rng(2)
    n = 120
    yy, xx = np.mgrid[:64, :64] - 31.5
    ring = np.exp(-((np.hypot(xx, yy) - 6) ** 2) / 4).astype(np.float32)
    ctrl = (rng.normal(0, 0.01, (n, 3, 64, 64)) + np.exp(-np.hypot(xx, yy) / 4) * rng.uniform(0.5, 2, (n, 1, 1, 1))
            ).astype(np.float32)
    stamps = ctrl + 0.05 * ring * rng.uniform(0.5, 1.5, (n, 1, 1, 1)).astype(np.float32)
    table = pd.DataFrame({"label": np.ones(n, int), "host": [f"h{i}" for i in range(n)]})
    test = alt.TestSet("t", table, images=stamps, controls=ctrl)
    clumpy = alt.TestSet("c", table, images=ctrl + 0.05 * np.roll(ring, 9, axis=1)[None, None] * 3, controls=ctrl)
    demos, text = risks.probe_demos(test, {"clumpy sources": clumpy, "red sources (host colours)": clumpy}, 0.65,
                                    n_boot=50, seed=0)
    assert "clumpy sources" in set(demos["planted gap"]) and "red sources (host colours)" not in set(demos["planted gap"])
    assert list(demos.columns) == ["planted gap", "input", "expected", "probe AUROC (95% CI)", "verdict", "as expected"]
    got = demos.set_index(["planted gap", "input"])["verdict"]
    assert got[("none (two halves of one sample)", "host-subtracted")] == "quiet"
    assert got[("clumpy sources", "host-subtracted")] == "fires"
    assert text.startswith(f"On {len(demos)} planted cases the probe reads as expected in ")
