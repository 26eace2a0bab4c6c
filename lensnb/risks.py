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
from .metrics import (auroc, fast_auroc, host_draws, monitor_verdict, percentile_interval,  # noqa: F401
                      tpr_change, tpr_point)


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


# --------------------------------------------------------------------------- the register, one family per function
# Each family returns register rows (``register_row``); the failure-modes chapter calls them in order and shows the
# table, and the monitor can call any one on the team's data. Thresholds are the chapter's stated parameters.
def _tpr_rule(tpr_margin: float) -> str:
    return f"< −{tpr_margin:.2f} (relative)"


def gate_word(v: str) -> str:
    """A gate verdict as a monitor reads it: "fires" (shortcut), "quiet" (no shortcut) or "undecidable"."""
    return {"shortcut": "fires", "no shortcut": "quiet"}.get(v, "undecidable")


def gate_reading(r) -> tuple[str, str]:
    """A gate result (statistic, ci_low, ci_high, verdict) as "0.512 (0.43–0.59), quiet" and its monitor word."""
    from .metrics import format_interval

    return f"{format_interval(r.statistic, r.ci_low, r.ci_high)}, {gate_word(r.verdict)}", gate_word(r.verdict)


CORE_DESIGNS = (("paired_raw", "paired (the team's current design)"), ("unpaired_raw", "unpaired (the proposal)"))


def core_shortcut_rows(gate_df: pd.DataFrame, threshold: float, designs=CORE_DESIGNS) -> list[dict]:
    """The core shortcut per design: the core gates (``gates.CORE_GATES``, linear and nonlinear) on each design's
    training input (``alternatives.run``'s ``gates``); fires where either finds a shortcut, quiet where both find
    none."""
    rows = []
    lin_name, nl_name = gates.CORE_GATES
    for c, who in designs:
        lin = gate_df[(gate_df.candidate == c) & (gate_df.gate == lin_name)].iloc[0]
        nl = gate_df[(gate_df.candidate == c) & (gate_df.gate == nl_name)].iloc[0]
        v = "fires" if "shortcut" in (lin.verdict, nl.verdict) else (
            "quiet" if lin.verdict == nl.verdict == "no shortcut" else "undecidable")
        rows.append(register_row(
            f"core shortcut, {who}", "the counter-image (and the host's own core) separates the classes in the central "
            "pixels", f"core LR gate AUROC (nonlinear gate: {nl.auroc:.2f})", lin.auroc, lin.ci_low, lin.ci_high,
            "`python -m lensnb.gates`: core LR and nonlinear core gates", f"outside ({1 - threshold:.2f}, {threshold:.2f})",
            v, "change the design (alternatives chapter); do not trust a high AUROC"))
    return rows


def reliance_rows(reliance: pd.DataFrame, relative: float,
                  designs=(("paired_raw", "paired"), ("unpaired_raw", "unpaired"))) -> list[dict]:
    """The model's reliance on the core (the one measure, ``gates.reliance_gate``: the central 10×10 px filled from
    each image's own control), on all test lenses, from ``alternatives.run``'s ``reliance`` table."""
    rows = []
    for c, who in designs:
        rc = reliance[reliance.candidate == c] if len(reliance) else reliance
        if not len(rc):
            continue
        r0 = rc[(rc.masked == "core") & (rc["θ_E bin"] == "all θ_E")].iloc[0]
        rows.append(register_row(
            f"model relies on the core, {who}", "the trained network scores the central pixels, not the arc",
            "share of the AUROC above chance lost when the central 10×10 px are filled from each image's own control "
            "(all test lenses; per θ_E bin in the alternatives chapter's reliance table)", r0["share of skill lost"],
            r0["ci_low"], r0["ci_high"], "`python -m lensnb.gates PATH --model CHECKPOINT`", f"> {relative:.2f}",
            {"relies": "fires", "does not rely": "quiet"}.get(r0["verdict"], "undecidable"),
            "where θ_E > 1.25 FWHM: retrain with a design whose gates pass and check the occlusion maps; where the lens "
            "is unresolved the core is the lens and reliance on it is expected"))
    return rows


