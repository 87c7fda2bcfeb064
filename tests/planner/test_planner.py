import random
from decimal import Decimal

import pytest

from budgetft.planner import MIN_STEPS, BudgetTooSmall, Costs, MethodRate, plan_budget
from budgetft.money.usd import seconds_to_usd


def random_case(rng: random.Random):
    rates = {
        name: MethodRate(name, rng.uniform(0.05, 30.0), 1.0)
        for name in rng.sample(["lora", "ia3", "bitfit", "prompt_tuning", "full"], rng.randint(1, 5))
    }
    costs = Costs(
        eval_seconds=rng.uniform(1, 200),
        baseline_seconds=rng.uniform(0, 200),
        calibration_seconds=rng.uniform(0, 300),
        startup_seconds=rng.uniform(0, 30),
        trial_startup_seconds=rng.uniform(0, 40),
        reserve_seconds=rng.uniform(5, 60),
    )
    price = Decimal(str(round(rng.uniform(0.05, 40.0), 4)))
    cap = Decimal(str(round(rng.uniform(0.01, 20.0), 2)))
    spent = (cap * Decimal(str(round(rng.uniform(0, 0.5), 2)))).quantize(Decimal("0.000001"))
    return rates, costs, price, cap, spent, rng.choice([20, 150, 800]), rng.choice([1, 1, 2, 4])


def test_never_plans_past_the_cap():
    rng = random.Random(7)
    planned = refused = 0
    for _ in range(3000):
        rates, costs, price, cap, spent, max_steps, concurrency = random_case(rng)
        try:
            plan = plan_budget(cap, spent, price, rates, costs, max_steps, concurrency)
        except BudgetTooSmall as exc:
            refused += 1
            assert exc.minimum > cap  # refused only below the minimum it quotes
            # ... and the minimum it quotes is enough: a cap of that much buys a plan.
            assert plan_budget(exc.minimum, spent, price, rates, costs, max_steps, concurrency).total_trials >= 1
            continue
        planned += 1
        assert plan.expected_usd <= cap
        # What the plan expects to use, plus the reserve, fits in what is left.
        budget_s = float((cap - spent) * 3600 / price)
        used = plan.fixed_seconds + plan.reserve_seconds + sum(m.expected_seconds for m in plan.methods) / concurrency
        assert used <= budget_s + 1e-6
        for m in plan.methods:
            assert MIN_STEPS <= m.max_steps <= max_steps
            assert m.trials >= 1 and m.grace_period <= m.max_steps
            assert all(r < m.max_steps for r in m.rungs)
            assert m.rungs == sorted(m.rungs) and all(b == a * plan.reduction_factor for a, b in zip(m.rungs, m.rungs[1:]))
            assert m.expected_seconds <= m.worst_seconds + 1e-9
    assert planned > 500 and refused > 100  # the sweep covers both sides


def test_budget_below_the_minimum_is_refused_with_the_minimum():
    rates = {"lora": MethodRate("lora", 10.0, 0.8)}
    costs = Costs(eval_seconds=30, baseline_seconds=35, calibration_seconds=33)
    with pytest.raises(BudgetTooSmall) as err:
        plan_budget(Decimal("0.0001"), Decimal(0), Decimal("2.86"), rates, costs, 150)
    minimum = err.value.minimum
    assert f"the minimum is ${minimum}" in str(err.value)
    plan = plan_budget(minimum, Decimal(0), Decimal("2.86"), rates, costs, 150)
    assert plan.total_trials == 1 and plan.methods[0].max_steps >= MIN_STEPS
    with pytest.raises(BudgetTooSmall):
        plan_budget(minimum - Decimal("0.02"), Decimal(0), Decimal("2.86"), rates, costs, 150)


def test_cheap_methods_get_more_trials():
    rates = {"cheap": MethodRate("cheap", 1.0, 8.0), "dear": MethodRate("dear", 8.0, 1.0)}
    costs = Costs(eval_seconds=10, baseline_seconds=10, calibration_seconds=30, trial_startup_seconds=5)
    plan = plan_budget(Decimal("10"), Decimal(0), Decimal("2.86"), rates, costs, max_steps=100)
    by = {m.method: m for m in plan.methods}
    assert by["cheap"].trials > by["dear"].trials
    assert by["cheap"].max_steps <= 100 and by["dear"].rungs  # ASHA rungs for both


def test_a_method_that_cannot_fit_gives_its_share_back():
    rates = {"lora": MethodRate("lora", 2.0, 4.0), "huge": MethodRate("huge", 500.0, 0.01)}
    costs = Costs(eval_seconds=5, baseline_seconds=5, calibration_seconds=5, trial_startup_seconds=2)
    plan = plan_budget(Decimal("0.5"), Decimal(0), Decimal("2.86"), rates, costs, max_steps=150)
    assert [m.method for m in plan.methods] == ["lora"] and "huge" in plan.dropped


def test_money_is_rounded_up():
    assert seconds_to_usd(1, Decimal("2.86")) == Decimal("0.000795")  # 0.000794444.. rounds up


