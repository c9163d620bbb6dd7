"""The Well's layout: HDF5 files that The Well's ``WellDataset`` (package ``the-well``) reads, written and read here.

The layout, as The Well's ``docs/data_format.md`` and ``scripts/check_thewell_formatting.py`` define it,
for ``N`` trajectories of ``T`` frames on a ``D``-dimensional grid, every array fp32:

* root attributes ``dataset_name`` (str), ``grid_type`` (``"cartesian"``), ``n_spatial_dims`` (``D``),
  ``n_trajectories`` (``N``), ``simulation_parameters`` (list of names) and one attribute per parameter;
* ``dimensions/``: attribute ``spatial_dims`` (the axis names), dataset ``time`` ``(T,)`` with
  ``sample_varying``, one coordinate ``(X,)`` per axis with ``sample_varying`` and ``time_varying``;
* ``boundary_conditions/``: one group per boundary with ``bc_type`` (``PERIODIC``, ``WALL`` or
  ``OPEN``), ``associated_dims``, ``associated_fields``, ``sample_varying``, ``time_varying`` and a
  boolean ``mask`` over the axis, true at the boundary's points (here the first and the last);
* ``scalars/``: ``field_names`` and one dataset per scalar with ``sample_varying``/``time_varying``:
  ``()`` for a constant, ``(N,)`` for a per-sample value, ``(T,)`` or ``(N, T)`` when time-varying;
* ``t0_fields/``, ``t1_fields/``, ``t2_fields/`` (all three present, possibly empty): ``field_names``
  and one dataset per field, ``(N, T, *space)``, ``(N, T, *space, D)`` and ``(N, T, *space, D, D)``,
  each with ``dim_varying`` (one bool per axis), ``sample_varying`` and ``time_varying`` (a t2 field
  also ``symmetric`` and ``antisymmetric``); a flag that is false drops its axis from the dataset.

What The Well's reader (``the_well.data.WellDataset`` 1.2.0) needs that its documentation does not
say: every one of the five groups must exist, even empty, each with its ``field_names``; a constant
scalar is a 0-d dataset (the documentation shows ``float32(1)``; the reader then fails to concatenate
it with 0-d ones); ``bc_type`` is upper-cased and must then be one of ``WALL``, ``OPEN``, ``PERIODIC``;
a boundary counts for an end of its axis only where its ``mask`` is true at that end; the number of
frames is the last axis of ``dimensions/time``; every ``*.h5``/``*.hdf5`` of a folder is read and all
must share ``dataset_name``, ``n_spatial_dims`` and the resolution; a vector's components come out as
``NAME_x``, ``NAME_y`` (axis names from ``spatial_dims``), after all t0 fields.

Mapping from :class:`~pdebench.core.trajectories.Trajectories` (:class:`WellWriter`): a field
``(N, T, *space)`` is a t0 field; a field with ``C`` channels is a t1 field when
:attr:`WellMetadata.tensor_fields` names it a vector (``C = D``), a t2 field when it names it a tensor
(``C = D²``, row-major), and otherwise ``C`` t0 fields ``NAME_0 .. NAME_{C-1}``. The file's
parameters are root attributes (listed in ``simulation_parameters``) and, where numeric, constant
scalars; per-sample parameters are sample-varying scalars ``(N,)``.

Our additions, which The Well's reader ignores: the layout tag (``pdebench_layout = "well"``,
``pdebench_format_version``), ``num_samples``, ``json_attrs`` and ``provenance.<key>`` attributes
(:func:`~pdebench.io.base.encode_attrs`), the root dataset ``sample_ids`` ``(N, 2)`` and
``pdebench_fields`` (JSON: which Well datasets make each of our fields, in our order). A file read
back (:func:`read_layout`, through :class:`~pdebench.io.trajectory_file.TrajectoryFile`) and written
again is the same file: the Well's own metadata comes back as ``provenance["well"]``
(:meth:`WellMetadata.to_provenance`), which the writer turns into the layout again, never into an attribute.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import h5py
import numpy as np

from pdebench.core.trajectories import Trajectories
from pdebench.io.base import (
    JSON_ATTRS,
    LAYOUT_ATTR,
    PROVENANCE_PREFIX,
    VERSION_ATTR,
    AtomicHDF5Writer,
    BatchSchema,
    PathLike,
    decode_attr,
    encode_attrs,
    field_as_float32,
    layout_of,
    read_attrs,
    read_rows,
)

logger = logging.getLogger(__name__)

LAYOUT = "well"
"""Value of the layout tag (root attribute ``pdebench_layout``) of the Well files we write."""
FORMAT_VERSION = 1
"""Version of our additions to the layout (root attribute ``pdebench_format_version``)."""
WELL_PROVENANCE = "well"
"""Provenance key under which a Well file's own metadata is read (and from which the writer takes it)."""
FIELD_GROUPS = ("t0_fields", "t1_fields", "t2_fields")
BC_TYPES = ("PERIODIC", "WALL", "OPEN")
AXES = ("x", "y", "z")
SAMPLE_IDS_DATASET = "sample_ids"
FIELDS_ATTR = "pdebench_fields"
ROOT_ATTRS = ("dataset_name", "grid_type", "n_spatial_dims", "n_trajectories", "simulation_parameters")
_RESERVED_ATTRS = frozenset({*ROOT_ATTRS, LAYOUT_ATTR, VERSION_ATTR, "num_samples", JSON_ATTRS, FIELDS_ATTR})
_GROUPS = ("dimensions", "boundary_conditions", "scalars", *FIELD_GROUPS)


