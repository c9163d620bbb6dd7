r"""Graphs for message passing: one edge convention for meshes, particles and grids.

Every graph of the package is built here (the mesh files' ``to_pyg``, the particle files' ``to_pyg``,
:class:`~pdebench.data.graph_datamodule.GraphDataModule` and the model-side builders), with the
convention that :class:`~pdebench.models.mppde.MPPDE` consumes -- the one
:class:`~pdebench.data.graph_datamodule.GraphDataModule` fed the trained graph models:

``edge_index`` ``(2, E)`` int64
    torch_geometric ``flow="source_to_target"``: row 0 is the source ``j`` (the neighbour that sends
    the message), row 1 the target ``i`` (the node that receives :math:`m_{ij}`). Edges are sorted by
    target, then source; no self loops (unless ``loop=True`` on the generic builders). Mesh and particle
    graphs are symmetric: ``(j, i)`` is present exactly when ``(i, j)`` is.
``edge_attr`` ``(E, d)`` float32
    The displacement :math:`(x_i - x_j) / \ell`, **target minus source** (``x_i = pos[edge_index[1]]``),
    minimum image on periodic axes, computed in float64 and cast once. No norm column: the model
    sees :math:`|x_i - x_j|` only through the components. The length unit :math:`\ell` is

    * meshes (:func:`mesh_graph`) and grids (:func:`grid_graph`): 1, i.e. the coordinate unit of the
      nodes (metres for the FEM problems);
    * particles (:func:`particle_edges`): the interaction radius ``r`` of the file (m), so every
      edge has :math:`|\text{edge\_attr}| < 1`.

Particle graphs join every ordered pair with :math:`|x_i - x_j| < r` (strict), minimum image on the
periodic axes of a :class:`ParticleBox`, found by a vectorised cell list (:func:`neighbour_pairs`,
which the SPH solver uses too; :func:`brute_force_pairs` is its O(N^2) reference, same pairs bit for bit).
The sample graphs (:class:`torch_geometric.data.Data`) are assembled here as well: a mesh sample
(:class:`MeshGraph`, :func:`mesh_to_pyg`), a particle state (:func:`particle_graph`) and a stored
particle frame (:func:`frame_graph`).

The *matrix graph* of a sparse matrix :math:`A` (:func:`matrix_graph`, :class:`MatrixGraph`: the
learned preconditioners' input) follows the same convention with the matrix in place of positions:
nodes are the unknowns, an edge ``j -> i`` for every off-diagonal non-zero :math:`A_{ij}` (so
``edge_index`` is the pattern of :math:`A` without its diagonal, sorted by target then source: CSR
order), the edge feature is the entry :math:`A_{ij}` itself (float64, ``(E,)``; the models scale it)
and the diagonal :math:`A_{ii}` is a node value. This module imports torch, torch_geometric, numpy and
:mod:`pdebench.core.particles` only.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import torch
from torch import Tensor
from torch_geometric.data import Data

from pdebench.core.particles import FLUID, ParticleTrajectory

__all__ = [
    "BOX_TOLERANCE",
    "MatrixGraph",
    "MeshGraph",
    "ParticleBox",
    "boundary_indices",
    "check_cells",
    "frame_acceleration",
    "frame_graph",
    "frame_index",
    "marker_mask",
    "matrix_graph",
    "mesh_to_pyg",
    "particle_frame_graph",
    "particle_graph",
    "reference_density",
    "grid_graph",
    "knn_graph",
    "mesh_edges",
    "mesh_graph",
    "brute_force_pairs",
    "neighbour_pairs",
    "particle_edges",
    "radius_graph",
    "radius_graph_edge_index",
]

#: Relative tolerance (of the box length) for particles outside ``[lower, upper]``.
BOX_TOLERANCE = 1e-9
#: Cells are made at least ``radius * (1 + CELL_MARGIN)`` wide (guards rounding in the cell index).
CELL_MARGIN = 1e-9
#: Dense cell table up to this many cells per particle (plus a fixed allowance); binary search beyond.
DENSE_CELLS_PER_PARTICLE = 8
#: Pairwise-distance blocks of the generic builders hold about this many entries.
BLOCK_ENTRIES = 4_000_000

P2Edges = Literal["refined", "corners"]

# Local node pairs of one cell that become graph edges.
_P1_PAIRS = ((0, 1), (1, 2), (2, 0))
_P2_REFINED_PAIRS = ((0, 3), (3, 1), (1, 4), (4, 2), (2, 5), (5, 0), (3, 4), (4, 5), (5, 3))
_P2_CORNER_PAIRS = ((0, 1), (1, 2), (2, 0), (0, 3), (3, 1), (1, 4), (4, 2), (2, 5), (5, 0))


def _edge_order(src: Tensor, dst: Tensor, n: int) -> Tensor:
    """The permutation ``(E,)`` that sorts edges ``src -> dst`` by target, then source."""
    return torch.argsort(dst * max(n, 1) + src)


def _sort_edges(src: Tensor, dst: Tensor, n: int) -> Tensor:
    """``edge_index = [src, dst]`` ``(2, E)`` sorted by target, then source."""
    order = _edge_order(src, dst, n)
    return torch.stack([src[order], dst[order]])


# --------------------------------------------------------------------------------------------------
# Particles
# --------------------------------------------------------------------------------------------------


def _check_radius(radius: Any) -> float:
    try:
        value = float(radius)
    except (TypeError, ValueError):
        raise ValueError(f"radius must be a positive number, got {radius!r}") from None
    if not (math.isfinite(value) and value > 0.0):
        raise ValueError(f"radius must be positive and finite, got {radius!r}")
    return value


@dataclass(frozen=True)
class ParticleBox:
    """The domain box of a particle system: corners, periodic axes and the interaction radius.

    Parameters
    ----------
    lower, upper : tuple of float, length d
        Box corners (m), ``d`` in 1, 2, 3, finite, ``lower < upper`` on every axis.
    periodic : tuple of bool, length d
        Periodic axes; such an axis must be at least ``2 radius`` long (the minimum image is then the
        only image within the radius).
    radius : float
        Interaction radius ``r`` (m), > 0: particles closer than ``r`` are joined, and ``r`` is the
        length unit of the particle ``edge_attr``.
    """

    lower: tuple[float, ...]
    upper: tuple[float, ...]
    periodic: tuple[bool, ...]
    radius: float

    @classmethod
    def of(cls, lower: Any, upper: Any, periodic: Any, radius: Any) -> ParticleBox:
        """Box from array-likes (``periodic=None``: no periodic axis), validated."""
        lo = tuple(float(v) for v in np.asarray(lower, dtype=np.float64).reshape(-1))
        hi = tuple(float(v) for v in np.asarray(upper, dtype=np.float64).reshape(-1))
        per = (False,) * len(lo) if periodic is None else tuple(bool(v) for v in np.asarray(periodic).reshape(-1))
        return cls(lo, hi, per, _check_radius(radius))

    def __post_init__(self) -> None:
        lo, hi = np.asarray(self.lower, dtype=np.float64), np.asarray(self.upper, dtype=np.float64)
        d = lo.shape[0]
        if d not in (1, 2, 3) or hi.shape != (d,):
            raise ValueError(f"lower and upper must both have d = 1, 2 or 3 entries, got {lo.tolist()} and {hi.tolist()}")
        if not (np.isfinite(lo).all() and np.isfinite(hi).all() and (hi > lo).all()):
            raise ValueError(f"need finite lower < upper on every axis, got lower={lo.tolist()}, upper={hi.tolist()}")
        if len(self.periodic) != d:
            raise ValueError(f"periodic needs {d} entries (one per axis), got {list(self.periodic)}")
        radius = _check_radius(self.radius)
        for axis in range(d):
            if self.periodic[axis] and hi[axis] - lo[axis] < 2.0 * radius:
                raise ValueError(
                    f"periodic axis {axis} has box length {hi[axis] - lo[axis]:g} < 2 * radius = {2 * radius:g}; "
                    "the neighbour search needs at least 2 radius on periodic axes"
                )

    @property
    def dim(self) -> int:
        """Spatial dimension ``d``."""
        return len(self.lower)

    def first_outside(self, positions: Tensor | np.ndarray) -> tuple[int, ...] | None:
        """Index ``(..., particle, axis)`` of the first coordinate outside the box on a non-periodic
        axis (beyond ``BOX_TOLERANCE`` of the box length), or ``None``; ``positions`` ``(..., N, d)``."""
        x = positions.to(torch.float64) if isinstance(positions, Tensor) else torch.from_numpy(
            np.array(positions, dtype=np.float64))
        lo = torch.tensor(self.lower, dtype=torch.float64, device=x.device)
        hi = torch.tensor(self.upper, dtype=torch.float64, device=x.device)
        tol = BOX_TOLERANCE * (hi - lo)
        per = torch.tensor(self.periodic, device=x.device)
        outside = ((x < lo - tol) | (x > hi + tol)) & ~per
        if not bool(outside.any()):
            return None
        return tuple(int(k) for k in outside.nonzero()[0])

    def inside(self, positions: Tensor) -> Tensor:
        """Wrap periodic axes into ``[lower, upper]``, then clamp every axis onto the box;
        ``(..., d) -> (..., d)`` in the dtype of ``positions``."""
        lo = torch.tensor(self.lower, dtype=positions.dtype, device=positions.device)
        hi = torch.tensor(self.upper, dtype=positions.dtype, device=positions.device)
        per = torch.tensor(self.periodic, device=positions.device)
        wrapped = torch.where(per, lo + torch.remainder(positions - lo, hi - lo), positions)
        return torch.minimum(torch.maximum(wrapped, lo), hi)


def _validate(positions: Tensor, radius: float, lower: Sequence[float], upper: Sequence[float],
              periodic: Sequence[bool] | None) -> tuple[Tensor, Tensor, list[bool], float]:
    """Check the arguments of :func:`neighbour_pairs` (the box as :class:`ParticleBox` does); return
    ``lower``, ``upper`` ``(d,)`` in the dtype of ``positions``, periodic, radius."""
    if not isinstance(positions, Tensor) or positions.ndim != 2 or not positions.is_floating_point():
        raise ValueError("positions must be a floating-point tensor of shape (N, d), got "
                         f"{type(positions).__name__} {tuple(getattr(positions, 'shape', ()))} "
                         f"{getattr(positions, 'dtype', '')}")
    n, d = positions.shape
    if d not in (1, 2, 3):
        raise ValueError(f"positions must have d = 1, 2 or 3 columns, got {d}")
    if len(lower) != d or len(upper) != d:
        raise ValueError(f"lower and upper need {d} entries (one per axis), got {list(lower)} and {list(upper)}")
    box = ParticleBox.of(lower, upper, periodic, radius)  # the box's own checks
    lo = torch.tensor(box.lower, dtype=positions.dtype, device=positions.device)
    hi = torch.tensor(box.upper, dtype=positions.dtype, device=positions.device)
    per, radius, length = list(box.periodic), box.radius, hi - lo
    if n:
        tol = BOX_TOLERANCE * length
        bad = ((positions < lo - tol) | (positions > hi + tol) | ~torch.isfinite(positions)).any(dim=1)
        if bool(bad.any()):
            index = int(bad.nonzero()[0, 0])
            count = int(bad.sum())
            raise ValueError(
                f"particle {index} at {positions[index].tolist()} lies outside the box "
                f"[{list(lower)}, {list(upper)}]" + (f" ({count - 1} more outside)" if count > 1 else ""))
    return lo, hi, per, radius


def _minimum_image(disp: Tensor, length: Tensor, periodic: list[bool]) -> Tensor:
    """Wrap displacements ``(..., d)`` to the minimum image on the periodic axes (in place)."""
    for axis, p in enumerate(periodic):
        if p:
            dx = disp[..., axis]
            dx -= length[axis] * torch.round(dx / length[axis])
    return disp


def _squared_norm(disp: Tensor) -> Tensor:
    """``|disp|^2`` over the last axis, summed axis by axis in a fixed order."""
    out = disp[..., 0] * disp[..., 0]
    for axis in range(1, disp.shape[-1]):
        out = out + disp[..., axis] * disp[..., axis]
    return out


def _axis_offsets(cells: int, periodic: bool) -> list[int]:
    """Neighbour-cell offsets along one axis, without cells that coincide after periodic wrapping."""
    if periodic and cells < 3:
        return list(range(cells))  # 1 cell: {0}; 2 cells: {0, +1} (+1 and -1 are the same cell)
    return [-1, 0, 1]


def neighbour_pairs(positions: Tensor, radius: float, lower: Sequence[float], upper: Sequence[float],
                    periodic: Sequence[bool] | None = None) -> tuple[Tensor, Tensor, Tensor]:
    """All ordered pairs of particles closer than ``radius``, by a vectorised cell list.

    Each axis of the box is cut into ``floor(L / (radius (1 + 1e-9)))`` (at least 1) cells of size
    ``>= radius``; each particle is tested against the particles of its own and the adjacent cells.

    Parameters
    ----------
    positions : Tensor, shape (N, d), floating point
        Particle positions, ``d`` in 1, 2, 3, inside ``[lower, upper]`` (tolerance ``BOX_TOLERANCE``
        of the box length).
    radius : float
        Search radius (length); pairs with ``|x_i - x_j| < radius``.
    lower, upper : sequence of float, length d
        Box corners.
    periodic : sequence of bool, length d, optional
        Periodic axes (default: none). The box must be ``>= 2 radius`` long on a periodic axis.

    Returns
    -------
    i, j : Tensor, shape (P,), int64
        Pair indices, ``i != j``; both ``(i, j)`` and ``(j, i)`` are present. Deterministic order,
        grouped by the neighbour-cell offset (not sorted).
    displacement : Tensor, shape (P, d), dtype of ``positions``
        ``x_i - x_j``, minimum image on periodic axes.

    Raises
    ------
    ValueError
        Bad shapes, ``radius <= 0``, a particle outside the box (named with its position), or a
        periodic axis shorter than ``2 radius``.
    """
    lo, hi, per, radius = _validate(positions, radius, lower, upper, periodic)
    n, d = positions.shape
    device = positions.device
    empty = torch.empty(0, dtype=torch.long, device=device)
    if n < 2:
        return empty, empty.clone(), positions.new_empty((0, d))
    length = hi - lo
    cells = [max(1, math.floor(float(length[a]) / (radius * (1.0 + CELL_MARGIN)))) for a in range(d)]
    cell_size = length / torch.tensor(cells, dtype=positions.dtype, device=device)
    cells_t = torch.tensor(cells, dtype=torch.long, device=device)
    coords = torch.floor((positions - lo) / cell_size).to(torch.long)
    coords = torch.minimum(torch.clamp(coords, min=0), cells_t - 1)  # upper face and tolerance -> edge cell
    strides = [1] * d
    for a in range(d - 2, -1, -1):
        strides[a] = strides[a + 1] * cells[a + 1]
    strides_t = torch.tensor(strides, dtype=torch.long, device=device)
    total_cells = strides[0] * cells[0]

    cell_id = (coords * strides_t).sum(dim=1)
    order = torch.argsort(cell_id, stable=True)
    sorted_id = cell_id[order]
    pos_sorted = positions[order]
    coords_sorted = coords[order]
    dense = total_cells <= DENSE_CELLS_PER_PARTICLE * n + 4096
    if dense:
        counts_table = torch.bincount(sorted_id, minlength=total_cells)
        starts_table = torch.cumsum(counts_table, 0) - counts_table

    offsets = list(itertools.product(*[_axis_offsets(cells[a], per[a]) for a in range(d)]))
    r2 = radius * radius
    out_i, out_j, out_d = [], [], []
    arange_n = torch.arange(n, device=device)
    for offset in offsets:
        nb = coords_sorted + torch.tensor(offset, dtype=torch.long, device=device)
        valid = torch.ones(n, dtype=torch.bool, device=device)
        for a in range(d):
            if per[a]:
                nb[:, a] %= cells[a]
            elif offset[a] != 0:
                valid &= (nb[:, a] >= 0) & (nb[:, a] < cells[a])
        nb_id = (nb * strides_t).sum(dim=1)
        if dense:
            nb_id = torch.where(valid, nb_id, 0)
            start, count = starts_table[nb_id], counts_table[nb_id]
        else:
            start = torch.searchsorted(sorted_id, nb_id, right=False)
            count = torch.searchsorted(sorted_id, nb_id, right=True) - start
        count = torch.where(valid, count, 0)
        total = int(count.sum())
        if total == 0:
            continue
        a_idx = torch.repeat_interleave(arange_n, count, output_size=total)  # query, sorted index
        first = torch.cumsum(count, 0) - count
        within = torch.arange(total, device=device) - torch.repeat_interleave(first, count, output_size=total)
        b_idx = torch.repeat_interleave(start, count, output_size=total) + within  # candidate, sorted index
        disp = pos_sorted[a_idx] - pos_sorted[b_idx]
        _minimum_image(disp, length, per)
        keep = (_squared_norm(disp) < r2) & (a_idx != b_idx)
        out_i.append(order[a_idx[keep]])
        out_j.append(order[b_idx[keep]])
        out_d.append(disp[keep])
    if not out_i:
        return empty, empty.clone(), positions.new_empty((0, d))
    return torch.cat(out_i), torch.cat(out_j), torch.cat(out_d)


def brute_force_pairs(positions: Tensor, radius: float, lower: Sequence[float], upper: Sequence[float],
                      periodic: Sequence[bool] | None = None) -> tuple[Tensor, Tensor, Tensor]:
    """All ordered pairs closer than ``radius`` by testing every pair: O(N^2) time, chunked memory.

    Reference for the tests and the benchmark; the arguments, checks and result of
    :func:`neighbour_pairs`, with the pairs sorted by ``i``, then ``j``. Rows are processed in chunks of
    about :data:`BLOCK_ENTRIES` ``/ N`` particles, so memory stays O(N) (a few tens of MB).
    """
    lo, hi, per, radius = _validate(positions, radius, lower, upper, periodic)
    n, d = positions.shape
    length = hi - lo
    r2 = radius * radius
    chunk = max(1, BLOCK_ENTRIES // max(n, 1))
    out_i, out_j, out_d = [], [], []
    for start in range(0, n, chunk):
        rows = positions[start:start + chunk]
        disp = rows[:, None, :] - positions[None, :, :]
        _minimum_image(disp, length, per)
        close = _squared_norm(disp) < r2
        ii, jj = close.nonzero(as_tuple=True)
        ii = ii + start
        not_self = ii != jj
        out_i.append(ii[not_self])
        out_j.append(jj[not_self])
        out_d.append(disp[close][not_self])
    if not out_i:
        empty = torch.empty(0, dtype=torch.long, device=positions.device)
        return empty, empty.clone(), positions.new_empty((0, d))
    return torch.cat(out_i), torch.cat(out_j), torch.cat(out_d)


def radius_graph_edge_index(i: Tensor, j: Tensor) -> Tensor:
    """Pairs as a torch_geometric ``edge_index`` (``flow="source_to_target"``).

    Parameters
    ----------
    i, j : Tensor, shape (E,), int64
        Pairs from :func:`neighbour_pairs` (``i`` the particle, ``j`` its neighbour).

    Returns
    -------
    Tensor, shape (2, E), int64
        ``edge_index = [j, i]``: row 0 the source (neighbour ``j``), row 1 the target (``i``), so a
        message passes from each neighbour to the particle, as in ``torch_geometric.nn.radius_graph``;
        ``pos[edge_index[1]] - pos[edge_index[0]]`` is the displacement ``x_i - x_j`` (before the
        minimum image).
    """
    if i.shape != j.shape or i.ndim != 1:
        raise ValueError(f"i and j must be 1-D tensors of equal length, got shapes {tuple(i.shape)} and {tuple(j.shape)}")
    return torch.stack([j, i]).to(torch.long)


def particle_edges(positions: Tensor, box: ParticleBox) -> tuple[Tensor, Tensor, Tensor]:
    r"""The radius graph of one particle state, in the convention of this module.

    Parameters
    ----------
    positions : Tensor, shape (N, d)
        Positions (m); wrapped into the box on periodic axes and clamped onto it on the others
        (:meth:`ParticleBox.inside`) in float64 before the search.
    box : ParticleBox
        Box, periodic axes and the radius ``r``: edges join particles with :math:`|x_i - x_j| < r`.

    Returns
    -------
    pos : Tensor, shape (N, d), float64
        The wrapped/clamped positions the graph was built on.
    edge_index : Tensor, shape (2, E), int64
        Row 0 the source ``j``, row 1 the target ``i``, sorted by target, then source.
    edge_attr : Tensor, shape (E, d), float32
        :math:`(x_i - x_j) / r`, minimum image on periodic axes (each row of norm < 1).
    """
    pos = box.inside(positions.to(torch.float64))
    i, j, disp = neighbour_pairs(pos, box.radius, list(box.lower), list(box.upper), periodic=list(box.periodic))
    order = torch.argsort(i * max(pos.shape[0], 1) + j)
    i, j, disp = i[order], j[order], disp[order]
    return pos, torch.stack([j, i]), (disp / box.radius).to(torch.float32)


# --------------------------------------------------------------------------------------------------
# Meshes
# --------------------------------------------------------------------------------------------------


def mesh_edges(cells: Tensor | np.ndarray, *, num_nodes: int | None = None, p2_edges: P2Edges = "refined") -> Tensor:
    """The undirected edges of a triangle mesh as a directed graph: both directions, each once.

    Parameters
    ----------
    cells : Tensor or ndarray, shape (T, 3) or (T, 6), integer
        P1 or P2 node indices (P2: corners, then the midside nodes of edges ``(0, 1)``, ``(1, 2)``,
        ``(2, 0)``).
    num_nodes : int, optional
        Number of nodes (default ``cells.max() + 1``); indices must lie in ``[0, num_nodes)``.
    p2_edges : {"refined", "corners"}
        For P2 cells: ``"refined"`` splits each cell into its four sub-triangles (9 edges per cell,
        corner--midside and midside--midside, a triangulation of all nodes); ``"corners"`` keeps the
        corner triangle's 3 edges and joins each midside node to its two corners.

    Returns
    -------
    Tensor, shape (2, E), int64
        ``edge_index`` with ``(j, i)`` present for every ``(i, j)``, no duplicates, no self loops,
        sorted by target, then source. A triangulated disk with ``V`` nodes and ``F`` triangles
        (P2 ``"refined"``: counted on the sub-triangles) has ``E = 2 (V + F - 1)``.
    """
    if p2_edges not in ("refined", "corners"):
        raise ValueError(f"p2_edges must be 'refined' or 'corners', got {p2_edges!r}")
    cells_t = cells if isinstance(cells, Tensor) else torch.from_numpy(np.array(cells))
    if cells_t.ndim != 2 or cells_t.shape[1] not in (3, 6) or cells_t.is_floating_point() or cells_t.dtype == torch.bool:
        raise ValueError(f"cells must be an integer array of shape (n_cells, 3) or (n_cells, 6), got "
                         f"{tuple(cells_t.shape)} {cells_t.dtype}")
    cells_t = cells_t.to(torch.long)
    if cells_t.numel() == 0:
        return torch.empty(2, 0, dtype=torch.long, device=cells_t.device)
    n = int(cells_t.max()) + 1 if num_nodes is None else int(num_nodes)
    if bool((cells_t < 0).any()) or int(cells_t.max()) >= n:
        raise ValueError(f"cells hold node indices outside [0, {n})")
    if cells_t.shape[1] == 3:
        pairs = _P1_PAIRS
    else:
        pairs = _P2_REFINED_PAIRS if p2_edges == "refined" else _P2_CORNER_PAIRS
    a = torch.cat([cells_t[:, p] for p, _ in pairs])
    b = torch.cat([cells_t[:, q] for _, q in pairs])
    src, dst = torch.cat([a, b]), torch.cat([b, a])
    keep = src != dst
    key = torch.unique(dst[keep] * n + src[keep])  # sorted: target, then source
    return torch.stack([key % n, key // n])


def mesh_graph(nodes: Tensor | np.ndarray, cells: Tensor | np.ndarray, *,
               p2_edges: P2Edges = "refined") -> tuple[Tensor, Tensor, Tensor]:
    r"""The graph of a triangle mesh, in the convention of this module.

    Parameters
    ----------
    nodes : Tensor or ndarray, shape (N, 2)
        Node coordinates.
    cells : Tensor or ndarray, shape (T, 3) or (T, 6), integer
        P1 or P2 cells (see :func:`mesh_edges`).
    p2_edges : {"refined", "corners"}
        See :func:`mesh_edges`.

    Returns
    -------
    pos : Tensor, shape (N, 2), float32
        Node coordinates.
    edge_index : Tensor, shape (2, E), int64
        :func:`mesh_edges`.
    edge_attr : Tensor, shape (E, 2), float32
        :math:`x_i - x_j` (target minus source, coordinate units), computed in float64.
    """
    x = nodes.to(torch.float64) if isinstance(nodes, Tensor) else torch.from_numpy(np.array(nodes, dtype=np.float64))
    if x.ndim != 2 or x.shape[1] != 2:
        raise ValueError(f"nodes must have shape (n_nodes, 2), got {tuple(x.shape)}")
    edge_index = mesh_edges(cells, num_nodes=x.shape[0], p2_edges=p2_edges)
    disp = x[edge_index[1]] - x[edge_index[0]]
    return x.to(torch.float32), edge_index, disp.to(torch.float32)


# --------------------------------------------------------------------------------------------------
# Sample graphs (torch_geometric Data): mesh samples and particle frames
# --------------------------------------------------------------------------------------------------


def _index_array(values: Any, what: str) -> np.ndarray:
    array = np.asarray(values)
    if array.size == 0:
        return np.zeros(array.shape, dtype=np.int64)
    if array.dtype.kind not in "iu":
        raise ValueError(f"{what} must hold integer node indices, got dtype {array.dtype}")
    return array.astype(np.int64)


def check_cells(cells: Any, n_nodes: int) -> np.ndarray:
    """``cells`` as a validated ``(n_cells, 3 | 6)`` int64 array of indices into ``n_nodes`` nodes.

    Raises
    ------
    ValueError
        A bad shape or dtype, an index outside ``0 .. n_nodes - 1`` (named), or a cell repeating a node.
    """
    cells = _index_array(cells, "cells")
    if cells.ndim != 2 or cells.shape[1] not in (3, 6) or cells.shape[0] == 0:
        raise ValueError(f"cells must have shape (n_cells >= 1, 3 or 6), got {cells.shape}")
    bad = (cells < 0) | (cells >= n_nodes)
    if bad.any():
        cell, column = (int(i) for i in np.argwhere(bad)[0])
        raise ValueError(
            f"cells[{cell}, {column}] = {int(cells[cell, column])} is not a node index: the mesh has "
            f"{n_nodes} nodes (valid 0..{n_nodes - 1}); {int(bad.sum())} such entries"
        )
    ordered = np.sort(cells, axis=1)
    repeated = (ordered[:, 1:] == ordered[:, :-1]).any(axis=1)
    if repeated.any():
        cell = int(np.flatnonzero(repeated)[0])
        raise ValueError(f"cell {cell} repeats a node: {cells[cell].tolist()} ({int(repeated.sum())} such cells)")
    return cells


def boundary_indices(name: str, indices: Any, n_nodes: int) -> np.ndarray:
    """Boundary marker ``name``'s node indices as a 1-D int64 array (``ValueError`` when out of range)."""
    array = _index_array(indices, f"boundary[{name!r}]").reshape(-1)
    bad = (array < 0) | (array >= n_nodes)
    if bad.any():
        raise ValueError(
            f"boundary[{name!r}] holds node index {int(array[bad][0])}, out of range for {n_nodes} nodes "
            f"({int(bad.sum())} such indices)"
        )
    return array


