"""Exact mid-epoch resume (the train loader's position is in the checkpoint), stale checkpoints refused by
``train.py test``, and ``last.ckpt`` always the newest run's."""

from __future__ import annotations

import json
import logging
import subprocess
import sys
from pathlib import Path

import lightning as L
import pytest
import torch
import yaml
from lightning.pytorch.callbacks import ModelCheckpoint
from torch.utils.data import DataLoader

from pdebench.data.datamodules import OfflineDataModule
from pdebench.data.generate import generate_dataset
from pdebench.problems import PROBLEMS
from pdebench.training.base import OptimConfig
from pdebench.training import OperatorModule
from pdebench.training.resume import MidEpochResumeCheck

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


class PlainLoaderData(OfflineDataModule):
    """The offline data module with a train loader that keeps no position (as the graph and mixture ones)."""

    def train_dataloader(self) -> DataLoader:
        return DataLoader(self.datasets["train"], batch_size=self.hparams.batch_size, shuffle=False)


def _fit(data: Path, folder: Path, max_steps: int, every_n_train_steps: int | None = None, ckpt_path: Path | None = None,
         kill_at: int | None = None, data_class: type[OfflineDataModule] = OfflineDataModule) -> L.Trainer:
    L.seed_everything(7)
    module = OperatorModule(model="fno", model_args={"n_modes": 4, "hidden_channels": 4, "n_layers": 1}, optim=OptimConfig(lr=3e-3), input_noise=0.01)
    datamodule = data_class(str(data), task="initial_to_final", batch_size=2, train_fraction=0.75, val_fraction=0.125)
    callbacks = [ModelCheckpoint(dirpath=folder, save_last=True, every_n_train_steps=every_n_train_steps, save_top_k=0)] \
        if every_n_train_steps else []
    callbacks.append(MidEpochResumeCheck())
    callbacks += [KillAtStep(kill_at)] if kill_at is not None else []
    trainer = L.Trainer(accelerator="cpu", max_steps=max_steps, max_epochs=-1, deterministic=True, logger=False,
                        enable_progress_bar=False, enable_model_summary=False, limit_val_batches=0,
                        enable_checkpointing=bool(every_n_train_steps), callbacks=callbacks, default_root_dir=folder)
    trainer.fit(module, datamodule=datamodule, ckpt_path=ckpt_path)
    return trainer


def test_mid_epoch_checkpoint_resumes_bitwise_equal(burgers_files, tmp_path, caplog):
    # 9 training trajectories, batch 2: 5 batches an epoch; killed after 7 steps = epoch 1, batch 2 of 5
    data = burgers_files[64]
    full = _fit(data, tmp_path / "full", max_steps=12)
    with pytest.raises(Killed):
        _fit(data, tmp_path / "stopped", max_steps=12, every_n_train_steps=1, kill_at=7)
    saved = torch.load(tmp_path / "stopped" / "last.ckpt", weights_only=True)
    assert (saved["epoch"], saved["global_step"]) == (1, 7)
    with caplog.at_level(logging.WARNING, logger="pdebench.training.resume"):
        resumed = _fit(data, tmp_path / "resumed", max_steps=12, ckpt_path=tmp_path / "stopped" / "last.ckpt")
    assert resumed.global_step == full.global_step == 12
    assert "resumed mid-epoch" not in caplog.text
    a, b = full.lightning_module.state_dict(), resumed.lightning_module.state_dict()
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a), max((a[k] - b[k]).abs().max().item() for k in a if a[k].is_floating_point())
    assert saved["loops"]["fit_loop"]["state_dict"]["combined_loader"][0]["batches_done"] == 2



@pytest.mark.parametrize("num_workers", [0, 2])
def test_train_loader_resumes_after_the_batches_it_handed_out(num_workers, burgers_files):
    """Worker loaders draw batches ahead: the position counts those handed out, and a restored loader
    goes on with the next one."""

    def loader():
        datamodule = OfflineDataModule(str(burgers_files[64]), task="initial_to_final", batch_size=2, num_workers=num_workers)
        datamodule.setup("fit")
        train = datamodule.train_dataloader()
        train.batch_sampler.sampler.set_epoch(3)
        return train

    first = loader()
    whole = [x for x, _ in first]
    batches = iter(first)
    handed = [next(batches)[0] for _ in range(2)]
    state = first.state_dict()
    del batches
    assert state["epoch"] == 3 and state["batches_done"] == 2
    second = loader()
    second.load_state_dict(state)
    rest = [x for x, _ in second]
    assert len(handed) + len(rest) == len(whole)
    assert all(torch.equal(a, b) for a, b in zip(handed + rest, whole))


def test_a_loader_position_of_other_batches_is_not_followed(burgers_files, caplog):
    datamodule = OfflineDataModule(str(burgers_files[64]), task="initial_to_final", batch_size=2)
    datamodule.setup("fit")
    train = datamodule.train_dataloader()
    with caplog.at_level(logging.WARNING, logger="pdebench.data.datamodules"):
        train.load_state_dict({**train.state_dict(), "batches_done": 2, "batches_per_epoch": 9})
    assert "cannot resume mid-epoch exactly: the checkpoint's train loader had batches_per_epoch 9, this one has 5" in caplog.text
    assert len(list(train)) == len(train) == 5


