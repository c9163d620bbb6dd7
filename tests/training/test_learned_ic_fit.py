"""The learned-IC training run (pdebench.training.learned_ic_fit), its configs and its command."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import scipy.sparse.linalg as spla

from pdebench.models.learned_ic import LearnedIC, learned_ic_preconditioner, load_learned_ic
from pdebench.problems.elliptic_matrices import darcy_coefficient, poisson_matrix
from pdebench.solvers.linalg import pcg
from pdebench.training.learned_ic_fit import (LearnedICRunConfig, load_learned_ic_config, run_learned_ic_training,
                                              solution_pairs, train_learned_ic)

CONFIGS = sorted((Path(__file__).resolve().parents[2] / "configs/learned_ic").glob("*.yaml"))
assert CONFIGS, "the shipped learned-IC configs are missing"


@pytest.mark.parametrize("path", CONFIGS, ids=[p.stem for p in CONFIGS])
def test_shipped_configs_load(path):
    config = load_learned_ic_config(path)
    assert config.train_config().steps >= 300 and config.coefficient_seed < 1_000_000
    assert Path(config.output).name == f"{path.stem}.pt" and config.dim == int(path.stem[-2])


def test_solution_pairs_solve_the_system():
    A = poisson_matrix(darcy_coefficient(9, 0, 0))
    X, B = solution_pairs(A, 3, np.random.default_rng(0))
    assert X.shape == B.shape == (81, 3)
    np.testing.assert_allclose(X, spla.spsolve(A.tocsc(), B), rtol=1e-10)


def test_tiny_run_writes_a_working_checkpoint(tmp_path):
    config = LearnedICRunConfig(dim=3, n=5, systems=2, network={"width": 4, "layers": 1},
                                train={"steps": 50, "batch": 4, "rhs_per_system": 8}, output=str(tmp_path / "lic.pt"))
    seen = []
    path, record = run_learned_ic_training(config, steps=6, callback=lambda step, loss: seen.append((step, loss)))
    assert [s for s, _ in seen] == list(range(6)) and all(np.isfinite(loss) for _, loss in seen)
    net, card = load_learned_ic(path)
    assert isinstance(net, LearnedIC) and card == record
    assert record["class"] == "LearnedIC" and record["grid"] == [5, 5, 5] and record["coefficients"] == [[0, 0], [0, 1]]
    assert record["train"]["steps"] == 6 and record["network"] == {"width": 4, "layers": 1}
    A = poisson_matrix(darcy_coefficient(7, 1_000_000, 0, dim=3))  # another size, an unseen coefficient
    b = np.random.default_rng(0).standard_normal(A.shape[0])
    result = pcg(A, b, learned_ic_preconditioner(net, A), tol=1e-8)
    assert result.converged and np.linalg.norm(b - A @ result.x) <= 1.01e-8 * np.linalg.norm(b)


def test_config_and_data_errors(tmp_path):
    with pytest.raises(ValueError, match="is a leaderboard seed"):
        LearnedICRunConfig(coefficient_seed=1_000_000)
    with pytest.raises(ValueError, match="train: unknown key.*lanczos_steps"):
        LearnedICRunConfig(train={"lanczos_steps": 3})
    with pytest.raises(ValueError, match="dim must be 2 or 3, got 1"):
        LearnedICRunConfig(dim=1)
    bad = tmp_path / "bad.yaml"
    bad.write_text("dim: 2\nwidth: 3\n")
    with pytest.raises(ValueError, match="unknown key.*width"):
        load_learned_ic_config(bad)
    from pdebench.training.learned_ic_fit import LearnedICTrainConfig

    A = poisson_matrix(darcy_coefficient(4, 0, 0))
    with pytest.raises(ValueError, match="batch \\(9\\) must not exceed rhs_per_system \\(8\\)"):
        train_learned_ic(LearnedIC(width=2, layers=1), [A], LearnedICTrainConfig(batch=9, rhs_per_system=8))
    with pytest.raises(FloatingPointError, match="learned IC loss became"):
        train_learned_ic(LearnedIC(width=2, layers=1), [A], LearnedICTrainConfig(steps=30, batch=2, rhs_per_system=4, lr=1e30))


def test_cli_train_learned_ic(tmp_path, capsys):
    from pdebench.cli import main

    config = tmp_path / "run.yaml"
    config.write_text(f"dim: 2\nn: 6\nsystems: 1\nnetwork: {{width: 2, layers: 1}}\n"
                      f"train: {{steps: 100, batch: 2, rhs_per_system: 4}}\noutput: {tmp_path / 'unused.pt'}\n")
    out = tmp_path / "lic.pt"
    assert main(["train-learned-ic", "--config", str(config), "--steps", "3", "--output", str(out)]) == 0
    assert out.is_file() and not (tmp_path / "unused.pt").exists()
    assert "trained LearnedIC" in capsys.readouterr().out
    _, card = load_learned_ic(out)
    assert card["train"]["steps"] == 3
