"""Where the images of a lensed source land: inner-image statistics under a prior.

"Inner image" means the image closest to the lens centre in a system with two
or more images (the SIS counter-image at theta_E - beta). Distances are
reported in pixels of 0.262 arcsec from the lens centre, which sits at the
stamp's geometric centre; the "central 10x10 box" is |dx| < 5 px and
|dy| < 5 px around it (pixels 27..36 of a 64-px stamp).
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from .config import CORE_BOX, PIXEL_SCALE
from .lensing import find_images, sis_images
from .priors import sample_systems


def solve_systems(systems: pd.DataFrame, *, progress: bool = False, device=None) -> pd.DataFrame:
    """Add image-plane quantities (SIE + shear solver, and SIS analytic) to ``systems``.

    New columns: n_images; inner_x, inner_y, inner_r [arcsec] of the innermost
    image (NaN with fewer than two images); inner_r_px [pixels]; inner_abs_mu,
    total_abs_mu, inner_flux_share (|mu_inner| / sum |mu|); in_core_box;
    within_5px; within_fwhm (inner_r < psf_fwhm_r); and sis_inner_r_px,
    sis_inner_flux_share from the SIS formulas with the same theta_E and beta.
    """
    im = find_images(
        systems["src_x"].to_numpy(), systems["src_y"].to_numpy(), systems["theta_e"].to_numpy(),
        systems["q"].to_numpy(), systems["phi"].to_numpy(),
        systems["gamma1"].to_numpy(), systems["gamma2"].to_numpy(),
        progress=progress, device=device,
    )
    out = systems.copy()
    multi = im.n >= 2
    out["n_images"] = im.n
    out["inner_x"] = np.where(multi, im.x[:, 0], np.nan)
    out["inner_y"] = np.where(multi, im.y[:, 0], np.nan)
    out["inner_r"] = np.hypot(out["inner_x"], out["inner_y"])
    out["inner_r_px"] = out["inner_r"] / PIXEL_SCALE
    abs_mu = np.abs(im.mu)
    out["total_abs_mu"] = np.nansum(abs_mu, axis=1)
    out["inner_abs_mu"] = np.where(multi, abs_mu[:, 0], np.nan)
    out["inner_flux_share"] = out["inner_abs_mu"] / out["total_abs_mu"]
    half = CORE_BOX / 2 * PIXEL_SCALE
    out["in_core_box"] = multi & (np.abs(out["inner_x"]) < half) & (np.abs(out["inner_y"]) < half)
    out["within_5px"] = multi & (out["inner_r_px"] < 5.0)
    out["within_fwhm"] = multi & (out["inner_r"] < out["psf_fwhm_r"])
    sis = sis_images(out["beta"].to_numpy(), out["theta_e"].to_numpy())
    out["sis_inner_r_px"] = sis["theta_minus"] / PIXEL_SCALE
    out["sis_inner_flux_share"] = sis["mu_minus"] / (sis["mu_minus"] + sis["mu_plus"])
    return out


def apply_selection(solved: pd.DataFrame, min_total_mu: float | None) -> pd.DataFrame:
    """Keep systems with total |mu| >= ``min_total_mu`` (no cut when None)."""
    if min_total_mu is None:
        return solved
    return solved[solved["total_abs_mu"] >= min_total_mu].reset_index(drop=True)


def simulate_prior(name: str, spec: dict, n: int, seed: int, **kw) -> pd.DataFrame:
    """Draw ``n`` systems from a prior, solve them and apply its selection cut."""
    rng = np.random.default_rng(seed)
    return apply_selection(solve_systems(sample_systems(name, spec, n, rng), **kw), spec.get("min_total_mu"))


def summarise(solved: pd.DataFrame) -> dict[str, float]:
    """Headline statistics of one prior's solved systems (fractions over all systems)."""
    multi = solved["n_images"] >= 2
    return {
        "n_systems": int(len(solved)),
        "median_theta_e_arcsec": float(solved["theta_e"].median()),
        "median_beta_over_theta_e": float(solved["beta_over_theta_e"].median()),
        "frac_multiple_images": float(multi.mean()),
        "median_inner_r_px": float(solved.loc[multi, "inner_r_px"].median()),
        "frac_within_5px": float(solved["within_5px"].mean()),
        "frac_within_fwhm": float(solved["within_fwhm"].mean()),
        "frac_in_core_box": float(solved["in_core_box"].mean()),
        "median_inner_abs_mu": float(solved.loc[multi, "inner_abs_mu"].median()),
        "median_inner_flux_share": float(solved.loc[multi, "inner_flux_share"].median()),
        "median_sis_inner_r_px": float(np.nanmedian(solved["sis_inner_r_px"])),
        "frac_sis_within_5px": float(np.nan_to_num(solved["sis_inner_r_px"] < 5.0).mean()),
        "frac_theta_e_below_fwhm": float((solved["theta_e"] < solved["psf_fwhm_r"]).mean()),
    }
