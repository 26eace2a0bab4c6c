"""What to do instead (Q5): alternative training designs, each trained with one network budget and judged on
one set of common test sets fixed before any training.

A candidate (:data:`CANDIDATES`) is a training design (``paired``/``unpaired`` host pools, or ``real``: the
team's real lenses and non-lenses), an input (what the network and the gates see: ``raw`` stamps, the
``residual`` after subtracting each band's azimuthal-median profile, ``raw+residual`` stacked as 6 channels,
or ``core_masked``: the central 10x10 px replaced by the surrounding annulus median at train and test), a
training treatment (``plain``, ``core_dropout``: the core replaced in a random share of training images,
``hard_negatives``: part of the negatives replaced by ring-shuffled positives and simulated confusers) and
the arc brightness it trains at (``physical``, or ``bright``: the same lenses with the request preset's
source magnitudes).

The common test sets (:func:`test_sets`) are unseen hosts at the ``physical`` preset's brightness (the
primary), the same hosts and lenses at the request's brightness, and a confuser set holding every confuser
type of :mod:`lensnb.confusers` on unseen hosts. Each test host gives one image (its stamp or its control), so
false-positive rates count distinct galaxies.

Units: images in nanomaggies per pixel; radii in pixels; theta_E in arcsec.
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import pandas as pd

from . import gates, pools, preprocess
from .config import STAMP_SIZE
from .experiment import TestSet  # noqa: F401  (the common test sets: one class with the training chapter's)
from .dataset import REAL_REQUIRED, load_real, write_real_manifest  # noqa: F401  (the real-lens manifest: dataset)
from .metrics import fpr_at_tpr, resolvable_fpr, tpr_at_fpr, tpr_point  # noqa: F401  (alt.tpr_at_fpr in the chapters)

INPUTS = ("raw", "residual", "raw+residual", "core_masked")
TREATMENTS = ("plain", "core_dropout", "hard_negatives")


@dataclass(frozen=True)
class Candidate:
    """One alternative design (see the module docstring)."""

    name: str
    label: str
    design: str = "unpaired"  # "paired", "unpaired" or "real"
    input: str = "raw"
    treatment: str = "plain"
    brightness: str = "physical"  # the arc brightness it trains at: "physical" or "bright"
    what: str = ""


CANDIDATES: dict[str, Candidate] = {c.name: c for c in (
    Candidate("paired_raw", "paired, raw", "paired", what="the team's current design"),
    Candidate("unpaired_raw", "unpaired, raw", "unpaired", what="the proposal (the baseline of every comparison)"),
    Candidate("paired_residual", "paired, residual", "paired", "residual",
              what="azimuthal-median profile subtracted per band, train and test"),
    Candidate("unpaired_residual", "unpaired, residual", "unpaired", "residual",
              what="azimuthal-median profile subtracted per band, train and test"),
    Candidate("unpaired_raw_residual", "unpaired, raw + residual", "unpaired", "raw+residual",
              what="raw and residual stacked as 6 channels"),
    Candidate("unpaired_core_dropout", "unpaired, core dropout", "unpaired", "raw", "core_dropout",
              what="the core replaced by the annulus median in a random share of training images"),
    Candidate("unpaired_core_masked", "unpaired, core masked", "unpaired", "core_masked",
              what="the core replaced by the annulus median at train and test"),
    Candidate("unpaired_hard_negatives", "unpaired, hard negatives", "unpaired", "raw", "hard_negatives",
              what="part of the negatives: ring-shuffled positives and simulated confusers"),
    Candidate("unpaired_bright", "unpaired, bright arcs", "unpaired", brightness="bright",
              what="trained on the same lenses at the request's (brighter) source magnitudes"),
    Candidate("real_lenses", "real lenses + real non-lenses", "real",
              what="the DESI Legacy Surveys finders' route: trained on real lenses and real non-lenses"),
)}
BASELINE = "unpaired_raw"

#: What the literature reports for each kind of candidate (only from ``../shared/science/alternatives_sources.md``;
#: the section id is given so a reader can check it).
LITERATURE = {
    "paired_raw": "No paper read names a core-pixel shortcut for lens finders (alternatives_sources A8.4); the "
                  "closest reported cues are colour and PSF sensitivity of DES finders (A8.2).",
    "unpaired_raw": "HOLISMOKES-style sets paint sources onto real LRG cutouts and take real survey galaxies as "
                    "negatives, i.e. unpaired pools (A4.2).",
    "paired_residual": "Subtracting the lens light from training and test images alone hurt in HSC (AUROC 0.808 "
                       "original vs 0.841 original + subtracted; A2.1); g − αi difference images gave no gain in "
                       "HOLISMOKES XI (A2.2).",
    "unpaired_residual": "Residuals of imperfect lens subtraction hurt networks trained on subtracted images alone "
                         "(A2.1); realistic subtraction absorbs part of the lensed light (A2.4).",
    "unpaired_raw_residual": "Original + subtracted images together gave AUROC 0.841 against 0.808 for the "
                             "original alone in HSC (A2.1).",
    "unpaired_core_dropout": "Masking the lens core as a deliberate input design was not found in any "
                             "lens-finding source read (A6.5).",
    "unpaired_core_masked": "Masking the lens core was not found in any lens-finding source read (A6.5).",
    "unpaired_hard_negatives": "The negative mix decided performance in HOLISMOKES XI: adding 5000 earlier false "
                               "positives raised the CNN's TPR0 from 0 to 32.8% (A1.3); false positives in UNIONS "
                               "were mainly rings, spirals and mergers (A1.7).",
    "unpaired_bright": "Lens finders lose accuracy for lensed sources fainter than g = 21.5 (A8.2); LensPop's "
                       "detectability needs S/N ≥ 20 (A7.2).",
    "real_lenses": "The DESI Legacy Surveys searches train on known lenses, high-grade candidates and non-lenses "
                   "(A3.1–A3.3); HST confirmed all 51 candidates followed up (A3.4); adding real lenses raised "
                   "Euclid's completeness on real data by about 20% (A4.1).",
}


def get_candidates(names) -> list[Candidate]:
    """The candidates named (a list or a comma-separated string); an unknown name is refused, naming the known
    ones."""
    if isinstance(names, str):
        names = [n.strip() for n in names.split(",") if n.strip()]
    names = list(names)
    bad = [n for n in names if n not in CANDIDATES]
    if bad or not names:
        raise ValueError(f"unknown candidate(s) {bad or names!r}; candidates: {', '.join(CANDIDATES)}")
    return [CANDIDATES[n] for n in names]


# --------------------------------------------------------------------------- inputs
def candidate_input(kind: str, images: np.ndarray) -> np.ndarray:
    """What a candidate's network and gates see, from raw (N, 3, 64, 64) images: ``raw``, ``residual``
    (``preprocess.azimuthal_residual``), ``raw+residual`` (N, 6, 64, 64) or ``core_masked`` (the central 10x10 px
    replaced per band by the annulus median, ``gates.fill_from_annulus``)."""
    x = np.asarray(images, np.float32)
    if kind == "raw":
        return x
    if kind == "residual":
        return preprocess.azimuthal_residual(x)
    if kind == "raw+residual":
        return np.concatenate([x, preprocess.azimuthal_residual(x)], axis=1)
    if kind == "core_masked":
        return gates.fill_from_annulus(x, gates.CORE_MASK).astype(np.float32)
    raise ValueError(f"unknown input {kind!r}; inputs: {', '.join(INPUTS)}")


def hard_negative_images(negatives: np.ndarray, positives: np.ndarray, confusers: np.ndarray, rng, *,
                         shuffle_share: float = 0.25, confuser_share: float = 0.25) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Replace ``shuffle_share`` of the negatives by ring-shuffled positives (``preprocess.azimuthal_shuffle``:
    the radial profile and every ring's pixels kept, the arc's shape destroyed) and ``confuser_share`` by
    confuser stamps (drawn from ``confusers``). Returns (images, kind of each: "control" / "shuffled positive" /
    "confuser", index of the positive a shuffled image came from (-1 for the others))."""
    if shuffle_share < 0 or confuser_share < 0 or shuffle_share + confuser_share > 1:
        raise ValueError("hard-negative shares must be >= 0 and sum to at most 1")
    n = len(negatives)
    out = np.array(negatives, np.float32, copy=True)
    kind = np.full(n, "control", dtype=object)
    source = np.full(n, -1)
    slots = rng.permutation(n)
    n_sh = int(round(shuffle_share * n))
    n_cf = min(int(round(confuser_share * n)), len(confusers))
    sh, cf = slots[:n_sh], slots[n_sh:n_sh + n_cf]
    if n_sh:
        src = rng.choice(len(positives), n_sh, replace=n_sh > len(positives))
        out[sh] = preprocess.azimuthal_shuffle(positives[src], rng)
        kind[sh] = "shuffled positive"
        source[sh] = src
    if n_cf:
        out[cf] = confusers[rng.choice(len(confusers), n_cf, replace=False)]
        kind[cf] = "confuser"
    return out, kind, source


