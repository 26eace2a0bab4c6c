"""LensPop's detectability cuts and the `detectable` preset: the S/N definition on planted arcs, the seeing test
on either side of its boundary, and a simulated batch whose every injection passes the cuts it claims."""
import numpy as np
import pandas as pd
import pytest
import torch

from lensnb import detectability, populations, simulate
from lensnb.populations import electrons_per_nmgy

S = 16


def _planted(pixels, flux, host=0.0):
    arc = torch.zeros((1, 3, S, S), dtype=torch.float64)
    for k in range(pixels):
        arc[0, :, k, 0] = flux
    return arc, torch.full_like(arc, host)


def test_lenspop_snr_one_pixel_counts_sky_and_the_arcs_photon_noise():
    sky, f = 0.01, 0.5
    arc, host = _planted(1, f)
    snr = detectability.lenspop_snr(arc, host, np.full((1, 3), sky)).numpy()[0]
    expect = f / np.sqrt(sky**2 + f / electrons_per_nmgy())
    np.testing.assert_allclose(snr, expect, rtol=1e-9)



def _snr_full_sort(arc, host, sky_sigma):
    """The definition, ranking every pixel (the reference the top-K route must equal)."""
    a = arc.double().flatten(2)
    e = torch.as_tensor(electrons_per_nmgy(), dtype=torch.float64)[None, :, None]
    var = torch.as_tensor(sky_sigma, dtype=torch.float64)[:, :, None] ** 2 + (host.double().flatten(2) + a).clamp_min(0) / e
    order = torch.argsort(a / var.sqrt(), dim=2, descending=True)
    return (torch.gather(a, 2, order).cumsum(2) / torch.gather(var, 2, order).cumsum(2).sqrt()).amax(2)


@pytest.mark.parametrize("top", [3, 40, 2048])
def test_lenspop_snr_ranking_only_the_top_pixels_equals_ranking_all(monkeypatch, top):
    # compact arcs (the tail bound settles them) and faint extended rings on hosts with bright cores (their best
    # aperture holds more than ``top`` pixels: ranked in full); 2048 > 32 x 32 pixels: every pixel ranked at once
    n, size = 24, 32
    g = torch.Generator().manual_seed(0)
    yy, xx = torch.meshgrid(*(torch.arange(size, dtype=torch.float64),) * 2, indexing="ij")
    r = torch.hypot(yy - 15.5, xx - 15.5)
    ring = torch.exp(-0.5 * ((r - 8.0) / 2.0) ** 2)
    knot = torch.exp(-0.5 * ((yy - 10.0) ** 2 + (xx - 20.0) ** 2))
    shape = torch.stack([ring if i % 2 else knot for i in range(n)])[:, None]
    scale = torch.logspace(-3, 1, n, dtype=torch.float64)[:, None, None, None]
    arc = shape * scale * (1 + 0.3 * torch.rand((n, 3, size, size), generator=g, dtype=torch.float64))
    host = (3.0 * torch.exp(-r / 2.0)).expand(n, 3, size, size)
    sky = np.full((n, 3), 0.01)
    ranked_all = []
    nonzero = torch.Tensor.nonzero
    monkeypatch.setattr(torch.Tensor, "nonzero",
                        lambda t, *a, **k: ranked_all.append(int(t.sum())) or nonzero(t, *a, **k))
    monkeypatch.setattr(detectability, "SNR_TOP_PIXELS", top)
    got = detectability.lenspop_snr(arc, host, sky)
    assert torch.equal(got, _snr_full_sort(arc, host, sky))
    if top == 40:  # both routes taken
        assert 0 < ranked_all[0] < 3 * n


def test_lenspop_snr_takes_the_best_aperture_and_counts_the_host():
    sky, f = 0.01, 0.05
    arc, host = _planted(4, f)
    sn4 = detectability.lenspop_snr(arc, host, np.full((1, 3), sky)).numpy()[0]
    var = sky**2 + f / electrons_per_nmgy()
    np.testing.assert_allclose(sn4, 4 * f / np.sqrt(4 * var), rtol=1e-9)  # equal pixels: all four in the aperture
    # a bright host under the arc adds photon noise: the same arc reads lower
    arc_h, host_h = _planted(4, f, host=5.0)
    sn_h = detectability.lenspop_snr(arc_h, host_h, np.full((1, 3), sky)).numpy()[0]
    assert (sn_h < 0.5 * sn4).all()
    # faint pixels that only add noise are left out of the aperture: S/N never falls when they are added
    arc_f = arc.clone()
    arc_f[0, :, 10:, 10:] = 1e-6
    sn_f = detectability.lenspop_snr(arc_f, host, np.full((1, 3), sky)).numpy()[0]
    assert (sn_f >= sn4 - 1e-9).all()


