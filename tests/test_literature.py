"""The literature table (Q7): data integrity, loader errors, classification rules, and that the
chapter only cites what the table holds and types no numbers of its own."""
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
    return L.classify(L.load_designs())


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
    if not SHARED_CSV.exists():
        pytest.skip("shared literature folder not present")
    assert L.default_path().read_bytes() == SHARED_CSV.read_bytes()


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


# ---------------------------------------------------------------------------- classification rules


@pytest.mark.parametrize("key, pos, neg, host", [
    ("huang2020_decals", "real lenses", "real survey images", "disjoint by construction"),
    ("stein2022_ssl_dr9", "real lenses", "not stated", "disjoint by construction"),
    ("canameras2020_holismokesII", "injected arcs on real galaxies", "real survey images", "not stated (unknown)"),
    ("rojas2022_des", "injected arcs on real galaxies", "not stated", "not stated (unknown)"),
    ("andika2023_lensed_quasars", "injected arcs on real galaxies", "not stated", "not stated (unknown)"),
    ("metcalf2019_challenge", "fully simulated", "simulated non-lenses", "same population, unpaired labels"),
    ("wilde2022_interpretability", "fully simulated", "simulated non-lenses", "not stated (unknown)"),
    ("jacobs2017_cfhtls", "simulated (host origin not stated)", "not stated", "not stated (unknown)"),
    ("jacobs2019_des", "simulated (host origin not stated)", "simulated and real", "not stated (unknown)"),
    ("he2020_kids_dr3", "mixed (several training sets)", "not stated", "not stated (unknown)"),
    ("grespan2024_teglie", "mixed (several training sets)", "simulated and real", "disjoint by construction"),
    ("petrillo2017_kids", "not stated", "not stated", "not stated (unknown)"),
    ("gonzalez2025_des_vit", "not stated", "look-alike classes (origin not stated)", "not stated (unknown)"),
    ("holloway2024_bayesian", "n/a", "n/a", "n/a"),
])
def test_classification_of_rows(designs, key, pos, neg, host):
    r = row(designs, key)
    assert (r["pos_cat"], r["neg_cat"], r["host_cat"]) == (pos, neg, host)


def test_classification_rules_on_text():
    assert L.classify_positives("") == "not stated"
    assert L.classify_positives("Realistic gri mocks (network from X)") == "simulated (host origin not stated)"  # "realistic" is not "real"
    assert L.classify_positives("Simulated lenses", survey="Simulated Euclid-like VIS") == "fully simulated"
    assert L.classify_hosts("") == "not stated (unknown)"
    assert L.classify_hosts("not stated in sources read") == "not stated (unknown)"
    assert L.classify_hosts("yes - same LRG with and without arc") == "paired (same host in both classes)"
    assert L.classify_hard_negatives("") == "not stated"
    assert L.classify_hard_negatives("Explicit false-positive classes") == "in training"
    assert L.survey_family("DESI Legacy Imaging Surveys DR9") == "DESI Legacy Surveys"
    assert L.survey_family("DES Y6") == "DES / DELVE"
    assert L.survey_family("DESI spectroscopy") != "DES / DELVE"
    assert L.survey_family("KiDS DR4") == "KiDS / VST"


def test_scope_and_provenance(designs):
    assert row(designs, "schuldt2021_holismokesIV")["scope"] == "modelling network"
    assert row(designs, "joseph2014_pca")["scope"] == "non-CNN method"
    assert row(designs, "geirhos2020_shortcuts")["scope"] == "not a finder (code, perspective)"
    assert row(designs, "huang2021_ls_dr8")["scope"] == L.LENS_FINDER
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
    assert cites["des_comparison_2025"] == "des_comparison_2025 (authors unverified)"
    assert designs["cite"].is_unique


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
    assert ns["seed"] == 42 and ns["data"] == ""
    assert not any(c.cell_type == "code" and (c.outputs or c.execution_count) for c in nb.cells)


def test_chapter_cites_only_the_data_and_glues_every_key(designs):
    nb = _chapter()
    md = "\n".join(c.source for c in nb.cells if c.cell_type == "markdown")
    code = "\n".join(c.source for c in nb.cells if c.cell_type == "code")
    values = L.chapter_values(designs)
    literal = set(re.findall(r'glue\(\s*"([^"]+)"', code))
    text_keys = set(re.findall(r"\{glue:text\}`([^`:]+)", md))
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
        text = re.sub(r"\{glue:text\}`[^`]*`", "", cell.source)
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
