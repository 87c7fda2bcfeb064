"""Stage 3, plan: with the money left, how many trials of each method, how many steps, which
ASHA rungs (budgetft.planner), and each trial's configuration, one round at a time.

Money that ASHA frees by stopping trials early is planned again with new configurations (never
one already tried) until not one more useful trial fits.
"""

from __future__ import annotations

from dataclasses import replace
from decimal import Decimal
from typing import Callable

from budgetft import methods
from budgetft.money.usd import seconds_to_usd
from budgetft.planner import BudgetTooSmall, Plan, plan_budget
from budgetft.planner import checkpoints
from budgetft.planner.budget import SHORT_MIN_STEPS, plan_short
from budgetft.planner.configs import trial_configs
from budgetft.planner.costs import CALIBRATION_STEPS, machine_concurrency
from budgetft.planner.inputs import considered, explain_unmeasured, plan_inputs, planned_scoring_passes
from budgetft.planner.options import choice_of
from budgetft.planner.rates import offline_rates
from budgetft.planner.split import held_out_rows_for
from budgetft.rundir import PlanRecord, RunDir
from budgetft.stages import device_memory
from budgetft.task import prepare_tasks
from budgetft.train.checkpoint import continuable
from budgetft.telemetry.device import device_name, device_type


def plan_round(
    tasks: dict, job, run: RunDir, meter, usd_per_hour: Decimal, *, again: bool = False,
    note: Callable[[str], None] = lambda line: None, show: Callable[[Plan, list[dict]], None] | None = None,
    calibration_steps: int = CALIBRATION_STEPS, concurrency: int | None = None,
) -> tuple[Plan, list[dict]] | None:
    """The next round's plan and trial specs, written to plan.json; None when not one useful
    trial fits (the first round, after calibration was paid for, then plans one short trial of the
    cheapest option, or records why not even that fits as "no_trials"). `again`: a round of this session
    already ran, so a refusal just ends the run. `tasks`: model name -> prepared task. `concurrency`:
    trials at once on a cluster (budgetft.planner.costs.cluster_tuning_resources), else this machine's."""
    meter.set_stage("overhead")
    calibration = run.calibration()
    inputs = plan_inputs(tasks, job, calibration=calibration, baselines_done=True, calibration_steps=calibration_steps)
    for key, why in load_failures(run).items():  # an option whose model does not load here is dropped, not the run
        if inputs.rates.pop(key, None) is not None:
            note(f"[yellow]{key} dropped from this round: {why}[/]")
    if not inputs.rates:
        note("[yellow]no trials: no option's model loads on this machine (see the failed trials)[/]")
        return None
    costs = inputs.costs
    if again:  # Ray is up from this session's earlier round: no scheduler start-up to pay again
        costs = replace(costs, startup_seconds=0.0)
    ledger = meter.ledger
    ledger.refresh()
    # What has really been used so far: the ledger minus time prepaid but not yet used.
    used = ledger.spent - meter.unused_usd()
    previous = run.plan()
    try:
        plan = plan_budget(ledger.cap, used, usd_per_hour, inputs.rates, costs, job.train.max_steps,
                           concurrency=concurrency or machine_concurrency(calibration.get("packing")), curves=inputs.curves, batch_size=job.train.batch_size,
                           paces=inputs.paces)
    except BudgetTooSmall as exc:
        if again:
            note(f"no further round: ${ledger.cap - used} left does not buy one more useful trial")
            return None
        # The first round comes after baselines and calibration were paid for: never a refusal
        # now (the check before the first charge refuses, from the same numbers); what is left
        # buys one short trial, or only the report.
        plan = plan_short(ledger.cap, used, usd_per_hour, inputs.rates, costs, job.train.max_steps, exc)
        if plan is None:
            why = (f"${max(ledger.cap - used, Decimal(0))} was left after calibration: not enough for even {SHORT_MIN_STEPS} steps of the cheapest "
                   f"option with an evaluation (a useful trial needs ${exc.minimum} in all); the rest pays for the report")
            note(f"[yellow]no trials: {why}[/]")
            previous.no_trials = why
            run.write_plan(previous)
            return None
        note(f"[yellow]{plan.words}[/]")
    # The meter keeps the winner's held-out test back with the report's reserve: training stops
    # before it would eat into them.
    meter.reserve_usd = seconds_to_usd(plan.reserve_seconds, usd_per_hour)

    explain_unmeasured(plan, inputs, job)
    specs = trial_specs(job, run, plan, inputs.rates)
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


