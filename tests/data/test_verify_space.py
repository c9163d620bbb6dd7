"""``pdebench generate --verify K``: the recorded spatial error against independent truths (Cole–Hopf,
the heat equation's exact modes, the Fourier series of the Poisson solution on the square, a 16x finer
finite-volume solve, the mesh refinement's own vertex numbering), its convergence order, the choice
of samples and the refusals."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from pdebench.cli import main
from pdebench.core.grid_transfer import fourier_interpolate
from pdebench.core.metrics import relative_l2
from pdebench.data.generate import generate_dataset, solve_samples
from pdebench.data.verification import verified_indices, verify_count, verify_space
from pdebench.io.mesh_file import MeshDataset
from pdebench.io.trajectory_file import TrajectoryFile
from pdebench.problems import PROBLEMS
from pdebench.solvers import SOLVERS
from tests.solvers.test_spectral import cole_hopf


def _read(path):
    with TrajectoryFile(path) as file:
        return file.read(), file.provenance


def test_the_recorded_error_of_burgers_is_its_error_against_cole_hopf(tmp_path):
    """nx = 32, ν = 0.05: the stored frames' error is spatial (1e-4 .. 3e-6; time certified to 1e-9);
    the recorded error per frame equals the stored (float32) data's error against Cole–Hopf to 1 %."""
    problem = PROBLEMS.build("burgers1d", nu=0.05, nx=32, n_out=10, t_final=0.5)
    path = tmp_path / "b.h5"
    generate_dataset(problem, path, num_samples=3, seed=3, solver_kwargs={"rtol": 1e-9}, verify=3)
    stored, provenance = _read(path)
    estimate = provenance["error_estimate"]
    recorded = np.asarray(estimate["fields"]["u"]["space_per_frame"])
    u0 = problem.sample_initial_conditions(3, [0, 1, 2])
    measured = np.array([float(relative_l2(stored.fields["u"][:, j].double(), cole_hopf(u0, problem.nu, float(t)),
                                           reduction="none").max()) for j, t in enumerate(problem.output_times())])
    assert measured[1:].min() > 1e-6 and estimate["time_max"] < 1e-8  # the error is spatial
    np.testing.assert_allclose(recorded, measured, rtol=0.01)  # frame 0 too: float32 rounding of u0 in both
    assert recorded[0] < 1e-7 and estimate["fields"]["u"]["space_max"] == recorded.max()
    # the solver's time certificate is kept, flat and for the field
    assert estimate["rtol"] == 1e-9 and estimate["fields"]["u"]["time_per_frame"] == estimate["time_per_frame"]
    assert "trigonometric interpolant" in estimate["space_method"]  # a GRF draws new noise on a finer grid


def test_the_trigonometric_interpolant_keeps_the_nyquist_mode():
    """sin(2πx·3) + cos(2πx·4) on 8 points (4 = Nyquist), in 1-D and as a 2-D product: the interpolant on
    16 and 32 points is the function itself there."""
    def f(n):
        x = torch.arange(n, dtype=torch.float64) / n
        return torch.sin(6 * math.pi * x) + torch.cos(8 * math.pi * x)

    for points in (16, 32):
        assert torch.allclose(fourier_interpolate(f(8), points, 1), f(points), atol=1e-13)
        assert torch.allclose(fourier_interpolate(torch.outer(f(8), f(8)), points, 2), torch.outer(f(points), f(points)),
                              atol=1e-13)


def test_data_solved_finer_are_checked_twice_as_fine_as_their_solve(tmp_path):
    """--solve-refinement 2 on 16 points (solved on 32 with max_dt / 2): the check solves 64 points with
    that step and restricts every 4th node onto the stored grid."""
    problem = PROBLEMS.build("mppde_e3", nx=16, n_out=4, t_final=0.2)
    path = tmp_path / "e3.h5"
    generate_dataset(problem, path, num_samples=3, seed=1, solve_refinement=2, verify=2)
    stored, provenance = _read(path)
    finer = problem.refined(2).with_resolution(64)
    direct = solve_samples(finer, SOLVERS.build("spectral"), 1, np.array([0, 2])).fields["u"][..., ::4]
    expected = relative_l2(stored.fields["u"][[0, 2]].double(), direct, batch_dims=2, reduction="none").amax(0)
    np.testing.assert_allclose(provenance["error_estimate"]["fields"]["u"]["space_per_frame"], expected.numpy(), rtol=1e-9)
    assert "2x finer than the solve's (64" in provenance["error_estimate"]["space_method"]


