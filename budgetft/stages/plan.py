"""Stage 3, plan: with the money left, how many trials of each method, how many steps, which
ASHA rungs (budgetft.planner), and each trial's configuration, one round at a time.

Money that ASHA frees by stopping trials early is planned again with new configurations (never
one already tried) until not one more useful trial fits.
"""

from __future__ import annotations

from dataclasses import replace
from decimal import Decimal
from typing import Callable

from budgetft.planner import BudgetTooSmall, Plan, plan_budget
from budgetft.planner.costs import CALIBRATION_STEPS, machine_concurrency, run_costs
from budgetft.planner.rates import rates_from
from budgetft.rundir import PlanRecord, RunDir


def plan_round(
    task, run: RunDir, meter, usd_per_hour: Decimal, *, again: bool = False,
    note: Callable[[str], None] = lambda line: None, show: Callable[[Plan, list[dict]], None] | None = None,
    calibration_steps: int = CALIBRATION_STEPS,
) -> tuple[Plan, list[dict]] | None:
    """The next round's plan and trial specs, written to plan.json; None when not one useful
    trial fits (the first round records why as "refused"). `again`: a round of this session
    already ran, so a refusal just ends the run."""
    meter.set_stage("overhead")
    calibration = run.calibration()
    rates = rates_from(calibration["methods"])
    costs = run_costs(task, rates, calibration["eval_rows_per_s"], calibration_steps, baselines_done=True, calibration_done=True)
    if again:  # Ray is up from this session's earlier round: no scheduler start-up to pay again
        costs = replace(costs, startup_seconds=0.0)
    ledger = meter.ledger
    ledger.refresh()
    # What has really been used so far: the ledger minus time prepaid but not yet used.
    used = ledger.spent - meter.unused_usd()
    previous = run.plan()
    try:
        plan = plan_budget(ledger.cap, used, usd_per_hour, rates, costs, task.job.train.max_steps, concurrency=machine_concurrency(calibration.get("packing")))
    except BudgetTooSmall as exc:
        if again:
            note(f"no further round: ${ledger.cap - used} left does not buy one more useful trial")
        else:
            note(f"[yellow]no trials: {exc}[/]")
            previous.refused = str(exc)
            run.write_plan(previous)
        return None
    specs = trial_specs(task, run, plan, rates, costs.eval_seconds)
    if not specs:  # small discrete spaces run out: every configuration has been tried
        note(f"no further round: every configuration in the job's search spaces has been tried (${ledger.cap - used} left)")
        return None
    data = plan.to_json()
    data.update(round=previous.round + 1, packing=calibration.get("packing"), eval_seconds=costs.eval_seconds)
    # Every round's plan, and every trial planned so far (for reports and benchmarks).
    summary = {k: v for k, v in data.items() if k not in ("rounds", "trials")} | {"trials": [t["trial_id"] for t in specs]}
    record = PlanRecord(**data, rounds=[*previous.rounds, summary], trials=[*previous.trials, *specs])
    run.write_plan(record)
    if record.round > 1:
        note(f"round {record.round}: ${ledger.cap - used} of the cap is left; planning more trials with it")
    if show is not None:
        show(plan, specs)
    return plan, specs


def trial_specs(task, run: RunDir, plan: Plan, rates: dict, eval_seconds: float) -> list[dict]:
    """One spec per planned trial: its id, method, configuration, steps, rungs, and the
    calibrated lengths of a step and an evaluation (what its worker asks the meter to prepay
    before its first step and evaluation, seconds)."""
    from budgetft.planner.configs import trial_configs

    trials = run.trials()
    existing = len(trials)
    specs: list[dict] = []
    for mp in plan.methods:
        tried = [t.config for t in trials if t.method == mp.method]
        for config in trial_configs(task.job.space_for(mp.method), mp.method, mp.trials, task.job.seed + existing, tried):
            specs.append(
                {
                    "trial_id": f"t{existing + len(specs) + 1:03d}-{mp.method}",
                    "method": mp.method,
                    "config": config,
                    "max_steps": mp.max_steps,
                    "grace": mp.grace_period,
                    "eval_steps": plan.eval_steps(mp.method),
                    "step_s": round(rates[mp.method].seconds_per_step, 3),
                    "eval_s": round(eval_seconds, 3),
                }
            )
    return specs
