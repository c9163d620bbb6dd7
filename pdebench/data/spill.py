"""Spill a worker stream to disk: keep the samples that data-generation workers solve.

:func:`spill_stream` reads the :class:`~pdebench.data.workers.Batch` messages of a worker pool (or any
iterable of them) and appends each one, in arrival order, to an HDF5 file through
:class:`~pdebench.io.trajectory_file.TrajectoryWriter`: the layout is the one ``pdebench generate`` writes
(``tensor``/field datasets, coordinates, ``sample_ids``, problem parameters, ``provenance.*``), with
``sample_ids`` recording the ``(seed, index)`` of every row, so any row can be regenerated alone
with :func:`~pdebench.data.generate.solve_samples`. Particle problems (solver ``"sph"``) are written in
the layout of :mod:`pdebench.io.particle_file` instead, as ``pdebench generate`` writes them.

What ends up under the destination name
---------------------------------------
* The stream ends (every index solved, dropped or lost): the complete file, moved into place
  atomically (temporary file, fsync, :func:`os.replace`); ``provenance.complete`` is true.
* Ctrl-C (:class:`KeyboardInterrupt`), SIGTERM where it raises :class:`~pdebench.signals.Terminated`
  (the ``pdebench`` console script), or a worker-pool failure (a crash loop's ``RuntimeError``, or any
  other error raised while *receiving* batches): the workers are stopped, then **the samples received
  so far are kept**: the file is finished and moved into place atomically exactly as a complete one,
  with ``provenance.complete`` false and ``provenance.interrupted`` naming the cause
  (``"KeyboardInterrupt"``, ``"SIGTERM"`` or the error). If nothing had
  been received, nothing is written and an existing destination is untouched (the same holds when a
  stream ends with every sample dropped or lost). The function returns
  normally in both cases (``summary.interrupted`` says what happened); it does not re-raise.
* Any other error (writing fails, a batch disagrees with the file, ...): the temporary file is
  deleted, the destination is untouched, and the error propagates.

Provenance (root attributes ``provenance.<key>``)
-------------------------------------------------
As ``pdebench generate``: the solver's attributes (``solver``, ``scheme``, ``dt``, ``dtype``,
``pdebench_version``, ...; the step is the one the solver plans for the first batch written, since
worker batches carry no provenance), ``seed``, ``problem`` and ``problem_args`` (every argument of the
problem, :meth:`~pdebench.problems.base.Catalogued.arguments`); and for a stream: ``source``
(``"stream"``), ``complete``, ``interrupted`` (``""`` or the cause), ``samples_requested`` (-1:
unbounded), ``dropped``, ``lost``, ``lost_ranges`` (``[[seed, start, stop], ...]`` lost with dead
workers), ``returned_unused`` and ``returned_ranges`` (drawn but neither written, dropped nor lost: in
flight when the stream stopped, or past ``num_samples``; never solved again by this stream),
``dropped_ranges`` (blown-up ids), ``drawn_ranges`` (a pool's drawn ids: exactly the rows'
``sample_ids`` + dropped + lost + returned, disjoint), ``duplicates_skipped``, ``worker_restarts``,
``stream_cursor`` (the pool's next block), ``stream_wall_time_s``, ``solve_time_s`` (the workers'
solver seconds summed over the batches received: what the rows cost to generate), plus the caller's (the CLI adds
``backend`` and ``num_workers``).

Every path ends with the pool stopped (all worker processes or actors ended). Ctrl-C and SIGTERM are
held back while a batch is being written (so a row is never half-written) and while the file is
being finished; a second one during finishing abandons the file (destination untouched).
"""

from __future__ import annotations

