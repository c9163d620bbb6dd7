"""GP-HM: spectral-mixture kernels, Kronecker algebra against dense, 1-D Poisson solve, input checks."""

from __future__ import annotations

import math

import pytest
import torch

from pdebench.core.metrics import relative_l2
from pdebench.models import MODELS
from pdebench.equations.spectral import Advection
from pdebench.equations.steady import ALLEN_CAHN, POISSON
from pdebench.models.gp_hm import (
    GPHM,
    AdvectionProblem,
    GPHMConfig,
    SourcedProblem,
    SpectralMixtureKernel,
    apply_along,
    dense_terms,
    kron_quad_logdet,
    kron_solve,
)

F64 = torch.float64


def _rand_kernel(kind: str = "gaussian") -> SpectralMixtureKernel:
    torch.manual_seed(0)
    k = SpectralMixtureKernel(4, 3.0, 0.3, kind=kind)
    with torch.no_grad():
        k.log_weight.copy_(torch.randn(4, dtype=F64) * 0.3)
        k.log_lengthscale.add_(torch.randn(4, dtype=F64) * 0.2)
        k.frequency.add_(torch.rand(4, dtype=F64) * 0.5)
    return k


def _model_2d(nx: int = 6, ny: int = 7, **cfg) -> GPHM:
    x = torch.linspace(0, 1, nx, dtype=F64)
    y = torch.linspace(0, 2, ny, dtype=F64) ** 1.1 if ny > 2 else torch.linspace(0, 2, ny, dtype=F64)
    prob = SourcedProblem(POISSON, source=lambda x, y: torch.sin(x) * torch.cos(y), exact=lambda x, y: torch.sin(x) * torch.cos(y))
    conf = GPHMConfig(n_components=3, jitter=1e-3, max_frequency=2.0, init_lengthscale=0.4, **cfg)
    return GPHM([x, y], prob, conf)


def test_registered_as_instance_model():
    entry = MODELS.get("gp_hm")
    assert entry.cls is GPHM and entry.board == "instance"


# ------------------------------------------------------------------------------- (a) Kronecker = dense
@pytest.mark.parametrize("factorization", ["cholesky", "eigh"])
def test_kronecker_algebra_matches_dense(factorization):
    model = _model_2d(6, 7).requires_grad_(False)
    torch.manual_seed(1)
    u = torch.randn(6, 7, dtype=F64)
    factors = model.factors()
    derivs = [model.kernels[a].matrix(model.axes[a], order=2) for a in range(2)]
    dense = dense_terms(factors, derivs, u)
    quad, logdet = kron_quad_logdet(factors, u, factorization)
    assert torch.allclose(quad, dense["quad"], rtol=1e-10, atol=1e-10)
    assert torch.allclose(logdet, dense["logdet"], rtol=1e-10, atol=1e-10)
    assert torch.allclose(kron_solve(factors, u), dense["solve"], rtol=1e-10, atol=1e-10)
    lap = model.derivative(u, 0, 2) + model.derivative(u, 1, 2)
    assert torch.allclose(lap, dense["laplacian"], rtol=1e-10, atol=1e-10 * float(dense["laplacian"].abs().max()))


@pytest.mark.parametrize("factorization", ["cholesky", "eigh"])
@pytest.mark.parametrize("whiten", [True, False])
def test_prior_term_matches_dense(whiten, factorization):
    model = _model_2d(6, 7, whiten=whiten, factorization=factorization)
    torch.manual_seed(2)
    with torch.no_grad():
        model.z.copy_(torch.randn(6, 7, dtype=F64))
    u = model.u.detach()
    dense = dense_terms(model.factors(), [torch.eye(6, dtype=F64), torch.eye(7, dtype=F64)], u)
    prior = model.loss_terms()["prior"]
    assert torch.allclose(prior, 0.5 * dense["quad"] + 0.5 * dense["logdet"], rtol=1e-10, atol=1e-10)


