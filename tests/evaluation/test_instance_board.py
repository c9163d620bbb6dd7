"""The instance board: GP-HM against second-order finite differences on one PDE instance."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from pdebench.equations.steady import ALLEN_CAHN, POISSON
from pdebench.evaluation.instance_board import InstanceSuite, fd_laplacian, fd_solve, run_suite
from pdebench.problems.manufactured import INSTANCES

ROOT = Path(__file__).resolve().parents[2]


def _orders(equation, exact, source, dim, sizes):
    """Errors at ``sizes`` (h halves: n - 1 doubles) and the observed orders log2(e_k / e_{k+1})."""
    errors = [fd_solve(equation, exact, source, n, dim).rel_l2 for n in sizes]
    return errors, [math.log2(a / b) for a, b in zip(errors, errors[1:])]


# --------------------------------------------------------------------------- finite differences
def test_fd_poisson1d_second_order():
    # u = e^x sin 3x: u'' = e^x (6 cos 3x - 8 sin 3x); -u'' = f
    exact = lambda x: torch.exp(x) * torch.sin(3 * x)  # noqa: E731
    source = lambda x: -torch.exp(x) * (6 * torch.cos(3 * x) - 8 * torch.sin(3 * x))  # noqa: E731
    errors, orders = _orders(POISSON, exact, source, 1, [17, 33, 65, 129])
    assert errors[-1] < 1e-4
    assert all(1.9 < p < 2.1 for p in orders), orders


def test_fd_poisson2d_second_order():
    # u = sin 2x cos 3y + x y^2: -Δu = 13 sin 2x cos 3y - 2x
    exact = lambda x, y: torch.sin(2 * x) * torch.cos(3 * y) + x * y**2  # noqa: E731
    source = lambda x, y: 13 * torch.sin(2 * x) * torch.cos(3 * y) - 2 * x  # noqa: E731
    errors, orders = _orders(POISSON, exact, source, 2, [17, 33, 65, 129])
    assert all(1.9 < p < 2.1 for p in orders), orders


def test_fd_allen_cahn_second_order_and_newton():
    # u = sin 3x + x: u'' + u(u^2 - 1) = -9 sin 3x + u(u^2 - 1)
    exact = lambda x: torch.sin(3 * x) + x  # noqa: E731

    def source(x):
        u = exact(x)
        return -9 * torch.sin(3 * x) + u * (u * u - 1)

    errors, orders = _orders(ALLEN_CAHN, exact, source, 1, [17, 33, 65, 129])
    assert all(1.9 < p < 2.1 for p in orders), orders
    solution = fd_solve(ALLEN_CAHN, exact, source, 33, 1)
    assert 1 <= solution.newton_iterations < 10
    # the discrete equation holds at the interior nodes (Newton converged), boundary values are exact
    u, x = solution.u, np.linspace(0, 1, 33)
    h2 = (x[1] - x[0]) ** 2
    f = source(torch.from_numpy(x)).numpy()
    residual = (u[:-2] - 2 * u[1:-1] + u[2:]) / h2 + u[1:-1] * (u[1:-1] ** 2 - 1) - f[1:-1]
    assert np.max(np.abs(residual)) < 1e-8
    assert u[0] == pytest.approx(float(exact(torch.tensor(0.0)))) and u[-1] == pytest.approx(float(exact(torch.tensor(1.0))))


def test_fd_laplacian_is_the_kronecker_sum_of_second_differences():
    lap = fd_laplacian(5, 2).toarray()
    h2 = (1 / 4) ** 2
    centre = 2 * 5 + 2  # node (2, 2)
    assert lap[centre, centre] == pytest.approx(-4 / h2)
    assert sorted(np.flatnonzero(lap[centre])) == [centre - 5, centre - 1, centre, centre + 1, centre + 5]


@pytest.mark.parametrize("name", sorted(INSTANCES))
def test_instances_source_matches_exact_solution(name):
    """Each instance's source is its operator applied to its exact solution (autograd, independent of FD)."""
    instance = INSTANCES[name]
    points = [torch.rand(16, dtype=torch.float64, generator=torch.Generator().manual_seed(a)).requires_grad_()
              for a in range(instance.dim)]
    u = instance.exact(*points)
    lap = 0
    for p in points:
        (du,) = torch.autograd.grad(u.sum(), p, create_graph=True)
        (d2u,) = torch.autograd.grad(du.sum(), p, create_graph=True)
        lap = lap + d2u
    operator = -lap if instance.equation.name == "poisson" else lap + u * (u * u - 1)
    f = instance.source(*points)
    assert torch.allclose(operator, f, rtol=1e-9, atol=1e-6 * float(f.detach().abs().max()))


