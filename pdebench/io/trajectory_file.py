"""The grid layout: HDF5 files of trajectories on a grid, and PDEBench's published files.

Files written here follow PDEBench's layout, so PDEBench's own loaders read them:

* one field  -> dataset ``tensor`` of shape ``(N, T, *space[, C])``;
* several fields -> one dataset per field name (``density``, ``Vx``, ...), each ``(N, T, *space[, C])``;
  a Darcy pair ``{"nu", "tensor"}`` with ``T == 1`` stores ``nu`` as ``(N, *space)`` as PDEBench does;
* coordinates -> 1-D datasets ``x-coordinate``, ``y-coordinate``, ``z-coordinate``, ``t-coordinate``;
* ``sample_ids`` -> ``(N, 2)`` int64 ``(seed, index)``;
* equation parameters -> root attributes under their own names (``nu``, ``beta``);
* provenance -> root attributes named ``provenance.<key>`` (:func:`pdebench.io.base.write_attrs`);
* bookkeeping -> root attributes ``pdebench_layout = "grid"``, ``pdebench_format_version``,
  ``num_samples``, ``field_names`` (JSON list). Files written before the layout tag existed carry the
  version only and read the same.

Fields are stored as float32, chunked along ``N`` and compressed, through the atomic writer of
:mod:`pdebench.io.base`: nothing appears under the final name unless complete.

:class:`TrajectoryFile` (lazy) and :func:`read_trajectories` (eager) read these files and PDEBench's
published layouts unchanged, and the Zarr stores of ``pdebench export --format zarr`` (the xarray
schema of :mod:`pdebench.data.export`); see :data:`LAYOUTS`.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field as dataclass_field
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import torch
import zarr

from pdebench.core.trajectories import Trajectories
from pdebench.io.base import (
    LAYOUT_ATTR,
    PROVENANCE_PREFIX,
    VERSION_ATTR,
    AtomicHDF5Writer,
    BatchSchema,
    H5Reader,
    PathLike,
    Rows,
    decode_attr,
    field_as_float32,
    json_list,
    layout_of,
    normalize_rows,
    read_attrs,
    read_rows,
    same_value,
    unreadable,
    write_attrs,
)
from pdebench.io import well_file

logger = logging.getLogger(__name__)

LAYOUT = "grid"
"""Value of the layout tag (root attribute ``pdebench_layout``) of trajectory files."""
FORMAT_VERSION = 1
"""Version of the layout written by :class:`TrajectoryWriter` (root attribute ``pdebench_format_version``)."""

SINGLE_FIELD_DATASET = "tensor"
SAMPLE_IDS_DATASET = "sample_ids"
COORD_SUFFIX = "-coordinate"
CFD_FIELDS = ("density", "pressure", "Vx", "Vy", "Vz")
_RESERVED_ATTRS = frozenset({LAYOUT_ATTR, VERSION_ATTR, "num_samples", "field_names", "json_attrs", "squeezed_fields"})

LAYOUTS: dict[str, str] = {
    "native": f"written by TrajectoryWriter (root attribute {VERSION_ATTR!r})",
    "well": "The Well (the-well): dimensions/, scalars/, t0_fields/, t1_fields/, t2_fields/ (pdebench.io.well_file)",
    "darcy": "PDEBench Darcy: 'nu' (N, X, Y) input and 'tensor' (N, 1, X, Y) output",
    "tensor": "PDEBench single field: 'tensor' (N, T, X[, Y]) with 'x-coordinate', 't-coordinate', ...",
    "multi_field": "PDEBench CFD: one dataset per field (density, pressure, Vx, Vy[, Vz]), each (N, T, X[, Y])",
    "seed_groups": "PDEBench per-seed groups: '0000'/data (T, X[, Y], C) with '0000'/grid/x|y|t",
    "zarr": "a Zarr store (a folder) of `pdebench export --format zarr`: one array per field (sample, t, *space[, C])",
}
"""Layouts :class:`TrajectoryFile` recognises, in the order it tries them."""


# --------------------------------------------------------------------------------------------------
# Writer
# --------------------------------------------------------------------------------------------------


def _validate_first_batch(traj: Trajectories) -> None:
    """Check names and the ``(N, T, *space[, C])`` shapes against the spatial coordinates."""
    for name in traj.fields:
        if not name or "/" in name or name in (".", SAMPLE_IDS_DATASET) or name.endswith(COORD_SUFFIX):
            raise ValueError(
                f"field name {name!r} cannot be stored: it must be non-empty, without '/', and not "
                f"{SAMPLE_IDS_DATASET!r} or '*{COORD_SUFFIX}'"
            )
    for name in traj.coords:
        if not name or "/" in name:
            raise ValueError(f"coordinate name {name!r} cannot be stored (empty or contains '/')")
    for name in traj.params:
        if name in _RESERVED_ATTRS or name.startswith(PROVENANCE_PREFIX):
            raise ValueError(
                f"param name {name!r} is reserved (reserved: {sorted(_RESERVED_ATTRS)} and "
                f"'{PROVENANCE_PREFIX}*')"
            )
    space = [len(traj.coords[axis]) for axis in traj.spatial_axes]
    if not space:
        return
    for name, value in traj.fields.items():
        extra = value.ndim - 2 - len(space)
        if extra not in (0, 1) or list(value.shape[2 : 2 + len(space)]) != space:
            raise ValueError(
                f"field {name!r} has shape {tuple(value.shape)}; expected (N, T, {', '.join(map(str, space))}"
                f"[, C]) from coords {traj.spatial_axes}"
            )


def _is_darcy_pair(traj: Trajectories) -> bool:
    return set(traj.fields) == {"nu", SINGLE_FIELD_DATASET} and traj.num_frames == 1


class TrajectoryWriter(AtomicHDF5Writer):
    """Append batches of :class:`Trajectories` to an HDF5 file, written atomically
    (:class:`~pdebench.io.base.AtomicHDF5Writer`).

    Parameters
    ----------
    path, overwrite, compression
        As for every writer (:class:`~pdebench.io.base.AtomicHDF5Writer`).
    chunk_rows
        Rows (trajectories) per HDF5 chunk. Default: about 1 MiB per chunk; a single row larger than
        that is chunked along time instead.
    provenance
        Extra provenance for the whole file (command, git revision, ...), stored after the batches'.
    allow_nonfinite
        Store trajectories with NaN/inf values. By default such a batch raises ``ValueError`` naming
        the sample ids, since a blown-up solve must never be written silently.

    Notes
    -----
    Batches must agree on field names, shapes past ``N``, coordinates and params (``ValueError``
    naming the difference otherwise). Provenance is taken from the first batch; keys first seen later
    are added; numeric keys whose name starts with ``wall_time`` are summed over batches; other later
    values that differ are ignored (logged at DEBUG).

    Examples
    --------
    >>> with TrajectoryWriter("burgers.h5") as writer:      # doctest: +SKIP
    ...     for batch in solver.batches(problem, seeds):
    ...         writer.append(batch)
    """

    LAYOUT = LAYOUT
    FORMAT_VERSION = FORMAT_VERSION
    _noun = "trajectories"

    def __init__(
        self,
        path: PathLike,
        *,
        overwrite: bool = False,
        compression: str | None = "gzip",
        chunk_rows: int | None = None,
        provenance: dict[str, Any] | None = None,
        allow_nonfinite: bool = False,
    ) -> None:
        if chunk_rows is not None and chunk_rows < 1:
            raise ValueError(f"chunk_rows must be a positive integer, got {chunk_rows!r}")
        self.chunk_rows = chunk_rows
        self.allow_nonfinite = allow_nonfinite
        self._extra_provenance = dict(provenance or {})
        self._open_temporary(path, overwrite, compression, rdcc_nbytes=16 << 20)
        self._squeezed: set[str] = set()
        self._datasets: dict[str, h5py.Dataset] = {}

    # -- writing -----------------------------------------------------------------------------------
    def append(self, traj: Trajectories) -> None:
        """Write the batch ``traj`` (fields ``(n, T, *space[, C])``) after the rows already written.

        Raises
        ------
        ValueError
            The batch disagrees with the first one, or holds non-finite values.
        """
        self._check_open()
        if not isinstance(traj, Trajectories):
            raise TypeError(f"append expects Trajectories, got {type(traj).__name__}")
        if traj.num_samples == 0:
            return
        schema = BatchSchema(
            {name: tuple(value.shape[1:]) for name, value in traj.fields.items()},
            {"coordinate": {name: np.asarray(value) for name, value in traj.coords.items()}, "param": dict(traj.params)},
        )
        if self._schema is None:
            _validate_first_batch(traj)
        else:
            self._schema.check(schema)
        self._check_finite(traj)
        self._warn_repeated_ids(traj.sample_ids)
        if self._schema is None:
            self._create_datasets(traj)
            self._schema = schema
        start, stop = self._num_samples, self._num_samples + traj.num_samples
        for name, dataset in self._datasets.items():
            values = traj.sample_ids if name == SAMPLE_IDS_DATASET else field_as_float32(traj.fields[name])
            if name in self._squeezed:
                values = values[:, 0]
            dataset.resize(stop, axis=0)
            dataset[start:stop] = values
        self._num_samples = stop
        self._merge_provenance(traj.provenance, traj.num_samples)
        logger.debug("appended %d trajectories to %s (%d in all)", traj.num_samples, self.path, stop)

    def _check_finite(self, traj: Trajectories) -> None:
        if self.allow_nonfinite:
            return
        bad = ~traj.all_finite()
        if bad.any():
            ids = [tuple(map(int, row)) for row in traj.sample_ids[bad][:5]]
            raise ValueError(
                f"{int(bad.sum())} trajectories have non-finite values (first (seed, index): {ids}); "
                f"not writing them to {self.path} (allow_nonfinite=True stores them)"
            )

    def _create_datasets(self, traj: Trajectories) -> None:
        multi = len(traj.fields) > 1
        if _is_darcy_pair(traj):
            self._squeezed = {"nu"}
        for name, value in traj.fields.items():
            row_shape = tuple(value.shape[1:])
            if name in self._squeezed:
                row_shape = row_shape[1:]
            key = name if multi else SINGLE_FIELD_DATASET
            self._datasets[name] = self._create_rows(self._file, key, row_shape, "f4", self.chunk_rows)
        self._datasets[SAMPLE_IDS_DATASET] = self._create_rows(self._file, SAMPLE_IDS_DATASET, (2,), "i8")
        for name, value in traj.coords.items():
            self._file.create_dataset(f"{name}{COORD_SUFFIX}", data=np.asarray(value), track_times=False)

    def _merge_provenance(self, provenance: dict[str, Any], batch: int) -> None:
        """Fold the provenance of a batch of ``batch`` rows (just appended) into the file's: wall times
        add up, ``*_per_sample`` lists (one entry a row) are concatenated, ``mean_*`` numbers become the
        mean over every row; the step the file states is its finest; the rest is the first batch's."""
        before = self._num_samples - batch
        for key, value in provenance.items():
            number = isinstance(value, int | float) and not isinstance(value, bool)
            if key not in self._provenance:
                self._provenance[key] = list(value) if key.endswith("_per_sample") else value
            elif key.startswith("wall_time") and number:
                self._provenance[key] += value
            elif key.endswith("_per_sample") and isinstance(value, list | tuple):
                self._provenance[key].extend(value)
            elif key.startswith("mean_") and number:
                self._provenance[key] = (self._provenance[key] * before + value * batch) / self._num_samples
            elif key in ("substeps_per_output", "dt") and isinstance(value, int | float):
                # a certified solve's step adapts per batch: the file states its finest
                self._provenance[key] = (max if key == "substeps_per_output" else min)(self._provenance[key], value)
            elif key == "error_estimate" and isinstance(value, dict) and "time_per_frame" in value:
                # the file's certificate covers every batch: the largest estimate per frame
                kept = self._provenance[key]
                kept["time_per_frame"] = np.maximum(kept["time_per_frame"], value["time_per_frame"]).tolist()
                kept["time_max"] = max(kept["time_max"], value["time_max"])
            elif not same_value(value, self._provenance[key]):
                logger.debug("provenance %r: keeping first batch's %r, ignoring %r", key, self._provenance[key], value)

    def _write_attrs(self) -> None:
        attrs = self._file.attrs
        write_attrs(attrs, self._schema.values["param"], {**self._provenance, **self._extra_provenance})
        attrs["field_names"] = json.dumps(list(self._schema.row_shapes))
        attrs["squeezed_fields"] = json.dumps(sorted(self._squeezed))


