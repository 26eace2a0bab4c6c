"""What can go wrong (Q6): each failure mode measured, with the monitor that detects it.

Every function returns a number with its interval and a monitor verdict against a stated threshold:
``fires`` (the whole interval beyond the threshold: stop and fix), ``quiet`` (the whole interval on the safe
side) or ``undecidable`` (the interval straddles it: more data). The gate-artifact demonstrations show what a
naive gate reports and what lensnb reports instead.

Units: AUROC and TPR are fractions; thresholds are stated where they are used.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from . import gates
from .metrics import auroc, fast_auroc, host_draws, monitor_verdict, percentile_interval, tpr_point  # noqa: F401


def thresholds_in(text: str) -> list[float]:
    """The numbers of a register row's threshold text ("> 0.20", "outside (0.35, 0.65)", "< −0.25 (relative)")."""
    import re

    return [float(x.replace("−", "-")) for x in re.findall(r"[−-]?\d+(?:\.\d+)?", str(text))]


def deciding_factor(value: float, lo: float, hi: float, thresholds) -> float:
    """How many times this run's test hosts an undecidable measure needs before its interval clears the nearest
    threshold, if the estimate stays where it is and the interval shrinks as 1/sqrt(hosts): (w / d)^2, with d the
    distance from the estimate to the threshold and w the interval's half on that side. 1 or less: decided now;
    inf: the estimate sits on the threshold; NaN: no interval or no threshold."""
    ts = [t for t in np.atleast_1d(np.asarray(thresholds, float)) if np.isfinite(t)]
    if not ts or not all(np.isfinite([value, lo, hi])):
        return float("nan")
    t = min(ts, key=lambda x: abs(x - value))
    d = abs(value - t)
    if d == 0:
        return float("inf")
    w = (value - lo) if value > t else (hi - value)
    return float((w / d) ** 2)


def to_decide(verdict: str, value: float, lo: float, hi: float, threshold_text: str) -> str:
    """The register's 'to decide' cell: empty for a decided row, else the test-host factor of ``deciding_factor``."""
    if verdict != "undecidable":
        return ""
    f = deciding_factor(value, lo, hi, thresholds_in(threshold_text))
    if not np.isfinite(f):
        return "not by more hosts (the estimate sits on the threshold)" if f == np.inf else "—"
    return f"≈ {max(f, 1.0):.1f}× this run's test hosts"


def _interval(full: float, boot, level: float = 0.95) -> tuple[float, float, float]:
    """``metrics.percentile_interval`` for a scalar estimate, with non-finite bootstrap draws dropped."""
    return percentile_interval(np.array([full]), [b for b in boot if np.isfinite(b)], level)


