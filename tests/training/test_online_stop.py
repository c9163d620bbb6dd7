"""An online fit that is stopped (SIGTERM, Ctrl-C, an error) writes its stream report marked
interrupted and a resumable checkpoint, exits non-zero and leaves no worker behind; a clean run's
report counts nothing lost; validation and test metrics under DDP are those of the whole held-out set."""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import lightning as L
import pytest
import torch

from tests.processes import assert_no_orphans, expand
from tests.signal_dispositions import default_signals
from tests.training.test_online_training import CONFIG, ROOT, TINY

OUT = Path("outputs") / "burgers1d_fno_online"


class StepMarker(L.Callback):
    """Write the global step to ``path`` after every training batch (what the tests poll)."""

    def __init__(self, path: str) -> None:
        self.path = path

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx: int) -> None:
        Path(self.path).write_text(str(trainer.global_step))


def fit_command(args: list[str]) -> list[str]:
    return [sys.executable, str(ROOT / "train.py"), "fit", "--config", str(CONFIG), *TINY, *args]


def env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}


def assert_accounted(record: dict) -> None:
    """Every id the rank's pool drew is received, dropped, lost or returned unused, exactly once."""
    ranges = record["id_ranges"]
    parts = {name: expand(ranges[name]) for name in ("received", "dropped", "lost", "returned_unused")}
    total = sum(len(p) for p in parts.values())
    assert total == len(set().union(*parts.values())), "an id is in two of received, dropped, lost, returned"
    assert set().union(*parts.values()) == expand(ranges["drawn"]), "a drawn id is unaccounted"
    blocks = {(0, i) for start, stop in record["blocks"] for i in range(start, stop)}  # what the feeder got
    assert parts["received"] | parts["dropped"] == blocks


def stream_records(root: Path) -> list[dict]:
    return [json.loads(p.read_text()) for p in sorted(root.glob("outputs/**/stream/rank*.json"), key=os.path.getmtime)]


def test_a_sigterm_from_outside_stops_the_fit_at_a_step_leaves_no_process_and_the_checkpoint_resumes(tmp_path):
    """A scheduler's SIGTERM (sent by another process, while the workers run): exit 143, the report
    marked interrupted with every drawn id accounted, no process of the run's group left, and the
    resumed run never draws an id the stopped one drew. (Ctrl-C and an error:
    tests/training/test_online_training.py.)"""
    marker = tmp_path / "step"
    callbacks = [{"class_path": "tests.training.test_online_stop.StepMarker", "init_args": {"path": str(marker)}}]
    process = subprocess.Popen(fit_command(["--trainer.max_epochs", "50", "--trainer.callbacks+", json.dumps(callbacks)]),
                               cwd=tmp_path, env=env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                               preexec_fn=default_signals, start_new_session=True)
    try:
        deadline = time.monotonic() + 240
        while not (marker.exists() and marker.read_text() and int(marker.read_text()) >= 2):
            assert process.poll() is None and time.monotonic() < deadline, "the fit never reached step 2"
            time.sleep(0.05)
        process.send_signal(signal.SIGTERM)
        _, stderr = process.communicate(timeout=120)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
    assert process.returncode == 143, stderr[-4000:]
    assert_no_orphans(process.pid)
    (record,) = stream_records(tmp_path)
    assert record["complete"] is False and record["interrupted"] == "SIGTERM"
    assert record["lost"] == 0 and record["worker_restarts"] == 0, "a stop was taken for a failure"
    assert_accounted(record)
    checkpoint = tmp_path / OUT / "checkpoints" / "last.ckpt"
    assert checkpoint.is_file(), stderr[-4000:]
    stopped_epoch = torch.load(checkpoint, map_location="cpu", weights_only=True)["epoch"]  # 0 .. 2: where SIGTERM landed
    resumed = subprocess.run(fit_command(["--trainer.max_epochs", str(stopped_epoch + 1), "--ckpt_path", str(checkpoint)]), cwd=tmp_path,
                             env=env(), capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr[-4000:]
    first, second = stream_records(tmp_path)
    assert second["complete"] is True and second["interrupted"] == "" and second["lost"] == 0
    assert not expand(first["id_ranges"]["drawn"]) & expand(second["id_ranges"]["drawn"]), \
        "the resumed run drew an id the stopped run had drawn"
    assert_accounted(second)


def metrics(path: Path) -> dict[str, float]:
    """The last logged value of every metric in a CSVLogger's metrics.csv."""
    out: dict[str, float] = {}
    with open(path) as handle:
        for row in csv.DictReader(handle):
            out.update({k: float(v) for k, v in row.items() if v not in ("", None) and k not in ("epoch", "step")})
    return out


def test_ddp_validation_and_test_metrics_are_those_of_the_whole_held_out_set(tmp_path):
    """3 held-out trajectories on 2 ranks: DistributedSampler pads rank 1 with a repeat of sample 0.
    The model is the seeded, untrained one (``seed_everything: 0``): the same in every run."""
    held_out = ["--data.init_args.val_trajectories", "3", "--data.init_args.test_trajectories", "3",
                "--trainer.limit_val_batches", "1.0", "--data.init_args.batch_size", "2"]
    got = {}
    for devices in (1, 2):
        for stage in ("validate", "test"):
            logger = json.dumps({"class_path": "lightning.pytorch.loggers.CSVLogger",
                                 "init_args": {"save_dir": str(tmp_path / "csv"), "name": f"{stage}{devices}", "version": 0}})
            command = [sys.executable, str(ROOT / "train.py"), stage, "--config", str(CONFIG), *TINY, *held_out,
                       "--trainer.logger", logger, "--trainer.callbacks", "[]"]  # the seeded untrained model
            if devices == 2:
                command += ["--trainer.strategy", "ddp", "--trainer.devices", "2"]
            result = subprocess.run(command, cwd=tmp_path, env=env(), capture_output=True, text=True, timeout=300)
            assert result.returncode == 0, result.stderr[-4000:]
            assert "sync_dist" not in result.stderr, result.stderr[-4000:]
            got[(stage, devices)] = metrics(tmp_path / "csv" / f"{stage}{devices}" / "version_0" / "metrics.csv")
    for stage, names in (("validate", ("val_loss", "val_nrmse")), ("test", ("test_nrmse", "test_rmse", "test_max_error"))):
        one, two = got[(stage, 1)], got[(stage, 2)]
        for name in names:
            assert name in one and name in two, (stage, name, one, two)
            assert two[name] == pytest.approx(one[name], rel=1e-5), f"{stage} {name}: 2 ranks {two[name]}, 1 process {one[name]}"
