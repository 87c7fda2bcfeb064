"""Where a VM is tried, in what order, and what each failure rules out.

A placement is one (region, provisioning model) with its catalogue price; its zones are tried in
turn. Without --zone or --region every catalogue region that prices the chosen machine and GPU
is a placement, cheapest first (the plan's region first among equal prices); with
--fallback-on-demand the standard (on-demand) placements follow all the Spot ones.

Each failure is scoped (budgetft.cloud.errors): a stockout or UNSUPPORTED_OPERATION rules out
that zone for that provisioning model, a regional quota that region (for Spot only when it was
the PREEMPTIBLE_ quota), a project-wide quota or anything about permissions, policy or the
request the whole cloud. `start_vm` is one VM's walk through the placements; a launcher of
several VMs calls it once per VM with one shared `Blocked`, so a zone out of capacity for the
first VM is not tried again for the second.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from typing import Callable, Protocol

from budgetft.cloud.errors import CLOUD, REGION, CloudError, QuotaExceeded, ZoneUnavailable
from budgetft.cloud.provider import VM, Provider
from budgetft.cloud.request import zones_for
from budgetft.money.catalog import Catalog, Instance
from budgetft.money.errors import CatalogError


@dataclass(frozen=True)
class Placement:
    region: str
    instance: Instance  # priced in `region`, Spot or on-demand
    zones: tuple[str, ...]  # a dry run's guess; a launch's preflight narrows it to live zones offering the shape
    fallback: bool = False  # an on-demand placement after the Spot ones (--fallback-on-demand)

    @property
    def spot(self) -> bool:
        return self.instance.spot

    def describe(self) -> str:
        return f"{self.region} ({self.instance.provisioning}, ${self.instance.usd_per_hour:.4f}/h)"


def placements(
    catalog: Catalog,
    instance: Instance,
    *,
    region: str,
    zone: str | None = None,
    region_given: bool = False,
    fallback_on_demand: bool = False,
) -> list[Placement]:
    """Every placement to try for `instance` (priced in `region`), in order."""
    models = [instance.spot] + ([False] if fallback_on_demand and instance.spot else [])
    out: list[Placement] = []
    for spot in models:
        regions = [region] if (zone or region_given) else catalog.regions()
        found = []
        for r in regions:
            try:
                priced = catalog.instance(instance.machine, instance.gpu, instance.gpu_count if instance.gpus_usd_per_hour > 0 else None,
                                          region=r, spot=spot, disk_type=instance.disk_type or "pd-balanced", disk_gb=instance.disk_gb)
            except (CatalogError, ValueError):
                continue  # this region does not price this shape: not a place to try
            found.append(Placement(r, priced, tuple(zones_for(r, zone)), fallback=spot != instance.spot))
        found.sort(key=lambda p: (p.instance.usd_per_hour, p.region != region, p.region))
        out += found
    return out


@dataclass
class Blocked:
    """What failures so far rule out. Keys carry the provisioning model: a Spot stockout says
    nothing of standard capacity."""

    zones: dict[tuple[str, bool], str] = field(default_factory=dict)
    regions: dict[tuple[str, bool], str] = field(default_factory=dict)
    tried: list[str] = field(default_factory=list)  # every failure, in order, for the final message

    def zone_ok(self, zone: str, spot: bool) -> bool:
        return (zone, spot) not in self.zones

    def region_ok(self, region: str, spot: bool) -> bool:
        return (region, spot) not in self.regions

    def block_zone(self, zone: str, spot: bool, why: str) -> None:
        self.zones[(zone, spot)] = why
        self.tried.append(f"{why} ({'spot' if spot else 'on-demand'})")

    def block_region(self, region: str, spot: bool, exc: QuotaExceeded) -> None:
        # A PREEMPTIBLE_ quota binds Spot VMs; any other regional quota binds both models.
        for model in ([spot] if (exc.metric or "").startswith("PREEMPTIBLE_") else [True, False]):
            self.regions[(region, model)] = str(exc)
        self.tried.append(str(exc))


class Attempts(Protocol):
    """What the launcher does around each try; one VM's implementation of it."""

    def zones(self, placement: Placement) -> list[str]:
        """Before the first create in a placement: check what can be checked (regional quota,
        that the money still buys a run there), charge what must be charged, and return the
        zones to try in order. Raises QuotaExceeded (regional or global) or Unaffordable."""

    def request(self, placement: Placement, zone: str) -> dict:
        """The instance request for this zone (pure)."""

    def failed_start(self, placement: Placement, zone: str, vm: VM) -> None:
        """A failed create left an instance behind: charge what the cloud bills for it."""


