r"""Fixed-radius neighbour search for SPH: a vectorised cell list in torch, and a brute-force reference.

Both searches return every *ordered* pair ``(i, j)``, ``i != j``, with

.. math::  |x_i - x_j|^2 < \text{radius}^2 ,

together with the displacement ``x_i - x_j``, taken as the minimum image on periodic axes
(``dx -= L * round(dx / L)``, ``L = upper - lower``). Pairs come in both orders: ``(i, j)`` is in
the list exactly when ``(j, i)`` is. The two searches compute the displacement and the test with the
same floating-point operations, so they return the same set of pairs bit for bit, including pairs at
distance exactly ``radius`` (excluded by both).

Cell list (:func:`neighbour_pairs`)
    Each axis of the box ``[lower, upper]`` is cut into ``n = floor(L / (radius (1 + 1e-9)))``
    (at least 1) equal cells of size ``L / n >= radius`` (the ``1e-9`` margin keeps pairs at a
    distance just under ``radius`` from landing two cells apart through rounding in the cell index).
    Particles are sorted by flat cell id; for each of the ``3^d`` neighbour-cell offsets, every
    particle gathers the contiguous run of particles in that cell as candidates, all particles at
    once (the only Python loop is over the ``<= 27`` offsets). Cost and memory are O(N) at fixed
    density (about ``3^d`` cells of ``radius^d`` each are scanned per particle); when the box has far
    more cells than particles, the cell ranges are found by binary search instead of a dense table
    (O(N log N)).

Validation
    ``radius`` must be positive and finite; every particle must lie in ``[lower, upper]`` up to a
    tolerance of ``1e-9 L`` per axis (the error names the first offending particle and its
    position); on a periodic axis the box must be at least ``2 radius`` long, so that at most one
    periodic image of a particle is within ``radius`` (the minimum image is then the only one).
    Cells that coincide after wrapping on a periodic axis with fewer than 3 cells are visited once.
"""

from __future__ import annotations

import itertools
import logging
import math
from collections.abc import Sequence

import torch
from torch import Tensor

__all__ = ["brute_force_pairs", "neighbour_pairs", "radius_graph_edge_index"]

log = logging.getLogger(__name__)

#: Relative tolerance (of the box length) for particles outside ``[lower, upper]``.
BOX_TOLERANCE = 1e-9
#: Cells are made at least ``radius * (1 + CELL_MARGIN)`` wide (guards rounding in the cell index).
CELL_MARGIN = 1e-9
#: Dense cell table up to this many cells per particle (plus a fixed allowance); binary search beyond.
DENSE_CELLS_PER_PARTICLE = 8


def _validate(positions: Tensor, radius: float, lower: Sequence[float], upper: Sequence[float],
              periodic: Sequence[bool] | None) -> tuple[Tensor, Tensor, list[bool], float]:
    """Check the arguments; return ``lower``, ``upper`` (tensors, shape ``(d,)``), ``periodic``, radius."""
    if not isinstance(positions, Tensor) or positions.ndim != 2 or not positions.is_floating_point():
        raise ValueError("positions must be a floating-point tensor of shape (N, d), got "
                         f"{type(positions).__name__} {tuple(getattr(positions, 'shape', ()))} "
                         f"{getattr(positions, 'dtype', '')}")
    n, d = positions.shape
    if d not in (1, 2, 3):
        raise ValueError(f"positions must have d = 1, 2 or 3 columns, got {d}")
    try:
        radius = float(radius)
    except (TypeError, ValueError):
        raise ValueError(f"radius must be a positive number, got {radius!r}") from None
    if not (math.isfinite(radius) and radius > 0.0):
        raise ValueError(f"radius must be positive and finite, got {radius!r}")
    if len(lower) != d or len(upper) != d:
        raise ValueError(f"lower and upper need {d} entries (one per axis), got {list(lower)} and {list(upper)}")
    lo = torch.tensor([float(v) for v in lower], dtype=positions.dtype, device=positions.device)
    hi = torch.tensor([float(v) for v in upper], dtype=positions.dtype, device=positions.device)
    if not (torch.isfinite(lo).all() and torch.isfinite(hi).all() and (hi > lo).all()):
        raise ValueError(f"need finite lower < upper on every axis, got lower={list(lower)}, upper={list(upper)}")
    per = [False] * d if periodic is None else [bool(p) for p in periodic]
    if len(per) != d:
        raise ValueError(f"periodic needs {d} entries (one per axis), got {list(periodic)}")
    length = hi - lo
    for axis in range(d):
        if per[axis] and float(length[axis]) < 2.0 * radius:
            raise ValueError(
                f"periodic axis {axis} has box length {float(length[axis]):g} < 2 * radius = {2 * radius:g}; "
                "the minimum image would not be the only image within the radius")
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
    """``|disp|^2`` over the last axis, summed axis by axis in a fixed order (identical in both searches)."""
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

    Parameters
    ----------
    positions : Tensor, shape (N, d), floating point
        Particle positions, ``d`` in 1, 2, 3, inside ``[lower, upper]``.
    radius : float
        Search radius (length), e.g. the kernel support ``2h``; pairs with ``|x_i - x_j| < radius``.
    lower, upper : sequence of float, length d
        Box corners.
    periodic : sequence of bool, length d, optional
        Periodic axes (default: none). The box must be ``>= 2 radius`` long on a periodic axis.

    Returns
    -------
    i, j : Tensor, shape (E,), int64
        Pair indices, ``i != j``; both ``(i, j)`` and ``(j, i)`` are present. Deterministic order,
        grouped by the neighbour-cell offset (not sorted).
    displacement : Tensor, shape (E, d), dtype of ``positions``
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
    i, j, displacement = torch.cat(out_i), torch.cat(out_j), torch.cat(out_d)
    log.debug("neighbour_pairs: N=%d, cells=%s (%s), %d offsets, %d pairs", n, cells,
              "dense" if dense else "sparse", len(offsets), i.numel())
    return i, j, displacement


def brute_force_pairs(positions: Tensor, radius: float, lower: Sequence[float], upper: Sequence[float],
                      periodic: Sequence[bool] | None = None) -> tuple[Tensor, Tensor, Tensor]:
    """All ordered pairs closer than ``radius`` by testing every pair: O(N^2) time, chunked memory.

    Reference for the tests and the benchmark; same arguments, checks and result as
    :func:`neighbour_pairs` (pairs sorted by ``i``, then ``j``). Rows are processed in chunks of
    about ``4e6 / N`` particles, so memory stays O(N) (a few tens of MB).

    Parameters
    ----------
    positions : Tensor, shape (N, d), floating point
        Particle positions inside ``[lower, upper]``.
    radius : float
        Search radius; pairs with ``|x_i - x_j| < radius``.
    lower, upper : sequence of float, length d
        Box corners.
    periodic : sequence of bool, length d, optional
        Periodic axes (default: none).

    Returns
    -------
    i, j : Tensor, shape (E,), int64
        Pair indices, ``i != j``, sorted by ``(i, j)``.
    displacement : Tensor, shape (E, d)
        ``x_i - x_j``, minimum image on periodic axes.
    """
    lo, hi, per, radius = _validate(positions, radius, lower, upper, periodic)
    n, d = positions.shape
    length = hi - lo
    r2 = radius * radius
    chunk = max(1, 4_000_000 // max(n, 1))
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
