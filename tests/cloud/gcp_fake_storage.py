"""Cloud Storage's rights in front of gcp-storage-emulator (which has none). No tests here.

A proxy on 127.0.0.1 forwards every call to the emulator after checking, as Cloud Storage does,
that the caller holds the call's permission on the bucket through the roles the proxy's policy
gives it: buckets.get -> storage.buckets.get, objects list/get/insert/delete -> storage.objects.*,
an insert over an existing object -> storage.objects.delete too, the IAM policy ->
storage.buckets.getIamPolicy. It answers testIamPermissions and getIamPolicy itself.

Callers are told apart by their bearer token: none (the launcher, through AnonymousCredentials)
is the user; "vm-token" is the VM's service account (the start-up script's gcloud stub and the
fake VMs send it). With the VM given roles/storage.objectUser, which lacks storage.buckets.get,
`gcloud storage rsync` on the VM is refused, as it is on Google Cloud (issue 28, point 4).
"""

from __future__ import annotations

import http.client
import json
import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, unquote, urlparse

from gcp_fake_compute import PROJECT, SA, free_port

from budgetft.cloud import rights

USER = "user:you@example.com"
VM = f"serviceAccount:{SA}"
VM_TOKEN = "vm-token"
OBJECTS = {"storage.objects.create", "storage.objects.delete", "storage.objects.get", "storage.objects.list"}
ROLE_PERMISSIONS = {
    rights.custom_role(PROJECT, rights.VM_BUCKET_ROLE): set(rights.VM_BUCKET_PERMISSIONS),
    rights.custom_role(PROJECT, rights.USER_BUCKET_ROLE): set(rights.USER_BUCKET_PERMISSIONS),
    "roles/storage.objectUser": OBJECTS | {"storage.objects.update"},  # no storage.buckets.get
    "roles/storage.objectViewer": {"storage.objects.get", "storage.objects.list"},
    "roles/storage.admin": set(rights.USER_BUCKET_PERMISSIONS) | {"storage.objects.update", "storage.buckets.update"},
}


