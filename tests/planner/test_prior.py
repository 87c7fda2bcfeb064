"""Prior-guided plans (issue 13): learning curves, what a budget buys with them, the held-out
test's size, and the forecast."""

from decimal import Decimal

import pytest

from budgetft.planner import Costs, MethodRate, plan_budget
from budgetft.planner.curves import Curve, Point
from budgetft.planner.split import held_out_rows_for, rows_to_show, smallest_lift

LORA = Curve("m", "d", "lora", (Point(200, 0.0, -2, 2), Point(600, 5.0, 2, 8), Point(1600, 7.0, 3, 11)), "test curve")


def test_a_curve_interpolates_in_log_examples_and_stays_flat_past_its_data():
    assert LORA.at(0).lift == 0 and LORA.at(100).lift == 0.0
    mid = LORA.at((200 * 600) ** 0.5)  # halfway in log examples
    assert mid.lift == pytest.approx(2.5) and mid.low == pytest.approx(0.0)
    assert LORA.at(10_000).lift == 7.0 and LORA.at(10_000).high == 11
    need = LORA.examples_to_learn(2.0)
    assert LORA.at(need).lift >= 2.0 > LORA.at(need - 1).lift


def costs():
    return Costs(eval_seconds=20.0, baseline_seconds=70.0, calibration_seconds=15.0, startup_seconds=15.0, trial_startup_seconds=30.0, reserve_seconds=100.0)


def test_a_small_budget_buys_one_trial_long_enough_to_learn_and_says_why():
    rates = {"lora": MethodRate("lora", 3.3, 8 / 3.3), "bitfit": MethodRate("bitfit", 2.0, 4.0)}
    plan = plan_budget(Decimal("0.25"), Decimal(0), Decimal("1.00"), rates, costs(), max_steps=400, curves={"lora": LORA}, batch_size=8)
    (only,) = plan.methods
    assert (only.method, only.trials, only.keep_last) == ("lora", 1, True) and only.max_steps >= 150
    # Nothing to choose between, so no rungs: one score on the selection rows at the last step (a
    # curve point the next plan learns from; the test rows inform no plan).
    assert plan.eval_steps("lora") == [only.max_steps]
    assert "buys one lora trial of" in plan.words and "would forecast less" in plan.words
    assert plan.forecast["low_points"] <= plan.forecast["lift_points"] <= plan.forecast["high_points"]
    assert plan.forecast["double_budget_lift_points"] >= plan.forecast["lift_points"]
    assert "no learning curve" in plan.dropped["bitfit"]


def test_money_beyond_max_steps_buys_more_configurations():
    rates = {"lora": MethodRate("lora", 3.3, 8 / 3.3)}
    plan = plan_budget(Decimal("2.00"), Decimal(0), Decimal("1.00"), rates, costs(), max_steps=200, curves={"lora": LORA}, batch_size=8)
    (only,) = plan.methods
    assert only.trials >= 2 and only.max_steps == 200 and not only.keep_last
    assert plan.eval_steps("lora") == [200]  # each is scored on the selection rows to choose the winner


def test_a_budget_that_cannot_buy_a_trial_long_enough_to_learn_is_refused_with_the_minimum():
    from budgetft.planner import BudgetTooSmall

    rates = {"lora": MethodRate("lora", 3.3, 8 / 3.3)}
    with pytest.raises(BudgetTooSmall) as err:
        plan_budget(Decimal("0.08"), Decimal(0), Decimal("1.00"), rates, costs(), max_steps=400, curves={"lora": LORA}, batch_size=8)
    minimum = err.value.minimum
    assert "long enough to learn" in str(err.value)
    plan_budget(minimum, Decimal(0), Decimal("1.00"), rates, costs(), max_steps=400, curves={"lora": LORA}, batch_size=8)


def test_test_rows_are_what_the_budget_buys_and_say_what_they_can_show():
    assert rows_to_show(0.05) == 942  # (1.96 + 0.84)^2 x 0.30 / 0.05^2
    assert smallest_lift(500) == pytest.approx(0.0686, abs=0.001)
    split = held_out_rows_for(900, 7.5, 3000)  # $0.25 at $1/h, 7.5 rows/s
    assert split.rows == 506 and "~942 rows" in split.reason and "6.8 points or more" in split.reason
    stretched = held_out_rows_for(900, 6.0, 3000)  # slower scoring: stretched to the 500-row standard
    assert stretched.rows == 500
    small = held_out_rows_for(144, 7.5, 3000)
    assert 50 <= small.rows < 500 and "a larger budget would buy a firmer test" in small.reason
    assert held_out_rows_for(900, 7.5, 300).rows == 300 and "only 300 rows" in held_out_rows_for(900, 7.5, 300).reason


def test_test_rows_stop_at_what_the_claim_needs_unless_more_cost_next_to_nothing():
    # The README run: $0.25 at $1/h, MiniLM scoring ~64 rows/s, 3,070 spare rows. A 15% share
    # would buy all of them (~96 s); the claim's 942 rows take ~29 s and the rest trains.
    readme = held_out_rows_for(900, 64.0, 3070)
    assert readme.rows == 942 and "take seconds from training" in readme.reason
    # A larger budget takes more while both passes stay within 3% of it: $1 buys 3,456 > 3,070.
    large = held_out_rows_for(3600, 64.0, 3070)
    assert large.rows == 3070 and "only 3070 rows to spare" in large.reason
    assert held_out_rows_for(3600, 64.0, 5000).rows == 3456
    # Never fewer than the claim's rows where those are affordable, whatever the pool beyond.
    assert held_out_rows_for(900, 64.0, 600).rows == 600 and "only 600 rows" in held_out_rows_for(900, 64.0, 600).reason