def shortcut_verdict(verdicts) -> str:
    """One verdict from a candidate's core gates (linear and nonlinear, on its own input): 'removes the core
    shortcut' if every gate says no shortcut, 'does not remove it' if any gate finds one, else 'undecidable at
    this size'."""
    v = list(verdicts)
    if any(x == "shortcut" for x in v):
        return "does not remove it"
    if v and all(x == "no shortcut" for x in v):
        return "removes the core shortcut"
    return "undecidable at this size"


VERDICT_ORDER = {"removes the core shortcut": 0, "undecidable at this size": 1, "does not remove it": 2}

#: The default of the alternatives chapter's ``loss_margin`` parameter: the largest AUROC loss against the proposal
#: that still counts as keeping the lenses. It is a stated choice, not a measurement: 0.05 is the change the request
#: itself calls negligible (its E3 − E2 criterion), so a design is not condemned for a loss the team would accept
#: between its own test sets; the chapter shows each design's TPR at the operating FPR beside it, which is what a
#: team would lose in candidates. Removing the shortcut by removing the signal is no remedy.
LOSS_MARGIN = 0.05


def keeps_lenses(ci_low: float, ci_high: float, margin: float = LOSS_MARGIN) -> bool:
    """Whether a design is not shown to lose the lenses: ``lens_reading`` of its 90% AUROC-change interval
    (design − proposal) is 'keeps the lenses' or 'undecidable'; no interval: True (nothing is claimed)."""
    if not (np.isfinite(ci_low) and np.isfinite(ci_high)):
        return True
    return lens_reading(ci_low, ci_high, margin) != "loses the lenses"


def lens_reading(ci_low: float, ci_high: float, margin: float = LOSS_MARGIN) -> str:
    """A design's AUROC change from the proposal read against the loss margin, from its 90% interval (one-sided
    tests at 5%): 'loses the lenses' (the whole interval below -margin), 'keeps the lenses' (the whole interval
    above -margin: non-inferior), else 'undecidable'."""
    if ci_high < -margin:
        return "loses the lenses"
    if ci_low > -margin:
        return "keeps the lenses"
    return "undecidable"


def differences_by_lens(out: "Comparison", tests: dict, *, n_boot: int, seed: int, margin: float = LOSS_MARGIN,
                        min_positives: int = 10) -> pd.DataFrame:
    """Which lenses a design's verdict holds for: each design's AUROC change from the proposal (design − unpaired
    raw on the same test images; joint host bootstrap, training seeds folded in, 90% interval) on all test lenses
    and per θ_E/FWHM bin, on the primary test set and (where simulated) on the same lenses at the request's
    brightness. Columns: candidate, test set, lenses (bin), positives, change, ci_low, ci_high, reading
    (:func:`lens_reading`); a bin with fewer than ``min_positives`` test lenses gets no interval."""
    from .experiment import theta_bins
    from .metrics import bin_levels, seeded_difference

    rows = []
    for tname in ("primary", "bright"):
        if tname not in tests or (BASELINE, tname) not in out.scores:
            continue
        ts = tests[tname]
        base = out.scores[(BASELINE, tname)]
        levels = bin_levels(ts.y, theta_bins(ts.table["theta_e_arcsec"], ts.table["psf_fwhm_used_r"]), "all test lenses")
        for c in out.summary["candidate"]:
            if c == BASELINE or (c, tname) not in out.scores:
                continue
            S = out.scores[(c, tname)]
            for lv, sel in levels:
                npos = int((sel & (ts.y == 1)).sum())
                row = {"candidate": c, "test set": tname, "lenses": lv, "positives": npos}
                if npos >= min_positives:
                    d = seeded_difference(ts.y[sel], base[:, sel], ts.hosts[sel], ts.y[sel], S[:, sel], ts.hosts[sel],
                                          n_boot=n_boot, level=0.90, seed=seed)
                    row.update(change=d.estimate, ci_low=d.ci_low, ci_high=d.ci_high,
                               reading=lens_reading(d.ci_low, d.ci_high, margin))
                else:
                    row.update(change=np.nan, ci_low=np.nan, ci_high=np.nan,
                               reading=f"fewer than {min_positives} test lenses")
                rows.append(row)
    return pd.DataFrame(rows)


def completeness_change(out: "Comparison", tests: dict, ref: tuple[str, str], new: tuple[str, str], *, fpr: float,
                        n_boot: int, seed: int, min_positives: int = 10) -> pd.DataFrame:
    """What arc brightness costs a finder at its working point: the completeness (TPR at ``fpr`` on the test
    set's non-lenses) of two (candidate, test set) pairs of ``run``'s scores that share rows and hosts, on all
    test lenses and per θ_E/FWHM bin of each set's own lenses, and the change new − ref (joint host bootstrap,
    thresholds re-chosen in each draw, training seeds averaged; 95%). Used two ways: the simulator's model trained
    on too-bright arcs against the one trained at the detectable brightness, both on detectable lenses; and on
    the team's data, their model on detectable arcs injected into their own test hosts against the same model on
    their own arcs. Columns: lenses, positives (ref, new), completeness and change with intervals, reading
    ("lower", "higher", "no difference shown"). A side with fewer than ``min_positives`` lenses in a bin gets no
    completeness there, and the bin no change."""
    from .experiment import theta_bins
    from .metrics import bin_levels, tpr_change

    (ca, ta), (cb, tb) = ref, new
    A, B = tests[ta], tests[tb]
    if not (np.array_equal(A.y, B.y) and np.array_equal(A.hosts, B.hosts)):
        raise ValueError(f"completeness_change: test sets {ta!r} and {tb!r} do not share rows and hosts")
    Sa, Sb = out.scores[(ca, ta)], out.scores[(cb, tb)]
    y, g = A.y, A.hosts
    ba, bb = (bin_levels(y, theta_bins(t.table["theta_e_arcsec"], t.table["psf_fwhm_used_r"]), "all test lenses")
              for t in (A, B))
    levels = [(a, sa, sb) for (a, sa), (b, sb) in zip(ba, bb) if a == b]
    rows = []
    for lv, sa, sb in levels:
        na, nb = int((sa & (y == 1)).sum()), int((sb & (y == 1)).sum())
        if lv != "all test lenses" and na == 0 and nb == 0:
            continue
        row = {"lenses": lv, "positives, ref": na, "positives, new": nb}
        for key, S, sub, n in (("ref", Sa, sa, na), ("new", Sb, sb, nb)):
            if n >= min_positives:
                e, lo, hi = tpr_at_fpr(y, S, g, fpr, n_boot=n_boot, seed=seed, subset=sub)
            else:
                e = lo = hi = np.nan
            row.update({f"completeness, {key}": e, f"{key}_low": lo, f"{key}_high": hi})
        if min(na, nb) >= min_positives:
            e, lo, hi = tpr_change(y, Sa, Sb, g, fpr, sub_a=sa, sub_b=sb, n_boot=n_boot, seed=seed)
            reading = "higher" if lo > 0 else "lower" if hi < 0 else "no difference shown"
        else:
            e, lo, hi, reading = np.nan, np.nan, np.nan, f"fewer than {min_positives} lenses"
        row.update(change=e, change_low=lo, change_high=hi, reading=reading)
        rows.append(row)
    return pd.DataFrame(rows)


