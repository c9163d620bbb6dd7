"""HDF5 files of particle (SPH) trajectories, and radius graphs of their frames for PyG.

A particle solver (:mod:`pdebench.solvers.sph`) gives, per sample, the positions, velocities,
densities and pressures of ``N`` particles at ``T`` frames. :class:`ParticleDataWriter` streams such
:class:`~pdebench.core.particles.ParticleTrajectory` records into one file, atomically; :class:`ParticleDataset` reads them
lazily; :func:`frame_graph` (and :meth:`ParticleDataset.to_pyg`) turns one frame into a
:class:`torch_geometric.data.Data` radius graph for graph network simulators.

File layout (root attribute ``pdebench_layout = "particles"``, ``pdebench_particles_format_version = 1``):

* ``trajectories/<row:06d>`` -> one group per trajectory, rows numbered ``000000, 000001, ...`` in the
  order written; ``N`` (particles) and ``T`` (frames) may differ between groups, ``d`` may not:

  - ``time`` ``(T,)`` float64, physical time of each frame (s), strictly increasing, stored exactly;
  - ``positions`` ``(T, N, d)`` float32 (m);
  - ``velocities`` ``(T, N, d)`` float32 (m/s);
  - ``density`` ``(T, N)`` float32 (kg/m^3);
  - ``pressure`` ``(T, N)`` float32 (Pa);
  - ``particle_type`` ``(N,)`` int8, :data:`~pdebench.core.particles.FLUID` (0) or
    :data:`~pdebench.core.particles.WALL` (1);
  - ``mass`` ``(N,)`` float64 (kg);
  - group attributes ``seed``, ``index`` (int64) and ``params.<name>`` (float64) for every sampled
    scene parameter (the same names in every group);

* ``sample_ids`` -> ``(n, 2)`` int64 ``(seed, index)``, row ``r`` belonging to ``trajectories/<r>``;
* root attributes: ``lower``, ``upper`` ``(d,)`` float64 (the domain box, m), ``periodic`` ``(d,)``
  bool, ``radius`` float64 (the kernel interaction radius used to build graphs, m), ``dim`` (``d``),
  ``num_samples``, ``param_names`` (JSON list), ``provenance.<key>`` (as in
  :mod:`pdebench.data.hdf5`: values that are not numbers, strings or numeric arrays are stored as
  JSON and listed in ``json_attrs``).

Solvers compute in float64; the file stores the particle fields as float32 like
:mod:`pdebench.data.hdf5` (``time`` and ``mass`` stay float64). Positions on non-periodic axes that
lie outside the box by less than the tolerance (``1e-9`` of the box length) are clamped onto the box
face before the cast, so every stored frame passes the neighbour search's box check. Positions on
periodic axes are stored as given (possibly unwrapped); :func:`frame_graph` wraps them.

The writer is atomic like :class:`~pdebench.data.hdf5.TrajectoryWriter`: it writes a temporary file
beside the destination and moves it into place (fsync, :func:`os.replace`, fsync of the folder) only
when the ``with`` block ends without an exception; otherwise the temporary file is deleted. Each
:meth:`ParticleDataWriter.append` checks its whole batch (shapes, finiteness, box, sample ids, param
names) before writing any of it.

Graph convention (:func:`frame_graph`, built by :func:`pdebench.core.graphs.particle_edges`, the same
function :class:`~pdebench.data.graph_datamodule.GraphDataModule` uses): nodes are the particles; there
is an edge between every ordered pair ``(i, j)``, ``i != j``, with ``|x_i - x_j| < radius`` (minimum
image on periodic axes). ``edge_index[0]`` is the source (the neighbour ``j``), ``edge_index[1]`` the
target (the particle ``i`` that receives the message), as in ``torch_geometric.nn.radius_graph`` with
``flow="source_to_target"``; ``edge_attr`` ``(E, d)`` is ``(x_i - x_j) / radius``. The box is a
:class:`pdebench.core.graphs.ParticleBox`.
"""

from __future__ import annotations

import json
import logging
import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import torch
from torch_geometric.data import Data

