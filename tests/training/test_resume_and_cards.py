"""Exact mid-epoch resume (the train loader's position is in the checkpoint), stale checkpoints refused by
``train.py test``, and ``last.ckpt`` always the newest run's."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import lightning as L
import pytest
import torch
from lightning.pytorch.callbacks import ModelCheckpoint

from pdebench.data.datamodules import OfflineDataModule
from pdebench.data.generate import generate_dataset
from pdebench.problems import PROBLEMS
from pdebench.training import OperatorModule

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def burgers_files(tmp_path_factory) -> dict[str, Path]:
    """Two tiny burgers1d files that differ in resolution (64 and 32 points)."""
    folder = tmp_path_factory.mktemp("data")
    paths = {}
    for nx in (64, 32):
        paths[nx] = folder / f"burgers{nx}.h5"
        generate_dataset(PROBLEMS.build("burgers1d", nx=nx, n_out=1, nu=0.1), paths[nx], num_samples=12, seed=3, batch_size=12)
    return paths


class Killed(Exception):
    """Stands for a SIGKILL: the run ends where it is, with the checkpoints it has written."""


class KillAtStep(L.Callback):
    """End the run when global step ``step`` is about to start (after the previous step's checkpoint)."""

    def __init__(self, step: int) -> None:
        self.step = step

    def on_train_batch_start(self, trainer: L.Trainer, pl_module: L.LightningModule, batch, batch_idx: int) -> None:
        if trainer.global_step == self.step:
            raise Killed


def _fit(data: Path, folder: Path, max_steps: int, every_n_train_steps: int | None = None, ckpt_path: Path | None = None,
         kill_at: int | None = None) -> L.Trainer:
    L.seed_everything(7)
    module = OperatorModule(model="fno", model_args={"n_modes": 4, "hidden_channels": 4, "n_layers": 1}, lr=3e-3, input_noise=0.01)
    datamodule = OfflineDataModule(str(data), task="initial_to_final", batch_size=2, train_fraction=0.75, val_fraction=0.125)
    callbacks = [ModelCheckpoint(dirpath=folder, save_last=True, every_n_train_steps=every_n_train_steps, save_top_k=0)] \
        if every_n_train_steps else []
    callbacks += [KillAtStep(kill_at)] if kill_at is not None else []
    trainer = L.Trainer(accelerator="cpu", max_steps=max_steps, max_epochs=-1, deterministic=True, logger=False,
                        enable_progress_bar=False, enable_model_summary=False, limit_val_batches=0,
                        enable_checkpointing=bool(every_n_train_steps), callbacks=callbacks, default_root_dir=folder)
    trainer.fit(module, datamodule=datamodule, ckpt_path=ckpt_path)
    return trainer


def test_mid_epoch_checkpoint_resumes_bitwise_equal(burgers_files, tmp_path):
    # 9 training trajectories, batch 2: 5 batches an epoch; killed after 7 steps = epoch 1, batch 2 of 5
    data = burgers_files[64]
    full = _fit(data, tmp_path / "full", max_steps=12)
    with pytest.raises(Killed):
        _fit(data, tmp_path / "stopped", max_steps=12, every_n_train_steps=1, kill_at=7)
    saved = torch.load(tmp_path / "stopped" / "last.ckpt", weights_only=True)
    assert (saved["epoch"], saved["global_step"]) == (1, 7)
    resumed = _fit(data, tmp_path / "resumed", max_steps=12, ckpt_path=tmp_path / "stopped" / "last.ckpt")
    assert resumed.global_step == full.global_step == 12
    a, b = full.lightning_module.state_dict(), resumed.lightning_module.state_dict()
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a), max((a[k] - b[k]).abs().max().item() for k in a if a[k].is_floating_point())
    assert saved["loops"]["fit_loop"]["state_dict"]["combined_loader"][0]["batches_done"] == 2
