"""What a ``fit`` leaves behind when it does not end on its own (SIGTERM, Ctrl-C, an error).

:class:`InterruptCheckpoint` (added to every trainer by :func:`pdebench.training.cli.main`) stops the
data module's stream (so the checkpoint holds the stream's final accounting and no sample arrives
after it), saves a resumable ``last.ckpt`` through the trainer's checkpoint I/O (atomic:
:class:`~pdebench.training.checkpoint_io.AtomicCheckpointIO`) and records the cause, from which
``main`` takes the exit status (143 for SIGTERM, 130 for Ctrl-C).

Lightning handles SIGTERM itself: its handler sets ``trainer.received_sigterm`` and the loops raise
:class:`~lightning.pytorch.utilities.exceptions.SIGTERMException` at the end of the running batch, so
a SIGTERM'd run saves the state after a whole optimiser step. A Ctrl-C raises wherever it lands (as
Python's ``KeyboardInterrupt`` does). The data module's own ``on_exception`` (called after this one)
writes its stream report marked interrupted.
"""

from __future__ import annotations

import logging
from pathlib import Path

import lightning as L
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.trainer.states import TrainerFn
from lightning.pytorch.utilities.exceptions import SIGTERMException

from pdebench.data.online import fit_stop_cause

log = logging.getLogger(__name__)


class InterruptCheckpoint(L.Callback):
    """On an exception during ``fit``: stop the stream, save ``last.ckpt``, remember the cause.

    The checkpoint goes where the run's :class:`~lightning.pytorch.callbacks.ModelCheckpoint` puts
    its ``last.ckpt`` (its ``dirpath``), else to ``<default_root_dir>/checkpoints/last.ckpt``; resume
    with ``--ckpt_path`` that file. Under DDP it is saved only for SIGTERM (every rank stops at the
    same step; saving is collective), not for an error that may have stopped one rank alone.

    Attributes
    ----------
    cause
        ``None`` until an exception ends a run; then ``"SIGTERM"``, ``"KeyboardInterrupt"`` or
        ``"Type: message"``.
    checkpoint
        The checkpoint written, if any.
    """

    def __init__(self) -> None:
        self.cause: str | None = None
        self.checkpoint: Path | None = None

    @staticmethod
    def checkpoint_path(trainer: L.Trainer) -> Path:
        """Where the interrupted run's ``last.ckpt`` goes."""
        for callback in trainer.checkpoint_callbacks:
            if isinstance(callback, ModelCheckpoint) and callback.dirpath:
                return Path(callback.dirpath) / f"{callback.CHECKPOINT_NAME_LAST}{callback.FILE_EXTENSION}"
        return Path(trainer.default_root_dir) / "checkpoints" / f"{ModelCheckpoint.CHECKPOINT_NAME_LAST}{ModelCheckpoint.FILE_EXTENSION}"

    def on_exception(self, trainer: L.Trainer, pl_module: L.LightningModule, exception: BaseException) -> None:
        self.cause = fit_stop_cause(exception)
        if trainer.state.fn != TrainerFn.FITTING:
            return
        stop = getattr(trainer.datamodule, "stop_stream", None)
        if callable(stop):
            stop()  # workers end first: the checkpoint then holds the stream's final state
        if not trainer.optimizers:
            return  # stopped before the model was set up: nothing to resume
        if trainer.world_size > 1 and not isinstance(exception, SIGTERMException):
            log.warning("no checkpoint saved on %s under %d ranks (saving is collective)", self.cause, trainer.world_size)
            return
        path = self.checkpoint_path(trainer)
        try:
            trainer.save_checkpoint(path)
        except Exception:  # noqa: BLE001 - the original exception is what the user must see
            log.exception("could not save the checkpoint of the interrupted run to %s", path)
            return
        self.checkpoint = path
        log.warning("fit stopped (%s) at epoch %d, step %d; saved %s (resume with --ckpt_path %s)", self.cause,
                    trainer.current_epoch, trainer.global_step, path, path)
