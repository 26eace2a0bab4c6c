"""Priors on lens systems: Einstein radius, source offset, mass ellipticity, shear.

A prior is a plain dict (so papermill parameters and YAML profiles can carry it)::

    {"theta_e": {"dist": "uniform", "low": 0.5, "high": 2.5},      # arcsec
     "beta": {"dist": "uniform_radius", "max_over_theta_e": 1.0},
     "mass_e_sd": 0.1, "shear_sd": 0.05, "min_total_mu": None}

``theta_e.dist`` is ``uniform`` or ``loguniform`` (``low``/``high`` in arcsec),
``grid`` (``values``: a list of Einstein radii [arcsec], each drawn with equal
probability, as for injections on a fixed grid), or ``sigma_v`` (host-consistent:
theta_E = 4 pi (sigma_v/c)^2 D_ls/D_s with
log10 sigma_v ~ N(``log10_sigma_mean``, ``log10_sigma_sd``) [km/s],
z_l ~ U(``zl_low``, ``zl_high``) and ln z_s ~ N(ln ``zs_median``, ``zs_log_sd``),
flat LambdaCDM H0 = 70, Om0 = 0.3).

``beta.dist`` is ``uniform_radius`` (|beta| ~ U(0, max) theta_E: the median is
half the maximum), ``uniform_area`` (|beta| = max theta_E sqrt(u): uniform
over the disc) or ``quantiles`` (|beta| / theta_E by interpolating tabulated
quantiles ``x`` at cumulative probabilities ``p``, from 0 to 1). ``theta_e.dist``
may also be ``lognormal`` (``median``, ``p16``, ``p84`` in arcsec). Mass ellipticity (e1, e2) and shear (gamma1, gamma2) are
independent normals with the given standard deviations (paltas' HST training
prior uses 0.1 and 0.05; simulation_priors.md §3). ``min_total_mu`` keeps only
systems whose total point-source magnification reaches it (LensPop's
detectability cut uses 3).
"""
from __future__ import annotations

import copy

import numpy as np
import pandas as pd

from .lensing import ellipticity_to_q_phi
from .survey import sample_psf_fwhm

SPEED_OF_LIGHT_KMS = 299792.458
RAD_TO_ARCSEC = 180.0 / np.pi * 3600.0

_THETA_E_KEYS = {
    "uniform": {"low", "high"},
    "loguniform": {"low", "high"},
    "grid": {"values"},
    "lognormal": {"median", "p16", "p84"},
    "sigma_v": {"log10_sigma_mean", "log10_sigma_sd", "zl_low", "zl_high", "zs_median", "zs_log_sd"},
}
_BETA_KEYS = {"uniform_radius": {"max_over_theta_e"}, "uniform_area": {"max_over_theta_e"}, "quantiles": {"p", "x"}}
_TOP_KEYS = {"label", "theta_e", "beta", "mass_e_sd", "shear_sd", "min_total_mu"}


def validate_prior(name: str, spec: dict) -> dict:
    """Check a prior spec; raise ``ValueError`` naming the prior and the offending key."""
    if not isinstance(spec, dict):
        raise ValueError(f"prior {name!r}: expected a mapping, got {type(spec).__name__}")
    extra = set(spec) - _TOP_KEYS
    if extra:
        raise ValueError(f"prior {name!r}: unknown key(s) {sorted(extra)}; allowed {sorted(_TOP_KEYS)}")
    for part, table in (("theta_e", _THETA_E_KEYS), ("beta", _BETA_KEYS)):
        sub = spec.get(part)
        if not isinstance(sub, dict) or sub.get("dist") not in table:
            raise ValueError(f"prior {name!r}: {part}.dist must be one of {sorted(table)}")
        need = table[sub["dist"]]
        have = set(sub) - {"dist"}
        if have != need:
            raise ValueError(
                f"prior {name!r}: {part} ({sub['dist']}) needs keys {sorted(need)}, got {sorted(have)}"
            )
    te = spec["theta_e"]
    if te["dist"] == "grid":
        vals = te["values"]
        if (not isinstance(vals, (list, tuple)) or not vals
                or not all(isinstance(v, (int, float)) and not isinstance(v, bool) and v > 0 for v in vals)):
            raise ValueError(f"prior {name!r}: theta_e (grid) values must be a non-empty list of positive numbers")
    if spec["beta"]["dist"] == "quantiles":
        p, x = (np.asarray(spec["beta"][k], dtype=float) for k in ("p", "x"))
        if p.shape != x.shape or p.size < 2 or p[0] != 0 or p[-1] != 1 or (np.diff(p) <= 0).any() \
                or (np.diff(x) < 0).any() or x[0] < 0:
            raise ValueError(f"prior {name!r}: beta (quantiles) needs p rising from 0 to 1 and x non-decreasing "
                             "from >= 0, of equal length")
    bmax = beta_max_over_theta_e(spec["beta"])
    if not isinstance(bmax, (int, float)) or isinstance(bmax, bool) or bmax <= 0:
        raise ValueError(f"prior {name!r}: beta.max_over_theta_e must be a positive number")
    return spec


