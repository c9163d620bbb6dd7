"""Weakly compressible SPH (WCSPH): particle state, right-hand sides and a symplectic stepper.

Equations (Monaghan 1994, 2005; Violeau 2012), for fluid particle :math:`i` with neighbours
:math:`j` (fluid or wall), :math:`x_{ij} = x_i - x_j`, :math:`v_{ij} = v_i - v_j`,
:math:`\\nabla_i W_{ij} = F(r_{ij})\\,x_{ij}` with :math:`F = W'(r)/r` (``grad_w_over_r``):

* continuity, with Molteni & Colagrossi (2009) δ-SPH density diffusion
  (the linear form that Antuono et al. 2010 analyse, without their renormalised gradient):

  .. math:: \\frac{d\\rho_i}{dt} = \\sum_j m_j\\, v_{ij}\\cdot\\nabla_i W_{ij}
            + \\delta h c_0 \\sum_{j\\,\\text{fluid}} 2(\\rho_j - \\rho_i)
              \\frac{x_{ji}\\cdot\\nabla_i W_{ij}}{r_{ij}^2}\\,\\frac{m_j}{\\rho_j};

* momentum, pressure gradient in the symmetric (momentum-conserving) form, Monaghan's
  artificial viscosity :math:`\\Pi_{ij}`, laminar viscosity and gravity:

  .. math:: \\frac{dv_i}{dt} = -\\sum_j m_j\\left(\\frac{p_i}{\\rho_i^2} + \\frac{p_j}{\\rho_j^2}
            + \\Pi_{ij}\\right)\\nabla_i W_{ij} + a^{\\nu}_i + g,

  :math:`\\Pi_{ij} = -\\alpha h c_0\\, \\mu_{ij}/\\bar\\rho_{ij}` when
  :math:`v_{ij}\\cdot x_{ij} < 0` (else 0), :math:`\\mu_{ij} = v_{ij}\\cdot x_{ij}/(r^2 + 0.01h^2)`;
  laminar viscosity in Morris et al. (1997) form
  :math:`a^\\nu_i = \\sum_j m_j \\nu\\frac{\\rho_i+\\rho_j}{\\rho_i\\rho_j}
  \\frac{x_{ij}\\cdot\\nabla_i W_{ij}}{r^2+0.01h^2} v_{ij}` or Monaghan (2005) form
  :math:`a^\\nu_i = \\sum_j m_j \\frac{4(d+2)\\nu}{\\rho_i+\\rho_j}
  \\frac{v_{ij}\\cdot x_{ij}}{r^2+0.01h^2}\\nabla_i W_{ij}`;
* pressure from the equation of state (:mod:`pdebench.problems.particle_scenes`, Tait by default).

Boundary condition: fixed wall (dummy) particles with the generalised wall condition of
Adami, Hu & Adams (2012). Each wall particle :math:`w` takes, from its fluid neighbours
:math:`f`, the pressure

.. math:: p_w = \\frac{\\sum_f p_f W_{wf} + (g - a_w)\\cdot\\sum_f \\rho_f\\, x_{wf} W_{wf}}
                {\\sum_f W_{wf}}

(:math:`a_w = 0`: walls are fixed), the density :math:`\\rho_w = \\rho(p_w)` from the inverse
equation of state, and, for the viscous terms only, the no-slip ghost velocity
:math:`v_w = -\\sum_f v_f W_{wf} / \\sum_f W_{wf}`. Continuity uses the wall's true velocity
(zero). Wall particles with no fluid neighbour get :math:`p_w = 0`, :math:`\\rho_w = \\rho_0`.
Walls need a thickness of at least the kernel support (e.g. 3 layers for Wendland, h = 1.3 dx).

Time integration: kick-drift-kick velocity Verlet (leapfrog); the density is a position-like
variable and drifts with the half-step velocity (trapezoid over the old and new positions):

.. math:: v^{n+1/2} = v^n + \\tfrac{\\Delta t}{2} a^n,\\;
          x^{n+1} = x^n + \\Delta t\\, v^{n+1/2},\\;
          \\rho^{n+1} = \\rho^n + \\tfrac{\\Delta t}{2}\\left[\\dot\\rho(x^n, v^{n+1/2})
          + \\dot\\rho(x^{n+1}, v^{n+1/2})\\right],\\;
          v^{n+1} = v^{n+1/2} + \\tfrac{\\Delta t}{2} a^{n+1},

with :math:`a^{n+1}` evaluated at :math:`(x^{n+1}, v^{n+1/2}, \\rho^{n+1})` and reused as the next
step's :math:`a^n` (one neighbour search per step in :meth:`WCSPH.run`). Kicking the density with
rates evaluated at :math:`\\rho^{n+1/2}` instead makes the acoustic pair :math:`(v, \\rho)` advance
by forward Euler, which is unconditionally unstable (a hydrostatic column blows up in ~0.1 s).
With gravity, the δ-SPH term diffuses only :math:`\\rho_j - \\rho_i - \\rho^H_{ji}`, where
:math:`\\rho^H_{ji}` is the hydrostatic density difference for :math:`p_j - p_i = \\rho_0 g\\cdot x_{ji}`
(Antuono et al. 2012; Fourtakas et al. 2019), so that it does not drive a column towards uniform density.

Time-step limits (Monaghan 1992; Morris et al. 1997):
:math:`\\Delta t \\le \\min(0.25\\,h/(c_0 + |v|_{max}),\\ 0.125\\,h^2/\\nu,\\ 0.25\\sqrt{h/|a|_{max}})`.

Everything is vectorised over neighbour pairs with ``index_add_``; no Python loop over particles.

References
----------
Monaghan, J. J. (1994). Simulating free surface flows with SPH. J. Comput. Phys. 110, 399-406.
Monaghan, J. J. (2005). Smoothed particle hydrodynamics. Rep. Prog. Phys. 68, 1703-1759.
Morris, J. P., Fox, P. J., Zhu, Y. (1997). Modeling low Reynolds number incompressible flows
using SPH. J. Comput. Phys. 136, 214-226.
Molteni, D., Colagrossi, A. (2009). A simple procedure to improve the pressure evaluation in
hydrodynamic context using the SPH. Comput. Phys. Commun. 180, 861-872.
Antuono, M., Colagrossi, A., Marrone, S., Molteni, D. (2010). Free-surface flows solved by means
of SPH schemes with numerical diffusive terms. Comput. Phys. Commun. 181, 532-549.
Adami, S., Hu, X. Y., Adams, N. A. (2012). A generalized wall boundary condition for smoothed
particle hydrodynamics. J. Comput. Phys. 231, 7057-7075.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, fields, replace

import torch

from pdebench.core.graphs import neighbour_pairs
from pdebench.core.particles import ParticleState
from pdebench.problems.particle_scenes import EquationOfState, SPHSettings, make_eos
from pdebench.solvers.base import BlowUpError, StabilityError
from pdebench.solvers.sph.kernels import Kernel, make_kernel

__all__ = ["Rates", "WCSPH"]

log = logging.getLogger(__name__)

MIN_SUPPORT_OVER_DX = 2.0
"""Smallest kernel support radius, in particle spacings, that :meth:`WCSPH.check_state` accepts
(Wendland C2 with ``h = dx`` reaches 2 spacings, about 12 neighbours in 2D; ``h = 1.3 dx`` is usual)."""


NeighbourSearch = Callable[..., tuple[torch.Tensor, torch.Tensor, torch.Tensor]]
"""``(positions (N, d), radius, lower, upper, periodic) -> (i (P,), j (P,), x_i - x_j (P, d))``."""


@dataclass
class Rates:
    """Time derivatives at one state.

    Attributes
    ----------
    acceleration
        ``(N, d)`` :math:`dv/dt` (m/s²); zero on walls.
    density_rate
        ``(N,)`` :math:`d\\rho/dt` (kg/m³/s); zero on walls.
    pressure
        ``(N,)`` pressure (Pa), walls by the Adami extrapolation.
    density
        ``(N,)`` density used (kg/m³): the state's for fluid, :math:`\\rho(p_w)` on walls.
    """

    acceleration: torch.Tensor
    density_rate: torch.Tensor
    pressure: torch.Tensor
    density: torch.Tensor
    pairs: dict[str, torch.Tensor] | None = field(default=None, repr=False)
    """Neighbour pairs and kernel data the rates were computed with (internal; reused by the stepper)."""


@dataclass
class WCSPH:
    """Weakly compressible SPH stepper (see the module docstring for the equations).

    Parameters
    ----------
    kernel
        A kernel object (``support``, ``w``, ``grad_w_over_r``) or a name for
        ``pdebench.solvers.sph.kernels.make_kernel`` (``"wendland_c2"``, ``"cubic_spline"``).
    h
        Smoothing length (m), > 0; interaction radius ``kernel.support * h``.
    c0
        Numerical speed of sound (m/s), > 0; about ten times the largest flow speed.
    rho0
        Reference density (kg/m³), > 0.
    lower, upper
        ``(d,)`` box corners (m); the neighbour search domain, the period on periodic axes.
    periodic
        ``(d,)`` flags of periodic axes (default none).
    gamma
        Tait exponent (default 7).
    eos
        ``"tait"`` (default) or ``"linear"``.
    nu
        Kinematic (laminar) viscosity (m²/s), >= 0.
    viscosity
        Laminar viscosity operator: ``"morris"`` (default) or ``"monaghan"``.
    alpha
        Monaghan artificial viscosity coefficient (>= 0; 0.01-0.1 typical).
    delta
        δ-SPH density diffusion coefficient (>= 0; 0.1 typical), fluid-fluid pairs only.
    gravity
        ``(d,)`` body acceleration (m/s²), default zero.
    background_pressure
        Constant :math:`p_b \ge 0` (Pa) added to the equation of state, :math:`p = p(\rho) + p_b`.
        It does not change the continuum momentum balance (only :math:`\nabla p` acts) but keeps
        pressures positive, suppressing the tensile instability (clumping) in flows with suction,
        such as the Taylor-Green vortex (Morris et al. 1997). Leave 0 with a free surface.
    shifting
        Particle-shifting coefficient :math:`A \\ge 0` per step (see :meth:`_shift`; 0: off, about
        0.01-0.1 for internal flows such as the Taylor-Green vortex; leave 0 with a free surface).
    neighbour_search
        Pair finder with the signature of ``pdebench.core.graphs.neighbour_pairs``
        (default that function).

    Examples
    --------
    >>> solver = WCSPH(kernel="wendland_c2", h=0.013, c0=10.0, rho0=1.0,
    ...                lower=(0.0, 0.0), upper=(1.0, 1.0), periodic=(True, True), nu=0.01)
    >>> # state = solver.run(state, t_end=0.1)   # doctest: +SKIP
    """

    kernel: Kernel | str
    h: float
    c0: float
    rho0: float
    lower: Sequence[float]
    upper: Sequence[float]
    periodic: Sequence[bool] | None = None
    gamma: float = 7.0
    eos: str = "tait"
    nu: float = 0.0
    viscosity: str = "morris"
    alpha: float = 0.0
    delta: float = 0.0
    gravity: Sequence[float] | None = None
    background_pressure: float = 0.0
    shifting: float = 0.0
    neighbour_search: NeighbourSearch | None = None
    _eos: EquationOfState = field(init=False, repr=False)

    def __post_init__(self) -> None:
        for name in ("h", "c0", "rho0", "gamma"):
            value = getattr(self, name)
            if not (isinstance(value, (int, float)) and math.isfinite(value) and value > 0):
                raise ValueError(f"{name} must be a finite number > 0, got {value!r}")
        for name in ("nu", "alpha", "delta", "background_pressure", "shifting"):
            value = getattr(self, name)
            if not (isinstance(value, (int, float)) and math.isfinite(value) and value >= 0):
                raise ValueError(f"{name} must be a finite number >= 0, got {value!r}")
        self.lower = tuple(float(v) for v in self.lower)
        self.upper = tuple(float(v) for v in self.upper)
        d = len(self.lower)
        if d not in (1, 2, 3) or len(self.upper) != d:
            raise ValueError(f"lower and upper must both have length 1, 2 or 3; got {self.lower}, {self.upper}")
        if any(u <= lo for lo, u in zip(self.lower, self.upper)):
            raise ValueError(f"upper {self.upper} must exceed lower {self.lower} on every axis")
        self.periodic = tuple(bool(p) for p in (self.periodic or (False,) * d))
        if len(self.periodic) != d:
            raise ValueError(f"periodic must have length {d}, got {self.periodic}")
        self.gravity = tuple(float(g) for g in (self.gravity or (0.0,) * d))
        if len(self.gravity) != d:
            raise ValueError(f"gravity must have length {d}, got {self.gravity}")
        if self.viscosity not in ("morris", "monaghan"):
            raise ValueError(f"viscosity must be 'morris' or 'monaghan', got {self.viscosity!r}")
        if isinstance(self.kernel, str):
            self.kernel = make_kernel(self.kernel, d)
        if self.neighbour_search is None:
            self.neighbour_search = neighbour_pairs
        self._eos = make_eos(self.eos, self.rho0, self.c0, self.gamma)

    @classmethod
    def from_settings(cls, settings: SPHSettings, neighbour_search: NeighbourSearch | None = None) -> WCSPH:
        """The stepper of a scene's physics: every field of ``settings`` passed as the parameter of the
        same name (the kernel built from its registered name).

        Parameters
        ----------
        settings
            A :class:`~pdebench.problems.particle_scenes.SPHSettings` (lengths in m, speeds in m/s,
            densities in kg/m³, viscosity in m²/s, accelerations in m/s², pressure in Pa).
        neighbour_search
            Pair finder (default :func:`pdebench.core.graphs.neighbour_pairs`).
        """
        return cls(**{f.name: getattr(settings, f.name) for f in fields(settings)}, neighbour_search=neighbour_search)

    # ------------------------------------------------------------------ helpers
    @property
    def dim(self) -> int:
        return len(self.lower)

    @property
    def radius(self) -> float:
        """Interaction radius ``kernel.support * h`` (m)."""
        return float(self.kernel.support) * self.h

    @property
    def equation_of_state(self) -> EquationOfState:
        return self._eos

    def pressure(self, rho: torch.Tensor) -> torch.Tensor:
        """Pressure ``(N,)`` (Pa) of densities ``(N,)``: equation of state + background pressure."""
        return self._eos.pressure(rho) + self.background_pressure

    def density_from_pressure(self, p: torch.Tensor) -> torch.Tensor:
        """Density ``(N,)`` (kg/m³) of pressures ``(N,)``: the inverse equation of state."""
        return self._eos.density(p - self.background_pressure)

    def wrap(self, positions: torch.Tensor) -> torch.Tensor:
        """Map ``(N, d)`` positions back into the box on periodic axes."""
        if not any(self.periodic):
            return positions
        out = positions.clone()
        for a, per in enumerate(self.periodic):
            if per:
                lo, length = self.lower[a], self.upper[a] - self.lower[a]
                out[:, a] = lo + torch.remainder(out[:, a] - lo, length)
        return out

    def check_state(self, state: ParticleState) -> None:
        """Raise ``ValueError`` if ``state`` cannot be stepped by this solver.

        Checks, each with a message naming the bad value and what was expected: the dimension
        matches the box; every particle lies inside ``[lower, upper]`` on non-periodic axes; the
        kernel support covers at least :data:`MIN_SUPPORT_OVER_DX` particle spacings, the spacing
        estimated from the fluid's volume per particle :math:`dx = (m/\\rho)^{1/d}` (median), so
        that a particle has enough neighbours for the kernel sums to approximate integrals.
        """
        n, d = state.positions.shape
        if d != self.dim:
            raise ValueError(f"particles are {d}-dimensional but the solver's box {self.lower}..{self.upper} is {self.dim}-dimensional")
        lo = torch.tensor(self.lower, dtype=state.positions.dtype, device=state.positions.device)
        hi = torch.tensor(self.upper, dtype=state.positions.dtype, device=state.positions.device)
        for axis, per in enumerate(self.periodic):
            if per:
                continue
            x = state.positions[:, axis]
            bad = (x < lo[axis]) | (x > hi[axis]) | ~torch.isfinite(x)
            if bool(bad.any()):
                k = int(torch.nonzero(bad)[0])
                raise ValueError(
                    f"particle {k} at {state.positions[k].tolist()} lies outside the domain on axis {axis}: "
                    f"expected {self.lower[axis]} <= x <= {self.upper[axis]} ({int(bad.sum())} particles outside)"
                )
        fluid = state.fluid
        if bool(fluid.any()):
            volume = (state.mass[fluid] / state.density[fluid]).median()
            dx = float(volume) ** (1.0 / d)
            ratio = self.radius / dx
            if ratio < MIN_SUPPORT_OVER_DX:
                raise ValueError(
                    f"kernel support {self.radius:.4g} (= {float(self.kernel.support)} h, h = {self.h:.4g}) covers only "
                    f"{ratio:.2f} particle spacings (dx = (m/rho)^(1/{d}) = {dx:.4g}); need at least "
                    f"{MIN_SUPPORT_OVER_DX}, i.e. h >= {MIN_SUPPORT_OVER_DX / float(self.kernel.support) * dx:.4g}"
                )

    # ------------------------------------------------------------------ right-hand side
    def _pairs(self, x: torch.Tensor, fluid: torch.Tensor) -> dict[str, torch.Tensor]:
        """Neighbour pairs at positions ``x`` with distances, kernel values and gradients.

        Only pairs whose first particle is fluid are kept (only fluid particles receive rates), plus,
        under keys prefixed ``wall_``, the (wall, fluid) pairs of the wall update; ``fluid_j`` marks
        the kept pairs whose second particle is fluid too (the δ-SPH pairs). Filtering once here
        saves re-indexing every pair array in each of the three right-hand-side evaluations per step.
        """
        i, j, xij = self.neighbour_search(x, self.radius, self.lower, self.upper, periodic=self.periodic)
        out: dict[str, torch.Tensor] = {}
        wall_pairs = ~fluid[i] & fluid[j]
        if bool(wall_pairs.any()):
            iw, jw, xw = i[wall_pairs], j[wall_pairs], xij[wall_pairs]
            out.update(wall_i=iw, wall_j=jw, wall_xij=xw, wall_w=self.kernel.w(torch.sqrt((xw * xw).sum(-1)), self.h))
        keep = fluid[i]
        i, j, xij = i[keep], j[keep], xij[keep]
        r2 = (xij * xij).sum(-1)
        r = torch.sqrt(r2)
        f = self.kernel.grad_w_over_r(r, self.h)  # grad_i W_ij = f * xij
        out.update(i=i, j=j, xij=xij, r2=r2, f=f, grad=f.unsqueeze(-1) * xij, fluid_j=fluid[j])
        return out

    def _density_rate(
        self, pairs: dict[str, torch.Tensor], v: torch.Tensor, rho: torch.Tensor, m: torch.Tensor
    ) -> torch.Tensor:
        """Continuity (true wall velocities) plus δ-SPH diffusion (fluid-fluid pairs), zero on walls."""
        i, j, xij, r2, grad = pairs["i"], pairs["j"], pairs["xij"], pairs["r2"], pairs["grad"]
        n = v.shape[0]
        mj = m[j]
        vij = v[i] - v[j]
        drho = torch.zeros(n, dtype=v.dtype, device=v.device).index_add_(0, i, mj * (vij * grad).sum(-1))
        if self.delta > 0:
            rho_ji = rho[j] - rho[i]
            if any(gc != 0.0 for gc in self.gravity):
                # Antuono et al. (2012) / Fourtakas et al. (2019): diffuse only the non-hydrostatic
                # part, rho_ji - rho_ji^H with p_j - p_i = rho0 g . x_ji (x_ji = -xij) hydrostatic.
                g = torch.tensor(self.gravity, dtype=v.dtype, device=v.device)
                p_h = -self.rho0 * (xij @ g)
                rho_ji = rho_ji - (self._eos.density(p_h) - self.rho0)
            eta2 = 0.01 * self.h * self.h
            psi = 2.0 * rho_ji * (-(xij * grad).sum(-1)) / (r2 + eta2)
            psi = torch.where(pairs["fluid_j"], psi, torch.zeros_like(psi))
            drho.index_add_(0, i, self.delta * self.h * self.c0 * psi * mj / rho[j])
        return drho

    def rates(self, state: ParticleState, pairs: dict[str, torch.Tensor] | None = None,
              with_density_rate: bool = True) -> Rates:
        """Accelerations and density rates at ``state`` (walls updated by Adami et al. 2012).

        ``pairs`` (from :meth:`_pairs` at ``state.positions``) skips the neighbour search;
        ``with_density_rate=False`` leaves ``density_rate`` zero (the stepper computes its own).

        Returns
        -------
        Rates
            ``acceleration (N, d)``, ``density_rate (N,)``, ``pressure (N,)``, ``density (N,)``.
        """
        x, v, m = state.positions, state.velocities, state.mass
        fluid = state.fluid
        wall = ~fluid
        n, d = x.shape
        h = self.h
        if pairs is None:
            pairs = self._pairs(x, fluid)
        i, j, xij, r2, f, grad = (pairs[k] for k in ("i", "j", "xij", "r2", "f", "grad"))

        rho = state.density.clone()
        p = self.pressure(rho)
        g = torch.tensor(self.gravity, dtype=x.dtype, device=x.device)
        v_visc = v
        if "wall_i" in pairs:
            # Adami et al. (2012): wall iw, fluid neighbour jf; x_wf = x_iw - x_jf.
            iw, jf, ww, xw = pairs["wall_i"], pairs["wall_j"], pairs["wall_w"], pairs["wall_xij"]
            sum_w = torch.zeros(n, dtype=x.dtype, device=x.device).index_add_(0, iw, ww)
            sum_p = torch.zeros_like(sum_w).index_add_(0, iw, p[jf] * ww)
            sum_rx = torch.zeros(n, d, dtype=x.dtype, device=x.device).index_add_(
                0, iw, (rho[jf] * ww).unsqueeze(-1) * xw
            )
            sum_v = torch.zeros_like(sum_rx).index_add_(0, iw, v[jf] * ww.unsqueeze(-1))
            has = wall & (sum_w > 0)
            safe = torch.where(has, sum_w, torch.ones_like(sum_w))
            p_wall = (sum_p + sum_rx @ g) / safe
            p = torch.where(has, p_wall, torch.where(wall, torch.zeros_like(p), p))
            rho = torch.where(wall, self.density_from_pressure(p), rho)
            # No-slip ghost velocity 2 v_wall - v_tilde (v_wall: the wall's own, zero for fixed walls).
            ghost = 2.0 * v - sum_v / safe.unsqueeze(-1)
            v_visc = torch.where(has.unsqueeze(-1), ghost, v)
        elif bool(wall.any()):
            p = torch.where(wall, torch.zeros_like(p), p)
            rho = torch.where(wall, self.density_from_pressure(p), rho)

        # Only fluid particles receive rates (the pairs hold fluid i only).
        mj, rhoi, rhoj = m[j], rho[i], rho[j]
        eta2 = 0.01 * h * h

        drho = self._density_rate(pairs, v, rho, m) if with_density_rate else torch.zeros_like(rho)

        # Momentum: symmetric pressure gradient + artificial viscosity.
        coeff = p[i] / rhoi**2 + p[j] / rhoj**2
        vij_visc = v_visc[i] - v_visc[j]
        vx = (vij_visc * xij).sum(-1)
        if self.alpha > 0:
            mu = h * vx / (r2 + eta2)
            rho_bar = 0.5 * (rhoi + rhoj)
            coeff = coeff + torch.where(vx < 0, -self.alpha * self.c0 * mu / rho_bar, torch.zeros_like(mu))
        acc_pair = -(mj * coeff).unsqueeze(-1) * grad
        if self.nu > 0:
            if self.viscosity == "morris":
                k = mj * self.nu * (rhoi + rhoj) / (rhoi * rhoj) * f * r2 / (r2 + eta2)
                acc_pair = acc_pair + k.unsqueeze(-1) * vij_visc
            else:
                k = mj * 4.0 * (d + 2) * self.nu / (rhoi + rhoj) * vx / (r2 + eta2)
                acc_pair = acc_pair + k.unsqueeze(-1) * grad
        acc = torch.zeros(n, d, dtype=x.dtype, device=x.device).index_add_(0, i, acc_pair)
        acc = torch.where(fluid.unsqueeze(-1), acc + g, torch.zeros_like(acc))
        return Rates(acceleration=acc, density_rate=drho, pressure=p, density=rho, pairs=pairs)

    # ------------------------------------------------------------------ time step
    def stable_dt(self, state: ParticleState, rates: Rates | None = None) -> float:
        """Largest stable time step (s) at ``state``.

        .. math:: \\Delta t = \\min\\left(\\frac{0.25 h}{c_0 + |v|_{max}},\\;
                  \\frac{0.125 h^2}{\\nu},\\; 0.25\\sqrt{\\frac{h}{|a|_{max}}}\\right),

        maxima over fluid particles; a term whose denominator is zero is omitted.
        """
        if rates is None:
            rates = self.rates(state)
        fluid = state.fluid
        vmax = float(state.velocities[fluid].norm(dim=-1).max()) if bool(fluid.any()) else 0.0
        amax = float(rates.acceleration[fluid].norm(dim=-1).max()) if bool(fluid.any()) else 0.0
        limits = [0.25 * self.h / (self.c0 + vmax)]
        if self.nu > 0:
            limits.append(0.125 * self.h * self.h / self.nu)
        if amax > 0:
            limits.append(0.25 * math.sqrt(self.h / amax))
        return min(limits)

    def _check_dt(self, dt: float, limit: float) -> None:
        if not (isinstance(dt, (int, float)) and math.isfinite(dt) and dt > 0):
            raise ValueError(f"dt must be a finite number > 0, got {dt!r}")
        if dt > limit:
            raise StabilityError(
                f"dt = {dt:.6g} s exceeds the stable limit {limit:.6g} s "
                "(min of CFL 0.25 h/(c0+|v|max), viscous 0.125 h^2/nu, force 0.25 sqrt(h/|a|max))"
            )

    def _shift(self, pairs: dict[str, torch.Tensor], state: ParticleState, rho: torch.Tensor) -> torch.Tensor:
        """Particle shifting (Lind et al. 2012; anti-clumping term of Sun et al. 2017), ``(N, d)``.

        .. math:: \\delta x_i = -A h^2 \\sum_j \\left[1 + 0.2\\left(\\frac{W_{ij}}{W(\\Delta x)}\\right)^4\\right]
                  \\frac{m_j}{\\rho_j}\\nabla_i W_{ij},

        :math:`A` = ``shifting``, :math:`\\Delta x = (m_i/\\rho_i)^{1/d}`: particles move down the gradient
        of the particle concentration, which keeps the distribution uniform where a purely Lagrangian
        flow stretches it into lines (the Taylor-Green vortex's stagnation points). The stepper carries
        velocity and density to the shifted position by a first-order Taylor expansion
        (:math:`\\phi_i + \\delta x_i\\cdot\\nabla\\phi_i`). For flows without a free surface (the shift
        pushes surface particles outwards).
        """
        i, j, grad, r2 = pairs["i"], pairs["j"], pairs["grad"], pairs["r2"]
        m = state.mass
        n, d = state.positions.shape
        volume_j = m[j] / rho[j]
        dx = (m[i] / rho[i]) ** (1.0 / d)
        w_ref = self.kernel.w(dx, self.h)
        w = self.kernel.w(torch.sqrt(r2), self.h)
        weight = volume_j * (1.0 + 0.2 * (w / w_ref) ** 4)
        grad_c = torch.zeros(n, d, dtype=grad.dtype, device=grad.device).index_add_(0, i, weight.unsqueeze(-1) * grad)
        return -self.shifting * self.h * self.h * grad_c

    @staticmethod
    def _fluid_gradient(pairs: dict[str, torch.Tensor], values: torch.Tensor, rho: torch.Tensor,
                        m: torch.Tensor) -> torch.Tensor:
        """``(N, d, C)`` gradient of ``(N, C)`` values at fluid particles from fluid neighbours,
        :math:`\\nabla f_i = \\sum_j \\frac{m_j}{\\rho_j} (f_j - f_i) \\otimes \\nabla_i W_{ij}` (zero on walls)."""
        keep = pairs["fluid_j"]
        i, j, grad = pairs["i"][keep], pairs["j"][keep], pairs["grad"][keep]
        diff = (values[j] - values[i]) * (m[j] / rho[j]).unsqueeze(-1)
        out = torch.zeros(values.shape[0], grad.shape[1], values.shape[1], dtype=values.dtype, device=values.device)
        return out.index_add_(0, i, grad.unsqueeze(-1) * diff.unsqueeze(1))

    def _kdk(self, state: ParticleState, dt: float, rates: Rates) -> tuple[ParticleState, Rates]:
        fluid = state.fluid
        fl = fluid.unsqueeze(-1)
        m = state.mass
        rho0 = torch.where(fluid, state.density, rates.density)
        v_half = state.velocities + 0.5 * dt * rates.acceleration
        pairs0 = rates.pairs if rates.pairs is not None else self._pairs(state.positions, fluid)
        drift = dt * v_half
        if self.shifting > 0:
            # Shift, and carry the velocity and density to the shifted position (first-order Taylor).
            shift = self._shift(pairs0, state, rho0)
            drift = drift + shift
            v_half = v_half + torch.einsum("nd,nde->ne", shift, self._fluid_gradient(pairs0, v_half, rho0, m))
            rho0 = rho0 + (shift * self._fluid_gradient(pairs0, rho0.unsqueeze(-1), rho0, m)[..., 0]).sum(-1)
        x_new = torch.where(fl, self.wrap(state.positions + drift), state.positions)
        pairs1 = self._pairs(x_new, fluid)
        # Density drifts like position, with the half-step velocity (trapezoid over x^n, x^{n+1}).
        drho0 = self._density_rate(pairs0, v_half, rho0, m)
        drho1 = self._density_rate(pairs1, v_half, rho0 + dt * drho0, m)
        rho_new = torch.where(fluid, rho0 + 0.5 * dt * (drho0 + drho1), rho0)
        mid = replace(state, positions=x_new, velocities=v_half, density=rho_new, time=state.time + dt)
        new_rates = self.rates(mid, pairs=pairs1, with_density_rate=False)
        v_new = v_half + 0.5 * dt * new_rates.acceleration
        rho_new = torch.where(fluid, rho_new, new_rates.density)
        new = replace(mid, velocities=v_new, density=rho_new)
        return new, new_rates

    def step(self, state: ParticleState, dt: float) -> ParticleState:
        """One kick-drift-kick step of size ``dt`` (s); ``ValueError`` if above :meth:`stable_dt`."""
        self.check_state(state)
        rates = self.rates(state)
        self._check_dt(dt, self.stable_dt(state, rates))
        return self._kdk(state, dt, rates)[0]

    def run(
        self,
        state: ParticleState,
        t_end: float,
        dt: float | None = None,
        callback: Callable[[ParticleState], None] | None = None,
        callback_every: int = 1,
    ) -> ParticleState:
        """Advance ``state`` to ``t_end`` (s).

        Parameters
        ----------
        state
            Initial particles (not modified).
        t_end
            Final time (s); the last step is shortened to land on it.
        dt
            Fixed step (s), checked against :meth:`stable_dt` at the start (``ValueError`` naming
            both numbers if above); ``None`` for an adaptive step, :meth:`stable_dt` each step.
        callback
            Called with the state every ``callback_every`` steps (and at the end).

        Raises
        ------
        ValueError
            A state that :meth:`check_state` rejects (particles outside the box, too small a kernel
            support for the spacing), before any step; a particle leaving the box during the run.
        StabilityError
            ``dt`` above the stable limit (a ``ValueError``).
        BlowUpError
            Non-finite positions, velocities or densities.
        """
        self.check_state(state)
        rates = self.rates(state)
        if dt is not None:
            self._check_dt(dt, self.stable_dt(state, rates))
        steps = 0
        while state.time < t_end * (1 - 1e-12):
            step_dt = dt if dt is not None else self.stable_dt(state, rates)
            step_dt = min(step_dt, t_end - state.time)
            try:
                state, rates = self._kdk(state, step_dt, rates)
            except ValueError as exc:  # a particle left the box (named by the neighbour search)
                raise ValueError(f"wcsph step from t = {state.time:.6g} s: {exc}") from exc
            steps += 1
            if not (
                bool(torch.isfinite(state.velocities).all()) and bool(torch.isfinite(state.density).all())
            ):
                raise BlowUpError([], state.time, "wcsph")
            if callback is not None and steps % callback_every == 0:
                callback(state)
        log.debug("wcsph: %d steps to t=%g", steps, state.time)
        return state
