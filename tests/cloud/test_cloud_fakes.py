"""Test doubles for the cloud tests (no tests here): a fake Compute Engine REST API on 127.0.0.1
that the real google-cloud-compute client talks to, gcp-storage-emulator for the bucket, and a
sandboxed "VM" that runs the real rendered start-up script with its install and GPU steps
replaced by stubs. Nothing here reaches the real Google Cloud."""

from __future__ import annotations

import json
import re
import socket
import stat
import subprocess
import sys
import threading
import time
import uuid
from datetime import datetime, timedelta, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import urlparse

import pytest

PROJECT = "test-project"
BUCKET = "budgetft-test"
REGION_ZONES = {
    "us-central1": ["us-central1-a", "us-central1-b", "us-central1-c", "us-central1-f"],
    "us-east1": ["us-east1-b", "us-east1-c", "us-east1-d"],
}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def stamp(dt: datetime) -> str:
    """Compute Engine's timestamp style: RFC 3339 with milliseconds and the Pacific offset."""
    return dt.astimezone(timezone(timedelta(hours=-7))).isoformat(timespec="milliseconds")


# ----------------------------------------------------------------------------- fake Compute API


class FakeCompute:
    """Just enough of compute/v1 for budgetft: regions.get, instances insert/get/list/delete/
    aggregatedList and zoneOperations get/wait, with failures that tests switch on."""

    def __init__(self, project: str = PROJECT):
        self.project = project
        self.instances: dict[tuple[str, str], dict] = {}
        self.operations: dict[str, dict] = {}
        self.requests: list[tuple[str, str, dict | None]] = []
        self.lock = threading.RLock()
        # switches
        self.exhausted_zones: set[str] = set()  # insert's operation fails ZONE_RESOURCE_POOL_EXHAUSTED
        self.quota_on_insert = False  # insert is refused with HTTP 403 quotaExceeded
        self.api_disabled = False  # every call: 403 SERVICE_DISABLED
        self.quotas = {"NVIDIA_V100_GPUS": (4.0, 0.0), "PREEMPTIBLE_NVIDIA_V100_GPUS": (4.0, 0.0), "NVIDIA_T4_GPUS": (4.0, 0.0), "NVIDIA_L4_GPUS": (4.0, 0.0)}
        self.project_quotas = {"GPUS_ALL_REGIONS": (8.0, 0.0), "CPUS_ALL_REGIONS": (64.0, 0.0)}
        self.on_insert = None  # callable(fake, zone, name, body), run in a thread: the "VM"
        self.server: ThreadingHTTPServer | None = None
        self.endpoint = ""

    # -- test helpers

    def set_status(self, zone: str, name: str, status: str) -> None:
        with self.lock:
            inst = self.instances.get((zone, name))
            if inst is None:
                return
            inst["status"] = status
            if status == "TERMINATED":
                inst["lastStopTimestamp"] = stamp(datetime.now(timezone.utc))

    def vanish(self, zone: str, name: str) -> None:
        """What a Spot preemption with instanceTerminationAction=DELETE looks like: gone."""
        with self.lock:
            self.instances.pop((zone, name), None)

    def add_instance(self, zone: str, name: str, labels: dict, *, machine="n1-standard-8", gpu="nvidia-tesla-v100", spot=False, age_s=600.0, status="RUNNING") -> dict:
        created = datetime.now(timezone.utc) - timedelta(seconds=age_s)
        inst = {
            "kind": "compute#instance",
            "id": str(uuid.uuid4().int % 10**18),
            "name": name,
            "zone": f"https://www.googleapis.com/compute/v1/projects/{self.project}/zones/{zone}",
            "machineType": f"https://www.googleapis.com/compute/v1/projects/{self.project}/zones/{zone}/machineTypes/{machine}",
            "status": status,
            "labels": labels,
            "creationTimestamp": stamp(created),
            "lastStartTimestamp": stamp(created),
            "scheduling": {"provisioningModel": "SPOT" if spot else "STANDARD"},
            "disks": [{"boot": True, "diskSizeGb": "50"}],
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
            def log_message(self, *args):  # keep pytest output clean
                pass

            def _reply(self, code: int, body: dict) -> None:
                data = json.dumps(body).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def _handle(self, method: str) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length) if length else b""
                body = json.loads(raw) if raw else None
                path = urlparse(self.path).path
                with fake.lock:
                    fake.requests.append((method, path, body))
                code, reply = fake.route(method, path, body)
                self._reply(code, reply)

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

    # -- the API

    def route(self, method: str, path: str, body: dict | None) -> tuple[int, dict]:
        base = f"/compute/v1/projects/{self.project}"
        if not path.startswith(base):
            return 404, _error(404, f"project not found: {path}", "notFound")
        if self.api_disabled:
            return 403, {
                "error": {
                    "code": 403,
                    "message": f"Compute Engine API has not been used in project {self.project} before or it is disabled.",
                    "errors": [{"message": "disabled", "domain": "usageLimits", "reason": "accessNotConfigured"}],
                    "details": [{"@type": "type.googleapis.com/google.rpc.ErrorInfo", "reason": "SERVICE_DISABLED", "domain": "googleapis.com"}],
                }
            }
        rest = path[len(base):]
        with self.lock:
            if rest == "":
                return 200, {"name": self.project, "quotas": [{"metric": m, "limit": lim, "usage": use} for m, (lim, use) in self.project_quotas.items()]}
            if m := re.fullmatch(r"/regions/([^/]+)", rest):
                return self._region(m.group(1))
            if rest == "/aggregated/instances" and method == "GET":
                items: dict[str, dict] = {}
                for (zone, _), inst in sorted(self.instances.items()):
                    items.setdefault(f"zones/{zone}", {"instances": []})["instances"].append(inst)
                return 200, {"kind": "compute#instanceAggregatedList", "items": items}
            if m := re.fullmatch(r"/zones/([^/]+)/instances", rest):
                zone = m.group(1)
                if method == "POST":
                    return self._insert(zone, body or {})
                return 200, {"items": [i for (z, _), i in self.instances.items() if z == zone]}
            if m := re.fullmatch(r"/zones/([^/]+)/instances/([^/]+)", rest):
                zone, name = m.groups()
                inst = self.instances.get((zone, name))
                if inst is None:
                    return 404, _error(404, f"The resource 'projects/{self.project}/zones/{zone}/instances/{name}' was not found", "notFound")
                if method == "DELETE":
                    return 200, self._operation(zone, "delete", name, on_done=lambda: self.instances.pop((zone, name), None))
                self._advance(inst)
                return 200, inst
            if m := re.fullmatch(r"/zones/([^/]+)/operations/([^/]+)(/wait)?", rest):
                op = self.operations.get(m.group(2))
                if op is None:
                    return 404, _error(404, "operation not found", "notFound")
                self._finish(op)  # get after insert and wait both see it done: one poll
                return 200, op["public"]
        return 404, _error(404, f"no fake for {method} {path}", "notFound")

    def _region(self, region: str) -> tuple[int, dict]:
        zones = REGION_ZONES.get(region)
        if zones is None:
            return 404, _error(404, f"region {region} not found", "notFound")
        return 200, {
            "name": region,
            "status": "UP",
            "zones": [f"https://www.googleapis.com/compute/v1/projects/{self.project}/zones/{z}" for z in zones],
            "quotas": [{"metric": m, "limit": lim, "usage": use} for m, (lim, use) in self.quotas.items()],
        }

    def _insert(self, zone: str, body: dict) -> tuple[int, dict]:
        if self.quota_on_insert:
            return 403, _error(403, "Quota 'NVIDIA_V100_GPUS' exceeded.  Limit: 0.0 in region us-central1.", "quotaExceeded")
        name = body.get("name", "")
        if (zone, name) in self.instances:
            return 409, _error(409, f"The resource '{name}' already exists", "alreadyExists")
        if zone in self.exhausted_zones:
            return 200, self._operation(
                zone, "insert", name,
                error={"code": "ZONE_RESOURCE_POOL_EXHAUSTED", "message": f"The zone 'projects/{self.project}/zones/{zone}' does not have enough resources available to fulfill the request.  Try a different zone, or try again later."},
            )
        now = datetime.now(timezone.utc)
        inst = json.loads(json.dumps(body))
        for disk in inst.get("disks", []):  # a created instance reports its disks' sizes at the top
            disk["diskSizeGb"] = (disk.get("initializeParams") or {}).get("diskSizeGb", "10")
        inst.update(
            kind="compute#instance",
            id=str(uuid.uuid4().int % 10**18),
            zone=f"https://www.googleapis.com/compute/v1/projects/{self.project}/zones/{zone}",
            status="PROVISIONING",
            creationTimestamp=stamp(now),
        )
        self.instances[(zone, name)] = inst
        op = self._operation(zone, "insert", name)
        if self.on_insert is not None:
            threading.Thread(target=self.on_insert, args=(self, zone, name, body), daemon=True).start()
        return 200, op

    def _advance(self, inst: dict) -> None:
        """PROVISIONING -> STAGING -> RUNNING, one step per GET, as a real boot looks from outside."""
        nxt = {"PROVISIONING": "STAGING", "STAGING": "RUNNING"}.get(inst["status"])
        if nxt:
            inst["status"] = nxt
            if nxt == "RUNNING":
                inst["lastStartTimestamp"] = stamp(datetime.now(timezone.utc))

    def _operation(self, zone: str, kind: str, target: str, error: dict | None = None, on_done=None) -> dict:
        name = f"operation-{uuid.uuid4().hex[:12]}"
        public = {
            "kind": "compute#operation",
            "name": name,
            "zone": f"https://www.googleapis.com/compute/v1/projects/{self.project}/zones/{zone}",
            "operationType": kind,
            "targetLink": f"https://www.googleapis.com/compute/v1/projects/{self.project}/zones/{zone}/instances/{target}",
            "status": "RUNNING",
            "progress": 0,
        }
        self.operations[name] = {"public": public, "error": error, "on_done": on_done}
        return dict(public)

    def _finish(self, op: dict) -> None:
        public = op["public"]
        if public["status"] == "DONE":
            return
        public.update(status="DONE", progress=100, endTime=stamp(datetime.now(timezone.utc)))
        if op["error"]:
            public["error"] = {"errors": [op["error"]]}
            public["httpErrorStatusCode"] = 503
            public["httpErrorMessage"] = "SERVICE UNAVAILABLE"
        if op["on_done"]:
            op["on_done"]()


