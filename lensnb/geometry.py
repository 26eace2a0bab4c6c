"""Where the images of a lensed source land: inner-image statistics under a prior.

"Inner image" means the image closest to the lens centre in a system with two
or more images (the SIS counter-image at theta_E - beta). Distances are
reported in pixels of 0.262 arcsec from the lens centre, which sits at the
stamp's geometric centre; the "central 10x10 box" is |dx| < 5 px and
|dy| < 5 px around it (pixels 27..36 of a 64-px stamp).
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from .config import CORE_BOX, PIXEL_SCALE
from .lensing import find_images, sis_images
from .priors import sample_systems


def solve_systems(systems: pd.DataFrame, *, progress: bool = False, device=None) -> pd.DataFrame:
    """Add image-plane quantities (SIE + shear solver, and SIS analytic) to ``systems``.

    New columns: n_images; inner_x, inner_y, inner_r [arcsec] of the innermost
    image (NaN with fewer than two images); inner_r_px [pixels]; inner_abs_mu,
    total_abs_mu, inner_flux_share (|mu_inner| / sum |mu|); in_core_box;
    within_5px; within_fwhm (inner_r < psf_fwhm_r); and sis_inner_r_px,
    sis_inner_flux_share from the SIS formulas with the same theta_E and beta.
    """
    im = find_images(
        systems["src_x"].to_numpy(), systems["src_y"].to_numpy(), systems["theta_e"].to_numpy(),
        systems["q"].to_numpy(), systems["phi"].to_numpy(),
        systems["gamma1"].to_numpy(), systems["gamma2"].to_numpy(),
        progress=progress, device=device,
    )
    out = systems.copy()
    multi = im.n >= 2
    out["n_images"] = im.n
    out["inner_x"] = np.where(multi, im.x[:, 0], np.nan)
    out["inner_y"] = np.where(multi, im.y[:, 0], np.nan)
    out["inner_r"] = np.hypot(out["inner_x"], out["inner_y"])
    out["inner_r_px"] = out["inner_r"] / PIXEL_SCALE
    abs_mu = np.abs(im.mu)
    out["total_abs_mu"] = np.nansum(abs_mu, axis=1)
    out["inner_abs_mu"] = np.where(multi, abs_mu[:, 0], np.nan)
    out["inner_flux_share"] = out["inner_abs_mu"] / out["total_abs_mu"]
    half = CORE_BOX / 2 * PIXEL_SCALE
    out["in_core_box"] = multi & (np.abs(out["inner_x"]) < half) & (np.abs(out["inner_y"]) < half)
    out["within_5px"] = multi & (out["inner_r_px"] < 5.0)
    out["within_fwhm"] = multi & (out["inner_r"] < out["psf_fwhm_r"])
    sis = sis_images(out["beta"].to_numpy(), out["theta_e"].to_numpy())
    out["sis_inner_r_px"] = sis["theta_minus"] / PIXEL_SCALE
    out["sis_inner_flux_share"] = sis["mu_minus"] / (sis["mu_minus"] + sis["mu_plus"])
    return out


def apply_selection(solved: pd.DataFrame, min_total_mu: float | None) -> pd.DataFrame:
    """Keep systems with total |mu| >= ``min_total_mu`` (no cut when None)."""
    if min_total_mu is None:
        return solved
    return solved[solved["total_abs_mu"] >= min_total_mu].reset_index(drop=True)


def simulate_prior(name: str, spec: dict, n: int, seed: int, **kw) -> pd.DataFrame:
    """Draw ``n`` systems from a prior, solve them and apply its selection cut."""
    rng = np.random.default_rng(seed)
    return apply_selection(solve_systems(sample_systems(name, spec, n, rng), **kw), spec.get("min_total_mu"))


def summarise(solved: pd.DataFrame) -> dict[str, float]:
    """Headline statistics of one prior's solved systems (fractions over all systems)."""
    multi = solved["n_images"] >= 2
    return {
        "n_systems": int(len(solved)),
        "median_theta_e_arcsec": float(solved["theta_e"].median()),
        "median_beta_over_theta_e": float(solved["beta_over_theta_e"].median()),
        "frac_multiple_images": float(multi.mean()),
        "median_inner_r_px": float(solved.loc[multi, "inner_r_px"].median()),
        "frac_within_5px": float(solved["within_5px"].mean()),
        "frac_within_fwhm": float(solved["within_fwhm"].mean()),
        "frac_in_core_box": float(solved["in_core_box"].mean()),
        "median_inner_abs_mu": float(solved.loc[multi, "inner_abs_mu"].median()),
        "median_inner_flux_share": float(solved.loc[multi, "inner_flux_share"].median()),
        "median_sis_inner_r_px": float(np.nanmedian(solved["sis_inner_r_px"])),
        "frac_sis_within_5px": float(np.nan_to_num(solved["sis_inner_r_px"] < 5.0).mean()),
        "frac_theta_e_below_fwhm": float((solved["theta_e"] < solved["psf_fwhm_r"]).mean()),
    }