def _strings(values: Sequence[str]) -> np.ndarray:
    """A list of str as HDF5 stores it for The Well (variable-length strings; read back as str)."""
    return np.array(list(values), dtype=h5py.string_dtype())


def _names(value: Any) -> list[str]:
    """An attribute holding a list of names (or one name) -> list of str."""
    if isinstance(value, bytes | str | np.bytes_):
        return [decode_attr(value)]
    return [decode_attr(item) for item in np.asarray(value).reshape(-1)]


# --------------------------------------------------------------------------------------------------
# Metadata
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class TensorField:
    """A field whose channels are the components of a vector (``order=1``: ``D`` channels) or of a
    tensor (``order=2``: ``D²`` channels, row-major), stored in The Well's ``t1_fields``/``t2_fields``."""

    order: int = 1
    symmetric: bool = False
    antisymmetric: bool = False

    def __post_init__(self) -> None:
        if self.order not in (1, 2):
            raise ValueError(f"a tensor field has order 1 (vector) or 2 (tensor), got {self.order!r}")


@dataclass(frozen=True)
class WellMetadata:
    """What a Well file says beyond our :class:`~pdebench.core.trajectories.Trajectories`.

    Parameters
    ----------
    dataset_name
        Root attribute ``dataset_name`` (The Well reads a folder of files sharing it).
    grid_type
        ``"cartesian"`` (or ``"spherical"``).
    spatial_dims
        The Well's names of the spatial axes in order (``None``: our ``x``, ``y``, ``z``).
    boundaries
        Our axis name (``"x"``, ``"y"``, ``"z"``) -> boundary kind at both its ends, one of
        :data:`BC_TYPES` (any case); axes not named get no boundary group (The Well reads them as open).
    tensor_fields
        Field name -> :class:`TensorField` for the fields stored as vectors or tensors.
    """

    dataset_name: str
    grid_type: str = "cartesian"
    spatial_dims: tuple[str, ...] | None = None
    boundaries: dict[str, str] = field(default_factory=dict)
    tensor_fields: dict[str, TensorField] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not isinstance(self.dataset_name, str) or not self.dataset_name:
            raise ValueError(f"dataset_name must be a non-empty string, got {self.dataset_name!r}")
        for axis, kind in self.boundaries.items():
            if axis not in AXES:
                raise ValueError(f"boundary axis must be one of {AXES}, got {axis!r}")
            if str(kind).upper() not in BC_TYPES:
                raise ValueError(f"boundary of axis {axis!r} must be one of {BC_TYPES}, got {kind!r}")

    def to_provenance(self) -> dict[str, Any]:
        """This metadata as plain values (the ``provenance["well"]`` a Well file reads back with)."""
        return {
            "dataset_name": self.dataset_name,
            "grid_type": self.grid_type,
            "spatial_dims": list(self.spatial_dims) if self.spatial_dims is not None else None,
            "boundaries": {axis: kind.upper() for axis, kind in self.boundaries.items()},
            "tensor_fields": {name: {"order": t.order, "symmetric": t.symmetric, "antisymmetric": t.antisymmetric}
                              for name, t in self.tensor_fields.items()},
        }

    @classmethod
    def from_provenance(cls, value: Mapping[str, Any]) -> WellMetadata:
        """The inverse of :meth:`to_provenance` (``ValueError`` naming a bad entry)."""
        if not isinstance(value, Mapping) or "dataset_name" not in value:
            raise ValueError(f"provenance['{WELL_PROVENANCE}'] must be a mapping with a dataset_name, got {value!r}")
        dims = value.get("spatial_dims")
        return cls(
            dataset_name=str(value["dataset_name"]),
            grid_type=str(value.get("grid_type", "cartesian")),
            spatial_dims=tuple(dims) if dims is not None else None,
            boundaries=dict(value.get("boundaries") or {}),
            tensor_fields={name: TensorField(**spec) for name, spec in (value.get("tensor_fields") or {}).items()},
        )


