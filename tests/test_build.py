"""The build driver: parameters, build keys, profiles."""
from pathlib import Path

import nbformat
import pytest

from lensnb import build, config

GEOMETRY = config.NOTEBOOKS_DIR / "01_geometry.ipynb"


def test_overrides_follow_papermill_typing_and_precedence(tmp_path):
    f = tmp_path / "p.yml"
    f.write_text("n_systems: 10\npriors: {a: 1}\nseed: 1\n")
    out = build.parse_overrides(["-f", str(f), "-y", "seed: 2\nflag: true", "-p", "n_systems", "20",
                                 "-p", "x", "0.5", "-p", "name", "abc", "-p", "none", "None"])
    assert out == {"n_systems": 20, "priors": {"a": 1}, "seed": 2, "flag": True, "x": 0.5, "name": "abc", "none": None}


def test_bad_override_arguments_are_refused(tmp_path):
    with pytest.raises(build.BuildError, match="unrecognised"):
        build.parse_overrides(["--oops"])
    with pytest.raises(build.BuildError, match="YAML mapping"):
        build.parse_overrides(["-y", "[1, 2]"])


def test_profiles_are_valid_and_cover_declared_parameters():
    for name in ("smoke", "default", "gpu"):
        prof = build.load_profile(name)
        for nb in build.chapter_notebooks():
            params = build.notebook_parameters(nb, prof, {})
            # every chapter that declares a seed gets the profile's one
            assert ("seed" in params) == ("seed" in build.declared_parameters(nb))


def test_unknown_parameter_is_an_error():
    prof = build.load_profile("smoke")
    with pytest.raises(build.BuildError, match="does not declare"):
        build.notebook_parameters(GEOMETRY, prof, {"n_sytems": 3})


def test_missing_or_malformed_profile(tmp_path):
    with pytest.raises(build.BuildError, match="no such profile"):
        build.load_profile("nope")
    (tmp_path / "bad.yml").write_text("common: [1, 2]\n")
    with pytest.raises(build.BuildError, match="'common' must be a mapping"):
        build.load_profile("bad", tmp_path)
    (tmp_path / "badcost.yml").write_text("cost: {01_geometry: fast}\n")
    with pytest.raises(build.BuildError, match="badcost.yml: 'cost' must map chapter names to seconds"):
        build.load_profile("badcost", tmp_path)


def test_a_fresh_build_orders_chapters_by_the_profiles_cost():
    """The default profile's ``cost`` names every chapter, so a build without measurements of its own (a fresh clone)
    starts the longest chain first; with the costs equal, the book's order would start the pools chapter first."""
    names = [nb.stem for nb in build.chapter_notebooks()]
    cost = build.expected_seconds("default")
    assert set(cost) == set(names) and all(v > 0 for v in cost.values())
    waits = {nb.stem: build._waits_for(nb, names) for nb in build.chapter_notebooks()}
    first = build.next_chapters(waits, set(), set(), 1, build.chain_lengths(waits, cost))
    longest = max(names, key=build.chain_lengths(waits, cost).get)
    assert first == [longest]
    assert build.expected_seconds("smoke") == {}


def test_imported_modules_are_followed_transitively():
    nb = nbformat.read(GEOMETRY, as_version=4)
    names = {p.name for p in build.imported_modules(nb)}
    # the notebook imports geometry; geometry imports lensing, which the notebook never names
    assert {"__init__.py", "geometry.py", "lensing.py", "priors.py", "survey.py", "config.py"} <= names
    assert "build.py" not in names


def test_build_key_tracks_parameters_and_profile():
    prof = build.load_profile("smoke")
    p = build.notebook_parameters(GEOMETRY, prof, {})
    k1 = build.build_key(GEOMETRY, p, "smoke")
    assert k1 == build.build_key(GEOMETRY, dict(p), "smoke")
    assert k1 != build.build_key(GEOMETRY, {**p, "n_systems": p["n_systems"] + 1}, "smoke")
    assert k1 != build.build_key(GEOMETRY, p, "default")


def test_source_notebooks_are_committed_without_outputs():
    from lensnb.nbtools import has_outputs

    for nb in build.chapter_notebooks():
        assert not has_outputs(Path(nb)), f"{nb} has outputs; run make strip"


def test_every_declared_parameter_is_used_by_its_chapter():
    """A parameter the notebook declares but never reads would let a user change nothing (e.g. a stale size)."""
    import ast

    import nbformat

    from lensnb import config
    for path in sorted(config.NOTEBOOKS_DIR.glob("[0-9][0-9]_*.ipynb")):
        nb = nbformat.read(path, as_version=4)
        params = [c for c in nb.cells if "parameters" in c.metadata.get("tags", [])]
        assert len(params) == 1, f"{path.name}: needs exactly one parameters cell"
        declared = [t.id for node in ast.parse(params[0].source).body if isinstance(node, ast.Assign)
                    for t in node.targets if isinstance(t, ast.Name)]
        rest = "\n".join(c.source for c in nb.cells if c.cell_type == "code" and c is not params[0])
        used = {n.id for n in ast.walk(ast.parse(rest)) if isinstance(n, ast.Name)}
        unused = [d for d in declared if d not in used]
        assert not unused, f"{path.name}: declared but unused parameter(s) {unused}"


