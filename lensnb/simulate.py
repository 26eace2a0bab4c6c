"""The simulator: Legacy-Surveys-like LRG stamps with injected lensed arcs, paired, as Parquet.

    python -m lensnb.simulate --preset request --hosts 400 --per-host 10 --seed 1 --out data/processed/mini.parquet

Each host is rendered once (Sersic LRG + neighbours, per-band Moffat PSF, Gaussian sky noise: the
``ctrl`` stamp; under the preset's realism options also an envelope, companions, a tidal feature, photon
noise and correlated sky noise); each injection adds a lensed Sersic source ray-traced through an SIE + shear
(caustics functional layer), supersampled and PSF-convolved, optionally with its own Poisson-like
noise. Random streams are keyed by (seed, host index), so the output does not depend on the batch
size and the same seed gives identical files on the same device.
"""
from __future__ import annotations

import argparse
import math
import sys
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch

from . import dataset, populations, rng
from .config import CENTER_PIX, CORE_SLICE, PIXEL_SCALE, STAMP_SIZE
from .lensing import default_device, find_images
from .render import (
    MOFFAT_BETA, bin_supersampled, convolve, mag_to_nmgy, moffat_kernels, pixel_grid, refined_supersampling,
    render_arcs, render_sersic, sersic_total_flux_per_amp,
)

BANDS = ("g", "r", "z")
#: Largest share of a batch's injections allowed to miss a preset's detectability cuts after every redraw (kept,
#: flagged detectable = False); more stops the simulation as a misconfiguration.
MAX_UNDETECTABLE_SHARE = 0.01


def render_chunk(device) -> int:
    """Stamps rendered at once. On a CPU a few stamps keep the supersampled grids (192 x 192 floats
    each) in cache: 8 at a time renders arcs ~4x faster than 640 at a time on 2 cores
    (``python -m lensnb.bench simulate`` prints the rates). On a GPU, large batches fill the device."""
    return 8 if torch.device(device).type == "cpu" else 4096


def _chunked(fn, n: int, chunk: int, out_shape, device) -> torch.Tensor:
    """``fn(slice)`` for consecutive slices of ``range(n)``, written into one (n, *out_shape) tensor."""
    out = torch.empty((n, *out_shape), dtype=torch.float32, device=device)
    for s in range(0, n, chunk):
        sl = slice(s, min(s + chunk, n))
        out[sl] = fn(sl)
    return out


def as_tensor(a, device, dtype=torch.float32):
    """``a`` (array-like) as a tensor of ``dtype`` on ``device``, read through float64 (so columns of any numeric
    dtype convert alike)."""
    return torch.as_tensor(np.array(a, dtype=np.float64), dtype=dtype, device=device)


def lens_source_tensors(meta: pd.DataFrame, device=None, dtype=torch.float32) -> tuple[dict, dict]:
    """The renderer's inputs from injection columns: (lens: theta_e, q, phi, gamma1, gamma2; source: x, y,
    r_eff, n, q, phi), tensors (N,) [arcsec, radians] on ``device``."""
    lens = {k: as_tensor(meta[c], device, dtype) for k, c in (("theta_e", "theta_e_arcsec"), ("q", "lens_q"),
                                                       ("phi", "lens_phi_rad"), ("gamma1", "shear_gamma1"),
                                                       ("gamma2", "shear_gamma2"))}
    for k, c in (("x0", "host_x_arcsec"), ("y0", "host_y_arcsec")):  # the lens sits on the host's centre
        lens[k] = as_tensor(meta[c] if c in meta else np.zeros(len(meta)), device, dtype)
    src = {k: as_tensor(meta[c], device, dtype) for k, c in (("x", "src_x_arcsec"), ("y", "src_y_arcsec"),
                                                      ("r_eff", "src_r_eff_arcsec"), ("n", "src_n_sersic"),
                                                      ("q", "src_q"), ("phi", "src_phi_rad"))}
    if "src_n_knots" in meta and (meta["src_n_knots"].to_numpy() > 0).any():  # clumpy sources: (N, MAX_KNOTS)
        for k in ("x", "y", "sigma", "frac"):
            cols = [f"src_knot{i}_{k}" for i in range(populations.MAX_KNOTS)]
            src[f"knot_{k}"] = torch.as_tensor(meta[cols].to_numpy(np.float64), dtype=dtype, device=device)
        fpa = sersic_total_flux_per_amp(meta["src_r_eff_arcsec"], meta["src_n_sersic"])  # [arcsec^2]
        frac = meta[[f"src_knot{i}_frac" for i in range(populations.MAX_KNOTS)]].to_numpy(np.float64)
        src["knot_amp"] = torch.as_tensor(frac * fpa[:, None], dtype=dtype, device=device)
    return lens, src


