"""Test doubles for the cloud tests (no tests here): the fake Compute Engine API on 127.0.0.1
(gcp_fake_compute) that the real google-cloud-compute client talks to, gcp-storage-emulator
behind a proxy that enforces Cloud Storage's rights (gcp_fake_storage), and a sandboxed "VM"
that runs the real rendered start-up script with its install, GPU and metadata-server steps
replaced by stubs. Nothing here reaches the real Google Cloud."""

from __future__ import annotations

import json
import re
import stat
import subprocess
import sys
import time
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))  # the helpers beside this file, however it is imported

from gcp_fake_compute import PROJECT, REGION_ZONES, SA, FakeCompute, free_port, stamp  # noqa: E402,F401
from gcp_fake_storage import USER, VM, VM_TOKEN, RightsProxy  # noqa: E402,F401

BUCKET = "budgetft-test"


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
    """gcp-storage-emulator, and the rights proxy in front of it that every client talks to."""
    from gcp_storage_emulator.server import create_server

    port = free_port()
    server = create_server("127.0.0.1", port, in_memory=True, default_bucket=BUCKET)
    server.start()
    proxy = RightsProxy(f"http://127.0.0.1:{port}")
    proxy.start()
    yield server, proxy
    proxy.stop()
    server.stop()


@pytest.fixture
def gcs(gcs_server, monkeypatch):
    """The storage emulator, wiped between tests, found through STORAGE_EMULATOR_HOST (the
    rights proxy: you may use the bucket as budgetftBucketUser, the VM as budgetftBucket)."""
    server, proxy = gcs_server
    server.wipe(keep_buckets=True)
    proxy.reset()
    monkeypatch.setenv("STORAGE_EMULATOR_HOST", proxy.endpoint)
    monkeypatch.setenv("BUDGETFT_BUCKET", f"gs://{BUCKET}")
    return proxy.endpoint


@pytest.fixture
def gcs_rights(gcs, gcs_server):
    """The rights proxy, to change who holds which role on the bucket."""
    return gcs_server[1]


@pytest.fixture
def fast_cloud(monkeypatch):
    """Poll quickly, never wait for real (backoff, operation polls), and skip the 5 s wheel build
    (one test builds the real wheel)."""
    from budgetft.cloud import gcp, launcher, package, watch

    monkeypatch.setattr(watch, "POLL_SECONDS", 0.1)
    waits: list[float] = []
    monkeypatch.setattr(gcp, "_pause", waits.append)

    def fake_wheel(out_dir: Path) -> Path:
        path = Path(out_dir) / package.wheel_name()
        path.write_bytes(b"PK fake wheel")
        return path

    monkeypatch.setattr(package, "build_wheel", fake_wheel)
    monkeypatch.setattr(launcher, "build_wheel", fake_wheel)
    return waits


def launch(out, console, **kw) -> int:
    """`budgetft run --cloud gcp` as the CLI calls it: a $1.00 V100 run unless told otherwise."""
    from budgetft.cloud.launcher import run_in_cloud
    from budgetft.cloud.plan import CloudOptions

    args = dict(gpu="v100", machine=None, zone=None, region=None, spot=False, project=None, bucket=None, dry_run=False)
    args.update(kw)
    budget, overrides, resume = args.pop("budget", Decimal("1.00")), args.pop("overrides", []), args.pop("resume", None)
    return run_in_cloud(None, overrides, budget, CloudOptions(**args), out=out, resume=resume, console=console)


def console():
    """A wide console writing into a buffer: (console, buffer)."""
    import io

    from rich.console import Console

    buf = io.StringIO()
    return Console(file=buf, width=400, highlight=False), buf


def bucket_client(endpoint: str, vm: bool = False):
    """A client of the test bucket as you (anonymous) or as the VM's service account."""
    from google.auth.credentials import AnonymousCredentials
    from google.cloud import storage
    from google.oauth2.credentials import Credentials

    credentials = Credentials(token=VM_TOKEN) if vm else AnonymousCredentials()
    return storage.Client(project=PROJECT, credentials=credentials, client_options={"api_endpoint": endpoint}).bucket(BUCKET)


# ----------------------------------------------------------------------------- a sandboxed VM

