r"""Neural Spectral Methods (NSM): a neural operator that lives in coefficient space and is trained
on the PDE residual measured there (Parseval), with no solver data.

The module has three parts.

**Spectral bases** (one class per axis, combined by :class:`TensorBasis`):

* :class:`FourierAxis` — periodic ``[0, L)``; :math:`u(x) = \sum_{|n|<m} \hat u_n e^{i k_n x}`,
  :math:`k_n = 2\pi n / L`. Transforms are ``torch.fft`` with ``norm="forward"`` so coefficients do not
  depend on the grid; the last Fourier axis of a tensor basis is stored as a real FFT (``n = 0..m-1``),
  the others keep ``n = 0..m-1, -(m-1)..-1`` (``2m - 1`` entries, no Nyquist mode).
  Derivatives multiply by :math:`(i k_n)^p`.
* :class:`ChebyshevAxis` — bounded ``[a, b]`` mapped to :math:`\xi \in [-1, 1]`;
  :math:`u = \sum_{j<m} a_j T_j(\xi)`. Values live on the Chebyshev–Gauss–Lobatto points
  :math:`\xi_i = -\cos(\pi i / (n-1))` (ascending); values ↔ coefficients is a DCT-I computed with
  ``torch.fft`` on the even extension. Derivatives use the closed form of the coefficient recurrence
  (:func:`chebyshev_derivative_matrix`), times :math:`2/(b-a)`.
  Boundary conditions are built into the basis (``bc``):

  - ``"dirichlet"``: :math:`\phi_j = T_{j+2} - T_j` (:math:`j < m-2`) vanish at both ends, since
    :math:`T_j(\pm 1) = (\pm 1)^j`;
  - ``"initial"``: :math:`\phi_j = T_{j+1} + T_j` (:math:`j < m-1`) vanish at the left end
    (:math:`\xi = -1`, e.g. :math:`t = 0`), for initial-value problems in time.

**The model** :class:`NSM` (registered as ``"nsm"``, board ``"physics"``) maps the coefficients of the
PDE's input function(s) to those of the solution; its layers, boundary-condition map and grid form
(:meth:`NSM.forward_grid`, the PINN baseline's backbone) are stated in its docstring.

**Residual problems** (:class:`PeriodicPoisson`, :class:`DirichletPoisson`, :class:`ReactionDiffusion`):
each samples its inputs' coefficients per ``(seed, index)`` and computes the coefficients of the residual
:math:`R(u)` (the Poisson problems evaluate :data:`pdebench.equations.steady.POISSON`'s residual on their
basis' Laplacian); the spectral loss is :math:`\lVert R\rVert^2` from Parseval (:meth:`TensorBasis.norm_sq`).

References
----------
Du, Chalapathi, Krishnapriyan, "Neural Spectral Methods: Self-supervised learning in the spectral
domain", ICLR 2024.
Boyd, "Chebyshev and Fourier Spectral Methods", 2nd ed., 2001 (DCT-I, derivative recurrence, basis
recombination for boundary conditions).
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import torch
from torch import nn

from pdebench.equations.steady import POISSON
from pdebench.models.contract import constructor_args
from pdebench.models.registry import register_model
from pdebench.problems.sampling import gaussian_random_field, sample_generator
from pdebench.registry import check_at_least_one, require_choice


BasisName = Literal["fourier", "chebyshev", "dirichlet", "initial"]
ChebyshevBC = Literal["none", "dirichlet", "initial"]

__all__ = [
    "FourierAxis", "ChebyshevAxis", "TensorBasis", "NSM", "ResidualProblem", "PeriodicPoisson",
    "DirichletPoisson", "ReactionDiffusion", "chebyshev_derivative_matrix", "dct1",
]


# ----------------------------------------------------------------------------------------- helpers
def _along(x: torch.Tensor, matrix: torch.Tensor, dim: int) -> torch.Tensor:
    """Apply ``matrix`` ``(p, q)`` to axis ``dim`` of ``x`` (size ``q``); that axis becomes size ``p``."""
    moved = x.movedim(dim, -1)
    return (moved @ matrix.to(device=x.device, dtype=x.dtype).T).movedim(-1, dim)


def _on_axis(vector: torch.Tensor, like: torch.Tensor, dim: int) -> torch.Tensor:
    """``vector`` ``(n,)`` on ``like``'s device and real dtype, shaped to broadcast along axis ``dim`` of ``like``."""
    shape = [1] * like.ndim
    shape[dim] = -1
    return vector.to(device=like.device, dtype=like.real.dtype).reshape(shape)


def _pad_or_cut(x: torch.Tensor, size: int, dim: int) -> torch.Tensor:
    """Zero-pad or truncate axis ``dim`` of ``x`` to ``size`` entries (keeping the leading ones)."""
    current = x.shape[dim]
    if current >= size:
        return x.narrow(dim, 0, size)
    shape = list(x.shape)
    shape[dim] = size - current
    return torch.cat([x, x.new_zeros(shape)], dim=dim)


def dct1(x: torch.Tensor, dim: int = -1) -> torch.Tensor:
    r"""Unnormalised DCT-I along ``dim``: :math:`F_k = x_0 + (-1)^k x_{n-1} + 2\sum_{j=1}^{n-2} x_j \cos(\pi jk/(n-1))`.

    Computed with an FFT of the even extension :math:`(x_0, \dots, x_{n-1}, x_{n-2}, \dots, x_1)`
    (length :math:`2(n-1)`). Real or complex input; the output has the input's shape and dtype.

    Parameters
    ----------
    x : torch.Tensor
        Any shape with ``x.shape[dim] = n >= 2``.
    dim : int
        The transformed axis.
    """
    n = x.shape[dim]
    if n < 2:
        raise ValueError(f"DCT-I needs at least 2 points along dim {dim}, got {n}")
    inner = x.narrow(dim, 1, n - 2).flip(dim) if n > 2 else x.narrow(dim, 0, 0)
    extended = torch.cat([x, inner], dim=dim)
    if x.is_complex():
        return torch.fft.fft(extended, dim=dim).narrow(dim, 0, n)
    return torch.fft.rfft(extended, dim=dim).narrow(dim, 0, n).real


def chebyshev_derivative_matrix(m: int, dtype: torch.dtype = torch.float64) -> torch.Tensor:
    r"""Matrix ``D`` ``(m, m)`` with ``b = D a``: Chebyshev coefficients of :math:`u'` from those of :math:`u`.

    Closed form of the recurrence :math:`c_{k-1} b_{k-1} = b_{k+1} + 2k a_k`, :math:`b_{m-1} = b_m = 0`:
    :math:`D_{kj} = 2j / c_k` for :math:`j > k` with :math:`j + k` odd (:math:`c_0 = 2`, :math:`c_k = 1`
    otherwise), on :math:`[-1, 1]`.
    """
    k = torch.arange(m).reshape(-1, 1)
    j = torch.arange(m).reshape(1, -1)
    d = torch.where((j > k) & ((j + k) % 2 == 1), 2.0 * j, torch.zeros(()))
    d[0] /= 2
    return d.to(dtype)