def memorisation_rows(memo: pd.DataFrame, margin: float) -> list[dict]:
    """Host memorisation: the "all lenses" line of ``alternatives.run``'s ``memorisation`` (seen- minus unseen-host
    AUROC; per θ_E/FWHM bin in ``memorisation_table``)."""
    if not len(memo):
        return []
    m0 = memo.iloc[0]
    return [register_row(
        "host memorisation", "the network recognises the training hosts (their controls were seen as negatives)",
        "AUROC on new injections into training hosts minus AUROC on unseen hosts (all lenses; per θ_E bin below)",
        m0["gap"], m0["ci_low"], m0["ci_high"], "seen-host minus unseen-host AUROC (training chapter)",
        f"> {margin:.2f}", monitor_verdict(m0["ci_low"], m0["ci_high"], margin),
        "more hosts, fewer injections per host; never test on training hosts")]


def brightness_rows(y, S_base, S_bright, groups, fpr: float, tpr_margin: float, preset: str, *, n_boot: int,
                    seed: int) -> list[dict]:
    """Arc brightness: the relative TPR change at ``fpr`` on the ``preset`` test lenses of a model trained on bright
    arcs against one trained at the preset's brightness (same design, same test images)."""
    bt = tpr_change(y, S_base, S_bright, groups, fpr, n_boot=n_boot, seed=seed, relative=True)
    return [register_row(
        "arc brightness unrealistic", "trained on arcs brighter than the sky's, the network misses faint ones",
        f"relative TPR change at {100 * fpr:g}% FPR on faint test lenses: trained on bright arcs against trained at the "
        f"{preset} brightness", *bt,
        "median arc S/N of the training set against the target population's; completeness on a faint test set",
        _tpr_rule(tpr_margin), monitor_verdict(bt[1], bt[2], -tpr_margin, bad_above=False),
        "train at the brightness of the lenses you want to find")]


def brightness_risk(y, S_base, S_bright, groups, fpr: float | None, tpr_margin: float, preset: str, *,
                    bright_meta: pd.DataFrame | None, meta: pd.DataFrame, n_boot: int, seed: int) -> tuple[list[dict], str]:
    """The arc-brightness risk (``brightness_rows``) and a sentence with the median arc S/N of the bright training set
    (``bright_meta``) against the ``preset`` one's (``meta``). Without a bright model (``S_bright`` None) or a TPR at
    low FPR (``fpr`` None: too few test non-lenses), no rows and a sentence saying what it needs."""
    if S_bright is None or fpr is None:
        return [], ("The brightness risk needs the simulator's paired presets and a test set large enough for a TPR "
                    "at low FPR.")
    rows = brightness_rows(y, S_base, S_bright, groups, fpr, tpr_margin, preset, n_boot=n_boot, seed=seed)
    snr_b = float(np.median(bright_meta["arc_snr"])) if bright_meta is not None and "arc_snr" in bright_meta else np.nan
    snr_p = float(np.median(meta["arc_snr"]))
    return rows, f"The bright training set's median arc S/N is {snr_b:.0f}; the {preset} one's is {snr_p:.0f}."


def theta_rows(y, S, groups, bins, fpr: float, tpr_margin: float, *, n_boot: int, seed: int,
               min_positives: int = 10) -> list[dict]:
    """θ_E at or below the PSF: the relative TPR change at ``fpr`` from the largest θ_E/FWHM bin's lenses to the
    smallest's (one model, one test set); no row when either bin has fewer than ``min_positives`` lenses."""
    small, large = np.asarray(bins == bins.categories[0]), np.asarray(bins == bins.categories[-1])
    y = np.asarray(y)
    if (small & (y == 1)).sum() < min_positives or (large & (y == 1)).sum() < min_positives:
        return []
    th = tpr_change(y, S, S, groups, fpr, sub_a=large, sub_b=small, n_boot=n_boot, seed=seed, relative=True)
    return [register_row(
        "θ_E at or below the PSF", "the arc merges with the host's core: the lens is unresolved",
        f"relative TPR change at {100 * fpr:g}% FPR: {bins.categories[0]} against {bins.categories[-1]}", *th,
        "completeness per θ_E / FWHM bin on a test set", _tpr_rule(tpr_margin),
        monitor_verdict(th[1], th[2], -tpr_margin, bad_above=False),
        "state the θ_E range the finder is complete for; do not extrapolate below it")]


