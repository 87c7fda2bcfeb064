"""`budgetft prices`: what an hour of each instance costs and how long $1 lasts on it."""

from __future__ import annotations

from typing import Annotated, Optional

import typer

from budgetft.cli.common import stderr_console, warn_stale_prices

# Imported inside functions: budgetft's domain code and rich: `budgetft --help` loads none of it
# (start-up time).

ALL_REGIONS = "all"


def prices(
    gpu: Annotated[
        Optional[list[str]],
        typer.Option(
            "--gpu",
            "-g",
            help="Only instances with this GPU (repeatable): t4, p100, v100, l4, a100, a100-80gb, h100, h200, b200.",
            show_default=False,
        ),
    ] = None,
    spot: Annotated[bool, typer.Option("--spot", help="Only Spot prices.")] = False,
    region: Annotated[
        str, typer.Option("--region", "-r", help=f"Region to list, or '{ALL_REGIONS}'.")
    ] = "us-central1",
    disk_gb: Annotated[
        int, typer.Option("--disk-gb", min=0, help="Boot disk size included in each price (GB).")
    ] = 50,
    disk_type: Annotated[
        str, typer.Option("--disk-type", help="Boot disk type: pd-balanced, pd-standard, pd-ssd.")
    ] = "pd-balanced",
    refresh: Annotated[
        bool,
        typer.Option(
            "--refresh",
            help="First fetch today's list prices from Google's Cloud Billing Catalog API (needs Google Cloud "
            "credentials or GOOGLE_API_KEY) into budgetft's cache; later commands use them.",
        ),
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the prices as JSON (the catalogue's field names).")] = False,
) -> None:
    """List instance prices from the price catalogue (the bundled one, or a newer refreshed one),
    cheapest first, with minutes per dollar."""
    # Imported here so `budgetft --help` does not pay for them.
    from rich.console import Console
    from rich.table import Table

    from budgetft.money.catalog_store import default_catalog
    from budgetft.money.errors import CatalogError, UnknownName
    from budgetft.money.gpu_names import GPU_LABELS, resolve_gpu

    if refresh:
        _refresh(region)
    else:
        warn_stale_prices(stderr_console())
    catalog = default_catalog()
    try:
        gpus = [resolve_gpu(g) for g in gpu or []]
    except UnknownName as exc:
        raise typer.BadParameter(str(exc), param_hint="--gpu") from exc
    if region != ALL_REGIONS and region not in catalog.regions():
        valid = ", ".join([*catalog.regions(), ALL_REGIONS])
        raise typer.BadParameter(f"unknown region {region!r}; valid: {valid}", param_hint="--region")
    if disk_type not in catalog.names("disk"):
        valid = ", ".join(catalog.names("disk"))
        raise typer.BadParameter(f"unknown disk type {disk_type!r}; valid: {valid}", param_hint="--disk-type")
    try:
        rows = catalog.instances(
            regions=None if region == ALL_REGIONS else [region],
            spot=True if spot else None,
            gpus=gpus or None,
            disk_type=disk_type,
            disk_gb=disk_gb,
        )
    except CatalogError as exc:
        raise typer.BadParameter(str(exc)) from exc
    if as_json:
        import json

        from budgetft.money.prices_json import prices_document

        filters = {"gpu": gpus, "spot_only": spot, "region": region, "disk_gb": disk_gb, "disk_type": disk_type}
        print(json.dumps(prices_document(catalog, rows, filters), indent=2))
        raise typer.Exit(0 if rows else 1)

    table = Table(
        title="Instance prices (USD)",
        caption=(
            f"catalogue {catalog.version}, prices of {catalog.fetched}; each includes a {disk_gb} GB "
            f"{disk_type} boot disk. Spot prices float; these are conservative estimates."
        ),
    )
    for name, justify in (("instance", "left"), ("GPU", "left"), ("provisioning", "left"),
                          ("region", "left"), ("$/h", "right"), ("min per $", "right")):
        table.add_column(name, justify=justify, no_wrap=True)
    for inst in rows:
        gpu_label = GPU_LABELS.get(inst.gpu, inst.gpu) if inst.gpu else "-"
        if inst.gpu_count > 1:
            gpu_label = f"{inst.gpu_count}x {gpu_label}"
        minutes = inst.minutes_per_dollar
        table.add_row(
            inst.label,
            gpu_label,
            inst.provisioning,
            inst.region,
            f"{inst.usd_per_hour:.4f}",
            f"{minutes:.1f}" if minutes is not None else "unlimited",
        )
    console = Console()
    if not console.is_terminal:  # piped or captured: don't squeeze the table to 80 columns
        console = Console(width=max(console.width, 120))
    if not rows:
        console.print("No instance in the catalogue matches these filters.")
        raise typer.Exit(1)
    console.print(table)


def _refresh(region: str) -> None:
    """`--refresh`: fetch and cache today's prices, or exit 2 with the reason and its fix."""
    err = stderr_console()
    try:
        from budgetft.cloud.billing import refresh_catalog
        from budgetft.cloud.errors import CloudError
    except ImportError as exc:  # the Google client libraries are not installed
        err.print(f"[bold red]error:[/] --refresh needs Google's client library ({exc.name or exc}); "
                  "install it with `pip install google-cloud-billing`")
        raise typer.Exit(2) from None
    from budgetft.money.billing_skus import DEFAULT_REGIONS

    regions = DEFAULT_REGIONS if region in (ALL_REGIONS, *DEFAULT_REGIONS) else (*DEFAULT_REGIONS, region)
    try:
        with err.status("fetching list prices from the Cloud Billing Catalog API…"):
            done = refresh_catalog(regions)
    except CloudError as exc:
        err.print(f"[bold red]error:[/] {exc}")
        raise typer.Exit(2) from None
    err.print(f"refreshed: {done.rows} price rows ({done.machines} machines) from {done.skus} Compute Engine SKUs, "
              f"prices of {done.fetched}, written to {done.path}; later commands use them")
