"""Lightning CLI training end to end: every config runs, checkpoints rebuild and resume bitwise."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from pdebench.data.generate import generate_dataset
from pdebench.training.module_classes import training_module_class
from pdebench.problems import PROBLEMS
from pdebench.training import OperatorModule
from tests.training.helpers import train_cli, train_cli_each

ROOT = Path(__file__).resolve().parents[2]
# leaderboard suites, pre-training mixtures (tests/training/test_finetune.py) and physics runs
# (tests/training/test_physics_cli.py), DCDM runs (tests/training/test_dcdm_fit.py) and learned-IC runs
# (tests/training/test_learned_ic_fit.py) are not train.py configs of one data file
# MP-PDE configs at nx 100 and 40 differ from the nx 50 one only in paths (checked below): nx 50 trains
CONFIGS = sorted(p for p in (ROOT / "configs").glob("*/*.yaml")
                 if "_online" not in p.stem and p.parent.name not in ("leaderboard", "pretrain", "physics", "dcdm", "learned_ic")
                 and not (p.parent.name.startswith("mppde_") and not p.stem.endswith("_nx50")))
ONLINE_CONFIGS = sorted((ROOT / "configs").glob("*/*_online.yaml"))

TINY = {
    "burgers1d": dict(nx=64, n_out=4, nu=0.1),
    "ks1d": dict(nx=64, n_out=8, t_final=8.0, t_warmup=0.0),
    "ns2d": dict(resolution=32, n_out=8, t_final=4.0),
    "darcy2d": dict(resolution=25),
    # 81 frames: bundles of 25 with one pushforward bundle need 75
    "mppde_e1": dict(nx=16, n_out=80),
    "mppde_e2": dict(nx=16, n_out=80),
    "mppde_e3": dict(nx=16, n_out=80),
    "darcy2d_mesh": dict(h=0.1),
    "dam_break2d": dict(resolution=8, n_out=12, t_final=0.12, tank_length=2.0),  # 13 frames
}
#: configs whose data are not their folder's problem
CONFIG_PROBLEM = {"darcy2d/mppde_mesh": "darcy2d_mesh"}


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("data")
    paths = {}
    for name, settings in TINY.items():
        paths[name] = folder / f"{name}.h5"
        samples = 4 if name == "dam_break2d" else 10  # SPH: about 3 s for 4 trajectories
        generate_dataset(PROBLEMS.build(name, **settings), paths[name], num_samples=samples, seed=3, batch_size=10)
    return paths


TINY_RUN = ["--trainer.max_epochs", "1", "--trainer.limit_train_batches", "2", "--trainer.limit_val_batches", "1",
            "--trainer.limit_test_batches", "1"]


def config_id(config: Path) -> str:
    return f"{config.parent.name}/{config.stem}"


@pytest.fixture(scope="module")
def config_runs(tiny_data, tmp_path_factory) -> dict[str, tuple[str, Path]]:
    """Every config's tiny ``fit``, each in its own folder, all in one fresh process: id -> (error, folder)."""
    jobs = {}
    for config in CONFIGS:
        problem = CONFIG_PROBLEM.get(config_id(config), config.parent.name)
        folder = tmp_path_factory.mktemp(config_id(config).replace("/", "-"))
        jobs[config_id(config)] = (["fit", "--config", str(config), "--data.init_args.path", str(tiny_data[problem]),
                                    *TINY_RUN], folder)
    errors = train_cli_each(jobs, tmp_path_factory.mktemp("report") / "report.json")
    return {name: (errors[name], folder) for name, (_, folder) in jobs.items()}


@pytest.mark.parametrize("config", CONFIGS, ids=config_id)
def test_every_config_trains_a_few_steps_on_tiny_data(config, config_runs):
    error, folder = config_runs[config_id(config)]
    assert error == "", error
    checkpoints = list(folder.glob("outputs/*/checkpoints/last.ckpt"))
    assert len(checkpoints) == 1
    # The checkpoint holds tensors and plain values only, and rebuilds its model from recorded arguments.
    extras = torch.load(checkpoints[0], weights_only=True)["pdebench"]
    module_class = training_module_class(extras["module_class"])  # the class the leaderboard rebuilds
    module = module_class.load_from_checkpoint(checkpoints[0], weights_only=True)
    assert bool(module.x_norm.fitted)


