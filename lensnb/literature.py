"""How published CNN lens finders built their training classes (the review's Q7).

The data are ``lensnb/data/lens_finder_training_designs.csv``: the shared literature table (one
row per paper, plus one code repository; every row names the ``source`` it was read from; the
shared README explains how the facts were checked), with its free-text columns copied verbatim
(``SOURCE_COLUMNS``) and five categorical columns added here (``CATEGORY_COLUMNS``), each a
summary of one free-text column of the same row. Nothing here adds facts:

* :func:`load_designs` reads and validates the table (one-line errors naming file, row and
  column), including that every categorical value is in its vocabulary (``CATEGORIES``) and is
  backed by the row's own words (``EVIDENCE``): a row classified "injected arcs", for instance,
  must say in its ``positives`` text that lensed sources were added to real galaxy images, and a
  lens finder whose text says so must be classified that way;
* :func:`annotate` adds display columns (survey family, citations);
* :func:`sim_to_real_drops` extracts a simulated-vs-real drop only where the ``metric`` text
  itself gives a number on a simulated test set and the same metric on real data;
* :func:`sim_to_real_statements` lists rows whose ``metric`` or ``notes`` text states a
  simulated-vs-real finding in words (phrases in ``SIM_REAL_PHRASES``);
* :func:`chapter_values` computes every number, citation list and verdict sentence the chapter
  shows.

A field the sources did not state is "not stated", which means *unknown*, not "no".
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import pandas as pd

SOURCE_COLUMNS = ("key", "authors", "year", "arxiv", "survey", "positives", "negatives",
                  "same_hosts_in_both_classes", "hard_negatives", "network", "metric", "source",
                  "verified_fields", "notes")
NOT_STATED = "not stated"
NA = "n/a"
LENS_FINDER = "trained lens finder"
INJECTED = "injected arcs"  # positives made by adding lensed sources to images of real galaxies

# categorical column -> allowed values, in display order
CATEGORIES: dict[str, tuple[str, ...]] = {
    "row_kind": (LENS_FINDER, "modelling network", "combines or compares finders", "non-CNN method",
                 "not a finder (code, perspective)"),
    "positives_kind": ("real lenses", INJECTED, "fully simulated", "simulated, host not stated",
                       "fully simulated or injected arcs", "simulated, then real lenses", NOT_STATED, NA),
    "negatives_kind": ("real images", "simulated", "simulated and real", "look-alike classes", NOT_STATED, NA),
    "host_relation": ("disjoint by construction", "disjoint (stated)", "same galaxies", "same population, unmatched",
                      NOT_STATED, NA),
    "hard_negatives_kind": ("in training", "in test set", "released for future training", "reported false positives",
                            "none by design", NOT_STATED, NA),
}
CATEGORY_COLUMNS = tuple(CATEGORIES)
REQUIRED_COLUMNS = SOURCE_COLUMNS + CATEGORY_COLUMNS
# the free-text column each categorical column summarises
SUMMARISES = {"row_kind": "network", "positives_kind": "positives", "negatives_kind": "negatives",
              "host_relation": "same_hosts_in_both_classes", "hard_negatives_kind": "hard_negatives"}

# Positives made by injection: something was added onto a real galaxy image, and it was a lensed
# or simulated source (both must appear in the ``positives`` text).
INJECTION_ONTO = r"painted|added|superimposed|built on|on real|from real|as foreground"
INJECTION_WHAT = r"lensed|simulated|\barcs?\b|\bmocks?\b"

# (column, value) -> conditions that must all hold for the row: (column, regex, must_match), the
# regex searched in the lower-cased text of that column (a free-text or a categorical column).
# "n/a" is checked separately: the summarised text starts with "n/a", or it is empty and the row
# is not a trained lens finder.
EVIDENCE: dict[tuple[str, str], tuple[tuple[str, str, bool], ...]] = {
    ("row_kind", LENS_FINDER): (("network", r"^n/a|^not a cnn", False), ("positives", r"^n/a", False),
                                ("negatives", r"^n/a \(modelling", False)),
    ("row_kind", "modelling network"): (("negatives", r"^n/a \(modelling", True),),
    ("row_kind", "combines or compares finders"): (("positives", r"^n/a", True), ("network", r"^n/a|^not a cnn", False)),
    ("row_kind", "non-CNN method"): (("network", r"^not a cnn", True),),
    ("row_kind", "not a finder (code, perspective)"): (("network", r"^n/a", True),),
    ("positives_kind", "real lenses"): (("positives", r"known lens|real lens", True), ("positives", r"simulat|mock", False)),
    ("positives_kind", INJECTED): (("positives", INJECTION_ONTO, True), ("positives", INJECTION_WHAT, True)),
    ("positives_kind", "fully simulated"): (("positives", r"simulat|ray-traced|mock", True), ("survey", r"simulat", True)),
    ("positives_kind", "simulated, host not stated"): (("positives", r"simulat|mock", True),
                                                       ("positives", INJECTION_ONTO, False), ("survey", r"simulat", False)),
    ("positives_kind", "fully simulated or injected arcs"): (("positives", r"fully simulated", True),
                                                             ("positives", INJECTION_ONTO, True)),
    ("positives_kind", "simulated, then real lenses"): (("positives", r"simulated", True), ("positives", r"real lens", True)),
    ("positives_kind", NOT_STATED): (("positives", r"simulat|mock|known lens|real lens|" + INJECTION_ONTO, False),),
    ("negatives_kind", "real images"): (("negatives", r"\breal\b", True), ("negatives", r"simulat", False)),
    ("negatives_kind", "simulated"): (("negatives", r"simulated", True),),
    ("negatives_kind", "simulated and real"): (("negatives", r"simulated|challenge", True), ("negatives", r"\breal\b", True)),
    ("negatives_kind", "look-alike classes"): (("negatives", r"false-positive|look-alike", True),),
    ("negatives_kind", NOT_STATED): (("negatives", r"\breal\b|simulat|false-positive|look-alike", False),),
    ("host_relation", "disjoint by construction"): (("same_hosts_in_both_classes", r"disjoint|paired design is impossible", True),
                                                    ("positives_kind", r"real lenses", True)),
    ("host_relation", "disjoint (stated)"): (("same_hosts_in_both_classes", r"disjoint|excluded|kept out|different (galaxies|hosts)", True),
                                             ("same_hosts_in_both_classes", r"not stated", False)),
    ("host_relation", "same galaxies"): (("same_hosts_in_both_classes", r"^yes\b|same (galax|lrg|host)", True),
                                         ("same_hosts_in_both_classes", r"not stated|not a matched pair", False)),
    ("host_relation", "same population, unmatched"): (("same_hosts_in_both_classes", r"not a matched pair", True),),
    ("host_relation", NOT_STATED): (("same_hosts_in_both_classes", r"not stated|^$", True),),
    ("hard_negatives_kind", "in training"): (("hard_negatives", r"false-positive classes", True),),
    ("hard_negatives_kind", "in test set"): (("hard_negatives", r"\btest set\b", True),),
    ("hard_negatives_kind", "released for future training"): (("hard_negatives", r"\breleases?\b", True),),
    ("hard_negatives_kind", "reported false positives"): (("hard_negatives", r"^false positives found", True),),
    ("hard_negatives_kind", "none by design"): (("hard_negatives", r"^none by design", True),),
    ("hard_negatives_kind", NOT_STATED): (("hard_negatives", r"^$", True),),
}

YEAR_RANGE = (1990, 2030)  # inclusive; a "sane" publication year for CNN-era lens finding and its precursors

# arXiv new-style identifier: YYMM.NNNN (2007-2014) or YYMM.NNNNN (2015 on), optional version
# suffix, optionally followed by one parenthetical remark, e.g. "2109.00014 (paper it serves)".
ARXIV_RE = re.compile(r"^(?P<id>(?P<yy>\d{2})(?P<mm>\d{2})\.(?P<num>\d{4,5}))(?P<v>v\d+)?(?:\s+\((?P<note>[^()]*)\))?$")


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


def category_problem(row, column: str) -> str | None:
    """Why ``row[column]`` (a categorical column) is not allowed or not backed by the row's own
    text (``CATEGORIES``, ``EVIDENCE``), or None if it is fine."""
    value = row[column]
    if value not in CATEGORIES[column]:
        return f"{value!r} is not one of {', '.join(map(repr, CATEGORIES[column]))}"
    text = row[SUMMARISES[column]].lower()
    if value == NA:
        if text.startswith("n/a") or (not text and row["row_kind"] != LENS_FINDER):
            return None
        return f"'n/a' needs {SUMMARISES[column]!r} to start with 'n/a' (or be empty on a row that is not a lens finder)"
    for col, pattern, must in EVIDENCE.get((column, value), ()):
        if bool(re.search(pattern, row[col].lower())) != must:
            return (f"{value!r} is not backed by the row's text: {col!r} should {'' if must else 'not '}"
                    f"match /{pattern}/")
    if (column == "positives_kind" and row["row_kind"] == LENS_FINDER and INJECTED not in value
            and re.search(INJECTION_ONTO, text) and re.search(INJECTION_WHAT, text)):
        return f"{value!r}, but the 'positives' text describes injected arcs (/{INJECTION_ONTO}/ and /{INJECTION_WHAT}/)"
    return None


def load_designs(path: str | Path | None = None) -> pd.DataFrame:
    """Read and validate the literature table.

    Checks: every column in ``REQUIRED_COLUMNS`` is present; ``key`` is non-empty and unique;
    ``source`` is non-empty; ``year``, when present, is an integer within ``YEAR_RANGE`` (only the
    code-repository row has none); ``arxiv``, when present, is a well-formed new-style ID
    (see ``ARXIV_RE``); every categorical column holds an allowed value backed by the row's text
    (:func:`category_problem`). A failure raises :class:`DesignError` with a one-line message
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
    for i, (_, r) in enumerate(df.iterrows(), start=1):
        where = f"{path}: row {i} (key {r['key']!r})"
        if not r["key"]:
            raise DesignError(f"{where}, column 'key': empty")
        if r["key"] in seen:
            raise DesignError(f"{where}, column 'key': duplicate of row {seen[r['key']]}")
        seen[r["key"]] = i
        if not r["source"]:
            raise DesignError(f"{where}, column 'source': empty; every row must name what was read")
        if r["year"]:
            if not re.fullmatch(r"\d{4}", r["year"]) or not YEAR_RANGE[0] <= int(r["year"]) <= YEAR_RANGE[1]:
                raise DesignError(f"{where}, column 'year': {r['year']!r} is not an integer year in "
                                  f"{YEAR_RANGE[0]}-{YEAR_RANGE[1]}")
            years.append(int(r["year"]))
        else:
            years.append(pd.NA)
        if r["arxiv"]:
            problem = _arxiv_problem(r["arxiv"])
            if problem:
                raise DesignError(f"{where}, column 'arxiv': {r['arxiv']!r}: {problem}")
        for col in CATEGORY_COLUMNS:
            problem = category_problem(r, col)
            if problem:
                raise DesignError(f"{where}, column {col!r}: {problem}")
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
# survey family (display grouping of the ``survey`` text; first matching rule wins)

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
# Camera/imaging of the team's data (DESI Legacy Surveys DR9/DR10 south: DECam g, r, z).
DECAM_FAMILIES = ("DESI Legacy Surveys", "DES / DELVE")