from pdebench.core.graphs import ParticleBox, particle_edges
from pdebench.core.particles import FLUID, WALL, ParticleTrajectory
from pdebench.data.hdf5 import (
    PROVENANCE_PREFIX,
    AtomicHDF5Writer,
    PathLike,
    _decode_attr,
    _encode_attr,
    _json_attr_names,
)

__all__ = [
    "LAYOUT",
    "ParticleDataWriter",
    "ParticleDataset",
    "frame_graph",
    "read_particle_data",
]

logger = logging.getLogger(__name__)

LAYOUT = "particles"
"""Value of the root attribute ``pdebench_layout`` of particle data files."""
LAYOUT_ATTR = "pdebench_layout"
VERSION_ATTR = "pdebench_particles_format_version"
PARTICLE_FORMAT_VERSION = 1
"""Version of the layout written by :class:`ParticleDataWriter`."""

PARAM_PREFIX = "params."
_TRAJECTORIES = "trajectories"
_SAMPLE_IDS = "sample_ids"
_COMPRESSIONS = ("gzip", "lzf", None)
_PARTICLE_TYPES = (FLUID, WALL)
# Stored dtype of each per-trajectory dataset, in the order written.
_STORED_DTYPES: dict[str, str] = {
    "time": "f8",
    "positions": "f4",
    "velocities": "f4",
    "density": "f4",
    "pressure": "f4",
    "particle_type": "i1",
    "mass": "f8",
}


def _row_name(row: int) -> str:
    return f"{row:06d}"


# --------------------------------------------------------------------------------------------------
# Writer
# --------------------------------------------------------------------------------------------------


class _BoxProperties:
    """``dim``, ``lower``, ``upper``, ``periodic`` of the file's box (``self._box``), shared by the
    writer and the reader."""

    _box: ParticleBox

    @property
    def dim(self) -> int:
        """Spatial dimension ``d`` of the file."""
        return self._box.dim

    @property
    def lower(self) -> np.ndarray:
        """``(d,)`` float64 lower box corner (m, a copy)."""
        return np.asarray(self._box.lower, dtype=np.float64)

    @property
    def upper(self) -> np.ndarray:
        """``(d,)`` float64 upper box corner (m, a copy)."""
        return np.asarray(self._box.upper, dtype=np.float64)

    @property
    def periodic(self) -> np.ndarray:
        """``(d,)`` bool periodic axes (a copy)."""
        return np.asarray(self._box.periodic, dtype=bool)


