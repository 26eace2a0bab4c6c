"""The realism probe: how far the injected lenses are from real ones, as the trained network sees them.

Two measurements on a set of *real* lens candidates (the team's, in the team-format manifest, ``stamp_npz``
only) against the simulated positives a model was trained on:

* a **domain classifier**: a linear probe (host-grouped cross-validated logistic regression) separating
  simulated positives from real candidates, on the network's penultimate features and on binned pixels.
  AUROC near 0.5: the injections look real to the network; near 1: the network sees something in the
  injections that real lenses do not have (or the reverse).
* **recall on real lenses**: the share of real candidates scored above a threshold chosen on simulations
  (e.g. the score giving 1% false positives on simulated non-lenses), with a Wilson interval.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from .config import STAMP_SIZE
from .gates import grouped_cv_scores
from .lensing import default_device
from .metrics import cluster_bootstrap_ci, monitor_verdict

PROBE_THRESHOLD = 0.65  # realism-probe AUROC above which injections and real lenses differ (the chapter's parameter)


@dataclass
class ProbeResult:
    """AUROC of telling simulated positives (label 1) from real candidates (label 0), 95% host-bootstrap CI."""

    features: str
    auroc: float
    ci_low: float
    ci_high: float
    n_sim: int
    n_real: int


def penultimate_features(model, norm, images: np.ndarray, batch: int = 512, device=None) -> np.ndarray:
    """The globally pooled activations a :class:`lensnb.train.SmallResNet` feeds its last layer: (N, 4 width)."""
    device = torch.device(device) if device is not None else default_device()
    model.eval().to(device)
    out = []
    with torch.no_grad():
        for s in range(0, len(images), batch):
            x = torch.from_numpy(norm(images[s:s + batch])).to(device)
            out.append(model.stages(model.stem(x)).mean(dim=(2, 3)).float().cpu().numpy())
    return np.concatenate(out) if out else np.empty((0, 0))


def binned_pixels(images: np.ndarray, factor: int = 8) -> np.ndarray:
    """Images block-averaged by ``factor`` (64 -> 8 px for 8) and flattened, per band: (N, 3 (64/factor)^2)."""
    x = np.asarray(images, np.float64)
    if x.shape[-1] != STAMP_SIZE or STAMP_SIZE % factor:
        raise ValueError(f"binned_pixels needs (N, bands, {STAMP_SIZE}, {STAMP_SIZE}) images and a factor dividing "
                         f"{STAMP_SIZE}; got {x.shape} and {factor}")
    n, b = x.shape[:2]
    k = STAMP_SIZE // factor
    return x.reshape(n, b, k, factor, k, factor).mean(axis=(3, 5)).reshape(n, -1)


def domain_probe(sim: np.ndarray, real: np.ndarray, sim_groups, real_groups=None, *, features: str = "",
                 n_folds: int = 5, n_boot: int = 500, seed: int = 0) -> ProbeResult:
    """Host-grouped cross-validated logistic regression telling ``sim`` feature rows (label 1) from ``real``
    ones (label 0). ``sim_groups``: the host of each simulated row (injections into one host stay in one
    fold); ``real_groups``: default, every real candidate its own group."""
    sim, real = np.asarray(sim, np.float64), np.asarray(real, np.float64)
    if sim.ndim != 2 or real.ndim != 2 or sim.shape[1] != real.shape[1]:
        raise ValueError(f"domain_probe needs two (N, d) feature arrays with the same d; got {sim.shape}, {real.shape}")
    real_groups = (np.array([f"real-{i}" for i in range(len(real))]) if real_groups is None
                   else np.array([f"real-{g}" for g in real_groups]))
    X = np.concatenate([sim, real])
    y = np.r_[np.ones(len(sim)), np.zeros(len(real))]
    g = np.concatenate([np.array([f"sim-{h}" for h in sim_groups]), real_groups])
    s = grouped_cv_scores(X, y, g, n_folds=n_folds, seed=seed)
    auc, lo, hi = cluster_bootstrap_ci(y, s, g, n_boot=n_boot, seed=seed)
    return ProbeResult(features, auc, lo, hi, len(sim), len(real))


def threshold_at_fpr(neg_scores: np.ndarray, fpr: float) -> float:
    """The score above which a share ``fpr`` of the (simulated) non-lenses lie."""
    neg = np.asarray(neg_scores, float)
    if not 0 < fpr < 1 or len(neg) == 0:
        raise ValueError(f"threshold_at_fpr needs 0 < fpr < 1 and some scores; got fpr={fpr}, {len(neg)} scores")
    return float(np.quantile(neg, 1 - fpr))


def wilson_interval(k: int, n: int, z: float = 1.959964) -> tuple[float, float]:
    """Wilson score interval (95% by default) for a proportion k / n."""
    if n <= 0:
        return float("nan"), float("nan")
    p = k / n
    den = 1 + z * z / n
    mid = (p + z * z / (2 * n)) / den
    half = z * np.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / den
    return float(max(0.0, mid - half)), float(min(1.0, mid + half))


def recall_on_real(real_scores: np.ndarray, threshold: float) -> tuple[float, float, float]:
    """(share of real candidates scored above ``threshold``, Wilson 95% interval)."""
    s = np.asarray(real_scores, float)
    k = int((s > threshold).sum())
    lo, hi = wilson_interval(k, len(s))
    return (k / len(s) if len(s) else float("nan")), lo, hi


# --------------------------------------------------------------------------- how many real lenses decide the check
def lenses_for_recall(recall: float, half_width: float = 0.1, z: float = 1.959964, n_max: int = 100_000) -> int:
    """The fewest real lenses whose recall, measured at ``recall`` (the share found), has a Wilson interval
    (``wilson_interval``, the interval ``recall_on_real`` reports) no wider than ±``half_width``."""
    if not 0 <= recall <= 1 or half_width <= 0:
        raise ValueError(f"lenses_for_recall needs 0 <= recall <= 1 and half_width > 0; got {recall}, {half_width}")
    for n in range(1, n_max + 1):
        lo, hi = wilson_interval(int(round(recall * n)), n, z)
        if (hi - lo) / 2 <= half_width:
            return n
    raise ValueError(f"more than {n_max} lenses would be needed")


def auroc_se(auc: float, n_pos: int, n_neg: int) -> float:
    """Standard error of an AUROC from ``n_pos`` and ``n_neg`` independent images (Hanley & McNeil 1982: the
    exponential approximation Q1 = A / (2 - A), Q2 = 2A^2 / (1 + A)). Host clustering and cross-validation add to it,
    so sizes derived from it are lower bounds."""
    a = float(auc)
    q1, q2 = a / (2 - a), 2 * a * a / (1 + a)
    return float(np.sqrt((a * (1 - a) + (n_pos - 1) * (q1 - a * a) + (n_neg - 1) * (q2 - a * a)) / (n_pos * n_neg)))


def probe_sizes(auc: float, threshold: float, *, ratio: float = 1.0, z: float = 1.959964, n_max: int = 1_000_000) -> int:
    """The fewest real images (with ``ratio`` times as many simulated ones) for which a realism probe reading
    ``auc`` has a 95% interval wholly on one side of ``threshold`` (``auroc_se``: a lower bound), i.e. the probe
    is decided: quiet below the threshold, firing above it. Raises where ``auc`` equals the threshold."""
    if auc == threshold:
        raise ValueError("an AUROC at the threshold is never decided")
    lo, hi = 2, 2
    while hi <= n_max and z * auroc_se(auc, hi, max(2, int(round(ratio * hi)))) >= abs(auc - threshold):
        lo, hi = hi, hi * 2
    if hi > n_max:
        raise ValueError(f"more than {n_max} real images would be needed")
    while lo < hi:  # the smallest n that decides (se falls with n)
        mid = (lo + hi) // 2
        if z * auroc_se(auc, mid, max(2, int(round(ratio * mid)))) < abs(auc - threshold):
            hi = mid
        else:
            lo = mid + 1
    return int(hi)


# --------------------------------------------------------------------------- planted gaps the probe must catch
def real_check_sizes(scores, y, fpr: float, threshold: float = PROBE_THRESHOLD, half_width: float = 0.1,
                     min_false: int = 5) -> dict:
    """How many real lenses and real non-lenses decide the real-lens check, from one model's scores ``scores`` (N,)
    on a simulated test set with labels ``y``:

    - ``recall``: real lenses that measure recall within ±``half_width`` (95% Wilson interval) at ``sim_recall``,
      the simulated recall at the threshold giving ``fpr`` on the simulated non-lenses;
    - ``nonlens``: real non-lenses that set that threshold (``min_false`` expected false positives,
      ``metrics.resolvable_fpr``);
    - ``probe_quiet`` / ``probe_fire``: real lenses (and as many simulated ones) with which the realism probe reads
      quiet when there is no gap (AUROC 0.5) and fires on a gap of AUROC ``gap_auc`` (``threshold`` + 0.1, at most
      0.99): Hanley–McNeil lower bounds (``probe_sizes``)."""
    scores, y = np.asarray(scores, float), np.asarray(y)
    sim_recall = recall_on_real(scores[y == 1], threshold_at_fpr(scores[y == 0], fpr))[0]
    gap_auc = min(0.99, threshold + 0.1)
    return {"sim_recall": sim_recall, "half_width": half_width, "recall": lenses_for_recall(sim_recall, half_width),
            "nonlens": int(np.ceil(min_false / fpr)), "probe_quiet": probe_sizes(0.5, threshold),
            "gap_auc": gap_auc, "probe_fire": probe_sizes(gap_auc, threshold)}


def planted_gap_demos(stamps: np.ndarray, ctrls: np.ndarray, hosts, host_mag=None, variants: dict | None = None, *,
                      brighter_mag: float = 1.5, threshold: float = PROBE_THRESHOLD, n_boot: int = 300,
                      seed: int = 0) -> "pd.DataFrame":
    """The realism probe on gaps planted between two halves of one simulated lens sample, so a reader sees what it
    catches and what it must not be fooled by. A DEMONSTRATION, never evidence about real data.

    The lenses (``stamps`` with their host-only ``ctrls``, (N, 3, 64, 64) [nanomaggies], one row per lens; ``hosts``
    their host keys, ``host_mag`` their hosts' r magnitudes, by default measured on the controls: the r flux within
    16 px) are split by host into halves A ("simulated") and B
    ("real"). The probe (``domain_probe`` on ``binned_pixels``) reads A against B:
    - no gap (must stay quiet);
    - B's arcs ``brighter_mag`` mag brighter (the arc, stamp - ctrl, scaled by 10^(0.4 x brighter_mag));
    - each of ``variants`` ({name: (stamps, ctrls)} of the same lenses re-simulated, e.g. clumpy sources or a
      broader PSF) in place of B's lenses;
    - a host-population difference alone: A's lenses on the brighter half of the hosts, B's on the fainter half
      (must stay quiet), read on raw stamps too, where the hosts differ and the probe is fooled.
    Every probe except the last two reads host-subtracted images (stamp - ctrl), so it measures the lenses; the host-
    only case is also read on the azimuthal residual (``preprocess.azimuthal_residual``: no control needed, as for a
    real lens) and on raw stamps, where the hosts differ and a probe that must not fire does.
    Returns: planted gap, input, expected, auroc, ci_low, ci_high, verdict (against ``threshold``), as expected."""
    import pandas as pd

    stamps, ctrls = np.asarray(stamps, np.float32), np.asarray(ctrls, np.float32)
    hosts = np.asarray(hosts)
    if host_mag is None:
        from .gates import flux_colour_features

        host_mag = 22.5 - 2.5 * np.log10(np.clip(flux_colour_features(ctrls)[:, 1], 1e-6, None))
    host_mag = np.asarray(host_mag, float)
    arcs = stamps - ctrls
    uniq = np.unique(hosts)
    rng = np.random.default_rng(seed)
    in_b = np.isin(hosts, rng.permutation(uniq)[: len(uniq) // 2])
    a, b = ~in_b, in_b
    scale = 10 ** (0.4 * brighter_mag)
    bright_hosts = host_mag < np.median(host_mag)
    cases = [("none (two halves of one sample)", "host-subtracted", "quiet", arcs[a], arcs[b], a, b),
             (f"arcs {brighter_mag:g} mag brighter", "host-subtracted", "fires", arcs[a], scale * arcs[b], a, b)]
    for name, (vs, vc) in (variants or {}).items():
        va = np.asarray(vs, np.float32) - np.asarray(vc, np.float32)
        cases.append((name, "host-subtracted", "fires", arcs[a], va[b], a, b))
    from .preprocess import azimuthal_residual

    res = azimuthal_residual(stamps)  # no control needed: what a real lens allows
    hb, hf = bright_hosts, ~bright_hosts
    cases += [("hosts only: brighter vs fainter hosts", "host-subtracted", "quiet", arcs[hb], arcs[hf], hb, hf),
              ("hosts only: brighter vs fainter hosts", "azimuthal residual", "quiet", res[hb], res[hf], hb, hf),
              ("hosts only: brighter vs fainter hosts", "raw stamps",
               "fires (the hosts differ: why the probe must not read raw stamps)", stamps[hb], stamps[hf], hb, hf)]
    rows = []
    for name, inp, expected, xa, xb, ma, mb in cases:
        r = domain_probe(binned_pixels(xa), binned_pixels(xb), hosts[ma], hosts[mb], features=inp, n_boot=n_boot,
                         seed=seed)
        v = monitor_verdict(r.ci_low, r.ci_high, threshold)
        rows.append({"planted gap": name, "input": inp, "expected": expected, "auroc": r.auroc, "ci_low": r.ci_low,
                     "ci_high": r.ci_high, "verdict": v, "as expected": "yes" if expected.startswith(v) else "no"})
    return pd.DataFrame(rows)
