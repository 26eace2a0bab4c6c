"""The simulator: Legacy-Surveys-like LRG stamps with injected lensed arcs, paired, as Parquet.

    python -m lensnb.simulate --preset request --hosts 400 --per-host 10 --seed 1 --out data/processed/mini.parquet

Each host is rendered once (Sersic LRG + neighbours, per-band Moffat PSF, Gaussian sky noise: the
``ctrl`` stamp); each injection adds a lensed Sersic source ray-traced through an SIE + shear
(caustics functional layer), supersampled and PSF-convolved, optionally with its own Poisson-like
noise. Random streams are keyed by (seed, host index), so the output does not depend on the batch
size and the same seed gives identical files on the same device.
"""
from __future__ import annotations

import argparse
import sys

import numpy as np
import pandas as pd
import torch

from . import dataset, populations
from .config import CORE_SLICE, STAMP_SIZE
from .lensing import default_device, find_images
from .render import (
    MOFFAT_BETA, convolve, mag_to_nmgy, moffat_kernels, render_arcs, render_sersic, sersic_total_flux_per_amp,
)

BANDS = ("g", "r", "z")
# source photons: nanomaggies -> electrons for the optional arc Poisson noise (assumed ~100 s DECam
# exposure with zero point ~26.5 mag for 1 e-/s: 1 nmgy ~ 4000 e-). Not a sourced number.
ELECTRONS_PER_NMGY = 4000.0


def _t(a, device, dtype=torch.float32):
    return torch.as_tensor(np.array(a, dtype=np.float64), dtype=dtype, device=device)


def render_hosts(hosts: pd.DataFrame, seed: int, *, supersample: int, noise: bool, device) -> np.ndarray:
    """Control stamps (H, 3, 64, 64) [nmgy/pixel] for a batch of hosts (noise keyed by host_id)."""
    H = len(hosts)
    amps = np.stack([mag_to_nmgy(hosts[f"host_mag_{b}"]) for b in BANDS], 1) / sersic_total_flux_per_amp(
        hosts["host_r_eff_arcsec"], hosts["host_n_sersic"])[:, None]
    params = {"x": _t(np.zeros(H), device), "y": _t(np.zeros(H), device),
              "r_eff": _t(hosts["host_r_eff_arcsec"], device), "n": _t(hosts["host_n_sersic"], device),
              "q": _t(hosts["host_q"], device), "phi": _t(hosts["host_phi_rad"], device)}
    img = render_sersic(params, _t(amps, device), supersample)
    for i, (_, h) in enumerate(hosts.iterrows()):
        rng = np.random.default_rng([seed, 4, int(h["host_id"])])
        nb = populations.sample_neighbours(h, rng)
        gal = nb[~nb["star"]]
        if len(gal):
            a = np.stack([mag_to_nmgy(gal[f"mag_{b}"]) for b in BANDS], 1) / sersic_total_flux_per_amp(
                gal["r_eff"], np.ones(len(gal)))[:, None]
            p = {k: _t(gal[k2], device) for k, k2 in (("x", "x"), ("y", "y"), ("r_eff", "r_eff"), ("q", "q"), ("phi", "phi"))}
            p["n"] = _t(np.ones(len(gal)), device)
            img[i] += render_sersic(p, _t(a, device), supersample).sum(0)
        for _, s in nb[nb["star"]].iterrows():
            col = int(round(s["x"] / 0.262 + (STAMP_SIZE - 1) / 2))
            row = int(round(s["y"] / 0.262 + (STAMP_SIZE - 1) / 2))
            if 0 <= row < STAMP_SIZE and 0 <= col < STAMP_SIZE:
                img[i, :, row, col] += _t([mag_to_nmgy(s[f"mag_{b}"]) for b in BANDS], device)
    fwhm = _t(hosts[[f"psf_fwhm_used_{b}" for b in BANDS]].to_numpy(), device, torch.float64)
    kernels = moffat_kernels(fwhm).to(img.dtype)
    out = convolve(img, kernels).cpu().numpy()
    if noise:
        for i, (_, h) in enumerate(hosts.iterrows()):
            rng = np.random.default_rng([seed, 2, int(h["host_id"])])
            sig = np.array([h[f"noise_sigma_{b}"] for b in BANDS])
            out[i] += (rng.standard_normal((3, STAMP_SIZE, STAMP_SIZE)) * sig[:, None, None]).astype(np.float32)
    return out.astype(np.float32), kernels


