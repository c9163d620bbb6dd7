"""Data-generation workers: solver processes that stream solved batches to the trainer.

Two backends with one interface (``start``, ``stop``, ``batches``, ``restarts``, ``dropped``,
``lost_ids``, ``cursor``; :func:`make_worker_pool` picks one):

``"local"`` (:class:`LocalWorkerPool`, the embedded default)
    ``num_workers`` processes (``spawn`` start method, one torch thread each), one pipe each.
``"ray"`` (:class:`RayWorkerPool`)
    Ray actors on ``ray.init(address=...)`` (a local Ray when no address is given), for clusters.

Sample indices of one stream ``seed`` are cut into blocks of ``batch_size``; block ``b`` is
``[b * batch_size, (b + 1) * batch_size)``. A pool hands out its blocks in order from a *cursor*
(the next block number), so every sample carries its ``(seed, index)`` id and no index is solved
twice. With ``num_shards > 1`` (one pool per DDP rank) pool ``shard`` owns the blocks
``b = k * num_shards + shard``: the ranks' streams are disjoint. A worker that dies (killed, or an
exception) is replaced and the pool continues from blocks nobody has drawn; the block it was solving
is lost, never repeated, and reported by id in ``lost_ids``. Samples whose solve blew up are dropped
by the solver and counted. A resumed run passes the saved ``cursor`` and continues after every block
the stopped run drew. Stopping a pool (explicitly, on error, at interpreter exit, or through the
context manager) ends every worker: no orphans.

Accounting: every id a pool draws (:meth:`~_BlockDispenser.id_ranges` ``"drawn"``: the blocks from the
starting cursor up to :attr:`cursor`) ends in exactly one of *received* (delivered in a batch),
*dropped* (its solve blew up), *lost* (its worker died holding it) or *returned unused* (its block was
in flight when the pool was stopped: ``returned_ids``; never solved again either). A stop is never
mistaken for a failure: blocks in flight at :meth:`stop` are returned unused, not lost, and no
replacement is started. Worker processes ignore the terminal's Ctrl-C (the parent stops them) and
exit quietly when the parent closes their pipe.
"""

from __future__ import annotations

from abc import ABC, abstractmethod

import atexit
import logging
import multiprocessing as mp
import signal
import threading
from multiprocessing import resource_tracker
from multiprocessing.connection import wait
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from pdebench.data.generate import build_solver, solve_samples
from pdebench.problems import PROBLEMS
from pdebench.solvers import SOLVERS

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class WorkerConfig:
    """What the workers solve.

    Parameters
    ----------
    problem, problem_args
        Registered problem name and its arguments.
    solver_args
        Arguments of the problem's solver.
    seed
        Sample stream; workers solve ``(seed, i)`` for increasing ``i``.
    batch_size
        Samples solved per solver call (one message to the trainer).
    max_samples
        Stop after this many sample indices (``None``: until stopped).
    threads
        Torch threads per worker process.
    shard, num_shards
        This pool draws only blocks ``b`` with ``b % num_shards == shard`` (one pool per DDP rank).
    """

    problem: str
    problem_args: dict[str, Any] = field(default_factory=dict)
    solver_args: dict[str, Any] = field(default_factory=dict)
    seed: int = 0
    batch_size: int = 8
    max_samples: int | None = None
    threads: int = 1
    shard: int = 0
    num_shards: int = 1

    def __post_init__(self) -> None:
        problem = PROBLEMS.build(self.problem, **self.problem_args)  # validates early, in the parent
        SOLVERS.validate(problem.solver, self.solver_args)
        build_solver(problem, **self.solver_args)  # and the solver's own check of the problem
        if self.batch_size < 1 or self.threads < 1 or self.seed < 0:
            raise ValueError(f"need batch_size >= 1, threads >= 1, seed >= 0; got {self.batch_size}, {self.threads}, {self.seed}")
        if self.max_samples is not None and self.max_samples < 1:
            raise ValueError(f"max_samples must be >= 1 or None, got {self.max_samples}")
        if not 0 <= self.shard < self.num_shards:
            raise ValueError(f"need 0 <= shard < num_shards; got shard={self.shard}, num_shards={self.num_shards}")

    def block(self, cursor: int) -> tuple[int, int] | None:
        """Sample index range ``[start, stop)`` of this shard's ``cursor``-th block (``None``: past the end)."""
        start = (cursor * self.num_shards + self.shard) * self.batch_size
        stop = start + self.batch_size
        if self.max_samples is not None:
            stop = min(stop, self.max_samples)
        return (start, stop) if start < stop else None

    def solve(self, problem, solver, block: tuple[int, int], worker: int) -> "Batch":
        """Solve one block (blown-up samples dropped and counted) into a :class:`Batch`, with the
        solve's wall seconds (the data's generation cost)."""
        start = time.perf_counter()
        traj = solve_samples(problem, solver, self.seed, np.arange(*block), on_blowup="drop")
        seconds = time.perf_counter() - start
        if getattr(problem, "solver", None) == "sph":  # ParticleSamples: ragged trajectories, no grid fields
            return Batch(worker, {}, traj.sample_ids, int(traj.provenance.get("dropped", 0)), block,
                         particles=list(traj.trajectories), solve_time_s=seconds)
        fields = {name: value.float().numpy() for name, value in traj.fields.items()}
        params = {}
        if getattr(problem, "solver", None) == "fem-mesh":  # MeshSamples: per-sample scalars (Helmholtz k)
            params = {name: np.asarray(value, dtype=np.float64) for name, value in traj.params.items()}
        certificate = {key: traj.provenance[key] for key in CERTIFICATE_KEYS if key in traj.provenance}
        iterations = [int(i) for i in traj.provenance.get("iterations_per_sample", [])]
        return Batch(worker, fields, traj.sample_ids, int(traj.provenance.get("dropped", 0)), block, params,
                     certificate=certificate, solve_time_s=seconds, iterations=iterations)


