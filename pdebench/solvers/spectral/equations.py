r"""Semi-linear evolution equations :math:`u_t = L u + N(u, t)` for the pseudo-spectral solver.

Each class only states its diagonal linear symbol :math:`L(k)` and its nonlinear term in Fourier
space (Exponax's split); the time stepping lives once, in :mod:`.etdrk4` and :mod:`.solver`.
The nonlinear term is written :math:`N = D(k) \odot W(u)`: a diagonal multiplier :math:`D`
(``nonlinear_multiplier``, e.g. :math:`-\tfrac12 ik` for Burgers' flux derivative) times the
transform of a pointwise expression (``nonlinear_transform``, e.g. :math:`\widehat{u^2}`), so the
stepper can fold :math:`D` and the dealiasing mask into its coefficients once. Equations also report
the speed and reaction rate that bound the explicit treatment of :math:`N` (the solver turns them
into a step limit).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence

import torch

from pdebench.solvers.spectral.grid import FourierGrid


def _batch_max(u: torch.Tensor, dim: int) -> torch.Tensor:
    """``(B, *space)`` -> ``(B,)`` maximum of ``|u|`` over the ``dim`` spatial axes."""
    return u.abs().flatten(start_dim=u.ndim - dim).amax(-1)


class SpectralEquation(ABC):
    """A semi-linear PDE :math:`u_t = L u + N(u, t)` on a periodic :class:`FourierGrid`."""

    #: Polynomial degree of the nonlinearity (sets the dealiasing rule: 2 -> 2/3 rule).
    nonlinear_order: int = 2

    @abstractmethod
    def linear_symbol(self, grid: FourierGrid) -> torch.Tensor:
        """``L(k)`` on ``grid.spectral_shape`` (complex128)."""

    def nonlinear_transform(self, u_hat: torch.Tensor, grid: FourierGrid, t: float) -> torch.Tensor:
        """``W(u)``: ``(B, *spectral_shape)`` dealiased coefficients -> same; zero unless overridden."""
        return torch.zeros_like(u_hat)

    def nonlinear_multiplier(self, grid: FourierGrid) -> torch.Tensor:
        """``D(k)`` on ``grid.spectral_shape`` (complex128); one unless overridden."""
        return torch.ones(grid.spectral_shape, dtype=torch.complex128, device=grid.device)

    def nonlinear(self, u_hat: torch.Tensor, grid: FourierGrid, t: float) -> torch.Tensor:
        """The full nonlinear term ``N(u) = D ⊙ W(u)`` in Fourier space (for inspection and tests)."""
        return self.nonlinear_multiplier(grid).to(u_hat.dtype) * self.nonlinear_transform(u_hat, grid, t)

    @property
    def is_linear(self) -> bool:
        """Whether ``N`` vanishes identically (then ETDRK4 is exact)."""
        return type(self).nonlinear_transform is SpectralEquation.nonlinear_transform

    def advection_speed(self, u_hat: torch.Tensor, grid: FourierGrid) -> torch.Tensor:
        """``(B,)`` speed ``c`` at which ``N`` transports: mode ``k`` sees the rate ``c |k|``."""
        return torch.zeros(u_hat.shape[0], dtype=torch.float64, device=u_hat.device)

    def reaction_rate(self, u_hat: torch.Tensor, grid: FourierGrid) -> torch.Tensor:
        """``(B,)`` rate ``|∂N/∂u|`` of the local (reaction) part of ``N``."""
        return torch.zeros(u_hat.shape[0], dtype=torch.float64, device=u_hat.device)


def _square(u_hat: torch.Tensor, grid: FourierGrid) -> torch.Tensor:
    """The transform of ``u²``."""
    u = grid.irfft(u_hat)
    return grid.rfft(u * u)


class QuadraticFlux(SpectralEquation):
    r"""Equations whose nonlinear term is the conservative flux derivative :math:`-a\,(u^2)_x`:
    :math:`N = -a\,ik\,\widehat{u^2}`, transport speed :math:`2a\max|u|` (1-D)."""

    #: The flux coefficient ``a``.
    flux_coefficient: float = 0.5

    def nonlinear_transform(self, u_hat: torch.Tensor, grid: FourierGrid, t: float) -> torch.Tensor:
        return _square(u_hat, grid)

    def nonlinear_multiplier(self, grid: FourierGrid) -> torch.Tensor:
        return -self.flux_coefficient * grid.ik(0).to(torch.complex128)

    def advection_speed(self, u_hat: torch.Tensor, grid: FourierGrid) -> torch.Tensor:
        return 2 * self.flux_coefficient * _batch_max(grid.irfft(u_hat), grid.dim).double()


class Advection(SpectralEquation):
    r"""Linear advection :math:`u_t + \beta\cdot\nabla u = 0`: :math:`L = -i\,\beta\cdot k`, :math:`N = 0`."""

    def __init__(self, velocity: Sequence[float]) -> None:
        self.velocity = tuple(float(b) for b in velocity)

    def linear_symbol(self, grid: FourierGrid) -> torch.Tensor:
        return sum(-1j * b * k for b, k in zip(self.velocity, grid.k_derivative))


class Heat(SpectralEquation):
    r"""Heat equation :math:`u_t = \nu \Delta u`: :math:`L = -\nu |k|^2`, :math:`N = 0`."""

    def __init__(self, nu: float) -> None:
        self.nu = float(nu)

    def linear_symbol(self, grid: FourierGrid) -> torch.Tensor:
        return (-self.nu * grid.k_squared).to(torch.complex128)


class Burgers(QuadraticFlux):
    r"""Viscous Burgers :math:`u_t + (u^2/2)_x = \nu u_{xx}`: :math:`L = -\nu k^2`,
    :math:`N = -\tfrac12 ik\,\widehat{u^2}`."""

    def __init__(self, nu: float) -> None:
        self.nu = float(nu)

    def linear_symbol(self, grid: FourierGrid) -> torch.Tensor:
        return (-self.nu * grid.k_squared).to(torch.complex128)



class KdV(QuadraticFlux):
    r"""Korteweg–de Vries :math:`u_t + 6uu_x + u_{xxx} = 0`: :math:`L = i k^3` (complex, dispersive),
    :math:`N = -3ik\,\widehat{u^2}`."""

    flux_coefficient = 3.0

    def linear_symbol(self, grid: FourierGrid) -> torch.Tensor:
        k = grid.k_derivative[0]
        return (1j * k**3).to(torch.complex128)



class KuramotoSivashinsky(QuadraticFlux):
    r"""Kuramoto–Sivashinsky :math:`u_t + uu_x + u_{xx} + u_{xxxx} = 0`: :math:`L = k^2 - k^4`,
    :math:`N = -\tfrac12 ik\,\widehat{u^2}`."""

    def linear_symbol(self, grid: FourierGrid) -> torch.Tensor:
        return (grid.k_squared - grid.k_squared**2).to(torch.complex128)



class Fisher(SpectralEquation):
    r"""Fisher–KPP :math:`u_t = \nu\Delta u + \rho u(1-u)`: :math:`L = -\nu|k|^2 + \rho`,
    :math:`N = -\rho\,\widehat{u^2}`."""

    def __init__(self, nu: float, rho: float) -> None:
        self.nu, self.rho = float(nu), float(rho)

    def linear_symbol(self, grid: FourierGrid) -> torch.Tensor:
        return (-self.nu * grid.k_squared + self.rho).to(torch.complex128)

    def nonlinear_transform(self, u_hat: torch.Tensor, grid: FourierGrid, t: float) -> torch.Tensor:
        return _square(u_hat, grid)

    def nonlinear_multiplier(self, grid: FourierGrid) -> torch.Tensor:
        return torch.full(grid.spectral_shape, -self.rho, dtype=torch.complex128, device=grid.device)

    def reaction_rate(self, u_hat: torch.Tensor, grid: FourierGrid) -> torch.Tensor:
        return 2 * self.rho * _batch_max(grid.irfft(u_hat), grid.dim).double()


class AllenCahn(SpectralEquation):
    r"""Allen–Cahn :math:`u_t = \nu\Delta u + \rho(u - u^3)`: :math:`L = -\nu|k|^2 + \rho`,
    :math:`N = -\rho\,\widehat{u^3}` (cubic: dealiased with the 1/2 rule)."""

    nonlinear_order = 3

    def __init__(self, nu: float, rho: float) -> None:
        self.nu, self.rho = float(nu), float(rho)

    def linear_symbol(self, grid: FourierGrid) -> torch.Tensor:
        return (-self.nu * grid.k_squared + self.rho).to(torch.complex128)

    def nonlinear_transform(self, u_hat: torch.Tensor, grid: FourierGrid, t: float) -> torch.Tensor:
        u = grid.irfft(u_hat)
        return grid.rfft(u * u * u)

    def nonlinear_multiplier(self, grid: FourierGrid) -> torch.Tensor:
        return torch.full(grid.spectral_shape, -self.rho, dtype=torch.complex128, device=grid.device)

    def reaction_rate(self, u_hat: torch.Tensor, grid: FourierGrid) -> torch.Tensor:
        return 3 * self.rho * _batch_max(grid.irfft(u_hat), grid.dim).double() ** 2


class NavierStokesVorticity2D(SpectralEquation):
    r"""2-D incompressible Navier–Stokes in vorticity form on a periodic box,

    .. math:: \omega_t + \mathbf u\cdot\nabla\omega = \nu\Delta\omega - \mu\,\omega + f,\qquad
              \mathbf u = (\partial_y\psi, -\partial_x\psi),\quad -\Delta\psi = \omega,

    :math:`L = -\nu|k|^2 - \mu`, :math:`N = -\widehat{\mathbf u\cdot\nabla\omega} + \hat f`.

    Parameters
    ----------
    nu
        Kinematic viscosity.
    forcing
        Time-independent vorticity forcing ``f`` on the grid, ``(X, Y)``, or ``None``.
    drag
        Linear (Ekman) drag ``μ``.
    """

    def __init__(self, nu: float, forcing: torch.Tensor | None = None, drag: float = 0.0) -> None:
        self.nu, self.drag = float(nu), float(drag)
        self.forcing = forcing
        self._forcing_hat: torch.Tensor | None = None

    def linear_symbol(self, grid: FourierGrid) -> torch.Tensor:
        return (-self.nu * grid.k_squared - self.drag).to(torch.complex128)

    def velocity_hat(self, w_hat: torch.Tensor, grid: FourierGrid) -> tuple[torch.Tensor, torch.Tensor]:
        """Fourier coefficients of ``(u, v) = (ψ_y, -ψ_x)`` with ``ψ̂ = ω̂ / |k|²`` (mean of ψ zero)."""
        k2 = grid.k_squared
        inverse_laplacian = torch.where(k2 > 0, 1.0 / torch.where(k2 > 0, k2, torch.ones_like(k2)), torch.zeros_like(k2))
        psi_hat = w_hat * inverse_laplacian.to(grid.dtype)
        return grid.ik(1) * psi_hat, -grid.ik(0) * psi_hat

    def nonlinear_transform(self, w_hat: torch.Tensor, grid: FourierGrid, t: float) -> torch.Tensor:
        u_hat, v_hat = self.velocity_hat(w_hat, grid)
        stacked = torch.stack([u_hat, v_hat, grid.ik(0) * w_hat, grid.ik(1) * w_hat])
        u, v, wx, wy = grid.irfft(stacked)
        out = -grid.rfft(u * wx + v * wy)
        if self.forcing is not None:
            if self._forcing_hat is None or self._forcing_hat.dtype != out.dtype:
                self._forcing_hat = grid.rfft(self.forcing.to(device=out.device, dtype=grid.dtype))
            out = out + self._forcing_hat
        return out

    def advection_speed(self, w_hat: torch.Tensor, grid: FourierGrid) -> torch.Tensor:
        """``(B,)`` the larger of the current ``max |u|`` and the speed of the laminar response
        ``ω̂ = f̂ / (ν|k|² + μ)`` to the forcing (the flow a forced run grows towards)."""
        u_hat, v_hat = self.velocity_hat(w_hat, grid)
        u, v = grid.irfft(torch.stack([u_hat, v_hat]))
        speed = _batch_max(torch.sqrt(u * u + v * v), 2).double()
        if self.forcing is not None:
            response = grid.rfft(self.forcing.to(device=w_hat.device, dtype=grid.dtype))
            damping = (self.nu * grid.k_squared + self.drag).to(grid.dtype)
            response = torch.where(damping > 0, response / torch.where(damping > 0, damping, 1.0), 0.0)
            uf_hat, vf_hat = self.velocity_hat(response, grid)
            uf, vf = grid.irfft(torch.stack([uf_hat, vf_hat]))
            speed = torch.clamp(speed, min=float(torch.sqrt(uf * uf + vf * vf).max()))
        return speed