def _amps(frame: pd.DataFrame, prefix: str, r_eff, n) -> np.ndarray:
    """Sersic amplitudes (N, 3) [nmgy / arcsec^2] from total magnitudes ``{prefix}{band}``."""
    return np.stack([mag_to_nmgy(frame[f"{prefix}{b}"]) for b in BANDS], 1) / sersic_total_flux_per_amp(r_eff, n)[:, None]


def _photon_noise(light: torch.Tensor, seed: int, stream: int, keys) -> torch.Tensor:
    """Photon noise [nmgy/pixel] of noise-free ``light`` (N, 3, S, S): Gaussian with variance light / (electrons per
    nmgy) per band (``populations.electrons_per_nmgy``); counter-based draws keyed by (seed, stream, keys)."""
    e = as_tensor(populations.electrons_per_nmgy(), light.device)[None, :, None, None]
    return rng.normal(seed, stream, keys, tuple(light.shape[1:]), light.device) * (light.clamp_min(0) / e).sqrt()


def render_hosts(hosts: pd.DataFrame, seed: int, *, supersample: int, noise: bool, device, real: dict | None = None,
                 companions: pd.DataFrame | None = None, psf_beta: float = MOFFAT_BETA):
    """Control stamps (H, 3, 64, 64) [nmgy/pixel] on ``device`` for a batch of hosts, and their PSF kernels.

    Host light and neighbours are rendered in one batch each; the noise is a counter-based function
    of (seed, host_id) (``lensnb.rng``), so it does not depend on the batch. ``real``: the realism options
    (``populations.realism``; default all off): two-component hosts with colour gradients and twist, the
    centre offset (the columns of ``populations.host_structure`` must then be in ``hosts``), companions
    (``companions``: the table of ``populations.sample_companions``, drawn here when not given), photon noise
    of the host light.
    """
    real = real or dict(populations.REALISM_OFF)
    H = len(hosts)
    st = hosts if "host_x_arcsec" in hosts else populations.host_structure(hosts, real, seed)
    chunk = render_chunk(device)
    shape = (3, STAMP_SIZE, STAMP_SIZE)
    mags = np.stack([mag_to_nmgy(hosts[f"host_mag_{b}"]) for b in BANDS], 1)  # (H, 3) total flux [nmgy]
    frac = st[[f"host_bulge_frac_{b}" for b in BANDS]].to_numpy(float)
    comps = [(st["host_bulge_r_eff_arcsec"], hosts["host_n_sersic"] if not real["two_component"] else np.full(H, 4.0),
              hosts["host_phi_rad"], frac)]
    if real["two_component"]:
        comps.append((st["host_envelope_r_eff_arcsec"], np.ones(H), st["host_envelope_phi_rad"], 1.0 - frac))
    img = torch.zeros((H, *shape), dtype=torch.float32, device=device)
    for r_eff, n, phi, f in comps:
        r_eff, n = np.asarray(r_eff, float), np.asarray(n, float)
        params = {"x": as_tensor(st["host_x_arcsec"], device), "y": as_tensor(st["host_y_arcsec"], device),
                  "r_eff": as_tensor(r_eff, device), "n": as_tensor(n, device), "q": as_tensor(hosts["host_q"], device),
                  "phi": as_tensor(phi, device)}
        amps = as_tensor(mags * f / sersic_total_flux_per_amp(r_eff, n)[:, None], device)
        img += _chunked(lambda sl: render_sersic({k: v[sl] for k, v in params.items()}, amps[sl], supersample),
                        H, chunk, shape, device)
    if "host_tidal_flux_frac" in st and (st["host_tidal_flux_frac"].to_numpy(float) > 0).any():
        rows = np.flatnonzero(st["host_tidal_flux_frac"].to_numpy(float) > 0)
        img[torch.as_tensor(rows, device=device)] += tidal_images(st.iloc[rows], mags[rows], device)
    nb = populations.sample_neighbours(hosts, seed)
    gal = nb[~nb["star"].astype(bool)]
    if companions is None:
        companions = populations.sample_companions(hosts, real["companions_per_host"], seed)
    if len(companions):
        gal = pd.concat([gal, companions], ignore_index=True)
    if len(gal):
        p = {c: as_tensor(gal[c], device) for c in ("x", "y", "r_eff", "q", "phi")}
        p["n"] = as_tensor(np.ones(len(gal)), device)
        a = as_tensor(_amps(gal, "mag_", gal["r_eff"], np.ones(len(gal))), device)
        img.index_add_(0, torch.as_tensor(gal["host_row"].to_numpy(np.int64).copy(), device=device),
                       _chunked(lambda sl: render_sersic({k: v[sl] for k, v in p.items()}, a[sl], supersample),
                                len(gal), chunk, shape, device))
    stars = nb[nb["star"].astype(bool)]
    if len(stars):
        col = np.rint(stars["x"].to_numpy(float) / PIXEL_SCALE + CENTER_PIX).astype(np.int64)
        row = np.rint(stars["y"].to_numpy(float) / PIXEL_SCALE + CENTER_PIX).astype(np.int64)
        ok = (row >= 0) & (row < STAMP_SIZE) & (col >= 0) & (col < STAMP_SIZE)
        hr = stars["host_row"].to_numpy(np.int64)[ok]
        flux = as_tensor(np.stack([mag_to_nmgy(stars[f"mag_{b}"].to_numpy(float)[ok]) for b in BANDS], 1), device)
        for b in range(3):
            idx = tuple(torch.as_tensor(v, device=device) for v in (hr, np.full(len(hr), b), row[ok], col[ok]))
            img.index_put_(idx, flux[:, b], accumulate=True)
    fwhm = as_tensor(hosts[[f"psf_fwhm_used_{b}" for b in BANDS]].to_numpy(), device, torch.float64)
    kernels = moffat_kernels(fwhm, beta=psf_beta).to(img.dtype)
    out = _chunked(lambda sl: convolve(img[sl], kernels[sl]), H, chunk, shape, device)
    if real["poisson"]:
        out = out + _photon_noise(out, seed, 5, hosts["host_id"].to_numpy(np.int64))
    if noise:
        sig = as_tensor(hosts[[f"noise_sigma_{b}" for b in BANDS]].to_numpy(), device)[:, :, None, None]
        out = out + sky_noise(seed, hosts["host_id"].to_numpy(np.int64), real["noise_corr"], device) * sig
    return out, kernels


