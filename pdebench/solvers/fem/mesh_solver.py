r"""The registered finite-element solver of the unstructured-mesh problems (``"fem-mesh"``).

Solves the :class:`~pdebench.problems.mesh_problems.MeshProblem` s (``poisson``, ``helmholtz``,
``elasticity2d``) for a batch of nodal inputs and returns :class:`MeshSamples`: the mesh once and the
nodal fields per sample, what :class:`~pdebench.io.mesh_file.MeshDataWriter` stores.

What is built once and cached (per :meth:`MeshProblem.mesh_key`: mesh, element, boundary parts, so
problems differing only in coefficients share it): the scalar function space (its basis), for
elasticity the vector space and the basis that evaluates nodal coefficients at its quadrature points,
the boundary dofs and markers, the mass and stiffness matrices (Poisson, Helmholtz), the unit traction
load (elasticity), and for Poisson the sparse LU factorisation of the condensed stiffness. Per sample:

* Poisson :math:`-\Delta u = f`: :math:`b = M f` (the load of the interpolant of the nodal ``f``);
  one factorisation serves every sample;
* Helmholtz :math:`-\Delta u - k^2 u = f`: :math:`A = K - k^2 M`, :math:`b = M f`, one LU per sample;
  the problem's wavenumber band is first checked against the discrete Dirichlet spectrum
  (:func:`check_wavenumber_band`: no :math:`k^2` of the band near an eigenvalue of this mesh and element);
* elasticity: :math:`E_h = \exp(I_h \log E)` at the quadrature points (positive), the plane-strain
  stiffness re-assembled on the cached basis (vectorised, no loop over elements), one LU per sample.

All solves are direct (``scipy.sparse.linalg.splu``): the meshes allowed (``h >= 0.01``) stay below a
few 10^5 unknowns. Dirichlet conditions (``u = 0``) are condensed.
"""

from __future__ import annotations

import functools
import logging
import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import scipy.sparse as sp
import scipy.sparse.linalg as spla
import torch

import pdebench
from pdebench.problems.mesh_problems import Helmholtz, domain_mesh
from pdebench.problems.meshes import mesh_size
from pdebench.solvers.base import SOLVERS, BlowUpError, solve_ids
from pdebench.solvers.fem.assembly import boundary_load, diffusion_matrix, elasticity_matrix, mass_matrix
from pdebench.solvers.fem.dirichlet import condense_dirichlet
from pdebench.solvers.fem.spaces import FunctionSpace, element

log = logging.getLogger(__name__)

EQUATIONS = ("poisson", "helmholtz", "elasticity")


@functools.lru_cache(maxsize=64)
def nearest_dirichlet_eigenvalue(domain: str, h: float, element: str, shift: float) -> float:
    r"""The eigenvalue :math:`\lambda` of the discrete Dirichlet Laplacian nearest to ``shift``.

    :math:`K x = \lambda M x` on the interior dofs of the mesh of ``domain``
    (:func:`~pdebench.problems.mesh_problems.domain_mesh`) with ``element``, by shift-invert Lanczos.

    Parameters
    ----------
    domain, h, element
        The mesh and the element, as a :class:`~pdebench.problems.mesh_problems.MeshProblem` names them.
    shift
        Where to look.

    Returns
    -------
    float
        The nearest eigenvalue (``shift`` itself when ``K - shift M`` is exactly singular).
    """
    space = FunctionSpace(domain_mesh(domain, h), element)
    free = np.setdiff1d(np.arange(space.ndofs), space.boundary_dofs())
    K = diffusion_matrix(space)[free][:, free].tocsc()
    M = mass_matrix(space)[free][:, free].tocsc()
    try:
        values = spla.eigsh(K, k=1, M=M, sigma=shift, which="LM", return_eigenvectors=False)
    except RuntimeError:  # K - shift M exactly singular: shift is an eigenvalue
        return float(shift)
    return float(values[0])


