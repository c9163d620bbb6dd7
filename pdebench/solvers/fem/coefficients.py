"""Moving coefficient fields between a regular grid, mesh vertices and elements.

The darcy2d input is a thresholded permeability on the ``n x n`` output grid; on
:func:`~pdebench.problems.meshes.unit_square` ``(n)`` those grid points are exactly the mesh vertices, so the field
becomes vertex values (:func:`grid_to_vertices`) and then one value per element
(:func:`element_means`): piecewise constant, as a thresholded field is.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
from skfem import MeshTri

from pdebench.problems.meshes import grid_vertex_indices


def grid_to_vertices(mesh: MeshTri, values: np.ndarray, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Vertex values from values on the grid ``x ⊗ y`` whose points are all the mesh's vertices.

    Parameters
    ----------
    mesh
        Mesh whose vertex set equals the grid points (e.g. ``unit_square(n)`` with ``x = y = linspace(0, 1, n)``).
    values
        Shape ``(nx, ny)`` (``indexing="ij"``) or ``(B, nx, ny)``.
    x, y
        Grid coordinates, ``(nx,)`` and ``(ny,)``.

    Returns
    -------
    numpy.ndarray
        Shape ``(n_vertices,)`` or ``(B, n_vertices)``.

    Raises
    ------
    ValueError
        If some vertex is not a grid point or some grid point is not a vertex.
    """
    values = np.asarray(values, dtype=np.float64)
    index = grid_vertex_indices(mesh, x, y)
    if values.shape[-2:] != index.shape:
        raise ValueError(f"values of shape {values.shape} do not match the grid {index.shape}")
    n_vertices = mesh.p.shape[1]
    flat = index.ravel()
    if (flat < 0).any() or np.unique(flat).size != n_vertices:
        raise ValueError("the grid points and the mesh vertices must coincide one to one")
    out = np.empty((*values.shape[:-2], n_vertices))
    out[..., flat] = values.reshape(*values.shape[:-2], -1)
    return out


def element_means(
    mesh: MeshTri, vertex_values: np.ndarray, *, mean: Literal["harmonic", "arithmetic"] = "harmonic"
) -> np.ndarray:
    r"""One value per element from its three vertex values.

    The harmonic mean :math:`3 / \sum_i a_i^{-1}` is the effective conductivity of the element's
    values in series, the choice that matches harmonic face averages in finite differences.

    Parameters
    ----------
    mesh
        The mesh.
    vertex_values
        Shape ``(n_vertices,)`` or ``(B, n_vertices)``; positive for the harmonic mean.
    mean
        ``"harmonic"`` or ``"arithmetic"``.

    Returns
    -------
    numpy.ndarray
        Shape ``(n_elements,)`` or ``(B, n_elements)``.
    """
    values = np.asarray(vertex_values, dtype=np.float64)[..., mesh.t]  # (..., 3, n_elements)
    if mean == "arithmetic":
        return values.mean(axis=-2)
    if mean == "harmonic":
        if values.min() <= 0:
            raise ValueError(f"the harmonic mean needs positive values; minimum value {values.min():g}")
        return 3.0 / (1.0 / values).sum(axis=-2)
    raise ValueError(f"unknown mean {mean!r}; valid: 'harmonic', 'arithmetic'")
