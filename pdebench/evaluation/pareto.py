"""Place a neural operator on a classical solver's accuracy–cost curve.

The solver is run at a ladder of coarser resolutions or time steps ("rungs"). Each rung gives one
point: its cost (seconds of compute per sample) and its error (nRMSE against a high-resolution
reference). A trained model gives one more point, its inference cost per sample and its error on the
same reference. This module compares the two:

* :class:`CostCurve` holds the ladder and finds its Pareto front (the rungs no cheaper rung beats);
* :func:`speedup_at_equal_accuracy` asks "how long would the solver need to be as accurate as the
  model?" and divides that by the model's cost;
* :func:`error_at_equal_cost` asks "how accurate is the solver for the model's compute budget?";
* :func:`break_even` adds what the model cost before it could predict anything (data generation and
  training, ``C0``): the number of solves ``N* = C0 / (c_s - c_m)`` after which it has paid for itself
  and the amortised speed-up and accuracy after ``N`` solves.

Both interpolate the front linearly in ``(log cost, log error)``, which is exact for a power law
``error = a * cost**(-p)`` (the usual convergence behaviour of a discretisation). Nothing is
extrapolated beyond the ladder: outside it the answers are ``None`` with a verdict or reason, and the
nearest rung gives a bound where one is meaningful.

Units
-----
Costs are seconds per sample and errors dimensionless (nRMSE), but nothing here depends on the
units beyond both the model and the ladder using the same ones. Every cost and error must be
positive and finite (they are compared on log scales).
"""

from __future__ import annotations

import logging
import math
from dataclasses import asdict, dataclass
from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple

import numpy as np

__all__ = [
    "FASTER",
    "LESS_ACCURATE",
    "MORE_ACCURATE",
    "NOT_RANKABLE",
    "SLOWER",
    "CostCurve",
    "AMORTISED_SOLVES",
    "BreakEven",
    "EqualCost",
    "Placement",
    "break_even",
    "error_at_equal_cost",
    "speedup_at_equal_accuracy",
]

log = logging.getLogger(__name__)

#: Verdicts of :func:`speedup_at_equal_accuracy`.
FASTER = "faster than the solver"
SLOWER = "slower than the solver"
MORE_ACCURATE = "more accurate than every solver rung"
LESS_ACCURATE = "less accurate than every solver rung"
#: The model's error is below the reference's own certified error: the comparison cannot tell them apart.
NOT_RANKABLE = "below the reference's accuracy: not rankable"

#: Relative tolerance within which a value equal to a front end point (up to float round-off) is
#: treated as that end point instead of as lying outside the front.
_END_RTOL = 1e-12


# --------------------------------------------------------------------------------------------------
# Input handling
# --------------------------------------------------------------------------------------------------


def _check_positive(name: str, value: object) -> float:
    """``value`` as a float; ValueError naming it unless it is a positive finite real number."""
    if isinstance(value, bool):
        raise ValueError(f"{name} must be a positive finite number, got {value!r}")
    try:
        out = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a positive finite number, got {value!r}") from None
    if not (math.isfinite(out) and out > 0):
        raise ValueError(f"{name} must be a positive finite number, got {out!r}")
    return out