def check_wavenumber_band(problem: Helmholtz) -> None:
    """Refuse a Helmholtz band with some ``k²`` within ``eigen_gap`` (relative) of a discrete eigenvalue.

    Parameters
    ----------
    problem
        The Helmholtz problem: its ``band``, ``eigen_gap``, ``domain``, ``h`` and ``element``.

    Raises
    ------
    ValueError
        Naming the band and the eigenvalue it comes near (the problem is singular there).
    """
    k_min, k_max = problem.band
    low, high = k_min**2 / (1 + problem.eigen_gap), k_max**2 / (1 - problem.eigen_gap)
    centre, half = (low + high) / 2, (high - low) / 2
    nearest = nearest_dirichlet_eigenvalue(problem.domain, float(problem.h), problem.element, centre)
    if not abs(nearest - centre) > half:
        raise ValueError(
            f"wavenumber band [{k_min:g}, {k_max:g}] comes within {problem.eigen_gap:g} (relative, in k²) of the "
            f"Dirichlet eigenvalue λ = {nearest:.4f} (k = {math.sqrt(nearest):.4f}) of {problem.domain} "
            f"(h={problem.h:g}, {problem.element}), where the problem is singular; choose a band between eigenvalues")


@dataclass
class MeshSamples:
    """A batch of solved samples on one mesh.

    Attributes
    ----------
    nodes
        ``(n_nodes, 2)`` float64 node coordinates (P2: vertices, then edge midpoints).
    cells
        ``(n_cells, 3)`` (P1) or ``(n_cells, 6)`` (P2: corners, then the midside nodes of edges
        ``(0, 1)``, ``(1, 2)``, ``(2, 0)``) int64 node indices.
    boundary
        Marker name -> sorted int64 node indices; ``"dirichlet"`` always (where ``u`` is prescribed).
    element
        ``"P1"`` or ``"P2"``.
    fields
        Name -> float64 tensor ``(B, n_nodes)`` or ``(B, n_nodes, C)``: the nodal inputs (``"f"``,
        ``"E"``) and the solution ``"u"``.
    params
        Name -> ``(B,)`` float64 per-sample scalars (Helmholtz: ``"k"``).
    sample_ids
        ``(B, 2)`` int64 ``(seed, index)``.
    provenance
        Solver, element, dofs, method, mesh size, versions, wall time, ...
    """

    nodes: np.ndarray
    cells: np.ndarray
    boundary: dict[str, np.ndarray]
    element: str
    fields: dict[str, torch.Tensor]
    params: dict[str, np.ndarray] = field(default_factory=dict)
    sample_ids: np.ndarray = field(default_factory=lambda: np.zeros((0, 2), dtype=np.int64))
    provenance: dict[str, Any] = field(default_factory=dict)

    @property
    def num_samples(self) -> int:
        return int(self.sample_ids.shape[0])

    def select(self, rows: np.ndarray | Sequence[int]) -> "MeshSamples":
        """The samples at ``rows`` (same mesh and provenance)."""
        rows = np.asarray(rows, dtype=np.int64)
        index = torch.as_tensor(rows, dtype=torch.long)
        return MeshSamples(self.nodes, self.cells, dict(self.boundary), self.element,
                           {name: value[index] for name, value in self.fields.items()},
                           {name: np.asarray(value)[rows] for name, value in self.params.items()},
                           self.sample_ids[rows], dict(self.provenance))

    def all_finite(self) -> np.ndarray:
        """``(B,)`` bool: whether every value of every field of each sample is finite."""
        ok = np.ones(self.num_samples, dtype=bool)
        for value in self.fields.values():
            ok &= torch.isfinite(value.reshape(value.shape[0], -1)).all(dim=1).numpy()
        return ok


@dataclass
class MeshDiscretisation:
    """What the samples of problems with one :meth:`~MeshProblem.mesh_key` share."""

    space: FunctionSpace  # scalar: its dofs are the nodes
    nodes: np.ndarray
    cells: np.ndarray
    boundary: dict[str, np.ndarray]  # marker -> scalar node indices
    dirichlet: np.ndarray  # prescribed dofs of the solved space (vector dofs for elasticity)
    mesh_size: float
    mass: sp.csr_matrix | None = None
    stiffness: sp.csr_matrix | None = None
    vector_space: FunctionSpace | None = None
    coefficient_basis: Any = None  # scalar basis on the vector space's quadrature
    components: list[np.ndarray] = field(default_factory=list)  # vector dofs of u_x, u_y in node order
    unit_traction: np.ndarray | None = None  # load of t = (0, -1) on the loaded side (vector dofs)
    poisson_factor: Any = None  # splu of the condensed stiffness, built on first use
    poisson_free: np.ndarray | None = None

    @property
    def unknowns(self) -> int:
        """Degrees of freedom of the solved space (both components for elasticity)."""
        return int((self.vector_space or self.space).ndofs)


