"""The mesh layout: HDF5 files of nodal fields on one fixed unstructured triangle mesh.

Finite-element problems (Poisson or Helmholtz on an L-shape or a disk with holes, elasticity) give,
per sample, nodal fields on the same mesh. :class:`MeshDataWriter` stores the mesh once and streams the
samples; :class:`MeshDataset` reads them lazily, and its :meth:`~MeshDataset.to_pyg` turns one sample
into a :class:`torch_geometric.data.Data` graph (built by :mod:`pdebench.core.graphs`).

File layout (root attributes ``pdebench_layout = "mesh_nodal"``, ``pdebench_format_version = 1``;
files written before the tag was unified have ``layout`` and ``pdebench_mesh_format_version``):

* ``mesh/nodes`` -> ``(n_nodes, 2)`` float64 coordinates (for P2: every degree of freedom, midside
  nodes included, in the numbering of the fields);
* ``mesh/cells`` -> ``(n_cells, 3)`` (P1) or ``(n_cells, 6)`` (P2) int64 node indices; P2 columns are
  the corners ``0, 1, 2`` then the midside nodes of edges ``(0, 1)``, ``(1, 2)``, ``(2, 0)``, which is
  scikit-fem's ``Basis(mesh, ElementTriP2()).element_dofs.T`` (and Gmsh's / meshio's ``triangle6``);
* ``mesh/boundary/<name>`` -> 1-D int64 node indices of each boundary marker (``dirichlet``,
  ``outer``, ``hole_0``, ...);
* ``fields/<name>`` -> ``(N, n_nodes)`` or ``(N, n_nodes, C)`` **float32** (solvers compute in float64),
  chunked along ``N`` and compressed;
* ``sample_ids`` -> ``(N, 2)`` int64 ``(seed, index)``;
* ``params/<name>`` -> ``(N,)`` per-sample scalars (a random wavenumber ``k``, ...), float64 (int64
  for integer or boolean input), stored exactly;
* root attributes: ``element``, ``num_samples``, ``num_nodes``, ``field_names``, ``param_names`` and
  ``boundary_names`` (JSON lists), ``provenance.<key>`` (the codec of :mod:`pdebench.io.base`).

The writer is the atomic writer of :mod:`pdebench.io.base`: nothing ever appears under the final name
unless complete.

Graph convention (:func:`pdebench.core.graphs.mesh_graph`, used by :meth:`MeshDataset.to_pyg` and so by
:class:`~pdebench.data.graph_datamodule.GraphDataModule` alike): the nodes are the mesh nodes; edges are
the undirected edges of the triangles, stored in both directions, sorted by target then source, without
duplicates or self loops; ``edge_attr`` is the displacement target minus source. A P2 cell is split
into its four sub-triangles (corner--midside--midside and the middle one), so the graph is the P1
triangulation of all P2 nodes and no edge passes through a midside node (``p2_edges="corners"``
instead keeps the corner triangle's edges and joins each midside node to its two corners).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import h5py
import numpy as np
import torch
from torch_geometric.data import Data

from pdebench.core.graphs import MeshGraph, P2Edges, boundary_indices, check_cells, marker_mask, mesh_edges
from pdebench.io.base import (
    AtomicHDF5Writer,
    BatchSchema,
    H5Reader,
    PathLike,
    Rows,
    decode_attr,
    field_as_float32,
    json_list,
    normalize_rows,
    read_attrs,
    read_rows,
    write_attrs,
)

logger = logging.getLogger(__name__)

LAYOUT = "mesh_nodal"
"""Value of the layout tag (root attribute ``pdebench_layout``) of mesh data files."""
MESH_FORMAT_VERSION = 1
"""Version of the layout written by :class:`MeshDataWriter` (root attribute ``pdebench_format_version``)."""
LEGACY_ATTRS = ("layout", "pdebench_mesh_format_version")
"""Layout and version attributes of mesh files written before the layout tag was unified (still read)."""

CELLS_PER_ELEMENT: dict[str, int] = {"P1": 3, "P2": 6}
"""Nodes per cell of each element family."""

_MESH_GROUP = "mesh"
_FIELDS_GROUP = "fields"
_PARAMS_GROUP = "params"
_SAMPLE_IDS = "sample_ids"
_P2_MIDSIDES = ((0, 1, 3), (1, 2, 4), (2, 0, 5))  # (corner, corner, midside) columns


# --------------------------------------------------------------------------------------------------
# Mesh
# --------------------------------------------------------------------------------------------------


def _check_name(name: Any, what: str) -> str:
    if not isinstance(name, str) or not name or "/" in name or name == ".":
        raise ValueError(f"{what} name {name!r} cannot be stored: it must be a non-empty string without '/'")
    return name


def _check_p2_conforming(cells: np.ndarray) -> None:
    """Every corner edge shared by two P2 cells must have the same midside node in both."""
    pairs = np.concatenate([np.sort(cells[:, [a, b]], axis=1) for a, b, _ in _P2_MIDSIDES])
    mids = np.concatenate([cells[:, m] for _, _, m in _P2_MIDSIDES])
    _, edge_id = np.unique(pairs, axis=0, return_inverse=True)
    edge_id = edge_id.reshape(-1)
    order = np.lexsort((mids, edge_id))
    same_edge = edge_id[order][1:] == edge_id[order][:-1]
    clash = same_edge & (mids[order][1:] != mids[order][:-1])
    if clash.any():
        k = int(np.flatnonzero(clash)[0])
        a, b = pairs[order[k]]
        raise ValueError(
            f"P2 cells disagree on the midside node of edge ({int(a)}, {int(b)}): "
            f"{int(mids[order[k]])} and {int(mids[order[k + 1]])}; expected columns 3, 4, 5 to be the "
            "midside nodes of edges (0, 1), (1, 2), (2, 0)"
        )


@dataclass(frozen=True, eq=False)  # eq=False: array fields have no truth value
class Mesh:
    """One fixed triangle mesh: coordinates, cells and boundary markers (validated on construction).

    Parameters
    ----------
    nodes
        Node coordinates, shape ``(n_nodes, 2)``, finite; stored as float64.
    cells
        Node indices per cell, shape ``(n_cells, 3)`` for P1 or ``(n_cells, 6)`` for P2 (corners, then
        the midside nodes of edges ``(0, 1)``, ``(1, 2)``, ``(2, 0)``); stored as int64.
    boundary
        Marker name -> 1-D node indices (e.g. ``{"dirichlet": ..., "outer": ..., "hole_0": ...}``);
        stored as int64 arrays in the given order.
    element
        ``"P1"`` or ``"P2"``; default from the number of cell columns.

    Raises
    ------
    ValueError
        Bad shapes, non-finite coordinates, a cell index outside ``0..n_nodes - 1`` (named), a cell
        repeating a node, P2 cells disagreeing on a shared edge's midside node, a boundary index out
        of range (named), or an element that does not match the cells.
    """

    nodes: np.ndarray
    cells: np.ndarray
    boundary: dict[str, np.ndarray] = field(default_factory=dict)
    element: str | None = None

    def __post_init__(self) -> None:
        nodes = np.array(self.nodes, dtype=np.float64)  # a copy: the mesh never aliases caller arrays
        if nodes.ndim != 2 or nodes.shape[1] != 2 or nodes.shape[0] == 0:
            raise ValueError(f"nodes must have shape (n_nodes >= 1, 2), got {nodes.shape}")
        if not np.isfinite(nodes).all():
            first = int(np.argwhere(~np.isfinite(nodes))[0, 0])
            raise ValueError(f"nodes hold non-finite coordinates (first at node {first})")
        n_nodes = nodes.shape[0]
        cells = check_cells(self.cells, n_nodes).copy()
        element = self.element
        if element is None:
            element = "P1" if cells.shape[1] == 3 else "P2"
        if element not in CELLS_PER_ELEMENT:
            raise ValueError(f"unknown element {element!r}; valid: {sorted(CELLS_PER_ELEMENT)}")
        if cells.shape[1] != CELLS_PER_ELEMENT[element]:
            raise ValueError(
                f"element {element} needs {CELLS_PER_ELEMENT[element]} nodes per cell; cells have shape {cells.shape}"
            )
        if element == "P2":
            _check_p2_conforming(cells)
        boundary: dict[str, np.ndarray] = {}
        for name, indices in dict(self.boundary or {}).items():
            _check_name(name, "boundary marker")
            boundary[name] = boundary_indices(name, indices, n_nodes).copy()
        for value in (nodes, cells, *boundary.values()):
            value.flags.writeable = False
        object.__setattr__(self, "nodes", nodes)
        object.__setattr__(self, "cells", cells)
        object.__setattr__(self, "boundary", boundary)
        object.__setattr__(self, "element", element)

    @property
    def num_nodes(self) -> int:
        """``n_nodes``."""
        return int(self.nodes.shape[0])

    @property
    def num_cells(self) -> int:
        """``n_cells``."""
        return int(self.cells.shape[0])

    def edges(self, *, p2_edges: P2Edges = "refined") -> np.ndarray:
        """Directed graph edges of the mesh, shape ``(2, E)`` int64 (row 0 source, row 1 target, sorted by
        target then source); see :func:`pdebench.core.graphs.mesh_edges`."""
        return mesh_edges(self.cells, num_nodes=self.num_nodes, p2_edges=p2_edges).numpy()

    def marker(self, names: str | Sequence[str]) -> np.ndarray:
        """Boolean mask ``(n_nodes,)``, true on the nodes of the boundary markers ``names``.

        Raises
        ------
        ValueError
            A name that is not a marker of this mesh (the message lists the markers).
        """
        return marker_mask(self.num_nodes, self.boundary, names)


# --------------------------------------------------------------------------------------------------
# Writer
# --------------------------------------------------------------------------------------------------


def _param_values(name: str, values: Any, batch: int) -> tuple[np.ndarray, str]:
    """A per-sample parameter as ``(B,)`` float64 (``"float"``) or int64 (``"int"``)."""
    array = torch.as_tensor(values).detach().cpu().numpy() if isinstance(values, torch.Tensor) else np.asarray(values)
    if array.shape != (batch,):
        raise ValueError(f"param {name!r} must have shape ({batch},) (one value per sample), got {array.shape}")
    if array.dtype.kind in "biu":
        return array.astype(np.int64), "int"
    if array.dtype.kind == "f":
        return array.astype(np.float64), "float"
    raise ValueError(f"param {name!r} must be real numbers, got dtype {array.dtype}")


class MeshDataWriter(AtomicHDF5Writer):
    """Write one mesh and stream batches of nodal fields on it to an HDF5 file, atomically
    (:class:`~pdebench.io.base.AtomicHDF5Writer`).

    The mesh is validated in the constructor and written to the temporary file at once. See the
    module docstring for the layout.

    Parameters
    ----------
    path, overwrite, provenance, compression
        As for every writer (:class:`~pdebench.io.base.AtomicHDF5Writer`); ``provenance`` holds the
        solver, version, seed, mesh size, wall time, ...
    nodes
        ``(n_nodes, 2)`` coordinates (float64 in the file). For P2, every degree of freedom in the
        numbering of the fields (scikit-fem: ``basis.doflocs.T``).
    cells
        ``(n_cells, 3)`` (P1) or ``(n_cells, 6)`` (P2; scikit-fem: ``basis.element_dofs.T``) node indices.
    boundary
        Marker name -> 1-D node indices, e.g. ``{"dirichlet": ..., "outer": ..., "hole_0": ...}``.
    element
        ``"P1"`` or ``"P2"``; default from the number of cell columns.

    Raises
    ------
    ValueError
        An invalid mesh (see :class:`Mesh`), naming the bad index.

    Examples
    --------
    >>> basis = Basis(mesh, ElementTriP2())                       # doctest: +SKIP
    >>> with MeshDataWriter("helmholtz.h5", basis.doflocs.T, basis.element_dofs.T,
    ...                     {"dirichlet": basis.get_dofs().all()}, "P2") as writer:
    ...     for batch in batches:
    ...         writer.append({"f": batch.f, "u": batch.u}, batch.sample_ids, params={"k": batch.k})
    """

    LAYOUT = LAYOUT
    FORMAT_VERSION = MESH_FORMAT_VERSION

    def __init__(
        self,
        path: PathLike,
        nodes: np.ndarray,
        cells: np.ndarray,
        boundary: Mapping[str, np.ndarray] | None = None,
        element: str | None = None,
        *,
        overwrite: bool = False,
        provenance: Mapping[str, Any] | None = None,
        compression: str | None = "gzip",
    ) -> None:
        self.mesh = Mesh(nodes, cells, dict(boundary or {}), element)
        self._open_temporary(path, overwrite, compression, provenance)
        self._datasets: dict[str, h5py.Dataset] = {}
        try:
            self._write_mesh()
        except BaseException:
            self.abort()
            raise

    # -- writing -----------------------------------------------------------------------------------
    def _write_mesh(self) -> None:
        group = self._file.create_group(_MESH_GROUP, track_order=True)
        group.create_dataset("nodes", data=self.mesh.nodes, track_times=False)
        group.create_dataset("cells", data=self.mesh.cells, track_times=False)
        markers = group.create_group("boundary", track_order=True)
        for name, indices in self.mesh.boundary.items():
            markers.create_dataset(name, data=indices, dtype="i8", track_times=False)

    def append(
        self,
        fields: Mapping[str, np.ndarray | torch.Tensor],
        sample_ids: np.ndarray,
        params: Mapping[str, np.ndarray | torch.Tensor] | None = None,
    ) -> None:
        """Write a batch of ``B`` samples after the rows already written.

        Everything is checked before anything is written: a rejected batch leaves the file as it was.

        Parameters
        ----------
        fields
            Field name -> nodal values ``(B, n_nodes)`` (scalar) or ``(B, n_nodes, C)`` (``C``
            components, e.g. a displacement), real; stored as float32.
        sample_ids
            ``(B, 2)`` integer ``(seed, index)`` per sample (repeats are logged as a warning).
        params
            Parameter name -> ``(B,)`` per-sample scalars (e.g. a random wavenumber ``k``).

        Raises
        ------
        ValueError
            Bad names or shapes, a batch that disagrees with the first one (field names, shapes past
            ``B``, param names), or non-finite values (also after the cast to float32), naming the
            field or param and the sample ids.
        """
        self._check_open()
        if not isinstance(fields, Mapping) or not fields:
            raise ValueError("fields must be a non-empty mapping name -> (B, n_nodes[, C]) array")
        ids = np.asarray(sample_ids)
        if ids.ndim != 2 or ids.shape[1] != 2 or (ids.size and ids.dtype.kind not in "iu"):
            raise ValueError(f"sample_ids must be a (B, 2) integer array (seed, index), got {ids.shape} {ids.dtype}")
        ids = ids.astype(np.int64)
        batch = ids.shape[0]
        values: dict[str, np.ndarray] = {}
        for name, value in fields.items():
            _check_name(name, "field")
            array = field_as_float32(value)
            if array.ndim not in (2, 3) or array.shape[:2] != (batch, self.mesh.num_nodes):
                raise ValueError(
                    f"field {name!r} has shape {tuple(array.shape)}; expected ({batch}, {self.mesh.num_nodes}[, C]) "
                    f"(B from sample_ids, n_nodes from the mesh)"
                )
            values[name] = array
        param_values: dict[str, np.ndarray] = {}
        param_kinds: dict[str, str] = {}
        for name, value in (params or {}).items():
            _check_name(name, "param")
            param_values[name], param_kinds[name] = _param_values(name, value, batch)
        schema = BatchSchema({name: tuple(array.shape[1:]) for name, array in values.items()}, {"param": param_kinds})
        if self._schema is not None:
            self._schema.check(schema)
        if batch == 0:
            return
        for what, arrays in (("field", values), ("param", param_values)):
            for name, array in arrays.items():
                self._check_finite(what, name, array, ids)
        self._warn_repeated_ids(ids)
        if self._schema is None:
            self._create_datasets(values, param_values)
            self._schema = schema
        start, stop = self._num_samples, self._num_samples + batch
        rows = {f"{_FIELDS_GROUP}/{k}": v for k, v in values.items()}
        rows.update({f"{_PARAMS_GROUP}/{k}": v for k, v in param_values.items()})
        rows[_SAMPLE_IDS] = ids
        for key, array in rows.items():
            dataset = self._datasets[key]
            dataset.resize(stop, axis=0)
            dataset[start:stop] = array
        self._num_samples = stop
        logger.debug("appended %d samples to %s (%d in all)", batch, self.path, stop)

    def _check_finite(self, what: str, name: str, array: np.ndarray, ids: np.ndarray) -> None:
        if array.dtype.kind != "f":
            return
        bad = ~np.isfinite(array.reshape(array.shape[0], -1)).all(axis=1)
        if bad.any():
            first = [tuple(map(int, row)) for row in ids[bad][:5]]
            raise ValueError(
                f"{what} {name!r} has non-finite values in {int(bad.sum())} sample(s) (first (seed, index): "
                f"{first}); not writing this batch to {self.path}"
            )

    def _create_datasets(self, values: dict[str, np.ndarray], params: dict[str, np.ndarray]) -> None:
        fields_group = self._file.create_group(_FIELDS_GROUP, track_order=True)
        for name, array in values.items():
            self._datasets[f"{_FIELDS_GROUP}/{name}"] = self._create_rows(fields_group, name, array.shape[1:], "f4")
        params_group = self._file.create_group(_PARAMS_GROUP, track_order=True)
        for name, array in params.items():
            self._datasets[f"{_PARAMS_GROUP}/{name}"] = self._create_rows(params_group, name, (), array.dtype.str)
        self._datasets[_SAMPLE_IDS] = self._create_rows(self._file, _SAMPLE_IDS, (2,), "i8")

    def _write_attrs(self) -> None:
        attrs = self._file.attrs
        write_attrs(attrs, {}, self._provenance)
        attrs["element"] = str(self.mesh.element)
        attrs["field_names"] = json.dumps(list(self._schema.row_shapes))
        attrs["param_names"] = json.dumps(list(self._schema.values["param"]))
        attrs["boundary_names"] = json.dumps(list(self.mesh.boundary))
        attrs["num_nodes"] = np.int64(self.mesh.num_nodes)

    def _written_message(self) -> str:
        return f"wrote {self._num_samples} samples on a {self.mesh.num_nodes}-node {self.mesh.element} mesh to {self.path}"


# --------------------------------------------------------------------------------------------------
# Reader
# --------------------------------------------------------------------------------------------------


class MeshDataset(H5Reader):
    """Lazy read-only view of a file written by :class:`MeshDataWriter`.

    The mesh, sample ids and params (small) are read at opening; fields are read per request.
    Opening, closing and pickling are those of :class:`~pdebench.io.base.H5Reader`; files written
    before the layout tag was unified (:data:`LEGACY_ATTRS`) read the same.

    Parameters
    ----------
    path
        The HDF5 file.

    Raises
    ------
    FileNotFoundError, ValueError
        As :class:`~pdebench.io.base.H5Reader`; also ``ValueError`` for a file that is not a mesh data
        file (e.g. a trajectory file), of a newer format version, or with an invalid mesh.

    Examples
    --------
    >>> with MeshDataset("helmholtz.h5") as data:                  # doctest: +SKIP
    ...     len(data), data.fields, data.mesh.num_nodes
    ...     graph = data.to_pyg(0, inputs=["f"], outputs=["u"])
    """

    _what = "mesh data"
    _layout = (LAYOUT, MESH_FORMAT_VERSION, LEGACY_ATTRS)

    def _read(self, file: h5py.File) -> None:
        attrs = file.attrs
        group = file[_MESH_GROUP]
        self.mesh = Mesh(
            group["nodes"][()],
            group["cells"][()],
            {name: group["boundary"][name][()] for name in json_list(attrs, "boundary_names")},
            decode_attr(attrs["element"]),
        )
        self._fields = {name: file[_FIELDS_GROUP][name] for name in json_list(attrs, "field_names")}
        self._params = {name: file[_PARAMS_GROUP][name][()] for name in json_list(attrs, "param_names")}
        self._sample_ids = np.asarray(file[_SAMPLE_IDS][()], dtype=np.int64)
        self._num_rows = len(self._sample_ids)
        self._provenance = read_attrs(attrs, frozenset())[1]

    def _describe(self) -> str:
        return (f", {self.mesh.element} mesh with {self.mesh.num_nodes} nodes, fields={list(self._fields)}, "
                f"params={list(self._params)}")

    @property
    def fields(self) -> dict[str, tuple[int, ...]]:
        """Field name -> full shape ``(N, n_nodes[, C])``, in the order written."""
        return {name: tuple(dataset.shape) for name, dataset in self._fields.items()}

    # -- data --------------------------------------------------------------------------------------
    def read_field(self, name: str, rows: Rows = None) -> np.ndarray:
        """Values of field ``name`` at ``rows`` (int, slice, index list or boolean mask; default all).

        Returns
        -------
        numpy.ndarray
            ``(n, n_nodes[, C])`` float32, ``n`` the number of selected rows.
        """
        self._handle()
        if name not in self._fields:
            raise ValueError(f"{self.path}: no field {name!r}; fields are {list(self._fields)}")
        return read_rows(self._fields[name], normalize_rows(rows, len(self)))

    def sample(self, i: int) -> dict[str, Any]:
        """Sample ``i`` (negative counts from the end).

        Returns
        -------
        dict
            ``{"fields": {name: (n_nodes[, C]) float32}, "params": {name: scalar},
            "sample_id": (2,) int64}``.
        """
        index = self._row(i)
        self._handle()
        return {
            "fields": {name: dataset[index] for name, dataset in self._fields.items()},
            "params": {name: values[index].item() for name, values in self._params.items()},
            "sample_id": self._sample_ids[index].copy(),
        }

    def __getitem__(self, i: int) -> dict[str, Any]:
        return self.sample(i)

    def to_pyg(self, i: int, inputs: Sequence[str], outputs: Sequence[str], **options: Any) -> Data:
        """Sample ``i`` as a graph; the options and attributes are those of :meth:`to_pyg_list`."""
        return self.to_pyg_list(inputs, outputs, indices=[self._row(i)], **options)[0]

    def to_pyg_list(
        self,
        inputs: Sequence[str],
        outputs: Sequence[str],
        *,
        indices: Rows = None,
        params: Sequence[str] | None = None,
        dirichlet: str | Sequence[str] | None = "dirichlet",
        params_as_channels: bool = False,
        p2_edges: P2Edges = "refined",
        batch_size: int = 256,
    ) -> list[Data]:
        """Samples of the file as a list of graphs (no ``InMemoryDataset``), each that of
        :func:`pdebench.core.graphs.mesh_to_pyg`, the graph the graph data module feeds the models.

        Parameters
        ----------
        inputs, outputs
            Field names stacked (in this order) into ``x`` and ``y``.
        indices
            Rows (int, slice, index list or boolean mask; default all), in the order given.
        params
            Param names for ``data.params`` (default: all of the file's, in file order; ``[]``: none).
        dirichlet
            Boundary marker name(s) whose nodes get 1 in the marker channel of ``x``; ``None``: no
            marker channel.
        params_as_channels, p2_edges
            As in :func:`pdebench.core.graphs.mesh_to_pyg`.
        batch_size
            Rows read from the file at a time.

        Returns
        -------
        list[torch_geometric.data.Data]
            One graph per row, each also with ``sample_id`` ``(1, 2)`` int64. The graphs **share** their
            ``pos``, ``edge_index`` and ``edge_attr`` tensors (one mesh): clone before editing them in place.
        """
        if batch_size < 1:
            raise ValueError(f"batch_size must be positive, got {batch_size}")
        for name in (*inputs, *outputs):
            if name not in self.fields:
                raise ValueError(f"{self.path}: no field {name!r}; fields are {list(self.fields)}")
        param_names = list(self._params) if params is None else list(params)
        unknown = [name for name in param_names if name not in self._params]
        if unknown:
            raise ValueError(f"{self.path}: no param(s) {unknown}; params are {list(self._params)}")
        marker = None if dirichlet is None else self.mesh.marker(dirichlet)
        graph = MeshGraph.build(self.mesh.nodes, self.mesh.cells, marker, p2_edges)
        selection = normalize_rows(indices, len(self))
        rows = np.arange(selection.start, selection.stop) if isinstance(selection, slice) else selection
        graphs: list[Data] = []
        for start in range(0, len(rows), batch_size):
            chunk = rows[start : start + batch_size]
            values = {name: self.read_field(name, chunk) for name in dict.fromkeys((*inputs, *outputs))}
            for k, row in enumerate(chunk):
                data = graph.sample(
                    {name: values[name][k] for name in inputs},
                    {name: values[name][k] for name in outputs},
                    {name: self._params[name][row] for name in param_names},
                    params_as_channels,
                )
                data.sample_id = torch.from_numpy(self._sample_ids[row : row + 1].copy())
                graphs.append(data)
        return graphs
