"""The results bucket: the launcher seeds a run there, the VM uploads its run directory there as it
goes, and the launcher reads progress from it and brings the results home.

Layout under gs://BUCKET/budgetft/<run_id>/:
  run/        the run directory (job.yaml, ledger.jsonl, run.json, trials/, reports, ...)
  dist/       the budgetft wheel the VM installs (same version as the launching machine)
  vm/         phase (what the VM is doing), exit_code (written last), startup-<n>.log

The endpoint is injectable (`endpoint`, or STORAGE_EMULATOR_HOST which google-cloud-storage reads
itself) so tests use gcp-storage-emulator on loopback.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from budgetft.cloud.errors import BucketError, NoCredentials, first_line
from budgetft.files import atomic_write

# Imported inside functions: google: the [gcp] extra, installed only where needed.

EMULATOR_ENV = "STORAGE_EMULATOR_HOST"
ROOT = "budgetft"  # every object budgetft writes lives under this prefix
# The custom roles infra/gcp/README.md creates (budgetft.cloud.rights lists their permissions).
BUCKET_VM_ROLE = "projects/PROJECT_ID/roles/budgetftBucket"
BUCKET_USER_ROLE = "projects/PROJECT_ID/roles/budgetftBucketUser"


def parse_url(url: str) -> tuple[str, str]:
    """'gs://bucket/some/prefix' -> ('bucket', 'some/prefix')."""
    if not url.startswith("gs://") or len(url) <= 5:
        raise BucketError(f"--bucket {url!r}: write it as gs://BUCKET_NAME")
    name, _, prefix = url[5:].partition("/")
    if not name:
        raise BucketError(f"--bucket {url!r}: the bucket name is empty; write it as gs://BUCKET_NAME")
    return name, prefix.strip("/")


def run_prefix(url: str, run_id: str) -> str:
    """Object prefix for a run, e.g. 'budgetft/boolq-20250601-120000' (no trailing slash)."""
    _, prefix = parse_url(url)
    return "/".join(p for p in (prefix, ROOT, run_id) if p)


@dataclass(frozen=True)
class Blob:
    name: str
    size: int
    updated: datetime | None


class Bucket:
    def __init__(self, url: str, *, project: str | None = None, endpoint: str | None = None, credentials: Any = None):
        self.url = url
        self.name, _ = parse_url(url)
        self.project = project
        self.endpoint = endpoint
        self._credentials = credentials
        self._bucket = None

    def _handle(self):
        if self._bucket is not None:
            return self._bucket
        from google.cloud import storage

        credentials = self._credentials
        options = {"api_endpoint": self.endpoint} if self.endpoint else None
        if credentials is None and (self.endpoint or os.environ.get(EMULATOR_ENV)):
            from google.auth.credentials import AnonymousCredentials

            credentials = AnonymousCredentials()
        with self._errors():
            client = storage.Client(project=self.project or "budgetft", credentials=credentials, client_options=options)
        self._bucket = client.bucket(self.name)
        return self._bucket

    def _errors(self, missing_ok: bool = False):
        return _mapped_errors(self, missing_ok)

    # -- checks

    def location(self) -> tuple[str, str]:
        """(location, location type), e.g. ('US-CENTRAL1', 'region'): buckets.get, which needs
        storage.buckets.get (the budgetftBucket role has it; roles/storage.objectUser does not)."""
        with self._errors():
            bucket = self._handle().client.get_bucket(self.name)
        return str(bucket.location or ""), str(bucket.location_type or "")

    def permissions(self, wanted: list[str]) -> list[str]:
        """Which of `wanted` the caller holds on the bucket (testIamPermissions: needs no right)."""
        with self._errors():
            return list(self._handle().test_iam_permissions(wanted))

    def members_roles(self) -> dict[str, set[str]]:
        """member -> roles granted on the bucket itself (needs storage.buckets.getIamPolicy)."""
        with self._errors():
            policy = self._handle().get_iam_policy(requested_policy_version=3)
        roles: dict[str, set[str]] = {}
        for binding in policy.bindings:
            for member in binding.get("members", ()):
                roles.setdefault(member, set()).add(binding["role"])
        return roles

    def check_writable(self, prefix: str) -> None:
        """Write and delete a probe object: the one way to know we may write, before any money
        is spent. Raises BucketError with the fix."""
        probe = f"{prefix}/.write-probe"
        with self._errors():
            blob = self._handle().blob(probe)
            blob.upload_from_string(b"budgetft write probe\n")
            blob.delete()

    # -- writing

    def upload_file(self, local: Path, name: str) -> None:
        with self._errors():
            self._handle().blob(name).upload_from_filename(str(local))

    def upload_text(self, name: str, text: str) -> None:
        with self._errors():
            self._handle().blob(name).upload_from_string(text.encode("utf-8"))

    def upload_dir(self, local_dir: Path, prefix: str, skip: tuple[str, ...] = ()) -> int:
        """Upload every file under local_dir to prefix/<relative path>; returns the count."""
        count = 0
        for path in sorted(Path(local_dir).rglob("*")):
            rel = path.relative_to(local_dir).as_posix()
            if path.is_file() and not any(rel.startswith(s) for s in skip):
                self.upload_file(path, f"{prefix}/{rel}")
                count += 1
        return count

    def delete_prefix(self, prefix: str) -> None:
        with self._errors():
            for blob in list(self._handle().client.list_blobs(self.name, prefix=prefix + "/")):
                blob.delete()

    # -- reading

    def list(self, prefix: str) -> list[Blob]:
        with self._errors():
            blobs = self._handle().client.list_blobs(self.name, prefix=prefix.rstrip("/") + "/")
            return [Blob(b.name, int(b.size or 0), b.updated) for b in blobs]

    def read_text(self, name: str) -> str | None:
        """The object's text, or None when it does not exist (the bucket does)."""
        from google.api_core.exceptions import NotFound

        try:
            with self._errors(missing_ok=True):
                return self._handle().blob(name).download_as_bytes().decode("utf-8", "replace")
        except NotFound:
            return None

    def download_prefix(self, prefix: str, local_dir: Path, skip: tuple[str, ...] = ()) -> list[Path]:
        """Copy prefix/** into local_dir, each file written atomically (a reader of the local run
        never sees half a file). Returns the local paths written."""
        written = []
        for blob in self.list(prefix):
            rel = blob.name[len(prefix.rstrip("/")) + 1 :]
            if not rel or rel.endswith("/") or any(rel.startswith(s) for s in skip):
                continue
            target = Path(local_dir) / rel
            self.download_file(blob.name, target)
            written.append(target)
        return written

    def download_file(self, name: str, target: Path) -> None:
        def fetch(fh) -> None:
            with self._errors():
                self._handle().blob(name).download_to_file(fh)

        atomic_write(target, fetch, durable=False)  # a torn download never stands as the file


