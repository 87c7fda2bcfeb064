"""A fake Compute Engine (and the IAM, Resource Manager and Secret Manager calls a preflight
makes) on 127.0.0.1, for the real google-cloud-compute REST client. No tests here.

Strict where budgetft can get a request wrong, as the real API is: the machine type and GPU must
exist in the zone (and the GPU attach to an N1 of few enough vCPUs), scheduling must be a valid
combination (Spot without automatic restart, GPUs without live migration, a maxRunDuration of
30 s to 120 days with a termination action), the boot disk at least its image's size, required
fields present, the network and the service account real, a repeated requestId acting once.
Quota is counted as the real API counts it.

Faults a test switches on (`Faults`): a stockout per zone (on the operation, at once, or leaving
a started instance behind), a quota refusal per metric at insert, 429 / rateLimitExceeded, 5xx,
operations that take several polls, an organisation policy against external addresses,
UNSUPPORTED_OPERATION per zone, and, on a live VM, a Spot preemption or a maxRunDuration expiry.
"""

from __future__ import annotations

import json
import re
import socket
import threading
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, unquote, urlparse

PROJECT = "test-project"
SA = f"budgetft-vm@{PROJECT}.iam.gserviceaccount.com"
DLVM = "deeplearning-platform-release"
REGION_ZONES = {
    "us-central1": ["us-central1-a", "us-central1-b", "us-central1-c", "us-central1-f"],
    "us-east1": ["us-east1-b", "us-east1-c", "us-east1-d"],
    "us-west1": ["us-west1-a", "us-west1-b", "us-west1-c"],
    "europe-west4": ["europe-west4-a", "europe-west4-b", "europe-west4-c"],
}
MACHINES = {"n1-standard-4": 4, "n1-standard-8": 8, "n1-standard-16": 16, "g2-standard-4": 4, "g2-standard-8": 8, "g2-standard-16": 16,
            "a2-highgpu-1g": 12, "a2-ultragpu-1g": 12, "a3-highgpu-1g": 26}
GPUS = {"nvidia-tesla-t4": {1: 48, 2: 48, 4: 96}, "nvidia-tesla-v100": {1: 12, 2: 24, 4: 48, 8: 96}, "nvidia-tesla-p100": {1: 16, 2: 32, 4: 64},
        "nvidia-l4": {}, "nvidia-tesla-a100": {}, "nvidia-a100-80gb": {}, "nvidia-h100-80gb": {}}
GPU_METRIC = {"nvidia-tesla-t4": "NVIDIA_T4_GPUS", "nvidia-tesla-v100": "NVIDIA_V100_GPUS", "nvidia-tesla-p100": "NVIDIA_P100_GPUS"}
BUILT_IN = {"g2-": ("nvidia-l4", "NVIDIA_L4_GPUS"), "a2-highgpu": ("nvidia-tesla-a100", "NVIDIA_A100_GPUS"),
            "a2-ultragpu": ("nvidia-a100-80gb", "NVIDIA_A100_80GB_GPUS"), "a3-": ("nvidia-h100-80gb", "NVIDIA_H100_GPUS")}
IMAGE_FAMILY = "pytorch-2-9-cu129-ubuntu-2404-nvidia-580"
LAUNCHER_PERMISSIONS_GRANTED = "all"  # see Fake.user_permissions


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def stamp(dt: datetime) -> str:
    """Compute Engine's timestamp style: RFC 3339 with milliseconds and the Pacific offset."""
    return dt.astimezone(timezone(timedelta(hours=-7))).isoformat(timespec="milliseconds")


def now() -> datetime:
    return datetime.now(timezone.utc)


def error(code: int, message: str, reason: str) -> dict:
    return {"error": {"code": code, "message": message, "errors": [{"message": message, "domain": "global", "reason": reason}]}}


@dataclass
class Faults:
    """Injected failures; counted ones are used up as they fire."""

    stockouts: dict[str, dict] = field(default_factory=dict)  # zone -> {spot: bool|None, sync: bool, leftover: bool}
    unsupported: set[str] = field(default_factory=set)  # zones answering UNSUPPORTED_OPERATION
    insert_quota: list[dict] = field(default_factory=list)  # {metric, region|None (global), sync, spot|None}
    throttles: list[list] = field(default_factory=list)  # [path regex, status, reason, times left]
    slow_polls: int = 0  # an operation is DONE only after this many polls
    no_external_ip: bool = False  # constraints/compute.vmExternalIpAccess

    def take_throttle(self, method: str, path: str) -> tuple[int, str] | None:
        for entry in self.throttles:
            pattern, status, reason, left = entry
            if left > 0 and re.search(pattern, f"{method} {path}"):
                entry[3] -= 1
                return status, reason
        return None


