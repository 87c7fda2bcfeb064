"""Compute Engine behind the Provider interface, with google-cloud-compute over REST.

Client construction is injectable (`endpoint`, `credentials`) so tests drive the real client
against a fake API on 127.0.0.1. We use the `*_unary` calls and poll operations with our own
ZoneOperationsClient: the library's ExtendedOperation builds its own operations client without
our endpoint, which would wait on the real API instead of the one we were pointed at.

Every call goes through `_call`: a 429, a 5xx, rateLimitExceeded or a dropped connection is
retried with exponential backoff (budgetft.cloud.retry); inserts and deletes carry a requestId,
so a retried one acts once. Errors that remain become budgetft's own (budgetft.cloud.gcp_errors).
"""

from __future__ import annotations

import json
import os
import re
import time
import uuid
from datetime import datetime, timezone
from typing import Any, Callable

from budgetft.cloud.errors import CloudError, NetworkMissing, NoCredentials, NoProject, NotFound, first_line
from budgetft.cloud.gcp_errors import classify, is_transient, problem_from_http, problem_from_operation
from budgetft.cloud.gcp_json import event_from_json, image_from_json, last_part, vm_from_json
from budgetft.cloud.provider import RUN_LABEL, VM, ImageInfo, Provider, RegionInfo, VmEvent
from budgetft.cloud.retry import Backoff

# Imported inside functions: google: the [gcp] extra, installed only where needed; compute_v1
# alone takes seconds to import.

# BUDGETFT_GCP_ENDPOINT points every Google API call elsewhere (a fake API in tests, a private
# endpoint); with it set and no credentials given, calls are made anonymously.
ENDPOINT_ENV = "BUDGETFT_GCP_ENDPOINT"
# The project's quota that caps GPUs in all regions together (0 in new projects).
GLOBAL_GPU_METRIC = "GPUS_ALL_REGIONS"

# Quota metric per GPU (Compute Engine's regional quota names); Spot VMs (and standard VMs with
# a short maxRunDuration, see budgetft.cloud.quota) may draw on the PREEMPTIBLE_ variant.
GPU_QUOTA_METRICS = {
    "nvidia-tesla-t4": "NVIDIA_T4_GPUS",
    "nvidia-tesla-p100": "NVIDIA_P100_GPUS",
    "nvidia-tesla-v100": "NVIDIA_V100_GPUS",
    "nvidia-l4": "NVIDIA_L4_GPUS",
    "nvidia-tesla-a100": "NVIDIA_A100_GPUS",
    "nvidia-a100-80gb": "NVIDIA_A100_80GB_GPUS",
    "nvidia-h100-80gb": "NVIDIA_H100_GPUS",
    "nvidia-h200-141gb": "NVIDIA_H200_GPUS",
    "nvidia-b200": "NVIDIA_B200_GPUS",
}
POLL_SECONDS = 2.0  # between polls of an operation that operations.wait returned unfinished

_CLIENTS = {
    "instances": "InstancesClient",
    "operations": "ZoneOperationsClient",
    "regions": "RegionsClient",
    "projects": "ProjectsClient",
    "images": "ImagesClient",
    "accelerators": "AcceleratorTypesClient",
    "machines": "MachineTypesClient",
    "networks": "NetworksClient",
    "subnetworks": "SubnetworksClient",
    "routers": "RoutersClient",
}


def _pause(seconds: float) -> None:
    """Every wait of this module (backoff, operation polls): one place for tests to skip them."""
    time.sleep(seconds)


