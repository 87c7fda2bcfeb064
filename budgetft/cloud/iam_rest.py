"""The few IAM questions a preflight asks, over REST with google-auth's AuthorizedSession (no
client library: these are three small calls):

  Resource Manager  projects.testIamPermissions  which launcher permissions you hold (needs no right)
                    projects.getIamPolicy        the VM service account's project roles
  IAM               serviceAccounts.testIamPermissions  whether you may attach the VM's account (and
                                                 that it exists: a missing account answers 404)
  Secret Manager    secrets.get, secrets.getIamPolicy   the hub token's secret and who may read it

BUDGETFT_GCP_ENDPOINT (a fake API in tests) replaces every host, as it does for Compute.
"""

from __future__ import annotations

import os
from typing import Any

from budgetft.cloud.errors import ApiDisabled, CloudError, NotFound, PermissionDenied, first_line
from budgetft.cloud.gcp import ENDPOINT_ENV, _pause
from budgetft.cloud.retry import Backoff

# Imported inside functions: google.auth's requests transport (the [gcp] extra).

HOSTS = {
    "crm": "https://cloudresourcemanager.googleapis.com",
    "iam": "https://iam.googleapis.com",
    "secrets": "https://secretmanager.googleapis.com",
}
APIS = {"crm": "cloudresourcemanager.googleapis.com", "iam": "iam.googleapis.com", "secrets": "secretmanager.googleapis.com"}
TIMEOUT_S = 20.0


class IamRest:
    def __init__(self, project: str, credentials: Any = None, endpoint: str | None = None):
        self.project = project
        self.endpoint = endpoint if endpoint is not None else os.environ.get(ENDPOINT_ENV) or None
        self._credentials = credentials
        self._session = None

    def _http(self):
        if self._session is None:
            from google.auth.transport.requests import AuthorizedSession

            credentials = self._credentials
            if credentials is None:
                from google.auth.credentials import AnonymousCredentials

                credentials = AnonymousCredentials()
            self._session = AuthorizedSession(credentials)
        return self._session

    def _call(self, api: str, method: str, path: str, body: dict | None = None) -> dict:
        url = (self.endpoint or HOSTS[api]).rstrip("/") + path
        from requests import exceptions as req_exc

        def once():
            response = self._http().request(method, url, json=body, timeout=TIMEOUT_S)
            if response.status_code in (429, 500, 502, 503, 504):
                raise _Retry(response)
            return response

        def transient(exc: BaseException) -> bool:
            return isinstance(exc, (_Retry, req_exc.ConnectionError, req_exc.Timeout))

        try:
            response = Backoff(sleep=lambda s: _pause(s)).run(once, transient)
        except _Retry as exc:
            response = exc.response
        except (req_exc.ConnectionError, req_exc.Timeout) as exc:
            raise CloudError(f"cannot reach {APIS[api]} ({first_line(exc, 160)})") from None
        if response.status_code == 200:
            return response.json() if response.content else {}
        try:
            error = response.json().get("error", {})
        except ValueError:
            error = {}
        message = error.get("message") or response.text or f"HTTP {response.status_code}"
        if "has not been used in project" in message or "is disabled" in message or error.get("status") == "SERVICE_DISABLED":
            raise ApiDisabled(self.project, APIS[api], first_line(message, 160))
        if response.status_code == 404:
            raise NotFound(message)
        if response.status_code in (401, 403):
            raise PermissionDenied(first_line(message, 240))
        raise CloudError(f"{APIS[api]}: {first_line(message, 240)}")

    # -- the questions

    def project_permissions(self, wanted: list[str]) -> set[str]:
        data = self._call("crm", "POST", f"/v1/projects/{self.project}:testIamPermissions", {"permissions": list(wanted)})
        return set(data.get("permissions", []))

    def project_roles(self, member: str) -> set[str]:
        """Roles `member` (e.g. serviceAccount:x@p.iam.gserviceaccount.com) holds on the project."""
        data = self._call("crm", "POST", f"/v1/projects/{self.project}:getIamPolicy", {"options": {"requestedPolicyVersion": 3}})
        return {b["role"] for b in data.get("bindings", []) if member in b.get("members", [])}

    def can_act_as(self, service_account: str) -> bool:
        """Whether you may attach `service_account` to a VM; NotFound when it does not exist."""
        data = self._call("iam", "POST", f"/v1/projects/-/serviceAccounts/{service_account}:testIamPermissions", {"permissions": ["iam.serviceAccounts.actAs"]})
        return "iam.serviceAccounts.actAs" in data.get("permissions", [])

    def secret_readers(self, secret: str) -> set[str]:
        """Members holding roles/secretmanager.secretAccessor on `secret` (projects/P/secrets/S);
        NotFound when the secret does not exist."""
        self._call("secrets", "GET", f"/v1/{secret}")
        data = self._call("secrets", "GET", f"/v1/{secret}:getIamPolicy")
        return {m for b in data.get("bindings", []) if b.get("role") == "roles/secretmanager.secretAccessor" for m in b.get("members", [])}


class _Retry(Exception):
    def __init__(self, response):
        self.response = response
        super().__init__(f"HTTP {response.status_code}")
