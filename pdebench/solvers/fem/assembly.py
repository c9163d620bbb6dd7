r"""Assembled operators and load vectors on a :class:`~.spaces.FunctionSpace`.

Each function evaluates its coefficients at the quadrature points of the space's prebuilt basis and
assembles one of the forms of :mod:`.forms` (vectorised over all elements by scikit-fem). Matrices are
``scipy.sparse.csr_matrix`` of shape ``(N, N)``, vectors ``numpy.ndarray`` of shape ``(N,)``, with
``N = space.ndofs``.

Boundary conditions for :math:`-\nabla\cdot(a\nabla u) = f`:

* Dirichlet :math:`u = g`: condense, see :mod:`.dirichlet`;
* Neumann :math:`a\,\partial_n u = g` on :math:`\Gamma_N`: add ``boundary_load(facet_basis, g)`` to
  the right-hand side;
* Robin :math:`a\,\partial_n u + \alpha u = g` on :math:`\Gamma_R`: add
  ``boundary_mass(facet_basis, alpha)`` to the matrix and ``boundary_load(facet_basis, g)`` to the
  right-hand side.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import scipy.sparse as sp
from skfem import FacetBasis

from pdebench.solvers.fem import forms
from pdebench.solvers.fem.spaces import Coefficient, FunctionSpace, Location, require_positive


def diffusion_matrix(space: FunctionSpace, a: Coefficient = 1.0, *, at: Location | None = None) -> sp.csr_matrix:
    r"""Stiffness matrix :math:`K_{ij} = \int_\Omega a\,\nabla\phi_j\cdot\nabla\phi_i\,dx`.

    Parameters
    ----------
    space
        Scalar space.
    a
        Diffusion coefficient (see :meth:`FunctionSpace.coefficient`), must be positive.
    at
        Location of an array ``a`` (``"elements"``, ``"vertices"``, ``"quadrature"``), inferred if ``None``.

    Raises
    ------
    ValueError
        If ``a`` is not positive everywhere (naming the minimum value).
    """
    _require_scalar(space, "diffusion_matrix")
    values = require_positive(space.coefficient(a, at=at, name="diffusion coefficient a"), "diffusion coefficient a")
    return forms.diffusion.assemble(space.basis, a=values).tocsr()


def mass_matrix(space: FunctionSpace, rho: Coefficient = 1.0, *, at: Location | None = None) -> sp.csr_matrix:
    r"""Mass matrix :math:`M_{ij} = \int_\Omega \rho\,\phi_j\cdot\phi_i\,dx` (scalar or vector space)."""
    values = space.coefficient(rho, at=at, name="density rho")
    return forms.mass.assemble(space.basis, rho=values).tocsr()


def helmholtz_matrix(space: FunctionSpace, k: Coefficient, *, at: Location | None = None) -> sp.csr_matrix:
    r"""Helmholtz matrix :math:`H_{ij} = \int_\Omega \nabla\phi_j\cdot\nabla\phi_i - k^2\phi_j\phi_i\,dx`.

    Indefinite once :math:`k^2` exceeds the first Dirichlet eigenvalue; singular at a resonance.

    Parameters
    ----------
    space
        Scalar space.
    k
        Wavenumber (constant or a field, see :meth:`FunctionSpace.coefficient`).
    """
    _require_scalar(space, "helmholtz_matrix")
    values = space.coefficient(k, at=at, name="wavenumber k")
    return forms.helmholtz.assemble(space.basis, k=values).tocsr()


def lame_parameters(E: np.ndarray | float, nu: np.ndarray | float) -> tuple[np.ndarray, np.ndarray]:
    r"""Lamé parameters from Young's modulus and Poisson's ratio (valid for plane strain and 3D).

    .. math:: \lambda = \frac{E\nu}{(1+\nu)(1-2\nu)},\qquad \mu = \frac{E}{2(1+\nu)}

    Raises
    ------
    ValueError
        If ``E <= 0`` anywhere or ``nu`` is outside ``(-1, 0.5)``.
    """
    E = np.asarray(E, dtype=np.float64)
    nu = np.asarray(nu, dtype=np.float64)
    if np.min(E) <= 0:
        raise ValueError(f"Young's modulus E must be positive; minimum value {float(np.min(E)):g}")
    if np.min(nu) <= -1 or np.max(nu) >= 0.5:
        raise ValueError(f"Poisson ratio nu must lie in (-1, 0.5); got range [{np.min(nu):g}, {np.max(nu):g}]")
    return E * nu / ((1 + nu) * (1 - 2 * nu)), E / (2 * (1 + nu))


def elasticity_matrix(
    space: FunctionSpace, E: Coefficient, nu: Coefficient, *, at: Location | None = None
) -> sp.csr_matrix:
    r"""Plane-strain stiffness :math:`\int_\Omega \sigma(\phi_j):\varepsilon(\phi_i)\,dx` with varying ``E(x)``.

    Parameters
    ----------
    space
        Vector space (``FunctionSpace(mesh, family, vector=True)``).
    E
        Young's modulus (constant or field, see :meth:`FunctionSpace.coefficient`), positive.
    nu
        Poisson ratio in ``(-1, 0.5)``, constant or field.
    at
        Location of array-valued ``E`` / ``nu``.
    """
    if not space.vector:
        raise ValueError("elasticity_matrix needs a vector space: FunctionSpace(mesh, family, vector=True)")
    E_q = space.coefficient(E, at=at, name="Young's modulus E")
    nu_q = space.coefficient(nu, at=at, name="Poisson ratio nu")
    lam, mu = lame_parameters(E_q, nu_q)
    return forms.elasticity.assemble(space.basis, lam=lam, mu=mu).tocsr()


def load_vector(space: FunctionSpace, f: Coefficient | Sequence[Coefficient], *, at: Location | None = None) -> np.ndarray:
    r"""Load vector :math:`b_i = \int_\Omega f\cdot\phi_i\,dx`, shape ``(N,)``.

    Parameters
    ----------
    space
        Scalar or vector space.
    f
        Scalar space: a coefficient (see :meth:`FunctionSpace.coefficient`). Vector space: a pair of
        coefficients ``(f_x, f_y)``, or a callable ``f(x)`` returning shape ``(2, ...)``.
    """
    return np.asarray(forms.load.assemble(space.basis, f=_load_values(space, f, at)))


def boundary_mass(facet_basis: FacetBasis, alpha: Coefficient = 1.0) -> sp.csr_matrix:
    r"""Robin matrix :math:`R_{ij} = \int_\Gamma \alpha\,\phi_j\phi_i\,ds` over the facet basis' facets.

    Parameters
    ----------
    facet_basis
        From :meth:`FunctionSpace.facet_basis` (built once, reused).
    alpha
        Constant, callable ``alpha(x)`` or array ``(n_facets, n_quadrature)`` at facet quadrature points.
    """
    return forms.mass.assemble(facet_basis, rho=_facet_values(facet_basis, alpha, "Robin coefficient alpha")).tocsr()


def boundary_load(facet_basis: FacetBasis, g: Coefficient) -> np.ndarray:
    r"""Neumann/Robin data vector :math:`b_i = \int_\Gamma g\,\phi_i\,ds`, shape ``(N,)`` (scalar spaces)."""
    return np.asarray(forms.load.assemble(facet_basis, f=_facet_values(facet_basis, g, "boundary data g")))


# ------------------------------------------------------------------------------------------ helpers
def _require_scalar(space: FunctionSpace, what: str) -> None:
    if space.vector:
        raise ValueError(f"{what} needs a scalar space, got a vector space")


def _load_values(space: FunctionSpace, f, at: Location | None) -> np.ndarray:
    if not space.vector:
        return space.coefficient(f, at=at, name="load f")
    if callable(f):
        values = np.asarray(f(space.quadrature_points), dtype=np.float64)
        values = np.broadcast_to(values, (2, *space.quadrature_points.shape[1:]))
        if not np.isfinite(values).all():
            raise ValueError("load f has non-finite values")
        return values
    if isinstance(f, (tuple, list)) and len(f) == 2:
        return np.stack([space.coefficient(fk, at=at, name=f"load f[{k}]") for k, fk in enumerate(f)])
    raise ValueError("a vector load must be a pair (f_x, f_y) of coefficients or a callable f(x) -> (2, ...)")


def _facet_values(facet_basis: FacetBasis, value: Coefficient | Callable, name: str) -> np.ndarray:
    x = np.asarray(facet_basis.global_coordinates())
    shape = x.shape[1:]
    if callable(value):
        out = np.broadcast_to(np.asarray(value(x), dtype=np.float64), shape)
    else:
        array = np.asarray(value, dtype=np.float64)
        if array.ndim != 0 and array.shape != shape:
            raise ValueError(f"{name}: shape {array.shape}; expected a scalar or {shape} (facet quadrature points)")
        out = np.broadcast_to(array, shape)
    if not np.isfinite(out).all():
        raise ValueError(f"{name} has non-finite values")
    return np.ascontiguousarray(out)