def _error(code: int, message: str, reason: str) -> dict:
    return {"error": {"code": code, "message": message, "errors": [{"message": message, "domain": "global", "reason": reason}]}}


# ----------------------------------------------------------------------------- fixtures


@pytest.fixture
def fake_compute(monkeypatch):
    fake = FakeCompute()
    monkeypatch.setenv("BUDGETFT_GCP_ENDPOINT", fake.start())
    monkeypatch.setenv("GOOGLE_CLOUD_PROJECT", PROJECT)
    yield fake
    fake.stop()


@pytest.fixture(scope="module")
def gcs_server():
    from gcp_storage_emulator.server import create_server

    port = free_port()
    server = create_server("127.0.0.1", port, in_memory=True, default_bucket=BUCKET)
    server.start()
    yield server, f"http://127.0.0.1:{port}"
    server.stop()


@pytest.fixture
def gcs(gcs_server, monkeypatch):
    """The storage emulator, wiped between tests, found through STORAGE_EMULATOR_HOST."""
    server, endpoint = gcs_server
    server.wipe(keep_buckets=True)
    monkeypatch.setenv("STORAGE_EMULATOR_HOST", endpoint)
    monkeypatch.setenv("BUDGETFT_BUCKET", f"gs://{BUCKET}")
    return endpoint


