"""CNN training for lens finding: a small ResNet, robust normalisation, flips/rotations,
early stopping on validation AUROC; seeded and deterministic on the CPU (on a fixed number of threads,
``cpu_threads``); ``cuda`` + mixed precision when available.
"""
from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import torch
import torch.utils.deterministic
from torch import nn

from .lensing import default_device
from .metrics import auroc


# ----------------------------------------------------------------------------- inputs
@dataclass
class Normaliser:
    """Per-band robust scaling fitted on training images: x -> asinh((x - median) / (k * MAD))."""

    median: np.ndarray = field(default_factory=lambda: np.zeros(3, np.float32))
    scale: np.ndarray = field(default_factory=lambda: np.ones(3, np.float32))
    residual: bool = False

    @classmethod
    def fit(cls, images: np.ndarray, residual: bool = False, k: float = 3.0) -> "Normaliser":
        x = prepare(images, residual)
        sub = x[:: max(1, len(x) // 500)]
        med = np.median(sub, axis=(0, 2, 3))
        mad = np.median(np.abs(sub - med[None, :, None, None]), axis=(0, 2, 3)) * 1.4826
        return cls(med.astype(np.float32), (k * np.maximum(mad, 1e-8)).astype(np.float32), residual)

    def __call__(self, images: np.ndarray) -> np.ndarray:
        x = prepare(images, self.residual)
        return np.arcsinh((x - self.median[None, :, None, None]) / self.scale[None, :, None, None]).astype(np.float32)


def prepare(images: np.ndarray, residual: bool) -> np.ndarray:
    """Optionally subtract a centrally symmetric lens-light model (the image rotated by 180 degrees,
    as YattaLens' inverted-image model); lensed light, not centrally symmetric, survives."""
    if not residual:
        return images
    return images - images[:, :, ::-1, ::-1]


# ----------------------------------------------------------------------------- model
class Block(nn.Module):
    def __init__(self, cin, cout, stride):
        super().__init__()
        self.c1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.b1 = nn.BatchNorm2d(cout)
        self.c2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.b2 = nn.BatchNorm2d(cout)
        self.skip = (nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))
                     if stride != 1 or cin != cout else nn.Identity())

    def forward(self, x):
        y = torch.relu(self.b1(self.c1(x)))
        return torch.relu(self.b2(self.c2(y)) + self.skip(x))


class SmallResNet(nn.Module):
    """Stride-2 stem (64 -> 32 px), three residual stages (32, 16, 8 px), global pooling, one logit.
    ``in_channels``: 3 for g, r, z; 6 for raw + residual stacks."""

    def __init__(self, width: int = 16, in_channels: int = 3):
        super().__init__()
        w = width
        self.stem = nn.Sequential(nn.Conv2d(in_channels, w, 3, 2, 1, bias=False), nn.BatchNorm2d(w), nn.ReLU())
        self.stages = nn.Sequential(Block(w, w, 1), Block(w, 2 * w, 2), Block(2 * w, 4 * w, 2))
        self.head = nn.Linear(4 * w, 1)

    def forward(self, x):
        return self.head(self.stages(self.stem(x)).mean(dim=(2, 3))).squeeze(1)


