"""The batched pseudo-spectral solver: ETDRK4 in time, Fourier collocation in space."""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Sequence
from typing import Literal

import numpy as np
import torch

import pdebench
from pdebench.core.trajectories import Trajectories
from pdebench.solvers.base import DTYPES, SOLVERS, BlowUpError, StabilityError, check_dtype, solve_ids
from pdebench.solvers.certify import DEFAULT_RTOL, MAX_DOUBLINGS, MAX_RESTARTS, MIN_RTOL, StepDoubling, check_rtol
from pdebench.equations.spectral import SpectralEquation
from pdebench.solvers.spectral.etdrk4 import ETDRK4, flush_tiny_
from pdebench.equations.fourier import FourierGrid

__all__ = ["MIN_RTOL", "SpectralSolver", "equation_mask"]  # MIN_RTOL: solvers/certify.py's, the limit of rtol

log = logging.getLogger(__name__)


@SOLVERS.register("spectral", record="time-dependent", description="Batched pseudo-spectral ETDRK4 on torch.fft")
class SpectralSolver:
    r"""Batched pseudo-spectral ETDRK4 solver for periodic problems.

    The whole batch ``(B, *space)`` is stepped at once (one ``rfftn`` call per stage). Nonlinear
    equations are solved in dealiased Galerkin form: the state keeps only the modes of the 2/3 rule
    (1/2 rule for cubic terms); the stored first frame is the initial condition as given. The internal
    step of sample ``b`` is independent of the output interval: ``h_b = Δt_out / m_b`` with the
    smallest integer ``m_b`` such that ``h_b`` is at most both the requested ``dt`` (if any) and

    .. math:: h_{\max,b} = C / \max\{c_b |k| + r_b : |k| \text{ kept},\ -\mathrm{Re}\,L(k) < c_b |k| + r_b\},

    where ``c_b`` is the sample's transport speed, ``r_b`` its reaction rate (modes damped faster by
    the exact linear part than the nonlinear term moves them do not limit the step) and ``C`` the
    Courant number. Samples with equal ``m_b`` are stepped together, so a sample's result does not
    depend on its batch. The limit is re-evaluated after every output frame (a forced flow may speed
    up). A requested ``dt`` above the limit is an error, not a silent change.

    The equation comes from ``problem.equation_for(sample_ids)``. One with per-sample parameters
    (``equation.batch_size`` = ``B``; linear symbol ``(B, *spectral_shape)``, per-sample speeds and
    damping in the limit above) is narrowed to each group of equal ``m_b`` with
    ``equation.select(rows)``, one cached stepper per ``(m, rows)``; its per-row ETDRK4 coefficients
    are computed row by row and stored so that every row is stepped by the same arithmetic as alone
    (bit for bit).

    Parameters
    ----------
    dt
        A fixed largest internal step, capped by the stability limit; it turns the certificate
        (``rtol``) off. ``None``: certified steps, or with ``rtol=None`` the problem's accuracy step
        ``max_dt`` (or the output interval).
    dtype
        ``"float64"`` (default) or ``"float32"``; coefficients are always computed in complex128.
    courant
        ``C`` above. ETDRK4 treats ``N`` like RK4, whose stability region reaches ``2√2 ≈ 2.83`` on the
        imaginary axis; the default 2 keeps a 30% margin (ns2d 64², ν = 1e-3: error 4e-9 at C = 2
        against 2.5e-10 at C = 1, for half the steps).
    n_contour
        Contour points for the ETDRK4 coefficients.
    device
        Torch device.
    rtol
        Certify every stored frame of every sample to relative L2 error ``rtol`` in time (default
        :data:`~pdebench.solvers.certify.DEFAULT_RTOL` = 1e-6; ``None``, or a fixed ``dt``: fixed
        steps as above). Each sample is advanced twice, with ``m_b`` and ``2 m_b`` steps per
        output interval from its own two states, and the frame of the finer run is stored; ETDRK4 is
        of order 4, so the global error of the finer run is estimated by Richardson as
        :math:`e_k = \|u^{(m)}_k - u^{(2m)}_k\| / (2^4 - 1)` (relative to :math:`\|u^{(2m)}_k\|`). A
        sample whose estimate at frame ``k`` exceeds the budget ``rtol · k / n_out`` (the error may
        grow by ``rtol / n_out`` per interval, so no later frame is starved) redoes the interval
        with both step counts doubled (:class:`~pdebench.solvers.certify.StepDoubling`). A sample
        whose error was inherited from earlier intervals (the controller's "stuck": a chaotic or
        shock-steepening flow) is solved again from its first frame with at least twice the steps it
        took in every interval, at most :data:`~pdebench.solvers.certify.MAX_RESTARTS` times. A
        linear equation is integrated exactly by ETDRK4: its certificate states so, without doubling.
        ``provenance["error_estimate"]`` records the method, ``rtol`` and the estimate per frame
        (largest over the batch); ``substeps_per_output`` and ``dt`` are the finer run's at its
        smallest step. The certificate covers the evolution from the stored
        first frame: a problem's discarded warm-up (``warmup_time``) is stepped as without ``rtol``.
    """

    def __init__(
        self,
        dt: float | None = None,
        dtype: Literal["float64", "float32"] = "float64",
        courant: float = 2.0,
        n_contour: int = 64,
        device: str = "cpu",
        rtol: float | None = DEFAULT_RTOL,
    ) -> None:
        if dt is not None and not (dt > 0 and math.isfinite(dt)):
            raise ValueError(f"dt must be positive, got {dt}")
        check_rtol(rtol)
        check_dtype(dtype)
        if not courant > 0:
            raise ValueError(f"courant must be positive, got {courant}")
        if n_contour < 8:
            raise ValueError(f"n_contour must be >= 8, got {n_contour}")
        self.dt = dt
        self.dtype = dtype
        self.courant = float(courant)
        self.n_contour = int(n_contour)
        self.device = torch.device(device)
        self.rtol = None if rtol is None or dt is not None else float(rtol)

    def grid(self, problem) -> FourierGrid:
        """The problem's Fourier grid in this solver's dtype and device."""
        return FourierGrid(problem.spatial_shape, problem.lengths, DTYPES[self.dtype], self.device)

    def stability_limits(self, equation: SpectralEquation, grid: FourierGrid, u_hat: torch.Tensor) -> np.ndarray:
        """``(B,)`` the largest stable step ``h_max`` of each state in ``u_hat`` (class docstring).

        An equation with per-sample parameters must hold the ``B`` samples of ``u_hat``.
        """
        batch = u_hat.shape[0]
        if equation.is_linear:
            return np.full(batch, math.inf)
        kept = equation_mask(equation, grid).to(torch.bool)
        wavenumber = grid.k_squared.sqrt()[kept]
        damping = -equation.linear_symbol(grid).real.to(grid.device)[..., kept]
        return self._limits(equation, grid, u_hat, wavenumber, damping)

    def _limits(self, equation, grid, u_hat, wavenumber: torch.Tensor, damping: torch.Tensor) -> np.ndarray:
        """:meth:`stability_limits` with the kept modes' ``|k|`` (``(n_kept,)``) and ``-Re L``
        (``(n_kept,)``, or ``(B, n_kept)`` per sample) precomputed."""
        speed = equation.advection_speed(u_hat, grid)[:, None]
        reaction = equation.reaction_rate(u_hat, grid)[:, None]
        rate = speed * wavenumber + reaction
        fastest = torch.where(damping < rate, rate, torch.zeros_like(rate)).amax(1)
        fastest = torch.nan_to_num(fastest, nan=math.inf).cpu().numpy()
        with np.errstate(divide="ignore"):
            return np.where(fastest > 0, self.courant / fastest, math.inf)

    def substeps(self, dt_out: float, limits: np.ndarray, max_dt: float | None = None) -> np.ndarray:
        """``(B,)`` steps per output interval: the fewest with ``h = dt_out / m`` at most the requested
        ``dt`` (else the problem's accuracy step ``max_dt``) and each sample's stability limit."""
        accuracy = self.dt if self.dt is not None else (max_dt if max_dt is not None else math.inf)
        target = np.minimum(np.minimum(limits, dt_out), accuracy)
        return np.maximum(1, np.ceil(dt_out / target * (1 - 1e-12))).astype(np.int64)

    def check_requested_step(self, limits: np.ndarray, problem_name: str = "") -> None:
        """Raise :class:`StabilityError` when the requested ``dt`` exceeds a sample's stability limit."""
        limit = float(np.min(limits)) if len(limits) else math.inf
        if self.dt is not None and self.dt > limit:
            raise StabilityError(
                f"{problem_name + ': ' if problem_name else ''}dt={self.dt:g} exceeds the stability limit "
                f"{limit:.4g} (Courant number {self.courant:g} on the fastest explicitly treated mode); "
                f"use dt <= {limit:.4g}"
            )

    def initial_stability_limits(self, problem, initial_conditions: torch.Tensor,
                                 sample_ids: np.ndarray | Sequence[tuple[int, int]] | None = None) -> np.ndarray:
        """``(B,)`` the stability limit of each initial state in ``initial_conditions``
        (``(B, *problem.spatial_shape)``), as :meth:`solve` computes it at its start; ``inf`` for
        states that are not finite (:meth:`solve` leaves those out). ``sample_ids`` ``(B, 2)`` pick
        per-sample equation parameters (``(-1, b)`` when ``None``)."""
        u0 = torch.as_tensor(initial_conditions)
        ids = solve_ids(sample_ids, u0.shape[0], "raise")
        equation = problem.equation_for(ids) if hasattr(problem, "equation_for") else problem.equation()
        grid = self.grid(problem)
        u_hat, alive = _initial_spectrum(u0, equation, grid)
        return np.where(alive, self.stability_limits(equation, grid, u_hat), math.inf)

    def check_step(self, problem, initial_conditions: torch.Tensor,
                   sample_ids: np.ndarray | Sequence[tuple[int, int]] | None = None) -> None:
        """Raise :class:`StabilityError` before any solve when the requested ``dt`` exceeds the
        stability limit of one of ``initial_conditions`` (``(B, *problem.spatial_shape)``), the check
        :meth:`solve` makes at its start; a no-op without a requested ``dt``."""
        if self.dt is not None:
            self.check_requested_step(self.initial_stability_limits(problem, initial_conditions, sample_ids), problem.name)

    def solve(
        self,
        problem,
        initial_conditions: torch.Tensor,
        sample_ids: np.ndarray | Sequence[tuple[int, int]] | None = None,
        *,
        on_blowup: Literal["raise", "drop"] = "raise",
        progress: Callable[[int], None] | None = None,
    ) -> Trajectories:
        """Solve ``problem`` from a batch of initial conditions.

        Each sample's internal step depends on its own state only (samples needing different steps
        are stepped in separate groups), so a sample solved alone equals it solved in any batch,
        bit for bit.

        Parameters
        ----------
        problem
            A :class:`~pdebench.problems.base.SpectralProblem`.
        initial_conditions
            ``(B, *problem.spatial_shape)`` real values at ``t = 0``.
        sample_ids
            ``(B, 2)`` ``(seed, index)`` of each sample (``(-1, b)`` when ``None``).
        on_blowup
            ``"raise"``: :class:`BlowUpError` naming the failed samples; ``"drop"``: return the
            finite samples only (``provenance["dropped"]`` counts the others).
        progress
            Called with the number of output frames completed after each frame.

        Returns
        -------
        Trajectories
            Field ``problem.field_name`` of shape ``(B, n_out + 1, *space)`` in the solver dtype.
        """
        return self._solve(problem, initial_conditions, sample_ids, on_blowup, progress)

    def _solve(self, problem, initial_conditions: torch.Tensor, sample_ids, on_blowup: Literal["raise", "drop"],
               progress: Callable[[int], None] | None, floor: np.ndarray | None = None, attempt: int = 0) -> Trajectories:
        """:meth:`solve`; in a certified run, samples take at least ``floor`` ``(B,)`` coarse steps per
        interval (``None``: 1), as a sample restarted for the ``attempt``-th time does."""
        start = time.perf_counter()
        u0 = torch.as_tensor(initial_conditions)
        if tuple(u0.shape[1:]) != tuple(problem.spatial_shape) or u0.ndim != problem.dim + 1:
            raise ValueError(
                f"initial conditions have shape {tuple(u0.shape)}; expected (B, {', '.join(map(str, problem.spatial_shape))})"
            )
        batch = u0.shape[0]
        ids = solve_ids(sample_ids, batch, on_blowup)
        grid = self.grid(problem)
        equation = problem.equation_for(ids) if hasattr(problem, "equation_for") else problem.equation()
        per_sample = equation.batch_size is not None
        if per_sample and equation.batch_size != batch:
            raise ValueError(f"{problem.name}: the equation holds {equation.batch_size} samples, the batch has {batch}")
        # Dealiased Galerkin form: the state of a nonlinear equation lives on the modes the mask
        # keeps, and so does N (the mask is folded into the multiplier D).
        mask = equation_mask(equation, grid).to(torch.complex128)
        linear = equation.linear_symbol(grid).to(self.device)

        steppers: dict[tuple[int, bytes | None], ETDRK4] = {}

        def stepper(m: int, rows: np.ndarray | None) -> ETDRK4:
            """The step ``dt_out / m`` of samples ``rows`` (``None``: the whole batch), cached per
            group (groups change only when a sample re-plans or drops out)."""
            key = (m, None if not per_sample else (np.arange(batch) if rows is None else rows).tobytes())
            if key not in steppers:
                eq = equation.select(torch.as_tensor(rows)) if per_sample and rows is not None else equation
                multiplier = eq.nonlinear_multiplier(grid).to(self.device) * mask
                lin = eq.linear_symbol(grid).to(self.device)

                def transform(v: torch.Tensor, t: float) -> torch.Tensor:
                    return eq.nonlinear_transform(v, grid, t)

                steppers[key] = ETDRK4(lin, transform, problem.dt_out / m, multiplier, self.n_contour,
                                       grid.complex_dtype, per_row=lin.ndim > grid.dim)
            return steppers[key]

        u_hat, alive = _initial_spectrum(u0, equation, grid)
        first_failure = 0.0 if not alive.all() else math.inf
        u_hat[torch.as_tensor(~alive)] = 0
        if equation.is_linear:
            def limits_of(v: torch.Tensor) -> np.ndarray:
                return np.full(v.shape[0], math.inf)
        else:
            kept = mask.real.to(torch.bool)
            wavenumber, damping = grid.k_squared.sqrt()[kept], -linear.real[..., kept]

            def limits_of(v: torch.Tensor) -> np.ndarray:
                return self._limits(equation, grid, v, wavenumber, damping)

        limits = limits_of(u_hat)
        self.check_requested_step(limits[alive], problem.name)
        # a tolerance takes the place of the problem's accuracy step
        max_dt = getattr(problem, "max_dt", None) if self.rtol is None else None
        substeps = self.substeps(problem.dt_out, limits, max_dt)
        floor = np.ones(batch, dtype=np.int64) if floor is None else np.asarray(floor, dtype=np.int64)

        def advance(u_hat: torch.Tensor, t0: float, duration: float | None, plan: np.ndarray | None = None,
                    active: np.ndarray | None = None) -> torch.Tensor:
            """Step every group of equal ``m`` (``plan``, default ``substeps``) of the ``active`` samples
            (default the alive ones) over one output interval (or ``duration``); others are kept."""
            plan = substeps if plan is None else plan
            active = alive if active is None else active
            groups = np.unique(plan[active])
            out = u_hat if len(groups) == 1 and active.all() else u_hat.clone()
            members = {int(m): np.flatnonzero(active & (plan == m)) for m in groups}
            if per_sample:  # keep only the steppers of the current groups
                current = {(m, (np.arange(batch) if out is u_hat else index).tobytes()) for m, index in members.items()}
                for key in [key for key in steppers if key not in current]:
                    del steppers[key]
            for m, index in members.items():
                step = stepper(m, None if out is u_hat else index)
                count = m if duration is None else math.ceil(duration / step.h - 1e-9)
                if out is u_hat:  # the common case: one group, the whole batch, no gather/scatter
                    for j in range(count):
                        out = step.step(out, t0 + j * step.h)
                    return out
                rows = torch.as_tensor(index, device=self.device)
                v = u_hat[rows]
                for j in range(count):
                    v = step.step(v, t0 + j * step.h)
                out[rows] = v
            return out

        warmup = float(getattr(problem, "warmup_time", 0.0))
        if warmup > 0:
            u_hat = advance(u_hat, 0.0, warmup)  # discarded transient
        substeps = np.maximum(substeps, floor)  # after the warm-up, which a restart leaves as it was
        frames = torch.empty((batch, problem.n_out + 1, *grid.shape), dtype=grid.dtype, device=self.device)
        frames[:, 0] = u0.to(device=self.device, dtype=grid.dtype) if warmup == 0 else grid.irfft(u_hat)
        # ETDRK4 integrates a linear equation (no N) exactly at any step: nothing to estimate
        certify = self.rtol is not None and not equation.is_linear
        if certify:
            doubling = StepDoubling("ETDRK4", 4, lambda v: grid.irfft(v).flatten(1))
            coarse_hat = u_hat.clone()  # the run with half the steps, for the Richardson estimate
            estimates = np.zeros((problem.n_out + 1, batch))
            most_steps = floor.copy()  # per sample, the most coarse steps it took in one interval
            restart = np.zeros(batch, dtype=bool)  # samples whose inherited error outgrew the budget
        for frame in range(1, problem.n_out + 1):
            t0 = (frame - 1) * problem.dt_out
            if certify:
                u_hat, coarse_hat, estimates[frame], stuck = doubling.interval(
                    lambda v, plan, active: advance(v, t0, None, plan, active), u_hat, coarse_hat, substeps, alive,
                    self.rtol * frame / problem.n_out, MAX_DOUBLINGS)
                most_steps = np.maximum(most_steps, substeps)
                if stuck.any():  # stepped no further here; solved again from the first frame below
                    restart |= stuck
                    alive &= ~stuck
                    u_hat[torch.as_tensor(stuck)] = 0
            else:
                u_hat = advance(u_hat, t0, None)
            flush_tiny_(u_hat)
            u = grid.irfft(u_hat)
            finite = torch.isfinite(u.reshape(batch, -1)).all(1).cpu().numpy()
            if not finite[alive].all():
                first_failure = min(first_failure, frame * problem.dt_out)
                alive &= finite
                u_hat[torch.as_tensor(~alive)] = 0  # failed samples cost nothing further
            frames[:, frame] = u
            if progress is not None:
                progress(frame)
            if not alive.any():
                break
            if certify and frame < problem.n_out:
                doubling.relax(substeps, estimates[frame] - estimates[frame - 1], alive, self.rtol, problem.n_out, floor)
            if not equation.is_linear and frame < problem.n_out:
                # The flow may have sped up: a sample whose limit fell below its step re-plans.
                substeps = np.maximum(substeps, self.substeps(problem.dt_out, limits_of(u_hat), max_dt))
        if frame < problem.n_out:  # everything blew up early: pad (dropped below)
            frames[:, frame + 1 :] = math.nan
        if certify and restart.any():
            alive |= self._restart(problem, u0, ids, restart, 2 * most_steps, attempt + 1, frames, estimates, most_steps)
        if not alive.all() and on_blowup == "raise":
            raise BlowUpError(ids[~alive], first_failure, problem.name)
        data = frames
        smallest_h = problem.dt_out / int(substeps.max())
        provenance = self.provenance(problem, smallest_h, int(substeps.max()), time.perf_counter() - start)
        if self.rtol is not None and not certify:
            provenance["error_estimate"] = {
                "method": "exact: ETDRK4 integrates a linear equation exactly (round-off only)",
                "rtol": self.rtol, "time_max": 0.0, "time_per_frame": [0.0] * (problem.n_out + 1)}
        if certify:
            provenance["error_estimate"] = doubling.error_estimate(self.rtol, estimates, alive)
            finest = 2 * int(most_steps[alive].max(initial=0))  # of the stored (finer) run, at its smallest step
            provenance["substeps_per_output"] = finest
            provenance["dt"] = problem.dt_out / max(finest, 1)
        traj = Trajectories(
            fields={problem.field_name: data},
            coords=problem.coordinates(),
            params=problem.params(),
            sample_ids=ids,
            provenance=provenance,
        )
        if not alive.all():
            dropped = int((~alive).sum())
            log.warning("%s: dropped %d non-finite samples %s", problem.name, dropped, ids[~alive].tolist())
            traj = traj.select(np.flatnonzero(alive))
            traj.provenance["dropped"] = dropped
        return traj

    def _restart(self, problem, u0: torch.Tensor, ids: np.ndarray, rows: np.ndarray, floor: np.ndarray, attempt: int,
                 frames: torch.Tensor, estimates: np.ndarray, most_steps: np.ndarray) -> np.ndarray:
        """Solve the samples ``rows`` (``(B,)`` mask) again from their first frame with at least
        ``floor`` coarse steps per interval (twice the most each took), writing their ``frames``,
        ``estimates`` and ``most_steps`` in place. Returns the ``(B,)`` mask of the restarted samples
        that finished. Raises :class:`ValueError` beyond :data:`~pdebench.solvers.certify.MAX_RESTARTS`
        restarts."""
        index = np.flatnonzero(rows)
        if attempt > MAX_RESTARTS:
            raise ValueError(f"{problem.name}: cannot certify relative error {self.rtol:g} for samples "
                             f"{ids[index].tolist()}: the error inherited from earlier frames outgrows the budget "
                             f"with {int(floor[index].max())} steps per interval (past what float64 allows)")
        log.info("%s: %d samples restart with twice the steps (inherited error over the budget)", problem.name, len(index))
        again = self._solve(problem, u0[index], ids[index], "drop", None, floor[index], attempt)
        kept = {tuple(row): j for j, row in enumerate(np.asarray(again.sample_ids).tolist())}
        done = np.zeros(len(rows), dtype=bool)
        solved = again.fields[problem.field_name]
        for i in index:
            j = kept.get(tuple(ids[i].tolist()))
            if j is not None:
                frames[i], done[i] = solved[j], True
                most_steps[i] = again.provenance["substeps_per_output"] // 2
        per_frame = np.asarray(again.provenance["error_estimate"]["time_per_frame"])
        estimates[:, done] = per_frame[:, None]  # the restarted group's largest estimate per frame
        return done

    def provenance(self, problem, h: float, substeps: int, wall_time: float) -> dict:
        """Attributes that say how trajectories were made."""
        return {
            "solver": "spectral",
            "scheme": f"ETDRK4 (Cox-Matthews; Kassam-Trefethen contour, M={self.n_contour}), dealiased pseudo-spectral",
            "dt": h,
            "substeps_per_output": substeps,
            "dt_out": problem.dt_out,
            "resolution": "x".join(map(str, problem.spatial_shape)),
            "dtype": self.dtype,
            "problem": problem.name,
            "pdebench_version": pdebench.__version__,
            "torch_version": str(torch.__version__),
            "torch_threads": torch.get_num_threads(),
            "wall_time_s": wall_time,
        }


def equation_mask(equation: SpectralEquation, grid: FourierGrid) -> torch.Tensor:
    """The dealiasing mask matching the degree of ``equation``'s nonlinearity."""
    return grid.dealias_mask(equation.nonlinear_order)


def _initial_spectrum(u0: torch.Tensor, equation: SpectralEquation, grid: FourierGrid) -> tuple[torch.Tensor, np.ndarray]:
    """``(u_hat, alive)``: the spectrum of the initial states ``u0`` (``(B, *grid.shape)``), on the
    dealiased modes for a nonlinear equation (the Galerkin state), and ``(B,)`` whether each state
    is finite."""
    u_hat = grid.rfft(u0.to(device=grid.device, dtype=grid.dtype))
    if not equation.is_linear:
        u_hat = u_hat * equation_mask(equation, grid).to(grid.complex_dtype)
    alive = torch.isfinite(u0.reshape(u0.shape[0], -1)).all(1).cpu().numpy()
    return u_hat, alive
