"""Spilling a worker stream to HDF5: exact rows by id, partial files on interrupt, no workers left."""

from __future__ import annotations

import hashlib
import json
import os
import signal
from pathlib import Path
from types import SimpleNamespace

import h5py
import numpy as np
import psutil
import pytest
import torch

from pdebench.data.generate import build_solver, generate_dataset, solve_samples
from pdebench.io.trajectory_file import TrajectoryFile
from pdebench.data.spill import SpillSummary, _HeldSigint, spill_stream
from pdebench.data.workers import CERTIFICATE_KEYS, LocalWorkerPool, WorkerConfig, as_ranges, make_worker_pool
from pdebench.problems import PROBLEMS

SMALL = {"nx": 64, "n_out": 4}


@pytest.fixture(scope="module")
def problem():
    return PROBLEMS.build("burgers1d", **SMALL)


def reference(problem, seed: int, indices) -> dict[tuple[int, int], torch.Tensor]:
    """What ``solve_samples`` gives for ``(seed, i)``, as the float32 rows a file stores."""
    traj = solve_samples(problem, build_solver(problem), seed, np.asarray(indices))
    return {(seed, int(i)): traj.fields["u"][row].float() for row, i in enumerate(indices)}


def rows_by_id(path: Path) -> dict[tuple[int, int], torch.Tensor]:
    with TrajectoryFile(path) as file:
        traj = file.read()
    ids = [tuple(map(int, row)) for row in traj.sample_ids]
    assert len(ids) == len(set(ids)), "an id is stored twice"
    return {i: traj.fields["u"][row] for row, i in enumerate(ids)}


def alive(pids) -> list[int]:
    out = []
    for pid in pids:
        try:
            if psutil.Process(pid).status() != psutil.STATUS_ZOMBIE:
                out.append(pid)
        except psutil.NoSuchProcess:
            pass
    return out


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def fake_batches(problem, seed: int, blocks, then: BaseException | None = None):
    """Worker-like batches (``fields``, ``sample_ids``, ``dropped`` and the certificate), solved for real."""
    for block in blocks:
        traj = solve_samples(problem, build_solver(problem), seed, np.asarray(block))
        certificate = {key: traj.provenance[key] for key in CERTIFICATE_KEYS if key in traj.provenance}
        yield SimpleNamespace(fields={"u": traj.fields["u"].float().numpy()}, sample_ids=traj.sample_ids, dropped=0,
                              certificate=certificate)
    if then is not None:
        raise then


def interrupt_after(pool, k: int, error: BaseException, seen_pids: set[int]):
    """Replace ``pool.batches`` by the real stream cut by ``error`` after ``k`` batches."""
    real = pool.batches

    def batches(*args, **kwargs):
        for i, batch in enumerate(real(*args, **kwargs)):
            seen_pids.update(pool.pids)
            yield batch
            if i + 1 == k:
                raise error

    pool.batches = batches


def test_spilled_rows_equal_solve_samples_bit_for_bit_and_every_index_is_written_once(tmp_path, problem):
    config = WorkerConfig("burgers1d", SMALL, seed=4, batch_size=3, max_samples=10)
    pool = make_worker_pool(config, "local", num_workers=2)
    summary = spill_stream(pool, problem, tmp_path / "s.h5")
    assert isinstance(summary, SpillSummary) and summary.complete
    assert (summary.written, summary.dropped, summary.lost, summary.duplicates) == (10, 0, 0, 0)
    assert pool.alive == 0 and pool.pids == []
    got = rows_by_id(tmp_path / "s.h5")
    assert sorted(got) == [(4, i) for i in range(10)]
    want = reference(problem, 4, range(10))
    for key, row in got.items():
        assert torch.equal(row, want[key]), f"row {key} differs from solve_samples"
    with TrajectoryFile(tmp_path / "s.h5") as file:
        assert file.layout == "native" and file.params == problem.params()
        prov = file.provenance
    assert prov["complete"] is True and prov["interrupted"] == "" and prov["seed"] == 4
    assert prov["source"] == "stream" and prov["samples_requested"] == 10 and prov["lost_ranges"] == []
    # the rows' generation cost: the two workers' summed solve seconds, at most 2 x the stream's wall time
    assert 0 < prov["solve_time_s"] <= 2 * prov["stream_wall_time_s"]


def test_the_file_has_the_layout_and_provenance_keys_of_generate(tmp_path, problem):
    generate_dataset(problem, tmp_path / "g.h5", num_samples=4, seed=2, batch_size=4)
    spill_stream(fake_batches(problem, 2, [np.arange(4)]), problem, tmp_path / "s.h5")
    with h5py.File(tmp_path / "g.h5") as g, h5py.File(tmp_path / "s.h5") as s:
        assert set(g) == set(s)
        for key in g:
            assert g[key].shape == s[key].shape and g[key].dtype == s[key].dtype, key
            np.testing.assert_array_equal(g[key][()], s[key][()], err_msg=key)
        missing = set(g.attrs) - set(s.attrs) - {"provenance.wall_time_s"}
        assert not missing
        for key in ("provenance.dt", "provenance.substeps_per_output", "provenance.solver", "provenance.scheme", "Nu"):
            assert g.attrs[key] == s.attrs[key], key