def variant_rows(y, S_base, groups, variants: dict, fpr: float | None, change_margin: float, tpr_margin: float, *,
                 n_boot: int, seed: int) -> tuple[list[dict], pd.DataFrame]:
    """Source morphology and colours, PSF mismatch: the same test hosts and lenses re-simulated with one thing
    changed. ``variants``: {name: (scores (n_seeds, n) of the base model on the variant set, risk family,
    mechanism)}. Rows: the AUROC change (and, for the source families, the relative TPR change at ``fpr``; None:
    no resolvable FPR). Returns (rows, a table of every variant's changes)."""
    rows, table = [], []
    fix = "widen the training distribution (morphologies, colours, PSFs) or train on real images"
    for vname, (Sv, risk, mech) in variants.items():
        ch = auroc_change(y, S_base, Sv, groups, n_boot=n_boot, seed=seed)
        tc = (tpr_change(y, S_base, Sv, groups, fpr, n_boot=n_boot, seed=seed, relative=True) if fpr is not None
              else (np.nan, np.nan, np.nan))
        table.append({"variant": vname, "change": ch[0], "ci_low": ch[1], "ci_high": ch[2], "tpr_change": tc[0],
                      "tpr_low": tc[1], "tpr_high": tc[2]})
        rows.append(register_row(
            f"{risk}: {vname}", mech, "AUROC change on the same test hosts and lenses", *ch,
            "AUROC on a re-simulated test set against the nominal one", f"< −{change_margin:.2f}",
            monitor_verdict(ch[1], ch[2], -change_margin, bad_above=False), fix))
        if risk in ("source morphology", "source colours") and fpr is not None:
            rows.append(register_row(
                f"{risk}: {vname}, completeness", mech,
                f"relative TPR change at {100 * fpr:g}% FPR on the same test hosts and lenses", *tc,
                "completeness on a re-simulated test set against the nominal one", _tpr_rule(tpr_margin),
                monitor_verdict(tc[1], tc[2], -tpr_margin, bad_above=False), fix))
    return rows, pd.DataFrame(table)


POOL_CONDITIONS = ("psf_fwhm_used_g", "psf_fwhm_used_r", "psf_fwhm_used_z", "noise_sigma_g", "noise_sigma_r",
                   "noise_sigma_z", "host_z", "host_mag_r", "ra", "dec")


def conditions_gate(meta: pd.DataFrame, pos_hosts, neg_hosts, n_max: int, name: str, threshold: float, *,
                    n_boot: int, seed: int, columns=POOL_CONDITIONS):
    """The survey-conditions gate on two host pools: up to ``n_max`` rows from each pool's hosts (seeded), a
    host-grouped logistic regression on the conditions ``columns`` the manifest carries (PSF, depth, redshift,
    brightness, sky position). Returns ``gates.GateResult``."""
    from .pools import host_key

    cond = [c for c in columns if c in meta.columns]
    keys = host_key(meta)
    rng = np.random.default_rng(seed)
    rp = np.flatnonzero(keys.isin(set(pos_hosts)).to_numpy())
    rn = np.flatnonzero(keys.isin(set(neg_hosts)).to_numpy())
    n = min(len(rp), len(rn), n_max)
    rows_ = np.r_[rng.choice(rp, n, replace=False), rng.choice(rn, n, replace=False)]
    X = meta.iloc[rows_][cond].to_numpy(float)
    y = np.r_[np.ones(n, int), np.zeros(n, int)]
    return gates.feature_gate(name, X, y, keys.to_numpy()[rows_], threshold, n_boot=n_boot, seed=seed)


