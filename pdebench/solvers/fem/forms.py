r"""Weak forms, written as the mathematics reads (scikit-fem ``BilinearForm`` / ``LinearForm``).

Every coefficient arrives through ``w`` as values at the quadrature points, shape
``(n_elements, n_quadrature)`` (``(n_facets, n_quadrature)`` on a facet basis); a vector load ``f``
as ``(2, n_elements, n_quadrature)``. ``inner`` is the product that fits the field's rank (``u v``
for scalars, ``u·v`` for vectors), so the mass and load forms serve scalar and vector spaces alike.
"""

from __future__ import annotations

from skfem import BilinearForm, LinearForm
from skfem.helpers import ddot, dot, grad, inner, sym_grad, trace


@BilinearForm
def diffusion(u, v, w):
    r""":math:`\int_\Omega a\,\nabla u\cdot\nabla v\,dx` (the weak :math:`-\nabla\cdot(a\nabla u)`)."""
    return w.a * dot(grad(u), grad(v))


@BilinearForm
def mass(u, v, w):
    r""":math:`\int \rho\, u\cdot v` (cells) or :math:`\int_\Gamma \rho\, u v\,ds` (facets, Robin term)."""
    return w.rho * inner(u, v)


@BilinearForm
def helmholtz(u, v, w):
    r""":math:`\int_\Omega \nabla u\cdot\nabla v - k^2 u v\,dx` (the weak :math:`-\Delta u - k^2 u`)."""
    return dot(grad(u), grad(v)) - w.k**2 * u * v


@BilinearForm
def elasticity(u, v, w):
    r""":math:`\int_\Omega \sigma(u):\varepsilon(v)\,dx` with
    :math:`\sigma = 2\mu\,\varepsilon(u) + \lambda\,\mathrm{tr}\,\varepsilon(u)\,I`,
    :math:`\varepsilon(u) = \tfrac12(\nabla u + \nabla u^T)` (linear, isotropic, plane strain)."""
    eps_u, eps_v = sym_grad(u), sym_grad(v)
    return 2.0 * w.mu * ddot(eps_u, eps_v) + w.lam * trace(eps_u) * trace(eps_v)


@LinearForm
def load(v, w):
    r""":math:`\int f\cdot v` (body load on cells, Neumann/Robin data :math:`\int_\Gamma g v\,ds` on facets)."""
    return inner(w.f, v)