def test_fd_on_sin100_matches_the_dispersion_error():
    """-u'' = f with u = sin(100x): the scheme's error is that of its symbol, (kh)^2 / 12 to leading order."""
    instance = INSTANCES["poisson1d_sin100"]
    n = 1601
    kh = 100 / (n - 1)
    error = fd_solve(instance.equation, instance.exact, instance.source, n, 1).rel_l2
    assert error == pytest.approx(kh**2 / 12, rel=0.1)


# --------------------------------------------------------------------------- validation
def _suite(**task):
    base = {"name": "tiny", "problem": "poisson1d_multiscale", "n": 24,
            "gp_hm": {"adam_steps": 10, "lbfgs_steps": 10, "n_components": 4}, "ladder": [8, 16, 64], "repeats": 1}
    return {"name": "t", "kind": "instance", "tasks": [{**base, **task}]}


@pytest.mark.parametrize(("change", "message"), [
    ({"problem": "poisson9d"}, "unknown problem 'poisson9d'; expected one of poisson1d_sin100"),
    ({"n": 3}, "n must be an integer >= 5, got 3"),
    ({"repeats": 0}, "repeats must be an integer >= 1, got 0"),
    ({"gp_hm": {"adam_step": 5}}, "gp_hm: unknown key(s) adam_step; expected adam_steps"),
    ({"gp_hm": {"adam_steps": -1}}, "gp_hm: adam_steps must be a non-negative int, got -1"),
    ({"gp_hm": {"time_limit_s": "soon"}}, "gp_hm: time_limit_s must be a positive number of seconds or null, got 'soon'"),
    ({"ladder": [8, 2]}, "ladder must be a list of integers >= 5"),
    ({"eval_every": 0}, "eval_every must be an integer >= 1 or null, got 0"),
    ({"colour": "red"}, "unknown key(s) colour"),
])
def test_task_validation_names_the_bad_value(change, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        InstanceSuite.from_dict(_suite(**change), "suite.yaml")


def test_suite_validation():
    good = _suite()
    with pytest.raises(ValueError, match="unknown key\\(s\\) models"):
        InstanceSuite.from_dict({**good, "models": []})
    with pytest.raises(ValueError, match="kind must be 'instance'"):
        InstanceSuite.from_dict({**good, "kind": "operator"})
    with pytest.raises(ValueError, match="no tasks"):
        InstanceSuite.from_dict({**good, "tasks": []})
    with pytest.raises(ValueError, match="task names repeat"):
        InstanceSuite.from_dict({**good, "tasks": good["tasks"] * 2})
    task = InstanceSuite.from_dict(good).tasks[0]
    assert task.fd_grids() == (8, 16, 24, 64)  # the task's own n is added (equal resolution)


def test_shipped_suite_loads():
    suite = InstanceSuite.from_yaml(ROOT / "configs" / "leaderboard" / "gp_hm.yaml")
    assert [t.problem for t in suite.tasks] == ["poisson1d_sin100", "poisson1d_multiscale", "allen_cahn1d_sin100",
                                                "poisson2d_sin100"]
    assert all(t.n == 200 for t in suite.tasks)
    assert suite.tasks[0].gp_config().adam_steps == 1000 and suite.tasks[0].gp_config().lbfgs_steps == 3000
    assert suite.tasks[3].gp_config().lbfgs_steps == 4000


# --------------------------------------------------------------------------- end to end
def test_tiny_instance_board_end_to_end(tmp_path):
    suite = InstanceSuite.from_dict(_suite(), "tiny")
    path = run_suite(suite, tmp_path)
    document = json.loads(path.read_text())
    assert document["kind"] == "instance" and {"hardware", "threads", "git_revision"} <= set(document["environment"])
    rows = document["rows"]
    model = next(r for r in rows if r["kind"] == "model")
    solvers = [r for r in rows if r["kind"] == "solver"]
    assert model["status"] == "ok" and model["rel_l2"] > 0 and model["cost_s"] > 0
    assert [r["n"] for r in solvers] == [8, 16, 24, 64] and all(r["status"] == "ok" for r in solvers)
    # every finite-difference row's error is recomputed here from an independent solve
    instance = INSTANCES["poisson1d_multiscale"]
    for r in solvers:
        assert r["rel_l2"] == pytest.approx(fd_solve(POISSON, instance.exact, instance.source, r["n"], 1).rel_l2, rel=1e-9)
        assert len(r["timings_s"]) == 1
    assert model["placement"]["verdict"] and "speedup" in model["placement"]
    same = model["equal_resolution"]
    assert same["n"] == 24 and same["fd_rel_l2"] == next(r["rel_l2"] for r in solvers if r["n"] == 24)
    assert same["error_ratio"] == pytest.approx(model["rel_l2"] / same["fd_rel_l2"])
    assert model["details"]["settings"]["adam_steps"] == 10
    for name in ("results.json", "results.csv", "results.md", "tiny_error_vs_cost.png"):
        assert (tmp_path / name).is_file(), name
    assert "gp_hm" in (tmp_path / "results.md").read_text()
    assert (tmp_path / "results.csv").read_text().count("\n") == 1 + len(rows)


def test_cli_dispatches_on_kind(tmp_path, capsys):
    from pdebench.cli import main

    path = tmp_path / "suite.yaml"
    path.write_text(yaml.safe_dump({**_suite(gp_hm={"adam_steps": 5, "lbfgs_steps": 0, "n_components": 2},
                                              ladder=[8]), "output": str(tmp_path / "default")}))
    assert main(["leaderboard", "--suite", str(path), "--output", str(tmp_path / "out")]) == 0
    assert json.loads((tmp_path / "out" / "results.json").read_text())["kind"] == "instance"
    assert not (tmp_path / "default").exists()
    assert "gp_hm" in capsys.readouterr().out
    assert main(["leaderboard", "--suite", str(path), "--model", "x=y.pt"]) == 2
    path.write_text(yaml.safe_dump({**_suite(), "kind": "quantum"}))
    assert main(["leaderboard", "--suite", str(path)]) == 2
    assert "kind must be one of operator, instance, linear-solver, physics, got 'quantum'" in capsys.readouterr().err
    path.write_text(yaml.safe_dump(_suite(n=2)))
    assert main(["leaderboard", "--suite", str(path)]) == 2


def test_a_failing_gp_hm_is_a_failed_row(tmp_path, monkeypatch):
    from pdebench.evaluation import instance_board
    from pdebench.models.gp_hm import FitResult

    def broken_fit(self, eval_every=100, callback=None):  # a diverged fit: non-finite values and error history
        with torch.no_grad():
            self.z.fill_(float("nan"))
        return FitResult(errors=[float("nan")], eval_steps=[1])

    monkeypatch.setattr(instance_board.GPHM, "fit", broken_fit)
    document = json.loads(run_suite(InstanceSuite.from_dict(_suite(ladder=[8])), tmp_path).read_text())
    model = next(r for r in document["rows"] if r["kind"] == "model")
    assert model["status"] == "failed" and "not finite" in model["error"] and model["rel_l2"] is None
    assert model["details"]["errors"] == [None]  # NaN history written as null (valid JSON)
    assert [r["status"] for r in document["rows"] if r["kind"] == "solver"] == ["ok", "ok"]
