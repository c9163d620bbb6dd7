r"""Steady problems on fixed unstructured triangle meshes: Poisson, Helmholtz, plane-strain elasticity.

A :class:`MeshProblem` says what to solve on a deterministic mesh (``domain``, mesh size ``h``,
``element`` ``"P1"``/``"P2"``); the registered solver ``"fem-mesh"``
(:class:`~pdebench.solvers.fem.mesh_solver.MeshFEMSolver`) solves it and ``pdebench generate`` stores the
samples in the mesh layout of :mod:`pdebench.io.mesh_file` (one mesh, nodal fields per sample).

Nodes
    The nodes of a problem are the degrees of freedom of its scalar element: the mesh vertices (P1),
    or the vertices followed by the edge midpoints in scikit-fem's facet order (P2). Every input and
    output field is given at these nodes, shape ``(n_nodes,)`` (``(n_nodes, 2)`` for a displacement).

Random inputs
    Sample ``(seed, i)`` draws from its own generator (:func:`~pdebench.problems.sampling.sample_generator`).
    A random field is a *continuous* function, a random Fourier sum (random Fourier features of a
    Gaussian random field with squared-exponential covariance of length ``length_scale``, unit variance
    on average),

    .. math:: g(x) = \sqrt{2/M}\,\sum_{m<M} \xi_m \cos(\omega_m\cdot x + \phi_m),\quad
              \omega_m \sim N(0, \ell^{-2} I),\ \phi_m \sim U[0, 2\pi),\ \xi_m \sim N(0, 1),

    evaluated at the nodes. The draw does not depend on the mesh, so sample ``(seed, i)`` is the same
    function at every ``h`` and element (a refinement study compares like with like). The solver uses
    the finite-element interpolant of the stored nodal values, so a stored row defines its solution.

Domains
    ``"lshape"``: :math:`(-1, 1)^2 \setminus [0, 1]^2` (re-entrant corner at the origin), uniformly
    refined until the longest edge is at most ``h`` (``ceil(log2(sqrt(2) / h))`` refinements of
    scikit-fem's six-triangle L). ``"disk_holes"``: the unit disk with three circular holes
    (:func:`~pdebench.problems.meshes.disk_with_holes`, target edge ``h``). ``"rectangle"``
    (elasticity only): :math:`[0, 2]\times[0, 1]`, a structured mesh with longest edge at most ``h``.
    Meshes are built once per ``(domain, h)`` (:func:`domain_mesh`, an LRU cache).
"""

from __future__ import annotations

import functools
import math
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np
import torch

from pdebench.problems.base import PROBLEMS, Catalogued, require, require_nonnegative, require_positive
from pdebench.problems.meshes import DEFAULT_HOLES, disk_with_holes, l_shape, rectangle
from pdebench.problems.sampling import sample_generator

if TYPE_CHECKING:
    from skfem import MeshTri

#: Mesh sizes allowed: coarser meshes resolve none of the fields, finer ones exceed memory quickly.
H_MIN, H_MAX = 0.01, 0.2
#: Random Fourier features per random field.
N_FEATURES = 64
ELEMENTS = ("P1", "P2")
#: Default wavenumber band of :class:`Helmholtz` per domain: between the first and the second
#: Dirichlet eigenvalue (L-shape: k = 3.105, 3.898; disk with holes: k = 4.37, 5.70).
DEFAULT_K_BAND: dict[str, tuple[float, float]] = {"lshape": (3.3, 3.7), "disk_holes": (4.8, 5.3)}


# --------------------------------------------------------------------------------------------------
# Meshes (deterministic, cached by parameters)
# --------------------------------------------------------------------------------------------------


def lshape_refinements(h: float) -> int:
    """Uniform refinements of the L-shape whose longest edge ``sqrt(2) 2^-r`` is at most ``h``."""
    return max(0, math.ceil(math.log2(math.sqrt(2.0) / h) - 1e-12))


