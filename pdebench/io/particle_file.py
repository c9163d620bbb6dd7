"""The particle layout: HDF5 files of particle (SPH) trajectories.

A particle solver (:mod:`pdebench.solvers.sph`) gives, per sample, the positions, velocities,
densities and pressures of ``N`` particles at ``T`` frames. :class:`ParticleDataWriter` streams such
:class:`~pdebench.core.particles.ParticleTrajectory` records into one file, atomically; :class:`ParticleDataset` reads them
lazily; :meth:`ParticleDataset.to_pyg` (and :func:`pdebench.core.graphs.frame_graph` for a record)
turns one frame into a :class:`torch_geometric.data.Data` radius graph for graph network simulators.

File layout (root attributes ``pdebench_layout = "particles"``, ``pdebench_format_version = 1``; files
written before the tag was unified have ``pdebench_particles_format_version`` instead):

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
  ``num_samples``, ``param_names`` (JSON list), ``provenance.<key>`` (the codec of :mod:`pdebench.io.base`).

Solvers compute in float64; the file stores the particle fields as float32 like
the other layouts (``time`` and ``mass`` stay float64). Positions on non-periodic axes that
lie outside the box by less than the tolerance (``1e-9`` of the box length) are clamped onto the box
face before the cast, so every stored frame passes the neighbour search's box check. Positions on
periodic axes are stored as given (possibly unwrapped); the graphs wrap them.

The writer is the atomic writer of :mod:`pdebench.io.base`: nothing appears under the final name
unless complete. Each
:meth:`ParticleDataWriter.append` checks its whole batch (shapes, finiteness, box, sample ids, param
names) before writing any of it.

Graph convention (:func:`pdebench.core.graphs.particle_graph`, the same function
:class:`~pdebench.data.graph_datamodule.GraphDataModule` uses): nodes are the particles; there
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
from collections.abc import Mapping, Sequence
from typing import Any

import h5py
import numpy as np
from torch_geometric.data import Data

from pdebench.core.graphs import ParticleBox, frame_acceleration, frame_index, particle_frame_graph, reference_density
from pdebench.core.particles import ParticleTrajectory
from pdebench.io.base import AtomicHDF5Writer, H5Reader, PathLike, json_list, read_attrs, write_attrs

__all__ = ["LAYOUT", "ParticleDataWriter", "ParticleDataset"]

logger = logging.getLogger(__name__)

LAYOUT = "particles"
"""Value of the layout tag (root attribute ``pdebench_layout``) of particle data files."""
PARTICLE_FORMAT_VERSION = 1
"""Version of the layout written by :class:`ParticleDataWriter` (root attribute ``pdebench_format_version``)."""
LEGACY_ATTRS = (None, "pdebench_particles_format_version")
"""The version attribute of particle files written before the layout tag was unified (still read)."""

PARAM_PREFIX = "params."
_TRAJECTORIES = "trajectories"
_SAMPLE_IDS = "sample_ids"
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
    """Stream :class:`ParticleTrajectory` records into an HDF5 file, atomically
    (:class:`~pdebench.io.base.AtomicHDF5Writer`).

    The box is checked in the constructor; each :meth:`append` checks its whole batch before it writes
    it. See the module docstring for the layout.

    Parameters
    ----------
    path, overwrite, provenance, compression
        As for every writer (:class:`~pdebench.io.base.AtomicHDF5Writer`); ``provenance`` holds the
        solver, version, kernel, wall time, ...
    lower, upper
        ``(d,)`` corners of the domain box (m), ``d`` in 1, 2, 3; every trajectory must have this ``d``.
    periodic
        ``(d,)`` periodic axes (default: none). A periodic axis must be at least ``2 radius`` long.
    radius
        Kernel interaction radius (m), e.g. the support ``2h`` of the smoothing kernel; graphs of the
        file's frames connect particles closer than this.

    Raises
    ------
    ValueError
        A bad box, ``radius`` or ``compression``.

    Examples
    --------
    >>> with ParticleDataWriter("dam_break.h5", lower=[0, 0], upper=[4, 2], radius=0.04) as writer:  # doctest: +SKIP
    ...     for scene in scenes:
    ...         writer.append([solve(scene)])
    """

    LAYOUT = LAYOUT
    FORMAT_VERSION = PARTICLE_FORMAT_VERSION
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
        self._box = ParticleBox.of(lower, upper, periodic, radius)
        self.radius = self._box.radius
        self._open_temporary(path, overwrite, compression, provenance)
        try:
            self._file.create_group(_TRAJECTORIES, track_order=True)
            self._sample_ids = self._file.create_dataset(
                _SAMPLE_IDS, shape=(0, 2), maxshape=(None, 2), dtype="i8", chunks=(1024, 2), track_times=False
            )
        except BaseException:
            self.abort()
            raise

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
        self._check_open()
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
        for name, array in arrays.items():
            group.create_dataset(name, data=array, **self._compression_options())
        group.attrs["seed"] = np.int64(traj.sample_id[0])
        group.attrs["index"] = np.int64(traj.sample_id[1])
        for name in param_names:
            group.attrs[f"{PARAM_PREFIX}{name}"] = np.float64(traj.params[name])

    def _write_attrs(self) -> None:
        attrs = self._file.attrs
        write_attrs(attrs, {}, self._provenance)
        attrs["lower"] = self.lower
        attrs["upper"] = self.upper
        attrs["periodic"] = self.periodic
        attrs["radius"] = np.float64(self.radius)
        attrs["dim"] = np.int64(self.dim)
        attrs["param_names"] = json.dumps(list(self._schema or ()))

    def _written_message(self) -> str:
        return f"wrote {self._num_samples} particle trajectories (d = {self.dim}) to {self.path}"


# --------------------------------------------------------------------------------------------------
# Reader
# --------------------------------------------------------------------------------------------------


class ParticleDataset(_BoxProperties, H5Reader):
    """Lazy read-only view of a file written by :class:`ParticleDataWriter`.

    The metadata (box, radius, sample ids, provenance) is read and checked at opening; opening,
    closing and pickling are those of :class:`~pdebench.io.base.H5Reader` (DataLoader workers open
    their own handle). Files written before the layout tag was unified (:data:`LEGACY_ATTRS`) read
    the same.

    Parameters
    ----------
    path
        The HDF5 file.

    Raises
    ------
    FileNotFoundError, ValueError
        As :class:`~pdebench.io.base.H5Reader`; also ``ValueError`` for a file that is not a particle
        data file (``pdebench_layout`` missing or not ``"particles"``) or of a newer format version.

    Examples
    --------
    >>> with ParticleDataset("dam_break.h5") as data:         # doctest: +SKIP
    ...     trajectory = data[0]                               # ParticleTrajectory
    ...     graph = data.to_pyg(0, frame=10, history=5)        # torch_geometric Data
    """

    _what = "particle data"
    _layout = (LAYOUT, PARTICLE_FORMAT_VERSION, LEGACY_ATTRS)

    def _read(self, file: h5py.File) -> None:
        attrs = file.attrs
        self._radius = float(attrs["radius"])
        self._box = ParticleBox.of(attrs["lower"], attrs["upper"], attrs["periodic"], self._radius)
        self._sample_ids = np.asarray(file[_SAMPLE_IDS][()], dtype=np.int64).reshape(-1, 2)
        self._num_rows = len(self._sample_ids)
        self._param_names: list[str] = json_list(attrs, "param_names")
        self._provenance = read_attrs(attrs, frozenset())[1]
        self._param_values: dict[str, np.ndarray] | None = None

    def _describe(self) -> str:
        return (f", dim={self.dim}, radius={self.radius:g}, box=[{self.lower.tolist()}, {self.upper.tolist()}], "
                f"periodic={self.periodic.tolist()}, params={self._param_names}")

    @property
    def radius(self) -> float:
        """Kernel interaction radius (m) used by :meth:`to_pyg`."""
        return self._radius

    @property
    def params(self) -> dict[str, np.ndarray]:
        """Param name -> ``(n,)`` float64 values, one per trajectory (read once, then cached; copies)."""
        groups = self._handle()[_TRAJECTORIES]
        if self._param_values is None:
            values = {name: np.empty(len(self), dtype=np.float64) for name in self._param_names}
            for row in range(len(self)):
                attrs = groups[_row_name(row)].attrs
                for name in self._param_names:
                    values[name][row] = float(attrs[f"{PARAM_PREFIX}{name}"])
            self._param_values = values
        return {name: array.copy() for name, array in self._param_values.items()}

    # -- data --------------------------------------------------------------------------------------
    def _group(self, index: int) -> h5py.Group:
        return self._handle()[_TRAJECTORIES][_row_name(index)]

    def __getitem__(self, i: int) -> ParticleTrajectory:
        """Trajectory ``i`` (negative counts from the end), with arrays as stored (float32 fields,
        float64 ``time`` and ``mass``, int64 ``particle_type``)."""
        index = self._row(i)
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
        See :func:`pdebench.core.graphs.frame_graph` for the attributes.
        """
        group = self._group(self._row(i))
        num_frames = group["time"].shape[0]
        frame = frame_index(frame, num_frames, history)
        nxt = frame + 1 if frame + 1 < num_frames else None
        stop = frame + 1 if nxt is None else frame + 2
        velocities = group["velocities"][frame - history + 1 : stop]
        time = group["time"][frame - history + 1 : stop]
        particle_type = group["particle_type"][()].astype(np.int64)
        return particle_frame_graph(
            positions=group["positions"][frame],
            velocities=velocities[:history],
            density=group["density"][frame],
            rho_ref=reference_density(group["density"][0], particle_type),
            particle_type=particle_type,
            time=float(time[history - 1]),
            acceleration=None if nxt is None else frame_acceleration(velocities[-2:], time[-2:]),
            box=self._box,
            where=f"{self.path} trajectory {i} frame {frame}",
        )
