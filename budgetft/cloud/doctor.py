"""`budgetft doctor --cloud gcp`, and the same checks `budgetft run --cloud gcp` makes before it
spends anything: item by item, what a first cloud run needs, what is missing, and the command
that fixes each. Nothing here creates, writes or spends: every call reads (gets, lists,
testIamPermissions).

The checks run in order and a check whose prerequisite failed is reported as skipped, with the
prerequisite's fix, rather than failing again: no credentials means every API check is skipped
and nothing slow (no Compute client, no network) is even loaded.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from budgetft.cloud.doctor_findings import DoctorRequest, Findings
from budgetft.cloud.errors import NoCredentials, NoProject, first_line
from budgetft.cloud.gcp import ENDPOINT_ENV, project_from_environment
from budgetft.doctor_local import local_checks

# Imported inside functions: google.auth (the [gcp] extra) and the checks' clients.


def credentials_and_project(req: DoctorRequest, found: Findings) -> bool:
    """The first two checks; False when the cloud checks cannot go on."""
    try:
        found.credentials, who = find_credentials()
        found.add("credentials", "ok", who)
    except NoCredentials as exc:
        text = str(exc)
        found.add("credentials", "fail", text.split(". Fix: ")[0], text.split(". Fix: ")[-1] if ". Fix: " in text else "gcloud auth application-default login")
        return False
    project = req.project or project_from_environment() or getattr(found.credentials, "quota_project_id", None) or _adc_project()
    if not project:
        text = str(NoProject())
        found.add("project", "fail", text.split(". Fix: ")[0], text.split(". Fix: ")[1])
        return False
    found.project = project
    found.add("project", "ok", project + (" (--project)" if req.project else ""))
    return True


def find_credentials() -> tuple[Any, str]:
    """(credentials, who they are), quickly: when no credential file exists and this is not a
    Google Cloud VM, say so without google.auth's metadata-server probe (seconds offline)."""
    if os.environ.get(ENDPOINT_ENV):
        return None, f"anonymous: {ENDPOINT_ENV}={os.environ[ENDPOINT_ENV]} (a fake or private API)"
    key = os.environ.get("GOOGLE_APPLICATION_CREDENTIALS")
    config = Path(os.environ.get("CLOUDSDK_CONFIG") or Path.home() / ".config" / "gcloud")
    adc = config / "application_default_credentials.json"
    if not key and not adc.is_file() and not _on_google_cloud():
        raise NoCredentials(f"no GOOGLE_APPLICATION_CREDENTIALS, no {adc}, and this is not a Google Cloud VM")
    from budgetft.cloud.gcp import default_credentials

    credentials, _ = default_credentials()
    who = getattr(credentials, "service_account_email", None) or getattr(credentials, "signer_email", None)
    source = key or (str(adc) if adc.is_file() else "the VM's metadata server")
    return credentials, f"{who or 'application-default credentials'} from {source}"


def _on_google_cloud() -> bool:
    if os.environ.get("GCE_METADATA_HOST") or os.environ.get("GCE_METADATA_IP"):
        return True
    try:
        return Path("/sys/class/dmi/id/product_name").read_text().strip() in ("Google", "Google Compute Engine")
    except OSError:
        return False


def _adc_project() -> str | None:
    try:
        import google.auth

        return google.auth.default()[1]
    except Exception:  # noqa: BLE001 - no project there is a finding, not a crash
        return None


def run_doctor(req: DoctorRequest) -> Findings:
    """Every check, in order; never raises for what it finds (each problem is a line)."""
    from budgetft.cloud.doctor_gcp import cloud_checks  # Compute, Storage, IAM: only once credentials exist

    found = Findings()
    if req.local:
        found.checks += local_checks(cloud=True, runs_dir=req.runs_dir)
        if any(c.name == "cloud clients" and c.status == "fail" for c in found.checks):
            return found
    if not credentials_and_project(req, found):
        _skip_rest(found, "fix the lines above, then run `budgetft doctor --cloud gcp` again")
        return found
    try:
        cloud_checks(req, found)
    except Exception as exc:  # noqa: BLE001 - a bug in a check must not hide the others' lines
        found.add("doctor", "fail", f"a check failed unexpectedly: {type(exc).__name__}: {first_line(exc, 200)}", "report this with the lines above")
    return found


CLOUD_CHECK_NAMES = ("apis", "your project rights", "gpu quota (project)", "gpu quota (region)", "gpu quota (preemptible)", "zones offering it",
                     "image", "network", "bucket", "your bucket rights", "vm service account", "vm bucket rights", "vm self-delete")


def _skip_rest(found: Findings, why: str) -> None:
    for name in CLOUD_CHECK_NAMES:
        found.add(name, "skip", "not checked until the lines above pass", why)
