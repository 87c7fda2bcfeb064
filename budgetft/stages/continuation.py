"""A resumed run's interrupted trial, continued from its last checkpoint when that buys more
than a new trial (issue 27, point 3).

A trial stopped by Ctrl-C, SIGTERM, a kill -9 of its driver or a dead worker keeps its last
checkpoint (budgetft.train.checkpoint). On `--resume`, before any new round is planned, the
trial that checkpointed furthest is weighed against what the money left buys afresh: going on
costs only its start-up and the steps still to run (same configuration, same data order from its
step), a new trial pays again for every step. It goes on when it would end at least as far along
as the best new trial could; plan.json says which was chosen and why (`continued`).
"""

from __future__ import annotations

import math
from decimal import Decimal
from typing import Callable

from budgetft.money.usd import SECONDS_PER_HOUR, seconds_to_usd
from budgetft.planner import BudgetTooSmall, MethodPlan, Plan, plan_budget
from budgetft.planner.budget import REDUCTION_FACTOR
from budgetft.planner.costs import machine_concurrency
from budgetft.planner.inputs import plan_inputs
from budgetft.rundir import RunDir, TrialRecord, utc_now
from budgetft.train import checkpoint as trial_checkpoint


def candidate(run: RunDir) -> tuple[TrialRecord, dict] | None:
    """The interrupted trial with a checkpoint short of its last step that got furthest, and its
    spec from plan.json; None when there is none."""
    specs = {s.get("trial_id"): s for s in run.plan().trials}
    found = []
    for t in run.trials():
        step = int((t.checkpoint or {}).get("step") or 0)
        spec = specs.get(t.trial_id)
        end = int((t.checkpoint or {}).get("end") or t.max_steps)
        if (t.status == "interrupted" and spec is not None and 0 < step < end and trial_checkpoint.continuable(t.method)
                and trial_checkpoint.find(run.trial_dir(t.trial_id)) is not None):
            found.append((step, t, spec))
    if not found:
        return None
    step, trial, spec = max(found, key=lambda f: f[0])
    return trial, spec


def continue_interrupted(tasks: dict, job, run: RunDir, meter, usd_per_hour: Decimal, *, note: Callable[[str], None] = lambda line: None,
                         calibration_steps: int = 2) -> tuple[Plan, list[dict]] | None:
    """The round that continues a resumed run's interrupted trial, or None (a new round is planned
    instead). The choice, either way, is recorded in plan.json's `continued`."""
    found = candidate(run)
    if found is None:
        return None
    trial, spec = found
    step = int(trial.checkpoint["step"])
    end = int(trial.checkpoint.get("end") or spec["max_steps"])
    calibration = run.calibration()
    inputs = plan_inputs(tasks, job, calibration=calibration, baselines_done=True, calibration_steps=calibration_steps)
    rate = inputs.rates.get(spec.get("option") or spec["method"])
    if rate is None:
        return None
    costs = inputs.costs
    meter.ledger.refresh()
    used = meter.ledger.spent - meter.unused_usd()
    left_s = float((meter.ledger.cap - used) * SECONDS_PER_HOUR / usd_per_hour)
    evals = (costs.eval_seconds if rate.eval_seconds is None else rate.eval_seconds)
    reserve = costs.reserve_seconds + float(rate.test_seconds or 0.0)
    room = left_s - costs.startup_seconds - costs.trial_startup_seconds - reserve - evals
    # Steps still to run that the money pays for (each evaluation still planned before its end too).
    later_evals = sum(1 for s in spec.get("eval_steps") or [] if step < int(s) < end)
    affordable = max(0, math.floor((room - later_evals * evals) / rate.seconds_per_step)) if room > 0 else 0
    reaches = min(end, step + affordable)
    try:
        fresh = plan_budget(meter.ledger.cap, used, usd_per_hour, inputs.rates, costs, job.train.max_steps,
                            concurrency=machine_concurrency(calibration.get("packing")), curves=inputs.curves, batch_size=job.train.batch_size,
                            paces=inputs.paces)
        fresh_steps = max(m.max_steps for m in fresh.methods)
    except BudgetTooSmall:
        fresh_steps = 0
    record = run.plan()
    choice = {"trial_id": trial.trial_id, "from_step": step, "end": end, "reaches": reaches, "new_trial_steps": fresh_steps, "at": utc_now()}
    if reaches <= step or reaches < fresh_steps:
        choice.update(chose="new trials", why=(f"going on from step {step} would reach step {reaches}; a new trial would train {fresh_steps} steps"
                                               if reaches > step else f"what is left pays for no step beyond its checkpoint at step {step}"))
        record.continued = [*(record.continued or []), choice]
        run.write_plan(record)
        note(f"{trial.trial_id}: not continued ({choice['why']})")
        return None
    more = {**spec, "resume_from": str(trial_checkpoint.find(run.trial_dir(trial.trial_id)).resolve())}
    choice.update(chose="continue", why=(f"going on from its checkpoint at step {step} reaches step {reaches} of {end}, "
                                         f"paying only for the {reaches - step} steps still to run; a new trial would train {fresh_steps}"))
    record.continued = [*(record.continued or []), choice]
    record.round += 1
    run.write_plan(record)
    meter.reserve_usd = seconds_to_usd(reserve, usd_per_hour)
    note(f"{trial.trial_id} goes on from its checkpoint: {choice['why']}")
    seconds = costs.trial_startup_seconds + (reaches - step) * rate.seconds_per_step + evals
    plan = Plan(cap_usd=meter.ledger.cap, spent_usd=used, usd_per_hour=usd_per_hour, reduction_factor=REDUCTION_FACTOR, concurrency=1,
                methods=[MethodPlan(rate.method, 1, end, spec.get("grace") or end, [], seconds, seconds, keep_last=True)],
                fixed_seconds=costs.startup_seconds, reserve_seconds=reserve,
                expected_usd=min(meter.ledger.cap, used + seconds_to_usd(costs.startup_seconds + reserve + seconds, usd_per_hour)),
                worst_case_usd=used + seconds_to_usd(costs.startup_seconds + reserve + seconds, usd_per_hour),
                reserve_usd=seconds_to_usd(reserve, usd_per_hour), words=choice["why"])
    return plan, [more]
