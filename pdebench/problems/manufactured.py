r"""Manufactured PDE instances on :math:`[0, 1]^d`: a steady equation, its exact solution and the source
that makes it exact, stated once for GP-HM (:mod:`pdebench.models.gp_hm`), the
finite-difference ladder and the instance board (:mod:`pdebench.evaluation.instance_board`) and its
benchmark (``benchmarks/bench_gp_hm.py``).

Dirichlet values come from the exact solution on every face.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor

from pdebench.equations.steady import ALLEN_CAHN, POISSON, SteadyEquation


@dataclass(frozen=True)
class Instance:
    r"""One PDE instance on :math:`[0, 1]^d` with a known exact solution.

    Parameters
    ----------
    name
        Registry key (:data:`INSTANCES`).
    equation
        The steady equation (:data:`~pdebench.equations.steady.POISSON`: :math:`-\Delta u = f`;
        :data:`~pdebench.equations.steady.ALLEN_CAHN`: :math:`\Delta u + u(u^2 - 1) = f`).
    dim
        Space dimension ``d``.
    exact, source
        ``u(*mesh) -> grid`` and ``f(*mesh) -> grid`` on float64 tensors of the grid's shape
        (``indexing="ij"`` meshes).
    description
        One line for tables.
    """

    name: str
    equation: SteadyEquation
    dim: int
    exact: Callable[..., Tensor]
    source: Callable[..., Tensor]
    description: str = ""


def _sin100(x: Tensor) -> Tensor:
    return torch.sin(100 * x)


def _allen_cahn_source(x: Tensor) -> Tensor:
    u = torch.sin(100 * x)
    return -1e4 * u + u * (u * u - 1)


#: The instances of the GP-HM paper's 1-D and 2-D tests (Xu et al., ICLR 2024).
INSTANCES: dict[str, Instance] = {
    "poisson1d_sin100": Instance("poisson1d_sin100", POISSON, 1, _sin100, lambda x: 1e4 * torch.sin(100 * x),
                                 "-u'' = f, u = sin(100x)"),
    "poisson1d_multiscale": Instance(
        "poisson1d_multiscale", POISSON, 1,
        lambda x: torch.sin(x) + 0.1 * torch.sin(20 * x) + 0.05 * torch.sin(100 * x),
        lambda x: torch.sin(x) + 40 * torch.sin(20 * x) + 500 * torch.sin(100 * x),
        "-u'' = f, u = sin x + 0.1 sin 20x + 0.05 sin 100x"),
    "allen_cahn1d_sin100": Instance("allen_cahn1d_sin100", ALLEN_CAHN, 1, _sin100, _allen_cahn_source,
                                    "u'' + u(u^2 - 1) = f, u = sin(100x)"),
    "poisson2d_sin100": Instance("poisson2d_sin100", POISSON, 2,
                                 lambda x, y: torch.sin(100 * x) * torch.sin(100 * y),
                                 lambda x, y: 2e4 * torch.sin(100 * x) * torch.sin(100 * y),
                                 "-Δu = f, u = sin(100x) sin(100y)"),
}
