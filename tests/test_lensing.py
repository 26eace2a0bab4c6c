"""Lens models and the image finder, against analytic SIS results and lenstronomy."""
import numpy as np
import pytest
import torch

from lensnb.lensing import (
    deflection, deflection_caustics, ellipticity_to_q_phi, find_images, lens_jacobian, q_phi_to_ellipticity,
    sis_images,
)

lenstronomy = pytest.importorskip("lenstronomy")
from lenstronomy.LensModel.lens_model import LensModel  # noqa: E402
from lenstronomy.LensModel.Solver.lens_equation_solver import LensEquationSolver  # noqa: E402


def _t(a):
    return torch.as_tensor(a, dtype=torch.float64)


def test_sis_formulas_satisfy_lens_equation():
    rng = np.random.default_rng(1)
    te = rng.uniform(0.5, 2.5, 200)
    beta = te * rng.uniform(0.01, 0.99, 200)
    s = sis_images(beta, te)
    # 1-d SIS lens equation beta = theta - theta_E sign(theta); inner image on the opposite side
    np.testing.assert_allclose(s["theta_plus"] - te, beta)
    np.testing.assert_allclose(-s["theta_minus"] + te, beta)
    np.testing.assert_allclose(s["mu_plus"] - s["mu_minus"], 2.0)  # |mu+| - |mu-| = 2 for the SIS
    far = sis_images(np.array([1.5]), np.array([1.0]))
    assert np.isnan(far["theta_minus"][0]) and np.isnan(far["mu_minus"][0])


def test_solver_reproduces_analytic_sis():
    rng = np.random.default_rng(2)
    n = 150
    te = rng.uniform(0.5, 2.5, n)
    frac = rng.uniform(0.02, 0.98, n)
    ang = rng.uniform(0, 2 * np.pi, n)
    bx, by = frac * te * np.cos(ang), frac * te * np.sin(ang)
    im = find_images(bx, by, te, 1.0, 0.0, 0.0, 0.0, device="cpu")
    s = sis_images(frac * te, te)
    assert (im.n == 2).all()
    # caustics regularises q = 1 to 1 - 1e-6, hence the 1e-5 arcsec tolerance
    np.testing.assert_allclose(im.r[:, 0], s["theta_minus"], atol=1e-5)
    np.testing.assert_allclose(im.r[:, 1], s["theta_plus"], atol=1e-5)
    np.testing.assert_allclose(np.abs(im.mu[:, 0]), s["mu_minus"], rtol=1e-4)
    np.testing.assert_allclose(np.abs(im.mu[:, 1]), s["mu_plus"], rtol=1e-4)
    assert (im.mu[:, 0] < 0).all() and (im.mu[:, 1] > 0).all()  # inner image has negative parity
    # the inner image sits on the opposite side of the centre from the source
    cosang = (im.x[:, 0] * bx + im.y[:, 0] * by) / (im.r[:, 0] * frac * te)
    np.testing.assert_allclose(cosang, -1.0, atol=1e-6)


def _random_sie(n, seed):
    rng = np.random.default_rng(seed)
    te = rng.uniform(0.5, 2.5, n)
    e1, e2 = rng.normal(0, 0.15, n), rng.normal(0, 0.15, n)
    g1, g2 = rng.normal(0, 0.05, n), rng.normal(0, 0.05, n)
    r = te * np.sqrt(rng.uniform(0, 1, n)) * 1.2
    a = rng.uniform(0, 2 * np.pi, n)
    return te, e1, e2, g1, g2, r * np.cos(a), r * np.sin(a)


def test_deflection_matches_lenstronomy():
    te, e1, e2, g1, g2, x, y = _random_sie(300, 3)
    q, phi = ellipticity_to_q_phi(e1, e2)
    ax, ay = deflection(_t(x), _t(y), _t(te), _t(q), _t(phi), _t(g1), _t(g2))
    a11, a12, a21, a22 = (a.numpy() for a in lens_jacobian(_t(x), _t(y), _t(te), _t(q), _t(phi), _t(g1), _t(g2)))
    lm = LensModel(["SIE", "SHEAR"])
    for i in range(len(x)):
        kw = [dict(theta_E=te[i], e1=e1[i], e2=e2[i], center_x=0, center_y=0),
              dict(gamma1=g1[i], gamma2=g2[i], ra_0=0, dec_0=0)]
        rx, ry = lm.alpha(x[i], y[i], kw)
        assert abs(ax[i].item() - rx) < 1e-8 and abs(ay[i].item() - ry) < 1e-8
        # Jacobian A = 1 - Hessian of the potential (lenstronomy differentiates the SIE numerically)
        fxx, fxy, fyx, fyy = lm.hessian(x[i], y[i], kw)
        np.testing.assert_allclose([a11[i], a12[i], a21[i], a22[i]], [1 - fxx, -fxy, -fyx, 1 - fyy], atol=1e-5)



