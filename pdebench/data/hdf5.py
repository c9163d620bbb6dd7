"""HDF5 files of trajectories: an atomic streaming writer and a PDEBench-compatible reader.

Files written here follow PDEBench's layout, so PDEBench's own loaders read them:

* one field  -> dataset ``tensor`` of shape ``(N, T, *space[, C])``;
* several fields -> one dataset per field name (``density``, ``Vx``, ...), each ``(N, T, *space[, C])``;
  a Darcy pair ``{"nu", "tensor"}`` with ``T == 1`` stores ``nu`` as ``(N, *space)`` as PDEBench does;
* coordinates -> 1-D datasets ``x-coordinate``, ``y-coordinate``, ``z-coordinate``, ``t-coordinate``;
* ``sample_ids`` -> ``(N, 2)`` int64 ``(seed, index)``;
* equation parameters -> root attributes under their own names (``nu``, ``beta``);
* provenance -> root attributes named ``provenance.<key>``;
* bookkeeping -> root attributes ``pdebench_format_version``, ``num_samples``, ``field_names`` (JSON list).

Fields are stored as float32, chunked along ``N`` and compressed. :class:`TrajectoryWriter` writes to a
temporary file in the destination folder and moves it into place only when the ``with`` block ends
without an exception (flush, fsync, :func:`os.replace`, fsync of the folder), so a crash or a kill never
leaves a half-written file under the final name.

:class:`TrajectoryFile` (lazy) and :func:`read_trajectories` (eager) read these files and PDEBench's
published layouts unchanged; see :data:`LAYOUTS`.
"""

from __future__ import annotations

from abc import ABC, abstractmethod

import json
import logging
import math
import os
import shutil
import weakref
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import torch

from pdebench.atomic import fsync_folder, temporary_path
from pdebench.core.trajectories import Trajectories

logger = logging.getLogger(__name__)

PathLike = str | os.PathLike[str]
Rows = int | slice | Sequence[int] | np.ndarray | None

FORMAT_VERSION = 1
"""Version of the layout written by :class:`TrajectoryWriter` (root attribute ``pdebench_format_version``)."""

SINGLE_FIELD_DATASET = "tensor"
SAMPLE_IDS_DATASET = "sample_ids"
COORD_SUFFIX = "-coordinate"
PROVENANCE_PREFIX = "provenance."
CFD_FIELDS = ("density", "pressure", "Vx", "Vy", "Vz")
_RESERVED_ATTRS = frozenset(
    {"pdebench_format_version", "num_samples", "field_names", "json_attrs", "squeezed_fields"}
)
_COMPRESSIONS = ("gzip", "lzf", None)
_CHUNK_TARGET_BYTES = 1 << 20
_MAX_CHUNK_ROWS = 4096

LAYOUTS: dict[str, str] = {
    "native": "written by TrajectoryWriter (root attribute 'pdebench_format_version')",
    "darcy": "PDEBench Darcy: 'nu' (N, X, Y) input and 'tensor' (N, 1, X, Y) output",
    "tensor": "PDEBench single field: 'tensor' (N, T, X[, Y]) with 'x-coordinate', 't-coordinate', ...",
    "multi_field": "PDEBench CFD: one dataset per field (density, pressure, Vx, Vy[, Vz]), each (N, T, X[, Y])",
    "seed_groups": "PDEBench per-seed groups: '0000'/data (T, X[, Y], C) with '0000'/grid/x|y|t",
}
"""Layouts :class:`TrajectoryFile` recognises, in the order it tries them."""


# --------------------------------------------------------------------------------------------------
# Atomic file helpers (shared with :mod:`pdebench.data.export`)
# --------------------------------------------------------------------------------------------------


