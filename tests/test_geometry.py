"""Inner-image statistics."""
import numpy as np
import pytest

from lensnb.config import PIXEL_SCALE
from lensnb.geometry import simulate_prior, summarise

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
