"""What every training module shares: normalisers, the optimiser/scheduler settings and the budget card.

:class:`TrainingBase` holds the channel normalisers (fitted on the training split at the start of
fitting, saved in the checkpoint), an :class:`OptimConfig`, the training budget (wall time and
samples seen, carried across resumed runs) and ``checkpoint["pdebench"]`` (budget, data card, module
class). The objectives (grid operators one step or autoregressive, temporal bundles, masked
mixtures, graphs) build on it.
"""

from __future__ import annotations

import dataclasses
import math
import time
from dataclasses import dataclass
from typing import Any, ClassVar, Literal

import lightning as L
import torch

from pdebench.registry import dataclass_from_mapping
from pdebench.training.normalizer import ChannelNormalizer

OPTIMIZERS = ("adam", "adamw", "sgd")
SCHEDULERS = ("cosine", "step", "none")


@dataclass(frozen=True)
class OptimConfig:
    """Optimiser and learning-rate schedule of a training module (YAML: ``model.init_args.optim: {lr: ...}``).

    Attributes
    ----------
    optimizer
        ``"adam"``, ``"adamw"`` or ``"sgd"`` (momentum 0.9).
    lr
        Learning rate, > 0 (of every parameter group that sets none of its own).
    weight_decay
        ≥ 0.
    scheduler
        ``"cosine"`` (annealed to 0 over all the run's steps), ``"step"`` (times ``gamma`` every
        ``step_size`` steps) or ``"none"``.
    step_size, gamma
        The ``"step"`` schedule.
    """

    optimizer: Literal["adam", "adamw", "sgd"] = "adamw"
    lr: float = 1e-3
    weight_decay: float = 1e-4
    scheduler: Literal["cosine", "step", "none"] = "cosine"
    step_size: int = 100
    gamma: float = 0.5

    def __post_init__(self) -> None:
        if self.optimizer not in OPTIMIZERS:
            raise ValueError(f"optimizer must be one of {', '.join(OPTIMIZERS)}, got {self.optimizer!r}")
        if self.scheduler not in SCHEDULERS:
            raise ValueError(f"scheduler must be one of {', '.join(SCHEDULERS)}, got {self.scheduler!r}")
        if not (self.lr > 0 and math.isfinite(self.lr)):
            raise ValueError(f"lr must be a positive number, got {self.lr}")
        if not self.weight_decay >= 0:
            raise ValueError(f"weight_decay must be >= 0, got {self.weight_decay}")
        if self.step_size < 1 or not self.gamma > 0:
            raise ValueError(f"need step_size >= 1 and gamma > 0; got {self.step_size}, {self.gamma}")

    @classmethod
    def of(cls, value: OptimConfig | dict[str, Any] | None, default: OptimConfig | None = None) -> OptimConfig:
        """``value`` itself, the config of a mapping of its fields (a checkpoint's hyper-parameters), or
        ``default`` (else the field defaults) for ``None``."""
        if value is None:
            return default or cls()
        if isinstance(value, cls):
            return value
        return dataclass_from_mapping(cls, value, "optim")

    def build(self, groups: list[dict[str, Any]], total_steps: float) -> Any:
        """Lightning's ``configure_optimizers`` answer for parameter ``groups`` (each may carry its
        ``lr``) over a run of ``total_steps`` optimiser steps (``inf``: no bound)."""
        cls = {"adam": torch.optim.Adam, "adamw": torch.optim.AdamW, "sgd": torch.optim.SGD}[self.optimizer]
        opt = cls(groups, lr=self.lr, weight_decay=self.weight_decay, **({"momentum": 0.9} if self.optimizer == "sgd" else {}))
        if self.scheduler == "none":
            return opt
        if self.scheduler == "cosine":
            if not math.isfinite(total_steps):
                raise ValueError("scheduler 'cosine' anneals over the run's steps, but this run has no step bound "
                                 "(max_time alone): set trainer.max_steps or trainer.max_epochs, or scheduler 'none'")
            sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=max(1, int(total_steps)))
        else:
            sched = torch.optim.lr_scheduler.StepLR(opt, step_size=self.step_size, gamma=self.gamma)
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}