class ParticleDataWriter(_BoxProperties, AtomicHDF5Writer):
    """Stream :class:`ParticleTrajectory` records into an HDF5 file, atomically.

    The destination and the box are checked in the constructor (before any solve); a temporary file is
    created beside the destination; each :meth:`append` checks its whole batch, then writes it through
    (memory holds one batch); :meth:`close` (the end of a ``with`` block without an exception) writes
    the attributes, fsyncs and moves the file into place. On an exception in the ``with`` block, or on
    :meth:`abort`, the temporary file is deleted and ``path`` is left untouched. See the module
    docstring for the layout.

    Parameters
    ----------
    path
        Destination ``.h5`` file. Its folder must exist and be writable.
    lower, upper
        ``(d,)`` corners of the domain box (m), ``d`` in 1, 2, 3; every trajectory must have this ``d``.
    periodic
        ``(d,)`` periodic axes (default: none). A periodic axis must be at least ``2 radius`` long.
    radius
        Kernel interaction radius (m), e.g. the support ``2h`` of the smoothing kernel; graphs of the
        file's frames connect particles closer than this.
    overwrite
        Replace an existing ``path`` on success. Without it an existing file is an error, raised here.
    provenance
        Provenance of the whole file (solver, version, kernel, wall time, ...), stored as
        ``provenance.<key>`` attributes; values that are not numbers, strings or numeric arrays are
        stored as JSON (they must be JSON-serialisable, else stored as their ``str``).
    compression
        ``"gzip"`` (level 4, with the shuffle filter), ``"lzf"`` or ``None``.

    Raises
    ------
    ValueError
        A bad box, ``radius`` or ``compression``.
    FileExistsError, FileNotFoundError, IsADirectoryError, PermissionError
        Naming ``path``, when it cannot be written; nothing is created.

    Examples
    --------
    >>> with ParticleDataWriter("dam_break.h5", lower=[0, 0], upper=[4, 2], radius=0.04) as writer:  # doctest: +SKIP
    ...     for scene in scenes:
    ...         writer.append([solve(scene)])
    """

    _noun = "trajectories"

    def __init__(
        self,
        path: PathLike,
        *,
        lower: Sequence[float] | np.ndarray,
        upper: Sequence[float] | np.ndarray,
        periodic: Sequence[bool] | np.ndarray | None = None,
        radius: float,
        overwrite: bool = False,
        provenance: Mapping[str, Any] | None = None,
        compression: str | None = "gzip",
    ) -> None:
        if compression not in _COMPRESSIONS:
            raise ValueError(f"compression must be one of {_COMPRESSIONS}, got {compression!r}")
        self._box = ParticleBox.of(lower, upper, periodic, radius)
        self.radius = self._box.radius
        self.compression = compression
        self._provenance = dict(provenance or {})
        self._seen_ids: set[tuple[int, int]] = set()
        self._open_temporary(path, overwrite)
        try:
            self._file.create_group(_TRAJECTORIES, track_order=True)
            self._sample_ids = self._file.create_dataset(
                _SAMPLE_IDS, shape=(0, 2), maxshape=(None, 2), dtype="i8", chunks=(1024, 2), track_times=False
            )
        except BaseException:
            self.abort()
            raise
        logger.debug("writing %s through %s", self.path, self.temp_path)

    def update_provenance(self, values: Mapping[str, Any]) -> None:
        """Add or replace provenance entries (e.g. the total wall time) before :meth:`close` stores them."""
        if self._closed:
            raise ValueError(f"writer for {self.path} is closed")
        self._provenance.update(values)

    # -- writing -----------------------------------------------------------------------------------
    def append(self, trajectories: Sequence[ParticleTrajectory]) -> None:
        """Write ``trajectories`` after the ones already written, as groups ``trajectories/<row:06d>``.

        The whole call is checked before any of it is written: a rejected call leaves the file as it was
        and the writer usable.

        Parameters
        ----------
        trajectories
            Records to store; ``N`` and ``T`` may differ between them, ``d`` must be the file's.

        Raises
        ------
        TypeError
            ``trajectories`` is not a sequence of :class:`ParticleTrajectory`.
        ValueError
            Naming the sample id: a ``d`` other than the file's; param names that differ from the
            file's (or from the first trajectory of the file); a sample id already in the file or twice
            in the call; a non-finite value in any array or param (also after the cast to float32),
            naming the field; a position outside ``[lower, upper]`` on a non-periodic axis (beyond
            ``1e-9`` of the box length), naming the frame and the particle.
        """
        if self._closed:
            raise ValueError(f"writer for {self.path} is closed")
        if isinstance(trajectories, ParticleTrajectory) or not isinstance(trajectories, Sequence):
            raise TypeError(f"append takes a sequence of ParticleTrajectory, got {type(trajectories).__name__}")
        for item in trajectories:
            if not isinstance(item, ParticleTrajectory):
                raise TypeError(f"append takes ParticleTrajectory records, got {type(item).__name__}")
        if not trajectories:
            return
        param_names = self._schema if self._schema is not None else tuple(trajectories[0].params)
        call_ids: set[tuple[int, int]] = set()
        stored = [self._checked(traj, param_names, call_ids) for traj in trajectories]

        start = self._num_samples
        try:
            group = self._file[_TRAJECTORIES]
            for offset, (traj, arrays) in enumerate(zip(trajectories, stored, strict=True)):
                self._write_one(group.create_group(_row_name(start + offset)), traj, arrays, param_names)
            stop = start + len(trajectories)
            self._sample_ids.resize(stop, axis=0)
            self._sample_ids[start:stop] = np.array([t.sample_id for t in trajectories], dtype=np.int64)
        except BaseException:
            logger.error("writing to %s failed; discarding the partial file", self.temp_path)
            self.abort()
            raise
        self._schema = param_names
        self._seen_ids |= call_ids
        self._num_samples = stop
        logger.debug("appended %d trajectories to %s (%d in all)", len(trajectories), self.path, stop)

    def _checked(
        self, traj: ParticleTrajectory, param_names: tuple[str, ...], call_ids: set[tuple[int, int]]
    ) -> dict[str, np.ndarray]:
        """Check one record against the file; return its arrays as stored (cast, positions clamped)."""
        sid = traj.sample_id
        where = f"sample {sid}: "
        if traj.dim != self.dim:
            raise ValueError(f"{where}positions have d = {traj.dim} but the file {self.path} has dim {self.dim}")
        if set(traj.params) != set(param_names):
            missing = sorted(set(param_names) - set(traj.params))
            extra = sorted(set(traj.params) - set(param_names))
            raise ValueError(
                f"{where}param names {sorted(traj.params)} differ from the file's {sorted(param_names)} "
                f"(missing {missing}, extra {extra}); every trajectory of a file needs the same params"
            )
        if sid in self._seen_ids:
            raise ValueError(f"{where}sample id {sid} is already in {self.path}")
        if sid in call_ids:
            raise ValueError(f"{where}sample id {sid} appears twice in this append call")
        for name, value in traj.params.items():
            if not math.isfinite(value):
                raise ValueError(
                    f"{where}param {name!r} is not finite ({value!r}); not writing this call to {self.path}"
                )
        arrays: dict[str, np.ndarray] = {}
        for name, dtype in _STORED_DTYPES.items():
            value = getattr(traj, name)
            if name == "positions":
                first = self._box.first_outside(value) if np.isfinite(value).all() else None
                if first is not None:
                    frame, particle, axis = first
                    raise ValueError(
                        f"{where}particle {particle} at frame {frame} is at {value[frame, particle].tolist()}, "
                        f"outside the box [{list(self._box.lower)}, {list(self._box.upper)}] on non-periodic "
                        f"axis {axis}; not writing this call to {self.path}"
                    )
                clamp_lo = np.where(self.periodic, -np.inf, self.lower)
                clamp_hi = np.where(self.periodic, np.inf, self.upper)
                value = np.clip(value.astype(np.float64), clamp_lo, clamp_hi)
            with np.errstate(over="ignore", invalid="ignore"):
                array = np.asarray(value).astype(dtype)
            if array.dtype.kind == "f" and not np.isfinite(array).all():
                bad = np.argwhere(~np.isfinite(array))
                raise ValueError(
                    f"{where}{name} has {len(bad)} non-finite value(s) (first at index {tuple(bad[0].tolist())}: "
                    f"{np.asarray(value)[tuple(bad[0])]!r}{', after the cast to float32' if dtype == 'f4' else ''}); "
                    f"not writing this call to {self.path}"
                )
            arrays[name] = array
        call_ids.add(sid)
        return arrays

    def _write_one(
        self, group: h5py.Group, traj: ParticleTrajectory, arrays: dict[str, np.ndarray], param_names: tuple[str, ...]
    ) -> None:
        options: dict[str, Any] = {"track_times": False}
        if self.compression is not None:
            options.update(
                compression=self.compression,
                compression_opts=4 if self.compression == "gzip" else None,
                shuffle=True,
            )
        for name, array in arrays.items():
            group.create_dataset(name, data=array, **options)
        group.attrs["seed"] = np.int64(traj.sample_id[0])
        group.attrs["index"] = np.int64(traj.sample_id[1])
        for name in param_names:
            group.attrs[f"{PARAM_PREFIX}{name}"] = np.float64(traj.params[name])

    def _write_attrs(self) -> None:
        attrs = self._file.attrs
        json_names: list[str] = []
        for key, value in self._provenance.items():
            name = f"{PROVENANCE_PREFIX}{key}"
            attrs[name], is_json = _encode_attr(value)
            if is_json:
                json_names.append(name)
        attrs["json_attrs"] = json.dumps(json_names)
        attrs[LAYOUT_ATTR] = LAYOUT
        attrs[VERSION_ATTR] = np.int64(PARTICLE_FORMAT_VERSION)
        attrs["lower"] = self.lower
        attrs["upper"] = self.upper
        attrs["periodic"] = self.periodic
        attrs["radius"] = np.float64(self.radius)
        attrs["dim"] = np.int64(self.dim)
        attrs["num_samples"] = np.int64(self._num_samples)
        attrs["param_names"] = json.dumps(list(self._schema or ()))

    def _written_message(self) -> str:
        return f"wrote {self._num_samples} particle trajectories (d = {self.dim}) to {self.path}"


