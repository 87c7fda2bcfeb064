"""Compute Engine resources in their REST JSON form, read into the provider's dataclasses."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from budgetft.cloud.provider import VM, ImageInfo, VmEvent

# Operation types that say how an instance ended (zoneOperations.list; a system event's
# `user` is "system"). Preemption: cloud.google.com/compute/docs/instances/create-use-spot#detect-preemption.
EVENT_KINDS = {
    "compute.instances.preempted": "preempted",
    "delete": "deleted",
    "stop": "stopped",
    "compute.instances.guestTerminate": "guest-shutdown",
    "insert": "created",
}


def parse_time(text: str | None) -> datetime | None:
    if not text:
        return None
    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None


def last_part(url: str) -> str:
    return url.rsplit("/", 1)[-1] if url else ""


def vm_from_json(data: dict[str, Any]) -> VM:
    """A VM from an instance resource in its REST JSON form."""
    sched = data.get("scheduling") or {}
    accels = data.get("guestAccelerators") or []
    disks = data.get("disks") or []
    boot = next((d for d in disks if d.get("boot")), disks[0] if disks else {})
    duration = (sched.get("maxRunDuration") or {}).get("seconds")
    return VM(
        name=data.get("name", ""),
        zone=last_part(data.get("zone", "")),
        status=data.get("status", "UNKNOWN"),
        labels=dict(data.get("labels") or {}),
        created=parse_time(data.get("creationTimestamp")),
        last_start=parse_time(data.get("lastStartTimestamp")),
        last_stop=parse_time(data.get("lastStopTimestamp")),
        machine_type=last_part(data.get("machineType", "")),
        gpu=last_part(accels[0].get("acceleratorType", "")) if accels else None,
        gpu_count=int(accels[0].get("acceleratorCount", 0)) if accels else 0,
        spot=sched.get("provisioningModel") == "SPOT" or bool(sched.get("preemptible")),
        disk_gb=int(boot.get("diskSizeGb") or (boot.get("initializeParams") or {}).get("diskSizeGb") or 0),
        max_run_seconds=int(duration) if duration else None,
    )


def image_from_json(data: dict[str, Any]) -> ImageInfo:
    dep = data.get("deprecated") or {}
    return ImageInfo(
        name=data.get("name", ""),
        self_link=data.get("selfLink", ""),
        family=data.get("family", ""),
        disk_size_gb=int(data.get("diskSizeGb") or 0),
        status=data.get("status", ""),
        deprecation="" if dep.get("state") in (None, "", "ACTIVE") else dep["state"],
        obsolete_after=dep.get("obsolete") or dep.get("deleted") or "",
        replacement=dep.get("replacement", ""),
        created=data.get("creationTimestamp", ""),
    )


def event_from_json(data: dict[str, Any]) -> VmEvent:
    kind = data.get("operationType", "")
    when = parse_time(data.get("endTime") or data.get("startTime") or data.get("insertTime"))
    return VmEvent(EVENT_KINDS.get(kind, "other"), kind, when, data.get("user", ""))