def survey_family(text: str) -> str:
    """Imaging family of a row's ``survey`` text (rules: ``SURVEY_RULES``; else "other / not stated")."""
    t = text.strip().lower()
    for label, pattern in SURVEY_RULES:
        if t and re.search(pattern, t):
            return label
    return "other / not stated"


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


JOURNAL_REF_RE = re.compile(r"\(((?:MNRAS|A&A|ApJ|AJ)\s[^()]*)\)")


def short_citations(df: pd.DataFrame) -> pd.Series:
    """Author-year citation per row, indexed by ``key``: "Huang et al. 2020" (one author: no
    "et al."; a collaboration or team: its name). Same author and year twice: suffixes a, b in
    file order. A row whose authors the table does not give is "Anon. <year>", identified by the
    journal reference in its ``survey`` text ("Anon. 2025 (MNRAS 538, 1081)") or else by its
    arXiv ID where verified; a row without a year says "(code)" if it is a repository, else
    "(no year)"."""
    out = {}
    for _, r in df.iterrows():
        name, person = _first_author(r["authors"])
        year = str(r["year"]) if pd.notna(r["year"]) else ("(code)" if "github" in r["authors"].lower() else "(no year)")
        if not name:
            ref = JOURNAL_REF_RE.search(r["survey"])
            where = ref.group(1) if ref else (f"arXiv:{r['arxiv_id']}" if arxiv_verified(r) else "")
            out[r["key"]] = f"Anon. {year}" + (f" ({where})" if where else "")
            continue
        plain = re.sub(r"\([^()]*\)", "", r["authors"])  # remarks in brackets are not authors
        many = person and ("," in plain or "et al." in plain)
        out[r["key"]] = f"{name}{' et al.' if many else ''} {year}"
    s = pd.Series(out)
    for cite, keys in s.groupby(s).groups.items():
        if len(keys) > 1:
            for letter, k in zip("abcdefgh", sorted(keys, key=list(df["key"]).index)):
                s[k] = cite + letter
    return s