# ------------------------------------------------------------------------------------------- axes
@dataclass(frozen=True)
class FourierAxis:
    r"""Periodic axis ``[0, length)`` with wavenumbers :math:`k_n = 2\pi n/L`, :math:`|n| < m`.

    Parameters
    ----------
    n_modes : int
        ``m``: integer frequencies ``|n| <= m - 1`` are kept. A grid needs ``n >= 2m - 1`` points.
    length : float
        Period ``L``.
    """

    n_modes: int
    length: float = 2 * math.pi

    def __post_init__(self) -> None:
        if self.n_modes < 1:
            raise ValueError(f"FourierAxis n_modes must be >= 1, got {self.n_modes}")
        if not self.length > 0:
            raise ValueError(f"FourierAxis length must be positive, got {self.length}")

    def size(self, half: bool) -> int:
        """Coefficients along this axis: ``m`` for the real-FFT (half) axis, ``2m - 1`` otherwise."""
        return self.n_modes if half else 2 * self.n_modes - 1

    def frequencies(self, half: bool) -> torch.Tensor:
        """Integer frequencies ``n`` in storage order, ``(size,)`` int64."""
        m = self.n_modes
        pos = torch.arange(m)
        return pos if half else torch.cat([pos, torch.arange(-(m - 1), 0)])

    def wavenumbers(self, half: bool, dtype: torch.dtype = torch.float64) -> torch.Tensor:
        """Angular wavenumbers ``2π n / L`` in storage order, ``(size,)``."""
        return self.frequencies(half).to(dtype) * (2 * math.pi / self.length)

    def points(self, n: int, dtype: torch.dtype = torch.float64) -> torch.Tensor:
        """Uniform grid ``x_i = i L / n``, ``(n,)``."""
        return torch.arange(n, dtype=dtype) * (self.length / n)

    def check_grid(self, n: int) -> None:
        """A grid of ``n`` points must resolve every kept mode without aliasing (``n >= 2m - 1``)."""
        if n < 2 * self.n_modes - 1:
            raise ValueError(f"a Fourier grid of {n} points cannot hold {self.n_modes} modes (needs >= {2 * self.n_modes - 1})")

    def to_coeffs(self, values: torch.Tensor, dim: int, half: bool) -> torch.Tensor:
        """Grid values (size ``n`` along ``dim``) → kept coefficients (``size(half)`` along ``dim``)."""
        n = values.shape[dim]
        self.check_grid(n)
        m = self.n_modes
        if half:
            return torch.fft.rfft(values, dim=dim, norm="forward").narrow(dim, 0, m)
        spec = torch.fft.fft(values, dim=dim, norm="forward")
        return torch.cat([spec.narrow(dim, 0, m), spec.narrow(dim, n - m + 1, m - 1)], dim=dim)

    def to_values(self, coeffs: torch.Tensor, n: int, dim: int, half: bool) -> torch.Tensor:
        """Kept coefficients → values on the ``n``-point grid (real output for the half axis)."""
        self.check_grid(n)
        m = self.n_modes
        if half:
            return torch.fft.irfft(coeffs, n=n, dim=dim, norm="forward")  # zero-pads to n // 2 + 1
        shape = list(coeffs.shape)
        shape[dim] = n - (2 * m - 1)
        full = torch.cat([coeffs.narrow(dim, 0, m), coeffs.new_zeros(shape), coeffs.narrow(dim, m, m - 1)], dim=dim)
        return torch.fft.ifft(full, dim=dim, norm="forward")

    def derivative(self, coeffs: torch.Tensor, dim: int, half: bool, order: int = 1) -> torch.Tensor:
        r"""Coefficients of :math:`\partial^p u / \partial x^p`: multiply by :math:`(i k_n)^p`."""
        k = self.wavenumbers(half, coeffs.real.dtype).to(coeffs.device)
        shape = [1] * coeffs.ndim
        shape[dim] = -1
        return coeffs * ((1j * k) ** order).reshape(shape)

    def parseval_weights(self, half: bool) -> torch.Tensor:
        r""":math:`w_n` with :math:`\int_0^L |u|^2 dx = \sum_n w_n |\hat u_n|^2`: ``L`` per mode, doubled
        for ``n > 0`` on the half axis (its conjugate ``-n`` is not stored)."""
        w = torch.full((self.size(half),), float(self.length), dtype=torch.float64)
        if half:
            w[1:] *= 2
        return w