@dataclass
class Batch:
    """One solved batch from a worker: fields ``(n, T, *space)`` float32 arrays, their ``(n, 2)``
    ids, the number of blown-up samples dropped, and the index block ``[start, stop)`` it solved.

    Mesh problems (solver ``"fem-mesh"``) give nodal fields ``(n, n_nodes[, C])`` instead and their
    per-sample scalars (Helmholtz ``k``) as ``params`` ``(n,)`` float64 (empty for grid problems).
    Streaming them to a file (:func:`~pdebench.data.spill.spill_stream`) or to online training is not
    supported yet; ``pdebench generate`` writes them.

    Particle problems (solver ``"sph"``) give no ``fields``; ``particles`` holds one
    :class:`~pdebench.core.particles.ParticleTrajectory` per row of ``sample_ids`` (particle counts
    differ between samples). :func:`~pdebench.data.spill.spill_stream` writes them."""

    worker: int
    fields: dict[str, np.ndarray]
    sample_ids: np.ndarray
    dropped: int
    block: tuple[int, int]
    params: dict[str, np.ndarray] = field(default_factory=dict)
    particles: list[Any] = field(default_factory=list)
    #: The solve's certificate, :data:`CERTIFICATE_KEYS` of its provenance (``error_estimate``, and the
    #: step it took): what a file of these rows states about their accuracy.
    certificate: dict[str, Any] = field(default_factory=dict)
    #: Wall seconds the worker's solver took for this block (what the rows cost to generate).
    solve_time_s: float = 0.0
    #: Linear-solver iterations of every sample solved (the provenance's ``iterations_per_sample``;
    #: empty for solvers that record none): with ``solve_time_s``, the cost per sample of the block.
    iterations: list[int] = field(default_factory=list)


#: The provenance entries a :class:`Batch` carries to the file: the certified error and the finest step.
CERTIFICATE_KEYS = ("error_estimate", "substeps_per_output", "dt")


def _worker_main(config: WorkerConfig, worker: int, connection) -> None:
    """Process body: receive a block on its own pipe, solve it, send the :class:`Batch` back; stop
    on ``None`` or when the parent is gone. (The parent hands out the blocks, so it always knows
    what a worker holds; and a pipe per worker means a worker killed mid-send leaves no shared lock
    held.)"""
    # A terminal's Ctrl-C is the parent's to handle (it stops us). The parent started this process
    # with SIGINT blocked (see _start_with_sigint_blocked), so none arrived during start-up; one that
    # is pending now is discarded by the ignore before the unblock.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})

    import torch

    torch.set_num_threads(config.threads)
    problem = PROBLEMS.build(config.problem, **config.problem_args)
    solver = build_solver(problem, **config.solver_args)
    try:
        while (block := connection.recv()) is not None:
            connection.send(config.solve(problem, solver, tuple(block), worker))
    except (EOFError, OSError):  # the parent is gone or closed our pipe (EOF, EPIPE, ECONNRESET): a stop
        pass
    connection.close()


