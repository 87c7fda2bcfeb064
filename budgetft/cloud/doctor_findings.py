"""What `budgetft doctor` is asked to check, and what it found: the checks, one line each, and
the facts a launch reuses so it asks the cloud nothing twice."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from budgetft.cloud.provider import RegionInfo
from budgetft.doctor_local import Check
from budgetft.money.catalog import Instance


@dataclass
class DoctorRequest:
    """What the checks are for: a run's plan, or `budgetft doctor`'s options."""

    project: str | None = None
    bucket: str | None = None  # gs:// URL (default gs://PROJECT-budgetft)
    region: str = "us-central1"
    region_given: bool = False  # a regional shortfall fails only when the run may not look elsewhere
    instance: Instance | None = None  # the planned VM; None: any catalogue GPU in the region
    external_ip: bool = True
    max_run_seconds: int | None = None
    hf_token_secret: str | None = None
    disk_gb: int = 50
    runs_dir: Path | None = None
    local: bool = True  # include this machine's checks


@dataclass
class Findings:
    """The checks, and what they learned that a launch uses (so it asks nothing twice)."""

    checks: list[Check] = field(default_factory=list)
    project: str | None = None
    credentials: Any = None
    provider: Any = None  # GcpProvider
    bucket: Any = None  # storage.Bucket
    bucket_location: str | None = None
    image: Any = None  # image.Resolved
    offered: set[str] | None = None
    regions: dict[str, RegionInfo] = field(default_factory=dict)
    apis: dict[str, str] = field(default_factory=dict)  # api -> enabled | disabled

    def add(self, name: str, status: str, detail: str, fix: str = "") -> Check:
        check = Check(name, status, detail, fix)
        self.checks.append(check)
        return check

    @property
    def failed(self) -> list[Check]:
        return [c for c in self.checks if c.status == "fail"]

    def to_json(self) -> dict:
        return {"ok": not self.failed, "checks": [c.to_json() for c in self.checks]}