def marker_mask(num_nodes: int, boundary: Mapping[str, Any], names: str | Sequence[str]) -> np.ndarray:
    """Boolean mask ``(num_nodes,)``, true on the nodes of the boundary markers ``names``.

    Raises
    ------
    ValueError
        A name that is not a marker of ``boundary`` (the message lists the markers), or indices out of range.
    """
    names = [names] if isinstance(names, str) else list(names)
    unknown = [name for name in names if name not in boundary]
    if unknown:
        raise ValueError(f"no boundary marker(s) {unknown}; the mesh has {sorted(boundary)}")
    mask = np.zeros(num_nodes, dtype=bool)
    for name in names:
        mask[boundary_indices(name, boundary[name], num_nodes)] = True
    return mask


def _channels(name: str, value: Any, n: int) -> Tensor:
    """A nodal field ``(n,)`` or ``(n, C)`` as float32 ``(n, C)``."""
    tensor = torch.as_tensor(value)
    if tensor.is_complex():
        raise ValueError("complex fields cannot be stored; split them into real and imaginary fields")
    tensor = tensor.detach().to(device="cpu", dtype=torch.float32)
    if tensor.ndim == 1:
        tensor = tensor[:, None]
    if tensor.ndim != 2 or tensor.shape[0] != n:
        raise ValueError(f"field {name!r} has shape {tuple(tensor.shape)}; expected ({n},) or ({n}, C)")
    return tensor


