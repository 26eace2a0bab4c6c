"""The request's mini experiment (E1-E3) with the controls a referee adds.

E1: paired-trained model on a paired test set. E2: unpaired-trained model on an unpaired test set.
E3: the E2 model on the paired test set. Added: both models on both forms of one common test-host
set (H5), seen- vs unseen-host AUROC (H2), train-vs-validation gap, stratified AUROC, and the
request's success criteria with host-bootstrap CIs and "undecidable" verdicts.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from . import gates, pools
from .detectability import theta_bins  # noqa: F401  (the chapters' θ_E/FWHM bins: experiment.theta_bins)
from .metrics import (bin_levels, equivalence_verdict, fast_auroc, seeded_auroc, seeded_difference,
                      seeded_differences)
from .train import predict, score_models, train


def design_images(table: pd.DataFrame, stamps: np.ndarray, ctrls: np.ndarray) -> np.ndarray:
    """Images of a sample table: stamp (host + arc) or ctrl (host) of each row."""
    from .config import STAMP_SIZE

    rows = table["row"].to_numpy()
    is_stamp = (table["image"] == "stamp").to_numpy()
    out = np.empty((len(table), 3, STAMP_SIZE, STAMP_SIZE), np.float32)
    if is_stamp.any():
        out[is_stamp] = stamps[rows[is_stamp]]
    if (~is_stamp).any():
        out[~is_stamp] = ctrls[rows[~is_stamp]]
    return out


def seen_host_table(train_table: pd.DataFrame, meta: pd.DataFrame, n: int, seed: int) -> pd.DataFrame:
    """Evaluation images from the *training* hosts, in the training design's form: stamps of rows not
    used for training from hosts that supplied positives, ctrls of rows not used from hosts that
    supplied negatives (a host's ctrl is the same image in every row: these negatives were seen)."""
    keys = pools.host_key(meta).to_numpy()
    rng = np.random.default_rng(seed)
    used = set(train_table.loc[train_table.label == 1, "row"])
    pos_hosts = list(set(train_table.loc[train_table.label == 1, "host"]))
    neg_hosts = list(set(train_table.loc[train_table.label == 0, "host"]))
    pos_rows = np.array([r for r in np.flatnonzero(np.isin(keys, pos_hosts)) if r not in used], dtype=int)
    neg_rows = np.flatnonzero(np.isin(keys, neg_hosts))
    out = []
    for label, image, rows in ((1, "stamp", pos_rows), (0, "ctrl", neg_rows)):
        if not len(rows):
            raise ValueError(f"no unused {image} rows left on the training hosts for a seen-host evaluation")
        pick = np.sort(rng.choice(rows, min(n, len(rows)), replace=False))
        out.append(pd.DataFrame({"row": pick, "image": image, "label": label, "host": keys[pick]}))
    return pd.concat(out, ignore_index=True)


@dataclass
class ChapterData:
    """What the design chapters (pools, training, gates, sample size) start from: the images and metadata, the
    sizes planned from what the data hold (``pools.plan_sizes``), the host split and the data's fingerprint (the
    key of cached results)."""

    stamps: object
    ctrls: object
    meta: pd.DataFrame
    plan: object
    split: dict
    fingerprint: str

    @property
    def sizes_note(self) -> str:
        """The plan's note on reduced sizes, or how the hosts are split when the sizes are as asked."""
        return self.plan.note or f"Sizes as requested; hosts are split by {self.plan.split_by}."


def load_chapter(data: str, preset: str, n_hosts: dict, per_host: int, seed: int, n_per_class: dict, *,
                 split_by: str = "auto") -> ChapterData:
    """Load (or simulate: ``data`` empty) a chapter's data, plan its sizes and split its hosts, as every design
    chapter starts: ``n_hosts`` {"train", "val", "test"} and ``n_per_class`` as the profile asks, scaled down to
    what the data hold."""
    from .simulate import data_fingerprint, load_or_simulate

    n_all = sum(n_hosts.values())
    stamps, ctrls, meta = load_or_simulate(data, preset, n_all, per_host, seed)
    plan = pools.plan_sizes(meta, n_hosts, n_per_class, seed, split_by=split_by, where="data" if not data else data)
    split = pools.split_hosts(meta, plan.n_hosts, seed, by=plan.split_by)
    return ChapterData(stamps, ctrls, meta, plan, split, data_fingerprint(data, preset, n_all, per_host, seed))


def memorisation_by_bin(seen: tuple, unseen: tuple, *, n_boot: int, seed: int, min_positives: int = 10) -> pd.DataFrame:
    """Host memorisation per lens bin: AUROC on new injections into the *training* hosts minus AUROC on unseen
    hosts (seeds averaged, one joint host bootstrap, 95% interval), on all lenses and per θ_E/FWHM bin. ``seen``
    and ``unseen`` are (labels, scores (n_seeds, n), hosts, bins) with ``bins`` a Categorical over rows (the
    negatives' entries are ignored: each bin's lenses are read against all negatives of their set). Columns:
    lenses, positives (seen, unseen), gap, ci_low, ci_high; a bin with fewer than ``min_positives`` lenses on
    either side gets no interval."""
    (ys, Ss, gs, bs), (yu, Su, gu, bu) = seen, unseen
    ys, yu = np.asarray(ys), np.asarray(yu)
    rows = []
    levels = [(a, ms, mu) for (a, ms), (b, mu) in zip(bin_levels(ys, bs), bin_levels(yu, bu)) if a == b]
    for lv, ms, mu in levels:
        ps, pu = int((ms & (ys == 1)).sum()), int((mu & (yu == 1)).sum())
        row = {"lenses": lv, "positives (seen hosts)": ps, "positives (unseen hosts)": pu}
        if min(ps, pu) >= min_positives:
            d = seeded_difference(yu[mu], np.atleast_2d(Su)[:, mu], np.asarray(gu)[mu], ys[ms],
                                  np.atleast_2d(Ss)[:, ms], np.asarray(gs)[ms], n_boot=n_boot, seed=seed)
            row.update(gap=d.estimate, ci_low=d.ci_low, ci_high=d.ci_high)
        else:
            row.update(gap=np.nan, ci_low=np.nan, ci_high=np.nan)
        rows.append(row)
    return pd.DataFrame(rows)


@dataclass
class TestSet:
    """A labelled set of images that models are judged on (the training chapter's evaluation tables and the
    alternatives' common test sets alike): ``table`` has one row per image with label and host (and what the data
    give per image: theta_e_arcsec, psf_fwhm_used_r, arc_snr, the counter-image position; confuser_type for the
    confuser set); ``images`` (N, C, 64, 64) where the set is kept with its pixels; ``controls`` each image's
    host-only control (N, 3, 64, 64) where the data are paired, from which the reliance measure fills a hidden
    region; ``scores`` (n_seeds, N) of one design's models (one row per training seed) once they are scored."""

    name: str
    table: pd.DataFrame
    images: np.ndarray | None = None
    controls: np.ndarray | None = None
    scores: np.ndarray | None = None

    @property
    def y(self):
        return self.table["label"].to_numpy()

    @property
    def hosts(self):
        return self.table["host"].to_numpy()

    def ci(self, n_boot: int, seed: int, level: float = 0.95):
        """Seed-mean AUROC of ``scores`` with its host-bootstrap interval (``metrics.seeded_auroc``)."""
        if self.scores is None:
            raise ValueError(f"test set {self.name!r} has no model scores yet")
        return seeded_auroc(self.y, self.scores, self.hosts, n_boot=n_boot, seed=seed, level=level)


def _core_fill(x):
    return gates.fill_from_annulus(x, gates.CORE_MASK)


TRANSFORMS = {"core_fill": _core_fill}  # named image transforms (a name keeps the model cache usable)


def train_cached(x_tr, y_tr, x_va, y_va, *, seed, label, train_kw, cache_parts):
    """``train`` once per inputs: the weights, normaliser and history are kept under the results cache. The key is
    the training inputs' digest (``results.array_digest`` of the images and labels), the training code
    (``lensnb/train.py``), the training settings and seed, the CPU thread count (``train.cpu_threads``: the weights
    depend on it) and ``cache_parts`` (which name the data for the reader): the same images and labels give the same
    model whichever chapter or code path built them."""
    from . import results
    from .train import Normaliser, SmallResNet, TrainResult, cpu_threads

    if cache_parts is None:
        return train(x_tr, y_tr, x_va, y_va, seed=seed, label=label, **train_kw)
    path = results.model_path("model", {**cache_parts, "seed": seed, "label": label, "train_kw": train_kw,
                                        "inputs": results.array_digest(x_tr, y_tr, x_va, y_va),
                                        "train_code": results.code_hash("train"), "torch_threads": cpu_threads()})
    if path.exists():
        d = results.load_torch(path)
        model = SmallResNet(train_kw.get("width", 16), in_channels=len(d["median"]))
        model.load_state_dict(d["state"])
        norm = Normaliser(d["median"].numpy(), d["scale"].numpy(), bool(d["residual"]))
        return TrainResult(model, norm, pd.DataFrame(d["history"]), int(d["best_epoch"]), float(d["images_per_s"]),
                           key=path.stem)
    res = train(x_tr, y_tr, x_va, y_va, seed=seed, label=label, **train_kw)
    res.key = path.stem
    import torch

    results.save_torch(path, {"state": res.model.state_dict(), "median": torch.from_numpy(res.normaliser.median),
                              "scale": torch.from_numpy(res.normaliser.scale), "residual": res.normaliser.residual,
                              "best_epoch": res.best_epoch, "images_per_s": res.images_per_s,
                              "history": {c: res.history[c].tolist() for c in res.history.columns}})
    return res


def run(meta: pd.DataFrame, stamps: np.ndarray, ctrls: np.ndarray, *, n_hosts: dict, n_per_class: dict, seed: int,
        train_kw: dict, n_boot: int = 500, split_by: str = "host", designs=("paired", "unpaired"),
        transform=None, seeds=None, cache: str | None = None) -> dict:
    """Train one model per design and training seed, and evaluate everything.

    ``seed`` fixes the host split and the sample tables (the same for every training seed); ``seeds``
    (default ``[seed]``) are the training seeds. ``transform`` is None, a name in ``TRANSFORMS`` (e.g.
    ``"core_fill"``) or a callable applied to every training and evaluation image. ``cache`` (a data
    fingerprint, see ``lensnb.results``) keeps the trained models on disk, so another chapter asking
    for the same experiment gets the same models. Returns a dict of tables, models (design -> list over
    seeds), evaluations ((design, set) -> :class:`TestSet` with its scores) and a results table.
    """

    seeds = list(seeds) if seeds is not None else [seed]
    tf = TRANSFORMS[transform] if isinstance(transform, str) else transform
    split = pools.split_hosts(meta, n_hosts, seed, by=split_by)
    tables = {}
    for d in designs:
        tables[d] = {s: pools.build_design(d, meta, split[s], n_per_class[s], n_per_class[s], seed + i)
                     for i, s in enumerate(("train", "val"))}
        pools.check_split_disjoint(tables[d])
    test = {form: pools.build_design(form, meta, split["test"], n_per_class["test"], n_per_class["test"], seed + 7)
            for form in ("paired", "unpaired")}
    pools.check_split_disjoint({"train": tables[designs[0]]["train"], "test": test["paired"]})

    def imgs(t):
        x = design_images(t, stamps, ctrls)
        return tf(x) if tf is not None else x

    parts = None
    if cache is not None and (transform is None or isinstance(transform, str)):
        parts = {"data": cache, "n_hosts": n_hosts, "n_per_class": n_per_class, "split_seed": seed,
                 "split_by": split_by, "train_kw": train_kw, "transform": transform}
    rows, evals, models = [], {}, {}
    for d in designs:
        tr, va = tables[d]["train"], tables[d]["val"]
        x_tr, x_va = imgs(tr), imgs(va)
        models[d] = [train_cached(x_tr, tr["label"].to_numpy(), x_va, va["label"].to_numpy(), seed=s,
                                   label=f"{d} seed {s}", train_kw=train_kw,
                                   cache_parts=None if parts is None else {**parts, "design": d})
                     for s in seeds]
        sub = tr.sample(min(len(tr), 2 * n_per_class["val"]), random_state=seed)
        seen = seen_host_table(tr, meta, n_per_class["test"], seed)
        sets = {"train (subset)": sub, "validation": va, "test paired": test["paired"],
                "test unpaired": test["unpaired"], "seen hosts": seen}
        for name, t in sets.items():
            x = imgs(t)
            ev = TestSet(name, t, scores=score_models(models[d], x))
            evals[(d, name)] = ev
            r = ev.ci(n_boot, seed)
            rows.append({"trained on": d, "evaluated on": name, "auroc": r.estimate, "ci_low": r.ci_low,
                         "ci_high": r.ci_high, "seed_sd": r.seed_sd, "seed_min": min(r.per_seed),
                         "seed_max": max(r.per_seed), "hosts": t["host"].nunique(), "images": len(t)})
    return {"split": split, "tables": tables, "test": test, "models": models, "evals": evals, "seeds": seeds,
            "results": pd.DataFrame(rows)}


def criteria(out: dict, n_boot: int, seed: int, e2_threshold: float = 0.80, gap_threshold: float = 0.05) -> pd.DataFrame:
    """The request's success criteria, each with its decision rule:

    * E2 AUROC > ``e2_threshold``: one-sided, read from the 95% interval of the seed-mean AUROC
      (pass if the whole interval is above, fail if it is at or below, else undecidable);
    * E3 vs E2 gap < ``gap_threshold``: an equivalence question, decided by two one-sided tests at 5%
      each, i.e. from the 90% interval of E3 - E2 (joint bootstrap of the common test hosts, seed spread
      folded in): equivalent if the interval lies inside (-gap, gap), not equivalent if outside, else
      undecidable.

    The ``per-seed verdicts`` column repeats each decision for every training seed alone (host interval
    only), so a verdict that flips between seeds is visible.
    """
    from .gates import threshold_verdict

    ev = out["evals"]
    e2 = ev[("unpaired", "test unpaired")]
    e3 = ev[("unpaired", "test paired")]
    k = e2.scores.shape[0]
    r2 = e2.ci(n_boot, seed)
    gap = seeded_difference(e2.y, e2.scores, e2.hosts, e3.y, e3.scores, e3.hosts, n_boot=n_boot, seed=seed, level=0.90)
    v2 = threshold_verdict(r2.ci_low, r2.ci_high, e2_threshold)
    gv = equivalence_verdict(gap.ci_low, gap.ci_high, gap_threshold)
    seed_v2, seed_gv = [], []
    for i in range(k):
        a = seeded_auroc(e2.y, e2.scores[i], e2.hosts, n_boot=n_boot, seed=seed)
        seed_v2.append(threshold_verdict(a.ci_low, a.ci_high, e2_threshold))
        g = seeded_difference(e2.y, e2.scores[i], e2.hosts, e3.y, e3.scores[i], e3.hosts, n_boot=n_boot, seed=seed,
                              level=0.90)
        seed_gv.append(equivalence_verdict(g.ci_low, g.ci_high, gap_threshold))
    return pd.DataFrame([
        {"criterion": f"E2 AUROC > {e2_threshold}", "rule": "95% interval vs target", "measured": r2.estimate,
         "ci_low": r2.ci_low, "ci_high": r2.ci_high, "seed_sd": r2.seed_sd, "verdict": v2,
         "per-seed verdicts": ", ".join(seed_v2), "flips between seeds": len(set(seed_v2)) > 1},
        {"criterion": f"|E3 - E2| < {gap_threshold}", "rule": "TOST: 90% interval inside ±gap", "measured": gap.estimate,
         "ci_low": gap.ci_low, "ci_high": gap.ci_high, "seed_sd": gap.seed_sd, "verdict": gv,
         "per-seed verdicts": ", ".join(seed_gv), "flips between seeds": len(set(seed_gv)) > 1},
    ])


def tercile_labels(values, unit: str = "", digits: int = 2) -> pd.Categorical:
    """Terciles of ``values`` with sorted, rounded labels such as '0.50–0.91″' (NaN stays missing)."""
    v = np.asarray(values, float)
    edges = np.nanquantile(v, [0, 1 / 3, 2 / 3, 1])
    f = f"{{:.{digits}f}}"
    labels = [f"{f.format(a)}–{f.format(b)}{unit}" for a, b in zip(edges[:-1], edges[1:])]
    idx = np.clip(np.searchsorted(edges[1:-1], v, side="right"), 0, 2)
    out = pd.Series(np.array(labels, dtype=object)[idx], dtype=object)
    out[~np.isfinite(v)] = None
    return pd.Categorical(out, categories=list(dict.fromkeys(labels)), ordered=True)


STRATA = {"theta_e_arcsec": ("θ_E", "″", 2), "beta_over_theta_e": ("β/θ_E", "", 2), "arc_snr": ("arc S/N", "", 0)}


def strata(meta: pd.DataFrame, rows, extra: dict | None = None) -> list:
    """(name, categorical) groupings of the given rows: θ_E relative to the PSF FWHM (``theta_bins``) and
    terciles of each ``STRATA`` column (plus ``extra``, same form) the data carry."""
    out = []
    if {"theta_e_arcsec", "psf_fwhm_used_r"} <= set(meta.columns):
        out.append(("θ_E / PSF FWHM", theta_bins(meta["theta_e_arcsec"].to_numpy()[rows],
                                                   meta["psf_fwhm_used_r"].to_numpy()[rows])))
    for col, (name, unit, digits) in {**STRATA, **(extra or {})}.items():
        if col in meta.columns:
            out.append((name + " tercile", tercile_labels(meta[col].to_numpy()[rows], unit, digits)))
    return out


def stratified(out: dict, meta: pd.DataFrame, design: str, form: str, n_boot: int, seed: int,
               threshold: float | None = None) -> pd.DataFrame:
    """AUROC (seed mean, seed spread folded into the interval) of the positives in each stratum against
    all negatives: θ_E relative to the PSF FWHM (below / around / above), and terciles of θ_E, β/θ_E and
    arc S/N (the columns the data carry). With ``threshold``, each bin gets a one-sided verdict."""
    from .gates import threshold_verdict

    ev = out["evals"][(design, form)]
    t = ev.table
    rows_t = t["row"].to_numpy()
    pos = t["label"].to_numpy() == 1
    rows = []
    for prop, cats in strata(meta, rows_t):
        cats = pd.Series(cats)
        for level in cats.cat.categories:
            sel = ~pos | (cats == level).to_numpy()
            n_pos = int((pos & sel).sum())
            if n_pos < 10:
                continue
            r = seeded_auroc(t["label"].to_numpy()[sel], ev.scores[:, sel], t["host"].to_numpy()[sel], n_boot=n_boot,
                             seed=seed)
            row = {"property": prop, "bin": level, "positives": n_pos, "auroc": r.estimate, "ci_low": r.ci_low,
                   "ci_high": r.ci_high, "seed_sd": r.seed_sd}
            if threshold is not None:
                row["verdict"] = threshold_verdict(r.ci_low, r.ci_high, threshold)
            rows.append(row)
    return pd.DataFrame(rows)


# --------------------------------------------------------------------------- what E3 - E2 can detect
def same_host_pair_share(table: pd.DataFrame) -> float:
    """w: the share of positive-negative pairs of a test table that come from the same host
    (sum_h m_h n_h / (M N)); 0 for an unpaired table, about 1/H for a paired table of H hosts."""
    pos = table[table.label == 1]["host"].value_counts()
    neg = table[table.label == 0]["host"].value_counts()
    both = pos.index.intersection(neg.index)
    return float((pos[both] * neg[both]).sum() / (pos.sum() * neg.sum()))


def gap_under_resplits(table: pd.DataFrame, scores: np.ndarray, n_splits: int = 200, seed: int = 0) -> pd.DataFrame:
    """E3 - E2 for a per-image scorer over many random unpaired forms of one set of paired test rows:
    each split sends half of the hosts to P (their stamps) and half to N (their ctrls); E3 is the AUROC on
    the paired rows. Returns one row per split (the E2 AUROC and the gap)."""
    from .metrics import auroc

    y, s, g = table["label"].to_numpy(), np.asarray(scores, float), table["host"].to_numpy()
    hosts = np.unique(g)
    e3 = auroc(y, s)
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(n_splits):
        P = set(rng.permutation(hosts)[: len(hosts) // 2])
        inP = np.array([h in P for h in g])
        keep = (inP & (y == 1)) | (~inP & (y == 0))
        e2 = auroc(y[keep], s[keep])
        rows.append({"split": i, "E2": e2, "E3": e3, "gap": e3 - e2})
    return pd.DataFrame(rows)


def data_gates(table: pd.DataFrame, stamps: np.ndarray, ctrls: np.ndarray, props: pd.DataFrame | None, *,
               threshold: float = gates.THRESHOLD, n_boot: int = 500, seed: int = 0, nonlinear: bool = True) -> list:
    """The data-level battery on one design's images: the image gates and the host-property gate
    (``props``: one row per host, ``pools.host_properties``; None skips it)."""
    x = design_images(table, stamps, ctrls)
    y, g = table["label"].to_numpy(), table["host"].to_numpy()
    res = gates.image_gates(x, y, g, threshold=threshold, n_boot=n_boot, seed=seed, nonlinear=nonlinear)
    if props is not None and len(props.columns):
        res.append(gates.feature_gate("host properties", props.loc[table["host"]].to_numpy(float), y, g, threshold,
                                      n_boot=n_boot, seed=seed))
    return res


def design_tables(meta: pd.DataFrame, hosts, n_per_class: int, seed: int, props: pd.DataFrame,
                  designs=pools.DESIGNS, hybrid_fraction: float = 0.5) -> dict:
    """One sample table per design over the same hosts (the pool-design chapter's training tables)."""
    return {d: pools.build_design(d, meta, hosts, n_per_class, n_per_class, seed, host_props=props,
                                  hybrid_fraction=hybrid_fraction) for d in designs}


def design_gate_scores(tables: dict, stamps, ctrls, props: pd.DataFrame | None, *, seed: int = 0,
                       which=tuple(gates.GATES), cache_parts: dict | None = None,
                       inverted_check_below: float = 0.4) -> pd.DataFrame:
    """Out-of-fold (host-grouped; matched pairs in one fold) scores of every data-level gate on every
    design's table, long form: design, gate, label, host, score. A gate whose AUROC falls below
    ``inverted_check_below`` also gets the smallest AUROC of its permutation null (``null_min``), so
    ``gate_summary`` can tell an inverted shortcut from a cross-validation artifact. With ``cache_parts``
    the frame is computed once per inputs (``lensnb.results``), so every chapter that asks for these gates
    gets the same numbers."""
    from . import metrics, results

    def compute():
        out = []
        for d, t in tables.items():
            x = design_images(t, stamps, ctrls)
            y, g = t["label"].to_numpy(), t["host"].to_numpy()
            feats = {n: (gates.GATES[n].model, gates.GATES[n].features) for n in which}  # the gate registry
            if props is not None and len(props.columns):
                feats["host properties"] = ("lr", lambda _x, _t=t: props.loc[_t["host"]].to_numpy(float))
            folds = t["fold_group"].to_numpy() if "fold_group" in t else None
            for name, (model, f) in feats.items():
                X = f(x)
                s = gates.grouped_cv_scores(X, y, g, model=model, seed=seed, fold_groups=folds)
                frame = pd.DataFrame({"design": d, "gate": name, "label": y, "host": g, "score": s})
                if metrics.auroc(y, s) < inverted_check_below:  # far below chance: keep the gate's own null
                    null = gates.cv_null(X, y, g, model=model, seed=seed, fold_groups=folds)
                    frame["null_min"] = float(null.min())
                out.append(frame)
        return pd.concat(out, ignore_index=True)

    if cache_parts is None:
        return compute()
    parts = {**cache_parts, "designs": {d: pd.util.hash_pandas_object(t, index=False).sum() for d, t in tables.items()},
             "which": list(which), "props": None if props is None else list(props.columns), "seed": seed,
             "code": results.code_hash("gates", "experiment", "pools", "features")}
    return results.cached_frame("gate_scores", parts, compute)


def gate_summary(scores: pd.DataFrame, threshold: float = gates.THRESHOLD, n_boot: int = 500, seed: int = 0) -> pd.DataFrame:
    """AUROC, 95% host-bootstrap interval, kind and verdict of every (design, gate) in a score frame."""
    from .metrics import cluster_bootstrap_ci

    rows = []
    for (d, name), s in scores.groupby(["design", "gate"], sort=False):
        auc, lo, hi = cluster_bootstrap_ci(s["label"], s["score"], s["host"], n_boot=n_boot, seed=seed)
        arc = name in gates.ARC_SIGNAL
        v = gates.arc_verdict(lo, hi, threshold) if arc else gates.verdict(lo, hi, threshold)
        if v == "shortcut" and auc < 0.5:
            null_min = s["null_min"].iloc[0] if "null_min" in s and pd.notna(s["null_min"].iloc[0]) else -np.inf
            v = gates.INVERTED if auc < null_min else gates.CV_ARTIFACT
        rows.append({"design": d, "gate": name, "kind": "arc signal" if arc else "shortcut", "auroc": auc,
                     "ci_low": lo, "ci_high": hi, "verdict": v, "hosts": s["host"].nunique(), "images": len(s)})
    return pd.DataFrame(rows)


def design_differences(scores: pd.DataFrame, gate: str, pairs, n_boot: int = 500, seed: int = 0) -> pd.DataFrame:
    """For each (a, b) in ``pairs`` of designs: AUROC(b) - AUROC(a) of one gate, with the 95% interval
    of the difference from a joint bootstrap of the hosts both tables draw from; the verdict is read from
    that interval (never from whether two separate intervals overlap)."""
    from .metrics import difference_verdict

    rows = []
    for a, b in pairs:
        sa = scores[(scores.design == a) & (scores.gate == gate)]
        sb = scores[(scores.design == b) & (scores.gate == gate)]
        r = seeded_difference(sa["label"], sa["score"], sa["host"], sb["label"], sb["score"], sb["host"],
                              n_boot=n_boot, seed=seed)
        rows.append({"gate": gate, "comparison": f"{b} − {a}", "a": a, "b": b, "difference": r.estimate,
                     "ci_low": r.ci_low, "ci_high": r.ci_high, "verdict": difference_verdict(r.ci_low, r.ci_high, a, b)})
    return pd.DataFrame(rows)


def gate_learning_curve(meta: pd.DataFrame, stamps, ctrls, train_hosts, host_counts, per_host: int, seed: int, *,
                        designs=("paired", "unpaired"), n_boot: int = 300, threshold: float = gates.THRESHOLD) -> pd.DataFrame:
    """The core gates (linear and nonlinear) against the number of hosts their table is built from:
    for each count, a random subset of ``train_hosts`` and ``per_host`` rows per host (per class:
    (hosts // 2) x per_host images, so paired and unpaired see equal numbers)."""
    from tqdm import tqdm

    rows = []
    rng = np.random.default_rng(seed)
    order = rng.permutation(np.asarray(train_hosts))
    for h in tqdm(list(host_counts), desc="gates vs training hosts", unit="size"):
        hosts = order[:h]
        for d in designs:
            n = (h // 2) * per_host
            t = pools.build_design(d, meta, hosts, n, n, seed + h)
            x = design_images(t, stamps, ctrls)
            y, g = t["label"].to_numpy(), t["host"].to_numpy()
            for r in (gates.core_lr_gate(x, y, g, threshold, n_boot=n_boot, seed=seed),
                      gates.core_nonlinear_gate(x, y, g, threshold, n_boot=n_boot, seed=seed)):
                rows.append({"hosts": h, "design": d, "gate": r.name, "images per class": n, "auroc": r.statistic,
                             "ci_low": r.ci_low, "ci_high": r.ci_high, "verdict": r.verdict})
    return pd.DataFrame(rows)


def learning_curve(meta: pd.DataFrame, stamps, ctrls, split: dict, *, design: str, host_counts, per_host: int,
                   seeds, n_val: int, train_kw: dict, progress_label: str = "", cache: str | None = None) -> pd.DataFrame:
    """Test AUROC (clustered SE) against the number of training hosts for one design.

    For each (hosts, seed): a random subset of the training hosts, ``per_host`` rows each, images per
    class = (hosts // 2) x per_host (so paired and unpaired see the same number of images); early stopping
    on a validation set of ``n_val`` per class from the validation hosts; scored on the design's own form
    of the test hosts and on new injections into its training hosts (seen hosts). With ``cache`` (the data's
    fingerprint) each model is trained once per inputs (``train_cached``): a rerun retrains nothing it has trained.
    """
    from .power import auroc_clustered

    keys = pools.host_key(meta)
    rows_out = []
    test = pools.build_design(design, meta, split["test"], *pools.design_max_per_class(meta, split["test"], design), seed=0)
    val = pools.build_design(design, meta, split["val"], n_val, n_val, seed=1)
    x_test, x_val = design_images(test, stamps, ctrls), design_images(val, stamps, ctrls)
    for h in host_counts:
        for seed in seeds:
            rng = np.random.default_rng([seed, h])
            chosen = rng.choice(split["train"], h, replace=False)
            first_rows = meta.assign(_k=keys.to_numpy()).groupby("_k", sort=False).head(per_host).index
            sub = meta.loc[first_rows]
            sub = sub[pools.host_key(sub).isin(set(chosen))]
            n = (h // 2) * per_host  # what the smaller unpaired pool can supply; paired uses the same
            table = pools.build_design(design, meta.loc[sub.index].assign(_orig=sub.index).reset_index(drop=True),
                                       chosen, n, n, seed)
            table["row"] = sub.index.to_numpy()[table["row"].to_numpy()]
            res = train_cached(design_images(table, stamps, ctrls), table["label"].to_numpy(), x_val,
                               val["label"].to_numpy(), seed=seed, label=f"{progress_label}{design} h={h}",
                               train_kw=train_kw, cache_parts=None if cache is None else
                               {"data": cache, "curve": design, "hosts": int(h), "per_host": int(per_host)})
            s = predict(res.model, res.normaliser, x_test)
            auc, se = auroc_clustered(test["label"], s, test["host"])
            seen = seen_host_table(table, meta, len(test) // 2, seed)
            s_seen = predict(res.model, res.normaliser, design_images(seen, stamps, ctrls))
            auc_seen, _ = auroc_clustered(seen["label"], s_seen, seen["host"])
            rows_out.append({"design": design, "hosts": h, "per_host": per_host, "seed": seed, "images_per_class": n,
                             "test_auroc": auc, "test_se": se, "seen_auroc": auc_seen,
                             "seen_minus_unseen": auc_seen - auc, "best_epoch": res.best_epoch})
    return pd.DataFrame(rows_out)


def core_auc_vs_brightness(preset: str, mag_offsets, n_hosts: int, per_host: int, seed: int, *,
                           n_boot: int = 500, progress: bool = True) -> pd.DataFrame:
    """The request's core-only logistic regression on paired simulated data, with the preset's source
    population made brighter (negative offset) or fainter (positive) by ``mag_offsets`` [mag].

    The same hosts and lens configurations are used for every offset (same seed): only the source
    magnitudes move. Returns one row per offset: offset [mag], median source r magnitude [AB],
    median arc S/N (g+r+z matched filter), core-LR AUROC and its 95% host-bootstrap interval.
    """
    from . import populations
    from .dataset import StampStore
    from .gates import core_lr_gate
    from .simulate import cached_dataset

    base = populations.get_preset(preset)["src_mag_r"]
    rows = []
    offsets = list(mag_offsets)
    if progress:
        from tqdm import tqdm

        offsets = tqdm(offsets, desc="source brightness sweep", unit="dataset")
    for off in offsets:
        over = {"src_mag_r": {k: float(v) + float(off) for k, v in base.items()}} if off else None
        store = StampStore(cached_dataset(preset, n_hosts, per_host, seed, preset_overrides=over))
        meta = store.meta
        idx = np.arange(len(store))
        x = np.concatenate([store.images(idx, "stamp_npz"), store.images(idx, "ctrl_stamp_npz")])
        y = np.r_[np.ones(len(meta)), np.zeros(len(meta))]
        g = np.r_[meta["host_id"].to_numpy(), meta["host_id"].to_numpy()]
        r = core_lr_gate(x, y, g, n_boot=n_boot, seed=seed)
        rows.append({"mag_offset": float(off), "median_src_mag_r": float(meta["src_mag_r"].median()),
                     "median_arc_snr": float(meta["arc_snr"].median()), "core_auc": r.statistic,
                     "ci_low": r.ci_low, "ci_high": r.ci_high})
    return pd.DataFrame(rows)


def null_reading(auc: float, null) -> str:
    """Where a cross-validated gate's AUROC sits against its permuted-label null AUROCs: 'above its null' (above
    every permutation), 'below its null' (below every one), else 'inside its null' (no direction to read)."""
    null = np.asarray(null, float)
    return "above its null" if auc > null.max() else "below its null" if auc < null.min() else "inside its null"


def realism_sensitivity(preset: str, n_hosts: int, per_host: int, seed: int, *, n_boot: int = 500,
                        steps=None, margin: float = 0.05, n_perm: int = 19, progress: bool = True) -> pd.DataFrame:
    """The request's core-only logistic regression (E4) as the simulator's realism options are switched on
    one after another (``populations.REALISM_STEPS``, each at its ``REALISM_ON`` value), starting from all off.

    For each step: one simulated dataset (same hosts, lenses and sources; the preset's other priors), and
    the core-LR AUROC with its 95% host-bootstrap interval for the paired and the unpaired design (all
    hosts; unpaired: positives and negatives from disjoint halves), on raw stamps and on azimuthal-median
    residuals (``lensnb.preprocess``), and the change from the all-off baseline: the difference of the two
    AUROCs with its 95% joint host-bootstrap interval (``change``: up / down / no detectable change) and two
    one-sided tests at 90% against ``margin`` (``equivalence``). On the last step (everything on) each gate is also
    compared with its own permuted-label null (``gates.cv_null``, ``n_perm`` permutations; their range is a
    two-sided test at 2/(n_perm + 1)): ``null_low``/``null_high`` and ``null_reading`` ('above its null', 'below its
    null', or 'inside its null' -- a gate inside its null shows no direction, however far it sits from 0.5).
    Returns one row per (step, design, input).
    """
    from . import populations
    from .dataset import StampStore
    from .metrics import cluster_bootstrap_ci
    from .preprocess import azimuthal_residual
    from .simulate import cached_dataset

    steps = list(steps or populations.REALISM_STEPS)
    plan = [("none: smooth, centred hosts, sky noise", dict(populations.REALISM_OFF))]
    real = dict(populations.REALISM_OFF)
    for st in steps:
        real = {**real, st: populations.REALISM_ON[st]}
        plan.append((f"+ {populations.REALISM_LABELS[st]}", dict(real)))
    it = plan
    if progress:
        from tqdm import tqdm

        it = tqdm(plan, desc="realism steps", unit="dataset")
    rows, scores = [], {}
    for label, real in it:
        store = StampStore(cached_dataset(preset, n_hosts, per_host, seed, preset_overrides={"realism": real}))
        meta = store.meta
        idx = np.arange(len(store))
        stamps, ctrls = store.images(idx, "stamp_npz"), store.images(idx, "ctrl_stamp_npz")
        hosts = pools.host_key(meta).unique()
        n_un = (len(hosts) // 2) * per_host
        tables = {"paired": pools.build_design("paired", meta, hosts, len(meta), len(meta), seed),
                  "unpaired": pools.build_design("unpaired", meta, hosts, n_un, n_un, seed)}
        for design, t in tables.items():
            x = design_images(t, stamps, ctrls)
            y, g = t["label"].to_numpy(), t["host"].to_numpy()
            for inp, xx in (("raw", x), ("residual", azimuthal_residual(x))):
                sc = gates.grouped_cv_scores(gates.core_features(xx), y, g, seed=seed)
                auc, lo, hi = cluster_bootstrap_ci(y, sc, g, n_boot=n_boot, seed=seed)
                row = {"step": label, "design": design, "input": inp, "core_auc": auc, "ci_low": lo, "ci_high": hi}
                if label == plan[-1][0] and n_perm:
                    null = gates.cv_null(gates.core_features(xx), y, g, n_perm=n_perm, seed=seed)
                    row.update(null_low=float(null.min()), null_high=float(null.max()),
                               null_reading=null_reading(auc, null))
                base = scores.setdefault((design, inp), (y, sc, g))
                if base[1] is not sc:  # the change from the all-off baseline: same hosts, joint host bootstrap
                    if not (np.array_equal(base[0], y) and np.array_equal(base[2], g)):
                        raise RuntimeError(f"step {label!r}: the {design} sample differs from the baseline's")
                    dd = seeded_differences(*base, y, sc, g, n_boot=n_boot, seed=seed, levels=(0.95, 0.90))
                    d95, d90 = dd[0.95], dd[0.90]
                    row.update(diff=d95.estimate, diff_low=d95.ci_low, diff_high=d95.ci_high,
                               change="up" if d95.ci_low > 0 else "down" if d95.ci_high < 0 else "no detectable change",
                               equivalence=equivalence_verdict(d90.ci_low, d90.ci_high, margin))
                rows.append(row)
    return pd.DataFrame(rows)


def arc_brightness(stamps, ctrls, rows=None, sigma=None, chunk: int = 2000) -> pd.DataFrame:
    """The lensed arc's brightness, measured the same way on any paired data (simulated or the team's): the arc
    is stamp - ctrl; per band its flux [nmgy] and AB magnitude, its matched-filter S/N sqrt(sum (arc / sigma)^2)
    with sigma the known per-band pixel noise (``sigma``, (N, 3) [nmgy/pixel], e.g. the simulator's noise_sigma_*
    columns) or else the ctrl's robust (MAD) pixel noise beyond 16 px from the centre, the best band's S/N and the
    g+r+z S/N (lensnb's ``arc_snr`` definition), LensPop's best-band S/N with the host's and the arc's photon
    noise (``arc_snr_lenspop``: ``lensnb.detectability.lenspop_snr``, the definition of LensPop's S/N >= 20 cut;
    on a noisy stamp - ctrl it ranks noisy pixels, so it reads somewhat high for faint arcs), and the
    arc-to-host flux ratio in r (host: the ctrl's flux within 16 px). One row per pair (``rows``: a subset of
    rows)."""
    import torch

    from . import detectability
    from .config import STAMP_SIZE

    rows = np.arange(len(stamps)) if rows is None else np.asarray(rows)
    yy, xx = np.mgrid[:STAMP_SIZE, :STAMP_SIZE] - (STAMP_SIZE - 1) / 2
    rad = np.hypot(xx, yy)
    inner, outer = rad <= 16, rad > 16
    out = []
    for s in range(0, len(rows), chunk):
        r = rows[s:s + chunk]
        st, ct = np.asarray(stamps[r], np.float64), np.asarray(ctrls[r], np.float64)
        arc = st - ct
        if sigma is not None:
            sig = np.asarray(sigma, np.float64)[s:s + chunk]
        else:
            o = ct[:, :, outer]
            sig = 1.4826 * np.median(np.abs(o - np.median(o, axis=2, keepdims=True)), axis=2)
        snr = np.sqrt(((arc / np.maximum(sig, 1e-12)[:, :, None, None]) ** 2).sum(axis=(2, 3)))
        flux = arc.sum(axis=(2, 3))
        host_r = ct[:, 1][:, inner].sum(axis=1)
        d = {f"arc_mag_{b}": 22.5 - 2.5 * np.log10(np.maximum(flux[:, i], 1e-6)) for i, b in enumerate("grz")}
        d.update({f"arc_snr_{b}": snr[:, i] for i, b in enumerate("grz")})
        lp = detectability.lenspop_snr(torch.from_numpy(arc), torch.from_numpy(ct), sig).numpy()
        d.update(arc_snr_best=snr.max(axis=1), arc_snr_grz=np.sqrt((snr**2).sum(axis=1)),
                 arc_snr_lenspop=lp.max(axis=1), arc_to_host_r=flux[:, 1] / np.maximum(host_r, 1e-6))
        out.append(pd.DataFrame(d))
    return pd.concat(out, ignore_index=True) if out else pd.DataFrame()


def crossing(x, y, level: float) -> float:
    """The x at which the piecewise-linear curve y(x) (x ascending) first rises through ``level``;
    NaN when it does not cross within the range (never reaches it, or starts at or above it)."""
    x, y = np.asarray(x, float), np.asarray(y, float)
    above = np.flatnonzero(y >= level)
    if not len(above):
        return float("nan")
    i = above[0]
    if i == 0:
        return float("nan")
    t = (level - y[i - 1]) / (y[i] - y[i - 1])
    return float(x[i - 1] + t * (x[i] - x[i - 1]))


# --------------------------------------------------------------------------- reliance on regions
def counter_image_masks(meta_rows: pd.DataFrame, radius_px: float) -> np.ndarray:
    """(N, 64, 64) disks of ``radius_px`` [pixels] around each injection's counter-image (the innermost
    image, ``inner_image_r_arcsec`` from the lens centre, on the side opposite the source); empty where
    the source has a single image. Axes: x along columns, y along rows (lensnb's convention)."""
    from .config import CENTER_PIX, PIXEL_SCALE, STAMP_SIZE

    r_in = meta_rows["inner_image_r_arcsec"].to_numpy(float)
    sx, sy = meta_rows["src_x_arcsec"].to_numpy(float), meta_rows["src_y_arcsec"].to_numpy(float)
    b = np.maximum(np.hypot(sx, sy), 1e-9)
    cx = CENTER_PIX - sx / b * r_in / PIXEL_SCALE
    cy = CENTER_PIX - sy / b * r_in / PIXEL_SCALE
    yy, xx = np.mgrid[0:STAMP_SIZE, 0:STAMP_SIZE]
    m = (xx[None] - cx[:, None, None]) ** 2 + (yy[None] - cy[:, None, None]) ** 2 <= radius_px**2
    m[~np.isfinite(r_in)] = False
    return m


def region_masks(test: pd.DataFrame, stamps, ctrls, meta: pd.DataFrame, *, counter_radius_px: float,
                 dilations=(1,)) -> dict:
    """Masks for every image of a paired test table (both images of a row share the row's mask): the
    central 10x10 box ("core"), the arc (stamp - ctrl above 1 sigma, dilated by each of ``dilations``
    [px]), and, where the simulator's metadata give the counter-image position, the counter-image disk
    and the arc without it ("outer arc")."""
    rows = test["row"].to_numpy()
    n = len(rows)
    out = {"core": np.broadcast_to(gates.CORE_MASK, (n,) + gates.CORE_MASK.shape)}
    for d in dilations:
        out[f"arc (dilated {d} px)"] = gates.arc_masks(stamps[rows], ctrls[rows], dilate=d)
    if {"inner_image_r_arcsec", "src_x_arcsec", "src_y_arcsec"} <= set(meta.columns):
        ci = counter_image_masks(meta.iloc[rows], counter_radius_px)
        out["counter-image"] = ci
        out["outer arc"] = out[f"arc (dilated {dilations[0]} px)"] & ~ci
    return out


def masked_scores(models, images: np.ndarray, masks: dict, controls: np.ndarray | None = None) -> dict:
    """Scores (n_seeds, N) of every model on the unmodified images and on each masked version; masked
    pixels are taken from each image's control when ``controls`` are given (``gates.fill_from_control``:
    the region then holds no arc light and no class information), else from the annulus median."""
    out = {"unmodified": score_models(models, images)}
    for name, mk in masks.items():
        mk = np.asarray(mk)
        x = gates.fill_from_control(images, controls, mk) if controls is not None else gates.fill_from_annulus(images, mk)
        out[name] = score_models(models, x)
    return out


def reliance_by_bin(scores: dict, test: pd.DataFrame, bins, *, fit_hosts, relative: float = 0.2,
                    n_boot: int = 300, seed: int = 0, min_pos: int = 10) -> pd.DataFrame:
    """For every mask and bin of positives (all negatives kept): the masked AUROC and the share of the
    model's skill the mask removes (``gates.reliance_gate``: joint host bootstrap, seed spread folded in)."""
    y, g = test["label"].to_numpy(), test["host"].to_numpy()
    bins = pd.Series(bins)
    levels = [("all θ_E", np.ones(len(y), bool))] + [(lv, (bins == lv).to_numpy()) for lv in bins.cat.categories]
    rows = []
    for level, inbin in levels:
        sel = (y == 0) | inbin
        n_pos = int((sel & (y == 1)).sum())
        if n_pos < min_pos:
            continue
        full = scores["unmodified"][:, sel]
        a = seeded_auroc(y[sel], full, g[sel], n_boot=n_boot, seed=seed)
        for name, s in scores.items():
            if name == "unmodified":
                continue
            r = gates.reliance_gate(name, full, s[:, sel], y[sel], g[sel], relative=relative, n_boot=n_boot, seed=seed,
                                    fit_groups=fit_hosts)
            rows.append({"θ_E bin": level, "positives": n_pos, "masked": name, "auroc": a.estimate,
                         "masked auroc": float(np.mean([fast_auroc(y[sel], s[k, sel]) for k in range(len(s))])),
                         **{k: r[k] for k in ("AUROC drop", "drop_low", "drop_high", "share of skill lost", "ci_low",
                                             "ci_high", "verdict")}})
    return pd.DataFrame(rows)


def arc_flux_outside(test: pd.DataFrame, stamps, ctrls, masks: dict, band: int = 1) -> pd.Series:
    """Median over the positives' rows of the share of the arc's flux (stamp - ctrl, one band) that a
    mask leaves visible: a mask that leaves much of the arc's light explains a high masked AUROC."""
    rows = test.loc[test.label == 1, "row"].to_numpy()
    sel = (test.label == 1).to_numpy()
    d = (stamps[rows] - ctrls[rows])[:, band]
    tot = np.maximum(d.sum(axis=(1, 2)), 1e-12)
    out = {}
    for name, m in masks.items():
        mk = np.asarray(m)[sel]
        out[name] = float(np.median((d * ~mk).sum(axis=(1, 2)) / tot))
    return pd.Series(out)


# --------------------------------------------------------------------------- null injection
def null_injection(hosts_manifest, *, preset: str, per_host: int, seed: int, max_hosts: int | None = None):
    """Zero-flux arcs pushed through the real injection path (``lensnb.inject`` with ``arc_scale=0``)
    into the host cutouts of ``hosts_manifest`` (the team's manifest, or a simulated one). The output
    is cached under the results directory, keyed by the manifest's fingerprint and the arguments.
    Returns (stamps, ctrls, meta) of the null manifest."""
    from . import results
    from .dataset import load
    from .inject import inject

    parts = {"hosts": results.fingerprint(hosts_manifest), "preset": preset, "per_host": per_host, "seed": seed,
             "max_hosts": max_hosts, "code": results.code_hash("inject", "simulate", "render", "dataset", "populations")}
    path = results.cache_dir() / f"null_{results.key(parts)}.parquet"
    if not path.exists():
        inject(hosts_manifest, path, preset=preset, per_host=per_host, seed=seed, arc_scale=0.0, max_hosts=max_hosts)
    imgs, meta = load(path)
    return imgs["stamp_npz"], imgs["ctrl_stamp_npz"], meta


def null_set(data: str, preset: str, n_hosts: int, per_host: int, seed: int):
    """The null injection (``null_injection``, ``per_host`` zero-flux arcs into each of at most ``n_hosts`` hosts)
    on the team's manifest ``data``, or, with ``data`` empty, on a cached simulated set of ``preset`` with that many
    hosts. Returns (stamps, ctrls, host keys) of the null manifest."""
    from .simulate import cached_dataset

    src = data if data else cached_dataset(preset, n_hosts, per_host, seed)
    ns, nc, meta = null_injection(src, preset=preset if not data else "request", per_host=per_host, seed=seed,
                                  max_hosts=n_hosts)
    return ns, nc, pools.host_key(meta).to_numpy()
