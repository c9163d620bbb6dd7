r"""One SPD system solved by a named method: the per-sample solve of the steady grid solvers.

:func:`solve_spd` solves :math:`A x = b` (``A`` ``(n, n)`` symmetric positive definite) by

* ``"direct"`` -- sparse LU (:func:`~pdebench.solvers.linalg.direct.direct_solve`);
* ``"amg-pcg"`` / ``"ic0-pcg"`` -- :func:`~pdebench.solvers.linalg.cg.pcg` with a fresh
  :func:`~pdebench.solvers.linalg.preconditioners.make_preconditioner` of kind ``"amg"`` / ``"ic0"``;
* ``"pcg"`` -- :func:`~pdebench.solvers.linalg.cg.pcg` with a preconditioner the caller built (a
  learned one, say),

the iterative ones to :math:`\|b - A x\|_2 \le \mathrm{tol}\,\|b\|_2` from an optional start ``x0``.
:func:`chosen_method` is the ``"auto"`` rule (direct up to a size, AMG-PCG above). The finite-element
(``fem``) and finite-volume (``fv-elliptic``) steady solvers both solve through here.
"""

from __future__ import annotations

import numpy as np

from pdebench.solvers.linalg.cg import pcg
from pdebench.solvers.linalg.direct import direct_solve
from pdebench.solvers.linalg.preconditioners import Preconditioner, make_preconditioner
from pdebench.solvers.linalg.result import Matrix, SolveResult

#: The methods of :func:`solve_spd`.
SPD_METHODS = ("direct", "amg-pcg", "ic0-pcg", "pcg")


def chosen_method(method: str, unknowns: int, direct_limit: int) -> str:
    """``method`` itself, or for ``"auto"``: ``"direct"`` up to ``direct_limit`` unknowns, else ``"amg-pcg"``."""
    if method != "auto":
        return method
    return "direct" if unknowns <= direct_limit else "amg-pcg"


def solve_spd(
    A: Matrix,
    b: np.ndarray,
    method: str,
    *,
    tol: float = 1e-8,
    preconditioner: Preconditioner | None = None,
    x0: np.ndarray | None = None,
    maxiter: int = 1000,
    ordering: str = "MMD_AT_PLUS_A",
) -> SolveResult:
    r"""Solve ``A x = b`` by ``method`` (one of :data:`SPD_METHODS`).

    Parameters
    ----------
    A
        Symmetric positive definite, shape ``(n, n)`` (scipy sparse).
    b
        Right-hand side, shape ``(n,)``.
    method
        ``"direct"``, ``"amg-pcg"``, ``"ic0-pcg"`` or ``"pcg"`` (CG preconditioned by ``preconditioner``).
    tol
        Relative residual tolerance of the PCG methods: :math:`\|b - A x\| \le \mathrm{tol}\,\|b\|`
        (relative to :math:`\|b\|`, not to the start's residual, so a good ``x0`` saves iterations and
        changes nothing else).
    preconditioner
        :math:`M` of ``"pcg"`` (required there, refused by the other methods).
    x0
        Start of the PCG methods, shape ``(n,)`` (:func:`~pdebench.solvers.linalg.cg.pcg`); ``None``: zero.
        Refused by ``"direct"``.
    maxiter
        Iteration cap of the PCG methods.
    ordering
        Column ordering of the direct solve (SuperLU's ``permc_spec``).

    Returns
    -------
    SolveResult
        ``iterations`` 0 for ``"direct"``; ``residual`` the true final relative residual; the PCG
        methods' ``extra["preconditioner"]`` the preconditioner's ``kind``.

    Raises
    ------
    ValueError
        An unknown method, or a ``preconditioner`` / ``x0`` the method does not take.
    RuntimeError
        A PCG method that did not reach ``tol`` in ``maxiter`` iterations.
    """
    if method not in SPD_METHODS:
        raise ValueError(f"unknown method {method!r}; choose one of {', '.join(SPD_METHODS)}")
    if (method == "pcg") != (preconditioner is not None):
        raise ValueError(f"method {method!r} {'needs' if method == 'pcg' else 'takes no'} preconditioner")
    if method == "direct":
        if x0 is not None:
            raise ValueError("a direct solve takes no starting guess x0")
        return direct_solve(A, b, ordering=ordering, residual=True)
    M = preconditioner if preconditioner is not None else make_preconditioner(A, method.removesuffix("-pcg"))
    result = pcg(A, b, M, tol=tol, maxiter=maxiter, x0=x0)
    result.extra["preconditioner"] = M.kind
    if not result.converged:
        raise RuntimeError(f"{M.kind}-preconditioned CG did not reach tol={tol:g} in {maxiter} iterations "
                           f"(relative residual {result.residual:.3g})")
    return result
