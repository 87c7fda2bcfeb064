"""The Compute Engine instance request, as the REST API's JSON. Pure: same inputs, same request,
so `--dry-run` prints exactly what a launch would send."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field

from budgetft.cloud.provider import RUN_LABEL, SESSION_LABEL
from budgetft.money.catalog import Instance

# A Deep Learning VM image family with CUDA, PyTorch and the NVIDIA driver baked in, so the VM
# does not spend paid minutes installing them. Override with BUDGETFT_GCP_IMAGE (any image or
# family URL, e.g. .../images/family/pytorch-2-9-cu129-ubuntu-2204-nvidia-580).
DEFAULT_IMAGE = "projects/deeplearning-platform-release/global/images/family/pytorch-2-7-cu128-ubuntu-2204-nvidia-570"
IMAGE_ENV = "BUDGETFT_GCP_IMAGE"
# The VM's identity: a service account that may only read and write objects in the results
# bucket (infra/gcp/README.md creates it). Override with BUDGETFT_GCP_SERVICE_ACCOUNT.
SERVICE_ACCOUNT_ENV = "BUDGETFT_GCP_SERVICE_ACCOUNT"
SERVICE_ACCOUNT_NAME = "budgetft-vm"
# OAuth scope: Cloud Storage read/write only. The VM cannot touch Compute, IAM or anything else,
# whatever roles its service account has.
SCOPES = ("https://www.googleapis.com/auth/devstorage.read_write",)

# Zones tried in turn for each catalogue region (Compute Engine's zone names). A live launch uses
# the region's zones as the API lists them; this order is for dry runs and ties.
KNOWN_ZONES = {
    "us-central1": ("us-central1-a", "us-central1-b", "us-central1-c", "us-central1-f"),
    "us-east1": ("us-east1-b", "us-east1-c", "us-east1-d"),
    "us-west1": ("us-west1-a", "us-west1-b", "us-west1-c"),
    "europe-west4": ("europe-west4-a", "europe-west4-b", "europe-west4-c"),
}


def image() -> str:
    return os.environ.get(IMAGE_ENV) or DEFAULT_IMAGE


def service_account(project: str) -> str:
    return os.environ.get(SERVICE_ACCOUNT_ENV) or f"{SERVICE_ACCOUNT_NAME}@{project}.iam.gserviceaccount.com"


def label_value(text: str) -> str:
    """Compute Engine label values: lowercase letters, digits, '-' and '_', at most 63 chars."""
    return re.sub(r"[^a-z0-9_-]", "-", text.lower())[:63]


def instance_name(run_id: str, session: int) -> str:
    """'budgetft-<run>-s<n>': a valid instance name (lowercase, starts with a letter, <= 63)."""
    suffix = f"-s{session}"
    core = re.sub(r"[^a-z0-9-]", "-", run_id.lower()).strip("-")
    core = re.sub(r"-+", "-", core)[: 63 - len("budgetft-") - len(suffix)].rstrip("-")
    return f"budgetft-{core}{suffix}"


def zones_for(region: str, zone: str | None, live: list[str] | None = None) -> list[str]:
    """Zones to try: the one asked for, else the region's (live list first, in our preferred order)."""
    if zone:
        return [zone]
    preferred = list(KNOWN_ZONES.get(region, ()))
    if live:
        return [z for z in preferred if z in live] + sorted(z for z in live if z not in preferred)
    return preferred or [f"{region}-a"]


def region_of(zone: str) -> str:
    return zone.rsplit("-", 1)[0]


@dataclass(frozen=True)
class VmSpec:
    name: str
    zone: str
    instance: Instance
    max_run_seconds: int
    startup_script: str
    service_account: str
    image: str = DEFAULT_IMAGE
    labels: dict[str, str] = field(default_factory=dict)


def labels(run_id: str, session: int, job_name: str) -> dict[str, str]:
    return {RUN_LABEL: label_value(run_id), SESSION_LABEL: str(session), "budgetft-job": label_value(job_name)}


def instance_request(spec: VmSpec) -> dict:
    inst, zone = spec.instance, spec.zone
    request: dict = {
        "name": spec.name,
        "machineType": f"zones/{zone}/machineTypes/{inst.machine}",
        "labels": dict(spec.labels),
        "disks": [
            {
                "boot": True,
                "autoDelete": True,  # the disk goes with the VM: nothing is left behind
                "initializeParams": {
                    "sourceImage": spec.image,
                    "diskSizeGb": str(inst.disk_gb),
                    "diskType": f"zones/{zone}/diskTypes/{inst.disk_type}",
                },
            }
        ],
        "networkInterfaces": [
            {
                "network": "global/networks/default",
                # An ephemeral public address: the VM installs from PyPI and downloads from the hub.
                "accessConfigs": [{"name": "External NAT", "type": "ONE_TO_ONE_NAT"}],
            }
        ],
        "serviceAccounts": [{"email": spec.service_account, "scopes": list(SCOPES)}],
        "scheduling": {
            # GPU VMs cannot live-migrate; and a restarted VM would rerun the job on our money.
            "onHostMaintenance": "TERMINATE",
            "automaticRestart": False,
            "provisioningModel": "SPOT" if inst.spot else "STANDARD",
            # The hard end of life, enforced by Compute Engine whatever happens to us: the VM is
            # deleted (with its disk) this many seconds after it starts.
            "maxRunDuration": {"seconds": str(spec.max_run_seconds)},
            "instanceTerminationAction": "DELETE",
        },
        "metadata": {
            "items": [
                {"key": "startup-script", "value": spec.startup_script},
                # Images without a baked-in driver install it on first boot when asked to.
                {"key": "install-nvidia-driver", "value": "True"},
            ]
        },
    }
    # N1 machines take attached GPUs; g2/a2/a3 machine types come with theirs.
    if inst.gpu and inst.gpus_usd_per_hour > 0:
        request["guestAccelerators"] = [
            {"acceleratorType": f"zones/{zone}/acceleratorTypes/{inst.gpu}", "acceleratorCount": inst.gpu_count}
        ]
    return request
