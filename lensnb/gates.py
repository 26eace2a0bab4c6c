"""Shortcut gates. A gate checks its input, cross-validates with folds grouped by host, and returns
the statistic with a host-clustered bootstrap CI and a verdict.

Two kinds of data-level gate are kept apart:

* **shortcut gates** (core LR, nonlinear core, host metadata) look where no arc information should be
  needed; their verdict is two-sided, because an AUROC far *below* 0.5 separates the classes as well
  as one far above it: *shortcut* when the interval lies entirely outside (1 - t, t), *no shortcut*
  when it lies entirely inside, *undecidable* otherwise (t = the threshold, the request's 0.65);
* **arc-signal gates** (annulus, radial profile, flux & colour) see the arc itself and are expected to
  be high: they measure how visible the arc is, not a shortcut (*arc detected* / *arc not detected*).

The null-injection battery (``null_pair_gate``) is judged against chance (0.5), not against t.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.model_selection import GroupKFold
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from threadpoolctl import threadpool_limits

from .config import CORE_SLICE, RADIUS_PX as _R, STAMP_SIZE
from .metrics import bin_levels, cluster_bootstrap_ci


@dataclass
class GateResult:
    name: str
    statistic: float
    ci_low: float
    ci_high: float
    threshold: float
    verdict: str  # shortcut gates: "shortcut" / "no shortcut" / "undecidable"; arc-signal gates: see ARC_SIGNAL
    n_rows: int
    n_hosts: int
    kind: str = "shortcut"  # "shortcut", "arc signal" or "null"


THRESHOLD = 0.65  # the request's E4 criterion (core LR AUROC < 0.65): every shortcut gate's two-sided threshold


def verdict(lo: float, hi: float, threshold: float) -> str:
    """Two-sided verdict of an AUROC interval against a threshold t > 0.5: 'shortcut' if the whole
    interval lies at or beyond t or at or below 1 - t (a score that ranks the classes the wrong way
    round separates them as well), 'no shortcut' if it lies strictly inside (1 - t, t), else
    'undecidable'."""
    if threshold <= 0.5:
        raise ValueError(f"a gate threshold must exceed 0.5, got {threshold}")
    if lo >= threshold or hi <= 1 - threshold:
        return "shortcut"
    if 1 - threshold < lo and hi < threshold:
        return "no shortcut"
    return "undecidable"


INVERTED = "below chance (inverted)"
CV_ARTIFACT = "below chance, within the permutation null"


def permuted_labels(y, groups, rng) -> np.ndarray:
    """Labels permuted under the null of no signal, respecting the design: where every host holds one
    class (unpaired pools) the host -> class assignment is shuffled; otherwise labels are shuffled within
    each host (paired)."""
    y, groups = np.asarray(y), np.asarray(groups)
    hosts, inv = np.unique(groups, return_inverse=True)
    one_class = all(len(np.unique(y[inv == i])) == 1 for i in range(len(hosts)))
    if one_class:
        lab = np.array([y[inv == i][0] for i in range(len(hosts))])
        return rng.permutation(lab)[inv]
    out = y.copy()
    for i in range(len(hosts)):
        m = np.flatnonzero(inv == i)
        out[m] = rng.permutation(y[m])
    return out


def cv_null(X, y, groups, *, model: str = "lr", n_perm: int = 19, seed: int = 0, fold_groups=None) -> np.ndarray:
    """AUROCs of the same cross-validated gate on ``n_perm`` label permutations (``permuted_labels``):
    the gate's own null distribution, which includes the bias of cross-validation that holds out whole
    hosts (with few hosts, null AUROCs scatter below 0.5, not around it)."""
    from .metrics import auroc

    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n_perm):
        yp = permuted_labels(y, groups, rng)
        out.append(auroc(yp, grouped_cv_scores(X, yp, groups, model=model, seed=seed, fold_groups=fold_groups)))
    return np.array(out)


def refine_inverted(v: str, auc: float, null) -> str:
    """A 'shortcut' verdict from an interval below 1 - t is kept (as ``INVERTED``) only if the AUROC is
    also below every permuted-label AUROC of the gate; otherwise it is ``CV_ARTIFACT``."""
    if v != "shortcut" or auc >= 0.5:
        return v
    return INVERTED if auc < np.min(null) else CV_ARTIFACT


def arc_verdict(lo: float, hi: float, threshold: float) -> str:
    """Verdict of an arc-signal gate (expected high): 'arc detected' / 'arc not detected' / 'undecidable'."""
    v = verdict(lo, hi, threshold)
    return {"shortcut": "arc detected", "no shortcut": "arc not detected"}.get(v, v)


def threshold_verdict(lo: float, hi: float, threshold: float, above: str = "pass", below: str = "fail") -> str:
    """One-sided criterion 'value > threshold': ``above`` if the whole interval is above, ``below`` if it
    is at or below, else 'undecidable'."""
    if lo > threshold:
        return above
    if hi <= threshold:
        return below
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


#: columns above which a Newton step forms its Hessian in float32. The step only sets the search direction: the
#: gradient, the line search and the stopping test stay float64, so the fit reaches the same optimum (scores within
#: 1e-7 of the float64 Hessian's on the annulus gate, in as many steps).
F32_HESSIAN_COLUMNS = 1000


class NewtonLogistic(ClassifierMixin, BaseEstimator):
    """L2-regularised logistic regression solved to convergence by Newton's method (float64).

    The objective is scikit-learn's ``LogisticRegression(C=C)`` (penalty l2, intercept not penalised):
    1/2 |w|^2 + C sum_i logloss(y_i, x_i w + b). With a few hundred features each Newton step is one
    (d+1)^2 Cholesky solve, so a fit takes ~10 steps where lbfgs took thousands of iterations on the
    strongly correlated core pixels (a 4,800 x 300 fit: tens of milliseconds against seconds); it
    converges to the optimum lbfgs approaches (``tests/test_gates.py`` compares them).
    """

    def __init__(self, C: float = 1.0, tol: float = 1e-9, max_iter: int = 100):
        self.C, self.tol, self.max_iter = C, tol, max_iter

    def _objective(self, Xb, t, wb):
        z = Xb @ wb
        return 0.5 * wb[:-1] @ wb[:-1] + self.C * np.sum(np.logaddexp(0.0, z) - t * z)

    def fit(self, X, y):
        from scipy.special import expit

        X = np.asarray(X, np.float64)
        classes = np.unique(y)
        if len(classes) != 2:
            raise ValueError(f"NewtonLogistic needs two classes, got {classes}")
        t = (np.asarray(y) == classes[1]).astype(np.float64)
        Xb = np.hstack([X, np.ones((len(X), 1))])
        d = Xb.shape[1]
        reg = np.ones(d)
        reg[-1] = 0.0
        wb = np.zeros(d)
        f = self._objective(Xb, t, wb)
        for it in range(self.max_iter):
            p = expit(Xb @ wb)
            grad = reg * wb + self.C * (Xb.T @ (p - t))
            if np.max(np.abs(grad)) <= self.tol * max(1.0, self.C * len(t)):
                break
            step = self._newton_step(Xb, self.C * p * (1 - p), reg, grad)
            a = 1.0
            while True:  # backtracking (Armijo) line search keeps every step a descent
                new = wb - a * step
                fn = self._objective(Xb, t, new)
                if fn <= f - 1e-4 * a * (grad @ step) or a < 1e-10:
                    break
                a *= 0.5
            wb, f = new, fn
        self.n_iter_ = it + 1
        self.classes_ = classes
        self.coef_, self.intercept_ = wb[None, :-1], wb[-1:]
        return self

    @staticmethod
    def _newton_step(Xb, w, reg, grad):
        """H^-1 grad for the Hessian H = Xb^T diag(w) Xb + diag(reg) (``reg``: 1 for the weights, 0 for the intercept,
        the last column of ``Xb``). With at least as many rows as columns, one (d x d) solve. With fewer rows than
        features (a small table under a 2,000-pixel gate) the same step through an (n x n) system: the weights' block
        I + A^T A (A = sqrt(w) X) inverted by the push-through identity I - A^T (I + A A^T)^-1 A, the unpenalised
        intercept eliminated by its Schur complement; a 160 x 2,074 fit's step costs milliseconds instead of the
        2,074-square solve's 45 ms."""
        n, d = Xb.shape
        if n >= d or not np.all(reg[:-1] == 1.0) or reg[-1] != 0.0:
            # H = A^T A with A = sqrt(w) Xb, by a symmetric rank-k update (half a general product's work, the upper
            # triangle only), then a Cholesky solve (half an LU's): 1.2x faster at 301 columns, 1.75x at 2,101
            # (measured on one thread), the step equal to the LU solve's to ~1e-15 relative
            from scipy.linalg import LinAlgError, cho_factor, cho_solve
            from scipy.linalg.blas import dsyrk, ssyrk

            A = Xb * np.sqrt(w)[:, None]
            if d > F32_HESSIAN_COLUMNS:  # a wide table: the Hessian in float32, 1.3x faster (the annulus gate's 2,101)
                H = ssyrk(1.0, A.astype(np.float32), trans=1).astype(np.float64)
            else:
                H = dsyrk(1.0, A, trans=1)
            H[np.diag_indices(d)] += reg + 1e-12
            try:
                return cho_solve(cho_factor(H, lower=False, check_finite=False), grad, check_finite=False)
            except LinAlgError:  # not numerically positive definite: the general solve on the full matrix
                return np.linalg.solve(np.triu(H) + np.triu(H, 1).T, grad)
        X = Xb[:, :-1]
        A = X * np.sqrt(w)[:, None]
        K = A @ A.T
        K[np.diag_indices(n)] += 1.0
        h = X.T @ w  # the weights-intercept block of H
        both = np.column_stack([grad[:-1], h])
        both = both - A.T @ np.linalg.solve(K, A @ both)  # (I + A^T A)^-1 [g_w, h]
        u, v = both[:, 0], both[:, 1]
        z = (grad[-1] - h @ u) / max(w.sum() + 1e-12 - h @ v, 1e-300)  # the intercept's step (Schur complement)
        return np.r_[u - z * v, z]

    def decision_function(self, X):
        return np.asarray(X, np.float64) @ self.coef_[0] + self.intercept_[0]


