"""Held-out reference sets and the classical solver's accuracy–cost ladder for leaderboard tasks.

The reference of a task is solved once on a grid ``reference_refinement`` times finer than the
task's (accuracy step divided likewise) from the task's held-out seeds, and cached by content hash.
Its initial conditions live on the fine grid; every coarser solve (a ladder rung) starts from their
Fourier truncation, and a model starts from their values at the task's grid points (a subset of the
fine grid points), so everyone solves the same problem. Errors are measured at the task's grid:
ladder outputs are Fourier-interpolated to it, the reference is sampled on it.

Problems whose values are cell averages (``Problem.cell_averaged``, the finite-volume ``mppde_e1``)
transfer between grids by :meth:`~pdebench.problems.base.Problem.restrict` instead: the reference and
every rung's initial condition are block averages of the fine cells (exact for cell averages), and a
rung's output (its resolution divides the task's) is prolonged to the task grid piecewise constant,
each coarse cell's average repeated over the task cells it covers.

A task's ``eval_resolutions`` (the resolution protocol) keep the truth at each other grid ``r`` too
(:attr:`ReferenceSet.resolutions`: the reference solve sampled at every ``fine / r``-th point, exact
since ``r`` divides the fine grid); the ladder at ``r`` (:func:`run_ladder` with ``points=r``) runs the
task's rungs scaled to ``r`` (:meth:`~pdebench.evaluation.suite.TaskSpec.ladder_at`) and measures their
errors against it.

Every rung and model is scored with :func:`task_metrics` (the full metric set; rollouts add the MP-PDE
accumulated error and the rollout summaries of APEBench and The Well) and, on a rollout, its per-step
curves (:func:`step_curves`).
"""

from __future__ import annotations

import logging
import math
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from pdebench.atomic import atomic_write
from pdebench.core.grid_transfer import (block_average, fourier_resample, node_interpolate, node_subsample,
                                         prolong_piecewise_constant)
from pdebench.data.generate import build_solver
from pdebench.core.metrics import (accumulated_error, all_metrics, nrmse, rollout_correlation, rollout_metrics, rollout_mse,
                                   rollout_nrmse, rollout_vrmse)
from pdebench.evaluation.suite import TaskSpec
from pdebench.data.verification import certified_error, verify_space
from pdebench.solvers.base import BlowUpError

log = logging.getLogger(__name__)


#: Reference samples re-solved on a grid twice as fine to measure the reference's own spatial error.
SPACE_CHECKED = 2


def scored_frames(task: TaskSpec, frames: int) -> slice:
    """Frames a model predicts: the last one (``one_step``, ``steady``) or all after the history (``rollout``)."""
    return slice(task.history, frames) if task.mode == "rollout" else slice(frames - 1, frames)


def _to_metric(a: torch.Tensor) -> torch.Tensor:
    """``(N, T, *space)`` -> the metrics' ``(N, 1, *space, T)`` layout, float64."""
    return a.double().unsqueeze(1).movedim(2, -1)


def score(prediction: torch.Tensor, truth: torch.Tensor) -> float:
    """nRMSE of ``(N, T, *space)`` predictions against the truth, over all scored frames."""
    return float(nrmse(_to_metric(prediction), _to_metric(truth)))


def task_metrics(prediction: torch.Tensor, truth: torch.Tensor, mode: str) -> dict[str, float]:
    """Every metric of ``(N, T, *space)`` scored-frame predictions against the truth.

    :func:`~pdebench.core.metrics.all_metrics` over the ``T`` scored frames and, for a
    ``"rollout"`` task, ``accumulated_error`` (:func:`~pdebench.core.metrics.accumulated_error`:
    ``mean_n (1/N_space) sum_t sum_x (p - y)^2``, MP-PDE's score) and
    :func:`~pdebench.core.metrics.rollout_metrics` (``corr_time``, ``corr_step``,
    ``rollout_nrmse_gmean``, ``vrmse_1``, ``vrmse_6-12``, ``vrmse_13-30``; step 1 is the first scored
    frame). Values that are not finite are left out (a diverged solve; its nRMSE says so).
    """
    p, y = _to_metric(prediction), _to_metric(truth)
    out = all_metrics(p, y)
    if mode == "rollout":
        out["accumulated_error"] = float(accumulated_error(p, y))
        out.update(rollout_metrics(p, y))
    return {k: v for k, v in out.items() if np.isfinite(v)}


