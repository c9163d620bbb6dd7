"""Triangular meshes of the problem domains: builders, validation and grid matching (geometry only).

The mesh problems (:mod:`pdebench.problems.mesh_problems`, :mod:`pdebench.problems.darcy_mesh`) define
their domains with these builders; the FEM solvers (:mod:`pdebench.solvers.fem`) discretise on them.

Every builder returns a :class:`skfem.MeshTri` (first-order triangles, ``p`` of shape ``(2, n_vertices)``,
``t`` of shape ``(3, n_elements)``) that passed :func:`validate_triangulation`.

Orientation note: ``skfem.MeshTri`` sorts the vertex indices of every element (``sort_t=True``, an
invariant scikit-fem relies on), so the orientation of ``mesh.t`` carries no meaning once a mesh exists.
Inverted elements are therefore detected where orientation still means something: on the raw
``(points, triangles)`` arrays given to :func:`triangulation` (or made by a builder, which orients its
triangles counter-clockwise before moving any vertex). A finished mesh can still be checked for
degenerate (near-zero area) elements with :func:`validate_mesh`.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import numpy as np
from scipy.spatial import Delaunay, cKDTree
from skfem import MeshTri

logger = logging.getLogger(__name__)

#: Default holes of :func:`disk_with_holes`: ``((centre_x, centre_y), radius)`` in units of the disk radius.
DEFAULT_HOLES: tuple[tuple[tuple[float, float], float], ...] = (
    ((0.35, 0.2), 0.25),
    ((-0.4, -0.3), 0.2),
    ((-0.25, 0.5), 0.15),
)


def signed_areas(points: np.ndarray, triangles: np.ndarray) -> np.ndarray:
    r"""Signed area of every triangle, positive for counter-clockwise vertex order.

    .. math:: A_e = \tfrac12\,[(x_1-x_0)(y_2-y_0) - (y_1-y_0)(x_2-x_0)]

    Parameters
    ----------
    points
        Vertex coordinates, shape ``(2, n_vertices)``.
    triangles
        Vertex indices, shape ``(3, n_elements)``.

    Returns
    -------
    numpy.ndarray
        Shape ``(n_elements,)``, in squared length units.
    """
    a, b, c = (points[:, triangles[i]] for i in range(3))
    return 0.5 * ((b[0] - a[0]) * (c[1] - a[1]) - (b[1] - a[1]) * (c[0] - a[0]))


def _longest_edges(points: np.ndarray, triangles: np.ndarray) -> np.ndarray:
    """Longest edge length per triangle, shape ``(n_elements,)``."""
    edges = [points[:, triangles[(i + 1) % 3]] - points[:, triangles[i]] for i in range(3)]
    return np.max([np.hypot(*e) for e in edges], axis=0)


def _check_degenerate(points: np.ndarray, triangles: np.ndarray, areas: np.ndarray, rtol: float) -> None:
    # Scale-free: an element is degenerate when its area is tiny next to its longest edge squared
    # (an equilateral triangle has area / edge² ≈ 0.43).
    tiny = np.abs(areas) <= rtol * _longest_edges(points, triangles) ** 2
    if tiny.any():
        e = int(np.flatnonzero(tiny)[0])
        raise ValueError(
            f"degenerate element {e}: area {areas[e]:.3e} is near zero "
            f"(|area| <= {rtol:g} x longest edge²; {int(tiny.sum())} such element(s))"
        )


def validate_triangulation(points: np.ndarray, triangles: np.ndarray, *, rtol: float = 1e-10) -> None:
    """Reject malformed, inverted (clockwise) or degenerate triangles.

    Parameters
    ----------
    points
        Vertex coordinates, shape ``(2, n_vertices)``, finite.
    triangles
        Vertex indices, shape ``(3, n_elements)``, counter-clockwise.
    rtol
        An element is degenerate when ``|area| <= rtol * (longest edge)²``.

    Raises
    ------
    ValueError
        Naming the first offending element index and its signed area.
    """
    points = np.asarray(points, dtype=np.float64)
    triangles = np.asarray(triangles)
    if points.ndim != 2 or points.shape[0] != 2:
        raise ValueError(f"points must have shape (2, n_vertices), got {points.shape}")
    if triangles.ndim != 2 or triangles.shape[0] != 3 or triangles.shape[1] == 0:
        raise ValueError(f"triangles must have shape (3, n_elements) with n_elements > 0, got {triangles.shape}")
    if not np.issubdtype(triangles.dtype, np.integer):
        raise ValueError(f"triangles must hold integer vertex indices, got dtype {triangles.dtype}")
    if not np.isfinite(points).all():
        raise ValueError("points contain non-finite coordinates")
    if triangles.min() < 0 or triangles.max() >= points.shape[1]:
        raise ValueError(
            f"triangle vertex indices must lie in [0, {points.shape[1]}), got [{triangles.min()}, {triangles.max()}]"
        )
    areas = signed_areas(points, triangles)
    _check_degenerate(points, triangles, areas, rtol)
    inverted = areas < 0
    if inverted.any():
        e = int(np.flatnonzero(inverted)[0])
        raise ValueError(
            f"inverted element {e}: signed area {areas[e]:.3e} < 0 (vertices must be counter-clockwise; "
            f"{int(inverted.sum())} inverted element(s))"
        )


def validate_mesh(mesh: MeshTri, *, rtol: float = 1e-10) -> None:
    """Reject degenerate elements of an existing mesh (orientation is not checkable, see module doc).

    Raises
    ------
    ValueError
        Naming the first element with ``|area| <= rtol * (longest edge)²`` and its area.
    """
    _check_degenerate(mesh.p, mesh.t, signed_areas(mesh.p, mesh.t), rtol)


def oriented(points: np.ndarray, triangles: np.ndarray) -> np.ndarray:
    """``triangles`` with the last two vertices swapped wherever the order is clockwise, ``(3, n_elements)``.

    Only for triangulations known to be valid (e.g. scikit-fem's sorted ``mesh.t``): it makes any
    non-degenerate triangle counter-clockwise, so it must not be applied to user input.
    """
    triangles = np.array(triangles, copy=True)
    flip = signed_areas(points, triangles) < 0
    triangles[1, flip], triangles[2, flip] = triangles[2, flip].copy(), triangles[1, flip].copy()
    return triangles


def triangulation(points: np.ndarray, triangles: np.ndarray, *, rtol: float = 1e-10) -> MeshTri:
    """A validated :class:`skfem.MeshTri` from raw arrays.

    Parameters
    ----------
    points
        Vertex coordinates, shape ``(2, n_vertices)``.
    triangles
        Counter-clockwise vertex indices, shape ``(3, n_elements)``.
    rtol
        Degeneracy tolerance of :func:`validate_triangulation`.

    Raises
    ------
    ValueError
        For inverted or degenerate elements (see :func:`validate_triangulation`).
    """
    validate_triangulation(points, triangles, rtol=rtol)
    return MeshTri(
        np.ascontiguousarray(points, dtype=np.float64), np.ascontiguousarray(triangles, dtype=np.int32)
    )


def rectangle(x: np.ndarray, y: np.ndarray) -> MeshTri:
    """Tensor-product mesh with vertices at every ``(x_i, y_j)``, each cell split into two triangles.

    Parameters
    ----------
    x, y
        Strictly increasing node coordinates per axis, shapes ``(nx,)`` and ``(ny,)``, at least 2 each.
    """
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    for name, c in (("x", x), ("y", y)):
        if c.ndim != 1 or c.size < 2 or not np.all(np.diff(c) > 0):
            raise ValueError(f"{name} must be a strictly increasing 1-D array of >= 2 coordinates, got {c}")
    mesh = MeshTri.init_tensor(x, y)
    return triangulation(mesh.p, oriented(mesh.p, mesh.t))


def unit_square(n: int, *, subdivisions: int = 1) -> MeshTri:
    """Structured mesh of ``[0, 1]²`` whose vertices include the ``n x n`` grid ``linspace(0, 1, n)²``.

    The output grid of a darcy2d sample (e.g. ``n = 64, 85, 128``, boundary points included) is then a
    set of mesh vertices, so a P1 solution is sampled on it exactly (:class:`~.sampling.GridSampler`).

    Parameters
    ----------
    n
        Grid points per axis (>= 2); spacing ``1 / (n - 1)``.
    subdivisions
        Each grid cell is split into ``subdivisions²`` squares (mesh spacing ``1 / ((n-1) s)``); the grid
        points stay vertices.
    """
    if n < 2 or subdivisions < 1:
        raise ValueError(f"need n >= 2 and subdivisions >= 1, got n={n}, subdivisions={subdivisions}")
    c = np.linspace(0.0, 1.0, (n - 1) * subdivisions + 1)
    return rectangle(c, c)


def l_shape(refinements: int = 3, *, jitter: float = 0.0, seed: int = 0) -> MeshTri:
    """Mesh of the L-shaped domain ``(-1, 1)² \\ [0, 1]²`` (re-entrant corner at the origin).

    Built from scikit-fem's six-triangle ``MeshTri.init_lshaped`` by ``refinements`` uniform refinements
    (``6·4^refinements`` elements, legs of length ``2^-refinements``). With ``jitter > 0`` every interior
    vertex moves by a random offset of at most ``jitter`` times the leg length, which breaks the
    structured pattern (and the super-convergence it can cause) while keeping shape regularity.

    Parameters
    ----------
    refinements
        Number of uniform refinements (>= 0).
    jitter
        Maximal interior-vertex displacement relative to the leg length, in ``[0, 0.3]``.
    seed
        Seed of the jitter's ``numpy.random.Generator``.
    """
    if refinements < 0:
        raise ValueError(f"refinements must be >= 0, got {refinements}")
    if not 0.0 <= jitter <= 0.3:
        raise ValueError(f"jitter must lie in [0, 0.3] (larger moves may invert elements), got {jitter}")
    mesh = MeshTri.init_lshaped().refined(refinements)
    points = mesh.p.copy()
    triangles = oriented(points, mesh.t)
    if jitter > 0:
        h = 2.0**-refinements
        interior = mesh.interior_nodes()
        rng = np.random.default_rng(seed)
        radius = jitter * h * np.sqrt(rng.uniform(size=interior.size))
        angle = rng.uniform(0.0, 2.0 * np.pi, size=interior.size)
        points[:, interior] += radius * np.stack([np.cos(angle), np.sin(angle)])
    return triangulation(points, triangles)


def _circle_points(centre: Sequence[float], radius: float, n: int) -> np.ndarray:
    theta = 2.0 * np.pi * np.arange(n) / n
    return np.asarray(centre, dtype=np.float64)[:, None] + radius * np.stack([np.cos(theta), np.sin(theta)])


def disk_with_holes(
    h: float,
    *,
    radius: float = 1.0,
    holes: Sequence[tuple[Sequence[float], float]] = DEFAULT_HOLES,
    gap: float = 0.75,
) -> MeshTri:
    """Unstructured mesh of a disk with circular holes, mesh size about ``h``.

    Construction (a Delaunay mesh whose boundary edges are guaranteed):

    1. points on the outer circle and on every hole circle, spaced ``<= h`` along the arc;
    2. a hexagonal lattice of spacing ``h``, keeping only points at least ``gap·h`` inside the disk and
       outside every hole;
    3. ``scipy.spatial.Delaunay`` of all points, then the triangles whose centroid lies inside a hole
       are removed.

    Every boundary chord is a Gabriel edge (its diametral circle, radius ``<= h/2``, holds no other
    point because lattice points keep a distance ``gap·h > h/2`` from the circles), so it is an edge of
    the Delaunay triangulation; the outer circle's points are the convex hull. Hence the boundary of
    the mesh is exactly the inscribed polygons of the circles. Minimal angles measured: about 29-32
    degrees for ``h <= 0.1``.

    Parameters
    ----------
    h
        Target edge length (> 0).
    radius
        Outer disk radius, centred at the origin.
    holes
        ``((centre_x, centre_y), hole_radius)`` per hole, in absolute units; holes must keep a distance
        of at least ``h`` from the outer circle and from each other (so no circle's point falls in
        another circle's chord's diametral disk).
    gap
        Minimal lattice-point distance to any circle, in units of ``h`` (in ``(0.55, 1]``).
    """
    if h <= 0 or radius <= 0 or not 0.55 < gap <= 1.0:
        raise ValueError(f"need h > 0, radius > 0 and gap in (0.55, 1], got h={h}, radius={radius}, gap={gap}")
    holes = [(np.asarray(c, dtype=np.float64), float(r)) for c, r in holes]
    for i, (c, r) in enumerate(holes):
        if r <= 0 or np.hypot(*c) + r > radius - h:
            raise ValueError(
                f"hole {i} (centre ({c[0]:g}, {c[1]:g}), radius {r:g}) must have a positive radius and keep a "
                f"distance >= h={h:g} from the outer circle of radius {radius:g}"
            )
        for j, (c2, r2) in enumerate(holes[:i]):
            if np.hypot(*(c - c2)) < r + r2 + h:
                raise ValueError(f"holes {j} and {i} overlap or are closer than h={h:g}")
    pieces = [_circle_points((0.0, 0.0), radius, max(16, int(np.ceil(2 * np.pi * radius / h))))]
    pieces += [_circle_points(c, r, max(8, int(np.ceil(2 * np.pi * r / h)))) for c, r in holes]
    dy = h * np.sqrt(3.0) / 2.0
    rows = int(np.ceil(radius / dy))
    cols = int(np.ceil(radius / h)) + 1
    j, i = np.meshgrid(np.arange(-rows, rows + 1), np.arange(-cols, cols + 1), indexing="ij")
    lx = ((i + 0.5 * (j % 2)) * h).ravel()
    ly = (j * dy).ravel()
    keep = np.hypot(lx, ly) <= radius - gap * h
    for c, r in holes:
        keep &= np.hypot(lx - c[0], ly - c[1]) >= r + gap * h
    pieces.append(np.stack([lx[keep], ly[keep]]))
    points = np.hstack(pieces)
    triangles = Delaunay(points.T).simplices.T
    centroids = points[:, triangles].mean(axis=1)
    inside = np.ones(triangles.shape[1], dtype=bool)
    for c, r in holes:
        inside &= np.hypot(centroids[0] - c[0], centroids[1] - c[1]) > r
    triangles = oriented(points, triangles[:, inside])
    logger.debug("disk_with_holes: h=%g, %d vertices, %d elements", h, points.shape[1], triangles.shape[1])
    return triangulation(points, triangles)


def mesh_size(mesh: MeshTri) -> float:
    """The mesh size ``h``: the longest edge length over all elements."""
    return float(_longest_edges(mesh.p, mesh.t).max())


def grid_vertex_indices(mesh: MeshTri, x: np.ndarray, y: np.ndarray, *, atol: float = 1e-12) -> np.ndarray:
    """Vertex index of every grid point ``(x_i, y_j)``, or ``-1`` where the point is no vertex.

    Parameters
    ----------
    mesh
        The mesh.
    x, y
        Grid coordinates, shapes ``(nx,)`` and ``(ny,)``.
    atol
        Matching tolerance, relative to the mesh's bounding-box diameter.

    Returns
    -------
    numpy.ndarray
        Integer array of shape ``(nx, ny)`` (``indexing="ij"``: ``x`` first).
    """
    gx, gy = np.meshgrid(np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64), indexing="ij")
    diameter = float(np.hypot(*(mesh.p.max(axis=1) - mesh.p.min(axis=1))))
    distance, index = cKDTree(mesh.p.T).query(np.stack([gx.ravel(), gy.ravel()], axis=1))
    index = np.where(distance <= atol * diameter, index, -1)
    return index.reshape(gx.shape)
