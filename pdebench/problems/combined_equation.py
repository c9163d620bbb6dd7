r"""The MP-PDE benchmark family (Brandstetter, Worrall & Welling 2022): the combined equation

.. math:: u_t + \partial_x(\alpha u^2 - \beta u_x + \gamma u_{xx}) = \delta(t, x),\quad
          \delta(t, x) = \sum_{j<5} A_j \sin(\omega_j t + 2\pi \ell_j x / L + \phi_j),

on the periodic interval :math:`[0, L)`, :math:`L = 16`, :math:`t \in [0, 4]`, 250 output steps, with
:math:`u(0, x) = \delta(0, x)`. Per sample :math:`A_j \sim U[-0.5, 0.5]`, :math:`\omega_j \sim U[-0.4, 0.4]`,
:math:`\ell_j \in \{1, 2, 3\}`, :math:`\phi_j \sim U[0, 2\pi)`, each sample from its own generator.

``mppde_e1``: :math:`\alpha = 1`, :math:`\beta = \gamma = 0` (inviscid Burgers with forcing; shocks), solved
by the finite-volume WENO5 solver ``"fv-weno"``. Stored values are cell averages over cells centred at
:math:`(j + 1/2) L / n_x` (initial condition and source averaged exactly), so a coarse file is the
average of a fine one up to the solver's error.

``mppde_e2``: :math:`\alpha = 1`, :math:`\beta \sim U[0, 0.2]`, :math:`\gamma = 0` (forced viscous Burgers);
``mppde_e3``: :math:`\alpha \sim U[0, 3]`, :math:`\beta \sim U[0, 0.4]`, :math:`\gamma \sim U[0, 1]`
(forced Burgers–KdV), solved by the pseudo-spectral ETDRK4 solver ``"spectral"`` with per-sample
equations. Stored values are point values at the nodes :math:`x_j = jL/n_x` (the spectral convention,
not cell centres).

Per-sample parameters. Sample ``(seed, index)`` draws, from its own generator
:func:`~pdebench.problems.sampling.sample_generator`, first the forcing (:func:`forcing_coefficients`:
``A, omega, ell, phi``, in this order) and then three uniforms :math:`(u_\alpha, u_\beta, u_\gamma)
\sim U[0, 1)^3` that each problem maps to its ranges (E2: :math:`\beta = 0.2 u_\beta`; E3:
:math:`\alpha = 3u_\alpha`, :math:`\beta = 0.4u_\beta`, :math:`\gamma = u_\gamma`). Files store the
sample ids only; the parameters are a pure function of them,
:meth:`~pdebench.problems.base.Problem.sample_parameters`, and the same id gives the same forcing
in E1, E2 and E3.
"""

from __future__ import annotations

import math
from abc import abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import torch

from pdebench.problems.base import PROBLEMS, Problem, require, require_positive
from pdebench.problems.onedim import Periodic1D
from pdebench.problems.sampling import sample_generator
from pdebench.equations import spectral as equations

__all__ = ["MPPDEE1", "MPPDEE2", "MPPDEE3", "forcing_coefficients", "sample_draws"]

#: Sine modes of the forcing.
FORCING_TERMS = 5


def forcing_coefficients(seed: int, index: int) -> dict[str, torch.Tensor]:
    """``A, omega, ell, phi`` (each ``(5,)`` float64) of sample ``(seed, index)`` (drawn first, in this order)."""
    return _draw_forcing(sample_generator(seed, index))


def sample_draws(seed: int, index: int) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
    """The forcing of sample ``(seed, index)`` (as :func:`forcing_coefficients`) and the ``(3,)``
    float64 uniforms ``(u_alpha, u_beta, u_gamma)`` in ``[0, 1)`` drawn after it from the same generator."""
    g = sample_generator(seed, index)
    forcing = _draw_forcing(g)
    return forcing, torch.rand(3, generator=g, dtype=torch.float64)


def _ids(sample_ids: np.ndarray | Sequence[Sequence[int]]) -> np.ndarray:
    """``(N, 2)`` int64 ``(seed, index)`` rows."""
    return np.asarray(sample_ids, dtype=np.int64).reshape(-1, 2)


