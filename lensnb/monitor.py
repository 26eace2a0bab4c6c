"""The shortcut monitor as a tool: run lensnb's gates on a training set in the team's format, outside the book.

    python -m lensnb.gates PATH [--model CHECKPOINT] [--json OUT] [--design auto|paired|unpaired]
    python -m lensnb.monitor PATH ...          (the same)

Data-level battery (on the images a network would be trained on): the request's core-only logistic
regression (E4), the nonlinear core gate, and a survey-conditions gate (PSF, depth, redshift and the other
metadata columns the manifest carries, plus the sky region as the brick's position); the radial-profile gate
is reported as an arc-signal check. Model-level battery (``--model``: a checkpoint written by lensnb's
training cache, or any ``torch.save`` of ``{"state", "median", "scale", "residual"}``): how much of the
model's skill is lost when the central 10x10 px are hidden, filled from each image's own control
(``gates.reliance_gate``).

The manifest is streamed: at most ``--max-rows`` rows (hosts sampled whole, seeded) are decoded, in batches,
and only the features the gates need are kept, so memory stays bounded whatever the manifest's size.

Exit status: 0 when no gate fires, 1 when a shortcut gate finds a shortcut or the model relies on the core
(a training run can be stopped by it), 2 for bad input (one line naming the file, row or column).
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import pandas as pd

from . import gates, pools

#: survey-condition columns the conditions gate uses when the manifest carries them
CONDITION_COLUMNS = ("psf_fwhm_used_g", "psf_fwhm_used_r", "psf_fwhm_used_z", "noise_sigma_g", "noise_sigma_r",
                     "noise_sigma_z", "ebv", "maskbits", "host_z", "host_mag_r", "host_r_eff_arcsec")
FIRES = {"shortcut", "relies"}


def training_rows(meta: pd.DataFrame, design: str, max_rows: int, seed: int) -> pd.DataFrame:
    """The (row, image, label, host) table a network would train on, from a manifest's metadata.

    ``paired``: every row's stamp is a positive and its control a negative (the team's current design);
    ``unpaired``: the ``pool`` column (P / N per host, ``pools.validate_user_pools``) says which image a row
    gives; ``auto``: unpaired when the manifest has a ``pool`` column. At most ``max_rows`` rows are kept, by
    whole hosts in a seeded random order."""
    if design == "auto":
        design = "unpaired" if "pool" in meta.columns else "paired"
    keys = pools.host_key(meta).to_numpy()
    hosts = pd.unique(keys)
    rng = np.random.default_rng(seed)
    order = hosts[rng.permutation(len(hosts))]
    counts = pd.Series(keys).value_counts()
    per = 2 if design == "paired" else 1
    keep, total = [], 0
    for h in order:
        if total + per * counts[h] > max_rows and keep:
            break
        keep.append(h)
        total += per * counts[h]
    rows = np.flatnonzero(np.isin(keys, keep))
    if design == "paired":
        t = pd.concat([pd.DataFrame({"row": rows, "image": "stamp", "label": 1}),
                       pd.DataFrame({"row": rows, "image": "ctrl", "label": 0})], ignore_index=True)
    elif design == "unpaired":
        pools.validate_user_pools(meta)
        p = meta["pool"].to_numpy()[rows]
        t = pd.DataFrame({"row": rows, "image": np.where(p == "P", "stamp", "ctrl"), "label": (p == "P").astype(int)})
    else:
        raise ValueError(f"--design must be auto, paired or unpaired, got {design!r}")
    t["host"] = keys[t["row"].to_numpy()]
    t.attrs["design"] = design
    return t.reset_index(drop=True)


def _stream(store, table: pd.DataFrame, fn, batch: int = 2048, with_controls: bool = False) -> np.ndarray:
    """``fn(images)`` over the table's images, ``batch`` at a time (decoded on demand), concatenated; with
    ``with_controls``, ``fn(images, controls)`` with each image's host-only control (its row's ctrl stamp)."""
    out = []
    for s in range(0, len(table), batch):
        t = table.iloc[s:s + batch]
        imgs = np.empty((len(t), 3, 64, 64), np.float32)
        for col, which in (("stamp_npz", "stamp"), ("ctrl_stamp_npz", "ctrl")):
            m = (t["image"] == which).to_numpy()
            if m.any():
                imgs[m] = store.images(t["row"].to_numpy()[m], col)
        out.append(fn(imgs, store.images(t["row"].to_numpy(), "ctrl_stamp_npz")) if with_controls else fn(imgs))
    return np.concatenate(out)


def load_checkpoint(path):
    """A SmallResNet and its normaliser from a checkpoint (loaded with ``weights_only=True``: nothing is unpickled)."""
    import torch

    from .train import Normaliser, SmallResNet

    try:
        d = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise ValueError(f"{path}: not a readable weights-only checkpoint ({type(exc).__name__}: {exc})") from None
    for k in ("state", "median", "scale"):
        if k not in d:
            raise ValueError(f"{path}: checkpoint lacks {k!r} (needs state, median, scale)")
    state = d["state"]
    width = int(state["stem.0.weight"].shape[0])
    model = SmallResNet(width, in_channels=int(state["stem.0.weight"].shape[1]))
    model.load_state_dict(state)
    norm = Normaliser(np.asarray(d["median"], np.float32), np.asarray(d["scale"], np.float32), bool(d.get("residual", False)))
    return model, norm


MONITOR_GATES = gates.CORE_GATES + ("radial-profile LR",)  # from the registry (lensnb.gates.GATES)


def battery(path, *, model=None, design: str = "auto", max_rows: int = 20000, threshold: float = gates.THRESHOLD,
            relative: float = 0.2, n_boot: int = 300, seed: int = 0, progress: bool = False) -> pd.DataFrame:
    """Run the data-level gates (and, with ``model`` = (network, normaliser), the model-level core reliance) on
    the manifest at ``path``. Returns one row per gate: gate, kind, AUROC (or share of skill lost), interval,
    verdict, fires."""
    from .dataset import StampStore
    from .train import predict

    store = StampStore(path)
    meta = store.meta
    t = training_rows(meta, design, max_rows, seed)
    y, g = t["label"].to_numpy(), t["host"].to_numpy()
    gates.check_gate_input(y, g)

    # the registered gates' features, side by side, streamed once; each gate reads its own columns
    widths = [gates.GATES[n].features(np.zeros((1, 3, 64, 64), np.float32)).shape[1] for n in MONITOR_GATES]
    cols = dict(zip(MONITOR_GATES, np.split(np.arange(sum(widths)), np.cumsum(widths)[:-1])))

    def feats(imgs):
        return np.concatenate([gates.GATES[n].features(imgs) for n in MONITOR_GATES], axis=1)

    X = _stream(store, t, feats)
    rows = []

    def add(res, kind=None):
        rows.append({"gate": res.name, "kind": kind or res.kind, "value": res.statistic, "ci_low": res.ci_low,
                     "ci_high": res.ci_high, "verdict": res.verdict, "rows": res.n_rows, "hosts": res.n_hosts})

    for n in MONITOR_GATES:
        add(gates.feature_gate(n, X[:, cols[n]], y, g, threshold, n_boot=n_boot, seed=seed, model=gates.GATES[n].model))
    cond = [c for c in CONDITION_COLUMNS if c in meta.columns]
    mrows = meta.iloc[t["row"].to_numpy()].reset_index(drop=True)
    M = mrows[cond].apply(pd.to_numeric, errors="coerce") if cond else pd.DataFrame(index=mrows.index)
    M["ra"], M["dec"] = mrows["ra"].to_numpy(float), mrows["dec"].to_numpy(float)  # the sky region
    if t.attrs.get("design") == "paired":  # one host, both classes: its conditions cannot separate them
        rows.append({"gate": "survey conditions", "kind": "shortcut", "value": np.nan, "ci_low": np.nan,
                     "ci_high": np.nan, "verdict": "not applicable (paired: each host gives both classes)",
                     "rows": len(t), "hosts": len(np.unique(g))})
    else:
        add(gates.feature_gate("survey conditions", M.fillna(M.median()).to_numpy(float), y, g, threshold,
                               n_boot=n_boot, seed=seed))
    if model is not None:
        net, norm = model
        full = _stream(store, t, lambda x: predict(net, norm, x, device="cpu"))
        # the one reliance definition (gates.reliance_gate): the core filled from each image's own control
        hidden = _stream(store, t, lambda x, c: predict(net, norm, gates.fill_from_control(x, c, gates.CORE_MASK),
                                                         device="cpu"), with_controls=True)
        r = gates.reliance_gate("model core reliance", full, hidden, y, g, relative=relative, n_boot=n_boot, seed=seed)
        rows.append({"gate": r["name"], "kind": "model", "value": r["share of skill lost"], "ci_low": r["ci_low"],
                     "ci_high": r["ci_high"], "verdict": r["verdict"], "rows": len(t), "hosts": len(np.unique(g))})
    out = pd.DataFrame(rows)
    out["fires"] = out["verdict"].isin(FIRES) & out["kind"].isin(["shortcut", "model"])
    out.attrs["design"] = t.attrs.get("design")
    return out


def format_table(res: pd.DataFrame) -> str:
    lines = [f"{'gate':<22} {'kind':<11} {'value (95% CI)':<24} verdict"]
    for _, r in res.iterrows():
        v = "—" if not np.isfinite(r.value) else f"{r.value:.3f} ({r.ci_low:.3f}–{r.ci_high:.3f})"
        lines.append(f"{r.gate:<22} {r.kind:<11} {v:<24} {r.verdict}{'  <-- FIRES' if r.fires else ''}")
    return "\n".join(lines)


def main(argv=None, prog: str = "python -m lensnb.monitor") -> int:
    ap = argparse.ArgumentParser(prog=prog, description=__doc__.split("\n\n")[0])
    ap.add_argument("path", help="a Parquet manifest (file or directory) in the team's format")
    ap.add_argument("--model", default=None, help="a checkpoint: also run the model-level core-reliance gate")
    ap.add_argument("--json", default=None, help="write the verdict table as JSON here")
    ap.add_argument("--design", default="auto", choices=["auto", "paired", "unpaired"])
    ap.add_argument("--max-rows", type=int, default=20000, help="training images decoded at most (whole hosts)")
    ap.add_argument("--threshold", type=float, default=gates.THRESHOLD, help="shortcut-gate AUROC threshold (two-sided)")
    ap.add_argument("--relative", type=float, default=0.2, help="share of skill lost that counts as reliance")
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args(argv)
    try:
        model = load_checkpoint(a.model) if a.model else None
        res = battery(a.path, model=model, design=a.design, max_rows=a.max_rows, threshold=a.threshold,
                      relative=a.relative, seed=a.seed)
    except (ValueError, FileNotFoundError) as exc:
        print(f"lensnb.monitor: {exc}", file=sys.stderr)
        return 2
    print(f"{a.path}: {res.attrs.get('design')} design")
    print(format_table(res))
    if a.json:
        Path(a.json).write_text(json.dumps({"path": str(a.path), "design": res.attrs.get("design"),
                                            "gates": json.loads(res.to_json(orient="records"))}, indent=1))
    fired = res[res.fires]
    if len(fired):
        print(f"FIRED: {', '.join(fired.gate)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
