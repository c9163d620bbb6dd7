"""The pseudo-spectral ETDRK4 solver against exact solutions, an independent method and its order."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from pdebench.problems import PROBLEMS
from pdebench.problems.onedim import soliton
from pdebench.solvers import BlowUpError, SpectralSolver, StabilityError
from pdebench.solvers.spectral.etdrk4 import ETDRK4Coefficients
from pdebench.equations.fourier import FourierGrid


def relative_l2(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).norm() / b.norm())


def final_frame(solver: SpectralSolver, problem, u0: torch.Tensor) -> torch.Tensor:
    return solver.solve(problem, u0).fields[problem.field_name][:, -1]


def test_spectral_derivatives_are_exact_to_roundoff():
    grid = FourierGrid((96, 64), (2.0, 3.0))
    x, y = torch.meshgrid(*grid.coordinates(), indexing="ij")
    f = torch.sin(2 * math.pi * 3 * x / 2.0) * torch.cos(2 * math.pi * 2 * y / 3.0)
    fx = grid.irfft(grid.ik(0) * grid.rfft(f))
    exact = 2 * math.pi * 3 / 2.0 * torch.cos(2 * math.pi * 3 * x / 2.0) * torch.cos(2 * math.pi * 2 * y / 3.0)
    assert (fx - exact).abs().max() < 1e-12


def test_etdrk4_coefficients_match_closed_forms_away_from_zero():
    # For |hL| of order one the phi-functions can be evaluated directly; the contour must agree,
    # for real and for purely imaginary (dispersive) symbols alike.
    z = torch.tensor([-3.0, -0.7, 0.4, 2.5j, -1.5j, -2.0 + 1.0j], dtype=torch.complex128)
    c = ETDRK4Coefficients.compute(z, 1.0)
    ez = torch.exp(z)
    assert torch.allclose(c.Q, (torch.exp(z / 2) - 1) / z, atol=1e-13)
    assert torch.allclose(c.f1, (-4 - z + ez * (4 - 3 * z + z**2)) / z**3, atol=1e-13)
    assert torch.allclose(c.f2, (2 + z + ez * (z - 2)) / z**3, atol=1e-13)
    assert torch.allclose(c.f3, (-4 - 3 * z - z**2 + ez * (4 - z)) / z**3, atol=1e-13)
    # and tend to the Taylor limits h/2, h/6, h/6, h/6 at L = 0.
    small = ETDRK4Coefficients.compute(torch.zeros(1, dtype=torch.complex128), 1.0)
    assert torch.allclose(torch.stack([small.Q, small.f1, small.f2, small.f3]).squeeze().real,
                          torch.tensor([0.5, 1 / 6, 1 / 6, 1 / 6], dtype=torch.float64), atol=1e-14)


def test_advection_equals_exact_shifted_profile():
    problem = PROBLEMS.build("advection1d", beta=1.7, nx=256, t_final=2.0, n_out=8)
    x = problem.grid_points()[0]

    def profile(s):
        return torch.sin(2 * math.pi * s) + 0.5 * torch.cos(6 * math.pi * s + 0.3) - 0.2 * torch.sin(14 * math.pi * s)

    frames = SpectralSolver().solve(problem, profile(x)[None]).fields["u"][0]
    for t, frame in zip(problem.output_times(), frames):
        assert (frame - profile(x - 1.7 * t)).abs().max() < 1e-10


def test_heat_equation_modes_decay_exactly():
    problem = PROBLEMS.build("heat1d", nu=0.02, nx=128, t_final=1.0, n_out=4)
    x = problem.grid_points()[0]
    amplitudes = {1: 1.0, 3: -0.4, 7: 0.25}

    def exact(t):
        return sum(a * math.exp(-0.02 * (2 * math.pi * m) ** 2 * t) * torch.sin(2 * math.pi * m * x) for m, a in amplitudes.items())

    frames = SpectralSolver().solve(problem, exact(0.0)[None]).fields["u"][0]
    for t, frame in zip(problem.output_times(), frames):
        assert (frame - exact(t)).abs().max() < 1e-12


def test_kdv_soliton_after_travelling_one_domain_length():
    speed, length = 4.0, 50.0
    problem = PROBLEMS.build("kdv1d", nx=512, length=length, t_final=length / speed, n_out=1)
    x = problem.grid_points()[0]
    u0 = soliton(x, speed, 20.0, length)[None]
    result = final_frame(SpectralSolver(dt=1e-3), problem, u0)
    exact = soliton(x, speed, 20.0 + length, length)[None]
    assert relative_l2(result, exact) < 1e-6


def test_kdv_is_fourth_order_with_its_complex_dispersive_symbol():
    # Taking the real part of the contour mean for L = i k^3 drops ETDRK4 to low order.
    speed, length = 4.0, 50.0
    problem = PROBLEMS.build("kdv1d", nx=512, length=length, t_final=1.0, n_out=1)
    x = problem.grid_points()[0]
    u0 = soliton(x, speed, 20.0, length)[None]
    exact = soliton(x, speed, 20.0 + speed, length)[None]
    steps = [4e-3, 2e-3, 1e-3]
    errors = [relative_l2(final_frame(SpectralSolver(dt=h, courant=2.8), problem, u0), exact) for h in steps]
    slope = np.polyfit(np.log(steps), np.log(errors), 1)[0]
    assert abs(slope - 4) < 0.3, (errors, slope)


def test_ns2d_taylor_green_vortex_decays_exactly():
    nu = 1e-2
    problem = PROBLEMS.build("ns2d", resolution=32, nu=nu, forcing_amplitude=0.0, t_final=2.0, n_out=4)
    x, y = problem.grid_points()
    w0 = 8 * math.pi**2 * torch.sin(2 * math.pi * x) * torch.sin(2 * math.pi * y)
    frames = SpectralSolver().solve(problem, w0[None]).fields["vorticity"][0]
    for t, frame in zip(problem.output_times(), frames):
        exact = w0 * math.exp(-8 * math.pi**2 * nu * t)
        assert (frame - exact).abs().max() / w0.abs().max() < 1e-10


def temporal_slope(problem, u0, steps, reference_step, courant=2.8):
    reference = final_frame(SpectralSolver(dt=reference_step), problem, u0)
    errors = [relative_l2(final_frame(SpectralSolver(dt=h, courant=courant), problem, u0), reference) for h in steps]
    return np.polyfit(np.log(steps), np.log(errors), 1)[0], errors


def test_burgers_temporal_order_is_four():
    problem = PROBLEMS.build("burgers1d", nu=0.05, nx=256, n_out=1)
    x = problem.grid_points()[0]
    u0 = (torch.sin(2 * math.pi * x) + 0.5 * torch.cos(4 * math.pi * x + 1))[None]
    slope, errors = temporal_slope(problem, u0, [1 / 40, 1 / 80, 1 / 160, 1 / 320], 1 / 4096)
    assert abs(slope - 4) < 0.3, (errors, slope)


def test_ks_temporal_order_is_four():
    problem = PROBLEMS.build("ks1d", nx=128, length=32 * math.pi, t_final=5.0, n_out=1, t_warmup=0.0)
    x = problem.grid_points()[0]
    u0 = (torch.cos(x / 16) * (1 + torch.sin(x / 16)))[None]
    slope, errors = temporal_slope(problem, u0, [1 / 8, 1 / 16, 1 / 32, 1 / 64], 1 / 1024)
    assert abs(slope - 4) < 0.3, (errors, slope)


def cole_hopf(u0: torch.Tensor, nu: float, t: float, length: float = 1.0, refine: int = 8) -> torch.Tensor:
    r"""Viscous Burgers by the Cole–Hopf transform: :math:`u = -2\nu\,\phi_x/\phi`, :math:`\phi_t = \nu\phi_{xx}`,
    :math:`\phi_0 = \exp(-\frac{1}{2\nu}\int_0^x u_0)`; the heat equation is solved exactly mode by mode on a
    ``refine`` times finer grid (``exp`` of the band-limited primitive is not band-limited), then sampled back."""
    n = u0.shape[-1]
    grid = FourierGrid((refine * n,), (length,))
    ik = grid.ik(0)
    u_hat = torch.zeros(u0.shape[0], refine * n // 2 + 1, dtype=torch.complex128)
    u_hat[:, : n // 2 + 1] = torch.fft.rfft(u0) * refine
    u_hat[:, n // 2] *= 0.5  # split the Nyquist mode between +k and -k
    assert u_hat[..., 0].abs().max() < 1e-9, "Cole–Hopf needs a zero-mean periodic u0"
    primitive = grid.irfft(torch.where(ik == 0, 0, u_hat / torch.where(ik == 0, 1, ik)))
    phi_hat = grid.rfft(torch.exp(-primitive / (2 * nu))) * torch.exp(-nu * grid.k_squared * t)
    return (-2 * nu * grid.irfft(ik * phi_hat) / grid.irfft(phi_hat))[:, ::refine]


@pytest.mark.parametrize("nu", [0.1, 0.05])
def test_burgers_matches_cole_hopf(nu):
    problem = PROBLEMS.build("burgers1d", nu=nu, nx=1024, n_out=4)
    u0 = problem.sample_initial_conditions(seed=7, indices=range(8))
    frames = SpectralSolver(dt=2.5e-3).solve(problem, u0).fields["u"]
    for j, t in enumerate(problem.output_times()):
        assert relative_l2(frames[:, j], cole_hopf(u0, nu, t)) < 1e-6


def test_float32_mode_agrees_with_float64_to_single_precision():
    problem = PROBLEMS.build("burgers1d", nu=0.05, nx=512, n_out=10)
    u0 = problem.sample_initial_conditions(seed=1, indices=range(4))
    double = SpectralSolver(dtype="float64").solve(problem, u0).fields["u"]
    single = SpectralSolver(dtype="float32").solve(problem, u0).fields["u"]
    assert single.dtype == torch.float32
    assert relative_l2(single.double(), double) < 1e-5


def test_batch_equals_samples_solved_alone():
    problem = PROBLEMS.build("burgers1d", nx=256, n_out=5)
    u0 = problem.sample_initial_conditions(seed=3, indices=range(6))
    batch = SpectralSolver().solve(problem, u0).fields["u"]
    alone = SpectralSolver().solve(problem, u0[4:5]).fields["u"]
    assert torch.equal(batch[4:5], alone)


def test_requested_step_above_stability_limit_is_refused():
    problem = PROBLEMS.build("burgers1d", nu=0.001, nx=1024, n_out=10)
    u0 = problem.sample_initial_conditions(seed=0, indices=range(2))
    with pytest.raises(StabilityError, match=r"dt=0\.05 exceeds the stability limit [0-9.e-]+"):
        SpectralSolver(dt=0.05).solve(problem, u0)


def test_automatic_step_respects_the_limit_and_divides_the_output_interval():
    problem = PROBLEMS.build("kdv1d", n_out=10)
    result = SpectralSolver().solve(problem, problem.sample_initial_conditions(0, range(2)))
    h, m = result.provenance["dt"], result.provenance["substeps_per_output"]
    assert m > 1 and math.isclose(h * m, problem.dt_out)


def test_blow_up_names_failing_samples_and_drop_keeps_the_rest():
    problem = PROBLEMS.build("burgers1d", nx=128, n_out=4)
    u0 = problem.sample_initial_conditions(seed=5, indices=range(3))
    u0[1, 10] = math.nan
    ids = np.array([[5, 0], [5, 1], [5, 2]])
    with pytest.raises(BlowUpError, match=r"\(5, 1\)") as info:
        SpectralSolver().solve(problem, u0, ids)
    assert info.value.sample_ids == [(5, 1)]
    # A genuine instability: a Courant number far outside ETDRK4's stability region, with fixed steps
    # (a certified run halves an unstable step until it is stable).
    unstable = PROBLEMS.build("burgers1d", nu=1e-3, nx=512, n_out=2)
    ic = unstable.sample_initial_conditions(seed=0, indices=range(2))
    with pytest.raises(BlowUpError):
        SpectralSolver(courant=200.0, rtol=None).solve(unstable, ic)
    certified = SpectralSolver(courant=200.0).solve(unstable, ic)
    assert bool(torch.isfinite(certified.fields["u"]).all())
    kept = SpectralSolver().solve(problem, torch.cat([u0[:1], u0[2:], u0[1:2]]), ids[[0, 2, 1]], on_blowup="drop")
    assert kept.sample_ids.tolist() == [[5, 0], [5, 2]] and kept.provenance["dropped"] == 1
    assert bool(torch.isfinite(kept.fields["u"]).all())


def test_forced_navier_stokes_reaches_the_predicted_energy_balance():
    # Kolmogorov laminar state: for small Re the steady solution is the forced mode,
    # omega = -chi k cos(k y) / (nu k^2 + mu); check the solver converges to it.
    problem = PROBLEMS.build("ns2d_kolmogorov", resolution=32, reynolds=5.0, t_final=20.0, n_out=2)
    w0 = torch.zeros(1, 32, 32, dtype=torch.float64)
    final = final_frame(SpectralSolver(), problem, w0)
    k, nu, mu = 4.0, 1 / 5.0, 0.1
    exact = problem.forcing() / (nu * k**2 + mu)
    assert relative_l2(final[0], exact) < 1e-6


def test_two_dimensional_sample_alone_equals_its_row_in_a_batch():
    problem = PROBLEMS.build("ns2d", resolution=32, t_final=1.0, n_out=2)
    u0 = problem.sample_initial_conditions(seed=2, indices=range(3))
    assert torch.equal(u0[1:2], problem.sample_initial_conditions(seed=2, indices=[1]))
    batch = SpectralSolver().solve(problem, u0).fields["vorticity"]
    alone = SpectralSolver().solve(problem, u0[1:2]).fields["vorticity"]
    assert torch.equal(batch[1:2], alone)


def test_one_long_output_interval_is_as_accurate_as_many_short_ones():
    # Regression: a weak sample is stable with one step across the interval, but not accurate;
    # the problem's accuracy step must bound the internal (fixed) step whatever n_out is.
    long = PROBLEMS.build("burgers1d", n_out=1)
    u0 = long.sample_initial_conditions(seed=0, indices=range(16))
    final = final_frame(SpectralSolver(rtol=None), long, u0)
    assert relative_l2(final, cole_hopf(u0, 0.1, 1.0)) < 1e-5
    short = final_frame(SpectralSolver(rtol=None), PROBLEMS.build("burgers1d", n_out=100), u0)
    assert relative_l2(final, short) < 1e-9


def test_the_step_check_before_a_solve_uses_the_limit_of_the_courant_condition_and_agrees_with_solve():
    """Burgers ``u_t + (u²/2)_x = ν u_xx``: ETDRK4 treats ``ν u_xx`` exactly, so the explicit rate of
    mode ``k`` is ``max|u|·|k|`` where it exceeds the damping ``ν k²``; the limit is ``C / fastest``
    over the 2/3-dealiased modes (computed here with numpy from the definition). A requested ``dt``
    just above it is refused by the pre-check and by ``solve`` alike; just below, by neither."""
    problem = PROBLEMS.build("burgers1d", nu=0.001, nx=256, n_out=2)
    u0 = problem.sample_initial_conditions(seed=0, indices=range(3))
    solver = SpectralSolver()
    n = problem.nx
    k = 2 * np.pi * np.fft.rfftfreq(n, d=problem.length / n)
    kept = np.arange(len(k)) < n / 3
    expected = []
    for row in u0.numpy():
        u = np.fft.irfft(np.fft.rfft(row) * kept, n)  # the Galerkin (dealiased) state
        rate = np.abs(u).max() * k[kept]
        fastest = rate[problem.nu * k[kept] ** 2 < rate].max()
        expected.append(solver.courant / fastest)
    limits = solver.initial_stability_limits(problem, u0)
    np.testing.assert_allclose(limits, expected, rtol=1e-10)
    above, below = SpectralSolver(dt=1.01 * min(expected)), SpectralSolver(dt=0.99 * min(expected))
    with pytest.raises(StabilityError, match="exceeds the stability limit"):
        above.check_step(problem, u0)
    with pytest.raises(StabilityError, match="exceeds the stability limit"):
        above.solve(problem, u0)
    below.check_step(problem, u0)
    assert torch.isfinite(below.solve(problem, u0).fields["u"]).all()
