r"""Errors of a finite-element solution against an exact solution, by high-order quadrature.

.. math::
    \|u - u_h\|_{L^2(\Omega)} = \Big(\int_\Omega |u - u_h|^2\,dx\Big)^{1/2}, \qquad
    |u - u_h|_{H^1(\Omega)} = \Big(\int_\Omega |\nabla u - \nabla u_h|^2\,dx\Big)^{1/2}

The integrals use a basis with quadrature degree ``2·degree + 4`` by default (exact for the
polynomial part of the integrand, and accurate enough for smooth exact solutions that the error of
the quadrature stays far below the discretisation error being measured). The quadrature basis is
built per call: errors are diagnostics, not part of the per-sample path.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from skfem import Basis, Functional
from skfem.helpers import inner

from pdebench.solvers.fem.spaces import FunctionSpace


@Functional
def _squared_difference(w):
    """:math:`\\int |w_{uh} - w_{exact}|^2`."""
    difference = w.uh - w.exact
    return inner(difference, difference)


def _quadrature_basis(space: FunctionSpace, intorder: int | None):
    order = 2 * space.degree + 4 if intorder is None else intorder
    return Basis(space.mesh, space.basis.elem, intorder=order)


def _exact_values(fun: Callable[[np.ndarray], np.ndarray], x: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    values = np.asarray(fun(x), dtype=np.float64)
    if values.shape != shape:
        raise ValueError(f"exact function returned shape {values.shape}, expected {shape}")
    return values


def l2_error(
    space: FunctionSpace, u: np.ndarray, exact: Callable[[np.ndarray], np.ndarray], *, intorder: int | None = None
) -> float:
    r""":math:`\|u - u_h\|_{L^2}`.

    Parameters
    ----------
    space
        The space of ``u``.
    u
        DOF vector, shape ``(N,)``.
    exact
        ``exact(x)`` with ``x`` of shape ``(2, ...)`` returning ``(...)`` (scalar) or ``(2, ...)`` (vector).
    intorder
        Quadrature degree (default ``2·degree + 4``).
    """
    basis = _quadrature_basis(space, intorder)
    uh = np.asarray(basis.interpolate(np.asarray(u)))
    x = np.asarray(basis.global_coordinates())
    return float(np.sqrt(_squared_difference.assemble(basis, uh=uh, exact=_exact_values(exact, x, uh.shape))))


def h1_seminorm_error(
    space: FunctionSpace, u: np.ndarray, exact_grad: Callable[[np.ndarray], np.ndarray], *, intorder: int | None = None
) -> float:
    r""":math:`|u - u_h|_{H^1} = \|\nabla u - \nabla u_h\|_{L^2}`.

    Parameters
    ----------
    space
        The space of ``u``.
    u
        DOF vector, shape ``(N,)``.
    exact_grad
        ``exact_grad(x)`` with ``x`` of shape ``(2, ...)`` returning ``(2, ...)`` (scalar ``u``: the
        gradient ``(∂_x u, ∂_y u)``) or ``(2, 2, ...)`` (vector ``u``: ``[i, j] = ∂_j u_i``).
    intorder
        Quadrature degree (default ``2·degree + 4``).
    """
    basis = _quadrature_basis(space, intorder)
    uh = basis.interpolate(np.asarray(u))
    x = np.asarray(basis.global_coordinates())
    grad = np.asarray(uh.grad)
    return float(np.sqrt(_squared_difference.assemble(basis, uh=grad, exact=_exact_values(exact_grad, x, grad.shape))))