class _mapped_errors:
    """Context manager: storage and auth exceptions -> BucketError / NoCredentials with the fix."""

    def __init__(self, bucket: Bucket, missing_ok: bool = False):
        self.bucket, self.missing_ok = bucket, missing_ok

    def __enter__(self) -> None:
        return None

    def __exit__(self, exc_type, exc, tb) -> bool:
        if exc is None:
            return False
        from google.api_core import exceptions as gexc
        from google.auth import exceptions as auth_exc

        url = f"gs://{self.bucket.name}"
        if isinstance(exc, auth_exc.DefaultCredentialsError):
            raise NoCredentials(first_line(exc)) from None
        if isinstance(exc, gexc.NotFound):
            if self.missing_ok and _bucket_listable(self.bucket):
                return False  # the object is missing, not the bucket: let the caller decide
            raise BucketError(
                f"bucket {url} does not exist (or is not visible to you). Fix: "
                f"`gcloud storage buckets create {url} --location=REGION --uniform-bucket-level-access` in the region "
                "you run in (see infra/gcp/README.md, step 3), or pass --bucket gs://AN_EXISTING_BUCKET"
            ) from None
        if isinstance(exc, (gexc.Forbidden, gexc.Unauthorized)):
            if "has not been used in project" in str(exc) or "is disabled" in str(exc):
                raise BucketError(f"the Cloud Storage API is not enabled ({_first_line(exc)}). Fix: `gcloud services enable storage.googleapis.com`") from None
            needed = re.search(r"(storage\.[a-zA-Z]+\.[a-zA-Z]+)", str(exc))
            raise BucketError(
                f"bucket {url} refuses your credentials{' ' + needed.group(1) if needed else ''} ({_first_line(exc)}). Fix: "
                f"`gcloud storage buckets add-iam-policy-binding {url} --member=user:YOU@EXAMPLE.COM "
                f"--role={BUCKET_USER_ROLE.replace('PROJECT_ID', self.bucket.project or 'PROJECT_ID')}` (infra/gcp/README.md, step 5; "
                f"the VM's service account needs {BUCKET_VM_ROLE.replace('PROJECT_ID', self.bucket.project or 'PROJECT_ID')}, step 4)"
            ) from None
        if isinstance(exc, gexc.GoogleAPICallError):
            raise BucketError(f"bucket {url}: {_first_line(exc)}") from None
        return False


def _bucket_listable(bucket: Bucket) -> bool:
    """Whether the bucket exists, asked with objects.list (a right every budgetft principal has)
    rather than buckets.get: a missing object must not read as a missing bucket."""
    try:
        list(bucket._handle().client.list_blobs(bucket.name, max_results=1))
        return True
    except Exception:  # noqa: BLE001 - any failure: the bucket is not usable as it is
        return False


def _first_line(exc: BaseException) -> str:
    return first_line(exc, 200)
