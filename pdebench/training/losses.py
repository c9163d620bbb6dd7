"""Training losses: relative L2 and H1 **averaged over samples** (neuraloperator's, reduction="mean").

neuraloperator sums its losses over the batch by default, which makes the loss (and the effective
learning rate) change with the batch size; here every loss is a per-sample mean.
"""

from __future__ import annotations

from typing import Literal

import torch
from neuralop.losses import H1Loss, LpLoss

LossName = Literal["rel_l2", "h1", "mse"]


def make_loss(name: LossName, dim: int):
    """``loss(pred, target) -> scalar`` on ``(B, C, *space)`` tensors.

    ``rel_l2``: mean over samples of ``‖p − y‖₂ / ‖y‖₂``; ``h1``: the same in the H¹ norm (spectral
    derivatives, periodic); ``mse``: mean squared error.
    """
    if name == "rel_l2":
        return LpLoss(d=dim, p=2, reduction="mean")
    if name == "h1":
        return H1Loss(d=dim, reduction="mean")
    if name == "mse":
        return torch.nn.functional.mse_loss
    raise ValueError(f"loss must be 'rel_l2', 'h1' or 'mse', got {name!r}")
