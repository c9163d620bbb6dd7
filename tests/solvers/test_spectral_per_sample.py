"""The pseudo-spectral solver with per-sample equations (MP-PDE E2 and E3): the forced linear case
against each Fourier mode's exact solution, ETDRK4's fourth order in time, spectral convergence in
space, batch invariance bit for bit, conservation of the mean and generation from the command line."""

from __future__ import annotations

import math
from dataclasses import dataclass

import h5py
import numpy as np
import pytest
import torch

from pdebench.cli import main
from pdebench.data.generate import solve_samples
from pdebench.problems import PROBLEMS
from pdebench.problems.combined_equation import MPPDEE3, forcing_coefficients
from pdebench.solvers import SpectralSolver
from pdebench.solvers.certify import DEFAULT_RTOL
from pdebench.equations.spectral import MPPDECombined
from pdebench.equations.fourier import FourierGrid

LENGTH = 16.0


def solve(name: str, indices, seed: int = 0, **changes) -> tuple[torch.Tensor, dict]:
    problem = PROBLEMS.build(name, **changes)  # fixed steps: the problem's max_dt is what these tests vary
    traj = solve_samples(problem, SpectralSolver(rtol=None), seed, np.asarray(indices))
    return traj.fields["u"], traj.provenance


def exact_linear(seed: int, index: int, beta: float, gamma: float, t: np.ndarray, x: np.ndarray) -> np.ndarray:
    r"""``(T, X)`` exact solution of :math:`u_t = \beta u_{xx} - \gamma u_{xxx} + \delta(t, x)`,
    :math:`u(0) = \delta(0)`, written from scratch per Fourier mode.

    With :math:`u = \sum_\ell 2\,\mathrm{Re}(a_\ell(t) e^{ik_\ell x})` and
    :math:`\delta = \sum_j \mathrm{Re}(c_j e^{i\omega_j t} e^{ik_{\ell_j} x})`, :math:`c_j = A_j e^{i\phi_j}/i`,
    each mode solves :math:`a' = L a + \sum_{j:\ell_j=\ell} \tfrac{c_j}{2} e^{i\omega_j t}`,
    :math:`L = -\beta k^2 + i\gamma k^3`, whose solution is
    :math:`a(t) = e^{Lt} a(0) + \sum_j \tfrac{c_j}{2} (e^{i\omega_j t} - e^{Lt}) / (i\omega_j - L)`.
    """
    c = {k: v.numpy() for k, v in forcing_coefficients(seed, index).items()}
    u = np.zeros((len(t), len(x)))
    for ell in (1, 2, 3):
        k = 2 * math.pi * ell / LENGTH
        lam = -beta * k**2 + 1j * gamma * k**3
        terms = np.flatnonzero(c["ell"] == ell)
        half = c["A"][terms] * np.exp(1j * c["phi"][terms]) / 2j  # (J_l,)
        omega = c["omega"][terms]
        a = np.exp(lam * t) * half.sum()
        a = a + ((np.exp(1j * omega[None] * t[:, None]) - np.exp(lam * t)[:, None]) / (1j * omega - lam) * half).sum(1)
        u += 2 * np.real(a[:, None] * np.exp(1j * k * x[None]))
    return u


def test_forced_linear_modes_match_their_exact_solution_with_per_sample_beta_gamma() -> None:
    """alpha = 0: every mode is a forced linear ODE. A batch of samples with different beta and gamma
    (gamma k^3 up to ~24: dispersive) equals the closed form; measured max error 2.6e-13."""
    problem = PROBLEMS.build("mppde_e3", alpha_max=0.0, nx=32, t_final=4.0, n_out=20)
    indices = np.arange(5)
    ids = np.column_stack([np.zeros(5, dtype=np.int64), indices])
    params = problem.sample_parameters(ids)
    assert (params["alpha"] == 0).all() and np.ptp(params["beta"]) > 0.1 and np.ptp(params["gamma"]) > 0.3
    u = solve_samples(problem, SpectralSolver(rtol=None), 0, indices).fields["u"].numpy()  # the fixed step's accuracy
    x, t = problem.coordinates()["x"], problem.output_times()
    for b in range(5):
        exact = exact_linear(0, b, params["beta"][b], params["gamma"][b], t, x)
        assert np.abs(u[b] - exact).max() < 1e-10, (b, np.abs(u[b] - exact).max())


def test_nonlinear_e3_sample_converges_with_fourth_order_in_time() -> None:
    """Sample (0, 0) (alpha 1.55, beta 0.038, gamma 0.55), nx = 64, t = 1: the error against 3200 steps
    falls 16x per halving of the step. Measured: 1.1e-5, 6.6e-7, 3.9e-8 (orders 4.03, 4.07)."""
    reference, _ = solve("mppde_e3", [0], nx=64, t_final=1.0, n_out=1, max_dt=1 / 3200)
    errors = []
    for m in (100, 200, 400):
        u, provenance = solve("mppde_e3", [0], nx=64, t_final=1.0, n_out=1, max_dt=1 / m)
        assert provenance["substeps_per_output"] == m  # the accuracy step, not the stability limit
        errors.append(float((u[0, -1] - reference[0, -1]).abs().max()))
    orders = np.log2(np.array(errors[:-1]) / np.array(errors[1:]))
    assert ((orders > 3.7) & (orders < 4.4)).all(), (errors, orders)


