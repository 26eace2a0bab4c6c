"""The literature table (Q7): data integrity, loader errors, the categorical columns and their
consistency with the free text, known-answer counts behind the verdict, and that the chapter only
cites what the table holds and types no numbers of its own."""
import re
from pathlib import Path

import nbformat
import pandas as pd
import pytest

from lensnb import config, literature as L

CHAPTER = config.ROOT / "notebooks" / "07_literature.ipynb"
SHARED_CSV = Path("/work/shared/literature/lens_finder_training_designs.csv")
ARXIV_ANYWHERE = re.compile(r"(?<![\d.])\d{4}\.\d{4,5}(?![\d.])")


@pytest.fixture(scope="module")
def designs():
    return L.annotate(L.load_designs())


def row(designs, key):
    return designs.set_index("key").loc[key]


# ---------------------------------------------------------------------------- the data


def test_packaged_data_is_valid(designs):
    raw = pd.read_csv(L.default_path(), dtype=str, keep_default_na=False)
    assert list(raw.columns) == list(L.REQUIRED_COLUMNS)
    assert (raw["source"].str.strip() != "").all()
    assert raw["key"].is_unique and (raw["key"].str.strip() != "").all()
    for value in raw["arxiv"]:
        if value.strip():
            assert re.fullmatch(r"\d{4}\.\d{4,5}(v\d+)?( \([^()]*\))?", value.strip()), value
    years = designs["year"].dropna()
    assert years.between(*L.YEAR_RANGE).all()
    assert designs["year"].isna().sum() <= 1  # only the code repository has no year


def test_packaged_copy_is_verbatim():
    """The packaged table is the shared one, cell for cell, plus the categorical columns."""
    if not SHARED_CSV.exists():
        pytest.skip("shared literature folder not present")
    shared = pd.read_csv(SHARED_CSV, dtype=str, keep_default_na=False)
    packaged = pd.read_csv(L.default_path(), dtype=str, keep_default_na=False)
    assert list(shared.columns) == list(L.SOURCE_COLUMNS)
    pd.testing.assert_frame_equal(packaged[list(L.SOURCE_COLUMNS)], shared)


def test_package_data_declared():
    text = (config.ROOT / "pyproject.toml").read_text()
    assert re.search(r'\[tool\.setuptools\.package-data\]\s*lensnb\s*=\s*\["data/\*\.csv"\]', text)


# ---------------------------------------------------------------------------- loader errors


def _write_variant(tmp_path, name, edit):
    df = pd.read_csv(L.default_path(), dtype=str, keep_default_na=False)
    df = edit(df)
    path = tmp_path / name
    df.to_csv(path, index=False)
    return path


@pytest.mark.parametrize("name, edit, row_text, column", [
    ("missing_col.csv", lambda d: d.drop(columns=["source"]), "row 0 (header)", "source"),
    ("empty_source.csv", lambda d: d.assign(source=d["source"].where(d.index != 2, "  ")), "row 3", "source"),
    ("bad_arxiv.csv", lambda d: d.assign(arxiv=d["arxiv"].where(d.index != 4, "1812.3168")), "row 5", "arxiv"),
    ("prefixed_arxiv.csv", lambda d: d.assign(arxiv=d["arxiv"].where(d.index != 0, "arXiv:1704.02744")), "row 1", "arxiv"),
    ("bad_month.csv", lambda d: d.assign(arxiv=d["arxiv"].where(d.index != 1, "1813.03786")), "row 2", "arxiv"),
    ("dup_key.csv", lambda d: d.assign(key=d["key"].where(d.index != 6, d.at[0, "key"])), "row 7", "key"),
    ("bad_year.csv", lambda d: d.assign(year=d["year"].where(d.index != 3, "19")), "row 4", "year"),
    ("old_year.csv", lambda d: d.assign(year=d["year"].where(d.index != 3, "1850")), "row 4", "year"),
    ("missing_category.csv", lambda d: d.drop(columns=["host_relation"]), "row 0 (header)", "host_relation"),
    # a value outside the vocabulary
    ("bad_category.csv", lambda d: d.assign(host_relation=d["host_relation"].where(d.index != 2, "unpaired")),
     "row 3", "host_relation"),
    # huang2020_decals (row 8) trains on real lenses; its text does not describe injection
    ("unbacked_injection.csv", lambda d: d.assign(positives_kind=d["positives_kind"].where(d.index != 7, "injected arcs")),
     "row 8", "positives_kind"),
    # canameras2020_holismokesII (row 13): the host text says "not stated", so "disjoint (stated)" is refused
    ("unbacked_disjoint.csv", lambda d: d.assign(host_relation=d["host_relation"].where(d.index != 12, "disjoint (stated)")),
     "row 13", "host_relation"),
    # gentile2022_live (row 24) describes injected arcs; it may not be filed as "not stated"
    ("missed_injection.csv", lambda d: d.assign(positives_kind=d["positives_kind"].where(d.index != 23, "not stated")),
     "row 24", "positives_kind"),
    # "disjoint by construction" needs real-lens positives
    ("construction_without_real.csv",
     lambda d: d.assign(same_hosts_in_both_classes=d["same_hosts_in_both_classes"].where(d.index != 12, "disjoint by construction"),
                        host_relation=d["host_relation"].where(d.index != 12, "disjoint by construction")),
     "row 13", "host_relation"),
])
def test_loader_refuses_bad_csv_naming_file_row_and_column(tmp_path, name, edit, row_text, column):
    path = _write_variant(tmp_path, name, edit)
    with pytest.raises(L.DesignError) as err:
        L.load_designs(path)
    msg = str(err.value)
    assert "\n" not in msg
    assert str(path) in msg and row_text in msg and f"column {column!r}" in msg, msg


