"""The linear-solver board: DCDM checkpoints against CG, Jacobi-, IC(0)- and AMG-PCG on held-out Darcy systems."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import scipy.fft
import scipy.sparse.linalg as spla
import yaml

from pdebench.evaluation.linear_solver_board import (BASELINE_NAMES, GUESS_SUFFIX, SMOOTH_MODES, LinearSolverSuite,
                                                     LinearTask, right_hand_side, run_suite, task_matrix)
from pdebench.models.dcdm import DCDMNet, save_dcdm
from pdebench.problems.elliptic_matrices import darcy_coefficient, poisson_matrix
from pdebench.solvers.linalg import make_preconditioner, pcg

ROOT = Path(__file__).resolve().parents[2]
TOL = 1e-6


def _scipy_cg_iterations(A, b, tol: float) -> int:
    """Iterations scipy's CG (an independent implementation, same stopping rule ‖r‖ <= tol ‖b‖) needs."""
    count = [0]
    x, info = spla.cg(A, b, rtol=tol, atol=0.0, maxiter=10 * A.shape[0], callback=lambda _: count.__setitem__(0, count[0] + 1))
    assert info == 0
    return count[0]


# --------------------------------------------------------------------------- systems
def test_task_systems_are_the_held_out_darcy_matrices():
    task = LinearTask("t", n=12, systems=2)
    A = task_matrix(task, 1)
    expected = poisson_matrix(darcy_coefficient(12, task.seed, 1))
    assert (A != expected).nnz == 0 and A.shape == (144, 144)
    assert task_matrix(LinearTask("t3", dim=3, n=5), 0).shape == (125, 125)


def test_right_hand_sides():
    task = LinearTask("t", n=12, systems=2)
    assert np.array_equal(right_hand_side(task, "ones", 0), np.ones(144))
    noise = right_hand_side(task, "noise", 0)
    assert np.array_equal(noise, right_hand_side(task, "noise", 0))  # reproducible alone
    assert not np.allclose(noise, right_hand_side(task, "noise", 1))
    assert abs(noise.mean()) < 0.3 and 0.7 < noise.std() < 1.3
    smooth = right_hand_side(task, "smooth", 0).reshape(12, 12)
    # only sine modes 1..SMOOTH_MODES per axis (DST-I diagonalises sin(pi k j / (n + 1)))
    spectrum = scipy.fft.dstn(smooth, type=1)
    assert np.abs(spectrum[SMOOTH_MODES:, :]).max() < 1e-10 * np.abs(spectrum).max()
    assert np.abs(spectrum[:, SMOOTH_MODES:]).max() < 1e-10 * np.abs(spectrum).max()
    smooth3 = right_hand_side(LinearTask("t3", dim=3, n=6), "smooth", 0)
    assert smooth3.shape == (216,) and np.all(np.isfinite(smooth3))


@pytest.mark.parametrize("kind", ["none", "jacobi", "ic0", "amg"])
def test_baselines_against_an_independent_truth(kind):
    task = LinearTask("t", n=12)
    A, b = task_matrix(task, 0), right_hand_side(task, "noise", 0)
    result = pcg(A, b, make_preconditioner(A, kind), TOL, 1000)  # what the board's baseline rows run
    assert result.converged
    # the true residual, recomputed from x (not the recursive one), meets the tolerance
    assert np.linalg.norm(b - A @ result.x) <= 1.01 * TOL * np.linalg.norm(b)
    # and x is the direct solution to the tolerance's accuracy: ‖x - x*‖ / ‖x*‖ <= cond(A) tol
    exact = spla.spsolve(A.tocsc(), b)
    eigenvalues = np.linalg.eigvalsh(A.toarray())
    assert np.linalg.norm(result.x - exact) <= eigenvalues[-1] / eigenvalues[0] * TOL * np.linalg.norm(exact)
    if kind == "none":
        assert abs(result.iterations - _scipy_cg_iterations(A, b, TOL)) <= 1


# --------------------------------------------------------------------------- validation
def _suite(checkpoint: str | None = None, **changes):
    suite = {"name": "tiny", "kind": "linear-solver",
             "tasks": [{"name": "p12", "dim": 2, "n": 12, "systems": 2, "rhs": ["noise", "ones"], "tol": TOL, "maxiter": 60},
                       {"name": "p3", "dim": 3, "n": 5, "systems": 1, "rhs": ["smooth"], "tol": TOL, "maxiter": 60}],
             "models": [{"name": "dcdm", "checkpoint": checkpoint or "x.pt"},
                        {"name": "missing", "checkpoint": "nowhere/none.pt", "tasks": ["p12"]}]}
    return {**suite, **changes}