def citation(row, short: str) -> str:
    """``short`` plus the arXiv ID where it was verified: "Huang et al. 2021 [arXiv:2005.04730]";
    otherwise "[arXiv ID unverified]" or "[no arXiv ID]" (nothing added if ``short`` already
    names the ID)."""
    if arxiv_verified(row):
        return short if f"arXiv:{row['arxiv_id']}" in short else f"{short} [arXiv:{row['arxiv_id']}]"
    return f"{short} [{'arXiv ID unverified' if row['arxiv_id'] else 'no arXiv ID'}]"


def annotate(df: pd.DataFrame) -> pd.DataFrame:
    """``df`` (from :func:`load_designs`) plus display columns: ``survey_family``, ``decam``
    (DECam imaging like the team's), ``injected`` (positives include arcs injected into real
    galaxy images, like the team's), ``arxiv_verified``, ``cite`` (short) and ``citation`` (with
    verified arXiv ID)."""
    out = df.copy()
    out["survey_family"] = df["survey"].map(survey_family)
    out["decam"] = out["survey_family"].isin(DECAM_FAMILIES)
    out["injected"] = out["positives_kind"].str.contains(INJECTED, regex=False)
    out["arxiv_verified"] = [arxiv_verified(r) for _, r in df.iterrows()]
    out["cite"] = short_citations(df).reindex(df["key"]).to_numpy()
    out["citation"] = [citation(r, c) for (_, r), c in zip(out.iterrows(), out["cite"])]
    return out


