"""One VM's tries (budgetft.cloud.failover.Attempts): what is checked and charged before each
placement, the request for each zone, and the charge for a start that failed after the cloud
began billing it.

Money, in the order it happens:
  1. before the first create in a placement: that placement's estimate (its price, side costs
     and lifetime for the money left) is charged to the ledger: the VM's overheads the first
     time, and only the difference when a later placement is dearer (a cheaper one charges
     nothing: the ledger over-counts, never under-counts);
  2. before every create: the ledger goes to the bucket, so the VM starts from every charge;
  3. a create that fails but leaves a billed instance: that bill is charged before anything
     else happens (before the instance is deleted, before the next zone is tried).
Keys: `vm<n>:<category>` for the VM's own seconds (what reconciling its bill later counts),
`vm<n>.<what>` for the rest (side-cost one-offs, top-ups, failed starts).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal
from typing import Callable

from budgetft.cloud import request as req
from budgetft.cloud.collect import failed_start_usd
from budgetft.cloud.errors import REGION, NetworkMissing, NotFound
from budgetft.cloud.estimate import Line, VmEstimate, estimate, money
from budgetft.cloud.failover import Placement, PlacementUnusable, Unaffordable
from budgetft.cloud.gcp import GcpProvider
from budgetft.cloud.plan import LaunchPlan
from budgetft.cloud.provider import VM, RegionInfo
from budgetft.cloud.quota import check_quota
from budgetft.cloud.storage import Bucket
from budgetft.money.ledger import Ledger
from budgetft.rundir import LEDGER_FILE


def line_key(session: int, line: Line) -> str:
    return f"vm{session}:{line.category}" if line.seconds else f"vm{session}.{line.key_part}"


@dataclass
class VmAttempts:
    plan: LaunchPlan
    provider: GcpProvider
    bucket: Bucket
    say: Callable[[str], None]
    image_source: str | None = None  # the resolved image's path (None: the plan's family)
    offered: set[str] | None = None  # zones offering the machine and GPU (None: unknown)
    bucket_location: str | None = None
    wheel_sha256: str | None = None
    regions: dict[str, RegionInfo] = field(default_factory=dict)
    keys: list[str] = field(default_factory=list)  # overhead charges made for this VM
    failed: int = 0
    seeded: int = 0  # charges in the ledger the VM was created from
    current: tuple[Placement, VmEstimate] | None = None

    # -- failover.Attempts

    def zones(self, p: Placement) -> list[str]:
        try:
            info = self.regions.get(p.region) or self.provider.region(p.region)
        except NotFound:
            raise PlacementUnusable(f"{p.region}: not a region this project can use") from None
        self.regions[p.region] = info
        est = self.estimate_for(p)
        if not est.enough:
            raise Unaffordable(f"{p.describe()}: {est.refusal(p.instance)}")
        check_quota(info.quotas, p.instance, p.region, est.max_run_seconds)
        if not self.plan.external_ip:
            self._check_private_network(p.region)
        zones = [z for z in req.zones_for(p.region, self.plan.zones[0] if self.plan.zone_given else None, info.zones)]
        if self.plan.zone_given and zones[0] not in info.zones:
            raise NetworkMissing(f"zone {zones[0]} is not in region {p.region} (zones: {', '.join(info.zones)})")
        if self.offered is not None:
            missing = [z for z in zones if z not in self.offered]
            zones = [z for z in zones if z in self.offered]
            if not zones:
                raise PlacementUnusable(f"{p.region}: no zone offers {p.instance.label}" + (f" (not in {', '.join(missing)})" if missing else ""))
        self.charge_overheads(p, est)
        self.current = (p, est)
        return zones

    def request(self, p: Placement, zone: str) -> dict:
        # Estimated again: a failed start in the zone before left less money, so a shorter life.
        est = self.estimate_for(p)
        if not est.enough:
            raise Unaffordable(f"{p.describe()}: after the failed starts, {est.refusal(p.instance)}")
        self.current = (p, est)
        self.upload_ledger()
        script = self.plan.startup_script(price=est.usd_per_hour, wheel_sha256=self.wheel_sha256)
        return self.plan.request(zone, script, instance=p.instance, est=est, image=self.image_source)

    def failed_start(self, p: Placement, zone: str, vm: VM) -> None:
        est = self.estimate_for(p)
        amount = failed_start_usd(est.usd_per_hour, p.instance.disk_usd_per_hour, vm)
        self.failed += 1
        with Ledger(self.plan.run_dir, self.plan.cap) as ledger:
            amount = min(amount, ledger.remaining)
            if amount > 0:
                ledger.charge(amount, "boot", f"cloud VM #{self.plan.session}: a failed start in {zone} ({vm.status}) that Compute Engine bills",
                              key=f"vm{self.plan.session}.failed{self.failed}")
        self.say(f"[yellow]{vm.name} in {zone} was left {vm.status} by the failed start: ${money(amount)} charged for it before deleting it[/]")

    # -- money

    def vm_charges(self) -> Decimal:
        with Ledger(self.plan.run_dir, self.plan.cap) as ledger:
            return sum((c.amount for c in ledger.records if c.key in self.keys), Decimal(0))

    def estimate_for(self, p: Placement) -> VmEstimate:
        """The placement's estimate for the money this VM may use: the cap less everything but
        this VM's own overhead charges (a failed start elsewhere leaves it less)."""
        with Ledger(self.plan.run_dir, self.plan.cap) as ledger:
            others = ledger.spent - sum((c.amount for c in ledger.records if c.key in self.keys), Decimal(0))
        side = self.plan.side_for(p.instance, self.bucket_location)
        return estimate(self.plan.cap - others, p.instance, side)

    def charge_overheads(self, p: Placement, est: VmEstimate) -> None:
        session = self.plan.session
        with Ledger(self.plan.run_dir, self.plan.cap) as ledger:
            if not self.keys:
                for line in est.overheads:
                    key = line_key(session, line)
                    what = f"{line.what} ({line.seconds} s, estimated)" if line.seconds else f"{line.what} (estimated)"
                    ledger.charge(line.usd, line.category, f"cloud VM #{session}: {what}", key=key)
                    self.keys.append(key)
                return
            charged = sum((c.amount for c in ledger.records if c.key in self.keys), Decimal(0))
            more = est.overhead_usd - charged
            if more > 0:
                key = f"vm{session}.topup{sum(1 for k in self.keys if '.topup' in k) + 1}"
                ledger.charge(more, "overhead", f"cloud VM #{session}: {p.describe()} costs more than the placement charged before", key=key)
                self.keys.append(key)

    def upload_ledger(self) -> None:
        with Ledger(self.plan.run_dir, self.plan.cap) as ledger:
            self.seeded = len(ledger.records)
        self.bucket.upload_file(self.plan.run_dir / LEDGER_FILE, f"{self.plan.prefix}/run/{LEDGER_FILE}")

    # -- the network, without an external address

    def _check_private_network(self, region: str) -> None:
        name = req.network()
        sub = self.provider.subnetwork(region, req.subnet() or name)
        problems = []
        if sub is None:
            problems.append(f"no subnet of {name} in {region}")
        elif not sub["private_google_access"]:
            problems.append("Private Google Access is off on its subnet (Cloud Storage unreachable)")
        if not self.provider.nat_routers(region, name):
            problems.append("no Cloud NAT (PyPI and the hub unreachable)")
        if problems:
            raise PlacementUnusable(f"{region} without an external address: {'; '.join(problems)} (infra/gcp/README.md, step 7)", scope=REGION)