def pool_confounder_rows(meta: pd.DataFrame, train_table: pd.DataFrame, train_hosts, n_max: int, threshold: float, *,
                         n_boot: int, seed: int) -> tuple[list[dict], dict]:
    """Pool confounders: the survey-conditions gate on the proposal's random pools (``train_table``: the unpaired
    training table) and on pools split by seeing (a planted confounder that must fire). Returns (rows, {"random":
    GateResult, "planted": GateResult or None})."""
    from .pools import host_key

    cond = [c for c in POOL_CONDITIONS if c in meta.columns]
    props = meta.groupby(host_key(meta).to_numpy())[cond].mean().loc[train_hosts]
    t = train_table
    res = {"random": conditions_gate(meta, t.loc[t.label == 1, "host"].unique(), t.loc[t.label == 0, "host"].unique(),
                                     n_max, "random pools", threshold, n_boot=n_boot, seed=seed), "planted": None}
    if "psf_fwhm_used_r" in props:
        pos_h, neg_h = imbalanced_pools(props, "psf_fwhm_used_r", seed)
        res["planted"] = conditions_gate(meta, pos_h, neg_h, n_max, "planted: positives in worse seeing", threshold,
                                         n_boot=n_boot, seed=seed)
    rows = []
    for key, what in (("random", "the proposal's random pools"), ("planted", "pools split by seeing (planted)")):
        r_ = res[key]
        if r_ is None:
            continue
        rows.append(register_row(
            f"pool confounder: {what}", "positives and negatives differ in survey conditions or host properties",
            "survey-conditions gate AUROC (PSF, depth, redshift, brightness, sky position)", r_.statistic, r_.ci_low,
            r_.ci_high, "`python -m lensnb.gates` survey-conditions gate (unpaired designs)",
            f"outside ({1 - threshold:.2f}, {threshold:.2f})", gate_word(r_.verdict),
            "match the pools on conditions (matched design) or draw them from the same bricks"))
    return rows, res


def processing_path_rows(null_stamps, null_ctrls, groups, *, n_boot: int, seed: int) -> tuple[list[dict], dict]:
    """The processing path of stamps vs controls: zero-flux arcs pushed through the injection path (the null
    injection), then the same null pairs with a float16 round trip planted in the stamps (must fire); each row
    reads the null check furthest from 0.5 (``gates.null_pair_gate``). Returns (rows, {case: (that check's row,
    checks that leak, checks)})."""
    cases = {"processing path of stamps vs controls": null_stamps,
             "processing path (planted): stamps round-tripped through float16":
                 null_stamps.astype(np.float16).astype(np.float32)}
    rows, worst = [], {}
    for what, xs in cases.items():
        nr = gates.results_frame(gates.null_pair_gate(xs, null_ctrls, groups, n_boot=n_boot, seed=seed))
        w = nr.loc[(nr.statistic - 0.5).abs().idxmax()]
        n_leak = int((nr.verdict == "leak").sum())
        worst[what] = (w, n_leak, len(nr))
        rows.append(register_row(
            what, "stamps and controls pass through different code (decoding, re-encoding, resampling, dtype): the "
            "network can learn the processing instead of the arc",
            f"within-pair AUROC of the null check furthest from 0.5 ({w['name'].replace('null: ', '')}; {n_leak} of "
            f"{len(nr)} checks leak)", w.statistic, w.ci_low, w.ci_high,
            "null-injection gate (`lensnb.gates.null_pair_gate`; shortcut gates chapter)",
            f"outside 0.5 ± {gates.NULL_MARGIN:.2f}", "fires" if n_leak else "quiet",
            "make stamps and controls share one processing path; rerun the null injection"))
    return rows, worst