class FakeCompute:
    def __init__(self, project: str = PROJECT):
        self.project = project
        self.instances: dict[tuple[str, str], dict] = {}
        self.operations: dict[str, dict] = {}
        self.by_request_id: dict[str, str] = {}
        self.insert_request_ids: list[str | None] = []  # every insert's requestId, retries included
        self.requests: list[tuple[str, str, dict | None]] = []
        self.lock = threading.RLock()
        self.faults = Faults()
        self.api_disabled = False
        self.region_quotas: dict[str, dict[str, tuple[float, float]]] = {}  # region -> metric -> (limit, usage); default below
        self.default_quotas = {"NVIDIA_V100_GPUS": 4.0, "PREEMPTIBLE_NVIDIA_V100_GPUS": 4.0, "NVIDIA_T4_GPUS": 4.0, "NVIDIA_L4_GPUS": 4.0,
                               "NVIDIA_P100_GPUS": 4.0, "NVIDIA_A100_GPUS": 1.0, "NVIDIA_A100_80GB_GPUS": 1.0, "NVIDIA_H100_GPUS": 1.0, "CPUS": 96.0}
        self.project_quotas = {"GPUS_ALL_REGIONS": (8.0, 0.0), "CPUS_ALL_REGIONS": (64.0, 0.0)}
        self.zone_gpus: dict[str, set[str]] = {z: set(GPUS) for zones in REGION_ZONES.values() for z in zones}
        self.zone_machines: dict[str, set[str]] = {z: set(MACHINES) for zones in REGION_ZONES.values() for z in zones}
        self.images = {IMAGE_FAMILY: {"name": f"{IMAGE_FAMILY}-v20261120", "diskSizeGb": "50", "status": "READY"}}
        self.networks = {"default": {"auto": True, "pga": {r: False for r in REGION_ZONES}}}
        self.nat_regions: set[str] = set()
        self.service_accounts = {SA}
        self.user_permissions: set[str] | str = LAUNCHER_PERMISSIONS_GRANTED  # "all" or a set
        self.enforce = False  # refuse a call whose permission user_permissions lacks, as IAM does
        self.exercised: set[str] = set()  # every permission a call needed
        self.may_act_as = True
        self.project_bindings = [{"role": f"projects/{project}/roles/budgetftVmSelfDelete", "members": [f"serviceAccount:{SA}"]}]
        self.secrets: dict[str, set[str]] = {}  # secret name -> members holding secretAccessor
        self.on_insert = None  # callable(fake, zone, name, body), run in a thread: the "VM"
        self.server: ThreadingHTTPServer | None = None
        self.endpoint = ""

    # -- test helpers

    def quota(self, region: str, metric: str, limit: float, usage: float = 0.0) -> None:
        self.region_quotas.setdefault(region, {})[metric] = (limit, usage)

    def quotas_of(self, region: str) -> dict[str, tuple[float, float]]:
        got = {m: (lim, 0.0) for m, lim in self.default_quotas.items()}
        got.update(self.region_quotas.get(region, {}))
        used = self._gpu_usage(region)
        return {m: (lim, use + used.get(m, 0.0)) for m, (lim, use) in got.items()}

    def set_status(self, zone: str, name: str, status: str) -> None:
        with self.lock:
            inst = self.instances.get((zone, name))
            if inst is None:
                return
            inst["status"] = status
            if status == "TERMINATED":
                inst["lastStopTimestamp"] = stamp(now())

    def vanish(self, zone: str, name: str) -> None:
        """Gone without a record (e.g. deleted by hand): no operation says why."""
        with self.lock:
            self.instances.pop((zone, name), None)

    def preempt(self, zone: str, name: str) -> None:
        """A Spot preemption with instanceTerminationAction=DELETE: gone, and the zone's
        operations record compute.instances.preempted (a system event)."""
        with self.lock:
            self._system_event(zone, name, "compute.instances.preempted")
            self.instances.pop((zone, name), None)

    def delete_by(self, zone: str, name: str, user: str) -> None:
        """Deleted by someone's request (the VM deleting itself: its service account)."""
        with self.lock:
            if (zone, name) in self.instances:
                self._system_event(zone, name, "delete", user=user)
                self.instances.pop((zone, name), None)

    def expire(self, zone: str, name: str) -> None:
        """Its maxRunDuration ran out: Compute Engine deletes it (a system event)."""
        with self.lock:
            if (zone, name) in self.instances:
                self._system_event(zone, name, "delete", user="system")
                self.instances.pop((zone, name), None)

    def add_instance(self, zone: str, name: str, labels: dict, *, machine="n1-standard-8", gpu="nvidia-tesla-v100", spot=False, age_s=600.0, status="RUNNING") -> dict:
        created = now() - timedelta(seconds=age_s)
        inst = {
            "kind": "compute#instance", "id": str(uuid.uuid4().int % 10**18), "name": name,
            "zone": self._link(f"zones/{zone}"), "machineType": self._link(f"zones/{zone}/machineTypes/{machine}"),
            "status": status, "labels": labels, "creationTimestamp": stamp(created), "lastStartTimestamp": stamp(created),
            "scheduling": {"provisioningModel": "SPOT" if spot else "STANDARD"}, "disks": [{"boot": True, "diskSizeGb": "50"}],
        }
        if gpu:
            inst["guestAccelerators"] = [{"acceleratorType": f"zones/{zone}/acceleratorTypes/{gpu}", "acceleratorCount": 1}]
        with self.lock:
            self.instances[(zone, name)] = inst
        return inst

    def inserts(self) -> list[tuple[str, dict]]:
        return [(p.split("/zones/")[1].split("/")[0], b) for m, p, b in self.requests if m == "POST" and p.endswith("/instances")]

    def deletes(self) -> list[str]:
        return [p for m, p, _ in self.requests if m == "DELETE"]

    # -- server

    def start(self) -> str:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def _handle(self, method: str) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length) if length else b""
                body = json.loads(raw) if raw else None
                url = urlparse(self.path)
                query = {k: v[0] for k, v in parse_qs(url.query).items()}
                with fake.lock:
                    fake.requests.append((method, url.path, body))
                code, reply = fake.route(method, unquote(url.path), query, body)
                data = json.dumps(reply).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self):
                self._handle("GET")

            def do_POST(self):
                self._handle("POST")

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

    # -- routing

    def route(self, method: str, path: str, query: dict, body: dict | None) -> tuple[int, dict]:
        if method == "POST" and path.endswith("/instances"):
            self.insert_request_ids.append(query.get("requestId"))
        throttled = self.faults.take_throttle(method, path)
        if throttled:
            status, reason = throttled
            text = ("Quota exceeded for quota metric 'Queries' and limit 'Queries per minute' of service 'compute.googleapis.com'"
                    if reason == "rateLimitExceeded" else "The service is currently unavailable.")
            return status, error(status, text, reason)
        needed = required_permissions(method, path, body, self.project)
        self.exercised |= needed
        if self.enforce and self.user_permissions != "all" and needed - set(self.user_permissions):
            missing = sorted(needed - set(self.user_permissions))[0]
            return 403, error(403, f"Required '{missing}' permission for 'projects/{self.project}'", "forbidden")
        if path.startswith("/v1/"):
            return self._iam_route(method, path, body or {})
        with self.lock:
            return self._compute_route(method, path, query, body)

    def _compute_route(self, method: str, path: str, query: dict, body: dict | None) -> tuple[int, dict]:
        if m := re.fullmatch(rf"/compute/v1/projects/{DLVM}/global/images/(family/)?([^/]+)", path):
            return self._image(m.group(2), bool(m.group(1)))
        base = f"/compute/v1/projects/{self.project}"
        if not path.startswith(base):
            return 404, error(404, f"The resource '{path}' was not found", "notFound")
        if self.api_disabled:
            return 403, {"error": {"code": 403, "message": f"Compute Engine API has not been used in project {self.project} before or it is disabled.",
                                   "errors": [{"message": "disabled", "domain": "usageLimits", "reason": "accessNotConfigured"}],
                                   "details": [{"@type": "type.googleapis.com/google.rpc.ErrorInfo", "reason": "SERVICE_DISABLED", "domain": "googleapis.com"}]}}
        rest = path[len(base):]
        if rest == "":
            return 200, {"name": self.project, "quotas": [{"metric": m, "limit": lim, "usage": use + (self._gpu_usage(None).get("GPUS_ALL_REGIONS", 0) if m == "GPUS_ALL_REGIONS" else 0)}
                                                          for m, (lim, use) in self.project_quotas.items()]}
        if m := re.fullmatch(r"/regions/([^/]+)", rest):
            return self._region(m.group(1))
        if m := re.fullmatch(r"/aggregated/(acceleratorTypes|machineTypes)", rest):
            return self._offered(m.group(1), query.get("filter", ""))
        if m := re.fullmatch(r"/global/networks/([^/]+)", rest):
            net = self.networks.get(m.group(1))
            if net is None:
                return 404, error(404, f"The resource 'projects/{self.project}/global/networks/{m.group(1)}' was not found", "notFound")
            return 200, {"name": m.group(1), "autoCreateSubnetworks": net["auto"], "subnetworks": [self._link(f"regions/{r}/subnetworks/{m.group(1)}") for r in net["pga"]]}
        if m := re.fullmatch(r"/regions/([^/]+)/subnetworks/([^/]+)", rest):
            net = self.networks.get(m.group(2))
            if net is None or m.group(1) not in net["pga"]:
                return 404, error(404, f"The resource 'projects/{self.project}/regions/{m.group(1)}/subnetworks/{m.group(2)}' was not found", "notFound")
            return 200, {"name": m.group(2), "network": self._link(f"global/networks/{m.group(2)}"), "privateIpGoogleAccess": net["pga"][m.group(1)]}
        if m := re.fullmatch(r"/regions/([^/]+)/routers", rest):
            items = [{"name": "nat-router", "network": self._link("global/networks/default"), "nats": [{"name": "nat"}]}] if m.group(1) in self.nat_regions else []
            return 200, {"items": items}
        if rest == "/aggregated/instances" and method == "GET":
            items: dict[str, dict] = {}
            for (zone, _), inst in sorted(self.instances.items()):
                items.setdefault(f"zones/{zone}", {"instances": []})["instances"].append(inst)
            return 200, {"kind": "compute#instanceAggregatedList", "items": items}
        if m := re.fullmatch(r"/zones/([^/]+)/instances", rest):
            zone = m.group(1)
            if method == "POST":
                return self._insert(zone, body or {}, query.get("requestId"))
            return 200, {"items": [i for (z, _), i in self.instances.items() if z == zone]}
        if m := re.fullmatch(r"/zones/([^/]+)/instances/([^/]+)", rest):
            zone, name = m.groups()
            inst = self.instances.get((zone, name))
            if inst is None:
                return 404, error(404, f"The resource 'projects/{self.project}/zones/{zone}/instances/{name}' was not found", "notFound")
            if method == "DELETE":
                return 200, self._operation(zone, "delete", name, on_done=lambda: self.instances.pop((zone, name), None), request_id=query.get("requestId"))
            self._advance(inst)
            return 200, inst
        if m := re.fullmatch(r"/zones/([^/]+)/operations", rest):
            return 200, {"items": self._list_operations(m.group(1), query.get("filter", ""))}
        if m := re.fullmatch(r"/zones/([^/]+)/operations/([^/]+)(/wait)?", rest):
            op = self.operations.get(m.group(2))
            if op is None:
                return 404, error(404, "operation not found", "notFound")
            self._poll(op)
            return 200, op["public"]
        return 404, error(404, f"no fake for {method} {path}", "notFound")

    # -- resources

    def _link(self, rest: str, project: str | None = None) -> str:
        return f"https://www.googleapis.com/compute/v1/projects/{project or self.project}/{rest}"

    def _region(self, region: str) -> tuple[int, dict]:
        zones = REGION_ZONES.get(region)
        if zones is None:
            return 404, error(404, f"The resource 'projects/{self.project}/regions/{region}' was not found", "notFound")
        return 200, {"name": region, "status": "UP", "zones": [self._link(f"zones/{z}") for z in zones],
                     "quotas": [{"metric": m, "limit": lim, "usage": use} for m, (lim, use) in self.quotas_of(region).items()]}

    def _offered(self, kind: str, filt: str) -> tuple[int, dict]:
        wanted = filt.split("=", 1)[1].strip() if "=" in filt else None
        table = self.zone_gpus if kind == "acceleratorTypes" else self.zone_machines
        key = "acceleratorTypes" if kind == "acceleratorTypes" else "machineTypes"
        items = {}
        for zone, names in sorted(table.items()):
            found = [{"name": n, "zone": zone} for n in sorted(names) if wanted in (None, n)]
            items[f"zones/{zone}"] = {key: found} if found else {"warning": {"code": "NO_RESULTS_ON_PAGE"}}
        return 200, {"items": items}

    def _image(self, name: str, family: bool) -> tuple[int, dict]:
        image = self.images.get(name) if family else next((i for i in self.images.values() if i["name"] == name), None)
        if image is None:
            what = f"global/images/family/{name}" if family else f"global/images/{name}"
            return 404, error(404, f"The resource 'projects/{DLVM}/{what}' was not found", "notFound")
        fam = name if family else next(f for f, i in self.images.items() if i["name"] == name)
        return 200, {**image, "family": fam, "selfLink": self._link(f"global/images/{image['name']}", DLVM), "creationTimestamp": stamp(now())}

    def _gpu_usage(self, region: str | None) -> dict[str, float]:
        used: dict[str, float] = {}
        for (zone, _), inst in self.instances.items():
            if region is not None and not zone.startswith(region + "-"):
                continue
            gpu, count, metric = _gpu_of(inst)
            if metric is None:
                continue
            spot = inst.get("scheduling", {}).get("provisioningModel") == "SPOT"
            key = f"PREEMPTIBLE_{metric}" if spot and self.quotas_raw(zone.rsplit('-', 1)[0]).get(f"PREEMPTIBLE_{metric}", 0) > 0 else metric
            used[key] = used.get(key, 0) + count
            used["GPUS_ALL_REGIONS"] = used.get("GPUS_ALL_REGIONS", 0) + count
        return used

    def quotas_raw(self, region: str) -> dict[str, float]:
        got = dict(self.default_quotas)
        got.update({m: lim for m, (lim, _) in self.region_quotas.get(region, {}).items()})
        return got

    # -- insert: validation as Compute Engine does it, then quota, then faults

    def _insert(self, zone: str, body: dict, request_id: str | None) -> tuple[int, dict]:
        if request_id is not None:
            if not re.fullmatch(r"[0-9a-f-]{36}", request_id):
                return 400, error(400, f"Invalid value for field 'requestId': '{request_id}'. The request id must be a valid UUID.", "invalid")
            if request_id in self.by_request_id:  # the same insert, retried: the first one's operation
                return 200, self.operations[self.by_request_id[request_id]]["public"]
        invalid = validate(self, zone, body)
        if invalid:
            code, message = invalid
            reason = {400: "invalid", 404: "notFound"}.get(code, "invalid")
            return code, error(code, message, reason)
        if self.faults.no_external_ip and any(n.get("accessConfigs") for n in body.get("networkInterfaces", [])):
            return 412, error(412, f"Constraint constraints/compute.vmExternalIpAccess violated for project 123456789. Add instance projects/{self.project}/zones/{zone}/instances/{body['name']} to the constraint to use external IP with it.", "conditionNotMet")
        name = body["name"]
        if (zone, name) in self.instances:
            return 409, error(409, f"The resource 'projects/{self.project}/zones/{zone}/instances/{name}' already exists", "alreadyExists")
        spot = body["scheduling"].get("provisioningModel") == "SPOT"
        refused = self._quota_refusal(zone, body, spot)
        if refused is not None:
            sync, problem = refused
            if sync:
                return 403, error(403, problem["message"], "quotaExceeded")
            return 200, self._operation(zone, "insert", name, error=problem, request_id=request_id)
        if zone in self.faults.unsupported:
            return 200, self._operation(zone, "insert", name, error={"code": "UNSUPPORTED_OPERATION", "message": f"The selected machine type is not supported for this operation in zone {zone}."}, request_id=request_id)
        stock = self.faults.stockouts.get(zone)
        if stock is not None and stock.get("spot") in (None, spot):
            message = f"The zone 'projects/{self.project}/zones/{zone}' does not have enough resources available to fulfill the request.  Try a different zone, or try again later."
            if stock.get("sync"):
                return 503, error(503, message, "ZONE_RESOURCE_POOL_EXHAUSTED")
            if stock.get("leftover"):  # it started, then failed: an instance record is left, billed
                self._create(zone, body, started=True, status="TERMINATED")
            return 200, self._operation(zone, "insert", name, error={"code": "ZONE_RESOURCE_POOL_EXHAUSTED", "message": message}, request_id=request_id)
        self._create(zone, body)
        op = self._operation(zone, "insert", name, request_id=request_id)
        if self.on_insert is not None:
            threading.Thread(target=self.on_insert, args=(self, zone, name, body), daemon=True).start()
        return 200, op

    def _quota_refusal(self, zone: str, body: dict, spot: bool) -> tuple[bool, dict] | None:
        region = zone.rsplit("-", 1)[0]
        gpu, count, metric = _gpu_of(body)
        for fault in self.faults.insert_quota:
            if fault.get("spot") in (None, spot) and (fault.get("region") in (None, region)):
                return fault.get("sync", True), _quota_problem(fault["metric"], 0.0, fault.get("region"))
        if metric is None:
            return None
        limit, usage = self.project_quotas.get("GPUS_ALL_REGIONS", (float("inf"), 0.0))
        if self._gpu_usage(None).get("GPUS_ALL_REGIONS", 0) + usage + count > limit:
            return True, _quota_problem("GPUS_ALL_REGIONS", limit, None)
        raw = self.quotas_raw(region)
        pre = f"PREEMPTIBLE_{metric}"
        short = int(body["scheduling"].get("maxRunDuration", {}).get("seconds", 10**9)) <= 7 * 24 * 3600
        drawn = pre if (spot or short) and raw.get(pre, 0) > 0 else metric
        lim, use = self.quotas_of(region).get(drawn, (0.0, 0.0))
        if use + count > lim:
            return False, _quota_problem(drawn, lim, region)
        return None

    def _create(self, zone: str, body: dict, started: bool = False, status: str = "PROVISIONING") -> None:
        inst = json.loads(json.dumps(body))
        for disk in inst.get("disks", []):  # a created instance reports its disks' sizes at the top
            disk["diskSizeGb"] = (disk.get("initializeParams") or {}).get("diskSizeGb", "10")
        created = now() - timedelta(seconds=40 if started else 0)
        inst.update(kind="compute#instance", id=str(uuid.uuid4().int % 10**18), zone=self._link(f"zones/{zone}"), status=status, creationTimestamp=stamp(created))
        if started:
            inst["lastStartTimestamp"] = stamp(created + timedelta(seconds=10))
            inst["lastStopTimestamp"] = stamp(now())
        self.instances[(zone, body["name"])] = inst

    def _advance(self, inst: dict) -> None:
        """PROVISIONING -> STAGING -> RUNNING, one step per GET, as a real boot looks from outside."""
        nxt = {"PROVISIONING": "STAGING", "STAGING": "RUNNING"}.get(inst["status"])
        if nxt:
            inst["status"] = nxt
            if nxt == "RUNNING":
                inst["lastStartTimestamp"] = stamp(now())

    # -- operations

    def _operation(self, zone: str, kind: str, target: str, error: dict | None = None, on_done=None, request_id: str | None = None) -> dict:
        name = f"operation-{uuid.uuid4().hex[:12]}"
        public = {"kind": "compute#operation", "name": name, "zone": self._link(f"zones/{zone}"), "operationType": kind,
                  "targetLink": self._link(f"zones/{zone}/instances/{target}"), "status": "RUNNING", "progress": 0,
                  "insertTime": stamp(now()), "startTime": stamp(now()), "user": "you@example.com"}
        self.operations[name] = {"public": public, "error": error, "on_done": on_done, "polls": 0}
        if request_id is not None:
            self.by_request_id[request_id] = name
        return dict(public)

    def _system_event(self, zone: str, target: str, kind: str, user: str = "system") -> None:
        name = f"systemevent-{uuid.uuid4().hex[:12]}"
        public = {"kind": "compute#operation", "name": name, "zone": self._link(f"zones/{zone}"), "operationType": kind,
                  "targetLink": self._link(f"zones/{zone}/instances/{target}"), "status": "DONE", "progress": 100,
                  "insertTime": stamp(now()), "startTime": stamp(now()), "endTime": stamp(now()), "user": user}
        self.operations[name] = {"public": public, "error": None, "on_done": None, "polls": 0}

    def _poll(self, op: dict) -> None:
        public = op["public"]
        if public["status"] == "DONE":
            return
        op["polls"] += 1
        if op["polls"] <= self.faults.slow_polls:
            public["progress"] = min(90, 30 * op["polls"])
            return
        public.update(status="DONE", progress=100, endTime=stamp(now()))
        if op["error"]:
            public["error"] = {"errors": [op["error"]]}
            public["httpErrorStatusCode"] = 403 if op["error"]["code"] == "QUOTA_EXCEEDED" else 503
            public["httpErrorMessage"] = "FORBIDDEN" if op["error"]["code"] == "QUOTA_EXCEEDED" else "SERVICE UNAVAILABLE"
        if op["on_done"]:
            op["on_done"]()

    def _list_operations(self, zone: str, filt: str) -> list[dict]:
        target = re.search(r'targetLink\s*=\s*"([^"]+)"', filt)
        kind = re.search(r'operationType\s*=\s*"([^"]+)"', filt)
        out = []
        for op in self.operations.values():
            pub = op["public"]
            if not pub["zone"].endswith(f"/zones/{zone}"):
                continue
            if target and pub["targetLink"] != target.group(1):
                continue
            if kind and pub["operationType"] != kind.group(1):
                continue
            out.append(pub)
        return out

    # -- IAM, Resource Manager, Secret Manager

    def _iam_route(self, method: str, path: str, body: dict) -> tuple[int, dict]:
        if m := re.fullmatch(rf"/v1/projects/{self.project}:testIamPermissions", path):
            wanted = body.get("permissions", [])
            held = wanted if self.user_permissions == "all" else [p for p in wanted if p in self.user_permissions]
            return 200, {"permissions": held} if held else {}
        if re.fullmatch(rf"/v1/projects/{self.project}:getIamPolicy", path):
            return 200, {"version": 3, "bindings": self.project_bindings}
        if m := re.fullmatch(r"/v1/projects/-/serviceAccounts/([^/:]+):testIamPermissions", path):
            if m.group(1) not in self.service_accounts:
                return 404, {"error": {"code": 404, "message": f"Unknown service account {m.group(1)}", "status": "NOT_FOUND"}}
            return 200, {"permissions": ["iam.serviceAccounts.actAs"]} if self.may_act_as else {}
        if m := re.fullmatch(rf"/v1/projects/{self.project}/secrets/([^/:]+)(:getIamPolicy)?", path):
            readers = self.secrets.get(m.group(1))
            if readers is None:
                return 404, {"error": {"code": 404, "message": f"Secret [{m.group(1)}] not found or has no versions.", "status": "NOT_FOUND"}}
            if m.group(2):
                return 200, {"bindings": [{"role": "roles/secretmanager.secretAccessor", "members": sorted(readers)}]}
            return 200, {"name": f"projects/{self.project}/secrets/{m.group(1)}"}
        return 404, {"error": {"code": 404, "message": f"no fake for {method} {path}", "status": "NOT_FOUND"}}


