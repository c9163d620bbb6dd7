"""The `pdebench` console script: generation end to end, determinism, and refusal of bad input."""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch

from pdebench.cli import main
from pdebench.data.generate import build_solver, solve_samples
from pdebench.io.trajectory_file import read_trajectories
from pdebench.problems import PROBLEMS
from tests.cli_runs import pdebench_in_process
from tests.signal_dispositions import default_signals

SMALL = ["--set", "nx=64", "--set", "n_out=4", "--set", "nu=0.05"]


def generate(path: Path, *extra: str, n: int = 6) -> int:
    return main(["generate", "burgers1d", "-n", str(n), "--seed", "11", "-o", str(path), "--batch-size", "4", *SMALL, *extra])


def test_generate_writes_a_pdebench_layout_file(tmp_path):
    path = tmp_path / "b.h5"
    assert generate(path) == 0
    with h5py.File(path) as f:
        assert f["tensor"].shape == (6, 5, 64) and f["tensor"].dtype == np.float32
        assert f["x-coordinate"].shape == (64,) and f["t-coordinate"].shape == (5,)
        assert f.attrs["Nu"] == 0.05 and f.attrs["provenance.solver"] == "spectral"
        assert f["sample_ids"][:].tolist() == [[11, i] for i in range(6)]


def test_same_command_twice_gives_identical_data_and_rows_regenerate_alone(tmp_path):
    a, b = tmp_path / "a.h5", tmp_path / "b.h5"
    assert generate(a) == 0 and generate(b) == 0
    first, second = read_trajectories(a), read_trajectories(b)
    assert torch.equal(first.fields["u"], second.fields["u"])
    problem = PROBLEMS.build("burgers1d", nx=64, n_out=4, nu=0.05)
    alone = solve_samples(problem, build_solver(problem), seed=11, indices=np.array([4]))
    assert torch.equal(alone.fields["u"].float(), first.fields["u"][4:5])


def file_digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.mark.parametrize(
    "argv, message",
    [
        (["generate", "burgerz", "-n", "2", "-o", "{out}"], "unknown problem 'burgerz'; valid problems: advection1d, burgers1d"),
        (["generate", "burgers1d", "-n", "2", "-o", "{out}", "--set", "nu=-0.1"], "nu (viscosity) must be positive, got -0.1"),
        (["generate", "burgers1d", "-n", "0", "-o", "{out}"], "num_samples must be an integer >= 1, got 0"),
        (["generate", "burgers1d", "-n", "2", "-o", "{out}", "--set", "viscosity=1"], "has no argument 'viscosity'; valid arguments:"),
        (["generate", "burgers1d", "-n", "2", "-o", "{out}", "--set", "nu=fast"], "cannot use nu=fast: expected float"),
        (["generate", "burgers1d", "-n", "2", "-o", "{missing}/x.h5"], "folder"),
        (["generate", "darcy2d", "-n", "2", "-o", "{out}", "--solver-set", "method=amg"],
         "cannot use method=amg: expected one of 'auto', 'direct', 'amg-pcg', 'skr'"),
        (["generate", "burgers1d", "-n", "2", "-o", "{out}", "--solver-set", "dt=-1"], "dt must be positive, got -1"),
        (["generate", "darcy3d", "-n", "2", "-o", "{out}", "--set", "resolution=4"], "resolution must be an integer >= 5, got 4"),
        (["generate", "darcy3d", "-n", "2", "-o", "{out}", "--solver-set", "tol=2"], "tol must be in (0, 1), got 2"),
        (["generate", "darcy3d", "-n", "2", "-o", "{out}", "--solver-set", "method=lu"],
         "cannot use method=lu: expected one of 'auto', 'direct', 'amg-pcg', 'ic0-pcg', 'pcg'"),
        (["generate", "burgers1d", "-n", "2", "-o", "{out}", "--set", "nu=0.001", "--solver-set", "dt=0.5"],
         "burgers1d: dt=0.5 exceeds the stability limit"),
    ],
)
def test_bad_input_is_a_one_line_error_with_exit_code_2_and_nothing_written(tmp_path, capsys, argv, message):
    out = tmp_path / "x.h5"
    argv = [a.format(out=out, missing=tmp_path / "missing") for a in argv]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("pdebench: error:") and message in err and "\n" not in err
    assert list(tmp_path.iterdir()) == []


