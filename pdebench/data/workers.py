"""Data-generation workers: solver processes that stream solved batches to the trainer.

The local backend (the embedded default) runs ``num_workers`` processes (``spawn`` start method, one
torch thread each). Workers draw disjoint blocks of sample indices of one stream ``seed`` from a
shared counter, so every sample carries its ``(seed, index)`` id, no index is solved twice, and a
worker that dies is replaced by one that continues from indices nobody has drawn (the block a dead
worker was solving is lost, never repeated). Samples whose solve blew up are dropped by the solver
and counted. Stopping the pool (explicitly, on error, at interpreter exit, or through the context
manager) terminates every process: no orphans.
"""

from __future__ import annotations

import atexit
import logging
import multiprocessing as mp
import threading
from multiprocessing.connection import wait
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np

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
    """

    problem: str
    problem_args: dict[str, Any] = field(default_factory=dict)
    solver_args: dict[str, Any] = field(default_factory=dict)
    seed: int = 0
    batch_size: int = 8
    max_samples: int | None = None
    threads: int = 1

    def __post_init__(self) -> None:
        from pdebench.problems import PROBLEMS
        from pdebench.solvers import SOLVERS

        problem = PROBLEMS.build(self.problem, **self.problem_args)  # validates early, in the parent
        SOLVERS.validate(problem.solver, self.solver_args)
        if self.batch_size < 1 or self.threads < 1 or self.seed < 0:
            raise ValueError(f"need batch_size >= 1, threads >= 1, seed >= 0; got {self.batch_size}, {self.threads}, {self.seed}")
        if self.max_samples is not None and self.max_samples < 1:
            raise ValueError(f"max_samples must be >= 1 or None, got {self.max_samples}")


@dataclass
class Batch:
    """One solved batch from a worker: fields ``(n, T, *space)`` float32 arrays and their ids."""

    worker: int
    fields: dict[str, np.ndarray]
    sample_ids: np.ndarray
    dropped: int


def _worker_main(config: WorkerConfig, worker: int, counter, connection) -> None:
    """Process body: claim index blocks, solve them, send :class:`Batch` messages on its own pipe
    (a pipe per worker: a worker killed mid-send cannot leave a shared queue's lock held)."""
    import torch

    from pdebench.data.generate import build_solver, solve_samples
    from pdebench.problems import PROBLEMS

    torch.set_num_threads(config.threads)
    problem = PROBLEMS.build(config.problem, **config.problem_args)
    solver = build_solver(problem, **config.solver_args)
    while True:
        with counter.get_lock():
            start = counter.value
            stop = start + config.batch_size
            if config.max_samples is not None:
                stop = min(stop, config.max_samples)
            if start >= stop:
                break
            counter.value = stop
        traj = solve_samples(problem, solver, config.seed, np.arange(start, stop), on_blowup="drop")
        fields = {name: value.float().numpy() for name, value in traj.fields.items()}
        connection.send(Batch(worker, fields, traj.sample_ids, int(traj.provenance.get("dropped", 0))))
    connection.close()


class LocalWorkerPool:
    """``num_workers`` solver processes streaming batches to the trainer; restarts dead workers.

    Each worker sends on its own pipe; a worker blocks in ``send`` while the trainer is not reading
    (back-pressure through the pipe's buffer), so memory does not grow when training falls behind.

    Parameters
    ----------
    config
        What to solve.
    num_workers
        Processes.
    max_restarts
        Replacements allowed over the pool's life (a crash loop ends in an error, not a fork bomb).
    """

    def __init__(self, config: WorkerConfig, num_workers: int = 2, max_restarts: int = 16) -> None:
        if num_workers < 1:
            raise ValueError(f"need num_workers >= 1; got {num_workers}")
        self.config, self.num_workers, self.max_restarts = config, num_workers, max_restarts
        self._context = mp.get_context("spawn")
        self._counter = self._context.Value("q", 0)
        self._processes: dict[int, Any] = {}
        self._connections: dict[int, Any] = {}
        self._next_worker = 0
        self.restarts = 0
        self.dropped = 0
        self._stopped = threading.Event()
        self._consuming = False
        self._lock = threading.Lock()

    # ---------------------------------------------------------------- lifecycle
    def start(self) -> "LocalWorkerPool":
        """Start the worker processes (and register their termination at exit)."""
        for _ in range(self.num_workers):
            self._spawn()
        atexit.register(self.stop)
        return self

    def _spawn(self) -> None:
        worker = self._next_worker
        self._next_worker += 1
        reader, writer = self._context.Pipe(duplex=False)
        process = self._context.Process(target=_worker_main, args=(self.config, worker, self._counter, writer), daemon=True,
                                        name=f"pdebench-worker-{worker}")
        process.start()
        writer.close()  # the child holds the only writer: EOF on the reader means the worker is gone
        self._processes[worker] = process
        self._connections[worker] = reader
        log.info("started worker %d (pid %d)", worker, process.pid)

    def check_workers(self) -> None:
        """Replace workers that died with a non-zero status; raise after ``max_restarts``."""
        with self._lock:
            for worker, process in list(self._processes.items()):
                if process.is_alive() or process.exitcode is None:
                    continue
                del self._processes[worker]
                if process.exitcode == 0:
                    continue  # finished its share of max_samples
                if self._stopped.is_set():
                    continue
                log.warning("worker %d (pid %d) died with exit code %s; starting a replacement", worker, process.pid, process.exitcode)
                if self.restarts >= self.max_restarts:
                    raise RuntimeError(f"workers died {self.restarts + 1} times (last exit code {process.exitcode}); giving up")
                self.restarts += 1
                self._spawn()

    @property
    def alive(self) -> int:
        """Number of worker processes still running."""
        return sum(p.is_alive() for p in self._processes.values())

    @property
    def pids(self) -> list[int]:
        return [p.pid for p in self._processes.values() if p.is_alive()]

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
                        continue
                    self.dropped += batch.dropped
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
        """Terminate every worker process (idempotent)."""
        self._stopped.set()
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

    def __enter__(self) -> "LocalWorkerPool":
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()
