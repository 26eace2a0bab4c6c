"""Survey model: DESI Legacy Surveys DR9-south seeing and depth distributions.

Numbers come from ``shared/science/simulation_priors.md`` §1 (Notes A and B):
lognormal fits by G. Stein (``ssl-legacysurvey``, ``decals_augmentations.py``)
to the DR9-south catalogue ``psfsize_[grz]``. The fitted variable is the
Gaussian sigma of the PSF in *pixels*; FWHM [arcsec] = sigma_pix * 2.3548 * 0.262.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .config import BANDS, PIXEL_SCALE

FWHM_PER_SIGMA = 2.0 * np.sqrt(2.0 * np.log(2.0))  # 2.3548


@dataclass(frozen=True)
class ShiftedLognormal:
    """x = loc + scale * exp(shape * N(0, 1)) (scipy ``lognorm(shape, loc, scale)``)."""

    shape: float
    loc: float
    scale: float

    def sample(self, n: int, rng: np.random.Generator) -> np.ndarray:
        return self.loc + self.scale * np.exp(self.shape * rng.standard_normal(n))

    def quantile(self, p: float | np.ndarray) -> np.ndarray:
        from scipy.stats import norm

        return self.loc + self.scale * np.exp(self.shape * norm.ppf(p))


# Gaussian PSF sigma in pixels, DR9 south (simulation_priors.md Note A).
PSF_SIGMA_PIX = {
    "g": ShiftedLognormal(0.2110, 1.0807, 1.3153),
    "r": ShiftedLognormal(0.3008, 1.2394, 0.9165),
    "z": ShiftedLognormal(0.3471, 1.1928, 0.8234),
}


def sample_psf_fwhm(band: str, n: int, rng: np.random.Generator) -> np.ndarray:
    """Draw ``n`` PSF FWHM values [arcsec] for ``band`` (DR9-south distribution)."""
    if band not in PSF_SIGMA_PIX:
        raise ValueError(f"unknown band {band!r}; expected one of {BANDS}")
    return PSF_SIGMA_PIX[band].sample(n, rng) * FWHM_PER_SIGMA * PIXEL_SCALE


def psf_fwhm_quantile(band: str, p: float | np.ndarray) -> np.ndarray:
    """Quantile ``p`` of the PSF FWHM [arcsec] distribution of ``band``."""
    return PSF_SIGMA_PIX[band].quantile(p) * FWHM_PER_SIGMA * PIXEL_SCALE
