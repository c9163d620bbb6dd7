r"""GP-HM: a Gaussian-process PDE solver on a grid with spectral-mixture kernels and Kronecker algebra.

The unknowns are the solution values on a tensor grid, :math:`U \in \mathbb R^{n_1 \times \dots \times n_d}`
(trainable), with the GP prior :math:`\mathrm{vec}(U) \sim \mathcal N(0, K)`,
:math:`K = K_1 \otimes \dots \otimes K_d` (product kernel over the axes, each factor with a small
jitter: :math:`K_a = k_a(X_a, X_a) + \epsilon I`). The solution between grid points is the GP
interpolant :math:`u(x) = k(x, X) K^{-1} \mathrm{vec}(U)`, so a derivative of order :math:`p` along
axis :math:`a` on the grid is

.. math:: \partial_a^p u\,(X) = \big(K_a^{(p)} K_a^{-1}\big) \times_a U,
          \qquad (K_a^{(p)})_{ij} = \partial^p_x k_a(x, x')\big|_{x = x_i, x' = x_j},

(every other factor cancels, :math:`K_b K_b^{-1} = I`), where :math:`\times_a` multiplies along axis
:math:`a`. Each axis has a **spectral-mixture kernel** (:class:`SpectralMixtureKernel`)

.. math:: k(d) = \sum_{q=1}^Q w_q\, g_q(d) \cos(2\pi \mu_q d),
          \qquad g_q(d) = e^{-d^2 / (2 \ell_q^2)} \ \text{(Gaussian)} \ \text{or}\
          (1 + \sqrt3 |d|/\ell_q) e^{-\sqrt3 |d| / \ell_q} \ \text{(Matérn-3/2)},

with trainable log-weights :math:`\log w_q`, log-lengthscales :math:`\log \ell_q` and frequencies
:math:`\mu_q` (initialised spread over :math:`[0, \text{Nyquist}]` of the axis' grid).

**Loss** (:meth:`GPHM.loss`), the negative log joint density up to constants:

.. math:: \mathcal L = \underbrace{\tfrac12 \mathrm{vec}(U)^\top K^{-1} \mathrm{vec}(U) + \tfrac12 \log|K|}_{\text{prior}}
          + \frac{1}{2 v_b} \sum_{\partial} (U - g)^2 + \frac{1}{2 v_r} \sum_{X} R(U)^2
          \ (+\ \tfrac{n_b}{2}\log v_b + \tfrac{N}{2}\log v_r \text{ when the variances are learned}),

where :math:`R` is the PDE residual at the grid points (:class:`SourcedProblem`: Poisson and
Allen–Cahn of :mod:`pdebench.equations.steady`; :class:`AdvectionProblem`: the spectral
:class:`~pdebench.equations.spectral.Advection`; each equation's definition is stated once there). The full :math:`K` (:math:`N \times N`, :math:`N = \prod n_a`) is **never
formed**: with a per-axis factorisation,

* ``"cholesky"`` (default): :math:`K_a = L_a L_a^\top`; :math:`\mathrm{vec}(U)^\top K^{-1}\mathrm{vec}(U)
  = \lVert U \times_1 L_1^{-1} \cdots \times_d L_d^{-1} \rVert^2` (triangular solves along each axis),
  :math:`\log|K| = \sum_a (N / n_a) \, 2 \sum_i \log (L_a)_{ii}`;
* ``"eigh"``: :math:`K_a = Q_a \Lambda_a Q_a^\top`; :math:`K^{-1}\mathrm{vec}(U) = \big(\tilde U / (\lambda_1
  \otimes \dots \otimes \lambda_d)\big) \times_1 Q_1 \cdots \times_d Q_d` with
  :math:`\tilde U = U \times_1 Q_1^\top \cdots \times_d Q_d^\top`, :math:`\log|K| = \sum_a (N/n_a) \sum_i
  \log \lambda_{a,i}`.

Both cost :math:`O(N \sum_a n_a + \sum_a n_a^3)` per evaluation instead of the dense :math:`O(N^3)`.
The Cholesky route is the default because the gradient of ``eigh`` contains
:math:`1/(\lambda_i - \lambda_j)` and is unstable when smooth kernels produce clusters of eigenvalues
near the jitter; the eigen route is kept for the K⁻¹v / log-det algebra (it gives the same values).
:func:`dense_terms` computes the same quantities by forming :math:`K` (tests and benchmark only).

Everything is float64. Training is Adam (optionally followed by L-BFGS), :meth:`GPHM.fit`. By default
the values are *whitened* (:math:`U = Z \times_a S_a`, :math:`S_a S_a^\top = K_a`, prior
:math:`\tfrac12\lVert Z\rVert^2 + \tfrac12\log|K|` — the same loss); without it the Hessian in
:math:`U` contains :math:`K^{-1}` (condition ~1/jitter) and neither Adam nor L-BFGS gets below a few
percent error on ``sin(100x)``. Measured (``benchmarks/bench_gp_hm.py``, 1 thread of a 2-core
CPU, 200 points, Adam 1000 + L-BFGS 3000): 1-D Poisson ``u = sin(100x)`` rel. L2 3.8e-4 in 130 s,
``sin x + 0.1 sin 20x + 0.05 sin 100x`` 5.6e-5 in 64 s; Allen–Cahn with ``u = sin(100x)`` 7.7e-5 in
74 s; 2-D Poisson ``sin(100x) sin(100y)`` on 200² 3.4e-4 in 117 s; advection β = 200 on 64 x 256
9.6e-4 in 91 s. Most of the accuracy comes from the L-BFGS
stage (after Adam the errors are 3e-2 and 0.6); the learned frequencies did not move onto
:math:`100/2\pi`.

References
----------
Xu, Long, Kirby, Zhe, "Solving High Frequency and Multi-Scale PDEs with Gaussian Processes", ICLR 2024.
Wilson, Adams, "Gaussian process kernels for pattern discovery and extrapolation", ICML 2013
(spectral-mixture kernel). Saatçi, "Scalable inference for structured Gaussian process models",
PhD thesis, 2011 (Kronecker algebra).
"""

