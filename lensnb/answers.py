"""The answers page: Q1–Q7, E1–E4 and the recommendation, composed from the executed chapters' results.

Nothing here holds a number or a verdict of its own. :func:`collect` reads what each executed chapter glued
(``book/chapters/NN_*.ipynb``); :func:`compose` turns those values into the page's sentences, choosing each
direction word ("passes", "does not remove", "higher") from the values, so a changed upstream result changes
the sentence. A missing chapter or key gives a sentence that says so, never a made-up value.
"""
from __future__ import annotations

import ast
import json
import re
from pathlib import Path

import numpy as np

from .gates import THRESHOLD

CHAPTERS = ("01_geometry", "02_data", "03_pools", "04_training", "05_gates", "06_sample_size", "07_literature",
            "08_alternatives", "09_failure_modes")


def _value(data: dict):
    for mime in ("application/papermill.record/text/markdown", "text/markdown"):
        if mime in data:
            v = data[mime]
            return "".join(v) if isinstance(v, list) else v
    for mime in ("application/papermill.record/text/plain", "text/plain"):
        if mime in data:
            v = data[mime]
            v = "".join(v) if isinstance(v, list) else v
            try:
                return ast.literal_eval(v)
            except (ValueError, SyntaxError):
                return v
    return None


def glued(path) -> dict:
    """Every value an executed chapter glued: numbers as numbers, text and markdown as strings."""
    nb = json.loads(Path(path).read_text())
    out = {}
    for cell in nb.get("cells", []):
        for o in cell.get("outputs", []):
            key = o.get("metadata", {}).get("scrapbook", {}).get("name")
            if key:
                v = _value(o.get("data", {}))
                if v is not None:
                    out[key] = v
    return out


def collect(chapters_dir) -> dict[str, dict]:
    """{chapter: glued values} for every executed chapter found in ``chapters_dir``."""
    d = Path(chapters_dir)
    return {c: glued(d / f"{c}.ipynb") for c in CHAPTERS if (d / f"{c}.ipynb").exists()}


class _G:
    """Lookups that remember what was missing."""

    def __init__(self, g: dict):
        self.g, self.missing = g, []

    def __call__(self, chapter: str, key: str, default=None):
        if key not in self.g.get(chapter, {}):
            if f"{chapter}::{key}" not in self.missing:
                self.missing.append(f"{chapter}::{key}")
            return default
        return self.g[chapter][key]

    def has(self, chapter: str, *keys) -> bool:
        return all(k in self.g.get(chapter, {}) for k in keys)


def model_preset(g: dict) -> str:
    """The simulator preset the alternatives and failure-modes chapters trained and tested on (their glued
    ``alt_preset``; empty when not glued, e.g. on the team's data)."""
    return _strip(g.get("08_alternatives", {}).get("alt_preset", ""))


def _rel_sentence(G) -> str:
    """The model-level reliance the page quotes, from one place: the failure-modes chapter's ``fm_rel_text`` (the one
    measure, ``gates.reliance_gate``: regions filled from each image's own control; per θ_E/FWHM bin) on the lenses
    behind Q4–Q6. The shortcut-gates chapter runs the same measure on its own presets and says so there."""
    if not G.has("09_failure_modes", "fm_rel_text"):
        return ""
    t = _strip(G("09_failure_modes", "fm_rel_text"))
    if not t:
        return ""
    fp = _strip(G("09_failure_modes", "fm_preset", "")) if G.has("09_failure_modes", "fm_preset") else ""
    who = f"on the `{fp}` lenses" if fp else "on your data"
    return f"Model-level reliance {who} (failure-modes chapter): {t}"


def _enough(need: str, have: int):
    """Whether ``have`` test hosts meet a need such as "about 160 test hosts" or "more than 80 test hosts"
    (True / False, or None when the text holds no number)."""
    import re

    m = re.search(r"(\d[\d,]*)", need)
    if not m:
        return None
    n = int(m.group(1).replace(",", ""))
    return have > n if need.startswith("more than") else have >= n


def _sentences(*parts) -> str:
    """Join text fragments as sentences: each starts with a capital and ends with a full stop."""
    out = []
    for p in parts:
        p = str(p or "").strip()
        if not p or p.endswith(": "):
            continue
        p = p[0].upper() + p[1:]
        out.append(p if p.endswith((".", "!", "?")) else p + ".")
    return " ".join(out)


