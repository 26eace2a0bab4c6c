"""Pool designs: which host images become positives and negatives, and balance diagnostics.

Hosts are identified by (ra, dec) (``host_key``). A *design* turns the rows of a set of hosts into
a sample table with one row per training image: ``row`` (position in the dataset), ``image``
(``stamp`` = host + arc, ``ctrl`` = host alone), ``label`` (1 = lens) and ``host``.

* ``paired``: each selected row gives its stamp (positive) and its ctrl (negative).
* ``unpaired``: hosts are split at random into disjoint pools P and N; positives are stamps of P
  rows, negatives ctrls of N rows (the request's proposal).
* ``matched``: like unpaired, but P and N are built from matched host pairs: hosts are paired by
  nearest neighbour in standardised host-property space (greedy, in random order) and one host
  of each pair goes to each pool.
* ``hybrid``: a fraction of the hosts is used paired, the rest unpaired.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy.stats import ks_2samp

DESIGNS = ("paired", "unpaired", "matched", "hybrid")


def host_key(meta: pd.DataFrame) -> pd.Series:
    """A host identity from (ra, dec), rounded to 1e-6 deg (~4 mas)."""
    return meta["ra"].round(6).astype(str) + "_" + meta["dec"].round(6).astype(str)


def split_hosts(meta: pd.DataFrame, n_hosts: dict[str, int], seed: int, by: str = "host") -> dict[str, np.ndarray]:
    """Assign hosts to disjoint splits (e.g. {"train": 300, "val": 75, "test": 40} hosts).

    ``by="brick"`` assigns whole bricks (sky regions) to one split, so no brick straddles splits;
    the host counts are then met as closely as whole bricks allow (never exceeded by more than
    one brick). Returns split -> array of host keys.
    """
    keys = host_key(meta)
    hosts = pd.DataFrame({"host": keys, "brick": meta["brickname"]}).drop_duplicates("host")
    if hosts.groupby("host")["brick"].nunique().max() > 1:
        raise ValueError("a host (ra, dec) appears with more than one brickname")
    need = sum(n_hosts.values())
    if need > len(hosts):
        raise ValueError(f"splits need {need} hosts but the data hold {len(hosts)}")
    rng = np.random.default_rng(seed)
    out: dict[str, list] = {s: [] for s in n_hosts}
    if by == "host":
        order = hosts["host"].to_numpy()[rng.permutation(len(hosts))]
        start = 0
        for s, n in n_hosts.items():
            out[s] = list(order[start : start + n])
            start += n
    elif by == "brick":
        bricks = hosts.groupby("brick")["host"].apply(list)
        names = bricks.index.to_numpy()[rng.permutation(len(bricks))]
        it = iter(names)
        for s, n in n_hosts.items():
            while len(out[s]) < n:
                try:
                    out[s].extend(bricks[next(it)])
                except StopIteration:
                    raise ValueError(f"ran out of bricks while filling split {s!r}") from None
    else:
        raise ValueError(f"by must be 'host' or 'brick', got {by!r}")
    return {s: np.array(v) for s, v in out.items()}


def _rows_of(meta_keys: pd.Series, hosts) -> np.ndarray:
    return np.flatnonzero(meta_keys.isin(set(hosts)).to_numpy())


def _take(rows: np.ndarray, n: int, rng, what: str) -> np.ndarray:
    if n > len(rows):
        raise ValueError(f"{what}: asked for {n} images but only {len(rows)} rows are available")
    return np.sort(rng.choice(rows, n, replace=False))


def _table(rows, image, label, keys) -> pd.DataFrame:
    return pd.DataFrame({"row": rows, "image": image, "label": label, "host": keys.to_numpy()[rows]})


def match_pools(props: pd.DataFrame, rng) -> tuple[np.ndarray, np.ndarray]:
    """Split the hosts (index of ``props``) into two pools of matched pairs (greedy nearest neighbour)."""
    z = (props - props.mean()) / props.std(ddof=0).replace(0, 1)
    z = z.fillna(0.0).to_numpy()
    free = list(rng.permutation(len(z)))
    a, b = [], []
    alive = np.ones(len(z), bool)
    for i in free:
        if not alive[i]:
            continue
        alive[i] = False
        cand = np.flatnonzero(alive)
        if not len(cand):
            break
        j = cand[np.argmin(((z[cand] - z[i]) ** 2).sum(1))]
        alive[j] = False
        if rng.random() < 0.5:
            i, j = j, i
        a.append(i)
        b.append(j)
    idx = props.index.to_numpy()
    return idx[a], idx[b]


def build_design(design: str, meta: pd.DataFrame, hosts, n_pos: int, n_neg: int, seed: int, *,
                 host_props: pd.DataFrame | None = None, hybrid_fraction: float = 0.5) -> pd.DataFrame:
    """Sample table for one design over the given hosts (see the module docstring)."""
    if design not in DESIGNS:
        raise ValueError(f"unknown design {design!r}; designs: {DESIGNS}")
    if "confuser_type" in meta and meta["confuser_type"].notna().any():
        bad = meta.index[meta["confuser_type"].notna()][0]
        raise ValueError(f"row {bad}: confuser_type is {meta.loc[bad, 'confuser_type']!r}: this manifest's stamps are "
                         "non-lenses (lensnb.confusers); use them as negatives, not as a design's positives")
    keys = host_key(meta)
    hosts = np.asarray(hosts)
    rng = np.random.default_rng(seed)
    if design == "paired":
        rows = _take(_rows_of(keys, hosts), max(n_pos, n_neg), rng, "paired")
        perm = rng.permutation(rows)
        return pd.concat([_table(np.sort(perm[:n_pos]), "stamp", 1, keys),
                          _table(np.sort(perm[:n_neg]), "ctrl", 0, keys)], ignore_index=True)
    if design in ("unpaired", "hybrid"):
        perm = hosts[rng.permutation(len(hosts))]
        if design == "hybrid":
            n_shared = int(round(hybrid_fraction * len(hosts)))
            shared, rest = perm[:n_shared], perm[n_shared:]
        else:
            shared, rest = perm[:0], perm
        P, N = rest[: len(rest) // 2], rest[len(rest) // 2 :]
    else:  # matched
        if host_props is None:
            raise ValueError("the matched design needs host_props (one row per host, indexed by host key)")
        missing = set(hosts) - set(host_props.index)
        if missing:
            raise ValueError(f"host_props lacks {len(missing)} host(s), e.g. {sorted(missing)[:3]}")
        P, N = match_pools(host_props.loc[hosts], rng)
        shared = hosts[:0]
    pos_rows = _rows_of(keys, np.concatenate([P, shared]))
    neg_rows = _rows_of(keys, np.concatenate([N, shared]))
    pos = _take(pos_rows, n_pos, rng, f"{design} positives")
    neg = _take(neg_rows, n_neg, rng, f"{design} negatives")
    table = pd.concat([_table(pos, "stamp", 1, keys), _table(neg, "ctrl", 0, keys)], ignore_index=True)
    if design == "matched":  # the two hosts of a matched pair share a fold in cross-validated gates
        pair = {h: f"pair{i}" for i, (a, b) in enumerate(zip(P, N)) for h in (a, b)}
        table["fold_group"] = table["host"].map(pair)
    if design != "hybrid":
        check_disjoint_pools(table)
    return table


def check_disjoint_pools(table: pd.DataFrame) -> None:
    """Raise if a host supplies both positives and negatives (an unpaired design must not)."""
    both = set(table.loc[table.label == 1, "host"]) & set(table.loc[table.label == 0, "host"])
    if both:
        raise ValueError(f"{len(both)} host(s) appear in both pools, e.g. {sorted(both)[:3]}")


def validate_user_pools(meta: pd.DataFrame, column: str = "pool", where: str = "manifest") -> None:
    """A user-supplied unpaired split: ``column`` says per row which pool (``P``: positives, ``N``:
    negatives) the row's host belongs to. Raise naming the host and two rows if a host is in both."""
    if column not in meta.columns:
        raise ValueError(f"{where}: no column {column!r} with the user's pools")
    bad = set(meta[column].dropna().unique()) - {"P", "N"}
    if bad:
        raise ValueError(f"{where}: column {column!r} holds {sorted(map(str, bad))}; expected 'P' or 'N'")
    keys = host_key(meta)
    n_pools = meta.groupby(keys.to_numpy())[column].nunique()
    both = n_pools[n_pools > 1]
    if len(both):
        h = both.index[0]
        rows = np.flatnonzero((keys == h).to_numpy())
        pools_of = meta[column].to_numpy()[rows]
        i, j = rows[np.flatnonzero(pools_of == "P")[0]], rows[np.flatnonzero(pools_of == "N")[0]]
        raise ValueError(f"{where}: host {h} (ra_dec) is in both pools: row {i} ({column}=P) and row {j} ({column}=N)"
                         + (f"; {len(both) - 1} more host(s) too" if len(both) > 1 else ""))