def _start_with_sigint_blocked(process: Any) -> None:
    """Start ``process`` with SIGINT blocked in the calling thread, so the child inherits the blocked
    mask and a Ctrl-C during its start-up (imports) cannot raise a ``KeyboardInterrupt`` traceback in
    it; :func:`_worker_main` ignores SIGINT and unblocks it. A Ctrl-C meant for the parent during the
    start stays pending and is delivered when the mask is restored."""
    resource_tracker.ensure_running()  # its own first start unblocks SIGINT: run it before blocking
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
    try:
        process.start()
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)


def _ids(blocks: Any, seed: int) -> list[tuple[int, int]]:
    """``[(start, stop), ...]`` index blocks -> their ``(seed, index)`` ids."""
    return [(seed, i) for start, stop in blocks for i in range(start, stop)]


def as_ranges(ids: Any) -> list[list[int]]:
    """``[(seed, index), ...]`` -> ``[[seed, start, stop], ...]``: sorted runs of consecutive indices
    (compact enough for an HDF5 attribute or a JSON report however many ids there are)."""
    runs: list[list[int]] = []
    for seed, index in sorted(set((int(s), int(i)) for s, i in ids)):
        if runs and runs[-1][0] == seed and runs[-1][2] == index:
            runs[-1][2] += 1
        else:
            runs.append([seed, index, index + 1])
    return runs


class _BlockDispenser(ABC):
    """What both backends share: the cursor over blocks, the block each worker holds, and the
    accounting of every drawn id (received, dropped, lost, returned unused) and of restarts.

    The consuming thread (``batches``) and a stopping thread (``stop``) may run at once: every change
    to the held blocks happens under one lock, and once :meth:`stop` has begun no block is handed out,
    lost or delivered any more (what was in flight is returned unused).
    """

    config: WorkerConfig
    max_restarts: int

    def _init_dispenser(self, cursor: int) -> None:
        if cursor < 0:
            raise ValueError(f"need cursor >= 0; got {cursor}")
        self.start_cursor = cursor
        self.cursor = cursor  # the next block to hand out: every block before it was drawn
        self.restarts = 0
        self.dropped = 0
        self.lost_ids: list[tuple[int, int]] = []
        self.returned_ids: list[tuple[int, int]] = []  # in flight at stop: drawn, never delivered, never solved again
        self.dropped_ids: list[tuple[int, int]] = []
        self.received_blocks: list[tuple[int, int]] = []  # blocks delivered (their ids less dropped_ids)
        self._held: dict[int, tuple[int, int]] = {}
        self._exhausted = False
        self._stopped = threading.Event()
        self._accounting = threading.RLock()

    def _take_block(self, worker: int) -> tuple[int, int] | None:
        with self._accounting:
            if self._stopped.is_set():
                return None
            block = self.config.block(self.cursor)
            if block is None:
                self._exhausted = True
                return None
            self.cursor += 1
            self._held[worker] = block
            return block

    def _delivered(self, worker: int, batch: "Batch") -> bool:
        """Account a batch a worker sent; ``False``: the pool was stopped and its block already
        returned unused (the batch is then not to be used)."""
        with self._accounting:
            held = self._held.pop(worker, None)
            if held is None and self._stopped.is_set():
                return False
            if held != tuple(batch.block):
                raise RuntimeError(f"worker {worker} returned block {batch.block}, but holds {held}")
            self.dropped += batch.dropped
            if batch.dropped:
                solved = {(int(s), int(i)) for s, i in np.asarray(batch.sample_ids).reshape(-1, 2)}
                self.dropped_ids += [i for i in _ids([held], self.config.seed) if i not in solved]
            self.received_blocks.append(held)
            return True

    def _worker_lost(self, worker: int) -> None:
        """A worker is gone: the block it held is lost (never solved again), by id. After a stop this
        is the stop's doing, not a loss: the block was returned unused."""
        with self._accounting:
            if self._stopped.is_set():
                return
            block = self._held.pop(worker, None)
            if block is not None:
                self.lost_ids += _ids([block], self.config.seed)
        if block is not None:
            log.warning("worker %d's block of samples %d..%d (seed %d) is lost", worker, block[0], block[1] - 1, self.config.seed)

    def _begin_stop(self) -> None:
        """Mark the pool stopped and return the blocks in flight unused (before any worker ends, so
        no ending worker is taken for a failure)."""
        with self._accounting:
            self._stopped.set()
            for block in self._held.values():
                self.returned_ids += _ids([block], self.config.seed)
            self._held.clear()

    def id_ranges(self) -> dict[str, list[list[int]]]:
        """This pool's ids by fate, as ``[[seed, start, stop], ...]`` ranges: ``"drawn"`` (every block
        from the starting cursor to :attr:`cursor`) = ``"received"`` + ``"dropped"`` + ``"lost"`` +
        ``"returned_unused"``, disjoint (held blocks of a running pool are drawn but in none yet)."""
        with self._accounting:
            seed = self.config.seed
            drawn = [b for b in map(self.config.block, range(self.start_cursor, self.cursor)) if b is not None]
            dropped = set(self.dropped_ids)
            received = [i for i in _ids(self.received_blocks, seed) if i not in dropped]
            return {"drawn": as_ranges(_ids(drawn, seed)), "received": as_ranges(received), "dropped": as_ranges(dropped),
                    "lost": as_ranges(self.lost_ids), "returned_unused": as_ranges(self.returned_ids)}

    def _count_restart(self, why: str) -> None:
        if self.restarts >= self.max_restarts:
            raise RuntimeError(f"workers died {self.restarts + 1} times (last: {why}); giving up")
        self.restarts += 1

    # ---------------------------------------------------------------- lifecycle
    num_workers: int

    def _prepare(self) -> None:
        """Backend set-up before the first worker starts (nothing for local processes)."""

    @abstractmethod
    def _spawn(self) -> None:
        """Start one more worker and hand it its first block."""

    @abstractmethod
    def stop(self, grace: float = 2.0) -> None:
        """End every worker (idempotent)."""

    def start(self):
        """Start the workers (and register their termination at interpreter exit)."""
        self._prepare()
        for _ in range(self.num_workers):
            self._spawn()
        atexit.register(self.stop)
        return self

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()