def _gate_threads(n_rows: int) -> int:
    """OpenMP threads for a gate fit on ``n_rows`` rows. The trees' thread pool spin-waits between its many short
    parallel regions, so on up to 4 cores a small fit runs on one thread (on 2 cores a 200-image fit took 25 s with
    two threads against 0.8 s with one) and a fit of ``PARALLEL_ROWS`` rows or more on all of them (a 3,200-row
    nonlinear core gate: 2.5-2.7 s against 3.2-5.1 s); a larger host (a GPU host has 16 cores) uses half its cores,
    leaving the rest to the kernel and I/O. The trees' splits do not depend on the thread count: the scores are
    identical. ``OMP_NUM_THREADS``, when set, caps it: the book's chapters run side by side on one thread each
    (``lensnb.build.KERNEL_THREADS``), where a second thread per fit only oversubscribes the cores."""
    import os

    n = os.cpu_count() or 1
    n = n // 2 if n > 4 else (n if n_rows >= PARALLEL_ROWS else 1)
    try:
        cap = int(os.environ.get("OMP_NUM_THREADS", ""))
    except ValueError:
        cap = 0
    return max(1, min(n, cap)) if cap > 0 else n


PARALLEL_ROWS = 1000  # rows from which a gate fit uses every core of a small machine (``_gate_threads``)


