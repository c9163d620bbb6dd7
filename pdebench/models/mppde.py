r"""Message-passing neural PDE solver (MP-PDE; Brandstetter, Worrall & Welling, ICLR 2022).

Encode–process–decode on a graph whose nodes carry the last ``K = time_window`` values of the
solution :math:`u` (the *temporal bundle*):

Encoder
    :math:`f_i^0 = \epsilon\big([u_i^{k-K+1..k},\ x_i,\ t_k,\ \theta]\big)`, a 2-layer MLP with Swish
    (:math:`\mathrm{swish}(z) = z\,\sigma(z)`).
Processor (``layers`` × :class:`GNNLayer`)
    .. math::
        m_{ij} &= \phi\big(f_i, f_j, u_i - u_j, x_i - x_j, \theta\big), \\
        f_i' &= \mathrm{InstanceNorm}\Big(f_i + \psi\big(f_i,
                \textstyle\sum_{j \in \mathcal N(i)} m_{ij}, \theta\big)\Big),
    with :math:`\phi, \psi` 2-layer Swish MLPs; positions enter the processor only as differences.
Decoder
    1-D convolutions over the hidden vector :math:`f_i \in \mathbb R^{H}` (treated as a 1-channel
    signal of length ``H``) give :math:`d_i \in \mathbb R^{K}`, and temporal bundling
    .. math::  u_i^{k+\ell} = u_i^{k} + \ell\, \Delta t\, d_{i,\ell}, \qquad \ell = 1..K .

Training uses the *pushforward trick* (:class:`~pdebench.training.bundled.BundledOperatorModule`): unroll a few bundles without
gradient and train only on the last, so the model learns to correct its own input distribution.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn
from torch_geometric.data import Data
from torch_geometric.nn import InstanceNorm, MessagePassing

from pdebench.core.graphs import grid_graph
from pdebench.models.registry import register_model
from pdebench.registry import check_at_least_one

__all__ = ["GNNLayer", "GridMPPDE", "MPPDE"]


def _mlp(n_in: int, hidden: int, n_out: int) -> nn.Sequential:
    """``Linear -> Swish -> Linear -> Swish`` (the paper's message/update/encoder MLPs)."""
    return nn.Sequential(nn.Linear(n_in, hidden), nn.SiLU(), nn.Linear(hidden, n_out), nn.SiLU())


class GNNLayer(MessagePassing):
    r"""One MP-PDE processor layer (sum aggregation, ``flow="source_to_target"``).

    .. math::
        m_{ij} = \phi(f_i, f_j, u_i - u_j, x_i - x_j, \theta), \qquad
        f_i' = \mathrm{IN}\big(f_i + \psi(f_i, \textstyle\sum_j m_{ij}, \theta)\big)

    Parameters
    ----------
    hidden : int
        Feature width ``H``.
    time_window : int
        Length ``K`` of the solution history per node.
    dim : int
        Spatial dimension ``d``.
    params : int
        Number ``P`` of PDE parameters :math:`\theta` (0 for none).
    norm : bool
        Apply :class:`torch_geometric.nn.InstanceNorm` per graph after the residual update.
    """

    def __init__(self, hidden: int, time_window: int, dim: int, params: int = 0, norm: bool = True) -> None:
        super().__init__(aggr="add", flow="source_to_target")
        self.message_net = _mlp(2 * hidden + time_window + dim + params, hidden, hidden)
        self.update_net = _mlp(2 * hidden + params, hidden, hidden)
        self.norm = InstanceNorm(hidden) if norm else None

    def forward(self, f: Tensor, u: Tensor, disp: Tensor, theta: Tensor, edge_index: Tensor,
                batch: Tensor) -> Tensor:
        """Updated node features ``(N, H)`` from the features ``f`` ``(N, H)``, the solution histories
        ``u`` ``(N, K)``, the displacements ``disp`` ``(E, d)`` (:math:`x_i - x_j`, target minus source),
        the PDE parameters ``theta`` ``(N, P)`` (``P`` may be 0), ``edge_index`` ``(2, E)`` (row 0 source
        ``j``, row 1 target ``i``) and each node's graph index ``batch`` ``(N,)`` (for the instance norm)."""
        agg = self.propagate(edge_index, f=f, u=u, theta=theta, disp=disp)
        out = f + self.update_net(torch.cat([f, agg, theta], dim=-1))
        if self.norm is not None:
            out = self.norm(out, batch)
        return out

    def message(self, f_i: Tensor, f_j: Tensor, u_i: Tensor, u_j: Tensor, theta_i: Tensor,
                disp: Tensor) -> Tensor:
        """:math:`m_{ij} = \\phi(f_i, f_j, u_i - u_j, x_i - x_j, \\theta)`, shape (E, H)."""
        return self.message_net(torch.cat([f_i, f_j, u_i - u_j, disp, theta_i], dim=-1))


def _per_node(value: Any, batch: Tensor, num_graphs: int, n: int, like: Tensor, name: str) -> Tensor:
    """Broadcast a scalar, a ``(num_graphs,)`` or an ``(N,)`` tensor to shape ``(N,)``."""
    if value is None:
        raise ValueError(f"data.{name} is required")
    v = torch.as_tensor(value, dtype=like.dtype, device=like.device).reshape(-1)
    if v.numel() == 1:
        return v.expand(n)
    if v.numel() == num_graphs:
        return v[batch]
    if v.numel() == n:
        return v
    raise ValueError(f"data.{name} must be a scalar, one value per graph ({num_graphs}) or per node ({n}), "
                     f"got {v.numel()} values")


@register_model("mppde", board="operator",
                description="Message-passing neural PDE solver (Brandstetter et al. 2022), graph input")
class MPPDE(nn.Module):
    r"""Message-passing neural PDE solver with temporal bundling.

    Parameters
    ----------
    time_window : int
        Bundle size ``K``: the model reads the last ``K`` values of ``u`` per node and predicts the
        next ``K``.
    hidden : int
        Feature width ``H`` (>= ``time_window``).
    layers : int
        Number of :class:`GNNLayer` processor layers.
    params : int
        Number ``P`` of PDE parameters :math:`\theta` to condition on (``data.params``).
    dim : int
        Spatial dimension ``d`` of ``data.pos``.
    in_channels, out_channels : int, optional
        Operator-registry contract; if given they must equal ``time_window``.
    encode_position : bool
        Feed absolute positions :math:`x_i` to the encoder, as in the paper. With ``False`` the
        model is exactly translation equivariant (positions enter only as :math:`x_i - x_j`).
    norm : bool
        Instance normalisation in the processor.
    in_features : int, optional
        Multi-feature graph mode: ``data.x`` is ``(N, F_in)`` node features (e.g. a coefficient field
        and a boundary marker on a mesh, or a velocity history and a particle-type one-hot) instead
        of a scalar history; messages see :math:`x_i - x_j` of all ``F_in`` features. ``None`` (default):
        the scalar-history mode, ``F_in = time_window``.
    out_features : int, optional
        Multi-feature mode: the decoder (a 2-layer Swish MLP, linear last layer) outputs
        ``F_out`` values per node. ``None``: ``time_window`` values from the convolutional decoder.
    bundling : bool
        ``True`` (default): temporal bundling :math:`u^{k+\ell} = u^k + \ell\,\Delta t\, d_\ell`
        (scalar-history mode only; needs ``data.dt``). ``False``: the decoder output :math:`d_i` is
        the prediction itself (a steady solution, a particle acceleration, ...); ``data.dt`` is not
        read.

    Notes
    -----
    ``forward(data)`` reads ``data.x (N, K)`` (``(N, F_in)`` with ``in_features``), ``data.pos (N, d)``, ``data.edge_index (2, E)``,
    optional ``data.edge_attr (E, d)`` (displacements :math:`x_i - x_j`, e.g. minimum image on a
    periodic domain; default ``pos[i] - pos[j]``), optional ``data.batch (N,)``, ``data.params
    (num_graphs, P)``, ``data.t`` (time of the last input step) and ``data.dt`` (each a scalar, per
    graph, or per node). It returns :math:`u^{k+1..k+K}` with shape ``(N, K)`` (the decoder output
    ``(N, F_out)`` with ``out_features``; ``(N, K)`` of raw decoder values without ``bundling``).

    The model is equivariant to node permutations: relabelling the nodes (and the edges with them)
    permutes the output rows the same way (sum aggregation, per-graph instance norm).

    Examples
    --------
    >>> from pdebench.core.graphs import radius_graph
    >>> pos = torch.linspace(0, 1, 20)[:, None]
    >>> data = Data(x=torch.randn(20, 5), pos=pos, edge_index=radius_graph(pos, 0.11), t=0.0, dt=0.1)
    >>> MPPDE(time_window=5, hidden=32, layers=2)(data).shape
    torch.Size([20, 5])

    Steady graph regression, 2 input features -> 1 output per node:

    >>> pos = torch.rand(30, 2)
    >>> data = Data(x=torch.randn(30, 2), pos=pos, edge_index=radius_graph(pos, 0.3))
    >>> MPPDE(hidden=32, layers=2, dim=2, in_features=2, out_features=1, bundling=False)(data).shape
    torch.Size([30, 1])

    References
    ----------
    Brandstetter, Worrall & Welling, "Message Passing Neural PDE Solvers", ICLR 2022.
    """

    def __init__(self, time_window: int = 25, hidden: int = 128, layers: int = 6, params: int = 0, dim: int = 1,
                 in_channels: int | None = None, out_channels: int | None = None, encode_position: bool = True,
                 norm: bool = True, in_features: int | None = None, out_features: int | None = None,
                 bundling: bool = True) -> None:
        super().__init__()
        check_at_least_one(time_window=time_window, hidden=hidden, layers=layers)
        if params < 0:
            raise ValueError(f"params must be >= 0, got {params}")
        if dim not in (1, 2, 3):
            raise ValueError(f"dim must be 1, 2 or 3, got {dim}")
        check_at_least_one(**{name: value for name, value in (("in_features", in_features),
                                                              ("out_features", out_features)) if value is not None})
        if bundling and (in_features is not None or out_features is not None):
            raise ValueError("bundling (u^{k+l} = u^k + l dt d_l) needs the scalar-history mode; "
                             "set bundling=False with in_features/out_features")
        n_in = time_window if in_features is None else int(in_features)
        n_out = time_window if out_features is None else int(out_features)
        for name, value, want, field in (("in_channels", in_channels, n_in, "in_features"),
                                         ("out_channels", out_channels, n_out, "out_features")):
            if value is not None and value != want:
                if (in_features, out_features) == (None, None):
                    raise ValueError(f"{name} ({value}) must equal time_window ({time_window}) for MP-PDE")
                raise ValueError(f"{name} ({value}) must equal {field} ({want})")
        if out_features is None and hidden < time_window:
            raise ValueError(f"hidden ({hidden}) must be >= time_window ({time_window}) for the conv decoder")
        self.init_args = dict(time_window=time_window, hidden=hidden, layers=layers, params=params, dim=dim,
                              encode_position=encode_position, norm=norm)
        if (in_features, out_features, bundling) != (None, None, True):
            self.init_args.update(in_features=in_features, out_features=out_features, bundling=bundling)
        self.time_window, self.hidden, self.params, self.dim = time_window, hidden, params, dim
        self.in_features, self.out_features, self.bundling = n_in, n_out, bool(bundling)
        self.encode_position = encode_position
        self.encoder = _mlp(n_in + (dim if encode_position else 0) + 1 + params, hidden, hidden)
        self.processor = nn.ModuleList(GNNLayer(hidden, n_in, dim, params, norm) for _ in range(layers))
        if out_features is None:
            # Decoder: conv(1->8, k1, stride s1) -> Swish -> conv(8->1, k2), length H -> K.
            # Defaults (H=128, K=25) give k1=16, s1=3, k2=14 as in the paper.
            k1 = max(1, min(16, hidden - time_window + 1))
            s1 = max(1, (hidden - k1) // (time_window + time_window // 2))
            length1 = (hidden - k1) // s1 + 1
            k2 = length1 - time_window + 1
            self.decoder = nn.Sequential(nn.Conv1d(1, 8, k1, stride=s1), nn.SiLU(), nn.Conv1d(8, 1, k2))
        else:
            # Multi-feature decoder: Linear -> Swish -> Linear (linear output: unbounded targets).
            self.decoder = nn.Sequential(nn.Linear(hidden, hidden), nn.SiLU(), nn.Linear(hidden, n_out))
        self.register_buffer("steps", torch.arange(1, time_window + 1, dtype=torch.float32), persistent=False)

    def forward(self, data: Data) -> Tensor:
        """Predict the next bundle; see the class notes for the fields of ``data``.

        Returns
        -------
        Tensor, shape (N, time_window) or (N, out_features)
            :math:`u^{k+\\ell} = u^k + \\ell\\,\\Delta t\\, d_\\ell`, ``ℓ = 1..K`` (with ``bundling``), else
            the decoder output :math:`d`.
        """
        u, pos, edge_index = data.x, data.pos, data.edge_index
        if u is None or u.ndim != 2 or u.shape[1] != self.in_features:
            raise ValueError(f"data.x must have shape (N, {self.in_features}), got "
                             f"{None if u is None else tuple(u.shape)}")
        n = u.shape[0]
        if pos is None or pos.shape != (n, self.dim):
            got = None if pos is None else tuple(pos.shape)
            raise ValueError(f"data.pos must have shape ({n}, {self.dim}), got {got}")
        if edge_index is None or edge_index.ndim != 2 or edge_index.shape[0] != 2:
            raise ValueError("data.edge_index must have shape (2, E)")
        batch = data.batch if getattr(data, "batch", None) is not None else torch.zeros(n, dtype=torch.long,
                                                                                       device=u.device)
        num_graphs = int(batch.max()) + 1 if n else 0
        disp = getattr(data, "edge_attr", None)
        if disp is None:
            disp = pos[edge_index[1]] - pos[edge_index[0]]
        elif disp.shape != (edge_index.shape[1], self.dim):
            raise ValueError(f"data.edge_attr (displacements) must have shape ({edge_index.shape[1]}, {self.dim}), "
                             f"got {tuple(disp.shape)}")
        disp = disp.to(u.dtype)
        if self.params:
            p = getattr(data, "params", None)
            if p is None or p.shape[-1] != self.params:
                raise ValueError(f"data.params must have shape (num_graphs, {self.params}), got "
                                 f"{None if p is None else tuple(p.shape)}")
            p = p.reshape(-1, self.params).to(u.dtype)
            theta = p[batch] if p.shape[0] == num_graphs else p
            if theta.shape[0] != n:
                raise ValueError(f"data.params needs {num_graphs} rows (one per graph), got {p.shape[0]}")
        else:
            theta = u.new_zeros(n, 0)
        t = _per_node(getattr(data, "t", 0.0), batch, num_graphs, n, u, "t")
        feats = [u] + ([pos.to(u.dtype)] if self.encode_position else []) + [t[:, None], theta]
        f = self.encoder(torch.cat(feats, dim=-1))
        for layer in self.processor:
            f = layer(f, u, disp, theta, edge_index, batch)
        if isinstance(self.decoder[0], nn.Linear):
            return self.decoder(f)  # (N, F_out)
        d = self.decoder(f[:, None, :]).squeeze(1)  # (N, K)
        if not self.bundling:
            return d
        dt = _per_node(getattr(data, "dt", None), batch, num_graphs, n, u, "dt")
        return u[:, -1:] + dt[:, None] * self.steps.to(u.dtype) * d


@register_model("mppde_grid", board="operator",
                description="MP-PDE on a periodic 1-D grid: (B, K, nx) -> (B, K, nx)")
class GridMPPDE(nn.Module):
    r"""MP-PDE on a periodic 1-D grid, with the grid operator contract ``(B, K, nx) -> (B, K, nx)``.

    The grid graph (edges to all nodes within ``radius_in_cells`` grid spacings, minimum image) is
    built once per ``(nx, B)`` and cached; edge displacements are the minimum-image
    :math:`x_i - x_j`.

    Parameters
    ----------
    time_window, hidden, layers, params, in_channels, out_channels, encode_position, norm
        As :class:`MPPDE` (``dim`` must be 1).
    length : float, optional
        Period ``L`` of the domain; default ``nx * (x[1] - x[0])`` from the coordinates.
    radius_in_cells : float
        Neighbourhood radius in grid spacings (2 → 4 neighbours per node).

    Examples
    --------
    >>> model = GridMPPDE(time_window=5, hidden=32, layers=2)
    >>> x = torch.linspace(0, 1, 33)[:-1]
    >>> model(torch.randn(3, 5, 32), x, t=0.0, dt=0.01).shape
    torch.Size([3, 5, 32])
    """

    def __init__(self, time_window: int = 25, hidden: int = 128, layers: int = 6, params: int = 0, dim: int = 1,
                 in_channels: int | None = None, out_channels: int | None = None, length: float | None = None,
                 radius_in_cells: float = 2.0, encode_position: bool = True, norm: bool = True) -> None:
        super().__init__()
        if dim != 1:
            raise ValueError(f"GridMPPDE supports dim = 1 only, got {dim}")
        self.model = MPPDE(time_window, hidden, layers, params, 1, in_channels, out_channels, encode_position, norm)
        self.init_args = dict(self.model.init_args, length=length, radius_in_cells=radius_in_cells)
        self.length, self.radius_in_cells = length, radius_in_cells
        self.time_window = time_window
        self._cache: dict[tuple, tuple[Tensor, Tensor]] = {}

    def _graph(self, nx: int, batch_size: int, length: float, device: torch.device) -> tuple[Tensor, Tensor]:
        key = (nx, batch_size, float(length), str(device))
        if key not in self._cache:
            ei, _, disp = grid_graph((nx,), (length,), True, self.radius_in_cells)
            offsets = torch.arange(batch_size).repeat_interleave(ei.shape[1]) * nx
            ei_b = ei.repeat(1, batch_size) + offsets
            self._cache = {key: (ei_b.to(device), disp.repeat(batch_size, 1).to(device))}
        return self._cache[key]

    def forward(self, u: Tensor, x: Tensor | None = None, t: Tensor | float = 0.0, dt: Tensor | float = 1.0,
                params: Tensor | None = None) -> Tensor:
        """Predict the next bundle on the grid.

        Parameters
        ----------
        u : Tensor, shape (B, K, nx)
            Last ``K`` time steps.
        x : Tensor, shape (nx,) or (B, nx), optional
            Grid coordinates (uniform, periodic); default ``i * L / nx`` with ``L = length`` (or 1),
            so that ``model(u)`` follows the plain operator contract.
        t, dt : float or Tensor of shape (B,)
            Time of the last input step and the time step.
        params : Tensor, shape (B, P), optional
            PDE parameters.

        Returns
        -------
        Tensor, shape (B, K, nx)
        """
        if u.ndim != 3 or u.shape[1] != self.time_window:
            raise ValueError(f"u must have shape (B, {self.time_window}, nx), got {tuple(u.shape)}")
        b, k, nx = u.shape
        if x is None:
            x = torch.arange(nx, dtype=u.dtype, device=u.device) * ((self.length or 1.0) / nx)
        if x.shape not in ((nx,), (b, nx)):
            raise ValueError(f"x must have shape ({nx},) or ({b}, {nx}), got {tuple(x.shape)}")
        x_b = x.expand(b, nx) if x.ndim == 1 else x
        length = self.length if self.length is not None else float(nx * (x_b[0, 1] - x_b[0, 0]))
        edge_index, disp = self._graph(nx, b, length, u.device)
        batch = torch.arange(b, device=u.device).repeat_interleave(nx)
        data = Data(x=u.permute(0, 2, 1).reshape(b * nx, k), pos=x_b.reshape(-1, 1).to(u.dtype),
                    edge_index=edge_index, edge_attr=disp.to(u.dtype), batch=batch, t=t, dt=dt, params=params)
        return self.model(data).reshape(b, nx, k).permute(0, 2, 1)