def gate_artifacts(core_x, hosts, n_positives: int, *, n_boot: int, seed: int) -> tuple[list[dict], pd.DataFrame,
                                                                                         dict]:
    """Gate artifacts, on purpose (demonstrations, never counted as risks): a gate on a one-class slice of a
    positives-first manifest, an LR gate fitted and scored on the same rows, and CV folds not grouped by host, the
    last two on labels with no signal (``null_labels_by_host``) over core features ``core_x`` of hosts ``hosts``.
    Returns (rows, the artifact table, {"one class": ``one_class_slice``, "in sample": ``in_sample_optimism``,
    "ungrouped": ``ungrouped_cv_optimism``})."""
    hosts = np.asarray(hosts)
    yn = null_labels_by_host(hosts, seed)
    ins = in_sample_optimism(core_x, yn, hosts, n_boot=n_boot, seed=seed)
    ung = ungrouped_cv_optimism(core_x, yn, hosts, n_boot=n_boot, seed=seed)
    order_y = np.r_[np.ones(n_positives, int), np.zeros(len(hosts) - n_positives, int)]  # positives first
    one = one_class_slice(order_y, min(500, n_positives))
    art = pd.DataFrame([
        {"artifact": "gate on the first rows of a positives-first manifest", "naive": one["naive AUROC"],
         "lensnb": "refused: " + one["lensnb"], "optimism": np.nan, "ci_low": np.nan, "ci_high": np.nan},
        {"artifact": "LR gate fitted and scored on the same rows (labels with no signal)",
         "naive": ins["fitted and scored on the same rows"], "lensnb": f"host-grouped CV: {ins['host-grouped CV']:.3f}",
         "optimism": ins["optimism"], "ci_low": ins["ci_low"], "ci_high": ins["ci_high"]},
        {"artifact": "CV folds not grouped by host (labels with no signal)", "naive": ung["folds ignoring hosts"],
         "lensnb": f"host-grouped CV: {ung['host-grouped CV']:.3f}", "optimism": ung["optimism"],
         "ci_low": ung["ci_low"], "ci_high": ung["ci_high"]}])
    rows = []
    for _, a in art.iloc[1:].iterrows():
        rows.append(register_row(
            f"gate artifact: {a.artifact}", "a gate that can report a shortcut where there is none",
            "AUROC the naive gate reports minus the host-grouped CV gate, on labels with no signal", a.optimism,
            a.ci_low, a.ci_high, "lensnb's gates: host-grouped CV only", "> 0.05",
            "naive gate misleads" if monitor_verdict(a.ci_low, a.ci_high, 0.05) == "fires" else "no optimism shown",
            "use host-grouped cross-validation (lensnb.gates) — the naive number is not evidence"))
    rows.append(register_row(
        "gate artifact: one-class slice", "a slice of an unshuffled manifest holds one class",
        "naive AUROC on the slice", one["naive AUROC"], np.nan, np.nan, "lensnb.gates.check_gate_input",
        "refuses", "refused by lensnb" if one["lensnb"] else "not refused",
        "shuffle the manifest; lensnb refuses the slice"))
    return rows, art, {"one class": one, "in sample": ins, "ungrouped": ung}


def realism_rows(probes, recall_rel, fpr: float, probe_threshold: float, tpr_margin: float, *, real: bool) -> list[dict]:
    """The realism probe: domain probes (``probe.domain_probe`` results: injected against real lenses, on network
    features, binned pixels and host-light-subtracted pixels) and the recall of real lenses relative to simulated
    ones at the ``fpr`` threshold (``recall_rel``: estimate, low, high). With a stand-in (``real`` False) every row is
    marked "(planted)": a demonstration, never counted."""
    tag, who = ("", "real") if real else (" (planted)", "stand-in")
    rows = [register_row(
        f"sim-to-real gap: domain probe on {r_.features}{tag}",
        "the network sees something injections have and real lenses lack",
        f"AUROC of a linear probe telling injected lenses from {who} lenses", r_.auroc, r_.ci_low, r_.ci_high,
        "lensnb.probe.domain_probe on the team's real candidates", f"> {probe_threshold:.2f}",
        monitor_verdict(r_.ci_low, r_.ci_high, probe_threshold),
        "make the injections more realistic, or train on real lenses") for r_ in probes]
    rows.append(register_row(
        f"sim-to-real gap: recall on real lenses{tag}", "a threshold chosen on simulations misses real lenses",
        f"recall of {who} lenses relative to simulated ones at the {100 * fpr:g}%-FPR threshold (seed 0)", *recall_rel,
        "lensnb.probe.recall_on_real", _tpr_rule(tpr_margin),
        monitor_verdict(recall_rel[1], recall_rel[2], -tpr_margin, bad_above=False),
        "recalibrate on real lenses; report completeness on real lenses, not simulations"))
    return rows


def register_frame(rows: list[dict]) -> pd.DataFrame:
    """The register from its rows, with the "size here (95% CI)" and "to decide" columns and ``demonstration``
    (gate artifacts and planted rows: shown, never counted as risks)."""
    from .metrics import format_interval

    reg = pd.DataFrame(rows)
    reg["size here (95% CI)"] = [format_interval(v, lo, hi) if np.isfinite(lo) and np.isfinite(hi) else f"{v:.3f}"
                                 if np.isfinite(v) else "not measurable here (the model is not above chance)"
                                 for v, lo, hi in zip(reg.value, reg.ci_low, reg.ci_high)]
    reg["to decide"] = [to_decide(r_.verdict, r_.value, r_.ci_low, r_.ci_high, r_.threshold) for r_ in reg.itertuples()]
    reg["demonstration"] = reg.risk.str.startswith("gate artifact") | reg.risk.str.contains("(planted)", regex=False)
    return reg