def check_destination(path: Path, overwrite: bool) -> None:
    """Fail early, naming ``path``, if a file cannot be written there.

    Raises
    ------
    FileExistsError
        ``path`` exists and ``overwrite`` is false.
    IsADirectoryError
        ``path`` is a folder.
    FileNotFoundError
        The folder that should hold ``path`` does not exist.
    PermissionError
        That folder is not writable.
    """
    if path.is_dir():
        raise IsADirectoryError(f"{path} is a folder; expected the path of a file to write")
    if path.exists() and not overwrite:
        raise FileExistsError(f"{path} already exists; pass --overwrite (overwrite=True) to replace it")
    folder = path.parent
    if not folder.is_dir():
        raise FileNotFoundError(f"cannot write {path}: folder {folder} does not exist")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise PermissionError(f"cannot write {path}: folder {folder} is not writable")


def check_free_disk(folder: Path, needed_bytes: int, what: str) -> None:
    """Refuse, in one line, to write about ``needed_bytes`` into ``folder`` when the disk lacks the room.

    Parameters
    ----------
    folder
        The folder the output goes to (its filesystem is the one checked).
    needed_bytes
        Estimated size of the output in bytes.
    what
        What would be written, for the message (``"the export to out.h5"``).

    Raises
    ------
    ValueError
        ``"{what} needs about X GiB, Y GiB free on FOLDER"`` when ``needed_bytes`` exceeds the free space.
    """
    free = shutil.disk_usage(folder).free
    if needed_bytes > free:
        raise ValueError(f"{what} needs about {_gib(needed_bytes)} GiB, {_gib(free)} GiB free on {folder}")


def _gib(num_bytes: int) -> str:
    """``num_bytes`` in GiB, three significant digits, never in exponent notation (``0.00098``, ``12.3``, ``1,192``)."""
    gib = num_bytes / 2**30
    return np.format_float_positional(gib, precision=3, fractional=False, trim="-") if gib < 100 else f"{gib:,.0f}"


