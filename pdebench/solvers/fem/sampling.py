"""Sampling finite-element functions on regular grids (the darcy2d output, 64² / 85² / 128²).

A :class:`GridSampler` is built once per (space, grid) as one sparse matrix ``S`` of shape
``(n_points * n_components, N)``; sampling any number of solutions is then one sparse product.

* Grid points that are mesh vertices read the vertex DOF directly (exact: the FE function's value
  there is its nodal coefficient, for P1 and P2). On :func:`~pdebench.problems.meshes.unit_square` ``(n)`` every
  point of the ``n x n`` grid is a vertex.
* Other points are located with matplotlib's trapezoid-map point locator and the element's basis
  functions are evaluated there (what ``CellBasis.probes`` does, without its fall-back that compares
  every point with every element). Points outside the mesh get ``NaN`` (see :attr:`GridSampler.inside`).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import scipy.sparse as sp

from pdebench.problems.meshes import grid_vertex_indices
from pdebench.solvers.fem.spaces import FunctionSpace


@dataclass(frozen=True, eq=False)
class GridSampler:
    """Evaluate FE functions of ``space`` on the grid ``x ⊗ y`` (``indexing="ij"``, ``x`` first).

    Parameters
    ----------
    space
        Scalar or vector space.
    x, y
        Grid coordinates, shapes ``(nx,)`` and ``(ny,)``.

    Attributes
    ----------
    matrix
        CSR of shape ``(nx * ny * n_components, N)``, rows ordered point-major, component-minor.
    inside
        ``(nx, ny)`` bool, False where the point lies outside the mesh (value ``NaN``).
    exact_nodes
        ``(nx, ny)`` bool, True where the point is a mesh vertex (value read exactly).

    Examples
    --------
    >>> import numpy as np
    >>> from pdebench.solvers.fem import FunctionSpace, GridSampler, unit_square
    >>> space = FunctionSpace(unit_square(5), "P1")
    >>> grid = np.linspace(0, 1, 5)
    >>> sampler = GridSampler(space, grid, grid)
    >>> bool(sampler.exact_nodes.all())
    True
    >>> sampler(space.interpolate(lambda x: x[0])).shape
    (5, 5)
    """

    space: FunctionSpace
    x: np.ndarray
    y: np.ndarray
    matrix: sp.csr_matrix = field(init=False, repr=False)
    inside: np.ndarray = field(init=False, repr=False)
    exact_nodes: np.ndarray = field(init=False, repr=False)

    def __post_init__(self) -> None:
        x = np.asarray(self.x, dtype=np.float64)
        y = np.asarray(self.y, dtype=np.float64)
        object.__setattr__(self, "x", x)
        object.__setattr__(self, "y", y)
        vertex = grid_vertex_indices(self.space.mesh, x, y).ravel()
        gx, gy = np.meshgrid(x, y, indexing="ij")
        points = np.stack([gx.ravel(), gy.ravel()])
        n_points = points.shape[1]
        cells = np.full(n_points, -1, dtype=np.int64)
        off_vertex = vertex < 0
        if off_vertex.any():
            cells[off_vertex] = _locate(self.space, points[:, off_vertex])
        inside = (vertex >= 0) | (cells >= 0)

        basis = self.space.basis
        components = self.space.components()
        bases = basis.split_bases() if self.space.vector else [basis]
        blocks = []
        for dofs, component_basis in zip(components, bases):
            rows, cols, vals = [], [], []
            at_vertex = np.flatnonzero(vertex >= 0)
            # Vertex DOFs of this component: nodal_dofs[0, v] of the component's own numbering.
            rows.append(at_vertex)
            cols.append(dofs[component_basis.nodal_dofs[0, vertex[at_vertex]]])
            vals.append(np.ones(at_vertex.size))
            located = np.flatnonzero(cells >= 0)
            if located.size:
                r, c, v = _evaluate(component_basis, points[:, located], cells[located])
                rows.append(located[r])
                cols.append(dofs[c])
                vals.append(v)
            block = sp.csr_matrix(
                (np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))), shape=(n_points, self.space.ndofs)
            )
            blocks.append(block)
        # Interleave components: row p * n_comp + k.
        n_comp = len(blocks)
        stacked = sp.vstack(blocks).tocsr()
        order = np.arange(n_points * n_comp).reshape(n_comp, n_points).T.ravel()
        object.__setattr__(self, "matrix", stacked[order])
        object.__setattr__(self, "inside", inside.reshape(gx.shape))
        object.__setattr__(self, "exact_nodes", (vertex >= 0).reshape(gx.shape))

    def __call__(self, u: np.ndarray) -> np.ndarray:
        """Sample DOF vectors on the grid.

        Parameters
        ----------
        u
            Shape ``(N,)`` or ``(B, N)``.

        Returns
        -------
        numpy.ndarray
            Scalar space: ``(nx, ny)`` or ``(B, nx, ny)``; vector space: ``(..., nx, ny, 2)``
            (channels last). ``NaN`` outside the mesh.
        """
        u = np.asarray(u)
        if u.shape[-1] != self.space.ndofs or u.ndim not in (1, 2):
            raise ValueError(f"expected DOF vectors of shape (N,) or (B, N) with N={self.space.ndofs}, got {u.shape}")
        values = (self.matrix @ u.T).T  # (..., n_points * n_comp)
        shape = (*u.shape[:-1], self.x.size, self.y.size) + ((2,) if self.space.vector else ())
        values = values.reshape(shape)
        mask = ~self.inside if not self.space.vector else ~self.inside[..., None].repeat(2, axis=-1)
        if mask.any():
            values = np.where(mask, np.nan, values)
        return values


def _locate(space: FunctionSpace, points: np.ndarray) -> np.ndarray:
    """Index of the element containing each point, ``-1`` outside; points ``(2, n)`` -> ``(n,)``."""
    from matplotlib.tri import Triangulation  # deferred: matplotlib is slow to import, needed only off-vertex

    mesh = space.mesh
    finder = Triangulation(mesh.p[0], mesh.p[1], mesh.t.T).get_trifinder()
    return np.asarray(finder(points[0], points[1]), dtype=np.int64)


def _evaluate(basis, points: np.ndarray, cells: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """COO triplets (point row, DOF column, basis value) of a scalar basis at located points."""
    reference = basis.mapping.invF(points[:, :, np.newaxis], tind=cells)
    values = np.array(
        [np.asarray(basis.elem.gbasis(basis.mapping, reference, k, tind=cells)[0]).reshape(-1) for k in range(basis.Nbfun)]
    )  # (n_basis, n_points)
    rows = np.tile(np.arange(points.shape[1]), basis.Nbfun)
    cols = basis.element_dofs[:, cells].reshape(-1)
    return rows, cols, values.reshape(-1)
