"""Priors: validation, sourced numbers, and the distributions they promise."""
import numpy as np
import pytest

from lensnb.priors import (
    AREA_BETA_CUTOFFS,
    CANDIDATE_PRIORS,
    PRIOR_FAMILIES,
    beta_median_over_theta_e,
    describe_beta,
    describe_theta_e,
    einstein_radius_sis,
    sample_systems,
    validate_prior,
)
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


@pytest.mark.parametrize("c", [0.6, 0.7, 0.8, 0.9])
def test_area_beta_with_cutoff_has_median_c_over_sqrt2(c):
    # |beta| uniform over the disc of radius c theta_E: P(b < x) = (x / c)^2, median c / sqrt 2
    spec = {"theta_e": {"dist": "loguniform", "low": 0.5, "high": 2.5},
            "beta": {"dist": "uniform_area", "max_over_theta_e": c}}
    n = 40000
    b = sample_systems("a", spec, n, np.random.default_rng(11))["beta_over_theta_e"].to_numpy()
    # MC error of a median: 1 / (2 f(m) sqrt n) with density f(m) = 2 m / c^2 = sqrt 2 / c
    sd = c / (2 * np.sqrt(2) * np.sqrt(n))
    assert np.median(b) == pytest.approx(c / np.sqrt(2), abs=4 * sd)
    assert b.max() <= c
    assert beta_median_over_theta_e(spec["beta"]) == pytest.approx(c / np.sqrt(2))


def test_theta_e_grid_yields_only_grid_values_in_equal_shares():
    grid = [0.5, 1.0, 1.5, 2.0, 2.5]
    spec = {"theta_e": {"dist": "grid", "values": grid}, "beta": {"dist": "uniform_radius", "max_over_theta_e": 1.0}}
    df = sample_systems("g", spec, 20000, np.random.default_rng(12))
    assert set(np.unique(df["theta_e"])) == set(grid)
    shares = df["theta_e"].value_counts(normalize=True)
    assert shares.to_numpy() == pytest.approx(np.full(5, 0.2), abs=0.015)
    np.testing.assert_allclose(df["beta"], df["beta_over_theta_e"] * df["theta_e"])


def test_families_are_valid_and_use_the_one_sampler():
    for name, spec in PRIOR_FAMILIES.items():
        validate_prior(name, spec)
    assert not set(PRIOR_FAMILIES) & set(CANDIDATE_PRIORS)
    cutoffs = {s["beta"]["max_over_theta_e"] for s in PRIOR_FAMILIES.values() if s["beta"]["dist"] == "uniform_area"}
    assert set(AREA_BETA_CUTOFFS) <= cutoffs and all(c <= 1 for c in cutoffs)
    assert sum(s["theta_e"]["dist"] == "grid" for s in PRIOR_FAMILIES.values()) == len(AREA_BETA_CUTOFFS) + 2


def test_geometry_systems_and_simulator_injections_share_one_layout():
    # the geometry chapter's systems and the simulator's injections go through one transform of one
    # uniform layout: the same variates give the same theta_E, beta, angle, ellipticity and shear
    import pandas as pd

    from lensnb.populations import get_preset, sample_injections
    from lensnb.priors import LENS_DRAWS, lens_from_uniforms

    preset = get_preset("request")
    spec = {"theta_e": preset["theta_e"], "beta": preset["beta"], "mass_e_sd": preset["mass_e_sd"],
            "shear_sd": preset["shear_sd"]}
    hosts = pd.DataFrame({"host_id": [7, 11], "host_z": [0.5, 0.7], "host_sigma_v_kms": [200.0, 250.0]})
    inj = sample_injections(hosts, 4, preset, seed=3)
    u = np.concatenate([np.random.default_rng([3, 1, h]).random((15, 4)) for h in (7, 11)], axis=1)
    ref = lens_from_uniforms(spec["theta_e"], spec["beta"], spec["mass_e_sd"], spec["shear_sd"], u[:LENS_DRAWS])
    np.testing.assert_allclose(inj["theta_e_arcsec"], ref["theta_e"])
    np.testing.assert_allclose(inj["src_x_arcsec"], ref["src_x"])
    np.testing.assert_allclose(inj["shear_gamma2"], ref["gamma2"])
    sys_ = sample_systems("x", spec, 8, np.random.default_rng(5))
    ref2 = lens_from_uniforms(spec["theta_e"], spec["beta"], spec["mass_e_sd"], spec["shear_sd"],
                              np.random.default_rng(5).random((LENS_DRAWS, 8)))
    np.testing.assert_allclose(sys_["theta_e"], ref2["theta_e"])
    np.testing.assert_allclose(sys_["e1"], ref2["e1"])


