"""Host LRGs, lens parameters and source galaxies: the simulator's populations and presets.

Sources of the numbers (``shared/science/simulation_priors.md``):

* Host LRGs (§2): z-band magnitude, g-r, r-z, half-light radius and axis ratio per Tractor type
  from percentiles of desitarget's DR9 LRG Gaussian mixtures (Note C; medians and 16-84% ranges,
  drawn here as normals / lognormals with those quantiles); type mix from the DR9 fractype table
  near z = 19.25 (DEV 0.33, SER 0.31, REX 0.28, EXP 0.06 -> REX and EXP drawn as exponentials).
  Redshift uniform over the DESI LRG range 0.4-1.0 (Zhou+23), independent of magnitude (no
  verified colour/magnitude-redshift relation was found: marked U in the priors). Velocity
  dispersion log10 sigma ~ N(2.3, 0.1) km/s (desitarget's LRG mock: an assumption, not a measurement).
  Sersic index: 4 for DEV, U(2, 6) for SER (no measured distribution found), 1 for REX/EXP.
* Sources (§4): exponential (n = 1) discs; unlensed r magnitude, size and colours from LensPop's
  DES-detectable population (r 24.2, 16-84%: 23.3-25.5; R_e 0.31", 0.12-0.56"; g-r -0.01,
  -0.14-0.39); r-z is not tabulated there and is drawn like g-r (a flat-spectrum assumption);
  axis ratio 1 - Rayleigh(0.3), at least 0.2 (LensPop).
* Neighbours: Poisson numbers of faint galaxies and stars per stamp (assumed densities, no
  verified source; see ``NEIGHBOURS``).

Presets are plain dicts (see ``PRESETS``); every prior is a key that a caller can override.
"""
from __future__ import annotations

import copy

import numpy as np
import pandas as pd

from .config import PIXEL_SCALE, STAMP_SIZE
from .survey import sample_psf_fwhm

# type: (fraction, z mag (median, p16, p84), g-r, r-z, R_e [arcsec], b/a)
HOST_TYPES = {
    "DEV": (0.33, (19.6, 18.8, 20.3), (1.80, 1.48, 2.09), (1.49, 1.13, 1.86), (1.06, 0.64, 1.80), (0.64, 0.43, 0.80)),
    "SER": (0.31, (18.6, 18.0, 19.3), (1.68, 1.39, 1.86), (1.02, 0.86, 1.26), (1.69, 1.04, 2.72), (0.61, 0.35, 0.80)),
    "EXP": (0.36, (20.0, 19.3, 20.6), (1.53, 1.18, 1.92), (1.37, 1.01, 1.76), (1.02, 0.66, 1.58), (0.47, 0.32, 0.60)),
}
# Coadd per-pixel noise [nmgy/pixel], DR9 south: median, 16%, 84% (simulation_priors.md §1, Note B)
NOISE_SIGMA = {"g": (0.0031, 0.0023, 0.0040), "r": (0.0044, 0.0029, 0.0062), "z": (0.0117, 0.0085, 0.0154)}
# Assumed neighbour densities per 64x64 stamp (0.078 arcmin^2): not from a verified source.
NEIGHBOURS = {"galaxies_per_stamp": 0.6, "galaxy_r_mag": (20.0, 23.5), "stars_per_stamp": 0.15,
              "star_r_mag": (17.0, 22.0)}

# Realism options: each preset carries a "realism" dict with these keys. Off reproduces the request's
# simulator (one smooth Sersic per host, the same shape in every band, centred on the stamp, sky noise
# only); on is the `physical` preset's default. Numbers are ASSUMPTIONS (no sourced LRG structure
# numbers in simulation_priors.md) except the exposure times.
REALISM_OFF = {"two_component": False, "colour_gradient": 0.0, "twist_deg_sd": 0.0, "centre_jitter_px": 0.0,
               "poisson": False, "noise_corr": 0.0, "companions_per_host": 0.0, "tidal_fraction": 0.0,
               "faber_jackson": False}
