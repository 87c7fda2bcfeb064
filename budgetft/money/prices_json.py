"""`budgetft prices --json`: the listed instances as data. Field names are the price catalogue's
(catalog.csv: region, provisioning, usd_per_hour, gpu, gpu_count, vcpus, memory_gb) and the
priced instance's parts (budgetft.money.catalog.Instance); money is exact decimal strings, as in
the ledger and report.json, so no dollar becomes a binary float."""

from __future__ import annotations

from dataclasses import asdict
from decimal import Decimal
from typing import Any

from budgetft.money.usd import RATE_RESOLUTION, round_up
from budgetft.money.catalog import Catalog, Instance


def prices_document(catalog: Catalog, instances: list[Instance], filters: dict[str, Any]) -> dict:
    return {
        "catalog": {"version": catalog.version, "fetched": catalog.fetched, "source": catalog.meta.get("source")},
        "filters": filters,
        "instances": [instance_json(catalog, inst) for inst in instances],
    }


def instance_json(catalog: Catalog, inst: Instance) -> dict:
    # Hourly parts to a billionth of a dollar, rounded up as the total is (a disk's share of a
    # 730-hour month does not terminate).
    data = {k: _plain(round_up(v, RATE_RESOLUTION) if k.endswith("usd_per_hour") else v) for k, v in asdict(inst).items()}
    machine = next((r for r in catalog.rows if r.kind == "machine" and r.name == inst.machine and r.region == inst.region), None)
    data.update(
        label=inst.label,
        provisioning=inst.provisioning,
        usd_per_hour=str(inst.usd_per_hour),
        minutes_per_dollar=_plain(inst.minutes_per_dollar),
        vcpus=machine.vcpus if machine else None,
        memory_gb=_plain(machine.memory_gb) if machine else None,
    )
    return data


def _plain(value: Any) -> Any:
    return str(value) if isinstance(value, Decimal) else value