@pytest.fixture
def fast_cloud(monkeypatch):
    """Poll quickly and skip the 5 s wheel build (one test builds the real wheel)."""
    from budgetft.cloud import package, watch

    monkeypatch.setattr(watch, "POLL_SECONDS", 0.1)

    def fake_wheel(out_dir: Path) -> Path:
        path = Path(out_dir) / package.wheel_name()
        path.write_bytes(b"PK fake wheel")
        return path

    monkeypatch.setattr(package, "build_wheel", fake_wheel)


def bucket_client(endpoint: str):
    from google.auth.credentials import AnonymousCredentials
    from google.cloud import storage

    return storage.Client(project=PROJECT, credentials=AnonymousCredentials(), client_options={"api_endpoint": endpoint}).bucket(BUCKET)


# ----------------------------------------------------------------------------- a sandboxed VM

# `gcloud storage rsync|cp` against the emulator's JSON API (STORAGE_EMULATOR_HOST), logging each
# call. Standard library only (python -S): a start-up script calls it a dozen times.
GCLOUD_STUB = r'''#!{python} -S
import json, os, re, sys, urllib.parse, urllib.request
from pathlib import Path
with open(os.environ["FAKE_VM_LOG"], "a") as log:
    log.write("gcloud " + " ".join(sys.argv[1:]) + "\n")
host = os.environ["STORAGE_EMULATOR_HOST"].rstrip("/")
args = [a for a in sys.argv[1:] if not a.startswith("--")]
flags = [a for a in sys.argv[1:] if a.startswith("--")]
exclude = next((f.split("=", 1)[1].strip("'") for f in flags if f.startswith("--exclude=")), None)
assert args[0] == "storage", args
verb, src, dst = args[1], args[2], args[3]
def split(url):
    bucket, _, key = url[5:].partition("/")
    return bucket, key.rstrip("/")
def q(name):
    return urllib.parse.quote(name, safe="")
def names(bucket, prefix):
    with urllib.request.urlopen(f"{{host}}/storage/v1/b/{{bucket}}/o?prefix={{q(prefix)}}") as r:
        return [item["name"] for item in json.load(r).get("items", [])]
def get(bucket, name, target):
    try:
        with urllib.request.urlopen(f"{{host}}/download/storage/v1/b/{{bucket}}/o/{{q(name)}}?alt=media") as r:
            data = r.read()
    except urllib.error.HTTPError:
        sys.exit(1)
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_bytes(data)
def put(bucket, name, path):
    req = urllib.request.Request(f"{{host}}/upload/storage/v1/b/{{bucket}}/o?uploadType=media&name={{q(name)}}", data=Path(path).read_bytes(), method="POST")
    req.add_header("Content-Type", "application/octet-stream")
    urllib.request.urlopen(req).read()
if src.startswith("gs://") and verb == "rsync":
    bucket, prefix = split(src)
    for name in names(bucket, prefix + "/"):
        get(bucket, name, Path(dst) / name[len(prefix) + 1:])
elif src.startswith("gs://"):
    bucket, key = split(src)
    get(bucket, key, Path(dst) / key.rsplit("/", 1)[-1] if dst.endswith("/") else Path(dst))
elif verb == "rsync":
    bucket, prefix = split(dst)
    for path in sorted(Path(src).rglob("*")):
        rel = path.relative_to(src).as_posix()
        if path.is_file() and not (exclude and re.search(exclude, rel)):
            put(bucket, prefix + "/" + rel, path)
else:
    bucket, key = split(dst)
    put(bucket, key, src)
'''

