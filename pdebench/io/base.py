"""What every dataset file of the package shares: the layout tag, the attribute codec, the atomic
writer and the lazy reader.

* **Layout tag.** Root attributes ``pdebench_layout`` (:data:`LAYOUT_ATTR`: ``"grid"``,
  ``"mesh_nodal"`` or ``"particles"``) and ``pdebench_format_version`` (:data:`VERSION_ATTR`, an
  int). Files written before the tag was unified carry their layout's older names (grid files:
  the version only; mesh files: ``layout`` and ``pdebench_mesh_format_version``; particle files:
  ``pdebench_particles_format_version``); :func:`check_layout` reads both.
* **Attributes.** Numbers, strings and numeric arrays are stored as they are; anything else as JSON,
  its name listed in the root attribute ``json_attrs``. Provenance goes under ``provenance.<key>``
  (:func:`write_attrs`, :func:`read_attrs`).
* **Writing.** :class:`AtomicHDF5Writer` writes beside the destination and moves the file into place
  only when it is complete (flush, fsync, :func:`os.replace`, fsync of the folder); a crash or an
  exception never leaves a half-written file under the final name.
* **Reading.** :class:`H5Reader` opens the file once per process (lazily again after a fork, after
  :meth:`~H5Reader.close` or after unpickling: it pickles by path, so DataLoader workers open their own
  handle) and gives ``len``, :meth:`~H5Reader.sample_ids`, ``params`` and ``provenance``. A reader
  that sets ``_reads_zarr`` opens a Zarr store (a folder, :func:`is_zarr_store`) the same way, through
  :func:`zarr.open_group` (metadata on open, chunks on demand).
* **Folder stores.** :func:`commit_folder` moves a finished Zarr store into place as
  :func:`commit_file` moves a file.
"""

from __future__ import annotations

import json
import logging
import math
import os
import shutil
import weakref
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import h5py
import numpy as np
import torch
import zarr

from pdebench.atomic import fsync_folder, temporary_path

logger = logging.getLogger(__name__)

PathLike = str | os.PathLike[str]
Rows = int | slice | Sequence[int] | np.ndarray | None

LAYOUT_ATTR = "pdebench_layout"
"""Root attribute naming a file's layout."""
VERSION_ATTR = "pdebench_format_version"
"""Root attribute holding the version of that layout."""
PROVENANCE_PREFIX = "provenance."
JSON_ATTRS = "json_attrs"
COMPRESSIONS = ("gzip", "lzf", None)
_CHUNK_TARGET_BYTES = 1 << 20
_MAX_CHUNK_ROWS = 4096


# --------------------------------------------------------------------------------------------------
# Attributes
# --------------------------------------------------------------------------------------------------


def encode_attr(value: Any) -> tuple[Any, bool]:
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


def decode_attr(value: Any, *, is_json: bool = False) -> Any:
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


def encode_attrs(params: Mapping[str, Any], provenance: Mapping[str, Any],
                 encode: Callable[[Any], tuple[Any, bool]] = encode_attr) -> dict[str, Any]:
    """``params`` under their names and ``provenance`` as ``provenance.<key>``, each value as
    ``encode`` stores it (``value -> (stored value, stored as JSON)``), then ``json_attrs``: the JSON
    list of the names stored as JSON. The attribute codec of every file the package writes."""
    out: dict[str, Any] = {}
    json_names: list[str] = []
    for name, value in {**params, **{f"{PROVENANCE_PREFIX}{key}": value for key, value in provenance.items()}}.items():
        out[name], is_json = encode(value)
        if is_json:
            json_names.append(name)
    out[JSON_ATTRS] = json.dumps(json_names)
    return out


def write_attrs(attrs: h5py.AttributeManager, params: Mapping[str, Any], provenance: Mapping[str, Any]) -> None:
    """Store ``params`` and ``provenance`` as :func:`encode_attrs` encodes them."""
    for name, value in encode_attrs(params, provenance).items():
        attrs[name] = value