def _check_array(name: str, values: object) -> np.ndarray:
    """A read-only float64 copy of ``values``; ValueError naming the first bad entry."""
    try:
        arr = np.array(values, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{name} must be a 1-D sequence of positive finite numbers: {exc}") from None
    if arr.ndim != 1:
        raise ValueError(f"{name} must be 1-D, got shape {arr.shape}")
    if arr.size == 0:
        raise ValueError(f"{name} is empty: a cost curve needs at least one rung")
    bad = np.flatnonzero(~(np.isfinite(arr) & (arr > 0)))
    if bad.size:
        i = int(bad[0])
        raise ValueError(f"{name}[{i}] = {float(arr[i])!r} is not a positive finite number")
    arr.setflags(write=False)
    return arr


def _in_range(value: float, low: float, high: float) -> float | None:
    """``value`` clipped to ``[low, high]`` if it lies inside up to ``_END_RTOL``, else None."""
    if value < low * (1 - _END_RTOL) or value > high * (1 + _END_RTOL):
        return None
    return min(max(value, low), high)


def _loglog_interp(x: float, xs: np.ndarray, ys: np.ndarray) -> float:
    """Interpolate ``log y`` linearly in ``log x`` at ``x``; ``xs`` strictly increasing, ``xs[0] <= x <= xs[-1]``."""
    if xs.size == 1:
        return float(ys[0])
    return float(np.exp(np.interp(math.log(x), np.log(xs), np.log(ys))))


# --------------------------------------------------------------------------------------------------
# The solver's ladder
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class CostCurve:
    """A classical solver's accuracy–cost ladder.

    Parameters
    ----------
    costs : array-like of float, shape ``(R,)``
        Cost of each rung, seconds per sample; positive and finite. Any order.
    errors : array-like of float, shape ``(R,)``
        Error of each rung against the reference (nRMSE); positive and finite.
    labels : sequence of str, length ``R``, optional
        Rung names (e.g. ``"N=64, dt=1e-3"``); stored as a tuple.

    Raises
    ------
    ValueError
        For an entry that is not positive and finite (the message names it, e.g. ``costs[2] = -1.0``),
        arrays that are not 1-D, empty or of different lengths, or a wrong number of labels.

    Notes
    -----
    ``costs`` and ``errors`` are stored as read-only float64 copies. Instances compare by identity.
    """

    costs: np.ndarray
    errors: np.ndarray
    labels: tuple[str, ...] | None = None

    def __post_init__(self) -> None:
        costs = _check_array("costs", self.costs)
        errors = _check_array("errors", self.errors)
        if costs.shape != errors.shape:
            raise ValueError(f"costs and errors differ in length: {costs.size} costs vs {errors.size} errors")
        object.__setattr__(self, "costs", costs)
        object.__setattr__(self, "errors", errors)
        if self.labels is not None:
            if isinstance(self.labels, str):
                raise ValueError(f"labels must be a sequence of rung names, got the string {self.labels!r}")
            labels = tuple(str(label) for label in self.labels)
            if len(labels) != costs.size:
                raise ValueError(f"labels has {len(labels)} names for {costs.size} rungs")
            object.__setattr__(self, "labels", labels)

    def __len__(self) -> int:
        return int(self.costs.size)

    @property
    def rung_labels(self) -> tuple[str, ...]:
        """The labels, or ``"rung 0"``, ``"rung 1"``, ... when none were given."""
        return self.labels if self.labels is not None else tuple(f"rung {i}" for i in range(len(self)))

    def front_indices(self) -> np.ndarray:
        """Indices of the Pareto-front rungs, ordered by cost ascending.

        A rung is on the front when its error is strictly below the error of every rung that comes
        before it in ``(cost, error)`` order, i.e. of every cheaper rung (and of an equally cheap rung
        with a lower error; of identical rungs the first is kept). Along the front costs strictly
        increase and errors strictly decrease.

        Returns
        -------
        np.ndarray
            int64, shape ``(F,)`` with ``1 <= F <= R``.
        """
        order = np.lexsort((np.arange(len(self)), self.errors, self.costs))  # cost, then error, then position
        keep: list[int] = []
        best = math.inf
        for i in order:
            if self.errors[i] < best:
                keep.append(int(i))
                best = float(self.errors[i])
        return np.asarray(keep, dtype=np.int64)

    def front(self) -> CostCurve:
        """The Pareto front as a new :class:`CostCurve` (cost ascending, error strictly descending).

        Labels are carried over; see :meth:`front_indices` for the rule.
        """
        idx = self.front_indices()
        labels = None if self.labels is None else tuple(self.labels[i] for i in idx)
        return CostCurve(self.costs[idx], self.errors[idx], labels)

    @property
    def is_monotone(self) -> bool:
        """Whether errors strictly decrease as cost strictly increases over *all* rungs.

        Equivalently, every rung is on the Pareto front. Two rungs of equal cost make it False.
        """
        return len(self.front_indices()) == len(self)

    def dominated_labels(self) -> tuple[str, ...]:
        """Labels of the rungs off the Pareto front (in the given order); empty for a monotone ladder."""
        on_front = set(self.front_indices().tolist())
        return tuple(label for i, label in enumerate(self.rung_labels) if i not in on_front)


# --------------------------------------------------------------------------------------------------
# Placing a model
# --------------------------------------------------------------------------------------------------


class EqualCost(NamedTuple):
    """The solver's error at a given cost: ``error`` (None outside the front) and why it is None."""

    error: float | None
    reason: str | None


def error_at_equal_cost(curve: CostCurve, cost: float) -> EqualCost:
    """The Pareto front's error at ``cost``, by linear interpolation of log(error) against log(cost).

    Parameters
    ----------
    curve : CostCurve
        The solver's ladder; only its Pareto front is used.
    cost : float
        Seconds per sample (the model's inference cost); positive and finite.

    Returns
    -------
    EqualCost
        ``(error, None)`` when ``cost`` lies within the front's cost range (end points included);
        ``(None, reason)`` outside it: the solver was not run that cheaply, or that expensively.
    """
    cost = _check_positive("cost", cost)
    front = curve.front()
    c_min, c_max = float(front.costs[0]), float(front.costs[-1])
    at = _in_range(cost, c_min, c_max)
    if at is None:
        if cost < c_min:
            reason = f"cheaper than every solver rung (cost {cost:.3g} s < cheapest rung {c_min:.3g} s)"
        else:
            reason = f"more expensive than every solver rung (cost {cost:.3g} s > costliest front rung {c_max:.3g} s)"
        return EqualCost(None, reason)
    return EqualCost(_loglog_interp(at, front.costs, front.errors), None)


@dataclass(frozen=True)
class Placement:
    """Where a model sits relative to a solver's Pareto front.

    Attributes
    ----------
    model_cost : float
        The model's inference cost, seconds per sample.
    model_error : float
        The model's error (nRMSE).
    verdict : str
        One of :data:`FASTER`, :data:`SLOWER` (the model's error is within the front's error range),
        :data:`MORE_ACCURATE` or :data:`LESS_ACCURATE` (outside it), :data:`NOT_RANKABLE` (below
        the reference's certified error).
    speedup : float or None
        ``solver_cost_at_equal_error / model_cost``; None outside the front's error range.
    speedup_bound : float or None
        Outside the front's error range, ``rung cost / model_cost`` for the nearest rung: with
        :data:`MORE_ACCURATE` a lower bound (the best rung's cost; the solver would need more to match
        the model, assuming more cost never hurts), with :data:`LESS_ACCURATE` an upper bound (the
        cheapest rung's cost). None inside the range.
    speedup_bound_kind : {"lower", "upper"} or None
        Which kind of bound ``speedup_bound`` is.
    solver_cost_at_equal_error : float or None
        Seconds per sample the solver needs to reach ``model_error`` (log-log interpolation on the
        front); None outside the front's error range.
    solver_error_at_equal_cost : float or None
        The front's error at ``model_cost`` (see :func:`error_at_equal_cost`); None outside the
        front's cost range.
    error_ratio_at_equal_cost : float or None
        ``model_error / solver_error_at_equal_cost`` (below 1: the model is more accurate for the same
        budget); None when that error is None.
    equal_cost_reason : str or None
        Why ``solver_error_at_equal_cost`` is None.
    """

    model_cost: float
    model_error: float
    verdict: str
    speedup: float | None
    speedup_bound: float | None
    speedup_bound_kind: str | None
    solver_cost_at_equal_error: float | None
    solver_error_at_equal_cost: float | None
    error_ratio_at_equal_cost: float | None
    equal_cost_reason: str | None

    def to_dict(self) -> dict[str, float | str | None]:
        """The fields as a JSON-friendly dict: python floats and strings, None (never NaN) for missing."""
        out: dict[str, float | str | None] = {}
        for key, value in asdict(self).items():
            if isinstance(value, (float, np.floating)):
                value = float(value) if math.isfinite(value) else None
            out[key] = value
        return out


def speedup_at_equal_accuracy(curve: CostCurve, error: float, cost: float,
                              reference_error: float | None = None) -> Placement:
    """Place a model with the given error and cost on the solver's Pareto front.

    The solver cost ``c*`` at which the front reaches ``error`` is found by linear interpolation of
    log(cost) against log(error) between the two front rungs that bracket ``error`` (exact for a power
    law ``error = a * cost**(-p)``); the speed-up is ``c* / cost``. Values equal to a front end point
    up to a relative ``1e-12`` count as that end point.

    Parameters
    ----------
    curve : CostCurve
        The solver's ladder; rungs off its Pareto front are ignored.
    error : float
        The model's error (nRMSE); positive and finite.
    cost : float
        The model's inference cost, seconds per sample; positive and finite.
    reference_error : float or None
        The reference's certified error (its largest estimate over frames, time and space); a model
        with a smaller ``error`` is measured against the reference's own error, not the truth.

    Returns
    -------
    Placement
        ``verdict`` is :data:`FASTER` when ``speedup > 1``, :data:`SLOWER` when ``speedup <= 1``,
        :data:`MORE_ACCURATE` when ``error`` is below the best rung's error and :data:`LESS_ACCURATE`
        when it is above the cheapest rung's; in the last two ``speedup`` is None and
        ``speedup_bound`` gives a lower / upper bound. :data:`NOT_RANKABLE` when ``error`` is below
        ``reference_error`` (no speed-up, no bound). The equal-cost fields are filled in as by
        :func:`error_at_equal_cost`.

    Raises
    ------
    ValueError
        If ``error`` or ``cost`` is not a positive finite number.
    """
    error = _check_positive("error", error)
    cost = _check_positive("cost", cost)
    front = curve.front()
    if len(front) < len(curve):
        log.debug("solver ladder is not monotone; rungs off the Pareto front: %s", ", ".join(curve.dominated_labels()))
    # Along the front errors strictly decrease: errors[0] is the cheapest rung's, errors[-1] the best.
    e_best, e_cheap = float(front.errors[-1]), float(front.errors[0])

    speedup = bound = bound_kind = c_star = None
    at = _in_range(error, e_best, e_cheap)
    if reference_error is not None and error < reference_error:
        verdict = NOT_RANKABLE
    elif at is None and error < e_best:
        verdict, bound, bound_kind = MORE_ACCURATE, float(front.costs[-1]) / cost, "lower"
    elif at is None:
        verdict, bound, bound_kind = LESS_ACCURATE, float(front.costs[0]) / cost, "upper"
    else:
        # Reverse so the interpolation abscissae (errors) increase.
        c_star = _loglog_interp(at, front.errors[::-1], front.costs[::-1])
        speedup = c_star / cost
        verdict = FASTER if speedup > 1 else SLOWER

    equal_cost = error_at_equal_cost(front, cost)
    ratio = None if equal_cost.error is None else error / equal_cost.error
    return Placement(
        model_cost=cost,
        model_error=error,
        verdict=verdict,
        speedup=speedup,
        speedup_bound=bound,
        speedup_bound_kind=bound_kind,
        solver_cost_at_equal_error=c_star,
        solver_error_at_equal_cost=equal_cost.error,
        error_ratio_at_equal_cost=ratio,
        equal_cost_reason=equal_cost.reason,
    )


#: The solve counts at which the amortised speed-up and accuracy are reported.
AMORTISED_SOLVES = (1_000, 1_000_000)


@dataclass(frozen=True)
class BreakEven:
    r"""The whole cost of a model against the solver: when it pays for its data and training.

    A model costs ``C0`` once (the solver seconds that made its training data, plus its training
    time) and ``c_m`` per solve; the solver ``c_s`` per solve at the model's accuracy (interpolated on
    the front, as the speed-up is). After ``N`` solves the model has cost :math:`C_0 + N c_m` and the
    solver :math:`N c_s`, so the model is cheaper from

    .. math:: N^* = \frac{C_0}{c_s - c_m} \qquad (c_s > c_m;\ \text{"never" when } c_m \ge c_s)

    solves on, and its amortised speed-up after ``N`` solves is :math:`S(N) = N c_s / (C_0 + N c_m)`
    (which tends to the speed-up at equal accuracy :math:`c_s / c_m` as ``N`` grows).

    At equal cost: the solver given the model's amortised budget per solve, :math:`c_m + C_0 / N`, reaches
    the error :math:`e_s(c_m + C_0/N)` of the front (:func:`error_at_equal_cost`); the model's error over
    it is the amortised error ratio (below 1: more accurate for the same total budget). Since the front's
    error falls as its cost grows, the model is at least as accurate as the solver of equal total cost
    exactly when :math:`c_m + C_0/N \le c_s`, i.e. from the same :math:`N^*` on: the break-even count at
    equal cost is :math:`N^*` too.

    Attributes
    ----------
    one_off_s : float
        ``C0``, seconds.
    model_cost, solver_cost : float or None
        ``c_m`` and ``c_s`` (or the bound on it: the nearest rung's cost), seconds per solve.
    n_star : float or None
        :math:`N^*`; ``None`` when ``never`` or unknown.
    never : bool
        The model never pays back: ``c_m >= c_s`` (``c_s`` exact, or an upper bound on it).
    bound_kind : {"lower", "upper"} or None
        ``c_s`` is the nearest rung's cost, a bound, so ``n_star`` is a bound too: ``"upper"`` when ``c_s`` is a lower bound (the model is more accurate
        than every rung: the solver would cost at least the best rung's cost), ``"lower"`` when ``c_s``
        is an upper bound (less accurate than every rung). The amortised speed-ups are then bounds of
        the opposite kind.
    amortised_speedup : dict of int to float or None
        :math:`S(N)` for each ``N`` of :data:`AMORTISED_SOLVES`.
    amortised_error_ratio : dict of int to float or None
        The model's error over :math:`e_s(c_m + C_0/N)`; ``None`` where that budget lies off the front.
    reason : str or None
        Why ``n_star`` and the speed-ups are missing (no one-off cost recorded, not rankable).
    """

    one_off_s: float | None
    model_cost: float
    solver_cost: float | None
    n_star: float | None
    never: bool
    bound_kind: str | None
    amortised_speedup: dict[int, float | None]
    amortised_error_ratio: dict[int, float | None]
    reason: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly: the solve counts as string keys (``"1000"``), ``None`` for missing."""
        out = asdict(self)
        for key in ("amortised_speedup", "amortised_error_ratio"):
            out[key] = {str(n): v for n, v in out[key].items()}
        return out


def break_even(curve: CostCurve, placement: Placement, one_off_s: float | None,
               solves: Sequence[int] = AMORTISED_SOLVES) -> BreakEven:
    """The break-even solve count and amortised figures of a placed model (see :class:`BreakEven`).

    Parameters
    ----------
    curve : CostCurve
        The solver's ladder (its front gives the amortised equal-cost errors).
    placement : Placement
        The model's place on it (:func:`speedup_at_equal_accuracy`): ``c_m`` is its ``model_cost``, ``c_s``
        its ``solver_cost_at_equal_error`` or, outside the front's error range, the nearest rung's cost
        (a bound).
    one_off_s : float or None
        ``C0`` in seconds, non-negative; ``None`` when it is not known (everything ``None`` with the reason).
    solves : sequence of int
        The ``N`` of the amortised figures.

    Returns
    -------
    BreakEven
    """
    c_m = placement.model_cost
    empty = dict.fromkeys(solves)
    if placement.verdict == NOT_RANKABLE:
        return BreakEven(one_off_s, c_m, None, None, False, None, empty, dict(empty), NOT_RANKABLE)
    if one_off_s is None or not math.isfinite(one_off_s) or one_off_s < 0:
        return BreakEven(None, c_m, None, None, False, None, empty, dict(empty),
                         "the data generation or training time is not recorded in the checkpoint")
    front = curve.front()
    bound_kind = None
    if placement.solver_cost_at_equal_error is not None:
        c_s = placement.solver_cost_at_equal_error
    elif placement.verdict == MORE_ACCURATE:
        c_s, bound_kind = float(front.costs[-1]), "upper"  # c_s >= the best rung's: N* at most this
    else:
        c_s, bound_kind = float(front.costs[0]), "lower"  # c_s <= the cheapest rung's: N* at least this
    never = c_m >= c_s and bound_kind != "upper"
    n_star = None if c_m >= c_s else one_off_s / (c_s - c_m)
    speedups = {n: n * c_s / (one_off_s + n * c_m) for n in solves}
    ratios = {}
    for n in solves:
        equal = error_at_equal_cost(front, c_m + one_off_s / n).error
        ratios[n] = None if equal is None else placement.model_error / equal
    return BreakEven(one_off_s, c_m, c_s, n_star, never, bound_kind, speedups, ratios)


def front_rows(rows: Sequence[Mapping[str, Any]], cost: str, error: str) -> list[Mapping[str, Any]]:
    """The rows of a board's results that lie on the accuracy-cost Pareto front, cheapest first.

    Rows whose ``cost`` or ``error`` entry is not finite and positive are left out (failed rungs); the
    front is :meth:`CostCurve.front_indices` of the rest, the one front every board shows.
    """
    usable = [r for r in rows if all(isinstance(r[k], (int, float)) and math.isfinite(r[k]) and r[k] > 0
                                     for k in (cost, error))]
    if not usable:
        return []
    return [usable[i] for i in CostCurve([r[cost] for r in usable], [r[error] for r in usable]).front_indices()]