class LocalWorkerPool(_BlockDispenser):
    """``num_workers`` solver processes streaming batches to the trainer; restarts dead workers.

    The pool hands each worker one block at a time and the next one as soon as the worker's batch
    has been read: while the trainer does not read (a full ``fifo`` reservoir), workers wait
    instead of growing memory.

    Parameters
    ----------
    config
        What to solve.
    num_workers
        Processes.
    max_restarts
        Replacements allowed over the pool's life (a crash loop ends in an error, not a fork bomb).
    cursor
        First block to hand out (a resumed run passes the stopped run's :attr:`cursor`).
    """

    def __init__(self, config: WorkerConfig, num_workers: int = 2, max_restarts: int = 16, cursor: int = 0) -> None:
        if num_workers < 1:
            raise ValueError(f"need num_workers >= 1; got {num_workers}")
        self.config, self.num_workers, self.max_restarts = config, num_workers, max_restarts
        self._init_dispenser(cursor)
        self._context = mp.get_context("spawn")
        self._processes: dict[int, Any] = {}
        self._connections: dict[int, Any] = {}
        self._next_worker = 0
        self._consuming = False
        self._lock = threading.Lock()

    def _spawn(self) -> None:
        worker = self._next_worker
        self._next_worker += 1
        parent_end, child_end = self._context.Pipe(duplex=True)
        process = self._context.Process(target=_worker_main, args=(self.config, worker, child_end), daemon=True,
                                        name=f"pdebench-worker-{worker}")
        _start_with_sigint_blocked(process)
        child_end.close()  # the child holds the only other end: EOF here means the worker is gone
        self._processes[worker] = process
        self._connections[worker] = parent_end
        log.info("started worker %d (pid %d)", worker, process.pid)
        self._hand_out(worker)

    def _hand_out(self, worker: int) -> None:
        """Send the worker its next block, or ``None`` (stop) when the stream is exhausted or stopped."""
        block = self._take_block(worker)
        try:
            self._connections[worker].send(block)
        except (OSError, ValueError):  # it died already; check_workers replaces it
            pass

    def check_workers(self) -> None:
        """Replace workers that died with a non-zero status; raise after ``max_restarts``."""
        with self._lock:
            for worker, process in list(self._processes.items()):
                if process.is_alive() or process.exitcode is None:
                    continue
                del self._processes[worker]
                if process.exitcode == 0 or self._stopped.is_set():
                    continue  # finished (the stream is exhausted) or stopped by us
                log.warning("worker %d (pid %d) died with exit code %s; starting a replacement", worker, process.pid, process.exitcode)
                self._count_restart(f"exit code {process.exitcode}")
                if not self._exhausted:
                    self._spawn()

    @property
    def alive(self) -> int:
        """Number of worker processes still running."""
        return sum(p.is_alive() for p in self._processes.values())

    @property
    def pids(self) -> list[int]:
        return [p.pid for p in self._processes.values() if p.is_alive()]

    @property
    def workers(self) -> list[int]:
        """Ids of the live workers."""
        return [w for w, p in self._processes.items() if p.is_alive()]

    def kill_worker(self, worker: int) -> None:
        """SIGKILL one worker, as the OOM killer would (for tests and drills)."""
        self._processes[worker].kill()

    def batches(self, timeout: float = 0.5) -> Iterator[Batch]:
        """Yield solved batches until every worker has finished (``max_samples``) or :meth:`stop`.

        The iterating thread owns the pipes' read ends and closes them when it returns, so a
        :meth:`stop` from another thread never closes a pipe this thread is reading.
        """
        self._consuming = True
        try:
            while not self._stopped.is_set():
                try:
                    ready = wait(list(self._connections.values()), timeout=timeout) if self._connections else []
                except (OSError, ValueError):
                    if self._stopped.is_set():
                        return
                    raise
                for reader in ready:
                    worker = next(w for w, c in self._connections.items() if c is reader)
                    try:
                        batch = reader.recv()
                    except (EOFError, OSError):  # the worker exited or was killed: its pipe is done
                        reader.close()
                        del self._connections[worker]
                        self._worker_lost(worker)
                        continue
                    if not self._delivered(worker, batch):
                        return  # stopped meanwhile: its block was returned unused
                    self._hand_out(worker)
                    yield batch
                if self._stopped.is_set():
                    return
                self.check_workers()
                if not self._processes and not self._connections:
                    return
        finally:
            self._consuming = False
            self._close_connections()

    def _close_connections(self) -> None:
        for reader in self._connections.values():
            reader.close()
        self._connections.clear()

    def stop(self, grace: float = 2.0) -> None:
        """Terminate every worker process (idempotent); blocks in flight are returned unused."""
        self._begin_stop()
        with self._lock:
            processes = list(self._processes.values())
            self._processes.clear()
        for process in processes:
            if process.is_alive():
                process.terminate()
        deadline = time.monotonic() + grace
        for process in processes:
            process.join(max(0.0, deadline - time.monotonic()))
            if process.is_alive():
                process.kill()
                process.join()
        if not self._consuming:  # otherwise the iterating thread closes its pipes on its way out
            self._close_connections()



