"""Dataset generation: sample inputs, solve in batches, stream each batch to an HDF5 file.

Grid problems are written by :class:`~pdebench.io.trajectory_file.TrajectoryWriter` (PDEBench layouts); mesh
problems (:class:`~pdebench.problems.mesh_problems.MeshProblem`) by
:class:`~pdebench.io.mesh_file.MeshDataWriter` (one mesh, nodal fields per sample); particle problems
(:class:`~pdebench.problems.particles.ParticleProblem`) by
:class:`~pdebench.io.particle_file.ParticleDataWriter` (one group of frames per trajectory).
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from pdebench.data.verification import (SpaceVerification, check_verify, finer_inputs, finer_problem, restrict_field,
                                         verified_indices, verify_space)
from pdebench.io.base import check_free_disk
from pdebench.io.trajectory_file import TrajectoryWriter
from pdebench.core.trajectories import Trajectories
from pdebench.problems.base import Problem
from pdebench.problems.elliptic import SteadyProblem
from pdebench.problems.mesh_problems import MeshProblem
from pdebench.problems.particle_scenes import SPHSettings
from pdebench.problems.particles import ParticleProblem
from pdebench.solvers import SOLVERS
from pdebench.solvers.sph.scheme import WCSPH
from pdebench.io.mesh_file import MeshDataWriter
from pdebench.io.particle_file import ParticleDataWriter

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class GenerationSummary:
    """What :func:`generate_dataset` wrote: counts, output shape, throughput and size."""

    path: Path
    num_samples: int
    field_shapes: dict[str, tuple[int, ...]]
    wall_time_s: float
    bytes_written: int
    solver: str
    dt: float
    #: What ``verify`` measured (``None``: not verified).
    verification: SpaceVerification | None = None

    @property
    def samples_per_second(self) -> float:
        """Samples solved and written per wall-clock second."""
        return self.num_samples / self.wall_time_s if self.wall_time_s > 0 else float("inf")


def build_solver(problem: Problem, *, certified: bool = True, **solver_kwargs: Any):
    """The problem's default solver (``problem.solver``) built with validated ``solver_kwargs`` and,
    where the solver has a ``check(problem)`` (the mesh FEM solver: a Helmholtz band near a discrete
    eigenvalue), checked against the problem before anything is solved or written.

    ``certified=False`` asks a solver that certifies a time tolerance (an ``rtol`` argument) for
    fixed steps instead (``rtol=None``, whatever ``solver_kwargs`` say): the solver ladder's rungs,
    whose step is what they measure."""
    if not certified and "rtol" in SOLVERS.get(problem.solver).arguments():
        solver_kwargs = {**solver_kwargs, "rtol": None}
    solver = SOLVERS.build(problem.solver, **solver_kwargs)
    if callable(getattr(solver, "check", None)):
        solver.check(problem)
    return solver


def solve_samples(problem: Problem | MeshProblem, solver, seed: int, indices: np.ndarray, **kwargs: Any) -> Trajectories:
    """Draw and solve samples ``(seed, i)`` for ``i in indices``; shapes as :meth:`SpectralSolver.solve`
    (a mesh problem: :class:`~pdebench.solvers.fem.mesh_solver.MeshSamples`, nodal fields ``(B, n_nodes[, C])``)."""
    indices = np.asarray(indices, dtype=np.int64)
    u0 = problem.sample_initial_conditions(seed, indices.tolist())
    ids = np.column_stack([np.full(len(indices), seed, dtype=np.int64), indices])
    return solver.solve(problem, u0, ids, **kwargs)


def restrict_trajectories(traj: Trajectories, fine: Problem, coarse: Problem, refinement: int) -> Trajectories:
    """Trajectories solved on ``fine`` transferred to ``coarse``'s grid by :meth:`Problem.restrict`
    (nested point sampling, or block averages for cell averages), with ``coarse``'s coordinates and
    parameters and the fine solve recorded in the provenance."""
    fields = {name: restrict_field(value, fine, coarse) for name, value in traj.fields.items()}
    provenance = {**traj.provenance, "solve_refinement": int(refinement),
                  "solved_resolution": "x".join(map(str, fine.spatial_shape)),
                  "resolution": "x".join(map(str, coarse.spatial_shape))}
    return Trajectories(fields, coarse.coordinates(), coarse.params(), traj.sample_ids, provenance)


def check_generation_args(num_samples: int, seed: int, batch_size: int) -> None:
    """Raise ``ValueError`` naming the first of ``num_samples``, ``seed``, ``batch_size`` out of range."""
    for name, value, least in (("num_samples", num_samples, 1), ("seed", seed, 0), ("batch_size", batch_size, 1)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < least:
            raise ValueError(f"{name} must be an integer >= {least}, got {value!r}")


def check_solver_step(problem: Problem | MeshProblem | ParticleProblem, solver, seed: int, batch_size: int) -> None:
    """Check the solver's requested step against the stability limit of the first batch's initial
    conditions, before any file is opened (solvers with a ``check_step(problem, u0)`` method: the
    spectral one; adaptive solvers choose their own step and have nothing to check).

    Raises
    ------
    StabilityError
        (a ``ValueError``) naming the requested ``dt`` and the limit.
    """
    if not hasattr(solver, "check_step") or not isinstance(problem, Problem):
        return
    indices = list(range(batch_size))
    solver.check_step(problem, problem.sample_initial_conditions(seed, indices), [(seed, i) for i in indices])


#: Working copies of one sample's state a batched time step holds at once, each complex128 (16 bytes
#: per point): the state's spectrum, the stages of a fourth-order Runge–Kutta / ETDRK4 step and their
#: nonlinear terms, and the FFT buffers; a certified run (the default) holds a second run's state, both
#: runs' states at the interval's start for a redo, the redo's selections and both runs' stages
#: (measured on burgers1d at 8192 points: about 26 copies at the peak; counted generously: the check
#: refuses only what cannot fit).
_STEP_WORKING_COPIES = 40
#: A steady problem's samples are solved one linear system at a time, so only their fields and what each
#: sample leaves (a finite-element batch keeps every sample's assembled matrix) grow with the batch:
#: ``_HELD`` bytes a grid point per sample besides the fields, and ``_SOLVE[d]`` bytes a point for the one
#: solve in flight in ``d`` dimensions (its matrix, LU factors or AMG hierarchy, Krylov vectors): 2-D solves
#: default to sparse LU (``fem``), whose fill is the larger (measured about 1,800 bytes a point in all on
#: darcy2d at 211²); 3-D ones to AMG-PCG (``fv-elliptic``; about 600 at 34³ and 50³).
_STEADY_BYTES_PER_POINT_HELD = 40
_STEADY_BYTES_PER_POINT_SOLVE = {1: 2000, 2: 2000, 3: 1000}


@dataclass(frozen=True)
class GenerationEstimate:
    """What a generation run needs before it starts: ``output_bytes`` of stored float32 fields for all
    samples (HDF5 overhead aside) and ``batch_bytes``, the peak memory of one batch's solve."""

    output_bytes: int
    batch_bytes: int


