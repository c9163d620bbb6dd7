"""Finite-volume solvers: shock-capturing (WENO5-JS reconstruction, Godunov flux, SSP-RK3) and elliptic
(the 5-/7-point scheme of steady diffusion problems, :mod:`~pdebench.solvers.fv.elliptic`)."""

from pdebench.solvers.fv.elliptic import FVEllipticSolver
from pdebench.solvers.fv.weno import WENO5Solver

__all__ = ["FVEllipticSolver", "WENO5Solver"]
