"""Metrics with honest uncertainty: AUROC and host-clustered bootstrap intervals."""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from sklearn.metrics import roc_auc_score


def auroc(y, score) -> float:
    y = np.asarray(y)
    if len(np.unique(y)) < 2:
        raise ValueError("AUROC needs both classes; got only class " + str(np.unique(y)))
    return float(roc_auc_score(y, score))


def weighted_auroc(y, score, weights) -> np.ndarray:
    """AUROC of ``score`` (n,) against labels ``y`` (n,) with row weights ``weights`` (k, n), one AUROC per
    row of weights (ties count one half): the AUROC of a sample holding row i ``weights[r, i]`` times.
    NaN where a weight row leaves one class empty."""
    y = np.asarray(y) == 1
    order = np.argsort(score, kind="stable")
    s, pos = np.asarray(score, float)[order], y[order]
    w = np.atleast_2d(np.asarray(weights, float))[:, order]
    # tie groups are contiguous in sorted order: [start, end) of each row's group
    new = np.r_[True, s[1:] != s[:-1]]
    start = np.flatnonzero(new)
    size = np.diff(np.r_[start, len(s)])
    g_start = np.repeat(start, size)
    g_end = g_start + np.repeat(size, size)
    neg_w = np.where(pos, 0.0, w)
    cs = np.concatenate([np.zeros((w.shape[0], 1)), np.cumsum(neg_w, axis=1)], axis=1)
    below = cs[:, g_start]  # negative weight strictly below each row's tie group
    wins = below + 0.5 * (cs[:, g_end] - below)
    w_pos = np.where(pos, w, 0.0)
    n1, n0 = w_pos.sum(axis=1), neg_w.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where((n1 > 0) & (n0 > 0), (w_pos * wins).sum(axis=1) / (n1 * n0), np.nan)


def cluster_bootstrap_ci(y, score, groups, n_boot: int = 1000, alpha: float = 0.05, seed: int = 0):
    """(AUROC, lo, hi): percentile interval from resampling *groups* (hosts) with replacement.

    Each replicate draws len(hosts) hosts; a host drawn m times contributes its rows m times (computed as
    row weights, :func:`weighted_auroc`, 500 replicates at once); replicates with one class are dropped."""
    y, score, groups = np.asarray(y), np.asarray(score), np.asarray(groups)
    uniq, inv = np.unique(groups, return_inverse=True)
    rng = np.random.default_rng(seed)
    stats = []
    for start in range(0, n_boot, 100):
        picks = [rng.integers(0, len(uniq), len(uniq)) for _ in range(min(100, n_boot - start))]
        counts = np.stack([np.bincount(p, minlength=len(uniq)) for p in picks])
        a = weighted_auroc(y, score, counts[:, inv])
        stats.append(a[np.isfinite(a)])
    lo, hi = np.quantile(np.concatenate(stats), [alpha / 2, 1 - alpha / 2])
    return auroc(y, score), float(lo), float(hi)


# --------------------------------------------------------------------------- seeds x hosts
def fast_auroc(y, scores) -> np.ndarray:
    """Mann-Whitney AUROC (ties count one half) of ``scores`` (n,) or (k, n) against labels ``y`` (n,)."""
    from scipy.stats import rankdata

    y = np.asarray(y)
    s = np.atleast_2d(np.asarray(scores, float))
    pos = y == 1
    n1, n0 = int(pos.sum()), int((~pos).sum())
    if n1 == 0 or n0 == 0:
        raise ValueError("AUROC needs both classes")
    r = rankdata(s, axis=1)
    out = (r[:, pos].sum(axis=1) - n1 * (n1 + 1) / 2) / (n1 * n0)
    return out if np.ndim(scores) == 2 else out[0]


@dataclass
class SeededInterval:
    """An AUROC (or a difference of two) from models trained with several seeds, scored on test hosts.

    ``estimate`` is the mean over seeds; ``host_low``/``host_high`` the percentile interval from
    resampling test hosts (jointly for both sets of a difference); ``ci_low``/``ci_high`` that interval
    widened by the seed standard error in quadrature (the interval for the training procedure's mean);
    ``per_seed`` the value of each seed and ``seed_sd`` their standard deviation (what one run may move).
    """

    estimate: float
    ci_low: float
    ci_high: float
    host_low: float
    host_high: float
    per_seed: list = field(default_factory=list)
    seed_sd: float = 0.0
    level: float = 0.95

    def text(self, digits: int = 3) -> str:
        return format_interval(self.estimate, self.ci_low, self.ci_high, digits)


