"""Train a DCDM network on variable-coefficient Poisson systems and save its checkpoint
(``pdebench train-dcdm --config configs/dcdm/<name>.yaml``).

DCDM is not trained on solver data: its loss needs only the matrices (:func:`train_dcdm`, here with its loss :func:`dcdm_loss` and Ritz data),
so it has its own small run instead of the Lightning CLI, on the skeleton it shares with the learned
incomplete Cholesky (:mod:`~pdebench.training.system_fit`: settings, matrices, optimiser loop, card).
A YAML file fills :class:`DCDMRunConfig`::

    arch: spd            # SymmetricDCDMNet ("spd") or the paper's nonlinear U-Net ("unet", DCDMNet)
    dim: 2               # 2-D or 3-D systems
    n: 64                # interior nodes per axis of the training grid
    systems: 4           # training coefficients darcy_coefficient(n, coefficient_seed, 0..systems-1, dim)
    coefficient_seed: 0  # training seeds are small; the leaderboard's start at 1_000_000
    network: {width: 4}  # keyword arguments of the network class
    train: {steps: 1500, batch: 16, lr: 3.0e-4, lanczos_steps: 300}   # DCDMTrainConfig fields
    output: outputs/dcdm/dcdm2d_64.pt
"""

from __future__ import annotations

import math
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import scipy.sparse as sp
import torch

from pdebench.registry import read_config
from pdebench.models.dcdm import DCDMNet, SymmetricDCDMNet, save_dcdm
from pdebench.training.system_fit import SystemsRunConfig, SystemsTrainConfig, TrainHistory, optimise

ARCHITECTURES: dict[str, type[torch.nn.Module]] = {"spd": SymmetricDCDMNet, "unet": DCDMNet}


# ----------------------------------------------------------------------------------------------
# The DCDM loss, its Ritz training data and the training loop
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
class DCDMTrainConfig(SystemsTrainConfig):
    """Training settings for :func:`train_dcdm`: those of :class:`~pdebench.training.system_fit.SystemsTrainConfig`
    (``steps``, ``batch``, ``lr``, ``rhs_per_system``, ``seed``) and

    Attributes
    ----------
    lanczos_steps
        Lanczos steps per system for the Ritz vectors.
    """

    lanczos_steps: int = 100

    POSITIVE: ClassVar[tuple[str, ...]] = ("steps", "batch", "lanczos_steps", "rhs_per_system")


def train_dcdm(
    model: DCDMNet,
    systems: Sequence[sp.sparray | sp.spmatrix],
    grid: Sequence[int],
    config: DCDMTrainConfig | None = None,
    callback: Callable[[int, float], None] | None = None,
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
    callback
        Called as ``callback(step, loss)`` after every optimiser step (progress display).

    Returns
    -------
    TrainHistory
        ``time`` includes the Lanczos runs.
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

    def loss_at(step: int) -> torch.Tensor:
        s = step % len(mats)
        idx = torch.as_tensor(rng.choice(config.rhs_per_system, config.batch, replace=False))
        b = pools[s][idx]
        q = model(b.reshape(config.batch, 1, *grid)).reshape(config.batch, N)
        return dcdm_loss(q, b, mats[s])

    hist = optimise(model, config, loss_at, "DCDM", callback)
    hist.time = time.perf_counter() - t0
    return hist


@dataclass
class DCDMRunConfig(SystemsRunConfig):
    """One DCDM training run (see the module docstring for the YAML form): the fields of
    :class:`~pdebench.training.system_fit.SystemsRunConfig` (``dim``, ``n``, ``systems``,
    ``coefficient_seed``, ``network``, ``train`` -- :class:`DCDMTrainConfig` fields --, ``seed``,
    ``output`` -- for :func:`~pdebench.models.dcdm.save_dcdm`) and

    Attributes
    ----------
    arch
        ``"spd"`` (:class:`~pdebench.models.dcdm.SymmetricDCDMNet`) or ``"unet"`` (:class:`~pdebench.models.dcdm.DCDMNet`).
    """

    arch: str = "spd"
    output: str = "outputs/dcdm/dcdm2d_64.pt"

    TRAIN_CONFIG: ClassVar[type[SystemsTrainConfig]] = DCDMTrainConfig

    def __post_init__(self) -> None:
        if self.arch not in ARCHITECTURES:
            raise ValueError(f"arch must be one of {', '.join(ARCHITECTURES)}, got {self.arch!r}")
        super().__post_init__()


def load_dcdm_config(path: str | Path) -> DCDMRunConfig:
    """Read a :class:`DCDMRunConfig` from YAML; unknown keys are refused by name."""
    return read_config(path, DCDMRunConfig, "DCDM config")


def run_dcdm_training(config: DCDMRunConfig, steps: int | None = None, output: str | Path | None = None,
                      callback: Callable[[int, float], None] | None = None) -> tuple[Path, dict[str, Any]]:
    """Build the training matrices, train the network and write its checkpoint.

    Parameters
    ----------
    config
        The run.
    steps
        Overrides ``train.steps`` (quick runs).
    output
        Overrides ``config.output``.
    callback
        ``callback(step, loss)`` after every optimiser step.

    Returns
    -------
    path, record
        The checkpoint and its training record (also stored in it).
    """
    train_config = config.train_config(steps)
    torch.manual_seed(config.seed)
    model = ARCHITECTURES[config.arch](dim=config.dim, **config.network)
    start = time.perf_counter()
    history = train_dcdm(model, config.matrices(), config.grid, train_config, callback=callback)
    record = {"arch": config.arch, **config.card(model, train_config, history, time.perf_counter() - start)}
    path = save_dcdm(Path(output or config.output), model, record)
    return path, record
