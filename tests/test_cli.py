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
from pdebench.data.hdf5 import read_trajectories
from pdebench.problems import PROBLEMS

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
        (["generate", "burgers1d", "-n", "2", "-o", "{out}", "--solver-set", "dt=-1"], "dt must be positive, got -1"),
    ],
)
def test_bad_input_is_a_one_line_error_with_exit_code_2_and_nothing_written(tmp_path, capsys, argv, message):
    out = tmp_path / "x.h5"
    argv = [a.format(out=out, missing=tmp_path / "missing") for a in argv]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("pdebench: error:") and message in err and "\n" not in err
    assert list(tmp_path.iterdir()) == []


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
