"""Protocol traps: what duplicated negatives, resampling with replacement and row-level cross-validation do to a gate.

The request's manifest holds about 100 injection rows per LRG, and its negatives are the ``ctrl_stamp_npz`` of rows:
one host-only image per LRG, repeated in every row of that LRG. A negative class built from rows is then many exact
copies of few galaxies. Matching negatives to positives per PSF x depth cell by drawing with replacement (a common way
to "balance" survey conditions) repeats rows further. Cross-validation that splits *rows* (plain k-fold) then puts
copies of the same galaxy on both sides of a fold, and a gate reads the copies, not the classes. This module measures
it on a design's own table:

- ``duplication``: how many distinct negative images a table holds, copies per image and the Kish effective count
  (sum of copies)^2 / sum(copies^2) [images];
- ``resample_per_cell``: the negatives redrawn with replacement to match the positives per PSF x depth cell;
- ``protocol_gates``: the core LR gate (the request's E4 test) under host-grouped folds (the reference), plain
  row-level k-fold, and resampling plus plain k-fold, for several designs and inputs and repetitions of the fold draw.

Images are (N, 3, 64, 64) float arrays [nanomaggies]; hosts are the LRG keys of ``pools.host_key``.
"""
from __future__ import annotations

import hashlib

import numpy as np
import pandas as pd

from . import gates
from .metrics import cluster_bootstrap_ci

PROTOCOLS = ("host-grouped folds", "plain k-fold (rows)", "resampled per cell + plain k-fold")
CELL_COLUMNS = ("psf_fwhm_used_r", "noise_sigma_r")  # seeing [arcsec] and sky noise [nanomaggies]: survey conditions


def image_ids(images: np.ndarray) -> np.ndarray:
    """A content id (16 hex digits of SHA-256) per image: two rows holding the same pixels get the same id."""
    x = np.ascontiguousarray(images)
    return np.array([hashlib.sha256(memoryview(x[i]).cast("B")).hexdigest()[:16] for i in range(len(x))])


def duplication(ids_neg) -> dict:
    """How duplicated a negative class is: rows, distinct images, the largest and median number of copies of one
    image, and the Kish effective count (sum c)^2 / sum c^2 over the copies c of each distinct image (= rows when every
    image is unique, = distinct images when all are copied equally)."""
    _, c = np.unique(np.asarray(ids_neg), return_counts=True)
    return {"negative rows": int(c.sum()), "distinct negative images": int(len(c)),
            "copies per image (median)": float(np.median(c)) if len(c) else np.nan,
            "copies per image (max)": int(c.max()) if len(c) else 0,
            "effective negatives (Kish)": float(c.sum() ** 2 / (c ** 2).sum()) if len(c) else np.nan}


def cell_of(meta: pd.DataFrame, rows, columns=CELL_COLUMNS, n_bins: int = 3) -> np.ndarray:
    """The survey-condition cell of each row: each column cut at its terciles (``n_bins`` quantile bins) over
    ``meta``, cells named by their bin numbers ("0-2")."""
    missing = [c for c in columns if c not in meta.columns]
    if missing:
        raise ValueError(f"the manifest lacks column(s) {missing}: no PSF x depth cells to match in")
    parts = []
    for c in columns:
        v = meta[c].to_numpy(float)
        edges = np.quantile(v, np.linspace(0, 1, n_bins + 1)[1:-1])
        parts.append(np.digitize(v[np.asarray(rows)], edges).astype(str))
    return np.array(["-".join(t) for t in zip(*parts)])


def resample_per_cell(table: pd.DataFrame, meta: pd.DataFrame, seed: int, columns=CELL_COLUMNS,
                      n_bins: int = 3) -> pd.DataFrame:
    """Negatives redrawn *with replacement* from the table's own negatives so that each PSF x depth cell holds as
    many negatives as positives (cells without negatives lose their positives' match and are dropped from the
    negatives): the balancing that duplicates rows further. Positives are kept as they are."""
    rng = np.random.default_rng(seed)
    pos, neg = table[table.label == 1], table[table.label == 0]
    cp, cn = cell_of(meta, pos["row"], columns, n_bins), cell_of(meta, neg["row"], columns, n_bins)
    picks = []
    for cell, k in zip(*np.unique(cp, return_counts=True)):
        pool = np.flatnonzero(cn == cell)
        if len(pool):
            picks.append(rng.choice(pool, k, replace=True))
    new_neg = neg.iloc[np.concatenate(picks)] if picks else neg.iloc[:0]
    return pd.concat([pos, new_neg], ignore_index=True)


