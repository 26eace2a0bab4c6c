"""Input transforms: the azimuthal-median residual."""
import numpy as np
import pytest

from lensnb.preprocess import RING, azimuthal_residual


def test_residual_removes_a_ring_symmetric_profile_exactly_and_keeps_a_planted_feature():
    rng = np.random.default_rng(0)
    prof = np.exp(-np.arange(RING.max() + 1) / 4.0)
    img = np.stack([np.stack([a * prof[RING] for a in (1.0, 2.0, 3.0)])] * 2).astype(np.float32)
    np.testing.assert_allclose(azimuthal_residual(img), 0, atol=1e-6)
    planted = img.copy()
    planted[1, 1, 40, 45] += 0.5  # one off-centre pixel: a ring of dozens of pixels keeps its median
    res = azimuthal_residual(planted)
    assert res[1, 1, 40, 45] == pytest.approx(0.5, abs=1e-6)
    np.testing.assert_allclose(np.delete(res[1, 1].ravel(), 40 * 64 + 45), 0, atol=1e-6)
    np.testing.assert_allclose(res[0], 0, atol=1e-6)  # other images untouched
    noisy = img + rng.normal(0, 0.01, img.shape).astype(np.float32)
    assert abs(np.median(azimuthal_residual(noisy))) < 1e-3


def test_residual_refuses_wrong_shapes():
    with pytest.raises(ValueError, match="64, 64"):
        azimuthal_residual(np.zeros((2, 3, 32, 32)))