def estimate_generation(problem: Problem | SteadyProblem, num_samples: int, batch_size: int) -> GenerationEstimate | None:
    """Bytes written and peak batch memory of :func:`generate_dataset`, from the grid alone (nothing is solved).

    A time-dependent grid problem stores ``u`` of ``(N, n_out + 1, *spatial_shape[, C])`` float32; a
    steady one its input and solution fields of ``(N, 1, *spatial_shape)``. One batch of ``B``
    samples holds its trajectories in float64 and float32 (12 bytes a value) and, time-dependent,
    :data:`_STEP_WORKING_COPIES` complex128 copies of each sample's state (the batch steps together), or,
    steady, :data:`_STEADY_BYTES_PER_POINT_HELD` bytes a point per sample and one linear solve of
    :data:`_STEADY_BYTES_PER_POINT_SOLVE` bytes a point for its dimension (the samples are solved one at a time). Mesh and
    particle problems (sizes fixed by their mesh or particle count) give ``None``.
    """
    if isinstance(problem, Problem):  # channels, if any, from one initial condition (cheap: no solve)
        state = int(np.prod(problem.sample_initial_conditions(0, [0]).shape[1:]))
        frames, fields = len(problem.output_times()), 1
    elif isinstance(problem, SteadyProblem):
        state, frames, fields = int(np.prod(problem.spatial_shape)), 1, 2
    else:
        return None
    values_per_sample = fields * frames * state
    batch = min(batch_size, num_samples)
    if isinstance(problem, SteadyProblem):
        batch_bytes = batch * (12 * values_per_sample + _STEADY_BYTES_PER_POINT_HELD * state) + _STEADY_BYTES_PER_POINT_SOLVE[problem.dim] * state
    else:
        batch_bytes = batch * (12 * values_per_sample + 16 * _STEP_WORKING_COPIES * fields * state)
    return GenerationEstimate(output_bytes=4 * values_per_sample * num_samples, batch_bytes=batch_bytes)


