"""`budgetft status` and `budgetft down`: budgetft's cloud VMs, found by their run label, wherever
the launcher that made them is (or is not) any more."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer
from rich.markup import escape  # messages may hold brackets, e.g. budgetft[gcp]

from budgetft.cli.common import stderr_console, stdout_console

# Imported inside functions: budgetft's domain code and rich: `budgetft --help` loads none of it
# (start-up time).

PROJECT_OPT = typer.Option(None, "--project", help="Google Cloud project (default: from the environment).", show_default=False)


def status(
    project: Optional[str] = PROJECT_OPT,
    as_json: bool = typer.Option(False, "--json", help="Print the VMs as JSON on stdout (the VM listing's fields)."),
) -> None:
    """List budgetft's cloud VMs: run id, zone, state, age and cost so far."""
    from rich.table import Table

    from budgetft.cloud.errors import CloudError
    from budgetft.cloud.estimate import duration_text

    err = stderr_console()
    try:
        provider, project = _provider(project)
        vms = provider.list()
    except CloudError as exc:
        err.print(f"[bold red]error:[/] {escape(str(exc))}", soft_wrap=True)
        raise typer.Exit(2) from None
    if as_json:
        import json

        from budgetft.cloud.status_json import vms_document

        print(json.dumps(vms_document(vms, project), indent=2))
        return
    if not vms:
        err.print(f"no budgetft VMs in project {project}")
        return
    table = Table(title=f"budgetft VMs in {project}", title_justify="left")
    for col, just in (("run id", "left"), ("VM", "left"), ("zone", "left"), ("state", "left"), ("instance", "left"), ("age", "right"), ("$/h", "right"), ("cost so far", "right"), ("ends by", "right")):
        table.add_column(col, justify=just)
    for vm in vms:
        price, so_far = _cost(vm)
        ends = "-"
        if vm.max_run_seconds and vm.last_start:
            ends = duration_text(max(0, int(vm.max_run_seconds - vm.billed_seconds()))) + " left"
        shape = vm.machine_type + (f" + {vm.gpu}" if vm.gpu else "") + (" (spot)" if vm.spot else "")
        table.add_row(vm.run_id or "?", vm.name, vm.zone, vm.status, shape, duration_text(int(vm.age_seconds())), price, so_far, ends)
    stdout_console().print(table)
    err.print("cost so far: running time x catalogue price, an upper bound; `budgetft down RUN_ID` deletes a run's VMs")


def down(
    run_id: Optional[str] = typer.Argument(None, metavar="[RUN_ID]", help="The run whose VMs to delete (its id or run directory).", show_default=False),
    all_: bool = typer.Option(False, "--all", help="Delete every budgetft VM in the project."),
    project: Optional[str] = PROJECT_OPT,
) -> None:
    """Delete budgetft's cloud VMs: those of RUN_ID, or --all. Waits until each is gone."""
    from budgetft.cloud.errors import CloudError
    from budgetft.cloud.request import label_value

    err = stderr_console()
    if bool(run_id) == all_:
        err.print("[bold red]error:[/] give a RUN_ID or --all (see `budgetft status`)")
        raise typer.Exit(2)
    wanted = label_value(Path(run_id).name) if run_id else None
    try:
        provider, project = _provider(project)
        vms = provider.list(wanted)
        if not vms:
            if wanted:
                others = sorted({v.run_id for v in provider.list() if v.run_id})
                err.print(f"no budgetft VM for run {wanted} in {project}" + (f"; runs with VMs: {', '.join(others)}" if others else ""))
                raise typer.Exit(1)
            err.print(f"no budgetft VMs in project {project}; nothing to delete")
            return
        for vm in vms:
            err.print(f"deleting {vm.name} ({vm.zone}, run {vm.run_id}, {vm.status})…")
            provider.delete_and_confirm(vm.zone, vm.name)
            err.print(f"deleted  {vm.name}; confirmed gone")
    except CloudError as exc:
        err.print(f"[bold red]error:[/] {escape(str(exc))}", soft_wrap=True)
        raise typer.Exit(2) from None


def _provider(project: str | None):
    from budgetft.cloud.gcp import project_from_environment
    from budgetft.cloud.launcher import make_provider

    return make_provider(project or project_from_environment())


def _cost(vm) -> tuple[str, str]:
    from budgetft.money.catalog_store import default_catalog
    from budgetft.money.errors import CatalogError

    try:
        inst = default_catalog().instance(vm.machine_type, vm.gpu, region=vm.region, spot=vm.spot, disk_gb=vm.disk_gb or 50)
    except (CatalogError, ValueError):
        return "?", "?"
    return f"{inst.usd_per_hour:.4f}", f"~${inst.cost(vm.billed_seconds(), 0):.4f}"
