"""Guard rails for what a reader sees: each check fails on a planted defect and passes a clean case."""
import json

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import nbformat  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402

from lensnb import lint, plotting  # noqa: E402


def _clean():
    fig, ax = plt.subplots(figsize=(5, 3.5))
    ax.errorbar([1, 2, 3], [0.6, 0.7, 0.8], yerr=0.05, fmt="o-", label="model")
    ax.set(xlabel="training hosts", ylabel="AUROC", ylim=(0.4, 1.0))
    ax.legend(loc="lower right")
    return fig, ax


def _has(problems, words):
    return any(words in p for p in problems)


def test_a_clean_figure_passes():
    fig, _ = _clean()
    assert lint.check_figure(fig) == []


def test_legend_over_data_is_caught():
    fig, ax = _clean()
    ax.legend(loc="center")
    ax.plot([1, 3], [0.7, 0.7], label="flat")  # passes under the centred legend
    assert _has(lint.check_figure(fig), "covers plotted data")
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0))  # outside the axes: fine
    assert not _has(lint.check_figure(fig), "covers plotted data")


def test_missing_axis_label_is_caught():
    fig, ax = _clean()
    ax.set_ylabel("")
    assert _has(lint.check_figure(fig), "no y label")


def test_overlapping_tick_labels_are_caught():
    fig, ax = plt.subplots(figsize=(3, 2))
    ax.plot(range(6), range(6))
    ax.set_xticks(range(6), [f"a long category name {i}" for i in range(6)])
    ax.set(xlabel="category", ylabel="value")
    assert _has(lint.check_figure(fig), "text overlaps")


@pytest.mark.parametrize("label, defect", [
    ("(4.255999999999999, 54.653]", "raw interval label"),
    ("AUROC nan", "missing value"),
    ("0.904164", "more than 4 decimals"),
    ("nagam2025_fp_reduction", "citation key"),
])
def test_text_defects_in_a_figure_are_caught(label, defect):
    fig, ax = _clean()
    ax.set_xticks([1, 2, 3], ["low", label, "high"])
    assert _has(lint.check_figure(fig), defect)


def test_marker_clipped_off_the_axis_is_caught():
    fig, ax = _clean()
    ax.errorbar([2.0], [1.05], yerr=0.01, fmt="s")  # above ylim = 1.0
    assert _has(lint.check_figure(fig), "outside the axis limits")


def test_image_needs_a_colour_bar_and_no_grid():
    plotting.setup()  # the house style draws grid lines
    fig, ax = plt.subplots()
    im = ax.imshow(np.random.default_rng(0).normal(size=(8, 8)), extent=[-1, 1, -1, 1])
    ax.set(xlabel="x [arcsec]", ylabel="y [arcsec]")
    problems = lint.check_figure(fig)
    assert _has(problems, "no colour bar") and _has(problems, "grid lines drawn over an image")
    ax.grid(False)
    cb = fig.colorbar(im, ax=ax)
    assert _has(lint.check_figure(fig), "colour bar has no label")
    cb.set_label("flux [nmgy / pixel]")
    assert lint.check_figure(fig) == []
    plt.rcdefaults()


def test_glue_figure_refuses_a_defective_figure(monkeypatch):
    monkeypatch.delenv("LENSNB_LINT", raising=False)
    fig, ax = _clean()
    ax.set_xlabel("")
    with pytest.raises(plotting.FigureDefect, match="no x label"):
        plotting.glue_figure("fig_x", fig)


# ------------------------------------------------------------------------------------------- tables
def test_table_formats_intervals_missing_values_and_headers():
    df = pd.DataFrame({"design": ["paired", "unpaired"], "auroc": [0.904164, 0.5], "ci_low": [0.891, -0.012],
                       "ci_high": [0.918, 0.61], "hosts": [120, 80], "seed_sd": [0.0123456, np.nan],
                       "ok": [True, False]})
    t = plotting.table(df, intervals={"AUROC (95% CI)": ("auroc", "ci_low", "ci_high")})
    md = t._repr_markdown_()
    assert "0.904 (0.891–0.918)" in md and "0.500 (-0.012 to 0.610)" in md
    assert "| 120 |" in md and "0.012 |" in md and "| — |" in md and "yes" in md
    assert list(t.frame.columns) == ["design", "hosts", "seed SD", "ok", "AUROC (95% CI)"]
    assert "nan" not in md and "0.904164" not in md


