r"""Pure-torch graph construction for graph neural PDE solvers (no torch_cluster / pyg-lib).

Every builder returns a torch_geometric ``edge_index`` of shape ``(2, E)`` with the convention
``flow="source_to_target"``: row 0 is the source (neighbour) ``j``, row 1 the target ``i`` that
receives the message :math:`m_{ij}`. Edges are sorted by target, then source.

* :func:`radius_graph` — :math:`j \to i` for :math:`|x_i - x_j| \le r` (same convention as
  ``torch_geometric.nn.radius_graph``), by blocked pairwise distances (``torch.cdist`` on chunks of
  rows, memory ``O(chunk \cdot N)``), optionally per graph of a batch.
* :func:`knn_graph` — :math:`j \to i` for the ``k`` nearest ``j`` of each ``i``.
* :func:`grid_graph` — regular 1-D / 2-D grids, with periodic minimum image; returns the
  displacements :math:`x_i - x_j` too (the raw position difference is wrong across a periodic seam).
* :func:`mesh_graph` — undirected edges of a triangle mesh, both directions, no duplicates.
* :func:`particle_graph` — cell-list search of :mod:`pdebench.solvers.sph.neighbours`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor

from pdebench.solvers.sph.neighbours import neighbour_pairs, radius_graph_edge_index

__all__ = ["grid_graph", "knn_graph", "mesh_graph", "particle_graph", "radius_graph"]

#: Pairwise-distance blocks hold about this many entries.
BLOCK_ENTRIES = 4_000_000


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


def _sort_edges(src: Tensor, dst: Tensor, n: int) -> Tensor:
    """``edge_index = [src, dst]`` sorted by target, then source."""
    key = dst * max(n, 1) + src
    order = torch.argsort(key)
    return torch.stack([src[order], dst[order]])


def radius_graph(pos: Tensor, r: float, batch: Tensor | None = None, loop: bool = False,
                 max_num_neighbors: int | None = None) -> Tensor:
    r"""Edges :math:`j \to i` between nodes of the same graph with :math:`|x_i - x_j| \le r`.

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
    chunk = max(1, BLOCK_ENTRIES // max(n, 1))
    srcs, dsts = [], []
    for start in range(0, n, chunk):
        dist = torch.cdist(pos[start:start + chunk], pos)  # (rows, N), rows = targets i
        rows = torch.arange(start, min(start + chunk, n), device=pos.device)
        mask = (dist <= r) & (batch[rows, None] == batch[None, :])
        if not loop:
            mask[torch.arange(rows.numel(), device=pos.device), rows] = False
        if max_num_neighbors is not None:
            masked = torch.where(mask, dist, torch.full_like(dist, math.inf))
            k = min(max_num_neighbors, n)
            keep_d, keep_j = torch.topk(masked, k, dim=1, largest=False, sorted=True)
            sel = torch.isfinite(keep_d)
            ii = rows[:, None].expand_as(keep_j)[sel]
            jj = keep_j[sel]
        else:
            ii_local, jj = mask.nonzero(as_tuple=True)
            ii = rows[ii_local]
        srcs.append(jj)
        dsts.append(ii)
    if not srcs:
        return torch.empty(2, 0, dtype=torch.long, device=pos.device)
    return _sort_edges(torch.cat(srcs), torch.cat(dsts), n)


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
    chunk = max(1, BLOCK_ENTRIES // max(n, 1))
    srcs, dsts = [], []
    for start in range(0, n, chunk):
        rows = torch.arange(start, min(start + chunk, n), device=pos.device)
        dist = torch.cdist(pos[start:start + chunk], pos)
        bad = batch[rows, None] != batch[None, :]
        if not loop:
            bad[torch.arange(rows.numel(), device=pos.device), rows] = True
        dist = dist.masked_fill(bad, math.inf)
        # stable sort gives index order among equal distances
        order = torch.sort(dist, dim=1, stable=True).indices[:, : min(int(k), n)]
        keep = torch.isfinite(torch.gather(dist, 1, order))
        srcs.append(order[keep])
        dsts.append(rows[:, None].expand_as(order)[keep])
    if not srcs:
        return torch.empty(2, 0, dtype=torch.long, device=pos.device)
    return _sort_edges(torch.cat(srcs), torch.cat(dsts), n)


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
    displacement : Tensor, shape (E, d)
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
    chunk = max(1, BLOCK_ENTRIES // max(n, 1))
    srcs, dsts = [], []
    for start in range(0, n, chunk):
        disp = pos[start:start + chunk, None, :] - pos[None, :, :]  # x_i - x_j
        for a in range(d):
            if per[a]:
                disp[..., a] -= length[a] * torch.round(disp[..., a] / length[a])
        mask = (disp * disp).sum(-1) <= r * r * (1 + 1e-9)
        rows = torch.arange(start, min(start + chunk, n))
        if not loop:
            mask[torch.arange(rows.numel()), rows] = False
        ii, jj = mask.nonzero(as_tuple=True)
        srcs.append(jj)
        dsts.append(rows[ii])
    edge_index = _sort_edges(torch.cat(srcs), torch.cat(dsts), n)
    disp = pos[edge_index[1]] - pos[edge_index[0]]
    for a in range(d):
        if per[a]:
            disp[:, a] -= length[a] * torch.round(disp[:, a] / length[a])
    return edge_index, pos.float(), disp.float()


def mesh_graph(cells: Tensor) -> Tensor:
    r"""Undirected edges of a triangle mesh, in both directions, without duplicates.

    Parameters
    ----------
    cells : Tensor, shape (T, 3), int
        Vertex indices of each triangle.

    Returns
    -------
    Tensor, shape (2, E), int64
        ``edge_index`` with ``(j, i)`` present exactly when ``(i, j)`` is, sorted by target then source.
    """
    if not isinstance(cells, Tensor) or cells.ndim != 2 or cells.shape[1] != 3 or cells.is_floating_point():
        raise ValueError(f"cells must be an integer tensor of shape (T, 3), got {tuple(getattr(cells, 'shape', ()))}")
    cells = cells.to(torch.long)
    if cells.numel() == 0:
        return torch.empty(2, 0, dtype=torch.long, device=cells.device)
    if bool((cells < 0).any()):
        raise ValueError("cells must hold non-negative vertex indices")
    a = torch.cat([cells[:, 0], cells[:, 1], cells[:, 2]])
    b = torch.cat([cells[:, 1], cells[:, 2], cells[:, 0]])
    src, dst = torch.cat([a, b]), torch.cat([b, a])
    keep = src != dst
    src, dst = src[keep], dst[keep]
    n = int(cells.max()) + 1
    key = torch.unique(dst * n + src)  # sorted: target then source
    return torch.stack([key % n, key // n])


def particle_graph(pos: Tensor, radius: float, lower: Sequence[float], upper: Sequence[float],
                   periodic: Sequence[bool] | None = None) -> tuple[Tensor, Tensor]:
    r"""Particle graph from the SPH cell list: :math:`j \to i` for :math:`|x_i - x_j| < r`.

    Parameters
    ----------
    pos : Tensor, shape (N, d)
        Particle positions in the box ``[lower, upper]``.
    radius : float
        Search radius (strict inequality, as :func:`~pdebench.solvers.sph.neighbours.neighbour_pairs`).
    lower, upper : sequence of float
        Box corners.
    periodic : sequence of bool, optional
        Periodic axes.

    Returns
    -------
    edge_index : Tensor, shape (2, E)
        Sorted by target then source.
    displacement : Tensor, shape (E, d)
        :math:`x_i - x_j`, minimum image on periodic axes.
    """
    i, j, disp = neighbour_pairs(pos, radius, lower, upper, periodic)
    edge_index = radius_graph_edge_index(i, j)
    n = pos.shape[0]
    order = torch.argsort(edge_index[1] * max(n, 1) + edge_index[0])
    return edge_index[:, order], disp[order]