def test_a_rate_measured_beside_a_neighbour_is_stored_as_the_whole_machines(tiny_job_data):
    """Calibration beside a busy core computes on one thread of two: stored as is, the check
    before spending (which slows stored rates by the neighbour it sees now) would count that
    neighbour twice and refuse the README's budget (seen: $0.25 refused, 'minimum $0.29')."""
    from budgetft.planner.rates import store_rates, stored_rates
    from budgetft.spec import validate_job
    from budgetft.task import prepare_task

    task = prepare_task(validate_job(tiny_job_data))
    measured = {"full": {"seconds_per_step": 0.96, "examples_per_s": 8 / 0.96, "peak_memory_mb": 1.0, "trainable_params": 1}}
    store_rates(task.job, "cpu", measured, 20.0, share=0.5)
    rates, eval_rate = stored_rates(task.job, "cpu", ["full"])
    assert rates["full"].seconds_per_step == pytest.approx(0.48) and rates["full"].examples_per_s == pytest.approx(16 / 0.96)
    assert eval_rate == pytest.approx(40.0)
    store_rates(task.job, "cpu", measured, 20.0)  # measured on the whole machine
    assert stored_rates(task.job, "cpu", ["full"])[0]["full"].seconds_per_step == pytest.approx(0.48)  # median keeps the faster


def test_rates_stored_without_their_share_of_the_machine_are_not_used(tiny_job_data):
    """Rates stored before budgetft recorded the share they ran on mix busy and idle machines."""
    import json

    from budgetft.paths import cache_root
    from budgetft.planner.rates import machine_key, rate_key, store_rates, stored_rates
    from budgetft.spec import validate_job
    from budgetft.task import prepare_task

    task = prepare_task(validate_job(tiny_job_data))
    old = {"seconds_per_step": 1.6, "examples_per_s": 5.0, "peak_memory_mb": 1.0, "trainable_params": 1}
    path = cache_root() / "rates.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({machine_key("cpu"): {rate_key(task.job, "full"): {**old, "history": [old]}}}))
    assert stored_rates(task.job, "cpu", ["full"])[0] == {}
    store_rates(task.job, "cpu", {"full": {**old, "seconds_per_step": 0.5, "examples_per_s": 16.0}}, None)
    entry = json.loads(path.read_text())[machine_key("cpu")][rate_key(task.job, "full")]
    assert [h["seconds_per_step"] for h in entry["history"]] == [0.5]  # the old one is dropped
    assert stored_rates(task.job, "cpu", ["full"])[0]["full"].seconds_per_step == pytest.approx(0.5)


def test_a_trials_own_seconds_are_paid_by_every_trial_of_its_option():
    """MethodRate.trial_seconds (PET's fits, iPET's labelling) costs what the same seconds of
    per-trial start-up would: fewer or shorter trials; 0 leaves a plan as it was."""
    from dataclasses import replace

    costs = Costs(eval_seconds=20, baseline_seconds=10, calibration_seconds=10)
    plain = {"lora": MethodRate("lora", 2.0, 4.0)}
    priced = {"lora": MethodRate("lora", 2.0, 4.0, trial_seconds=60.0)}
    as_startup = replace(costs, trial_startup_seconds=costs.trial_startup_seconds + 60.0)
    for cap in (Decimal("0.25"), Decimal("1.00")):
        expected = plan_budget(cap, Decimal(0), Decimal("1.00"), plain, as_startup, 2000)
        got = plan_budget(cap, Decimal(0), Decimal("1.00"), priced, costs, 2000)
        assert got.methods == expected.methods and got.expected_usd == expected.expected_usd
        assert plan_budget(cap, Decimal(0), Decimal("1.00"), plain, costs, 2000).methods != got.methods
    with pytest.raises(BudgetTooSmall) as err:
        plan_budget(Decimal("0.01"), Decimal(0), Decimal("1.00"), priced, costs, 2000)
    with pytest.raises(BudgetTooSmall) as plain_err:
        plan_budget(Decimal("0.01"), Decimal(0), Decimal("1.00"), plain, costs, 2000)
    assert err.value.minimum > plain_err.value.minimum


def test_after_calibration_what_is_left_buys_one_short_trial_not_a_refusal():
    """Once calibration has been paid, a first round too poor for a useful trial runs one short
    trial of the cheapest option (issue 27: $0.04 spent $0.0167 on calibration, then refused
    "minimum is $0.05"), and only the report when not even that fits."""
    from budgetft.planner import BudgetTooSmall, Costs, MethodRate, plan_budget
    from budgetft.planner.budget import SHORT_MIN_STEPS, plan_short
    from budgetft.money.usd import seconds_to_usd

    rates = {"lora": MethodRate("lora", 2.0, 4.0, eval_seconds=3.0, test_seconds=4.0), "full": MethodRate("full", 5.0, 1.6, eval_seconds=3.0)}
    costs = Costs(eval_seconds=3.0, baseline_seconds=0.0, calibration_seconds=0.0, startup_seconds=10.0, trial_startup_seconds=10.0, reserve_seconds=30.0)
    price = Decimal("36")  # a cent a second
    cap, spent = Decimal("0.80"), Decimal("0.10")  # 70 s left
    with pytest.raises(BudgetTooSmall) as refused:
        plan_budget(cap, spent, price, rates, costs, max_steps=200)
    plan = plan_short(cap, spent, price, rates, costs, 200, refused.value)
    assert plan is not None and plan.total_trials == 1
    (only,) = plan.methods
    assert only.method == "lora" and SHORT_MIN_STEPS <= only.max_steps == (70 - 10 - 34 - 10 - 3) // 2
    assert plan.worst_case_usd <= cap and "short trial" in plan.words and f"${refused.value.minimum}" in plan.words
    assert plan.eval_steps("lora") == [only.max_steps]
    assert plan_short(Decimal("0.60"), spent, price, rates, costs, 200, refused.value) is None  # 50 s: only the report
    assert seconds_to_usd(plan.reserve_seconds, price) == Decimal("0.34")  # the reserve keeps its held-out test
