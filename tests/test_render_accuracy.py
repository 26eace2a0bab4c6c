"""Arc flux accuracy: adaptive supersampling against converged references (ours at 27x, and lenstronomy)."""
import numpy as np
import pytest
import torch

from lensnb import bench, render
from lensnb.render import REFINE_TIERS, refined_supersampling, render_arcs


def test_refined_supersampling_resolves_the_source():
    r = np.array([0.03, 0.05, 0.1, 0.2, 0.35, 1.0])
    ss = refined_supersampling(r, base=3)
    assert list(ss) == sorted(ss, reverse=True) and ss[-1] == 3 and ss[0] == max(REFINE_TIERS)
    spacing = 0.262 / ss
    assert np.all((spacing <= r / 4 + 1e-12) | (ss == max(REFINE_TIERS)))


@pytest.mark.parametrize("preset", ["request", "physical"])
def test_arc_flux_within_1pc_p95_and_3pc_worst(preset):
    """Over each preset's prior plus a compact tail (R_e 0.03-0.1"), the adaptive render's arc flux is within
    1% (95th percentile) and 3% (worst) of the converged reference; the fixed 3x render is not (on the tail)."""
    df, _ = bench.arc_flux_errors(preset, 60, seed=2, compact_tail=20)
    prior, tail = df[~df["tail"]], df[df["tail"]]
    assert prior["err_adaptive"].abs().quantile(0.95) < 0.01
    assert df["err_adaptive"].abs().max() < 0.03
    assert tail["err_fixed"].abs().max() > 0.03  # the defect the refinement fixes is real on this sample


def test_compact_source_matches_lenstronomy_at_high_supersampling():
    pytest.importorskip("lenstronomy")
    from lenstronomy.Data.imaging_data import ImageData
    from lenstronomy.ImSim.image_model import ImageModel
    from lenstronomy.Data.psf import PSF
    from lenstronomy.LensModel.lens_model import LensModel
    from lenstronomy.LightModel.light_model import LightModel
    from lenstronomy.Util.param_util import phi_q2_ellipticity

    from lensnb.config import PIXEL_SCALE, STAMP_SIZE
    from lensnb.lensing import ellipticity_to_q_phi

    c = (STAMP_SIZE - 1) / 2
    data = ImageData(image_data=np.zeros((STAMP_SIZE, STAMP_SIZE)), ra_at_xy_0=-c * PIXEL_SCALE,
                     dec_at_xy_0=-c * PIXEL_SCALE, transform_pix2angle=np.eye(2) * PIXEL_SCALE)
    model = ImageModel(data, PSF(psf_type="NONE"), lens_model_class=LensModel(["SIE", "SHEAR"]),
                       source_model_class=LightModel(["SERSIC_ELLIPSE"]), kwargs_numerics={"supersampling_factor": 27})
    for theta_e, e1, e2, g1, g2, sx, sy, r_eff, sq, sphi in [
        (1.2, 0.05, -0.03, 0.02, 0.01, 0.31, -0.12, 0.035, 0.7, 0.4),
        (0.8, -0.08, 0.02, -0.03, 0.02, -0.05, 0.09, 0.05, 0.5, 1.9),
    ]:
        q, phi = ellipticity_to_q_phi(np.array([e1]), np.array([e2]))
        t = lambda v: torch.tensor([float(np.asarray(v).ravel()[0])], dtype=torch.float64)
        lens = {"theta_e": t(theta_e), "q": t(q), "phi": t(phi), "gamma1": t(g1), "gamma2": t(g2)}
        src = {"x": t(sx), "y": t(sy), "r_eff": t(r_eff), "n": t(1.0), "q": t(sq), "phi": t(sphi)}
        ours = render_arcs(lens, src, torch.ones(1, 1, dtype=torch.float64), 3)[0, 0].numpy()
        fixed = render_arcs(lens, src, torch.ones(1, 1, dtype=torch.float64), 3, refine=False)[0, 0].numpy()
        se1, se2 = phi_q2_ellipticity(sphi, sq)
        ref = model.image(kwargs_lens=[dict(theta_E=theta_e, e1=e1, e2=e2, center_x=0, center_y=0),
                                       dict(gamma1=g1, gamma2=g2, ra_0=0, dec_0=0)],
                          kwargs_source=[dict(amp=1.0, R_sersic=r_eff, n_sersic=1.0, e1=se1, e2=se2, center_x=sx,
                                              center_y=sy)])
        assert ours.sum() == pytest.approx(ref.sum(), rel=0.01)
        assert np.abs(ours - ref).max() < 0.02 * ref.max()
        assert abs(fixed.sum() / ref.sum() - 1) > abs(ours.sum() / ref.sum() - 1)


