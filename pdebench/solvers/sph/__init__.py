"""Weakly compressible SPH: smoothing kernels and the cell-list neighbour search (integrator and scenes follow)."""

from pdebench.solvers.sph.kernels import KERNELS, CubicSpline, Kernel, WendlandC2, make_kernel
from pdebench.solvers.sph.neighbours import brute_force_pairs, neighbour_pairs, radius_graph_edge_index

__all__ = ["KERNELS", "CubicSpline", "Kernel", "WendlandC2", "brute_force_pairs", "make_kernel",
           "neighbour_pairs", "radius_graph_edge_index"]