def _stack(fields: Mapping[str, Any], n: int) -> Tensor:
    parts = [_channels(name, value, n) for name, value in fields.items()]
    return torch.cat(parts, dim=1) if parts else torch.zeros((n, 0), dtype=torch.float32)


@dataclass(frozen=True)
class MeshGraph:
    """The sample-independent part of every graph of one mesh (:func:`mesh_graph` plus a marker channel).

    Attributes
    ----------
    pos : Tensor, shape (n, 2), float32
    edge_index : Tensor, shape (2, E), int64
    edge_attr : Tensor, shape (E, 2), float32
        ``pos[target] - pos[source]``.
    marker : Tensor, shape (n, 1), float32, or None
        1.0 on Dirichlet nodes, else 0.0.
    """

    pos: Tensor
    edge_index: Tensor
    edge_attr: Tensor
    marker: Tensor | None

    @classmethod
    def build(cls, nodes: np.ndarray, cells: np.ndarray, marker: np.ndarray | None,
              p2_edges: P2Edges = "refined") -> MeshGraph:
        """The graph of ``nodes`` ``(n, 2)`` and ``cells`` (checked by :func:`check_cells`), with ``marker`` ``(n,)`` bool."""
        nodes = np.asarray(nodes, dtype=np.float64)
        if nodes.ndim != 2 or nodes.shape[1] != 2:
            raise ValueError(f"nodes must have shape (n_nodes, 2), got {nodes.shape}")
        pos, edge_index, edge_attr = mesh_graph(nodes, check_cells(cells, nodes.shape[0]), p2_edges=p2_edges)
        flags = None if marker is None else torch.from_numpy(np.asarray(marker).astype(np.float32)[:, None])
        return cls(pos=pos, edge_index=edge_index, edge_attr=edge_attr, marker=flags)

    def sample(self, fields_in: Mapping[str, Any], fields_out: Mapping[str, Any],
               params: Mapping[str, float] | None = None, params_as_channels: bool = False) -> Data:
        """One sample on this mesh as a graph; see :func:`mesh_to_pyg` for the attributes."""
        n = self.pos.shape[0]
        parts = [_stack(fields_in, n)]
        values = None
        if params:
            values = torch.tensor([[float(v) for v in params.values()]], dtype=torch.float32)  # (1, P)
            if params_as_channels:
                parts.append(values.expand(n, -1))
        if self.marker is not None:
            parts.append(self.marker)
        data = Data(x=torch.cat(parts, dim=1), y=_stack(fields_out, n), pos=self.pos, edge_index=self.edge_index,
                    edge_attr=self.edge_attr)
        if values is not None:
            data.params = values
        return data


