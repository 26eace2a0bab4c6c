"""Clumpy sources: knots drawn per injection, flux conserved, and a smooth source unchanged."""
import numpy as np
import pandas as pd
import pytest
import torch

from lensnb import populations
from lensnb.render import render_arcs
from lensnb.simulate import lens_source_tensors


def _inj(frac, n_hosts=200, k=5, seed=0):
    hosts = populations.sample_hosts(n_hosts, np.random.default_rng(1))
    spec = populations.get_preset("request", {"src_clumpy_fraction": frac})
    return populations.sample_injections(hosts, k, spec, seed)


def test_knot_columns_are_consistent():
    inj = _inj(0.5)
    clumpy = inj["src_n_knots"] > 0
    assert clumpy.mean() == pytest.approx(0.5, abs=0.05)
    assert inj.loc[clumpy, "src_n_knots"].between(2, 4).all()
    fr = inj[[f"src_knot{i}_frac" for i in range(populations.MAX_KNOTS)]].sum(axis=1)
    np.testing.assert_allclose(fr, inj["src_knot_flux_frac"], atol=1e-12)
    assert inj.loc[clumpy, "src_knot_flux_frac"].between(0.2, 0.5).all()
    assert (inj.loc[~clumpy, [c for c in inj if c.startswith("src_knot")]] == 0).all().all()
    smooth = _inj(0.0)  # the other injection columns do not depend on the clumps' stream
    pd.testing.assert_frame_equal(smooth[["theta_e_arcsec", "src_mag_r", "src_x_arcsec"]],
                                  inj[["theta_e_arcsec", "src_mag_r", "src_x_arcsec"]])


def test_clumpy_source_keeps_its_flux_and_is_lumpier():
    inj = _inj(1.0, n_hosts=2, k=4)
    inj["theta_e_arcsec"] = 0.005  # almost no lensing: the image is the source
    inj["src_x_arcsec"], inj["src_y_arcsec"] = 0.4, -0.3
    inj["src_r_eff_arcsec"] = 0.4
    lens, src = lens_source_tensors(inj, dtype=torch.float64)
    assert "knot_frac" in src
    one = torch.ones(len(inj), 1, dtype=torch.float64)
    img = render_arcs(lens, src, one)[:, 0]
    smooth = render_arcs(lens, {k: v for k, v in src.items() if not k.startswith("knot")}, one)[:, 0]
    np.testing.assert_allclose(img.sum(dim=(1, 2)), smooth.sum(dim=(1, 2)), rtol=0.01)  # knots take the disc's flux
    # compact knots stand out: every image departs from the smooth one by > 20% of its peak somewhere
    assert ((img - smooth).abs().amax(dim=(1, 2)) > 0.2 * smooth.amax(dim=(1, 2))).all()
