"""Online training through the CLI: resume continues the stream, DDP ranks own disjoint shards,
and every way training stops (error, Ctrl-C) stops every worker."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import psutil
import pytest
import torch
import yaml

from tests.signal_dispositions import default_signals

ROOT = Path(__file__).resolve().parents[2]
CONFIG = ROOT / "configs" / "burgers1d" / "fno_online.yaml"
TINY = ["--data.init_args.problem_args", "{nx: 64, n_out: 1}", "--data.init_args.val_trajectories", "2",
        "--data.init_args.test_trajectories", "2", "--data.init_args.calibration_trajectories", "2",
        "--data.init_args.samples_per_epoch", "16", "--data.init_args.watermark", "4", "--data.init_args.capacity", "12",
        "--data.init_args.worker_batch_size", "2", "--data.init_args.batch_size", "4",
        "--model.model_args", "{n_modes: 4, hidden_channels: 8, n_layers: 1}", "--trainer.limit_val_batches", "1"]


def train(args: list[str], cwd: Path, expect: int = 0) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    result = subprocess.run([sys.executable, str(ROOT / "train.py"), "fit", "--config", str(CONFIG), *TINY, *args], cwd=cwd,
                            capture_output=True, text=True, timeout=300, env=env, preexec_fn=default_signals)
    assert result.returncode == expect, (result.stdout[-2000:], result.stderr[-4000:])
    return result


#: What Lightning, jsonargparse and torch printed on every fit before (issue 20): none of it may appear.
LIBRARY_NOISE = ("Unable to serialize instance", "💡 Tip:", "LeafSpec", "`IterableDataset` has `__len__` defined")


def stream_records(root: Path) -> list[dict]:
    return [json.loads(p.read_text()) for p in sorted(root.glob("outputs/**/stream/rank*.json"))]


def blocks(record: dict) -> set[tuple[int, int]]:
    return {tuple(b) for b in record["blocks"]}


def test_resumed_online_run_restores_the_reservoir_and_never_solves_a_drawn_block_again(tmp_path):
    fifo = ["--data.init_args.policy", "fifo"]  # every sample is used once: the resumed run must draw new ones
    output = train(["--trainer.max_epochs", "2", *fifo], tmp_path)
    printed = output.stdout + output.stderr
    assert not [noise for noise in LIBRARY_NOISE if noise in printed], printed[-4000:]
    (config,) = (tmp_path / "outputs").glob("**/config.yaml")  # the saved config names the atomic checkpoint I/O
    assert yaml.safe_load(config.read_text())["trainer"]["plugins"] == [
        {"class_path": "pdebench.training.checkpoint_io.AtomicCheckpointIO"}]
    checkpoint = tmp_path / "outputs" / "burgers1d_fno_online" / "checkpoints" / "last.ckpt"
    whole = torch.load(checkpoint, weights_only=True)
    saved, card = whole["OnlineDataModule"], whole["pdebench"]["data"]
    (first,) = stream_records(tmp_path)
    assert card["source"] == "online" and card["problem"] == "burgers1d" and card["resolution"] == [64]
    assert card["held_out_seeds"] == [1, 2, 3] and 0 < card["train_trajectories"] <= 2 * len(first["blocks"])
    rank = saved["ranks"][0]
    assert len(rank["reservoir"]["samples"]) == rank["reservoir"]["counters"]["received"] - rank["reservoir"]["counters"]["evicted"] - rank["reservoir"]["counters"]["removed"] > 0
    assert rank["cursor"] >= len(first["blocks"]) > 0
    train(["--trainer.max_epochs", "4", "--ckpt_path", str(checkpoint), *fifo], tmp_path)
    records = stream_records(tmp_path)
    assert len(records) == 2
    second = next(r for r in records if r is not first and r != first)
    assert not blocks(first) & blocks(second), "the resumed run solved a block the first run had drawn"
    assert min(b[0] for b in blocks(second)) >= rank["cursor"] * 2, "resumed below the saved cursor"
    assert second["received"] > rank["reservoir"]["counters"]["received"], "counters continue from the checkpoint"


@pytest.mark.parametrize("how, status", [("sigint", 130), ("sigterm", 143), ("error", 1)])
def test_an_interrupted_run_stops_every_worker_and_keeps_a_report_and_a_checkpoint(how, status, tmp_path):
    """Ctrl-C, SIGTERM (what schedulers send; it used to exit 0) and an error: exit non-zero, no worker
    survives, the stream report says the run was interrupted and why, and a resumable last.ckpt exists."""
    pid_file = tmp_path / "pids"
    callback = json.dumps([{"class_path": "tests.training.helpers.InterruptAtStep",
                            "init_args": {"step": 2, "how": how, "pid_file": str(pid_file)}}])
    result = train(["--trainer.max_epochs", "5", "--trainer.callbacks+", callback], tmp_path, expect=status)
    pids = [int(p) for p in pid_file.read_text().split()]
    assert pids, result.stderr[-2000:]
    gone, alive = psutil.wait_procs([psutil.Process(p) for p in pids if psutil.pid_exists(p)], timeout=5)
    assert not [p for p in alive if p.status() != psutil.STATUS_ZOMBIE]
    (record,) = stream_records(tmp_path)
    assert record["complete"] is False
    assert record["interrupted"] == {"sigint": "KeyboardInterrupt", "sigterm": "SIGTERM"}.get(how, record["interrupted"])
    assert record["interrupted"].startswith("RuntimeError") or how != "error"
    ranges = record["id_ranges"]
    count = lambda name: sum(stop - start for _, start, stop in ranges[name])  # noqa: E731
    assert count("drawn") == sum(count(k) for k in ("received", "dropped", "lost", "returned_unused")) > 0
    checkpoint = tmp_path / "outputs" / "burgers1d_fno_online" / "checkpoints" / "last.ckpt"
    assert torch.load(checkpoint, weights_only=True)["global_step"] >= 2
    if how == "sigterm":  # the saved run resumes
        train(["--trainer.max_epochs", "2", "--ckpt_path", str(checkpoint)], tmp_path)


def test_ddp_on_two_cpu_processes_gives_each_rank_its_own_shard_and_reservoir(tmp_path):
    train(["--trainer.strategy", "ddp", "--trainer.devices", "2", "--trainer.max_epochs", "2",
           "--data.init_args.num_workers", "2"], tmp_path)
    records = {r["rank"]: r for r in stream_records(tmp_path)}
    assert sorted(records) == [0, 1] and all(r["world_size"] == 2 for r in records.values())
    for rank, record in records.items():
        assert record["blocks"], f"rank {rank} received nothing"
        assert all((start // 2) % 2 == rank for start, _ in record["blocks"]), f"rank {rank} solved another rank's block"
        assert record["consumed"] >= 16 // 2
    assert not blocks(records[0]) & blocks(records[1])


def test_the_cli_trainer_writes_checkpoints_through_the_atomic_checkpoint_io(tmp_path, monkeypatch):
    """The plugin given as a class_path (so that config.yaml records it) still builds the atomic I/O."""
    from pdebench.training.checkpoint_io import AtomicCheckpointIO
    from pdebench.training.cli import main

    monkeypatch.chdir(tmp_path)  # the trainer's folders go here
    monkeypatch.setattr(sys, "argv", ["train.py"])
    cli = main(["--config", str(CONFIG), *TINY], run=False)
    assert type(cli.trainer.strategy.checkpoint_io) is AtomicCheckpointIO
