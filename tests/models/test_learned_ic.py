"""The learned incomplete-Cholesky preconditioner (pdebench.models.learned_ic): M = L L^T SPD by construction,
L on the pattern of tril(A), the triangular solves and PCG against independent references, training."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.linalg as sla
import scipy.sparse as sp
import scipy.sparse.linalg as spla
import torch

from pdebench.core.graphs import matrix_graph
from pdebench.models import MODELS
from pdebench.models.dcdm import SymmetricDCDMNet, save_dcdm
from pdebench.models.learned_ic import (DIAGONAL_FLOOR, LearnedIC, factor_entries, factor_gram_product, initial_guess,
                                        learned_ic_preconditioner, load_learned_ic, save_learned_ic)
from pdebench.problems.elliptic_matrices import darcy_coefficient, poisson_matrix
from pdebench.solvers.linalg import pcg
from pdebench.training.learned_ic_fit import LearnedICTrainConfig, factor_loss, solution_pairs, train_learned_ic


def darcy(n: int, dim: int, index: int = 0, seed: int = 1_000_000) -> sp.csr_array:
    return poisson_matrix(darcy_coefficient(n, seed, index, dim=dim))


def randomised(net: LearnedIC, seed: int = 0, std: float = 0.3) -> LearnedIC:
    """``net`` with every weight (the zero-initialised heads included) drawn from N(0, std^2)."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in net.parameters():
            p.copy_(std * torch.randn(p.shape, generator=gen))
    return net


def pattern(M) -> set[tuple[int, int]]:
    coo = sp.coo_array(M)
    keep = coo.data != 0
    return set(zip(coo.row[keep].tolist(), coo.col[keep].tolist()))


# --------------------------------------------------------------------------- the factor
@pytest.mark.parametrize(("dim", "n"), [(2, 7), (3, 4)])
def test_random_weights_give_an_spd_m_on_the_pattern_of_tril_a(dim, n):
    A = darcy(n, dim)
    for seed in range(3):
        L = randomised(LearnedIC(width=8, layers=2), seed).factor(A)
        assert pattern(L) == pattern(sp.tril(A))  # exactly the pattern of tril(A), nothing above the diagonal
        dense = L.toarray()
        assert np.all(np.diag(dense) > 0)
        M = dense @ dense.T
        assert np.linalg.eigvalsh((M + M.T) / 2).min() > 0
    # however negative the diagonal outputs, the floor keeps L_ii >= 1e-3 sqrt(A_ii) > 0 (softplus underflows to 0)
    net = LearnedIC(width=4, layers=1)
    with torch.no_grad():
        net.diagonal_head.bias.fill_(-1e4)
    diagonal = net.factor(A).diagonal()
    np.testing.assert_allclose(diagonal, DIAGONAL_FLOOR * np.sqrt(A.diagonal()), rtol=1e-12)


def test_untrained_network_is_symmetric_gauss_seidel():
    """Zero heads: L = (D + E) D^{-1/2} (A = D + E + E^T), the diagonal times 1 + floor."""
    A = darcy(6, 2)
    L = LearnedIC(width=8, layers=2).factor(A).toarray()
    dense = A.toarray()
    D = np.diag(dense)
    expected = np.tril(dense, -1) / np.sqrt(D)[None, :] + np.diag(np.sqrt(D) * (1 + DIAGONAL_FLOOR))
    np.testing.assert_allclose(L, expected, rtol=1e-6, atol=0)


def test_the_factor_is_scale_equivariant():
    """The inputs are divided per matrix (max |diag|), so L(cA) = sqrt(c) L(A): any h, any coefficient scale."""
    A = darcy(8, 2)
    net = randomised(LearnedIC(width=8, layers=2), 3, std=0.3)
    L1, L2 = net.factor(A), net.factor(1e4 * A)
    np.testing.assert_allclose(L2.toarray(), 100.0 * L1.toarray(), rtol=1e-5, atol=0)


