"""The kill drill: SIGTERM and SIGKILL at random points of ``stream``, ``generate`` and an online
``fit``, over several seeds. After each: no sample lost or duplicated among those received, every
drawn id accounted for (SIGTERM: the stop is orderly), no file under its final name unless complete,
no temporary file left once the next command has written into the folder, no process of the run left.

One SIGKILL'd stream runs in ``make test`` (what only this drill shows: a killed parent's workers
exit and its temporary file is swept); the rest is ``slow`` (``make test-all``), each of its stops
also covered by a cheaper test: tests/data/test_stream_signals.py, tests/training/test_online_stop.py,
tests/test_atomic.py.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from pdebench.io.trajectory_file import TrajectoryFile
from tests.processes import assert_no_orphans, assert_partition, expand, wait_for
from tests.signal_dispositions import default_signals
from tests.training.test_online_stop import StepMarker, assert_accounted, stream_records  # noqa: F401 - StepMarker by path
from tests.training.test_online_training import CONFIG, TINY

ROOT = Path(__file__).resolve().parents[1]
SMALL = ["--set", "nx=64", "--set", "n_out=4"]
COMMANDS = {
    "stream": ["-v", "stream", "burgers1d", "-n", "20000", "--workers", "2", "--batch-size", "8", *SMALL, "-o", "OUT.h5"],
    "generate": ["generate", "burgers1d", "-n", "20000", "--batch-size", "16", *SMALL, "-o", "OUT.h5"],
}
SIGNALS = {"SIGTERM": signal.SIGTERM, "SIGKILL": signal.SIGKILL}


def env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1", "COLUMNS": "200"}


def start(command: list[str], cwd: Path) -> tuple[subprocess.Popen, Path]:
    """``command`` in its own process group, SIGINT/SIGTERM at their defaults, stderr to a file."""
    err = cwd / "stderr.txt"
    process = subprocess.Popen(command, cwd=cwd, stdout=subprocess.DEVNULL, stderr=open(err, "w"), env=env(),
                               preexec_fn=default_signals, start_new_session=True)
    return process, err


def stop(process: subprocess.Popen, signum: int, delay: float) -> None:
    time.sleep(delay)
    process.send_signal(signum)
    try:
        process.wait(120)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


def temporaries(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.rglob(".*.tmp-*"))


def assert_the_next_write_leaves_no_temporary(folder: Path) -> None:
    """The next command that writes into ``folder`` sweeps what the stopped one left."""
    result = subprocess.run([sys.executable, "-m", "pdebench", "generate", "burgers1d", "-n", "2", "--set", "nx=32",
                             "--set", "n_out=1", "-o", "next.h5"], cwd=folder, env=env(), capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    assert temporaries(folder) == []


def assert_file_kept_right(out: Path, returncode: int, how: str, command: str, stderr: str) -> None:
    """A file under its final name is complete, or (a SIGTERM'd stream) the rows received, each once,
    with every drawn id accounted for."""
    if returncode == 0:  # finished before the signal
        with TrajectoryFile(out) as file:
            assert len(file) == 20000
        return
    if how == "SIGKILL" or command == "generate":
        assert not out.exists(), f"{out.name} appeared although the {command} was stopped by {how}"
        return
    assert returncode == 143, stderr[-3000:]
    if not out.exists():
        assert "no samples had arrived" in stderr, stderr[-3000:]
        return
    with TrajectoryFile(out) as file:
        prov, ids = file.provenance, [tuple(map(int, i)) for i in file.sample_ids()]
    assert len(ids) == len(set(ids)), "a sample was written twice"
    assert prov["complete"] is False and prov["interrupted"] == "SIGTERM"
    assert_partition(expand(prov["drawn_ranges"]), received=set(ids), lost=expand(prov["lost_ranges"]),
                     returned=expand(prov["returned_ranges"]), dropped=expand(prov["dropped_ranges"]))


def drill(command: str, how: str, seed: int, folder: Path) -> None:
    rng = random.Random(f"{command}-{how}-{seed}")
    process, err = start([sys.executable, "-m", "pdebench", *COMMANDS[command]], folder)
    try:
        if command == "stream":
            wait_for(lambda: "appended" in err.read_text() or process.poll() is not None, what="the first batch written")
        else:
            wait_for(lambda: temporaries(folder) or process.poll() is not None, what="the temporary file opened")
    finally:
        stop(process, SIGNALS[how], rng.uniform(0.0, 3.0))
    stderr = err.read_text()
    assert "Traceback" not in stderr, stderr[-3000:]
    assert_no_orphans(process.pid)
    assert_file_kept_right(folder / "OUT.h5", process.returncode, how, command, stderr)
    if how == "SIGTERM":
        assert temporaries(folder) == [], "a SIGTERM'd command left its temporary file"
    elif process.returncode != 0:
        assert temporaries(folder), "the SIGKILL struck no write in progress: the drill tested nothing"
    assert_the_next_write_leaves_no_temporary(folder)


CASES = [pytest.param(command, how, seed, marks=[] if (command, how, seed) == ("stream", "SIGKILL", 0) else [pytest.mark.slow])
         for command in COMMANDS for how in SIGNALS for seed in range(3)]


@pytest.mark.parametrize(("command", "how", "seed"), CASES)
def test_kill_drill_of_the_data_commands(command, how, seed, tmp_path):
    drill(command, how, seed, tmp_path)


@pytest.mark.slow
@pytest.mark.parametrize("seed", range(2))
@pytest.mark.parametrize("how", list(SIGNALS))
def test_kill_drill_of_an_online_fit(how, seed, tmp_path):
    rng = random.Random(f"fit-{how}-{seed}")
    marker = tmp_path / "step"
    callbacks = [{"class_path": "tests.training.test_online_stop.StepMarker", "init_args": {"path": str(marker)}}]
    command = [sys.executable, str(ROOT / "train.py"), "fit", "--config", str(CONFIG), *TINY, "--trainer.max_epochs", "50",
               "--trainer.callbacks+", json.dumps(callbacks)]
    process, err = start(command, tmp_path)
    try:
        wait_for(lambda: (marker.exists() and marker.read_text() != "") or process.poll() is not None, timeout=240,
                 what="the first training step")
    finally:
        stop(process, SIGNALS[how], rng.uniform(0.0, 4.0))
    stderr = err.read_text()
    assert_no_orphans(process.pid)
    checkpoints = sorted(tmp_path.glob("outputs/**/checkpoints/*.ckpt"))
    for path in checkpoints:  # whatever is under a final name loads
        assert isinstance(torch.load(path, map_location="cpu", weights_only=True)["state_dict"], dict)
    if how == "SIGTERM":
        assert process.returncode == 143, stderr[-4000:]
        (record,) = stream_records(tmp_path)
        assert record["complete"] is False and record["interrupted"] == "SIGTERM" and record["lost"] == 0
        assert_accounted(record)
        assert any(path.name == "last.ckpt" for path in checkpoints), stderr[-4000:]
        assert temporaries(tmp_path) == []
    else:
        assert process.returncode == -signal.SIGKILL
        for folder in {path.parent for path in tmp_path.rglob(".*.tmp-*")}:
            assert_the_next_write_leaves_no_temporary(folder)
        assert temporaries(tmp_path) == []