def step_curves(prediction: torch.Tensor, truth: torch.Tensor) -> dict[str, np.ndarray]:
    """Per-step errors of ``(N, T, *space)`` scored-frame predictions: ``{"mse", "nrmse", "corr",
    "vrmse"}``, each ``(T,)``.

    ``mse[t] = mean_n (1/N_space) sum_x (p - y)^2`` (the accumulated error's term at step ``t``, so
    ``mse.sum()`` is ``accumulated_error``); ``nrmse[t]``, ``corr[t]`` (Pearson) and ``vrmse[t]`` from
    :func:`~pdebench.core.metrics.rollout_nrmse`, :func:`~pdebench.core.metrics.rollout_correlation` and
    :func:`~pdebench.core.metrics.rollout_vrmse`. Entry ``t`` is scored frame ``t``.
    """
    p, y = _to_metric(prediction), _to_metric(truth)
    return {"mse": rollout_mse(p, y).numpy(), "nrmse": rollout_nrmse(p, y).numpy(),
            "corr": rollout_correlation(p, y).numpy(), "vrmse": rollout_vrmse(p, y).numpy()}


@dataclass
class ReferenceSet:
    """A task's held-out samples: fine-grid initial conditions ``(N, *fine)`` and the reference
    trajectories sampled on the task grid ``(N, T, *task)`` (float64), with their ids and times;
    ``resolutions`` the same trajectories sampled on each other grid of the task's ``eval_resolutions``,
    ``r -> (N, T, *[r] * dim)``."""

    initial: torch.Tensor
    truth: torch.Tensor
    times: np.ndarray
    sample_ids: np.ndarray
    wall_time_s: float
    cache_path: Path | None = None
    #: Whether the values are cell averages (``Problem.cell_averaged``): grids transfer by block averages.
    cell_averaged: bool = False
    #: The reference solve's certified relative error (:func:`~pdebench.data.verification.certified_error`):
    #: its solver's time estimate and the spatial error measured on :data:`SPACE_CHECKED` samples
    #: re-solved on a grid twice as fine. A model scoring below it is not rankable.
    certified_error: float | None = None
    #: The truth at each other grid of the task's ``eval_resolutions``: ``r -> (N, T, *[r] * dim)`` float64.
    resolutions: dict[int, torch.Tensor] = field(default_factory=dict)

    def truth_on(self, points: int | None = None) -> torch.Tensor:
        """The reference trajectories ``(N, T, *space)`` on the task grid (``points`` None or the task's)
        or on another grid of the task's ``eval_resolutions``."""
        if points is None or points == self.truth.shape[-1]:
            return self.truth
        if points not in self.resolutions:
            raise ValueError(f"the reference holds the truth at {[self.truth.shape[-1], *sorted(self.resolutions)]} points, "
                             f"not at {points}; list {points} in the task's eval_resolutions")
        return self.resolutions[points]

    @property
    def cost_per_sample_s(self) -> float:
        """Wall seconds per sample of the reference solve (one batch of all samples, cold: no warm-up,
        no repeats; as recorded when the reference was first solved, possibly on other hardware)."""
        return self.wall_time_s / max(len(self.sample_ids), 1)

    def task_initial(self, points: int, dims: int) -> torch.Tensor:
        """Initial conditions at ``points`` per axis (exact samples when the grids nest, else Fourier;
        cell averages: block averages of the fine cells, which must nest)."""
        fine = self.initial.shape[-1]
        if self.cell_averaged:
            return block_average(self.initial, points, dims)
        if fine % points == 0:
            stride = fine // points
            return self.initial[(..., *([slice(None, None, stride)] * dims))]
        return fourier_resample(self.initial, points, dims)