RESIDUAL_STEPS = ("paired_raw", "paired_residual", "unpaired_raw", "unpaired_residual", "unpaired_raw_residual")


def population_dependence(by_lens: pd.DataFrame, reliance: pd.DataFrame, labels: dict, *,
                          arcs: dict | None = None, relative: float = 0.2, gate_bins: pd.DataFrame | None = None,
                          memorisation: pd.DataFrame | None = None, memo_margin: float = 0.05,
                          gate_designs=RESIDUAL_STEPS) -> pd.DataFrame:
    """Which conclusions depend on the population: one row per conclusion, with the lenses it holds for, fails for and
    cannot decide, and the numbers. Rows come from ``differences_by_lens`` (each design against the proposal, per
    θ_E/FWHM bin and brightness: "keeps the lenses"), from the reliance table of ``run`` (paired and unpaired raw
    models, core box and counter-image disk: "relies on ..."), from ``run``'s ``gate_bins`` (the core gates, linear
    and nonlinear, on each of ``gate_designs``' own training input: "the core gates find a shortcut", holding where
    either gate does and failing where both find none) and from its ``memorisation`` (seen- minus unseen-host AUROC
    above ``memo_margin``). ``labels`` names the designs, ``arcs`` the test sets ({"primary": "detectable
    brightness", "bright": "request brightness"}). A bin without enough lenses is left out.
    """
    from .metrics import format_interval, monitor_verdict

    arcs = arcs or {"primary": "primary", "bright": "bright"}
    rows = []

    def add(conclusion, cells):
        held = [w for w, r, _ in cells if r == "holds"]
        failed = [w for w, r, _ in cells if r == "fails"]
        open_ = [w for w, r, _ in cells if r == "undecidable"]
        if cells:
            rows.append({"conclusion": conclusion, "holds for": "; ".join(held) or "—",
                         "fails for": "; ".join(failed) or "—", "undecidable for": "; ".join(open_) or "—",
                         "numbers": "; ".join(f"{w}: {n}" for w, _, n in cells)})

    if len(by_lens):
        bl = by_lens[by_lens["change"].notna() & (by_lens["lenses"] != "all test lenses")]
        for c in dict.fromkeys(bl["candidate"]):
            cells = []
            for _, r in bl[bl.candidate == c].iterrows():
                res = {"keeps the lenses": "holds", "loses the lenses": "fails"}.get(r["reading"], "undecidable")
                cells.append((f"{r['lenses']}, {arcs.get(r['test set'], r['test set'])}", res,
                              format_interval(r["change"], r["ci_low"], r["ci_high"])))
            add(f"{labels.get(c, c)} keeps the lenses (ΔAUROC vs the proposal, 90%)", cells)
    if len(reliance):
        rel = reliance[reliance["θ_E bin"] != "all θ_E"]
        for c in ("unpaired_raw", "paired_raw"):
            for region in ("core", "counter-image"):
                sub = rel[(rel.candidate == c) & (rel.masked == region)]
                cells = [(str(r["θ_E bin"]), {"relies": "holds", "does not rely": "fails"}.get(r.verdict, "undecidable"),
                          format_interval(r["share of skill lost"], r.ci_low, r.ci_high)
                          if np.isfinite(r["share of skill lost"]) else "no skill above chance to lose")
                         for _, r in sub.iterrows()]
                add(f"the {labels.get(c, c)} model relies on the {region} (> {relative:g} of its skill, 95%)", cells)
    if gate_bins is not None and len(gate_bins):
        gb = gate_bins[(gate_bins["lenses"] != "all lenses") & gate_bins["auroc"].notna()]
        for c in [c for c in gate_designs if c in set(gb["candidate"])]:
            cells = []
            for lv in dict.fromkeys(gb.loc[gb.candidate == c, "lenses"]):
                g = gb[(gb.candidate == c) & (gb.lenses == lv)].set_index("gate")
                v = list(g["verdict"])
                res = "holds" if "shortcut" in v else ("fails" if v and all(x == "no shortcut" for x in v)
                                                       else "undecidable")
                cells.append((lv, res, ", ".join(f"{'linear' if k == 'core LR' else 'nonlinear'} "
                                                 f"{format_interval(r.auroc, r.ci_low, r.ci_high)}"
                                                 for k, r in g.iterrows())))
            add(f"the core gates find a shortcut in the {labels.get(c, c)} training input (AUROC outside the "
                f"gate band, 95%)", cells)
    if memorisation is not None and len(memorisation):
        for c in dict.fromkeys(memorisation["candidate"]):
            sub = memorisation[(memorisation.candidate == c) & (memorisation.lenses != "all lenses")
                               & memorisation["gap"].notna()]
            cells = [(r.lenses, {"fires": "holds", "quiet": "fails"}.get(monitor_verdict(r.ci_low, r.ci_high, memo_margin),
                                                                          "undecidable"),
                      format_interval(r.gap, r.ci_low, r.ci_high)) for _, r in sub.iterrows()]
            add(f"the {labels.get(c, c)} network memorises its training hosts (seen − unseen AUROC > {memo_margin:g}, "
                f"95%)", cells)
    return pd.DataFrame(rows, columns=["conclusion", "holds for", "fails for", "undecidable for", "numbers"])





def residual_table(summary: pd.DataFrame, by_lens: pd.DataFrame, labels: dict, *, fpr: float,
                   steps=RESIDUAL_STEPS) -> pd.DataFrame:
    """What residual input does, design by design (paired and unpaired; raw, residual, raw + residual): the core
    gates on the design's own training input (linear and nonlinear, 95%), the CNN's AUROC change from the proposal on
    all test lenses and per θ_E/FWHM bin (90%, with ``lens_reading``), and its TPR at ``fpr`` (95%). One row per
    design of ``steps`` that ran; ``summary`` and ``by_lens`` are ``run``'s summary and ``differences_by_lens``."""
    from .metrics import format_interval

    def iv(v, lo, hi):
        return format_interval(v, lo, hi) if np.isfinite([v, lo, hi]).all() else "—"

    rows = []
    s = summary.set_index("candidate")
    tk = f"tpr_{fpr:g}"
    for c in steps:
        if c not in s.index:
            continue
        r = s.loc[c]
        row = {"design": labels.get(c, c), "core LR (95%)": iv(r["core LR"], r["core LR_low"], r["core LR_high"]),
               "nonlinear core (95%)": iv(r["nonlinear core"], r["nonlinear core_low"], r["nonlinear core_high"]),
               "core shortcut": r["shortcut"]}
        if len(by_lens):
            b = by_lens[(by_lens.candidate == c) & (by_lens["test set"] == "primary")]
            for _, x in b.iterrows():
                row[f"ΔAUROC, {x['lenses']} (90%)"] = (f"{iv(x['change'], x['ci_low'], x['ci_high'])}: {x['reading']}"
                                                       if np.isfinite(x["change"]) else x["reading"])
        if tk in s.columns:
            row[f"TPR at {100 * fpr:g}% FPR (95%)"] = iv(r[tk], r[tk + "_low"], r[tk + "_high"])
        row["_baseline"] = c == BASELINE
        rows.append(row)
    t = pd.DataFrame(rows)
    if not len(t):
        return t
    for k in [k for k in t.columns if k.startswith("ΔAUROC")]:  # the proposal is the reference of every change
        t.loc[t["_baseline"], k] = "reference"
    return t.drop(columns="_baseline").fillna("—")