def _draw_forcing(g: torch.Generator) -> dict[str, torch.Tensor]:
    """The forcing draws ``A, omega, ell, phi`` from ``g`` (in this order)."""
    amplitude = torch.rand(FORCING_TERMS, generator=g, dtype=torch.float64) - 0.5
    omega = 0.8 * torch.rand(FORCING_TERMS, generator=g, dtype=torch.float64) - 0.4
    ell = torch.randint(1, 4, (FORCING_TERMS,), generator=g).to(torch.float64)
    phi = 2 * math.pi * torch.rand(FORCING_TERMS, generator=g, dtype=torch.float64)
    return {"A": amplitude, "omega": omega, "ell": ell, "phi": phi}


@PROBLEMS.register("mppde_e1", record="time-dependent", description="MP-PDE E1: forced inviscid Burgers "
                   "u_t + (u^2)_x = delta(t,x) on (0,16), shocks (finite-volume WENO5)")
@dataclass(frozen=True, kw_only=True)
class MPPDEE1(Problem):
    """MP-PDE's E1 (see the module docstring).

    Parameters
    ----------
    nx
        Cells (the paper trains at 100, 50 and 40).
    t_final, n_out
        Horizon 4 and 250 output steps (the paper's).
    length
        Period :math:`L` (16).
    """

    t_final: float = 4.0
    n_out: int = 250
    nx: int = 100
    length: float = 16.0

    solver: ClassVar[str] = "fv-weno"
    #: Stored values are cell averages: finer grids restrict by block averages (Problem.restrict).
    cell_averaged: ClassVar[bool] = True
    #: Flux coefficient alpha of the combined equation.
    alpha: ClassVar[float] = 1.0

    def validate(self) -> None:
        require(isinstance(self.nx, int) and self.nx >= 8, f"nx must be an integer >= 8, got {self.nx!r}")
        require_positive("length", self.length)

    @property
    def spatial_shape(self) -> tuple[int, ...]:
        return (self.nx,)

    @property
    def lengths(self) -> tuple[float, ...]:
        return (self.length,)

    def coordinates(self) -> dict[str, np.ndarray]:
        """Output times and the cell centres ``(j + 1/2) L / nx`` (finite volumes)."""
        return {"t": self.output_times(), "x": (np.arange(self.nx) + 0.5) * (self.length / self.nx)}

    def forcing(self, sample_ids: np.ndarray | Sequence[Sequence[int]]):
        """The source of samples ``(seed, index)`` as **cell averages**: a callable ``delta(x, t) -> (B, nx)``
        for cell centres ``x`` (the average of :math:`\sin(kx + c)` over a cell of width :math:`h` is its
        centre value times :math:`\mathrm{sinc}(kh/2)`, so finite volumes see the exact averages)."""
        rows = [forcing_coefficients(int(s), int(i)) for s, i in np.asarray(sample_ids).reshape(-1, 2)]
        coeffs = {k: torch.stack([r[k] for r in rows]) for k in ("A", "omega", "ell", "phi")}  # (B, 5)
        length, width = self.length, self.length / self.nx
        weight = coeffs["A"] * torch.sinc(coeffs["ell"] * width / length)  # sin(pi z)/(pi z) at z = k h / (2 pi)

        def delta(x: torch.Tensor, t: float) -> torch.Tensor:
            x = torch.as_tensor(x, dtype=torch.float64)
            arg = (coeffs["omega"] * float(t) + coeffs["phi"]).unsqueeze(-1) + (2 * math.pi / length) * coeffs["ell"].unsqueeze(-1) * x
            return (weight.unsqueeze(-1) * torch.sin(arg)).sum(dim=1)  # (B, nx)

        return delta

    def sample_parameters(self, sample_ids: np.ndarray) -> dict[str, np.ndarray]:
        """``alpha = 1``, ``beta = gamma = 0`` for every sample: ``(N,)`` float64 each."""
        n = len(_ids(sample_ids))
        return {"alpha": np.full(n, self.alpha), "beta": np.zeros(n), "gamma": np.zeros(n)}

    def sample_initial_conditions(self, seed: int, indices: Sequence[int]) -> torch.Tensor:
        """``u(0, x) = delta(0, x)`` as cell averages over the ``nx`` cells, ``(B, nx)`` float64."""
        ids = np.column_stack([np.full(len(indices), seed), np.asarray(indices, dtype=np.int64)])
        x = torch.as_tensor(self.coordinates()["x"])
        return self.forcing(ids)(x, 0.0)