def mesh_to_pyg(
    nodes: np.ndarray,
    cells: np.ndarray,
    fields_in: Mapping[str, np.ndarray | Tensor],
    fields_out: Mapping[str, np.ndarray | Tensor],
    params: Mapping[str, float] | None = None,
    boundary: np.ndarray | Mapping[str, np.ndarray] | None = None,
    *,
    dirichlet: str | Sequence[str] = "dirichlet",
    params_as_channels: bool = False,
    p2_edges: P2Edges = "refined",
) -> Data:
    """One sample on a triangle mesh as a :class:`torch_geometric.data.Data` graph.

    Parameters
    ----------
    nodes
        ``(n, 2)`` node coordinates.
    cells
        ``(n_cells, 3)`` P1 or ``(n_cells, 6)`` P2 node indices (see :func:`mesh_edges`).
    fields_in, fields_out
        Field name -> nodal values ``(n,)`` or ``(n, C)``, stacked as channels in the given order.
    params
        Per-sample scalars (name -> value), kept as ``data.params`` in the given order.
    boundary
        Dirichlet nodes for the marker channel: a 1-D index array, or marker name -> indices (then
        the markers named by ``dirichlet`` are used). ``None``: no marker channel.
    dirichlet
        Marker name(s) taken from a ``boundary`` mapping (``ValueError`` listing the markers when absent).
    params_as_channels
        Also broadcast ``params`` to every node as channels of ``x`` (for models without graph-level
        inputs).
    p2_edges
        ``"refined"`` or ``"corners"``, see :func:`mesh_edges`.

    Returns
    -------
    torch_geometric.data.Data
        * ``x`` ``(n, C_in [+ P] [+ 1])`` float32: the input fields' channels, then the ``P`` params
          if ``params_as_channels``, then the marker channel (1.0 on Dirichlet nodes, else 0.0) if
          ``boundary`` is given;
        * ``y`` ``(n, C_out)`` float32: the output fields' channels;
        * ``pos`` ``(n, 2)`` float32;
        * ``edge_index`` ``(2, E)`` int64: mesh edges in both directions, row 0 the source, row 1 the
          target, sorted by target then source (:func:`mesh_edges`);
        * ``edge_attr`` ``(E, 2)`` float32: ``pos[target] - pos[source]`` (coordinate units, computed
          in float64), the convention of this module;
        * ``params`` ``(1, P)`` float32, only when ``params`` is non-empty (batches to ``(B, P)``).
    """
    nodes = np.asarray(nodes, dtype=np.float64)
    marker = None
    if boundary is not None:
        if isinstance(boundary, Mapping):
            marker = marker_mask(nodes.shape[0], boundary, dirichlet)
        else:
            marker = marker_mask(nodes.shape[0], {"boundary": boundary}, "boundary")
    return MeshGraph.build(nodes, cells, marker, p2_edges).sample(fields_in, fields_out, params, params_as_channels)