ROUTE_PERMISSIONS = [
    ("GET", r"/compute/v1/projects/[^/]+", {"compute.projects.get"}),
    ("GET", r".*/regions/[^/]+", {"compute.regions.get"}),
    ("GET", r".*/aggregated/acceleratorTypes", {"compute.acceleratorTypes.list"}),
    ("GET", r".*/aggregated/machineTypes", {"compute.machineTypes.list"}),
    ("GET", r".*/aggregated/instances", {"compute.instances.list"}),
    ("GET", r".*/global/networks/[^/]+", {"compute.networks.get"}),
    ("GET", r".*/regions/[^/]+/subnetworks/[^/]+", {"compute.subnetworks.get"}),
    ("GET", r".*/regions/[^/]+/routers", {"compute.routers.list"}),
    ("GET", r".*/zones/[^/]+/instances/[^/]+", {"compute.instances.get"}),
    ("DELETE", r".*/zones/[^/]+/instances/[^/]+", {"compute.instances.delete"}),
    ("GET", r".*/zones/[^/]+/operations", {"compute.zoneOperations.list"}),
    (".*", r".*/zones/[^/]+/operations/[^/]+(/wait)?", {"compute.zoneOperations.get"}),
    ("POST", r"/v1/projects/[^/:]+:getIamPolicy", {"resourcemanager.projects.getIamPolicy"}),
]