@functools.lru_cache(maxsize=16)
def domain_mesh(domain: str, h: float) -> MeshTri:
    """The deterministic triangle mesh of ``domain`` with mesh size ``h`` (cached; do not modify it)."""
    if domain == "lshape":
        return l_shape(lshape_refinements(h))
    if domain == "disk_holes":
        return disk_with_holes(h)
    if domain == "rectangle":
        # Cells of side s split along a diagonal: longest edge s sqrt(2) <= h.
        nx, ny = math.ceil(2.0 * math.sqrt(2.0) / h) + 1, math.ceil(math.sqrt(2.0) / h) + 1
        return rectangle(np.linspace(0.0, 2.0, nx), np.linspace(0.0, 1.0, ny))
    raise ValueError(f"unknown domain {domain!r}; valid domains: lshape, disk_holes, rectangle")


@functools.lru_cache(maxsize=16)
def _nodes(domain: str, h: float, element: str) -> np.ndarray:
    return element_nodes(domain_mesh(domain, h), element)


def element_nodes(mesh: MeshTri, element: str) -> np.ndarray:
    """``(n_nodes, 2)`` read-only coordinates of the nodes of ``element`` on ``mesh`` (module docstring)."""
    points = np.asarray(mesh.p, dtype=np.float64)
    if element == "P2":  # scikit-fem's P2 numbering: vertices, then one node per facet (edge midpoint)
        points = np.hstack([points, points[:, mesh.facets].mean(axis=1)])
    nodes = np.ascontiguousarray(points.T)
    nodes.flags.writeable = False
    return nodes


def random_fourier_field(generator: torch.Generator, points: np.ndarray, *, length_scale: float,
                         n_features: int = N_FEATURES) -> np.ndarray:
    r"""One random smooth field (see the module docstring) drawn from ``generator``, at ``points``.

    Parameters
    ----------
    generator
        The sample's generator (advanced by ``4 n_features`` draws).
    points
        ``(n, 2)`` coordinates.
    length_scale
        Correlation length :math:`\ell`.

    Returns
    -------
    numpy.ndarray
        ``(n,)`` float64 values.
    """
    omega = torch.randn(n_features, 2, generator=generator, dtype=torch.float64).numpy() / length_scale
    phase = 2.0 * math.pi * torch.rand(n_features, generator=generator, dtype=torch.float64).numpy()
    weight = torch.randn(n_features, generator=generator, dtype=torch.float64).numpy()
    return math.sqrt(2.0 / n_features) * (np.cos(points @ omega.T + phase) @ weight)


def _finite(*values: float) -> bool:
    return all(isinstance(v, (int, float)) and math.isfinite(v) for v in values)


