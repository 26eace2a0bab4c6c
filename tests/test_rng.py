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
