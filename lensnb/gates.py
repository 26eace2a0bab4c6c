"""Shortcut gates. A gate checks its input, cross-validates with folds grouped by host, and returns
the statistic with a host-clustered bootstrap CI and a verdict against a threshold."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import GroupKFold
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from .config import CORE_SLICE, RADIUS_PX as _R, STAMP_SIZE
from .metrics import cluster_bootstrap_ci


@dataclass
class GateResult:
    name: str
    statistic: float
    ci_low: float
    ci_high: float
    threshold: float
    verdict: str  # "shortcut", "no shortcut" or "undecidable"
    n_rows: int
    n_hosts: int


def verdict(lo: float, hi: float, threshold: float) -> str:
    """'shortcut' if the whole CI is at or above the threshold, 'no shortcut' if below, else 'undecidable'."""
    if lo >= threshold:
        return "shortcut"
    if hi < threshold:
        return "no shortcut"
    return "undecidable"


def check_gate_input(y, groups, min_hosts_per_class: int = 5, n_folds: int = 5):
    y, groups = np.asarray(y), np.asarray(groups)
    if len(y) != len(groups):
        raise ValueError(f"labels ({len(y)}) and host groups ({len(groups)}) differ in length")
    classes = np.unique(y)
    if len(classes) < 2:
        raise ValueError(f"gate input holds only class {classes.tolist()}: an AUC would be meaningless")
    for c in classes:
        n = len(np.unique(groups[y == c]))
        if n < min_hosts_per_class:
            raise ValueError(f"class {c} has {n} hosts; at least {min_hosts_per_class} are needed")
    if len(np.unique(groups)) < n_folds:
        raise ValueError(f"{len(np.unique(groups))} hosts cannot make {n_folds} host-grouped folds")


def grouped_cv_scores(X, y, groups, n_folds: int = 5, C: float = 1.0) -> np.ndarray:
    """Out-of-fold logistic-regression scores; no host is in both the fit and the scored fold."""
    X, y, groups = np.asarray(X, dtype=np.float64), np.asarray(y), np.asarray(groups)
    check_gate_input(y, groups, n_folds=n_folds)
    scores = np.empty(len(y))
    for fit, test in GroupKFold(n_splits=n_folds).split(X, y, groups):
        if len(np.unique(y[fit])) < 2:
            raise ValueError("a training fold holds only one class; shuffle or rebalance the input")
        model = make_pipeline(StandardScaler(), LogisticRegression(C=C, max_iter=2000))
        model.fit(X[fit], y[fit])
        scores[test] = model.decision_function(X[test])
    return scores


def core_features(images: np.ndarray) -> np.ndarray:
    """Central 10x10 pixels of all three bands, flattened: (N, 300)."""
    return images[:, :, CORE_SLICE, CORE_SLICE].reshape(len(images), -1)


CORE_MASK = np.zeros((STAMP_SIZE, STAMP_SIZE), bool)
CORE_MASK[CORE_SLICE, CORE_SLICE] = True
ANNULUS_MASK = (_R >= 6) & (_R < 16)  # outside the core box's inscribed circle, inside 16 px
RADIAL_EDGES = np.array([0, 1, 2, 3, 4, 5, 6, 8, 10, 12, 16, 20, 25, 32])


def annulus_features(images: np.ndarray) -> np.ndarray:
    """Pixels 6-16 px from the centre, all bands, flattened (the arc's zone, the core excluded)."""
    return images[:, :, ANNULUS_MASK].reshape(len(images), -1)


def radial_profile_features(images: np.ndarray) -> np.ndarray:
    """Azimuthally averaged flux per band in radial bins (edges ``RADIAL_EDGES`` [px]): (N, 3 x 13)."""
    out = []
    for lo, hi in zip(RADIAL_EDGES[:-1], RADIAL_EDGES[1:]):
        m = (_R >= lo) & (_R < hi)
        out.append(images[:, :, m].mean(axis=2))
    return np.concatenate(out, axis=1)


def flux_colour_features(images: np.ndarray) -> np.ndarray:
    """Total flux inside 16 px per band and the g-r, r-z colours of that flux [mag]: (N, 5)."""
    f = images[:, :, _R < 16].sum(axis=2)
    c = np.clip(f, 1e-6, None)
    return np.column_stack([f, -2.5 * np.log10(c[:, 0] / c[:, 1]), -2.5 * np.log10(c[:, 1] / c[:, 2])])


FEATURES = {"core LR": core_features, "annulus LR": annulus_features, "radial-profile LR": radial_profile_features,
            "flux & colour": flux_colour_features}


def feature_gate(name: str, X, y, groups, threshold: float = 0.65, n_folds: int = 5, n_boot: int = 500,
                 seed: int = 0) -> GateResult:
    """Logistic regression on features ``X`` (host-grouped CV) -> AUROC, host-bootstrap CI, verdict."""
    s = grouped_cv_scores(X, y, groups, n_folds=n_folds)
    auc, lo, hi = cluster_bootstrap_ci(y, s, groups, n_boot=n_boot, seed=seed)
    return GateResult(name, auc, lo, hi, threshold, verdict(lo, hi, threshold), len(y), len(np.unique(groups)))


def core_lr_gate(images, y, groups, threshold: float = 0.65, n_folds: int = 5, n_boot: int = 500,
                 seed: int = 0) -> GateResult:
    """E4 as the request defines it: logistic regression on the central 10x10 x 3 pixels."""
    return feature_gate("core LR", core_features(images), y, groups, threshold, n_folds, n_boot, seed)


def image_gates(images, y, groups, threshold: float = 0.65, n_boot: int = 500, seed: int = 0,
                which=tuple(FEATURES)) -> list[GateResult]:
    """The data-level image gates (core, annulus, radial profile, flux & colour)."""
    return [feature_gate(n, FEATURES[n](images), y, groups, threshold, n_boot=n_boot, seed=seed) for n in which]


def metadata_gate(meta_rows, y, groups, columns, threshold: float = 0.65, n_boot: int = 500, seed: int = 0):
    """Host-metadata-only classifier on the columns present (e.g. PSF, depth, redshift, magnitude, size).

    Returns None when none of ``columns`` is present (the caller reports the gate as skipped).
    """
    cols = [c for c in columns if c in meta_rows.columns]
    if not cols:
        return None
    X = meta_rows[cols].to_numpy(float)
    return feature_gate("host metadata", X, y, groups, threshold, n_boot=n_boot, seed=seed)


# --------------------------------------------------------------------------- model-level gates
def check_no_shared_hosts(fit_groups, score_groups) -> None:
    """Refuse to score a model on hosts it was trained on (the number would be optimistic)."""
    shared = set(np.asarray(fit_groups)) & set(np.asarray(score_groups))
    if shared:
        raise ValueError(f"{len(shared)} host(s) are in both the model's training set and the scored set, "
                         f"e.g. {sorted(shared)[:3]}")


def fill_from_annulus(images: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Replace masked pixels ((N,64,64) or (64,64) bool) by each image's per-band median of the
    6-16 px annulus: removes the information without leaving a zero-valued hole to detect."""
    out = images.copy()
    med = np.median(images[:, :, ANNULUS_MASK], axis=2)  # (N, 3)
    m = np.broadcast_to(mask, (len(images), STAMP_SIZE, STAMP_SIZE)) if mask.ndim == 2 else mask
    for b in range(images.shape[1]):
        band = out[:, b]
        band[m] = np.repeat(med[:, b], m.reshape(len(images), -1).sum(1))
    return out


def arc_masks(stamps: np.ndarray, ctrls: np.ndarray, nsigma: float = 1.0, dilate: int = 1) -> np.ndarray:
    """Where the injected arc is: (stamp - ctrl) summed over bands above ``nsigma`` x its robust noise,
    dilated by ``dilate`` px. Needs the paired ctrl, which the team's data carry."""
    from scipy.ndimage import binary_dilation

    d = (stamps - ctrls).sum(axis=1)
    sig = 1.4826 * np.median(np.abs(ctrls.sum(axis=1) - np.median(ctrls.sum(axis=1), axis=(1, 2), keepdims=True)),
                             axis=(1, 2), keepdims=True)
    m = d > nsigma * np.maximum(sig, 1e-12)
    if dilate:
        m = np.stack([binary_dilation(x, iterations=dilate) for x in m])
    return m


def model_gate(name: str, scores, y, groups, threshold: float, n_boot: int = 500, seed: int = 0,
               fit_groups=None) -> GateResult:
    """Wrap model scores on a (possibly modified) test set as a gate result."""
    check_gate_input(y, groups, n_folds=1)
    if fit_groups is not None:
        check_no_shared_hosts(fit_groups, groups)
    auc, lo, hi = cluster_bootstrap_ci(y, scores, groups, n_boot=n_boot, seed=seed)
    return GateResult(name, auc, lo, hi, threshold, verdict(lo, hi, threshold), len(y), len(np.unique(groups)))


def occlusion_map(score_fn, images: np.ndarray, patch: int = 8, stride: int = 4) -> np.ndarray:
    """Mean drop of the score when a patch x patch window is filled from the annulus median,
    as a (64, 64) map averaged over ``images`` (higher = the model relies on that region)."""
    base = score_fn(images)
    heat = np.zeros((STAMP_SIZE, STAMP_SIZE))
    count = np.zeros((STAMP_SIZE, STAMP_SIZE))
    for r0 in range(0, STAMP_SIZE - patch + 1, stride):
        for c0 in range(0, STAMP_SIZE - patch + 1, stride):
            m = np.zeros((STAMP_SIZE, STAMP_SIZE), bool)
            m[r0 : r0 + patch, c0 : c0 + patch] = True
            drop = float(np.mean(base - score_fn(fill_from_annulus(images, m))))
            heat[m] += drop
            count[m] += 1
    return heat / np.maximum(count, 1)


def results_frame(results) -> "pd.DataFrame":
    import pandas as pd

    return pd.DataFrame([r.__dict__ for r in results if r is not None])


def reliance_gate(name: str, scores_full, scores_masked, y, groups, drop: float = 0.05, n_boot: int = 500,
                  seed: int = 0, fit_groups=None) -> dict:
    """Does a model rely on a masked region? AUROC(unmodified) - AUROC(masked) with a host-bootstrap
    interval (the same hosts resampled for both): 'relies' if the whole interval exceeds ``drop``,
    'does not rely' if it is entirely below, else 'undecidable'."""
    from .metrics import paired_bootstrap_difference

    check_gate_input(y, groups, n_folds=1)
    if fit_groups is not None:
        check_no_shared_hosts(fit_groups, groups)
    d, lo, hi = paired_bootstrap_difference(y, scores_masked, groups, y, scores_full, groups, n_boot=n_boot, seed=seed)
    v = "relies" if lo > drop else ("does not rely" if hi < drop else "undecidable")
    return {"name": name, "AUROC drop": d, "ci_low": lo, "ci_high": hi, "verdict": v}
