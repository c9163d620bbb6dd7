"""Classical solvers: registry and the solver families (``spectral``; FEM and SPH later)."""

from pdebench.solvers.base import SOLVERS, BlowUpError, StabilityError
from pdebench.solvers.spectral import SpectralSolver

__all__ = ["SOLVERS", "BlowUpError", "StabilityError", "SpectralSolver"]