REALISM_ON = {
    "two_component": True,        # bulge (n = 4) + envelope (n = 1) instead of one Sersic profile
    "colour_gradient": 0.15,      # bulge light fraction is r's +/- this in z / g: a redder bulge, bluer outskirts
    "twist_deg_sd": 5.0,          # envelope position angle = host's + N(0, 5 deg): mild isophote twist
    "centre_jitter_px": 0.5,      # host and lens centre uniform within +/- 0.5 px (cutout centred on a pixel)
    "poisson": True,              # photon noise of host and arc (EXPOSURE_S, ELECTRONS_PER_S_PER_NMGY)
    "noise_corr": 0.15,           # sky noise correlated between neighbouring pixels (resampling): kernel weight a
    "companions_per_host": 0.3,   # Poisson mean of faint companions 1-4" from the host
    "tidal_fraction": 0.2,        # share of hosts with a faint tidal shell / tail in the host's colours (TIDAL_*)
    "faber_jackson": True,        # sigma_v tied to the host's luminosity (FJ_SLOPE, FJ_SCATTER_DEX)
}
REALISM_STEPS = ("two_component", "colour_gradient", "twist_deg_sd", "centre_jitter_px", "poisson", "noise_corr",
                 "companions_per_host", "tidal_fraction", "faber_jackson")  # the order the data chapter switches them on
REALISM_LABELS = {"two_component": "two-component hosts", "colour_gradient": "colour gradient",
                  "twist_deg_sd": "isophote twist", "centre_jitter_px": "centring offset", "poisson": "photon noise",
                  "noise_corr": "correlated sky noise", "companions_per_host": "companions",
                  "tidal_fraction": "tidal features", "faber_jackson": "Faber–Jackson σ_v"}
# two-component hosts: bulge R_e = 0.5 host R_e, envelope R_e = 1.6 host R_e; r-band bulge fraction U(0.4, 0.7)
BULGE_RE_FRAC, ENVELOPE_RE_FRAC, BULGE_FRAC_R = 0.5, 1.6, (0.4, 0.7)
# Faber-Jackson coupling (L ~ sigma^4, i.e. log10 sigma = const - 0.1 M): log10 sigma_v = FJ_LOG_SIGMA_REF
# - FJ_SLOPE (M_r - M_r,ref) + N(0, FJ_SCATTER_DEX), with M_r = host r magnitude - distance modulus (no
# K-correction) and M_r,ref the host prior's median, so the sigma_v median stays at the uncoupled prior's
# 10^2.3 km/s. Slope from L ~ sigma^4; scatter an ASSUMPTION.
FJ_LOG_SIGMA_REF, FJ_SLOPE, FJ_SCATTER_DEX = 2.3, 0.1, 0.07
# correlated sky noise: white noise convolved with the separable kernel [a, 1, a] (x) [a, 1, a], normalised to
# keep each pixel's variance; neighbouring pixels then correlate by 2a / (1 + 2a^2) (0.29 for a = 0.15). The
# Lanczos-3 resampling of the coadds correlates neighbours (simulation_priors.md: expected, not documented);
# a = 0.15 is an ASSUMPTION. Photon noise stays white.
# tidal features (shells / tails): a Gaussian ring segment about the host centre at radius TIDAL_R_RE x host R_e
# (at most 6"), width TIDAL_WIDTH", spanning TIDAL_EXTENT_DEG degrees, holding TIDAL_FLUX_FRAC of the host's
# light in every band (the host's colours). Rate and shape are ASSUMPTIONS (no sourced frequency in
# simulation_priors.md).
TIDAL_R_RE, TIDAL_WIDTH, TIDAL_EXTENT_DEG, TIDAL_FLUX_FRAC = (1.5, 3.0), (0.2, 0.5), (60.0, 180.0), (0.02, 0.06)
TIDAL_R_MAX = 6.0
# companions: r magnitude host + U(1.5, 4); R_e lognormal 0.3" (0.15-0.6"); bluer than the host by 0.3 in g-r
COMPANION_R = (1.0, 4.0)
# photon noise: DECaLS median-condition exposure totals per band [s] (simulation_priors.md: 166/134/200 s g/r/z);
# electrons per second per nanomaggy for a zero point of 26.5 mag at 1 e-/s -- an ASSUMPTION (no sourced
# DECam zero point), the same in every band.
EXPOSURE_S = {"g": 166.0, "r": 134.0, "z": 200.0}
ELECTRONS_PER_S_PER_NMGY = 10 ** ((26.5 - 22.5) / 2.5)


def electrons_per_nmgy() -> np.ndarray:
    """Photo-electrons per nanomaggy in g, r, z (exposure x assumed zero point): (3,)."""
    return np.array([EXPOSURE_S[b] * ELECTRONS_PER_S_PER_NMGY for b in "grz"])


def _abs_mag_r(hosts: pd.DataFrame) -> np.ndarray:
    from astropy.cosmology import FlatLambdaCDM

    dm = FlatLambdaCDM(H0=70.0, Om0=0.3).distmod(hosts["host_z"].to_numpy(float)).value
    return hosts["host_mag_r"].to_numpy(float) - dm


