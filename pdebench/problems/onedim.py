"""One-dimensional periodic problems: advection, heat, Burgers, KdV, Kuramoto–Sivashinsky,
reaction–diffusion (Fisher–KPP and Allen–Cahn)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import torch

from pdebench.problems.base import PROBLEMS, SpectralProblem, require, require_nonnegative, require_positive
from pdebench.problems.sampling import GaussianFieldInput, random_fourier_sum, sample_generator
from pdebench.equations import spectral as equations


@dataclass(frozen=True, kw_only=True)
class Periodic1D(SpectralProblem):
    """A problem on the periodic interval ``[0, length)`` with ``nx`` points."""

    nx: int = 1024
    length: float = 1.0

    def validate(self) -> None:
        super().validate()
        require(self.nx >= 8 and self.nx % 2 == 0, f"nx must be an even number >= 8, got {self.nx}")
        require_positive("length", self.length)

    @property
    def spatial_shape(self) -> tuple[int, ...]:
        return (self.nx,)

    @property
    def lengths(self) -> tuple[float, ...]:
        return (self.length,)


@dataclass(frozen=True, kw_only=True)
class RandomSinesInput:
    """Initial conditions ``Σ_j A_j sin(2π n_j x / L + φ_j)`` (PDEBench 1-D style)."""

    n_terms: int = 2
    max_mode: int = 4
    amplitude: float = 1.0

    def sample_initial_conditions(self, seed: int, indices: Sequence[int]) -> torch.Tensor:
        return random_fourier_sum(
            seed, indices, self.spatial_shape, self.lengths,
            n_terms=self.n_terms, max_mode=self.max_mode, amplitude=self.amplitude,
        )


@PROBLEMS.register("advection1d")
@dataclass(frozen=True, kw_only=True)
class Advection1D(RandomSinesInput, Periodic1D):
    """Linear advection u_t + β u_x = 0 on (0, 1) periodic; exact solution u0(x − βt)."""

    beta: float = 1.0
    t_final: float = 2.0
    n_out: int = 200

    def validate(self) -> None:
        super().validate()
        require(math.isfinite(self.beta), f"beta must be finite, got {self.beta}")

    def equation(self) -> equations.SpectralEquation:
        return equations.Advection([self.beta])

    def params(self) -> dict[str, Any]:
        return {"beta": self.beta}


@PROBLEMS.register("heat1d")
@dataclass(frozen=True, kw_only=True)
class Heat1D(RandomSinesInput, Periodic1D):
    """Heat equation u_t = ν u_xx on (0, 1) periodic; each Fourier mode decays as exp(−ν k² t)."""

    nu: float = 0.01
    nx: int = 256
    t_final: float = 1.0
    n_out: int = 100

    def validate(self) -> None:
        super().validate()
        require_positive("nu (viscosity)", self.nu)

    def equation(self) -> equations.SpectralEquation:
        return equations.Heat(self.nu)

    def params(self) -> dict[str, Any]:
        return {"Nu": self.nu}


@PROBLEMS.register("burgers1d")
@dataclass(frozen=True, kw_only=True)
class Burgers1D(GaussianFieldInput, Periodic1D):
    """Viscous Burgers u_t + (u²/2)_x = ν u_xx on (0, 1) periodic, u0 ~ N(0, 625(−Δ+25I)^−2) (FNO setting)."""

    nu: float = 0.1
    t_final: float = 1.0
    n_out: int = 100
    max_dt: float | None = 0.01

    def validate(self) -> None:
        super().validate()
        require_positive("nu (viscosity)", self.nu)

    def equation(self) -> equations.SpectralEquation:
        return equations.Burgers(self.nu)

    def params(self) -> dict[str, Any]:
        return {"Nu": self.nu}


def soliton(x: torch.Tensor, speed: float | torch.Tensor, position: float | torch.Tensor, length: float, images: int = 2) -> torch.Tensor:
    r"""KdV soliton :math:`\tfrac c2 \operatorname{sech}^2(\tfrac{\sqrt c}{2}(x - a))` made periodic
    by summing its images at :math:`a + mL`, :math:`|m| \le` ``images``."""
    out = torch.zeros_like(x)
    for m in range(-images, images + 1):
        out = out + speed / 2 / torch.cosh(torch.sqrt(torch.as_tensor(speed, dtype=torch.float64)) / 2 * (x - position - m * length)) ** 2
    return out


@PROBLEMS.register("kdv1d")
@dataclass(frozen=True, kw_only=True)
class KdV1D(Periodic1D):
    """Korteweg–de Vries u_t + 6 u u_x + u_xxx = 0 on (0, L) periodic; ICs are sums of solitons."""

    nx: int = 256
    length: float = 50.0
    t_final: float = 10.0
    n_out: int = 100
    n_solitons: int = 2
    max_dt: float | None = 0.01
    min_speed: float = 0.5
    max_speed: float = 2.0

    def validate(self) -> None:
        super().validate()
        require(self.n_solitons >= 1, f"n_solitons must be >= 1, got {self.n_solitons}")
        require(all(map(math.isfinite, (self.min_speed, self.max_speed))) and 0 < self.min_speed <= self.max_speed,
                f"need finite 0 < min_speed <= max_speed, got {self.min_speed}, {self.max_speed}")

    def equation(self) -> equations.SpectralEquation:
        return equations.KdV()

    def sample_initial_conditions(self, seed: int, indices: Sequence[int]) -> torch.Tensor:
        x = self.grid_points()[0]

        def draw(index: int) -> torch.Tensor:
            g = sample_generator(seed, index)
            u = torch.zeros_like(x)
            for _ in range(self.n_solitons):
                speed = self.min_speed + (self.max_speed - self.min_speed) * torch.rand((), generator=g, dtype=torch.float64)
                position = self.length * torch.rand((), generator=g, dtype=torch.float64)
                u = u + soliton(x, speed, position, self.length)
            return u

        return torch.stack([draw(int(i)) for i in indices])

    def params(self) -> dict[str, Any]:
        return {"n_solitons": self.n_solitons}


@PROBLEMS.register("ks1d")
@dataclass(frozen=True, kw_only=True)
class KuramotoSivashinsky1D(RandomSinesInput, Periodic1D):
    """Kuramoto–Sivashinsky u_t + u u_x + u_xx + u_xxxx = 0 on (0, 64π) periodic; warm-up discarded."""

    nx: int = 256
    length: float = 64 * math.pi
    t_final: float = 100.0
    n_out: int = 100
    t_warmup: float = 50.0
    max_dt: float | None = 0.1
    max_mode: int = 8

    def validate(self) -> None:
        super().validate()
        require_nonnegative("t_warmup", self.t_warmup)

    @property
    def warmup_time(self) -> float:
        """Time integrated before the first stored frame (transient discarded)."""
        return self.t_warmup

    def equation(self) -> equations.SpectralEquation:
        return equations.KuramotoSivashinsky()

    def params(self) -> dict[str, Any]:
        return {"length": self.length}


@PROBLEMS.register("reaction_diffusion1d")
@dataclass(frozen=True, kw_only=True)
class ReactionDiffusion1D(GaussianFieldInput, Periodic1D):
    """Reaction–diffusion u_t = ν u_xx + ρ R(u): Fisher R = u(1−u) or Allen–Cahn R = u − u³, periodic."""

    kind: Literal["fisher", "allen_cahn"] = "fisher"
    nu: float = 0.5
    rho: float = 1.0
    t_final: float = 1.0
    n_out: int = 100
    max_dt: float | None = 0.01

    def validate(self) -> None:
        super().validate()
        require(self.kind in ("fisher", "allen_cahn"), f"kind must be 'fisher' or 'allen_cahn', got {self.kind!r}")
        require_positive("nu (diffusivity)", self.nu)
        require_nonnegative("rho (reaction rate)", self.rho)

    def equation(self) -> equations.SpectralEquation:
        cls = equations.Fisher if self.kind == "fisher" else equations.AllenCahn
        return cls(self.nu, self.rho)

    def sample_initial_conditions(self, seed: int, indices: Sequence[int]) -> torch.Tensor:
        z = super().sample_initial_conditions(seed, indices)
        # Fisher states are densities in (0, 1); Allen–Cahn phases lie in (−1, 1).
        return torch.sigmoid(4 * z) if self.kind == "fisher" else torch.tanh(2 * z)

    def params(self) -> dict[str, Any]:
        return {"Nu": self.nu, "Rho": self.rho, "kind": self.kind}