import logging
import math
import os
import signal
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from pdebench.core.trajectories import Trajectories
from pdebench.data.generate import build_solver, check_generation_args, particle_box
from pdebench.data.workers import as_ranges
from pdebench.io.base import check_destination
from pdebench.io.particle_file import ParticleDataWriter
from pdebench.io.trajectory_file import TrajectoryWriter
from pdebench.problems import PROBLEMS
from pdebench.problems.base import Problem
from pdebench.signals import interruption_cause

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SpillSummary:
    """What :func:`spill_stream` did.

    Attributes
    ----------
    path
        The file written, or ``None`` when nothing was received (nothing written).
    requested
        Sample indices the stream was to solve (``None``: unbounded stream).
    written
        Rows in the file.
    dropped
        Samples whose solve blew up (dropped by the workers' solver, not written).
    lost
        Samples lost with a worker that died (``lost_ids`` lists them when the pool reports them).
    duplicates
        Rows skipped because their ``(seed, index)`` was already written.
    wall_time_s
        Seconds from the start of the pool to the file being in place.
    interrupted
        ``None`` when the stream ended on its own; otherwise the cause (``"KeyboardInterrupt"``,
        ``"SIGTERM"``, or ``"RuntimeError: workers died ..."``).
    restarts
        Worker replacements during the run.
    bytes_written
        Size of the file (0 when nothing was written).
    lost_ids, returned_ids, dropped_ids
        Ids lost with dead workers; drawn but returned unused (in flight at the stop, or past
        ``num_samples``); blown up.
    drawn_ranges
        A pool's drawn ids as ``[[seed, start, stop], ...]`` (empty for a plain iterable): the rows
        written, ``dropped_ids``, ``lost_ids`` and ``returned_ids`` partition them.
    """

    path: Path | None
    requested: int | None
    written: int
    dropped: int
    lost: int
    wall_time_s: float
    interrupted: str | None = None
    duplicates: int = 0
    restarts: int = 0
    bytes_written: int = 0
    lost_ids: list[tuple[int, int]] = field(default_factory=list)
    returned_ids: list[tuple[int, int]] = field(default_factory=list)
    dropped_ids: list[tuple[int, int]] = field(default_factory=list)
    drawn_ranges: list[list[int]] = field(default_factory=list)

    @property
    def complete(self) -> bool:
        """Whether the stream ended on its own (not interrupted)."""
        return self.interrupted is None

    @property
    def samples_per_second(self) -> float:
        """Rows written per wall-clock second."""
        return self.written / self.wall_time_s if self.wall_time_s > 0 else float("inf")


class _HeldSigint:
    """Hold SIGINT (Ctrl-C) and SIGTERM while a block runs (main thread only; elsewhere a no-op).

    ``release="raise"``: a signal that arrived is delivered to its previous handler when the block
    ends without an error (``KeyboardInterrupt``; for SIGTERM the handler the console script installs
    raises :class:`~pdebench.signals.Terminated`, and a default SIGTERM ends the process).
    ``release="swallow"``: the first one is ignored, a second one interrupts at once.
    """

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self, release: str = "raise") -> None:
        self.release = release
        self.pending = 0
        self.received: list[int] = []
        self._previous: dict[int, Any] = {}

    def _handler(self, signum: int, frame: Any) -> None:
        self.pending += 1
        self.received.append(signum)
        if self.release == "swallow" and self.pending >= 2:
            previous = self._restore()
            self._deliver(signum, previous)
            raise KeyboardInterrupt  # the previous handler did not interrupt (ignored): interrupt anyway

    def _restore(self) -> dict[int, Any]:
        previous, self._previous = self._previous, {}
        for signum, handler in previous.items():
            signal.signal(signum, handler)
        return previous

    @staticmethod
    def _deliver(signum: int, previous: dict[int, Any]) -> None:
        handler = previous.get(signum)
        if callable(handler):
            handler(signum, None)  # the default SIGINT handler raises KeyboardInterrupt
        elif signum == signal.SIGINT and handler != signal.SIG_IGN:
            raise KeyboardInterrupt
        elif handler == signal.SIG_DFL:
            signal.raise_signal(signum)  # restored default: ends the process as it would have

    def __enter__(self) -> _HeldSigint:
        if threading.current_thread() is threading.main_thread():
            for signum in self.SIGNALS:
                try:
                    current = signal.getsignal(signum)
                    if current != signal.SIG_IGN:
                        self._previous[signum] = signal.signal(signum, self._handler)
                except ValueError:  # not the main interpreter
                    break
        return self

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        previous = self._restore()
        if exc_type is None and self.received and self.release == "raise":
            self._deliver(self.received[0], previous)


