"""The problem catalogue's base class and registry.

A *problem* is a frozen dataclass that says **what** to solve: equation parameters, domain, grid,
horizon, output interval and the sampler of its random inputs. *How* it is solved is a solver's job
(``Problem.solver`` names the default one in :data:`pdebench.solvers.SOLVERS`).
"""

from __future__ import annotations

import dataclasses
import math
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import torch

from pdebench.core.grid_transfer import block_average, fourier_resample
from pdebench.registry import RecordEntry, Registry

PROBLEMS: Registry["Problem"] = Registry("problem", RecordEntry)


def require(condition: bool, message: str) -> None:
    """Raise ``ValueError(message)`` unless ``condition`` holds (problem-parameter validation)."""
    if not condition:
        raise ValueError(message)


def _is_real(value: Any) -> bool:
    return isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, (bool, np.bool_))


def require_positive(label: str, value: Any) -> None:
    """Raise ``ValueError`` unless ``value`` is a finite real number ``> 0``.

    The message is ``"{label} must be positive, got {value}"``, or ``"... must be finite and positive
    ..."`` when ``value`` is NaN, infinite or not a number, so ``t_final=inf`` is not told to be positive.
    """
    if _is_real(value) and math.isfinite(value) and value > 0:
        return
    finite = _is_real(value) and math.isfinite(value)
    raise ValueError(f"{label} must be {'positive' if finite else 'finite and positive'}, got {value}")


def require_nonnegative(label: str, value: Any) -> None:
    """Raise ``ValueError`` unless ``value`` is a finite real number ``>= 0`` (the message says
    ``"finite and >= 0"`` for NaN, infinite or non-numbers, ``">= 0"`` otherwise)."""
    if _is_real(value) and math.isfinite(value) and value >= 0:
        return
    finite = _is_real(value) and math.isfinite(value)
    raise ValueError(f"{label} must be {'>= 0' if finite else 'finite and >= 0'}, got {value}")


class Catalogued:
    """What every catalogued problem (time-dependent, steady, on a mesh, of particles) shares: its
    registered name, its parameters as file attributes, validation on construction, validated copies
    and its output times."""

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        """Check the problem's own parameters; raise ``ValueError`` naming the bad one."""

    def output_times(self) -> np.ndarray:
        """``(n_out + 1,)`` output times ``t_j = j t_final / n_out``, ``0`` first (``[0]`` when steady)."""
        return np.linspace(0.0, self.t_final, self.n_out + 1)

    @property
    def name(self) -> str:
        """Registered name of the problem."""
        return getattr(type(self), "registry_name", type(self).__name__)

    def params(self) -> dict[str, Any]:
        """Parameters (numbers and strings) as file attributes; subclasses use PDEBench names where
        they exist (e.g. ``Nu``)."""
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if isinstance(getattr(self, f.name), (int, float, str))}

    def arguments(self) -> dict[str, Any]:
        """Every constructor argument and its value (numbers, strings, booleans, ``None``): what
        rebuilds the problem, ``PROBLEMS.build(self.name, **self.arguments())``. Data files store it as
        ``provenance.problem_args``, so that a file names everything its problem needs."""
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)
                if f.init and (getattr(self, f.name) is None or isinstance(getattr(self, f.name), (bool, int, float, str)))}

    def replace(self, **changes: Any):
        """A copy with some parameters changed (validated again)."""
        return dataclasses.replace(self, **changes)


