"""Cloud failures a user can act on. Every message says what went wrong and the fix.

A failure to start a VM also has a scope: how much of the cloud it rules out. A stockout or an
unsupported shape rules out one zone (for that provisioning model), a regional quota one region,
and a project-wide quota, a refused permission or an organisation policy the whole cloud: trying
elsewhere cannot help, so the launcher stops and says what to fix.
"""

from __future__ import annotations

ZONE, REGION, CLOUD = "zone", "region", "cloud"  # the scopes a failure to start rules out


def first_line(text: object, limit: int = 300) -> str:
    """The first line of an error's text, shortened at a word boundary (never mid-word) when it
    runs past `limit` characters, with an ellipsis to say so."""
    line = str(text).strip().split("\n")[0].strip()
    if len(line) <= limit:
        return line
    cut = line[:limit].rsplit(" ", 1)[0].rstrip(" ,;:")
    return cut + " …"


class CloudError(RuntimeError):
    """A cloud operation failed; the message names the problem and how to fix it."""

    scope = CLOUD


class NoCredentials(CloudError):
    def __init__(self, detail: str = ""):
        super().__init__(
            "no Google Cloud credentials found"
            + (f" ({detail})" if detail else "")
            + ". Fix: run `gcloud auth application-default login` (or set GOOGLE_APPLICATION_CREDENTIALS "
            "to a service-account key file), then try again"
        )


class NoProject(CloudError):
    def __init__(self) -> None:
        super().__init__(
            "no Google Cloud project given. Fix: pass --project PROJECT_ID, or run "
            "`gcloud config set project PROJECT_ID` and `gcloud auth application-default set-quota-project PROJECT_ID`, "
            "or set GOOGLE_CLOUD_PROJECT"
        )


class ApiDisabled(CloudError):
    def __init__(self, project: str, api: str = "compute.googleapis.com", detail: str = ""):
        self.api = api
        super().__init__(
            f"the {api} API is not enabled in project {project}"
            + (f" ({detail})" if detail else "")
            + f". Fix: `gcloud services enable {api} --project {project}` (see infra/gcp/README.md), "
            "wait a minute, then try again"
        )


class PermissionDenied(CloudError):
    """The credentials lack a permission (not a disabled API)."""


class QuotaExceeded(CloudError):
    """Not enough quota. `scope` says where more cannot be had: REGION (this region's quota for
    `metric`; another region may have some) or CLOUD (a project-wide quota such as
    GPUS_ALL_REGIONS, which no region can lift)."""

    def __init__(self, message: str, *, metric: str | None = None, scope: str = REGION, region: str | None = None):
        self.metric, self.scope, self.region = metric, scope, region
        super().__init__(message)


class ZoneUnavailable(CloudError):
    """This zone cannot give us the instance now: out of capacity (a stockout), an operation it
    does not support, or a GPU or machine type it does not offer. Another zone may."""

    scope = ZONE

    def __init__(self, zone: str, detail: str, reason: str = "capacity"):
        self.zone, self.reason = zone, reason  # capacity | unsupported | not offered
        super().__init__(f"{zone}: {detail}")


class Transient(CloudError):
    """The API kept answering 429, 5xx or rateLimitExceeded after every retry budgetft allows."""


class ExternalIpForbidden(CloudError):
    """An organisation policy (constraints/compute.vmExternalIpAccess) refuses public addresses."""

    def __init__(self, detail: str):
        super().__init__(
            f"an organisation policy forbids external IP addresses on VMs ({detail}). Fix: run with "
            "--no-external-ip; the VM then reaches Cloud Storage through Private Google Access and PyPI and "
            "the Hugging Face hub through Cloud NAT (set-up commands: infra/gcp/README.md, step 7)"
        )


class NetworkMissing(CloudError):
    """The VPC network (or its subnet in the region) the VM would join does not exist."""


class ImageUnusable(CloudError):
    """The boot image cannot be used: missing, deprecated past its end, or needing a bigger disk."""


class NotFound(CloudError):
    pass


class BucketError(CloudError):
    """The results bucket is missing or we cannot use it."""
