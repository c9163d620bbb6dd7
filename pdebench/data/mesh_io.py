"""HDF5 files of nodal fields on one fixed unstructured triangle mesh, and their PyG graphs.

Finite-element problems (Poisson or Helmholtz on an L-shape or a disk with holes, elasticity) give,
per sample, nodal fields on the same mesh. :class:`MeshDataWriter` stores the mesh once and streams the
samples; :class:`MeshDataset` reads them lazily; :func:`to_pyg` turns one sample into a
:class:`torch_geometric.data.Data` graph for graph neural operators.

File layout (root attribute ``layout = "mesh_nodal"``, ``pdebench_mesh_format_version = 1``):

* ``mesh/nodes`` -> ``(n_nodes, 2)`` float64 coordinates (for P2: every degree of freedom, midside
  nodes included, in the numbering of the fields);
* ``mesh/cells`` -> ``(n_cells, 3)`` (P1) or ``(n_cells, 6)`` (P2) int64 node indices; P2 columns are
  the corners ``0, 1, 2`` then the midside nodes of edges ``(0, 1)``, ``(1, 2)``, ``(2, 0)``, which is
  scikit-fem's ``Basis(mesh, ElementTriP2()).element_dofs.T`` (and Gmsh's / meshio's ``triangle6``);
* ``mesh/boundary/<name>`` -> 1-D int64 node indices of each boundary marker (``dirichlet``,
  ``outer``, ``hole_0``, ...);
* ``fields/<name>`` -> ``(N, n_nodes)`` or ``(N, n_nodes, C)`` **float32** (solvers compute in float64;
  files store float32 as :mod:`pdebench.data.hdf5` does), chunked along ``N`` and compressed;
* ``sample_ids`` -> ``(N, 2)`` int64 ``(seed, index)``;
* ``params/<name>`` -> ``(N,)`` per-sample scalars (a random wavenumber ``k``, ...), float64 (int64
  for integer or boolean input), stored exactly;
* root attributes: ``element``, ``num_samples``, ``num_nodes``, ``field_names``, ``param_names`` and
  ``boundary_names`` (JSON lists), ``provenance.<key>`` (as in :mod:`pdebench.data.hdf5`; values that
  are not numbers, strings or numeric arrays are stored as JSON, listed in ``json_attrs``).

The writer is atomic like :class:`~pdebench.data.hdf5.TrajectoryWriter`: it writes a temporary file
beside the destination and moves it into place (fsync, :func:`os.replace`, fsync of the folder) only
when the ``with`` block ends without an exception; otherwise the temporary file is deleted. Nothing
ever appears under the final name unless complete.

Graph convention (:func:`pdebench.core.graphs.mesh_graph`, used by :func:`to_pyg` and by
:class:`~pdebench.data.graph_datamodule.GraphDataModule` alike): the nodes are the mesh nodes; edges are
the undirected edges of the triangles, stored in both directions, sorted by target then source, without
duplicates or self loops; ``edge_attr`` is the displacement target minus source (see
:mod:`pdebench.core.graphs`). A P2 cell is split into its four sub-triangles (corner--midside--midside and the middle one),
so the graph is the P1 triangulation of all P2 nodes and no edge passes through a midside node
(``p2_edges="corners"`` instead keeps the corner triangle's edges and joins each midside node to its
two corners).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import torch
from torch_geometric.data import Data

from pdebench.core.graphs import P2Edges, mesh_edges, mesh_graph
from pdebench.data.hdf5 import (
    PROVENANCE_PREFIX,
    AtomicHDF5Writer,
    PathLike,
    Rows,
    _chunk_shape,
    _decode_attr,
    _encode_attr,
    _field_as_float32,
    _json_attr_names,
    _normalize_rows,
    _read_rows,
)

logger = logging.getLogger(__name__)

MESH_FORMAT_VERSION = 1
"""Version of the layout written by :class:`MeshDataWriter` (root attribute ``pdebench_mesh_format_version``)."""

LAYOUT = "mesh_nodal"
"""Value of the root attribute ``layout`` of mesh data files."""

VERSION_ATTR = "pdebench_mesh_format_version"
CELLS_PER_ELEMENT: dict[str, int] = {"P1": 3, "P2": 6}
"""Nodes per cell of each element family."""

_MESH_GROUP = "mesh"
_FIELDS_GROUP = "fields"
_PARAMS_GROUP = "params"
_SAMPLE_IDS = "sample_ids"
_COMPRESSIONS = ("gzip", "lzf", None)
_RESERVED_ATTRS = frozenset(
    {
        VERSION_ATTR,
        "layout",
        "element",
        "num_samples",
        "num_nodes",
        "field_names",
        "param_names",
        "boundary_names",
        "json_attrs",
    }
)
_P2_MIDSIDES = ((0, 1, 3), (1, 2, 4), (2, 0, 5))  # (corner, corner, midside) columns


# --------------------------------------------------------------------------------------------------
# Mesh
# --------------------------------------------------------------------------------------------------


def _check_name(name: Any, what: str) -> str:
    if not isinstance(name, str) or not name or "/" in name or name == ".":
        raise ValueError(f"{what} name {name!r} cannot be stored: it must be a non-empty string without '/'")
    return name


def _index_array(values: Any, what: str) -> np.ndarray:
    array = np.asarray(values)
    if array.size == 0:
        return np.zeros(array.shape, dtype=np.int64)
    if array.dtype.kind not in "iu":
        raise ValueError(f"{what} must hold integer node indices, got dtype {array.dtype}")
    return array.astype(np.int64)


def _check_cells(cells: Any, n_nodes: int) -> np.ndarray:
    """``cells`` as a validated ``(n_cells, 3 | 6)`` int64 array of indices into ``n_nodes`` nodes."""
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
        cells = _check_cells(self.cells, n_nodes).copy()
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
            array = _index_array(indices, f"boundary[{name!r}]").reshape(-1).copy()
            bad = (array < 0) | (array >= n_nodes)
            if bad.any():
                raise ValueError(
                    f"boundary[{name!r}] holds node index {int(array[bad][0])}, out of range for {n_nodes} nodes "
                    f"({int(bad.sum())} such indices)"
                )
            boundary[name] = array
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
        return _marker_mask(self.num_nodes, self.boundary, names)


def _marker_mask(num_nodes: int, boundary: Mapping[str, Any], names: str | Sequence[str]) -> np.ndarray:
    names = [names] if isinstance(names, str) else list(names)
    unknown = [name for name in names if name not in boundary]
    if unknown:
        raise ValueError(f"no boundary marker(s) {unknown}; the mesh has {sorted(boundary)}")
    mask = np.zeros(num_nodes, dtype=bool)
    for name in names:
        indices = np.asarray(boundary[name], dtype=np.int64).reshape(-1)
        if indices.size and (indices.min() < 0 or indices.max() >= num_nodes):
            raise ValueError(f"boundary[{name!r}] holds node indices out of range for {num_nodes} nodes")
        mask[indices] = True
    return mask


# --------------------------------------------------------------------------------------------------
# Writer
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Schema:
    """What every batch of one file must agree on (taken from the first batch)."""

    row_shapes: dict[str, tuple[int, ...]]
    param_kinds: dict[str, str]

    def check(self, row_shapes: dict[str, tuple[int, ...]], param_kinds: dict[str, str]) -> None:
        """Raise ``ValueError`` naming the first difference from this schema."""
        if set(row_shapes) != set(self.row_shapes):
            raise ValueError(f"batch has fields {sorted(row_shapes)}; the file has {sorted(self.row_shapes)}")
        for name, shape in row_shapes.items():
            if shape != self.row_shapes[name]:
                raise ValueError(
                    f"field {name!r}: batch rows have shape {shape}, "
                    f"the file has {self.row_shapes[name]} (shape past B)"
                )
        if set(param_kinds) != set(self.param_kinds):
            raise ValueError(f"batch has params {sorted(param_kinds)}; the file has {sorted(self.param_kinds)}")
        for name, kind in param_kinds.items():
            if kind != self.param_kinds[name]:
                raise ValueError(f"param {name!r}: batch values are {kind}, the file stores {self.param_kinds[name]}")


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
    """Write one mesh and stream batches of nodal fields on it to an HDF5 file, atomically.

    The mesh is validated and the destination checked in the constructor (before any solve); a
    temporary file is created beside the destination and the mesh written to it at once; each
    :meth:`append` writes its batch through (memory holds one batch); :meth:`close` (the end of a
    ``with`` block without an exception) writes the attributes, fsyncs and moves the file into place.
    On an exception in the ``with`` block, or on :meth:`abort`, the temporary file is deleted and
    ``path`` is left untouched. See the module docstring for the layout.

    Parameters
    ----------
    path
        Destination ``.h5`` file. Its folder must exist and be writable.
    nodes
        ``(n_nodes, 2)`` coordinates (float64 in the file). For P2, every degree of freedom in the
        numbering of the fields (scikit-fem: ``basis.doflocs.T``).
    cells
        ``(n_cells, 3)`` (P1) or ``(n_cells, 6)`` (P2; scikit-fem: ``basis.element_dofs.T``) node indices.
    boundary
        Marker name -> 1-D node indices, e.g. ``{"dirichlet": ..., "outer": ..., "hole_0": ...}``.
    element
        ``"P1"`` or ``"P2"``; default from the number of cell columns.
    overwrite
        Replace an existing ``path`` on success. Without it an existing file is an error, raised here.
    provenance
        Provenance of the whole file (solver, version, seed, mesh size, wall time, ...), stored as
        ``provenance.<key>`` attributes; values that are not numbers, strings or numeric arrays are
        stored as JSON (they must be JSON-serialisable, else stored as their ``str``).
    compression
        ``"gzip"`` (level 4, with the shuffle filter), ``"lzf"`` or ``None``.

    Raises
    ------
    ValueError
        An invalid mesh (see :class:`Mesh`), naming the bad index.
    FileExistsError, FileNotFoundError, IsADirectoryError, PermissionError
        Naming ``path``, when it cannot be written; nothing is created.

    Examples
    --------
    >>> basis = Basis(mesh, ElementTriP2())                       # doctest: +SKIP
    >>> with MeshDataWriter("helmholtz.h5", basis.doflocs.T, basis.element_dofs.T,
    ...                     {"dirichlet": basis.get_dofs().all()}, "P2") as writer:
    ...     for batch in batches:
    ...         writer.append({"f": batch.f, "u": batch.u}, batch.sample_ids, params={"k": batch.k})
    """

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
        if compression not in _COMPRESSIONS:
            raise ValueError(f"compression must be one of {_COMPRESSIONS}, got {compression!r}")
        self.mesh = Mesh(nodes, cells, dict(boundary or {}), element)
        self.compression = compression
        self._provenance = dict(provenance or {})
        self._open_temporary(path, overwrite)
        self._datasets: dict[str, h5py.Dataset] = {}
        self._seen_ids: set[tuple[int, int]] = set()
        try:
            self._write_mesh()
        except BaseException:
            self.abort()
            raise
        logger.debug("writing %s through %s", self.path, self.temp_path)

    # -- writing -----------------------------------------------------------------------------------
    def _write_mesh(self) -> None:
        group = self._file.create_group(_MESH_GROUP, track_order=True)
        group.create_dataset("nodes", data=self.mesh.nodes, track_times=False)
        group.create_dataset("cells", data=self.mesh.cells, track_times=False)
        markers = group.create_group("boundary", track_order=True)
        for name, indices in self.mesh.boundary.items():
            markers.create_dataset(name, data=indices, dtype="i8", track_times=False)

    def update_provenance(self, values: Mapping[str, Any]) -> None:
        """Add or replace provenance entries (e.g. the total wall time) before :meth:`close` stores them."""
        if self._closed:
            raise ValueError(f"writer for {self.path} is closed")
        self._provenance.update(values)

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
        if self._closed:
            raise ValueError(f"writer for {self.path} is closed")
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
            array = _field_as_float32(value)
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
        row_shapes = {name: tuple(array.shape[1:]) for name, array in values.items()}
        if self._schema is not None:
            self._schema.check(row_shapes, param_kinds)
        if batch == 0:
            return
        for what, arrays in (("field", values), ("param", param_values)):
            for name, array in arrays.items():
                self._check_finite(what, name, array, ids)
        self._check_ids(ids)
        if self._schema is None:
            self._create_datasets(values, param_values)
            self._schema = _Schema(row_shapes, param_kinds)
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

    def _check_ids(self, ids: np.ndarray) -> None:
        pairs = [tuple(map(int, row)) for row in ids]
        repeated = [i for i in pairs if i in self._seen_ids]
        if repeated or len(set(pairs)) != len(pairs):
            logger.warning("%s: repeated sample ids (seed, index), e.g. %s", self.path, (repeated or pairs)[:3])
        self._seen_ids.update(pairs)

    def _create_datasets(self, values: dict[str, np.ndarray], params: dict[str, np.ndarray]) -> None:
        fields_group = self._file.create_group(_FIELDS_GROUP, track_order=True)
        for name, array in values.items():
            self._datasets[f"{_FIELDS_GROUP}/{name}"] = self._create(fields_group, name, array.shape[1:], "f4")
        params_group = self._file.create_group(_PARAMS_GROUP, track_order=True)
        for name, array in params.items():
            self._datasets[f"{_PARAMS_GROUP}/{name}"] = self._create(params_group, name, (), array.dtype.str)
        self._datasets[_SAMPLE_IDS] = self._create(self._file, _SAMPLE_IDS, (2,), "i8")

    def _create(self, group: h5py.Group, key: str, row_shape: tuple[int, ...], dtype: str) -> h5py.Dataset:
        return group.create_dataset(
            key,
            shape=(0, *row_shape),
            maxshape=(None, *row_shape),
            dtype=dtype,
            chunks=_chunk_shape(tuple(row_shape), None, np.dtype(dtype).itemsize),
            compression=self.compression,
            compression_opts=4 if self.compression == "gzip" else None,
            shuffle=self.compression is not None,
            track_times=False,
        )

    def _write_attrs(self) -> None:
        assert self._schema is not None
        attrs = self._file.attrs
        json_names: list[str] = []
        for key, value in self._provenance.items():
            name = f"{PROVENANCE_PREFIX}{key}"
            attrs[name], is_json = _encode_attr(value)
            if is_json:
                json_names.append(name)
        attrs["layout"] = LAYOUT
        attrs["element"] = str(self.mesh.element)
        attrs["field_names"] = json.dumps(list(self._schema.row_shapes))
        attrs["param_names"] = json.dumps(list(self._schema.param_kinds))
        attrs["boundary_names"] = json.dumps(list(self.mesh.boundary))
        attrs["json_attrs"] = json.dumps(json_names)
        attrs["num_samples"] = np.int64(self._num_samples)
        attrs["num_nodes"] = np.int64(self.mesh.num_nodes)
        attrs[VERSION_ATTR] = np.int64(MESH_FORMAT_VERSION)

    def _written_message(self) -> str:
        return f"wrote {self._num_samples} samples on a {self.mesh.num_nodes}-node {self.mesh.element} mesh to {self.path}"


# --------------------------------------------------------------------------------------------------
# Reader
# --------------------------------------------------------------------------------------------------


class MeshDataset:
    """Lazy read-only view of a file written by :class:`MeshDataWriter`.

    The mesh, sample ids and params (small) are read at opening; fields are read per request.
    Usable as a context manager; pickles by path (DataLoader workers reopen the file).

    Parameters
    ----------
    path
        The HDF5 file.

    Raises
    ------
    FileNotFoundError
        ``path`` does not exist.
    ValueError
        Not an HDF5 file, not a mesh data file (e.g. a trajectory file), a newer format version, or an
        invalid mesh.

    Examples
    --------
    >>> with MeshDataset("helmholtz.h5") as data:                  # doctest: +SKIP
    ...     len(data), data.fields, data.mesh.num_nodes
    ...     graph = data.to_pyg(0, inputs=["f"], outputs=["u"])
    """

    def __init__(self, path: PathLike) -> None:
        self.path = Path(path)
        if not self.path.exists():
            raise FileNotFoundError(f"no such mesh data file: {self.path}")
        if self.path.is_dir() or not h5py.is_hdf5(self.path):
            raise ValueError(f"{self.path} is not an HDF5 file")
        self._file = h5py.File(self.path, "r")
        try:
            self._open()
        except BaseException:
            self._file.close()
            raise

    def _open(self) -> None:
        attrs = self._file.attrs
        if _decode_attr(attrs.get("layout", "")) != LAYOUT or VERSION_ATTR not in attrs:
            raise ValueError(
                f"{self.path} is not a mesh data file (expected root attributes layout={LAYOUT!r} and "
                f"{VERSION_ATTR}; found attributes {sorted(attrs)} and datasets {sorted(self._file)})"
            )
        version = int(_decode_attr(attrs[VERSION_ATTR]))
        if version > MESH_FORMAT_VERSION:
            raise ValueError(
                f"{self.path} has mesh format version {version}; this reader knows up to {MESH_FORMAT_VERSION}"
            )
        group = self._file[_MESH_GROUP]
        self.mesh = Mesh(
            group["nodes"][()],
            group["cells"][()],
            {name: group["boundary"][name][()] for name in json.loads(_decode_attr(attrs["boundary_names"]))},
            _decode_attr(attrs["element"]),
        )
        field_names = json.loads(_decode_attr(attrs["field_names"]))
        self._fields = {name: self._file[_FIELDS_GROUP][name] for name in field_names}
        names = json.loads(_decode_attr(attrs["param_names"]))
        self._params = {name: self._file[_PARAMS_GROUP][name][()] for name in names}
        self._sample_ids = np.asarray(self._file[_SAMPLE_IDS][()], dtype=np.int64)
        json_names = _json_attr_names(attrs)
        self._provenance = {
            name[len(PROVENANCE_PREFIX) :]: _decode_attr(value, is_json=name in json_names)
            for name, value in attrs.items()
            if name.startswith(PROVENANCE_PREFIX)
        }

    # -- lifetime ----------------------------------------------------------------------------------
    def close(self) -> None:
        """Close the underlying HDF5 file."""
        self._file.close()

    def __enter__(self) -> MeshDataset:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def __getstate__(self) -> dict[str, Any]:
        return {"path": self.path}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(state["path"])  # type: ignore[misc]

    def __repr__(self) -> str:
        return (
            f"MeshDataset({str(self.path)!r}, N={len(self)}, "
            f"{self.mesh.element} mesh with {self.mesh.num_nodes} nodes, "
            f"fields={list(self._fields)}, params={list(self._params)})"
        )

    # -- metadata ----------------------------------------------------------------------------------
    def __len__(self) -> int:
        return int(self._sample_ids.shape[0])

    @property
    def fields(self) -> dict[str, tuple[int, ...]]:
        """Field name -> full shape ``(N, n_nodes[, C])``, in the order written."""
        return {name: tuple(dataset.shape) for name, dataset in self._fields.items()}

    @property
    def sample_ids(self) -> np.ndarray:
        """``(N, 2)`` int64 ``(seed, index)`` (a copy)."""
        return self._sample_ids.copy()

    @property
    def params(self) -> dict[str, np.ndarray]:
        """Param name -> ``(N,)`` float64 or int64 values (copies)."""
        return {name: values.copy() for name, values in self._params.items()}

    @property
    def provenance(self) -> dict[str, Any]:
        """The writer's provenance (``provenance.*`` attributes)."""
        return dict(self._provenance)

    # -- data --------------------------------------------------------------------------------------
    def read_field(self, name: str, rows: Rows = None) -> np.ndarray:
        """Values of field ``name`` at ``rows`` (int, slice, index list or boolean mask; default all).

        Returns
        -------
        numpy.ndarray
            ``(n, n_nodes[, C])`` float32, ``n`` the number of selected rows.
        """
        if name not in self._fields:
            raise ValueError(f"{self.path}: no field {name!r}; fields are {list(self._fields)}")
        return _read_rows(self._fields[name], _normalize_rows(rows, len(self)))

    def sample(self, i: int) -> dict[str, Any]:
        """Sample ``i`` (negative counts from the end).

        Returns
        -------
        dict
            ``{"fields": {name: (n_nodes[, C]) float32}, "params": {name: scalar},
            "sample_id": (2,) int64}``.
        """
        index = self._index(i)
        return {
            "fields": {name: dataset[index] for name, dataset in self._fields.items()},
            "params": {name: values[index].item() for name, values in self._params.items()},
            "sample_id": self._sample_ids[index].copy(),
        }

    def __getitem__(self, i: int) -> dict[str, Any]:
        return self.sample(i)

    def _index(self, i: int) -> int:
        n = len(self)
        index = int(i) + (n if i < 0 else 0)
        if not 0 <= index < n:
            raise IndexError(f"sample {i} is out of range for {n} samples")
        return index

    def to_pyg(
        self,
        i: int,
        inputs: Sequence[str],
        outputs: Sequence[str],
        *,
        params: Sequence[str] | None = None,
        dirichlet: str | Sequence[str] | None = "dirichlet",
        params_as_channels: bool = False,
        p2_edges: P2Edges = "refined",
    ) -> Data:
        """Sample ``i`` as a graph; see :func:`to_pyg` for the attributes.

        Parameters
        ----------
        inputs, outputs
            Field names stacked (in this order) into ``x`` and ``y``.
        params
            Param names for ``data.params`` (default: all of the file's, in file order; ``[]``: none).
        dirichlet
            Boundary marker name(s) whose nodes get 1 in the marker channel of ``x``; ``None``: no
            marker channel.
        params_as_channels, p2_edges
            As in :func:`to_pyg`.
        """
        return to_pyg_list(
            self,
            inputs,
            outputs,
            indices=[self._index(i)],
            params=params,
            dirichlet=dirichlet,
            params_as_channels=params_as_channels,
            p2_edges=p2_edges,
        )[0]


