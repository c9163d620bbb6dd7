r"""Darcy flow on an unstructured triangle mesh of the unit square (``darcy2d_mesh``).

The FNO Darcy setting of :class:`~pdebench.problems.elliptic.Darcy2D` moved onto a fixed unstructured
mesh, in the mesh layout of :mod:`pdebench.io.mesh_file` (one mesh, nodal fields per sample):

.. math:: -\nabla\cdot(a\nabla u) = f \ \text{in}\ (0, 1)^2, \qquad u = 0 \ \text{on the boundary},

with :math:`f` constant and :math:`a = a_{high}` where :math:`\psi \ge 0`, else :math:`a_{low}`,
:math:`\psi \sim N(0, (-\Delta + \tau^2 I)^{-\alpha})` with zero Neumann conditions: the *same* cosine
expansion (and the same per-sample draws :math:`\xi_k`) as
:func:`~pdebench.problems.elliptic.neumann_gaussian_field`, evaluated exactly at the mesh nodes,

.. math:: \psi(x, y) = \sum_{k_1, k_2 < M} \xi_{k}\,(\pi^2|k|^2 + \tau^2)^{-\alpha/2}\cos(\pi k_1 x)\cos(\pi k_2 y),

so sample ``(seed, i)`` is the permeability of ``darcy2d`` sample ``(seed, i)``, seen at the nodes.

Mesh
    The structured ``n x n`` grid of :func:`~pdebench.problems.meshes.rectangle` with
    ``n = ceil(sqrt(2) / h) + 1``, every interior vertex moved by a random offset of at most
    ``jitter`` grid spacings (a fixed ``numpy`` generator of ``mesh_seed``), so the mesh is
    unstructured (no two rows alike) but shape regular; boundary vertices stay on the boundary.

Solver
    ``"fem-mesh-darcy"`` (:class:`~pdebench.solvers.fem.darcy_mesh_solver.DarcyMeshSolver`): P1 (or P2)
    Lagrange elements on this mesh, the coefficient the interpolant of the stored nodal ``a``.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np
import torch

from pdebench.problems.base import PROBLEMS, require
from pdebench.problems.elliptic import check_darcy
from pdebench.problems.mesh_problems import MeshProblem, element_nodes
from pdebench.problems.meshes import oriented, rectangle, triangulation
from pdebench.problems.sampling import sample_generator

if TYPE_CHECKING:
    from skfem import MeshTri

__all__ = ["DarcyMesh", "neumann_gaussian_field_at", "unit_square_mesh"]


@functools.lru_cache(maxsize=16)
def unit_square_mesh(h: float, jitter: float = 0.25, mesh_seed: int = 0) -> MeshTri:
    """Unstructured triangle mesh of ``[0, 1]²`` with longest edge about ``h`` (cached; do not modify).

    Parameters
    ----------
    h
        Target mesh size: the structured grid has spacing ``s = 1 / (n - 1)``, ``n = ceil(sqrt(2) / h) + 1``
        (longest edge ``s sqrt(2) <= h`` before the jitter).
    jitter
        Largest interior-vertex displacement in grid spacings, in ``[0, 0.3]`` (0: structured).
    mesh_seed
        Seed of the jitter.
    """
    if not 0.0 <= jitter <= 0.3:
        raise ValueError(f"jitter must lie in [0, 0.3] grid spacings (larger moves may invert elements), got {jitter}")
    n = math.ceil(math.sqrt(2.0) / h - 1e-12) + 1
    c = np.linspace(0.0, 1.0, n)
    mesh = rectangle(c, c)
    if jitter == 0:
        return mesh
    points = np.asarray(mesh.p, dtype=np.float64).copy()
    interior = mesh.interior_nodes()
    rng = np.random.default_rng(mesh_seed)
    radius = jitter * (c[1] - c[0]) * np.sqrt(rng.uniform(size=interior.size))
    angle = rng.uniform(0.0, 2.0 * np.pi, size=interior.size)
    points[:, interior] += radius * np.stack([np.cos(angle), np.sin(angle)])
    return triangulation(points, oriented(points, mesh.t))


def neumann_gaussian_field_at(seed: int, indices: Sequence[int], points: np.ndarray, *, tau: float, alpha: float,
                              modes: int = 64) -> np.ndarray:
    r"""The Neumann Gaussian random field of :func:`~pdebench.problems.elliptic.neumann_gaussian_field`
    (same draws per sample ``(seed, i)``) evaluated at arbitrary ``points``.

    Parameters
    ----------
    seed, indices
        Samples ``(seed, i)``.
    points : numpy.ndarray, shape (n, 2)
        Coordinates in ``[0, 1]²``.
    tau, alpha, modes
        Field parameters and modes per axis, as the grid sampler.

    Returns
    -------
    numpy.ndarray, shape (B, n)
        :math:`\psi(x_j)` per sample, float64.
    """
    k = np.arange(modes)
    spectrum = (np.pi**2 * (k[:, None] ** 2 + k[None, :] ** 2) + tau**2) ** (-alpha / 2)
    spectrum[0, 0] = 0.0
    bx = np.cos(np.pi * points[:, :1] * k[None, :])  # (n, modes)
    by = np.cos(np.pi * points[:, 1:2] * k[None, :])
    out = []
    for i in indices:
        xi = torch.randn(modes, modes, generator=sample_generator(seed, int(i)), dtype=torch.float64).numpy()
        out.append(((bx @ (xi * spectrum)) * by).sum(axis=1))  # grid: basis_x (xi s) basis_y^T
    return np.stack(out) if out else np.zeros((0, len(points)))


@PROBLEMS.register("darcy2d_mesh", record="mesh", description="Darcy flow -div(a grad u) = f on an unstructured mesh "
                   "of (0,1)^2, u = 0 on the boundary; a = 12/3 from the darcy2d thresholded GRF at the nodes")
@dataclass(frozen=True, kw_only=True)
class DarcyMesh(MeshProblem):
    r"""Darcy flow :math:`-\nabla\cdot(a\nabla u) = f` on an unstructured mesh of :math:`(0,1)^2`, :math:`u = 0`.

    Input ``a`` (nodal, ``a_high`` / ``a_low``), output ``u`` (see the module docstring).

    Parameters
    ----------
    domain
        ``"square"`` (the only domain).
    h
        Mesh size (longest edge of the grid before the jitter), in ``[0.01, 0.2]``.
    element
        ``"P1"`` or ``"P2"``.
    jitter, mesh_seed
        Interior-vertex displacement (grid spacings) and its seed: :func:`unit_square_mesh`.
    a_high, a_low, forcing, tau, alpha
        As :class:`~pdebench.problems.elliptic.Darcy2D`.
    """

    solver: ClassVar[str] = "fem-mesh-darcy"
    equation: ClassVar[str] = "darcy"
    domains: ClassVar[tuple[str, ...]] = ("square",)
    input_fields: ClassVar[tuple[str, ...]] = ("a",)

    domain: str = "square"
    h: float = 0.05
    jitter: float = 0.25
    mesh_seed: int = 0
    a_high: float = 12.0
    a_low: float = 3.0
    forcing: float = 1.0
    tau: float = 3.0
    alpha: float = 2.0

    def validate(self) -> None:
        super().validate()
        require(isinstance(self.jitter, (int, float)) and 0.0 <= self.jitter <= 0.3,
                f"jitter must lie in [0, 0.3] grid spacings, got {self.jitter!r}")
        require(isinstance(self.mesh_seed, int) and self.mesh_seed >= 0, f"mesh_seed must be an integer >= 0, got {self.mesh_seed!r}")
        check_darcy(self)

    def mesh(self) -> MeshTri:
        return unit_square_mesh(float(self.h), float(self.jitter), int(self.mesh_seed))

    def nodes(self) -> np.ndarray:
        return element_nodes(self.mesh(), self.element)

    def mesh_key(self) -> tuple[Any, ...]:
        return (self.boundary_kind(), self.domain, float(self.h), self.element, float(self.jitter), int(self.mesh_seed))

    def sample_inputs(self, seed: int, indices: Sequence[int]) -> dict[str, np.ndarray]:
        psi = neumann_gaussian_field_at(seed, indices, self.nodes(), tau=self.tau, alpha=self.alpha)
        return {"a": np.where(psi >= 0.0, float(self.a_high), float(self.a_low))}