def available_memory_bytes() -> int | None:
    """Memory this process may still allocate: ``MemAvailable`` of ``/proc/meminfo``, lowered to the
    room left under a cgroup v2 limit (containers, batch schedulers); ``None`` where neither is known."""
    room: list[int] = []
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                room.append(int(line.split()[1]) * 1024)
    except (OSError, ValueError, IndexError):
        pass
    try:
        limit = Path("/sys/fs/cgroup/memory.max").read_text().strip()
        if limit != "max":
            room.append(int(limit) - int(Path("/sys/fs/cgroup/memory.current").read_text().strip()))
    except (OSError, ValueError):
        pass
    return min(room) if room else None


def check_generation_fits(problem: Problem | MeshProblem | ParticleProblem, output: str | os.PathLike[str], *,
                          num_samples: int, batch_size: int, solve_refinement: int = 1) -> GenerationEstimate | None:
    """Refuse, before anything is opened, a run whose output does not fit the disk of ``output``'s
    folder or whose batch does not fit in memory (:func:`estimate_generation`; the batch is solved on
    the grid ``solve_refinement`` times finer, the output stored on ``problem``'s).

    Raises
    ------
    ValueError
        One line with the estimate and the free disk (:func:`~pdebench.io.base.check_free_disk`)
        or the available memory and the batch size to lower.
    """
    estimate = estimate_generation(problem, num_samples, batch_size)
    if estimate is None:
        return None
    folder = Path(output).parent
    grid = "×".join(map(str, problem.spatial_shape))
    check_free_disk(folder if folder.is_dir() else Path("."), estimate.output_bytes,
                    f"{Path(output).name} ({num_samples} samples of {problem.name} on a {grid} grid)")
    if solve_refinement != 1:
        solved = estimate_generation(problem.refined(solve_refinement), num_samples, batch_size)
        estimate = GenerationEstimate(estimate.output_bytes, solved.batch_bytes)
    memory = available_memory_bytes()
    if memory is not None and estimate.batch_bytes > memory:
        batch = min(batch_size, num_samples)
        fitting = int(memory // (estimate.batch_bytes / batch))
        advice = f"use --batch-size {fitting} or less" if fitting >= 1 else "one sample does not fit either: use a coarser grid"
        raise ValueError(f"a batch of {batch} samples of {problem.name} on a {grid} grid needs about "
                         f"{estimate.batch_bytes / 2**30:.3g} GiB, {memory / 2**30:.3g} GiB of memory available; {advice}")
    return estimate


def generate_dataset(
    problem: Problem | MeshProblem,
    output: str | os.PathLike[str],
    *,
    num_samples: int,
    seed: int = 0,
    batch_size: int = 32,
    overwrite: bool = False,
    solver_kwargs: dict[str, Any] | None = None,
    progress: Callable[[int], None] | None = None,
    solve_refinement: int = 1,
    verify: int | None = 0,
) -> GenerationSummary:
    """Generate ``num_samples`` trajectories of ``problem`` into the HDF5 file ``output``.

    Samples ``(seed, 0) … (seed, num_samples - 1)`` are solved ``batch_size`` at a time and each batch is
    appended to the file as soon as it is solved, so memory stays bounded by one batch. The file
    appears under ``output`` only once complete (see :class:`TrajectoryWriter`); every argument and the
    destination are checked before the first solve. A mesh problem
    (:class:`~pdebench.problems.mesh_problems.MeshProblem`) is written in the mesh layout of
    :mod:`pdebench.io.mesh_file` (``field_shapes`` ``(N, n_nodes[, C])``, ``dt`` NaN); a particle problem
    (:class:`~pdebench.problems.particles.ParticleProblem`) in the layout of
    :mod:`pdebench.io.particle_file` (``field_shapes`` ``{"positions": (N, T, n_max, d)}`` with the
    largest particle count, ``dt`` NaN: the step is adaptive).

    Parameters
    ----------
    problem
        The problem (its ``solver`` names the solver).
    output
        Destination ``.h5`` path.
    num_samples, seed, batch_size
        How many samples, from which stream, solved how many at a time.
    overwrite
        Replace an existing ``output``.
    solver_kwargs
        Arguments of the solver (e.g. ``{"dt": 1e-3, "dtype": "float32"}``).
    progress
        Called with the number of samples finished by each batch.
    solve_refinement
        Solve on a grid this many times finer (``max_dt`` divided likewise) and store the result
        restricted to ``problem``'s grid (:func:`restrict_trajectories`): training data made the way the
        leaderboard makes its reference (MP-PDE's recipe: solve on 200 points, store 100, 50 or 40).
        Grid problems only.
    verify
        Re-solve this many samples (``None``: :func:`~pdebench.data.verification.verify_count`'s default,
        2 % and at least 2; ``0``: none; clipped to ``num_samples``), spread evenly over the file
        (:func:`~pdebench.data.verification.verified_indices`), on a grid twice as fine and record the
        stored data's measured relative L2 error per field and frame in ``provenance["error_estimate"]``
        (:meth:`~pdebench.data.verification.SpaceVerification.certificate`). Refused for particle
        problems and for mesh problems whose finer mesh is no refinement (:mod:`~pdebench.data.verification`).
    """
    check_generation_args(num_samples, seed, batch_size)
    verify = check_verify(problem, verify, num_samples)
    if solve_refinement != 1 and not isinstance(problem, Problem):
        raise ValueError(f"solve_refinement={solve_refinement} needs a time-dependent grid problem; {problem.name} is not one")
    check_generation_fits(problem, output, num_samples=num_samples, batch_size=batch_size, solve_refinement=solve_refinement)
    fine = problem.refined(solve_refinement) if solve_refinement != 1 else problem
    solver = build_solver(problem, **(solver_kwargs or {}))
    check_solver_step(fine, solver, seed, min(batch_size, num_samples))
    if isinstance(problem, ParticleProblem):
        return _generate_particle_dataset(problem, solver, output, num_samples=num_samples, seed=seed,
                                          batch_size=batch_size, overwrite=overwrite, progress=progress)
    if isinstance(problem, MeshProblem):
        checker = build_solver(finer_problem(problem), **(solver_kwargs or {})) if verify else None  # checks the finer mesh
        return _generate_mesh_dataset(problem, solver, output, num_samples=num_samples, seed=seed, batch_size=batch_size,
                                      overwrite=overwrite, progress=progress, verify=verified_indices(num_samples, verify),
                                      checker=checker)
    to_verify = verified_indices(num_samples, verify)
    checker = _verification_solver(fine, solver_kwargs or {}, seed, to_verify) if verify else None
    start = time.perf_counter()
    dt = float("nan")
    verification: SpaceVerification | None = None
    with TrajectoryWriter(output, overwrite=overwrite, provenance={"seed": seed, "problem": problem.name,
                                                                         "problem_args": problem.arguments()}) as writer:
        for first in range(0, num_samples, batch_size):
            indices = np.arange(first, min(first + batch_size, num_samples))
            batch = solve_samples(fine, solver, seed, indices)
            if fine is not problem:
                batch = restrict_trajectories(batch, fine, problem, solve_refinement)
            dt = float(batch.provenance.get("dt", dt))
            writer.append(batch)
            verification = _verify_batch(problem, checker, seed, batch, to_verify, verification, solve_refinement)
            if progress is not None:
                progress(len(indices))
            shapes = {name: (num_samples, *value.shape[1:]) for name, value in batch.fields.items()}
        if verification is not None:  # before close: the file appears with its certificate or not at all
            writer.update_provenance({"error_estimate": verification.certificate(writer.provenance.get("error_estimate"))})
        writer.update_provenance({"wall_time_s": time.perf_counter() - start})  # what the data cost to make
    wall = time.perf_counter() - start
    path = Path(output)
    log.info("wrote %d samples of %s to %s in %.1f s", num_samples, problem.name, path, wall)
    return GenerationSummary(path, num_samples, shapes, wall, path.stat().st_size, problem.solver, dt, verification)


def _verify_batch(problem: Problem | SteadyProblem | MeshProblem, checker, seed: int, batch, to_verify: np.ndarray,
                  verification: SpaceVerification | None, solve_refinement: int = 1) -> SpaceVerification | None:
    """``verification`` with the samples of ``batch`` (as written) that are among ``to_verify`` added."""
    rows = np.flatnonzero(np.isin(batch.sample_ids[:, 1], to_verify))
    if not len(rows):
        return verification
    stored = batch.select(rows)  # as the file holds them: float32
    stored.fields = {name: value.to(torch.float32) for name, value in stored.fields.items()}
    part = verify_space(problem, checker, seed, stored.sample_ids[:, 1], stored=stored, solve_refinement=solve_refinement)
    return part if verification is None else verification.merged(part)


def _verification_solver(solved: Problem | SteadyProblem, solver_kwargs: dict[str, Any], seed: int,
                         indices: np.ndarray):
    """The solver of ``--verify``'s finer solves (a second one like the data's: its caches are the
    finer grid's), with the verified samples' finer inputs drawn and its step checked on them before
    any file is opened: a sampler that cannot be matched, or an explicit ``dt`` stable on the data's
    grid (``solved``) only, is refused here."""
    checker = build_solver(solved, **solver_kwargs)
    finer = finer_problem(solved)
    inputs, _ = finer_inputs(solved, finer, seed, indices.tolist())
    if hasattr(checker, "check_step") and isinstance(solved, Problem):
        checker.check_step(finer, inputs, [(seed, int(i)) for i in indices])
    return checker


def _generate_mesh_dataset(problem: MeshProblem, solver, output: str | os.PathLike[str], *, num_samples: int, seed: int,
                           batch_size: int, overwrite: bool, progress: Callable[[int], None] | None,
                           verify: np.ndarray | None = None, checker=None) -> GenerationSummary:
    """:func:`generate_dataset` for a mesh problem: the mesh once, then each batch's nodal fields and
    per-sample params, through :class:`~pdebench.io.mesh_file.MeshDataWriter` (atomic like the grid path).
    File provenance: the solver's (``solver``, ``element``, ``dofs``, ``method``, ``mesh_size``, ...),
    ``seed``, ``problem``, ``problem_params`` (JSON) and the total ``wall_time_s``."""

    start = time.perf_counter()
    nodes, cells, boundary, element = solver.mesh_data(problem)
    provenance = {**solver.provenance(problem), "seed": seed, "problem": problem.name, "problem_params": problem.params()}
    shapes: dict[str, tuple[int, ...]] = {}
    verification: SpaceVerification | None = None
    with MeshDataWriter(output, nodes, cells, boundary, element, overwrite=overwrite, provenance=provenance) as writer:
        for first in range(0, num_samples, batch_size):
            indices = np.arange(first, min(first + batch_size, num_samples))
            batch = solve_samples(problem, solver, seed, indices)
            writer.append({name: value.numpy() for name, value in batch.fields.items()}, batch.sample_ids, batch.params)
            if verify is not None and len(verify):
                verification = _verify_batch(problem, checker, seed, batch, verify, verification)
            if progress is not None:
                progress(len(indices))
            shapes = {name: (num_samples, *value.shape[1:]) for name, value in batch.fields.items()}
        writer.update_provenance({"wall_time_s": time.perf_counter() - start})
        if verification is not None:
            writer.update_provenance({"error_estimate": verification.certificate(writer.provenance.get("error_estimate"))})
    wall = time.perf_counter() - start
    path = Path(output)
    log.info("wrote %d samples of %s (%d nodes) to %s in %.1f s", num_samples, problem.name, len(nodes), path, wall)
    return GenerationSummary(path, num_samples, shapes, wall, path.stat().st_size, problem.solver, float("nan"), verification)


def _generate_particle_dataset(problem: ParticleProblem, solver, output: str | os.PathLike[str], *, num_samples: int,
                               seed: int, batch_size: int, overwrite: bool,
                               progress: Callable[[int], None] | None) -> GenerationSummary:
    """:func:`generate_dataset` for a particle problem through
    :class:`~pdebench.io.particle_file.ParticleDataWriter` (atomic like the grid path). The box, its
    periodic axes and the kernel radius (for graphs) are the first scene's; every scene must share them.
    File provenance: the solver's, ``seed``, ``problem``, ``problem_params`` (JSON), ``steps`` and
    ``wall_time_s``."""

    start = time.perf_counter()
    box = particle_box(problem.scene(seed, 0).physics)
    provenance = {**solver.provenance(), "seed": seed, "problem": problem.name, "problem_params": problem.params()}
    n_max, steps = 0, 0
    with ParticleDataWriter(output, **box, overwrite=overwrite, provenance=provenance) as writer:
        for first in range(0, num_samples, batch_size):
            indices = np.arange(first, min(first + batch_size, num_samples))
            scenes = problem.sample_initial_conditions(seed, indices.tolist())
            for index, scene in zip(indices, scenes):
                if particle_box(scene.physics) != box:
                    raise ValueError(f"{problem.name}: sample ({seed}, {index}) has box {particle_box(scene.physics)}, "
                                     f"but the file's is {box}; every scene of a file must share it")
            ids = np.column_stack([np.full(len(indices), seed, dtype=np.int64), indices])
            batch = solver.solve(problem, scenes, ids)
            writer.append(batch.trajectories)
            steps += int(batch.provenance["steps"])
            n_max = max([n_max, *(t.num_particles for t in batch.trajectories)])
            if progress is not None:
                progress(len(indices))
        writer.update_provenance({"steps": steps, "wall_time_s": time.perf_counter() - start})
    wall = time.perf_counter() - start
    path = Path(output)
    log.info("wrote %d %s trajectories (up to %d particles) to %s in %.1f s", num_samples, problem.name, n_max, path, wall)
    shapes = {"positions": (num_samples, problem.n_out + 1, n_max, problem.dim)}
    return GenerationSummary(path, num_samples, shapes, wall, path.stat().st_size, problem.solver, float("nan"))


def particle_box(physics: SPHSettings) -> dict[str, Any]:
    """``{"lower", "upper", "periodic", "radius"}`` (m; periodic flags) of the
    :class:`~pdebench.solvers.sph.scheme.WCSPH` stepper that ``physics`` (a scene's
    :class:`~pdebench.problems.particle_scenes.SPHSettings`) builds: what a particle data file records
    once (graphs are built with ``radius``, the kernel support radius)."""
    stepper = WCSPH.from_settings(physics)
    return {"lower": tuple(stepper.lower), "upper": tuple(stepper.upper), "periodic": tuple(stepper.periodic),
            "radius": float(stepper.radius)}
