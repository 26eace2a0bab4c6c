"""Sound verdicts: differences from joint bootstraps, equivalence by TOST, what E3 - E2 can detect,
two-sided and null gates that can fail, relative reliance, sizes from the data, generated sentences."""
import numpy as np
import pandas as pd
import pytest

from lensnb import experiment, gates, metrics, pools, power, prose


def _paired_scores(n_hosts=60, per=10, host_sd=1.0, signal=1.0, seed=0):
    """Per-image scores with a host effect shared by a host's stamps and controls."""
    rng = np.random.default_rng(seed)
    h = rng.normal(0, host_sd, n_hosts)
    g = np.repeat(np.arange(n_hosts), per)
    s_pos = h[g] + signal + rng.normal(0, 1, len(g))
    s_neg = h[g] + rng.normal(0, 1, len(g))
    table = pd.DataFrame({"row": np.r_[np.arange(len(g)), np.arange(len(g))], "label": np.r_[np.ones(len(g)), np.zeros(len(g))].astype(int),
                          "host": np.r_[g, g]})
    return table, np.r_[s_pos, s_neg]


# ----------------------------------------------------------------------------- differences and TOST
def test_joint_difference_of_identical_sets_is_exactly_zero():
    t, s = _paired_scores()
    r = metrics.seeded_difference(t.label, s, t.host, t.label, s, t.host, n_boot=200)
    assert r.estimate == 0 and r.ci_low == 0 and r.ci_high == 0


def test_joint_bootstrap_is_narrower_than_independent_intervals_for_shared_hosts():
    t, s = _paired_scores(host_sd=2.0)
    rng = np.random.default_rng(1)
    s2 = s + 0.1 * rng.normal(size=len(s))
    joint = metrics.seeded_difference(t.label, s, t.host, t.label, s2, t.host, n_boot=300)
    a = metrics.seeded_auroc(t.label, s, t.host, n_boot=300)
    b = metrics.seeded_auroc(t.label, s2, t.host, n_boot=300)
    naive = np.hypot(a.ci_high - a.ci_low, b.ci_high - b.ci_low)
    assert (joint.ci_high - joint.ci_low) < 0.5 * naive


def test_clustered_difference_se_matches_the_joint_bootstrap_and_hypot_for_disjoint_hosts():
    t, s = _paired_scores(n_hosts=80, host_sd=1.0, seed=3)
    rng = np.random.default_rng(4)
    s2 = s + 0.5 * rng.normal(size=len(s))
    d, se = power.auroc_difference_clustered(t.label, s, t.host, t.label, s2, t.host)
    boot = metrics.seeded_difference(t.label, s, t.host, t.label, s2, t.host, n_boot=800, seed=5)
    assert se == pytest.approx((boot.host_high - boot.host_low) / (2 * 1.96), rel=0.3)
    # disjoint hosts: no covariance, the SE is the hypot of the two
    t2 = t.assign(host=t.host + 1000)
    d, se = power.auroc_difference_clustered(t.label, s, t.host, t2.label, s2, t2.host)
    se_a = power.auroc_clustered(t.label, s, t.host)[1]
    se_b = power.auroc_clustered(t2.label, s2, t2.host)[1]
    assert se == pytest.approx(np.hypot(se_a, se_b), rel=0.05)


@pytest.mark.parametrize("lo, hi, expect", [(-0.03, 0.04, "equivalent"), (0.05, 0.12, "not equivalent"),
                                            (-0.2, -0.06, "not equivalent"), (-0.02, 0.07, "undecidable")])
def test_equivalence_verdict_is_tost_on_the_90_percent_interval(lo, hi, expect):
    assert metrics.equivalence_verdict(lo, hi, 0.05) == expect


def test_seed_spread_widens_the_interval_and_is_reported():
    t, s = _paired_scores()
    rng = np.random.default_rng(2)
    S = np.stack([s + 0.8 * rng.normal(size=len(s)) for _ in range(3)])
    one = metrics.seeded_auroc(t.label, S[:1], t.host, n_boot=200)
    three = metrics.seeded_auroc(t.label, S, t.host, n_boot=200)
    assert three.seed_sd > 0 and len(three.per_seed) == 3
    assert three.ci_low < three.host_low and three.ci_high > three.host_high
    assert one.seed_sd == 0 and one.ci_low == one.host_low


