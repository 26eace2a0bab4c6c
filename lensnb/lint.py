"""Guard rails for what a reader sees: figures, tables and rendered text.

``check_figure`` inspects a drawn matplotlib figure for the defects a careful reader trips on;
``check_text`` scans rendered text (table cells, glued values, the HTML of a page);
``check_notebook`` checks an executed chapter: every glued figure and table captioned and
referenced the right way, no glued float pasted without a format. ``plotting.glue_figure`` and
``plotting.table`` call the first two, so a chapter cannot glue a defective figure or table; the
book tests call the last on every executed chapter.
"""
from __future__ import annotations

import itertools
import re

import numpy as np

# rendered-text defects: missing values, Python reprs, raw pandas intervals, unrounded floats
TEXT_DEFECTS = {
    # "None" followed by a lower-case word is prose ("None of the priors ..."), not a missing value
    "missing value": re.compile(r"(?<![\w.])(nan|NaN|None(?!\s+[a-z])|NaT|<NA>)(?!\w)"),
    "object repr": re.compile(r"<[\w.]+ object at 0x[0-9a-f]+>|\b(array|Interval|Series|DataFrame)\("),
    "raw interval label": re.compile(r"\(\s*-?\d[\d.e+-]*,\s*-?\d[\d.e+-]*\]"),
    "citation key": re.compile(r"\b[a-z]+\d{4}[a-z]?_[a-z0-9_]+\b"),
    "number with more than 4 decimals": re.compile(r"(?<![\w.:])-?\d{1,3}\.\d{5,}(?!\d)"),
}


def check_text(text: str, where: str = "text") -> list[str]:
    """Defects in rendered text: ``nan``/``None``, object reprs, raw interval labels such as
    ``(4.2559, 54.65]``, numbers printed with more than 4 decimals. One message per defect."""
    out = []
    for name, rx in TEXT_DEFECTS.items():
        m = rx.search(text)
        if m:
            s = max(0, m.start() - 30)
            out.append(f"{where}: {name} {m.group(0)!r} in ...{text[s:m.end() + 30]!r}")
    return out


# ------------------------------------------------------------------------------------------ figures
def _tick_labels(axis):
    """The major tick labels matplotlib actually draws (ticks inside the view interval)."""
    lo, hi = sorted(axis.get_view_interval())
    eps = 1e-9 * max(abs(lo), abs(hi), 1.0)
    return [t.label1 for t in axis.get_major_ticks() if lo - eps <= t.get_loc() <= hi + eps and t.label1.get_visible()] + \
        [t.label2 for t in axis.get_major_ticks() if lo - eps <= t.get_loc() <= hi + eps and t.label2.get_visible()]


def _texts(fig):
    """Visible, non-empty text artists with a description of where they sit."""
    out = []
    for i, ax in enumerate(fig.axes):
        owner = f"axes {i}"
        items = [("title", t) for t in (ax.title, ax._left_title, ax._right_title)]
        items += [("x label", ax.xaxis.label), ("y label", ax.yaxis.label)]
        items += [("x tick label", t) for t in _tick_labels(ax.xaxis)]
        items += [("y tick label", t) for t in _tick_labels(ax.yaxis)]
        items += [("text", t) for t in ax.texts]
        leg = ax.get_legend()
        if leg is not None and leg.get_visible():
            items += [("legend", t) for t in leg.get_texts()]
            items.append(("legend title", leg.get_title()))
        out += [(owner, kind, t) for kind, t in items]
    for leg in fig.legends:
        out += [("figure", "legend", t) for t in leg.get_texts()]
    if fig._suptitle is not None:
        out.append(("figure", "suptitle", fig._suptitle))
    out += [("figure", "text", t) for t in fig.texts]
    return [(o, k, t) for o, k, t in out if t.get_visible() and t.get_text().strip()]


def _is_colorbar(ax) -> bool:
    return getattr(ax, "_colorbar", None) is not None