def einstein_radius_sis(sigma_v, z_l, z_s, cosmology=None) -> np.ndarray:
    """theta_E [arcsec] = 4 pi (sigma_v / c)^2 D_ls / D_s for sigma_v [km/s] (SIS/SIE)."""
    from astropy.cosmology import FlatLambdaCDM

    cosmo = cosmology or FlatLambdaCDM(H0=70.0, Om0=0.3)
    z_l = np.asarray(z_l, dtype=float)
    z_s = np.asarray(z_s, dtype=float)
    d_ls = cosmo.angular_diameter_distance(z_l, z_s).value
    d_s = cosmo.angular_diameter_distance(z_s).value
    return RAD_TO_ARCSEC * 4 * np.pi * (np.asarray(sigma_v) / SPEED_OF_LIGHT_KMS) ** 2 * d_ls / d_s


#: Uniform variates per lens system, in this order: theta_E (or log sigma_v), z_l, z_s, |beta|, beta's
#: position angle, mass e1, e2, shear gamma1, gamma2. One layout for the geometry chapter's systems and the
#: simulator's injections (``populations.sample_injections`` draws these rows first, then the source's).
LENS_DRAWS = 9
#: A source lies at least this far behind its lens in redshift.
MIN_DZ = 0.1


def truncated_lognormal(u, median, log_sd, low):
    """Inverse-CDF draw of ln z ~ N(ln median, log_sd) truncated to z > low (no clipping pile-up)."""
    from scipy.special import ndtr, ndtri

    f_low = ndtr((np.log(np.maximum(low, 1e-12)) - np.log(median)) / log_sd)
    p = np.clip(f_low + np.asarray(u) * (1.0 - f_low), 1e-15, 1 - 1e-15)
    return median * np.exp(log_sd * ndtri(p))


def lens_from_uniforms(theta_spec: dict, beta_spec: dict, mass_e_sd: float, shear_sd: float, u: np.ndarray, *,
                       zs_median: float | None = None, zs_log_sd: float | None = None,
                       z_l=None, sigma_v=None) -> pd.DataFrame:
    """Map uniform variates ``u`` (shape (LENS_DRAWS, n), in (0, 1)) to lens systems.

    ``theta_spec["dist"]``: ``uniform``/``loguniform``/``grid``/``lognormal`` (theta_E [arcsec] from ``u[0]``;
    lognormal from its median and 16/84% quantiles), ``sigma_v``
    (log10 sigma_v [km/s] normal from ``u[0]``, z_l uniform from ``u[1]``, z_s from ``u[2]``; the spec
    carries the redshift parameters) or ``host`` (sigma_v [km/s] and z_l given per system, z_s from ``u[2]``
    with ``zs_median``/``zs_log_sd``). z_s is lognormal truncated to z_s > z_l + ``MIN_DZ``.
    Columns: theta_e, beta [arcsec], beta_over_theta_e, src_x, src_y [arcsec], e1, e2, q, phi [rad],
    gamma1, gamma2 (+ sigma_v [km/s], z_l, z_s where the prior is physical).
    """
    from scipy.special import ndtri

    u = np.clip(np.asarray(u, dtype=float), 1e-12, 1 - 1e-12)
    if u.shape[0] < LENS_DRAWS:
        raise ValueError(f"lens_from_uniforms: need {LENS_DRAWS} rows of uniforms, got {u.shape[0]}")
    n = u.shape[1]
    d = theta_spec["dist"]
    out: dict = {}
    if d == "uniform":
        theta = theta_spec["low"] + (theta_spec["high"] - theta_spec["low"]) * u[0]
    elif d == "loguniform":
        theta = np.exp(np.log(theta_spec["low"]) + np.log(theta_spec["high"] / theta_spec["low"]) * u[0])
    elif d == "grid":
        vals = np.asarray(theta_spec["values"], dtype=float)
        theta = vals[np.minimum((u[0] * len(vals)).astype(int), len(vals) - 1)]
    elif d == "lognormal":
        theta = theta_spec["median"] * np.exp(0.5 * np.log(theta_spec["p84"] / theta_spec["p16"]) * ndtri(u[0]))
    elif d in ("sigma_v", "host"):
        if d == "sigma_v":
            sigma_v = 10 ** (theta_spec["log10_sigma_mean"] + theta_spec["log10_sigma_sd"] * ndtri(u[0]))
            z_l = theta_spec["zl_low"] + (theta_spec["zl_high"] - theta_spec["zl_low"]) * u[1]
            zs_median, zs_log_sd = theta_spec["zs_median"], theta_spec["zs_log_sd"]
        elif sigma_v is None or z_l is None or zs_median is None or zs_log_sd is None:
            raise ValueError("theta_e.dist 'host' needs sigma_v, z_l, zs_median and zs_log_sd")
        sigma_v = np.broadcast_to(np.asarray(sigma_v, dtype=float), (n,))
        z_l = np.broadcast_to(np.asarray(z_l, dtype=float), (n,))
        z_s = truncated_lognormal(u[2], zs_median, zs_log_sd, z_l + MIN_DZ)
        theta = einstein_radius_sis(sigma_v, z_l, z_s)
        out.update(sigma_v=np.array(sigma_v), z_l=np.array(z_l), z_s=z_s)
    else:
        raise ValueError(f"unknown theta_e.dist {d!r}")
    theta = np.maximum(theta, 0.05)
    if beta_spec["dist"] == "quantiles":  # inverse CDF interpolated between tabulated quantiles
        frac = np.interp(u[3], beta_spec["p"], beta_spec["x"])
    else:
        bmax = beta_spec["max_over_theta_e"]
        frac = bmax * (u[3] if beta_spec["dist"] == "uniform_radius" else np.sqrt(u[3]))
    ang = 2 * np.pi * u[4]
    e1, e2 = mass_e_sd * ndtri(u[5]), mass_e_sd * ndtri(u[6])
    q, phi = ellipticity_to_q_phi(e1, e2)
    df = pd.DataFrame({
        "theta_e": theta, "beta": frac * theta, "beta_over_theta_e": frac,
        "src_x": frac * theta * np.cos(ang), "src_y": frac * theta * np.sin(ang),
        "e1": e1, "e2": e2, "q": q, "phi": phi,
        "gamma1": shear_sd * ndtri(u[7]), "gamma2": shear_sd * ndtri(u[8]),
    })
    for k, v in out.items():
        df[k] = v
    return df


