"""The physics board: NSM and its PINN baseline, trained on the residual, against the exact solution
and finite differences of periodic Poisson."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from pdebench.evaluation.physics_board import PhysicsSuite, fd_periodic_poisson, run_suite
from pdebench.evaluation.suite import LEADERBOARD_SEED_BASE
from pdebench.models.nsm import NSM, PeriodicPoisson
from pdebench.training.physics import PhysicsTrainConfig, fit_physics, predict_values
from tests.cli_runs import ROOT, assert_one_line_refusal, pdebench_cli

PROBLEM = {"dim": 1, "n_modes": 6, "source_modes": 3}
TRAIN = {"steps": 12, "batch_size": 4, "n_train": 16, "eval_every": 0}


def _suite(**task):
    base = {"name": "p1", "problem_args": PROBLEM, "model_args": {"hidden_channels": 8, "n_layers": 2}, "train": TRAIN,
            "grid": 16, "ladder": [11, 16, 32], "samples": 4, "repeats": 1, "seed": 3}
    return {"name": "t", "kind": "physics", "tasks": [{**base, **task}]}


def _exact_numpy(f: np.ndarray, length: float) -> np.ndarray:
    """-u'' = f on [0, L) periodic, zero-mean u, by numpy's FFT of the grid values (rows: samples)."""
    n = f.shape[-1]
    k = 2 * np.pi * np.fft.rfftfreq(n, d=length / n)
    f_hat = np.fft.rfft(f, axis=-1)
    u_hat = np.where(k > 0, f_hat / np.where(k > 0, k, 1.0) ** 2, 0.0)
    return np.fft.irfft(u_hat, n=n, axis=-1)


def _rel_l2(u: np.ndarray, exact: np.ndarray) -> float:
    """Mean over samples of ||u_b - exact_b|| / ||exact_b||."""
    return float(np.mean(np.linalg.norm(u - exact, axis=-1) / np.linalg.norm(exact, axis=-1)))


def test_fd_periodic_poisson_is_the_five_point_scheme():
    """f = sin 3x + cos 5y on [0, 2π)²: the scheme's solution of each mode is f_k / ((4 / h²) sin²(k h / 2))."""
    n, length = 24, 2 * math.pi
    h = length / n
    x = torch.arange(n, dtype=torch.float64) * h
    X, Y = torch.meshgrid(x, x, indexing="ij")
    f = (torch.sin(3 * X) + torch.cos(5 * Y))[None, None]
    u = fd_periodic_poisson(f, length)[0, 0]
    sigma = lambda k: 4 / h**2 * math.sin(k * h / 2) ** 2  # noqa: E731
    expected = torch.sin(3 * X) / sigma(3) + torch.cos(5 * Y) / sigma(5)
    assert torch.allclose(u, expected, rtol=0, atol=1e-12)
    # and it satisfies the discrete equation -(Δ_h u) = f at every node
    lap = sum((torch.roll(u, 1, a) - 2 * u + torch.roll(u, -1, a)) / h**2 for a in (0, 1))
    assert torch.allclose(-lap, f[0, 0], rtol=0, atol=1e-10)


def test_rows_are_scored_against_the_exact_solution(tmp_path):
    suite = PhysicsSuite.from_dict(_suite(), "tiny")
    document = json.loads(run_suite(suite, tmp_path).read_text())
    assert document["kind"] == "physics"
    rows = {r["name"]: r for r in document["rows"]}
    assert list(rows) == ["nsm", "pinn", "fd n=11", "fd n=16", "fd n=32"]
    assert all(r["status"] == "ok" and r["rel_l2"] > 0 and r["cost_s"] > 0 for r in rows.values())
    problem = PeriodicPoisson(**PROBLEM)
    inputs = problem.sample_inputs(LEADERBOARD_SEED_BASE + 3, range(4))  # held out: never a training pool's seed
    for n in (11, 16, 32):  # an independent dense solve of the periodic five-point scheme
        f = problem.basis.to_values(inputs, (n,)).numpy()[:, 0]
        h = problem.length / n
        lap = (np.roll(np.eye(n), 1, 0) - 2 * np.eye(n) + np.roll(np.eye(n), -1, 0)) / h**2
        u = np.linalg.lstsq(-lap, f.T, rcond=None)[0].T  # the minimum-norm (zero-mean) solution
        assert rows[f"fd n={n}"]["rel_l2"] == pytest.approx(_rel_l2(u, _exact_numpy(f, problem.length)), rel=1e-9)
    exact = _exact_numpy(problem.basis.to_values(inputs, (16,)).numpy()[:, 0], problem.length)
    for method, mode in (("nsm", "spectral"), ("pinn", "pinn")):  # the same seeded training, redone here
        torch.manual_seed(3)
        model = NSM(**problem.model_kwargs(), hidden_channels=8, n_layers=2)
        fit_physics(model, problem, PhysicsTrainConfig(**TRAIN), mode=mode, pinn_grid=(16,) if mode == "pinn" else None,
                    eval_inputs=inputs, eval_grid=(16,))
        with torch.no_grad():
            u = predict_values(model, problem, inputs, (16,), mode).double().numpy()[:, 0]
        assert rows[method]["rel_l2"] == pytest.approx(_rel_l2(u, exact), rel=1e-6)
        assert rows[method]["details"]["train_steps"] == 12 and rows[method]["placement"]["verdict"]
    for name in ("results.csv", "results.md", "p1_error_vs_cost.png"):
        assert (tmp_path / name).stat().st_size > 0


@pytest.mark.parametrize(("change", "message"), [
    ({"methods": ["nsm", "fno"]}, "methods must be distinct names from nsm, pinn"),
    ({"ladder": [8, 16]}, "grid and ladder need >= 11 points per axis"),
    ({"problem": "dirichlet_poisson"}, "problem must be 'periodic_poisson'"),
    ({"train": {"stepz": 3}}, "train: "),
    ({"samples": 0}, "samples must be an integer >= 1, got 0"),
])
def test_task_validation_names_the_bad_value(change, message):
    with pytest.raises(ValueError, match=message):
        PhysicsSuite.from_dict(_suite(**change), "suite.yaml")


def test_shipped_suite_loads():
    suite = PhysicsSuite.from_yaml(ROOT / "configs" / "leaderboard" / "nsm.yaml")
    assert [(t.name, t.methods, t.build_problem().dim) for t in suite.tasks] == [("periodic_poisson2d", ("nsm", "pinn"), 2)]


def test_the_command_line_runs_a_physics_suite(tmp_path):
    (tmp_path / "suite.yaml").write_text(yaml.safe_dump({**_suite(), "output": str(tmp_path / "out")}))
    result = pdebench_cli(["leaderboard", "--suite", str(tmp_path / "suite.yaml")], tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "physics board t" in result.stdout and "nsm" in result.stdout and "fd n=32" in result.stdout
    assert json.loads((tmp_path / "out" / "results.json").read_text())["kind"] == "physics"
    refused = pdebench_cli(["leaderboard", "--suite", str(tmp_path / "suite.yaml"), "--model", "x=y.pt"], tmp_path)
    assert_one_line_refusal(refused, "--model does not apply to a physics suite")
