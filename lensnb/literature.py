"""How published CNN lens finders built their training classes (the review's Q7).

The data are ``lensnb/data/lens_finder_training_designs.csv``, a verbatim copy of the shared
literature table (one row per paper, plus one code repository; every row names the ``source`` it
was read from; the shared README explains how the facts were checked). Nothing here adds facts:

* :func:`load_designs` reads and validates the table (one-line errors naming file, row and column);
* the ``classify_*`` functions and :func:`survey_family` map a row's free-text fields to a few
  design categories with *ordered, first-match regular-expression rules* that are listed in the
  module constants below (``POSITIVE_RULES`` and so on), so every label can be traced to the words
  that produced it;
* :func:`sim_to_real_drops` extracts a simulated-vs-real drop only where the ``metric`` text
  itself gives a number on a simulated test set and the same metric on real data;
* :func:`sim_to_real_statements` lists rows whose ``metric`` or ``notes`` text states a
  simulated-vs-real finding in words (phrases in ``SIM_REAL_PHRASES``).

A field the sources did not state is classified "not stated", which means *unknown*, not "no".
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import pandas as pd

REQUIRED_COLUMNS = ("key", "authors", "year", "arxiv", "survey", "positives", "negatives",
                    "same_hosts_in_both_classes", "hard_negatives", "network", "metric", "source",
                    "verified_fields", "notes")
YEAR_RANGE = (1990, 2030)  # inclusive; a "sane" publication year for CNN-era lens finding and its precursors

# arXiv new-style identifier: YYMM.NNNN (2007-2014) or YYMM.NNNNN (2015 on), optional version
# suffix, optionally followed by one parenthetical remark, e.g. "2109.00014 (paper it serves)".
ARXIV_RE = re.compile(r"^(?P<id>(?P<yy>\d{2})(?P<mm>\d{2})\.(?P<num>\d{4,5}))(?P<v>v\d+)?(?:\s+\((?P<note>[^()]*)\))?$")

NOT_STATED = "not stated"
NA = "n/a"


class DesignError(ValueError):
    """The literature table is malformed; the message names the file, row and column."""


# --------------------------------------------------------------------------------------------
# loading and validation


def default_path() -> Path:
    """The packaged copy of the table."""
    return Path(str(resources.files("lensnb") / "data" / "lens_finder_training_designs.csv"))


def _arxiv_problem(value: str) -> str | None:
    """Why ``value`` is not a well-formed new-style arXiv ID, or None if it is."""
    m = ARXIV_RE.match(value)
    if not m:
        return "expected a new-style arXiv ID NNNN.NNNN or NNNN.NNNNN (optionally vN, optionally ' (remark)')"
    yy, mm, num = int(m["yy"]), int(m["mm"]), m["num"]
    if not 1 <= mm <= 12:
        return f"month {m['mm']} is not 01-12"
    if yy < 7:
        return "new-style arXiv IDs start in 2007 (07MM)"
    want = 4 if (yy, mm) < (15, 1) else 5
    if len(num) != want:
        return f"IDs from {m['yy']}{m['mm']} have {want} digits after the dot"
    return None


def arxiv_id(value: str) -> str:
    """The bare arXiv ID (no version, no remark) of a validated ``arxiv`` field; "" if empty."""
    m = ARXIV_RE.match(value.strip())
    return m["id"] if m else ""


def load_designs(path: str | Path | None = None) -> pd.DataFrame:
    """Read and validate the literature table.

    Checks: every column in ``REQUIRED_COLUMNS`` is present; ``key`` is non-empty and unique;
    ``source`` is non-empty; ``year``, when present, is an integer within ``YEAR_RANGE`` (only the
    code-repository row has none); ``arxiv``, when present, is a well-formed new-style ID
    (see ``ARXIV_RE``). A failure raises :class:`DesignError` with a one-line message
    "<file>: row <n> (key '<key>'), column '<col>': <problem>", rows counted from 1 after the
    header.

    Returns all columns as text exactly as in the file (empty cells as ""), except ``year``
    (pandas ``Int64``, <NA> if empty); adds ``arxiv_id`` (bare ID, "" if none).
    """
    path = Path(path) if path is not None else default_path()
    if not path.exists():
        raise DesignError(f"{path}: no such file")
    try:
        df = pd.read_csv(path, dtype=str, keep_default_na=False)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as e:
        raise DesignError(f"{path}: not a readable CSV ({str(e).splitlines()[0]})") from e
    missing = [c for c in REQUIRED_COLUMNS if c not in df.columns]
    if missing:
        raise DesignError(f"{path}: row 0 (header), column {missing[0]!r}: required column missing"
                          + (f" (also missing: {', '.join(map(repr, missing[1:]))})" if missing[1:] else ""))
    df = df.apply(lambda s: s.str.strip())
    seen: dict[str, int] = {}
    years = []
    for i, r in enumerate(df.itertuples(index=False), start=1):
        where = f"{path}: row {i} (key {r.key!r})"
        if not r.key:
            raise DesignError(f"{where}, column 'key': empty")
        if r.key in seen:
            raise DesignError(f"{where}, column 'key': duplicate of row {seen[r.key]}")
        seen[r.key] = i
        if not r.source:
            raise DesignError(f"{where}, column 'source': empty; every row must name what was read")
        if r.year:
            if not re.fullmatch(r"\d{4}", r.year) or not YEAR_RANGE[0] <= int(r.year) <= YEAR_RANGE[1]:
                raise DesignError(f"{where}, column 'year': {r.year!r} is not an integer year in "
                                  f"{YEAR_RANGE[0]}-{YEAR_RANGE[1]}")
            years.append(int(r.year))
        else:
            years.append(pd.NA)
        if r.arxiv:
            problem = _arxiv_problem(r.arxiv)
            if problem:
                raise DesignError(f"{where}, column 'arxiv': {r.arxiv!r}: {problem}")
    df["year"] = pd.array(years, dtype="Int64")
    df["arxiv_id"] = df["arxiv"].map(arxiv_id)
    return df


# --------------------------------------------------------------------------------------------
# provenance: which fields were verified


def verified_fields(text: str) -> dict[str, set[str]]:
    """Parse ``verified_fields`` ("verified: a,b(x) | secondary: c | unverified: d") into
    {"verified": {...}, "secondary": {...}, "unverified": {...}} of bare field names (the first
    word of each comma/semicolon-separated item, lower case). "verified: all fields filled" gives
    {"all"} under "verified"."""
    out: dict[str, set[str]] = {"verified": set(), "secondary": set(), "unverified": set()}
    for seg in text.split("|"):
        label, _, items = seg.partition(":")
        label = label.strip().lower()
        if label not in out:
            continue
        if items.strip().lower().startswith("all fields filled"):
            out[label].add("all")
            continue
        for item in re.split(r"[,;]", items):
            word = re.match(r"\s*([a-z_]+)", item.lower())
            if word:
                out[label].add(word.group(1))
    return out


def arxiv_verified(row) -> bool:
    """True if the row has an arXiv ID and ``verified_fields`` lists ``arxiv`` (or "all fields
    filled") as verified and not as unverified or secondary."""
    if not row["arxiv_id"]:
        return False
    vf = verified_fields(row["verified_fields"])
    if "arxiv" in vf["unverified"] or "arxiv" in vf["secondary"]:
        return False
    return "arxiv" in vf["verified"] or "all" in vf["verified"]


# --------------------------------------------------------------------------------------------
# classification rules: ordered (category, regex) pairs, first match wins; matched against the
# lower-cased field text. An empty field is "not stated" before any rule is tried.

POSITIVE_RULES: tuple[tuple[str, str], ...] = (
    (NA, r"^n/a"),
    # two alternative or staged training sets of different kinds
    ("mixed (several training sets)", r"\(a\).*\(b\)|stage 1.*stage 2"),
    ("injected arcs on real galaxies",
     r"\bpainted\b|superimposed on|added (pixel-wise )?to|built on .*images|lensed sources on real"
     r"|\breal\b.*\bwith simulated\b|lensing galaxies from real"),
    ("real lenses", r"\bknown lens|\breal lens candidates|\breal lenses\b"),
    # explicit whole-image simulation; the survey column is also checked (see classify_positives)
    ("fully simulated", r"ray-traced|mock observations|semi-analytic|fully simulated"),
    # simulated, but the text does not say whether the lens galaxy is a real image
    ("simulated (host origin not stated)", r"simulat|\bmocks?\b"),
)
FULLY_SIMULATED_SURVEY = r"^simulated|-like simulations"

NEGATIVE_RULES: tuple[tuple[str, str], ...] = (
    (NA, r"^n/a"),
    ("simulated and real", r"stage 1.*stage 2|simulated non-lenses plus real"),
    ("simulated non-lenses", r"^(same )?simulated|simulated non-lenses"),
    ("look-alike classes (origin not stated)", r"false-positive types|look-alike"),
    ("real survey images", r"\breal\b"),
)

HOST_RULES: tuple[tuple[str, str], ...] = (
    (NA, r"^n/a"),
    ("paired (same host in both classes)", r"^yes\b"),
    ("disjoint by construction", r"disjoint by construction|paired design is impossible|, so disjoint"),
    ("same population, unpaired labels", r"not a matched pair"),
    ("not stated (unknown)", r"not stated"),
)

HARD_NEGATIVE_RULES: tuple[tuple[str, str], ...] = (
    ("none by design", r"^none by design"),
    ("in training", r"false-positive classes"),
    ("in test set", r"\btest set\b"),
    ("released for future training", r"\breleases?\b"),
    ("reported false positives", r"^false positives found"),
)

SURVEY_RULES: tuple[tuple[str, str], ...] = (
    ("simulated images only", r"^simulated|-like simulations"),
    ("n/a", r"^n/a"),
    ("DESI Legacy Surveys", r"legacy|decals"),
    ("DES / DELVE", r"\bdes\b|delve"),
    ("HSC", r"\bhsc\b"),
    ("KiDS / VST", r"\bkids\b|voice|\bvst\b"),
    ("Pan-STARRS", r"pan-starrs"),
    ("CFHT (CFHTLS, CFIS)", r"cfhtls|cfis"),
    ("Euclid", r"euclid"),
)

SCOPE_RULES: tuple[tuple[str, str, str], ...] = (
    # (scope, column, regex)
    ("non-CNN method", "network", r"^not a cnn"),
    ("not a finder (code, perspective)", "network", r"^n/a"),
    ("modelling network", "negatives", r"^n/a \(modelling"),
    ("combines or compares finders", "positives", r"^n/a"),
)
LENS_FINDER = "trained lens finder"

# Camera/imaging of the team's data (DESI Legacy Surveys DR9/DR10 south: DECam g, r, z).
DECAM_FAMILIES = ("DESI Legacy Surveys", "DES / DELVE")


def _first_match(text: str, rules, default: str) -> str:
    t = text.strip().lower()
    if not t:
        return NOT_STATED if default == NOT_STATED else default
    for label, pattern in rules:
        if re.search(pattern, t):
            return label
    return default


def classify_positives(text: str, survey: str = "") -> str:
    """Category of a row's ``positives`` text: "real lenses", "injected arcs on real galaxies",
    "fully simulated", "simulated (host origin not stated)", "mixed (several training sets)",
    "n/a" or "not stated". Rules: ``POSITIVE_RULES`` in order; a simulated row whose ``survey``
    text says the images themselves are simulated (``FULLY_SIMULATED_SURVEY``) is "fully
    simulated"."""
    cat = _first_match(text, POSITIVE_RULES, NOT_STATED)
    if cat == "simulated (host origin not stated)" and re.search(FULLY_SIMULATED_SURVEY, survey.strip().lower()):
        return "fully simulated"
    return cat


def classify_negatives(text: str) -> str:
    """Category of a row's ``negatives`` text: "real survey images", "simulated non-lenses",
    "simulated and real", "look-alike classes (origin not stated)", "n/a" or "not stated"
    (rules: ``NEGATIVE_RULES``)."""
    return _first_match(text, NEGATIVE_RULES, NOT_STATED)


def classify_hosts(text: str) -> str:
    """Category of ``same_hosts_in_both_classes``: "disjoint by construction" (positives are real
    lenses, so no galaxy can appear in both classes), "paired (same host in both classes)",
    "same population, unpaired labels", "not stated (unknown)" (also for an empty field), "n/a",
    or "other" (rules: ``HOST_RULES``)."""
    if not text.strip():
        return "not stated (unknown)"
    return _first_match(text, HOST_RULES, "other")


def classify_hard_negatives(text: str) -> str:
    """Category of ``hard_negatives`` (lens look-alikes): "in training", "in test set",
    "released for future training", "reported false positives", "none by design", "other", or
    "not stated" when empty (rules: ``HARD_NEGATIVE_RULES``)."""
    return _first_match(text, HARD_NEGATIVE_RULES, "other") if text.strip() else NOT_STATED


def survey_family(text: str) -> str:
    """Imaging family of a row's ``survey`` text (rules: ``SURVEY_RULES``; else "other / not stated")."""
    return _first_match(text, SURVEY_RULES, "other / not stated") if text.strip() else "other / not stated"


def row_scope(row) -> str:
    """What kind of row this is: "trained lens finder" unless a ``SCOPE_RULES`` rule matches."""
    for scope, col, pattern in SCOPE_RULES:
        if re.search(pattern, str(row[col]).strip().lower()):
            return scope
    return LENS_FINDER


# --------------------------------------------------------------------------------------------
# citations


def _first_author(authors: str) -> tuple[str, bool]:
    """(name, is_person) from the ``authors`` text: the first comma-separated name with initials
    and remarks in brackets removed."""
    first = authors.split(",")[0].split(" (")[0].replace(" et al.", "").strip()
    if not first or first.startswith("("):
        return "", False
    tokens = first.split()
    surname = [t for t in tokens if not t.endswith(".")]
    is_person = len(surname) < len(tokens)
    return " ".join(surname) if is_person else first, is_person


def short_citations(df: pd.DataFrame) -> pd.Series:
    """Author-year citation per row, indexed by ``key``: "Huang et al. 2020" (one author: no
    "et al."; a collaboration or team: its name). Same author and year twice: suffixes a, b in
    file order. Rows without a readable author use their key; a row without a year says "(code)"
    if it is a repository, else "(no year)"."""
    out = {}
    for _, r in df.iterrows():
        name, person = _first_author(r["authors"])
        if not name:
            out[r["key"]] = f"{r['key']} (authors unverified)"
            continue
        plain = re.sub(r"\([^()]*\)", "", r["authors"])  # remarks in brackets are not authors
        many = person and ("," in plain or "et al." in plain)
        year = str(r["year"]) if pd.notna(r["year"]) else ("(code)" if "github" in r["authors"].lower() else "(no year)")
        out[r["key"]] = f"{name}{' et al.' if many else ''} {year}"
    s = pd.Series(out)
    for cite, keys in s.groupby(s).groups.items():
        if len(keys) > 1 and not cite.endswith("(authors unverified)"):
            for letter, k in zip("abcdefgh", sorted(keys, key=list(df["key"]).index)):
                s[k] = cite + letter
    return s


def citation(row, short: str) -> str:
    """``short`` plus the arXiv ID where it was verified: "Huang et al. 2021 [arXiv:2005.04730]";
    otherwise "[arXiv ID unverified]" or "[no arXiv ID]"."""
    if arxiv_verified(row):
        return f"{short} [arXiv:{row['arxiv_id']}]"
    return f"{short} [{'arXiv ID unverified' if row['arxiv_id'] else 'no arXiv ID'}]"


def classify(df: pd.DataFrame) -> pd.DataFrame:
    """``df`` plus the rule-based columns: ``scope``, ``pos_cat``, ``neg_cat``, ``host_cat``,
    ``hard_cat``, ``survey_family``, ``decam`` (DECam imaging like the team's), ``injected``
    (injected arcs on real galaxies, like the team's), ``arxiv_verified``, ``cite`` (short) and
    ``citation`` (with verified arXiv ID)."""
    out = df.copy()
    out["scope"] = [row_scope(r) for _, r in df.iterrows()]
    out["pos_cat"] = [classify_positives(p, s) for p, s in zip(df["positives"], df["survey"])]
    out["neg_cat"] = df["negatives"].map(classify_negatives)
    out["host_cat"] = df["same_hosts_in_both_classes"].map(classify_hosts)
    out["hard_cat"] = df["hard_negatives"].map(classify_hard_negatives)
    out["survey_family"] = df["survey"].map(survey_family)
    out["decam"] = out["survey_family"].isin(DECAM_FAMILIES)
    out["injected"] = out["pos_cat"].eq("injected arcs on real galaxies")
    out["arxiv_verified"] = [arxiv_verified(r) for _, r in df.iterrows()]
    out["cite"] = short_citations(df).reindex(df["key"]).to_numpy()
    out["citation"] = [citation(r, c) for (_, r), c in zip(out.iterrows(), out["cite"])]
    return out


def cite_list(frame: pd.DataFrame, column: str = "cite") -> str:
    """Citations of the rows in ``frame`` joined with "; " in year order ("none" if empty)."""
    if frame.empty:
        return "none"
    return "; ".join(frame.sort_values(["year", "key"], na_position="last")[column])


# --------------------------------------------------------------------------------------------
# simulated-vs-real numbers

METRIC_NAMES = ("accuracy", "purity", "completeness", "precision", "recall", "auroc", "auc", "tpr", "fpr", "f1")
# "<name>[/<name>...] [up to|~|>|<] <value>[-<value>]%"; AUROC/AUC/F1 also as a 0-1 fraction.
_NAMES = "|".join(METRIC_NAMES)
METRIC_VALUE_RE = re.compile(
    rf"\b(?P<names>(?:{_NAMES})(?:/(?:{_NAMES}))*)\s*[:=]?\s*(?:up to\s+|~|>|<)?\s*"
    rf"(?P<lo>\d+(?:\.\d+)?)(?:\s*[-–]\s*(?P<hi>\d+(?:\.\d+)?))?\s*(?P<pct>%)?", re.I)
# A clause is "<test-set label>: <numbers>"; the label says which data the numbers are on.
SIM_LABEL_RE = re.compile(r"\bsim(s|ulated|ulations?)?\b", re.I)
REAL_LABEL_RE = re.compile(r"\breal\b", re.I)


@dataclass(frozen=True)
class MetricValue:
    """One reported value: ``lo``-``hi`` (equal for a single number) in ``unit`` ("%" = percent,
    "fraction" = 0-1 score such as AUROC)."""
    lo: float
    hi: float
    unit: str


def _metric_values(text: str) -> dict[str, MetricValue]:
    out = {}
    for m in METRIC_VALUE_RE.finditer(text):
        lo = float(m["lo"])
        hi = float(m["hi"]) if m["hi"] else lo
        if m["pct"]:
            unit = "%"
        elif m["names"].lower() in ("auroc", "auc", "f1") and hi <= 1:
            unit = "fraction"
        else:
            continue  # e.g. "FPR 1 in 671": not a value this parser can read safely
        for name in m["names"].lower().split("/"):
            out.setdefault(name, MetricValue(lo, hi, unit))
    return out


def metric_clauses(text: str) -> list[tuple[str, str]]:
    """Split a ``metric`` text into (label, body) clauses of the form "<label>: <body>", at
    sentence ends (". " before a capital) and semicolons; clauses without a colon are dropped."""
    out = []
    for clause in re.split(r"\.\s+(?=[A-Z])|;\s*", text):
        label, sep, body = clause.partition(":")
        if sep:
            out.append((label.strip(), body.strip()))
    return out


def sim_to_real_drops(df: pd.DataFrame) -> pd.DataFrame:
    """Drops from a simulated test set to real data, only where one row's ``metric`` text has a
    clause labelled as simulated ("Sim test set ...: ...") and a clause labelled as real ("Real
    ...: ...") that both give a value of the same metric in the same unit. Labels mentioning both
    or neither are ignored.

    Returns one row per (key, metric): ``sim_lo``, ``sim_hi``, ``real_lo``, ``real_hi`` (as
    reported; percent for "%" metrics, 0-1 for "fraction") and the drop range ``drop_lo`` =
    sim_lo - real_hi, ``drop_hi`` = sim_hi - real_lo (percentage points for "%"). Ranges, not
    midpoints, because the sources report ranges."""
    rows = []
    for _, r in df.iterrows():
        sim, real = {}, {}
        for label, body in metric_clauses(r["metric"]):
            is_sim, is_real = bool(SIM_LABEL_RE.search(label)), bool(REAL_LABEL_RE.search(label))
            if is_sim != is_real:
                for k, v in _metric_values(body).items():
                    (sim if is_sim else real).setdefault(k, v)
        for name in METRIC_NAMES:
            if name in sim and name in real and sim[name].unit == real[name].unit:
                s, t = sim[name], real[name]
                rows.append({"key": r["key"], "metric": name, "unit": s.unit, "sim_lo": s.lo, "sim_hi": s.hi,
                             "real_lo": t.lo, "real_hi": t.hi, "drop_lo": s.lo - t.hi, "drop_hi": s.hi - t.lo})
    cols = ["key", "metric", "unit", "sim_lo", "sim_hi", "real_lo", "real_hi", "drop_lo", "drop_hi"]
    return pd.DataFrame(rows, columns=cols)


# (theme, regex) on the lower-cased "metric" and "notes" text; a row gets every theme that matches.
SIM_REAL_PHRASES: tuple[tuple[str, str], ...] = (
    ("worse on real data than on simulations",
     r"sim-to-real gap|did worse on the real|spurious picks on real data|not carrying over to real"),
    ("in-distribution tests overstate performance",
     r"better on its own team's test set|in-distribution test sets overstate|may exist only in simulations"),
    ("training-data construction matters more than architecture",
     r"depends strongly on the lens-simulation design|depend mostly on how the ground-truth training data"
     r"|cannot be told apart on simple simulations"),
    ("real data in training helped", r"fine-tuning on real data|retraining with confirmed"),
)


def sim_to_real_statements(df: pd.DataFrame) -> pd.DataFrame:
    """Rows whose ``metric`` or ``notes`` text states a simulated-vs-real finding in words, one
    row per (key, theme) with the matched ``phrase`` (rules: ``SIM_REAL_PHRASES``)."""
    rows = []
    for _, r in df.iterrows():
        text = f"{r['metric']} {r['notes']}".lower()
        for theme, pattern in SIM_REAL_PHRASES:
            m = re.search(pattern, text)
            if m:
                rows.append({"key": r["key"], "theme": theme, "phrase": m.group(0)})
    return pd.DataFrame(rows, columns=["key", "theme", "phrase"])


# --------------------------------------------------------------------------------------------
# tables and the figure for the chapter (display order of the categories)

POS_ORDER = ("real lenses", "injected arcs on real galaxies", "fully simulated",
             "simulated (host origin not stated)", "mixed (several training sets)", NOT_STATED, NA)
NEG_ORDER = ("real survey images", "simulated non-lenses", "simulated and real",
             "look-alike classes (origin not stated)", NOT_STATED, NA)
HOST_ORDER = ("paired (same host in both classes)", "disjoint by construction", "same population, unpaired labels",
              "not stated (unknown)", "other", NA)


def finders(cdf: pd.DataFrame) -> pd.DataFrame:
    """The rows of a :func:`classify` frame that are trained lens finders."""
    return cdf[cdf["scope"] == LENS_FINDER]


def _ordered(values: pd.Series, order) -> pd.Categorical:
    cats = [c for c in order if c in set(values)] + sorted(set(values) - set(order))
    return pd.Categorical(values, categories=cats, ordered=True)


def design_table(cdf: pd.DataFrame) -> pd.DataFrame:
    """One row per paper, indexed by (how positives were made, citation), sorted by category then
    year; columns: survey text, negatives / host-sharing / hard-negative categories, metric text."""
    t = cdf.assign(pos=_ordered(cdf["pos_cat"], POS_ORDER)).sort_values(["pos", "year", "key"])
    out = pd.DataFrame({
        "positives": t["pos"].astype(str), "paper": t["citation"], "survey": t["survey"],
        "negatives": t["neg_cat"], "hosts in both classes": t["host_cat"], "hard negatives": t["hard_cat"],
        "headline metric (as reported)": t["metric"].replace("", "—"),
    })
    return out.set_index(["positives", "paper"])


def styled(table: pd.DataFrame, wide_last: bool = True):
    """A pandas Styler for the chapter's text tables: left-aligned, top-aligned, smaller font,
    the last (longest) text column kept readable."""
    cell = [("text-align", "left"), ("vertical-align", "top"), ("font-size", "0.85em")]
    styles = [{"selector": "th", "props": cell}, {"selector": "td", "props": cell}]
    if wide_last:
        styles.append({"selector": "td:last-child", "props": [("min-width", "18em")]})
    return table.style.set_table_styles(styles)


def design_counts(cdf: pd.DataFrame) -> pd.DataFrame:
    """Number of papers per (positives category, negatives category), with totals."""
    t = pd.crosstab(_ordered(cdf["pos_cat"], POS_ORDER), _ordered(cdf["neg_cat"], NEG_ORDER),
                    margins=True, margins_name="total", dropna=False)
    t.index.name, t.columns.name = "positives", "negatives"
    return t


def closeness_table(cdf: pd.DataFrame) -> pd.DataFrame:
    """Rows sharing at least one feature of the team's setting (injected arcs on real LRGs in DESI
    Legacy Surveys DECam imaging), most shared features first. Features, by rule: same survey
    (survey family "DESI Legacy Surveys"), DECam imaging (survey family in ``DECAM_FAMILIES``),
    injected arcs on real galaxies (positives category), LRG hosts (the positives text names LRGs)."""
    t = cdf.assign(lrg=cdf["positives"].str.contains(r"\bLRGs?\b", case=False, regex=True),
                   same=cdf["survey_family"].eq("DESI Legacy Surveys"))
    t = t.assign(shared=t[["same", "decam", "injected", "lrg"]].sum(axis=1))
    t = t[t["shared"] > 0].sort_values(["shared", "year", "key"], ascending=[False, True, True])
    yes = {True: "yes", False: "—"}
    return pd.DataFrame({
        "paper": t["citation"], "survey": t["survey_family"], "same survey": t["same"].map(yes),
        "DECam imaging": t["decam"].map(yes), "injected arcs on real galaxies": t["injected"].map(yes),
        "LRG hosts named": t["lrg"].map(yes), "negatives": t["neg_cat"], "hosts in both classes": t["host_cat"],
    }).set_index("paper")


def _fmt_range(lo: float, hi: float, unit: str) -> str:
    f = (lambda v: f"{v:g}")
    core = f(lo) if lo == hi else f"{f(lo)}–{f(hi)}"
    return core + ("%" if unit == "%" else "")


def drops_table(drops: pd.DataFrame, cdf: pd.DataFrame) -> pd.DataFrame:
    """:func:`sim_to_real_drops` for display: paper, metric, simulated value, real value, drop
    (percentage points for percent metrics)."""
    cites = cdf.set_index("key")["citation"]
    rows = [{"paper": cites[d.key], "metric": d.metric, "simulated test": _fmt_range(d.sim_lo, d.sim_hi, d.unit),
             "real data": _fmt_range(d.real_lo, d.real_hi, d.unit),
             "drop": _fmt_range(d.drop_lo, d.drop_hi, "") + (" percentage points" if d.unit == "%" else "")}
            for d in drops.itertuples()]
    return pd.DataFrame(rows, columns=["paper", "metric", "simulated test", "real data", "drop"]).set_index(["paper", "metric"])


def describe_drops(drops: pd.DataFrame, cdf: pd.DataFrame) -> str:
    """The drops as one sentence fragment per paper, e.g. "Jacobs et al. 2017: purity 94–100% on the
    simulated test vs 15% on real data (drop 79–85 percentage points); ..." ("" if none)."""
    cites = cdf.set_index("key")["cite"]
    parts = []
    for key, g in drops.groupby("key", sort=False):
        items = [f"{d.metric} {_fmt_range(d.sim_lo, d.sim_hi, d.unit)} on the simulated test vs "
                 f"{_fmt_range(d.real_lo, d.real_hi, d.unit)} on real data (a drop of "
                 f"{_fmt_range(d.drop_lo, d.drop_hi, '')}{' percentage points' if d.unit == '%' else ''})"
                 for d in g.itertuples()]
        parts.append(f"{cites[key]}: " + ", and ".join(items))
    return "; ".join(parts)


def statements_table(statements: pd.DataFrame, cdf: pd.DataFrame) -> pd.DataFrame:
    """:func:`sim_to_real_statements` for display, grouped by theme, with the row's own metric and
    notes text."""
    c = cdf.set_index("key")
    t = statements.assign(theme=pd.Categorical(statements["theme"], [th for th, _ in SIM_REAL_PHRASES], ordered=True),
                          year=statements["key"].map(c["year"])).sort_values(["theme", "year", "key"])
    return pd.DataFrame({
        "theme": t["theme"].astype(str), "paper": t["key"].map(c["citation"]), "matched phrase": t["phrase"],
        "row's metric and notes": [" / ".join(x for x in (c.at[k, "metric"], c.at[k, "notes"]) if x) for k in t["key"]],
    }).set_index(["theme", "paper"])


def context_table(cdf: pd.DataFrame) -> pd.DataFrame:
    """Rows that are not trained lens finders (kept for context: modelling, comparisons, code,
    non-CNN methods, the shortcut-learning perspective)."""
    t = cdf[cdf["scope"] != LENS_FINDER].sort_values(["scope", "year", "key"])
    return pd.DataFrame({"kind of row": t["scope"], "paper": t["citation"], "network / method": t["network"],
                         "notes": t["notes"]}).set_index(["kind of row", "paper"])


def _label(row) -> str:
    """Short marker label: the first author's surname (or team name's first word); the key's
    leading letters when the authors are unverified."""
    if row["cite"].endswith("(authors unverified)"):
        return re.match(r"[a-z]+", row["key"]).group(0)
    return row["cite"].split(" et al.")[0].split(" ")[0]


def design_figure(cdf: pd.DataFrame):
    """Three stacked panels over publication year for the trained lens finders: how positives
    were made, how negatives were made, and whether a galaxy can appear in both classes. One
    marker per paper, coloured (and shaped) by survey family; the top panel labels each marker
    with the first author. Papers in the same year and category are spread horizontally in key
    order. Category labels give the number of papers."""
    import matplotlib.pyplot as plt
    import numpy as np
    import seaborn as sns

    f = finders(cdf).copy()
    f["yr"] = f["year"].astype(int)
    fams = f["survey_family"].value_counts().index.tolist()
    colours = dict(zip(fams, sns.color_palette("colorblind", len(fams))))
    markers = dict(zip(fams, "osD^vP*Xhp"))
    panels = [("pos_cat", POS_ORDER, "how positives\nwere made"), ("neg_cat", NEG_ORDER, "how negatives\nwere made"),
              ("host_cat", HOST_ORDER, "same galaxy in\nboth classes?")]
    heights = [len([c for c in order if c in set(f[col])]) + (0.9 if col == "pos_cat" else 0) for col, order, _ in panels]
    fig, axes = plt.subplots(3, 1, figsize=(11, 1.6 + 0.6 * sum(heights)), sharex=True,
                             gridspec_kw={"height_ratios": heights})
    for ax, (col, order, label) in zip(axes, panels):
        cats = [c for c in order if c in set(f[col])]
        counts = f[col].value_counts()
        for (yr, cat), g in f.groupby(["yr", col]):
            g = g.sort_values("key")
            n = len(g)
            dx = (np.arange(n) - (n - 1) / 2) * min(0.19, 0.9 / n)
            for x, (_, r) in zip(yr + dx, g.iterrows()):
                y = cats.index(cat)
                ax.scatter(x, y, s=50, color=colours[r["survey_family"]], marker=markers[r["survey_family"]],
                           edgecolor="k", linewidth=0.4, zorder=3)
                if col == "pos_cat":
                    ax.annotate(_label(r), (x, y), xytext=(-1, 6), textcoords="offset points", rotation=70,
                                fontsize=7, ha="left", va="bottom")
        ax.set_yticks(range(len(cats)), [f"{c} ({counts[c]})" for c in cats])
        ax.set_ylim(len(cats) - 0.5, -0.5 - (0.9 if col == "pos_cat" else 0))
        ax.set_ylabel(label)
        ax.grid(axis="x", alpha=0.3)
    axes[-1].set_xlabel("publication year")
    axes[-1].set_xticks(range(int(f["yr"].min()), int(f["yr"].max()) + 1))
    axes[-1].set_xlim(f["yr"].min() - 0.55, f["yr"].max() + 0.55)
    handles = [plt.Line2D([], [], ls="", marker=markers[k], color=colours[k], markeredgecolor="k", markersize=7,
                          label=f"{k} ({(f['survey_family'] == k).sum()})") for k in fams]
    fig.legend(handles=handles, title="survey family (papers)", loc="lower center", ncol=min(5, len(fams)),
               fontsize="small", bbox_to_anchor=(0.5, 0.0))
    fig.tight_layout(rect=(0, 0.09, 1, 1))
    return fig


# --------------------------------------------------------------------------------------------
# the chapter's computed values (every number and citation its prose uses)

POS_SLUG = {"real lenses": "real", "injected arcs on real galaxies": "injected", "fully simulated": "fullsim",
            "simulated (host origin not stated)": "simunk", "mixed (several training sets)": "mixed",
            NOT_STATED: "notstated", NA: "na"}
NEG_SLUG = {"real survey images": "real", "simulated non-lenses": "sim", "simulated and real": "mixed",
            "look-alike classes (origin not stated)": "lookalike", NOT_STATED: "notstated", NA: "na"}
HOST_SLUG = {"paired (same host in both classes)": "paired", "disjoint by construction": "disjoint",
             "same population, unpaired labels": "samepop", "not stated (unknown)": "unknown", "other": "other", NA: "na"}
HARD_SLUG = {"in training": "training", "in test set": "test", "released for future training": "released",
             "reported false positives": "reported", "none by design": "none", "other": "other", NOT_STATED: "notstated"}
THEME_SLUG = dict(zip([th for th, _ in SIM_REAL_PHRASES], ("worse", "overstate", "construction", "realdata")))


def chapter_values(cdf: pd.DataFrame) -> dict[str, object]:
    """Every value the chapter's prose uses, keyed by glue name (ints are counts of rows; text
    values are citation lists from :func:`cite_list` or sentences from :func:`describe_drops`).

    Counts and lists by category are over the trained lens finders (:func:`finders`):
    ``n_pos_<slug>``/``cites_pos_<slug>`` (slugs in ``POS_SLUG``), likewise ``neg`` (``NEG_SLUG``),
    ``host`` (``HOST_SLUG``), ``hard`` (``HARD_SLUG``); sim-to-real statements by theme
    ``n_theme_<slug>``/``cites_theme_<slug>`` (``THEME_SLUG``). ``cite_<key>`` is every row's
    short citation. The rest are documented inline below."""
    f = finders(cdf)
    v: dict[str, object] = {}
    v["n_rows"], v["n_finders"], v["n_context"] = len(cdf), len(f), len(cdf) - len(f)
    v["year_min"], v["year_max"] = int(f["year"].min()), int(f["year"].max())
    kinds = cdf.loc[cdf["scope"] != LENS_FINDER, "scope"].value_counts()
    v["context_kinds"] = "; ".join(f"{k}: {n}" for k, n in kinds.items())  # e.g. "non-CNN method: 2; ..."
    for col, slugs, prefix in (("pos_cat", POS_SLUG, "pos"), ("neg_cat", NEG_SLUG, "neg"),
                               ("host_cat", HOST_SLUG, "host"), ("hard_cat", HARD_SLUG, "hard")):
        for cat, slug in slugs.items():
            sub = f[f[col] == cat]
            v[f"n_{prefix}_{slug}"] = len(sub)
            v[f"cites_{prefix}_{slug}"] = cite_list(sub)
    # verdicts: sentences whose wording depends on a count
    n_paired, n_disjoint = v["n_host_paired"], v["n_host_disjoint"]
    v["verdict_paired"] = ("No lens finder in the table describes a paired design" if n_paired == 0 else
                           f"{n_paired} lens finder(s) describe a paired design ({v['cites_host_paired']})")
    v["verdict_q7"] = ("Yes: unpaired training is what these papers do, as far as the text read says"
                       if n_paired == 0 and n_disjoint > 0 else
                       "Partly: the table has both paired and unpaired designs" if n_paired and n_disjoint else
                       "The table does not show it either way")
    # the team's setting: injected arcs on real LRGs in DESI Legacy Surveys (DECam) imaging
    desi = f[f["survey_family"] == "DESI Legacy Surveys"]
    v["n_desi"], v["cites_desi"] = len(desi), cite_list(desi)
    v["n_desi_real"] = int((desi["pos_cat"] == "real lenses").sum())
    v["n_desi_injected"] = int(desi["injected"].sum())  # DESI Legacy Surveys imaging and injected positives
    like = f[f["decam"] & f["injected"]]  # DECam imaging (DESI LS, DES, DELVE) and injected positives
    v["n_team_like"], v["cites_team_like"] = len(like), cite_list(like)
    inj = f[f["injected"]]
    other = inj[~inj["decam"]]
    v["n_inj_other"], v["cites_inj_other"] = len(other), cite_list(other)
    v["n_inj_neg_real"] = int((inj["neg_cat"] == "real survey images").sum())
    v["cites_inj_neg_real"] = cite_list(inj[inj["neg_cat"] == "real survey images"])
    v["n_inj_host_stated"] = int((~inj["host_cat"].isin(["not stated (unknown)"])).sum())
    # simulated-vs-real
    drops = sim_to_real_drops(f)
    v["n_drop_papers"] = int(drops["key"].nunique())
    v["cites_drop"] = cite_list(f[f["key"].isin(drops["key"])])
    v["drops_text"] = describe_drops(drops, cdf) or "none"
    st = sim_to_real_statements(f)
    v["n_statement_papers"] = int(st["key"].nunique())
    for theme, slug in THEME_SLUG.items():
        keys = st.loc[st["theme"] == theme, "key"]
        v[f"n_theme_{slug}"] = int(keys.nunique())
        v[f"cites_theme_{slug}"] = cite_list(f[f["key"].isin(keys)])
    # provenance
    allv = f[f["verified_fields"].map(lambda t: "all" in verified_fields(t)["verified"])]
    v["n_all_verified"], v["cites_all_verified"] = len(allv), cite_list(allv)
    has = cdf["arxiv_id"] != ""
    v["n_arxiv_verified"] = int(cdf["arxiv_verified"].sum())
    v["n_arxiv_unverified"] = int((has & ~cdf["arxiv_verified"]).sum())
    v["cites_arxiv_unverified"] = cite_list(cdf[has & ~cdf["arxiv_verified"]])
    v["n_arxiv_missing"] = int((~has).sum())
    v["cites_arxiv_missing"] = cite_list(cdf[~has])
    for key, cite in zip(cdf["key"], cdf["cite"]):
        v[f"cite_{key}"] = cite
    return v
