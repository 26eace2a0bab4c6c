"""Inner-image statistics."""
import numpy as np
import pandas as pd
import pytest

from lensnb.config import PIXEL_SCALE
from lensnb.geometry import (
    consistency_table,
    fraction_interval,
    identification_verdict,
    intervals_overlap,
    median_interval,
    miss_directions,
    request_statistics,
    rounding_interval,
    simulate_prior,
    summarise,
)

SIS_PRIOR = {"theta_e": {"dist": "uniform", "low": 0.5, "high": 2.5},
             "beta": {"dist": "uniform_radius", "max_over_theta_e": 1.0}}


def test_round_lens_inner_image_is_theta_e_minus_beta():
    df = simulate_prior("sis", SIS_PRIOR, 400, seed=3, device="cpu")
    assert (df["n_images"] == 2).all()
    np.testing.assert_allclose(df["inner_r"], df["theta_e"] - df["beta"], atol=1e-5)
    np.testing.assert_allclose(df["inner_r_px"], df["sis_inner_r_px"], atol=1e-4)
    # q = 1 is regularised to 1 - 1e-6 by caustics: the share near beta -> 0 (|mu| -> inf) moves by < 1e-3
    np.testing.assert_allclose(df["inner_flux_share"], (1 - df["beta_over_theta_e"]) / 2, atol=1e-3)


def test_summary_fractions_follow_from_the_table():
    df = simulate_prior("sis", SIS_PRIOR, 500, seed=4, device="cpu")
    s = summarise(df)
    assert s["frac_within_5px"] == pytest.approx(np.mean(df["theta_e"] - df["beta"] < 5 * PIXEL_SCALE), abs=1e-9)
    # the 10x10 box contains the 5-px disc, so at least as many images are in it
    assert s["frac_in_core_box"] >= s["frac_within_5px"]
    assert 0 < s["median_inner_flux_share"] < 0.5


def test_detectability_cut_keeps_only_magnified_systems():
    spec = dict(SIS_PRIOR, min_total_mu=3.0)
    df = simulate_prior("cut", spec, 600, seed=5, device="cpu")
    assert (df["total_abs_mu"] >= 3.0).all()
    # SIS: mu_tot = 2 theta_E / beta >= 3  <=>  beta / theta_E <= 2/3
    assert df["beta_over_theta_e"].max() <= 2 / 3 + 1e-4
    assert len(df) == pytest.approx(600 * 2 / 3, rel=0.15)


def test_deterministic():
    a = simulate_prior("sis", SIS_PRIOR, 200, seed=7, device="cpu")
    b = simulate_prior("sis", SIS_PRIOR, 200, seed=7, device="cpu")
    assert a.equals(b)


def _fake_solved(beta_over_theta_e, inner_r_px, within_5px):
    n = len(beta_over_theta_e)
    return pd.DataFrame({"beta_over_theta_e": beta_over_theta_e, "inner_r_px": inner_r_px,
                         "n_images": np.full(n, 2), "within_5px": within_5px})


@pytest.mark.parametrize("value, expected", [(0.5, (0.45, 0.55)), (2.1, (2.05, 2.15)), (0.918, (0.9175, 0.9185)),
                                             (3, (2.5, 3.5))])
def test_rounding_interval_follows_the_stated_digits(value, expected):
    assert rounding_interval(value) == pytest.approx(expected)


def test_rounding_interval_with_explicit_decimals():
    assert rounding_interval(0.5, 2) == pytest.approx((0.495, 0.505))


def test_overlap_rule_is_half_open_on_the_rounding_side():
    assert intervals_overlap(0.40, 0.45, 0.45, 0.55)       # touches the closed low end
    assert not intervals_overlap(0.55, 0.60, 0.45, 0.55)   # 0.55 rounds to 0.6, not 0.5
    assert intervals_overlap(0.30, 0.90, 0.45, 0.55)       # a wide MC interval contains it
    assert not intervals_overlap(np.nan, np.nan, 0.45, 0.55)


def test_wilson_interval_known_values():
    # Wilson 95% for 0/10: upper 0.2775; for 50/100: 0.4038-0.5962
    p, lo, hi = fraction_interval(0, 10)
    assert (p, lo) == (0.0, 0.0) and hi == pytest.approx(0.2775, abs=1e-4)
    p, lo, hi = fraction_interval(50, 100)
    assert (lo, hi) == pytest.approx((0.4038, 0.5962), abs=1e-4)


def test_median_interval_covers_the_true_median_about_95_percent_of_the_time():
    rng = np.random.default_rng(0)
    hits = 0
    for _ in range(1000):
        _, lo, hi = median_interval(rng.exponential(1.0, 301))
        hits += lo <= np.log(2) <= hi
    assert 0.93 <= hits / 1000 <= 0.98
    med, lo, hi = median_interval([3.0, np.nan, 1.0, 2.0])
    assert med == 2.0 and lo == 1.0 and hi == 3.0  # too few points for 95%: the whole range
    assert np.isnan(median_interval([])[0])