class RightsProxy:
    def __init__(self, upstream: str):
        parsed = urlparse(upstream)
        self.upstream = (parsed.hostname, parsed.port)
        self.roles: dict[str, set[str]] = {}
        self.reset()
        self.denied: list[tuple[str, str, str]] = []  # (member, permission, path) refused
        self.server: ThreadingHTTPServer | None = None
        self.endpoint = ""

    def reset(self) -> None:
        self.roles = {USER: {rights.custom_role(PROJECT, rights.USER_BUCKET_ROLE)}, VM: {rights.custom_role(PROJECT, rights.VM_BUCKET_ROLE)}}
        self.denied = []
        self.exercised: dict[str, set[str]] = {USER: set(), VM: set()}  # every permission a call needed, by caller

    def permissions(self, member: str) -> set[str]:
        return set().union(*(ROLE_PERMISSIONS.get(r, set()) for r in self.roles.get(member, set())))

    def start(self) -> str:
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def _reply(self, code: int, body: bytes, headers: list[tuple[str, str]] | None = None) -> None:
                self.send_response(code)
                sent = set()
                for k, v in headers or [("Content-Type", "application/json")]:
                    if k.lower() not in ("content-length", "transfer-encoding", "connection"):
                        self.send_header(k, v)
                        sent.add(k.lower())
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def _handle(self, method: str) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length) if length else b""
                auth = self.headers.get("Authorization", "")
                member = VM if auth == f"Bearer {VM_TOKEN}" else USER
                url = urlparse(self.path)
                multi = parse_qs(url.query)
                path, query = unquote(url.path), {k: v[0] for k, v in multi.items()}
                answer = proxy.local_answer(method, path, multi, member)
                if answer is not None:
                    self._reply(200, json.dumps(answer).encode())
                    return
                for permission in proxy.required(method, path, query, raw):
                    proxy.exercised.setdefault(member, set()).add(permission)
                    if permission not in proxy.permissions(member):
                        proxy.denied.append((member, permission, path))
                        who = member.split(":", 1)[1]
                        text = f"{who} does not have {permission} access to the Google Cloud Storage bucket. Permission '{permission}' denied on resource (or it may not exist)."
                        body = {"error": {"code": 403, "message": text, "errors": [{"message": text, "domain": "global", "reason": "forbidden"}]}}
                        self._reply(403, json.dumps(body).encode())
                        return
                conn = http.client.HTTPConnection(*proxy.upstream, timeout=30)
                headers = {k: v for k, v in self.headers.items() if k.lower() not in ("host", "authorization", "connection")}
                conn.request(method, self.path, body=raw or None, headers=headers)
                resp = conn.getresponse()
                data = resp.read()
                conn.close()
                self._reply(resp.status, data, resp.getheaders())

            def do_GET(self):
                self._handle("GET")

            def do_POST(self):
                self._handle("POST")

            def do_PUT(self):
                self._handle("PUT")

            def do_PATCH(self):
                self._handle("PATCH")

            def do_DELETE(self):
                self._handle("DELETE")

        self.server = ThreadingHTTPServer(("127.0.0.1", free_port()), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.endpoint = f"http://127.0.0.1:{self.server.server_address[1]}"
        return self.endpoint

    def stop(self) -> None:
        if self.server:
            self.server.shutdown()
            self.server.server_close()

    # -- Cloud Storage's rules

    def local_answer(self, method: str, path: str, multi: dict, member: str) -> dict | None:
        """testIamPermissions (needs no right) and getIamPolicy, from the proxy's own policy."""
        if re.fullmatch(r"/storage/v1/b/[^/]+/iam/testPermissions", path):
            held = self.permissions(member)
            return {"kind": "storage#testIamPermissionsResponse", "permissions": [p for p in multi.get("permissions", []) if p in held]}
        if re.fullmatch(r"/storage/v1/b/[^/]+/iam", path) and method == "GET" and "storage.buckets.getIamPolicy" in self.permissions(member):
            self.exercised.setdefault(member, set()).add("storage.buckets.getIamPolicy")
            by_role: dict[str, list[str]] = {}
            for who, roles in self.roles.items():
                for role in roles:
                    by_role.setdefault(role, []).append(who)
            return {"kind": "storage#policy", "version": 3, "etag": "CAE=", "bindings": [{"role": r, "members": sorted(m)} for r, m in sorted(by_role.items())]}
        return None

    def required(self, method: str, path: str, query: dict, raw: bytes) -> list[str]:
        if re.fullmatch(r"/storage/v1/b/[^/]+", path) and method == "GET":
            return ["storage.buckets.get"]
        if re.fullmatch(r"/storage/v1/b/[^/]+/iam", path):
            return ["storage.buckets.getIamPolicy" if method == "GET" else "storage.buckets.setIamPolicy"]
        if re.fullmatch(r"/storage/v1/b/[^/]+/o", path) and method == "GET":
            return ["storage.objects.list"]
        if m := re.fullmatch(r"/(?:download/)?storage/v1/b/([^/]+)/o/(.+)", path):
            return {"GET": ["storage.objects.get"], "DELETE": ["storage.objects.delete"]}.get(method, ["storage.objects.update"])
        if m := re.fullmatch(r"/upload/storage/v1/b/([^/]+)/o", path):
            name = query.get("name") or _multipart_name(raw)
            needed = ["storage.objects.create"]
            if name and self._exists(m.group(1), name):
                needed.append("storage.objects.delete")  # an upload that replaces an object deletes it
            return needed
        return []

    def _exists(self, bucket: str, name: str) -> bool:
        conn = http.client.HTTPConnection(*self.upstream, timeout=30)
        conn.request("GET", f"/storage/v1/b/{bucket}/o/{_quote(name)}")
        resp = conn.getresponse()
        resp.read()
        conn.close()
        return resp.status == 200


def _quote(name: str) -> str:
    from urllib.parse import quote

    return quote(name, safe="")


def _multipart_name(raw: bytes) -> str | None:
    found = re.search(rb'"name"\s*:\s*"([^"]+)"', raw[:4096])
    return found.group(1).decode() if found else None