def _planned_provenance(problem: Problem, solver: Any, sample_ids: np.ndarray, threads: int | None) -> dict[str, Any]:
    """The solver's provenance for these samples without solving them again.

    Batches from workers carry no provenance, so the parent rebuilds what ``pdebench generate``
    stores: the solver's own attributes, with the internal step it plans from these samples' inputs
    (the step a solve of them starts with; the spectral solver only shortens it if the flow speeds
    up). Solvers without this interface get ``{"solver": name}``.
    """
    base: dict[str, Any] = {"solver": problem.solver, "problem": problem.name, "problem_args": problem.arguments()}
    if problem.solver == "sph":
        return {**solver.provenance(), **base}
    if not all(hasattr(solver, name) for name in ("provenance", "initial_stability_limits", "substeps")):
        return base
    try:
        seeds = np.unique(sample_ids[:, 0])
        first_ids = sample_ids[sample_ids[:, 0] == seeds[0]]
        u0 = problem.sample_initial_conditions(int(seeds[0]), first_ids[:, 1].tolist())
        limits = solver.initial_stability_limits(problem, u0, first_ids)  # per-sample parameters need the ids
        substeps = int(solver.substeps(problem.dt_out, limits, getattr(problem, "max_dt", None)).max())
        provenance = dict(solver.provenance(problem, problem.dt_out / substeps, substeps, math.nan))
    except Exception:  # noqa: BLE001 - provenance is best effort; the data are what matter
        log.debug("could not plan the solver step for provenance", exc_info=True)
        return base
    provenance.pop("wall_time_s", None)  # the workers' solve time is not reported
    provenance["problem_args"] = base["problem_args"]  # the file names everything its problem needs
    if threads is not None:
        provenance["torch_threads"] = threads
    return provenance


def _as_trajectories(batch: Any, problem: Problem, keep: np.ndarray, provenance: dict[str, Any]) -> Trajectories:
    fields = {name: torch.from_numpy(np.ascontiguousarray(np.asarray(value)[keep])) for name, value in batch.fields.items()}
    return Trajectories(
        fields=fields,
        coords=problem.coordinates(),
        params=problem.params(),
        sample_ids=np.asarray(batch.sample_ids, dtype=np.int64).reshape(-1, 2)[keep],
        provenance=dict(provenance),
    )


class _StreamWriter:
    """The file writer of a stream: :class:`~pdebench.io.trajectory_file.TrajectoryWriter` for grid problems,
    :class:`~pdebench.io.particle_file.ParticleDataWriter` for particle problems (solver ``"sph"``;
    box and radius from the scene of sample ``(seed, 0)``, as ``pdebench generate``)."""

    def __init__(self, problem: Problem, path: Path, overwrite: bool, provenance: dict[str, Any], seed: int) -> None:
        self.problem = problem
        self.particles = getattr(problem, "solver", None) == "sph"
        if self.particles:
            box = particle_box(problem.scene(seed, 0).physics)
            self._writer: Any = ParticleDataWriter(path, **box, overwrite=overwrite, provenance=provenance)
        else:
            self._writer = TrajectoryWriter(path, overwrite=overwrite, provenance=provenance)
        self._provenance_added = False

    def append(self, batch: Any, keep: np.ndarray, solver_provenance: dict[str, Any]) -> None:
        if self.particles:
            if not self._provenance_added:
                self._writer.update_provenance(solver_provenance)
                self._provenance_added = True
            self._writer.append([t for t, k in zip(batch.particles, keep) if k])
        else:
            self._writer.append(_as_trajectories(batch, self.problem, keep,
                                                 {**solver_provenance, **getattr(batch, "certificate", {})}))

    def close(self, final: dict[str, Any]) -> None:
        """Add the end-of-stream provenance (counts, interruption) and finish the file."""
        if self.particles:
            self._writer.update_provenance(final)
        else:
            # TrajectoryWriter takes file-wide provenance in its constructor only; these are known
            # at the end, so they join it just before close.
            self._writer._extra_provenance.update(final)
        self._writer.close()

    def abort(self) -> None:
        self._writer.abort()


def _check_config(problem: Problem, config: Any) -> None:
    expected = PROBLEMS.build(config.problem, **config.problem_args)
    if expected != problem:
        raise ValueError(f"the pool solves {expected!r}, but the file is for {problem!r}")


