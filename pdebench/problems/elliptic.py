"""Steady (elliptic) problems: an input field -> the solution, solved by finite elements (``darcy2d``)
or finite volumes (``darcy3d``).

A :class:`SteadyProblem` has no time axis; its samples are input fields (a coefficient or a source)
and the stored record has one frame. Grid problems store the PDEBench Darcy layout: the input as
``nu`` ``(N, *space)`` and the solution as ``tensor`` ``(N, 1, *space)`` (``space`` ``(X, Y)`` or ``(X, Y, Z)``).
"""

from __future__ import annotations

import functools
import math
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import torch

from pdebench.problems.base import PROBLEMS, Catalogued, require
from pdebench.problems.sampling import sample_generator, thresholded_field


@dataclass(frozen=True, kw_only=True)
class SteadyProblem(Catalogued, ABC):
    """A steady problem on a grid of ``spatial_shape`` points (boundary points included).

    The stored record is one frame: ``t = [0]``, ``n_out = 0``.
    """

    solver: ClassVar[str] = "fem"
    #: Stored input and output fields (the PDEBench Darcy names).
    input_name: ClassVar[str] = "nu"
    field_name: ClassVar[str] = "tensor"
    n_out: ClassVar[int] = 0
    t_final: ClassVar[float] = 0.0
    #: The domain's boundary, as The Well names its kinds: ``u`` is prescribed on it (Dirichlet), so ``"wall"``.
    boundary: ClassVar[str] = "wall"

    @property
    @abstractmethod
    def spatial_shape(self) -> tuple[int, ...]:
        """Output grid points per axis."""

    @property
    def lengths(self) -> tuple[float, ...]:
        return (1.0,) * len(self.spatial_shape)

    @property
    def dim(self) -> int:
        return len(self.spatial_shape)

    def coordinates(self) -> dict[str, np.ndarray]:
        """``{"t": [0], "x": (X,), "y": (Y,)[, "z": (Z,)]}``: grid points ``j L / (n - 1)``, both ends included."""
        coords = {"t": self.output_times()}
        for axis, n, length in zip(("x", "y", "z"), self.spatial_shape, self.lengths):
            coords[axis] = np.linspace(0.0, length, n)
        return coords

    @abstractmethod
    def sample_inputs(self, seed: int, indices: Sequence[int]) -> torch.Tensor:
        """``(B, *spatial_shape)`` float64 input fields of samples ``(seed, i)``."""

    def sample_initial_conditions(self, seed: int, indices: Sequence[int]) -> torch.Tensor:
        """The inputs (the generation pipeline calls every problem's samples this)."""
        return self.sample_inputs(seed, indices)



def neumann_gaussian_field(seed: int, indices: Sequence[int], points: int, *, tau: float, alpha: float,
                           modes: int = 64, dim: int = 2) -> torch.Tensor:
    r"""Samples of :math:`N(0, (-\Delta + \tau^2 I)^{-\alpha})` on :math:`[0, 1]^d` with zero Neumann
    boundary conditions, on the grid ``x_j = j / (points - 1)`` per axis (``points^d`` nodes).

    Cosine expansion :math:`\psi = \sum_{k} \xi_k (\pi^2 |k|^2 + \tau^2)^{-\alpha/2} \prod_{i=1}^{d} \cos(\pi k_i x_i)`
    with :math:`\xi_k \sim N(0, 1)` drawn from each sample's own generator (one ``(modes,) * d`` draw),
    ``k = 0`` left out (zero mean), truncated at ``modes`` per axis (the same modes at every resolution,
    so a sample is one field seen at any grid).

    Parameters
    ----------
    seed, indices
        The samples ``(seed, i)``, ``B = len(indices)``.
    points
        Grid points per axis, both ends included.
    tau, alpha
        Inverse length scale and smoothness of the covariance.
    modes
        Cosine modes per axis (2-D: 64, as ``darcy2d``; 3-D: ``darcy3d`` uses 16).
    dim
        2 or 3.

    Returns
    -------
    torch.Tensor
        ``(B, points, ..., points)`` (``dim`` spatial axes), float64.
    """
    if dim not in (2, 3):
        raise ValueError(f"dim must be 2 or 3, got {dim}")
    k = np.arange(modes)
    k2 = functools.reduce(np.add.outer, [k**2] * dim)  # |k|^2 on the (modes,) * dim grid
    spectrum = (np.pi**2 * k2 + tau**2) ** (-alpha / 2)
    spectrum[(0,) * dim] = 0.0  # zero mean
    x = np.linspace(0.0, 1.0, points)
    basis = np.cos(np.pi * x[:, None] * k[None, :])  # (points, modes)
    out = []
    for i in indices:
        xi = torch.randn((modes,) * dim, generator=sample_generator(seed, int(i)), dtype=torch.float64).numpy()
        if dim == 2:
            out.append(basis @ (xi * spectrum) @ basis.T)
        else:
            out.append(np.einsum("ia,jb,kc,abc->ijk", basis, basis, basis, xi * spectrum, optimize=True))
    return torch.from_numpy(np.stack(out))


def check_darcy(problem: Any) -> None:
    """Check the Darcy parameters ``a_high``, ``a_low`` (positive), ``forcing`` (finite), ``tau`` and
    ``alpha`` (positive) of ``problem`` (:class:`Darcy2D` or its mesh twin); ``ValueError`` naming them."""
    def real(v: Any) -> bool:
        return isinstance(v, (int, float, np.integer, np.floating)) and math.isfinite(v)

    require(all(real(v) and v > 0 for v in (problem.a_high, problem.a_low)),
            f"permeabilities must be positive and finite, got a_high={problem.a_high}, a_low={problem.a_low}")
    require(real(problem.forcing), f"forcing must be finite, got {problem.forcing}")
    require(all(real(v) and v > 0 for v in (problem.tau, problem.alpha)),
            f"need finite tau > 0 and alpha > 0, got tau={problem.tau}, alpha={problem.alpha}")


