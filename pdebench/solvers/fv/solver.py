"""The registered finite-volume solver ``"fv-weno"``: WENO5 + Godunov + SSP-RK3 for the MP-PDE E1 family.

E1 is :math:`u_t + (\\alpha u^2)_x = \\delta(t, x)`. With :math:`v = 2\\alpha u` it becomes Burgers'
:math:`v_t + (v^2/2)_x = 2\\alpha\\delta`, which :class:`~pdebench.solvers.fv.weno.WENO5Solver` solves
exactly as written (no rescaled flux): the solver maps ``u0`` to ``v``, solves, and maps back.

With ``rtol`` every stored frame of every sample is certified in time by the step-doubling controller
of :mod:`pdebench.solvers.certify` (SSP-RK3, order 3): per sample and output interval, ``m`` and ``2m``
uniform steps ``h = Δt_out / m`` instead of the adaptive CFL step.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from typing import Any, ClassVar, Literal

import numpy as np
import torch

import pdebench
from pdebench.core.trajectories import Trajectories
from pdebench.solvers.base import SOLVERS, BlowUpError, solve_ids
from pdebench.solvers.certify import MAX_DOUBLINGS, StepDoubling, check_rtol
from pdebench.solvers.fv.weno import WENO5Solver

__all__ = ["FVSolver", "SHOCK_LIMIT"]

#: The certified run stops where a sample's WENO5 interface states differ by more than this fraction of
#: its scale (:meth:`WENO5Solver.shock_sensor`): a shock, across which the time error is not asymptotic
#: in the step and step doubling underestimates it (measured on E1: estimate / error down to 0.02).
SHOCK_LIMIT = 1e-2


@SOLVERS.register("fv-weno", record="time-dependent", description="Finite-volume WENO5-JS, Godunov flux, SSP-RK3 "
                  "(shock-capturing; MP-PDE E1)")
class FVSolver:
    """WENO5 finite volumes for problems with a quadratic flux and a per-sample source (``mppde_e1``).

    Parameters
    ----------
    cfl
        Courant number in (0, 1] (default 0.4).
    dtype
        ``"float64"`` (default) or ``"float32"``.
    rtol
        Certify every stored frame of every sample to relative L2 error ``rtol`` in time (``None``, the
        default, since E1 forms shocks: the adaptive CFL step, shortened to hit each output time; the
        file's ``error_estimate`` says it is not certified and why). Each sample is advanced over each
        output interval twice from its own two states, with ``m_b`` and ``2 m_b`` uniform SSP-RK3 steps
        ``h = Δt_out / m_b``, ``m_b`` at least the CFL count of the interval's starting state
        (:meth:`WENO5Solver.stable_dt`); the finer run is stored and its error estimated by Richardson,
        :math:`\|v^{(m)}_k - v^{(2m)}_k\| / ((2^3 - 1)\|v^{(2m)}_k\|)`; a sample over the budget
        ``rtol · k / n_out`` at frame ``k`` redoes the interval with both counts doubled
        (:class:`~pdebench.solvers.certify.StepDoubling`). Samples with equal ``m_b`` are stepped
        together; every operation is row-wise, so a sample's frames do not depend on its batch, bit for
        bit. ``provenance["error_estimate"]`` records the method, ``rtol`` and the largest estimate per
        frame; ``substeps_per_output`` and ``dt`` are the finer run's at its smallest step. What is
        certified is the time error of the semi-discrete WENO5 scheme on the file's grid, not the
        spatial error, and only while the solution is smooth: a sample forming a shock
        (:data:`SHOCK_LIMIT`) stops the run with a ``ValueError`` naming it. Needs ``dtype="float64"``.
    """

    #: Why a run without ``rtol`` (the default) carries no certificate, as its files say.
    uncertified_default: ClassVar[str] = (
        "adaptive CFL steps without an error estimate; rtol certifies smooth solutions only (step doubling does "
        "not estimate the time error across the shocks E1 forms, from t = 0.26 at 100 cells)")

    def __init__(self, cfl: float = 0.4, dtype: Literal["float64", "float32"] = "float64",
                 rtol: float | None = None) -> None:
        self.cfl, self.dtype = cfl, dtype
        self._weno = WENO5Solver(flux="burgers", numerical_flux="godunov", cfl=cfl, dtype=dtype)
        self.rtol = check_rtol(rtol)
        if self.rtol is not None and dtype != "float64":
            raise ValueError(f"rtol needs dtype='float64' (float32 round-off is above the tolerances worth "
                             f"certifying), got dtype={dtype!r}")

    def provenance(self, problem, wall_time: float) -> dict[str, Any]:
        return {"solver": "fv-weno", "scheme": "WENO5-JS reconstruction, Godunov flux, SSP-RK3", "cfl": self.cfl,
                "dt_out": problem.dt_out, "resolution": str(problem.nx), "dtype": self.dtype, "problem": problem.name,
                "pdebench_version": pdebench.__version__, "torch_version": str(torch.__version__), "wall_time_s": wall_time}

    def solve(self, problem, u0: torch.Tensor, sample_ids: np.ndarray | Sequence[Sequence[int]] | None = None, *,
              on_blowup: Literal["raise", "drop"] = "raise", progress: Callable[[int], None] | None = None) -> Trajectories:
        """Solve samples ``u0 (B, nx)`` of ``problem`` with ids ``(B, 2)``; trajectories ``(B, n_out + 1, nx)``."""
        u0 = torch.as_tensor(u0, dtype=torch.float64)
        if u0.ndim != 2 or u0.shape[1] != problem.nx:
            raise ValueError(f"u0 must be (B, nx={problem.nx}); got {tuple(u0.shape)}")
        ids = solve_ids(sample_ids, len(u0), on_blowup)
        scale = 2.0 * problem.alpha
        start = time.perf_counter()

        def run(rows: np.ndarray) -> torch.Tensor:
            delta = problem.forcing(ids[rows])
            return self._weno.solve(scale * u0[rows], problem.length, problem.output_times(),
                                    forcing=lambda x, t: scale * delta(x, t))

        certificate: dict[str, Any] = {"error_estimate": {"method": "none", "certified": False,
                                                          "reason": self.uncertified_default}}
        if self.rtol is not None:
            v, certificate = self._certified(problem, scale * u0, ids)
        else:
            try:
                v = run(np.arange(len(u0)))
            except BlowUpError as exc:
                if on_blowup == "raise":
                    raise BlowUpError([tuple(r) for r in ids.tolist()], exc.time, problem.name) from exc
                # samples take their own steps, so each can be solved alone: keep the ones that stay finite
                rows = []
                for row in range(len(u0)):
                    try:
                        rows.append(run(np.array([row]))[0])
                    except BlowUpError:
                        rows.append(torch.full((len(problem.output_times()), problem.nx), float("nan"), dtype=torch.float64))
                v = torch.stack(rows)
        u = (v / scale).to(torch.float64)
        alive = torch.isfinite(u).flatten(1).all(dim=1)
        if not bool(alive.all()) and on_blowup == "raise":
            failed = ~torch.isfinite(u[~alive]).flatten(2).all(2)  # (failed samples, T)
            first = float(problem.output_times()[int(failed.any(0).to(torch.int8).argmax())])
            raise BlowUpError([tuple(r) for r in ids[~alive.numpy()].tolist()], first, problem.name)
        if progress is not None:
            progress(len(u0))
        provenance = self.provenance(problem, time.perf_counter() - start)
        provenance.update(certificate)
        provenance["dropped"] = int((~alive).sum())
        keep = alive.numpy()
        return Trajectories(fields={problem.field_name: u[alive]}, coords=problem.coordinates(), params=problem.params(),
                            sample_ids=ids[keep], provenance=provenance)

    def _certified(self, problem, v0: torch.Tensor, ids: np.ndarray) -> tuple[torch.Tensor, dict[str, Any]]:
        """The certified run (class docstring, ``rtol``) of ``v0 (B, nx)`` (``v = 2 alpha u``) with sample
        ids ``(B, 2)``: the ``(B, n_out + 1, nx)`` frames of ``v`` (a sample's frames are NaN from the
        one where it turned non-finite) and the provenance entries of the certificate."""
        weno, scale, times = self._weno, 2.0 * problem.alpha, problem.output_times()
        batch, nx = v0.shape
        dx = float(problem.length) / nx
        x = (torch.arange(nx, dtype=torch.float64) + 0.5) * dx  # the cell centres, as WENO5Solver.solve's
        sources: dict[bytes, Callable] = {}

        def source(rows: np.ndarray) -> Callable:
            """The source of samples ``rows`` (``scale * delta``), cached per group."""
            if rows.tobytes() not in sources:
                delta = problem.forcing(ids[rows])
                sources[rows.tobytes()] = lambda x, t: scale * delta(x, t)
            return sources[rows.tobytes()]

        def cfl_steps(v: torch.Tensor, interval: float) -> np.ndarray:
            """``(B,)`` the fewest uniform steps over ``interval`` within each state's CFL limit."""
            limit = weno.stable_dt(v, dx, 0.0).cpu().numpy()
            return np.maximum(1, np.ceil(interval / limit * (1 - 1e-12))).astype(np.int64)

        def interval(k: int):
            t0, span = float(times[k - 1]), float(times[k] - times[k - 1])

            def advance(v: torch.Tensor, plan: np.ndarray, active: np.ndarray) -> torch.Tensor:
                out = v.clone()
                for m in np.unique(plan[active]).tolist():
                    rows = np.flatnonzero(active & (plan == m))
                    index = torch.as_tensor(rows)
                    out[index] = weno.advance(v[index], t0, span / m, m, dx, x, forcing=source(rows))
                return out
            return advance

        def refuse_shocks(v: torch.Tensor, k: int) -> None:
            """``ValueError`` naming the alive samples of ``v`` with a shock at frame ``k`` (:data:`SHOCK_LIMIT`)."""
            shocked = alive & (weno.shock_sensor(v).numpy() > SHOCK_LIMIT)
            if shocked.any():
                named = ", ".join(f"({s}, {i})" for s, i in ids[shocked][:5].tolist())
                raise ValueError(f"{problem.name}: cannot certify rtol={self.rtol:g}: samples (seed, index) {named} "
                                 f"have a shock at t={float(times[k]):g} (WENO5 interface states differ by more than "
                                 f"{SHOCK_LIMIT:g} of the solution's scale), across which step doubling does not "
                                 f"estimate the time error; shorten t_final or drop --rtol")

        doubling = StepDoubling("SSP-RK3", 3, lambda v: v)
        n_out = len(times) - 1
        frames = torch.full((batch, n_out + 1, nx), math.nan, dtype=torch.float64)
        frames[:, 0] = v0
        fine, coarse = v0.clone(), v0.clone()
        estimates = np.zeros((n_out + 1, batch))
        alive = np.ones(batch, dtype=bool)
        refuse_shocks(v0, 0)
        substeps = cfl_steps(v0, float(times[1] - times[0])) if n_out else np.ones(batch, dtype=np.int64)
        most_steps = 0
        for k in range(1, n_out + 1):
            fine, coarse, estimates[k], stuck = doubling.interval(interval(k), fine, coarse, substeps, alive,
                                                                  self.rtol * k / n_out, MAX_DOUBLINGS)
            if stuck.any():
                named = ", ".join(f"({s}, {i})" for s, i in ids[stuck][:5].tolist())
                raise ValueError(f"{problem.name}: cannot certify rtol={self.rtol:g}: the error of samples (seed, "
                                 f"index) {named} inherited from before t={float(times[k - 1]):g} outgrows the budget")
            most_steps = max(most_steps, 2 * int(substeps[alive].max(initial=0)))
            alive &= torch.isfinite(fine).all(1).numpy()
            refuse_shocks(fine, k)
            dead = torch.as_tensor(~alive)
            fine[dead], coarse[dead] = 0.0, 0.0  # blown-up samples cost nothing further
            frames[torch.as_tensor(alive), k] = fine[torch.as_tensor(alive)]
            if not alive.any():
                break
            if k < n_out:
                doubling.relax(substeps, estimates[k] - estimates[k - 1], alive, self.rtol, n_out)
                substeps = np.maximum(substeps, cfl_steps(fine, float(times[k + 1] - times[k])))
        return frames, {"error_estimate": doubling.error_estimate(self.rtol, estimates, alive),
                        "substeps_per_output": most_steps, "dt": problem.dt_out / max(most_steps, 1)}