def set_aside(out: "Comparison", names) -> tuple["Comparison", pd.DataFrame]:
    """Take the candidates ``names`` out of ``run``'s ranking and of every per-design table (summary, ranked, gates,
    theta, snr, confusers, reliance, results), renumbering the ranks; return the trimmed comparison and their summary
    rows, to be shown apart. For the real-lens route: its simulated stand-in re-renders the simulator's own lenses
    and cannot fail, so it is a demonstration that the route runs, never a design to rank; real lenses train on a
    set of another size than the simulated designs, so they are reported beside the ranking, not in it."""
    names = set(names)
    trim = {}
    for k in ("summary", "ranked", "gates", "theta", "snr", "confusers", "reliance", "results"):
        t = getattr(out, k)
        if isinstance(t, pd.DataFrame) and "candidate" in t.columns:
            trim[k] = t[~t["candidate"].isin(names)].reset_index(drop=True)
    if "rank" in trim.get("ranked", pd.DataFrame()).columns:
        trim["ranked"] = trim["ranked"].assign(rank=np.arange(1, len(trim["ranked"]) + 1))
    aside = out.summary[out.summary["candidate"].isin(names)].reset_index(drop=True)
    return replace(out, **trim), aside


def rank(table: pd.DataFrame, metric: str = "tpr", margin: float = LOSS_MARGIN) -> pd.DataFrame:
    """Rank candidates: designs not shown to lose the lenses (``keeps_lenses`` of the 90% interval ``diff90_low`` /
    ``diff90_high``, the one reading the per-bin table uses) before those that lose them; within each, by the
    shortcut verdict (removes < undecidable < does not), then by ``metric`` (descending). Adds ``lenses``
    (``lens_reading``), ``keeps lenses`` and ``rank`` (1 = first) columns."""
    t = table.copy()
    t["lenses"] = ["baseline" if lo == hi == 0 else lens_reading(lo, hi, margin) if np.isfinite(lo) and np.isfinite(hi)
                   else "undecidable" for lo, hi in zip(t["diff90_low"], t["diff90_high"])]
    t["keeps lenses"] = t["lenses"] != "loses the lenses"  # keeps_lenses, read off the reading just made
    t["_k"] = (~t["keeps lenses"]).astype(int)
    t["_v"] = t["shortcut"].map(VERDICT_ORDER).fillna(3)
    t = t.sort_values(["_k", "_v", metric], ascending=[True, True, False], kind="stable").drop(columns=["_k", "_v"])
    t.insert(0, "rank", np.arange(1, len(t) + 1))
    return t.reset_index(drop=True)


# --------------------------------------------------------------------------- data
def _confuser_dataset(preset: str, n_hosts: int, per_host: int, seed: int, overrides: dict | None = None) -> Path:
    """A cached simulated set whose arcs are replaced by confusers of every type (same hosts as the
    preset's dataset with this seed and host count)."""
    import hashlib
    import json

    from .config import PROCESSED_DIR
    from .simulate import simulator_hash, simulate

    tag = "_o" + hashlib.sha256(json.dumps(overrides, sort_keys=True).encode()).hexdigest()[:8] if overrides else ""
    path = PROCESSED_DIR / f"conf_{preset}{tag}_h{n_hosts}_k{per_host}_s{seed}_{simulator_hash()}.parquet"
    if not path.exists():
        simulate(preset, n_hosts, per_host, seed, path, confusers="all", preset_overrides=overrides)
    return path


def reliance_masks(ts: TestSet, counter_radius_fwhm: float = 0.75) -> dict:
    """The regions the reliance measure hides in a test set (each later filled from the image's own control):
    the central 10x10 box ("core") and, where the table gives the counter-image's position, a disk of
    ``counter_radius_fwhm`` times the median r-band FWHM around it ("counter-image"). Empty without controls."""
    from .config import PIXEL_SCALE
    from .experiment import counter_image_masks

    if ts.controls is None:
        return {}
    n = len(ts.table)
    out = {"core": np.broadcast_to(gates.CORE_MASK, (n,) + gates.CORE_MASK.shape)}
    t = ts.table
    if {"inner_image_r_arcsec", "src_x_arcsec", "src_y_arcsec"} <= set(t.columns):
        pos = t["label"].to_numpy() == 1
        if np.isfinite(t["inner_image_r_arcsec"].to_numpy(float)[pos]).any():
            fwhm_px = float(np.nanmedian(t["psf_fwhm_used_r"].to_numpy(float)[pos])) / PIXEL_SCALE
            out["counter-image"] = counter_image_masks(t, counter_radius_fwhm * fwhm_px)
    return out


def _load(path, with_ctrls: bool = True):
    from .dataset import StampStore

    store = StampStore(path)
    rows = np.arange(len(store))
    return (store.images(rows, "stamp_npz"), store.images(rows, "ctrl_stamp_npz") if with_ctrls else None,
            store.meta.reset_index(drop=True))


