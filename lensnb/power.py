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


def _placements(y, score):
    """AUROC and the placement values of each positive (share of negatives below it) and negative
    (share of positives above it); ties count one half."""
    y, score = np.asarray(y), np.asarray(score, float)
    pos, neg = y == 1, y == 0
    M, N = int(pos.sum()), int(neg.sum())
    if M == 0 or N == 0:
        raise ValueError("AUROC needs both classes")
    r_all = rankdata(score)
    auc = (r_all[pos].sum() - M * (M + 1) / 2) / (M * N)
    v10 = (r_all[pos] - rankdata(score[pos])) / N
    v01 = 1.0 - (r_all[neg] - rankdata(score[neg])) / M
    return auc, pos, neg, M, N, v10, v01


def host_influence(y, score, groups, hosts) -> tuple[float, np.ndarray]:
    """(AUROC, per-host influence u_h) with Var(AUROC) = I/(I-1) * sum_h u_h^2 (Obuchowski 1997);
    ``hosts`` fixes the order (hosts absent from ``groups`` get u = 0)."""
    auc, pos, neg, M, N, v10, v01 = _placements(y, score)
    idx = {h: i for i, h in enumerate(hosts)}
    inv = np.array([idx[h] for h in np.asarray(groups)])
    I = len(hosts)
    a = np.bincount(inv[pos], weights=v10, minlength=I) - np.bincount(inv[pos], minlength=I) * auc
    b = np.bincount(inv[neg], weights=v01, minlength=I) - np.bincount(inv[neg], minlength=I) * auc
    return float(auc), a / M + b / N


def auroc_clustered(y, score, groups) -> tuple[float, float]:
    """(AUROC, its standard error) with hosts as clusters (Obuchowski 1997, placement values)."""
    hosts = np.unique(np.asarray(groups))
    if len(hosts) < 2:
        raise ValueError("clustered variance needs at least two hosts")
    auc, u = host_influence(y, score, groups, hosts)
    var = len(hosts) / (len(hosts) - 1) * (u @ u)
    return auc, float(np.sqrt(max(var, 0.0)))


def auroc_difference_clustered(y_a, s_a, g_a, y_b, s_b, g_b) -> tuple[float, float]:
    """(AUROC(b) - AUROC(a), its standard error) when both sets are scored on (partly) the same hosts:
    the per-host influences of the two estimates are differenced before squaring, so the covariance
    from shared hosts (and shared images) is kept. Independent host sets give the hypot of the SEs."""
    hosts = np.unique(np.concatenate([np.asarray(g_a), np.asarray(g_b)]))
    if len(hosts) < 2:
        raise ValueError("clustered variance needs at least two hosts")
    aa, ua = host_influence(y_a, s_a, g_a, hosts)
    ab, ub = host_influence(y_b, s_b, g_b, hosts)
    d = ub - ua
    return ab - aa, float(np.sqrt(len(hosts) / (len(hosts) - 1) * (d @ d)))


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


def gap_power(host_stamp_scores: dict, host_ctrl_scores: dict, n_test_hosts: int, per_host: float, gap: float, *,
              n_sim: int = 300, seed: int = 0, joint: bool = True) -> dict:
    """Power to decide the request's criterion |E3 - E2| < ``gap`` with ``n_test_hosts`` test hosts.

    ``host_*_scores`` map each held-out host to the scores of its stamps and of its control (one per row,
    the rows in a fixed order). A test set is drawn by resampling hosts with replacement; its paired form
    takes ``per_host`` rows of every host (stamp and control; a fractional value alternates between its
    floor and ceiling), its unpaired form sends half of the hosts to P (2 x per_host stamps each) and half
    to N (2 x per_host controls each), so both forms have the same number of images, as in the request.

    ``joint=True`` (what the training chapter does): both forms come from the *same* hosts, the SE of
    E3 - E2 keeps their covariance (``auroc_difference_clustered``), and the criterion is decided by
    two one-sided tests at 5% each (the 90% interval inside or outside +-gap). ``joint=False`` is the
    former calculation: the two forms from independent host draws, the SEs combined with ``hypot`` and a
    95% interval. Returns the power, the mean interval width and the mean gap.
    """
    rng = np.random.default_rng(seed)
    hosts = np.array(sorted(host_stamp_scores))
    z = norm.ppf(0.95) if joint else norm.ppf(0.975)
    decided, widths, gaps = [], [], []
    for _ in range(n_sim):
        drawn = rng.choice(hosts, n_test_hosts)
        other = drawn if joint else rng.choice(hosts, n_test_hosts)
        ks = [int(np.floor(per_host)) + (i % 2) * int(per_host != int(per_host)) for i in range(n_test_hosts)]
        y3, s3, g3 = [], [], []
        for i, h in enumerate(drawn):
            st, ct = host_stamp_scores[h][: ks[i]], host_ctrl_scores[h][: ks[i]]
            y3 += [1] * len(st) + [0] * len(ct)
            s3 += list(st) + list(ct)
            g3 += [i] * (len(st) + len(ct))
        y2, s2, g2 = [], [], []
        for i, h in enumerate(other):
            k2 = int(round(2 * per_host))
            if i < n_test_hosts // 2:
                s = host_stamp_scores[h][:k2]
                y2 += [1] * len(s)
            else:
                s = host_ctrl_scores[h][:k2]
                y2 += [0] * len(s)
            s2 += list(s)
            g2 += [i if joint else n_test_hosts + i] * len(s)
        if joint:
            d, se = auroc_difference_clustered(y2, s2, g2, y3, s3, g3)
        else:
            a3, se3 = auroc_clustered(y3, s3, g3)
            a2, se2 = auroc_clustered(y2, s2, g2)
            d, se = a3 - a2, float(np.hypot(se3, se2))
        lo, hi = d - z * se, d + z * se
        decided.append((-gap < lo and hi < gap) or lo >= gap or hi <= -gap)
        widths.append(hi - lo)
        gaps.append(d)
    return {"power": float(np.mean(decided)), "width": float(np.mean(widths)), "mean_gap": float(np.mean(gaps))}
