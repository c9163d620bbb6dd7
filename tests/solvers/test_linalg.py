"""The one CG (pdebench.solvers.linalg) and its preconditioner factory against independent truths.

Truths: ``scipy.sparse.linalg.spsolve`` solutions and residuals recomputed here; dense Cholesky for
IC(0) on a tridiagonal matrix; the analytic eigenvectors of the 2-D five-point Laplacian
(:math:`\\sin(p\\pi x)\\sin(q\\pi y)`), so that deflating them is compared with plain CG on the
right-hand side with those modes removed by hand. Iteration counts are compared between runs of
the same code, never times.
"""

from __future__ import annotations

import numpy as np
import pytest
import scipy.linalg as sla
import scipy.sparse as sp
import scipy.sparse.linalg as spla

from pdebench.problems.elliptic_matrices import darcy_coefficient, poisson_matrix
from pdebench.solvers.linalg import (DeflatedCG, ResidualMonitor, SolveResult, cholesky_factor_preconditioner, deflated_cg,
                                     direct_solve, ichol0, make_preconditioner, pcg, solve_sequence)


def relative_residual(A, x, b) -> float:
    return float(np.linalg.norm(b - A @ x) / np.linalg.norm(b))


def poisson_modes(n: int, count: int) -> tuple[np.ndarray, np.ndarray]:
    """The ``count`` smallest eigenpairs of ``poisson_matrix(ones((n + 2, n + 2)))``, analytically.

    Eigenvectors :math:`\\sin(p\\pi x_i)\\sin(q\\pi y_j)` (C order, orthonormalised), eigenvalues
    :math:`(4/h^2)(\\sin^2(p\\pi h/2) + \\sin^2(q\\pi h/2))`, ``h = 1/(n+1)``: ``(count,)``, ``(n^2, count)``.
    """
    h = 1.0 / (n + 1)
    x = np.arange(1, n + 1) * h
    pq = sorted(((p, q) for p in range(1, 8) for q in range(1, 8)),
                key=lambda t: np.sin(t[0] * np.pi * h / 2) ** 2 + np.sin(t[1] * np.pi * h / 2) ** 2)[:count]
    lam = np.array([(4 / h**2) * (np.sin(p * np.pi * h / 2) ** 2 + np.sin(q * np.pi * h / 2) ** 2) for p, q in pq])
    V = np.stack([np.outer(np.sin(p * np.pi * x), np.sin(q * np.pi * x)).ravel() for p, q in pq], axis=1)
    return lam, V / np.linalg.norm(V, axis=0)


def test_ic0_exact_on_tridiagonal():
    rng = np.random.default_rng(0)
    n = 30
    off = rng.uniform(-1, -0.1, n - 1)
    A = sp.csr_array(sp.diags_array([off, 2.5 + rng.uniform(0, 1, n), off], offsets=[-1, 0, 1]))
    L = ichol0(A)
    L_dense = np.linalg.cholesky(A.toarray())
    assert np.allclose(L.toarray(), L_dense, atol=1e-12)


def test_ic0_matches_a_on_pattern():
    A = poisson_matrix(darcy_coefficient(8, seed=1))
    L = ichol0(A)
    LLt = (L @ L.T).toarray()
    mask = A.toarray() != 0
    assert np.allclose(LLt[mask], A.toarray()[mask], rtol=1e-10)
    with pytest.raises(ValueError, match="pivot"):
        ichol0(sp.csr_array(np.array([[1.0, 2.0], [2.0, 1.0]])))


@pytest.mark.parametrize("dim", [2, 3])
def test_ic0_applies_l_lt_inverse_by_triangular_solves(dim):
    """``apply`` is L^{-T} L^{-1} r and ``gram`` W^T L L^T W, against dense triangular solves (the shared
    ``cholesky_factor_preconditioner``, which the learned factor goes through too)."""
    A = poisson_matrix(darcy_coefficient(9 if dim == 2 else 5, seed=2, dim=dim))
    L = ichol0(A).toarray()
    M = make_preconditioner(A, "ic0")
    rng = np.random.default_rng(0)
    r = rng.standard_normal(A.shape[0])
    expected = sla.solve_triangular(L.T, sla.solve_triangular(L, r, lower=True), lower=False)
    np.testing.assert_allclose(M.apply(r), expected, rtol=1e-12, atol=1e-14 * np.abs(expected).max())
    z = r + 1j * rng.standard_normal(A.shape[0])  # complex vectors part by part
    np.testing.assert_allclose(M.apply(z), np.linalg.solve(L @ L.T, z), rtol=1e-9)
    W = rng.standard_normal((A.shape[0], 4))
    np.testing.assert_allclose(M.gram(W), W.T @ L @ L.T @ W, rtol=1e-12)
    assert M.kind == "ic0" and cholesky_factor_preconditioner(sp.csr_array(L), "mine", setup_time=2.0).setup_time >= 2.0