def spill_stream(
    source: Any,
    problem: Problem,
    path: str | os.PathLike[str],
    *,
    num_samples: int | None = None,
    overwrite: bool = False,
    solver_kwargs: dict[str, Any] | None = None,
    provenance: dict[str, Any] | None = None,
    progress: Callable[[int], None] | None = None,
    start: bool = True,
) -> SpillSummary:
    """Write the batches of a worker stream to the HDF5 file ``path``, in arrival order.

    See the module docstring for what is left under ``path`` on each way this can end.

    Parameters
    ----------
    source
        A worker pool (``make_worker_pool(...)``, :class:`~pdebench.data.workers.LocalWorkerPool`,
        :class:`~pdebench.data.workers.RayWorkerPool`): started here once the destination is open
        (unless ``start=False``: already started) and **always stopped** before this returns or
        raises. Or any iterable of :class:`~pdebench.data.workers.Batch` (closed on exit if it has a
        ``close``); then stopping its producer is the caller's job.
    problem
        The problem the batches solve (coordinates and parameters of the file). For a pool it must
        equal the pool's configured problem.
    path
        Destination ``.h5`` file; checked before anything starts.
    num_samples
        Stop once this many rows are written (rows past it in the last batch are not written).
        Default: the pool's ``config.max_samples`` (the whole bounded stream); ``None`` for an
        iterable: until it ends.
    overwrite
        Replace an existing ``path`` (also with a partial file if interrupted after rows arrived).
    solver_kwargs
        The workers' solver arguments, for the provenance (default: the pool's ``config.solver_args``).
    provenance
        Extra provenance attributes (e.g. ``{"backend": "local"}``).
    progress
        Called with the samples accounted for by each batch (rows written + dropped).
    start
        Start the pool here (``False``: the caller started it).

    Returns
    -------
    SpillSummary
        Counts, wall time, and ``interrupted`` (``None`` when the stream ended on its own).

    Raises
    ------
    ValueError, FileExistsError, FileNotFoundError, IsADirectoryError, PermissionError
        Bad arguments or destination, before any worker starts and before any file is created.
    """
    if getattr(problem, "solver", None) == "fem-mesh":
        raise ValueError(f"spilling a stream of the mesh problem {problem.name!r} to a file is not supported yet; "
                         "write it with `pdebench generate` (the mesh layout)")
    is_pool = hasattr(source, "batches") and hasattr(source, "stop")
    config = getattr(source, "config", None) if is_pool else None
    if num_samples is None and config is not None:
        num_samples = config.max_samples
    if num_samples is not None:
        check_generation_args(num_samples, 0, 1)
    if config is not None:
        _check_config(problem, config)
        if solver_kwargs is None:
            solver_kwargs = dict(config.solver_args)
    path = Path(path)
    check_destination(path, overwrite)
    solver = build_solver(problem, **(solver_kwargs or {}))  # validates the arguments; cheap
    threads = getattr(config, "threads", None)
    extra = {"problem": problem.name, "source": "stream", **(provenance or {})}

    stream_ctx: dict[str, Any] = {"iterator": None}
    written = dropped = duplicates = 0
    seen: set[tuple[int, int]] = set()
    written_ids: set[tuple[int, int]] = set()
    capped: list[tuple[int, int]] = []  # received past num_samples: returned unused
    seeds: set[int] = {config.seed} if config is not None else set()
    solver_provenance: dict[str, Any] | None = None
    interrupted: str | None = None
    started = time.perf_counter()
    solve_seconds = 0.0  # the workers' solver seconds of every batch received
    writer = _StreamWriter(problem, path, overwrite, extra, config.seed if config is not None else 0)
    try:
        try:
            if is_pool and start:
                source.start()
            iterator: Iterator[Any] = iter(source.batches() if is_pool else source)
            stream_ctx["iterator"] = iterator
            while num_samples is None or written < num_samples:
                try:
                    batch = next(iterator)
                except StopIteration:
                    break
                except KeyboardInterrupt:
                    raise
                except Exception as error:  # noqa: BLE001 - the pool failed: keep what was received
                    interrupted = f"{type(error).__name__}: {error}"
                    log.warning("the worker stream failed (%s); keeping the %d samples received", interrupted, written)
                    break
                with _HeldSigint("raise"):
                    ids = np.asarray(batch.sample_ids, dtype=np.int64).reshape(-1, 2)
                    keep = np.ones(len(ids), dtype=bool)
                    for row, (s, i) in enumerate(ids.tolist()):
                        if (s, i) in seen:
                            keep[row] = False
                        seen.add((s, i))
                    duplicates += int((~keep).sum())
                    seeds.update(int(s) for s in np.unique(ids[:, 0]))
                    if num_samples is not None:
                        room = num_samples - written
                        over = np.flatnonzero(keep)[room:]
                        capped += [tuple(map(int, ids[row])) for row in over]
                        keep[over] = False
                    written_ids.update(map(tuple, ids[keep].tolist()))
                    kept = int(keep.sum())
                    if kept:
                        if solver_provenance is None:
                            solver_provenance = _planned_provenance(problem, solver, ids[keep], threads)
                        writer.append(batch, keep, solver_provenance)
                    written += kept
                    solve_seconds += float(getattr(batch, "solve_time_s", 0.0))
                    dropped += int(getattr(batch, "dropped", 0))
                    if progress is not None:
                        progress(kept + int(getattr(batch, "dropped", 0)))
        except KeyboardInterrupt as exc:  # Ctrl-C, or SIGTERM as Terminated
            interrupted = interruption_cause(exc)
            log.warning("interrupted (%s); keeping the %d samples received", interrupted, written)
        with _HeldSigint("swallow"):
            _end_stream(source, is_pool, stream_ctx["iterator"])
            lost_ids = [tuple(map(int, i)) for i in getattr(source, "lost_ids", [])] if is_pool else []
            lost = len(lost_ids)
            if is_pool and not hasattr(source, "lost_ids") and interrupted is None and num_samples is not None:
                lost = max(0, num_samples - written - dropped)  # a pool that does not report lost ids by id
            restarts = int(getattr(source, "restarts", 0)) if is_pool else 0
            dropped_ids, returned_ids, drawn = _unused_ids(source if is_pool else None, written_ids, capped)
            final = {
                "seed": next(iter(seeds)) if len(seeds) == 1 else sorted(seeds),
                "complete": interrupted is None,
                "interrupted": interrupted or "",
                "samples_requested": -1 if num_samples is None else num_samples,
                "dropped": dropped,
                "lost": lost,
                "lost_ranges": as_ranges(lost_ids),
                "returned_unused": len(returned_ids),
                "returned_ranges": as_ranges(returned_ids),
                "dropped_ranges": as_ranges(dropped_ids),
                "drawn_ranges": drawn,
                "duplicates_skipped": duplicates,
                "worker_restarts": restarts,
                "stream_wall_time_s": time.perf_counter() - started,
                "solve_time_s": solve_seconds,
            }
            if is_pool and hasattr(source, "cursor"):
                final["stream_cursor"] = int(source.cursor)
            if written == 0:
                writer.abort()
                log.warning("no samples were received; %s was not written", path)
            else:
                writer.close(final)
    except BaseException:
        writer.abort()
        raise
    finally:
        _end_stream(source, is_pool, stream_ctx["iterator"])
    wall = time.perf_counter() - started
    out = path if written else None
    return SpillSummary(
        path=out, requested=num_samples, written=written, dropped=dropped, lost=lost, wall_time_s=wall,
        interrupted=interrupted, duplicates=duplicates, restarts=restarts,
        bytes_written=path.stat().st_size if out is not None else 0, lost_ids=lost_ids,
        returned_ids=returned_ids, dropped_ids=dropped_ids, drawn_ranges=drawn,
    )


