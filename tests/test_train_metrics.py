"""Training reproducibility and the host-clustered bootstrap's coverage."""
import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from lensnb.metrics import cluster_bootstrap_ci
from lensnb.train import Normaliser, augment, predict, train


def _toy(n, seed):
    rng = np.random.default_rng(seed)
    x = rng.normal(0, 1, (n, 3, 64, 64)).astype(np.float32)
    y = rng.integers(0, 2, n)
    x[y == 1, :, 24:40, 24:40] += 1.5
    return x, y


def test_training_is_reproducible_on_cpu():
    xt, yt = _toy(160, 0)
    xv, yv = _toy(80, 1)
    a = train(xt, yt, xv, yv, seed=3, epochs=3, device="cpu", progress=False)
    b = train(xt, yt, xv, yv, seed=3, epochs=3, device="cpu", progress=False)
    assert a.history.equals(b.history)
    np.testing.assert_array_equal(predict(a.model, a.normaliser, xv, device="cpu"),
                                  predict(b.model, b.normaliser, xv, device="cpu"))
    assert a.history["val_auroc"].max() > 0.7  # it learns the planted signal


def test_augment_is_a_symmetry_of_the_square():
    import torch

    x = torch.arange(2 * 3 * 4 * 4, dtype=torch.float32).reshape(2, 3, 4, 4)
    y = augment(x, torch.Generator().manual_seed(0))
    for i in range(2):
        cands = [torch.rot90(x[i], k, (1, 2)) for k in range(4)]
        cands += [torch.flip(c, (2,)) for c in cands]
        assert any(torch.equal(y[i], c) for c in cands)


def test_augment_draws_each_symmetry_from_the_generator():
    """Sample i gets symmetry k_i (k = randint(0, 8) from the generator: rotation k mod 4, flipped when
    k >= 4), the same draw on every device; all eight occur."""
    import torch

    x = torch.randn(64, 3, 8, 8)
    k = torch.randint(0, 8, (64,), generator=torch.Generator().manual_seed(5))
    y = augment(x, torch.Generator().manual_seed(5))
    for i in range(64):
        r = torch.rot90(x[i], int(k[i]) % 4, (1, 2))
        assert torch.equal(y[i], torch.flip(r, (2,)) if k[i] >= 4 else r)
    assert len(set(k.tolist())) == 8


def test_cpu_and_gpu_symmetry_paths_give_the_same_images():
    """The CPU path (each symmetry on its own samples) and the GPU path (torch.where over all eight) agree."""
    import torch

    from lensnb.train import _symmetries_indexed, _symmetries_where

    x = torch.randn(40, 3, 8, 8)
    k = torch.randint(0, 8, (40,), generator=torch.Generator().manual_seed(1))
    assert torch.equal(_symmetries_indexed(x, k), _symmetries_where(x, k))
    assert not torch.equal(_symmetries_indexed(x, k), x)


def test_training_throughput_is_logged_when_asked(tmp_path, monkeypatch):
    import json

    log = tmp_path / "train.jsonl"
    monkeypatch.setenv("LENSNB_TRAIN_LOG", str(log))
    monkeypatch.setenv("LENSNB_CHAPTER", "04_training")
    xt, yt = _toy(64, 0)
    res = train(xt, yt, xt[:32], yt[:32], seed=0, epochs=1, device="cpu", progress=False, label="toy")
    (rec,) = [json.loads(line) for line in log.read_text().splitlines()]
    assert rec["chapter"] == "04_training" and rec["label"] == "toy" and rec["device"] == "cpu"
    assert rec["images_per_s"] == res.images_per_s > 0 and rec["n_train"] == 64 and rec["epochs"] == 1


def test_residual_input_removes_symmetric_light():
    sym = np.ones((1, 3, 64, 64), np.float32)
    n = Normaliser.fit(np.random.default_rng(0).normal(size=(4, 3, 64, 64)).astype(np.float32), residual=True)
    assert np.allclose(n(sym), n(np.zeros_like(sym)))