def sky_noise(seed: int, keys, corr: float, device) -> torch.Tensor:
    """Unit-variance sky noise (N, 3, 64, 64) keyed by (seed, keys): white for ``corr`` = 0, else white noise on a
    66 x 66 field convolved with the separable kernel [a, 1, a] / sqrt(1 + 2 a^2) per axis (a = ``corr``), which
    keeps each pixel's variance at 1 and correlates neighbours by 2a / (1 + 2a^2)."""
    if corr <= 0:
        return rng.normal(seed, 2, keys, (3, STAMP_SIZE, STAMP_SIZE), device)
    z = rng.normal(seed, 2, keys, (3, STAMP_SIZE + 2, STAMP_SIZE + 2), device)
    k1 = torch.tensor([corr, 1.0, corr], dtype=z.dtype, device=z.device) / math.sqrt(1 + 2 * corr**2)
    z = k1[0] * z[..., :, :-2] + k1[1] * z[..., :, 1:-1] + k1[2] * z[..., :, 2:]
    return k1[0] * z[..., :-2, :] + k1[1] * z[..., 1:-1, :] + k1[2] * z[..., 2:, :]


def tidal_images(st: pd.DataFrame, flux: np.ndarray, device) -> torch.Tensor:
    """Tidal shells / tails (N, 3, 64, 64) [nmgy/pixel, before the PSF] for hosts with a feature: a Gaussian ring
    segment about the host centre (``host_tidal_*`` columns of ``populations.sample_tidal``) holding
    ``host_tidal_flux_frac`` of the host's total flux ``flux`` (N, 3) [nmgy] in every band (the host's colours)."""
    gx, gy = pixel_grid(3, device, torch.float64)
    col = lambda c: torch.as_tensor(st[c].to_numpy(np.float64, copy=True), device=device)[:, None, None]  # noqa: E731
    dx, dy = gx[None] - col("host_x_arcsec"), gy[None] - col("host_y_arcsec")
    r = torch.sqrt(dx**2 + dy**2)
    dphi = torch.remainder(torch.atan2(dy, dx) - col("host_tidal_phi_rad") + math.pi, 2 * math.pi) - math.pi
    sig_phi = col("host_tidal_extent_rad") / 2.3548
    shape = torch.exp(-0.5 * ((r - col("host_tidal_r_arcsec")) / col("host_tidal_width_arcsec")) ** 2
                      - 0.5 * (dphi / sig_phi) ** 2)
    shape = bin_supersampled(shape, 3)
    shape = shape / shape.sum(dim=(1, 2), keepdim=True).clamp_min(1e-30)
    f = torch.as_tensor(flux * st["host_tidal_flux_frac"].to_numpy(np.float64)[:, None], device=device)
    return (shape[:, None] * f[:, :, None, None]).float()


