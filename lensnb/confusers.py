"""Confusers: non-lenses that look like lenses, drawn around the simulator's host LRGs (hard negatives).

Each confuser replaces the lensed arc of one injection row and takes that arc's flux in every band (the
flux the arc has inside the stamp), so a confuser is exactly as bright and as blue as the positive it
stands in for; only the morphology differs. The ``unlensed_source`` is the exception: the arc's own
source, same unlensed flux, placed at its true position (beta from the lens centre) without lensing.

Types (``CONFUSER_TYPES``; every shape number is an ASSUMPTION, no sourced frequencies or shapes exist in
``simulation_priors.md``, which lists star-forming rings, companion pairs, spiral arms and unlensed
intruder sources as the impostors seen in visual searches and simulated false-positive sets):

* ``ring``: a collisional / star-forming ring about the host centre: Gaussian ring profile of radius
  U(0.8, 2.5)", width U(0.1, 0.25)", axis ratio U(0.6, 1);
* ``spiral_arms``: two logarithmic spiral (or tidal) arms from U(0.5, 1.0)" out to ~3", pitch
  U(15, 30) deg, as a chain of Gaussian knots (sigma 0.15") fading outwards;
* ``blue_companion``: a compact exponential disc, R_e U(0.15, 0.4)", at U(1, 3)" from the host;
* ``edge_on_disk``: a thin exponential disc (axis ratio U(0.1, 0.2), R_e U(0.6, 1.5)") centred
  U(0.8, 2.5)" from the host and oriented within 20 deg of tangential, so it curves past the host
  like an arc would;
* ``unlensed_source``: the injection's Sersic source at (src_x, src_y) from the lens centre, unlensed.

All images are (N, 3, 64, 64) nanomaggies / pixel before PSF convolution; positions in arcsec from the
stamp centre (x along columns, y along rows), host centre from ``host_x_arcsec``/``host_y_arcsec``.
"""
from __future__ import annotations

import numpy as np
import pandas as pd
import torch

from .render import bin_supersampled, mag_to_nmgy, pixel_grid, refined_supersampling, sersic

CONFUSER_TYPES = ("ring", "spiral_arms", "blue_companion", "edge_on_disk", "unlensed_source")
_DRAWS = 8  # uniform variates per confuser
_SS = 3  # sub-pixels per side


def parse_types(spec) -> list[str]:
    """``"ring,blue_companion"`` or a list -> validated list of types; ``"all"`` -> every type."""
    types = list(CONFUSER_TYPES) if spec in ("all", ["all"]) else (
        [t.strip() for t in spec.split(",") if t.strip()] if isinstance(spec, str) else list(spec))
    bad = [t for t in types if t not in CONFUSER_TYPES]
    if bad or not types:
        raise ValueError(f"unknown confuser type(s) {bad or spec!r}; types: {', '.join(CONFUSER_TYPES)} (or 'all')")
    return types


def _uniforms(meta: pd.DataFrame, seed: int) -> np.ndarray:
    keys = meta["host_id"].to_numpy(np.int64) * 65536 + meta.groupby("host_id").cumcount().to_numpy()
    return np.stack([np.random.default_rng([seed, 7, int(k)]).random(_DRAWS) for k in keys], 1)


def _unit(img: torch.Tensor, ss: int = _SS) -> torch.Tensor:
    """Binned (N, S, S) shapes scaled to unit sum over the stamp."""
    img = bin_supersampled(img, ss)
    return img / img.sum(dim=(1, 2), keepdim=True).clamp_min(1e-30)


def _t(a, device, dtype=torch.float64):
    return torch.as_tensor(np.array(a, dtype=np.float64), dtype=dtype, device=device)[:, None, None]


