"""Certified time stepping of the spectral solver (``rtol``): every stored frame within the tolerance
of the exact solution, and the recorded Richardson estimate close to the measured error."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from pdebench.core.metrics import relative_l2
from pdebench.problems import PROBLEMS
from pdebench.solvers.spectral.solver import MIN_RTOL, SpectralSolver
from pdebench.problems.onedim import soliton
from tests.solvers.test_spectral import cole_hopf


def _errors(problem, u0: torch.Tensor, frames: torch.Tensor) -> np.ndarray:
    """``(T, B)`` relative L2 error of every frame of every sample against Cole–Hopf (frame 0: 0)."""
    out = np.zeros((problem.n_out + 1, u0.shape[0]))
    for j, t in enumerate(problem.output_times()[1:], start=1):
        exact = cole_hopf(u0, problem.nu, float(t))
        out[j] = [float(relative_l2(frames[b : b + 1, j], exact[b : b + 1])) for b in range(u0.shape[0])]
    return out


@pytest.mark.parametrize("nu", [0.1, 0.01])
def test_every_frame_of_burgers_meets_the_tolerance(nu):
    """Rough GRF initial conditions, frames from t = 0.01: the default step misses 1e-6 there by
    two orders of magnitude; with rtol = 1e-6 every frame of every sample meets it."""
    problem = PROBLEMS.build("burgers1d", nu=nu, n_out=100)
    u0 = problem.sample_initial_conditions(seed=3, indices=range(4))
    assert _errors(problem, u0, SpectralSolver(rtol=None).solve(problem, u0).fields["u"])[1].max() > 1e-4
    traj = SpectralSolver().solve(problem, u0)  # the default tolerance
    assert _errors(problem, u0, traj.fields["u"]).max() <= 1e-6
    estimate = traj.provenance["error_estimate"]
    assert estimate["rtol"] == 1e-6 and len(estimate["time_per_frame"]) == problem.n_out + 1
    assert max(estimate["time_per_frame"]) <= 1e-6 and estimate["time_per_frame"][0] == 0


def test_the_estimate_is_within_a_factor_10_of_the_measured_error():
    """ν = 0.1, where the time error dominates (at ν = 0.01 the 1024-point grid's own error, 1e-7,
    is not the solver's time error): estimate / measured in [0.1, 10] in every frame and sample."""
    problem = PROBLEMS.build("burgers1d", nu=0.1, n_out=100)
    u0 = problem.sample_initial_conditions(seed=3, indices=range(4))
    for rtol in (1e-6, 1e-8):
        traj = SpectralSolver(rtol=rtol).solve(problem, u0)
        measured = _errors(problem, u0, traj.fields["u"]).max(1)[1:]
        estimated = np.asarray(traj.provenance["error_estimate"]["time_per_frame"][1:])
        ratio = estimated / measured
        assert ratio.min() >= 0.1 and ratio.max() <= 10, (rtol, ratio.min(), ratio.max())


def test_a_tighter_tolerance_takes_more_steps_and_meets_it():
    problem = PROBLEMS.build("burgers1d", nu=0.1, n_out=100)
    u0 = problem.sample_initial_conditions(seed=3, indices=range(2))
    loose, tight = (SpectralSolver(rtol=r).solve(problem, u0) for r in (1e-6, 1e-8))
    assert tight.provenance["substeps_per_output"] > loose.provenance["substeps_per_output"]
    assert _errors(problem, u0, tight.fields["u"]).max() <= 1e-8


def test_a_certified_sample_is_the_same_alone_and_in_a_batch():
    problem = PROBLEMS.build("burgers1d", nu=0.05, nx=256, n_out=20)
    u0 = problem.sample_initial_conditions(seed=5, indices=range(5))
    batch = SpectralSolver(rtol=1e-7).solve(problem, u0).fields["u"]
    alone = SpectralSolver(rtol=1e-7).solve(problem, u0[3:4]).fields["u"]
    assert torch.equal(batch[3:4], alone)


def test_linear_problems_are_exact_at_any_tolerance():
    """Heat and advection: ETDRK4 integrates a linear equation exactly, so the estimate is round-off."""
    for name in ("heat1d", "advection1d"):
        problem = PROBLEMS.build(name, n_out=10)
        u0 = problem.sample_initial_conditions(seed=1, indices=range(3))
        traj = SpectralSolver(rtol=1e-10).solve(problem, u0)
        assert traj.provenance["error_estimate"]["time_max"] < 1e-13
        assert torch.allclose(traj.fields["u"], SpectralSolver().solve(problem, u0).fields["u"], rtol=0, atol=1e-12)


@pytest.mark.parametrize("rtol", [0.0, -1e-6, math.nan, MIN_RTOL / 10, 1.0, "tight"])
def test_a_tolerance_float64_cannot_meet_is_refused_by_name(rtol):
    with pytest.raises(ValueError, match="rtol must be a number in"):
        SpectralSolver(rtol=rtol)


def test_generate_rtol_writes_the_certificate_of_every_batch(tmp_path):
    from pdebench.io.trajectory_file import TrajectoryFile
    from tests.cli_runs import pdebench_cli

    result = pdebench_cli(["generate", "burgers1d", "-n", "4", "--batch-size", "2", "--seed", "3", "--rtol", "1e-6",
                           "--set", "n_out=20", "-o", str(tmp_path / "c.h5")], tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    problem = PROBLEMS.build("burgers1d", n_out=20)
    u0 = problem.sample_initial_conditions(seed=3, indices=range(4))
    ids = np.column_stack([np.full(4, 3), np.arange(4)])
    batches = [SpectralSolver(rtol=1e-6).solve(problem, u0[i : i + 2], ids[i : i + 2]) for i in (0, 2)]
    with TrajectoryFile(tmp_path / "c.h5") as f:
        estimate = f.provenance["error_estimate"]
        stored = torch.as_tensor(f.read().fields["u"])
    expected = np.maximum(*(b.provenance["error_estimate"]["time_per_frame"] for b in batches))
    assert estimate["rtol"] == 1e-6 and np.array_equal(estimate["time_per_frame"], expected)
    solved = torch.cat([b.fields["u"] for b in batches]).to(stored.dtype)
    assert torch.equal(stored, solved)


@pytest.mark.parametrize(("args", "needle"), [
    (["burgers1d", "--rtol", "0"], "rtol must be a number in [1e-12, 1)"),
    (["burgers1d", "--rtol", "nan"], "got nan"),
    (["tgv2d", "--rtol", "1e-6"], "--rtol: tgv2d's solver 'sph' cannot certify a time tolerance: weakly compressible SPH"),
])
def test_generate_refuses_a_tolerance_in_one_line_and_writes_nothing(args, needle, tmp_path):
    from tests.cli_runs import assert_one_line_refusal, pdebench_cli

    result = pdebench_cli(["generate", *args, "-n", "2", "-o", str(tmp_path / "x.h5")], tmp_path)
    assert_one_line_refusal(result, needle)
    assert not (tmp_path / "x.h5").exists()


@pytest.mark.parametrize("rtol", [1e-6, 1e-8])
def test_the_kdv_soliton_meets_the_tolerance_in_every_frame(rtol):
    """A soliton crossing the domain once (dispersive, conservative: the error only grows): every one
    of 10 frames within rtol of the travelling exact soliton, the estimate within 10x of it."""
    speed, length = 4.0, 50.0
    problem = PROBLEMS.build("kdv1d", nx=512, length=length, t_final=length / speed, n_out=10)
    x = problem.grid_points()[0]
    u0 = soliton(x, speed, 20.0, length)[None]
    traj = SpectralSolver(rtol=rtol).solve(problem, u0)
    measured = np.array([float(relative_l2(traj.fields["u"][:, j], soliton(x, speed, 20.0 + speed * float(t), length)[None]))
                         for j, t in enumerate(problem.output_times())])[1:]
    estimated = np.asarray(traj.provenance["error_estimate"]["time_per_frame"][1:])
    assert measured.max() <= rtol
    assert 0.1 <= (estimated / measured).min() and (estimated / measured).max() <= 10


def test_the_taylor_green_vortex_decays_exactly_under_a_tolerance():
    nu = 1e-2
    problem = PROBLEMS.build("ns2d", resolution=32, nu=nu, forcing_amplitude=0.0, t_final=2.0, n_out=4)
    x, y = problem.grid_points()
    w0 = 8 * math.pi**2 * torch.sin(2 * math.pi * x) * torch.sin(2 * math.pi * y)
    traj = SpectralSolver(rtol=1e-6).solve(problem, w0[None])
    for t, frame in zip(problem.output_times(), traj.fields["vorticity"][0]):
        assert float(relative_l2(frame[None], (w0 * math.exp(-8 * math.pi**2 * nu * t))[None])) <= 1e-6
    assert traj.provenance["error_estimate"]["time_max"] <= 1e-6


def test_a_tolerance_the_step_halvings_cannot_reach_is_an_error_naming_it(monkeypatch):
    """With no halving allowed, a tolerance the planned step misses stops the run with a message
    naming the budget and the estimate reached, instead of storing an uncertified frame."""
    import pdebench.solvers.spectral.solver as spectral

    monkeypatch.setattr(spectral, "MAX_DOUBLINGS", 0)
    problem = PROBLEMS.build("burgers1d", nu=0.1, nx=256, n_out=10)
    u0 = problem.sample_initial_conditions(seed=3, indices=range(2))
    with pytest.raises(ValueError, match=r"cannot certify relative error 1e-10: the estimate stays at .* after 0 halvings"):
        SpectralSolver(rtol=1e-9).solve(problem, u0)


def test_chaotic_flow_restarts_samples_whose_inherited_error_outgrows_the_budget(caplog):
    """Kuramoto–Sivashinsky amplifies early errors faster than the budget rtol·k/n_out grows: redoing
    one interval cannot remove them, so the sample is solved again from its first frame with twice the
    steps. Every frame then meets 1e-6 against a fixed-step solve with 4x smaller steps than the
    finest certified one (ETDRK4: 256x less error), the estimate within 10x, and each sample is the
    same alone as in the batch."""
    problem = PROBLEMS.build("ks1d", t_final=30.0, n_out=30, t_warmup=0.0)
    u0 = problem.sample_initial_conditions(seed=0, indices=[0, 1])
    with caplog.at_level("INFO", logger="pdebench.solvers.spectral.solver"):
        traj = SpectralSolver().solve(problem, u0)
    assert "restart with twice the steps" in caplog.text
    finest = problem.dt_out / traj.provenance["substeps_per_output"]
    exact = SpectralSolver(dt=finest / 4).solve(problem, u0).fields["u"]
    measured = ((traj.fields["u"] - exact).norm(dim=-1) / exact.norm(dim=-1)).max(0).values[1:].numpy()
    estimate = np.asarray(traj.provenance["error_estimate"]["time_per_frame"][1:])
    assert measured.max() <= 1e-6
    assert np.all(estimate >= measured / 10) and np.all(estimate <= 10 * measured)
    alone = SpectralSolver().solve(problem, u0[1:])
    assert torch.equal(alone.fields["u"][0], traj.fields["u"][1])
