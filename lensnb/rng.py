"""Counter-based random numbers in torch: the same values on any device and for any batching.

A Gaussian variate is a pure function of (seed, stream, key, element index): a 32-bit integer
hash (Wellons' "lowbias32", evaluated in int64 with masking, so CPU and CUDA agree bit for bit)
gives two uniforms per element, turned into a normal variate by Box-Muller in float64. Used for
pixel noise, so that a host's noise does not depend on which batch renders it.
"""
from __future__ import annotations

import math

import numpy as np
import torch

_M = 0xFFFFFFFF


def _hash32(x: torch.Tensor) -> torch.Tensor:
    x = x & _M
    x = x ^ (x >> 16)
    x = (x * 0x7FEB352D) & _M
    x = x ^ (x >> 15)
    x = (x * 0x846CA68B) & _M
    return x ^ (x >> 16)


def _combine(a: torch.Tensor, b) -> torch.Tensor:
    return _hash32(a ^ _hash32(torch.as_tensor(b, dtype=torch.int64, device=a.device) + 0x9E3779B9))


def normal(seed: int, stream: int, keys, shape: tuple[int, ...], device=None) -> torch.Tensor:
    """Standard normal variates, (len(keys), *shape) float32; row i depends only on (seed, stream, keys[i])."""
    if not isinstance(keys, torch.Tensor):
        keys = np.array(keys, dtype=np.int64)  # a writable copy (pandas hands out read-only views)
    keys = torch.as_tensor(keys, dtype=torch.int64, device=device)
    base = _combine(_combine(torch.full_like(keys, seed & _M), stream), keys)  # (N,)
    n = math.prod(shape)
    idx = torch.arange(n, dtype=torch.int64, device=keys.device)
    h1 = _combine(base[:, None], 2 * idx[None, :])
    h2 = _combine(base[:, None], 2 * idx[None, :] + 1)
    u1 = (h1.double() + 0.5) / 4294967296.0
    u2 = (h2.double() + 0.5) / 4294967296.0
    z = torch.sqrt(-2.0 * torch.log(u1)) * torch.cos(2.0 * math.pi * u2)
    return z.float().reshape(len(keys), *shape)
