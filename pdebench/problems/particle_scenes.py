"""Scene geometry and fluid physics of the particle problems (:mod:`.particles`).

Geometry: particles sit at the centres of square (cubic) cells of side ``dx``, so a block
``[x0, x0 + n dx)`` holds exactly ``n`` particles per axis, each of volume ``dx**d`` and mass
``rho dx**d``. A wall is a block of such particles ``layers`` deep behind the fluid boundary; with
layers at least as thick as the kernel support the fluid near the wall sees a full kernel
(Adami et al. 2012).

Physics: :class:`SPHSettings` is the plain record of a scene's fluid and box (what the solver layer's
``WCSPH.from_settings`` turns into a stepper), and the equations of state below are the fluid's
constitutive law. A weakly compressible fluid replaces the incompressibility constraint with a stiff
barotropic equation of state :math:`p = p(\\rho)` whose speed of sound :math:`c_0` is chosen about
ten times the largest flow speed, so that density variations stay near 1 % (Monaghan 1994).
Two laws are provided:

* Tait (Cole 1948; Batchelor 1967; Monaghan 1994)

  .. math:: p = B\\left[\\left(\\frac{\\rho}{\\rho_0}\\right)^{\\gamma} - 1\\right],
            \\qquad B = \\frac{\\rho_0 c_0^2}{\\gamma},\\qquad \\gamma = 7,

  whose sound speed at the reference density is :math:`\\sqrt{dp/d\\rho}|_{\\rho_0} = c_0`.
* linear (the first-order Taylor expansion of Tait about :math:`\\rho_0`)

  .. math:: p = c_0^2 (\\rho - \\rho_0).

Both are exact inverses of their ``density`` methods, which the hydrostatic start of a scene and the
solver's wall boundary condition use to turn a pressure back into a density.

Units are SI (m, s, kg; kg/m³, m/s, Pa).
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass

import torch

__all__ = ["EquationOfState", "LinearEOS", "SPHSettings", "TaitEOS", "lattice", "make_eos", "tait_stiffness",
           "wall_layers_needed"]


def lattice(counts: Sequence[int], dx: float, origin: Sequence[float], dtype: torch.dtype = torch.float64) -> torch.Tensor:
    """Cell-centred particle positions of a block of ``counts`` cells of side ``dx``.

    Parameters
    ----------
    counts
        ``(d,)`` number of particles per axis (each >= 0).
    dx
        Particle spacing (m), > 0.
    origin
        ``(d,)`` lower corner of the block (m); the first particle is at ``origin + dx / 2``.

    Returns
    -------
    torch.Tensor
        ``(prod(counts), d)`` positions, the last axis varying fastest.
    """
    if len(counts) != len(origin):
        raise ValueError(f"counts {list(counts)} and origin {list(origin)} need the same length")
    if not (math.isfinite(dx) and dx > 0):
        raise ValueError(f"dx must be a positive number, got {dx!r}")
    if any(int(c) < 0 for c in counts):
        raise ValueError(f"counts must be >= 0, got {list(counts)}")
    axes = [(torch.arange(int(c), dtype=dtype) + 0.5) * dx + float(o) for c, o in zip(counts, origin)]
    grids = torch.meshgrid(*axes, indexing="ij")
    return torch.stack([g.reshape(-1) for g in grids], dim=-1)


def wall_layers_needed(support_radius: float, dx: float) -> int:
    """Wall layers for a full kernel at the wall: ``ceil(support_radius / dx)``.

    Parameters
    ----------
    support_radius
        Kernel interaction radius (m), e.g. ``2 h`` for the Wendland C2 kernel.
    dx
        Particle spacing (m).
    """
    return max(1, math.ceil(support_radius / dx - 1e-9))


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


@dataclass(frozen=True, kw_only=True)
class SPHSettings:
    """The physics and box of one particle scene: what ``WCSPH.from_settings`` (solver layer) builds a
    stepper from. The fields are the parameters of the same names, with the same defaults and SI
    units, of the stepper :class:`~pdebench.solvers.sph.scheme.WCSPH`, which describes them;
    ``kernel`` is a registered kernel name (``"wendland_c2"``, ``"cubic_spline"``).
    """

    kernel: str
    h: float
    c0: float
    rho0: float
    lower: tuple[float, ...]
    upper: tuple[float, ...]
    periodic: tuple[bool, ...] | None = None
    gamma: float = 7.0
    eos: str = "tait"
    nu: float = 0.0
    viscosity: str = "morris"
    alpha: float = 0.0
    delta: float = 0.0
    gravity: tuple[float, ...] | None = None
    background_pressure: float = 0.0
    shifting: float = 0.0

    def equation_of_state(self) -> EquationOfState:
        """The fluid's equation of state (:func:`make_eos` of ``eos``, ``rho0``, ``c0``, ``gamma``)."""
        return make_eos(self.eos, self.rho0, self.c0, self.gamma)

    def density_from_pressure(self, p: torch.Tensor) -> torch.Tensor:
        """Density ``(N,)`` (kg/m³) of pressures ``(N,)`` (Pa): the inverse equation of state, less the
        background pressure (as the stepper's ``density_from_pressure``)."""
        return self.equation_of_state().density(p - self.background_pressure)
