"""Export trajectories to xarray, netCDF and Zarr (for analysis tools that speak CF/netCDF or Zarr, not
PDEBench HDF5), and to The Well's HDF5 layout (:func:`export_well`, for The Well's ``WellDataset``);
:data:`EXPORTERS` names each format's function.

Schema (one for :func:`to_xarray`, :func:`export_netcdf` and :func:`export_zarr`):

* dimensions ``sample``, ``t``, the spatial axes (``x``[, ``y``[, ``z``]]) and, for fields with
  channels, ``component`` (``{field}_component`` when fields disagree on the channel count);
* one data variable per field, ``(sample, t, *space[, component])``;
* coordinates ``t``, ``x``, ``y``, ``z`` (where the trajectories have them) and ``sample_seed``,
  ``sample_index`` along ``sample`` (the ``(seed, index)`` sample ids);
* global attributes: params under their own names, provenance as ``provenance.<key>``. netCDF has no
  boolean or nested attributes: booleans are stored as int8 0/1, other non-scalar values as JSON strings
  whose names are listed in the attribute ``json_attrs``; ``field_names`` (JSON list) keeps the order
  of the fields, which Zarr does not.

A Zarr store (:func:`export_zarr`, Zarr format 3 through :meth:`xarray.Dataset.to_zarr`) is chunked by
sample (the same rows per chunk for every variable, about 4 MiB of the largest field) and
compressed (Blosc zstd, byte shuffle); :class:`~pdebench.io.trajectory_file.TrajectoryFile` reads it
back lazily.
"""

from __future__ import annotations

import json
import logging
import shutil
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import netCDF4
import numpy as np
import torch
import xarray as xr
import zarr

from pdebench.atomic import temporary_path
from pdebench.io.base import (JSON_ATTRS, PathLike, check_destination, check_free_disk, chunk_shape, commit_file,
                              commit_folder, encode_attrs)
from pdebench.io.trajectory_file import FORMAT_VERSION, TrajectoryFile, describe_nonfinite, find_nonfinite
from pdebench.io.well_file import WELL_PROVENANCE, TensorField, WellMetadata, WellWriter
from pdebench.core.trajectories import Trajectories
from pdebench.problems.base import PROBLEMS

logger = logging.getLogger(__name__)

SAMPLE_DIM = "sample"
_EXPORT_TARGET_BYTES = 64 << 20
_NETCDF_CHUNK_BYTES = 1 << 20
_ZARR_CHUNK_BYTES = 4 << 20


def _attr_value(value: Any) -> tuple[Any, bool]:
    """Return ``(netCDF-storable value, stored as JSON)``."""
    if isinstance(value, bool | np.bool_):
        return np.int8(value), False
    if isinstance(value, int | float | str | np.integer | np.floating):
        return value, False
    return json.dumps(value, default=str), True


def netcdf_attrs(params: dict[str, Any], provenance: dict[str, Any]) -> dict[str, Any]:
    """Global attributes for ``params`` and ``provenance`` (``provenance.<key>``), netCDF-storable."""
    attrs = encode_attrs(params, provenance, _attr_value)
    if attrs[JSON_ATTRS] == "[]":
        del attrs[JSON_ATTRS]
    attrs["pdebench_format_version"] = np.int64(FORMAT_VERSION)
    return attrs


def _field_values(value: torch.Tensor) -> np.ndarray:
    """Tensor -> numpy on the CPU (float32/float64 kept, other dtypes as float32). May share memory."""
    tensor = torch.as_tensor(value).detach().cpu()
    if tensor.dtype not in (torch.float32, torch.float64):
        tensor = tensor.to(torch.float32)
    return tensor.numpy()


def _field_dims(name: str, shape: tuple[int, ...], space: list[str], component: str) -> tuple[str, ...]:
    if not space:
        return (SAMPLE_DIM, "t", *(f"dim_{i}" for i in range(len(shape) - 2)))
    extra = len(shape) - 2 - len(space)
    if extra not in (0, 1):
        raise ValueError(f"field {name!r} has shape {shape}; expected (N, T, *{space}[, C])")
    return (SAMPLE_DIM, "t", *space, *([component] if extra else []))


