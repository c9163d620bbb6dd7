r"""Lagrangian fluid scenes for the SPH solver: dam break, Taylor-Green vortex, Poiseuille flow.

A :class:`ParticleProblem` says what to simulate; its :meth:`~ParticleProblem.scene` builds, for sample
``(seed, i)``, the initial particles and the scene's physics, a plain
:class:`~pdebench.problems.particle_scenes.SPHSettings` record (a :class:`ParticleScene`), and the
registered solver ``"sph"`` (:class:`~pdebench.solvers.sph.solver.SPHSolver`) builds the stepper from
that record (``WCSPH.from_settings``) and records frames at ``t_j = j T / n_out``.
Each sample draws its parameters from its own generator
(:func:`~pdebench.problems.sampling.sample_generator`), so any sample can be regenerated alone.

Units are SI (m, s, kg). Particles sit on a cell-centred lattice of spacing ``dx`` (the problem's
``resolution`` particles per reference length); the smoothing length is ``h = 1.3 dx`` with the
Wendland C2 kernel (support ``2h``) and walls are ``ceil(2h/dx) = 3`` layers of fixed particles.

Scenes
------
``dam_break2d``
    A water column of width :math:`a` and height :math:`H = r a` (aspect ratio :math:`r` sampled) at
    rest in hydrostatic balance against the left wall of an open tank of length :math:`L`, released at
    :math:`t = 0` under gravity :math:`g`. Kinematic viscosity :math:`\nu` sampled (log-uniform) plus
    Monaghan's artificial viscosity :math:`\alpha` for stability. Sound speed
    :math:`c_0 = 10\sqrt{2 g H}`. Martin & Moyce (1952) measured the surge front :math:`Z = x/a` against
    :math:`T = t\sqrt{2g/a}` for :math:`r = 2`.
``tgv2d``
    The periodic Taylor-Green vortex on :math:`[0, 1)^2`, :math:`U = 1`,
    :math:`u = \sin(2\pi x)\cos(2\pi y)`, :math:`v = -\cos(2\pi x)\sin(2\pi y)`,
    :math:`p = \tfrac{\rho_0}{4}(\cos 4\pi x + \cos 4\pi y)`, :math:`\nu = 1/Re` (Re sampled); the
    kinetic energy decays as :math:`E_0 e^{-16\pi^2 t / Re}`. Purely Lagrangian particles gather into
    lines along the vortex's strain axes and the energy then collapses (at Re = 100, from
    :math:`t \approx 0.1`); the scene therefore shifts particles (``shifting = 0.2``) and diffuses
    density (``delta = 0.1``): the decay rate over :math:`t \in [0, 0.5]` is then within 4 % of exact
    at 32 particles per side (9 % over :math:`[0, 1]`).
``poiseuille2d``
    Body-force-driven flow between no-slip plates at :math:`y = 0, L` (:math:`L = 1`, periodic in
    :math:`x`), started from rest; force :math:`F = 8 \nu U / L^2` so the steady centreline speed is
    :math:`U = 1`, :math:`\nu = U L / Re` (Re sampled). Transient (Morris et al. 1997):

    .. math:: u(y, t) = \frac{F}{2\nu} y (L - y) - \sum_{n \ge 0} \frac{4 F L^2}{\nu \pi^3 (2n+1)^3}
              \sin\frac{(2n+1)\pi y}{L}\, e^{-(2n+1)^2 \pi^2 \nu t / L^2}.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import ClassVar

import numpy as np
import torch

from pdebench.core.particles import FLUID, WALL, ParticleState
from pdebench.problems.base import PROBLEMS, Catalogued, require
from pdebench.problems.particle_scenes import SPHSettings, lattice, wall_layers_needed
from pdebench.problems.sampling import sample_generator

__all__ = ["DamBreak2D", "ParticleProblem", "ParticleScene", "Poiseuille2D", "TaylorGreen2D",
           "poiseuille_velocity"]

#: Smoothing length over particle spacing.
H_OVER_DX = 1.3
KERNEL = "wendland_c2"


@dataclass
class ParticleScene:
    """One sample's initial particles, its physics and its sampled parameters.

    Attributes
    ----------
    state
        Initial :class:`~pdebench.core.particles.ParticleState` (fluid and wall particles).
    physics
        This sample's fluid and box (:class:`~pdebench.problems.particle_scenes.SPHSettings`; SI units),
        from which ``WCSPH.from_settings`` builds the stepper.
    params
        The sampled parameters by name (e.g. ``{"aspect_ratio": 2.0, "nu": 1e-4}``).
    """

    state: ParticleState
    physics: SPHSettings
    params: dict[str, float] = field(default_factory=dict)


def _uniform(generator: torch.Generator, low: float, high: float) -> float:
    return low + (high - low) * float(torch.rand((), generator=generator, dtype=torch.float64))


def _log_uniform(generator: torch.Generator, low: float, high: float) -> float:
    return math.exp(_uniform(generator, math.log(low), math.log(high)))


def _range(name: str, low: float, high: float, *, positive: bool = True) -> None:
    finite = all(isinstance(v, (int, float)) and math.isfinite(v) for v in (low, high))
    require(finite and (low > 0 or not positive) and low <= high,
            f"{name} range must be finite with {'0 < ' if positive else ''}{name}_min <= {name}_max, got [{low}, {high}]")


@dataclass(frozen=True, kw_only=True)
class ParticleProblem(Catalogued, ABC):
    """A particle scene sampled per ``(seed, i)`` and recorded at ``n_out + 1`` frames.

    Parameters
    ----------
    t_final
        Horizon (s).
    n_out
        Output intervals: frames at ``t_j = j t_final / n_out``, the initial one included.
    resolution
        Particles per reference length (see the subclass), >= 8.
    """

    t_final: float
    n_out: int
    resolution: int

    #: Name of the solver in :data:`pdebench.solvers.SOLVERS`.
    solver: ClassVar[str] = "sph"
    #: Spatial dimension.
    dim: ClassVar[int] = 2

    def __post_init__(self) -> None:
        require(isinstance(self.t_final, (int, float)) and math.isfinite(self.t_final) and self.t_final > 0,
                f"t_final must be a finite positive number of seconds, got {self.t_final!r}")
        require(isinstance(self.n_out, int) and self.n_out >= 1, f"n_out must be an integer >= 1, got {self.n_out!r}")
        require(isinstance(self.resolution, int) and self.resolution >= 8,
                f"resolution must be an integer >= 8 particles per reference length, got {self.resolution!r}")
        self.validate()

    @abstractmethod
    def scene(self, seed: int, index: int, dtype: torch.dtype = torch.float64) -> ParticleScene:
        """The initial particles and physics of sample ``(seed, index)``."""

    def sample_initial_conditions(self, seed: int, indices: Sequence[int]) -> list[ParticleScene]:
        """The scenes of samples ``(seed, i)`` (the generation pipeline calls every problem's inputs this)."""
        return [self.scene(seed, int(i)) for i in indices]


def _state(x_fluid: torch.Tensor, x_wall: torch.Tensor, v_fluid: torch.Tensor, rho_fluid: torch.Tensor,
           rho0: float, dx: float) -> ParticleState:
    """Fluid then wall particles; masses ``rho0 dx^d`` (the reference-density lattice volume)."""
    d = x_fluid.shape[1]
    n_f, n_w = len(x_fluid), len(x_wall)
    dtype = x_fluid.dtype
    return ParticleState(
        positions=torch.cat([x_fluid, x_wall]),
        velocities=torch.cat([v_fluid, torch.zeros(n_w, d, dtype=dtype)]),
        density=torch.cat([rho_fluid, torch.full((n_w,), rho0, dtype=dtype)]),
        mass=torch.full((n_f + n_w,), rho0 * dx**d, dtype=dtype),
        particle_type=torch.cat([torch.full((n_f,), FLUID, dtype=torch.long), torch.full((n_w,), WALL, dtype=torch.long)]),
    )


@PROBLEMS.register("dam_break2d", record="particles", description="SPH dam break: a water column (aspect ratio and "
                   "viscosity sampled) collapses in an open tank (Martin & Moyce 1952)")
@dataclass(frozen=True, kw_only=True)
class DamBreak2D(ParticleProblem):
    """Collapse of a water column (see the module docstring).

    Parameters
    ----------
    t_final
        Horizon (s); default 0.7 s, :math:`T = t\\sqrt{2g/a} \\approx 3.1` for ``a = 1``.
    n_out
        Output intervals (default 35, a frame every 0.02 s).
    resolution
        Particles across the column width ``a`` (default 20).
    column_width
        :math:`a` (m).
    aspect_min, aspect_max
        Range of the sampled height-to-width ratio :math:`H / a` (uniform).
    nu_min, nu_max
        Range of the sampled kinematic viscosity (m²/s, log-uniform).
    tank_length
        :math:`L / a`, >= 2 (the front meets the far wall at :math:`T \\approx 1.2 (L/a) - 1.6` for ``r = 2``).
    alpha
        Artificial viscosity coefficient.
    gravity
        :math:`g` (m/s²).
    """

    t_final: float = 0.7
    n_out: int = 35
    resolution: int = 20
    column_width: float = 1.0
    aspect_min: float = 1.0
    aspect_max: float = 2.0
    nu_min: float = 1e-5
    nu_max: float = 1e-3
    tank_length: float = 5.0
    alpha: float = 0.02
    gravity: float = 9.81
    rho0: float = 1000.0

    def validate(self) -> None:
        for name in ("column_width", "gravity", "rho0"):
            value = getattr(self, name)
            require(isinstance(value, (int, float)) and math.isfinite(value) and value > 0,
                    f"{name} must be a finite positive number, got {value!r}")
        _range("aspect", self.aspect_min, self.aspect_max)
        _range("nu", self.nu_min, self.nu_max)
        require(isinstance(self.tank_length, (int, float)) and 2.0 <= self.tank_length <= 50.0,
                f"tank_length (L / a) must lie in [2, 50], got {self.tank_length!r}")
        require(isinstance(self.alpha, (int, float)) and 0.0 <= self.alpha <= 1.0, f"alpha must lie in [0, 1], got {self.alpha!r}")

    def scene(self, seed: int, index: int, dtype: torch.dtype = torch.float64) -> ParticleScene:
        generator = sample_generator(seed, index)
        aspect = _uniform(generator, self.aspect_min, self.aspect_max)
        nu = _log_uniform(generator, self.nu_min, self.nu_max)
        return self.build(aspect, nu, dtype)

    def build(self, aspect_ratio: float, nu: float, dtype: torch.dtype = torch.float64) -> ParticleScene:
        """The scene for a given aspect ratio :math:`H / a` and viscosity (m²/s)."""
        a, g, rho0 = float(self.column_width), float(self.gravity), float(self.rho0)
        dx = a / self.resolution
        h = H_OVER_DX * dx
        layers = wall_layers_needed(2.0 * h, dx)
        ny = max(1, round(aspect_ratio * self.resolution))
        height = ny * dx
        length = round(self.tank_length * self.resolution) * dx
        wall_top = round(1.2 * ny) * dx  # side walls a little above the column
        nx_tank = round(length / dx)
        fluid = lattice((self.resolution, ny), dx, (0.0, 0.0), dtype)
        walls = torch.cat([
            lattice((nx_tank + 2 * layers, layers), dx, (-layers * dx, -layers * dx), dtype),  # floor
            lattice((layers, round(wall_top / dx)), dx, (-layers * dx, 0.0), dtype),  # left
            lattice((layers, round(wall_top / dx)), dx, (length, 0.0), dtype),  # right
        ])
        c0 = 10.0 * math.sqrt(2.0 * g * height)
        physics = SPHSettings(kernel=KERNEL, h=h, c0=c0, rho0=rho0, lower=(-layers * dx, -layers * dx),
                              upper=(length + layers * dx, 3.0 * self.aspect_max * a + layers * dx),
                              gravity=(0.0, -g), nu=nu, alpha=self.alpha, delta=0.1)
        # Hydrostatic start: p = rho0 g (H - y), rho from the inverse equation of state.
        p = rho0 * g * (height - fluid[:, 1])
        state = _state(fluid, walls, torch.zeros_like(fluid), physics.density_from_pressure(p), rho0, dx)
        return ParticleScene(state, physics, {"aspect_ratio": height / a, "nu": nu})


@dataclass(frozen=True, kw_only=True)
class _ReynoldsSampled(ParticleProblem):
    """A flow whose one sampled parameter is its Reynolds number :math:`Re = U L / \\nu`, drawn
    log-uniform in ``[re_min, re_max]``; :meth:`build` makes the scene of a given :math:`Re`.

    Parameters
    ----------
    re_min, re_max
        Range of the sampled Reynolds number.
    c0
        Sound speed (m/s), default 10 (Mach 0.1), >= 5.
    """

    re_min: float
    re_max: float
    c0: float = 10.0
    #: The flow's speed scale, of which ``c0`` should be ten times (named in the message on ``c0``).
    speed_scale: ClassVar[str] = "the flow speed"

    def validate(self) -> None:
        _range("re", self.re_min, self.re_max)
        require(isinstance(self.c0, (int, float)) and math.isfinite(self.c0) and self.c0 >= 5.0,
                f"c0 must be >= 5 (10 x {self.speed_scale} keeps density errors ~1 %), got {self.c0!r}")

    def scene(self, seed: int, index: int, dtype: torch.dtype = torch.float64) -> ParticleScene:
        re = _log_uniform(sample_generator(seed, index), self.re_min, self.re_max)
        return self.build(re, dtype)

    @abstractmethod
    def build(self, reynolds: float, dtype: torch.dtype = torch.float64) -> ParticleScene:
        """The scene at Reynolds number ``reynolds``."""


@PROBLEMS.register("tgv2d", record="particles", description="SPH Taylor-Green vortex on the periodic unit square, "
                   "Reynolds number sampled")
@dataclass(frozen=True, kw_only=True)
class TaylorGreen2D(_ReynoldsSampled):
    """The periodic Taylor-Green vortex (see the module docstring); ``re_min``, ``re_max`` and ``c0``
    as for every Reynolds-sampled flow (``_ReynoldsSampled``).

    Parameters
    ----------
    resolution
        Particles per side of the unit square (default 40).
    """

    t_final: float = 0.5
    n_out: int = 25
    resolution: int = 40
    re_min: float = 50.0
    re_max: float = 200.0
    speed_scale: ClassVar[str] = "the vortex speed"

    def build(self, reynolds: float, dtype: torch.dtype = torch.float64) -> ParticleScene:
        """The scene at Reynolds number ``reynolds`` (:math:`\\nu = 1 / Re`)."""
        n, rho0, k = self.resolution, 1.0, 2.0 * math.pi
        dx = 1.0 / n
        x = lattice((n, n), dx, (0.0, 0.0), dtype)
        v = torch.stack([torch.sin(k * x[:, 0]) * torch.cos(k * x[:, 1]),
                         -torch.cos(k * x[:, 0]) * torch.sin(k * x[:, 1])], -1)
        physics = SPHSettings(kernel=KERNEL, h=H_OVER_DX * dx, c0=float(self.c0), rho0=rho0, lower=(0.0, 0.0),
                              upper=(1.0, 1.0), periodic=(True, True), nu=1.0 / reynolds, viscosity="morris",
                              delta=0.1, shifting=0.2)
        p = rho0 / 4.0 * (torch.cos(2 * k * x[:, 0]) + torch.cos(2 * k * x[:, 1]))
        state = _state(x, x.new_zeros((0, 2)), v, physics.density_from_pressure(p), rho0, dx)
        return ParticleScene(state, physics, {"reynolds": reynolds, "nu": 1.0 / reynolds})


def poiseuille_velocity(y: np.ndarray, t: float, *, nu: float, force: float, width: float = 1.0,
                        terms: int = 200) -> np.ndarray:
    """Streamwise velocity of start-up plane Poiseuille flow (module docstring), at heights ``y`` (m).

    Parameters
    ----------
    y
        Heights in ``[0, width]``, any shape.
    t
        Time since the start from rest (s).
    nu, force, width
        Kinematic viscosity (m²/s), body force per unit mass (m/s²), plate separation (m).
    terms
        Terms of the series (odd modes ``2n + 1``, ``n < terms``).
    """
    y = np.asarray(y, dtype=np.float64)
    out = force / (2.0 * nu) * y * (width - y)
    for n in range(terms):
        m = 2 * n + 1
        out = out - (4.0 * force * width**2 / (nu * math.pi**3 * m**3) * np.sin(m * math.pi * y / width)
                     * math.exp(-(m * math.pi) ** 2 * nu * t / width**2))
    return out


@PROBLEMS.register("poiseuille2d", record="particles", description="SPH start-up Poiseuille flow between no-slip plates, "
                   "Reynolds number sampled (analytic transient)")
@dataclass(frozen=True, kw_only=True)
class Poiseuille2D(_ReynoldsSampled):
    """Start-up plane Poiseuille flow (see the module docstring); ``re_min``, ``re_max`` and ``c0`` as
    for every Reynolds-sampled flow (``_ReynoldsSampled``). The flow reaches its steady profile after
    about :math:`0.5 L^2/\\nu` (the slowest mode decays as :math:`e^{-\\pi^2 \\nu t / L^2}`).

    Parameters
    ----------
    resolution
        Particles across the channel (default 20); the periodic channel is ``0.5`` long.
    """

    t_final: float = 1.0
    n_out: int = 20
    resolution: int = 20
    re_min: float = 2.0
    re_max: float = 20.0
    speed_scale: ClassVar[str] = "the centreline speed"

    def build(self, reynolds: float, dtype: torch.dtype = torch.float64) -> ParticleScene:
        """The scene at Reynolds number ``reynolds`` (:math:`\\nu = 1/Re`, force :math:`8\\nu`)."""
        n, rho0 = self.resolution, 1.0
        dx = 1.0 / n
        h = H_OVER_DX * dx
        layers = wall_layers_needed(2.0 * h, dx)
        nx = max(n // 2, 2 * layers + 2)
        length = nx * dx
        nu = 1.0 / reynolds
        force = 8.0 * nu
        fluid = lattice((nx, n), dx, (0.0, 0.0), dtype)
        walls = torch.cat([lattice((nx, layers), dx, (0.0, -layers * dx), dtype),
                           lattice((nx, layers), dx, (0.0, 1.0), dtype)])
        physics = SPHSettings(kernel=KERNEL, h=h, c0=float(self.c0), rho0=rho0, lower=(0.0, -layers * dx),
                              upper=(length, 1.0 + layers * dx), periodic=(True, False), nu=nu, viscosity="morris",
                              gravity=(force, 0.0))
        state = _state(fluid, walls, torch.zeros_like(fluid), torch.full((len(fluid),), rho0, dtype=dtype), rho0, dx)
        return ParticleScene(state, physics, {"reynolds": reynolds, "nu": nu, "force": force})

