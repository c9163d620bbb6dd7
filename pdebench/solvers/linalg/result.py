r"""The one result type of every linear solve, and the residual bookkeeping and stopping rule they share.

* :class:`SolveResult` -- what a solve returns (CG, deflated/recycled CG, GCRO-DR, DCDM, a direct
  solve): the solution ``x`` ``(n,)``, the iteration count, whether it converged, the relative
  residual history, the final true relative residual and the wall times.
* :class:`ResidualMonitor` -- the stopping rule and the history: a solve from ``r_0`` stops when
  the residual it carries satisfies :math:`\|r_k\|_2 / \|b\|_2 \le \mathrm{tol}`, *confirmed* on the
  true residual :math:`\|b - A x_k\|_2 / \|b\|_2 \le \mathrm{tol}` (one extra matrix product); where
  the carried (recursively updated) residual has drifted from the true one the solver continues from
  the true residual, which then replaces the drifted entry of the history.
* :func:`check_system` -- the shape/finiteness/tolerance checks every solver applies first.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

Matrix = Any  # a scipy sparse matrix/array, a dense ndarray or anything with ``@`` and ``shape``, shape (n, n)


@dataclass
class SolveResult:
    """One solve of :math:`A x = b`.

    Attributes
    ----------
    x
        Solution, shape ``(n,)``.
    iterations
        Iterations performed: CG / conjugate-direction steps, or Arnoldi steps for GMRES (one
        matrix and one preconditioner or network application each; 0 for a direct solve). Excludes
        the matrix products of convergence checks and of refreshing a recycle space.
    residuals
        Relative residual history :math:`\\|r_k\\|_2 / \\|b\\|_2`. CG and DCDM: one entry per
        iterate, ``k = 0 .. iterations``, shape ``(iterations + 1,)``, the residual the method
        carries (a true residual where a convergence check found the carried one had drifted).
        GMRES: one entry per restart cycle (true residuals). Direct solve: ``[1, final]``.
    converged
        Whether the true relative residual reached the tolerance (:class:`ResidualMonitor`).
    time
        Wall seconds of the solve (set-up excluded).
    setup_time
        Wall seconds of the set-up (preconditioner, factorisation, network ...).
    extra
        Solver-specific records (DCDM: ``energy``, ``fallbacks``, ``matvecs``).
    residual
        Final true relative residual :math:`\\|b - A x\\|_2 / \\|b\\|_2` (``nan`` where not computed).
    ritz_values
        Ritz values of the recycle space kept for the next solve (recycling solvers), shape ``(k,)``;
        empty otherwise.
    """

    x: np.ndarray
    iterations: int
    residuals: np.ndarray
    converged: bool
    time: float = 0.0
    setup_time: float = 0.0
    extra: dict[str, Any] = field(default_factory=dict)
    residual: float = float("nan")
    ritz_values: np.ndarray = field(default_factory=lambda: np.empty(0))


def check_system(A: Matrix, b: np.ndarray, tol: float) -> tuple[int, np.ndarray]:
    """Validate ``A`` (square, ``(n, n)``), ``b`` (finite, ``(n,)``) and ``tol`` (finite, > 0).

    Returns
    -------
    n, b
        The size and ``b`` as an ndarray.

    Raises
    ------
    ValueError
        Naming the offending shape or value.
    """
    shape = getattr(A, "shape", None)
    if shape is None or len(shape) != 2 or shape[0] != shape[1]:
        raise ValueError(f"matrix must be square, got shape {shape}")
    b = np.asarray(b)
    if b.ndim != 1 or b.shape[0] != shape[0]:
        raise ValueError(f"right-hand side has shape {b.shape} but the matrix is {tuple(shape)}")
    if not np.all(np.isfinite(b)):
        raise ValueError("right-hand side has non-finite entries")
    if not (isinstance(tol, (int, float, np.floating)) and np.isfinite(tol) and tol > 0):
        raise ValueError(f"tol must be a positive number, got {tol!r}")
    return int(shape[0]), b


class ResidualMonitor:
    r"""Relative-residual history and the stopping rule shared by every iterative solver.

    Parameters
    ----------
    A
        The matrix, ``(n, n)`` (for the true-residual confirmation).
    b
        Right-hand side, ``(n,)``.
    tol
        Relative tolerance: stop when :math:`\|r\|_2 \le \mathrm{tol}\,\|b\|_2`.
    r0
        The initial residual ``(n,)`` (default ``b``, the zero start).

    Attributes
    ----------
    history
        Relative residuals recorded so far (the first is ``||r0|| / ||b||``; 0 for ``b = 0``).
    bnorm
        :math:`\|b\|_2`.
    """

    def __init__(self, A: Matrix, b: np.ndarray, tol: float, r0: np.ndarray | None = None) -> None:
        self.A, self.b, self.tol = A, b, float(tol)
        self.bnorm = float(np.linalg.norm(b))
        self.true_residual = float("nan")  # of the last confirm()
        first = float(np.linalg.norm(b if r0 is None else r0)) / self.bnorm if self.bnorm > 0 else 0.0
        self.history: list[float] = [first]

    @property
    def trivial(self) -> bool:
        """``b = 0``: ``x = 0`` is exact, nothing to iterate."""
        return self.bnorm == 0.0

    def record(self, rnorm: float) -> bool:
        """Append the carried residual norm :math:`\\|r_k\\|_2`; whether it reached the tolerance."""
        self.history.append(rnorm / self.bnorm)
        return self.reached()

    def reached(self) -> bool:
        """Whether the last recorded residual satisfies the tolerance (or ``b = 0``)."""
        return self.trivial or self.history[-1] <= self.tol

    def confirm(self, x: np.ndarray) -> np.ndarray | None:
        """Check the true residual of ``x`` once the carried one reached the tolerance.

        Returns
        -------
        numpy.ndarray or None
            ``None`` when :math:`\\|b - A x\\| \\le \\mathrm{tol}\\,\\|b\\|` (converged); otherwise the
            true residual ``(n,)`` to continue from, which replaces the last history entry.
        """
        if self.trivial:
            self.true_residual = 0.0
            return None
        r_true = self.b - self.A @ x
        self.true_residual = float(np.linalg.norm(r_true)) / self.bnorm
        if self.true_residual <= self.tol:
            return None
        self.history[-1] = self.true_residual
        return r_true

    def final_residual(self, x: np.ndarray) -> float:
        """True relative residual :math:`\\|b - A x\\|_2 / \\|b\\|_2` of ``x`` ``(n,)`` (one matrix product; 0 for ``b = 0``)."""
        if self.trivial:
            return 0.0
        return float(np.linalg.norm(self.b - self.A @ x)) / self.bnorm

    def residuals(self) -> np.ndarray:
        """The history as an array, shape ``(len(history),)``."""
        return np.asarray(self.history)