from __future__ import annotations

import math
import time
import typing
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Literal

import torch
from torch import Tensor, nn

from pdebench.core.metrics import relative_l2
from pdebench.equations.spectral import Advection
from pdebench.equations.steady import SteadyEquation
from pdebench.models.registry import register_model
from pdebench.problems.manufactured import Instance
from pdebench.registry import require_choice, require_int

F64 = torch.float64
KernelKind = Literal["gaussian", "matern32"]
Factorization = Literal["cholesky", "eigh"]

__all__ = [
    "SpectralMixtureKernel",
    "GPHMConfig",
    "GridProblem",
    "SourcedProblem",
    "AdvectionProblem",
    "GPHM",
    "FitResult",
    "apply_along",
    "kron_quad_logdet",
    "kron_solve",
    "dense_terms",
]


# ------------------------------------------------------------------------------------------ helpers
def _check_f64(name: str, t: Tensor) -> None:
    if not isinstance(t, Tensor):
        raise ValueError(f"{name} must be a torch.Tensor, got {type(t).__name__}")
    if t.dtype != F64:
        raise ValueError(f"{name} must be float64 (GP-HM runs in double precision), got {t.dtype}")


def _check_axes(axes: Sequence[Tensor]) -> tuple[Tensor, ...]:
    if isinstance(axes, Tensor) or len(axes) == 0:
        raise ValueError("axes must be a non-empty sequence of 1-D float64 tensors (one per dimension)")
    out = []
    for a, x in enumerate(axes):
        _check_f64(f"axes[{a}]", x)
        if x.ndim != 1 or x.numel() < 2:
            raise ValueError(f"axes[{a}] must be 1-D with at least 2 points, got shape {tuple(x.shape)}")
        if not bool(torch.all(x[1:] > x[:-1])):
            raise ValueError(f"axes[{a}] must be strictly increasing")
        out.append(x)
    return tuple(out)


def apply_along(matrix: Tensor, u: Tensor, axis: int) -> Tensor:
    """Multiply ``u`` by ``matrix`` along ``axis`` (the mode-``axis`` product ``matrix ×_axis u``).

    Parameters
    ----------
    matrix : Tensor, shape (m, n_axis)
    u : Tensor, shape (n_1, ..., n_axis, ..., n_d)
    axis : int

    Returns
    -------
    Tensor, shape (n_1, ..., m, ..., n_d)
        :math:`v_{\\dots i \\dots} = \\sum_j M_{ij} u_{\\dots j \\dots}`.
    """
    return torch.movedim(torch.tensordot(matrix, u, dims=([1], [axis])), 0, axis)


def _solve_lower_along(chol: Tensor, u: Tensor, axis: int) -> Tensor:
    """:math:`L^{-1} \\times_{axis} u` by a triangular solve (``chol`` lower triangular, (n, n))."""
    moved = torch.movedim(u, axis, 0)
    flat = moved.reshape(moved.shape[0], -1)
    sol = torch.linalg.solve_triangular(chol, flat, upper=False)
    return torch.movedim(sol.reshape(moved.shape), 0, axis)


