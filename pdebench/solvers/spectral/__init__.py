"""Batched pseudo-spectral ETDRK4 solver on ``torch.fft`` and the equations it steps."""

from pdebench.solvers.spectral.solver import SpectralSolver

__all__ = ["SpectralSolver"]