def classifier(model: str, C: float, seed: int):
    """The gate's classifier: standardised logistic regression ("lr") or gradient-boosted trees ("gbt")."""
    if model == "lr":
        return make_pipeline(StandardScaler(), NewtonLogistic(C=C))
    if model == "gbt":
        from sklearn.ensemble import HistGradientBoostingClassifier

        return HistGradientBoostingClassifier(max_iter=150, learning_rate=0.1, max_leaf_nodes=15,
                                              l2_regularization=1.0, early_stopping=False, random_state=seed)
    raise ValueError(f"unknown gate model {model!r}; use 'lr' or 'gbt'")


def grouped_cv_scores(X, y, groups, n_folds: int = 5, C: float = 1.0, model: str = "lr", seed: int = 0,
                      fold_groups=None) -> np.ndarray:
    """Out-of-fold scores of a logistic regression (``model="lr"``) or gradient-boosted trees
    (``"gbt"``); folds are grouped by host, so no host is in both the fit and the scored fold.
    ``fold_groups`` (default: the hosts) may coarsen the grouping, e.g. to keep the two hosts of a matched
    pair in one fold: otherwise a host's matched partner, with the opposite label and nearly the same
    properties, sits in the training folds and drags the held-out score below chance."""
    X, y, groups = np.asarray(X, dtype=np.float64), np.asarray(y), np.asarray(groups)
    check_gate_input(y, groups, n_folds=n_folds)
    folds = groups if fold_groups is None else np.asarray(fold_groups)
    scores = np.empty(len(y))
    for fit, test in GroupKFold(n_splits=n_folds).split(X, y, folds):
        if len(np.unique(y[fit])) < 2:
            raise ValueError("a training fold holds only one class; shuffle or rebalance the input")
        clf = classifier(model, C, seed)
        with threadpool_limits(limits=_gate_threads(len(fit)), user_api="openmp"):
            clf.fit(X[fit], y[fit])
            scores[test] = clf.decision_function(X[test])
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


