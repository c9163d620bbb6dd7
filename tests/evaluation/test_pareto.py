"""Placing a model on a solver's accuracy–cost curve: synthetic ladders with known answers."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from pdebench.evaluation.pareto import (
    FASTER,
    LESS_ACCURATE,
    MORE_ACCURATE,
    NOT_RANKABLE,
    SLOWER,
    CostCurve,
    break_even,
    Placement,
    error_at_equal_cost,
    speedup_at_equal_accuracy,
)

# Five rungs of error = 2 * cost**-0.5; cost 1.0 is *not* a rung, so every lookup below interpolates.
COSTS = np.array([0.03, 0.2, 0.7, 4.0, 25.0])
TOL = 1e-9


def law(cost: float) -> float:
    return 2.0 * cost**-0.5


def law_cost(error: float) -> float:
    """Inverse of :func:`law`."""
    return (error / 2.0) ** -2


@pytest.fixture
def power_law() -> CostCurve:
    return CostCurve(COSTS, law(COSTS), labels=[f"N={n}" for n in (16, 32, 64, 128, 256)])


# --------------------------------------------------------------------------------------------------
# The curve and its front
# --------------------------------------------------------------------------------------------------


def test_power_law_is_monotone_and_its_own_front(power_law):
    assert power_law.is_monotone
    np.testing.assert_array_equal(power_law.front_indices(), np.arange(5))
    front = power_law.front()
    np.testing.assert_array_equal(front.costs, COSTS)
    assert front.labels == power_law.labels
    assert power_law.dominated_labels() == ()


def test_front_is_sorted_by_cost_whatever_the_rung_order():
    order = [3, 0, 4, 1, 2]
    curve = CostCurve(COSTS[order], law(COSTS[order]), labels=list("abcde"))
    np.testing.assert_array_equal(curve.front().costs, COSTS)
    assert curve.front().labels == ("b", "d", "e", "a", "c")
    assert curve.is_monotone


def test_non_monotone_rung_is_excluded_from_the_front():
    # Rung "bad" costs more than "mid" and is worse: it is dominated.
    curve = CostCurve([1.0, 2.0, 3.0, 4.0], [0.5, 0.2, 0.3, 0.1], labels=["cheap", "mid", "bad", "fine"])
    assert not curve.is_monotone
    assert curve.front().labels == ("cheap", "mid", "fine")
    np.testing.assert_array_equal(curve.front_indices(), [0, 1, 3])
    assert curve.dominated_labels() == ("bad",)


def test_equal_error_at_higher_cost_is_dominated_and_equal_costs_break_monotonicity():
    curve = CostCurve([1.0, 2.0], [0.5, 0.5])
    np.testing.assert_array_equal(curve.front_indices(), [0])
    assert not curve.is_monotone
    tie = CostCurve([1.0, 1.0, 2.0], [0.4, 0.3, 0.1])
    np.testing.assert_array_equal(tie.front_indices(), [1, 2])
    assert not tie.is_monotone


def test_curve_is_read_only_and_unlabelled_rungs_get_names():
    curve = CostCurve([1.0, 2.0], [0.2, 0.1])
    assert curve.labels is None and curve.rung_labels == ("rung 0", "rung 1")
    with pytest.raises(ValueError):
        curve.costs[0] = 5.0
    with pytest.raises(AttributeError):
        curve.costs = np.ones(2)  # type: ignore[misc]


# --------------------------------------------------------------------------------------------------
# Speed-up at equal accuracy
# --------------------------------------------------------------------------------------------------


def test_speedup_on_a_power_law_is_exact(power_law):
    placement = speedup_at_equal_accuracy(power_law, error=law(1.0), cost=0.01)
    assert placement.verdict == FASTER
    assert placement.speedup == pytest.approx(100.0, rel=TOL)
    assert placement.solver_cost_at_equal_error == pytest.approx(1.0, rel=TOL)
    assert placement.speedup_bound is None and placement.speedup_bound_kind is None


@pytest.mark.parametrize("solver_cost", [0.05, 0.2, 2.5, 25.0])
def test_speedup_at_other_errors_including_rungs(power_law, solver_cost):
    placement = speedup_at_equal_accuracy(power_law, error=law(solver_cost), cost=0.001)
    assert placement.solver_cost_at_equal_error == pytest.approx(solver_cost, rel=TOL)
    assert placement.speedup == pytest.approx(solver_cost / 0.001, rel=TOL)


def test_slower_model(power_law):
    # The solver reaches the model's error at cost 0.5; the model takes 2 s: speed-up 0.25.
    placement = speedup_at_equal_accuracy(power_law, error=law(0.5), cost=2.0)
    assert placement.verdict == SLOWER
    assert placement.speedup == pytest.approx(0.25, rel=TOL)
    assert placement.speedup < 1


def test_more_accurate_than_every_rung_gives_a_lower_bound(power_law):
    placement = speedup_at_equal_accuracy(power_law, error=law(100.0), cost=0.5)
    assert placement.verdict == MORE_ACCURATE
    assert placement.speedup is None and placement.solver_cost_at_equal_error is None
    assert placement.speedup_bound == pytest.approx(25.0 / 0.5, rel=TOL)
    assert placement.speedup_bound_kind == "lower"


def test_less_accurate_than_every_rung_gives_an_upper_bound(power_law):
    placement = speedup_at_equal_accuracy(power_law, error=law(0.001), cost=0.003)
    assert placement.verdict == LESS_ACCURATE
    assert placement.speedup is None and placement.solver_cost_at_equal_error is None
    assert placement.speedup_bound == pytest.approx(0.03 / 0.003, rel=TOL)
    assert placement.speedup_bound_kind == "upper"


def test_dominated_rung_is_ignored_when_placing():
    # The dominated rung (3 s, 0.3) would bracket 0.25 differently if it were used.
    curve = CostCurve([1.0, 2.0, 3.0, 4.0], [0.5, 0.2, 0.3, 0.1])
    placement = speedup_at_equal_accuracy(curve, error=0.2, cost=1.0)
    assert placement.solver_cost_at_equal_error == pytest.approx(2.0, rel=TOL)
    # Between the front rungs (2, 0.2) and (4, 0.1): log-log midpoint in error is the midpoint in cost.
    mid = math.sqrt(0.2 * 0.1)
    assert speedup_at_equal_accuracy(curve, error=mid, cost=1.0).speedup == pytest.approx(math.sqrt(8.0), rel=TOL)


def test_single_rung_curve():
    curve = CostCurve([2.0], [0.1])
    assert speedup_at_equal_accuracy(curve, error=0.1, cost=0.5).speedup == pytest.approx(4.0)
    assert speedup_at_equal_accuracy(curve, error=0.05, cost=0.5).verdict == MORE_ACCURATE
    assert speedup_at_equal_accuracy(curve, error=0.2, cost=0.5).verdict == LESS_ACCURATE
    assert error_at_equal_cost(curve, 2.0).error == pytest.approx(0.1)


# --------------------------------------------------------------------------------------------------
# Error at equal cost
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("cost", [0.03, 0.1, 1.0, 3.3, 25.0])
def test_error_at_equal_cost_follows_the_power_law(power_law, cost):
    error, reason = error_at_equal_cost(power_law, cost)
    assert reason is None
    assert error == pytest.approx(law(cost), rel=TOL)


def test_error_at_equal_cost_outside_the_cost_range(power_law):
    below = error_at_equal_cost(power_law, 0.01)
    assert below.error is None and "cheaper than every solver rung" in below.reason
    above = error_at_equal_cost(power_law, 100.0)
    assert above.error is None and "more expensive than every solver rung" in above.reason


def test_placement_carries_the_equal_cost_comparison(power_law):
    # A model at cost 1.0 with half the solver's error there.
    placement = speedup_at_equal_accuracy(power_law, error=0.5 * law(1.0), cost=1.0)
    assert placement.solver_error_at_equal_cost == pytest.approx(law(1.0), rel=TOL)
    assert placement.error_ratio_at_equal_cost == pytest.approx(0.5, rel=TOL)
    assert placement.verdict == FASTER and placement.speedup == pytest.approx(law_cost(0.5 * law(1.0)), rel=TOL)
    outside = speedup_at_equal_accuracy(power_law, error=law(1.0), cost=0.01)
    assert outside.solver_error_at_equal_cost is None and outside.error_ratio_at_equal_cost is None
    assert "cheaper" in outside.equal_cost_reason


def test_to_dict_is_json_friendly(power_law):
    for placement in (
        speedup_at_equal_accuracy(power_law, error=law(1.0), cost=0.01),
        speedup_at_equal_accuracy(power_law, error=law(100.0), cost=0.5),
    ):
        d = placement.to_dict()
        assert set(d) == set(Placement.__dataclass_fields__)
        assert all(v is None or isinstance(v, (float, str)) for v in d.values())
        assert json.loads(json.dumps(d, allow_nan=False)) == d


# --------------------------------------------------------------------------------------------------
# Bad inputs
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("costs", "errors", "match"),
    [
        ([1.0, -2.0], [0.2, 0.1], r"costs\[1\] = -2\.0"),
        ([1.0, 0.0], [0.2, 0.1], r"costs\[1\] = 0\.0"),
        ([1.0, 2.0], [0.2, float("nan")], r"errors\[1\] = nan"),
        ([1.0, 2.0], [float("inf"), 0.1], r"errors\[0\] = inf"),
        ([1.0, 2.0, 3.0], [0.2, 0.1], r"3 costs vs 2 errors"),
        ([], [], "empty"),
        ([[1.0, 2.0]], [[0.2, 0.1]], "1-D"),
        (["fast", 2.0], [0.2, 0.1], "costs"),
    ],
)
def test_bad_curves_raise(costs, errors, match):
    with pytest.raises(ValueError, match=match):
        CostCurve(costs, errors)


def test_bad_labels_raise():
    with pytest.raises(ValueError, match="3 names for 2 rungs"):
        CostCurve([1.0, 2.0], [0.2, 0.1], labels=["a", "b", "c"])
    with pytest.raises(ValueError, match="string"):
        CostCurve([1.0, 2.0], [0.2, 0.1], labels="ab")


@pytest.mark.parametrize(
    ("error", "cost", "match"),
    [(float("nan"), 1.0, "error .*nan"), (0.1, -1.0, r"cost .*-1\.0"), (0.0, 1.0, r"error .*0\.0"), (0.1, None, "cost .*None")],
)
def test_bad_model_points_raise(power_law, error, cost, match):
    with pytest.raises(ValueError, match=match):
        speedup_at_equal_accuracy(power_law, error=error, cost=cost)


def test_bad_cost_for_equal_cost_raises(power_law):
    with pytest.raises(ValueError, match="cost .*inf"):
        error_at_equal_cost(power_law, float("inf"))


def test_a_model_below_the_references_certified_error_is_not_ranked(power_law):
    """Below the reference's own error the comparison measures the reference, not the model: no
    speed-up and no bound; above it the placement is the one without a reference error."""
    below = speedup_at_equal_accuracy(power_law, error=law(100.0), cost=0.5, reference_error=2 * law(100.0))
    assert below.verdict == NOT_RANKABLE and below.speedup is None and below.speedup_bound is None
    above = speedup_at_equal_accuracy(power_law, error=law(100.0), cost=0.5, reference_error=law(100.0) / 2)
    assert above == speedup_at_equal_accuracy(power_law, error=law(100.0), cost=0.5)


# --------------------------------------------------------------------------------------------------
# Break-even: the whole cost (data + training) against the solver, in closed form
# --------------------------------------------------------------------------------------------------


def test_break_even_inside_the_front_matches_the_closed_form(power_law):
    # a model with error law(1.0) = 2 costs the solver c_s = 1.0 s (interpolated on the power law);
    # the model costs c_m = 0.01 s and C0 = 990 s: N* = 990 / (1 - 0.01) = 1000 solves exactly
    placement = speedup_at_equal_accuracy(power_law, law(1.0), 0.01)
    result = break_even(power_law, placement, 990.0)
    assert result.solver_cost == pytest.approx(1.0, rel=TOL)
    assert result.n_star == pytest.approx(1000.0, rel=TOL)
    assert not result.never and result.bound_kind is None
    # S(N) = N c_s / (C0 + N c_m): 1000 / (990 + 10) = 1 at N = N*, and 1e6 / (990 + 1e4) at 1e6
    assert result.amortised_speedup[1_000] == pytest.approx(1.0, rel=TOL)
    assert result.amortised_speedup[1_000_000] == pytest.approx(1e6 / (990 + 1e4), rel=TOL)
    # equal cost: the solver with budget c_m + C0/N reaches law(c_m + C0/N); at N = N* that is the model's
    # own error (ratio 1), and after 1e6 solves the budget 0.01099 s buys law(0.01099) (off the front: None)
    assert result.amortised_error_ratio[1_000] == pytest.approx(1.0, rel=1e-9)
    assert result.amortised_error_ratio[1_000_000] is None  # 0.01099 s < the cheapest rung's 0.03 s


def test_break_even_amortised_error_ratio_within_the_front(power_law):
    # c_m = 0.1, C0 = 100: at N = 1000 the budget is 0.2 s, a rung: e_s = law(0.2); model error law(1.0)
    placement = speedup_at_equal_accuracy(power_law, law(1.0), 0.1)
    result = break_even(power_law, placement, 100.0, solves=(1000,))
    assert result.amortised_error_ratio[1000] == pytest.approx(law(1.0) / law(0.2), rel=1e-9)
    assert result.n_star == pytest.approx(100 / 0.9, rel=TOL)


def test_a_model_as_costly_as_the_solver_never_pays_back(power_law):
    placement = speedup_at_equal_accuracy(power_law, law(1.0), 1.5)  # c_m = 1.5 >= c_s = 1.0
    result = break_even(power_law, placement, 10.0)
    assert result.never and result.n_star is None
    assert result.amortised_speedup[1_000_000] == pytest.approx(1e6 * 1.0 / (10 + 1.5e6), rel=TOL)  # < 1 for ever


def test_break_even_off_the_front_is_a_bound(power_law):
    # more accurate than every rung: c_s >= 25 s (the best rung), so N* <= C0 / (25 - c_m)
    better = break_even(power_law, speedup_at_equal_accuracy(power_law, law(100.0), 1.0), 48.0)
    assert better.bound_kind == "upper" and better.n_star == pytest.approx(48.0 / 24.0, rel=TOL)
    # less accurate than every rung: c_s <= 0.03 s (the cheapest), so N* >= C0 / (0.03 - c_m) ...
    worse = break_even(power_law, speedup_at_equal_accuracy(power_law, law(0.001), 0.01), 2.0)
    assert worse.bound_kind == "lower" and worse.n_star == pytest.approx(2.0 / 0.02, rel=TOL)
    # ... and "never" when the model costs more than even the cheapest rung
    never = break_even(power_law, speedup_at_equal_accuracy(power_law, law(0.001), 0.05), 2.0)
    assert never.never and never.n_star is None
    # its amortised speed-ups use c_s = 0.03 s, an upper bound on the solver's cost: they are upper bounds
    assert never.bound_kind == "lower" and never.amortised_speedup[1_000] == pytest.approx(1e3 * 0.03 / (2 + 1e3 * 0.05))


def test_break_even_without_a_recorded_one_off_cost_says_why(power_law):
    result = break_even(power_law, speedup_at_equal_accuracy(power_law, law(1.0), 0.01), None)
    assert result.n_star is None and not result.never and "not recorded" in result.reason
    ranked_out = break_even(power_law, speedup_at_equal_accuracy(power_law, 0.5, 0.01, reference_error=1.0), 5.0)
    assert ranked_out.reason == NOT_RANKABLE and ranked_out.n_star is None
    assert json.loads(json.dumps(result.to_dict()))["amortised_speedup"] == {"1000": None, "1000000": None}
