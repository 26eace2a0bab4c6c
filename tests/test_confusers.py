"""Confusers (hard negatives): flux, colour and position of each type, and the simulator's confuser path."""
import numpy as np
import pandas as pd
import pytest
import torch

from lensnb import confusers, pools, populations, simulate
from lensnb.config import PIXEL_SCALE, STAMP_SIZE
from lensnb.render import mag_to_nmgy


@pytest.fixture(scope="module")
def rows():
    hosts = populations.sample_hosts(12, np.random.default_rng(3))
    hosts = pd.concat([hosts, populations.host_structure(hosts, populations.REALISM_ON, 1)], axis=1)
    inj = populations.sample_injections(hosts, 5, populations.get_preset("physical"), 1)
    meta = pd.concat([hosts.iloc[inj.pop("host_row")].reset_index(drop=True), inj], axis=1)
    flux = np.stack([mag_to_nmgy(meta[f"src_mag_{b}"]) * 4.0 for b in "grz"], 1)  # a magnified arc's flux
    return meta, flux


def _moments(img):
    yy, xx = (np.mgrid[:STAMP_SIZE, :STAMP_SIZE] - (STAMP_SIZE - 1) / 2) * PIXEL_SCALE
    w = img / img.sum()
    cx, cy = (w * xx).sum(), (w * yy).sum()
    return cx, cy, w, xx, yy


def test_unknown_type_is_refused():
    with pytest.raises(ValueError, match="unknown confuser type"):
        confusers.parse_types("ring,donut")
    assert confusers.parse_types("all") == list(confusers.CONFUSER_TYPES)


@pytest.mark.parametrize("kind", confusers.CONFUSER_TYPES)
def test_each_type_has_the_arc_flux_and_colour_and_sits_where_it_should(rows, kind):
    meta, flux = rows
    got, img = confusers.confuser_images(meta, [kind], flux, seed=2)
    img = img.numpy().astype(float)
    assert (got == kind).all()
    want = flux if kind != "unlensed_source" else np.stack([mag_to_nmgy(meta[f"src_mag_{b}"]) for b in "grz"], 1)
    np.testing.assert_allclose(img.sum(axis=(2, 3)), want, rtol=1e-4)  # flux and hence colour per band
    for i in range(len(meta)):
        cx, cy, w, xx, yy = _moments(img[i, 1])
        hx, hy = meta.host_x_arcsec[i], meta.host_y_arcsec[i]
        r = np.hypot(xx - hx, yy - hy)
        if kind == "ring":  # centred on the host, light at the ring's radius
            assert np.hypot(cx - hx, cy - hy) < 0.15
            assert 0.6 < (w * r).sum() < 2.8
        elif kind == "spiral_arms":
            assert 0.4 < (w * r).sum() < 3.5
        elif kind == "blue_companion":
            assert 0.9 < np.hypot(cx - hx, cy - hy) < 3.1
        elif kind == "edge_on_disk":
            assert 0.5 < np.hypot(cx - hx, cy - hy) < 2.8
            cov = np.cov(np.stack([xx.ravel(), yy.ravel()]), aweights=w.ravel())
            ev = np.linalg.eigvalsh(cov)
            assert ev[1] / ev[0] > 4  # thin and elongated
        else:  # the source, unlensed, at beta; a pixelated compact source's centroid is good to half a pixel,
            # an extended one's to a tenth (large ones are cut by the stamp edge)
            tol = 0.5 * PIXEL_SCALE if meta.src_r_eff_arcsec[i] < 0.15 else 0.03
            if meta.src_r_eff_arcsec[i] < 0.5:
                assert np.hypot(cx - hx - meta.src_x_arcsec[i], cy - hy - meta.src_y_arcsec[i]) < tol


def test_confusers_are_seeded_per_row(rows):
    meta, flux = rows
    a = confusers.confuser_images(meta, ["ring", "edge_on_disk"], flux, seed=2)[1]
    b = confusers.confuser_images(meta.iloc[10:20], ["ring", "edge_on_disk"], flux[10:20], seed=2)[1]
    torch.testing.assert_close(a[10:20], b)  # a row's confuser does not depend on the batch
    c = confusers.confuser_images(meta, ["ring", "edge_on_disk"], flux, seed=3)[1]
    assert not torch.allclose(a, c)


def test_simulator_writes_confusers_and_pools_refuse_them_as_positives(tmp_path):
    out = tmp_path / "conf.parquet"
    meta = simulate.simulate("physical", 6, 5, 0, out, confusers="all", device="cpu", progress=False)
    assert sorted(meta["confuser_type"].unique()) == sorted(confusers.CONFUSER_TYPES)
    from lensnb.dataset import StampStore

    store = StampStore(out)
    idx = np.arange(len(store))
    added = store.images(idx, "stamp_npz") - store.images(idx, "ctrl_stamp_npz")
    lens = simulate.simulate_batch(populations.sample_hosts(6, np.random.default_rng([0, 0])), 5,
                                   populations.get_preset("physical"), 0, device="cpu")
    arc_r = (lens[1] - lens[2])[:, 1].sum(axis=(1, 2))
    not_src = store.meta["confuser_type"].to_numpy() != "unlensed_source"
    # a confuser carries its arc's flux (less what the PSF spreads off the stamp); photon noise is added
    np.testing.assert_allclose(added[not_src, 1].sum(axis=(1, 2)), arc_r[not_src], rtol=0.05, atol=0.05)
    with pytest.raises(ValueError, match="confuser_type"):
        pools.build_design("paired", store.meta, pools.host_key(store.meta).unique(), 5, 5, 0)