# --------------------------------------------------------------------------------------------------
# Base class
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class MeshProblem(Catalogued, ABC):
    """A steady problem on a fixed triangle mesh; samples are nodal input fields (and scalars).

    Parameters
    ----------
    domain
        ``"lshape"`` or ``"disk_holes"`` (elasticity: ``"lshape"`` or ``"rectangle"``).
    h
        Mesh size in ``[0.01, 0.2]`` (longest edge; the disk's target edge length).
    element
        ``"P1"`` or ``"P2"`` Lagrange elements; the nodes are the element's degrees of freedom.
    """

    #: Name of the solver in :data:`pdebench.solvers.SOLVERS`.
    solver: ClassVar[str] = "fem-mesh"
    #: The equation the solver assembles: ``"poisson"``, ``"helmholtz"`` or ``"elasticity"``.
    equation: ClassVar[str]
    #: Domains this problem accepts.
    domains: ClassVar[tuple[str, ...]] = ("lshape", "disk_holes")
    #: Nodal input fields and per-sample scalars that :meth:`sample_inputs` returns.
    input_fields: ClassVar[tuple[str, ...]] = ()
    input_params: ClassVar[tuple[str, ...]] = ()
    #: The solution field and its components per node (1: scalar).
    field_name: ClassVar[str] = "u"
    components: ClassVar[int] = 1
    n_out: ClassVar[int] = 0
    t_final: ClassVar[float] = 0.0

    domain: str = "lshape"
    h: float = 0.1
    element: str = "P1"

    def validate(self) -> None:
        """Check the parameters; raise ``ValueError`` naming the bad one."""
        require(isinstance(self.domain, str) and self.domain in self.domains,
                f"unknown domain {self.domain!r} for {self.name}; choose one of {', '.join(self.domains)}")
        require(isinstance(self.element, str) and self.element in ELEMENTS,
                f"unknown element {self.element!r}; choose P1 or P2")
        require(_finite(self.h) and H_MIN <= self.h <= H_MAX,
                f"mesh size h must lie in [{H_MIN}, {H_MAX}], got {self.h}")

    def mesh(self) -> MeshTri:
        """The deterministic mesh (built once per ``(domain, h)``, shared: do not modify it)."""
        return domain_mesh(self.domain, float(self.h))

    def nodes(self) -> np.ndarray:
        """``(n_nodes, 2)`` node coordinates (read-only; P2: vertices, then edge midpoints)."""
        return _nodes(self.domain, float(self.h), self.element)

    @property
    def num_nodes(self) -> int:
        return int(self.nodes().shape[0])

    def mesh_key(self) -> tuple[Any, ...]:
        """What the discretisation depends on (mesh, element, boundary parts): problems with the same
        key share a function space, boundary dofs and coefficient-independent matrices."""
        return (self.boundary_kind(), self.domain, float(self.h), self.element)

    def boundary_kind(self) -> str:
        """Which boundary parts :meth:`boundary_facets` marks (part of :meth:`mesh_key`)."""
        return "dirichlet_all"

    def boundary_facets(self) -> dict[str, np.ndarray]:
        """Boundary marker -> facet indices of :meth:`mesh`. ``"dirichlet"`` is where ``u = 0``; the
        disk also gets ``"outer"`` and ``"hole_<j>"``."""
        mesh = self.mesh()
        facets = np.asarray(mesh.boundary_facets())
        markers = {"dirichlet": facets}
        if self.domain == "disk_holes":
            mid = mesh.p[:, mesh.facets[:, facets]].mean(axis=1)  # (2, n_boundary_facets)
            gaps = [np.abs(np.hypot(mid[0], mid[1]) - 1.0)]
            gaps += [np.abs(np.hypot(mid[0] - c[0], mid[1] - c[1]) - r) for c, r in DEFAULT_HOLES]
            owner = np.argmin(np.stack(gaps), axis=0)
            markers["outer"] = facets[owner == 0]
            for j in range(len(DEFAULT_HOLES)):
                markers[f"hole_{j}"] = facets[owner == j + 1]
        return markers

    @abstractmethod
    def sample_inputs(self, seed: int, indices: Sequence[int]) -> dict[str, np.ndarray]:
        """Inputs of samples ``(seed, i)``: nodal fields ``(B, n_nodes)`` and scalars ``(B,)``, float64."""

    def sample_initial_conditions(self, seed: int, indices: Sequence[int]) -> dict[str, np.ndarray]:
        """The inputs (the generation pipeline calls every problem's samples this)."""
        return self.sample_inputs(seed, indices)

    def _draw(self, seed: int, indices: Sequence[int], draw) -> dict[str, np.ndarray]:
        """Stack ``draw(generator, nodes) -> {name: value}`` over the samples' own generators."""
        nodes = self.nodes()
        rows = [draw(sample_generator(seed, int(i)), nodes) for i in indices]
        names = (*self.input_fields, *self.input_params)
        if not rows:
            return {**{n: np.zeros((0, len(nodes))) for n in self.input_fields},
                    **{n: np.zeros(0) for n in self.input_params}}
        return {name: np.stack([row[name] for row in rows]).astype(np.float64) for name in names}



@dataclass(frozen=True, kw_only=True)
class _RandomSource(MeshProblem):
    """A random smooth source ``f = amplitude * g`` (module docstring) of correlation ``length_scale``."""

    length_scale: float = 0.3
    amplitude: float = 10.0

    def validate(self) -> None:
        super().validate()
        require_positive("length_scale", self.length_scale)
        require_positive("amplitude", self.amplitude)

    def _source(self, generator: torch.Generator, nodes: np.ndarray) -> np.ndarray:
        return self.amplitude * random_fourier_field(generator, nodes, length_scale=self.length_scale)


# --------------------------------------------------------------------------------------------------
# Problems
# --------------------------------------------------------------------------------------------------


@PROBLEMS.register("poisson", record="mesh", description="Poisson -Δu = f on an L-shape or a disk with holes, u = 0 "
                   "on the boundary; f a random smooth field (P1/P2 on an unstructured mesh)")