def _clustered(n_hosts, per, rng, effect=0.6, host_sd=1.0):
    g = np.repeat(np.arange(n_hosts), per)
    y = np.tile([0, 1], n_hosts * per // 2)
    s = rng.normal(0, host_sd, n_hosts)[g] + rng.normal(0, 1, len(g)) + effect * y
    return y, s, g


def test_cluster_bootstrap_covers_the_true_auroc_at_about_nominal_rate():
    # true AUROC from a very large sample of the same generating process
    rng = np.random.default_rng(1)
    y, s, _ = _clustered(20000, 2, rng)
    truth = roc_auc_score(y, s)
    hits = 0
    trials = 60
    for t in range(trials):
        y, s, g = _clustered(40, 10, np.random.default_rng(100 + t))
        _, lo, hi = cluster_bootstrap_ci(y, s, g, n_boot=200, seed=t)
        hits += lo <= truth <= hi
    assert 0.83 <= hits / trials <= 1.0  # nominal 0.95; binomial sd ~0.03 at 60 trials, bootstrap a bit narrow


def test_crossing_interpolates_and_refuses_to_extrapolate():
    from lensnb.experiment import crossing

    assert crossing([1, 2, 3], [0.5, 0.7, 0.9], 0.8) == pytest.approx(2.5)
    assert np.isnan(crossing([1, 2, 3], [0.5, 0.6, 0.7], 0.8))  # never reached
    assert np.isnan(crossing([1, 2, 3], [0.85, 0.9, 0.95], 0.8))  # already above at the first point


def test_core_auc_rises_with_source_brightness(tmp_path, monkeypatch):
    """Same hosts and lenses, sources 3 mag brighter vs 3 mag fainter: the arc S/N and the core-LR
    AUROC must both be higher for the bright sources."""
    from lensnb import config
    from lensnb.experiment import core_auc_vs_brightness

    monkeypatch.setattr(config, "PROCESSED_DIR", tmp_path)
    tab = core_auc_vs_brightness("request", [-3.0, 3.0], 16, 3, 5, n_boot=50, progress=False)
    bright, faint = tab.iloc[0], tab.iloc[1]
    assert bright.median_src_mag_r == pytest.approx(faint.median_src_mag_r - 6.0)
    assert bright.median_arc_snr > 10 * faint.median_arc_snr
    assert bright.core_auc > faint.core_auc + 0.2
    assert len(list(tmp_path.glob("*.parquet"))) == 2


def test_weighted_bootstrap_equals_explicit_resampling():
    """The row-weight bootstrap gives the interval of concatenating each drawn host's rows and calling
    roc_auc_score, replicate by replicate (ties, and replicates with one class, included)."""
    from lensnb.metrics import weighted_auroc

    rng = np.random.default_rng(4)
    n = 60
    y = rng.integers(0, 2, n)
    s = np.round(rng.normal(size=n) + y, 1)  # ties
    g = rng.integers(0, 5, n)
    y = np.where(g < 2, 1, np.where(g < 4, 0, y))  # hosts 0-1 positive only, 2-3 negative only: some replicates hold one class
    uniq, inv = np.unique(g, return_inverse=True)
    members = [np.flatnonzero(inv == k) for k in range(len(uniq))]
    draw = np.random.default_rng(9)
    ref, counts = [], []
    for _ in range(300):
        pick = draw.integers(0, len(uniq), len(uniq))
        idx = np.concatenate([members[k] for k in pick])
        ref.append(roc_auc_score(y[idx], s[idx]) if len(np.unique(y[idx])) == 2 else np.nan)
        counts.append(np.bincount(pick, minlength=len(uniq))[inv])
    mine = weighted_auroc(y, s, np.array(counts))
    np.testing.assert_allclose(mine, ref, rtol=1e-12, equal_nan=True)
    assert np.isnan(ref).any() and np.isfinite(ref).any()
    lo_hi = np.nanquantile(ref, [0.025, 0.975])
    assert cluster_bootstrap_ci(y, s, g, n_boot=300, seed=9)[1:] == pytest.approx(tuple(lo_hi), rel=1e-12)


def test_six_channel_input_trains_and_predicts():
    # raw + residual stacks: the network takes the channel count from the data; the signal is only in 4-6
    xt, yt = _toy(160, 0)
    xv, yv = _toy(80, 1)
    rng = np.random.default_rng(2)
    x6t = np.concatenate([rng.normal(0, 1, xt.shape).astype(np.float32), xt], axis=1)
    x6v = np.concatenate([rng.normal(0, 1, xv.shape).astype(np.float32), xv], axis=1)
    r = train(x6t, yt, x6v, yv, seed=3, epochs=3, device="cpu", progress=False)
    assert r.model.stem[0].in_channels == 6 and len(r.normaliser.median) == 6
    assert predict(r.model, r.normaliser, x6v, device="cpu").shape == (80,)
    assert r.history["val_auroc"].max() > 0.7


def test_a_cached_model_is_keyed_by_its_training_inputs(tmp_path, monkeypatch):
    """The same images and labels reuse the cached model whatever else the caller's key says; one changed pixel
    trains a new one."""
    from lensnb import config, results
    from lensnb.experiment import train_cached

    monkeypatch.setattr(config, "PROCESSED_DIR", tmp_path)
    rng = np.random.default_rng(0)
    x = rng.normal(size=(16, 3, 64, 64)).astype(np.float32)
    y = np.r_[np.ones(8), np.zeros(8)].astype(int)
    kw = {"epochs": 1, "patience": 1, "width": 4, "batch": 8}
    a = train_cached(x, y, x[4:12], y[4:12], seed=0, label="m", train_kw=kw, cache_parts={"data": "d"})
    models = sorted(results.cache_dir().glob("model_*.pt"))
    assert len(models) == 1
    b = train_cached(x, y, x[4:12], y[4:12], seed=0, label="m", train_kw=kw, cache_parts={"data": "d"})
    assert sorted(results.cache_dir().glob("model_*.pt")) == models  # loaded, not retrained
    for k, v in a.model.state_dict().items():
        assert np.array_equal(v.numpy(), b.model.state_dict()[k].numpy())
    x2 = x.copy()
    x2[3, 1, 10, 10] += 1.0
    train_cached(x2, y, x2[4:12], y[4:12], seed=0, label="m", train_kw=kw, cache_parts={"data": "d"})
    assert len(list(results.cache_dir().glob("model_*.pt"))) == 2
    assert results.array_digest(x, y) != results.array_digest(x2, y) and results.array_digest(x, y) == results.array_digest(x.copy(), y)


def test_joint_host_bootstrap_equals_resampling_the_rows_of_each_drawn_host():
    """The vectorised joint host bootstrap reads, draw by draw, the AUROCs of concatenating each drawn host's rows
    in every set (both sets resampled with the same hosts), and several statistics and levels from one call equal
    separate calls."""
    from lensnb.metrics import fast_auroc, joint_host_bootstrap, joint_host_intervals

    rng = np.random.default_rng(3)
    n = 90
    y = rng.integers(0, 2, n)
    g = rng.integers(0, 15, n)
    Sa = np.round(rng.normal(size=(2, n)) + y, 1)
    Sb = np.round(rng.normal(size=(2, n)) + 0.5 * y, 1)
    hosts = np.unique(g)
    draw = np.random.default_rng(5)
    ref = []
    for _ in range(200):
        counts = np.bincount(draw.integers(0, len(hosts), len(hosts)), minlength=len(hosts))
        idx = np.concatenate([np.flatnonzero(g == h).repeat(c) for h, c in zip(hosts, counts)])
        if len(np.unique(y[idx])) == 2:
            ref.append(np.mean(fast_auroc(y[idx], Sb[:, idx]) - fast_auroc(y[idx], Sa[:, idx])))
    r = joint_host_bootstrap([(y, Sa, g), (y, Sb, g)], lambda a: a[1] - a[0], n_boot=200, seed=5, level=0.9)
    assert (r.host_low, r.host_high) == pytest.approx(tuple(np.quantile(ref, [0.05, 0.95])), rel=1e-12)
    both = joint_host_intervals([(y, Sa, g), (y, Sb, g)], {"d": (lambda a: a[1] - a[0], (-1, 1)),
                                                             "b": (lambda a: a[1], (0, 1))},
                                n_boot=200, seed=5, levels=(0.95, 0.9))
    assert both[("d", 0.9)].ci_low == r.ci_low and both[("d", 0.9)].ci_high == r.ci_high
    alone = joint_host_bootstrap([(y, Sa, g), (y, Sb, g)], lambda a: a[1], n_boot=200, seed=5, bounds=(0, 1))
    assert (both[("b", 0.95)].ci_low, both[("b", 0.95)].ci_high) == (alone.ci_low, alone.ci_high)
    assert both[("d", 0.95)].ci_low < both[("d", 0.9)].ci_low  # the wider level is wider


def test_training_gives_back_the_callers_deterministic_settings():
    """``train`` switches deterministic mode on (and NaN-filling off) on the CPU, then restores what it found."""
    import torch
    import torch.utils.deterministic as tud

    xt, yt = _toy(64, 0)
    xv, yv = _toy(32, 1)
    for det, fill in ((False, True), (True, False)):
        torch.use_deterministic_algorithms(det)
        tud.fill_uninitialized_memory = fill
        try:
            train(xt, yt, xv, yv, epochs=1, progress=False, device="cpu")
            assert torch.are_deterministic_algorithms_enabled() is det and tud.fill_uninitialized_memory is fill
        finally:
            torch.use_deterministic_algorithms(False)
            tud.fill_uninitialized_memory = True


def test_weights_do_not_depend_on_the_callers_thread_count(monkeypatch):
    """Training and scoring run on ``cpu_threads()`` threads whatever torch was set to, and give the caller's setting
    back; asked for two threads instead of one, the same seed gives another network (so the pin is what makes the
    weights agree, not an accident of this toy)."""
    import torch

    from lensnb.train import cpu_threads

    xt, yt = _toy(192, 0)
    was = torch.get_num_threads()

    def fit_on(outside, pinned=None):
        if pinned is None:
            monkeypatch.delenv("LENSNB_TORCH_THREADS", raising=False)
        else:
            monkeypatch.setenv("LENSNB_TORCH_THREADS", str(pinned))
        torch.set_num_threads(outside)
        try:
            res = train(xt, yt, xt[:64], yt[:64], seed=3, epochs=2, device="cpu", progress=False)
            assert torch.get_num_threads() == outside  # the caller's setting is back
            return predict(res.model, res.normaliser, xt[:64], device="cpu"), res
        finally:
            torch.set_num_threads(was)

    monkeypatch.delenv("LENSNB_TORCH_THREADS", raising=False)
    assert cpu_threads() == 1
    s1, r1 = fit_on(1)
    s2, r2 = fit_on(2)
    assert np.array_equal(s1, s2)
    assert all(torch.equal(a, b) for a, b in zip(r1.model.state_dict().values(), r2.model.state_dict().values()))
    s3, _ = fit_on(1, pinned=2)
    assert not np.array_equal(s1, s3)


def test_a_bad_thread_setting_is_refused(monkeypatch):
    from lensnb.train import cpu_threads

    monkeypatch.setenv("LENSNB_TORCH_THREADS", "two")
    with pytest.raises(ValueError, match="LENSNB_TORCH_THREADS='two'"):
        cpu_threads()
    monkeypatch.setenv("LENSNB_TORCH_THREADS", "0")
    with pytest.raises(ValueError, match="positive whole number"):
        cpu_threads()


def test_scores_of_cached_models_are_kept_and_read_back(tmp_path, monkeypatch):
    """Cached models' scores on the same images are computed once and read back (the same array); other images or an
    uncached model are scored afresh."""
    from lensnb import config, results, train as tr
    from lensnb.experiment import train_cached

    monkeypatch.setattr(config, "PROCESSED_DIR", tmp_path)
    rng = np.random.default_rng(1)
    x = rng.normal(size=(16, 3, 64, 64)).astype(np.float32)
    y = np.r_[np.ones(8), np.zeros(8)].astype(int)
    kw = {"epochs": 1, "patience": 1, "width": 4, "batch": 8}
    ms = [train_cached(x, y, x[4:12], y[4:12], seed=s, label="m", train_kw=kw, cache_parts={"data": "d"}) for s in (0, 1)]
    assert all(m.key for m in ms)
    fresh = np.stack([predict(m.model, m.normaliser, x, device="cpu") for m in ms])
    a = tr.score_models(ms, x, device="cpu")
    assert np.array_equal(a, fresh) and len(list(results.cache_dir().glob("scores_*.npy"))) == 1

    def refuse(*args, **kwargs):
        raise AssertionError("scored again")

    monkeypatch.setattr(tr, "predict", refuse)
    assert np.array_equal(tr.score_models(ms, x.copy(), device="cpu"), a)  # read back: predict is never called
    x2 = x.copy()
    x2[0, 0, 0, 0] += 1.0
    with pytest.raises(AssertionError, match="scored again"):  # other images: a new key, scored afresh
        tr.score_models(ms, x2, device="cpu")
    plain = tr.TrainResult(ms[0].model, ms[0].normaliser, ms[0].history, ms[0].best_epoch, 1.0)  # not cached
    with pytest.raises(AssertionError, match="scored again"):
        tr.score_models([plain], x, device="cpu")


def test_torch_threads_gives_the_callers_setting_back_even_on_an_error():
    import torch

    from lensnb.train import torch_threads

    was = torch.get_num_threads()
    with pytest.raises(RuntimeError, match="inside"):
        with torch_threads(was + 1):
            assert torch.get_num_threads() == was + 1
            raise RuntimeError("inside")
    assert torch.get_num_threads() == was
