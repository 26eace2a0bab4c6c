"""The realism probe: how far the injected lenses are from real ones, as the trained network sees them.

Two measurements on a set of *real* lens candidates (the team's, in the team-format manifest, ``stamp_npz``
only) against the simulated positives a model was trained on:

* a **domain classifier**: a linear probe (host-grouped cross-validated logistic regression) separating
  simulated positives from real candidates, on the network's penultimate features and on binned pixels.
  AUROC near 0.5: the injections look real to the network; near 1: the network sees something in the
  injections that real lenses do not have (or the reverse).
* **recall on real lenses**: the share of real candidates scored above a threshold chosen on simulations
  (e.g. the score giving 1% false positives on simulated non-lenses), with a Wilson interval.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from .config import STAMP_SIZE
from .gates import grouped_cv_scores
from .lensing import default_device
from .metrics import cluster_bootstrap_ci


@dataclass
class ProbeResult:
    """AUROC of telling simulated positives (label 1) from real candidates (label 0), 95% host-bootstrap CI."""

    features: str
    auroc: float
    ci_low: float
    ci_high: float
    n_sim: int
    n_real: int


def penultimate_features(model, norm, images: np.ndarray, batch: int = 512, device=None) -> np.ndarray:
    """The globally pooled activations a :class:`lensnb.train.SmallResNet` feeds its last layer: (N, 4 width)."""
    device = torch.device(device) if device is not None else default_device()
    model.eval().to(device)
    out = []
    with torch.no_grad():
        for s in range(0, len(images), batch):
            x = torch.from_numpy(norm(images[s:s + batch])).to(device)
            out.append(model.stages(model.stem(x)).mean(dim=(2, 3)).float().cpu().numpy())
    return np.concatenate(out) if out else np.empty((0, 0))


def binned_pixels(images: np.ndarray, factor: int = 8) -> np.ndarray:
    """Images block-averaged by ``factor`` (64 -> 8 px for 8) and flattened, per band: (N, 3 (64/factor)^2)."""
    x = np.asarray(images, np.float64)
    if x.shape[-1] != STAMP_SIZE or STAMP_SIZE % factor:
        raise ValueError(f"binned_pixels needs (N, bands, {STAMP_SIZE}, {STAMP_SIZE}) images and a factor dividing "
                         f"{STAMP_SIZE}; got {x.shape} and {factor}")
    n, b = x.shape[:2]
    k = STAMP_SIZE // factor
    return x.reshape(n, b, k, factor, k, factor).mean(axis=(3, 5)).reshape(n, -1)


def domain_probe(sim: np.ndarray, real: np.ndarray, sim_groups, real_groups=None, *, features: str = "",
                 n_folds: int = 5, n_boot: int = 500, seed: int = 0) -> ProbeResult:
    """Host-grouped cross-validated logistic regression telling ``sim`` feature rows (label 1) from ``real``
    ones (label 0). ``sim_groups``: the host of each simulated row (injections into one host stay in one
    fold); ``real_groups``: default, every real candidate its own group."""
    sim, real = np.asarray(sim, np.float64), np.asarray(real, np.float64)
    if sim.ndim != 2 or real.ndim != 2 or sim.shape[1] != real.shape[1]:
        raise ValueError(f"domain_probe needs two (N, d) feature arrays with the same d; got {sim.shape}, {real.shape}")
    real_groups = (np.array([f"real-{i}" for i in range(len(real))]) if real_groups is None
                   else np.array([f"real-{g}" for g in real_groups]))
    X = np.concatenate([sim, real])
    y = np.r_[np.ones(len(sim)), np.zeros(len(real))]
    g = np.concatenate([np.array([f"sim-{h}" for h in sim_groups]), real_groups])
    s = grouped_cv_scores(X, y, g, n_folds=n_folds, seed=seed)
    auc, lo, hi = cluster_bootstrap_ci(y, s, g, n_boot=n_boot, seed=seed)
    return ProbeResult(features, auc, lo, hi, len(sim), len(real))


def threshold_at_fpr(neg_scores: np.ndarray, fpr: float) -> float:
    """The score above which a share ``fpr`` of the (simulated) non-lenses lie."""
    neg = np.asarray(neg_scores, float)
    if not 0 < fpr < 1 or len(neg) == 0:
        raise ValueError(f"threshold_at_fpr needs 0 < fpr < 1 and some scores; got fpr={fpr}, {len(neg)} scores")
    return float(np.quantile(neg, 1 - fpr))


def wilson_interval(k: int, n: int, z: float = 1.959964) -> tuple[float, float]:
    """Wilson score interval (95% by default) for a proportion k / n."""
    if n <= 0:
        return float("nan"), float("nan")
    p = k / n
    den = 1 + z * z / n
    mid = (p + z * z / (2 * n)) / den
    half = z * np.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / den
    return float(max(0.0, mid - half)), float(min(1.0, mid + half))


def recall_on_real(real_scores: np.ndarray, threshold: float) -> tuple[float, float, float]:
    """(share of real candidates scored above ``threshold``, Wilson 95% interval)."""
    s = np.asarray(real_scores, float)
    k = int((s > threshold).sum())
    lo, hi = wilson_interval(k, len(s))
    return (k / len(s) if len(s) else float("nan")), lo, hi