def read_attrs(attrs: h5py.AttributeManager, reserved: frozenset[str]) -> tuple[dict[str, Any], dict[str, Any]]:
    """``(params, provenance)`` of what :func:`write_attrs` stored; ``reserved`` names are skipped."""
    raw = attrs.get(JSON_ATTRS)
    json_names = set(json.loads(decode_attr(raw))) if raw is not None else set()
    params: dict[str, Any] = {}
    provenance: dict[str, Any] = {}
    for name, value in attrs.items():
        if name in reserved or name == JSON_ATTRS:
            continue
        decoded = decode_attr(value, is_json=name in json_names)
        if name.startswith(PROVENANCE_PREFIX):
            provenance[name[len(PROVENANCE_PREFIX) :]] = decoded
        else:
            params[name] = decoded
    return params, provenance


def generation_seconds(provenance: Mapping[str, Any]) -> float | None:
    """What a file's samples cost to generate, in solver wall seconds: the workers' summed solve time
    of a streamed file (``solve_time_s``), else the generation's wall time (``wall_time_s``, which
    ``pdebench generate`` records for every record kind); ``None`` for a file that records neither
    (a foreign file). The data cards' ``data_cost_s``, the leaderboard's one-off cost."""
    for key in ("solve_time_s", "wall_time_s"):
        value = provenance.get(key)
        if isinstance(value, (int, float)) and value >= 0:
            return float(value)
    return None


def json_list(attrs: h5py.AttributeManager, name: str) -> list[Any]:
    """A JSON-list attribute (``[]`` where absent)."""
    return json.loads(decode_attr(attrs.get(name, "[]")))


def layout_of(attrs: h5py.AttributeManager, legacy_layout_attr: str | None = None) -> str | None:
    """The file's layout tag (``None`` where it has none)."""
    for name in (LAYOUT_ATTR, legacy_layout_attr):
        if name is not None and name in attrs:
            return str(decode_attr(attrs[name]))
    return None


def check_layout(file: h5py.File, path: Path, *, layout: str, version: int, what: str,
                 legacy: tuple[str | None, str] | None = None) -> None:
    """Refuse, in one line naming ``path``, a file that is not of ``layout`` or is newer than ``version``.

    Parameters
    ----------
    legacy
        ``(layout attribute, version attribute)`` names the layout wrote before the tag was unified.

    Raises
    ------
    ValueError
        Another layout (the message lists the attributes and members found), or a newer version.
    """
    attrs = file.attrs
    legacy_layout, legacy_version = legacy or (None, None)
    found = layout_of(attrs, legacy_layout)
    version_attr = VERSION_ATTR if VERSION_ATTR in attrs else legacy_version
    if found != layout or version_attr not in attrs:
        shown = f"{LAYOUT_ATTR}={found!r}" if found is not None else f"no {LAYOUT_ATTR} attribute"
        raise ValueError(
            f"{path} is not a {what} file (expected root attributes {LAYOUT_ATTR}={layout!r} and {VERSION_ATTR}, "
            f"found {shown}; attributes {sorted(attrs)}, members {sorted(file)})"
        )
    stored = int(decode_attr(attrs[version_attr]))
    if stored > version:
        raise ValueError(f"{path} has {what} format version {stored}; this reader knows up to {version}")


def same_value(a: Any, b: Any) -> bool:
    """Whether two attribute values are equal (arrays elementwise, NaN equal to NaN)."""
    try:
        return bool(np.array_equal(np.asarray(a), np.asarray(b), equal_nan=True))
    except TypeError:  # non-numeric arrays
        return bool(np.array_equal(np.asarray(a), np.asarray(b)))


def _shown(value: Any) -> str:
    return repr(value) if np.size(value) <= 8 else f"an array of shape {np.shape(value)}"


