"""Figure helpers shared by the chapters: every axis labelled, units in brackets."""
from __future__ import annotations

import os
import re
import sys

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
    for ax in (ax_pos, ax_mu):  # above the panel: the solver points fill the axes
        ax.legend(fontsize="x-small", loc="lower left", bbox_to_anchor=(0, 1.01), ncol=2, frameon=False)


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
            im = axes[i, j].imshow(_stretch(img, scale), origin="lower", cmap="gray_r", extent=ext * PIXEL_SCALE,
                                   vmin=-1, vmax=vmax)
            im.set_gid("stretch")  # a display stretch, not a measured scale
            axes[i, j].set_title(title, fontsize="small")
            axes[i, j].grid(False)
        z = d[CORE_SLICE, CORE_SLICE]
        h = zoom / 2 * PIXEL_SCALE
        zi = axes[i, 3].imshow(z, origin="lower", cmap="magma", extent=[-h, h, -h, h])
        axes[i, 3].grid(False)
        cb = fig.colorbar(zi, ax=axes[i, 3], fraction=0.046, pad=0.04)
        cb.set_label("[nmgy / pixel]", fontsize="x-small")
        cb.ax.tick_params(labelsize="x-small")
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


RAW_NAMES = {"auroc": "AUROC", "ci_low": "CI low", "ci_high": "CI high", "se": "SE", "sd": "SD",
             "seed_sd": "seed SD", "n": "n", "n_pos": "positives", "n_neg": "negatives"}
_SNAKE = re.compile(r"^[a-z0-9]+(_[a-z0-9]+)+$")


class Table:
    """A finished table: string cells, readable headers, rendered as a Markdown (GFM) table.

    Glue it with ``plotting.glue_table`` and place it with a captioned MyST ``{table}`` directive::

        :::{table} Caption.
        :name: tbl-key
        ```{glue:md} key
        :format: gfm
        ```
        :::
    """

    def __init__(self, frame: pd.DataFrame, align: list[str]):
        self.frame = frame
        self.align = align

    def _repr_markdown_(self) -> str:
        def esc(v):
            return str(v).replace("|", "\\|").replace("\n", " ")

        head = "| " + " | ".join(esc(c) for c in self.frame.columns) + " |"
        rule = "|" + "|".join(":--" if a == "left" else "--:" for a in self.align) + "|"
        rows = ["| " + " | ".join(esc(v) for v in row) + " |" for row in self.frame.itertuples(index=False)]
        return "\n".join([head, rule, *rows])

    def __repr__(self) -> str:
        return self.frame.to_string(index=False)


def _cell(v, fmt) -> str:
    if v is None or (isinstance(v, float) and not np.isfinite(v)) or v is pd.NA or v is pd.NaT:
        return "—"
    if isinstance(v, (bool, np.bool_)):
        return "yes" if v else "no"
    if isinstance(v, pd.Interval):
        raise ValueError(f"table cell {v!r} is a raw interval: label the bins (e.g. experiment.tercile_labels)")
    if isinstance(v, (float, np.floating)):
        return fmt(float(v)) if callable(fmt) else f"{float(v):.{fmt}f}"
    if isinstance(v, (int, np.integer)):
        return str(int(v))
    return str(v)


