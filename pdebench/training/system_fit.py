"""The skeleton of a training run on the linear-solver board's systems, shared by DCDM
(:mod:`~pdebench.training.dcdm_fit`) and the learned incomplete Cholesky (:mod:`~pdebench.training.learned_ic_fit`).

Both train a network on the variable-coefficient Poisson matrices :math:`A = -\\nabla\\cdot(a\\nabla\\,\\cdot)`
(:func:`~pdebench.problems.elliptic_matrices.poisson_matrix` of
``darcy_coefficient(n, coefficient_seed, i, dim)``, ``i < systems``, seeds below the leaderboard's), with
a fixed pool of right-hand sides per system, AdamW and a cosine learning rate. What is shared lives here:

* :class:`SystemsTrainConfig` -- the optimiser settings every such run has (``steps``, ``batch``, ``lr``,
  ``rhs_per_system``, ``seed``), validated;
* :func:`optimise` -- the loop: AdamW (no weight decay), cosine decay to 5 % of ``lr``, a per-step
  callback, a ``FloatingPointError`` naming the step when the loss is not finite;
* :class:`SystemsRunConfig` -- the run file's fields (``dim``, ``n``, ``systems``, ``coefficient_seed``,
  ``network``, ``train``, ``seed``, ``output``), validated, with the training matrices
  (:meth:`SystemsRunConfig.matrices`) and the common part of the checkpoint's training card
  (:meth:`SystemsRunConfig.card`).
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np
import scipy.sparse as sp
import torch

from pdebench.problems.elliptic_matrices import darcy_coefficient, poisson_matrix
from pdebench.problems.sampling import LEADERBOARD_SEED_BASE


@dataclass
class SystemsTrainConfig:
    """Optimiser settings of a training run on linear systems.

    Attributes
    ----------
    steps
        Optimiser steps.
    batch
        Right-hand sides per step (all from one system, cycling over the systems).
    lr
        AdamW learning rate (cosine decay to 5 % over ``steps``).
    rhs_per_system
        Size of the fixed right-hand-side pool per system.
    seed
        Seed for the pool and the batch order.
    """

    steps: int = 300
    batch: int = 16
    lr: float = 2e-3
    rhs_per_system: int = 256
    seed: int = 0

    #: Integer fields that must be >= 1.
    POSITIVE: ClassVar[tuple[str, ...]] = ("steps", "batch", "rhs_per_system")

    def __post_init__(self) -> None:
        for name in self.POSITIVE:
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if not (self.lr > 0 and math.isfinite(self.lr)):
            raise ValueError(f"lr must be a positive number, got {self.lr}")


@dataclass
class TrainHistory:
    """Loss per step and wall time of a training run."""

    loss: list[float] = field(default_factory=list)
    time: float = 0.0


def optimise(model: torch.nn.Module, config: SystemsTrainConfig, loss_at: Callable[[int], torch.Tensor], what: str,
             callback: Callable[[int, float], None] | None = None) -> TrainHistory:
    """Minimise ``loss_at(step)`` over ``config.steps`` AdamW steps; the model ends in eval mode.

    Parameters
    ----------
    model
        Trained in place.
    config
        ``steps`` and ``lr`` are used (cosine decay to ``0.05 lr``, no weight decay).
    loss_at
        The scalar loss of step ``step`` (it draws its own batch).
    what
        The run's name in the non-finite-loss message (``"DCDM"``).
    callback
        ``callback(step, loss)`` after every step.

    Returns
    -------
    TrainHistory
        ``time`` the loop's wall seconds.

    Raises
    ------
    FloatingPointError
        The loss is not finite (naming the step and the learning rate).
    """
    start = time.perf_counter()
    opt = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=0.0)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, config.steps, eta_min=0.05 * config.lr)
    hist = TrainHistory()
    model.train()
    for step in range(config.steps):
        loss = loss_at(step)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        hist.loss.append(float(loss.detach()))
        if not math.isfinite(hist.loss[-1]):
            raise FloatingPointError(f"{what} loss became {hist.loss[-1]} at step {step}; lower the learning rate ({config.lr})")
        if callback is not None:
            callback(step, hist.loss[-1])
    model.eval()
    hist.time = time.perf_counter() - start
    return hist


@dataclass
class SystemsRunConfig:
    """One training run on linear systems (the YAML run file's fields).

    Attributes
    ----------
    dim, n
        Training grid ``(n,) * dim`` of interior nodes.
    systems, coefficient_seed
        Training matrices :math:`-\\nabla\\cdot(a\\nabla\\cdot)` with ``a = darcy_coefficient(n, coefficient_seed, i, dim)``,
        ``i < systems``; ``coefficient_seed`` below the leaderboard's seeds.
    network
        Keyword arguments of the network class.
    train
        Fields of the run's :attr:`TRAIN_CONFIG`.
    seed
        Torch seed (network initialisation).
    output
        Checkpoint path.
    """

    dim: int = 2
    n: int = 64
    systems: int = 4
    coefficient_seed: int = 0
    network: dict[str, Any] = field(default_factory=dict)
    train: dict[str, Any] = field(default_factory=dict)
    seed: int = 0
    output: str = "outputs/run.pt"

    #: The optimiser settings class the ``train`` mapping fills.
    TRAIN_CONFIG: ClassVar[type[SystemsTrainConfig]] = SystemsTrainConfig

    def __post_init__(self) -> None:
        if self.dim not in (2, 3):
            raise ValueError(f"dim must be 2 or 3, got {self.dim!r}")
        for name in ("n", "systems"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < (3 if name == "n" else 1):
                raise ValueError(f"{name} must be an integer >= {3 if name == 'n' else 1}, got {value!r}")
        if self.coefficient_seed >= LEADERBOARD_SEED_BASE:
            raise ValueError(f"coefficient_seed {self.coefficient_seed} is a leaderboard seed (>= {LEADERBOARD_SEED_BASE}); "
                             "train on small seeds")
        if "dim" in self.network:
            raise ValueError("set dim at the top level, not in network")
        known = {f.name for f in dataclasses.fields(self.TRAIN_CONFIG)}
        unknown = sorted(set(self.train) - known)
        if unknown:
            raise ValueError(f"train: unknown key(s) {', '.join(unknown)}; expected {', '.join(sorted(known))}")

    @property
    def grid(self) -> tuple[int, ...]:
        """``(n,) * dim``."""
        return (self.n,) * self.dim

    def train_config(self, steps: int | None = None) -> SystemsTrainConfig:
        """The training settings, with ``steps`` overriding ``train.steps`` when given."""
        return self.TRAIN_CONFIG(**{**self.train, **({"steps": steps} if steps is not None else {})})

    def matrices(self) -> list[sp.csr_array]:
        """The training matrices, ``systems`` of shape ``(n^dim, n^dim)``."""
        return [poisson_matrix(darcy_coefficient(self.n, self.coefficient_seed, i, dim=self.dim))
                for i in range(self.systems)]

    def card(self, model: torch.nn.Module, train_config: SystemsTrainConfig, history: TrainHistory,
             train_time_s: float) -> dict[str, Any]:
        """The training card's common part (JSON-able): network class and size, grid, coefficients, settings,
        times and the mean loss of the first and last ten steps."""
        return {
            "class": type(model).__name__, "dim": self.dim, "grid": list(self.grid),
            "coefficients": [[self.coefficient_seed, i] for i in range(self.systems)],
            "train": dataclasses.asdict(train_config), "network": dict(self.network),
            "train_time_s": train_time_s, "optimiser_time_s": history.time,
            "loss_first10": float(np.mean(history.loss[:10])), "loss_last10": float(np.mean(history.loss[-10:])),
            "parameters": sum(p.numel() for p in model.parameters()), "torch": str(torch.__version__),
        }
