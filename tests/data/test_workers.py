"""Local data-generation workers: ids, replacement after SIGKILL, crash loops, no orphans."""

from __future__ import annotations

import os
import signal
import time

import numpy as np
import psutil
import pytest

from pdebench.data.generate import build_solver, solve_samples
from pdebench.data.workers import LocalWorkerPool, WorkerConfig
from pdebench.problems import PROBLEMS

SMALL = {"nx": 64, "n_out": 4}


def test_workers_stream_every_index_once_with_the_solvers_values():
    config = WorkerConfig("burgers1d", SMALL, seed=5, batch_size=4, max_samples=20)
    got = {}
    start = time.perf_counter()
    with LocalWorkerPool(config, num_workers=2) as pool:
        for batch in pool.batches():
            assert 0 < batch.solve_time_s < time.perf_counter() - start  # the solve's own seconds, timed in the worker
            for row, (seed, index) in enumerate(batch.sample_ids):
                got[(int(seed), int(index))] = batch.fields["u"][row]
    assert sorted(got) == [(5, i) for i in range(20)]
    problem = PROBLEMS.build("burgers1d", **SMALL)
    alone = solve_samples(problem, build_solver(problem), 5, np.array([13]))
    assert np.array_equal(got[(5, 13)], alone.fields["u"][0].float().numpy())


def test_a_batch_carries_the_linear_solver_iterations_of_its_samples():
    """darcy3d's CG iterations per sample reach the trainer with the batch, the same as a solve alone."""
    config = WorkerConfig("darcy3d", {"resolution": 8}, {"method": "amg-pcg"}, seed=2, batch_size=2, max_samples=2)
    with LocalWorkerPool(config, num_workers=1) as pool:
        (batch,) = list(pool.batches())
    problem = PROBLEMS.build("darcy3d", resolution=8)
    alone = solve_samples(problem, build_solver(problem, method="amg-pcg"), 2, np.arange(2))
    assert batch.iterations == alone.provenance["iterations_per_sample"] and all(i > 0 for i in batch.iterations)


def test_a_killed_worker_is_replaced_and_continues_from_unused_indices():
    config = WorkerConfig("burgers1d", SMALL, seed=1, batch_size=2, max_samples=40)
    ids = []
    with LocalWorkerPool(config, num_workers=2) as pool:
        for i, batch in enumerate(pool.batches()):
            ids += [tuple(map(int, r)) for r in batch.sample_ids]
            if i == 1:
                os.kill(pool.pids[0], signal.SIGKILL)
        restarts = pool.restarts
    assert restarts == 1
    assert len(ids) == len(set(ids)) and len(ids) >= 40 - 2 * 2  # at most the killed worker's block is lost
    assert all(seed == 1 and 0 <= index < 40 for seed, index in ids)


def test_a_crash_loop_ends_in_an_error_and_stop_leaves_no_process():
    config = WorkerConfig("burgers1d", {"nx": 64, "n_out": 2, "nu": 0.001}, solver_args={"dt": 10.0}, batch_size=2)
    pool = LocalWorkerPool(config, num_workers=1, max_restarts=2).start()
    pids = set(pool.pids)
    with pytest.raises(RuntimeError, match="workers died 3 times"):
        for _ in pool.batches(timeout=0.2):
            pass
    pool.stop()
    assert not any(psutil.pid_exists(pid) and psutil.Process(pid).status() != psutil.STATUS_ZOMBIE for pid in pids)


def test_bad_worker_configuration_fails_in_the_parent():
    with pytest.raises(ValueError, match="nu \\(viscosity\\) must be positive"):
        WorkerConfig("burgers1d", {"nu": -1.0})
    with pytest.raises(ValueError, match="unknown problem"):
        WorkerConfig("burgerz")
