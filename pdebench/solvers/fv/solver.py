"""The registered finite-volume solver ``"fv-weno"``: WENO5 + Godunov + SSP-RK3 for the MP-PDE E1 family.

E1 is :math:`u_t + (\\alpha u^2)_x = \\delta(t, x)`. With :math:`v = 2\\alpha u` it becomes Burgers'
:math:`v_t + (v^2/2)_x = 2\\alpha\\delta`, which :class:`~pdebench.solvers.fv.weno.WENO5Solver` solves
exactly as written (no rescaled flux): the solver maps ``u0`` to ``v``, solves, and maps back.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any, Literal

import numpy as np
import torch

import pdebench
from pdebench.core.trajectories import Trajectories
from pdebench.solvers.base import SOLVERS, BlowUpError, solve_ids
from pdebench.solvers.fv.weno import WENO5Solver

__all__ = ["FVSolver"]


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
    """

    def __init__(self, cfl: float = 0.4, dtype: Literal["float64", "float32"] = "float64") -> None:
        self.cfl, self.dtype = cfl, dtype
        self._weno = WENO5Solver(flux="burgers", numerical_flux="godunov", cfl=cfl, dtype=dtype)

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
            raise BlowUpError([tuple(r) for r in ids[~alive.numpy()].tolist()], float(problem.t_final), problem.name)
        if progress is not None:
            progress(len(u0))
        provenance = self.provenance(problem, time.perf_counter() - start)
        provenance["dropped"] = int((~alive).sum())
        keep = alive.numpy()
        return Trajectories(fields={problem.field_name: u[alive]}, coords=problem.coordinates(), params=problem.params(),
                            sample_ids=ids[keep], provenance=provenance)