def tpr_change(y, S_a, S_b, groups, fpr: float, *, sub_a=None, sub_b=None, n_boot: int = 300, seed: int = 0,
               level: float = 0.95, relative: bool = False) -> tuple[float, float, float]:
    """TPR(b) - TPR(a) at the threshold giving ``fpr`` on each one's negatives, on one test table (``y``,
    ``groups``) scored twice (``S_a``, ``S_b``: (n_seeds, n)) or with two subsets of positives (``sub_a``,
    ``sub_b``); seeds averaged; one host bootstrap for both, so what they share cancels.

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

    full = stat(np.arange(len(y)))
    return _interval(full, (stat(i) for i in host_draws(groups, n_boot, seed)), level)


def auroc_change(y, S_a, S_b, groups, *, n_boot: int = 300, seed: int = 0) -> tuple[float, float, float]:
    """AUROC(b) - AUROC(a) on one test table scored twice (seeds averaged, joint host bootstrap)."""
    from .metrics import seeded_difference

    d = seeded_difference(y, S_a, groups, y, S_b, groups, n_boot=n_boot, seed=seed)
    return d.estimate, d.ci_low, d.ci_high


def memorisation_gap(y_seen, S_seen, g_seen, y_unseen, S_unseen, g_unseen, *, n_boot: int = 300,
                     seed: int = 0) -> tuple[float, float, float]:
    """AUROC on new injections into the training hosts minus AUROC on unseen hosts (seeds averaged; the two
    sets' hosts are resampled in one bootstrap)."""
    from .metrics import seeded_difference

    d = seeded_difference(y_unseen, S_unseen, g_unseen, y_seen, S_seen, g_seen, n_boot=n_boot, seed=seed)
    return d.estimate, d.ci_low, d.ci_high


def memorisation_table(memo: pd.DataFrame, margin: float) -> pd.DataFrame:
    """The memorisation rows of ``alternatives.run`` (``experiment.memorisation_by_bin``: seen- minus unseen-host
    AUROC per lens bin) as a readable table: lenses, positives on each side, the gap with its 95% interval and
    the monitor's reading against ``margin`` (``monitor_verdict``: fires / quiet / undecidable)."""
    from .metrics import format_interval

    if not len(memo):
        return pd.DataFrame()
    return pd.DataFrame({
        "lenses": memo["lenses"],
        "lenses tested (seen / unseen hosts)": [f"{a} / {b}" for a, b in
                                                zip(memo["positives (seen hosts)"], memo["positives (unseen hosts)"])],
        "seen − unseen AUROC (95% CI)": [format_interval(g, lo, hi) if np.isfinite(g) else "— (too few lenses)"
                                         for g, lo, hi in zip(memo["gap"], memo["ci_low"], memo["ci_high"])],
        f"reading (fires above {margin:g})": [monitor_verdict(lo, hi, margin) if np.isfinite(lo) else "—"
                                              for lo, hi in zip(memo["ci_low"], memo["ci_high"])]})


# --------------------------------------------------------------------------- gate artifacts, on purpose
def one_class_slice(y_manifest_order, n_first: int) -> dict:
    """A gate computed on the first ``n_first`` rows of a manifest written positives-first holds one class.
    Returns what a naive rank statistic reports (0.5 by the tie convention of ``metrics.auroc``) and lensnb's
    refusal message (``gates.check_gate_input``)."""
    y = np.asarray(y_manifest_order)[:n_first]
    naive = auroc(y, np.zeros(len(y))) if len(np.unique(y)) == 2 else 0.5
    try:
        gates.check_gate_input(y, np.arange(len(y)))
        refusal = ""
    except ValueError as exc:
        refusal = str(exc)
    return {"classes in the slice": int(len(np.unique(y))), "naive AUROC": float(naive), "lensnb": refusal}


def in_sample_optimism(X, y, groups, *, n_boot: int = 300, seed: int = 0) -> dict:
    """A logistic-regression gate fitted and scored on the same rows against the same gate cross-validated
    with host-grouped folds: the AUROCs and their difference (the optimism) with a host-bootstrap interval of
    the difference (scores held fixed)."""
    X, y = np.asarray(X, float), np.asarray(y)
    clf = gates.classifier("lr", 1.0, seed)
    s_in = clf.fit(X, y).decision_function(X)
    s_cv = gates.grouped_cv_scores(X, y, groups, seed=seed)
    return _two_scores(y, s_in, s_cv, groups, n_boot, seed, ("fitted and scored on the same rows", "host-grouped CV"))


def ungrouped_cv_optimism(X, y, groups, *, n_folds: int = 5, n_boot: int = 300, seed: int = 0) -> dict:
    """The same gate cross-validated with folds that ignore hosts (rows of one host on both sides) against
    host-grouped folds: their AUROCs and the difference (the optimism)."""
    from sklearn.model_selection import StratifiedKFold

    X, y = np.asarray(X, float), np.asarray(y)
    s_un = np.empty(len(y))
    for fit, test in StratifiedKFold(n_folds, shuffle=True, random_state=seed).split(X, y):
        clf = gates.classifier("lr", 1.0, seed)
        clf.fit(X[fit], y[fit])
        s_un[test] = clf.decision_function(X[test])
    s_cv = gates.grouped_cv_scores(X, y, groups, n_folds=n_folds, seed=seed)
    return _two_scores(y, s_un, s_cv, groups, n_boot, seed, ("folds ignoring hosts", "host-grouped CV"))


def _two_scores(y, s_naive, s_right, groups, n_boot, seed, names):
    a_naive, a_right = auroc(y, s_naive), auroc(y, s_right)

    def stat(i):
        yi = y[i]
        if len(np.unique(yi)) < 2:
            return np.nan
        return float(fast_auroc(yi, s_naive[i][None])[0] - fast_auroc(yi, s_right[i][None])[0])

    d, lo, hi = _interval(a_naive - a_right, (stat(i) for i in host_draws(groups, n_boot, seed)))
    return {names[0]: a_naive, names[1]: a_right, "optimism": d, "ci_low": lo, "ci_high": hi}


def null_labels_by_host(groups, seed: int) -> np.ndarray:
    """Labels with no signal: each host gets one class at random (half the hosts each), as an unpaired
    design's pools would, but drawn without regard to anything in the images."""
    hosts, inv = np.unique(np.asarray(groups), return_inverse=True)
    rng = np.random.default_rng(seed)
    lab = np.zeros(len(hosts), int)
    lab[rng.permutation(len(hosts))[: len(hosts) // 2]] = 1
    return lab[inv]


def imbalanced_pools(props: pd.DataFrame, column: str, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """A planted confounder: split hosts into a positive pool (the worse half by ``column``, e.g. PSF FWHM)
    and a negative pool (the better half). Returns (positive hosts, negative hosts)."""
    order = props.sort_values(column, kind="stable").index.to_numpy()
    half = len(order) // 2
    return order[half:], order[:half]


def register_row(risk: str, mechanism: str, measure: str, value, lo, hi, monitor: str, threshold: str, verdict: str,
                 action: str) -> dict:
    """One row of the risk register."""
    return {"risk": risk, "mechanism": mechanism, "measured": measure, "value": value, "ci_low": lo, "ci_high": hi,
            "monitor": monitor, "threshold": threshold, "verdict": verdict, "if it fires": action}