def cite_list(frame: pd.DataFrame, column: str = "cite") -> str:
    """Citations of the rows in ``frame`` joined with "; " in year order, each row once ("none"
    if empty)."""
    if frame.empty:
        return "none"
    return "; ".join(frame.drop_duplicates("key").sort_values(["year", "key"], na_position="last")[column])


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
# tables and the figure for the chapter


def finders(cdf: pd.DataFrame) -> pd.DataFrame:
    """The rows of an :func:`annotate` frame that are trained lens finders."""
    return cdf[cdf["row_kind"] == LENS_FINDER]


def _ordered(values: pd.Series, order) -> pd.Categorical:
    cats = [c for c in order if c in set(values)] + sorted(set(values) - set(order))
    return pd.Categorical(values, categories=cats, ordered=True)


def styled(table: pd.DataFrame):
    """The chapter's text tables as ``plotting.Table``: index levels become the first columns (a crosstab's
    reads "rows \\ columns"; a group level shows its label on the group's first row only), missing values
    show as "—"."""
    from .plotting import table as make_table

    if isinstance(table.index, pd.MultiIndex):
        lead = table.index.names[0]
        table = table.reset_index()
        first = table[lead].astype(str)
        table[lead] = first.where(first != first.shift(), "")
    elif not isinstance(table.index, pd.RangeIndex) or table.index.name:
        name = table.index.name or ""
        first = name + (f" \\ {table.columns.name}" if table.columns.name else "")
        table = table.reset_index().rename(columns={table.index.name or "index": first})
        table.columns.name = None
    return make_table(table)