def _fold_groups(kind: str, hosts: np.ndarray, n_folds: int, rng) -> np.ndarray:
    """Fold labels: whole hosts to random folds ("host"), or each row to a random fold ("row")."""
    if kind == "host":
        uniq, inv = np.unique(hosts, return_inverse=True)
        return rng.permutation(np.arange(len(uniq)) % n_folds)[inv]
    return rng.permutation(np.arange(len(hosts)) % n_folds)


def protocol_gates(tables: dict, stamps: np.ndarray, ctrls: np.ndarray, meta: pd.DataFrame, *, inputs=("raw",),
                   reps: int = 3, seed: int = 0, n_boot: int = 300, n_folds: int = 5, threshold: float = gates.THRESHOLD,
                   progress: bool = True) -> pd.DataFrame:
    """The core LR gate on each design's table under the three ``PROTOCOLS``, ``reps`` fold draws each.

    ``tables`` maps a design to its sample table (``pools.build_design``); ``inputs`` are "raw" and/or "residual"
    (``preprocess.azimuthal_residual``). The reference protocol assigns whole hosts to folds; plain k-fold assigns
    rows; the third redraws the negatives with replacement per PSF x depth cell (``resample_per_cell``) and then
    assigns rows (skipped where the manifest lacks the ``CELL_COLUMNS``). Every interval resamples hosts (95%). Returns one row per design, input, protocol and repetition:
    auroc, ci_low, ci_high, verdict (two-sided against ``threshold``) and the negatives' ``duplication``."""
    from tqdm import tqdm

    from .experiment import design_images
    from .preprocess import azimuthal_residual

    rows = []
    protos = PROTOCOLS if set(CELL_COLUMNS) <= set(meta.columns) else PROTOCOLS[:2]  # no cells to match in: skip
    jobs = [(d, inp, p, r) for d in tables for inp in inputs for p in protos for r in range(reps)]
    feats, ids = {}, {}
    for d, t in tables.items():
        x = design_images(t, stamps, ctrls)
        ids[d] = image_ids(x)
        for inp in inputs:
            feats[(d, inp)] = gates.core_features(azimuthal_residual(x) if inp == "residual" else x)
    for d, inp, p, r in (tqdm(jobs, desc="protocols", unit="gate") if progress else jobs):
        t = tables[d]
        rng = np.random.default_rng([seed, r])
        idx = np.arange(len(t))
        if p == PROTOCOLS[2]:
            rs = resample_per_cell(t.assign(_i=idx), meta, seed + r)
            idx = rs["_i"].to_numpy()
        y, hosts = t["label"].to_numpy()[idx], t["host"].to_numpy()[idx]
        fg = _fold_groups("host" if p == PROTOCOLS[0] else "row", hosts, n_folds, rng)
        s = gates.grouped_cv_scores(feats[(d, inp)][idx], y, hosts, n_folds=n_folds, seed=seed, fold_groups=fg)
        auc, lo, hi = cluster_bootstrap_ci(y, s, hosts, n_boot=n_boot, seed=seed + r)
        rows.append({"design": d, "input": inp, "protocol": p, "rep": r, "auroc": auc, "ci_low": lo, "ci_high": hi,
                     "verdict": gates.verdict(lo, hi, threshold), **duplication(ids[d][idx][y == 0])})
    return pd.DataFrame(rows)


def protocol_summary(df: pd.DataFrame) -> pd.DataFrame:
    """Per design, input and protocol: the gate AUROC over repetitions (mean, min, max), the share of repetitions
    read as a shortcut, and the negatives' distinct images and Kish effective count (first repetition), with the
    change from the host-grouped reference (mean AUROC)."""
    g = df.groupby(["design", "input", "protocol"], sort=False)
    out = g.agg(auroc=("auroc", "mean"), auroc_min=("auroc", "min"), auroc_max=("auroc", "max"),
                shortcut_share=("verdict", lambda v: float(np.mean(np.asarray(v) == "shortcut"))),
                negative_rows=("negative rows", "first"), distinct=("distinct negative images", "first"),
                kish=("effective negatives (Kish)", "first")).reset_index()
    ref = out[out.protocol == PROTOCOLS[0]].set_index(["design", "input"])["auroc"]
    out["change from host-grouped"] = [a - ref.loc[(d, i)] for d, i, a in zip(out.design, out.input, out.auroc)]
    return out