class PlacementUnusable(CloudError):
    """This placement cannot work as things are (no zone offers the shape, no private route to
    the internet...); the next one may."""

    def __init__(self, message: str, scope: str = REGION):
        self.scope = scope
        super().__init__(message)


class Unaffordable(PlacementUnusable):
    """The money left does not buy a useful run in this placement (e.g. on-demand after Spot)."""


@dataclass(frozen=True)
class Started:
    placement: Placement
    zone: str


class NoPlacement(CloudError):
    """No placement could start the VM; every failure is in the message."""


def start_vm(provider: Provider, name: str, order: list[Placement], attempts: Attempts, blocked: Blocked, say: Callable[[str], None]) -> Started:
    """Create the VM in the first placement and zone that will take it. Nothing is left behind
    by a failed try; a cloud-wide failure is raised at once."""
    announced = False
    for p in order:
        if not blocked.region_ok(p.region, p.spot):
            continue
        try:
            zones = [z for z in attempts.zones(p) if blocked.zone_ok(z, p.spot)]
        except QuotaExceeded as exc:
            if exc.scope == CLOUD:
                raise
            blocked.block_region(p.region, p.spot, exc)
            say(f"[yellow]{exc}[/]; trying elsewhere")
            continue
        except PlacementUnusable as exc:
            blocked.tried.append(str(exc))
            say(f"[yellow]{exc}[/]")
            continue
        if p.fallback and not announced:
            announced = True
            say(f"[yellow]no Spot VM could start; falling back to on-demand, first in {p.describe()} (--fallback-on-demand)[/]")
        for zone in zones:
            say(f"create   {name} in {zone} ({p.instance.label}, {p.instance.provisioning})")
            try:
                op = provider.create(zone, attempts.request(p, zone), str(uuid.uuid4()))
                provider.wait(zone, op)
                return Started(p, zone)
            except ZoneUnavailable as exc:
                _leftover(provider, attempts, p, zone, name)
                blocked.block_zone(zone, p.spot, str(exc))
                say(f"[yellow]{exc}[/]; trying the next zone")
            except QuotaExceeded as exc:
                _leftover(provider, attempts, p, zone, name)
                if exc.scope == CLOUD:
                    raise
                blocked.block_region(p.region, p.spot, exc)
                say(f"[yellow]{exc}[/]; trying the next region")
                break
            except BaseException:
                _leftover(provider, attempts, p, zone, name)
                raise
    raise NoPlacement(
        "no zone could start the VM now; tried: " + "; ".join(blocked.tried or ["no placement (see above)"])
        + ". Fix: try again later, another --gpu"
        + (", --fallback-on-demand to let a Spot run fall back to a standard VM" if any(p.spot for p in order) and not any(p.fallback for p in order) else "")
        + ", or drop --zone/--region so every catalogue region is tried. Nothing was left running."
    )


def _leftover(provider: Provider, attempts: Attempts, p: Placement, zone: str, name: str) -> None:
    """A failed insert can leave an instance record behind (created, then failed): what the
    cloud bills for it is charged first, then it is deleted."""
    try:
        vm = provider.get(zone, name)
    except CloudError:
        return
    if vm is None:
        return
    attempts.failed_start(p, zone, vm)
    provider.delete_and_confirm(zone, name)





def resized(p: Placement, catalog: Catalog, disk_gb: int) -> Placement:
    """The placement with a bigger boot disk, priced again (an image may need more than planned)."""
    inst = p.instance
    priced = catalog.instance(inst.machine, inst.gpu, inst.gpu_count if inst.gpus_usd_per_hour > 0 else None,
                              region=p.region, spot=inst.spot, disk_type=inst.disk_type or "pd-balanced", disk_gb=disk_gb)
    return Placement(p.region, priced, p.zones, p.fallback)
