"""The registered finite-element solver: a batch of input fields -> grid solutions (``"fem"``).

For each problem the mesh, the function space (its basis), the load vector, the Dirichlet dofs and
the grid sampler are built once and cached; every sample only re-assembles the coefficient-dependent
matrix (vectorised, no Python loop over elements) and solves. The linear solver is chosen by size
(``method="auto"``: sparse LU up to ``direct_limit`` unknowns, else AMG-preconditioned CG) or
requested: ``"direct"``, ``"amg-pcg"``, or ``"skr"`` (sorted Krylov recycling over the batch,
:mod:`pdebench.solvers.linalg.sequence`). The method used is recorded in the provenance.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import scipy.sparse as sp
import torch

import pdebench
from pdebench.core.trajectories import Trajectories
from pdebench.problems.meshes import unit_square
from pdebench.solvers.base import SOLVERS, BlowUpError, solve_ids
from pdebench.solvers.fem.assembly import diffusion_matrix, load_vector
from pdebench.solvers.fem.coefficients import element_means, grid_to_vertices
from pdebench.solvers.fem.dirichlet import condense_dirichlet
from pdebench.solvers.fem.sampling import GridSampler
from pdebench.solvers.fem.spaces import FunctionSpace
from pdebench.solvers.linalg import chosen_method, solve_sequence, solve_spd

log = logging.getLogger(__name__)

Method = Literal["auto", "direct", "amg-pcg", "skr"]
METHODS = ("auto", "direct", "amg-pcg", "skr")


@dataclass
class _Discretisation:
    """What a problem's samples share: space (basis), load, boundary dofs, grid and sampler."""

    space: FunctionSpace
    load: np.ndarray
    dirichlet: np.ndarray
    x: np.ndarray
    y: np.ndarray
    sampler: GridSampler


