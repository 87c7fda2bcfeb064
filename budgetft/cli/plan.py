"""`budgetft plan`: what a budget buys for a job, without running it."""

from __future__ import annotations

import json
from typing import Optional

import typer

from budgetft.cli.common import JOB_ARG, METHODS_OPT, SET_OPT, cli_errors, stderr_console, stdout_console, warn_stale_prices
from budgetft.quiet import quiet_libraries


def plan(
    job: Optional[str] = JOB_ARG,
    budget: str = typer.Option(..., "--budget", "-b", help="Hard cap in USD, e.g. 1.00."),
    price_per_hour: Optional[str] = typer.Option(None, "--price-per-hour", help="What the machine costs, USD/hour."),
    no_calibrate: bool = typer.Option(False, "--no-calibrate", help="Spend nothing: plan from stored or estimated rates instead of measuring."),
    set_: list[str] = SET_OPT,
    methods: Optional[str] = METHODS_OPT,
    as_json: bool = typer.Option(False, "--json", help="Print the plan as JSON on stdout (plan.json's fields; messages go to stderr)."),
) -> None:
    """Print the plan (trials, steps, rungs, expected and worst-case spend, reserve)."""
    from budgetft.money.usd import PriceError, parse_money
    from budgetft.telemetry.pricing import run_price

    err = stderr_console()
    if price_per_hour is None:
        warn_stale_prices(err)  # the price will come from the catalogue
    try:
        cap = parse_money(budget, "--budget")
        price = run_price(price_per_hour)
    except PriceError as exc:
        err.print(f"[bold red]error:[/] {exc}")
        raise typer.Exit(2) from None
    from budgetft.planner import BudgetTooSmall

    with cli_errors(err):
        from budgetft.spec import load_job, methods_override

        spec = load_job(job, methods_override(job, list(set_), methods))
        quiet_libraries()
        try:
            _plan(spec, cap, price, no_calibrate, err, as_json)
        except BudgetTooSmall as exc:
            err.print(f"[bold red]error:[/] {exc}")
            raise typer.Exit(2) from None


def _plan(spec, cap, price, no_calibrate, err, as_json=False) -> None:
    import time
    from decimal import Decimal

    from budgetft.money.usd import seconds_to_usd
    from budgetft.planner import plan_budget
    from budgetft.planner.costs import CALIBRATION_STEPS, budget_check, run_costs
    from budgetft.planner.rates import offline_rates, rates_from
    from budgetft.runner.display import plan_table
    from budgetft.stages.calibrate import calibrate
    from budgetft.task import prepare_task
    from budgetft.telemetry.device import device_name, device_type

    with err.status("checking and tokenizing data…"):
        task = prepare_task(spec)
    device = device_name()
    spent_s = 0.0
    rates, eval_rows_per_s, source = offline_rates(task, list(spec.methods), device, device_type())
    if not no_calibrate:
        # A budget that the check before spending refuses is refused before calibrating, as
        # `budgetft run` does: measuring costs time that such a budget cannot pay for.
        budget_check(task, cap, Decimal(0), price.usd_per_hour)
        t0 = time.perf_counter()
        with err.status(f"calibrating {len(spec.methods)} method(s), {CALIBRATION_STEPS + 1} steps each, and timing evaluation…"):
            calibration = calibrate(task)
        spent_s = time.perf_counter() - t0
        rates, eval_rows_per_s = rates_from(calibration["methods"]), calibration["eval_rows_per_s"]
        source = f"calibrated now on {device}"
    costs = run_costs(task, rates, eval_rows_per_s)
    plan = plan_budget(cap, Decimal(0), price.usd_per_hour, rates, costs, spec.train.max_steps)
    err.print(f"rates: {source}")
    for r in rates.values():
        err.print(f"  {r.method}: {r.seconds_per_step:.2f} s/step, {r.examples_per_s:.2f} examples/s" + (f", peak memory {r.peak_memory_mb:.0f} MB" if r.peak_memory_mb else ""))
    err.print(f"  evaluation: {eval_rows_per_s:.1f} rows/s, {costs.eval_seconds:.0f} s for {len(task.eval)} rows")
    err.print(f"a run also pays for its baselines ({costs.baseline_seconds:.0f} s) and calibration ({costs.calibration_seconds:.0f} s) before training")
    if as_json:
        from budgetft.planner.document import plan_document

        spent_usd = seconds_to_usd(spent_s, price.usd_per_hour) if spent_s else None
        print(json.dumps(plan_document(plan, rates, source, costs, eval_rows_per_s, spent_s, spent_usd), indent=2))
    else:
        stdout_console().print(plan_table(plan))
    if spent_s:
        err.print(f"calibrating took {spent_s:.0f} s (${seconds_to_usd(spent_s, price.usd_per_hour)} at ${price.usd_per_hour}/h; not charged to any run)")