@dataclass
class _Source:
    """A field as the file holds it: logical shape ``(N, T, *space[, C])`` and a row reader."""

    shape: tuple[int, ...]
    read: Callable[[slice | np.ndarray], np.ndarray]
    itemsize: int = 4
    """Bytes per value as :meth:`TrajectoryFile.read` returns it (float32 for non-float datasets)."""


def check_field_dataset(dataset: h5py.Dataset, *, min_ndim: int) -> None:
    """Refuse, in one line naming the file and the dataset, a dataset a field cannot be read from.

    Every layout reads its fields through this check (via ``_dataset_source`` and ``_stacked_source``),
    so :class:`TrajectoryFile`, plot, export and training refuse the same files the same way.

    Parameters
    ----------
    dataset
        The HDF5 dataset holding (part of) a field.
    min_ndim
        Axes the dataset needs (2 for ``(N, T, ...)``; 1 where the layout adds an axis itself).

    Raises
    ------
    ValueError
        Too few axes, a non-numeric dtype, or a declared size not backed by stored data: a contiguous
        dataset storing fewer bytes than its shape needs, or a chunked one storing fewer chunks than
        its shape spans. Chunks are counted, not bytes, so compressed data (which legitimately stores
        fewer bytes) passes; a chunk that was never written would read as the fill value, so any
        missing chunk is refused, whatever the fill value (a 16 KB file must not pose as a billion rows).
    """
    where = f"{dataset.file.filename}: dataset {dataset.name!r}"
    if dataset.ndim < min_ndim:
        axes = "(N, T, *space[, C])" if min_ndim >= 2 else "at least one axis"
        raise ValueError(f"{where} has shape {dataset.shape}; a field needs {axes}")
    if dataset.dtype.kind not in "biufc":
        raise ValueError(f"{where} has dtype {dataset.dtype}; a field needs numbers")
    if dataset.size == 0 or dataset.is_virtual or dataset.external:
        return  # nothing to store, or stored in other files
    declared = dataset.size * dataset.dtype.itemsize
    if dataset.chunks is None:
        stored = dataset.id.get_storage_size()
        if stored < declared:
            raise ValueError(
                f"{where} declares shape {dataset.shape} ({declared:,} bytes) but stores {stored:,} bytes: "
                "its data is missing (a truncated or placeholder file)"
            )
        return
    needed = math.prod(math.ceil(size / chunk) for size, chunk in zip(dataset.shape, dataset.chunks, strict=True))
    stored = dataset.id.get_num_chunks()
    if stored < needed:
        raise ValueError(
            f"{where} declares shape {dataset.shape} in {needed:,} chunks but stores only {stored:,}: "
            "its data is missing (a truncated or placeholder file)"
        )


