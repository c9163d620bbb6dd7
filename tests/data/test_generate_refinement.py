"""``pdebench generate --solve-refinement``: data solved on a finer grid, stored on the problem's grid."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from pdebench.data.generate import generate_dataset, solve_samples
from pdebench.io.trajectory_file import TrajectoryFile
from pdebench.problems import PROBLEMS
from pdebench.solvers import SOLVERS


def test_cell_averages_are_block_averages_of_the_fine_solve(tmp_path):
    coarse = PROBLEMS.build("mppde_e1", nx=16, n_out=10, t_final=0.5)
    path = tmp_path / "e1.h5"
    generate_dataset(coarse, path, num_samples=3, seed=4, batch_size=2, solve_refinement=4)
    fine = coarse.refined(4)
    assert fine.nx == 64
    direct = solve_samples(fine, SOLVERS.build("fv-weno"), 4, np.arange(3)).fields["u"].double()
    with TrajectoryFile(path) as file:
        stored = file.read()
        assert file.params["nx"] == 16
        assert file.provenance["solve_refinement"] == 4 and file.provenance["solved_resolution"] == "64"
    assert stored.fields["u"].shape == (3, 11, 16)
    expected = direct.reshape(3, 11, 16, 4).mean(-1)  # cell averages of 4 fine cells each
    assert torch.allclose(stored.fields["u"].double(), expected, atol=1e-6)  # float32 storage
    np.testing.assert_allclose(stored.coords["x"], coarse.coordinates()["x"])
    # the stored initial frame is the coarse problem's own exact cell average
    initial = coarse.sample_initial_conditions(4, [0, 1, 2])
    assert torch.allclose(stored.fields["u"][:, 0].double(), initial, atol=1e-6)


def test_point_values_are_sampled_at_the_nested_nodes(tmp_path):
    coarse = PROBLEMS.build("mppde_e3", nx=16, n_out=4, t_final=0.2)
    path = tmp_path / "e3.h5"
    generate_dataset(coarse, path, num_samples=2, seed=1, solve_refinement=2)
    fine = coarse.refined(2)
    assert fine.max_dt == pytest.approx(coarse.max_dt / 2)
    direct = solve_samples(fine, SOLVERS.build("spectral"), 1, np.arange(2)).fields["u"].double()
    with TrajectoryFile(path) as file:
        stored = file.read().fields["u"].double()
    assert torch.allclose(stored, direct[..., ::2], atol=1e-6)


def test_refinement_is_refused_for_bad_values_and_non_grid_problems(tmp_path):
    with pytest.raises(ValueError, match="refinement must be an integer >= 1, got 0"):
        generate_dataset(PROBLEMS.build("mppde_e1", nx=16), tmp_path / "a.h5", num_samples=1, solve_refinement=0)
    with pytest.raises(ValueError, match="needs a time-dependent grid problem"):
        generate_dataset(PROBLEMS.build("poisson"), tmp_path / "b.h5", num_samples=1, solve_refinement=2)
    assert not any(tmp_path.iterdir())
