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


def test_azimuthal_shuffle_keeps_each_ring_and_destroys_the_arc():
    from lensnb.preprocess import azimuthal_profile, azimuthal_shuffle

    rng = np.random.default_rng(1)
    x = rng.normal(size=(3, 3, 64, 64)).astype(np.float32)
    x[:, :, 20:24, 40:44] += 5.0  # a compact "arc" segment
    y = azimuthal_shuffle(x, np.random.default_rng(2))
    np.testing.assert_array_equal(azimuthal_profile(y), azimuthal_profile(x))  # ring medians kept
    for k in (0, 5, 17, 30):
        m = RING == k
        for i in range(3):
            np.testing.assert_array_equal(np.sort(y[i, 0, m]), np.sort(x[i, 0, m]))  # ring multisets kept
    # one permutation for all bands: shuffling the g - r difference image with the same draws gives y's g - r
    np.testing.assert_array_equal(y[:, 0] - y[:, 1], azimuthal_shuffle(x[:, :1] - x[:, 1:2], np.random.default_rng(2))[:, 0])
    assert (y[:, :, 20:24, 40:44] > 2.5).mean() < 0.5  # the segment is scattered round its rings


def test_core_dropout_touches_only_the_core():
    from lensnb.preprocess import core_dropout

    rng = np.random.default_rng(3)
    x = rng.normal(size=(200, 3, 64, 64)).astype(np.float32)
    y = core_dropout(x, np.random.default_rng(4), p=0.5, radius_px=4)
    r = np.hypot(*(np.mgrid[:64, :64] - 31.5))
    np.testing.assert_array_equal(y[:, :, r >= 4], x[:, :, r >= 4])
    changed = (y[:, :, r < 4] != x[:, :, r < 4]).any(axis=(1, 2))
    assert 0.35 < changed.mean() < 0.65  # about p of the images
    assert (np.ptp(y[changed][:, :, r < 4], axis=2) == 0).all()  # a constant (the annulus median) per band
    with pytest.raises(ValueError, match="p="):
        core_dropout(x, rng, p=1.5, radius_px=4)