def _cached(reference: ReferenceSet) -> ReferenceSet:
    """Write ``reference`` to its ``cache_path`` (``.npz``, atomically) and return it."""
    with atomic_write(reference.cache_path) as handle:
        np.savez(handle, initial=reference.initial.numpy(), truth=reference.truth.numpy(), times=reference.times,
                 sample_ids=reference.sample_ids, wall_time_s=np.array(reference.wall_time_s),
                 certified_error=np.array(np.nan if reference.certified_error is None else reference.certified_error),
                 **{f"truth_{r}": t.numpy() for r, t in reference.resolutions.items()})
    return reference


def build_reference(task: TaskSpec, cache_dir: str | Path, progress: Callable[[int], None] | None = None) -> ReferenceSet:
    """The task's reference set, from ``cache_dir/<name>-<hash>.npz`` or solved and cached there."""
    path = Path(cache_dir) / f"{task.name}-{task.content_hash()}.npz"
    if path.is_file():
        with np.load(path) as saved:
            log.info("reference for %s from cache %s", task.name, path)
            certified = float(saved["certified_error"]) if "certified_error" in saved.files else math.nan
            return ReferenceSet(torch.from_numpy(saved["initial"]), torch.from_numpy(saved["truth"]), saved["times"],
                                saved["sample_ids"], float(saved["wall_time_s"]), path,
                                cell_averaged=getattr(task.task_problem, "cell_averaged", False),
                                certified_error=None if math.isnan(certified) else certified,
                                resolutions={r: torch.from_numpy(saved[f"truth_{r}"]) for r in task.other_resolutions})
    fine, coarse = task.reference_problem, task.task_problem
    indices = list(range(task.samples))
    if task.mode == "steady":
        return _build_steady_reference(task, path, progress)
    initial = fine.sample_initial_conditions(task.seed, indices).double()
    solver = build_solver(fine, **task.solver_args)
    start = time.perf_counter()
    traj = solver.solve(fine, initial, np.column_stack([np.full(task.samples, task.seed), indices]),
                        progress=progress)
    wall = time.perf_counter() - start
    checked = list(range(min(SPACE_CHECKED, task.samples)))
    space = verify_space(fine, solver, task.seed, checked, stored=traj.select(np.array(checked)))
    traj.provenance["error_estimate"] = space.certificate(traj.provenance.get("error_estimate"))
    field = traj.fields[fine.field_name].double()
    # point values: the task's nodes (every `reference_refinement`-th); cell averages: block averages
    truth = fine.restrict(field, coarse.spatial_shape[0]).contiguous()
    if not torch.isfinite(truth).all():
        raise ValueError(f"task {task.name}: the reference solve produced non-finite values")
    assert tuple(truth.shape[2:]) == tuple(coarse.spatial_shape)
    resolutions = {r: fine.restrict(field, r).contiguous() for r in task.other_resolutions}  # exact: r divides the fine grid
    return _cached(ReferenceSet(initial, truth, np.asarray(fine.output_times()), np.asarray(traj.sample_ids), wall, path,
                                cell_averaged=getattr(fine, "cell_averaged", False),
                                certified_error=certified_error(traj.provenance), resolutions=resolutions))