@dataclass(frozen=True)
class ChebyshevAxis:
    r"""Bounded axis ``[a, b]`` in Chebyshev polynomials :math:`T_j`, ``j < m``, with an optional BC.

    Parameters
    ----------
    n_modes : int
        ``m``: coefficients of :math:`T_0 \dots T_{m-1}`.
    domain : tuple of float
        ``(a, b)``, ``a < b``.
    bc : {"none", "dirichlet", "initial"}
        Boundary condition built into :meth:`constrain` (module docstring): zero at both ends, or zero at
        the left end ``a``.
    """

    n_modes: int
    domain: tuple[float, float] = (-1.0, 1.0)
    bc: ChebyshevBC = "none"

    def __post_init__(self) -> None:
        lowest = {"none": 2, "dirichlet": 3, "initial": 2}
        require_choice("bc", self.bc, tuple(lowest), "ChebyshevAxis ")
        if self.n_modes < lowest[self.bc]:
            raise ValueError(f"ChebyshevAxis with bc={self.bc!r} needs n_modes >= {lowest[self.bc]}, got {self.n_modes}")
        if not self.domain[1] > self.domain[0]:
            raise ValueError(f"ChebyshevAxis domain must have a < b, got {self.domain}")

    @property
    def scale(self) -> float:
        """``dξ/dx = 2 / (b - a)``."""
        return 2.0 / (self.domain[1] - self.domain[0])

    def size(self, half: bool = False) -> int:
        """Coefficients along this axis (``m``)."""
        return self.n_modes

    def points(self, n: int, dtype: torch.dtype = torch.float64) -> torch.Tensor:
        r"""Chebyshev–Gauss–Lobatto points in ascending order, :math:`x_i = \frac{a+b}2 - \frac{b-a}2\cos\frac{\pi i}{n-1}`, ``(n,)``."""
        if n < 2:
            raise ValueError(f"a Chebyshev grid needs at least 2 points, got {n}")
        a, b = self.domain
        xi = -torch.cos(torch.arange(n, dtype=torch.float64) * (math.pi / (n - 1)))
        return (0.5 * (a + b) + 0.5 * (b - a) * xi).to(dtype)

    def check_grid(self, n: int) -> None:
        """A grid of ``n`` Gauss–Lobatto points holds polynomials of degree ``n - 1`` (``n >= m``)."""
        if n < max(self.n_modes, 2):
            raise ValueError(f"a Chebyshev grid of {n} points cannot hold {self.n_modes} modes (needs >= {self.n_modes})")

    def to_coeffs(self, values: torch.Tensor, dim: int, half: bool = False) -> torch.Tensor:
        r"""Values at the ``n`` ascending Gauss–Lobatto points → the first ``m`` coefficients of the
        interpolant: :math:`a_k = F_k / ((n-1) c_k)`, :math:`F` the DCT-I of the values in the standard
        (descending :math:`\xi`) order, :math:`c_0 = c_{n-1} = 2`."""
        n = values.shape[dim]
        self.check_grid(n)
        spec = dct1(values.flip(dim), dim) / (n - 1)
        halves = torch.ones(n, dtype=torch.float64)
        halves[0] = halves[-1] = 0.5
        return (spec * _on_axis(halves, spec, dim)).narrow(dim, 0, self.n_modes)

    def to_values(self, coeffs: torch.Tensor, n: int, dim: int, half: bool = False) -> torch.Tensor:
        r"""Coefficients → values at ``n`` ascending Gauss–Lobatto points:
        :math:`u_i = \tfrac12 (F_i + a_0 + (-1)^i a_{n-1})`, :math:`F` the DCT-I of the zero-padded coefficients."""
        self.check_grid(n)
        a = _pad_or_cut(coeffs, n, dim)
        spec = dct1(a, dim)
        sign = torch.ones(n, dtype=torch.float64)
        sign[1::2] = -1
        ends = a.narrow(dim, 0, 1) + a.narrow(dim, n - 1, 1) * _on_axis(sign, a, dim)
        return (0.5 * (spec + ends)).flip(dim)

    def derivative(self, coeffs: torch.Tensor, dim: int, half: bool = False, order: int = 1) -> torch.Tensor:
        r"""Coefficients of :math:`\partial^p u/\partial x^p`: :math:`(2/(b-a))^p D^p a` (:func:`chebyshev_derivative_matrix`)."""
        d = chebyshev_derivative_matrix(self.n_modes) * self.scale
        return _along(coeffs, torch.linalg.matrix_power(d, order), dim)

    def parseval_weights(self, half: bool = False) -> torch.Tensor:
        r""":math:`w_j` with :math:`\int_a^b u^2\, \omega\, dx = \sum_j w_j a_j^2` for the Chebyshev weight
        :math:`\omega = (1 - \xi^2)^{-1/2}`: :math:`w_0 = \pi (b-a)/2`, :math:`w_j = \pi (b-a)/4`."""
        half_width = 0.5 * (self.domain[1] - self.domain[0])
        w = torch.full((self.n_modes,), math.pi / 2 * half_width, dtype=torch.float64)
        w[0] *= 2
        return w

    def recombination(self) -> torch.Tensor:
        r"""``S`` ``(m, m)``: Chebyshev coefficients ``a = S r`` of the BC-satisfying function whose basis
        coefficients (module docstring) are the leading entries of ``r`` (``dirichlet``: the last two unused;
        ``initial``: the last unused; ``none``: identity)."""
        m = self.n_modes
        if self.bc == "none":
            return torch.eye(m, dtype=torch.float64)
        s = torch.zeros(m, m, dtype=torch.float64)
        shift, sign = (2, -1.0) if self.bc == "dirichlet" else (1, 1.0)
        j = torch.arange(m - shift)
        s[j + shift, j] = 1.0
        s[j, j] = sign
        return s

    def constrain(self, coeffs: torch.Tensor, dim: int) -> torch.Tensor:
        """Map raw coefficients into the BC subspace (:meth:`recombination`); identity for ``bc="none"``."""
        if self.bc == "none":
            return coeffs
        return _along(coeffs, self.recombination(), dim)


Axis = FourierAxis | ChebyshevAxis


