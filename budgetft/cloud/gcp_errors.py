"""What Compute Engine said, turned into the error the launcher acts on, with its scope and fix.

Errors reach us two ways: an HTTP error from the REST call itself (a google.api_core exception
with `code`, `errors[].reason` and `details`), or a long-running operation that ends with
`error.errors[]` (`code`, `message`, `errorDetails[].quotaInfo`). Both become a `Problem` first,
then one `classify` decides. Reasons used below, as Compute Engine spells them:

  ZONE_RESOURCE_POOL_EXHAUSTED(_WITH_DETAILS), STOCKOUT   a stockout: try another zone
  UNSUPPORTED_OPERATION                                    not possible in this zone: try another
  QUOTA_EXCEEDED / quotaExceeded                           regional or project-wide quota
  rateLimitExceeded / userRateLimitExceeded, HTTP 429      API request rate: back off and retry
  HTTP 500/502/503/504, backendError, internalError        the API's own trouble: back off and retry
  CONDITION_NOT_MET / conditionNotMet                      an organisation policy refused it
  SERVICE_DISABLED / accessNotConfigured                   the API is not enabled
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from budgetft.cloud.errors import (
    CLOUD,
    REGION,
    ApiDisabled,
    CloudError,
    ExternalIpForbidden,
    ImageUnusable,
    NetworkMissing,
    NotFound,
    PermissionDenied,
    QuotaExceeded,
    Transient,
    ZoneUnavailable,
    first_line,
)

CAPACITY_CODES = {"ZONE_RESOURCE_POOL_EXHAUSTED", "ZONE_RESOURCE_POOL_EXHAUSTED_WITH_DETAILS", "STOCKOUT", "RESOURCE_POOL_EXHAUSTED"}
UNSUPPORTED_CODES = {"UNSUPPORTED_OPERATION"}
QUOTA_CODES = {"QUOTA_EXCEEDED", "quotaExceeded"}
RATE_CODES = {"rateLimitExceeded", "userRateLimitExceeded", "RATE_LIMIT_EXCEEDED"}
SERVER_CODES = {"backendError", "internalError", "INTERNAL_ERROR"}
DISABLED_CODES = {"SERVICE_DISABLED", "accessNotConfigured"}
POLICY_CODES = {"CONDITION_NOT_MET", "conditionNotMet"}
TRANSIENT_STATUS = {429, 500, 502, 503, 504}
# Project-wide quotas: no region can lift them.
GLOBAL_METRICS = {"GPUS_ALL_REGIONS", "CPUS_ALL_REGIONS", "GPUS_PER_GPU_FAMILY"}

QUOTA_TEXT = re.compile(r"Quota '([A-Z0-9_]+)' exceeded\.\s+Limit: ([0-9.]+)\s*(?:in region ([a-z0-9-]+)|(globally))?")


@dataclass(frozen=True)
class Problem:
    """An error as Compute Engine reported it, before we decide what it means."""

    codes: tuple[str, ...]
    message: str
    status: int | None = None
    metric: str | None = None  # from errorDetails[].quotaInfo.metricName
    dimensions: dict = field(default_factory=dict)  # from quotaInfo.dimensions, e.g. {"region": "us-central1"}

    @property
    def text(self) -> str:
        return self.message or ", ".join(self.codes) or "unknown error"


def problem_from_http(exc: Exception) -> Problem:
    """A google.api_core exception (an HTTP error from the REST transport) as a Problem."""
    codes: list[str] = []
    for item in getattr(exc, "errors", None) or []:
        if isinstance(item, dict):
            codes += [str(item.get(k)) for k in ("reason", "code") if item.get(k)]
    for detail in getattr(exc, "details", None) or []:
        if isinstance(detail, dict) and detail.get("reason"):
            codes.append(str(detail["reason"]))
    reason = getattr(exc, "reason", None)
    if reason:
        codes.append(str(reason))
    message = getattr(exc, "message", None) or str(exc)
    status = getattr(exc, "code", None)
    return Problem(tuple(dict.fromkeys(codes)), str(message), status if isinstance(status, int) else None)


def problem_from_operation(op) -> Problem | None:
    """A finished compute_v1.Operation's error as a Problem, or None when it succeeded."""
    errors = list(op.error.errors) if op.error and op.error.errors else []
    if not errors:
        return None
    metric, dims = None, {}
    for err in errors:
        for detail in err.error_details or []:
            info = detail.quota_info
            if info and info.metric_name:
                metric = metric_name(info.metric_name)
                dims = dict(info.dimensions or {})
    return Problem(
        tuple(e.code for e in errors),
        "; ".join(e.message for e in errors if e.message),
        op.http_error_status_code or None,
        metric,
        dims,
    )


def metric_name(api_metric: str) -> str:
    """'compute.googleapis.com/nvidia_t4_gpus' -> 'NVIDIA_T4_GPUS' (the name regions.get uses)."""
    return api_metric.rsplit("/", 1)[-1].upper()


def is_transient(p: Problem) -> bool:
    """Worth retrying the same call after a pause: rate limits and the API's own 5xx trouble,
    never a stockout (that is the next zone's job) nor anything about our request."""
    codes = set(p.codes)
    if codes & (CAPACITY_CODES | UNSUPPORTED_CODES | QUOTA_CODES | DISABLED_CODES | POLICY_CODES) and not codes & RATE_CODES:
        return False
    return bool(codes & (RATE_CODES | SERVER_CODES)) or p.status in TRANSIENT_STATUS or _is_rate_text(p.text)