def test_loader_refuses_missing_file(tmp_path):
    with pytest.raises(L.DesignError, match="no such file"):
        L.load_designs(tmp_path / "nope.csv")


def test_arxiv_with_version_and_remark_is_accepted(tmp_path):
    path = _write_variant(tmp_path, "ok.csv", lambda d: d.assign(arxiv=d["arxiv"].where(d.index != 0, "1704.02744v2")))
    df = L.load_designs(path)
    assert df.at[0, "arxiv_id"] == "1704.02744"
    assert df.set_index("key").at["rojas_sim_toolbox", "arxiv_id"] == "2109.00014"  # "(paper it serves)"


# ---------------------------------------------------------------------------- categorical columns

# Counted by hand from the free text of the shared table (not from the categorical columns):
# lens finders whose ``positives`` say lensed/simulated sources were put on real galaxy images.
INJECTION_FINDERS = {"petrillo2019a_kids_testing", "canameras2020_holismokesII", "canameras2021_holismokesVI",
                     "rojas2022_des", "savary2022_cfis", "he2020_kids_dr3", "gentile2022_live",
                     "andika2023_lensed_quasars"}
# lens finders whose positives are real lenses only ("known lensing systems", "real lens candidates")
REAL_LENS_FINDERS = {"huang2020_decals", "huang2021_ls_dr8", "storfer2024_ls_dr9", "ls_dr10_paper4_2025",
                     "stein2022_ssl_dr9"}


@pytest.mark.parametrize("key, pos, neg, host", [
    ("huang2020_decals", "real lenses", "real images", "disjoint by construction"),
    ("stein2022_ssl_dr9", "real lenses", "not stated", "disjoint by construction"),
    ("canameras2020_holismokesII", "injected arcs", "real images", "not stated"),
    ("rojas2022_des", "injected arcs", "not stated", "not stated"),
    ("andika2023_lensed_quasars", "injected arcs", "not stated", "not stated"),
    ("metcalf2019_challenge", "fully simulated", "simulated", "same population, unmatched"),
    ("wilde2022_interpretability", "fully simulated", "simulated", "not stated"),
    ("jacobs2017_cfhtls", "simulated, host not stated", "not stated", "not stated"),
    ("jacobs2019_des", "simulated, host not stated", "simulated and real", "not stated"),
    ("he2020_kids_dr3", "fully simulated or injected arcs", "not stated", "not stated"),
    ("grespan2024_teglie", "simulated, then real lenses", "simulated and real", "disjoint by construction"),
    ("petrillo2017_kids", "not stated", "not stated", "not stated"),
    ("gonzalez2025_des_vit", "not stated", "look-alike classes", "not stated"),
    ("holloway2024_bayesian", "n/a", "n/a", "n/a"),
])
def test_categorical_values_of_rows(designs, key, pos, neg, host):
    r = row(designs, key)
    assert (r["positives_kind"], r["negatives_kind"], r["host_relation"]) == (pos, neg, host)


def test_every_categorical_value_is_backed_by_its_row(designs):
    for _, r in designs.iterrows():
        for col in L.CATEGORY_COLUMNS:
            assert L.category_problem(r, col) is None, (r["key"], col)


