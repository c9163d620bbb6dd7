"""Training losses: relative L2 and H1 **averaged over samples** (reduction="mean").

The relative L2 loss is :func:`pdebench.core.metrics.relative_l2` per (sample, channel), the definition
neuraloperator's ``LpLoss(d, p=2, reduction="mean")`` computes (equal to float round-off; a test checks
it); H1 is neuraloperator's ``H1Loss``. neuraloperator sums its losses over the batch by default, which
makes the loss (and the effective learning rate) change with the batch size; here every loss is a
per-sample mean.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal

import torch
from neuralop.losses import H1Loss

from pdebench.core.metrics import relative_l2

LossName = Literal["rel_l2", "h1", "mse"]

#: The regulariser added to the target's norm in the relative L2 loss (neuraloperator's ``LpLoss`` default).
REL_L2_EPS = 1e-8


class RelativeL2Loss:
    r"""Mean over the leading axes of :math:`\lVert p - y\rVert_2 / (\lVert y\rVert_2 + 10^{-8})`,
    the norms over the last ``dim`` (spatial) axes.

    On ``(B, C, *space)`` this is the mean over samples and channels of the per-(sample, channel)
    relative L2 error, :func:`~pdebench.core.metrics.relative_l2` with ``batch_dims=2``, ``eps=1e-8``,
    ``reduction="mean"``.

    Parameters
    ----------
    dim : int
        Number of trailing (spatial) axes in the norm, >= 1.
    eps : float
        Added to the target's norm.
    """

    def __init__(self, dim: int, eps: float = REL_L2_EPS) -> None:
        if isinstance(dim, bool) or not isinstance(dim, int) or dim < 1:
            raise ValueError(f"dim must be a positive int, got {dim!r}")
        self.dim = dim
        self.eps = eps

    def __call__(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """0-d loss of ``(*lead, *space)`` tensors with ``len(space) == dim``."""
        return relative_l2(pred, target, batch_dims=pred.ndim - self.dim, eps=self.eps, reduction="mean")


def make_loss(name: LossName, dim: int) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    """``loss(pred, target) -> scalar`` on ``(B, C, *space)`` tensors with ``dim`` spatial axes.

    ``rel_l2``: mean over samples and channels of ``‖p − y‖₂ / (‖y‖₂ + 1e-8)``, the norms over space
    (:class:`RelativeL2Loss`); ``h1``: the same in the H¹ norm (neuraloperator's ``H1Loss``: spectral
    derivatives, periodic); ``mse``: mean squared error.
    """
    if name == "rel_l2":
        return RelativeL2Loss(dim)
    if name == "h1":
        return H1Loss(d=dim, reduction="mean")
    if name == "mse":
        return torch.nn.functional.mse_loss
    raise ValueError(f"loss must be 'rel_l2', 'h1' or 'mse', got {name!r}")