def augment(x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """Random flips and 90-degree rotations (the 8 symmetries of the square), per sample.

    The symmetry of each sample is drawn from ``gen`` (a CPU generator), so the draw does not depend on
    the device. On a GPU the images are chosen with ``torch.where`` (no host synchronisation); on the CPU each
    symmetry is applied to its own samples only: the same images in one pass over the batch instead of seven
    ``where`` passes (10% of a training step, measured on 2 cores)."""
    k = torch.randint(0, 8, (x.shape[0],), generator=gen)
    if x.is_cuda:
        return _symmetries_where(x, k.pin_memory().to(x.device, non_blocking=True))  # asynchronous copy
    return _symmetries_indexed(x, k)


def _symmetry(x: torch.Tensor, s: int) -> torch.Tensor:
    """Symmetry ``s`` (0-7) of the square applied to (N, C, H, W) images: rotation s mod 4, then a flip if s >= 4."""
    y = torch.rot90(x, s % 4, dims=(2, 3))
    return torch.flip(y, dims=(3,)) if s >= 4 else y


def _symmetries_where(x: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
    """Sample i under symmetry k[i], every symmetry computed for the whole batch and chosen by ``torch.where``."""
    k = k[:, None, None, None]
    out = x
    for s in range(1, 8):
        out = torch.where(k == s, _symmetry(x, s), out)
    return out


def _symmetries_indexed(x: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
    """The same as ``_symmetries_where``, each symmetry applied only to the samples that drew it."""
    out = torch.empty_like(x)
    for s in range(8):
        i = torch.nonzero(k == s).squeeze(1)
        if len(i):
            out[i] = _symmetry(x[i], s)
    return out


# ----------------------------------------------------------------------------- training
@dataclass
class TrainResult:
    model: nn.Module
    normaliser: Normaliser
    history: pd.DataFrame
    best_epoch: int
    images_per_s: float
    key: str | None = None  # the results cache's name for this model (``experiment.train_cached``), if it has one


def cpu_threads() -> int:
    """Threads torch uses on the CPU to train and score: ``LENSNB_TORCH_THREADS``, default 1.

    Fixed rather than one per core because the weights depend on it: torch divides its sums among the threads, so the
    order of the additions follows the thread count, and the same seed trained on 1 and on 2 threads gives different
    networks (after two epochs their scores differ in the second decimal, measured). With one thread a model is the same on a laptop, on
    this 2-core machine and on a 16-core host; the build runs chapters side by side to use the other cores."""
    raw = os.environ.get("LENSNB_TORCH_THREADS", "1")
    try:
        n = int(raw)
    except ValueError:
        n = 0
    if n < 1:
        raise ValueError(f"LENSNB_TORCH_THREADS={raw!r}: expected a positive whole number of threads")
    return n


@contextlib.contextmanager
def torch_threads(n: int):
    """``n`` torch CPU threads while the block runs; the caller's setting back afterwards."""
    was = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(was)


@contextlib.contextmanager
def _pinned_threads(device: torch.device):
    """``cpu_threads()`` torch threads while the block runs on the CPU; the caller's setting back afterwards."""
    if device.type != "cpu":
        yield
        return
    with torch_threads(cpu_threads()):
        yield


def _autocast(device: torch.device):
    """bf16 autocast on a GPU (no loss scaling needed), full precision on the CPU."""
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda")


def _default_batch(device: torch.device) -> int:
    """Images per inference batch: 512 on a CPU, 4096 on a GPU."""
    return 4096 if device.type == "cuda" else 512


def _to_device(x: torch.Tensor, device: torch.device) -> torch.Tensor:
    """``x`` on ``device`` in the channels-last layout the model is kept in (on a 2-core CPU it trains this
    small ResNet 1.6x faster than the default layout: 1000 against 624 images/s, measured)."""
    return x.to(device, non_blocking=True).contiguous(memory_format=torch.channels_last)


def predict(model: nn.Module, norm: Normaliser, images: np.ndarray, batch: int | None = None, device=None) -> np.ndarray:
    """Logits for (N, 3, 64, 64) images (``batch`` at a time: 512 on a CPU, 4096 on a GPU)."""
    device = torch.device(device) if device is not None else default_device()
    batch = batch or _default_batch(device)
    model.to(device).to(memory_format=torch.channels_last)
    with _pinned_threads(device):
        out = [_predict_normalised(model, torch.from_numpy(norm(images[s : s + batch])), device, batch)
               for s in range(0, len(images), batch)]
    return np.concatenate(out) if out else np.empty(0)


def score_models(models, images: np.ndarray, batch: int | None = None, device=None) -> np.ndarray:
    """Scores (n_models, N) of several trained models (``TrainResult``, e.g. one per training seed) on the same
    images (N, C, 64, 64).

    When every model is a cached one (``TrainResult.key``, set by ``experiment.train_cached``) the scores are kept in
    the results cache too, keyed by the models, the images' bytes, the device type, the CPU thread count and the
    batch: a chapter scoring another chapter's networks on the same test images reads them back (the gates,
    sample-size and failure-modes chapters re-score the training and alternatives chapters' networks)."""
    device = torch.device(device) if device is not None else default_device()
    batch = batch or _default_batch(device)

    def compute():
        return np.stack([predict(m.model, m.normaliser, images, batch=batch, device=device) for m in models])

    keys = [getattr(m, "key", None) for m in models]
    if not keys or not all(keys):
        return compute()
    from . import results

    parts = {"models": keys, "images": results.array_digest(images), "device": device.type,
             "threads": cpu_threads() if device.type == "cpu" else None, "batch": batch}
    return results.cached_array("scores", parts, compute)


def _predict_normalised(model: nn.Module, x: torch.Tensor, device: torch.device, batch: int | None = None) -> np.ndarray:
    """Logits for already normalised images (a CPU tensor), ``batch`` at a time."""
    batch = batch or _default_batch(device)
    model.eval()
    out = []
    with torch.no_grad():
        for s in range(0, len(x), batch):
            with _autocast(device):
                out.append(model(_to_device(x[s : s + batch], device)).float())
    return torch.cat(out).cpu().numpy() if out else np.empty(0)


def _log_throughput(label: str, device: torch.device, images_per_s: float, n_train: int, epochs: int) -> None:
    """Append one line to the JSON-lines file named by ``LENSNB_TRAIN_LOG`` (set by ``lensnb.bench gpu``)."""
    import json
    import os

    path = os.environ.get("LENSNB_TRAIN_LOG")
    if path:
        with open(path, "a") as f:
            f.write(json.dumps({"chapter": os.environ.get("LENSNB_CHAPTER", ""), "label": label,
                                "device": device.type, "images_per_s": images_per_s, "n_train": n_train,
                                "epochs": epochs}) + "\n")


def train(x_train: np.ndarray, y_train: np.ndarray, x_val: np.ndarray, y_val: np.ndarray, *, seed: int = 0,
          epochs: int = 10, patience: int = 3, batch: int = 64, lr: float = 2e-3, width: int = 16,
          residual: bool = False, device=None, progress: bool = True, label: str = "") -> TrainResult:
    """Train a :class:`SmallResNet` on (N, C, 64, 64) images (C channels, e.g. 3 bands or 6 for raw + residual);
    keep the weights of the epoch with the best validation AUROC. On the CPU it runs on ``cpu_threads()`` threads."""
    device = torch.device(device) if device is not None else default_device()
    with _pinned_threads(device):
        return _train(x_train, y_train, x_val, y_val, seed=seed, epochs=epochs, patience=patience, batch=batch, lr=lr,
                      width=width, residual=residual, device=device, progress=progress, label=label)


def _train(x_train, y_train, x_val, y_val, *, seed, epochs, patience, batch, lr, width, residual, device, progress,
           label) -> TrainResult:
    import time

    from tqdm import tqdm

    torch.manual_seed(seed)
    if device.type == "cpu":
        was = (torch.are_deterministic_algorithms_enabled(), torch.utils.deterministic.fill_uninitialized_memory)
        torch.use_deterministic_algorithms(True)
        # deterministic mode also fills every new tensor with NaN (a guard against reading uninitialised memory,
        # which no kernel here does): 15% of a training step on 2 cores, and the trained weights are the same
        torch.utils.deterministic.fill_uninitialized_memory = False
    else:
        torch.backends.cudnn.benchmark = True
    gen = torch.Generator().manual_seed(seed)
    norm = Normaliser.fit(x_train, residual)
    # on a GPU the whole (normalised) training set moves to the device once
    xt = torch.from_numpy(norm(x_train)).to(device)
    yt = torch.from_numpy(np.asarray(y_train, np.float32)).to(device)
    xv = torch.from_numpy(norm(x_val))  # normalised once, not every epoch
    model = SmallResNet(width, in_channels=x_train.shape[1]).to(device).to(memory_format=torch.channels_last)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=epochs)
    lossf = nn.BCEWithLogitsLoss()
    best, best_state, best_epoch, wait, hist = -np.inf, None, -1, 0, []
    n_seen, t_train = 0, 0.0
    for ep in range(epochs):
        model.train()
        perm = torch.randperm(len(xt), generator=gen).to(device)  # one copy per epoch
        t0 = time.perf_counter()
        tot = torch.zeros((), device=device)
        it = range(0, len(perm), batch)
        if progress:
            it = tqdm(it, desc=f"{label} epoch {ep + 1}/{epochs}", unit="batch", leave=False)
        for s in it:
            idx = perm[s : s + batch]
            xb = _to_device(augment(xt[idx], gen), device)  # already there: only the memory layout
            opt.zero_grad(set_to_none=True)
            with _autocast(device):
                loss = lossf(model(xb), yt[idx])
            loss.backward()
            opt.step()
            tot += loss.detach() * len(idx)
        sched.step()
        if device.type == "cuda":
            torch.cuda.synchronize()
        t_train += time.perf_counter() - t0
        n_seen += len(perm)
        val_auc = auroc(y_val, _predict_normalised(model, xv, device))
        hist.append({"epoch": ep + 1, "train_loss": float(tot) / len(perm), "val_auroc": val_auc})
        if val_auc > best:
            best, best_epoch, wait = val_auc, ep + 1, 0
            best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
        else:
            wait += 1
            if wait >= patience:
                break
    model.load_state_dict(best_state)
    if device.type == "cpu":  # the caller's settings back
        torch.use_deterministic_algorithms(was[0])
        torch.utils.deterministic.fill_uninitialized_memory = was[1]
    rate = n_seen / max(t_train, 1e-9)
    _log_throughput(label, device, rate, len(xt), len(hist))
    return TrainResult(model, norm, pd.DataFrame(hist), best_epoch, rate)