_FJ_MREF: list[float] = []


def fj_reference_mag() -> float:
    """Median absolute r magnitude of the host prior (20,000 hosts, fixed seed): the FJ relation's pivot."""
    if not _FJ_MREF:
        _FJ_MREF.append(float(np.median(_abs_mag_r(sample_hosts(20_000, np.random.default_rng(12345))))))
    return _FJ_MREF[0]


def faber_jackson_sigma(hosts: pd.DataFrame, seed: int) -> np.ndarray:
    """Velocity dispersion [km/s] tied to the host's luminosity (see FJ_*): brighter hosts, larger sigma_v and
    theta_E. The scatter is keyed by (seed, host_id)."""
    xi = np.array([np.random.default_rng([seed, 9, int(h)]).standard_normal() for h in hosts["host_id"]])
    return 10 ** (FJ_LOG_SIGMA_REF - FJ_SLOPE * (_abs_mag_r(hosts) - fj_reference_mag()) + FJ_SCATTER_DEX * xi)


def realism(preset: dict) -> dict:
    """The preset's realism options, every key present (missing keys are off); unknown keys refused."""
    r = dict(REALISM_OFF)
    extra = set(preset.get("realism", {})) - set(REALISM_OFF)
    if extra:
        raise ValueError(f"unknown realism option(s) {sorted(extra)}; options: {sorted(REALISM_OFF)}")
    r.update(preset.get("realism", {}))
    return r


def host_structure(hosts: pd.DataFrame, real: dict, seed: int) -> pd.DataFrame:
    """Per-host structure under the realism options ``real``: centre offset [arcsec], bulge light fraction per
    band (1 for a single Sersic), bulge and envelope R_e [arcsec], envelope position angle [rad]. Each host's
    variates come from a stream keyed by (seed, host_id), so a host looks the same in every batch."""
    from scipy.special import ndtri

    u = np.stack([np.random.default_rng([seed, 5, int(h)]).random(4) for h in hosts["host_id"]], 1) \
        if len(hosts) else np.zeros((4, 0))
    u = np.clip(u, 1e-12, 1 - 1e-12)
    half = real["centre_jitter_px"] * PIXEL_SCALE
    out = pd.DataFrame({"host_x_arcsec": (2 * u[0] - 1) * half, "host_y_arcsec": (2 * u[1] - 1) * half},
                       index=hosts.index)
    re = hosts["host_r_eff_arcsec"].to_numpy(float)
    if real["two_component"]:
        fr = BULGE_FRAC_R[0] + (BULGE_FRAC_R[1] - BULGE_FRAC_R[0]) * u[2]
        cg = real["colour_gradient"]
        for b, f in (("g", fr - cg), ("r", fr), ("z", fr + cg)):
            out[f"host_bulge_frac_{b}"] = np.clip(f, 0.05, 0.95)
        out["host_bulge_r_eff_arcsec"] = BULGE_RE_FRAC * re
        out["host_envelope_r_eff_arcsec"] = ENVELOPE_RE_FRAC * re
        out["host_envelope_phi_rad"] = hosts["host_phi_rad"].to_numpy(float) + np.deg2rad(real["twist_deg_sd"]) * ndtri(u[3])
    else:
        for b in "grz":
            out[f"host_bulge_frac_{b}"] = 1.0
        out["host_bulge_r_eff_arcsec"] = re
        out["host_envelope_r_eff_arcsec"] = re
        out["host_envelope_phi_rad"] = hosts["host_phi_rad"].to_numpy(float)
    return pd.concat([out, sample_tidal(hosts, real["tidal_fraction"], seed)], axis=1)


def sample_tidal(hosts: pd.DataFrame, fraction: float, seed: int) -> pd.DataFrame:
    """Tidal features (see TIDAL_*): per host, the share of its light in the feature (0: none), the radius and
    width [arcsec], the position angle of its middle and its angular extent [rad]. Keyed by (seed, host_id)."""
    n = len(hosts)
    u = np.stack([np.random.default_rng([seed, 10, int(h)]).random(6) for h in hosts["host_id"]], 1) \
        if n and fraction > 0 else np.full((6, n), 0.5)
    on = u[0] < fraction if fraction > 0 else np.zeros(n, bool)
    lerp = lambda rng_, x: rng_[0] + (rng_[1] - rng_[0]) * x  # noqa: E731
    radius = np.minimum(lerp(TIDAL_R_RE, u[1]) * hosts["host_r_eff_arcsec"].to_numpy(float), TIDAL_R_MAX)
    return pd.DataFrame({
        "host_tidal_flux_frac": np.where(on, lerp(TIDAL_FLUX_FRAC, u[2]), 0.0),
        "host_tidal_r_arcsec": np.where(on, radius, 0.0),
        "host_tidal_width_arcsec": np.where(on, lerp(TIDAL_WIDTH, u[3]), 0.0),
        "host_tidal_phi_rad": np.where(on, 2 * np.pi * u[4], 0.0),
        "host_tidal_extent_rad": np.where(on, np.deg2rad(lerp(TIDAL_EXTENT_DEG, u[5])), 0.0),
    }, index=hosts.index)