# The image's python3: answers the torch probe and builds a "venv" whose pip records what it is
# asked to install and whose budgetft is the fake run below; its python is the real one.
PYTHON3_STUB = r'''#!/usr/bin/env bash
echo "python3 $*" >> "$FAKE_VM_LOG"
if [[ "$1" == "-c" ]]; then exit 0; fi
if [[ "$1" == "-m" && "$2" == "venv" ]]; then
  venv="${{@: -1}}"
  mkdir -p "$venv/bin"
  ln -sf {python} "$venv/bin/python"
  printf '#!/usr/bin/env bash\necho "pip $*" >> "$FAKE_VM_LOG"\nexit "${{FAKE_PIP_EXIT:-0}}"\n' > "$venv/bin/pip"
  cp "$FAKE_VM_BIN/fake-budgetft" "$venv/bin/budgetft"
  chmod +x "$venv/bin/pip" "$venv/bin/budgetft"
  exit 0
fi
exit 2
'''

# `budgetft run` on the VM: a short run that writes what the real one writes and charges the
# ledger through the real Ledger, slowly enough for the launcher to watch it. FAKE_RUN=preempt
# stops after the first evaluation and waits to be killed.
FAKE_BUDGETFT = r'''#!{python}
import json, os, sys, time
from pathlib import Path
from budgetft.money.ledger import Ledger
args = sys.argv[1:]
with open(os.environ["FAKE_VM_LOG"], "a") as log:
    log.write("budgetft " + " ".join(args) + "\n")
def opt(name):
    return args[args.index(name) + 1] if name in args else None
run_dir = Path(opt("--out") or opt("--resume"))
info = json.loads((run_dir / "run.json").read_text()) if (run_dir / "run.json").exists() else {{}}
cap = opt("--budget") or info.get("cap_usd")
sessions = int(info.get("sessions", 0)) + 1
info.update(run_id=run_dir.name, status="running", cap_usd=cap, budget_usd=cap, price_per_hour=opt("--price-per-hour"), sessions=sessions, job="boolq-smollm2")
(run_dir / "run.json").write_text(json.dumps(info))
ledger = Ledger(run_dir, cap)
trial_id = f"t00{{sessions}}-lora"
trial = {{"trial_id": trial_id, "method": "lora", "status": "running", "evals": []}}
for step, acc in ((50, 0.61 + 0.05 * sessions), (100, 0.63 + 0.05 * sessions)):
    ledger.charge("0.05", "training", f"fake training to step {{step}}", trial=trial_id, key=f"s{{sessions}}:{{step}}")
    trial["evals"].append({{"step": step, "accuracy": acc}})
    (run_dir / "trials" / trial_id).mkdir(parents=True, exist_ok=True)
    (run_dir / "trials" / trial_id / "trial.json").write_text(json.dumps(trial))
    time.sleep(float(os.environ.get("FAKE_STEP_S", "0.6")))
    if os.environ.get("FAKE_RUN") == "preempt":
        time.sleep(3600)
trial["status"] = "finished"
(run_dir / "trials" / trial_id / "trial.json").write_text(json.dumps(trial))
(run_dir / "report.md").write_text("# fake report\n")
info.update(status="finished")
(run_dir / "run.json").write_text(json.dumps(info))
sys.exit(int(os.environ.get("FAKE_RUN_EXIT", "0")))
'''


