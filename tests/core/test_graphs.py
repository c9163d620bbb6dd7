"""One graph convention (pdebench.core.graphs): the graph a file's ``to_pyg`` gives is the graph the
graph data module feeds the trained MP-PDE model; edge features by hand and by brute force."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from scipy.spatial import distance

from pdebench.core.graphs import ParticleBox, matrix_graph, mesh_edges, mesh_graph, neighbour_pairs, particle_edges
from pdebench.core.particles import FLUID, WALL, ParticleTrajectory
from pdebench.data.graph_datamodule import GraphDataModule
from pdebench.io.mesh_file import MeshDataset, MeshDataWriter
from pdebench.io.particle_file import ParticleDataset, ParticleDataWriter
from pdebench.models.mppde import MPPDE
from pdebench.solvers.sph import neighbour_pairs as sph_neighbour_pairs

# --------------------------------------------------------------------------------------------------
# Files
# --------------------------------------------------------------------------------------------------


def grid_mesh(nx: int, ny: int) -> tuple[np.ndarray, np.ndarray, dict[str, np.ndarray]]:
    """A triangulated ``nx x ny``-vertex grid of the unit square, interior nodes jittered."""
    x, y = np.meshgrid(np.linspace(0.0, 1.0, nx), np.linspace(0.0, 1.0, ny), indexing="xy")
    nodes = np.stack([x.ravel(), y.ravel()], axis=1)
    i, j = np.meshgrid(np.arange(nx), np.arange(ny), indexing="xy")
    interior = ((i > 0) & (i < nx - 1) & (j > 0) & (j < ny - 1)).ravel()
    nodes[interior] += np.random.default_rng(0).uniform(-0.05, 0.05, size=(int(interior.sum()), 2))
    cells = []
    for row in range(ny - 1):
        for col in range(nx - 1):
            a, b = row * nx + col, row * nx + col + 1
            cells += [[a, b, b + nx], [a, b + nx, a + nx]]
    return nodes, np.array(cells, dtype=np.int64), {"dirichlet": np.flatnonzero(~interior)}


@pytest.fixture(scope="module")
def mesh_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("mesh") / "mesh.h5"
    nodes, cells, boundary = grid_mesh(5, 4)
    rng = np.random.default_rng(1)
    with MeshDataWriter(path, nodes, cells, boundary, "P1") as writer:
        writer.append({"a": rng.uniform(1.0, 2.0, (6, len(nodes))), "u": rng.standard_normal((6, len(nodes)))},
                      np.stack([np.zeros(6, dtype=np.int64), np.arange(6)], axis=1))
    return path


LOWER, UPPER, RADIUS = np.array([0.0, 0.0]), np.array([1.0, 0.6]), 0.15


def trajectory(index: int, n: int = 60, t: int = 5) -> ParticleTrajectory:
    rng = np.random.default_rng(index)
    particle_type = np.full(n, FLUID, dtype=np.int64)
    particle_type[3 * n // 4 :] = WALL
    return ParticleTrajectory(
        sample_id=(0, index),
        time=np.cumsum(rng.uniform(0.5e-3, 1.5e-3, size=t)),
        positions=rng.uniform(LOWER, UPPER, size=(t, n, 2)),
        velocities=rng.normal(size=(t, n, 2)),
        density=1000.0 + rng.normal(scale=5.0, size=(t, n)),
        pressure=rng.normal(scale=1e3, size=(t, n)),
        particle_type=particle_type,
        mass=np.ones(n),
        params={},
    )


@pytest.fixture(scope="module", params=[(False, False), (True, False)], ids=["walls", "periodic_x"])
def particle_file(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("particles") / "particles.h5"
    with ParticleDataWriter(path, lower=LOWER, upper=UPPER, periodic=request.param, radius=RADIUS) as writer:
        writer.append([trajectory(k) for k in range(4)])
    return path


# --------------------------------------------------------------------------------------------------
# The file's graph is the graph the trained model is fed
# --------------------------------------------------------------------------------------------------


def test_mesh_file_graph_is_the_graph_the_datamodule_feeds_mppde(mesh_file: Path) -> None:
    module = GraphDataModule(str(mesh_file), record="mesh", input_fields=["a"], output_fields=["u"], batch_size=2)
    module.setup()
    model = MPPDE(in_features=module.in_channels, out_features=module.out_channels, dim=2, hidden=8, layers=1,
                  time_window=1, bundling=False)
    with MeshDataset(mesh_file) as data:
        for split in ("train", "val", "test"):
            for row, fed in zip(module.splits[split], module.datasets[split], strict=True):
                own = data.to_pyg(int(row), inputs=["a"], outputs=["u"], params=[])
                assert torch.equal(own.edge_index, fed.edge_index)
                assert torch.equal(own.edge_attr, fed.edge_attr)
                assert torch.equal(own.x, fed.x) and torch.equal(own.pos, fed.pos)
                assert own.edge_attr.shape == (own.edge_index.shape[1], 2)
                torch.testing.assert_close(model(own), model(fed), rtol=0, atol=0)
        batch = next(iter(module.train_dataloader()))
        assert model(batch).shape == (batch.num_nodes, module.out_channels)  # the model consumes the convention


def test_particle_file_graph_is_the_graph_the_datamodule_feeds_mppde(particle_file: Path) -> None:
    module = GraphDataModule(str(particle_file), record="particles", history=2, particle_density=True, batch_size=2)
    module.setup()
    model = MPPDE(in_features=module.in_channels, out_features=2, dim=2, hidden=8, layers=1, time_window=1,
                  bundling=False)
    row = int(module.splits["train"][0])
    with ParticleDataset(particle_file) as data:
        for k, frame in enumerate(range(1, 4)):
            fed = module.datasets["train"][k]
            assert fed.sample_id.tolist() == [[row, frame]]
            own = data.to_pyg(row, frame, history=2)
            assert torch.equal(own.edge_index, fed.edge_index)
            assert torch.equal(own.edge_attr, fed.edge_attr)
            assert torch.equal(own.pos, fed.pos)
            torch.testing.assert_close(own.x, fed.x, rtol=1e-6, atol=0)
            torch.testing.assert_close(own.y, fed.y, rtol=1e-5, atol=1e-5)
            assert own.edge_attr.shape == (own.edge_index.shape[1], 2)
            assert (torch.linalg.norm(own.edge_attr.double(), dim=1) < 1.0).all()
            torch.testing.assert_close(model(own), model(fed), rtol=1e-5, atol=1e-6)


# --------------------------------------------------------------------------------------------------
# Edge features by hand and by brute force
# --------------------------------------------------------------------------------------------------


def test_three_node_mesh_edge_features_by_hand() -> None:
    nodes = np.array([[0.0, 0.0], [2.0, 0.0], [0.5, 1.5]])
    pos, edge_index, edge_attr = mesh_graph(nodes, np.array([[0, 1, 2]]))
    # Sorted by target, then source: (source, target) = (1,0) (2,0) (0,1) (2,1) (0,2) (1,2).
    assert edge_index.tolist() == [[1, 2, 0, 2, 0, 1], [0, 0, 1, 1, 2, 2]]
    # edge_attr = x_target - x_source, coordinate units, no norm column.
    expected = [[0 - 2.0, 0 - 0.0], [0 - 0.5, 0 - 1.5], [2.0 - 0, 0 - 0], [2.0 - 0.5, 0 - 1.5],
                [0.5 - 0, 1.5 - 0], [0.5 - 2.0, 1.5 - 0]]
    assert edge_attr.dtype == torch.float32 and edge_attr.tolist() == expected
    assert pos.dtype == torch.float32 and pos.tolist() == nodes.tolist()
    assert torch.equal(mesh_edges(torch.tensor([[2, 0, 1]])), edge_index)  # orientation does not matter


def minimum_image_pairs(pos: np.ndarray, radius: float, length: np.ndarray, periodic: np.ndarray) -> dict:
    """``{(target, source): (x_t - x_s) / radius}`` by scipy's pairwise distances on minimum-image
    coordinates: per axis, the periodic separation is ``min(|dx|, L - |dx|)``."""
    n, d = pos.shape
    per_axis = [distance.squareform(distance.pdist(pos[:, [a]], "cityblock")) for a in range(d)]
    sep = np.stack([np.minimum(s, length[a] - s) if periodic[a] else s for a, s in enumerate(per_axis)], axis=-1)
    dist = np.sqrt((sep**2).sum(-1))
    out = {}
    for i, j in zip(*np.nonzero((dist < radius) & ~np.eye(n, dtype=bool)), strict=True):
        disp = pos[i] - pos[j]
        disp = np.where(periodic, disp - length * np.round(disp / length), disp)
        out[(int(i), int(j))] = disp / radius
    return out


@pytest.mark.parametrize("periodic", [(True, True), (True, False), (False, False)])
def test_periodic_box_radius_graph_matches_scipy_brute_force(periodic: tuple[bool, bool]) -> None:
    lower, upper, radius = np.array([-0.5, 0.0]), np.array([0.5, 0.4]), 0.11
    rng = np.random.default_rng(4)
    pos = rng.uniform(lower, upper, size=(300, 2))
    box = ParticleBox.of(lower, upper, periodic, radius)
    wrapped, edge_index, edge_attr = particle_edges(torch.from_numpy(pos), box)
    expected = minimum_image_pairs(pos, radius, upper - lower, np.array(periodic))
    source, target = edge_index.tolist()
    assert len(expected) > 300 and len(source) == len(expected)
    assert list(zip(target, source, strict=True)) == sorted(expected)  # sorted by target, then source
    want = np.array([expected[(i, j)] for i, j in zip(target, source, strict=True)])
    np.testing.assert_allclose(edge_attr.numpy(), want, rtol=0, atol=1e-6)
    assert torch.equal(wrapped, torch.from_numpy(pos))
    if any(periodic):
        assert any(abs(pos[i] - pos[j]).max() > radius for i, j in expected)  # pairs across the seam


def test_particle_box_wraps_periodic_axes_and_clamps_the_others() -> None:
    box = ParticleBox((0.0, 0.0), (1.0, 1.0), (True, False), 0.1)
    inside = box.inside(torch.tensor([[1.25, 1.5], [-0.25, -0.5]], dtype=torch.float64))
    torch.testing.assert_close(inside, torch.tensor([[0.25, 1.0], [0.75, 0.0]], dtype=torch.float64))
    assert box.first_outside(np.array([[2.0, 0.5], [0.5, 1.5]])) == (1, 1)  # periodic x is never outside
    with pytest.raises(ValueError, match="2 \\* radius"):
        ParticleBox((0.0,), (0.15,), (True,), 0.1)


def test_cell_list_search_equals_the_sph_solver_search() -> None:
    """Until the SPH solver imports the search from core, both must agree pair for pair."""
    pos = torch.rand(400, 2, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    for periodic in ([False, False], [True, True]):
        ours = neighbour_pairs(pos, 0.07, [0.0, 0.0], [1.0, 1.0], periodic)
        theirs = sph_neighbour_pairs(pos, 0.07, [0.0, 0.0], [1.0, 1.0], periodic)
        for a, b in zip(ours, theirs, strict=True):
            assert torch.equal(a, b)


# --------------------------------------------------------------------------------------------------
# Matrices
# --------------------------------------------------------------------------------------------------


def test_matrix_graph_is_the_pattern_of_a_without_its_diagonal() -> None:
    import scipy.sparse as sp

    rng = np.random.default_rng(0)
    dense = np.where(rng.random((9, 9)) < 0.3, rng.standard_normal((9, 9)), 0.0)
    dense[4, 4] = 0.0  # a missing diagonal entry
    dense[2, 2] = 3.0
    for A in (sp.csr_array(dense), sp.coo_matrix(dense), dense):
        graph = matrix_graph(A)
        src, dst = graph.edge_index.numpy()
        expected = sorted((i, j) for i in range(9) for j in range(9) if i != j and dense[i, j] != 0)
        assert list(zip(dst.tolist(), src.tolist())) == expected  # target i, source j; sorted by target, then source
        assert graph.edge_index.dtype == torch.int64 and graph.edge_value.dtype == torch.float64
        np.testing.assert_array_equal(graph.edge_value.numpy(), dense[dst, src])
        np.testing.assert_array_equal(graph.diagonal.numpy(), np.diag(dense))
        assert graph.num_nodes == 9 and graph.lower.tolist() == (dst > src).tolist()
    with_zero = sp.csr_array(dense)
    with_zero.data[0] = 0.0  # an explicitly stored zero is no edge
    assert matrix_graph(with_zero).edge_index.shape[1] == matrix_graph(dense).edge_index.shape[1] - (with_zero.indices[0] != 0)
    with pytest.raises(ValueError, match="must be square, got shape \\(2, 3\\)"):
        matrix_graph(np.ones((2, 3)))
    with pytest.raises(ValueError, match="non-finite"):
        matrix_graph(np.array([[1.0, np.inf], [0.0, 1.0]]))
    with pytest.raises(ValueError, match="must be real"):
        matrix_graph(np.eye(2) * 1j)