def _build_steady_reference(task: TaskSpec, path: Path, progress: Callable[[int], None] | None) -> ReferenceSet:
    """A steady task's inputs ``(N, *space)`` and solutions ``(N, 1, *space)`` on its grid, cached."""
    problem = task.task_problem
    indices = list(range(task.samples))
    inputs = torch.as_tensor(problem.sample_initial_conditions(task.seed, indices)).double()
    solver = build_solver(problem, **task.solver_args)
    start = time.perf_counter()
    traj = solver.solve(problem, inputs, np.column_stack([np.full(task.samples, task.seed), indices]))
    wall = time.perf_counter() - start
    checked = list(range(min(SPACE_CHECKED, task.samples)))
    space = verify_space(problem, solver, task.seed, checked, stored=traj.select(np.array(checked)))
    truth = traj.fields[problem.field_name].double().reshape(task.samples, 1, *problem.spatial_shape).contiguous()
    if not torch.isfinite(truth).all():
        raise ValueError(f"task {task.name}: the reference solve produced non-finite values")
    if progress is not None:
        progress(task.samples)
    return _cached(ReferenceSet(inputs, truth, np.zeros(1), np.asarray(traj.sample_ids), wall, path,
                                certified_error=certified_error({"error_estimate": space.certificate()})))


@dataclass
class SolverRung:
    """One rung of the classical solver's ladder: its grid and step, cost and error.

    ``metrics`` is :func:`task_metrics` of the rung's scored frames on the grid its errors are measured on
    (the task grid, or a grid of the resolution protocol: :func:`run_ladder`; ``error`` is its
    ``nrmse``); ``curves`` (rollout tasks only) its :func:`step_curves`, ``{"mse", "nrmse", "corr", "vrmse"}`` each
    ``(T_scored,)``.
    """

    label: str
    resolution: int
    max_dt: float | None
    cost_s: float  # median wall seconds per sample (warm, whole batch, `repeats` timings)
    error: float  # nRMSE against the reference on the measuring grid, scored frames only
    timings_s: list[float] = field(default_factory=list)
    metrics: dict[str, float] = field(default_factory=dict)
    curves: dict[str, np.ndarray] = field(default_factory=dict)


def rung_label(solver: object, resolution: int, max_dt: float | None = None) -> str:
    """``"spectral n=64"``, ``"fv n=50 dt≤0.01"``: a solver run's label from its class name, grid and step."""
    return f"{solver.__class__.__name__.removesuffix('Solver').lower()} n={resolution}" + (
        f" dt≤{max_dt:g}" if max_dt is not None else "")


#: What :func:`run_ladder` keeps of one rung's solve, ``(resolution, max_dt) -> (label, timings [s],
#: scored frames (N, T_scored, *[resolution] * dim))``, or ``None`` for a rung that blew up.
RungSolves = dict[tuple[int, float | None], tuple[str, list[float], torch.Tensor] | None]


def run_ladder(task: TaskSpec, reference: ReferenceSet, progress: Callable[[str], None] | None = None,
               points: int | None = None, solves: RungSolves | None = None) -> list[SolverRung]:
    """Solve the held-out samples at every rung and measure cost and error on a grid of ``points``.

    ``points`` None (or the task's grid): the task's rungs, their errors measured on the task grid;
    another grid of the task's ``eval_resolutions``: the rungs scaled to it
    (:meth:`~pdebench.evaluation.suite.TaskSpec.ladder_at`, the same ``ladder_max_dt``), their errors
    measured against the truth there (:meth:`ReferenceSet.truth_on`). ``solves`` (a dict shared by the
    calls of one task) keeps every rung's solve and timings: a rung of the same resolution and step at
    another measuring grid is the same solve, so it is measured again, not solved again.

    Each rung solves the whole batch once untimed (warm-up: plans, coefficients, caches), then
    ``task.repeats`` timed solves; the cost is the median over samples. A rung whose warm-up solve
    blows up (an under-resolved grid) is left off the ladder with a logged warning. Rungs solve the held-out
    samples under their ids (a per-sample forcing or parameter follows the id). Point values start
    from the Fourier truncation of the fine initial condition and are Fourier-interpolated to the
    measuring grid; cell averages (``cell_averaged``) start from block averages and are prolonged piecewise
    constant (:func:`prolong_piecewise_constant`).
    """
    problem = task.task_problem
    dims = problem.dim
    points = problem.spatial_shape[0] if points is None else points
    full = reference.truth_on(points)
    frames = scored_frames(task, full.shape[1])
    truth = full[:, frames]
    if task.mode == "steady":
        return _steady_ladder(task, reference, truth, progress)
    cell_averaged = getattr(problem, "cell_averaged", False)
    rungs = []
    solves = {} if solves is None else solves
    for resolution in task.ladder_at(points):
        for max_dt in task.ladder_max_dt:
            if (resolution, max_dt) not in solves:
                solves[resolution, max_dt] = _solve_rung(task, reference, resolution, max_dt, frames)
            if solves[resolution, max_dt] is None:
                continue
            label, timings, solved = solves[resolution, max_dt]
            on_grid = (prolong_piecewise_constant(solved, points, dims) if cell_averaged
                       else fourier_resample(solved, points, dims))
            error = score(on_grid, truth)
            rungs.append(SolverRung(label, resolution, max_dt, statistics.median(timings) / task.samples, error, list(timings),
                                    task_metrics(on_grid, truth, task.mode),
                                    step_curves(on_grid, truth) if task.mode == "rollout" else {}))
            if progress:
                progress(label)
    if not rungs:
        raise ValueError(f"task {task.name}: every solver rung blew up (errors measured at {points} points); choose finer "
                         f"ladder_resolutions or smaller ladder_max_dt")
    return rungs


