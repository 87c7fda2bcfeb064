"""`budgetft plan`: what a budget buys for a job, without running it."""

from __future__ import annotations

import json
from typing import Optional

import typer

from budgetft.cli.common import JOB_ARG, METHODS_OPT, SET_OPT, cli_errors, stderr_console, stdout_console, warn_stale_prices
from budgetft.quiet import quiet_libraries

# Imported inside functions: budgetft's domain code: `budgetft --help` loads none of it (start-up
# time).


def plan(
    job: Optional[str] = JOB_ARG,
    budget: str = typer.Option(..., "--budget", "-b", help="Hard cap in USD, e.g. 1.00."),
    price_per_hour: Optional[str] = typer.Option(None, "--price-per-hour", help="What the machine costs, USD/hour."),
    no_calibrate: bool = typer.Option(False, "--no-calibrate", help="Spend nothing: plan from stored or estimated rates instead of measuring."),
    set_: list[str] = SET_OPT,
    methods: Optional[str] = METHODS_OPT,
    as_json: bool = typer.Option(False, "--json", help="Print the plan as JSON on stdout (plan.json's fields; messages go to stderr)."),
    cloud: Optional[str] = typer.Option(None, "--cloud", help="Plan for a cloud VM (gcp): the memory plan on every catalogue GPU and the instance chosen."),
    gpu: Optional[str] = typer.Option(None, "--gpu", help="With --cloud: plan for this GPU type (t4, l4, a100, h100, ...)."),
    region: Optional[str] = typer.Option(None, "--region", help="With --cloud: the region whose prices decide (default us-central1)."),
    spot: bool = typer.Option(False, "--spot", help="With --cloud: Spot prices."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Spend nothing and read nothing from the hub: the memory plan (and with --cloud the instance), from the model's configuration."),
) -> None:
    """Print the plan (trials, steps, rungs, expected and worst-case spend, reserve), and each
    option's memory plan (predicted peak memory, micro-batch, checkpointing, quantization)."""
    from budgetft.money.usd import PriceError, parse_money
    from budgetft.telemetry.pricing import run_price

    err = stderr_console()
    if cloud is not None or dry_run:
        if cloud not in (None, "gcp"):
            err.print(f"[bold red]error:[/] unknown cloud {cloud!r}; supported: gcp")
            raise typer.Exit(2)
        try:
            cap = parse_money(budget, "--budget")
        except PriceError as exc:
            err.print(f"[bold red]error:[/] {exc}")
            raise typer.Exit(2) from None
        with cli_errors(err):
            from budgetft.spec import load_job, methods_override

            spec = load_job(job, methods_override(job, list(set_), methods))
            quiet_libraries()
            from budgetft.cli.plan_memory import memory_plan

            raise typer.Exit(memory_plan(spec, cap, err, as_json=as_json, cloud=cloud, gpu=gpu, region=region, spot=spot))
    if gpu or region or spot:
        err.print("[bold red]error:[/] --gpu, --region and --spot apply to a cloud plan; add --cloud gcp")
        raise typer.Exit(2)
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
    from budgetft.planner.costs import CALIBRATION_STEPS
    from budgetft.planner.inputs import budget_check, explain_unmeasured, plan_inputs
    from budgetft.runner.display import plan_table
    from budgetft.stages.calibrate import calibrate
    from budgetft.stages.plan import resolve_test_rows
    from budgetft.task import prepare_tasks
    from budgetft.telemetry.device import device_name

    with err.status("checking and tokenizing data…"):
        tasks = prepare_tasks(spec)
        spec, tasks, rows_reason = resolve_test_rows(spec, tasks, cap, price.usd_per_hour)
    spent_s = 0.0
    calibration = None
    # The check a run makes before its first charge, from the same inputs (stored or estimated
    # rates with a fixed margin, never the load at this second): `plan`, with or without
    # --no-calibrate, refuses at the minimum `run` refuses at; before calibrating, too, as
    # measuring costs time that such a budget cannot pay for.
    budget_check(tasks, spec, cap, Decimal(0), price.usd_per_hour)
    if not no_calibrate:
        t0 = time.perf_counter()
        with err.status(f"calibrating ({CALIBRATION_STEPS + 1} steps per option) and timing scoring…"):
            calibration = calibrate(tasks, spec)
        spent_s = time.perf_counter() - t0
    inputs = plan_inputs(tasks, spec, calibration=calibration)
    rates, costs = inputs.rates, inputs.costs
    if calibration:  # measured here, but a run measures again and pays for it: about what it took now
        from dataclasses import replace

        costs = replace(costs, calibration_seconds=spent_s)
    source = f"calibrated now on {device_name()}" if calibration else inputs.source
    plan = plan_budget(cap, Decimal(0), price.usd_per_hour, rates, costs, spec.train.max_steps, curves=inputs.curves, batch_size=spec.train.batch_size,
                       paces=inputs.paces)
    explain_unmeasured(plan, inputs, spec)
    err.print(f"rates: {source}")
    for r in rates.values():
        err.print(f"  {r.method}: {r.seconds_per_step:.2f} s/step" + (f" (with {r.labelling_seconds_per_step:.2f} s of labelling unlabelled rows)" if r.labelling_seconds_per_step else "")
                  + f", {r.examples_per_s:.2f} examples/s" + (f", peak memory {r.peak_memory_mb:.0f} MB" if r.peak_memory_mb else "")
                  + (f"; held-out test {r.test_seconds:.0f} s" if r.test_seconds else ""))
    for model, rate in inputs.eval_rows_per_s.items():
        err.print(f"  scoring {model}: {rate:.1f} rows/s")
    if rows_reason:
        err.print(f"held-out test: {rows_reason}")
    err.print(f"a run also pays for its baselines ({costs.baseline_seconds:.0f} s) and calibration ({costs.calibration_seconds:.0f} s) before training")
    if as_json:
        from budgetft.planner.document import plan_document

        spent_usd = seconds_to_usd(spent_s, price.usd_per_hour) if spent_s else None
        eval_rate = next(iter(inputs.eval_rows_per_s.values()))
        print(json.dumps(plan_document(plan, rates, source, costs, eval_rate, spent_s, spent_usd), indent=2))
    else:
        stdout_console().print(plan_table(plan))
    if spent_s:
        err.print(f"calibrating took {spent_s:.0f} s (${seconds_to_usd(spent_s, price.usd_per_hour)} at ${price.usd_per_hour}/h; not charged to any run)")
