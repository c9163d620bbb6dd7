"""Dataset generation: sample inputs, solve in batches, stream each batch to an HDF5 file."""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from pdebench.data.hdf5 import TrajectoryWriter
from pdebench.data.trajectories import Trajectories
from pdebench.problems.base import Problem
from pdebench.solvers import SOLVERS

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

    @property
    def samples_per_second(self) -> float:
        """Samples solved and written per wall-clock second."""
        return self.num_samples / self.wall_time_s if self.wall_time_s > 0 else float("inf")


def build_solver(problem: Problem, **solver_kwargs: Any):
    """The problem's default solver (``problem.solver``) built with validated ``solver_kwargs``."""
    return SOLVERS.build(problem.solver, **solver_kwargs)


def solve_samples(problem: Problem, solver, seed: int, indices: np.ndarray, **kwargs: Any) -> Trajectories:
    """Draw and solve samples ``(seed, i)`` for ``i in indices``; shapes as :meth:`SpectralSolver.solve`."""
    indices = np.asarray(indices, dtype=np.int64)
    u0 = problem.sample_initial_conditions(seed, indices.tolist())
    ids = np.column_stack([np.full(len(indices), seed, dtype=np.int64), indices])
    return solver.solve(problem, u0, ids, **kwargs)


def check_generation_args(num_samples: int, seed: int, batch_size: int) -> None:
    """Raise ``ValueError`` naming the first of ``num_samples``, ``seed``, ``batch_size`` out of range."""
    for name, value, least in (("num_samples", num_samples, 1), ("seed", seed, 0), ("batch_size", batch_size, 1)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < least:
            raise ValueError(f"{name} must be an integer >= {least}, got {value!r}")


def generate_dataset(
    problem: Problem,
    output: str | os.PathLike[str],
    *,
    num_samples: int,
    seed: int = 0,
    batch_size: int = 32,
    overwrite: bool = False,
    solver_kwargs: dict[str, Any] | None = None,
    progress: Callable[[int], None] | None = None,
) -> GenerationSummary:
    """Generate ``num_samples`` trajectories of ``problem`` into the HDF5 file ``output``.

    Samples ``(seed, 0) … (seed, num_samples - 1)`` are solved ``batch_size`` at a time and each batch is
    appended to the file as soon as it is solved, so memory stays bounded by one batch. The file
    appears under ``output`` only once complete (see :class:`TrajectoryWriter`); every argument and the
    destination are checked before the first solve.

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
    """
    check_generation_args(num_samples, seed, batch_size)
    solver = build_solver(problem, **(solver_kwargs or {}))
    start = time.perf_counter()
    dt = float("nan")
    with TrajectoryWriter(output, overwrite=overwrite, provenance={"seed": seed, "problem": problem.name}) as writer:
        for first in range(0, num_samples, batch_size):
            indices = np.arange(first, min(first + batch_size, num_samples))
            batch = solve_samples(problem, solver, seed, indices)
            dt = float(batch.provenance.get("dt", dt))
            writer.append(batch)
            if progress is not None:
                progress(len(indices))
            shapes = {name: (num_samples, *value.shape[1:]) for name, value in batch.fields.items()}
    wall = time.perf_counter() - start
    path = Path(output)
    log.info("wrote %d samples of %s to %s in %.1f s", num_samples, problem.name, path, wall)
    return GenerationSummary(path, num_samples, shapes, wall, path.stat().st_size, problem.solver, dt)
