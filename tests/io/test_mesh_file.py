"""Tests of the mesh data file (atomic writer, lazy reader) and its PyG graphs."""

from __future__ import annotations

import pickle
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch
from torch_geometric.data import Batch
from torch_geometric.transforms import Cartesian

from pdebench.core import graphs
from pdebench.core.graphs import mesh_to_pyg as to_pyg
from pdebench.io.mesh_file import Mesh, MeshDataset, MeshDataWriter


def mesh_edges(cells: np.ndarray, **kwargs) -> np.ndarray:
    """:func:`pdebench.core.graphs.mesh_edges` as a numpy ``(2, E)`` int64 array."""
    return graphs.mesh_edges(cells, **kwargs).numpy()


SQUARE_NODES = np.array([[0.0, 0.0], [1.0, 0.0], [1.0, 1.0], [0.0, 1.0]])
SQUARE_CELLS = np.array([[0, 1, 2], [0, 2, 3]])


def grid_mesh(nx: int, ny: int, *, seed: int = 0) -> tuple[np.ndarray, np.ndarray, dict[str, np.ndarray]]:
    """A structured triangulated ``nx x ny``-vertex grid of the unit square, interior nodes jittered.

    Returns nodes ``(nx * ny, 2)``, cells ``(2 (nx-1)(ny-1), 3)`` with alternating diagonals, and the
    boundary markers ``dirichlet`` (left and right sides) and ``outer`` (all boundary nodes).
    """
    x, y = np.meshgrid(np.linspace(0.0, 1.0, nx), np.linspace(0.0, 1.0, ny), indexing="xy")
    nodes = np.stack([x.ravel(), y.ravel()], axis=1)
    i, j = np.meshgrid(np.arange(nx), np.arange(ny), indexing="xy")
    interior = ((i > 0) & (i < nx - 1) & (j > 0) & (j < ny - 1)).ravel()
    rng = np.random.default_rng(seed)
    nodes[interior] += rng.uniform(-0.2, 0.2, size=(int(interior.sum()), 2)) / max(nx, ny)
    cells = []
    for row in range(ny - 1):
        for col in range(nx - 1):
            a, b = row * nx + col, row * nx + col + 1
            c, d = a + nx, b + nx
            cells += [[a, b, d], [a, d, c]] if (row + col) % 2 == 0 else [[a, b, c], [b, d, c]]
    left_right = np.flatnonzero(((i == 0) | (i == nx - 1)).ravel())
    outer = np.flatnonzero((~interior))
    return nodes, np.array(cells, dtype=np.int64), {"dirichlet": left_right, "outer": outer}