def core_summary_features(images: np.ndarray) -> np.ndarray:
    """Summaries of the central 10x10 pixels per band: azimuthal means in 1-px rings out to 5 px, the
    pixel standard deviation and the total flux, plus the g-r and r-z colours of the core flux [mag]."""
    core = images[:, :, CORE_SLICE, CORE_SLICE]
    rr = _R[CORE_SLICE, CORE_SLICE]
    rings = [core[:, :, (rr >= lo) & (rr < lo + 1)].mean(axis=2) for lo in range(5)]
    f = np.clip(core.sum(axis=(2, 3)), 1e-6, None)
    col = np.column_stack([-2.5 * np.log10(f[:, 0] / f[:, 1]), -2.5 * np.log10(f[:, 1] / f[:, 2])])
    return np.concatenate(rings + [core.reshape(len(core), 3, -1).std(axis=2), core.sum(axis=(2, 3)), col], axis=1)


def core_nonlinear_features(images: np.ndarray) -> np.ndarray:
    """The core-LR input (10x10x3 pixels) plus the core summaries: what the nonlinear core gate sees."""
    return np.concatenate([core_features(images), core_summary_features(images)], axis=1)


@dataclass(frozen=True)
class Gate:
    """One data-level image gate: its features (images (N, 3, 64, 64) -> (N, d)), its classifier ("lr" or "gbt"),
    its kind ("shortcut": judged two-sided against ``threshold``; "arc signal": sees the arc, expected high) and what
    it looks at. Every chapter, the alternatives and the monitor read gates from ``GATES``: a new gate is one entry."""

    name: str
    features: object
    model: str
    kind: str
    what: str
    threshold: float = THRESHOLD


GATES = {g.name: g for g in (
    Gate("core LR", core_features, "lr", "shortcut", "the central 10×10 px, all bands (the request's E4)"),
    Gate("nonlinear core", core_nonlinear_features, "gbt", "shortcut",
         "the core pixels and core summaries, gradient-boosted trees"),
    Gate("annulus LR", annulus_features, "lr", "arc signal", "pixels 6–16 px from the centre (the arc's zone)"),
    Gate("radial-profile LR", radial_profile_features, "lr", "arc signal", "azimuthally averaged flux per band"),
    Gate("flux & colour", flux_colour_features, "lr", "arc signal", "total flux per band and colours"),
)}
CORE_GATES = tuple(n for n, g in GATES.items() if g.kind == "shortcut")  # the core gates: linear and nonlinear
ARC_SIGNAL = tuple(n for n, g in GATES.items() if g.kind == "arc signal")  # gates that see the arc itself


def feature_gate(name: str, X, y, groups, threshold: float = THRESHOLD, n_folds: int = 5, n_boot: int = 500,
                 seed: int = 0, model: str = "lr", fold_groups=None) -> GateResult:
    """A classifier on features ``X`` (host-grouped CV) -> AUROC, host-bootstrap CI, verdict (two-sided;
    arc-signal gates, named in ``ARC_SIGNAL``, get the arc verdict). An interval below 1 - threshold is
    checked against the gate's permutation null (``cv_null``) before it is called a shortcut."""
    s = grouped_cv_scores(X, y, groups, n_folds=n_folds, model=model, seed=seed, fold_groups=fold_groups)
    return _gate_from_scores(name, s, X, y, groups, threshold, n_boot, seed, model, fold_groups)