@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_deflection_is_caustics_bit_for_bit(dtype):
    """The in-place deflection repeats caustics' arithmetic exactly: on a batch of sub-pixel grids (parameters
    (B, 1, 1) against a shared (1, G, G) grid, as the renderer calls it), per-point parameters (as the refinement
    and the image finder call it), a round lens (q = 1) and mixed dtypes (handed to caustics)."""
    g = torch.Generator().manual_seed(1)
    B, G = 6, 48
    p = [torch.rand(B, generator=g, dtype=torch.float64) * w + o for w, o in ((1, 0.6), (0.6, 0.4), (3, 0), (0.2, -0.1),
                                                                          (0.2, -0.1))]
    p[1][0] = 1.0
    grid = (torch.rand((2, 1, G, G), generator=g, dtype=torch.float64) - 0.5) * 8
    cases = [((grid[0], grid[1]), [t.to(dtype)[:, None, None] for t in p]),
             ((grid[0, 0, :B, :9], grid[1, 0, :B, :9]), [t.to(dtype)[:, None] for t in p]),
             ((grid[0], grid[1]), [p[0].to(dtype)[:, None, None], *(t[0].to(dtype) for t in p[1:])])]
    for (x, y), par in cases:
        x, y = x.to(dtype), y.to(dtype)
        got, ref = deflection(x, y, *par), deflection_caustics(x, y, *par)
        assert got[0].shape == ref[0].shape and got[0].dtype == ref[0].dtype
        assert torch.equal(got[0], ref[0]) and torch.equal(got[1], ref[1])
    mixed = [par[0].double(), *par[1:]]
    assert torch.equal(deflection(x, y, *mixed)[0], deflection_caustics(x, y, *mixed)[0])


def test_sie_shear_images_match_lenstronomy():
    """Every lenstronomy image is found within 0.01 arcsec with |mu| within 1%; any extra lensnb image
    solves the lens equation according to lenstronomy's own ray shooting (lenstronomy's grid search
    misses strongly demagnified images next to the singular centre)."""
    te, e1, e2, g1, g2, sx, sy = _random_sie(120, 4)
    q, phi = ellipticity_to_q_phi(e1, e2)
    im = find_images(sx, sy, te, q, phi, g1, g2, device="cpu")
    lm = LensModel(["SIE", "SHEAR"])
    solver = LensEquationSolver(lm)
    matched = extra = 0
    for i in range(len(te)):
        kw = [dict(theta_E=te[i], e1=e1[i], e2=e2[i], center_x=0, center_y=0),
              dict(gamma1=g1[i], gamma2=g2[i], ra_0=0, dec_0=0)]
        xs, ys = solver.image_position_from_source(
            sx[i], sy[i], kw, min_distance=0.01, search_window=6 * te[i], precision_limit=1e-10, num_iter_max=100)
        mine_x, mine_y, mine_mu = im.x[i, : im.n[i]], im.y[i, : im.n[i]], im.mu[i, : im.n[i]]
        used = set()
        for x, y, mu in zip(xs, ys, lm.magnification(xs, ys, kw)):
            d = np.hypot(mine_x - x, mine_y - y)
            j = int(np.argmin(d))
            assert d[j] <= 0.01, f"system {i}: lenstronomy image ({x:.4f}, {y:.4f}) not found"
            assert mine_mu[j] == pytest.approx(mu, rel=0.01)
            used.add(j)
            matched += 1
        for j in set(range(im.n[i])) - used:
            bx, by = lm.ray_shooting(mine_x[j], mine_y[j], kw)
            assert np.hypot(bx - sx[i], by - sy[i]) < 1e-6, f"system {i}: extra image is not a solution"
            assert abs(mine_mu[j]) < 0.2  # only faint central images may be missed by lenstronomy
            extra += 1
    assert matched > 1.5 * len(te)  # most systems are multiply imaged
    assert extra <= 0.05 * matched


def test_ellipticity_round_trip():
    q, phi = np.array([0.3, 0.7, 0.99]), np.array([0.1, -1.2, 1.5])
    e1, e2 = q_phi_to_ellipticity(q, phi)
    q2, phi2 = ellipticity_to_q_phi(e1, e2)
    np.testing.assert_allclose(q2, q)
    np.testing.assert_allclose(np.cos(2 * phi2), np.cos(2 * phi), atol=1e-12)


def test_analytic_jacobian_matches_autograd():
    """The closed-form SIE + shear Jacobian equals autograd through caustics' deflection to 1e-9,
    including round lenses (q = 1, where caustics perturbs q) and points far from and near the centre."""
    from lensnb.lensing import lens_jacobian_autograd

    te, e1, e2, g1, g2, x, y = _random_sie(500, 11)
    q, phi = ellipticity_to_q_phi(e1, e2)
    q[:50] = 1.0
    x[50:100] *= 1e-3
    args = [_t(a) for a in (x, y, te, q, phi, g1, g2)]
    exact = torch.stack(lens_jacobian(*args))
    ref = torch.stack(lens_jacobian_autograd(*args))
    assert torch.allclose(exact, ref, rtol=1e-9, atol=1e-9)
    # a frame rotated the wrong way would be caught
    assert not torch.allclose(exact, torch.stack(lens_jacobian(*args[:4], -args[4], *args[5:])), atol=1e-3)