def _is_rate_text(text: str) -> bool:
    # "Quota exceeded for quota metric 'Read requests' and limit 'Read requests per minute' ..."
    lowered = text.lower()
    return "quota metric" in lowered and ("per minute" in lowered or "per 100 seconds" in lowered)


def classify(p: Problem, zone: str | None, project: str, region: str | None = None) -> CloudError:
    """The error the launcher acts on: ZoneUnavailable (try the next zone), QuotaExceeded with
    its scope (the next region, or stop), Transient (retries ran out), or one that stops the
    launch with its fix."""
    text, codes, lowered = p.text, set(p.codes), p.text.lower()
    if codes & DISABLED_CODES or "has not been used in project" in lowered or "is disabled" in lowered:
        return ApiDisabled(project, detail=first_line(text, 200))
    if codes & RATE_CODES or p.status == 429 or _is_rate_text(text):
        return Transient(
            f"Compute Engine kept refusing requests as too many ({first_line(text, 200)}) after budgetft backed off and "
            "retried. Fix: wait a few minutes (another tool in this project may be using the API's request quota), then try again"
        )
    if codes & CAPACITY_CODES or "does not have enough resources available" in lowered:
        return ZoneUnavailable(zone or "?", f"out of capacity ({first_line(text, 200)})", "capacity")
    if codes & UNSUPPORTED_CODES:
        return ZoneUnavailable(zone or "?", f"cannot do this here ({first_line(text, 200)})", "unsupported")
    if codes & QUOTA_CODES or ("quota" in lowered and "exceeded" in lowered):
        return quota_error(p, region or (zone.rsplit("-", 1)[0] if zone else None))
    if codes & POLICY_CODES or "constraints/" in lowered:
        if "vmexternalipaccess" in lowered:
            return ExternalIpForbidden(first_line(text, 200))
        return CloudError(f"an organisation policy refused the VM ({first_line(text, 240)}). Fix: ask your organisation's admin, or use a project the policy does not cover")
    not_here = any(k in lowered for k in ("acceleratortypes", "machinetypes", "disktypes")) and (
        p.status == 404 or "not found" in lowered or "does not exist" in lowered or "invalid value" in lowered
    )
    if not_here or "not available in zone" in lowered or "not supported in zone" in lowered:
        return ZoneUnavailable(zone or "?", f"does not offer this GPU or machine type ({first_line(text, 200)})", "not offered")
    if "networks/" in lowered and ("not found" in lowered or "was not found" in lowered or p.status == 404):
        return NetworkMissing(
            f"the VM's network does not exist ({first_line(text, 200)}). Fix: `gcloud compute networks create default "
            "--subnet-mode=auto`, or name an existing one with BUDGETFT_GCP_NETWORK (and BUDGETFT_GCP_SUBNET for a custom-mode network)"
        )
    if "image size" in lowered:
        return ImageUnusable(f"the boot image was refused ({first_line(text, 240)}). Fix: set BUDGETFT_GCP_IMAGE to a current image family (see `budgetft doctor`)")
    if p.status == 404 or "notFound" in codes:
        return NotFound(text)
    if p.status in (401, 403) or codes & {"forbidden", "PERMISSION_DENIED", "IAM_PERMISSION_DENIED"}:
        needed = re.search(r"'([a-z]+\.[a-zA-Z]+\.[a-zA-Z]+)'", text)
        what = f" ({needed.group(1)})" if needed else ""
        return PermissionDenied(
            f"permission denied{what}: {first_line(text, 240)}. Fix: grant your account the budgetftLauncher role on the project and "
            "budgetftVmUser on the VM's service account (infra/gcp/README.md, step 5); `budgetft doctor --cloud gcp` lists what is missing"
        )
    if p.status == 409 or "alreadyExists" in codes:
        return CloudError(f"{first_line(text, 240)}. Fix: a VM of this name is still there; delete it with `budgetft down RUN_ID`")
    if p.status == 400:
        return CloudError(f"Compute Engine refused the instance request ({first_line(text, 300)}); this is a budgetft bug, please report it with `budgetft run --dry-run`'s output")
    if codes & SERVER_CODES or p.status in TRANSIENT_STATUS:
        return Transient(f"Compute Engine kept failing ({first_line(text, 200)}) after budgetft backed off and retried. Fix: try again in a few minutes")
    return CloudError(text)


def quota_error(p: Problem, region: str | None) -> QuotaExceeded:
    """A quota refusal with its metric and scope, and the quota to raise."""
    found = QUOTA_TEXT.search(p.text)
    metric = p.metric or (found.group(1) if found else None)
    where = p.dimensions.get("region") or (found.group(3) if found else None) or region
    globally = bool(found and found.group(4)) or (metric or "") in GLOBAL_METRICS or (p.metric is not None and not p.dimensions.get("region"))
    name = metric or "the GPU quota named above"
    if globally:
        return QuotaExceeded(
            f"the project-wide quota {name} is used up ({first_line(p.text, 200)}); no region can help. Fix: request an increase of {name} "
            "(console: IAM & Admin > Quotas, filter by its name; see infra/gcp/README.md, step 6), then try again. Nothing was left running",
            metric=metric, scope=CLOUD,
        )
    return QuotaExceeded(
        f"{where or 'this region'}: not enough {name} quota ({first_line(p.text, 200)}). Fix: request more {name} in {where or 'the region'} "
        "(console: IAM & Admin > Quotas; see infra/gcp/README.md, step 6), or let budgetft try other regions (drop --region/--zone)",
        metric=metric, scope=REGION, region=where,
    )