@dataclass(frozen=True, kw_only=True)
class DarcyLaw:
    r"""The Darcy coefficient law every Darcy problem shares (``darcy2d``, ``darcy3d``, ``darcy2d_mesh``):
    :math:`a = a_{high}` where :math:`\psi \ge 0` else :math:`a_{low}`,
    :math:`\psi \sim N(0, (-\Delta + \tau^2 I)^{-\alpha})` with Neumann conditions, constant source :math:`f`.

    Attributes
    ----------
    a_high, a_low
        Permeability values (positive).
    forcing
        Constant source ``f``.
    tau, alpha
        Parameters of the Gaussian random field (positive).
    """

    a_high: float = 12.0
    a_low: float = 3.0
    forcing: float = 1.0
    tau: float = 3.0
    alpha: float = 2.0

    def params(self) -> dict[str, Any]:
        return {"a_high": self.a_high, "a_low": self.a_low, "f": self.forcing}


@PROBLEMS.register("darcy2d", record="steady", description="Darcy flow -div(a grad u) = f on (0,1)^2, u = 0 on the boundary; "
                   "a = 12/3 from a thresholded GRF (FNO setting)")
@dataclass(frozen=True, kw_only=True)
class Darcy2D(DarcyLaw, SteadyProblem):
    r"""Darcy flow :math:`-\nabla\cdot(a\nabla u) = f` on :math:`(0,1)^2`, :math:`u = 0` on the boundary.

    The FNO setting (Li et al. 2021): :math:`a = a_{high}` where :math:`\psi \ge 0` else
    :math:`a_{low}`, :math:`\psi \sim N(0, (-\Delta + 9I)^{-2})` with Neumann boundary conditions,
    :math:`f = 1`; outputs on a ``resolution``² grid with the boundary included (FNO: 85², 141², 211²,
    421²). The finite-element mesh has the grid points as nodes.

    Parameters
    ----------
    resolution
        Grid points per axis (boundary included).
    a_high, a_low
        Permeability values (positive).
    forcing
        Constant source ``f``.
    tau, alpha
        Parameters of the Gaussian random field.
    element
        ``"P1"`` or ``"P2"`` finite elements.
    """

    resolution: int = 85
    element: str = "P1"

    def validate(self) -> None:
        require(self.resolution >= 5, f"resolution must be >= 5, got {self.resolution}")
        check_darcy(self)
        require(self.element in ("P1", "P2"), f"unknown element family {self.element!r}; choose P1 or P2")

    @property
    def spatial_shape(self) -> tuple[int, ...]:
        return (self.resolution, self.resolution)

    def sample_inputs(self, seed: int, indices: Sequence[int]) -> torch.Tensor:
        psi = neumann_gaussian_field(seed, indices, self.resolution, tau=self.tau, alpha=self.alpha)
        return thresholded_field(psi, high=self.a_high, low=self.a_low)



@PROBLEMS.register("darcy3d", record="steady", description="Darcy flow -div(a grad u) = f on (0,1)^3, u = 0 on the boundary; "
                   "a = 12/3 from a thresholded 3-D GRF, 7-point finite volumes")
@dataclass(frozen=True, kw_only=True)
class Darcy3D(DarcyLaw, SteadyProblem):
    r"""Darcy flow :math:`-\nabla\cdot(a\nabla u) = f` on :math:`(0,1)^3`, :math:`u = 0` on the boundary.

    ``darcy2d``'s setting on the unit cube: :math:`a = a_{high}` where :math:`\psi \ge 0` else
    :math:`a_{low}`, :math:`\psi \sim N(0, (-\Delta + \tau^2 I)^{-\alpha})` with Neumann boundary
    conditions (:func:`neumann_gaussian_field` with ``dim=3``, :attr:`modes` cosine modes per axis),
    constant :math:`f`; outputs on a ``resolution``³ grid ``x_j = j / (resolution - 1)`` with the
    boundary included, so ``(resolution - 2)³`` unknowns. Solved by the 7-point finite-volume scheme
    with harmonic-mean face coefficients (solver ``fv-elliptic``,
    :func:`pdebench.problems.elliptic_matrices.poisson_matrix`).

    Parameters
    ----------
    resolution
        Grid points per axis (boundary included, ``>= 5``); the default 34 is 32 interior nodes per axis.
    a_high, a_low
        Permeability values (positive).
    forcing
        Constant source ``f``.
    tau, alpha
        Parameters of the Gaussian random field.
    """

    solver: ClassVar[str] = "fv-elliptic"
    #: Cosine modes per axis of the random field (16³ = 4096 coefficients a sample).
    modes: ClassVar[int] = 16

    resolution: int = 34

    def validate(self) -> None:
        require(isinstance(self.resolution, (int, np.integer)) and self.resolution >= 5,
                f"resolution must be an integer >= 5, got {self.resolution!r}")
        check_darcy(self)

    @property
    def spatial_shape(self) -> tuple[int, ...]:
        return (self.resolution,) * 3

    def sample_inputs(self, seed: int, indices: Sequence[int]) -> torch.Tensor:
        psi = neumann_gaussian_field(seed, indices, self.resolution, tau=self.tau, alpha=self.alpha,
                                     modes=self.modes, dim=3)
        return thresholded_field(psi, high=self.a_high, low=self.a_low)

