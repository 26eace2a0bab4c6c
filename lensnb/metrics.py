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


def paired_bootstrap_difference(y_a, s_a, g_a, y_b, s_b, g_b, n_boot: int = 1000, alpha: float = 0.05, seed: int = 0):
    """AUROC(b) - AUROC(a) and its percentile CI, resampling the union of hosts jointly for both sets."""
    y_a, s_a, g_a, y_b, s_b, g_b = map(np.asarray, (y_a, s_a, g_a, y_b, s_b, g_b))
    hosts = np.unique(np.concatenate([g_a, g_b]))
    ia = {h: np.flatnonzero(g_a == h) for h in hosts}
    ib = {h: np.flatnonzero(g_b == h) for h in hosts}
    rng = np.random.default_rng(seed)
    diffs = []
    for _ in range(n_boot):
        pick = hosts[rng.integers(0, len(hosts), len(hosts))]
        a = np.concatenate([ia[h] for h in pick])
        b = np.concatenate([ib[h] for h in pick])
        if len(np.unique(y_a[a])) == 2 and len(np.unique(y_b[b])) == 2:
            diffs.append(roc_auc_score(y_b[b], s_b[b]) - roc_auc_score(y_a[a], s_a[a]))
    lo, hi = np.quantile(diffs, [alpha / 2, 1 - alpha / 2])
    return auroc(y_b, s_b) - auroc(y_a, s_a), float(lo), float(hi)


def stratified_auroc(y, score, strata, groups, min_pos: int = 10, n_boot: int = 300, seed: int = 0) -> "pd.DataFrame":
    """AUROC of the positives in each stratum against all negatives (strata of positives; NaN for negatives)."""
    import pandas as pd

    y, score, groups = np.asarray(y), np.asarray(score), np.asarray(groups)
    strata = pd.Series(strata).reset_index(drop=True)
    rows = []
    for level in strata.dropna().unique():
        sel = (y == 0) | (strata == level).to_numpy()
        n_pos = int(((y == 1) & sel).sum())
        if n_pos < min_pos:
            continue
        auc, lo, hi = cluster_bootstrap_ci(y[sel], score[sel], groups[sel], n_boot=n_boot, seed=seed)
        rows.append({"stratum": level, "n_pos": n_pos, "auroc": auc, "ci_low": lo, "ci_high": hi})
    return pd.DataFrame(rows)
