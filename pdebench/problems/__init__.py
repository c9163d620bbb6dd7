"""The problem catalogue: one frozen dataclass per benchmark problem, registered by name.

>>> from pdebench.problems import PROBLEMS
>>> PROBLEMS.available()  # doctest: +ELLIPSIS
['advection1d', 'burgers1d', 'dam_break2d', 'darcy2d', 'darcy2d_mesh', 'darcy3d', 'elasticity2d', 'heat1d', 'helmholtz', 'kdv1d', 'ks1d', 'mppde_e1', 'mppde_e2', 'mppde_e3', 'ns2d', 'ns2d_kolmogorov', 'poiseuille2d', 'poisson', 'reaction_diffusion1d', 'tgv2d']
"""

from pdebench.registry import import_submodules
from pdebench.problems.base import PROBLEMS, Problem, SpectralProblem
from pdebench.problems.mesh_problems import MeshProblem
from pdebench.problems.particles import ParticleProblem

import_submodules(__name__, __path__)  # registers every problem: a new problem is one file in this folder

__all__ = ["PROBLEMS", "MeshProblem", "ParticleProblem", "Problem", "SpectralProblem"]
