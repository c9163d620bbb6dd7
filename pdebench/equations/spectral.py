r"""Semi-linear evolution equations :math:`u_t = L u + N(u, t)` for the pseudo-spectral solver.

Each class only states its diagonal linear symbol :math:`L(k)` and its nonlinear term in Fourier
space (Exponax's split); the time stepping lives once, in :mod:`pdebench.solvers.spectral.etdrk4` and :mod:`pdebench.solvers.spectral.solver`.
The nonlinear term is written :math:`N = D(k) \odot W(u)`: a diagonal multiplier :math:`D`
(``nonlinear_multiplier``, e.g. :math:`-\tfrac12 ik` for Burgers' flux derivative) times the
transform of a pointwise expression (``nonlinear_transform``, e.g. :math:`\widehat{u^2}`), so the
stepper can fold :math:`D` and the dealiasing mask into its coefficients once. Equations also report
the speed and reaction rate that bound the explicit treatment of :math:`N` (the solver turns them
into a step limit).

An equation may also carry **per-sample** parameters (:class:`MPPDECombined`): its
:attr:`~SpectralEquation.batch_size` is then the number of samples it holds, its linear symbol has a
leading batch axis, ``(B, *spectral_shape)``, and :meth:`~SpectralEquation.select` gives the
equation of a subset of its samples (the solver steps groups of samples with their own equation).
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence

import torch

from pdebench.equations.fourier import FourierGrid


def _batch_max(u: torch.Tensor, dim: int) -> torch.Tensor:
    """``(B, *space)`` -> ``(B,)`` maximum of ``|u|`` over the ``dim`` spatial axes."""
    return u.abs().flatten(start_dim=u.ndim - dim).amax(-1)


class SpectralEquation(ABC):
    """A semi-linear PDE :math:`u_t = L u + N(u, t)` on a periodic :class:`FourierGrid`."""

    #: Polynomial degree of the nonlinearity (sets the dealiasing rule: 2 -> 2/3 rule).
    nonlinear_order: int = 2

    @property
    def batch_size(self) -> int | None:
        """Number of samples whose own parameters the equation holds; ``None`` (the default): one
        equation for any batch."""
        return None

    def select(self, rows: torch.Tensor) -> "SpectralEquation":
        """The equation of samples ``rows`` (``(R,)`` int64 positions in this equation's batch); an
        equation without per-sample parameters returns itself."""
        return self

    @abstractmethod
    def linear_symbol(self, grid: FourierGrid) -> torch.Tensor:
        """``L(k)`` on ``grid.spectral_shape`` (complex128); ``(B, *spectral_shape)`` for an equation
        with per-sample parameters (:attr:`batch_size` ``B``)."""

    def nonlinear_transform(self, u_hat: torch.Tensor, grid: FourierGrid, t: float) -> torch.Tensor:
        """``W(u)``: ``(B, *spectral_shape)`` dealiased coefficients -> same; zero unless overridden."""
        return torch.zeros_like(u_hat)

    def nonlinear_multiplier(self, grid: FourierGrid) -> torch.Tensor:
        """``D(k)`` on ``grid.spectral_shape`` (complex128); one unless overridden."""
        return torch.ones(grid.spectral_shape, dtype=torch.complex128, device=grid.device)

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

    def space_time_residual(self, derivative: Callable[[int, int], torch.Tensor]) -> torch.Tensor:
        r""":math:`u_t + \beta\cdot\nabla u` at the points of a space-time representation whose axes are
        the space axes, then time: ``derivative(axis, order)`` gives :math:`\partial^{order}_{axis} u`
        there (GP-HM's kernel derivatives, for one)."""
        time_axis = len(self.velocity)
        return derivative(time_axis, 1) + sum(b * derivative(a, 1) for a, b in enumerate(self.velocity))


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


Parameter = float | torch.Tensor


def _as_parameter(value: Parameter, name: str) -> Parameter:
    """A Python float, or a ``(B,)`` float64 tensor of per-sample values."""
    if isinstance(value, torch.Tensor):
        if value.ndim != 1:
            raise ValueError(f"{name} must be a number or a (B,) tensor, got shape {tuple(value.shape)}")
        if not bool(torch.isfinite(value).all()):
            raise ValueError(f"{name} must be finite")
        return value.to(torch.float64)
    value = float(value)
    if not math.isfinite(value):
        raise ValueError(f"{name} must be finite, got {value}")
    return value


class SineForcing:
    r"""Per-sample travelling sines :math:`\delta_b(t, x) = \sum_j A_{bj}\sin(\omega_{bj} t + 2\pi\ell_{bj} x / L + \phi_{bj})`.

    Parameters
    ----------
    amplitude, omega, ell, phi
        ``(B, J)`` float64: amplitudes :math:`A`, angular frequencies :math:`\omega`, integer wave
        numbers :math:`\ell \ge 1` and phases :math:`\phi`.
    length
        Period :math:`L`.
    """

    def __init__(self, amplitude: torch.Tensor, omega: torch.Tensor, ell: torch.Tensor, phi: torch.Tensor, length: float) -> None:
        values = [torch.as_tensor(v, dtype=torch.float64) for v in (amplitude, omega, ell, phi)]
        if any(v.ndim != 2 or v.shape != values[0].shape for v in values):
            raise ValueError(f"forcing coefficients must share one (B, J) shape, got {[tuple(v.shape) for v in values]}")
        if not bool((values[2] >= 1).all()) or not bool((values[2] == values[2].round()).all()):
            raise ValueError("forcing wave numbers ell must be integers >= 1")
        self.amplitude, self.omega, self.ell, self.phi = values
        self.length = float(length)
        self._cache: dict[tuple, tuple[torch.Tensor, ...]] = {}
        self._last: tuple[tuple, float, torch.Tensor] | None = None  # ETDRK4 asks twice for t + h/2

    @property
    def batch_size(self) -> int:
        """Number of samples ``B``."""
        return self.amplitude.shape[0]

    def select(self, rows: torch.Tensor) -> "SineForcing":
        """The forcing of samples ``rows``."""
        rows = torch.as_tensor(rows, dtype=torch.long).cpu()
        return SineForcing(self.amplitude[rows], self.omega[rows], self.ell[rows], self.phi[rows], self.length)

    def __call__(self, x: torch.Tensor, t: float) -> torch.Tensor:
        """``(B, X)`` values at the points ``x`` (``(X,)``) and time ``t``."""
        x = torch.as_tensor(x, dtype=torch.float64)
        arg = (self.omega * float(t) + self.phi)[..., None] + (2 * math.pi / self.length) * self.ell[..., None] * x
        return (self.amplitude[..., None] * torch.sin(arg)).sum(1)

    def flux_coefficients(self, grid: FourierGrid, t: float) -> torch.Tensor:
        r"""``(B, ℓ_max + 1)`` the first Fourier coefficients (``grid.rfft`` convention) of the
        source divided by :math:`-ik`, i.e. :math:`\hat\delta_\ell / (-ik_\ell)` (zero for mode 0).

        On the nodes :math:`x_n = nL/N`, :math:`\sin(\theta + k_\ell x)` has the coefficient
        :math:`N e^{i\theta} / (2i)` at mode :math:`\ell` (:math:`0 < \ell < N/2`), so the term
        :math:`j` adds :math:`N A_j e^{i(\omega_j t + \phi_j)} / (2 k_{\ell_j})` there: no FFT, and
        exactly zero on every other mode.
        """
        if grid.dim != 1 or not math.isclose(grid.lengths[0], self.length, rel_tol=1e-12):
            raise ValueError(f"the forcing has period {self.length}; the grid is {grid.lengths} ({grid.dim}-D)")
        if self.ell.numel() and float(self.ell.max()) >= grid.shape[0] / 2:
            raise ValueError(f"forcing mode {int(self.ell.max())} is not resolved by {grid.shape[0]} points")
        key = (grid.shape, grid.complex_dtype, str(grid.device))
        if key not in self._cache:
            wavenumber = 2 * math.pi * self.ell / self.length
            weight = grid.shape[0] * self.amplitude / (2 * wavenumber)
            modes = int(self.ell.max()) + 1 if self.ell.numel() else 1
            onehot = torch.nn.functional.one_hot(self.ell.long(), modes).to(torch.float64)  # (B, J, modes)
            self._cache[key] = tuple(v.to(grid.device) for v in (self.omega, self.phi, weight, torch.ones_like(weight), onehot))
        if self._last is not None and self._last[0] == key and self._last[1] == float(t):
            return self._last[2]
        omega, phi, weight, ones, onehot = self._cache[key]
        # Every operation below is exact or element-wise scalar code (``polar``: cos and sin per
        # element), and the terms are summed in a fixed order: a row's values do not depend on the
        # batch it is in. (Vectorised transcendental kernels may round a row's elements differently
        # depending on where the row starts.)
        theta = omega * float(t) + phi
        values = weight * torch.polar(ones, theta)  # (B, J) complex128; real times complex: exact product
        terms = values[:, :, None] * onehot  # placed on their modes: products with 0 and 1 are exact
        out = terms[:, 0]
        for j in range(1, terms.shape[1]):
            out = out + terms[:, j]
        out = out.to(grid.complex_dtype)
        self._last = (key, float(t), out)
        return out


class MPPDECombined(SpectralEquation):
    r"""The MP-PDE combined equation (Brandstetter et al. 2022) on a periodic interval,

    .. math:: u_t + \partial_x(\alpha u^2 - \beta u_x + \gamma u_{xx}) = \delta(t, x),

    in Fourier space :math:`u_t = L u + N` with :math:`L(k) = -\beta k^2 + i\gamma k^3` (complex:
    :math:`-\gamma u_{xxx} \mapsto -\gamma (ik)^3`) and
    :math:`N = -\alpha\, ik\,\widehat{u^2} + \hat\delta(t)`, written :math:`N = D \odot W` with the
    shared :math:`D = -ik` and :math:`W = \alpha\widehat{u^2} + \hat\delta / (-ik)` (the forcing has
    no mean, :math:`\ell \ge 1`).

    Parameters
    ----------
    alpha, beta, gamma
        Numbers (one equation for every sample) or ``(B,)`` tensors (one value per sample).
    forcing
        The source :math:`\delta` of the ``B`` samples, or ``None`` (no source).

    ``B`` (:attr:`batch_size`) is the common length of the per-sample parameters; the linear symbol is
    ``(B, n_k)`` when ``beta`` or ``gamma`` is per sample, else ``(n_k,)``.
    """

    def __init__(self, alpha: Parameter, beta: Parameter, gamma: Parameter, forcing: SineForcing | None = None) -> None:
        self.alpha = _as_parameter(alpha, "alpha")
        self.beta = _as_parameter(beta, "beta")
        self.gamma = _as_parameter(gamma, "gamma")
        self.forcing = forcing
        sizes = {v.shape[0] for v in (self.alpha, self.beta, self.gamma) if isinstance(v, torch.Tensor)}
        if forcing is not None:
            sizes.add(forcing.batch_size)
        if len(sizes) > 1:
            raise ValueError(f"per-sample parameters disagree on the number of samples: {sorted(sizes)}")
        self._batch = sizes.pop() if sizes else None
        if isinstance(self.beta, torch.Tensor) and bool((self.beta < 0).any()) or not isinstance(self.beta, torch.Tensor) and self.beta < 0:
            raise ValueError("beta (viscosity) must be >= 0")

    @property
    def batch_size(self) -> int | None:
        return self._batch

    def select(self, rows: torch.Tensor) -> "MPPDECombined":
        if self._batch is None:
            return self
        rows = torch.as_tensor(rows, dtype=torch.long).cpu()

        def pick(v: Parameter) -> Parameter:
            return v[rows] if isinstance(v, torch.Tensor) else v

        forcing = None if self.forcing is None else self.forcing.select(rows)
        return MPPDECombined(pick(self.alpha), pick(self.beta), pick(self.gamma), forcing)

    @staticmethod
    def _column(value: Parameter, device: torch.device) -> Parameter:
        return value.to(device)[:, None] if isinstance(value, torch.Tensor) else value

    def linear_symbol(self, grid: FourierGrid) -> torch.Tensor:
        if grid.dim != 1:
            raise ValueError(f"MPPDECombined is one-dimensional; got a {grid.dim}-D grid")
        k = grid.k_derivative[0]
        beta, gamma = self._column(self.beta, grid.device), self._column(self.gamma, grid.device)
        real, imag = -beta * grid.k_squared, gamma * k**3
        real, imag = torch.broadcast_tensors(torch.as_tensor(real), torch.as_tensor(imag))
        return torch.complex(real.to(torch.float64), imag.to(torch.float64))

    def nonlinear_multiplier(self, grid: FourierGrid) -> torch.Tensor:
        return -grid.ik(0).to(torch.complex128)

    def nonlinear_transform(self, u_hat: torch.Tensor, grid: FourierGrid, t: float) -> torch.Tensor:
        """``W = α \\widehat{u^2} + \\hat δ(t) / (-ik)``: ``(R, n_k)`` -> ``(R, n_k)``, ``R`` the rows this
        equation holds (or any ``R`` when nothing is per sample)."""
        out = _square(u_hat, grid)
        alpha = self._column(self.alpha, u_hat.device)
        if isinstance(alpha, torch.Tensor):
            out = out * alpha.to(grid.dtype)
        elif alpha != 1.0:
            out = out * alpha
        if self.forcing is not None:
            low = self.forcing.flux_coefficients(grid, t).to(out.dtype)
            out[..., : low.shape[-1]] += low
        return out

    def advection_speed(self, u_hat: torch.Tensor, grid: FourierGrid) -> torch.Tensor:
        """``(B,)`` ``2 |α_b| max|u_b|``."""
        alpha = self.alpha.to(u_hat.device).abs() if isinstance(self.alpha, torch.Tensor) else abs(self.alpha)
        return 2 * alpha * _batch_max(grid.irfft(u_hat), grid.dim).double()
