"""MP-PDE (message-passing neural PDE solver) and the pure-torch graph builders."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch_geometric.data import Data

from pdebench.models import MODELS
from pdebench.core.graphs import ParticleBox, grid_graph, knn_graph, mesh_edges, particle_edges, radius_graph
from pdebench.models.mppde import MPPDE, GridMPPDE


def _edges(edge_index: torch.Tensor) -> list[tuple[int, int]]:
    return [tuple(e) for e in edge_index.t().tolist()]


def _brute_radius(pos: np.ndarray, r: float, batch: np.ndarray, loop: bool) -> list[tuple[int, int]]:
    n = len(pos)
    out = []
    for i in range(n):  # sorted by target i, then source j
        for j in range(n):
            if batch[i] == batch[j] and (loop or i != j) and np.linalg.norm(pos[i] - pos[j]) <= r:
                out.append((j, i))
    return out


@pytest.mark.parametrize("loop", [False, True])
def test_radius_graph_matches_brute_force_with_batches(loop):
    g = torch.Generator().manual_seed(0)
    pos = torch.rand(60, 2, generator=g, dtype=torch.float64)
    batch = torch.tensor([0] * 25 + [1] * 20 + [2] * 15)
    got = radius_graph(pos, 0.3, batch=batch, loop=loop)
    assert got.shape[0] == 2 and got.dtype == torch.long
    assert _edges(got) == _brute_radius(pos.numpy(), 0.3, batch.numpy(), loop)


def test_radius_graph_max_num_neighbors_keeps_nearest():
    pos = torch.rand(40, 2, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    got = radius_graph(pos, 0.5, max_num_neighbors=3)
    d = torch.cdist(pos, pos).numpy()
    for i in range(40):
        src = got[0, got[1] == i].numpy()
        cand = [j for j in np.argsort(d[i], kind="stable") if j != i and d[i, j] <= 0.5][:3]
        assert sorted(src) == sorted(cand)


def test_knn_graph_matches_brute_force_with_batches():
    g = torch.Generator().manual_seed(2)
    pos = torch.rand(50, 3, generator=g, dtype=torch.float64)
    batch = torch.tensor([0] * 30 + [1] * 20)
    got = knn_graph(pos, 4, batch=batch)
    p, b = pos.numpy(), batch.numpy()
    expected = []
    for i in range(50):
        same = [j for j in range(50) if b[j] == b[i] and j != i]
        dist = [np.linalg.norm(p[i] - p[j]) for j in same]
        nearest = sorted(np.asarray(same)[np.argsort(dist, kind="stable")[:4]].tolist())
        expected += [(j, i) for j in nearest]
    assert _edges(got) == expected


@pytest.mark.parametrize("shape, lengths", [((10,), (2.0,)), ((6, 5), (1.2, 1.0))])
def test_periodic_grid_graph_matches_brute_force(shape, lengths):
    edge_index, pos, disp = grid_graph(shape, lengths, periodic=True, radius_in_cells=2.0)
    p = pos.double().numpy()
    L = np.asarray(lengths)
    r = 2.0 * min(L[a] / shape[a] for a in range(len(shape)))
    expected, exp_disp = [], []
    for i in range(len(p)):
        for j in range(len(p)):
            dx = p[i] - p[j]
            dx -= L * np.round(dx / L)
            if i != j and np.linalg.norm(dx) <= r * (1 + 1e-6):
                expected.append((j, i))
                exp_disp.append(dx)
    assert _edges(edge_index) == expected
    np.testing.assert_allclose(disp.numpy(), np.asarray(exp_disp), atol=1e-5)
    if len(shape) == 1:  # 1-D periodic, radius 2 cells -> 4 neighbours each
        assert torch.bincount(edge_index[1]).eq(4).all()


def test_mesh_graph_two_triangles():
    cells = torch.tensor([[0, 1, 2], [1, 3, 2]])
    got = set(_edges(mesh_edges(cells)))
    undirected = {(0, 1), (1, 2), (0, 2), (1, 3), (2, 3)}
    assert got == undirected | {(b, a) for a, b in undirected}
    assert mesh_edges(cells).shape[1] == 10


def test_particle_graph_matches_radius_graph():
    pos = torch.rand(80, 2, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    _, ei, attr = particle_edges(pos, ParticleBox((0.0, 0.0), (1.0, 1.0), (False, False), 0.2))
    ref = radius_graph(pos, 0.2)  # no pair at exactly r in random data
    assert _edges(ei) == _edges(ref)
    torch.testing.assert_close(attr, ((pos[ei[1]] - pos[ei[0]]) / 0.2).float())


def _random_data(n=30, tw=5, params=0, seed=0, dim=1):
    g = torch.Generator().manual_seed(seed)
    pos = torch.rand(n, dim, generator=g, dtype=torch.float64)
    data = Data(x=torch.randn(n, tw, generator=g, dtype=torch.float64), pos=pos,
                edge_index=radius_graph(pos, 0.2), t=0.3, dt=0.05)
    if params:
        data.params = torch.randn(1, params, generator=g, dtype=torch.float64)
    return data


def test_message_passing_is_invariant_to_node_order():
    torch.manual_seed(0)
    model = MPPDE(time_window=5, hidden=32, layers=2, params=2, dim=2).double().eval()
    data = _random_data(n=40, params=2, dim=2)
    out = model(data)
    perm = torch.randperm(40)
    inv = torch.argsort(perm)
    ei = inv[data.edge_index]  # relabel node k -> inv[k]
    ei = ei[:, torch.randperm(ei.shape[1])]  # and shuffle the edge order
    permuted = Data(x=data.x[perm], pos=data.pos[perm], edge_index=ei, t=data.t, dt=data.dt, params=data.params)
    torch.testing.assert_close(model(permuted), out[perm], atol=1e-6, rtol=1e-6)


def test_translation_equivariance_when_positions_enter_as_differences():
    torch.manual_seed(0)
    model = MPPDE(time_window=5, hidden=32, layers=2, dim=2, encode_position=False).double().eval()
    data = _random_data(n=30, dim=2)
    shifted = Data(x=data.x, pos=data.pos + torch.tensor([3.7, -1.2], dtype=torch.float64),
                   edge_index=data.edge_index, t=data.t, dt=data.dt)
    torch.testing.assert_close(model(shifted), model(data), atol=1e-10, rtol=0)


def test_temporal_bundling_with_zero_decoder_repeats_last_value():
    model = MPPDE(time_window=5, hidden=32, layers=1).double()
    data = _random_data()
    with torch.no_grad():
        model.decoder[-1].weight.zero_()
        model.decoder[-1].bias.zero_()
    out = model(data)
    torch.testing.assert_close(out, data.x[:, -1:].expand(-1, 5))
    with torch.no_grad():  # constant decoder output c -> u_k + l dt c
        model.decoder[-1].bias.fill_(2.0)
    expected = data.x[:, -1:] + 0.05 * torch.arange(1, 6, dtype=torch.float64) * 2.0
    torch.testing.assert_close(model(data), expected)


def test_shapes_with_params_conditioning_and_batches():
    model = MPPDE(time_window=4, hidden=24, layers=2, params=3)
    pos = torch.linspace(0, 1, 16)[:, None].repeat(2, 1)
    batch = torch.tensor([0] * 16 + [1] * 16)
    data = Data(x=torch.randn(32, 4), pos=pos, edge_index=radius_graph(pos, 0.15, batch=batch), batch=batch,
                params=torch.randn(2, 3), t=torch.tensor([0.0, 1.0]), dt=torch.tensor([0.1, 0.2]))
    assert model(data).shape == (32, 4)
    data.params = torch.randn(2, 2)
    with pytest.raises(ValueError, match="params"):
        model(data)
    grid = GridMPPDE(time_window=4, hidden=24, layers=2, params=3)
    x = torch.linspace(0, 1, 17)[:-1]
    assert grid(torch.randn(2, 4, 16), x, t=torch.zeros(2), dt=0.1, params=torch.randn(2, 3)).shape == (2, 4, 16)
    with pytest.raises(ValueError, match="time_window"):
        MPPDE(time_window=4, in_channels=5)
    assert MODELS.get("mppde").board == "operator"


def test_tiny_overfit_on_advection():
    torch.manual_seed(0)
    nx, tw, dt, c, L = 32, 4, 0.02, 1.0, 1.0
    x = torch.arange(nx) * (L / nx)
    t = torch.arange(2 * tw) * dt
    phases = torch.rand(4) * 2 * np.pi
    u = torch.stack([torch.sin(2 * np.pi * (x[None, :] - c * t[:, None]) + p) for p in phases])  # (B, 2tw, nx)
    window, target = u[:, :tw], u[:, tw:]
    model = GridMPPDE(time_window=tw, hidden=32, layers=2)
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    losses = []
    for _ in range(300):
        opt.zero_grad()
        loss = torch.nn.functional.mse_loss(model(window, x, t=t[tw - 1], dt=dt), target)
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < losses[0] / 100, (losses[0], losses[-1])


def test_grid_wrapper_default_coordinates_follow_operator_contract():
    model = MODELS.get("mppde_grid").cls(time_window=3, hidden=16, layers=1, in_channels=3, out_channels=3)
    assert model(torch.randn(2, 3, 10)).shape == (2, 3, 10)