def sample_companions(hosts: pd.DataFrame, rate: float, seed: int) -> pd.DataFrame:
    """Faint companions (exponential discs) 1-4" from each host: Poisson(``rate``) per host, r magnitude
    host + U(1.5, 4), bluer than the host by 0.3 in g-r and 0.2 in r-z; columns as ``sample_neighbours``'s.
    Keyed by (seed, host_id)."""
    from scipy.special import ndtri

    rows = []
    for i, (h, mr, mg, mz) in enumerate(zip(hosts["host_id"], hosts["host_mag_r"], hosts["host_mag_g"],
                                           hosts["host_mag_z"])):
        g = np.random.default_rng([seed, 6, int(h)])
        k = g.poisson(rate) if rate > 0 else 0
        if k:
            u = np.clip(g.random((6, k)), 1e-12, 1 - 1e-12)
            r = COMPANION_R[0] + (COMPANION_R[1] - COMPANION_R[0]) * u[0]
            a = 2 * np.pi * u[1]
            mag_r = mr + 1.5 + 2.5 * u[2]
            rows.append(pd.DataFrame({
                "host_row": i, "x": r * np.cos(a), "y": r * np.sin(a),
                "r_eff": 0.3 * np.exp(0.5 * np.log(0.6 / 0.15) * ndtri(u[3])), "q": 0.4 + 0.6 * u[4],
                "phi": np.pi * u[5], "mag_g": mag_r + (mg - mr) - 0.3, "mag_r": mag_r, "mag_z": mag_r - (mr - mz) + 0.2,
                "star": False}))
    cols = ["host_row", "x", "y", "r_eff", "q", "phi", "mag_g", "mag_r", "mag_z", "star"]
    return pd.concat(rows, ignore_index=True)[cols] if rows else pd.DataFrame(columns=cols)


# Source colours (AB mag): g - r from LensPop's detectable sources (priors §4: median -0.01, 16-84% -0.14 to
# 0.39), drawn as a normal with that median and half the 16-84% width as its sigma (the asymmetry is not kept);
# r - z is not tabulated there and takes the same distribution (an ASSUMPTION: blue, flat-spectrum).
# Preset keys, so a test set can put the sources' colours outside the training range.
SRC_G_R = {"median": -0.01, "p16": -0.14, "p84": 0.39}
SRC_R_Z = {"median": -0.01, "p16": -0.14, "p84": 0.39}


def _normal_q(rng, med, p16, p84, n):
    return med + 0.5 * (p84 - p16) * rng.standard_normal(n)


def _lognormal_q(rng, med, p16, p84, n):
    return med * np.exp(0.5 * np.log(p84 / p16) * rng.standard_normal(n))


# The detectable population (simulation_priors.md §3-5, LensPop `lenses_DESa.txt`): beta / theta_E drawn by
# interpolating its sourced quantiles (5, 16, 50, 84, 95%: 0.06, 0.13, 0.32, 0.59, 0.77), with the ends at 0 and
# 1 (beta up to theta_E: an ASSUMPTION for the 5% tails); z_s lognormal with median 1.85 and log-sd from its
# 16-84% range (1.14-2.56).
DETECTABLE_BETA_P = (0.0, 0.05, 0.16, 0.5, 0.84, 0.95, 1.0)
DETECTABLE_BETA_X = (0.0, 0.06, 0.13, 0.32, 0.59, 0.77, 1.0)
DETECTABLE_ZS_LOG_SD = round(0.5 * float(np.log(2.56 / 1.14)), 4)
#: The sourced detectable population the `detectable` preset is checked against (median, 16%, 84%).
DETECTABLE_SOURCED = {"theta_e_arcsec": (1.35, 1.06, 1.78), "beta_over_theta_e": (0.32, 0.13, 0.59),
                      "total_magnification": (6.8, 3.9, 14.6), "src_z": (1.85, 1.14, 2.56)}