def design_counts(cdf: pd.DataFrame) -> pd.DataFrame:
    """Number of papers per (positives kind, negatives kind), with totals."""
    t = pd.crosstab(_ordered(cdf["positives_kind"], CATEGORIES["positives_kind"]),
                    _ordered(cdf["negatives_kind"], CATEGORIES["negatives_kind"]),
                    margins=True, margins_name="total", dropna=False)
    t.index.name, t.columns.name = "positives", "negatives"
    return t


def design_table(cdf: pd.DataFrame) -> pd.DataFrame:
    """One row per paper, indexed by (positives kind, citation), sorted by kind then year;
    columns: survey family, negatives kind, host relation, look-alikes (hard negatives)."""
    t = cdf.assign(pos=_ordered(cdf["positives_kind"], CATEGORIES["positives_kind"])).sort_values(["pos", "year", "key"])
    out = pd.DataFrame({"positives": t["pos"].astype(str), "paper": t["citation"], "survey": t["survey_family"],
                        "negatives": t["negatives_kind"], "same galaxy in both classes?": t["host_relation"],
                        "look-alikes": t["hard_negatives_kind"]})
    return out.set_index(["positives", "paper"])


def injection_table(cdf: pd.DataFrame) -> pd.DataFrame:
    """The injection-based lens finders (the precedent for the team's choice), in year order:
    survey family, negatives kind, host relation, and the row's own words on host sharing."""
    t = finders(cdf)
    t = t[t["injected"]].sort_values(["year", "key"])
    return pd.DataFrame({"paper": t["citation"], "survey": t["survey_family"], "negatives": t["negatives_kind"],
                         "host relation": t["host_relation"],
                         "the row's text on host sharing": t["same_hosts_in_both_classes"].replace("", "—")}).set_index("paper")


TEAM_FEATURES = (("same", "same survey"), ("decam", "DECam"), ("injected", "injected arcs"), ("lrg", "LRG hosts"))


def closeness_table(cdf: pd.DataFrame) -> pd.DataFrame:
    """Rows sharing at least one feature of the team's setting (injected arcs on real LRGs in DESI
    Legacy Surveys DECam imaging), most shared features first. Features: same survey (survey
    family "DESI Legacy Surveys"), DECam imaging (survey family in ``DECAM_FAMILIES``), injected
    arcs (positives kind), LRG hosts (the positives text names LRGs)."""
    t = cdf.assign(lrg=cdf["positives"].str.contains(r"\bLRGs?\b", case=False, regex=True),
                   same=cdf["survey_family"].eq("DESI Legacy Surveys"))
    t = t.assign(shared=t[[c for c, _ in TEAM_FEATURES]].sum(axis=1))
    t = t[t["shared"] > 0].sort_values(["shared", "year", "key"], ascending=[False, True, True])
    features = [", ".join(label for c, label in TEAM_FEATURES if r[c]) for _, r in t.iterrows()]
    return pd.DataFrame({"paper": t["citation"], "survey": t["survey_family"], "shared with the team": features,
                         "negatives": t["negatives_kind"], "host relation": t["host_relation"]}).set_index("paper")


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
    t = cdf[cdf["row_kind"] != LENS_FINDER].sort_values(["row_kind", "year", "key"])
    return pd.DataFrame({"kind of row": t["row_kind"], "paper": t["citation"], "network / method": t["network"],
                         "notes": t["notes"].replace("", "—")}).set_index(["kind of row", "paper"])


