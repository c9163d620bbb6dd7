"""Tests of the DCDM (pdebench.models.dcdm); its CG baselines are tested in tests/solvers/test_linalg.py."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
import torch

from pdebench.models.dcdm import DCDMNet, dcdm_solve, network_operator
from pdebench.problems.elliptic_matrices import darcy_coefficient, poisson_matrix
from pdebench.solvers.linalg import pcg


# ---------------------------------------------------------------------------------------------
# DCDM solver loop
# ---------------------------------------------------------------------------------------------
def small_system(n: int = 8, seed: int = 0):
    A = poisson_matrix(darcy_coefficient(n, seed=seed))
    b = np.random.default_rng(seed + 10).standard_normal(A.shape[0])
    return A, b


def test_oracle_network_converges_in_one_iteration():
    A, b = small_system()
    Ad = A.toarray()
    res = dcdm_solve(A, b, lambda r: 3.7 * np.linalg.solve(Ad, r), tol=1e-10)
    assert res.iterations == 1 and res.converged
    assert np.allclose(res.x, np.linalg.solve(Ad, b))


def test_identity_network_monotone_in_a_norm():
    A, b = small_system()
    x_star = sp.linalg.spsolve(sp.csc_array(A), b)
    res = dcdm_solve(A, b, lambda r: r.copy(), tol=1e-6, maxiter=5000)
    assert res.converged
    energy = res.extra["energy"]
    assert np.all(np.diff(energy) <= 1e-12 * np.abs(energy).max())
    assert np.allclose(res.x, x_star, rtol=1e-4, atol=1e-4 * np.abs(x_star).max())
    # A-orthogonalisation against two directions is at least as good as plain steepest descent
    sd = dcdm_solve(A, b, lambda r: r.copy(), tol=1e-6, maxiter=5000, n_orth=0)
    assert res.iterations <= sd.iterations


def test_dcdm_returns_the_shared_result_with_the_shared_stopping_rule():
    from pdebench.solvers.linalg import SolveResult

    A, b = small_system()
    res = dcdm_solve(A, b, lambda r: r.copy(), tol=1e-6, maxiter=5000)
    assert isinstance(res, SolveResult) and res.converged
    true = np.linalg.norm(b - A @ res.x) / np.linalg.norm(b)
    assert res.residual == pytest.approx(true, rel=1e-12) and res.residual <= 1e-6
    assert res.residuals[0] == 1.0 and res.residuals[-1] <= 1e-6 and np.all(res.residuals[:-1] > 1e-6)
    capped = dcdm_solve(A, b, lambda r: r.copy(), tol=1e-6, maxiter=3)
    assert not capped.converged and capped.iterations == 3 and capped.residual > 1e-6
    zero = dcdm_solve(A, np.zeros_like(b), lambda r: r.copy())
    assert zero.converged and zero.iterations == 0 and not zero.x.any()


def test_dcdm_solve_bad_inputs():
    A, b = small_system()
    ident = lambda r: r  # noqa: E731
    with pytest.raises(ValueError, match="tol must be a positive number, got -1"):
        dcdm_solve(A, b, ident, tol=-1)
    with pytest.raises(ValueError, match=r"\(3,\)"):
        dcdm_solve(A, np.ones(3), ident)
    with pytest.raises(ValueError, match="maxiter must be >= 1, got 0"):
        dcdm_solve(A, b, ident, maxiter=0)
    with pytest.raises(ValueError, match="non-finite"):
        dcdm_solve(A, np.full(b.shape, np.nan), ident)
    with pytest.raises(ValueError, match="dim must be 2 or 3, got 4"):
        DCDMNet(dim=4)


# ---------------------------------------------------------------------------------------------
# Network
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("dim,grid", [(2, (16, 16)), (2, (20, 12)), (3, (8, 8, 8))])
def test_network_shapes(dim, grid):
    torch.manual_seed(0)
    net = DCDMNet(dim=dim, width=4, levels=2)
    x = torch.randn(2, 1, *grid)
    assert net(x).shape == x.shape
    with pytest.raises(ValueError, match="input must have shape"):
        net(torch.randn(2, *grid))


def test_registered():
    from pdebench.models.registry import MODELS

    import pdebench.models.dcdm  # noqa: F401

    assert "dcdm" in MODELS


def test_fallback_breaks_stall_of_indefinite_network():
    # f(r) = S r with S skew-symmetric: r^T f(r) = 0, so the paper's loop cannot move
    A, b = small_system()
    rng = np.random.default_rng(0)
    G = rng.standard_normal((A.shape[0], A.shape[0]))
    S = G - G.T
    stalled = dcdm_solve(A, b, lambda r: S @ r, tol=1e-6, maxiter=50, fallback_cos=0.0)
    assert not stalled.converged and stalled.residuals[-1] > 0.5
    safe = dcdm_solve(A, b, lambda r: S @ r, tol=1e-6, maxiter=5000)
    assert safe.converged and safe.extra["fallbacks"] > 0
    with pytest.raises(ValueError, match="fallback_cos must be in \\[0, 1\\), got 2"):
        dcdm_solve(A, b, lambda r: r, fallback_cos=2)


# ---------------------------------------------------------------------------------------------
# Symmetric (SPD) network
# ---------------------------------------------------------------------------------------------
def dense_operator(net: torch.nn.Module, grid: tuple[int, ...]) -> np.ndarray:
    """The network's matrix (N, N), column j = net(e_j), in float64."""
    N = int(np.prod(grid))
    eye = torch.eye(N, dtype=torch.float64).reshape(N, 1, *grid)
    with torch.no_grad():
        return net.double()(eye).reshape(N, N).T.numpy()


