"""End to end: every chapter executes under the smoke profile and the book builds.

The build runs in a temporary copy of notebooks/, profiles/ and book/ (LENSNB_ROOT), so the
user's own build outputs are left alone.
"""
import json
import os
import shutil
import subprocess
import sys
import time

import nbformat
import pytest

from lensnb import config

# the smoke book is built once (module fixture ``built``), so its tests run on one xdist worker; the tests that build
# their own copies form groups of their own and run beside it (``make test``: pytest -n 2 --dist loadgroup)
pytestmark = [pytest.mark.book, pytest.mark.xdist_group("smoke_book")]


def _copy_project(root):
    for sub in ("notebooks", "profiles"):
        shutil.copytree(config.ROOT / sub, root / sub)
    shutil.copytree(config.ROOT / "book", root / "book", ignore=shutil.ignore_patterns("_build", "chapters"))
    return root


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    return _copy_project(tmp_path_factory.mktemp("lensnb_book"))


def _build(root, *args):
    env = dict(os.environ, LENSNB_ROOT=str(root))
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "lensnb.build", *args], cwd=root, env=env,
                          capture_output=True, text=True, timeout=1800)
    return proc, time.perf_counter() - t0


def _glued(nb_path, mime="text/plain"):
    """Glued values of an executed chapter by key, in one MIME type (keys without it are left out)."""
    nb = json.loads(nb_path.read_text())
    out = {}
    for cell in nb["cells"]:
        for o in cell.get("outputs", []):
            key = o.get("metadata", {}).get("scrapbook", {}).get("name")
            if key:
                data = o["data"]
                value = data.get(f"application/papermill.record/{mime}", data.get(mime))
                if value is not None:
                    out[key] = "".join(value) if isinstance(value, list) else value
    return out


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


@pytest.mark.xdist_group("team_book")
def test_book_runs_on_team_format_data_written_without_the_simulator(tmp_path_factory):
    from tests import corpus

    root = _copy_project(tmp_path_factory.mktemp("lensnb_teamdata"))
    data = root / "team_manifests"
    data.mkdir()
    # small and foreign, as a team's first try: 120 hosts x 6 rows in 3 files (every chapter sizes itself from it)
    df = corpus.good_frame(n_hosts=120, per_host=6, seed=5)
    for k in range(3):
        corpus.write(df.iloc[k * 240:(k + 1) * 240], data / f"part-{k:03d}.parquet")
    proc, _ = _build(root, "book", "--profile", "smoke", "--data", str(data))
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    html = root / "book" / "_build" / "html" / "chapters"
    page = (html / "02_data.html").read_text()
    assert "team_manifests" in page  # the run header names the data
    assert "Not shown, because the data lack the column" in page  # simulator-only panels skipped visibly
    for nb in ("03_pools", "04_training", "05_gates", "08_alternatives"):
        assert "team_manifests" in (html / f"{nb}.html").read_text()
    alt = _glued(root / "book" / "chapters" / "08_alternatives.ipynb", "text/markdown")
    assert "your data" in alt["alt_source"]
    # what brightness costs, on the team's own held-out hosts: detectable arcs injected into their own cutouts
    assert "injected with `lensnb.inject` into the same held-out hosts" in alt["alt_brightness_text"]
    assert "of your own test arcs and" in alt["alt_brightness_cost_text"]
    ans = _glued(root / "book" / "chapters" / "10_answers.ipynb", "text/markdown")
    assert ans["ans_population"].startswith("Your data:")  # which lenses, from the team's own θ_E and PSF
    assert ans["ans_brightness"].startswith("Your arcs") and "What that costs" in ans["ans_brightness"]