FLAT = Curve("m", "d", "bitfit", (Point(200, -1.0, -4, 2), Point(1200, 1.5, -2, 5)), "flat test curve")


def test_an_option_whose_curve_never_learns_gets_no_trials_and_says_why():
    rates = {"lora": MethodRate("lora", 3.3, 8 / 3.3), "bitfit": MethodRate("bitfit", 1.0, 8.0)}
    plan = plan_budget(Decimal("0.50"), Decimal(0), Decimal("1.00"), rates, costs(), max_steps=400, curves={"lora": LORA, "bitfit": FLAT}, batch_size=8)
    assert [m.method for m in plan.methods] == ["lora"]
    assert "never rose 2 points above the majority within 1,200 training examples" in plan.dropped["bitfit"]


def test_when_no_curve_learns_every_option_is_planned_as_an_equal():
    rates = {"lora": MethodRate("lora", 3.3, 8 / 3.3), "bitfit": MethodRate("bitfit", 1.0, 8.0)}
    plan = plan_budget(Decimal("1.00"), Decimal(0), Decimal("1.00"), rates, costs(), max_steps=100, curves={"bitfit": FLAT}, batch_size=8)
    assert {m.method for m in plan.methods} == {"lora", "bitfit"} and plan.forecast is None


@pytest.mark.parametrize("test_seconds", [0.0, 60.0, 400.0])
@pytest.mark.parametrize("concurrency", [1, 2])
def test_a_plan_with_rungs_keeps_the_held_out_test_back_once(test_seconds, concurrency):
    # Enough money for ASHA's many trials: the rungs are sized on the seconds left after the
    # option's held-out test, so the expected spend (rungs stopping trials as planned, then the
    # test) fits the money; only the worst case, where ASHA stops nothing, may go past it.
    rates = {"lora": MethodRate("lora", 0.5, 16.0, test_seconds=test_seconds)}
    plan = plan_budget(Decimal("2.00"), Decimal(0), Decimal("1.00"), rates, costs(), max_steps=200,
                       curves={"lora": LORA}, batch_size=8, concurrency=concurrency)
    (only,) = plan.methods
    assert only.trials >= 9 and only.rungs  # the ASHA path
    assert plan.reserve_seconds == pytest.approx(costs().reserve_seconds + test_seconds)
    expected = plan.fixed_seconds + plan.reserve_seconds + only.expected_seconds / concurrency
    assert expected <= 7200  # $2.00 at $1.00/h
    if concurrency == 1:  # (two slots reach the plan's cap on trials first)
        assert expected >= 0.97 * 7200  # and the money is spent, not left over
    assert plan.worst_case_usd >= plan.expected_usd


def test_choosing_on_few_selection_rows_is_worth_less_than_on_many():
    from budgetft.planner.prior import best_of_bonus

    assert best_of_bonus(1, 200) == 0.0
    # 200 rows: a trial's score is ±3.4 points, so the best of 2 gains ~0.16 of the 0.56 a
    # noiseless choice would.
    assert best_of_bonus(2, 200) == pytest.approx(0.56 / (1 + 3.373 ** 2) ** 0.5, abs=0.005)
    assert best_of_bonus(2, 200) < best_of_bonus(2, 2000) < best_of_bonus(2) == pytest.approx(0.56)


def test_a_fast_step_buys_one_long_trial_not_two_of_half_the_length():
    """The plan of 2026-12-02: a MiniLM step calibrated at 0.48 s, $0.25, and this machine's
    merged curve, which fell past 8,000 examples. It split the money into two trials of 850 steps;
    with the curve never falling and the choice priced at its 200 selection rows' noise, one
    trial gets all of it."""
    from budgetft.planner.curves import never_falling

    merged = Curve("m", "d", "full", (
        Point(800, 0.0, -4.8, 4.8), Point(1600, 0.0, -4.8, 4.8), Point(3200, 2.8, -4.8, 9.6), Point(4800, 5.1, -2.8, 16.1),
        Point(5400, 4.15, -5.9, 15.5), Point(5800, 5.79, -4.4, 15.1), Point(6400, 6.46, -4.6, 14.6), Point(8000, 8.24, -5.1, 15.4),
        Point(9125, 6.93, -5.4, 15.4)), "test curve")
    rates = {"full": MethodRate("full", 0.48, 8 / 0.48)}
    few = Costs(eval_seconds=3.0, baseline_seconds=2.0, calibration_seconds=10.0, startup_seconds=15.0, trial_startup_seconds=20.0,
                reserve_seconds=30.0, selection_rows=200)
    plan = plan_budget(Decimal("0.25"), Decimal(0), Decimal("1.00"), rates, few, max_steps=2000, curves={"full": never_falling(merged)}, batch_size=8)
    (only,) = plan.methods
    assert only.trials == 1 and only.max_steps > 1500
    # The same plan on the curve as merged, with a noiseless choice, bought two short trials.
    before = Costs(**{**few.__dict__, "selection_rows": None})
    split = plan_budget(Decimal("0.25"), Decimal(0), Decimal("1.00"), rates, before, max_steps=2000, curves={"full": merged}, batch_size=8)
    assert split.methods[0].trials == 2


def test_no_rows_to_hold_out_says_so_instead_of_a_lift(tmp_path):
    """Issue 27: `plan` on a job whose evaluation split has no rows beyond the selection rows
    printed "0 rows show 153.4 points or more"."""
    split = held_out_rows_for(900, 7.5, 0)
    assert split.rows == 0 and "points or more" not in split.reason
    assert split.reason.startswith("no test rows: the selection rows take every row") and "lower eval.limit" in split.reason
