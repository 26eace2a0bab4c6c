"""Benchmarks that print their figures (not timed tests).

    python -m lensnb.bench simulate [--hosts 16 --per-host 10 --ref-pairs 30 --device cpu]

Measures paired samples per second (host control stamp + host with arc, g/r/z, supersampling 3,
Moffat PSF convolution, sky noise, image-finder metadata) for lensnb's batched torch simulator --
images left on the device, as NumPy arrays, and written as Parquet -- and for a lenstronomy loop
doing the same work: each host's light rendered once per band, each arc ray-traced, supersampled
and convolved with the same PSF kernel per band.
"""
from __future__ import annotations

import argparse
import sys
import time

import numpy as np
import torch

from . import populations
from .config import PIXEL_SCALE, STAMP_SIZE
from .lensing import default_device
from .render import mag_to_nmgy, moffat_kernels, sersic_total_flux_per_amp
from .simulate import lens_source_tensors, simulate_batch


def _best_rate(fn, n: int, repeats: int) -> float:
    best = np.inf
    for _ in range(repeats):
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        fn()
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        best = min(best, time.perf_counter() - t0)
    return n / best


def bench_lensnb(n_hosts: int, per_host: int, device, seed: int = 0, repeats: int = 2) -> dict[str, float]:
    """Paired samples per second, best of ``repeats``, for three ends of the simulator.

    ``device``: images left on the torch device (one control per host + one stamp per row), as a
    GPU training loop would consume them; ``arrays``: NumPy stamps and per-row controls in host
    memory (``simulate_batch``); ``parquet``: the whole CLI path, npz-encoded and written to a file. Arcs are
    rendered afresh in every repeat (``render.no_unit_arc_cache``).
    """
    from .render import no_unit_arc_cache

    with no_unit_arc_cache():  # each repeat renders its arcs (the cache would serve the second from memory)
        return _bench_lensnb(n_hosts, per_host, device, seed, repeats)


def _bench_lensnb(n_hosts: int, per_host: int, device, seed: int, repeats: int) -> dict[str, float]:
    import tempfile
    from pathlib import Path

    from .simulate import simulate, simulate_on_device

    spec = populations.get_preset("request")
    hosts = populations.sample_hosts(n_hosts, np.random.default_rng(seed))
    simulate_batch(hosts.iloc[:2], 2, spec, seed, device=device)  # warm-up
    n = n_hosts * per_host
    rates = {"device": _best_rate(lambda: simulate_on_device(hosts, per_host, spec, seed, device=device), n, repeats),
             "arrays": _best_rate(lambda: simulate_batch(hosts, per_host, spec, seed, device=device), n, repeats),
             "arrays_fixed": _best_rate(lambda: simulate_batch(hosts, per_host, spec, seed, device=device, refine=False),
                                        n, repeats)}
    with tempfile.TemporaryDirectory() as tmp:
        rates["parquet"] = _best_rate(lambda: simulate("request", n_hosts, per_host, seed, Path(tmp) / "b.parquet",
                                                       device=device, progress=False), n, 1)
    return rates


def bench_lenstronomy(n_pairs: int, per_host: int, seed: int = 0, repeats: int = 2) -> float:
    """Paired samples per second of the lenstronomy loop, best of ``repeats``, after a warm-up of two pairs: its
    first call pays one-off set-up costs (measured on 2 cores: 44 pairs/s for a first 30-pair run, 105-112 for the
    runs after it), which the lensnb side does not pay either (``_bench_lensnb`` warms up too)."""
    _lenstronomy_loop(2, 2, seed + 1)
    return max(_lenstronomy_loop(n_pairs, per_host, seed) for _ in range(repeats))