def test_nonlinear_e3_sample_converges_spectrally_in_space() -> None:
    """nx = 32, 64, 128 against 256 at the shared nodes x_j = j L / 32 (t = 1): the error falls by a
    growing factor per doubling (faster than any power). Measured: 0.15, 8.8e-4, 4.9e-8."""
    fine, _ = solve("mppde_e3", [0], nx=256, t_final=1.0, n_out=1, max_dt=1 / 200)
    errors = []
    for nx in (32, 64, 128):
        u, _ = solve("mppde_e3", [0], nx=nx, t_final=1.0, n_out=1, max_dt=1 / 200)
        errors.append(float((u[0, -1] - fine[0, -1, :: 256 // nx]).abs().max()))
    assert errors[0] > 50 * errors[1] and errors[1] > 1000 * errors[2] and errors[2] < 1e-6, errors


@dataclass(frozen=True, kw_only=True)
class ScalarE3(MPPDEE3):
    """E3 whose solver equation has Python-number ``alpha, beta, gamma`` (those of the sample)."""

    def equation_for(self, sample_ids: np.ndarray) -> MPPDECombined:
        per_sample = super().equation_for(sample_ids)
        assert per_sample.batch_size == 1
        return MPPDECombined(float(per_sample.alpha[0]), float(per_sample.beta[0]), float(per_sample.gamma[0]), per_sample.forcing)


@pytest.mark.parametrize("rtol", [None, DEFAULT_RTOL], ids=["fixed steps", "certified"])
def test_a_sample_alone_equals_its_row_in_any_batch_bit_for_bit(rtol) -> None:
    """Per-sample parameters and per-sample substeps (fixed: each sample's own stability step;
    certified: each sample's own step doublings and restarts): each row equals the sample solved alone,
    and solved with scalar parameters, exactly."""
    kwargs = dict(nx=50, t_final=1.0, n_out=10, max_dt=None)  # odd spectral length 26: unaligned rows

    def run(name, indices, problem=None, **changes):
        problem = problem or PROBLEMS.build(name, **changes)
        traj = solve_samples(problem, SpectralSolver(rtol=rtol), 2, np.asarray(indices))
        return traj.fields["u"], traj.provenance

    batch, provenance = run("mppde_e3", range(6), **kwargs)
    alone = [run("mppde_e3", [i], **kwargs) for i in range(6)]
    if rtol is None:
        substeps = {p["substeps_per_output"] for _, p in alone}
        assert len(substeps) > 1 and alone[0][1]["substeps_per_output"] <= provenance["substeps_per_output"]
    scalar = ScalarE3(**kwargs)
    for i in range(6):
        assert torch.equal(alone[i][0][0], batch[i]), i
        own, _ = run("", [i], problem=scalar)
        assert torch.equal(own[0], batch[i]), i
    reordered, _ = run("mppde_e3", [4, 1, 3], **kwargs)
    assert torch.equal(reordered, batch[[4, 1, 3]])
    e2_batch, _ = run("mppde_e2", range(4), nx=50, t_final=1.0, n_out=10)
    e2_alone, _ = run("mppde_e2", [3], nx=50, t_final=1.0, n_out=10)
    assert torch.equal(e2_alone[0], e2_batch[3])


def test_the_mean_is_conserved_because_the_forcing_has_zero_mean() -> None:
    for name in ("mppde_e2", "mppde_e3"):
        u, _ = solve(name, range(4), seed=9, nx=64)
        mean = u.mean(-1)
        assert float((mean - mean[:, :1]).abs().max()) < 1e-12, name
        assert bool(torch.isfinite(u).all()) and u.shape == (4, 251, 64)


def test_forcing_coefficients_equal_the_fft_of_the_forcing() -> None:
    problem = PROBLEMS.build("mppde_e3", nx=40)
    equation = problem.equation_for(np.array([[1, 0], [1, 5], [1, 2]]))
    grid = FourierGrid((40,), (LENGTH,))
    for t in (0.0, 1.3):
        exact = grid.rfft(equation.forcing(grid.coordinates()[0], t))
        w = equation.forcing.flux_coefficients(grid, t)
        got = torch.zeros_like(exact)
        got[:, : w.shape[1]] = w * (-1j * grid.k_derivative[0][: w.shape[1]])
        torch.testing.assert_close(got, exact, rtol=0, atol=1e-12)
    # the stability limit sees each sample's own alpha and damping
    u_hat = grid.rfft(problem.sample_initial_conditions(1, [0, 5, 2])) * grid.dealias_mask(2)
    limits = SpectralSolver().stability_limits(equation, grid, u_hat)
    for b, index in enumerate((0, 5, 2)):
        alone = SpectralSolver().stability_limits(problem.equation_for(np.array([[1, index]])), grid, u_hat[b : b + 1])
        assert limits[b] == alone[0]


def test_generate_mppde_e2_from_the_command_line(tmp_path) -> None:
    path = tmp_path / "e2.h5"
    assert main(["generate", "mppde_e2", "-n", "4", "-o", str(path), "--set", "nx=50"]) == 0
    with h5py.File(path) as f:
        assert f["tensor"].shape == (4, 251, 50)
        assert f.attrs["provenance.solver"] == "spectral"
        ids = f["sample_ids"][:]
        np.testing.assert_allclose(f["x-coordinate"][:], np.arange(50) * LENGTH / 50, rtol=1e-6)
    beta = PROBLEMS.build("mppde_e2", nx=50).sample_parameters(ids)["beta"]
    assert beta.shape == (4,) and ((beta >= 0) & (beta < 0.2)).all()
