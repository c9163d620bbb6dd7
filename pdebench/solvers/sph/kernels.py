r"""SPH smoothing kernels: Wendland C2 and the cubic B-spline, normalised in 1, 2 and 3 dimensions.

Every kernel is radial, ``W(r, h) = sigma_d / h^d * f(q)`` with ``q = r / h``, has compact support
``r < support * h`` and integrates to one over its support:

.. math::  \int_{\mathbb{R}^d} W(|x|, h) \, dx = 1 .

Pressure and viscous forces need the gradient :math:`\nabla_i W_{ij} = W'(r_{ij}) \, x_{ij} / r_{ij}`
with :math:`x_{ij} = x_i - x_j`. The kernels return the scalar factor ``W'(r)/r``
(:meth:`Kernel.grad_w_over_r`), which is finite at ``r = 0`` for both kernels, so

.. math::  \nabla_i W_{ij} = \text{grad\_w\_over\_r}(r_{ij}, h) \, (x_i - x_j)

is evaluated without dividing by a distance. All functions are vectorised over ``r`` (any shape);
``h`` is a float or a tensor broadcastable against ``r``. Units: ``r`` and ``h`` are lengths,
``W`` is 1/length^d, ``grad_w_over_r`` is 1/length^(d+2).
"""

from __future__ import annotations

from abc import ABC, abstractmethod

import math
from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import Tensor

__all__ = ["KERNELS", "CubicSpline", "Kernel", "WendlandC2", "make_kernel"]


@dataclass(frozen=True)
class Kernel(ABC):
    """Base class of the radial SPH kernels.

    Subclasses set the class attribute :attr:`support` and implement :meth:`w` and
    :meth:`grad_w_over_r`. Both take distances ``r`` (a tensor of any shape, ``|x_i - x_j| >= 0``)
    and the smoothing length ``h`` (a float or a tensor broadcastable to ``r``) and return a tensor
    of the shape of ``r`` (broadcast with ``h``) that is zero for ``r >= support * h``.

    Attributes
    ----------
    dim : int
        Space dimension ``d`` (1, 2 or 3); selects the normalisation ``sigma_d``.
    support : float
        Support factor (class attribute): ``W(r, h) = 0`` for ``r >= support * h``.
    name : str
        Name under which :func:`make_kernel` builds the kernel (class attribute).
    """

    dim: int
    support: ClassVar[float] = 2.0
    name: ClassVar[str] = ""

    def __post_init__(self) -> None:
        if self.dim not in (1, 2, 3):
            raise ValueError(f"{type(self).__name__}: dim must be 1, 2 or 3, got {self.dim!r}")

    def radius(self, h: float) -> float:
        """Support radius ``support * h`` (length), e.g. the neighbour-search radius.

        Parameters
        ----------
        h : float
            Smoothing length.

        Returns
        -------
        float
            ``support * h``.
        """
        return self.support * float(h)

    @abstractmethod
    def w(self, r: Tensor, h: float | Tensor) -> Tensor:
        """Kernel value ``W(r, h)`` in 1/length^d (arguments and shapes: see :class:`Kernel`)."""

    @abstractmethod
    def grad_w_over_r(self, r: Tensor, h: float | Tensor) -> Tensor:
        """Radial derivative over distance, ``W'(r, h) / r`` in 1/length^(d+2), finite at ``r = 0``:
        ``grad W_ij = grad_w_over_r(r_ij) * (x_i - x_j)`` (arguments and shapes: see :class:`Kernel`)."""


def _as_tensor(r: Tensor, h: float | Tensor) -> tuple[Tensor, Tensor]:
    r = torch.as_tensor(r)
    if not r.is_floating_point():
        r = r.to(torch.float64)
    return r, torch.as_tensor(h, dtype=r.dtype, device=r.device)


