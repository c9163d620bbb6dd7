r"""The registered finite-element solver of Darcy flow on an unstructured mesh (``"fem-mesh-darcy"``).

Solves :class:`~pdebench.problems.darcy_mesh.DarcyMesh` (``darcy2d_mesh``) with the machinery of the
``fem-mesh`` solver (:class:`~pdebench.solvers.fem.mesh_solver.MeshFEMSolver`): P1 (or P2) Lagrange
elements, the coefficient at the quadrature points the finite-element interpolant of the stored nodal
``a`` (so a stored row defines its solution),
:math:`K(a)_{ij} = \int a\nabla\phi_j\cdot\nabla\phi_i`, :math:`b = M f\mathbf 1`, ``u = 0``
condensed, one sparse LU per sample.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import scipy.sparse as sp

from pdebench.problems.mesh_problems import MeshProblem
from pdebench.problems.meshes import mesh_size
from pdebench.solvers.base import SOLVERS
from pdebench.solvers.fem.assembly import diffusion_matrix, mass_matrix
from pdebench.solvers.fem.mesh_solver import MeshDiscretisation, MeshFEMSolver
from pdebench.solvers.fem.spaces import FunctionSpace

__all__ = ["DarcyMeshSolver"]


@SOLVERS.register("fem-mesh-darcy", record="mesh", description="Finite elements (scikit-fem, P1/P2) for Darcy flow "
                  "-div(a grad u) = f with a nodal coefficient on an unstructured mesh, direct sparse LU")
class DarcyMeshSolver(MeshFEMSolver):
    r"""The ``fem-mesh`` solver extended by the variable-coefficient equation ``"darcy"``.

    For sample ``s``: :math:`a_h = I_h a_s` at the quadrature points, :math:`A = K(a_h)`,
    :math:`b = M (f \mathbf 1)`; the Dirichlet dofs are condensed and the system solved by sparse LU.
    Other equations are delegated to :class:`~pdebench.solvers.fem.mesh_solver.MeshFEMSolver`.
    """

    def check(self, problem: MeshProblem) -> None:
        """Accept the ``"darcy"`` equation; refuse others as :meth:`MeshFEMSolver.check` does."""
        if problem.equation != "darcy":
            super().check(problem)

    def discretisation(self, problem: MeshProblem) -> MeshDiscretisation:
        if problem.equation != "darcy":
            return super().discretisation(problem)
        key = problem.mesh_key()
        if key not in self._cache:
            self._cache[key] = self._build_darcy(problem)
        return self._cache[key]

    def _build_darcy(self, problem: MeshProblem) -> MeshDiscretisation:
        mesh = problem.mesh()
        space = FunctionSpace(mesh, problem.element)
        nodes = problem.nodes()
        if not np.allclose(space.dof_coordinates.T, nodes, rtol=0, atol=1e-12):
            raise RuntimeError(f"{problem.name}: the problem's nodes differ from the {problem.element} dofs of its mesh")
        cells = np.ascontiguousarray(np.asarray(space.basis.element_dofs).T, dtype=np.int64)
        facets = problem.boundary_facets()
        boundary = {name: np.sort(np.asarray(space.basis.get_dofs(facets=f).all(), dtype=np.int64))
                    for name, f in facets.items()}
        disc = MeshDiscretisation(space, nodes, cells, boundary, boundary["dirichlet"], mesh_size(mesh))
        disc.mass = mass_matrix(space)
        return disc

    def _system(self, problem: MeshProblem, disc: MeshDiscretisation, fields: dict[str, np.ndarray],
                params: dict[str, np.ndarray], row: int) -> tuple[sp.csr_matrix, np.ndarray]:
        if problem.equation != "darcy":
            return super()._system(problem, disc, fields, params, row)
        a = disc.space.basis.interpolate(fields["a"][row]).value  # (n_elements, n_quadrature)
        A = diffusion_matrix(disc.space, np.asarray(a), at="quadrature")
        return A, disc.mass @ np.full(disc.space.ndofs, float(problem.forcing))

    def provenance(self, problem: MeshProblem) -> dict[str, Any]:
        out = super().provenance(problem)
        if problem.equation == "darcy":
            out["solver"] = "fem-mesh-darcy"
            out["scheme"] = (f"{problem.element} finite elements (scikit-fem) on the jittered unit-square mesh, "
                             "-div(a grad u) = f with a the interpolant of the nodal a, u = 0 condensed")
        return out