def format_interval(est: float, lo: float, hi: float, digits: int = 3) -> str:
    """'0.904 (0.891–0.918)': a value with its interval; when a bound is negative, '-0.009 to 0.063'
    (a dash between negative numbers reads as a minus)."""
    f = f"{{:.{digits}f}}"
    sep = " to " if min(lo, hi) < 0 else "–"
    return f"{f.format(est)} ({f.format(lo)}{sep}{f.format(hi)})"


def _host_index(groups, hosts):
    pos = {h: i for i, h in enumerate(hosts)}
    return np.array([pos[h] for h in np.asarray(groups)])


def host_bootstrap_aurocs(sets, *, n_boot: int = 1000, seed: int = 0) -> tuple[list, np.ndarray, np.ndarray]:
    """The AUROCs behind a joint host bootstrap, computed once for every statistic and level read from them.

    ``sets`` is a list of (labels, scores, hosts) with scores (n_seeds, n) or (n,). One draw of hosts (with
    replacement, from the union of all sets' hosts) is applied to every set, so what the sets share cancels; a
    host drawn m times weighs its rows m times (``weighted_auroc``: the AUROC of the resampled sample, exactly).
    Returns (full, boot, keep): ``full`` a list of per-seed AUROC arrays (n_seeds,), one per set; ``boot`` the
    replicate AUROCs (n_sets, n_boot, n_seeds); ``keep`` the replicates in which every set holds both classes."""
    sets = [(np.asarray(y), np.atleast_2d(np.asarray(S, float)), np.asarray(g)) for y, S, g in sets]
    if len({S.shape[0] for _, S, _ in sets}) != 1:
        raise ValueError("every set needs scores from the same seeds")
    hosts = np.unique(np.concatenate([g for _, _, g in sets]))
    hidx = [_host_index(g, hosts) for _, _, g in sets]
    full = [fast_auroc(y, S) for y, S, _ in sets]
    rng = np.random.default_rng(seed)
    counts = np.stack([np.bincount(rng.integers(0, len(hosts), len(hosts)), minlength=len(hosts))
                       for _ in range(n_boot)]) if n_boot else np.zeros((0, len(hosts)), int)
    boot = np.empty((len(sets), n_boot, sets[0][1].shape[0]))
    for j, ((y, S, _), h) in enumerate(zip(sets, hidx)):
        w = counts[:, h]
        for k in range(S.shape[0]):
            boot[j, :, k] = weighted_auroc(y, S[k], w)
    keep = np.isfinite(boot).all(axis=(0, 2))
    return full, boot, keep


def _seeded_interval(full: np.ndarray, boot: np.ndarray, level: float, bounds) -> SeededInterval:
    from scipy.stats import norm

    if not len(boot):
        raise ValueError("no bootstrap draw held both classes; too few hosts")
    a = (1 - level) / 2
    est = float(full.mean())
    hlo, hhi = (float(v) for v in np.quantile(boot, [a, 1 - a]))
    k = len(full)
    sd = float(full.std(ddof=1)) if k > 1 else 0.0
    se_seed = norm.ppf(1 - a) * sd / np.sqrt(k)
    lo = est - np.hypot(max(est - hlo, 0.0), se_seed)
    hi = est + np.hypot(max(hhi - est, 0.0), se_seed)
    if bounds is not None:  # the seed term is normal and can reach past the statistic's range (AUROC > 1)
        lo, hi = max(lo, bounds[0]), min(hi, bounds[1])
    return SeededInterval(est, float(lo), float(hi), hlo, hhi, [float(v) for v in full], sd, level)