def _dataset_source(dataset: h5py.Dataset, *, add_time_axis: bool = False) -> _Source:
    check_field_dataset(dataset, min_ndim=1 if add_time_axis else 2)
    itemsize = _read_itemsize(dataset.dtype)
    if not add_time_axis:
        return _Source(tuple(dataset.shape), lambda rows: read_rows(dataset, rows), itemsize)
    shape = (dataset.shape[0], 1, *dataset.shape[1:])
    return _Source(shape, lambda rows: read_rows(dataset, rows)[:, None], itemsize)


def _read_itemsize(dtype: np.dtype) -> int:
    return dtype.itemsize if dtype.kind in "fc" else 4


def _stacked_source(datasets: list[h5py.Dataset]) -> _Source:
    for dataset in datasets:
        check_field_dataset(dataset, min_ndim=1)
    shape = (len(datasets), *datasets[0].shape)

    def read(rows: slice | np.ndarray) -> np.ndarray:
        indices = range(rows.start, rows.stop) if isinstance(rows, slice) else rows
        parts = [datasets[int(i)][()] for i in indices]
        return np.stack(parts) if parts else np.empty((0, *shape[1:]), dtype=datasets[0].dtype)

    return _Source(shape, read, _read_itemsize(datasets[0].dtype))


@dataclass
class _Contents:
    """What a recognised layout yields."""

    layout: str
    sources: dict[str, _Source]
    coords: dict[str, np.ndarray]
    params: dict[str, Any]
    provenance: dict[str, Any]
    sample_ids: h5py.Dataset | np.ndarray | None = None
    sample_parameters: dict[str, h5py.Dataset] = dataclass_field(default_factory=dict)