def _label(row) -> str:
    """Short marker label: the first author's surname (or a team name's first word; "Anon.")."""
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
    panels = [("positives_kind", "how positives\nwere made"), ("negatives_kind", "how negatives\nwere made"),
              ("host_relation", "same galaxy in\nboth classes?")]
    heights = [len([c for c in CATEGORIES[col] if c in set(f[col])]) + (0.9 if col == "positives_kind" else 0)
               for col, _ in panels]
    fig, axes = plt.subplots(3, 1, figsize=(11, 1.6 + 0.72 * sum(heights)), sharex=True,
                             gridspec_kw={"height_ratios": heights})
    for ax, (col, label) in zip(axes, panels):
        cats = [c for c in CATEGORIES[col] if c in set(f[col])]
        counts = f[col].value_counts()
        for (yr, cat), g in f.groupby(["yr", col]):
            g = g.sort_values("key")
            n = len(g)
            dx = (np.arange(n) - (n - 1) / 2) * min(0.19, 0.9 / n)
            for x, (_, r) in zip(yr + dx, g.iterrows()):
                y = cats.index(cat)
                ax.scatter(x, y, s=50, color=colours[r["survey_family"]], marker=markers[r["survey_family"]],
                           edgecolor="k", linewidth=0.4, zorder=3)
                if col == "positives_kind":
                    ax.annotate(_label(r), (x, y), xytext=(0, 6), textcoords="offset points", rotation=90,
                                fontsize=7, ha="center", va="bottom")
        ax.set_yticks(range(len(cats)), [f"{c} ({counts[c]})" for c in cats])
        ax.set_ylim(len(cats) - 0.5, -0.5 - (0.9 if col == "positives_kind" else 0))
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
# the chapter's computed values (every number, citation and verdict its prose uses)

POS_SLUG = {"real lenses": "real", INJECTED: "injected", "fully simulated": "fullsim",
            "simulated, host not stated": "simunk", "fully simulated or injected arcs": "siminj",
            "simulated, then real lenses": "simreal", NOT_STATED: "notstated", NA: "na"}
NEG_SLUG = {"real images": "real", "simulated": "sim", "simulated and real": "mixed", "look-alike classes": "lookalike",
            NOT_STATED: "notstated", NA: "na"}
HOST_SLUG = {"disjoint by construction": "construction", "disjoint (stated)": "disjoint", "same galaxies": "same",
             "same population, unmatched": "samepop", NOT_STATED: "unknown", NA: "na"}
HARD_SLUG = {"in training": "training", "in test set": "test", "released for future training": "released",
             "reported false positives": "reported", "none by design": "none", NOT_STATED: "notstated", NA: "na"}
THEME_SLUG = dict(zip([th for th, _ in SIM_REAL_PHRASES], ("worse", "overstate", "construction", "realdata")))


def _n(n: int, one: str, many: str) -> str:
    """"1 paper" / "3 papers"."""
    return f"{n} {one if n == 1 else many}"


