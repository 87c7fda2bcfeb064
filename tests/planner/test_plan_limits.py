"""A plan stays bounded and honest at the extremes: a huge budget, a budget the stored rates barely
allow, one contended calibration."""

import os
import subprocess
import sys
from decimal import Decimal

import pytest


def test_a_huge_budget_plans_quickly_and_prints_plain_dollars(tiny_job_file):
    """$1e9 once planned 6,119 trials and never printed; the cap printed as $1E+9."""
    proc = subprocess.run(
        [sys.executable, "-m", "budgetft", "plan", str(tiny_job_file), "--budget", "1e9", "--price-per-hour", "1", "--no-calibrate"],
        capture_output=True, text=True, timeout=120, env={**os.environ, "COLUMNS": "200"},
    )
    assert proc.returncode == 0, proc.stderr
    assert "E+" not in proc.stdout + proc.stderr and "$1000000000" in proc.stdout


def test_plans_are_bounded_in_size():
    from budgetft.planner import MAX_TRIALS_PER_METHOD, Costs, MethodRate, plan_budget

    rates = {"lora": MethodRate("lora", 1.0, 8.0), "bitfit": MethodRate("bitfit", 0.5, 16.0)}
    plan = plan_budget(Decimal("1e12"), Decimal(0), Decimal(1), rates, Costs(5.0, 10.0, 10.0), max_steps=300)
    assert all(m.trials <= MAX_TRIALS_PER_METHOD for m in plan.methods)


def test_the_check_before_spending_is_the_plans_own_arithmetic_with_a_margin(tiny_job_data, tmp_path, monkeypatch):
    """A budget that the stored rates barely allow is refused before spending, since the plan
    after calibration on a machine a little slower than stored would refuse it (once: 35-73%
    of the cap spent, then exit 0 and "no trials")."""
    from budgetft.planner import BudgetTooSmall, costs
    from budgetft.planner.inputs import budget_check
    from budgetft.planner.rates import store_rates
    from budgetft.spec import validate_job
    from budgetft.task import prepare_task
    from budgetft.telemetry.device import device_name

    task = prepare_task(validate_job(tiny_job_data))
    store_rates(task.job, device_name(), {"lora": {"seconds_per_step": 1.0, "examples_per_s": 8.0, "peak_memory_mb": 1.0, "trainable_params": 1}}, 20.0)
    price = Decimal("36")
    monkeypatch.setattr(costs, "busy_slowdown", lambda margin=costs.PRECHECK_MARGIN: 1.0)
    minimum = None
    try:
        budget_check({task.job.model.name: task}, task.job, Decimal("0.01"), Decimal(0), price)
    except BudgetTooSmall as exc:
        minimum = exc.minimum
    assert minimum is not None
    budget_check({task.job.model.name: task}, task.job, minimum, Decimal(0), price)  # the stored rates alone approve it
    monkeypatch.setattr(costs, "busy_slowdown", lambda margin=costs.PRECHECK_MARGIN: margin)
    with pytest.raises(BudgetTooSmall):
        budget_check({task.job.model.name: task}, task.job, minimum, Decimal(0), price)


def test_one_contended_calibration_does_not_poison_the_stored_rates(tiny_job_data, monkeypatch):
    from budgetft.planner.rates import store_rates, stored_rates
    from budgetft.spec import validate_job
    from budgetft.task import prepare_task

    task = prepare_task(validate_job(tiny_job_data))

    def measured(s):
        return {"lora": {"seconds_per_step": s, "examples_per_s": 8 / s, "peak_memory_mb": 100.0, "trainable_params": 10}}

    store_rates(task.job, "cpu", measured(2.9), 10.0)
    store_rates(task.job, "cpu", measured(14.0), 2.0)  # two runs at once on two cores
    rates, eval_rate = stored_rates(task.job, "cpu", ["lora"])
    assert rates["lora"].seconds_per_step == pytest.approx(2.9) and eval_rate == pytest.approx(10.0)
    store_rates(task.job, "cpu", measured(3.1), 9.0)
    assert stored_rates(task.job, "cpu", ["lora"])[0]["lora"].seconds_per_step == pytest.approx(3.1)  # the median