def kron_quad_logdet(factors: Sequence[Tensor], u: Tensor,
                     factorization: Factorization = "cholesky") -> tuple[Tensor, Tensor]:
    """Quadratic form and log-determinant of :math:`K = K_1 \\otimes \\dots \\otimes K_d` without forming K.

    Parameters
    ----------
    factors : sequence of Tensor, shapes (n_a, n_a)
        Symmetric positive-definite factors (jitter already added).
    u : Tensor, shape (n_1, ..., n_d)
        Grid values; ``vec`` is the row-major flattening, matching ``torch.kron`` ordering.
    factorization : {"cholesky", "eigh"}

    Returns
    -------
    quad : Tensor, scalar
        :math:`\\mathrm{vec}(u)^\\top K^{-1} \\mathrm{vec}(u)`.
    logdet : Tensor, scalar
        :math:`\\log|K| = \\sum_a (N / n_a) \\log|K_a|`.
    """
    n_total = u.numel()
    logdet = u.new_zeros(())
    if factorization == "cholesky":
        z = u
        for a, k in enumerate(factors):
            chol = torch.linalg.cholesky(k)
            z = _solve_lower_along(chol, z, a)
            logdet = logdet + (n_total / k.shape[0]) * 2.0 * torch.log(torch.diagonal(chol)).sum()
        return (z * z).sum(), logdet
    if factorization == "eigh":
        z, lam = u, None
        for a, k in enumerate(factors):
            evals, evecs = torch.linalg.eigh(k)
            z = apply_along(evecs.T, z, a)
            logdet = logdet + (n_total / k.shape[0]) * torch.log(evals).sum()
            shape = [1] * u.ndim
            shape[a] = -1
            lam = evals.reshape(shape) if lam is None else lam * evals.reshape(shape)
        return (z * z / lam).sum(), logdet
    raise ValueError(f"factorization must be 'cholesky' or 'eigh', got {factorization!r}")


def kron_solve(factors: Sequence[Tensor], u: Tensor) -> Tensor:
    """:math:`K^{-1} \\mathrm{vec}(u)` as a grid ``(n_1, ..., n_d)``, for factors ``(n_a, n_a)`` and ``u``
    ``(n_1, ..., n_d)``, by the per-axis eigendecompositions (the module docstring's ``"eigh"`` route)."""
    eig = [torch.linalg.eigh(k) for k in factors]
    z = u
    for a, (_, q) in enumerate(eig):
        z = apply_along(q.T, z, a)
    for a, (lam, _) in enumerate(eig):
        shape = [1] * u.ndim
        shape[a] = -1
        z = z / lam.reshape(shape)
    for a, (_, q) in enumerate(eig):
        z = apply_along(q, z, a)
    return z


# ------------------------------------------------------------------------------------------ kernel
class SpectralMixtureKernel(nn.Module):
    r"""Stationary 1-D spectral-mixture kernel and its derivatives in the first argument.

    .. math:: k(d) = \sum_{q=1}^{Q} w_q\, g_q(d) \cos(2\pi\mu_q d), \qquad d = x - x',

    Derivatives (``order`` 1, 2) are :math:`\partial_x^p k(x - x') = k^{(p)}(d)`, with
    :math:`(g c)' = g' c - a g s`, :math:`(g c)'' = g'' c - 2 a g' s - a^2 g c`
    (:math:`a = 2\pi\mu`, :math:`c = \cos ad`, :math:`s = \sin ad`) and

    * Gaussian: :math:`g = e^{-d^2/2\ell^2}`, :math:`g' = -(d/\ell^2) g`, :math:`g'' = (d^2/\ell^4 - 1/\ell^2) g`;
    * Matérn-3/2 (:math:`\rho = \sqrt3/\ell`, :math:`r = |d|`): :math:`g = (1 + \rho r)e^{-\rho r}`,
      :math:`g' = -\rho^2 d\, e^{-\rho r}`, :math:`g'' = \rho^2 (\rho r - 1) e^{-\rho r}`.

    Parameters
    ----------
    n_components : int
        :math:`Q > 0`.
    max_frequency : float
        Frequencies are initialised evenly on :math:`[0, \text{max\_frequency}]` (cycles per unit length);
        use the grid's Nyquist frequency :math:`(n - 1) / (2 L)`.
    lengthscale : float
        Initial :math:`\ell_q` (all components).
    kind : {"gaussian", "matern32"}
    init_log_weight : float
        Initial :math:`\log w_q`.
    """

    def __init__(self, n_components: int, max_frequency: float, lengthscale: float,
                 kind: KernelKind = "gaussian", init_log_weight: float = 0.0) -> None:
        super().__init__()
        require_int("n_components", n_components, 1)
        if not (max_frequency >= 0 and math.isfinite(max_frequency)):
            raise ValueError(f"max_frequency must be finite and >= 0, got {max_frequency!r}")
        if not (lengthscale > 0 and math.isfinite(lengthscale)):
            raise ValueError(f"lengthscale must be positive, got {lengthscale!r}")
        require_choice("kind", kind, typing.get_args(KernelKind))
        self.kind = kind
        self.log_weight = nn.Parameter(torch.full((n_components,), float(init_log_weight), dtype=F64))
        self.log_lengthscale = nn.Parameter(torch.full((n_components,), math.log(lengthscale), dtype=F64))
        self.frequency = nn.Parameter(torch.linspace(0.0, float(max_frequency), n_components, dtype=F64))

    def forward(self, d: Tensor, order: int = 0) -> Tensor:
        """:math:`k^{(p)}(d)` for ``order`` :math:`p \\in \\{0, 1, 2\\}`; ``d`` any shape, result same shape."""
        require_choice("order", order, (0, 1, 2))
        d = d.unsqueeze(-1)  # (..., 1) against (Q,)
        w, ell = self.log_weight.exp(), self.log_lengthscale.exp()
        a = 2 * math.pi * self.frequency
        c, s = torch.cos(a * d), torch.sin(a * d)
        if self.kind == "gaussian":
            g = torch.exp(-0.5 * (d / ell) ** 2)
            g1 = -d / ell**2 * g
            g2 = (d**2 / ell**4 - 1 / ell**2) * g
        else:
            rho = math.sqrt(3.0) / ell
            r = d.abs()
            e = torch.exp(-rho * r)
            g = (1 + rho * r) * e
            g1 = -rho**2 * d * e
            g2 = rho**2 * (rho * r - 1) * e
        if order == 0:
            val = g * c
        elif order == 1:
            val = g1 * c - a * g * s
        else:
            val = g2 * c - 2 * a * g1 * s - a**2 * g * c
        return (w * val).sum(-1)

    def matrix(self, x: Tensor, y: Tensor | None = None, order: int = 0) -> Tensor:
        """Kernel (or derivative) matrix :math:`[k^{(p)}(x_i - y_j)]_{ij}`, shape (len(x), len(y)).

        When ``y`` is omitted and ``x`` is uniformly spaced the matrix is Toeplitz: the kernel is
        evaluated at the :math:`2n - 1` distinct offsets only and gathered (same values, :math:`O(nQ)`
        kernel evaluations instead of :math:`O(n^2 Q)`).
        """
        if y is None:
            n = x.numel()
            step = (x[-1] - x[0]) / (n - 1)
            if n > 2 and bool(torch.allclose(x[1:] - x[:-1], step.expand(n - 1), rtol=1e-12, atol=0)):
                offsets = torch.arange(-(n - 1), n, dtype=x.dtype) * step  # d = x_i - x_j = (i - j) h
                vals = self(offsets, order)
                idx = torch.arange(n)[:, None] - torch.arange(n)[None, :] + (n - 1)
                return vals[idx]
            y = x
        return self(x[:, None] - y[None, :], order)


