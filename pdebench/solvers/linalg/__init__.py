"""Linear algebra of every solver: one CG, recycled Krylov, one preconditioner factory, one result type.

* :mod:`~pdebench.solvers.linalg.cg` -- :class:`DeflatedCG`, the one preconditioned CG (optionally
  deflated, optionally recycling its deflation space from solve to solve), with :func:`pcg` and
  :func:`deflated_cg` as its one-shot forms;
* :mod:`~pdebench.solvers.linalg.gmres` -- :class:`RecycledGMRES` (GCRO-DR) for indefinite systems;
* :mod:`~pdebench.solvers.linalg.preconditioners` -- :func:`make_preconditioner`: ``none``,
  ``jacobi``, ``ic0`` (:func:`ichol0`), ``amg`` (pyamg), ``ilu``; and
  :func:`cholesky_factor_preconditioner` (:math:`M = L L^T` of any lower-triangular factor: IC(0)'s, a learned one's);
* :mod:`~pdebench.solvers.linalg.result` -- :class:`SolveResult` and :class:`ResidualMonitor` (the
  stopping rule and residual history every iterative solver shares, DCDM's included);
* :mod:`~pdebench.solvers.linalg.sequence` -- :func:`sort_systems` and :func:`solve_sequence` (sorted
  Krylov recycling over a data set);
* :mod:`~pdebench.solvers.linalg.direct` -- :func:`direct_solve` (SuperLU) with the same result type;
* :mod:`~pdebench.solvers.linalg.spd` -- :func:`solve_spd`: one SPD system by a named method
  (:data:`SPD_METHODS`: direct, AMG-PCG, IC(0)-PCG, PCG with a given preconditioner) and the ``"auto"``
  rule :func:`chosen_method`, the per-sample solve of the steady solvers.

Imports nothing of the package outside :mod:`pdebench.solvers.linalg`.
"""

from pdebench.solvers.linalg.cg import DeflatedCG, deflated_cg, pcg
from pdebench.solvers.linalg.direct import direct_solve
from pdebench.solvers.linalg.gmres import RecycledGMRES
from pdebench.solvers.linalg.preconditioners import (PRECONDITIONERS, SYMMETRIC_PRECONDITIONERS, Preconditioner,
                                                     cholesky_factor_preconditioner, ichol0, make_preconditioner)
from pdebench.solvers.linalg.result import ResidualMonitor, SolveResult, check_system
from pdebench.solvers.linalg.sequence import METHODS, ConvergenceError, SequenceResult, solve_sequence, sort_systems
from pdebench.solvers.linalg.spd import SPD_METHODS, chosen_method, solve_spd

__all__ = [
    "METHODS", "PRECONDITIONERS", "SPD_METHODS", "SYMMETRIC_PRECONDITIONERS", "ConvergenceError", "DeflatedCG",
    "Preconditioner", "RecycledGMRES", "ResidualMonitor", "SequenceResult", "SolveResult", "check_system",
    "cholesky_factor_preconditioner", "chosen_method", "deflated_cg", "direct_solve", "ichol0", "make_preconditioner",
    "pcg", "solve_sequence", "solve_spd", "sort_systems",
]
