"""Train a DCDM network on variable-coefficient Poisson systems and save its checkpoint
(``pdebench train-dcdm --config configs/dcdm/<name>.yaml``).

DCDM is not trained on solver data: its loss needs only the matrices (:func:`~pdebench.models.dcdm.train_dcdm`),
so it has its own small run instead of the Lightning CLI. A YAML file fills :class:`DCDMRunConfig`::

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

import dataclasses
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from pdebench.registry import read_config
from pdebench.models.dcdm import DCDMNet, DCDMTrainConfig, SymmetricDCDMNet, save_dcdm, train_dcdm
from pdebench.problems.elliptic_matrices import darcy_coefficient, poisson_matrix

ARCHITECTURES: dict[str, type[torch.nn.Module]] = {"spd": SymmetricDCDMNet, "unet": DCDMNet}


@dataclass
class DCDMRunConfig:
    """One DCDM training run (see the module docstring for the YAML form).

    Attributes
    ----------
    arch
        ``"spd"`` (:class:`~pdebench.models.dcdm.SymmetricDCDMNet`) or ``"unet"`` (:class:`~pdebench.models.dcdm.DCDMNet`).
    dim, n
        Training grid ``(n,) * dim`` of interior nodes.
    systems, coefficient_seed
        Training matrices :math:`-\\nabla\\cdot(a\\nabla u)` with ``a = darcy_coefficient(n, coefficient_seed, i, dim)``,
        ``i < systems``.
    network
        Keyword arguments of the network class (``dim`` is set from ``dim``).
    train
        :class:`~pdebench.models.dcdm.DCDMTrainConfig` fields.
    seed
        Torch seed (network initialisation where random).
    output
        Checkpoint path (:func:`~pdebench.models.dcdm.save_dcdm`).
    """

    arch: str = "spd"
    dim: int = 2
    n: int = 64
    systems: int = 4
    coefficient_seed: int = 0
    network: dict[str, Any] = field(default_factory=dict)
    train: dict[str, Any] = field(default_factory=dict)
    seed: int = 0
    output: str = "outputs/dcdm/dcdm2d_64.pt"

    def __post_init__(self) -> None:
        if self.arch not in ARCHITECTURES:
            raise ValueError(f"arch must be one of {', '.join(ARCHITECTURES)}, got {self.arch!r}")
        if self.dim not in (2, 3):
            raise ValueError(f"dim must be 2 or 3, got {self.dim!r}")
        for name in ("n", "systems"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < (3 if name == "n" else 1):
                raise ValueError(f"{name} must be an integer >= {3 if name == 'n' else 1}, got {value!r}")
        if self.coefficient_seed >= 1_000_000:
            raise ValueError(f"coefficient_seed {self.coefficient_seed} is a leaderboard seed (>= 1000000); train on small seeds")
        if "dim" in self.network:
            raise ValueError("set dim at the top level, not in network")
        known = {f.name for f in dataclasses.fields(DCDMTrainConfig)}
        unknown = sorted(set(self.train) - known)
        if unknown:
            raise ValueError(f"train: unknown key(s) {', '.join(unknown)}; expected {', '.join(sorted(known))}")

    def train_config(self, steps: int | None = None) -> DCDMTrainConfig:
        """The training settings, with ``steps`` overriding ``train.steps`` when given."""
        return DCDMTrainConfig(**{**self.train, **({"steps": steps} if steps is not None else {})})


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
    grid = (config.n,) * config.dim
    start = time.perf_counter()
    matrices = [poisson_matrix(darcy_coefficient(config.n, config.coefficient_seed, i, dim=config.dim))
                for i in range(config.systems)]
    history = train_dcdm(model, matrices, grid, train_config, callback=callback)
    record = {
        "arch": config.arch, "class": type(model).__name__, "dim": config.dim, "grid": list(grid),
        "coefficients": [[config.coefficient_seed, i] for i in range(config.systems)],
        "train": dataclasses.asdict(train_config), "network": dict(config.network),
        "train_time_s": time.perf_counter() - start, "optimiser_time_s": history.time,
        "loss_first10": float(np.mean(history.loss[:10])), "loss_last10": float(np.mean(history.loss[-10:])),
        "parameters": sum(p.numel() for p in model.parameters()), "torch": str(torch.__version__),
    }
    path = save_dcdm(Path(output or config.output), model, record)
    return path, record
