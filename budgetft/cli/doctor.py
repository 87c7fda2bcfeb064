"""`budgetft doctor`: what a run needs, checked item by item, spending nothing."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer

from budgetft.cli.common import stderr_console

# Imported inside functions: budgetft's domain code (the cloud checks load google-auth, and only
# once credentials exist the Compute client): `budgetft --help` loads none of it.


def doctor(
    cloud: Optional[str] = typer.Option(None, "--cloud", help="Also check what a cloud run needs: gcp (credentials, project, APIs, your rights, GPU quota, the image, the network, the bucket and both accounts' rights on it)."),
    as_json: bool = typer.Option(False, "--json", help="Print the checks as JSON on stdout: {ok, checks: [{name, status, detail, fix}]}."),
    project: Optional[str] = typer.Option(None, "--project", help="Google Cloud project (default: from the environment).", show_default=False),
    bucket: Optional[str] = typer.Option(None, "--bucket", help="gs:// bucket a run would use (default: gs://PROJECT-budgetft or BUDGETFT_BUCKET).", show_default=False),
    gpu: Optional[str] = typer.Option(None, "--gpu", help="Check quota and zones for this GPU (t4, l4, v100, ...); default: report every GPU's quota.", show_default=False),
    machine: Optional[str] = typer.Option(None, "--machine", help="With --gpu: the machine type, e.g. n1-standard-8.", show_default=False),
    region: Optional[str] = typer.Option(None, "--region", help="Cloud region to check (default: us-central1).", show_default=False),
    spot: bool = typer.Option(False, "--spot", help="Check for a Spot VM (its PREEMPTIBLE_ GPU quota)."),
    no_external_ip: bool = typer.Option(False, "--no-external-ip", help="Check for a VM without an external address: Private Google Access and Cloud NAT."),
    hf_token_secret: Optional[str] = typer.Option(None, "--hf-token-secret", help="Check this Secret Manager secret (the hub token) and the VM's right to read it.", show_default=False),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="Where runs go, for the free-disk check (default: ./runs).", show_default=False),
) -> None:
    """Check, spending nothing, what a run needs (on --cloud gcp too): one line per check with its fix; exits 1 if any fails."""
    import os

    from budgetft.doctor_local import local_checks

    err = stderr_console()
    if cloud is not None and cloud != "gcp":
        err.print(f"[bold red]error:[/] unknown cloud {cloud!r}; supported: gcp")
        raise typer.Exit(2)
    runs_dir = out or Path.cwd() / "runs"
    if cloud is None:
        given = [n for n, v in {"--project": project, "--bucket": bucket, "--gpu": gpu, "--machine": machine, "--region": region, "--hf-token-secret": hf_token_secret}.items() if v]
        given += ["--spot"] if spot else []
        given += ["--no-external-ip"] if no_external_ip else []
        if given:
            err.print(f"[bold red]error:[/] {', '.join(given)} only apply to cloud checks; add --cloud gcp")
            raise typer.Exit(2)
        checks = local_checks(cloud=False, runs_dir=runs_dir)
        _show([c.to_json() for c in checks], as_json)
        raise typer.Exit(1 if any(c.status == "fail" for c in checks) else 0)

    from budgetft.cloud.doctor import run_doctor
    from budgetft.cloud.doctor_findings import DoctorRequest
    from budgetft.cloud.plan import BUCKET_ENV
    from budgetft.money.catalog import DEFAULT_REGION

    region_name = region or DEFAULT_REGION
    try:
        instance = _instance(gpu, machine, region_name, spot) if gpu or machine else None
    except ValueError as exc:
        err.print(f"[bold red]error:[/] {exc}", soft_wrap=True)
        raise typer.Exit(2) from None
    found = run_doctor(DoctorRequest(
        project=project, bucket=bucket or os.environ.get(BUCKET_ENV), region=region_name, region_given=True, instance=instance,
        external_ip=not no_external_ip, max_run_seconds=3600, hf_token_secret=hf_token_secret,
        disk_gb=instance.disk_gb if instance else 50, runs_dir=runs_dir,
    ))
    _show(found.to_json()["checks"], as_json)
    raise typer.Exit(1 if found.failed else 0)


def _instance(gpu: str | None, machine: str | None, region: str, spot: bool):
    """The catalogue instance a run with these options would get (the host with 8+ vCPUs that a
    run picks by default, the cheapest of them)."""
    from budgetft.cloud.choose import MIN_VCPUS
    from budgetft.money.catalog_store import default_catalog
    from budgetft.money.errors import CatalogError, UnknownName

    catalog = default_catalog()
    try:
        found = catalog.instances(regions=[region], spot=spot, gpus=[gpu] if gpu else None)
    except UnknownName as exc:
        raise ValueError(str(exc)) from None
    if machine:
        found = [i for i in found if i.machine == machine]
    else:
        def vcpus(i) -> int:
            try:
                return catalog.find("machine", i.machine, region, spot).vcpus or 0
            except CatalogError:
                return 0

        found = [i for i in found if i.gpu and vcpus(i) >= MIN_VCPUS] or [i for i in found if i.gpu]
    if not found:
        raise ValueError(f"no catalogue instance has {machine or ''}{' + ' if machine and gpu else ''}{gpu or ''} in {region} ({'spot' if spot else 'on-demand'})")
    return found[0]


def _show(checks: list[dict], as_json: bool) -> None:
    if as_json:
        print(json.dumps({"ok": not any(c["status"] == "fail" for c in checks), "checks": checks}, indent=2))
        return
    from budgetft.doctor_local import Check, line

    for c in checks:
        print(line(Check(**c)))
    failed = sum(c["status"] == "fail" for c in checks)
    print(f"{failed} check(s) failed" if failed else "everything a run needs is in place")
