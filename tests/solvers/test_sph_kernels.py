"""SPH kernels: normalisation by quadrature, gradient against autograd, compact support, errors."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from pdebench.solvers.sph import CubicSpline, Kernel, WendlandC2, make_kernel

NAMES = ["wendland_c2", "cubic_spline"]


def radial_integral(kernel: Kernel, h: float) -> float:
    """``int_{R^d} W`` by Gauss-Legendre on ``[0, h]`` and ``[h, 2h]`` (exact for these piecewise polynomials)."""
    nodes, weights = np.polynomial.legendre.leggauss(20)
    total = 0.0
    for a, b in [(0.0, h), (h, kernel.support * h)]:
        r = torch.tensor(0.5 * (b - a) * nodes + 0.5 * (a + b), dtype=torch.float64)
        shell = {1: 2.0, 2: 2 * math.pi * r, 3: 4 * math.pi * r**2}[kernel.dim]
        total += float((torch.as_tensor(weights) * shell * kernel.w(r, h)).sum()) * 0.5 * (b - a)
    return total


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("dim", [1, 2, 3])
@pytest.mark.parametrize("h", [0.37, 1.0, 2.5])
def test_kernel_integrates_to_one_radially(name, dim, h):
    assert radial_integral(make_kernel(name, dim), h) == pytest.approx(1.0, abs=1e-12)


@pytest.mark.parametrize("name", NAMES)
def test_kernel_integrates_to_one_on_a_cartesian_grid_in_2d(name):
    # Independent of the radial formula: midpoint rule on a 2-D grid covering the support.
    kernel, h, n = make_kernel(name, 2), 0.3, 600
    edge = kernel.support * h
    x = (torch.arange(n, dtype=torch.float64) + 0.5) / n * 2 * edge - edge
    xx, yy = torch.meshgrid(x, x, indexing="ij")
    integral = float(kernel.w(torch.sqrt(xx**2 + yy**2), h).sum()) * (2 * edge / n) ** 2
    assert integral == pytest.approx(1.0, abs=1e-5)


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("dim", [1, 2, 3])
def test_grad_w_over_r_matches_autograd(name, dim):
    kernel, h = make_kernel(name, dim), 0.7
    r = torch.linspace(1e-3, kernel.support * h * 0.999, 301, dtype=torch.float64, requires_grad=True)
    (dw_dr,) = torch.autograd.grad(kernel.w(r, h).sum(), r)
    expected = dw_dr / r.detach()
    got = kernel.grad_w_over_r(r.detach(), h)
    scale = float(expected.abs().max())
    assert torch.allclose(got, expected, rtol=1e-10, atol=1e-12 * scale)


@pytest.mark.parametrize("name", NAMES)
def test_vector_gradient_matches_autograd_and_finite_differences_in_3d(name):
    kernel, h = make_kernel(name, 3), 0.5
    gen = torch.Generator().manual_seed(3)
    x = (torch.rand(200, 3, generator=gen, dtype=torch.float64) - 0.5) * 2.2 * h
    x.requires_grad_(True)
    (grad,) = torch.autograd.grad(kernel.w(x.norm(dim=1), h).sum(), x)
    x = x.detach()
    got = kernel.grad_w_over_r(x.norm(dim=1), h)[:, None] * x  # grad_i W_ij with x_ij = x
    assert torch.allclose(got, grad, rtol=1e-10, atol=1e-12)
    eps = 1e-6
    fd = torch.stack([(kernel.w((x + eps * e).norm(dim=1), h) - kernel.w((x - eps * e).norm(dim=1), h)) / (2 * eps)
                      for e in torch.eye(3, dtype=torch.float64)], dim=1)
    assert torch.allclose(got, fd, rtol=1e-6, atol=1e-6 * float(fd.abs().max()))


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("dim", [1, 2, 3])
def test_kernel_vanishes_at_and_beyond_support_and_is_finite_at_zero(name, dim):
    kernel, h = make_kernel(name, dim), 0.4
    assert kernel.support == 2.0 and kernel.radius(h) == pytest.approx(0.8)
    r = torch.tensor([2.0, 2.0 + 1e-12, 2.5, 10.0], dtype=torch.float64) * h
    assert (kernel.w(r, h) == 0).all() and (kernel.grad_w_over_r(r, h) == 0).all()
    just_inside = torch.tensor([1.999 * h], dtype=torch.float64)
    assert kernel.w(just_inside, h) > 0
    zero = torch.zeros(1, dtype=torch.float64)
    assert torch.isfinite(kernel.w(zero, h)).all() and torch.isfinite(kernel.grad_w_over_r(zero, h)).all()
    assert kernel.grad_w_over_r(zero, h) < 0
    q = torch.linspace(0, 2, 201, dtype=torch.float64) * h
    w = kernel.w(q, h)
    assert (w >= 0).all() and (w[1:] <= w[:-1]).all()  # positive, non-increasing
    assert kernel.w(q, h).dtype == torch.float64


def test_tensor_smoothing_length_broadcasts():
    kernel = WendlandC2(2)
    r = torch.tensor([0.1, 0.2, 0.3], dtype=torch.float64)
    h = torch.tensor([0.5, 1.0, 2.0], dtype=torch.float64)
    expected = torch.stack([kernel.w(r[k : k + 1], float(h[k]))[0] for k in range(3)])
    assert torch.allclose(kernel.w(r, h), expected, rtol=0, atol=0)


def test_make_kernel_builds_the_right_class_and_rejects_bad_names():
    assert make_kernel("wendland_c2", 2) == WendlandC2(2)
    assert make_kernel("cubic_spline", 3) == CubicSpline(3)
    with pytest.raises(ValueError, match="quintic.*cubic_spline, wendland_c2"):
        make_kernel("quintic", 2)
    with pytest.raises(ValueError, match="dim must be 1, 2 or 3"):
        make_kernel("wendland_c2", 4)
