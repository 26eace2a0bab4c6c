"""The simulator: arcs re-rendered by lenstronomy from the stored parameters, the CLI, the format."""
import os
import stat
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from lensnb import dataset, simulate
from lensnb.config import PIXEL_SCALE, STAMP_SIZE
from lensnb.render import moffat_kernels

pytest.importorskip("lenstronomy")


@pytest.fixture(scope="module")
def noiseless(tmp_path_factory):
    out = tmp_path_factory.mktemp("sim") / "nf.parquet"
    simulate.simulate("request", 6, 3, 11, out, noise=False, device="cpu", progress=False)
    imgs, meta = dataset.load(out)
    return imgs, meta


def test_arcs_match_lenstronomy_rerender(noiseless):
    """Noise-free arc (stamp - ctrl) vs lenstronomy's ImageModel from the stored columns:
    total flux within 1%, pixel residual below 1% of the arc's peak."""
    from lenstronomy.Data.imaging_data import ImageData
    from lenstronomy.Data.psf import PSF
    from lenstronomy.ImSim.image_model import ImageModel
    from lenstronomy.LensModel.lens_model import LensModel
    from lenstronomy.LightModel.light_model import LightModel
    from lenstronomy.Util.param_util import phi_q2_ellipticity

    imgs, meta = noiseless
    c = (STAMP_SIZE - 1) / 2
    data = ImageData(image_data=np.zeros((STAMP_SIZE, STAMP_SIZE)), ra_at_xy_0=-c * PIXEL_SCALE,
                     dec_at_xy_0=-c * PIXEL_SCALE, transform_pix2angle=np.eye(2) * PIXEL_SCALE)
    for i, row in meta.iterrows():
        arc = imgs["stamp_npz"][i] - imgs["ctrl_stamp_npz"][i]
        se1, se2 = phi_q2_ellipticity(row.src_phi_rad, row.src_q)
        kl = [dict(theta_E=row.theta_e_arcsec, e1=row.lens_e1, e2=row.lens_e2, center_x=0, center_y=0),
              dict(gamma1=row.shear_gamma1, gamma2=row.shear_gamma2, ra_0=0, dec_0=0)]
        for b, band in enumerate("grz"):
            kernel = moffat_kernels(torch.tensor([row[f"psf_fwhm_used_{band}"]], dtype=torch.float64))[0].numpy()
            model = ImageModel(data, PSF(psf_type="PIXEL", kernel_point_source=kernel),
                               lens_model_class=LensModel(["SIE", "SHEAR"]),
                               source_model_class=LightModel(["SERSIC_ELLIPSE"]),
                               kwargs_numerics={"supersampling_factor": int(row.supersampling_arc)})
            ks = [dict(amp=row[f"src_amp_{band}"], R_sersic=row.src_r_eff_arcsec, n_sersic=row.src_n_sersic,
                       e1=se1, e2=se2, center_x=row.src_x_arcsec, center_y=row.src_y_arcsec)]
            ref = model.image(kwargs_lens=kl, kwargs_source=ks)
            assert arc[b].sum() == pytest.approx(ref.sum(), rel=0.01), f"row {i} band {band}"
            assert np.abs(arc[b] - ref).max() < 0.01 * ref.max(), f"row {i} band {band}"


def test_moffat_kernel_has_requested_fwhm():
    k = moffat_kernels(torch.tensor([1.3], dtype=torch.float64), size=63, oversample=9)[0].numpy()
    assert k.sum() == pytest.approx(1.0)
    # half-maximum width along the central row, by linear interpolation [arcsec]
    row = k[31] / k[31].max()
    x = (np.arange(63) - 31) * PIXEL_SCALE
    right = np.interp(0.5, row[31:][::-1], x[31:][::-1])
    assert 2 * right == pytest.approx(1.3, rel=0.05)  # pixel integration broadens it slightly


def test_paired_structure(noiseless):
    imgs, meta = noiseless
    assert imgs["stamp_npz"].shape == (18, 3, STAMP_SIZE, STAMP_SIZE) and imgs["stamp_npz"].dtype == np.float32
    for col in dataset.REQUIRED:
        assert col in meta.columns or col in dataset.NPZ_COLUMNS
    # every row of a host has the identical control stamp and identity
    for _, grp in meta.groupby("host_id"):
        idx = grp.index.to_numpy()
        assert all(np.array_equal(imgs["ctrl_stamp_npz"][idx[0]], imgs["ctrl_stamp_npz"][j]) for j in idx)
        assert grp[["ra", "dec", "brickname"]].nunique().max() == 1
    diff = imgs["stamp_npz"] - imgs["ctrl_stamp_npz"]
    assert (diff.sum(axis=(1, 2, 3)) > 0).all()
    assert (meta["arc_snr"] > 0).all()


def test_cli_same_seed_identical_files_and_round_trip(tmp_path):
    a, b, c = tmp_path / "a.parquet", tmp_path / "b.parquet", tmp_path / "c.parquet"
    for out, seed in ((a, 3), (b, 3), (c, 4)):
        rc = simulate.main(["--preset", "physical", "--hosts", "3", "--per-host", "2", "--seed", str(seed),
                            "--out", str(out), "--device", "cpu"])
        assert rc == 0
    assert a.read_bytes() == b.read_bytes()
    umask = os.umask(0)
    os.umask(umask)
    assert stat.S_IMODE(a.stat().st_mode) == 0o666 & ~umask  # not mkstemp's 0600
    assert a.read_bytes() != c.read_bytes()
    imgs, meta = dataset.load(a)
    assert len(meta) == 6 and meta["host_id"].nunique() == 3
    assert np.isfinite(imgs["stamp_npz"]).all()
    sub, m2 = dataset.load(a, rows=[4, 1])
    np.testing.assert_array_equal(sub["stamp_npz"][0], imgs["stamp_npz"][4])
    assert list(m2["host_id"]) == [meta["host_id"][4], meta["host_id"][1]]


