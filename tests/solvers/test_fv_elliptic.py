"""The finite-volume steady solver (``fv-elliptic``) and the ``darcy3d`` problem it solves.

Truths: manufactured solutions with a smooth non-constant coefficient (the scheme's observed order is
2 in 2-D and 3-D), SciPy's sparse LU against the two PCG methods (agreement within the bound
cond(A) * tol that the residual tolerance implies), the true residual of every answer, pcg itself for
a custom preconditioner, and the file read back against the solver's own output.
"""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse.linalg as spla
import torch

from pdebench.data.generate import generate_dataset, solve_samples
from pdebench.io.trajectory_file import read_trajectories
from pdebench.problems import PROBLEMS
from pdebench.problems.elliptic import Darcy3D
from pdebench.problems.elliptic_matrices import darcy_coefficient
from pdebench.solvers import SOLVERS
from pdebench.solvers.fv.elliptic import FVEllipticSolver, elliptic_system
from pdebench.solvers.linalg import Preconditioner, make_preconditioner, pcg

PI = np.pi


def nodes(n: int, dim: int) -> list[np.ndarray]:
    """The ``(n + 2)^dim`` grid ``x_j = j / (n + 1)``, boundary included, as ``dim`` coordinate arrays."""
    x = np.linspace(0.0, 1.0, n + 2)
    return np.meshgrid(*([x] * dim), indexing="ij")