# ----------------------------------------------------------------------------- what E3 - E2 detects
def test_e3_minus_e2_is_zero_in_expectation_for_a_per_image_shortcut_scorer():
    """A scorer that is all shortcut (a core excess on top of large host-to-host variation) separates the
    classes, yet its paired-minus-unpaired AUROC averages to ~0 over unpaired forms of the same hosts."""
    t, s = _paired_scores(n_hosts=40, per=12, host_sd=0.3, signal=1.5)
    assert metrics.auroc(t.label, s) > 0.8
    gaps = experiment.gap_under_resplits(t, s, n_splits=300, seed=0)
    w = experiment.same_host_pair_share(t)
    assert w == pytest.approx(1 / 40)
    assert abs(gaps.gap.mean()) < 0.5 * w + 0.01  # |E[E3 - E2]| <= w (A_within - A_across) <= w / 2


def test_within_host_auroc_exposes_what_cross_host_pairs_hide():
    t, s = _paired_scores(n_hosts=50, per=5, host_sd=3.0, signal=1.0)
    within, across = metrics.within_across_auroc(t.label, s, t.host)
    assert within > across + 0.1  # expected 0.76 vs 0.59
    t2, s2 = _paired_scores(n_hosts=50, per=5, host_sd=0.0, signal=1.0)
    w2, a2 = metrics.within_across_auroc(t2.label, s2, t2.host)
    assert abs(w2 - a2) < 0.08


def test_joint_gap_power_has_narrower_intervals_than_the_former_calculation():
    rng = np.random.default_rng(0)
    hs = {h: rng.normal(1 + 0.5 * rng.normal(), 1, 25) for h in range(80)}
    hc = {h: np.full(25, rng.normal()) for h in range(80)}
    j = power.gap_power(hs, hc, 40, 12.5, 0.05, n_sim=60, joint=True)
    o = power.gap_power(hs, hc, 40, 12.5, 0.05, n_sim=60, joint=False)
    assert j["width"] < 0.75 * o["width"]


# ----------------------------------------------------------------------------- gates
def test_two_sided_verdict_flags_an_auroc_far_below_chance():
    assert gates.verdict(0.27, 0.34, 0.65) == "shortcut"
    assert gates.verdict(0.27, 0.38, 0.65) == "undecidable"
    assert gates.verdict(0.40, 0.60, 0.65) == "no shortcut"
    assert gates.arc_verdict(0.8, 0.9, 0.65) == "arc detected"
    with pytest.raises(ValueError, match="exceed 0.5"):
        gates.verdict(0.4, 0.6, 0.5)


def _variance_planted(n_hosts=40, per=4, extra=0.0, seed=0):
    """Core pixels of positives get extra zero-mean noise: no mean excess, more spread."""
    rng = np.random.default_rng(seed)
    X, y, g = [], [], []
    for h in range(n_hosts):
        host = rng.normal(0, 1.0, (3, 1, 1))
        for _ in range(per):
            for lab in (0, 1):
                img = host + rng.normal(0, 0.1, (3, 64, 64))
                if lab:
                    img[:, gates.CORE_SLICE, gates.CORE_SLICE] += extra * rng.choice([-1, 1], (3, 10, 10))
                X.append(img.astype(np.float32)), y.append(lab), g.append(h)
    return np.array(X), np.array(y), np.array(g)


def test_nonlinear_core_gate_catches_a_sign_symmetric_core_signal_that_the_lr_misses():
    X, y, g = _variance_planted(extra=0.3)
    lin = gates.core_lr_gate(X, y, g, n_boot=150)
    nl = gates.core_nonlinear_gate(X, y, g, n_boot=150)
    assert lin.verdict != "shortcut" and lin.ci_low < 0.65
    assert nl.verdict == "shortcut" and nl.ci_low > 0.9
    X, y, g = _variance_planted(extra=0.0, seed=1)
    assert gates.core_nonlinear_gate(X, y, g, n_boot=150).verdict == "no shortcut"


def _null_pairs(tmp_path):
    """Zero-flux arcs through lensnb.inject on a small team-format host manifest."""
    import sys
    sys.path.insert(0, str(__import__("pathlib").Path(__file__).parent))
    import corpus

    src = tmp_path / "hosts.parquet"
    corpus.good_frame(n_hosts=12, per_host=1).to_parquet(src)
    from lensnb.dataset import load
    from lensnb.inject import inject

    out = tmp_path / "null.parquet"
    inject(src, out, per_host=3, seed=0, arc_scale=0.0)
    imgs, meta = load(out)
    return imgs["stamp_npz"], imgs["ctrl_stamp_npz"], pools.host_key(meta).to_numpy()


