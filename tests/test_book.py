"""End to end: every chapter executes under the smoke profile and the book builds.

The build runs in a temporary copy of notebooks/, profiles/ and book/ (LENSNB_ROOT), so the
user's own build outputs are left alone.
"""
import nbformat
import pytest

from tests.bookrun import _build, _copy_project, _glued

# the smoke book is built once (module fixture ``built``); ``make test`` runs test files on two xdist workers
# (--dist loadfile), so this file's tests share one build while tests/test_book_team.py (the team-format books) runs
# beside it
pytestmark = pytest.mark.book


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    return _copy_project(tmp_path_factory.mktemp("lensnb_book"))


@pytest.fixture(scope="module")
def built(project):
    proc, _ = _build(project, "book", "--profile", "smoke")
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return project


def test_book_builds_with_every_chapter(built):
    html = built / "book" / "_build" / "html"
    assert (html / "index.html").exists()
    for nb in sorted((built / "notebooks").glob("[0-9][0-9]_*.ipynb")):
        page = html / "chapters" / f"{nb.stem}.html"
        assert page.exists(), f"{page} missing"
        text = page.read_text()
        assert "profile <code" in text and "smoke" in text  # the run header
        assert "injected-parameters" not in text and "Parameters (papermill)" not in text  # parameter cells hidden


def test_the_answers_page_is_the_first_page(built):
    html = built / "book" / "_build" / "html"
    assert "chapters/10_answers.html" in (html / "index.html").read_text()
    page = (html / "chapters" / "10_answers.html").read_text()
    for q in ("Q1", "Q2", "Q3", "Q4", "Q5", "Q6", "Q7", "E1–E4", "What to do next"):
        assert q in page, q
    g = _glued(built / "book" / "chapters" / "10_answers.ipynb", "text/markdown")
    assert "Every value was found." in g["ans_missing"], g["ans_missing"]


def test_second_build_executes_nothing(built):
    proc, dt = _build(built, "book", "--profile", "smoke")
    assert proc.returncode == 0
    assert "executing" not in proc.stdout and "up to date" in proc.stdout
    assert dt < 30


def test_rerun_one_chapter_with_overrides_is_shown_and_deterministic(built):
    chapter = built / "book" / "chapters" / "01_geometry.ipynb"
    before = _glued(chapter)
    proc, _ = _build(built, "nb", "01_geometry", "--profile", "smoke", "-p", "n_systems", "200",
                     "-y", "request_claims: {median_beta_over_theta_e: 0.5, median_inner_r_px: 2.1, frac_within_5px: 0.9}")
    assert proc.returncode == 0, proc.stderr[-3000:]
    nb = nbformat.read(chapter, as_version=4)
    assert nb.metadata["lensnb"]["parameters"]["n_systems"] == 200
    header = next(c.source for c in nb.cells if "run-header" in c.metadata.get("tags", []))
    assert "`n_systems` = `200` *(override)*" in header
    page = (built / "book" / "_build" / "html" / "chapters" / "01_geometry.html").read_text()
    assert "(override)" in page
    # back to the profile: re-executed, and the same seed gives the same glued numbers
    proc, _ = _build(built, "book", "--profile", "smoke")
    assert proc.returncode == 0 and "01_geometry: executing" in proc.stdout
    assert _numbers(chapter) == {k: v for k, v in before.items() if not str(v).startswith("<")}


def test_failing_notebook_stops_the_build_and_names_the_cell(built):
    nb = nbformat.v4.new_notebook()
    p = nbformat.v4.new_code_cell("seed = 1")
    p.metadata["tags"] = ["parameters"]
    nb.cells = [nbformat.v4.new_markdown_cell("# Broken"), p,
                nbformat.v4.new_code_cell("x = 1"), nbformat.v4.new_code_cell("raise ValueError('planted failure')")]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    path = built / "notebooks" / "99_broken.ipynb"
    nbformat.write(nb, path)
    stamp = built / "build" / "book.stamp"
    stamp_before = stamp.read_text()
    try:
        proc, _ = _build(built, "book", "--profile", "smoke")
    finally:
        path.unlink()
    assert proc.returncode == 1
    assert "99_broken.ipynb: cell 4 " in proc.stderr and "raise ValueError" in proc.stderr and "ValueError: planted failure" in proc.stderr
    assert not (built / "book" / "chapters" / "99_broken.ipynb").exists()
    assert (built / "build" / "failed" / "99_broken.ipynb").exists()
    assert stamp.read_text() == stamp_before  # the book was not rebuilt


def _numbers(nb_path):
    """Glued values that are results: not object reprs (figures, styled tables) and not wall-clock timings."""
    return {k: v for k, v in _glued(nb_path).items() if not k.startswith("timing_") and not str(v).startswith("<")}


def test_two_smoke_runs_give_identical_glued_numbers(built):
    chapters = sorted((built / "book" / "chapters").glob("*.ipynb"))
    before = {c.name: _numbers(c) for c in chapters}
    proc, _ = _build(built, "book", "--profile", "smoke", "--force")
    assert proc.returncode == 0, proc.stderr[-3000:]
    after = {c.name: _numbers(c) for c in chapters}
    assert sum(len(v) for v in before.values()) > 50
    assert after == before


def test_guard_rails_hold_on_every_executed_chapter_and_page(built):
    """Captions, table numbering, checked figures, formatted pastes (lint.check_notebook) and no nan/None,
    object reprs, raw interval labels, citation keys or long decimals on any rendered page (lint.check_html)."""
    from lensnb import lint
    problems = []
    for nb in sorted((built / "book" / "chapters").glob("*.ipynb")):
        problems += lint.check_notebook(nbformat.read(nb, as_version=4), nb.name)
    html = built / "book" / "_build" / "html"
    pages = sorted(html.glob("*.html")) + sorted((html / "chapters").glob("*.html"))
    for page in pages:
        if page.name not in ("genindex.html", "search.html"):
            problems += lint.check_html(page)
    assert problems == []
    tables = [p.read_text().count('<span class="caption-number">Table ') for p in pages]
    assert sum(tables) >= 20  # the chapters' tables are numbered as tables, not as figures


def test_costs_page_lists_every_chapter_the_build_timed(built):
    page = (built / "book" / "build_costs.md").read_text()
    for nb in sorted((built / "notebooks").glob("[0-9][0-9]_*.ipynb")):
        assert f"| {nb.stem} |" in page
    assert (built / "book" / "_build" / "html" / "build_costs.html").exists()
