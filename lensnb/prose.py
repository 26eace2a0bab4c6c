"""Sentences that state a direction or a verdict, generated from the numbers they rest on.

A chapter never types "lowers", "passes" or "reduces": it calls one of these functions with the
measured values (and their intervals), so the sentence flips when the data do. Numbers are written
with three decimals and intervals as "0.904 (0.891 to 0.918)".
"""
from __future__ import annotations

import numpy as np

from .metrics import format_interval


def _iv(est, lo, hi, digits: int = 3) -> str:
    return format_interval(est, lo, hi, digits)


def design_difference(what: str, a: str, b: str, diff: float, lo: float, hi: float) -> str:
    """'<what>: unpaired − paired = -0.030 (-0.061 to 0.002); the interval contains 0, so this size of
    experiment does not show that unpaired changes it.' (or 'unpaired is lower/higher than paired')."""
    head = f"{what}: {b} − {a} = {_iv(diff, lo, hi)}"
    if lo > 0:
        return f"{head}; the whole interval is above 0: {b} is higher than {a}."
    if hi < 0:
        return f"{head}; the whole interval is below 0: {b} is lower than {a}."
    return f"{head}; the interval contains 0: this experiment does not show that {b} differs from {a}."


def gate_verdict(name: str, design: str, auc: float, lo: float, hi: float, verdict: str, threshold: float) -> str:
    """One gate's result with its two-sided verdict spelled out."""
    meaning = {
        "shortcut": f"the whole interval lies beyond {threshold:g} (or below {1 - threshold:g}): the shortcut is available",
        "no shortcut": f"the whole interval lies between {1 - threshold:g} and {threshold:g}: no shortcut at this size",
        "undecidable": f"the interval reaches across {threshold:g} or {1 - threshold:g}: undecidable at this size",
        "below chance (inverted)": (f"the whole interval lies below {1 - threshold:g}, beyond every permuted-label run of "
                                    "the gate: the classes are separated (ranked the wrong way round)"),
        "below chance, within the permutation null": (f"the interval lies below {1 - threshold:g}, but no lower than the "
                                                      "gate's own permutation null: an artifact of cross-validating on "
                                                      "few hosts, not a usable signal"),
        "arc detected": "the arc is visible to this gate, as it should be",
        "arc not detected": "the arc is not visible to this gate",
    }.get(verdict, verdict)
    return f"The {name} gate on the {design} design gives {_iv(auc, lo, hi)}: {meaning}."


def balance(max_unpaired: float, max_matched: float, noise: float) -> str:
    """Compare the largest |SMD| of random and matched pools with the sampling-noise level."""
    if max_matched < max_unpaired:
        d = f"matching lowers the largest |SMD| from {max_unpaired:.3f} to {max_matched:.3f}"
    elif max_matched > max_unpaired:
        d = f"matching does not help here: the largest |SMD| is {max_matched:.3f} matched against {max_unpaired:.3f} random"
    else:
        d = f"matching leaves the largest |SMD| at {max_matched:.3f}"
    where = "above" if max_unpaired > noise else "within"
    return (f"{d[0].upper() + d[1:]}; the random pools' largest |SMD| is {where} the sampling-noise level "
            f"√(2/n) ≈ {noise:.3f}.")


def criterion(name: str, verdict: str, est: float, lo: float, hi: float, rule: str, flips: bool,
              per_seed: str) -> str:
    """A success criterion with its rule, interval, verdict and the per-seed check."""
    s = f"{name}: {_iv(est, lo, hi)} ({rule}) → **{verdict}**"
    if flips:
        s += f"; the verdict flips between training seeds ({per_seed})"
    else:
        s += "; every training seed alone gives the same verdict"
    return s + "."


def memorisation(design: str, seen: float, unseen: float, lo: float, hi: float) -> str:
    """Seen-host minus unseen-host AUROC with its interval."""
    d = seen - unseen
    head = (f"The {design} model scores {seen:.3f} on new injections into its own training hosts and {unseen:.3f} "
            f"on unseen hosts")
    if lo > 0:
        return f"{head}: it does better on hosts it has seen (difference {_iv(d, lo, hi)}), a sign of host memorisation."
    if hi < 0:
        return f"{head}: it does worse on hosts it has seen (difference {_iv(d, lo, hi)})."
    return f"{head}: the difference {_iv(d, lo, hi)} is not resolved at this size."


def reliance(model: str, region: str, share: float, lo: float, hi: float, verdict: str, relative: float) -> str:
    if not np.isfinite(share):
        return (f"The {model} model's reliance on the {region} cannot be measured here: its AUROC is not above chance, "
                "so it has no skill to lose.")
    what = {"relies": "relies on", "does not rely": "does not rely on", "undecidable": "may or may not rely on"}[verdict]
    return (f"The {model} model {what} the {region}: masking it removes {_iv(share, lo, hi)} of its skill above "
            f"chance (threshold {relative:g}).")