def _fsync_file(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def commit_file(tmp_path: Path, path: Path, *, overwrite: bool) -> None:
    """Move the finished ``tmp_path`` to ``path`` durably: fsync file, rename, fsync folder.

    Without ``overwrite`` the move never replaces a file that appeared meanwhile (hard link, then
    unlink; plain existence check where links are unsupported); the data then stays in ``tmp_path``.

    Raises
    ------
    FileExistsError
        ``path`` appeared while writing and ``overwrite`` is false (``tmp_path`` is kept).
    """
    _fsync_file(tmp_path)
    if overwrite:
        os.replace(tmp_path, path)
    else:
        _move_no_clobber(tmp_path, path)
    fsync_folder(path.parent)


def _move_no_clobber(tmp_path: Path, path: Path) -> None:
    message = f"{path} appeared while it was being written; the new data is kept in {tmp_path}"
    try:
        os.link(tmp_path, path)
    except FileExistsError:
        raise FileExistsError(message) from None
    except OSError:  # filesystem without hard links
        if path.exists():
            raise FileExistsError(message) from None
        os.replace(tmp_path, path)
        return
    os.unlink(tmp_path)


def _discard(file: h5py.File | None, tmp_path: Path) -> None:
    """Close ``file`` (if open) and delete ``tmp_path``; never raises."""
    if file is not None:
        try:
            file.close()
        except Exception:  # noqa: BLE001 - best effort while cleaning up
            logger.debug("closing %s failed", tmp_path, exc_info=True)
    try:
        os.unlink(tmp_path)
    except FileNotFoundError:
        pass
    except OSError:
        logger.warning("could not delete temporary file %s", tmp_path, exc_info=True)


# --------------------------------------------------------------------------------------------------
# Attributes
# --------------------------------------------------------------------------------------------------


def _encode_attr(value: Any) -> tuple[Any, bool]:
    """Return ``(stored value, stored as JSON)`` for an HDF5 attribute."""
    if isinstance(value, bool | np.bool_):
        return np.bool_(value), False
    if isinstance(value, str):
        return str(value), False  # plain str: h5py cannot store str subclasses such as TorchVersion
    if isinstance(value, int | float | np.integer | np.floating):
        return value, False
    if isinstance(value, np.ndarray) and value.dtype.kind in "biuf":
        return value, False
    return json.dumps(value, default=str), True


def _decode_attr(value: Any, *, is_json: bool = False) -> Any:
    """HDF5 attribute value -> plain Python value (scalar, str, list)."""
    if isinstance(value, bytes | np.bytes_):
        value = value.decode("utf-8", errors="replace")
    if is_json and isinstance(value, str):
        return json.loads(value)
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.item() if value.size == 1 and value.ndim <= 1 else value.tolist()
    return value


def _json_attr_names(attrs: h5py.AttributeManager) -> set[str]:
    raw = attrs.get("json_attrs")
    return set(json.loads(_decode_attr(raw))) if raw is not None else set()


def _same_value(a: Any, b: Any) -> bool:
    try:
        return bool(np.array_equal(np.asarray(a), np.asarray(b), equal_nan=True))
    except TypeError:  # non-numeric arrays
        return bool(np.array_equal(np.asarray(a), np.asarray(b)))


# --------------------------------------------------------------------------------------------------
# Writer
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Schema:
    """What every batch of one file must agree on (taken from the first batch)."""

    field_names: tuple[str, ...]
    row_shapes: dict[str, tuple[int, ...]]
    coords: dict[str, np.ndarray]
    params: dict[str, Any]

    @classmethod
    def of(cls, traj: Trajectories) -> _Schema:
        return cls(
            field_names=tuple(traj.fields),
            row_shapes={name: tuple(value.shape[1:]) for name, value in traj.fields.items()},
            coords={name: np.asarray(value) for name, value in traj.coords.items()},
            params=dict(traj.params),
        )

    def check(self, traj: Trajectories) -> None:
        """Raise ``ValueError`` naming the first difference between ``traj`` and this schema."""
        if set(traj.fields) != set(self.field_names):
            raise ValueError(f"batch has fields {sorted(traj.fields)}; the file has {sorted(self.field_names)}")
        for name, value in traj.fields.items():
            if tuple(value.shape[1:]) != self.row_shapes[name]:
                raise ValueError(
                    f"field {name!r}: batch rows have shape {tuple(value.shape[1:])}, "
                    f"the file has {self.row_shapes[name]} (shape past N)"
                )
        if set(traj.coords) != set(self.coords):
            raise ValueError(f"batch has coords {sorted(traj.coords)}; the file has {sorted(self.coords)}")
        for name, value in traj.coords.items():
            if not _same_value(value, self.coords[name]):
                raise ValueError(f"coordinate {name!r} differs from the file's (first batch's) values")
        if set(traj.params) != set(self.params):
            raise ValueError(f"batch has params {sorted(traj.params)}; the file has {sorted(self.params)}")
        for name, value in traj.params.items():
            if not _same_value(value, self.params[name]):
                raise ValueError(f"param {name!r} = {value!r} differs from the file's {self.params[name]!r}")


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


def _field_as_float32(value: torch.Tensor | np.ndarray) -> np.ndarray:
    """Any real tensor/array ``(N, ...)`` -> float32 numpy array ``(N, ...)`` on the CPU."""
    tensor = torch.as_tensor(value)
    if tensor.is_complex():
        raise ValueError("complex fields cannot be stored; split them into real and imaginary fields")
    return tensor.detach().to(device="cpu", dtype=torch.float32).numpy()


def _chunk_shape(row_shape: tuple[int, ...], chunk_rows: int | None, itemsize: int = 4) -> tuple[int, ...]:
    """Chunk of a ``(None, *row_shape)`` dataset: ``chunk_rows`` rows, or about 1 MiB.

    A row larger than the target is split along its first axis (time) instead.
    """
    row_shape = tuple(max(1, size) for size in row_shape)
    if chunk_rows is not None:
        return (chunk_rows, *row_shape)
    row_bytes = math.prod(row_shape) * itemsize
    if row_bytes <= _CHUNK_TARGET_BYTES or not row_shape:
        return (int(min(_MAX_CHUNK_ROWS, max(1, _CHUNK_TARGET_BYTES // row_bytes))), *row_shape)
    frame_bytes = math.prod(row_shape[1:]) * itemsize
    frames = int(min(row_shape[0], max(1, _CHUNK_TARGET_BYTES // frame_bytes)))
    return (1, frames, *row_shape[1:])


class AtomicHDF5Writer(ABC):
    """Base of the streaming HDF5 writers: the file is written beside its destination and appears
    under :attr:`path` only when :meth:`close` completes (flush, fsync, rename, fsync of the folder);
    on an exception in a ``with`` block, :meth:`abort`, or garbage collection the temporary file is
    deleted and :attr:`path` is untouched.

    Subclasses call :meth:`_open_temporary` first in ``__init__``, set ``self._schema`` once something
    was appended, and implement :meth:`_write_attrs` (called just before the file is finished) and
    :meth:`_written_message`.
    """

    path: Path
    overwrite: bool
    _noun = "samples"

    def _open_temporary(self, path: PathLike, overwrite: bool, **h5_options: Any) -> None:
        self.path = Path(path)
        self.overwrite = overwrite
        check_destination(self.path, overwrite)
        self.temp_path = temporary_path(self.path)
        try:
            self._file: h5py.File = h5py.File(self.temp_path, "x", **h5_options)
        except OSError as exc:
            raise PermissionError(
                f"cannot write {self.path}: creating temporary file {self.temp_path} failed ({exc})"
            ) from exc
        self._finalizer = weakref.finalize(self, _discard, self._file, self.temp_path)
        self._schema: Any = None
        self._num_samples = 0
        self._closed = False

    # -- context manager ---------------------------------------------------------------------------
    def __enter__(self):
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: Any) -> None:
        if exc_type is None:
            self.close()
        else:
            logger.warning("discarding %s after %s: %s", self.path, exc_type.__name__, exc)
            self.abort()

    @property
    def num_samples(self) -> int:
        """Samples appended so far."""
        return self._num_samples

    @property
    def closed(self) -> bool:
        """Whether :meth:`close` or :meth:`abort` has run."""
        return self._closed

    # -- finishing ---------------------------------------------------------------------------------
    @abstractmethod
    def _write_attrs(self) -> None:
        """Write the file's attributes (layout, names, provenance) just before it is finished."""

    def _written_message(self) -> str:
        return f"wrote {self._num_samples} {self._noun} to {self.path}"

    def close(self) -> None:
        """Finish the file and move it to :attr:`path` (idempotent).

        Raises
        ------
        ValueError
            Nothing was appended (nothing is written).
        FileExistsError
            Without ``overwrite``, :attr:`path` appeared meanwhile; the data stays in :attr:`temp_path`.
        """
        if self._closed:
            return
        if self._schema is None:
            self.abort()
            raise ValueError(f"no {self._noun} were appended; {self.path} was not written")
        try:
            self._write_attrs()
            self._file.flush()
            self._file.close()
            commit_file(self.temp_path, self.path, overwrite=self.overwrite)
        except FileExistsError:
            self._closed = True
            self._finalizer.detach()
            raise
        except BaseException:
            self.abort()
            raise
        self._closed = True
        self._finalizer.detach()
        logger.info("%s", self._written_message())

    def abort(self) -> None:
        """Discard everything written: close and delete the temporary file; :attr:`path` is untouched."""
        self._closed = True
        self._finalizer()


class TrajectoryWriter(AtomicHDF5Writer):
    """Append batches of :class:`Trajectories` to an HDF5 file, written atomically.

    The destination is checked in the constructor (before any solve), a temporary file is created
    next to it, each :meth:`append` writes its batch through to that file (memory holds one batch at a
    time), and :meth:`close` (the end of a ``with`` block without an exception) writes the final
    attributes, fsyncs and moves the file into place. On an exception in the ``with`` block, or on
    :meth:`abort`, the temporary file is deleted and ``path`` is left untouched.

    Parameters
    ----------
    path
        Destination ``.h5`` file. Its folder must exist and be writable.
    overwrite
        Replace an existing ``path`` on success. Without it an existing file is an error, raised here.
    compression
        ``"gzip"`` (level 4, with the shuffle filter), ``"lzf"`` or ``None``.
    chunk_rows
        Rows (trajectories) per HDF5 chunk. Default: about 1 MiB per chunk; a single row larger than
        that is chunked along time instead.
    provenance
        Extra provenance for the whole file (command, git revision, ...), stored after the batches'.
    allow_nonfinite
        Store trajectories with NaN/inf values. By default such a batch raises ``ValueError`` naming
        the sample ids, since a blown-up solve must never be written silently.

    Raises
    ------
    FileExistsError, FileNotFoundError, IsADirectoryError, PermissionError
        From the constructor, naming ``path``, when it cannot be written.

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
        if compression not in _COMPRESSIONS:
            raise ValueError(f"compression must be one of {_COMPRESSIONS}, got {compression!r}")
        if chunk_rows is not None and chunk_rows < 1:
            raise ValueError(f"chunk_rows must be a positive integer, got {chunk_rows!r}")
        self.compression = compression
        self.chunk_rows = chunk_rows
        self.allow_nonfinite = allow_nonfinite
        self._extra_provenance = dict(provenance or {})
        self._open_temporary(path, overwrite, rdcc_nbytes=16 << 20)
        self._squeezed: set[str] = set()
        self._datasets: dict[str, h5py.Dataset] = {}
        self._provenance: dict[str, Any] = {}
        self._seen_ids: set[tuple[int, int]] = set()
        logger.debug("writing %s through %s", self.path, self.temp_path)

    # -- writing -----------------------------------------------------------------------------------
    def append(self, traj: Trajectories) -> None:
        """Write the batch ``traj`` (fields ``(n, T, *space[, C])``) after the rows already written.

        Raises
        ------
        ValueError
            The batch disagrees with the first one, or holds non-finite values.
        """
        if self._closed:
            raise ValueError(f"writer for {self.path} is closed")
        if not isinstance(traj, Trajectories):
            raise TypeError(f"append expects Trajectories, got {type(traj).__name__}")
        if traj.num_samples == 0:
            return
        if self._schema is None:
            _validate_first_batch(traj)
            schema = _Schema.of(traj)
        else:
            self._schema.check(traj)
            schema = self._schema
        self._check_finite(traj)
        self._check_ids(traj.sample_ids)
        if self._schema is None:
            self._create_datasets(traj)
            self._schema = schema
        start, stop = self._num_samples, self._num_samples + traj.num_samples
        for name, dataset in self._datasets.items():
            values = traj.sample_ids if name == SAMPLE_IDS_DATASET else _field_as_float32(traj.fields[name])
            if name in self._squeezed:
                values = values[:, 0]
            dataset.resize(stop, axis=0)
            dataset[start:stop] = values
        self._num_samples = stop
        self._merge_provenance(traj.provenance)
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

    def _check_ids(self, sample_ids: np.ndarray) -> None:
        ids = [tuple(map(int, row)) for row in sample_ids]
        repeated = [i for i in ids if i in self._seen_ids]
        if repeated or len(set(ids)) != len(ids):
            logger.warning("%s: repeated sample ids (seed, index), e.g. %s", self.path, (repeated or ids)[:3])
        self._seen_ids.update(ids)

    def _create_datasets(self, traj: Trajectories) -> None:
        multi = len(traj.fields) > 1
        if _is_darcy_pair(traj):
            self._squeezed = {"nu"}
        for name, value in traj.fields.items():
            row_shape = tuple(value.shape[1:])
            if name in self._squeezed:
                row_shape = row_shape[1:]
            key = name if multi else SINGLE_FIELD_DATASET
            self._datasets[name] = self._create(key, row_shape, "f4", self.chunk_rows)
        self._datasets[SAMPLE_IDS_DATASET] = self._create(SAMPLE_IDS_DATASET, (2,), "i8", None)
        for name, value in traj.coords.items():
            self._file.create_dataset(f"{name}{COORD_SUFFIX}", data=np.asarray(value), track_times=False)

    def _create(self, key: str, row_shape: tuple[int, ...], dtype: str, chunk_rows: int | None) -> h5py.Dataset:
        return self._file.create_dataset(
            key,
            shape=(0, *row_shape),
            maxshape=(None, *row_shape),
            dtype=dtype,
            chunks=_chunk_shape(row_shape, chunk_rows, np.dtype(dtype).itemsize),
            compression=self.compression,
            compression_opts=4 if self.compression == "gzip" else None,
            shuffle=self.compression is not None,
            track_times=False,
        )

    def _merge_provenance(self, provenance: dict[str, Any]) -> None:
        for key, value in provenance.items():
            if key not in self._provenance:
                self._provenance[key] = value
            elif key.startswith("wall_time") and isinstance(value, int | float) and not isinstance(value, bool):
                self._provenance[key] += value
            elif not _same_value(value, self._provenance[key]):
                logger.debug("provenance %r: keeping first batch's %r, ignoring %r", key, self._provenance[key], value)

    def _write_attrs(self) -> None:
        assert self._schema is not None
        attrs = self._file.attrs
        json_names: list[str] = []
        entries = dict(self._schema.params)
        provenance = {**self._provenance, **self._extra_provenance}
        entries.update({f"{PROVENANCE_PREFIX}{key}": value for key, value in provenance.items()})
        for name, value in entries.items():
            attrs[name], is_json = _encode_attr(value)
            if is_json:
                json_names.append(name)
        attrs["field_names"] = json.dumps(list(self._schema.field_names))
        attrs["json_attrs"] = json.dumps(json_names)
        attrs["squeezed_fields"] = json.dumps(sorted(self._squeezed))
        attrs["num_samples"] = np.int64(self._num_samples)
        attrs["pdebench_format_version"] = np.int64(FORMAT_VERSION)


# --------------------------------------------------------------------------------------------------
# Reader
# --------------------------------------------------------------------------------------------------


def _normalize_rows(rows: Rows, n: int) -> slice | np.ndarray:
    """Rows of an ``N = n`` file as a unit-step slice or a 1-D int64 index array."""
    if rows is None:
        return slice(0, n)
    if isinstance(rows, int | np.integer):
        index = int(rows) + (n if rows < 0 else 0)
        if not 0 <= index < n:
            raise IndexError(f"row {rows} is out of range for {n} trajectories")
        return slice(index, index + 1)
    if isinstance(rows, slice):
        start, stop, step = rows.indices(n)
        return slice(start, max(start, stop)) if step == 1 else np.arange(start, stop, step, dtype=np.int64)
    array = np.asarray(rows)
    if array.dtype == bool:
        if array.shape != (n,):
            raise IndexError(f"boolean rows must have shape ({n},), got {array.shape}")
        return np.flatnonzero(array)
    if array.size and array.dtype.kind not in "iu":
        raise TypeError(f"rows must be integers, a slice or a boolean mask, got dtype {array.dtype}")
    array = array.astype(np.int64).reshape(-1)
    array = np.where(array < 0, array + n, array)
    if array.size and (array.min() < 0 or array.max() >= n):
        raise IndexError(f"rows {rows!r} out of range for {n} trajectories")
    return array


def _read_rows(dataset: h5py.Dataset, rows: slice | np.ndarray) -> np.ndarray:
    """``dataset[rows]`` for any order/repeats of rows (HDF5 wants increasing unique indices)."""
    if isinstance(rows, slice):
        if rows.stop <= rows.start:
            return np.empty((0, *dataset.shape[1:]), dtype=dataset.dtype)
        return dataset[rows]
    if rows.size == 0:
        return np.empty((0, *dataset.shape[1:]), dtype=dataset.dtype)
    unique, inverse = np.unique(rows, return_inverse=True)
    first, last = int(unique[0]), int(unique[-1])
    if last - first + 1 <= 2 * len(unique):  # dense enough: one contiguous read
        return dataset[first : last + 1][unique - first][inverse]
    return dataset[unique][inverse]


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
        return _Source(tuple(dataset.shape), lambda rows: _read_rows(dataset, rows), itemsize)
    shape = (dataset.shape[0], 1, *dataset.shape[1:])
    return _Source(shape, lambda rows: _read_rows(dataset, rows)[:, None], itemsize)


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
    sample_ids: h5py.Dataset | None = None


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


def _order_coords(coords: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    first = [name for name in ("x", "y", "z", "t") if name in coords]
    return {name: coords[name] for name in first + sorted(set(coords) - set(first))}


def _root_coords(file: h5py.File, num_frames: int) -> dict[str, np.ndarray]:
    coords = {}
    for key, item in file.items():
        if key.endswith(COORD_SUFFIX) and isinstance(item, h5py.Dataset):
            coords[key[: -len(COORD_SUFFIX)]] = np.asarray(item[()]).reshape(-1)
    if "t" in coords:
        t = _time_coordinate(coords.pop("t"), num_frames, f"{file.filename}:t-coordinate")
        if t is not None:
            coords["t"] = t
    return _order_coords(coords)


def _plain_attrs(attrs: h5py.AttributeManager) -> dict[str, Any]:
    return {name: _decode_attr(value) for name, value in attrs.items()}


def _root_datasets(file: h5py.File) -> dict[str, h5py.Dataset]:
    return {key: item for key, item in file.items() if isinstance(item, h5py.Dataset)}


def _open_native(file: h5py.File) -> _Contents:
    version = int(_decode_attr(file.attrs["pdebench_format_version"]))
    if version > FORMAT_VERSION:
        raise ValueError(f"{file.filename} has format version {version}; this reader knows up to {FORMAT_VERSION}")
    names = json.loads(_decode_attr(file.attrs["field_names"]))
    squeezed = set(json.loads(_decode_attr(file.attrs.get("squeezed_fields", "[]"))))
    keys = {name: (name if len(names) > 1 else SINGLE_FIELD_DATASET) for name in names}
    sources = {name: _dataset_source(file[keys[name]], add_time_axis=name in squeezed) for name in names}
    json_names = _json_attr_names(file.attrs)
    params: dict[str, Any] = {}
    provenance: dict[str, Any] = {}
    for name, value in file.attrs.items():
        if name in _RESERVED_ATTRS:
            continue
        decoded = _decode_attr(value, is_json=name in json_names)
        if name.startswith(PROVENANCE_PREFIX):
            provenance[name[len(PROVENANCE_PREFIX) :]] = decoded
        else:
            params[name] = decoded
    num_frames = next(iter(sources.values())).shape[1]
    coords = _root_coords(file, num_frames)
    return _Contents("native", sources, coords, params, provenance, _sample_ids_dataset(file, next(iter(sources.values())).shape[0]))


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
    if "t" in coords:
        t = _time_coordinate(coords.pop("t"), shape[0], f"{file.filename}:{names[0]}/grid/t")
        if t is not None:
            coords["t"] = t
    return _Contents(
        "seed_groups",
        {"data": _stacked_source(datasets)},
        _order_coords(coords),
        _plain_attrs(file.attrs),
        {"source_layout": "seed_groups"},
    )


_DETECTORS: list[tuple[str, Callable[[h5py.File], bool], Callable[[h5py.File], _Contents]]] = [
    ("native", lambda f: "pdebench_format_version" in f.attrs, _open_native),
    ("darcy", _is_darcy, _open_darcy),
    ("tensor", _is_tensor, _open_tensor),
    ("multi_field", _is_multi_field, _open_multi_field),
    ("seed_groups", lambda f: bool(_seed_groups(f)), _open_seed_groups),
]


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


class TrajectoryFile:
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

    Root attributes become ``params`` (for our files, ``provenance.*`` attributes become
    ``provenance``). Files without ``sample_ids`` get ids ``(seed=-1, index=row)``.

    Parameters
    ----------
    path
        The HDF5 file.
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

    def __init__(self, path: PathLike, *, fields: Sequence[str] | None = None) -> None:
        self.path = Path(path)
        self._field_filter = list(fields) if fields is not None else None
        if not self.path.exists():
            raise FileNotFoundError(f"no such trajectory file: {self.path}")
        if self.path.is_dir() or not h5py.is_hdf5(self.path):
            raise ValueError(f"{self.path} is not an HDF5 file")
        with _unreadable(self.path):
            self._file = h5py.File(self.path, "r")
        try:
            with _unreadable(self.path):
                self._contents = _detect(self._file, self.path)
            self._sources = self._select_sources(self._field_filter)
        except BaseException:
            self._file.close()
            raise

    @classmethod
    def open(cls, path: PathLike, *, fields: Sequence[str] | None = None) -> TrajectoryFile:
        """Same as ``TrajectoryFile(path, fields=fields)``."""
        return cls(path, fields=fields)

    def _select_sources(self, fields: Sequence[str] | None) -> dict[str, _Source]:
        sources = self._contents.sources
        if fields is None:
            return dict(sources)
        unknown = [name for name in fields if name not in sources]
        if unknown:
            raise ValueError(f"{self.path}: no field(s) {unknown}; fields are {list(sources)}")
        return {name: sources[name] for name in fields}

    # -- lifetime ----------------------------------------------------------------------------------
    def close(self) -> None:
        """Close the underlying HDF5 file."""
        self._file.close()

    def __enter__(self) -> TrajectoryFile:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def __getstate__(self) -> dict[str, Any]:
        """Pickle by path (DataLoader workers reopen the file in their own process)."""
        return {"path": self.path, "fields": self._field_filter}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(state["path"], fields=state["fields"])  # type: ignore[misc]

    def __repr__(self) -> str:
        return f"TrajectoryFile({str(self.path)!r}, layout={self.layout!r}, N={len(self)}, fields={self.fields})"

    # -- metadata ----------------------------------------------------------------------------------
    def __len__(self) -> int:
        return int(next(iter(self._contents.sources.values())).shape[0])

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

    @property
    def params(self) -> dict[str, Any]:
        """Equation parameters (root attributes)."""
        return dict(self._contents.params)

    @property
    def provenance(self) -> dict[str, Any]:
        """Provenance (``provenance.*`` attributes; ``{"source_layout": ...}`` for PDEBench files)."""
        return dict(self._contents.provenance)

    def sample_ids(self, rows: Rows = None) -> np.ndarray:
        """``(n, 2)`` int64 ``(seed, index)`` of ``rows``; ``(-1, row)`` where the file stores none."""
        selection = _normalize_rows(rows, len(self))
        if self._contents.sample_ids is not None:
            with _unreadable(self.path):
                return np.asarray(_read_rows(self._contents.sample_ids, selection), dtype=np.int64)
        index = np.arange(selection.start, selection.stop) if isinstance(selection, slice) else selection
        return np.stack([np.full(len(index), -1, dtype=np.int64), index.astype(np.int64)], axis=1)

    # -- data --------------------------------------------------------------------------------------
    def read(self, rows: Rows = None, *, fields: Sequence[str] | None = None) -> Trajectories:
        """Trajectories at ``rows`` (int, slice, index list or boolean mask; default all).

        Returns
        -------
        Trajectories
            Fields ``(n, T, *space[, C])`` in the file's dtype (float32 for our files) as torch tensors.
        """
        sources = self._sources if fields is None else self._select_sources(fields)
        selection = _normalize_rows(rows, len(self))
        with _unreadable(self.path):
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

    def iter_batches(self, batch_size: int, *, fields: Sequence[str] | None = None) -> Iterator[Trajectories]:
        """Consecutive batches of at most ``batch_size`` trajectories, in file order."""
        if batch_size < 1:
            raise ValueError(f"batch_size must be positive, got {batch_size}")
        for start in range(0, len(self), batch_size):
            yield self.read(slice(start, start + batch_size), fields=fields)


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


@contextmanager
def _unreadable(path: Path) -> Iterator[None]:
    """Turn HDF5's ``OSError`` (truncated, damaged file) into one ``ValueError`` line naming ``path``."""
    try:
        yield
    except OSError as exc:
        if isinstance(exc, FileNotFoundError | PermissionError | IsADirectoryError):
            raise
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ValueError(f"{path} cannot be read (truncated or damaged HDF5 file): {reason}") from exc


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
