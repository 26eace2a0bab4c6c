"""One quantity, one number: an on-disk cache of computed results, keyed like the datasets.

A chapter that needs a number another chapter computes (a trained model, a gate table) asks for it by
the same inputs and gets the same bytes back, instead of recomputing it with slightly different
settings. A key is a hash of every input that can change the result: the data's fingerprint (file
names, sizes, modification times), the parameters, and the source of the lensnb modules that compute
it; a trained model is keyed by a digest of its training inputs themselves (``array_digest``) and the
training code, so a change elsewhere in the library does not retrain what it cannot change. Nothing is unpickled: tables are Parquet, models are ``torch.save`` state dicts loaded with
``weights_only=True``. Entries live under ``data/processed/results`` (a build output; ``make
clean-data`` removes them).
"""
from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd

from . import config


def cache_dir() -> Path:
    return config.PROCESSED_DIR / "results"


def fingerprint(path) -> str:
    """A short hash of a Parquet file or directory: each file's name, size and modification time."""
    p = Path(path)
    files = sorted(p.rglob("*.parquet")) if p.is_dir() else [p]
    h = hashlib.sha256()
    for f in files:
        st = f.stat()
        h.update(f"{f.resolve()}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
    return h.hexdigest()[:16]


def code_hash(*modules: str) -> str:
    """Hash of lensnb module sources (names without ``.py``)."""
    here = Path(__file__).resolve().parent
    h = hashlib.sha256()
    for m in sorted(set(modules)):
        h.update((here / f"{m}.py").read_bytes())
    return h.hexdigest()[:12]


def array_digest(*arrays) -> str:
    """A 16-hex-digit SHA-256 of arrays' dtypes, shapes and bytes: the identity of a model's training inputs, so a
    cached model is reused exactly when the images and labels it would be trained on are the same, whatever code
    produced them."""
    h = hashlib.sha256()
    for a in arrays:
        a = np.ascontiguousarray(a)
        h.update(f"{a.dtype.str}{a.shape}".encode())
        h.update(memoryview(a).cast("B"))
    return h.hexdigest()[:16]


def key(parts: dict) -> str:
    """A 16-hex-digit key of a JSON-serialisable description of the inputs."""
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:16]


def _atomic_write(path: Path, write) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        write(tmp)
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _umask() -> int:
    m = os.umask(0)
    os.umask(m)
    return m


def cached_frame(name: str, parts: dict, compute) -> pd.DataFrame:
    """The DataFrame ``compute()`` returns for these inputs, computed once and then read back."""
    path = cache_dir() / f"{name}_{key(parts)}.parquet"
    if path.exists():
        return pd.read_parquet(path)
    frame = compute()
    _atomic_write(path, lambda tmp: frame.to_parquet(tmp, index=False))
    return frame


def cached_array(name: str, parts: dict, compute) -> np.ndarray:
    """The array ``compute()`` returns for these inputs, computed once and then read back (``.npy``, never
    unpickled)."""
    path = cache_dir() / f"{name}_{key(parts)}.npy"
    if path.exists():
        return np.load(path, allow_pickle=False)
    arr = np.asarray(compute())

    def write(tmp):
        with open(tmp, "wb") as f:  # a file object: np.save given a path would append ".npy" to the temporary name
            np.save(f, arr, allow_pickle=False)

    _atomic_write(path, write)
    return arr


def model_path(name: str, parts: dict) -> Path:
    return cache_dir() / f"{name}_{key(parts)}.pt"


def save_torch(path: Path, obj: dict) -> None:
    import torch

    _atomic_write(path, lambda tmp: torch.save(obj, tmp))


def load_torch(path: Path) -> dict:
    import torch

    return torch.load(path, map_location="cpu", weights_only=True)