def check_split_disjoint(tables: dict[str, pd.DataFrame]) -> None:
    """Raise if a host appears in more than one split."""
    seen: dict[str, str] = {}
    for split, t in tables.items():
        for h in set(t["host"]):
            if h in seen and seen[h] != split:
                raise ValueError(f"host {h} is in both split {seen[h]!r} and split {split!r}")
            seen[h] = split


def host_properties(meta: pd.DataFrame, ctrls, columns=None) -> pd.DataFrame:
    """One row per host (indexed by host key): metadata columns present in ``meta`` (host means) and
    image features of the host's ctrl stamp (measured on the first row of each host only, so a lazy
    ``ctrls`` decodes one image per host)."""
    from .features import image_features

    keys = host_key(meta)
    cols = [c for c in (columns or []) if c in meta.columns]
    first = np.flatnonzero(~keys.duplicated().to_numpy())
    feats = image_features(np.asarray(ctrls[first]))
    feats.index = keys.to_numpy()[first]
    if cols:
        md = meta[cols].assign(host=keys.to_numpy()).groupby("host").mean(numeric_only=True)
        feats = md.join(feats, how="inner")
    return feats


def balance_table(table: pd.DataFrame, props: pd.DataFrame) -> pd.DataFrame:
    """Standardised mean difference (pos - neg, pooled SD) and KS statistic per property, over samples."""
    rows = []
    pos = props.loc[table.loc[table.label == 1, "host"]]
    neg = props.loc[table.loc[table.label == 0, "host"]]
    for c in props.columns:
        a, b = pos[c].to_numpy(float), neg[c].to_numpy(float)
        sd = np.sqrt((a.var() + b.var()) / 2)
        rows.append({"property": c, "smd": (a.mean() - b.mean()) / sd if sd > 0 else 0.0,
                     "ks": ks_2samp(a, b).statistic})
    return pd.DataFrame(rows)