def confuser_shapes(kind: str, meta: pd.DataFrame, u: np.ndarray, device, ss: int = _SS) -> torch.Tensor:
    """Unit-sum (N, 64, 64) shapes of one confuser type for the rows of ``meta`` (``u``: (_DRAWS, N) uniforms),
    sampled on ``ss`` x ``ss`` sub-pixels per pixel."""
    gx, gy = pixel_grid(ss, device, torch.float64)
    gx, gy = gx[None], gy[None]
    x0, y0 = (_t(meta[c] if c in meta else np.zeros(len(meta)), device) for c in ("host_x_arcsec", "host_y_arcsec"))
    dx, dy = gx - x0, gy - y0
    if kind == "ring":
        r0, w, q, phi = 0.8 + 1.7 * u[0], 0.1 + 0.15 * u[1], 0.6 + 0.4 * u[2], np.pi * u[3]
        c, s = _t(np.cos(phi), device), _t(np.sin(phi), device)
        xr, yr = c * dx + s * dy, -s * dx + c * dy
        R = torch.sqrt(_t(q, device) * xr**2 + yr**2 / _t(q, device))
        return _unit(torch.exp(-0.5 * ((R - _t(r0, device)) / _t(w, device)) ** 2), ss)
    if kind == "spiral_arms":
        r_in, pitch, rot = 0.5 + 0.5 * u[0], np.deg2rad(15 + 15 * u[1]), 2 * np.pi * u[2]
        t = np.linspace(0.0, 1.0, 48)
        img = torch.zeros((len(meta), *gx.shape[1:]), dtype=torch.float64, device=device)
        for arm in (0.0, np.pi):
            # log spiral r = r_in exp(theta tan(pitch)), theta from 0 until r ~ 3"
            th_max = np.log(3.0 / r_in) / np.tan(pitch)
            th = th_max[:, None] * t[None]
            r = r_in[:, None] * np.exp(th * np.tan(pitch)[:, None])
            ang = th + rot[:, None] + arm
            px = torch.as_tensor(r * np.cos(ang), device=device)  # (N, 48) [arcsec]
            py = torch.as_tensor(r * np.sin(ang), device=device)
            wgt = torch.as_tensor(np.exp(-2.0 * t), device=device)
            for k in range(len(t)):
                img += wgt[k] * torch.exp(-0.5 * ((dx - px[:, k, None, None]) ** 2 + (dy - py[:, k, None, None]) ** 2)
                                          / 0.15**2)
        return _unit(img, ss)
    if kind in ("blue_companion", "edge_on_disk"):
        if kind == "blue_companion":
            rad, re, q, phi = 1.0 + 2.0 * u[0], 0.15 + 0.25 * u[1], 0.5 + 0.5 * u[2], np.pi * u[3]
            ang = 2 * np.pi * u[4]
        else:
            rad, re, q = 0.8 + 1.7 * u[0], 0.6 + 0.9 * u[1], 0.1 + 0.1 * u[2]
            ang = 2 * np.pi * u[4]
            phi = ang + np.pi / 2 + np.deg2rad(20) * (2 * u[3] - 1)  # major axis near tangential
        cx, cy = rad * np.cos(ang), rad * np.sin(ang)
        shape = sersic(dx, dy, 1.0, _t(re, device), _t(np.ones(len(meta)), device), _t(q, device),
                       _t(phi, device), _t(cx, device), _t(cy, device))
        return _unit(shape, ss)
    if kind == "unlensed_source":
        shape = sersic(dx, dy, 1.0, _t(meta["src_r_eff_arcsec"], device), _t(meta["src_n_sersic"], device),
                       _t(meta["src_q"], device), _t(meta["src_phi_rad"], device), _t(meta["src_x_arcsec"], device),
                       _t(meta["src_y_arcsec"], device))
        return _unit(shape, ss)
    raise ValueError(f"unknown confuser type {kind!r}; types: {', '.join(CONFUSER_TYPES)}")


def confuser_images(meta: pd.DataFrame, types, arc_flux: np.ndarray, seed: int, device=None) -> tuple[np.ndarray, torch.Tensor]:
    """Confuser images (N, 3, 64, 64) [nmgy/pixel, before PSF convolution] for the injection rows of ``meta``:
    row i gets ``types[i % len(types)]``; flux per band = ``arc_flux`` (N, 3) [nmgy] (the arc it replaces),
    or the source's unlensed flux for ``unlensed_source``. Returns (type of each row, images)."""
    types = parse_types(types)
    device = torch.device(device or "cpu")
    kind = np.array([types[i % len(types)] for i in range(len(meta))])
    u = _uniforms(meta, seed)
    flux = np.array(arc_flux, dtype=np.float64, copy=True)
    out = torch.zeros((len(meta), 3, *pixel_grid(1, device)[0].shape), dtype=torch.float32, device=device)
    for k in dict.fromkeys(kind):
        rows = np.flatnonzero(kind == k)
        if k == "unlensed_source":
            flux[rows] = np.stack([mag_to_nmgy(meta[f"src_mag_{b}"].to_numpy(float)[rows]) for b in "grz"], 1)
        # sub-pixels: the arcs' rule (spacing <= R_e / 4) for the compact unlensed source, else 3
        ss = (refined_supersampling(meta["src_r_eff_arcsec"].to_numpy(float)[rows], _SS) if k == "unlensed_source"
              else np.full(len(rows), _SS))
        for tier in np.unique(ss):
            rt = rows[ss == tier]
            for s in range(0, len(rt), max(1, 256 * 9 // int(tier) ** 2)):
                r = rt[s:s + max(1, 256 * 9 // int(tier) ** 2)]
                shape = confuser_shapes(k, meta.iloc[r], u[:, r], device, int(tier))
                f = torch.as_tensor(flux[r], dtype=torch.float64, device=device)[:, :, None, None]
                out[torch.as_tensor(r, device=device)] = (shape[:, None] * f).float()
    return kind, out


def describe(kind: str) -> str:
    """One line per type for tables: what it is."""
    return {"ring": "star-forming / collisional ring about the host",
            "spiral_arms": "two spiral or tidal arms",
            "blue_companion": "compact blue galaxy 1-3\" from the host",
            "edge_on_disk": "thin disc curving past the host",
            "unlensed_source": "the arc's source, unlensed, at its true position"}[kind]