def read_mesh_data(path: PathLike) -> MeshDataset:
    """Open a mesh data file lazily (same as ``MeshDataset(path)``; close it, or use ``with``)."""
    return MeshDataset(path)


# --------------------------------------------------------------------------------------------------
# PyG graphs
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Graph:
    """The sample-independent part of every graph of one mesh."""

    pos: torch.Tensor  # (n, 2) float32
    edge_index: torch.Tensor  # (2, E) int64
    edge_attr: torch.Tensor  # (E, 2) float32, x_target - x_source
    marker: torch.Tensor | None  # (n, 1) float32

    @classmethod
    def build(cls, nodes: np.ndarray, cells: np.ndarray, marker: np.ndarray | None, p2_edges: P2Edges) -> _Graph:
        nodes = np.asarray(nodes, dtype=np.float64)
        if nodes.ndim != 2 or nodes.shape[1] != 2:
            raise ValueError(f"nodes must have shape (n_nodes, 2), got {nodes.shape}")
        pos, edge_index, edge_attr = mesh_graph(nodes, _check_cells(cells, nodes.shape[0]), p2_edges=p2_edges)
        return cls(
            pos=pos,
            edge_index=edge_index,
            edge_attr=edge_attr,
            marker=None if marker is None else torch.from_numpy(marker.astype(np.float32)[:, None]),
        )


