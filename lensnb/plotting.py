"""Figure helpers shared by the chapters: every axis labelled, units in brackets."""
from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns

from .config import CORE_BOX, PIXEL_SCALE


def setup() -> None:
    """House style for all chapters."""
    sns.set_theme(context="notebook", style="whitegrid", palette="colorblind")
    plt.rcParams.update({"figure.dpi": 110, "savefig.dpi": 110, "axes.titlesize": "medium"})


def sis_geometry(ax_pos, ax_mu, solved: pd.DataFrame | None = None) -> None:
    """SIS image radii and magnifications against beta/theta_E; solver points overlaid."""
    b = np.linspace(0.01, 1.5, 300)
    two = b < 1
    ax_pos.plot(b, 1 + b, label="outer image θ₊ = θ_E + β")
    ax_pos.plot(b[two], 1 - b[two], label="inner image θ₋ = θ_E − β")
    ax_mu.plot(b, 1 + 1 / b, label="|μ₊| = 1 + θ_E/β")
    ax_mu.plot(b[two], 1 / b[two] - 1, label="|μ₋| = θ_E/β − 1")
    if solved is not None and len(solved):
        s = solved[solved["n_images"] >= 2]
        ax_pos.scatter(s["beta_over_theta_e"], s["inner_r"] / s["theta_e"], s=6, c="k", alpha=0.4,
                       label="inner image, SIE + shear solver")
        ax_mu.scatter(s["beta_over_theta_e"], s["inner_abs_mu"], s=6, c="k", alpha=0.4,
                      label="inner image, SIE + shear solver")
    ax_pos.set(xlabel="source offset β / θ_E", ylabel="image distance from centre / θ_E", ylim=(0, 2.6))
    ax_mu.set(xlabel="source offset β / θ_E", ylabel="|magnification|", yscale="log", ylim=(0.05, 100))
    ax_pos.legend(fontsize="small")
    ax_mu.legend(fontsize="small")


def ecdf_by_group(ax, frame: pd.DataFrame, column: str, group: str, xlabel: str, labels: dict | None = None):
    """Empirical CDFs of ``column`` for each ``group`` (NaN counted as beyond the axis)."""
    for name, sub in frame.groupby(group, sort=False):
        v = np.sort(sub[column].to_numpy(dtype=float))
        n = len(v)
        v = v[np.isfinite(v)]
        ax.step(v, np.arange(1, len(v) + 1) / n, where="post", label=(labels or {}).get(name, name))
    ax.set(xlabel=xlabel, ylabel="fraction of systems ≤ x", ylim=(0, 1.01))


def core_box_scatter(ax, solved: pd.DataFrame, fwhm_arcsec: float, max_points: int = 3000, seed: int = 0):
    """Inner-image positions [pixels] relative to the lens centre, with the 10x10 box and a PSF FWHM circle."""
    s = solved[solved["n_images"] >= 2]
    if len(s) > max_points:
        s = s.sample(max_points, random_state=seed)
    ax.scatter(s["inner_x"] / PIXEL_SCALE, s["inner_y"] / PIXEL_SCALE, s=4, alpha=0.35)
    h = CORE_BOX / 2
    ax.add_patch(plt.Rectangle((-h, -h), 2 * h, 2 * h, fill=False, ec="C3", lw=1.5, label="central 10×10 px"))
    ax.add_patch(plt.Circle((0, 0), fwhm_arcsec / PIXEL_SCALE, fill=False, ec="C2", lw=1.5, ls="--",
                            label=f"median r-band FWHM ({fwhm_arcsec:.2f}″)"))
    lim = 1.6 * h
    ax.set(xlim=(-lim, lim), ylim=(-lim, lim), aspect="equal",
           xlabel="x offset from lens centre [pixels]", ylabel="y offset from lens centre [pixels]")
    ax.legend(loc="upper right", fontsize="small")


def _stretch(img, scale):
    return np.arcsinh(img / scale)


def paired_gallery(stamps, ctrls, meta, band: int = 1, zoom: int = 10):
    """Rows of examples: host (ctrl), host + arc, difference, and the difference's central zoom.

    Images in one band (default r) with an asinh stretch; titles give theta_E, beta/theta_E and arc S/N.
    """
    from .config import CORE_SLICE, PIXEL_SCALE, STAMP_SIZE

    n = len(meta)
    fig, axes = plt.subplots(n, 4, figsize=(9, 2.3 * n), squeeze=False)
    ext = np.array([-0.5, STAMP_SIZE - 0.5, -0.5, STAMP_SIZE - 0.5]) - (STAMP_SIZE - 1) / 2
    for i in range(n):
        s, c = stamps[i, band], ctrls[i, band]
        d = s - c
        scale = 3 * float(meta["noise_sigma_r"].iat[i]) if "noise_sigma_r" in meta else np.std(c)
        vmax = np.arcsinh(np.percentile(s, 99.8) / scale)
        for j, (img, title) in enumerate(((c, "host (ctrl)"), (s, "host + arc"), (d, "difference"))):
            axes[i, j].imshow(_stretch(img, scale), origin="lower", cmap="gray_r", extent=ext * PIXEL_SCALE,
                              vmin=-1, vmax=vmax)
            axes[i, j].set_title(title, fontsize="small")
        z = d[CORE_SLICE, CORE_SLICE]
        h = zoom / 2 * PIXEL_SCALE
        axes[i, 3].imshow(z, origin="lower", cmap="magma", extent=[-h, h, -h, h])
        axes[i, 3].set_title("difference, central 10×10", fontsize="small")
        label = f"θ_E={meta['theta_e_arcsec'].iat[i]:.2f}″"
        if "beta_over_theta_e" in meta:
            label += f"\nβ/θ_E={meta['beta_over_theta_e'].iat[i]:.2f}"
        axes[i, 0].set_ylabel(label + f"\nS/N={meta['arc_snr'].iat[i]:.0f}\n[arcsec]", fontsize="small")
        for ax in axes[i]:
            ax.tick_params(labelsize="x-small")
    for ax in axes[-1]:
        ax.set_xlabel("[arcsec]", fontsize="small")
    fig.tight_layout()
    return fig


def table(df: pd.DataFrame, *, intervals: dict | None = None, rename: dict | None = None, digits: int = 3,
          keep: list | None = None):
    """A readable table (pandas Styler): each ``intervals`` entry {"AUROC (95% CI)": ("auroc", "ci_low",
    "ci_high")} becomes one column "0.904 (0.891 to 0.918)"; other float columns get ``digits`` decimals;
    columns are renamed by ``rename``; missing values show as "—"; no index."""
    from .metrics import format_interval

    out = df.copy()
    used = set()
    for name, (e, lo, hi) in (intervals or {}).items():
        out[name] = [("—" if pd.isna(a) else format_interval(a, b, c, digits)) for a, b, c in zip(df[e], df[lo], df[hi])]
        used |= {e, lo, hi}
    cols = keep if keep is not None else [c for c in out.columns if c not in used or c in (intervals or {})]
    out = out[cols].rename(columns=rename or {})
    for c in out.columns:
        if pd.api.types.is_bool_dtype(out[c]):
            out[c] = out[c].map({True: "yes", False: "no"})
        elif pd.api.types.is_float_dtype(out[c]):
            out[c] = [("—" if pd.isna(v) else f"{v:.{digits}f}") for v in out[c]]
        elif out[c].dtype == object:
            out[c] = out[c].map(lambda v: "—" if v is None or (isinstance(v, float) and pd.isna(v)) else v)
    return out.style.hide(axis="index")
