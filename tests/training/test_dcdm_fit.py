"""The DCDM training run (pdebench.training.dcdm_fit) and its configs."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from pdebench.models.dcdm import DCDMNet, SymmetricDCDMNet, dcdm_solve, load_dcdm, network_operator
from pdebench.problems.elliptic_matrices import darcy_coefficient, poisson_matrix
from pdebench.solvers.linalg import pcg
from pdebench.training.dcdm_fit import (DCDMRunConfig, DCDMTrainConfig, dcdm_loss, lanczos_ritz, load_dcdm_config, ritz_rhs,
                                        run_dcdm_training, to_torch_sparse, train_dcdm)

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


def small_system(n: int = 8, seed: int = 0):
    return poisson_matrix(darcy_coefficient(n, seed=seed)), None


def dense_operator(net: torch.nn.Module, grid: tuple[int, ...]) -> np.ndarray:
    """The network's matrix (N, N), column j = net(e_j), in float64."""
    N = int(np.prod(grid))
    eye = torch.eye(N, dtype=torch.float64).reshape(N, 1, *grid)
    with torch.no_grad():
        return net.double()(eye).reshape(N, N).T.numpy()


def test_train_config_refuses_bad_values():
    with pytest.raises(ValueError, match="steps must be >= 1, got 0"):
        DCDMTrainConfig(steps=0)
    with pytest.raises(ValueError, match="lr must be a positive number, got -0.1"):
        DCDMTrainConfig(lr=-0.1)


def test_loss_zero_for_scaled_inverse():
    A, _ = small_system()
    rng = np.random.default_rng(0)
    B = rng.standard_normal((3, A.shape[0]))
    Q = np.linalg.solve(A.toarray(), B.T).T * np.array([[0.5], [2.0], [-3.0]])
    At = to_torch_sparse(A, torch.float64)
    loss = dcdm_loss(torch.as_tensor(Q), torch.as_tensor(B), At)
    assert float(loss) < 1e-20
    loss_id = dcdm_loss(torch.as_tensor(B), torch.as_tensor(B), At)
    assert float(loss_id) > 1e-3


def test_lanczos_ritz_values():
    A = poisson_matrix(darcy_coefficient(10, seed=0))
    theta, V = lanczos_ritz(A, 100, seed=0)
    ev = np.linalg.eigvalsh(A.toarray())
    assert np.isclose(theta[0], ev[0], rtol=1e-6) and np.isclose(theta[-1], ev[-1], rtol=1e-6)
    assert np.allclose(V.T @ V, np.eye(V.shape[1]), atol=1e-8)
    b = ritz_rhs(V, 5, np.random.default_rng(0))
    assert b.shape == (5, 100) and np.allclose(np.linalg.norm(b, axis=1), 1)
    with pytest.raises(ValueError, match="got 0"):
        lanczos_ritz(A, 0)


def test_training_lowers_loss_and_solver_runs():
    torch.manual_seed(0)
    n = 16
    A = poisson_matrix(darcy_coefficient(n, seed=0))
    net = DCDMNet(dim=2, width=8, levels=3)
    hist = train_dcdm(net, [A], (n, n), DCDMTrainConfig(steps=40, batch=8, lr=3e-3, lanczos_steps=40, rhs_per_system=64))
    assert np.mean(hist.loss[-5:]) < np.mean(hist.loss[:5])
    b = np.random.default_rng(3).standard_normal(n * n)
    res = dcdm_solve(A, b, network_operator(net, (n, n)), tol=1e-6, maxiter=2000)
    assert res.converged
    assert np.all(np.diff(res.extra["energy"]) <= 1e-10 * np.abs(res.extra["energy"]).max())
    with pytest.raises(ValueError, match=r"expected \(256, 256\)"):
        train_dcdm(net, [poisson_matrix(np.ones((6, 6)))], (n, n), DCDMTrainConfig(steps=1))


def test_symmetric_net_training_keeps_symmetry_and_lowers_loss():
    n = 16
    A = poisson_matrix(darcy_coefficient(n, seed=0))
    net = SymmetricDCDMNet(dim=2, width=3)
    hist = train_dcdm(net, [A], (n, n), DCDMTrainConfig(steps=60, batch=8, lr=3e-3, lanczos_steps=40, rhs_per_system=64))
    assert np.mean(hist.loss[-5:]) < np.mean(hist.loss[:5])
    M = dense_operator(net, (8, 8))
    assert np.abs(M - M.T).max() <= 1e-12 * np.abs(M).max() and np.linalg.eigvalsh(M).min() > 0
