"""Shock-capturing finite-volume solvers (WENO5-JS reconstruction, Godunov flux, SSP-RK3)."""

from pdebench.solvers.fv.weno import WENO5Solver

__all__ = ["WENO5Solver"]