@dataclass(frozen=True)
class BatchSchema:
    """What every batch of one file must agree on, taken from the first batch.

    Parameters
    ----------
    row_shapes
        Field name -> shape of one row (the shape past the batch axis).
    values
        Named groups of values the batches must repeat exactly (``{"coordinate": ..., "param": ...}``).
    """

    row_shapes: dict[str, tuple[int, ...]]
    values: dict[str, dict[str, Any]] = field(default_factory=dict)

    def check(self, batch: BatchSchema) -> None:
        """Raise ``ValueError`` naming the first difference between ``batch`` and this schema."""
        groups = {"field": (batch.row_shapes, self.row_shapes)}
        groups.update({what: (batch.values[what], stored) for what, stored in self.values.items()})
        for what, (got, stored) in groups.items():
            if set(got) != set(stored):
                raise ValueError(f"batch has {what}s {sorted(got)}; the file has {sorted(stored)}")
            for name, value in got.items():
                if not same_value(value, stored[name]):
                    past = " (shape past the batch axis)" if what == "field" else ""
                    raise ValueError(
                        f"{what} {name!r}: the batch has {_shown(value)}, the file (its first batch) {_shown(stored[name])}{past}"
                    )


# --------------------------------------------------------------------------------------------------
# Atomic files
# --------------------------------------------------------------------------------------------------


def check_destination(path: Path, overwrite: bool, *, store: bool = False) -> None:
    """Fail early, naming ``path``, if a file (with ``store``: a Zarr store, a folder) cannot be written there.

    Raises
    ------
    FileExistsError
        ``path`` exists and ``overwrite`` is false.
    IsADirectoryError
        ``path`` is a folder (with ``store``: a folder that is not a Zarr store, never replaced).
    FileNotFoundError
        The folder that should hold ``path`` does not exist.
    PermissionError
        That folder is not writable.
    """
    if path.is_dir() and not store:
        raise IsADirectoryError(f"{path} is a folder; expected the path of a file to write")
    if store and path.is_dir() and overwrite and not is_zarr_store(path):
        raise IsADirectoryError(f"{path} is a folder but not a Zarr store; not replacing it")
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


