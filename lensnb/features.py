"""Image-derived host properties, measured on stamps (so they exist for real data too).

All fluxes in nanomaggies; sizes in pixels. Inputs are (N, 3, 64, 64) arrays (g, r, z).
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from .config import CORE_SLICE, RADIUS_PX as _R

ANNULUS = (_R >= 8) & (_R < 16)  # pixels 8-16 from the centre


def image_features(images: np.ndarray) -> pd.DataFrame:
    """Per-stamp features: core flux per band (central 10x10), core g-z colour [mag], total r flux
    inside 16 px, r-band flux-weighted radius [px] inside 16 px, annulus (8-16 px) r flux."""
    core = images[:, :, CORE_SLICE, CORE_SLICE].sum(axis=(2, 3))
    inner = _R < 16
    r = images[:, 1]
    tot = (r * inner).sum(axis=(1, 2))
    pos = np.clip(r, 0, None) * inner
    size = (pos * _R).sum(axis=(1, 2)) / np.maximum(pos.sum(axis=(1, 2)), 1e-12)
    with np.errstate(divide="ignore", invalid="ignore"):
        col = -2.5 * np.log10(np.clip(core[:, 0], 1e-6, None) / np.clip(core[:, 2], 1e-6, None))
    return pd.DataFrame({
        "core_flux_g": core[:, 0], "core_flux_r": core[:, 1], "core_flux_z": core[:, 2], "core_g_minus_z": col,
        "total_flux_r": tot, "size_r_px": size, "annulus_flux_r": (r * ANNULUS).sum(axis=(1, 2)),
    })