def test_null_injection_through_the_real_path_is_quiet_and_every_planted_defect_leaks(tmp_path):
    from scipy.ndimage import shift

    s, c, g = _null_pairs(tmp_path)
    quiet = gates.null_pair_gate(s, c, g, n_boot=100)
    assert all(r.verdict == "quiet" and r.statistic == 0.5 for r in quiet)
    assert all(r.verdict == "quiet" for r in gates.null_image_gates(s, c, g, n_boot=50, nonlinear=False))
    planted = {"pedestal": s + np.float32(1e-4),
               "shift": shift(s, (0, 0, 0, 0.5), order=1, mode="nearest").astype(np.float32),
               "float16": s.astype(np.float16).astype(np.float32)}
    for name, x in planted.items():
        res = gates.null_pair_gate(x, c, g, n_boot=100)
        assert any(r.verdict == "leak" for r in res), name


def test_reliance_gate_uses_the_share_of_skill_lost():
    t, s = _paired_scores(n_hosts=60, per=6, host_sd=0.0, signal=2.0)
    y, g = t.label.to_numpy(), t.host.to_numpy()
    rng = np.random.default_rng(0)
    weak = np.where(y == 1, s - 1.8, s)  # masking removes most of the separation
    r = gates.reliance_gate("core", s, weak, y, g, relative=0.2, n_boot=200)
    assert r["verdict"] == "relies" and r["ci_low"] > 0.2
    same = s + 1e-3 * rng.normal(size=len(s))
    r = gates.reliance_gate("core", s, same, y, g, relative=0.2, n_boot=200)
    assert r["verdict"] == "does not rely"


def test_reliance_share_stays_in_0_1_and_needs_skill_above_chance():
    assert gates.share_of_skill_lost(0.9, 0.3) == 1.0 and gates.share_of_skill_lost(0.9, 0.95) == 0.0
    assert abs(gates.share_of_skill_lost(0.9, 0.7) - 0.5) < 1e-12 and np.isnan(gates.share_of_skill_lost(0.48, 0.4))
    # a weak model on few hosts: the unbounded ratio used to read e.g. "-2.091 (-2.813 to 3.950)"
    t, s = _paired_scores(n_hosts=12, per=3, host_sd=0.0, signal=0.25)
    y, g = t.label.to_numpy(), t.host.to_numpy()
    rng = np.random.default_rng(1)
    noisy = s + rng.normal(0, 1.0, size=len(s))
    r = gates.reliance_gate("core", s, noisy, y, g, n_boot=200)
    if r["verdict"] == gates.NO_SKILL:
        assert np.isnan(r["share of skill lost"]) and np.isfinite(r["AUROC drop"])
    else:
        assert 0.0 <= r["ci_low"] <= r["share of skill lost"] <= r["ci_high"] <= 1.0
    chance = rng.normal(size=len(s))  # a model at chance has no skill to lose
    r = gates.reliance_gate("core", chance, chance[::-1].copy(), y, g, n_boot=200)
    assert r["verdict"] == gates.NO_SKILL and "cannot be measured" in prose.reliance(
        "unpaired", "core", r["share of skill lost"], r["ci_low"], r["ci_high"], r["verdict"], 0.2)


def test_null_reading_needs_the_gate_outside_every_permutation():
    null = np.array([0.38, 0.45, 0.52, 0.41])
    assert experiment.null_reading(0.428, null) == "inside its null"  # far from 0.5, yet no direction
    assert experiment.null_reading(0.30, null) == "below its null"
    assert experiment.null_reading(0.70, null) == "above its null"


def test_reliance_sentence_per_bin():
    rel = pd.DataFrame({"masked": ["core", "core", "counter-image"], "θ_E bin": ["all θ_E", "> 1.25", "all θ_E"],
                        "positives": [40, 12, 40], "share of skill lost": [0.5, 0.1, np.nan],
                        "ci_low": [0.4, 0.0, np.nan], "ci_high": [0.6, 0.3, np.nan],
                        "verdict": ["relies", "undecidable", gates.NO_SKILL]})
    t = prose.reliance_by_bin(rel, "unpaired")
    assert t.startswith("the unpaired model loses, with the core hidden, a share of its skill above chance of all "
                        "lenses 0.500 (0.400–0.600) (relies, 40 lenses); > 1.25 0.100 (0.000–0.300) (undecidable")
    assert "with the counter-image hidden, a share of its skill above chance of all lenses not measurable" in t
    assert prose.reliance_by_bin(rel.iloc[:0], "unpaired") == ""


