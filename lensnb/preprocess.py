"""Input transforms applied to stamps before a classifier or gate sees them.

``azimuthal_residual``: per band, subtract the azimuthal-median radial profile about the stamp centre
(1-px rings). A host's smooth, centrally concentrated light is removed; what is not azimuthally
symmetric (arcs, companions, twists, an off-centre host) survives.
"""
from __future__ import annotations

import numpy as np

from .config import STAMP_SIZE

_C = (STAMP_SIZE - 1) / 2
_YY, _XX = np.mgrid[:STAMP_SIZE, :STAMP_SIZE]
RING = np.floor(np.hypot(_XX - _C, _YY - _C)).astype(int)  # 1-px ring index of every pixel [px from centre]


def azimuthal_profile(images: np.ndarray) -> np.ndarray:
    """Median of each 1-px ring about the stamp centre, per image and band: (N, B, S, S) -> (N, B, n_rings)."""
    x = np.asarray(images)
    if x.ndim != 4 or x.shape[-2:] != (STAMP_SIZE, STAMP_SIZE):
        raise ValueError(f"azimuthal_profile needs (N, bands, {STAMP_SIZE}, {STAMP_SIZE}) images, got {x.shape}")
    flat = x.reshape(*x.shape[:2], -1)
    ring = RING.ravel()
    return np.stack([np.median(flat[..., ring == k], axis=-1) for k in range(ring.max() + 1)], axis=-1)


def azimuthal_residual(images: np.ndarray) -> np.ndarray:
    """Images minus their azimuthal-median radial profile (1-px rings about the stamp centre), float32."""
    prof = azimuthal_profile(images)
    return (np.asarray(images) - prof[..., RING]).astype(np.float32)