def commit_file(tmp_path: Path, path: Path, *, overwrite: bool) -> None:
    """Move the finished ``tmp_path`` to ``path`` durably: fsync file, rename, fsync folder.

    Without ``overwrite`` the move never replaces a file that appeared meanwhile (hard link, then
    unlink; plain existence check where links are unsupported); the data then stays in ``tmp_path``.

    Raises
    ------
    FileExistsError
        ``path`` appeared while writing and ``overwrite`` is false (``tmp_path`` is kept).
    """
    fd = os.open(tmp_path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
    if overwrite:
        os.replace(tmp_path, path)
    else:
        _move_no_clobber(tmp_path, path)
    fsync_folder(path.parent)


def is_zarr_store(path: PathLike) -> bool:
    """Whether ``path`` is a folder holding a Zarr group (``zarr.json``, format 3, or ``.zgroup``, format 2)."""
    path = Path(path)
    return path.is_dir() and ((path / "zarr.json").is_file() or (path / ".zgroup").is_file())


def commit_folder(tmp_path: Path, path: Path, *, overwrite: bool) -> None:
    """Move the finished folder ``tmp_path`` (a Zarr store) to ``path`` durably: fsync every file and
    folder in it, rename, fsync the parent folder.

    With ``overwrite`` an existing ``path`` is first renamed aside and deleted only once the new
    store is in place (put back if the move fails). Without it, a ``path`` that appeared meanwhile is
    never replaced.

    Raises
    ------
    FileExistsError
        ``path`` appeared while writing and ``overwrite`` is false (``tmp_path`` is kept).
    """
    for folder, _, names in os.walk(tmp_path):
        for name in names:
            fd = os.open(os.path.join(folder, name), os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        fsync_folder(Path(folder))
    aside = None
    if path.exists() or path.is_symlink():
        if not overwrite:
            raise FileExistsError(f"{path} appeared while it was being written; the new data is kept in {tmp_path}")
        aside = temporary_path(path, sweep=False)
        os.rename(path, aside)
    try:
        os.rename(tmp_path, path)
    except BaseException:
        if aside is not None:
            os.rename(aside, path)
        raise
    fsync_folder(path.parent)
    if aside is not None:
        if aside.is_dir() and not aside.is_symlink():
            shutil.rmtree(aside)
        else:
            aside.unlink()


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


def field_as_float32(value: torch.Tensor | np.ndarray) -> np.ndarray:
    """Any real tensor/array ``(N, ...)`` -> float32 numpy array ``(N, ...)`` on the CPU."""
    tensor = torch.as_tensor(value)
    if tensor.is_complex():
        raise ValueError("complex fields cannot be stored; split them into real and imaginary fields")
    return tensor.detach().to(device="cpu", dtype=torch.float32).numpy()


def chunk_shape(row_shape: tuple[int, ...], chunk_rows: int | None, itemsize: int = 4,
                target_bytes: int = _CHUNK_TARGET_BYTES) -> tuple[int, ...]:
    """Chunk of a ``(None, *row_shape)`` dataset: ``chunk_rows`` rows, or about ``target_bytes`` (1 MiB).

    A row larger than the target is split along its first axis (time) instead.
    """
    row_shape = tuple(max(1, size) for size in row_shape)
    if chunk_rows is not None:
        return (chunk_rows, *row_shape)
    row_bytes = math.prod(row_shape) * itemsize
    if row_bytes <= target_bytes or not row_shape:
        return (int(min(_MAX_CHUNK_ROWS, max(1, target_bytes // row_bytes))), *row_shape)
    frame_bytes = math.prod(row_shape[1:]) * itemsize
    frames = int(min(row_shape[0], max(1, target_bytes // frame_bytes)))
    return (1, frames, *row_shape[1:])


class AtomicHDF5Writer(ABC):
    """Base of the streaming HDF5 writers: the file is written beside its destination and appears
    under :attr:`path` only when :meth:`close` completes (flush, fsync, rename, fsync of the folder);
    on an exception in a ``with`` block, :meth:`abort`, or garbage collection the temporary file is
    deleted and :attr:`path` is untouched. The destination is checked in the constructor (before any
    solve); each ``append`` writes its batch through (memory holds one batch at a time).

    The arguments every writer takes:

    * ``path``: destination ``.h5`` file; its folder must exist and be writable;
    * ``overwrite``: replace an existing ``path`` on success; without it an existing file is an error,
      raised in the constructor;
    * ``provenance``: provenance of the whole file, stored as ``provenance.<key>`` attributes; values
      that are not numbers, strings or numeric arrays are stored as JSON (they must be
      JSON-serialisable, else stored as their ``str``);
    * ``compression``: ``"gzip"`` (level 4, with the shuffle filter), ``"lzf"`` or ``None``.

    The constructor raises ``FileExistsError``, ``FileNotFoundError``, ``IsADirectoryError`` or
    ``PermissionError``, naming ``path``, when it cannot be written; nothing is created then.

    A layout states :attr:`LAYOUT` and :attr:`FORMAT_VERSION` (written as the layout tag when the file
    is finished), calls :meth:`_open_temporary` first in ``__init__``, sets ``self._schema`` once
    something was appended, and implements :meth:`_write_attrs` (called just before the file is
    finished).
    """

    LAYOUT: ClassVar[str]
    FORMAT_VERSION: ClassVar[int]
    path: Path
    overwrite: bool
    _noun = "samples"

    def _open_temporary(self, path: PathLike, overwrite: bool, compression: str | None,
                        provenance: Mapping[str, Any] | None = None, **h5_options: Any) -> None:
        if compression not in COMPRESSIONS:
            raise ValueError(f"compression must be one of {COMPRESSIONS}, got {compression!r}")
        self.compression = compression
        self._provenance: dict[str, Any] = dict(provenance or {})
        self._seen_ids: set[tuple[int, int]] = set()
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
        logger.debug("writing %s through %s", self.path, self.temp_path)

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

    def _check_open(self) -> None:
        if self._closed:
            raise ValueError(f"writer for {self.path} is closed")

    @property
    def provenance(self) -> dict[str, Any]:
        """The provenance gathered so far (a shallow copy; change it with :meth:`update_provenance`)."""
        return dict(self._provenance)

    def update_provenance(self, values: Mapping[str, Any]) -> None:
        """Add or replace provenance entries (e.g. the total wall time) before :meth:`close` stores them."""
        self._check_open()
        self._provenance.update(values)

    # -- writing helpers ---------------------------------------------------------------------------
    def _compression_options(self) -> dict[str, Any]:
        """Dataset options of the writer's compression (gzip level 4 with shuffle, lzf, or none)."""
        return {
            "compression": self.compression,
            "compression_opts": 4 if self.compression == "gzip" else None,
            "shuffle": self.compression is not None,
            "track_times": False,
        }

    def _create_rows(self, group: h5py.Group, key: str, row_shape: tuple[int, ...], dtype: str,
                     chunk_rows: int | None = None) -> h5py.Dataset:
        """An empty, resizable ``(0, *row_shape)`` dataset chunked along its first axis."""
        return group.create_dataset(
            key,
            shape=(0, *row_shape),
            maxshape=(None, *row_shape),
            dtype=dtype,
            chunks=chunk_shape(tuple(row_shape), chunk_rows, np.dtype(dtype).itemsize),
            **self._compression_options(),
        )

    def _warn_repeated_ids(self, sample_ids: np.ndarray) -> None:
        """Log a warning for ``(seed, index)`` ids already written or repeated in ``sample_ids``."""
        ids = [tuple(map(int, row)) for row in sample_ids]
        repeated = [i for i in ids if i in self._seen_ids]
        if repeated or len(set(ids)) != len(ids):
            logger.warning("%s: repeated sample ids (seed, index), e.g. %s", self.path, (repeated or ids)[:3])
        self._seen_ids.update(ids)

    # -- finishing ---------------------------------------------------------------------------------
    @abstractmethod
    def _write_attrs(self) -> None:
        """Write the file's attributes (names, provenance) just before it is finished."""

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
            self._file.attrs["num_samples"] = np.int64(self._num_samples)
            self._file.attrs[LAYOUT_ATTR] = self.LAYOUT
            self._file.attrs[VERSION_ATTR] = np.int64(self.FORMAT_VERSION)
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


# --------------------------------------------------------------------------------------------------
# Reading
# --------------------------------------------------------------------------------------------------


def normalize_rows(rows: Rows, n: int) -> slice | np.ndarray:
    """Rows of an ``N = n`` file as a unit-step slice or a 1-D int64 index array."""
    if rows is None:
        return slice(0, n)
    if isinstance(rows, int | np.integer):
        index = int(rows) + (n if rows < 0 else 0)
        if not 0 <= index < n:
            raise IndexError(f"row {rows} is out of range for {n} rows (valid: {-n} .. {n - 1})")
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
        raise IndexError(f"rows {rows!r} out of range for {n} rows")
    return array


def read_rows(dataset: h5py.Dataset | np.ndarray, rows: slice | np.ndarray) -> np.ndarray:
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


@contextmanager
def unreadable(path: Path) -> Iterator[None]:
    """Turn HDF5's ``OSError`` (truncated, damaged file) into one ``ValueError`` line naming ``path``."""
    try:
        yield
    except OSError as exc:
        if isinstance(exc, FileNotFoundError | PermissionError | IsADirectoryError):
            raise
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ValueError(f"{path} cannot be read (truncated or damaged HDF5 file): {reason}") from exc


class H5Reader(ABC):
    """Lazy, fork-safe read-only view of one dataset file.

    The file is opened (and its metadata read by :meth:`_read`) in the constructor, and opened again,
    and :meth:`_read` run again, on the first use in another process (a forked DataLoader worker),
    after :meth:`close`, or after unpickling: the reader pickles by its constructor's arguments, never
    by the handle. Usable as a context manager.

    A layout implements :meth:`_read`, which sets ``_num_rows`` (``N``), ``_sample_ids`` (``(N, 2)``
    int64 ``(seed, index)`` as an array or dataset, or ``None``), ``_params`` and ``_provenance``, and
    calls :meth:`_handle` before it touches a dataset. A layout that sets ``_reads_zarr`` also opens
    Zarr stores (:func:`is_zarr_store`): its :meth:`_read` is then given the :class:`zarr.Group`.

    Raises
    ------
    FileNotFoundError
        ``path`` does not exist.
    ValueError
        Not an HDF5 file (nor a Zarr store where the layout reads them), a truncated or damaged one, or
        what the layout's :meth:`_read` refuses.
    """

    _what: ClassVar[str] = "data"
    """What the file is, for messages (``"no such mesh data file"``)."""
    _layout: ClassVar[tuple[str, int, tuple[str | None, str] | None] | None] = None
    """``(layout, version, legacy)`` checked by :func:`check_layout` before :meth:`_read` (``None``: none)."""
    _reads_zarr: ClassVar[bool] = False
    """Whether Zarr stores are opened too (read through :func:`zarr.open_group`)."""
    _num_rows: int
    _sample_ids: np.ndarray | h5py.Dataset | None
    _params: dict[str, Any]
    _provenance: dict[str, Any]

    def __init__(self, path: PathLike, **options: Any) -> None:
        self.path = Path(path)
        self._options = options
        if not self.path.exists():
            raise FileNotFoundError(f"no such {self._what} file: {self.path}")
        self._zarr = self._reads_zarr and is_zarr_store(self.path)
        if not self._zarr and (self.path.is_dir() or not h5py.is_hdf5(self.path)):
            raise ValueError(f"{self.path} is not an HDF5 file" + (" or a Zarr store" if self._reads_zarr else ""))
        self._file: h5py.File | zarr.Group | None = None
        self._pid: int | None = None
        self._handle()

    @abstractmethod
    def _read(self, file: h5py.File | zarr.Group) -> None:
        """Read the metadata of the just opened ``file`` (its ``_layout`` checked)."""

    def _handle(self) -> h5py.File | zarr.Group:
        """The open file of this process (opened, and :meth:`_read` run, where it is not)."""
        if self._file is None or self._pid != os.getpid() or (not self._zarr and not self._file.id.valid):
            with unreadable(self.path):
                file = zarr.open_group(self.path, mode="r") if self._zarr else h5py.File(self.path, "r")
            if self._zarr:
                self._read(file)  # a Zarr group holds no handle: nothing to close on failure
                self._file, self._pid = file, os.getpid()
                return file
            try:
                with unreadable(self.path):
                    if self._layout is not None:
                        layout, version, legacy = self._layout
                        check_layout(file, self.path, layout=layout, version=version, what=self._what, legacy=legacy)
                    self._read(file)
            except BaseException:
                file.close()
                raise
            self._file, self._pid = file, os.getpid()
        return self._file

    # -- lifetime ----------------------------------------------------------------------------------
    def close(self) -> None:
        """Close the HDF5 handle (if open); a later read opens it again."""
        if self._file is not None and self._pid == os.getpid() and not self._zarr:
            self._file.close()
        self._file = None
        self._pid = None

    def __enter__(self):
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def __getstate__(self) -> dict[str, Any]:
        """Pickle by path (DataLoader workers reopen the file in their own process)."""
        return {"path": self.path, **self._options}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(**state)  # type: ignore[misc]

    def _describe(self) -> str:
        return ""

    def __repr__(self) -> str:
        return f"{type(self).__name__}({str(self.path)!r}, N={len(self)}{self._describe()})"

    # -- metadata ----------------------------------------------------------------------------------
    def __len__(self) -> int:
        return int(self._num_rows)

    def _row(self, i: int) -> int:
        """Row ``i`` (negative counts from the end) as an index ``0 .. N - 1`` (``IndexError`` otherwise)."""
        return normalize_rows(int(i), len(self)).start

    def sample_ids(self, rows: Rows = None) -> np.ndarray:
        """``(n, 2)`` int64 ``(seed, index)`` of ``rows`` (default all); ``(-1, row)`` where the file stores none."""
        selection = normalize_rows(rows, len(self))
        self._handle()
        if self._sample_ids is not None:
            with unreadable(self.path):
                return np.array(read_rows(self._sample_ids, selection), dtype=np.int64)
        index = np.arange(selection.start, selection.stop) if isinstance(selection, slice) else selection
        return np.stack([np.full(len(index), -1, dtype=np.int64), index.astype(np.int64)], axis=1)

    @property
    def params(self) -> dict[str, Any]:
        """The file's parameters (copies)."""
        return {name: value.copy() if isinstance(value, np.ndarray) else value for name, value in self._params.items()}

    @property
    def provenance(self) -> dict[str, Any]:
        """The writer's provenance (``provenance.*`` attributes)."""
        return dict(self._provenance)