def particle_graph(positions: Tensor, velocities: Tensor, particle_type: Tensor, box: ParticleBox,
                   density: Tensor | None = None) -> Data:
    r"""One particle state as a radius graph (the node features the graph models are trained on).

    Parameters
    ----------
    positions : Tensor, shape (N, d)
        Positions (clamped/wrapped into ``box``).
    velocities : Tensor, shape (h, N, d)
        Velocity history, oldest first.
    particle_type : Tensor, shape (N,), int64
        0 fluid, 1 wall.
    box : ParticleBox
        Box and kernel radius ``r``: edges join particles with :math:`|x_i - x_j| < r`.
    density : Tensor, shape (N,), optional
        :math:`\rho / \rho_{ref}`, appended as a node channel after the velocities.

    Returns
    -------
    Data
        ``x (N, h d [+ 1] + 2)`` float32 (velocities oldest first, [density,] one-hot fluid/wall),
        ``pos (N, d)``, ``edge_index (2, E)`` (row 0 source ``j``, row 1 target ``i``), ``edge_attr
        (E, d)`` :math:`(x_i - x_j)/r` (:func:`particle_edges`), ``fluid (N,)`` bool.
    """
    pos, edge_index, edge_attr = particle_edges(positions, box)
    n = pos.shape[0]
    features = [velocities.to(torch.float32).permute(1, 0, 2).reshape(n, -1),
                torch.nn.functional.one_hot(particle_type.long(), num_classes=2).to(torch.float32)]
    if density is not None:
        features.insert(1, density.to(torch.float32)[:, None])
    return Data(x=torch.cat(features, dim=1), pos=pos.to(torch.float32), edge_index=edge_index,
                edge_attr=edge_attr, fluid=particle_type == FLUID)


