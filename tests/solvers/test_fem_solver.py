"""The registered FEM solver on darcy2d: exact series solution, methods agree, files, workers, errors."""

from __future__ import annotations

import h5py
import numpy as np
import pytest
import torch

from pdebench.data.generate import build_solver, generate_dataset, solve_samples
from pdebench.io.trajectory_file import read_trajectories
from pdebench.data.workers import LocalWorkerPool, WorkerConfig
from pdebench.problems import PROBLEMS
from pdebench.solvers.fem.solver import FEMSolver


def poisson_series(x: np.ndarray, y: np.ndarray, terms: int = 199) -> np.ndarray:
    """Exact solution of -Δu = 1 on (0,1)², u = 0 on the boundary (double sine series)."""
    k = np.arange(1, terms + 1, 2)
    sx, sy = np.sin(np.pi * np.outer(x, k)), np.sin(np.pi * np.outer(y, k))
    coefficient = 16 / (np.pi**4 * k[:, None] * k[None, :] * (k[:, None] ** 2 + k[None, :] ** 2))
    return sx @ coefficient @ sy.T


def test_constant_permeability_matches_the_exact_series_solution():
    grid = np.linspace(0, 1, 33)
    exact = poisson_series(grid, grid) / 2.0
    errors = {}
    for element in ("P1", "P2"):
        problem = PROBLEMS.build("darcy2d", resolution=33, a_high=2.0, a_low=2.0, element=element)
        traj = solve_samples(problem, build_solver(problem), 0, np.arange(2))
        errors[element] = np.abs(traj.fields["tensor"][:, 0].numpy() - exact).max() / exact.max()
        assert torch.equal(traj.fields["nu"][:, 0], torch.full((2, 33, 33), 2.0, dtype=torch.float64))
    assert errors["P1"] < 2e-3, errors
    # P2 gains at least an order (the corners' r^2 log r singularity keeps it from the smooth-case rate).
    assert errors["P2"] < errors["P1"] / 20, errors


def test_p1_error_falls_by_four_when_the_grid_is_refined_twice():
    errors = []
    for n in (17, 33, 65):
        problem = PROBLEMS.build("darcy2d", resolution=n, a_high=1.0, a_low=1.0)
        u = solve_samples(problem, build_solver(problem), 0, np.arange(1)).fields["tensor"][0, 0].numpy()
        grid = np.linspace(0, 1, n)
        errors.append(np.abs(u - poisson_series(grid, grid)).max())
    slopes = np.log2(np.array(errors[:-1]) / np.array(errors[1:]))
    assert np.all(np.abs(slopes - 2) < 0.2), slopes


def test_direct_amg_and_recycled_solves_agree():
    problem = PROBLEMS.build("darcy2d", resolution=33)
    inputs = problem.sample_inputs(5, range(4))
    direct = FEMSolver(method="direct").solve(problem, inputs).fields["tensor"]
    amg = FEMSolver(method="amg-pcg", tol=1e-12)
    iterative = amg.solve(problem, inputs)
    assert torch.allclose(iterative.fields["tensor"], direct, rtol=0, atol=1e-9 * direct.abs().max())
    assert iterative.provenance["method"] == "amg-pcg" and len(amg.last_iterations) == 4


def test_generated_file_has_the_pdebench_darcy_layout_and_rows_regenerate_alone(tmp_path):
    problem = PROBLEMS.build("darcy2d", resolution=21)
    path = tmp_path / "darcy.h5"
    generate_dataset(problem, path, num_samples=5, seed=4, batch_size=3)
    with h5py.File(path) as f:
        assert f["nu"].shape == (5, 21, 21) and f["tensor"].shape == (5, 1, 21, 21)
        assert f.attrs["provenance.solver"] == "fem"
    traj = read_trajectories(path)
    alone = solve_samples(problem, build_solver(problem), 4, np.array([3]))
    assert np.allclose(traj.fields["tensor"][3].numpy(), alone.fields["tensor"][0].float().numpy(), rtol=0, atol=0)
    assert set(np.unique(traj.fields["nu"].numpy())) == {3.0, 12.0}


def test_workers_stream_darcy_samples():
    config = WorkerConfig("darcy2d", {"resolution": 17}, seed=2, batch_size=3, max_samples=6)
    with LocalWorkerPool(config, num_workers=1) as pool:
        batches = list(pool.batches())
    assert sorted(int(i) for b in batches for i in b.sample_ids[:, 1]) == list(range(6))
    assert batches[0].fields["tensor"].shape == (3, 1, 17, 17)


def test_bad_input_is_refused_with_the_value_named():
    with pytest.raises(ValueError, match="permeabilities must be positive"):
        PROBLEMS.build("darcy2d", a_low=0.0)
    with pytest.raises(ValueError, match="unknown element family 'P3'"):
        PROBLEMS.build("darcy2d", element="P3")
    problem = PROBLEMS.build("darcy2d", resolution=9)
    bad = torch.ones(1, 9, 9)
    bad[0, 4, 4] = -1.0
    with pytest.raises(ValueError, match="minimum -1"):
        FEMSolver().solve(problem, bad)
    with pytest.raises(ValueError, match="unknown method 'cholmod'"):
        FEMSolver(method="cholmod")


def test_sorted_krylov_recycling_gives_the_direct_solutions():
    problem = PROBLEMS.build("darcy2d", resolution=33)
    inputs = problem.sample_inputs(6, range(6))
    direct = FEMSolver(method="direct").solve(problem, inputs).fields["tensor"]
    skr = FEMSolver(method="skr", tol=1e-12)
    recycled = skr.solve(problem, inputs, np.column_stack([np.full(6, 6), np.arange(6)]))
    assert torch.allclose(recycled.fields["tensor"], direct, rtol=0, atol=1e-8 * direct.abs().max())
    assert recycled.provenance["method"] == "skr" and len(skr.last_iterations) == 6
    assert recycled.sample_ids[:, 1].tolist() == list(range(6))  # results come back in the input order