PRESETS: dict[str, dict] = {
    "request": {
        "description": "Priors close to the request's stated geometry: theta_E log-uniform in 0.5-2.5 "
                       "arcsec independent of the host, |beta| ~ U(0, theta_E) (median beta = 0.5 theta_E). The "
                       "geometry chapter compares it with the request's rounded statistics; no candidate prior "
                       "matches all three within their rounding, and this one is the closest of the families "
                       "with beta up to theta_E (uniform theta_E puts the inner image further out). The request does not "
                       "state source brightness; sources are ~1.5 mag brighter than LensPop's detectable "
                       "population so that arcs are visible, as injection sets usually are.",
        "theta_e": {"dist": "loguniform", "low": 0.5, "high": 2.5},
        "beta": {"dist": "uniform_radius", "max_over_theta_e": 1.0},
        "mass_e_sd": 0.1, "shear_sd": 0.05,
        "src_mag_r": {"median": 22.7, "p16": 21.8, "p84": 24.0},
        "src_r_eff": {"median": 0.31, "p16": 0.12, "p84": 0.56},
        "src_g_r": dict(SRC_G_R), "src_r_z": dict(SRC_R_Z),
        "zs_median": 1.85, "zs_log_sd": 0.3,
        "realism": dict(REALISM_OFF),
        "src_clumpy_fraction": 0.0,
        "psf_scale": 1.0, "psf_moffat_beta": 3.5,
        "detect": None,
    },
    "physical": {
        "description": "Host-consistent theta_E from the host's sigma_v and z_l and the source z_s; beta uniform "
                       "in area within 2/3 theta_E (for an SIS: total magnification >= 3, LensPop's "
                       "detectability cut); source magnitudes and sizes from LensPop's DES-detectable "
                       "population. Hosts as real cutouts show them (``REALISM_ON``): bulge + envelope with "
                       "bluer outskirts and a mild twist, centred within half a pixel, photon noise of host "
                       "and arc, faint companions.",
        "theta_e": {"dist": "host"},
        "beta": {"dist": "uniform_area", "max_over_theta_e": 2.0 / 3.0},
        "mass_e_sd": 0.1, "shear_sd": 0.05,
        "src_mag_r": {"median": 24.2, "p16": 23.3, "p84": 25.5},
        "src_r_eff": {"median": 0.31, "p16": 0.12, "p84": 0.56},
        "src_g_r": dict(SRC_G_R), "src_r_z": dict(SRC_R_Z),
        "zs_median": 1.85, "zs_log_sd": 0.3,
        "realism": dict(REALISM_ON),
        "src_clumpy_fraction": 0.0,
        "psf_scale": 1.0, "psf_moffat_beta": 3.5,
        "detect": None,
    },
    "detectable": {
        "description": "The lenses a Legacy Surveys finder can find. Lens and source parameters are drawn from "
                       "LensPop's DES-detectable population (theta_E median 1.35\" (1.06-1.78), beta/theta_E "
                       "median 0.32 (0.13-0.59), z_s median 1.85 (1.14-2.56), source magnitudes and sizes as in "
                       "`physical`), independent of the host as the team's injections are, and every injection "
                       "must pass LensPop's three cuts on its own host, PSF and depth (arc S/N >= 20 with sky, host "
                       "and arc photon noise, total magnification >= 3, resolvable: 2 theta_E^2 >= (2 R_s)^2 + "
                       "FWHM^2); a rejected injection is redrawn (up to max_rounds times; a rare host no lens "
                       "passes on keeps its last draw, flagged detectable = False). Hosts as in `physical`.",
        "theta_e": {"dist": "lognormal", "median": 1.35, "p16": 1.06, "p84": 1.78},
        "beta": {"dist": "quantiles", "p": list(DETECTABLE_BETA_P), "x": list(DETECTABLE_BETA_X)},
        "mass_e_sd": 0.1, "shear_sd": 0.05,
        "src_mag_r": {"median": 24.2, "p16": 23.3, "p84": 25.5},
        "src_r_eff": {"median": 0.31, "p16": 0.12, "p84": 0.56},
        "src_g_r": dict(SRC_G_R), "src_r_z": dict(SRC_R_Z),
        "zs_median": 1.85, "zs_log_sd": DETECTABLE_ZS_LOG_SD,
        "realism": dict(REALISM_ON),
        "src_clumpy_fraction": 0.0,
        "psf_scale": 1.0, "psf_moffat_beta": 3.5,
        "detect": {"snr_min": 20.0, "mu_min": 3.0, "max_rounds": 40},
    },
}