def manufactured_3d(n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    r"""``u = sin(pi x) sin(pi y) sin(pi z)``, ``a = 1 + x y z``, ``f = -div(a grad u)``
    ``= 3 pi^2 a u - pi (yz cos(pi x) sin(pi y) sin(pi z) + xz sin(pi x) cos(pi y) sin(pi z) + xy sin(pi x) sin(pi y) cos(pi z))``."""
    x, y, z = nodes(n, 3)
    sx, sy, sz = np.sin(PI * x), np.sin(PI * y), np.sin(PI * z)
    cx, cy, cz = np.cos(PI * x), np.cos(PI * y), np.cos(PI * z)
    a, u = 1.0 + x * y * z, sx * sy * sz
    f = 3 * PI**2 * a * u - PI * (y * z * cx * sy * sz + x * z * sx * cy * sz + x * y * sx * sy * cz)
    return a, f, u


def manufactured_2d(n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    r"""``u = sin(pi x) sin(pi y)``, ``a = exp(x - y / 2)``, ``f = 2 pi^2 a u - pi a (cos(pi x) sin(pi y) - sin(pi x) cos(pi y) / 2)``."""
    x, y = nodes(n, 2)
    a, u = np.exp(x - y / 2), np.sin(PI * x) * np.sin(PI * y)
    f = 2 * PI**2 * a * u - PI * a * (np.cos(PI * x) * np.sin(PI * y) - np.sin(PI * x) * np.cos(PI * y) / 2)
    return a, f, u


@pytest.mark.parametrize(("manufactured", "sizes"), [(manufactured_3d, (8, 16, 32)), (manufactured_2d, (16, 32, 64))])
def test_the_scheme_is_second_order_in_the_max_norm_for_a_smooth_coefficient(manufactured, sizes):
    solver = FVEllipticSolver(method="amg-pcg", tol=1e-12)  # algebraic error far below the discretisation's
    errors, steps = [], []
    for n in sizes:
        a, f, exact = manufactured(n)
        u, result = solver.solve_field(a, f)
        assert result.residual <= 1e-12
        errors.append(np.abs(u - exact).max())
        steps.append(1.0 / (n + 1))
    orders = np.diff(np.log(errors)) / np.diff(np.log(steps))
    assert np.all(np.abs(orders - 2.0) <= 0.2), (errors, orders)


def true_residual(a: np.ndarray, u: np.ndarray, f: float = 1.0) -> float:
    """``||b - A u|| / ||b||`` of the grid solution ``u`` (its interior) for coefficient ``a``."""
    A, b = elliptic_system(a, f)
    x = np.asarray(u)[(slice(1, -1),) * a.ndim].ravel()
    return float(np.linalg.norm(b - A @ x) / np.linalg.norm(b))


def test_direct_amg_and_ic0_agree_within_what_the_tolerance_allows():
    problem = Darcy3D(resolution=12)
    a = problem.sample_inputs(4, [0, 1])
    tol = 1e-8
    out = {m: SOLVERS.build("fv-elliptic", method=m, tol=tol).solve(problem, a, [(4, 0), (4, 1)]) for m in ("direct", "amg-pcg", "ic0-pcg")}
    direct = out["direct"].fields["tensor"][:, 0].numpy()
    for i in range(2):
        A, _ = elliptic_system(a[i].numpy(), 1.0)
        extremes = np.linalg.eigvalsh(A.toarray())[[0, -1]]
        bound = extremes[1] / extremes[0] * tol  # ||x - x*|| / ||x*|| <= cond(A) ||r|| / ||b||
        for method in ("amg-pcg", "ic0-pcg"):
            u = out[method].fields["tensor"][i, 0].numpy()
            assert true_residual(a[i].numpy(), u) <= tol
            assert np.linalg.norm(u - direct[i]) <= bound * np.linalg.norm(direct[i])
        assert true_residual(a[i].numpy(), direct[i]) <= 1e-12
    for method, traj in out.items():
        assert traj.provenance["method"] == method and len(traj.provenance["iterations_per_sample"]) == 2
        assert traj.provenance["warm_start"] is False
    assert out["direct"].provenance["iterations_per_sample"] == [0, 0] and "preconditioner" not in out["direct"].provenance
    assert out["ic0-pcg"].provenance["preconditioner"] == "ic0" and out["amg-pcg"].provenance["preconditioner"] == "amg"
    assert all(i > 0 for i in out["ic0-pcg"].provenance["iterations_per_sample"])


def smooth_bump(shape: tuple[int, ...]) -> np.ndarray:
    """``sin(pi x) sin(pi y) sin(pi z)`` on the grid of ``shape``, unit max."""
    axes = [np.sin(PI * np.linspace(0.0, 1.0, s)) for s in shape]
    return axes[0][:, None, None] * axes[1][None, :, None] * axes[2][None, None, :]


def test_a_warm_start_meets_the_same_tolerance_in_fewer_iterations_and_the_exact_one_in_none():
    problem = Darcy3D(resolution=18)
    ids = [(2, 0), (2, 1)]
    a = problem.sample_inputs(2, [0, 1])
    exact = SOLVERS.build("fv-elliptic", method="direct").solve(problem, a, ids).fields["tensor"][:, 0]
    bump = torch.from_numpy(smooth_bump(problem.spatial_shape))
    size = exact.flatten(1).norm(dim=1) / bump.norm()
    near = exact + 1e-3 * size[:, None, None, None] * bump  # relative error 1e-3, a smooth one

    cold = SOLVERS.build("fv-elliptic", method="ic0-pcg").solve(problem, a, ids)
    warm = SOLVERS.build("fv-elliptic", method="ic0-pcg", initial_guess=lambda coefficients: near).solve(problem, a, ids)
    for traj in (cold, warm):
        for i in range(2):
            assert true_residual(a[i].numpy(), traj.fields["tensor"][i, 0].numpy()) <= 1e-8
    assert warm.provenance["warm_start"] is True and cold.provenance["warm_start"] is False
    assert all(w < c for w, c in zip(warm.provenance["iterations_per_sample"], cold.provenance["iterations_per_sample"]))

    seen = []

    def guess(coefficients: torch.Tensor) -> torch.Tensor:
        seen.append(coefficients)
        return exact

    again = SOLVERS.build("fv-elliptic", method="amg-pcg", initial_guess=guess).solve(problem, a, ids)
    assert again.provenance["iterations_per_sample"] == [0, 0]
    assert len(seen) == 1 and seen[0].dtype == torch.float64 and torch.equal(seen[0], a)
    torch.testing.assert_close(again.fields["tensor"][:, 0], exact, rtol=0, atol=1e-12 * float(exact.abs().max()))


def test_a_custom_preconditioner_is_the_one_cg_uses_and_its_kind_is_recorded():
    problem = Darcy3D(resolution=10)
    a = problem.sample_inputs(0, [0, 1, 2])
    built: list[int] = []

    def learned(A) -> Preconditioner:
        built.append(A.shape[0])
        jacobi = make_preconditioner(A, "jacobi")
        return Preconditioner("learned-jacobi", jacobi.apply, jacobi.gram)

    traj = SOLVERS.build("fv-elliptic", method="pcg", preconditioner=learned).solve(problem, a)
    expected = []
    for sample in a.numpy():
        A, b = elliptic_system(sample, problem.forcing)
        expected.append(pcg(A, b, make_preconditioner(A, "jacobi"), tol=1e-8, maxiter=1000).iterations)
    assert traj.provenance["preconditioner"] == "learned-jacobi" and traj.provenance["method"] == "pcg"
    assert traj.provenance["iterations_per_sample"] == expected and built == [512] * 3
    auto = SOLVERS.build("fv-elliptic", preconditioner=lambda A: make_preconditioner(A, "jacobi")).solve(problem, a[:1])
    assert auto.provenance["method"] == "pcg" and auto.provenance["preconditioner"] == "jacobi"


def test_pcg_from_a_guess_stops_on_the_residual_relative_to_b():
    A, b = elliptic_system(darcy_coefficient(8, 0, 0, dim=3), 1.0)
    x = spla.spsolve(A.tocsc(), b)
    M = make_preconditioner(A, "jacobi")
    cold = pcg(A, b, M, tol=1e-8)
    start = x * (1 + 1e-4)  # ||r0|| / ||b|| = 1e-4
    warm = pcg(A, b, M, tol=1e-8, x0=start)
    assert warm.residuals[0] <= 1e-4 * 1.01  # measured against ||b||, not against ||r0||
    assert np.linalg.norm(b - A @ warm.x) <= 1e-8 * np.linalg.norm(b) and warm.iterations < cold.iterations
    assert pcg(A, b, M, tol=1e-8, x0=x).iterations == 0
    with pytest.raises(ValueError, match=r"x0 must be finite with the right-hand side's shape \(512,\), got shape \(3,\)"):
        pcg(A, b, M, x0=np.zeros(3))


def test_generate_darcy3d_round_trip_through_the_file(tmp_path):
    problem = PROBLEMS.build("darcy3d", resolution=9)
    path = tmp_path / "d3.h5"
    summary = generate_dataset(problem, path, num_samples=3, seed=5, batch_size=2, solver_kwargs={"method": "ic0-pcg"})
    assert summary.field_shapes == {"nu": (3, 1, 9, 9, 9), "tensor": (3, 1, 9, 9, 9)}
    stored = read_trajectories(path)
    solved = solve_samples(problem, SOLVERS.build("fv-elliptic", method="ic0-pcg"), 5, np.arange(3))
    assert stored.sample_ids.tolist() == [[5, i] for i in range(3)]
    assert torch.equal(stored.fields["nu"], solved.fields["nu"].float())
    assert torch.equal(stored.fields["tensor"], solved.fields["tensor"].float())
    assert set(np.unique(stored.fields["nu"].numpy())) == {3.0, 12.0}
    assert sorted(stored.coords) == ["t", "x", "y", "z"] and np.allclose(stored.coords["z"], np.linspace(0, 1, 9))
    provenance = stored.provenance
    iterations = solved.provenance["iterations_per_sample"]
    assert provenance["iterations_per_sample"] == iterations  # two batches, one list in sample order
    assert provenance["mean_iterations"] == pytest.approx(np.mean(iterations))
    assert provenance["method"] == "ic0-pcg" and provenance["preconditioner"] == "ic0" and provenance["warm_start"] is False


@pytest.mark.parametrize(("build", "message"), [
    (lambda: PROBLEMS.build("darcy3d", resolution=4), "resolution must be an integer >= 5, got 4"),
    (lambda: PROBLEMS.build("darcy3d", a_low=0.0), "permeabilities must be positive and finite, got a_high=12.0, a_low=0.0"),
    (lambda: PROBLEMS.build("darcy3d", a_low=-3.0), "a_low=-3.0"),
    (lambda: PROBLEMS.build("darcy3d", tau=float("nan")), "need finite tau > 0 and alpha > 0, got tau=nan"),
    (lambda: SOLVERS.build("fv-elliptic", tol=0.0), r"tol must be in \(0, 1\), got 0.0"),
    (lambda: SOLVERS.build("fv-elliptic", tol=1.0), r"tol must be in \(0, 1\), got 1.0"),
    (lambda: FVEllipticSolver(method="lu"), "unknown method 'lu'; choose one of auto, direct, amg-pcg, ic0-pcg, pcg"),
    (lambda: FVEllipticSolver(method="pcg"), "method 'pcg' needs a preconditioner callable"),
    (lambda: FVEllipticSolver(method="direct", initial_guess=lambda a: a), "method 'direct' takes no initial_guess"),
    (lambda: FVEllipticSolver(method="amg-pcg", preconditioner=lambda A: None), "got method 'amg-pcg'"),
])
def test_bad_parameters_are_one_line_errors_naming_the_value(build, message):
    with pytest.raises(ValueError, match=message) as caught:
        build()
    assert "\n" not in str(caught.value)


def test_a_guess_of_the_wrong_shape_is_refused():
    problem = Darcy3D(resolution=6)
    solver = FVEllipticSolver(method="amg-pcg", initial_guess=lambda a: a[:, 1:])
    with pytest.raises(ValueError, match=r"initial_guess returned shape \(1, 5, 6, 6\); expected finite guesses of the inputs' shape \(1, 6, 6, 6\)"):
        solver.solve(problem, problem.sample_inputs(0, [0]))


def test_darcy3d_is_darcy_coefficient_in_3d_and_one_field_at_every_resolution():
    problem = Darcy3D(resolution=12)
    np.testing.assert_array_equal(problem.sample_inputs(7, [3])[0].numpy(), darcy_coefficient(10, 7, 3, dim=3))
    coarse, fine = Darcy3D(resolution=7).sample_inputs(1, [0]), Darcy3D(resolution=13).sample_inputs(1, [0])
    torch.testing.assert_close(coarse, fine[:, ::2, ::2, ::2], rtol=0, atol=0)  # nested nodes: the same field