def test_apply_along_is_kronecker_matvec():
    torch.manual_seed(3)
    a, b, u = torch.randn(4, 6, dtype=F64), torch.randn(5, 7, dtype=F64), torch.randn(6, 7, dtype=F64)
    got = apply_along(b, apply_along(a, u, 0), 1)
    assert torch.allclose(got.reshape(-1), torch.kron(a, b) @ u.reshape(-1), atol=1e-12)


def test_gradients_flow_to_kernel_and_values():
    model = _model_2d(6, 7, learn_noise=True)
    terms = model.loss_terms()
    terms["total"].backward()
    for p in [model.z, model.log_boundary_var, model.log_residual_var, *model.kernels.parameters()]:
        assert p.grad is not None and torch.isfinite(p.grad).all()
    n_b = int(model.boundary_mask.sum())
    with torch.no_grad():
        diff = model.u[model.boundary_mask] - model.boundary_target
        expected = 0.5 * (diff * diff).sum() / model.log_boundary_var.exp() + 0.5 * n_b * model.log_boundary_var
    assert torch.allclose(terms["boundary"].detach(), expected, rtol=1e-12)


# ------------------------------------------------------------------------------- (b) kernel derivatives
@pytest.mark.parametrize("kind", ["gaussian", "matern32"])
def test_kernel_derivatives_match_finite_differences(kind):
    k = _rand_kernel(kind)
    d = torch.linspace(0.05, 1.7, 23, dtype=F64)  # away from 0 (Matérn's |d|)
    d = torch.cat([-d.flip(0), d])
    h = 1e-4
    with torch.no_grad():
        k0p, k0m, k0 = k(d + h), k(d - h), k(d)
        fd1 = (k0p - k0m) / (2 * h)
        fd2 = (k0p - 2 * k0 + k0m) / h**2
        assert torch.allclose(k(d, 1), fd1, atol=1e-6 * float(fd1.abs().max()))
        assert torch.allclose(k(d, 2), fd2, atol=1e-5 * float(fd2.abs().max()))
        # the derivative with respect to x of k(x - x') via autograd, including d = 0 for the Gaussian
    x = torch.linspace(-1, 1, 9, dtype=F64, requires_grad=True)
    (g1,) = torch.autograd.grad(k(x).sum(), x, create_graph=True)
    (g2,) = torch.autograd.grad(g1.sum(), x)
    with torch.no_grad():
        assert torch.allclose(g1, k(x, 1), atol=1e-12)
        if kind == "gaussian":
            assert torch.allclose(g2, k(x, 2), atol=1e-10)


def test_toeplitz_fast_path_matches_general():
    k = _rand_kernel()
    x = torch.linspace(0, 2, 17, dtype=F64)
    with torch.no_grad():
        for order in (0, 1, 2):
            assert torch.allclose(k.matrix(x, order=order), k(x[:, None] - x[None, :], order), atol=1e-13)


def test_derivative_operator_on_smooth_function():
    n = 80
    x = torch.linspace(0, 1, n, dtype=F64)
    prob = SourcedProblem(POISSON, source=lambda x: torch.zeros_like(x), exact=lambda x: torch.zeros_like(x))
    model = GPHM([x], prob, GPHMConfig(n_components=1, jitter=1e-12))
    u = torch.sin(2 * math.pi * 2 * x)
    with torch.no_grad():
        d2 = model.derivative(u, 0, 2)
    assert relative_l2(d2, -(4 * math.pi) ** 2 * u, batch_dims=0) < 1e-3


# ------------------------------------------------------------------------------- (c) 1-D Poisson solve
def test_poisson_1d_reaches_1e_3():
    w = 2 * math.pi * 4  # u = sin(2π·4x)
    x = torch.linspace(0, 1, 64, dtype=F64)
    prob = SourcedProblem(POISSON, source=lambda x: w**2 * torch.sin(w * x), exact=lambda x: torch.sin(w * x))
    model = GPHM([x], prob, GPHMConfig(adam_steps=50, lbfgs_steps=400))
    result = model.fit(eval_every=50)
    assert result.errors[-1] <= 1e-3, result.errors
    assert model.forward().shape == (64,)


