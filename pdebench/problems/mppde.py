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
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import torch

from pdebench.problems.base import PROBLEMS, Problem, require
from pdebench.problems.sampling import sample_generator

__all__ = ["MPPDEE1", "forcing_coefficients"]

#: Sine modes of the forcing.
FORCING_TERMS = 5


def forcing_coefficients(seed: int, index: int) -> dict[str, torch.Tensor]:
    """``A, omega, ell, phi`` (each ``(5,)`` float64) of sample ``(seed, index)`` (drawn first, in this order)."""
    g = sample_generator(seed, index)
    amplitude = torch.rand(FORCING_TERMS, generator=g, dtype=torch.float64) - 0.5
    omega = 0.8 * torch.rand(FORCING_TERMS, generator=g, dtype=torch.float64) - 0.4
    ell = torch.randint(1, 4, (FORCING_TERMS,), generator=g).to(torch.float64)
    phi = 2 * math.pi * torch.rand(FORCING_TERMS, generator=g, dtype=torch.float64)
    return {"A": amplitude, "omega": omega, "ell": ell, "phi": phi}


@PROBLEMS.register("mppde_e1", kind="time-dependent", description="MP-PDE E1: forced inviscid Burgers "
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
    #: Flux coefficient alpha of the combined equation.
    alpha: ClassVar[float] = 1.0

    def validate(self) -> None:
        require(isinstance(self.nx, int) and self.nx >= 8, f"nx must be an integer >= 8, got {self.nx!r}")
        require(self.length > 0 and math.isfinite(self.length), f"length must be positive, got {self.length!r}")

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

    def sample_initial_conditions(self, seed: int, indices: Sequence[int]) -> torch.Tensor:
        """``u(0, x) = delta(0, x)`` as cell averages over the ``nx`` cells, ``(B, nx)`` float64."""
        ids = np.column_stack([np.full(len(indices), seed), np.asarray(indices, dtype=np.int64)])
        x = torch.as_tensor(self.coordinates()["x"])
        return self.forcing(ids)(x, 0.0)