# --------------------------------------------------------------------------------------------------
# Writer
# --------------------------------------------------------------------------------------------------


def _check_name(name: str, what: str) -> None:
    if not isinstance(name, str) or not name or "/" in name or name == ".":
        raise ValueError(f"{what} name {name!r} cannot be stored: it must be non-empty and without '/'")


class WellWriter(AtomicHDF5Writer):
    """Append batches of :class:`Trajectories` to a file in The Well's layout (module docstring),
    written atomically (:class:`~pdebench.io.base.AtomicHDF5Writer`).

    Parameters
    ----------
    path, overwrite, compression
        As for every writer (:class:`~pdebench.io.base.AtomicHDF5Writer`); the path should end in
        ``.h5`` or ``.hdf5`` (the only files The Well's reader lists).
    metadata
        Dataset name, axis names, boundaries and vector/tensor fields (:class:`WellMetadata`).
    chunk_rows
        Trajectories per HDF5 chunk (default about 1 MiB per chunk).
    provenance
        Extra provenance for the whole file, stored after the first batch's.
    allow_nonfinite
        Store NaN/inf values (refused by default, naming the sample ids).

    Notes
    -----
    Batches must agree on fields, shapes past ``N``, coordinates, parameters and the names of the
    per-sample parameters. Provenance is the first batch's (its ``"well"`` entry, what a Well file
    reads back with, is the layout itself and is not stored as provenance).
    """

    LAYOUT = LAYOUT
    FORMAT_VERSION = FORMAT_VERSION
    _noun = "trajectories"

    def __init__(
        self,
        path: PathLike,
        *,
        metadata: WellMetadata,
        overwrite: bool = False,
        compression: str | None = "gzip",
        chunk_rows: int | None = None,
        provenance: Mapping[str, Any] | None = None,
        allow_nonfinite: bool = False,
    ) -> None:
        if chunk_rows is not None and chunk_rows < 1:
            raise ValueError(f"chunk_rows must be a positive integer, got {chunk_rows!r}")
        if not isinstance(metadata, WellMetadata):
            raise TypeError(f"metadata must be a WellMetadata, got {type(metadata).__name__}")
        self.metadata = metadata
        self.chunk_rows = chunk_rows
        self.allow_nonfinite = allow_nonfinite
        self._extra_provenance = dict(provenance or {})
        self._open_temporary(path, overwrite, compression, rdcc_nbytes=16 << 20)
        self._datasets: list[tuple[h5py.Dataset, Callable[[Trajectories, dict[str, np.ndarray]], np.ndarray]]] = []
        self._entries: list[dict[str, Any]] = []
        self._sample_parameter_names: list[str] = []

    # -- writing -----------------------------------------------------------------------------------
    def append(self, traj: Trajectories, sample_parameters: Mapping[str, np.ndarray] | None = None) -> None:
        """Write the batch ``traj`` (fields ``(n, T, *space[, C])``) after the rows already written.

        Parameters
        ----------
        traj
            The batch.
        sample_parameters
            Name -> ``(n,)`` per-sample parameter values of the batch's rows (sample-varying scalars).

        Raises
        ------
        ValueError
            The batch disagrees with the first one, holds non-finite values, or does not fit the layout
            (no spatial axis, a vector field without ``D`` channels, a name that cannot be stored).
        """
        self._check_open()
        if not isinstance(traj, Trajectories):
            raise TypeError(f"append expects Trajectories, got {type(traj).__name__}")
        per_sample = {name: np.asarray(value, dtype=np.float32).reshape(-1) for name, value in (sample_parameters or {}).items()}
        for name, value in per_sample.items():
            if len(value) != traj.num_samples:
                raise ValueError(f"per-sample parameter {name!r} has {len(value)} values for {traj.num_samples} trajectories")
        if traj.num_samples == 0:
            return
        schema = BatchSchema(
            {name: tuple(value.shape[1:]) for name, value in traj.fields.items()},
            {"coordinate": {name: np.asarray(value) for name, value in traj.coords.items()}, "param": dict(traj.params),
             "per-sample parameter": {name: 0 for name in per_sample}},
        )
        if self._schema is None:
            self._create(traj, per_sample)
        else:
            self._schema.check(schema)
        self._check_finite(traj, per_sample)
        self._warn_repeated_ids(traj.sample_ids)
        if self._schema is None:
            self._schema = schema
            self._provenance = {k: v for k, v in traj.provenance.items() if k != WELL_PROVENANCE}
        start, stop = self._num_samples, self._num_samples + traj.num_samples
        for dataset, values in self._datasets:
            dataset.resize(stop, axis=0)
            dataset[start:stop] = values(traj, per_sample)
        self._num_samples = stop

    def _check_finite(self, traj: Trajectories, per_sample: dict[str, np.ndarray]) -> None:
        if self.allow_nonfinite:
            return
        bad = ~traj.all_finite()
        for value in per_sample.values():
            bad |= ~np.isfinite(value)
        if bad.any():
            ids = [tuple(map(int, row)) for row in traj.sample_ids[bad][:5]]
            raise ValueError(f"{int(bad.sum())} trajectories have non-finite values (first (seed, index): {ids}); "
                             f"not writing them to {self.path} (allow_nonfinite=True stores them)")

    def _rows(self, group: h5py.Group, name: str, row_shape: tuple[int, ...], dtype: str,
              values: Callable[[Trajectories, dict[str, np.ndarray]], np.ndarray], **attrs: Any) -> None:
        dataset = self._create_rows(group, name, row_shape, dtype, self.chunk_rows)
        for key, value in attrs.items():
            dataset.attrs[key] = value
        self._datasets.append((dataset, values))

    def _create(self, traj: Trajectories, per_sample: dict[str, np.ndarray]) -> None:
        """Check the first batch against the layout and create every group and dataset."""
        meta, file = self.metadata, self._file
        axes = traj.spatial_axes
        dim = len(axes)
        if dim == 0:
            raise ValueError(f"The Well's layout needs a grid: the trajectories have no spatial coordinate x, y or z "
                             f"(coordinates: {sorted(traj.coords)})")
        names = list(meta.spatial_dims) if meta.spatial_dims is not None else list(axes)
        if len(names) != dim or len(set(names)) != dim:
            raise ValueError(f"spatial_dims {names} must name the {dim} spatial axes {axes} once each")
        for name in names:
            _check_name(name, "spatial axis")
        unknown = sorted(set(meta.boundaries) - set(axes))
        if unknown:
            raise ValueError(f"boundaries name axes {unknown}; the trajectories have {axes}")
        unknown = sorted(set(meta.tensor_fields) - set(traj.fields))
        if unknown:
            raise ValueError(f"tensor_fields name {unknown}; the fields are {list(traj.fields)}")
        for name in traj.params:
            if name in _RESERVED_ATTRS or name.startswith(PROVENANCE_PREFIX):
                raise ValueError(f"param name {name!r} is reserved in The Well's layout (reserved: "
                                 f"{sorted(_RESERVED_ATTRS)} and '{PROVENANCE_PREFIX}*')")
        space = [len(traj.coords[axis]) for axis in axes]
        num_frames = traj.num_frames

        dims = file.create_group("dimensions")
        dims.attrs["spatial_dims"] = _strings(names)
        times = np.asarray(traj.coords["t"] if "t" in traj.coords else np.arange(num_frames), dtype=np.float32)
        dims.create_dataset("time", data=times, track_times=False).attrs["sample_varying"] = np.bool_(False)
        for name, axis in zip(names, axes, strict=True):
            coordinate = dims.create_dataset(name, data=np.asarray(traj.coords[axis], dtype=np.float32), track_times=False)
            coordinate.attrs["sample_varying"] = np.bool_(False)
            coordinate.attrs["time_varying"] = np.bool_(False)

        bcs = file.create_group("boundary_conditions")
        for axis, kind in meta.boundaries.items():
            name = names[axes.index(axis)]
            group = bcs.create_group(f"{name}_{kind.lower()}")
            group.attrs["associated_dims"] = _strings([name])
            group.attrs["associated_fields"] = _strings([])
            group.attrs["bc_type"] = kind.upper()
            group.attrs["sample_varying"] = np.bool_(False)
            group.attrs["time_varying"] = np.bool_(False)
            mask = np.zeros(space[axes.index(axis)], dtype=bool)
            mask[[0, -1]] = True
            group.create_dataset("mask", data=mask, track_times=False)

        scalars = file.create_group("scalars")
        constant = {name: value for name, value in traj.params.items() if name not in per_sample
                    and isinstance(value, int | float | np.integer | np.floating) and not isinstance(value, bool | np.bool_)}
        for name in [*constant, *per_sample]:
            _check_name(name, "parameter")
        for name, value in constant.items():
            dataset = scalars.create_dataset(name, data=np.float32(value), track_times=False)
            dataset.attrs["sample_varying"] = np.bool_(False)
            dataset.attrs["time_varying"] = np.bool_(False)
        for name in per_sample:
            self._rows(scalars, name, (), "f4", lambda _, p, name=name: p[name],
                       sample_varying=np.bool_(True), time_varying=np.bool_(False))
        scalars.attrs["field_names"] = _strings([*constant, *per_sample])
        self._sample_parameter_names = list(per_sample)

        groups = {order: file.create_group(group) for order, group in enumerate(FIELD_GROUPS)}
        members: dict[int, list[str]] = {0: [], 1: [], 2: []}
        flags = {"dim_varying": np.ones(dim, dtype=bool), "sample_varying": np.bool_(True), "time_varying": np.bool_(True)}
        for name, value in traj.fields.items():
            _check_name(name, "field")
            extra = value.ndim - 2 - dim
            if extra not in (0, 1) or list(value.shape[2 : 2 + dim]) != space:
                raise ValueError(f"field {name!r} has shape {tuple(value.shape)}; expected (N, T, {', '.join(map(str, space))}"
                                 f"[, C]) from coords {axes}")
            channels = int(value.shape[-1]) if extra else None
            tensor = meta.tensor_fields.get(name)
            if tensor is not None:
                if channels != dim**tensor.order:
                    raise ValueError(f"field {name!r} is named a {'vector' if tensor.order == 1 else 'tensor'} on {dim} axes: "
                                     f"it needs {dim**tensor.order} channels, it has {channels or 'none'}")
                row_shape = (num_frames, *space, *([dim] * tensor.order))
                extra_flags = {"symmetric": np.bool_(tensor.symmetric), "antisymmetric": np.bool_(tensor.antisymmetric)} if tensor.order == 2 else {}
                self._rows(groups[tensor.order], name, row_shape, "f4",
                           lambda t, _, name=name, shape=row_shape: field_as_float32(t.fields[name]).reshape(-1, *shape),
                           **flags, **extra_flags)
                members[tensor.order].append(name)
                self._entries.append({"name": name, "group": FIELD_GROUPS[tensor.order], "members": [name], "channels": True})
                continue
            parts = [name] if channels is None else [f"{name}_{c}" for c in range(channels)]
            for c, part in enumerate(parts):
                if part in members[0]:
                    raise ValueError(f"field {name!r} would be stored as t0 field {part!r}, which another field already is")
                pick = (lambda t, _, name=name: field_as_float32(t.fields[name])) if channels is None else (
                    lambda t, _, name=name, c=c: field_as_float32(t.fields[name][..., c]))
                self._rows(groups[0], part, (num_frames, *space), "f4", pick, **flags)
                members[0].append(part)
            self._entries.append({"name": name, "group": FIELD_GROUPS[0], "members": parts, "channels": channels is not None})
        for order, group in groups.items():
            group.attrs["field_names"] = _strings(members[order])
        self._rows(file, SAMPLE_IDS_DATASET, (2,), "i8", lambda t, _: t.sample_ids)

    def _write_attrs(self) -> None:
        attrs = self._file.attrs
        params = self._schema.values["param"]
        attrs["dataset_name"] = self.metadata.dataset_name
        attrs["grid_type"] = self.metadata.grid_type
        attrs["n_spatial_dims"] = np.int64(len(self._file["dimensions"].attrs["spatial_dims"]))
        attrs["n_trajectories"] = np.int64(self._num_samples)
        attrs["simulation_parameters"] = _strings(list(params))
        for name, value in encode_attrs(params, {**self._provenance, **self._extra_provenance}).items():
            attrs[name] = value
        attrs[FIELDS_ATTR] = json.dumps(self._entries)


