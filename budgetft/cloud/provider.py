"""The cloud interface the launcher talks to. A provider is stateless: every call names the zone
and instance it is about, so a crashed launcher, `budgetft status` and `budgetft down` can all
pick up where anything left off from the cloud's own records (labels carry the run id)."""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from datetime import datetime, timezone

from budgetft.cloud.errors import CloudError

# Labels every budgetft VM carries: `budgetft-run` = the run id, so VMs are found by run.
RUN_LABEL = "budgetft-run"
SESSION_LABEL = "budgetft-session"  # 1 for the first VM of a run, 2 for its first --resume, ...

# Instance states (Compute Engine's names). A VM is billed for CPU/GPU from RUNNING until it is
# TERMINATED (so STOPPING counts); PROVISIONING and STAGING, before it runs, are not billed
# ("Instance uptime", cloud.google.com/compute/vm-instance-pricing).
LIVE_STATES = ("PROVISIONING", "STAGING", "RUNNING", "STOPPING", "REPAIRING", "SUSPENDING")
NOT_YET_BILLED = ("PROVISIONING", "STAGING")
STOPPED_STATES = ("TERMINATED", "STOPPED", "SUSPENDED")


@dataclass(frozen=True)
class VM:
    """What the launcher needs to know about one instance."""

    name: str
    zone: str
    status: str
    labels: dict[str, str] = field(default_factory=dict)
    created: datetime | None = None  # UTC
    last_start: datetime | None = None
    last_stop: datetime | None = None
    machine_type: str = ""
    gpu: str | None = None
    gpu_count: int = 0
    spot: bool = False
    disk_gb: int = 0
    max_run_seconds: int | None = None

    @property
    def run_id(self) -> str | None:
        return self.labels.get(RUN_LABEL)

    @property
    def region(self) -> str:
        return self.zone.rsplit("-", 1)[0]

    def age_seconds(self, now: datetime | None = None) -> float:
        if self.created is None:
            return 0.0
        return max(0.0, ((now or datetime.now(timezone.utc)) - self.created).total_seconds())

    def billed_seconds(self, now: datetime | None = None) -> float:
        """Seconds of CPU/GPU time so far: from the (last) start, when it entered RUNNING, to its
        stop, or to now while it runs. None before it runs (PROVISIONING, STAGING). Without a
        start time the creation time stands in: an upper bound."""
        if self.status in NOT_YET_BILLED and self.last_start is None:
            return 0.0
        start = self.last_start or self.created
        if start is None:
            return 0.0
        end = self.last_stop if self.status in STOPPED_STATES and self.last_stop else (now or datetime.now(timezone.utc))
        return max(0.0, (end - start).total_seconds())


@dataclass(frozen=True)
class VmEvent:
    """Something that happened to an instance, from its zone's operations: why a VM ended."""

    kind: str  # preempted | deleted | stopped | guest-shutdown | created | other
    operation_type: str  # Compute Engine's, e.g. compute.instances.preempted
    time: datetime | None
    user: str = ""  # who asked (an e-mail), or "system" for Compute Engine's own events


@dataclass(frozen=True)
class ImageInfo:
    """A boot image, as images.get / images.getFromFamily describe it."""

    name: str
    self_link: str
    family: str
    disk_size_gb: int  # the smallest boot disk it fits on
    status: str  # READY | PENDING | FAILED | DELETING
    deprecation: str = ""  # "" (active) | DEPRECATED | OBSOLETE | DELETED
    obsolete_after: str = ""  # RFC 3339, when DEPRECATED images say so
    replacement: str = ""
    created: str = ""


@dataclass(frozen=True)
class RegionInfo:
    name: str
    zones: list[str]
    # metric -> (limit, usage), e.g. "NVIDIA_V100_GPUS" -> (1.0, 0.0)
    quotas: dict[str, tuple[float, float]] = field(default_factory=dict)


class Provider(ABC):
    """Create, inspect and delete VMs; wait for the cloud's long-running operations."""

    name: str = "cloud"

    @abstractmethod
    def region(self, region: str) -> RegionInfo:
        """The region's zones (in the cloud's order) and quotas. Also the first call a launch
        makes, so it is where missing credentials or a disabled API show up."""

    @abstractmethod
    def create(self, zone: str, request: dict, request_id: str | None = None) -> str:
        """Start creating an instance from a request (the cloud's JSON form); return the
        operation to wait for. `request_id` (a UUID) makes a retried insert act once. Raises
        ZoneUnavailable, QuotaExceeded, ..."""

    @abstractmethod
    def wait(self, zone: str, operation: str, timeout_s: float = 300.0) -> None:
        """Block until the operation is done; raise its error as a CloudError."""

    @abstractmethod
    def get(self, zone: str, name: str) -> VM | None:
        """The instance, or None when it does not exist (deleted, preempted and deleted)."""

    @abstractmethod
    def list(self, run_id: str | None = None) -> list[VM]:
        """budgetft's VMs in every zone (those with the run label), optionally of one run."""

    @abstractmethod
    def delete(self, zone: str, name: str) -> str | None:
        """Start deleting an instance; return the operation, or None if it was already gone."""

    # -- what a launch checks before it creates anything; a provider that cannot tell answers None

    def offered_zones(self, gpu: str | None, machine: str) -> set[str] | None:
        """Zones that offer this GPU and machine type, or None when unknown."""
        return None

    def image(self, ref: str) -> ImageInfo | None:
        """The image a reference (an image or an image family URL) resolves to now."""
        return None

    def events(self, zone: str, name: str) -> list[VmEvent]:
        """What happened to an instance (its zone's operations), oldest first."""
        return []

    def delete_and_confirm(self, zone: str, name: str, timeout_s: float = 300.0) -> None:
        """Delete, wait, and check the instance is really gone."""
        op = self.delete(zone, name)
        if op is not None:
            self.wait(zone, op, timeout_s)
        if self.get(zone, name) is not None:
            raise CloudError(f"{name} in {zone} still exists after its deletion finished; delete it with `budgetft down`")