def ordering(summary: pd.DataFrame, a: str, b: str, inp: str = "raw") -> dict:
    """Which of designs ``a`` and ``b`` each protocol reads as the more separable on ``inp`` (mean AUROC), so a
    reader sees whether a row-level protocol reverses the host-grouped order: {protocol: (a's, b's, the higher)}."""
    out = {}
    for p in PROTOCOLS:
        s = summary[(summary.protocol == p) & (summary.input == inp)].set_index("design")["auroc"]
        if a in s and b in s:
            out[p] = (float(s[a]), float(s[b]), a if s[a] > s[b] else b)
    return out


def plain_kfold_leaks(n_rows_per_host: np.ndarray, n_folds: int = 5) -> float:
    """The expected share of a row's same-host copies that land in other folds under plain k-fold: (k - 1) / k for
    every host with more than one row. Returned as the share of rows with at least one copy in another fold's training
    set, for the given rows per host (each row assigned to a fold at random)."""
    c = np.asarray(n_rows_per_host, float)
    p_none = (1 / n_folds) ** (c - 1)  # all other copies in the row's own fold
    return float(np.sum(c * (1 - p_none)) / c.sum())


__all__ = ["PROTOCOLS", "CELL_COLUMNS", "image_ids", "duplication", "cell_of", "resample_per_cell", "protocol_gates",
           "protocol_summary", "ordering", "plain_kfold_leaks"]


def protocol_text(summary: pd.DataFrame, designs=("paired", "unpaired")) -> str:
    """What the protocols do, in words generated from ``protocol_summary``: per design (raw input), the core gate's
    mean AUROC under each protocol and the negatives' duplication; then whether a row-level protocol keeps or reverses
    the host-grouped ordering of the designs and of raw against residual input."""
    s = summary
    ref, plain, res = PROTOCOLS
    parts = []
    for d in designs:
        r = s[(s.design == d) & (s.input == "raw")].set_index("protocol")
        if not {ref, plain} <= set(r.index):
            continue
        t = (f"{d}: the core gate reads {r.loc[ref, 'auroc']:.3f} with host-grouped folds, {r.loc[plain, 'auroc']:.3f} "
             f"with plain k-fold")
        if res in r.index:
            t += (f" and {r.loc[res, 'auroc']:.3f} after resampling the negatives per PSF × depth cell "
                  f"({int(r.loc[res, 'negative_rows'])} rows of {int(r.loc[res, 'distinct'])} distinct images)")
        t += (f"; its {int(r.loc[ref, 'negative_rows'])} negatives are {int(r.loc[ref, 'distinct'])} distinct images "
              f"(Kish effective count {r.loc[ref, 'kish']:.0f})")
        parts.append(t)
    out = "; ".join(parts) + "." if parts else ""
    kept, reversed_ = [], []
    o = ordering(s, *designs) if len(designs) == 2 else {}
    for p in (plain, res):
        if ref in o and p in o:
            (kept if o[ref][2] == o[p][2] else reversed_).append(f"{designs[0]} against {designs[1]} ({p})")
        for d in designs:
            r = s[(s.design == d)].set_index(["protocol", "input"])["auroc"]
            if {(ref, "raw"), (ref, "residual"), (p, "raw"), (p, "residual")} <= set(r.index):
                same = (r[(ref, "raw")] > r[(ref, "residual")]) == (r[(p, "raw")] > r[(p, "residual")])
                (kept if same else reversed_).append(f"raw against residual input, {d} ({p})")
    if reversed_:
        out += " A row-level protocol reverses the host-grouped ordering of " + "; ".join(reversed_) + "."
    elif kept:
        out += (" Here the row-level protocols keep every host-grouped ordering (designs; raw against residual) "
                "but raise every reading: the leak inflates the gate rather than reordering it.")
    return out