# --------------------------------------------------------------------------------------------------
# Reader
# --------------------------------------------------------------------------------------------------


class ParticleDataset(_BoxProperties):
    """Lazy read-only view of a file written by :class:`ParticleDataWriter`.

    The metadata (box, radius, sample ids, provenance) is read and checked at construction, and the
    file closed again; the HDF5 handle for the data is opened on first use (and again after
    :meth:`close`, in a forked process, or after unpickling), so the dataset pickles by path and
    DataLoader workers open their own handle. Usable as a context manager.

    Parameters
    ----------
    path
        The HDF5 file.

    Raises
    ------
    FileNotFoundError
        ``path`` does not exist.
    ValueError
        Not an HDF5 file, not a particle data file (root attribute ``pdebench_layout`` missing or not
        ``"particles"``), or a newer format version.

    Examples
    --------
    >>> with ParticleDataset("dam_break.h5") as data:         # doctest: +SKIP
    ...     trajectory = data[0]                               # ParticleTrajectory
    ...     graph = data.to_pyg(0, frame=10, history=5)        # torch_geometric Data
    """

    def __init__(self, path: PathLike) -> None:
        self.path = Path(path)
        if not self.path.exists():
            raise FileNotFoundError(f"no such particle data file: {self.path}")
        if self.path.is_dir() or not h5py.is_hdf5(self.path):
            raise ValueError(f"{self.path} is not an HDF5 file")
        self._file: h5py.File | None = None
        self._pid: int | None = None
        self._params: dict[str, np.ndarray] | None = None
        with h5py.File(self.path, "r") as file:
            self._read_metadata(file)

    def _read_metadata(self, file: h5py.File) -> None:
        attrs = file.attrs
        layout = _decode_attr(attrs[LAYOUT_ATTR]) if LAYOUT_ATTR in attrs else None
        if layout != LAYOUT:
            found = f"{LAYOUT_ATTR}={layout!r}" if layout is not None else f"no {LAYOUT_ATTR} attribute"
            raise ValueError(
                f"{self.path} is not a particle data file (expected root attribute {LAYOUT_ATTR}={LAYOUT!r}, found "
                f"{found}; attributes {sorted(attrs)}, members {sorted(file)})"
            )
        version = int(_decode_attr(attrs.get(VERSION_ATTR, PARTICLE_FORMAT_VERSION)))
        if version > PARTICLE_FORMAT_VERSION:
            raise ValueError(
                f"{self.path} has particle format version {version}; this reader knows up to {PARTICLE_FORMAT_VERSION}"
            )
        self._radius = float(attrs["radius"])
        self._box = ParticleBox.of(attrs["lower"], attrs["upper"], attrs["periodic"], self._radius)
        self._sample_ids = np.asarray(file[_SAMPLE_IDS][()], dtype=np.int64).reshape(-1, 2)
        self._param_names: list[str] = json.loads(_decode_attr(attrs.get("param_names", "[]")))
        json_names = _json_attr_names(attrs)
        self._provenance = {
            name[len(PROVENANCE_PREFIX) :]: _decode_attr(value, is_json=name in json_names)
            for name, value in attrs.items()
            if name.startswith(PROVENANCE_PREFIX)
        }

    # -- lifetime ----------------------------------------------------------------------------------
    def _handle(self) -> h5py.File:
        if self._file is None or self._pid != os.getpid() or not self._file.id.valid:
            self._file = h5py.File(self.path, "r")
            self._pid = os.getpid()
        return self._file

    def close(self) -> None:
        """Close the HDF5 handle (if open); a later read opens it again."""
        if self._file is not None and self._pid == os.getpid():
            self._file.close()
        self._file = None
        self._pid = None

    def __enter__(self) -> ParticleDataset:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_file"] = None
        state["_pid"] = None
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)

    def __repr__(self) -> str:
        return (
            f"ParticleDataset({str(self.path)!r}, n={len(self)}, dim={self.dim}, radius={self.radius:g}, "
            f"box=[{self.lower.tolist()}, {self.upper.tolist()}], periodic={self.periodic.tolist()}, "
            f"params={self._param_names})"
        )

    # -- metadata ----------------------------------------------------------------------------------
    def __len__(self) -> int:
        return int(self._sample_ids.shape[0])

    @property
    def sample_ids(self) -> np.ndarray:
        """``(n, 2)`` int64 ``(seed, index)`` of each trajectory (a copy)."""
        return self._sample_ids.copy()

    @property
    def radius(self) -> float:
        """Kernel interaction radius (m) used by :meth:`to_pyg`."""
        return self._radius

    @property
    def provenance(self) -> dict[str, Any]:
        """The writer's provenance (``provenance.*`` attributes)."""
        return dict(self._provenance)

    @property
    def params(self) -> dict[str, np.ndarray]:
        """Param name -> ``(n,)`` float64 values, one per trajectory (read once, then cached; copies)."""
        if self._params is None:
            groups = self._handle()[_TRAJECTORIES]
            values = {name: np.empty(len(self), dtype=np.float64) for name in self._param_names}
            for row in range(len(self)):
                attrs = groups[_row_name(row)].attrs
                for name in self._param_names:
                    values[name][row] = float(attrs[f"{PARAM_PREFIX}{name}"])
            self._params = values
        return {name: array.copy() for name, array in self._params.items()}

    # -- data --------------------------------------------------------------------------------------
    def _index(self, i: int) -> int:
        n = len(self)
        index = int(i) + (n if int(i) < 0 else 0)
        if not 0 <= index < n:
            raise IndexError(f"trajectory {i} is out of range for {n} trajectories (valid: {-n} .. {n - 1})")
        return index

    def _group(self, index: int) -> h5py.Group:
        return self._handle()[_TRAJECTORIES][_row_name(index)]

    def __getitem__(self, i: int) -> ParticleTrajectory:
        """Trajectory ``i`` (negative counts from the end), with arrays as stored (float32 fields,
        float64 ``time`` and ``mass``, int64 ``particle_type``)."""
        index = self._index(i)
        group = self._group(index)
        data = {name: group[name][()] for name in _STORED_DTYPES}
        data["particle_type"] = data["particle_type"].astype(np.int64)
        return ParticleTrajectory(
            sample_id=(int(self._sample_ids[index, 0]), int(self._sample_ids[index, 1])),
            params={name: float(group.attrs[f"{PARAM_PREFIX}{name}"]) for name in self._param_names},
            **data,
        )

    def to_pyg(self, i: int, frame: int, history: int = 1) -> Data:
        """Frame ``frame`` of trajectory ``i`` as a radius graph with the file's radius and box.

        Reads only the frames needed (``0`` for ``rho_ref``, ``frame - history + 1 .. frame + 1``).
        See :func:`frame_graph` for the attributes.
        """
        group = self._group(self._index(i))
        num_frames = group["time"].shape[0]
        frame = _frame_index(frame, num_frames, history)
        nxt = frame + 1 if frame + 1 < num_frames else None
        stop = frame + 1 if nxt is None else frame + 2
        velocities = group["velocities"][frame - history + 1 : stop]
        time = group["time"][frame - history + 1 : stop]
        particle_type = group["particle_type"][()].astype(np.int64)
        return _graph(
            positions=group["positions"][frame],
            velocities=velocities[:history],
            density=group["density"][frame],
            rho_ref=_reference_density(group["density"][0], particle_type),
            particle_type=particle_type,
            time=float(time[history - 1]),
            acceleration=None if nxt is None else _acceleration(velocities[-2:], time[-2:]),
            box=self._box,
            where=f"{self.path} trajectory {i} frame {frame}",
        )