# ------------------------------------------------------------------------------------------ problems
class GridProblem(ABC):
    """A PDE on a tensor grid: boundary points and values, and the residual at the grid points.

    Subclasses implement :meth:`residual`; ``exact`` (optional) is the reference solution
    ``exact(*mesh) -> grid`` used for boundary values and errors.
    """

    exact: Callable[..., Tensor] | None = None

    def boundary_mask(self, axes: Sequence[Tensor]) -> Tensor:
        """Boolean grid, True on every face of the box (default: Dirichlet on all faces)."""
        mesh = torch.meshgrid(*axes, indexing="ij")
        mask = torch.zeros(mesh[0].shape, dtype=torch.bool)
        for a, x in enumerate(axes):
            mask |= (mesh[a] == x[0]) | (mesh[a] == x[-1])
        return mask

    def boundary_values(self, mesh: Sequence[Tensor]) -> Tensor:
        """Values of the solution on the grid (only boundary entries are used); default ``exact``."""
        if self.exact is None:
            raise ValueError(f"{type(self).__name__} needs `exact` (or override boundary_values)")
        return self.exact(*mesh)

    def setup(self, mesh: Sequence[Tensor]) -> None:
        """Pre-compute grid data (e.g. the source) once; called by :class:`GPHM`."""

    @abstractmethod
    def residual(self, gp: GPHM, u: Tensor) -> Tensor:
        """PDE residual at the grid points, shape ``u.shape``."""


@dataclass
class SourcedProblem(GridProblem):
    r"""A steady equation :math:`s\,\Delta u + r(u) = f` with Dirichlet data: the residual
    :math:`R = s \sum_a \partial_a^2 u + r(u) - f` of :meth:`SteadyEquation.residual
    <pdebench.equations.steady.SteadyEquation.residual>` on GP-HM's grid derivatives.

    Parameters
    ----------
    equation
        :data:`~pdebench.equations.steady.POISSON` or :data:`~pdebench.equations.steady.ALLEN_CAHN`.
    source : callable ``f(*mesh) -> grid``
        Evaluated once on the grid by :meth:`setup`.
    exact : callable ``u(*mesh) -> grid``
        Gives the boundary values (and the reference solution for errors).
    """

    equation: SteadyEquation
    source: Callable[..., Tensor]
    exact: Callable[..., Tensor] | None = None
    _f: Tensor | None = field(default=None, init=False, repr=False)

    @classmethod
    def of(cls, instance: Instance) -> SourcedProblem:
        """The problem of a manufactured instance (:data:`~pdebench.problems.manufactured.INSTANCES`)."""
        return cls(instance.equation, instance.source, instance.exact)

    def setup(self, mesh: Sequence[Tensor]) -> None:
        self._f = self.source(*mesh)

    def residual(self, gp: GPHM, u: Tensor) -> Tensor:
        return self.equation.residual(u, sum(gp.derivative(u, a, 2) for a in range(u.ndim)), self._f)