def test_categories_agree_with_the_free_text(designs):
    """Independent of ``EVIDENCE``: plain word checks on the text each value summarises."""
    f = L.finders(designs)
    for _, r in f.iterrows():
        pos, hosts = r["positives"].lower(), r["same_hosts_in_both_classes"].lower()
        if "injected" in r["positives_kind"]:
            assert "real" in pos or "images" in pos, r["key"]
            assert any(w in pos for w in ("lensed", "simulated", "arcs")), r["key"]
        if r["positives_kind"] == "real lenses":
            assert "real" in pos and "simulat" not in pos, r["key"]
        if r["host_relation"] == "not stated":
            assert "not stated" in hosts or not hosts, r["key"]
        if r["host_relation"] == "disjoint by construction":
            assert "disjoint" in hosts or "impossible" in hosts, r["key"]
        if r["negatives_kind"] == "real images":
            assert "real" in r["negatives"].lower(), r["key"]


def test_known_answer_counts_behind_the_verdict(designs):
    f = L.finders(designs)
    assert set(f.loc[f["injected"], "key"]) == INJECTION_FINDERS
    assert set(f.loc[f["positives_kind"] == "real lenses", "key"]) == REAL_LENS_FINDERS
    raw = pd.read_csv(L.default_path(), dtype=str, keep_default_na=False).set_index("key")
    hosts = raw.loc[sorted(INJECTION_FINDERS), "same_hosts_in_both_classes"].str.lower()
    unknown = int(hosts.str.contains("not stated").sum())
    v = L.chapter_values(designs)
    assert v["n_inj"] == len(INJECTION_FINDERS) == 8
    assert (v["n_inj_host_disjoint"], v["n_inj_host_same"], v["n_inj_host_unknown"]) == (0, 0, unknown) == (0, 0, 8)
    assert v["n_inj_host_stated"] == 0
    assert v["n_real"] == 5 and v["n_real_staged"] == 1
    assert v["verdict_q7_text"].startswith("Of the 8 lens finders in the table whose positives are arcs injected")
    assert "0 state that the galaxies hosting the injected arcs are kept apart" in v["verdict_q7_text"]
    assert v["verdict_q7_text"].endswith("and 8 do not say.")
    assert v["verdict_q7"].startswith("Not known from the table")
    assert v["verdict_real"].startswith("5 lens finders train on real lenses (")
    assert "unpaired by construction" in v["verdict_real"]
    for key in INJECTION_FINDERS:
        assert v[f"cite_{key}"] in v["cites_inj"]


def test_verdict_wording_follows_the_counts(designs):
    f = L.finders(designs).copy()
    inj = f.index[f["injected"]]
    one = f.assign(host_relation=f["host_relation"].where(f.index != inj[0], "disjoint (stated)"))
    v = L.injection_precedent(one)
    assert v["n_inj_host_disjoint"] == 1 and v["verdict_q7"].startswith("Yes, as far as stated: unpaired in 1 of 8")
    assert "1 states that the galaxies hosting" in v["verdict_q7_text"] and "7 do not say" in v["verdict_q7_text"]
    both = one.assign(host_relation=one["host_relation"].where(one.index != inj[1], "same galaxies"))
    assert L.injection_precedent(both)["verdict_q7"].startswith("Both designs")
    none = f[~f["injected"]]
    assert L.injection_precedent(none)["verdict_q7"] == "No precedent in the table"


def test_survey_family_rules():
    assert L.survey_family("DESI Legacy Imaging Surveys DR9") == "DESI Legacy Surveys"
    assert L.survey_family("DES Y6") == "DES / DELVE"
    assert L.survey_family("DESI spectroscopy") != "DES / DELVE"
    assert L.survey_family("KiDS DR4") == "KiDS / VST"
    assert L.survey_family("") == "other / not stated"


def test_scope_and_provenance(designs):
    assert row(designs, "schuldt2021_holismokesIV")["row_kind"] == "modelling network"
    assert row(designs, "joseph2014_pca")["row_kind"] == "non-CNN method"
    assert row(designs, "geirhos2020_shortcuts")["row_kind"] == "not a finder (code, perspective)"
    assert row(designs, "huang2021_ls_dr8")["row_kind"] == L.LENS_FINDER
    # arXiv ID verified only where verified_fields says so
    assert not row(designs, "huang2020_decals")["arxiv_verified"]  # "unverified: arxiv (taken from URL slug)"
    assert not row(designs, "canameras2021_holismokesVI")["arxiv_verified"]
    assert row(designs, "huang2021_ls_dr8")["arxiv_verified"]
    assert row(designs, "more2024_comparison")["arxiv_verified"]  # "verified: all fields filled"
    assert "[arXiv ID unverified]" in row(designs, "huang2020_decals")["citation"]
    assert row(designs, "huang2021_ls_dr8")["citation"] == "Huang et al. 2021 [arXiv:2005.04730]"


