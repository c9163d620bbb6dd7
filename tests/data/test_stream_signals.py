"""Streams and files under signals: SIGTERM keeps what arrived (as Ctrl-C does), generate and export
discard their temporary files, a stop is not a failure, and every drawn id is accounted for."""

from __future__ import annotations

import logging
import os
import queue
import signal
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest
import torch

from pdebench.cli import main
from pdebench.data.generate import build_solver, generate_dataset, solve_samples
from pdebench.io.trajectory_file import TrajectoryFile
from pdebench.data.spill import _HeldSigint, spill_stream
from pdebench.data.workers import WorkerConfig, as_ranges, make_worker_pool
from pdebench.problems import PROBLEMS
from pdebench.signals import Terminated, sigterm_interrupts
from tests.processes import assert_no_orphans, assert_partition, expand, wait_for
from tests.signal_dispositions import default_signals

# Ray clusters are heavy: every test module that starts one runs on the same xdist worker (make test: --dist loadgroup).
pytestmark = pytest.mark.xdist_group("ray")

ROOT = Path(__file__).resolve().parents[2]
SMALL = {"nx": 64, "n_out": 4}
STREAM = ["-v", "stream", "burgers1d", "-n", "4000", "--workers", "2", "--batch-size", "4", "--set", "nx=64", "--set", "n_out=4"]


def start_cli(args: list[str], cwd: Path) -> tuple[subprocess.Popen, Path]:
    """``python -m pdebench ARGS`` in its own session (process group), SIGINT/SIGTERM at their
    defaults, stderr into a file that the test polls."""
    err = cwd / "stderr.txt"
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1", "COLUMNS": "200"}
    process = subprocess.Popen([sys.executable, "-m", "pdebench", *args], cwd=cwd, stdout=subprocess.DEVNULL,
                               stderr=open(err, "w"), env=env, preexec_fn=default_signals, start_new_session=True)
    return process, err


def spawned_children(pid: int) -> list[int]:
    """Child processes of ``pid`` started by multiprocessing's spawn (the solver workers)."""
    out = []
    for path in Path(f"/proc/{pid}/task").glob("*/children"):
        try:
            out += [int(c) for c in path.read_text().split()]
        except OSError:
            pass
    workers = []
    for child in out:
        try:
            if b"spawn_main" in Path(f"/proc/{child}/cmdline").read_bytes():
                workers.append(child)
        except OSError:
            pass
    return workers


def maps_numpy(pid: int) -> bool:
    try:
        return b"numpy" in Path(f"/proc/{pid}/maps").read_bytes()
    except OSError:
        return False


def test_sigterm_keeps_the_received_rows_marked_incomplete_and_accounts_every_drawn_id(tmp_path):
    process, err = start_cli([*STREAM, "-o", "S.h5"], tmp_path)
    try:
        wait_for(lambda: "appended" in err.read_text(), what="the first batch written")
        process.send_signal(signal.SIGTERM)
        process.wait(60)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
    stderr = err.read_text()
    assert process.returncode == 143, stderr[-3000:]
    assert "terminated (SIGTERM); kept the" in stderr and "Traceback" not in stderr, stderr[-3000:]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["S.h5", "stderr.txt"], "a temporary file was left"
    with TrajectoryFile(tmp_path / "S.h5") as file:
        prov = file.provenance
        traj = file.read()
    ids = [tuple(map(int, i)) for i in traj.sample_ids]
    assert ids and len(ids) == len(set(ids))
    assert prov["complete"] is False and prov["interrupted"] == "SIGTERM" and prov["lost"] == 0
    assert_partition(expand(prov["drawn_ranges"]), received=set(ids), lost=expand(prov["lost_ranges"]),
                     returned=expand(prov["returned_ranges"]), dropped=expand(prov["dropped_ranges"]))
    problem = PROBLEMS.build("burgers1d", **SMALL)
    row = len(ids) // 2
    fresh = solve_samples(problem, build_solver(problem), ids[row][0], np.array([ids[row][1]]))
    assert torch.equal(traj.fields["u"][row], fresh.fields["u"][0].float())
    assert_no_orphans(process.pid)


@pytest.mark.parametrize("when", ["workers starting", "streaming"])
def test_a_ctrl_c_to_the_whole_process_group_prints_no_worker_traceback(when, tmp_path):
    process, err = start_cli([*STREAM, "-o", "S.h5"], tmp_path)
    try:
        if when == "workers starting":  # the workers' interpreters are up and importing numpy (then torch)
            wait_for(lambda: len([c for c in spawned_children(process.pid) if maps_numpy(c)]) >= 2,
                     what="two worker processes importing numpy")
        else:
            wait_for(lambda: "appended" in err.read_text(), what="the first batch written")
        os.killpg(process.pid, signal.SIGINT)  # a terminal's Ctrl-C reaches every process of the group
        process.wait(60)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
    stderr = err.read_text()
    assert process.returncode == 130, stderr[-3000:]
    assert "Traceback" not in stderr and "ConnectionResetError" not in stderr, stderr[-3000:]
    assert_no_orphans(process.pid)


class _SigtermGuard:
    """Where the code under test installs no SIGTERM handler, fail the test instead of killing pytest."""

    def __enter__(self):
        def unhandled(signum, frame):
            raise AssertionError("SIGTERM reached the test's guard: the command does not handle SIGTERM")

        self.previous = signal.signal(signal.SIGTERM, unhandled)
        return self

    def __exit__(self, *exc):
        signal.signal(signal.SIGTERM, self.previous)


def _sigterm_after(real):
    def hit(*args, **kwargs):
        result = real(*args, **kwargs)
        os.kill(os.getpid(), signal.SIGTERM)
        for _ in range(10000):  # the handler runs between bytecodes: here
            pass
        return result

    return hit