def test_heat_is_exact_in_space_and_says_so(tmp_path):
    """Random sines are band-limited: the stored data's error against the exact modes is float32 rounding,
    and so is the recorded error."""
    problem = PROBLEMS.build("heat1d", nx=64, n_out=5)
    path = tmp_path / "h.h5"
    generate_dataset(problem, path, num_samples=2, seed=1, verify=2)
    stored, provenance = _read(path)
    u0 = problem.sample_initial_conditions(1, [0, 1])
    k = 2 * math.pi * torch.fft.rfftfreq(64, d=1 / 64)
    exact = torch.stack([torch.fft.irfft(torch.fft.rfft(u0) * torch.exp(-problem.nu * k**2 * t), n=64)
                         for t in problem.output_times()], dim=1)
    assert float(relative_l2(stored.fields["u"].double(), exact, batch_dims=2, reduction="none").max()) < 1e-6
    assert provenance["error_estimate"]["fields"]["u"]["space_max"] < 1e-6
    assert "sampler's draw on the finer grid" in provenance["error_estimate"]["space_method"]


def _poisson_square(points: int, terms: int = 399) -> np.ndarray:
    r"""-Δu = 1 on (0, 1)², u = 0: :math:`u = \sum_{m,n\ odd} 16 \sin(m\pi x)\sin(n\pi y) / (\pi^4 m n (m^2 + n^2))`."""
    modes = np.arange(1, terms + 1, 2)
    basis = np.sin(np.pi * np.outer(modes, np.linspace(0, 1, points)))
    weights = 16 / (np.pi**4 * np.outer(modes, modes) * (modes[:, None] ** 2 + modes[None, :] ** 2))
    return basis.T @ weights @ basis


def test_darcy_p1_error_is_second_order_and_three_quarters_of_the_true_one():
    """Constant permeability 1 (-Δu = 1 on the square): the recorded error of P1 falls 4x per halving
    of h, and is (1 - 2^-2) of the error against the Fourier series (the finer solve keeps a quarter)."""
    solver = SOLVERS.build("fem")
    recorded = {}
    for resolution in (17, 33):
        problem = PROBLEMS.build("darcy2d", resolution=resolution, a_high=1.0, a_low=1.0)
        result = verify_space(problem, solver, 0, [0, 1])
        assert result.per_frame["nu"].max() == 0  # the input is drawn at the nested nodes exactly
        recorded[resolution] = float(result.per_frame["tensor"][0])
    assert recorded[17] / recorded[33] == pytest.approx(4.0, rel=0.03)
    problem = PROBLEMS.build("darcy2d", resolution=33, a_high=1.0, a_low=1.0)
    stored = solve_samples(problem, solver, 0, np.array([0])).fields["tensor"][0, 0].numpy()
    exact = _poisson_square(33)
    true = np.linalg.norm(stored - exact) / np.linalg.norm(exact)
    assert recorded[33] / true == pytest.approx(0.75, rel=0.02)


def test_finite_volumes_are_block_averaged_and_match_a_16x_finer_solve():
    """mppde_e1 (WENO5) while smooth, nx = 32: the recorded error at t = 0.1, 0.2 is 0.9-1 of the error
    against a 16x finer solve block-averaged (1 - 2^-p for a method of order p >= 3.3)."""
    problem = PROBLEMS.build("mppde_e1", nx=32, t_final=0.5, n_out=5)
    solver = SOLVERS.build("fv-weno")
    result = verify_space(problem, solver, 0, [0, 1])
    reference = solve_samples(problem.refined(16), solver, 0, np.arange(2)).fields["u"].reshape(2, 6, 32, 16).mean(-1)
    stored = solve_samples(problem, solver, 0, np.arange(2)).fields["u"]
    true = relative_l2(stored, reference, batch_dims=2, reduction="none").amax(0).numpy()
    ratio = result.per_frame["u"][1:3] / true[1:3]
    assert ratio.min() >= 0.9 and ratio.max() <= 1.0, ratio
    assert result.per_frame["u"][0] < 1e-12 and "block-averaged" in result.method


def test_the_count_default_off_and_clipping():
    assert [verify_count(None, n) for n in (1, 10, 100, 1000)] == [1, 2, 2, 20]  # 2 %, at least 2, at most N
    assert verify_count(0, 50) == 0 and verify_count(7, 50) == 7 and verify_count(500, 50) == 50
    for bad in (-1, 1.5, True, "3"):
        with pytest.raises(ValueError, match="verify must be an integer >= 0"):
            verify_count(bad, 10)
    assert verified_indices(100, 2).tolist() == [0, 99] and verified_indices(7, 3).tolist() == [0, 3, 6]
    assert len(set(verified_indices(50, 50).tolist())) == 50


