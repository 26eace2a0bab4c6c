"""Every bad input gets one clear error naming the file, row and column; nothing half-written."""
import re
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from lensnb import dataset, gates, pools
from tests import corpus


@pytest.mark.parametrize("case", corpus.CASES)
def test_validate_refuses_each_bad_input(tmp_path, case):
    path, pattern = corpus.build(case, tmp_path)
    with pytest.raises(ValueError) as err:
        dataset.validate(path)
    msg = str(err.value)
    assert "\n" not in msg, msg
    assert path in msg, msg
    assert re.search(pattern, msg), msg


@pytest.mark.parametrize("case", ["npz_missing_band", "wrong_shape", "nan_pixels", "pickled_object"])
def test_loading_the_bad_row_fails_the_same_way(tmp_path, case):
    path, pattern = corpus.build(case, tmp_path)
    store = dataset.StampStore(path)
    store.images([0, 1], "stamp_npz")  # good rows load
    with pytest.raises(ValueError, match=pattern):
        store.images(np.arange(len(store)), "stamp_npz")
        store.images(np.arange(len(store)), "ctrl_stamp_npz")


@pytest.mark.parametrize("case", ["pickled_object", "pickle_blob"])
def test_pickled_object_is_never_unpickled(tmp_path, monkeypatch, case):
    path, _ = corpus.build(case, tmp_path)
    called = []
    import pickle

    monkeypatch.setattr(pickle, "loads", lambda *a, **k: called.append(1))
    monkeypatch.setattr(pickle, "load", lambda *a, **k: called.append(1))
    with pytest.raises(ValueError):
        dataset.validate(path)
    assert not called


def test_good_manifest_passes_and_directories_work(tmp_path):
    corpus.write(corpus.good_frame(6, 2, seed=1), tmp_path / "a.parquet")
    corpus.write(corpus.good_frame(5, 3, seed=2), tmp_path / "b.parquet")
    assert dataset.validate(tmp_path) == 27
    store = dataset.StampStore(tmp_path)
    x = store.images([26, 0, 13], "stamp_npz")
    assert x.shape == (3, 3, 64, 64) and np.isfinite(x).all()


def test_user_split_with_a_host_in_both_pools(tmp_path):
    df = corpus.good_frame(4, 3)
    df["pool"] = np.repeat(["P", "N", "P", "N"], 3)
    pools.validate_user_pools(df)
    df.loc[4, "pool"] = "P"  # host 1 now has rows in both pools
    with pytest.raises(ValueError, match=r"in both pools: row 4 \(pool=P\) and row 3 \(pool=N\)"):
        pools.validate_user_pools(df)


def test_gate_given_one_class():
    x = np.zeros((20, 3, 64, 64), np.float32)
    with pytest.raises(ValueError, match="only class"):
        gates.core_lr_gate(x, np.ones(20), np.repeat(np.arange(10), 2))


def test_build_refuses_bad_data_before_executing(tmp_path):
    path, pattern = corpus.build("missing_column", tmp_path)
    proc = subprocess.run([sys.executable, "-m", "lensnb.build", "book", "--profile", "smoke", "--data", path],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 1
    assert re.search(pattern, proc.stderr) and "executing" not in proc.stdout


def test_plain_npz_fast_path_reads_what_np_load_reads_and_leaves_the_rest_to_it():
    """``encode_npz``'s layout is read directly (the same pixels as ``np.load``); a compressed npz, another dtype,
    a damaged array (CRC mismatch) or a non-finite pixel goes through ``np.load`` and its checks."""
    import io

    from lensnb import dataset as ds

    rng = np.random.default_rng(0)
    x = rng.normal(size=(3, 64, 64)).astype(np.float32)
    blob = ds.encode_npz(x)
    assert np.array_equal(ds._decode_plain_npz(blob), x)
    assert np.array_equal(ds.decode_npz(blob, "f: row 0"), x)
    buf = io.BytesIO()
    np.savez_compressed(buf, image_g=x[0], image_r=x[1], image_z=x[2])
    assert ds._decode_plain_npz(buf.getvalue()) is None and np.array_equal(ds.decode_npz(buf.getvalue()), x)
    buf = io.BytesIO()
    np.savez(buf, image_g=x[0].astype(np.float64), image_r=x[1].astype(np.float64), image_z=x[2].astype(np.float64))
    assert ds._decode_plain_npz(buf.getvalue()) is None and np.array_equal(ds.decode_npz(buf.getvalue()), x)
    bad = bytearray(blob)
    bad[300] ^= 1  # a flipped bit inside image_g's pixels
    assert ds._decode_plain_npz(bytes(bad)) is None
    with pytest.raises(ValueError, match="f: row 3: unreadable npz"):
        ds.decode_npz(bytes(bad), "f: row 3")
    y = x.copy()
    y[1, 5, 5] = np.nan
    assert ds._decode_plain_npz(ds.encode_npz(y)) is None
    with pytest.raises(ValueError, match="image_r has 1 NaN/inf pixel"):
        ds.decode_npz(ds.encode_npz(y), "f")