@pytest.mark.parametrize("frame, match", [
    (pd.DataFrame({"ci_width_joint": [0.1]}), "raw name"),
    (pd.DataFrame({"bin": [pd.Interval(4.2559999, 54.653)]}), "raw interval"),
    (pd.DataFrame({"note": ["0.9041641"]}), "more than 4 decimals"),
    (pd.DataFrame({"note": ["value None"]}), "missing value"),
])
def test_table_refuses_raw_cells_and_headers(frame, match):
    with pytest.raises(ValueError, match=match):
        plotting.table(frame)


def test_table_escapes_pipes_for_markdown():
    md = plotting.table(pd.DataFrame({"prior": ["U(|β|)"], "n": [3]}))._repr_markdown_()
    assert "U(\\|β\\|)" in md and md.splitlines()[1] == "|:--|--:|"


# ---------------------------------------------------------------------------------------- notebooks
def _nb(markdown, outputs):
    nb = nbformat.v4.new_notebook()
    code = nbformat.v4.new_code_cell("pass")
    code.outputs = outputs
    nb.cells = [nbformat.v4.new_markdown_cell(markdown), code]
    return nb


def _glued(key, data, kind=None):
    from myst_nb.ext.glue import GLUE_PREFIX
    md = {"scrapbook": {"name": key, "mime_prefix": GLUE_PREFIX}}
    if kind:
        md["lensnb"] = {"kind": kind}
    return nbformat.v4.new_output("display_data", data={GLUE_PREFIX + k: v for k, v in data.items()}, metadata=md)


PNG = {"image/png": "iVBORw0KGgo=", "text/plain": "<Figure>"}
TABLE = {"text/markdown": "| a |\n|:--|\n| 1 |", "text/plain": "a\n1"}
GOOD_MD = ("```{glue:figure} fig_a\n:name: fig-a\n\nA caption.\n```\n\n:::{table} A table caption.\n:name: tbl-a\n"
           "```{glue:md} tbl_a\n:format: gfm\n```\n:::\n\nValue {glue:text}`x:.3f`.")


def test_a_clean_chapter_passes():
    nb = _nb(GOOD_MD, [_glued("fig_a", PNG, "figure"), _glued("tbl_a", TABLE, "table"),
                       _glued("x", {"text/plain": "0.904164"})])
    assert lint.check_notebook(nb) == []


@pytest.mark.parametrize("markdown, outputs, words", [
    (GOOD_MD.replace("A caption.", ""), None, "has no caption"),
    (GOOD_MD.replace("{glue:figure} fig_a", "{glue:figure} tbl_a"), None, "captioned as a figure"),
    (GOOD_MD.replace("`x:.3f`", "`x`"), None, "without a format spec"),
    (GOOD_MD, [_glued("fig_a", PNG)], "without plotting.glue_figure"),
    (GOOD_MD, [nbformat.v4.new_output("display_data", data=PNG)], "not glued"),
    (GOOD_MD, [nbformat.v4.new_output("execute_result", data={"text/plain": "| a |"}, execution_count=1)],
     "output that is not glued"),
    (GOOD_MD.replace("A table caption.", ""), None, "table 'tbl_a' has no caption"),
    (GOOD_MD.replace("A table caption.", "the table."), None, "starts in lower case"),
])
def test_planted_chapter_defects_are_caught(markdown, outputs, words):
    base = [_glued("fig_a", PNG, "figure"), _glued("tbl_a", TABLE, "table"), _glued("x", {"text/plain": "0.904164"})]
    problems = lint.check_notebook(_nb(markdown, base + (outputs or [])) if outputs and "not glued" in words
                                   else _nb(markdown, outputs or base))
    assert _has(problems, words), problems


def test_rendered_page_text_is_checked_but_code_inputs_are_not(tmp_path):
    page = tmp_path / "p.html"
    page.write_text("<html><main><div class='cell_input'><pre>x = float('nan')</pre></div>"
                    "<table><tr><td>0.904 (0.891–0.918)</td></tr></table><p>fine</p></main></html>")
    assert lint.check_html(page) == []
    page.write_text(page.read_text().replace("<p>fine</p>", "<p>AUROC nan, bin (4.2559999, 54.65]</p>"))
    problems = lint.check_html(page)
    assert _has(problems, "missing value") and _has(problems, "raw interval label")


