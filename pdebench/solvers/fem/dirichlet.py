r"""Dirichlet conditions by condensation, and a direct solve of the reduced system.

Splitting the unknowns into free (``I``) and prescribed (``D``) degrees of freedom,

.. math:: A_{II}\,x_I = b_I - A_{ID}\,x_D ,

is the reduced system: symmetric positive definite whenever ``A`` is (diffusion, elasticity with
enough boundary), indefinite for Helmholtz. Krylov solvers work on :attr:`CondensedSystem.A` /
:attr:`CondensedSystem.b`; :meth:`CondensedSystem.expand` puts the prescribed values back.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp
import scipy.sparse.linalg as spla


@dataclass(frozen=True)
class CondensedSystem:
    """The reduced system ``A x = b`` on the free degrees of freedom.

    Attributes
    ----------
    A
        ``A_II``, CSR of shape ``(n_free, n_free)``.
    b
        ``b_I - A_ID x_D``, shape ``(n_free,)``.
    free
        Indices of the free DOFs in the full vector, shape ``(n_free,)``, sorted.
    prescribed
        Indices of the Dirichlet DOFs, shape ``(n_prescribed,)``, sorted.
    values
        Prescribed values ``x_D``, shape ``(n_prescribed,)``.
    ndofs
        Length ``N`` of the full vector.
    """

    A: sp.csr_matrix
    b: np.ndarray
    free: np.ndarray
    prescribed: np.ndarray
    values: np.ndarray
    ndofs: int

    def expand(self, x_free: np.ndarray) -> np.ndarray:
        """Full solution from the free part: shape ``(n_free,)`` -> ``(N,)``, or ``(n_free, B)`` -> ``(N, B)``."""
        x_free = np.asarray(x_free)
        if x_free.shape[0] != self.free.size:
            raise ValueError(f"expected {self.free.size} free values along axis 0, got shape {x_free.shape}")
        out = np.empty((self.ndofs, *x_free.shape[1:]), dtype=np.result_type(x_free, self.values))
        out[self.free] = x_free
        out[self.prescribed] = self.values.reshape(-1, *([1] * (x_free.ndim - 1)))
        return out


def condense_dirichlet(
    A: sp.spmatrix, b: np.ndarray, dofs: np.ndarray, values: float | np.ndarray = 0.0
) -> CondensedSystem:
    """Eliminate the Dirichlet DOFs ``dofs`` (values ``values``) from ``A x = b``.

    Parameters
    ----------
    A
        Assembled matrix, shape ``(N, N)``.
    b
        Right-hand side, shape ``(N,)``.
    dofs
        Prescribed DOF indices, shape ``(n_prescribed,)`` (e.g. ``space.boundary_dofs()``).
    values
        A constant or an array ``(n_prescribed,)`` matching ``dofs`` (e.g. ``space.interpolate(g)[dofs]``).
    """
    A = sp.csr_matrix(A)
    b = np.asarray(b, dtype=np.float64)
    n = A.shape[0]
    if A.shape != (n, n) or b.shape != (n,):
        raise ValueError(f"need a square matrix and a matching vector, got A {A.shape} and b {b.shape}")
    dofs = np.asarray(dofs, dtype=np.int64)
    order = np.argsort(dofs)
    prescribed = dofs[order]
    if prescribed.size and (prescribed[0] < 0 or prescribed[-1] >= n or np.any(np.diff(prescribed) == 0)):
        raise ValueError(f"Dirichlet DOFs must be distinct indices in [0, {n})")
    values = np.broadcast_to(np.asarray(values, dtype=np.float64), dofs.shape)[order].copy()
    free = np.setdiff1d(np.arange(n), prescribed)
    A_free = A[free]
    rhs = b[free] - A_free[:, prescribed] @ values
    return CondensedSystem(
        A=A_free[:, free].tocsr(), b=rhs, free=free, prescribed=prescribed, values=values, ndofs=n
    )


def solve_direct(system: CondensedSystem) -> np.ndarray:
    """Solve the reduced system by sparse LU (``scipy.sparse.linalg.splu``) and expand: shape ``(N,)``.

    The reference direct solve up to ~1e5 DOF, and the one for indefinite Helmholtz systems.
    """
    if system.free.size == 0:
        return system.expand(np.zeros(0))
    return system.expand(spla.splu(system.A.tocsc()).solve(system.b))