def trial_specs(job, run: RunDir, plan: Plan, rates: dict) -> list[dict]:
    """One spec per planned trial: its id, model, method, configuration, steps, rungs, and the
    calibrated lengths of a step and an evaluation (what its worker asks the meter to prepay
    before its first step and evaluation, seconds)."""
    trials = run.trials()
    existing = len(trials)
    specs: list[dict] = []
    # On a GPU, how each option fits it (micro-batch, checkpointing, QLoRA for a LoRA that fits
    # only on a 4-bit base), with the correction this run's calibration just measured.
    chosen = [choice_of(job, mp.method) for mp in plan.methods]
    layouts, _ = device_memory.layouts(job, chosen, run.calibration())
    for mp, choice in zip(plan.methods, chosen):
        variant = job.variant(choice.model)
        layout = layouts.get(choice.key)
        runs_as = (layout or {}).get("method") or choice.method
        tried = [t.config for t in trials if t.method in (choice.method, runs_as) and (t.get("model") or job.model.name) == choice.model]
        for config in trial_configs(variant.space_for(choice.method), choice.method, mp.trials, job.seed + existing, tried):
            if runs_as != choice.method:  # the option's own switches (rslora's, dora's) kept on the 4-bit base
                config = methods.get(choice.method).config(config)
            specs.append(
                {
                    "trial_id": f"t{existing + len(specs) + 1:03d}-{mp.method}",
                    "option": choice.key,
                    "model": choice.model,
                    "method": runs_as,
                    "config": config,
                    "max_steps": mp.max_steps,
                    "grace": mp.grace_period,
                    "eval_steps": plan.eval_steps(mp.method),
                    "step_s": round(rates[mp.method].seconds_per_step, 3),
                    "eval_s": round(rates[mp.method].eval_seconds or 0.0, 3),
                }
            )
            every = checkpoints.every_steps(mp.max_steps, rates[mp.method].seconds_per_step, rates[mp.method].checkpoint_seconds)
            if every is not None and continuable(runs_as):  # its training state kept on a schedule the plan priced
                specs[-1].update(checkpoint_every=every, checkpoint_s=round(rates[mp.method].checkpoint_seconds, 3))
            if layout:
                specs[-1]["memory"] = layout
            passes = planned_scoring_passes(variant, choice.method)
            if passes > 1:  # an ensemble's evaluation (PET): eval_s scores every row once per member
                specs[-1]["eval_passes"] = passes
    if len(specs) == 1:
        # A round's only trial shares the money with no other: if the machine turns out faster
        # than calibrated, its schedule may stretch to what the money buys, up to the job's
        # max_steps (budgetft.tune.worker.Worker.horizon).
        specs[0]["extend_to"] = int(job.train.max_steps)
    return specs


def load_failures(run: RunDir) -> dict[str, str]:
    """Options whose trial ran out of memory loading its model (budgetft.train.memory.
    OutOfMemoryAtLoad): option key -> that trial's error. The next round plans none of them."""
    errors = {t.trial_id: t.error for t in run.trials() if t.error and "OutOfMemoryAtLoad" in t.error}
    return {spec["option"]: f"{spec['trial_id']} {errors[spec['trial_id']]}" for spec in run.plan().trials
            if spec.get("option") and spec.get("trial_id") in errors}


def resolve_test_rows(spec, tasks: dict, money_left: Decimal, usd_per_hour: Decimal):
    """A job whose eval.test_rows is "auto": (the job with the number the budget buys, its tasks
    with those test rows, why that many). Otherwise the job and tasks as they are, and no
    reason. The number is sized by the first option's model (budgetft.planner.split), resolved
    before anything is spent; the resolved job is what the run directory keeps, so its workers
    and a resumed session cut the same rows."""
    if spec.eval.test_rows != "auto":
        return spec, tasks, None

    options, curves = considered(spec)
    budget_seconds = float(money_left * 3600 / usd_per_hour)

    def forecast(c) -> float:
        """The lift an option's curve promises if ~70% of the budget trained it (0 without one)."""
        if c.key not in curves:
            return 0.0
        rate = offline_rates(tasks[c.model], [c.method], device_name(), device_type())[0][c.method]
        return curves[c.key].at(0.7 * budget_seconds / rate.seconds_per_step * spec.train.batch_size).lift

    # Sized for the model of the option the curves favour: the plan then prices every option's
    # own test on these rows (MethodRate.test_seconds), so a slower-scoring model pays for them.
    lead = max(options, key=forecast)
    task = tasks[lead.model]

    # This machine's stored (or estimated) scoring rate, never one read off its load at this
    # second: `plan` and `run` cut the same rows, so they quote the same minimum (issue 27).
    _, eval_rows_per_s, _ = offline_rates(task, [], device_name(), device_type())
    pool = task.stats.get("eval_split_rows", len(task.eval))
    split = held_out_rows_for(budget_seconds, eval_rows_per_s, max(0, pool - len(task.eval)))
    resolved = spec.model_copy(update={"eval": spec.eval.model_copy(update={"test_rows": split.rows})})
    return resolved, prepare_tasks(resolved), split.reason