def joint_host_intervals(sets, stats: dict, *, n_boot: int = 1000, levels=(0.95,), seed: int = 0) -> dict:
    """Several statistics of the same AUROCs at several levels from one joint host bootstrap.

    ``stats`` maps a name to (fn, bounds): ``fn`` maps the list of AUROC arrays (one per set, each of shape
    (..., n_seeds)) to the per-seed statistic, elementwise (e.g. ``lambda a: a[1] - a[0]``); ``bounds`` is the
    statistic's range ([0, 1] for an AUROC, [-1, 1] for a difference) or None. Each statistic is averaged over
    seeds; its percentile interval over host draws is widened by the seed standard error (sd / sqrt(n_seeds)) in
    quadrature, then clipped to ``bounds``. Returns {(name, level): SeededInterval}; replicates in which a set
    lacks a class or the statistic is not finite are dropped (per statistic)."""
    full, boot, keep = host_bootstrap_aurocs(sets, n_boot=n_boot, seed=seed)
    if not keep.any():
        raise ValueError("no bootstrap draw held both classes; too few hosts")
    out = {}
    for name, (fn, bounds) in stats.items():
        with np.errstate(invalid="ignore", divide="ignore"):
            f = np.asarray(fn(full), float)
            b = np.asarray(fn(list(boot[:, keep])), float)
        b = b.mean(axis=-1) if b.ndim == 2 else b
        b = b[np.isfinite(b)]
        for level in levels:  # a statistic undefined in every draw (e.g. no skill to share out) is NaN, not an error
            out[(name, level)] = (_seeded_interval(f, b, level, bounds) if len(b) else
                                  SeededInterval(float(np.mean(f)), np.nan, np.nan, np.nan, np.nan,
                                                 [float(v) for v in f], np.nan, level))
    return out


def joint_host_bootstrap(sets, fn, *, n_boot: int = 1000, level: float = 0.95, seed: int = 0,
                         bounds: tuple[float, float] | None = None) -> SeededInterval:
    """A statistic of several AUROCs with a joint host bootstrap and the seed spread folded in.

    ``sets`` is a list of (labels, scores, hosts) with scores (n_seeds, n) or (n,); ``fn`` maps the list
    of per-seed AUROC arrays (one per set) to a per-seed statistic (e.g. ``lambda a: a[1] - a[0]``),
    elementwise. One bootstrap draw of hosts (with replacement, from the union of all sets' hosts) is applied
    to every set, so what the sets share cancels. The statistic is averaged over seeds; its percentile interval
    over host draws is widened by the seed standard error (sd / sqrt(n_seeds)) in quadrature, then clipped
    to ``bounds`` (the statistic's range: [0, 1] for an AUROC, [-1, 1] for a difference of two). Several
    statistics or levels of the same sets: ``joint_host_intervals`` (one bootstrap for all).
    """
    return joint_host_intervals(sets, {"s": (fn, bounds)}, n_boot=n_boot, levels=(level,), seed=seed)[("s", level)]


def seeded_difference(y_a, S_a, g_a, y_b, S_b, g_b, *, n_boot: int = 1000, level: float = 0.95,
                      seed: int = 0) -> SeededInterval:
    """AUROC(b) - AUROC(a), mean over seeds (seed k of a against seed k of b), joint host bootstrap."""
    return joint_host_bootstrap([(y_a, S_a, g_a), (y_b, S_b, g_b)], lambda a: a[1] - a[0], n_boot=n_boot,
                                level=level, seed=seed, bounds=(-1.0, 1.0))


def seeded_differences(y_a, S_a, g_a, y_b, S_b, g_b, *, n_boot: int = 1000, levels=(0.95, 0.90),
                       seed: int = 0) -> dict:
    """``seeded_difference`` at several levels from one bootstrap: {level: SeededInterval}."""
    r = joint_host_intervals([(y_a, S_a, g_a), (y_b, S_b, g_b)], {"d": (lambda a: a[1] - a[0], (-1.0, 1.0))},
                             n_boot=n_boot, levels=levels, seed=seed)
    return {lv: r[("d", lv)] for lv in levels}


def seeded_auroc(y, S, groups, *, n_boot: int = 1000, level: float = 0.95, seed: int = 0) -> SeededInterval:
    """Mean-over-seeds AUROC with a host-bootstrap interval widened by the seed spread."""
    return joint_host_bootstrap([(y, S, groups)], lambda a: a[0], n_boot=n_boot, level=level, seed=seed,
                                bounds=(0.0, 1.0))


def difference_verdict(lo: float, hi: float, a: str = "a", b: str = "b") -> str:
    """Read a CI of (b - a): 'b higher', 'b lower' or 'undecided (the interval contains 0)'."""
    if lo > 0:
        return f"{b} higher than {a}"
    if hi < 0:
        return f"{b} lower than {a}"
    return "undecided (the interval contains 0)"