def unpaired_test_table(meta: pd.DataFrame, seed: int) -> pd.DataFrame:
    """One image per test host: stamps of half the hosts (positives), controls of the other half (negatives)."""
    keys = pools.host_key(meta)
    first = ~keys.duplicated()
    hosts = keys[first].to_numpy()
    rng = np.random.default_rng(seed)
    perm = hosts[rng.permutation(len(hosts))]
    pos_h, neg_h = set(perm[: len(perm) // 2]), set(perm[len(perm) // 2:])
    rows = np.flatnonzero(first.to_numpy())
    is_pos = np.array([keys.iloc[r] in pos_h for r in rows])
    t = pd.DataFrame({"row": rows, "image": np.where(is_pos, "stamp", "ctrl"), "label": is_pos.astype(int),
                      "host": keys.iloc[rows].to_numpy()})
    assert not (pos_h & neg_h)
    return t


def _test_frame(table: pd.DataFrame, meta: pd.DataFrame) -> pd.DataFrame:
    t = table.reset_index(drop=True).copy()
    for c in ("theta_e_arcsec", "psf_fwhm_used_r", "arc_snr", "inner_image_r_arcsec", "src_x_arcsec", "src_y_arcsec"):
        t[c] = meta[c].to_numpy()[t["row"].to_numpy()] if c in meta else np.nan
    return t


def _images(table: pd.DataFrame, stamps, ctrls) -> np.ndarray:
    from .experiment import design_images

    return design_images(table, stamps, ctrls)


BRIGHT_PRESET = "request"  # whose source magnitudes the "bright" sets use


def bright_overrides(bright_preset: str = BRIGHT_PRESET) -> dict:
    """Preset overrides that give the ``physical`` preset's lenses the source magnitudes of ``bright_preset``."""
    from .populations import get_preset

    return {"src_mag_r": get_preset(bright_preset)["src_mag_r"]}


def variant_test_set(name: str, primary: TestSet, n_hosts: int, seed: int, overrides: dict, *,
                     preset: str = "physical") -> TestSet:
    """The primary test set's hosts and lenses re-simulated with preset ``overrides`` (e.g. clumpy sources, a
    PSF mismatch): the same rows of the same hosts, so a change against the primary is a paired comparison."""
    from .simulate import cached_dataset

    s, c, m = _load(cached_dataset(preset, n_hosts, 1, seed, preset_overrides=overrides))
    t = _test_frame(primary.table[["row", "image", "label", "host"]], m)
    if not (pools.host_key(m).to_numpy()[t["row"].to_numpy()] == t["host"].to_numpy()).all():
        raise RuntimeError(f"the {name} test set's hosts differ from the primary's")
    return TestSet(name, t, images=_images(t, s, c), controls=c[t["row"].to_numpy()])


INJECT_PRESET = "detectable"  # whose arcs go into the team's own test controls (the sourced detectable population)


def injected_test_set(primary: TestSet, meta: pd.DataFrame, ctrls: np.ndarray, seed: int, *,
                      preset: str = INJECT_PRESET, device=None) -> TestSet:
    """The primary test set of the team's data with every lens replaced by a ``preset`` arc injected
    (``lensnb.inject``) into the same host's own control cutout: the same rows, hosts and labels, the same
    non-lens images, only the arcs differ. So a model's completeness here against the primary set says what the
    brightness and θ_E of the team's own arcs do to it. ``meta``/``ctrls`` are the rows the primary table's
    ``row`` indexes."""
    from .inject import host_columns, inject_arrays

    t = primary.table.copy()
    pos = np.flatnonzero(t["label"].to_numpy() == 1)
    rows = t["row"].to_numpy()[pos]
    hosts = meta.iloc[rows][host_columns(meta.columns)].reset_index(drop=True)
    im, stamps, hidx = inject_arrays(hosts, ctrls[rows], preset=preset, per_host=1, seed=seed, device=device,
                                     where="your test hosts")
    if not (hidx == np.arange(len(rows))).all():
        raise RuntimeError("the injection did not keep one arc per test lens in order")
    for c in ("theta_e_arcsec", "arc_snr", "inner_image_r_arcsec", "src_x_arcsec", "src_y_arcsec"):
        t[c] = np.nan if c not in t else t[c].astype(float)
        if c in im:
            t.loc[pos, c] = im[c].to_numpy(float)
    images = primary.images.copy()
    images[pos] = stamps
    return TestSet(f"`{preset}` arcs injected into your test hosts", t, images=images, controls=primary.controls)


def test_sets(n_hosts: int, seed: int, *, preset: str = "physical", data_test=None,
              inject_preset: str = INJECT_PRESET) -> dict[str, TestSet]:
    """The common test sets, fixed before any training (one image per host; hosts unseen in training: a
    separate simulation seed). ``data_test`` (stamps, ctrls, meta of the team's test hosts) replaces the
    simulated primary set and adds ``injected``: the same test hosts with ``inject_preset`` arcs injected into
    their own controls instead of the team's arcs (:func:`injected_test_set`); the request-brightness and
    confuser sets exist only for the simulator."""
    out = {}
    if data_test is not None:
        stamps, ctrls, meta = data_test
        t = _test_frame(unpaired_test_table(meta, seed), meta)
        out["primary"] = TestSet("your data (unseen hosts)", t, images=_images(t, stamps, ctrls),
                                 controls=ctrls[t["row"].to_numpy()])
        if inject_preset:
            out["injected"] = injected_test_set(out["primary"], meta, ctrls, seed + 1, preset=inject_preset)
        return out
    from .simulate import cached_dataset

    stamps, ctrls, meta = _load(cached_dataset(preset, n_hosts, 1, seed))
    t = _test_frame(unpaired_test_table(meta, seed), meta)
    out["primary"] = TestSet(f"{preset} brightness", t, images=_images(t, stamps, ctrls), controls=ctrls[t["row"].to_numpy()])
    bs, bc, bm = _load(cached_dataset(preset, n_hosts, 1, seed, preset_overrides=bright_overrides()))
    if not (pools.host_key(bm) == pools.host_key(meta)).all():
        raise RuntimeError("the bright test set's hosts differ from the primary's")
    tb = _test_frame(t[["row", "image", "label", "host"]], bm)
    out["bright"] = TestSet(f"{BRIGHT_PRESET} brightness", tb, images=_images(tb, bs, bc), controls=bc[tb["row"].to_numpy()])
    cs, _, cm = _load(_confuser_dataset(preset, n_hosts, 1, seed), with_ctrls=False)
    tc = pd.DataFrame({"row": np.arange(len(cm)), "image": "stamp", "label": 0, "host": pools.host_key(cm).to_numpy(),
                       "confuser_type": cm["confuser_type"].to_numpy()})
    out["confusers"] = TestSet("confusers (every type)", tc, images=cs)
    return out


# --------------------------------------------------------------------------- training and judging
def _candidate_tables(cand: Candidate, meta: pd.DataFrame, split: dict, n_per_class: dict, seed: int) -> dict:
    design = "unpaired" if cand.design == "real" else cand.design
    tables = {s: pools.build_design(design, meta, split[s], n_per_class[s], n_per_class[s], seed + i)
              for i, s in enumerate(("train", "val"))}
    pools.check_split_disjoint(tables)
    return tables


def _real_tables(meta: pd.DataFrame, seed: int, val_share: float = 0.2) -> dict:
    """Train/validation split of a real-lens manifest by galaxy (host)."""
    hosts = meta["host"].unique()
    rng = np.random.default_rng(seed)
    perm = hosts[rng.permutation(len(hosts))]
    val = set(perm[: max(2, int(round(val_share * len(perm))))])
    t = pd.DataFrame({"row": np.arange(len(meta)), "image": "stamp", "label": meta["label"].to_numpy(),
                      "host": meta["host"].to_numpy()})
    return {"train": t[~t["host"].isin(val)].reset_index(drop=True), "val": t[t["host"].isin(val)].reset_index(drop=True)}


def training_images(cand: Candidate, tables: dict, data: dict, seed: int, *, dropout_p: float, dropout_radius_px: float,
                    shuffle_share: float, confuser_share: float) -> dict:
    """Raw training and validation images of a candidate (before its input transform), with its treatment
    applied: {"train": (images, labels, hosts, kind), "val": ...}. ``data`` holds "stamps"/"ctrls"/"meta" (the
    primary set), and where needed "bright" (stamps, ctrls, meta), "confusers" (stamps, meta), "real" (images, meta)."""
    out = {}
    for i, s in enumerate(("train", "val")):
        t = tables[s]
        if cand.design == "real":
            x = data["real"][0][t["row"].to_numpy()]
        elif cand.brightness == "bright":
            bs, bc, _ = data["bright"]
            x = _images(t, bs, bc)
        else:
            x = _images(t, data["stamps"], data["ctrls"])
        y = t["label"].to_numpy()
        hosts = t["host"].to_numpy().astype(object)
        kind = np.where(y == 1, "lens", "control").astype(object)
        rng = np.random.default_rng([seed, 17, i])
        if cand.treatment == "hard_negatives":
            cs, cm = data["confusers"]
            neg_hosts = set(t.loc[t.label == 0, "host"])
            ck = pools.host_key(cm).to_numpy()
            crow = np.flatnonzero(np.isin(ck, list(neg_hosts)))
            neg = np.flatnonzero(y == 0)
            pos = np.flatnonzero(y == 1)
            xn, kn, src = hard_negative_images(x[neg], x[pos], cs[crow], rng, shuffle_share=shuffle_share,
                                               confuser_share=confuser_share)
            x[neg] = xn
            kind[neg] = kn
            hn = hosts[neg]
            hn[src >= 0] = hosts[pos][src[src >= 0]]  # a shuffled positive keeps its own host's light: its host
            hosts[neg] = hn
        if cand.treatment == "core_dropout" and s == "train":
            from .preprocess import core_dropout

            x = core_dropout(x, rng, dropout_p, dropout_radius_px)
        out[s] = (x, y, hosts, kind)
    return out


def memorisation(cand: Candidate, models, data: dict, tables: dict | None, prim: TestSet, bins, *,
                 seed: int, n_boot: int, primary_scores=None) -> pd.DataFrame:
    """Host memorisation of a candidate's models (``experiment.memorisation_by_bin``): new injections into its
    training hosts (``experiment.seen_host_table``, as many of each class as the primary test set's smaller class)
    against the primary test set's unseen hosts, on all lenses and per θ_E/FWHM bin (``bins`` of the primary test
    set); ``tables`` are the candidate's train/val sample tables (``run``'s ``tables``). Empty where the candidate did
    not train or its training hosts have no unused rows left."""
    from .experiment import design_images, memorisation_by_bin, seen_host_table
    from .train import score_models

    if not models or not tables or cand.design == "real":
        return pd.DataFrame()
    meta = data["meta"]
    n_seen = int(min((prim.y == 1).sum(), (prim.y == 0).sum()))
    try:
        seen_t = seen_host_table(tables["train"], meta, n_seen, seed)
    except ValueError:
        return pd.DataFrame()
    x = candidate_input(cand.input, design_images(seen_t, data["stamps"], data["ctrls"]))
    S_seen = score_models(models, x)
    S_prim = primary_scores if primary_scores is not None else \
        score_models(models, candidate_input(cand.input, prim.images))
    y_seen = seen_t["label"].to_numpy()
    b_seen = _training_bins(cand, seen_t, data, y_seen)
    if b_seen is None:
        b_seen = pd.Categorical([None] * len(y_seen), categories=list(bins.categories))
    return memorisation_by_bin((y_seen, S_seen, seen_t["host"].to_numpy(), b_seen), (prim.y, S_prim, prim.hosts, bins),
                               n_boot=n_boot, seed=seed).assign(candidate=cand.name)


def _training_bins(cand: Candidate, table: pd.DataFrame, data: dict, y) -> pd.Categorical | None:
    """The θ_E/FWHM bin of each training positive of a simulated candidate (negatives: None); None where the
    training rows carry no θ_E (real lenses, data without the columns)."""
    from .detectability import theta_bins

    if cand.design == "real":
        return None
    meta = data["bright"][2] if cand.brightness == "bright" else data["meta"]
    if not {"theta_e_arcsec", "psf_fwhm_used_r"} <= set(meta.columns):
        return None
    rows = table["row"].to_numpy()
    b = theta_bins(meta["theta_e_arcsec"].to_numpy()[rows], meta["psf_fwhm_used_r"].to_numpy()[rows])
    return pd.Categorical(np.where(np.asarray(y) == 1, np.asarray(b, dtype=object), None), categories=b.categories,
                          ordered=True)


def _auc_row(name, y, S, g, n_boot, seed):
    from .metrics import seeded_auroc

    r = seeded_auroc(y, S, g, n_boot=n_boot, seed=seed)
    return {"auroc": r.estimate, "ci_low": r.ci_low, "ci_high": r.ci_high, "seed_sd": r.seed_sd}


def _frame():
    return pd.DataFrame()


@dataclass
class Comparison:
    """The alternatives compared on the common test sets: what ``train_candidates`` fills (the training half) and
    what ``judge`` adds (the judging half); ``run`` returns both. Tables are long form with a ``candidate`` column.

    Training: ``split`` (the host split), ``scores`` ((candidate, test set) -> (n_seeds, N) scores; test sets
    include "primary, <region> hidden" for the reliance measure), ``gates`` (the registered gates on each candidate's
    own training input), ``gate_bins`` (the core gates per θ_E/FWHM bin, ``gates.gate_by_bin``), ``kinds`` (the
    hard-negative mix), ``timing`` (s per candidate), ``models`` (candidate -> trained models, one per seed),
    ``tables`` (candidate -> its train/val sample tables), ``hidden`` (the regions hidden for the reliance measure).

    Judging: ``results`` (candidate x test set AUROC), ``summary`` (one row per candidate: primary AUROC, difference
    from the baseline, TPR at low FPR, AUROC at the other brightness, core gates on the candidate's own input, the
    shortcut verdict), ``ranked`` (``rank``), ``theta`` and ``snr`` (TPR by θ_E/FWHM and by arc S/N), ``confusers``
    (FPR per type), ``reliance`` (``experiment.reliance_by_bin``: the share of skill above chance lost, and the
    AUROC drop, when the core box or the counter-image disk is filled from each image's own control, per θ_E bin;
    empty when the test set has no controls), ``memorisation`` (the baseline's seen- minus unseen-host AUROC per bin),
    ``n_test_negatives`` and ``fprs`` (the working points)."""

    split: dict = field(default_factory=dict)
    scores: dict = field(default_factory=dict)
    gates: pd.DataFrame = field(default_factory=_frame)
    gate_bins: pd.DataFrame = field(default_factory=_frame)
    kinds: dict = field(default_factory=dict)
    timing: pd.DataFrame = field(default_factory=_frame)
    models: dict = field(default_factory=dict)
    tables: dict = field(default_factory=dict)
    hidden: list = field(default_factory=list)
    results: pd.DataFrame = field(default_factory=_frame)
    summary: pd.DataFrame = field(default_factory=_frame)
    ranked: pd.DataFrame = field(default_factory=_frame)
    theta: pd.DataFrame = field(default_factory=_frame)
    snr: pd.DataFrame = field(default_factory=_frame)
    confusers: pd.DataFrame = field(default_factory=_frame)
    reliance: pd.DataFrame = field(default_factory=_frame)
    memorisation: pd.DataFrame = field(default_factory=_frame)
    n_test_negatives: int = 0
    fprs: list = field(default_factory=list)


JUDGE_GATES = gates.CORE_GATES + ("radial-profile LR",)  # from the registry: each candidate's own training input


def train_candidates(cands, data: dict, tests: dict[str, TestSet], *, n_hosts: dict, n_per_class: dict, seed: int,
                     seeds, train_kw: dict, cache: str | None = None, dropout_p: float = 0.5,
                     dropout_radius_px: float = 5.0, shuffle_share: float = 0.25, confuser_share: float = 0.25,
                     gate_threshold: float = gates.THRESHOLD, n_boot: int = 500, counter_radius_fwhm: float = 0.75,
                     progress: bool = True) -> Comparison:
    """Train every candidate (``Candidate`` objects; one model per training seed, cached by its inputs), score it on
    every test set (and on the primary set with the core box or counter-image disk of ``counter_radius_fwhm`` FWHM
    filled from each image's own control), and run the registered gates ``JUDGE_GATES`` on its own training input
    (all lenses, and the core gates per θ_E/FWHM bin of the training lenses). Returns the training half of a
    :class:`Comparison` (split, scores, gates, gate_bins, kinds, timing, models, tables, hidden): ``judge``'s input."""
    import time

    from tqdm import tqdm

    from .experiment import train_cached
    from .train import score_models

    seeds = list(seeds)
    meta = data["meta"]
    split = data.get("split") or pools.split_hosts(meta, n_hosts, seed)
    prim = tests["primary"]
    gates.check_no_shared_hosts(np.concatenate([split["train"], split["val"]]), prim.hosts)
    hidden = reliance_masks(prim, counter_radius_fwhm)
    hidden_images = {k: gates.fill_from_control(prim.images, prim.controls, m) for k, m in hidden.items()}
    scores, gate_rows, gate_bin_rows, kinds, timing, trained, train_tables = {}, [], [], {}, {}, {}, {}
    it = tqdm(cands, desc="candidates", unit="candidate") if progress else cands
    for cand in it:
        t0 = time.perf_counter()
        if cand.design == "real":
            if "real" not in data:
                continue
            tables = _real_tables(data["real"][1], seed)
        else:
            if cand.brightness == "bright" and "bright" not in data:
                continue
            if cand.treatment == "hard_negatives" and "confusers" not in data:
                continue
            tables = _candidate_tables(cand, meta, split, n_per_class, seed)
        train_tables[cand.name] = tables
        raw = training_images(cand, tables, data, seed, dropout_p=dropout_p, dropout_radius_px=dropout_radius_px,
                              shuffle_share=shuffle_share, confuser_share=confuser_share)
        x_tr, y_tr, g_tr, k_tr = raw["train"]
        x_va, y_va, _, _ = raw["val"]
        kinds[cand.name] = pd.Series(k_tr).value_counts().to_dict()
        xi_tr, xi_va = candidate_input(cand.input, x_tr), candidate_input(cand.input, x_va)
        parts = None
        if cache is not None:
            # the key names only what can change this candidate's training images: the treatment's own settings
            # and the data sets it reads, so chapters that train a subset of the candidates share their models
            parts = {"data": cache, "candidate": cand.name, "n_hosts": n_hosts, "n_per_class": n_per_class,
                     "split_seed": seed, "train_kw": train_kw}
            if cand.treatment == "core_dropout":
                parts["dropout"] = [dropout_p, dropout_radius_px]
            if cand.treatment == "hard_negatives":
                parts.update(hard=[shuffle_share, confuser_share], conf=data.get("confuser_fingerprint"))
            if cand.design == "real":
                parts["real"] = data.get("real_fingerprint")
            if cand.brightness == "bright":
                parts["bright"] = data.get("bright_fingerprint")
        models = [train_cached(xi_tr, y_tr, xi_va, y_va, seed=s, label=f"{cand.name} seed {s}", train_kw=train_kw,
                                cache_parts=parts) for s in seeds]
        trained[cand.name] = models
        t1 = time.perf_counter()
        for name, ts in tests.items():
            xin = candidate_input(cand.input, ts.images)
            scores[(cand.name, name)] = score_models(models, xin)
        for k, xh in hidden_images.items():
            scores[(cand.name, f"primary, {k} hidden")] = score_models(models, candidate_input(cand.input, xh))
        # the data-level core gates on the candidate's own training input
        tb = _training_bins(cand, tables["train"], data, y_tr)
        for gname in JUDGE_GATES:
            gate = gates.GATES[gname]
            X = gate.features(xi_tr)
            r = gates.cached_feature_gate(gname, X, y_tr, g_tr, gate_threshold, n_boot=n_boot, seed=seed,
                                          model=gate.model)
            gate_rows.append({"candidate": cand.name, "gate": gname, "auroc": r.statistic, "ci_low": r.ci_low,
                              "ci_high": r.ci_high, "verdict": r.verdict, "kind": r.kind})
            if gname in gates.CORE_GATES and tb is not None:
                gate_bin_rows.append(gates.gate_by_bin(gname, X, y_tr, g_tr, tb, gate_threshold, n_boot=n_boot,
                                                       seed=seed, model=gate.model).assign(candidate=cand.name))
        timing[cand.name] = {"train_s": t1 - t0, "judge_s": time.perf_counter() - t1,
                             "images_per_s": float(np.mean([m.images_per_s for m in models]))}
    return Comparison(split=split, scores=scores, gates=pd.DataFrame(gate_rows),
                      gate_bins=pd.concat(gate_bin_rows, ignore_index=True) if gate_bin_rows else pd.DataFrame(),
                      kinds=kinds, timing=pd.DataFrame(timing).T, models=trained, tables=train_tables, hidden=list(hidden))


def judge(cands, trained: Comparison, data: dict, tests: dict[str, TestSet], *, seed: int, n_boot: int = 500,
          fprs=(0.01, 0.001), reliance_relative: float = 0.2, loss_margin: float = LOSS_MARGIN) -> Comparison:
    """Judge trained candidates (``train_candidates``' output) on the common test sets: AUROC on every test set,
    the difference from the baseline (joint host bootstrap, 95% and 90%), TPR at the ``fprs`` working points, the
    core gates' shortcut verdict, TPR per θ_E/FWHM and S/N bin, FPR on each confuser type, the reliance on the core
    and counter-image (``experiment.reliance_by_bin``) and the baseline's host memorisation. Returns ``trained`` with
    the judging half filled in (:class:`Comparison`)."""
    from .experiment import reliance_by_bin, theta_bins
    from .metrics import difference_verdict, seeded_differences

    scores, gate_df = trained.scores, trained.gates
    trained_models, train_tables, hidden = trained.models, trained.tables, trained.hidden
    prim = tests["primary"]
    done = [c for c in cands if (c.name, "primary") in scores]

    # AUROC on every test set that has both classes
    res_rows = []
    for c in done:
        for name, ts in tests.items():
            if ts.table["label"].nunique() < 2:
                continue
            res_rows.append({"candidate": c.name, "test set": name,
                             **_auc_row(name, ts.y, scores[(c.name, name)], ts.hosts, n_boot, seed)})
    res = pd.DataFrame(res_rows)

    base = scores[(BASELINE, "primary")]
    summary, theta_rows, snr_rows, conf_rows, rel_rows = [], [], [], [], []
    n_neg = int((prim.y == 0).sum())
    bins = theta_bins(prim.table["theta_e_arcsec"], prim.table["psf_fwhm_used_r"])
    snr = prim.table["arc_snr"].to_numpy(float)
    snr_edges = [0, 10, 20, 40, np.inf]
    snr_bin = pd.cut(snr, snr_edges, right=False, labels=["S/N < 10", "10–20", "20–40", "≥ 40"])
    for c in done:
        S = scores[(c.name, "primary")]
        row = {"candidate": c.name, "label": c.label, "what": c.what}
        row.update({k: v for k, v in res[(res.candidate == c.name) & (res["test set"] == "primary")].iloc[0].items()
                    if k in ("auroc", "ci_low", "ci_high", "seed_sd")})
        if c.name == BASELINE:
            row.update(diff=0.0, diff_low=0.0, diff_high=0.0, diff90_low=0.0, diff90_high=0.0, diff_verdict="baseline")
        else:
            dd = seeded_differences(prim.y, base, prim.hosts, prim.y, S, prim.hosts, n_boot=n_boot, seed=seed,
                                    levels=(0.95, 0.90))
            d, d90 = dd[0.95], dd[0.90]
            row.update(diff=d.estimate, diff_low=d.ci_low, diff_high=d.ci_high, diff90_low=d90.ci_low,
                       diff90_high=d90.ci_high,
                       diff_verdict=difference_verdict(d.ci_low, d.ci_high, "the baseline", "this design"))
        for f in fprs:
            key = f"tpr_{f:g}"
            if resolvable_fpr(n_neg, f):
                row[key], row[key + "_low"], row[key + "_high"] = tpr_at_fpr(prim.y, S, prim.hosts, f, n_boot=n_boot,
                                                                             seed=seed)
            else:
                row[key] = row[key + "_low"] = row[key + "_high"] = np.nan
        if (c.name, "bright") in scores:
            rb = res[(res.candidate == c.name) & (res["test set"] == "bright")].iloc[0]
            row.update(bright_auroc=rb.auroc, bright_low=rb.ci_low, bright_high=rb.ci_high)
        g = gate_df[(gate_df.candidate == c.name) & (gate_df.kind == "shortcut")]
        row["shortcut"] = shortcut_verdict(g["verdict"])
        for gname in ("core LR", "nonlinear core"):
            gg = g[g.gate == gname].iloc[0]
            row[f"{gname}"], row[f"{gname}_low"], row[f"{gname}_high"] = gg.auroc, gg.ci_low, gg.ci_high
        summary.append(row)
        f0 = fprs[0]
        if resolvable_fpr(n_neg, f0):
            for cats, rows_out in ((bins, theta_rows), (snr_bin, snr_rows)):
                for level in cats.categories:
                    sel = np.asarray(cats == level)
                    if (sel & (prim.y == 1)).sum() < 10:
                        continue
                    e, lo, hi = tpr_at_fpr(prim.y, S, prim.hosts, f0, n_boot=n_boot, seed=seed, subset=sel)
                    rows_out.append({"candidate": c.name, "bin": level, "positives": int((sel & (prim.y == 1)).sum()),
                                     "tpr": e, "ci_low": lo, "ci_high": hi})
        if "confusers" in tests:
            ct = tests["confusers"]
            C = scores[(c.name, "confusers")]
            neg = prim.y == 0
            types = {"plain control (host alone)": (S[:, neg], prim.hosts[neg])}
            for k in pd.unique(ct.table["confuser_type"]):
                m = (ct.table["confuser_type"] == k).to_numpy()
                types[k] = (C[:, m], ct.hosts[m])
            for k, (N, gN) in types.items():
                e, lo, hi = fpr_at_tpr(prim.y, S, N, gN, 0.5, n_boot=n_boot, seed=seed)
                conf_rows.append({"candidate": c.name, "negatives": k, "n": N.shape[1], "fpr": e, "ci_low": lo,
                                  "ci_high": hi})
        if hidden:
            sc = {"unmodified": S, **{k: scores[(c.name, f"primary, {k} hidden")] for k in hidden}}
            rel_rows.append(reliance_by_bin(sc, prim.table, bins, fit_hosts=None, relative=reliance_relative,
                                            n_boot=n_boot, seed=seed).assign(candidate=c.name))
    summ = pd.DataFrame(summary)
    memo = memorisation(CANDIDATES[BASELINE], trained_models.get(BASELINE), data, train_tables.get(BASELINE), prim, bins,
                        seed=seed, n_boot=n_boot, primary_scores=scores.get((BASELINE, "primary")))
    ranked = rank(summ, f"tpr_{fprs[0]:g}" if summ[f"tpr_{fprs[0]:g}"].notna().any() else "auroc", margin=loss_margin)
    return replace(trained, memorisation=memo, results=res, summary=summ, ranked=ranked,
                   theta=pd.DataFrame(theta_rows), snr=pd.DataFrame(snr_rows), confusers=pd.DataFrame(conf_rows),
                   reliance=pd.concat(rel_rows, ignore_index=True) if rel_rows else pd.DataFrame(),
                   n_test_negatives=n_neg, fprs=list(fprs))


def run(candidates, data: dict, tests: dict[str, TestSet], *, n_hosts: dict, n_per_class: dict, seed: int, seeds,
        train_kw: dict, cache: str | None = None, dropout_p: float = 0.5, dropout_radius_px: float = 5.0,
        shuffle_share: float = 0.25, confuser_share: float = 0.25, gate_threshold: float = gates.THRESHOLD, n_boot: int = 500,
        fprs=(0.01, 0.001), counter_radius_fwhm: float = 0.75, reliance_relative: float = 0.2,
        loss_margin: float = LOSS_MARGIN, progress: bool = True) -> Comparison:
    """Train every candidate (one model per training seed, cached by its inputs; ``train_candidates``) and judge it on
    the common test sets (``judge``). Returns a :class:`Comparison`, whose docstring names every table."""
    cands = get_candidates([c.name if isinstance(c, Candidate) else c for c in candidates])
    if BASELINE not in [c.name for c in cands]:
        raise ValueError(f"the candidates must include the baseline {BASELINE!r}")
    trained = train_candidates(cands, data, tests, n_hosts=n_hosts, n_per_class=n_per_class, seed=seed, seeds=seeds,
                               train_kw=train_kw, cache=cache, dropout_p=dropout_p, dropout_radius_px=dropout_radius_px,
                               shuffle_share=shuffle_share, confuser_share=confuser_share,
                               gate_threshold=gate_threshold, n_boot=n_boot, counter_radius_fwhm=counter_radius_fwhm,
                               progress=progress)
    return judge(cands, trained, data, tests, seed=seed, n_boot=n_boot, fprs=fprs, reliance_relative=reliance_relative,
                 loss_margin=loss_margin)


# --------------------------------------------------------------------------- the chapter's data
def realism_targets(data_real: str, test: TestSet, *, simulated: bool, n_hosts: int, seed: int, standin: dict,
                    preset: str) -> tuple[np.ndarray | None, np.ndarray | None, str]:
    """The lenses the realism probe reads injections against: the real lenses of ``data_real`` (``dataset.load_real``);
    without them, on the simulator, a stand-in: ``test``'s lenses re-simulated with the preset overrides ``standin``
    (e.g. clumpy sources and a broader PSF; NOT real lenses); on the team's data without real lenses, none. Returns
    (images (N, 3, 64, 64) or None, their host keys or None, what they are)."""
    if data_real:
        img, meta = load_real(data_real)
        lens = meta["label"].to_numpy() == 1
        return img[lens], meta.loc[lens, "host"].to_numpy(), "your real lenses"
    if simulated:
        ts = variant_test_set("stand-in real", test, n_hosts, seed, standin, preset=preset)
        return (ts.images[ts.y == 1], ts.hosts[ts.y == 1],
                "a stand-in (simulated: clumpy sources, broader PSF with heavier wings; NOT real lenses)")
    return None, None, "no real lenses (set DATA_REAL)"


def standin_real(n_hosts: int, seed: int, *, preset: str = "physical", clumpy_fraction: float = 0.5) -> Path:
    """A STAND-IN for real lenses (never to be read as real): simulated lenses with clumpy sources on
    ``n_hosts`` hosts of another seed, one image per host (half lenses, half the host alone), written as a
    real-lens manifest so the ``DATA_REAL`` route runs end to end."""
    from .config import PROCESSED_DIR
    from .simulate import simulator_hash, cached_dataset

    over = {"src_clumpy_fraction": clumpy_fraction}
    src = cached_dataset(preset, n_hosts, 1, seed, preset_overrides=over)
    path = PROCESSED_DIR / f"standin_real_{preset}_h{n_hosts}_s{seed}_c{clumpy_fraction:g}_{simulator_hash()}.parquet"
    if not path.exists():
        stamps, ctrls, meta = _load(src)
        t = unpaired_test_table(meta, seed)
        write_real_manifest(path, _images(t, stamps, ctrls), t["label"], meta["ra"].to_numpy()[t["row"]],
                            meta["dec"].to_numpy()[t["row"]])
    return path


def chapter_data(*, data: str, data_real: str, preset: str, n_hosts: dict, n_per_class: dict, per_host: int,
                 n_test_hosts: int, seed: int, standin_hosts: int = 0,
                 inject_preset: str = INJECT_PRESET) -> tuple[dict, dict, dict]:
    """Everything the alternatives chapter trains and tests on. ``data`` empty: the simulator (``preset``:
    training hosts, the same hosts and lenses at the request's brightness, confusers on them, and the common
    test sets on unseen hosts); else the team's manifest (its own hosts split into train / val / test, sizes
    scaled to what it holds; no brightness or confuser sets). ``data_real``: a real-lens manifest
    (``load_real``); empty: a simulated stand-in on ``standin_hosts`` hosts (0: none). ``inject_preset`` names the
    arcs injected into the team's test hosts for the brightness cost (empty: no injected test set, for a chapter that
    does not read it). Returns (data, tests,
    info); ``info`` holds the sizes used (``n_hosts``, ``n_per_class``), a note when they were reduced, and the
    data's provenance."""
    from .results import fingerprint
    from .simulate import cached_dataset, load_or_simulate

    info = {"source": "simulator" if not data else "your data", "real": "none"}
    if data:
        stamps, ctrls, meta = load_or_simulate(data, preset, 0, per_host, seed)
        rows = np.arange(len(meta))
        stamps, ctrls = np.asarray(stamps[rows]), np.asarray(ctrls[rows])
        want = {**n_hosts, "test": n_test_hosts}
        plan = pools.plan_sizes(meta, want, {**n_per_class, "test": 10**9}, seed, split_by="host", where=data)
        split = pools.split_hosts(meta, plan.n_hosts, seed, by=plan.split_by)
        test_rows = np.flatnonzero(pools.host_key(meta).isin(split["test"]).to_numpy())
        d = {"stamps": stamps, "ctrls": ctrls, "meta": meta, "split": {k: split[k] for k in ("train", "val")}}
        tests = test_sets(0, seed, data_test=(stamps[test_rows], ctrls[test_rows],
                                               meta.iloc[test_rows].reset_index(drop=True)), inject_preset=inject_preset)
        info.update(fingerprint=fingerprint(data), note=plan.note,
                    n_hosts={k: plan.n_hosts[k] for k in ("train", "val")},
                    n_per_class={k: plan.n_per_class[k] for k in ("train", "val")})
    else:
        n_train_hosts = n_hosts["train"] + n_hosts["val"]
        path = cached_dataset(preset, n_train_hosts, per_host, seed)
        stamps, ctrls, meta = _load(path)
        plan = pools.plan_sizes(meta, n_hosts, n_per_class, seed, split_by="host", where="simulated data")
        d = {"stamps": stamps, "ctrls": ctrls, "meta": meta}
        bpath = cached_dataset(preset, n_train_hosts, per_host, seed, preset_overrides=bright_overrides())
        d["bright"] = _load(bpath)
        cpath = _confuser_dataset(preset, n_train_hosts, 1, seed)
        cs, _, cm = _load(cpath, with_ctrls=False)
        d["confusers"] = (cs, cm)
        d["bright_fingerprint"], d["confuser_fingerprint"] = fingerprint(bpath), fingerprint(cpath)
        tests = test_sets(n_test_hosts, seed + 1000, preset=preset)
        info.update(fingerprint=fingerprint(path), note=plan.note, n_hosts=plan.n_hosts, n_per_class=plan.n_per_class)
    real_path = data_real or (standin_real(standin_hosts, seed + 2000, preset=preset) if standin_hosts else "")
    if real_path:
        d["real"] = load_real(real_path)
        d["real_fingerprint"] = fingerprint(real_path)
        info["real"] = "your real lenses" if data_real else "stand-in (simulated, clumpy sources; NOT real lenses)"
        info["real_counts"] = {int(k): int(v) for k, v in d["real"][1]["label"].value_counts().items()}
    return d, tests, info