def _time_coordinate(values: np.ndarray, num_frames: int, where: str) -> np.ndarray | None:
    """PDEBench's ``t-coordinate`` may list ``T + 1`` times (cell edges): keep the first ``T``."""
    values = np.asarray(values).reshape(-1)
    if len(values) == num_frames:
        return values
    if len(values) == num_frames + 1:
        logger.debug("%s: %d times for T=%d frames; using the first %d", where, len(values), num_frames, num_frames)
        return values[:num_frames]
    logger.warning("%s: %d times do not match T=%d frames; dropping coordinate 't'", where, len(values), num_frames)
    return None


def _order_coords(coords: dict[str, np.ndarray], num_frames: int, where: str) -> dict[str, np.ndarray]:
    """``x``, ``y``, ``z``, ``t`` first, then the rest; ``t`` as :func:`_time_coordinate` keeps it (``where``: its dataset)."""
    if "t" in coords:
        t = _time_coordinate(coords.pop("t"), num_frames, where)
        if t is not None:
            coords["t"] = t
    first = [name for name in ("x", "y", "z", "t") if name in coords]
    return {name: coords[name] for name in first + sorted(set(coords) - set(first))}


def _root_coords(file: h5py.File, num_frames: int) -> dict[str, np.ndarray]:
    coords = {}
    for key, item in file.items():
        if key.endswith(COORD_SUFFIX) and isinstance(item, h5py.Dataset):
            coords[key[: -len(COORD_SUFFIX)]] = np.asarray(item[()]).reshape(-1)
    return _order_coords(coords, num_frames, f"{file.filename}:t-coordinate")


def _plain_attrs(attrs: h5py.AttributeManager) -> dict[str, Any]:
    return {name: decode_attr(value) for name, value in attrs.items()}


def _root_datasets(file: h5py.File) -> dict[str, h5py.Dataset]:
    return {key: item for key, item in file.items() if isinstance(item, h5py.Dataset)}


def _is_native(file: h5py.File) -> bool:
    """Written by :class:`TrajectoryWriter`: tagged ``grid``, or (before the tag) versioned and untagged."""
    return VERSION_ATTR in file.attrs and layout_of(file.attrs) in (None, LAYOUT)


def _open_native(file: h5py.File) -> _Contents:
    version = int(decode_attr(file.attrs[VERSION_ATTR]))
    if version > FORMAT_VERSION:
        raise ValueError(f"{file.filename} has format version {version}; this reader knows up to {FORMAT_VERSION}")
    names = json_list(file.attrs, "field_names")
    squeezed = set(json_list(file.attrs, "squeezed_fields"))
    keys = {name: (name if len(names) > 1 else SINGLE_FIELD_DATASET) for name in names}
    sources = {name: _dataset_source(file[keys[name]], add_time_axis=name in squeezed) for name in names}
    params, provenance = read_attrs(file.attrs, _RESERVED_ATTRS)
    num_rows, num_frames = next(iter(sources.values())).shape[:2]
    return _Contents("native", sources, _root_coords(file, num_frames), params, provenance, _sample_ids_dataset(file, num_rows))