@dataclass(frozen=True, kw_only=True)
class Problem(Catalogued, ABC):
    """A time-dependent benchmark problem on a grid.

    Parameters
    ----------
    t_final
        Horizon ``T`` (time units of the equation).
    n_out
        Number of output intervals: the stored trajectory has ``n_out + 1`` frames at
        ``t_j = j T / n_out`` (the initial condition included).
    """

    t_final: float
    n_out: int

    #: Name of the default solver in :data:`pdebench.solvers.SOLVERS`.
    solver: ClassVar[str] = "spectral"
    #: Name of the stored field.
    field_name: ClassVar[str] = "u"
    #: Whether the stored values are cell averages (finite volumes) rather than point values: a finer
    #: grid then restricts to a coarser one by block averages (:meth:`restrict`).
    cell_averaged: ClassVar[bool] = False
    #: The domain's boundary, as The Well names its kinds (``"periodic"``, ``"wall"`` or ``"open"``):
    #: every time-dependent grid problem of the catalogue is periodic on each axis.
    boundary: ClassVar[str] = "periodic"

    def __post_init__(self) -> None:
        require_positive("t_final", self.t_final)
        require(self.n_out >= 1, f"n_out must be >= 1, got {self.n_out}")
        self.validate()

    @property
    @abstractmethod
    def spatial_shape(self) -> tuple[int, ...]:
        """Grid points per spatial axis (``x`` first)."""

    @property
    @abstractmethod
    def lengths(self) -> tuple[float, ...]:
        """Domain length per spatial axis (the domain is ``prod_i [0, L_i)``)."""

    @property
    def dim(self) -> int:
        """Number of spatial dimensions."""
        return len(self.spatial_shape)

    @property
    def dt_out(self) -> float:
        """Output interval ``T / n_out``."""
        return self.t_final / self.n_out

    def coordinates(self) -> dict[str, np.ndarray]:
        """``{"t": (T,), "x": (X,), ["y": (Y,)]}``: output times and grid-point coordinates ``j L / N``."""
        coords = {"t": self.output_times()}
        for axis, n, length in zip(("x", "y", "z"), self.spatial_shape, self.lengths):
            coords[axis] = np.arange(n) * (length / n)
        return coords

    def grid_points(self) -> list[torch.Tensor]:
        """Meshgrid (``indexing="ij"``) of the coordinates, each ``(*spatial_shape)`` float64."""
        axes = [torch.as_tensor(self.coordinates()[a]) for a in ("x", "y", "z")[: self.dim]]
        return list(torch.meshgrid(*axes, indexing="ij"))

    def with_resolution(self, points: int) -> "Problem":
        """The same problem on a grid of ``points`` per axis (``nx`` in 1-D, ``resolution`` in 2-D)."""
        for name in ("nx", "resolution"):
            if hasattr(self, name):
                return self.replace(**{name: int(points)})
        raise ValueError(f"{self.name} has no grid size field (nx or resolution); it cannot be refined")

    def refined(self, refinement: int) -> "Problem":
        """The problem on a grid ``refinement`` times finer per axis with its accuracy step ``max_dt``
        divided likewise: how the leaderboard's references and ``pdebench generate --solve-refinement``
        data are solved."""
        if isinstance(refinement, bool) or not isinstance(refinement, (int, np.integer)) or refinement < 1:
            raise ValueError(f"refinement must be an integer >= 1, got {refinement!r}")
        if refinement == 1:
            return self
        fine = self.with_resolution(self.spatial_shape[0] * int(refinement))
        max_dt = getattr(fine, "max_dt", None)
        return fine.replace(max_dt=max_dt / refinement) if max_dt else fine

    def restrict(self, u: torch.Tensor, points: int, *, project: bool = False) -> torch.Tensor:
        r"""Fields of this problem on a finer periodic grid, transferred to ``points`` per spatial axis.

        Parameters
        ----------
        u
            ``(..., n, ..., n)``: values on a uniform periodic grid of ``n`` points per axis (the last
            :attr:`dim` axes).
        points
            Points per axis of the result.
        project
            Point values only (``cell_averaged`` False): ``False`` samples the nested coarse grid,
            ``u[..., ::s]`` with ``s = n / points`` (exact for point values; ``n`` must be a multiple of
            ``points``); ``True`` takes the L2 projection onto the coarse grid's Fourier modes
            (:func:`~pdebench.core.grid_transfer.fourier_resample`, any even ``points``), what a
            coarser spectral solve starts from.

        Returns
        -------
        torch.Tensor
            ``(..., points, ..., points)``. Cell averages (``cell_averaged`` True): the average of
            each block of ``s`` consecutive fine cells per axis,
            :math:`\bar u_J = \frac{1}{s^d} \sum_{j \in J} \bar u_j` -- exactly the coarse cell
            average (and the L2 projection onto piecewise constants), whatever ``project`` says.
        """
        n, dims = u.shape[-1], self.dim
        if self.cell_averaged or not project:
            if points < 1 or n % points:
                raise ValueError(f"{self.name}: cannot restrict {n} points per axis to {points}: {points} must divide {n}")
            if self.cell_averaged:
                return block_average(u, points, dims)
            return u[(..., *([slice(None, None, n // points)] * dims))]
        return fourier_resample(u, points, dims)

    @abstractmethod
    def sample_initial_conditions(self, seed: int, indices: Sequence[int]) -> torch.Tensor:
        """``(B, *spatial_shape)`` float64 initial conditions of samples ``(seed, i)``, ``i in indices``."""

    def sample_parameters(self, sample_ids: np.ndarray) -> dict[str, np.ndarray]:
        """Equation parameters drawn per sample, recomputed from the samples' ids.

        Files store each sample's ``(seed, index)`` (``sample_ids``), not its random parameters:
        per-sample parameters are a pure function of the id (drawn from
        :func:`~pdebench.problems.sampling.sample_generator`), so this method returns exactly the
        values the solver used.

        Parameters
        ----------
        sample_ids
            ``(N, 2)`` integer ``(seed, index)`` rows.

        Returns
        -------
        dict[str, numpy.ndarray]
            Name -> ``(N,)`` float64 values; empty (the default) for problems whose parameters are the
            same for every sample (those are file attributes, :meth:`params`).
        """
        return {}



@dataclass(frozen=True, kw_only=True)
class SpectralProblem(Problem):
    """A problem on a periodic grid that the pseudo-spectral solver steps.

    Parameters
    ----------
    max_dt
        Largest internal step for **accuracy** (the solver separately enforces stability). The
        explicit stability limit ignores modes the linear part damps, so a weak field would otherwise
        be stepped across a whole long output interval at once; ``None`` leaves only stability.
    """

    max_dt: float | None = None

    def validate(self) -> None:
        super().validate()
        if self.max_dt is not None:
            require_positive("max_dt", self.max_dt)

    @abstractmethod
    def equation(self):
        """The :class:`~pdebench.equations.spectral.SpectralEquation` to step."""

    def equation_for(self, sample_ids: np.ndarray):
        """The equation of the samples ``sample_ids`` (``(B, 2)`` ``(seed, index)``), what the solver
        steps. The default is :meth:`equation` for every batch; problems with per-sample parameters
        return an equation whose ``batch_size`` is ``B`` (row ``b`` for sample ``sample_ids[b]``)."""
        return self.equation()
