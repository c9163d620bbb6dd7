"""Periodic Fourier grid: wavenumbers, real FFTs over the spatial axes and dealiasing masks."""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch

from pdebench.fft import irfftn, rfftn, wavenumbers


class FourierGrid:
    """A periodic grid of ``shape`` points on ``prod_i [0, L_i)`` and its real-FFT spectral space.

    Physical fields have shape ``(B, *shape)``; their coefficients ``(B, *spectral_shape)`` with
    ``spectral_shape = (*shape[:-1], shape[-1] // 2 + 1)`` (``torch.fft.rfftn`` over the last
    ``d`` axes, so one call transforms a whole batch).

    Parameters
    ----------
    shape
        Points per axis (``x`` first).
    lengths
        Domain length per axis.
    dtype
        Real dtype of physical fields (``torch.float64`` or ``torch.float32``).
    device
        Torch device of every tensor the grid makes.
    """

    def __init__(
        self,
        shape: Sequence[int],
        lengths: Sequence[float],
        dtype: torch.dtype = torch.float64,
        device: torch.device | str = "cpu",
    ) -> None:
        if len(shape) != len(lengths) or not shape:
            raise ValueError(f"shape {tuple(shape)} and lengths {tuple(lengths)} must be non-empty and match")
        if any(n < 4 for n in shape) or any(length <= 0 for length in lengths):
            raise ValueError(f"need at least 4 points and positive lengths per axis; got {shape}, {lengths}")
        self.shape = tuple(int(n) for n in shape)
        self.lengths = tuple(float(length) for length in lengths)
        self.dim = len(self.shape)
        self.dtype = dtype
        self.complex_dtype = torch.complex128 if dtype == torch.float64 else torch.complex64
        self.device = torch.device(device)
        self.spectral_shape = (*self.shape[:-1], self.shape[-1] // 2 + 1)
        self.k = [k.to(device=self.device) for k in wavenumbers(self.shape, self.lengths, torch.float64)]
        self.k_squared = sum(k**2 for k in self.k)
        self._dims = tuple(range(-self.dim, 0))
        # Derivative wavenumbers: the Nyquist mode of an even-length axis has no odd derivative.
        self.k_derivative = []
        for axis, (k, n) in enumerate(zip(self.k, self.shape)):
            nyquist = torch.zeros_like(k, dtype=torch.bool)
            if n % 2 == 0:
                nyquist = torch.isclose(k.abs(), torch.tensor(math.pi * n / self.lengths[axis], dtype=k.dtype))
            self.k_derivative.append(torch.where(nyquist, torch.zeros_like(k), k))

    @property
    def spacing(self) -> tuple[float, ...]:
        """Grid spacing ``L_i / N_i`` per axis."""
        return tuple(length / n for length, n in zip(self.lengths, self.shape))

    def coordinates(self) -> list[torch.Tensor]:
        """Grid-point coordinates ``x_j = j L / N`` per axis, each ``(N_i,)`` float64."""
        return [torch.arange(n, dtype=torch.float64) * (length / n) for n, length in zip(self.shape, self.lengths)]

    def rfft(self, u: torch.Tensor) -> torch.Tensor:
        """``(..., *shape)`` real -> ``(..., *spectral_shape)`` complex coefficients."""
        return rfftn(u, self._dims)

    def irfft(self, u_hat: torch.Tensor) -> torch.Tensor:
        """``(..., *spectral_shape)`` complex -> ``(..., *shape)`` real values."""
        return irfftn(u_hat, self.shape, self._dims)

    def ik(self, axis: int) -> torch.Tensor:
        """The spectral symbol ``i k_axis`` of ``∂/∂x_axis`` (complex, broadcastable)."""
        return (1j * self.k_derivative[axis]).to(self.complex_dtype)

    def dealias_mask(self, order: int = 2) -> torch.Tensor:
        """Real 0/1 mask keeping modes with ``|n_i| < N_i / (order + 1)`` on every axis.

        For a polynomial nonlinearity of degree ``order`` this removes all aliasing of products
        (``order=2``: Orszag's 2/3 rule; ``order=3``: the 1/2 rule).
        """
        if order < 1:
            raise ValueError(f"dealiasing order must be >= 1, got {order}")
        mask = torch.ones(self.spectral_shape, dtype=torch.bool, device=self.device)
        if order == 1:
            return mask.to(self.dtype)
        for k, n, length in zip(self.k, self.shape, self.lengths):
            index = (k * length / (2 * math.pi)).abs()
            mask = mask & (index < n / (order + 1))
        return mask.to(self.dtype)