def get_preset(name: str, overrides: dict | None = None) -> dict:
    if name not in PRESETS:
        raise ValueError(f"unknown preset {name!r}; presets: {sorted(PRESETS)}")
    out = copy.deepcopy(PRESETS[name])
    for k, v in (overrides or {}).items():
        if k not in out:
            raise ValueError(f"preset {name!r}: unknown key {k!r}; keys: {sorted(out)}")
        out[k] = v
    return out


def _brickname(ra, dec):
    """Legacy Surveys-style brick name on a 0.25 deg grid, e.g. '1234p050'."""
    dec_c = np.round(np.asarray(dec) / 0.25) * 0.25
    ra_c = np.round(np.asarray(ra) / 0.25) * 0.25 % 360
    return [f"{int(round(r * 10)):04d}{'p' if d >= 0 else 'm'}{int(round(abs(d) * 10)):03d}" for r, d in zip(ra_c, dec_c)]


def sample_hosts(n: int, rng: np.random.Generator, hosts_per_brick: float = 4.0) -> pd.DataFrame:
    """Draw ``n`` host LRGs with identity (ra, dec, brickname), photometry, shape and observing conditions."""
    n_bricks = max(1, int(round(n / hosts_per_brick)))
    brick_ra = rng.uniform(0, 360, n_bricks)
    brick_dec = rng.uniform(-20, 30, n_bricks)
    b = rng.integers(0, n_bricks, n)
    ra = (brick_ra[b] + rng.uniform(-0.125, 0.125, n)) % 360
    dec = brick_dec[b] + rng.uniform(-0.125, 0.125, n)
    names = list(HOST_TYPES)
    frac = np.array([HOST_TYPES[t][0] for t in names])
    ti = rng.choice(len(names), size=n, p=frac / frac.sum())
    cols = {k: np.empty(n) for k in ("mag_z", "g_r", "r_z", "r_eff", "q")}
    for i, t in enumerate(names):
        m = ti == i
        k = int(m.sum())
        _, zmag, gr, rz, reff, ba = HOST_TYPES[t]
        cols["mag_z"][m] = _normal_q(rng, *zmag, k)
        cols["g_r"][m] = _normal_q(rng, *gr, k)
        cols["r_z"][m] = _normal_q(rng, *rz, k)
        cols["r_eff"][m] = _lognormal_q(rng, *reff, k)
        cols["q"][m] = _normal_q(rng, *ba, k)
    htype = np.array(names)[ti]
    n_sersic = np.where(htype == "DEV", 4.0, np.where(htype == "SER", rng.uniform(2.0, 6.0, n), 1.0))
    df = pd.DataFrame({
        "host_id": np.arange(n), "ra": ra, "dec": dec, "brickname": _brickname(ra, dec),
        "host_type": htype, "host_z": rng.uniform(0.4, 1.0, n),
        "host_sigma_v_kms": 10 ** rng.normal(2.3, 0.1, n),
        "host_mag_z": cols["mag_z"], "host_mag_r": cols["mag_z"] + cols["r_z"],
        "host_mag_g": cols["mag_z"] + cols["r_z"] + cols["g_r"],
        "host_r_eff_arcsec": np.clip(cols["r_eff"], 0.2, 6.0), "host_n_sersic": n_sersic,
        "host_q": np.clip(cols["q"], 0.2, 1.0), "host_phi_rad": rng.uniform(0, np.pi, n),
    })
    for band in "grz":
        df[f"psf_fwhm_used_{band}"] = sample_psf_fwhm(band, n, rng)
    for band in "grz":
        df[f"noise_sigma_{band}"] = _lognormal_q(rng, *NOISE_SIGMA[band], n)
    df["n_neighbours"] = rng.poisson(NEIGHBOURS["galaxies_per_stamp"], n)
    df["n_stars"] = rng.poisson(NEIGHBOURS["stars_per_stamp"], n)
    return df


_NB_DRAWS = 8  # uniform variates per neighbour


