"""Protocol traps on planted data: duplicated negatives leak through row-level folds, not host-grouped ones."""
import numpy as np
import pandas as pd
import pytest

from lensnb import protocols


def _manifest(n_hosts=24, per_host=6, seed=0, unique=False):
    """Unpaired-style table: positives (unique stamps, no class signal at all) from half the hosts, negatives the
    host-only image of rows of the other half (one image per host, repeated in every row)."""
    rng = np.random.default_rng(seed)
    host_img = rng.normal(0, 1, (n_hosts, 3, 64, 64)).astype(np.float32)
    rows = np.arange(n_hosts * per_host)
    host = rows // per_host
    stamps = host_img[host] + rng.normal(0, 1, (len(rows), 3, 64, 64)).astype(np.float32)
    ctrls = host_img[host].copy()
    if unique:  # every row its own galaxy (no host shared between rows): no copies to read
        stamps = rng.normal(0, 1.4, stamps.shape).astype(np.float32)
        ctrls = rng.normal(0, 1.4, ctrls.shape).astype(np.float32)
    meta = pd.DataFrame({"psf_fwhm_used_r": rng.uniform(1.0, 1.6, n_hosts)[host],
                         "noise_sigma_r": rng.uniform(0.01, 0.02, n_hosts)[host]})
    pos = host < n_hosts // 2
    table = pd.concat([pd.DataFrame({"row": rows[pos], "image": "stamp", "label": 1, "host": host[pos]}),
                       pd.DataFrame({"row": rows[~pos], "image": "ctrl", "label": 0, "host": host[~pos]})],
                      ignore_index=True)
    return table, stamps, ctrls, meta


def test_duplication_counts_copies_and_the_kish_effective_count():
    d = protocols.duplication(["a"] * 4 + ["b"] * 4)
    assert d["negative rows"] == 8 and d["distinct negative images"] == 2 and d["effective negatives (Kish)"] == 2
    d = protocols.duplication(list("abcdefgh"))
    assert d["distinct negative images"] == 8 and d["effective negatives (Kish)"] == 8
    table, stamps, ctrls, _ = _manifest()
    ids = protocols.image_ids(ctrls[table.loc[table.label == 0, "row"]])
    assert len(set(ids)) == 12  # one image per negative host, whatever its rows


def test_resampling_per_cell_matches_the_positives_and_duplicates_rows():
    table, _, _, meta = _manifest()
    rs = protocols.resample_per_cell(table, meta, seed=1)
    cp = protocols.cell_of(meta, rs.loc[rs.label == 1, "row"])
    cn = protocols.cell_of(meta, rs.loc[rs.label == 0, "row"])
    for c in set(cn):
        assert (cn == c).sum() == (cp == c).sum()
    assert rs.loc[rs.label == 0, "row"].duplicated().any()
    with pytest.raises(ValueError, match="noise_sigma_r"):
        protocols.cell_of(meta.drop(columns="noise_sigma_r"), [0])


def test_plain_k_fold_reads_the_copies_and_host_grouped_folds_do_not():
    """No class signal at all: host-grouped folds read chance, row-level folds read the duplicated negatives."""
    table, stamps, ctrls, meta = _manifest()
    df = protocols.protocol_gates({"unpaired": table}, stamps, ctrls, meta, reps=2, seed=0, n_boot=100,
                                  progress=False)
    s = protocols.protocol_summary(df).set_index("protocol")
    grouped, plain = s.loc["host-grouped folds", "auroc"], s.loc["plain k-fold (rows)", "auroc"]
    assert abs(grouped - 0.5) < 0.15 and plain > 0.8 and plain - grouped > 0.25
    assert s.loc["host-grouped folds", "distinct"] == 12 and s.loc["host-grouped folds", "negative_rows"] == 72
    assert "reads" in protocols.protocol_text(protocols.protocol_summary(df), designs=("unpaired",))
    # the same table with every row its own galaxy: nothing to leak, and row-level folds read what host-grouped
    # ones do
    table, stamps, ctrls, meta = _manifest(unique=True)
    df = protocols.protocol_gates({"unpaired": table}, stamps, ctrls, meta, reps=2, seed=0, n_boot=100,
                                  progress=False)
    s = protocols.protocol_summary(df).set_index("protocol")
    assert s.loc["host-grouped folds", "distinct"] == 72
    assert abs(s.loc["plain k-fold (rows)", "auroc"] - s.loc["host-grouped folds", "auroc"]) < 0.1


def test_the_share_of_rows_with_a_copy_in_another_fold():
    assert protocols.plain_kfold_leaks(np.array([1, 1, 1])) == 0.0
    assert protocols.plain_kfold_leaks(np.array([2]), n_folds=5) == pytest.approx(0.8)
    assert protocols.plain_kfold_leaks(np.array([100]), n_folds=5) == pytest.approx(1.0)