def table(df: pd.DataFrame, *, intervals: dict | None = None, rename: dict | None = None, digits: int = 3,
          keep: list | None = None, formats: dict | None = None) -> Table:
    """A readable table: each ``intervals`` entry {"AUROC (95% CI)": ("auroc", "ci_low", "ci_high")} becomes one
    column "0.904 (0.891–0.918)"; floats get ``digits`` decimals, or ``formats[column]`` (decimals, or a function
    float -> str); integers print as integers, booleans as yes/no, missing values as "—"; raw names such as
    ``auroc`` or ``ci_low`` become readable (``RAW_NAMES``), and any snake_case header left is an error, as is
    a cell with a raw interval, ``nan``, an object repr or more than 4 decimals. No index."""
    from .lint import check_text
    from .metrics import format_interval

    formats = dict(formats or {})
    out = df.copy()
    used = set()
    for name, (e, lo, hi) in (intervals or {}).items():
        d = formats.pop(name, digits)
        out[name] = [("—" if pd.isna(a) else format_interval(a, b, c, d)) for a, b, c in zip(df[e], df[lo], df[hi])]
        used |= {e, lo, hi}
    cols = keep if keep is not None else [c for c in out.columns if c not in used or c in (intervals or {})]
    out = out[cols]
    names = {c: (rename or {}).get(c, RAW_NAMES.get(c, c)) for c in out.columns}
    cells, align = {}, []
    for c in out.columns:
        fmt = formats.get(c, formats.get(names[c], digits))
        col = out[c]
        cells[names[c]] = [_cell(v, fmt) for v in col.tolist()]
        numeric = pd.api.types.is_numeric_dtype(col) and not pd.api.types.is_bool_dtype(col)
        align.append("right" if numeric or c in (intervals or {}) else "left")
    frame = pd.DataFrame(cells, columns=list(names.values()))
    for h in frame.columns:
        if _SNAKE.match(str(h)):
            raise ValueError(f"table column {h!r} has a raw name: give it a readable header (rename=...)")
    problems = []
    for h in frame.columns:
        for v in frame[h]:
            problems += check_text(str(v), f"table column {h!r}")
    if problems:
        raise ValueError(problems[0])
    return Table(frame, align)


def _glue_display(name: str, variable, kind: str) -> None:
    """``myst_nb.glue(name, variable, display=False)``, with ``{"lensnb": {"kind": kind}}`` in the output
    metadata, so the book checks can tell a checked figure/table from one glued directly."""
    import IPython
    from IPython.display import display
    from myst_nb.ext.glue import GLUE_PREFIX

    bundle, metadata = IPython.core.formatters.format_display_data(variable)
    metadata = dict(metadata or {})
    metadata["scrapbook"] = {"name": name, "mime_prefix": GLUE_PREFIX}
    metadata["lensnb"] = {"kind": kind}
    display({GLUE_PREFIX + k: v for k, v in bundle.items()}, raw=True, metadata=metadata)


def glue_table(name: str, frame: pd.DataFrame | Table, **kw) -> None:
    """Format ``frame`` with ``table(**kw)`` (unless it is one already) and glue it under ``name``. Returns None,
    so a cell ending in this call shows nothing beside the glued copy."""
    t = frame if isinstance(frame, Table) else table(frame, **kw)
    _glue_display(name, t, "table")


class FigureDefect(ValueError):
    """A figure failed ``lint.check_figure``; the message lists every defect."""


def glue_figure(name: str, fig) -> None:
    """Check ``fig`` (``lint.check_figure``: labels, overlaps, legends over data, clipped points, colour bars,
    text defects), glue it under ``name`` and close it. A defect raises ``FigureDefect``."""
    from .lint import check_figure

    problems = check_figure(fig, name)
    if problems and os.environ.get("LENSNB_LINT") == "warn":  # development: list every defect, keep going
        print("\n".join("FIGURE DEFECT " + p for p in problems), file=sys.stderr, flush=True)
    elif problems:
        plt.close(fig)
        raise FigureDefect("\n".join(problems))
    _glue_display(name, fig, "figure")
    plt.close(fig)


def log_ticks(ax, values, axis: str = "x") -> None:
    """Major ticks of a log axis at the plotted ``values`` (plain numbers, e.g. 25, 50, 100), no minor labels:
    matplotlib's default labels on a short log axis are either one decade or run into each other."""
    import matplotlib.ticker as mticker

    vals = sorted({float(v) for v in values if np.isfinite(v) and v > 0})
    target = ax.xaxis if axis == "x" else ax.yaxis
    target.set_major_locator(mticker.FixedLocator(vals))
    target.set_major_formatter(mticker.FuncFormatter(lambda v, _: f"{v:g}"))
    target.set_minor_formatter(mticker.NullFormatter())
    target.set_minor_locator(mticker.NullLocator())


def legend_above(fig, ax=None, ncol: int | None = None, **kw) -> None:
    """One legend for the whole figure, above the panels (so it never covers data); the handles of ``ax``
    (default: the first axes). Call before ``fig.tight_layout`` is final: it reserves the top margin."""
    ax = ax or fig.axes[0]
    handles, labels = ax.get_legend_handles_labels()
    if not handles:
        return
    fig.legend(handles, labels, loc="upper center", ncol=ncol or len(handles), frameon=False,
               bbox_to_anchor=(0.5, 1.0), **kw)
    fig.tight_layout(rect=(0, 0, 1, 1 - 0.45 / fig.get_figheight()))


