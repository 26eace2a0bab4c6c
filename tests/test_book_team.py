"""The book on the team's own data: every chapter on a small foreign team-format directory, the real-lens route, the
verdict sentences flipping with the data, and sizes taken from the data. Each test builds its own project copy."""
import pytest

from tests.bookrun import _build, _copy_project, _glued

pytestmark = pytest.mark.book


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

    from lensnb.dataset import write_real_manifest
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