def _q(values) -> dict:
    """Median and 16–84% range of ``values`` as a population spec ({"median", "p16", "p84"})."""
    v = np.asarray(values, float)
    return {"median": float(np.median(v)), "p16": float(np.quantile(v, 0.16)), "p84": float(np.quantile(v, 0.84))}


def variant_specs(meta: pd.DataFrame, psf_shift: float, wide_moffat_beta: float) -> tuple[dict, dict]:
    """The re-simulated test variants of the register: {name: (preset overrides, risk family, mechanism)} (clumpy
    sources; sources as red as the hosts: the hosts' g − r and r − z medians and 16–84% ranges; the PSF FWHM
    ±``psf_shift``; Moffat wings of index ``wide_moffat_beta``), and the colours behind the red-source variant
    ({"src_g_r": 16/84% of the training sources' g − r, "host_g_r": the hosts' spec})."""
    host_gr = _q(meta["host_mag_g"] - meta["host_mag_r"])
    host_rz = _q(meta["host_mag_r"] - meta["host_mag_z"])
    src_gr = _q(meta["src_mag_g"] - meta["src_mag_r"])
    specs = {
        "clumpy sources": ({"src_clumpy_fraction": 1.0}, "source morphology",
                           "trained on smooth Sérsic sources, tested on clumpy ones (same flux)"),
        "red sources (host colours)": ({"src_g_r": host_gr, "src_r_z": host_rz}, "source colours",
                                       "trained on blue sources, tested on sources as red as the hosts (same r flux)"),
        f"PSF FWHM +{100 * psf_shift:.0f}%": ({"psf_scale": 1 + psf_shift}, "PSF mismatch",
                                              "the test PSF is broader than in training"),
        f"PSF FWHM −{100 * psf_shift:.0f}%": ({"psf_scale": 1 - psf_shift}, "PSF mismatch",
                                              "the test PSF is sharper than in training"),
        f"Moffat β = {wide_moffat_beta:g} wings": ({"psf_moffat_beta": wide_moffat_beta}, "PSF mismatch",
                                                   "the test PSF has broader wings"),
    }
    return specs, {"src_g_r": src_gr, "host_g_r": host_gr}


def probe_demos(test, variants: dict, threshold: float, *, n_boot: int, seed: int) -> tuple[pd.DataFrame, str]:
    """The realism probe on planted gaps (``probe.planted_gap_demos``) between halves of the simulated test lenses
    (``test``: images, controls, y, hosts), with the clumpy-source and broader-PSF ``variants`` (name -> test set of
    the same rows) as planted gaps: what the probe must catch and what it must not be fooled by. A DEMONSTRATION on
    the simulator's own lenses, never evidence. Returns the table (probe AUROC with its 95% interval) and one
    sentence; without variants or controls (the team's data) a one-row note and the note as the sentence."""
    from .metrics import format_interval
    from .probe import planted_gap_demos

    if not variants or test.controls is None:
        return (pd.DataFrame({"note": ["the planted-gap demonstration needs the simulator"]}),
                "The planted-gap demonstration needs the simulator.")
    pos = test.y == 1
    shown = {k: (v.images[pos], v.controls[pos]) for k, v in variants.items()
             if k == "clumpy sources" or k.startswith("PSF FWHM +")}
    demos = planted_gap_demos(test.images[pos], test.controls[pos], test.hosts[pos], variants=shown,
                              threshold=threshold, n_boot=n_boot, seed=seed)
    missed = demos[demos["as expected"] == "no"]
    text = (f"On {len(demos)} planted cases the probe reads as expected in {int((demos['as expected'] == 'yes').sum())}"
            + (": " + "; ".join(f"*{r['planted gap']}* ({r['input']}) reads {r['verdict']}, expected {r['expected']}"
                                for _, r in missed.iterrows()) if len(missed) else "") + ".")
    demos["probe AUROC (95% CI)"] = [format_interval(a, lo, hi) for a, lo, hi in
                                     zip(demos.auroc, demos.ci_low, demos.ci_high)]
    return demos[["planted gap", "input", "expected", "probe AUROC (95% CI)", "verdict", "as expected"]], text