# --------------------------------------------------------------------------------------------------
# Reader
# --------------------------------------------------------------------------------------------------


class FieldSource(NamedTuple):
    """A field as a Well file holds it: logical shape ``(N, T, *space[, C])``, a row reader
    (``rows -> (n, T, *space[, C])`` array) and bytes per value."""

    shape: tuple[int, ...]
    read: Callable[[slice | np.ndarray], np.ndarray]
    itemsize: int


@dataclass
class WellContents:
    """What :func:`read_layout` finds in a Well file (our :class:`Trajectories` view of it)."""

    sources: dict[str, FieldSource]
    coords: dict[str, np.ndarray]
    params: dict[str, Any]
    provenance: dict[str, Any]
    sample_ids: h5py.Dataset | None
    sample_parameters: dict[str, h5py.Dataset]


def is_well_layout(file: h5py.File) -> bool:
    """Whether ``file`` has The Well's layout (a ``dimensions`` group, ``n_spatial_dims`` and a
    ``t*_fields`` group; :func:`read_layout` checks the rest)."""
    return (isinstance(file.get("dimensions"), h5py.Group) and "n_spatial_dims" in file.attrs
            and any(isinstance(file.get(group), h5py.Group) for group in FIELD_GROUPS))


def _flag(attrs: h5py.AttributeManager, name: str, where: str) -> bool:
    if name not in attrs:
        raise ValueError(f"{where} has no {name!r} attribute (The Well's layout needs it)")
    return bool(np.asarray(attrs[name]).reshape(-1)[0]) if np.size(attrs[name]) else False


