"""Compute Engine behind the Provider interface, with google-cloud-compute over REST.

Client construction is injectable (`endpoint`, `credentials`) so tests drive the real client
against a fake API on 127.0.0.1. We use the `*_unary` calls and poll operations with our own
ZoneOperationsClient: the library's ExtendedOperation builds its own operations client without
our endpoint, which would wait on the real API instead of the one we were pointed at.
"""

from __future__ import annotations

import json
import os
import time
from datetime import datetime, timezone
from typing import Any

from budgetft.cloud.errors import (
    ApiDisabled,
    CloudError,
    NoCredentials,
    NoProject,
    NotFound,
    PermissionDenied,
    QuotaExceeded,
    ZoneUnavailable,
    first_line,
)
from budgetft.cloud.provider import RUN_LABEL, VM, Provider, RegionInfo

# Imported inside functions: google: the [gcp] extra, installed only where needed.

# BUDGETFT_GCP_ENDPOINT points every Compute call elsewhere (a fake API in tests, a private
# endpoint); with it set and no credentials given, calls are made anonymously.
ENDPOINT_ENV = "BUDGETFT_GCP_ENDPOINT"

# Quota metric per GPU (Compute Engine's regional quota names); Spot VMs draw on the
# PREEMPTIBLE_ variant when the project has it, else on the standard one.
GPU_QUOTA_METRICS = {
    "nvidia-tesla-t4": "NVIDIA_T4_GPUS",
    "nvidia-tesla-p100": "NVIDIA_P100_GPUS",
    "nvidia-tesla-v100": "NVIDIA_V100_GPUS",
    "nvidia-l4": "NVIDIA_L4_GPUS",
    "nvidia-tesla-a100": "NVIDIA_A100_GPUS",
    "nvidia-a100-80gb": "NVIDIA_A100_80GB_GPUS",
    "nvidia-h100-80gb": "NVIDIA_H100_GPUS",
}

# Operation / HTTP error codes meaning "this zone has no room for it right now".
CAPACITY_CODES = {"ZONE_RESOURCE_POOL_EXHAUSTED", "ZONE_RESOURCE_POOL_EXHAUSTED_WITH_DETAILS", "STOCKOUT", "RESOURCE_POOL_EXHAUSTED"}
QUOTA_CODES = {"QUOTA_EXCEEDED", "quotaExceeded", "rateLimitExceeded"}
DISABLED_CODES = {"SERVICE_DISABLED", "accessNotConfigured"}


def classify(zone: str | None, codes: list[str], message: str, project: str, status: int | None = None) -> CloudError:
    """Turn what Compute Engine said into the error the launcher acts on."""
    text = message or ", ".join(codes) or "unknown error"
    lowered = text.lower()
    if set(codes) & DISABLED_CODES or "has not been used in project" in lowered or "is disabled" in lowered:
        return ApiDisabled(project, detail=first_line(text, 200))
    if set(codes) & CAPACITY_CODES or "does not have enough resources available" in lowered:
        return ZoneUnavailable(zone or "?", f"out of capacity ({text})")
    if set(codes) & QUOTA_CODES or ("quota" in lowered and "exceeded" in lowered):
        return QuotaExceeded(
            f"quota exceeded: {text}. Fix: request more quota for this GPU in this region "
            "(console: IAM & Admin > Quotas, filter by the metric above; see infra/gcp/README.md), "
            "or pick another --gpu or --region"
        )
    not_here = ("acceleratortypes" in lowered or "machinetypes" in lowered or "disktypes" in lowered) and (
        status == 404 or "not found" in lowered or "does not exist" in lowered or "invalid value" in lowered
    )
    if not_here or "not available in zone" in lowered or "not supported in zone" in lowered:
        return ZoneUnavailable(zone or "?", f"does not offer this GPU or machine type ({text})")
    if status == 404 or "notFound" in codes:
        return NotFound(text)
    if status in (401, 403) or "forbidden" in codes or "PERMISSION_DENIED" in codes:
        return PermissionDenied(
            f"permission denied: {text}. Fix: your account needs roles/compute.instanceAdmin.v1 and "
            "roles/iam.serviceAccountUser on the VM's service account (infra/gcp/README.md)"
        )
    return CloudError(text)


