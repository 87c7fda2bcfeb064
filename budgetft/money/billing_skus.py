"""Compute Engine SKUs (Cloud Billing Catalog API) -> catalogue rows. Pure functions, no I/O.

Shared by `budgetft prices --refresh` (money/refresh.py, through Google's client library) and the
offline fetcher scripts/fetch_prices.py (plain REST with an API key): one mapping, two transports.

Compute Engine does not price machine types as such: it prices a vCPU-hour and a GB-hour of RAM
per machine family, a GPU-hour per GPU model and a GB-month per disk type, each as a SKU whose
description names the family, model or disk, and whose `serviceRegions` lists where it applies:

    machine price = vCPUs x core SKU + GB x RAM SKU (+ its built-in GPUs x the GPU's SKU)

A SKU is a dict in the REST API's JSON shape (camelCase: serviceRegions, pricingInfo, ...).
"""

from __future__ import annotations

import re
from datetime import date
from decimal import ROUND_CEILING, Decimal

COMPUTE_ENGINE_SERVICE = "6F81-5844-456A"
DEFAULT_REGIONS = ("us-central1", "us-east1", "us-west1", "europe-west4")
RESOLUTION = Decimal("0.000001")

# machine type -> (SKU family, vCPUs, memory GB, built-in GPU, GPU count). Shapes from Compute
# Engine's machine-type docs; only what is listed here is priced. A3 Ultra and A4 come only as
# 8-GPU machines: the catalogue prices the whole machine, and a one-GPU run is priced as its
# per-GPU share (telemetry/hardware.py).
MACHINES = {
    "n1-standard-4": ("n1", 4, 15, None, 0),
    "n1-standard-8": ("n1", 8, 30, None, 0),
    "n1-standard-16": ("n1", 16, 60, None, 0),
    "g2-standard-4": ("g2", 4, 16, "nvidia-l4", 1),
    "g2-standard-8": ("g2", 8, 32, "nvidia-l4", 1),
    "g2-standard-24": ("g2", 24, 96, "nvidia-l4", 2),
    "g2-standard-48": ("g2", 48, 192, "nvidia-l4", 4),
    "g2-standard-96": ("g2", 96, 384, "nvidia-l4", 8),
    "a2-highgpu-1g": ("a2", 12, 85, "nvidia-tesla-a100", 1),
    "a2-highgpu-2g": ("a2", 24, 170, "nvidia-tesla-a100", 2),
    "a2-highgpu-4g": ("a2", 48, 340, "nvidia-tesla-a100", 4),
    "a2-highgpu-8g": ("a2", 96, 680, "nvidia-tesla-a100", 8),
    "a2-megagpu-16g": ("a2", 96, 1360, "nvidia-tesla-a100", 16),
    "a2-ultragpu-1g": ("a2", 12, 170, "nvidia-a100-80gb", 1),
    "a2-ultragpu-2g": ("a2", 24, 340, "nvidia-a100-80gb", 2),
    "a2-ultragpu-4g": ("a2", 48, 680, "nvidia-a100-80gb", 4),
    "a2-ultragpu-8g": ("a2", 96, 1360, "nvidia-a100-80gb", 8),
    "a3-highgpu-1g": ("a3", 26, 234, "nvidia-h100-80gb", 1),
    "a3-highgpu-8g": ("a3", 208, 1872, "nvidia-h100-80gb", 8),
    "a3-ultragpu-8g": ("a3ultra", 224, 2952, "nvidia-h200-141gb", 8),
    "a4-highgpu-8g": ("a4", 224, 3968, "nvidia-b200", 8),
}
# GPUs sold separately, attachable to N1 machines.
N1_GPUS = ("nvidia-tesla-t4", "nvidia-tesla-p100", "nvidia-tesla-v100")