def test_counter_image_mask_sits_opposite_the_source():
    meta = pd.DataFrame({"inner_image_r_arcsec": [1.0, np.nan], "src_x_arcsec": [0.5, 0.1], "src_y_arcsec": [0.0, 0.0]})
    m = experiment.counter_image_masks(meta, 1.5)
    assert not m[1].any()
    rows, cols = np.nonzero(m[0])
    assert cols.mean() < 31.5 - 3 and abs(rows.mean() - 31.5) < 0.5


# ----------------------------------------------------------------------------- sizes from the data
def test_plan_sizes_takes_what_small_data_hold_and_refuses_below_the_minimum():
    import sys
    sys.path.insert(0, str(__import__("pathlib").Path(__file__).parent))
    import corpus

    meta = corpus.good_frame(n_hosts=120, per_host=6)
    p = pools.plan_sizes(meta, {"train": 300, "val": 75, "test": 40}, {"train": 2000, "val": 500, "test": 500}, 0)
    assert p.reduced and sum(p.n_hosts.values()) <= 120 and min(p.n_hosts.values()) >= 6
    split = pools.split_hosts(meta, p.n_hosts, 0, by=p.split_by)
    for s, n in p.n_per_class.items():
        pools.build_design("unpaired", meta, split[s], n, n, 0)  # never asks for more than exists
    assert "120 hosts" in p.note
    with pytest.raises(ValueError, match="needs at least"):
        pools.plan_sizes(corpus.good_frame(n_hosts=12, per_host=2), {"train": 300, "val": 75, "test": 40}, None, 0)
    full = pools.plan_sizes(meta, {"train": 60, "val": 20, "test": 20}, {"train": 100, "val": 40, "test": 40}, 0,
                            split_by="host")
    assert not full.reduced and full.n_per_class == {"train": 100, "val": 40, "test": 40}


def test_split_defaults_to_bricks_when_hosts_share_bricks():
    import sys
    sys.path.insert(0, str(__import__("pathlib").Path(__file__).parent))
    import corpus

    meta = corpus.good_frame(n_hosts=30, per_host=2)
    assert pools.default_split_by(meta) == "host"
    meta["brickname"] = np.repeat([f"b{i}" for i in range(10)], 6)
    assert pools.default_split_by(meta) == "brick"


# ----------------------------------------------------------------------------- generated sentences
def test_sentences_flip_with_the_numbers():
    lower = prose.design_difference("Core LR", "paired", "unpaired", -0.05, -0.08, -0.02)
    higher = prose.design_difference("Core LR", "paired", "unpaired", 0.05, 0.02, 0.08)
    unsure = prose.design_difference("Core LR", "paired", "unpaired", 0.01, -0.02, 0.04)
    assert "lower" in lower and "higher" in higher and "does not show" in unsure
    assert "lowers" in prose.balance(0.3, 0.1, 0.12) and "does not help" in prose.balance(0.1, 0.3, 0.12)
    assert "relies on" in prose.reliance("paired", "core", 0.5, 0.3, 0.7, "relies", 0.2)
    assert "does not rely" in prose.reliance("paired", "core", 0.05, 0.0, 0.1, "does not rely", 0.2)
    up = prose.trend("core LR", "unpaired", dict(hosts=25, auroc=0.6, ci_low=0.55, ci_high=0.65),
                     dict(hosts=300, auroc=0.8, ci_low=0.75, ci_high=0.85), 10000)
    flat = prose.trend("core LR", "unpaired", dict(hosts=25, auroc=0.6, ci_low=0.5, ci_high=0.7),
                       dict(hosts=300, auroc=0.62, ci_low=0.58, ci_high=0.66), 10000)
    assert "rises" in up and "can fail at full size" in up and "no trend" in flat