@pytest.mark.parametrize("problem", ["mppde_e1", "mppde_e2", "mppde_e3"])
def test_mppde_configs_differ_only_in_resolution_paths(problem):
    folder = ROOT / "configs" / problem
    reference = (folder / "mppde_nx50.yaml").read_text()
    for nx in (100, 40):
        text = (folder / f"mppde_nx{nx}.yaml").read_text()
        body = lambda t: [line for line in t.splitlines() if not line.startswith("#")]  # noqa: E731
        assert [line.replace(f"nx{nx}", "nx50") for line in body(text)] == body(reference)
        assert f"--set nx={nx} --solve-refinement {200 // nx}" in text


def small_fno_config(tmp_path: Path, data: Path, epochs: int, callbacks: list[dict]) -> Path:
    config = {
        "seed_everything": 7,
        "trainer": {
            "accelerator": "cpu", "max_epochs": epochs, "deterministic": True, "logger": False,
            "enable_progress_bar": False, "enable_model_summary": False,
            "callbacks": [{"class_path": "lightning.pytorch.callbacks.ModelCheckpoint",
                           "init_args": {"dirpath": str(tmp_path / "ckpt"), "save_last": True, "save_top_k": 1}}, *callbacks],
        },
        "model": {"class_path": "pdebench.training.module.OperatorModule",
                  "init_args": {"model": "fno", "model_args": {"n_modes": 8, "hidden_channels": 8, "n_layers": 2},
                                "optim": {"lr": 3e-3}, "input_noise": 0.01}},
        "data": {"class_path": "pdebench.data.datamodules.OfflineDataModule",
                 "init_args": {"path": str(data), "task": "next_step", "history": 2, "unroll": 2, "batch_size": 4}},
    }
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def final_parameters(checkpoint: Path) -> dict[str, torch.Tensor]:
    return torch.load(checkpoint, weights_only=True)["state_dict"]


def test_killed_run_resumed_from_last_checkpoint_ends_bitwise_equal(tiny_data, tmp_path):
    data = tiny_data["ks1d"]
    full, interrupted = tmp_path / "full", tmp_path / "interrupted"
    full.mkdir(), interrupted.mkdir()
    train_cli(["fit", "--config", str(small_fno_config(full, data, 4, []))], full)
    kill = [{"class_path": "tests.training.helpers.KillAtEpoch", "init_args": {"epoch": 2}}]
    config = small_fno_config(interrupted, data, 4, kill)
    killed = subprocess.run([sys.executable, str(ROOT / "train.py"), "fit", "--config", str(config)], cwd=interrupted,
                            capture_output=True, text=True, timeout=300, env={**__import__("os").environ, "PYTHONPATH": str(ROOT)})
    assert killed.returncode == -9, killed.stderr[-2000:]
    assert torch.load(interrupted / "ckpt" / "last.ckpt", weights_only=True)["epoch"] == 1
    resume = small_fno_config(interrupted, data, 4, [])
    train_cli(["fit", "--config", str(resume), "--ckpt_path", str(interrupted / "ckpt" / "last.ckpt")], interrupted)
    a, b = final_parameters(full / "ckpt" / "last.ckpt"), final_parameters(interrupted / "ckpt" / "last.ckpt")
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_unknown_model_lists_valid_names():
    with pytest.raises(ValueError, match="unknown model 'fmo'; valid models: .*fno.*tfno.*unet"):
        OperatorModule(model="fmo")
    with pytest.raises(ValueError, match=r"model 'nsm' is a 'physics' model; OperatorModule trains data-driven operators \(dpot, fno,"):
        OperatorModule(model="nsm")


def test_model_args_may_not_override_the_data_links():
    with pytest.raises(ValueError, match="in_channels is set by the data"):
        OperatorModule(model="fno", model_args={"in_channels": 3})


def test_mismatched_channels_and_resolution_fail_before_training(tiny_data, tmp_path):
    from pdebench.data.datamodules import OfflineDataModule
    import lightning as L

    data = OfflineDataModule(str(tiny_data["burgers1d"]), task="initial_to_final", batch_size=4)
    module = OperatorModule(model="fno", in_channels=2, out_channels=1, spatial_dims=1, model_args={"n_modes": 4, "hidden_channels": 4})
    trainer = L.Trainer(max_epochs=1, logger=False, enable_checkpointing=False, enable_progress_bar=False, default_root_dir=tmp_path)
    with pytest.raises(ValueError, match="model expects in_channels=2 but the data give 1"):
        trainer.fit(module, datamodule=data)
    strided = OfflineDataModule(str(tiny_data["burgers1d"]), task="initial_to_final", batch_size=4, spatial_stride=3)  # 22 points
    unet = OperatorModule(model="unet", in_channels=1, out_channels=1, spatial_dims=1, model_args={"width": 4, "levels": 4})
    with pytest.raises(ValueError, match="not divisible by 16"):
        trainer.fit(unet, datamodule=strided)
    assert not list(tmp_path.rglob("*.ckpt"))