# SKU description fragments -> our names. Descriptions look like
#   "N1 Predefined Instance Core running in Americas"
#   "Spot Preemptible N1 Predefined Instance Ram running in Americas"
#   "A3Ultra Instance Core running in Americas"            (A3 Ultra: H200 machines)
#   "Nvidia Tesla T4 GPU attached to Spot Preemptible VMs running in Americas"
#   "Nvidia H200 141GB GPU running in Americas"
#   "Balanced PD Capacity"
_FAMILY = {"n1 predefined": "n1", "g2": "g2", "a2": "a2", "a3": "a3", "a3ultra": "a3ultra", "a3 ultra": "a3ultra", "a4": "a4"}
_CORE_RAM = re.compile(
    r"^(?:spot preemptible )?(n1 predefined|g2|a2|a3 ?ultra|a3|a4) instance (core|ram) running in "
)
_GPU = re.compile(
    r"^nvidia (?:tesla )?(t4|p100|v100|l4|a100 80gb|a100|h100 80gb|h200(?: 141gb)?|b200) gpu "
    r"(?:attached to spot preemptible vms )?running in "
)
_GPU_NAMES = {
    "t4": "nvidia-tesla-t4",
    "p100": "nvidia-tesla-p100",
    "v100": "nvidia-tesla-v100",
    "l4": "nvidia-l4",
    "a100": "nvidia-tesla-a100",
    "a100 80gb": "nvidia-a100-80gb",
    "h100 80gb": "nvidia-h100-80gb",
    "h200": "nvidia-h200-141gb",
    "h200 141gb": "nvidia-h200-141gb",
    "b200": "nvidia-b200",
}
_DISKS = {
    "storage pd capacity": "pd-standard",
    "balanced pd capacity": "pd-balanced",
    "ssd backed pd capacity": "pd-ssd",
}
# SKUs that look like ours but are priced differently: commitments, sole-tenant nodes, custom or
# extended shapes, DWS/flex-start, A3 Mega/Plus, regional (replicated) disks, ...
_EXCLUDE = re.compile(
    r"commit|sole tenancy|custom|extended|reserved|dws|calendar|flex|mega|plus|regional|"
    r"confidential|workstation|premium|snapshot|hyperdisk"
)

COLUMNS = ("kind", "name", "region", "provisioning", "usd_per_hour", "usd_per_gb_month",
           "gpu", "gpu_count", "vcpus", "memory_gb", "attaches_to", "source", "as_of")
ROW_SOURCE = f"Cloud Billing Catalog API; service {COMPUTE_ENGINE_SERVICE} (Compute Engine) per-SKU rates"


def unit_price(sku: dict) -> Decimal:
    """USD per usage unit of a SKU's current price. With several tiers, the highest (we would
    rather overstate a cost than understate it)."""
    expression = sku["pricingInfo"][-1]["pricingExpression"]
    prices = [  # a Money is whole `units` plus `nanos` billionths
        Decimal(str(r["unitPrice"].get("units") or 0)) + Decimal(r["unitPrice"].get("nanos", 0)) / Decimal(10**9)
        for r in expression["tieredRates"]
    ]
    return max(prices)


def classify(sku: dict) -> tuple[str, str, str] | None:
    """(component, name, provisioning) for a SKU we use, else None. component is core, ram, gpu or
    disk; name is a machine family, GPU or disk type; provisioning is on-demand, spot or any."""
    description = sku.get("description", "").strip().lower()
    usage = sku.get("category", {}).get("usageType", "")
    if _EXCLUDE.search(description):
        return None
    if usage == "OnDemand":
        provisioning = "on-demand"
    elif usage == "Preemptible":  # the Spot model's usage type in the Billing Catalog
        provisioning = "spot"
    else:
        return None
    if m := _CORE_RAM.match(description):
        return m.group(2), _FAMILY[m.group(1)], provisioning
    if m := _GPU.match(description):
        return "gpu", _GPU_NAMES[m.group(1)], provisioning
    for prefix, disk in _DISKS.items():
        if description.startswith(prefix) and provisioning == "on-demand":
            return "disk", disk, "any"
    return None