def _channels(name: str, value: Any, n: int) -> np.ndarray:
    """A nodal field ``(n,)`` or ``(n, C)`` as float32 ``(n, C)``."""
    array = _field_as_float32(value)
    if array.ndim == 1:
        array = array[:, None]
    if array.ndim != 2 or array.shape[0] != n:
        raise ValueError(f"field {name!r} has shape {tuple(array.shape)}; expected ({n},) or ({n}, C)")
    return array


def _stack(fields: Mapping[str, Any], n: int) -> np.ndarray:
    parts = [_channels(name, value, n) for name, value in fields.items()]
    return np.concatenate(parts, axis=1) if parts else np.zeros((n, 0), dtype=np.float32)


def _assemble(
    graph: _Graph,
    fields_in: Mapping[str, Any],
    fields_out: Mapping[str, Any],
    params: Mapping[str, float] | None,
    params_as_channels: bool,
) -> Data:
    n = graph.pos.shape[0]
    parts = [torch.from_numpy(_stack(fields_in, n))]
    values = None
    if params:
        values = torch.tensor([[float(v) for v in params.values()]], dtype=torch.float32)  # (1, P)
        if params_as_channels:
            parts.append(values.expand(n, -1))
    if graph.marker is not None:
        parts.append(graph.marker)
    data = Data(
        x=torch.cat(parts, dim=1),
        y=torch.from_numpy(_stack(fields_out, n)),
        pos=graph.pos,
        edge_index=graph.edge_index,
        edge_attr=graph.edge_attr,
    )
    if values is not None:
        data.params = values
    return data


