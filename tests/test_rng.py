"""Counter-based Gaussian noise."""
import numpy as np
import torch
from scipy import stats

from lensnb.rng import normal


def test_rows_depend_only_on_their_key():
    a = normal(3, 2, [5, 7, 9], (3, 8, 8))
    b = normal(3, 2, [9, 7], (3, 8, 8))
    assert torch.equal(a[1], b[1]) and torch.equal(a[2], b[0])
    assert not torch.equal(a[0], a[1])
    assert not torch.equal(normal(4, 2, [5], (3, 8, 8)), a[:1])  # seed matters
    assert not torch.equal(normal(3, 3, [5], (3, 8, 8)), a[:1])  # stream matters


def test_standard_normal_and_uncorrelated():
    z = normal(1, 0, np.arange(100), (3, 32, 32)).numpy().ravel()
    assert abs(z.mean()) < 0.01 and abs(z.std() - 1) < 0.01
    assert stats.kstest(z[:50000], "norm").pvalue > 1e-3
    assert abs(np.corrcoef(z[:-1], z[1:])[0, 1]) < 0.01


def _torch_form(seed, stream, keys, shape):
    """The int64 torch expression of the draws (what a GPU evaluates): the specification the CPU path must equal."""
    import math

    from lensnb.rng import _M, _combine

    keys = torch.as_tensor(np.asarray(keys, np.int64))
    base = _combine(_combine(torch.full_like(keys, seed & _M), stream), keys)
    idx = torch.arange(math.prod(shape), dtype=torch.int64)
    u1 = (_combine(base[:, None], 2 * idx[None, :]).double() + 0.5) / 4294967296.0
    u2 = (_combine(base[:, None], 2 * idx[None, :] + 1).double() + 0.5) / 4294967296.0
    z = torch.sqrt(-2.0 * torch.log(u1)) * torch.cos(2.0 * math.pi * u2)
    return z.float().reshape(len(keys), *shape)


def test_cpu_draws_equal_the_int64_torch_form_bit_for_bit():
    """The CPU path (uint32 hashes in place, in-place Box-Muller) gives the torch expression's values exactly,
    for keys and seeds beyond 32 bits too."""
    keys = [0, 5, 2**32 + 3, 2**40 + 65536 * 7 + 1, 123456789]
    for seed in (0, 42, 2**33 + 5):
        for stream in (0, 3):
            assert torch.equal(normal(seed, stream, keys, (3, 8, 8)), _torch_form(seed, stream, keys, (3, 8, 8)))