def read_particle_data(path: PathLike) -> ParticleDataset:
    """Open a particle data file lazily (same as ``ParticleDataset(path)``; close it, or use ``with``)."""
    return ParticleDataset(path)


# --------------------------------------------------------------------------------------------------
# Graphs
# --------------------------------------------------------------------------------------------------


def _frame_index(frame: int, num_frames: int, history: int) -> int:
    if not isinstance(history, int | np.integer) or history < 1:
        raise ValueError(f"history must be a positive integer, got {history!r}")
    index = int(frame) + (num_frames if int(frame) < 0 else 0)
    if not 0 <= index < num_frames:
        raise IndexError(f"frame {frame} is out of range for {num_frames} frames")
    if index < history - 1:
        raise ValueError(
            f"frame {index} has only {index + 1} frame(s) of history; "
            f"history={history} needs frame >= {history - 1}"
        )
    return index


def _reference_density(density0: np.ndarray, particle_type: np.ndarray) -> float:
    """Median fluid density at frame 0 (all particles when there is no fluid)."""
    fluid = particle_type == FLUID
    rho_ref = float(np.median(density0[fluid] if fluid.any() else density0))
    if not (math.isfinite(rho_ref) and rho_ref > 0.0):
        raise ValueError(
            f"reference density (median fluid density at frame 0) must be positive and finite, got {rho_ref!r}"
        )
    return rho_ref


