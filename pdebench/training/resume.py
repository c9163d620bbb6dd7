"""A warning when a resumed ``fit`` cannot continue its epoch exactly.

A run resumed from a mid-epoch checkpoint (``ModelCheckpoint(every_n_train_steps=...)``, or the
``last.ckpt`` of a stopped run) continues bitwise as an uninterrupted one only when its train loader
restores its position in the epoch: Lightning saves the state of a loader with ``state_dict`` /
``load_state_dict`` in the checkpoint (the offline data modules' loader,
:class:`~pdebench.data.datamodules.ResumableDataLoader`). Any other loader (the online stream, the
graph and mixture data modules) restarts its epoch from its first batch while Lightning counts on from
the saved batch index, so :class:`MidEpochResumeCheck` (added to every trainer by
:func:`pdebench.training.cli.main`) says so.
"""

from __future__ import annotations

import logging
from typing import Any

import lightning as L
from lightning.fabric.utilities.types import _Stateful
from lightning.pytorch.utilities import CombinedLoader

log = logging.getLogger(__name__)


class MidEpochResumeCheck(L.Callback):
    """Warn at the start of a ``fit`` resumed mid-epoch whose train loader position was not restored."""

    def __init__(self) -> None:
        self.loader_state_saved = False

    def on_load_checkpoint(self, trainer: L.Trainer, pl_module: L.LightningModule, checkpoint: dict[str, Any]) -> None:
        fit_loop = (checkpoint.get("loops") or {}).get("fit_loop") or {}
        self.loader_state_saved = bool((fit_loop.get("state_dict") or {}).get("combined_loader"))

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        fit_loop = trainer.fit_loop
        if not fit_loop.restarted_mid_epoch:
            return
        loaders = trainer.train_dataloader
        loaders = loaders.flattened if isinstance(loaders, CombinedLoader) else CombinedLoader(loaders).flattened
        stateless = [type(loader).__name__ for loader in loaders if not isinstance(loader, _Stateful)]
        if not stateless and self.loader_state_saved:
            return
        why = (f"its train loader ({', '.join(stateless)}) does not restore its position in the epoch" if stateless
               else "the checkpoint holds no train loader position (written before positions were saved)")
        log.warning("resumed mid-epoch (epoch %d, after %d batches) but %s: the epoch does not go on with the batches the "
                    "stopped run would have trained next, and the run is not bitwise equal to an uninterrupted one "
                    "(resume from an epoch-end checkpoint for that)",
                    trainer.current_epoch, fit_loop.epoch_loop.batch_progress.current.processed, why)