def interval_pivot(df: pd.DataFrame, index: list, columns: str, *, est: str = "auroc", lo: str = "ci_low",
                   hi: str = "ci_high", note: str | None = "verdict", digits: int = 3) -> pd.DataFrame:
    """A long table of intervals made wide: one row per ``index`` combination, one column per value of
    ``columns``, cells "0.867 (0.840–0.899) · shortcut" (the ``note`` column after the dot). Row and
    column order follow their first appearance."""
    from .metrics import format_interval

    cell = [(format_interval(a, b, c, digits).replace(" ", "\u00a0") if np.isfinite(a) else "—")  # no break inside
            + (f" · {n}" if note else "")  # a value that cannot be measured (e.g. no skill to lose) shows as a dash
            for a, b, c, n in zip(df[est], df[lo], df[hi], df[note] if note else [None] * len(df))]
    long = df[index + [columns]].assign(_cell=cell)
    order = list(dict.fromkeys(df[columns]))
    wide = long.pivot_table(index=index, columns=columns, values="_cell", aggfunc="first", sort=False)
    wide = wide.reindex(columns=order).reset_index()
    wide.columns.name = None
    return wide


def auroc_limits(*values, low: float = 0.4, high: float = 1.02) -> tuple[float, float]:
    """Axis limits for AUROCs: (``low``, ``high``) unless a value (e.g. an interval's lower end) lies below
    ``low``; then the axis extends to it, so no point is clipped off."""
    v = np.concatenate([np.ravel(np.asarray(x, float)) for x in values]) if values else np.array([low])
    v = v[np.isfinite(v)]
    lo = min(low, float(v.min()) - 0.03) if len(v) else low
    return max(lo, 0.0 if low >= 0 else lo), high


def interval_errorbar(ax, x, est, lo, hi, *, horizontal: bool = False, fmt: str = "o", capsize: float = 3,
                      color=None, label=None, **kw):
    """Estimates ``est`` with their intervals [``lo``, ``hi``] at positions ``x`` (vertical bars; ``horizontal``:
    ``x`` is the y position and the bars run along x). The bar is drawn from ``lo`` to ``hi`` and the estimate as a
    separate marker, so an estimate outside its own percentile interval (possible for a bootstrap) is shown as it
    is, not as a negative error bar. ``fmt`` is the marker/line format of the estimates (e.g. ``"o-"``)."""
    x, est, lo, hi = (np.atleast_1d(np.asarray(v, dtype=float)) for v in (x, est, lo, hi))
    color = color or ax._get_lines.get_next_color()
    mid, half = (lo + hi) / 2, np.abs(hi - lo) / 2
    if horizontal:
        ax.errorbar(mid, x, xerr=half, fmt="none", capsize=capsize, ecolor=color, **kw)
        return ax.plot(est, x, fmt, color=color, label=label)[0]
    ax.errorbar(x, mid, yerr=half, fmt="none", capsize=capsize, ecolor=color, **kw)
    return ax.plot(x, est, fmt, color=color, label=label)[0]