# `gcloud storage rsync|cp` against the emulator's JSON API (STORAGE_EMULATOR_HOST, the rights
# proxy) as the VM's service account, logging each call. Like the real gcloud storage, it reads
# the bucket (buckets.get) before it touches its objects. Standard library only (python -S): a
# start-up script calls it a dozen times.
GCLOUD_STUB = r"""#!{python} -S
import json, os, re, sys, urllib.error, urllib.parse, urllib.request
from pathlib import Path
with open(os.environ["FAKE_VM_LOG"], "a") as log:
    log.write("gcloud " + " ".join(sys.argv[1:]) + "\n")
host = os.environ["STORAGE_EMULATOR_HOST"].rstrip("/")
AUTH = {{"Authorization": "Bearer {token}"}}
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
def call(url, data=None, method=None):
    req = urllib.request.Request(url, data=data, method=method, headers=dict(AUTH))
    if data is not None:
        req.add_header("Content-Type", "application/octet-stream")
    try:
        with urllib.request.urlopen(req) as r:
            return r.read()
    except urllib.error.HTTPError as exc:
        sys.stderr.write(f"ERROR: {{exc.code}} {{exc.read()[:300]!r}}\n")
        sys.exit(1)
bucket = split(src if src.startswith("gs://") else dst)[0]
call(f"{{host}}/storage/v1/b/{{bucket}}")  # gcloud storage reads the bucket first: storage.buckets.get
def names(bucket, prefix):
    return [item["name"] for item in json.loads(call(f"{{host}}/storage/v1/b/{{bucket}}/o?prefix={{q(prefix)}}")).get("items", [])]
def get(bucket, name, target):
    data = call(f"{{host}}/download/storage/v1/b/{{bucket}}/o/{{q(name)}}?alt=media")
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_bytes(data)
def put(bucket, name, path):
    call(f"{{host}}/upload/storage/v1/b/{{bucket}}/o?uploadType=media&name={{q(name)}}", data=Path(path).read_bytes(), method="POST")
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
"""

# curl on the VM: the metadata server (token, project, zone, name), Secret Manager (the hub token,
# when FAKE_SECRET is set) and Compute's instances.delete (the VM deleting itself: logged, and a
# file tells the sandbox to delete the fake instance).
CURL_STUB = r"""#!/usr/bin/env bash
url="${{@: -1}}"
method=GET
for ((i = 1; i < $#; i++)); do [[ "${{!i}}" == "-X" ]] && j=$((i + 1)) && method="${{!j}}"; done
echo "curl $method $url" >> "$FAKE_VM_LOG"
case "$url" in
  */instance/service-accounts/default/token) echo '{{"access_token":"ya29.vm","expires_in":3599,"token_type":"Bearer"}}' ;;
  */project/project-id) echo "{project}" ;;
  */instance/zone) echo "projects/123/zones/$FAKE_VM_ZONE" ;;
  */instance/name) echo "$FAKE_VM_NAME" ;;
  */versions/latest:access) [[ -n "${{FAKE_SECRET:-}}" ]] || exit 22; printf '{{"payload": {{"data": "%s"}}}}\n' "$(printf %s "$FAKE_SECRET" | base64)" ;;
  */instances/*) [[ "$method" == DELETE && -z "${{FAKE_NO_SELF_DELETE:-}}" ]] || exit 22; touch "$FAKE_VM_ROOT/deleted" ;;
  *) exit 22 ;;
esac
"""

# The image's python3: answers the torch probe and builds a "venv" whose pip records what it is
# asked to install and whose budgetft is the fake run below; its python is the real one.
PYTHON3_STUB = r"""#!/usr/bin/env bash
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
"""

# `budgetft run` on the VM: a short run that writes what the real one writes and charges the
# ledger through the real Ledger, slowly enough for the launcher to watch it. FAKE_RUN=preempt
# stops after the first evaluation and waits to be killed.
FAKE_BUDGETFT = r"""#!{python}
import json, os, sys, time
from pathlib import Path
from budgetft.money.ledger import Ledger
args = sys.argv[1:]
with open(os.environ["FAKE_VM_LOG"], "a") as log:
    log.write("budgetft " + " ".join(args) + ("  HF_TOKEN=" + os.environ["HF_TOKEN"] if os.environ.get("HF_TOKEN") else "") + "\n")
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
"""