def test_sigterm_during_generate_removes_the_temporary_file_and_exits_143(tmp_path, monkeypatch, capsys):
    from pdebench.io.trajectory_file import TrajectoryWriter

    monkeypatch.setattr(TrajectoryWriter, "append", _sigterm_after(TrajectoryWriter.append))
    with _SigtermGuard():
        status = main(["generate", "burgers1d", "-n", "32", "--batch-size", "4", "--set", "nx=64", "--set", "n_out=2",
                       "-o", str(tmp_path / "G.h5")])
    assert status == 143
    assert "terminated (SIGTERM)" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == [], "generate left a file"


def test_sigterm_during_export_removes_the_temporary_file_and_exits_143(tmp_path, monkeypatch, capsys):
    import pdebench.data.export as export

    problem = PROBLEMS.build("burgers1d", nx=64, n_out=2)
    generate_dataset(problem, tmp_path / "G.h5", num_samples=8, seed=0, batch_size=8)
    monkeypatch.setattr(export, "_write_rows", _sigterm_after(export._write_rows))
    with _SigtermGuard():
        status = main(["export", str(tmp_path / "G.h5"), "-o", str(tmp_path / "G.nc")])
    assert status == 143
    assert "terminated (SIGTERM)" in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["G.h5"], "export left a file"


def test_held_block_delivers_a_sigterm_after_it_ends():
    with sigterm_interrupts():
        with pytest.raises(Terminated):
            with _HeldSigint("raise") as held:
                try:
                    os.kill(os.getpid(), signal.SIGTERM)
                    for _ in range(10000):
                        pass
                except KeyboardInterrupt:
                    pytest.fail("SIGTERM was not held")
                assert held.pending == 1
        with _HeldSigint("swallow") as held:  # finishing: the first one is swallowed
            os.kill(os.getpid(), signal.SIGTERM)
            for _ in range(10000):
                pass
        assert held.pending == 1


# ------------------------------------------------------------------ a stop is not a failure
@pytest.fixture(scope="module")
def ray_session(tmp_path_factory):
    ray = pytest.importorskip("ray")
    mp = pytest.MonkeyPatch()
    mp.setenv("RAY_AUTH_MODE", "disabled")
    started = not ray.is_initialized()
    if started:
        ray.init(num_cpus=2, include_dashboard=False, _temp_dir=str(tmp_path_factory.mktemp("ray")), logging_level="WARNING")
    yield ray
    if started:
        ray.shutdown()
    mp.undo()


@pytest.mark.parametrize("backend", ["local", "ray"])
def test_stopping_a_pool_while_another_thread_reads_it_loses_nothing_and_restarts_nothing(backend, request, caplog):
    """As the online data module stops: its feeder thread iterates ``batches()`` while the main
    thread calls ``stop()``."""
    if backend == "ray":
        request.getfixturevalue("ray_session")
    config = WorkerConfig("burgers1d", SMALL, seed=4, batch_size=4)
    pool = make_worker_pool(config, backend, num_workers=2).start()
    got: queue.Queue = queue.Queue()
    errors: list[BaseException] = []

    def feeder():
        try:
            for batch in pool.batches():
                got.put(batch)
        except BaseException as error:  # noqa: BLE001 - reported below
            errors.append(error)

    thread = threading.Thread(target=feeder)
    thread.start()
    received = [got.get(timeout=120) for _ in range(3)]
    with caplog.at_level(logging.WARNING, logger="pdebench.data.workers"):
        pool.stop()
        thread.join(30)
    while not got.empty():
        received.append(got.get())
    assert not thread.is_alive() and not errors, errors
    assert pool.restarts == 0 and pool.lost_ids == [], caplog.text
    assert "lost" not in caplog.text and "failed" not in caplog.text, caplog.text
    ids = {tuple(map(int, i)) for b in received for i in b.sample_ids}
    ranges = pool.id_ranges()
    assert expand(ranges["received"]) == ids
    assert pool.returned_ids, "blocks were in flight at the stop"
    assert_partition(expand(ranges["drawn"]), received=ids, returned=set(pool.returned_ids))


def test_after_a_killed_worker_and_a_stop_every_drawn_id_is_written_lost_or_returned(tmp_path):
    problem = PROBLEMS.build("burgers1d", **SMALL)
    config = WorkerConfig("burgers1d", SMALL, seed=2, batch_size=4, max_samples=4000)
    pool = make_worker_pool(config, "local", num_workers=2)
    real = pool.batches

    def batches(*args, **kwargs):
        for i, batch in enumerate(real(*args, **kwargs)):
            yield batch
            if i == 1:
                pool.kill_worker(pool.workers[0])
            if i == 6:
                raise KeyboardInterrupt

    pool.batches = batches
    summary = spill_stream(pool, problem, tmp_path / "s.h5")
    assert summary.interrupted == "KeyboardInterrupt" and summary.restarts == 1 and len(summary.lost_ids) == 4
    with TrajectoryFile(tmp_path / "s.h5") as file:
        ids = {tuple(map(int, i)) for i in file.read().sample_ids}
        prov = file.provenance
    assert len(ids) == summary.written
    drawn = expand(summary.drawn_ranges)
    assert_partition(drawn, received=ids, lost=set(summary.lost_ids), returned=set(summary.returned_ids),
                     dropped=set(summary.dropped_ids))
    assert summary.returned_ids, "blocks were in flight at the stop"
    assert prov["returned_ranges"] == as_ranges(summary.returned_ids) and prov["returned_unused"] == len(summary.returned_ids)
    assert expand(prov["drawn_ranges"]) == drawn and expand(prov["lost_ranges"]) == set(summary.lost_ids)
