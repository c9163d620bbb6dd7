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


class InterruptAtStep(L.Callback):
    """At global step ``step``, record the online workers' pids in ``pid_file`` and then interrupt
    training: ``how="sigint"`` sends this process SIGINT (a user's Ctrl-C), ``how="sigterm"`` SIGTERM (a
    scheduler's stop), ``how="error"`` raises."""

    def __init__(self, step: int, how: str, pid_file: str) -> None:
        self.step, self.how, self.pid_file = step, how, pid_file

    def on_train_batch_start(self, trainer: L.Trainer, pl_module: L.LightningModule, batch, batch_idx: int) -> None:
        if trainer.global_step != self.step:
            return
        with open(self.pid_file, "w") as f:
            f.write(" ".join(map(str, trainer.datamodule.pool.pids)))
        if self.how in ("sigint", "sigterm"):
            os.kill(os.getpid(), signal.SIGINT if self.how == "sigint" else signal.SIGTERM)
        else:
            raise RuntimeError("training failed on purpose")