class SandboxVM:
    """Runs a rendered start-up script as the VM would, with stubs on PATH for python3 (the
    install), nvidia-smi (the GPU), gcloud (to the storage emulator) and shutdown."""

    def __init__(self, root: Path, storage_endpoint: str, uptime_s: float = 300.0, sync_every_s: int = 1):
        self.root = root
        self.bin = root / "bin"
        self.work = root / "work"
        self.log = root / "calls.log"
        self.poweroff = root / "poweroff"
        self.uptime = root / "uptime"
        self.storage_endpoint = storage_endpoint
        self.sync_every_s = sync_every_s
        self.env_extra: dict[str, str] = {}
        self.bin.mkdir(parents=True)
        self.uptime.write_text(f"{uptime_s:.2f} 100.00\n")
        stubs = {
            "gcloud": GCLOUD_STUB.format(python=sys.executable),
            "python3": PYTHON3_STUB.format(python=sys.executable),
            "fake-budgetft": FAKE_BUDGETFT.format(python=sys.executable),
            "nvidia-smi": '#!/usr/bin/env bash\necho "nvidia-smi $*" >> "$FAKE_VM_LOG"\necho "Tesla V100-SXM2-16GB, 16384 MiB, 570.86"\n',
            "shutdown": f'#!/usr/bin/env bash\necho "shutdown $*" >> "$FAKE_VM_LOG"\ntouch {self.poweroff}\n',
        }
        for name, text in stubs.items():
            path = self.bin / name
            path.write_text(text)
            path.chmod(path.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)

    def localize(self, script: str) -> str:
        """Point the rendered script's machine paths into the sandbox (the only edits made)."""
        script = re.sub(r"^WORK=.*$", f"WORK={self.work}", script, count=1, flags=re.M)
        script = re.sub(r"^UPTIME_FILE=.*$", f"UPTIME_FILE={self.uptime}", script, count=1, flags=re.M)
        return re.sub(r"^SYNC_EVERY_S=.*$", f"SYNC_EVERY_S={self.sync_every_s}", script, count=1, flags=re.M)

    def run(self, script: str, timeout: float = 60.0) -> subprocess.CompletedProcess:
        path = self.root / "startup.sh"
        path.write_text(self.localize(script))
        env = {
            "PATH": f"{self.bin}:/usr/bin:/bin",
            "HOME": str(self.root),
            "FAKE_VM_LOG": str(self.log),
            "FAKE_VM_BIN": str(self.bin),
            "STORAGE_EMULATOR_HOST": self.storage_endpoint,
            "PYTHONPATH": str(Path(__file__).resolve().parents[2]),
            **self.env_extra,
        }
        return subprocess.run(["bash", str(path)], env=env, capture_output=True, text=True, timeout=timeout)

    def calls(self) -> list[str]:
        return self.log.read_text().splitlines() if self.log.exists() else []

    def boot(self, fake: FakeCompute, zone: str, name: str, body: dict) -> None:
        """FakeCompute.on_insert: run the instance's start-up script, then power off."""
        script = next(i["value"] for i in body["metadata"]["items"] if i["key"] == "startup-script")
        try:
            self.result = self.run(script)
        finally:
            if self.poweroff.exists():
                fake.set_status(zone, name, "TERMINATED")