def test_cholesky_factor_preconditioner_refuses_bad_factors():
    with pytest.raises(ValueError, match="must be lower triangular; it has 1 non-zeros above the diagonal"):
        cholesky_factor_preconditioner(sp.csr_array(np.array([[1.0, 2.0], [0.0, 1.0]])))
    with pytest.raises(ValueError, match=r"finite non-zero diagonal; L\[1, 1\] = 0.0"):
        cholesky_factor_preconditioner(sp.csr_array(np.array([[1.0, 0.0], [2.0, 0.0]])))
    with pytest.raises(ValueError, match="non-finite entries"):
        cholesky_factor_preconditioner(sp.csr_array(np.array([[1.0, 0.0], [np.nan, 1.0]])))
    with pytest.raises(ValueError, match="must be square"):
        cholesky_factor_preconditioner(sp.csr_array(np.ones((2, 3))))


@pytest.mark.parametrize("kind", ["none", "jacobi", "ic0", "amg"])
def test_pcg_baselines_converge(kind):
    A = poisson_matrix(darcy_coefficient(16, seed=0))
    b = np.random.default_rng(1).standard_normal(A.shape[0])
    res = pcg(A, b, make_preconditioner(A, kind), tol=1e-8)
    assert res.converged
    assert np.linalg.norm(b - A @ res.x) <= 1.01e-8 * np.linalg.norm(b)
    assert res.residuals.shape == (res.iterations + 1,)


def test_ic0_fewer_iterations_than_cg():
    A = poisson_matrix(darcy_coefficient(24, seed=0))
    b = np.random.default_rng(1).standard_normal(A.shape[0])
    it_cg = pcg(A, b, None, 1e-6).iterations
    it_ic = pcg(A, b, make_preconditioner(A, "ic0"), 1e-6).iterations
    assert it_ic < it_cg / 2


# ---------------------------------------------------------------------------------------------
# The one CG against spsolve
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("kind", ["none", "jacobi", "ic0", "amg"])
def test_one_cg_solves_a_random_spd_system_to_tolerance(kind):
    rng = np.random.default_rng(4)
    n = 400
    B = sp.random_array((n, n), density=0.02, random_state=rng, format="csr")
    A = sp.csr_array(B @ B.T + sp.diags_array(rng.uniform(0.1, 1.0, n)))  # SPD, cond ~ 1e2..1e3
    b = rng.standard_normal(n)
    exact = spla.spsolve(sp.csc_array(A), b)
    tol = 1e-10
    res = pcg(A, b, make_preconditioner(A, kind), tol=tol, maxiter=5 * n)
    assert isinstance(res, SolveResult) and res.converged
    rr = relative_residual(A, res.x, b)
    assert rr <= tol and res.residual == pytest.approx(rr, rel=1e-12)
    cond = np.linalg.cond(A.toarray())
    assert np.linalg.norm(res.x - exact) / np.linalg.norm(exact) <= cond * tol
    assert res.residuals.shape == (res.iterations + 1,) and res.residuals[0] == 1.0
    assert res.residuals[-1] <= tol and np.all(res.residuals[:-1] > tol)  # stops at the first iterate below tol
    # the class, the one-shot deflated form and pcg are the same loop
    again = DeflatedCG(n_recycle=0).solve(A, b, make_preconditioner(A, kind) if kind != "amg" else None, tol=tol)
    if kind != "amg":
        assert again.iterations == res.iterations and np.array_equal(again.residuals, res.residuals)


def test_preconditioners_cut_cg_iterations_on_2d_poisson():
    n = 40
    A = poisson_matrix(darcy_coefficient(n, seed=2))
    b = np.random.default_rng(0).standard_normal(n * n)
    exact = spla.spsolve(sp.csc_array(A), b)
    its = {}
    for kind in ("none", "jacobi", "ic0", "amg"):
        res = pcg(A, b, make_preconditioner(A, kind), tol=1e-8)
        assert res.converged and relative_residual(A, res.x, b) <= 1e-8
        assert np.linalg.norm(res.x - exact) / np.linalg.norm(exact) <= 1e-5
        its[kind] = res.iterations
    assert its["jacobi"] < its["none"]
    assert its["ic0"] < its["jacobi"] and its["ic0"] < its["none"] / 2
    assert its["amg"] < its["ic0"] and its["amg"] < its["none"] / 5


