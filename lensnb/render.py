"""Image rendering in torch: Sersic profiles, Moffat PSFs, lensed arcs, convolution.

Everything is batched over stamps and runs on the device of its inputs (GPU when present).
Units: positions in arcsec relative to the lens centre, x along increasing column index and y along
increasing row index (x right, y up when drawn with origin="lower"), surface brightness in
nanomaggies / arcsec^2, rendered stamps in nanomaggies / pixel.

Order of operations: the (lensed) surface brightness is sampled on ``supersample``² sub-pixels per pixel and
averaged (times the pixel area); arc pixels of compact sources are resampled more finely
(``refined_supersampling``); the pixel image is convolved by FFT with a pixel-integrated (5×5 sub-sampled),
31×31-pixel, unit-sum Moffat kernel (``moffat_kernels``: truncation, then renormalisation).

Sersic convention (lenstronomy's ``SERSIC_ELLIPSE``)::

    I(x, y) = amp * exp(-b_n ((R / R_e)^(1/n) - 1)),  R = sqrt(q x'^2 + y'^2 / q),
    b_n = 1.9992 n - 0.3271,

with (x', y') rotated by the position angle; ``amp`` is the surface brightness at the
half-light radius R_e (the geometric mean of the semi-axes). Total flux =
amp R_e^2 2 pi n e^{b_n} Gamma(2n) / b_n^(2n).
"""
from __future__ import annotations

import math

import numpy as np
import torch

from .config import CENTER_PIX, PIXEL_SCALE, STAMP_SIZE
from .lensing import ray_trace

MOFFAT_BETA = 3.5


def sersic_b(n):
    """b_n as in lenstronomy (1.9992 n - 0.3271)."""
    return 1.9992 * n - 0.3271


def sersic_total_flux_per_amp(r_eff, n):
    """Total flux / amp for the Sersic convention above [arcsec^2]."""
    n = np.asarray(n, dtype=float)
    b = sersic_b(n)
    from scipy.special import gamma

    return np.asarray(r_eff, dtype=float) ** 2 * 2 * np.pi * n * np.exp(b) * gamma(2 * n) / b ** (2 * n)


def mag_to_nmgy(mag):
    """AB magnitude -> flux in nanomaggies (zero point 22.5)."""
    return 10 ** ((22.5 - np.asarray(mag, dtype=float)) / 2.5)


def sersic(x, y, amp, r_eff, n, q, phi, x0=0.0, y0=0.0):
    """Sersic surface brightness at (x, y); all arguments broadcast (torch).

    Computed in place on the grid-sized temporaries (the same operations in the same order as the plain
    expression ``amp exp(-b_n ((R / R_e)^(1/n) - 1))``, so the same bits, with fewer passes over memory)."""
    dx, dy = x - x0, y - y0
    c, s = torch.cos(phi), torch.sin(phi)
    if any(torch.is_tensor(v) and v.requires_grad for v in (x, y, amp, r_eff, n, q, phi, x0, y0)):
        xr, yr = c * dx + s * dy, -s * dx + c * dy  # autograd: no in-place steps
        R = torch.sqrt(q * xr**2 + yr**2 / q + 1e-12)
        return amp * torch.exp(-sersic_b(n) * ((R / r_eff) ** (1.0 / n) - 1.0))
    shape = torch.broadcast_shapes(dx.shape, dy.shape, *(torch.as_tensor(v).shape for v in (amp, r_eff, n, q, phi)))
    xr = (c * dx).broadcast_to(shape).contiguous()  # xr = c dx + s dy, yr = -s dx + c dy
    xr += s * dy
    yr = (-s * dx).broadcast_to(shape).contiguous()
    yr += c * dy
    xr *= xr                                        # R^2 = q xr^2 + yr^2 / q + 1e-12
    xr *= q
    yr *= yr
    yr /= q
    xr += yr
    xr += 1e-12
    xr.sqrt_()
    xr /= r_eff                                     # exp(-b_n ((R / R_e)^(1/n) - 1))
    xr.pow_(1.0 / n)
    xr -= 1.0
    xr *= -sersic_b(n)
    xr.exp_()
    return xr if isinstance(amp, float) and amp == 1.0 else amp * xr


def pixel_grid(supersample: int, device=None, dtype=torch.float32):
    """Sub-pixel centres (x, y) [arcsec] of the stamp, shape (S*ss, S*ss); y grows with the row index."""
    ss = supersample
    idx = (torch.arange(STAMP_SIZE * ss, device=device, dtype=torch.float64) + 0.5) / ss - 0.5
    off = (idx - CENTER_PIX) * PIXEL_SCALE
    y, x = torch.meshgrid(off, off, indexing="ij")
    return x.to(dtype), y.to(dtype)