def to_xarray(traj: Trajectories) -> xr.Dataset:
    """The trajectories as an :class:`xarray.Dataset` (schema in the module docstring).

    Parameters
    ----------
    traj
        Fields ``(N, T, *space[, C])``; coordinates ``t`` (length ``T``) and ``x``[, ``y``, ``z``].

    Returns
    -------
    xarray.Dataset
        One variable per field with dims ``(sample, t, *space[, component])``; coordinates ``t``, the
        spatial axes, ``sample_seed`` and ``sample_index`` ``(sample,)``. Values are not copied where
        the tensors are float32/float64 on the CPU.
    """
    space = traj.spatial_axes
    values = {name: _field_values(value) for name, value in traj.fields.items()}
    channels = {name: array.shape[-1] for name, array in values.items() if array.ndim - 2 > len(space) and space}
    shared_component = len(set(channels.values())) <= 1
    data_vars = {
        name: (_field_dims(name, array.shape, space, "component" if shared_component else f"{name}_component"), array)
        for name, array in values.items()
    }
    coords: dict[str, Any] = {
        "sample_seed": (SAMPLE_DIM, traj.sample_ids[:, 0].copy()),
        "sample_index": (SAMPLE_DIM, traj.sample_ids[:, 1].copy()),
    }
    for name, value in traj.coords.items():
        coords[name] = (name, np.asarray(value))
    attrs = {**netcdf_attrs(traj.params, traj.provenance), "field_names": json.dumps(list(traj.fields))}
    return xr.Dataset(data_vars, coords=coords, attrs=attrs)