_SENTENCE_END = re.compile(r"(?<!e\.g)(?<!i\.e)(?<!\bvs)[.;] (?=[A-Z(*`])")


def as_lines(text: str) -> str:
    """An evidence paragraph as a Markdown bullet list, one sentence per line, so the page reads in a glance: a
    sentence ends at '. ' or '; ' before a capital, a bracket or markup (a decimal point, followed by a digit, never
    ends one; nor do 'e.g.', 'i.e.' and 'vs.'). An empty text gives an empty string."""
    text = str(text or "").strip()
    if not text:
        return ""
    parts = [p.strip() for p in _SENTENCE_END.split(text) if p.strip()]
    return "\n".join(f"- {p if p.endswith(('.', '!', '?', ':', '.)')) else p + '.'}" for p in parts)


def _ci(v, lo, hi, d=3) -> str:
    from .metrics import format_interval

    return format_interval(v, lo, hi, d)


def _strip(s) -> str:
    return str(s).strip().strip("'").strip()


def population_note(g: dict) -> str:
    """Which lenses the page's numbers speak for, from the data chapter's LensPop-cut and θ_E/FWHM tables: the
    share of unresolved (θ_E < 0.75 FWHM) and detectable lenses in the preset behind Q4–Q6 (``model_preset``)
    and among every lens behind a DESI LRG (the `physical` preset), or in the team's data."""
    G = _G(g)
    if G.has("02_data", "user_data__frac_unresolved", "user_data__frac_resolved"):
        u, r = float(G("02_data", "user_data__frac_unresolved")), float(G("02_data", "user_data__frac_resolved"))
        return (f"Your data: {u:.0%} of the injected lenses are unresolved (θ_E < 0.75 FWHM) and {r:.0%} resolved "
                f"(θ_E > 1.25 FWHM); an unresolved lens puts its counter-image and most of its arc in the central "
                f"pixels, where core light is lens signal, not a shortcut (data chapter, θ_E/FWHM table).")
    mp = model_preset(g) or "physical"
    keys = (f"{mp}__frac_unresolved", f"{mp}__frac_detectable", "physical__frac_unresolved",
            "physical__frac_detectable")
    if not G.has("02_data", *keys):
        return ""
    mu, mdet, pu, pdet = (float(G("02_data", k)) for k in keys)
    s = (f"The model results behind Q4–Q6 (alternatives and failure-modes chapters) are measured on the `{mp}` "
         f"preset: {mu:.0%} of its lenses are unresolved (θ_E < 0.75 FWHM) and {mdet:.0%} pass LensPop's three "
         f"detectability cuts")
    if mp != "physical":
        s += (f"; of every lens behind a DESI LRG (the `physical` preset) {pu:.0%} are unresolved and {pdet:.0%} "
              f"pass the cuts")
    if mu > 0.5 and mdet < 0.5:
        s += (f"; a verdict measured on the `{mp}` lenses therefore speaks mostly for lenses no survey finds, and "
              "for an unresolved lens core light is lens signal, not a shortcut")
    return s + " (data chapter, LensPop-cut and θ_E/FWHM tables)."


def brightness_note(g: dict) -> str:
    """How bright the arcs are against the lenses a survey finder can find, from the data chapter's numbers: the
    team's own stamps (stamp − ctrl) with ``DATA=``, else the request preset's; the reference is the `detectable`
    preset (the sourced DES-detectable population). Adds the data chapter's sweep: how bright arcs must be for a
    core-only AUROC of the request's 0.95, and the alternatives chapter's measured cost at the working point
    (completeness of the too-bright model, or of the team's model on injected `detectable` arcs). Empty when neither
    chapter was run."""
    G = _G(g)
    cost = (_strip(G("08_alternatives", "alt_brightness_cost_text"))
            if G.has("08_alternatives", "alt_brightness_cost_text") else "")
    cost = f" What that costs (alternatives chapter, brightness-cost table): {cost}" if cost else ""
    who = "user_data" if G.has("02_data", "user_data__arc_g") else "request"
    keys = [f"{who}__arc_g", f"{who}__arc_to_host", f"{who}__arc_snr", "detectable__arc_g", "detectable__arc_snr"]
    if not G.has("02_data", *keys):
        return cost.strip()
    ag, ah, asnr, dg, dsnr = (float(G("02_data", k)) for k in keys)
    name = "Your arcs" if who == "user_data" else "The request preset's arcs"
    d = ag - dg
    rel = "as bright as" if abs(d) <= 0.25 else f"{abs(d):.1f} mag {'brighter' if d < 0 else 'fainter'} than"
    s = (f"{name} have a median lensed g magnitude of {ag:.1f}, an arc-to-host r flux ratio of {ah:.3f} and a LensPop "
         f"S/N of {asnr:.0f}: {rel} the lenses a survey finder can find (the `detectable` preset: g = {dg:.1f}, "
         f"S/N {dsnr:.0f}; data chapter, arc-brightness table)")
    sweep = _strip(G("02_data", "sweep_text", "")) if G.has("02_data", "sweep_text") else ""
    return s + (". " + sweep if sweep else ".") + cost