class SandboxVM:
    """Runs a rendered start-up script as the VM would, with stubs on PATH for python3 (the
    install), nvidia-smi (the GPU), gcloud (to the storage emulator, as the VM's account), curl
    (the metadata server, Secret Manager, the self-delete) and shutdown."""

    def __init__(self, root: Path, storage_endpoint: str, uptime_s: float = 300.0, sync_every_s: int = 1):
        self.root = root
        self.bin = root / "bin"
        self.work = root / "work"
        self.log = root / "calls.log"
        self.poweroff = root / "poweroff"
        self.deleted = root / "deleted"
        self.uptime = root / "uptime"
        self.storage_endpoint = storage_endpoint
        self.sync_every_s = sync_every_s
        self.env_extra: dict[str, str] = {}
        self.bin.mkdir(parents=True)
        self.uptime.write_text(f"{uptime_s:.2f} 100.00\n")
        stubs = {
            "gcloud": GCLOUD_STUB.format(python=sys.executable, token=VM_TOKEN),
            "curl": CURL_STUB.format(project=PROJECT),
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

    def run(self, script: str, timeout: float = 60.0, zone: str = "us-central1-a", name: str = "budgetft-r1-s1") -> subprocess.CompletedProcess:
        path = self.root / "startup.sh"
        path.write_text(self.localize(script))
        env = {
            "PATH": f"{self.bin}:/usr/bin:/bin",
            "HOME": str(self.root),
            "FAKE_VM_LOG": str(self.log),
            "FAKE_VM_BIN": str(self.bin),
            "FAKE_VM_ROOT": str(self.root),
            "FAKE_VM_ZONE": zone,
            "FAKE_VM_NAME": name,
            "STORAGE_EMULATOR_HOST": self.storage_endpoint,
            "PYTHONPATH": str(Path(__file__).resolve().parents[2]),
            **self.env_extra,
        }
        return subprocess.run(["bash", str(path)], env=env, capture_output=True, text=True, timeout=timeout)

    def calls(self) -> list[str]:
        return self.log.read_text().splitlines() if self.log.exists() else []

    def boot(self, fake: FakeCompute, zone: str, name: str, body: dict) -> None:
        """FakeCompute.on_insert: run the instance's start-up script; then the VM is gone (it
        deleted itself) or powered off."""
        script = next(i["value"] for i in body["metadata"]["items"] if i["key"] == "startup-script")
        try:
            self.result = self.run(script, zone=zone, name=name)
        finally:
            if self.deleted.exists():
                fake.delete_by(zone, name, SA)
            elif self.poweroff.exists():
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
    """FakeCompute.on_insert without a start-up script, for flow tests: uploads what a VM would,
    as the VM's account (phase, a trial, ledger charges on top of the seeded ledger), then ends
    as told: finish (exit code 0, then it deletes itself), stop (exit code 0, powered off),
    preempt (a Spot preemption mid-run, recorded in the zone's operations), vanish (gone with no
    record), expire (deleted by its maxRunDuration), or silent (never reports; its clock says it
    started two hours ago)."""

    def __init__(self, storage_endpoint: str, end: str = "finish", accuracy: float = 0.70, delay_s: float = 0.3):
        self.endpoint, self.end, self.accuracy, self.delay_s = storage_endpoint, end, accuracy, delay_s
        self.booted: list[tuple[str, str]] = []
        self.bodies: list[dict] = []

    def __call__(self, fake: FakeCompute, zone: str, name: str, body: dict) -> None:
        import tempfile

        from budgetft.money.ledger import Ledger

        self.booted.append((zone, name))
        self.bodies.append(body)
        script = next(i["value"] for i in body["metadata"]["items"] if i["key"] == "startup-script")
        settings = dict(re.findall(r"^([A-Z_0-9]+)=(.*)$", script, flags=re.M))
        prefix = settings["RUN_URL"].split("/", 3)[3]
        session = settings["SESSION"]
        lifetime = int(body["scheduling"]["maxRunDuration"]["seconds"])
        # A silent VM started two hours ago; one about to be deleted by its maxRunDuration has
        # run all but the last seconds of it.
        ran = timedelta(hours=2) if self.end == "silent" else timedelta(0)
        with fake.lock:
            inst = fake.instances[(zone, name)]
            inst["status"] = "RUNNING"
            inst["lastStartTimestamp"] = stamp(datetime.now(timezone.utc) - ran)
        if self.end == "silent":
            return
        bucket = bucket_client(self.endpoint, vm=True)
        bucket.blob(f"{prefix}/vm/phase").upload_from_string("running")
        if self.end == "expire":  # reported, then seen running for all but its last seconds
            with fake.lock:
                fake.instances[(zone, name)]["lastStartTimestamp"] = stamp(datetime.now(timezone.utc) - timedelta(seconds=lifetime - 2))
        with tempfile.TemporaryDirectory() as tmp:
            bucket.blob(f"{prefix}/run/ledger.jsonl").download_to_filename(f"{tmp}/ledger.jsonl")
            with Ledger(tmp, settings["CAP_USD"].strip("'")) as ledger:
                ledger.charge("0.10", "training", "quick VM training", trial=f"t00{session}-lora", key=f"s{session}:1")
            bucket.blob(f"{prefix}/run/ledger.jsonl").upload_from_filename(f"{tmp}/ledger.jsonl")
        trial = {"trial_id": f"t00{session}-lora", "method": "lora", "status": "running", "evals": [{"step": 50, "accuracy": self.accuracy}]}
        bucket.blob(f"{prefix}/run/trials/t00{session}-lora/trial.json").upload_from_string(json.dumps(trial))
        run_id = prefix.rsplit("/", 1)[-1]
        bucket.blob(f"{prefix}/run/run.json").upload_from_string(json.dumps({"run_id": run_id, "status": "running", "cap_usd": settings["CAP_USD"], "sessions": int(session)}))
        time.sleep(self.delay_s)
        if self.end in ("preempt", "vanish", "expire"):
            {"preempt": fake.preempt, "vanish": fake.vanish, "expire": fake.expire}[self.end](zone, name)
            return
        bucket.blob(f"{prefix}/run/report.md").upload_from_string("# quick report\n")
        bucket.blob(f"{prefix}/run/run.json").upload_from_string(json.dumps({"run_id": run_id, "status": "finished", "cap_usd": settings["CAP_USD"], "sessions": int(session)}))
        bucket.blob(f"{prefix}/vm/exit_code").upload_from_string("0\n")
        if self.end == "stop":
            fake.set_status(zone, name, "TERMINATED")
        else:
            fake.delete_by(zone, name, SA)