@dataclass(frozen=True, kw_only=True)
class Poisson(_RandomSource):
    r"""Poisson :math:`-\Delta u = f` in the domain, :math:`u = 0` on its whole boundary.

    Input ``f`` (nodal, random smooth field times ``amplitude``), output ``u``.

    Parameters
    ----------
    domain, h, element
        See :class:`MeshProblem`.
    length_scale, amplitude
        Correlation length and amplitude (standard deviation) of the random source.
    """

    equation: ClassVar[str] = "poisson"
    input_fields: ClassVar[tuple[str, ...]] = ("f",)

    def sample_inputs(self, seed: int, indices: Sequence[int]) -> dict[str, np.ndarray]:
        return self._draw(seed, indices, lambda g, nodes: {"f": self._source(g, nodes)})


@PROBLEMS.register("helmholtz", record="mesh", description="Helmholtz -Δu - k²u = f on an L-shape or a disk with "
                   "holes, u = 0; random k per sample in a band between Dirichlet eigenvalues, random smooth f")
@dataclass(frozen=True, kw_only=True)
class Helmholtz(_RandomSource):
    r"""Helmholtz :math:`-\Delta u - k^2 u = f`, :math:`u = 0` on the boundary, with a random wavenumber.

    Each sample draws :math:`k \sim U[k_{min}, k_{max}]` and a random smooth ``f``; inputs ``f``
    (nodal) and ``k`` (a per-sample scalar), output ``u``.

    The problem is singular when :math:`k^2` is a Dirichlet eigenvalue of the domain. The band
    defaults to one between the first two eigenvalues (:data:`DEFAULT_K_BAND`: L-shape
    :math:`k \in [3.3, 3.7]`, eigenvalues at :math:`k = 3.105, 3.898`; disk with holes
    :math:`[4.8, 5.3]`, eigenvalues at :math:`k = 4.37, 5.70`). Construction checks the band itself;
    the solver checks it against the eigenvalues of the *discrete* problem (this mesh and element,
    :meth:`~pdebench.solvers.fem.mesh_solver.MeshFEMSolver.check`) before it assembles or writes
    anything: a band with some :math:`k^2` within relative distance ``eigen_gap`` of an eigenvalue is
    refused (``ValueError`` naming it), so every system solved has condition number at most about
    ``1 / eigen_gap`` relative to the Laplacian's.

    Parameters
    ----------
    domain, h, element
        See :class:`MeshProblem`.
    k_min, k_max
        Wavenumber band (``None``: the domain's default).
    eigen_gap
        Smallest relative distance ``|k² - λ| / λ`` allowed to every discrete Dirichlet eigenvalue ``λ``.
    length_scale, amplitude
        Of the random source.
    """

    equation: ClassVar[str] = "helmholtz"
    input_fields: ClassVar[tuple[str, ...]] = ("f",)
    input_params: ClassVar[tuple[str, ...]] = ("k",)

    k_min: float | None = None
    k_max: float | None = None
    eigen_gap: float = 0.05

    @property
    def band(self) -> tuple[float, float]:
        """``(k_min, k_max)`` with the domain's defaults filled in."""
        default = DEFAULT_K_BAND.get(self.domain, (1.0, 2.0))
        return (default[0] if self.k_min is None else float(self.k_min),
                default[1] if self.k_max is None else float(self.k_max))

    def validate(self) -> None:
        super().validate()
        k_min, k_max = self.band
        require(_finite(k_min, k_max) and 0 < k_min < k_max,
                f"need 0 < k_min < k_max (finite), got k_min={k_min}, k_max={k_max}")
        require(_finite(self.eigen_gap) and 0 < self.eigen_gap < 0.5, f"eigen_gap must lie in (0, 0.5), got {self.eigen_gap}")

    def sample_inputs(self, seed: int, indices: Sequence[int]) -> dict[str, np.ndarray]:
        k_min, k_max = self.band

        def draw(g: torch.Generator, nodes: np.ndarray) -> dict[str, np.ndarray]:
            k = k_min + (k_max - k_min) * float(torch.rand((), generator=g, dtype=torch.float64))
            return {"f": self._source(g, nodes), "k": np.float64(k)}

        return self._draw(seed, indices, draw)

    def params(self) -> dict[str, Any]:
        k_min, k_max = self.band
        return {**super().params(), "k_min": k_min, "k_max": k_max}


