"""The gate battery as a command (python -m lensnb.monitor): it fires on a planted shortcut, stays quiet on a
clean training set, streams within a row cap, and refuses bad input in one line."""
import json

import numpy as np
import pytest

from lensnb import monitor
from tests import corpus


@pytest.fixture(scope="module")
def manifests(tmp_path_factory):
    d = tmp_path_factory.mktemp("monitor")
    planted = d / "planted"
    clean = d / "clean"
    planted.mkdir()
    clean.mkdir()
    # planted: every arc has a counter-image 3 px from the centre (the core shortcut); clean: only an outer image
    corpus.write(corpus.good_frame(n_hosts=60, per_host=3, seed=7, counter=1.0, theta_px=6.0), planted / "a.parquet")
    corpus.write(corpus.good_frame(n_hosts=60, per_host=3, seed=7, counter=0.0, theta_px=9.0), clean / "a.parquet")
    return planted, clean


def test_planted_shortcut_fires_and_exits_nonzero(manifests, tmp_path, capsys):
    planted, _ = manifests
    out = tmp_path / "v.json"
    rc = monitor.main([str(planted), "--json", str(out)])
    text = capsys.readouterr()
    assert rc == 1
    assert "core LR" in text.out and "FIRES" in text.out and "FIRED: core LR" in text.err
    j = json.loads(out.read_text())
    core = next(g for g in j["gates"] if g["gate"] == "core LR")
    assert core["verdict"] == "shortcut" and core["fires"] and core["value"] > 0.9
    assert j["design"] == "paired"


def test_clean_training_set_exits_zero(manifests, capsys):
    _, clean = manifests
    rc = monitor.main([str(clean)])
    text = capsys.readouterr().out
    assert rc == 0, text
    assert "FIRES" not in text
    assert "arc detected" in text  # the arc is still there: the radial-profile check sees it


def test_row_cap_keeps_whole_hosts(manifests):
    planted, _ = manifests
    from lensnb.dataset import StampStore

    meta = StampStore(planted).meta
    t = monitor.training_rows(meta, "paired", max_rows=60, seed=0)
    assert len(t) <= 60 and t.groupby("host").size().eq(6).all()  # 3 rows x (stamp + control) per host
    t2 = monitor.training_rows(meta, "paired", max_rows=60, seed=0)
    assert t.equals(t2)


def test_unpaired_design_uses_the_pool_column_and_the_conditions_gate(tmp_path, capsys):
    df = corpus.good_frame(n_hosts=60, per_host=2, seed=3, counter=0.0, theta_px=9.0)
    keys = df["ra"].round(6).astype(str)
    pools = {k: ("P" if i % 2 else "N") for i, k in enumerate(keys.unique())}
    df["pool"] = keys.map(pools)
    # a planted condition shortcut: the positives' pool was observed in worse seeing
    df["psf_fwhm_used_g"] = np.where(df["pool"] == "P", 1.8, 1.2) + np.random.default_rng(0).normal(0, 0.05, len(df))
    p = corpus.write(df, tmp_path / "u.parquet")
    rc = monitor.main([p])
    out = capsys.readouterr().out
    assert "unpaired design" in out
    assert rc == 1 and "survey conditions" in out
    res = monitor.battery(p, n_boot=50)
    assert res.set_index("gate").loc["survey conditions", "verdict"] == "shortcut"


def test_bad_input_is_one_line_and_exit_2(tmp_path, capsys):
    rc = monitor.main([str(tmp_path / "missing.parquet")])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and err.startswith("lensnb.monitor:") and "\n" not in err
    bad = tmp_path / "ckpt.pt"
    bad.write_bytes(b"not a checkpoint")
    rc = monitor.main([str(tmp_path / "missing.parquet"), "--model", str(bad)])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and "ckpt.pt: not a readable weights-only checkpoint" in err


def test_model_level_reliance_on_a_checkpoint(manifests, tmp_path, capsys):
    import torch

    from lensnb.dataset import StampStore
    from lensnb.train import train

    planted, _ = manifests
    store = StampStore(planted)
    rows = np.arange(len(store))
    x = np.concatenate([store.images(rows, "stamp_npz"), store.images(rows, "ctrl_stamp_npz")])
    y = np.r_[np.ones(len(rows)), np.zeros(len(rows))]
    r = train(x, y, x, y, seed=0, epochs=2, device="cpu", progress=False)
    ck = tmp_path / "m.pt"
    torch.save({"state": r.model.state_dict(), "median": torch.from_numpy(r.normaliser.median),
                "scale": torch.from_numpy(r.normaliser.scale), "residual": False}, ck)
    net, norm = monitor.load_checkpoint(ck)
    assert net.stem[0].in_channels == 3
    res = monitor.battery(planted, model=(net, norm), n_boot=50)
    m = res.set_index("gate").loc["model core reliance"]
    assert m["kind"] == "model" and np.isfinite(m["value"])
    assert m["verdict"] in ("relies", "does not rely", "undecidable")
    assert bool(m["fires"]) == (m["verdict"] == "relies")


def test_python_dash_m_lensnb_gates_is_the_monitor(manifests):
    import subprocess
    import sys

    planted, clean = manifests
    bad = subprocess.run([sys.executable, "-m", "lensnb.gates", str(planted), "--max-rows", "240"], capture_output=True,
                         text=True, timeout=600)
    assert bad.returncode == 1, bad.stdout + bad.stderr
    assert "core LR" in bad.stdout and "FIRED" in bad.stderr
    ok = subprocess.run([sys.executable, "-m", "lensnb.gates", str(clean), "--max-rows", "240"], capture_output=True,
                        text=True, timeout=600)
    assert ok.returncode == 0, ok.stdout + ok.stderr
