"""Priors: validation, sourced numbers, and the distributions they promise."""
import numpy as np
import pytest

from lensnb.priors import CANDIDATE_PRIORS, einstein_radius_sis, sample_systems, validate_prior
from lensnb.survey import psf_fwhm_quantile, sample_psf_fwhm


@pytest.mark.parametrize(
    "sigma, zl, zs, expected",
    [(250, 0.6, 1.5, 0.89), (250, 0.4, 1.0, 0.96), (300, 0.6, 1.5, 1.28), (200, 0.6, 3.0, 0.75)],
)
def test_einstein_radius_matches_simulation_priors_table(sigma, zl, zs, expected):
    # simulation_priors.md §3: examples for flat LambdaCDM, H0 = 70, Om = 0.3 (quoted to 0.01")
    assert einstein_radius_sis(sigma, zl, zs) == pytest.approx(expected, abs=0.006)


def test_psf_fwhm_quantiles_match_sourced_percentiles():
    # simulation_priors.md §1, DR9-south r band: median 1.33, 16-84%: 1.18-1.53 arcsec
    assert psf_fwhm_quantile("r", 0.5) == pytest.approx(1.33, abs=0.006)
    lo, hi = psf_fwhm_quantile("r", [0.16, 0.84])
    assert lo == pytest.approx(1.18, abs=0.01) and hi == pytest.approx(1.53, abs=0.01)
    draws = sample_psf_fwhm("g", 20000, np.random.default_rng(0))
    assert np.median(draws) == pytest.approx(1.48, abs=0.01)
    with pytest.raises(ValueError, match="unknown band"):
        sample_psf_fwhm("i", 3, np.random.default_rng(0))


def test_beta_distributions_have_their_promised_medians():
    rng = np.random.default_rng(5)
    radius = sample_systems("r", CANDIDATE_PRIORS["uniform_theta_uniform_beta"], 40000, rng)
    area = sample_systems("a", CANDIDATE_PRIORS["uniform_theta_area_beta"], 40000, rng)
    assert np.median(radius["beta_over_theta_e"]) == pytest.approx(0.5, abs=0.01)
    assert np.median(area["beta_over_theta_e"]) == pytest.approx(np.sqrt(0.5), abs=0.01)
    assert radius["theta_e"].between(0.5, 2.5).all()
    np.testing.assert_allclose(np.hypot(radius["src_x"], radius["src_y"]), radius["beta"])


def test_host_consistent_prior_puts_sources_behind_lenses():
    df = sample_systems("p", CANDIDATE_PRIORS["physical_sigma_v"], 5000, np.random.default_rng(6))
    assert (df["z_s"] > df["z_l"]).all()
    np.testing.assert_allclose(df["theta_e"], einstein_radius_sis(df["sigma_v"], df["z_l"], df["z_s"]))


def test_same_seed_same_draws():
    a = sample_systems("x", CANDIDATE_PRIORS["loguniform_theta_area_beta"], 100, np.random.default_rng(9))
    b = sample_systems("x", CANDIDATE_PRIORS["loguniform_theta_area_beta"], 100, np.random.default_rng(9))
    assert a.equals(b)


@pytest.mark.parametrize(
    "spec, message",
    [
        ({"theta_e": {"dist": "gauss"}, "beta": {"dist": "uniform_area", "max_over_theta_e": 1}}, "theta_e.dist"),
        ({"theta_e": {"dist": "uniform", "low": 1}, "beta": {"dist": "uniform_area", "max_over_theta_e": 1}},
         r"needs keys \['high', 'low'\]"),
        ({"theta_e": {"dist": "uniform", "low": 1, "high": 2}, "beta": {"dist": "uniform_area",
          "max_over_theta_e": 1}, "shear": 0.1}, "unknown key"),
        ("not a dict", "expected a mapping"),
    ],
)
def test_bad_prior_is_refused_with_its_name(spec, message):
    with pytest.raises(ValueError, match=message) as err:
        validate_prior("mine", spec)
    assert "'mine'" in str(err.value)