@pytest.mark.parametrize("case", ["stateless loader", "checkpoint without position"])
def test_mid_epoch_resume_without_a_loader_position_warns(case, burgers_files, tmp_path, caplog):
    data, stopped = burgers_files[64], tmp_path / "stopped" / "last.ckpt"
    data_class = PlainLoaderData if case == "stateless loader" else OfflineDataModule
    with pytest.raises(Killed):
        _fit(data, stopped.parent, max_steps=8, every_n_train_steps=1, kill_at=7, data_class=data_class)
    if case == "checkpoint without position":  # as written before loader positions were saved
        saved = torch.load(stopped, weights_only=True)
        del saved["loops"]["fit_loop"]["state_dict"]["combined_loader"]
        torch.save(saved, stopped)
    with caplog.at_level(logging.WARNING, logger="pdebench.training.resume"):
        _fit(data, tmp_path / "resumed", max_steps=8, ckpt_path=stopped, data_class=data_class)
    why = ("its train loader (DataLoader) does not restore its position in the epoch" if case == "stateless loader"
           else "the checkpoint holds no train loader position")
    assert f"resumed mid-epoch (epoch 1, after 2 batches) but {why}" in caplog.text
    assert "not bitwise equal" in caplog.text


TINY_RUN = ["--trainer.max_epochs", "1", "--trainer.limit_train_batches", "2", "--trainer.limit_val_batches", "1",
            "--trainer.limit_test_batches", "1", "--trainer.enable_model_summary", "false",
            "--model.init_args.model_args", "{n_modes: 4, hidden_channels: 4, n_layers: 1}"]
FNO = str(ROOT / "configs" / "burgers1d" / "fno.yaml")


def train_py(args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(ROOT / "train.py"), *args], cwd=cwd, capture_output=True, text=True, timeout=300)


@pytest.fixture(scope="module")
def two_fits(burgers_files, tmp_path_factory) -> Path:
    """The README's ``fit`` of configs/burgers1d/fno.yaml run twice in one folder: on the 32-point file,
    then on the 64-point one."""
    folder = tmp_path_factory.mktemp("runs")
    for nx in (32, 64):
        result = train_py(["fit", "--config", FNO, "--data.init_args.path", str(burgers_files[nx]), *TINY_RUN], folder)
        assert result.returncode == 0, result.stderr[-3000:]
    return folder


def test_a_second_fit_into_the_same_folder_leaves_last_ckpt_its_own(two_fits):
    checkpoints = two_fits / "outputs" / "burgers1d_fno" / "checkpoints"
    assert not list(checkpoints.glob("*-v*.ckpt")), sorted(p.name for p in checkpoints.iterdir())
    assert torch.load(checkpoints / "last.ckpt", weights_only=True)["pdebench"]["data"]["resolution"] == [64]


@pytest.mark.parametrize("subcommand", ["test", "validate"])
def test_test_and_validate_refuse_a_checkpoint_trained_on_other_data(subcommand, two_fits, burgers_files):
    last = "outputs/burgers1d_fno/checkpoints/last.ckpt"
    result = train_py([subcommand, "--config", FNO, "--data.init_args.path", str(burgers_files[32]), *TINY_RUN,
                       "--ckpt_path", last], two_fits)
    assert result.returncode == 2, result.stderr[-3000:]
    errors = [line for line in result.stderr.splitlines() if "error" in line.lower() or "Traceback" in line]
    assert errors == [f"train.py: error: {last}: trained on resolution [64], but this run's data "
                      f"(file:{burgers_files[32]}) needs [32]"], result.stderr[-3000:]
    assert "test_nrmse" not in result.stdout and "val_loss" not in result.stdout


def test_the_demo_writes_last_ckpt_without_a_version_counter(monkeypatch, tmp_path):
    from pdebench import cli

    commands = []

    def run(command, **kwargs):
        commands.append(command)
        return subprocess.CompletedProcess(command, 1)

    monkeypatch.setattr(subprocess, "run", run)
    with pytest.raises(RuntimeError, match="training .* failed"):
        cli.cmd_demo(cli.build_parser().parse_args(["demo", "--output-dir", str(tmp_path)]), cli.Console(quiet=True))
    callbacks = json.loads(commands[0][commands[0].index("--trainer.callbacks") + 1])
    (checkpoint,) = [c for c in callbacks if c["class_path"].endswith("ModelCheckpoint")]
    assert checkpoint["init_args"]["enable_version_counter"] is False


def test_every_config_checkpoint_disables_the_version_counter():
    for config in sorted((ROOT / "configs").glob("**/*.yaml")):
        callbacks = (yaml.safe_load(config.read_text()).get("trainer") or {}).get("callbacks") or []
        for callback in callbacks:
            if callback["class_path"].endswith("ModelCheckpoint"):
                assert callback["init_args"].get("enable_version_counter") is False, config