@PROBLEMS.register("elasticity2d", record="mesh", description="Plane-strain linear elasticity on an L-shape or a "
                   "rectangle, random Young's modulus field, clamped on one side, loaded by a traction on another")
@dataclass(frozen=True, kw_only=True)
class Elasticity2D(MeshProblem):
    r"""Plane-strain linear elasticity :math:`-\nabla\cdot\sigma(u) = 0` with a random Young's modulus.

    :math:`\sigma = 2\mu\varepsilon(u) + \lambda\,\mathrm{tr}\,\varepsilon(u) I` with the Lamé parameters
    of :math:`E(x)` and a fixed :math:`\nu`. Each sample draws
    :math:`E(x) = E_0 \exp(\sigma_{\log} g(x))` with ``g`` a random smooth field (module docstring), so
    :math:`E > 0` everywhere; between the nodes the solver uses :math:`\exp` of the interpolated
    :math:`\log E`, positive too.

    Boundary: clamped (:math:`u = 0`) on the left side (L-shape: :math:`x = -1`; rectangle
    :math:`[0, 2]\times[0, 1]`: :math:`x = 0`); the traction :math:`t = (0, -\text{traction})` on the
    right end (L-shape: :math:`x = 1`, the end of the lower arm; rectangle: :math:`x = 2`); the rest
    is traction-free. Input ``E`` (nodal), output the displacement ``u`` ``(n_nodes, 2)``.

    Parameters
    ----------
    domain
        ``"lshape"`` or ``"rectangle"``.
    h, element
        See :class:`MeshProblem`.
    E0
        Median Young's modulus (> 0).
    log_std
        Standard deviation of :math:`\log E` (>= 0; 0 gives the constant :math:`E_0`).
    length_scale
        Correlation length of :math:`\log E`.
    nu
        Poisson's ratio in ``(0, 0.5)``.
    traction
        Downward load per unit length on the loaded side (non-zero).
    """

    equation: ClassVar[str] = "elasticity"
    domains: ClassVar[tuple[str, ...]] = ("lshape", "rectangle")
    input_fields: ClassVar[tuple[str, ...]] = ("E",)
    components: ClassVar[int] = 2

    E0: float = 1.0
    log_std: float = 0.5
    length_scale: float = 0.3
    nu: float = 0.3
    traction: float = 0.01

    def validate(self) -> None:
        super().validate()
        require_positive("Young's modulus E0", self.E0)
        require_nonnegative("log_std", self.log_std)
        require_positive("length_scale", self.length_scale)
        require(_finite(self.nu) and 0 < self.nu < 0.5, f"Poisson's ratio nu must lie in (0, 0.5), got {self.nu}")
        require(_finite(self.traction) and self.traction != 0, f"traction must be non-zero and finite, got {self.traction}")

    def boundary_kind(self) -> str:
        return "cantilever"

    @property
    def sides(self) -> tuple[float, float]:
        """``x`` of the clamped side and of the loaded side."""
        return (-1.0, 1.0) if self.domain == "lshape" else (0.0, 2.0)

    def boundary_facets(self) -> dict[str, np.ndarray]:
        """``"dirichlet"``: the clamped side's facets; ``"traction"``: the loaded side's."""
        mesh = self.mesh()
        facets = np.asarray(mesh.boundary_facets())
        mid_x = mesh.p[0, mesh.facets[:, facets]].mean(axis=0)
        clamped, loaded = self.sides
        return {"dirichlet": facets[np.isclose(mid_x, clamped, atol=1e-9)],
                "traction": facets[np.isclose(mid_x, loaded, atol=1e-9)]}

    def sample_inputs(self, seed: int, indices: Sequence[int]) -> dict[str, np.ndarray]:
        def draw(g: torch.Generator, nodes: np.ndarray) -> dict[str, np.ndarray]:
            log_e = self.log_std * random_fourier_field(g, nodes, length_scale=self.length_scale)
            return {"E": self.E0 * np.exp(log_e)}

        return self._draw(seed, indices, draw)