def _data_points(ax):
    """Display coordinates of the plotted data in ``ax`` (lines densified, markers, scatter offsets)."""
    pts = []
    for line in ax.get_lines():
        if not line.get_visible() or not line.get_transform().contains_branch(ax.transData):
            continue
        xy = np.column_stack([np.asarray(line.get_xdata(), float), np.asarray(line.get_ydata(), float)])
        xy = xy[np.isfinite(xy).all(axis=1)]
        if len(xy) == 0:
            continue
        d = ax.transData.transform(xy)
        if line.get_linestyle() not in ("None", "", " ", "none") and len(d) > 1:
            seg = [np.linspace(a, b, 40) for a, b in zip(d[:-1], d[1:])]
            d = np.vstack(seg)
        pts.append(d)
    for coll in ax.collections:
        if not coll.get_visible():
            continue
        offs = coll.get_offsets()
        if len(offs) and coll.get_offset_transform().contains_branch(ax.transData):
            o = np.asarray(offs, float)
            pts.append(ax.transData.transform(o[np.isfinite(o).all(axis=1)]))
        for path in getattr(coll, "get_segments", lambda: [])():  # error bars (LineCollection)
            p = np.asarray(path, float)
            if len(p) and coll.get_transform().contains_branch(ax.transData):
                d = ax.transData.transform(p[np.isfinite(p).all(axis=1)])
                if len(d) > 1:
                    d = np.vstack([np.linspace(a, b, 20) for a, b in zip(d[:-1], d[1:])])
                pts.append(d)
    for patch in ax.patches:  # bars
        from matplotlib.patches import Rectangle

        if isinstance(patch, Rectangle) and patch.get_visible() and patch.get_transform().contains_branch(ax.transData):
            bb = patch.get_window_extent()
            xs, ys = np.linspace(bb.x0, bb.x1, 10), np.linspace(bb.y0, bb.y1, 10)
            pts.append(np.array([(x, y) for x in xs for y in ys]))
    return np.vstack(pts) if pts else np.empty((0, 2))


def _inside(pts, bb, pad=0.0):
    return (pts[:, 0] > bb.x0 + pad) & (pts[:, 0] < bb.x1 - pad) & (pts[:, 1] > bb.y0 + pad) & (pts[:, 1] < bb.y1 - pad)