def sample_systems(name: str, spec: dict, n: int, rng: np.random.Generator) -> pd.DataFrame:
    """Draw ``n`` lens systems from a prior spec (before any ``min_total_mu`` cut).

    Columns: theta_e [arcsec], beta [arcsec], beta_over_theta_e, src_x, src_y
    [arcsec], e1, e2, q, phi [rad], gamma1, gamma2, psf_fwhm_r [arcsec] (+ sigma_v,
    z_l, z_s for host-consistent priors). The same transform as the simulator's injections
    (:func:`lens_from_uniforms`), fed from one generator.
    """
    validate_prior(name, spec)
    u = rng.random((LENS_DRAWS, n))
    df = lens_from_uniforms(spec["theta_e"], spec["beta"], spec.get("mass_e_sd", 0.0), spec.get("shear_sd", 0.0), u)
    df["psf_fwhm_r"] = sample_psf_fwhm("r", n, rng)
    df.insert(0, "prior", name)
    return df


def _num(v) -> str:
    return f"{v:g}"


def describe_theta_e(spec: dict) -> str:
    """Short text for a ``theta_e`` spec (for narrow tables), e.g. ``U(0.5, 2.5)″``."""
    d = spec["dist"]
    if d in ("uniform", "loguniform"):
        return f"{'U' if d == 'uniform' else 'logU'}({_num(spec['low'])}, {_num(spec['high'])})″"
    if d == "grid":
        return "grid {" + ", ".join(_num(v) for v in spec["values"]) + "}″"
    if d == "lognormal":
        return f"logN({_num(spec['median'])}″; {_num(spec['p16'])}–{_num(spec['p84'])})"
    return "from σ_v, z_l, z_s"


def describe_beta(spec: dict) -> str:
    """Short text for a ``beta`` spec, e.g. ``area, ≤ 0.7 θ_E``."""
    if spec["dist"] == "quantiles":
        return f"tabulated, median {_num(beta_median_over_theta_e(spec))} θ_E"
    kind = "U(|β|)" if spec["dist"] == "uniform_radius" else "area"
    return f"{kind}, ≤ {_num(round(spec['max_over_theta_e'], 3))} θ_E"


def beta_max_over_theta_e(spec: dict) -> float:
    """Largest |beta| / theta_E a ``beta`` spec draws."""
    return float(max(spec["x"])) if spec["dist"] == "quantiles" else spec["max_over_theta_e"]


def beta_median_over_theta_e(spec: dict) -> float:
    """Analytic median of |beta| / theta_E: max / 2 (uniform in radius), max / sqrt(2) (in area), or the
    tabulated quantiles interpolated at 0.5."""
    if spec["dist"] == "quantiles":
        return float(np.interp(0.5, spec["p"], spec["x"]))
    return spec["max_over_theta_e"] * (0.5 if spec["dist"] == "uniform_radius" else np.sqrt(0.5))