def _member_source(dataset: h5py.Dataset, order: int, num_rows: int, num_frames: int, space: list[int],
                   check: Callable[[h5py.Dataset, int], None]) -> FieldSource:
    """One Well field dataset as a ``(N, T, *space[, D**order])`` source (constant axes broadcast)."""
    where = f"{dataset.file.filename}: dataset {dataset.name!r}"
    sample_varying = _flag(dataset.attrs, "sample_varying", where)
    time_varying = _flag(dataset.attrs, "time_varying", where)
    dim_varying = [bool(v) for v in np.asarray(dataset.attrs["dim_varying"]).reshape(-1)] if "dim_varying" in dataset.attrs else None
    if dim_varying is None or len(dim_varying) != len(space):
        raise ValueError(f"{where}: 'dim_varying' must hold one bool per spatial axis ({len(space)}), got {dim_varying}")
    dim = len(space)
    stored = ([num_rows] if sample_varying else []) + ([num_frames] if time_varying else []) + \
        [n for n, varying in zip(space, dim_varying, strict=True) if varying] + [dim] * order
    check(dataset, len(stored))
    if list(dataset.shape) != stored:
        raise ValueError(f"{where} has shape {dataset.shape}; its flags (sample_varying={sample_varying}, "
                         f"time_varying={time_varying}, dim_varying={dim_varying}) need {tuple(stored)}")
    channels = [dim**order] if order else []

    def read(rows: slice | np.ndarray) -> np.ndarray:
        count = max(0, rows.stop - rows.start) if isinstance(rows, slice) else len(rows)
        values = read_rows(dataset, rows) if sample_varying else dataset[()][None]
        if not time_varying:
            values = values[:, None]
        for axis, varying in enumerate(dim_varying):
            if not varying:
                values = np.expand_dims(values, 2 + axis)
        full = (count, num_frames, *space, *([dim] * order))
        if values.shape != full:
            values = np.broadcast_to(values, full).copy()
        return values.reshape(count, num_frames, *space, *channels)

    itemsize = dataset.dtype.itemsize if dataset.dtype.kind in "fc" else 4
    return FieldSource((num_rows, num_frames, *space, *channels), read, itemsize)


