"""The DCDM training run (pdebench.training.dcdm_fit) and its configs."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from pdebench.models.dcdm import SymmetricDCDMNet, dcdm_solve, load_dcdm, network_operator
from pdebench.problems.elliptic_matrices import darcy_coefficient, poisson_matrix
from pdebench.solvers.linalg import pcg
from pdebench.training.dcdm_fit import DCDMRunConfig, load_dcdm_config, run_dcdm_training

CONFIGS = sorted(Path("configs/dcdm").glob("*.yaml"))


@pytest.mark.parametrize("path", CONFIGS, ids=[p.stem for p in CONFIGS])
def test_shipped_configs_load(path):
    config = load_dcdm_config(path)
    assert config.train_config().steps >= 1000
    assert Path(config.output).name == f"{path.stem}.pt"


def test_tiny_run_writes_a_working_checkpoint(tmp_path):
    config = DCDMRunConfig(arch="spd", dim=2, n=12, systems=2, network={"width": 2},
                           train={"steps": 5, "batch": 4, "lanczos_steps": 20, "rhs_per_system": 16},
                           output=str(tmp_path / "net.pt"))
    seen = []
    path, record = run_dcdm_training(config, steps=4, callback=lambda step, loss: seen.append((step, loss)))
    assert [s for s, _ in seen] == [0, 1, 2, 3] and all(np.isfinite(loss) for _, loss in seen)
    net, stored = load_dcdm(path)
    assert isinstance(net, SymmetricDCDMNet) and stored == record
    assert record["grid"] == [12, 12] and record["coefficients"] == [[0, 0], [0, 1]] and record["train"]["steps"] == 4
    n = 20  # another grid and an unseen coefficient
    A = poisson_matrix(darcy_coefficient(n, 1_000_000, 0))
    b = np.random.default_rng(0).standard_normal(n * n)
    res = dcdm_solve(A, b, network_operator(net, (n, n)), tol=1e-6, maxiter=300, fallback_cos=0.0)
    assert res.converged and res.iterations < pcg(A, b, None, tol=1e-6).iterations
    assert np.linalg.norm(b - A @ res.x) <= 1.01e-6 * np.linalg.norm(b)


def test_config_errors(tmp_path):
    with pytest.raises(ValueError, match="arch must be one of spd, unet, got 'cnn'"):
        DCDMRunConfig(arch="cnn")
    with pytest.raises(ValueError, match="dim must be 2 or 3, got 4"):
        DCDMRunConfig(dim=4)
    with pytest.raises(ValueError, match="n must be an integer >= 3, got 2"):
        DCDMRunConfig(n=2)
    with pytest.raises(ValueError, match="is a leaderboard seed"):
        DCDMRunConfig(coefficient_seed=1_000_000)
    with pytest.raises(ValueError, match="train: unknown key.*stepz"):
        DCDMRunConfig(train={"stepz": 3})
    bad = tmp_path / "bad.yaml"
    bad.write_text("arch: spd\nwidth: 3\n")
    with pytest.raises(ValueError, match="unknown key.*width"):
        load_dcdm_config(bad)
    with pytest.raises(FileNotFoundError, match="no DCDM config at"):
        load_dcdm_config(tmp_path / "none.yaml")


def test_non_finite_loss_is_reported(tmp_path):
    config = DCDMRunConfig(n=8, systems=1, network={"width": 2}, output=str(tmp_path / "x.pt"),
                           train={"steps": 50, "batch": 2, "lr": 1e30, "lanczos_steps": 10, "rhs_per_system": 4})
    with pytest.raises(FloatingPointError, match="DCDM loss became"):
        run_dcdm_training(config)
    assert not (tmp_path / "x.pt").exists()


def test_cli_train_dcdm(tmp_path, capsys):
    from pdebench.cli import main

    config = tmp_path / "run.yaml"
    config.write_text("arch: spd\ndim: 3\nn: 6\nsystems: 1\nnetwork: {width: 2}\n"
                      "train: {steps: 100, batch: 2, lanczos_steps: 10, rhs_per_system: 4}\n"
                      f"output: {tmp_path / 'unused.pt'}\n")
    out = tmp_path / "net.pt"
    assert main(["train-dcdm", "--config", str(config), "--steps", "3", "--output", str(out)]) == 0
    net, record = load_dcdm(out)
    assert record["train"]["steps"] == 3 and record["grid"] == [6, 6, 6] and not (tmp_path / "unused.pt").exists()
    assert f"wrote {out}" in capsys.readouterr().out.replace("\n", "")
    assert main(["train-dcdm", "--config", str(config), "--steps", "0"]) == 2
    assert "--steps must be >= 1, got 0" in capsys.readouterr().err
