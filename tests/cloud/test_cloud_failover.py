"""The launcher through every fault the fake Compute API can inject, one row each: what a user
needs from each outcome — the next zone or region tried, the right scope ruled out, the money a
failed start cost counted, nothing left running, and an error that names its fix."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Callable

import pytest
from test_cloud_fakes import (  # noqa: F401  (fixtures)
    VM,
    QuickVM,
    console,
    fake_compute,
    fast_cloud,
    gcs,
    gcs_rights,
    gcs_server,
    launch,
    read_ledger,
)

from budgetft.money.usd import cost

CENTRAL = ["us-central1-a", "us-central1-b", "us-central1-c", "us-central1-f"]
EVERY_ZONE = CENTRAL + ["us-east1-b", "us-east1-c", "us-east1-d", "us-west1-a", "us-west1-b", "us-west1-c", "europe-west4-a", "europe-west4-b", "europe-west4-c"]


@dataclass
class Row:
    fault: str
    setup: Callable  # (fake, ctx) -> None
    expect_code: int
    tried: list[str]  # the zones inserts went to, in order
    says: list[str]  # what the output must say (the outcome, the fix)
    launch: dict = field(default_factory=dict)
    check: Callable | None = None  # (fake, run_dir, text, ctx) -> None, for the rest


def stockout(*zones, **how):
    def setup(fake, ctx):
        for z in zones:
            fake.faults.stockouts[z] = dict(how)
    return setup


def check_failed_start_charged(fake, run_dir, text, ctx):
    charges = read_ledger(run_dir)
    failed = [c for c in charges if c["key"] == "vm1.failed1"]
    assert len(failed) == 1 and failed[0]["category"] == "boot"
    record = json.loads((run_dir / "cloud" / "launch-1.json").read_text())
    # Started 30 s before it failed, + 90 s to delete it, at the VM's whole rate; charged before the
    # leftover was deleted, and before the next zone was tried.
    assert Decimal(failed[0]["amount_usd"]) >= cost(Decimal(record["usd_per_hour"]), 60)
    # The next VM started from a ledger that already held it (its own charge comes after).
    keys = [c["key"] for c in charges]
    assert keys.index("vm1.failed1") < keys.index("s1:1")
    deletes = [p for p in fake.deletes() if p.endswith("/zones/us-central1-a/instances/" + record["name"])]
    assert deletes and record["failed_starts"] == 1 and record["zone"] == "us-central1-b"
    # The money the failed start took is not in the next VM's life: its maxRunDuration is shorter.
    lives = [int(body["scheduling"]["maxRunDuration"]["seconds"]) for _, body in fake.inserts()]
    assert lives[1] < lives[0]


def check_one_request_id(fake, run_dir, text, ctx):
    assert len(fake.insert_request_ids) == 3 and len(set(fake.insert_request_ids)) == 1  # one insert, sent three times


def check_fell_back_to_on_demand(fake, run_dir, text, ctx):
    (zone, body) = fake.inserts()[-1]
    assert body["scheduling"]["provisioningModel"] == "STANDARD"
    spot_life = int(fake.inserts()[0][1]["scheduling"]["maxRunDuration"]["seconds"])
    assert int(body["scheduling"]["maxRunDuration"]["seconds"]) < spot_life  # the same money buys less standard time
    record = json.loads((run_dir / "cloud" / "launch-1.json").read_text())
    assert record["spot"] is False and record["zone"] == "us-central1-a"


def check_nothing_left(fake, run_dir, text, ctx):
    assert fake.instances == {} and not run_dir.exists()  # nothing was spent: no half-made run directory


def check_private(fake, run_dir, text, ctx):
    body = fake.inserts()[-1][1]
    assert "accessConfigs" not in body["networkInterfaces"][0]
    assert json.loads((run_dir / "cloud" / "launch-1.json").read_text())["external_ip"] is False


def check_bigger_disk(fake, run_dir, text, ctx):
    body = fake.inserts()[0][1]
    assert body["disks"][0]["initializeParams"]["diskSizeGb"] == "80"
    record = json.loads((run_dir / "cloud" / "launch-1.json").read_text())
    assert Decimal(record["usd_per_hour"]) > Decimal("2.880847316")  # the 30 GB more are priced in


def check_region(region):
    def check(fake, run_dir, text, ctx):
        assert json.loads((run_dir / "cloud" / "launch-1.json").read_text())["region"] == region
    return check


def set_quota(region, **limits):
    def setup(fake, ctx):
        for metric, limit in limits.items():
            fake.quota(region, metric, limit)
    return setup


def both(*setups):
    def setup(fake, ctx):
        for s in setups:
            s(fake, ctx)
    return setup


def throttle(pattern, status, reason, times):
    def setup(fake, ctx):
        fake.faults.throttles.append([pattern, status, reason, times])
    return setup


def attr(path, value):
    def setup(fake, ctx):
        obj = fake
        *parts, last = path.split(".")
        for p in parts:
            obj = getattr(obj, p)
        setattr(obj, last, value)
    return setup


ROWS = [
    Row("stockout on the operation", stockout("us-central1-a"), 0, CENTRAL[:2], ["us-central1-a: out of capacity", "trying the next zone"]),
    Row("stockout answered at once (HTTP 503)", stockout("us-central1-a", sync=True), 0, CENTRAL[:2], ["us-central1-a: out of capacity"]),
    Row("stockout in every zone of the region", stockout(*CENTRAL, spot=True), 0, CENTRAL + ["us-east1-b"], ["us-central1-f: out of capacity"],
        {"spot": True}, check_region("us-east1")),
    Row("Spot stockout everywhere, --fallback-on-demand", stockout(*EVERY_ZONE, spot=True), 0, EVERY_ZONE + ["us-central1-a"],
        ["falling back to on-demand, first in us-central1"], {"spot": True, "fallback_on_demand": True}, check_fell_back_to_on_demand),
    Row("Spot stockout everywhere, no fallback", stockout(*EVERY_ZONE, spot=True), 2, EVERY_ZONE,
        ["no zone could start the VM now", "--fallback-on-demand to let a Spot run fall back", "Nothing was left running"], {"spot": True}, check_nothing_left),
    Row("stockout that leaves a started instance", stockout("us-central1-a", leftover=True), 0, CENTRAL[:2],
        ["failed start: $", "charged for it before deleting it"], {}, check_failed_start_charged),
    Row("UNSUPPORTED_OPERATION in a zone", attr("faults.unsupported", {"us-central1-a"}), 0, CENTRAL[:2], ["us-central1-a: cannot do this here"]),
    Row("a zone without the GPU", lambda f, c: f.zone_gpus["us-central1-a"].discard("nvidia-tesla-v100"), 0, CENTRAL[1:2], []),
    Row("no regional GPU quota (seen before creating)", set_quota("us-central1", NVIDIA_V100_GPUS=0, PREEMPTIBLE_NVIDIA_V100_GPUS=0), 0, ["us-east1-b"],
        ["not enough GPU quota in us-central1", "NVIDIA_V100_GPUS limit 0", "trying elsewhere"], {}, check_region("us-east1")),
    Row("preemptible quota full: a standard 7-day VM draws on it", lambda f, c: f.quota("us-central1", "PREEMPTIBLE_NVIDIA_V100_GPUS", 1.0, 1.0), 0, ["us-east1-b"],
        ["PREEMPTIBLE_NVIDIA_V100_GPUS limit 1, in use 1", "may draw on it"], {}, check_region("us-east1")),
    Row("regional quota refused on the operation", lambda f, c: f.faults.insert_quota.append({"metric": "NVIDIA_V100_GPUS", "region": "us-central1", "sync": False}),
        0, ["us-central1-a", "us-east1-b"], ["us-central1: not enough NVIDIA_V100_GPUS quota", "trying the next region"], {}, check_region("us-east1")),
    Row("project-wide quota refused at insert", lambda f, c: f.faults.insert_quota.append({"metric": "GPUS_ALL_REGIONS", "sync": True}), 2, ["us-central1-a"],
        ["project-wide quota GPUS_ALL_REGIONS is used up", "no region can help", "request an increase of GPUS_ALL_REGIONS"], {}, check_nothing_left),
    Row("429 then an answer", both(throttle(r"GET .*/regions/", 429, "rateLimitExceeded", 2), throttle(r"POST .*/instances$", 403, "rateLimitExceeded", 1)),
        0, CENTRAL[:1] * 2, ["retrying in"]),
    Row("5xx then an answer: the insert acts once", throttle(r"POST .*/instances$", 503, "backendError", 2), 0, CENTRAL[:1] * 3, ["retrying in"],
        {}, check_one_request_id),
    Row("5xx that never ends", throttle(r"POST .*/instances$", 503, "backendError", 99), 2, CENTRAL[:1] * 6,
        ["Compute Engine kept failing", "try again in a few minutes"], {}, check_nothing_left),
    Row("an operation that takes several polls", attr("faults.slow_polls", 4), 0, CENTRAL[:1], []),
    Row("an organisation policy against external addresses", attr("faults.no_external_ip", True), 2, CENTRAL[:1],
        ["organisation policy forbids external IP addresses", "--no-external-ip", "step 7"], {}, check_nothing_left),
    Row("--no-external-ip with no Cloud NAT anywhere", lambda f, c: None, 2, [],
        ["--no-external-ip: Private Google Access is off", "no Cloud NAT"], {"external_ip": False, "region": "us-central1"}, check_nothing_left),
    Row("--no-external-ip with Private Google Access and Cloud NAT", lambda f, c: (f.networks["default"]["pga"].update({"us-central1": True}), f.nat_regions.add("us-central1")),
        0, CENTRAL[:1], [], {"external_ip": False}, check_private),
    Row("no default network", lambda f, c: f.networks.pop("default"), 2, [], ["no VPC network named 'default'", "gcloud compute networks create default --subnet-mode=auto"],
        {}, check_nothing_left),
    Row("an image that needs a bigger disk", lambda f, c: f.images["pytorch-2-9-cu129-ubuntu-2404-nvidia-580"].update(diskSizeGb="80"), 0, CENTRAL[:1],
        ["needs a 80 GB boot disk"], {}, check_bigger_disk),
    Row("the newest image family gone, an older one used", lambda f, c: f.images.update({"pytorch-2-7-cu128-ubuntu-2404-nvidia-570": f.images.pop("pytorch-2-9-cu129-ubuntu-2404-nvidia-580")}),
        0, CENTRAL[:1], [], {}, lambda f, d, t, c: "pytorch-2-9" not in json.dumps(f.inserts()[0][1]["disks"])),
    Row("every image family deprecated past its end", lambda f, c: f.images["pytorch-2-9-cu129-ubuntu-2404-nvidia-580"].update(deprecated={"state": "OBSOLETE"}), 2, [],
        ["no usable boot image", "OBSOLETE", "BUDGETFT_GCP_IMAGE"], {}, check_nothing_left),
    Row("the VM's service account does not exist", lambda f, c: f.service_accounts.clear(), 2, [], ["does not exist", "gcloud iam service-accounts create budgetft-vm"],
        {}, check_nothing_left),
    Row("you may not attach the VM's account", attr("may_act_as", False), 2, [], ["iam.serviceAccounts.actAs", "roles/budgetftVmUser"], {}, check_nothing_left),
    Row("you lack a launcher permission", attr("user_permissions", {"compute.instances.get"}), 2, [], ["missing 19: compute.projects.get", "budgetftLauncher"],
        {}, check_nothing_left),
]


@pytest.mark.parametrize("row", ROWS, ids=[r.fault for r in ROWS])
def test_each_fault_gives_the_outcome_a_user_needs(row, tmp_path, fake_compute, gcs, fast_cloud):
    ctx = {"gcs": gcs}
    fake_compute.on_insert = QuickVM(gcs, delay_s=0.05)
    row.setup(fake_compute, ctx)
    con, out = console()
    run_dir = tmp_path / "run"
    code = launch(run_dir, con, **row.launch)
    text = out.getvalue()
    assert code == row.expect_code, text
    assert [z for z, _ in fake_compute.inserts()] == row.tried, text
    for words in row.says:
        assert words in text, f"{words!r} not in:\n{text}"
    assert fake_compute.instances == {}  # whatever happened, nothing is left running
    if row.check is not None:
        row.check(fake_compute, run_dir, text, ctx)
    if code == 0:
        assert Decimal(read_ledger(run_dir)[-1]["total_usd"]) <= Decimal("1.00")


def test_a_preemption_and_a_max_run_duration_expiry_are_told_apart_from_the_zone(tmp_path, fake_compute, gcs, fast_cloud):
    fake_compute.on_insert = QuickVM(gcs, end="preempt", delay_s=0.05)
    con, out = console()
    assert launch(tmp_path / "a", con, spot=True) == 1
    assert "Spot preemption" in out.getvalue() and "(compute.instances.preempted)" in out.getvalue()
    # Seen running near its deadline for a second before it expires: a busy machine's launcher
    # polled past a 0.05 s window and read only its earlier, younger state.
    fake_compute.on_insert = QuickVM(gcs, end="expire", delay_s=1.0)
    con, out = console()
    assert launch(tmp_path / "b", con) == 1
    text = out.getvalue()
    assert "deleted by Compute Engine at its max run duration" in text and "Spot preemption" not in text
    # Its whole life is charged: the ledger reaches what maxRunDuration bought, within the cap.
    assert Decimal(read_ledger(tmp_path / "b")[-1]["total_usd"]) <= Decimal("1.00")


def test_a_launcher_that_died_has_its_last_vm_settled_on_resume(tmp_path, fake_compute, gcs, fast_cloud):
    """Issue 28, point 10: with the launcher offline, the minute before the VM's last upload
    was never charged. On --resume, the zone's operations (created .. preempted) settle it."""
    fake_compute.on_insert = QuickVM(gcs, end="preempt", delay_s=0.05)
    con, out = console()
    run_dir = tmp_path / "run"
    assert launch(run_dir, con, spot=True) == 1
    # Make it look as if the launcher had died while watching: its record never closed, and
    # the VM lived 20 minutes by its zone's operations.
    record_path = run_dir / "cloud" / "launch-1.json"
    record = json.loads(record_path.read_text())
    record["status"] = "created"
    record_path.write_text(json.dumps(record))
    from datetime import timedelta

    from gcp_fake_compute import now, stamp

    for op in fake_compute.operations.values():
        if op["public"]["operationType"] == "insert":
            op["public"]["endTime"] = stamp(now() - timedelta(minutes=20))
    before = Decimal(read_ledger(run_dir)[-1]["total_usd"])
    fake_compute.on_insert = QuickVM(gcs, end="finish", delay_s=0.05)
    con, out = console()
    assert launch(None, con, spot=True, resume=run_dir, budget=None, gpu=None) == 0, out.getvalue()
    assert "settled  VM #1 lived" in out.getvalue()
    settled = json.loads(record_path.read_text())
    assert settled["status"] == "settled on resume" and Decimal(settled["settled_usd"]) > 0
    assert Decimal(read_ledger(run_dir)[-1]["total_usd"]) > before