def required_permissions(method: str, path: str, body: dict | None, project: str) -> set[str]:
    """The IAM permissions Compute Engine (or Resource Manager) checks for this call, as the
    caller's; public images and testIamPermissions need none."""
    if f"/projects/{DLVM}/" in path or path.endswith(":testIamPermissions") or "/secrets/" in path:
        return set()
    if method == "POST" and re.fullmatch(r".*/zones/[^/]+/instances", path):
        body = body or {}
        needed = {"compute.instances.create", "compute.disks.create", "compute.subnetworks.use"}
        if any(n.get("accessConfigs") for n in body.get("networkInterfaces", [])):
            needed.add("compute.subnetworks.useExternalIp")
        if (body.get("metadata") or {}).get("items"):
            needed.add("compute.instances.setMetadata")
        if body.get("labels"):
            needed.add("compute.instances.setLabels")
        if body.get("serviceAccounts"):
            needed.add("compute.instances.setServiceAccount")
        return needed
    for verb, pattern, perms in ROUTE_PERMISSIONS:
        if re.fullmatch(verb, method) and re.fullmatch(pattern, path):
            return set(perms)
    return set()


def _quota_problem(metric: str, limit: float, region: str | None) -> dict:
    where = f"in region {region}" if region else "globally"
    info = {"metricName": f"compute.googleapis.com/{metric.lower()}", "limitName": f"{metric.replace('_', '-')}-per-project" + ("-region" if region else ""),
            "dimensions": {"region": region} if region else {}, "limit": limit}
    return {"code": "QUOTA_EXCEEDED", "message": f"Quota '{metric}' exceeded.  Limit: {limit} {where}.", "errorDetails": [{"quotaInfo": info}]}


