"""The alternatives chapter's pieces (lensnb.alternatives): registry, inputs, hard negatives, working-point
metrics, verdicts and the real-lens route."""
import numpy as np
import pandas as pd
import pytest

from lensnb import alternatives as alt
from lensnb import dataset
from lensnb.config import STAMP_SIZE


def test_registry_refuses_unknown_names_and_lists_the_known():
    assert [c.name for c in alt.get_candidates("paired_raw, unpaired_raw")] == ["paired_raw", "unpaired_raw"]
    with pytest.raises(ValueError, match="unknown candidate.*'no_such'.*candidates: paired_raw"):
        alt.get_candidates(["unpaired_raw", "no_such"])
    with pytest.raises(ValueError, match="unknown candidate"):
        alt.get_candidates([])
    assert alt.BASELINE in alt.CANDIDATES
    assert set(alt.LITERATURE) == set(alt.CANDIDATES)  # every candidate has its literature sentence
    for c in alt.CANDIDATES.values():
        assert c.input in alt.INPUTS and c.treatment in alt.TREATMENTS and c.brightness in ("physical", "bright")


def _images(n=4, seed=0):
    rng = np.random.default_rng(seed)
    return rng.normal(0, 1, (n, 3, STAMP_SIZE, STAMP_SIZE)).astype(np.float32)