def failure_modes_figure(memorisation: pd.DataFrame, theta: pd.DataFrame, var_df: pd.DataFrame, conf: dict,
                         null_worst: dict, artifacts: dict, probe_scores, sim_y, *, f0: float, preset: str,
                         change_margin: float, tpr_margin: float, gate_threshold: float, null_margin: float,
                         real_label: str):
    """The failure-modes chapter's six panels, from the register's inputs (``lensnb.risks``): host memorisation
    per θ_E bin, TPR per θ_E bin at two brightnesses, the re-simulated variants' changes, pool confounders and the
    processing path, the gate artifacts, and the realism probe's score histograms (``probe_scores``: simulated
    scores, real scores, threshold; None: no real lenses). Returns the figure."""
    fig, axes = plt.subplots(2, 3, figsize=(15, 8.4))
    ax = axes[0, 0]
    mm = memorisation
    mm = mm[mm["gap"].notna()] if len(mm) else mm
    if len(mm):
        xm = np.arange(len(mm))
        interval_errorbar(ax, xm, mm["gap"], mm["ci_low"], mm["ci_high"], color="C0")
        ax.axhline(change_margin, color="C3", ls="--", lw=1, label=f"threshold {change_margin:g}")
        ax.axhline(0, color="k", lw=0.8)
        ax.set_xticks(xm, [str(v).replace(" FWHM", "\nFWHM") for v in mm["lenses"]], fontsize="small")
        ax.legend(fontsize="small", loc="best")
    else:
        ax.text(0.5, 0.5, "no seen-host test possible", ha="center", va="center", transform=ax.transAxes)
    ax.set(xlabel="test lenses (θ_E relative to the r-band PSF FWHM)",
           ylabel="seen − unseen host AUROC (95% CI)", title="host memorisation")
    ax = axes[0, 1]
    th_tab = theta[theta.candidate.isin(["unpaired_raw", "unpaired_bright"])] if len(theta) else pd.DataFrame()
    if len(th_tab):
        for k, (c, sub) in enumerate(th_tab.groupby("candidate", sort=False)):
            x = np.arange(len(sub)) + (k - 0.5) * 0.12
            interval_errorbar(ax, x, sub.tpr, sub.ci_low, sub.ci_high, fmt="o-",
                                       label="trained on bright arcs" if c == "unpaired_bright" else f"trained at {preset} brightness")
        ax.set_xticks(range(len(sub)), [str(b).replace(" FWHM", "\nFWHM") for b in sub["bin"]], fontsize="small")
        ax.legend(fontsize="small", loc="lower center", bbox_to_anchor=(0.5, 1.0), ncol=2, frameon=False)
    else:
        ax.text(0.5, 0.5, "test set too small for a TPR at low FPR", ha="center", va="center", transform=ax.transAxes)
    ax.set(xlabel="θ_E relative to the r-band PSF FWHM", ylabel=f"TPR at {100 * f0:g}% FPR", ylim=(-0.02, 1.02))
    ax.set_title("θ_E and arc brightness", pad=24)  # the legend sits between the title and the axes
    ax = axes[0, 2]
    if len(var_df):
        yv = np.arange(len(var_df))[::-1]
        interval_errorbar(ax, yv + 0.12, var_df.change, var_df.ci_low, var_df.ci_high, horizontal=True,
                                   color="C0", label="AUROC")
        ax.axvline(-change_margin, color="C0", ls="--", lw=1)
        if var_df.tpr_change.notna().any():
            interval_errorbar(ax, yv - 0.12, var_df.tpr_change, var_df.tpr_low, var_df.tpr_high, horizontal=True,
                                       color="C1", fmt="s", label=f"TPR at {100 * f0:g}% FPR (relative)")
            ax.axvline(-tpr_margin, color="C1", ls=":", lw=1.2)
        ax.axvline(0, color="k", lw=0.8)
        ax.xaxis.set_major_locator(plt.MaxNLocator(nbins=4))  # the range follows the data: few ticks never collide
        ax.set(yticks=yv, yticklabels=[v.replace(" (", "\n(") for v in var_df.variant])
        ax.legend(fontsize="small", loc="lower center", bbox_to_anchor=(0.5, 1.0), ncol=2, frameon=False)
    else:
        ax.text(0.5, 0.5, "needs the simulator", ha="center", va="center", transform=ax.transAxes)
    ax.set_xlabel("change against the nominal test set\n(AUROC: difference; TPR: relative)")
    ax.set_title("source morphology, colours, PSF mismatch", pad=24)
    ax = axes[1, 0]
    cg = [(r_.name.replace(": ", ":\n"), r_.statistic, r_.ci_low, r_.ci_high) for r_ in conf.values() if r_ is not None]
    nl = [(lab, w.statistic, w.ci_low, w.ci_high) for lab, (w, _, _) in
          zip(["null injection", "planted:\nfloat16 stamps"], null_worst.values())]
    n_c, n_n = len(cg), len(nl)
    yc = np.arange(n_c + n_n)[::-1]
    for (lab, e, lo, hi), yy, col in zip(cg + nl, yc, ["C0"] * n_c + ["C4"] * n_n):
        interval_errorbar(ax, [yy], [e], [lo], [hi], horizontal=True, color=col)
    ax.fill_betweenx([n_n - 0.5, n_n + n_c - 0.5], 1 - gate_threshold, gate_threshold, color="C2", alpha=0.12)
    ax.fill_betweenx([-0.5, n_n - 0.5], 0.5 - null_margin, 0.5 + null_margin, color="C2", alpha=0.12)
    ax.axhline(n_n - 0.5, color="0.6", lw=0.8)
    ax.axvline(0.5, color="k", lw=0.8)
    ax.set(yticks=yc, yticklabels=[c[0] for c in cg + nl], xlim=(0.0, 1.02), ylim=(-0.6, n_c + n_n - 0.4),
           xlabel="AUROC (survey-conditions gate; within-pair null check)", title="pool confounders, processing path")
    ax = axes[1, 1]
    ins, ung = artifacts["in sample"], artifacts["ungrouped"]
    vals = [ins["fitted and scored on the same rows"], ins["host-grouped CV"], ung["folds ignoring hosts"],
            ung["host-grouped CV"]]
    ya = np.arange(4)[::-1]
    ax.barh(ya, vals, height=0.6, color=["C3", "C0", "C3", "C0"])
    ax.axvline(0.5, color="k", lw=0.8)
    ax.set(yticks=ya, yticklabels=["fit = scored rows\n(naive)", "host-grouped CV", "folds ignoring hosts\n(naive)",
                                   "host-grouped CV"], xlim=(0, 1.05), xlabel="AUROC on labels with no signal",
           title="gate artifacts")
    ax = axes[1, 2]
    if probe_scores is not None:
        s_all, s_real, thr_ = probe_scores
        bins_ = np.linspace(min(s_all.min(), s_real.min()), max(s_all.max(), s_real.max()), 40)
        ax.hist(s_all[sim_y == 0], bins_, histtype="step", color="C7", label="simulated non-lenses", density=True)
        ax.hist(s_all[sim_y == 1], bins_, histtype="step", color="C0", label="simulated lenses", density=True)
        ax.hist(s_real, bins_, histtype="step", color="C3", label=real_label, density=True)
        ax.axvline(thr_, color="k", ls="--", lw=1)
        ax.legend(fontsize="small", loc="upper left")
    else:
        ax.text(0.5, 0.5, "no real lenses", ha="center", va="center", transform=ax.transAxes)
    ax.set(xlabel="model score (logit, seed 0)", ylabel="density", title="realism probe")
    ax.xaxis.set_major_locator(plt.MaxNLocator(4))
    fig.tight_layout()
    return fig