def sample_neighbours(hosts: pd.DataFrame, seed: int) -> pd.DataFrame:
    """Neighbouring galaxies (exponential discs) and stars (point sources) anywhere on each host's stamp.

    One row per neighbour with its ``host_row`` (position of the host in ``hosts``); the random
    stream of each host is keyed by (seed, host_id), so the result does not depend on batching.
    """
    from scipy.special import ndtri

    half = STAMP_SIZE / 2 * PIXEL_SCALE
    ng = hosts["n_neighbours"].to_numpy(int)
    ns = hosts["n_stars"].to_numpy(int)
    u = [np.random.default_rng([seed, 4, int(h)]).random((_NB_DRAWS, g + t))
         for h, g, t in zip(hosts["host_id"], ng, ns)]
    if not sum(x.shape[1] for x in u):
        return pd.DataFrame(columns=["host_row", "x", "y", "r_eff", "q", "phi", "mag_g", "mag_r", "mag_z", "star"])
    u = np.concatenate(u, axis=1)
    host_row = np.repeat(np.arange(len(hosts)), ng + ns)
    star = np.concatenate([np.r_[np.zeros(g, bool), np.ones(t, bool)] for g, t in zip(ng, ns)])
    lo = np.where(star, NEIGHBOURS["star_r_mag"][0], NEIGHBOURS["galaxy_r_mag"][0])
    hi = np.where(star, NEIGHBOURS["star_r_mag"][1], NEIGHBOURS["galaxy_r_mag"][1])
    mag_r = lo + (hi - lo) * u[2]
    g_r = np.where(star, 1.0 + 0.5 * ndtri(u[3]), 0.8 + 0.4 * ndtri(u[3]))
    r_z = np.where(star, 0.6 + 0.4 * ndtri(u[4]), 0.5 + 0.3 * ndtri(u[4]))
    return pd.DataFrame({
        "host_row": host_row, "x": (2 * u[0] - 1) * half, "y": (2 * u[1] - 1) * half,
        "r_eff": np.where(star, 0.0, 0.5 * np.exp(0.5 * np.log(0.8 / 0.3) * ndtri(u[5]))),
        "q": np.where(star, 1.0, 0.3 + 0.7 * u[6]), "phi": np.pi * u[7],
        "mag_g": mag_r + g_r, "mag_r": mag_r, "mag_z": mag_r - r_z, "star": star,
    })


# Clumpy sources (preset key "src_clumpy_fraction", default 0): that fraction of sources carry 2-4 star-forming
# knots (Gaussians, sigma U(0.02, 0.06)", offsets N(0, R_e) from the source centre in the source plane) holding
# U(0.2, 0.5) of the source's flux, the rest in the smooth disc; knots share the source's colours. ASSUMPTIONS.
MAX_KNOTS = 4
_KNOT_DRAWS = 3 + 4 * MAX_KNOTS


def sample_knots(hosts: pd.DataFrame, k: int, fraction: float, r_eff: np.ndarray, seed: int,
                 draw_round: int = 0) -> dict:
    """Knot columns for ``k`` injections per host: src_n_knots, src_knot_flux_frac and, for i < MAX_KNOTS,
    src_knot{i}_x/_y [arcsec from the source centre], _sigma [arcsec], _frac [share of the source flux]
    (0 for unused knots). Keyed by (seed, host_id[, draw_round]), separately from the other injection variates."""
    n = len(hosts) * k
    if fraction <= 0:
        u = np.zeros((_KNOT_DRAWS, n))
        u[0] = 1.0
    else:
        u = np.concatenate([np.random.default_rng(_stream(seed, 8, h, draw_round)).random((_KNOT_DRAWS, k))
                            for h in hosts["host_id"]],
                           axis=1) if n else np.zeros((_KNOT_DRAWS, 0))
    clumpy = u[0] < fraction
    nk = np.where(clumpy, 2 + np.minimum((u[1] * 3).astype(int), 2), 0)
    total = np.where(clumpy, 0.2 + 0.3 * u[2], 0.0)
    from scipy.special import ndtri

    out = {"src_n_knots": nk, "src_knot_flux_frac": total}
    w = np.stack([np.where(i < nk, 0.5 + u[3 + 4 * i], 0.0) for i in range(MAX_KNOTS)])
    w = w / np.maximum(w.sum(0), 1e-12)
    for i in range(MAX_KNOTS):
        on = i < nk
        uu = np.clip(u[4 + 4 * i : 7 + 4 * i], 1e-12, 1 - 1e-12)
        out[f"src_knot{i}_x"] = np.where(on, r_eff * ndtri(uu[0]), 0.0)
        out[f"src_knot{i}_y"] = np.where(on, r_eff * ndtri(uu[1]), 0.0)
        out[f"src_knot{i}_sigma"] = np.where(on, 0.02 + 0.04 * uu[2], 0.0)
        out[f"src_knot{i}_frac"] = total * w[i]
    return out


