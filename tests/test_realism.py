"""Simulator realism options (populations.REALISM_ON): each changes what it claims and nothing else."""
import numpy as np
import pandas as pd
import pytest
import torch

from lensnb import populations, simulate
from lensnb.config import PIXEL_SCALE, STAMP_SIZE
from lensnb.render import mag_to_nmgy, render_arcs


def _hosts(n=6, seed=0, **cols):
    h = populations.sample_hosts(n, np.random.default_rng(seed))
    h["n_neighbours"], h["n_stars"] = 0, 0
    for k, v in cols.items():
        h[k] = v
    return h


def _ctrl(hosts, real, noise=False, seed=1):
    h = pd.concat([hosts.reset_index(drop=True), populations.host_structure(hosts.reset_index(drop=True), real, seed)], axis=1)
    img, _ = simulate.render_hosts(h, seed, supersample=3, noise=noise, device="cpu", real=real)
    return img.numpy().astype(float), h


def test_structure_off_is_the_single_centred_sersic():
    h = _hosts()
    st = populations.host_structure(h, populations.REALISM_OFF, 0)
    assert (st[["host_x_arcsec", "host_y_arcsec"]] == 0).all().all()
    assert (st[[f"host_bulge_frac_{b}" for b in "grz"]] == 1).all().all()
    np.testing.assert_array_equal(st["host_bulge_r_eff_arcsec"], h["host_r_eff_arcsec"])


def test_structure_on_is_keyed_by_host_and_within_its_ranges():
    h = _hosts(40)
    real = populations.REALISM_ON
    st = populations.host_structure(h, real, 3)
    half = real["centre_jitter_px"] * PIXEL_SCALE
    assert st["host_x_arcsec"].abs().max() <= half and st["host_y_arcsec"].abs().max() <= half
    assert st["host_x_arcsec"].std() > 0.3 * half  # spread over the interval, not stuck at 0
    assert (st["host_bulge_frac_g"] < st["host_bulge_frac_r"]).all() and (st["host_bulge_frac_r"] < st["host_bulge_frac_z"]).all()
    again = populations.host_structure(h.iloc[10:20], real, 3)  # another batch: the same hosts look the same
    pd.testing.assert_frame_equal(again, st.iloc[10:20])


def test_unknown_realism_option_is_refused():
    with pytest.raises(ValueError, match="unknown realism option"):
        populations.realism({"realism": {"poisson": True, "sparkles": 1}})


def test_two_component_host_keeps_each_band_flux_and_is_bluer_outside():
    h = _hosts(4, host_r_eff_arcsec=1.2, host_q=0.8)
    img, full = _ctrl(h, {**populations.REALISM_OFF, "two_component": True, "colour_gradient": 0.15})
    flux = img.sum(axis=(2, 3))
    for b, band in enumerate("grz"):  # less the n = 4 and n = 1 wings beyond the stamp (~3%)
        np.testing.assert_allclose(flux[:, b], mag_to_nmgy(h[f"host_mag_{band}"]), rtol=0.05)
    yy, xx = np.mgrid[:STAMP_SIZE, :STAMP_SIZE] - (STAMP_SIZE - 1) / 2
    inner = np.hypot(xx, yy) < 3
    share = img[:, :, inner].sum(-1) / img.sum(axis=(2, 3))  # (hosts, bands): light within 3 px
    assert (share[:, 0] < share[:, 2]).all()  # g more extended than z: bluer outskirts
    one, _ = _ctrl(h, populations.REALISM_OFF)
    assert not np.allclose(one, img, rtol=0.05)  # the option changes the image


def test_centre_offset_moves_host_and_lens_together():
    h = _hosts(3, host_r_eff_arcsec=0.5, host_n_sersic=1.0)
    real = {**populations.REALISM_OFF, "centre_jitter_px": 0.5}
    img, full = _ctrl(h, real)
    yy, xx = np.mgrid[:STAMP_SIZE, :STAMP_SIZE] - (STAMP_SIZE - 1) / 2
    r = img[:, 1]
    cx = (r * xx).sum(axis=(1, 2)) / r.sum(axis=(1, 2)) * PIXEL_SCALE
    cy = (r * yy).sum(axis=(1, 2)) / r.sum(axis=(1, 2)) * PIXEL_SCALE
    np.testing.assert_allclose(cx, full["host_x_arcsec"], atol=0.02 * PIXEL_SCALE)
    np.testing.assert_allclose(cy, full["host_y_arcsec"], atol=0.02 * PIXEL_SCALE)
    # the arc: a lens moved by exactly one pixel gives the same image moved by one column
    t = lambda v: torch.tensor([v], dtype=torch.float64)
    lens = {"theta_e": t(1.0), "q": t(0.8), "phi": t(0.3), "gamma1": t(0.02), "gamma2": t(-0.01)}
    src = {"x": t(0.2), "y": t(0.1), "r_eff": t(0.3), "n": t(1.0), "q": t(0.7), "phi": t(0.5)}
    amps = torch.ones(1, 1, dtype=torch.float64)
    a0 = render_arcs(lens, src, amps)[0, 0].numpy()
    a1 = render_arcs({**lens, "x0": t(PIXEL_SCALE), "y0": t(0.0)}, src, amps)[0, 0].numpy()
    np.testing.assert_allclose(a1[:, 1:], a0[:, :-1], atol=1e-9 * a0.max())


