"""What a cloud run pays beside the VM's own catalogue price, so the cap covers it too.

Hourly terms join the VM's rate (the lifetime and the on-VM meter use the sum):
  - the VM's external IPv4 address, or, without one (--no-external-ip), its Cloud NAT gateway;
  - Cloud Storage operations: the VM's uploads every minute and the launcher's polls;
  - uploads from the VM to a bucket in another region (inter-region data transfer).
One-off terms are charged with the VM's overheads before it is created:
  - what the VM downloads through Cloud NAT (packages, the model, the data), when it has no address;
  - the run's results carried from a bucket in another region, and home to this machine.

Every figure is a list price in USD with its page and the date it was taken; each is the
highest row that can apply (multi-region operations, the dearest destination), and every term
is rounded up, so the cap over-counts rather than under-counts.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from decimal import Decimal

from budgetft.cloud.startup import SYNC_EVERY_S
from budgetft.money.usd import RATE_RESOLUTION, round_up

TAKEN = "2026-12-07"  # when the figures below were taken from their pages

# An external IPv4 address in use, per hour: $0.005 (cloud.google.com/vpc/network-pricing#ipaddress,
# Google's price since 2024-02-01; the same $0.005 for a NAT gateway's address on
# cloud.google.com/nat/pricing). Google lists less for Spot VMs; the higher figure serves both.
IPV4_PAGE = "cloud.google.com/vpc/network-pricing#ipaddress"
IPV4_USD_PER_HOUR = Decimal("0.005")
# Cloud NAT: $0.0014 per VM-hour for a gateway's first 32 VMs, $0.005 an hour for each external
# address the gateway uses (all of one charged to this VM), and $0.045 per GiB it processes, both
# directions (cloud.google.com/nat/pricing). Volumes here are GB, a little less than GiB.
NAT_PAGE = "cloud.google.com/nat/pricing"
NAT_USD_PER_VM_HOUR = Decimal("0.0014") + IPV4_USD_PER_HOUR
NAT_USD_PER_GB = Decimal("0.045")
# Cloud Storage operations, Standard class: Class A (inserts, lists) $0.005 per 1,000 in a region
# and $0.01 in a multi-region, Class B (gets) $0.0004 per 1,000 (cloud.google.com/storage/pricing).
# We use the multi-region figure whatever the bucket.
GCS_PAGE = "cloud.google.com/storage/pricing#operations-pricing"
CLASS_A_USD = Decimal("0.01") / 1000
CLASS_B_USD = Decimal("0.0004") / 1000
# Data transfer from Cloud Storage and between regions (cloud.google.com/storage/pricing#network-pricing,
# cloud.google.com/vpc/network-pricing#vpc-pricing): between regions of one continent $0.02/GB,
# between continents up to $0.15/GB (Oceania), to the internet up to $0.23/GB (China; $0.12 to
# the Americas and EMEA). Within one region, or a US multi-region bucket and a us-* VM: free.
TRANSFER_PAGE = "cloud.google.com/storage/pricing#network-pricing"
SAME_CONTINENT_USD_PER_GB = Decimal("0.02")
OTHER_CONTINENT_USD_PER_GB = Decimal("0.15")
INTERNET_USD_PER_GB = Decimal("0.23")

# Operations an hour, upper bounds. The VM syncs its run directory every SYNC_EVERY_S: one
# bucket get (B), one object listing (A) and the changed files (A: the ledger, run.json, the
# trials being written, logs; 10 at most). The launcher polls every LAUNCHER_POLL_S
# (budgetft.cloud.watch.POLL_SECONDS): one listing of the trials (A) and at most 8 small reads
# (B: phase, ledger, exit code, changed trials).
UPLOADS_PER_SYNC = 10
LAUNCHER_POLL_S = 20
READS_PER_POLL = 8
# Volumes, GB. The VM's downloads through NAT: its Python packages (the image has PyTorch) and
# the data set; plus the model's weights, at most 4 bytes a parameter. Its uploads while it runs:
# the changed files every minute, 0.1 GB an hour at most for a run's records. Its results: the
# records plus each trial's kept weights (adapters: ~10% of a model; full fine-tunes: ~4 models).
PACKAGES_GB = Decimal("1.0")
DATA_GB = Decimal("0.5")
SYNC_GB_PER_HOUR = Decimal("0.1")
RECORDS_GB = Decimal("0.05")

CONTINENTS = (("us", "na"), ("northamerica", "na"), ("nam", "na"), ("europe", "eu"), ("eu", "eu"), ("eur", "eu"),
              ("asia", "asia"), ("australia", "oc"), ("southamerica", "sa"), ("me-", "me"), ("africa", "af"))


@dataclass(frozen=True)
class Term:
    what: str
    usd: Decimal  # per hour for an hourly term, in all for a one-off
    source: str
    category: str = "overhead"  # the ledger category a one-off is charged under


@dataclass(frozen=True)
class SideCosts:
    hourly: tuple[Term, ...] = ()
    one_offs: tuple[Term, ...] = ()

    @property
    def usd_per_hour(self) -> Decimal:
        return round_up(sum((t.usd for t in self.hourly), Decimal(0)), RATE_RESOLUTION)

    @property
    def one_off_usd(self) -> Decimal:
        return sum((t.usd for t in self.one_offs), Decimal(0))

    def describe(self) -> str:
        parts = [f"{t.what} ${t.usd:.4f}/h" for t in self.hourly] + [f"{t.what} ${t.usd:.4f}" for t in self.one_offs]
        return "; ".join(parts) + f" (list prices taken {TAKEN})"


def gcs_operations_usd_per_hour() -> Decimal:
    syncs, polls = Decimal(3600) / SYNC_EVERY_S, Decimal(3600) / LAUNCHER_POLL_S
    class_a = syncs * (1 + UPLOADS_PER_SYNC) + polls
    class_b = syncs + polls * READS_PER_POLL
    return round_up(class_a * CLASS_A_USD + class_b * CLASS_B_USD, Decimal("0.0001"))


def continent(location: str) -> str:
    loc = location.lower()
    return next((c for prefix, c in CONTINENTS if loc.startswith(prefix)), "?")


def transfer_usd_per_gb(bucket_location: str | None, region: str) -> Decimal:
    """Between the VM's region and the bucket: free in the same place, else by continent."""
    if not bucket_location:
        return Decimal(0)  # unknown (a dry run): assumed in the VM's region; preflight reads it
    loc = bucket_location.lower()
    if loc == region or (loc == "us" and region.startswith("us-")):
        return Decimal(0)
    return SAME_CONTINENT_USD_PER_GB if continent(loc) == continent(region) != "?" else OTHER_CONTINENT_USD_PER_GB