def test_citations_disambiguate_and_do_not_invent(designs):
    cites = designs.set_index("key")["cite"]
    assert cites["petrillo2019a_kids_testing"] == "Petrillo et al. 2019a"
    assert cites["petrillo2019b_links"] == "Petrillo et al. 2019b"
    assert cites["rojas_sim_toolbox"] == "Rojas (code)"
    # rows without authors: author-year style, identified by journal reference or verified arXiv ID, never by key
    assert cites["nagam2025_fp_reduction"] == "Anon. 2025 (MNRAS 538, 1081)"
    assert cites["des_comparison_2025"] == "Anon. 2025 (arXiv:2510.23782)"
    assert row(designs, "des_comparison_2025")["citation"] == "Anon. 2025 (arXiv:2510.23782)"
    assert designs["cite"].is_unique
    for key, cite in cites.items():
        assert key not in cite and "unverified" not in cite, (key, cite)


def test_citation_lists_name_each_paper_once(designs):
    v = L.chapter_values(designs)
    for k, text in v.items():
        if k.startswith("cites_") and text != "none":
            items = text.split("; ")
            assert len(items) == len(set(items)), (k, text)
    # the sim-to-real gap list joins two themes that share a paper; each paper once
    assert v["cites_theme_gap"].count(v["cite_metcalf2019_challenge"]) == 1


# ---------------------------------------------------------------------------- sim-to-real numbers


def test_sim_to_real_drops_only_where_both_numbers_given(designs):
    d = L.sim_to_real_drops(designs)
    assert set(d["key"]) == {"jacobs2017_cfhtls"}
    got = d.set_index("metric")
    assert tuple(got.loc["purity", ["sim_lo", "sim_hi", "real_lo", "real_hi", "drop_lo", "drop_hi"]]) == (94, 100, 15, 15, 79, 85)
    assert tuple(got.loc["completeness", ["real_lo", "real_hi", "drop_lo", "drop_hi"]]) == (21, 28, 66, 79)


def test_sim_to_real_parser_is_conservative():
    frame = pd.DataFrame({"key": ["a", "b", "c", "d"], "metric": [
        "Simulated test set: AUROC 0.99. Real test set: AUROC 0.80",
        "Simulated test set: AUROC 0.99",  # no real number
        "Single models: test AUROC >97.3%, yet many spurious picks on real data",  # label names neither
        "Sim test: purity 90%. Real search: completeness 20%, FPR 1 in 671",  # no common metric
    ]})
    d = L.sim_to_real_drops(frame)
    assert list(d["key"]) == ["a"]
    assert d.iloc[0]["unit"] == "fraction" and d.iloc[0]["drop_lo"] == pytest.approx(0.19)


# ---------------------------------------------------------------------------- the chapter


def _chapter():
    return nbformat.read(CHAPTER, as_version=4)


def test_chapter_shape():
    nb = _chapter()
    assert nb.metadata["kernelspec"] == {"name": "python3", "display_name": "Python 3", "language": "python"}
    assert nb.cells[0].cell_type == "markdown" and nb.cells[0].source.startswith("# What the literature does (Q7)")
    params = [c for c in nb.cells if "parameters" in c.metadata.get("tags", [])]
    assert len(params) == 1
    ns = {}
    exec(params[0].source, ns)
    assert not [k for k in ns if not k.startswith("__")]  # reads only the packaged table: no parameters at all
    assert not any(c.cell_type == "code" and (c.outputs or c.execution_count) for c in nb.cells)


def test_chapter_cites_only_the_data_and_glues_every_key(designs):
    nb = _chapter()
    md = "\n".join(c.source for c in nb.cells if c.cell_type == "markdown")
    code = "\n".join(c.source for c in nb.cells if c.cell_type == "code")
    values = L.chapter_values(designs)
    literal = set(re.findall(r'glue(?:_figure|_table)?\(\s*"([^"]+)"', code))
    text_keys = set(re.findall(r"\{glue:(?:text|md)\}`([^`:]+)", md))
    figure_keys = set(re.findall(r"```\{glue:figure\}\s+(\S+)", md))
    assert text_keys and figure_keys
    assert text_keys <= set(values) | literal, text_keys - set(values) - literal
    assert figure_keys <= literal, figure_keys - literal
    data_keys = set(designs["key"])
    cited = {k[len("cite_"):] for k in text_keys if k.startswith("cite_")}
    assert cited and cited <= data_keys, cited - data_keys
    # every arXiv-like ID written anywhere in the chapter's source is one the table holds
    ids = set(ARXIV_ANYWHERE.findall(md + "\n" + code))
    assert ids <= set(designs["arxiv_id"]), ids - set(designs["arxiv_id"])


