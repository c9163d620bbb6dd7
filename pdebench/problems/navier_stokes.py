"""Two-dimensional incompressible Navier–Stokes in vorticity form on periodic boxes."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch

from pdebench.problems.base import PROBLEMS, SpectralProblem, require, require_nonnegative, require_positive
from pdebench.problems.sampling import GaussianFieldInput
from pdebench.equations import spectral as equations


@dataclass(frozen=True, kw_only=True)
class Periodic2D(SpectralProblem):
    """A problem on the periodic square ``[0, length)²`` with ``resolution²`` points."""

    resolution: int = 64
    length: float = 1.0
    field_name = "vorticity"

    def validate(self) -> None:
        super().validate()
        require(
            self.resolution >= 8 and self.resolution % 2 == 0,
            f"resolution must be an even number >= 8, got {self.resolution}",
        )
        require_positive("length", self.length)

    @property
    def spatial_shape(self) -> tuple[int, ...]:
        return (self.resolution, self.resolution)

    @property
    def lengths(self) -> tuple[float, ...]:
        return (self.length, self.length)


@PROBLEMS.register("ns2d")
@dataclass(frozen=True, kw_only=True)
class NavierStokes2D(GaussianFieldInput, Periodic2D):
    """NS vorticity ω_t + u·∇ω = νΔω + f on (0,1)², f = 0.1(sin 2π(x+y) + cos 2π(x+y)) (FNO setting)."""

    nu: float = 1e-3
    t_final: float = 50.0
    n_out: int = 50
    max_dt: float | None = 0.05
    forcing_amplitude: float = 0.1
    sigma: float = 7.0**1.5
    tau: float = 7.0
    alpha: float = 2.5

    def validate(self) -> None:
        super().validate()
        require_positive("nu (viscosity)", self.nu)

    def forcing(self) -> torch.Tensor:
        """``(X, Y)`` vorticity forcing ``A (sin 2π(x+y) + cos 2π(x+y))`` (scaled to the box length)."""
        x, y = self.grid_points()
        arg = 2 * math.pi * (x + y) / self.length
        return self.forcing_amplitude * (torch.sin(arg) + torch.cos(arg))

    def equation(self) -> equations.SpectralEquation:
        forcing = self.forcing() if self.forcing_amplitude != 0 else None
        return equations.NavierStokesVorticity2D(self.nu, forcing)

    def params(self) -> dict[str, Any]:
        return {"Nu": self.nu, "forcing_amplitude": self.forcing_amplitude}


@PROBLEMS.register("ns2d_kolmogorov")
@dataclass(frozen=True, kw_only=True)
class KolmogorovFlow2D(GaussianFieldInput, Periodic2D):
    """Kolmogorov flow on (0,2π)²: velocity forcing χ sin(k_f y) e_x (vorticity −χ k_f cos(k_f y)), drag 0.1, ν = 1/Re."""

    resolution: int = 128
    length: float = 2 * math.pi
    reynolds: float = 1000.0
    forcing_wavenumber: int = 4
    forcing_amplitude: float = 1.0
    drag: float = 0.1
    t_final: float = 10.0
    n_out: int = 50
    max_dt: float | None = 0.01
    sigma: float = 7.0**1.5
    tau: float = 7.0
    alpha: float = 2.5

    def validate(self) -> None:
        super().validate()
        require_positive("reynolds", self.reynolds)
        require_nonnegative("drag", self.drag)
        require(self.forcing_wavenumber >= 1, f"forcing_wavenumber must be >= 1, got {self.forcing_wavenumber}")

    @property
    def nu(self) -> float:
        """Viscosity ``1 / Re`` (unit velocity and length scales)."""
        return 1.0 / self.reynolds

    def forcing(self) -> torch.Tensor:
        """``(X, Y)`` vorticity forcing, the curl of ``χ sin(k_f y) e_x``: ``−χ k_f cos(k_f y)``."""
        _, y = self.grid_points()
        k = self.forcing_wavenumber * 2 * math.pi / self.length
        return -self.forcing_amplitude * k * torch.cos(k * y)

    def equation(self) -> equations.SpectralEquation:
        return equations.NavierStokesVorticity2D(self.nu, self.forcing(), self.drag)

    def params(self) -> dict[str, Any]:
        return {"Re": self.reynolds, "Nu": self.nu, "drag": self.drag}