# --- Does a prior reproduce the request's stated numbers? -------------------------------------------

#: The request's three statistics, in the order the chapter reports them: key -> name for prose.
REQUEST_STATISTICS = {
    "median_beta_over_theta_e": "median β/θ_E",
    "median_inner_r_px": "median inner-image distance",
    "frac_within_5px": "fraction within 5 px",
}


def median_interval(values, level: float = 0.95) -> tuple[float, float, float]:
    """Median of the finite ``values`` and its distribution-free Monte-Carlo interval.

    The interval runs between the order statistics x_(j) and x_(n+1-j) (1-based) with j the
    largest index such that P(Binomial(n, 1/2) < j) <= (1 - level) / 2, so it covers the
    population median with probability >= ``level`` whatever the distribution. NaN without data;
    the whole sample range when n is too small for the level.
    """
    from scipy.stats import binom

    v = np.sort(np.asarray(values, dtype=float))
    v = v[np.isfinite(v)]
    n = len(v)
    if n == 0:
        return (np.nan, np.nan, np.nan)
    j = int(binom.ppf((1.0 - level) / 2.0, n, 0.5))  # P(B <= j) >= alpha/2 ...
    while j > 0 and binom.cdf(j - 1, n, 0.5) > (1.0 - level) / 2.0:  # ... so step back until P(B < j) <= alpha/2
        j -= 1
    j = max(j, 1)
    return (float(np.median(v)), float(v[j - 1]), float(v[n - j]))


def fraction_interval(k: int, n: int, level: float = 0.95) -> tuple[float, float, float]:
    """Fraction k/n and its Wilson score interval (NaN for n = 0)."""
    from scipy.stats import norm

    if n == 0:
        return (np.nan, np.nan, np.nan)
    z = float(norm.ppf(0.5 + level / 2.0))
    p = k / n
    den = 1.0 + z * z / n
    mid = (p + z * z / (2 * n)) / den
    half = z * np.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / den
    return (float(p), float(max(0.0, mid - half)), float(min(1.0, mid + half)))


def request_statistics(solved: pd.DataFrame, level: float = 0.95) -> dict[str, tuple[float, float, float]]:
    """The request's three statistics with their MC intervals: key -> (value, low, high).

    Same definitions as :func:`summarise`: median beta/theta_E over all systems, median inner-image
    distance over systems with two or more images, fraction of all systems with an inner image
    within 5 px.
    """
    multi = solved["n_images"] >= 2
    return {
        "median_beta_over_theta_e": median_interval(solved["beta_over_theta_e"], level),
        "median_inner_r_px": median_interval(solved.loc[multi, "inner_r_px"], level),
        "frac_within_5px": fraction_interval(int(solved["within_5px"].sum()), len(solved), level),
    }


def stated_decimals(value: float) -> int:
    """Decimals of a stated number as written (shortest round-trip form): 0.5 -> 1, 2.1 -> 1, 0.918 -> 3."""
    text = np.format_float_positional(float(value), trim="-")
    return len(text.split(".")[1]) if "." in text else 0


def rounding_interval(value: float, decimals: int | None = None) -> tuple[float, float]:
    """[low, high) of the numbers that round to ``value`` at ``decimals`` (default: as stated)."""
    d = stated_decimals(value) if decimals is None else decimals
    half = 0.5 * 10.0 ** (-d)
    return (float(value) - half, float(value) + half)


def intervals_overlap(low: float, high: float, r_low: float, r_high: float) -> bool:
    """Whether the closed MC interval [low, high] meets the half-open rounding interval [r_low, r_high)."""
    if not (np.isfinite(low) and np.isfinite(high)):
        return False
    return bool(low < r_high and high >= r_low)