@pytest.mark.parametrize("count", [4, 12])
def test_deflating_exact_eigenvectors_removes_their_iterations(count):
    n = 30
    A = poisson_matrix(np.ones((n + 2, n + 2)))
    lam, V = poisson_modes(n, count)
    assert np.allclose(A @ V, V * lam, rtol=0, atol=1e-8 * lam.max())  # they are eigenvectors
    b = np.random.default_rng(1).standard_normal(n * n)
    exact = spla.spsolve(sp.csc_array(A), b)
    tol = 1e-10
    plain = deflated_cg(A, b, tol=tol)
    deflated = deflated_cg(A, b, V, tol=tol)
    # CG on the right-hand side with those modes removed by hand, to the same absolute residual
    b_rest = b - V @ (V.T @ b)
    rest = deflated_cg(A, b_rest, tol=tol * np.linalg.norm(b) / np.linalg.norm(b_rest))
    for r in (plain, deflated):
        assert r.converged and relative_residual(A, r.x, b) <= tol
        assert np.linalg.norm(r.x - exact) / np.linalg.norm(exact) <= 1e-7
    assert abs(deflated.iterations - rest.iterations) <= 1
    assert deflated.iterations < plain.iterations
    # the error is A-orthogonal to W from the start: the modes' components are exact
    assert np.allclose(V.T @ deflated.x, V.T @ exact, rtol=1e-9, atol=1e-12 * np.abs(V.T @ exact).max())


def test_recycled_cg_with_ic0_uses_its_gram_and_matches_spsolve():
    n = 20
    As = [poisson_matrix(darcy_coefficient(n, seed=5, index=i)) for i in range(4)]
    b = np.random.default_rng(2).standard_normal(n * n)
    L = ichol0(As[0])
    W = np.random.default_rng(3).standard_normal((n * n, 3))
    M = make_preconditioner(As[0], "ic0")
    assert np.allclose(M.gram(W), W.T @ (L @ (L.T @ W)), rtol=1e-12)  # W^T L L^T W
    plain = solve_sequence(As, b, "pcg", tol=1e-10, preconditioner="ic0")
    skr = solve_sequence(As, b, "skr-cg", tol=1e-10, preconditioner="ic0", n_recycle=8)
    for A, x in zip(As, skr.solutions):
        exact = spla.spsolve(sp.csc_array(A), b)
        assert np.linalg.norm(x - exact) / np.linalg.norm(exact) <= 1e-7
    assert skr.converged.all() and skr.total_iterations < plain.total_iterations


# ---------------------------------------------------------------------------------------------
# The shared stopping rule, the direct solve and bad input
# ---------------------------------------------------------------------------------------------
def test_residual_monitor_confirms_on_the_true_residual():
    A = poisson_matrix(np.ones((6, 6)))
    b = np.ones(16)
    x = spla.spsolve(sp.csc_array(A), b)
    monitor = ResidualMonitor(A, b, 1e-8)
    assert monitor.history == [1.0] and not monitor.reached()
    assert monitor.record(1e-9 * np.linalg.norm(b)) and monitor.confirm(x) is None
    wrong = ResidualMonitor(A, b, 1e-8)
    wrong.record(0.0)  # a carried residual that drifted to zero
    r_true = wrong.confirm(np.zeros(16))
    assert np.array_equal(r_true, b) and wrong.history[-1] == 1.0 and not wrong.reached()
    assert ResidualMonitor(A, np.zeros(16), 1e-8).reached()


def test_direct_solve_matches_spsolve():
    A = poisson_matrix(darcy_coefficient(10, seed=0))
    b = np.random.default_rng(0).standard_normal(100)
    res = direct_solve(A, b, residual=True)
    assert res.iterations == 0 and res.converged and res.residual <= 1e-12
    assert np.allclose(res.x, spla.spsolve(sp.csc_array(A), b), rtol=1e-12, atol=0)


def test_pcg_bad_input_and_zero_rhs():
    A = poisson_matrix(np.ones((6, 6)))
    with pytest.raises(ValueError, match=r"right-hand side has shape \(3,\)"):
        pcg(A, np.ones(3))
    with pytest.raises(ValueError, match="tol must be a positive number"):
        pcg(A, np.ones(16), tol=0.0)
    with pytest.raises(ValueError, match="unknown preconditioner 'ilu0'"):
        make_preconditioner(A, "ilu0")
    zero = pcg(A, np.zeros(16))
    assert zero.converged and zero.iterations == 0 and not zero.x.any()
