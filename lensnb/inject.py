"""Inject lensed arcs into the team's own host cutouts (a manifest of host-only stamps).

    python -m lensnb.inject --hosts-manifest PATH --preset request --per-host 10 --seed 1 --out paired.parquet

Input: Parquet file(s) with ``ctrl_stamp_npz`` (host without arc), ``ra``, ``dec``, ``brickname`` and
``psf_fwhm_used_r`` [arcsec] (``psf_fwhm_used_g``/``_z`` if present; otherwise the r value scaled by
the DR9-south median ratios g/r = 1.48/1.33 and z/r = 1.24/1.33). One host image per (ra, dec) is used.
The per-band sky noise is measured on each cutout (1.4826 x MAD of the pixels more than 16 px from the
centre). Arcs are drawn from a simulator preset and rendered with lensnb's lensing engine; the output is
a paired manifest in the team's format (``stamp_npz`` = cutout + arc, ``ctrl_stamp_npz`` = cutout),
written atomically. Presets that tie theta_E to the host need ``host_z`` and ``host_sigma_v_kms``.
"""
from __future__ import annotations

import argparse
import sys

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import torch

from . import dataset, populations
from .config import RADIUS_PX
from .lensing import default_device
from .render import MOFFAT_BETA, moffat_kernels
from .simulate import BANDS, as_tensor, injected_arcs

HOST_REQUIRED = ("ctrl_stamp_npz", "ra", "dec", "brickname", "psf_fwhm_used_r")
FWHM_RATIO = {"g": 1.48 / 1.33, "r": 1.0, "z": 1.24 / 1.33}
_OUTER = RADIUS_PX > 16


def read_hosts(path, max_hosts: int | None = None) -> tuple[pd.DataFrame, np.ndarray]:
    """One row and one host image (3, 64, 64) per distinct (ra, dec); the first ``max_hosts`` if given."""
    dataset.validate_schema(path, required=HOST_REQUIRED)
    rows, imgs, seen = [], [], set()
    for f in dataset.manifest_files(path):
        pf = pq.ParquetFile(f)
        names = [c for c in pf.schema_arrow.names if c != "stamp_npz"]
        offset = 0
        for batch in pf.iter_batches(batch_size=1024, columns=names):
            frame = batch.to_pandas()
            for i, r in frame.iterrows():
                key = (round(float(r["ra"]), 6), round(float(r["dec"]), 6))
                if key in seen:
                    continue
                if max_hosts is not None and len(seen) >= max_hosts:
                    return pd.DataFrame(rows).reset_index(drop=True), np.stack(imgs)
                seen.add(key)
                imgs.append(dataset.decode_npz(r["ctrl_stamp_npz"], f"{f}: row {offset + i}, column 'ctrl_stamp_npz'"))
                rows.append(r.drop(labels=["ctrl_stamp_npz"]))
            offset += batch.num_rows
    hosts = pd.DataFrame(rows).reset_index(drop=True)
    return hosts, np.stack(imgs)


def host_columns(columns) -> list[str]:
    """The columns of a manifest that describe the host and its imaging (kept when arcs are injected);
    per-injection columns (theta_E, source, arc statistics, ...) of a paired manifest are dropped, since
    the injection draws its own."""
    keep = ("ra", "dec", "brickname", "n_neighbours", "n_stars")
    return [c for c in columns if c in keep or c.startswith(("host_", "psf_fwhm_used_", "noise_sigma_"))]


def host_frame(hosts: pd.DataFrame, ctrl: np.ndarray) -> pd.DataFrame:
    """The host table the arc renderer needs, from the team's host rows and their cutouts ``ctrl`` (H, 3, 64, 64)
    [nmgy/pixel]: a ``host_id`` per row, ``host_z``/``host_sigma_v_kms`` (NaN where unknown), PSF FWHM per band
    [arcsec] (g and z scaled from r by the DR9-south median ratios where absent) and the per-band sky noise
    measured on the cutout (1.4826 x MAD of the pixels more than 16 px from the centre) [nmgy/pixel]."""
    hosts = hosts.reset_index(drop=True).copy()
    hosts["host_id"] = np.arange(len(hosts))
    for c in ("host_z", "host_sigma_v_kms"):  # unknown for the team's hosts: only host-tied presets need them
        if c not in hosts:
            hosts[c] = np.nan
    for b in BANDS:
        if f"psf_fwhm_used_{b}" not in hosts:
            hosts[f"psf_fwhm_used_{b}"] = hosts["psf_fwhm_used_r"] * FWHM_RATIO[b]
        px = ctrl[:, BANDS.index(b)][:, _OUTER]
        hosts[f"noise_sigma_{b}"] = 1.4826 * np.median(np.abs(px - np.median(px, axis=1, keepdims=True)), axis=1)
    return hosts