@dataclass
class AdvectionProblem(GridProblem):
    r"""Advection :math:`u_t + \beta u_x = 0` (:class:`~pdebench.equations.spectral.Advection` with one
    velocity) on axes ``(x, t)``; residual :meth:`Advection.space_time_residual
    <pdebench.equations.spectral.Advection.space_time_residual>` on GP-HM's grid derivatives.

    Boundary points: the initial line :math:`t = t_0` and both :math:`x` ends (values from ``exact``,
    e.g. :math:`u = \sin(x - \beta t)` on :math:`[0, 2\pi] \times [0, 1]`).
    """

    equation: Advection
    exact: Callable[..., Tensor] | None = None

    def boundary_mask(self, axes: Sequence[Tensor]) -> Tensor:
        if len(axes) != 2:
            raise ValueError(f"AdvectionProblem needs 2 axes (x, t), got {len(axes)}")
        x, t = torch.meshgrid(*axes, indexing="ij")
        return (t == axes[1][0]) | (x == axes[0][0]) | (x == axes[0][-1])

    def residual(self, gp: GPHM, u: Tensor) -> Tensor:
        return self.equation.space_time_residual(lambda axis, order: gp.derivative(u, axis, order))


# ------------------------------------------------------------------------------------------ model
@dataclass
class GPHMConfig:
    """Settings of :class:`GPHM`.

    Attributes
    ----------
    n_components : int
        Spectral-mixture components per axis, :math:`Q`.
    kernel : {"gaussian", "matern32"}
    max_frequency : float or None
        Upper end of the initial frequencies (cycles per unit); ``None``: ``max_frequency_fraction``
        times each axis' Nyquist frequency :math:`(n_a - 1) / (2 L_a)`.
    max_frequency_fraction : float
        See ``max_frequency``. Default 1/8: measured on 1-D Poisson with ``sin(100x)`` (200 and 400
        points), mixtures spread up to the full Nyquist frequency make a rough prior whose MAP
        solution has 18-72 % error, while spreading up to 1/8 of it gives 2e-5 (200 points; 1e-3 at
        400 points, where 1/20 gives 5e-4). This departs from the paper's spread up to Nyquist.
    init_lengthscale : float or None
        Initial :math:`\\ell_q`; ``None``: 8 grid spacings of the axis.
    init_log_weight : float
    jitter : float
        :math:`\\epsilon`: each factor gets :math:`\\epsilon\\, k_a(0) I` added (:math:`k_a(0) = \\sum_q w_q`),
        so the jitter scales with the kernel.
    factorization : {"cholesky", "eigh"}
    whiten : bool
        Train :math:`Z` with :math:`U = Z \\times_1 S_1 \\cdots \\times_d S_d`, :math:`S_a S_a^\\top = K_a`
        (:math:`S_a = L_a` or :math:`Q_a \\Lambda_a^{1/2}`), so the prior's quadratic form is
        :math:`\\lVert Z\\rVert^2` (same loss, far better conditioned for Adam / L-BFGS).
    boundary_var, residual_var : float
        Initial (or fixed) likelihood variances :math:`v_b, v_r`.
    learn_noise : bool
        Learn :math:`\\log v_b, \\log v_r` (adds :math:`\\tfrac{n}{2}\\log v` terms).
    train_kernel : bool
        Train the kernel parameters (else only :math:`U`).
    adam_steps, lr, kernel_lr : Adam steps and learning rates (``kernel_lr`` for kernel/noise params).
    lbfgs_steps : int
        L-BFGS iterations after Adam (0: none), strong-Wolfe line search.
    lbfgs_train_kernel : bool
        Let L-BFGS move the kernel (and noise) parameters too; default False: L-BFGS refines
        :math:`Z` for the kernel Adam found (for a linear PDE the loss is then a convex quadratic).
    time_limit_s : float or None
        Stop Adam after this much wall time.
    seed : int
        Seed of the initial :math:`U` (small Gaussian noise, std ``init_std``).
    init_std : float
    """

    n_components: int = 20
    kernel: KernelKind = "gaussian"
    max_frequency: float | None = None
    max_frequency_fraction: float = 0.125
    init_lengthscale: float | None = None
    init_log_weight: float = 0.0
    jitter: float = 1e-10
    factorization: Factorization = "cholesky"
    whiten: bool = True
    boundary_var: float = 1e-8
    residual_var: float = 1e-2
    learn_noise: bool = False
    train_kernel: bool = True
    adam_steps: int = 2000
    lr: float = 1e-2
    kernel_lr: float = 1e-2
    lbfgs_steps: int = 0
    lbfgs_train_kernel: bool = False
    time_limit_s: float | None = None
    seed: int = 0
    init_std: float = 0.0

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        """Raise ``ValueError`` on a bad setting (also on construction)."""
        for name in ("n_components", "adam_steps", "lbfgs_steps"):
            v = getattr(self, name)
            if not isinstance(v, int) or v < (1 if name == "n_components" else 0):
                raise ValueError(f"{name} must be a {'positive' if name == 'n_components' else 'non-negative'} "
                                 f"int, got {v!r}")
        for name in ("jitter", "boundary_var", "residual_var", "lr", "kernel_lr", "max_frequency_fraction"):
            v = getattr(self, name)
            if not (isinstance(v, (int, float)) and v > 0 and math.isfinite(v)):
                raise ValueError(f"{name} must be a positive finite number, got {v!r}")
        require_choice("kernel", self.kernel, typing.get_args(KernelKind))
        require_choice("factorization", self.factorization, typing.get_args(Factorization))
        if self.init_lengthscale is not None and not self.init_lengthscale > 0:
            raise ValueError(f"init_lengthscale must be positive, got {self.init_lengthscale!r}")
        if self.max_frequency is not None and not self.max_frequency >= 0:
            raise ValueError(f"max_frequency must be >= 0, got {self.max_frequency!r}")
        limit = self.time_limit_s
        if limit is not None and (isinstance(limit, bool) or not isinstance(limit, (int, float)) or not limit > 0):
            raise ValueError(f"time_limit_s must be a positive number of seconds or null, got {limit!r}")