def model_gb(params: float) -> Decimal:
    return Decimal(math.ceil(params * 4 / 1e7)) / 100  # 4 bytes a parameter, rounded up to 0.01 GB


def results_gb(params: float, full_finetune: bool) -> Decimal:
    return RECORDS_GB + model_gb(params) * (4 if full_finetune else Decimal("0.1"))


def side_costs(instance, *, external_ip: bool = True, bucket_location: str | None = None, model_params: float = 0.0, full_finetune: bool = False) -> SideCosts:
    """The terms beside the catalogue price for one VM of `instance`, for a bucket in
    `bucket_location` (None: assumed in the VM's region)."""
    hourly, one_offs = [], []
    if external_ip:
        hourly.append(Term("external IPv4 address", IPV4_USD_PER_HOUR, f"{IPV4_PAGE}, taken {TAKEN}"))
    else:
        hourly.append(Term("Cloud NAT gateway and its address", NAT_USD_PER_VM_HOUR, f"{NAT_PAGE}, taken {TAKEN}"))
        through_nat = PACKAGES_GB + DATA_GB + model_gb(model_params)
        one_offs.append(Term(f"Cloud NAT processing of ~{through_nat} GB of downloads", round_up(through_nat * NAT_USD_PER_GB), f"{NAT_PAGE}, taken {TAKEN}"))
    hourly.append(Term("Cloud Storage operations", gcs_operations_usd_per_hour(), f"{GCS_PAGE}, taken {TAKEN}"))
    per_gb = transfer_usd_per_gb(bucket_location, instance.region)
    if per_gb > 0:
        hourly.append(Term(f"uploads to the bucket in {bucket_location}", round_up(SYNC_GB_PER_HOUR * per_gb), f"{TRANSFER_PAGE}, taken {TAKEN}"))
    results = results_gb(model_params, full_finetune)
    one_offs.append(Term(
        f"~{results} GB of results to this machine" + (f" (from {bucket_location})" if bucket_location else ""),
        round_up(results * (per_gb + INTERNET_USD_PER_GB)), f"{TRANSFER_PAGE}, taken {TAKEN}", "upload",
    ))
    return SideCosts(tuple(hourly), tuple(one_offs))