def _gate_from_scores(name, s, X, y, groups, threshold, n_boot, seed, model, fold_groups) -> GateResult:
    auc, lo, hi = cluster_bootstrap_ci(y, s, groups, n_boot=n_boot, seed=seed)
    arc = name in ARC_SIGNAL
    v = arc_verdict(lo, hi, threshold) if arc else verdict(lo, hi, threshold)
    if v == "shortcut" and auc < 0.5:
        v = refine_inverted(v, auc, cv_null(X, y, groups, model=model, seed=seed, fold_groups=fold_groups))
    return GateResult(name, auc, lo, hi, threshold, v, len(y), len(np.unique(groups)),
                      "arc signal" if arc else "shortcut")


def _cache_parts(X, y, groups, fold_groups, **settings) -> dict:
    from . import results

    return {**settings, "code": results.code_hash("gates", "metrics"),
            "inputs": results.array_digest(np.asarray(X, np.float64), np.asarray(y), np.asarray(groups).astype(str),
                                           *([] if fold_groups is None else [np.asarray(fold_groups).astype(str)]))}


def cached_cv_scores(X, y, groups, n_folds: int = 5, model: str = "lr", seed: int = 0, fold_groups=None) -> np.ndarray:
    """``grouped_cv_scores`` computed once per inputs (features, labels, groups, settings and gate code; see
    ``results.array_digest``) and kept under the results cache: a gate read on all lenses and per θ_E bin, or by two
    chapters on the same training input, fits its classifiers once."""
    import pandas as pd

    from . import results

    parts = _cache_parts(X, y, groups, fold_groups, kind="oof", n_folds=n_folds, model=model, seed=seed)
    f = results.cached_frame("oof", parts, lambda: pd.DataFrame({"score": grouped_cv_scores(
        X, y, groups, n_folds=n_folds, model=model, seed=seed, fold_groups=fold_groups)}))
    return f["score"].to_numpy()


def cached_feature_gate(name: str, X, y, groups, threshold: float = THRESHOLD, n_folds: int = 5, n_boot: int = 500,
                        seed: int = 0, model: str = "lr", fold_groups=None) -> GateResult:
    """``feature_gate`` with the out-of-fold scores from ``cached_cv_scores`` (the same numbers, fitted once)."""
    s = cached_cv_scores(X, y, groups, n_folds=n_folds, model=model, seed=seed, fold_groups=fold_groups)
    return _gate_from_scores(name, s, X, y, groups, threshold, n_boot, seed, model, fold_groups)


def gate_by_bin(name: str, X, y, groups, bins, threshold: float = THRESHOLD, n_folds: int = 5, n_boot: int = 500,
                seed: int = 0, model: str = "lr", min_positives: int = 10):
    """A shortcut gate read per lens bin: the classifier is fitted once on all rows (host-grouped CV, out-of-fold
    scores from ``cached_cv_scores``), and its AUROC is read on the positives of each bin against all negatives,
    with a host-bootstrap interval and the gate's two-sided verdict. ``bins`` is a Categorical over rows (the
    negatives' entries are ignored). Returns a DataFrame: gate, lenses ("all lenses", then each bin), positives,
    auroc, ci_low, ci_high, verdict; a bin with fewer than ``min_positives`` positives gets no interval. A bin read
    below chance is reported as such: the gate was fitted on all bins, so the ordering is the pooled one's."""
    import pandas as pd

    y, groups = np.asarray(y), np.asarray(groups)
    s = cached_cv_scores(X, y, groups, n_folds=n_folds, model=model, seed=seed)
    rows = []
    for lv, sel in bin_levels(y, bins):
        npos = int((sel & (y == 1)).sum())
        row = {"gate": name, "lenses": lv, "positives": npos}
        if npos >= min_positives:
            auc, lo, hi = cluster_bootstrap_ci(y[sel], s[sel], groups[sel], n_boot=n_boot, seed=seed)
            v = verdict(lo, hi, threshold)
            if v == "shortcut" and auc < 0.5:
                v = "below chance (the pooled gate ranks this bin's lenses low)"
            row.update(auroc=auc, ci_low=lo, ci_high=hi, verdict=v)
        else:
            row.update(auroc=np.nan, ci_low=np.nan, ci_high=np.nan, verdict=f"fewer than {min_positives} lenses")
        rows.append(row)
    return pd.DataFrame(rows)