def test_lost_ids_are_stored_as_ranges():
    assert as_ranges([(1, 5), (1, 3), (1, 4), (1, 9), (2, 0)]) == [[1, 3, 6], [1, 9, 10], [2, 0, 1]]


def test_duplicate_ids_are_skipped_and_num_samples_caps_the_rows(tmp_path, problem):
    batches = fake_batches(problem, 0, [np.arange(0, 4), np.arange(2, 6), np.arange(6, 9)])
    summary = spill_stream(batches, problem, tmp_path / "s.h5", num_samples=5)
    assert (summary.written, summary.duplicates, summary.complete) == (5, 2, True)
    got = rows_by_id(tmp_path / "s.h5")
    assert sorted(got) == [(0, i) for i in range(5)]
    want = reference(problem, 0, range(5))
    assert all(torch.equal(got[k], want[k]) for k in got)


def test_an_interrupted_spill_keeps_the_received_rows_in_a_valid_file_and_stops_every_worker(tmp_path, problem):
    path = tmp_path / "s.h5"
    generate_dataset(problem, path, num_samples=2, seed=9, batch_size=2)  # a previous file, replaced on purpose
    config = WorkerConfig("burgers1d", SMALL, seed=6, batch_size=2, max_samples=1000)
    pool = make_worker_pool(config, "local", num_workers=2)
    pids: set[int] = set()
    interrupt_after(pool, 3, KeyboardInterrupt(), pids)
    summary = spill_stream(pool, problem, path, overwrite=True)
    assert pids and not alive(pids), "a worker outlived the interrupted spill"
    assert summary.interrupted == "KeyboardInterrupt" and not summary.complete
    assert summary.written == 6 and summary.path == path
    got = rows_by_id(path)
    assert len(got) == 6 and all(seed == 6 for seed, _ in got)
    want = reference(problem, 6, sorted(i for _, i in got))
    assert all(torch.equal(got[k], want[k]) for k in got)
    with TrajectoryFile(path) as file:
        assert len(file) == 6
        assert file.provenance["complete"] is False and file.provenance["interrupted"] == "KeyboardInterrupt"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["s.h5"], "a temporary file was left behind"


def test_samples_lost_with_a_killed_worker_are_counted_and_recorded_by_id(tmp_path, problem):
    config = WorkerConfig("burgers1d", SMALL, seed=2, batch_size=3, max_samples=24)
    pool = make_worker_pool(config, "local", num_workers=2)
    real = pool.batches

    def batches(*args, **kwargs):
        for i, batch in enumerate(real(*args, **kwargs)):
            yield batch
            if i == 0:
                pool.kill_worker(pool.workers[0])

    pool.batches = batches
    summary = spill_stream(pool, problem, tmp_path / "s.h5")
    assert summary.complete and summary.restarts == 1 and 1 <= summary.lost <= 3
    assert summary.written + summary.lost == 24
    got = rows_by_id(tmp_path / "s.h5")
    assert sorted(set(got) | set(summary.lost_ids)) == [(2, i) for i in range(24)] and not set(got) & set(summary.lost_ids)
    with TrajectoryFile(tmp_path / "s.h5") as file:
        assert file.provenance["lost"] == summary.lost
        assert file.provenance["lost_ranges"] == as_ranges(summary.lost_ids)


def test_a_failing_pool_keeps_what_arrived_and_reports_the_error(tmp_path, problem):
    config = WorkerConfig("burgers1d", SMALL, seed=1, batch_size=2, max_samples=1000)
    pool = make_worker_pool(config, "local", num_workers=2)
    pids: set[int] = set()
    interrupt_after(pool, 2, RuntimeError("workers died 17 times (last: exit code 1); giving up"), pids)
    summary = spill_stream(pool, problem, tmp_path / "s.h5")
    assert not alive(pids)
    assert summary.interrupted.startswith("RuntimeError: workers died 17 times") and summary.written == 4
    with TrajectoryFile(tmp_path / "s.h5") as file:
        assert len(file) == 4 and file.provenance["interrupted"].startswith("RuntimeError: workers died")


def test_a_crash_loop_before_any_batch_leaves_the_previous_file_untouched(tmp_path, problem):
    path = tmp_path / "s.h5"
    generate_dataset(problem, path, num_samples=2, seed=0, batch_size=2)
    before = digest(path)
    unstable = {"nx": 64, "n_out": 2, "nu": 0.001}
    config = WorkerConfig("burgers1d", unstable, solver_args={"dt": 10.0}, batch_size=2, max_samples=8)
    pool = LocalWorkerPool(config, num_workers=1, max_restarts=1)
    summary = spill_stream(pool, PROBLEMS.build("burgers1d", **unstable), path, overwrite=True)
    assert summary.interrupted.startswith("RuntimeError: workers died") and summary.path is None and summary.written == 0
    assert pool.alive == 0
    assert digest(path) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["s.h5"]