def _gpu_of(inst: dict) -> tuple[str | None, int, str | None]:
    accels = inst.get("guestAccelerators") or []
    if accels:
        gpu = accels[0]["acceleratorType"].rsplit("/", 1)[-1]
        return gpu, int(accels[0].get("acceleratorCount", 1)), GPU_METRIC.get(gpu)
    machine = inst.get("machineType", "").rsplit("/", 1)[-1]
    for prefix, (gpu, metric) in BUILT_IN.items():
        if machine.startswith(prefix):
            return gpu, int(machine.rsplit("-", 1)[-1].rstrip("g") or 1) if machine.endswith("g") else 1, metric
    return None, 0, None


def validate(fake: FakeCompute, zone: str, body: dict) -> tuple[int, str] | None:
    """What Compute Engine refuses in an insert that budgetft could get wrong; None when valid."""
    bad = lambda f, v, why: (400, f"Invalid value for field 'resource.{f}': '{v}'. {why}")  # noqa: E731
    for required in ("name", "machineType", "disks", "networkInterfaces"):
        if not body.get(required):
            return 400, f"Required field 'resource.{required}' not specified"
    if not re.fullmatch(r"[a-z]([-a-z0-9]{0,61}[a-z0-9])?", body["name"]):
        return bad("name", body["name"], "Must be a match of regex '(?:[a-z](?:[-a-z0-9]{0,61}[a-z0-9])?)'")
    m = re.fullmatch(r"zones/([^/]+)/machineTypes/([^/]+)", body["machineType"])
    if not m or m.group(1) != zone:
        return bad("machineType", body["machineType"], "Machine type is not in this zone.")
    machine = m.group(2)
    if machine not in fake.zone_machines.get(zone, set()):
        return bad("machineType", body["machineType"], f"Machine type with name '{machine}' does not exist in zone '{zone}'.")
    accels = body.get("guestAccelerators") or []
    sched = body.get("scheduling") or {}
    for a in accels:
        am = re.fullmatch(r"zones/([^/]+)/acceleratorTypes/([^/]+)", a.get("acceleratorType", ""))
        if not am or am.group(1) != zone:
            return bad("guestAccelerators[0].acceleratorType", a.get("acceleratorType"), "Accelerator type is not in this zone.")
        gpu, count = am.group(2), int(a.get("acceleratorCount", 0))
        if gpu not in fake.zone_gpus.get(zone, set()):
            return 404, f"The resource 'projects/{fake.project}/zones/{zone}/acceleratorTypes/{gpu}' was not found"
        if not machine.startswith("n1-"):
            return bad("guestAccelerators", gpu, f"Accelerators cannot be attached to machine type {machine}; its GPUs are built in.")
        limits = GPUS.get(gpu) or {}
        if limits and count not in limits:
            return bad("guestAccelerators[0].acceleratorCount", count, f"{gpu} attaches in counts of {sorted(limits)}.")
        if limits and MACHINES[machine] > limits[count]:
            return bad("machineType", machine, f"{count} x {gpu} allows at most {limits[count]} vCPUs.")
    has_gpu = bool(accels) or any(machine.startswith(p) for p in BUILT_IN)
    if has_gpu and sched.get("onHostMaintenance", "MIGRATE") != "TERMINATE":
        return bad("scheduling.onHostMaintenance", sched.get("onHostMaintenance", "MIGRATE"), "Instances with guest accelerators do not support live migration.")
    model = sched.get("provisioningModel", "STANDARD")
    if model not in ("STANDARD", "SPOT"):
        return bad("scheduling.provisioningModel", model, "Unknown provisioning model.")
    if model == "SPOT" and sched.get("automaticRestart", True):
        return bad("scheduling.automaticRestart", "true", "Spot instances cannot be automatically restarted.")
    if sched.get("preemptible") and model == "SPOT":
        return bad("scheduling.preemptible", "true", "preemptible and provisioningModel SPOT cannot both be set.")
    duration = sched.get("maxRunDuration")
    action = sched.get("instanceTerminationAction")
    if duration is not None:
        seconds = int(duration.get("seconds", 0))
        if not 30 <= seconds <= 120 * 86400:
            return bad("scheduling.maxRunDuration.seconds", seconds, "Must be between 30 seconds and 120 days.")
        if action not in ("STOP", "DELETE"):
            return bad("scheduling.instanceTerminationAction", action, "Required with maxRunDuration: STOP or DELETE.")
    elif action is not None and model == "STANDARD":
        return bad("scheduling.instanceTerminationAction", action, "Only valid with maxRunDuration, terminationTime or Spot.")
    boots = [d for d in body["disks"] if d.get("boot")]
    if len(boots) != 1:
        return 400, "Exactly one boot disk is required."
    init = boots[0].get("initializeParams") or {}
    source = init.get("sourceImage", "")
    im = re.fullmatch(rf"(?:https://www.googleapis.com/compute/v1/)?projects/{DLVM}/global/images/(family/)?([^/]+)", source)
    image = None
    if im:
        image = fake.images.get(im.group(2)) if im.group(1) else next((i for i in fake.images.values() if i["name"] == im.group(2)), None)
    if image is None:
        return 404, f"The resource '{source}' was not found"
    size = int(init.get("diskSizeGb") or image["diskSizeGb"])
    if size < int(image["diskSizeGb"]):
        return bad("disks[0].initializeParams.diskSizeGb", size, f"Requested disk size cannot be smaller than the image size ({image['diskSizeGb']} GB)")
    dt = re.fullmatch(r"zones/([^/]+)/diskTypes/([^/]+)", init.get("diskType", f"zones/{zone}/diskTypes/pd-standard"))
    if not dt or dt.group(1) != zone or dt.group(2) not in ("pd-standard", "pd-balanced", "pd-ssd"):
        return bad("disks[0].initializeParams.diskType", init.get("diskType"), "Disk type is not valid in this zone.")
    for nic in body["networkInterfaces"]:
        net = (nic.get("network") or "global/networks/default").rsplit("/", 1)[-1]
        if net not in fake.networks:
            return 404, f"The resource 'projects/{fake.project}/global/networks/{net}' was not found"
        for ac in nic.get("accessConfigs") or []:
            if ac.get("type", "ONE_TO_ONE_NAT") != "ONE_TO_ONE_NAT":
                return bad("networkInterfaces[0].accessConfigs[0].type", ac.get("type"), "Must be ONE_TO_ONE_NAT.")
    for sa in body.get("serviceAccounts") or []:
        if sa.get("email") not in fake.service_accounts:
            return 400, f"The resource 'projects/{fake.project}/serviceAccounts/{sa.get('email')}' was not found"
        if not sa.get("scopes"):
            return bad("serviceAccounts[0].scopes", "[]", "A service account needs at least one scope.")
    for key, value in (body.get("labels") or {}).items():
        if not re.fullmatch(r"[a-z][a-z0-9_-]{0,62}", key) or not re.fullmatch(r"[a-z0-9_-]{0,63}", value):
            return bad(f"labels.{key}", value, "Label keys and values: lowercase letters, digits, '_' and '-', at most 63 characters.")
    items = (body.get("metadata") or {}).get("items") or []
    if sum(len(i.get("key", "")) + len(i.get("value", "")) for i in items) > 512 * 1024:
        return 400, "Metadata exceeds the 512 KB limit."
    return None