def _api_error(exc: Exception, zone: str | None, project: str) -> CloudError:
    """A google.api_core exception (HTTP error from the REST transport) -> CloudError."""
    codes: list[str] = []
    for item in getattr(exc, "errors", None) or []:
        if isinstance(item, dict):
            codes += [str(item.get(k)) for k in ("reason", "code") if item.get(k)]
    reason = getattr(exc, "reason", None)
    if reason:
        codes.append(str(reason))
    message = getattr(exc, "message", None) or str(exc)
    return classify(zone, codes, str(message), project, getattr(exc, "code", None))


def _time(text: str | None) -> datetime | None:
    if not text:
        return None
    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None


def _last(url: str) -> str:
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
        zone=_last(data.get("zone", "")),
        status=data.get("status", "UNKNOWN"),
        labels=dict(data.get("labels") or {}),
        created=_time(data.get("creationTimestamp")),
        last_start=_time(data.get("lastStartTimestamp")),
        last_stop=_time(data.get("lastStopTimestamp")),
        machine_type=_last(data.get("machineType", "")),
        gpu=_last(accels[0].get("acceleratorType", "")) if accels else None,
        gpu_count=int(accels[0].get("acceleratorCount", 0)) if accels else 0,
        spot=sched.get("provisioningModel") == "SPOT" or bool(sched.get("preemptible")),
        disk_gb=int(boot.get("diskSizeGb") or (boot.get("initializeParams") or {}).get("diskSizeGb") or 0),
        max_run_seconds=int(duration) if duration else None,
    )


class GcpProvider(Provider):
    name = "gcp"

    def __init__(self, project: str, *, endpoint: str | None = None, credentials: Any = None):
        if not project:
            raise NoProject()
        self.project = project
        self.endpoint = endpoint if endpoint is not None else os.environ.get(ENDPOINT_ENV) or None
        self._credentials = credentials
        self._clients: dict[str, Any] = {}

    # -- clients

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
        cls = {
            "instances": compute_v1.InstancesClient,
            "operations": compute_v1.ZoneOperationsClient,
            "regions": compute_v1.RegionsClient,
            "projects": compute_v1.ProjectsClient,
        }[kind]
        client = cls(credentials=credentials, transport="rest", client_options=options)
        self._clients[kind] = client
        return client

    def _call(self, where: str | None, fn, *args, **kwargs):
        from google.api_core import exceptions as gexc
        from google.auth import exceptions as auth_exc

        try:
            return fn(*args, **kwargs)
        except auth_exc.DefaultCredentialsError as exc:
            raise NoCredentials(first_line(exc)) from None
        except auth_exc.RefreshError as exc:
            raise NoCredentials(f"the stored credentials were refused: {exc}") from None
        except gexc.GoogleAPICallError as exc:
            raise _api_error(exc, where, self.project) from None

    # -- the interface

    def region(self, region: str) -> RegionInfo:
        client = self._client("regions")
        data = self._call(None, client.get, project=self.project, region=region)
        zones = [_last(z) for z in data.zones]
        quotas = {q.metric: (float(q.limit), float(q.usage)) for q in data.quotas}
        # GPUS_ALL_REGIONS is a project-wide cap (0 in new projects) that no region can lift.
        project = self._call(None, self._client("projects").get, project=self.project)
        quotas.update({q.metric: (float(q.limit), float(q.usage)) for q in project.quotas if q.metric == "GPUS_ALL_REGIONS"})
        return RegionInfo(region, zones, quotas)

    def create(self, zone: str, request: dict) -> str:
        from google.cloud import compute_v1

        instance = compute_v1.Instance.from_json(json.dumps(request))
        client = self._client("instances")
        op = self._call(zone, client.insert_unary, project=self.project, zone=zone, instance_resource=instance)
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
                raise CloudError(f"operation {operation} in {zone} not done after {timeout_s:.0f} s")
            time.sleep(1.0)

    def _raise_op_error(self, zone: str, op) -> None:
        errors = list(op.error.errors) if op.error and op.error.errors else []
        if not errors:
            return
        codes = [e.code for e in errors]
        message = "; ".join(e.message for e in errors if e.message)
        raise classify(zone, codes, message, self.project, op.http_error_status_code or None)

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
        try:
            op = self._call(zone, self._client("instances").delete_unary, project=self.project, zone=zone, instance=name)
        except NotFound:
            return None
        return op.name


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