def test_a_stale_index_redirect_is_dropped_so_the_book_opens_on_its_root(tmp_path):
    toc = tmp_path / "_toc.yml"
    toc.write_text("format: jb-book\nroot: chapters/10_answers\nchapters:\n  - file: intro\n")
    index = tmp_path / "index.html"
    index.write_text('<meta http-equiv="Refresh" content="0; url=intro.html" />\n')  # written when intro was the root
    assert build.drop_stale_index(index, toc) and not index.exists()
    index.write_text('<meta http-equiv="Refresh" content="0; url=chapters/10_answers.html" />\n')
    assert not build.drop_stale_index(index, toc) and index.exists()
    index.write_text("<html><body>a real page, no redirect</body></html>")
    assert not build.drop_stale_index(index, toc) and index.exists()


def test_the_failure_modes_chapter_trains_the_alternatives_chapters_models():
    """Chapter 09 reuses chapter 08's cached models (and quotes the same memorisation and gates) only if both run
    with the same sizes and training settings: every parameter the two declare in common must have the same
    default and, in every profile, the same value."""
    import ast

    def defaults(name):
        nb = nbformat.read(config.NOTEBOOKS_DIR / f"{name}.ipynb", as_version=4)
        cell = next(c for c in nb.cells if "parameters" in c.metadata.get("tags", []))
        return {t.id: ast.literal_eval(node.value) for node in ast.parse(cell.source).body
                if isinstance(node, ast.Assign) for t in node.targets if isinstance(t, ast.Name)}

    a, b = defaults("08_alternatives"), defaults("09_failure_modes")
    shared = sorted(set(a) & set(b))
    assert {"n_hosts", "n_per_class", "seeds", "epochs", "width", "n_test_hosts"} <= set(shared)
    assert {k: a[k] for k in shared} == {k: b[k] for k in shared}
    for prof in ("smoke", "default", "gpu"):
        p = build.load_profile(prof)
        pa = build.notebook_parameters(config.NOTEBOOKS_DIR / "08_alternatives.ipynb", p, {})
        pb = build.notebook_parameters(config.NOTEBOOKS_DIR / "09_failure_modes.ipynb", p, {})
        got = {k: (pa.get(k, a[k]), pb.get(k, b[k])) for k in shared}
        assert all(x == y for x, y in got.values()), (prof, {k: v for k, v in got.items() if v[0] != v[1]})


def test_chapters_side_by_side_wait_for_what_they_reuse_and_the_answers_page_comes_last():
    names = [p.stem for p in build.chapter_notebooks()]
    for chapter, before in build.AFTER.items():
        assert chapter in names and set(before) <= set(names), (chapter, before)
        assert all(names.index(b) < names.index(chapter) for b in before)  # the book's order is one valid order
    waits = {p.stem: build._waits_for(p, names) for p in build.chapter_notebooks()}
    assert waits["10_answers"] == set(names) - {"10_answers"}
    assert waits["09_failure_modes"] == {"08_alternatives"} and waits["01_geometry"] == set()
    # nothing starts before what it waits for, however many workers are free
    done, running, order = set(), set(), []
    prio = build.chain_lengths(waits, {})
    while len(done) < len(names):
        start = build.next_chapters(waits, done, running, 2, prio)
        assert start or running
        for c in start:
            assert waits[c] <= done
        running |= set(start)
        finished = min(running)  # one of them finishes (any), and the loop goes on
        running.discard(finished)
        done.add(finished)
        order.append(finished)
    assert order[-1] == "10_answers"


def test_longest_chains_start_first():
    waits = {"a": set(), "b": set(), "c": {"b"}, "d": {"c"}, "z": {"a", "b", "c", "d"}}
    lengths = build.chain_lengths(waits, {})
    assert lengths == {"a": 2.0, "b": 4.0, "c": 3.0, "d": 2.0, "z": 1.0}
    assert build.next_chapters(waits, set(), set(), 1, lengths) == ["b"]
    assert build.next_chapters(waits, set(), set(), 2, lengths) == ["b", "a"]
    # measured seconds outweigh the count: a long single chapter goes first
    assert build.next_chapters(waits, set(), set(), 1, build.chain_lengths(waits, {"a": 900.0})) == ["a"]
    assert build.next_chapters(waits, {"b"}, {"a"}, 1, lengths) == ["c"]
    assert build.next_chapters(waits, set(), set(), 0, lengths) == []
    # equal chains: the rest of a started chain before a chapter that waits for nothing
    waits = {"a": set(), "b": set(), "c": {"b"}}
    assert build.next_chapters(waits, {"b"}, set(), 1, build.chain_lengths(waits, {})) == ["c"]


def test_chapter_kernels_compute_on_one_thread_and_the_build_key_says_so(tmp_path):
    assert all(v == "1" for v in build.KERNEL_THREADS.values())
    params = build.notebook_parameters(GEOMETRY, build.load_profile("smoke"), {})
    key = build.build_key(GEOMETRY, params, "smoke")
    old = dict(build.KERNEL_THREADS)
    try:
        build.KERNEL_THREADS["LENSNB_TORCH_THREADS"] = "2"
        assert build.build_key(GEOMETRY, params, "smoke") != key
    finally:
        build.KERNEL_THREADS.clear()
        build.KERNEL_THREADS.update(old)


def test_jupyterlab_kernels_compute_on_the_books_threads():
    """``make lab`` starts JupyterLab with the thread settings of the book's kernels, so a chapter run there gives the
    book's numbers."""
    recipe = config.ROOT.joinpath("Makefile").read_text().split("\nlab:", 1)[1].split("\n\n", 1)[0]
    for name, value in build.KERNEL_THREADS.items():
        assert f"{name}={value}" in recipe, name
