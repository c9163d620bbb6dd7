"""Channel-wise normalisation fitted on the training split, stored with the model's weights."""

from __future__ import annotations

import torch
from torch import nn


class ChannelNormalizer(nn.Module):
    """``x ↦ (x − μ_c) / σ_c`` per channel of ``(B, C, *space)`` tensors; buffers travel in checkpoints.

    Parameters
    ----------
    channels
        Number of channels ``C``.
    """

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.register_buffer("mean", torch.zeros(channels))
        self.register_buffer("std", torch.ones(channels))
        self.register_buffer("fitted", torch.tensor(False))

    def fit(self, mean: torch.Tensor, std: torch.Tensor) -> None:
        """Set ``μ`` and ``σ`` (``(C,)`` each)."""
        if mean.shape != self.mean.shape or std.shape != self.std.shape:
            raise ValueError(f"normaliser has {self.mean.numel()} channels; got statistics of shape {tuple(mean.shape)}")
        if not (torch.isfinite(mean).all() and torch.isfinite(std).all() and (std > 0).all()):
            raise ValueError("normalisation statistics must be finite with positive std")
        self.mean.copy_(mean)
        self.std.copy_(std)
        self.fitted.fill_(True)

    def _view(self, t: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        return t.view(1, -1, *([1] * (x.ndim - 2))).to(x.dtype)

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self._view(self.mean, x)) / self._view(self.std, x)

    def decode(self, x: torch.Tensor) -> torch.Tensor:
        return x * self._view(self.std, x) + self._view(self.mean, x)
