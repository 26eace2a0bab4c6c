"""Which injected lenses a survey could find: LensPop's detectability cuts, measured on rendered stamps.

The cuts are LensPop's (Collett 2015 code, ``simulation_priors.md`` §3 "LensPop detectability criteria"):

* **arc S/N >= 20** in the best band, where the S/N is LensPop's optimal-aperture S/N: the pixels are ranked by
  arc / sigma and the S/N is the largest value of sum(arc) / sqrt(sum(sigma^2)) over the brightest-first
  apertures; sigma^2 counts the noise LensPop counts: sky, and the photon noise of the host's and the arc's
  light in each pixel (``lenspop_snr``). This is *not* the catalogue's ``arc_snr`` (a matched filter over
  g + r + z against sky noise alone), which reads higher for the same arc.
* **total magnification mu >= 3** (image finder on the lens and source parameters);
* **resolvable**: 2 theta_E^2 >= (2 R_s)^2 + FWHM^2 in the best band (R_s: the source's half-light radius,
  FWHM: the band's PSF), LensPop's ``SeeingTest`` with bfac = rfac = 2.

Units: images in nanomaggies per pixel, angles in arcsec. The photon noise uses
``populations.electrons_per_nmgy`` (DECaLS exposure totals and an assumed zero point), on the simulator's and on
the team's stamps alike.
"""
from __future__ import annotations

import numpy as np
import pandas as pd
import torch

from .populations import electrons_per_nmgy

BANDS = ("g", "r", "z")
#: LensPop's cuts (``ModelAll.py``: a = 20, b = 3; ``StochasticObserving.SeeingTest``: bfac = rfac = 2)
CUTS = {"snr_min": 20.0, "mu_min": 3.0, "resolve_factor": 2.0}


#: Pixels ranked per band before the exact tail bound decides whether the rest can matter (``lenspop_snr``).
SNR_TOP_PIXELS = 512


def lenspop_snr(arc: torch.Tensor, host: torch.Tensor, sky_sigma) -> torch.Tensor:
    """LensPop's S/N of each arc in each band: (N, 3).

    ``arc``: noise-free, PSF-convolved arc light (N, 3, S, S) [nmgy/pixel]; ``host``: the host stamp the arc sits
    on (N, 3, S, S) [nmgy/pixel] (its light sets the photon noise; negative pixels count as 0); ``sky_sigma``:
    (N, 3) sky noise per pixel [nmgy]. sigma^2 = sky^2 + (host + arc) / electrons-per-nmgy per pixel; pixels
    ranked by arc / sigma, S/N = max_k sum_{i<=k} arc_i / sqrt(sum_{i<=k} sigma_i^2).

    Only the ``SNR_TOP_PIXELS`` best-ranked pixels are sorted (``torch.topk``, ~4x cheaper than sorting all). The
    rest cannot raise the S/N above the best of those apertures when a bound says so: every later pixel has
    arc_j <= r_K sigma_j <= r_K sigma_j^2 / sigma_min (r_K: the K-th ratio, sigma_min: the smallest sigma), so any
    aperture that adds variance W to the first K pixels' (A_K, V_K) has S/N <= (A_K + c W) / sqrt(V_K + W),
    c = r_K / sigma_min, a function of W whose maximum on [0, W_rest] lies at an end. Rows (arc, band) the bound
    does not settle are ranked over all pixels, so the result equals a full sort's.
    """
    arc = arc.double()
    e = torch.as_tensor(electrons_per_nmgy(), dtype=torch.float64, device=arc.device)[None, :, None]
    sky = torch.as_tensor(np.asarray(sky_sigma, dtype=np.float64), device=arc.device)[:, :, None]
    a = arc.flatten(2)
    var = sky**2 + (host.double().flatten(2) + a).clamp_min(0) / e
    sig = var.sqrt()
    ratio = a / sig
    k = min(SNR_TOP_PIXELS, a.shape[2])
    top, order = torch.topk(ratio, k, dim=2)
    a_k, v_k = torch.gather(a, 2, order).cumsum(2), torch.gather(var, 2, order).cumsum(2)
    snr = (a_k / v_k.sqrt()).amax(2)
    if k == a.shape[2]:
        return snr
    A, V = a_k[..., -1], v_k[..., -1]
    c = top[..., -1].clamp_min(0) / sig.amin(2)
    w = var.sum(2) - V
    bound = torch.maximum(A / V.sqrt(), (A + c * w) / (V + w).sqrt())
    redo = (bound >= snr).nonzero(as_tuple=True)
    if len(redo[0]):
        r_a, r_v = a[redo], var[redo]
        full = torch.argsort(ratio[redo], dim=1, descending=True)
        snr[redo] = (torch.gather(r_a, 1, full).cumsum(1) / torch.gather(r_v, 1, full).cumsum(1).sqrt()).amax(1)
    return snr


def resolvable(theta_e, src_r_eff, fwhm, factor: float = CUTS["resolve_factor"]) -> np.ndarray:
    """LensPop's seeing test: factor theta_E^2 >= (factor R_s)^2 + FWHM^2 [arcsec] (bool array)."""
    theta_e, src_r_eff, fwhm = (np.asarray(x, dtype=float) for x in (theta_e, src_r_eff, fwhm))
    return factor * theta_e**2 >= (factor * src_r_eff) ** 2 + fwhm**2