def test_sersic_in_place_is_the_plain_expression_bit_for_bit():
    """``render.sersic`` works in place; it must give the bits of the textbook expression it replaced, for a batch
    of galaxies on a shared grid (the renderer's call), per-point parameters (the refinement's) and amplitudes."""
    g = torch.Generator().manual_seed(2)
    B = 5
    x, y = ((torch.rand((1, 40, 40), generator=g) - 0.5) * 6 for _ in range(2))
    par = [torch.rand((B, 1, 1), generator=g) * w + o for w, o in ((2, 0.1), (3.5, 0.5), (0.6, 0.3), (3, 0), (1, -.5),
                                                                     (1, -.5))]
    r_eff, n, q, phi, x0, y0 = par

    def plain(x, y, amp, r_eff, n, q, phi, x0, y0):
        dx, dy = x - x0, y - y0
        c, s = torch.cos(phi), torch.sin(phi)
        xr, yr = c * dx + s * dy, -s * dx + c * dy
        R = torch.sqrt(q * xr**2 + yr**2 / q + 1e-12)
        return amp * torch.exp(-render.sersic_b(n) * ((R / r_eff) ** (1.0 / n) - 1.0))

    for amp in (1.0, torch.rand((B, 1, 1), generator=g) * 3):
        assert torch.equal(render.sersic(x, y, amp, r_eff, n, q, phi, x0, y0), plain(x, y, amp, r_eff, n, q, phi, x0, y0))
    pts = [t[:, :, 0] for t in par]
    xp, yp = x[0, :B, :9], y[0, :B, :9]
    assert torch.equal(render.sersic(xp, yp, 1.0, *pts), plain(xp, yp, 1.0, *pts))


def test_unit_arc_cache_serves_re_simulations_of_the_same_lenses_bit_for_bit(monkeypatch):
    """A re-simulation of the same lenses under another PSF and brighter sources takes its unit arcs from the cache,
    and its stamps are those of a run without the cache; a changed refinement setting is a miss, not a stale read."""
    from lensnb import populations, simulate

    spec = populations.get_preset("request")
    hosts = populations.sample_hosts(6, np.random.default_rng(4))
    variant = {**spec, "psf_scale": 1.1, "src_mag_r": {k: v - 1.0 for k, v in spec["src_mag_r"].items()}}
    with render.no_unit_arc_cache():
        fresh = simulate.simulate_on_device(hosts, 3, variant, 4).stamps
    render.UNIT_ARC_CACHE.clear()
    first = simulate.simulate_on_device(hosts, 3, spec, 4).stamps
    assert render.UNIT_ARC_CACHE.hits == 0 and render.UNIT_ARC_CACHE.misses > 0
    again = simulate.simulate_on_device(hosts, 3, variant, 4).stamps
    assert render.UNIT_ARC_CACHE.hits == render.UNIT_ARC_CACHE.misses  # every batch of the variant served
    assert torch.equal(again, fresh) and not torch.equal(again, first)
    monkeypatch.setattr(render, "REFINE_THRESHOLD", 1e-2)
    hits = render.UNIT_ARC_CACHE.hits
    simulate.simulate_on_device(hosts, 3, spec, 4)
    assert render.UNIT_ARC_CACHE.hits == hits
    render.UNIT_ARC_CACHE.clear()


def test_unit_arc_cache_counts_bytes_and_evicts_the_least_recently_used():
    lru = render._LRU(3 * 400)
    t = torch.zeros(100)  # 400 bytes
    for k in "abc":
        lru.put(k, t)
    lru.put("a", t)  # replaced, not counted twice
    assert lru.bytes == 1200 and list(lru._d) == ["b", "c", "a"]
    assert lru.get("b") is t  # now the most recent
    lru.put("d", t)  # evicts "c", the least recently used
    assert list(lru._d) == ["a", "b", "d"] and lru.bytes == 1200
    lru.put("big", torch.zeros(400))  # larger than the whole budget: not kept
    assert "big" not in lru._d and lru.bytes == 1200
