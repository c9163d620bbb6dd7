"""Classical solvers: registry and the solver families (``spectral``, ``fem``, ``fem-mesh``, ``fem-mesh-darcy``,
``fv-weno``, ``fv-elliptic``, ``sph``)."""

from pdebench.solvers.base import SOLVERS, BlowUpError, StabilityError
from pdebench.solvers.fem.darcy_mesh_solver import DarcyMeshSolver
from pdebench.solvers.fem.mesh_solver import MeshFEMSolver
from pdebench.solvers.fem.solver import FEMSolver
from pdebench.solvers.fv.elliptic import FVEllipticSolver
from pdebench.solvers.fv.solver import FVSolver
from pdebench.solvers.spectral import SpectralSolver
from pdebench.solvers.sph import SPHSolver

__all__ = ["SOLVERS", "BlowUpError", "DarcyMeshSolver", "FEMSolver", "FVEllipticSolver", "FVSolver", "MeshFEMSolver", "SPHSolver", "StabilityError", "SpectralSolver"]
