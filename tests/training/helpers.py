"""Small callbacks the training tests put into configs."""

from __future__ import annotations

import os
import signal

import lightning as L


class KillAtEpoch(L.Callback):
    """SIGKILL the training process when epoch ``epoch`` starts (after the previous epoch's checkpoint)."""

    def __init__(self, epoch: int) -> None:
        self.epoch = epoch

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.current_epoch == self.epoch:
            os.kill(os.getpid(), signal.SIGKILL)