def injection_precedent(f: pd.DataFrame) -> dict[str, object]:
    """The Q7 verdict, from the injection-based lens finders in ``f`` (trained lens finders):
    counts of those whose text states host-disjoint classes (host relation "disjoint (stated)"),
    states that the same galaxies are in both classes ("same galaxies"), or says neither, with
    their citation lists; ``verdict_q7`` (a short headline) and ``verdict_q7_text`` (the sentence
    with the counts), both worded by the counts."""
    inj = f[f["injected"]]
    hr = inj["host_relation"]
    dis, same = inj[hr == "disjoint (stated)"], inj[hr == "same galaxies"]
    unk = inj[~hr.isin(["disjoint (stated)", "same galaxies"])]
    n, d, s, u = len(inj), len(dis), len(same), len(unk)
    v: dict[str, object] = {"n_inj": n, "cites_inj": cite_list(inj), "n_inj_host_disjoint": d,
                            "cites_inj_host_disjoint": cite_list(dis), "n_inj_host_same": s,
                            "cites_inj_host_same": cite_list(same), "n_inj_host_unknown": u,
                            "cites_inj_host_unknown": cite_list(unk), "n_inj_host_stated": d + s}
    if n == 0:
        v["verdict_q7"] = "No precedent in the table"
        v["verdict_q7_text"] = ("No lens finder in the table makes its positives by injecting arcs into real galaxy "
                                "images, so none of them faced the paired-or-unpaired choice the team faces.")
        return v
    state = lambda k: "states" if k == 1 else "state"  # noqa: E731
    v["verdict_q7_text"] = (
        f"Of the {_n(n, 'lens finder', 'lens finders')} in the table whose positives are arcs injected into real "
        f"galaxy images ({cite_list(inj)}), {d} {state(d)} that the galaxies hosting the injected arcs are kept "
        f"apart from the negatives{f' ({cite_list(dis)})' if d else ''}, {s} {state(s)} that the same galaxies "
        f"are also used as negatives{f' ({cite_list(same)})' if s else ''}, and {u} "
        f"{'does' if u == 1 else 'do'} not say.")
    if d and s:
        v["verdict_q7"] = "Both designs are published for injection-based finders"
    elif d:
        v["verdict_q7"] = ("Yes: the injection-based finders that say train unpaired" if not u else
                           f"Yes, as far as stated: unpaired in {d} of {n} injection-based finders; the rest do not say")
    elif s:
        v["verdict_q7"] = ("No: the injection-based finders that say train paired" if not u else
                           f"Paired in {s} of {n} injection-based finders; none states unpaired; the rest do not say")
    else:
        v["verdict_q7"] = ("Not known from the table: none of the injection-based finders says whether it "
                           "trained paired or unpaired")
    return v


def real_lens_note(f: pd.DataFrame) -> dict[str, object]:
    """How many lens finders train on real lenses (``n_real``, and ``n_real_staged`` that
    fine-tune on them after simulated pre-training) and ``verdict_real``: why they are no
    precedent for the paired-or-unpaired question."""
    real = f[f["positives_kind"] == "real lenses"]
    staged = f[f["positives_kind"] == "simulated, then real lenses"]
    v: dict[str, object] = {"n_real": len(real), "cites_real": cite_list(real), "n_real_staged": len(staged),
                            "cites_real_staged": cite_list(staged)}
    head = f"{_n(len(real), 'lens finder trains', 'lens finders train')} on real lenses ({cite_list(real)})"
    if len(staged):
        head += (f", and {len(staged)} more {'fine-tunes' if len(staged) == 1 else 'fine-tune'} on real lenses "
                 f"after pre-training on simulations ({cite_list(staged)})")
    v["verdict_real"] = (
        head + ". A real lens cannot be imaged without its arc, so no galaxy can be in both classes: these "
        "designs are unpaired by construction, not by choice, and say nothing about whether to pair when the "
        "positives are made by injecting arcs into galaxies that could also serve as negatives.")
    return v


