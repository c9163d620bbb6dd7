"""The registered SPH solver: runs particle scenes and records their frames.

``SPHSolver.solve(problem, scenes, sample_ids)`` advances each
:class:`~pdebench.problems.particles.ParticleScene` with the
:class:`~pdebench.solvers.sph.scheme.WCSPH` stepper built from its physics record
(:meth:`WCSPH.from_settings` of ``scene.physics``; adaptive step, :meth:`WCSPH.stable_dt` each
step) and stores a frame at every output time ``t_j = j T / n_out`` of the problem (the last step
before a frame is shortened to land on it). Samples are independent (particle counts differ), so they
are solved one after another.

No time tolerance can be certified here (:attr:`SPHSolver.no_time_certificate`, recorded as
``provenance["error_estimate"]``); ``benchmarks/study_sph_resolution.py`` measures the error against
the analytic start-up Poiseuille flow at three resolutions instead.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal

import numpy as np
import torch

from pdebench import __version__
from pdebench.core.particles import ParticleTrajectory
from pdebench.problems.particles import ParticleProblem, ParticleScene
from pdebench.solvers.base import DTYPES, SOLVERS, BlowUpError, check_dtype, solve_ids
from pdebench.solvers.sph.scheme import WCSPH

__all__ = ["ParticleSamples", "SPHSolver"]

log = logging.getLogger(__name__)


@dataclass
class ParticleSamples:
    """Solved particle trajectories of one call.

    Attributes
    ----------
    trajectories
        One :class:`~pdebench.core.particles.ParticleTrajectory` per kept sample.
    sample_ids
        ``(B, 2)`` int64 ``(seed, index)`` of the kept samples.
    provenance
        ``solver``, ``scheme``, ``kernel``, ``dtype``, ``steps`` (total), ``dropped``, ``wall_time_s``.
    """

    trajectories: list[ParticleTrajectory]
    sample_ids: np.ndarray
    provenance: dict[str, Any] = field(default_factory=dict)

    @property
    def fields(self) -> dict[str, np.ndarray]:
        """No grid fields: particle data is ragged (see :attr:`trajectories`)."""
        return {}

    def __len__(self) -> int:
        return len(self.trajectories)


@SOLVERS.register("sph", record="particles", description="Weakly compressible SPH (torch): Wendland/cubic kernels, "
                  "cell lists, Tait EOS, delta-SPH, Adami walls, kick-drift-kick")
class SPHSolver:
    """Weakly compressible SPH solves of the particle problems (see the module docstring).

    Parameters
    ----------
    dtype
        ``"float64"`` (default) or ``"float32"`` particle arithmetic.
    """

    #: Why this solver takes no ``rtol`` (``pdebench list``, the refusal of ``--rtol``, the files' certificate).
    no_time_certificate: ClassVar[str] = (
        "weakly compressible SPH converges only as the particle count and the smoothing length are refined "
        "together, and no a-posteriori estimate of a frame's error exists (benchmarks/study_sph_resolution.py "
        "measures the convergence)")

    def __init__(self, dtype: Literal["float64", "float32"] = "float64") -> None:
        self.dtype = check_dtype(dtype)

    def provenance(self) -> dict[str, Any]:
        """``solver``, ``scheme``, ``dtype``, ``pdebench_version`` and ``error_estimate`` (``method``
        ``"none"``, ``certified`` false and the ``reason``) of this solver's runs."""
        return {"solver": "sph", "scheme": "wcsph-kdk", "dtype": self.dtype, "pdebench_version": __version__,
                "error_estimate": {"method": "none", "certified": False, "reason": self.no_time_certificate}}

    def run_scene(self, problem: ParticleProblem, scene: ParticleScene, sample_id: tuple[int, int] = (-1, -1),
                  callback: Callable[[Any], None] | None = None) -> tuple[ParticleTrajectory, int]:
        """Advance one scene through the problem's output times.

        Returns
        -------
        (ParticleTrajectory, int)
            The frames (``T = n_out + 1``) and the number of steps taken.

        Raises
        ------
        BlowUpError
            Non-finite values (naming ``sample_id``).
        ValueError
            A rejected state (see :meth:`WCSPH.check_state`) or a particle leaving the box.
        """
        dtype = DTYPES[self.dtype]
        solver = WCSPH.from_settings(scene.physics)
        state = scene.state
        if state.positions.dtype != dtype:
            state = type(state)(*(getattr(state, n).to(dtype) for n in ("positions", "velocities", "density", "mass")),
                                particle_type=state.particle_type, time=state.time)
        solver.check_state(state)
        times = problem.output_times()
        frames = [state]
        steps = [0]

        def count(s: Any) -> None:
            steps[0] += 1
            if callback is not None:
                callback(s)

        try:
            for t in times[1:]:
                state = solver.run(state, float(t), callback=count)
                frames.append(state)
        except BlowUpError as exc:
            raise BlowUpError([sample_id], exc.time, problem.name) from exc

        def stack(name: str) -> np.ndarray:
            return torch.stack([getattr(f, name) for f in frames]).cpu().numpy()

        rates = [solver.rates(f, with_density_rate=False) for f in frames]  # wall pressure and density
        density = torch.stack([torch.where(f.fluid, f.density, r.density) for f, r in zip(frames, rates)])
        pressure = torch.stack([r.pressure for r in rates])
        trajectory = ParticleTrajectory(
            sample_id=(int(sample_id[0]), int(sample_id[1])),
            time=np.asarray(times, dtype=np.float64),
            positions=stack("positions"),
            velocities=stack("velocities"),
            density=density.cpu().numpy(),
            pressure=pressure.cpu().numpy(),
            particle_type=state.particle_type.cpu().numpy().astype(np.int8),
            mass=state.mass.cpu().numpy().astype(np.float64),
            params=dict(scene.params),
        )
        return trajectory, steps[0]

    def solve(
        self,
        problem: ParticleProblem,
        scenes: Sequence[ParticleScene],
        sample_ids: np.ndarray | Sequence[tuple[int, int]] | None = None,
        *,
        on_blowup: Literal["raise", "drop"] = "raise",
        progress: Callable[[int], None] | None = None,
    ) -> ParticleSamples:
        """Solve every scene (``problem.sample_initial_conditions`` gives them).

        Parameters
        ----------
        problem
            A :class:`~pdebench.problems.particles.ParticleProblem` (output times, name).
        scenes
            One scene per sample.
        sample_ids
            ``(B, 2)`` ``(seed, index)``; default ``(-1, row)``.
        on_blowup
            A non-finite sample raises :class:`BlowUpError` or is dropped and counted in
            ``provenance["dropped"]``.
        progress
            Called with 1 after each sample.
        """
        ids = solve_ids(sample_ids, len(scenes), on_blowup)
        start = time.perf_counter()
        kept, kept_ids, total_steps, dropped = [], [], 0, 0
        for scene, sid in zip(scenes, ids):
            try:
                trajectory, steps = self.run_scene(problem, scene, (int(sid[0]), int(sid[1])))
            except BlowUpError:
                if on_blowup == "raise":
                    raise
                dropped += 1
                log.warning("%s: sample %s blew up and was dropped", problem.name, tuple(sid))
                continue
            kept.append(trajectory)
            kept_ids.append(sid)
            total_steps += steps
            if progress is not None:
                progress(1)
        provenance = {**self.provenance(), "steps": total_steps, "dropped": dropped,
                      "wall_time_s": time.perf_counter() - start}
        return ParticleSamples(kept, np.asarray(kept_ids, dtype=np.int64).reshape(-1, 2), provenance)
