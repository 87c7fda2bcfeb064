"""This machine's stored learning curves: pooled across runs, with bands no narrower than the
rows behind them, and merged with the shipped prior so that a run that stalled stays in range."""

from __future__ import annotations

import json

import pytest

from budgetft.planner import curves
from budgetft.planner.curves import Curve, Point

KEY = ("m", "d", "full")


def stored() -> Curve:
    return curves.stored_curves()[curves.key(*KEY)]


def test_one_runs_point_gets_the_interval_its_rows_support():
    curves.remember(*KEY, [(8000, 8.0)], rows=200)
    (point,) = stored().points
    # 1.96 * 100 * sqrt(0.25 / 200) = 6.93 points, not a fixed +-2
    assert point.examples == 8000 and point.lift == 8.0 and point.runs == 1
    assert point.low == pytest.approx(8.0 - 6.93, abs=0.01) and point.high == pytest.approx(8.0 + 6.93, abs=0.01)


def test_runs_that_stopped_at_nearby_sizes_are_one_point_with_their_spread():
    # Three runs ended at 8,272, 9,144 and 8,800 examples (within 19% of each other): one point,
    # the median of the three lifts, the band from the lowest minus to the highest plus the interval.
    curves.remember(*KEY, [(8272, 0.0)], rows=200)
    curves.remember(*KEY, [(9144, 8.0)], rows=200)
    curves.remember(*KEY, [(8800, 6.0)], rows=400)
    (point,) = stored().points
    assert point.runs == 3 and point.lift == 6.0 and point.examples == round((8272 + 9144 + 8800) / 3)
    assert point.low == pytest.approx(0.0 - 6.93, abs=0.01) and point.high == pytest.approx(8.0 + 6.93, abs=0.01)


def test_sizes_far_apart_stay_separate_points():
    curves.remember(*KEY, [(3200, 2.0), (8000, 9.0)], rows=200)
    assert [p.examples for p in stored().points] == [3200, 8000]


def test_a_store_from_before_version_2_is_dropped_not_misread(tmp_path):
    legacy = {curves.key(*KEY): {"9144": [8.0], "8272": [0.0]}}
    curves._store().write_text(json.dumps(legacy))
    assert curves.stored_curves() == {}
    curves.remember(*KEY, [(8000, 5.0)], rows=200)  # the next run starts a version-2 store
    assert json.loads(curves._store().read_text())["version"] == curves.STORE_VERSION
    assert [p.lift for p in stored().points] == [5.0]


def test_only_the_last_runs_are_kept():
    for lift in range(curves.KEPT_RUNS + 3):
        curves.remember(*KEY, [(8000, float(lift))], rows=200)
    (point,) = stored().points
    assert point.runs == curves.KEPT_RUNS and point.low == pytest.approx(3.0 - 6.93, abs=0.01)


PRIOR = Curve("m", "d", "full", (Point(800, 0.0, -4.8, 4.8), Point(3200, 2.8, -4.8, 9.6), Point(8000, 9.5, 4.4, 15.4)),
              "shipped prior: measured on 400 rows, seeds 0-3, CPU")


def test_this_machines_outcomes_move_the_whole_prior_by_a_shrunk_bias():
    """One run 6 points below the prior moves it a little (its own noise is large: the seed
    spread and 200 selection rows); eight such runs move it most of the way; every size moves by
    the same amount, since a machine whose runs read low at 8,000 examples reads low at 3,200 too."""
    one = Curve("m", "d", "full", (Point(8000, 3.5, -3.4, 10.4, runs=1, rows=200),), "measured in 1 earlier run(s) on this machine")
    moved = curves.corrected(PRIOR, one)
    per_run = curves.PRIOR_BIAS_SD**2 + curves.rows_sd(200) ** 2  # the prior has no seed sd: the bias sd stands in
    shrink = curves.PRIOR_BIAS_SD**2 / (curves.PRIOR_BIAS_SD**2 + per_run)
    assert moved.bias == pytest.approx(-6.0 * shrink) and -2.0 < moved.bias < -0.5
    assert moved.at(3200).lift == pytest.approx(2.8 + moved.bias) and moved.at(8000).lift == pytest.approx(9.5 + moved.bias)
    assert moved.bias_runs == 1 and moved.bias_sd < curves.PRIOR_BIAS_SD
    eight = curves.corrected(PRIOR, Curve("m", "d", "full", (Point(8000, 3.5, -3.4, 10.4, runs=8, rows=200),), "x"))
    assert -6.0 < eight.bias < -3.5 and eight.bias_sd < moved.bias_sd
    assert "moved" in eight.source and "shipped prior" in eight.source


