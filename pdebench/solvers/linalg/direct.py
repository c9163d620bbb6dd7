r"""Sparse direct solves with the same result type as the iterative ones.

:func:`direct_solve` factorises ``A`` (``(n, n)``) with SuperLU through ``scipy.sparse.linalg.spsolve``
and returns a :class:`~pdebench.solvers.linalg.result.SolveResult` (0 iterations). The column ordering
defaults to the minimum-degree ordering of :math:`A + A^T` (``"MMD_AT_PLUS_A"``), the right one for the
symmetric-pattern stencil matrices of the finite-difference baselines.
"""

from __future__ import annotations

import time

import numpy as np
import scipy.sparse as sp
import scipy.sparse.linalg as spla

from pdebench.solvers.linalg.result import Matrix, SolveResult, check_system


def direct_solve(A: Matrix, b: np.ndarray, ordering: str = "MMD_AT_PLUS_A", residual: bool = False) -> SolveResult:
    """Solve ``A x = b`` by sparse LU (SuperLU).

    Parameters
    ----------
    A
        Square, nonsingular, shape ``(n, n)`` (converted to CSC).
    b
        Right-hand side, shape ``(n,)``, finite.
    ordering
        SuperLU's ``permc_spec``: ``"MMD_AT_PLUS_A"``, ``"MMD_ATA"``, ``"COLAMD"`` or ``"NATURAL"``.
    residual
        Also compute the true relative residual (one matrix product); otherwise ``residual`` is ``nan``.

    Returns
    -------
    SolveResult
        ``x`` ``(n,)``, 0 iterations, ``converged`` whether ``x`` is finite, ``residuals``
        ``[1, final]`` (``[1, nan]`` without ``residual``), ``time`` the factorisation and solve.
    """
    _, b = check_system(A, b, 1.0)
    start = time.perf_counter()
    x = np.asarray(spla.spsolve(sp.csc_array(A), b, permc_spec=ordering))
    seconds = time.perf_counter() - start
    bnorm = float(np.linalg.norm(b))
    final = float("nan")
    if residual:
        final = float(np.linalg.norm(b - A @ x)) / bnorm if bnorm > 0 else 0.0
    return SolveResult(x, 0, np.array([1.0 if bnorm > 0 else 0.0, final]), bool(np.all(np.isfinite(x))), seconds,
                       residual=final)