@dataclass(frozen=True, kw_only=True)
class MPPDESpectral(Periodic1D):
    """The combined equation with per-sample ``alpha, beta, gamma`` and forcing on the pseudo-spectral
    solver (see the module docstring); subclasses map the uniforms ``u`` to the parameters
    (:meth:`parameters_from_uniforms`).

    Parameters
    ----------
    nx
        Nodes ``x_j = j L / nx`` (even; the paper trains at 100, 50 and 40).
    t_final, n_out
        Horizon 4 and 250 output steps (the paper's).
    length
        Period :math:`L` (16).
    max_dt
        Accuracy step of ETDRK4 (the solver also enforces the advective stability limit). E2:
        ``dt_out / 4``; E3: ``dt_out / 8`` (its fast dispersive, strongly advected samples need the
        smaller step). Measured on samples ``(0, 0..7)`` against ``dt_out / 32``: the largest time
        error is 3e-5 (E2, nx = 100; 4e-4 at nx = 200, beta = 0.005) and 1.3e-6 (E3, nx = 100 and
        200), against largest spatial errors (nx = 100 vs 800) of 3.7 (E2: shocks under-resolved at
        small beta; 0.08 at beta = 0.19) and 6e-5 (E3).
    """

    nx: int = 100
    length: float = 16.0
    t_final: float = 4.0
    n_out: int = 250
    max_dt: float | None = 4.0 / 250 / 4

    solver: ClassVar[str] = "spectral"

    def validate(self) -> None:
        super().validate()
        require(self.nx >= 10, f"nx must be >= 10 (the forcing's modes 1..3 must be kept by dealiasing), got {self.nx}")
        require(math.isfinite(self.length), f"length must be finite, got {self.length}")

    @abstractmethod
    def parameters_from_uniforms(self, u: torch.Tensor) -> dict[str, torch.Tensor]:
        """``(N, 3)`` uniforms ``(u_alpha, u_beta, u_gamma)`` -> ``alpha, beta, gamma`` each ``(N,)`` float64."""

    def _draws(self, sample_ids: np.ndarray | Sequence[Sequence[int]]) -> tuple[equations.SineForcing, dict[str, torch.Tensor]]:
        """The ``(B, 5)`` forcing and the ``(B,)`` parameters of samples ``sample_ids``, one generator each."""
        ids = _ids(sample_ids)
        if len(ids) and ids.min() < 0:
            raise ValueError(f"{self.name} draws its parameters per sample: sample ids (seed, index) must be "
                             f"non-negative, got {ids[ids.min(1) < 0][0].tolist()}")
        draws = [sample_draws(int(s), int(i)) for s, i in ids]
        coeffs = {k: torch.stack([d[0][k] for d in draws]) if draws else torch.zeros(0, FORCING_TERMS, dtype=torch.float64)
                  for k in ("A", "omega", "ell", "phi")}
        uniforms = torch.stack([d[1] for d in draws]) if draws else torch.zeros(0, 3, dtype=torch.float64)
        forcing = equations.SineForcing(coeffs["A"], coeffs["omega"], coeffs["ell"], coeffs["phi"], self.length)
        return forcing, self.parameters_from_uniforms(uniforms)

    def forcing(self, sample_ids: np.ndarray | Sequence[Sequence[int]]) -> equations.SineForcing:
        """The source of samples ``(seed, index)``: ``forcing(x, t) -> (B, X)`` point values."""
        return self._draws(sample_ids)[0]

    def sample_parameters(self, sample_ids: np.ndarray) -> dict[str, np.ndarray]:
        """``alpha, beta, gamma`` of samples ``sample_ids`` (``(N, 2)``), each ``(N,)`` float64, exactly
        as the solver uses them."""
        return {k: v.numpy().copy() for k, v in self._draws(sample_ids)[1].items()}

    def equation(self) -> equations.MPPDECombined:
        """Not defined without samples: the parameters are per sample (use :meth:`equation_for`)."""
        raise TypeError(f"{self.name} has per-sample parameters: use equation_for(sample_ids)")

    def equation_for(self, sample_ids: np.ndarray) -> equations.MPPDECombined:
        """The combined equation of samples ``sample_ids`` (``(B, 2)``): per-sample ``(B,)`` parameters
        and forcing."""
        forcing, parameters = self._draws(sample_ids)
        return equations.MPPDECombined(parameters["alpha"], parameters["beta"], parameters["gamma"], forcing)

    def sample_initial_conditions(self, seed: int, indices: Sequence[int]) -> torch.Tensor:
        """``u(0, x_j) = delta(0, x_j)`` at the nodes ``x_j = j L / nx``, ``(B, nx)`` float64."""
        ids = np.column_stack([np.full(len(indices), seed), np.asarray(indices, dtype=np.int64)])
        x = torch.as_tensor(self.coordinates()["x"])
        return self.forcing(ids)(x, 0.0)