def core_lr_gate(images, y, groups, threshold: float = THRESHOLD, n_folds: int = 5, n_boot: int = 500,
                 seed: int = 0) -> GateResult:
    """E4 as the request defines it: logistic regression on the central 10x10 x 3 pixels."""
    return image_gate("core LR", images, y, groups, threshold, n_folds, n_boot, seed)


def core_nonlinear_gate(images, y, groups, threshold: float = THRESHOLD, n_folds: int = 5, n_boot: int = 500,
                        seed: int = 0) -> GateResult:
    """Gradient-boosted trees on the core pixels and core summaries (host-grouped CV): catches a core
    signal a linear model cannot use (e.g. extra variance or structure with no mean excess)."""
    return image_gate("nonlinear core", images, y, groups, threshold, n_folds, n_boot, seed)


def image_gate(name: str, images, y, groups, threshold: float | None = None, n_folds: int = 5, n_boot: int = 500,
               seed: int = 0, fold_groups=None) -> GateResult:
    """The registered gate ``name`` (``GATES``: its features and classifier) on ``images``; ``threshold`` None takes
    the gate's own."""
    g = GATES[name]
    return feature_gate(name, g.features(images), y, groups, g.threshold if threshold is None else threshold, n_folds,
                        n_boot, seed, model=g.model, fold_groups=fold_groups)


def image_gates(images, y, groups, threshold: float = THRESHOLD, n_boot: int = 500, seed: int = 0,
                which=tuple(GATES), nonlinear: bool = True) -> list[GateResult]:
    """The registered data-level image gates ``which`` (all of ``GATES``: core LR, nonlinear core, and the
    arc-signal gates annulus, radial profile, flux & colour), in registry order; ``nonlinear=False`` leaves out
    the tree gates."""
    return [image_gate(n, images, y, groups, threshold, n_boot=n_boot, seed=seed) for n in which
            if nonlinear or GATES[n].model != "gbt"]


def metadata_gate(meta_rows, y, groups, columns, threshold: float = THRESHOLD, n_boot: int = 500, seed: int = 0):
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


