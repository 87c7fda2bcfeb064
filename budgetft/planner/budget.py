"""The planner: how many trials of each method, how many steps at most, and the ASHA rungs,
so that the money buys the most learning and the run stops before the cap.

All arithmetic is in seconds of machine time; money enters once, through the price:
    seconds available = (cap - spent) / price_per_hour * 3600 - fixed stages - reserve

ASHA with reduction factor η and rungs g, gη, ..., gη^k = R (max steps) lets about 1/η^i of
the trials reach rung i, so a trial costs on average
    steps  g · (1 + k·(η-1)/η)          evaluations  Σ_{i=0..k} η^-i
The first trial of each method meets no competition at its rungs and runs to R: we plan for
that. The worst case (ASHA stops nothing) is printed too; the cap stopper bounds it: training
stops before the next charge would eat into the reserve, whatever the schedule.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, replace
from decimal import Decimal

from budgetft.money.usd import SECONDS_PER_HOUR, round_up, seconds_to_usd
from budgetft.planner import prior
from budgetft.planner.curves import LEARNED_LIFT
from budgetft.planner.forecast import COVERAGE, Pace
from budgetft.spec import JobError

REDUCTION_FACTOR = 3
MIN_STEPS = 10  # a trial shorter than this learns nothing worth paying for (on BoolQ: the label prior)
MIN_GRACE = 4  # the first rung: fewer steps than this is noise, not a signal to stop on
# At most this many trials of one method in one round: 81 = 3^4 gives ASHA (η = 3) four full
# halvings, more than a run's rungs use; a larger budget leaves the rest unspent rather than
# planning thousands of trials (a $1e9 plan once counted its way to 6,119 and never printed).
MAX_TRIALS_PER_METHOD = 81


class BudgetTooSmall(ValueError):
    """The budget cannot buy one useful trial. The message states the minimum."""

    def __init__(self, minimum: Decimal, budget: Decimal, detail: str):
        self.minimum = minimum
        super().__init__(
            f"a budget of ${budget} is too small for one useful trial: the minimum is ${minimum} "
            f"({detail}); raise --budget to at least {minimum}"
        )


@dataclass
class MethodRate:
    method: str  # the option's key (a method's name, or method@model in a job of several models)
    seconds_per_step: float  # one optimiser step at the job's batch size, wall-clock
    examples_per_s: float
    peak_memory_mb: float | None = None
    trainable_params: int | None = None
    source: str = "calibrated"  # calibrated | stored | estimated
    # What this option's model costs to score, seconds: one evaluation of the selection rows,
    # and the held-out test (its trained winner and its untuned self on the test rows). None:
    # the plan's Costs.eval_seconds, and no test.
    eval_seconds: float | None = None
    test_seconds: float | None = None
    # What one trial of this option pays beyond start-up, steps and evaluations, seconds: PET's
    # class-bias fit for each later member of its ensemble (budgetft.planner.inputs.
    # phases_seconds); 0 for other methods.
    trial_seconds: float = 0.0
    # iPET's labelling of unlabelled rows, which grows with its trial's steps: seconds per step,
    # included in seconds_per_step (budgetft.planner.inputs.labelling_seconds_per_step); 0 otherwise.
    labelling_seconds_per_step: float = 0.0
    # One checkpoint of a trial's training state (budgetft.planner.checkpoints), seconds; its
    # schedule's cost is included in seconds_per_step.
    checkpoint_seconds: float = 0.0


@dataclass
class Costs:
    """Measured or estimated seconds for the stages around training."""

    eval_seconds: float  # one evaluation on the job's evaluation rows
    baseline_seconds: float  # zero-shot baseline (0 when already done)
    calibration_seconds: float  # calibration (0 when already done)
    # Measured on 2 CPU cores: Ray's local start ~10 s; a trial's fresh worker process
    # importing torch/transformers/peft, reading cached tokens and loading the model ~15-25 s.
    startup_seconds: float = 15.0  # scheduler start-up (Ray)
    trial_startup_seconds: float = 20.0  # per trial, until its first step
    reserve_seconds: float = 30.0  # report and shutdown, kept back until the end
    selection_rows: int | None = None  # the rows trials are compared on (None: unknown)
    test_rows: int | None = None  # the held-out rows the winner is judged on (None: unknown or none)


@dataclass
class MethodPlan:
    method: str
    trials: int
    max_steps: int
    grace_period: int
    rungs: list[int]
    expected_seconds: float
    worst_seconds: float
    # One trial with nothing to choose between: no rungs; it is scored on the selection rows
    # once, at its last step (a learning-curve point), and its last step goes to the test.
    keep_last: bool = False


@dataclass
class Plan:
    cap_usd: Decimal
    spent_usd: Decimal
    usd_per_hour: Decimal
    reduction_factor: int
    concurrency: int
    methods: list[MethodPlan]
    fixed_seconds: float  # baselines + calibration + start-up
    reserve_seconds: float
    expected_usd: Decimal
    worst_case_usd: Decimal
    reserve_usd: Decimal
    dropped: dict[str, str] = field(default_factory=dict)  # method -> why it got no trials
    # What the plan forecasts (learning curves): points over the majority with a low-high band,
    # what they rest on, and what double the budget would forecast; None without curves.
    forecast: dict | None = None
    words: str = ""  # the plan in one sentence

    @property
    def total_trials(self) -> int:
        return sum(m.trials for m in self.methods)

    def eval_steps(self, method: str) -> list[int]:
        """Evaluate at every rung (ASHA decides there) and at the last step (a lone trial only
        there)."""
        plan = next(m for m in self.methods if m.method == method)
        return sorted({*plan.rungs, plan.max_steps})

    def to_json(self) -> dict:
        data = asdict(self)
        for key in ("cap_usd", "spent_usd", "usd_per_hour", "expected_usd", "worst_case_usd", "reserve_usd"):
            data[key] = str(data[key])
        data["total_trials"] = self.total_trials
        return data


def _rungs(grace: int, eta: int, max_steps: int) -> list[int]:
    rungs, r = [], grace
    while r < max_steps:
        rungs.append(r)
        r *= eta
    return rungs


def _method_time(n: int, grace: int, k: int, eta: int, s: float, e: float, startup: float) -> tuple[float, float]:
    """(expected, worst) seconds for n trials with rungs grace·η^i, i=0..k, R = grace·η^k."""
    r = grace * eta**k
    first = startup + r * s + (k + 1) * e
    avg_steps = grace * (1 + k * (eta - 1) / eta)
    avg_evals = sum(eta**-i for i in range(k + 1))
    expected = first + (n - 1) * (startup + avg_steps * s + avg_evals * e)
    worst = n * first
    return expected, worst


def _plan_method(rate: MethodRate, seconds: float, costs: Costs, eta: int, max_steps: int, min_steps: int = MIN_STEPS) -> MethodPlan | None:
    """Most trials and steps for one method within `seconds` of (slot) time, or None."""
    MIN_STEPS = min_steps  # noqa: N806 - the fewest steps a trial needs (a curve's, when known)
    s, e, st = rate.seconds_per_step, costs.eval_seconds, costs.trial_startup_seconds + rate.trial_seconds
    for k in (2, 1):
        n = eta**k
        # Solve the expected time, linear in the grace period g, for g.
        fixed = n * st + (k + 1) * e + (n - 1) * e * sum(eta**-i for i in range(k + 1))
        per_g = s * (eta**k + (n - 1) * (1 + k * (eta - 1) / eta))
        grace = math.floor((seconds - fixed) / per_g) if seconds > fixed else 0
        if grace < MIN_GRACE or grace * eta**k < MIN_STEPS:
            continue
        if grace * eta**k > max_steps:  # the job caps steps per trial: spend the rest on trials
            grace = max_steps // eta**k
            if grace < MIN_GRACE or grace * eta**k < MIN_STEPS:
                continue  # too few steps for this many rungs: try fewer
            # Expected time is linear in n: solve for it rather than count up (a $1e9 budget
            # would count to billions), and cap it so that a plan stays bounded in size.
            first = _method_time(1, grace, k, eta, s, e, st)[0]
            per_trial = _method_time(2, grace, k, eta, s, e, st)[0] - first
            n = max(n, min(MAX_TRIALS_PER_METHOD, 1 + math.floor((seconds - first) / per_trial)))
        expected, worst = _method_time(n, grace, k, eta, s, e, st)
        r = grace * eta**k
        return MethodPlan(rate.method, n, r, grace, _rungs(grace, eta, r), expected, worst)
    # No room for rungs: one trial, as long as the money allows.
    steps = min(max_steps, math.floor((seconds - st - e) / s)) if seconds > st + e else 0
    if steps < MIN_STEPS:
        return None
    t = st + steps * s + e
    return MethodPlan(rate.method, 1, steps, steps, [], t, t)


def plan_budget(
    cap: Decimal,
    spent: Decimal,
    usd_per_hour: Decimal,
    rates: dict[str, MethodRate],
    costs: Costs,
    max_steps: int,
    concurrency: int = 1,
    eta: int = REDUCTION_FACTOR,
    curves: dict | None = None,
    batch_size: int = 8,
    paces: dict | None = None,
) -> Plan:
    """The plan for what is left of the cap. With learning curves for some of the methods, a
    prior-guided plan (budgetft.planner.prior): the money goes where the curves say it buys the
    most, and the plan forecasts what it buys (paces: option -> this machine's pace, budgetft.
    planner.forecast.Pace). Without, the money is split between the methods and ASHA stops the
    weak trials at rungs."""
    plan = _plan_budget(cap, spent, usd_per_hour, rates, costs, max_steps, concurrency, eta, curves, batch_size, paces)
    # Concurrency is credited only to trials that run at the same time: a plan of fewer trials
    # than slots (one trial on an 8-GPU machine) is made again with as many slots as trials, so it
    # is not bought the idle GPUs' time.
    while plan.concurrency > 1 and plan.total_trials < plan.concurrency:
        plan = _plan_budget(cap, spent, usd_per_hour, rates, costs, max_steps, max(1, plan.total_trials), eta, curves, batch_size, paces)
    return plan


def _plan_budget(cap, spent, usd_per_hour, rates, costs, max_steps, concurrency, eta, curves, batch_size, paces) -> Plan:
    if usd_per_hour <= 0:
        raise ValueError("a plan needs a positive price per hour (--price-per-hour)")
    if not rates:
        raise ValueError("a plan needs at least one method")
    if max_steps < MIN_STEPS:  # no budget can buy a useful trial: say so, not "too small"
        raise JobError(f"train.max_steps is {max_steps}, below the {MIN_STEPS} steps a trial needs to learn more than the label prior; raise it, e.g. --set train.max_steps={MIN_STEPS * 10}")
    left = (cap - spent) * SECONDS_PER_HOUR / usd_per_hour  # machine seconds the money buys
    fixed = costs.baseline_seconds + costs.calibration_seconds + costs.startup_seconds
    # Concurrent trials share the machine: `concurrency` slots run in each machine second.
    slot_seconds = (float(left) - fixed - costs.reserve_seconds) * concurrency
    test_of = {m: float(r.test_seconds or 0.0) for m, r in rates.items()}  # each option's held-out test

    def minimum() -> Decimal:
        cheapest = min(rates.values(), key=lambda r: r.seconds_per_step)
        one = costs.trial_startup_seconds + cheapest.trial_seconds + MIN_STEPS * cheapest.seconds_per_step + costs.eval_seconds
        return round_up(spent + seconds_to_usd(fixed + costs.reserve_seconds + one, usd_per_hour), Decimal("0.01"))

    known = {m: c for m, c in (curves or {}).items() if m in rates}
    if known and all(c.examples_to_learn() is None for c in known.values()):
        known = {}  # no curve says any option learns: nothing to value them by, plan as without curves
    if known:
        methods, forecast, words, dropped, need = _prior_guided(rates, known, costs, slot_seconds, max_steps, batch_size, eta, cap - spent, usd_per_hour,
                                                                concurrency, paces or {})
        if not methods:
            one = costs.trial_startup_seconds + need
            minimum_usd = round_up(spent + seconds_to_usd(fixed + costs.reserve_seconds + one, usd_per_hour), Decimal("0.01"))
            raise BudgetTooSmall(minimum_usd, cap, f"baselines, calibration and start-up {fixed:.0f} s, reserve and held-out test {costs.reserve_seconds:.0f} s, and one trial long enough to learn ({need:.0f} s)")
        reserve = costs.reserve_seconds + test_of[methods[0].method]
        return _plan(cap, spent, usd_per_hour, eta, concurrency, methods, fixed, replace(costs, reserve_seconds=reserve), dropped, forecast, words)
    # Without curves any option may win: the held-out test of the dearest is kept back.
    most_test = max(test_of.values(), default=0.0)
    slot_seconds -= most_test * concurrency
    costs = replace(costs, reserve_seconds=costs.reserve_seconds + most_test)

    # Equal money per method; a method that cannot use its share gives it back to the others,
    # most expensive first, so cheap methods get more trials.
    active = sorted(rates.values(), key=lambda r: r.seconds_per_step)
    dropped: dict[str, str] = {}
    while active:
        share = slot_seconds / len(active)
        plans = [_plan_method(rate, share, costs, eta, max_steps) for rate in active]
        if all(plans):
            break
        worst = max((r for r, p in zip(active, plans) if p is None), key=lambda r: r.seconds_per_step)
        active.remove(worst)
        dropped[worst.method] = f"{MIN_STEPS} steps at {worst.seconds_per_step:.1f} s/step do not fit its share"
    if not active:
        raise BudgetTooSmall(minimum(), cap, f"baselines, calibration and start-up {fixed:.0f} s, reserve {costs.reserve_seconds:.0f} s, and {MIN_STEPS} steps of the cheapest method")
    return _plan(cap, spent, usd_per_hour, eta, concurrency, plans, fixed, costs, dropped)


def _plan(cap, spent, usd_per_hour, eta, concurrency, plans, fixed, costs, dropped, forecast=None, words="") -> Plan:
    expected = fixed + costs.reserve_seconds + sum(p.expected_seconds for p in plans) / concurrency
    worst = fixed + costs.reserve_seconds + sum(p.worst_seconds for p in plans) / concurrency
    return Plan(
        cap_usd=cap,
        spent_usd=spent,
        usd_per_hour=usd_per_hour,
        reduction_factor=eta,
        concurrency=concurrency,
        methods=plans,
        fixed_seconds=fixed,
        reserve_seconds=costs.reserve_seconds,
        expected_usd=min(cap, spent + seconds_to_usd(expected, usd_per_hour)),
        worst_case_usd=spent + seconds_to_usd(worst, usd_per_hour),
        reserve_usd=seconds_to_usd(costs.reserve_seconds, usd_per_hour),
        dropped=dropped,
        forecast=forecast,
        words=words,
    )


# Once calibration has been paid, a first round the money left cannot make useful still runs one
# short trial of the cheapest option rather than leave the money idle (issue 27, point 8), as long
# as it reaches the first rung's worth of steps (MIN_GRACE: fewer is noise, not a model).
SHORT_MIN_STEPS = MIN_GRACE


def plan_short(cap: Decimal, spent: Decimal, usd_per_hour: Decimal, rates: dict[str, MethodRate], costs: Costs, max_steps: int,
               refused: BudgetTooSmall) -> Plan | None:
    """After money was spent (the first round, calibration paid): one trial of the cheapest
    option with the steps the money left buys after its start-up, one evaluation and the
    reserve (its held-out test included); None when not even SHORT_MIN_STEPS fit (then only the
    report is paid for). `refused`: why a useful trial does not fit, said in the plan's words."""
    if usd_per_hour <= 0 or not rates:
        return None
    rate = min(rates.values(), key=lambda r: r.seconds_per_step)
    left = float((cap - spent) * SECONDS_PER_HOUR / usd_per_hour)
    fixed = costs.baseline_seconds + costs.calibration_seconds + costs.startup_seconds
    reserve = costs.reserve_seconds + float(rate.test_seconds or 0.0)
    e = costs.eval_seconds if rate.eval_seconds is None else rate.eval_seconds
    st = costs.trial_startup_seconds + rate.trial_seconds
    room = left - fixed - reserve - st - e
    steps = min(max_steps, math.floor(room / rate.seconds_per_step)) if room > 0 else 0
    if steps < SHORT_MIN_STEPS:
        return None
    t = st + steps * rate.seconds_per_step + e
    words = (f"one short trial of {rate.method} ({steps} steps) with what is left of the cap: calibration is paid for, and a useful "
             f"trial would need ${refused.minimum} in all")
    plan = _plan(cap, spent, usd_per_hour, REDUCTION_FACTOR, 1, [MethodPlan(rate.method, 1, steps, steps, [], t, t, keep_last=True)], fixed,
                 replace(costs, reserve_seconds=reserve), {m: "the money left buys one short trial of the cheapest option only" for m in rates if m != rate.method},
                 None, words)
    return plan