def consistency_table(
    solved: dict[str, pd.DataFrame], claims: dict[str, float], level: float = 0.95
) -> pd.DataFrame:
    """One row per prior: each request statistic's value, MC interval and whether it is consistent.

    A statistic is consistent when its ``level`` MC interval overlaps the rounding interval of the
    stated number (:func:`rounding_interval`); a prior is consistent when all stated statistics are.
    Columns ``<stat>``, ``<stat>_lo``, ``<stat>_hi``, ``<stat>_ok`` for each key of ``claims`` that
    is in :data:`REQUEST_STATISTICS`, then ``consistent``; index: prior names.
    """
    unknown = set(claims) - set(REQUEST_STATISTICS)
    if unknown:
        raise ValueError(f"unknown request statistic(s) {sorted(unknown)}; known {list(REQUEST_STATISTICS)}")
    keys = [k for k in REQUEST_STATISTICS if k in claims]
    rows = {}
    for name, df in solved.items():
        stats = request_statistics(df, level)
        row = {}
        for k in keys:
            v, lo, hi = stats[k]
            row[k], row[f"{k}_lo"], row[f"{k}_hi"] = v, lo, hi
            row[f"{k}_ok"] = intervals_overlap(lo, hi, *rounding_interval(claims[k]))
        row["consistent"] = all(row[f"{k}_ok"] for k in keys)
        rows[name] = row
    return pd.DataFrame.from_dict(rows, orient="index")


def miss_directions(table: pd.DataFrame, claims: dict[str, float]) -> dict[str, tuple[int, int]]:
    """Per statistic: how many priors' MC intervals lie wholly below / wholly above the rounding interval."""
    out = {}
    for k in (k for k in REQUEST_STATISTICS if k in claims):
        r_low, r_high = rounding_interval(claims[k])
        miss = ~table[f"{k}_ok"].astype(bool)
        out[k] = (int((miss & (table[f"{k}_hi"] < r_low)).sum()), int((miss & (table[f"{k}_lo"] >= r_high)).sum()))
    return out


def identification_verdict(
    table: pd.DataFrame, specs: dict[str, dict], labels: dict[str, str], mc_limited: bool = False
) -> str:
    """Markdown sentence(s), built from a :func:`consistency_table`, on whether the statistics identify the prior.

    Priors count as different when their specs differ (labels ignored); "identified" can only mean
    "among the priors tried". ``mc_limited``: the MC intervals are wider than the rounding intervals,
    so agreement may be simulation noise (the verdict says so).
    """
    from .priors import describe_beta, describe_theta_e

    n_all = len(table)
    ok = [n for n in table.index if bool(table.loc[n, "consistent"])]
    names = ", ".join(f"{labels.get(n, n)}" for n in ok)
    if not ok:
        keys = [k for k in REQUEST_STATISTICS if f"{k}_ok" in table]
        near = [(n, [k for k in keys if not bool(table.loc[n, f"{k}_ok"])]) for n in table.index]
        near = [(n, miss) for n, miss in near if len(miss) == 1]
        text = f"**None of the {n_all} priors is consistent with all three statistics.**"
        if near:
            parts = "; ".join(f"{labels.get(n, n)} (misses the {REQUEST_STATISTICS[m[0]]})" for n, m in near)
            text += f" {len(near)} prior{'s match' if len(near) > 1 else ' matches'} two of the three: {parts}."
        else:
            text += " No prior matches even two of the three."
        text += (" Within this set the request's numbers identify no prior, and this set cannot show whether "
                 "several priors outside it would match them equally well: the geometry of the team's injections "
                 "has to be read from their configuration or their manifests (θ_E and β per injection), not "
                 "inferred from these summaries.")
        return text

    def key(n):
        return repr({k: v for k, v in specs[n].items() if k != "label"})

    distinct = {key(n) for n in ok}
    if len(distinct) == 1:
        return (f"Only {'one' if len(ok) == 1 else 'one distinct'} of the {n_all} priors is consistent with all "
                f"three statistics ({names}). Among the priors tried the statistics single it out; priors outside "
                "this set were not tried, so that is not proof that the team used it.")
    thetas = sorted({describe_theta_e(specs[n]["theta_e"]) for n in ok})
    betas = sorted({describe_beta(specs[n]["beta"]) for n in ok})
    return (f"**{len(ok)} of the {n_all} priors are consistent with all three statistics**: {names}. They use "
            f"{len(thetas)} different θ_E distribution{'s' if len(thetas) > 1 else ''} ({'; '.join(thetas)}) and "
            f"{len(betas)} different β distribution{'s' if len(betas) > 1 else ''} ({'; '.join(betas)}). "
            "Different priors reproduce the same three numbers, so **the request's three statistics do not "
            "identify the prior**" + (" at this simulation size (the Monte-Carlo intervals are wider than the "
                                      "rounding intervals, so part of this agreement may be simulation noise)"
                                      if mc_limited else "") +
            ": the geometry of the team's injections has to be read from their "
            "configuration or their manifests (θ_E and β per injection), not inferred from these summaries.")