# --------------------------------------------------------------------------- sizes from the data
HOST_COLUMNS = ("host_z", "host_mag_g", "host_mag_r", "host_mag_z", "host_r_eff_arcsec", "psf_fwhm_used_g",
                "psf_fwhm_used_r", "psf_fwhm_used_z", "noise_sigma_g", "noise_sigma_r", "noise_sigma_z")
"""Catalogue columns that describe a host (and its imaging); the ones present join the image-derived
host features in ``host_properties`` wherever host balance or a host-property gate is computed."""

MIN_HOSTS = {"train": 10, "val": 4, "test": 6}  # below these a chapter says why it cannot run


def default_split_by(meta: pd.DataFrame) -> str:
    """'brick' when the data hold several hosts per brick on average (hosts in one brick share PSF and
    depth, so they should not straddle splits), else 'host'."""
    keys = host_key(meta)
    hosts = pd.DataFrame({"host": keys, "brick": meta["brickname"]}).drop_duplicates("host")
    return "brick" if len(hosts) / max(hosts["brick"].nunique(), 1) >= 2 else "host"


def max_per_class(meta: pd.DataFrame, hosts) -> int:
    """The most images per class that every design can draw from ``hosts`` without reuse: an unpaired
    pool of half the hosts must supply them, so the bound is the rows of the half with the fewest rows."""
    keys = host_key(meta)
    counts = np.sort(keys[keys.isin(set(hosts))].value_counts().to_numpy())
    return int(counts[: len(counts) // 2].sum())


def design_max_per_class(meta: pd.DataFrame, hosts, design: str) -> tuple[int, int]:
    """(positives, negatives) that one design can draw from ``hosts`` without reusing a row: every row for paired
    (each row gives its stamp and its control), half the hosts times the fewest rows of a host for the unpaired
    designs (disjoint pools of half the hosts each)."""
    keys = host_key(meta)
    counts = keys[keys.isin(set(hosts))].value_counts()
    n = int(counts.sum()) if design == "paired" else int(len(counts) // 2 * counts.min())
    return n, n


@dataclass
class SizePlan:
    n_hosts: dict
    n_per_class: dict
    split_by: str
    reduced: bool
    note: str

    def table(self) -> pd.DataFrame:
        return pd.DataFrame({"hosts": self.n_hosts, "images per class": self.n_per_class}).rename_axis("split")


def plan_sizes(meta: pd.DataFrame, n_hosts: dict, n_per_class: dict | None, seed: int, *, split_by: str = "auto",
               minimum: dict | None = None, where: str = "data") -> SizePlan:
    """Sizes a chapter can use on these data: the requested hosts per split and images per class, scaled
    down (in proportion) to what the data hold, never below ``minimum`` hosts per split (default
    ``MIN_HOSTS``), below which a ValueError says why the chapter cannot run. ``split_by="auto"`` uses
    ``default_split_by``. With enough data the request is returned unchanged."""
    minimum = dict(MIN_HOSTS if minimum is None else minimum)
    by = default_split_by(meta) if split_by == "auto" else split_by
    have = int(host_key(meta).nunique())
    need = sum(n_hosts.values())
    hosts = dict(n_hosts)
    if need > have:
        hosts = {s: max(int(have * n / need), minimum.get(s, 1)) for s, n in n_hosts.items()}
        while sum(hosts.values()) > have and any(hosts[s] > minimum.get(s, 1) for s in hosts):
            s = max(hosts, key=lambda k: hosts[k] - minimum.get(k, 1))
            hosts[s] -= 1
    short = {s: n for s, n in hosts.items() if n < minimum.get(s, 1)}
    if sum(hosts.values()) > have or short:
        req = ", ".join(f"{s} {minimum.get(s, 1)}" for s in n_hosts)
        raise ValueError(f"{where}: {have} hosts; this chapter needs at least {sum(minimum.get(s, 1) for s in n_hosts)} "
                         f"({req} hosts per split) to run")
    try:
        split = split_hosts(meta, hosts, seed, by=by)
    except ValueError:
        if by != "brick":
            raise
        by = "host"  # whole bricks cannot fill the splits: fall back to hosts
        split = split_hosts(meta, hosts, seed, by=by)
    actual = {s: len(v) for s, v in split.items()}
    per_class = {}
    for s in hosts:
        avail = max_per_class(meta, split[s])
        if s == "train":  # keep a fifth of the rows for new injections into training hosts (seen-host checks)
            avail = int(0.8 * avail)
        want = (n_per_class or {}).get(s, avail)
        per_class[s] = int(min(want, avail))
        if per_class[s] < 2:
            raise ValueError(f"{where}: split {s!r} ({actual[s]} hosts) cannot supply two images per class")
    reduced = actual != dict(n_hosts) or any(per_class[s] < n for s, n in (n_per_class or {}).items())
    note = ""
    if reduced:
        note = (f"The requested sizes ({', '.join(f'{s}: {n_hosts[s]} hosts' for s in n_hosts)}) exceed what the "
                f"{where} hold ({have} hosts); this run uses "
                + ", ".join(f"{s}: {actual[s]} hosts, {per_class[s]} images per class" for s in hosts) + ".")
    return SizePlan(actual, per_class, by, reduced, note)
