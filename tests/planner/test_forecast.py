"""The forecast and its range: four reasons an outcome lands away from the curve, added as
variances, an 80% interval, this machine's pace."""

import math

import pytest

from budgetft.planner.curves import Curve, Point, rows_sd
from budgetft.planner.forecast import DEFAULT_PACE_SD, PACE_PRIOR_RUNS, Z, Pace, forecast

CURVE = Curve("m", "d", "full", (Point(4000, 2.0, -1, 5, runs=3, sd=1.0, rows=1200), Point(8000, 5.0, 2, 8, runs=3, sd=2.0, rows=1200),
                                Point(16000, 6.0, 3, 9, runs=3, sd=2.0, rows=1200)), "test prior, seeds 0-2")


def test_the_range_adds_the_four_reasons_as_variances_and_holds_four_in_five():
    f = forecast(CURVE, 8000, test_rows=942)
    assert f.parts["seed"] == pytest.approx(2.0)
    assert f.parts["prior"] == pytest.approx(math.sqrt(rows_sd(1200) ** 2 + 2.0**2 / 3), abs=0.01)
    assert f.parts["test_rows"] == pytest.approx(rows_sd(942), abs=0.01)
    assert f.parts["pace"] == pytest.approx(abs(CURVE.slope(8000)) * DEFAULT_PACE_SD, abs=0.01)
    assert f.sd == pytest.approx(math.sqrt(sum(v**2 for v in f.parts.values())), abs=0.02)
    assert (f.low, f.lift, f.high) == pytest.approx((5.0 - Z * f.sd, 5.0, 5.0 + Z * f.sd))
    assert f.high - f.low < 10  # a range that says something


def test_more_test_rows_narrow_the_range_and_a_flat_curve_ignores_the_pace():
    assert forecast(CURVE, 8000, test_rows=3000).sd < forecast(CURVE, 8000, test_rows=300).sd
    flat_end = forecast(CURVE, 40000, test_rows=942)
    assert flat_end.parts["pace"] == 0.0  # past the last point the curve stays flat


def test_a_machine_that_trains_fewer_steps_than_planned_forecasts_at_the_size_it_reaches():
    slow = Pace(mean=math.log(0.8), sd=0.1, runs=5)
    f = forecast(CURVE, 8000, test_rows=942, pace=slow)
    assert f.examples == 6400 and f.lift == pytest.approx(CURVE.at(6400).lift) and f.lift < forecast(CURVE, 8000).lift


def test_this_machines_paces_are_shrunk_toward_the_default():
    assert Pace.of([]) == Pace()
    one = Pace.of([math.log(0.5)])
    assert one.mean == pytest.approx(math.log(0.5) / (1 + PACE_PRIOR_RUNS)) and one.sd == pytest.approx(DEFAULT_PACE_SD * math.sqrt(PACE_PRIOR_RUNS / 3))
    many = Pace.of([0.1, -0.1] * 10)
    assert many.mean == pytest.approx(0.0) and many.sd < DEFAULT_PACE_SD


def test_a_corrected_curve_carries_what_is_left_unknown_of_its_bias():
    moved = Curve(CURVE.model, CURVE.data, CURVE.method, CURVE.points, "x", bias=-2.0, bias_sd=0.7, bias_runs=6)
    assert forecast(moved, 8000).parts["prior"] == pytest.approx(0.7)