def test_factor_gram_product_is_l_lt_x():
    A = darcy(5, 3)
    net = randomised(LearnedIC(width=4, layers=1), 1, std=0.3)
    graph = matrix_graph(A)
    t_lower, t_diag = (t.double() for t in net(graph))
    lower, diagonal = factor_entries(graph, t_lower, t_diag)
    X = torch.randn(A.shape[0], 3, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    L = net.factor(A).toarray()
    np.testing.assert_allclose(factor_gram_product(graph, lower, diagonal, X).detach().numpy(), L @ L.T @ X.numpy(), rtol=1e-10)


def test_bad_matrices_are_refused():
    with pytest.raises(ValueError, match=r"positive diagonal \(A SPD\); A\[1, 1\] = -1.0"):
        LearnedIC().factor(sp.csr_array(np.array([[2.0, 0.5], [0.5, -1.0]])))
    with pytest.raises(ValueError, match="must be square"):
        LearnedIC().factor(sp.csr_array(np.ones((2, 3))))
    with pytest.raises(ValueError, match="in_channels and out_channels must be 1"):
        LearnedIC(in_channels=2)
    with pytest.raises(ValueError, match="width must be >= 1"):
        LearnedIC(width=0)


# --------------------------------------------------------------------------- the preconditioner in PCG
@pytest.mark.parametrize("dim", [2, 3])
def test_triangular_solves_agree_with_scipy_dense(dim):
    A = darcy(6 if dim == 2 else 4, dim)
    net = randomised(LearnedIC(width=8, layers=2), 4, std=0.3)
    M = learned_ic_preconditioner(net, A)
    assert M.kind == "learned_ic" and M.setup_time > 0
    L = net.factor(A).toarray()
    rng = np.random.default_rng(0)
    r = rng.standard_normal(A.shape[0])
    expected = sla.solve_triangular(L.T, sla.solve_triangular(L, r, lower=True), lower=False)
    np.testing.assert_allclose(M.apply(r), expected, rtol=1e-12, atol=1e-14 * np.abs(expected).max())
    W = rng.standard_normal((A.shape[0], 3))
    np.testing.assert_allclose(M.gram(W), W.T @ L @ L.T @ W, rtol=1e-12)


def textbook_pcg(A: np.ndarray, b: np.ndarray, Minv: np.ndarray, tol: float, maxiter: int):
    """Hestenes-Stiefel PCG from x0 = 0 with a dense M^{-1}; stops at ||r|| <= tol ||b||."""
    x = np.zeros_like(b)
    r = b.copy()
    z = Minv @ r
    p = z.copy()
    history = [1.0]
    for _ in range(maxiter):
        Ap = A @ p
        alpha = (r @ z) / (p @ Ap)
        x = x + alpha * p
        r_new = r - alpha * Ap
        history.append(np.linalg.norm(r_new) / np.linalg.norm(b))
        if history[-1] <= tol:
            break
        z_new = Minv @ r_new
        p = z_new + (r_new @ z_new) / (r @ z) * p
        r, z = r_new, z_new
    return x, np.array(history)


def test_pcg_with_the_learned_factor_is_textbook_pcg_with_the_same_m():
    A = darcy(10, 2)
    net = randomised(LearnedIC(width=8, layers=2), 5, std=0.2)
    L = net.factor(A).toarray()
    b = np.random.default_rng(1).standard_normal(A.shape[0])
    ours = pcg(A, b, learned_ic_preconditioner(net, A), tol=1e-10, maxiter=500)
    x, history = textbook_pcg(A.toarray(), b, np.linalg.inv(L @ L.T), 1e-10, 500)
    assert ours.converged and ours.iterations == len(history) - 1
    # the iterates agree: the residual norm of every iteration, and the solution
    np.testing.assert_allclose(ours.residuals[: len(history) - 3], history[:-3], rtol=1e-5)
    np.testing.assert_allclose(ours.x, x, rtol=0, atol=1e-9 * np.abs(x).max())
    # and scipy's PCG with M^{-1} as a LinearOperator needs as many iterations (within one: its stopping test)
    count = [0]
    Minv = spla.LinearOperator(A.shape, matvec=lambda v: sla.cho_solve((L, True), v))
    _, info = spla.cg(A, b, rtol=1e-10, atol=0.0, M=Minv, callback=lambda _: count.__setitem__(0, count[0] + 1))
    assert info == 0 and abs(count[0] - ours.iterations) <= 1


def test_initial_guess_is_m_inverse_b():
    A = darcy(8, 2)
    M = learned_ic_preconditioner(randomised(LearnedIC(width=4, layers=1), 2, std=0.3), A)
    b = np.random.default_rng(3).standard_normal(A.shape[0])
    L = randomised(LearnedIC(width=4, layers=1), 2, std=0.3).factor(A)
    x0 = initial_guess(M, b)
    assert np.linalg.norm(L @ (L.T @ x0) - b) <= 1e-12 * np.linalg.norm(b)


# --------------------------------------------------------------------------- training
def test_training_reduces_the_loss_pcg_iterations_and_the_guess_error():
    torch.manual_seed(0)
    net = LearnedIC(width=8, layers=2)
    systems = [poisson_matrix(darcy_coefficient(12, 0, i)) for i in range(2)]  # training seeds
    history = train_learned_ic(net, systems, LearnedICTrainConfig(steps=40, batch=8, lr=3e-3, rhs_per_system=16))
    assert np.mean(history.loss[-5:]) < 0.5 * np.mean(history.loss[:5])
    untrained = LearnedIC(width=8, layers=2)
    for index in range(2):  # held-out systems, another size
        A = darcy(16, 2, index)
        X, B = solution_pairs(A, 4, np.random.default_rng(index))
        trained_M, untrained_M = learned_ic_preconditioner(net, A), learned_ic_preconditioner(untrained, A)
        for k in range(B.shape[1]):
            b, x = B[:, k], X[:, k]
            assert pcg(A, b, trained_M, 1e-8).iterations < pcg(A, b, untrained_M, 1e-8).iterations
            error = [np.linalg.norm(initial_guess(M, b) - x) / np.linalg.norm(x) for M in (trained_M, untrained_M)]
            assert error[0] < error[1]
    # the loss is what it says: the relative residual of L L^T on the pairs
    graph = matrix_graph(systems[0])
    X, B = solution_pairs(systems[0], 3, np.random.default_rng(9))
    L = net.factor(systems[0])
    expected = np.mean(np.sum((L @ (L.T @ X) - B) ** 2, axis=0) / np.sum(B**2, axis=0))
    net64 = LearnedIC(width=8, layers=2).double()
    net64.load_state_dict(net.state_dict())
    with torch.no_grad():
        value = float(factor_loss(net64, graph, torch.as_tensor(X), torch.as_tensor(B)))
    assert value == pytest.approx(expected, rel=1e-6)


# --------------------------------------------------------------------------- registry and checkpoints
def test_registered_on_the_linear_solver_board():
    assert MODELS.get("learned_ic").board == "linear-solver"
    assert isinstance(MODELS.build("learned_ic", width=4, layers=1), LearnedIC)


def test_checkpoint_round_trip_and_refusals(tmp_path):
    net = randomised(LearnedIC(width=4, layers=2), 7, std=0.3)
    path = save_learned_ic(tmp_path / "sub" / "lic.pt", net, {"grid": [8, 8], "steps": 3})
    loaded, card = load_learned_ic(path)
    assert card == {"grid": [8, 8], "steps": 3} and loaded.config == net.config
    A = darcy(6, 3)
    assert (loaded.factor(A) != net.factor(A)).nnz == 0
    with pytest.raises(ValueError, match="must be JSON-able"):
        save_learned_ic(tmp_path / "x.pt", net, {"matrix": np.eye(2)})
    with pytest.raises(ValueError, match="cannot save a SymmetricDCDMNet; learned IC checkpoints hold one of"):
        save_learned_ic(tmp_path / "x.pt", SymmetricDCDMNet(dim=2, width=2))
    assert not (tmp_path / "x.pt").exists()
    dcdm_file = save_dcdm(tmp_path / "dcdm.pt", SymmetricDCDMNet(dim=2, width=2))
    with pytest.raises(ValueError, match="is not a learned IC checkpoint \\(expected format 'pdebench-learned-ic'"):
        load_learned_ic(dcdm_file)
    with pytest.raises(FileNotFoundError, match="no learned IC checkpoint at"):
        load_learned_ic(tmp_path / "none.pt")
    payload = torch.load(path, weights_only=True)
    payload["class"] = "Linear"
    torch.save(payload, tmp_path / "forged.pt")
    with pytest.raises(ValueError, match="names network class 'Linear'; expected one of \\['LearnedIC'\\]"):
        load_learned_ic(tmp_path / "forged.pt")
