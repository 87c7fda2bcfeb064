"""The Compute Engine instance request, as the REST API's JSON. Pure: same inputs, same request,
so `--dry-run` prints exactly what a launch would send, and a multi-VM launcher builds one per VM."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field

from budgetft.cloud.image import DEFAULT_IMAGE
from budgetft.cloud.provider import RUN_LABEL, SESSION_LABEL
from budgetft.money.catalog import Instance

# The VM's identity: a service account that may only use the results bucket and delete itself
# (infra/gcp/README.md creates it). Override with BUDGETFT_GCP_SERVICE_ACCOUNT.
SERVICE_ACCOUNT_ENV = "BUDGETFT_GCP_SERVICE_ACCOUNT"
SERVICE_ACCOUNT_NAME = "budgetft-vm"
# The VPC network the VM joins, and its subnet in the region (an auto-mode network names its
# subnets after itself; a custom-mode one needs BUDGETFT_GCP_SUBNET).
NETWORK_ENV, SUBNET_ENV = "BUDGETFT_GCP_NETWORK", "BUDGETFT_GCP_SUBNET"
DEFAULT_NETWORK = "default"
# OAuth scopes: Cloud Storage read/write, and Compute so the VM can delete itself when done
# (its service account's IAM roles narrow both: one bucket, and only instances named budgetft-*).
# Secret Manager accepts only cloud-platform, so a VM that reads a hub token gets that scope,
# still narrowed by IAM to the one secret.
STORAGE_SCOPE = "https://www.googleapis.com/auth/devstorage.read_write"
COMPUTE_SCOPE = "https://www.googleapis.com/auth/compute"
CLOUD_PLATFORM_SCOPE = "https://www.googleapis.com/auth/cloud-platform"
SCOPES = (STORAGE_SCOPE, COMPUTE_SCOPE)

# Zones tried in turn for each catalogue region (Compute Engine's zone names). A live launch uses
# the region's zones as the API lists them; this order is for dry runs and ties.
KNOWN_ZONES = {
    "us-central1": ("us-central1-a", "us-central1-b", "us-central1-c", "us-central1-f"),
    "us-east1": ("us-east1-b", "us-east1-c", "us-east1-d"),
    "us-west1": ("us-west1-a", "us-west1-b", "us-west1-c"),
    "europe-west4": ("europe-west4-a", "europe-west4-b", "europe-west4-c"),
}


def service_account(project: str) -> str:
    return os.environ.get(SERVICE_ACCOUNT_ENV) or f"{SERVICE_ACCOUNT_NAME}@{project}.iam.gserviceaccount.com"


def network() -> str:
    return os.environ.get(NETWORK_ENV) or DEFAULT_NETWORK


def subnet() -> str | None:
    return os.environ.get(SUBNET_ENV) or None


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
    instance: Instance  # priced with the boot disk the request asks for (instance.disk_gb)
    max_run_seconds: int
    startup_script: str
    service_account: str
    image: str = DEFAULT_IMAGE  # the exact image a launch resolved (its selfLink path), or a family in a dry run
    labels: dict[str, str] = field(default_factory=dict)
    external_ip: bool = True
    network: str = DEFAULT_NETWORK
    subnet: str | None = None
    scopes: tuple[str, ...] = SCOPES


def labels(run_id: str, session: int, job_name: str) -> dict[str, str]:
    return {RUN_LABEL: label_value(run_id), SESSION_LABEL: str(session), "budgetft-job": label_value(job_name)}


def instance_request(spec: VmSpec) -> dict:
    inst, zone = spec.instance, spec.zone
    nic: dict = {"network": f"global/networks/{spec.network}"}
    if spec.subnet:
        nic["subnetwork"] = f"regions/{region_of(zone)}/subnetworks/{spec.subnet}"
    if spec.external_ip:
        # An ephemeral public address: the VM installs from PyPI and downloads from the hub. No
        # inbound port is opened. Without it (--no-external-ip) the subnet's Private Google
        # Access reaches Cloud Storage and a Cloud NAT the internet.
        nic["accessConfigs"] = [{"name": "External NAT", "type": "ONE_TO_ONE_NAT"}]
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
        "networkInterfaces": [nic],
        "serviceAccounts": [{"email": spec.service_account, "scopes": list(spec.scopes)}],
        "scheduling": {
            # GPU VMs cannot live-migrate; and a restarted VM would rerun the job on our money.
            "onHostMaintenance": "TERMINATE",
            "automaticRestart": False,
            "provisioningModel": "SPOT" if inst.spot else "STANDARD",
            # The hard end of life, enforced by Compute Engine whatever happens to us: the VM is
            # deleted (with its disk) this many seconds after it starts running.
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