def _is_darcy(file: h5py.File) -> bool:
    nu, tensor = file.get("nu"), file.get(SINGLE_FIELD_DATASET)
    return (
        isinstance(nu, h5py.Dataset)
        and isinstance(tensor, h5py.Dataset)
        and tensor.ndim == nu.ndim + 1
        and tensor.ndim >= 3
        and tensor.shape[1] == 1
        and tensor.shape[0] == nu.shape[0]
    )


def _open_darcy(file: h5py.File) -> _Contents:
    sources = {
        "nu": _dataset_source(file["nu"], add_time_axis=True),
        SINGLE_FIELD_DATASET: _dataset_source(file[SINGLE_FIELD_DATASET]),
    }
    return _foreign("darcy", file, sources)


def _is_tensor(file: h5py.File) -> bool:
    tensor = file.get(SINGLE_FIELD_DATASET)
    return isinstance(tensor, h5py.Dataset) and tensor.ndim >= 3


def _open_tensor(file: h5py.File) -> _Contents:
    return _foreign("tensor", file, {SINGLE_FIELD_DATASET: _dataset_source(file[SINGLE_FIELD_DATASET])})


def _is_multi_field(file: h5py.File) -> bool:
    return any(isinstance(file.get(name), h5py.Dataset) for name in CFD_FIELDS)


def _open_multi_field(file: h5py.File) -> _Contents:
    candidates = {
        key: item
        for key, item in _root_datasets(file).items()
        if item.ndim >= 3 and not key.endswith(COORD_SUFFIX) and key != SAMPLE_IDS_DATASET
    }
    if not candidates:
        raise ValueError(f"{file.filename}: no field dataset of shape (N, T, X[, ...]); found {_describe_contents(file)}")
    order = [name for name in CFD_FIELDS if name in candidates] + sorted(set(candidates) - set(CFD_FIELDS))
    leading = {name: tuple(candidates[name].shape[:2]) for name in order}
    if len(set(leading.values())) != 1:
        raise ValueError(f"{file.filename}: field datasets disagree on (N, T): {leading}")
    return _foreign("multi_field", file, {name: _dataset_source(candidates[name]) for name in order})


def _foreign(layout: str, file: h5py.File, sources: dict[str, _Source]) -> _Contents:
    num_frames = next(iter(sources.values())).shape[1]
    return _Contents(
        layout,
        sources,
        _root_coords(file, num_frames),
        _plain_attrs(file.attrs),
        {"source_layout": layout},
        _sample_ids_dataset(file, next(iter(sources.values())).shape[0]),
    )


def _sample_ids_dataset(file: h5py.File, num_rows: int) -> h5py.Dataset | None:
    """The ``(N, 2)`` ``sample_ids`` dataset (checked like a field), or ``None`` where there is none."""
    ids = file.get(SAMPLE_IDS_DATASET)
    if not (isinstance(ids, h5py.Dataset) and ids.shape == (num_rows, 2)):
        return None
    check_field_dataset(ids, min_ndim=2)
    return ids


def _seed_groups(file: h5py.File) -> list[str]:
    names = [
        key
        for key, item in file.items()
        if key.isdigit() and isinstance(item, h5py.Group) and isinstance(item.get("data"), h5py.Dataset)
    ]
    return sorted(names, key=lambda key: (int(key), key))


def _open_seed_groups(file: h5py.File) -> _Contents:
    names = _seed_groups(file)
    datasets = [file[name]["data"] for name in names]
    shape = datasets[0].shape
    for name, dataset in zip(names, datasets, strict=True):
        if dataset.shape != shape:
            raise ValueError(
                f"{file.filename}: group {name!r} data has shape {dataset.shape}, group {names[0]!r} has {shape}"
            )
    coords: dict[str, np.ndarray] = {}
    grid = file[names[0]].get("grid")
    if isinstance(grid, h5py.Group):
        for axis, item in grid.items():
            if isinstance(item, h5py.Dataset):
                coords[axis] = np.asarray(item[()]).reshape(-1)
    return _Contents(
        "seed_groups",
        {"data": _stacked_source(datasets)},
        _order_coords(coords, shape[0], f"{file.filename}:{names[0]}/grid/t"),
        _plain_attrs(file.attrs),
        {"source_layout": "seed_groups"},
    )


def _open_well(file: h5py.File) -> _Contents:
    found = well_file.read_layout(file, lambda dataset, ndim: check_field_dataset(dataset, min_ndim=ndim))
    sources = {name: _Source(*source) for name, source in found.sources.items()}
    return _Contents("well", sources, found.coords, found.params, found.provenance, found.sample_ids, found.sample_parameters)


