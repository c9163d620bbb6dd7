"""`pdebench physics --config configs/physics/*.yaml`: NSM configs train end to end on a PDE residual."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from pdebench.cli import main
from pdebench.models.nsm import NSM, PeriodicPoisson
from pdebench.training.physics import load_physics_config

ROOT = Path(__file__).resolve().parents[2]
CONFIGS = sorted((ROOT / "configs" / "physics").glob("*.yaml"))


@pytest.mark.parametrize("config", CONFIGS, ids=lambda p: p.stem)
def test_every_physics_config_trains_a_few_steps(config, tmp_path):
    assert main(["physics", "--config", str(config), "--steps", "40", "--output", str(tmp_path)]) == 0
    result = json.loads((tmp_path / "result.json").read_text())
    assert result["steps"] == 40 and result["errors"][-1] < result["errors"][0]
    assert (tmp_path / "model.pt").stat().st_size > 0


def test_the_saved_periodic_model_reproduces_the_recorded_error(tmp_path):
    config = ROOT / "configs" / "physics" / "nsm_periodic_poisson.yaml"
    assert main(["physics", "--config", str(config), "--steps", "60", "--output", str(tmp_path)]) == 0
    settings = load_physics_config(str(config))
    problem = PeriodicPoisson(**settings.problem_args)
    model = NSM(**problem.model_kwargs(), **settings.model_args)
    model.load_state_dict(torch.load(tmp_path / "model.pt", weights_only=True))
    inputs = problem.sample_inputs(1_000_003, range(16))  # the default held-out evaluation set of fit_physics
    with torch.no_grad():
        u = problem.solution(model(inputs.to(problem.basis.coeff_dtype(torch.float32))), inputs)
    exact = problem.exact(inputs)
    grid = problem.basis.default_grid()  # fit_physics's default evaluation grid
    pred, ref = problem.basis.to_values(u, grid).double(), problem.basis.to_values(exact, grid).double()
    rel = (torch.linalg.vector_norm((pred - ref).flatten(1), dim=1) / torch.linalg.vector_norm(ref.flatten(1), dim=1)).mean()
    recorded = json.loads((tmp_path / "result.json").read_text())["errors"][-1]
    assert float(rel) == pytest.approx(recorded, rel=0.05)


def test_unknown_keys_and_problems_are_refused(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("problem: periodic_poisson\nmodel: {}\n")
    with pytest.raises(ValueError, match="unknown key.*model"):
        load_physics_config(str(bad))
    bad.write_text("problem: heat\n")
    with pytest.raises(ValueError, match="unknown problem 'heat'"):
        load_physics_config(str(bad))