class _SolverActor:
    """A Ray actor holding one problem and solver; ``solve(block)`` returns a :class:`Batch`."""

    def __init__(self, config: WorkerConfig, worker: int) -> None:
        import torch

        torch.set_num_threads(config.threads)
        self.config, self.worker = config, worker
        self.problem = PROBLEMS.build(config.problem, **config.problem_args)
        self.solver = build_solver(self.problem, **config.solver_args)

    def pid(self) -> int:
        import os

        return os.getpid()

    def solve(self, block: tuple[int, int]) -> Batch:
        return self.config.solve(self.problem, self.solver, block, self.worker)


class RayWorkerPool(_BlockDispenser):
    """``num_workers`` Ray actors streaming batches to the trainer; replaces dead or failing actors.

    Each actor holds one block at a time and gets the next as soon as its batch has been read
    (back-pressure as in :class:`LocalWorkerPool`). An actor that dies (its process killed, its node
    lost) or raises is killed for good, its block reported lost, and a new actor takes its place.

    Parameters
    ----------
    config, num_workers, max_restarts, cursor
        As :class:`LocalWorkerPool`.
    address
        Ray cluster address for ``ray.init`` (``None``: start a local Ray, or use the one this
        process already joined). A Ray started here is shut down by :meth:`stop`.
    init_args
        Further ``ray.init`` arguments (e.g. ``{"_temp_dir": ..., "num_cpus": 2}``).
    """

    def __init__(self, config: WorkerConfig, num_workers: int = 2, max_restarts: int = 16, cursor: int = 0,
                 address: str | None = None, init_args: dict[str, Any] | None = None) -> None:
        if num_workers < 1:
            raise ValueError(f"need num_workers >= 1; got {num_workers}")
        self.config, self.num_workers, self.max_restarts = config, num_workers, max_restarts
        self.address, self.init_args = address, dict(init_args or {})
        self._init_dispenser(cursor)
        self._actors: dict[int, Any] = {}
        self._pending: dict[Any, int] = {}
        self._next_worker = 0
        self._owns_ray = False

    def _prepare(self) -> None:
        """Join (or start) Ray and declare the actor class."""
        import ray

        if not ray.is_initialized():
            ray.init(address=self.address, **{"include_dashboard": False, "logging_level": logging.WARNING, **self.init_args})
            self._owns_ray = True
        self._actor_class = ray.remote(num_cpus=self.config.threads, max_restarts=0)(_SolverActor)

    def _spawn(self) -> None:
        if self._stopped.is_set():
            return
        worker = self._next_worker
        self._next_worker += 1
        self._actors[worker] = self._actor_class.remote(self.config, worker)
        log.info("started Ray worker %d", worker)
        self._submit(worker)

    def _submit(self, worker: int) -> None:
        block = self._take_block(worker)
        if block is not None:
            self._pending[self._actors[worker].solve.remote(block)] = worker

    @property
    def pids(self) -> list[int]:
        """Process ids of the live actors (they may live on other nodes)."""
        import ray

        return ray.get([actor.pid.remote() for actor in self._actors.values()])

    def kill_worker(self, worker: int) -> None:
        """Kill one actor as a node failure would (for tests and drills)."""
        import ray

        ray.kill(self._actors[worker], no_restart=True)

    @property
    def workers(self) -> list[int]:
        return list(self._actors)

    def batches(self, timeout: float = 0.5) -> Iterator[Batch]:
        """Yield solved batches until the stream is exhausted (``max_samples``) or :meth:`stop`."""
        import ray
        from ray.exceptions import RayActorError, RayTaskError

        while self._pending and not self._stopped.is_set():
            try:
                ready, _ = ray.wait(list(self._pending), num_returns=1, timeout=timeout)
            except Exception:  # noqa: BLE001 - a stop from another thread shut Ray down under us
                if self._stopped.is_set():
                    return
                raise
            for ref in ready:
                worker = self._pending.pop(ref, None)
                if worker is None or self._stopped.is_set():
                    return  # stopped meanwhile (stop killed the actors): its block was returned unused
                try:
                    batch = ray.get(ref)
                except Exception as error:  # noqa: BLE001 - sorted out below
                    if self._stopped.is_set():
                        return  # the stop killed the actor: not a failure
                    if not isinstance(error, (RayActorError, RayTaskError)):
                        raise
                    why = type(error).__name__
                    log.warning("Ray worker %d failed (%s); starting a replacement", worker, why)
                    self._worker_lost(worker)
                    actor = self._actors.pop(worker, None)
                    if actor is not None:
                        ray.kill(actor, no_restart=True)
                    self._count_restart(why)
                    if not self._exhausted and not self._stopped.is_set():
                        self._spawn()
                    continue
                batch.fields = {name: np.array(value) for name, value in batch.fields.items()}  # off the object store
                if not self._delivered(worker, batch):
                    return
                self._submit(worker)
                yield batch

    def stop(self, grace: float = 2.0) -> None:
        """Kill every actor, and shut down a Ray this pool started (idempotent); blocks in flight are
        returned unused."""
        import ray

        self._begin_stop()
        if ray.is_initialized():
            for actor in self._actors.values():
                ray.kill(actor, no_restart=True)
            if self._owns_ray:
                ray.shutdown()
        self._actors.clear()
        self._pending.clear()
        self._owns_ray = False



BACKENDS = ("local", "ray")


def make_worker_pool(config: WorkerConfig, backend: str = "local", num_workers: int = 2, address: str | None = None,
                     **kwargs: Any) -> LocalWorkerPool | RayWorkerPool:
    """A worker pool of the given ``backend`` (``"local"`` processes or ``"ray"`` actors).

    ``address`` (Ray only) is the cluster to join; ``kwargs`` go to the pool (``max_restarts``,
    ``cursor``, and for Ray ``init_args``).
    """
    if backend == "local":
        if address is not None:
            raise ValueError(f"address={address!r} needs backend='ray'; the local backend runs processes on this machine")
        return LocalWorkerPool(config, num_workers=num_workers, **kwargs)
    if backend == "ray":
        return RayWorkerPool(config, num_workers=num_workers, address=address, **kwargs)
    raise ValueError(f"unknown worker backend {backend!r}; choose one of {', '.join(BACKENDS)}")