def _real_manifest_dir(root, n=60, seed=3):
    """Real lenses and non-lenses in the team's format, two files: blobs with a ring of light for lenses."""
    import numpy as np

    from lensnb.alternatives import write_real_manifest
    from lensnb.config import STAMP_SIZE

    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:STAMP_SIZE, :STAMP_SIZE] - (STAMP_SIZE - 1) / 2
    r = np.hypot(xx, yy)
    host = np.exp(-r / 4.0)
    labels = np.arange(n) % 2
    imgs = (rng.normal(0, 0.05, (n, 3, STAMP_SIZE, STAMP_SIZE)) + host
            + labels[:, None, None, None] * 0.5 * np.exp(-0.5 * ((r - 8) / 1.0) ** 2)).astype(np.float32)
    d = root / "real_lenses"
    d.mkdir()
    for k, sl in enumerate((slice(0, n // 2), slice(n // 2, n))):
        write_real_manifest(d / f"part-{k:03d}.parquet", imgs[sl], labels[sl], ra=200.0 + np.arange(n)[sl] * 0.01,
                            dec=np.full(len(labels[sl]), 5.0))
    return d


@pytest.mark.xdist_group("team_chapters")
def test_real_lens_route_runs_on_a_team_format_directory(tmp_path_factory):
    root = _copy_project(tmp_path_factory.mktemp("lensnb_real"))
    real = _real_manifest_dir(root)
    proc, _ = _build(root, "nb", "08_alternatives", "--profile", "smoke", "--data-real", str(real), "--no-book")
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    g = _glued(root / "book" / "chapters" / "08_alternatives.ipynb", "text/markdown")
    assert "your real lenses and non-lenses" in g["alt_real_text"] and "real_lenses" in g["alt_real_text"]
    assert "30 lenses and 30 non-lenses" in g["alt_real_text"]
    assert "stand-in" not in g["alt_real_text"]
    # the failure-mode chapter's realism probe reads the same real lenses
    proc, _ = _build(root, "nb", "09_failure_modes", "--profile", "smoke", "--data-real", str(real), "--no-book")
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    g9 = _glued(root / "book" / "chapters" / "09_failure_modes.ipynb", "text/markdown")
    assert g9["fm_real_name"] == "your real lenses"
    reg = g9["fm_register"]
    assert "sim-to-real gap: domain probe on network features" in reg and "recall on real lenses" in reg
    # a manifest without labels stops the build before anything runs, naming the file and the column
    bad = root / "bad_real"
    bad.mkdir()
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.table({"stamp_npz": [b"x"]}), bad / "part-000.parquet")
    proc, _ = _build(root, "nb", "08_alternatives", "--profile", "smoke", "--data-real", str(bad), "--no-book")
    assert proc.returncode == 1
    assert "part-000.parquet: missing required column 'label'" in proc.stderr


@pytest.mark.xdist_group("team_chapters")
def test_verdict_sentences_flip_when_the_data_flip(tmp_path_factory):
    """Chapter 03 on two team-format data sets: arcs with a counter-image next to the core (the shortcut
    is there) and arcs with only an outer image far from the core (it is not). The E4 sentence, generated
    from the numbers, must say so in each case."""
    from tests import corpus

    root = _copy_project(tmp_path_factory.mktemp("lensnb_flip"))
    text = {}
    for name, kw in {"with_counter": dict(counter=1.0, theta_px=6.0), "no_counter": dict(counter=0.0, theta_px=9.0)}.items():
        data = root / name
        data.mkdir()
        corpus.write(corpus.good_frame(n_hosts=60, per_host=4, seed=7, **kw), data / "part-000.parquet")
        proc, _ = _build(root, "nb", "03_pools", "--profile", "smoke", "--data", str(data), "--no-book")
        assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
        text[name] = _glued(root / "book" / "chapters" / "03_pools.ipynb", "text/markdown")["e4_text"]
    assert "the shortcut is available" in text["with_counter"], text
    assert "available" not in text["no_counter"] and "separated" not in text["no_counter"], text


@pytest.mark.xdist_group("team_chapters")
def test_small_team_data_runs_with_sizes_taken_from_the_data(tmp_path_factory):
    """120 hosts x 6 injections with the request's sizes asked for: the chapters take what the data hold
    and say so, instead of stopping."""
    from tests import corpus

    root = _copy_project(tmp_path_factory.mktemp("lensnb_small"))
    data = root / "small"
    data.mkdir()
    corpus.write(corpus.good_frame(n_hosts=120, per_host=6, seed=11), data / "part-000.parquet")
    big = ["-y", "n_hosts: {train: 300, val: 75, test: 40}"]
    for nb in ("03_pools", "04_training"):
        proc, _ = _build(root, "nb", nb, "--profile", "smoke", "--data", str(data), "--no-book", *big)
        assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
        note = _glued(root / "book" / "chapters" / f"{nb}.ipynb", "text/markdown")["sizes_note"]
        assert "exceed what the" in note and "120 hosts" in note, note


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
