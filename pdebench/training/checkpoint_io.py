"""Checkpoints written atomically: temporary file in the destination folder, fsync, ``os.replace``."""

from __future__ import annotations

import os
from typing import Any

import torch
from lightning.pytorch.plugins.io import TorchCheckpointIO

from pdebench.atomic import atomic_write


class AtomicCheckpointIO(TorchCheckpointIO):
    """Lightning's checkpoint I/O, except that a checkpoint appears under its name only when complete.

    Lightning's own save moves a file from the system temporary folder without fsync, which is atomic
    only when both folders share a filesystem; here the temporary file lives beside the destination.
    """

    def save_checkpoint(self, checkpoint: dict[str, Any], path: str | os.PathLike, storage_options: Any | None = None) -> None:
        with atomic_write(path) as handle:
            torch.save(checkpoint, handle)