def _auto_rows(file: TrajectoryFile) -> int:
    """Rows per export chunk: about 64 MiB of float32 field values."""
    row_bytes = sum(4 * int(np.prod(shape[1:])) for shape in file.fields.values())
    return max(1, _EXPORT_TARGET_BYTES // max(row_bytes, 1))


def estimate_netcdf_bytes(file: TrajectoryFile) -> int:
    """Upper estimate of the netCDF (or Zarr) size of ``file``: its values uncompressed, the sample ids,
    the coordinates and 1 MiB of headers (zlib or Blosc makes the output smaller, never larger)."""
    coords = sum(np.asarray(value).nbytes for value in file.coords.values())
    return file.nbytes + 16 * len(file) + coords + (1 << 20)


def _define(nc: netCDF4.Dataset, ds: xr.Dataset, compression: bool) -> None:
    """Create the dimensions (``sample`` unlimited), variables and attributes of ``ds`` in ``nc``."""
    for dim, size in ds.sizes.items():
        nc.createDimension(str(dim), None if dim == SAMPLE_DIM else size)
    sample_coords = " ".join(str(name) for name, var in ds.coords.items() if var.dims == (SAMPLE_DIM,))
    for name, var in ds.variables.items():
        along_sample = bool(var.dims) and var.dims[0] == SAMPLE_DIM
        chunks = None
        if along_sample:
            row_bytes = var.dtype.itemsize * int(np.prod(var.shape[1:]))
            chunks = (int(min(4096, max(1, _NETCDF_CHUNK_BYTES // max(row_bytes, 1)))), *var.shape[1:])
        out = nc.createVariable(
            str(name), var.dtype, var.dims, zlib=compression, complevel=4, shuffle=compression, chunksizes=chunks
        )
        if name in ds.data_vars and sample_coords:
            out.setncattr("coordinates", sample_coords)
        if var.attrs:
            out.setncatts(dict(var.attrs))
        if not along_sample:
            out[...] = var.values
    nc.setncatts(dict(ds.attrs))


def _write_rows(nc: netCDF4.Dataset, ds: xr.Dataset, start: int) -> None:
    """Write the ``sample``-dimensioned variables of ``ds`` at rows ``start:start + n``."""
    count = ds.sizes[SAMPLE_DIM]
    for name, var in ds.variables.items():
        if var.dims and var.dims[0] == SAMPLE_DIM and count:
            nc[str(name)][start : start + count] = var.values


def _finite_chunks(source: TrajectoryFile, rows: int, allow_nonfinite: bool,
                   nonfinite: dict[int, list[int]]) -> Iterator[tuple[int, Trajectories]]:
    """``(start, rows start:start + rows)`` of ``source`` in order (at least one, maybe empty, chunk).

    Without ``allow_nonfinite`` the non-finite rows found are added to ``nonfinite`` (row -> frames);
    from the first such chunk on nothing more is yielded, the rest is only scanned to name every bad row."""
    for start in range(0, max(len(source), 1), rows):
        traj = source[start : start + rows]
        if not allow_nonfinite:
            nonfinite.update(find_nonfinite(traj.fields.values(), rows=range(start, start + traj.num_samples)))
            if nonfinite:
                continue
        yield start, traj


def _refuse_nonfinite(src: PathLike, dest: Path, nonfinite: dict[int, list[int]]) -> None:
    if nonfinite:
        raise ValueError(
            f"{src}: non-finite values in {describe_nonfinite(nonfinite)}; not exporting them to "
            f"{dest} (pass --allow-nonfinite, allow_nonfinite=True, to keep them)"
        )


def export_netcdf(
    src_h5_path: PathLike,
    dest_path: PathLike,
    *,
    overwrite: bool = False,
    chunk_rows: int | None = None,
    compression: bool = True,
    allow_nonfinite: bool = False,
    progress: Callable[[int], None] | None = None,
) -> Path:
    """Convert a trajectory file (any layout :class:`~pdebench.io.trajectory_file.TrajectoryFile` reads) to netCDF4.

    Rows are streamed in chunks of ``chunk_rows`` trajectories (default: about 64 MiB), so memory holds
    one chunk. The output is written to a temporary file next to ``dest_path`` and moved into place
    (fsync, :func:`os.replace`, fsync of the folder) only when complete; on any error it is deleted.

    Parameters
    ----------
    src_h5_path
        Source HDF5 file.
    dest_path
        Destination ``.nc`` file; its folder must exist and be writable.
    overwrite
        Replace an existing ``dest_path`` (otherwise ``FileExistsError`` before anything is read).
    chunk_rows
        Trajectories per streamed chunk.
    compression
        zlib (level 4) with the shuffle filter.
    allow_nonfinite
        Export NaN and infinite values too (by default they are refused, see Raises).
    progress
        Called with the number of trajectories after each chunk is written.

    Returns
    -------
    Path
        ``dest_path``. ``xarray.open_dataset(dest_path)`` gives :func:`to_xarray` of the whole file.

    Raises
    ------
    ValueError
        The source cannot be read (see :class:`~pdebench.io.trajectory_file.TrajectoryFile`); the estimated
        output (:func:`estimate_netcdf_bytes`) does not fit on the destination's disk (before anything
        is written); or, without ``allow_nonfinite``, the source holds non-finite values: the message
        names the rows and frames, writing stops at the first such chunk (the rest is only scanned)
        and nothing is left under ``dest_path``.
    """
    dest = Path(dest_path)
    check_destination(dest, overwrite)
    if chunk_rows is not None and chunk_rows < 1:
        raise ValueError(f"chunk_rows must be a positive integer, got {chunk_rows!r}")
    with TrajectoryFile(src_h5_path) as source:
        rows = chunk_rows or _auto_rows(source)
        check_free_disk(dest.parent.resolve(), estimate_netcdf_bytes(source), f"exporting {src_h5_path} to {dest}")
        tmp = temporary_path(dest)
        nonfinite: dict[int, list[int]] = {}
        try:
            with netCDF4.Dataset(tmp, "w", clobber=False, format="NETCDF4") as nc:
                for start, traj in _finite_chunks(source, rows, allow_nonfinite, nonfinite):
                    ds = to_xarray(traj)
                    if start == 0:
                        _define(nc, ds, compression)
                    _write_rows(nc, ds, start)
                    if progress is not None:
                        progress(traj.num_samples)
            _refuse_nonfinite(src_h5_path, dest, nonfinite)
            commit_file(tmp, dest, overwrite=overwrite)
        except FileExistsError:
            tmp.unlink(missing_ok=True)
            raise FileExistsError(f"{dest} appeared while exporting to it; it was not replaced") from None
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
    logger.info("exported %d trajectories from %s to %s", len(source), src_h5_path, dest)
    return dest


def zarr_chunk_rows(file: TrajectoryFile) -> int:
    """Rows per Zarr chunk: about 4 MiB of the file's largest field (at least 1, at most 4096)."""
    return min(chunk_shape(shape[1:], None, 4, _ZARR_CHUNK_BYTES)[0] for shape in file.fields.values())


def _zarr_encoding(ds: xr.Dataset, chunk_rows: int, compression: bool) -> dict[str, dict[str, Any]]:
    """Chunks of ``chunk_rows`` samples (whole rows; one frame range per chunk where a row exceeds the
    target) and Blosc zstd with byte shuffle for every variable along ``sample``."""
    compressors = (zarr.codecs.BloscCodec(cname="zstd", clevel=3, shuffle="shuffle"),) if compression else None
    encoding = {}
    for name, var in ds.variables.items():
        if var.dims and var.dims[0] == SAMPLE_DIM:
            row = chunk_shape(tuple(var.shape[1:]), None, var.dtype.itemsize, _ZARR_CHUNK_BYTES)
            chunks = (chunk_rows, *row[1:]) if row[0] >= chunk_rows else row
            encoding[str(name)] = {"chunks": chunks, "compressors": compressors}
    return encoding


def export_zarr(
    src_h5_path: PathLike,
    dest_path: PathLike,
    *,
    overwrite: bool = False,
    chunk_rows: int | None = None,
    compression: bool = True,
    allow_nonfinite: bool = False,
    progress: Callable[[int], None] | None = None,
) -> Path:
    """Convert a trajectory file (any layout :class:`~pdebench.io.trajectory_file.TrajectoryFile` reads) to a Zarr store.

    The store (a folder, Zarr format 3) holds :func:`to_xarray` of the whole file, written with
    :meth:`xarray.Dataset.to_zarr`: the first chunk of rows creates it, the next ones are appended
    along ``sample`` (``append_dim``), so memory holds one chunk of ``chunk_rows`` trajectories
    (default: about 64 MiB, a whole number of Zarr chunks). Zarr chunks hold :func:`zarr_chunk_rows`
    samples; every chunk is written (also one equal to the fill value), so a missing chunk file means
    lost data; the metadata is consolidated into the root ``zarr.json`` (one read opens the store). The store is written to a temporary folder next to ``dest_path`` and moved into place
    (:func:`~pdebench.io.base.commit_folder`) only when complete; on any error it is deleted.

    Parameters
    ----------
    src_h5_path
        Source trajectory file.
    dest_path
        Destination store (by convention ``*.zarr``); its folder must exist and be writable.
    overwrite
        Replace an existing ``dest_path`` (a file or a Zarr store; never another folder). Otherwise
        ``FileExistsError`` before anything is read.
    chunk_rows
        Trajectories per streamed chunk.
    compression
        Blosc zstd (level 3) with byte shuffle; ``False``: uncompressed chunks.
    allow_nonfinite
        Export NaN and infinite values too (by default they are refused, see Raises).
    progress
        Called with the number of trajectories after each chunk is written.

    Returns
    -------
    Path
        ``dest_path``. ``xarray.open_zarr(dest_path)`` gives :func:`to_xarray` of the whole file;
        ``TrajectoryFile(dest_path)`` reads it as the source file.

    Raises
    ------
    ValueError
        As :func:`export_netcdf`: an unreadable source, too little free disk (checked before anything is
        written), or non-finite values without ``allow_nonfinite`` (nothing is left under ``dest_path``).
    """
    dest = Path(dest_path)
    check_destination(dest, overwrite, store=True)
    if chunk_rows is not None and chunk_rows < 1:
        raise ValueError(f"chunk_rows must be a positive integer, got {chunk_rows!r}")
    with TrajectoryFile(src_h5_path) as source:
        store_rows = zarr_chunk_rows(source)
        rows = chunk_rows or max(1, _auto_rows(source) // store_rows) * store_rows
        check_free_disk(dest.parent.resolve(), estimate_netcdf_bytes(source), f"exporting {src_h5_path} to {dest}")
        tmp = temporary_path(dest)
        nonfinite: dict[int, list[int]] = {}
        try:
            for start, traj in _finite_chunks(source, rows, allow_nonfinite, nonfinite):
                ds = to_xarray(traj)
                if start == 0:
                    ds.to_zarr(tmp, mode="w-", encoding=_zarr_encoding(ds, store_rows, compression),
                               consolidated=False, zarr_format=3, write_empty_chunks=True)
                else:
                    fixed = [name for name, var in ds.variables.items() if SAMPLE_DIM not in var.dims]
                    ds.drop_vars(fixed).to_zarr(tmp, append_dim=SAMPLE_DIM, consolidated=False, write_empty_chunks=True)
                if progress is not None:
                    progress(traj.num_samples)
            _refuse_nonfinite(src_h5_path, dest, nonfinite)
            with warnings.catch_warnings():  # format 3 has no consolidated metadata yet; xarray and zarr read it
                warnings.filterwarnings("ignore", message="Consolidated metadata is currently not part")
                zarr.consolidate_metadata(tmp)
            commit_folder(tmp, dest, overwrite=overwrite)
        except FileExistsError:
            shutil.rmtree(tmp, ignore_errors=True)
            raise FileExistsError(f"{dest} appeared while exporting to it; it was not replaced") from None
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
    logger.info("exported %d trajectories from %s to %s", len(source), src_h5_path, dest)
    return dest


# --------------------------------------------------------------------------------------------------
# The Well
# --------------------------------------------------------------------------------------------------


def _file_problem(source: TrajectoryFile):
    """The registered problem a file's provenance names (``provenance.problem_args``, else its
    defaults with the file's parameters), or ``None`` where it names none or it cannot be rebuilt."""
    provenance = source.provenance
    name = provenance.get("problem")
    if not isinstance(name, str) or name not in PROBLEMS:
        return None
    args = provenance.get("problem_args")
    try:
        if isinstance(args, dict):
            return PROBLEMS.build(name, **args)
        known = PROBLEMS.build(name).arguments()
        return PROBLEMS.build(name, **{key: value for key, value in source.params.items() if key in known})
    except (TypeError, ValueError) as exc:
        logger.warning("%s: problem %r cannot be rebuilt (%s); no boundary or per-sample parameters from it", source.path, name, exc)
        return None


def well_metadata(source: TrajectoryFile, problem: Any = None, *, dataset_name: str | None = None,
                  vector_fields: Sequence[str] = (), boundaries: Mapping[str, str] | None = None) -> WellMetadata:
    """What :func:`export_well` writes beside the values: the arguments, else what a Well file read
    back says (``provenance["well"]``), else the file's problem, else defaults.

    * ``dataset_name``: the problem's name, else the file's stem;
    * ``boundaries``: the problem's ``boundary`` on every axis (``periodic`` for the catalogue's
      time-dependent problems, ``wall`` for Darcy), else none (The Well reads an axis without one as open);
    * tensor fields: those of a Well file read back, plus ``vector_fields`` (each a vector: ``D`` channels).
    """
    stored = source.provenance.get(WELL_PROVENANCE)
    well = WellMetadata.from_provenance(stored) if stored is not None else None
    if boundaries is None:
        axes = [axis for axis in ("x", "y", "z") if axis in source.coords]
        boundaries = (well.boundaries if well is not None
                      else {axis: problem.boundary for axis in axes} if problem is not None and hasattr(problem, "boundary") else {})
    if well is None and not boundaries:
        logger.info("%s names no problem: no boundary conditions are written", source.path)
    tensors = dict(well.tensor_fields) if well is not None else {}
    for name in vector_fields:
        if name not in source.fields:
            raise ValueError(f"vector field {name!r} is not a field of {source.path}; fields are {list(source.fields)}")
        tensors[name] = TensorField(1)
    name = dataset_name or (well.dataset_name if well is not None else None) or (problem.name if problem is not None else None)
    return WellMetadata(
        dataset_name=name or Path(source.path).stem,
        grid_type=well.grid_type if well is not None else "cartesian",
        spatial_dims=well.spatial_dims if well is not None else None,
        boundaries=dict(boundaries),
        tensor_fields=tensors,
    )


def export_well(
    src_h5_path: PathLike,
    dest_path: PathLike,
    *,
    overwrite: bool = False,
    chunk_rows: int | None = None,
    compression: bool = True,
    allow_nonfinite: bool = False,
    progress: Callable[[int], None] | None = None,
    dataset_name: str | None = None,
    vector_fields: Sequence[str] = (),
    boundaries: Mapping[str, str] | None = None,
) -> Path:
    """Convert a trajectory file (any layout :class:`~pdebench.io.trajectory_file.TrajectoryFile` reads) to
    The Well's HDF5 layout (:mod:`pdebench.io.well_file`), which ``the_well.data.WellDataset`` reads.

    Fields are stored as fp32 ``(N, T, *space[, D])``; the file's parameters as root attributes and
    scalars; per-sample parameters (those a Well file stores, else those the file's problem recomputes
    from the sample ids, :meth:`~pdebench.problems.base.Problem.sample_parameters`) as sample-varying
    scalars; provenance and sample ids beside them. Rows are streamed in chunks (default about 64 MiB)
    through :class:`~pdebench.io.well_file.WellWriter`: nothing appears under ``dest_path`` unless
    complete. Exporting a Well file this wrote gives the same file again.

    Parameters
    ----------
    src_h5_path, dest_path, overwrite, chunk_rows, compression, allow_nonfinite, progress
        As for :func:`export_netcdf` (``compression``: gzip level 4 with shuffle); ``dest_path`` should
        end in ``.h5`` or ``.hdf5``, the files The Well's reader lists in a folder.
    dataset_name, vector_fields, boundaries
        The Well's ``dataset_name``, the fields whose channels are vector components, and axis ->
        boundary kind (``periodic``, ``wall``, ``open``); defaults in :func:`well_metadata`.

    Returns
    -------
    Path
        ``dest_path``.

    Raises
    ------
    ValueError
        As :func:`export_netcdf` (unreadable source, no room on the disk, non-finite values), or the
        file does not fit The Well's layout (no spatial axis, a vector field without ``D`` channels).
    """
    dest = Path(dest_path)
    check_destination(dest, overwrite)
    if chunk_rows is not None and chunk_rows < 1:
        raise ValueError(f"chunk_rows must be a positive integer, got {chunk_rows!r}")
    with TrajectoryFile(src_h5_path) as source:
        rows = chunk_rows or _auto_rows(source)
        problem = _file_problem(source)
        metadata = well_metadata(source, problem, dataset_name=dataset_name, vector_fields=vector_fields, boundaries=boundaries)
        check_free_disk(dest.parent.resolve(), estimate_netcdf_bytes(source) + 32 * len(source),
                        f"exporting {src_h5_path} to {dest}")
        writer = WellWriter(dest, metadata=metadata, overwrite=overwrite, compression="gzip" if compression else None,
                            allow_nonfinite=True)  # the rows are checked here, to name every bad one
        nonfinite: dict[int, list[int]] = {}
        try:
            for start, traj in _finite_chunks(source, rows, allow_nonfinite, nonfinite):
                if not traj.num_samples:
                    continue
                stored = source.sample_parameters(slice(start, start + traj.num_samples))
                recompute = getattr(problem, "sample_parameters", None)  # steady problems draw none
                per_sample = stored or (recompute(traj.sample_ids) if recompute is not None else {})
                writer.append(traj, per_sample)
                if progress is not None:
                    progress(traj.num_samples)
            if nonfinite:
                writer.abort()
                _refuse_nonfinite(src_h5_path, dest, nonfinite)
            writer.close()
        except FileExistsError:
            writer.temp_path.unlink(missing_ok=True)
            raise FileExistsError(f"{dest} appeared while exporting to it; it was not replaced") from None
        except BaseException:
            writer.abort()
            raise
    logger.info("exported %d trajectories from %s to %s (The Well's layout)", len(source), src_h5_path, dest)
    return dest


"""The formats ``pdebench export --format`` names."""
EXPORTERS: dict[str, Callable[..., Path]] = {"netcdf": export_netcdf, "well": export_well, "zarr": export_zarr}
"""Format -> export function ``(src, dest, *, overwrite, allow_nonfinite, progress, ...) -> dest``."""
EXPORT_FORMATS = tuple(EXPORTERS)
"""The names ``--format`` takes."""
EXPORT_SUFFIXES = {"netcdf": ".nc", "well": ".well.h5", "zarr": ".zarr"}
"""Format -> suffix of the default destination (the source's name with it)."""