def check_figure(fig, name: str = "figure") -> list[str]:
    """Defects of a figure a reader would trip on; an empty list when it is fine.

    - an axes with data but no x or y label (a label on another axes of the same column or row counts;
      colour bars need a label on their long axis);
    - text that overlaps other text (tick labels running into each other, a label over a neighbour);
    - a legend inside an axes that covers plotted data (lines, markers, error bars, bars);
    - error-bar markers outside the axis limits (a point clipped off the axis);
    - an image drawn with grid lines over it, or without a colour bar (unless it is a display stretch,
      marked ``image.set_gid("stretch")``); images with different colour scales sharing one colour bar;
    - ``nan``/``None``, raw interval labels or long decimals in any text.
    """
    fig.canvas.draw()
    r = fig.canvas.get_renderer()
    problems: list[str] = []
    plots = [ax for ax in fig.axes if ax.get_visible() and not _is_colorbar(ax) and ax.axison]
    # labels
    for ax in plots:
        has_data = bool(ax.get_lines() or ax.collections or ax.images or ax.patches)
        if not has_data:
            continue
        pos = ax.get_position()
        for axis, other in (("x", "y"), ("y", "x")):
            ticks = [t for t in _tick_labels(getattr(ax, f"{axis}axis")) if t.get_text().strip()]
            if not ticks:
                continue
            same = [a for a in plots if (abs(a.get_position().x0 - pos.x0) < 0.02 if axis == "x" else
                                         abs(a.get_position().y0 - pos.y0) < 0.02)]
            if not any(getattr(a, f"get_{axis}label")().strip() for a in same):
                problems.append(f"{name}: axes {fig.axes.index(ax)} has no {axis} label (title "
                                f"{ax.get_title()!r})")
    for ax in fig.axes:
        if _is_colorbar(ax):
            cb = ax._colorbar
            if not (cb.ax.get_ylabel().strip() or cb.ax.get_xlabel().strip()):
                problems.append(f"{name}: a colour bar has no label")
    # images: grid lines and colour bars
    bars = [ax._colorbar for ax in fig.axes if _is_colorbar(ax)]
    for ax in plots:
        for im in ax.images:
            if im.get_gid() == "stretch":
                continue
            if any(gl.get_visible() for gl in ax.get_xgridlines() + ax.get_ygridlines()):
                problems.append(f"{name}: grid lines drawn over an image (axes {fig.axes.index(ax)})")
            norm = im.norm
            match = [cb for cb in bars if cb.mappable is im or (
                cb.mappable.get_cmap().name == im.get_cmap().name
                and np.isclose(cb.mappable.norm.vmin, norm.vmin) and np.isclose(cb.mappable.norm.vmax, norm.vmax))]
            if not match:
                problems.append(f"{name}: an image (axes {fig.axes.index(ax)}, title {ax.get_title()!r}) has no colour bar "
                                "for its scale (add one, or mark a pure display stretch with set_gid('stretch'))")
    # text: defects and overlaps
    texts = _texts(fig)
    for owner, kind, t in texts:
        problems += check_text(t.get_text(), f"{name}: {owner} {kind}")
    boxes = []
    for owner, kind, t in texts:
        bb = t.get_window_extent(r)
        if bb.width > 0 and bb.height > 0:
            boxes.append((owner, kind, t.get_text(), bb))
    for (o1, k1, s1, b1), (o2, k2, s2, b2) in itertools.combinations(boxes, 2):
        if k1.startswith("legend") and k2.startswith("legend") and o1 == o2:
            continue
        ox = min(b1.x1, b2.x1) - max(b1.x0, b2.x0)
        oy = min(b1.y1, b2.y1) - max(b1.y0, b2.y0)
        if ox > 1.5 and oy > 1.5:
            problems.append(f"{name}: text overlaps: {o1} {k1} {s1!r} and {o2} {k2} {s2!r}")
    # legends over data, markers clipped off the axes
    for ax in plots:
        leg = ax.get_legend()
        pts = _data_points(ax)
        if leg is not None and leg.get_visible() and len(pts):
            lb = leg.get_window_extent(r)
            ab = ax.get_window_extent(r)
            inside_axes = lb.x0 >= ab.x0 - 1 and lb.x1 <= ab.x1 + 1 and lb.y0 >= ab.y0 - 1 and lb.y1 <= ab.y1 + 1
            if inside_axes and _inside(pts, lb, pad=1.0).any():
                problems.append(f"{name}: the legend of axes {fig.axes.index(ax)} (title {ax.get_title()!r}) covers "
                                "plotted data; move it (loc=...) or outside the axes (bbox_to_anchor)")
        ab = ax.get_window_extent(r)
        for line in ax.get_lines():
            if line.get_linestyle() in ("None", "", " ", "none") and line.get_marker() not in (None, "None", "", " "):
                xy = np.column_stack([np.asarray(line.get_xdata(), float), np.asarray(line.get_ydata(), float)])
                xy = xy[np.isfinite(xy).all(axis=1)]
                if len(xy) and line.get_transform().contains_branch(ax.transData):
                    d = ax.transData.transform(xy)
                    out = ~_inside(d, ab, pad=-1.0)
                    if out.any():
                        problems.append(f"{name}: {int(out.sum())} marker(s) of axes {fig.axes.index(ax)} lie outside "
                                        f"the axis limits (e.g. at {xy[out][0].round(3).tolist()})")
    return problems


# --------------------------------------------------------------------------------------- notebooks
_FIG_DIRECTIVE = re.compile(r"```\{glue:figure\}\s*(\S+)(.*?)```", re.S)
_TABLE_DIRECTIVE = re.compile(r":::\{table\}([^\n]*)\n(.*?)\n:::", re.S)
_GLUE_MD_BLOCK = re.compile(r"```\{glue:md\}\s*(\S+)")
_GLUE_TEXT = re.compile(r"\{glue:text\}`([^`]+)`")
_GLUE_ANY = re.compile(r"\{glue(?::any)?\}`([^`]+)`")


def glued_outputs(nb) -> dict:
    """{key: (mime bundle, lensnb metadata)} of every value glued in an executed notebook."""
    out = {}
    for cell in nb.cells:
        for o in cell.get("outputs", []):
            md = o.get("metadata", {})
            if "scrapbook" in md:
                prefix = md["scrapbook"].get("mime_prefix", "")
                data = {k[len(prefix):]: v for k, v in o.get("data", {}).items()}
                out[md["scrapbook"]["name"]] = (data, md.get("lensnb", {}))
    return out


def _caption_of_figure(body: str) -> str:
    lines = [ln for ln in body.splitlines() if ln.strip() and not ln.strip().startswith(":")]
    return " ".join(lines).strip()


def _caption_problems(name: str, what: str, key: str, caption: str) -> list[str]:
    """A placed figure's or table's caption: present, and starting in upper case."""
    if not caption:
        return [f"{name}: {what} {key!r} has no caption"]
    if caption[0].islower():
        return [f"{name}: the caption of {what} {key!r} starts in lower case"]
    return []


