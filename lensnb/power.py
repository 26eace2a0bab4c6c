"""Sample size and power: clustered AUROC variance, design effects, and power by simulation.

* ``auroc_clustered``: AUROC with Obuchowski's (1997) variance for clustered data (here, hosts),
  from placement values; fast enough to sit inside a simulation loop.
* ``icc_oneway`` and ``design_effect``: the intra-host correlation of scores and the resulting
  design effect 1 + (k - 1) ICC (effective sample size = images / design effect).
* ``simulate_scores`` / ``power``: a binormal score model with a host random effect (total variance
  1 per class, a share ``icc`` from the host), to ask how many test hosts decide a criterion.
"""
from __future__ import annotations

import numpy as np
from scipy.stats import norm, rankdata


def auroc_clustered(y, score, groups) -> tuple[float, float]:
    """(AUROC, its standard error) with hosts as clusters (Obuchowski 1997, placement values)."""
    y, score, groups = np.asarray(y), np.asarray(score, float), np.asarray(groups)
    pos, neg = y == 1, y == 0
    M, N = int(pos.sum()), int(neg.sum())
    if M == 0 or N == 0:
        raise ValueError("AUROC needs both classes")
    r_all = rankdata(score)
    r_pos = rankdata(score[pos])
    r_neg = rankdata(score[neg])
    auc = (r_all[pos].sum() - M * (M + 1) / 2) / (M * N)
    v10 = (r_all[pos] - r_pos) / N  # share of negatives below each positive (ties half)
    v01 = 1.0 - (r_all[neg] - r_neg) / M  # share of positives above each negative
    uniq, inv = np.unique(groups, return_inverse=True)
    I = len(uniq)
    if I < 2:
        raise ValueError("clustered variance needs at least two hosts")
    s10 = np.bincount(inv[pos], weights=v10, minlength=I)
    s01 = np.bincount(inv[neg], weights=v01, minlength=I)
    m = np.bincount(inv[pos], minlength=I)
    n = np.bincount(inv[neg], minlength=I)
    a = s10 - m * auc
    b = s01 - n * auc
    f = I / (I - 1)
    var = f * (a @ a) / M**2 + f * (b @ b) / N**2 + 2 * f * (a @ b) / (M * N)
    return float(auc), float(np.sqrt(max(var, 0.0)))


def icc_oneway(values, groups) -> float:
    """One-way ANOVA estimator of the intra-class correlation of ``values`` within ``groups``."""
    values, groups = np.asarray(values, float), np.asarray(groups)
    uniq, inv = np.unique(groups, return_inverse=True)
    k = np.bincount(inv)
    if len(uniq) < 2 or (k < 2).all():
        raise ValueError("ICC needs at least two groups with two or more members")
    means = np.bincount(inv, weights=values) / k
    grand = values.mean()
    n, g = len(values), len(uniq)
    msb = (k * (means - grand) ** 2).sum() / (g - 1)
    msw = ((values - means[inv]) ** 2).sum() / (n - g)
    k0 = (n - (k**2).sum() / n) / (g - 1)
    return float((msb - msw) / (msb + (k0 - 1) * msw))


def design_effect(images_per_host: float, icc: float) -> float:
    """Kish design effect 1 + (k - 1) ICC."""
    return 1.0 + (images_per_host - 1.0) * icc


def simulate_scores(n_hosts: int, per_host: int, auc: float, icc: float, rng, paired: bool = True):
    """Scores of a binormal model (unit variance per class, a share ``icc`` of it from a host random
    effect) whose AUROC over pairs of images from different hosts is ``auc``.

    Paired: every host has ``per_host`` positives and ``per_host`` negatives sharing its host effect.
    Unpaired: half the hosts give positives, the other half negatives.
    """
    d = np.sqrt(2) * norm.ppf(auc)
    host = rng.normal(0, np.sqrt(icc), n_hosts)
    g = np.repeat(np.arange(n_hosts), per_host)
    if paired:
        y = np.concatenate([np.ones(len(g)), np.zeros(len(g))])
        gg = np.concatenate([g, g])
    else:
        y = (g < n_hosts // 2).astype(float)
        gg = g
    s = host[gg] + rng.normal(0, np.sqrt(1 - icc), len(gg)) + d * y
    return y, s, gg


def power(n_hosts: int, per_host: int, auc_true: float, threshold: float, icc: float, *, below: bool,
          paired: bool = True, n_sim: int = 400, seed: int = 0, z: float = 1.959964) -> float:
    """Probability that the 95% CI lies entirely below (``below``) or above ``threshold``."""
    rng = np.random.default_rng(seed)
    hits = 0
    for _ in range(n_sim):
        y, s, g = simulate_scores(n_hosts, per_host, auc_true, icc, rng, paired)
        a, se = auroc_clustered(y, s, g)
        hits += (a + z * se < threshold) if below else (a - z * se > threshold)
    return hits / n_sim


def hosts_needed(curve_hosts, curve_power, target: float = 0.8):
    """Smallest number of hosts in a power curve reaching ``target`` (None if none does)."""
    for h, p in zip(curve_hosts, curve_power):
        if p >= target:
            return int(h)
    return None