def monitor_verdict(lo: float, hi: float, threshold: float, *, bad_above: bool = True) -> str:
    """``fires`` if the interval lies wholly on the bad side of ``threshold`` (above it when ``bad_above``),
    ``quiet`` if wholly on the good side, else ``undecidable``."""
    if not (np.isfinite(lo) and np.isfinite(hi)):
        return "undecidable"
    bad_lo, bad_hi = (lo, hi) if bad_above else (-hi, -lo)
    t = threshold if bad_above else -threshold
    if bad_lo > t:
        return "fires"
    if bad_hi < t:
        return "quiet"
    return "undecidable"


def equivalence_verdict(lo90: float, hi90: float, margin: float) -> str:
    """Two one-sided tests at level 5% each, read from the 90% interval of a difference d:
    'equivalent' (|d| < margin shown: the whole interval inside (-margin, margin)), 'not equivalent'
    (the whole interval outside it) or 'undecidable'."""
    if -margin < lo90 and hi90 < margin:
        return "equivalent"
    if lo90 >= margin or hi90 <= -margin:
        return "not equivalent"
    return "undecidable"


def within_across_auroc(y, score, groups) -> tuple[float, float]:
    """(within-host AUROC, across-host AUROC): the AUROC restricted to positive-negative pairs from the
    same host, and to pairs from different hosts. A paired comparison measures the first; finding lenses
    among other galaxies needs the second. Ties count one half. NaN where no such pair exists."""
    y, s, g = np.asarray(y), np.asarray(score, float), np.asarray(groups)
    M, N = int((y == 1).sum()), int((y == 0).sum())
    total = fast_auroc(y, s) * M * N
    wins_w, pairs_w = 0.0, 0
    for h in np.unique(g):
        m = g == h
        p, n = s[m & (y == 1)], s[m & (y == 0)]
        if len(p) and len(n):
            d = p[:, None] - n[None, :]
            wins_w += (d > 0).sum() + 0.5 * (d == 0).sum()
            pairs_w += d.size
    within = wins_w / pairs_w if pairs_w else float("nan")
    across = (total - wins_w) / (M * N - pairs_w) if M * N > pairs_w else float("nan")
    return float(within), float(across)


def bin_levels(y, bins, all_label: str = "all lenses") -> list[tuple[str, np.ndarray]]:
    """The row selections of a per-bin reading: (``all_label``, every row), then for each category of ``bins`` (a
    Categorical over rows; the negatives' entries are ignored) that bin's lenses with all negatives, so each bin's
    lenses are read against the same non-lenses."""
    import pandas as pd

    y, bins = np.asarray(y), pd.Categorical(bins)
    return [(all_label, np.ones(len(y), bool))] + [(str(c), np.asarray(bins == c) | (y == 0)) for c in bins.categories]


# --------------------------------------------------------------------------- metrics at a working point
def host_draws(groups, n_boot: int, seed: int):
    """Row indices of ``n_boot`` host-bootstrap samples: each draw takes len(hosts) hosts with replacement and all
    rows of each drawn host (a host drawn m times contributes its rows m times)."""
    hosts, inv = np.unique(np.asarray(groups), return_inverse=True)
    rng = np.random.default_rng(seed)
    members = [np.flatnonzero(inv == h) for h in range(len(hosts))]
    for _ in range(n_boot):
        pick = rng.integers(0, len(hosts), len(hosts))
        yield np.concatenate([members[h] for h in pick])


def percentile_interval(full: np.ndarray, boot: list, level: float = 0.95) -> tuple[float, float, float]:
    """(mean of ``full``, percentile interval of the bootstrap values ``boot`` at ``level``); NaN bounds without draws."""
    a = (1 - level) / 2
    if not boot:
        return float(full.mean()), float("nan"), float("nan")
    lo, hi = np.quantile(boot, [a, 1 - a])
    return float(full.mean()), float(lo), float(hi)


def resolvable_fpr(n_negatives: int, fpr: float, min_false: int = 5) -> bool:
    """A false-positive rate is measurable when at least ``min_false`` distinct negatives are expected above the
    threshold (n x fpr >= min_false)."""
    return n_negatives * fpr >= min_false