def test_candidate_inputs_have_their_shapes_and_contents():
    x = _images()
    np.testing.assert_array_equal(alt.candidate_input("raw", x), x)
    six = alt.candidate_input("raw+residual", x)
    assert six.shape == (4, 6, STAMP_SIZE, STAMP_SIZE)
    np.testing.assert_array_equal(six[:, :3], x)
    np.testing.assert_allclose(six[:, 3:], alt.candidate_input("residual", x))
    m = alt.candidate_input("core_masked", x)
    c = slice(STAMP_SIZE // 2 - 5, STAMP_SIZE // 2 + 5)
    core = m[:, :, c, c].reshape(4, 3, -1)
    assert (core == core[..., :1]).all()  # the core is one value per image and band
    outside = np.ones((STAMP_SIZE, STAMP_SIZE), bool)
    outside[c, c] = False
    np.testing.assert_array_equal(m[:, :, outside], x[:, :, outside])  # nothing else touched
    with pytest.raises(ValueError, match="unknown input"):
        alt.candidate_input("fft", x)


def test_hard_negatives_take_their_shares_and_keep_the_rest():
    neg, pos, conf = _images(40, 1), _images(10, 2) + 5, _images(30, 3) - 5
    out, kind, src = alt.hard_negative_images(neg, pos, conf, np.random.default_rng(0), shuffle_share=0.25,
                                              confuser_share=0.5)
    assert (kind == "shuffled positive").sum() == 10 and (kind == "confuser").sum() == 20
    ctrl = kind == "control"
    np.testing.assert_array_equal(out[ctrl], neg[ctrl])
    sh = np.flatnonzero(kind == "shuffled positive")
    for i in sh:  # a shuffled positive holds its source positive's pixels (ring by ring), not the negative's
        np.testing.assert_allclose(np.sort(out[i].ravel()), np.sort(pos[src[i]].ravel()))
    assert (src[~(kind == "shuffled positive")] == -1).all()
    assert (out[kind == "confuser"].mean(axis=(1, 2, 3)) < -4).all()
    with pytest.raises(ValueError, match="shares"):
        alt.hard_negative_images(neg, pos, conf, np.random.default_rng(0), shuffle_share=0.8, confuser_share=0.4)


def test_tpr_at_fpr_matches_a_direct_count_and_its_interval_covers_it():
    rng = np.random.default_rng(4)
    n = 2000
    y = np.r_[np.ones(n // 2, int), np.zeros(n // 2, int)]
    s = np.r_[rng.normal(2, 1, n // 2), rng.normal(0, 1, n // 2)]
    hosts = np.arange(n)
    est, lo, hi = alt.tpr_at_fpr(y, s, hosts, 0.01, n_boot=100, seed=0)
    thr = np.quantile(s[y == 0], 0.99, method="higher")
    assert est == pytest.approx(np.mean(s[y == 1] > thr))
    assert lo <= est <= hi and hi - lo < 0.2
    # two seeds: the mean of the per-seed TPRs
    S = np.stack([s, s + rng.normal(0, 0.3, n)])
    est2, _, _ = alt.tpr_at_fpr(y, S, hosts, 0.01, n_boot=20, seed=0)
    per = [np.mean(S[k, y == 1] > np.quantile(S[k, y == 0], 0.99, method="higher")) for k in range(2)]
    assert est2 == pytest.approx(np.mean(per))
    # a subset counts only its positives; the threshold still comes from every negative
    sub = np.r_[s[: n // 2] > 2, np.zeros(n // 2, bool)]
    est3, _, _ = alt.tpr_at_fpr(y, s, hosts, 0.01, n_boot=20, seed=0, subset=sub)
    assert est3 == pytest.approx(np.mean(s[sub] > thr))


def test_fpr_at_tpr_counts_negatives_above_the_median_positive():
    rng = np.random.default_rng(5)
    y = np.r_[np.ones(500, int), np.zeros(10, int)]
    s = np.r_[rng.normal(1, 1, 500), np.zeros(10)]
    neg = rng.normal(0, 1, 1000)
    est, lo, hi = alt.fpr_at_tpr(y, s, neg, np.arange(1000), 0.5, n_boot=100, seed=0)
    assert est == pytest.approx(np.mean(neg > np.quantile(s[:500], 0.5)))
    assert lo <= est <= hi
    assert alt.resolvable_fpr(500, 0.01) and not alt.resolvable_fpr(500, 0.001)


def test_shortcut_verdict_and_ranking():
    assert alt.shortcut_verdict(["no shortcut", "no shortcut"]) == "removes the core shortcut"
    assert alt.shortcut_verdict(["no shortcut", "shortcut"]) == "does not remove it"
    assert alt.shortcut_verdict(["no shortcut", "undecidable"]) == "undecidable at this size"
    assert alt.shortcut_verdict([]) == "undecidable at this size"  # no gate ran: nothing is claimed
    t = pd.DataFrame({"candidate": list("abcde"), "tpr": [0.9, 0.2, 0.5, 0.7, 0.6],
                      "shortcut": ["does not remove it", "removes the core shortcut", "removes the core shortcut",
                                   "undecidable at this size", "removes the core shortcut"],
                      "diff90_low": [0.0, -0.03, -0.08, 0.0, -0.3],
                      "diff90_high": [0.0, 0.01, -0.02, 0.03, -0.2]})  # e removes the shortcut with the lenses
    r = alt.rank(t, "tpr")
    assert list(r["candidate"]) == ["c", "b", "d", "a", "e"] and list(r["rank"]) == [1, 2, 3, 4, 5]
    assert list(r["keeps lenses"]) == [True, True, True, True, False]
    assert list(r["lenses"]) == ["undecidable", "keeps the lenses", "keeps the lenses", "baseline", "loses the lenses"]
    # one reading for the ranking and the per-bin table: the 90% interval against the margin
    assert alt.keeps_lenses(-0.2, -0.049) and not alt.keeps_lenses(-0.2, -0.051) and alt.keeps_lenses(np.nan, np.nan)
    assert alt.keeps_lenses(-0.2, -0.06, margin=0.1) and not alt.keeps_lenses(-0.2, -0.06, margin=0.05)


def test_realism_targets_are_the_real_lenses_only_or_none_without_the_simulator(tmp_path):
    x = _images(6, 8)
    p = dataset.write_real_manifest(tmp_path / "real.parquet", x, [1, 0, 1, 0, 1, 0], ra=np.arange(6.0), dec=np.zeros(6))
    test = alt.TestSet("t", pd.DataFrame({"label": [1, 0, 1, 0, 1, 0], "host": list("abcdef")}), images=x)
    img, hosts, name = alt.realism_targets(str(p), test, simulated=True, n_hosts=6, seed=0, standin={}, preset="x")
    np.testing.assert_array_equal(img, x[[0, 2, 4]])
    assert len(set(hosts)) == 3 and name == "your real lenses"
    assert alt.realism_targets("", test, simulated=False, n_hosts=6, seed=0, standin={}, preset="x") == \
        (None, None, "no real lenses (set DATA_REAL)")


def test_real_lens_manifest_round_trip_and_clear_errors(tmp_path):
    x = _images(6, 7)
    p = dataset.write_real_manifest(tmp_path / "real.parquet", x, [1, 1, 1, 0, 0, 0], ra=np.arange(6.0), dec=np.zeros(6))
    imgs, meta = dataset.load_real(p)
    np.testing.assert_array_equal(imgs, x)
    assert list(meta["label"]) == [1, 1, 1, 0, 0, 0] and meta["host"].nunique() == 6
    import pyarrow as pa
    import pyarrow.parquet as pq

    from lensnb.dataset import encode_npz

    def write(name, **cols):
        f = tmp_path / name
        pq.write_table(pa.table(cols), f)
        return f

    blobs = [encode_npz(a) for a in x[:2]]
    with pytest.raises(ValueError, match=r"nolabel.parquet: missing required column 'label'"):
        dataset.load_real(write("nolabel.parquet", stamp_npz=blobs))
    with pytest.raises(ValueError, match=r"badlabel.parquet: row 1, column 'label': 'maybe' is not 0 or 1"):
        dataset.load_real(write("badlabel.parquet", stamp_npz=blobs, label=["1", "maybe"]))
    with pytest.raises(ValueError, match="needs both real lenses"):
        dataset.load_real(write("onlylenses.parquet", stamp_npz=blobs, label=[1, 1]))
    with pytest.raises(ValueError, match=r"badnpz.parquet: row 1, column 'stamp_npz'"):
        dataset.load_real(write("badnpz.parquet", stamp_npz=[blobs[0], b"not an npz"], label=[1, 0]))


def test_unpaired_test_table_gives_one_image_per_host_and_disjoint_classes():
    meta = pd.DataFrame({"ra": np.repeat(np.arange(20.0), 3), "dec": 0.0})
    t = alt.unpaired_test_table(meta, 0)
    assert len(t) == 20 and t["host"].is_unique
    assert t["label"].sum() == 10
    assert set(t.loc[t.label == 1, "image"]) == {"stamp"} and set(t.loc[t.label == 0, "image"]) == {"ctrl"}


def test_differences_by_lens_read_each_theta_bin_on_its_own():
    """A planted design that matches the proposal on resolved lenses and scores unresolved ones at random: it keeps
    the resolved lenses and loses the unresolved ones; with only resolved lenses its overall verdict is 'keeps'."""
    rng = np.random.default_rng(0)
    n_pos, n_neg = 300, 300
    y = np.r_[np.ones(n_pos, int), np.zeros(n_neg, int)]
    theta = np.r_[np.where(np.arange(n_pos) % 2 == 0, 0.5, 2.0), np.full(n_neg, np.nan)]
    table = pd.DataFrame({"theta_e_arcsec": theta, "psf_fwhm_used_r": 1.0, "label": y, "host": np.arange(len(y))})
    ts = alt.TestSet("primary", table, images=np.zeros((len(y), 3, 2, 2), np.float32))
    base = np.stack([np.r_[rng.normal(2, 1, n_pos), rng.normal(0, 1, n_neg)] for _ in range(2)])
    design = base.copy()
    unresolved = np.r_[theta[:n_pos] < 0.75, np.zeros(n_neg, bool)]
    design[:, unresolved] = rng.normal(0, 1, (2, unresolved.sum()))
    out = alt.Comparison(scores={(alt.BASELINE, "primary"): base, ("unpaired_residual", "primary"): design},
                         summary=pd.DataFrame({"candidate": [alt.BASELINE, "unpaired_residual"]}))
    bl = alt.differences_by_lens(out, {"primary": ts}, n_boot=200, seed=1).set_index("lenses")
    assert bl.loc["θ_E < 0.75 FWHM", "reading"] == "loses the lenses"
    assert bl.loc["θ_E > 1.25 FWHM", "reading"] == "keeps the lenses"
    assert bl.loc["0.75–1.25 FWHM", "reading"].startswith("fewer than")
    # the same design on a population of resolved lenses only: the overall verdict flips to "keeps"
    keep = ~unresolved
    ts2 = alt.TestSet("primary", table[keep].reset_index(drop=True), images=ts.images[keep])
    out2 = alt.Comparison(scores={k: v[:, keep] for k, v in out.scores.items()}, summary=out.summary)
    overall = alt.differences_by_lens(out2, {"primary": ts2}, n_boot=200, seed=1).set_index("lenses")
    assert overall.loc["all test lenses", "reading"] == "keeps the lenses"
    assert alt.differences_by_lens(out, {"primary": ts}, n_boot=200, seed=1).set_index(
        "lenses").loc["all test lenses", "reading"] == "loses the lenses"


def test_lens_reading_is_three_way():
    assert alt.lens_reading(-0.2, -0.1) == "loses the lenses"
    assert alt.lens_reading(-0.04, 0.02) == "keeps the lenses"
    assert alt.lens_reading(-0.08, 0.0) == "undecidable"


def test_population_dependence_says_for_which_lenses_each_conclusion_holds():
    bl = pd.DataFrame({"candidate": ["unpaired_residual"] * 4, "test set": ["primary", "primary", "primary", "bright"],
                       "lenses": ["all test lenses", "θ_E < 0.75 FWHM", "θ_E > 1.25 FWHM", "θ_E > 1.25 FWHM"],
                       "change": [-0.05, -0.13, -0.01, -0.02], "ci_low": [-0.06, -0.2, -0.03, -0.08],
                       "ci_high": [-0.04, -0.07, 0.01, 0.02],
                       "reading": ["undecidable", "loses the lenses", "keeps the lenses", "undecidable"]})
    rel = pd.DataFrame({"candidate": ["unpaired_raw"] * 3, "masked": ["core"] * 3,
                        "θ_E bin": ["all θ_E", "θ_E < 0.75 FWHM", "θ_E > 1.25 FWHM"],
                        "share of skill lost": [0.4, 0.7, 0.05], "ci_low": [0.3, 0.5, 0.0], "ci_high": [0.5, 0.9, 0.12],
                        "verdict": ["relies", "relies", "does not rely"]})
    t = alt.population_dependence(bl, rel, {"unpaired_residual": "unpaired, residual", "unpaired_raw": "unpaired raw"},
                                  arcs={"primary": "detectable brightness", "bright": "request brightness"})
    r = t.set_index("conclusion")
    k = "unpaired, residual keeps the lenses (ΔAUROC vs the proposal, 90%)"
    assert r.loc[k, "holds for"] == "θ_E > 1.25 FWHM, detectable brightness"
    assert r.loc[k, "fails for"] == "θ_E < 0.75 FWHM, detectable brightness"
    assert r.loc[k, "undecidable for"] == "θ_E > 1.25 FWHM, request brightness"
    assert "all test lenses" not in r.loc[k, "numbers"] and "-0.130 (-0.200 to -0.070)" in r.loc[k, "numbers"]
    k = "the unpaired raw model relies on the core (> 0.2 of its skill, 95%)"
    assert r.loc[k, "holds for"] == "θ_E < 0.75 FWHM" and r.loc[k, "fails for"] == "θ_E > 1.25 FWHM"
    rel.loc[2, ["share of skill lost", "ci_low", "ci_high", "verdict"]] = [np.nan, np.nan, np.nan, "undecidable (x)"]
    r = alt.population_dependence(bl.iloc[:0], rel, {}).set_index("conclusion")
    assert "θ_E > 1.25 FWHM: no skill above chance to lose" in r.iloc[0]["numbers"] and "nan" not in r.iloc[0]["numbers"]
    assert r.iloc[0]["undecidable for"] == "θ_E > 1.25 FWHM"
    assert len(alt.population_dependence(bl.iloc[:0], rel.iloc[:0], {})) == 0
    # the core gates per bin (either gate firing holds, both quiet fails) and memorisation per bin
    gb = pd.DataFrame({"candidate": ["unpaired_raw"] * 6, "gate": ["core LR", "nonlinear core"] * 3,
                       "lenses": ["all lenses"] * 2 + ["θ_E < 0.75 FWHM"] * 2 + ["θ_E > 1.25 FWHM"] * 2,
                       "auroc": [0.7, 0.8, 0.6, 0.9, 0.55, 0.56], "ci_low": [0.66, 0.7, 0.55, 0.8, 0.5, 0.52],
                       "ci_high": [0.74, 0.9, 0.65, 0.95, 0.6, 0.6],
                       "verdict": ["shortcut", "shortcut", "undecidable", "shortcut", "no shortcut", "no shortcut"]})
    memo = pd.DataFrame({"candidate": ["unpaired_raw"] * 3, "lenses": ["all lenses", "θ_E < 0.75 FWHM", "θ_E > 1.25 FWHM"],
                         "gap": [0.03, 0.09, 0.0], "ci_low": [0.0, 0.06, -0.03], "ci_high": [0.06, 0.12, 0.03]})
    r = alt.population_dependence(bl.iloc[:0], rel.iloc[:0], {"unpaired_raw": "unpaired raw"}, gate_bins=gb,
                                  memorisation=memo, memo_margin=0.05).set_index("conclusion")
    k = "the core gates find a shortcut in the unpaired raw training input (AUROC outside the gate band, 95%)"
    assert r.loc[k, "holds for"] == "θ_E < 0.75 FWHM" and r.loc[k, "fails for"] == "θ_E > 1.25 FWHM"
    assert "linear 0.600 (0.550–0.650), nonlinear 0.900 (0.800–0.950)" in r.loc[k, "numbers"]
    k = "the unpaired raw network memorises its training hosts (seen − unseen AUROC > 0.05, 95%)"
    assert r.loc[k, "holds for"] == "θ_E < 0.75 FWHM" and r.loc[k, "fails for"] == "θ_E > 1.25 FWHM"


def test_the_real_lens_route_is_set_aside_from_the_ranking():
    summ = pd.DataFrame({"candidate": ["unpaired_raw", "real_lenses", "paired_raw"], "auroc": [0.9, 0.99, 0.8]})
    out = alt.Comparison(summary=summ, ranked=summ.assign(rank=[2, 1, 3]).sort_values("rank").reset_index(drop=True),
                         gates=pd.DataFrame({"candidate": ["real_lenses", "paired_raw"], "gate": ["core LR"] * 2}),
                         scores={("real_lenses", "primary"): np.zeros((1, 2))})
    trimmed, aside = alt.set_aside(out, ["real_lenses"])
    assert list(trimmed.ranked["candidate"]) == ["unpaired_raw", "paired_raw"] and list(trimmed.ranked["rank"]) == [1, 2]
    assert "real_lenses" not in set(trimmed.summary["candidate"]) and list(trimmed.gates["candidate"]) == ["paired_raw"]
    assert list(aside["candidate"]) == ["real_lenses"] and aside["auroc"].iloc[0] == 0.99
    assert len(out.summary) == 3 and trimmed.scores is out.scores  # the input is not modified


def test_residual_table_reads_gates_and_lens_changes_per_design():
    summ = pd.DataFrame({"candidate": ["unpaired_raw", "unpaired_residual", "paired_raw"],
                         "core LR": [0.70, 0.49, 0.77], "core LR_low": [0.66, 0.45, 0.74], "core LR_high": [0.74, 0.53, 0.80],
                         "nonlinear core": [0.72, 0.55, 0.8], "nonlinear core_low": [0.68, 0.5, 0.77],
                         "nonlinear core_high": [0.76, 0.6, 0.83],
                         "shortcut": ["does not remove it", "removes the core shortcut", "does not remove it"],
                         "tpr_0.01": [0.7, 0.4, 0.6], "tpr_0.01_low": [0.6, 0.3, 0.5], "tpr_0.01_high": [0.8, 0.5, 0.7]})
    bl = pd.DataFrame({"candidate": ["unpaired_residual"] * 2, "test set": ["primary", "bright"],
                       "lenses": ["θ_E > 1.25 FWHM"] * 2, "change": [-0.01, -0.3], "ci_low": [-0.03, -0.4],
                       "ci_high": [0.01, -0.2], "reading": ["keeps the lenses", "loses the lenses"]})
    t = alt.residual_table(summ, bl, {"unpaired_residual": "unpaired, residual"}, fpr=0.01).set_index("design")
    assert list(t.index) == ["paired_raw", "unpaired_raw", "unpaired, residual"]  # the order raw -> residual
    assert t.loc["unpaired, residual", "core LR (95%)"] == "0.490 (0.450–0.530)"
    assert t.loc["unpaired, residual", "ΔAUROC, θ_E > 1.25 FWHM (90%)"].endswith(": keeps the lenses")  # primary only
    assert t.loc["unpaired_raw", "ΔAUROC, θ_E > 1.25 FWHM (90%)"] == "reference"
    assert t.loc["paired_raw", "ΔAUROC, θ_E > 1.25 FWHM (90%)"] == "—"
    assert t.loc["unpaired_raw", "TPR at 1% FPR (95%)"] == "0.700 (0.600–0.800)"


def test_tpr_change_is_zero_for_the_same_scores_and_negative_for_fainter_lenses():
    from lensnb.metrics import tpr_change

    rng = np.random.default_rng(2)
    n = 400
    y = np.r_[np.ones(n, int), np.zeros(n, int)]
    hosts = np.arange(2 * n)
    a = np.stack([np.r_[rng.normal(3, 1, n), rng.normal(0, 1, n)] for _ in range(2)])
    e, lo, hi = tpr_change(y, a, a, hosts, 0.05, n_boot=100, seed=0)
    assert e == lo == hi == 0.0
    b = a.copy()
    b[:, :n] -= 2.0  # the same negatives, fainter lenses: fewer of them above the same threshold
    e, lo, hi = tpr_change(y, a, b, hosts, 0.05, n_boot=100, seed=0)
    assert hi < 0 and lo <= e <= hi
    direct = np.mean([(b[s, :n] > np.quantile(b[s, n:], 0.95, method="higher")).mean()
                      - (a[s, :n] > np.quantile(a[s, n:], 0.95, method="higher")).mean() for s in range(2)])
    assert e == pytest.approx(direct)


def test_completeness_change_reads_each_side_on_its_own_lenses():
    """The team's model on its own bright arcs and on fainter injected arcs in the same hosts: completeness drops,
    per θ_E/FWHM bin of each side's own lenses; the same scores on both sides give no difference."""
    rng = np.random.default_rng(3)
    n = 300
    y = np.r_[np.ones(n, int), np.zeros(n, int)]
    base = pd.DataFrame({"label": y, "host": np.arange(2 * n), "psf_fwhm_used_r": 1.0,
                         "theta_e_arcsec": np.r_[np.full(n, 2.0), np.full(n, np.nan)]})
    inj = base.copy()
    inj.loc[: n - 1, "theta_e_arcsec"] = np.where(np.arange(n) % 2 == 0, 1.0, 2.0)
    im = np.zeros((2 * n, 3, 2, 2), np.float32)
    tests = {"primary": alt.TestSet("own", base, images=im), "injected": alt.TestSet("injected", inj, images=im)}
    own = np.stack([np.r_[rng.normal(4, 1, n), rng.normal(0, 1, n)] for _ in range(3)])
    faint = own.copy()
    faint[:, :n] = rng.normal(1, 1, (3, n))
    out = alt.Comparison(scores={(alt.BASELINE, "primary"): own, (alt.BASELINE, "injected"): faint})
    c = alt.completeness_change(out, tests, (alt.BASELINE, "primary"), (alt.BASELINE, "injected"), fpr=0.05,
                                n_boot=100, seed=0).set_index("lenses")
    assert c.loc["all test lenses", "reading"] == "lower" and c.loc["all test lenses", "change_high"] < -0.3
    assert c.loc["θ_E > 1.25 FWHM", "positives, ref"] == n and c.loc["θ_E > 1.25 FWHM", "positives, new"] == n // 2
    assert c.loc["0.75–1.25 FWHM", "positives, ref"] == 0 and c.loc["0.75–1.25 FWHM", "reading"].startswith("fewer")
    assert c.loc["θ_E > 1.25 FWHM", "completeness, ref"] > 0.9
    same = alt.completeness_change(alt.Comparison(scores={(alt.BASELINE, "primary"): own, ("x", "primary"): own}), tests,
                                   (alt.BASELINE, "primary"), ("x", "primary"), fpr=0.05, n_boot=100, seed=0)
    assert (same["change"].fillna(0) == 0).all() and set(same["reading"]) <= {"no difference shown"}
    with pytest.raises(ValueError, match="do not share rows and hosts"):
        alt.completeness_change(out, {"primary": tests["primary"], "injected": alt.TestSet("x", inj[:10], images=im[:10])},
                                (alt.BASELINE, "primary"), (alt.BASELINE, "injected"), fpr=0.05, n_boot=10, seed=0)


def test_injected_test_set_keeps_the_rows_hosts_and_non_lenses_and_changes_only_the_arcs():
    from tests import corpus

    df = corpus.good_frame(n_hosts=16, per_host=1, seed=4)
    blobs = [dataset.decode_npz(b, "x") for b in df["stamp_npz"]]
    ctrls = np.stack([dataset.decode_npz(b, "x") for b in df["ctrl_stamp_npz"]])
    stamps = np.stack(blobs)
    meta = df.drop(columns=["stamp_npz", "ctrl_stamp_npz"]).reset_index(drop=True)
    sets = alt.test_sets(0, 5, data_test=(stamps, ctrls, meta))
    p, j = sets["primary"], sets["injected"]
    assert np.array_equal(p.y, j.y) and np.array_equal(p.hosts, j.hosts) and (p.y == 1).sum() == 8
    neg, pos = p.y == 0, p.y == 1
    np.testing.assert_array_equal(j.images[neg], p.images[neg])
    rows = p.table["row"].to_numpy()[pos]
    arc = j.images[pos] - ctrls[rows]
    assert (arc.sum(axis=(1, 2, 3)) > 0).all() and not np.allclose(j.images[pos], p.images[pos])
    assert j.table.loc[pos, "theta_e_arcsec"].notna().all() and (j.table.loc[pos, "arc_snr"] >= 20).all()
    again = alt.test_sets(0, 5, data_test=(stamps, ctrls, meta))["injected"]
    np.testing.assert_array_equal(again.images, j.images)


def test_the_common_test_sets_and_the_training_chapters_evaluations_are_one_class():
    """``alternatives.TestSet`` is ``experiment.TestSet``: images and controls where kept, model scores once scored."""
    from lensnb import experiment

    assert alt.TestSet is experiment.TestSet
    t = alt.TestSet("t", pd.DataFrame({"label": [1, 0, 1, 0], "host": list("aabb")}))
    with pytest.raises(ValueError, match="no model scores"):
        t.ci(10, 0)
    t.scores = np.array([[0.9, 0.1, 0.8, 0.2]])
    assert t.ci(50, 0).estimate == 1.0 and list(t.hosts) == list("aabb")
