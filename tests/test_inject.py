"""Injection into the team's own host cutouts (ctrl-only manifests)."""
import numpy as np
import pytest

from lensnb import dataset, inject
from tests import corpus


def _hosts_manifest(tmp_path, n_hosts=6):
    df = corpus.good_frame(n_hosts, 2, seed=3)[["ctrl_stamp_npz", "ra", "dec", "brickname", "psf_fwhm_used_r"]]
    return corpus.write(df, tmp_path / "hosts.parquet")


def test_injection_makes_a_valid_paired_manifest(tmp_path):
    src = _hosts_manifest(tmp_path)
    out = tmp_path / "paired.parquet"
    meta = inject.inject(src, out, preset="request", per_host=3, seed=1, device="cpu")
    assert len(meta) == 18 and meta["ra"].nunique() == 6
    assert dataset.validate(out) == 18
    imgs, m = dataset.load(out)
    arc = imgs["stamp_npz"] - imgs["ctrl_stamp_npz"]
    assert (arc.sum(axis=(1, 2, 3)) > 0).all() and (m["arc_snr"] > 0).all()
    # the control is the host cutout itself, unchanged
    hosts, ctrl = inject.read_hosts(src)
    first = {(round(r, 6), round(d, 6)): i for i, (r, d) in enumerate(zip(hosts["ra"], hosts["dec"]))}
    for i in range(len(m)):
        np.testing.assert_array_equal(imgs["ctrl_stamp_npz"][i], ctrl[first[(round(m.ra[i], 6), round(m.dec[i], 6))]])
    # same seed, same bytes
    inject.inject(src, tmp_path / "again.parquet", preset="request", per_host=3, seed=1, device="cpu")
    assert (tmp_path / "again.parquet").read_bytes() == out.read_bytes()


def test_host_consistent_preset_needs_host_columns(tmp_path):
    src = _hosts_manifest(tmp_path)
    with pytest.raises(ValueError, match=r"needs column\(s\) \['host_z', 'host_sigma_v_kms'\]"):
        inject.inject(src, tmp_path / "x.parquet", preset="physical", device="cpu")
    assert not (tmp_path / "x.parquet").exists()


def test_noise_is_measured_on_the_cutout(tmp_path):
    src = _hosts_manifest(tmp_path, 3)
    meta = inject.inject(src, tmp_path / "p.parquet", per_host=1, device="cpu")
    # corpus noise sigmas: g 0.003, r 0.004, z 0.012
    np.testing.assert_allclose(meta[["noise_sigma_g", "noise_sigma_r", "noise_sigma_z"]].mean(), [0.003, 0.004, 0.012], rtol=0.1)


def test_missing_host_column_is_named(tmp_path):
    df = corpus.good_frame(3, 1)[["ctrl_stamp_npz", "ra", "dec", "brickname"]]
    src = corpus.write(df, tmp_path / "h.parquet")
    with pytest.raises(ValueError, match="missing required column 'psf_fwhm_used_r'"):
        inject.inject(src, tmp_path / "o.parquet", device="cpu")