@PROBLEMS.register("mppde_e2", record="time-dependent", description="MP-PDE E2: forced viscous Burgers "
                   "u_t + (u^2 - beta u_x)_x = delta(t,x) on (0,16), beta ~ U[0,0.2] per sample (pseudo-spectral)")
@dataclass(frozen=True, kw_only=True)
class MPPDEE2(MPPDESpectral):
    """MP-PDE's E2: :math:`\\alpha = 1`, :math:`\\beta \\sim U[0, \\beta_{max}]`, :math:`\\gamma = 0` per sample.

    Parameters
    ----------
    beta_max
        Upper end of the viscosity range (0.2).
    """

    beta_max: float = 0.2

    def validate(self) -> None:
        super().validate()
        require(0 <= self.beta_max < math.inf, f"beta_max must be finite and >= 0, got {self.beta_max}")

    def parameters_from_uniforms(self, u: torch.Tensor) -> dict[str, torch.Tensor]:
        n = u.shape[0]
        return {"alpha": torch.ones(n, dtype=torch.float64), "beta": self.beta_max * u[:, 1],
                "gamma": torch.zeros(n, dtype=torch.float64)}


@PROBLEMS.register("mppde_e3", record="time-dependent", description="MP-PDE E3: forced Burgers-KdV "
                   "u_t + (alpha u^2 - beta u_x + gamma u_xx)_x = delta(t,x) on (0,16), alpha ~ U[0,3], "
                   "beta ~ U[0,0.4], gamma ~ U[0,1] per sample (pseudo-spectral)")
@dataclass(frozen=True, kw_only=True)
class MPPDEE3(MPPDESpectral):
    """MP-PDE's E3: :math:`\\alpha \\sim U[0, \\alpha_{max}]`, :math:`\\beta \\sim U[0, \\beta_{max}]`,
    :math:`\\gamma \\sim U[0, \\gamma_{max}]` per sample.

    Parameters
    ----------
    alpha_max, beta_max, gamma_max
        Upper ends of the ranges (3, 0.4, 1).
    """

    alpha_max: float = 3.0
    beta_max: float = 0.4
    gamma_max: float = 1.0
    max_dt: float | None = 4.0 / 250 / 8

    def validate(self) -> None:
        super().validate()
        for name in ("alpha_max", "beta_max", "gamma_max"):
            value = getattr(self, name)
            require(0 <= value < math.inf, f"{name} must be finite and >= 0, got {value}")

    def parameters_from_uniforms(self, u: torch.Tensor) -> dict[str, torch.Tensor]:
        return {"alpha": self.alpha_max * u[:, 0], "beta": self.beta_max * u[:, 1], "gamma": self.gamma_max * u[:, 2]}