def frame_index(frame: int, num_frames: int, history: int) -> int:
    """Frame ``frame`` (negative counts from the end) of ``num_frames``, with ``history`` frames before it.

    Raises
    ------
    IndexError
        ``frame`` out of range.
    ValueError
        ``history < 1`` or fewer than ``history - 1`` frames before ``frame``.
    """
    if not isinstance(history, int | np.integer) or history < 1:
        raise ValueError(f"history must be a positive integer, got {history!r}")
    index = int(frame) + (num_frames if int(frame) < 0 else 0)
    if not 0 <= index < num_frames:
        raise IndexError(f"frame {frame} is out of range for {num_frames} frames")
    if index < history - 1:
        raise ValueError(
            f"frame {index} has only {index + 1} frame(s) of history; "
            f"history={history} needs frame >= {history - 1}"
        )
    return index


def reference_density(density0: np.ndarray, particle_type: np.ndarray) -> float:
    """Median fluid density at frame 0 (all particles when there is no fluid), kg/m^3; positive and finite."""
    fluid = np.asarray(particle_type) == FLUID
    rho_ref = float(np.median(density0[fluid] if fluid.any() else density0))
    if not (math.isfinite(rho_ref) and rho_ref > 0.0):
        raise ValueError(
            f"reference density (median fluid density at frame 0) must be positive and finite, got {rho_ref!r}"
        )
    return rho_ref


def particle_frame_graph(*, positions: np.ndarray, velocities: np.ndarray, density: np.ndarray, rho_ref: float,
                         particle_type: np.ndarray, time: float, acceleration: np.ndarray | None, box: ParticleBox,
                         where: str) -> Data:
    """:func:`particle_graph` of one stored frame, with ``particle_type``, ``time`` and the target ``y``.

    Arrays as described in :func:`frame_graph`; ``where`` names the frame in messages.
    """
    n, d = positions.shape
    if d != box.dim:
        raise ValueError(f"{where}: positions have d = {d} but the box has {box.dim} axes")
    first = box.first_outside(positions)
    if first is not None:
        particle, axis = first
        raise ValueError(
            f"{where}: particle {particle} at {positions[particle].tolist()} is outside the box "
            f"[{list(box.lower)}, {list(box.upper)}] on non-periodic axis {axis}"
        )
    types = torch.from_numpy(np.asarray(particle_type, dtype=np.int64))
    data = particle_graph(torch.from_numpy(np.asarray(positions, dtype=np.float64)),
                          torch.from_numpy(np.asarray(velocities, dtype=np.float32)), types, box,
                          torch.from_numpy(np.asarray(density, dtype=np.float64) / rho_ref))
    data.particle_type = types
    data.time = torch.tensor(time, dtype=torch.float64)
    if acceleration is not None:
        data.y = torch.from_numpy(np.asarray(acceleration, dtype=np.float32))
    return data


def frame_acceleration(velocities: np.ndarray, time: np.ndarray) -> np.ndarray:
    """``(v[1] - v[0]) / (t[1] - t[0])`` in float64 from ``(2, N, d)`` velocities and ``(2,)`` times."""
    v = velocities.astype(np.float64)
    return (v[1] - v[0]) / (float(time[1]) - float(time[0]))


def frame_graph(
    trajectory: ParticleTrajectory,
    frame: int,
    *,
    radius: float,
    lower: Sequence[float] | np.ndarray,
    upper: Sequence[float] | np.ndarray,
    periodic: Sequence[bool] | np.ndarray | None = None,
    history: int = 1,
) -> Data:
    r"""One frame of a trajectory as a radius graph (a :class:`torch_geometric.data.Data`).

    Nodes are the ``N`` particles; edges are those of :func:`particle_edges` (the graph the trained
    graph models consume).

    Parameters
    ----------
    trajectory
        The record, ``T`` frames of ``N`` particles in ``d`` dimensions.
    frame
        Frame index (negative counts from the end); ``frame >= history - 1``.
    radius
        Interaction radius (m); also the length unit of ``edge_attr``.
    lower, upper
        ``(d,)`` box corners (m). Positions on non-periodic axes must lie inside (tolerance ``1e-9`` of
        the box length); on periodic axes they are wrapped into the box.
    periodic
        ``(d,)`` periodic axes (default: none); such an axis must be at least ``2 radius`` long.
    history
        Number of velocity frames in the node features (``frame - history + 1 .. frame``).

    Returns
    -------
    torch_geometric.data.Data
        With, for ``N`` nodes, ``E`` edges and ``C = history * d + 3`` node channels:

        * ``pos`` ``(N, d)`` float32 -- positions at ``frame`` (m), wrapped into the box on periodic
          axes (clamped onto the faces within the tolerance on the others);
        * ``particle_type`` ``(N,)`` int64 -- 0 fluid, 1 wall;
        * ``x`` ``(N, C)`` float32 -- node features: columns ``[k d, (k + 1) d)`` are the velocities
          (m/s) at frame ``frame - history + 1 + k`` (oldest first, the current frame last), then
          ``density / rho_ref`` (1 column; ``rho_ref`` the median fluid density at frame 0, or of all
          particles when there is no fluid), then a one-hot of the particle type (2 columns:
          fluid, wall);
        * ``edge_index`` ``(2, E)`` int64 and ``edge_attr`` ``(E, d)`` float32 -- the module's edge
          convention, with ``edge_attr = (x_i - x_j) / radius`` (:func:`particle_edges`);
        * ``y`` ``(N, d)`` float32 -- the acceleration target
          :math:`(v^{f+1} - v^{f}) / (t^{f+1} - t^{f})` (m/s^2), present only when frame ``f + 1``
          exists;
        * ``time`` 0-d float64 tensor -- the physical time of ``frame`` (s).

    Raises
    ------
    IndexError
        ``frame`` out of range.
    ValueError
        ``history < 1`` or ``frame < history - 1``; a bad box or radius; a particle outside the box on a
        non-periodic axis (named); a non-positive reference density.

    Examples
    --------
    >>> graph = frame_graph(trajectory, 10, radius=0.04, lower=[0, 0], upper=[4, 2], history=5)  # doctest: +SKIP
    >>> graph.x.shape, graph.edge_attr.shape                                                      # doctest: +SKIP
    (torch.Size([N, 13]), torch.Size([E, 2]))
    """
    box = ParticleBox.of(lower, upper, periodic, radius)
    frame = frame_index(frame, trajectory.num_frames, history)
    pair = slice(frame, frame + 2)
    nxt = frame + 1 if frame + 1 < trajectory.num_frames else None
    return particle_frame_graph(
        positions=trajectory.positions[frame],
        velocities=trajectory.velocities[frame - history + 1 : frame + 1],
        density=trajectory.density[frame],
        rho_ref=reference_density(trajectory.density[0], trajectory.particle_type),
        particle_type=trajectory.particle_type,
        time=float(trajectory.time[frame]),
        acceleration=None if nxt is None else frame_acceleration(trajectory.velocities[pair], trajectory.time[pair]),
        box=box,
        where=f"sample {trajectory.sample_id} frame {frame}",
    )