def test_the_verified_samples_are_recorded_over_batches_and_leave_the_data_alone(tmp_path):
    problem = PROBLEMS.build("burgers1d", nu=0.05, nx=32, n_out=4, t_final=0.2)
    plain, checked = tmp_path / "plain.h5", tmp_path / "checked.h5"
    generate_dataset(problem, plain, num_samples=7, seed=5, batch_size=2)
    generate_dataset(problem, checked, num_samples=7, seed=5, batch_size=2, verify=3)
    (data, kept), (verified, provenance) = _read(plain), _read(checked)
    assert torch.equal(data.fields["u"], verified.fields["u"])
    assert "samples_verified" not in kept["error_estimate"] and "fields" not in kept["error_estimate"]  # time only
    estimate = provenance["error_estimate"]
    assert estimate["samples_verified"] == [[5, 0], [5, 3], [5, 6]]  # evenly spread, in three batches
    solver = SOLVERS.build("spectral")
    alone = [verify_space(problem, solver, 5, [i]).per_frame["u"] for i in (0, 3, 6)]
    # the file holds float32: its errors differ from the float64 ones by rounding only
    np.testing.assert_allclose(estimate["fields"]["u"]["space_per_frame"][1:], np.max(alone, 0)[1:], rtol=1e-3)


def test_mesh_problems_are_compared_at_the_coarse_vertices_and_converge(tmp_path):
    """Poisson P1 on the L-shape: the record is the error at the coarse vertices against the h/2 solve,
    whose first vertices are the coarse ones (scikit-fem's uniform refinement numbers the old vertices
    first: an independent map from the verifier's coordinate search), and it falls per halving of h
    between the re-entrant corner's rate 2^(4/3) and the smooth rate 4."""
    recorded = {}
    for h in (0.2, 0.1):
        problem = PROBLEMS.build("poisson", h=h)
        path = tmp_path / f"p{h}.h5"
        summary = generate_dataset(problem, path, num_samples=3, seed=2, verify=2)
        with MeshDataset(path) as data:
            estimate = data.provenance["error_estimate"]
            stored = torch.as_tensor(np.stack([data.sample(i)["fields"]["u"] for i in (0, 2)]))
        assert estimate["samples_verified"] == [[2, 0], [2, 2]] and summary.verification is not None
        assert estimate["fields"]["f"]["space_max"] < 1e-7  # one continuous source: float32 rounding only
        finer = PROBLEMS.build("poisson", h=h / 2)
        vertices = problem.mesh().p.shape[1]
        fine = solve_samples(finer, SOLVERS.build("fem-mesh"), 2, np.array([0, 2])).fields["u"][:, :vertices]
        expected = float(relative_l2(stored.double(), fine, reduction="none").max())
        assert estimate["fields"]["u"]["space_per_frame"] == [pytest.approx(expected, rel=1e-9)]
        recorded[h] = expected
    assert 2 ** (4 / 3) <= recorded[0.2] / recorded[0.1] <= 4


@pytest.mark.parametrize("argv, message", [
    (["burgers1d", "--verify", "x"], "--verify must be an integer >= 0"),
    (["burgers1d", "--verify", "-2"], "--verify must be an integer >= 0"),
    (["dam_break2d", "--verify", "1"], "a particle (SPH) problem, which a finer grid cannot verify"),
    (["poisson", "--set", "domain=disk_holes", "--verify"], "is meshed anew at h = 0.05, not refined"),
    (["darcy2d_mesh", "--verify", "2"], "is meshed anew at h = 0.025, not refined"),
    (["poisson", "--set", "h=0.015", "--verify"], "has no finer mesh (mesh size h must lie in [0.01, 0.2], got 0.0075)"),
])
def test_bad_verify_is_one_line_exit_2_and_writes_nothing(tmp_path, capsys, argv, message):
    out = tmp_path / "x.h5"
    assert main(["generate", argv[0], "-n", "2", "-o", str(out), *argv[1:]]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1
    assert not any(tmp_path.iterdir())


def test_the_command_line_records_the_default_count(tmp_path, capsys):
    out = tmp_path / "d.h5"
    assert main(["generate", "darcy2d", "-n", "3", "-o", str(out), "--set", "resolution=17", "--verify"]) == 0
    assert "verified 2 samples on a 2x finer grid" in capsys.readouterr().out
    _, provenance = _read(out)
    assert provenance["error_estimate"]["samples_verified"] == [[0, 0], [0, 2]]
    assert set(provenance["error_estimate"]["fields"]) == {"nu", "tensor"}
