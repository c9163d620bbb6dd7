r"""Deep conjugate direction method (DCDM; Kaneda, Akar, Chen, Kim & Teran, ICML 2023).

A fully convolutional network :math:`f` approximates the inverse of an SPD grid operator :math:`A`
up to scale: :math:`q = f(r / \|r\|) \approx c\, A^{-1} r`. It is trained without solutions, with
the loss

.. math::
    \mathcal{L}(b) = \Big\| b - \frac{q^T b}{q^T A q} A q \Big\|_2^2, \qquad q = f(b/\|b\|),
    \qquad \|b\| = 1,

which is zero exactly when :math:`q \propto A^{-1} b`. Training right-hand sides are random
combinations :math:`b = \sum_i c_i v_i / \|\cdot\|` of Ritz vectors :math:`v_i` of :math:`A` from a
Lanczos run (:func:`lanczos_ritz`), weighted towards the low end of the spectrum (the error
components CG is slow on).

The solver (:func:`dcdm_solve`), from :math:`x_0 = 0, r_0 = b`:

.. math::
    q_k &= f(r_k / \|r_k\|), \qquad
    p_k = q_k - \sum_{j = k-2}^{k-1} \frac{q_k^T A p_j}{p_j^T A p_j}\, p_j, \\
    \alpha_k &= \frac{p_k^T r_k}{p_k^T A p_k}, \qquad x_{k+1} = x_k + \alpha_k p_k, \qquad
    r_{k+1} = r_k - \alpha_k A p_k,

until :math:`\|r_k\| \le \mathrm{tol}\, \|b\|`. Exact line search makes the A-norm of the error
non-increasing for any network.

Shapes: grid tensors are ``(B, 1, *grid)`` with ``grid = (n, n)`` or ``(n, n, n)``; vectors are
``(N,)`` or ``(B, N)`` with ``N = prod(grid)`` in C order (as :func:`pdebench.solvers.linalg_baselines.poisson_matrix`).
"""

from __future__ import annotations

import math
import warnings
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import scipy.sparse as sp
import torch
from torch import nn
from torch.nn import functional as F

from pdebench.models.registry import register_model
from pdebench.solvers.linalg_baselines import SolveResult

Network = Callable[[np.ndarray], np.ndarray]  # (N,) float64 -> (N,) float64


# ----------------------------------------------------------------------------------------------
# Network
# ----------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class DCDMNetConfig:
    """Hyper-parameters of :class:`DCDMNet`.

    Attributes
    ----------
    dim
        Spatial dimensions (2 or 3).
    width
        Channels at every level (constant, so the network stays small and cheap per call).
    levels
        Number of 2x down-samplings (U-Net depth); the receptive field grows as ``2**levels``.
    blocks
        Residual blocks per level (each two 3x3[x3] convolutions).
    """

    dim: int = 2
    width: int = 16
    levels: int = 5
    blocks: int = 1

    def __post_init__(self) -> None:
        if self.dim not in (2, 3):
            raise ValueError(f"dim must be 2 or 3, got {self.dim}")
        if self.width < 1:
            raise ValueError(f"width must be >= 1, got {self.width}")
        if self.levels < 0:
            raise ValueError(f"levels must be >= 0, got {self.levels}")
        if self.blocks < 1:
            raise ValueError(f"blocks must be >= 1, got {self.blocks}")


