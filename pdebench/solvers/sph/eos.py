"""Equations of state for weakly compressible SPH.

A weakly compressible fluid replaces the incompressibility constraint with a stiff barotropic
equation of state :math:`p = p(\\rho)` whose speed of sound :math:`c_0` is chosen about ten
times the largest flow speed, so that density variations stay near 1 % (Monaghan 1994).

Two laws are provided:

* Tait (Cole 1948; Batchelor 1967; Monaghan 1994)

  .. math:: p = B\\left[\\left(\\frac{\\rho}{\\rho_0}\\right)^{\\gamma} - 1\\right],
            \\qquad B = \\frac{\\rho_0 c_0^2}{\\gamma},\\qquad \\gamma = 7,

  whose sound speed at the reference density is :math:`\\sqrt{dp/d\\rho}|_{\\rho_0} = c_0`.
* linear (the first-order Taylor expansion of Tait about :math:`\\rho_0`)

  .. math:: p = c_0^2 (\\rho - \\rho_0).

Both are exact inverses of their ``density`` methods, which the wall boundary condition uses
to turn an extrapolated wall pressure back into a wall density.

Units are whatever the caller uses consistently (SI: kg/m³, m/s, Pa).
"""

from __future__ import annotations

from abc import ABC, abstractmethod

import math
from dataclasses import dataclass

import torch

__all__ = ["EquationOfState", "LinearEOS", "TaitEOS", "make_eos", "tait_stiffness"]


def tait_stiffness(rho0: float, c0: float, gamma: float = 7.0) -> float:
    """Tait stiffness :math:`B = \\rho_0 c_0^2 / \\gamma` (Pa).

    Parameters
    ----------
    rho0
        Reference density :math:`\\rho_0` (kg/m³), > 0.
    c0
        Reference (numerical) speed of sound :math:`c_0` (m/s), > 0.
    gamma
        Polytropic exponent :math:`\\gamma` (7 for water), > 0.
    """
    _check_positive(rho0=rho0, c0=c0, gamma=gamma)
    return rho0 * c0 * c0 / gamma


def _check_positive(**values: float) -> None:
    for name, value in values.items():
        if not (isinstance(value, (int, float)) and math.isfinite(value) and value > 0):
            raise ValueError(f"{name} must be a finite number > 0, got {value!r}")


@dataclass(frozen=True)
class EquationOfState(ABC):
    """Barotropic law :math:`p(\\rho)` and its inverse :math:`\\rho(p)`.

    Parameters
    ----------
    rho0
        Reference density :math:`\\rho_0` (kg/m³) at which :math:`p = 0`.
    c0
        Speed of sound :math:`c_0 = \\sqrt{dp/d\\rho}` at :math:`\\rho_0` (m/s).
    """

    rho0: float
    c0: float

    def __post_init__(self) -> None:
        _check_positive(rho0=self.rho0, c0=self.c0)

    @abstractmethod
    def pressure(self, rho: torch.Tensor) -> torch.Tensor:
        """Pressure ``(N,)`` (Pa) for densities ``rho`` ``(N,)`` (kg/m³)."""

    @abstractmethod
    def density(self, p: torch.Tensor) -> torch.Tensor:
        """Density ``(N,)`` (kg/m³) for pressures ``p`` ``(N,)`` (Pa); inverse of ``pressure``."""


@dataclass(frozen=True)
class TaitEOS(EquationOfState):
    """Tait law :math:`p = B((\\rho/\\rho_0)^\\gamma - 1)`, :math:`B = \\rho_0 c_0^2/\\gamma`.

    Parameters
    ----------
    rho0, c0
        See :class:`EquationOfState`.
    gamma
        Polytropic exponent :math:`\\gamma` (default 7, water).

    Examples
    --------
    >>> eos = TaitEOS(rho0=1000.0, c0=10.0)
    >>> round(eos.B, 6)
    14285.714286
    """

    gamma: float = 7.0

    def __post_init__(self) -> None:
        super().__post_init__()
        _check_positive(gamma=self.gamma)

    @property
    def B(self) -> float:  # noqa: N802 - the symbol of the literature
        """Stiffness :math:`B = \\rho_0 c_0^2 / \\gamma` (Pa)."""
        return tait_stiffness(self.rho0, self.c0, self.gamma)

    def pressure(self, rho: torch.Tensor) -> torch.Tensor:
        return self.B * (torch.pow(rho / self.rho0, self.gamma) - 1.0)

    def density(self, p: torch.Tensor) -> torch.Tensor:
        # p >= -B for a real root; clamp a tiny margin so tension beyond -B maps to rho -> 0+.
        ratio = torch.clamp(1.0 + p / self.B, min=1e-12)
        return self.rho0 * torch.pow(ratio, 1.0 / self.gamma)


@dataclass(frozen=True)
class LinearEOS(EquationOfState):
    """Linear law :math:`p = c_0^2 (\\rho - \\rho_0)`.

    Examples
    --------
    >>> import torch
    >>> LinearEOS(rho0=1.0, c0=10.0).pressure(torch.tensor([1.01]))
    tensor([1.0000])
    """

    def pressure(self, rho: torch.Tensor) -> torch.Tensor:
        return self.c0 * self.c0 * (rho - self.rho0)

    def density(self, p: torch.Tensor) -> torch.Tensor:
        return self.rho0 + p / (self.c0 * self.c0)


def make_eos(name: str, rho0: float, c0: float, gamma: float = 7.0) -> EquationOfState:
    """Build an equation of state by name: ``"tait"`` or ``"linear"``."""
    if name == "tait":
        return TaitEOS(rho0=rho0, c0=c0, gamma=gamma)
    if name == "linear":
        return LinearEOS(rho0=rho0, c0=c0)
    raise ValueError(f"unknown equation of state {name!r}; expected one of 'tait', 'linear'")