class TrainingBase(L.LightningModule):
    """Normalisers, optimiser settings and the training-budget card of a training module.

    Parameters
    ----------
    in_channels, out_channels, spatial_dims, history
        What the data give (``train.py`` links them from the data module); :meth:`checked_datamodule`
        compares them with the trainer's data module before any step.
    optim
        :class:`OptimConfig` (a mapping of its fields is taken too: checkpoints store it so). Kept
        in the hyper-parameters as a plain mapping.

    Subclasses set ``self.model`` (the trained network) and call ``self.count_samples(n)`` in
    their training step; ``default_optim`` is a subclass's optimiser when ``optim`` is ``None``.
    """

    default_optim: ClassVar[OptimConfig] = OptimConfig()

    def __init__(self, in_channels: int, out_channels: int, spatial_dims: int, history: int,
                 optim: OptimConfig | dict[str, Any] | None) -> None:
        super().__init__()
        self.optim = OptimConfig.of(optim, self.default_optim)
        # every __init__ argument of the subclass chain; optim as a plain mapping, so that a checkpoint
        # loads with weights_only=True
        self.save_hyperparameters(ignore=["optim"])
        self.hparams["optim"] = dataclasses.asdict(self.optim)
        self.spatial_dims, self.history = spatial_dims, history
        self.x_norm = ChannelNormalizer(in_channels)
        self.y_norm = ChannelNormalizer(out_channels)
        self._budget = {"train_time_s": 0.0, "samples_seen": 0}
        self._fit_clock: float | None = None

    # ------------------------------------------------------------------ data
    def checked_datamodule(self):
        """The trainer's data module after checking its channels, spatial dimensions and history
        against the model (``ValueError`` naming the first mismatch); ``None`` when there is none to
        check (no trainer, or a data module that does not describe its channels)."""
        datamodule = getattr(self.trainer, "datamodule", None) if self._trainer is not None else None
        if datamodule is None or not hasattr(datamodule, "in_channels"):
            return None
        expected = {"in_channels": self.x_norm.mean.numel(), "out_channels": self.y_norm.mean.numel(),
                    "spatial_dims": self.spatial_dims, "history": self.history}
        for name, value in expected.items():
            if getattr(datamodule, name, value) != value:
                raise ValueError(f"model expects {name}={value} but the data give {getattr(datamodule, name)}")
        return datamodule

    def on_fit_start(self) -> None:
        """Start the budget clock; fit the normalisers on the training split unless already fitted."""
        self._fit_clock = time.perf_counter()
        if not bool(self.x_norm.fitted):
            stats = self.trainer.datamodule.normalization_stats()
            self.x_norm.fit(stats["x_mean"].to(self.device), stats["x_std"].to(self.device))
            self.y_norm.fit(stats["y_mean"].to(self.device), stats["y_std"].to(self.device))

    # ------------------------------------------------------------ budget card
    def count_samples(self, count: int) -> None:
        """Add ``count`` training samples (with repeats) to the budget."""
        self._budget["samples_seen"] += int(count)

    def training_budget(self) -> dict[str, float]:
        """Wall time spent fitting (all resumed runs together, validation included) and training
        samples processed (with repeats)."""
        budget = dict(self._budget)
        if self._fit_clock is not None:
            budget["train_time_s"] += time.perf_counter() - self._fit_clock
        return budget

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Store ``checkpoint["pdebench"]``: the training budget, the data module's ``data_card`` and the
        module's class (so that the leaderboard rebuilds a subclass, e.g. a fine-tuned model, as itself)."""
        datamodule = getattr(self.trainer, "datamodule", None) if self._trainer is not None else None
        card = datamodule.data_card() if hasattr(datamodule, "data_card") else None
        checkpoint["pdebench"] = {"budget": self.training_budget(), "data": card,
                                  "module_class": f"{type(self).__module__}.{type(self).__qualname__}"}

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        saved = checkpoint.get("pdebench", {}).get("budget")
        if saved:
            self._budget = {"train_time_s": float(saved["train_time_s"]), "samples_seen": int(saved["samples_seen"])}
            self._fit_clock = None

    # ------------------------------------------------------------- optimiser
    def parameter_groups(self) -> list[dict[str, Any]]:
        """Optimiser parameter groups: every parameter of ``self.model`` at ``optim.lr`` (a subclass
        may split them, e.g. :class:`~pdebench.training.finetune.FineTuneModule` into head and body)."""
        return [{"params": list(self.model.parameters()), "lr": self.optim.lr}]

    def configure_optimizers(self):
        # only the cosine schedule needs the run's length (and a trainer to ask)
        total = self.trainer.estimated_stepping_batches if self.optim.scheduler == "cosine" else math.inf
        return self.optim.build(self.parameter_groups(), total)