def compose(g: dict, *, source: str = "the simulator") -> dict:
    """The page's parts from the chapters' glued values ``g`` ({chapter: {key: value}}): ``q`` (Q1–Q7: dicts with
    verdict, evidence, confidence, where), ``e_rows`` (E1–E4), ``recommendation`` (ordered list), ``headline``
    (one sentence) and ``missing`` (keys not found)."""
    G = _G(g)
    q = {}
    # ---- Q1: the unpaired design
    e4v = _strip(G("03_pools", "unpaired_e4_verdict", "")) if G.has("03_pools", "unpaired_e4_verdict") else ""
    h1 = G("03_pools", "h1_text", "")
    if e4v == "shortcut":
        v1 = "No. Disjoint LRG pools do not break the core shortcut: a classifier reading only the central pixels still separates the classes."
        c1 = "decided"
    elif e4v == "no shortcut":
        v1 = "Yes, as far as the core gate can tell: on disjoint pools the central pixels no longer separate the classes."
        c1 = "decided"
    else:
        v1 = "Undecided at this size: the core gate's interval straddles its threshold."
        c1 = "undecidable at this size"
    un = _strip(G("08_alternatives", "alt_unpaired_raw_shortcut", "")) if G.has("08_alternatives", "alt_unpaired_raw_shortcut") else ""
    ev1 = f"{G('03_pools', 'e4_text', '')} {h1}".strip()
    if un:
        mp = model_preset(g)
        ev1 += (f" On the {'`' + mp + '` lenses' if mp else 'data'} of the alternatives chapter, the proposal's core "
                f"gates say: {un}.")
    q["Q1"] = {"question": "Is the unpaired design sound?", "verdict": v1, "evidence": ev1, "confidence": c1,
               "where": "pools chapter, core gates per design; alternatives chapter, ranked table"}
    # ---- Q2: balancing
    hp = G("03_pools", "hostprop_text", "")
    bal = G("03_pools", "balance_text", "")
    hpv = _strip(G("05_gates", "g_host_properties_unpaired_verdict", "")) if G.has("05_gates", "g_host_properties_unpaired_verdict") else ""
    planted = _strip(G("09_failure_modes", "fm_conf_planted_monitor", "")) if G.has("09_failure_modes", "fm_conf_planted_monitor") else ""
    rand_t = _strip(G("09_failure_modes", "fm_conf_random_text", "")) if G.has("09_failure_modes", "fm_conf_random_text") else ""
    plant_t = _strip(G("09_failure_modes", "fm_conf_planted_text", "")) if G.has("09_failure_modes", "fm_conf_planted_text") else ""
    parts = []
    if hpv:
        parts.append({"shortcut": "on the proposal's random pools, host properties alone already separate the classes",
                      "no shortcut": "on the proposal's random pools, host properties alone do not separate the classes",
                      }.get(hpv, "whether host properties alone separate the proposal's random pools is undecidable at "
                                 "this size"))
    if planted:
        parts.append("a planted difference in seeing between the pools is " +
                     ("caught by the survey-conditions gate" if planted == "fires" else "not caught at this size"))
    v2 = ("Check balance with a gate on host properties and survey conditions (PSF, depth, redshift, brightness, sky "
          "position), not by comparing histograms: " + "; ".join(parts) + ".") if parts else "Not measured."
    ev2 = f"{bal} {hp}".strip()
    if rand_t:
        ev2 += f" Survey-conditions gate: random pools {rand_t}; pools split by seeing {plant_t}."
    q["Q2"] = {"question": "What property balancing is critical?", "verdict": v2, "evidence": ev2,
               "confidence": f"host-property gate on the proposal's pools: {hpv}" if hpv else "", "where": "pools chapter, balance and host-property gate; failure-modes chapter, "
                                                 "pool confounder rows"}
    # ---- Q3: sample size
    need_gap, need_core = G("06_sample_size", "need_gap", ""), G("06_sample_size", "need_core", "")
    memo = G("06_sample_size", "memo_text", "")
    crit1 = G("04_training", "crit1_text", "")
    n_eff = G("06_sample_size", "n_eff_req")
    deff = G("06_sample_size", "emp_deff_req")
    req = G("06_sample_size", "req_test_hosts")
    if need_gap and req is not None:
        enough = [_enough(_strip(n), int(req)) for n in (need_gap, need_core)]
        head = ("No: the request's test set is too small for the decisions it wants to make" if False in enough else
                "Yes, for the test decisions: the request's test set suffices" if all(enough) else
                "Partly")
        v3 = (f"{head}. Deciding the E3 − E2 criterion needs {_strip(need_gap)} and the core gate "
              f"{_strip(need_core)}; the request has {int(req)}.")
    else:
        v3 = "Not measured."
    ev3 = crit1
    if n_eff is not None and deff is not None:
        ev3 += (f" Injections into one host are correlated: at the request's injections per host the design effect is "
                f"{float(deff):.2f}, so its images count as about {float(n_eff):.0f} independent ones.")
    ev3 += f" {memo}"
    q["Q3"] = {"question": "Is our sample size sufficient?", "verdict": v3, "evidence": ev3.strip(),
               "confidence": "decided (power computed from the measured spread)",
               "where": "sample-size chapter, power and learning curves"}
    # ---- Q4: gates
    said = []
    for gname, key in (("core LR", "g_core_LR_unpaired_verdict"), ("nonlinear core", "g_nonlinear_core_unpaired_verdict"),
                       ("host properties", "g_host_properties_unpaired_verdict")):
        if G.has("05_gates", key):
            said.append(f"{gname}: {_strip(G('05_gates', key))}")
    v4q = ("Run the core gates (linear and nonlinear, two-sided), a host-property gate, a null injection judged "
           "against chance, and model-level masking of the core and of the arc, each with host-grouped "
           "cross-validation and a host-bootstrap interval. On the proposal's pools they say: " + "; ".join(said) + ".") \
        if said else "Not measured."
    q["Q4"] = {"question": "What additional gates should we run?", "verdict": v4q,
               "evidence": _sentences(f"Null checks: {G('05_gates', 'null_text', '')}",
                                      (f"Protocol: {_strip(G('03_pools', 'protocol_text'))}"
                                       if G.has("03_pools", "protocol_text") else ""),
                                      f"Planted defects: {G('05_gates', 'spoil_text', '')}",
                                      _strip(G("05_gates", "occ_reading", "")), _rel_sentence(G)),
               "confidence": "decided where a gate's interval clears its threshold",
               "where": "shortcut-gates chapter; failure-modes chapter, monitor list"}
    # ---- Q5: alternatives
    fav = G("08_alternatives", "alt_favoured_text", "")
    q["Q5"] = {"question": "Alternative approaches?", "verdict": _strip(fav) or "Not measured.",
               "evidence": _sentences(str(G("08_alternatives", "alt_brightness_text", "")),
                                      _strip(G("08_alternatives", "alt_by_lens_text", ""))),
               "confidence": _strip(G("08_alternatives", "alt_favoured_shortcut", "")) or "",
               "where": "alternatives chapter, ranked table and summary figure"}
    # ---- Q6: failure modes
    n_fire, n_r = G("09_failure_modes", "fm_n_fire"), G("09_failure_modes", "fm_n_risks")
    fired = _strip(G("09_failure_modes", "fm_fired", ""))
    if n_fire is not None and n_r is not None:
        v6 = (f"{int(n_fire)} of {int(n_r)} measured risks fire on these data: {fired}." if int(n_fire) else
              f"None of {int(n_r)} measured risks fires on these data.")
    else:
        v6 = "Not measured."
    real_ev = ""
    if G.has("09_failure_modes", "fm_real_finders", "fm_n_real_recall"):
        real_ev = (f"The Legacy Surveys finders of the literature table train on real lenses and real non-lenses "
                   f"({_strip(G('09_failure_modes', 'fm_real_finders'))}); the real-lens check that would catch a "
                   f"sim-to-real gap needs about {int(G('09_failure_modes', 'fm_n_real_recall'))} real lenses.")
    q["Q6"] = {"question": "What could go wrong?", "verdict": v6,
               "evidence": _sentences(f"{G('09_failure_modes', 'fm_n_undecidable', 0)} more are undecidable at this "
                                      f"size", real_ev),
               "confidence": "per risk, in the register", "where": "failure-modes chapter, the register"}
    # ---- Q7: literature
    nd = G("07_literature", "n_host_disjoint")
    nr = G("07_literature", "n_pos_real")
    nneg = G("07_literature", "n_neg_real")
    nf = G("07_literature", "n_finders")
    if nd is not None and nf is not None:
        v7 = (f"No published finder among the {int(nf)} read states that it kept arc hosts out of its negatives, the "
              f"proposal's defining step." if int(nd) == 0 else
              f"{int(nd)} of the {int(nf)} finders read state that arc hosts were kept out of the negatives.")
        ev7 = (f"{int(nr)} train on real lenses ({_strip(G('07_literature', 'cites_pos_real', ''))}); {int(nneg)} take "
               f"real survey galaxies as negatives.") if nr is not None and nneg is not None else ""
    else:
        v7, ev7 = "Not measured.", ""
    q["Q7"] = {"question": "Literature precedent?", "verdict": v7, "evidence": ev7,
               "confidence": "as far as the verified literature table goes", "where": "literature chapter"}

    # ---- E1–E4
    e_rows = []
    for e, what, crit in (("E1", "paired → paired test", "current performance (no criterion)"),
                          ("E2", "unpaired → unpaired test", "AUROC > 0.80"),
                          ("E3", "unpaired → paired test", "|E3 − E2| < 0.05")):
        if G.has("04_training", f"{e}_auroc", f"{e}_ci_low", f"{e}_ci_high"):
            m = _ci(G("04_training", f"{e}_auroc"), G("04_training", f"{e}_ci_low"), G("04_training", f"{e}_ci_high"))
        else:
            m = "not measured"
        v = {"E1": "—", "E2": _strip(G("04_training", "crit0_verdict", "—")),
             "E3": _strip(G("04_training", "crit1_verdict", "—"))}[e]
        e_rows.append({"experiment": e, "as defined": what, "measured (AUROC, 95% CI)": m, "criterion": crit, "verdict": v})
    if G.has("03_pools", "core_LR_unpaired_auroc"):
        m4 = _ci(G("03_pools", "core_LR_unpaired_auroc"), G("03_pools", "core_LR_unpaired_ci_low"),
                 G("03_pools", "core_LR_unpaired_ci_high"))
        v4 = {"shortcut": "fail", "no shortcut": "pass"}.get(e4v, "undecidable")
    else:
        m4, v4 = "not measured", "—"
    e_rows.append({"experiment": "E4", "as defined": "core-only LR on the unpaired training data",
                   "measured (AUROC, 95% CI)": m4, "criterion": f"AUROC < {float(G('03_pools', 'gate_threshold', THRESHOLD)):g}", "verdict": v4})
    gap_note = ""
    if G.has("04_training", "w_bound", "gap", "gap_lo", "gap_hi"):
        gap_note = (f"What E3 − E2 can detect: for a model that scores one image at a time, E3 − E2 compares two "
                    f"samplings of the same test hosts, so its expected value is bounded by "
                    f"{float(G('04_training', 'w_bound')):.3f} whatever the model learned: the criterion measures test-set "
                    f"noise, not the shortcut. Measured: {_ci(G('04_training', 'gap'), G('04_training', 'gap_lo'), G('04_training', 'gap_hi'))} (90%).")

    # ---- recommendation
    rec = []
    if v4 == "fail" or e4v == "shortcut":
        rec.append("Do not run the proposal as written: its own shortcut criterion (E4) fails on these data, and "
                   "E3 − E2 cannot detect a shortcut.")
    elif v4 == "pass":
        rec.append("The proposal's own shortcut criterion (E4) passes on these data; run it with the gates below.")
    else:
        rec.append("The proposal's shortcut criterion (E4) is undecidable at this size; enlarge the test before "
                   "acting on it.")
    fav_name = _strip(G("08_alternatives", "alt_favoured_name", "")) if G.has("08_alternatives", "alt_favoured_name") else ""
    fav_sc = _strip(G("08_alternatives", "alt_favoured_shortcut", "")) if G.has("08_alternatives", "alt_favoured_shortcut") else ""
    fav_label = _strip(G("08_alternatives", "alt_favoured", "")) if G.has("08_alternatives", "alt_favoured") else ""
    if fav_name and fav_sc == "removes the core shortcut":
        rec.append(f"Train instead the design the alternatives chapter favours, **{fav_label}**: the only kind of design "
                   "there whose core gates find no shortcut in its own input, ranked first by completeness.")
    elif fav_name:
        rec.append(f"No design tried both keeps the lenses and removes the core shortcut by the gates' standard on these "
                   f"data; among those that keep the lenses the alternatives chapter ranks **{fav_label}** first "
                   f"({fav_sc}). Compare the designs again on the team's data and real lenses before adopting one.")
    if G.has("03_pools", "protocol_text"):
        rec.append("Group by LRG in every split, cross-validation fold and bootstrap: the manifest repeats each LRG's "
                   "host-only image in all its rows, and row-level folds read those copies (pools chapter, protocol "
                   "traps).")
    rec.append("Run the monitors on every training set and model, with the thresholds in the failure-modes "
               "chapter (`python -m lensnb.gates PATH [--model CHECKPOINT]`).")
    if need_gap:
        rec.append(f"Size the test by the power analysis: {_strip(need_gap)} to decide E3 − E2, {_strip(need_core)} "
                   f"for the core gate.")
    rec.append("Before trusting any simulation-trained completeness, run the realism probe on real lens candidates "
               "(`DATA_REAL=`).")
    headline = rec[0]

    # ---- the decision table the page opens with: what to run next, what it costs, what would change the decision
    dec = []
    if m4 != "not measured":
        dec.append({"next step": "Do not run the proposal as written" if v4 == "fail" else
                    "Run the proposal with the gates below" if v4 == "pass" else "Enlarge the test before deciding",
                    "what it costs": "nothing to run",
                    "what would change it": f"E4 (core-only LR on unpaired data, now {m4}) inside the gate's band "
                                            f"on your data"})
    if fav_name:
        lo_hi = ""
        if G.has("08_alternatives", f"alt_{fav_name}_diff", f"alt_{fav_name}_diff_lo", f"alt_{fav_name}_diff_hi"):
            lo_hi = _ci(G("08_alternatives", f"alt_{fav_name}_diff"), G("08_alternatives", f"alt_{fav_name}_diff_lo"),
                        G("08_alternatives", f"alt_{fav_name}_diff_hi"))
        step = (f"Keep {fav_label}, with the monitors" if fav_name == "unpaired_raw" else
                f"Train {fav_label} instead" if fav_sc == "removes the core shortcut" else
                f"Compare {fav_label} (first by completeness; its core gates: {fav_sc}) with the proposal on your data")
        dec.append({"next step": step,
                    "what it costs": "one training per seed, the same network and data size as the proposal",
                    "what would change it": ("its core gates firing on your data, or its AUROC change from the "
                                             f"proposal (now {lo_hi}) falling below the loss margin in a θ_E bin you "
                                             "search" if lo_hi else "its core gates firing on your data")})
    if need_gap:
        dec.append({"next step": "Size the test set by the power analysis",
                    "what it costs": f"{_strip(need_gap)} (E3 − E2), {_strip(need_core)} (core gate)",
                    "what would change it": "a different spread between hosts on your data (rerun the sample-size "
                                            "chapter with `DATA=`)"})
    if G.has("03_pools", "protocol_unpaired_raw_grouped", "protocol_unpaired_raw_plain"):
        gr, pl = float(G("03_pools", "protocol_unpaired_raw_grouped")), float(G("03_pools", "protocol_unpaired_raw_plain"))
        dec.append({"next step": "Group by LRG in every split, cross-validation fold and bootstrap",
                    "what it costs": "nothing to run: the LRG as the grouping key everywhere",
                    "what would change it": f"nothing: with rows as the unit, copies of one galaxy sit on both sides of "
                                            f"a fold (the unpaired core gate reads {pl:.3f} with plain k-fold against "
                                            f"{gr:.3f} with host-grouped folds; pools chapter, protocol traps)"})
    if G.has("08_alternatives", "alt_cost_change", "alt_cost_lo", "alt_cost_hi", "alt_cost_reading"):
        ch = _ci(G("08_alternatives", "alt_cost_change"), G("08_alternatives", "alt_cost_lo"),
                 G("08_alternatives", "alt_cost_hi"))
        reading = _strip(G("08_alternatives", "alt_cost_reading"))
        fpr = (f" at {float(G('08_alternatives', 'alt_cost_fpr_pct')):g}% FPR"
               if G.has("08_alternatives", "alt_cost_fpr_pct") else "")
        on_data = source.startswith("your data")  # then the cost was already measured on the team's own hosts
        dec.append({"next step": ("Train at the brightness of the lenses you search" if reading == "lower" else
                                  "Keep the arc brightness, and check it on your data"
                                  if reading == "no difference shown" and not on_data else "Keep the arc brightness"),
                    "what it costs": "re-injection at the `detectable` source magnitudes (`python -m lensnb.inject "
                                     "--preset detectable`) and one training per seed",
                    "what would change it": f"the completeness change on `detectable` lenses{fpr} (now {ch}, {reading}; "
                                            "alternatives chapter, brightness-cost table)"
                                            + (" with more test hosts" if on_data else
                                               " measured on your data (`DATA=`)")})
    dec.append({"next step": "Run the monitors on every training set and model",
                "what it costs": "`python -m lensnb.gates PATH [--model CHECKPOINT]`, no training",
                "what would change it": "any monitor firing (failure-modes chapter, the register)"})
    if G.has("09_failure_modes", "fm_probe_threshold", "fm_tpr_margin_pct"):
        cost = "real lens candidates and non-lenses from the survey"
        if G.has("09_failure_modes", "fm_n_real_recall", "fm_n_real_nonlens"):
            cost = (f"about {int(G('09_failure_modes', 'fm_n_real_recall'))} real lenses (recall within ±0.10) and "
                    f"{int(G('09_failure_modes', 'fm_n_real_nonlens'))} real non-lenses (the operating threshold); "
                    "public candidate lists in the failure-modes chapter")
        dec.append({"next step": "Check the injections against real lenses (`DATA_REAL=`)",
                    "what it costs": cost,
                    "what would change it": (f"the realism probe above {float(G('09_failure_modes', 'fm_probe_threshold')):.2f}"
                                             f" or recall on real lenses more than "
                                             f"{float(G('09_failure_modes', 'fm_tpr_margin_pct')):.0f}% below the "
                                             "simulated")})
    popdep = _strip(G("08_alternatives", "alt_population_table", "")) if G.has("08_alternatives", "alt_population_table") else ""
    residual = _strip(G("08_alternatives", "alt_residual_table", "")) if G.has("08_alternatives", "alt_residual_table") else ""
    return {"q": q, "e_rows": e_rows, "gap_note": gap_note, "recommendation": rec, "headline": headline,
            "population": population_note(g), "population_table": popdep, "residual_table": residual, "decisions": dec,
            "brightness": brightness_note(g), "missing": G.missing, "source": source}


def design_points(g: dict) -> list[dict]:
    """Per design of the alternatives chapter (in its ranked order): label, AUROC and core-gate intervals."""
    from .alternatives import LOSS_MARGIN, keeps_lenses

    a = g.get("08_alternatives", {})
    names = [n.strip() for n in _strip(a.get("alt_ranked_names", "")).split(",") if n.strip()]
    out = []
    for n in names:
        if f"alt_{n}_core" not in a:
            continue
        out.append({"name": n, "label": _strip(a.get(f"alt_{n}_label", n)), "shortcut": _strip(a.get(f"alt_{n}_shortcut", "")),
                    "keeps": keeps_lenses(float(a.get(f"alt_{n}_diff90_lo", np.nan)), float(a.get(f"alt_{n}_diff90_hi", np.nan)),
                                          float(a.get("alt_loss_margin", LOSS_MARGIN))),
                    **{k: float(a[f"alt_{n}_{k}"]) for k in ("auroc", "lo", "hi", "core", "core_lo", "core_hi")}})
    return out


def is_finite(*v) -> bool:
    return all(v_ is not None and np.isfinite(float(v_)) for v_ in v)
