"""Batch-invariant real FFTs.

torch's CPU backend (MKL) transforms a lone multi-dimensional array with a different algorithm than
a batch of them, so the same sample would round differently alone and inside a batch. These wrappers
transform a lone array as a batch of two copies, which makes every sample's result independent of the
batch it is in, bit for bit (a sample regenerated alone equals its row in a dataset).
:func:`wavenumbers` gives the angular wavenumbers of those transforms (samplers, solvers, equations).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch


def _as_batch(x: torch.Tensor, ndim: int) -> tuple[torch.Tensor, bool]:
    lone = ndim >= 2 and math.prod(x.shape[: x.ndim - ndim]) == 1
    return (torch.cat([x, x]) if x.ndim > ndim else torch.stack([x, x])) if lone else x, lone


def _unbatch(y: torch.Tensor, lone: bool, leading: int) -> torch.Tensor:
    if not lone:
        return y
    return y[:1] if leading else y[0]


def rfftn(x: torch.Tensor, dims: Sequence[int]) -> torch.Tensor:
    """``torch.fft.rfftn(x, dim=dims)`` over the last ``len(dims)`` axes, batch-invariant."""
    batch, lone = _as_batch(x, len(dims))
    return _unbatch(torch.fft.rfftn(batch, dim=tuple(dims)), lone, x.ndim - len(dims))


def irfftn(x: torch.Tensor, shape: Sequence[int], dims: Sequence[int]) -> torch.Tensor:
    """``torch.fft.irfftn(x, s=shape, dim=dims)`` over the last ``len(dims)`` axes, batch-invariant."""
    batch, lone = _as_batch(x, len(dims))
    return _unbatch(torch.fft.irfftn(batch, s=tuple(shape), dim=tuple(dims)), lone, x.ndim - len(dims))


def wavenumbers(shape: Sequence[int], lengths: Sequence[float], dtype=torch.float64) -> list[torch.Tensor]:
    """Angular wavenumbers ``2π n / L`` of a real FFT (``rfftn``) over ``shape``.

    Returns one tensor per axis, broadcastable to the spectral shape ``(*shape[:-1], shape[-1]//2+1)``.
    """
    d = len(shape)
    out = []
    for axis, (n, length) in enumerate(zip(shape, lengths)):
        # Integer frequencies in float64 (torch's default float32 would cost 7 digits of accuracy).
        fft_freq = torch.fft.rfftfreq if axis == d - 1 else torch.fft.fftfreq
        freq = fft_freq(n, d=1.0 / n, dtype=torch.float64)
        view = [1] * d
        view[axis] = -1
        out.append((2 * math.pi / length * freq).to(dtype).reshape(view))
    return out