def test_batch_size_does_not_change_the_data(tmp_path):
    m1 = simulate.simulate("request", 5, 2, 7, tmp_path / "x.parquet", hosts_per_batch=2, device="cpu", progress=False)
    m2 = simulate.simulate("request", 5, 2, 7, tmp_path / "y.parquet", hosts_per_batch=5, device="cpu", progress=False)
    pd.testing.assert_frame_equal(m1, m2)
    i1, _ = dataset.load(tmp_path / "x.parquet")
    i2, _ = dataset.load(tmp_path / "y.parquet")
    np.testing.assert_allclose(i1["stamp_npz"], i2["stamp_npz"], atol=1e-6)


def test_device_batch_matches_arrays_and_render_chunking(monkeypatch):
    """The device batch (one control per host + host_row) holds the same images as the NumPy arrays,
    and rendering one stamp at a time gives the same pixels as the default chunks."""
    from lensnb import populations

    spec = populations.get_preset("request")
    hosts = populations.sample_hosts(5, np.random.default_rng(3))
    b = simulate.simulate_on_device(hosts, 3, spec, 9, device="cpu")
    meta, stamps, ctrls = simulate.simulate_batch(hosts, 3, spec, 9, device="cpu")
    assert b.ctrls.shape == (5, 3, STAMP_SIZE, STAMP_SIZE) and b.stamps.shape == (15, 3, STAMP_SIZE, STAMP_SIZE)
    np.testing.assert_array_equal(b.host_row.numpy(), np.repeat(np.arange(5), 3))
    np.testing.assert_array_equal(b.stamps.numpy(), stamps)
    np.testing.assert_array_equal(b.ctrls.numpy()[b.host_row.numpy()], ctrls)
    pd.testing.assert_frame_equal(b.meta, meta)
    monkeypatch.setattr(simulate, "render_chunk", lambda device: 1)
    _, stamps1, ctrls1 = simulate.simulate_batch(hosts, 3, spec, 9, device="cpu")
    np.testing.assert_allclose(stamps1, stamps, atol=1e-6)
    np.testing.assert_allclose(ctrls1, ctrls, atol=1e-6)


def test_failed_run_leaves_nothing(tmp_path, monkeypatch):
    calls = {"n": 0}
    real = simulate.simulate_on_device

    def flaky(*a, **k):
        calls["n"] += 1
        if calls["n"] == 2:
            raise RuntimeError("planted failure")
        return real(*a, **k)

    monkeypatch.setattr(simulate, "simulate_on_device", flaky)
    out = tmp_path / "partial.parquet"
    with pytest.raises(RuntimeError, match="planted"):
        simulate.simulate("request", 4, 1, 0, out, hosts_per_batch=2, device="cpu", progress=False)
    assert list(tmp_path.iterdir()) == []


def test_unknown_preset_and_bad_sizes():
    with pytest.raises(ValueError, match="unknown preset"):
        simulate.simulate("nope", 1, 1, 0, "/tmp/never.parquet", progress=False)
    with pytest.raises(ValueError, match="at least 1"):
        simulate.simulate("request", 0, 1, 0, "/tmp/never.parquet", progress=False)
    assert not Path("/tmp/never.parquet").exists()


def test_noise_flags_turn_off_what_they_name(tmp_path):
    """--no-noise: noise-free stamps (no sky noise, no photon noise): every pixel of the light is >= 0 and the
    pair differs only by the arc; --no-sky-noise keeps the preset's photon noise; --realism switches one option."""
    runs = {}
    for name, flags in {"none": ["--no-noise"], "photon": ["--no-sky-noise"],
                        "none_by_option": ["--no-sky-noise", "--realism", "poisson=false"]}.items():
        out = tmp_path / f"{name}.parquet"
        assert simulate.main(["--preset", "physical", "--hosts", "3", "--per-host", "1", "--seed", "2", "--out", str(out),
                              "--device", "cpu", *flags]) == 0
        runs[name] = dataset.load(out)[0]
    none, photon = runs["none"], runs["photon"]
    assert (none["ctrl_stamp_npz"] >= 0).all() and (none["stamp_npz"] >= none["ctrl_stamp_npz"] - 1e-7).all()
    assert not np.array_equal(photon["ctrl_stamp_npz"], none["ctrl_stamp_npz"])  # photon noise of the host stays
    np.testing.assert_array_equal(runs["none_by_option"]["ctrl_stamp_npz"], none["ctrl_stamp_npz"])
    assert simulate.cli_overrides("physical", ["noise_corr=0"])["realism"]["noise_corr"] == 0
    assert simulate.cli_overrides("physical", []) == {}
    with pytest.raises(ValueError, match="unknown option 'sky'"):
        simulate.cli_overrides("physical", ["sky=0"])
    with pytest.raises(ValueError, match="expected OPTION=VALUE"):
        simulate.cli_overrides("physical", ["poisson"])


def test_cached_data_sets_are_named_by_the_thread_count_they_were_simulated_on():
    """The simulated bits follow torch's CPU thread count, so a data set simulated on two threads must not be read
    back as the book's (one thread): the count is part of ``simulator_hash``, which names every cached data set."""
    from lensnb.simulate import simulator_hash
    from lensnb.train import torch_threads

    with torch_threads(1):
        one = simulator_hash()
    with torch_threads(2):
        two = simulator_hash()
    assert one != two and len(one) == len(two) == 10