def test_photon_noise_has_the_expected_variance():
    h = _hosts(8, host_r_eff_arcsec=0.8, host_mag_g=18.5, host_mag_r=17.5, host_mag_z=17.0)
    off, _ = _ctrl(h, populations.REALISM_OFF)
    on, _ = _ctrl(h, {**populations.REALISM_OFF, "poisson": True})
    e = populations.electrons_per_nmgy()
    for b in range(3):
        bright = off[:, b] > 0.05
        z = (on[:, b] - off[:, b])[bright] / np.sqrt(off[:, b][bright] / e[b])
        assert z.std() == pytest.approx(1.0, abs=0.1) and abs(z.mean()) < 0.1


def test_companions_rate_and_distance():
    h = _hosts(400)
    c = populations.sample_companions(h, 0.3, 2)
    assert len(c) / len(h) == pytest.approx(0.3, abs=0.08)
    r = np.hypot(c["x"], c["y"])
    assert r.min() >= 1.0 and r.max() <= 4.0
    assert (c["mag_r"].to_numpy() > h["host_mag_r"].to_numpy()[c["host_row"].to_numpy(int)] + 1.5).all()
    assert populations.sample_companions(h, 0.0, 2).empty


def test_physical_preset_records_its_realism():
    h = populations.sample_hosts(4, np.random.default_rng(1))
    b = simulate.simulate_on_device(h, 2, populations.get_preset("physical"), 0, device="cpu")
    assert b.meta["photon_noise"].all() and (b.meta["host_bulge_frac_g"] < 1).all()
    assert b.meta["host_x_arcsec"].abs().max() > 0
    r = simulate.simulate_on_device(h, 2, populations.get_preset("request"), 0, device="cpu")
    assert not r.meta["photon_noise"].any() and (r.meta["host_x_arcsec"] == 0).all()


def test_faber_jackson_ties_sigma_to_luminosity():
    h = populations.sample_hosts(3000, np.random.default_rng(5))
    sig = populations.faber_jackson_sigma(h, 1)
    m = populations._abs_mag_r(h)
    slope = np.polyfit(m, np.log10(sig), 1)[0]
    assert slope == pytest.approx(-populations.FJ_SLOPE, abs=0.01)  # brighter (more negative M): larger sigma
    assert np.log10(np.median(sig)) == pytest.approx(populations.FJ_LOG_SIGMA_REF, abs=0.02)
    assert np.corrcoef(m, np.log10(h["host_sigma_v_kms"]))[0, 1] ** 2 < 0.01  # the uncoupled prior had none
    b = simulate.simulate_on_device(h.iloc[:5], 2, populations.get_preset("physical"), 1, device="cpu")
    np.testing.assert_allclose(b.meta.groupby("host_id")["host_sigma_v_kms"].first().to_numpy(),
                               populations.faber_jackson_sigma(h.iloc[:5], 1))


def test_arc_brightness_recovers_the_simulated_arc():
    from lensnb import experiment

    b = simulate.simulate_batch(populations.sample_hosts(6, np.random.default_rng(2)), 4,
                                populations.get_preset("request"), 0, device="cpu")
    meta, st, ct = b
    m = experiment.arc_brightness(st, ct, sigma=meta[[f"noise_sigma_{b}" for b in "grz"]].to_numpy())
    # flux of the stamp difference = the simulator's arc flux; S/N = its noise-free definition
    np.testing.assert_allclose(22.5 - 2.5 * np.log10(meta["arc_flux_r"]), m["arc_mag_r"], atol=1e-3)
    np.testing.assert_allclose(m["arc_snr_grz"], meta["arc_snr"], rtol=1e-4)
    est = experiment.arc_brightness(st, ct)  # noise estimated from the ctrl's outskirts (the team's data)
    np.testing.assert_allclose(est["arc_snr_grz"], meta["arc_snr"], rtol=0.25)
    assert (m["arc_snr_best"] >= m[["arc_snr_g", "arc_snr_r", "arc_snr_z"]].max(axis=1) - 1e-9).all()
    assert (m["arc_to_host_r"] > 0).all()