def to_pyg(
    nodes: np.ndarray,
    cells: np.ndarray,
    fields_in: Mapping[str, np.ndarray | torch.Tensor],
    fields_out: Mapping[str, np.ndarray | torch.Tensor],
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
        ``(n_cells, 3)`` P1 or ``(n_cells, 6)`` P2 node indices (see :func:`pdebench.core.graphs.mesh_edges`).
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
        ``"refined"`` or ``"corners"``, see :func:`pdebench.core.graphs.mesh_edges`.

    Returns
    -------
    torch_geometric.data.Data
        * ``x`` ``(n, C_in [+ P] [+ 1])`` float32: the input fields' channels, then the ``P`` params
          if ``params_as_channels``, then the marker channel (1.0 on Dirichlet nodes, else 0.0) if
          ``boundary`` is given;
        * ``y`` ``(n, C_out)`` float32: the output fields' channels;
        * ``pos`` ``(n, 2)`` float32;
        * ``edge_index`` ``(2, E)`` int64: mesh edges in both directions, row 0 the source, row 1 the
          target, sorted by target then source (:func:`pdebench.core.graphs.mesh_edges`);
        * ``edge_attr`` ``(E, 2)`` float32: ``pos[target] - pos[source]`` (coordinate units, computed
          in float64), the convention of :mod:`pdebench.core.graphs` that the graph models consume;
        * ``params`` ``(1, P)`` float32, only when ``params`` is non-empty (batches to ``(B, P)``).
    """
    nodes = np.asarray(nodes, dtype=np.float64)
    marker = None
    if boundary is not None:
        if isinstance(boundary, Mapping):
            marker = _marker_mask(nodes.shape[0], boundary, dirichlet)
        else:
            marker = _marker_mask(nodes.shape[0], {"boundary": boundary}, "boundary")
    graph = _Graph.build(nodes, cells, marker, p2_edges)
    return _assemble(graph, fields_in, fields_out, params, params_as_channels)


def to_pyg_list(
    dataset: MeshDataset,
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
    """Samples of ``dataset`` as a list of graphs (no ``InMemoryDataset``); see :func:`to_pyg`.

    Parameters
    ----------
    dataset
        An open :class:`MeshDataset`.
    inputs, outputs
        Field names stacked (in this order) into ``x`` and ``y``.
    indices
        Rows (int, slice, index list or boolean mask; default all), in the order given.
    params
        Param names for ``data.params`` (default: all of the file's; ``[]``: none).
    dirichlet
        Boundary marker name(s) for the marker channel of ``x``; ``None``: no marker channel.
    params_as_channels, p2_edges
        As in :func:`to_pyg`.
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
        if name not in dataset.fields:
            raise ValueError(f"{dataset.path}: no field {name!r}; fields are {list(dataset.fields)}")
    param_names = list(dataset._params) if params is None else list(params)
    unknown = [name for name in param_names if name not in dataset._params]
    if unknown:
        raise ValueError(f"{dataset.path}: no param(s) {unknown}; params are {list(dataset._params)}")
    mesh = dataset.mesh
    marker = None if dirichlet is None else mesh.marker(dirichlet)
    graph = _Graph.build(mesh.nodes, mesh.cells, marker, p2_edges)
    selection = _normalize_rows(indices, len(dataset))
    rows = np.arange(selection.start, selection.stop) if isinstance(selection, slice) else selection
    graphs: list[Data] = []
    for start in range(0, len(rows), batch_size):
        chunk = rows[start : start + batch_size]
        values = {name: dataset.read_field(name, chunk) for name in dict.fromkeys((*inputs, *outputs))}
        for k, row in enumerate(chunk):
            data = _assemble(
                graph,
                {name: values[name][k] for name in inputs},
                {name: values[name][k] for name in outputs},
                {name: dataset._params[name][row] for name in param_names},
                params_as_channels,
            )
            data.sample_id = torch.from_numpy(dataset._sample_ids[row : row + 1].copy())
            graphs.append(data)
    return graphs