def test_pushforward_trains_only_the_last_unrolled_step():
    torch.manual_seed(0)
    module = OperatorModule(model="fno", in_channels=2, out_channels=1, history=2, model_args={"n_modes": 4, "hidden_channels": 4})
    module.x_norm.fit(torch.zeros(2), torch.ones(2))
    module.y_norm.fit(torch.zeros(1), torch.ones(1))
    x, y = torch.randn(3, 2, 32), torch.randn(3, 3, 1, 32)
    module.log = lambda *a, **k: None
    loss = module.training_step((x, y), 0)
    with torch.no_grad():
        window = x
        for _ in range(2):
            window = module.shift_window(window, module(window))
        expected = module.loss_fn(module(window), y[:, -1])
    assert torch.allclose(loss, expected)
    loss.backward()
    assert all(p.grad is not None for p in module.model.parameters() if p.requires_grad)


def test_rollout_feeds_predictions_back_in_order():
    module = OperatorModule(model="fno", in_channels=2, out_channels=1, history=2, model_args={"n_modes": 4, "hidden_channels": 4})

    class Shift(torch.nn.Module):  # "predict" the newest frame + 1
        def forward(self, x):
            return x[:, -1:] + 1

    module.model = Shift()
    frames = torch.zeros(2, 6, 1, 16)
    frames[:, 1] = 5.0
    out = module.rollout(frames)
    assert out.shape == (2, 4, 1, 16)
    assert torch.equal(out[:, :, 0, 0], torch.tensor([[6.0, 7.0, 8.0, 9.0]] * 2))