@SOLVERS.register("fem-mesh", record="mesh", description="Finite elements (scikit-fem, P1/P2) on unstructured meshes: "
                  "Poisson, Helmholtz and plane-strain elasticity, direct sparse LU solves")
class MeshFEMSolver:
    """Finite-element solves of the unstructured-mesh problems (see the module docstring).

    Parameters
    ----------
    method
        ``"direct"`` (sparse LU, ``scipy.sparse.linalg.splu``), the only method for now.
    """

    def __init__(self, method: Literal["direct"] = "direct") -> None:
        if method != "direct":
            raise ValueError(f"unknown method {method!r}; the fem-mesh solver supports 'direct'")
        self.method = method
        self._cache: dict[Any, MeshDiscretisation] = {}

    # ------------------------------------------------------------------ discretisation
    def check(self, problem) -> None:
        """Refuse a problem this solver cannot solve, before anything is assembled or written.

        Raises
        ------
        ValueError
            An equation this solver does not solve, or a Helmholtz band near a discrete Dirichlet
            eigenvalue of the problem's mesh and element (:func:`check_wavenumber_band`).
        """
        if problem.equation not in EQUATIONS:
            raise ValueError(f"{problem.name}: unknown equation {problem.equation!r}; the fem-mesh solver solves {', '.join(EQUATIONS)}")
        if problem.equation == "helmholtz":
            check_wavenumber_band(problem)

    def discretisation(self, problem) -> MeshDiscretisation:
        """The cached space, nodes, cells, boundary markers and fixed matrices of ``problem`` (after :meth:`check`)."""
        self.check(problem)
        key = problem.mesh_key()
        if key not in self._cache:
            self._cache[key] = self._build(problem)
        return self._cache[key]

    def _build(self, problem) -> MeshDiscretisation:
        mesh = problem.mesh()
        space = FunctionSpace(mesh, problem.element)
        nodes = problem.nodes()  # exact mesh coordinates (the dof locations are mapped from the reference cell)
        if not np.allclose(space.dof_coordinates.T, nodes, rtol=0, atol=1e-12):
            raise RuntimeError(f"{problem.name}: the problem's nodes differ from the {problem.element} dofs of its mesh")
        cells = np.ascontiguousarray(np.asarray(space.basis.element_dofs).T, dtype=np.int64)
        facets = problem.boundary_facets()
        if "dirichlet" not in facets or len(facets["dirichlet"]) == 0:
            raise ValueError(f"{problem.name}: no Dirichlet boundary on {problem.domain}")
        boundary = {name: np.sort(np.asarray(space.basis.get_dofs(facets=f).all(), dtype=np.int64))
                    for name, f in facets.items()}
        disc = MeshDiscretisation(space, nodes, cells, boundary, boundary["dirichlet"], mesh_size(mesh))
        if problem.equation in ("poisson", "helmholtz"):
            disc.mass = mass_matrix(space)
            disc.stiffness = diffusion_matrix(space)
        else:
            vector = FunctionSpace(mesh, problem.element, vector=True)
            disc.vector_space = vector
            disc.coefficient_basis = vector.basis.with_element(element(problem.element))
            disc.components = vector.components()
            disc.dirichlet = np.sort(np.asarray(vector.basis.get_dofs(facets=facets["dirichlet"]).all(), dtype=np.int64))
            load = np.zeros(vector.ndofs)
            if len(facets.get("traction", ())):
                load[disc.components[1]] = -boundary_load(space.facet_basis(facets["traction"]), 1.0)
            disc.unit_traction = load
        log.debug("%s: %s %s mesh, %d nodes, %d unknowns", problem.name, problem.domain, problem.element,
                  len(nodes), disc.unknowns)
        return disc

    def mesh_data(self, problem) -> tuple[np.ndarray, np.ndarray, dict[str, np.ndarray], str]:
        """``(nodes, cells, boundary, element)`` of ``problem`` (what a mesh data file stores once)."""
        disc = self.discretisation(problem)
        return disc.nodes, disc.cells, dict(disc.boundary), problem.element

    # ------------------------------------------------------------------ inputs and systems
    def _inputs(self, problem, inputs: Mapping[str, Any], disc: MeshDiscretisation) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray], int]:
        if not isinstance(inputs, Mapping):
            raise ValueError(f"{problem.name}: inputs must be a mapping name -> array with {list(problem.input_fields) + list(problem.input_params)}")
        expected = (*problem.input_fields, *problem.input_params)
        missing = [n for n in expected if n not in inputs]
        unknown = [n for n in inputs if n not in expected]
        if missing or unknown:
            raise ValueError(f"{problem.name}: inputs need exactly {list(expected)}; missing {missing}, unknown {unknown}")
        n = len(disc.nodes)
        fields, params = {}, {}
        batch = None
        for name in expected:
            value = inputs[name]
            array = np.array(value.detach().cpu().numpy() if isinstance(value, torch.Tensor) else value, dtype=np.float64)
            batch = array.shape[0] if batch is None and array.ndim >= 1 else batch
            want = (batch, n) if name in problem.input_fields else (batch,)
            if array.shape != want:
                raise ValueError(f"{problem.name}: input {name!r} has shape {array.shape}; expected {want}")
            if not np.isfinite(array).all():
                raise ValueError(f"{problem.name}: input {name!r} has non-finite values")
            (fields if name in problem.input_fields else params)[name] = array
        if problem.equation == "elasticity" and fields["E"].size and fields["E"].min() <= 0:
            raise ValueError(f"{problem.name}: Young's modulus E must be positive at every node; minimum {fields['E'].min():g}")
        if problem.equation == "helmholtz" and params["k"].size:
            k_min, k_max = problem.band
            k = params["k"]
            if k.min() < k_min or k.max() > k_max:
                raise ValueError(f"{problem.name}: wavenumbers must lie in the problem's band [{k_min:g}, {k_max:g}] "
                                 f"(checked against the Dirichlet eigenvalues); got [{k.min():g}, {k.max():g}]")
        return fields, params, int(batch or 0)

    def _system(self, problem, disc: MeshDiscretisation, fields: dict[str, np.ndarray], params: dict[str, np.ndarray],
                row: int) -> tuple[sp.csr_matrix, np.ndarray]:
        """The full (not condensed) matrix and right-hand side of sample ``row``."""
        if problem.equation == "poisson":
            return disc.stiffness, disc.mass @ fields["f"][row]
        if problem.equation == "helmholtz":
            k = float(params["k"][row])
            return (disc.stiffness - k**2 * disc.mass).tocsr(), disc.mass @ fields["f"][row]
        log_e = disc.coefficient_basis.interpolate(np.log(fields["E"][row])).value
        A = elasticity_matrix(disc.vector_space, np.exp(log_e), float(problem.nu), at="quadrature")
        return A, problem.traction * disc.unit_traction

    def assemble(self, problem, inputs: Mapping[str, Any]) -> list[tuple[sp.csr_matrix, np.ndarray]]:
        """The full systems ``(A, b)`` (before the Dirichlet condensation of :attr:`boundary` ``"dirichlet"``)
        that :meth:`solve` solves, one per sample; elasticity unknowns are the vector dofs (see
        :meth:`displacement`)."""
        disc = self.discretisation(problem)
        fields, params, batch = self._inputs(problem, inputs, disc)
        return [self._system(problem, disc, fields, params, i) for i in range(batch)]

    def displacement(self, problem, x: np.ndarray) -> np.ndarray:
        """Vector-dof values ``(N_vector,)`` -> nodal ``(n_nodes, 2)`` (elasticity)."""
        disc = self.discretisation(problem)
        return np.stack([x[c] for c in disc.components], axis=-1)

    # ------------------------------------------------------------------ solve
    def solve(
        self,
        problem,
        inputs: Mapping[str, Any],
        sample_ids: np.ndarray | Sequence[tuple[int, int]] | None = None,
        *,
        on_blowup: Literal["raise", "drop"] = "raise",
        progress: Callable[[int], None] | None = None,
    ) -> MeshSamples:
        """Solve ``problem`` for each sample of ``inputs``.

        Parameters
        ----------
        problem
            A :class:`~pdebench.problems.mesh_problems.MeshProblem`.
        inputs
            As :meth:`MeshProblem.sample_inputs` returns: nodal fields ``(B, n_nodes)`` (``"f"`` or
            ``"E"``) and per-sample scalars ``(B,)`` (``"k"``); arrays or tensors.
        sample_ids
            ``(B, 2)`` ``(seed, index)`` (default ``(-1, row)``).
        on_blowup
            A non-finite solution (or a singular system) raises :class:`BlowUpError` or is dropped
            and counted in ``provenance["dropped"]``.
        progress
            Called with 1 after each sample.

        Returns
        -------
        MeshSamples
            The mesh, fields ``{inputs..., "u"}`` (float64; ``u`` ``(B, n_nodes)``, elasticity
            ``(B, n_nodes, 2)``), params ``{"k": (B,)}`` (Helmholtz; else empty), ids, provenance.

        Raises
        ------
        ValueError
            Missing or extra inputs, bad shapes, non-finite values, ``E <= 0``, ``k`` outside the band.
        """
        start = time.perf_counter()
        disc = self.discretisation(problem)
        fields, params, batch = self._inputs(problem, inputs, disc)
        ids = solve_ids(sample_ids, batch, on_blowup)
        n = len(disc.nodes)
        shape = (batch, n, 2) if problem.components == 2 else (batch, n)
        solutions = np.full(shape, np.nan)
        factorisation = "one per sample"
        if problem.equation == "poisson":
            factorisation = "one per problem, reused for every sample"
            if batch:
                solutions[:] = self._poisson(disc, fields["f"]).T
                if progress is not None:
                    for _ in range(batch):
                        progress(1)
        else:
            for i in range(batch):
                A, b = self._system(problem, disc, fields, params, i)
                system = condense_dirichlet(A, b, disc.dirichlet, 0.0)
                try:
                    full = system.expand(spla.splu(system.A.tocsc()).solve(system.b))
                except RuntimeError as error:  # exactly singular
                    log.warning("%s: sample %s: %s", problem.name, tuple(ids[i]), error)
                    full = np.full(system.ndofs, np.nan)
                solutions[i] = self.displacement(problem, full) if problem.components == 2 else full
                if progress is not None:
                    progress(1)
        out = {name: torch.from_numpy(value) for name, value in fields.items()}
        out[problem.field_name] = torch.from_numpy(solutions)
        wall = time.perf_counter() - start
        samples = MeshSamples(disc.nodes, disc.cells, dict(disc.boundary), problem.element, out, params, ids,
                              {**self.provenance(problem), "factorisation": factorisation, "wall_time_s": wall})
        finite = samples.all_finite()
        if not finite.all():
            if on_blowup == "raise":
                raise BlowUpError(ids[~finite], 0.0, problem.name)
            samples = samples.select(np.flatnonzero(finite))
            samples.provenance["dropped"] = int((~finite).sum())
        return samples

    def _poisson(self, disc: MeshDiscretisation, f: np.ndarray) -> np.ndarray:
        """``(n_nodes, B)`` solutions of ``-Δu = f`` with the cached factorisation."""
        if disc.poisson_factor is None:
            system = condense_dirichlet(disc.stiffness, np.zeros(disc.space.ndofs), disc.dirichlet, 0.0)
            disc.poisson_factor, disc.poisson_free = spla.splu(system.A.tocsc()), system.free
        rhs = (disc.mass @ f.T)[disc.poisson_free]  # (n_free, B); u = 0 on the boundary: no lift
        out = np.zeros((disc.space.ndofs, f.shape[0]))
        out[disc.poisson_free] = disc.poisson_factor.solve(np.asfortranarray(rhs))
        return out

    def provenance(self, problem) -> dict[str, Any]:
        """Attributes that say how the samples are made (without the wall time)."""
        disc = self.discretisation(problem)
        return {
            "solver": "fem-mesh",
            "scheme": f"{problem.element} finite elements (scikit-fem) on the {problem.domain} mesh, "
                      f"{problem.equation}, u = 0 condensed; nodal inputs used through their interpolant",
            "method": self.method,
            "linear_solver": "scipy.sparse.linalg.splu",
            "element": problem.element,
            "equation": problem.equation,
            "domain": problem.domain,
            "dofs": disc.unknowns,
            "num_nodes": len(disc.nodes),
            "num_cells": len(disc.cells),
            "h": float(problem.h),
            "mesh_size": disc.mesh_size,
            "problem": problem.name,
            "dtype": "float64",
            "pdebench_version": pdebench.__version__,
            "torch_version": str(torch.__version__),
        }


__all__ = ["EQUATIONS", "MeshDiscretisation", "MeshFEMSolver", "MeshSamples", "check_wavenumber_band",
           "nearest_dirichlet_eigenvalue"]