def _solve_rung(task: TaskSpec, reference: ReferenceSet, resolution: int, max_dt: float | None,
                frames: slice) -> tuple[str, list[float], torch.Tensor] | None:
    """One rung of :func:`run_ladder` solved: ``(label, timings, scored frames)``, or ``None`` (logged)
    when its warm-up solve blows up."""
    rung_problem = task.task_problem.with_resolution(resolution)
    if max_dt is not None:
        rung_problem = rung_problem.replace(max_dt=max_dt)
    solver = build_solver(rung_problem, certified=False, **task.solver_args)
    u0 = task.reference_problem.restrict(reference.initial, resolution, project=True).contiguous()
    ids = np.asarray(reference.sample_ids)
    label = rung_label(solver, resolution, max_dt)
    try:
        solver.solve(rung_problem, u0, ids)  # warm-up (and the check that no sample blows up)
    except BlowUpError as error:
        log.warning("task %s: solver rung %s blew up (%s); it is left off the ladder", task.name, label, error)
        return None
    timings = []
    for _ in range(task.repeats):
        start = time.perf_counter()
        traj = solver.solve(rung_problem, u0, ids)
        timings.append(time.perf_counter() - start)
    return label, timings, traj.fields[rung_problem.field_name].double()[:, frames]


def _steady_ladder(task: TaskSpec, reference: ReferenceSet, truth: torch.Tensor,
                   progress: Callable[[str], None] | None) -> list[SolverRung]:
    """:func:`run_ladder` for a steady task: nested coarser node grids, solutions interpolated back."""
    problem = task.task_problem
    dims, points = problem.dim, problem.spatial_shape[0]
    rungs = []
    for resolution in task.ladder_resolutions:
        rung_problem = problem.replace(resolution=resolution)
        solver = build_solver(rung_problem, **task.solver_args)
        inputs = node_subsample(reference.initial, resolution, dims).contiguous()
        solver.solve(rung_problem, inputs[:1])  # warm-up (basis, factorisation caches)
        timings = []
        for _ in range(task.repeats):
            start = time.perf_counter()
            traj = solver.solve(rung_problem, inputs)
            timings.append(time.perf_counter() - start)
        solved = traj.fields[rung_problem.field_name].double().reshape(task.samples, 1, resolution, resolution)
        on_task_grid = node_interpolate(solved, points)
        error = score(on_task_grid, truth)
        label = rung_label(solver, resolution, None)
        rungs.append(SolverRung(label, resolution, None, statistics.median(timings) / task.samples, error, timings,
                                task_metrics(on_task_grid, truth, task.mode)))
        if progress:
            progress(label)
    return rungs