def chapter_values(cdf: pd.DataFrame) -> dict[str, object]:
    """Every value the chapter's prose uses, keyed by glue name (ints are counts of rows; text
    values are citation lists from :func:`cite_list` or sentences built from the counts).

    Counts and lists by category are over the trained lens finders (:func:`finders`):
    ``n_pos_<slug>``/``cites_pos_<slug>`` for ``positives_kind`` (slugs in ``POS_SLUG``), likewise
    ``neg`` (``NEG_SLUG``), ``host`` (``HOST_SLUG``), ``hard`` (``HARD_SLUG``); sim-to-real
    statements by theme ``n_theme_<slug>``/``cites_theme_<slug>`` (``THEME_SLUG``). The Q7
    verdict comes from :func:`injection_precedent` and :func:`real_lens_note`. ``cite_<key>`` is
    every row's short citation. The rest are documented inline below."""
    f = finders(cdf)
    v: dict[str, object] = {}
    v["n_rows"], v["n_finders"], v["n_context"] = len(cdf), len(f), len(cdf) - len(f)
    v["year_min"], v["year_max"] = int(f["year"].min()), int(f["year"].max())
    kinds = cdf.loc[cdf["row_kind"] != LENS_FINDER, "row_kind"].value_counts()
    v["context_kinds"] = "; ".join(f"{k}: {n}" for k, n in kinds.items())  # e.g. "non-CNN method: 2; ..."
    for col, slugs, prefix in (("positives_kind", POS_SLUG, "pos"), ("negatives_kind", NEG_SLUG, "neg"),
                               ("host_relation", HOST_SLUG, "host"), ("hard_negatives_kind", HARD_SLUG, "hard")):
        for cat, slug in slugs.items():
            sub = f[f[col] == cat]
            v[f"n_{prefix}_{slug}"] = len(sub)
            v[f"cites_{prefix}_{slug}"] = cite_list(sub)
    n_same = v["n_host_same"]
    v["verdict_paired"] = ("No lens finder in the table describes a paired design" if n_same == 0 else
                           f"{_n(n_same, 'lens finder describes', 'lens finders describe')} a paired design "
                           f"({v['cites_host_same']})")
    v.update(injection_precedent(f))
    v.update(real_lens_note(f))
    # the team's setting: injected arcs on real LRGs in DESI Legacy Surveys (DECam) imaging
    desi = f[f["survey_family"] == "DESI Legacy Surveys"]
    v["n_desi"], v["cites_desi"] = len(desi), cite_list(desi)
    v["n_desi_real"] = int((desi["positives_kind"] == "real lenses").sum())
    v["n_desi_injected"] = int(desi["injected"].sum())  # DESI Legacy Surveys imaging and injected positives
    like = f[f["decam"] & f["injected"]]  # DECam imaging (DESI LS, DES, DELVE) and injected positives
    v["n_team_like"], v["cites_team_like"] = len(like), cite_list(like)
    inj = f[f["injected"]]
    other = inj[~inj["decam"]]
    v["n_inj_other"], v["cites_inj_other"] = len(other), cite_list(other)
    inj_real = inj[inj["negatives_kind"] == "real images"]
    v["n_inj_neg_real"], v["cites_inj_neg_real"] = len(inj_real), cite_list(inj_real)
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
    gap = st.loc[st["theme"].isin(list(SIM_REAL_PHRASES[i][0] for i in (0, 1))), "key"]  # worse or overstated, once each
    v["n_theme_gap"], v["cites_theme_gap"] = int(gap.nunique()), cite_list(f[f["key"].isin(gap)])
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


def public_sets(df: pd.DataFrame) -> pd.DataFrame:
    """Where a team can find real lenses and real non-lenses for the real-lens check, from the table's own rows
    (``annotate``d): the candidate lists of the finders that trained on real lenses in the same imaging (DECam-
    family surveys: the DESI Legacy Surveys searches), and the false-positive samples papers released for future
    training. Columns: kind, source (citation), survey, what the row says (its metric or hard-negative text)."""
    rows = []
    real = df[(df["positives_kind"] == "real lenses") & df["decam"]]
    for _, r in real.iterrows():
        rows.append({"kind": "real lens candidates (same imaging)", "source": r["citation"], "survey": r["survey"],
                     "what the source reports": r["metric"]})
    fp = df[df["hard_negatives_kind"] == "released for future training"]
    for _, r in fp.iterrows():
        rows.append({"kind": "released false positives (hard non-lenses)", "source": r["citation"], "survey": r["survey"],
                     "what the source reports": r["hard_negatives"]})
    return pd.DataFrame(rows, columns=["kind", "source", "survey", "what the source reports"])