@pytest.mark.parametrize("dim,grid", [(2, (9, 7)), (2, (16, 16)), (3, (5, 6, 4))])
@pytest.mark.parametrize("noise", [3e-3, 0.5])
def test_symmetric_net_is_spd_for_any_weights(dim, grid, noise):
    from pdebench.models.dcdm import SymmetricDCDMNet

    M = dense_operator(SymmetricDCDMNet(dim=dim, width=3, noise=noise, seed=2), grid)
    assert np.abs(M - M.T).max() <= 1e-12 * np.abs(M).max()
    assert np.linalg.eigvalsh(0.5 * (M + M.T)).min() > 0


def test_symmetric_net_solve_is_pcg():
    """With an SPD linear network the two-direction DCDM loop is preconditioned CG: same residuals."""
    from pdebench.models.dcdm import SymmetricDCDMNet
    from pdebench.solvers.linalg import Preconditioner

    n = 24
    A = poisson_matrix(darcy_coefficient(n, seed=3))
    b = np.random.default_rng(0).standard_normal(n * n)
    op = network_operator(SymmetricDCDMNet(dim=2, width=3, noise=0.05), (n, n))
    assert op.symmetric_positive_definite  # so dcdm_solve runs the paper's loop, without the safeguard
    ours = dcdm_solve(A, b, op, tol=1e-8, maxiter=500)
    theirs = pcg(A, b, Preconditioner("none", op, None, 0.0), tol=1e-8, maxiter=500)
    assert ours.converged and theirs.converged
    assert abs(ours.iterations - theirs.iterations) <= 1
    # the same iterates in exact arithmetic: equal to round-off over the first steps (later the
    # round-off grows in both, as it does in any CG, while the iteration counts stay equal)
    assert np.allclose(ours.residuals[:12], theirs.residuals[:12], rtol=1e-9)
    assert np.linalg.norm(b - A @ ours.x) <= 1e-8 * np.linalg.norm(b)
    assert ours.extra["fallbacks"] == 0 and not network_operator(DCDMNet(width=2, levels=1), (n, n)).symmetric_positive_definite


def test_symmetric_net_bpx_start_is_resolution_independent():
    """The untrained network is the BPX preconditioner: far fewer iterations than CG, and nearly
    the same count when the grid is refined (CG's roughly doubles)."""
    from pdebench.models.dcdm import SymmetricDCDMNet

    net = SymmetricDCDMNet(dim=2)
    its, cg_its = [], []
    for n in (32, 64):
        A = poisson_matrix(darcy_coefficient(n, seed=LEADER, index=0))
        b = np.random.default_rng(n).standard_normal(n * n)
        res = dcdm_solve(A, b, network_operator(net, (n, n)), tol=1e-6, maxiter=400, fallback_cos=0.0)
        assert res.converged and np.linalg.norm(b - A @ res.x) <= 1.01e-6 * np.linalg.norm(b)
        its.append(res.iterations)
        cg_its.append(pcg(A, b, None, tol=1e-6).iterations)
    assert cg_its[1] > 1.6 * cg_its[0]
    assert its[1] <= 1.35 * its[0]
    assert its[1] <= cg_its[1] / 4


LEADER = 1_000_000


def test_symmetric_net_bad_config():
    from pdebench.models.dcdm import SymmetricDCDMNet

    with pytest.raises(ValueError, match="dim must be 2 or 3, got 1"):
        SymmetricDCDMNet(dim=1)
    with pytest.raises(ValueError, match="width must be >= 1, got 0"):
        SymmetricDCDMNet(width=0)
    with pytest.raises(ValueError, match="input must have shape"):
        SymmetricDCDMNet(dim=3)(torch.randn(1, 1, 8, 8))


# ---------------------------------------------------------------------------------------------
# Checkpoints
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("kind", ["unet", "spd"])
def test_checkpoint_round_trip(tmp_path, kind):
    from pdebench.models.dcdm import SymmetricDCDMNet, load_dcdm, save_dcdm

    net = DCDMNet(dim=3, width=4, levels=1) if kind == "unet" else SymmetricDCDMNet(dim=3, width=2, noise=0.1, seed=5)
    with torch.no_grad():
        for p in net.parameters():
            p.add_(0.01)
    path = save_dcdm(tmp_path / "sub" / "net.pt", net, {"grid": [8, 8, 8], "steps": 3})
    loaded, record = load_dcdm(path)
    assert type(loaded) is type(net) and record == {"grid": [8, 8, 8], "steps": 3}
    x = torch.randn(2, 1, 8, 8, 8)
    assert torch.equal(loaded(x), net(x))


def test_checkpoint_errors(tmp_path):
    from pdebench.models.dcdm import load_dcdm, save_dcdm

    with pytest.raises(FileNotFoundError, match="no DCDM checkpoint at"):
        load_dcdm(tmp_path / "missing.pt")
    torch.save({"state_dict": {}}, tmp_path / "other.pt")
    with pytest.raises(ValueError, match="is not a DCDM checkpoint"):
        load_dcdm(tmp_path / "other.pt")
    with pytest.raises(ValueError, match="cannot save a Linear"):
        save_dcdm(tmp_path / "x.pt", torch.nn.Linear(2, 2))
    assert not (tmp_path / "x.pt").exists()