def register_summary(reg: pd.DataFrame) -> dict:
    """Counts over the register's monitored risks (demonstrations left out): ``n_risks``, ``n_fire``,
    ``n_undecidable``, and ``fired`` (the firing risks' names in italics, or "none")."""
    mon = reg[~reg.demonstration]
    fires = mon.verdict == "fires"
    return {"n_risks": len(mon), "n_fire": int(fires.sum()), "n_undecidable": int((mon.verdict == "undecidable").sum()),
            "fired": ", ".join(f"*{r}*" for r in mon.loc[fires, "risk"]) or "none"}


def realism_check(model, score_fn, sim_x, sim_g, real_x, real_g, sim_scores, sim_y, fpr: float, probe_threshold: float,
                  tpr_margin: float, *, real: bool, n_boot: int, seed: int) -> tuple[list[dict], tuple]:
    """The realism probe of injections against real lenses (``real`` False: a stand-in, every row "(planted)"):
    domain probes on the network's penultimate features (``model``: one trained model with ``.model`` and
    ``.normaliser``), on binned pixels and on binned pixels with the host light subtracted (azimuthal residual, no
    control needed: not fooled by a host-population difference alone), and the recall of the real lenses relative to
    the simulated ones at the ``fpr`` threshold of ``sim_scores`` (seed 0's scores of the simulated test set, labels
    ``sim_y``). ``score_fn(images)`` scores with that model. Returns (rows, (simulated scores, real scores,
    threshold)) for the figure."""
    from . import probe
    from .preprocess import azimuthal_residual

    feats = {"network features": lambda x: probe.penultimate_features(model.model, model.normaliser, x),
             "binned pixels": probe.binned_pixels,
             "binned pixels, host light subtracted": lambda x: probe.binned_pixels(azimuthal_residual(x))}
    probes = [probe.domain_probe(f(sim_x), f(real_x), sim_g, real_g, features=k, n_boot=n_boot, seed=seed)
              for k, f in feats.items()]
    sim_y = np.asarray(sim_y)
    thr = probe.threshold_at_fpr(sim_scores[sim_y == 0], fpr)
    real_s = score_fn(real_x)
    rec = probe.recall_on_real(real_s, thr)
    sim_rec = probe.recall_on_real(sim_scores[sim_y == 1], thr)
    rec_rel = [v / sim_rec[0] - 1 if sim_rec[0] > 0 else np.nan for v in rec]  # simulated recall held fixed
    return realism_rows(probes, rec_rel, fpr, probe_threshold, tpr_margin, real=real), (sim_scores, real_s, thr)


def monitor_list(gate_threshold: float, change_margin: float, tpr_margin: float, probe_threshold: float) -> str:
    """The monitors to run, and when (Markdown list), with the register's thresholds."""
    return "\n".join([
        f"- **Every training set**: `python -m lensnb.monitor PATH` — core LR and nonlinear core gates (stop if the "
        f"interval lies outside ({1 - gate_threshold:.2f}, {gate_threshold:.2f})), the survey-conditions gate for "
        "unpaired pools (same rule), and the radial-profile arc check (it should detect the arc).",
        "- **Every injection code change**: the null-injection gate (shortcut gates chapter): injecting nothing must "
        "leave stamps and controls indistinguishable (judged against 0.5).",
        f"- **Every trained model**: `python -m lensnb.gates PATH --model CHECKPOINT` — the share of skill lost when "
        f"the core is hidden; AUROC on new injections into training hosts against unseen hosts (stop above "
        f"{change_margin:.2f}); completeness per θ_E / FWHM bin (stop if the smallest bin loses more than "
        f"{100 * tpr_margin:.0f}% of the largest bin's).",
        f"- **Before quoting completeness**: the realism probe on real candidates (`DATA_REAL=`): stop if the probe "
        f"AUROC exceeds {probe_threshold:.2f} or the recall on real lenses falls more than {100 * tpr_margin:.0f}% "
        "below the simulated recall; re-test with the PSF, source morphology and source colours varied."])