@pytest.mark.parametrize(("task", "message"), [
    ({"dim": 4}, "dim must be 2 or 3, got 4"),
    ({"n": 2}, "n must be an integer >= 3, got 2"),
    ({"systems": 0}, "systems must be an integer >= 1, got 0"),
    ({"seed": 7}, "seed 7 could be a training seed; leaderboard seeds are integers >= 1000000"),
    ({"rhs": ["noise", "spiky"]}, "rhs must be a non-empty list of distinct kinds from noise, ones, smooth, got \\['noise', 'spiky'\\]"),
    ({"rhs": []}, "rhs must be a non-empty list"),
    ({"tol": "1e-6"}, "tol must be a number in \\(0, 1\\), got '1e-6' \\(YAML reads 1e-6 as a string"),
    ({"tol": 2.0}, "tol must be a number in \\(0, 1\\), got 2.0"),
    ({"maxiter": 0}, "maxiter must be an integer >= 1, got 0"),
    ({"preconditioner": "ilu"}, "unknown key\\(s\\) preconditioner"),
])
def test_task_validation_names_the_bad_value(task, message):
    raw = _suite()
    raw["tasks"] = [{**raw["tasks"][0], **task}]
    raw["models"] = []
    with pytest.raises(ValueError, match=message):
        LinearSolverSuite.from_dict(raw, "suite.yaml")


def test_suite_validation():
    with pytest.raises(ValueError, match="baselines must be distinct names from none, jacobi, ic0, amg, got \\['cg'\\]"):
        LinearSolverSuite.from_dict(_suite(baselines=["cg"]))
    with pytest.raises(ValueError, match="model 'missing' names unknown task\\(s\\) p7"):
        LinearSolverSuite.from_dict(_suite(models=[{"name": "missing", "checkpoint": "a.pt", "tasks": ["p7"]}]))
    with pytest.raises(ValueError, match="on task 'p12' several entries are named dcdm"):
        LinearSolverSuite.from_dict(_suite(models=[{"name": "dcdm", "checkpoint": "a.pt"}, {"name": "dcdm", "checkpoint": "b.pt"}]))
    with pytest.raises(ValueError, match="several entries are named CG"):
        LinearSolverSuite.from_dict(_suite(models=[{"name": "CG", "checkpoint": "a.pt"}]))
    with pytest.raises(ValueError, match="kind must be 'linear-solver'"):
        LinearSolverSuite.from_dict(_suite(kind="instance"))
    with pytest.raises(ValueError, match="unknown key\\(s\\) colour"):
        LinearSolverSuite.from_dict(_suite(colour="red"))
    with pytest.raises(ValueError, match="no tasks"):
        LinearSolverSuite.from_dict(_suite(tasks=[]))


def test_shipped_suite_loads():
    suite = LinearSolverSuite.from_yaml(ROOT / "configs" / "leaderboard" / "dcdm.yaml")
    assert [t.name for t in suite.tasks] == ["poisson2d_64", "poisson2d_128", "poisson3d_32"]
    assert all(t.systems == 4 and t.tol == 1e-6 and t.rhs == ("noise", "ones", "smooth") for t in suite.tasks)
    assert [(m.name, m.tasks) for m in suite.models] == [("dcdm", ("poisson2d_64", "poisson2d_128")), ("dcdm", ("poisson3d_32",)),
                                                        ("dcdm-unet", ("poisson2d_64", "poisson2d_128"))]


# --------------------------------------------------------------------------- end to end
@pytest.fixture
def checkpoint(tmp_path) -> Path:
    return save_dcdm(tmp_path / "x.pt", DCDMNet(dim=2, width=4, levels=2), {"grid": [12, 12], "steps": 0})


