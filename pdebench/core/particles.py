"""The particle records that flow from the SPH solver to its sinks: one state and one trajectory.

:data:`FLUID` and :data:`WALL` are the particle types; :class:`ParticleState` holds the particles of
a scene at one time (what a particle problem builds and the stepper of :mod:`pdebench.solvers.sph`
advances); :class:`ParticleTrajectory` holds the frames of one solved sample (what the solver returns
and :mod:`pdebench.io.particle_file` stores), as :mod:`.trajectories` holds the grid record.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

__all__ = ["FLUID", "WALL", "ParticleState", "ParticleTrajectory"]

FLUID = 0
"""Particle type of a fluid particle."""
WALL = 1
"""Particle type of a fixed wall (dummy) particle."""
_PARTICLE_TYPES = (FLUID, WALL)


@dataclass
class ParticleState:
    """Particles at one time.

    Parameters
    ----------
    positions
        ``(N, d)`` positions (m).
    velocities
        ``(N, d)`` velocities (m/s); wall particles carry their (zero) physical velocity.
    density
        ``(N,)`` densities (kg/m³); for wall particles the value from the last wall update.
    mass
        ``(N,)`` masses (kg), constant in time.
    particle_type
        ``(N,)`` integer particle type: :data:`FLUID` (0) or :data:`WALL` (1).
    time
        Physical time (s).
    """

    positions: torch.Tensor
    velocities: torch.Tensor
    density: torch.Tensor
    mass: torch.Tensor
    particle_type: torch.Tensor
    time: float = 0.0

    def __post_init__(self) -> None:
        if self.positions.ndim != 2:
            raise ValueError(f"positions must have shape (N, d), got {tuple(self.positions.shape)}")
        n, d = self.positions.shape
        if tuple(self.velocities.shape) != (n, d):
            raise ValueError(f"velocities must have shape {(n, d)}, got {tuple(self.velocities.shape)}")
        for name in ("density", "mass", "particle_type"):
            shape = tuple(getattr(self, name).shape)
            if shape != (n,):
                raise ValueError(f"{name} must have shape {(n,)}, got {shape}")
        bad = ~((self.particle_type == FLUID) | (self.particle_type == WALL))
        if bool(bad.any()):
            raise ValueError(f"particle_type must be {FLUID} (fluid) or {WALL} (wall); "
                             f"got {self.particle_type[bad][:5].tolist()}")

    @property
    def fluid(self) -> torch.Tensor:
        """``(N,)`` boolean mask of fluid particles."""
        return self.particle_type == FLUID

    @property
    def num_particles(self) -> int:
        return int(self.positions.shape[0])

    def total_mass(self, fluid_only: bool = True) -> float:
        """Sum of particle masses (kg), by default of fluid particles only."""
        return float(self.mass[self.fluid].sum() if fluid_only else self.mass.sum())

    def kinetic_energy(self) -> float:
        """Fluid kinetic energy :math:`\\sum_i \\tfrac12 m_i |v_i|^2` (J)."""
        f = self.fluid
        return float(0.5 * (self.mass[f] * (self.velocities[f] ** 2).sum(-1)).sum())


def _real_array(value: Any, name: str, sample_id: Any) -> np.ndarray:
    """A float array (float32/float64 kept, integers -> float64); other kinds are a ``ValueError``."""
    if isinstance(value, torch.Tensor):
        value = value.detach().cpu().numpy()
    array = np.asarray(value)
    if array.dtype.kind in "iu":
        return array.astype(np.float64)
    if array.dtype.kind != "f":
        raise ValueError(f"sample {sample_id}: {name} must be a real floating-point array, got dtype {array.dtype}")
    return array


@dataclass
class ParticleTrajectory:
    """One solved particle trajectory: ``T`` frames of ``N`` particles in ``d`` dimensions.

    Arrays are converted to numpy on construction (torch tensors are accepted; integer arrays become
    float64, ``time`` always float64). Shapes, ``d``, ``time`` and ``particle_type`` are checked here;
    non-finite field values are allowed in the record (a blown-up solve can be inspected) but
    :class:`~pdebench.io.particle_file.ParticleDataWriter` refuses to store them.

    Parameters
    ----------
    sample_id
        ``(seed, index)`` of the sample.
    time
        ``(T,)`` physical time of each frame (s), finite and strictly increasing.
    positions
        ``(T, N, d)`` particle positions (m), ``d`` in 1, 2, 3.
    velocities
        ``(T, N, d)`` particle velocities (m/s).
    density
        ``(T, N)`` particle densities (kg/m^3).
    pressure
        ``(T, N)`` particle pressures (Pa).
    particle_type
        ``(N,)`` integer type of each particle, constant in time:
        :data:`FLUID` (0) or :data:`WALL` (1).
    mass
        ``(N,)`` particle masses (kg), constant in time.
    params
        The sampled scene parameters, name -> real scalar, e.g. ``{"aspect_ratio": 2.0, "nu": 1e-3}``.

    Raises
    ------
    ValueError
        A bad shape (naming the field, the shape found and the shape expected), ``d`` not in 1..3,
        ``T < 1`` or ``N < 1``, ``time`` not finite or not strictly increasing, a particle type other
        than 0 or 1, or a param that is not a real scalar.
    """

    sample_id: tuple[int, int]
    time: np.ndarray
    positions: np.ndarray
    velocities: np.ndarray
    density: np.ndarray
    pressure: np.ndarray
    particle_type: np.ndarray
    mass: np.ndarray
    params: dict[str, float]

    def __post_init__(self) -> None:
        sample_id = tuple(np.asarray(self.sample_id).reshape(-1).tolist())
        if len(sample_id) != 2 or not all(isinstance(v, int) and not isinstance(v, bool) for v in sample_id):
            raise ValueError(f"sample_id must be a pair of integers (seed, index), got {self.sample_id!r}")
        self.sample_id = (int(sample_id[0]), int(sample_id[1]))
        sid = self.sample_id

        self.positions = _real_array(self.positions, "positions", sid)
        if self.positions.ndim != 3:
            raise ValueError(f"sample {sid}: positions has shape {self.positions.shape}; expected (T, N, d)")
        t, n, d = self.positions.shape
        if d not in (1, 2, 3):
            raise ValueError(f"sample {sid}: positions has shape {self.positions.shape}; d = {d} must be 1, 2 or 3")
        if t < 1 or n < 1:
            raise ValueError(
                f"sample {sid}: positions has shape {self.positions.shape}; need T >= 1 frames and N >= 1 particles"
            )
        self.time = _real_array(self.time, "time", sid).astype(np.float64)
        self.velocities = _real_array(self.velocities, "velocities", sid)
        self.density = _real_array(self.density, "density", sid)
        self.pressure = _real_array(self.pressure, "pressure", sid)
        self.mass = _real_array(self.mass, "mass", sid)
        types = self.particle_type
        types = types.detach().cpu().numpy() if isinstance(types, torch.Tensor) else np.asarray(types)
        if types.dtype.kind not in "iu":
            raise ValueError(f"sample {sid}: particle_type must be an integer array, got dtype {types.dtype}")
        self.particle_type = types
        expected = {
            "time": (t,),
            "velocities": (t, n, d),
            "density": (t, n),
            "pressure": (t, n),
            "particle_type": (n,),
            "mass": (n,),
        }
        for name, shape in expected.items():
            found = getattr(self, name).shape
            if found != shape:
                raise ValueError(
                    f"sample {sid}: {name} has shape {found}; expected {shape} "
                    f"(T={t} frames, N={n} particles, d={d} from positions {self.positions.shape})"
                )
        if not np.isfinite(self.time).all():
            bad_times = self.time[~np.isfinite(self.time)][:5].tolist()
            raise ValueError(f"sample {sid}: time has non-finite values: {bad_times}")
        steps = np.diff(self.time)
        if (steps <= 0).any():
            k = int(np.flatnonzero(steps <= 0)[0])
            raise ValueError(
                f"sample {sid}: time must be strictly increasing; "
                f"time[{k}] = {self.time[k]!r} >= time[{k + 1}] = {self.time[k + 1]!r}"
            )
        bad = ~np.isin(self.particle_type, _PARTICLE_TYPES)
        if bad.any():
            raise ValueError(
                f"sample {sid}: particle_type must be {FLUID} (fluid) or {WALL} (wall); particle "
                f"{int(np.flatnonzero(bad)[0])} has {self.particle_type[bad][0]!r}"
            )
        params: dict[str, float] = {}
        for key, value in dict(self.params).items():
            if not isinstance(key, str) or not key:
                raise ValueError(f"sample {sid}: param names must be non-empty strings, got {key!r}")
            try:
                params[key] = float(value)
            except (TypeError, ValueError):
                raise ValueError(f"sample {sid}: param {key!r} must be a real scalar, got {value!r}") from None
        self.params = params

    @property
    def num_frames(self) -> int:
        """``T``."""
        return int(self.positions.shape[0])

    @property
    def num_particles(self) -> int:
        """``N``."""
        return int(self.positions.shape[1])

    @property
    def dim(self) -> int:
        """``d``."""
        return int(self.positions.shape[2])
