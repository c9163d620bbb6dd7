r"""The measured spatial error of generated data (``pdebench generate --verify K``).

``K`` of a file's samples are solved again on a grid twice as fine per axis and the stored frames are
compared with the finer solution transferred to the stored grid:

* time-dependent grid problems (spectral, finite volumes): the grid the data were solved on
  (:meth:`Problem.refined` ``(R)`` for ``--solve-refinement R``) with twice the points per axis and
  the same accuracy step ``max_dt`` (:func:`finer_problem`), restricted to the stored grid by
  :meth:`Problem.restrict`: point values at the nested nodes (every other fine point of the periodic
  grid, ``2R``-th for ``R > 1``), cell averages by block averages (each pair of fine cells averaged
  onto one coarse cell);
* steady grid problems (``darcy2d``, finite elements with the grid points as nodes): one uniform
  refinement, ``2 (n - 1) + 1`` nodes per axis, compared at the coarse nodes
  (:func:`~pdebench.core.grid_transfer.node_subsample`);
* mesh problems (``poisson``, ``helmholtz``, ``elasticity2d``): the mesh of size ``h / 2``, compared at
  the coarse nodes (:func:`nested_nodes`), where that mesh is one uniform refinement of the stored one
  (the L-shape); a domain meshed anew at every size (the disk with holes, the rectangle, the jittered
  square of ``darcy2d_mesh``) has no nested nodes and is refused.

Per field ``f``, sample ``b`` and frame ``k`` the error is the relative L2 error of
:func:`~pdebench.core.metrics.relative_l2`,

.. math:: e_{f,b,k} = \lVert u^{h}_{f,b,k} - R\,u^{h/2}_{f,b,k}\rVert_2 / \lVert R\,u^{h/2}_{f,b,k}\rVert_2,

and the file records its largest value over the verified samples per frame. It is the error of the
stored data against a solution with half the spacing: an estimate of the stored data's spatial error
that is sharp when the finer solution's own error is small beside it (a method of order ``p`` leaves
``2^-p`` of it: P1 elements record 3/4 of their error, spectral methods all of it). The time step is
kept (where the solver chooses it, a stability limit of the finer grid may still shorten it: the
finite volumes' CFL step halves with the cells, so their record holds SSP-RK3's share too), so the
two solves share their time error, which ``--rtol`` certifies separately.

The finer solve starts from the same input: each sampler draws sample ``(seed, index)`` on the finer
grid, and the draw is used when it restricts to the stored grid's own draw (a continuous function
sampled at the nodes, or exact cell averages: random sines, solitons, MP-PDE's forcing, the Darcy
coefficient); a sampler that draws a new field per grid (the periodic Gaussian random fields filter
white noise of the grid's size) has its stored-grid draw interpolated to the finer grid instead
(:func:`~pdebench.core.grid_transfer.fourier_interpolate`, the trigonometric interpolant, equal to
the stored grid's draw at its nodes; point values on periodic grids only). Particle (SPH) problems
cannot be verified this way (their resolution is the particle spacing; a finer particle set is a
different discrete system with no nested restriction).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from scipy.spatial import cKDTree

from pdebench.core.grid_transfer import fourier_interpolate, node_subsample
from pdebench.core.metrics import relative_l2
from pdebench.core.trajectories import Trajectories
from pdebench.problems.base import Problem
from pdebench.problems.elliptic import SteadyProblem
from pdebench.problems.mesh_problems import MeshProblem
from pdebench.problems.particles import ParticleProblem

#: Fraction of the samples ``--verify`` without a count re-solves (at least :data:`DEFAULT_VERIFY_MIN`).
DEFAULT_VERIFY_FRACTION = 0.02
DEFAULT_VERIFY_MIN = 2
#: Largest relative difference between a finer draw restricted and the stored grid's draw for the two
#: to count as one input (rounding of the same formula at the same points).
SAME_INPUT_RTOL = 1e-10


def verify_count(verify: Any, num_samples: int) -> int:
    """The number of samples ``--verify`` re-solves: ``None`` gives the default,
    ``max(2, ceil(0.02 N))``; an integer ``K >= 0`` gives ``K`` (``0``: no verification); either is
    clipped to ``num_samples`` (every sample at most).

    Raises
    ------
    ValueError
        ``verify`` is not ``None`` or an integer ``>= 0``.
    """
    if verify is None:
        verify = max(DEFAULT_VERIFY_MIN, math.ceil(DEFAULT_VERIFY_FRACTION * num_samples))
    elif isinstance(verify, bool) or not isinstance(verify, (int, np.integer)) or verify < 0:
        raise ValueError(f"verify must be an integer >= 0 (samples to re-solve on a 2x finer grid), got {verify!r}")
    return int(min(verify, num_samples))


def check_verify(problem: Any, verify: Any, num_samples: int) -> int:
    """:func:`verify_count` for ``problem``, refusing (``ValueError``, one line) a count above 0 for a
    problem this module cannot verify: particle (SPH) problems, a mesh problem whose ``h / 2`` mesh is
    out of range or no refinement of its mesh (:func:`nested_nodes`)."""
    count = verify_count(verify, num_samples)
    if count and isinstance(problem, ParticleProblem):
        raise ValueError(f"--verify: {problem.name} is a particle (SPH) problem, which a finer grid cannot verify: "
                         "its resolution is the particle spacing and a finer particle set does not restrict onto it")
    if count:
        finer = finer_problem(problem)
        if isinstance(problem, MeshProblem):
            nested_nodes(finer, problem)
    return count


def verified_indices(num_samples: int, count: int) -> np.ndarray:
    """``(count,)`` int64 sample indices spread evenly over ``0 … num_samples - 1``, both ends
    included (``round(linspace(0, N - 1, K))``; distinct for ``K <= N``)."""
    if count <= 0:
        return np.zeros(0, dtype=np.int64)
    return np.unique(np.round(np.linspace(0, num_samples - 1, count)).astype(np.int64))


def finer_problem(problem: Problem | SteadyProblem | MeshProblem,
                  refinement: int = 2) -> Problem | SteadyProblem | MeshProblem:
    """``problem`` on a grid ``refinement`` times finer per axis and nothing else changed: a
    time-dependent problem keeps its accuracy step ``max_dt`` (:meth:`Problem.with_resolution`; the
    solver's stability limit still shortens the step where the finer grid needs it), so the two
    solves share their time error and differ by the spatial one; a steady node-grid problem has
    ``(n - 1) r + 1`` nodes per axis (the old nodes among them, ``resolution``); a mesh problem
    (``r = 2`` only) the mesh size ``h / 2``."""
    if isinstance(problem, Problem):
        return problem.with_resolution(problem.spatial_shape[0] * refinement)
    if isinstance(problem, SteadyProblem) and hasattr(problem, "resolution"):
        return problem.replace(resolution=(problem.resolution - 1) * refinement + 1)
    if isinstance(problem, MeshProblem) and refinement == 2:
        try:
            return problem.replace(h=problem.h / 2)
        except ValueError as exc:
            raise ValueError(f"--verify: {problem.name} at h = {problem.h} has no finer mesh ({exc})") from None
    raise ValueError(f"--verify: {problem.name} cannot be solved on a {refinement}x finer grid")


def nested_nodes(finer: MeshProblem, coarse: MeshProblem) -> np.ndarray:
    """``(n_coarse,)`` int64: the index among ``finer``'s nodes of each of ``coarse``'s nodes.

    Raises
    ------
    ValueError
        A coarse node is not a node of the finer mesh (within ``1e-9`` of the domain's size): the
        domain is meshed anew at every size, so the finer mesh is no refinement of the stored one.
    """
    nodes = coarse.nodes()
    distance, index = cKDTree(finer.nodes()).query(nodes)
    if distance.max() > 1e-9 * float(np.ptp(nodes, axis=0).max()):
        raise ValueError(f"--verify: {coarse.name} on {coarse.domain!r} is meshed anew at h = {finer.h}, not refined: "
                         f"its nodes are not nodes of the finer mesh (off by up to {distance.max():.2g}); "
                         "mesh problems are verified on the L-shape")
    return index.astype(np.int64)


def restrict_field(value: torch.Tensor, finer: Problem | SteadyProblem, coarse: Problem | SteadyProblem) -> torch.Tensor:
    """Values on ``finer``'s grid, ``(B, T, *space[, C])`` (or ``(B, *space[, C])``), on ``coarse``'s
    nested grid: :meth:`Problem.restrict` for time-dependent problems (nested nodes or block averages),
    the coarse nodes (:func:`~pdebench.core.grid_transfer.node_subsample`) for steady node grids."""
    points, dims = coarse.spatial_shape[0], coarse.dim
    vector = tuple(value.shape[-dims:]) != tuple(finer.spatial_shape)  # channels last
    field = value.movedim(-1, 1) if vector else value
    field = finer.restrict(field, points) if isinstance(finer, Problem) else node_subsample(field, points, dims)
    return (field.movedim(1, -1) if vector else field).contiguous()


def finer_inputs(problem: Problem | SteadyProblem, finer: Problem | SteadyProblem, seed: int,
                 indices: Sequence[int]) -> tuple[torch.Tensor, str]:
    """The inputs (initial conditions, coefficients) of samples ``(seed, i)`` on ``finer``'s grid and how
    they were made: the sampler's draw on the finer grid where it restricts to its draw on
    ``problem``'s grid, the grid the stored data were solved on (within :data:`SAME_INPUT_RTOL`), else
    (periodic point values only) the trigonometric interpolant of ``problem``'s draw.

    Raises
    ------
    ValueError
        The draws differ and the grid's values cannot be interpolated (cell averages, node grids).
    """
    coarse = problem.sample_initial_conditions(seed, list(indices))
    fine = finer.sample_initial_conditions(seed, list(indices))
    difference = torch.nan_to_num(relative_l2(restrict_field(fine, finer, problem), coarse, reduction="none"), nan=0.0)
    if bool((difference <= SAME_INPUT_RTOL).all()):
        return fine, "the sampler's draw on the finer grid"
    if isinstance(problem, Problem) and not problem.cell_averaged:
        vector = tuple(coarse.shape[-problem.dim:]) != tuple(problem.spatial_shape)
        field = coarse.movedim(-1, 1) if vector else coarse
        field = fourier_interpolate(field, finer.spatial_shape[0], problem.dim)
        return (field.movedim(1, -1) if vector else field).contiguous(), "the stored grid's draw, trigonometric interpolant"
    raise ValueError(f"--verify: {problem.name}'s sampler draws a different input on the finer grid "
                     f"(relative difference {float(difference.max()):.2e}) and its values cannot be interpolated")


@dataclass(frozen=True)
class SpaceVerification:
    """Measured spatial errors of some samples of one file.

    Attributes
    ----------
    per_frame
        Field name -> ``(T,)`` float64, the largest relative L2 error per frame over the samples.
    samples
        The verified ``(seed, index)`` pairs, in order.
    method
        What was compared with what (the ``space_method`` of the certificate).
    """

    per_frame: dict[str, np.ndarray]
    samples: list[tuple[int, int]]
    method: str

    def merged(self, other: SpaceVerification | None) -> SpaceVerification:
        """Both sets of samples: the per-frame maximum of the two, samples concatenated."""
        if other is None:
            return self
        per_frame = {name: np.maximum(value, other.per_frame[name]) for name, value in self.per_frame.items()}
        return SpaceVerification(per_frame, self.samples + other.samples, self.method)

    def certificate(self, error_estimate: dict[str, Any] | None = None) -> dict[str, Any]:
        """``provenance["error_estimate"]`` with the spatial error added: the solver's keys (the time
        estimate ``method``, ``rtol``, ``time_max``, ``time_per_frame``, if any) kept as they are, plus
        ``space_method``, ``samples_verified`` (``[[seed, index], ...]``) and ``fields``: per field
        ``{"space_max", "space_per_frame"}``, with the solver's ``time_max``/``time_per_frame`` too
        when the record has one field (the one the time estimate covers)."""
        estimate = dict(error_estimate or {})
        fields: dict[str, dict[str, Any]] = {}
        for name, value in self.per_frame.items():
            entry: dict[str, Any] = {"space_max": float(value.max()), "space_per_frame": value.tolist()}
            if len(self.per_frame) == 1 and "time_per_frame" in estimate:
                entry.update(time_max=estimate["time_max"], time_per_frame=estimate["time_per_frame"])
            fields[name] = entry
        estimate.update(space_method=self.method, samples_verified=[list(map(int, s)) for s in self.samples],
                        fields=fields)
        return estimate


def verify_space(problem: Problem | SteadyProblem, solver, seed: int, indices: Sequence[int], *,
                 stored: Trajectories | None = None, solve_refinement: int = 1) -> SpaceVerification:
    """Solve samples ``(seed, i)``, ``i in indices``, on a grid twice as fine as the one the stored data
    was solved on and measure the stored data's relative L2 error per field and frame (module docstring).

    Parameters
    ----------
    problem
        The stored grid's problem.
    solver
        The solver of the finer solve (built like the stored data's).
    seed, indices
        The samples.
    stored
        Their stored trajectories, fields ``(B, T, *space[, C])`` in the order of ``indices``; ``None``
        solves them with ``solver`` on ``problem``'s grid (:meth:`Problem.refined` ``solve_refinement``
        times and restricted, as :func:`~pdebench.data.generate.generate_dataset` made them).
    solve_refinement
        The stored data were solved on ``problem.refined(solve_refinement)`` (``--solve-refinement``);
        the check solves on a grid twice as fine as that one, with its accuracy step.

    Returns
    -------
    SpaceVerification
        Per field the largest error per frame, ``(T,)``.
    """
    indices = [int(i) for i in indices]
    ids = np.array([[seed, i] for i in indices], dtype=np.int64).reshape(-1, 2)
    if isinstance(problem, MeshProblem):
        return _verify_mesh(problem, solver, ids, stored)
    solved = problem.refined(solve_refinement) if solve_refinement != 1 else problem
    finer = finer_problem(solved)
    if stored is None:
        inputs = solved.sample_initial_conditions(seed, indices)
        stored = solver.solve(solved, inputs, ids)
        if solved is not problem:
            stored = Trajectories({n: restrict_field(v, solved, problem) for n, v in stored.fields.items()},
                                  problem.coordinates(), problem.params(), ids)
    if not np.array_equal(stored.sample_ids, ids):
        raise ValueError(f"stored trajectories hold samples {stored.sample_ids.tolist()}, expected {ids.tolist()}")
    inputs, drawn = finer_inputs(solved, finer, seed, indices)
    fine = solver.solve(finer, inputs, ids)
    per_frame = {}
    for name, value in stored.fields.items():
        reference = restrict_field(fine.fields[name].to(torch.float64), finer, problem)
        error = relative_l2(value.to(torch.float64), reference, batch_dims=2, reduction="none")  # (B, T)
        per_frame[name] = torch.nan_to_num(error, nan=0.0).amax(0).numpy()  # 0/0: both exactly zero
    grid = "x".join(map(str, finer.spatial_shape))
    transfer = ("block-averaged" if getattr(problem, "cell_averaged", False) else "at the coarse nodes"
                if isinstance(problem, SteadyProblem) else "restricted to the nested nodes")
    than = "the solve's" if solve_refinement != 1 else "the stored"
    step = "; one uniform refinement" if isinstance(problem, SteadyProblem) else ", the same accuracy step"
    method = f"re-solved on a grid 2x finer than {than} ({grid}{step})"
    return SpaceVerification(per_frame, [(seed, i) for i in indices],
                             f"{method}, {transfer}, from {drawn}; relative L2 per frame, max over the samples")


def _verify_mesh(problem: MeshProblem, solver, ids: np.ndarray, stored: Any) -> SpaceVerification:
    """:func:`verify_space` for a mesh problem: ``h / 2``, compared at the coarse nodes; one "frame"
    per field (the problem is steady). ``stored``: its :class:`~pdebench.solvers.fem.mesh_solver.MeshSamples`
    (nodal fields ``(B, n_nodes[, C])``) or ``None``."""
    seed, indices = int(ids[0, 0]), ids[:, 1].tolist()
    finer = finer_problem(problem)
    index = torch.as_tensor(nested_nodes(finer, problem))
    if stored is None:
        stored = solver.solve(problem, problem.sample_inputs(seed, indices), ids)
    if not np.array_equal(stored.sample_ids, ids):
        raise ValueError(f"stored samples {stored.sample_ids.tolist()}, expected {ids.tolist()}")
    inputs = finer.sample_inputs(seed, indices)
    for name, value in problem.sample_inputs(seed, indices).items():  # continuous fields seen at the nodes
        fine = torch.as_tensor(inputs[name])
        same = relative_l2(fine[:, index] if fine.ndim > 1 else fine, torch.as_tensor(value), batch_dims=int(fine.ndim > 1),
                           reduction="none")
        if not bool((same <= SAME_INPUT_RTOL).all()):
            raise ValueError(f"--verify: {problem.name}'s input {name!r} differs on the finer mesh ({float(same.max()):.2e})")
    fine = solver.solve(finer, inputs, ids)
    per_frame = {}
    for name, value in stored.fields.items():
        reference = fine.fields[name].to(torch.float64)[:, index]
        error = relative_l2(value.to(torch.float64), reference, reduction="none")  # (B,)
        per_frame[name] = torch.nan_to_num(error, nan=0.0).amax(0, keepdim=True).numpy()
    method = (f"re-solved on the mesh of size h / 2 = {finer.h:g} (one uniform refinement, {finer.num_nodes} nodes), at the "
              "coarse nodes, from the sampler's draw on the finer mesh; relative L2 over the nodes, max over the samples")
    return SpaceVerification(per_frame, [(seed, int(i)) for i in indices], method)


def certified_error(provenance: Mapping[str, Any]) -> float | None:
    """The largest relative L2 error a solve's ``provenance["error_estimate"]`` certifies over its
    frames: the solver's time estimate (``time_max``) and every field's measured spatial error
    (``fields.<name>.space_max``, :meth:`SpaceVerification.certificate`); ``None`` when it certifies
    nothing (no estimate, or ``certified`` false)."""
    estimate = provenance.get("error_estimate") or {}
    values = [estimate.get("time_max")] + [entry.get("space_max") for entry in (estimate.get("fields") or {}).values()]
    values = [float(v) for v in values if v is not None]
    return max(values) if values else None