def _stacked(parts: list[FieldSource]) -> FieldSource:
    """Several t0 sources as the channels of one field."""

    def read(rows: slice | np.ndarray) -> np.ndarray:
        return np.stack([part.read(rows) for part in parts], axis=-1)

    return FieldSource((*parts[0].shape, len(parts)), read, parts[0].itemsize)


def read_layout(file: h5py.File, check: Callable[[h5py.Dataset, int], None]) -> WellContents:
    """Our view of a Well file: its fields, coordinates, parameters, provenance and per-sample parameters.

    * t0 fields -> fields ``(N, T, *space)``; t1 fields -> fields with ``D`` channels; t2 fields ->
      ``D²`` channels (row-major); a field constant in samples, time or an axis is broadcast along it;
      our own files' fields come back as written (``pdebench_fields``);
    * ``dimensions`` -> coordinates ``t`` and, in axis order, ``x``, ``y``, ``z`` (whatever The Well names them);
    * ``simulation_parameters`` and constant scalars -> params; sample-varying scalars -> per-sample
      parameters; time-varying scalars are not read (logged);
    * ``provenance``: ours (``provenance.*``) for our files, ``{"source_layout": "well"}`` otherwise,
      with ``"well"``: :meth:`WellMetadata.to_provenance` of the file's name, grid, axes, boundaries
      and vector/tensor fields.

    Parameters
    ----------
    file
        The open HDF5 file (:func:`is_well_layout`).
    check
        ``check(dataset, min_ndim)``: the reader's check of every field dataset (refuses a dataset whose
        declared size is not stored).

    Raises
    ------
    ValueError
        A group or attribute the layout needs is missing, a dataset's shape disagrees with its flags,
        coordinates vary over samples or time, or our additions are newer than this reader.
    """
    where, attrs = file.filename, file.attrs
    missing = [f"attribute {name!r}" for name in ROOT_ATTRS if name not in attrs]
    missing += [f"group {name!r}" for name in _GROUPS if not isinstance(file.get(name), h5py.Group)]
    if missing:
        raise ValueError(f"{where}: not a complete Well file: no {', '.join(missing)}")
    ours = layout_of(attrs) == LAYOUT
    if ours and int(decode_attr(attrs.get(VERSION_ATTR, 0))) > FORMAT_VERSION:
        raise ValueError(f"{where} has Well-layout format version {decode_attr(attrs[VERSION_ATTR])}; "
                         f"this reader knows up to {FORMAT_VERSION}")
    dims = file["dimensions"]
    spatial = _names(dims.attrs.get("spatial_dims", []))
    dim = int(decode_attr(attrs["n_spatial_dims"]))
    if len(spatial) != dim or not 1 <= dim <= len(AXES):
        raise ValueError(f"{where}: dimensions/spatial_dims {spatial} must name n_spatial_dims = {dim} axes (1 to 3)")
    coords: dict[str, np.ndarray] = {}
    for axis, name in zip(AXES, spatial):
        coordinate = dims.get(name)
        if not isinstance(coordinate, h5py.Dataset):
            raise ValueError(f"{where}: no coordinate dataset dimensions/{name}")
        if _flag(coordinate.attrs, "sample_varying", f"{where}: dimensions/{name}") or \
                _flag(coordinate.attrs, "time_varying", f"{where}: dimensions/{name}"):
            raise ValueError(f"{where}: coordinate dimensions/{name} varies over samples or time; only fixed grids are read")
        coords[axis] = np.asarray(coordinate[()]).reshape(-1)
    space = [len(coords[axis]) for axis in AXES[:dim]]
    time = dims.get("time")
    if not isinstance(time, h5py.Dataset):
        raise ValueError(f"{where}: no dataset dimensions/time")
    num_frames, num_rows = int(time.shape[-1]), int(decode_attr(attrs["n_trajectories"]))
    times = np.asarray(time[()])
    if _flag(time.attrs, "sample_varying", f"{where}: dimensions/time") and times.ndim == 2:
        if not (times == times[:1]).all():
            logger.warning("%s: frame times differ between trajectories; dropping coordinate 't'", where)
            times = None
        else:
            times = times[0]
    coords = {**({"t": times.reshape(-1)} if times is not None else {}), **coords}

    members: dict[tuple[str, str], FieldSource] = {}
    tensor_fields: dict[str, TensorField] = {}
    for order, group_name in enumerate(FIELD_GROUPS):
        group = file[group_name]
        for name in _names(group.attrs.get("field_names", [])):
            dataset = group.get(name)
            if not isinstance(dataset, h5py.Dataset):
                raise ValueError(f"{where}: {group_name} lists field {name!r} but holds no such dataset")
            members[(group_name, name)] = _member_source(dataset, order, num_rows, num_frames, space, check)
            if order:
                tensor_fields[name] = TensorField(order, bool(decode_attr(dataset.attrs.get("symmetric", False))),
                                                  bool(decode_attr(dataset.attrs.get("antisymmetric", False))))
    sources: dict[str, FieldSource] = {}
    if ours and FIELDS_ATTR in attrs:
        for entry in json.loads(decode_attr(attrs[FIELDS_ATTR])):
            parts = [members[(entry["group"], member)] for member in entry["members"]]
            grouped = entry["group"] == FIELD_GROUPS[0] and entry["channels"]
            sources[entry["name"]] = _stacked(parts) if grouped else parts[0]
    else:
        for (group_name, name), source in members.items():
            if name in sources:
                raise ValueError(f"{where}: field {name!r} is in more than one of {FIELD_GROUPS}")
            sources[name] = source
    if not sources:
        raise ValueError(f"{where}: the Well file holds no field (t0_fields, t1_fields and t2_fields are empty)")

    json_names = set(json.loads(decode_attr(attrs[JSON_ATTRS]))) if JSON_ATTRS in attrs else set()
    params = {name: decode_attr(attrs[name], is_json=name in json_names)
              for name in _names(attrs["simulation_parameters"]) if name in attrs}
    sample_parameters: dict[str, h5py.Dataset] = {}
    scalars = file["scalars"]
    for name in _names(scalars.attrs.get("field_names", [])):
        dataset = scalars.get(name)
        if not isinstance(dataset, h5py.Dataset):
            raise ValueError(f"{where}: scalars lists {name!r} but holds no such dataset")
        label = f"{where}: scalars/{name}"
        sample_varying, time_varying = _flag(dataset.attrs, "sample_varying", label), _flag(dataset.attrs, "time_varying", label)
        if time_varying:
            logger.info("%s: time-varying scalar %r is not read", where, name)
        elif sample_varying:
            if dataset.shape != (num_rows,):
                raise ValueError(f"{label} has shape {dataset.shape}; a per-sample scalar needs ({num_rows},)")
            sample_parameters[name] = dataset
        elif name not in params:
            params[name] = decode_attr(dataset[()])

    boundaries: dict[str, str] = {}
    for name, group in file["boundary_conditions"].items():
        associated = _names(group.attrs.get("associated_dims", []))
        if len(associated) == 1 and associated[0] in spatial and "bc_type" in group.attrs:
            boundaries[AXES[spatial.index(associated[0])]] = str(decode_attr(group.attrs["bc_type"])).upper()
        else:
            logger.info("%s: boundary %r (associated_dims %s) is not one axis; not read", where, name, associated)
    metadata = WellMetadata(
        dataset_name=str(decode_attr(attrs["dataset_name"])),
        grid_type=str(decode_attr(attrs["grid_type"])),
        spatial_dims=None if spatial == list(AXES[:dim]) else tuple(spatial),
        boundaries={axis: kind for axis, kind in boundaries.items() if kind in BC_TYPES},
        tensor_fields={name: tensor for name, tensor in tensor_fields.items() if name in sources},
    )
    provenance = read_attrs(attrs, _RESERVED_ATTRS)[1] if ours else {"source_layout": LAYOUT}
    provenance[WELL_PROVENANCE] = metadata.to_provenance()
    ids = file.get(SAMPLE_IDS_DATASET)
    ids = ids if isinstance(ids, h5py.Dataset) and ids.shape == (num_rows, 2) else None
    if ids is not None:
        check(ids, 2)
    return WellContents(sources, coords, params, provenance, ids, sample_parameters)