def _lenstronomy_loop(n_pairs: int, per_host: int, seed: int) -> float:
    from lenstronomy.Data.imaging_data import ImageData
    from lenstronomy.Data.psf import PSF
    from lenstronomy.ImSim.image_model import ImageModel
    from lenstronomy.LensModel.lens_model import LensModel
    from lenstronomy.LightModel.light_model import LightModel
    from lenstronomy.Util.param_util import phi_q2_ellipticity

    spec = populations.get_preset("request")
    rng = np.random.default_rng(seed)
    n_hosts = max(1, n_pairs // per_host)
    hosts = populations.sample_hosts(n_hosts, rng)
    c = (STAMP_SIZE - 1) / 2
    data = ImageData(image_data=np.zeros((STAMP_SIZE, STAMP_SIZE)), ra_at_xy_0=-c * PIXEL_SCALE,
                     dec_at_xy_0=-c * PIXEL_SCALE, transform_pix2angle=np.eye(2) * PIXEL_SCALE)
    t0 = time.perf_counter()
    done = 0
    injections = populations.sample_injections(hosts, per_host, spec, seed)
    for hrow, (_, h) in enumerate(hosts.iterrows()):
        inj = injections[injections["host_row"] == hrow]
        he1, he2 = phi_q2_ellipticity(h.host_phi_rad, h.host_q)
        models = []
        ctrl = []
        for band in "grz":
            kernel = moffat_kernels(torch.tensor([h[f"psf_fwhm_used_{band}"]], dtype=torch.float64))[0].numpy()
            m = ImageModel(data, PSF(psf_type="PIXEL", kernel_point_source=kernel),
                           lens_model_class=LensModel(["SIE", "SHEAR"]), source_model_class=LightModel(["SERSIC_ELLIPSE"]),
                           lens_light_model_class=LightModel(["SERSIC_ELLIPSE"]), kwargs_numerics={"supersampling_factor": 3})
            amp = mag_to_nmgy(h[f"host_mag_{band}"]) / sersic_total_flux_per_amp(h.host_r_eff_arcsec, h.host_n_sersic)
            kll = [dict(amp=float(amp), R_sersic=h.host_r_eff_arcsec, n_sersic=h.host_n_sersic, e1=he1, e2=he2,
                        center_x=0, center_y=0)]
            host = m.image(kwargs_lens_light=kll, source_add=False, lens_light_add=True)
            ctrl.append(host + rng.standard_normal(host.shape) * h[f"noise_sigma_{band}"])
            models.append(m)
        for _, r in inj.iterrows():
            se1, se2 = phi_q2_ellipticity(r.src_phi_rad, r.src_q)
            kl = [dict(theta_E=r.theta_e_arcsec, e1=r.lens_e1, e2=r.lens_e2, center_x=0, center_y=0),
                  dict(gamma1=r.shear_gamma1, gamma2=r.shear_gamma2, ra_0=0, dec_0=0)]
            fpa = sersic_total_flux_per_amp(r.src_r_eff_arcsec, 1.0)
            for b, band in enumerate("grz"):
                ks = [dict(amp=float(mag_to_nmgy(r[f"src_mag_{band}"]) / fpa), R_sersic=r.src_r_eff_arcsec,
                           n_sersic=1.0, e1=se1, e2=se2, center_x=r.src_x_arcsec, center_y=r.src_y_arcsec)]
                _ = ctrl[b] + models[b].image(kwargs_lens=kl, kwargs_source=ks, lens_light_add=False)
            done += 1
    return done / (time.perf_counter() - t0)


def replicate(src, copies: int, out) -> int:
    """Write ``copies`` copies of a manifest into directory ``out``, each with its hosts moved on the
    sky (ra + 0.3 deg per copy: distinct hosts and bricks), streaming one row group at a time."""
    from pathlib import Path

    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    pf = pq.ParquetFile(src)
    n = 0
    for c in range(copies):
        path = out / f"part-{c:04d}.parquet"
        with pq.ParquetWriter(path, pf.schema_arrow, compression="zstd") as w:
            for batch in pf.iter_batches(batch_size=1024):
                t = pa.Table.from_batches([batch])
                ra = pc.add(t.column("ra"), 0.3 * (c + 1))
                t = t.set_column(t.schema.get_field_index("ra"), "ra", ra)
                t = t.set_column(t.schema.get_field_index("brickname"), "brickname",
                                 pc.binary_join_element_wise(t.column("brickname"), pa.scalar(f"c{c}"), ""))
                w.write_table(t)
                n += t.num_rows
    return n


def bench_pools(path, n_per_class: int = 2000, seed: int = 0) -> None:
    """Build unpaired pools and run the core-LR gate on a large manifest; print rows, time and peak memory."""
    import resource

    from . import dataset, gates, pools
    from .experiment import design_images

    t0 = time.perf_counter()
    store = dataset.StampStore(path)
    meta = store.meta
    t1 = time.perf_counter()
    hosts = pools.host_key(meta).unique()
    split = pools.split_hosts(meta, {"train": len(hosts) // 2, "test": len(hosts) // 10}, seed)
    table = pools.build_design("unpaired", meta, split["train"], n_per_class, n_per_class, seed)
    stamps, ctrls = dataset.LazyImages(store, "stamp_npz"), dataset.LazyImages(store, "ctrl_stamp_npz")
    x = design_images(table, stamps, ctrls)
    t2 = time.perf_counter()
    r = gates.core_lr_gate(x, table["label"].to_numpy(), table["host"].to_numpy(), n_boot=200, seed=seed)
    t3 = time.perf_counter()
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"manifest: {len(meta)} rows over {len(hosts)} hosts in {len(store.files)} files")
    print(f"metadata read: {t1 - t0:.1f} s; pools + decoding {len(table)} images: {t2 - t1:.1f} s; "
          f"core-LR gate: {t3 - t2:.1f} s (AUROC {r.statistic:.3f}, {r.ci_low:.3f}-{r.ci_high:.3f})")
    print(f"peak resident memory: {peak:.0f} MiB")


def arc_flux_errors(preset: str, n_systems: int, seed: int = 0, *, compact_tail: int = 0, chunk: int = 8):
    """Relative error of the unconvolved arc flux, fixed 3x supersampling and adaptive, against a converged
    reference (27x where the source R_e < 0.2", else 9x, no refinement), for ``n_systems`` drawn from the
    preset's prior plus ``compact_tail`` systems with R_e log-uniform in [0.03, 0.1]". Returns a DataFrame
    (r_eff_arcsec, tail, err_fixed, err_adaptive) and the CPU seconds of the fixed and adaptive renders."""
    import pandas as pd

    from .render import render_arcs

    spec = populations.get_preset(preset)
    n_hosts = max(1, int(np.ceil(n_systems / 10)))
    hosts = populations.sample_hosts(n_hosts, np.random.default_rng([seed, 0]))
    inj = populations.sample_injections(hosts, 10, spec, seed).iloc[:n_systems].reset_index(drop=True)
    inj["tail"] = False
    if compact_tail:
        tail = inj.sample(compact_tail, replace=True, random_state=seed).reset_index(drop=True)
        tail["src_r_eff_arcsec"] = np.exp(np.random.default_rng(seed + 1).uniform(np.log(0.03), np.log(0.1), compact_tail))
        tail["tail"] = True
        inj = pd.concat([inj, tail], ignore_index=True)

    lens, src = lens_source_tensors(inj, dtype=torch.float64)
    one = torch.ones(len(inj), 1, dtype=torch.float64)

    def flux(rows, ss, refine):
        out = []
        for i in range(0, len(rows), chunk):
            r = rows[i:i + chunk]
            out.append(render_arcs({k: v[r] for k, v in lens.items()}, {k: v[r] for k, v in src.items()}, one[r], ss,
                                   refine=refine).sum(dim=(1, 2, 3)))
        return torch.cat(out).numpy() if out else np.empty(0)

    rows = torch.arange(len(inj))
    cost = {}
    for name, refine in (("fixed", False), ("adaptive", True)):
        t0 = time.process_time()
        inj[f"flux_{name}"] = flux(rows, 3, refine)
        cost[name] = time.process_time() - t0
    ref = np.empty(len(inj))
    compact = torch.as_tensor(np.flatnonzero(inj["src_r_eff_arcsec"].to_numpy() < 0.2))
    wide = torch.as_tensor(np.flatnonzero(inj["src_r_eff_arcsec"].to_numpy() >= 0.2))
    ref[compact.numpy()] = flux(compact, 27, False)
    ref[wide.numpy()] = flux(wide, 9, False)
    out = pd.DataFrame({"r_eff_arcsec": inj["src_r_eff_arcsec"], "tail": inj["tail"],
                        "err_fixed": inj["flux_fixed"] / ref - 1, "err_adaptive": inj["flux_adaptive"] / ref - 1})
    return out, cost


def print_flux_accuracy(n_systems: int, compact_tail: int, seed: int = 0) -> None:
    """Print |arc flux error| percentiles per preset (prior) and on the compact tail, and the render cost."""
    print(f"arc flux error against a converged reference ({n_systems} systems per preset from its prior, "
          f"{compact_tail} with R_e in [0.03, 0.1]\"):")
    print(f"  {'preset':10s} {'sample':8s} {'method':9s} {'p50':>8s} {'p95':>8s} {'max':>8s}")
    for preset in ("request", "physical"):
        df, cost = arc_flux_errors(preset, n_systems, seed, compact_tail=compact_tail)
        for sample, sub in (("prior", df[~df["tail"]]), ("tail", df[df["tail"]])):
            for m in ("fixed", "adaptive"):
                e = sub[f"err_{m}"].abs()
                if len(e):
                    print(f"  {preset:10s} {sample:8s} {m:9s} {e.median():8.2%} {e.quantile(0.95):8.2%} {e.max():8.2%}")
        print(f"  {preset}: arc render CPU time, adaptive / fixed 3x: {cost['adaptive'] / cost['fixed']:.2f}x "
              f"({cost['adaptive']:.1f} s vs {cost['fixed']:.1f} s)")


# ----------------------------------------------------------------------------- the GPU host check
def gpu_facts() -> dict:
    """torch/CUDA facts and ``nvidia-smi``'s view of the card (name, driver, memory), CPU count."""
    import os
    import shutil
    import subprocess

    facts = {"torch": torch.__version__, "cuda_available": torch.cuda.is_available(), "cpus": os.cpu_count()}
    if torch.cuda.is_available():
        p = torch.cuda.get_device_properties(0)
        facts.update(device=torch.cuda.get_device_name(0), multiprocessors=p.multi_processor_count,
                     memory_gib=round(p.total_memory / 2**30, 1), cuda=torch.version.cuda)
    if shutil.which("nvidia-smi"):
        q = subprocess.run(["nvidia-smi", "--query-gpu=name,driver_version,memory.total,clocks.max.sm",
                            "--format=csv,noheader"], capture_output=True, text=True, timeout=30)
        facts["nvidia_smi"] = q.stdout.strip() or q.stderr.strip()
    return facts


def bench_training(n_images: int, device, *, width: int = 32, batch: int = 256, epochs: int = 2) -> dict:
    """Training throughput [images/s] of the chapters' SmallResNet on random 64x64x3 images (the rate
    ``train`` reports: optimisation steps only, validation excluded)."""
    from .train import train

    rng = np.random.default_rng(0)
    x = rng.normal(0, 1, (n_images, 3, STAMP_SIZE, STAMP_SIZE)).astype(np.float32)
    y = rng.integers(0, 2, n_images)
    x[y == 1, :, 28:36, 28:36] += 1.0
    nv = max(64, n_images // 10)
    train(x[:batch * 2], y[:batch * 2], x[:nv], y[:nv], epochs=1, width=width, batch=batch, device=device,
          progress=False)  # warm-up (cuDNN autotuning)
    r = train(x, y, x[:nv], y[:nv], epochs=epochs, patience=epochs, width=width, batch=batch, device=device,
              progress=False, label="bench")
    return {"images": n_images, "width": width, "batch": batch, "epochs": epochs, "images_per_s": r.images_per_s}


def gpu_check(out, *, scale: float = 1.0, profile: str = "gpu", budget_s: float = 540.0, allow_cpu: bool = False,
              book: bool = True) -> dict:
    """The GPU host's one prepared command: simulator bench, training bench and the whole book under
    ``profile``, within ``budget_s`` seconds of wall time. Writes ``out/gpu_check.json`` after every
    stage (so a stage that fails or runs out of time leaves the others' figures), the training log
    (``train_log.jsonl``, one line per model trained by the book), the build's output and the built
    book as ``book_html.tar.gz``. ``scale`` shrinks the benches (1.0: 1024 hosts x 20 injections,
    40,000 training images) for a rehearsal on a CPU (``allow_cpu``)."""
    import json
    import os
    import subprocess
    import sys
    import tarfile
    from pathlib import Path

    from . import config

    t_start = time.perf_counter()
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    report = {"facts": gpu_facts(), "scale": scale, "profile": profile, "budget_s": budget_s, "stages": {}}
    path = out / "gpu_check.json"

    def save():
        report["wall_s"] = round(time.perf_counter() - t_start, 1)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(report, indent=1, default=float))
        os.replace(tmp, path)

    save()
    if not torch.cuda.is_available() and not allow_cpu:
        raise RuntimeError("CUDA is not available (torch.cuda.is_available() is False): this check is for a GPU host; "
                           "--allow-cpu rehearses it on the CPU")
    device = default_device()
    stages = report["stages"]

    def stage(name, fn):
        t0 = time.perf_counter()
        print(f"[gpu-check] {name} ...", flush=True)
        try:
            stages[name] = {"ok": True, **fn()}
        except Exception as exc:  # one failed stage must not lose the others' figures
            stages[name] = {"ok": False, "error": f"{type(exc).__name__}: {exc}"}
        stages[name]["seconds"] = round(time.perf_counter() - t0, 1)
        print(f"[gpu-check] {name}: {stages[name]}", flush=True)
        save()

    hosts = max(2, round(1024 * scale))
    stage("simulator", lambda: {"hosts": hosts, "per_host": 20,
                                **{f"pairs_per_s_{k}": v for k, v in bench_lensnb(hosts, 20, device).items()}})
    stage("training", lambda: bench_training(max(512, round(40_000 * scale)), device))
    if book:
        def run_book():
            left = budget_s - (time.perf_counter() - t_start)
            if left < 30:
                raise RuntimeError(f"only {left:.0f} s of the budget left for the book")
            log = out / "train_log.jsonl"
            env = {**os.environ, "LENSNB_TRAIN_LOG": str(log.resolve()), "PYTHONUNBUFFERED": "1"}
            t0 = time.perf_counter()
            with open(out / "book_build.log", "w") as f:
                try:
                    rc = subprocess.run([sys.executable, "-m", "lensnb.build", "book", "--profile", profile],
                                        env=env, stdout=f, stderr=subprocess.STDOUT, timeout=left).returncode
                except subprocess.TimeoutExpired:
                    rc = "timeout"
            res = {"returncode": rc, "book_seconds": round(time.perf_counter() - t0, 1)}
            timings = config.BUILD_DIR / "timings.json"
            if timings.exists():
                res["chapters"] = {k: v["seconds"] for k, v in
                                   json.loads(timings.read_text()).get(profile, {}).get("chapters", {}).items()}
            if log.exists():
                recs = [json.loads(line) for line in log.read_text().splitlines() if line.strip()]
                per = {}
                for r in recs:
                    per.setdefault(r["chapter"], []).append(r)
                res["training_images_per_s"] = {
                    ch: {"models": len(v), "median": float(np.median([r["images_per_s"] for r in v])),
                         "images_seen": int(sum(r["n_train"] * r["epochs"] for r in v))} for ch, v in per.items()}
            html = config.BOOK_DIR / "_build" / "html"
            if html.exists():
                with tarfile.open(out / "book_html.tar.gz", "w:gz") as tar:  # the pages, not their sources
                    tar.add(html, arcname="html", filter=lambda ti: None if "_sources" in ti.name
                            or ti.name.endswith(".ipynb") else ti)
            if rc != 0:
                raise RuntimeError(f"book build exit {rc}; {res}")
            return res

        stage("book", run_book)
    return report


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m lensnb.bench")
    sub = ap.add_subparsers(dest="what", required=True)
    s = sub.add_parser("simulate", help="paired samples per second, lensnb vs a lenstronomy loop")
    s.add_argument("--hosts", type=int, default=16)
    s.add_argument("--per-host", type=int, default=10)
    s.add_argument("--ref-pairs", type=int, default=30, help="pairs for the (slow) lenstronomy loop; 0 skips it")
    s.add_argument("--device", default=None)
    pl = sub.add_parser("pools", help="pools + core-LR gate on a (large) manifest: time and peak memory")
    pl.add_argument("path")
    pl.add_argument("--per-class", type=int, default=2000)
    ac = sub.add_parser("accuracy", help="arc flux error, fixed vs adaptive supersampling, against a converged reference")
    ac.add_argument("--systems", type=int, default=300)
    ac.add_argument("--tail", type=int, default=60)
    g = sub.add_parser("gpu", help="the GPU host's check: simulator + training benches and the whole book, one JSON")
    g.add_argument("--out", default="build/gpu_check", help="folder for gpu_check.json, logs and the built book")
    g.add_argument("--scale", type=float, default=1.0, help="bench sizes relative to the full check")
    g.add_argument("--profile", default="gpu", help="the book's profile")
    g.add_argument("--budget-s", type=float, default=540.0, help="wall-time budget for the whole check [s]")
    g.add_argument("--allow-cpu", action="store_true", help="rehearse on a CPU instead of failing")
    g.add_argument("--no-book", action="store_true", help="benches only")
    rp = sub.add_parser("replicate", help="make a large manifest directory from copies of one file")
    rp.add_argument("src")
    rp.add_argument("--copies", type=int, required=True)
    rp.add_argument("--out", required=True)
    a = ap.parse_args(argv)
    if a.what == "pools":
        bench_pools(a.path, a.per_class)
        return 0
    if a.what == "accuracy":
        print_flux_accuracy(a.systems, a.tail)
        return 0
    if a.what == "gpu":
        try:
            rep = gpu_check(a.out, scale=a.scale, profile=a.profile, budget_s=a.budget_s, allow_cpu=a.allow_cpu,
                            book=not a.no_book)
        except RuntimeError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
        bad = [k for k, v in rep["stages"].items() if not v["ok"]]
        print(f"[gpu-check] report: {a.out}/gpu_check.json; " + (f"FAILED: {', '.join(bad)}" if bad else "all stages ok"))
        return 1 if bad else 0
    if a.what == "replicate":
        print(f"wrote {replicate(a.src, a.copies, a.out)} rows to {a.out}")
        return 0
    device = torch.device(a.device) if a.device else default_device()
    print(f"device: {device} ({torch.cuda.get_device_name(0) if device.type == 'cuda' else 'CPU'}), "
          f"torch threads: {torch.get_num_threads()}")
    rates = bench_lensnb(a.hosts, a.per_host, device)
    print(f"lensnb ({a.hosts} hosts x {a.per_host} injections per batch):")
    labels = {"device": "images left on the device", "arrays": "NumPy arrays in host memory",
              "parquet": "npz-encoded Parquet file (CLI path)",
              "arrays_fixed": "NumPy arrays, fixed 3x supersampling (no adaptive refinement)"}
    for k, v in rates.items():
        print(f"  {v:10.1f} paired samples/s  {labels[k]}")
    print(f"cost of adaptive supersampling: {rates['arrays_fixed'] / rates['arrays']:.2f}x the fixed-3x time")
    if a.ref_pairs:
        ref = bench_lenstronomy(a.ref_pairs, a.per_host)
        print(f"lenstronomy: {ref:10.1f} paired samples/s  ({a.ref_pairs} pairs, loop, warmed up, best of 2)")
        print(f"ratio (arrays / lenstronomy): {rates['arrays'] / ref:10.1f} x  (lensnb on {torch.get_num_threads()} "
              f"torch thread(s))")
        if device.type == "cpu" and torch.get_num_threads() > 1:  # the book's chapters simulate on one thread
            from .train import torch_threads

            with torch_threads(1):
                one = bench_lensnb(a.hosts, a.per_host, device)["arrays"]
            print(f"lensnb on one thread (as in the book's chapters): {one:10.1f} paired samples/s, "
                  f"{one / ref:.1f} x the lenstronomy loop")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