def test_allen_cahn_manufactured_residual_vanishes_on_exact_solution():
    w = 2 * math.pi * 2
    x = torch.linspace(0, 1, 80, dtype=F64)

    def exact(x):
        return torch.sin(w * x)

    def source(x):
        u = exact(x)
        return -(w**2) * u + u * (u * u - 1)

    model = GPHM([x], SourcedProblem(ALLEN_CAHN, source=source, exact=exact), GPHMConfig(n_components=1, jitter=1e-12))
    with torch.no_grad():
        res = model.problem.residual(model, exact(x))
    assert res.abs().max() < 1e-3 * w**2


def test_advection_residual_on_exact_solution():
    beta = 2.0
    x = torch.linspace(0, 2 * math.pi, 60, dtype=F64)
    t = torch.linspace(0, 1, 40, dtype=F64)

    def exact(x, t):
        return torch.sin(x - beta * t)

    model = GPHM([x, t], AdvectionProblem(Advection([beta]), exact=exact), GPHMConfig(n_components=1, jitter=1e-12))
    assert model.boundary_mask.sum() == 60 + 2 * 39
    with torch.no_grad():
        res = model.problem.residual(model, exact(*model.mesh))
    assert res[5:-5, 5:-5].abs().max() < 1e-3


# ------------------------------------------------------------------------------- (d) bad inputs
def _poisson():
    return SourcedProblem(POISSON, source=lambda *m: torch.zeros_like(m[0]), exact=lambda *m: torch.zeros_like(m[0]))


@pytest.mark.parametrize(
    "axes, match",
    [
        ([torch.linspace(0, 1, 8, dtype=torch.float32)], "float64"),
        ([torch.zeros(3, 3, dtype=F64)], "1-D"),
        ([torch.zeros(1, dtype=F64)], "at least 2"),
        ([torch.tensor([0.0, 0.5, 0.2], dtype=F64)], "increasing"),
        ([], "non-empty"),
        (torch.linspace(0, 1, 8, dtype=F64), "sequence"),
        ([[0.0, 1.0]], "torch.Tensor"),
    ],
)
def test_bad_axes(axes, match):
    with pytest.raises(ValueError, match=match):
        GPHM(axes, _poisson())


@pytest.mark.parametrize(
    "cfg, match",
    [
        (dict(n_components=0), "n_components"),
        (dict(n_components=-2), "n_components"),
        (dict(adam_steps=-1), "adam_steps"),
        (dict(jitter=0.0), "jitter"),
        (dict(residual_var=-1.0), "residual_var"),
        (dict(kernel="rbf"), "kernel"),
        (dict(factorization="lu"), "factorization"),
    ],
)
def test_bad_config(cfg, match):
    with pytest.raises(ValueError, match=match):
        GPHM([torch.linspace(0, 1, 8, dtype=F64)], _poisson(), GPHMConfig(**cfg))


def test_bad_kernel_args_and_problem():
    with pytest.raises(ValueError, match="n_components"):
        SpectralMixtureKernel(0, 1.0, 0.1)
    with pytest.raises(ValueError, match="lengthscale"):
        SpectralMixtureKernel(2, 1.0, 0.0)
    with pytest.raises(ValueError, match="order"):
        SpectralMixtureKernel(2, 1.0, 0.1)(torch.zeros(3, dtype=F64), order=3)
    with pytest.raises(ValueError, match="GridProblem"):
        GPHM([torch.linspace(0, 1, 8, dtype=F64)], object())
    bad = SourcedProblem(POISSON, source=lambda x: torch.zeros_like(x), exact=lambda x: torch.zeros(5, dtype=F64))
    with pytest.raises(ValueError, match="grid shape"):
        GPHM([torch.linspace(0, 1, 8, dtype=F64)], bad)
    bad32 = SourcedProblem(POISSON, source=lambda x: torch.zeros_like(x), exact=lambda x: torch.zeros_like(x).float())
    with pytest.raises(ValueError, match="float64"):
        GPHM([torch.linspace(0, 1, 8, dtype=F64)], bad32)
    with pytest.raises(ValueError, match="2 axes"):
        GPHM([torch.linspace(0, 1, 8, dtype=F64)], AdvectionProblem(Advection([1.0]), exact=lambda x: x))