def _unused_ids(pool: Any, written: set[tuple[int, int]], capped: list[tuple[int, int]]
                ) -> tuple[list[tuple[int, int]], list[tuple[int, int]], list[list[int]]]:
    """``(dropped ids, returned-unused ids, drawn ranges)`` of a stopped stream.

    Returned unused: what the pool returned at its stop (in flight), plus what it delivered that was
    not written (past ``num_samples``, or a batch cut off by the interruption on its way here).
    Without a pool's accounting (a plain iterable): only the ids past ``num_samples``.
    """
    if pool is None or not hasattr(pool, "id_ranges"):
        return [], sorted(set(capped)), []
    seed = pool.config.seed
    dropped = sorted({tuple(map(int, i)) for i in pool.dropped_ids})
    delivered = {(seed, i) for start, stop in pool.received_blocks for i in range(start, stop)} - set(dropped)
    returned = {tuple(map(int, i)) for i in pool.returned_ids} | (delivered - written) | set(capped)
    return dropped, sorted(returned), pool.id_ranges()["drawn"]


def _end_stream(source: Any, is_pool: bool, iterator: Iterator[Any] | None) -> None:
    """Stop the pool (every worker ends), then close the batch iterator (its pipes). Idempotent.

    Stopping first means no worker is still sending on a pipe this closes.
    """
    try:
        if is_pool:
            source.stop()
    finally:
        target = iterator if iterator is not None or is_pool else source
        close = getattr(target, "close", None)
        if close is not None:
            close()