def tpr_point(y, S, fpr: float, sub) -> float:
    """TPR of the positives in ``sub`` at the threshold giving ``fpr`` on all negatives, per training seed
    (``S`` (n_seeds, n)), averaged over seeds; NaN without negatives or counted positives."""
    neg, pos = y == 0, (y == 1) & sub
    if not neg.any() or not pos.any():
        return np.nan
    thr = np.quantile(S[:, neg], 1 - fpr, axis=1, method="higher")
    return float(np.mean((S[:, pos] > thr[:, None]).mean(axis=1)))


def tpr_at_fpr(y, scores, groups, fpr: float, *, n_boot: int = 200, seed: int = 0, level: float = 0.95,
               subset=None) -> tuple[float, float, float]:
    """TPR at the threshold that gives ``fpr`` on the negatives (per training seed; ``scores`` (n_seeds, n)),
    averaged over seeds, with a host-bootstrap interval (hosts resampled, the threshold re-chosen in each draw).
    ``subset`` (bool mask) restricts the positives counted (e.g. one theta_E bin); the threshold always comes
    from all negatives."""
    y = np.asarray(y)
    S = np.atleast_2d(np.asarray(scores, float))
    sub = np.ones(len(y), bool) if subset is None else np.asarray(subset, bool)

    def stat(idx):
        return tpr_point(y[idx], S[:, idx], fpr, sub[idx])

    full = np.array([stat(np.arange(len(y)))])
    boot = [v for v in (stat(i) for i in host_draws(groups, n_boot, seed)) if np.isfinite(v)]
    return percentile_interval(full, boot, level)


def tpr_change(y, S_a, S_b, groups, fpr: float, *, sub_a=None, sub_b=None, n_boot: int = 300, seed: int = 0,
               level: float = 0.95, relative: bool = False) -> tuple[float, float, float]:
    """TPR(b) - TPR(a) at the threshold giving ``fpr`` on each one's negatives, on one test table (``y``,
    ``groups``) scored twice (``S_a``, ``S_b``: (n_seeds, n)) or with two subsets of positives (``sub_a``,
    ``sub_b``); seeds averaged; one host bootstrap for both (each threshold re-chosen in each draw), so what they
    share cancels. The two score sets may come from two models on one test set, or from one model on two test sets
    that share rows and hosts (other arcs injected into the same hosts).

    ``relative``: TPR(b) / TPR(a) - 1, the share of a's completeness lost (-1: every lens a finds is lost).
    Where a's completeness is low (faint lenses at a low FPR), an absolute loss cannot exceed it, so a
    threshold on the absolute change could never fire; the relative change can."""
    y = np.asarray(y)
    S_a, S_b = np.atleast_2d(np.asarray(S_a, float)), np.atleast_2d(np.asarray(S_b, float))
    sa = np.ones(len(y), bool) if sub_a is None else np.asarray(sub_a, bool)
    sb = np.ones(len(y), bool) if sub_b is None else np.asarray(sub_b, bool)

    def stat(i):
        a, b = tpr_point(y[i], S_a[:, i], fpr, sa[i]), tpr_point(y[i], S_b[:, i], fpr, sb[i])
        if relative:
            return b / a - 1 if a > 0 else np.nan
        return b - a

    full = np.array([stat(np.arange(len(y)))])
    return percentile_interval(full, [v for v in (stat(i) for i in host_draws(groups, n_boot, seed)) if np.isfinite(v)],
                               level)


def fpr_at_tpr(y, scores, neg_scores, neg_groups, tpr: float = 0.5, *, n_boot: int = 200, seed: int = 0,
               level: float = 0.95) -> tuple[float, float, float]:
    """The share of the negatives ``neg_scores`` (n_seeds, m) above the threshold that keeps ``tpr`` of the
    positives of (``y``, ``scores``), averaged over seeds; the interval resamples the negatives' hosts (the
    threshold is held at its full-sample value)."""
    y = np.asarray(y)
    S = np.atleast_2d(np.asarray(scores, float))
    N = np.atleast_2d(np.asarray(neg_scores, float))
    thr = np.quantile(S[:, y == 1], 1 - tpr, axis=1)

    def stat(idx):
        return float(np.mean((N[:, idx] > thr[:, None]).mean(axis=1)))

    full = np.array([stat(np.arange(N.shape[1]))])
    boot = [stat(i) for i in host_draws(neg_groups, n_boot, seed)]
    return percentile_interval(full, boot, level)