def _acceleration(velocities: np.ndarray, time: np.ndarray) -> np.ndarray:
    """``(v[1] - v[0]) / (t[1] - t[0])`` in float64 from ``(2, N, d)`` velocities and ``(2,)`` times."""
    v = velocities.astype(np.float64)
    return (v[1] - v[0]) / (float(time[1]) - float(time[0]))


def _graph(
    *,
    positions: np.ndarray,
    velocities: np.ndarray,
    density: np.ndarray,
    rho_ref: float,
    particle_type: np.ndarray,
    time: float,
    acceleration: np.ndarray | None,
    box: ParticleBox,
    where: str,
) -> Data:
    """Assemble the :class:`Data` of one frame; arrays as described in :func:`frame_graph`."""
    n, d = positions.shape
    if d != box.dim:
        raise ValueError(f"{where}: positions have d = {d} but the box has {box.dim} axes")
    first = box.first_outside(positions)
    if first is not None:
        particle, axis = first
        raise ValueError(
            f"{where}: particle {particle} at {positions[particle].tolist()} is outside the box "
            f"[{list(box.lower)}, {list(box.upper)}] on non-periodic axis {axis}"
        )
    pos, edge_index, edge_attr = particle_edges(torch.from_numpy(np.asarray(positions, dtype=np.float64)), box)

    kind = torch.from_numpy(np.asarray(particle_type, dtype=np.int64))
    vel = np.asarray(velocities, dtype=np.float32)  # (history, N, d) -> (N, history * d), oldest first
    features = [
        torch.from_numpy(np.ascontiguousarray(vel.transpose(1, 0, 2).reshape(n, -1))),
        torch.from_numpy((np.asarray(density, dtype=np.float64) / rho_ref).astype(np.float32)).unsqueeze(1),
        torch.nn.functional.one_hot(kind, num_classes=len(_PARTICLE_TYPES)).to(torch.float32),
    ]
    data = Data(
        x=torch.cat(features, dim=1),
        pos=pos.to(torch.float32),
        edge_index=edge_index,
        edge_attr=edge_attr,
        particle_type=kind,
        time=torch.tensor(time, dtype=torch.float64),
    )
    if acceleration is not None:
        data.y = torch.from_numpy(np.asarray(acceleration, dtype=np.float32))
    return data