@SOLVERS.register("fem", record="steady", description="Finite elements (scikit-fem, P1/P2) with direct, AMG-PCG or sorted Krylov recycling solves")
class FEMSolver:
    """Finite-element solves of steady problems on a batch of input fields.

    Parameters
    ----------
    method
        ``"auto"`` (direct up to ``direct_limit`` unknowns, else ``"amg-pcg"``), ``"direct"`` (sparse
        LU), ``"amg-pcg"`` (CG with a pyamg smoothed-aggregation preconditioner per system) or
        ``"skr"`` (the batch sorted by similarity and solved in sequence with a recycled subspace).
    tol
        Relative residual tolerance of the iterative methods.
    direct_limit
        Largest system ``"auto"`` solves directly.
    """

    def __init__(self, method: Method = "auto", tol: float = 1e-10, direct_limit: int = 100_000) -> None:
        if method not in METHODS:
            raise ValueError(f"unknown method {method!r}; choose one of {', '.join(METHODS)}")
        if not 0 < tol < 1:
            raise ValueError(f"tol must be in (0, 1), got {tol}")
        if direct_limit < 1:
            raise ValueError(f"direct_limit must be >= 1, got {direct_limit}")
        self.method, self.tol, self.direct_limit = method, tol, direct_limit
        self._cache: dict[Any, _Discretisation] = {}
        self.last_iterations: list[int] = []

    def discretisation(self, problem) -> _Discretisation:
        """The cached mesh, space, load, boundary dofs and grid sampler of ``problem``."""
        if problem not in self._cache:
            n = problem.spatial_shape[0]
            grid = np.linspace(0.0, problem.lengths[0], n)
            space = FunctionSpace(unit_square(n), problem.element)
            self._cache[problem] = _Discretisation(space, load_vector(space, problem.forcing), space.boundary_dofs(),
                                                   grid, grid, GridSampler(space, grid, grid))
        return self._cache[problem]

    def chosen_method(self, unknowns: int) -> str:
        return chosen_method(self.method, unknowns, self.direct_limit)

    def solve(
        self,
        problem,
        inputs: torch.Tensor,
        sample_ids: np.ndarray | Sequence[tuple[int, int]] | None = None,
        *,
        on_blowup: Literal["raise", "drop"] = "raise",
        progress: Callable[[int], None] | None = None,
    ) -> Trajectories:
        """Solve ``-div(a grad u) = f`` (``u = 0`` on the boundary) for each input field ``a``.

        Parameters
        ----------
        problem
            A steady grid problem (e.g. :class:`~pdebench.problems.elliptic.Darcy2D`).
        inputs
            ``(B, X, Y)`` coefficient fields on the problem's grid (positive).
        sample_ids
            ``(B, 2)`` ``(seed, index)``.
        on_blowup
            A non-finite solution raises :class:`BlowUpError` or is dropped and counted.
        progress
            Called with 1 after each sample.

        Returns
        -------
        Trajectories
            Fields ``nu`` (the inputs) and ``tensor`` (the solutions on the grid), each ``(B, 1, X, Y)``
            float64, coordinates ``t = [0]``, ``x``, ``y``.
        """
        start = time.perf_counter()
        a = torch.as_tensor(inputs, dtype=torch.float64).cpu().numpy()
        shape = tuple(problem.spatial_shape)
        if a.ndim != 3 or a.shape[1:] != shape:
            raise ValueError(f"inputs have shape {a.shape}; expected (B, {shape[0]}, {shape[1]})")
        if not np.isfinite(a).all() or a.min() <= 0:
            bad = np.nanmin(a) if np.isfinite(a).any() else float("nan")
            raise ValueError(f"permeability must be positive and finite everywhere; minimum {bad}")
        batch = a.shape[0]
        ids = solve_ids(sample_ids, batch, on_blowup)
        disc = self.discretisation(problem)
        mesh = disc.space.mesh
        systems = []
        for sample in a:
            coefficient = element_means(mesh, grid_to_vertices(mesh, sample, disc.x, disc.y), mean="harmonic")
            systems.append(condense_dirichlet(diffusion_matrix(disc.space, coefficient, at="elements"), disc.load, disc.dirichlet, 0.0))
        method = self.chosen_method(systems[0].A.shape[0] if systems else 0)
        free = self._solve_all([s.A for s in systems], [s.b for s in systems], method, a.reshape(batch, -1), progress)
        solutions = np.stack([disc.sampler(s.expand(x)) for s, x in zip(systems, free)]) if batch else np.zeros((0, *shape))
        finite = np.isfinite(solutions.reshape(batch, -1)).all(1)
        fields = {problem.input_name: torch.from_numpy(a[:, None]), problem.field_name: torch.from_numpy(solutions[:, None])}
        wall = time.perf_counter() - start
        traj = Trajectories(fields=fields, coords=problem.coordinates(), params=problem.params(), sample_ids=ids,
                            provenance=self.provenance(problem, method, systems, wall))
        if not finite.all():
            if on_blowup == "raise":
                raise BlowUpError(ids[~finite], 0.0, problem.name)
            traj = traj.select(np.flatnonzero(finite))
            traj.provenance["dropped"] = int((~finite).sum())
        return traj

    def _solve_all(self, matrices: list[sp.csr_matrix], rhs: list[np.ndarray], method: str, features: np.ndarray,
                   progress: Callable[[int], None] | None) -> list[np.ndarray]:
        self.last_iterations = []
        if method == "skr":
            result = solve_sequence(matrices, np.stack(rhs), method="skr-cg", tol=self.tol, features=features)
            self.last_iterations = [int(i) for i in result.iterations]
            if progress:
                progress(len(matrices))
            return list(result.solutions)
        out = []
        for A, b in zip(matrices, rhs):
            # "amg-pcg": a fresh hierarchy per system, the fastest independent solve for mid-size SPD
            # systems (reusing another sample's costs iterations, REFERENCE.md); "direct": splu's own ordering
            result = solve_spd(A, b, method, tol=self.tol, ordering="COLAMD")
            out.append(result.x)
            if method != "direct":
                self.last_iterations.append(result.iterations)
            if progress:
                progress(1)
        return out

    def provenance(self, problem, method: str, systems: list, wall_time: float) -> dict[str, Any]:
        """Attributes that say how the samples were made."""
        unknowns = systems[0].A.shape[0] if systems else 0
        record = {
            "solver": "fem",
            "scheme": f"{problem.element} finite elements on a triangulated {problem.spatial_shape[0]}^2 grid (scikit-fem), "
                      f"harmonic element means of the nodal coefficient; linear solves: {method}",
            "method": method,
            "element": problem.element,
            "unknowns": unknowns,
            "resolution": "x".join(map(str, problem.spatial_shape)),
            "problem": problem.name,
            "dtype": "float64",
            "pdebench_version": pdebench.__version__,
            "torch_version": str(torch.__version__),
            "wall_time_s": wall_time,
        }
        if self.last_iterations:
            record.update(tol=self.tol, mean_iterations=float(np.mean(self.last_iterations)),
                          iterations_per_sample=list(self.last_iterations))
        return record