_DETECTORS: list[tuple[str, Callable[[h5py.File], bool], Callable[[h5py.File], _Contents]]] = [
    ("native", _is_native, _open_native),
    ("well", well_file.is_well_layout, _open_well),
    ("darcy", _is_darcy, _open_darcy),
    ("tensor", _is_tensor, _open_tensor),
    ("multi_field", _is_multi_field, _open_multi_field),
    ("seed_groups", lambda f: bool(_seed_groups(f)), _open_seed_groups),
]


ZARR_SAMPLE_DIM = "sample"
ZARR_SAMPLE_IDS = ("sample_seed", "sample_index")
_ZARR_RESERVED_ATTRS = frozenset({VERSION_ATTR, "json_attrs", "field_names"})


def _zarr_field_source(array: zarr.Array, where: str) -> _Source:
    """A field array ``(sample, t, ...)`` read by row selection; refused where it is not numeric or a
    chunk of it is missing (the store is written with every chunk, so a missing one is lost data)."""
    dtype = np.dtype(array.dtype)
    if dtype.kind not in "biufc":
        raise ValueError(f"{where} has dtype {dtype}; a field needs numbers")
    if array.size and array.nchunks_initialized < array.nchunks:
        raise ValueError(
            f"{where} declares shape {array.shape} in {array.nchunks:,} chunks but stores only "
            f"{array.nchunks_initialized:,}: its data is missing (an incomplete or damaged store)"
        )
    return _Source(tuple(array.shape), lambda rows: read_rows(array, rows), _read_itemsize(dtype))


def _open_zarr(group: zarr.Group, path: Path) -> _Contents:
    """A Zarr store of :func:`pdebench.data.export.export_zarr`: fields, coordinates, ids, attributes."""
    attrs = group.attrs
    arrays = dict(group.arrays())
    dims = {name: tuple(array.metadata.dimension_names or ()) for name, array in arrays.items()}
    if VERSION_ATTR not in attrs:
        raise ValueError(
            f"{path} is a Zarr store but not one pdebench wrote (no root attribute {VERSION_ATTR}; attributes "
            f"{sorted(attrs)}, arrays {sorted(arrays)})"
        )
    version = int(decode_attr(attrs[VERSION_ATTR]))
    if version > FORMAT_VERSION:
        raise ValueError(f"{path} has format version {version}; this reader knows up to {FORMAT_VERSION}")
    found = [name for name in arrays if dims[name][:2] == (ZARR_SAMPLE_DIM, "t") and name not in ZARR_SAMPLE_IDS]
    names = json_list(attrs, "field_names") or sorted(found)
    if not names or sorted(names) != sorted(found):
        raise ValueError(f"{path}: fields {names} listed, arrays with dimensions (sample, t, ...) {sorted(found)}")
    sources = {name: _zarr_field_source(arrays[name], f"{path}: array {name!r}") for name in names}
    num_rows, num_frames = next(iter(sources.values())).shape[:2]
    coords = {name: np.asarray(array[...]).reshape(-1) for name, array in arrays.items() if dims[name] == (name,)}
    ids = None
    if all(name in arrays and arrays[name].shape == (num_rows,) for name in ZARR_SAMPLE_IDS):
        ids = np.stack([np.asarray(arrays[name][...], dtype=np.int64) for name in ZARR_SAMPLE_IDS], axis=1)
    params, provenance = read_attrs(attrs, _ZARR_RESERVED_ATTRS)
    return _Contents("zarr", sources, _order_coords(coords, num_frames, f"{path}/t"), params, provenance, ids)


def _describe_contents(file: h5py.File, limit: int = 20) -> str:
    found: list[str] = []

    def visit(name: str, item: Any) -> None:
        if isinstance(item, h5py.Dataset) and len(found) <= limit:
            found.append(f"{name} {item.shape}")

    file.visititems(visit)
    more = ", ..." if len(found) > limit else ""
    return ", ".join(found[:limit]) + more if found else "no datasets"


def _detect(file: h5py.File, path: Path) -> _Contents:
    for _, matches, open_layout in _DETECTORS:
        if matches(file):
            return open_layout(file)
    expected = "; ".join(f"{name}: {text}" for name, text in LAYOUTS.items())
    raise ValueError(f"{path}: unknown layout. Found: {_describe_contents(file)}. Expected one of: {expected}")