def test_resolvable_either_side_of_the_boundary():
    rs, fwhm = 0.3, 1.3
    t0 = detectability.theta_e_min(rs, fwhm)
    np.testing.assert_allclose(2 * t0**2, (2 * rs) ** 2 + fwhm**2)
    assert detectability.resolvable(t0 * 1.01, rs, fwhm)
    assert not detectability.resolvable(t0 * 0.99, rs, fwhm)


def test_passes_needs_all_three_cuts():
    snr = np.array([25, 15, 25, 25])
    mu = np.array([4, 4, 2, 4])
    res = np.array([True, True, True, False])
    assert detectability.passes(snr, mu, res).tolist() == [True, False, False, False]


def test_theta_bins():
    b = detectability.theta_bins([0.7, 0.75, 1.2, 1.3, np.nan], [1.0, 1.0, 1.0, 1.0, 1.0])
    cats = list(b.categories)
    assert cats == ["θ_E < 0.75 FWHM", "0.75–1.25 FWHM", "θ_E > 1.25 FWHM"]
    assert list(b[:4]) == [cats[0], cats[1], cats[1], cats[2]] and b.isna()[4]


@pytest.fixture(scope="module")
def detectable_batch():
    hosts = populations.sample_hosts(12, np.random.default_rng([3, 0]))
    return hosts, simulate.simulate_on_device(hosts, 5, populations.get_preset("detectable"), 3, device="cpu")


def test_detectable_preset_draws_pass_the_cuts_they_claim(detectable_batch):
    _, b = detectable_batch
    m = b.meta
    assert len(m) == 60 and m["detectable"].all()
    # recomputed independently of the stored flags
    assert (m["arc_snr_lenspop"] >= 20).all() and (m["total_magnification"] >= 3).all()
    fwhm = np.choose(m["arc_snr_lenspop_band"].map({"g": 0, "r": 1, "z": 2}).to_numpy(),
                     m[["psf_fwhm_used_g", "psf_fwhm_used_r", "psf_fwhm_used_z"]].to_numpy().T)
    assert (2 * m["theta_e_arcsec"] ** 2 >= (2 * m["src_r_eff_arcsec"]) ** 2 + fwhm**2).all()
    # the stored S/N is the one of the stored arc on its host (stamp - ctrl carries the arc's photon noise)
    arcs = b.stamps - b.ctrls[b.host_row]
    snr = detectability.lenspop_snr(arcs, b.ctrls[b.host_row],
                                    m[["noise_sigma_g", "noise_sigma_r", "noise_sigma_z"]].to_numpy())
    assert np.corrcoef(snr.numpy().max(1), m["arc_snr_lenspop"])[0, 1] > 0.9
    # planted rejects: some first draws failed and were redrawn
    assert (m["detect_draws"] > 1).any()


def test_physical_preset_keeps_every_draw_and_flags_the_undetectable(detectable_batch):
    hosts, _ = detectable_batch
    m = simulate.simulate_on_device(hosts, 5, populations.get_preset("physical"), 3, device="cpu").meta
    assert (m["detect_draws"] == 1).all()
    assert not m["detectable"].all()  # the physical population holds lenses no survey finds
    ok = detectability.passes(m["arc_snr_lenspop"], m["total_magnification"], m["lens_resolvable"])
    assert (ok == m["detectable"].to_numpy()).all()


def test_impossible_cuts_stop_with_the_hosts_named(detectable_batch):
    hosts, _ = detectable_batch
    spec = populations.get_preset("detectable", {"detect": {"snr_min": 1e9, "mu_min": 3.0, "max_rounds": 2}})
    with pytest.raises(ValueError, match=r"4 of 4 injection\(s\) found no lens passing the detectability cuts .*"
                                          r"\(host_id \[0, 1\]\)"):
        simulate.simulate_on_device(hosts.iloc[:2], 2, spec, 3, device="cpu")