@dataclass
class FitResult:
    """History of :meth:`GPHM.fit`: losses, errors (if ``exact`` is known) and wall time."""

    losses: list[float] = field(default_factory=list)
    errors: list[float] = field(default_factory=list)
    eval_steps: list[int] = field(default_factory=list)
    time_s: float = 0.0
    steps: int = 0


@register_model("gp_hm", board="instance",
                description="GP-HM: grid-value GP with spectral-mixture product kernel, Kronecker algebra (Xu et al. 2024)")
class GPHM(nn.Module):
    r"""Gaussian-process solver of one PDE instance on a tensor grid (see the module docstring).

    Parameters
    ----------
    axes : sequence of Tensor, each shape (n_a,), float64, strictly increasing
        Grid coordinates per axis; the grid is their Cartesian product (``indexing="ij"``).
    problem : GridProblem
        Residual, boundary points and boundary values.
    config : GPHMConfig, optional

    Attributes
    ----------
    z : nn.Parameter, shape (n_1, ..., n_d)
        The trained values: the solution :math:`U` itself, or its whitened form when ``config.whiten``.
    u : Tensor, shape (n_1, ..., n_d)
        The solution values on the grid (property, differentiable).
    kernels : nn.ModuleList of SpectralMixtureKernel
        One per axis.
    """

    def __init__(self, axes: Sequence[Tensor], problem: GridProblem, config: GPHMConfig | None = None) -> None:
        super().__init__()
        self.config = config = config or GPHMConfig()
        config.validate()
        if not isinstance(problem, GridProblem):
            raise ValueError(f"problem must be a GridProblem, got {type(problem).__name__}")
        self.axes = _check_axes(axes)
        self.problem = problem
        self.shape = tuple(x.numel() for x in self.axes)
        self.mesh = torch.meshgrid(*self.axes, indexing="ij")
        kernels = []
        for x in self.axes:
            n, length = x.numel(), float(x[-1] - x[0])
            nyquist = (n - 1) / (2 * length)
            top = config.max_frequency if config.max_frequency is not None else config.max_frequency_fraction * nyquist
            ell = config.init_lengthscale if config.init_lengthscale is not None else 8 * length / (n - 1)
            kernels.append(SpectralMixtureKernel(config.n_components, top, ell, config.kernel, config.init_log_weight))
        self.kernels = nn.ModuleList(kernels)
        gen = torch.Generator().manual_seed(config.seed)
        self.z = nn.Parameter(config.init_std * torch.randn(self.shape, generator=gen, dtype=F64))
        mask = problem.boundary_mask(self.axes)
        if mask.shape != self.shape or mask.dtype != torch.bool:
            raise ValueError(f"boundary_mask must be a bool grid of shape {self.shape}, got {tuple(mask.shape)}")
        self.register_buffer("boundary_mask", mask)
        values = problem.boundary_values(self.mesh)
        _check_f64("boundary_values", values)
        if tuple(values.shape) != self.shape:
            raise ValueError(f"boundary values must have the grid shape {self.shape}, got {tuple(values.shape)}")
        self.register_buffer("boundary_target", values[mask])
        problem.setup(self.mesh)
        self.log_boundary_var = nn.Parameter(torch.tensor(math.log(config.boundary_var), dtype=F64),
                                             requires_grad=config.learn_noise)
        self.log_residual_var = nn.Parameter(torch.tensor(math.log(config.residual_var), dtype=F64),
                                             requires_grad=config.learn_noise)
        for p in self.kernels.parameters():
            p.requires_grad_(config.train_kernel)
        self._cache: dict | None = None

    # -- kernel factors ---------------------------------------------------------------------------
    def factor(self, axis: int) -> Tensor:
        """:math:`K_a = k_a(X_a, X_a) + \\epsilon\\, k_a(0) I`, shape (n_a, n_a)."""
        x, ker = self.axes[axis], self.kernels[axis]
        k = ker.matrix(x)
        k0 = ker.log_weight.exp().sum()
        return k + self.config.jitter * k0 * torch.eye(x.numel(), dtype=F64)

    def factors(self) -> list[Tensor]:
        """All :meth:`factor` matrices."""
        return [self.factor(a) for a in range(len(self.axes))]

    def derivative_operator(self, axis: int, order: int) -> Tensor:
        """:math:`D_a^{(p)} = K_a^{(p)} K_a^{-1}`, shape (n_a, n_a): maps grid values to the GP
        interpolant's ``order``-th derivative along ``axis`` at the grid points."""
        key = (axis, order)
        if self._cache is not None and key in self._cache:
            return self._cache[key]
        x, ker = self.axes[axis], self.kernels[axis]
        kd = ker.matrix(x, order=order)
        chol = torch.linalg.cholesky(self._factor_cached(axis))
        # D = Kd K^{-1}  <=>  K D^T = Kd^T  (K symmetric)
        op = torch.cholesky_solve(kd.T, chol).T
        if self._cache is not None:
            self._cache[key] = op
        return op

    def _factor_cached(self, axis: int) -> Tensor:
        if self._cache is None:
            return self.factor(axis)
        key = ("K", axis)
        if key not in self._cache:
            self._cache[key] = self.factor(axis)
        return self._cache[key]

    def derivative(self, u: Tensor, axis: int, order: int) -> Tensor:
        """:math:`\\partial^p_a u` on the grid: :math:`D_a^{(p)} \\times_a u`, shape ``u.shape``."""
        return apply_along(self.derivative_operator(axis, order), u, axis)

    # -- loss ------------------------------------------------------------------------------------
    def _sqrt_factor(self, k: Tensor) -> tuple[Tensor, Tensor]:
        """:math:`S` with :math:`S S^\\top = K` and :math:`\\log|K|` for one factor."""
        if self.config.factorization == "cholesky":
            chol = torch.linalg.cholesky(k)
            return chol, 2.0 * torch.log(torch.diagonal(chol)).sum()
        evals, evecs = torch.linalg.eigh(k)
        return evecs * evals.sqrt(), torch.log(evals).sum()

    def _values_and_prior(self) -> tuple[Tensor, Tensor]:
        factors = [self._factor_cached(a) for a in range(len(self.axes))]
        if not self.config.whiten:
            quad, logdet = kron_quad_logdet(factors, self.z, self.config.factorization)
            return self.z, 0.5 * quad + 0.5 * logdet
        u, logdet, n_total = self.z, self.z.new_zeros(()), self.z.numel()
        for a, k in enumerate(factors):
            s_a, ld = self._sqrt_factor(k)
            u = apply_along(s_a, u, a)
            logdet = logdet + (n_total / k.shape[0]) * ld
        return u, 0.5 * (self.z * self.z).sum() + 0.5 * logdet

    @property
    def u(self) -> Tensor:
        """Solution values on the grid, shape (n_1, ..., n_d) (:math:`Z \\times_a S_a` when whitened)."""
        if not self.config.whiten:
            return self.z
        u = self.z
        for a in range(len(self.axes)):
            u = apply_along(self._sqrt_factor(self.factor(a))[0], u, a)
        return u

    def loss_terms(self) -> dict[str, Tensor]:
        """The loss parts: ``prior`` (½ uᵀK⁻¹u + ½ log|K|), ``boundary``, ``residual``, ``total``."""
        self._cache = {}
        try:
            u, prior = self._values_and_prior()
            vb, vr = self.log_boundary_var.exp(), self.log_residual_var.exp()
            diff = u[self.boundary_mask] - self.boundary_target
            boundary = 0.5 * (diff * diff).sum() / vb
            res = self.problem.residual(self, u)
            residual = 0.5 * (res * res).sum() / vr
            if self.config.learn_noise:
                boundary = boundary + 0.5 * diff.numel() * self.log_boundary_var
                residual = residual + 0.5 * res.numel() * self.log_residual_var
        finally:
            self._cache = None
        return {"prior": prior, "boundary": boundary, "residual": residual,
                "total": prior + boundary + residual}

    def loss(self) -> Tensor:
        """Total loss (scalar), :meth:`loss_terms` ``["total"]``."""
        return self.loss_terms()["total"]

    def forward(self) -> Tensor:
        """The solution on the grid, shape (n_1, ..., n_d) (a detached copy of :attr:`u`)."""
        with torch.no_grad():
            return self.u.clone()

    def error(self) -> float | None:
        """Relative L2 error of :attr:`u` against ``problem.exact`` on the grid (None if unknown)."""
        if self.problem.exact is None:
            return None
        with torch.no_grad():
            return float(relative_l2(self.u, self.problem.exact(*self.mesh), batch_dims=0))

    # -- training --------------------------------------------------------------------------------
    def fit(self, eval_every: int = 100, callback: Callable[[int, GPHM], None] | None = None) -> FitResult:
        """Minimise :meth:`loss` with Adam (``adam_steps``), then L-BFGS (``lbfgs_steps``).

        Parameters
        ----------
        eval_every : int
            Record the loss and error every this many Adam steps (and after every L-BFGS call).
        callback : callable ``(step, model)``, optional
            Called at each record.

        Returns
        -------
        FitResult
        """
        cfg, res = self.config, FitResult()
        kernel_params = [p for p in list(self.kernels.parameters())
                         + [self.log_boundary_var, self.log_residual_var] if p.requires_grad]
        groups = [{"params": [self.z], "lr": cfg.lr}]
        if kernel_params:
            groups.append({"params": kernel_params, "lr": cfg.kernel_lr})
        opt = torch.optim.Adam(groups)
        start = time.perf_counter()

        def record(step: int, loss: Tensor) -> None:
            res.losses.append(float(loss))
            res.eval_steps.append(step)
            err = self.error()
            if err is not None:
                res.errors.append(err)
            if callback is not None:
                callback(step, self)

        step = 0
        for step in range(1, cfg.adam_steps + 1):
            opt.zero_grad(set_to_none=True)
            loss = self.loss()
            loss.backward()
            opt.step()
            if step % eval_every == 0 or step == cfg.adam_steps:
                record(step, loss.detach())
            if cfg.time_limit_s is not None and time.perf_counter() - start > cfg.time_limit_s:
                record(step, loss.detach())
                break
        if cfg.lbfgs_steps > 0:
            params = [self.z] + (kernel_params if cfg.lbfgs_train_kernel else [])
            lbfgs = torch.optim.LBFGS(params, lr=1.0, max_iter=cfg.lbfgs_steps, history_size=50,
                                      tolerance_grad=1e-12, tolerance_change=1e-15,
                                      line_search_fn="strong_wolfe")

            def closure() -> Tensor:
                lbfgs.zero_grad(set_to_none=True)
                value = self.loss()
                value.backward()
                return value

            lbfgs.step(closure)
            step += int(lbfgs.state[lbfgs.param_groups[0]["params"][0]].get("n_iter", cfg.lbfgs_steps))
            with torch.no_grad():
                record(step, self.loss())
        res.time_s = time.perf_counter() - start
        res.steps = step
        return res