class TensorBasis:
    r"""Tensor product of per-axis bases over the last ``d`` dimensions of a tensor.

    Coefficient tensors are ``(..., *coeff_shape)``, complex when any axis is Fourier (the last Fourier
    axis is stored as a real FFT), real otherwise. Value tensors are real ``(..., *grid)`` on
    :meth:`points`.

    Parameters
    ----------
    axes : sequence of FourierAxis or ChebyshevAxis
        One per spatial (or time) dimension, in tensor order.

    Examples
    --------
    >>> basis = TensorBasis([FourierAxis(8), FourierAxis(8)])
    >>> basis.coeff_shape
    (15, 8)
    >>> u = torch.randn(2, 16, 16, dtype=torch.float64)
    >>> basis.to_coeffs(u).shape
    torch.Size([2, 15, 8])
    """

    def __init__(self, axes: Sequence[Axis]) -> None:
        axes = tuple(axes)
        if not axes:
            raise ValueError("TensorBasis needs at least one axis")
        for ax in axes:
            if not isinstance(ax, (FourierAxis, ChebyshevAxis)):
                raise ValueError(f"TensorBasis axes must be FourierAxis or ChebyshevAxis, got {ax!r}")
        self.axes = axes
        fourier = [i for i, ax in enumerate(axes) if isinstance(ax, FourierAxis)]
        self.half_axis: int | None = fourier[-1] if fourier else None

    def __repr__(self) -> str:
        return f"TensorBasis({list(self.axes)!r})"

    @property
    def dim(self) -> int:
        """Number of axes ``d``."""
        return len(self.axes)

    @property
    def is_complex(self) -> bool:
        """Whether coefficients are complex (any Fourier axis)."""
        return self.half_axis is not None

    @property
    def coeff_shape(self) -> tuple[int, ...]:
        """Shape of the coefficient block of one channel."""
        return tuple(ax.size(i == self.half_axis) for i, ax in enumerate(self.axes))

    def coeff_dtype(self, real: torch.dtype) -> torch.dtype:
        """The coefficient dtype for a real dtype (``float32`` → ``complex64`` when complex)."""
        return (torch.complex128 if real == torch.float64 else torch.complex64) if self.is_complex else real

    def default_grid(self) -> tuple[int, ...]:
        """Smallest exact grid for the kept modes: ``2m - 1`` (Fourier) or ``m`` (Chebyshev) points."""
        return tuple(2 * ax.n_modes - 1 if isinstance(ax, FourierAxis) else ax.n_modes for ax in self.axes)

    def product_grid(self) -> tuple[int, ...]:
        """Grid on which products of two kept-mode functions are computed without aliasing into the
        kept modes (3/2 rule): ``3m - 2`` (Fourier), ``ceil(3m/2)`` (Chebyshev) points."""
        return tuple(3 * ax.n_modes - 2 if isinstance(ax, FourierAxis) else math.ceil(1.5 * ax.n_modes) for ax in self.axes)

    def points(self, grid: Sequence[int], dtype: torch.dtype = torch.float64) -> list[torch.Tensor]:
        """1-D coordinates of the grid per axis (uniform for Fourier, Gauss–Lobatto for Chebyshev)."""
        self._check_grid(grid)
        return [ax.points(n, dtype) for ax, n in zip(self.axes, grid)]

    def mesh(self, grid: Sequence[int], dtype: torch.dtype = torch.float64) -> list[torch.Tensor]:
        """Coordinate arrays ``(*grid)`` per axis (``indexing="ij"``)."""
        return list(torch.meshgrid(*self.points(grid, dtype), indexing="ij"))

    def _check_grid(self, grid: Sequence[int]) -> None:
        if len(grid) != self.dim:
            raise ValueError(f"grid {tuple(grid)} has {len(grid)} axes, the basis has {self.dim}")
        for ax, n in zip(self.axes, grid):
            ax.check_grid(int(n))

    def _check_coeffs(self, coeffs: torch.Tensor) -> None:
        if tuple(coeffs.shape[-self.dim:]) != self.coeff_shape:
            raise ValueError(f"coefficients of shape {tuple(coeffs.shape)} do not end in the basis' {self.coeff_shape}")

    def to_coeffs(self, values: torch.Tensor) -> torch.Tensor:
        """Real values ``(..., *grid)`` → coefficients ``(..., *coeff_shape)`` (interpolation, then
        truncation to the kept modes)."""
        if values.is_complex():
            raise ValueError("TensorBasis.to_coeffs expects real values")
        self._check_grid(values.shape[-self.dim:])
        out = values
        order = ([self.half_axis] if self.half_axis is not None else []) + [i for i in range(self.dim) if i != self.half_axis]
        for i in order:
            out = self.axes[i].to_coeffs(out, i - self.dim, i == self.half_axis)
        return out

    def to_values(self, coeffs: torch.Tensor, grid: Sequence[int]) -> torch.Tensor:
        """Coefficients ``(..., *coeff_shape)`` → real values ``(..., *grid)`` on :meth:`points`."""
        self._check_coeffs(coeffs)
        self._check_grid(grid)
        out = coeffs
        order = [i for i in range(self.dim) if i != self.half_axis] + ([self.half_axis] if self.half_axis is not None else [])
        for i in order:
            out = self.axes[i].to_values(out, int(grid[i]), i - self.dim, i == self.half_axis)
        return out

    def derivative(self, coeffs: torch.Tensor, axis: int, order: int = 1) -> torch.Tensor:
        """Coefficients of ``∂^order u / ∂x_axis^order`` (same shape)."""
        if not 0 <= axis < self.dim:
            raise ValueError(f"axis must be in [0, {self.dim}), got {axis}")
        if order < 0:
            raise ValueError(f"derivative order must be >= 0, got {order}")
        return self.axes[axis].derivative(coeffs, axis - self.dim, axis == self.half_axis, order)

    def laplacian(self, coeffs: torch.Tensor, axes: Sequence[int] | None = None) -> torch.Tensor:
        r"""Coefficients of :math:`\sum_{i \in axes} \partial_i^2 u` (all axes by default)."""
        axes = range(self.dim) if axes is None else axes
        return sum(self.derivative(coeffs, i, 2) for i in axes)

    def parseval_weights(self, device: torch.device | None = None) -> torch.Tensor:
        """Product of the per-axis weights, ``coeff_shape`` float64 (see :meth:`norm_sq`)."""
        w = torch.ones((), dtype=torch.float64)
        for i, ax in enumerate(self.axes):
            wi = ax.parseval_weights(i == self.half_axis)
            w = w.unsqueeze(-1) * wi
        return w.to(device)

    def norm_sq(self, coeffs: torch.Tensor) -> torch.Tensor:
        r"""Squared norm of the function with these coefficients, ``(..., *coeff_shape) -> (...)``.

        Parseval: :math:`\sum_k w_k |\hat u_k|^2`. Over Fourier axes this is the plain
        :math:`\int |u|^2 dx`; over a Chebyshev axis the integral carries the Chebyshev weight
        :math:`(1-\xi^2)^{-1/2}` (the basis is orthogonal only under that weight), which bounds the
        plain :math:`L^2` norm from above, :math:`\int u^2 dx \le \int u^2 \omega\, dx`.
        """
        self._check_coeffs(coeffs)
        w = self.parseval_weights(coeffs.device).to(coeffs.real.dtype)
        sq = coeffs.real**2 + coeffs.imag**2 if coeffs.is_complex() else coeffs**2
        return (sq * w).flatten(-self.dim).sum(-1)

    def constrain(self, coeffs: torch.Tensor) -> torch.Tensor:
        """Map coefficients into the subspace satisfying every Chebyshev axis' built-in BC."""
        out = coeffs
        for i, ax in enumerate(self.axes):
            if isinstance(ax, ChebyshevAxis):
                out = ax.constrain(out, i - self.dim)
        return out


def make_basis(bases: Sequence[BasisName], n_modes: Sequence[int],
               domains: Sequence[tuple[float, float]] | None = None) -> TensorBasis:
    """Build a :class:`TensorBasis` from names (``"fourier"``, ``"chebyshev"``, ``"dirichlet"``,
    ``"initial"``), modes per axis and optional domains (``(0, L)`` for Fourier; default ``2π`` / ``[-1, 1]``)."""
    if len(bases) != len(n_modes):
        raise ValueError(f"bases {tuple(bases)} and n_modes {tuple(n_modes)} differ in length")
    domains = domains or [None] * len(bases)
    axes: list[Axis] = []
    for name, m, dom in zip(bases, n_modes, domains):
        if name == "fourier":
            axes.append(FourierAxis(int(m), 2 * math.pi if dom is None else float(dom[1] - dom[0])))
        elif name in ("chebyshev", "dirichlet", "initial"):
            bc = {"chebyshev": "none", "dirichlet": "dirichlet", "initial": "initial"}[name]
            axes.append(ChebyshevAxis(int(m), (-1.0, 1.0) if dom is None else (float(dom[0]), float(dom[1])), bc))
        else:
            raise ValueError(f"unknown basis {name!r}; valid: fourier, chebyshev, dirichlet, initial")
    return TensorBasis(axes)


# ------------------------------------------------------------------------------------------ model
_ACTIVATIONS = {"gelu": nn.functional.gelu, "relu": torch.relu, "tanh": torch.tanh, "silu": nn.functional.silu}