def bin_supersampled(img: torch.Tensor, supersample: int) -> torch.Tensor:
    """Average ss x ss sub-pixels: (..., S*ss, S*ss) -> (..., S, S)."""
    if supersample == 1:
        return img
    *lead, h, w = img.shape
    ss = supersample
    return img.reshape(*lead, h // ss, ss, w // ss, ss).mean(dim=(-3, -1))


def moffat_kernels(fwhm_arcsec: torch.Tensor, beta: float = MOFFAT_BETA, size: int = 31, oversample: int = 5):
    """Pixel-integrated, unit-sum Moffat kernels for FWHM values of any shape -> (..., size, size)."""
    alpha = fwhm_arcsec / (2.0 * math.sqrt(2 ** (1.0 / beta) - 1.0))
    o = oversample
    sub = (torch.arange(size * o, device=fwhm_arcsec.device, dtype=fwhm_arcsec.dtype) + 0.5) / o - size / 2
    sub = sub * PIXEL_SCALE
    yy, xx = torch.meshgrid(sub, sub, indexing="ij")
    r2 = (xx**2 + yy**2)[(None,) * fwhm_arcsec.dim()]
    a = alpha[..., None, None]
    prof = (1.0 + r2 / a**2) ** (-beta)
    k = bin_supersampled(prof, o)
    return k / k.sum(dim=(-2, -1), keepdim=True)


def convolve(images: torch.Tensor, kernels: torch.Tensor) -> torch.Tensor:
    """Convolve (..., S, S) images with centred (..., K, K) kernels (same leading shape) via FFT."""
    S, K = images.shape[-1], kernels.shape[-1]
    n = S + K - 1
    n = next(m for m in (64, 72, 80, 96, 128, 144, 160, 192, 256, 1 << 30) if m >= n)  # FFT-friendly size
    fi = torch.fft.rfft2(images, s=(n, n))
    fk = torch.fft.rfft2(kernels, s=(n, n))
    full = torch.fft.irfft2(fi * fk, s=(n, n))
    h = K // 2
    return full[..., h : h + S, h : h + S]


# Adaptive supersampling of compact sources: a lensed image is about as thick (radially) as its source,
# so a sub-pixel grid must resolve the source's R_e. Pixels that hold the arc are re-rendered with
# ``refined_supersampling(r_eff)`` sub-pixels a side when that exceeds the base factor.
REFINE_SAMPLES_PER_REFF = 4.0   # sub-pixel spacing <= R_e / 4
REFINE_TIERS = (3, 5, 9, 15, 27)
REFINE_MAX_POINTS = 4_000_000   # sub-pixel evaluations per refinement chunk (memory bound)
REFINE_THRESHOLD = 1e-3          # pixels above this fraction of the arc's peak are refined,
REFINE_DILATE = 2                # and their neighbours within 2 px (image parts the coarse grid missed)


def refined_supersampling(r_eff, base: int = 3):
    """Sub-pixels per pixel side for sources of half-light radius ``r_eff`` [arcsec]: the smallest tier of
    ``REFINE_TIERS`` with spacing PIXEL_SCALE / ss <= r_eff / REFINE_SAMPLES_PER_REFF, at least ``base``."""
    need = np.ceil(REFINE_SAMPLES_PER_REFF * PIXEL_SCALE / np.maximum(np.asarray(r_eff, float), 1e-6))
    tiers = np.array(REFINE_TIERS)
    idx = np.minimum(np.searchsorted(tiers, need), len(tiers) - 1)
    return np.maximum(tiers[idx], base).astype(int)


def source_brightness(bx, by, S: dict):
    """Source-plane surface brightness for unit Sersic amplitude at (bx, by): the Sersic disc, and, where ``S``
    has knot tensors (``knot_x``, ``knot_y`` [arcsec from the source centre], ``knot_sigma`` [arcsec],
    ``knot_frac`` [share of the source's flux] and ``knot_amp`` = knot_frac x ``sersic_total_flux_per_amp`` of the
    source [arcsec^2], last axis = knot), Gaussian knots taking that share of the flux from the disc. Scalars
    broadcast against ``bx``; knot tensors carry one more (last) axis."""
    val = sersic(bx, by, 1.0, S["r_eff"], S["n"], S["q"], S["phi"], S["x"], S["y"])
    if "knot_frac" not in S:
        return val
    frac = S["knot_frac"]
    dx = bx[..., None] - S["x"][..., None] - S["knot_x"]
    dy = by[..., None] - S["y"][..., None] - S["knot_y"]
    sig2 = S["knot_sigma"].clamp_min(1e-6) ** 2
    knots = (S["knot_amp"] / (2 * math.pi * sig2) * torch.exp(-0.5 * (dx * dx + dy * dy) / sig2)).sum(-1)
    return (1.0 - frac.sum(-1)) * val + knots


def _render_size(src: dict) -> np.ndarray:
    """The size that sets a source's sub-pixel grid [arcsec]: R_e, or a knot's width when smaller."""
    size = src["r_eff"].detach().cpu().numpy().astype(float)
    if "knot_sigma" in src:
        ks = src["knot_sigma"].detach().cpu().numpy().astype(float)
        ks = np.where(src["knot_frac"].detach().cpu().numpy() > 0, ks, np.inf).min(axis=-1)
        size = np.minimum(size, 1.2 * ks)  # a Gaussian's half-light radius is 1.18 sigma
    return size


def _refine(unit: torch.Tensor, L: dict, S_: dict, rows: torch.Tensor, ss: int) -> None:
    """Re-render, in place, the arc pixels of systems ``rows`` of ``unit`` (B, S, S) with ss x ss sub-pixels."""
    import torch.nn.functional as F

    dev, dt = unit.device, unit.dtype
    coarse = unit[rows]
    peak = coarse.flatten(1).amax(1).clamp_min(1e-300)[:, None, None]
    k = 2 * REFINE_DILATE + 1
    mask = F.max_pool2d((coarse > REFINE_THRESHOLD * peak).to(dt)[:, None], k, stride=1, padding=REFINE_DILATE)[:, 0] > 0
    b, py, px = mask.nonzero(as_tuple=True)
    if len(b) == 0:
        return
    sub = ((torch.arange(ss, device=dev, dtype=torch.float64) + 0.5) / ss - 0.5)
    oy, ox = torch.meshgrid(sub, sub, indexing="ij")
    ox, oy = ox.reshape(-1).to(dt), oy.reshape(-1).to(dt)
    step = max(1, REFINE_MAX_POINTS // (ss * ss))
    for i in range(0, len(b), step):
        bb, yy, xx = b[i:i + step], py[i:i + step], px[i:i + step]
        x = ((xx.to(dt) - CENTER_PIX)[:, None] + ox[None]) * PIXEL_SCALE
        y = ((yy.to(dt) - CENTER_PIX)[:, None] + oy[None]) * PIXEL_SCALE
        r = rows[bb]
        g = {k: v[r, :, 0] for k, v in L.items()}
        if "x0" in g:
            x, y = x - g["x0"], y - g["y0"]
        bx, by = ray_trace(x, y, g["theta_e"], g["q"], g["phi"], g["gamma1"], g["gamma2"])
        h = {k: v[r, :, 0] for k, v in S_.items()}
        val = source_brightness(bx, by, h).mean(dim=1)
        unit[r, yy, xx] = val * PIXEL_SCALE**2


def render_arcs(lens: dict, src: dict, amps: torch.Tensor, supersample: int = 3, *, refine: bool = True) -> torch.Tensor:
    """Noise-free, unconvolved lensed Sersic sources, (B, n_bands, S, S) in nanomaggies / pixel.

    ``lens``: tensors (B,) theta_e, q, phi, gamma1, gamma2, and optionally x0, y0 [arcsec], the lens centre
    relative to the stamp centre (default 0); ``src``: tensors (B,) x, y, r_eff, n, q,
    phi, and optionally knots (``source_brightness``: knot_x, knot_y, knot_sigma, knot_frac, knot_amp, (B, K)); ``amps``: (B, n_bands) surface brightness at R_e [nmgy / arcsec^2]. Ray tracing uses the
    caustics functional deflections (``lensnb.lensing.ray_trace``). Every pixel is the mean of
    ``supersample``² sub-pixel samples; with ``refine``, the arc pixels of a compact source are resampled
    with ``refined_supersampling(r_eff)`` sub-pixels a side (adaptive supersampling).

    The unit-amplitude arcs of a batch are kept (``UNIT_ARC_CACHE``, least recently used first out): a batch with
    the same lens and source parameters (a re-simulation of the same lenses under another PSF, other colours or
    brightness, as the failure-modes chapter's variants and realism stand-in are) reuses them bit for bit.
    """
    key = _unit_key(lens, src, supersample, refine, amps)
    unit = UNIT_ARC_CACHE.get(key)
    if unit is None:
        unit = _unit_arcs(lens, src, amps.device, amps.dtype, supersample, refine)
        UNIT_ARC_CACHE.put(key, unit)
    return unit[:, None] * amps[:, :, None, None]


def _unit_arcs(lens: dict, src: dict, dev, dt, supersample: int, refine: bool) -> torch.Tensor:
    """Unit-amplitude lensed sources (B, S, S) [nmgy / pixel per nmgy / arcsec^2 at R_e] (``render_arcs``)."""
    gx, gy = pixel_grid(supersample, dev, dt)
    L = {k: v.to(dt)[:, None, None] for k, v in lens.items()}
    x0, y0 = L.get("x0", 0.0), L.get("y0", 0.0)
    bx, by = ray_trace(gx[None] - x0, gy[None] - y0, L["theta_e"], L["q"], L["phi"], L["gamma1"], L["gamma2"])
    S_ = {k: v.to(dt)[:, None, None] for k, v in src.items()}  # knot tensors (B, K) -> (B, 1, 1, K)
    shape = source_brightness(bx, by, S_)
    unit = bin_supersampled(shape, supersample) * PIXEL_SCALE**2
    if refine:
        need = refined_supersampling(_render_size(src), supersample)
        for ss in sorted(set(need.tolist()) - {supersample}):
            rows = torch.as_tensor(np.flatnonzero(need == ss), device=dev)
            _refine(unit, L, S_, rows, ss)
    return unit


def _unit_key(lens: dict, src: dict, supersample: int, refine: bool, amps: torch.Tensor) -> bytes:
    """The cache key of a batch: every lens and source tensor's bytes, shape and dtype, the sampling and the
    refinement settings (the module's constants too, so a test that changes one never reads a stale render), and
    the dtype and device the arcs are rendered in."""
    import hashlib

    settings = (supersample, bool(refine), str(amps.dtype), str(amps.device), PIXEL_SCALE, STAMP_SIZE, CENTER_PIX,
                REFINE_SAMPLES_PER_REFF, tuple(REFINE_TIERS), REFINE_MAX_POINTS, REFINE_THRESHOLD, REFINE_DILATE)
    h = hashlib.blake2b(repr(settings).encode(), digest_size=20)
    for name, d in (("lens", lens), ("src", src)):
        for k in sorted(d):
            t = d[k].detach()
            h.update(repr((name, k, tuple(t.shape), str(t.dtype))).encode())
            h.update(t.cpu().contiguous().numpy().tobytes())
    return h.digest()


class _LRU:
    """Tensors by key, least recently used evicted first beyond ``max_bytes`` (0 turns the cache off)."""

    def __init__(self, max_bytes: int):
        from collections import OrderedDict

        self.max_bytes, self.bytes, self.hits, self.misses = max_bytes, 0, 0, 0
        self._d: OrderedDict = OrderedDict()

    def get(self, key):
        t = self._d.get(key) if self.max_bytes > 0 else None
        if t is None:
            self.misses += 1
            return None
        self.hits += 1
        self._d.move_to_end(key)
        return t

    def put(self, key, t: torch.Tensor) -> None:
        size = t.numel() * t.element_size()
        if size > self.max_bytes:
            return
        if key in self._d:  # replaced: its old bytes leave the count
            old = self._d.pop(key)
            self.bytes -= old.numel() * old.element_size()
        self._d[key] = t
        self.bytes += size
        while self.bytes > self.max_bytes:
            _, old = self._d.popitem(last=False)
            self.bytes -= old.numel() * old.element_size()

    def clear(self) -> None:
        self._d.clear()
        self.bytes = self.hits = self.misses = 0


class no_unit_arc_cache:
    """Within this context ``render_arcs`` neither reads nor keeps cached arcs (benchmarks time real renders)."""

    def __enter__(self):
        self._saved = UNIT_ARC_CACHE.max_bytes
        UNIT_ARC_CACHE.max_bytes = 0
        return self

    def __exit__(self, *exc):
        UNIT_ARC_CACHE.max_bytes = self._saved
        return False


#: Unit arcs of recent batches (``render_arcs``): 256 MB hold ~16,000 CPU stamps, a chapter's test set and variants.
UNIT_ARC_CACHE = _LRU(256 * 2**20)


def render_sersic(params: dict, amps: torch.Tensor, supersample: int = 3) -> torch.Tensor:
    """Unlensed Sersic galaxies (B, n_bands, S, S) [nmgy / pixel]; params (B,) x, y, r_eff, n, q, phi."""
    dev, dt = amps.device, amps.dtype
    gx, gy = pixel_grid(supersample, dev, dt)
    P = {k: v.to(dt)[:, None, None] for k, v in params.items()}
    shape = sersic(gx[None], gy[None], 1.0, P["r_eff"], P["n"], P["q"], P["phi"], P["x"], P["y"])
    unit = bin_supersampled(shape, supersample) * PIXEL_SCALE**2
    return unit[:, None] * amps[:, :, None, None]
