"""Metrics with honest uncertainty: AUROC and host-clustered bootstrap intervals."""
from __future__ import annotations

import numpy as np
from sklearn.metrics import roc_auc_score


def auroc(y, score) -> float:
    y = np.asarray(y)
    if len(np.unique(y)) < 2:
        raise ValueError("AUROC needs both classes; got only class " + str(np.unique(y)))
    return float(roc_auc_score(y, score))


def cluster_bootstrap_ci(y, score, groups, n_boot: int = 1000, alpha: float = 0.05, seed: int = 0):
    """(AUROC, lo, hi): percentile interval from resampling *groups* (hosts) with replacement."""
    y, score, groups = np.asarray(y), np.asarray(score), np.asarray(groups)
    uniq, inv = np.unique(groups, return_inverse=True)
    members = [np.flatnonzero(inv == g) for g in range(len(uniq))]
    rng = np.random.default_rng(seed)
    stats = []
    for _ in range(n_boot):
        pick = rng.integers(0, len(uniq), len(uniq))
        idx = np.concatenate([members[g] for g in pick])
        if len(np.unique(y[idx])) == 2:
            stats.append(roc_auc_score(y[idx], score[idx]))
    lo, hi = np.quantile(stats, [alpha / 2, 1 - alpha / 2])
    return auroc(y, score), float(lo), float(hi)