def test_test_subcommand_reports_metrics_and_writes_the_rollout_curve(tiny_data, tmp_path):
    config = ROOT / "configs" / "ks1d" / "fno.yaml"
    data = ["--data.init_args.path", str(tiny_data["ks1d"])]
    train_cli(["fit", "--config", str(config), *data, *TINY_RUN], tmp_path)
    result = subprocess.run([sys.executable, str(ROOT / "train.py"), "test", "--config", str(config), *data,
                             "--ckpt_path", "outputs/ks1d_fno/checkpoints/last.ckpt"], cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    for metric in ("test_nrmse", "test_frmse_high", "test_brmse", "test_vrmse", "test_rollout_nrmse_gmean", "test_corr_time", "test_vrmse_1"):
        assert metric in result.stdout
    curves = list(tmp_path.glob("outputs/ks1d_fno/**/rollout_nrmse.csv"))
    assert curves and len(curves[0].read_text().splitlines()) == 1 + 8 + 1 - 2  # header + (T - history) steps
    assert list(tmp_path.glob("outputs/ks1d_fno/**/rollout_nrmse.png"))


ONLINE_TINY = {"burgers1d": "{nx: 64, n_out: 1}", "ns2d": "{resolution: 32, t_final: 6.0, n_out: 6}"}


def spawned_workers() -> set[int]:
    """Live descendants of this test process (other users' processes on the machine do not count)."""
    import psutil

    alive = set()
    for child in psutil.Process().children(recursive=True):
        try:
            if child.status() != psutil.STATUS_ZOMBIE:
                alive.add(child.pid)
        except psutil.NoSuchProcess:
            pass
    return alive


@pytest.mark.parametrize("config", ONLINE_CONFIGS, ids=lambda p: f"{p.parent.name}/{p.stem}")
def test_online_configs_train_from_streaming_workers_and_leave_no_process(config, tmp_path):
    before = spawned_workers()
    small = ["--data.init_args.problem_args", ONLINE_TINY[config.parent.name], "--data.init_args.val_trajectories", "2",
             "--data.init_args.test_trajectories", "2", "--data.init_args.calibration_trajectories", "2",
             "--data.init_args.samples_per_epoch", "16", "--data.init_args.watermark", "4", "--data.init_args.capacity", "32",
             "--data.init_args.worker_batch_size", "2"]
    train_cli(["fit", "--config", str(config), *small, *TINY_RUN], tmp_path)
    assert list(tmp_path.glob("outputs/*/checkpoints/last.ckpt"))
    assert spawned_workers() - before == set()


def test_checkpoints_carry_the_data_card_and_the_training_budget(tiny_data, tmp_path):
    train_cli(["fit", "--config", str(ROOT / "configs" / "burgers1d" / "fno.yaml"), "--data.init_args.path", str(tiny_data["burgers1d"]),
             "--data.init_args.batch_size", "2", *TINY_RUN, "--trainer.max_epochs", "2"], tmp_path)
    (checkpoint,) = tmp_path.glob("outputs/*/checkpoints/last.ckpt")
    saved = torch.load(checkpoint, weights_only=True)["pdebench"]
    card, budget = saved["data"], saved["budget"]
    assert card["problem"] == "burgers1d" and card["params"] == {"Nu": 0.1} and card["resolution"] == [64]
    assert card["task"] == "initial_to_final" and card["seed"] == 3
    assert card["target_time"] == pytest.approx(TINY["burgers1d"].get("t_final", 1.0))
    assert card["train_trajectories"] == 8  # 10 trajectories, 80 % in training
    assert budget["samples_seen"] == 2 * 2 * 2  # 2 epochs x 2 batches x 2 samples
    assert budget["train_time_s"] > 0


def test_test_logs_the_rollout_metrics_of_a_persistence_operator(tmp_path):
    """``trainer.test`` on next-step data logs the rollout summaries; checked against numpy on the test
    trajectories, whose prediction by an operator that repeats the last given frame is known."""
    import lightning as L

    from pdebench.data.datamodules import OfflineDataModule

    path = tmp_path / "ks.h5"
    problem = PROBLEMS.build("ks1d", nx=32, n_out=13, t_final=13.0, t_warmup=0.0)
    generate_dataset(problem, path, num_samples=10, seed=3, batch_size=10)
    data = OfflineDataModule(str(path), task="next_step", history=2, batch_size=4, train_fraction=0.5, val_fraction=0.2)
    module = OperatorModule(model="fno", in_channels=2, out_channels=1, history=2, model_args={"n_modes": 4, "hidden_channels": 4})
    module.x_norm.fit(torch.zeros(2), torch.ones(2))
    module.y_norm.fit(torch.zeros(1), torch.ones(1))

    class Persistence(torch.nn.Module):
        def forward(self, x):
            return x[:, -1:]

    module.model = Persistence()
    trainer = L.Trainer(logger=False, enable_checkpointing=False, enable_progress_bar=False, default_root_dir=tmp_path)
    logged = trainer.test(module, datamodule=data, verbose=False)[0]
    frames = data.trajectories("test")[:, :, 0].double().numpy()  # (n, 14, 32)
    given, later = frames[:, 1], frames[:, 2:]  # steps 1..12 are frames 2..13, each predicted as frame 1
    n, steps = later.shape[:2]
    assert steps == 12 and n >= 1
    corr = np.array([np.mean([np.corrcoef(given[i], later[i, t])[0, 1] for i in range(n)]) for t in range(steps)])
    below = np.flatnonzero(corr < 0.8)
    if below.size:
        k = below[0] + 1
        before = 1.0 if k == 1 else corr[k - 2]
        assert logged["test_corr_step"] == k
        assert logged["test_corr_time"] == pytest.approx(k - 1 + (before - 0.8) / (before - corr[k - 1]), rel=1e-5)
    else:
        assert logged["test_corr_time"] == steps and "test_corr_step" not in logged
    nrmse = np.mean(np.linalg.norm(later - given[:, None], axis=-1) / np.linalg.norm(later, axis=-1), axis=0)
    assert logged["test_rollout_nrmse_gmean"] == pytest.approx(np.exp(np.log(nrmse).mean()), rel=1e-5)
    vrmse = np.mean(np.sqrt(np.mean((given[:, None] - later) ** 2, axis=-1) / (np.var(later, axis=-1) + 1e-7)), axis=0)
    assert logged["test_vrmse_1"] == pytest.approx(vrmse[0], rel=1e-5)
    assert logged["test_vrmse_6-12"] == pytest.approx(vrmse[5:12].mean(), rel=1e-5)
    assert "test_vrmse_13-30" not in logged  # 12 steps do not reach step 30
