r"""Certified time stepping: step doubling with a Richardson estimate, for any one-step scheme of order p.

Each sample is advanced over every output interval twice from its own two states, with ``m_b`` steps
(the coarse run) and ``2 m_b`` steps (the fine run, the one stored). For a scheme of order ``p`` the
global time error of the fine run at frame ``k`` is estimated by Richardson as

.. math:: e_k = \frac{\|u^{(m)}_k - u^{(2m)}_k\|_2}{(2^p - 1)\,\|u^{(2m)}_k\|_2}

(relative L2 over the values a scheme's ``values`` function takes from a state). A sample whose
estimate at frame ``k`` exceeds :data:`SAFETY` (1/2) of the budget ``rtol · k / n_out`` (the error
may grow by ``rtol / n_out`` per interval, so no later frame is starved) redoes the interval with both counts
doubled, at most :data:`MAX_DOUBLINGS` times; a run that turned non-finite (a step past stability)
is redone the same way, and one still non-finite at the smallest step has blown up (the solver
reports it). Where halving the steps lowered the estimate by less than
:data:`INHERITED_FACTOR` (``2^p`` expected), the error was inherited from earlier intervals (a chaotic
or steepening flow amplifies it faster than the budget grows) and no step of this interval removes
it: the sample is returned as stuck, for the solver to solve again from its first frame with more
steps in every interval (the spectral solver does, at most :data:`MAX_RESTARTS` times). Where the halved step's estimated growth (``2^p`` times
this interval's) stays below :data:`RELAX_FRACTION` of an interval's share of the budget, the next
interval takes half the steps (:meth:`StepDoubling.relax`).

The spectral solver (ETDRK4, ``p = 4``) and the finite-volume solver (SSP-RK3, ``p = 3``) use it;
the scheme supplies the stepping (``advance``), this module the decisions and the certificate.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

__all__ = ["DEFAULT_RTOL", "INHERITED_FACTOR", "MAX_DOUBLINGS", "MAX_RESTARTS", "MIN_RTOL", "RELAX_FRACTION",
           "SAFETY", "StepDoubling", "check_rtol"]

#: The relative error in time every stored frame meets by default where a solver certifies one.
DEFAULT_RTOL = 1e-6

#: The smallest relative error ``rtol`` may ask for: float64 round-off in the steps and the
#: Richardson difference is near 1e-14 relative, so a tighter request could never be certified.
MIN_RTOL = 1e-12
#: Halvings of a sample's step within one output interval before the certified run gives up.
MAX_DOUBLINGS = 12
#: A certified sample doubles its step when the halved step's estimated error growth (``2^p`` times
#: this interval's) stays below this fraction of an interval's share ``rtol / n_out`` of the budget.
RELAX_FRACTION = 0.25
#: A redone interval whose estimate fell by less than this factor when its steps were halved is
#: dominated by the error inherited from earlier intervals (the sample is stuck).
INHERITED_FACTOR = 4.0
#: The estimate must stay within this fraction of the budget: Richardson's estimate of the fine run's
#: error is itself an estimate (measured 0.2-1x of the true error on Burgers, KdV and chaotic KS).
SAFETY = 0.5
#: Restarts of a stuck sample from its first frame, each with at least twice the steps it took in
#: every interval, before the certified run gives up (the float64 limit of a chaotic flow).
MAX_RESTARTS = 5

#: ``advance(state, plan, active) -> state``: the ``active`` rows (``(B,)`` bool) of ``state``
#: ``(B, ...)`` advanced over one output interval with ``plan[b]`` (``(B,)`` int) uniform steps each,
#: the other rows returned unchanged.
Advance = Callable[[torch.Tensor, np.ndarray, np.ndarray], torch.Tensor]


def check_rtol(rtol: float | None) -> float | None:
    """``rtol`` as a float (``None`` stays ``None``: no certificate); ``ValueError`` naming it unless it
    is a number in ``[MIN_RTOL, 1)``."""
    if rtol is not None and not (isinstance(rtol, (int, float)) and MIN_RTOL <= rtol < 1):
        raise ValueError(f"rtol must be a number in [{MIN_RTOL:g}, 1) (float64 cannot certify less), got {rtol!r}")
    return None if rtol is None else float(rtol)


@dataclass(frozen=True)
class StepDoubling:
    """The step-doubling controller of one scheme (module docstring).

    Attributes
    ----------
    scheme
        The time stepper's name, as the certificate states it (``"ETDRK4"``, ``"SSP-RK3"``).
    order
        Its order ``p`` (the Richardson factor is ``2^p - 1``).
    values
        ``values(state) -> (n, V)``: the real values of ``n`` states whose L2 norm the estimate takes
        (the grid field of a spectral state, the cell averages of a finite-volume one).
    """

    scheme: str
    order: int
    values: Callable[[torch.Tensor], torch.Tensor]

    def interval(self, advance: Advance, fine: torch.Tensor, coarse: torch.Tensor, substeps: np.ndarray,
                 alive: np.ndarray, budget: float,
                 max_doublings: int = MAX_DOUBLINGS) -> tuple[torch.Tensor, torch.Tensor, np.ndarray, np.ndarray]:
        """One output interval: ``fine`` advanced with ``2 m_b`` steps and ``coarse`` with ``m_b``
        (``substeps`` ``(B,)``, doubled in place where a sample redoes the interval) until every
        ``alive`` sample's estimate is within ``budget``, it stays non-finite at the smallest step, or it is stuck
        (its estimate fell by less than :data:`INHERITED_FACTOR` when its steps were halved).

        Returns
        -------
        (fine, coarse, estimate, stuck)
            The two states ``(B, ...)``, the ``(B,)`` relative estimates (0 for samples not alive)
            and the ``(B,)`` mask of the stuck samples (over the budget, not redone further).

        Raises
        ------
        ValueError
            Naming the budget and the estimate reached, when ``max_doublings`` doublings leave a
            finite sample over the budget.
        """
        start_fine, start_coarse = fine, coarse
        active = alive.copy()
        estimate, previous = np.zeros(len(alive)), np.full(len(alive), np.inf)
        stuck = np.zeros(len(alive), dtype=bool)
        for attempt in range(max_doublings + 1):
            fine = advance(fine, 2 * substeps, active)
            coarse = advance(coarse, substeps, active)
            rows = torch.as_tensor(np.flatnonzero(active), device=fine.device)
            u_fine = self.values(fine[rows])
            gap = (self.values(coarse[rows]) - u_fine).norm(dim=1) / (2**self.order - 1)
            estimate[active] = (gap / u_fine.norm(dim=1).clamp_min(torch.finfo(u_fine.dtype).tiny)).cpu().numpy()
            over = active & ~(estimate <= SAFETY * budget)  # a non-finite run (a step past stability) is over too
            stuck |= over & np.isfinite(estimate) & (estimate * INHERITED_FACTOR > previous)
            redo = over & ~stuck
            if not redo.any():
                return fine, coarse, estimate, stuck
            if attempt == max_doublings:
                if (redo & np.isfinite(estimate)).any():
                    raise ValueError(f"cannot certify relative error {budget:.3g}: the estimate stays at "
                                     f"{estimate[redo & np.isfinite(estimate)].max():.3g} after {max_doublings} "
                                     f"halvings of the step")
                return fine, coarse, estimate, stuck  # non-finite at every step: blown up, for the solver to report
            substeps[redo] *= 2
            previous = estimate.copy()
            keep = torch.as_tensor(redo, device=fine.device)
            fine = torch.where(keep.view(-1, *[1] * (fine.ndim - 1)), start_fine, fine)
            coarse = torch.where(keep.view(-1, *[1] * (coarse.ndim - 1)), start_coarse, coarse)
            active = redo

    def relax(self, substeps: np.ndarray, growth: np.ndarray, alive: np.ndarray, rtol: float, n_out: int,
              floor: np.ndarray | int = 1) -> None:
        """Halve, in place, the ``(B,)`` ``substeps`` of the alive samples whose estimate grew by
        ``growth`` ``(B,)`` over this interval, where the halved step (``2^p`` times the growth) would
        stay below :data:`RELAX_FRACTION` of an interval's share ``rtol / n_out`` of the budget; never
        below ``floor`` (``(B,)`` or one count: a restarted sample's)."""
        floor = np.broadcast_to(np.asarray(floor, dtype=np.int64), substeps.shape)
        relax = alive & (2**self.order * growth < RELAX_FRACTION * rtol / n_out) & (substeps > floor)
        substeps[relax] = np.maximum(substeps[relax] // 2, floor[relax])

    def error_estimate(self, rtol: float, estimates: np.ndarray, alive: np.ndarray) -> dict[str, Any]:
        """``provenance["error_estimate"]``: the method, ``rtol``, and the largest estimate over the
        ``alive`` samples ``(B,)`` per frame (``time_per_frame``, from ``estimates`` ``(n_out + 1, B)``)
        and over all frames (``time_max``)."""
        done = estimates[:, alive] if alive.any() else estimates[:, :0]
        per_frame = done.max(1) if done.size else np.zeros(len(estimates))
        return {"method": f"Richardson on m and 2m {self.scheme} steps per output interval (order {self.order})",
                "rtol": rtol, "time_max": float(per_frame.max()), "time_per_frame": per_frame.tolist()}
