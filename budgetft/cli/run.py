"""`budgetft run`: the best model the budget buys — baselines, calibration, plan, tuning, report."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from budgetft.cli.common import JOB_ARG, METHODS_OPT, SET_OPT, TRACK_OPT, cli_errors, set_local_region, stderr_console, track_choices, warn_stale_prices
from budgetft.quiet import quiet_libraries

# Imported inside functions: budgetft's domain code: `budgetft --help` loads none of it (start-up
# time).


def run(
    job: Optional[str] = JOB_ARG,
    budget: Optional[str] = typer.Option(None, "--budget", "-b", help="Hard cap in USD for the whole run, e.g. 1.00.", show_default=False),
    price_per_hour: Optional[str] = typer.Option(None, "--price-per-hour", help="What this machine costs, USD/hour (default: from the detected GPU and the price catalogue)."),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="Run directory (default: runs/<job>-<time>)."),
    resume: Optional[Path] = typer.Option(None, "--resume", help="Continue an interrupted run directory, spending only what is left of its cap."),
    set_: list[str] = SET_OPT,
    methods: Optional[str] = METHODS_OPT,
    ray_address: Optional[str] = typer.Option(None, "--ray-address", help="Connect to this Ray cluster instead of starting a local one."),
    track: list[str] = TRACK_OPT,
    cloud: Optional[str] = typer.Option(None, "--cloud", help="Rent a cloud VM for the run: gcp."),
    gpu: Optional[str] = typer.Option(None, "--gpu", help="Cloud GPU (t4, l4, v100, a100, a100-80gb, h100); default: the most training per dollar."),
    machine: Optional[str] = typer.Option(None, "--machine", help="Cloud machine type, e.g. n1-standard-8."),
    zone: Optional[str] = typer.Option(None, "--zone", help="Cloud zone, e.g. us-central1-a."),
    region: Optional[str] = typer.Option(None, "--region", help="Cloud region; zones in it are tried in turn. Local runs: the grid region this machine draws power from, for the report's CO2 (default: unknown)."),
    spot: bool = typer.Option(False, "--spot", help="Spot (preemptible) capacity: cheaper, may be reclaimed."),
    project: Optional[str] = typer.Option(None, "--project", help="Google Cloud project (default: from the environment)."),
    bucket: Optional[str] = typer.Option(None, "--bucket", help="gs:// bucket the VM uploads results to."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Cloud: print the instance request, start-up script and cost estimate; create nothing."),
    no_external_ip: bool = typer.Option(False, "--no-external-ip", help="Cloud: no public address on the VM (for an organisation policy against them); it reaches Cloud Storage by Private Google Access and the internet by Cloud NAT."),
    fallback_on_demand: bool = typer.Option(False, "--fallback-on-demand", help="Cloud, with --spot: when no Spot VM can start anywhere budgetft may look, try standard (on-demand) VMs, cheapest first."),
    hf_token_secret: Optional[str] = typer.Option(None, "--hf-token-secret", help="Cloud: Secret Manager secret (NAME or projects/P/secrets/NAME) holding a Hugging Face token for gated models; the VM reads it at run time, never from metadata."),
) -> None:
    """Spend at most --budget dollars finding the best fine-tune for the job, with proof."""
    from budgetft.money.usd import PriceError, parse_money

    err = stderr_console()
    try:
        if resume is None and budget is None:
            raise PriceError("--budget is required, e.g. --budget 1.00 (or --resume RUN_DIR to continue a run)")
        cap = parse_money(budget, "--budget") if budget is not None else None
    except PriceError as exc:
        err.print(f"[bold red]error:[/] {exc}")
        raise typer.Exit(2) from None
    if price_per_hour is None:
        warn_stale_prices(err)  # the price will come from the catalogue
    if cloud is None:
        set_local_region(region, err)  # --region on a local run: where its energy comes from (CO2)
        # Cloud-only options without --cloud would be silently ignored: say so instead.
        cloud_only = {"--gpu": gpu, "--machine": machine, "--zone": zone, "--project": project, "--bucket": bucket, "--hf-token-secret": hf_token_secret}
        flags = {"--spot": spot, "--no-external-ip": no_external_ip, "--fallback-on-demand": fallback_on_demand}
        given = [name for name, value in cloud_only.items() if value is not None] + [name for name, on in flags.items() if on]
        if given:
            err.print(f"[bold red]error:[/] {', '.join(given)} only apply to cloud runs; add --cloud gcp, or drop {'them' if len(given) > 1 else 'it'} to run on this machine")
            raise typer.Exit(2)
    if methods is not None:
        if resume is not None:
            err.print("[bold red]error:[/] --methods cannot change a run being resumed: it goes on with the methods it planned")
            raise typer.Exit(2)
        from budgetft.spec import methods_override

        with cli_errors(err):
            set_ = methods_override(job, list(set_), methods)
    if cloud is not None and any(not t.strip().lower().startswith("tensorboard") for t in track):
        err.print("[bold red]error:[/] --track mlflow/wandb applies to local runs: a cloud VM does not carry the trackers' credentials "
                  "(its run directory, TensorBoard files included, comes back with the results)")
        raise typer.Exit(2)
    if cloud is not None:
        if cloud != "gcp":
            err.print(f"[bold red]error:[/] unknown cloud {cloud!r}; supported: gcp")
            raise typer.Exit(2)
        from budgetft.cloud.launcher import run_in_cloud
        from budgetft.cloud.plan import CloudOptions

        with cli_errors(err):
            options = CloudOptions(gpu=gpu, machine=machine, zone=zone, region=region, spot=spot, project=project, bucket=bucket, dry_run=dry_run,
                                   external_ip=not no_external_ip, fallback_on_demand=fallback_on_demand, hf_token_secret=hf_token_secret)
            code = run_in_cloud(job, list(set_), cap, options, cloud=cloud, out=out, resume=resume, console=err)
        raise typer.Exit(code)
    if dry_run:
        err.print("[bold red]error:[/] --dry-run applies to cloud runs (--cloud gcp); use `budgetft plan` to see a local plan without spending")
        raise typer.Exit(2)
    _run_local(job, cap, price_per_hour, out, resume, list(set_), ray_address, list(track), err)


def _run_local(job, cap, price_per_hour, out, resume, overrides, ray_address, track, err) -> None:
    from budgetft.money.usd import PriceError
    from budgetft.planner import BudgetTooSmall
    from budgetft.resume import ResumeError, check_new_run_dir, resume_point
    from budgetft.runner.driver import Run, RunOptions
    from budgetft.spec import load_job
    from budgetft.telemetry.pricing import run_price

    with cli_errors(err):
        try:
            if resume is not None:  # decided as for a cloud run: same cap, same job, true spend
                point = resume_point(resume, cap)
                job, cap = job or str(point.run.job_yaml), point.cap
                price_per_hour = price_per_hour or point.info.price_per_hour
            elif out is not None:
                check_new_run_dir(out)
            spec = load_job(job, overrides)
            price = run_price(price_per_hour)
        except (PriceError, ResumeError) as exc:
            err.print(f"[bold red]error:[/] {exc}")
            raise typer.Exit(2) from None
        trackers = track_choices(track, "run", err)  # a tracker that cannot work is refused before spending
        quiet_libraries()
        err.print(f"price ${price.usd_per_hour}/h ({price.source}: {price.reason}); cap ${cap}")
        runner = Run(spec, RunOptions(cap, price.usd_per_hour, price.source, price_reason=price.reason, out=out, resume=resume, ray_address=ray_address,
                                      live=err.is_terminal, track=trackers), err)
        try:
            run = runner.execute()
        except (BudgetTooSmall, ResumeError) as exc:
            err.print(f"[bold red]error:[/] {exc}")
            raise typer.Exit(2) from None
        except Exception as exc:  # noqa: BLE001 - a bug of ours: one line, the records kept
            where = runner.run
            kept = f"; the ledger and the report are kept in {where.root} (the traceback is in {where.error_log})" if where is not None and where.root.exists() else ""
            err.print(f"[bold red]error:[/] the run failed unexpectedly: {type(exc).__name__}: {_first_line(exc)}{kept}", markup=True)
            raise typer.Exit(1) from None
        if run.run().status == "interrupted":
            err.print(f"continue it with: budgetft run --resume {run.root}")
            # The shell's codes for Ctrl-C (130) and SIGTERM (143), after the report is written.
            raise typer.Exit(143 if runner.stopped_by == "SIGTERM" else 130)
        refused = run.plan().refused
        if refused and not run.trials():
            err.print(f"[bold red]error:[/] no trial was run: {refused}")
            raise typer.Exit(1)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else "no message"