class SpectralMixing(nn.Module):
    r"""Per-mode channel mixing :math:`\hat v_k \mapsto R_k^\top \hat v_k`, ``(B, C_in, *modes) -> (B, C_out, *modes)``.

    The weights are stored mode-major, ``(M, C_in, C_out)`` with ``M = prod(modes)``, as a real tensor,
    or as ``(2, M, C_in, C_out)`` (real and imaginary parts) when the basis is complex
    (:meth:`complex_weight` gives :math:`R` as ``(C_in, C_out, *modes)``). Initialised with standard
    deviation :math:`\sqrt{2/(C_{in}+C_{out})}/2` (split evenly over real and imaginary parts).
    """

    def __init__(self, in_channels: int, out_channels: int, modes: Sequence[int], complex_weights: bool) -> None:
        super().__init__()
        self.complex_weights = complex_weights
        self.modes = tuple(modes)
        std = 0.5 * math.sqrt(2.0 / (in_channels + out_channels))
        shape = ((2,) if complex_weights else ()) + (math.prod(self.modes), in_channels, out_channels)
        self.weight = nn.Parameter(torch.randn(shape) * (std / (math.sqrt(2) if complex_weights else 1.0)))

    def complex_weight(self) -> torch.Tensor:
        """:math:`R` as ``(C_in, C_out, *modes)`` (complex when the basis is)."""
        w = torch.complex(self.weight[0], self.weight[1]) if self.complex_weights else self.weight
        return w.permute(1, 2, 0).reshape(*w.shape[1:], *self.modes)

    def forward(self, coeffs: torch.Tensor) -> torch.Tensor:
        """``(B, C_in, *modes) -> (B, C_out, *modes)``.

        One real batched matrix product per mode (batch over modes). For complex coefficients the real
        and imaginary parts are stacked along the batch, ``X = [x_r; x_i]``, and
        :math:`y_r = (X W_r)_{:B} - (X W_i)_{B:}`, :math:`y_i = (X W_i)_{:B} + (X W_r)_{B:}`
        (CPU complex ``bmm`` loops over the batch; two real products do not).
        """
        b = coeffs.shape[0]
        modes = coeffs.shape[2:]
        w = self.weight.to(coeffs.real.dtype)
        if not self.complex_weights:
            x = coeffs.flatten(2).permute(2, 0, 1)  # (M, B, C_in)
            return torch.bmm(x, w).permute(1, 2, 0).reshape(b, -1, *modes)
        x = torch.view_as_real(coeffs.resolve_conj()).flatten(2, -2).permute(2, 3, 0, 1).flatten(1, 2)  # (M, 2B, C_in)
        p, q = torch.bmm(x, w[0]), torch.bmm(x, w[1])  # (M, 2B, C_out)
        real = p[:, :b] - q[:, b:]
        imag = q[:, :b] + p[:, b:]
        return torch.complex(real, imag).permute(1, 2, 0).reshape(b, -1, *modes)


@register_model("nsm", board="physics", description="Neural Spectral Method: coefficients in, coefficients out, residual-trained")
class NSM(nn.Module):
    r"""Neural Spectral Method (Du et al., ICLR 2024): a neural operator between spectral coefficients.

    ``forward``: input coefficients ``(B, C_in, *coeff_shape)`` → solution coefficients
    ``(B, C_out, *coeff_shape)`` in the model's :class:`TensorBasis` (complex if any axis is Fourier).
    Layers (see the module docstring):

    .. math::
        \hat v_0 = P \hat a, \qquad
        \hat v_{l+1} = \mathcal T\big[\sigma\big(\mathcal T^{-1}[R_l \odot \hat v_l + W_l \hat v_l + b_l e_0]\big)\big], \qquad
        \hat u = S\,(Q \hat v_L + c\, e_0),

    where :math:`R_l \in \mathbb C^{c \times c}` mixes channels per mode (real when every axis is
    Chebyshev), :math:`P, W_l, Q` act on channels mode by mode (a pointwise linear map in physical space is
    the same linear map on every coefficient), :math:`e_0` is the constant mode, :math:`\sigma` is applied
    in physical space: :math:`\mathcal T^{-1}` evaluates on a collocation grid of ``grid`` points per axis
    and :math:`\mathcal T` returns the kept coefficients; :math:`S` maps into the BC subspace of each
    Chebyshev axis (the module docstring's bases), so BCs hold exactly; periodicity is built into the
    Fourier basis. Because the output is a set of coefficients, evaluation on any grid is one inverse
    transform: the network's cost does not depend on the evaluation grid.

    Parameters
    ----------
    in_channels, out_channels : int
        Channels of the input and output coefficient tensors.
    dim : int
        Number of axes (1-3).
    bases : str or tuple of str
        Per axis ``"fourier"``, ``"chebyshev"``, ``"dirichlet"`` or ``"initial"`` (one name for all axes).
    n_modes : int or tuple of int
        ``m`` per axis (Fourier: ``|n| < m``; Chebyshev: ``T_0..T_{m-1}``).
    hidden_channels, n_layers : int
        Width and depth.
    grid : int, tuple of int or None
        Collocation points per axis for the activations; ``None``: ``3m`` (Fourier) / ``2m`` (Chebyshev),
        enough that the quadratic part of the activation does not alias into the kept modes.
    activation : {"relu", "gelu", "tanh", "silu"}
        Pointwise nonlinearity (ReLU trained fastest and most accurately on periodic Poisson here).
    positional_embedding : bool
        Append the coordinate :math:`\xi_i = T_1(\xi_i)` of every Chebyshev axis as an input channel (a
        coefficient 1 at mode 1). Without it an input constant along an axis (an initial condition
        along ``t``) could only produce outputs constant along it: per-mode mixing and pointwise
        activations never create a new dependence. Fourier axes get none (periodic problems are
        translation-equivariant).

    Examples
    --------
    >>> model = NSM(1, 1, dim=2, bases="fourier", n_modes=8, hidden_channels=8)
    >>> f_hat = model.basis.to_coeffs(torch.randn(3, 1, 16, 16))
    >>> u_hat = model(f_hat)                           # (3, 1, 15, 8) complex coefficients
    >>> model.basis.to_values(u_hat, (256, 256)).shape  # any evaluation grid
    torch.Size([3, 1, 256, 256])

    """

    def __init__(
        self,
        in_channels: int = 1,
        out_channels: int = 1,
        dim: int = 2,
        bases: str | tuple[str, ...] = "fourier",
        n_modes: int | tuple[int, ...] = 12,
        hidden_channels: int = 32,
        n_layers: int = 4,
        grid: int | tuple[int, ...] | None = None,
        activation: Literal["gelu", "relu", "tanh", "silu"] = "relu",
        positional_embedding: bool = True,
    ) -> None:
        super().__init__()
        check_at_least_one(in_channels=in_channels, out_channels=out_channels, hidden_channels=hidden_channels,
                           n_layers=n_layers)
        require_choice("dim", dim, (1, 2, 3))
        require_choice("activation", activation, tuple(_ACTIVATIONS))
        bases_t = (bases,) * dim if isinstance(bases, str) else tuple(bases)
        modes_t = (n_modes,) * dim if isinstance(n_modes, int) else tuple(n_modes)
        if len(bases_t) != dim or len(modes_t) != dim:
            raise ValueError(f"bases {bases_t} and n_modes {modes_t} must have dim={dim} entries")
        self.basis = make_basis(bases_t, modes_t)
        grid_t = (tuple(3 * m if b == "fourier" else 2 * m for b, m in zip(bases_t, modes_t)) if grid is None
                  else (grid,) * dim if isinstance(grid, int) else tuple(grid))
        self.basis._check_grid(grid_t)
        self.grid = grid_t
        self.init_args = constructor_args(self, dict(locals(), bases=bases_t, n_modes=modes_t, grid=grid_t))
        self.activation = activation
        self.in_channels = in_channels
        self.position_axes = tuple(i for i, b in enumerate(bases_t) if b != "fourier") if positional_embedding else ()
        self._sigma = _ACTIVATIONS[activation]
        modes = self.basis.coeff_shape
        self.lift = nn.Linear(in_channels + len(self.position_axes), hidden_channels)
        self.mixing = nn.ModuleList(SpectralMixing(hidden_channels, hidden_channels, modes, self.basis.is_complex)
                                    for _ in range(n_layers))
        self.pointwise = nn.ModuleList(nn.Linear(hidden_channels, hidden_channels) for _ in range(n_layers))
        self.project = nn.Linear(hidden_channels, out_channels)

    # ----------------------------------------------------------------- coefficient space (NSM)
    def _linear(self, layer: nn.Linear, coeffs: torch.Tensor) -> torch.Tensor:
        """Pointwise linear map on coefficients ``(B, C, *modes)``: ``W`` on every mode, bias on mode 0."""
        weight = layer.weight.to(coeffs.real.dtype)
        if coeffs.is_complex():  # a real map on [Re, Im] pairs (CPU complex matmuls loop over the batch)
            out = torch.view_as_complex(torch.einsum("bi...,oi->bo...", torch.view_as_real(coeffs), weight).contiguous())
        else:
            out = torch.einsum("bi...,oi->bo...", coeffs, weight)
        index = (slice(None), slice(None)) + (0,) * self.basis.dim
        out[index] = out[index] + layer.bias.to(coeffs.dtype)
        return out

    def _activate(self, coeffs: torch.Tensor) -> torch.Tensor:
        """σ on the collocation grid: ``T[σ(T^{-1} v)]``."""
        return self.basis.to_coeffs(self._sigma(self.basis.to_values(coeffs, self.grid)))

    def forward(self, coeffs: torch.Tensor, **conditioning: torch.Tensor) -> torch.Tensor:
        """Input coefficients ``(B, C_in, *coeff_shape)`` → solution coefficients ``(B, C_out, *coeff_shape)``
        satisfying the built-in boundary conditions. Real input is accepted for a complex basis."""
        if coeffs.ndim != self.basis.dim + 2 or tuple(coeffs.shape[2:]) != self.basis.coeff_shape:
            raise ValueError(f"NSM expects coefficients (B, {self.in_channels}, {', '.join(map(str, self.basis.coeff_shape))}), "
                             f"got shape {tuple(coeffs.shape)}")
        if coeffs.shape[1] != self.in_channels:
            raise ValueError(f"NSM expects {self.in_channels} input channels, got {coeffs.shape[1]}")
        dtype = self.basis.coeff_dtype(self.lift.weight.dtype)
        coeffs = coeffs.to(dtype)
        if self.position_axes:
            pos = coeffs.new_zeros(coeffs.shape[0], len(self.position_axes), *self.basis.coeff_shape)
            for c, i in enumerate(self.position_axes):  # ξ_i = T_1(ξ_i): coefficient 1 at mode 1 of axis i
                pos[(slice(None), c) + tuple(1 if j == i else 0 for j in range(self.basis.dim))] = 1
            coeffs = torch.cat([coeffs, pos], dim=1)
        v = self._linear(self.lift, coeffs)
        for mix, point in zip(self.mixing, self.pointwise):
            v = self._activate(mix(v) + self._linear(point, v))
        return self.basis.constrain(self._linear(self.project, v))

    # ----------------------------------------------------------------- grid space (PINN backbone)
    def forward_grid(self, values: torch.Tensor) -> torch.Tensor:
        r"""The same parameters as a grid operator (FNO form), ``(B, C_in, *grid) -> (B, C_out, *grid)``.

        .. math:: v_{l+1} = \sigma\big(\mathcal T^{-1}[R_l \odot \mathcal T v_l] + W_l v_l + b_l\big)

        with :math:`W_l` on every grid point (full resolution), lifting and projection pointwise. No
        boundary condition is built in (the grid operator of the PINN baseline enforces none).
        """
        if values.ndim != self.basis.dim + 2 or values.shape[1] != self.in_channels:
            raise ValueError(f"forward_grid expects (B, {self.in_channels}, *grid) values, got {tuple(values.shape)}")
        grid = tuple(values.shape[2:])
        self.basis._check_grid(grid)
        if self.position_axes:
            mesh = self.basis.mesh(grid, values.dtype)
            pos = torch.stack([mesh[i].to(values.device) for i in self.position_axes]).expand(values.shape[0], -1, *grid)
            values = torch.cat([values, pos], dim=1)

        def pointwise(layer: nn.Linear, v: torch.Tensor) -> torch.Tensor:
            return layer(v.movedim(1, -1)).movedim(-1, 1)

        v = pointwise(self.lift, values)
        for mix, point in zip(self.mixing, self.pointwise):
            v = self._sigma(self.basis.to_values(mix(self.basis.to_coeffs(v)), grid) + pointwise(point, v))
        return pointwise(self.project, v)