def injected_arcs(hosts: pd.DataFrame, per_host: int, preset: dict, seed: int, kernels: torch.Tensor, *,
                  supersample: int, device, refine: bool = True, host_images: torch.Tensor | None = None,
                  draw_rounds=None):
    """Draw ``per_host`` injections per host and render their PSF-convolved arcs.

    ``hosts`` needs host_id, host_z (NaN allowed unless the preset ties theta_E to the host, which also
    needs host_sigma_v_kms) and noise_sigma_{g,r,z}; ``kernels`` are the hosts' PSF kernels (H, 3, K, K);
    ``host_images`` the host stamps (H, 3, 64, 64) [nmgy/pixel] the arcs go on: with them each injection gets
    LensPop's S/N and cuts (``lensnb.detectability``), and a preset with ``detect`` cuts redraws every
    injection that fails them (up to ``detect["max_rounds"]`` times, from streams keyed by the round).
    ``draw_rounds`` (one per injection, >= 1: the ``detect_draws`` of another dataset of the same hosts) replays
    those draws instead, without cuts: the same lenses rendered under other preset keys (a PSF mismatch, other
    source colours or brightness), so a comparison with that dataset is paired lens by lens.
    Returns (meta with the injection, image and arc columns, host row of each injection, arcs (N, 3, 64, 64)
    on ``device``).
    """
    cuts = preset.get("detect")
    if host_images is None:
        if cuts:
            raise ValueError("a preset with detectability cuts needs the host stamps (host_images)")
        meta, hidx, arcs_t, _ = _draw_arcs(hosts, per_host, preset, seed, kernels, supersample, device, refine, 0)
        return meta.assign(detect_draws=1), hidx, arcs_t
    from . import detectability

    def judged(m, h, a):
        """``m`` with LensPop's S/N and cut columns of arcs ``a`` on their hosts ``h``."""
        hi = torch.as_tensor(np.array(h, dtype=np.int64), device=device)
        return pd.concat([m, detectability.measure(m, a, host_images[hi], cuts)], axis=1)

    n = len(hosts) * per_host
    replay = None if draw_rounds is None else np.asarray(draw_rounds, dtype=np.int64) - 1
    if replay is not None and (len(replay) != n or (replay < 0).any()):
        raise ValueError(f"draw_rounds: need {n} values >= 1 (one per injection), got {len(replay)}")
    todo = np.arange(n)
    parts = []
    arcs_t = torch.zeros((n, 3, STAMP_SIZE, STAMP_SIZE), dtype=torch.float32, device=device)
    rounds = np.unique(replay) if replay is not None else range(int(cuts["max_rounds"]) + 1 if cuts else 1)
    for r in rounds:
        if not len(todo):
            break
        rows = todo if replay is None else np.flatnonzero(replay == r)
        m, h, a, drawn = _draw_arcs(hosts, per_host, preset, seed, kernels, supersample, device, refine, int(r), rows,
                                    prefilter=bool(cuts) and replay is None)
        if not len(drawn):
            continue
        m = judged(m, h, a)
        ok = m["detectable"].to_numpy(bool) if cuts and replay is None else np.ones(len(m), bool)
        keep = drawn[ok]
        parts.append(m[ok].set_axis(keep).assign(detect_draws=r + 1))
        arcs_t[torch.as_tensor(keep, device=device)] = a[torch.as_tensor(np.flatnonzero(ok), device=device)]
        todo = np.setdiff1d(todo, keep)
    if len(todo):
        ids = sorted(set(hosts["host_id"].to_numpy()[todo // per_host].tolist()))
        if len(todo) > MAX_UNDETECTABLE_SHARE * n:
            raise ValueError(f"{len(todo)} of {n} injection(s) found no lens passing the detectability cuts {cuts} in "
                             f"{cuts['max_rounds']} redraws (host_id {ids[:5]}{' ...' if len(ids) > 5 else ''}): hosts "
                             "too bright or PSFs too wide for the preset's lenses")
        # a rare host no lens of the preset can pass on (a bright core, a wide PSF): it keeps its last draw,
        # flagged detectable = False, so one host never stops a build
        r = int(cuts["max_rounds"])
        m, h, a, drawn = _draw_arcs(hosts, per_host, preset, seed, kernels, supersample, device, refine, r, todo)
        parts.append(judged(m, h, a).set_axis(drawn).assign(detect_draws=r + 1))
        arcs_t[torch.as_tensor(drawn, device=device)] = a
    return pd.concat(parts).sort_index().reset_index(drop=True), np.arange(n) // per_host, arcs_t


def _draw_arcs(hosts, per_host, preset, seed, kernels, supersample, device, refine, draw_round, rows=None, *,
               prefilter: bool = False):
    """One round of injections: all ``per_host`` x hosts, or only the flat positions ``rows``; with ``prefilter``
    only those resolvable in some band (LensPop's seeing test with the sharpest band's PSF: a lens failing it
    fails the cut in its best band too) are rendered. Returns (meta with the image finder's columns and the
    arcs' statistics, their host rows, the rendered arcs, their flat positions)."""
    inj = populations.sample_injections(hosts, per_host, preset, seed, draw_round)
    rows = np.arange(len(inj)) if rows is None else np.asarray(rows)
    inj = inj.iloc[rows]
    if prefilter:
        from .detectability import resolvable

        sharpest = hosts[[f"psf_fwhm_used_{b}" for b in BANDS]].to_numpy(float).min(1)[inj["host_row"].to_numpy()]
        maybe = resolvable(inj["theta_e_arcsec"], inj["src_r_eff_arcsec"], sharpest)
        inj, rows = inj[maybe], rows[maybe]
    if not len(inj):
        return None, None, None, rows
    hidx = inj.pop("host_row").to_numpy()
    meta = pd.concat([hosts.iloc[hidx].reset_index(drop=True), inj.reset_index(drop=True)], axis=1)
    flux_per_amp = sersic_total_flux_per_amp(meta["src_r_eff_arcsec"], meta["src_n_sersic"])
    for b in BANDS:
        meta[f"src_amp_{b}"] = mag_to_nmgy(meta[f"src_mag_{b}"]) / flux_per_amp
    lens, src = lens_source_tensors(meta, device)
    meta["supersampling_arc"] = (refined_supersampling(meta["src_r_eff_arcsec"].to_numpy(), supersample) if refine
                                 else supersample)
    amps = as_tensor(meta[[f"src_amp_{b}" for b in BANDS]].to_numpy(), device)
    kern = kernels[torch.as_tensor(np.array(hidx, dtype=np.int64), device=device)]

    def arcs(sl):
        return convolve(render_arcs({k: v[sl] for k, v in lens.items()}, {k: v[sl] for k, v in src.items()},
                                    amps[sl], supersample, refine=refine), kern[sl])

    arcs_t = _chunked(arcs, len(meta), render_chunk(device), (3, STAMP_SIZE, STAMP_SIZE), device)
    arc_stats(meta, arcs_t)
    im = find_images(meta["src_x_arcsec"], meta["src_y_arcsec"], meta["theta_e_arcsec"], meta["lens_q"],
                     meta["lens_phi_rad"], meta["shear_gamma1"], meta["shear_gamma2"], device=device,
                     n_radial=60, n_angular=64)
    meta["n_images"] = im.n
    meta["inner_image_r_arcsec"] = np.where(im.n >= 2, im.r[:, 0], np.nan)
    meta["total_magnification"] = np.nansum(np.abs(im.mu), axis=1)
    return meta, hidx, arcs_t, rows


def arc_stats(meta: pd.DataFrame, arcs_t: torch.Tensor) -> None:
    """Set arc_snr, arc_snr_r, arc_flux_r, arc_core_flux_frac_r of ``meta`` from the noise-free added light."""
    device = arcs_t.device
    sig_t = as_tensor(meta[[f"noise_sigma_{b}" for b in BANDS]].to_numpy(), device)[:, :, None, None]
    snr2 = ((arcs_t / sig_t) ** 2).sum(dim=(2, 3)).double()
    flux_r = arcs_t[:, 1].sum(dim=(1, 2)).double()
    core_r = arcs_t[:, 1, CORE_SLICE, CORE_SLICE].sum(dim=(1, 2)).double()
    stats = torch.stack([snr2.sum(1).sqrt(), snr2[:, 1].sqrt(), flux_r, core_r / flux_r.clamp_min(1e-30)], 1)
    stats = stats.cpu().numpy()  # one device -> host transfer
    meta["arc_snr"], meta["arc_snr_r"] = stats[:, 0], stats[:, 1]
    meta["arc_flux_r"], meta["arc_core_flux_frac_r"] = stats[:, 2], stats[:, 3]


@dataclass
class DeviceBatch:
    """One simulated batch kept on the torch device (for training on the fly; no host copies).

    ``stamps``: (N, 3, 64, 64) host + arc [nmgy/pixel]; ``ctrls``: (H, 3, 64, 64) one control stamp per
    host; ``host_row``: (N,) int64, the control of row i is ``ctrls[host_row[i]]``; ``meta``: one row per
    injection (pandas, on the host).
    """

    meta: pd.DataFrame
    stamps: torch.Tensor
    ctrls: torch.Tensor
    host_row: torch.Tensor


def simulate_on_device(hosts: pd.DataFrame, per_host: int, preset: dict, seed: int, *, supersample: int = 3,
                       noise: bool = True, arc_noise: bool = False, device=None, refine: bool = True,
                       confusers=None, draw_rounds=None) -> DeviceBatch:
    """Simulate ``per_host`` injections for each host, leaving the images on ``device``.

    ``confusers`` (types of ``lensnb.confusers``, e.g. ``["ring", "blue_companion"]``): each row's arc is
    replaced by a confuser with the arc's flux in every band (row i: type i mod len(types)); ``stamps`` are
    then non-lenses, marked by the ``confuser_type`` column, and the arc_* columns describe the confuser.
    """
    device = torch.device(device) if device is not None else default_device()
    real = populations.realism(preset)
    hosts = hosts.reset_index(drop=True)
    hosts = pd.concat([hosts, populations.host_structure(hosts, real, seed)], axis=1)
    if preset.get("psf_scale", 1.0) != 1.0:  # a PSF mismatch: every band's FWHM scaled (recorded in psf_fwhm_used_*)
        for b in BANDS:
            hosts[f"psf_fwhm_used_{b}"] = hosts[f"psf_fwhm_used_{b}"] * preset["psf_scale"]
    psf_beta = float(preset.get("psf_moffat_beta", MOFFAT_BETA))
    if real["faber_jackson"]:
        hosts["host_sigma_v_kms"] = populations.faber_jackson_sigma(hosts, seed)
    companions = populations.sample_companions(hosts, real["companions_per_host"], seed)
    ctrl, kernels = render_hosts(hosts, seed, supersample=supersample, noise=noise, device=device, real=real,
                                 companions=companions, psf_beta=psf_beta)
    meta, hidx, arcs_t = injected_arcs(hosts, per_host, preset, seed, kernels, supersample=supersample, device=device,
                                       refine=refine, host_images=ctrl, draw_rounds=draw_rounds)
    meta["n_companions"] = np.bincount(companions["host_row"].to_numpy(np.int64), minlength=len(hosts))[hidx]
    meta["photon_noise"] = bool(real["poisson"] or arc_noise)
    c = real["noise_corr"] if noise else 0.0
    meta["sky_noise_corr"] = 2 * c / (1 + 2 * c**2)
    host_row = torch.as_tensor(np.array(hidx, dtype=np.int64), device=device)
    meta["confuser_type"] = None
    if confusers:
        from . import confusers as cf

        arc_flux = arcs_t.sum(dim=(2, 3)).double().cpu().numpy()
        kind, conf = cf.confuser_images(meta, confusers, arc_flux, seed, device)
        kern = kernels[host_row]
        arcs_t = _chunked(lambda sl: convolve(conf[sl], kern[sl]), len(meta), render_chunk(device),
                          (3, STAMP_SIZE, STAMP_SIZE), device)
        meta["confuser_type"] = kind
        arc_stats(meta, arcs_t)
    stamps = ctrl[host_row] + arcs_t
    if arc_noise or real["poisson"]:
        keys = meta["host_id"].to_numpy(np.int64) * 65536 + np.tile(np.arange(per_host), len(hosts))
        stamps = stamps + _photon_noise(arcs_t, seed, 3, keys)
    meta["psf_moffat_beta"] = psf_beta
    meta["supersampling"] = supersample
    return DeviceBatch(meta, stamps, ctrl, host_row)


def to_host(t: torch.Tensor) -> np.ndarray:
    """A device tensor as a NumPy array; from a GPU through page-locked memory (one fast DMA copy)."""
    if t.device.type != "cuda":
        return t.numpy()
    buf = torch.empty(t.shape, dtype=t.dtype, pin_memory=True)
    buf.copy_(t)
    return buf.numpy()


def simulate_batch(hosts: pd.DataFrame, per_host: int, preset: dict, seed: int, *, supersample: int = 3,
                   noise: bool = True, arc_noise: bool = False, device=None,
                   refine: bool = True, confusers=None) -> tuple[pd.DataFrame, np.ndarray, np.ndarray]:
    """Simulate ``per_host`` injections for each host; returns (meta, stamps, ctrls) as NumPy arrays
    (N, 3, 64, 64), the control stamp repeated for every row of its host."""
    b = simulate_on_device(hosts, per_host, preset, seed, supersample=supersample, noise=noise,
                           arc_noise=arc_noise, device=device, refine=refine, confusers=confusers)
    return b.meta, to_host(b.stamps), to_host(b.ctrls)[b.host_row.cpu().numpy()]


def simulate(preset: str, n_hosts: int, per_host: int, seed: int, out, *, noise: bool = True,
             arc_noise: bool = False, supersample: int = 3, device=None, hosts_per_batch: int | None = None,
             preset_overrides: dict | None = None, progress: bool = True, refine: bool = True,
             confusers=None, draw_rounds=None) -> pd.DataFrame:
    """Write a paired dataset to ``out`` (Parquet, atomically); return its metadata.

    ``hosts_per_batch`` hosts are simulated at a time (default 64 on a CPU, 2048 on a GPU); the data
    do not depend on it. ``draw_rounds``: see :func:`injected_arcs` (n_hosts x per_host values).
    """
    if n_hosts < 1 or per_host < 1:
        raise ValueError("hosts and per-host must be at least 1")
    spec = populations.get_preset(preset, preset_overrides)
    if confusers:
        from .confusers import parse_types

        confusers = parse_types(confusers)
    device = torch.device(device) if device is not None else default_device()
    hosts_per_batch = hosts_per_batch or (64 if device.type == "cpu" else 2048)
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
            b = simulate_on_device(hosts.iloc[s : s + hosts_per_batch], per_host, spec, seed,
                                   supersample=supersample, noise=noise, arc_noise=arc_noise, device=device,
                                   refine=refine, confusers=confusers,
                                   draw_rounds=None if draw_rounds is None else
                                   np.asarray(draw_rounds)[s * per_host:(s + hosts_per_batch) * per_host])
            meta = b.meta
            meta["preset"], meta["seed"] = preset, seed
            meta["stamp_npz"] = [dataset.encode_npz(a) for a in to_host(b.stamps)]
            ctrl_npz = [dataset.encode_npz(a) for a in to_host(b.ctrls)]  # encoded once per host
            meta["ctrl_stamp_npz"] = [ctrl_npz[h] for h in b.host_row.cpu().numpy()]
            w.write(meta)
            metas.append(meta.drop(columns=list(dataset.NPZ_COLUMNS)))
            if bar:
                bar.update(len(meta))
    if bar:
        bar.close()
    return pd.concat(metas, ignore_index=True)


def cli_overrides(preset: str, realism=(), *, no_noise: bool = False, clumpy: float | None = None) -> dict:
    """Preset overrides from the command line: ``realism`` items "OPTION=VALUE" (values read as YAML: true, 0.3)
    replace single realism options of the preset; ``no_noise`` also turns its photon noise off; ``clumpy`` sets
    the share of clumpy sources. An unknown option or a malformed item raises ValueError naming it."""
    import yaml

    spec = populations.get_preset(preset)
    real = dict(spec.get("realism", populations.REALISM_OFF))
    for item in realism:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ValueError(f"--realism {item!r}: expected OPTION=VALUE")
        if key.strip() not in populations.REALISM_OFF:
            raise ValueError(f"--realism {item!r}: unknown option {key.strip()!r}; options: "
                             f"{', '.join(populations.REALISM_OFF)}")
        real[key.strip()] = yaml.safe_load(value)
    if no_noise:
        real["poisson"] = False
    over = {} if real == spec.get("realism") else {"realism": real}
    if clumpy is not None:
        over["src_clumpy_fraction"] = clumpy
    return over


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m lensnb.simulate", description=__doc__.split("\n\n")[0])
    ap.add_argument("--preset", required=True, choices=sorted(populations.PRESETS))
    ap.add_argument("--hosts", type=int, required=True, help="number of host LRGs")
    ap.add_argument("--per-host", type=int, required=True, help="injections per host")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", required=True, help="output Parquet file")
    ap.add_argument("--no-noise", action="store_true",
                    help="noise-free stamps: no sky noise and no photon noise of host or arc (overrides --arc-noise)")
    ap.add_argument("--no-sky-noise", action="store_true",
                    help="no sky noise; the preset's photon noise of host and arc stays (its realism 'poisson')")
    ap.add_argument("--arc-noise", action="store_true", help="add photon noise of the arc (presets without 'poisson')")
    ap.add_argument("--realism", action="append", default=[], metavar="OPTION=VALUE",
                    help="switch one realism option of the preset, e.g. poisson=false, noise_corr=0, "
                         "companions_per_host=0 (repeatable; options: " + ", ".join(populations.REALISM_OFF) + ")")
    ap.add_argument("--supersample", type=int, default=3)
    ap.add_argument("--device", default=None, help="torch device (default: cuda if available, else cpu)")
    ap.add_argument("--clumpy", type=float, default=None, metavar="FRACTION",
                    help="share of sources with 2-4 star-forming knots (default: the preset's, 0)")
    ap.add_argument("--confusers", default=None, metavar="TYPE[,TYPE]",
                    help="write non-lenses instead of arcs: ring, spiral_arms, blue_companion, edge_on_disk, "
                         "unlensed_source, or all (confuser_type column; ctrl_stamp_npz = the host alone)")
    a = ap.parse_args(argv)
    try:
        over = cli_overrides(a.preset, a.realism, no_noise=a.no_noise, clumpy=a.clumpy)
        meta = simulate(a.preset, a.hosts, a.per_host, a.seed, a.out, noise=not (a.no_noise or a.no_sky_noise),
                        arc_noise=a.arc_noise and not a.no_noise, supersample=a.supersample, device=a.device,
                        confusers=a.confusers, preset_overrides=over or None)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"wrote {len(meta)} rows over {meta['host_id'].nunique()} hosts to {a.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())


def simulator_hash() -> str:
    """A 10-hex-digit hash of the simulator's source files and of the number of threads torch computes on: part of
    every cached dataset's name, so a change to the simulator re-simulates instead of reusing stale data. The thread
    count is in it because the simulated bits follow it (the same draws on 1 and 2 CPU threads give stamps that
    differ, measured); the book's chapters simulate on one thread (``lensnb.build.KERNEL_THREADS``)."""
    import hashlib
    from pathlib import Path

    here = Path(__file__).resolve().parent
    h = hashlib.sha256()
    for name in ("simulate.py", "populations.py", "render.py", "lensing.py", "rng.py", "survey.py", "dataset.py", "priors.py",
                 "detectability.py", "confusers.py"):  # the cuts a `detectable` lens passes; the confuser shapes
        h.update((here / name).read_bytes())
    threads = torch.get_num_threads()
    if threads != 1:  # one thread (the book's) adds nothing to the name
        h.update(f"torch threads {threads}".encode())
    return h.hexdigest()[:10]


def cached_dataset(preset: str, n_hosts: int, per_host: int, seed: int, *, supersample: int = 3, device=None,
                   preset_overrides: dict | None = None, same_lenses: bool = True):
    """Path of a simulated dataset under ``data/processed``, simulated if absent.

    The file name carries every argument and a hash of the simulator's source, so a changed
    simulator never reuses a stale file; writes are atomic, so a crashed run leaves nothing.
    With ``preset_overrides`` on a preset with detectability cuts (and ``same_lenses``, unless the overrides
    change the cuts), the lenses are those the preset itself kept (its dataset's ``detect_draws``, replayed
    without cuts): a variant (PSF mismatch, other sources' colours or brightness) changes the rendering, not
    which lenses are drawn.
    """
    from .config import PROCESSED_DIR

    import hashlib
    import json

    tag = ""
    if preset_overrides:
        tag = "_o" + hashlib.sha256(json.dumps(preset_overrides, sort_keys=True).encode()).hexdigest()[:8]
    draws = None
    if (preset_overrides and same_lenses and populations.get_preset(preset).get("detect")
            and "detect" not in preset_overrides):
        import pyarrow.parquet as pq

        base = cached_dataset(preset, n_hosts, per_host, seed, supersample=supersample, device=device)
        draws = pq.read_table(base, columns=["detect_draws"]).column(0).to_numpy()
        tag += "_same"
    path = PROCESSED_DIR / f"sim_{preset}{tag}_h{n_hosts}_k{per_host}_s{seed}_ss{supersample}_{simulator_hash()}.parquet"
    if not path.exists():
        simulate(preset, n_hosts, per_host, seed, path, supersample=supersample, device=device,
                 preset_overrides=preset_overrides, draw_rounds=draws)
    return path


def load_or_simulate(data: str, preset: str, n_hosts: int, per_host: int, seed: int, *,
                     max_in_memory_rows: int = 50_000, **kw):
    """``data`` empty: the embedded simulator (cached); else a Parquet file or directory in the team's format.

    Returns (stamps, ctrls, meta). Up to ``max_in_memory_rows`` rows the images are decoded into
    arrays; beyond that they are :class:`lensnb.dataset.LazyImages` views that decode only the rows
    a chapter asks for, so a large manifest is never loaded whole.
    """
    path = data if data else cached_dataset(preset, n_hosts, per_host, seed, **kw)
    store = dataset.StampStore(path)
    if len(store) <= max_in_memory_rows:
        rows = np.arange(len(store))
        return store.images(rows, "stamp_npz"), store.images(rows, "ctrl_stamp_npz"), store.meta
    return dataset.LazyImages(store, "stamp_npz"), dataset.LazyImages(store, "ctrl_stamp_npz"), store.meta


def data_fingerprint(data: str, preset: str, n_hosts: int, per_host: int, seed: int, **kw) -> str:
    """A short hash identifying the data a chapter runs on (the team's files, or the cached simulated
    dataset), for keying cached results (``lensnb.results``)."""
    from .results import fingerprint

    return fingerprint(data if data else cached_dataset(preset, n_hosts, per_host, seed, **kw))