class TrajectoryFile(H5Reader):
    """Lazy reader of a trajectory file: metadata on open, fields read per row selection.

    Reads files from :class:`TrajectoryWriter` and PDEBench's published layouts unchanged (see
    :data:`LAYOUTS`):

    * ``tensor``: dataset ``tensor`` ``(N, T, X[, Y])`` -> field ``"tensor"``; a ``t-coordinate`` with
      ``T + 1`` entries (PDEBench stores the time-interval edges in some files) is cut to its first ``T``.
    * ``darcy``: ``nu`` ``(N, X, Y)`` and ``tensor`` ``(N, 1, X, Y)`` -> fields ``"nu"`` and ``"tensor"``,
      both ``(N, 1, X, Y)``: the coefficient is read as a one-frame field so that every field shares
      ``(N, T)`` as :class:`Trajectories` requires.
    * ``multi_field``: ``density``, ``pressure``, ``Vx``, ``Vy`` [``Vz``] (and other ``(N, T, ...)`` root
      datasets) -> one field each.
    * ``seed_groups``: groups ``"0000"``, ``"0001"``, ... with ``data`` ``(T, X[, Y], C)`` -> field
      ``"data"`` ``(N, T, *space, C)`` stacked over the groups in numeric order; coordinates from the
      first group's ``grid/x|y|t``.
    * ``well``: The Well's layout (:func:`pdebench.io.well_file.read_layout`): t0 fields as fields, t1
      (t2) fields as fields with ``D`` (``D²``) channels, scalars as params and per-sample parameters
      (:meth:`sample_parameters`), the Well's metadata as ``provenance["well"]``.
    * ``zarr``: a Zarr store (a folder) of :func:`pdebench.data.export.export_zarr` -> its fields,
      coordinates, sample ids, params and provenance as the HDF5 file it was exported from has them
      (booleans as 0/1, as the export's schema stores them); opened with :func:`zarr.open_group`,
      chunks read on demand.

    Root attributes become ``params`` (for our files, ``provenance.*`` attributes become
    ``provenance``; ``{"source_layout": ...}`` for PDEBench files). Files without ``sample_ids`` get
    ids ``(seed=-1, index=row)``. Opening, closing and pickling are those of
    :class:`~pdebench.io.base.H5Reader`.

    Parameters
    ----------
    path
        The HDF5 file, or a Zarr store.
    fields
        Only these fields (default: all).

    Raises
    ------
    FileNotFoundError
        ``path`` does not exist.
    ValueError
        Not an HDF5 file, an unknown layout (the message lists what was found and what is expected),
        an unknown field name, a truncated or damaged file (also when rows are read), or a field
        dataset that :func:`check_field_dataset` refuses (too few axes, declared size not stored).

    Examples
    --------
    >>> with TrajectoryFile("1D_Burgers_Sols_Nu0.1.hdf5") as f:  # doctest: +SKIP
    ...     len(f), f.fields, f.params
    ...     batch = f[:32]                                  # Trajectories with N = 32
    """

    _what = "trajectory"
    _reads_zarr = True

    def __init__(self, path: PathLike, *, fields: Sequence[str] | None = None) -> None:
        super().__init__(path, fields=list(fields) if fields is not None else None)

    def _read(self, file: h5py.File | zarr.Group) -> None:
        self._contents = _open_zarr(file, self.path) if isinstance(file, zarr.Group) else _detect(file, self.path)
        self._sources = self._select_sources(self._options["fields"])
        self._num_rows = int(next(iter(self._contents.sources.values())).shape[0])
        self._sample_ids = self._contents.sample_ids
        self._params, self._provenance = self._contents.params, self._contents.provenance

    def _select_sources(self, fields: Sequence[str] | None) -> dict[str, _Source]:
        sources = self._contents.sources
        if fields is None:
            return dict(sources)
        unknown = [name for name in fields if name not in sources]
        if unknown:
            raise ValueError(f"{self.path}: no field(s) {unknown}; fields are {list(sources)}")
        return {name: sources[name] for name in fields}

    def _describe(self) -> str:
        return f", layout={self.layout!r}, fields={self.fields}"

    # -- metadata ----------------------------------------------------------------------------------
    @property
    def layout(self) -> str:
        """Which of :data:`LAYOUTS` the file has (``"native"`` for our own files)."""
        return self._contents.layout

    @property
    def fields(self) -> dict[str, tuple[int, ...]]:
        """Field name -> full shape ``(N, T, *space[, C])`` (selected fields only)."""
        return {name: source.shape for name, source in self._sources.items()}

    @property
    def nbytes(self) -> int:
        """Bytes of the selected fields when all rows are read (:meth:`read`'s dtypes, no compression)."""
        return sum(source.itemsize * math.prod(source.shape) for source in self._sources.values())

    @property
    def num_frames(self) -> int:
        """Frames per trajectory ``T``."""
        return int(next(iter(self._sources.values())).shape[1])

    @property
    def coords(self) -> dict[str, np.ndarray]:
        """Coordinate name -> 1-D array (``"x"``, ``"y"``, ``"z"``, ``"t"`` of length ``T``)."""
        return {name: value.copy() for name, value in self._contents.coords.items()}

    # -- data --------------------------------------------------------------------------------------
    def read(self, rows: Rows = None, *, fields: Sequence[str] | None = None) -> Trajectories:
        """Trajectories at ``rows`` (int, slice, index list or boolean mask; default all).

        Returns
        -------
        Trajectories
            Fields ``(n, T, *space[, C])`` in the file's dtype (float32 for our files) as torch tensors.
        """
        self._handle()
        sources = self._sources if fields is None else self._select_sources(fields)
        selection = normalize_rows(rows, len(self))
        with unreadable(self.path):
            values = {name: torch.from_numpy(_as_float(source.read(selection))) for name, source in sources.items()}
        return Trajectories(
            fields=values,
            coords=self.coords,
            params=self.params,
            sample_ids=self.sample_ids(selection),
            provenance=self.provenance,
        )

    def __getitem__(self, rows: Rows) -> Trajectories:
        return self.read(rows)

    def sample_parameters(self, rows: Rows = None) -> dict[str, np.ndarray]:
        """Name -> ``(n,)`` values of the parameters the file stores per sample, at ``rows`` (default all).

        Only The Well's layout stores them (its sample-varying scalars); our own grid files store the
        sample ids, from which a problem recomputes its per-sample parameters
        (:meth:`~pdebench.problems.base.Problem.sample_parameters`): empty for every other layout.
        """
        self._handle()
        selection = normalize_rows(rows, len(self))
        with unreadable(self.path):
            return {name: np.asarray(read_rows(dataset, selection)) for name, dataset in self._contents.sample_parameters.items()}


