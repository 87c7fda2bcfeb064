"""What the planner plans with, gathered in one place for `budgetft plan`, the check before a run
spends anything, and each round of a run: per option ((model, method) pair, budgetft.planner.
options) its learning curve, its rate (calibrated, stored or estimated) and what its model costs
to score; and the costs around training.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from decimal import Decimal

from budgetft import methods
from budgetft.methods.phased import scoring_passes, steps_of
from budgetft.models.placement import placement_for
from budgetft.planner import checkpoints
from budgetft.planner import costs as around
from budgetft.planner.budget import (
    NO_CURVE,
    Costs,
    MethodRate,
    Plan,
    never_learns,
    plan_budget,
)
from budgetft.planner.costs import CALIBRATION_STEPS, run_costs
from budgetft.planner.curves import Curve, curves_for
from budgetft.planner.curves import paces as paces_of
from budgetft.planner.forecast import Pace
from budgetft.planner.memory_plan import device_plan
from budgetft.planner.options import Choice, choices
from budgetft.planner.rates import offline_rates
from budgetft.scoring import class_bias, pseudo_labels
from budgetft.search_space import parse_space, point
from budgetft.telemetry.device import device_name, device_type, gpu_memory_bytes

ZERO_SHOT_LOAD_S = 3.0  # loading a model for a scoring pass (the untuned one, or the winner)


@dataclass
class PlanInputs:
    rates: dict[str, MethodRate]  # option key -> rate, with its model's scoring costs
    curves: dict[str, Curve]  # option key -> learning curve (options without one are absent)
    costs: Costs
    eval_rows_per_s: dict[str, float]  # model -> rows scored per second
    options: list[Choice]  # the options planned (those with curves when any has one)
    source: str  # where the rates came from, in words
    all_curves: dict[str, Curve] | None = None  # every option's curve, measured or not (why one got no trials)
    paces: dict[str, Pace] | None = None  # option key -> how this machine's trials kept to their planned steps


def considered(job) -> tuple[list[Choice], dict[str, Curve]]:
    """The options a run measures and plans, and every option's curve: those whose learning
    curve for their model and task says they learn it, when any does (the plan can value only
    options with a curve, and one that never learns is not worth the calibration); else all of
    them, planned as equals."""
    found: dict[str, Curve] = {}
    every = choices(job)
    for c in every:
        curve = curves_for(c.model, job.data.name, [c.method]).get(c.method)
        if curve is not None:
            found[c.key] = curve
    learns = [c for c in every if c.key in found and found[c.key].examples_to_learn() is not None]
    return (learns or every), found


def plan_inputs(tasks: dict, job, *, calibration: dict | None = None, slow: float = 1.0, baselines_done: bool = False,
                calibration_steps: int = CALIBRATION_STEPS) -> PlanInputs:
    """`tasks`: model name -> its prepared task. With `calibration` (this run's), its measured
    rates; else this machine's stored rates or estimates, each `slow` times slower (the check
    before spending assumes a busy machine)."""
    options, curves = considered(job)
    rates: dict[str, MethodRate] = {}
    eval_rates: dict[str, float] = {}
    if calibration:
        by_model = calibration.get("eval_rows_per_s_by_model") or {job.model.name: calibration["eval_rows_per_s"]}
        eval_rates = {m: float(r) for m, r in by_model.items()}
        for c in options:
            if c.key in calibration["methods"]:
                r = calibration["methods"][c.key]
                rates[c.key] = MethodRate(c.key, r["seconds_per_step"], r["examples_per_s"], r.get("peak_memory_mb"), r.get("trainable_params"), "calibrated")
        source = "calibrated in this run"
    else:
        sources = set()
        for c in options:
            found, eval_rate, where = offline_rates(tasks[c.model], [c.method], device_name(), device_type())
            r = found[c.method]
            rates[c.key] = replace(r, method=c.key, seconds_per_step=r.seconds_per_step * slow, examples_per_s=r.examples_per_s / slow)
            eval_rates[c.model] = eval_rate / slow
            sources.add(where)
        source = "; ".join(sorted(sources))
    for key, rate in rates.items():
        model = next(c.model for c in options if c.key == key)
        task = tasks[model]
        per_row = 1.0 / eval_rates[model]
        test_rows = len(task.test) if task.test is not None else 0
        method = next(c.method for c in options if c.key == key)
        passes = planned_scoring_passes(task.job, method)  # an ensemble scores each row once per member
        # iPET's labelling grows with its trial's steps: priced into each step (conservatively,
        # linear in them), so the plan buys fewer steps rather than a labelling it cannot pay for.
        labelling = labelling_seconds_per_step(task, method, per_row)
        # The trial's checkpoints (budgetft.planner.checkpoints), priced into each step: their
        # size from what it trains, their seconds from this disk's measured write speed.
        saving = checkpoints.checkpoint_seconds(checkpoints.checkpoint_bytes(rate.trainable_params), (calibration or {}).get("write_bytes_per_s"))
        share = checkpoints.overhead_share(rate.seconds_per_step, saving) if checkpoints.continuable(method) else 0.0  # only these checkpoint
        step = (rate.seconds_per_step + labelling) * (1 + share)
        rates[key] = replace(rate, seconds_per_step=step, examples_per_s=rate.examples_per_s * rate.seconds_per_step / step, checkpoint_seconds=saving,
                             eval_seconds=len(task.eval) * per_row * passes,
                             test_seconds=(passes + 1) * test_rows * per_row + 2 * ZERO_SHOT_LOAD_S if test_rows else 0.0,
                             trial_seconds=phases_seconds(task, method, per_row, steps=0), labelling_seconds_per_step=labelling)
    lead = options[0].model  # the costs around training are priced with the first option's model
    loads = (calibration or {}).get("load_seconds_by_model") or {}
    costs = run_costs(tasks[lead], rates, eval_rates[lead], calibration_steps, baselines_done=baselines_done, calibration_done=calibration is not None,
                      load_seconds=max(loads.values(), default=None))
    paces = {c.key: Pace.of(paces_of(c.model, job.data.name, c.method)) for c in options if c.key in rates}
    return PlanInputs(rates, {k: v for k, v in curves.items() if k in rates}, costs, eval_rates, options, source, curves, paces)


def _default_point(job, method_name: str):
    method = methods.get(method_name)
    return method, point(parse_space(job.space_for(method.name)), method.defaults)


def planned_scoring_passes(job, method_name: str) -> int:
    """Forward passes per scored row of the method at its default point in the job's space: one,
    or one per member of an ensemble of adapters (PET's patterns: budgetft.methods.phased)."""
    return scoring_passes(*_default_point(job, method_name))


def phases_seconds(task, method_name: str, seconds_per_row: float, steps: int | None = None) -> float:
    """What one trial of `steps` steps of a method whose phases are the members of an ensemble
    (PET, iPET) pays beyond its start-up, steps and evaluations, at its default point in the job's
    space, scoring at `seconds_per_row`: each later member's class-bias fit (FIT_ROWS rows, one
    member), and each later generation's labelling (iPET: the rows budgetft.scoring.pseudo_labels
    scores, by every member of the generation before, sized on what the generation's first
    member's steps draw; steps None: on the whole training split, the most any trial labels).
    0 for every other method."""
    method, config = _default_point(task.job, method_name)
    if method.phases is None:
        return 0.0
    phases = method.phases(config)
    members = [p for p in phases if p.adapter is not None]
    if not members:
        return 0.0
    per_phase = steps_of(phases, steps) if steps is not None else [None] * len(phases)
    refits = (len(members) - 1) * class_bias.planned_seconds(task.job, seconds_per_row)
    labelling = 0.0
    for i, first, scorers in _later_generations(phases):
        examples = None if per_phase[i] is None else per_phase[i] * task.job.train.batch_size
        rows = pseudo_labels.rows_scored(first.pseudo_labels, len(task.train), task.unlabelled_count, examples)
        labelling += rows * scorers * seconds_per_row
    return refits + labelling


def _later_generations(phases):
    """For each generation of an ensemble's phases after the first (iPET's): the index of its first
    member among the phases, that member, and how many members the generation before has (the
    ensemble that labels its rows)."""
    members = [p for p in phases if p.adapter is not None]
    for generation in sorted({p.generation for p in members if p.generation > 0}):
        i, first = next((i, p) for i, p in enumerate(phases) if p.adapter is not None and p.generation == generation)
        yield i, first, sum(1 for p in members if p.generation == generation - 1)


def labelling_seconds_per_step(task, method_name: str, seconds_per_row: float) -> float:
    """iPET's labelling as seconds per step of its trial, for a plan that has yet to choose the
    steps: each later generation scores OVERSAMPLE x factor/(1 + factor) rows per row its first
    member's steps draw (budgetft.scoring.pseudo_labels), by every member of the generation before.
    Linear in the steps, so never below what a trial of any length pays (rounding aside, and a
    long trial's labelling stops growing at the training split or half the unlabelled rows).
    0 for every other method."""
    method, config = _default_point(task.job, method_name)
    if method.phases is None:
        return 0.0
    phases = method.phases(config)
    weight = sum(max(0.0, float(p.share)) for p in phases) or 1.0
    per_step = 0.0
    for _, first, scorers in _later_generations(phases):
        factor = float(first.pseudo_labels)
        rows_per_example = pseudo_labels.OVERSAMPLE * factor / (1 + factor)
        per_step += rows_per_example * task.job.train.batch_size * max(0.0, float(first.share)) / weight * scorers * seconds_per_row
    return per_step


def explain_unmeasured(plan: Plan, inputs: PlanInputs, job) -> None:
    """Say in plan.dropped why each of the job's options that was not measured got no trials:
    no learning curve, or one that never shows learning."""
    for c in choices(job):
        if c.key not in inputs.rates and c.key not in plan.dropped:
            curve = (inputs.all_curves or {}).get(c.key)
            plan.dropped[c.key] = (curve and never_learns(curve)) or NO_CURVE


def budget_check(
    tasks: dict, job, cap: Decimal, spent: Decimal, usd_per_hour: Decimal, calibration_steps: int = CALIBRATION_STEPS, *,
    baselines_done: bool = False, calibration: dict | None = None, concurrency: int = 1,
) -> Plan:
    """The plan's own arithmetic, before anything is spent: the plan a run would make, with
    this run's calibrated rates when it has them (a resumed run), else with the rates stored
    for this machine (or estimated) slowed by the fixed budgetft.planner.costs.PRECHECK_MARGIN,
    stages included: the minimum depends on the job, the price and the stored rates, never on
    what else the machine is doing at that second, so `plan` and `run` quote the same one. Raises BudgetTooSmall (with the minimum) for a budget that would buy no useful
    trial. `tasks`: the job's model name -> its prepared task (one per model). On a GPU, a job
    none of whose options fits its memory however laid out (budgetft.planner.memory_plan) is
    refused first (NothingFits, with the numbers and the smallest GPU that would hold it)."""
    if device_type() == "cuda":
        device_plan(job, considered(job)[0], gpu_memory_bytes() or 0.0, placement_for().weight_dtype, device_name())
    inputs = plan_inputs(tasks, job, calibration=calibration, slow=1.0 if calibration else around.PRECHECK_MARGIN,
                         baselines_done=baselines_done, calibration_steps=calibration_steps)
    return plan_budget(cap, spent, usd_per_hour, inputs.rates, inputs.costs, job.train.max_steps, concurrency=concurrency,
                       curves=inputs.curves, batch_size=job.train.batch_size, paces=inputs.paces)