@dataclass(frozen=True)
class WendlandC2(Kernel):
    r"""Wendland C2 kernel with support ``2h`` (Wendland 1995; Dehnen & Aly 2012).

    With ``s = r / (2h)`` in ``[0, 1]``:

    - ``d = 1``: :math:`W = \frac{5}{8h} (1 - s)^3 (1 + 3s)`,
    - ``d = 2``: :math:`W = \frac{7}{4\pi h^2} (1 - s)^4 (1 + 4s)`,
    - ``d = 3``: :math:`W = \frac{21}{16\pi h^3} (1 - s)^4 (1 + 4s)`,

    and ``W'(r)/r`` is :math:`-\frac{3\sigma}{h^3}(1-s)^2` (1-D),
    :math:`-\frac{5\sigma}{h^{d+2}}(1-s)^3` (2-D, 3-D), with ``sigma`` the constant above.
    """

    support: ClassVar[float] = 2.0
    name: ClassVar[str] = "wendland_c2"

    @property
    def sigma(self) -> float:
        """Normalisation constant ``sigma_d`` (``W = sigma_d / h^d * f``)."""
        return {1: 5.0 / 8.0, 2: 7.0 / (4.0 * math.pi), 3: 21.0 / (16.0 * math.pi)}[self.dim]

    def w(self, r: Tensor, h: float | Tensor) -> Tensor:
        r, h = _as_tensor(r, h)
        one_minus_s = torch.clamp(1.0 - r / (2.0 * h), min=0.0)
        if self.dim == 1:
            f = one_minus_s**3 * (1.0 + 3.0 * (1.0 - one_minus_s))
        else:
            f = one_minus_s**4 * (1.0 + 4.0 * (1.0 - one_minus_s))
        return self.sigma / h**self.dim * f

    def grad_w_over_r(self, r: Tensor, h: float | Tensor) -> Tensor:
        r, h = _as_tensor(r, h)
        one_minus_s = torch.clamp(1.0 - r / (2.0 * h), min=0.0)
        if self.dim == 1:
            g = -3.0 * one_minus_s**2
        else:
            g = -5.0 * one_minus_s**3
        return self.sigma / h ** (self.dim + 2) * g


@dataclass(frozen=True)
class CubicSpline(Kernel):
    r"""Cubic B-spline kernel (Monaghan & Lattanzio 1985) with support ``2h``.

    With ``q = r / h``:

    .. math::  f(q) = \begin{cases} 1 - \tfrac32 q^2 + \tfrac34 q^3 & 0 \le q < 1 \\
                                    \tfrac14 (2 - q)^3 & 1 \le q < 2 \\ 0 & q \ge 2 \end{cases}

    ``W = sigma_d / h^d f(q)`` with ``sigma_1 = 2/3``, ``sigma_2 = 10/(7 pi)``, ``sigma_3 = 1/pi``, and
    ``W'(r)/r = sigma_d / h^(d+2) f'(q)/q`` with ``f'(q)/q = -3 + 9q/4`` (``q < 1``),
    ``-3(2 - q)^2/(4q)`` (``1 <= q < 2``).
    """

    support: ClassVar[float] = 2.0
    name: ClassVar[str] = "cubic_spline"

    @property
    def sigma(self) -> float:
        """Normalisation constant ``sigma_d`` (``W = sigma_d / h^d * f``)."""
        return {1: 2.0 / 3.0, 2: 10.0 / (7.0 * math.pi), 3: 1.0 / math.pi}[self.dim]

    def w(self, r: Tensor, h: float | Tensor) -> Tensor:
        r, h = _as_tensor(r, h)
        q = r / h
        two_minus_q = torch.clamp(2.0 - q, min=0.0)
        inner = 1.0 - 1.5 * q**2 + 0.75 * q**3
        f = torch.where(q < 1.0, inner, 0.25 * two_minus_q**3)
        return self.sigma / h**self.dim * f

    def grad_w_over_r(self, r: Tensor, h: float | Tensor) -> Tensor:
        r, h = _as_tensor(r, h)
        q = r / h
        two_minus_q = torch.clamp(2.0 - q, min=0.0)
        outer = -0.75 * two_minus_q**2 / torch.clamp(q, min=1.0)  # q >= 1 where it is used
        g = torch.where(q < 1.0, -3.0 + 2.25 * q, outer)
        return self.sigma / h ** (self.dim + 2) * g


KERNELS: dict[str, type[Kernel]] = {WendlandC2.name: WendlandC2, CubicSpline.name: CubicSpline}


def make_kernel(name: str, dim: int) -> Kernel:
    """Build a kernel by name.

    Parameters
    ----------
    name : str
        ``"wendland_c2"`` or ``"cubic_spline"``.
    dim : int
        Space dimension (1, 2 or 3).

    Returns
    -------
    Kernel
        The kernel, normalised in ``dim`` dimensions.

    Raises
    ------
    ValueError
        Unknown name (the message lists the valid ones) or ``dim`` not in 1, 2, 3.
    """
    try:
        cls = KERNELS[name]
    except (KeyError, TypeError):
        raise ValueError(f"unknown SPH kernel {name!r}; valid kernels: {', '.join(sorted(KERNELS))}") from None
    return cls(dim)