def find_nonfinite(
    values: torch.Tensor | np.ndarray | Iterable[torch.Tensor | np.ndarray],
    *,
    rows: Sequence[int] | np.ndarray | None = None,
    frames: Sequence[int] | np.ndarray | None = None,
) -> dict[int, list[int]]:
    """Which rows, and which frames of them, hold a NaN or an infinity.

    The one place that locates non-finite values in trajectories: training's data check, ``export``
    and ``plot`` all use it (with :func:`describe_nonfinite` for the message).

    Parameters
    ----------
    values
        An array ``(n, T, ...)`` or several sharing ``(n, T)`` (e.g. ``Trajectories.fields.values()``).
    rows
        The file's row number of each of the ``n`` rows (default ``0 .. n - 1``).
    frames
        The file's frame number of each of the ``T`` frames (default ``0 .. T - 1``).

    Returns
    -------
    dict
        Row number -> sorted frame numbers with a non-finite value, for bad rows only (empty: all finite).
    """
    arrays = [values] if isinstance(values, torch.Tensor | np.ndarray) else list(values)
    bad: np.ndarray | None = None
    for array in arrays:
        if isinstance(array, torch.Tensor):
            ok = torch.isfinite(array.detach()).cpu().numpy() if array.is_floating_point() or array.is_complex() else None
        else:
            array = np.asarray(array)
            ok = np.isfinite(array) if array.dtype.kind in "fc" else None
        if ok is None or ok.ndim == 0:
            continue
        if ok.ndim == 1:  # one value per row: a single frame
            ok = ok[:, None]
        elif ok.ndim > 2:
            ok = ok.reshape(ok.shape[0], ok.shape[1], -1).all(axis=2)
        bad = ~ok if bad is None else bad | ~ok
    if bad is None or not bad.any():
        return {}
    row_numbers = np.arange(bad.shape[0]) if rows is None else np.asarray(rows).reshape(-1)
    frame_numbers = np.arange(bad.shape[1]) if frames is None else np.asarray(frames).reshape(-1)
    return {
        int(row_numbers[i]): [int(frame_numbers[j]) for j in np.flatnonzero(bad[i])] for i in np.flatnonzero(bad.any(axis=1))
    }


def describe_nonfinite(found: dict[int, list[int]], *, max_rows: int = 8, max_frames: int = 6) -> str:
    """``{2: [3, 4], 6: [0]}`` -> ``"rows 2 (frames 3, 4), 6 (frame 0)"`` (long lists end in ``...``).

    Parameters
    ----------
    found
        What :func:`find_nonfinite` returns (possibly merged over several batches).
    max_rows, max_frames
        How many rows, and frames per row, to name before summarising the rest.
    """

    def frames_text(frames: list[int]) -> str:
        shown = ", ".join(map(str, frames[:max_frames]))
        more = f", ... ({len(frames)} frames)" if len(frames) > max_frames else ""
        return f"frame{'s' if len(frames) > 1 else ''} {shown}{more}"

    rows = sorted(found)
    parts = [f"{row} ({frames_text(found[row])})" for row in rows[:max_rows]]
    more = f", ... ({len(rows)} rows in all)" if len(rows) > max_rows else ""
    return f"row{'s' if len(rows) > 1 else ''} {', '.join(parts)}{more}"


def _as_float(values: np.ndarray) -> np.ndarray:
    return values if values.dtype.kind in "fc" else values.astype(np.float32)


def read_trajectories(path: PathLike, *, rows: Rows = None, fields: Sequence[str] | None = None) -> Trajectories:
    """Read ``rows`` (default all) of the ``fields`` (default all) of a trajectory file at once.

    See :class:`TrajectoryFile` for the layouts read and the errors raised.

    Returns
    -------
    Trajectories
        Fields ``(n, T, *space[, C])``.
    """
    with TrajectoryFile(path, fields=fields) as file:
        return file.read(rows)