def theta_e_min(src_r_eff, fwhm, factor: float = CUTS["resolve_factor"]) -> np.ndarray:
    """The smallest resolvable theta_E [arcsec] for a source half-light radius and a PSF FWHM [arcsec]."""
    return np.sqrt(((factor * np.asarray(src_r_eff, float)) ** 2 + np.asarray(fwhm, float) ** 2) / factor)


def measure(meta: pd.DataFrame, arcs: torch.Tensor, hosts: torch.Tensor, cuts: dict | None = None) -> pd.DataFrame:
    """Per injection: ``arc_snr_lenspop`` (best band), ``arc_snr_lenspop_band`` (its name), ``lens_resolvable``
    (in that band) and ``detectable`` (all three cuts; needs ``total_magnification``).

    ``meta`` needs noise_sigma_{g,r,z}, psf_fwhm_used_{g,r,z}, theta_e_arcsec, src_r_eff_arcsec and
    total_magnification; ``arcs`` and ``hosts`` are (N, 3, S, S) [nmgy/pixel] (``hosts[i]`` under ``arcs[i]``);
    ``cuts`` overrides keys of ``CUTS``.
    """
    snr = lenspop_snr(arcs, hosts, meta[[f"noise_sigma_{b}" for b in BANDS]].to_numpy(float)).cpu().numpy()
    best = snr.argmax(1)
    fwhm = meta[[f"psf_fwhm_used_{b}" for b in BANDS]].to_numpy(float)[np.arange(len(meta)), best]
    res = resolvable(meta["theta_e_arcsec"], meta["src_r_eff_arcsec"], fwhm, _cuts(cuts)["resolve_factor"])
    out = pd.DataFrame({"arc_snr_lenspop": snr.max(1), "arc_snr_lenspop_band": np.array(BANDS)[best],
                        "lens_resolvable": res}, index=meta.index)
    out["detectable"] = passes(out["arc_snr_lenspop"], meta["total_magnification"], res, cuts)
    return out


def passes(snr, mu, resolved, cuts: dict | None = None) -> np.ndarray:
    """All three cuts: S/N >= snr_min, mu >= mu_min and resolvable (bool array)."""
    c = _cuts(cuts)
    return (np.asarray(snr, float) >= c["snr_min"]) & (np.asarray(mu, float) >= c["mu_min"]) \
        & np.asarray(resolved, bool)


def cut_shares(frame: pd.DataFrame, cuts: dict | None = None) -> dict:
    """Share of injections passing each cut and all three (``{"S/N ≥ 20": .., "μ ≥ 3": .., "resolvable": ..,
    "all three": ..}``, the names from the cuts' values). A cut whose column (``arc_snr_lenspop``,
    ``total_magnification``, ``lens_resolvable``) is missing, as in a team's manifest, is NaN, and so is "all
    three" then."""
    c = _cuts(cuts)
    ok = {f"S/N ≥ {c['snr_min']:g}": (frame["arc_snr_lenspop"].to_numpy(float) >= c["snr_min"])
          if "arc_snr_lenspop" in frame else None,
          f"μ ≥ {c['mu_min']:g}": (frame["total_magnification"].to_numpy(float) >= c["mu_min"])
          if "total_magnification" in frame else None,
          "resolvable": frame["lens_resolvable"].to_numpy(bool) if "lens_resolvable" in frame else None}
    out = {k: float(v.mean()) if v is not None else float("nan") for k, v in ok.items()}
    out["all three"] = float(np.logical_and.reduce(list(ok.values())).mean()) \
        if all(v is not None for v in ok.values()) else float("nan")
    return out


def _cuts(cuts: dict | None) -> dict:
    """``CUTS`` with the keys of ``cuts`` (e.g. a preset's ``detect``) in their place."""
    return {**CUTS, **(cuts or {})}


#: theta_E / FWHM (r band) bin edges every stratified verdict uses: unresolved, marginal, resolved lenses.
RESOLUTION_EDGES = (0.75, 1.25)


def theta_bins(theta_e, fwhm, edges=RESOLUTION_EDGES) -> pd.Categorical:
    """θ_E relative to the r-band PSF FWHM of each image (both in arcsec), in three bins with readable labels
    (below 0.75 FWHM a lens is unresolved: its counter-image and most of its arc fall in the central pixels)."""
    ratio = np.asarray(theta_e, float) / np.asarray(fwhm, float)
    lo, hi = edges
    labels = np.array([f"θ_E < {lo:g} FWHM", f"{lo:g}–{hi:g} FWHM", f"θ_E > {hi:g} FWHM"], dtype=object)
    out = pd.Series(labels[np.digitize(ratio, [lo, hi])], dtype=object)
    out[~np.isfinite(ratio)] = None
    return pd.Categorical(out, categories=list(labels), ordered=True)


def sourced_comparison(meta: pd.DataFrame, sourced: dict) -> pd.DataFrame:
    """A population's median and 16-84% range beside a sourced one (``{column: (median, p16, p84)}``), and
    whether its median lies inside the sourced 16-84% range. One row per column present in ``meta``."""
    rows = []
    for col, (med, lo, hi) in sourced.items():
        if col not in meta:
            continue
        v = meta[col].to_numpy(float)
        v = v[np.isfinite(v)]
        m, p16, p84 = (float(np.percentile(v, q)) for q in (50, 16, 84))
        rows.append({"quantity": col, "median": m, "16%": p16, "84%": p84, "sourced median": med,
                     "sourced 16%": lo, "sourced 84%": hi, "inside": bool(lo <= m <= hi)})
    return pd.DataFrame(rows)