NO_CURVE = ("no learning curve for it on this model and task yet, so the plan cannot value it (a job none of whose "
            "options has a curve that learns plans them all as equals, and its evaluations measure their curves)")


def never_learns(curve) -> str | None:
    """Why an option whose curve never shows learning gets no trials; None when it does learn."""
    if curve.examples_to_learn() is not None:
        return None
    return f"its learning curve never rose {LEARNED_LIFT:.0f} points above the majority within {curve.points[-1].examples:,} training examples ({curve.source})"


def _after_test(rate: MethodRate, slot_seconds: float, concurrency: int) -> float:
    """Slot seconds left for an option's trials once its model's held-out test is kept back."""
    return slot_seconds - float(rate.test_seconds or 0.0) * concurrency


def _prior_guided(rates, curves, costs: Costs, seconds: float, max_steps: int, batch_size: int, eta: int, money_left: Decimal, usd_per_hour: Decimal,
                  concurrency: int = 1, paces: dict | None = None):
    """(method plans, forecast, words, dropped, seconds the cheapest useful trial needs) of the
    option the learning curves value most (budgetft.planner.prior). Each option keeps its own
    model's held-out test back from `seconds` and prices evaluations at its own model's rate."""
    def all_options(slot_seconds: float) -> list:
        found = []
        for method, curve in curves.items():
            rate = rates[method]
            mine = _after_test(rate, slot_seconds, concurrency)
            evals = costs.eval_seconds if rate.eval_seconds is None else rate.eval_seconds
            found += prior.options_for(method, rate.seconds_per_step, curve, mine, costs.trial_startup_seconds + rate.trial_seconds,
                                       evals, max_steps, batch_size, MAX_TRIALS_PER_METHOD, costs.selection_rows,
                                       costs.test_rows, (paces or {}).get(method) or Pace())
        return found

    options = all_options(seconds)
    best = prior.best_option(options)
    dropped = {m: NO_CURVE for m in rates if m not in curves}  # (budgetft.planner.inputs.explain_unmeasured adds the rest)
    if best is None:
        need = min((math.ceil((c.examples_to_learn() or 10**9) / batch_size) * rates[m].seconds_per_step + float(rates[m].test_seconds or 0.0) + rates[m].trial_seconds
                    + (costs.eval_seconds if rates[m].eval_seconds is None else rates[m].eval_seconds) for m, c in curves.items()), default=0.0)
        return [], None, "", dropped, need
    for method in curves:
        if method != best.method:
            mine = prior.best_option([o for o in options if o.method == method])
            curve = curves[method]
            if mine:
                dropped[method] = f"forecast {mine.lift:+.1f} points, below {best.method}'s {best.lift:+.1f}"
            else:
                dropped[method] = never_learns(curve) or f"the money left does not buy a trial long enough to learn ({curve.source})"
    curve = curves[best.method]
    rate = rates[best.method]
    if best.trials >= prior.ASHA_MIN_TRIALS:
        # Enough trials for ASHA to pay: rungs from the curve's minimum, the rest as before.
        # Sized on what its options were (all_options): the test is reserved once, by the caller.
        plan = _plan_method(rate, _after_test(rate, seconds, concurrency), costs, eta, max_steps, min_steps=best.min_steps)
        methods = [plan] if plan else [MethodPlan(best.method, best.trials, best.steps, best.steps, [], best.seconds, best.seconds)]
    else:
        methods = [MethodPlan(best.method, best.trials, best.steps, best.steps, [], best.seconds, best.seconds, keep_last=best.trials == 1)]
    doubled = prior.best_option(all_options(2 * seconds))
    forecast = {
        "method": best.method, "trials": best.trials, "steps": best.steps,
        "lift_points": round(best.lift, 1), "low_points": round(best.low, 1), "high_points": round(best.high, 1),
        "coverage": COVERAGE, "sd_points": round(best.sd, 2), "sd_parts": dict(best.parts), "examples": best.examples,
        "bias_points": round(curve.bias, 2), "basis": curve.source,
        "double_budget_lift_points": round(doubled.lift, 1) if doubled else None,
    }
    more = next((o for o in options if o.method == best.method and o.trials == best.trials + 1), None)
    words = prior.plan_words(best, f"${money_left.quantize(Decimal('0.01'))}", curve.source, more, max_steps)
    return methods, forecast, words, dropped, 0.0