def read_ledger(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "ledger.jsonl").read_text().splitlines()]


def wait_for(predicate, timeout: float = 20.0, every: float = 0.05) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if predicate():
            return True
        time.sleep(every)
    return False



class QuickVM:
    """FakeCompute.on_insert without a start-up script, for flow tests: uploads what a VM would
    (phase, a trial, ledger charges on top of the seeded ledger), then ends as told:
    finish (exit code 0, powered off), vanish (a Spot preemption deletes it mid-run), or silent
    (never reports; its clock says it started two hours ago)."""

    def __init__(self, storage_endpoint: str, end: str = "finish", accuracy: float = 0.70, delay_s: float = 0.3):
        self.endpoint, self.end, self.accuracy, self.delay_s = storage_endpoint, end, accuracy, delay_s
        self.booted: list[tuple[str, str]] = []

    def __call__(self, fake: FakeCompute, zone: str, name: str, body: dict) -> None:
        import tempfile

        from budgetft.money.ledger import Ledger

        self.booted.append((zone, name))
        script = next(i["value"] for i in body["metadata"]["items"] if i["key"] == "startup-script")
        settings = dict(re.findall(r"^([A-Z_]+)=(.*)$", script, flags=re.M))
        prefix = settings["RUN_URL"].split("/", 3)[3]
        session = settings["SESSION"]
        if self.end == "silent":
            with fake.lock:
                inst = fake.instances[(zone, name)]
                inst["status"] = "RUNNING"
                inst["lastStartTimestamp"] = stamp(datetime.now(timezone.utc) - timedelta(hours=2))
            return
        bucket = bucket_client(self.endpoint)
        bucket.blob(f"{prefix}/vm/phase").upload_from_string("running")
        with tempfile.TemporaryDirectory() as tmp:
            bucket.blob(f"{prefix}/run/ledger.jsonl").download_to_filename(f"{tmp}/ledger.jsonl")
            with Ledger(tmp, settings["CAP_USD"]) as ledger:
                ledger.charge("0.10", "training", "quick VM training", trial=f"t00{session}-lora", key=f"s{session}:1")
            bucket.blob(f"{prefix}/run/ledger.jsonl").upload_from_filename(f"{tmp}/ledger.jsonl")
        trial = {"trial_id": f"t00{session}-lora", "method": "lora", "status": "running", "evals": [{"step": 50, "accuracy": self.accuracy}]}
        bucket.blob(f"{prefix}/run/trials/t00{session}-lora/trial.json").upload_from_string(json.dumps(trial))
        bucket.blob(f"{prefix}/run/run.json").upload_from_string(json.dumps({"run_id": prefix.rsplit("/", 1)[-1], "status": "running", "cap_usd": settings["CAP_USD"], "sessions": int(session)}))
        time.sleep(self.delay_s)
        if self.end == "vanish":
            fake.vanish(zone, name)
            return
        bucket.blob(f"{prefix}/run/report.md").upload_from_string("# quick report\n")
        bucket.blob(f"{prefix}/run/run.json").upload_from_string(json.dumps({"run_id": prefix.rsplit("/", 1)[-1], "status": "finished", "cap_usd": settings["CAP_USD"], "sessions": int(session)}))
        bucket.blob(f"{prefix}/vm/exit_code").upload_from_string("0\n")
        fake.set_status(zone, name, "TERMINATED")