def test_source_redshift_is_truncated_not_clipped():
    # z_s is drawn from the lognormal truncated to z_s > z_l + MIN_DZ: nothing piles up at the bound
    from lensnb.priors import MIN_DZ, LENS_DRAWS, lens_from_uniforms

    n = 20000
    u = np.random.default_rng(4).random((LENS_DRAWS, n))
    df = lens_from_uniforms({"dist": "host"}, {"dist": "uniform_area", "max_over_theta_e": 1.0}, 0.0, 0.0, u,
                            zs_median=1.0, zs_log_sd=0.3, z_l=np.full(n, 0.9), sigma_v=np.full(n, 250.0))
    assert (df["z_s"] > 0.9 + MIN_DZ).all()
    assert np.mean(df["z_s"] < 0.9 + MIN_DZ + 1e-3) < 0.01
    with pytest.raises(ValueError, match="needs sigma_v"):
        lens_from_uniforms({"dist": "host"}, {"dist": "uniform_area", "max_over_theta_e": 1.0}, 0.0, 0.0, u)


def test_short_descriptions():
    assert describe_theta_e({"dist": "grid", "values": [0.5, 1.0, 2.5]}) == "grid {0.5, 1, 2.5}″"
    assert describe_theta_e({"dist": "loguniform", "low": 0.5, "high": 2.5}) == "logU(0.5, 2.5)″"
    assert describe_beta({"dist": "uniform_area", "max_over_theta_e": 0.7}) == "area, ≤ 0.7 θ_E"
    assert describe_beta({"dist": "uniform_radius", "max_over_theta_e": 1.0}) == "U(|β|), ≤ 1 θ_E"


@pytest.mark.parametrize(
    "theta_e, message",
    [({"dist": "grid", "values": []}, "non-empty list"), ({"dist": "grid", "values": [1.0, -0.5]}, "positive"),
     ({"dist": "grid", "values": 1.0}, "non-empty list")],
)
def test_bad_grid_is_refused(theta_e, message):
    with pytest.raises(ValueError, match=message):
        validate_prior("g", {"theta_e": theta_e, "beta": {"dist": "uniform_area", "max_over_theta_e": 1}})


def test_host_independent_preset_needs_no_host_redshift_or_dispersion():
    # the team's hosts carry neither host_z nor host_sigma_v_kms; a preset whose theta_E does not depend on the
    # host draws without them (the same lenses as with the columns present), a host-tied preset refuses
    import pandas as pd
    import pytest

    from lensnb.populations import get_preset, sample_injections

    bare = pd.DataFrame({"host_id": [3, 4]})
    full = bare.assign(host_z=[0.5, 0.6], host_sigma_v_kms=[220.0, 260.0])
    a = sample_injections(bare, 3, get_preset("request"), seed=1)
    b = sample_injections(full, 3, get_preset("request"), seed=1)
    np.testing.assert_array_equal(a["theta_e_arcsec"], b["theta_e_arcsec"])
    np.testing.assert_array_equal(a["src_mag_g"], b["src_mag_g"])
    with pytest.raises(KeyError, match="host_sigma_v_kms"):
        sample_injections(bare.assign(host_z=[0.5, 0.6]), 3, get_preset("physical"), seed=1)


def test_source_colours_follow_the_preset():
    # the default colours are LensPop's (g - r median -0.01, 16-84% -0.14..0.39); an override moves them
    import pandas as pd

    from lensnb.populations import get_preset, sample_injections

    hosts = pd.DataFrame({"host_id": np.arange(400)})
    base = sample_injections(hosts, 5, get_preset("request"), seed=2)
    gr = base["src_mag_g"] - base["src_mag_r"]
    assert abs(np.median(gr) + 0.01) < 0.03
    assert abs((np.quantile(gr, 0.84) - np.quantile(gr, 0.16)) - 0.53) < 0.05
    red = {"src_g_r": {"median": 1.6, "p16": 1.5, "p84": 1.7}, "src_r_z": {"median": 0.9, "p16": 0.8, "p84": 1.0}}
    r = sample_injections(hosts, 5, get_preset("request", red), seed=2)
    assert abs(np.median(r["src_mag_g"] - r["src_mag_r"]) - 1.6) < 0.02
    assert abs(np.median(r["src_mag_r"] - r["src_mag_z"]) - 0.9) < 0.02
    np.testing.assert_array_equal(r["src_mag_r"], base["src_mag_r"])  # same variates: only the colours move
