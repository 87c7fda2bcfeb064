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
    ray_address: Optional[str] = typer.Option(None, "--ray-address", help="Connect to this Ray cluster instead of starting a local one: its nodes run the trials, each charged at its price."),
    node_price: list[str] = typer.Option([], "--node-price", help="With --ray-address: USD/hour of every node (0.40), or of the nodes KEY names (KEY=0.40: a custom resource, an IP or a node id's start); repeatable. Default: --price-per-hour or this machine's."),
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
    if node_price and not ray_address:
        err.print("[bold red]error:[/] --node-price prices the nodes of a Ray cluster: give --ray-address too (one machine: --price-per-hour)")
        raise typer.Exit(2)
    _run_local(job, cap, price_per_hour, out, resume, list(set_), ray_address, list(track), err, list(node_price))


def _run_local(job, cap, price_per_hour, out, resume, overrides, ray_address, track, err, node_prices=()) -> None:
    from budgetft.cli.common import EXIT_DISK_FULL, user_errors
    from budgetft.disk import is_disk_full
    from budgetft.money.ledger import LedgerError, read_charges
    from budgetft.money.usd import PriceError
    from budgetft.planner import BudgetTooSmall
    from budgetft.resume import ResumeError, check_new_run_dir, new_run_dir, resume_point
    from budgetft.runlock import RunDirBusy, RunDirUnwritable, RunLock
    from budgetft.runner.driver import Run, RunOptions
    from budgetft.spec import load_job
    from budgetft.telemetry.pricing import run_price
    from budgetft.tune.cluster import ClusterPriceError, parse_node_prices

    refusals = (PriceError, ClusterPriceError, ResumeError, RunDirBusy, RunDirUnwritable, LedgerError, BudgetTooSmall, *user_errors())
    lock = None
    try:
        with cli_errors(err):
            try:
                # The run directory first: one live driver holds it (a second is refused naming
                # the first), and an --out that cannot be written is refused before any work.
                if resume is not None:
                    if resume.is_dir():
                        lock = RunLock(resume).acquire(resuming=True)
                    point = resume_point(resume, cap)  # decided as for a cloud run: same cap, same job, true spend
                    job, cap = job or str(point.run.job_yaml), point.cap
                    if point.info.price_source != "cluster":  # a cluster's is the sum of its nodes': priced again
                        price_per_hour = price_per_hour or point.info.price_per_hour
                elif out is not None:
                    lock = RunLock(out).acquire()
                    check_new_run_dir(out)
                spec = load_job(job, overrides)
                if resume is None and out is None:  # runs/<job>-<time>, made and locked before the data is read
                    out = new_run_dir(spec.name, None)
                    lock = RunLock(out).acquire()
                if ray_address and price_per_hour is None:  # a price for every node stands for this machine's too
                    every = parse_node_prices(node_prices)[0]
                    price_per_hour = str(every) if every is not None else None
                price = run_price(price_per_hour)
            except refusals as exc:
                err.print(f"[bold red]error:[/] {_in_words(exc)}", highlight=False)
                raise typer.Exit(2) from None
            except OSError as exc:
                if not is_disk_full(exc):
                    raise
                err.print(f"[bold red]error:[/] {exc}; nothing was spent: free some space, or choose another --out")
                raise typer.Exit(EXIT_DISK_FULL) from None
            trackers = track_choices(track, "run", err)  # a tracker that cannot work is refused before spending
            quiet_libraries()
            err.print(f"price ${price.usd_per_hour}/h ({price.source}: {price.reason}); cap ${cap}")
            runner = Run(spec, RunOptions(cap, price.usd_per_hour, price.source, price_reason=price.reason, out=out, resume=resume,
                                          ray_address=ray_address, live=err.is_terminal, lock=lock, track=trackers,
                                          node_prices=list(node_prices)), err)
            try:
                run = runner.execute()
            except refusals as exc:  # bad data, a budget too small, a busy directory: before any spend
                err.print(f"[bold red]error:[/] {_in_words(exc)}", highlight=False)
                if runner.meter is not None:  # found only once the run had begun: its records are kept
                    err.print(f"the run stopped; what it recorded is kept in {runner.run.root}")
                    raise typer.Exit(1) from None
                raise typer.Exit(2) from None
            except Exception as exc:  # noqa: BLE001 - a bug of ours: one line, the records kept
                if is_disk_full(exc):  # before the run's session: a full disk mid-run is the driver's to stop on
                    err.print(f"[bold red]error:[/] {exc}; nothing was spent: free some space, or choose another --out")
                    raise typer.Exit(EXIT_DISK_FULL) from None
                where = runner.run
                kept = f"; the ledger and the report are kept in {where.root} (the traceback is in {where.error_log})" if where is not None and where.root.exists() else ""
                err.print(f"[bold red]error:[/] the run failed unexpectedly: {type(exc).__name__}: {_first_line(exc)}{kept}", markup=True)
                raise typer.Exit(1) from None
            if runner.disk_full is not None:
                if not (run.ledger.exists() and read_charges(run.ledger)):  # the session could not begin
                    err.print(f"[bold red]error:[/] {runner.disk_full}; nothing was spent: free some space, or choose another --out")
                else:
                    err.print(f"[bold red]error:[/] {runner.disk_full}. The run stopped; every record so far is kept in {run.root} "
                              f"(ledger, trials, weights). Free some space, then continue it with: budgetft run --resume {run.root}")
                raise typer.Exit(EXIT_DISK_FULL)
            if runner.exit_code or run.run().status == "interrupted":
                if run.run().status == "finished":  # the signal came as the finished run's report was written
                    err.print(f"stopped by {runner.stopped_by} after the run had finished: its report is complete")
                else:
                    err.print(f"continue it with: budgetft run --resume {run.root}")
                # The shell's code for the signal (Ctrl-C 130, SIGTERM 143, SIGHUP 129), after the report is written.
                raise typer.Exit(runner.exit_code or 130)
            plan = run.plan()
            if plan.refused and not run.trials():  # a run directory written before issue 27
                err.print(f"[bold red]error:[/] no trial was run: {plan.refused}")
                raise typer.Exit(1)
            if plan.no_trials and not run.trials():  # calibration paid: what was left went to the report, not a refusal
                err.print(f"[yellow]no trial was run:[/] {plan.no_trials}", highlight=False)
    finally:
        if lock is not None:
            lock.release(clean=True)


def _in_words(exc: BaseException) -> str:
    """A refusal's message; a ledger that breaks its chain names the fix too."""
    from budgetft.money.ledger import LedgerError

    if isinstance(exc, LedgerError):
        return (f"{exc}: the ledger was edited or damaged, and a run never continues on a ledger it cannot trust; "
                "restore it from a copy, or start a new run with another --out")
    if isinstance(exc, KeyError):
        return str(exc.args[0])
    return str(exc)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else "no message"