def fill_from_control(images: np.ndarray, controls: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Replace masked pixels ((N,64,64) or (64,64) bool) by the same pixels of each image's host-only
    control: in a positive this removes exactly the arc's light from the region, in a negative (its own
    control) it changes nothing, so the filled region carries no class information. (A fill from the
    image's own annulus median does not have that property: a positive's annulus holds arc light, so its
    fill value is brighter than its control's.) Needs the paired controls, which the team's data carry."""
    out = images.copy()
    m = np.broadcast_to(mask, (len(images), STAMP_SIZE, STAMP_SIZE)) if np.ndim(mask) == 2 else np.asarray(mask)
    for b in range(images.shape[1]):
        out[:, b][m] = controls[:, b][m]
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


def occlusion_map(score_fn, images: np.ndarray, patch: int = 8, stride: int = 4, controls=None) -> np.ndarray:
    """Mean drop of the score when a patch x patch window is filled (from each image's control where
    ``controls`` are given, else from the annulus median), as a (64, 64) map averaged over ``images``
    (higher = the model relies on that region)."""
    base = score_fn(images)
    heat = np.zeros((STAMP_SIZE, STAMP_SIZE))
    count = np.zeros((STAMP_SIZE, STAMP_SIZE))
    for r0 in range(0, STAMP_SIZE - patch + 1, stride):
        for c0 in range(0, STAMP_SIZE - patch + 1, stride):
            m = np.zeros((STAMP_SIZE, STAMP_SIZE), bool)
            m[r0 : r0 + patch, c0 : c0 + patch] = True
            filled = fill_from_control(images, controls, m) if controls is not None else fill_from_annulus(images, m)
            drop = float(np.mean(base - score_fn(filled)))
            heat[m] += drop
            count[m] += 1
    return heat / np.maximum(count, 1)


def results_frame(results) -> "pd.DataFrame":
    import pandas as pd

    return pd.DataFrame([r.__dict__ for r in results if r is not None])


def share_of_skill_lost(a_full, a_masked):
    """The share of a model's skill above chance that masking removes, bounded to [0, 1]: (A - A_m) / (A - 0.5)
    with the masked AUROC A_m clipped to [0.5, A] (a masked model below chance has lost all its skill, one above
    the unmasked model none); NaN where the unmasked model has no skill above chance (A <= 0.5), since there is
    then no skill to lose. Arrays broadcast (one value per training seed)."""
    a0, a1 = np.asarray(a_full, float), np.asarray(a_masked, float)
    skill = a0 - 0.5
    lost = a0 - np.clip(a1, 0.5, np.maximum(a0, 0.5))
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(skill > 0, lost / np.where(skill > 0, skill, 1.0), np.nan)


NO_SKILL = "undecidable (the model is not above chance)"


def reliance_gate(name: str, scores_full, scores_masked, y, groups, relative: float = 0.2, n_boot: int = 500,
                  seed: int = 0, fit_groups=None) -> dict:
    """Does a model rely on a masked region? The share of its skill above chance that masking removes
    (``share_of_skill_lost``, in [0, 1]), with a joint host bootstrap (both score sets resampled with the same
    hosts) and, for scores of several training seeds ((k, n) arrays), the seed spread folded in. 'relies' if
    the whole interval exceeds ``relative``, 'does not rely' if it lies below, else 'undecidable'; where the
    unmasked model's AUROC interval reaches chance there is no skill to share out and the verdict is
    ``NO_SKILL``. A relative threshold scales with the model's skill: a 0.05 drop is a third of the skill of a
    model at AUROC 0.65 but a tenth of one at 1.0. The absolute AUROC drop and its interval are returned too."""
    from .metrics import joint_host_intervals

    check_gate_input(y, groups, n_folds=1)
    if fit_groups is not None:
        check_no_shared_hosts(fit_groups, groups)
    sets = [(y, scores_full, groups), (y, scores_masked, groups)]
    # one host bootstrap for the three statistics (the same draws as three separate calls)
    r = joint_host_intervals(sets, {"full": (lambda a: a[0], (0.0, 1.0)), "drop": (lambda a: a[0] - a[1], (-1.0, 1.0)),
                                    "share": (lambda a: share_of_skill_lost(a[0], a[1]), (0.0, 1.0))},
                             n_boot=n_boot, seed=seed)
    full, drop, share = r[("full", 0.95)], r[("drop", 0.95)], r[("share", 0.95)]
    if full.ci_low <= 0.5:
        nan = float("nan")
        return {"name": name, "AUROC drop": drop.estimate, "drop_low": drop.ci_low, "drop_high": drop.ci_high,
                "share of skill lost": nan, "ci_low": nan, "ci_high": nan, "verdict": NO_SKILL}
    v = "relies" if share.ci_low > relative else ("does not rely" if share.ci_high < relative else "undecidable")
    return {"name": name, "AUROC drop": drop.estimate, "drop_low": drop.ci_low, "drop_high": drop.ci_high,
            "share of skill lost": share.estimate, "ci_low": share.ci_low, "ci_high": share.ci_high, "verdict": v}


# --------------------------------------------------------------------------- null injection
NULL_MARGIN = 0.05  # a null statistic may differ from 0.5 by at most this much (when its CI excludes 0.5)


def _trailing_zero_bits(images: np.ndarray) -> np.ndarray:
    """Mean number of trailing zero bits in the 23-bit float32 mantissa of each image's pixels: ~1 for
    float32 data, >= 13 for data that passed through float16 (a precision fingerprint)."""
    m = np.ascontiguousarray(images, dtype=np.float32).view(np.uint32) & np.uint32(0x7FFFFF)
    m = m.reshape(len(images), -1).astype(np.int64)
    low = m & -m  # lowest set bit
    tz = np.where(m == 0, 23, np.log2(np.maximum(low, 1)).astype(int))
    return tz.mean(axis=1)


def null_statistics(images: np.ndarray) -> "pd.DataFrame":
    """Per-image statistics a processing difference would move: flux inside 16 px and in the core per
    band [nmgy], r-band flux-weighted centroid [px], sky noise per band (1.4826 MAD beyond 16 px)
    [nmgy], and the float32 precision fingerprint."""
    import pandas as pd

    out = {}
    inner, outer = _R < 16, _R > 16
    for b, band in enumerate("grz"):
        out[f"flux {band}"] = images[:, b][:, inner].sum(axis=1)
        out[f"core flux {band}"] = images[:, b, CORE_SLICE, CORE_SLICE].sum(axis=(1, 2))
        sky = images[:, b][:, outer]
        out[f"sky noise {band}"] = 1.4826 * np.median(np.abs(sky - np.median(sky, axis=1, keepdims=True)), axis=1)
    r = np.clip(images[:, 1], 0, None) * (_R < 8)
    yy, xx = np.mgrid[0:STAMP_SIZE, 0:STAMP_SIZE]
    w = np.maximum(r.sum(axis=(1, 2)), 1e-12)
    out["centroid x"] = (r * xx).sum(axis=(1, 2)) / w
    out["centroid y"] = (r * yy).sum(axis=(1, 2)) / w
    out["float precision"] = _trailing_zero_bits(images)
    return pd.DataFrame(out)


def null_verdict(lo: float, hi: float, margin: float = NULL_MARGIN) -> str:
    """Judged against chance: 'quiet' if the interval contains 0.5 or lies within 0.5 +- margin,
    'leak' otherwise."""
    if lo <= 0.5 <= hi or (0.5 - margin <= lo and hi <= 0.5 + margin):
        return "quiet"
    return "leak"


def null_pair_gate(stamps: np.ndarray, ctrls: np.ndarray, groups, n_boot: int = 500, seed: int = 0,
                   margin: float = NULL_MARGIN) -> list[GateResult]:
    """Null injection, paired form: for each statistic of ``null_statistics``, the within-pair AUROC
    P(stat(stamp) > stat(ctrl)) + P(tie) / 2 over the rows (stamp = a zero-flux injection, ctrl = the same
    host), with a host-bootstrap interval, judged against 0.5 by ``null_verdict``. A pipeline that
    leaves the image untouched gives exactly 0.5 everywhere (all ties); a pedestal, a shift, a resampling
    or a change of dtype moves at least one statistic to the far side of 0.5."""
    groups = np.asarray(groups)
    if len(stamps) != len(ctrls) or len(stamps) != len(groups):
        raise ValueError(f"stamps ({len(stamps)}), ctrls ({len(ctrls)}) and hosts ({len(groups)}) differ in length")
    hosts, inv = np.unique(groups, return_inverse=True)
    if len(hosts) < 5:
        raise ValueError(f"{len(hosts)} hosts; the null gate needs at least 5")
    fs, fc = null_statistics(stamps), null_statistics(ctrls)
    rng = np.random.default_rng(seed)
    draws = [np.bincount(rng.integers(0, len(hosts), len(hosts)), minlength=len(hosts))[inv] for _ in range(n_boot)]
    out = []
    for col in fs.columns:
        a, b = fs[col].to_numpy(), fc[col].to_numpy()
        win = (a > b) + 0.5 * (a == b)
        stat = float(win.mean())
        boot = [float((w * win).sum() / w.sum()) for w in draws if w.sum()]
        lo, hi = (float(v) for v in np.quantile(boot, [0.025, 0.975]))
        out.append(GateResult(f"null: {col}", stat, lo, hi, 0.5 + margin, null_verdict(lo, hi, margin), len(win),
                              len(hosts), "null"))
    return out


def null_image_gates(stamps, ctrls, groups, n_boot: int = 500, seed: int = 0, margin: float = NULL_MARGIN,
                     nonlinear: bool = True) -> list[GateResult]:
    """The data-level image gates on null-injected pairs (paired design), judged against 0.5."""
    groups = np.asarray(groups)
    x = np.concatenate([stamps, ctrls])
    y = np.r_[np.ones(len(stamps)), np.zeros(len(ctrls))]
    g = np.r_[groups, groups]
    res = image_gates(x, y, g, threshold=0.5 + margin, n_boot=n_boot, seed=seed, nonlinear=nonlinear)
    for r in res:
        r.name, r.kind, r.verdict = f"null: {r.name}", "null", null_verdict(r.ci_low, r.ci_high, margin)
    return res


if __name__ == "__main__":  # python -m lensnb.gates PATH [--model CHECKPOINT] [--json OUT]: the monitor's command
    # run by module name, so this module never imports the monitor that builds on it (no import cycle)
    import runpy

    runpy.run_module("lensnb.monitor", run_name="__main__", alter_sys=True)