def test_chapter_prose_types_no_numbers():
    """Numbers in prose must come from glued values: outside glue roles and directive lines, the
    markdown holds no digits except the question label Q7."""
    for cell in _chapter().cells:
        if cell.cell_type != "markdown":
            continue
        text = re.sub(r"\{glue:(?:text|md)\}`[^`]*`", "", cell.source)
        text = re.sub(r"^```\{glue:figure\}.*$|^:name:.*$", "", text, flags=re.M)
        text = re.sub(r"\bQ\d\b", "", text)
        assert not re.search(r"\d", text), re.findall(r".{0,30}\d.{0,30}", text)


def test_design_figure_is_labelled(designs):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig = L.design_figure(designs)
    try:
        axes = fig.axes
        assert len(axes) == 3 and all(ax.get_ylabel() for ax in axes) and axes[-1].get_xlabel() == "publication year"
        assert fig.legends
    finally:
        plt.close(fig)


def test_chapter_verdict_is_generated():
    """The Q7 answer's verdict and the real-lens note are glued sentences, not prose."""
    md = "\n".join(c.source for c in _chapter().cells if c.cell_type == "markdown")
    answer = md[md.index("## Answer to Q7"):]
    for key in ("verdict_q7", "verdict_q7_text", "verdict_real"):
        assert f"{{glue:text}}`{key}`" in answer


def test_table_captions_say_table():
    md = "\n".join(c.source for c in _chapter().cells if c.cell_type == "markdown")
    for name, caption in re.findall(r"```\{glue:figure\} (tbl_\w+)\n:name: [^\n]*\n\n([^\n]*)", md):
        assert caption.startswith("Table:"), name


def test_tables_have_no_nan_and_wrap(designs):
    f = L.finders(designs)
    for table in (L.design_table(f), L.injection_table(f), L.closeness_table(f), L.context_table(designs),
                  L.design_counts(f)):
        md = L.styled(table)._repr_markdown_()  # a Markdown table: cells wrap in the page
        assert not re.search(r"\|\s*(nan|None)\s*\|", md)
        assert len(L.styled(table).frame.columns) <= 7


def _fake_chapter(tmp_path, params_src):
    import nbformat as nbf
    nb = nbf.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nb.cells = [nbf.v4.new_markdown_cell("# A chapter"), nbf.v4.new_code_cell(params_src, metadata={"tags": ["parameters"]})]
    path = tmp_path / "ch.ipynb"
    nbf.write(nb, path)
    return path


@pytest.mark.parametrize("params_src, says_simulator", [
    ("seed = 42", False),                               # like this chapter: reads no images
    ('seed = 42\ndata = ""\npreset = "request"', True),  # a chapter that runs the simulator
])
def test_run_header_names_the_simulator_only_where_used(tmp_path, params_src, says_simulator):
    from lensnb import build
    path = _fake_chapter(tmp_path, params_src)
    build._postprocess(path, path, "default", {"seed": 42}, {}, "k")
    header = [c for c in nbformat.read(path, as_version=4).cells if "run-header" in c.metadata.get("tags", [])]
    assert len(header) == 1 and "**Run:** profile `default` · seed `42`" in header[0].source
    assert ("embedded simulator" in header[0].source) == says_simulator


def test_parameters_box_lists_every_effective_parameter_with_its_origin(tmp_path):
    from lensnb import build
    path = _fake_chapter(tmp_path, 'seed = 42\nn_hosts = 150  # hosts\nepochs = 3')
    build._postprocess(path, path, "default", {"seed": 7, "epochs": 5}, {"epochs": 5}, "k")
    text = [c for c in nbformat.read(path, as_version=4).cells if "run-header" in c.metadata.get("tags", [])][0].source
    assert "- `seed` = `7` *(profile)*" in text
    assert "- `n_hosts` = `150` *(default)*" in text       # not set by the profile: the notebook's own value
    assert "- `epochs` = `5` *(override)*" in text
    assert text.index("- `seed`") < text.index("- `n_hosts`") < text.index("- `epochs`")  # declaration order


def test_public_sets_come_from_the_table_rows_that_say_so():
    from lensnb import literature

    d = literature.annotate(literature.load_designs())
    t = literature.public_sets(d)
    real = t[t.kind.str.startswith("real lens")]
    assert len(real) == int(((d.positives_kind == "real lenses") & d.decam).sum()) > 0
    fp = t[t.kind.str.startswith("released")]
    assert len(fp) == int((d.hard_negatives_kind == "released for future training").sum())
    assert set(t["source"]) <= set(d["citation"])  # nothing but the table's own citations