def test_six_image_system_matches_lenstronomy():
    """A system from the geometry chapter's log-uniform prior (50,000 draws, seed 44, row 39610): an SIE
    with a strong misaligned shear and the source near the centre has six images, all found."""
    te, sx, sy = 0.6094820586854144, 0.0027124672825363585, 0.00027418271309629977
    q, phi, g1, g2 = 0.6396646699038138, -0.5308638636592566, 0.07134693126067855, -0.12436281164448384
    im = find_images(sx, sy, te, q, phi, g1, g2, device="cpu")
    assert im.n[0] == 6
    e1, e2 = q_phi_to_ellipticity(q, phi)
    lm = LensModel(["SIE", "SHEAR"])
    kw = [dict(theta_E=te, e1=float(e1), e2=float(e2), center_x=0, center_y=0),
          dict(gamma1=g1, gamma2=g2, ra_0=0, dec_0=0)]
    xs, ys = LensEquationSolver(lm).image_position_from_source(
        sx, sy, kw, min_distance=0.005, search_window=4 * te, precision_limit=1e-10, num_iter_max=200)
    assert len(xs) == 6
    for x, y, mu in zip(xs, ys, lm.magnification(xs, ys, kw)):
        j = int(np.argmin(np.hypot(im.x[0] - x, im.y[0] - y)))
        assert np.hypot(im.x[0, j] - x, im.y[0, j] - y) < 1e-6
        assert im.mu[0, j] == pytest.approx(mu, rel=1e-4)


def _point_in_triangles(px, py, ax, ay, bx, by, cx, cy):
    """The image finder's triangle test as it was first written: p inside (a, b, c) by the signs of three edge
    functions (the reference ``lensing._triangle_hits`` must equal)."""
    s1 = (bx - ax) * (py - ay) - (by - ay) * (px - ax)
    s2 = (cx - bx) * (py - by) - (cy - by) * (px - bx)
    s3 = (ax - cx) * (py - cy) - (ay - cy) * (px - cx)
    pos = (s1 >= 0) & (s2 >= 0) & (s3 >= 0)
    neg = (s1 <= 0) & (s2 <= 0) & (s3 <= 0)
    area = s1 + s2 + s3  # twice the signed area of the triangle
    return (pos | neg) & (area != 0), s1, s2, s3, area


def test_triangle_hits_are_the_point_in_triangle_tests_bit_for_bit():
    """The image finder's rearranged triangle search gives the cells, and the barycentric weights bit for bit, of
    the plain edge-function test (``_point_in_triangles`` above) on every triangle of a ray-traced polar grid."""
    from lensnb import lensing

    g = torch.Generator().manual_seed(5)
    m, nr, na = 7, 30, 33
    r = torch.logspace(-3, 0.5, nr, dtype=torch.float64)[None, :, None]
    a = torch.linspace(0, 2 * np.pi, na, dtype=torch.float64)[None, None, :]
    gx, gy = r * torch.cos(a) * torch.ones((m, 1, 1), dtype=torch.float64), r * torch.sin(a)
    p = [torch.rand(m, generator=g, dtype=torch.float64)[:, None, None] * w + o
         for w, o in ((1, 0.8), (0.5, 0.5), (3, 0), (0.1, -0.05), (0.1, -0.05))]
    bx, by = lensing.ray_trace(gx, gy.expand_as(gx), *p)
    sx, sy = (torch.rand(m, generator=g, dtype=torch.float64) - 0.5) * 0.6, torch.zeros(m, dtype=torch.float64)
    sy[0], sx[0] = float(by[0, 5, 7]), float(bx[0, 5, 7])  # a source on a grid vertex: edge cases (s = 0)
    hits = lensing._triangle_hits(sx, sy, bx, by, nr, na)
    assert sum(len(h[0]) for h in hits) >= m  # every system has images
    for (k, i, j, w, *_), tri in zip(hits, lensing.TRIANGLES):
        corners = [(lensing._v(bx, ci, cj, nr, na), lensing._v(by, ci, cj, nr, na)) for ci, cj in tri]
        inside, s1, s2, s3, area = _point_in_triangles(sx[:, None, None], sy[:, None, None],
                                                               *(c for xy in corners for c in xy))
        kk, ii, jj = torch.nonzero(inside, as_tuple=True)
        assert torch.equal(k, kk) and torch.equal(i, ii) and torch.equal(j, jj)
        A = area[kk, ii, jj]
        for got, want in zip(w, (s2[kk, ii, jj] / A, s3[kk, ii, jj] / A, s1[kk, ii, jj] / A)):
            assert torch.equal(got, want)