def test_generate_darcy3d_writes_the_darcy_layout_in_3d_with_per_sample_iterations(tmp_path):
    path = tmp_path / "d3.h5"
    argv = ["generate", "darcy3d", "-n", "3", "--seed", "2", "-o", str(path), "--batch-size", "2", "--set", "resolution=8",
            "--solver-set", "method=amg-pcg"]
    assert main(argv) == 0
    with h5py.File(path) as f:
        assert f["nu"].shape == (3, 8, 8, 8) and f["tensor"].shape == (3, 1, 8, 8, 8)
        assert f["z-coordinate"].shape == (8,) and f.attrs["provenance.solver"] == "fv-elliptic"
    stored = read_trajectories(path)
    problem = PROBLEMS.build("darcy3d", resolution=8)
    alone = solve_samples(problem, build_solver(problem, method="amg-pcg"), seed=2, indices=np.array([2]))
    assert torch.equal(alone.fields["tensor"].float(), stored.fields["tensor"][2:3])
    assert stored.provenance["method"] == "amg-pcg" and len(stored.provenance["iterations_per_sample"]) == 3
    assert stored.provenance["iterations_per_sample"][2] == alone.provenance["iterations_per_sample"][0]
    assert main(["plot", str(path), "--field", "tensor", "-o", str(tmp_path / "d3.png")]) == 0  # the mid-plane z = Z // 2
    assert (tmp_path / "d3.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_existing_output_is_kept_without_overwrite(tmp_path, capsys):
    path = tmp_path / "b.h5"
    assert generate(path) == 0
    before = file_digest(path)
    assert generate(path, n=3) == 2
    assert "already exists" in capsys.readouterr().err
    assert file_digest(path) == before
    assert generate(path, "--overwrite", n=3) == 0
    assert read_trajectories(path).num_samples == 3


def test_killed_generation_leaves_no_file_under_the_final_name(tmp_path):
    path = tmp_path / "big.h5"
    cmd = [sys.executable, "-m", "pdebench", "generate", "burgers1d", "-n", "100000", "-o", str(path), "--batch-size", "8", *SMALL]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 60
        while not any(p.name.startswith(".big.h5.tmp") for p in tmp_path.iterdir()):
            assert time.monotonic() < deadline and proc.poll() is None, "generation never started writing"
            time.sleep(0.05)
        time.sleep(1.0)  # let it append a few batches
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    assert not path.exists()


def test_list_plot_and_export(tmp_path, capsys):
    assert main(["list", "problems"]) == 0
    assert "ns2d_kolmogorov" in capsys.readouterr().out
    path = tmp_path / "b.h5"
    assert generate(path) == 0
    assert main(["plot", str(path), "-o", str(tmp_path / "b.png")]) == 0
    assert (tmp_path / "b.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert main(["export", str(path), "--format", "netcdf"]) == 0
    import xarray as xr

    with xr.open_dataset(tmp_path / "b.nc") as ds:
        np.testing.assert_array_equal(ds["u"].values, read_trajectories(path).fields["u"].numpy())


# ------------------------------------------------------------------------------------ pdebench stream
def stream(path: Path, *extra: str, n: int = 6) -> int:
    return main(["stream", "burgers1d", "-n", str(n), "--seed", "11", "-o", str(path), "--batch-size", "4", *SMALL, *extra])


def live(pids) -> list[int]:
    import psutil

    out = []
    for pid in pids:
        try:
            if psutil.Process(pid).status() != psutil.STATUS_ZOMBIE:
                out.append(pid)
        except psutil.NoSuchProcess:
            pass
    return out


def test_stream_spills_the_rows_generate_writes_with_every_index_once(tmp_path):
    streamed, generated = tmp_path / "s.h5", tmp_path / "g.h5"
    assert stream(streamed, "--workers", "2") == 0
    assert generate(generated) == 0
    with h5py.File(streamed) as s, h5py.File(generated) as g:
        assert set(s) == set(g) and s["tensor"].shape == g["tensor"].shape == (6, 5, 64)
        ids = [tuple(r) for r in s["sample_ids"][:].tolist()]
        assert sorted(ids) == [(11, i) for i in range(6)], "every index 0..n-1 exactly once"
        order = np.argsort(s["sample_ids"][:, 1])
        assert np.array_equal(s["tensor"][:][order], g["tensor"][:]), "rows differ from generate's, bit for bit"
        assert s.attrs["Nu"] == 0.05 and s.attrs["provenance.solver"] == "spectral"
        assert s.attrs["provenance.complete"] and s.attrs["provenance.backend"] == "local"


@pytest.mark.parametrize(
    "argv, message",
    [
        (["stream", "burgerz", "-n", "2", "-o", "{out}"], "unknown problem 'burgerz'"),
        (["stream", "burgers1d", "-n", "2", "-o", "{out}", "--set", "nu=-0.1"], "nu (viscosity) must be positive, got -0.1"),
        (["stream", "burgers1d", "-n", "0", "-o", "{out}"], "num_samples must be an integer >= 1, got 0"),
        (["stream", "burgers1d", "-n", "2", "-o", "{out}", "--seed", "-3"], "seed must be an integer >= 0, got -3"),
        (["stream", "burgers1d", "-n", "2", "-o", "{out}", "--batch-size", "0"], "batch_size must be an integer >= 1, got 0"),
        (["stream", "burgers1d", "-n", "2", "-o", "{out}", "--workers", "0"], "--workers must be >= 1, got 0"),
        (["stream", "burgers1d", "-n", "2", "-o", "{out}", "--threads", "0"], "--threads must be >= 1, got 0"),
        (["stream", "burgers1d", "-n", "2", "-o", "{out}", "--address", "10.1.2.3:6379"], "--address 10.1.2.3:6379 needs --backend ray"),
        (["stream", "burgers1d", "-n", "2", "-o", "{out}", "--set", "viscosity=1"], "has no argument 'viscosity'"),
        (["stream", "burgers1d", "-n", "2", "-o", "{out}", "--set", "nu=fast"], "cannot use nu=fast: expected float"),
        (["stream", "burgers1d", "-n", "2", "-o", "{out}", "--solver-set", "dt=-1"], "dt must be positive, got -1"),
        (["stream", "burgers1d", "-n", "2", "-o", "{out}", "--set", "nu=0.001", "--solver-set", "dt=0.5"],
         "burgers1d: dt=0.5 exceeds the stability limit"),
        (["stream", "burgers1d", "-n", "2", "-o", "{missing}/x.h5"], "folder"),
    ],
)
def test_stream_bad_input_is_a_one_line_error_before_any_worker_or_file(tmp_path, capsys, monkeypatch, argv, message):
    from pdebench.data import workers

    def no_start(self):
        raise AssertionError("a worker was started")

    monkeypatch.setattr(workers.LocalWorkerPool, "start", no_start)
    monkeypatch.setattr(workers.RayWorkerPool, "start", no_start)
    out = tmp_path / "x.h5"
    argv = [a.format(out=out, missing=tmp_path / "missing") for a in argv]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("pdebench: error:") and message in err and "\n" not in err
    assert list(tmp_path.iterdir()) == []


def test_stream_keeps_an_existing_file_without_overwrite(tmp_path, capsys):
    path = tmp_path / "s.h5"
    path.write_bytes(b"previous")
    assert stream(path) == 2
    assert "already exists" in capsys.readouterr().err
    assert path.read_bytes() == b"previous" and len(list(tmp_path.iterdir())) == 1


def test_stream_interrupted_keeps_the_received_samples_and_stops_the_workers(tmp_path, capsys, monkeypatch):
    from pdebench.data import workers

    real, pids = workers.LocalWorkerPool.batches, set()

    def batches(self, *args, **kwargs):
        for batch in real(self, *args, **kwargs):
            pids.update(self.pids)
            yield batch
            raise KeyboardInterrupt  # Ctrl-C after the first batch

    monkeypatch.setattr(workers.LocalWorkerPool, "batches", batches)
    path = tmp_path / "s.h5"
    assert stream(path, n=40) == 130
    err = capsys.readouterr().err.strip()
    assert err.startswith("pdebench: interrupted; kept the 4 of 40 samples received in") and "\n" not in err
    assert pids and not live(pids), "a worker outlived the interrupted stream"
    traj = read_trajectories(path)
    assert traj.num_samples == 4 and traj.provenance["complete"] is False
    problem = PROBLEMS.build("burgers1d", nx=64, n_out=4, nu=0.05)
    alone = solve_samples(problem, build_solver(problem), seed=11, indices=traj.sample_ids[:, 1])
    assert torch.equal(alone.fields["u"].float(), traj.fields["u"])
    assert [p.name for p in tmp_path.iterdir()] == ["s.h5"]


def test_sigint_to_a_stream_process_keeps_a_valid_file_and_leaves_no_worker(tmp_path):
    import threading

    import psutil

    path = tmp_path / "big.h5"
    cmd = [sys.executable, "-m", "pdebench", "-v", "stream", "burgers1d", "-n", "100000", "-o", str(path), "--batch-size", "4", *SMALL]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, preexec_fn=default_signals)
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(proc.stderr), daemon=True)
    reader.start()
    workers: list[int] = []
    try:
        deadline = time.monotonic() + 60
        while not any("appended" in line for line in lines):  # -v logs each batch written
            assert time.monotonic() < deadline and proc.poll() is None, "no batch was ever written"
            workers = workers or [c.pid for c in psutil.Process(proc.pid).children() if "spawn_main" in " ".join(c.cmdline())]
            time.sleep(0.05)
        workers = [c.pid for c in psutil.Process(proc.pid).children() if "spawn_main" in " ".join(c.cmdline())]
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    reader.join(timeout=10)
    err = "".join(lines)
    assert proc.returncode == 130, err
    assert workers and not live(workers), "a worker outlived the interrupted stream"
    assert [p.name for p in tmp_path.iterdir()] == ["big.h5"], "no file, or a temporary file left behind"
    traj = read_trajectories(path)
    assert traj.provenance["complete"] is False and traj.provenance["interrupted"] == "KeyboardInterrupt"
    assert traj.num_samples > 0 and len({tuple(r) for r in traj.sample_ids.tolist()}) == traj.num_samples
    assert f"kept the {traj.num_samples} of 100000 samples" in " ".join(err.split())


