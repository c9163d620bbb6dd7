r"""Train a learned incomplete-Cholesky network (:class:`~pdebench.models.learned_ic.LearnedIC`) on solver data
pairs and save its checkpoint (``pdebench train-learned-ic --config configs/learned_ic/<name>.yaml``).

The loss is the paper's (Li, Chen, Du & Matusik 2023): with :math:`M = L L^T` the network's
preconditioner of :math:`A` and pairs :math:`(x, b)`, :math:`A x = b`, from the problem's distribution,

.. math::
    \mathcal{L} = \frac{1}{B} \sum_{k=1}^{B} \frac{\lVert L L^T x_k - b_k\rVert_2^2}{\lVert b_k\rVert_2^2}
    = \frac{1}{B} \sum_k \frac{\lVert (M A^{-1} - I)\, b_k\rVert^2}{\lVert b_k\rVert^2},

i.e. :math:`M` is fitted to :math:`A` where the data lives: on the solutions :math:`x = A^{-1} b`, which
the smooth eigenvectors of :math:`A` dominate -- the modes CG is slow on. As we read the paper, it
minimises the unweighted mean of :math:`\lVert L L^T x - b\rVert^2` over its data set; we divide each pair by
:math:`\lVert b_k\rVert^2`, which makes the loss dimensionless (invariant under :math:`A \to cA` and
under the grid spacing, :math:`A \propto h^{-2}`) so that systems of any size and scale weigh the same
and the numbers are O(1) in float32. For white-noise :math:`b` (ours), :math:`\lVert b\rVert^2 \approx N`
varies by :math:`O(N^{-1/2})` between pairs, so within one system this is the paper's loss up to a
constant factor.

Training data: for each training matrix (``darcy_coefficient(n, coefficient_seed, i, dim)``, the
board's systems at training seeds) a fixed pool of ``rhs_per_system`` pairs, :math:`b \sim N(0, I)`
and :math:`x = A^{-1} b` by the sparse direct solver (SuperLU, one factorisation per matrix,
:func:`solution_pairs`). Each step takes ``batch`` pairs of one system (cycling over the systems).

A YAML file fills :class:`LearnedICRunConfig`::

    dim: 2                 # 2-D or 3-D systems
    n: 32                  # interior nodes per axis of the training grid (the network runs at any size)
    systems: 8             # training coefficients darcy_coefficient(n, coefficient_seed, 0..systems-1, dim)
    coefficient_seed: 0    # training seeds are small; the leaderboard's start at 1_000_000
    network: {width: 16, layers: 3}                      # LearnedIC arguments
    train: {steps: 300, batch: 16, lr: 1.0e-3, rhs_per_system: 64}   # LearnedICTrainConfig fields
    output: outputs/learned_ic/learned_ic2d.pt
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import scipy.sparse as sp
import scipy.sparse.linalg as spla
import torch

from pdebench.core.graphs import MatrixGraph, matrix_graph
from pdebench.models.learned_ic import LearnedIC, factor_entries, factor_gram_product, save_learned_ic
from pdebench.registry import read_config
from pdebench.training.system_fit import SystemsRunConfig, SystemsTrainConfig, TrainHistory, optimise


def solution_pairs(A: sp.sparray | sp.spmatrix, n_rhs: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """``n_rhs`` pairs ``(X, B)``, each ``(N, n_rhs)``: :math:`B_{ik} \\sim N(0, 1)` and :math:`X = A^{-1} B` by
    SuperLU (one factorisation of ``A``, ``(N, N)``, minimum-degree ordering of :math:`A + A^T`)."""
    B = rng.standard_normal((A.shape[0], n_rhs))
    X = spla.splu(sp.csc_array(A), permc_spec="MMD_AT_PLUS_A").solve(B)
    return X, B


def factor_loss(model: LearnedIC, graph: MatrixGraph, X: torch.Tensor, B: torch.Tensor) -> torch.Tensor:
    r"""The paper's loss, relative per pair: :math:`\mathrm{mean}_k \lVert L L^T x_k - b_k\rVert^2 / \lVert b_k\rVert^2`.

    Computed on :math:`A / s`, :math:`s = \max_i |A_{ii}|` (the same value: both terms scale by :math:`1/s`).

    Parameters
    ----------
    model
        The factor network (its dtype is the loss's).
    graph
        The matrix graph of :math:`A` (``N`` nodes).
    X, B
        Solutions and right-hand sides, ``(N, batch)``, :math:`A X = B`.

    Returns
    -------
    torch.Tensor
        Scalar.
    """
    if X.shape != B.shape or X.ndim != 2 or X.shape[0] != graph.num_nodes:
        raise ValueError(f"X {tuple(X.shape)} and B {tuple(B.shape)} must both be (N, batch) with N = {graph.num_nodes}")
    scale = float(graph.diagonal.abs().max())
    t_lower, t_diag = model(graph)
    lower, diagonal = factor_entries(graph, t_lower, t_diag, scale)
    b = B / scale
    residual = factor_gram_product(graph, lower, diagonal, X) - b
    return ((residual**2).sum(0) / (b**2).sum(0)).mean()


@dataclass
class LearnedICTrainConfig(SystemsTrainConfig):
    """Training settings for :func:`train_learned_ic` (the fields of
    :class:`~pdebench.training.system_fit.SystemsTrainConfig`, with this run's defaults)."""

    steps: int = 300
    batch: int = 16
    lr: float = 1e-3
    rhs_per_system: int = 64
    seed: int = 0


def train_learned_ic(model: LearnedIC, systems: Sequence[sp.sparray | sp.spmatrix],
                     config: LearnedICTrainConfig | None = None,
                     callback: Callable[[int, float], None] | None = None) -> TrainHistory:
    """Train ``model`` (in place, float32) with :func:`factor_loss` on :func:`solution_pairs` of ``systems``.

    Parameters
    ----------
    model
        The factor network.
    systems
        SPD matrices, any sizes (the network is defined on any matrix graph).
    config
        :class:`LearnedICTrainConfig`.
    callback
        ``callback(step, loss)`` after every optimiser step.

    Returns
    -------
    TrainHistory
        ``time`` includes the direct solves of the pairs.
    """
    config = config or LearnedICTrainConfig()
    if len(systems) == 0:
        raise ValueError("need at least one system to train on")
    if config.batch > config.rhs_per_system:
        raise ValueError(f"batch ({config.batch}) must not exceed rhs_per_system ({config.rhs_per_system})")
    rng = np.random.default_rng(config.seed)
    t0 = time.perf_counter()
    graphs, pools = [], []
    for A in systems:
        X, B = solution_pairs(A, config.rhs_per_system, rng)
        graphs.append(matrix_graph(A))
        pools.append((torch.as_tensor(X, dtype=torch.float32), torch.as_tensor(B, dtype=torch.float32)))

    def loss_at(step: int) -> torch.Tensor:
        s = step % len(graphs)
        idx = torch.as_tensor(rng.choice(config.rhs_per_system, config.batch, replace=False))
        X, B = pools[s]
        return factor_loss(model, graphs[s], X[:, idx], B[:, idx])

    hist = optimise(model, config, loss_at, "learned IC", callback)
    hist.time = time.perf_counter() - t0
    return hist


@dataclass
class LearnedICRunConfig(SystemsRunConfig):
    """One learned-IC training run (the module docstring shows the YAML form): the fields of
    :class:`~pdebench.training.system_fit.SystemsRunConfig`, ``network`` the
    :class:`~pdebench.models.learned_ic.LearnedIC` arguments and ``train`` :class:`LearnedICTrainConfig` fields."""

    n: int = 32
    systems: int = 8
    output: str = "outputs/learned_ic/learned_ic2d.pt"

    TRAIN_CONFIG: ClassVar[type[SystemsTrainConfig]] = LearnedICTrainConfig


def load_learned_ic_config(path: str | Path) -> LearnedICRunConfig:
    """Read a :class:`LearnedICRunConfig` from YAML; unknown keys are refused by name."""
    return read_config(path, LearnedICRunConfig, "learned IC config")


def run_learned_ic_training(config: LearnedICRunConfig, steps: int | None = None, output: str | Path | None = None,
                            callback: Callable[[int, float], None] | None = None) -> tuple[Path, dict[str, Any]]:
    """Build the training matrices and pairs, train the network and write its checkpoint.

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
        The checkpoint and its training card (also stored in it).
    """
    train_config = config.train_config(steps)
    torch.manual_seed(config.seed)
    model = LearnedIC(**config.network)
    start = time.perf_counter()
    history = train_learned_ic(model, config.matrices(), train_config, callback=callback)
    record = {**config.card(model, train_config, history, time.perf_counter() - start),
              "loss": "mean ||L L^T x - b||^2 / ||b||^2", "rhs": "b ~ N(0, I), x = A^-1 b (SuperLU)"}
    path = save_learned_ic(Path(output or config.output), model, record)
    return path, record