def test_ctrl_c_during_a_write_is_held_until_the_batch_is_written(tmp_path, problem, monkeypatch, python_sigint):
    from pdebench.io.trajectory_file import TrajectoryWriter

    real_append = TrajectoryWriter.append

    def append_hit_by_ctrl_c(self, traj):
        os.kill(os.getpid(), signal.SIGINT)  # arrives as the write starts
        for _ in range(1000):  # Python runs signal handlers between bytecodes: here, unless held
            pass
        real_append(self, traj)

    monkeypatch.setattr(TrajectoryWriter, "append", append_hit_by_ctrl_c)
    batches = fake_batches(problem, 3, [np.arange(0, 3), np.arange(3, 6)])
    summary = spill_stream(batches, problem, tmp_path / "s.h5")
    assert summary.interrupted == "KeyboardInterrupt" and summary.written == 3
    assert sorted(rows_by_id(tmp_path / "s.h5")) == [(3, i) for i in range(3)]
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def _spin() -> None:
    for _ in range(1000):  # the Python-level handler runs between bytecodes
        pass


def test_held_sigint_delivers_after_the_block_or_swallows_one(python_sigint):
    reached = False
    with pytest.raises(KeyboardInterrupt):
        with _HeldSigint("raise") as held:
            try:
                os.kill(os.getpid(), signal.SIGINT)
                _spin()
            except KeyboardInterrupt:
                pytest.fail("SIGINT was not held")
            reached = held.pending == 1
    assert reached
    try:
        with _HeldSigint("swallow") as held:
            os.kill(os.getpid(), signal.SIGINT)
            _spin()
    except KeyboardInterrupt:
        pytest.fail("the first SIGINT while finishing was not swallowed")
    assert held.pending == 1
    with pytest.raises(KeyboardInterrupt):
        with _HeldSigint("swallow"):
            os.kill(os.getpid(), signal.SIGINT)
            _spin()
            os.kill(os.getpid(), signal.SIGINT)
            _spin()
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_a_write_error_discards_the_file_and_propagates(tmp_path, problem):
    path = tmp_path / "s.h5"
    generate_dataset(problem, path, num_samples=2, seed=0, batch_size=2)
    before = digest(path)
    other = PROBLEMS.build("burgers1d", nx=32, n_out=4)

    def mixed():
        yield from fake_batches(problem, 0, [np.arange(2)])
        yield from fake_batches(other, 0, [np.arange(2, 4)])  # rows of another shape

    with pytest.raises(ValueError, match="shape"):
        spill_stream(mixed(), problem, path, overwrite=True)
    assert digest(path) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["s.h5"]


def test_bad_arguments_fail_before_a_worker_starts_or_a_file_is_created(tmp_path, problem, monkeypatch):
    def no_start(self):
        raise AssertionError("a worker was started")

    monkeypatch.setattr(LocalWorkerPool, "start", no_start)
    config = WorkerConfig("burgers1d", SMALL, batch_size=2, max_samples=4)
    with pytest.raises(FileNotFoundError, match="missing"):
        spill_stream(LocalWorkerPool(config), problem, tmp_path / "missing" / "s.h5")
    with pytest.raises(ValueError, match="the pool solves"):
        spill_stream(LocalWorkerPool(config), PROBLEMS.build("burgers1d", nx=32), tmp_path / "s.h5")
    with pytest.raises(ValueError, match="num_samples must be an integer >= 1, got 0"):
        spill_stream(LocalWorkerPool(config), problem, tmp_path / "s.h5", num_samples=0)
    assert list(tmp_path.iterdir()) == []
    (tmp_path / "s.h5").write_bytes(b"previous")
    with pytest.raises(FileExistsError, match="already exists"):
        spill_stream(LocalWorkerPool(config), problem, tmp_path / "s.h5")
    assert (tmp_path / "s.h5").read_bytes() == b"previous" and len(list(tmp_path.iterdir())) == 1


def test_a_streamed_file_carries_the_certificate_of_every_batch(tmp_path, problem):
    """Workers' batches carry their solve's error estimate: the streamed file states the largest
    estimate per frame over its batches, as a generated file of the same rows does."""
    blocks = [np.arange(0, 2), np.arange(2, 4)]
    spill_stream(fake_batches(problem, 2, blocks), problem, tmp_path / "s.h5")
    batches = [solve_samples(problem, build_solver(problem), 2, b).provenance["error_estimate"] for b in blocks]
    with h5py.File(tmp_path / "s.h5") as s:
        stored = json.loads(s.attrs["provenance.error_estimate"])
    expected = np.maximum(*(np.asarray(b["time_per_frame"]) for b in batches))
    assert stored["rtol"] == 1e-6 and np.array_equal(stored["time_per_frame"], expected)
    assert max(stored["time_per_frame"]) <= 1e-6 and stored["time_max"] == expected.max()