def test_tiny_board_end_to_end(tmp_path, checkpoint):
    suite = LinearSolverSuite.from_dict(_suite(str(checkpoint)), "tiny")
    document = json.loads(run_suite(suite, tmp_path / "out").read_text())
    assert document["kind"] == "linear-solver" and {"hardware", "threads", "git_revision"} <= set(document["environment"])
    rows = {(r["task"], r["name"]): r for r in document["rows"]}
    assert set(rows) == {(t, BASELINE_NAMES[b]) for t in ("p12", "p3") for b in BASELINE_NAMES} | {
        ("p12", "dcdm"), ("p12", "missing"), ("p3", "dcdm")}
    task = suite.tasks[0]
    cg = rows[("p12", "CG")]
    # CG's per-solve iteration counts agree with scipy's CG; every baseline's residual is recomputed here
    for solve in cg["solves"]:
        A, b = task_matrix(task, solve["system"]), right_hand_side(task, solve["rhs"], solve["system"])
        assert abs(solve["iterations"] - _scipy_cg_iterations(A, b, TOL)) <= 1
    for name in BASELINE_NAMES.values():
        row = rows[("p12", name)]
        assert row["status"] == "ok" and row["converged_fraction"] == 1.0 and len(row["solves"]) == 4
        assert row["residual_median"] <= 1.01 * TOL
        assert row["iterations_median"] == np.median([s["iterations"] for s in row["solves"]])
        assert row["iterations_max"] == max(s["iterations"] for s in row["solves"])
        assert row["history"][0] == 1.0 and len(row["history"]) == row["solves"][0]["iterations"] + 1
    assert cg["iterations_vs_cg"] == 1.0 and rows[("p12", "AMG-PCG")]["time_vs_amg"] == 1.0
    assert rows[("p12", "AMG-PCG")]["iterations_vs_cg"] < 0.5
    dcdm = rows[("p12", "dcdm")]
    assert dcdm["status"] == "ok" and dcdm["parameters"] > 0 and dcdm["training"] == {"grid": [12, 12], "steps": 0}
    assert all(s["iterations"] <= 60 and s["fallbacks"] is not None for s in dcdm["solves"])
    assert dcdm["iterations_vs_cg"] == pytest.approx(dcdm["iterations_median"] / cg["iterations_median"])
    missing = rows[("p12", "missing")]
    assert missing["status"] == "failed" and "FileNotFoundError: no linear-solver checkpoint at nowhere/none.pt" in missing["error"]
    wrong_dim = rows[("p3", "dcdm")]
    assert wrong_dim["status"] == "failed" and "2-D network; task 'p3' is 3-D" in wrong_dim["error"]
    for name in ("results.json", "results.csv", "results.md", "p12_residuals.png", "p3_residuals.png"):
        assert (tmp_path / "out" / name).is_file(), name
    markdown = (tmp_path / "out" / "results.md").read_text()
    assert "failed: FileNotFoundError" in markdown and "AMG-PCG" in markdown


def test_non_finite_network_is_a_failed_row(tmp_path):
    import torch

    net = DCDMNet(dim=2, width=4, levels=2)
    with torch.no_grad():
        net.skip.fill_(float("nan"))
    path = save_dcdm(tmp_path / "nan.pt", net, {})
    raw = _suite(str(path), baselines=["none"])
    raw["tasks"], raw["models"] = raw["tasks"][:1], raw["models"][:1]
    document = json.loads(run_suite(LinearSolverSuite.from_dict(raw), tmp_path / "out").read_text())
    row = next(r for r in document["rows"] if r["name"] == "dcdm")
    assert row["status"] == "failed" and "non-finite" in row["error"]


def test_cli_dispatches_on_kind(tmp_path, checkpoint, capsys):
    from pdebench.cli import main

    path = tmp_path / "suite.yaml"
    raw = _suite(str(checkpoint), baselines=["none", "amg"], output=str(tmp_path / "default"))
    raw["tasks"] = raw["tasks"][:1]
    path.write_text(yaml.safe_dump(raw))
    assert main(["leaderboard", "--suite", str(path), "--output", str(tmp_path / "out")]) == 0
    document = json.loads((tmp_path / "out" / "results.json").read_text())
    assert [r["name"] for r in document["rows"]] == ["CG", "AMG-PCG", "dcdm", "missing"]
    assert not (tmp_path / "default").exists()
    assert "linear-solver board tiny" in capsys.readouterr().out
    # --model replaces the suite's DCDM entries
    assert main(["leaderboard", "--suite", str(path), "--output", str(tmp_path / "out2"), "--model", f"mine={checkpoint}"]) == 0
    assert [r["name"] for r in json.loads((tmp_path / "out2" / "results.json").read_text())["rows"]] == ["CG", "AMG-PCG", "mine"]
    raw["tasks"][0]["seed"] = 3
    path.write_text(yaml.safe_dump(raw))
    assert main(["leaderboard", "--suite", str(path)]) == 2
    assert "seed 3 could be a training seed" in capsys.readouterr().err


def test_evaluate_refuses_a_linear_solver_suite(tmp_path, checkpoint, capsys):
    from pdebench.cli import main

    path = tmp_path / "suite.yaml"
    path.write_text(yaml.safe_dump(_suite(str(checkpoint))))
    assert main(["evaluate", str(checkpoint), "--suite", str(path)]) == 2
    err = capsys.readouterr().err
    assert "is a linear-solver suite" in err and f"pdebench leaderboard --suite {path} --model NAME=CHECKPOINT" in err


# --------------------------------------------------------------------------- learned incomplete Cholesky
def _learned_ic_checkpoint(path: Path, std: float = 0.2) -> Path:
    import torch

    from pdebench.models.learned_ic import LearnedIC, save_learned_ic

    net = LearnedIC(width=4, layers=1)
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for p in net.parameters():
            p.copy_(std * torch.randn(p.shape, generator=gen))
    return save_learned_ic(path, net, {"grid": [12, 12], "steps": 0})