class GcpProvider(Provider):
    name = "gcp"

    def __init__(self, project: str, *, endpoint: str | None = None, credentials: Any = None):
        if not project:
            raise NoProject()
        self.project = project
        self.endpoint = endpoint if endpoint is not None else os.environ.get(ENDPOINT_ENV) or None
        self._credentials = credentials
        self._clients: dict[str, Any] = {}
        self._project_quotas: dict[str, tuple[float, float]] | None = None
        # Told about each retry ("Compute Engine answered 503; retrying in 2.1 s"); the launcher
        # points it at its console.
        self.notify: Callable[[str], None] | None = None

    # -- clients and calls

    def _client(self, kind: str):
        if kind in self._clients:
            return self._clients[kind]
        from google.api_core.client_options import ClientOptions
        from google.cloud import compute_v1

        credentials = self._credentials
        if credentials is None and self.endpoint:
            from google.auth.credentials import AnonymousCredentials

            credentials = AnonymousCredentials()
        if credentials is None:
            credentials = default_credentials()[0]
        options = ClientOptions(api_endpoint=self.endpoint) if self.endpoint else None
        client = getattr(compute_v1, _CLIENTS[kind])(credentials=credentials, transport="rest", client_options=options)
        self._clients[kind] = client
        return client

    def _call(self, where: str | None, fn, *args, **kwargs):
        """fn(*args, **kwargs), retried while it fails for a passing reason; errors mapped."""
        from google.api_core import exceptions as gexc
        from google.auth import exceptions as auth_exc
        from requests import exceptions as req_exc

        def transient(exc: BaseException) -> bool:
            if isinstance(exc, (req_exc.ConnectionError, req_exc.Timeout)):
                return True
            return isinstance(exc, gexc.GoogleAPICallError) and is_transient(problem_from_http(exc))

        def retrying(exc: BaseException, pause: float) -> None:
            if self.notify is not None:
                self.notify(f"[yellow]Compute Engine: {first_line(exc, 160)}; retrying in {pause:.1f} s[/]")

        backoff = Backoff(sleep=lambda s: _pause(s))
        try:
            return backoff.run(lambda: fn(*args, **kwargs), transient, retrying)
        except auth_exc.DefaultCredentialsError as exc:
            raise NoCredentials(first_line(exc)) from None
        except auth_exc.RefreshError as exc:
            raise NoCredentials(f"the stored credentials were refused: {exc}") from None
        except gexc.GoogleAPICallError as exc:
            raise classify(problem_from_http(exc), where, self.project) from None
        except (req_exc.ConnectionError, req_exc.Timeout) as exc:
            raise CloudError(f"cannot reach Compute Engine ({first_line(exc, 160)}) after {backoff.attempts} tries over {backoff.waited_s:.0f} s. Fix: check this machine's network, then try again") from None

    # -- regions, quotas and what zones offer

    def project_quotas(self) -> dict[str, tuple[float, float]]:
        """The project-wide quotas (GPUS_ALL_REGIONS, ...): metric -> (limit, usage)."""
        if self._project_quotas is None:
            project = self._call(None, self._client("projects").get, project=self.project)
            self._project_quotas = {q.metric: (float(q.limit), float(q.usage)) for q in project.quotas}
        return self._project_quotas

    def region(self, region: str) -> RegionInfo:
        data = self._call(None, self._client("regions").get, project=self.project, region=region)
        quotas = {q.metric: (float(q.limit), float(q.usage)) for q in data.quotas}
        # GPUS_ALL_REGIONS is a project-wide cap (0 in new projects) that no region can lift.
        quotas.update({m: v for m, v in self.project_quotas().items() if m == GLOBAL_GPU_METRIC})
        return RegionInfo(region, [last_part(z) for z in data.zones], quotas)

    def offered_zones(self, gpu: str | None, machine: str) -> set[str] | None:
        """Zones that offer both (one aggregated list each, filtered by name on the server)."""
        machines = self._zones_listing("machines", machine)
        if not gpu:
            return machines
        return machines & self._zones_listing("accelerators", gpu)

    def _zones_listing(self, kind: str, name: str) -> set[str]:
        pages = self._call(None, self._client(kind).aggregated_list, request={"project": self.project, "filter": f"name = {name}"})
        zones = set()
        for scope, listing in self._call(None, list, pages):
            items = getattr(listing, "accelerator_types", None) or getattr(listing, "machine_types", None) or []
            if any(item.name == name for item in items):
                zones.add(last_part(scope))
        return zones

    # -- images and the network

    def image(self, ref: str) -> ImageInfo | None:
        """images.getFromFamily for a family URL, images.get for an image URL; None if missing."""
        from google.cloud import compute_v1

        found = re.search(r"projects/([^/]+)/global/images/(family/)?([^/]+)$", ref)
        if not found:
            raise CloudError(f"{ref!r} is not an image reference; write projects/PROJECT/global/images/family/FAMILY or .../images/NAME")
        project, is_family, name = found.groups()
        client = self._client("images")
        try:
            if is_family:
                image = self._call(None, client.get_from_family, project=project, family=name)
            else:
                image = self._call(None, client.get, project=project, image=name)
        except NotFound:
            return None
        return image_from_json(json.loads(compute_v1.Image.to_json(image)))

    def network(self, name: str) -> dict | None:
        """{'auto_subnets': bool} for a VPC network, or None when the project has none of that name."""
        try:
            net = self._call(None, self._client("networks").get, project=self.project, network=name)
        except (NotFound, NetworkMissing):
            return None
        return {"auto_subnets": bool(net.auto_create_subnetworks), "subnets": [s for s in net.subnetworks]}

    def subnetwork(self, region: str, name: str) -> dict | None:
        try:
            sub = self._call(None, self._client("subnetworks").get, project=self.project, region=region, subnetwork=name)
        except (NotFound, NetworkMissing):
            return None
        return {"private_google_access": bool(sub.private_ip_google_access), "network": last_part(sub.network)}

    def nat_routers(self, region: str, network: str) -> list[str]:
        """Cloud Routers of `network` in `region` that carry a Cloud NAT gateway."""
        pages = self._call(None, self._client("routers").list, project=self.project, region=region)
        return [r.name for r in self._call(None, list, pages) if last_part(r.network) == network and list(r.nats)]

    # -- instances

    def create(self, zone: str, request: dict, request_id: str | None = None) -> str:
        from google.cloud import compute_v1

        instance = compute_v1.Instance.from_json(json.dumps(request))
        client = self._client("instances")
        rid = request_id or str(uuid.uuid4())
        request = compute_v1.InsertInstanceRequest(project=self.project, zone=zone, instance_resource=instance, request_id=rid)
        op = self._call(zone, client.insert_unary, request=request)
        self._raise_op_error(zone, op)
        return op.name

    def wait(self, zone: str, operation: str, timeout_s: float = 300.0) -> None:
        client = self._client("operations")
        deadline = time.monotonic() + timeout_s
        while True:
            # operations.wait returns when the operation is done or after about 2 minutes.
            op = self._call(zone, client.wait, project=self.project, zone=zone, operation=operation)
            if op.done:
                self._raise_op_error(zone, op)
                return
            if time.monotonic() > deadline:
                raise CloudError(f"operation {operation} in {zone} not done after {timeout_s:.0f} s; see `gcloud compute operations describe {operation} --zone {zone}`")
            _pause(POLL_SECONDS)

    def _raise_op_error(self, zone: str, op) -> None:
        problem = problem_from_operation(op)
        if problem is not None:
            raise classify(problem, zone, self.project)

    def get(self, zone: str, name: str) -> VM | None:
        from google.cloud import compute_v1

        try:
            inst = self._call(zone, self._client("instances").get, project=self.project, zone=zone, instance=name)
        except NotFound:
            return None
        return vm_from_json(json.loads(compute_v1.Instance.to_json(inst)))

    def list(self, run_id: str | None = None) -> list[VM]:
        from google.cloud import compute_v1

        wanted = f"labels.{RUN_LABEL} = {run_id}" if run_id else f"labels.{RUN_LABEL}:*"
        client = self._client("instances")
        pages = self._call(None, client.aggregated_list, request={"project": self.project, "filter": wanted})
        found = []
        for _zone, scoped in self._call(None, list, pages):
            for inst in scoped.instances:
                vm = vm_from_json(json.loads(compute_v1.Instance.to_json(inst)))
                # Filter again ourselves: the label is what makes a VM ours.
                if RUN_LABEL in vm.labels and (run_id is None or vm.run_id == run_id):
                    found.append(vm)
        return sorted(found, key=lambda v: (v.created or datetime.min.replace(tzinfo=timezone.utc), v.name))

    def delete(self, zone: str, name: str) -> str | None:
        client = self._client("instances")
        try:
            request = {"project": self.project, "zone": zone, "instance": name, "request_id": str(uuid.uuid4())}
            op = self._call(zone, client.delete_unary, request=request)
        except NotFound:
            return None
        return op.name

    def events(self, zone: str, name: str) -> list[VmEvent]:
        """The instance's operations in its zone (insert, preempted, delete, ...), oldest first."""
        from google.cloud import compute_v1

        link = f"https://www.googleapis.com/compute/v1/projects/{self.project}/zones/{zone}/instances/{name}"
        pages = self._call(zone, self._client("operations").list, request={"project": self.project, "zone": zone, "filter": f'targetLink = "{link}"'})
        ops = [event_from_json(json.loads(compute_v1.Operation.to_json(op))) for op in self._call(zone, list, pages)]
        return sorted(ops, key=lambda e: e.time or datetime.min.replace(tzinfo=timezone.utc))


def default_credentials():
    """google.auth.default(), with its failure turned into the message that says how to fix it."""
    import google.auth
    from google.auth import exceptions as auth_exc

    try:
        return google.auth.default(scopes=["https://www.googleapis.com/auth/cloud-platform"])
    except auth_exc.DefaultCredentialsError as exc:
        raise NoCredentials(first_line(exc)) from None


def project_from_environment() -> str | None:
    """The project when the user named none: environment first (no network), then the one
    stored with the application-default credentials."""
    for var in ("GOOGLE_CLOUD_PROJECT", "CLOUDSDK_CORE_PROJECT", "GCLOUD_PROJECT"):
        if os.environ.get(var):
            return os.environ[var]
    return None