# --------------------------------------------------------------------------------------- problems
class ResidualProblem(ABC):
    r"""A parametric PDE stated in a spectral basis: inputs, the residual's coefficients, the loss.

    Subclasses define :attr:`basis` (the solution's basis, with the domain), the model bases and modes
    (:meth:`model_kwargs`), how inputs are sampled, how a model's output becomes a solution
    (:meth:`solution`, e.g. adding a lift of inhomogeneous data), and :meth:`residual`.
    The spectral loss is the batch mean of :math:`\lVert R(u)\rVert^2` (:meth:`TensorBasis.norm_sq`,
    summed over channels).
    """

    basis: TensorBasis
    in_channels: int = 1
    out_channels: int = 1

    @abstractmethod
    def model_kwargs(self) -> dict:
        """``bases``, ``n_modes``, ``dim`` and channels an :class:`NSM` for this problem needs."""

    @abstractmethod
    def sample_inputs(self, seed: int, indices: Sequence[int], dtype: torch.dtype = torch.float64) -> torch.Tensor:
        """Input coefficients ``(B, C_in, *coeff_shape)``, sample ``i`` drawn from ``(seed, i)`` alone."""

    @abstractmethod
    def residual(self, u: torch.Tensor, inputs: torch.Tensor) -> torch.Tensor:
        """Coefficients of the residual ``(B, C, *coeff_shape)`` for solution coefficients ``u``."""

    def solution(self, output: torch.Tensor, inputs: torch.Tensor) -> torch.Tensor:
        """Solution coefficients from a model output (identity by default)."""
        return output

    def loss(self, u: torch.Tensor, inputs: torch.Tensor) -> torch.Tensor:
        r"""Spectral loss: :math:`\frac1B \sum_b \sum_c \lVert R(u_b)_c \rVert^2` (a scalar)."""
        return self.basis.norm_sq(self.residual(u, inputs)).sum(1).mean()

    def check_model(self, model: NSM) -> None:
        """Fail early when a model's bases or modes differ from the problem's."""
        expected = self.model_kwargs()
        got = {k: model.init_args[k] for k in expected}
        if got != expected:
            raise ValueError(f"model settings {got} do not match the problem's {expected}")


