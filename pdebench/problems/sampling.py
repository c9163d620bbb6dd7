"""Random input fields on periodic grids, reproducible per sample.

Every sampler takes a ``seed`` and the sample ``indices``; sample ``(seed, i)`` is drawn from its own
``torch.Generator`` (seeded from ``numpy.random.SeedSequence([seed, i])``), so any one sample can be
regenerated alone and a batch equals the concatenation of its rows drawn one at a time.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from pdebench.fft import irfftn, rfftn, wavenumbers

#: Held-out leaderboard seeds start here; training uses small seeds (and their ``+1..+3``), and every
#: training run refuses a seed at or above it.
LEADERBOARD_SEED_BASE = 1_000_000


def sample_generator(seed: int, index: int) -> torch.Generator:
    """The generator of sample ``index`` of stream ``seed`` (independent streams per sample)."""
    if seed < 0 or index < 0:
        raise ValueError(f"seed and index must be non-negative, got seed={seed}, index={index}")
    state = np.random.SeedSequence([int(seed), int(index)]).generate_state(1, dtype=np.uint64)[0]
    return torch.Generator().manual_seed(int(state))


def _per_sample(seed: int, indices: Sequence[int], draw) -> torch.Tensor:
    return torch.stack([draw(sample_generator(seed, int(i))) for i in indices])


def gaussian_random_field(
    seed: int,
    indices: Sequence[int],
    shape: Sequence[int],
    lengths: Sequence[float],
    *,
    sigma: float,
    tau: float,
    alpha: float,
    zero_mean: bool = True,
    dtype: torch.dtype = torch.float64,
) -> torch.Tensor:
    r"""Samples of the periodic Gaussian random field :math:`N(0, \sigma^2(-\Delta + \tau^2 I)^{-\alpha})`.

    On the torus :math:`\prod_i [0, L_i)` the covariance operator is diagonal in the Fourier basis
    :math:`\varphi_k = e^{ik\cdot x}/\sqrt{V}` with eigenvalues
    :math:`\lambda_k = \sigma^2 (|k|^2 + \tau^2)^{-\alpha}`, :math:`k = 2\pi n / L`; the field is
    :math:`u = \sum_k \sqrt{\lambda_k}\,\xi_k \varphi_k` truncated to the grid's modes, so the
    pointwise variance is :math:`\sum_k \lambda_k / V`. Real white noise is filtered in Fourier space.

    Parameters
    ----------
    seed, indices
        Stream and sample indices: ``B = len(indices)`` samples.
    shape, lengths
        Grid points and domain length per axis.
    sigma, tau, alpha
        Amplitude, inverse length scale and smoothness (``alpha > d/2`` for a continuous field).
    zero_mean
        Drop the constant mode (the FNO data sets do).

    Returns
    -------
    torch.Tensor
        ``(B, *shape)`` samples.
    """
    if sigma <= 0 or tau < 0 or alpha <= 0:
        raise ValueError(f"need sigma > 0, tau >= 0, alpha > 0; got sigma={sigma}, tau={tau}, alpha={alpha}")
    shape = tuple(int(n) for n in shape)
    noise = _per_sample(seed, indices, lambda g: torch.randn(shape, generator=g, dtype=torch.float64))
    k = wavenumbers(shape, lengths)
    k2 = sum(ki**2 for ki in k)
    spectrum = sigma * (k2 + tau**2) ** (-alpha / 2)
    if zero_mean:
        spectrum = torch.where(k2 == 0, torch.zeros_like(spectrum), spectrum)
    volume = math.prod(lengths)
    dims = tuple(range(-len(shape), 0))
    coeffs = rfftn(noise, dims) * spectrum
    field = irfftn(coeffs, shape, dims) * math.sqrt(math.prod(shape) / volume)
    return field.to(dtype)


def random_fourier_sum(
    seed: int,
    indices: Sequence[int],
    shape: Sequence[int],
    lengths: Sequence[float],
    *,
    n_terms: int = 2,
    max_mode: int = 4,
    amplitude: float = 1.0,
    dtype: torch.dtype = torch.float64,
) -> torch.Tensor:
    r"""Sums of random sines :math:`u(x) = \sum_{j<J} A_j \sin(k_j\cdot x + \phi_j)` on the grid.

    :math:`A_j \sim U[0, a]`, :math:`\phi_j \sim U[0, 2\pi)` and integer mode vectors
    :math:`n_j \in \{-m..m\}^d \setminus 0` (:math:`k_j = 2\pi n_j / L`), as in PDEBench's 1-D
    initial conditions. The sum is band-limited, so spectral solvers represent it exactly.

    Returns
    -------
    torch.Tensor
        ``(B, *shape)`` samples.
    """
    if n_terms < 1 or max_mode < 1:
        raise ValueError(f"need n_terms >= 1 and max_mode >= 1; got {n_terms}, {max_mode}")
    shape = tuple(int(n) for n in shape)
    axes = torch.meshgrid(
        *[torch.arange(n, dtype=torch.float64) * (length / n) for n, length in zip(shape, lengths)], indexing="ij"
    )

    def draw(g: torch.Generator) -> torch.Tensor:
        out = torch.zeros(shape, dtype=torch.float64)
        for _ in range(n_terms):
            modes = torch.zeros(len(shape))
            while not modes.any():
                modes = torch.randint(-max_mode, max_mode + 1, (len(shape),), generator=g)
            amp = amplitude * torch.rand((), generator=g, dtype=torch.float64)
            phase = 2 * math.pi * torch.rand((), generator=g, dtype=torch.float64)
            arg = sum(2 * math.pi * int(m) / length * x for m, length, x in zip(modes, lengths, axes))
            out += amp * torch.sin(arg + phase)
        return out

    return _per_sample(seed, indices, draw).to(dtype)


def thresholded_field(
    field: torch.Tensor, *, high: float, low: float, threshold: float = 0.0
) -> torch.Tensor:
    """Piecewise-constant coefficient ``high`` where ``field >= threshold`` else ``low``
    (the FNO Darcy permeability: 12 / 3 from a Gaussian random field). Shape is kept."""
    return torch.where(field >= threshold, torch.full_like(field, high), torch.full_like(field, low))


@dataclass(frozen=True, kw_only=True)
class GaussianFieldInput:
    """Initial conditions from :func:`gaussian_random_field` with the problem's ``sigma``, ``tau`` and
    ``alpha`` (defaults: FNO's 1-D setting, :math:`N(0, 625(-\\Delta + 25 I)^{-2})`), on the problem's
    grid (``spatial_shape``, ``lengths``)."""

    sigma: float = 25.0
    tau: float = 5.0
    alpha: float = 2.0

    def sample_initial_conditions(self, seed: int, indices: Sequence[int]) -> torch.Tensor:
        return gaussian_random_field(
            seed, indices, self.spatial_shape, self.lengths, sigma=self.sigma, tau=self.tau, alpha=self.alpha
        )