def test_a_rare_host_no_lens_can_pass_keeps_its_draw_flagged():
    """One host of 120 with a PSF no detectable lens resolves: its injection is kept, flagged, and the batch goes on;
    every other injection passes the cuts."""
    hosts = populations.sample_hosts(120, np.random.default_rng([4, 0]))
    for b in "grz":
        hosts.loc[7, f"psf_fwhm_used_{b}"] = 8.0
    spec = populations.get_preset("detectable")
    m = simulate.simulate_on_device(hosts, 1, spec, 3, device="cpu").meta
    assert len(m) == 120 and not m.loc[7, "detectable"] and m.loc[7, "detect_draws"] == spec["detect"]["max_rounds"] + 1
    assert m.drop(index=7)["detectable"].all()


def test_detectable_draws_do_not_depend_on_the_batch(detectable_batch):
    hosts, b = detectable_batch
    spec = populations.get_preset("detectable")
    half = pd.concat([simulate.simulate_on_device(hosts.iloc[s:s + 6], 5, spec, 3, device="cpu").meta
                      for s in (0, 6)], ignore_index=True)
    np.testing.assert_array_equal(half["theta_e_arcsec"].to_numpy(), b.meta["theta_e_arcsec"].to_numpy())
    np.testing.assert_array_equal(half["detect_draws"].to_numpy(), b.meta["detect_draws"].to_numpy())


def test_sourced_comparison_flags_a_median_outside_the_range():
    m = pd.DataFrame({"theta_e_arcsec": np.linspace(0.3, 0.7, 50), "src_z": np.linspace(1.5, 2.2, 50)})
    cmp = detectability.sourced_comparison(m, populations.DETECTABLE_SOURCED).set_index("quantity")
    assert not cmp.loc["theta_e_arcsec", "inside"] and cmp.loc["src_z", "inside"]
    assert "total_magnification" not in cmp.index


def test_a_variant_replays_the_kept_lenses(detectable_batch):
    """Under another preset key (a broader PSF) the same kept draws are rendered, without the cuts: the lenses
    are the same ones, lens by lens, and the flags say which of them the variant would still let through."""
    hosts, b = detectable_batch
    spec = populations.get_preset("detectable", {"psf_scale": 1.3})
    v = simulate.simulate_on_device(hosts, 5, spec, 3, device="cpu", draw_rounds=b.meta["detect_draws"]).meta
    for c in ("theta_e_arcsec", "src_x_arcsec", "src_mag_r", "src_r_eff_arcsec", "detect_draws"):
        np.testing.assert_array_equal(v[c].to_numpy(), b.meta[c].to_numpy())
    assert (v["psf_fwhm_used_r"].to_numpy() > b.meta["psf_fwhm_used_r"].to_numpy()).all()
    assert v["detectable"].mean() < 1.0  # some lenses are no longer resolvable under the broader PSF
    with pytest.raises(ValueError, match="draw_rounds: need 60 values"):
        simulate.simulate_on_device(hosts, 5, spec, 3, device="cpu", draw_rounds=[1, 1])


def test_cached_variant_of_a_detectable_dataset_keeps_its_lenses(tmp_path, monkeypatch):
    from lensnb import config, dataset

    monkeypatch.setattr(config, "PROCESSED_DIR", tmp_path)
    base = simulate.cached_dataset("detectable", 6, 3, 5)
    var = simulate.cached_dataset("detectable", 6, 3, 5, preset_overrides={"src_clumpy_fraction": 1.0})
    assert "_same_" in var.name
    mb, mv = dataset.StampStore(base).meta, dataset.StampStore(var).meta
    np.testing.assert_array_equal(mb["theta_e_arcsec"].to_numpy(), mv["theta_e_arcsec"].to_numpy())
    assert (mv["src_n_knots"] > 0).all() and (mb["src_n_knots"] == 0).all()


def test_cut_shares_count_each_cut_and_leave_missing_columns_undecided():
    f = pd.DataFrame({"arc_snr_lenspop": [25, 15, 30, 40], "total_magnification": [4, 4, 2, 5],
                      "lens_resolvable": [True, True, True, False]})
    assert detectability.cut_shares(f) == {"S/N ≥ 20": 0.75, "μ ≥ 3": 0.75, "resolvable": 0.75, "all three": 0.25}
    team = detectability.cut_shares(f[["arc_snr_lenspop"]])
    assert team["S/N ≥ 20"] == 0.75 and np.isnan(team["μ ≥ 3"]) and np.isnan(team["all three"])