def _coeffs_per_sample(basis: TensorBasis, values: torch.Tensor) -> torch.Tensor:
    """``basis.to_coeffs`` of each sample alone, stacked: a sample's coefficients do not depend on the
    batch it was drawn in (batched and lone FFTs may round differently)."""
    return torch.cat([basis.to_coeffs(values[i : i + 1]) for i in range(values.shape[0])])


def _mode_mask(basis: TensorBasis, max_mode: int, device=None) -> torch.Tensor:
    """Boolean ``coeff_shape`` mask of modes with every axis' index (|n| for Fourier, degree for Chebyshev) ``<= max_mode``."""
    mask = torch.ones((), dtype=torch.bool)
    for i, ax in enumerate(basis.axes):
        idx = ax.frequencies(i == basis.half_axis).abs() if isinstance(ax, FourierAxis) else torch.arange(ax.n_modes)
        mask = mask.unsqueeze(-1) & (idx <= max_mode)
    return mask.to(device)


@dataclass
class PeriodicPoisson(ResidualProblem):
    r"""Periodic Poisson :math:`-\Delta u = f` on :math:`[0, L)^d`, zero-mean :math:`f` and :math:`u`.

    Sources: zero-mean Gaussian random fields :math:`N(0, \sigma^2(-\Delta + \tau^2)^{-\alpha})`
    (:func:`~pdebench.problems.sampling.gaussian_random_field`, seeded per sample), band-limited to the
    modes with :math:`\max_i |n_i| \le` ``source_modes`` (the truncated field *is* the source).
    Residual coefficients :math:`|k|^2 \hat u_k - \hat f_k`; exact solution
    :math:`\hat u_k = \hat f_k / |k|^2` (:meth:`exact`), :math:`\hat u_0 = 0` (:meth:`solution` removes the
    mean, which the equation leaves free).

    Parameters
    ----------
    dim : int
        1-3 axes.
    n_modes : int
        Kept modes per axis (model and residual).
    length : float
        Period ``L``.
    source_modes : int
        Highest ``|n_i|`` of the source (``< n_modes``).
    sigma, tau, alpha : float
        GRF parameters.
    """

    dim: int = 2
    n_modes: int = 12
    length: float = 2 * math.pi
    source_modes: int = 4
    sigma: float = 10.0
    tau: float = 3.0
    alpha: float = 2.0

    def __post_init__(self) -> None:
        require_choice("dim", self.dim, (1, 2, 3))
        if not 1 <= self.source_modes < self.n_modes:
            raise ValueError(f"source_modes must be in [1, n_modes={self.n_modes}), got {self.source_modes}")
        self.basis = TensorBasis([FourierAxis(self.n_modes, self.length) for _ in range(self.dim)])

    def model_kwargs(self) -> dict:
        return dict(dim=self.dim, bases=("fourier",) * self.dim, n_modes=(self.n_modes,) * self.dim)

    def k2(self, device=None, dtype=torch.float64) -> torch.Tensor:
        """:math:`|k|^2` on the coefficient block, ``coeff_shape``."""
        k2 = torch.zeros((), dtype=dtype)
        for i, ax in enumerate(self.basis.axes):
            k2 = k2.unsqueeze(-1) + ax.wavenumbers(i == self.basis.half_axis, dtype) ** 2
        return k2.to(device)

    def sample_inputs(self, seed: int, indices: Sequence[int], dtype: torch.dtype = torch.float64) -> torch.Tensor:
        grid = (2 * self.n_modes,) * self.dim
        f = gaussian_random_field(seed, indices, grid, (self.length,) * self.dim, sigma=self.sigma, tau=self.tau,
                                  alpha=self.alpha, zero_mean=True)
        coeffs = _coeffs_per_sample(self.basis, f) * _mode_mask(self.basis, self.source_modes)
        return coeffs.unsqueeze(1).to(self.basis.coeff_dtype(dtype))

    def solution(self, output: torch.Tensor, inputs: torch.Tensor) -> torch.Tensor:
        index = (slice(None), slice(None)) + (0,) * self.dim
        out = output.clone()
        out[index] = 0
        return out

    def residual(self, u: torch.Tensor, inputs: torch.Tensor) -> torch.Tensor:
        return POISSON.residual(u, -self.k2(u.device, u.real.dtype) * u, inputs)  # the Laplacian's symbol is -|k|^2

    def exact(self, inputs: torch.Tensor) -> torch.Tensor:
        r"""Exact solution coefficients :math:`\hat f_k / |k|^2` (0 at :math:`k = 0`), same shape as ``inputs``."""
        k2 = self.k2(inputs.device, inputs.real.dtype)
        return torch.where(k2 > 0, inputs / torch.where(k2 > 0, k2, torch.ones_like(k2)), torch.zeros_like(inputs))

    def grid_residual(self, u: torch.Tensor, f: torch.Tensor) -> torch.Tensor:
        r"""PINN residual on a uniform grid ``(B, C, *grid)``: :math:`-\Delta_h u - f` with the second-order
        central difference :math:`\Delta_h u = \sum_i (u_{i+1} - 2u_i + u_{i-1}) / h^2` (periodic, ``torch.roll``)."""
        lap = torch.zeros_like(u)
        for i, n in enumerate(u.shape[2:]):
            h = self.length / n
            d = 2 + i
            lap = lap + (torch.roll(u, 1, d) - 2 * u + torch.roll(u, -1, d)) / h**2
        return POISSON.residual(u, lap, f)

    def grid_loss(self, u: torch.Tensor, f: torch.Tensor) -> torch.Tensor:
        r"""PINN loss: the trapezoidal (= rectangle, periodic) quadrature of :math:`\int |{-\Delta_h u - f}|^2 dx`,
        batch mean. ``u`` has its grid mean removed first (the equation leaves the mean free)."""
        u = u - u.mean(dim=tuple(range(2, u.ndim)), keepdim=True)
        volume = self.length**self.dim
        return (self.grid_residual(u, f) ** 2).mean(dim=tuple(range(2, u.ndim))).sum(1).mean() * volume