# --------------------------------------------------------------------------------------------------
# Matrices
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class MatrixGraph:
    r"""The graph of a square sparse matrix :math:`A` (``N x N``): see :func:`matrix_graph`.

    Attributes
    ----------
    edge_index : Tensor, shape (2, E), int64
        ``[j, i]`` for every off-diagonal non-zero :math:`A_{ij}` (source ``j``, target ``i``), sorted by
        target then source: the CSR order of :math:`A` without its diagonal. No self loops.
    edge_value : Tensor, shape (E,), float64
        :math:`A_{ij}` of each edge.
    diagonal : Tensor, shape (N,), float64
        :math:`A_{ii}` (0 where the diagonal entry is absent).
    """

    edge_index: Tensor
    edge_value: Tensor
    diagonal: Tensor

    @property
    def num_nodes(self) -> int:
        """``N``."""
        return int(self.diagonal.shape[0])

    @property
    def lower(self) -> Tensor:
        r"""``(E,)`` bool: the edges of the strictly lower triangle, :math:`i > j` (target above source).

        In order they are the strictly lower entries of ``tril(A)`` in CSR order (by row, then column).
        """
        return self.edge_index[1] > self.edge_index[0]


def matrix_graph(A: Any) -> MatrixGraph:
    r"""The matrix graph of ``A``: nodes the unknowns, an edge ``j -> i`` per off-diagonal non-zero.

    Parameters
    ----------
    A
        Square, shape ``(N, N)``: a scipy sparse matrix or array (anything with ``tocoo()``) or a dense
        array; real and finite. Duplicate entries are summed; entries equal to zero (stored or not) are
        no edge.

    Returns
    -------
    MatrixGraph
        ``edge_index`` ``(2, E)`` in the package's convention (row 0 source ``j``, row 1 target ``i``,
        sorted by target then source), ``edge_value`` ``(E,)`` the entries :math:`A_{ij}`, ``diagonal``
        ``(N,)``, both float64.

    Raises
    ------
    ValueError
        If ``A`` is not square, not real or has a non-finite entry.
    """
    if hasattr(A, "tocoo"):
        coo = A.tocoo()
        coo.sum_duplicates()
        rows, cols, vals, shape = np.asarray(coo.row), np.asarray(coo.col), np.asarray(coo.data), coo.shape
    else:
        dense = np.asarray(A)
        if dense.ndim != 2:
            raise ValueError(f"the matrix must be 2-D, got shape {dense.shape}")
        rows, cols = np.nonzero(dense)
        vals, shape = dense[rows, cols], dense.shape
    if len(shape) != 2 or shape[0] != shape[1]:
        raise ValueError(f"the matrix must be square, got shape {tuple(shape)}")
    if np.iscomplexobj(vals):
        raise ValueError(f"the matrix must be real, got dtype {vals.dtype}")
    vals = vals.astype(np.float64)
    if not np.all(np.isfinite(vals)):
        raise ValueError("the matrix has non-finite entries")
    n = int(shape[0])
    keep = vals != 0
    rows, cols, vals = rows[keep].astype(np.int64), cols[keep].astype(np.int64), vals[keep]
    on_diag = rows == cols
    diagonal = np.zeros(n)
    diagonal[rows[on_diag]] = vals[on_diag]
    off = ~on_diag
    src, dst, value = torch.from_numpy(cols[off]), torch.from_numpy(rows[off]), torch.from_numpy(vals[off])
    order = _edge_order(src, dst, n)
    return MatrixGraph(torch.stack([src[order], dst[order]]), value[order], torch.from_numpy(diagonal))


# --------------------------------------------------------------------------------------------------
# Generic builders (non-periodic radius and k-NN graphs, periodic grids)
# --------------------------------------------------------------------------------------------------


def _check_pos(pos: Tensor, batch: Tensor | None) -> Tensor:
    """Validate ``pos (N, d)`` and ``batch (N,)``; return ``batch`` (zeros when ``None``)."""
    if not isinstance(pos, Tensor) or pos.ndim != 2 or not pos.is_floating_point():
        raise ValueError(f"pos must be a floating-point tensor of shape (N, d), got "
                         f"{type(pos).__name__} {tuple(getattr(pos, 'shape', ()))}")
    n = pos.shape[0]
    if batch is None:
        return torch.zeros(n, dtype=torch.long, device=pos.device)
    if batch.shape != (n,):
        raise ValueError(f"batch must have shape ({n},), got {tuple(batch.shape)}")
    if n > 1 and bool((batch[1:] < batch[:-1]).any()):
        raise ValueError("batch must be sorted (nodes of each graph contiguous, as torch_geometric batches)")
    return batch.to(torch.long)


