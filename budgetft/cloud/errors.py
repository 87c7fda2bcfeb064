"""Cloud failures a user can act on. Every message says what went wrong and the fix."""

from __future__ import annotations


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
        super().__init__(
            f"the {api} API is not enabled in project {project}"
            + (f" ({detail})" if detail else "")
            + f". Fix: `gcloud services enable {api} --project {project}` (see infra/gcp/README.md), "
            "wait a minute, then try again"
        )


class PermissionDenied(CloudError):
    """The credentials lack a permission (not a disabled API)."""


class QuotaExceeded(CloudError):
    """Not enough GPU (or CPU) quota in the region: no zone of it can help."""


class ZoneUnavailable(CloudError):
    """This zone cannot give us the instance now (out of capacity, or it does not offer the
    GPU or machine type); another zone of the region may."""

    def __init__(self, zone: str, detail: str):
        self.zone = zone
        super().__init__(f"{zone}: {detail}")


class NotFound(CloudError):
    pass


class BucketError(CloudError):
    """The results bucket is missing or we cannot write to it."""
