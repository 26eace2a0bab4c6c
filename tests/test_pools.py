"""Pool designs and splits: disjointness and integrity as properties over random host tables."""
import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings, strategies as st

from lensnb import pools


def _meta(n_hosts, per_host, hosts_per_brick, seed):
    rng = np.random.default_rng(seed)
    ra = rng.uniform(0, 360, n_hosts)
    dec = rng.uniform(-20, 30, n_hosts)
    brick = [f"b{i // hosts_per_brick}" for i in range(n_hosts)]
    rows = np.repeat(np.arange(n_hosts), per_host)
    return pd.DataFrame({"ra": ra[rows], "dec": dec[rows], "brickname": np.array(brick)[rows],
                         "x": rng.normal(size=len(rows))})


@settings(max_examples=30, deadline=None)
@given(n_hosts=st.integers(20, 80), per_host=st.integers(2, 6), hpb=st.integers(1, 5), seed=st.integers(0, 10**6),
       by=st.sampled_from(["host", "brick"]))
def test_splits_are_disjoint_by_host_and_brick(n_hosts, per_host, hpb, seed, by):
    meta = _meta(n_hosts, per_host, hpb, seed)
    want = {"train": n_hosts // 2, "val": n_hosts // 5, "test": n_hosts // 10}
    try:
        sp = pools.split_hosts(meta, want, seed, by=by)
    except ValueError as e:
        assert by == "brick" and "ran out of bricks" in str(e)
        return
    allh = np.concatenate(list(sp.values()))
    assert len(allh) == len(set(allh))  # no host in two splits
    keys = pools.host_key(meta)
    if by == "host":
        assert {s: len(v) for s, v in sp.items()} == want
    else:
        brick_of = dict(zip(keys, meta["brickname"]))
        bricks = {s: {brick_of[h] for h in v} for s, v in sp.items()}
        assert not (bricks["train"] & bricks["val"]) and not (bricks["train"] & bricks["test"])
        assert not (bricks["val"] & bricks["test"])
        for s, v in sp.items():
            assert want[s] <= len(v) < want[s] + hpb + 1


@settings(max_examples=30, deadline=None)
@given(n_hosts=st.integers(10, 60), per_host=st.integers(3, 8), seed=st.integers(0, 10**6),
       design=st.sampled_from(["unpaired", "matched", "paired", "hybrid"]))
def test_designs_respect_their_host_rules(n_hosts, per_host, seed, design):
    meta = _meta(n_hosts, per_host, 3, seed)
    hosts = pools.host_key(meta).unique()
    props = pd.DataFrame({"x": np.random.default_rng(seed).normal(size=len(hosts))}, index=hosts)
    n = (n_hosts // 2) * per_host // 2
    t = pools.build_design(design, meta, hosts, n, n, seed, host_props=props)
    pos, neg = set(t.loc[t.label == 1, "host"]), set(t.loc[t.label == 0, "host"])
    assert (t.label == 1).sum() == n and (t.label == 0).sum() == n
    assert ((t.image == "stamp") == (t.label == 1)).all()
    assert set(t["host"]) <= set(hosts)
    assert not t.duplicated(["row", "image"]).any()
    if design in ("unpaired", "matched"):
        assert not (pos & neg)
    if design == "paired":
        assert pos == neg


def test_shared_host_is_refused():
    t = pd.DataFrame({"row": [0, 1], "image": ["stamp", "ctrl"], "label": [1, 0], "host": ["h1", "h1"]})
    with pytest.raises(ValueError, match="both pools"):
        pools.check_disjoint_pools(t)
    with pytest.raises(ValueError, match="both split"):
        pools.check_split_disjoint({"train": t.iloc[:1], "test": t.iloc[1:]})


def test_matching_balances_a_planted_imbalance():
    rng = np.random.default_rng(0)
    props = pd.DataFrame({"a": rng.normal(size=400), "b": rng.normal(size=400)}, index=[f"h{i}" for i in range(400)])
    P, N = pools.match_pools(props, rng)
    assert not set(P) & set(N) and len(P) == len(N) == 200
    smd = (props.loc[P].mean() - props.loc[N].mean()) / props.std()
    assert smd.abs().max() < 0.05  # random halves of 200 would typically give ~0.1


def test_too_many_images_requested():
    meta = _meta(10, 2, 2, 0)
    with pytest.raises(ValueError, match="only"):
        pools.build_design("unpaired", meta, pools.host_key(meta).unique(), 50, 50, 0)