def test_correlated_sky_noise_keeps_variance_and_correlates_neighbours():
    keys = np.arange(40)
    white = simulate.sky_noise(3, keys, 0.0, "cpu").numpy()
    corr = simulate.sky_noise(3, keys, 0.15, "cpu").numpy()
    for z in (white, corr):
        assert abs(z.std() - 1) < 0.02
    rho = lambda z: np.corrcoef(z[..., :, :-1].ravel(), z[..., :, 1:].ravel())[0, 1]  # noqa: E731
    assert abs(rho(white)) < 0.02
    assert abs(rho(corr) - 2 * 0.15 / (1 + 2 * 0.15**2)) < 0.02
    rho_y = np.corrcoef(corr[..., :-1, :].ravel(), corr[..., 1:, :].ravel())[0, 1]
    assert abs(rho_y - rho(corr)) < 0.02  # the same along rows and columns
    np.testing.assert_array_equal(simulate.sky_noise(3, keys[5:9], 0.15, "cpu").numpy(), corr[5:9])  # keyed by host


def test_tidal_features_at_their_rate_with_the_host_colours_and_radius():
    h = _hosts(400)
    st = populations.sample_tidal(h, 0.2, 5)
    on = st["host_tidal_flux_frac"] > 0
    assert 0.14 < on.mean() < 0.26
    assert (st.loc[~on, "host_tidal_r_arcsec"] == 0).all()
    assert st.loc[on, "host_tidal_r_arcsec"].max() <= populations.TIDAL_R_MAX
    assert (populations.sample_tidal(h, 0.0, 5)["host_tidal_flux_frac"] == 0).all()
    # render one feature alone (no host light): flux = share x host flux per band, centred on its radius and angle
    one = _hosts(1, host_r_eff_arcsec=1.5)
    row = pd.DataFrame({"host_x_arcsec": [0.0], "host_y_arcsec": [0.0], "host_tidal_flux_frac": [0.05],
                        "host_tidal_r_arcsec": [4.0], "host_tidal_width_arcsec": [0.3], "host_tidal_phi_rad": [0.0],
                        "host_tidal_extent_rad": [np.deg2rad(90)]})
    flux = np.stack([mag_to_nmgy(one[f"host_mag_{b}"]) for b in "grz"], 1)
    img = simulate.tidal_images(row, flux, "cpu").numpy()[0]
    np.testing.assert_allclose(img.sum(axis=(1, 2)), 0.05 * flux[0], rtol=1e-5)
    yy, xx = (np.mgrid[:STAMP_SIZE, :STAMP_SIZE] - (STAMP_SIZE - 1) / 2) * PIXEL_SCALE
    w = img[1] / img[1].sum()
    assert abs((w * np.hypot(xx, yy)).sum() - 4.0) < 0.3  # on its radius
    assert (w * xx).sum() > 3.0 and abs((w * yy).sum()) < 0.1  # centred on phi = 0 (+x)
    # in a stamp: the realism option adds light only to hosts that have a feature
    hs = _hosts(30, seed=2)
    base, _ = _ctrl(hs, populations.REALISM_OFF)
    tid, full = _ctrl(hs, {**populations.REALISM_OFF, "tidal_fraction": 0.5})
    has = full["host_tidal_flux_frac"].to_numpy() > 0
    assert has.any() and (~has).any()
    np.testing.assert_array_equal(tid[~has], base[~has])
    assert (tid[has].sum(axis=(1, 2, 3)) > base[has].sum(axis=(1, 2, 3))).all()


def test_psf_mismatch_options_scale_the_fwhm_and_broaden_the_wings():
    h = _hosts(6, seed=4)
    h["host_id"] = np.arange(6)
    base = populations.get_preset("request")
    m0, s0, c0 = simulate.simulate_batch(h, 1, base, 3, device="cpu")
    m1, s1, c1 = simulate.simulate_batch(h, 1, populations.get_preset("request", {"psf_scale": 1.1}), 3, device="cpu")
    m2, s2, c2 = simulate.simulate_batch(h, 1, populations.get_preset("request", {"psf_moffat_beta": 2.5}), 3, device="cpu")
    np.testing.assert_allclose(m1["psf_fwhm_used_r"], 1.1 * m0["psf_fwhm_used_r"])
    assert (m2["psf_moffat_beta"] == 2.5).all() and (m0["psf_moffat_beta"] == 3.5).all()
    c = STAMP_SIZE // 2
    core = lambda x: x[:, 1, c - 2:c + 2, c - 2:c + 2].sum(axis=(1, 2))  # noqa: E731
    assert (core(c1) < core(c0)).all()  # a broader PSF spreads the host's core
    yy, xx = np.mgrid[:STAMP_SIZE, :STAMP_SIZE] - (STAMP_SIZE - 1) / 2
    far = np.hypot(xx, yy) > 12
    assert c2[:, 1, far].sum() > c0[:, 1, far].sum()  # heavier Moffat wings put more light far out
