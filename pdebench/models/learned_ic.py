r"""A learned incomplete-Cholesky preconditioner for CG (Li, Chen, Du & Matusik, ICML 2023).

A message-passing network on the *matrix graph* of an SPD matrix :math:`A` (``N x N``;
:func:`pdebench.core.graphs.matrix_graph`: nodes the unknowns, an edge ``j -> i`` per off-diagonal
non-zero, the entry its feature) outputs one value per non-zero of :math:`\mathrm{tril}(A)`. They form
a lower-triangular :math:`L` with exactly that pattern and a positive diagonal, so

.. math::
    M = L L^T

is symmetric positive definite *by construction*, for any weights, and PCG with :math:`M` keeps every
guarantee of CG. :math:`M^{-1} r` costs two sparse triangular solves
(:func:`~pdebench.solvers.linalg.preconditioners.cholesky_factor_preconditioner`, the same code as
IC(0)'s), and :math:`x_0 = M^{-1} b` is the paper's initial guess from the same network
(:func:`initial_guess`). Training (the paper's loss :math:`\|L L^T x - b\|^2` on solver pairs) is in
:mod:`pdebench.training.learned_ic_fit`.

**Inputs, scaled per matrix.** With :math:`s = \max_i |A_{ii}|` the network sees

* node :math:`i`: :math:`A_{ii}/s`;
* edge :math:`j \to i`: :math:`A_{ij}/s`, :math:`A_{ij}/\sqrt{A_{ii}A_{jj}}` and the direction
  :math:`\mathrm{sign}(i - j)` (the factor depends on the elimination order, so the two edges of a
  symmetric pair must be told apart).

Every feature is invariant under :math:`A \to c A`, so the same network serves any grid spacing
(the Poisson matrices scale as :math:`h^{-2}`) and any coefficient scale; the factor below scales as
:math:`\sqrt{c}`, so :math:`M \to c M`: the preconditioned operator :math:`M^{-1}A` is unchanged.

**Network.** Encoders (two-layer SiLU MLPs) lift the node and edge features to ``width`` channels
:math:`h_i, e_{ij}`; ``layers`` message-passing layers (:class:`FactorLayer`) update

.. math::
    e_{ij} \leftarrow e_{ij} + \phi([h_i, h_j, e_{ij}]), \qquad
    h_i \leftarrow h_i + \psi\big([h_i, \textstyle\sum_{j} e_{ij}]\big),

and two linear heads read :math:`t_{ij}` off the strictly lower edges (:math:`i > j`) and
:math:`t_{ii}` off the nodes.

**Factor.** With :math:`\sigma` the softplus and :math:`c_0 = \log(e - 1)` (:math:`\sigma(c_0) = 1`),

.. math::
    L_{ij} = (1 + t_{ij}) \frac{A_{ij}}{\sqrt{A_{jj}}} \;(i > j), \qquad
    L_{ii} = \sqrt{A_{ii}}\,\big(\sigma(t_{ii} + c_0) + \epsilon\big), \quad \epsilon = 10^{-3},

so :math:`L_{ii} > 0` always. The heads start at zero, so the *untrained* network is exactly the
symmetric Gauss-Seidel factor :math:`L = (D + E) D^{-1/2}` (:math:`A = D + E + E^T`, ``1.001`` times
on the diagonal), a classical SPD preconditioner, and training learns a correction of it (the paper's
network outputs the entries of :math:`L`; expressing them relative to the Gauss-Seidel factor is our
choice: every output is then scale-free, and training starts from a working preconditioner). The network runs in float32; :math:`L` is assembled in float64 from its outputs.

References
----------
Y. Li, P. Y. Chen, T. Du, W. Matusik. Learning preconditioners for conjugate gradient PDE solvers.
ICML 2023, PMLR 202:19425-19439.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import scipy.sparse as sp
import torch
from torch import Tensor, nn
from torch.nn import functional as F
from torch_geometric.nn import MessagePassing

from pdebench.core.graphs import MatrixGraph, matrix_graph
from pdebench.models.network_checkpoint import load_network, save_network
from pdebench.models.registry import register_model
from pdebench.registry import check_at_least_one
from pdebench.solvers.linalg import Preconditioner, cholesky_factor_preconditioner

__all__ = ["CHECKPOINT_FORMAT", "FactorLayer", "LearnedIC", "LearnedICConfig", "NETWORKS", "assemble_factor",
           "factor_entries", "factor_gram_product", "initial_guess", "learned_ic_preconditioner", "load_learned_ic",
           "save_learned_ic"]

#: :math:`c_0 = \log(e - 1)`: ``softplus(c_0) = 1``, so zero outputs give the Gauss-Seidel diagonal.
SOFTPLUS_ONE = math.log(math.e - 1.0)
#: :math:`\epsilon`: the smallest diagonal entry is :math:`\epsilon \sqrt{A_{ii}}`.
DIAGONAL_FLOOR = 1e-3
NODE_FEATURES, EDGE_FEATURES = 1, 3


@dataclass(frozen=True)
class LearnedICConfig:
    """Hyper-parameters of :class:`LearnedIC`.

    Attributes
    ----------
    width
        Channels of the node and edge features.
    layers
        Message-passing layers (each widens the receptive field by one graph neighbour).
    """

    width: int = 16
    layers: int = 3

    def __post_init__(self) -> None:
        check_at_least_one(width=self.width, layers=self.layers)


def _mlp(n_in: int, hidden: int, n_out: int) -> nn.Sequential:
    """``Linear -> SiLU -> Linear``."""
    return nn.Sequential(nn.Linear(n_in, hidden), nn.SiLU(), nn.Linear(hidden, n_out))


class FactorLayer(MessagePassing):
    r"""One layer: edge update then node update by the sum of the incoming edges (``flow="source_to_target"``).

    .. math::
        e_{ij}' = e_{ij} + \phi([h_i, h_j, e_{ij}]), \qquad h_i' = h_i + \psi\big([h_i, \textstyle\sum_j e_{ij}']\big)

    for the edges ``j -> i`` of ``edge_index`` (row 0 source ``j``, row 1 target ``i``).
    """

    def __init__(self, width: int) -> None:
        super().__init__(aggr="add", flow="source_to_target")
        self.edge_net = _mlp(3 * width, width, width)
        self.node_net = _mlp(2 * width, width, width)

    def forward(self, h: Tensor, e: Tensor, edge_index: Tensor) -> tuple[Tensor, Tensor]:
        """Node features ``h`` ``(N, W)`` and edge features ``e`` ``(E, W)`` -> the updated pair."""
        src, dst = edge_index
        e = e + self.edge_net(torch.cat([h[dst], h[src], e], dim=-1))
        incoming = self.propagate(edge_index, e=e, size=(h.shape[0], h.shape[0]))
        return h + self.node_net(torch.cat([h, incoming], dim=-1)), e

    def message(self, e: Tensor) -> Tensor:
        """The message ``j -> i`` is the updated edge feature :math:`e_{ij}'`, ``(E, W)``."""
        return e


def _check_graph(graph: MatrixGraph) -> None:
    d = graph.diagonal
    if not bool(torch.all(d > 0)):
        bad = int(torch.nonzero(~(d > 0))[0])
        raise ValueError(f"the learned IC factor needs a positive diagonal (A SPD); A[{bad}, {bad}] = {float(d[bad])}")


@register_model(
    "learned_ic",
    board="linear-solver",
    description="Learned incomplete Cholesky (Li, Chen, Du & Matusik 2023): a message-passing network on the "
    "matrix graph outputs L with the pattern of tril(A) and a positive diagonal; M = L L^T (SPD by construction) "
    "preconditions CG by two triangular solves, trained on ||L L^T x - b||^2 over solver pairs; x0 = M^-1 b",
)
class LearnedIC(nn.Module):
    """The factor network: a :class:`~pdebench.core.graphs.MatrixGraph` -> the raw outputs ``(t_lower, t_diag)``.

    See the module docstring for the features, layers and the map to :math:`L` (:func:`factor_entries`);
    :meth:`factor` goes from a scipy matrix to the scipy factor.

    Parameters
    ----------
    width, layers
        See :class:`LearnedICConfig`.
    in_channels, out_channels
        Must be 1 (accepted for the registry's common constructor signature).
    """

    def __init__(self, width: int = 16, layers: int = 3, in_channels: int = 1, out_channels: int = 1) -> None:
        super().__init__()
        if in_channels != 1 or out_channels != 1:
            raise ValueError(f"LearnedIC maps a matrix to its factor: in_channels and out_channels must be 1, got "
                             f"{in_channels} and {out_channels}")
        self.config = LearnedICConfig(width=width, layers=layers)
        self.node_encoder = _mlp(NODE_FEATURES, width, width)
        self.edge_encoder = _mlp(EDGE_FEATURES, width, width)
        self.processor = nn.ModuleList(FactorLayer(width) for _ in range(layers))
        self.lower_head = nn.Linear(width, 1)
        self.diagonal_head = nn.Linear(width, 1)
        for head in (self.lower_head, self.diagonal_head):  # untrained = symmetric Gauss-Seidel exactly
            nn.init.zeros_(head.weight)
            nn.init.zeros_(head.bias)

    @staticmethod
    def features(graph: MatrixGraph) -> tuple[Tensor, Tensor]:
        r"""The scale-free inputs: node ``(N, 1)`` :math:`A_{ii}/s` and edge ``(E, 3)``
        :math:`[A_{ij}/s,\ A_{ij}/\sqrt{A_{ii}A_{jj}},\ \mathrm{sign}(i - j)]`, :math:`s = \max|A_{ii}|` (float64)."""
        _check_graph(graph)
        d = graph.diagonal
        s = d.abs().max()
        src, dst = graph.edge_index
        a = graph.edge_value
        edge = torch.stack([a / s, a / torch.sqrt(d[dst] * d[src]), torch.sign((dst - src).to(a.dtype))], dim=-1)
        return (d / s)[:, None], edge

    def forward(self, graph: MatrixGraph) -> tuple[Tensor, Tensor]:
        """``(t_lower, t_diag)``: ``(E_lower,)`` on the strictly lower edges (``graph.lower``, CSR order of
        ``tril(A)``) and ``(N,)`` on the nodes, in the network's dtype."""
        dtype = self.lower_head.weight.dtype
        node, edge = (f.to(dtype) for f in self.features(graph))
        h, e = self.node_encoder(node), self.edge_encoder(edge)
        for layer in self.processor:
            h, e = layer(h, e, graph.edge_index)
        return self.lower_head(e[graph.lower]).squeeze(-1), self.diagonal_head(h).squeeze(-1)

    def factor(self, A: sp.sparray | sp.spmatrix) -> sp.csr_array:
        """The factor ``L`` (float64 CSR, shape ``(N, N)``, the pattern of ``tril(A)``) of SPD ``A`` ``(N, N)``."""
        graph = matrix_graph(A)
        with torch.inference_mode():
            t_lower, t_diag = self(graph)
        lower, diagonal = factor_entries(graph, t_lower.double(), t_diag.double())
        if not (torch.all(torch.isfinite(lower)) and torch.all(torch.isfinite(diagonal))):
            raise ValueError("the network returned non-finite factor entries")
        return assemble_factor(graph, lower, diagonal)


def factor_entries(graph: MatrixGraph, t_lower: Tensor, t_diag: Tensor, scale: float | Tensor = 1.0) -> tuple[Tensor, Tensor]:
    r"""The entries of :math:`L / \sqrt{\text{scale}}` from the raw outputs (differentiable).

    :math:`L_{ij} = (1 + t_{ij}) A_{ij}/\sqrt{A_{jj}}` on the strictly lower edges (``graph.lower``) and
    :math:`L_{ii} = \sqrt{A_{ii}}(\mathrm{softplus}(t_{ii} + c_0) + \epsilon)`, computed on
    :math:`A / \text{scale}` (training passes :math:`s = \max|A_{ii}|`, so the loss is computed on O(1) numbers).

    Returns
    -------
    lower, diagonal
        ``(E_lower,)`` and ``(N,)``, in the dtype of ``t_lower``.
    """
    dtype = t_lower.dtype
    d = graph.diagonal.to(dtype) / scale
    src, dst = graph.edge_index[:, graph.lower]
    a = graph.edge_value[graph.lower].to(dtype) / scale
    lower = (1.0 + t_lower) * a / torch.sqrt(d[src])
    diagonal = torch.sqrt(d) * (F.softplus(t_diag + SOFTPLUS_ONE) + DIAGONAL_FLOOR)
    return lower, diagonal


def factor_gram_product(graph: MatrixGraph, lower: Tensor, diagonal: Tensor, X: Tensor) -> Tensor:
    r""":math:`L L^T X` for ``X`` ``(N, B)``, with :math:`L` given by its entries (differentiable in all).

    :math:`(L^T X)_j = L_{jj} X_j + \sum_{i > j} L_{ij} X_i`, then :math:`(L Y)_i = L_{ii} Y_i + \sum_{j < i} L_{ij} Y_j`,
    over the strictly lower edges ``j -> i`` of ``graph``.
    """
    src, dst = graph.edge_index[:, graph.lower]
    w = lower[:, None]
    Y = (diagonal[:, None] * X).index_add(0, src, w * X[dst])
    return (diagonal[:, None] * Y).index_add(0, dst, w * Y[src])


def assemble_factor(graph: MatrixGraph, lower: Tensor, diagonal: Tensor) -> sp.csr_array:
    """The scipy factor ``L`` (float64 CSR ``(N, N)``, sorted indices) of the entries on ``graph``'s
    strictly lower edges (``(E_lower,)``) and its diagonal (``(N,)``)."""
    n = graph.num_nodes
    src, dst = (v.numpy() for v in graph.edge_index[:, graph.lower])
    nodes = np.arange(n)
    values = np.concatenate([lower.detach().double().numpy(), diagonal.detach().double().numpy()])
    L = sp.csr_array((values, (np.concatenate([dst, nodes]), np.concatenate([src, nodes]))), shape=(n, n))
    L.sort_indices()
    return L


def learned_ic_preconditioner(model: LearnedIC, A: sp.sparray | sp.spmatrix) -> Preconditioner:
    """:math:`M = L L^T` with ``L = model.factor(A)``: kind ``"learned_ic"``, ``setup_time`` the network's
    forward, the assembly of ``L`` and the triangular solver's set-up (wall seconds)."""
    start = time.perf_counter()
    L = model.factor(A)
    return cholesky_factor_preconditioner(L, "learned_ic", setup_time=time.perf_counter() - start)


def initial_guess(preconditioner: Preconditioner, b: np.ndarray) -> np.ndarray:
    r"""The paper's initial guess from the same network: :math:`x_0 = M^{-1} b = (L L^T)^{-1} b`, ``(N,)``.

    Training drives :math:`L L^T x \approx b` on the solutions of the problem's distribution, so
    :math:`M^{-1} b` approximates :math:`A^{-1} b` at the cost of one preconditioner application.
    """
    return preconditioner.apply(np.asarray(b, dtype=np.float64))


# ----------------------------------------------------------------------------------------------
# Checkpoints
# ----------------------------------------------------------------------------------------------
CHECKPOINT_FORMAT = "pdebench-learned-ic"
#: The network classes a learned-IC checkpoint may name (its allow-list).
NETWORKS: dict[str, type[nn.Module]] = {"LearnedIC": LearnedIC}


def save_learned_ic(path: str | Path, model: LearnedIC, training: dict | None = None) -> Path:
    """Write ``model`` and its JSON-able training card to ``path`` atomically (format :data:`CHECKPOINT_FORMAT`)."""
    return save_network(path, model, training, fmt=CHECKPOINT_FORMAT, classes=NETWORKS, what="learned IC")


def load_learned_ic(path: str | Path) -> tuple[LearnedIC, dict]:
    """``(network in eval mode, training card)`` from a :func:`save_learned_ic` file."""
    _, model, training = load_network(path, {CHECKPOINT_FORMAT: NETWORKS}, "learned IC",
                                      "write one with pdebench.models.learned_ic.save_learned_ic")
    return model, training  # type: ignore[return-value]