def p2_from_p1(nodes: np.ndarray, cells: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Add one midside node per edge: P2 nodes ``(V + E, 2)`` and cells ``(F, 6)``."""
    pairs = np.concatenate([np.sort(cells[:, [a, b]], axis=1) for a, b in ((0, 1), (1, 2), (2, 0))])
    edges, inverse = np.unique(pairs, axis=0, return_inverse=True)
    mids = len(nodes) + inverse.reshape(3, -1).T
    return np.concatenate([nodes, nodes[edges].mean(axis=1)]), np.concatenate([cells, mids], axis=1)


def undirected(edge_index: np.ndarray) -> set[tuple[int, int]]:
    return {(min(a, b), max(a, b)) for a, b in np.asarray(edge_index).T.tolist()}


def write_file(path: Path, batches: int = 2, batch: int = 3, **kwargs) -> dict[str, np.ndarray]:
    """Write a P1 grid file of ``batches`` batches; return what was written (float64 fields)."""
    nodes, cells, boundary = grid_mesh(4, 3)
    rng = np.random.default_rng(1)
    n = len(nodes)
    total = batches * batch
    written = {
        "f": rng.standard_normal((total, n)),
        "disp": rng.standard_normal((total, n, 2)),
        "ids": np.stack([np.full(total, 7), np.arange(total)], axis=1),
        "k": rng.uniform(1.0, 10.0, total),
        "level": np.arange(total) % 2,
    }
    provenance = {"solver": "fem", "h": 0.25, "seeds": [7]}
    with MeshDataWriter(path, nodes, cells, boundary, "P1", provenance=provenance, **kwargs) as w:
        for b in range(batches):
            rows = slice(b * batch, (b + 1) * batch)
            w.append(
                {"f": written["f"][rows], "disp": torch.from_numpy(written["disp"][rows])},
                written["ids"][rows],
                params={"k": written["k"][rows], "level": written["level"][rows]},
            )
    return {**written, "nodes": nodes, "cells": cells, **{f"boundary.{k}": v for k, v in boundary.items()}}


def leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


# --------------------------------------------------------------------------------------------------
# File round trip and atomicity
# --------------------------------------------------------------------------------------------------


def test_round_trip_mesh_fields_ids_params(tmp_path: Path) -> None:
    path = tmp_path / "poisson.h5"
    w = write_file(path)
    assert leftovers(tmp_path) == ["poisson.h5"]
    with MeshDataset(path) as data:
        assert len(data) == 6
        assert data.mesh.element == "P1"
        assert data.mesh.nodes.dtype == np.float64 and np.array_equal(data.mesh.nodes, w["nodes"])
        assert data.mesh.cells.dtype == np.int64 and np.array_equal(data.mesh.cells, w["cells"])
        assert list(data.mesh.boundary) == ["dirichlet", "outer"]
        for name, indices in data.mesh.boundary.items():
            assert np.array_equal(indices, w[f"boundary.{name}"])
        assert data.fields == {"f": (6, 12), "disp": (6, 12, 2)}
        # Fields are stored float32 (documented): exact up to that cast.
        assert np.array_equal(data.read_field("f"), w["f"].astype(np.float32))
        assert np.array_equal(data.read_field("disp", [5, 0]), w["disp"][[5, 0]].astype(np.float32))
        assert np.array_equal(data.sample_ids(), w["ids"])
        assert data.params["k"].dtype == np.float64 and np.array_equal(data.params["k"], w["k"])
        assert data.params["level"].dtype == np.int64 and np.array_equal(data.params["level"], w["level"])
        assert data.provenance == {"solver": "fem", "h": 0.25, "seeds": [7]}
        sample = data.sample(-2)
        assert np.array_equal(sample["fields"]["disp"], w["disp"][4].astype(np.float32))
        assert sample["params"] == {"k": w["k"][4], "level": 0}
        assert sample["sample_id"].tolist() == [7, 4]
        with pytest.raises(IndexError):
            data.sample(6)
    with h5py.File(path, "r") as f:
        assert f.attrs["pdebench_format_version"] == 1 and f.attrs["pdebench_layout"] == "mesh_nodal"
        assert f["fields/f"].dtype == np.float32 and f["fields/f"].maxshape == (None, 12)
        assert f["mesh/boundary/outer"].dtype == np.int64


def test_reader_pickles_by_path_and_rejects_other_files(tmp_path: Path) -> None:
    path = tmp_path / "a.h5"
    write_file(path, batches=1)
    with MeshDataset(path) as data, pickle.loads(pickle.dumps(data)) as copy:
        assert np.array_equal(copy.read_field("f"), data.read_field("f"))
    other = tmp_path / "other.h5"
    with h5py.File(other, "w") as f:
        f["tensor"] = np.zeros((2, 3, 4))
    with pytest.raises(ValueError, match="not a mesh data file"):
        MeshDataset(other)
    with pytest.raises(FileNotFoundError):
        MeshDataset(tmp_path / "missing.h5")


def test_exception_inside_with_leaves_no_file_and_no_temporary(tmp_path: Path) -> None:
    path = tmp_path / "out.h5"
    nodes, cells, boundary = grid_mesh(3, 3)
    with pytest.raises(RuntimeError, match="solver failed"):
        with MeshDataWriter(path, nodes, cells, boundary) as writer:
            writer.append({"u": np.ones((2, 9))}, np.array([[0, 0], [0, 1]]))
            assert not path.exists()  # nothing under the final name while writing
            assert writer.temp_path.exists() and writer.temp_path.parent == tmp_path
            raise RuntimeError("solver failed")
    assert leftovers(tmp_path) == []


def test_existing_file_is_kept_unless_overwrite(tmp_path: Path) -> None:
    path = tmp_path / "out.h5"
    path.write_bytes(b"old")
    nodes, cells, boundary = grid_mesh(3, 3)
    with pytest.raises(FileExistsError, match="out.h5"):
        MeshDataWriter(path, nodes, cells, boundary)
    assert path.read_bytes() == b"old" and leftovers(tmp_path) == ["out.h5"]
    with MeshDataWriter(path, nodes, cells, boundary, overwrite=True) as writer:
        writer.append({"u": np.ones((1, 9))}, np.array([[0, 0]]))
        assert path.read_bytes() == b"old"
    assert leftovers(tmp_path) == ["out.h5"]
    with MeshDataset(path) as data:
        assert len(data) == 1


def test_close_without_samples_writes_nothing(tmp_path: Path) -> None:
    nodes, cells, boundary = grid_mesh(3, 3)
    with pytest.raises(ValueError, match="no samples"):
        with MeshDataWriter(tmp_path / "out.h5", nodes, cells, boundary):
            pass
    assert leftovers(tmp_path) == []


# --------------------------------------------------------------------------------------------------
# Batch validation
# --------------------------------------------------------------------------------------------------


def test_nonfinite_batch_is_rejected_naming_field_and_sample(tmp_path: Path) -> None:
    path = tmp_path / "out.h5"
    nodes, cells, boundary = grid_mesh(3, 3)
    with MeshDataWriter(path, nodes, cells, boundary) as writer:
        writer.append({"u": np.zeros((2, 9))}, np.array([[3, 0], [3, 1]]), params={"k": np.array([1.0, 2.0])})
        bad = np.zeros((3, 9))
        bad[1, 4] = np.nan
        with pytest.raises(ValueError, match=r"field 'u'.*\(3, 11\)"):
            writer.append({"u": bad}, np.array([[3, 10], [3, 11], [3, 12]]), params={"k": np.ones(3)})
        with pytest.raises(ValueError, match=r"field 'u'.*\(3, 20\)"):  # overflows float32
            writer.append({"u": np.full((1, 9), 1e300)}, np.array([[3, 20]]), params={"k": np.ones(1)})
        with pytest.raises(ValueError, match=r"param 'k'.*\(3, 31\)"):
            writer.append({"u": np.zeros((2, 9))}, np.array([[3, 30], [3, 31]]), params={"k": np.array([1.0, np.inf])})
        assert writer.num_samples == 2
        writer.append({"u": np.ones((1, 9))}, np.array([[3, 2]]), params={"k": np.array([3.0])})
    with MeshDataset(path) as data:
        assert data.sample_ids().tolist() == [[3, 0], [3, 1], [3, 2]]
        assert data.params["k"].tolist() == [1.0, 2.0, 3.0]
        assert data.read_field("u").sum(axis=1).tolist() == [0.0, 0.0, 9.0]


def test_inconsistent_batches_are_rejected(tmp_path: Path) -> None:
    nodes, cells, boundary = grid_mesh(3, 3)
    ids = np.array([[0, 0]])
    with MeshDataWriter(tmp_path / "out.h5", nodes, cells, boundary) as writer:
        writer.append({"u": np.zeros((1, 9)), "v": np.zeros((1, 9, 2))}, ids, params={"k": [1.0]})
        with pytest.raises(ValueError, match="fields"):
            writer.append({"u": np.zeros((1, 9))}, ids, params={"k": [1.0]})
        with pytest.raises(ValueError, match="field 'v'"):
            writer.append({"u": np.zeros((1, 9)), "v": np.zeros((1, 9, 3))}, ids, params={"k": [1.0]})
        with pytest.raises(ValueError, match="params"):
            writer.append({"u": np.zeros((1, 9)), "v": np.zeros((1, 9, 2))}, ids)
        with pytest.raises(ValueError, match=r"expected \(1, 9\[, C\]\)"):  # wrong node count
            writer.append({"u": np.zeros((1, 8)), "v": np.zeros((1, 9, 2))}, ids, params={"k": [1.0]})
        with pytest.raises(ValueError, match="sample_ids"):
            writer.append({"u": np.zeros((1, 9)), "v": np.zeros((1, 9, 2))}, np.array([0, 0]), params={"k": [1.0]})
        assert writer.num_samples == 1


# --------------------------------------------------------------------------------------------------
# Mesh validation
# --------------------------------------------------------------------------------------------------


def test_bad_mesh_raises_before_anything_is_written(tmp_path: Path) -> None:
    path = tmp_path / "out.h5"
    with pytest.raises(ValueError, match=r"cells\[1, 2\] = 4 is not a node index"):
        MeshDataWriter(path, SQUARE_NODES, np.array([[0, 1, 2], [0, 2, 4]]))
    with pytest.raises(ValueError, match="= -1"):
        MeshDataWriter(path, SQUARE_NODES, np.array([[0, 1, 2], [-1, 2, 3]]))
    with pytest.raises(ValueError, match=r"boundary\['dirichlet'\] holds node index 9"):
        MeshDataWriter(path, SQUARE_NODES, SQUARE_CELLS, {"dirichlet": np.array([0, 9])})
    with pytest.raises(ValueError, match="repeats a node"):
        MeshDataWriter(path, SQUARE_NODES, np.array([[0, 1, 1]]))
    with pytest.raises(ValueError, match="element P2 needs 6"):
        MeshDataWriter(path, SQUARE_NODES, SQUARE_CELLS, element="P2")
    with pytest.raises(ValueError, match="integer"):
        MeshDataWriter(path, SQUARE_NODES, SQUARE_CELLS.astype(float))
    with pytest.raises(ValueError, match=r"nodes must have shape"):
        MeshDataWriter(path, SQUARE_NODES[:, :1], SQUARE_CELLS)
    nodes, cells = p2_from_p1(SQUARE_NODES, SQUARE_CELLS)
    swapped = cells.copy()
    swapped[1, [3, 5]] = swapped[1, [5, 3]]  # midside nodes in the wrong columns
    with pytest.raises(ValueError, match="midside node of edge"):
        Mesh(nodes, swapped)
    assert leftovers(tmp_path) == []


# --------------------------------------------------------------------------------------------------
# Graph edges
# --------------------------------------------------------------------------------------------------


def test_two_triangle_square_has_its_five_edges_both_ways() -> None:
    edges = mesh_edges(SQUARE_CELLS)
    assert edges.dtype == np.int64 and edges.shape == (2, 10)
    expected = {(0, 1), (1, 2), (0, 2), (2, 3), (0, 3)}
    assert set(map(tuple, edges.T.tolist())) == expected | {(b, a) for a, b in expected}
    # sorted by target, then source (the convention of pdebench.core.graphs)
    assert list(map(tuple, edges[::-1].T.tolist())) == sorted(map(tuple, edges[::-1].T.tolist()))


def test_every_grid_edge_appears_once_per_direction() -> None:
    nodes, cells, _ = grid_mesh(7, 5, seed=3)
    edges = mesh_edges(cells)
    assert not (edges[0] == edges[1]).any()
    pairs = list(map(tuple, edges.T.tolist()))
    assert len(set(pairs)) == len(pairs)
    undirected_count: dict[tuple[int, int], int] = {}
    for a, b in pairs:
        key = (min(a, b), max(a, b))
        undirected_count[key] = undirected_count.get(key, 0) + 1
    assert set(undirected_count.values()) == {2}
    # Euler for a triangulated disk: V - E + F = 1; here also (nx-1) ny + nx (ny-1) + (nx-1)(ny-1).
    assert len(undirected_count) == len(nodes) + len(cells) - 1 == 6 * 5 + 7 * 4 + 6 * 4
    assert undirected(edges) == {
        (min(a, b), max(a, b)) for cell in cells.tolist() for a, b in zip(cell, cell[1:] + cell[:1])
    }


def test_p2_edges_refined_and_corners() -> None:
    nodes, cells = p2_from_p1(SQUARE_NODES, SQUARE_CELLS)  # 4 corners + 5 midside nodes
    refined = mesh_edges(cells)
    n_p1_edges, n_cells = 5, 2
    # Four sub-triangles per cell: 2 E + 3 F undirected edges, again V + F - 1 with V = 9, F = 8.
    assert refined.shape == (2, 2 * (2 * n_p1_edges + 3 * n_cells)) == (2, 2 * (9 + 8 - 1))
    corner_pairs = {(0, 1), (1, 2), (0, 2), (2, 3), (0, 3)}
    assert not undirected(refined) & corner_pairs  # no edge runs through a midside node
    corners = mesh_edges(cells, p2_edges="corners")
    assert corners.shape == (2, 2 * 3 * n_p1_edges)
    assert corner_pairs <= undirected(corners)
    mids = set(range(4, 9))
    assert all((a in mids) != (b in mids) for a, b in undirected(corners) - corner_pairs)


# --------------------------------------------------------------------------------------------------
# PyG graphs
# --------------------------------------------------------------------------------------------------


def test_to_pyg_shapes_and_edge_attributes() -> None:
    nodes, cells, boundary = grid_mesh(5, 4)
    n = len(nodes)
    rng = np.random.default_rng(0)
    f, disp, u = rng.standard_normal(n), rng.standard_normal((n, 2)), rng.standard_normal(n)
    data = to_pyg(nodes, cells, {"f": f, "disp": disp}, {"u": u}, params={"k": 2.5}, boundary=boundary)
    n_edges = 2 * (n + len(cells) - 1)
    assert data.num_nodes == n
    assert data.x.shape == (n, 4) and data.x.dtype == torch.float32
    assert data.y.shape == (n, 1) and data.y.dtype == torch.float32
    assert data.pos.shape == (n, 2) and data.pos.dtype == torch.float32
    assert data.edge_index.shape == (2, n_edges) and data.edge_index.dtype == torch.int64
    assert data.edge_attr.shape == (n_edges, 2) and data.edge_attr.dtype == torch.float32
    assert data.params.tolist() == [[2.5]]
    assert torch.equal(data.x[:, 0], torch.from_numpy(f).float())
    assert torch.equal(data.x[:, 1:3], torch.from_numpy(disp).float())
    marker = np.zeros(n, dtype=np.float32)
    marker[boundary["dirichlet"]] = 1.0
    assert torch.equal(data.x[:, 3], torch.from_numpy(marker))
    # target minus source: the negative of what PyG's Cartesian(norm=False) gives (source minus target)
    reference = Cartesian(norm=False)(data.clone().update({"edge_attr": None}))
    assert torch.allclose(data.edge_attr, -reference.edge_attr, atol=1e-6)
    assert torch.equal(data.edge_attr, (torch.from_numpy(nodes)[data.edge_index[1]]
                                        - torch.from_numpy(nodes)[data.edge_index[0]]).float())
    assert data.validate(raise_on_error=True)
    # Without boundary: no marker channel; params broadcast as channels on request; other markers.
    plain = to_pyg(nodes, cells, {"f": f}, {"u": u}, params={"k": 2.5, "E": 1.0}, params_as_channels=True)
    assert plain.x.shape == (n, 3) and torch.equal(plain.x[:, 1:], torch.tensor([[2.5, 1.0]]).expand(n, 2))
    outer = to_pyg(nodes, cells, {"f": f}, {"u": u}, boundary=boundary, dirichlet=["outer"])
    assert outer.x[:, 1].sum().item() == len(boundary["outer"])
    with pytest.raises(ValueError, match="no boundary marker"):
        to_pyg(nodes, cells, {"f": f}, {"u": u}, boundary=boundary, dirichlet="inflow")


def test_dataset_to_pyg_and_list(tmp_path: Path) -> None:
    path = tmp_path / "data.h5"
    w = write_file(path)
    with MeshDataset(path) as data:
        graph = data.to_pyg(4, inputs=["f"], outputs=["disp"])
        n = data.mesh.num_nodes
        assert graph.x.shape == (n, 2) and graph.y.shape == (n, 2)
        assert torch.equal(graph.y, torch.from_numpy(w["disp"][4]).float())
        assert graph.params.shape == (1, 2) and graph.params[0, 0].item() == pytest.approx(w["k"][4])
        assert graph.sample_id.tolist() == [[7, 4]]
        assert torch.equal(graph.x[:, 1], torch.from_numpy(data.mesh.marker("dirichlet")).float())
        graphs = data.to_pyg_list(["f", "disp"], ["f"], indices=[5, 1, 3], params=[], batch_size=2)
        assert [g.sample_id.tolist() for g in graphs] == [[[7, 5]], [[7, 1]], [[7, 3]]]
        assert all("params" not in g for g in graphs)
        assert torch.equal(graphs[1].y[:, 0], torch.from_numpy(w["f"][1]).float())
        batch = Batch.from_data_list(graphs)
        assert batch.x.shape == (3 * n, 4) and batch.sample_id.shape == (3, 2)
        assert batch.edge_index.shape[1] == 3 * graph.edge_index.shape[1]
        assert len(data.to_pyg_list(["f"], ["disp"], dirichlet=None)) == len(data)
        with pytest.raises(ValueError, match="no field 'g'"):
            data.to_pyg(0, inputs=["g"], outputs=["f"])


def test_p2_file_round_trip_and_graph(tmp_path: Path) -> None:
    p1_nodes, p1_cells, _ = grid_mesh(3, 3)
    nodes, cells = p2_from_p1(p1_nodes, p1_cells)
    path = tmp_path / "p2.h5"
    u = np.random.default_rng(2).standard_normal((2, len(nodes)))
    with MeshDataWriter(path, nodes, cells, {"dirichlet": np.arange(3)}, "P2") as writer:
        writer.append({"u": u}, np.array([[1, 0], [1, 1]]))
    with MeshDataset(path) as data:
        assert data.mesh.element == "P2" and data.mesh.cells.shape == (8, 6)
        graph = data.to_pyg(1, inputs=[], outputs=["u"])
        assert graph.x.shape == (len(nodes), 1)  # only the marker channel
        # Refined P2 graph = P1 graph of the 4 F sub-triangles on V + E nodes.
        assert graph.edge_index.shape[1] == 2 * (len(nodes) + 4 * len(cells) - 1)


def test_scikit_fem_p2_numbering_is_accepted() -> None:
    skfem = pytest.importorskip("skfem")
    basis = skfem.Basis(skfem.MeshTri.init_lshaped().refined(1), skfem.ElementTriP2())
    mesh = Mesh(basis.doflocs.T, basis.element_dofs.T, {"dirichlet": basis.get_dofs().all()}, "P2")
    assert mesh.edges().shape[1] == 2 * (mesh.num_nodes + 4 * mesh.num_cells - 1)
    assert mesh.marker("dirichlet").sum() == len(basis.get_dofs().all())