def test_an_auroc_below_chance_is_checked_against_the_gates_permutation_null():
    """Pure noise cross-validated on few hosts scatters below 0.5; a real inverted signal lies beyond the null."""
    rng = np.random.default_rng(0)
    n_hosts, per = 30, 4
    g = np.repeat(np.arange(n_hosts), per)
    y = (g < n_hosts // 2).astype(int)  # unpaired: each host one class
    X = rng.normal(size=(len(g), 5)) + rng.normal(size=(n_hosts, 5))[g]
    null = gates.cv_null(X, y, g, n_perm=19)
    assert null.mean() < 0.5  # the bias the check exists for
    assert gates.refine_inverted("shortcut", float(null.min()) + 1e-6, null) == gates.CV_ARTIFACT
    assert gates.refine_inverted("shortcut", float(null.min()) - 1e-6, null) == gates.INVERTED
    assert gates.refine_inverted("no shortcut", 0.45, null) == "no shortcut"


def test_matched_design_keeps_each_pair_in_one_fold():
    import sys
    sys.path.insert(0, str(__import__("pathlib").Path(__file__).parent))
    import corpus

    meta = corpus.good_frame(n_hosts=20, per_host=3)
    props = pd.DataFrame({"psf": meta.groupby(pools.host_key(meta))["psf_fwhm_used_r"].mean()})
    t = pools.build_design("matched", meta, pools.host_key(meta).unique(), 20, 20, 0, host_props=props)
    per_pair = t.groupby("fold_group")["host"].nunique()
    assert (per_pair == 2).all() and t.groupby("host")["fold_group"].nunique().max() == 1


def test_control_fill_removes_the_arc_light_and_the_annulus_fill_leaks_it():
    """A positive's annulus median is raised by its arc, so an annulus-median fill carries class
    information into the masked region; the control fill does not."""
    rng = np.random.default_rng(0)
    ctrl = rng.normal(0, 0.01, (20, 3, 64, 64)).astype(np.float32)
    arc = np.zeros_like(ctrl)
    arc[:, :, gates.ANNULUS_MASK] = 0.5  # arc light in the 6-16 px annulus
    arc[:, :, 30:34, 30:34] = 0.3  # and a counter-image in the core
    stamp = ctrl + arc
    filled = gates.fill_from_control(stamp, ctrl, gates.CORE_MASK)
    assert np.array_equal(filled[:, :, gates.CORE_MASK], ctrl[:, :, gates.CORE_MASK])
    assert np.array_equal(gates.fill_from_control(ctrl, ctrl, gates.CORE_MASK), ctrl)
    med_pos = gates.fill_from_annulus(stamp, gates.CORE_MASK)[:, :, gates.CORE_MASK].mean()
    med_neg = gates.fill_from_annulus(ctrl, gates.CORE_MASK)[:, :, gates.CORE_MASK].mean()
    assert med_pos - med_neg > 0.4  # the leak the control fill exists to avoid


def test_seeded_auroc_interval_stays_inside_the_auroc_range():
    # near-perfect scores with a large seed spread: the normal seed term alone would reach past 1
    rng = np.random.default_rng(0)
    y = np.r_[np.ones(40), np.zeros(40)]
    g = np.r_[np.arange(40), np.arange(40)]
    S = np.vstack([y * 3 + rng.normal(0, s, 80) for s in (0.3, 3.0, 0.3)])
    from lensnb.metrics import seeded_auroc, seeded_difference
    r = seeded_auroc(y, S, g, n_boot=200, seed=0)
    assert r.ci_high <= 1.0 and r.ci_low >= 0.0 and r.ci_low < r.estimate
    d = seeded_difference(y, S, g, y, -S, g, n_boot=200, seed=0)
    assert -1.0 <= d.ci_low <= d.ci_high <= 1.0


def test_interval_errorbar_draws_the_interval_even_when_the_estimate_lies_outside_it():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from lensnb import plotting

    fig, ax = plt.subplots()
    # a bootstrap percentile interval need not contain the estimate: no negative bar, no error
    line = plotting.interval_errorbar(ax, [0, 1], [0.9, 0.6], [0.62, 0.55], [0.85, 0.7], label="x")
    np.testing.assert_allclose(line.get_ydata(), [0.9, 0.6])
    segs = ax.collections[0].get_segments()
    np.testing.assert_allclose([s[:, 1].min() for s in segs], [0.62, 0.55])
    np.testing.assert_allclose([s[:, 1].max() for s in segs], [0.85, 0.7])
    plotting.interval_errorbar(ax, [2.0], [0.5], [0.4], [0.6], horizontal=True)
    seg = ax.collections[-1].get_segments()[0]
    np.testing.assert_allclose(sorted(seg[:, 0]), [0.4, 0.6])
    plt.close(fig)


def test_interval_pivot_shows_an_unmeasurable_value_as_a_dash():
    from lensnb import plotting

    df = pd.DataFrame({"masked": ["core", "core"], "model": ["paired", "unpaired"], "share": [np.nan, 0.4],
                       "ci_low": [np.nan, 0.3], "ci_high": [np.nan, 0.5], "verdict": [gates.NO_SKILL, "relies"]})
    w = plotting.interval_pivot(df, ["masked"], "model", est="share")
    assert w.loc[0, "paired"] == "— · " + gates.NO_SKILL and "nan" not in w.loc[0, "paired"]
    assert w.loc[0, "unpaired"].startswith("0.400")