def test_consistency_rule_separates_a_matching_family_from_a_far_one():
    rng = np.random.default_rng(1)
    n = 4000
    claims = {"median_beta_over_theta_e": 0.5, "median_inner_r_px": 2.1, "frac_within_5px": 0.918}
    # inside: medians 0.50 and 2.10, fraction 0.918 exactly
    inside = _fake_solved(rng.uniform(0, 1, n), rng.uniform(0, 4.2, n), np.arange(n) < round(0.918 * n))
    # far: median beta 0.71 (area, c = 1), inner r median 1.0 px, fraction 0.99
    far = _fake_solved(np.sqrt(rng.uniform(0, 1, n)), rng.uniform(0, 2.0, n), np.arange(n) < round(0.99 * n))
    # only the fraction is off (0.80): inconsistent overall, the other two consistent
    one_off = _fake_solved(rng.uniform(0, 1, n), rng.uniform(0, 4.2, n), np.arange(n) < round(0.80 * n))
    t = consistency_table({"inside": inside, "far": far, "one_off": one_off}, claims)
    assert t.loc["inside", "consistent"] and not t.loc["far", "consistent"] and not t.loc["one_off", "consistent"]
    assert not t.loc["far", ["median_beta_over_theta_e_ok", "median_inner_r_px_ok", "frac_within_5px_ok"]].any()
    assert t.loc["one_off", ["median_beta_over_theta_e_ok", "median_inner_r_px_ok"]].all()
    assert not t.loc["one_off", "frac_within_5px_ok"]
    assert t.loc["inside", "frac_within_5px_lo"] < 0.918 < t.loc["inside", "frac_within_5px_hi"]
    with pytest.raises(ValueError, match="unknown request statistic"):
        consistency_table({"inside": inside}, {"auc": 0.95})


def test_request_statistics_match_summarise():
    df = simulate_prior("sis", SIS_PRIOR, 300, seed=8, device="cpu")
    s, r = summarise(df), request_statistics(df)
    for k in ("median_beta_over_theta_e", "median_inner_r_px", "frac_within_5px"):
        assert r[k][0] == pytest.approx(s[k])
        assert r[k][1] <= r[k][0] <= r[k][2]


def test_verdict_counts_distinct_consistent_priors():
    specs = {"a": {"theta_e": {"dist": "uniform", "low": 0.5, "high": 2.5},
                   "beta": {"dist": "uniform_radius", "max_over_theta_e": 1.0}},
             "b": {"theta_e": {"dist": "loguniform", "low": 0.5, "high": 2.5},
                   "beta": {"dist": "uniform_area", "max_over_theta_e": 0.7}},
             "c": {"theta_e": {"dist": "uniform", "low": 0.5, "high": 2.5},
                   "beta": {"dist": "uniform_radius", "max_over_theta_e": 1.0}, "label": "same as a"}}
    labels = {"a": "A", "b": "B", "c": "C"}

    def table(*flags):
        return pd.DataFrame({"consistent": flags}, index=["a", "b", "c"])

    several = identification_verdict(table(True, True, False), specs, labels)
    assert "2 of the 3 priors are consistent" in several and "do not identify the prior" in several
    assert "2 different θ_E distributions" in several and "simulation noise" not in several
    assert "simulation noise" in identification_verdict(table(True, True, False), specs, labels, mc_limited=True)
    one = identification_verdict(table(True, False, False), specs, labels)
    assert "Only one of the 3" in one and "do not identify" not in one
    # two names for the same spec are not a degeneracy
    same = identification_verdict(table(True, False, True), specs, labels)
    assert "one distinct" in same and "do not identify" not in same
    none = pd.DataFrame({"consistent": [False] * 3, "median_beta_over_theta_e_ok": [True, False, False],
                         "median_inner_r_px_ok": [True, True, False], "frac_within_5px_ok": [False, False, False]},
                        index=["a", "b", "c"])
    text = identification_verdict(none, specs, labels)
    assert text.startswith("**None of the 3") and "1 prior matches two of the three: A (misses the fraction within 5 px" in text


def test_miss_directions_counts_below_and_above():
    t = pd.DataFrame({"median_inner_r_px": [1.5, 2.1, 3.0], "median_inner_r_px_lo": [1.4, 2.0, 2.9],
                      "median_inner_r_px_hi": [1.6, 2.2, 3.1], "median_inner_r_px_ok": [False, True, False]})
    assert miss_directions(t, {"median_inner_r_px": 2.1}) == {"median_inner_r_px": (1, 1)}