_INJ_DRAWS = 15  # uniform variates per injection: the lens system's (priors.LENS_DRAWS = 9), then the source's 6


def _stream(seed: int, kind: int, host_id, draw_round: int) -> list[int]:
    """The random-stream key of one host: (seed, kind, host_id), and the redraw round after a rejection."""
    return [seed, kind, int(host_id)] + ([int(draw_round)] if draw_round else [])


def sample_injections(hosts: pd.DataFrame, k: int, preset: dict, seed: int, draw_round: int = 0) -> pd.DataFrame:
    """Draw ``k`` lens + source configurations for each host (rows grouped by host, in host order).

    Each host's variates come from its own stream keyed by (seed, host_id); the transforms to
    physical parameters are vectorised over the whole batch. Adds ``host_row`` (position in ``hosts``).
    ``draw_round`` > 0 draws from another stream per host: the redraws of injections that a preset's
    detectability cuts rejected (``simulate.injected_arcs``).
    """
    from scipy.special import ndtri

    from .priors import LENS_DRAWS, lens_from_uniforms

    H = len(hosts)
    u = np.concatenate([np.random.default_rng(_stream(seed, 1, h, draw_round)).random((_INJ_DRAWS, k))
                        for h in hosts["host_id"]], axis=1) if H else np.zeros((_INJ_DRAWS, 0))
    u = np.clip(u, 1e-12, 1 - 1e-12)
    host_row = np.repeat(np.arange(H), k)
    z_host = (hosts["host_z"].to_numpy(float) if "host_z" in hosts else np.full(H, np.nan))[host_row]
    lens = lens_from_uniforms(
        preset["theta_e"], preset["beta"], preset["mass_e_sd"], preset["shear_sd"], u[:LENS_DRAWS],
        zs_median=preset["zs_median"], zs_log_sd=preset["zs_log_sd"],
        z_l=z_host,
        sigma_v=hosts["host_sigma_v_kms"].to_numpy(float)[host_row] if preset["theta_e"]["dist"] == "host" else None)
    if "z_s" in lens:
        z_s = lens["z_s"].to_numpy()
    else:  # a host-independent theta_E: the source redshift still follows the preset (for the record)
        from .priors import MIN_DZ, truncated_lognormal
        z_s = truncated_lognormal(u[2], preset["zs_median"], preset["zs_log_sd"],
                                   z_host + MIN_DZ)
    s = u[LENS_DRAWS:]  # the source's variates: magnitude, g-r, r-z, size, axis ratio, angle
    sm, sr = preset["src_mag_r"], preset["src_r_eff"]
    mag_r = sm["median"] + 0.5 * (sm["p84"] - sm["p16"]) * ndtri(s[0])
    cgr, crz = preset["src_g_r"], preset["src_r_z"]
    g_r = cgr["median"] + 0.5 * (cgr["p84"] - cgr["p16"]) * ndtri(s[1])
    r_z = crz["median"] + 0.5 * (crz["p84"] - crz["p16"]) * ndtri(s[2])
    r_eff = np.clip(sr["median"] * np.exp(0.5 * np.log(sr["p84"] / sr["p16"]) * ndtri(s[3])), 0.03, 1.5)
    src_q = np.clip(1 - 0.3 * np.sqrt(-2 * np.log(1 - s[4])), 0.2, 1.0)  # 1 - Rayleigh(0.3)
    knots = sample_knots(hosts, k, preset["src_clumpy_fraction"], r_eff, seed, draw_round)
    return pd.DataFrame({
        "host_row": host_row,
        "theta_e_arcsec": lens["theta_e"].to_numpy(), "lens_e1": lens["e1"].to_numpy(),
        "lens_e2": lens["e2"].to_numpy(), "lens_q": lens["q"].to_numpy(), "lens_phi_rad": lens["phi"].to_numpy(),
        "shear_gamma1": lens["gamma1"].to_numpy(), "shear_gamma2": lens["gamma2"].to_numpy(),
        "beta_arcsec": lens["beta"].to_numpy(), "beta_over_theta_e": lens["beta_over_theta_e"].to_numpy(),
        "src_x_arcsec": lens["src_x"].to_numpy(), "src_y_arcsec": lens["src_y"].to_numpy(),
        "src_z": z_s, "src_mag_r": mag_r, "src_mag_g": mag_r + g_r, "src_mag_z": mag_r - r_z,
        "src_r_eff_arcsec": r_eff, "src_n_sersic": np.ones(H * k), "src_q": src_q, "src_phi_rad": np.pi * s[5],
        **knots,
    })
