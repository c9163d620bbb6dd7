r"""Batched periodic 1-D finite-volume WENO5 solver for scalar conservation laws.

Solves, for cell averages :math:`\bar u_i(t) = \frac{1}{\Delta x}\int_{x_{i-1/2}}^{x_{i+1/2}} u\,dx`
on a periodic grid of ``nx`` cells over :math:`[0, L)`,

.. math::

    u_t + f(u)_x = \nu u_{xx} + s(x, t),

with the semi-discrete scheme

.. math::

    \frac{d\bar u_i}{dt} = -\frac{\hat F_{i+1/2} - \hat F_{i-1/2}}{\Delta x}
        + \nu \frac{\bar u_{i+1} - 2\bar u_i + \bar u_{i-1}}{\Delta x^2} + s(x_i, t),

where :math:`\hat F_{i+1/2} = \hat F(u^-_{i+1/2}, u^+_{i+1/2})` is a two-point numerical flux of the
WENO5-JS reconstructed interface states, advanced in time by the three-stage SSP-RK3 scheme.

References
----------
G.-S. Jiang and C.-W. Shu, "Efficient implementation of weighted ENO schemes",
J. Comput. Phys. 126 (1996) 202-228.
C.-W. Shu and S. Osher, "Efficient implementation of essentially non-oscillatory
shock-capturing schemes", J. Comput. Phys. 77 (1988) 439-471.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Literal

import torch
from torch import Tensor

from pdebench.solvers.base import DTYPES, BlowUpError, check_dtype

__all__ = ["WENO5Solver", "weno5_interface_states", "godunov_burgers", "rusanov"]


#: Ideal (linear) weights :math:`d_0, d_1, d_2` of WENO5-JS for the left state at :math:`x_{i+1/2}`.
IDEAL_WEIGHTS = (0.1, 0.6, 0.3)

Forcing = Callable[[Tensor, float], Tensor]


def _weno5_left(um2: Tensor, um1: Tensor, u0: Tensor, up1: Tensor, up2: Tensor, eps: float) -> Tensor:
    r"""WENO5-JS value at the right face of the centre cell from the 5-cell stencil.

    With candidate third-order reconstructions

    .. math::

        q_0 = \tfrac{1}{6}(2u_{i-2} - 7u_{i-1} + 11u_i),\quad
        q_1 = \tfrac{1}{6}(-u_{i-1} + 5u_i + 2u_{i+1}),\quad
        q_2 = \tfrac{1}{6}(2u_i + 5u_{i+1} - u_{i+2}),

    smoothness indicators

    .. math::

        \beta_0 &= \tfrac{13}{12}(u_{i-2} - 2u_{i-1} + u_i)^2 + \tfrac14(u_{i-2} - 4u_{i-1} + 3u_i)^2,\\
        \beta_1 &= \tfrac{13}{12}(u_{i-1} - 2u_i + u_{i+1})^2 + \tfrac14(u_{i-1} - u_{i+1})^2,\\
        \beta_2 &= \tfrac{13}{12}(u_i - 2u_{i+1} + u_{i+2})^2 + \tfrac14(3u_i - 4u_{i+1} + u_{i+2})^2,

    and :math:`\alpha_k = d_k / (\epsilon + \beta_k)^2`, returns
    :math:`\sum_k \alpha_k q_k / \sum_k \alpha_k`. All arguments share one shape.
    """
    q0 = (2.0 * um2 - 7.0 * um1 + 11.0 * u0) / 6.0
    q1 = (-um1 + 5.0 * u0 + 2.0 * up1) / 6.0
    q2 = (2.0 * u0 + 5.0 * up1 - up2) / 6.0
    b0 = 13.0 / 12.0 * (um2 - 2.0 * um1 + u0) ** 2 + 0.25 * (um2 - 4.0 * um1 + 3.0 * u0) ** 2
    b1 = 13.0 / 12.0 * (um1 - 2.0 * u0 + up1) ** 2 + 0.25 * (um1 - up1) ** 2
    b2 = 13.0 / 12.0 * (u0 - 2.0 * up1 + up2) ** 2 + 0.25 * (3.0 * u0 - 4.0 * up1 + up2) ** 2
    d0, d1, d2 = IDEAL_WEIGHTS
    a0 = d0 / (eps + b0) ** 2
    a1 = d1 / (eps + b1) ** 2
    a2 = d2 / (eps + b2) ** 2
    return (a0 * q0 + a1 * q1 + a2 * q2) / (a0 + a1 + a2)


def weno5_interface_states(u: Tensor, eps: float = 1e-6) -> tuple[Tensor, Tensor]:
    r"""WENO5-JS left and right states at every interface of a periodic grid.

    Parameters
    ----------
    u
        Cell averages, shape ``(B, nx)``; periodic along the last axis.
    eps
        The :math:`\epsilon` of the nonlinear weights :math:`\alpha_k = d_k/(\epsilon+\beta_k)^2`.

    Returns
    -------
    (u_minus, u_plus)
        Each of shape ``(B, nx)``: entry ``i`` is the state at :math:`x_{i+1/2}` reconstructed
        from cell ``i`` (``u_minus``, stencil :math:`i-2..i+2`) and from cell ``i+1``
        (``u_plus``, the mirror stencil :math:`i+3..i-1`).
    """

    def shift(k: int) -> Tensor:  # shift(k)[i] = u[i + k]
        return torch.roll(u, shifts=-k, dims=-1)

    um2, um1, up1, up2, up3 = shift(-2), shift(-1), shift(1), shift(2), shift(3)
    u_minus = _weno5_left(um2, um1, u, up1, up2, eps)
    u_plus = _weno5_left(up3, up2, up1, u, um1, eps)
    return u_minus, u_plus


def godunov_burgers(u_left: Tensor, u_right: Tensor) -> Tensor:
    r"""Exact Godunov flux for the convex flux :math:`f(u) = u^2/2`.

    .. math::

        \hat F(u_l, u_r) = \max\big(f(\max(u_l, 0)),\ f(\min(u_r, 0))\big),

    which equals :math:`\min_{[u_l,u_r]} f` when :math:`u_l \le u_r` and
    :math:`\max_{[u_r,u_l]} f` otherwise. Arguments and result share one shape.
    """
    left = torch.clamp(u_left, min=0.0)
    right = torch.clamp(u_right, max=0.0)
    return torch.maximum(0.5 * left * left, 0.5 * right * right)


def rusanov(u_left: Tensor, u_right: Tensor, f: Callable[[Tensor], Tensor], df: Callable[[Tensor], Tensor]) -> Tensor:
    r"""Local Lax-Friedrichs (Rusanov) flux.

    .. math::

        \hat F(u_l, u_r) = \tfrac12\big(f(u_l) + f(u_r)\big)
            - \tfrac12 \max(|f'(u_l)|, |f'(u_r)|)\,(u_r - u_l).
    """
    speed = torch.maximum(df(u_left).abs(), df(u_right).abs())
    return 0.5 * (f(u_left) + f(u_right)) - 0.5 * speed * (u_right - u_left)


class WENO5Solver:
    r"""Periodic 1-D finite-volume WENO5-JS / SSP-RK3 solver, batched over samples.

    Solves :math:`u_t + f(u)_x = \nu u_{xx} + s(x,t)` on :math:`[0, L)` for cell averages, with
    WENO5-JS interface states, a two-point flux and SSP-RK3 steps of per-sample adaptive size

    .. math::

        \Delta t = \min\Big(\mathrm{CFL}\,\frac{\Delta x}{\max_i |f'(\bar u_i)|},\;
            \mathrm{CFL}\,\frac{\Delta x^2}{2\nu},\; \Delta t_{\max}\Big),

    shortened so that each output time is hit exactly. Each sample steps independently, so a
    sample's result does not depend on the rest of the batch.

    Parameters
    ----------
    flux
        ``"burgers"`` for :math:`f(u) = u^2/2` or ``"advection"`` for :math:`f(u) = a u`.
    speed
        Advection speed :math:`a` (only used by ``flux="advection"``).
    numerical_flux
        ``"godunov"`` (exact Riemann solution; upwind for advection) or ``"rusanov"``.
    cfl
        CFL number in ``(0, 1]``; default 0.4.
    eps
        WENO smoothness regulariser :math:`\epsilon`; default ``1e-6`` (Jiang & Shu).
    dtype
        ``"float64"`` (default) or ``"float32"``.
    device
        Torch device the computation runs on.

    Examples
    --------
    >>> import math, torch
    >>> solver = WENO5Solver(flux="burgers")
    >>> x = (torch.arange(64, dtype=torch.float64) + 0.5) / 64
    >>> u0 = (0.5 + torch.sin(2 * math.pi * x)).unsqueeze(0)
    >>> solver.solve(u0, length=1.0, t_out=[0.0, 0.1, 0.2]).shape
    torch.Size([1, 3, 64])
    """

    def __init__(
        self,
        flux: Literal["burgers", "advection"] = "burgers",
        speed: float = 1.0,
        numerical_flux: Literal["godunov", "rusanov"] = "godunov",
        cfl: float = 0.4,
        eps: float = 1e-6,
        dtype: Literal["float64", "float32"] = "float64",
        device: str | torch.device = "cpu",
    ) -> None:
        if flux not in ("burgers", "advection"):
            raise ValueError(f"flux must be 'burgers' or 'advection', got {flux!r}")
        if numerical_flux not in ("godunov", "rusanov"):
            raise ValueError(f"numerical_flux must be 'godunov' or 'rusanov', got {numerical_flux!r}")
        if not (isinstance(cfl, (int, float)) and math.isfinite(cfl) and 0.0 < cfl <= 1.0):
            raise ValueError(f"cfl must be a finite number in (0, 1], got {cfl!r}")
        if not (math.isfinite(speed)):
            raise ValueError(f"speed must be finite, got {speed!r}")
        if not (math.isfinite(eps) and eps > 0.0):
            raise ValueError(f"eps must be a positive finite number, got {eps!r}")
        check_dtype(dtype)
        self.flux = flux
        self.speed = float(speed)
        self.numerical_flux = numerical_flux
        self.cfl = float(cfl)
        self.eps = float(eps)
        self.dtype = dtype
        self.device = torch.device(device)

    # -- the flux -----------------------------------------------------------------------------
    def f(self, u: Tensor) -> Tensor:
        r"""Physical flux :math:`f(u)`: :math:`u^2/2` or :math:`a u`."""
        return 0.5 * u * u if self.flux == "burgers" else self.speed * u

    def df(self, u: Tensor) -> Tensor:
        r"""Characteristic speed :math:`f'(u)`: :math:`u` or :math:`a`."""
        return u if self.flux == "burgers" else torch.full_like(u, self.speed)

    def interface_flux(self, u_left: Tensor, u_right: Tensor) -> Tensor:
        r"""Numerical flux :math:`\hat F(u_l, u_r)`, elementwise on equal shapes."""
        if self.numerical_flux == "rusanov":
            return rusanov(u_left, u_right, self.f, self.df)
        if self.flux == "burgers":
            return godunov_burgers(u_left, u_right)
        return self.speed * (u_left if self.speed >= 0.0 else u_right)

    # -- the scheme ---------------------------------------------------------------------------
    def rhs(self, u: Tensor, t: Tensor, dx: float, nu: float, x: Tensor, forcing: Forcing | None) -> Tensor:
        r"""Semi-discrete right-hand side :math:`L(\bar u, t)`, shape ``(B, nx)``.

        .. math::

            L_i = -\frac{\hat F_{i+1/2} - \hat F_{i-1/2}}{\Delta x}
                + \nu\frac{\bar u_{i+1} - 2\bar u_i + \bar u_{i-1}}{\Delta x^2} + s(x_i, t).

        ``t`` has shape ``(B,)``; the forcing is called once per distinct time in the batch.
        """
        u_minus, u_plus = weno5_interface_states(u, self.eps)
        flux = self.interface_flux(u_minus, u_plus)  # flux[i] at x_{i+1/2}
        out = -(flux - torch.roll(flux, shifts=1, dims=-1)) / dx
        if nu > 0.0:
            out = out + nu * (torch.roll(u, -1, -1) - 2.0 * u + torch.roll(u, 1, -1)) / (dx * dx)
        if forcing is not None:
            out = out + self._forcing(forcing, x, t, u)
        return out

    @staticmethod
    def _forcing(forcing: Forcing, x: Tensor, t: Tensor, u: Tensor) -> Tensor:
        times = t.tolist()
        if all(s == times[0] for s in times):
            return WENO5Solver._source(forcing, x, times[0], u)
        return torch.stack([WENO5Solver._source(forcing, x, s, u)[b] for b, s in enumerate(times)])

    @staticmethod
    def _source(forcing: Forcing, x: Tensor, t: float, u: Tensor) -> Tensor:
        """``forcing(x, t)`` as a tensor of ``u``'s shape, dtype and device."""
        return torch.broadcast_to(torch.as_tensor(forcing(x, t), dtype=u.dtype, device=u.device), u.shape)

    def stable_dt(self, u: Tensor, dx: float, nu: float) -> Tensor:
        r"""Per-sample step limit, shape ``(B,)``: CFL :math:`\Delta x/\max|f'|` and CFL :math:`\Delta x^2/(2\nu)`."""
        wave = self.df(u).abs().amax(dim=-1)
        limit = self.cfl * dx / wave.clamp_min(torch.finfo(u.dtype).tiny)
        dt = torch.where(wave > 0, limit, torch.full_like(wave, math.inf))
        if nu > 0.0:
            dt = dt.clamp_max(self.cfl * dx * dx / (2.0 * nu))
        return dt

    def solve(
        self,
        u0: Tensor,
        length: float,
        t_out: Sequence[float],
        nu: float = 0.0,
        forcing: Forcing | None = None,
        max_dt: float | None = None,
    ) -> Tensor:
        r"""Cell averages at the output times.

        Parameters
        ----------
        u0
            Initial cell averages, shape ``(B, nx)`` (or ``(nx,)``, treated as ``B = 1``), ``nx >= 5``;
            cell ``i`` covers :math:`[i\Delta x, (i+1)\Delta x)` with :math:`\Delta x = L/n_x`.
        length
            Domain length :math:`L > 0`.
        t_out
            Strictly increasing output times, the first :math:`\ge 0` (``0`` returns ``u0``).
        nu
            Viscosity :math:`\nu \ge 0` of the central-difference term :math:`\nu u_{xx}`.
        forcing
            Optional source :math:`s(x, t)`: called as ``forcing(x, t)`` with cell centres ``x`` of
            shape ``(nx,)`` and a float ``t``; returns a tensor broadcastable to ``(B, nx)``.
            It is sampled at cell centres (second-order accurate as a cell average).
        max_dt
            Optional upper bound on every step (e.g. :math:`\propto \Delta x^{5/3}` so the
            third-order time error matches the fifth-order space error).

        Returns
        -------
        Tensor
            Shape ``(B, T, nx)`` with ``T = len(t_out)``, in the solver dtype.

        Raises
        ------
        ValueError
            On non-finite ``u0``, a bad shape, length, viscosity, ``max_dt`` or output times.
        BlowUpError
            When the solution becomes non-finite (sample ids are ``(0, batch index)``).
        """
        if not isinstance(u0, Tensor):
            raise ValueError(f"u0 must be a torch.Tensor, got {type(u0).__name__}")
        if u0.dim() == 1:
            u0 = u0.unsqueeze(0)
        if u0.dim() != 2:
            raise ValueError(f"u0 must have shape (B, nx), got {tuple(u0.shape)}")
        if u0.shape[-1] < 5:
            raise ValueError(f"u0 needs nx >= 5 cells for the WENO5 stencil, got nx={u0.shape[-1]}")
        if not bool(torch.isfinite(u0).all()):
            raise ValueError("u0 contains non-finite values (nan or inf)")
        if not (math.isfinite(length) and length > 0.0):
            raise ValueError(f"length must be a positive finite number, got {length!r}")
        if not (math.isfinite(nu) and nu >= 0.0):
            raise ValueError(f"nu must be a finite number >= 0, got {nu!r}")
        if max_dt is not None and not (math.isfinite(max_dt) and max_dt > 0.0):
            raise ValueError(f"max_dt must be a positive finite number or None, got {max_dt!r}")
        if forcing is not None and not callable(forcing):
            raise ValueError(f"forcing must be callable or None, got {type(forcing).__name__}")
        times = [float(s) for s in t_out]
        if len(times) == 0:
            raise ValueError("t_out must contain at least one output time")
        if not all(math.isfinite(s) for s in times) or times[0] < 0.0:
            raise ValueError(f"t_out must be finite and >= 0, got {list(t_out)!r}")
        if any(b <= a for a, b in zip(times[:-1], times[1:])):
            raise ValueError(f"t_out must be strictly increasing, got {list(t_out)!r}")

        dtype = DTYPES[self.dtype]
        u = u0.to(device=self.device, dtype=dtype).clone()
        batch, nx = u.shape
        dx = float(length) / nx
        x = (torch.arange(nx, dtype=dtype, device=self.device) + 0.5) * dx
        t = torch.zeros(batch, dtype=dtype, device=self.device)
        frames = torch.empty((batch, len(times), nx), dtype=dtype, device=self.device)

        for k, target in enumerate(times):
            while bool((t < target).any()):
                remaining = (target - t).clamp_min(0.0)
                dt = self.stable_dt(u, dx, nu)
                if max_dt is not None:
                    dt = dt.clamp_max(max_dt)
                last = dt >= remaining
                dt = torch.where(last, remaining, dt)
                u = self._ssprk3(u, t, dt, dx, nu, x, forcing)
                t = torch.where(last, torch.full_like(t, target), t + dt)
                alive = torch.isfinite(u).all(dim=-1)
                if not bool(alive.all()):
                    bad = torch.nonzero(~alive).flatten().tolist()
                    raise BlowUpError([(0, b) for b in bad], float(t.max()), "WENO5Solver")
            frames[:, k] = u
        return frames

    def shock_sensor(self, u: Tensor) -> Tensor:
        r"""``(B,)`` the largest gap between the two WENO5 states at an interface, relative to the state's
        scale: :math:`\max_i |u^-_{i+1/2} - u^+_{i+1/2}| / \max_i |\bar u_i|` for cell averages ``u``
        ``(B, nx)``. Both states reconstruct the same point value to fifth order where ``u`` is smooth
        and resolved (gap ~1e-6 to 1e-4), and differ by the jump at a shock (gap ~0.1 to 1)."""
        u_minus, u_plus = weno5_interface_states(u, self.eps)
        scale = u.abs().amax(dim=-1).clamp_min(torch.finfo(u.dtype).tiny)
        return (u_minus - u_plus).abs().amax(dim=-1) / scale

    def advance(self, u: Tensor, t0: float, h: float, steps: int, dx: float, x: Tensor, nu: float = 0.0,
                forcing: Forcing | None = None) -> Tensor:
        r"""``steps`` uniform SSP-RK3 steps of size ``h`` from cell averages ``u`` ``(B, nx)`` at time
        ``t0`` (step ``j`` starts at ``t0 + j h``), on cells of width ``dx`` centred at ``x`` ``(nx,)``;
        returns ``(B, nx)`` at ``t0 + steps h``. No step control: the caller keeps ``h`` within
        :meth:`stable_dt` (the certified finite-volume solver does, per sample and output interval)."""
        dt = torch.full((u.shape[0],), h, dtype=u.dtype, device=u.device)
        for j in range(steps):
            u = self._ssprk3(u, torch.full_like(dt, t0 + j * h), dt, dx, nu, x, forcing)
        return u

    def _ssprk3(
        self, u: Tensor, t: Tensor, dt: Tensor, dx: float, nu: float, x: Tensor, forcing: Forcing | None
    ) -> Tensor:
        r"""One SSP-RK3 step (Shu & Osher) with per-sample ``dt`` of shape ``(B,)``.

        .. math::

            u^{(1)} &= u^n + \Delta t\, L(u^n, t^n),\\
            u^{(2)} &= \tfrac34 u^n + \tfrac14\big(u^{(1)} + \Delta t\, L(u^{(1)}, t^n + \Delta t)\big),\\
            u^{n+1} &= \tfrac13 u^n + \tfrac23\big(u^{(2)} + \Delta t\, L(u^{(2)}, t^n + \tfrac12\Delta t)\big).
        """
        h = dt.unsqueeze(-1)
        u1 = u + h * self.rhs(u, t, dx, nu, x, forcing)
        u2 = 0.75 * u + 0.25 * (u1 + h * self.rhs(u1, t + dt, dx, nu, x, forcing))
        return u / 3.0 + 2.0 / 3.0 * (u2 + h * self.rhs(u2, t + 0.5 * dt, dx, nu, x, forcing))