def parse_skus(skus: list[dict], regions: tuple[str, ...] = DEFAULT_REGIONS) -> list[dict[str, str]]:
    """Catalogue rows (dicts of CSV strings) from Billing Catalog SKUs.

    A machine is emitted for a region and provisioning model only when every part of its price
    (core, RAM and built-in GPU) has a SKU there; a missing part means no row, never a guess."""
    prices: dict[tuple[str, str, str, str], Decimal] = {}
    for sku in skus:
        kind = classify(sku)
        if kind is None:
            continue
        component, name, provisioning = kind
        for region in sku.get("serviceRegions", []):
            if region in regions:
                key = (component, name, region, provisioning)
                # Two SKUs for one part (rare): keep the dearer, again erring high.
                prices[key] = max(prices.get(key, Decimal(0)), unit_price(sku))

    def up(x: Decimal) -> str:
        return str(x.quantize(RESOLUTION, rounding=ROUND_CEILING))

    rows: list[dict[str, str]] = []
    for region in regions:
        for provisioning in ("on-demand", "spot"):
            for machine, (family, vcpus, mem, gpu, count) in MACHINES.items():
                parts = [("core", family), ("ram", family)] + ([("gpu", gpu)] if gpu else [])
                if any((c, n, region, provisioning) not in prices for c, n in parts):
                    continue
                price = {part: prices[(*part, region, provisioning)] for part in parts}
                total = vcpus * price[("core", family)] + mem * price[("ram", family)]
                if gpu:
                    total += count * price[("gpu", gpu)]
                rows.append(_row("machine", machine, region, provisioning, usd_per_hour=up(total), gpu=gpu or "",
                                 gpu_count=str(count), vcpus=str(vcpus), memory_gb=str(mem)))
            for gpu in N1_GPUS:
                if (key := ("gpu", gpu, region, provisioning)) in prices:
                    rows.append(_row("gpu", gpu, region, provisioning, usd_per_hour=up(prices[key]),
                                     attaches_to="n1"))
        for disk in ("pd-standard", "pd-balanced", "pd-ssd"):
            if (key := ("disk", disk, region, "any")) in prices:
                rows.append(_row("disk", disk, region, "any", usd_per_gb_month=up(prices[key])))
    rows.append(_row("local", "cpu", "local", "any", usd_per_hour="0"))
    return rows


def _row(kind: str, name: str, region: str, provisioning: str, **values: str) -> dict[str, str]:
    row = dict.fromkeys(COLUMNS, "")
    row.update(kind=kind, name=name, region=region, provisioning=provisioning, gpu_count="0", source=ROW_SOURCE)
    row.update(values)
    return row


def render_csv(rows: list[dict[str, str]], fetched: date, version: str | None = None, how: str = "scripts/fetch_prices.py") -> str:
    """The catalogue file: a `# key: value` header budgetft reads, then the rows."""
    header = [
        "# budgetft price catalogue: Google Cloud Compute Engine list prices in USD, before tax and discounts.",
        f"# version: {version or fetched.strftime('%Y.%m.%d')}",
        f"# fetched: {fetched.isoformat()}",
        f"# source: Google Cloud Billing Catalog API, service {COMPUTE_ENGINE_SERVICE} (Compute Engine), {how}",
        "# units: usd_per_hour for machines, GPUs and local; usd_per_gb_month for disks (730 h/month).",
        "# machines: a g2/a2/a3/a4 price already includes its GPUs; a GPU row with attaches_to=n1 is added per GPU to N1.",
        "# spot: the Spot prices in effect on the fetch date; Google may change them daily.",
        "# local: a CPU-only run on your own machine costs 0 unless you pass --price-per-hour.",
        ",".join(COLUMNS),
    ]
    body = [",".join(row.get(c) or (fetched.isoformat() if c == "as_of" else "") for c in COLUMNS) for row in rows]
    return "\n".join(header + body) + "\n"
