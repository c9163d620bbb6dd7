"""Weakly compressible SPH: kernels, cell-list neighbour search, the WCSPH stepper (built from a scene's
:class:`~pdebench.problems.particle_scenes.SPHSettings` by ``WCSPH.from_settings``) and the registered
solver ``"sph"`` that runs the particle scenes of :mod:`pdebench.problems.particles`. The equations of
state are the fluid's law and live in :mod:`pdebench.problems.particle_scenes` (re-exported here)."""

from pdebench.core.graphs import brute_force_pairs, neighbour_pairs, radius_graph_edge_index
from pdebench.core.particles import FLUID, WALL, ParticleState
from pdebench.problems.particle_scenes import LinearEOS, TaitEOS, make_eos
from pdebench.solvers.sph.kernels import KERNELS, CubicSpline, Kernel, WendlandC2, make_kernel
from pdebench.solvers.sph.scheme import WCSPH
from pdebench.solvers.sph.solver import ParticleSamples, SPHSolver

__all__ = ["FLUID", "KERNELS", "WALL", "WCSPH", "CubicSpline", "Kernel", "LinearEOS", "ParticleSamples",
           "ParticleState", "SPHSolver", "TaitEOS", "WendlandC2", "brute_force_pairs", "make_eos", "make_kernel",
           "neighbour_pairs", "radius_graph_edge_index"]