def check_notebook(nb, name: str = "notebook") -> list[str]:
    """Book-level defects of an executed chapter (nbformat node).

    - an image output not glued, or glued but never placed in a ``glue:figure`` with a caption;
    - a glued figure that did not go through ``plotting.glue_figure`` (its checks did not run);
    - a table glued as a figure (``glue:figure`` of a non-image), a table not made by
      ``plotting.table``, or a table not placed in a captioned ``{table}`` directive;
    - a float glued and pasted with ``{glue:text}`` without a format spec (``key:.3f``);
    - text defects (``check_text``) in markdown outputs and glued text.
    """
    problems = []
    glued = glued_outputs(nb)
    md = "\n".join(c.source for c in nb.cells if c.cell_type == "markdown")
    for i, cell in enumerate(nb.cells):
        for o in cell.get("outputs", []):
            if o.get("output_type") in ("display_data", "execute_result") and "scrapbook" not in o.get("metadata", {}):
                if any(k.startswith("image/") for k in o.get("data", {})):
                    problems.append(f"{name}: cell {i} displays an image that is not glued into a captioned figure")
                else:  # the book hides code, not outputs: a stray value shows up as raw text on the page
                    text = str(o.get("data", {}).get("text/plain", ""))[:60]
                    problems.append(f"{name}: cell {i} shows an output that is not glued ({text!r})")
    figures = {m.group(1): _caption_of_figure(m.group(2)) for m in _FIG_DIRECTIVE.finditer(md)}
    tables = {}
    for m in _TABLE_DIRECTIVE.finditer(md):
        for g in _GLUE_MD_BLOCK.finditer(m.group(2)):
            tables[g.group(1)] = m.group(1).strip()
    for key, (data, meta) in glued.items():
        is_image = any(k.startswith("image/") for k in data)
        kind = meta.get("kind")
        if is_image:
            if kind != "figure":
                problems.append(f"{name}: figure {key!r} was glued without plotting.glue_figure (its checks did not run)")
            if key not in figures:
                problems.append(f"{name}: figure {key!r} is never placed in a glue:figure directive")
            else:
                problems += _caption_problems(name, "figure", key, figures[key])
        elif kind == "table" or "text/html" in data and "<table" in str(data.get("text/html", "")):
            if kind != "table":
                problems.append(f"{name}: table {key!r} was not made with plotting.table")
            if key in figures:
                problems.append(f"{name}: table {key!r} is captioned as a figure (use a {{table}} directive)")
            elif key not in tables:
                problems.append(f"{name}: table {key!r} is not placed in a captioned {{table}} directive")
            else:
                problems += _caption_problems(name, "table", key, tables[key])
        elif key in figures:
            problems.append(f"{name}: {key!r} is placed in a glue:figure but is not an image")
        text = str(data.get("text/markdown", data.get("text/plain", "")))
        try:  # a bare number: how it is pasted (with a format spec) is checked below
            float(text)
        except ValueError:
            problems += check_text(text, f"{name}: glued {key!r}")
    for m in _GLUE_TEXT.finditer(md):
        key, _, fmt = m.group(1).partition(":")
        data = glued.get(key, ({}, {}))[0]
        plain = str(data.get("text/plain", ""))
        try:
            value = float(plain)
        except ValueError:
            continue
        if not fmt and not value.is_integer() and "." in plain and len(plain.split(".")[1]) > 3:
            problems.append(f"{name}: {{glue:text}}`{key}` pastes the float {plain} without a format spec")
    return problems


def check_html(path) -> list[str]:
    """Text defects (``check_text``) in the visible text of a rendered book page: code inputs (hidden behind
    toggles), scripts and the navigation are left out; tables, captions, prose and outputs are read."""
    from pathlib import Path

    from bs4 import BeautifulSoup

    soup = BeautifulSoup(Path(path).read_text(encoding="utf-8"), "html.parser")
    main = soup.find("main") or soup
    for el in main.select("script, style, div.cell_input, .headerlink"):
        el.decompose()
    problems = []
    for block in main.find_all(["p", "li", "td", "th", "caption", "figcaption", "h1", "h2", "h3", "pre", "dt", "dd"]):
        if block.find_parent(["p", "li", "td", "th", "caption", "figcaption", "pre", "dd"]) is not None:
            continue  # read once, as part of its enclosing block
        text = " ".join(block.get_text(" ").split())
        problems += check_text(text, f"{Path(path).name}")
    return problems