def frame_graph(
    trajectory: ParticleTrajectory,
    frame: int,
    *,
    radius: float,
    lower: Sequence[float] | np.ndarray,
    upper: Sequence[float] | np.ndarray,
    periodic: Sequence[bool] | np.ndarray | None = None,
    history: int = 1,
) -> Data:
    r"""One frame of a trajectory as a radius graph (a :class:`torch_geometric.data.Data`).

    Nodes are the ``N`` particles; there is one edge per ordered pair ``(i, j)``, ``i != j``, with
    ``|x_i - x_j| < radius`` (minimum image on periodic axes), built by
    :func:`pdebench.core.graphs.particle_edges` (the graph the trained graph models consume); both
    directions are present.

    Parameters
    ----------
    trajectory
        The record, ``T`` frames of ``N`` particles in ``d`` dimensions.
    frame
        Frame index (negative counts from the end); ``frame >= history - 1``.
    radius
        Interaction radius (m); also the length unit of ``edge_attr``.
    lower, upper
        ``(d,)`` box corners (m). Positions on non-periodic axes must lie inside (tolerance ``1e-9`` of
        the box length); on periodic axes they are wrapped into the box.
    periodic
        ``(d,)`` periodic axes (default: none); such an axis must be at least ``2 radius`` long.
    history
        Number of velocity frames in the node features (``frame - history + 1 .. frame``).

    Returns
    -------
    torch_geometric.data.Data
        With, for ``N`` nodes, ``E`` edges and ``C = history * d + 3`` node channels:

        * ``pos`` ``(N, d)`` float32 -- positions at ``frame`` (m), wrapped into the box on periodic
          axes (clamped onto the faces within the tolerance on the others);
        * ``particle_type`` ``(N,)`` int64 -- 0 fluid, 1 wall;
        * ``x`` ``(N, C)`` float32 -- node features: columns ``[k d, (k + 1) d)`` are the velocities
          (m/s) at frame ``frame - history + 1 + k`` (oldest first, the current frame last), then
          ``density / rho_ref`` (1 column; ``rho_ref`` the median fluid density at frame 0, or of all
          particles when there is no fluid), then a one-hot of the particle type (2 columns:
          fluid, wall);
        * ``edge_index`` ``(2, E)`` int64 -- ``edge_index[0]`` the source ``j`` (the neighbour),
          ``edge_index[1]`` the target ``i`` (PyG's ``flow="source_to_target"``: messages pass from
          ``j`` to ``i``), sorted by target, then source;
        * ``edge_attr`` ``(E, d)`` float32 -- ``(x_i - x_j) / radius`` (minimum image on periodic
          axes; ``x_i = pos[edge_index[1]]``; each row of norm < 1), computed in float64;
        * ``y`` ``(N, d)`` float32 -- the acceleration target
          :math:`(v^{f+1} - v^{f}) / (t^{f+1} - t^{f})` (m/s^2), present only when frame ``f + 1``
          exists;
        * ``time`` 0-d float64 tensor -- the physical time of ``frame`` (s).

    Raises
    ------
    IndexError
        ``frame`` out of range.
    ValueError
        ``history < 1`` or ``frame < history - 1``; a bad box or radius; a particle outside the box on a
        non-periodic axis (named); a non-positive reference density.

    Examples
    --------
    >>> graph = frame_graph(trajectory, 10, radius=0.04, lower=[0, 0], upper=[4, 2], history=5)  # doctest: +SKIP
    >>> graph.x.shape, graph.edge_attr.shape                                                      # doctest: +SKIP
    (torch.Size([N, 13]), torch.Size([E, 2]))
    """
    box = ParticleBox.of(lower, upper, periodic, radius)
    frame = _frame_index(frame, trajectory.num_frames, history)
    pair = slice(frame, frame + 2)
    nxt = frame + 1 if frame + 1 < trajectory.num_frames else None
    return _graph(
        positions=trajectory.positions[frame],
        velocities=trajectory.velocities[frame - history + 1 : frame + 1],
        density=trajectory.density[frame],
        rho_ref=_reference_density(trajectory.density[0], trajectory.particle_type),
        particle_type=trajectory.particle_type,
        time=float(trajectory.time[frame]),
        acceleration=None if nxt is None else _acceleration(trajectory.velocities[pair], trajectory.time[pair]),
        box=box,
        where=f"sample {trajectory.sample_id} frame {frame}",
    )