@dataclass
class DirichletPoisson(ResidualProblem):
    r"""Poisson :math:`-\Delta u = f` on :math:`[-1, 1]^d` with :math:`u = 0` on the boundary.

    The solution lives in the Dirichlet basis :math:`\phi_j = T_{j+2} - T_j` per axis (BC exact);
    residual coefficients :math:`-\Delta u - f` in :math:`T_{j_1} \cdots T_{j_d}`, :math:`j_i < m`; the loss is
    their Chebyshev-weighted Parseval sum (:meth:`TensorBasis.norm_sq`). Sources have random Chebyshev
    coefficients :math:`a_j \sim N(0, 1) \prod_i (1 + j_i)^{-\text{decay}}` for :math:`j_i \le`
    ``source_modes`` (seeded per sample).
    """

    dim: int = 2
    n_modes: int = 12
    source_modes: int = 4
    decay: float = 1.0

    def __post_init__(self) -> None:
        require_choice("dim", self.dim, (1, 2, 3))
        if not 0 <= self.source_modes < self.n_modes:
            raise ValueError(f"source_modes must be in [0, n_modes={self.n_modes}), got {self.source_modes}")
        self.basis = TensorBasis([ChebyshevAxis(self.n_modes, (-1.0, 1.0), "dirichlet") for _ in range(self.dim)])

    def model_kwargs(self) -> dict:
        return dict(dim=self.dim, bases=("dirichlet",) * self.dim, n_modes=(self.n_modes,) * self.dim)

    def sample_inputs(self, seed: int, indices: Sequence[int], dtype: torch.dtype = torch.float64) -> torch.Tensor:
        shape = self.basis.coeff_shape
        decay = torch.ones((), dtype=torch.float64)
        for m in shape:
            decay = decay.unsqueeze(-1) * (1.0 + torch.arange(m, dtype=torch.float64)) ** (-self.decay)
        mask = _mode_mask(self.basis, self.source_modes)
        draws = [torch.randn(shape, generator=sample_generator(seed, int(i)), dtype=torch.float64) for i in indices]
        return (torch.stack(draws) * decay * mask).unsqueeze(1).to(dtype)

    def residual(self, u: torch.Tensor, inputs: torch.Tensor) -> torch.Tensor:
        return POISSON.residual(u, self.basis.laplacian(u), inputs)

    def least_squares_solution(self, inputs: torch.Tensor) -> torch.Tensor:
        r"""The minimiser of the spectral loss over the Dirichlet space (a reference solution), by a dense
        least-squares solve in float64: ``(B, 1, *coeff_shape)``."""
        shape = self.basis.coeff_shape
        n = math.prod(shape)
        eye = torch.eye(n, dtype=torch.float64).reshape(n, 1, *shape)
        columns = self.basis.constrain(eye)  # every raw unit vector mapped into the BC space
        operator = (-self.basis.laplacian(columns)).reshape(n, n).T  # (residual entry, raw unknown)
        w = self.basis.parseval_weights().reshape(n).sqrt()
        rhs = inputs.to(torch.float64).reshape(-1, n)
        raw = torch.linalg.lstsq(w[:, None] * operator, (w * rhs).T, driver="gelsd").solution.T
        return self.basis.constrain(raw.reshape(-1, 1, *shape))


@dataclass
class ReactionDiffusion(ResidualProblem):
    r"""Fisher reaction–diffusion :math:`u_t = \nu u_{xx} + \rho u(1-u)` on :math:`[0, T] \times [0, L)`,
    periodic in ``x``, :math:`u(0, x) = u_0(x)` given — the paper's reaction–diffusion problem (Fisher
    reaction, periodic space, Chebyshev in time); the parameters here are small CPU settings.

    Space-time basis: Chebyshev in ``t`` (axis 0, ``n_modes_t``), Fourier in ``x`` (axis 1, ``n_modes_x``).
    The initial condition is built in: the model's output lies in :math:`\phi_j = T_{j+1} + T_j` (zero at
    ``t = 0``) and :meth:`solution` adds :math:`u_0(x)` (constant in ``t``). Inputs are the coefficients of
    :math:`u_0` as a function of ``(t, x)``: only the :math:`T_0` row is non-zero. :math:`u_0` is a
    band-limited :math:`\mathrm{sigmoid}(\text{gain}\cdot z)`, ``z`` a GRF, truncated to
    ``|n| <= source_modes``.

    Residual coefficients :math:`\partial_t u - \nu \partial_x^2 u - \rho\, \mathcal T[u(1-u)]`, the
    product evaluated on the 3/2-rule grid (:meth:`TensorBasis.product_grid`), so the kept coefficients
    of the quadratic term are exact.
    """

    nu: float = 0.01
    rho: float = 1.0
    t_final: float = 1.0
    length: float = 1.0
    n_modes_t: int = 12
    n_modes_x: int = 16
    source_modes: int = 4
    gain: float = 2.0
    tau: float = 5.0
    alpha: float = 2.0

    def __post_init__(self) -> None:
        if self.nu <= 0 or self.rho < 0 or self.t_final <= 0 or self.length <= 0:
            raise ValueError(f"need nu > 0, rho >= 0, t_final > 0, length > 0; got nu={self.nu}, rho={self.rho}, "
                             f"t_final={self.t_final}, length={self.length}")
        if not 1 <= self.source_modes < self.n_modes_x:
            raise ValueError(f"source_modes must be in [1, n_modes_x={self.n_modes_x}), got {self.source_modes}")
        self.basis = TensorBasis([ChebyshevAxis(self.n_modes_t, (0.0, self.t_final), "initial"),
                                  FourierAxis(self.n_modes_x, self.length)])
        self.space = TensorBasis([FourierAxis(self.n_modes_x, self.length)])

    def model_kwargs(self) -> dict:
        return dict(dim=2, bases=("initial", "fourier"), n_modes=(self.n_modes_t, self.n_modes_x))

    def initial_coeffs(self, seed: int, indices: Sequence[int]) -> torch.Tensor:
        """Fourier coefficients of :math:`u_0`, ``(B, n_modes_x)`` complex128."""
        def one(index: int) -> torch.Tensor:  # one sample alone: reductions round differently in batches
            z = gaussian_random_field(seed, [index], (4 * self.n_modes_x,), (self.length,), sigma=1.0, tau=self.tau,
                                      alpha=self.alpha, zero_mean=True)
            u0 = torch.sigmoid(self.gain * z / z.std().clamp_min(1e-12))
            return self.space.to_coeffs(u0)

        return torch.cat([one(int(i)) for i in indices]) * _mode_mask(self.space, self.source_modes)

    def lift(self, u0_hat: torch.Tensor) -> torch.Tensor:
        """``(B, n_modes_x)`` coefficients of :math:`u_0` → ``(B, 1, n_modes_t, n_modes_x)`` (constant in ``t``)."""
        out = u0_hat.new_zeros(u0_hat.shape[0], 1, *self.basis.coeff_shape)
        out[:, 0, 0] = u0_hat
        return out

    def sample_inputs(self, seed: int, indices: Sequence[int], dtype: torch.dtype = torch.float64) -> torch.Tensor:
        return self.lift(self.initial_coeffs(seed, indices)).to(self.basis.coeff_dtype(dtype))

    def solution(self, output: torch.Tensor, inputs: torch.Tensor) -> torch.Tensor:
        return output + inputs

    def reaction(self, u: torch.Tensor) -> torch.Tensor:
        r"""Kept coefficients of :math:`u(1-u)`, computed on the 3/2-rule grid."""
        grid = self.basis.product_grid()
        values = self.basis.to_values(u, grid)
        return self.basis.to_coeffs(values * (1 - values))

    def residual(self, u: torch.Tensor, inputs: torch.Tensor) -> torch.Tensor:
        return (self.basis.derivative(u, 0) - self.nu * self.basis.derivative(u, 1, 2)
                - self.rho * self.reaction(u))