def simulate_batch(hosts: pd.DataFrame, per_host: int, preset: dict, seed: int, *, supersample: int = 3,
                   noise: bool = True, arc_noise: bool = False, device=None) -> tuple[pd.DataFrame, np.ndarray, np.ndarray]:
    """Simulate ``per_host`` injections for each host; returns (meta, stamps, ctrls) with stamps (N, 3, 64, 64)."""
    device = torch.device(device) if device is not None else default_device()
    ctrl, kernels = render_hosts(hosts, seed, supersample=supersample, noise=noise, device=device)
    inj = []
    for i, (_, h) in enumerate(hosts.iterrows()):
        rng = np.random.default_rng([seed, 1, int(h["host_id"])])
        d = populations.sample_injections(h, per_host, preset, rng)
        d.insert(0, "_hidx", i)
        inj.append(d)
    inj = pd.concat(inj, ignore_index=True)
    hidx = inj.pop("_hidx").to_numpy()
    meta = pd.concat([hosts.iloc[hidx].reset_index(drop=True), inj], axis=1)
    flux_per_amp = sersic_total_flux_per_amp(meta["src_r_eff_arcsec"], meta["src_n_sersic"])
    for b in BANDS:
        meta[f"src_amp_{b}"] = mag_to_nmgy(meta[f"src_mag_{b}"]) / flux_per_amp
    lens = {"theta_e": _t(meta["theta_e_arcsec"], device), "q": _t(meta["lens_q"], device),
            "phi": _t(meta["lens_phi_rad"], device), "gamma1": _t(meta["shear_gamma1"], device),
            "gamma2": _t(meta["shear_gamma2"], device)}
    src = {"x": _t(meta["src_x_arcsec"], device), "y": _t(meta["src_y_arcsec"], device),
           "r_eff": _t(meta["src_r_eff_arcsec"], device), "n": _t(meta["src_n_sersic"], device),
           "q": _t(meta["src_q"], device), "phi": _t(meta["src_phi_rad"], device)}
    amps = _t(meta[[f"src_amp_{b}" for b in BANDS]].to_numpy(), device)
    arcs = convolve(render_arcs(lens, src, amps, supersample), kernels[torch.as_tensor(hidx, device=device)])
    arcs = arcs.cpu().numpy().astype(np.float32)
    sig = meta[[f"noise_sigma_{b}" for b in BANDS]].to_numpy()
    meta["arc_snr"] = np.sqrt(((arcs.astype(np.float64) / sig[:, :, None, None]) ** 2).sum(axis=(1, 2, 3)))
    meta["arc_snr_r"] = np.sqrt(((arcs[:, 1].astype(np.float64) / sig[:, 1, None, None]) ** 2).sum(axis=(1, 2)))
    meta["arc_flux_r"] = arcs[:, 1].sum(axis=(1, 2))
    meta["arc_core_flux_frac_r"] = arcs[:, 1, CORE_SLICE, CORE_SLICE].sum(axis=(1, 2)) / np.maximum(meta["arc_flux_r"], 1e-30)
    stamps = ctrl[hidx] + arcs
    if arc_noise:
        for j in range(len(meta)):
            rng = np.random.default_rng([seed, 3, int(meta["host_id"].iat[j]), j % per_host])
            var = np.clip(arcs[j], 0, None) / ELECTRONS_PER_NMGY
            stamps[j] += (rng.standard_normal(var.shape) * np.sqrt(var)).astype(np.float32)
    im = find_images(meta["src_x_arcsec"], meta["src_y_arcsec"], meta["theta_e_arcsec"], meta["lens_q"],
                     meta["lens_phi_rad"], meta["shear_gamma1"], meta["shear_gamma2"], device="cpu",
                     n_radial=60, n_angular=64)
    meta["n_images"] = im.n
    meta["inner_image_r_arcsec"] = np.where(im.n >= 2, im.r[:, 0], np.nan)
    meta["total_magnification"] = np.nansum(np.abs(im.mu), axis=1)
    meta["psf_moffat_beta"] = MOFFAT_BETA
    meta["supersampling"] = supersample
    return meta, stamps, ctrl[hidx]


def simulate(preset: str, n_hosts: int, per_host: int, seed: int, out, *, noise: bool = True,
             arc_noise: bool = False, supersample: int = 3, device=None, hosts_per_batch: int = 16,
             preset_overrides: dict | None = None, progress: bool = True) -> pd.DataFrame:
    """Write a paired dataset to ``out`` (Parquet, atomically); return its metadata."""
    if n_hosts < 1 or per_host < 1:
        raise ValueError("hosts and per-host must be at least 1")
    spec = populations.get_preset(preset, preset_overrides)
    hosts = populations.sample_hosts(n_hosts, np.random.default_rng([seed, 0]))
    cols = list(dataset.SCHEMA)
    metas = []
    batches = range(0, n_hosts, hosts_per_batch)
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=n_hosts * per_host, desc=f"simulating {preset}", unit="pair")
    with dataset.AtomicParquetWriter(out, dataset.arrow_schema(cols)) as w:
        for s in batches:
            meta, stamps, ctrls = simulate_batch(hosts.iloc[s : s + hosts_per_batch], per_host, spec, seed,
                                                 supersample=supersample, noise=noise, arc_noise=arc_noise,
                                                 device=device)
            meta["preset"], meta["seed"] = preset, seed
            meta["stamp_npz"] = [dataset.encode_npz(a) for a in stamps]
            meta["ctrl_stamp_npz"] = [dataset.encode_npz(a) for a in ctrls]
            w.write(meta)
            metas.append(meta.drop(columns=list(dataset.NPZ_COLUMNS)))
            if bar:
                bar.update(len(meta))
    if bar:
        bar.close()
    return pd.concat(metas, ignore_index=True)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m lensnb.simulate", description=__doc__.split("\n\n")[0])
    ap.add_argument("--preset", required=True, choices=sorted(populations.PRESETS))
    ap.add_argument("--hosts", type=int, required=True, help="number of host LRGs")
    ap.add_argument("--per-host", type=int, required=True, help="injections per host")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", required=True, help="output Parquet file")
    ap.add_argument("--no-noise", action="store_true", help="no sky noise (noise-free stamps)")
    ap.add_argument("--arc-noise", action="store_true", help="add Poisson-like noise of the arc")
    ap.add_argument("--supersample", type=int, default=3)
    ap.add_argument("--device", default=None, help="torch device (default: cuda if available, else cpu)")
    a = ap.parse_args(argv)
    try:
        meta = simulate(a.preset, a.hosts, a.per_host, a.seed, a.out, noise=not a.no_noise, arc_noise=a.arc_noise,
                        supersample=a.supersample, device=a.device)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"wrote {len(meta)} rows over {meta['host_id'].nunique()} hosts to {a.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