def trend(gate: str, design: str, first: dict, last: dict, full_hosts: int) -> str:
    """Where a gate goes from the smallest to the largest number of hosts (dicts with hosts, auroc,
    ci_low, ci_high), and what that implies at ``full_hosts``."""
    a, b = first, last
    if b["ci_low"] > a["ci_high"]:
        t = (f"rises from {a['auroc']:.3f} ({a['hosts']} hosts) to {b['auroc']:.3f} ({b['hosts']} hosts) with "
             f"intervals apart: a gate that a small experiment passes can fail at full size, and at {full_hosts:,} "
             f"hosts it can be expected to sit at or above {b['auroc']:.3f}")
    elif b["ci_high"] < a["ci_low"]:
        t = (f"falls from {a['auroc']:.3f} ({a['hosts']} hosts) to {b['auroc']:.3f} ({b['hosts']} hosts) with "
             f"intervals apart")
    else:
        t = (f"moves by {b['auroc'] - a['auroc']:+.3f} from {a['hosts']} to {b['hosts']} hosts, inside the "
             f"intervals; more hosts narrow the interval ({a['ci_high'] - a['ci_low']:.3f} → "
             f"{b['ci_high'] - b['ci_low']:.3f} wide) but show no trend to carry to {full_hosts:,} hosts")
    return f"The {gate} gate on the {design} design {t}."


def reliance_by_bin(rel, model: str, regions=("core", "counter-image")) -> str:
    """One clause per hidden region from a reliance table (``experiment.reliance_by_bin`` rows of one model:
    masked, θ_E bin, positives, share of skill lost, ci_low, ci_high, verdict): the share of the model's skill
    above chance lost on all lenses and per θ_E/FWHM bin. Empty when the table holds none of ``regions``."""
    out = []
    for region in regions:
        r = rel[rel["masked"] == region]
        if not len(r):
            continue
        parts = []
        for _, x in r.iterrows():
            v = x["share of skill lost"]
            who = "all lenses" if x["θ_E bin"] == "all θ_E" else str(x["θ_E bin"])
            parts.append(f"{who} {_iv(v, x['ci_low'], x['ci_high'])} ({x['verdict']}, {int(x['positives'])} lenses)"
                         if np.isfinite(v) else f"{who} not measurable (model at chance; {int(x['positives'])} lenses)")
        out.append(f"the {model} model loses, with the {region} hidden, a share of its skill above chance of "
                   + "; ".join(parts))
    return "; ".join(out)


def real_check_sizes(sz: dict, fpr: float) -> str:
    """The real-lens check's sizes (``probe.real_check_sizes``) as one paragraph."""
    return (f"Measuring recall on real lenses within ±{sz['half_width']:.2f} (95% Wilson interval, as "
            f"`probe.recall_on_real` reports it) at the simulated recall of {sz['sim_recall']:.2f} takes {sz['recall']} "
            f"real lenses; setting the {100 * fpr:g}%-FPR threshold on real non-lenses takes at least {sz['nonlens']} "
            f"(five expected false positives). The realism probe reads quiet when there is no gap (AUROC 0.5) with at "
            f"least {sz['probe_quiet']} real lenses and as many simulated ones, and reads firing on a gap at AUROC "
            f"{sz['gap_auc']:.2f} with at least {sz['probe_fire']} (Hanley–McNeil standard error, `probe.probe_sizes`: "
            "lower bounds, since host clustering and cross-validation widen the interval).")


def source_colours(colours: dict) -> str:
    """The training sources' and the red test sources' g − r ranges (``risks.variant_specs``' colours)."""
    return (f"the training sources' g − r spans {colours['src_g_r']['p16']:.2f} to {colours['src_g_r']['p84']:.2f} "
            f"(16–84%); the red test sources take the hosts' colours, g − r {colours['host_g_r']['p16']:.2f} to "
            f"{colours['host_g_r']['p84']:.2f}")


def design_reliance(rel) -> str:
    """The paired and unpaired raw designs' reliance (``alternatives.run``'s ``reliance``: candidate, masked, θ_E bin,
    ...) as one sentence: the core for the paired model, the core and the counter-image for the unpaired one. Empty
    when the table holds neither design."""
    parts = [reliance_by_bin(rel[rel.candidate == c], who, regions=("core",) if c == "paired_raw" else
                             ("core", "counter-image"))
             for c, who in (("paired_raw", "paired"), ("unpaired_raw", "unpaired"))
             if len(rel) and (rel.candidate == c).any()]
    return ("; ".join(parts) + " (regions filled from each image's own control; an unresolved lens puts most of its "
            "arc in the core, where reliance is on the lens, not a shortcut)") if parts else ""