class _ResBlock(nn.Module):
    def __init__(self, conv: type, ch: int) -> None:
        super().__init__()
        self.c1 = conv(ch, ch, 3, padding=1, bias=False)
        self.c2 = conv(ch, ch, 3, padding=1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.c2(torch.tanh(self.c1(torch.tanh(x))))


@register_model(
    "dcdm",
    kind="linear-solver",
    description="Deep conjugate direction method (Kaneda et al. 2023): a fully convolutional U-Net "
    "q = f(r/||r||) ~ A^{-1} r up to scale, trained unsupervised, used as the search direction of a "
    "conjugate-direction solver (A-orthogonal to the previous two, exact line search)",
)
class DCDMNet(nn.Module):
    r"""Fully convolutional U-Net plus identity skip, :math:`q = U(r) + s\,r`, ``(B, 1, *grid) -> (B, 1, *grid)``.

    All convolutions are bias-free and the activation is ``tanh``, so :math:`f` is odd,
    :math:`f(-r) = -f(r)` and :math:`f(0) = 0`: a bias-dominated, input-independent output would
    make every direction orthogonal to the residual after one exact line search and stall the
    solver (observed with biased GELU layers). The solver normalises the input
    (:math:`\|r\| = 1`) and the line search removes the output scale. Grid sizes that are not
    multiples of ``2**levels`` are zero-padded and cropped back, so any size works (a network
    trained at 64² runs at 128²).

    Parameters
    ----------
    dim, width, levels, blocks
        See :class:`DCDMNetConfig`.
    in_channels, out_channels
        Must be 1 (accepted for the registry's common constructor signature).
    """

    def __init__(
        self,
        dim: int = 2,
        width: int = 16,
        levels: int = 5,
        blocks: int = 1,
        in_channels: int = 1,
        out_channels: int = 1,
    ) -> None:
        super().__init__()
        if in_channels != 1 or out_channels != 1:
            raise ValueError(
                f"DCDMNet maps one channel to one, got in_channels={in_channels}, out_channels={out_channels}"
            )
        self.config = DCDMNetConfig(dim=dim, width=width, levels=levels, blocks=blocks)
        conv = nn.Conv2d if dim == 2 else nn.Conv3d
        self.dim, self.levels = dim, levels
        chans = [width] * (levels + 1)
        self.lift = conv(1, width, 3, padding=1, bias=False)
        self.down_blocks = nn.ModuleList(
            nn.Sequential(*[_ResBlock(conv, chans[k]) for _ in range(blocks)]) for k in range(levels + 1)
        )
        self.down = nn.ModuleList(conv(chans[k], chans[k + 1], 2, stride=2, bias=False) for k in range(levels))
        self.up = nn.ModuleList(
            (nn.ConvTranspose2d if dim == 2 else nn.ConvTranspose3d)(chans[k + 1], chans[k], 2, stride=2, bias=False)
            for k in range(levels)
        )
        self.up_blocks = nn.ModuleList(
            nn.Sequential(*[_ResBlock(conv, chans[k]) for _ in range(blocks)]) for k in range(levels)
        )
        self.proj = conv(width, 1, 3, padding=1, bias=False)
        # learned identity skip q = U-Net(r) + s r: keeps a steepest-descent component in every
        # direction, so the solver cannot stall on residuals the U-Net maps to ~0
        self.skip = nn.Parameter(torch.tensor(0.0))

    def forward(self, r: torch.Tensor) -> torch.Tensor:
        """Apply the network.

        Parameters
        ----------
        r
            Shape ``(B, 1, *grid)`` with ``len(grid) == dim``.

        Returns
        -------
        torch.Tensor
            ``q``, same shape as ``r``.
        """
        if r.ndim != self.dim + 2 or r.shape[1] != 1:
            raise ValueError(f"input must have shape (B, 1, *grid) with {self.dim} grid axes, got {tuple(r.shape)}")
        grid = r.shape[2:]
        m = 2**self.levels
        pad = []
        for s in reversed(grid):
            pad += [0, (-s) % m]
        x = F.pad(r, pad) if any(pad) else r
        h = self.lift(x)
        skips = []
        for k in range(self.levels):
            h = self.down_blocks[k](h)
            skips.append(h)
            h = self.down[k](h)
        h = self.down_blocks[self.levels](h)
        for k in reversed(range(self.levels)):
            h = self.up[k](h) + skips[k]
            h = self.up_blocks[k](h)
        q = self.proj(torch.tanh(h))
        return q[(slice(None), slice(None), *(slice(0, s) for s in grid))] + self.skip * r


def network_operator(model: nn.Module, grid: Sequence[int], dtype: torch.dtype = torch.float32) -> Network:
    """Wrap a grid network as the solver's direction map ``(N,) -> (N,)`` (float64 in and out).

    The input is normalised to unit norm before the (float32) network call.
    """
    grid = tuple(int(s) for s in grid)
    N = math.prod(grid)

    def apply(r: np.ndarray) -> np.ndarray:
        if r.shape != (N,):
            raise ValueError(f"vector has shape {r.shape}, expected ({N},) for grid {grid}")
        nrm = float(np.linalg.norm(r))
        t = torch.as_tensor(r / (nrm if nrm > 0 else 1.0), dtype=dtype).reshape(1, 1, *grid)
        with torch.inference_mode():
            q = model(t)
        return q.reshape(N).to(torch.float64).numpy()

    return apply


# ----------------------------------------------------------------------------------------------
# Loss and training data
# ----------------------------------------------------------------------------------------------
def to_torch_sparse(A: sp.sparray | sp.spmatrix, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """A scipy sparse matrix ``(N, N)`` as a torch sparse CSR tensor."""
    A = sp.csr_array(A)
    with warnings.catch_warnings():  # "sparse CSR support is in beta" is harmless here
        warnings.simplefilter("ignore", UserWarning)
        return torch.sparse_csr_tensor(
            torch.as_tensor(A.indptr, dtype=torch.int64),
            torch.as_tensor(A.indices, dtype=torch.int64),
            torch.as_tensor(A.data, dtype=dtype),
            size=A.shape,
            check_invariants=False,
        )


def dcdm_loss(q: torch.Tensor, b: torch.Tensor, A: torch.Tensor) -> torch.Tensor:
    r"""Mean DCDM loss :math:`\|b - \frac{q^T b}{q^T A q} A q\|^2` over a batch.

    Parameters
    ----------
    q
        Network outputs, shape ``(B, N)``.
    b
        Right-hand sides, shape ``(B, N)`` (unit norm in training, so the loss is a relative
        residual squared).
    A
        SPD matrix, torch sparse (or dense) ``(N, N)``.

    Returns
    -------
    torch.Tensor
        Scalar.
    """
    if q.shape != b.shape or q.ndim != 2 or q.shape[1] != A.shape[0]:
        raise ValueError(f"q {tuple(q.shape)} and b {tuple(b.shape)} must both be (B, N) with N = {A.shape[0]}")
    Aq = (A @ q.T).T
    alpha = (q * b).sum(1, keepdim=True) / (q * Aq).sum(1, keepdim=True)
    return ((b - alpha * Aq) ** 2).sum(1).mean()


def lanczos_ritz(A: sp.sparray | sp.spmatrix, m: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Ritz pairs of ``A`` from ``m`` Lanczos steps with full reorthogonalisation.

    Parameters
    ----------
    A
        Symmetric, shape ``(N, N)``.
    m
        Lanczos steps, ``1 <= m <= N``.
    seed
        Start vector seed.

    Returns
    -------
    theta
        Ritz values, ascending, shape ``(m,)``.
    V
        Ritz vectors (orthonormal columns), shape ``(N, m)``.
    """
    N = A.shape[0]
    if not (1 <= m <= N):
        raise ValueError(f"m must satisfy 1 <= m <= N = {N}, got {m}")
    rng = np.random.default_rng(seed)
    Q = np.zeros((N, m))
    alpha, beta = np.zeros(m), np.zeros(max(m - 1, 0))
    v = rng.standard_normal(N)
    v /= np.linalg.norm(v)
    k_done = m
    for k in range(m):
        Q[:, k] = v
        w = A @ v
        alpha[k] = v @ w
        w -= Q[:, : k + 1] @ (Q[:, : k + 1].T @ w)
        w -= Q[:, : k + 1] @ (Q[:, : k + 1].T @ w)  # twice is enough
        if k < m - 1:
            beta[k] = np.linalg.norm(w)
            if beta[k] < 1e-12 * abs(alpha[k]):
                k_done = k + 1
                break
            v = w / beta[k]
    T = np.diag(alpha[:k_done]) + np.diag(beta[: k_done - 1], 1) + np.diag(beta[: k_done - 1], -1)
    theta, S = np.linalg.eigh(T)
    return theta, Q[:, :k_done] @ S


def ritz_rhs(V: np.ndarray, n_rhs: int, rng: np.random.Generator, low_fraction: float = 0.5,
             low_weight: float = 9.0) -> np.ndarray:
    r"""Unit right-hand sides :math:`b = \sum_i c_i v_i / \|\cdot\|` from Ritz vectors.

    :math:`c_i \sim N(0, 1)`, times ``low_weight`` for the lowest ``low_fraction`` of the Ritz
    vectors (columns of ``V`` in ascending Ritz-value order), as in the DCDM paper.

    Returns
    -------
    numpy.ndarray
        Shape ``(n_rhs, N)``.
    """
    m = V.shape[1]
    c = rng.standard_normal((n_rhs, m))
    c[:, : max(1, int(round(low_fraction * m)))] *= low_weight
    b = c @ V.T
    return b / np.linalg.norm(b, axis=1, keepdims=True)


@dataclass
class DCDMTrainConfig:
    """Training settings for :func:`train_dcdm`.

    Attributes
    ----------
    steps
        Optimiser steps.
    batch
        Right-hand sides per step (all from one system, cycling over the systems).
    lr
        AdamW learning rate (cosine decay to 5 % over ``steps``).
    lanczos_steps
        Lanczos steps per system for the Ritz vectors.
    rhs_per_system
        Size of the fixed right-hand-side pool per system.
    seed
        Seed for the pool and the batch order.
    """

    steps: int = 300
    batch: int = 16
    lr: float = 2e-3
    lanczos_steps: int = 100
    rhs_per_system: int = 256
    seed: int = 0

    def __post_init__(self) -> None:
        for name in ("steps", "batch", "lanczos_steps", "rhs_per_system"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if not (self.lr > 0 and math.isfinite(self.lr)):
            raise ValueError(f"lr must be a positive number, got {self.lr}")


@dataclass
class TrainHistory:
    """Loss per step and wall time of :func:`train_dcdm`."""

    loss: list[float] = field(default_factory=list)
    time: float = 0.0


def train_dcdm(
    model: DCDMNet,
    systems: Sequence[sp.sparray | sp.spmatrix],
    grid: Sequence[int],
    config: DCDMTrainConfig | None = None,
) -> TrainHistory:
    """Train ``model`` unsupervised with :func:`dcdm_loss` on Ritz right-hand sides of ``systems``.

    Parameters
    ----------
    model
        The network (trained in place, float32).
    systems
        SPD matrices, each ``(N, N)`` with ``N = prod(grid)``.
    grid
        Grid shape, ``(n, n)`` or ``(n, n, n)``.
    config
        :class:`DCDMTrainConfig`.

    Returns
    -------
    TrainHistory
    """
    config = config or DCDMTrainConfig()
    grid = tuple(int(s) for s in grid)
    N = math.prod(grid)
    if len(systems) == 0:
        raise ValueError("need at least one system to train on")
    for i, A in enumerate(systems):
        if A.shape != (N, N):
            raise ValueError(f"system {i} has shape {A.shape}, expected ({N}, {N}) for grid {grid}")
    rng = np.random.default_rng(config.seed)
    t0 = time.perf_counter()
    mats, pools = [], []
    for i, A in enumerate(systems):
        # scale A to unit diagonal-ish magnitude: the loss is invariant to it, float32 likes it
        scale = float(np.max(A.diagonal()))
        _, V = lanczos_ritz(A, min(config.lanczos_steps, N), seed=config.seed + i)
        pools.append(torch.as_tensor(ritz_rhs(V, config.rhs_per_system, rng), dtype=torch.float32))
        mats.append(to_torch_sparse(A / scale))
    opt = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=0.0)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, config.steps, eta_min=0.05 * config.lr)
    hist = TrainHistory()
    model.train()
    for step in range(config.steps):
        s = step % len(mats)
        idx = torch.as_tensor(rng.choice(config.rhs_per_system, config.batch, replace=False))
        b = pools[s][idx]
        q = model(b.reshape(config.batch, 1, *grid)).reshape(config.batch, N)
        loss = dcdm_loss(q, b, mats[s])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        hist.loss.append(float(loss.detach()))
    model.eval()
    hist.time = time.perf_counter() - t0
    return hist


# ----------------------------------------------------------------------------------------------
# Solver
# ----------------------------------------------------------------------------------------------
def dcdm_solve(
    A: sp.sparray | sp.spmatrix | np.ndarray,
    b: np.ndarray,
    network: Network,
    tol: float = 1e-6,
    maxiter: int = 1000,
    n_orth: int = 2,
    fallback_cos: float = 1e-3,
) -> SolveResult:
    """Deep conjugate direction solve of ``A x = b`` from ``x0 = 0`` (see the module docstring).

    Parameters
    ----------
    A
        SPD, shape ``(N, N)``.
    b
        Shape ``(N,)``, finite.
    network
        Direction map ``r -> q``, ``(N,) -> (N,)`` (e.g. :func:`network_operator`); it receives
        ``r / ||r||``.
    tol
        Relative residual tolerance, > 0.
    maxiter
        Iteration cap, >= 1.
    n_orth
        Number of previous directions each new one is A-orthogonalised against (paper: 2).
    fallback_cos
        Safeguard (not in the paper): when :math:`|p^T r| \le` ``fallback_cos`` :math:`\|p\|\|r\|`
        the step uses the residual (A-orthogonalised) instead of the network direction. A nonlinear
        network is not positive definite, so :math:`r^T f(r)` can vanish; then the exact line search
        gives :math:`\alpha = 0`, ``r`` does not change and the plain method stalls for ever
        (observed with partially trained networks). ``0`` disables it (the paper's method).

    Returns
    -------
    SolveResult
        ``residuals`` is the relative residual history ``(iterations + 1,)``; ``extra["energy"]``
        holds :math:`\\tfrac12 x_k^T A x_k - b^T x_k` per iterate (non-increasing),
        ``extra["fallbacks"]`` the number of safeguard steps, ``extra["matvecs"]`` the matrix products.
    """
    b = np.asarray(b, dtype=np.float64)
    N = A.shape[0]
    if A.ndim != 2 or A.shape[1] != N:
        raise ValueError(f"matrix must be square, got shape {A.shape}")
    if b.shape != (N,):
        raise ValueError(f"right-hand side has shape {b.shape} but the matrix is {A.shape}")
    if not np.all(np.isfinite(b)):
        raise ValueError("right-hand side has non-finite entries")
    if not (isinstance(tol, (int, float)) and math.isfinite(tol) and tol > 0):
        raise ValueError(f"tol must be a positive number, got {tol!r}")
    if int(maxiter) < 1:
        raise ValueError(f"maxiter must be >= 1, got {maxiter}")
    if int(n_orth) < 0:
        raise ValueError(f"n_orth must be >= 0, got {n_orth}")
    if not (0 <= fallback_cos < 1):
        raise ValueError(f"fallback_cos must be in [0, 1), got {fallback_cos}")
    t0 = time.perf_counter()
    x = np.zeros(N)
    r = b.copy()
    bnorm = float(np.linalg.norm(b))
    hist, energy = [1.0 if bnorm > 0 else 0.0], [0.0]
    prev: list[tuple[np.ndarray, np.ndarray, float]] = []  # (p, A p, p^T A p)
    k = fallbacks = 0
    while bnorm > 0 and hist[-1] > tol and k < maxiter:
        rn = float(np.linalg.norm(r))
        p = np.asarray(network(r / rn), dtype=np.float64).reshape(N)
        if not np.all(np.isfinite(p)):
            raise ValueError(f"network returned non-finite values at iteration {k}")
        Ap = np.asarray(A @ p).reshape(N)
        for pj, Apj, pAp_j in prev:
            c = float(p @ Apj) / pAp_j
            p = p - c * pj
            Ap = Ap - c * Apj
        if fallback_cos > 0 and abs(float(p @ r)) <= fallback_cos * float(np.linalg.norm(p)) * rn:
            # the network's direction is (nearly) orthogonal to r: no progress possible along it,
            # and the same r would give the same direction again. Take the A-orthogonalised
            # steepest-descent direction for this step instead (one extra matrix product).
            p, Ap = r.copy(), np.asarray(A @ r).reshape(N)
            for pj, Apj, pAp_j in prev:
                c = float(p @ Apj) / pAp_j
                p = p - c * pj
                Ap = Ap - c * Apj
            fallbacks += 1
        pAp = float(p @ Ap)
        if not pAp > 0:  # direction vanished (network output in span of previous ones)
            break
        alpha = float(p @ r) / pAp
        x += alpha * p
        r -= alpha * Ap
        k += 1
        hist.append(float(np.linalg.norm(r)) / bnorm)
        energy.append(0.5 * float(x @ (b - r)) - float(b @ x))
        prev.append((p, Ap, pAp))
        if len(prev) > n_orth:
            prev.pop(0)
    elapsed = time.perf_counter() - t0
    extra = {"energy": np.asarray(energy), "fallbacks": fallbacks, "matvecs": k + fallbacks}
    return SolveResult(x, k, np.asarray(hist), hist[-1] <= tol, elapsed, 0.0, extra)