# ------------------------------------------------------------------------------------------ dense
def dense_terms(factors: Sequence[Tensor], derivs: Sequence[Tensor], u: Tensor) -> dict[str, Tensor]:
    """Reference computation that forms the full :math:`K` (tests and benchmark only; :math:`O(N^3)`).

    Parameters
    ----------
    factors : sequence of Tensor, shapes (n_a, n_a)
        :math:`K_a` (jitter included).
    derivs : sequence of Tensor, shapes (n_a, n_a)
        :math:`K_a''` per axis.
    u : Tensor, shape (n_1, ..., n_d)

    Returns
    -------
    dict
        ``quad`` (:math:`v^\\top K^{-1} v`), ``logdet``, ``solve`` (:math:`K^{-1}v` as a grid) and
        ``laplacian`` (:math:`\\sum_a (K_1 \\otimes\\dots\\otimes K_a'' \\otimes\\dots) K^{-1} v` as a grid).
    """
    def kron_all(mats: Sequence[Tensor]) -> Tensor:
        out = mats[0]
        for m in mats[1:]:
            out = torch.kron(out, m)
        return out

    k = kron_all(factors)
    v = u.reshape(-1)
    chol = torch.linalg.cholesky(k)
    alpha = torch.cholesky_solve(v[:, None], chol)[:, 0]
    lap = torch.zeros_like(v)
    for a in range(len(factors)):
        mats = list(factors)
        mats[a] = derivs[a]
        lap = lap + kron_all(mats) @ alpha
    return {"quad": v @ alpha, "logdet": 2 * torch.log(torch.diagonal(chol)).sum(),
            "solve": alpha.reshape(u.shape), "laplacian": lap.reshape(u.shape)}