def test_curves_for_corrects_the_prior_with_this_machines_outcomes():
    curves.remember("sentence-transformers/all-MiniLM-L6-v2", "google/boolq", "full", [(8000, 0.0)], rows=200)
    curve = curves.curves_for("sentence-transformers/all-MiniLM-L6-v2", "google/boolq", ["full"])["full"]
    shipped = curves.shipped_curves()[curves.key("sentence-transformers/all-MiniLM-L6-v2", "google/boolq", "full")]
    assert curve.bias < 0 and curve.at(8000).lift == pytest.approx(shipped.at(8000).lift + curve.bias)


def test_a_run_stores_its_trials_final_outcome_and_pace_not_asha_rungs(tmp_path):
    """Only trials that ran their schedule to its end say where the curve (end-of-schedule points)
    stands; ASHA's stopped trials ended mid-schedule. The pace is steps trained against planned."""
    import math
    from types import SimpleNamespace

    from budgetft.rundir import RunDir, TrialRecord
    from budgetft.files import write_json

    run = RunDir(tmp_path / "run")
    write_json(run.baselines_json, {"majority": {"accuracy": 0.6}})
    run.write_trial(TrialRecord(trial_id="t001", method="full", status="finished", max_steps=1000, steps=1150,
                                evals=[{"step": 1150, "accuracy": 0.66, "n": 200}]))
    run.write_trial(TrialRecord(trial_id="t002", method="full", status="stopped_early", max_steps=1000, steps=111,
                                evals=[{"step": 111, "accuracy": 0.6, "n": 200}]))
    job = SimpleNamespace(train=SimpleNamespace(batch_size=8), model=SimpleNamespace(name="m"), data=SimpleNamespace(name="d"))
    curves.learned_from(job, run)
    (point,) = curves.stored_curves()[curves.key("m", "d", "full")].points
    assert point.examples == 9200 and point.lift == pytest.approx(6.0) and point.rows == 200
    assert curves.paces("m", "d", "full") == [pytest.approx(round(math.log(1.15), 4))]


MINILM = ("sentence-transformers/all-MiniLM-L6-v2", "google/boolq", "full")


def test_a_curve_a_plan_reads_never_falls_as_examples_grow():
    dip = Curve("m", "d", "full", (Point(4800, 5.0, 0, 10), Point(6400, 6.5, 1, 12), Point(8000, 8.2, 2, 14), Point(9125, 6.9, 1, 13)), "x")
    flat = curves.never_falling(dip)
    # The fall from 8,000 to 9,125 examples is pooled: both take their mean; the bands stay.
    assert [round(p.lift, 2) for p in flat.points] == [5.0, 6.5, 7.55, 7.55]
    assert [(p.low, p.high) for p in flat.points] == [(p.low, p.high) for p in dip.points]
    assert curves.never_falling(flat) is flat  # nothing to pool: the same curve
    # A curve that never learns still never does (SmolLM2 LoRA's shipped prior, in shape).
    never = Curve("m", "d", "lora", (Point(200, -1.5, -8, 5), Point(400, -8.0, -14, -1), Point(800, -1.0, -7, 5), Point(1200, -3.0, -9, 3)), "x")
    assert curves.never_falling(never).examples_to_learn() is None


def test_runs_that_reached_only_the_long_end_do_not_make_the_planned_curve_fall():
    """This machine's runs measured 8,700-9,600 examples below the prior there; merged, the
    curve read 8.2 at 8,000 and 6.9 past 9,125: it must not fall."""
    for examples, lift in ((8712, 8.0), (9024, 1.5), (9640, 3.5), (5712, 4.5)):
        curves.remember(*MINILM, [(examples, lift)], rows=200)
    curve = curves.curves_for(MINILM[0], MINILM[1], ["full"])["full"]
    lifts = [p.lift for p in curve.points]
    assert lifts == sorted(lifts)
    assert curve.at(13_600).lift >= curve.at(6_800).lift