def test_stream_needs_exactly_one_destination_and_feeds_only_through_ray(tmp_path, monkeypatch, capsys):
    for args, message in ((["-n", "4"], "give exactly one destination"),
                          (["-n", "4", "-o", str(tmp_path / "a.h5"), "--feed", "x"], "give exactly one destination"),
                          (["-n", "4", "--feed", "x"], "--feed x publishes through Ray; add --backend ray")):
        result = pdebench_in_process(["stream", "burgers1d", *args], tmp_path, monkeypatch, capsys)
        assert result.returncode == 2 and message in result.stderr, result.stderr
    assert not list(tmp_path.iterdir())


def test_the_leaderboard_table_lists_the_solver_rungs_of_the_pareto_front_in_cost_order():
    """The printed table shows a task's models, then exactly the rungs that no cheaper rung beats
    (checked by hand: (1, 0.5), (2, 0.2) and (8, 0.05); (4, 0.3) is dominated, the failed rung is left out)."""
    from rich.console import Console

    from pdebench.evaluation.board_io import RICH, render_tables
    from pdebench.evaluation.boards import BOARDS

    def rung(name, cost, error, status="ok"):
        return {"task": "t", "kind": "solver", "name": name, "status": status, "cost_s": cost, "nrmse": error,
                "placement": None, "parameters": None, "train_time_s": None, "train_trajectories": None, "error": "boom"}

    rows = [rung("r4", 4.0, 0.3), rung("r8", 8.0, 0.05), rung("r1", 1.0, 0.5), rung("r2", 2.0, 0.2),
            rung("rx", 0.5, float("inf"), status="failed")]
    console = Console(record=True, width=200)
    document = {"suite": "board", "rows": rows, "environment": {"hardware": "cpu", "threads": 1, "git_revision": "x"}}
    console.print(render_tables(BOARDS["operator"].tables(document, RICH), "table", 200))
    text = console.export_text()
    names = [word for line in text.splitlines() for word in line.replace("│", " ").split()[:1] if word.startswith("r")]
    assert names == ["r1", "r2", "r8"], text