def _scipy_pcg_iterations(A, b, L, tol: float, x0=None) -> int:
    """Iterations of scipy's CG with M^{-1} = (L L^T)^{-1} by a dense Cholesky solve (an independent PCG)."""
    import scipy.linalg as sla

    dense = L.toarray()
    M = spla.LinearOperator(A.shape, matvec=lambda v: sla.cho_solve((dense, True), v))
    count = [0]
    _, info = spla.cg(A, b, x0=x0, rtol=tol, atol=0.0, M=M, maxiter=10 * A.shape[0],
                      callback=lambda _: count.__setitem__(0, count[0] + 1))
    assert info == 0
    return count[0]


def test_a_learned_ic_checkpoint_is_scored_beside_the_baselines(tmp_path):
    from pdebench.models.learned_ic import load_learned_ic

    path = _learned_ic_checkpoint(tmp_path / "lic.pt")
    raw = _suite(str(path), baselines=["none", "ic0"])
    raw["models"] = [{"name": "lic", "checkpoint": str(path)}]
    suite = LinearSolverSuite.from_dict(raw, "tiny")
    document = json.loads(run_suite(suite, tmp_path / "out").read_text())
    rows = {(r["task"], r["name"]): r for r in document["rows"]}
    guess = "lic" + GUESS_SUFFIX
    assert set(rows) == {(t, n) for t in ("p12", "p3") for n in ("CG", "IC(0)-PCG", "lic", guess)}
    network, _ = load_learned_ic(path)
    for task in suite.tasks:  # 2-D and 3-D: the graph network runs on either
        for name, method in (("lic", "learned_ic"), (guess, "learned_ic_x0")):
            row = rows[(task.name, name)]
            assert row["status"] == "ok" and row["kind"] == "learned_ic" and row["method"] == method, row["error"]
            assert row["converged_fraction"] == 1.0 and row["residual_median"] <= 1.01 * TOL
            assert row["parameters"] > 0 and row["training"] == {"grid": [12, 12], "steps": 0}
            assert row["setup_median_s"] > 0 and row["solve_median_s"] > 0
            for solve in row["solves"]:  # the iterations of an independent PCG with the same M and start
                A, b = task_matrix(task, solve["system"]), right_hand_side(task, solve["rhs"], solve["system"])
                L = network.factor(A)
                x0 = None
                if method == "learned_ic_x0":  # M^{-1} b scaled by the Galerkin (A-norm optimal) step
                    z = spla.spsolve_triangular(L.T.tocsr(), spla.spsolve_triangular(L.tocsr(), b, lower=True), lower=False)
                    x0 = (z @ b) / (z @ (A @ z)) * z
                assert abs(solve["iterations"] - _scipy_pcg_iterations(A, b, L, TOL, x0)) <= 1
    markdown = (tmp_path / "out" / "results.md").read_text()
    assert "**lic**" in markdown and f"**{guess}**" in markdown


def test_a_bad_learned_ic_checkpoint_is_a_failed_row_with_its_reason(tmp_path):
    import torch

    from pdebench.models.learned_ic import load_learned_ic, save_learned_ic

    network, _ = load_learned_ic(_learned_ic_checkpoint(tmp_path / "lic.pt"))
    with torch.no_grad():
        network.lower_head.bias.fill_(float("nan"))
    nan = save_learned_ic(tmp_path / "nan.pt", network, {})
    other = tmp_path / "other.pt"
    torch.save({"format": "something-else", "state_dict": {}}, other)
    raw = _suite(str(nan), baselines=["none"])
    raw["tasks"] = raw["tasks"][:1]
    raw["models"] = [{"name": "nan", "checkpoint": str(nan)}, {"name": "other", "checkpoint": str(other)}]
    document = json.loads(run_suite(LinearSolverSuite.from_dict(raw), tmp_path / "out").read_text())
    rows = {r["name"]: r for r in document["rows"]}
    assert rows["CG"]["status"] == "ok"
    for name in ("nan", "nan" + GUESS_SUFFIX):
        assert rows[name]["status"] == "failed" and "non-finite factor entries" in rows[name]["error"]
    assert rows["other"]["status"] == "failed" and "is not a linear-solver checkpoint" in rows["other"]["error"]


def test_shipped_learned_ic_suite_loads():
    suite = LinearSolverSuite.from_yaml(ROOT / "configs" / "leaderboard" / "learned_ic.yaml")
    assert [(t.dim, t.n, t.tol) for t in suite.tasks] == [(2, 64, 1e-8), (3, 32, 1e-8)]
    assert {"ic0", "amg"} <= set(suite.baselines) and all(m.checkpoint for m in suite.models)
