"""MP-PDE problems E1-E3: registration, nodes, initial conditions and per-sample parameters that are a
pure function of the sample ids (ranges, reproducibility, E1's forcing draws unchanged)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from pdebench.problems import PROBLEMS
from pdebench.problems.base import Problem
from pdebench.problems.combined_equation import forcing_coefficients, sample_draws

# forcing_coefficients(7, 1) before E2/E3 existed (float.hex): drawing alpha, beta, gamma after the
# forcing must leave E1's draws unchanged.
E1_FORCING_7_1 = {
    "A": ["-0x1.837badd8bb0f4p-3", "0x1.76ca1b79d1094p-2", "0x1.26a341ef716b0p-5", "-0x1.06c33f2139dd0p-5", "0x1.8355aed489f1cp-3"],
    "omega": ["0x1.00f356fa1b85ep-2", "0x1.0fdf5247fbd5ep-2", "-0x1.393d30f1a51f7p-3", "0x1.e1b199cbaf248p-4", "0x1.356031de8b888p-3"],
    "ell": ["0x1.0000000000000p+1", "0x1.0000000000000p+0", "0x1.0000000000000p+1", "0x1.0000000000000p+0", "0x1.0000000000000p+1"],
    "phi": ["0x1.491934e160e83p+1", "0x1.79e1b49bedaebp+2", "0x1.2fdfdff8b805fp+2", "0x1.19c7192a01990p+2", "0x1.559796d3241d5p+1"],
}


def ids(n: int, seed: int = 5) -> np.ndarray:
    return np.column_stack([np.full(n, seed), np.arange(n)])


def test_e1_forcing_draws_are_unchanged_and_shared_by_e2_e3() -> None:
    c = forcing_coefficients(7, 1)
    for name, values in E1_FORCING_7_1.items():
        assert [float(v).hex() for v in c[name]] == values, name
    forcing, uniforms = sample_draws(7, 1)
    assert all(torch.equal(forcing[k], c[k]) for k in c) and uniforms.shape == (3,)
    e2 = PROBLEMS.build("mppde_e2").forcing([[7, 1]])
    assert torch.equal(e2.amplitude[0], c["A"]) and torch.equal(e2.phi[0], c["phi"])


def test_registration_and_nodes() -> None:
    for name in ("mppde_e2", "mppde_e3"):
        problem = PROBLEMS.build(name)
        assert problem.solver == "spectral" and problem.nx == 100 and problem.length == 16.0
        assert problem.t_final == 4.0 and problem.n_out == 250 and problem.max_dt is not None
        x = problem.coordinates()["x"]
        np.testing.assert_array_equal(x, np.arange(100) * 0.16)  # nodes j L / nx, not cell centres
        with pytest.raises(ValueError, match="nx"):
            PROBLEMS.build(name, nx=8)
        with pytest.raises(ValueError, match="beta_max"):
            PROBLEMS.build(name, beta_max=-1.0)
        with pytest.raises(TypeError, match="equation_for"):
            problem.equation()


def test_initial_condition_is_the_forcing_at_time_zero_on_the_nodes() -> None:
    problem = PROBLEMS.build("mppde_e3", nx=40)
    u0 = problem.sample_initial_conditions(3, [0, 2])
    x = torch.arange(40, dtype=torch.float64) * 16.0 / 40
    for row, index in enumerate((0, 2)):
        c = forcing_coefficients(3, index)
        expected = sum(c["A"][j] * torch.sin(2 * math.pi * c["ell"][j] * x / 16.0 + c["phi"][j]) for j in range(5))
        torch.testing.assert_close(u0[row], expected, rtol=0, atol=1e-14)


def test_sample_parameters_ranges_and_reproducibility() -> None:
    n = 400
    e2 = PROBLEMS.build("mppde_e2").sample_parameters(ids(n))
    e3 = PROBLEMS.build("mppde_e3").sample_parameters(ids(n))
    e1 = PROBLEMS.build("mppde_e1").sample_parameters(ids(n))
    for params in (e1, e2, e3):
        assert set(params) == {"alpha", "beta", "gamma"}
        assert all(v.shape == (n,) and v.dtype == np.float64 for v in params.values())
    assert (e1["alpha"] == 1).all() and (e1["beta"] == 0).all() and (e1["gamma"] == 0).all()
    assert (e2["alpha"] == 1).all() and (e2["gamma"] == 0).all()
    for values, top in ((e2["beta"], 0.2), (e3["alpha"], 3.0), (e3["beta"], 0.4), (e3["gamma"], 1.0)):
        assert values.min() >= 0 and values.max() < top
        assert values.min() < 0.02 * top and values.max() > 0.98 * top  # spread over the range
        assert abs(values.mean() / top - 0.5) < 0.05
    # pure function of the ids: any subset, any order, recomputed alone
    again = PROBLEMS.build("mppde_e3").sample_parameters(ids(n)[[7, 3]])
    for k in e3:
        np.testing.assert_array_equal(again[k], e3[k][[7, 3]])
    # the uniforms are drawn after the forcing from the sample's generator
    _, u = sample_draws(5, 11)
    assert e3["alpha"][11] == 3.0 * float(u[0]) and e3["beta"][11] == 0.4 * float(u[1]) and e2["beta"][11] == 0.2 * float(u[1])
    # ranges follow the problem's fields
    narrow = PROBLEMS.build("mppde_e3", alpha_max=1.5).sample_parameters(ids(3))
    np.testing.assert_array_equal(narrow["alpha"], e3["alpha"][:3] / 2)
    # the equation the solver steps holds exactly these values
    eq = PROBLEMS.build("mppde_e3").equation_for(ids(6))
    np.testing.assert_array_equal(eq.alpha.numpy(), e3["alpha"][:6])
    np.testing.assert_array_equal(eq.gamma.numpy(), e3["gamma"][:6])
    assert eq.batch_size == 6


def test_base_problem_has_no_per_sample_parameters_and_ids_must_be_valid() -> None:
    assert Problem.sample_parameters(PROBLEMS.build("burgers1d"), ids(3)) == {}
    assert PROBLEMS.build("burgers1d").sample_parameters(ids(3)) == {}
    with pytest.raises(ValueError, match="non-negative"):
        PROBLEMS.build("mppde_e2").equation_for(np.array([[-1, 0]]))
