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


def azimuthal_shuffle(images: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Hard negatives from positives: the pixels of each 1-px ring about the stamp centre permuted at random
    (one permutation per image and ring, the same for every band, so each pixel keeps its colour). The radial
    profile, the ring medians and each ring's pixel values are kept; the arc's morphology is destroyed."""
    x = np.asarray(images)
    if x.ndim != 4 or x.shape[-2:] != (STAMP_SIZE, STAMP_SIZE):
        raise ValueError(f"azimuthal_shuffle needs (N, bands, {STAMP_SIZE}, {STAMP_SIZE}) images, got {x.shape}")
    flat = x.reshape(*x.shape[:2], -1).copy()
    ring = RING.ravel()
    members = [np.flatnonzero(ring == k) for k in range(ring.max() + 1)]
    for i in range(len(flat)):
        for m in members:
            flat[i, :, m] = flat[i, :, rng.permutation(m)]
    return flat.reshape(x.shape)


def core_dropout(images: np.ndarray, rng: np.random.Generator, p: float, radius_px: float) -> np.ndarray:
    """Training-time core dropout: with probability ``p`` per image, the pixels within ``radius_px`` of the stamp
    centre are replaced, per band, by the median of the annulus radius_px <= r < radius_px + 3 px."""
    if not 0 <= p <= 1 or radius_px <= 0:
        raise ValueError(f"core_dropout needs 0 <= p <= 1 and radius_px > 0; got p={p}, radius_px={radius_px}")
    x = np.array(images, copy=True)
    r = np.hypot(*(np.mgrid[:STAMP_SIZE, :STAMP_SIZE] - (STAMP_SIZE - 1) / 2))
    core, ann = r < radius_px, (r >= radius_px) & (r < radius_px + 3)
    hit = rng.random(len(x)) < p
    if hit.any():
        med = np.median(x[hit][:, :, ann], axis=2)  # (n_hit, bands)
        sub = x[hit]
        sub[:, :, core] = med[:, :, None]
        x[hit] = sub
    return x