def strata_panels(strat: pd.DataFrame, group: str, threshold: float, ylabel: str, *, max_cols: int = 2,
                  panel_width: float = 5.2, rotation: float = 20, low: float = 0.4, legend: str = "above"):
    """AUROC per stratum, one panel per ``property`` of ``strat`` (columns property, bin, auroc, ci_low, ci_high,
    and ``group``: one series per value, offset side by side), with the criterion ``threshold`` as a dashed
    line; ``legend`` "above" (the figure's, above the panels) or "inside" (the first panel's). Returns the figure."""
    props_ = list(dict.fromkeys(strat.property)) if len(strat) else []
    ncol = min(max_cols, max(1, len(props_)))
    nrow = int(np.ceil(max(1, len(props_)) / ncol))
    fig, axes = plt.subplots(nrow, ncol, figsize=(panel_width * ncol, 3.9 * nrow), squeeze=False, sharey=True)
    for ax in axes.flat[len(props_):]:
        ax.axis("off")
    for ax, p in zip(axes.flat, props_):
        for i, (name, s) in enumerate(strat[strat.property == p].groupby(group, sort=False)):
            x = np.arange(len(s)) + (i - 0.5) * 0.15
            interval_errorbar(ax, x, s.auroc, s.ci_low, s.ci_high, label=name)
            ax.set_xticks(np.arange(len(s)), [str(b) for b in s["bin"]], rotation=rotation, fontsize="x-small")
        ax.axhline(threshold, color="C3", ls="--", lw=1)
        ax.set(xlabel=p, ylim=auroc_limits(strat.ci_low, low=low))
    for row in axes:
        row[0].set_ylabel(ylabel)
    if legend == "inside":
        axes.flat[0].legend(fontsize="small", loc="lower left")
    fig.tight_layout()
    if legend == "above":
        legend_above(fig, axes.flat[0])  # above the panels: never over data, wherever the bins fall
    return fig