def _blocked_edges(n: int, device: torch.device, block: Callable[[slice, Tensor], tuple[Tensor, Tensor]]) -> Tensor:
    """Edges ``(src, dst) = block(rows_slice, rows)`` of target rows in blocks of about
    :data:`BLOCK_ENTRIES` pairwise entries, as a sorted ``(2, E)`` ``edge_index``."""
    chunk = max(1, BLOCK_ENTRIES // max(n, 1))
    pairs = [block(slice(start, start + chunk), torch.arange(start, min(start + chunk, n), device=device))
             for start in range(0, n, chunk)]
    if not pairs:
        return torch.empty(2, 0, dtype=torch.long, device=device)
    return _sort_edges(torch.cat([src for src, _ in pairs]), torch.cat([dst for _, dst in pairs]), n)


def radius_graph(pos: Tensor, r: float, batch: Tensor | None = None, loop: bool = False,
                 max_num_neighbors: int | None = None) -> Tensor:
    r"""Edges :math:`j \to i` between nodes of the same graph with :math:`|x_i - x_j| \le r` (no box).

    Same convention as ``torch_geometric.nn.radius_graph``, by blocked pairwise distances
    (``torch.cdist`` on chunks of rows, memory ``O(chunk \cdot N)``).

    Parameters
    ----------
    pos : Tensor, shape (N, d)
        Node positions.
    r : float
        Radius (> 0); pairs at distance exactly ``r`` are included.
    batch : Tensor, shape (N,), int64, optional
        Sorted graph index of each node; edges never cross graphs.
    loop : bool
        Include self-loops ``i -> i``.
    max_num_neighbors : int, optional
        Keep at most this many sources per target (the nearest ones; ties by index).

    Returns
    -------
    Tensor, shape (2, E), int64
        ``edge_index`` (row 0 source ``j``, row 1 target ``i``), sorted by target then source.
    """
    batch = _check_pos(pos, batch)
    if not (math.isfinite(float(r)) and float(r) > 0):
        raise ValueError(f"r must be positive and finite, got {r!r}")
    if max_num_neighbors is not None and max_num_neighbors < 1:
        raise ValueError(f"max_num_neighbors must be >= 1, got {max_num_neighbors}")
    n = pos.shape[0]

    def block(part: slice, rows: Tensor) -> tuple[Tensor, Tensor]:
        dist = torch.cdist(pos[part], pos)  # (rows, N), rows = targets i
        mask = (dist <= r) & (batch[rows, None] == batch[None, :])
        if not loop:
            mask[torch.arange(rows.numel(), device=pos.device), rows] = False
        if max_num_neighbors is None:
            ii_local, jj = mask.nonzero(as_tuple=True)
            return jj, rows[ii_local]
        masked = torch.where(mask, dist, torch.full_like(dist, math.inf))
        keep_d, keep_j = torch.topk(masked, min(max_num_neighbors, n), dim=1, largest=False, sorted=True)
        sel = torch.isfinite(keep_d)
        return keep_j[sel], rows[:, None].expand_as(keep_j)[sel]

    return _blocked_edges(n, pos.device, block)


def knn_graph(pos: Tensor, k: int, batch: Tensor | None = None, loop: bool = False) -> Tensor:
    r"""Edges :math:`j \to i` from the ``k`` nearest nodes ``j`` (same graph) of every node ``i``.

    Parameters
    ----------
    pos : Tensor, shape (N, d)
        Node positions.
    k : int
        Neighbours per node (>= 1); fewer when a graph has fewer candidates. Distance ties are
        broken by the smaller index.
    batch : Tensor, shape (N,), optional
        Sorted graph index of each node.
    loop : bool
        Count the node itself as a candidate (at distance 0).

    Returns
    -------
    Tensor, shape (2, E), int64
        ``edge_index``, sorted by target then source.
    """
    batch = _check_pos(pos, batch)
    if int(k) < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    n = pos.shape[0]

    def block(part: slice, rows: Tensor) -> tuple[Tensor, Tensor]:
        bad = batch[rows, None] != batch[None, :]
        if not loop:
            bad[torch.arange(rows.numel(), device=pos.device), rows] = True
        dist = torch.cdist(pos[part], pos).masked_fill(bad, math.inf)
        # stable sort gives index order among equal distances
        order = torch.sort(dist, dim=1, stable=True).indices[:, : min(int(k), n)]
        keep = torch.isfinite(torch.gather(dist, 1, order))
        return order[keep], rows[:, None].expand_as(order)[keep]

    return _blocked_edges(n, pos.device, block)


def grid_graph(shape: Sequence[int], lengths: Sequence[float], periodic: Sequence[bool] | bool = True,
               radius_in_cells: float = 2.0, loop: bool = False) -> tuple[Tensor, Tensor, Tensor]:
    r"""Graph of a regular 1-D or 2-D cell-centred grid: :math:`j \to i` for
    :math:`|x_i - x_j|_{\text{min image}} \le \rho\, \Delta x_{\min}`.

    Nodes are numbered in C order (last axis fastest); node ``(a, b)`` sits at
    :math:`x = ((a + 1/2) L_0 / n_0, (b + 1/2) L_1 / n_1)`.

    Parameters
    ----------
    shape : sequence of int, length 1 or 2
        Grid points per axis.
    lengths : sequence of float
        Domain length per axis.
    periodic : bool or sequence of bool
        Periodic axes (minimum image :math:`dx \leftarrow dx - L\,\mathrm{round}(dx/L)`).
    radius_in_cells : float
        Neighbourhood radius :math:`\rho` in units of the smallest grid spacing.
    loop : bool
        Include self-loops.

    Returns
    -------
    edge_index : Tensor, shape (2, E)
        Sorted by target then source.
    pos : Tensor, shape (N, d), float32
        Node coordinates.
    displacement : Tensor, shape (E, d), float32
        :math:`x_i - x_j` (target minus source), minimum image on periodic axes.
    """
    shape = [int(s) for s in shape]
    d = len(shape)
    if d not in (1, 2) or any(s < 1 for s in shape):
        raise ValueError(f"shape must hold 1 or 2 positive sizes, got {shape}")
    if len(lengths) != d or any(not float(v) > 0 for v in lengths):
        raise ValueError(f"lengths needs {d} positive entries, got {list(lengths)}")
    per = [bool(periodic)] * d if isinstance(periodic, bool) else [bool(p) for p in periodic]
    if len(per) != d:
        raise ValueError(f"periodic needs {d} entries, got {list(periodic)}")  # type: ignore[arg-type]
    if not float(radius_in_cells) > 0:
        raise ValueError(f"radius_in_cells must be > 0, got {radius_in_cells}")
    spacing = [float(lengths[a]) / shape[a] for a in range(d)]
    axes = [(torch.arange(shape[a], dtype=torch.float64) + 0.5) * spacing[a] for a in range(d)]
    pos = torch.stack(torch.meshgrid(*axes, indexing="ij"), dim=-1).reshape(-1, d)
    r = float(radius_in_cells) * min(spacing)
    n = pos.shape[0]
    length = torch.tensor([float(v) for v in lengths], dtype=torch.float64)

    def block(part: slice, rows: Tensor) -> tuple[Tensor, Tensor]:
        disp = pos[part, None, :] - pos[None, :, :]  # x_i - x_j
        _minimum_image(disp, length, per)
        mask = (disp * disp).sum(-1) <= r * r * (1 + 1e-9)
        if not loop:
            mask[torch.arange(rows.numel()), rows] = False
        ii, jj = mask.nonzero(as_tuple=True)
        return jj, rows[ii]

    edge_index = _blocked_edges(n, pos.device, block)
    disp = pos[edge_index[1]] - pos[edge_index[0]]
    _minimum_image(disp, length, per)
    return edge_index, pos.float(), disp.float()
