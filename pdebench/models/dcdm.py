r"""Deep conjugate direction method (DCDM; Kaneda, Akar, Chen, Kim & Teran, ICML 2023).

A fully convolutional network :math:`f` approximates the inverse of an SPD grid operator :math:`A`
up to scale: :math:`q = f(r / \|r\|) \approx c\, A^{-1} r`. It is trained without solutions, with
the loss

.. math::
    \mathcal{L}(b) = \Big\| b - \frac{q^T b}{q^T A q} A q \Big\|_2^2, \qquad q = f(b/\|b\|),
    \qquad \|b\| = 1,

which is zero exactly when :math:`q \propto A^{-1} b`. Training right-hand sides are random
combinations :math:`b = \sum_i c_i v_i / \|\cdot\|` of Ritz vectors :math:`v_i` of :math:`A` from a
Lanczos run (training, with the loss, lives in :mod:`pdebench.training.dcdm_fit`), weighted towards the low end of the spectrum (the error
components CG is slow on).

The solver (:func:`dcdm_solve`), from :math:`x_0 = 0, r_0 = b`:

.. math::
    q_k &= f(r_k / \|r_k\|), \qquad
    p_k = q_k - \sum_{j = k-2}^{k-1} \frac{q_k^T A p_j}{p_j^T A p_j}\, p_j, \\
    \alpha_k &= \frac{p_k^T r_k}{p_k^T A p_k}, \qquad x_{k+1} = x_k + \alpha_k p_k, \qquad
    r_{k+1} = r_k - \alpha_k A p_k,

until :math:`\|r_k\| \le \mathrm{tol}\, \|b\|`, confirmed on the true residual (the stopping rule
of :class:`~pdebench.solvers.linalg.result.ResidualMonitor`, shared with CG). Exact line search makes
the A-norm of the error non-increasing for any network; with a symmetric positive-definite network
the loop is preconditioned CG (:func:`~pdebench.solvers.linalg.pcg`), but the directions here come
from Gram-Schmidt against the last ``n_orth`` ones rather than CG's two-term recurrence, which is
what keeps a nonlinear network usable.

Shapes: grid tensors are ``(B, 1, *grid)`` with ``grid = (n, n)`` or ``(n, n, n)``; vectors are
``(N,)`` or ``(B, N)`` with ``N = prod(grid)`` in C order (as :func:`pdebench.problems.elliptic_matrices.poisson_matrix`).
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import scipy.sparse as sp
import torch
from torch import nn
from torch.nn import functional as F

from pdebench.models.network_checkpoint import load_network, save_network
from pdebench.models.registry import register_model
from pdebench.registry import check_at_least_one
from pdebench.solvers.linalg import ResidualMonitor, SolveResult, check_system

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
        check_at_least_one(width=self.width, blocks=self.blocks)
        if self.levels < 0:
            raise ValueError(f"levels must be >= 0, got {self.levels}")


def _check_field(r: torch.Tensor, dim: int) -> None:
    if r.ndim != dim + 2 or r.shape[1] != 1:
        raise ValueError(f"input must have shape (B, 1, *grid) with {dim} grid axes, got {tuple(r.shape)}")


class _ResBlock(nn.Module):
    def __init__(self, conv: type, ch: int) -> None:
        super().__init__()
        self.c1 = conv(ch, ch, 3, padding=1, bias=False)
        self.c2 = conv(ch, ch, 3, padding=1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.c2(torch.tanh(self.c1(torch.tanh(x))))


@register_model(
    "dcdm",
    board="linear-solver",
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

    #: Precision of the network inside the solver (:func:`network_operator`).
    solve_dtype = torch.float32

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
        """``q`` ``(B, 1, *grid)`` of ``r`` ``(B, 1, *grid)``, ``len(grid) == dim``."""
        _check_field(r, self.dim)
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


@dataclass(frozen=True)
class SymmetricDCDMNetConfig:
    """Hyper-parameters of :class:`SymmetricDCDMNet`.

    Attributes
    ----------
    dim
        Spatial dimensions (2 or 3).
    width
        Channels of the lifted field (every level).
    max_levels
        Cap on the number of coarsenings; the network coarsens while the grid has >= 3 points per
        axis, so a 128² grid gets one level more than a 64² one with the same weights.
    identity
        Initial weight ``s`` of the identity term ``s² r``.
    noise
        Standard deviation of the seeded perturbation of the initial (BPX) weights, which breaks
        the symmetry between channels.
    seed
        Seed of that perturbation.
    """

    dim: int = 2
    width: int = 4
    max_levels: int = 12
    identity: float = 0.3
    noise: float = 3e-3
    seed: int = 0

    def __post_init__(self) -> None:
        if self.dim not in (2, 3):
            raise ValueError(f"dim must be 2 or 3, got {self.dim}")
        check_at_least_one(width=self.width)
        if self.max_levels < 0:
            raise ValueError(f"max_levels must be >= 0, got {self.max_levels}")
        if not (math.isfinite(self.identity) and math.isfinite(self.noise) and self.noise >= 0):
            raise ValueError(f"identity must be finite and noise >= 0, got identity={self.identity}, noise={self.noise}")


@register_model(
    "dcdm_spd",
    board="linear-solver",
    description="DCDM with a symmetric positive-definite network: a tied-weight multilevel conv "
    "U-Net q = s^2 r + sum_l g_l E_l^T G^T G E_l r (weights shared across levels), trained with the "
    "DCDM loss; the two-direction conjugate-direction loop is then exactly PCG",
)
class SymmetricDCDMNet(nn.Module):
    r"""A linear, symmetric positive-definite DCDM network, ``(B, 1, *grid) -> (B, 1, *grid)``.

    .. math::
        q = M r = s^2 r + \sum_{l=0}^{L} e^{a + b l}\, E_l^T G^T G\, E_l\, r,
        \qquad E_0 = C, \quad E_{l+1} = D E_l,

    with three bias-free convolutions shared by all levels: the lift :math:`C` (1 → ``width``
    channels, 3×3[×3]), the restriction :math:`D` (``width`` → ``width``, 3×3[×3], stride 2) and
    the level operator :math:`G` (``width`` → ``width``, 3×3[×3]); :math:`E_l^T` and :math:`G^T`
    are the exact adjoints (transposed convolutions with the same weights, zero padding, so the
    Dirichlet boundary is respected). :math:`M` is symmetric and positive definite for any
    weights (:math:`s \ne 0`), so the DCDM loop (:func:`dcdm_solve`: A-orthogonalise against the
    previous two directions, exact line search) *is* preconditioned CG with :math:`M`, with CG's
    guarantees: no stall, monotone A-norm error, convergence in at most ``N`` steps. The paper's
    nonlinear network (:class:`DCDMNet`) has none of these, and at a CPU training budget it stalls.

    The weights start at the BPX multilevel preconditioner (Bramble, Pasciak & Xu 1990): :math:`C`
    the identity into channel 0, :math:`D` full weighting per channel, :math:`G` the identity and
    level gain :math:`e^{b} = 2^d \cdot 4` (:math:`M = \sum_l h_l^{2-d} P_l P_l^T` with value-preserving
    interpolation :math:`P_l = 2^{dl} E_l^T`), plus a small seeded perturbation; the DCDM loss then
    trains all of them. Levels are added while the grid has at least 3 points per axis (up to
    ``max_levels``) and every level uses the same weights, so the network is defined at any
    resolution the way a multigrid hierarchy is: one trained at 64² runs at 128² with one more level.

    Parameters
    ----------
    dim, width, max_levels, identity, noise, seed
        See :class:`SymmetricDCDMNetConfig`.
    in_channels, out_channels
        Must be 1 (accepted for the registry's common constructor signature).
    """

    #: Precision of the network inside the solver (:func:`network_operator`).
    solve_dtype = torch.float64
    #: :math:`r^T M r > 0` for every ``r``: :func:`dcdm_solve` needs no safeguard.
    symmetric_positive_definite = True

    def __init__(self, dim: int = 2, width: int = 4, max_levels: int = 12, identity: float = 0.3,
                 noise: float = 3e-3, seed: int = 0, in_channels: int = 1, out_channels: int = 1) -> None:
        super().__init__()
        if in_channels != 1 or out_channels != 1:
            raise ValueError(f"SymmetricDCDMNet maps one channel to one, got in_channels={in_channels}, "
                             f"out_channels={out_channels}")
        self.config = SymmetricDCDMNetConfig(dim=dim, width=width, max_levels=max_levels, identity=identity,
                                             noise=noise, seed=seed)
        self.dim = dim
        gen = torch.Generator().manual_seed(seed)
        kernel, centre = (3,) * dim, (1,) * dim
        weighting = torch.tensor([0.25, 0.5, 0.25])
        stencil = weighting
        for _ in range(dim - 1):
            stencil = stencil[..., None] * weighting
        lift = noise * torch.randn(width, 1, *kernel, generator=gen)
        lift[(0, 0, *centre)] += 1.0
        restrict = noise * torch.randn(width, width, *kernel, generator=gen)
        level = noise * torch.randn(width, width, *kernel, generator=gen)
        for c in range(width):
            restrict[c, c] += stencil
            level[(c, c, *centre)] += 1.0
        self.lift, self.restrict, self.level = nn.Parameter(lift), nn.Parameter(restrict), nn.Parameter(level)
        self.gain_offset = nn.Parameter(torch.tensor(0.0))  # a
        self.gain_rate = nn.Parameter(torch.tensor(math.log(2.0**dim * 4.0)))  # b
        self.identity = nn.Parameter(torch.tensor(float(identity)))  # s
        self._conv = getattr(F, f"conv{dim}d")
        self._adjoint = getattr(F, f"conv_transpose{dim}d")

    def forward(self, r: torch.Tensor) -> torch.Tensor:
        """``q = M r`` ``(B, 1, *grid)`` of ``r`` ``(B, 1, *grid)``, ``len(grid) == dim``, any grid size >= 1."""
        _check_field(r, self.dim)
        fields = [self._conv(r, self.lift, padding=1)]  # E_l r, finest first
        while len(fields) <= self.config.max_levels and min(fields[-1].shape[2:]) >= 3:
            fields.append(self._conv(fields[-1], self.restrict, stride=2, padding=1))
        back = None  # sum over the coarser levels, mapped back to the current level
        for lvl in reversed(range(len(fields))):
            here = fields[lvl]
            term = torch.exp(self.gain_offset + self.gain_rate * lvl) * self._adjoint(
                self._conv(here, self.level, padding=1), self.level, padding=1)
            if back is not None:
                extra = tuple(here.shape[2 + i] - (2 * back.shape[2 + i] - 1) for i in range(self.dim))
                term = term + self._adjoint(back, self.restrict, stride=2, padding=1, output_padding=extra)
            back = term
        return self._adjoint(back, self.lift, padding=1) + self.identity**2 * r


def network_operator(model: nn.Module, grid: Sequence[int], dtype: torch.dtype | None = None) -> Network:
    """Wrap a grid network as the solver's direction map ``(N,) -> (N,)`` (float64 in and out).

    The input is normalised to unit norm before the network call, which runs in ``dtype`` (a copy
    of the network in that precision when its parameters have another). The default is the network's
    ``solve_dtype``: float32 for :class:`DCDMNet`, float64 for :class:`SymmetricDCDMNet`, whose
    symmetry to round-off keeps the solve PCG down to 1e-6 and below.
    """
    dtype = dtype or getattr(model, "solve_dtype", torch.float32)
    grid = tuple(int(s) for s in grid)
    N = math.prod(grid)
    if any(p.dtype != dtype for p in model.parameters()):
        model = copy.deepcopy(model).to(dtype)

    def apply(r: np.ndarray) -> np.ndarray:
        if r.shape != (N,):
            raise ValueError(f"vector has shape {r.shape}, expected ({N},) for grid {grid}")
        nrm = float(np.linalg.norm(r))
        t = torch.as_tensor(r / (nrm if nrm > 0 else 1.0), dtype=dtype).reshape(1, 1, *grid)
        with torch.inference_mode():
            q = model(t)
        return q.reshape(N).to(torch.float64).numpy()

    apply.symmetric_positive_definite = bool(getattr(model, "symmetric_positive_definite", False))
    return apply


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
    fallback_cos: float | None = None,
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
        (observed with partially trained networks). ``0`` disables it (the paper's method) ``None``
        (default): ``0`` when ``network`` is marked ``symmetric_positive_definite`` (as
        :func:`network_operator` marks a :class:`SymmetricDCDMNet`: :math:`r^T M r > 0`, no stall
        possible), else ``1e-3``.

    Returns
    -------
    SolveResult
        ``residuals`` is the relative residual history ``(iterations + 1,)``, ``residual`` the true
        final relative residual, ``converged`` the shared stopping rule's verdict; ``extra["energy"]``
        holds :math:`\\tfrac12 x_k^T A x_k - b^T x_k` per iterate (non-increasing),
        ``extra["fallbacks"]`` the number of safeguard steps, ``extra["matvecs"]`` the matrix
        products of the iteration (the convergence check's excluded).
    """
    N, b = check_system(A, np.asarray(b, dtype=np.float64), tol)
    if int(maxiter) < 1:
        raise ValueError(f"maxiter must be >= 1, got {maxiter}")
    if int(n_orth) < 0:
        raise ValueError(f"n_orth must be >= 0, got {n_orth}")
    if fallback_cos is None:
        fallback_cos = 0.0 if getattr(network, "symmetric_positive_definite", False) else 1e-3
    if not (0 <= fallback_cos < 1):
        raise ValueError(f"fallback_cos must be in [0, 1), got {fallback_cos}")
    t0 = time.perf_counter()
    x = np.zeros(N)
    r = b.copy()
    monitor = ResidualMonitor(A, b, tol)
    energy = [0.0]
    prev: list[tuple[np.ndarray, np.ndarray, float]] = []  # (p, A p, p^T A p)

    def orthogonalised(p: np.ndarray, Ap: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``p`` and ``A p`` made A-orthogonal to the previous directions (Gram-Schmidt)."""
        for pj, Apj, pAp_j in prev:
            c = float(p @ Apj) / pAp_j
            p, Ap = p - c * pj, Ap - c * Apj
        return p, Ap

    k = fallbacks = 0
    converged = False
    while True:
        if monitor.reached():
            r_true = monitor.confirm(x)
            if r_true is None:
                converged = True
                break
            r = r_true  # the recursive residual drifted: continue from the true one
        if k >= maxiter:
            break
        rn = float(np.linalg.norm(r))
        p = np.asarray(network(r / rn), dtype=np.float64).reshape(N)
        if not np.all(np.isfinite(p)):
            raise ValueError(f"network returned non-finite values at iteration {k}")
        p, Ap = orthogonalised(p, np.asarray(A @ p).reshape(N))
        if fallback_cos > 0 and abs(float(p @ r)) <= fallback_cos * float(np.linalg.norm(p)) * rn:
            # the network's direction is (nearly) orthogonal to r: no progress possible along it,
            # and the same r would give the same direction again. Take the A-orthogonalised
            # steepest-descent direction for this step instead (one extra matrix product).
            p, Ap = orthogonalised(r.copy(), np.asarray(A @ r).reshape(N))
            fallbacks += 1
        pAp = float(p @ Ap)
        if not pAp > 0:  # direction vanished (network output in span of previous ones)
            break
        alpha = float(p @ r) / pAp
        x += alpha * p
        r -= alpha * Ap
        k += 1
        monitor.record(float(np.linalg.norm(r)))
        energy.append(0.5 * float(x @ (b - r)) - float(b @ x))
        prev.append((p, Ap, pAp))
        if len(prev) > n_orth:
            prev.pop(0)
    residual = monitor.true_residual if converged else monitor.final_residual(x)
    elapsed = time.perf_counter() - t0
    extra = {"energy": np.asarray(energy), "fallbacks": fallbacks, "matvecs": k + fallbacks}
    return SolveResult(x, k, monitor.residuals(), converged, elapsed, 0.0, extra, residual=residual)


# ----------------------------------------------------------------------------------------------
# Checkpoints
# ----------------------------------------------------------------------------------------------
CHECKPOINT_FORMAT = "pdebench-dcdm"


#: The network classes a DCDM checkpoint may name (its allow-list).
NETWORKS: dict[str, type[nn.Module]] = {"DCDMNet": DCDMNet, "SymmetricDCDMNet": SymmetricDCDMNet}


def save_dcdm(path: str | Path, model: nn.Module, training: dict | None = None) -> Path:
    """Write ``model`` (a :class:`DCDMNet` or :class:`SymmetricDCDMNet`) and its training record to
    ``path`` atomically (:func:`~pdebench.models.network_checkpoint.save_network`, format
    :data:`CHECKPOINT_FORMAT`).

    Parameters
    ----------
    path
        Destination ``.pt`` file; its folder is created.
    model
        Network whose ``config`` dataclass fields rebuild it (``type(model)(**asdict(config))``).
    training
        Provenance: grid, systems, steps, wall time, final loss... (JSON-able values).
    """
    return save_network(path, model, training, fmt=CHECKPOINT_FORMAT, classes=NETWORKS, what="DCDM")


def load_dcdm(path: str | Path) -> tuple[nn.Module, dict]:
    """``(network in eval mode, training record)`` from a :func:`save_dcdm` file.

    Raises
    ------
    FileNotFoundError
        No file at ``path``.
    ValueError
        The file is not a DCDM checkpoint, or names an unknown network class.
    """
    _, model, training = load_network(path, {CHECKPOINT_FORMAT: NETWORKS}, "DCDM",
                                      "write one with pdebench.models.dcdm.save_dcdm")
    return model, training
