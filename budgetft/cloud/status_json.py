"""`budgetft status --json`: budgetft's VMs as data, with the VM listing's field names
(budgetft.cloud.provider.VM) plus what the table derives: age, billed time, time left before the
cloud deletes the VM, and the catalogue price. Times are UTC ISO 8601 and seconds; money is exact
decimal strings, the cost so far an upper bound (running time x list price)."""

from __future__ import annotations

from dataclasses import asdict
from datetime import datetime, timezone

from budgetft.cloud.provider import SESSION_LABEL, VM
from budgetft.money.catalog_store import default_catalog
from budgetft.money.errors import CatalogError


def vms_document(vms: list[VM], project: str, now: datetime | None = None) -> dict:
    now = now or datetime.now(timezone.utc)
    return {"project": project, "as_of": _iso(now), "vms": [vm_json(vm, now) for vm in vms]}


def vm_json(vm: VM, now: datetime) -> dict:
    data = asdict(vm)
    for key in ("created", "last_start", "last_stop"):
        data[key] = _iso(data[key])
    billed = vm.billed_seconds(now)
    price = vm_price(vm)
    data.update(
        run_id=vm.run_id,
        session=vm.labels.get(SESSION_LABEL),
        region=vm.region,
        age_seconds=round(vm.age_seconds(now)),
        billed_seconds=round(billed),
        # The cloud deletes the VM at max_run_seconds of running time (scheduling.maxRunDuration).
        seconds_left=max(0, int(vm.max_run_seconds - billed)) if vm.max_run_seconds and vm.last_start else None,
        usd_per_hour=None if price is None else str(price.usd_per_hour),
        cost_so_far_usd=None if price is None else str(price.cost(billed, 0)),
    )
    return data


def vm_price(vm: VM):
    """The catalogue instance priced like the VM, or None when the catalogue has no such shape."""
    try:
        return default_catalog().instance(vm.machine_type, vm.gpu, region=vm.region, spot=vm.spot, disk_gb=vm.disk_gb or 50)
    except (CatalogError, ValueError):
        return None


def _iso(moment: datetime | None) -> str | None:
    return None if moment is None else moment.astimezone(timezone.utc).isoformat(timespec="seconds").replace("+00:00", "Z")