def resolve_priors(priors: dict) -> dict:
    """Deep-copy and validate a mapping name -> spec (e.g. a notebook parameter)."""
    out = copy.deepcopy(priors)
    for name, spec in out.items():
        validate_prior(name, spec)
    return out


_LENS_SHAPE = {"mass_e_sd": 0.1, "shear_sd": 0.05}
_REQUEST_THETA = {"dist": "uniform", "low": 0.5, "high": 2.5}
_LOG_THETA = {"dist": "loguniform", "low": 0.5, "high": 2.5}
_BETA_RADIUS = {"dist": "uniform_radius", "max_over_theta_e": 1.0}
_BETA_AREA = {"dist": "uniform_area", "max_over_theta_e": 1.0}
# Host-consistent theta_E: sigma_v as in desitarget's LRG mock (log10 sigma ~ N(2.3, 0.1), a mock
# assumption, median ~200 km/s), z_l uniform over the DESI LRG range 0.4-1.0 (Zhou+23), z_s lognormal
# around the LensPop DES-detectable median 1.85 (16-84%: 1.14-2.56). simulation_priors.md §2-4.
_SIGMA_THETA = {
    "dist": "sigma_v", "log10_sigma_mean": 2.3, "log10_sigma_sd": 0.1,
    "zl_low": 0.4, "zl_high": 1.0, "zs_median": 1.85, "zs_log_sd": 0.3,
}

# An injection grid over the request's stated theta_E range 0.5-2.5 arcsec in steps of 0.5 arcsec (the
# range's own end points and the coarsest round step that has interior values): an assumption about how
# a team might inject, not a stated fact.
_GRID_THETA = {"dist": "grid", "values": [0.5, 1.0, 1.5, 2.0, 2.5]}

#: Candidate priors compared in the geometry chapter (name -> spec).
CANDIDATE_PRIORS: dict[str, dict] = {
    "uniform_theta_uniform_beta": {
        "label": "U(θ_E) · U(|β|)", "theta_e": _REQUEST_THETA, "beta": _BETA_RADIUS, **_LENS_SHAPE},
    "uniform_theta_area_beta": {
        "label": "U(θ_E) · area(β)", "theta_e": _REQUEST_THETA, "beta": _BETA_AREA,
        **_LENS_SHAPE},
    "loguniform_theta_uniform_beta": {
        "label": "logU(θ_E) · U(|β|)", "theta_e": _LOG_THETA, "beta": _BETA_RADIUS,
        **_LENS_SHAPE},
    "loguniform_theta_area_beta": {
        "label": "logU(θ_E) · area(β)", "theta_e": _LOG_THETA, "beta": _BETA_AREA,
        **_LENS_SHAPE},
    "physical_sigma_v": {
        "label": "σ_v(θ_E) · area(β)", "theta_e": _SIGMA_THETA, "beta": _BETA_AREA,
        **_LENS_SHAPE},
    "physical_detectable": {
        "label": "σ_v(θ_E) · area(β) · μ≥3", "theta_e": _SIGMA_THETA, "beta": _BETA_AREA,
        **_LENS_SHAPE, "min_total_mu": 3.0},
}


#: Cut-offs c of beta uniform in area up to c theta_E tried against the request's statistics
#: (median beta / theta_E = c / sqrt 2: c = 0.7 gives 0.49).
AREA_BETA_CUTOFFS = (0.6, 0.7, 0.8, 0.9)


def _families() -> dict[str, dict]:
    thetas = {"uniform_theta": ("U(θ_E)", _REQUEST_THETA), "loguniform_theta": ("logU(θ_E)", _LOG_THETA),
              "grid_theta": ("grid(θ_E)", _GRID_THETA)}
    betas = {f"area{int(round(100 * c))}_beta": (f"area(β≤{c:g}θ_E)", {"dist": "uniform_area", "max_over_theta_e": c})
             for c in AREA_BETA_CUTOFFS}
    out = {}
    for tkey, (tlab, tspec) in thetas.items():
        # the grid also with the two c = 1 beta families the candidates already use for U and logU
        extra = {"uniform_beta": ("U(|β|)", _BETA_RADIUS), "area_beta": ("area(β)", _BETA_AREA)} \
            if tkey == "grid_theta" else {}
        for bkey, (blab, bspec) in {**extra, **betas}.items():
            out[f"{tkey}_{bkey}"] = {"label": f"{tlab} · {blab}", "theta_e": tspec, "beta": bspec, **_LENS_SHAPE}
    return out


#: Further prior families tried against the request's three statistics (name -> spec): beta uniform in
#: area up to c theta_E (c < 1) with uniform, log-uniform and grid theta_E, and the grid with the c = 1
#: families. Together with CANDIDATE_PRIORS they test whether the statistics identify the prior.
PRIOR_FAMILIES: dict[str, dict] = _families()