def inject_arrays(hosts: pd.DataFrame, ctrl: np.ndarray, *, preset: str = "request", per_host: int = 1,
                  seed: int = 0, supersample: int = 3, device=None, preset_overrides: dict | None = None,
                  arc_scale: float = 1.0, where: str = "hosts") -> tuple[pd.DataFrame, np.ndarray, np.ndarray]:
    """Arcs of ``preset`` injected into host cutouts held in memory: ``hosts`` (one row per cutout, with
    ``psf_fwhm_used_r`` [arcsec]) and ``ctrl`` (H, 3, 64, 64) [nmgy/pixel]. Returns (meta, stamps, hidx): one
    row per injection (its host row ``hidx``, theta_E, source, LensPop S/N and cut columns), the stamps
    (cutout + ``arc_scale`` x arc) [nmgy/pixel]. Seeded: the same inputs give the same arcs. ``where`` names
    the hosts in error messages."""
    if arc_scale < 0:
        raise ValueError(f"arc_scale must be >= 0, got {arc_scale}")
    spec = populations.get_preset(preset, preset_overrides)
    device = torch.device(device) if device is not None else default_device()
    if spec["theta_e"]["dist"] == "host":
        missing = [c for c in ("host_z", "host_sigma_v_kms") if c not in hosts or hosts[c].isna().any()]
        if missing:
            raise ValueError(f"{where}: preset {preset!r} ties theta_E to the host and needs column(s) {missing}")
    ctrl = np.asarray(ctrl, dtype=np.float32)
    hosts = host_frame(hosts, ctrl)
    fwhm = as_tensor(hosts[[f"psf_fwhm_used_{b}" for b in BANDS]].to_numpy(float), device, torch.float64)
    kernels = moffat_kernels(fwhm).float()
    meta, hidx, arcs = injected_arcs(hosts, per_host, spec, seed, kernels, supersample=supersample, device=device,
                                     host_images=as_tensor(ctrl, device))
    hidx = np.asarray(hidx, dtype=np.int64)
    stamps = ctrl[hidx] + np.float32(arc_scale) * arcs.cpu().numpy()
    for c in ("arc_snr", "arc_snr_r", "arc_flux_r"):
        if c in meta:
            meta[c] = meta[c] * arc_scale
    meta["psf_moffat_beta"] = MOFFAT_BETA
    meta["supersampling"] = supersample
    meta["preset"], meta["seed"] = preset, seed
    return meta, stamps, hidx


def inject(path, out, *, preset: str = "request", per_host: int = 1, seed: int = 0, supersample: int = 3,
           device=None, preset_overrides: dict | None = None, arc_scale: float = 1.0,
           max_hosts: int | None = None) -> pd.DataFrame:
    """Write a paired manifest with arcs injected into the hosts of ``path``; return its metadata.

    ``arc_scale`` multiplies every arc's flux; 0 is the null injection: every step of the injection path
    runs (decoding, adding, re-encoding, writing), only the arc's flux is zero, so any difference left
    between ``stamp_npz`` and ``ctrl_stamp_npz`` is made by the processing, not by an arc."""
    hosts, ctrl = read_hosts(path, max_hosts)
    hosts = hosts[host_columns(hosts.columns)]
    meta, stamps, hidx = inject_arrays(hosts, ctrl, preset=preset, per_host=per_host, seed=seed,
                                       supersample=supersample, device=device, preset_overrides=preset_overrides,
                                       arc_scale=arc_scale, where=str(path))
    meta["stamp_npz"] = [dataset.encode_npz(a) for a in stamps]
    meta["ctrl_stamp_npz"] = [dataset.encode_npz(a) for a in ctrl[hidx]]
    cols = [c for c in dataset.SCHEMA if c in meta.columns]
    with dataset.AtomicParquetWriter(out, dataset.arrow_schema(cols)) as w:
        w.write(meta)
    return meta.drop(columns=list(dataset.NPZ_COLUMNS))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m lensnb.inject", description=__doc__.split("\n\n")[0])
    ap.add_argument("--hosts-manifest", required=True)
    ap.add_argument("--preset", default="request", choices=sorted(populations.PRESETS))
    ap.add_argument("--per-host", type=int, default=1)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", required=True)
    ap.add_argument("--device", default=None)
    a = ap.parse_args(argv)
    try:
        meta = inject(a.hosts_manifest, a.out, preset=a.preset, per_host=a.per_host, seed=a.seed, device=a.device)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"wrote {len(meta)} paired rows over {len(meta['ra'].unique())} hosts to {a.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
