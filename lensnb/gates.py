"""Shortcut gates. A gate checks its input, cross-validates with folds grouped by host, and returns
the statistic with a host-clustered bootstrap CI and a verdict against a threshold."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import GroupKFold
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from .config import CORE_SLICE
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


def core_lr_gate(images, y, groups, threshold: float = 0.65, n_folds: int = 5, n_boot: int = 500,
                 seed: int = 0) -> GateResult:
    """E4 as the request defines it: logistic regression on the central 10x10 x 3 pixels."""
    s = grouped_cv_scores(core_features(images), y, groups, n_folds=n_folds)
    auc, lo, hi = cluster_bootstrap_ci(y, s, groups, n_boot=n_boot, seed=seed)
    return GateResult("core LR", auc, lo, hi, threshold, verdict(lo, hi, threshold), len(y), len(np.unique(groups)))