# ------------------------------------------------------------------------------------------ costs
def test_costs_page_is_written_from_the_build_timings(tmp_path, monkeypatch):
    from lensnb import build, config
    monkeypatch.setattr(config, "BUILD_DIR", tmp_path / "build")
    monkeypatch.setattr(config, "BOOK_DIR", tmp_path / "book")
    monkeypatch.setattr(config, "PROCESSED_DIR", tmp_path / "data")
    (tmp_path / "book").mkdir()
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "x.bin").write_bytes(b"0" * 2_000_000)
    build.record_timing("default", "04_training", 222.4, 0.02)
    build.record_timing("default", "05_gates", 678.0, 0.4)   # other processes took 40% of the CPU meanwhile
    build.record_timing("default", "", 0, 0, full_build=905.0, cold=True)
    text = build.write_costs_page("default").read_text()
    assert "| 04_training | 3.7 min (222 s)" in text and "15.1 min" in text and "0.0 GB" in text
    assert "| 2% |" in text and "40% (busy)" in text and "from an empty" in text
    assert json.loads((tmp_path / "build" / "timings.json").read_text())["default"]["chapters"]["05_gates"]["seconds"] == 678.0
    build.record_timing("smoke", "04_training", 5.0, 0.0)  # another profile does not change this page
    assert build.costs_markdown("default") == text


def test_other_work_share_counts_only_processes_outside_the_build():
    import os
    from lensnb import build
    # the machine was busy 4 CPU-s during 1 s of wall time, 1 CPU-s of it the build's own: 3 CPU-s of other work
    assert build._other_share((10.0, 1.0), (14.0, 2.0), 1.0) == pytest.approx(3.0 / os.cpu_count())
    assert build._other_share((10.0, 1.0), (11.0, 2.0), 1.0) == 0.0   # only the build ran
    assert build._other_share(None, (1.0, 1.0), 1.0) is None           # no /proc/stat: not measured


def test_interval_pivot_makes_one_column_per_design_and_keeps_intervals_whole():
    df = pd.DataFrame({"gate": ["core LR", "core LR", "annulus LR", "annulus LR"],
                       "design": ["paired", "unpaired", "paired", "unpaired"],
                       "auroc": [0.9, 0.867, 0.75, 0.7], "ci_low": [0.88, 0.84, 0.7, 0.65],
                       "ci_high": [0.92, 0.899, 0.8, 0.75], "verdict": ["shortcut", "shortcut", "arc", "arc"]})
    wide = plotting.interval_pivot(df, ["gate"], "design")
    assert list(wide.columns) == ["gate", "paired", "unpaired"] and list(wide.gate) == ["core LR", "annulus LR"]
    assert wide.loc[0, "unpaired"] == "0.867\u00a0(0.840–0.899) · shortcut"


def test_auroc_limits_extend_to_keep_every_interval_on_the_axis():
    assert plotting.auroc_limits([0.6, 0.7]) == (0.4, 1.02)
    lo, hi = plotting.auroc_limits([0.37, 0.9], high=1.0)
    assert lo == pytest.approx(0.34) and hi == 1.0


def test_costs_page_marks_chapters_that_shared_the_machine(tmp_path, monkeypatch):
    from lensnb import build, config
    monkeypatch.setattr(config, "BUILD_DIR", tmp_path / "build")
    monkeypatch.setattr(config, "BOOK_DIR", tmp_path / "book")
    monkeypatch.setattr(config, "PROCESSED_DIR", tmp_path / "data")
    build.record_timing("default", "05_gates", 480.0, 0.45, jobs=2)  # the sibling chapter counts as other work
    build.record_timing("default", "", 0, 0.02, full_build=1977.0, cold=True, jobs=2)
    text = build.costs_markdown("default")
    assert "| shared (2 at a time) |" in text and "(busy)" not in text
    assert "2 chapter(s) at a time" in text and "outside the build used 2%" in text
